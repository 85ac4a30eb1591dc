//! `jko compare` on a small suite: the table exists, covers every (problem × size × backend),
//! and its error column is the error of the written result against the exact solution,
//! recomputed here independently.

use jko_core::Mesh;
use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
use ndarray::ArrayD;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Run `jko ARGS`, which must succeed; its standard output.
fn jko(args: &[&OsStr]) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_jko"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `jko compare SUITE --out DIR/out` for a suite file DIR/suite.toml; the output directory.
fn compare(suite: &Path) -> PathBuf {
    let out = suite.with_file_name("out");
    jko(&[
        "compare".as_ref(),
        suite.as_ref(),
        "--out".as_ref(),
        out.as_ref(),
    ]);
    out
}

#[test]
fn compare_table_has_computed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("suite.toml");
    std::fs::write(
        &suite,
        r#"
[[case]]
problem = "ou-1d"
sizes = [[40], [80]]
steps = 2
backends = ["conic", "quantile"]

[[case]]
problem = "crowd-2d"
sizes = [[8, 8]]
steps = 1
backends = ["conic", "quantile"]
reference = "conic"
"#,
    )
    .unwrap();
    let out = compare(&suite);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 6);
    assert!(
        std::fs::read_to_string(out.join("compare.md"))
            .unwrap()
            .contains("| ou-1d | 80 | quantile |")
    );

    // Recompute the OU errors from the written densities.
    let ou = OrnsteinUhlenbeck::standard(1);
    let exact = ou.flow(&Gaussian::diagonal(&[1.0], &[0.5]), 0.2);
    for row in rows.iter().filter(|r| r["problem"] == "ou-1d") {
        let n = row["cells"][0].as_u64().unwrap() as usize;
        let backend = row["backend"].as_str().unwrap();
        let rho: ArrayD<f64> =
            ndarray_npy::read_npy(out.join(format!("runs/ou-1d-{n}-{backend}/run/rho_00002.npy")))
                .unwrap();
        let mesh = Mesh::grid(&[n], &[-5.0], &[5.0]).unwrap();
        let h = 10.0 / n as f64;
        let num: f64 = (0..n)
            .map(|k| h * (rho[k] - exact.density(mesh.centre(k))).abs())
            .sum();
        let den: f64 = (0..n).map(|k| h * exact.density(mesh.centre(k))).sum();
        let reported = row["error"].as_f64().unwrap();
        assert!(
            (reported - num / den).abs() <= 1e-12 * reported,
            "{backend} {n}: {reported} vs {}",
            num / den
        );
        assert!(row["error_against"].as_str().unwrap().starts_with("exact"));
        assert!(row["time_per_step"].as_f64().unwrap() > 0.0);
    }
    let crowd: Vec<_> = rows.iter().filter(|r| r["problem"] == "crowd-2d").collect();
    assert_eq!(crowd[0]["status"], "ok (the reference)");
    assert!(
        crowd[1]["status"]
            .as_str()
            .unwrap()
            .starts_with("unsupported")
    );
}

#[test]
fn check_names_expected_failures_that_pass_and_refuses_stale_ones() {
    let dir = tempfile::tempdir().unwrap();
    let run = |expected: &str| {
        let suite = dir.path().join("suite.toml");
        std::fs::write(
            &suite,
            format!(
                "expected_failures = [{expected}]\n[[case]]\nproblem = \"ou-1d\"\nsizes = [[20]]\n\
                 steps = 1\nbackends = [\"newton\", \"quantile\"]\n"
            ),
        )
        .unwrap();
        Command::new(env!("CARGO_BIN_EXE_jko"))
            .args(["compare", suite.to_str().unwrap(), "--out"])
            .arg(dir.path().join("out"))
            .arg("--check")
            .output()
            .unwrap()
    };
    // Both runs pass: the listed failure is reported as fixed, and the check passes.
    let out = run(r#"{ problem = "ou-1d", backend = "quantile", issue = 99 }"#);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("no longer fails: ou-1d quantile (issue 99)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("robustness: 2 passed, 0 failed"),
        "{stdout}"
    );
    // An entry that names no run of the suite is refused before any run.
    let out = run(r#"{ problem = "ou-2d", backend = "newton", issue = 14 }"#);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("suite.expected_failures: ou-2d with `newton` is not a run of this suite"),
        "{stderr}"
    );
}

/// A suite naming its problem file by an absolute path keeps every run directory under
/// `--out` (the path was joined as it is, and an absolute path replaced the output directory).
#[test]
fn problem_files_by_absolute_path_run_under_out() {
    let dir = tempfile::tempdir().unwrap();
    let problems = dir.path().join("problems");
    std::fs::create_dir(&problems).unwrap();
    let problem = problems.join("ou.toml");
    std::fs::write(&problem, jko(&["example".as_ref(), "ou-1d".as_ref()])).unwrap();
    let suite = dir.path().join("suite.toml");
    std::fs::write(
        &suite,
        format!(
            "[[case]]\nproblem = {:?}\nsizes = [[20]]\nsteps = 1\nbackends = [\"newton\"]\n",
            problem.to_str().unwrap()
        ),
    )
    .unwrap();
    let out = compare(&suite);
    let runs: Vec<_> = std::fs::read_dir(out.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(runs[0].ends_with("problems_ou.toml-20-newton"), "{runs:?}");
    // Nothing was written beside the problem file.
    assert_eq!(std::fs::read_dir(&problems).unwrap().count(), 1);
}

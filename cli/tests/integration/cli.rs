//! The command line on bad input: a non-zero exit, a message naming the problem, no panic and
//! no output that looks like a result.

use ndarray::{ArrayD, IxDyn};
use std::path::Path;
use std::process::Command;

fn jko(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_jko"))
        .args(args)
        .output()
        .expect("run jko");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const GOOD: &str = r#"
[mesh]
cells = [20]
lower = [-4.0]
upper = [4.0]
[initial]
kind = "gaussian"
mean = [0.5]
std = [0.7]
[energy]
entropy = 1.0
potential = { kind = "quadratic", center = [0.0], stiffness = 1.0 }
[scheme]
tau = 0.1
steps = 2
[solver]
kind = "conic"
"#;

fn write_npy(path: &Path, shape: &[usize], values: Vec<f64>) {
    let a = ArrayD::from_shape_vec(IxDyn(shape), values).unwrap();
    ndarray_npy::write_npy(path, &a).unwrap();
}

/// Run a config that must fail; the message must contain every word in `expect`.
fn must_fail(dir: &Path, name: &str, text: &str, expect: &[&str]) {
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(&cfg, text).unwrap();
    let out = dir.join(format!("out-{name}"));
    let (ok, _, err) = jko(&[
        "run",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "-q",
    ]);
    assert!(!ok, "{name}: expected failure");
    assert!(!err.contains("panicked"), "{name}: panic: {err}");
    // Each cause once (issue 21: "error: step 1: X" was followed by "caused by: X").
    let lines: Vec<&str> = err.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if let Some(cause) = line.trim().strip_prefix("caused by: ") {
            assert!(
                !lines[..i].iter().any(|l| l.contains(cause)),
                "{name}: `{cause}` said twice: {err}"
            );
        }
    }
    for e in expect {
        assert!(
            err.contains(e),
            "{name}: message `{err}` does not mention `{e}`"
        );
    }
    // Nothing that looks like a result: no step beyond the initial state.
    assert!(
        !out.join("rho_00001.npy").exists(),
        "{name}: a step was written"
    );
}

#[test]
fn good_config_runs_and_writes_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("good.toml");
    std::fs::write(&cfg, GOOD).unwrap();
    let out = dir.path().join("out");
    let (ok, _, err) = jko(&["run", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(ok, "{err}");
    for f in [
        "rho_00000.npy",
        "rho_00001.npy",
        "rho_00002.npy",
        "run.json",
        "steps.jsonl",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let header: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(header["status"], "completed");
    assert_eq!(header["solver"], "conic");
    let steps = std::fs::read_to_string(out.join("steps.jsonl")).unwrap();
    assert_eq!(steps.lines().count(), 2);
    let rho: ArrayD<f64> = ndarray_npy::read_npy(out.join("rho_00002.npy")).unwrap();
    assert_eq!(rho.shape(), &[20]);
    // A second run into the same directory is refused without --force.
    let (ok, _, err) = jko(&["run", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(!ok && err.contains("--resume"), "{err}");
}

#[test]
fn bad_inputs_fail_with_a_named_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    must_fail(d, "tau0", &GOOD.replace("tau = 0.1", "tau = 0.0"), &["tau"]);
    must_fail(
        d,
        "tauneg",
        &GOOD.replace("tau = 0.1", "tau = -1.0"),
        &["tau"],
    );
    must_fail(
        d,
        "lengths",
        &GOOD.replace("lower = [-4.0]", "lower = [-4.0, 0.0]"),
        &["lower"],
    );
    must_fail(
        d,
        "order",
        &GOOD.replace("lower = [-4.0]", "lower = [4.0]"),
        &["lower", "upper"],
    );
    must_fail(
        d,
        "unknown-key",
        &GOOD.replace("tau = 0.1", "tau = 0.1\ntua = 3"),
        &["tua"],
    );
    must_fail(d, "missing-key", &GOOD.replace("steps = 2", ""), &["steps"]);
    must_fail(
        d,
        "wrong-type",
        &GOOD.replace("steps = 2", "steps = \"two\""),
        &["steps"],
    );
    must_fail(
        d,
        "unknown-solver",
        &GOOD.replace("kind = \"conic\"", "kind = \"magic\""),
        &["magic"],
    );
    must_fail(
        d,
        "unknown-energy",
        &GOOD.replace("entropy = 1.0", "entropie = 1.0"),
        &["entropie"],
    );
    must_fail(
        d,
        "porous-m",
        &GOOD.replace("entropy = 1.0", "porous = { m = 1.0 }"),
        &["porous"],
    );
    must_fail(
        d,
        "std",
        &GOOD.replace("std = [0.7]", "std = [0.0]"),
        &["std"],
    );
    must_fail(
        d,
        "center",
        &GOOD.replace("center = [0.0]", "center = [0.0, 1.0]"),
        &["center"],
    );
    // ρ_max below the initial density (here ρ_max × domain < mass, so no admissible state exists).
    must_fail(
        d,
        "congestion",
        &GOOD.replace("entropy = 1.0", "entropy = 1.0\nmax_density = 0.1"),
        &["max_density"],
    );
    // A backend that does not treat a term says which one.
    must_fail(
        d,
        "unsupported",
        &GOOD
            .replace("entropy = 1.0", "entropy = 1.0\nmax_density = 5.0")
            .replace("kind = \"conic\"", "kind = \"quantile\""),
        &["quantile", "max_density"],
    );

    let npy_cfg = |name: &str| {
        GOOD.replace(
            "kind = \"gaussian\"\nmean = [0.5]\nstd = [0.7]",
            &format!("kind = \"npy\"\npath = \"{name}.npy\""),
        )
    };
    let mut neg = vec![1.0; 20];
    neg[3] = -0.5;
    write_npy(&d.join("neg.npy"), &[20], neg);
    must_fail(d, "neg", &npy_cfg("neg"), &["negative", "cell 3"]);
    let mut nan = vec![1.0; 20];
    nan[7] = f64::NAN;
    write_npy(&d.join("nan.npy"), &[20], nan);
    must_fail(d, "nan", &npy_cfg("nan"), &["non-finite", "7"]);
    write_npy(&d.join("zero.npy"), &[20], vec![0.0; 20]);
    must_fail(d, "zero", &npy_cfg("zero"), &["zero mass"]);
    write_npy(&d.join("shape.npy"), &[21], vec![1.0; 21]);
    must_fail(d, "shape", &npy_cfg("shape"), &["shape", "[20]", "[21]"]);
    std::fs::write(d.join("junk.npy"), b"not an npy file").unwrap();
    must_fail(d, "junk", &npy_cfg("junk"), &["junk.npy"]);
    must_fail(d, "missing-file", &npy_cfg("absent"), &["absent.npy"]);
}

#[test]
fn examples_and_solvers_are_listed() {
    let (ok, list, _) = jko(&["example"]);
    assert!(ok);
    for name in ["ou-1d", "ou-2d", "porous-1d", "crowd-2d"] {
        assert!(list.contains(name), "{list}");
        let (ok, text, err) = jko(&["example", name]);
        assert!(ok, "{err}");
        assert!(text.contains("[solver]"));
    }
    let (ok, _, err) = jko(&["example", "nope"]);
    assert!(!ok && err.contains("nope"));
    let (ok, text, _) = jko(&["solvers"]);
    assert!(ok);
    assert!(text.contains("conic") && text.contains("entropy"), "{text}");
}

/// Issue 8, resource and failure limits: each refusal exits non-zero with a message that names
/// the problem in words, before any step is written.
#[test]
fn limits_and_failures_are_named_for_a_person() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // ρ_max·|Ω| = 0.1 × 8 < mass 1: no admissible density exists.
    must_fail(
        d,
        "infeasible-congestion",
        &GOOD.replace("entropy = 1.0", "entropy = 1.0\nmax_density = 0.1"),
        &[
            "congestion bound is infeasible",
            "below the mass",
            "max_density",
        ],
    );
    // m ≤ 1 is not a porous medium (m = 1 is the entropy).
    must_fail(
        d,
        "porous-m-below-1",
        &GOOD.replace("entropy = 1.0", "porous = { m = 0.5 }"),
        &["porous", "exponent", "> 1"],
    );
    // A memory limit below the backend's estimate.
    must_fail(
        d,
        "memory",
        &format!("{GOOD}\n[limits]\nmax_memory_gib = 0.0001\n"),
        &[
            "conic backend",
            "needs about",
            "more than",
            "max_memory_gib",
        ],
    );
}

/// τ so large that the backend does not reach its tolerance: a porous medium (m = 2) in a
/// quadratic well converges at τ = 0.1 and 10 (checked first), but at τ = 10⁹ the potential
/// φ ~ τ E makes the round-off floor of the flux relation rise far above the tolerance: newton
/// stops at its iteration limit and says which residual and which floor, and Clarabel stops with
/// InsufficientProgress. Both are typed NotConverged errors; the CLI names the backend, the
/// iteration count and suggests a smaller τ.
#[test]
fn a_step_that_does_not_converge_is_an_error_naming_tau() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let porous = GOOD.replace("entropy = 1.0", "porous = { m = 2.0 }");
    for (solver, tau) in [("newton", "10.0"), ("conic", "10.0")] {
        let cfg = d.join(format!("ok-{solver}.toml"));
        std::fs::write(
            &cfg,
            porous
                .replace("tau = 0.1", &format!("tau = {tau}"))
                .replace("kind = \"conic\"", &format!("kind = \"{solver}\"")),
        )
        .unwrap();
        let out = d.join(format!("out-ok-{solver}"));
        let (ok, _, err) = jko(&["run", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        assert!(ok, "{solver} at tau = {tau}: {err}");
    }
    // conic solves even the τ = 1e9 step since it polishes Clarabel's answer (issue 17): its
    // failure is forced by an iteration limit, and the message must still name τ.
    for (solver, tau, words) in [
        (
            "kind = \"newton\"",
            "1e9",
            ["newton backend did not converge", "300 iterations"],
        ),
        (
            "kind = \"conic\"\nmax_iter = 3",
            "1e9",
            ["conic backend did not converge", "MaxIterations"],
        ),
    ] {
        must_fail(
            d,
            &format!("not-converged-{}", &solver[8..13]),
            &porous
                .replace("tau = 0.1", &format!("tau = {tau}"))
                .replace("kind = \"conic\"", solver),
            &[words[0], words[1], "smaller time step tau"],
        );
    }
}

/// What a first-time user hits (issue 21): a run of zero steps reports ρ⁰'s mass; a built-in
/// example's name runs as a config; an error's cause is printed once; an output directory that
/// cannot hold a run, or a resume with nothing to resume, says what to do instead of an OS error.
#[test]
fn first_time_user_messages() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = d.join("good.toml");
    std::fs::write(&cfg, GOOD).unwrap();
    let cfg = cfg.to_str().unwrap();
    let out = |name: &str| d.join(name).to_str().unwrap().to_string();

    // --steps 0: the final density is ρ⁰ (Gaussian cells normalised to mass 1).
    let (ok, _, err) = jko(&["run", cfg, "--out", &out("zero"), "--steps", "0"]);
    assert!(ok, "{err}");
    assert!(err.contains("done: 0 steps"), "{err}");
    assert!(err.contains("final mass 1.0000000"), "{err}");
    // A completed run: the summary line names times, the slowest step and the mass drift.
    let (ok, _, err) = jko(&["run", cfg, "--out", &out("two")]);
    assert!(ok, "{err}");
    for word in [
        "done: 2 steps",
        "/step",
        "slowest: step",
        "AlmostSolved",
        "drift",
    ] {
        assert!(err.contains(word), "`{word}` missing: {err}");
    }
    // Durations carry a unit that fits (µs/ms/s), never "0.000 s" for a fast step.
    assert!(!err.contains("0.000 s"), "{err}");
    assert!(
        [" ns/step", " µs/step", " ms/step", " s/step"]
            .iter()
            .any(|u| err.contains(u)),
        "no duration unit: {err}"
    );

    // A built-in example's name; an unknown name lists the known ones.
    let (ok, _, err) = jko(&["run", "ou-1d", "--out", &out("ex"), "--steps", "1", "-q"]);
    assert!(ok, "{err}");
    assert!(d.join("ex").join("rho_00001.npy").exists());
    let (ok, _, err) = jko(&["run", "ou-9d", "--out", &out("ex9")]);
    assert!(
        !ok && err.contains("nor a built-in example") && err.contains("ou-1d"),
        "{err}"
    );

    // --out pointing at a file.
    let file = d.join("a-file");
    std::fs::write(&file, "x").unwrap();
    let (ok, _, err) = jko(&["run", cfg, "--out", file.to_str().unwrap(), "-q"]);
    assert!(!ok, "{err}");
    assert!(
        err.contains("not a directory") && !err.contains("os error"),
        "{err}"
    );
    // --resume on a directory with no run.
    std::fs::create_dir(d.join("empty")).unwrap();
    let (ok, _, err) = jko(&["run", cfg, "--out", &out("empty"), "--resume", "-q"]);
    assert!(!ok, "{err}");
    assert!(
        err.contains("holds no run") && !err.contains("os error"),
        "{err}"
    );
    // Each cause once: no line of the message repeats another's text.
    let (ok, _, err) = jko(&["run", cfg, "--out", &out("two"), "-q"]);
    assert!(!ok && err.contains("already holds a run"), "{err}");
    assert!(!err.contains("caused by"), "{err}");
}

/// Under `ulimit -v` a step that needs more than the address-space limit leaves is refused
/// before allocating, naming the limit, instead of aborting on a failed allocation (issue 21).
#[test]
fn a_run_under_ulimit_v_is_refused_with_the_limit_named() {
    if !cfg!(target_os = "linux") || std::env::var_os("JKO_MAX_MEMORY_GIB").is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("dense.toml");
    // A dense Gibbs kernel on 20000 cells: 20000² × 8 B = 3.2 GB, beyond 1 GiB of address space.
    std::fs::write(
        &cfg,
        GOOD.replace("[20]", "[20000]").replace(
            "kind = \"conic\"",
            "kind = \"sinkhorn\"\nkernel = \"dense\"",
        ),
    )
    .unwrap();
    let script = format!(
        "ulimit -v 1048576 && exec '{}' run '{}' --out '{}' -q",
        env!("CARGO_BIN_EXE_jko"),
        cfg.display(),
        dir.path().join("out").display()
    );
    let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("ulimit -v") && err.contains("GiB"), "{err}");
    assert!(
        !err.contains("memory allocation") && !err.contains("panicked"),
        "{err}"
    );
}

/// `jko distance`: W₂ (not squared) on the last line, against closed forms on a 1D mesh and a 2D
/// grid; unequal masses refused with a message naming the problem.
#[test]
fn distance_prints_w2_and_refuses_what_it_cannot_compute() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let line = "mesh = { cells = [8], lower = [0.0], upper = [2.0] }\n\
                initial = { kind = \"uniform\" }\nenergy = { entropy = 1.0 }\n\
                scheme = { tau = 0.1, steps = 1 }\nsolver = { kind = \"conic\" }\n";
    std::fs::write(p("line.toml"), line).unwrap();
    let save = |name: &str, v: Vec<f64>| write_npy(&dir.path().join(name), &[v.len()], v);
    // Uniform on [0, 2] (mass 1) vs uniform on [0, 1]: quantile functions X_a(s) = 2s and
    // X_b(s) = s, W² = ∫₀¹ (2s − s)² ds = 1/3.
    save("wide.npy", vec![0.5; 8]);
    save("narrow.npy", vec![1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
    // A block moved by 3 cells (0.75): W₂ = 0.75.
    save("left.npy", vec![2.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    save("right.npy", vec![0.0, 0.0, 0.0, 2.0, 2.0, 0.0, 0.0, 0.0]);
    for (a, b, want) in [
        ("wide.npy", "narrow.npy", (1.0f64 / 3.0).sqrt()),
        ("left.npy", "right.npy", 0.75),
        ("left.npy", "left.npy", 0.0),
    ] {
        let (ok, out, err) = jko(&["distance", &p("line.toml"), &p(a), &p(b)]);
        assert!(ok, "{a} {b}: {err}");
        let last = out.lines().last().unwrap();
        let w: f64 = last.trim_start_matches("W2 = ").parse().unwrap();
        assert!((w - want).abs() < 1e-12, "{a} {b}: {last}");
    }
    // Unequal masses: refused, naming the mass.
    save("heavy.npy", vec![1.0; 8]);
    let (ok, out, err) = jko(&["distance", &p("line.toml"), &p("wide.npy"), &p("heavy.npy")]);
    assert!(!ok && out.is_empty() && err.contains("mass"), "{err}");
    // A 2D grid (back-and-forth method, issue 20): a block of 2×2 cells moved by (1, 3) cells of
    // width 0.5, W₂ = |(0.5, 1.5)| exactly for the cell-centre measures.
    std::fs::write(
        p("square.toml"),
        line.replace(
            "cells = [8], lower = [0.0], upper = [2.0]",
            "cells = [4, 8], lower = [0.0, 0.0], upper = [2.0, 4.0]",
        ),
    )
    .unwrap();
    let block = |i0: usize, j0: usize| -> Vec<f64> {
        (0..32)
            .map(|k| {
                let (i, j) = (k / 8, k % 8);
                if (i0..i0 + 2).contains(&i) && (j0..j0 + 2).contains(&j) {
                    1.0
                } else {
                    0.0
                }
            })
            .collect()
    };
    save("block-a.npy", block(0, 1));
    save("block-b.npy", block(1, 4));
    let (ok, out, err) = jko(&[
        "distance",
        &p("square.toml"),
        &p("block-a.npy"),
        &p("block-b.npy"),
    ]);
    assert!(ok, "{err}");
    let last = out.lines().last().unwrap();
    let w: f64 = last.trim_start_matches("W2 = ").parse().unwrap();
    let want = (0.5f64 * 0.5 + 1.5 * 1.5).sqrt();
    assert!((w - want).abs() < 1e-12, "{last}");
}

//! A run killed with SIGKILL part way resumes with `--resume` and produces bit-identical
//! remaining steps; partial files never appear as results.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// `jko run CONFIG --out OUT -q [extra…]`, not started yet.
fn jko_run(config: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jko"));
    command
        .args([
            "run",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "-q",
        ])
        .args(extra);
    command
}

fn finished_steps(dir: &Path) -> usize {
    // Complete lines of the append-only record file.
    std::fs::read_to_string(dir.join("steps.jsonl"))
        .map(|t| t.matches('\n').count())
        .unwrap_or(0)
}

#[test]
fn sigkilled_run_resumes_bit_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("run.toml");
    let text = jko::examples::example("ou-1d")
        .unwrap()
        .replace("cells = [200]", "cells = [120]")
        .replace("steps = 10", "steps = 12");
    std::fs::write(&cfg, text).unwrap();
    let straight = tmp.path().join("straight");
    let status = jko_run(&cfg, &straight, &[]).status().unwrap();
    assert!(status.success());

    // Kill after a pseudo-random number of finished steps (printed for reproduction).
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let kill_after = 1 + (nanos % 8) as usize;
    eprintln!("killing after {kill_after} steps");
    let killed = tmp.path().join("killed");
    let mut child = jko_run(&cfg, &killed, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while finished_steps(&killed) < kill_after && start.elapsed() < Duration::from_secs(120) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill(); // SIGKILL on Unix
    let _ = child.wait();
    let done = finished_steps(&killed);
    eprintln!("killed with {done} steps finished");
    // Whatever exists is complete: every rho file that exists reads as a full array.
    for entry in std::fs::read_dir(&killed).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("rho_") && name.ends_with(".npy") {
            let a: ndarray::ArrayD<f64> = ndarray_npy::read_npy(entry.path()).unwrap();
            assert_eq!(a.shape(), &[120], "{name}");
        }
    }

    let status = jko_run(&cfg, &killed, &["--resume"]).status().unwrap();
    assert!(status.success());
    assert_eq!(finished_steps(&killed), 12);
    for step in 0..=12 {
        let name = format!("rho_{step:05}.npy");
        let a = std::fs::read(straight.join(&name)).unwrap();
        let b = std::fs::read(killed.join(&name)).unwrap();
        assert!(
            a == b,
            "{name} differs after resume (killed after {done} steps)"
        );
    }
}

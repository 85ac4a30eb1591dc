//! A run stopped part way and resumed produces the same remaining steps, bit for bit.

use jko::RunOptions;
use jko::config::Config;
use jko::error::RunError;
use ndarray::ArrayD;
use std::path::Path;

fn read(dir: &Path, step: usize) -> ArrayD<f64> {
    ndarray_npy::read_npy(dir.join(format!("rho_{step:05}.npy"))).unwrap()
}

/// `jko::run` of `config` writing to `dir` (resuming what is there when `resume`), stopped when
/// `stop` says so.
fn run_in(
    config: &Config,
    dir: &Path,
    resume: bool,
    stop: &dyn Fn() -> bool,
) -> Result<jko::RunResult, RunError> {
    let opts = RunOptions {
        out: Some(dir.to_path_buf()),
        resume,
        ..Default::default()
    };
    jko::run(config, Path::new("."), &opts, &mut [], stop)
}

#[test]
fn resumed_run_matches_an_uninterrupted_one() {
    let mut config = Config::from_toml(jko::examples::example("ou-1d").unwrap()).unwrap();
    config.mesh.cells = vec![60];
    config.scheme.steps = 6;
    let straight = tempfile::tempdir().unwrap();
    run_in(&config, straight.path(), false, &|| false).unwrap();

    // Interrupt after step 3 (the stop flag is polled between steps).
    let parted = tempfile::tempdir().unwrap();
    let calls = std::cell::Cell::new(0);
    let stop = || {
        calls.set(calls.get() + 1);
        calls.get() >= 3
    };
    let err = run_in(&config, parted.path(), false, &stop).unwrap_err();
    assert!(matches!(err, RunError::Interrupted(3)), "{err}");
    assert!(!parted.path().join("rho_00004.npy").exists());
    let header = std::fs::read_to_string(parted.path().join("run.json")).unwrap();
    assert!(header.contains("\"interrupted\""));

    let result = run_in(&config, parted.path(), true, &|| false).unwrap();
    assert_eq!(result.records.len(), 6);
    for step in 0..=6 {
        assert_eq!(
            read(straight.path(), step),
            read(parted.path(), step),
            "step {step}"
        );
    }

    // A changed config is refused.
    let mut other = config.clone();
    other.scheme.tau = 0.05;
    let err = run_in(&other, parted.path(), true, &|| false).unwrap_err();
    assert!(err.to_string().contains("config differs"), "{err}");
}

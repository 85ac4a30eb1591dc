//! `jko convergence` reproduces first order in (h, τ) for the one-step scheme on a non-Gaussian
//! 2D Fokker–Planck problem with an exact solution (linear drift on a box, `drift_box`).

use jko::config::Config;
use jko_cli::convergence::{Refine, convergence};
use std::path::Path;

#[test]
fn one_step_scheme_is_first_order_on_the_drift_box() {
    let config = Config::from_toml(
        r#"
[mesh]
cells = [10, 10]
lower = [0.0, 0.0]
upper = [1.0, 1.0]
[initial]
kind = "drift_box"
modes = [1, 1]
amplitude = [0.6, 0.6]
[energy]
entropy = 0.2
potential = { kind = "linear", slope = [1.0, -0.6] }
[scheme]
tau = 0.1
steps = 2
[solver]
kind = "newton"
"#,
    )
    .unwrap();
    let refine = Refine::parse("h,tau").unwrap();
    let report = convergence(&config, Path::new("."), refine, 4, &mut |_| {}).unwrap();
    assert!(
        report.reference.starts_with("exact"),
        "{}",
        report.reference
    );
    let errors: Vec<f64> = report.rows.iter().map(|r| r.error).collect();
    assert!(errors.windows(2).all(|w| w[1] < w[0]), "{errors:?}");
    let last = report.rows.last().unwrap().order.unwrap();
    assert!(
        (0.8..1.3).contains(&last),
        "observed order {last} ({errors:?})"
    );
    let dir = tempfile::tempdir().unwrap();
    report.write(dir.path()).unwrap();
    assert!(
        std::fs::read_to_string(dir.path().join("convergence.md"))
            .unwrap()
            .contains("| [80, 80] |")
    );
}

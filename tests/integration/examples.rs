//! Every built-in example runs with its configured backend and every invariant holds on every
//! step (the driver checks them; here they are re-checked from the written files).

use crate::kit::{run_in_memory, run_in_tempdir};
use jko::config::Config;
use jko::examples::EXAMPLES;
use ndarray::ArrayD;
use std::path::Path;

#[test]
fn every_builtin_example_runs_with_its_invariants() {
    for (name, _, text) in EXAMPLES {
        let mut config = Config::from_toml(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        // A few steps keep the test short; `scripts/setup-and-run.sh NAME` runs them in full.
        config.scheme.steps = config.scheme.steps.min(4);
        let (dir, result) = run_in_tempdir(&config, Path::new("."), false)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(result.records.len(), config.scheme.steps, "{name}");
        let problem = config.build(Path::new(".")).unwrap();
        let mesh = &problem.mesh;
        let m0 = mesh.mass(&problem.initial);
        let mut prev_energy = problem.energy.value(mesh, &problem.initial).unwrap();
        for r in &result.records {
            let file = dir.path().join(format!("rho_{:05}.npy", r.step));
            let a: ArrayD<f64> = ndarray_npy::read_npy(&file).unwrap();
            let rho = mesh.from_grid_array("rho", &a).unwrap();
            let mass = mesh.mass(&rho);
            assert!(
                (mass - m0).abs() <= 1e-9 * m0,
                "{name} step {}: mass {mass} vs {m0}",
                r.step
            );
            let min = rho.iter().cloned().fold(f64::INFINITY, f64::min);
            assert!(min >= -1e-10, "{name} step {}: min {min}", r.step);
            if let Some(rmax) = problem.energy.max_density {
                let max = rho.iter().cloned().fold(0.0, f64::max);
                assert!(
                    max <= rmax * (1.0 + 1e-8),
                    "{name} step {}: max {max}",
                    r.step
                );
            }
            // No interaction in the examples, so the JKO inequality holds for the full energy.
            let e = problem.energy.value(mesh, &rho).unwrap();
            let allowed = 1e-7 * (prev_energy.abs() + m0);
            assert!(
                e + r.kinetic / (2.0 * config.scheme.tau) <= prev_energy + allowed,
                "{name} step {}: energy inequality {e} + {} > {prev_energy}",
                r.step,
                r.kinetic / (2.0 * config.scheme.tau)
            );
            prev_energy = e;
        }
    }
}

/// Known limitations (documented in the README), asserted so they are neither hidden nor
/// forgotten: each must fail with an error, never a panic or a wrong result.
const KNOWN_FAILURES: &[&str] = &[
    // bfm with the cap at β = 0.01 (crowd-2d at its 32²): the semismooth Newton stalls in the
    // continuation at step 2 (NotConverged); β = 0.1 and 0.5 and 12²/16² run (issue 20, round 8).
    "crowd-2d/bfm",
];

/// Every backend on every built-in example it treats (3 steps) whose name `include` accepts:
/// the names of the runs that returned a result and the errors of the others.
fn run_the_examples_each_backend_treats(
    include: impl Fn(&str) -> bool,
) -> (Vec<String>, Vec<String>) {
    let (mut solved, mut failed) = (Vec::new(), Vec::new());
    for (name, _, text) in EXAMPLES {
        for backend in ["newton", "sinkhorn", "quantile", "flow", "bfm"] {
            let run = format!("{name}/{backend}");
            if !include(&run) {
                continue;
            }
            let mut config = Config::from_toml(text).unwrap();
            config.scheme.steps = 3;
            config.solver = jko::backend::SolverConfig::default_for(backend).unwrap();
            let problem = config.build(Path::new(".")).unwrap();
            let solver = config.solver.build().unwrap();
            // What the backend refuses (a term, or a mesh: quantile is 1D only) is skipped.
            if solver
                .check_supported(&problem.mesh, &problem.energy.terms())
                .is_err()
            {
                continue;
            }
            match run_in_memory(&config, Path::new(".")) {
                Ok(r) => {
                    assert_eq!(r.records.len(), 3, "{run}");
                    solved.push(run);
                }
                Err(e) => failed.push(format!("{run}: {e}")),
            }
        }
    }
    eprintln!("solved: {solved:?}\nfailed: {failed:#?}");
    (solved, failed)
}

fn is_known_failure(run: &str) -> bool {
    KNOWN_FAILURES.contains(&run)
}

/// Every backend on every built-in example it treats (3 steps), the known limitations
/// (KNOWN_FAILURES) aside: the driver's invariant checks pass (mass, positivity, bound, and the
/// energy inequality where it is a theorem).
#[test]
fn every_backend_runs_the_examples_it_treats() {
    let (_, failed) = run_the_examples_each_backend_treats(|run| !is_known_failure(run));
    assert!(failed.is_empty(), "unexpected failures: {failed:#?}");
}

/// The known limitations are asserted so they are not forgotten: each still fails, with an
/// error. Ignored in CI because it is slow, not because it fails: crowd-2d/bfm at 32² spends
/// about two minutes (2 cores) in the continuation before it gives up, more than the rest of
/// this binary together. CI keeps the property that a bfm failure is an error and not a panic
/// or a wrong result through the same driver path (`every_backend_runs_the_examples_it_treats`
/// and `jko compare data/compare/robust-ci.toml --check`, which fails on any error or panic);
/// run this with `cargo test -p jko --test integration -- --ignored known_limitations`.
#[test]
#[ignore = "slow (about two minutes): the known failures of the built-in examples"]
fn known_limitations_of_the_examples_still_fail_with_an_error() {
    let (solved, failed) = run_the_examples_each_backend_treats(is_known_failure);
    for k in KNOWN_FAILURES {
        assert!(
            failed.iter().any(|f| f.starts_with(&format!("{k}: "))),
            "{k} now works: update KNOWN_FAILURES and the docs"
        );
    }
    assert!(
        solved.is_empty(),
        "{solved:?} now work: update KNOWN_FAILURES and the docs"
    );
}

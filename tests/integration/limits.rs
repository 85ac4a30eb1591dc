//! Resource limits: every backend estimates the memory of a step before allocating it, and a
//! run whose estimate exceeds the limit (`[limits] max_memory_gib`, `JKO_MAX_MEMORY_GIB`, or
//! the available memory) is refused at once with a typed error naming the backend, the
//! estimate and the limit.

use jko::config::Config;
use jko::error::RunError;
use jko::plan::{Plan, available_memory};
use jko_core::{EnergyTerm, InputError, Mesh, StepSolver};
use std::path::Path;
use std::time::Instant;

fn config(cells: &str, lower: &str, upper: &str, mean: &str, std: &str, solver: &str) -> String {
    format!(
        r#"
[mesh]
cells = {cells}
lower = {lower}
upper = {upper}
[initial]
kind = "gaussian"
mean = {mean}
std = {std}
[energy]
entropy = 1.0
[scheme]
tau = 0.1
steps = 1
[solver]
{solver}
"#
    )
}

fn small(solver: &str) -> String {
    config("[20]", "[-4.0]", "[4.0]", "[0.5]", "[0.7]", solver)
}

/// Plan a config: the memory checks are the plan's.
fn build(text: &str) -> Result<jko::config::Problem, RunError> {
    Ok(Plan::build(&Config::from_toml(text)?, Path::new("."))?.problem)
}

const TERMS: &[EnergyTerm] = &[EnergyTerm::Entropy, EnergyTerm::Potential];

fn backends() -> Vec<Box<dyn StepSolver>> {
    jko::backend::BACKENDS
        .iter()
        .map(|b| b.defaults().build().unwrap())
        .collect()
}

#[test]
fn every_backend_estimates_and_estimates_grow_with_the_mesh() {
    let coarse = Mesh::grid(&[100], &[0.0], &[1.0]).unwrap();
    let fine = Mesh::grid(&[1000], &[0.0], &[1.0]).unwrap();
    for s in backends() {
        let a = s.memory_estimate(&coarse, TERMS);
        let b = s.memory_estimate(&fine, TERMS);
        let (Some(a), Some(b)) = (a, b) else {
            panic!("{} has no memory estimate", s.name());
        };
        // The quantile backend's size is its node count, not the mesh's.
        if s.name() == "quantile" {
            assert!(a > 0 && b >= a, "{}: {a} {b}", s.name());
        } else {
            assert!(b > 5 * a, "{}: {a} -> {b} for 10x the cells", s.name());
        }
    }
    // Multi-level conic: L levels cost at least L times the one-step program.
    let one = jko_conic::ConicSolver::new(Default::default()).unwrap();
    let eight = jko_conic::ConicSolver::new(jko_conic::ConicParams {
        levels: Some(8),
        ..Default::default()
    })
    .unwrap();
    let (e1, e8) = (
        one.memory_estimate(&fine, TERMS).unwrap(),
        eight.memory_estimate(&fine, TERMS).unwrap(),
    );
    assert!(e8 >= 6 * e1, "{e1} {e8}");
}

#[test]
fn a_tiny_limit_refuses_a_small_mesh_with_a_named_error() {
    let text = small("kind = \"conic\"") + "[limits]\nmax_memory_gib = 0.0001\n";
    let err = build(&text).unwrap_err();
    match &err {
        RunError::Input(InputError::OutOfMemory {
            what, bytes, limit, ..
        }) => {
            assert!(what.contains("conic"), "{what}");
            assert!(*bytes > *limit);
            assert_eq!(*limit, (0.0001 * (1u64 << 30) as f64) as u64);
        }
        other => panic!("expected OutOfMemory, got {other:?}"),
    }
    let msg = err.to_string();
    for word in ["conic", "needs about", "MiB", "max_memory_gib", "20 mesh"] {
        assert!(msg.contains(word), "`{msg}` lacks `{word}`");
    }
    // The same config with room to spare builds.
    let text = small("kind = \"conic\"") + "[limits]\nmax_memory_gib = 1.0\n";
    build(&text).unwrap();
    // A limit must be a positive number.
    let text = small("kind = \"conic\"") + "[limits]\nmax_memory_gib = -1.0\n";
    assert!(
        build(&text)
            .unwrap_err()
            .to_string()
            .contains("max_memory_gib")
    );
}

#[test]
fn a_step_beyond_the_machine_is_refused_before_allocating() {
    let Some(available) = available_memory() else {
        eprintln!("no /proc/meminfo: nothing to check");
        return;
    };
    if std::env::var("JKO_MAX_MEMORY_GIB").is_ok() {
        eprintln!("JKO_MAX_MEMORY_GIB is set: the default limit is not the machine's");
        return;
    }
    // A dense Gibbs kernel on 10⁵ cells is an 80 GB matrix; the mesh is small.
    let dense = small("kind = \"sinkhorn\"\nkernel = \"dense\"").replace("[20]", "[100000]");
    // Multi-level conic on 256² with 64 levels: ~2·10⁸ unknowns.
    let conic = config(
        "[256, 256]",
        "[-4.0, -4.0]",
        "[4.0, 4.0]",
        "[0.5, 0.0]",
        "[0.7, 0.7]",
        "kind = \"conic\"\nlevels = 64",
    );
    for (name, text) in [("sinkhorn", dense), ("conic", conic)] {
        let start = Instant::now();
        let err = build(&text).unwrap_err();
        let secs = start.elapsed().as_secs_f64();
        match &err {
            RunError::Input(InputError::OutOfMemory {
                what, bytes, limit, ..
            }) => {
                assert!(what.contains(name), "{what}");
                assert!(*bytes > available / 2 && *bytes > *limit, "{bytes} {limit}");
            }
            other => panic!("{name}: expected OutOfMemory, got {other:?}"),
        }
        assert!(err.to_string().contains("available"), "{err}");
        assert!(secs < 2.0, "{name}: refusal took {secs} s");
    }
    // A mesh that itself would not fit (4·10⁸·... bytes) is refused before it is built,
    // even though its cell count is under MAX_CELLS.
    let start = Instant::now();
    let huge = config(
        "[500, 500, 500]",
        "[0.0, 0.0, 0.0]",
        "[1.0, 1.0, 1.0]",
        "[0.5, 0.5, 0.5]",
        "[0.2, 0.2, 0.2]",
        "kind = \"newton\"",
    );
    let err = build(&huge).unwrap_err();
    assert!(
        matches!(&err, RunError::Input(InputError::OutOfMemory { what, .. }) if what.contains("mesh")),
        "{err:?}"
    );
    assert!(start.elapsed().as_secs_f64() < 1.0);
}

/// The library returns the typed error (with its diagnostics) for a step that does not
/// converge, here Newton at τ = 10⁹ on a porous medium (see tests/cli.rs), while τ = 10
/// converges from the same state.
#[test]
fn a_step_that_does_not_converge_is_a_typed_error() {
    use jko_core::{JkoStep, StepError};
    let text = small("kind = \"newton\"").replace(
        "entropy = 1.0",
        "porous = { m = 2.0 }\npotential = { kind = \"quadratic\" }",
    );
    let problem = build(&text).unwrap();
    let (mesh, rho0) = (&problem.mesh, &problem.initial);
    let frozen = problem.energy.freeze(mesh, rho0).unwrap();
    let solver = jko_newton::NewtonSolver::new(Default::default()).unwrap();
    let ok = JkoStep::new(mesh, rho0, 10.0, &frozen).unwrap();
    if let Err(e) = StepSolver::solve(&solver, &ok, None) {
        panic!("tau = 10 should converge: {e}");
    }
    let big = JkoStep::new(mesh, rho0, 1e9, &frozen).unwrap();
    let err = match StepSolver::solve(&solver, &big, None) {
        Err(e) => e,
        Ok(out) => panic!("expected NotConverged, got {:?}", out.info),
    };
    assert!(err.to_string().contains("smaller time step tau"), "{err}");
    match err {
        StepError::NotConverged {
            solver, iterations, ..
        } => {
            assert_eq!(solver, "newton");
            assert_eq!(iterations, jko_newton::NewtonParams::default().max_iter);
        }
        other => panic!("expected NotConverged, got {other:?}"),
    }
}

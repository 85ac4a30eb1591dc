//! Newton iterations per step on the robustness matrix's hardest case of each iteration target
//! (issue 14): crowd-2d at 64² (congestion, 3 steps τ = 0.2), porous m = 3 from a Barenblatt
//! profile in 2D at 64² (data/compare/robust/porous-m3-2d.toml: 3 steps τ = 0.01; `porous-raw`:
//! the same profile without normalising its samples to mass 1) and the
//! narrow Gaussian on 1000 cells (Fokker–Planck, data/compare/robust/narrow-1d.toml: 3 steps
//! τ = 0.05; `double-well`: data/compare/robust/double-well-1d.toml; `double-well-2d`: issue 14's
//! 2D double well). Each step is warm-started from the previous one, as `jko run` does.
//!
//! cargo run --profile test -p jko-newton --example class_iterations [crowd|crowd32|porous|porous-raw|porous2|double-well|double-well-2d|double-well-2d-robust|narrow]

use jko_core::{Energy, JkoStep, Mesh, Potential, StepSolver, WarmStart};
use jko_newton::{NewtonParams, NewtonSolver};
use ndarray::Array1;
use std::time::Instant;

// The test problems (Gaussian data, crowd-2d) are the integration tests' own.
#[path = "../tests/common/mod.rs"]
mod common;
use common::{crowd_2d, gaussian};

/// data/examples/crowd-2d.toml on an n × n grid (3 steps of τ = 0.2).
fn crowd(n: usize) -> (Mesh, Energy, Array1<f64>, f64) {
    let (mesh, energy, rho) = crowd_2d(n);
    (mesh, energy, rho, 0.2)
}

/// The Barenblatt profile at t₀ = 0.05 sampled at cell centres on [−1.5, 1.5]^d, normalised to
/// mass 1 as `jko run` does (`normalise`), or the raw samples (mass 1 − 2e-3 at 64²).
fn porous(m: f64, d: usize, n: usize, normalise: bool) -> (Mesh, Energy, Array1<f64>, f64) {
    let mesh = Mesh::grid(&vec![n; d], &vec![-1.5; d], &vec![1.5; d]).unwrap();
    let b = jko_core::exact::Barenblatt::new(m, d, 1.0).unwrap();
    let mut rho = mesh.sample(|x| b.density(0.05, x));
    if normalise {
        let mass = mesh.mass(&rho);
        rho /= mass;
    }
    let energy = Energy {
        porous: Some(m),
        ..Energy::default()
    };
    (mesh, energy, rho, 0.01)
}

fn narrow() -> (Mesh, Energy, Array1<f64>, f64) {
    let mesh = Mesh::grid(&[1000], &[-5.0], &[5.0]).unwrap();
    let energy = Energy::fokker_planck(
        1.0,
        Potential::Quadratic {
            center: vec![0.0],
            stiffness: 1.0,
        },
    );
    let rho = gaussian(&mesh, &[0.5], &[0.1], 1.0);
    (mesh, energy, rho, 0.05)
}

fn double_well() -> (Mesh, Energy, Array1<f64>, f64) {
    let mesh = Mesh::grid(&[400], &[-2.5], &[2.5]).unwrap();
    let energy = Energy::fokker_planck(0.1, Potential::DoubleWell);
    let rho = gaussian(&mesh, &[0.2], &[0.5], 1.0);
    (mesh, energy, rho, 0.1)
}

/// The 2D double well of issue 14 (64², β = 0.1, τ = 0.1, a Gaussian between the wells), and
/// data/compare/robust/double-well-2d.toml (β = 0.2, another Gaussian) with `robust`.
fn double_well_2d(robust: bool) -> (Mesh, Energy, Array1<f64>, f64) {
    let mesh = Mesh::grid(&[64, 64], &[-2.5, -2.5], &[2.5, 2.5]).unwrap();
    let (beta, mean, std) = if robust {
        (0.2, [0.3, -0.2], [0.6, 0.6])
    } else {
        (0.1, [0.2, 0.0], [0.5, 0.5])
    };
    let energy = Energy::fokker_planck(beta, Potential::DoubleWell);
    let rho = gaussian(&mesh, &mean, &std, 1.0);
    (mesh, energy, rho, 0.1)
}

fn run(what: &str, (mesh, energy, mut rho, tau): (Mesh, Energy, Array1<f64>, f64)) {
    let solver = NewtonSolver::new(NewtonParams::default()).unwrap();
    let mut warm: Option<WarmStart> = None;
    let mut its = Vec::new();
    let t0 = Instant::now();
    for step in 0..3 {
        let e = energy.freeze(&mesh, &rho).unwrap();
        let p = JkoStep::new(&mesh, &rho, tau, &e).unwrap();
        let out = match solver.step(&p, warm.as_ref()) {
            Ok(o) => o,
            Err(err) => {
                println!("{what} step {step}: FAILED {err}");
                return;
            }
        };
        let h: Vec<String> = out
            .info
            .history
            .iter()
            .map(|v| format!("{v:.0e}"))
            .collect();
        println!(
            "{what} step {step}: {} it; notes {:?}; history {}",
            out.info.iterations,
            out.info.notes,
            h.join(" ")
        );
        its.push(out.info.iterations);
        warm = Some(WarmStart::from(&out));
        rho = out.rho;
    }
    println!(
        "{what}: iterations {its:?} ({:.2} s)",
        t0.elapsed().as_secs_f64()
    );
}

fn main() {
    let which: Vec<String> = std::env::args().skip(1).collect();
    let want = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    if want("crowd") {
        run("crowd-2d 64²", crowd(64));
    }
    if want("crowd32") {
        run("crowd-2d 32²", crowd(32));
    }
    if want("porous") {
        run("porous m3 2d 64²", porous(3.0, 2, 64, true));
    }
    if want("porous-raw") {
        run("porous m3 2d 64² (raw samples)", porous(3.0, 2, 64, false));
    }
    if want("porous2") {
        run("porous m2 2d 64²", porous(2.0, 2, 64, true));
    }
    if want("double-well") {
        run("double well 1d 400", double_well());
    }
    if want("double-well-2d") {
        run("double well 2d 64² β 0.1", double_well_2d(false));
    }
    if want("double-well-2d-robust") {
        run("double well 2d 64² β 0.2 (robust)", double_well_2d(true));
    }
    if want("narrow") {
        run("narrow 1d 1000", narrow());
    }
}

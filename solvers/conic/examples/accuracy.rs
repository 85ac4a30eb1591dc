//! Accuracy and iteration counts of one OU 2D step (data/examples/ou-2d.toml: Gaussian mean
//! (1, −0.5), std (0.5, 0.8) on [-5, 5]², τ = 0.1) at the default tolerances, against a run at
//! gap 1e-14 / feasibility 1e-13.
//! `cargo run --release -p jko-conic --example accuracy -- [--levels L] [--steps S] [--box B]
//! [--qdldl] [--verbose]`: `--box B` puts the same Gaussian on [-B, B]² (B = 5 by default;
//! B = 3 cuts the tails at 1e-14 of the peak), `--verbose` prints Clarabel's log of the
//! default-tolerance runs.

// max|Δρ| and max ρ as the tests measure them (tests/common).
#[path = "../tests/common/mod.rs"]
mod common;

use common::{max_abs, max_abs_diff};
use jko_conic::{ConicParams, ConicSolver};
use jko_core::exact::Gaussian;
use jko_core::{Energy, JkoStep, Mesh, StepSolver};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<usize>().ok())
    };
    let levels = flag("--levels");
    let steps = flag("--steps").unwrap_or(1);
    let half = flag("--box").unwrap_or(5) as f64;
    let default = ConicSolver::new(ConicParams {
        levels,
        verbose: args.iter().any(|a| a == "--verbose"),
        direct_solver: if args.iter().any(|a| a == "--qdldl") {
            jko_conic::DirectSolver::Qdldl
        } else {
            jko_conic::DirectSolver::Auto
        },
        ..ConicParams::default()
    })?;
    let tight = ConicSolver::new(ConicParams {
        tol_gap_abs: 1e-14,
        tol_gap_rel: 1e-14,
        tol_feas: 1e-13,
        max_iter: 400,
        levels,
        ..ConicParams::default()
    })?;
    let energy = Energy::ornstein_uhlenbeck(2);
    let g0 = Gaussian::diagonal(&[1.0, -0.5], &[0.5, 0.8]);
    println!("| cells | step | default: status | it | s | tight: status | it | max|Δρ|/max ρ |");
    println!("|---|---|---|---|---|---|---|---|");
    for n in [32usize, 64] {
        let mesh = Mesh::grid(&[n, n], &[-half, -half], &[half, half])?;
        let mut rho = mesh.sample(|x| g0.density(x));
        let m = mesh.mass(&rho);
        rho /= m;
        for step in 0..steps {
            let e = energy.freeze(&mesh, &rho)?;
            let p = JkoStep::new(&mesh, &rho, 0.1, &e)?;
            let a = default.step(&p, None)?;
            let b = tight.step(&p, None)?;
            let (max, d) = (max_abs(&b.rho), max_abs_diff(&a.rho, &b.rho));
            println!(
                "| {n}² | {step} | {:?} | {} | {:.2} | {:?} | {} | {:.2e} |",
                a.info.status,
                a.info.iterations,
                a.info.wall_time,
                b.info.status,
                b.info.iterations,
                d / max
            );
            rho = b.rho;
        }
    }
    Ok(())
}

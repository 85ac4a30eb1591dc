//! Agreement trend between the Sinkhorn (entropic) step and the conic one-step scheme
//! (docs/mathematics.md §2.1) on the same mesh, as ε → 0. The two discretise W² differently (entropic plan
//! between cell centres vs two-point-flux Benamou–Brenier with one time level), so they do not
//! converge to each other: the gap shrinks with the entropic bias and levels off at the
//! difference of the schemes. Both are also compared with the exact JKO iterate (OU).
//!
//! Run: cargo run --release -p jko-sinkhorn --features conic-study --example conic_trend

use jko_conic::{ConicParams, ConicSolver};
use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
use jko_core::{Energy, JkoStep, Mesh, Potential, StepOutput, StepSolver};
use jko_sinkhorn::{SinkhornParams, SinkhornSolver};

/// The Sinkhorn step of `problem` at a fixed ε (other parameters at their defaults).
fn sinkhorn_step(problem: &JkoStep, eps: f64) -> StepOutput {
    SinkhornSolver::new(SinkhornParams {
        epsilon: Some(eps),
        ..Default::default()
    })
    .unwrap()
    .step(problem, None)
    .unwrap()
}

fn main() {
    // 1D OU on [-3, 3], 100 cells, one step τ = 0.1 from N(0.5, 0.36).
    let mesh = Mesh::grid(&[100], &[-3.0], &[3.0]).unwrap();
    let g0 = Gaussian::diagonal(&[0.5], &[0.6]);
    let rho0 = mesh.sample(|x| g0.density(x));
    let rho0 = &rho0 / mesh.mass(&rho0);
    let energy = Energy::ornstein_uhlenbeck(1).freeze(&mesh, &rho0).unwrap();
    let problem = JkoStep::new(&mesh, &rho0, 0.1, &energy).unwrap();
    let exact = OrnsteinUhlenbeck::standard(1).jko_step(&g0, 0.1);
    let rho_exact = mesh.sample(|x| exact.density(x));
    let conic = ConicSolver::new(ConicParams::default())
        .unwrap()
        .step(&problem, None)
        .unwrap();
    println!("## OU 1D on [-3,3], 100 cells (h^2 = 3.6e-3), tau = 0.1, one step");
    println!(
        "conic one-step: L1 to exact JKO {:.3e} (status {:?})",
        mesh.l1_distance(&conic.rho, &rho_exact),
        conic.info.status
    );
    println!("| eps | L1(sinkhorn, conic) | L1(sinkhorn, exact) | sinkhorn iterations |");
    println!("|---|---|---|---|");
    for eps in [1e-1, 3e-2, 1e-2, 3e-3, 1e-3] {
        let out = sinkhorn_step(&problem, eps);
        println!(
            "| {eps:.0e} | {:.3e} | {:.3e} | {} |",
            mesh.l1_distance(&out.rho, &conic.rho),
            mesh.l1_distance(&out.rho, &rho_exact),
            out.info.iterations
        );
    }

    // Crowd motion 2D, 16², congestion active.
    let mesh = Mesh::grid(&[16, 16], &[0.0; 2], &[1.0; 2]).unwrap();
    let rho0 = mesh.sample(|x| {
        if (x[0] - 0.6).abs() < 0.3 && (x[1] - 0.6).abs() < 0.3 {
            0.9
        } else {
            0.05
        }
    });
    let energy = Energy::crowd_motion(Potential::quadratic(vec![0.0, 0.0], 4.0), 1.0)
        .freeze(&mesh, &rho0)
        .unwrap();
    let problem = JkoStep::new(&mesh, &rho0, 0.05, &energy).unwrap();
    let conic = ConicSolver::new(ConicParams::default())
        .unwrap()
        .step(&problem, None)
        .unwrap();
    println!(
        "\n## Crowd motion 2D, 16^2 on the unit square, rho_max = 1, tau = 0.05, one step (h^2 = 3.9e-3)"
    );
    println!(
        "conic one-step: max rho {:.6}",
        conic.rho.iter().fold(0.0f64, |a, &b| a.max(b))
    );
    println!("| eps | L1(sinkhorn, conic) | max rho (sinkhorn) | sinkhorn iterations |");
    println!("|---|---|---|---|");
    for eps in [3e-2, 1e-2, 3e-3, 1e-3] {
        let out = sinkhorn_step(&problem, eps);
        println!(
            "| {eps:.0e} | {:.3e} | {:.12} | {} |",
            mesh.l1_distance(&out.rho, &conic.rho),
            out.rho.iter().fold(0.0f64, |a, &b| a.max(b)),
            out.info.iterations
        );
    }
}

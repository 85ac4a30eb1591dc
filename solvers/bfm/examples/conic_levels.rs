//! Issue 20's "agreement with conic multi-level as levels grow, on the same grid".
//!
//! OU 2D as in `data/examples/ou-2d.toml` (N((1, −0.5), diag(0.5², 0.8²)), β = 1, V = |x|²/2,
//! box [−5, 5]², τ = 0.1): `steps` JKO steps by bfm and by `conic` with `levels` L (the
//! multi-level Benamou–Brenier scheme, which converges to the exact JKO step as L grows and h
//! falls) and by conic's one-step scheme, on the same N² grid. Printed: L1 = Σ|K||ρ_a − ρ_b|
//! between bfm and each conic run, and each against the exact JKO iterate (Gaussian
//! recursion, sampled at the cell centres and normalised to mass 1), with the wall time per step.
//!
//! `cargo run --profile test -p jko-bfm --example conic_levels -- [N ...]`
//! (env `STEPS`, default 1; `LEVELS`, default "1,2,4,8").
use jko_bfm::{BfmParams, BfmSolver};
use jko_conic::{ConicParams, ConicSolver};
use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
use jko_core::{Energy, JkoStep, Mesh, StepSolver, WarmStart};
use ndarray::Array1;
use std::time::Instant;

mod common;

/// The final density after `steps` steps, and the mean seconds per step.
fn run(
    solver: &dyn StepSolver,
    mesh: &Mesh,
    rho0: &Array1<f64>,
    steps: usize,
) -> Result<(Array1<f64>, f64), Box<dyn std::error::Error>> {
    let energy = Energy::ornstein_uhlenbeck(2);
    let mut rho = rho0.clone();
    let mut warm: Option<WarmStart> = None;
    let t0 = Instant::now();
    for _ in 0..steps {
        let frozen = energy.freeze(mesh, &rho)?;
        let out = solver.step(&JkoStep::new(mesh, &rho, 0.1, &frozen)?, warm.as_ref())?;
        warm = Some(WarmStart::from(&out));
        rho = out.rho;
    }
    Ok((rho, t0.elapsed().as_secs_f64() / steps as f64))
}

fn l1(mesh: &Mesh, a: &Array1<f64>, b: &Array1<f64>) -> f64 {
    (0..mesh.n_cells())
        .map(|k| mesh.volumes()[k] * (a[k] - b[k]).abs())
        .sum()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sizes = common::sizes_from_args(&[16, 32]);
    let steps: usize = common::env_or("STEPS", 1);
    let levels: Vec<usize> = common::env_or("LEVELS", "1,2,4,8".to_string())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let g0 = Gaussian::diagonal(&[1.0, -0.5], &[0.5, 0.8]);
    let exact = OrnsteinUhlenbeck::standard(2).jko_iterates(&g0, 0.1, steps);
    let bfm = BfmSolver::new(BfmParams::default())?;
    println!("OU 2D, tau = 0.1, {steps} step(s), box [-5, 5]^2");
    println!("| N | run | L1 vs bfm | L1 vs exact JKO | s/step |");
    println!("|---|---|---|---|---|");
    for &n in &sizes {
        let mesh = Mesh::grid(&[n, n], &[-5.0, -5.0], &[5.0, 5.0])?;
        let rho0 = mesh.sample(|x| g0.density(x));
        let rho0 = &rho0 / mesh.mass(&rho0);
        let ex = mesh.sample(|x| exact.density(x));
        let ex = &ex / mesh.mass(&ex);
        let (rb, tb) = run(&bfm, &mesh, &rho0, steps)?;
        println!("| {n} | bfm | 0 | {:.3e} | {tb:.2e} |", l1(&mesh, &rb, &ex));
        let runs = std::iter::once(None).chain(levels.iter().map(|&l| Some(l)));
        for lv in runs {
            let conic = ConicSolver::new(ConicParams {
                levels: lv,
                ..ConicParams::default()
            })?;
            let name = lv.map_or("conic one-step".to_string(), |l| format!("conic L = {l}"));
            match run(&conic, &mesh, &rho0, steps) {
                Ok((rc, tc)) => println!(
                    "| {n} | {name} | {:.3e} | {:.3e} | {tc:.2e} |",
                    l1(&mesh, &rc, &rb),
                    l1(&mesh, &rc, &ex)
                ),
                Err(e) => println!("| {n} | {name} | failed: {e} | | |"),
            }
        }
    }
    Ok(())
}

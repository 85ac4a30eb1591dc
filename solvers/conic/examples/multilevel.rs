//! Convergence studies of the multi-level dynamic scheme (docs/mathematics.md §2.2).
//! `cargo run --release -p jko-conic --example multilevel [translation|ou|ou-h|ou-levels]`
//!
//! - `translation`: the discrete W_h² of a cos² bump and its translate by δ = 0.4 on [-1, 1],
//!   relative to the exact δ²·mass, against L and h.
//! - `ou`: OU in 1D on [-5, 5] from N(1, 0.5²), τ = 0.1, 3 steps: errors of mean, variance and
//!   L1 against the exact JKO iterate, for the one-step scheme and for joint refinement of
//!   L and h.
//! - `ou-h`, `ou-levels`: the same with only h (L = 16) or only L (N = 800) refined.

// The cos² bump of the translation study is the tests' (tests/common).
#[path = "../tests/common/mod.rs"]
mod common;

use common::cos2_bump;
use jko_conic::{ConicParams, ConicSolver};
use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
use jko_core::{Energy, JkoStep, Mesh, StepSolver};
use ndarray::Array1;

fn solver(levels: Option<usize>) -> ConicSolver {
    ConicSolver::new(ConicParams {
        levels,
        ..ConicParams::default()
    })
    .expect("valid parameters")
}

fn translation() -> Result<(), Box<dyn std::error::Error>> {
    let delta = 0.4;
    println!("| N | L | action/(δ² M) − 1 |");
    println!("|---|---|---|");
    for n in [50usize, 100, 200] {
        let mesh = Mesh::grid(&[n], &[-1.0], &[1.0])?;
        let from = mesh.sample(|x| cos2_bump(x[0], -0.2));
        let to = mesh.sample(|x| cos2_bump(x[0], -0.2 + delta));
        let mass = mesh.mass(&from);
        for l in [1usize, 2, 4, 8, 16] {
            match solver(Some(l)).transport(&mesh, &from, &to) {
                Ok(path) => println!(
                    "| {n} | {l} | {:.3e} |",
                    path.action / (delta * delta * mass) - 1.0
                ),
                Err(e) => println!("| {n} | {l} | {e} |"),
            }
        }
        match solver(None).transport(&mesh, &from, &to) {
            Ok(path) => println!(
                "| {n} | one-step | {:.3e} |",
                path.action / (delta * delta * mass) - 1.0
            ),
            Err(e) => println!("| {n} | one-step | {e} |"),
        }
    }
    Ok(())
}

struct Errors {
    mean: f64,
    var: f64,
    l1: f64,
    iterations: usize,
    seconds: f64,
}

/// OU on [-5, 5], N cells, `steps` steps of τ from N(1, 0.5²), errors against the exact JKO
/// iterate.
fn ou(
    n: usize,
    levels: Option<usize>,
    tau: f64,
    steps: usize,
) -> Result<Errors, Box<dyn std::error::Error>> {
    let mesh = Mesh::grid(&[n], &[-5.0], &[5.0])?;
    let g0 = Gaussian::diagonal(&[1.0], &[0.5]);
    let mut rho = mesh.sample(|x| g0.density(x));
    let m = mesh.mass(&rho);
    rho /= m;
    let energy = Energy::ornstein_uhlenbeck(1);
    let s = solver(levels);
    let (mut iterations, mut seconds) = (0, 0.0);
    for _ in 0..steps {
        let e = energy.freeze(&mesh, &rho)?;
        let p = JkoStep::new(&mesh, &rho, tau, &e)?;
        let out = s.step(&p, None)?;
        iterations += out.info.iterations;
        seconds += out.info.wall_time;
        rho = out.rho;
    }
    let exact = OrnsteinUhlenbeck::standard(1).jko_iterates(&g0, tau, steps);
    Ok(errors(&mesh, &rho, &exact, iterations, seconds))
}

fn errors(mesh: &Mesh, rho: &Array1<f64>, g: &Gaussian, iterations: usize, seconds: f64) -> Errors {
    let vols = mesh.volumes();
    let x = |k: usize| mesh.centre(k)[0];
    let m = mesh.mass(rho);
    let mean = (0..rho.len()).map(|k| vols[k] * rho[k] * x(k)).sum::<f64>() / m;
    let var = (0..rho.len())
        .map(|k| vols[k] * rho[k] * (x(k) - mean).powi(2))
        .sum::<f64>()
        / m;
    let l1 = (0..rho.len())
        .map(|k| vols[k] * (rho[k] - g.density(mesh.centre(k))).abs())
        .sum();
    Errors {
        mean: (mean - g.mean[0]).abs(),
        var: (var - g.cov[0]).abs(),
        l1,
        iterations,
        seconds,
    }
}

fn ou_table(runs: &[(usize, Option<usize>)]) -> Result<(), Box<dyn std::error::Error>> {
    let (tau, steps) = (0.1, 3);
    println!("| N | L | mean err | var err | L1 err | order (var) | order (L1) | iterations | s |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut prev: Option<Errors> = None;
    for &(n, l) in runs {
        let e = ou(n, l, tau, steps)?;
        let order = |a: f64, b: f64| format!("{:.2}", (a / b).log2());
        let (ov, ol) = match (&prev, l) {
            (Some(p), Some(_)) => (order(p.var, e.var), order(p.l1, e.l1)),
            _ => ("".into(), "".into()),
        };
        println!(
            "| {n} | {} | {:.3e} | {:.3e} | {:.3e} | {ov} | {ol} | {} | {:.2} |",
            l.map_or("one-step".to_string(), |l| l.to_string()),
            e.mean,
            e.var,
            e.l1,
            e.iterations,
            e.seconds
        );
        prev = l.map(|_| e);
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let what = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    if what == "translation" || what == "all" {
        translation()?;
    }
    if what == "ou" || what == "all" {
        // The one-step scheme, then the multi-level one with L = n/50 levels (τ/L refined with h).
        let multilevel = [50, 100, 200, 400, 800].map(|n| (n, Some(n / 50)));
        ou_table(&[&[(100, None), (400, None)][..], &multilevel].concat())?;
    }
    if what == "ou-h" {
        ou_table(&[50, 100, 200, 400].map(|n| (n, Some(16))))?;
    }
    if what == "ou-levels" {
        ou_table(&[1, 2, 4, 8, 16].map(|levels| (800, Some(levels))))?;
    }
    Ok(())
}

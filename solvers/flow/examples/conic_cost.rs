//! Issue 15's cost target: the surrogate against `conic` with `levels` (the multi-level
//! Benamou–Brenier scheme, which converges to the exact JKO iterates) at equal accuracy.
//!
//! OU 1D on [−5, 5] from ρ⁰ = N(1, 0.5²), τ = η = 0.1, 3 steps (or, with the argument `2d`, OU 2D
//! on [−5, 5]² from N((1, −0.5), diag(0.5², 0.8²)) as in `ou-2d`, one step: a multi-level conic
//! step at 64² takes minutes); L1 error Σ|K||ρ − ρ_JKO| of the final state against the exact JKO
//! iterate (closed form, sampled at the cell centres and normalised), and the median wall time
//! per step. `flow` at N cells (default parameters);
//! `conic` at (N, L) on a grid of resolutions and level counts. For each flow row, the
//! cheapest conic run at least as accurate, and the ratio of the times per step (both
//! measured in this run).
//!
//! Run: cargo run --release -p jko-flow --example conic_cost [2d]
use jko_conic::{ConicParams, ConicSolver};
use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
use jko_core::{Energy, JkoStep, Mesh, StepSolver};
use jko_flow::{FlowParams, FlowSolver};
use std::time::Instant;

/// (L1 error against the exact JKO iterate, median seconds per step).
fn run(solver: &dyn StepSolver, dim: usize, cells: usize, tau: f64, steps: usize) -> (f64, f64) {
    let mesh = Mesh::grid(&vec![cells; dim], &vec![-5.0; dim], &vec![5.0; dim]).unwrap();
    let g0 = if dim == 1 {
        Gaussian::diagonal(&[1.0], &[0.5])
    } else {
        Gaussian::diagonal(&[1.0, -0.5], &[0.5, 0.8])
    };
    let rho0 = mesh.sample(|x| g0.density(x));
    let mut rho = &rho0 / mesh.mass(&rho0);
    let energy = Energy::ornstein_uhlenbeck(dim);
    let mut times = Vec::new();
    for _ in 0..steps {
        let e = energy.freeze(&mesh, &rho).unwrap();
        let problem = JkoStep::new(&mesh, &rho, tau, &e).unwrap();
        let t0 = Instant::now();
        rho = solver.solve(&problem, None).unwrap().rho;
        times.push(t0.elapsed().as_secs_f64());
    }
    let exact = OrnsteinUhlenbeck::standard(dim).jko_iterates(&g0, tau, steps);
    let ex = mesh.sample(|x| exact.density(x));
    let ex = &ex / mesh.mass(&ex);
    let l1 = mesh.l1_distance(&rho, &ex);
    times.sort_by(f64::total_cmp);
    (l1, times[times.len() / 2])
}

fn main() {
    let two_d = std::env::args().nth(1).as_deref() == Some("2d");
    let (dim, tau, steps) = if two_d { (2, 0.1, 1) } else { (1, 0.1, 3) };
    let (flow_sizes, conic_runs): (&[usize], &[(usize, usize)]) = if two_d {
        (
            &[32, 64],
            &[(32, 1), (32, 2), (32, 4), (64, 1), (64, 2), (64, 4)],
        )
    } else {
        (
            &[100, 200, 400, 1000],
            &[(50, 1), (100, 1), (100, 2), (200, 2), (200, 4), (400, 4)],
        )
    };
    println!(
        "OU {dim}D, tau = {tau}, {steps} steps: L1 against the exact JKO iterate, median s/step (N cells per axis)"
    );
    println!("| backend | N | L | L1 | s/step |");
    println!("|---|---|---|---|---|");
    let mut flows = Vec::new();
    for &cells in flow_sizes {
        let flow = FlowSolver::new(FlowParams::default()).unwrap();
        let (l1, t) = run(&flow, dim, cells, tau, steps);
        println!("| flow | {cells} | - | {l1:.3e} | {t:.3e} |");
        flows.push((cells, l1, t));
    }
    let mut conics = Vec::new();
    for &(cells, levels) in conic_runs {
        let conic = ConicSolver::new(ConicParams {
            levels: Some(levels),
            ..ConicParams::default()
        })
        .unwrap();
        let (l1, t) = run(&conic, dim, cells, tau, steps);
        println!("| conic | {cells} | {levels} | {l1:.3e} | {t:.3e} |");
        conics.push((cells, levels, l1, t));
    }
    println!();
    println!(
        "| flow N | flow L1 | flow s/step | cheapest conic (N, L) with L1 <= flow's | conic L1 | conic s/step | ratio |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (cells, l1, t) in flows {
        let best = conics
            .iter()
            .filter(|c| c.2 <= l1)
            .min_by(|a, b| a.3.total_cmp(&b.3));
        match best {
            Some((n, l, cl1, ct)) => println!(
                "| {cells} | {l1:.3e} | {t:.3e} | ({n}, {l}) | {cl1:.3e} | {ct:.3e} | {:.0} |",
                ct / t
            ),
            None => println!("| {cells} | {l1:.3e} | {t:.3e} | none as accurate | - | - | - |"),
        }
    }
}

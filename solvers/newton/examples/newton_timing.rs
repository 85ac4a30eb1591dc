//! The newton backend's linear algebra and step times on OU problems (entropy + quadratic
//! potential, τ = 0.05) on 2D and 3D grids: for each ordering (nested dissection, minimum
//! degree) the nonzeros of S and of its Cholesky factor (the fill), the time of one numeric
//! factorisation, of a cold step and of the mean warm step, the iterations, and the warm step's
//! cost in factorisations. Each time is the minimum of several calls, for the tables; the
//! criterion bench (`cargo bench -p jko-newton --bench step`) repeats them.
//!
//! cargo run --release -p jko-newton --example newton_timing            # the whole table
//! cargo run --release -p jko-newton --example newton_timing 512 512    # one grid
//! /usr/bin/time -v target/release/examples/newton_timing 512 512       # with peak RSS

use jko_core::{JkoStep, StepSolver, WarmStart};
use jko_newton::{NewtonParams, NewtonSolver, Ordering};
use std::time::Instant;

// The timing problem is the bench's (benches/step.rs), kept with the tests' helpers.
#[path = "../tests/common/mod.rs"]
mod common;
use common::ou_timing_problem as problem;

/// Calls per timed quantity (the minimum is reported).
const REPEATS: usize = 3;
/// Calls of the (short) factorisation per minimum.
const FACTOR_REPEATS: usize = 10;

struct Row {
    nnz_s: usize,
    nnz_l: usize,
    factor: f64,
    cold: f64,
    warm: f64,
    its: Vec<usize>,
}

fn measure(cells: &[usize], ordering: Ordering, warm_steps: usize) -> Row {
    let (mesh, energy, mut rho) = problem(cells);
    let solver = NewtonSolver::new(NewtonParams {
        ordering,
        ..NewtonParams::default()
    })
    .unwrap();
    let tau = 0.05;
    let e0 = energy.freeze(&mesh, &rho).unwrap();
    let p0 = JkoStep::new(&mesh, &rho, tau, &e0).unwrap();
    // The first call also builds the pattern and the symbolic factorisation (not timed here).
    // On the shared machine a single wall-clock time is noise (measured: a 64² factorisation
    // 0.065 s in one call, 0.15 s in the next): every time is the minimum over several calls,
    // which the load can only lengthen.
    solver.factorisation(&p0).unwrap();
    let mut f = solver.factorisation(&p0).unwrap();
    for _ in 1..FACTOR_REPEATS {
        let g = solver.factorisation(&p0).unwrap();
        f.seconds = f.seconds.min(g.seconds);
    }
    let mut warm: Option<WarmStart> = None;
    let (mut cold, mut warm_time) = (0.0, 0.0);
    let mut its = Vec::new();
    for step in 0..=warm_steps {
        let e = energy.freeze(&mesh, &rho).unwrap();
        let p = JkoStep::new(&mesh, &rho, tau, &e).unwrap();
        let mut dt = f64::INFINITY;
        let mut out = None;
        for _ in 0..REPEATS {
            let t0 = Instant::now();
            let o = solver.step(&p, warm.as_ref()).unwrap();
            dt = dt.min(t0.elapsed().as_secs_f64());
            out = Some(o);
        }
        let out = out.unwrap();
        if step == 0 {
            cold = dt;
        } else {
            warm_time += dt;
        }
        its.push(out.info.iterations);
        warm = Some(WarmStart::from(&out));
        rho = out.rho;
    }
    Row {
        nnz_s: f.matrix_nonzeros,
        nnz_l: f.factor_nonzeros,
        factor: f.seconds,
        cold,
        warm: warm_time / warm_steps as f64,
        its,
    }
}

fn name(cells: &[usize]) -> String {
    cells
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

fn print(cells: &[usize], ordering: Ordering, r: &Row) {
    println!(
        "| {} | {ordering:?} | {} | {} | {:.1} | {:.2e} | {:.3} | {:.3} | {:?} | {:.1} |",
        name(cells),
        r.nnz_s,
        r.nnz_l,
        r.nnz_l as f64 / r.nnz_s as f64,
        r.factor,
        r.cold,
        r.warm,
        r.its,
        r.warm / r.factor
    );
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    println!(
        "| grid | ordering | nnz(S) | nnz(L) | fill L/S | 1 factorisation (s) | cold step (s) | warm step (s) | iterations (cold, warm...) | warm step / factorisation |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    if !args.is_empty() {
        let r = measure(&args, Ordering::Auto, 3);
        print(&args, Ordering::Auto, &r);
        let (mesh, energy, _) = problem(&args);
        let estimate = NewtonSolver::new(NewtonParams::default())
            .unwrap()
            .memory_estimate(&mesh, &energy.terms())
            .unwrap_or(0);
        println!("memory_estimate: {:.0} MB", estimate as f64 / 1e6);
        return;
    }
    let grids: Vec<Vec<usize>> = vec![
        vec![64, 64],
        vec![128, 128],
        vec![256, 256],
        vec![512, 512],
        vec![24, 24, 24],
        vec![32, 32, 32],
        vec![48, 48, 48],
    ];
    for cells in grids {
        for ordering in [Ordering::NestedDissection, Ordering::MinimumDegree] {
            // Minimum degree at 48³ takes minutes and gigabytes: measured once, see the README.
            if ordering == Ordering::MinimumDegree && cells.len() == 3 && cells[0] > 32 {
                continue;
            }
            let r = measure(&cells, ordering, 3);
            print(&cells, ordering, &r);
        }
    }
}

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
//! newton_timing 32 32 32 amd once     # one grid, one ordering (nd|amd), one call per time,
//!                                     # one warm step (3D grids, where a step takes minutes)
//! newton_timing 48 48 48 nd factor    # nnz(S), nnz(L) and one factorisation, no steps
//! newton_timing 48 48 48 cold          # one factorisation and one cold step

use jko_core::{JkoStep, StepSolver, WarmStart, shape_label};
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
    factor_cpu: f64,
    cold: f64,
    warm: f64,
    /// CPU time of the calling thread (the solver runs on it), cold and mean warm step.
    cold_cpu: f64,
    warm_cpu: f64,
    its: Vec<usize>,
}

/// CPU time of this thread in seconds (Linux: /proc/thread-self/schedstat, which resolves a few
/// milliseconds), NaN elsewhere. On the shared machine the wall clock is mostly time spent
/// descheduled; the CPU time is not.
fn thread_cpu() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |ns| ns * 1e-9)
}

/// How much `measure` repeats and which parts it runs.
#[derive(Clone, Copy)]
struct Plan {
    warm_steps: usize,
    repeats: usize,
    factor_repeats: usize,
    /// Only the pattern, the fill and the factorisation (no steps).
    factor_only: bool,
}

const FULL: Plan = Plan {
    warm_steps: 3,
    repeats: REPEATS,
    factor_repeats: FACTOR_REPEATS,
    factor_only: false,
};

fn measure(cells: &[usize], ordering: Ordering, plan: Plan) -> Row {
    let Plan {
        warm_steps,
        repeats,
        factor_repeats,
        factor_only,
    } = plan;
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
    let mut f = solver.factorisation(&p0).unwrap();
    if factor_repeats > 1 {
        f = solver.factorisation(&p0).unwrap();
    }
    for _ in 1..factor_repeats {
        let g = solver.factorisation(&p0).unwrap();
        f.seconds = f.seconds.min(g.seconds);
        f.cpu_seconds = f.cpu_seconds.min(g.cpu_seconds);
    }
    let mut warm: Option<WarmStart> = None;
    let (mut cold, mut warm_time) = (0.0, 0.0);
    let (mut cold_cpu, mut warm_cpu) = (0.0, 0.0);
    let mut its = Vec::new();
    let steps = if factor_only { 0 } else { warm_steps + 1 };
    for step in 0..steps {
        let e = energy.freeze(&mesh, &rho).unwrap();
        let p = JkoStep::new(&mesh, &rho, tau, &e).unwrap();
        let (mut dt, mut dc) = (f64::INFINITY, f64::INFINITY);
        let mut out = None;
        for _ in 0..repeats {
            let (t0, c0) = (Instant::now(), thread_cpu());
            let o = solver.step(&p, warm.as_ref()).unwrap();
            dt = dt.min(t0.elapsed().as_secs_f64());
            dc = dc.min(thread_cpu() - c0);
            out = Some(o);
        }
        let out = out.unwrap();
        if step == 0 {
            cold = dt;
            cold_cpu = dc;
        } else {
            warm_time += dt;
            warm_cpu += dc;
        }
        its.push(out.info.iterations);
        warm = Some(WarmStart::from(&out));
        rho = out.rho;
    }
    Row {
        nnz_s: f.matrix_nonzeros,
        nnz_l: f.factor_nonzeros,
        factor: f.seconds,
        factor_cpu: f.cpu_seconds,
        cold,
        warm: warm_time / warm_steps.max(1) as f64,
        cold_cpu,
        warm_cpu: warm_cpu / warm_steps.max(1) as f64,
        its,
    }
}

fn print(cells: &[usize], ordering: Ordering, r: &Row) {
    println!(
        "| {} | {ordering:?} | {} | {} | {:.1} | {:.2e} | {:.2e} | {:.3} | {:.3} | {:.3} | {:.3} | {:?} | {:.1} | {:.1} |",
        shape_label(cells),
        r.nnz_s,
        r.nnz_l,
        r.nnz_l as f64 / r.nnz_s as f64,
        r.factor,
        r.factor_cpu,
        r.cold,
        r.warm,
        r.cold_cpu,
        r.warm_cpu,
        r.its,
        r.warm / r.factor,
        r.warm_cpu / r.factor_cpu
    );
}

fn main() {
    let words: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<usize> = words.iter().filter_map(|a| a.parse().ok()).collect();
    let has = |w: &str| words.iter().any(|a| a == w);
    let ordering = if has("amd") {
        Ordering::MinimumDegree
    } else if has("nd") {
        Ordering::NestedDissection
    } else {
        Ordering::Auto
    };
    // Words that shrink the plan: (word, warm steps, factorisations timed, steps run). `once`: one
    // call per time and one warm step; `cold`: one factorisation and one cold step (48³, where a
    // step takes tens of minutes); `factor`: the pattern, the fill and two factorisations.
    let mut plan = FULL;
    for (word, warm_steps, factor_repeats, steps) in [
        ("once", 1, 2, true),
        ("cold", 0, 1, true),
        ("factor", 0, 2, false),
    ] {
        if has(word) {
            plan = Plan {
                warm_steps,
                repeats: 1,
                factor_repeats,
                factor_only: !steps,
            };
        }
    }
    println!(
        "| grid | ordering | nnz(S) | nnz(L) | fill L/S | 1 factorisation (s) | its CPU (s) | cold step (s) | warm step (s) | cold CPU (s) | warm CPU (s) | iterations (cold, warm...) | warm / factorisation (wall) | (CPU) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    if !args.is_empty() {
        let r = measure(&args, ordering, plan);
        print(&args, ordering, &r);
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
            let r = measure(&cells, ordering, FULL);
            print(&cells, ordering, &r);
        }
    }
}

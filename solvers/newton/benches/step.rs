//! Speed of the newton backend (issue 14), measured in one run so that ratios are meaningful on
//! a shared machine:
//!
//! - `newton_vs_conic/{64x64,128x128}`: one OU step (entropy + quadratic potential, τ = 0.05)
//!   by newton (warm-started from the previous step, as in a time loop, and cold) and by conic,
//!   both at tolerance 1e-8 (newton `tol`, Clarabel's gap and feasibility tolerances).
//! - `newton_scaling/{64x64,…,512x512,32x32x32,48x48x48}`: newton's warm step and, beside it,
//!   one numeric factorisation of the same step's Newton matrix (symbolic factorisation
//!   reused): a warm step costs about its iteration count in factorisations.
//!
//! cargo bench -p jko-newton --bench step                      # everything (~15 min on 2 cores)
//! cargo bench -p jko-newton --bench step -- newton_vs_conic   # the conic ratio only
//! NEWTON_GRIDS=512x512,48x48x48 cargo bench -p jko-newton --bench step -- newton_scaling

// The timing problem is the one of examples/newton_timing.rs, kept with the tests' helpers.
#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use jko_conic::{ConicParams, ConicSolver};
use jko_core::{JkoStep, Mesh, StepEnergy, StepSolver, WarmStart, shape_label};
use jko_newton::{NewtonParams, NewtonSolver};
use ndarray::Array1;
use std::time::Duration;

const TOL: f64 = 1e-8;

/// An OU step on an n^d grid: the first step from an off-centre Gaussian is taken, and the
/// benchmarked step is the second one, with the first one's warm start.
struct Case {
    mesh: Mesh,
    rho1: Array1<f64>,
    frozen: StepEnergy,
    warm: WarmStart,
}

const TAU: f64 = 0.05;

fn case(cells: &[usize], newton: &NewtonSolver) -> Case {
    let (mesh, energy, rho0) = common::ou_timing_problem(cells);
    let e0 = energy.freeze(&mesh, &rho0).unwrap();
    let first = newton
        .step(&JkoStep::new(&mesh, &rho0, TAU, &e0).unwrap(), None)
        .unwrap();
    let warm = WarmStart::from(&first);
    let rho1 = first.rho;
    let frozen = energy.freeze(&mesh, &rho1).unwrap();
    Case {
        mesh,
        rho1,
        frozen,
        warm,
    }
}

fn newton_solver() -> NewtonSolver {
    NewtonSolver::new(NewtonParams {
        tol: TOL,
        ..NewtonParams::default()
    })
    .unwrap()
}

fn newton_vs_conic(c: &mut Criterion) {
    let mut group = c.benchmark_group("newton_vs_conic");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    let conic = ConicSolver::new(ConicParams {
        tol_gap_abs: TOL,
        tol_gap_rel: TOL,
        tol_feas: TOL,
        ..ConicParams::default()
    })
    .unwrap();
    for n in [64usize, 128] {
        let newton = newton_solver();
        let cs = case(&[n, n], &newton);
        let p = JkoStep::new(&cs.mesh, &cs.rho1, TAU, &cs.frozen).unwrap();
        group.bench_function(format!("{n}x{n}/newton_warm"), |b| {
            b.iter(|| newton.step(&p, Some(&cs.warm)).unwrap())
        });
        group.bench_function(format!("{n}x{n}/newton_cold"), |b| {
            b.iter(|| newton.step(&p, None).unwrap())
        });
        group.bench_function(format!("{n}x{n}/conic"), |b| {
            b.iter(|| conic.step(&p, None).unwrap())
        });
    }
    group.finish();
}

fn newton_scaling(c: &mut Criterion) {
    let mut group = c.benchmark_group("newton_scaling");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    // NEWTON_GRIDS=64x64,32x32x32 restricts the grids (each grid's first step is solved to set
    // up its case even when criterion's name filter then skips it).
    let chosen = std::env::var("NEWTON_GRIDS").ok();
    let all: [&[usize]; 6] = [
        &[64, 64],
        &[128, 128],
        &[256, 256],
        &[512, 512],
        &[32, 32, 32],
        &[48, 48, 48],
    ];
    let grids = all.into_iter().filter(|g| {
        chosen
            .as_deref()
            .is_none_or(|list| list.split(',').any(|n| n == shape_label(g)))
    });
    for cells in grids {
        let newton = newton_solver();
        let cs = case(cells, &newton);
        let p = JkoStep::new(&cs.mesh, &cs.rho1, TAU, &cs.frozen).unwrap();
        let g = shape_label(cells);
        group.bench_function(format!("{g}/warm_step"), |b| {
            b.iter(|| newton.step(&p, Some(&cs.warm)).unwrap())
        });
        // The numeric factorisation alone, on its own clock (the assembly of the matrix at
        // the cold start, done by the same call, is not counted).
        group.bench_function(format!("{g}/factorisation"), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| Duration::from_secs_f64(newton.factorisation(&p).unwrap().seconds))
                    .sum()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, newton_vs_conic, newton_scaling);
criterion_main!(benches);

//! One OU (Fokker–Planck, quadratic potential) step with default parameters, 1D and 2D.
//! `cargo bench -p jko-conic`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use jko_conic::{ConicParams, ConicSolver};
use jko_core::{JkoStep, StepSolver, shape_label};
use std::hint::black_box;

#[path = "support/ou.rs"]
mod ou;
use ou::ou_problem;

fn bench(c: &mut Criterion) {
    let solver = ConicSolver::new(ConicParams::default()).unwrap();
    let mut group = c.benchmark_group("conic_ou_step");
    group.sample_size(10);
    for cells in [
        vec![256],
        vec![1024],
        vec![4096],
        vec![32, 32],
        vec![64, 64],
    ] {
        let (mesh, rho, e) = ou_problem(&cells).unwrap();
        let label = shape_label(&cells);
        group.bench_with_input(BenchmarkId::from_parameter(label), &(), |b, _| {
            b.iter(|| {
                let p = JkoStep::new(&mesh, &rho, 0.1, &e).unwrap();
                black_box(solver.step(&p, None).unwrap())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

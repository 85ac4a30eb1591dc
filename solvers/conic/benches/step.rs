//! One OU (Fokker–Planck, quadratic potential) step with default parameters, 1D and 2D.
//! `cargo bench -p jko-conic`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use jko_conic::{ConicParams, ConicSolver};
use jko_core::{Energy, JkoStep, Mesh, Potential, StepEnergy, StepSolver};
use ndarray::Array1;
use std::hint::black_box;

fn ou_problem(cells: &[usize]) -> (Mesh, Array1<f64>, StepEnergy) {
    let d = cells.len();
    let mesh = Mesh::grid(cells, &vec![-4.0; d], &vec![4.0; d]).unwrap();
    let mut rho = mesh.sample(|x| {
        (-x.iter()
            .enumerate()
            .map(|(a, v)| (v - 0.5 + 0.2 * a as f64).powi(2))
            .sum::<f64>())
        .exp()
    });
    let m = mesh.mass(&rho);
    rho /= m;
    let e = Energy::fokker_planck(
        1.0,
        Potential::Quadratic {
            center: vec![0.0; d],
            stiffness: 1.0,
        },
    )
    .freeze(&mesh, &rho)
    .unwrap();
    (mesh, rho, e)
}

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
        let (mesh, rho, e) = ou_problem(&cells);
        let label = cells
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join("x");
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

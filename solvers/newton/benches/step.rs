//! Time per warm OU step of the newton backend on 2D 64² and 128² grids.
//! cargo bench -p jko-newton --bench step

use criterion::{Criterion, criterion_group, criterion_main};
use jko_core::{Energy, JkoStep, Mesh, Potential, StepSolver, WarmStart};
use jko_newton::{NewtonParams, NewtonSolver};

fn ou_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("newton_ou_step");
    group.sample_size(10);
    for n in [64usize, 128] {
        let mesh = Mesh::grid(&[n, n], &[-4.0, -4.0], &[4.0, 4.0]).unwrap();
        let energy = Energy::fokker_planck(
            1.0,
            Potential::Quadratic {
                center: vec![0.0, 0.0],
                stiffness: 1.0,
            },
        );
        let rho0 = mesh.sample(|x| (-((x[0] - 0.5).powi(2) + (x[1] + 0.3).powi(2)) / 0.72).exp());
        let solver = NewtonSolver::new(NewtonParams::default()).unwrap();
        let tau = 0.05;
        // One step first: the benchmarked step is warm-started from it, as in a time loop.
        let e0 = energy.freeze(&mesh, &rho0).unwrap();
        let first = solver
            .step(&JkoStep::new(&mesh, &rho0, tau, &e0).unwrap(), None)
            .unwrap();
        let warm = WarmStart::from(&first);
        let rho1 = first.rho.clone();
        let e1 = energy.freeze(&mesh, &rho1).unwrap();
        group.bench_function(format!("{n}x{n}_warm"), |b| {
            b.iter(|| {
                let p = JkoStep::new(&mesh, &rho1, tau, &e1).unwrap();
                solver.step(&p, Some(&warm)).unwrap()
            })
        });
        group.bench_function(format!("{n}x{n}_cold"), |b| {
            b.iter(|| {
                let p = JkoStep::new(&mesh, &rho0, tau, &e0).unwrap();
                solver.step(&p, None).unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, ou_step);
criterion_main!(benches);

//! One surrogate (JKO-Flow, resummed) step against one proximal step (jko-newton, one-step
//! two-point-flux scheme) with the same τ on the same mesh: Fokker–Planck with V = |x|²/2 from a
//! resolved Gaussian. Run: cargo bench -p jko-flow --bench substep
use criterion::{Criterion, criterion_group, criterion_main};
use jko_core::exact::Gaussian;
use jko_core::{Energy, JkoStep, Mesh, StepEnergy, StepSolver};
use jko_flow::{FlowParams, FlowSolver};
use jko_newton::{NewtonParams, NewtonSolver};
use ndarray::Array1;

fn setup(cells: &[usize], half: f64) -> (Mesh, Array1<f64>, StepEnergy) {
    let d = cells.len();
    let mesh = Mesh::grid(cells, &vec![-half; d], &vec![half; d]).unwrap();
    let mean: Vec<f64> = (0..d).map(|a| if a == 0 { 0.5 } else { -0.25 }).collect();
    let g = Gaussian::diagonal(&mean, &vec![0.8; d]);
    let rho = mesh.sample(|x| g.density(x));
    let rho = &rho / mesh.mass(&rho);
    let e = Energy::ornstein_uhlenbeck(d).freeze(&mesh, &rho).unwrap();
    (mesh, rho, e)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("step");
    group.sample_size(10);
    let flow = FlowSolver::new(FlowParams::default()).unwrap();
    let newton = NewtonSolver::new(NewtonParams::default()).unwrap();
    for (name, cells, half) in [
        ("1d_400", vec![400usize], 5.0),
        ("2d_64x64", vec![64, 64], 4.0),
    ] {
        let (mesh, rho, e) = setup(&cells, half);
        let tau = 0.1;
        let problem = JkoStep::new(&mesh, &rho, tau, &e).unwrap();
        group.bench_function(format!("flow_{name}"), |b| {
            b.iter(|| flow.step(&problem, None).unwrap())
        });
        group.bench_function(format!("newton_{name}"), |b| {
            b.iter(|| newton.step(&problem, None).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Speed of the Gibbs kernel and of one Sinkhorn JKO step.
//!
//! - `apply/<grid>`: one application ξv of the tensor-product kernel (plain domain) on 2D grids
//!   64²…512² and the 3D grid 64³. Work is N·Σn_a, so 128² → 256² should cost about 8×.
//! - `log/<grid>`: the log-domain product ln(ξ e^v) at ε = 1e-3 (log-sum-exp passes; two scans
//!   per output, exponentials only within e^{-50} of the largest term).
//! - `step/{tensor,dense}/64x64`: one full JKO step (Fokker–Planck on the unit square) with the
//!   tensor-product kernel and with the dense N×N kernel, same parameters.
//!
//! Run: cargo bench -p jko-sinkhorn --bench kernel

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use jko_core::{Energy, JkoStep, Mesh, Potential, StepSolver};
use jko_sinkhorn::{GibbsKernel, GibbsOperator, KernelChoice, SinkhornParams, SinkhornSolver};
use std::hint::black_box;
use std::time::Duration;

fn grid(cells: &[usize]) -> Mesh {
    let d = cells.len();
    Mesh::grid(cells, &vec![0.0; d], &vec![1.0; d]).expect("grid")
}

fn bench_apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let shapes: Vec<Vec<usize>> = vec![
        vec![64, 64],
        vec![128, 128],
        vec![256, 256],
        vec![512, 512],
        vec![64, 64, 64],
    ];
    for shape in &shapes {
        let mesh = grid(shape);
        // ε = 0.1 on the unit box: no kernel entry underflows, so the full O(N·n) work is done.
        let k = GibbsKernel::new(&mesh, 0.1).expect("kernel");
        let n = k.len();
        let v: Vec<f64> = (0..n).map(|i| 1.0 + (i as f64 * 0.37).sin()).collect();
        let (mut out, mut work) = (vec![0.0; n], vec![0.0; n]);
        let name = shape
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join("x");
        group.bench_with_input(BenchmarkId::new("plain", &name), &v, |b, v| {
            b.iter(|| k.apply(black_box(v), &mut out, &mut work).expect("apply"))
        });
        if n <= 256 * 256 {
            let mut kl = k.clone();
            kl.set_epsilon(1e-3).expect("epsilon");
            let lv: Vec<f64> = v.iter().map(|x| x.ln() * 50.0).collect();
            group.bench_with_input(BenchmarkId::new("log", &name), &lv, |b, lv| {
                b.iter(|| {
                    kl.apply_log(black_box(lv), &mut out, &mut work)
                        .expect("apply_log")
                })
            });
        }
    }
    group.finish();
}

fn bench_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("step");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    let mesh = grid(&[64, 64]);
    let energy = Energy::fokker_planck(
        0.05,
        Potential::Quadratic {
            center: vec![0.5, 0.5],
            stiffness: 5.0,
        },
    )
    .freeze(&mesh, &mesh.sample(|_| 1.0))
    .expect("energy");
    let rho = {
        let r = mesh.sample(|x| (-((x[0] - 0.3).powi(2) + (x[1] - 0.6).powi(2)) / 0.02).exp());
        let m = mesh.mass(&r);
        r / m
    };
    let problem = JkoStep::new(&mesh, &rho, 0.05, &energy).expect("step");
    for (name, kernel) in [
        ("tensor", KernelChoice::Auto),
        ("dense", KernelChoice::Dense),
    ] {
        let solver = SinkhornSolver::new(SinkhornParams {
            epsilon: Some(1e-2),
            kernel,
            dense_limit_bytes: 1 << 30,
            ..Default::default()
        })
        .expect("solver");
        group.bench_function(BenchmarkId::new(name, "64x64"), |b| {
            b.iter(|| solver.step(black_box(&problem), None).expect("solve"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_apply, bench_step);
criterion_main!(benches);

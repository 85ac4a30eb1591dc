//! Speed of the Gibbs kernel products and of one Sinkhorn JKO step.
//!
//! - `iteration/<grid>`: the kernel work of one Sinkhorn iteration, K̃v then K̃ᵀu, on 1D lines,
//!   2D and 3D grids of the unit box at ε = 0.1, where no kernel entry is truncated: every
//!   factor is dense, so the work is 2·N·Σ_a n_a = 2d·N^{1+1/d} multiply-adds (GEMM per axis;
//!   Toeplitz-factored tiles on lines). Time per iteration should grow as N^{1+1/d}: ×8 from
//!   128² to 256², ×4 per doubling of a line.
//! - `log/<grid>`: the log-domain product ln(ξ e^v) (the fallback) at ε = 1e-3.
//! - `step/{tensor,dense}/48x48`: one full JKO step (Fokker–Planck on the unit square, ε = 1e-2)
//!   with the tensor-product kernel and with the dense N×N kernel, same problem.
//!
//! Run: cargo bench -p jko-sinkhorn --bench kernel

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, criterion_group, criterion_main};
use jko_core::{Energy, JkoStep, Mesh, Potential, StepSolver, shape_label};
use jko_sinkhorn::{GibbsKernel, KernelChoice};
use std::hint::black_box;
use std::time::Duration;

#[path = "../tests/common/mod.rs"]
mod reference;
use reference::fixed_epsilon;

fn grid(cells: &[usize]) -> Mesh {
    let d = cells.len();
    Mesh::grid(cells, &vec![0.0; d], &vec![1.0; d]).expect("grid")
}

/// A benchmark group of 10 samples after a 0.5 s warm-up, measured for `seconds` (the
/// measured functions take milliseconds to seconds).
fn short_group<'a>(c: &'a mut Criterion, name: &str, seconds: u64) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(seconds));
    group
}

fn bench_iteration(c: &mut Criterion) {
    let mut group = short_group(c, "iteration", 3);
    let shapes: Vec<Vec<usize>> = vec![
        vec![1024],
        vec![2048],
        vec![4096],
        vec![64, 64],
        vec![128, 128],
        vec![256, 256],
        vec![512, 512],
        vec![32, 32, 32],
        vec![64, 64, 64],
    ];
    for shape in &shapes {
        let k = GibbsKernel::new(&grid(shape), 0.1).expect("kernel");
        let n = k.len();
        let v: Vec<f64> = (0..n).map(|i| 1.0 + (i as f64 * 0.37).sin()).collect();
        let (mut out, mut back, mut work) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        group.bench_with_input(BenchmarkId::new("plain", shape_label(shape)), &v, |b, v| {
            b.iter(|| {
                k.apply(black_box(v), &mut out, &mut work).expect("apply");
                k.apply_transpose(&out, &mut back, &mut work)
                    .expect("apply_transpose")
            })
        });
        if n <= 128 * 128 {
            let mut kl = k.clone();
            kl.set_epsilon(1e-3).expect("epsilon");
            let lv: Vec<f64> = v.iter().map(|x| x.ln() * 50.0).collect();
            group.bench_with_input(BenchmarkId::new("log", shape_label(shape)), &lv, |b, lv| {
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
    let mut group = short_group(c, "step", 5);
    let mesh = grid(&[48, 48]);
    let rho = {
        let r = mesh.sample(|x| (-((x[0] - 0.3).powi(2) + (x[1] - 0.6).powi(2)) / 0.02).exp());
        let m = mesh.mass(&r);
        r / m
    };
    let energy = Energy::fokker_planck(0.05, Potential::quadratic(vec![0.5, 0.5], 5.0))
        .freeze(&mesh, &rho)
        .expect("energy");
    let problem = JkoStep::new(&mesh, &rho, 0.05, &energy).expect("step");
    for (label, kernel) in [
        ("tensor", KernelChoice::Auto),
        ("dense", KernelChoice::Dense),
    ] {
        let solver = fixed_epsilon(1e-2, kernel, 1 << 30);
        group.bench_function(BenchmarkId::new(label, "48x48"), |b| {
            b.iter(|| solver.step(black_box(&problem), None).expect("solve"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_iteration, bench_step);
criterion_main!(benches);

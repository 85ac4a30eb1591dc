//! One quantile JKO step with 10⁴ nodes (target: well under a second).
//!
//! Run: `cargo bench -p jko-quantile --bench step`.

use criterion::{Criterion, criterion_group, criterion_main};
use jko_core::Potential;
use jko_quantile::{
    QuantileEnergy, QuantileGrid, QuantileParams, QuantilePotential, from_gaussian, jko_step,
};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let params = QuantileParams::default();
    let ou = QuantileEnergy {
        entropy: Some(1.0),
        potential: Some(QuantilePotential::Closed(Potential::Quadratic {
            center: vec![0.0],
            stiffness: 1.0,
        })),
        ..QuantileEnergy::default()
    };
    let quartic = QuantileEnergy {
        entropy: Some(1.0),
        potential: Some(QuantilePotential::Closed(Potential::Quartic)),
        ..QuantileEnergy::default()
    };
    let porous = QuantileEnergy {
        porous: Some(2.0),
        ..QuantileEnergy::default()
    };
    for (name, grid) in [
        ("gaussian", QuantileGrid::gaussian(10_000, 8.0).unwrap()),
        ("uniform", QuantileGrid::uniform(10_000).unwrap()),
    ] {
        let s0 = from_gaussian(1.0, 0.5, &grid, 1.0).unwrap();
        let (_, info) = jko_step(&s0, 0.1, &ou, &params).unwrap();
        eprintln!(
            "{name} nodes, OU: {} Newton iterations, residual {:.1e}",
            info.iterations, info.dual_residual
        );
        c.bench_function(&format!("ou_step_10k_{name}"), |b| {
            b.iter(|| jko_step(black_box(&s0), 0.1, &ou, &params).unwrap())
        });
    }
    let grid = QuantileGrid::gaussian(10_000, 8.0).unwrap();
    let s0 = from_gaussian(1.0, 0.5, &grid, 1.0).unwrap();
    c.bench_function("quartic_step_10k_gaussian", |b| {
        b.iter(|| jko_step(black_box(&s0), 0.1, &quartic, &params).unwrap())
    });
    c.bench_function("porous_step_10k_gaussian", |b| {
        b.iter(|| jko_step(black_box(&s0), 0.1, &porous, &params).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! One JKO step of every registered backend on the same problems (OU 1D 200 cells and 2D 32²,
//! τ = 0.1, from the built-in examples' initial states): `cargo bench --bench backends`.
//! Backend-specific benches live in solvers/*/benches.

use criterion::{Criterion, criterion_group, criterion_main};
use jko::backend::BACKENDS;
use jko::config::Config;
use jko_core::JkoStep;
use std::path::Path;

fn backends(c: &mut Criterion) {
    let mut group = c.benchmark_group("step");
    group.sample_size(10);
    for example in ["ou-1d", "ou-2d"] {
        let config = Config::from_toml(jko::examples::example(example).unwrap()).unwrap();
        let problem = config.build(Path::new(".")).unwrap();
        let frozen = problem
            .energy
            .freeze(&problem.mesh, &problem.initial)
            .unwrap();
        let step =
            JkoStep::new(&problem.mesh, &problem.initial, config.scheme.tau, &frozen).unwrap();
        for backend in BACKENDS {
            let solver = backend.defaults().build().unwrap();
            // Skip what a backend refuses (quantile on 2D) or cannot solve here.
            if solver.solve(&step, None).is_err() {
                continue;
            }
            group.bench_function(format!("{example}/{}", backend.name), |b| {
                b.iter(|| solver.solve(&step, None).unwrap())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, backends);
criterion_main!(benches);

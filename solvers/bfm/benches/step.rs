//! Speed of the bfm backend (issue 20), one JKO step per sample:
//!
//! - `bfm_ou/{64x64,…,512x512}`: the second OU step (entropy 1, V = |x|²/2, τ = 0.1, box
//!   [−5, 5]², from N((1, −0.5), diag(0.25, 0.64))) warm-started from the first, tol 1e-9: the
//!   per-step cost against N (expect N log N per GMRES product, a few Newton iterations).
//! - `bfm_porous/{64x64,128x128}`: the second step of porous m = 2 from a Barenblatt profile
//!   (robust porous-m2-2d: box [−1.5, 1.5]², t0 = 0.05, τ = 0.01), with free-boundary edges.
//!
//! cargo bench -p jko-bfm --bench step                    # release profile
//! BFM_GRIDS=64,128 cargo bench -p jko-bfm --bench step -- bfm_ou
//!
//! Speed is never asserted; compare numbers from one run.

use criterion::{Criterion, criterion_group, criterion_main};
use jko_bfm::{BfmParams, BfmSolver};
use jko_core::exact::{Barenblatt, Gaussian};
use jko_core::{Energy, JkoStep, Mesh, Potential, StepEnergy, StepSolver, WarmStart};
use ndarray::Array1;
use std::time::Duration;

/// The second step of a run: its mesh, density, frozen energy, τ and the first step's warm start.
struct Case {
    mesh: Mesh,
    rho1: Array1<f64>,
    frozen: StepEnergy,
    tau: f64,
    warm: WarmStart,
}

fn second_step(mesh: Mesh, rho0: Array1<f64>, energy: &Energy, tau: f64, bfm: &BfmSolver) -> Case {
    // The first step, untimed: its density and potential start the timed one.
    let first = {
        let e = energy.freeze(&mesh, &rho0).unwrap();
        let p = JkoStep::new(&mesh, &rho0, tau, &e).unwrap();
        bfm.step(&p, None).unwrap()
    };
    Case {
        frozen: energy.freeze(&mesh, &first.rho).unwrap(),
        warm: WarmStart::from(&first),
        rho1: first.rho,
        mesh,
        tau,
    }
}

fn grids() -> Vec<usize> {
    std::env::var("BFM_GRIDS")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![64, 128, 256, 512])
}

fn bench_case(c: &mut Criterion, group: &str, n: usize, case: &Case, bfm: &BfmSolver) {
    let mut g = c.benchmark_group(group);
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(if n >= 256 { 60 } else { 15 }));
    g.bench_function(format!("{n}x{n}"), |b| {
        b.iter(|| {
            let p = JkoStep::new(&case.mesh, &case.rho1, case.tau, &case.frozen).unwrap();
            bfm.step(&p, Some(&case.warm)).unwrap()
        })
    });
    g.finish();
}

fn bfm_ou(c: &mut Criterion) {
    let bfm = BfmSolver::new(BfmParams::default()).unwrap();
    let g0 = Gaussian::diagonal(&[1.0, -0.5], &[0.5, 0.8]);
    let energy = Energy::fokker_planck(
        1.0,
        Potential::Quadratic {
            center: vec![0.0; 2],
            stiffness: 1.0,
        },
    );
    for n in grids() {
        let mesh = Mesh::grid(&[n, n], &[-5.0, -5.0], &[5.0, 5.0]).unwrap();
        let rho0 = mesh.sample(|x| g0.density(x));
        let case = second_step(mesh, rho0, &energy, 0.1, &bfm);
        bench_case(c, "bfm_ou", n, &case, &bfm);
    }
}

fn bfm_porous(c: &mut Criterion) {
    let bfm = BfmSolver::new(BfmParams::default()).unwrap();
    let b = Barenblatt::new(2.0, 2, 1.0).unwrap();
    let energy = Energy {
        porous: Some(2.0),
        ..Energy::default()
    };
    for n in [64usize, 128] {
        let mesh = Mesh::grid(&[n, n], &[-1.5, -1.5], &[1.5, 1.5]).unwrap();
        let rho0 = mesh.sample(|x| b.density(0.05, x));
        let case = second_step(mesh, rho0, &energy, 0.01, &bfm);
        bench_case(c, "bfm_porous", n, &case, &bfm);
    }
}

criterion_group!(benches, bfm_ou, bfm_porous);
criterion_main!(benches);

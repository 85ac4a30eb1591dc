//! The temperature cap of the default ε (`max_extra_temperature`) on OU in 1D and 2D: fine
//! iterations, CPU time and L1 error against the exact JKO iterate of one cold step, for the
//! round-5 value 0.1 (ε/(4τ) ≤ 10 % of β) and today's 0.025, in one interleaved run.
//!
//! Run: cargo run --release -p jko-sinkhorn --example temperature_cap [-- caps...]
//! (default caps 0.1 0.025). CPU time is user + system of the process (all threads).

use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
use jko_core::{Energy, JkoStep, Mesh, StepSolver};
use jko_sinkhorn::{SinkhornParams, SinkhornSolver};

#[path = "common/mod.rs"]
mod common;
use common::{cpu, load};

fn main() {
    let mut caps: Vec<f64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("a cap"))
        .collect();
    if caps.is_empty() {
        caps = vec![0.1, 0.025];
    }
    println!("load average at start: {}", load());
    println!(
        "| grid | τ | max_extra_temperature | ε | iterations (coarse) | CPU s | L1 vs exact JKO |"
    );
    println!("|---|---|---|---|---|---|---|");
    let cases: [(&[usize], f64); 4] = [
        (&[64, 64], 5.0),
        (&[128, 128], 5.0),
        (&[4096], 5.0),
        (&[256, 256], 5.0),
    ];
    for (cells, half) in cases {
        let d = cells.len();
        let mesh = Mesh::grid(cells, &vec![-half; d], &vec![half; d]).expect("grid");
        let (m0, s0): (Vec<f64>, Vec<f64>) = if d == 1 {
            (vec![1.0], vec![0.5])
        } else {
            (vec![1.0, -0.5], vec![0.5, 0.7])
        };
        let g0 = Gaussian::diagonal(&m0, &s0);
        let rho0 = mesh.sample(|x| g0.density(x));
        let rho0 = &rho0 / mesh.mass(&rho0);
        let energy = Energy::ornstein_uhlenbeck(d)
            .freeze(&mesh, &rho0)
            .expect("energy");
        for tau in [0.1, 0.5] {
            let exact = OrnsteinUhlenbeck::standard(d).jko_iterates(&g0, tau, 1);
            let problem = JkoStep::new(&mesh, &rho0, tau, &energy).expect("step");
            for &cap in &caps {
                let solver = SinkhornSolver::new(SinkhornParams {
                    max_extra_temperature: cap,
                    ..SinkhornParams::default()
                })
                .expect("sinkhorn");
                let eps = solver.epsilon_for(&problem).epsilon;
                let c0 = cpu();
                let out = solver.step(&problem, None).expect("a step");
                let cpu_s = cpu() - c0;
                let v = mesh.volumes();
                let err: f64 = (0..mesh.n_cells())
                    .map(|k| v[k] * (out.rho[k] - exact.density(mesh.centre(k))).abs())
                    .sum();
                let coarse = jko_sinkhorn::coarse_iterations(&out.info)
                    .map_or("-".to_string(), |c| c.to_string());
                println!(
                    "| {cells:?} | {tau} | {cap} | {eps:.3e} | {} ({coarse}) | {cpu_s:.2} | {err:.2e} |",
                    out.info.iterations
                );
            }
        }
    }
    println!("load average at end: {}", load());
}

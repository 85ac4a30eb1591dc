//! The default ε on OU 1D: time per step and error against the exact JKO iterate, beside the
//! one-step two-point-flux scheme (conic backend) on the same mesh.
//!
//! Problem: the built-in example ou-1d (Fokker–Planck with V = x²/2 on [−5, 5] from
//! N(1, 0.5²)), 1024 and 4096 cells, τ ∈ {0.01, 0.1, 0.5}, three steps, default parameters of
//! both backends (warm starts between steps, as `jko run` does). Errors after the third step
//! against the exact JKO iterate N(m₃, s₃²) (jko_core::exact): L1 of the density, mean, std.
//!
//! Run: cargo run --release -p jko-sinkhorn --features conic-study --example ou_defaults
//! [-- [--sinkhorn-only] cells... [--tau τ...]] (default: 1024 4096 cells, τ 0.01 0.1 0.5, both
//! backends; e.g. `-- --sinkhorn-only 16384 --tau 0.1 0.5 1.0` for the fine lines).

use jko_conic::{ConicParams, ConicSolver};
use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
use jko_core::{Energy, JkoStep, Mesh, StepSolver, WarmStart};
use jko_sinkhorn::{SinkhornParams, SinkhornSolver};
use ndarray::Array1;
use std::time::Instant;

#[path = "../tests/common/mod.rs"]
mod reference;
use reference::ou_1d_start;

const STEPS: usize = 3;

struct Run {
    rho: Array1<f64>,
    max_step: f64,
    iterations: Vec<usize>,
    notes: Vec<String>,
}

fn run(solver: &dyn StepSolver, mesh: &Mesh, rho0: &Array1<f64>, tau: f64) -> Run {
    let energy = Energy::ornstein_uhlenbeck(1);
    let mut rho = rho0.clone();
    let mut warm: Option<WarmStart> = None;
    let (mut max_step, mut iterations, mut notes) = (0.0f64, Vec::new(), Vec::new());
    for _ in 0..STEPS {
        let t0 = Instant::now();
        let frozen = energy.freeze(mesh, &rho).expect("energy");
        let problem = JkoStep::new(mesh, &rho, tau, &frozen).expect("step");
        let out = solver.step(&problem, warm.as_ref()).expect("solve");
        max_step = max_step.max(t0.elapsed().as_secs_f64());
        iterations.push(out.info.iterations);
        notes = out.info.notes.clone();
        warm = Some(WarmStart::from(&out));
        rho = out.rho;
    }
    Run {
        rho,
        max_step,
        iterations,
        notes,
    }
}

fn errors(mesh: &Mesh, rho: &Array1<f64>, exact: &Gaussian) -> (f64, f64, f64) {
    let v = mesh.volumes();
    let x = |k: usize| mesh.centre(k)[0];
    let l1: f64 = (0..mesh.n_cells())
        .map(|k| v[k] * (rho[k] - exact.density(mesh.centre(k))).abs())
        .sum();
    let mean: f64 = (0..mesh.n_cells()).map(|k| v[k] * rho[k] * x(k)).sum();
    let var: f64 = (0..mesh.n_cells())
        .map(|k| v[k] * rho[k] * (x(k) - mean).powi(2))
        .sum();
    (
        l1,
        (mean - exact.mean[0]).abs(),
        (var.sqrt() - exact.cov[0].sqrt()).abs(),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sinkhorn_only = args.iter().any(|a| a == "--sinkhorn-only");
    let split = args.iter().position(|a| a == "--tau").unwrap_or(args.len());
    let numbers = |s: &[String]| -> Vec<String> {
        s.iter().filter(|a| !a.starts_with("--")).cloned().collect()
    };
    let mut sizes: Vec<usize> = numbers(&args[..split])
        .iter()
        .map(|a| a.parse().expect("cells: a positive integer"))
        .collect();
    let mut taus: Vec<f64> = numbers(&args[split..])
        .iter()
        .map(|a| a.parse().expect("tau: a number"))
        .collect();
    if sizes.is_empty() {
        sizes = vec![1024, 4096];
    }
    if taus.is_empty() {
        taus = vec![0.01, 0.1, 0.5];
    }
    let sinkhorn = SinkhornSolver::new(SinkhornParams::default()).expect("sinkhorn");
    let conic = ConicSolver::new(ConicParams::default()).expect("conic");
    println!(
        "OU 1D on [-5, 5] from N(1, 0.5^2), {STEPS} steps, default parameters; errors after step {STEPS} against the exact JKO iterate; load average {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .unwrap_or("?")
    );
    println!();
    println!(
        "| cells | τ | backend | ε (last step) | iterations per step | slowest step (s) | L1 error | mean error | std error |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for &n in &sizes {
        let (mesh, g0, rho0) = ou_1d_start(n);
        for &tau in &taus {
            let exact = OrnsteinUhlenbeck::standard(1).jko_iterates(&g0, tau, STEPS);
            for (name, solver) in [
                ("sinkhorn", &sinkhorn as &dyn StepSolver),
                ("conic (one-step scheme)", &conic as &dyn StepSolver),
            ] {
                if sinkhorn_only && name != "sinkhorn" {
                    continue;
                }
                let r = run(solver, &mesh, &rho0, tau);
                let (l1, em, es) = errors(&mesh, &r.rho, &exact);
                let eps = r
                    .notes
                    .iter()
                    .find_map(|n| n.strip_prefix("epsilon = "))
                    .and_then(|s| s.split_whitespace().next())
                    .unwrap_or("—");
                println!(
                    "| {n} | {tau} | {name} | {eps} | {:?} | {:.3} | {l1:.2e} | {em:.2e} | {es:.2e} |",
                    r.iterations, r.max_step
                );
            }
        }
    }
}

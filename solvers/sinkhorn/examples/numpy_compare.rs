//! Time one JKO step against the numpy implementation of the same tensor-product algorithm
//! (examples/numpy_step.py), in one run, on the same problem:
//! unit square, 128² cells, ε = 1e-2, tol = 1e-9, Fokker–Planck (β, V = (5/2)|x − c|²).
//!
//! Rust is run twice: with the defaults (ε-scaling, automatic over-relaxation) and with the
//! numpy algorithm exactly (plain Sinkhorn from b = 1, no ε-scaling, ω = 1). Each timing is the
//! best of `repeats` runs. numpy runs with its default BLAS threads and with one thread.
//!
//! Run: cargo run --release -p jko-sinkhorn --example numpy_compare [-- n repeats]
//! (needs python3 with numpy: `pip install numpy`)

use jko_core::{Energy, JkoStep, Mesh, Potential, StepOutput, StepSolver};
use jko_sinkhorn::{EpsilonScaling, LogDomain, SinkhornParams, SinkhornSolver};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn numpy(
    n: usize,
    repeats: usize,
    beta: f64,
    tau: f64,
    one_thread: bool,
) -> Option<serde_json::Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/numpy_step.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).args([
        n.to_string(),
        repeats.to_string(),
        beta.to_string(),
        tau.to_string(),
    ]);
    if one_thread {
        cmd.env("OPENBLAS_NUM_THREADS", "1")
            .env("OMP_NUM_THREADS", "1");
    }
    let out = cmd.output().ok()?;
    if !out.status.success() {
        eprintln!(
            "numpy_step.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn rust(
    n: usize,
    repeats: usize,
    beta: f64,
    tau: f64,
    params: SinkhornParams,
) -> (f64, StepOutput, Mesh) {
    let mesh = Mesh::grid(&[n, n], &[0.0, 0.0], &[1.0, 1.0]).expect("grid");
    let rho0 = mesh.sample(|x| (-((x[0] - 0.3).powi(2) + (x[1] - 0.6).powi(2)) / 0.02).exp());
    let rho0 = &rho0 / mesh.mass(&rho0);
    let energy = Energy::fokker_planck(
        beta,
        Potential::Quadratic {
            center: vec![0.5, 0.5],
            stiffness: 5.0,
        },
    )
    .freeze(&mesh, &rho0)
    .expect("energy");
    let problem = JkoStep::new(&mesh, &rho0, tau, &energy).expect("step");
    let solver = SinkhornSolver::new(params).expect("solver");
    let mut best = f64::INFINITY;
    let mut last = None;
    for _ in 0..repeats {
        let t0 = Instant::now();
        let out = solver.step(&problem, None).expect("solve");
        best = best.min(t0.elapsed().as_secs_f64());
        last = Some(out);
    }
    (best, last.expect("repeats >= 1"), mesh)
}

fn moments(mesh: &Mesh, out: &StepOutput) -> (f64, f64, f64) {
    let v = mesh.volumes();
    let mean: f64 = (0..mesh.n_cells())
        .map(|k| v[k] * out.rho[k] * mesh.centre(k)[0])
        .sum();
    let var: f64 = (0..mesh.n_cells())
        .map(|k| v[k] * out.rho[k] * (mesh.centre(k)[0] - mean).powi(2))
        .sum();
    (mean, var, out.rho.iter().fold(0.0, |a: f64, &b| a.max(b)))
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(128);
    let repeats = args.get(1).copied().unwrap_or(3);
    println!(
        "One JKO step, {n}x{n} unit square, eps = 1e-2, tol = 1e-9 (best of {repeats}); load average: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!(
        "| problem | implementation | threads | iterations | time (s) | mean_x | var_x | max rho |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (beta, tau) in [(0.05, 0.5), (1.0, 0.05)] {
        let label = format!("beta {beta}, tau {tau}");
        let mut numpy_best = f64::INFINITY;
        for one in [false, true] {
            match numpy(n, repeats, beta, tau, one) {
                Some(j) => {
                    let t = j["seconds"].as_f64().unwrap_or(f64::NAN);
                    numpy_best = numpy_best.min(t);
                    println!(
                        "| {label} | numpy {} | {} | {} | {:.4} | {:.10} | {:.10} | {:.8} |",
                        j["numpy"].as_str().unwrap_or("?"),
                        if one { "1 (BLAS)" } else { "default (BLAS)" },
                        j["iterations"],
                        t,
                        j["mean_x"].as_f64().unwrap_or(f64::NAN),
                        j["var_x"].as_f64().unwrap_or(f64::NAN),
                        j["rho_max"].as_f64().unwrap_or(f64::NAN)
                    );
                }
                None => println!("| {label} | numpy | - | - | unavailable | | | |"),
            }
        }
        let same = SinkhornParams {
            epsilon: Some(1e-2),
            omega: Some(1.0),
            log_domain: LogDomain::Never,
            epsilon_scaling: EpsilonScaling {
                enabled: false,
                ..Default::default()
            },
            ..Default::default()
        };
        let default = SinkhornParams {
            epsilon: Some(1e-2),
            ..Default::default()
        };
        let mut rust_best = f64::INFINITY;
        for (name, p) in [
            ("rust, numpy's algorithm", same),
            ("rust, defaults", default),
        ] {
            for threads in [None, Some(1)] {
                let (t, out, mesh) = rust(
                    n,
                    repeats,
                    beta,
                    tau,
                    SinkhornParams {
                        threads,
                        ..p.clone()
                    },
                );
                rust_best = rust_best.min(t);
                let (m, v, mx) = moments(&mesh, &out);
                println!(
                    "| {label} | {name} | {} | {} | {:.4} | {m:.10} | {v:.10} | {mx:.8} |",
                    threads.map_or("default (rayon)".to_string(), |t| t.to_string()),
                    out.info.iterations,
                    t
                );
            }
        }
        println!(
            "| {label} | best numpy / best rust | | | {:.1}x | | | |",
            numpy_best / rust_best
        );
    }
}

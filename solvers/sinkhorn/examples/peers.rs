//! The Sinkhorn backend beside its peers, in one run, on the same discrete problem:
//! the numpy separable implementation (benches/peers/sinkhorn_numpy.py) and POT's dense
//! `sinkhorn_unbalanced` (benches/peers/sinkhorn_pot.py).
//!
//! Problem (the built-in example ou-2d at n × n cells): Fokker–Planck on [−5, 5]², β = 1,
//! V = |x|²/2, ρ⁰ = N((1, −0.5), diag(0.5², 0.8²)), τ = 0.1, ε = 10⁻², three steps, each solved
//! to a relative ℓ¹ marginal violation of 10⁻¹⁰.
//!
//! Runs, interleaved (numpy, ours, numpy, ours, … `repeats` times; the best of each kept):
//! - numpy with one BLAS thread (the peer), and with its default threads once;
//! - ours with the defaults (ε-scaling, over-relaxation, multiscale start, warm starts between
//!   steps as `jko run` does) but `debias = false`, the peers' (plain entropic) problem, on the
//!   global rayon pool and on one thread;
//! - ours with numpy's iteration (ω = 1, no ε-scaling, cold steps): the per-iteration ratio;
//! - POT (dense 4096² kernel, one step, at 64² only).
//!
//! Agreement: max |ρ_ours − ρ_peer| / max ρ at every step.
//!
//! Run: scripts/setup-peers.sh && cargo run --release -p jko-sinkhorn --example peers [-- repeats sizes...]

use jko_core::{Energy, JkoStep, Mesh, StepOutput, StepSolver, WarmStart};
use jko_sinkhorn::{EpsilonScaling, SinkhornParams, SinkhornSolver};
use ndarray::Array1;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const STEPS: usize = 3;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Run a peer script; returns its JSON line and the densities it wrote.
fn peer(
    script: &str,
    args: &[String],
    one_thread: bool,
) -> Option<(serde_json::Value, Vec<Array1<f64>>)> {
    let python = root().join(".venv-peers/bin/python");
    if !python.exists() {
        eprintln!("no .venv-peers: run scripts/setup-peers.sh first");
        return None;
    }
    let out = std::env::temp_dir().join(format!("jko-peer-{}-{script}", std::process::id()));
    let mut cmd = Command::new(python);
    cmd.arg(root().join("benches/peers").join(script))
        .args(args)
        .arg("--out")
        .arg(&out);
    if one_thread {
        cmd.env("OPENBLAS_NUM_THREADS", "1")
            .env("OMP_NUM_THREADS", "1");
    }
    let res = cmd.output().ok()?;
    if !res.status.success() {
        eprintln!("{script} failed: {}", String::from_utf8_lossy(&res.stderr));
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&res.stdout).ok()?;
    let mut rhos = Vec::new();
    for k in 1..=STEPS {
        let path = out.join(format!("rho_{k}.npy"));
        if let Ok(a) = ndarray_npy::read_npy::<_, ndarray::Array2<f64>>(&path) {
            rhos.push(Array1::from_iter(a.iter().copied()));
        }
    }
    let _ = std::fs::remove_dir_all(&out);
    Some((json, rhos))
}

fn problem(n: usize) -> (Mesh, Array1<f64>, Energy) {
    let mesh = Mesh::grid(&[n, n], &[-5.0; 2], &[5.0; 2]).expect("grid");
    let rho = mesh.sample(|x| {
        (-0.5 * ((x[0] - 1.0) / 0.5).powi(2) - 0.5 * ((x[1] + 0.5) / 0.8).powi(2)).exp()
    });
    let rho = &rho / mesh.mass(&rho);
    let energy = Energy::ornstein_uhlenbeck(2);
    (mesh, rho, energy)
}

/// Three steps; per-step seconds and the outputs.
fn ours(n: usize, params: SinkhornParams, warm: bool) -> (Vec<f64>, Vec<StepOutput>) {
    let (mesh, mut rho, energy) = problem(n);
    let solver = SinkhornSolver::new(params).expect("solver");
    let (mut times, mut outs) = (Vec::new(), Vec::new());
    let mut ws: Option<WarmStart> = None;
    for _ in 0..STEPS {
        let t0 = Instant::now();
        let frozen = energy.freeze(&mesh, &rho).expect("energy");
        let step = JkoStep::new(&mesh, &rho, 0.1, &frozen).expect("step");
        let out = solver.step(&step, ws.as_ref()).expect("solve");
        times.push(t0.elapsed().as_secs_f64());
        if warm {
            ws = Some(WarmStart::from(&out));
        }
        rho = out.rho.clone();
        outs.push(out);
    }
    (times, outs)
}

fn seconds(j: &serde_json::Value) -> Vec<f64> {
    j["seconds"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
        .unwrap_or_default()
}

fn best(a: &mut Vec<f64>, b: &[f64]) {
    if a.is_empty() {
        *a = b.to_vec();
    } else {
        for (x, y) in a.iter_mut().zip(b) {
            *x = x.min(*y);
        }
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn agreement(a: &[StepOutput], b: &[Array1<f64>]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(o, r)| {
            let max = o.rho.iter().fold(0.0f64, |m, &x| m.max(x));
            o.rho
                .iter()
                .zip(r)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max)
                / max
        })
        .fold(0.0, f64::max)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let repeats = args.first().copied().unwrap_or(3);
    let sizes: Vec<usize> = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        vec![64, 128]
    };
    let load = || {
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .unwrap_or("?")
            .to_string()
    };
    println!(
        "OU 2D on [-5,5]^2, eps = 1e-2, tau = 0.1, {STEPS} steps, tol 1e-10; best of {repeats} interleaved runs; load average at start {}",
        load()
    );
    println!();
    println!(
        "| cells | implementation | threads | iterations per step | time per step (s) | ratio to numpy (1 thread) | max |Δρ|/max ρ |"
    );
    println!("|---|---|---|---|---|---|---|");
    // The peers solve the plain entropic step: ours with `debias` off is the same discrete
    // problem (the default debiased temperature β − ε/(4τ) is a different one, 1.5e-2 away).
    let defaults = SinkhornParams {
        epsilon: Some(1e-2),
        debias: false,
        ..Default::default()
    };
    let numpy_like = SinkhornParams {
        omega: Some(1.0),
        epsilon_scaling: EpsilonScaling {
            enabled: false,
            ..Default::default()
        },
        ..defaults.clone()
    };
    for &n in &sizes {
        let nargs = vec![n.to_string(), "--steps".into(), STEPS.to_string()];
        let (mut t_np, mut t_def, mut t_def1, mut t_like) = (vec![], vec![], vec![], vec![]);
        let (mut np_json, mut np_rho) = (None, Vec::new());
        let (mut out_def, mut out_like) = (Vec::new(), Vec::new());
        for _ in 0..repeats {
            if let Some((j, r)) = peer("sinkhorn_numpy.py", &nargs, true) {
                best(&mut t_np, &seconds(&j));
                np_json = Some(j);
                np_rho = r;
            }
            let (t, o) = ours(n, defaults.clone(), true);
            best(&mut t_def, &t);
            out_def = o;
            let (t, _) = ours(
                n,
                SinkhornParams {
                    threads: Some(1),
                    ..defaults.clone()
                },
                true,
            );
            best(&mut t_def1, &t);
            let (t, o) = ours(n, numpy_like.clone(), false);
            best(&mut t_like, &t);
            out_like = o;
        }
        let np_mt = peer("sinkhorn_numpy.py", &nargs, false);
        let np_time = mean(&t_np);
        let iters = |o: &[StepOutput]| {
            format!(
                "{:?}",
                o.iter().map(|x| x.info.iterations).collect::<Vec<_>>()
            )
        };
        if let Some(j) = &np_json {
            println!(
                "| {n}² | numpy {} ({}) | 1 (BLAS) | {} | {:.4} | 1 | — |",
                j["numpy"].as_str().unwrap_or("?"),
                j["blas"].as_str().unwrap_or("?"),
                j["iterations"],
                np_time
            );
        }
        if let Some((j, r)) = &np_mt {
            let t = mean(&seconds(j));
            println!(
                "| {n}² | numpy | default (BLAS) | {} | {t:.4} | {:.2} | {:.1e} |",
                j["iterations"],
                np_time / t,
                agreement(&out_def, r)
            );
        }
        for (name, threads, t, o) in [
            (
                "ours, defaults but debias = false",
                "2 (rayon)",
                &t_def,
                &out_def,
            ),
            ("ours, defaults but debias = false", "1", &t_def1, &out_def),
            (
                "ours, numpy's iteration (ω = 1, cold)",
                "2 (rayon)",
                &t_like,
                &out_like,
            ),
        ] {
            println!(
                "| {n}² | {name} | {threads} | {} | {:.4} | {:.2} | {:.1e} |",
                iters(o),
                mean(t),
                np_time / mean(t),
                agreement(o, &np_rho)
            );
        }
        let it_np: f64 = np_json
            .as_ref()
            .and_then(|j| {
                j["iterations"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|x| x.as_f64()).sum())
            })
            .unwrap_or(f64::NAN);
        let it_like: f64 = out_like.iter().map(|o| o.info.iterations as f64).sum();
        println!(
            "| {n}² | per iteration: numpy / ours (ω = 1) | | | {:.2e} / {:.2e} s | {:.2} | |",
            np_time * STEPS as f64 / it_np,
            mean(&t_like) * STEPS as f64 / it_like,
            (np_time * STEPS as f64 / it_np) / (mean(&t_like) * STEPS as f64 / it_like)
        );
        if n == 64 && std::env::var_os("SKIP_POT").is_none() {
            let pargs = vec![n.to_string(), "--steps".into(), "1".into()];
            if let Some((j, r)) = peer("sinkhorn_pot.py", &pargs, true) {
                let t = seconds(&j)[0];
                println!(
                    "| {n}² | POT-style dense {}² kernel (POT {}), step 1 | 1 (BLAS) | {} | {t:.3} | {:.3} (ours, 2 threads: {:.0}× faster) | {:.1e} |",
                    n * n,
                    j["pot"].as_str().unwrap_or("?"),
                    j["iterations"],
                    np_time / t,
                    t / t_def[0],
                    agreement(&out_def[..1], &r)
                );
            }
        }
    }
    println!();
    println!("load average at the end: {}", load());
}

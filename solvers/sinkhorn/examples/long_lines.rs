//! Long lines at large τ: time and iterations per step with and without the multiscale start,
//! in one interleaved run, and the iterates against the exact 1D quantile backend, the exact JKO
//! iterate and each other.
//!
//! Problem: OU 1D (Fokker–Planck, β = 1, V = x²/2 on [−5, 5]) from N(1, 0.5²), default
//! parameters (only `multiscale` differs; the one-level solve is capped at `--cap` iterations so
//! that the run ends: a capped step is reported, not hidden), `--steps` steps with warm starts as
//! `jko run` does. For each (cells, τ) the two variants run one after the other, step by step.
//! CPU time is the process's user + system time (all threads) from /proc/self/stat.
//!
//! Run: cargo run --release -p jko-sinkhorn --example long_lines
//! [-- cells... [--tau τ...] [--cap N] [--steps k]] (default 1024 4096 16384, τ 0.1 0.5 1,
//! cap 3000, 2 steps).
//!
//! `--versus-cap`: the two variants are round 5's default ε (the rule with ε/(4τ) ≤ 10 % of β and
//! the blur capped at 32 cells, ε ≤ 2(32h)², set explicitly per step) and today's default (2.5 %,
//! no mesh-tied cap), both
//! with the multiscale start; the last column is then their L1 difference. With
//! `LONG_LINES_TEMPERATURE_CAP=f` the first variant holds ε/(4τ) ≤ f·β instead of the blur cap.
//!
//! Diagnostics (environment): `LONG_LINES_HISTORY=1` prints the violation history and notes of
//! every step; `LONG_LINES_OMEGA=w` fixes ω and `LONG_LINES_EPSILON_SCALING=1` turns ε-scaling on
//! in the multiscale variant.

use jko_core::exact::OrnsteinUhlenbeck;
use jko_core::{Energy, JkoStep, Mesh, StepOutput, StepSolver, WarmStart};
use jko_quantile::{QuantileParams, QuantileSolver};
use jko_sinkhorn::{SinkhornParams, SinkhornSolver};
use ndarray::Array1;
use std::time::Instant;

#[path = "common/mod.rs"]
mod common;
use common::{cpu, load, peak_rss_mib};

#[path = "../tests/common/mod.rs"]
mod reference;
use reference::ou_1d_start;

/// One chain of steps of one solver.
struct Chain {
    rho: Array1<f64>,
    warm: Option<WarmStart>,
    failed: Option<String>,
}

/// One step of a chain: (iterations, wall s, CPU s, note about the multiscale start, ε).
fn advance(
    solver: &dyn StepSolver,
    mesh: &Mesh,
    tau: f64,
    chain: &mut Chain,
    capped: Option<&SinkhornParams>,
) -> Option<(usize, f64, f64, String, String)> {
    if chain.failed.is_some() {
        return None;
    }
    let frozen = Energy::ornstein_uhlenbeck(1)
        .freeze(mesh, &chain.rho)
        .expect("energy");
    let problem = JkoStep::new(mesh, &chain.rho, tau, &frozen).expect("step");
    // Round 5's default ε: the rule with the extra temperature held below 10 % of β and the
    // blur capped at 32 cells, ε ≤ max(h², 2(32h)²) (the same as clamping the rule to round 5's
    // ε_max; module docs of `epsilon`). With LONG_LINES_TEMPERATURE_CAP=f instead: today's rule
    // with `max_extra_temperature = f`.
    let old_default = capped.map(|prm| {
        let h = mesh.as_grid().expect("a grid").spacing()[0];
        let temperature = std::env::var("LONG_LINES_TEMPERATURE_CAP")
            .ok()
            .and_then(|f| f.parse::<f64>().ok());
        let rule = SinkhornParams {
            max_extra_temperature: temperature.unwrap_or(0.1),
            ..prm.clone()
        };
        let eps = SinkhornSolver::new(rule.clone())
            .expect("sinkhorn")
            .epsilon_for(&problem)
            .epsilon;
        let eps = match temperature {
            Some(_) => eps,
            None => eps.min((h * h).max(2.0 * (32.0 * h).powi(2))),
        };
        SinkhornSolver::new(SinkhornParams {
            epsilon: Some(eps),
            ..prm.clone()
        })
        .expect("sinkhorn")
    });
    let solver: &dyn StepSolver = match &old_default {
        Some(s) => s,
        None => solver,
    };
    let (t0, c0) = (Instant::now(), cpu());
    let out: Result<StepOutput, _> = solver.step(&problem, chain.warm.as_ref());
    let (wall, cpu_s) = (t0.elapsed().as_secs_f64(), cpu() - c0);
    match out {
        Ok(out) => {
            let coarse = jko_sinkhorn::coarse_iterations(&out.info)
                .map_or("-".to_string(), |it| format!("{it} coarse"));
            let eps = out
                .info
                .notes
                .iter()
                .find_map(|n| n.strip_prefix("epsilon = "))
                .and_then(|s| s.split_whitespace().next())
                .unwrap_or("?")
                .to_string();
            if std::env::var_os("LONG_LINES_HISTORY").is_some() {
                let h = &out.info.history;
                let every = (h.len() / 25).max(1);
                let pts: Vec<String> = (0..h.len())
                    .step_by(every)
                    .map(|i| format!("{i}:{:.1e}", h[i]))
                    .collect();
                println!("    history {}: {}", solver.name(), pts.join(" "));
                println!("    notes: {:?}", out.info.notes);
            }
            let status = format!("{:?}", out.info.status);
            let it = out.info.iterations;
            chain.warm = Some(WarmStart::from(&out));
            chain.rho = out.rho;
            Some((it, wall, cpu_s, format!("{coarse}, {status}"), eps))
        }
        Err(e) => {
            chain.failed = Some(format!("{e}").chars().take(90).collect());
            println!(
                "    (failed after {wall:.2} s wall, {cpu_s:.2} s CPU: {})",
                chain.failed.as_deref().unwrap_or("")
            );
            None
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut sizes = Vec::new();
    let mut taus = Vec::new();
    let (mut cap, mut steps) = (3000usize, 2usize);
    let mut mode = "";
    let mut versus_cap = false;
    for a in &args {
        match a.as_str() {
            "--versus-cap" => versus_cap = true,
            "--tau" | "--cap" | "--steps" => mode = a.as_str(),
            x => match mode {
                "--tau" => taus.push(x.parse::<f64>().expect("tau")),
                "--cap" => cap = x.parse().expect("cap"),
                "--steps" => steps = x.parse().expect("steps"),
                _ => sizes.push(x.parse::<usize>().expect("cells")),
            },
        }
    }
    if sizes.is_empty() {
        sizes = vec![1024, 4096, 16384];
    }
    if taus.is_empty() {
        taus = vec![0.1, 0.5, 1.0];
    }
    let record_history = std::env::var_os("LONG_LINES_HISTORY").is_some();
    let one_level = SinkhornSolver::new(SinkhornParams {
        multiscale: false,
        max_iter: cap,
        record_history,
        ..SinkhornParams::default()
    })
    .expect("sinkhorn");
    let omega = std::env::var("LONG_LINES_OMEGA")
        .ok()
        .and_then(|w| w.parse().ok());
    let epsilon_scaling = jko_sinkhorn::EpsilonScaling {
        enabled: std::env::var_os("LONG_LINES_EPSILON_SCALING").is_some(),
        ..Default::default()
    };
    let multiscale = SinkhornSolver::new(SinkhornParams {
        record_history,
        omega,
        epsilon_scaling,
        ..SinkhornParams::default()
    })
    .expect("sinkhorn");
    let quantile = QuantileSolver::new(QuantileParams::default()).expect("quantile");
    println!(
        "OU 1D on [-5, 5] from N(1, 0.5^2), default sinkhorn parameters, {steps} steps (warm starts); one-level solve capped at {cap} iterations; load average at start {}",
        load()
    );
    println!();
    println!(
        "| cells | τ | step | variant | ε | iterations (coarse, status) | wall s | CPU s | L1 vs quantile | L1 vs exact JKO | L1 between the variants |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for &n in &sizes {
        let (mesh, g0, rho0) = ou_1d_start(n);
        for &tau in &taus {
            let new_chain = || Chain {
                rho: rho0.clone(),
                warm: None,
                failed: None,
            };
            let (mut q, mut a, mut b) = (new_chain(), new_chain(), new_chain());
            for s in 1..=steps {
                let exact = OrnsteinUhlenbeck::standard(1).jko_iterates(&g0, tau, s);
                let exact = mesh.sample(|x| exact.density(x));
                advance(&quantile, &mesh, tau, &mut q, None);
                let (ra, rb, names) = if versus_cap {
                    let prm = SinkhornParams {
                        record_history,
                        ..SinkhornParams::default()
                    };
                    (
                        advance(&multiscale, &mesh, tau, &mut a, Some(&prm)),
                        advance(&multiscale, &mesh, tau, &mut b, None),
                        [
                            if std::env::var_os("LONG_LINES_TEMPERATURE_CAP").is_some() {
                                "temperature cap from LONG_LINES_TEMPERATURE_CAP"
                            } else {
                                "round 5 default (blur cap 32 cells)"
                            },
                            "default (round 6)",
                        ],
                    )
                } else {
                    (
                        advance(&one_level, &mesh, tau, &mut a, None),
                        advance(&multiscale, &mesh, tau, &mut b, None),
                        ["one-level", "multiscale"],
                    )
                };
                let both = a.failed.is_none() && b.failed.is_none();
                for (name, r, c) in [(names[0], ra, &a), (names[1], rb, &b)] {
                    let Some((it, wall, cpu_s, note, eps)) = r else {
                        println!(
                            "| {n} | {tau} | {s} | {name} | | failed: {} | | | | | |",
                            c.failed.as_deref().unwrap_or("earlier step failed")
                        );
                        continue;
                    };
                    let vs = if both && name == names[1] {
                        format!("{:.2e}", mesh.l1_distance(&a.rho, &b.rho))
                    } else {
                        String::new()
                    };
                    println!(
                        "| {n} | {tau} | {s} | {name} | {eps} | {it} ({note}) | {wall:.3} | {cpu_s:.3} | {:.2e} | {:.2e} | {vs} |",
                        mesh.l1_distance(&c.rho, &q.rho),
                        mesh.l1_distance(&c.rho, &exact),
                    );
                }
            }
        }
    }
    println!();
    println!("load average at end {}", load());
    println!(
        "peak resident memory of the process: {:.0} MiB",
        peak_rss_mib()
    );
}

//! The slow mode of the fine Sinkhorn iteration on a long line: where the error of the iterates
//! lives and how fast it decays, against the linearised SOR model.
//!
//! Problem: OU 1D (β = 1, V = x²/2 on [−5, 5]) from N(1, 0.5²), one cold step at τ, default
//! parameters unless overridden. Every iteration of the final fine stage hands ln b to the
//! `trace` hook; after the step, with G* = ln b of the converged step (tolerance 1e-10 on the
//! marginal), the error e_k = ln b_k − G* is measured in the mass-weighted ℓ¹ norm
//! Σ q*|e_k| / Σ q* (the one the marginal violation sees) and in the max norm over the bulk
//! (cells with q* ≥ 1e-8 max q*), and its shape is printed at the iteration where the violation
//! first falls below `--at` (default 1e-8): per bin of the line, the mass and the mean |e|; and
//! the fraction of e explained by a constant and by a + b x + c x² (weighted least squares over
//! the bulk). The local rate is (‖e_{k+W}‖/‖e_k‖)^{1/W}; the model's is
//! ω* − 1 = 1 − 2/(1 + √(1 + σβ′)) with σ = 2τ/ε.
//!
//! Run: cargo run --release -p jko-sinkhorn --features trace --example slow_mode
//! [-- cells tau [--eps ε] [--omega ω] [--one-level] [--no-balance] [--at v] [--tol t]]

use jko_core::{Energy, JkoStep, StepSolver};
use jko_sinkhorn::{SinkhornParams, SinkhornSolver, TRACE, TraceEvent};
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[path = "../tests/common/mod.rs"]
mod reference;
use reference::ou_1d_start;

/// One iteration: (iteration, violation, ω, absorbed, ln b).
type Snap = (usize, f64, f64, bool, Vec<f64>);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut pos = Vec::new();
    let (mut eps, mut omega, mut multiscale, mut at, mut tol) = (None, None, true, 1e-8, 1e-10);
    let mut balance = true;
    let mut i = 0;
    while i < args.len() {
        let next = |i: usize| args.get(i + 1).and_then(|x| x.parse::<f64>().ok());
        match args[i].as_str() {
            "--eps" => {
                eps = next(i);
                i += 1;
            }
            "--omega" => {
                omega = next(i);
                i += 1;
            }
            "--at" => {
                at = next(i).unwrap_or(at);
                i += 1;
            }
            "--tol" => {
                tol = next(i).unwrap_or(tol);
                i += 1;
            }
            "--one-level" => multiscale = false,
            "--no-balance" => balance = false,
            x => pos.push(x.to_string()),
        }
        i += 1;
    }
    let n: usize = pos.first().and_then(|x| x.parse().ok()).unwrap_or(16384);
    let tau: f64 = pos.get(1).and_then(|x| x.parse().ok()).unwrap_or(0.1);

    let (mesh, _, rho0) = ou_1d_start(n);
    let frozen = Energy::ornstein_uhlenbeck(1)
        .freeze(&mesh, &rho0)
        .expect("energy");
    let problem = JkoStep::new(&mesh, &rho0, tau, &frozen).expect("step");
    let solver = SinkhornSolver::new(SinkhornParams {
        epsilon: eps,
        omega,
        multiscale,
        mass_balance: balance,
        tol,
        record_history: true,
        ..SinkhornParams::default()
    })
    .expect("sinkhorn");
    let choice = solver.epsilon_for(&problem);
    let e = choice.epsilon;
    let sb = 2.0 * tau / e * (choice.beta - choice.compensation);
    let model = 1.0 - 2.0 / (1.0 + (1.0 + sb).sqrt());
    let h = 10.0 / n as f64;
    println!(
        "cells {n}, tau {tau}, eps {e:.4e} (eps/h^2 = {:.1}, blur {:.1} cells, cap {:.3e}), sigma beta' = {sb:.1}, kappa = {:.5}, SOR model rate omega*-1 = {model:.4}",
        e / (h * h),
        choice.blur / h,
        choice.cap,
        sb / (1.0 + sb)
    );

    let snaps: Arc<Mutex<Vec<Snap>>> = Arc::new(Mutex::new(Vec::new()));
    let sink = snaps.clone();
    *TRACE.lock().expect("trace") = Some(Box::new(move |ev: TraceEvent<'_>| {
        if let Ok(mut s) = sink.lock() {
            s.push((
                ev.iteration,
                ev.violation,
                ev.omega,
                ev.absorbed,
                ev.ln_b.to_vec(),
            ));
        }
    }));
    let t0 = Instant::now();
    let out = solver.step(&problem, None).expect("step");
    let wall = t0.elapsed().as_secs_f64();
    *TRACE.lock().expect("trace") = None;
    let snaps = std::mem::take(&mut *snaps.lock().expect("snaps"));
    println!(
        "{} fine iterations, {wall:.2} s wall, status {:?}",
        out.info.iterations, out.info.status
    );
    for note in &out.info.notes {
        if note.starts_with("multiscale") || note.starts_with("scaling domain") {
            println!("  note: {note}");
        }
    }
    let Some(last) = snaps.last() else {
        println!("no trace (no fine stage recorded)");
        return;
    };
    let gstar = last.4.clone();
    let vol = mesh.volumes();
    let q: Vec<f64> = (0..n).map(|k| out.rho[k] * vol[k]).collect();
    let qmax = q.iter().fold(0.0f64, |a, &b| a.max(b));
    let bulk: Vec<bool> = q.iter().map(|&x| x >= 1e-8 * qmax).collect();
    let mass: f64 = q.iter().sum();
    let x: Vec<f64> = (0..n).map(|k| mesh.centre(k)[0]).collect();
    let err = |g: &[f64]| -> Vec<f64> {
        (0..n)
            .map(|k| {
                if g[k].is_finite() && gstar[k].is_finite() {
                    g[k] - gstar[k]
                } else {
                    0.0
                }
            })
            .collect()
    };
    let norms = |e: &[f64]| -> (f64, f64, f64) {
        let l1: f64 = (0..n).map(|k| q[k] * e[k].abs()).sum::<f64>() / mass;
        let bulk_max = (0..n)
            .filter(|&k| bulk[k])
            .fold(0.0f64, |a, k| a.max(e[k].abs()));
        let all_max = e.iter().fold(0.0f64, |a, &b| a.max(b.abs()));
        (l1, bulk_max, all_max)
    };
    println!();
    println!(
        "| iteration | violation | omega | absorbed | sum q|e|/M | max |e| bulk | max |e| all | local rate (W=20) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let l1s: Vec<f64> = snaps.iter().map(|s| norms(&err(&s.4)).0).collect();
    let every = (snaps.len() / 30).max(1);
    for (j, s) in snaps.iter().enumerate() {
        if j % every != 0 && j + 1 != snaps.len() {
            continue;
        }
        let (l1, bm, am) = norms(&err(&s.4));
        let rate = if j >= 20 && l1s[j - 20] > 0.0 {
            format!("{:.4}", (l1 / l1s[j - 20]).powf(1.0 / 20.0))
        } else {
            String::new()
        };
        println!(
            "| {} | {:.2e} | {:.3} | {} | {l1:.2e} | {bm:.2e} | {am:.2e} | {rate} |",
            s.0, s.1, s.2, s.3
        );
    }
    let absorbed = snaps.iter().filter(|s| s.3).count();
    println!("absorptions during the fine stage: {absorbed}");

    // The shape of the error where the violation first falls below `at`.
    let Some(j) = snaps.iter().position(|s| s.1 <= at) else {
        println!("violation never below {at:.1e}");
        return;
    };
    let e = err(&snaps[j].4);
    println!();
    println!(
        "error shape at iteration {} (violation {:.2e}):",
        snaps[j].0, snaps[j].1
    );
    // Weighted least squares of e on {1}, {1, x, x²} over the bulk (weights q).
    let fit = |deg: usize| -> f64 {
        let m = deg + 1;
        let mut a = vec![vec![0.0; m + 1]; m];
        for k in (0..n).filter(|&k| bulk[k]) {
            let phi: Vec<f64> = (0..m).map(|d| x[k].powi(d as i32)).collect();
            for r in 0..m {
                for c in 0..m {
                    a[r][c] += q[k] * phi[r] * phi[c];
                }
                a[r][m] += q[k] * phi[r] * e[k];
            }
        }
        // Gaussian elimination (tiny system).
        for c in 0..m {
            let pivot = a[c].clone();
            for (r, row) in a.iter_mut().enumerate() {
                if r != c {
                    let f = row[c] / pivot[c];
                    for (x, p) in row.iter_mut().zip(&pivot).skip(c) {
                        *x -= f * p;
                    }
                }
            }
        }
        let coef: Vec<f64> = (0..m).map(|r| a[r][m] / a[r][r]).collect();
        let (mut res, mut tot) = (0.0, 0.0);
        for k in (0..n).filter(|&k| bulk[k]) {
            let model: f64 = (0..m).map(|d| coef[d] * x[k].powi(d as i32)).sum();
            res += q[k] * (e[k] - model).powi(2);
            tot += q[k] * e[k].powi(2);
        }
        println!(
            "  fit on polynomials of degree {deg}: coefficients {:?}, residual fraction of the q-weighted energy {:.3e}",
            coef.iter().map(|c| format!("{c:.3e}")).collect::<Vec<_>>(),
            res / tot
        );
        res / tot
    };
    fit(0);
    fit(2);
    let bins = 20;
    println!("| x from | x to | mass | mean |e| (q-weighted) | max |e| | share of sum q|e| |");
    println!("|---|---|---|---|---|---|");
    let total: f64 = (0..n).map(|k| q[k] * e[k].abs()).sum();
    for b in 0..bins {
        let r = b * n / bins..(b + 1) * n / bins;
        let m: f64 = q[r.clone()].iter().sum();
        let s: f64 = r.clone().map(|k| q[k] * e[k].abs()).sum();
        let mx = r.clone().fold(0.0f64, |a, k| a.max(e[k].abs()));
        println!(
            "| {:.2} | {:.2} | {m:.2e} | {:.2e} | {mx:.2e} | {:.3} |",
            x[r.start],
            x[r.end - 1],
            if m > 0.0 { s / m } else { 0.0 },
            s / total
        );
    }
}

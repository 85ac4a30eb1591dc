//! Entropic bias of the Sinkhorn JKO step against the exact JKO iterate (Ornstein–Uhlenbeck).
//!
//! F(ρ) = ∫ ρ ln ρ + ∫ |x|²/2 ρ, ρ⁰ = N(m₀, diag(s₀²)) sampled at cell centres, τ = 0.1.
//! References: the exact JKO iterate (jko_core::exact, exact W²) and the continuous *entropic*
//! JKO step of a Gaussian (closed form in tests/common/mod.rs): the gap solver − entropic is the discretisation,
//! the gap entropic − exact is the entropic bias.
//!
//! Run: cargo run --release -p jko-sinkhorn --example ou_bias

use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
use jko_core::{Energy, JkoStep, Mesh, StepSolver, WarmStart};
use jko_sinkhorn::{SinkhornParams, SinkhornSolver};
use std::time::Instant;

#[path = "../tests/common/mod.rs"]
mod common;
use common::{entropic_ou_std, max_abs_diff};

struct Row {
    eps: f64,
    err_mean: f64,
    err_var: f64,
    err_entropic: f64,
    err_l1: f64,
    iters: Vec<usize>,
    time: f64,
    log: bool,
}

fn run(
    dim: usize,
    n: usize,
    half: f64,
    tau: f64,
    steps: usize,
    eps: Option<f64>,
    warm_start: bool,
) -> Row {
    let mesh = Mesh::grid(&vec![n; dim], &vec![-half; dim], &vec![half; dim]).unwrap();
    let m0: Vec<f64> = (0..dim).map(|a| if a == 0 { 1.0 } else { -0.5 }).collect();
    let s0: Vec<f64> = (0..dim).map(|a| if a == 0 { 0.5 } else { 0.7 }).collect();
    let g0 = Gaussian::diagonal(&m0, &s0);
    let mut rho = mesh.sample(|x| g0.density(x));
    let mass = mesh.mass(&rho);
    rho /= mass;
    let energy = Energy::ornstein_uhlenbeck(dim);
    let solver = SinkhornSolver::new(SinkhornParams {
        epsilon: eps,
        ..Default::default()
    })
    .unwrap();
    let mut e_used = Vec::new();
    let mut warm: Option<WarmStart> = None;
    let (mut iters, mut log) = (Vec::new(), false);
    let t0 = Instant::now();
    for _ in 0..steps {
        let e = energy.freeze(&mesh, &rho).unwrap();
        let problem = JkoStep::new(&mesh, &rho, tau, &e).unwrap();
        let eps_step = solver.epsilon_for(&problem).epsilon;
        e_used.push(eps_step);
        let out = solver
            .step(&problem, warm.as_ref())
            .unwrap_or_else(|err| panic!("eps {eps_step}: {err}"));
        iters.push(out.info.iterations);
        assert!(out.rho.iter().all(|r| r.is_finite()));
        log |= out
            .info
            .notes
            .iter()
            .any(|s| s.starts_with("log-domain: from") || s == "log-domain: always");
        if warm_start {
            warm = Some(WarmStart::from(&out));
        }
        rho = out.rho;
    }
    let time = t0.elapsed().as_secs_f64();
    let exact = OrnsteinUhlenbeck::standard(dim).jko_iterates(&g0, tau, steps);
    let mut s_ent = s0[0];
    for &e in &e_used {
        s_ent = entropic_ou_std(s_ent, tau, 1.0, 1.0, e);
    }
    let vols = mesh.volumes();
    let m = mesh.mass(&rho);
    let mut mean = vec![0.0; dim];
    for k in 0..mesh.n_cells() {
        for (a, ma) in mean.iter_mut().enumerate() {
            *ma += vols[k] * rho[k] * mesh.centre(k)[a] / m;
        }
    }
    let (mut var, mut l1) = (0.0, 0.0); // variance along axis 0
    for k in 0..mesh.n_cells() {
        let x = mesh.centre(k);
        var += vols[k] * rho[k] * (x[0] - mean[0]).powi(2) / m;
        l1 += vols[k] * (rho[k] - exact.density(x)).abs();
    }
    let err_mean = max_abs_diff(&mean, &exact.mean);
    Row {
        eps: e_used[0],
        err_mean,
        err_var: (var - exact.cov[0]).abs(),
        err_entropic: (var - s_ent * s_ent).abs(),
        err_l1: l1,
        iters,
        time,
        log,
    }
}

fn header() {
    println!(
        "| eps | h | err mean | err var (vs exact JKO) | err var (vs entropic closed form) | L1 error | iterations | time (s) | log-domain |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
}

fn line(eps: f64, h: f64, r: &Row) {
    println!(
        "| {eps:.1e} | {h:.4} | {:.2e} | {:.3e} | {:.2e} | {:.3e} | {:?} | {:.2} | {} |",
        r.err_mean,
        r.err_var,
        r.err_entropic,
        r.err_l1,
        r.iters,
        r.time,
        if r.log { "yes" } else { "no" }
    );
}

fn main() {
    let tau = 0.1;
    println!("## 1D OU on [-5,5], 1000 cells (h^2 = 1e-4), tau = {tau}, one step from N(1, 0.25)");
    header();
    for eps in [1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4] {
        line(eps, 0.01, &run(1, 1000, 5.0, tau, 1, Some(eps), true));
    }

    println!(
        "\n## 1D, fixed eps = 1e-3, refining h: the discrete step converges to the continuous entropic step"
    );
    header();
    for n in [100, 200, 400, 800] {
        line(
            1e-3,
            10.0 / n as f64,
            &run(1, n, 5.0, tau, 1, Some(1e-3), true),
        );
    }

    println!("\n## 1D, default eps (0.25 tau^2 F^2, floor 2h^2): error to the exact JKO iterate");
    header();
    for n in [100, 200, 400, 800, 1600] {
        let h = 10.0 / n as f64;
        let r = run(1, n, 5.0, tau, 1, None, true);
        line(r.eps, h, &r);
    }

    println!(
        "\n## 1D, eps = 1e-4 below h^2: the plan cannot move mass by less than a cell (lock-in)"
    );
    header();
    for n in [200, 400, 1000] {
        line(
            1e-4,
            10.0 / n as f64,
            &run(1, n, 5.0, tau, 1, Some(1e-4), true),
        );
    }

    println!("\n## 1D, 5 steps, eps = 1e-3, 400 cells: warm-started vs cold steps");
    header();
    line(1e-3, 0.025, &run(1, 400, 5.0, tau, 5, Some(1e-3), true));
    line(1e-3, 0.025, &run(1, 400, 5.0, tau, 5, Some(1e-3), false));
    println!("(first row warm-started from the previous potential, second cold)");

    println!(
        "\n## 2D OU on [-4,4]^2, 128^2 cells (h^2 = 3.9e-3), one step from N((1,-0.5), diag(0.25, 0.49)); variance along axis 0"
    );
    header();
    for eps in [4e-2, 2e-2, 1e-2, 5e-3, 2.5e-3] {
        line(eps, 8.0 / 128.0, &run(2, 128, 4.0, tau, 1, Some(eps), true));
    }

    println!(
        "\n## 2D on [-5,5]^2, 64^2 cells, eps = 1e-4 (log domain only, far below h^2: robustness, not accuracy)"
    );
    header();
    line(
        1e-4,
        10.0 / 64.0,
        &run(2, 64, 5.0, tau, 1, Some(1e-4), true),
    );
}

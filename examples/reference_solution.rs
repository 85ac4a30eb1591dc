//! A reference solution: Fokker–Planck / Ornstein–Uhlenbeck in 1D with the conic backend,
//! compared with the exact solutions of `jko_core::exact` at T = 1 for three time steps.
//!
//! ∂ρ/∂t = Δρ + ∇·(ρx) from N(1, 0.5²): the gradient flow stays Gaussian, mean e^{−t},
//! variance 1 + (0.25 − 1)e^{−2t}; the exact JKO iterates (exact W²) are Gaussian too. The
//! one-step two-point-flux scheme is first order in τ, so the error to the flow halves with τ
//! until the mesh error (h = 0.05 here) takes over.
//!
//! ```sh
//! cargo run -p jko --example reference_solution
//! ```
//!
//! `jko convergence CONFIG --refine tau` runs such a study from a config and writes
//! `convergence.json`, which `jko plot` draws.

use jko::RunOptions;
use jko::config::Config;
use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let t_end = 1.0;
    let ou = OrnsteinUhlenbeck::standard(1);
    let g0 = Gaussian::diagonal(&[1.0], &[0.5]);
    let flow = ou.flow(&g0, t_end);
    let mut errors: Vec<(f64, f64)> = Vec::new();
    println!("OU 1D, 200 cells on [-5, 5], conic backend, T = {t_end}");
    println!(
        "{:>7} {:>6} {:>12} {:>12} {:>12} {:>12} {:>8}",
        "tau", "steps", "L1 to flow", "L1 to JKO", "mean err", "var err", "time s"
    );
    for steps in [10, 20, 40] {
        // The built-in `ou-1d` example (`jko example ou-1d`): 200 cells on [-5, 5], conic.
        let mut config = Config::from_toml(jko::examples::example("ou-1d").ok_or("no ou-1d")?)?;
        config.scheme.steps = steps;
        config.scheme.tau = t_end / steps as f64;
        let tau = config.scheme.tau;
        let start = std::time::Instant::now();
        let result = jko::run(
            &config,
            Path::new("."),
            &RunOptions::default(),
            &mut [],
            &|| false,
        )?;
        let seconds = start.elapsed().as_secs_f64();
        let mesh = &result.mesh;
        let rho = &result.rho;
        let exact_jko = ou.jko_iterates(&g0, tau, steps);
        let l1 = |g: &Gaussian| -> f64 {
            (0..mesh.n_cells())
                .map(|k| mesh.volumes()[k] * (rho[k] - g.density(mesh.centre(k))).abs())
                .sum()
        };
        let moment = |p: i32, about: f64| -> f64 {
            (0..mesh.n_cells())
                .map(|k| mesh.volumes()[k] * rho[k] * (mesh.centre(k)[0] - about).powi(p))
                .sum()
        };
        let mean = moment(1, 0.0);
        let var = moment(2, mean);
        let err = l1(&flow);
        println!(
            "{tau:>7.4} {steps:>6} {err:>12.3e} {:>12.3e} {:>12.3e} {:>12.3e} {seconds:>8.2}",
            l1(&exact_jko),
            (mean - flow.mean[0]).abs(),
            (var - flow.cov[0]).abs(),
        );
        errors.push((tau, err));
    }
    // Observed order between successive time steps: ln(e_coarse/e_fine) / ln(τ_coarse/τ_fine).
    let orders: Vec<String> = errors
        .windows(2)
        .map(|w| format!("{:.2}", (w[0].1 / w[1].1).ln() / (w[0].0 / w[1].0).ln()))
        .collect();
    println!(
        "observed orders in tau (L1 to the flow): {}",
        orders.join(", ")
    );
    Ok(())
}

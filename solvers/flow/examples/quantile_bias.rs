//! Implicit-bias study in 1D quantile coordinates (flat W2 geometry).
//! (1) OU, V = x²/2, N(1, 0.5²), T = 1: resummed JKO-Flow and the plain flow against the EXACT
//!     JKO iterates (closed form) and against the quantile proximal steps on the same grid.
//! (2) Quartic V = x⁴/4 (entropy + V), N(1, 0.5²), T = 1: against the quantile proximal steps.
//! Run: cargo run --release -p jko-flow --example quantile_bias
use jko_core::Potential;
use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
use jko_flow::Variant;
use jko_flow::quantile::{QuantileEnergy, QuantileFlow, QuantileGrid, jko_step};
use std::time::Instant;

const ETAS: [f64; 7] = [0.2, 0.1, 0.05, 0.025, 0.0125, 0.00625, 0.003125];

fn study(name: &str, energy: &QuantileEnergy, n: usize, z_max: f64, exact_ou: bool) {
    let grid = QuantileGrid::gaussian_levels(n, z_max).unwrap();
    let x0 = grid.gaussian(1.0, 0.5);
    let t_end = 1.0;
    let wgf = plain_flow(&grid, energy, &x0, t_end);
    println!(
        "\n{name}: {n} particles at u = Phi(z), z in [-{z_max}, {z_max}]; T = 1; W2 on the grid"
    );
    println!(
        "{:>9} | {:>11} {:>5} | {:>11} {:>5} | {:>11} {:>5} | {:>6} {:>8} {:>8} | {:>9}",
        "eta",
        "resummed",
        "ord",
        "modified",
        "ord",
        "plain WGF",
        "ord",
        "newton",
        "prox s",
        "flow s",
        "W2(prox,exact)  substeps"
    );
    let mut prev: Option<(f64, f64, f64)> = None;
    let mut substeps;
    for &eta in &ETAS {
        let steps = (t_end / eta).round() as usize;
        let t0 = Instant::now();
        let mut x = x0.clone();
        let mut newton = 0;
        for _ in 0..steps {
            let (y, it) = jko_step(&grid, energy, &x, eta, 1e-12).unwrap();
            x = y;
            newton += it;
        }
        let prox_s = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let (res, st) = QuantileFlow::new(&grid, energy, eta, Variant::Resummed)
            .unwrap()
            .integrate(&x0, t_end)
            .unwrap();
        substeps = st.accepted;
        let flow_s = t1.elapsed().as_secs_f64();
        let e_res = grid.w2(&x, &res);
        let mut modified = QuantileFlow::new(&grid, energy, eta, Variant::Modified).unwrap();
        modified.ode.max_steps = 20_000;
        let e_mod = match modified.integrate(&x0, t_end) {
            Ok((y, _)) => grid.w2(&x, &y),
            Err(e) => {
                if eta == ETAS[0] {
                    println!("  (modified J^eta flow, eta = {eta}: {e})");
                }
                f64::NAN
            }
        };
        let e_wgf = grid.w2(&x, &wgf);
        let exact = if exact_ou {
            let g = OrnsteinUhlenbeck::standard(1).jko_iterates(
                &Gaussian::diagonal(&[1.0], &[0.5]),
                eta,
                steps,
            );
            format!(
                "{:>9.2e}",
                grid.w2(&x, &grid.gaussian(g.mean[0], g.cov[0].sqrt()))
            )
        } else {
            "-".into()
        };
        let o = |a: f64, b: f64| (a / b).log2();
        let (o1, o2, o3) = prev.map_or((f64::NAN, f64::NAN, f64::NAN), |p| {
            (o(p.0, e_res), o(p.1, e_mod), o(p.2, e_wgf))
        });
        println!(
            "{eta:>9} | {e_res:>11.4e} {o1:>5.2} | {e_mod:>11.4e} {o2:>5.2} | {e_wgf:>11.4e} {o3:>5.2} | {newton:>6} {prox_s:>8.4} {flow_s:>8.4} | {exact} {substeps:>6}"
        );
        prev = Some((e_res, e_mod, e_wgf));
    }
}

/// The plain flow is stiff for an explicit integrator on fine grids (rates ~ 1/(s dz)^2):
/// Richardson-extrapolated implicit Euler, 2 X(tau/2) - X(tau), tau = T/1000, error O(tau^2).
fn plain_flow(grid: &QuantileGrid, energy: &QuantileEnergy, x0: &[f64], t_end: f64) -> Vec<f64> {
    let implicit_euler = |steps: usize| {
        let mut x = x0.to_vec();
        for _ in 0..steps {
            x = jko_step(grid, energy, &x, t_end / steps as f64, 1e-13)
                .unwrap()
                .0;
        }
        x
    };
    let (a, b) = (implicit_euler(1000), implicit_euler(2000));
    a.iter().zip(&b).map(|(a, b)| 2.0 * b - a).collect()
}

/// Cross-check against the independent `jko_quantile` backend (its own discretisation): moments.
fn cross_check() {
    let grid = QuantileGrid::gaussian_levels(4001, 7.0).unwrap();
    let energy = QuantileEnergy::new(1.0, Some(Potential::Quartic)).unwrap();
    let x0 = grid.gaussian(1.0, 0.5);
    let qgrid = jko_quantile::QuantileGrid::gaussian(4001, 8.0).unwrap();
    let qenergy = jko_quantile::QuantileEnergy::from_energy(
        &jko_core::Energy::fokker_planck(1.0, Potential::Quartic),
        None,
    )
    .unwrap();
    let params = jko_quantile::QuantileParams::default();
    let wgf = Some(grid.moments(&plain_flow(&grid, &energy, &x0, 1.0)));
    println!(
        "\nQuartic, cross-check against jko_quantile::jko_step (4001 Gaussian nodes, z_max 8; independent code):"
    );
    println!("error = |dmean| + |dvar| at T = 1");
    println!(
        "{:>9} | {:>11} {:>5} | {:>11} {:>5} | {:>8}",
        "eta", "resummed", "ord", "plain WGF", "ord", "prox s"
    );
    let mut prev: Option<(f64, f64)> = None;
    for &eta in &ETAS[..6] {
        let steps = (1.0 / eta).round() as usize;
        let t0 = Instant::now();
        let mut st = jko_quantile::from_gaussian(1.0, 0.5, &qgrid, 1.0).unwrap();
        for _ in 0..steps {
            st = jko_quantile::jko_step(&st, eta, &qenergy, &params)
                .unwrap()
                .0;
        }
        let secs = t0.elapsed().as_secs_f64();
        let m = st.moments();
        let res = QuantileFlow::new(&grid, &energy, eta, Variant::Resummed)
            .unwrap()
            .integrate(&x0, 1.0)
            .unwrap()
            .0;
        let (rm, rv) = grid.moments(&res);
        let e_res = (rm - m.mean).abs() + (rv - m.variance).abs();
        let e_wgf = wgf.map_or(f64::NAN, |(wm, wv)| {
            (wm - m.mean).abs() + (wv - m.variance).abs()
        });
        let o = |a: f64, b: f64| (a / b).log2();
        let (o1, o2) = prev.map_or((f64::NAN, f64::NAN), |p| (o(p.0, e_res), o(p.1, e_wgf)));
        println!("{eta:>9} | {e_res:>11.4e} {o1:>5.2} | {e_wgf:>11.4e} {o2:>5.2} | {secs:>8.3}");
        prev = Some((e_res, e_wgf));
    }
}

fn main() {
    cross_check();
    let ou = QuantileEnergy::new(1.0, Some(Potential::quadratic(vec![0.0], 1.0))).unwrap();
    let quartic = QuantileEnergy::new(1.0, Some(Potential::Quartic)).unwrap();
    study("OU (V = x^2/2)", &ou, 1001, 7.0, true);
    study("Quartic (V = x^4/4)", &quartic, 1001, 7.0, false);
    study(
        "Quartic (V = x^4/4), finer grid",
        &quartic,
        4001,
        7.0,
        false,
    );
    // OU against the exact JKO iterates (closed form), resummed flow on the grid: spatial floor.
    let grid = QuantileGrid::gaussian_levels(4001, 7.0).unwrap();
    let x0 = grid.gaussian(1.0, 0.5);
    println!(
        "\nOU, 4001 particles: resummed quantile JKO-Flow against the EXACT JKO iterates (Gaussian quantiles)"
    );
    println!("{:>9} | {:>11} {:>5}", "eta", "W2", "ord");
    let mut prev = None;
    for &eta in &ETAS {
        let steps = (1.0 / eta).round() as usize;
        let g = OrnsteinUhlenbeck::standard(1).jko_iterates(
            &Gaussian::diagonal(&[1.0], &[0.5]),
            eta,
            steps,
        );
        let y = QuantileFlow::new(&grid, &ou, eta, Variant::Resummed)
            .unwrap()
            .integrate(&x0, 1.0)
            .unwrap()
            .0;
        let e = grid.w2(&y, &grid.gaussian(g.mean[0], g.cov[0].sqrt()));
        let o = prev.map_or(f64::NAN, |p: f64| (p / e).log2());
        println!("{eta:>9} | {e:>11.4e} {o:>5.2}");
        prev = Some(e);
    }
}

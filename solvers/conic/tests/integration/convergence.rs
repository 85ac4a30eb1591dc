//! Convergence of the one-step scheme to exact solutions (docs/mathematics.md §3) under joint refinement
//! of τ and h. Numbers are printed; run with `--nocapture` to see them.

use crate::common::*;
use jko_core::exact::{Barenblatt, Gaussian, OrnsteinUhlenbeck};
use jko_core::{Energy, Mesh, Potential};

struct OuErrors {
    mean: f64,
    var: f64,
    l1: f64,
}

/// OU on [-5, 5] from N(1, 0.5²) to T = 1 with N cells and `steps` steps; errors against
/// `reference` (the exact flow or the exact JKO iterates).
fn ou_run(n: usize, steps: usize) -> (Mesh, ndarray::Array1<f64>) {
    let mesh = Mesh::grid(&[n], &[-5.0], &[5.0]).unwrap();
    let g0 = Gaussian::diagonal(&[1.0], &[0.5]);
    let rho0 = normalised(&mesh, 1.0, |x| g0.density(x));
    let energy = Energy::fokker_planck(1.0, Potential::quadratic(vec![0.0], 1.0));
    let rho = run(&mesh, &rho0, &energy, 1.0 / steps as f64, steps);
    (mesh, rho)
}

fn ou_errors(mesh: &Mesh, rho: &ndarray::Array1<f64>, reference: &Gaussian) -> OuErrors {
    let (mean, var) = moments_1d(mesh, rho);
    OuErrors {
        mean: (mean - reference.mean[0]).abs(),
        var: (var - reference.cov[0]).abs(),
        l1: l1_error(mesh, rho, |x| reference.density(x)),
    }
}

/// Runs OU at (N, steps) on [-5, 5] to T = 1; prints errors against the flow and the exact JKO
/// iterates and returns the errors against the flow.
fn ou_study(levels: &[(usize, usize)]) -> Vec<OuErrors> {
    let ou = OrnsteinUhlenbeck::standard(1);
    let g0 = Gaussian::diagonal(&[1.0], &[0.5]);
    let flow = ou.flow(&g0, 1.0);
    let mut errors = Vec::new();
    for &(n, steps) in levels {
        let (mesh, rho) = ou_run(n, steps);
        let tau = 1.0 / steps as f64;
        let e = ou_errors(&mesh, &rho, &flow);
        let jko = ou_errors(&mesh, &rho, &ou.jko_iterates(&g0, tau, steps));
        println!(
            "OU N={n:4} tau={tau:.4}: vs flow mean {:.3e} var {:.3e} L1 {:.3e} | vs exact JKO mean {:.3e} var {:.3e} L1 {:.3e}",
            e.mean, e.var, e.l1, jko.mean, jko.var, jko.l1
        );
        errors.push(e);
    }
    for w in errors.windows(2) {
        let orders = [
            (w[0].mean / w[1].mean).log2(),
            (w[0].var / w[1].var).log2(),
            (w[0].l1 / w[1].l1).log2(),
        ];
        println!("observed orders (mean, var, L1): {orders:.3?}");
    }
    errors
}

// The L1 error is first order from tau = 0.1 on. The moment errors are not yet asymptotic at
// these step sizes: measured at N = 400, the mean error is about -0.05 tau + 0.67 tau^2
// (+7.5e-4, -9.2e-4, -8.5e-4, -5.3e-4 for tau = 0.1, 0.05, 0.025, 0.0125), so the moments are
// checked against a bound here and their orders are printed by the ignored study below.
// The first pair (tau 0.2 -> 0.1) is still pre-asymptotic in L1 too (order 1.5).
#[test]
fn ornstein_uhlenbeck_converges_at_first_order() {
    let errors = ou_study(&[(50, 5), (100, 10), (200, 20)]);
    let orders: Vec<f64> = errors
        .windows(2)
        .map(|w| (w[0].l1 / w[1].l1).log2())
        .collect();
    assert!((0.8..=1.6).contains(&orders[0]), "L1 orders {orders:.3?}");
    assert!((0.8..=1.35).contains(&orders[1]), "L1 orders {orders:.3?}");
    for e in &errors[1..] {
        assert!(
            e.mean < 2e-3 && e.var < 2e-3,
            "moments: mean {:.3e} var {:.3e}",
            e.mean,
            e.var
        );
    }
}

/// Slow study (about 30 s): `cargo test --release -p jko-conic --test integration -- --ignored --nocapture convergence::`.
#[test]
#[ignore]
fn ornstein_uhlenbeck_refinement_study() {
    let errors = ou_study(&[(50, 5), (100, 10), (200, 20), (400, 40), (800, 80)]);
    for w in errors[2..].windows(2) {
        let order = (w[0].l1 / w[1].l1).log2();
        assert!((0.8..=1.3).contains(&order), "L1 order {order:.3}");
    }
}

#[test]
fn barenblatt_converges_and_keeps_its_support() {
    let (m, t0, t1) = (2.0, 0.1, 0.5);
    let b = Barenblatt::new(m, 1, 1.0).unwrap();
    let energy = Energy::porous_medium(m);
    let radius = b.support_radius(t1);
    let mut errors = Vec::new();
    for &(n, steps) in &[(40usize, 8usize), (80, 16), (160, 32)] {
        let mesh = Mesh::grid(&[n], &[-2.5], &[2.5]).unwrap();
        let h = 5.0 / n as f64;
        let rho0 = normalised(&mesh, 1.0, |x| b.density(t0, x));
        let rho = run(&mesh, &rho0, &energy, (t1 - t0) / steps as f64, steps);
        let l1 = l1_error(&mesh, &rho, |x| b.density(t1, x));
        let peak = max_abs(&rho);
        // Support edge: outermost cells above 1e-3 of the peak (the implicit front has a thin,
        // super-exponentially decaying foot: 1e-3, 1e-6, 1e-9 of the peak cell by cell).
        let support: Vec<f64> = (0..n)
            .filter(|&k| rho[k] > 1e-3 * peak)
            .map(|k| mesh.centre(k)[0])
            .collect();
        let (left, right) = (support[0] - 0.5 * h, support[support.len() - 1] + 0.5 * h);
        println!(
            "Barenblatt N={n:4} tau={:.4}: L1 {l1:.3e}, support [{left:.4}, {right:.4}] vs ±{radius:.4} (h = {h})",
            (t1 - t0) / steps as f64
        );
        assert!(
            (right - radius).abs() <= 2.0 * h + 1e-12,
            "right edge {right} vs {radius}"
        );
        assert!(
            (left + radius).abs() <= 2.0 * h + 1e-12,
            "left edge {left} vs {radius}"
        );
        errors.push(l1);
    }
    let orders: Vec<f64> = errors.windows(2).map(|w| (w[0] / w[1]).log2()).collect();
    println!("Barenblatt observed L1 orders: {orders:.3?}");
    assert!(errors[1] < errors[0] && errors[2] < errors[1], "{errors:?}");
    assert!(orders.iter().all(|&o| o > 0.5), "{orders:?}");
}

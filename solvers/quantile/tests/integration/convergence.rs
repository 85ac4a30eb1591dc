//! Convergence of the quantile JKO step against exact solutions (docs/mathematics.md §3).
//!
//! Numbers measured when these tests were written are quoted next to each tolerance.

use jko_core::Interaction;
use jko_core::Potential;
use jko_core::exact::{Barenblatt, Gaussian, OrnsteinUhlenbeck};
use jko_quantile::{
    InteractionTreatment, NodeDistribution, QuantileEnergy, QuantileGrid, QuantileParams,
    QuantilePotential, QuantileState, from_gaussian, from_quantile, jko_step, w2_squared,
};

fn sci(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.3e}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Observed orders log₂(eᵢ / eᵢ₊₁) of errors at successively halved resolutions.
fn halving_orders(errors: &[f64]) -> Vec<f64> {
    errors.windows(2).map(|e| (e[0] / e[1]).log2()).collect()
}

/// The observed orders of `errors` (printed after `what`) all lie within `slack` of 1.
fn assert_first_order(what: &str, errors: &[f64], slack: f64) {
    let orders = halving_orders(errors);
    eprintln!("{what}: {}, orders {orders:.3?}", sci(errors));
    assert!(orders.iter().all(|p| (p - 1.0).abs() < slack), "{orders:?}");
}

fn fokker_planck(beta: f64, stiffness: f64) -> QuantileEnergy {
    QuantileEnergy {
        entropy: Some(beta),
        potential: (stiffness != 0.0).then(|| {
            QuantilePotential::Closed(Potential::Quadratic {
                center: vec![0.0],
                stiffness,
            })
        }),
        ..QuantileEnergy::default()
    }
}

fn iterate(
    state: &QuantileState,
    tau: f64,
    steps: usize,
    energy: &QuantileEnergy,
) -> QuantileState {
    let params = QuantileParams::default();
    (0..steps).fold(state.clone(), |s, _| {
        let (next, info) = jko_step(&s, tau, energy, &params).expect("step");
        assert_eq!(info.status, jko_core::StepStatus::Solved, "{info:?}");
        next
    })
}

/// Relative errors in mean and standard deviation against the exact JKO iterates.
fn gaussian_errors(
    ou: &OrnsteinUhlenbeck,
    grid: &QuantileGrid,
    tau: f64,
    steps: usize,
) -> (f64, f64) {
    let s0 = from_gaussian(1.0, 0.5, grid, 1.0).unwrap();
    let s = iterate(&s0, tau, steps, &fokker_planck(ou.beta, ou.stiffness));
    let exact = ou.jko_iterates(&Gaussian::diagonal(&[1.0], &[0.5]), tau, steps);
    let m = s.moments();
    let (em, es) = (exact.mean[0], exact.cov[0].sqrt());
    (
        (m.mean - em).abs() / em.abs(),
        (m.variance.sqrt() - es).abs() / es,
    )
}

/// Gaussian nodes carry a Gaussian flow exactly (up to the node quadrature): 1 and 10 steps
/// of τ = 0.1 match the exact JKO iterates of Ornstein–Uhlenbeck and of the heat equation.
#[test]
fn gaussian_flows_are_exact_on_gaussian_nodes() {
    let cases = [
        ("OU", OrnsteinUhlenbeck::standard(1), &[41, 401, 4001][..]),
        ("heat", OrnsteinUhlenbeck::heat(1.0, 1), &[41, 4001][..]),
    ];
    for (name, flow, sizes) in cases {
        for &n in sizes {
            let g = QuantileGrid::gaussian(n, 8.0).unwrap();
            for &steps in &[1, 10] {
                let (em, es) = gaussian_errors(&flow, &g, 0.1, steps);
                eprintln!("{name} n={n} steps={steps}: mean {em:.2e} std {es:.2e}");
                assert!(em < 1e-8 && es < 1e-8, "{name} n={n} steps={steps}");
            }
        }
    }
}

#[test]
fn equal_mass_nodes_converge_at_first_order() {
    let ou = OrnsteinUhlenbeck::standard(1);
    let errs: Vec<f64> = [500, 1000, 2000, 4000]
        .iter()
        .map(|&n| gaussian_errors(&ou, &QuantileGrid::uniform(n).unwrap(), 0.1, 10).1)
        .collect();
    // Measured: 1.02e-3, 5.08e-4, 2.54e-4, 1.27e-4; orders 1.000.
    assert_first_order("uniform nodes, OU 10 steps: std errors", &errs, 0.05);
    assert!(errs[0] < 2e-3);
}

#[test]
fn quadratic_interaction_matches_the_ou_closed_form() {
    // W = s|z|²/2 with entropy: W * ρ = s M (x² − 2 x mean + E x²)/2, so one step (frozen or
    // implicit: the mean does not move) is the OU step with stiffness sM about the mean.
    let (s, mass, tau) = (0.7, 2.0, 0.2);
    let g = QuantileGrid::gaussian(801, 8.0).unwrap();
    let s0 = from_gaussian(1.0, 0.5, &g, mass).unwrap();
    let ou = OrnsteinUhlenbeck {
        beta: 1.0,
        stiffness: s * mass,
        center: vec![1.0],
    };
    let exact = ou.jko_iterates(&Gaussian::diagonal(&[1.0], &[0.5]), tau, 3);
    for treatment in [
        InteractionTreatment::SemiImplicit,
        InteractionTreatment::Implicit,
    ] {
        let e = QuantileEnergy {
            entropy: Some(1.0),
            interaction: Some(Interaction::Quadratic { strength: s }),
            interaction_treatment: treatment,
            ..QuantileEnergy::default()
        };
        let m = iterate(&s0, tau, 3, &e).moments();
        let err = (m.variance.sqrt() - exact.cov[0].sqrt()).abs() / exact.cov[0].sqrt();
        eprintln!(
            "{treatment:?}: std error {err:.2e}, mean error {:.2e}",
            (m.mean - 1.0).abs()
        );
        assert!(err < 1e-10 && (m.mean - 1.0).abs() < 1e-12);
        assert_eq!(m.mass, mass);
    }
}

/// Quantile of the Barenblatt profile of ∂_t ρ = (ρ²)'' (mass M) at time t, from the levels
/// (u, 1 − u). With ξ = x t^{−1/3} and s = ξ + A, the mass left of ξ is s²(3A − s)/36 and
/// M = A³/9 (derived by hand from ρ = t^{−1/3}(C − ξ²/12), C = A²/12).
fn barenblatt_quantile(t: f64, mass: f64, u: f64, uc: f64) -> f64 {
    let a = (9.0 * mass).cbrt();
    let lower = |p: f64| {
        let target = p * mass;
        // G is convex increasing on [0, A]: Newton from the right converges monotonically.
        let mut s = a;
        for _ in 0..200 {
            let gs = s * s * (3.0 * a - s) / 36.0 - target;
            let step = gs / (s * (2.0 * a - s) / 12.0);
            s -= step;
            if step.abs() <= 1e-16 * s {
                break;
            }
        }
        t.cbrt() * (s - a)
    };
    if u <= 0.5 { lower(u) } else { -lower(uc) }
}

#[test]
fn porous_medium_iterates_approach_the_barenblatt_at_first_order() {
    let mass = 1.7;
    let b = Barenblatt::new(2.0, 1, mass).unwrap();
    // The hand-derived support radius agrees with the core's.
    assert!((b.support_radius(1.0) - (9.0 * mass).cbrt()).abs() < 1e-12);
    let grid = QuantileGrid::gaussian(2001, 8.0).unwrap();
    let (t0, t1) = (1.0, 2.0);
    let start = from_quantile(&grid, mass, |u, uc| barenblatt_quantile(t0, mass, u, uc)).unwrap();
    let exact = from_quantile(&grid, mass, |u, uc| barenblatt_quantile(t1, mass, u, uc)).unwrap();
    let e = QuantileEnergy {
        porous: Some(2.0),
        ..QuantileEnergy::default()
    };
    let errs: Vec<f64> = [10, 20, 40, 80]
        .iter()
        .map(|&k| {
            let s = iterate(&start, (t1 - t0) / k as f64, k, &e);
            assert_eq!(s.mass, mass);
            (jko_quantile::w2_squared_nodal(&s, &exact).unwrap() / mass).sqrt()
        })
        .collect();
    assert_first_order("Barenblatt W2 errors at t = 2", &errs, 0.1);
    assert!(errs[3] < 1e-2);
}

fn quartic() -> QuantileEnergy {
    QuantileEnergy {
        entropy: Some(1.0),
        potential: Some(QuantilePotential::Closed(Potential::Quartic)),
        ..QuantileEnergy::default()
    }
}

#[test]
fn quartic_steps_dissipate_and_satisfy_the_jko_inequality() {
    let e = quartic();
    let grid = QuantileGrid::gaussian(801, 8.0).unwrap();
    let tau = 0.1;
    let mut s = from_gaussian(1.0, 0.5, &grid, 1.0).unwrap();
    let params = QuantileParams::default();
    for k in 0..10 {
        let (next, info) = jko_step(&s, tau, &e, &params).unwrap();
        let (f0, f1) = (e.value(&s).unwrap(), e.value(&next).unwrap());
        let w2 = w2_squared(&s, &next).unwrap();
        let w2n = jko_quantile::w2_squared_nodal(&s, &next).unwrap();
        // The discrete step minimises F + W²_nodal/(2τ), so staying put is never better.
        assert!(f1 + w2n / (2.0 * tau) <= f0 + 1e-12, "step {k}");
        // With the exact W² between the reconstructed measures (differs from the nodal one at O(h²)).
        assert!(
            f1 + w2 / (2.0 * tau) <= f0,
            "step {k}: {f1} + {w2}/2τ vs {f0}"
        );
        assert!(f1 < f0);
        assert!((info.objective - (f1 + w2n / (2.0 * tau))).abs() < 1e-12 * f0.abs().max(1.0));
        if k == 0 {
            eprintln!(
                "quartic step 0: F {f0:.6} -> {f1:.6}, W2 exact {w2:.6e}, nodal {w2n:.6e}, {} Newton its",
                info.iterations
            );
        }
        s = next;
    }
}

#[test]
fn quartic_self_convergence_is_second_order_in_the_nodes() {
    let e = quartic();
    let tau = 0.1;
    let q: Vec<(f64, f64)> = [201, 401, 801, 1601]
        .iter()
        .map(|&n| {
            let g = QuantileGrid::gaussian(n, 8.0).unwrap();
            let m = iterate(&from_gaussian(1.0, 0.5, &g, 1.0).unwrap(), tau, 5, &e).moments();
            (m.mean, m.variance)
        })
        .collect();
    let d_mean: Vec<f64> = q.windows(2).map(|p| (p[1].0 - p[0].0).abs()).collect();
    let d_var: Vec<f64> = q.windows(2).map(|p| (p[1].1 - p[0].1).abs()).collect();
    let (om, ov) = (halving_orders(&d_mean), halving_orders(&d_var));
    // Richardson: the extrapolated variance and the error estimate of the finest run.
    let rich = q[3].1 + (q[3].1 - q[2].1) / 3.0;
    eprintln!(
        "quartic self-convergence: differences mean {} (orders {om:.3?}), variance {}          (orders {ov:.3?}); Richardson variance {rich:.12}, finest-run error estimate {:.2e}",
        sci(&d_mean),
        sci(&d_var),
        (q[3].1 - rich).abs()
    );
    assert!(
        om.iter().chain(&ov).all(|p| (p - 2.0).abs() < 0.15),
        "{om:?} {ov:?}"
    );
}

#[test]
fn uniform_and_gaussian_nodes_agree_on_the_quartic() {
    let e = quartic();
    let grid_g = QuantileGrid::new(1601, NodeDistribution::Gaussian { z_max: 8.0 }).unwrap();
    let grid_u = QuantileGrid::uniform(4000).unwrap();
    let a = iterate(&from_gaussian(1.0, 0.5, &grid_g, 1.0).unwrap(), 0.1, 5, &e);
    let b = iterate(&from_gaussian(1.0, 0.5, &grid_u, 1.0).unwrap(), 0.1, 5, &e);
    let (ma, mb) = (a.moments(), b.moments());
    let rel = (ma.variance - mb.variance).abs() / ma.variance;
    let w2 = w2_squared(&a, &b).unwrap().sqrt();
    eprintln!("quartic: variance gaussian vs uniform nodes {rel:.3e}, W2 {w2:.3e}");
    // Equal-mass nodes are first order: ~1/n (the OU test shows 1.3e-4 at n = 4000).
    assert!(rel < 5e-4 && (ma.mean - mb.mean).abs() < 5e-4);
    // W2 also sees the unresolved tails of the equal-mass reconstruction (half cells of mass 1/2n).
    assert!(w2 < 3e-3);
}

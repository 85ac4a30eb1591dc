//! Committed reference values in `data/reference/`, each from a computation independent of the
//! code it checks, read back with stated tolerances.
//!
//! - `ou-1d-jko.json`, `barenblatt-1d.json`: closed forms evaluated by `scripts/reference_data.py`
//!   in Python's decimal arithmetic (40 digits), compared with `jko_core::exact`.
//! - The quantile backend's quartic iterates have no closed form and no independent reference in
//!   the repository: they are checked by self-convergence in the node count (observed order),
//!   which is not a reference and says so.

use jko_core::exact::{Barenblatt, Gaussian, OrnsteinUhlenbeck};
use jko_core::{Energy, Potential};
use jko_quantile::{QuantileEnergy, QuantileGrid, QuantileParams, from_gaussian, jko_step};
use serde_json::Value;
use std::path::PathBuf;

fn read(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("data/reference")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

#[test]
fn exact_ou_jko_iterates_match_the_independent_evaluation() {
    let r = read("ou-1d-jko.json");
    assert!(r["provenance"].as_str().unwrap().contains("independently"));
    let ou = OrnsteinUhlenbeck::standard(1);
    let g0 = Gaussian::diagonal(&[1.0], &[0.5]);
    let iterates = r["iterates"].as_array().unwrap();
    assert_eq!(iterates.len(), 11);
    for it in iterates {
        let n = it["step"].as_u64().unwrap() as usize;
        let g = ou.jko_iterates(&g0, 0.1, n);
        // Double rounding of a 40-digit value: a few ulps.
        assert!((g.mean[0] - num(&it["mean"])).abs() < 1e-15, "step {n}");
        assert!((g.cov[0] - num(&it["variance"])).abs() < 1e-15, "step {n}");
    }
}

#[test]
fn barenblatt_profile_matches_the_independent_evaluation() {
    let r = read("barenblatt-1d.json");
    let b = Barenblatt::new(2.0, 1, 1.0).unwrap();
    for p in r["points"].as_array().unwrap() {
        let (t, x) = (num(&p["t"]), num(&p["x"]));
        let want = num(&p["rho"]);
        assert!(
            (b.density(t, &[x]) - want).abs() < 1e-14,
            "t {t}, x {x}: {} vs {want}",
            b.density(t, &[x])
        );
    }
    for t in ["0.1", "0.2"] {
        let want = num(&r["support_radius"][t]);
        let got = b.support_radius(t.parse().unwrap());
        assert!((got - want).abs() < 1e-14, "t {t}: {got} vs {want}");
    }
}

/// Mean and variance after 20 quantile JKO steps (τ = 0.05) for entropy + x⁴/4 from N(1, 0.5²).
fn quartic_moments(nodes: usize) -> (f64, f64) {
    let grid = QuantileGrid::gaussian(nodes, 6.0).unwrap();
    let energy = Energy::fokker_planck(1.0, Potential::Quartic);
    let qe = QuantileEnergy::from_energy(&energy, None).unwrap();
    let params = QuantileParams {
        tol: 1e-13,
        ..QuantileParams::default()
    };
    let mut state = from_gaussian(1.0, 0.5, &grid, 1.0).unwrap();
    for _ in 0..20 {
        state = jko_step(&state, 0.05, &qe, &params).unwrap().0;
    }
    let m = state.moments();
    (m.mean, m.variance)
}

/// Self-convergence, not a reference: the differences between 251, 501 and 1001 Gaussian-spaced
/// nodes shrink at second order, so the 1001-node moments are within the Richardson estimate
/// (difference / 3) of the limit.
#[test]
fn quantile_quartic_iterates_converge_at_second_order_in_the_nodes() {
    let (a, b, c) = (
        quartic_moments(251),
        quartic_moments(501),
        quartic_moments(1001),
    );
    for (what, x, y, z) in [("mean", a.0, b.0, c.0), ("variance", a.1, b.1, c.1)] {
        let ratio = (x - y).abs() / (y - z).abs();
        let order = ratio.log2();
        assert!(
            (1.6..2.4).contains(&order),
            "{what}: observed order {order}"
        );
        assert!(
            (y - z).abs() / 3.0 < 2e-6,
            "{what}: Richardson estimate {}",
            (y - z).abs() / 3.0
        );
    }
}

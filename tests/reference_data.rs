//! Committed reference solutions in `data/reference/` (with the command, version and tolerances
//! that made them), read back with stated tolerances.
//!
//! Regenerate with `cargo test --release --test reference_data -- --ignored` (about a minute).

use jko_core::exact::{Barenblatt, Gaussian, OrnsteinUhlenbeck};
use jko_core::{Energy, Potential};
use jko_quantile::{QuantileEnergy, QuantileGrid, QuantileParams, from_gaussian, jko_step};
use serde_json::{Value, json};
use std::path::PathBuf;

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("data/reference")
        .join(name)
}

const TAU: f64 = 0.05;
const STEPS: usize = 20;

/// Mean and variance of the quantile JKO iterates for entropy + x⁴/4 from N(1, 0.5²).
fn quartic_moments(nodes: usize) -> Vec<(f64, f64)> {
    let grid = QuantileGrid::gaussian(nodes, 6.0).unwrap();
    let energy = Energy::fokker_planck(1.0, Potential::Quartic);
    let qe = QuantileEnergy::from_energy(&energy, None).unwrap();
    let params = QuantileParams {
        tol: 1e-13,
        ..QuantileParams::default()
    };
    let mut state = from_gaussian(1.0, 0.5, &grid, 1.0).unwrap();
    let mut out = vec![(state.moments().mean, state.moments().variance)];
    for _ in 0..STEPS {
        state = jko_step(&state, TAU, &qe, &params).unwrap().0;
        let m = state.moments();
        out.push((m.mean, m.variance));
    }
    out
}

#[test]
#[ignore = "regenerates data/reference/*.json"]
fn regenerate_reference_data() {
    let provenance = |what: &str| {
        json!({
            "command": "cargo test --release --test reference_data -- --ignored",
            "jko_version": env!("CARGO_PKG_VERSION"),
            "method": what,
        })
    };
    // Quartic: quantile backend (exact W²) at 2001 and 4001 Gaussian nodes, Richardson
    // extrapolated (the node discretisation is second order: measured order 2.00).
    let coarse = quartic_moments(2001);
    let fine = quartic_moments(4001);
    let rich = |c: f64, f: f64| (4.0 * f - c) / 3.0;
    let mean: Vec<f64> = coarse
        .iter()
        .zip(&fine)
        .map(|(c, f)| rich(c.0, f.0))
        .collect();
    let variance: Vec<f64> = coarse
        .iter()
        .zip(&fine)
        .map(|(c, f)| rich(c.1, f.1))
        .collect();
    let estimate = coarse
        .iter()
        .zip(&fine)
        .map(|(c, f)| ((f.0 - c.0).abs() / 3.0).max((f.1 - c.1).abs() / 3.0))
        .fold(0.0, f64::max);
    let quartic = json!({
        "provenance": provenance("quantile JKO iterates (Newton tol 1e-13, Gaussian nodes z_max 6) at 2001 and 4001 nodes, Richardson extrapolated"),
        "problem": "entropy 1 + potential x^4/4, initial N(1, 0.5^2), exact W2 JKO iterates",
        "tau": TAU, "steps": STEPS,
        "estimated_error_of_finest": estimate,
        "mean": mean, "variance": variance,
    });
    std::fs::write(
        path("quartic-1d-jko.json"),
        serde_json::to_string_pretty(&quartic).unwrap(),
    )
    .unwrap();

    let ou = OrnsteinUhlenbeck::standard(1);
    let g0 = Gaussian::diagonal(&[1.0], &[0.5]);
    let iterates: Vec<Value> = (0..=10)
        .map(|n| {
            let g = ou.jko_iterates(&g0, 0.1, n);
            json!({"step": n, "mean": g.mean[0], "variance": g.cov[0]})
        })
        .collect();
    let ou_json = json!({
        "provenance": provenance("closed form: m' = m/(1+tau), s' = (s + sqrt(s^2 + 4 tau (1+tau)))/(2(1+tau))"),
        "problem": "entropy 1 + |x|^2/2, initial N(1, 0.5^2), exact JKO iterates, tau = 0.1",
        "iterates": iterates,
    });
    std::fs::write(
        path("ou-1d-jko.json"),
        serde_json::to_string_pretty(&ou_json).unwrap(),
    )
    .unwrap();

    let b = Barenblatt::new(2.0, 1, 1.0).unwrap();
    let points: Vec<Value> = [0.1, 0.2]
        .iter()
        .flat_map(|&t| (0..=8).map(move |i| (t, -1.2 + 0.3 * i as f64)))
        .map(|(t, x)| json!({"t": t, "x": x, "rho": b.density(t, &[x])}))
        .collect();
    let bj = json!({
        "provenance": provenance("closed form Barenblatt profile of d rho/dt = (rho^2)'' with unit mass"),
        "m": 2.0, "dim": 1, "mass": 1.0,
        "support_radius": {"0.1": b.support_radius(0.1), "0.2": b.support_radius(0.2)},
        "points": points,
    });
    std::fs::write(
        path("barenblatt-1d.json"),
        serde_json::to_string_pretty(&bj).unwrap(),
    )
    .unwrap();
}

fn read(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path(name)).unwrap()).unwrap()
}

#[test]
fn quantile_iterates_match_the_quartic_reference() {
    let r = read("quartic-1d-jko.json");
    let mean = r["mean"].as_array().unwrap();
    let var = r["variance"].as_array().unwrap();
    // 1001 nodes: the node error is ~4x that of 2001 nodes (second order), ~1e-7 here.
    let got = quartic_moments(1001);
    for (n, (m, v)) in got.iter().enumerate() {
        let (rm, rv) = (mean[n].as_f64().unwrap(), var[n].as_f64().unwrap());
        assert!((m - rm).abs() < 2e-6, "step {n}: mean {m} vs {rm}");
        assert!((v - rv).abs() < 2e-6, "step {n}: variance {v} vs {rv}");
    }
    assert!(r["estimated_error_of_finest"].as_f64().unwrap() < 1e-6);
}

#[test]
fn closed_form_references_are_reproduced() {
    let r = read("ou-1d-jko.json");
    let ou = OrnsteinUhlenbeck::standard(1);
    let g0 = Gaussian::diagonal(&[1.0], &[0.5]);
    for it in r["iterates"].as_array().unwrap() {
        let n = it["step"].as_u64().unwrap() as usize;
        let g = ou.jko_iterates(&g0, 0.1, n);
        assert!((g.mean[0] - it["mean"].as_f64().unwrap()).abs() < 1e-14);
        assert!((g.cov[0] - it["variance"].as_f64().unwrap()).abs() < 1e-14);
    }
    let r = read("barenblatt-1d.json");
    let b = Barenblatt::new(2.0, 1, 1.0).unwrap();
    for p in r["points"].as_array().unwrap() {
        let (t, x) = (p["t"].as_f64().unwrap(), p["x"].as_f64().unwrap());
        assert!((b.density(t, &[x]) - p["rho"].as_f64().unwrap()).abs() < 1e-14);
    }
}

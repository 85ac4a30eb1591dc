//! The JKO-Flow surrogate in the driver: checks against proximal steps are recorded and fall
//! back when the discrepancy exceeds `check_tol`; `jko implicit-bias` shows orders 2 and 1.

use jko::RunOptions;
use jko::config::Config;
use std::path::Path;

fn flow_config(check_tol: f64) -> Config {
    let text = jko::examples::example("ou-1d")
        .unwrap()
        .replace("cells = [200]", "cells = [100]")
        .replace("steps = 10", "steps = 4")
        .replace(
            "kind = \"conic\"",
            &format!("kind = \"flow\"\ncheck_every = 2\ncheck_solver = \"newton\"\ncheck_tol = {check_tol:e}"),
        );
    Config::from_toml(&text).unwrap()
}

#[test]
fn surrogate_checks_are_recorded_and_fall_back() {
    // A loose tolerance: checks at steps 2 and 4, no fallback.
    let r = jko::run(
        &flow_config(1.0),
        Path::new("."),
        &RunOptions::default(),
        &mut [],
        &|| false,
    )
    .unwrap();
    let checks: Vec<_> = r.records.iter().filter_map(|s| s.check.clone()).collect();
    assert_eq!(checks.len(), 2);
    assert_eq!(
        r.records[1].check.as_ref().unwrap().proximal_solver,
        "newton"
    );
    for c in &checks {
        assert!(!c.fell_back);
        // The surrogate differs from the one-step scheme at O(τ): a real, nonzero discrepancy.
        assert!(c.l1 > 1e-4 && c.l1 < 0.1, "{c:?}");
        assert!(c.w2 > 0.0 && c.w2 < 0.1, "{c:?}");
    }
    // A tolerance small enough to force the fallback at every checked step.
    let r = jko::run(
        &flow_config(1e-12),
        Path::new("."),
        &RunOptions::default(),
        &mut [],
        &|| false,
    )
    .unwrap();
    for s in &r.records {
        match &s.check {
            Some(c) => {
                assert!(c.fell_back);
                assert!(
                    s.notes.iter().any(|n| n.contains("proximal step kept")),
                    "{:?}",
                    s.notes
                );
            }
            None => assert!(s.step % 2 == 1),
        }
    }
}

#[test]
fn unknown_flow_keys_are_rejected() {
    let text = flow_config(1.0)
        .to_toml()
        .replace("check_tol", "bogus = 1\ncheck_tol");
    let err = Config::from_toml(&text).unwrap_err().to_string();
    assert!(err.contains("bogus"), "{err}");
}

#[test]
fn implicit_bias_orders_are_two_and_one() {
    let config = Config::from_toml(jko::examples::example("ou-1d").unwrap()).unwrap();
    let table =
        jko_cli::implicit_bias::implicit_bias(&config, &[0.1, 0.05, 0.025, 0.0125, 0.00625])
            .unwrap();
    let last = table.rows.last().unwrap();
    let (of, ow) = (last.order_flow.unwrap(), last.order_wgf.unwrap());
    assert!((of - 2.0).abs() < 0.1, "JKO-Flow order {of}");
    assert!((ow - 1.0).abs() < 0.1, "plain flow order {ow}");
    assert!(last.err_flow < last.err_wgf / 50.0);
}

#[test]
fn implicit_bias_on_a_1d_mesh_is_measured_against_quantile_and_refused_in_2d() {
    // Porous medium m = 2 (no closed form): flow and the plain flow against quantile's exact-W²
    // JKO iterates on the same mesh; the J^eta flow is the closer one.
    let mut config = Config::from_toml(jko::examples::example("porous-1d").unwrap()).unwrap();
    config.scheme.steps = 4;
    let table = jko_cli::implicit_bias::implicit_bias(&config, &[0.02, 0.01]).unwrap();
    assert!(table.method.as_deref().unwrap().contains("quantile"));
    for r in &table.rows {
        assert!(r.err_flow.is_finite() && r.err_flow < r.err_wgf, "{r:?}");
    }
    let order = table.rows[1].order_wgf.unwrap();
    assert!((order - 1.0).abs() < 0.3, "plain flow order {order}");
    // No exact-W² reference on a 2D mesh for a non-Gaussian problem.
    let porous_2d = Config::from_toml(jko::examples::example("porous-2d").unwrap()).unwrap();
    let err = jko_cli::implicit_bias::implicit_bias(&porous_2d, &[0.1]).unwrap_err();
    assert!(err.to_string().contains("1D mesh"), "{err}");
}

//! Issue 14, round 15: porous m = 3 steps of the interior point within 15 Newton iterations,
//! with the landing corrector (`ipm::landing`) and the floor of λ (`ipm::LAMBDA_FLOOR`).
//!
//! Before them, the cells just outside the front (s* slightly below 0, λ converging to a small
//! λ* > 0) shrank only 2–10× per iteration whatever the barrier target, and the interior point
//! spent most of a step lowering μ: `robust/porous-m3-2d.toml` at 48² took 16 / 15 / 9
//! iterations (main f2d5b84, `jko run`), at 64² 17 / 13 / 14; `robust/porous-m3-1d.toml` took
//! 17 / 17 / 7 by the dual ascent (20 / 22 / 13 by the interior point). Now 8 / 9 / 6, 10 / 9 / 10
//! and 11 / 11 / 8 (the 1D case by the interior point). Each case's first step is also solved by
//! the tight conic reference (an independent method: Clarabel on power cones, without the conic
//! backend's Newton start, then its polish) and judged as
//! tests/agreement.rs judges porous steps (`porous_verdict`).

mod common;
use common::{cell_consistency, newton_march, porous_verdict, reference_conic};
use jko_conic::{ConicParams, ConicSolver};
use jko_core::{Energy, Mesh, StepSolver};
use ndarray::Array1;

/// The Barenblatt m = 3 profile at t₀ = 0.05 sampled at the cell centres, normalised to mass 1
/// (as `[initial] kind = "barenblatt"` does).
fn barenblatt(mesh: &Mesh, dim: usize) -> Array1<f64> {
    let b = jko_core::exact::Barenblatt::new(3.0, dim, 1.0).unwrap();
    let rho = mesh.sample(|x| b.density(0.05, x));
    let mass = mesh.mass(&rho);
    rho / mass
}

/// Three warm-started steps of τ = 0.01 of pure porous medium m = 3 from `rho0`: every step
/// within `max_iterations` and mass-conserving; the first also against the tight conic.
fn within(what: &str, mesh: &Mesh, rho0: Array1<f64>, max_iterations: usize) {
    let energy = Energy {
        porous: Some(3.0),
        ..Energy::default()
    };
    let mut its = Vec::new();
    newton_march(what, (mesh, &energy, rho0), 0.01, 3, |step, p, out| {
        let m0 = p.mass();
        let merr = (mesh.mass(&out.rho) - m0).abs() / m0;
        assert!(merr < 1e-9, "{what} step {step}: mass error {merr:e}");
        its.push(out.info.iterations);
        if step == 0 {
            // Clarabel first (its own Newton start off), so that the reference does not start
            // from a Newton iterate of the same system; its polish is the conic crate's own.
            let conic = ConicSolver::new(ConicParams {
                newton_start: false,
                ..reference_conic().params().clone()
            })
            .unwrap()
            .step(p, None)
            .unwrap();
            let scale = conic.rho.iter().cloned().fold(0.0, f64::max);
            let diff = (&out.rho - &conic.rho)
                .iter()
                .fold(0.0f64, |m, d| m.max(d.abs()))
                / scale;
            // The exact m = 3 cell law ρ = (f')⁻¹(max(s, 0)) = √(2 max(s, 0)/3).
            let law = |s: f64| (2.0 * s.max(0.0) / 3.0).sqrt();
            let kkt = |o: &jko_core::StepOutput| {
                cell_consistency(
                    mesh,
                    p.energy,
                    0.01,
                    &o.rho,
                    o.potential.as_ref().unwrap(),
                    law,
                )
            };
            let (kn, kc) = (kkt(out), kkt(&conic));
            println!(
                "{what}: max|drho|/max rho against conic {diff:e}, cell law newton {kn:e} conic {kc:e}"
            );
            porous_verdict((diff, kn, kc));
        }
    });
    println!("{what}: iterations {its:?}");
    assert!(its.iter().all(|&i| i <= max_iterations), "{what}: {its:?}");
}

#[test]
fn porous_m3_2d_degenerate_front_within_15_iterations() {
    let mesh = Mesh::grid(&[48, 48], &[-1.5, -1.5], &[1.5, 1.5]).unwrap();
    within("porous m3 2d 48²", &mesh, barenblatt(&mesh, 2), 15);
}

#[test]
fn porous_m3_1d_within_15_iterations() {
    let mesh = Mesh::grid(&[400], &[-2.0], &[2.0]).unwrap();
    within("porous m3 1d 400", &mesh, barenblatt(&mesh, 1), 15);
}

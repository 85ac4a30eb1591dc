//! The porous medium from Barenblatt profiles (issue 20, round 7): the free boundary at the
//! edge of supp ρⁿ.
//!
//! Before round 7 the edge cells of the support used a one-sided rule (normal second derivative
//! of ψ set to 0): porous-m3-2d (box [−1.5, 1.5]², t0 = 0.05, τ = 0.01) at 64² stalled at step 2,
//! and porous-m2-2d ran but was less accurate than the one-step scheme (L1 2.05e-2 against
//! newton's 1.35e-2). The edge now carries the condition p(x_e) = 0 at the sub-cell edge
//! position through a ghost value of ψ, and the target potential is recovered with the ghosts.
//!
//! Checked against the exact (Barenblatt) solution at the final time: L1 below the one-step
//! scheme's (newton backend, same problem and grid, measured in round 6: 1.35e-2 for m = 2,
//! 1.40e-2 for m = 3), all steps solved, mass exact, the JKO energy inequality with the step's
//! dual W².
use jko_bfm::{BfmParams, BfmSolver};
use jko_core::exact::Barenblatt;
use jko_core::{Energy, JkoStep, Mesh, StepSolver, WarmStart};

/// Runs 3 steps of the Barenblatt problem; returns the L1 error and the Newton iterations of
/// each step.
fn barenblatt_run(m: f64, n: usize, newton_l1: f64) -> (f64, Vec<usize>) {
    let mesh = Mesh::grid(&[n, n], &[-1.5, -1.5], &[1.5, 1.5]).unwrap();
    let b = Barenblatt::new(m, 2, 1.0).unwrap();
    let (t0, tau, steps) = (0.05, 0.01, 3);
    let rho0 = mesh.sample(|x| b.density(t0, x));
    let mut rho = &rho0 / mesh.mass(&rho0);
    let energy = Energy {
        porous: Some(m),
        ..Energy::default()
    };
    let solver = BfmSolver::new(BfmParams::default()).unwrap();
    solver.check_supported(&mesh, &energy.terms()).unwrap();
    let mut warm: Option<WarmStart> = None;
    let mut iterations = Vec::new();
    for step in 0..steps {
        let frozen = energy.freeze(&mesh, &rho).unwrap();
        let out = solver
            .step(
                &JkoStep::new(&mesh, &rho, tau, &frozen).unwrap(),
                warm.as_ref(),
            )
            .unwrap_or_else(|e| panic!("m = {m}, {n}², step {}: {e}", step + 1));
        assert!((mesh.mass(&out.rho) - 1.0).abs() < 1e-12, "mass");
        let slack = frozen.value(&mesh, &rho)
            - (frozen.value(&mesh, &out.rho) + out.info.kinetic / (2.0 * tau));
        assert!(
            out.info.kinetic > 0.0 && slack >= 0.0,
            "energy inequality: {slack:e}"
        );
        iterations.push(out.info.iterations);
        warm = Some(WarmStart::from(&out));
        rho = out.rho;
    }
    let t1 = t0 + tau * steps as f64;
    let l1: f64 = (0..mesh.n_cells())
        .map(|k| mesh.volumes()[k] * (rho[k] - b.density(t1, mesh.centre(k))).abs())
        .sum();
    eprintln!("m = {m}, {n}²: L1 vs Barenblatt {l1:.3e} (one-step scheme {newton_l1:.2e})");
    assert!(l1 < newton_l1, "m = {m}, {n}²: L1 {l1:.3e}");
    (l1, iterations)
}

#[test]
fn porous_m2_barenblatt_at_64_beats_the_one_step_scheme() {
    barenblatt_run(2.0, 64, 1.35e-2);
}

#[test]
fn porous_m3_barenblatt_at_64_beats_the_one_step_scheme() {
    barenblatt_run(3.0, 64, 1.40e-2);
}

/// Round 8: at 128² the edge cells whose free boundary lies close to the centre (δ ≈ h/5…h/3)
/// carry rows the ghost makes strongly diagonal; with the Helmholtz preconditioner alone GMRES
/// stalled there and steps 2–3 took 189 Newton iterations each (22–25k GMRES products, 70–100 s),
/// converging to L1 1.008e-2. With Jacobi at the edge cells: 19, 16, 14 iterations, the same L1.
/// The bound on the iterations is 4× below the old count; the L1 bound is round 7's measured
/// value with 1% slack (the density must not change with the preconditioner).
#[test]
fn porous_m2_barenblatt_at_128_does_not_stall_at_the_edges() {
    let (l1, iterations) = barenblatt_run(2.0, 128, 1.35e-2);
    assert!(l1 < 1.018e-2, "L1 {l1:.4e}");
    assert!(
        iterations.iter().all(|&k| k <= 45),
        "Newton iterations per step {iterations:?}"
    );
}

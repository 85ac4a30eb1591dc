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
use jko_core::{Energy, JkoStep, Mesh, StepSolver, StepStatus, WarmStart};

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

/// Round 8: the porous medium with entropy (refused before this round as not validated) — the
/// mixed cell law of `dual.rs`; no free boundary (ρ > 0 everywhere), so no edges. Checked against conic's
/// one-step scheme on the same discrete problem after 2 steps at τ = 0.01 on 24²: the schemes
/// differ by O(τ + h); measured max|Δρ|/max ρ 6.8e-3 and objectives 0.679261 / 0.678475
/// (1.2e-3); the bounds are about 3× and 4× those.
#[test]
fn porous_with_entropy_steps_agree_with_conic() {
    use jko_conic::{ConicParams, ConicSolver};
    use jko_core::Potential;
    let n = 24;
    let mesh = Mesh::grid(&[n, n], &[-1.5, -1.5], &[1.5, 1.5]).unwrap();
    let energy = Energy {
        porous: Some(2.0),
        entropy: Some(0.05),
        potential: Some(Potential::Quadratic {
            center: vec![0.0; 2],
            stiffness: 1.0,
        }),
        ..Energy::default()
    };
    let rho0 = mesh.sample(|x| {
        (-(x[0] - 0.2).powi(2) / (2.0 * 0.09) - (x[1] + 0.1).powi(2) / (2.0 * 0.16)).exp()
    });
    let rho0 = &rho0 / mesh.mass(&rho0);
    let run = |solver: &dyn StepSolver| {
        let mut rho = rho0.clone();
        let mut warm: Option<WarmStart> = None;
        let mut objective = 0.0;
        for _ in 0..2 {
            let frozen = energy.freeze(&mesh, &rho).unwrap();
            let out = solver
                .step(
                    &JkoStep::new(&mesh, &rho, 0.01, &frozen).unwrap(),
                    warm.as_ref(),
                )
                .unwrap();
            objective = out.info.objective;
            warm = Some(WarmStart::from(&out));
            rho = out.rho;
        }
        (rho, objective)
    };
    let bfm = BfmSolver::new(BfmParams::default()).unwrap();
    bfm.check_supported(&mesh, &energy.terms()).unwrap();
    let (rb, ob) = run(&bfm);
    let (rc, oc) = run(&ConicSolver::new(ConicParams::default()).unwrap());
    assert!((mesh.mass(&rb) - 1.0).abs() < 1e-12, "mass");
    let top = rc.iter().fold(0.0f64, |a, &b| a.max(b));
    let diff = rb
        .iter()
        .zip(&rc)
        .fold(0.0f64, |a, (x, y)| a.max((x - y).abs()))
        / top;
    let gap = (ob - oc).abs() / oc.abs();
    eprintln!(
        "porous + entropy vs conic: max|drho|/max rho {diff:.3e}, objectives {ob:.6} / {oc:.6}"
    );
    assert!(diff < 2e-2 && gap < 5e-3, "{diff:e} {gap:e}");
}

/// The authors' porous example on an n² grid (see below): the mesh, the energy and ρ⁰ (mass
/// 0.02; τ = 0.1).
fn authors_porous_example(n: usize) -> (Mesh, Energy, ndarray::Array1<f64>) {
    let mesh = Mesh::grid(&[n, n], &[0.0, 0.0], &[1.0, 1.0]).unwrap();
    let energy = Energy {
        porous: Some(2.0),
        potential: Some(jko_core::Potential::Quadratic {
            center: vec![0.9, 0.9],
            stiffness: 1.0,
        }),
        ..Energy::default()
    };
    let square = |x: &[f64], c: [f64; 2]| (x[0] - c[0]).abs() < 0.1 && (x[1] - c[1]).abs() < 0.1;
    let mut rho = mesh.sample(|x| {
        f64::from(u8::from(
            square(x, [0.3, 0.3]) || square(x, [0.3, 0.7]) || square(x, [0.7, 0.3]),
        ))
    });
    rho *= 0.02 / mesh.mass(&rho);
    (mesh, energy, rho)
}

/// Round 9: the porous example of Jacobs, Lee & Léger's code (examples/authors_porous.rs: m = 2,
/// unit square, three squares of side 0.2 with total mass 0.02, V = |x − (0.9, 0.9)|²/2,
/// τ = 0.1) at 64². After step 1 the three supports touch; in step 2 they press on each other and
/// the source-side edge condition p(x_e) = 0 no longer holds where they meet. Before round 9,
/// step 2 failed (`NotConverged`: the continuation ran out of stages); now the back-and-forth
/// finisher solves it. Every step: mass exact, ρ ≥ 0, W² > 0 and the JKO energy inequality
/// F(ρ) + W²/(2τ) ≤ F(ρⁿ); a step the finisher made after Newton failed did not first run the
/// continuation through all its stages (round 10).
#[test]
fn authors_porous_example_at_64_runs_past_the_collision() {
    let (mesh, energy, mut rho) = authors_porous_example(64);
    let (tau, mass) = (0.1, 0.02);
    let solver = BfmSolver::new(BfmParams::default()).unwrap();
    solver.check_supported(&mesh, &energy.terms()).unwrap();
    let mut warm: Option<WarmStart> = None;
    let mut finished = 0;
    for step in 1..=3 {
        let frozen = energy.freeze(&mesh, &rho).unwrap();
        let out = solver
            .step(
                &JkoStep::new(&mesh, &rho, tau, &frozen).unwrap(),
                warm.as_ref(),
            )
            .unwrap_or_else(|e| panic!("step {step}: {e}"));
        assert!((mesh.mass(&out.rho) / mass - 1.0).abs() < 1e-12, "mass");
        assert!(out.rho.iter().all(|&r| r >= 0.0));
        let slack = frozen.value(&mesh, &rho)
            - (frozen.value(&mesh, &out.rho) + out.info.kinetic / (2.0 * tau));
        assert!(
            out.info.kinetic > 0.0 && slack >= 0.0,
            "step {step}: energy inequality {slack:e}"
        );
        let by_finisher = out.info.notes.iter().any(|n| n.contains("finisher"));
        // The finisher settles at its own push-forward marginal, not at the tolerance: a step
        // it made must say so.
        assert_eq!(
            out.info.status == StepStatus::AlmostSolved,
            by_finisher,
            "step {step}: status {:?}",
            out.info.status
        );
        finished += usize::from(by_finisher);
        // Where Newton failed, it hands over to the finisher at its first failed continuation
        // stage, or before any stage when the cold start is c-concave only far below τ (before
        // round 10: all 40 stages at steps 2 and 3, ~80% of each step's time; rounds 10–11: 7
        // and 8 stages, 123 and 152 Newton iterations, ~60% of the step).
        let stages = out
            .info
            .notes
            .iter()
            .find_map(|n| n.split_once("continuation stages ["))
            .map_or(0, |(_, list)| list.split(',').count());
        let newton_failed = by_finisher
            && !out
                .info
                .notes
                .iter()
                .any(|n| n.contains("Newton converged"));
        assert!(
            !newton_failed || stages <= 2,
            "step {step}: {stages} continuation stages before the finisher"
        );
        warm = Some(WarmStart::from(&out));
        rho = out.rho;
    }
    // The collision is where the finisher is needed: steps 2 and 3 at this size.
    assert!(finished >= 1);
}

/// Round 13: the authors' example at 128², step 1 (three squares whose images meet within the
/// step; the cold start is c-concave at τ here and Newton's attempt at τ fails). Its parts are
/// predicted to meet, so Newton hands over to the finisher without the continuation (before:
/// the stage at τ/2, 7 Newton iterations, then the failed stage at τ): no continuation stage,
/// at most the attempt's iterations; mass exact, W² > 0, the energy inequality.
#[test]
fn authors_porous_example_at_128_hands_over_when_the_parts_are_predicted_to_meet() {
    let (mesh, energy, rho) = authors_porous_example(128);
    let (tau, mass) = (0.1, 0.02);
    let frozen = energy.freeze(&mesh, &rho).unwrap();
    let out = BfmSolver::new(BfmParams::default())
        .unwrap()
        .step(&JkoStep::new(&mesh, &rho, tau, &frozen).unwrap(), None)
        .unwrap();
    let notes = out.info.notes.join("\n");
    assert!(notes.contains("predicted to meet"), "{notes}");
    assert!(notes.contains("continuation stages []"), "{notes}");
    let newton: usize = notes
        .split_once("newton ")
        .and_then(|(_, rest)| rest.split_once(' '))
        .and_then(|(count, _)| count.parse().ok())
        .unwrap_or(usize::MAX);
    assert!(
        newton <= 3,
        "{newton} Newton iterations before the hand-over"
    );
    assert_eq!(out.info.status, StepStatus::AlmostSolved);
    assert!((mesh.mass(&out.rho) / mass - 1.0).abs() < 1e-12);
    let slack = frozen.value(&mesh, &rho)
        - (frozen.value(&mesh, &out.rho) + out.info.kinetic / (2.0 * tau));
    assert!(out.info.kinetic > 0.0 && slack >= 0.0, "{slack:e}");
}

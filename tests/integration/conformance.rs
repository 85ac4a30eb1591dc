//! Conformance: every registered backend (the `backends!` table, so a new backend is tested
//! the moment it is registered) on the kit's shared cases, through the driver's own invariant
//! checks ([`jko::driver::Stepper::step`]: mass, positivity, the congestion cap, the JKO energy
//! inequality for proximal backends). On top of them:
//! - a case the backend does not treat (`check_supported`) is refused before any step with a
//!   typed error (`StepError::Unsupported` / `UnsupportedMesh`), never a failed step;
//! - on the Ornstein–Uhlenbeck cases the result is close to the exact solution;
//! - for backends whose steps satisfy the JKO energy inequality
//!   ([`StepSolver::satisfies_energy_inequality`]; not the entropic `sinkhorn`, whose blur
//!   moves even a fixed point, nor the surrogate `flow`): the energy decreases along the march,
//!   and with no energy at all a step returns ρⁿ (F ≡ 0 leaves W²/(2τ) ≤ 0), with no kinetic
//!   action.

use crate::kit::{self, Case};
use jko::error::RunError;
use jko_core::{Energy, StepError, StepSolver};

/// Failures on main today, each a bug of one backend with the issue whose branch fixes it;
/// delete a line when its fix lands (the test says when one passes).
const EXPECTED_FAILURES: &[(&str, &str, u32)] = &[];

fn expected(backend: &str, case: &str) -> Option<u32> {
    EXPECTED_FAILURES
        .iter()
        .find(|(b, c, _)| *b == backend && *c == case)
        .map(|e| e.2)
}

/// Runs one backend on one case; `Err` names what broke.
fn conform(solver: &dyn StepSolver, case: &Case) -> Result<(), String> {
    let supported = solver.check_supported(&case.mesh, &case.energy.terms());
    let result = kit::march(solver, case, 3);
    if let Err(refusal) = supported {
        return match result {
            Err(RunError::Solver(
                StepError::Unsupported { .. } | StepError::UnsupportedMesh { .. },
            )) => Ok(()),
            Err(e) => Err(format!("refused `{refusal}` but the stepper said: {e}")),
            Ok(_) => Err(format!(
                "check_supported refused (`{refusal}`) but the march ran"
            )),
        };
    }
    let trajectory = result.map_err(|e| e.to_string())?;
    if let (Some(exact), Some(last)) = (&case.exact, trajectory.densities.last()) {
        let t = case.tau * trajectory.records.len() as f64;
        let error = kit::l1(&case.mesh, last, &exact(&case.mesh, t));
        // The discretisation errors of these coarse meshes are a few percent; the entropic
        // backend adds what is left of its blur after removing its first-order bias.
        if error > 0.15 {
            return Err(format!("L1 error {error:.3e} against the exact solution"));
        }
    }
    if !solver.satisfies_energy_inequality() {
        return Ok(());
    }
    let mut energy = case
        .energy
        .value(&case.mesh, &case.rho0)
        .map_err(|e| e.to_string())?;
    for r in &trajectory.records {
        let allowed = 1e-7 * (energy.abs() + 1.0);
        if r.energy > energy + allowed {
            return Err(format!(
                "energy rose at step {}: {} > {energy}",
                r.step, r.energy
            ));
        }
        energy = r.energy;
    }
    if case.energy.terms().is_empty() {
        return fixed_point(solver, case);
    }
    Ok(())
}

#[test]
fn every_backend_conforms_on_the_shared_cases() {
    let mut failures = Vec::new();
    let mut fixed = Vec::new();
    let mut no_energy = kit::ou(&[30], 0.1);
    no_energy.name = "no-energy-1d";
    no_energy.energy = Energy::default();
    no_energy.exact = None;
    let mut cases = kit::cases();
    cases.push(no_energy);
    for solver in kit::backends() {
        for case in &cases {
            match (
                conform(solver.as_ref(), case),
                expected(solver.name(), case.name),
            ) {
                (Ok(()), None) | (Err(_), Some(_)) => {}
                (Ok(()), Some(issue)) => fixed.push(format!(
                    "{} on {} passes: delete it from EXPECTED_FAILURES (issue {issue})",
                    solver.name(),
                    case.name
                )),
                (Err(e), None) => failures.push(format!("{} on {}: {e}", solver.name(), case.name)),
            }
        }
    }
    for f in &fixed {
        eprintln!("[conformance] {f}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// With no energy, ρⁿ itself is the minimiser: a step returns it, with no transport.
fn fixed_point(solver: &dyn StepSolver, case: &Case) -> Result<(), String> {
    let trajectory = kit::march(solver, case, 1).map_err(|e| e.to_string())?;
    let (rho, record) = (&trajectory.densities[0], &trajectory.records[0]);
    let moved = kit::l1(&case.mesh, rho, &case.rho0);
    if moved > 1e-6 || record.kinetic > 1e-8 {
        return Err(format!(
            "not a fixed point: moved {moved:.3e} (L1), kinetic {:.3e}",
            record.kinetic
        ));
    }
    Ok(())
}

#[test]
fn every_backend_refuses_an_unsupported_term_or_mesh_before_any_step() {
    // The terms and meshes each backend does not treat are found through its own
    // `check_supported`; the driver must refuse each one when the stepper is built.
    let mut refusals = 0;
    for solver in kit::backends() {
        for case in kit::cases() {
            if solver
                .check_supported(&case.mesh, &case.energy.terms())
                .is_ok()
            {
                continue;
            }
            refusals += 1;
            let err = kit::march(solver.as_ref(), &case, 1).err();
            assert!(
                matches!(
                    err,
                    Some(RunError::Solver(
                        StepError::Unsupported { .. } | StepError::UnsupportedMesh { .. }
                    ))
                ),
                "{} on {}: {err:?}",
                solver.name(),
                case.name
            );
        }
    }
    // quantile (2D), flow (porous, max_density) at least.
    assert!(refusals >= 3, "{refusals}");
}

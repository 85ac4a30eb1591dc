//! The JKO-Flow surrogate as a [`StepSolver`]: one "step" of size τ integrates the mesh flow of
//! J^η with η = τ over a time τ from ρⁿ ([`crate::mesh`]).

use crate::mesh::MeshFlow;
use crate::{FlowError, Variant};
use jko_core::{
    EnergyTerm, InputError, JkoStep, StepError, StepInfo, StepOutput, StepSolver, StepStatus,
    WarmStart,
};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Settings of the surrogate (serde: unknown fields are rejected, missing ones take the
/// defaults: resummed, `rtol = 1e-6`, `atol = 1e-12`, 10 000 substeps, CG to 1e-10 in at most
/// 5 000 iterations).
///
/// ```rust
/// use jko_flow::{FlowParams, Variant};
///
/// let params: FlowParams = serde_json::from_str(r#"{ "rtol": 1e-8 }"#).unwrap();
/// assert_eq!((params.rtol, params.variant), (1e-8, Variant::Resummed));
/// assert!(serde_json::from_str::<FlowParams>(r#"{ "tol": 1e-8 }"#).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlowParams {
    /// `resummed` (default, stable at any mesh size) or `modified` (only while η·λ_max < 2).
    pub variant: Variant,
    /// Relative tolerance of the Runge–Kutta error control.
    pub rtol: f64,
    /// Absolute tolerance (density units).
    pub atol: f64,
    /// Largest number of attempted substeps per step.
    pub max_substeps: usize,
    /// Relative residual of the CG solves (resummed variant on meshes that are not 1D chains).
    pub linear_tol: f64,
    /// Largest number of CG iterations per solve.
    pub linear_max_iter: usize,
}

impl Default for FlowParams {
    fn default() -> Self {
        FlowParams {
            variant: Variant::Resummed,
            rtol: 1e-6,
            atol: 1e-12,
            max_substeps: 10_000,
            linear_tol: 1e-10,
            linear_max_iter: 5_000,
        }
    }
}

impl FlowParams {
    /// Check the values: `rtol`, `linear_tol` in (0, 1), `atol` finite and > 0, caps ≥ 1.
    ///
    /// # Errors
    /// [`InputError::InvalidParameter`] naming the field.
    ///
    /// ```rust
    /// use jko_flow::FlowParams;
    ///
    /// assert!(FlowParams::default().validate().is_ok());
    /// assert!(FlowParams { rtol: 2.0, ..FlowParams::default() }.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<(), InputError> {
        if !(self.rtol.is_finite() && self.rtol > 0.0 && self.rtol < 1.0) {
            return Err(InputError::parameter(
                "rtol",
                self.rtol,
                "must be in (0, 1)",
            ));
        }
        if !(self.atol.is_finite() && self.atol > 0.0) {
            return Err(InputError::parameter(
                "atol",
                self.atol,
                "must be finite and > 0",
            ));
        }
        if self.max_substeps == 0 {
            return Err(InputError::parameter("max_substeps", 0, "must be >= 1"));
        }
        if !(self.linear_tol.is_finite() && self.linear_tol > 0.0 && self.linear_tol < 1.0) {
            return Err(InputError::parameter(
                "linear_tol",
                self.linear_tol,
                "must be in (0, 1)",
            ));
        }
        if self.linear_max_iter == 0 {
            return Err(InputError::parameter("linear_max_iter", 0, "must be >= 1"));
        }
        Ok(())
    }
}

/// The `flow` backend: one step of size τ integrates the mesh flow of J^η, η = τ, over a time
/// τ from ρⁿ ([`crate::mesh`]). Treats entropy, porous medium and potentials (the frozen
/// interaction enters the potential). A surrogate, not a minimiser:
/// [`StepSolver::satisfies_energy_inequality`] is false.
///
/// ```rust
/// use jko_core::{Energy, JkoStep, Mesh, Potential, StepSolver};
/// use jko_flow::{FlowParams, FlowSolver};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // The discrete Gibbs state ρ_K ∝ e^{−V_K/β} has grad J = 0, so the flow leaves it in place.
/// let mesh = Mesh::grid(&[8], &[-1.0], &[1.0])?;
/// let energy = Energy::fokker_planck(1.0, Potential::Quadratic { center: vec![0.0], stiffness: 2.0 });
/// let gibbs = mesh.sample(|x| (-x[0] * x[0]).exp());
/// let frozen = energy.freeze(&mesh, &gibbs)?;
/// let problem = JkoStep::new(&mesh, &gibbs, 0.1, &frozen)?;
/// let solver = FlowSolver::new(FlowParams::default())?;
/// let out = solver.step(&problem, None)?;
/// assert!((&out.rho - &gibbs).iter().all(|d| d.abs() < 1e-10));
/// assert!(!solver.satisfies_energy_inequality());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct FlowSolver {
    params: FlowParams,
}

impl FlowSolver {
    /// A solver with validated parameters.
    ///
    /// # Errors
    /// [`InputError::InvalidParameter`] from [`FlowParams::validate`].
    ///
    /// ```rust
    /// use jko_flow::{FlowParams, FlowSolver};
    ///
    /// assert!(FlowSolver::new(FlowParams::default()).is_ok());
    /// assert!(FlowSolver::new(FlowParams { max_substeps: 0, ..FlowParams::default() }).is_err());
    /// ```
    pub fn new(params: FlowParams) -> Result<Self, InputError> {
        params.validate()?;
        Ok(FlowSolver { params })
    }

    /// The parameters the solver was built with.
    ///
    /// ```rust
    /// use jko_flow::{FlowParams, FlowSolver};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let solver = FlowSolver::new(FlowParams { atol: 1e-9, ..FlowParams::default() })?;
    /// assert_eq!(solver.params().atol, 1e-9);
    /// # Ok(())
    /// # }
    /// ```
    pub fn params(&self) -> &FlowParams {
        &self.params
    }
}

impl StepSolver for FlowSolver {
    fn name(&self) -> &str {
        "flow"
    }

    /// A surrogate follows the flow of J^η (resummed), not a minimiser of W²/(2τ) + J: the JKO
    /// energy inequality for J is not a theorem here (the driver records its slack only).
    fn satisfies_energy_inequality(&self) -> bool {
        false
    }

    fn treats(&self, term: EnergyTerm) -> bool {
        // A frozen interaction is a potential inside the step. The porous-medium flow is
        // implemented in `MeshFlow` but not validated: its compact support (ρ = 0 cells) stalls
        // the explicit integrator at once, so the backend refuses it rather than fail mid-run.
        !matches!(term, EnergyTerm::MaxDensity | EnergyTerm::Porous)
    }

    /// O(cells + faces): the seven Runge–Kutta stages, the state, trial state and error
    /// estimate, the conjugate-gradient vectors and per-evaluation cell arrays (~40 cell arrays
    /// of 8 B), and per-face transmissibilities and weights (~12 face arrays); the resummed
    /// solve on a chain is tridiagonal, elsewhere matrix-free CG, so no matrix is stored.
    fn memory_estimate(&self, mesh: &jko_core::Mesh, _terms: &[EnergyTerm]) -> Option<u64> {
        Some(8 * (40 * mesh.n_cells() as u64 + 12 * mesh.faces().len() as u64))
    }

    fn step(
        &self,
        problem: &JkoStep<'_>,
        _warm: Option<&WarmStart>,
    ) -> Result<StepOutput, StepError> {
        let start = Instant::now();
        let p = &self.params;
        let mut flow = MeshFlow::new(problem.mesh, problem.energy, problem.tau, p.variant)?;
        flow.ode.rtol = p.rtol;
        flow.ode.atol = p.atol;
        flow.ode.max_steps = p.max_substeps;
        flow.linear_tol = p.linear_tol;
        flow.linear_max_iter = p.linear_max_iter;
        let (rho, stats) = flow.integrate(problem.rho_prev, problem.tau).map_err(|e| match e {
            FlowError::Inadmissible { reason } => StepError::Numerical {
                solver: "flow".into(),
                message: format!("{reason} (the explicit surrogate cannot integrate from this state; use a proximal backend)"),
            },
            other => other.into(),
        })?;
        let objective =
            stats.kinetic / (2.0 * problem.tau) + problem.energy.value(problem.mesh, &rho);
        let mut notes = vec![format!(
            "JKO-Flow surrogate ({:?}): flow of J^eta with eta = tau over a time tau; {} substeps ({} rejected), \
             {} stages, {} CG iterations; max eta*lambda_max = {:.3e}; kinetic = tau * integral of |velocity|^2",
            p.variant,
            stats.substeps,
            stats.rejected,
            stats.evaluations,
            stats.linear_iterations,
            stats.max_eta_lambda
        )];
        if problem.energy.interaction_frozen {
            notes.push("interaction frozen at rho^n inside the step (semi-implicit)".into());
        }
        Ok(StepOutput {
            rho,
            flux: None,
            potential: None,
            info: StepInfo {
                solver: "flow".into(),
                status: StepStatus::Solved,
                iterations: stats.substeps,
                primal_residual: stats.mass_drift.abs(),
                dual_residual: stats.max_error * p.rtol,
                objective,
                kinetic: stats.kinetic,
                wall_time: start.elapsed().as_secs_f64(),
                history: Vec::new(),
                notes,
                check: None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jko_core::{Energy, Mesh, Potential};
    use ndarray::Array1;

    #[test]
    fn params_validate_and_deserialize_strictly() {
        assert!(FlowParams::default().validate().is_ok());
        let bad = FlowParams {
            rtol: 0.0,
            ..FlowParams::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("rtol"));
        assert!(FlowSolver::new(bad).is_err());
        let p: FlowParams =
            serde_json::from_str(r#"{"variant": "modified", "rtol": 1e-8}"#).unwrap();
        assert_eq!(p.variant, Variant::Modified);
        assert_eq!(p.max_substeps, FlowParams::default().max_substeps);
        assert!(serde_json::from_str::<FlowParams>(r#"{"rtl": 1e-8}"#).is_err());
    }

    #[test]
    fn step_conserves_mass_decreases_energy_and_names_unsupported_terms() {
        let mesh = Mesh::grid(&[60], &[-4.0], &[4.0]).unwrap();
        let rho0 = mesh.sample(|x| (-(x[0] - 1.0).powi(2) * 2.0).exp() + 1e-3);
        let energy = Energy::fokker_planck(1.0, Potential::Quartic);
        let e = energy.freeze(&mesh, &rho0).unwrap();
        let solver = FlowSolver::default();
        let step = JkoStep::new(&mesh, &rho0, 0.1, &e).unwrap();
        let out = solver.step(&step, None).unwrap();
        assert!((mesh.mass(&out.rho) - mesh.mass(&rho0)).abs() < 1e-12 * mesh.mass(&rho0));
        assert!(out.rho.iter().all(|&r| r > 0.0));
        // A JKO-like step decreases the energy.
        assert!(e.value(&mesh, &out.rho) < e.value(&mesh, &rho0));
        assert!(out.info.iterations > 0 && out.info.kinetic > 0.0);
        // The modified variant refuses this mesh (η λ_max ≫ 2) with a message naming the limit.
        let modified = FlowSolver::new(FlowParams {
            variant: Variant::Modified,
            ..FlowParams::default()
        })
        .unwrap();
        let msg = modified.step(&step, None).unwrap_err().to_string();
        assert!(msg.contains("eta*lambda_max < 2"), "{msg}");
        // Congestion is not treated.
        let mut crowd = e.clone();
        crowd.max_density = Some(10.0);
        let step = JkoStep::new(&mesh, &rho0, 0.1, &crowd).unwrap();
        assert!(matches!(
            solver.step(&step, None),
            Err(StepError::Unsupported { .. })
        ));
        let _ = Array1::<f64>::zeros(1);
    }
}

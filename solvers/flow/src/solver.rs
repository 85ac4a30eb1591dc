//! The JKO-Flow surrogate as a [`StepSolver`]: one "step" of size τ integrates the mesh flow of
//! J^η with η = τ over a time τ from ρⁿ ([`crate::mesh`]).

use crate::mesh::{MeshFlow, Workspace};
use crate::{FlowError, Variant};
use jko_core::{
    BackendInfo, EnergyTerm, InputError, JkoStep, StepError, StepInfo, StepOutput, StepSolver,
    StepStatus, WarmStart,
};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::time::Instant;

/// Settings of the surrogate (serde: unknown fields are rejected, missing ones take the
/// defaults: resummed, automatic `rtol` and `floor`, 1000 substeps).
///
/// ```rust
/// use jko_flow::{FlowParams, Variant};
///
/// let params: FlowParams = serde_json::from_str(r#"{ "rtol": 1e-8 }"#).unwrap();
/// assert_eq!((params.rtol, params.variant), (Some(1e-8), Variant::Resummed));
/// assert!(serde_json::from_str::<FlowParams>(r#"{ "tol": 1e-8 }"#).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlowParams {
    /// `resummed` (default), `modified` (only while η·λ_max < 2) or `plain` (the gradient flow
    /// of J, η ignored).
    pub variant: Variant,
    /// Local error tolerance of a substep: L1 norm of the error estimate relative to the mass.
    /// Default (None): 5 τ³ within [1e-9, 1e-2] — the estimate is that of the embedded
    /// order-2 solution, so the propagated order-3 solution's error is O(τ³) over a run, below
    /// the surrogate's own O(τ²); 0.05 τ³ gives cleaner η-orders at ~3× the substeps (crate
    /// docs §4, with measurements).
    pub rtol: Option<f64>,
    /// Largest number of attempted substeps per step.
    pub max_substeps: usize,
    /// ρ* = floor · max ρⁿ (crate docs): the η-correction sees ρ + ρ*, and the corrected flow
    /// under the entropy integrates log(ρ + ρ*). Default (None): 1e-150 with entropy (tails
    /// resolved down to there), 1e-6 without (porous-medium fronts enter empty cells).
    pub floor: Option<f64>,
}

impl Default for FlowParams {
    fn default() -> Self {
        FlowParams {
            variant: Variant::Resummed,
            rtol: None,
            max_substeps: 1000,
            floor: None,
        }
    }
}

impl FlowParams {
    /// Check the values: `rtol` and `floor` in (0, 1), `max_substeps` ≥ 1.
    ///
    /// # Errors
    /// [`InputError::InvalidParameter`] naming the field.
    ///
    /// ```rust
    /// use jko_flow::FlowParams;
    ///
    /// assert!(FlowParams::default().validate().is_ok());
    /// assert!(FlowParams { rtol: Some(2.0), ..FlowParams::default() }.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<(), InputError> {
        if let Some(rtol) = self.rtol
            && !(rtol.is_finite() && rtol > 0.0 && rtol < 1.0)
        {
            return Err(InputError::parameter("rtol", rtol, "must be in (0, 1)"));
        }
        if let Some(floor) = self.floor
            && !(floor.is_finite() && floor > 0.0 && floor < 1.0)
        {
            return Err(InputError::parameter("floor", floor, "must be in (0, 1)"));
        }
        jko_core::at_least_one("max_substeps", self.max_substeps)?;
        Ok(())
    }
}

/// 5 τ³ within [1e-9, 1e-2].
pub(crate) fn default_rtol(tau: f64) -> f64 {
    (5.0 * tau.powi(3)).clamp(1e-9, 1e-2)
}

/// ρ*/max ρⁿ for a step from a state with empty cells under the entropy.
const VACUUM_FLOOR: f64 = 1e-12;

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
#[derive(Default)]
pub struct FlowSolver {
    params: FlowParams,
    /// Kept between steps on one mesh: symbolic factorisations, the last correction potential
    /// and substep, the last stage-matrix factorisation ([`crate::mesh`]).
    workspace: Mutex<Option<Workspace>>,
}

impl std::fmt::Debug for FlowSolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowSolver")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl Clone for FlowSolver {
    fn clone(&self) -> Self {
        FlowSolver {
            params: self.params.clone(),
            workspace: Mutex::new(None),
        }
    }
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
        Ok(FlowSolver {
            params,
            workspace: Mutex::new(None),
        })
    }

    /// The parameters the solver was built with.
    ///
    /// ```rust
    /// use jko_flow::{FlowParams, FlowSolver};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let solver = FlowSolver::new(FlowParams { rtol: Some(1e-6), ..FlowParams::default() })?;
    /// assert_eq!(solver.params().rtol, Some(1e-6));
    /// # Ok(())
    /// # }
    /// ```
    pub fn params(&self) -> &FlowParams {
        &self.params
    }
}

impl StepSolver for FlowSolver {
    fn name(&self) -> &str {
        Self::NAME
    }

    /// A surrogate follows the flow of J^η (resummed), not a minimiser of W²/(2τ) + J: the JKO
    /// energy inequality for J is not a theorem here (the driver records its slack only).
    fn satisfies_energy_inequality(&self) -> bool {
        false
    }

    fn treats(&self, term: EnergyTerm) -> bool {
        // A frozen interaction is a potential inside the step; the congestion bound has no
        // smooth flow.
        !matches!(term, EnergyTerm::MaxDensity)
    }

    /// The cell and face arrays of the integrator (~60 cell arrays and ~12 face arrays of 8 B:
    /// four Rosenbrock stages of (y, ζ), fluxes, weights) plus the stage matrix (2n unknowns
    /// with the mesh graph's 2×2 blocks, 16 B per entry with its index) and its factorisation:
    /// O(n) on a 1D chain; on a grid, bounded by the fill of a band ordering, 2 · 2n · 2b
    /// entries with b = 2n / (the largest number of cells along one axis), an upper bound of
    /// what the sparse LU (with its fill-reducing ordering) stores; on other meshes a 2D-like
    /// bound with b = 2√n.
    fn memory_estimate(&self, mesh: &jko_core::Mesh, _terms: &[EnergyTerm]) -> Option<u64> {
        let (n, faces) = (mesh.n_cells() as u64, mesh.faces().len() as u64);
        let arrays = 8 * (60 * n + 12 * faces);
        let matrix = 16 * 4 * (n + 2 * faces);
        let band = match mesh.as_grid() {
            Some(grid) => {
                let longest = grid.cells.iter().copied().max().unwrap_or(1).max(1) as u64;
                2 * n / longest
            }
            None => 2 * (n as f64).sqrt().ceil() as u64,
        };
        let factor = if mesh.dim() == 1 {
            8 * 16 * n
        } else {
            8 * 2 * (2 * n) * (2 * band).max(4)
        };
        Some(arrays + matrix + factor)
    }

    fn step(
        &self,
        problem: &JkoStep<'_>,
        _warm: Option<&WarmStart>,
    ) -> Result<StepOutput, StepError> {
        let start = Instant::now();
        let p = &self.params;
        let mut notes = Vec::new();
        // The η-correction needs log ρ > −∞: from a state with empty cells under the entropy the
        // step is the plain flow (which fills them), and so is the retry of a step whose
        // corrected integration cannot proceed.
        let empty = problem.rho_prev.iter().filter(|&&r| r <= 0.0).count();
        let mut variant = p.variant;
        if variant != Variant::Plain && problem.energy.entropy.is_some() && empty > 0 {
            notes.push(format!(
                "{empty} empty cells under the entropy: this step is the plain gradient flow (first order in tau; the J^eta correction needs rho > 0)"
            ));
            variant = Variant::Plain;
        }
        let mut guard = self
            .workspace
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let from_vacuum = variant == Variant::Plain && p.variant != Variant::Plain;
        let mut run = |variant: Variant| -> Result<_, FlowError> {
            let mut flow = MeshFlow::new(problem.mesh, problem.energy, problem.tau, variant)?;
            flow.rtol = p.rtol.unwrap_or_else(|| default_rtol(problem.tau));
            flow.max_substeps = p.max_substeps;
            match p.floor {
                Some(floor) => flow.floor = floor,
                // The plain flow integrates ρ itself; ρ* only regularises ψ = log(ρ + ρ*) in
                // the path's action, where empty cells would give −∞.
                None if from_vacuum => flow.floor = VACUUM_FLOOR,
                None => {}
            }
            let ws = match guard.as_mut() {
                Some(ws) => ws,
                None => guard.insert(Workspace::new(problem.mesh)?),
            };
            let result = flow.integrate_with(problem.rho_prev, problem.tau, ws);
            if result.is_err() {
                // Nothing from a failed integration is reused.
                *guard = None;
            }
            result
        };
        let mut status = StepStatus::Solved;
        let (rho, stats) = match run(variant) {
            Ok(out) => out,
            Err(
                e @ (FlowError::StepSizeUnderflow { .. }
                | FlowError::TooManySubsteps { .. }
                | FlowError::Linear { .. }),
            ) if variant != Variant::Plain => {
                notes.push(format!(
                    "the {variant:?} flow could not proceed ({e}); this step is the plain gradient flow (first order in tau)"
                ));
                status = StepStatus::AlmostSolved;
                variant = Variant::Plain;
                run(variant)?
            }
            Err(e) => return Err(e.into()),
        };
        let objective =
            stats.kinetic / (2.0 * problem.tau) + problem.energy.value(problem.mesh, &rho);
        notes.insert(0, format!(
            "JKO-Flow surrogate ({:?}): flow of J^eta with eta = tau over a time tau; {} substeps ({} rejected), \
             {} stages, {} factorisations; max eta*lambda_max = {:.3e}; kinetic = tau * integral of |velocity|^2",
            variant,
            stats.substeps,
            stats.rejected,
            stats.evaluations,
            stats.factorizations,
            stats.max_eta_lambda
        ));
        if problem.energy.interaction_frozen {
            notes.push("interaction frozen at rho^n inside the step (semi-implicit)".into());
        }
        Ok(StepOutput {
            rho,
            flux: None,
            potential: None,
            info: StepInfo {
                solver: "flow".into(),
                status,
                iterations: stats.substeps,
                primal_residual: stats.mass_drift.abs(),
                dual_residual: stats.max_error
                    * p.rtol.unwrap_or_else(|| default_rtol(problem.tau)),
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

impl BackendInfo for FlowSolver {
    const NAME: &'static str = "flow";
    const SUMMARY: &'static str = "JKO-Flow surrogate (Halmos-Hanin): the modified energy's flow, resummed; Scharfetter-Gummel fluxes, Rosenbrock-W substeps";
    const PROXIMAL: bool = false;
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
            rtol: Some(0.0),
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

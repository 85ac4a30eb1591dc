//! The quantile backend behind the [`StepSolver`] trait: mesh density in, mesh density out.
//!
//! The cell density ρⁿ becomes a quantile state (piecewise-linear CDF sampled at the grid's
//! levels), the step is solved in quantile coordinates with the mesh domain as walls and the
//! cell potential (frozen interaction included) interpolated by a cubic spline, and ρ^{n+1} is
//! ρⁿ pushed forward by the map that moves each node of the step's start to its end
//! ([`pushforward_masses`]; the identity when no node moves). The face flux is the mass that
//! crossed each face, Fⁿ(e) − F^{n+1}(e) with F the cumulative cell mass, so the discrete
//! continuity equation |K|(ρ^{n+1} − ρⁿ) + div G = 0 holds exactly.

use crate::QuantileGrid;
use crate::energy::{QuantileEnergy, unsupported};
use crate::line::LineMesh;
use crate::newton::{QuantileParams, jko_step};
use crate::potential::{CubicSpline, QuantilePotential};
use crate::state::{QuantileState, from_density, pushforward_masses};
use jko_core::{BackendInfo, EnergyTerm, JkoStep, StepError, StepOutput, StepSolver, WarmStart};
use ndarray::Array1;

/// The 1D Lagrangian (quantile) backend, exact W².
///
/// Treats entropy, porous medium, potential and the frozen interaction on 1D meshes that tile
/// one interval; the congestion bound is refused. The face fluxes make the discrete continuity
/// equation exact.
///
/// ```rust
/// use jko_core::{Energy, JkoStep, Mesh, StepSolver};
/// use jko_quantile::{QuantileParams, QuantileSolver};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::grid(&[10], &[0.0], &[1.0])?;
/// let rho0 = mesh.sample(|x| 1.0 + 0.5 * (std::f64::consts::PI * x[0]).cos());
/// let energy = Energy { entropy: Some(0.1), ..Energy::default() }.freeze(&mesh, &rho0)?;
/// let problem = JkoStep::new(&mesh, &rho0, 0.01, &energy)?;
/// let solver = QuantileSolver::new(QuantileParams { nodes: 101, ..QuantileParams::default() })?;
/// let out = solver.step(&problem, None)?;
/// // |K|(ρ¹ − ρ⁰) + div G = 0 cell by cell, and mass is conserved.
/// let flux = out.flux.as_ref().ok_or("the quantile backend returns fluxes")?;
/// let balance = (&out.rho - &rho0) * 0.1 + mesh.divergence(flux);
/// assert!(balance.iter().all(|r| r.abs() < 1e-12));
/// assert!((mesh.mass(&out.rho) - mesh.mass(&rho0)).abs() < 1e-12);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct QuantileSolver {
    /// The parameters (validated by [`QuantileSolver::new`] and again at every step).
    pub params: QuantileParams,
}

/// A step with its quantile states.
///
/// ```rust
/// use jko_core::{Energy, JkoStep, Mesh};
/// use jko_quantile::{QuantileParams, QuantileSolver, w2_squared_nodal};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::grid(&[10], &[0.0], &[1.0])?;
/// let rho0 = mesh.sample(|x| 0.5 + x[0]);
/// let energy = Energy { porous: Some(2.0), ..Energy::default() }.freeze(&mesh, &rho0)?;
/// let problem = JkoStep::new(&mesh, &rho0, 0.01, &energy)?;
/// let solver = QuantileSolver::new(QuantileParams { nodes: 101, ..QuantileParams::default() })?;
/// let step = solver.step_quantiles(&problem)?;
/// assert!((w2_squared_nodal(&step.prev, &step.next)? - step.output.info.kinetic).abs() < 1e-15);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct QuantileStepOutput {
    /// The step as every backend returns it (cell densities, face fluxes, diagnostics).
    pub output: StepOutput,
    /// ρⁿ in quantile coordinates.
    pub prev: QuantileState,
    /// ρ^{n+1} in quantile coordinates (before mapping back to the mesh).
    pub next: QuantileState,
}

impl QuantileSolver {
    /// A solver with validated parameters.
    ///
    /// # Errors
    /// [`StepError::Input`] from [`QuantileParams::validate`].
    ///
    /// ```rust
    /// use jko_quantile::{QuantileParams, QuantileSolver};
    ///
    /// assert!(QuantileSolver::new(QuantileParams::default()).is_ok());
    /// assert!(QuantileSolver::new(QuantileParams { max_iter: 0, ..QuantileParams::default() }).is_err());
    /// ```
    pub fn new(params: QuantileParams) -> Result<Self, StepError> {
        params.validate()?;
        Ok(QuantileSolver { params })
    }

    /// One step, also returning the quantile states.
    ///
    /// # Errors
    /// [`StepError::Unsupported`] for `max_density`, [`StepError::Input`] for a mesh that is
    /// not one line of cells, and the errors of [`crate::jko_step`].
    ///
    /// ```rust
    /// use jko_core::{Energy, JkoStep, Mesh, StepError};
    /// use jko_quantile::{QuantileParams, QuantileSolver};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[4], &[0.0], &[1.0])?;
    /// let rho0 = mesh.sample(|_| 1.0);
    /// let capped = Energy { entropy: Some(1.0), max_density: Some(2.0), ..Energy::default() };
    /// let frozen = capped.freeze(&mesh, &rho0)?;
    /// let problem = JkoStep::new(&mesh, &rho0, 0.1, &frozen)?;
    /// let solver = QuantileSolver::new(QuantileParams { nodes: 51, ..QuantileParams::default() })?;
    /// assert!(matches!(solver.step_quantiles(&problem), Err(StepError::Unsupported { .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub fn step_quantiles(&self, problem: &JkoStep<'_>) -> Result<QuantileStepOutput, StepError> {
        self.params.validate()?;
        self.check_supported(problem.mesh, &problem.energy.terms())?;
        let mesh = problem.mesh;
        let line = LineMesh::new(mesh)?;
        let grid = QuantileGrid::new(self.params.nodes, self.params.distribution)?;
        let prev = from_density(mesh, &line, problem.rho_prev, &grid)?;
        let e = problem.energy;
        let potential = match &e.potential {
            Some(v) => {
                let ordered: Vec<f64> = line.order().iter().map(|&k| v[k]).collect();
                Some(QuantilePotential::Spline(CubicSpline::new(
                    line.centres(mesh),
                    ordered,
                )?))
            }
            None => None,
        };
        let energy = QuantileEnergy {
            entropy: e.entropy,
            porous: e.porous,
            potential,
            // Already frozen into the cell potential by the core.
            interaction: None,
            domain: Some(line.domain()),
            ..QuantileEnergy::default()
        };
        let (next, mut info) = jko_step(&prev, problem.tau, &energy, &self.params)?;
        if e.interaction_frozen {
            info.notes
                .push("interaction frozen into the cell potential (semi-implicit)".into());
        }
        let old_masses: Vec<f64> = line
            .order()
            .iter()
            .map(|&k| mesh.volumes()[k] * problem.rho_prev[k])
            .collect();
        // ρⁿ pushed forward by the nodes' displacement, not `next` reconstructed on its own:
        // a step that moves no node must return ρⁿ (see `pushforward_masses`).
        let new_masses = pushforward_masses(&line, &old_masses, &prev, &next)?;
        let mut rho = Array1::zeros(mesh.n_cells());
        for (j, &k) in line.order().iter().enumerate() {
            rho[k] = new_masses[j] / mesh.volumes()[k];
        }
        // Cumulative mass left of each interior edge, before and after.
        let cumulative = |m: &[f64]| {
            let mut c = vec![0.0; m.len() + 1];
            for j in 0..m.len() {
                c[j + 1] = c[j] + m[j];
            }
            c
        };
        let (before, after) = (cumulative(&old_masses), cumulative(&new_masses));
        let flux = Array1::from_iter(mesh.faces().iter().map(|f| {
            let (pk, pl) = (line.position(f.k), line.position(f.l));
            let edge = pk.max(pl);
            let crossed = before[edge] - after[edge]; // mass moved left → right
            if pk < pl { crossed } else { -crossed }
        }));
        let output = StepOutput {
            rho,
            flux: Some(flux),
            potential: None,
            info,
        };
        Ok(QuantileStepOutput { output, prev, next })
    }
}

impl StepSolver for QuantileSolver {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn treats(&self, term: EnergyTerm) -> bool {
        !matches!(term, EnergyTerm::MaxDensity)
    }

    /// Warm starts are not used: ρⁿ's own quantiles are already a feasible, close start.
    fn step(
        &self,
        problem: &JkoStep<'_>,
        _warm: Option<&WarmStart>,
    ) -> Result<StepOutput, StepError> {
        self.step_quantiles(problem).map(|o| o.output)
    }

    /// O(nodes + cells): the two quantile states (positions, masses) and Newton's vectors
    /// (gradient, the tridiagonal Hessian's three diagonals, direction, trial point, history),
    /// about 40 node arrays of 8 B; the line mesh, the potential's spline and the mapped
    /// densities and fluxes, about 20 cell arrays.
    fn memory_estimate(&self, mesh: &jko_core::Mesh, _terms: &[EnergyTerm]) -> Option<u64> {
        Some(40 * 8 * self.params.nodes as u64 + 20 * 8 * mesh.n_cells() as u64)
    }

    /// One line of cells: a 1D grid, possibly masked at its ends only (quantile coordinates
    /// need the cells in one line).
    fn supports_mesh(&self, mesh: &jko_core::Mesh) -> Result<(), StepError> {
        match LineMesh::new(mesh) {
            Ok(_) => Ok(()),
            Err(jko_core::InputError::InvalidMesh(reason)) => Err(StepError::UnsupportedMesh {
                solver: self.name().to_string(),
                reason,
            }),
            Err(other) => Err(other.into()),
        }
    }

    fn check_supported(
        &self,
        mesh: &jko_core::Mesh,
        terms: &[EnergyTerm],
    ) -> Result<(), StepError> {
        self.supports_mesh(mesh)?;
        if terms.contains(&EnergyTerm::MaxDensity) {
            return Err(unsupported(
                EnergyTerm::MaxDensity,
                " (congestion X' ≥ 1/ρ_max is not implemented in quantile coordinates)",
            ));
        }
        Ok(())
    }
}

impl BackendInfo for QuantileSolver {
    const NAME: &'static str = "quantile";
    const SUMMARY: &'static str =
        "1D Lagrangian JKO with exact W2: Newton on the quantile function (1D meshes only)";
    const PROXIMAL: bool = true;
}

//! One JKO step: the problem, the solver trait, and what a solver returns.
//!
//! ρ^{n+1} = argmin_ρ W_h²(ρⁿ, ρ)/(2τ) + F_h(ρ). Which discretisation of W_h² a backend uses is
//! part of the backend (one-step two-point flux, multi-level Benamou–Brenier, entropic); every
//! backend validates nothing itself — [`JkoStep::new`] already has.
//!
//! The flow of one step: freeze the energy ([`crate::Energy::freeze`]), build and validate the
//! problem ([`JkoStep::new`]), solve it with [`StepSolver::solve`] (which refuses a mesh or an
//! energy term the backend does not treat, [`StepSolver::check_supported`], drops a warm start
//! of another backend, and calls the backend's [`StepSolver::step`]), and carry the result to
//! the next step ([`WarmStart`]). The schemes behind the backends are described in
//! `docs/mathematics.md` of the repository.

use crate::energy::{EnergyTerm, StepEnergy, check_finite};
use crate::error::{InputError, StepError};
use crate::mesh::Mesh;
use ndarray::Array1;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

/// A validated JKO step problem: ρ^{n+1} = argmin_ρ W_h²(ρⁿ, ρ)/(2τ) + F_h(ρ).
///
/// Build it with [`JkoStep::new`], which checks the data; the fields are public for backends
/// to read. Invariants after `new`: τ finite and > 0; ρⁿ of the mesh's length, finite, ≥ 0,
/// of positive mass; the cell potential of the mesh's length and finite; ρ_max |Ω| ≥ mass.
///
/// ```rust
/// use jko_core::{Energy, JkoStep, Mesh, Potential};
/// use ndarray::array;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::grid(&[4], &[-1.0], &[1.0])?;
/// let rho = array![0.0, 1.0, 1.0, 0.0];
/// let energy = Energy::fokker_planck(1.0, Potential::Quartic).freeze(&mesh, &rho)?;
/// let problem = JkoStep::new(&mesh, &rho, 0.05, &energy)?;
/// assert_eq!(problem.mass(), 1.0);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct JkoStep<'a> {
    /// The mesh.
    pub mesh: &'a Mesh,
    /// ρⁿ, one value per active cell.
    pub rho_prev: &'a Array1<f64>,
    /// Time step τ > 0.
    pub tau: f64,
    /// The energy for this step (interaction frozen at ρⁿ).
    pub energy: &'a StepEnergy,
    /// The step's number n + 1 in a time loop (1-based), set with [`JkoStep::numbered`]; 0 for
    /// a step that stands alone. Bookkeeping only: backends solve the same problem whatever it
    /// is (a surrogate check uses it to check every k-th step).
    pub number: usize,
}

impl<'a> JkoStep<'a> {
    /// Check the data and build the problem: τ > 0, ρⁿ finite, ≥ 0, of positive mass and of
    /// the mesh's length, potential of the mesh's length, congestion bound feasible.
    ///
    /// # Errors
    /// [`InputError::InvalidTau`] when τ is not finite and > 0; those of [`check_density`] for
    /// ρⁿ; [`InputError::ShapeMismatch`] or [`InputError::NonFinite`] for the cell potential;
    /// [`InputError::InfeasibleCongestion`] when ρ_max |Ω| is below the mass of ρⁿ.
    ///
    /// ```rust
    /// use jko_core::{Energy, InputError, JkoStep, Mesh};
    /// use ndarray::array;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[2], &[0.0], &[1.0])?;
    /// let rho = array![1.5, 0.5]; // mass 1
    /// let energy = Energy { entropy: Some(1.0), ..Energy::default() }.freeze(&mesh, &rho)?;
    /// assert!(JkoStep::new(&mesh, &rho, 0.1, &energy).is_ok());
    /// assert_eq!(
    ///     JkoStep::new(&mesh, &rho, 0.0, &energy).unwrap_err(),
    ///     InputError::InvalidTau(0.0)
    /// );
    /// // ρ ≤ 0.9 on a domain of volume 1 cannot hold mass 1.
    /// let crowded = Energy { max_density: Some(0.9), ..Energy::default() }.freeze(&mesh, &rho)?;
    /// assert!(matches!(
    ///     JkoStep::new(&mesh, &rho, 0.1, &crowded),
    ///     Err(InputError::InfeasibleCongestion { .. })
    /// ));
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(
        mesh: &'a Mesh,
        rho_prev: &'a Array1<f64>,
        tau: f64,
        energy: &'a StepEnergy,
    ) -> Result<Self, InputError> {
        if !(tau.is_finite() && tau > 0.0) {
            return Err(InputError::InvalidTau(tau));
        }
        check_density(mesh, rho_prev, "density")?;
        if let Some(v) = &energy.potential {
            if v.len() != mesh.n_cells() {
                return Err(InputError::ShapeMismatch {
                    what: "cell potential".into(),
                    expected: mesh.n_cells().to_string(),
                    found: v.len().to_string(),
                });
            }
            check_finite("cell potential", v.as_slice().unwrap_or(&[]))?;
        }
        if let Some(rmax) = energy.max_density {
            let capacity = rmax * mesh.domain_volume();
            let mass = mesh.mass(rho_prev);
            if capacity < mass * (1.0 - 1e-12) {
                return Err(InputError::InfeasibleCongestion { capacity, mass });
            }
        }
        Ok(JkoStep {
            mesh,
            rho_prev,
            tau,
            energy,
            number: 0,
        })
    }

    /// The same problem as step number `number` of a time loop (see [`JkoStep::number`]).
    ///
    /// ```rust
    /// use jko_core::{Energy, JkoStep, Mesh};
    /// use ndarray::array;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[2], &[0.0], &[1.0])?;
    /// let rho = array![1.0, 1.0];
    /// let energy = Energy::default().freeze(&mesh, &rho)?;
    /// let alone = JkoStep::new(&mesh, &rho, 0.1, &energy)?;
    /// assert_eq!((alone.number, alone.numbered(7).number), (0, 7));
    /// # Ok(())
    /// # }
    /// ```
    pub fn numbered(self, number: usize) -> Self {
        JkoStep { number, ..self }
    }

    /// Mass M = Σ_K |K| ρⁿ_K of ρⁿ, which every step conserves.
    ///
    /// ```rust
    /// use jko_core::{Energy, JkoStep, Mesh};
    /// use ndarray::array;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[2], &[0.0], &[4.0])?; // |K| = 2
    /// let rho = array![1.0, 0.5];
    /// let energy = Energy::default().freeze(&mesh, &rho)?;
    /// assert_eq!(JkoStep::new(&mesh, &rho, 1.0, &energy)?.mass(), 3.0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn mass(&self) -> f64 {
        self.mesh.mass(self.rho_prev)
    }
}

/// Check that a density (cell values) has the mesh's length, is finite, ≥ 0 and has positive
/// mass. `what` names the density in errors.
///
/// # Errors
/// [`InputError::ShapeMismatch`], [`InputError::NonFinite`] or [`InputError::NegativeDensity`]
/// (with the index of the first offending cell), or [`InputError::ZeroMass`].
///
/// ```rust
/// use jko_core::{InputError, Mesh, check_density};
/// use ndarray::array;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::grid(&[3], &[0.0], &[1.0])?;
/// check_density(&mesh, &array![0.0, 1.0, 2.0], "rho0")?;
/// assert!(matches!(
///     check_density(&mesh, &array![1.0, -1e-3, 1.0], "rho0"),
///     Err(InputError::NegativeDensity { index: 1, .. })
/// ));
/// assert!(matches!(
///     check_density(&mesh, &array![0.0, 0.0, 0.0], "rho0"),
///     Err(InputError::ZeroMass { .. })
/// ));
/// # Ok(())
/// # }
/// ```
pub fn check_density(mesh: &Mesh, rho: &Array1<f64>, what: &str) -> Result<(), InputError> {
    if rho.len() != mesh.n_cells() {
        return Err(InputError::ShapeMismatch {
            what: what.to_string(),
            expected: format!("{} values (active cells)", mesh.n_cells()),
            found: rho.len().to_string(),
        });
    }
    for (i, &r) in rho.iter().enumerate() {
        if !r.is_finite() {
            return Err(InputError::NonFinite {
                what: what.to_string(),
                index: i,
                value: r,
            });
        }
        if r < 0.0 {
            return Err(InputError::NegativeDensity {
                what: what.to_string(),
                index: i,
                value: r,
            });
        }
    }
    if mesh.mass(rho) <= 0.0 {
        return Err(InputError::ZeroMass {
            what: what.to_string(),
        });
    }
    Ok(())
}

/// How a step ended. Failures are errors ([`StepError`]), not statuses.
///
/// Serialised in snake case (`solved`, `almost_solved`).
///
/// ```rust
/// # use jko_core::step::doc_support::Rest;
/// use jko_core::{JkoStep, StepSolver, StepStatus, WarmStart};
/// use jko_core::{Energy, Mesh};
/// use ndarray::array;
///
/// // `Rest` is the zero-energy backend of the `StepSolver` example.
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::grid(&[2], &[0.0], &[1.0])?;
/// let rho = array![1.0, 1.0];
/// let energy = Energy::default().freeze(&mesh, &rho)?;
/// let out = Rest.step(&JkoStep::new(&mesh, &rho, 0.1, &energy)?, None)?;
/// assert_eq!(out.info.status, StepStatus::Solved);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Converged to the requested tolerances.
    Solved,
    /// Converged to reduced tolerances only (reported, never hidden).
    AlmostSolved,
}

/// Diagnostics of one step.
///
/// Residuals are in each backend's own scaling, so compare them within a backend only; the
/// objective and kinetic action are comparable across backends that solve the same discrete
/// problem.
///
/// ```rust
/// use jko_core::{StepInfo, StepStatus};
///
/// // The objective of a step with zero energy is its kinetic part W_h²/(2τ).
/// let tau = 0.5;
/// let info = StepInfo {
///     solver: "example".into(),
///     status: StepStatus::AlmostSolved,
///     iterations: 12,
///     primal_residual: 1e-9,
///     dual_residual: 1e-8,
///     objective: 0.25,
///     kinetic: 0.25,
///     wall_time: 1e-3,
///     history: Vec::new(),
///     notes: vec!["reduced tolerances".into()],
///     check: None,
/// };
/// assert_eq!(info.objective, info.kinetic / (2.0 * tau));
/// assert_ne!(info.status, StepStatus::Solved);
/// ```
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepInfo {
    /// Name of the backend ([`StepSolver::name`]).
    pub solver: String,
    /// How the step ended.
    pub status: StepStatus,
    /// Iterations of the backend's main loop (interior-point, Newton or Sinkhorn iterations).
    pub iterations: usize,
    /// Final primal residual (feasibility of the continuity equation / marginals), backend scaled.
    pub primal_residual: f64,
    /// Final dual residual (optimality), backend scaled.
    pub dual_residual: f64,
    /// Objective W_h²/(2τ) + F_h(ρ) as the backend computed it.
    pub objective: f64,
    /// Kinetic action W_h²(ρⁿ, ρ^{n+1}) of the backend's discretisation.
    pub kinetic: f64,
    /// Wall time of the step in seconds.
    pub wall_time: f64,
    /// Residual per iteration, when the backend records it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<f64>,
    /// Free-form remarks (fallbacks taken, reduced accuracy, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The check of a surrogate step against a proximal step, when one was made (the
    /// engine's surrogate-check wrapper fills it; backends leave it `None`).
    pub check: Option<CheckReport>,
}

/// What checking a surrogate step against a true proximal (JKO) step from the same ρⁿ found:
/// the two densities' distance, and whether the proximal result was kept instead
/// ([`StepInfo::check`]).
///
/// ```rust
/// use jko_core::CheckReport;
///
/// // A check with tolerance 1e-2 that found a relative L1 distance of 3e-2 kept the proximal step.
/// let check = CheckReport { proximal_solver: "newton".into(), l1: 0.03, w2: 0.001, fell_back: true };
/// assert_eq!(check.fell_back, check.l1 > 1e-2);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    /// The proximal backend's name.
    pub proximal_solver: String,
    /// Relative L1 distance between the surrogate's and the proximal step's densities.
    pub l1: f64,
    /// W2-like distance between them: exact W₂ on 1D grids (quantile functions), else the
    /// Gelbrich lower bound (W₂ between the moment-matched Gaussians).
    pub w2: f64,
    /// True when the discrepancy exceeded the tolerance and the proximal result was kept.
    pub fell_back: bool,
}

/// What a solver returns.
///
/// For flux-based schemes, ρ and G satisfy the discrete continuity equation
/// |K| (ρ_K − ρⁿ_K) + (div G)_K = 0 ([`Mesh::divergence`]) to solver tolerance.
///
/// ```rust
/// use jko_core::{Mesh, StepInfo, StepOutput, StepStatus};
/// use ndarray::array;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Two unit cells: mass 1/2 moves from cell 0 to cell 1.
/// let mesh = Mesh::grid(&[2], &[0.0], &[2.0])?;
/// let rho_prev = array![1.5, 0.5];
/// let out = StepOutput {
///     rho: array![1.0, 1.0],
///     flux: Some(array![0.5]),
///     potential: None,
///     info: StepInfo {
///         solver: "example".into(),
///         status: StepStatus::Solved,
///         iterations: 1,
///         primal_residual: 0.0,
///         dual_residual: 0.0,
///         objective: 0.25,
///         kinetic: 0.25,
///         wall_time: 0.0,
///         history: Vec::new(),
///         notes: Vec::new(),
///         check: None,
///     },
/// };
/// let flux = out.flux.as_ref().ok_or("flux")?;
/// let volumes = ndarray::Array1::from(mesh.volumes().to_vec());
/// let balance = &volumes * &(&out.rho - &rho_prev) + mesh.divergence(flux);
/// assert!(balance.iter().all(|&b| b == 0.0));
/// assert_eq!(mesh.kinetic_action(&out.rho, flux), out.info.kinetic);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct StepOutput {
    /// ρ^{n+1}, one value per active cell.
    pub rho: Array1<f64>,
    /// Face fluxes G_σ (mass moved across σ, oriented k → l) for flux-based schemes.
    pub flux: Option<Array1<f64>>,
    /// Dual potential (φ for flux schemes, log-scaling for Sinkhorn), usable as a warm start.
    pub potential: Option<Array1<f64>>,
    /// Diagnostics.
    pub info: StepInfo,
}

/// A warm start carried from one step to the next: the previous step's density and dual
/// potential and the backend that produced them, built from its output with
/// `WarmStart::from(&output)`. A dual potential means something different for each backend
/// (φ of the flux scheme, Sinkhorn's log-scaling), so [`StepSolver::solve`] hands a backend
/// only its own warm starts (another's is dropped, with a note). A backend may ignore it; the
/// default carries nothing and names no backend.
///
/// ```rust
/// # use jko_core::step::doc_support::Rest;
/// use jko_core::{JkoStep, StepSolver, StepStatus, WarmStart};
/// use jko_core::{Energy, Mesh};
/// use ndarray::array;
///
/// // `Rest` is the zero-energy backend of the `StepSolver` example.
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::grid(&[2], &[0.0], &[1.0])?;
/// let rho = array![1.0, 1.0];
/// let energy = Energy::default().freeze(&mesh, &rho)?;
/// let out = Rest.step(&JkoStep::new(&mesh, &rho, 0.1, &energy)?, None)?;
/// let warm = WarmStart::from(&out);
/// assert_eq!(warm.rho.as_ref(), Some(&out.rho));
/// assert!(warm.potential.is_none());
/// assert_eq!(warm.backend, "rest");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct WarmStart {
    /// The previous step's ρ^{n+1} (cell values).
    pub rho: Option<Array1<f64>>,
    /// The previous step's dual potential ([`StepOutput::potential`]).
    pub potential: Option<Array1<f64>>,
    /// The backend that produced it ([`StepInfo::solver`] of the output).
    pub backend: String,
}

impl From<&StepOutput> for WarmStart {
    fn from(out: &StepOutput) -> Self {
        WarmStart {
            rho: Some(out.rho.clone()),
            potential: out.potential.clone(),
            backend: out.info.solver.clone(),
        }
    }
}

/// A JKO step backend. Object safe, so a backend can be chosen at run time.
///
/// A backend receives a validated [`JkoStep`]; it states which meshes it works on
/// ([`StepSolver::supports_mesh`]) and which [`EnergyTerm`]s it treats
/// ([`StepSolver::treats`]), and returns [`StepError::NotConverged`] rather than an
/// unconverged result. Callers use [`StepSolver::solve`], which refuses an unsupported mesh
/// or term ([`StepSolver::check_supported`]) and a warm start from another backend before it
/// calls [`StepSolver::step`]; a backend implements `step` and may assume both were checked.
///
/// The example implements the exact step for the zero energy, whose minimiser is ρⁿ itself.
///
/// ```rust
/// use jko_core::{Energy, EnergyTerm, JkoStep, Mesh, StepError, StepInfo, StepOutput};
/// use jko_core::{StepSolver, StepStatus, WarmStart};
/// use ndarray::{Array1, array};
///
/// /// F = 0: nothing moves.
/// struct Rest;
///
/// impl StepSolver for Rest {
///     fn name(&self) -> &str {
///         "rest"
///     }
///     fn treats(&self, _term: EnergyTerm) -> bool {
///         false
///     }
///     fn step(&self, p: &JkoStep<'_>, _: Option<&WarmStart>) -> Result<StepOutput, StepError> {
///         Ok(StepOutput {
///             rho: p.rho_prev.clone(),
///             flux: Some(Array1::zeros(p.mesh.faces().len())),
///             potential: None,
///             info: StepInfo {
///                 solver: self.name().to_string(),
///                 status: StepStatus::Solved,
///                 iterations: 0,
///                 primal_residual: 0.0,
///                 dual_residual: 0.0,
///                 objective: 0.0,
///                 kinetic: 0.0,
///                 wall_time: 0.0,
///                 history: Vec::new(),
///                 notes: Vec::new(),
///                 check: None,
///             },
///         })
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let solver: Box<dyn StepSolver> = Box::new(Rest);
/// let mesh = Mesh::grid(&[3], &[0.0], &[1.0])?;
/// let rho = array![1.0, 2.0, 0.0];
/// let energy = Energy::default().freeze(&mesh, &rho)?;
/// let out = solver.solve(&JkoStep::new(&mesh, &rho, 0.1, &energy)?, None)?;
/// assert_eq!(mesh.mass(&out.rho), mesh.mass(&rho));
/// # Ok(())
/// # }
/// ```
///
/// The other examples on this trait use this `Rest` backend (as
/// `jko_core::step::doc_support::Rest`).
pub trait StepSolver: Send + Sync {
    /// Backend name as used in configs (`conic`, `newton`, ...).
    ///
    /// ```rust
    /// use jko_core::StepSolver;
    /// # use jko_core::step::doc_support::Rest;
    ///
    /// let solver: &dyn StepSolver = &Rest;
    /// assert_eq!(solver.name(), "rest");
    /// ```
    fn name(&self) -> &str;

    /// Whether this backend treats an energy term.
    ///
    /// ```rust
    /// use jko_core::{EnergyTerm, StepSolver};
    /// # use jko_core::step::doc_support::Rest;
    ///
    /// // The zero-energy backend treats no term at all.
    /// assert!(EnergyTerm::ALL.iter().all(|&term| !Rest.treats(term)));
    /// ```
    fn treats(&self, term: EnergyTerm) -> bool;

    /// Whether this backend works on `mesh`: a 1D-only backend refuses 2D meshes, a backend
    /// that needs a uniform grid refuses masked or general meshes. Checked once, before the
    /// first step ([`StepSolver::check_supported`]). The default accepts every mesh.
    ///
    /// # Errors
    /// [`StepError::UnsupportedMesh`] saying what the backend needs and what the mesh is.
    ///
    /// ```rust
    /// use jko_core::{Mesh, StepError, StepSolver};
    /// # use jko_core::step::doc_support::Rest;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// /// A backend for 1D meshes only (everything else as `Rest`).
    /// struct Line;
    /// # impl StepSolver for Line {
    /// #     fn name(&self) -> &str { "line" }
    /// #     fn treats(&self, t: jko_core::EnergyTerm) -> bool { Rest.treats(t) }
    /// #     fn step(&self, p: &jko_core::JkoStep<'_>, w: Option<&jko_core::WarmStart>)
    /// #         -> Result<jko_core::StepOutput, StepError> { Rest.step(p, w) }
    /// #     fn supports_mesh(&self, mesh: &Mesh) -> Result<(), StepError> {
    /// #         if mesh.dim() == 1 { return Ok(()); }
    /// #         Err(StepError::UnsupportedMesh {
    /// #             solver: self.name().into(),
    /// #             reason: format!("1D meshes only; this mesh is {}D", mesh.dim()),
    /// #         })
    /// #     }
    /// # }
    /// let square = Mesh::grid(&[4, 4], &[0.0, 0.0], &[1.0, 1.0])?;
    /// assert!(Rest.supports_mesh(&square).is_ok());
    /// let err = Line.supports_mesh(&square).unwrap_err();
    /// assert_eq!(err.to_string(), "the line backend does not treat this mesh: 1D meshes only; this mesh is 2D");
    /// # Ok(())
    /// # }
    /// ```
    fn supports_mesh(&self, mesh: &Mesh) -> Result<(), StepError> {
        let _ = mesh;
        Ok(())
    }

    /// Solve one step from a validated problem. `warm` may carry the previous step's result
    /// of this backend ([`StepSolver::solve`] drops another backend's). Implement this; call
    /// [`StepSolver::solve`].
    ///
    /// # Errors
    /// [`StepError::NotConverged`] when the tolerances are not met, [`StepError::Numerical`]
    /// for a breakdown.
    ///
    /// ```rust
    /// use jko_core::{Energy, JkoStep, Mesh, StepSolver, WarmStart};
    /// # use jko_core::step::doc_support::Rest;
    /// use ndarray::array;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[2], &[0.0], &[1.0])?;
    /// let rho = array![0.5, 1.5];
    /// let energy = Energy::default().freeze(&mesh, &rho)?;
    /// let problem = JkoStep::new(&mesh, &rho, 0.1, &energy)?;
    /// let first = Rest.step(&problem, None)?;
    /// let second = Rest.step(&problem, Some(&WarmStart::from(&first)))?;
    /// assert_eq!(second.rho, rho);
    /// assert_eq!(second.info.kinetic, 0.0);
    /// # Ok(())
    /// # }
    /// ```
    fn step(
        &self,
        problem: &JkoStep<'_>,
        warm: Option<&WarmStart>,
    ) -> Result<StepOutput, StepError>;

    /// Whether F_h(ρ^{n+1}) + kinetic/(2τ) ≤ F_h(ρⁿ) is a theorem for this backend's discrete
    /// problem (true for exact minimisers whose transport cost vanishes at ρ = ρⁿ). Entropic and
    /// surrogate backends return false: the driver then records the slack without failing on it.
    /// The default is `true`.
    ///
    /// ```rust
    /// use jko_core::{Energy, JkoStep, Mesh, StepSolver};
    /// # use jko_core::step::doc_support::Rest;
    /// use ndarray::array;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[2], &[0.0], &[1.0])?;
    /// let rho = array![0.5, 1.5];
    /// let energy = Energy::default().freeze(&mesh, &rho)?;
    /// let problem = JkoStep::new(&mesh, &rho, 0.1, &energy)?;
    /// let out = Rest.solve(&problem, None)?;
    /// assert!(Rest.satisfies_energy_inequality());
    /// let after = energy.value(&mesh, &out.rho) + out.info.kinetic / (2.0 * problem.tau);
    /// assert!(after <= energy.value(&mesh, &rho));
    /// # Ok(())
    /// # }
    /// ```
    fn satisfies_energy_inequality(&self) -> bool {
        true
    }

    /// Whether the energy inequality is a theorem for this particular output (described by its
    /// `info`): what the driver enforces. The default is
    /// [`StepSolver::satisfies_energy_inequality`]; a wrapper that may return another
    /// backend's result (a surrogate check that fell back to a proximal step) answers for the
    /// backend that produced it.
    ///
    /// ```rust
    /// use jko_core::{Energy, JkoStep, Mesh, StepSolver};
    /// # use jko_core::step::doc_support::Rest;
    /// use ndarray::array;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[2], &[0.0], &[1.0])?;
    /// let rho = array![0.5, 1.5];
    /// let energy = Energy::default().freeze(&mesh, &rho)?;
    /// let out = Rest.solve(&JkoStep::new(&mesh, &rho, 0.1, &energy)?, None)?;
    /// assert_eq!(Rest.energy_inequality_holds(&out.info), Rest.satisfies_energy_inequality());
    /// # Ok(())
    /// # }
    /// ```
    fn energy_inequality_holds(&self, info: &StepInfo) -> bool {
        let _ = info;
        self.satisfies_energy_inequality()
    }

    /// Peak memory, in bytes, that one step on `mesh` with an energy made of `terms` needs,
    /// estimated from the backend's data structures before anything is allocated (the mesh
    /// itself not included); `None` when the backend cannot tell. Estimates are meant to be
    /// conservative (at or above the measured peak). [`check_memory`] compares it with a limit.
    /// The default is `None`.
    ///
    /// ```rust
    /// use jko_core::{Mesh, StepSolver};
    /// use jko_core::step::check_memory;
    /// # use jko_core::step::doc_support::Rest;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[8], &[0.0], &[1.0])?;
    /// assert_eq!(Rest.memory_estimate(&mesh, &[]), None);
    /// // Without an estimate, even a zero limit passes.
    /// assert!(check_memory(&Rest, &mesh, &[], 0, 0, "a test limit").is_ok());
    /// # Ok(())
    /// # }
    /// ```
    fn memory_estimate(&self, mesh: &Mesh, terms: &[EnergyTerm]) -> Option<u64> {
        let _ = (mesh, terms);
        None
    }

    /// Refuse a mesh ([`StepSolver::supports_mesh`]) or an energy made of `terms` that this
    /// backend does not treat: the error names the first untreated term, in the order of
    /// [`EnergyTerm::ALL`]. Made before the first step (by the caller) and by
    /// [`StepSolver::solve`]; override it only to add a hint.
    ///
    /// # Errors
    /// [`StepError::UnsupportedMesh`], or [`StepError::Unsupported`] with the backend's name
    /// and the term.
    ///
    /// ```rust
    /// use jko_core::{Energy, EnergyTerm, Mesh, StepError, StepSolver};
    /// # use jko_core::step::doc_support::Rest;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[2], &[0.0], &[1.0])?;
    /// let energy = Energy { entropy: Some(1.0), ..Energy::default() };
    /// match Rest.check_supported(&mesh, &energy.terms()) {
    ///     Err(StepError::Unsupported { solver, term, .. }) => {
    ///         assert_eq!((solver.as_str(), term), ("rest", EnergyTerm::Entropy))
    ///     }
    ///     other => panic!("expected Unsupported, got {other:?}"),
    /// }
    /// assert!(Rest.check_supported(&mesh, &Energy::default().terms()).is_ok());
    /// # Ok(())
    /// # }
    /// ```
    fn check_supported(&self, mesh: &Mesh, terms: &[EnergyTerm]) -> Result<(), StepError> {
        self.supports_mesh(mesh)?;
        match terms.iter().find(|t| !self.treats(**t)) {
            Some(&term) => Err(StepError::Unsupported {
                solver: self.name().to_string(),
                term,
                hint: String::new(),
            }),
            None => Ok(()),
        }
    }

    /// Solve one step: refuse an unsupported mesh or term ([`StepSolver::check_supported`]),
    /// drop a warm start that another backend produced (noted in the output's
    /// [`StepInfo::notes`]: its potential means something else), then [`StepSolver::step`].
    /// What every caller uses; backends implement `step`.
    ///
    /// # Errors
    /// As [`StepSolver::check_supported`] and [`StepSolver::step`].
    ///
    /// ```rust
    /// use jko_core::{Energy, JkoStep, Mesh, StepError, StepSolver, WarmStart};
    /// # use jko_core::step::doc_support::Rest;
    /// use ndarray::array;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[2], &[0.0], &[1.0])?;
    /// let rho = array![0.5, 1.5];
    /// let free = Energy::default().freeze(&mesh, &rho)?;
    /// let out = Rest.solve(&JkoStep::new(&mesh, &rho, 0.1, &free)?, None)?;
    /// // A warm start of another backend is dropped, and the output says so.
    /// let foreign = WarmStart { backend: "newton".into(), ..WarmStart::from(&out) };
    /// let again = Rest.solve(&JkoStep::new(&mesh, &rho, 0.1, &free)?, Some(&foreign))?;
    /// assert!(again.info.notes.iter().any(|n| n.contains("newton")));
    /// // An energy term the backend does not treat is refused before any work.
    /// let heat = Energy { entropy: Some(1.0), ..Energy::default() }.freeze(&mesh, &rho)?;
    /// let err = Rest.solve(&JkoStep::new(&mesh, &rho, 0.1, &heat)?, None).unwrap_err();
    /// assert!(matches!(err, StepError::Unsupported { .. }));
    /// # Ok(())
    /// # }
    /// ```
    fn solve(
        &self,
        problem: &JkoStep<'_>,
        warm: Option<&WarmStart>,
    ) -> Result<StepOutput, StepError> {
        self.check_supported(problem.mesh, &problem.energy.terms())?;
        let foreign = warm.filter(|w| w.backend != self.name());
        let mut out = self.step(problem, warm.filter(|w| w.backend == self.name()))?;
        if let Some(w) = foreign {
            out.info.notes.push(format!(
                "warm start from the {} backend ignored (not a {} warm start)",
                if w.backend.is_empty() {
                    "unknown"
                } else {
                    &w.backend
                },
                self.name()
            ));
        }
        Ok(out)
    }
}

/// What a backend says of itself, in its own crate, for the engine's registry
/// (`jko::backend::BACKENDS`): the name configs give it, one line on the method, and whether its
/// steps are proximal (JKO) steps. Constants, so that [`StepSolver`] stays object safe; a
/// backend's [`StepSolver::name`] returns its `NAME`.
///
/// ```rust
/// use jko_core::{BackendInfo, StepSolver};
/// # use jko_core::step::doc_support::Rest;
///
/// assert_eq!(Rest.name(), Rest::NAME);
/// assert!(Rest::PROXIMAL && Rest::SUMMARY.starts_with("zero energy"));
/// ```
pub trait BackendInfo {
    /// The name configs use (`kind`), and [`StepInfo::solver`].
    const NAME: &'static str;
    /// One line on the method (`jko solvers`).
    const SUMMARY: &'static str;
    /// Whether it computes proximal (JKO) steps, so it can check a surrogate; false for a
    /// surrogate such as `flow`.
    const PROXIMAL: bool;
}

/// The zero-energy backend `Rest` used by the examples of [`StepSolver`] (not part of the
/// API).
#[doc(hidden)]
pub mod doc_support {
    use super::*;

    /// F = 0: nothing moves (the example of [`StepSolver`]).
    pub struct Rest;

    impl StepSolver for Rest {
        fn name(&self) -> &str {
            Self::NAME
        }
        fn treats(&self, _term: EnergyTerm) -> bool {
            false
        }
        fn step(&self, p: &JkoStep<'_>, _: Option<&WarmStart>) -> Result<StepOutput, StepError> {
            Ok(StepOutput {
                rho: p.rho_prev.clone(),
                flux: Some(Array1::zeros(p.mesh.faces().len())),
                potential: None,
                info: StepInfo {
                    solver: self.name().to_string(),
                    status: StepStatus::Solved,
                    iterations: 0,
                    primal_residual: 0.0,
                    dual_residual: 0.0,
                    objective: 0.0,
                    kinetic: 0.0,
                    wall_time: 0.0,
                    history: Vec::new(),
                    notes: Vec::new(),
                    check: None,
                },
            })
        }
    }

    impl BackendInfo for Rest {
        const NAME: &'static str = "rest";
        const SUMMARY: &'static str = "zero energy: every step returns ρⁿ";
        const PROXIMAL: bool = true;
    }
}

/// Nonzeros of the sparse Cholesky / LDLᵀ factor of a matrix whose graph is a box-shaped grid
/// with `sides[a]` nodes along axis `a` and `block` unknowns per node, under a fill-reducing
/// ordering. Nested dissection (George 1973) cuts the box across its longest side with a
/// separator of N/s_max nodes, whose factor columns are dense over the separator and over the
/// box's surface (the ancestors' separators): f(box) = S²/2 + S·surface + 2 f(half box).
/// This gives O(N) in 1D, O(N log N) in 2D and O(N^{4/3}) in 3D; times block² for the
/// unknowns per node. A backend multiplies by the storage per nonzero and by its own
/// calibration factor (orderings such as AMD fill somewhat more than nested dissection).
///
/// ```rust
/// use jko_core::step::factor_nonzeros;
///
/// // A box of at most 16 nodes is factored densely: 16 · 17 / 2 nonzeros per unknown pair.
/// assert_eq!(factor_nonzeros(&[4.0, 4.0], 1.0), 136.0);
/// assert_eq!(factor_nonzeros(&[4.0, 4.0], 2.0), 4.0 * 136.0);
/// // More nodes never need fewer nonzeros.
/// assert!(factor_nonzeros(&[64.0, 64.0], 1.0) > factor_nonzeros(&[32.0, 64.0], 1.0));
/// ```
pub fn factor_nonzeros(sides: &[f64], block: f64) -> f64 {
    fn nd(sides: &mut [f64]) -> f64 {
        let n: f64 = sides.iter().product();
        if n <= 16.0 {
            return n * (n + 1.0) / 2.0;
        }
        let (longest, s_max) = sides
            .iter()
            .copied()
            .enumerate()
            .fold((0, 0.0), |a, (i, s)| if s > a.1 { (i, s) } else { a });
        let separator = n / s_max;
        let surface: f64 = sides.iter().map(|s| 2.0 * n / s).sum();
        sides[longest] = (s_max - 1.0).max(1.0) / 2.0;
        let half = nd(sides);
        sides[longest] = s_max;
        separator * (separator + 1.0) / 2.0 + separator * surface + 2.0 * half
    }
    let mut s: Vec<f64> = sides.iter().map(|s| s.max(1.0)).collect();
    nd(&mut s) * block * block
}

/// Refuse a step whose [`StepSolver::memory_estimate`] plus `extra` bytes (the mesh, say)
/// exceeds `limit` bytes, before anything is allocated. `limit_source` says where the limit
/// comes from ("available (MemAvailable)", "set by max_memory_gib", ...). A backend without an
/// estimate passes.
///
/// # Errors
/// [`InputError::OutOfMemory`] with the estimate (plus `extra`) and the limit, in bytes.
///
/// ```rust
/// use jko_core::step::check_memory;
/// use jko_core::{EnergyTerm, InputError, JkoStep, Mesh, StepError, StepOutput, StepSolver};
/// use jko_core::WarmStart;
///
/// /// Declares three f64 arrays per cell.
/// struct ThreeArrays;
///
/// impl StepSolver for ThreeArrays {
///     fn name(&self) -> &str {
///         "three-arrays"
///     }
///     fn treats(&self, _: EnergyTerm) -> bool {
///         true
///     }
///     fn step(&self, _: &JkoStep<'_>, _: Option<&WarmStart>) -> Result<StepOutput, StepError> {
///         let message = "an example, not a backend".to_string();
///         Err(StepError::Numerical { solver: self.name().to_string(), message })
///     }
///     fn memory_estimate(&self, mesh: &Mesh, _: &[EnergyTerm]) -> Option<u64> {
///         Some(3 * 8 * mesh.n_cells() as u64)
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::grid(&[100], &[0.0], &[1.0])?; // 2400 bytes
/// assert!(check_memory(&ThreeArrays, &mesh, &[], 0, 4096, "a test limit").is_ok());
/// match check_memory(&ThreeArrays, &mesh, &[], 2048, 4096, "a test limit") {
///     Err(InputError::OutOfMemory { bytes, limit, .. }) => {
///         assert_eq!((bytes, limit), (2400 + 2048, 4096))
///     }
///     other => panic!("expected OutOfMemory, got {other:?}"),
/// }
/// # Ok(())
/// # }
/// ```
pub fn check_memory(
    solver: &dyn StepSolver,
    mesh: &Mesh,
    terms: &[EnergyTerm],
    extra: u64,
    limit: u64,
    limit_source: &str,
) -> Result<(), InputError> {
    let Some(bytes) = solver.memory_estimate(mesh, terms) else {
        return Ok(());
    };
    let bytes = bytes.saturating_add(extra);
    if bytes <= limit {
        return Ok(());
    }
    let shape = match mesh.as_grid() {
        Some(g) => crate::mesh::shape_label(&g.cells),
        None => "general".to_string(),
    };
    Err(InputError::OutOfMemory {
        what: format!("the {} backend", solver.name()),
        mesh: format!("a {shape} mesh ({} cells)", mesh.n_cells()),
        bytes,
        limit,
        limit_source: limit_source.to_string(),
        hint: "use a coarser mesh or a lighter backend (see `jko solvers`), or raise \
               max_memory_gib in [limits] (or JKO_MAX_MEMORY_GIB)"
            .to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn energy() -> StepEnergy {
        StepEnergy {
            entropy: Some(1.0),
            porous: None,
            potential: None,
            max_density: Some(1.0),
            interaction_frozen: false,
        }
    }

    #[test]
    fn bad_steps_are_rejected_with_names() {
        let mesh = Mesh::grid(&[4], &[0.0], &[1.0]).unwrap();
        let e = energy();
        let good = Array1::from(vec![0.5, 0.5, 0.5, 0.5]);
        assert!(JkoStep::new(&mesh, &good, 0.1, &e).is_ok());
        assert_eq!(
            JkoStep::new(&mesh, &good, 0.0, &e).unwrap_err(),
            InputError::InvalidTau(0.0)
        );
        assert!(matches!(
            JkoStep::new(&mesh, &good, f64::NAN, &e),
            Err(InputError::InvalidTau(_))
        ));
        let neg = Array1::from(vec![0.5, -0.1, 0.5, 0.5]);
        assert!(matches!(
            JkoStep::new(&mesh, &neg, 0.1, &e),
            Err(InputError::NegativeDensity { index: 1, .. })
        ));
        let nan = Array1::from(vec![0.5, f64::NAN, 0.5, 0.5]);
        assert!(matches!(
            JkoStep::new(&mesh, &nan, 0.1, &e),
            Err(InputError::NonFinite { .. })
        ));
        let zero = Array1::zeros(4);
        assert!(matches!(
            JkoStep::new(&mesh, &zero, 0.1, &e),
            Err(InputError::ZeroMass { .. })
        ));
        let short = Array1::from(vec![0.5; 3]);
        assert!(matches!(
            JkoStep::new(&mesh, &short, 0.1, &e),
            Err(InputError::ShapeMismatch { .. })
        ));
        let heavy = Array1::from(vec![2.0; 4]);
        assert!(matches!(
            JkoStep::new(&mesh, &heavy, 0.1, &e),
            Err(InputError::InfeasibleCongestion { .. })
        ));
    }

    /// Nested-dissection fill grows like N, N log N and N^{4/3} in 1D, 2D and 3D.
    #[test]
    fn factor_fill_has_the_nested_dissection_orders() {
        let ratio =
            |small: &[f64], big: &[f64]| factor_nonzeros(big, 1.0) / factor_nonzeros(small, 1.0);
        // 1D: doubling N doubles the fill.
        let r1 = ratio(&[1e4], &[2e4]);
        assert!((r1 - 2.0).abs() < 0.01, "{r1}");
        // 2D: 4x the cells, 4x (log N ratio) the fill.
        let r2 = ratio(&[512.0, 512.0], &[1024.0, 1024.0]);
        let expect = 4.0 * (1024.0f64 * 1024.0).ln() / (512.0f64 * 512.0).ln();
        assert!((r2 / expect - 1.0).abs() < 0.1, "{r2} vs {expect}");
        // 3D: 8x the cells, 8^{4/3} = 16x the fill.
        let r3 = ratio(&[64.0; 3], &[128.0; 3]);
        assert!((r3 / 16.0 - 1.0).abs() < 0.1, "{r3}");
        // Unknowns per node enter squared.
        assert_eq!(
            factor_nonzeros(&[100.0], 3.0),
            9.0 * factor_nonzeros(&[100.0], 1.0)
        );
    }

    struct Fixed(Option<u64>);

    impl StepSolver for Fixed {
        fn name(&self) -> &str {
            "fixed"
        }
        fn treats(&self, _: EnergyTerm) -> bool {
            true
        }
        fn step(&self, _: &JkoStep<'_>, _: Option<&WarmStart>) -> Result<StepOutput, StepError> {
            Err(StepError::Numerical {
                solver: "fixed".into(),
                message: "not a solver".into(),
            })
        }
        fn memory_estimate(&self, _: &Mesh, _: &[EnergyTerm]) -> Option<u64> {
            self.0
        }
    }

    #[test]
    fn memory_check_compares_estimate_plus_extra_with_the_limit() {
        let mesh = Mesh::grid(&[8, 4], &[0.0, 0.0], &[1.0, 1.0]).unwrap();
        let gib = 1u64 << 30;
        assert!(check_memory(&Fixed(Some(gib)), &mesh, &[], 0, 2 * gib, "test").is_ok());
        assert!(check_memory(&Fixed(None), &mesh, &[], 0, 1, "test").is_ok());
        let err =
            check_memory(&Fixed(Some(gib)), &mesh, &[], gib, gib + 1, "available").unwrap_err();
        assert!(matches!(err, InputError::OutOfMemory { bytes, .. } if bytes == 2 * gib));
        let msg = err.to_string();
        for word in [
            "fixed backend",
            "2.0 GiB",
            "8x4 mesh (32 cells)",
            "1.0 GiB available",
        ] {
            assert!(msg.contains(word), "`{msg}` lacks `{word}`");
        }
    }
}

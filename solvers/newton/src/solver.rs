//! The solver: start points (cold, warm with validation), the interior-point loop with its
//! merit-function line search, failures that say why, and the `StepSolver` interface.

use crate::cell::CellLaw;
use crate::ipm;
use crate::kkt::{Errors, Point, Problem};
use crate::params::NewtonParams;
use crate::system::ReducedSystem;
use jko_core::BackendInfo;
use jko_core::{
    EnergyTerm, InputError, JkoStep, Mesh, StepError, StepInfo, StepOutput, StepSolver, StepStatus,
    WarmStart,
};
use ndarray::Array1;
use std::fmt;
use std::sync::Mutex;
use std::time::Instant;
use thiserror::Error;

/// Why the Newton iteration stopped without converging.
///
/// ```rust
/// use jko_core::{Energy, JkoStep, Mesh};
/// use jko_newton::{FailureReason, NewtonError, NewtonParams, NewtonSolver};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // One Newton iteration cannot reach tol = 1e-10 from a non-equilibrium start.
/// let mesh = Mesh::grid(&[6], &[0.0], &[1.0])?;
/// let rho0 = mesh.sample(|x| 1.0 + 0.5 * (3.0 * x[0]).cos());
/// let energy = Energy { entropy: Some(1.0), ..Energy::default() }.freeze(&mesh, &rho0)?;
/// let problem = JkoStep::new(&mesh, &rho0, 0.1, &energy)?;
/// let solver = NewtonSolver::new(NewtonParams { max_iter: 1, ..NewtonParams::default() })?;
/// match solver.solve(&problem, None) {
///     Err(NewtonError::NotConverged { reason, iterations, residual, diagnostics, .. }) => {
///         assert_eq!(reason, FailureReason::MaxIterations);
///         assert_eq!(iterations, 1);
///         assert!(residual > 1e-10);
///         // 0 < ρ holds at every iterate, converged or not, and the report names the
///         // residual that was still above the tolerance.
///         assert!(diagnostics.min_rho > 0.0 && diagnostics.max_rho >= diagnostics.min_rho);
///         assert!(!diagnostics.limiting.is_empty());
///     }
///     other => panic!("expected MaxIterations, got {other:?}"),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum FailureReason {
    /// `max_iter` iterations without reaching the tolerance.
    MaxIterations,
    /// The merit-function line search found no acceptable step (smallest step tried in the
    /// diagnostics).
    LineSearch,
    /// The sparse factorisation failed or produced a non-finite direction.
    LinearSolver(String),
    /// No admissible starting point (the merit function is not finite there).
    Domain,
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureReason::MaxIterations => f.write_str("iteration limit reached"),
            FailureReason::LineSearch => f.write_str("line search failed"),
            FailureReason::LinearSolver(m) => write!(f, "linear solver failed ({m})"),
            FailureReason::Domain => f.write_str("no admissible starting point"),
        }
    }
}

/// Diagnostics of the last iterate of a failed step (see the example of [`FailureReason`]).
///
/// ```rust
/// use jko_newton::IterateDiagnostics;
///
/// let d = IterateDiagnostics {
///     mass_residual: 1e-3, mu: 0.0, min_rho: 0.2, max_rho: 1.5, mass_error: 1e-12, last_step: 1.0,
///     limiting: "mass balance 1.0e-3 (round-off floor 1.0e-15)".into(),
/// };
/// assert!(d.min_rho <= d.max_rho);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct IterateDiagnostics {
    /// Scaled mass-balance residual max_K |r_K| / (|K| max ρⁿ).
    pub mass_residual: f64,
    /// Barrier parameter μ of the last iterate, relative to max ρⁿ × the energy scale.
    pub mu: f64,
    /// Smallest cell density min_K ρ_K of the last iterate.
    pub min_rho: f64,
    /// Largest cell density max_K ρ_K of the last iterate.
    pub max_rho: f64,
    /// Relative mass error |Σ|K|ρ_K − M| / M of the last iterate.
    pub mass_error: f64,
    /// Last accepted (or smallest tried) line-search step.
    pub last_step: f64,
    /// The residual furthest above its target (tol or its round-off floor), with its value
    /// and floor: what kept the iteration from stopping.
    pub limiting: String,
}

/// A failed Newton step, with its residual history and the last iterate's diagnostics.
///
/// Converts into [`StepError`] (`NotConverged` keeps the reason, the residual history and
/// the diagnostics in its status text; the barrier parameter goes to `dual_residual`):
///
/// ```rust
/// use jko_core::StepError;
/// use jko_newton::{FailureReason, IterateDiagnostics, NewtonError};
///
/// let e = NewtonError::NotConverged {
///     reason: FailureReason::LineSearch,
///     iterations: 7,
///     residual: 3e-4,
///     history: vec![1e-1, 3e-4],
///     diagnostics: IterateDiagnostics {
///         mass_residual: 3e-4, mu: 0.0, min_rho: 0.1, max_rho: 2.0, mass_error: 0.0, last_step: 1e-12,
///         limiting: "mass balance 3.0e-4 (round-off floor 1.0e-15)".into(),
///     },
/// };
/// match StepError::from(e) {
///     StepError::NotConverged { solver, status, iterations, history, .. } => {
///         assert_eq!(solver, "newton");
///         assert!(status.starts_with("line search failed"));
///         assert!(status.contains("mass balance"));
///         assert_eq!((iterations, history.len()), (7, 2));
///     }
///     other => panic!("unexpected {other:?}"),
/// }
/// ```
#[derive(Debug, Clone, Error)]
pub enum NewtonError {
    /// The problem or the parameters were rejected before any iteration.
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(
        "newton: {reason} after {iterations} iterations (scaled residual {residual:.3e}, \
         limited by {limiting}; mu {mu:.1e}, rho in [{min:.3e}, {max:.3e}], mass error \
         {merr:.1e}, last step {step:.1e})",
        limiting = diagnostics.limiting, mu = diagnostics.mu, min = diagnostics.min_rho,
        max = diagnostics.max_rho, merr = diagnostics.mass_error, step = diagnostics.last_step
    )]
    /// The iteration stopped before the tolerance was met; no result is returned.
    NotConverged {
        /// Why it stopped.
        reason: FailureReason,
        /// Newton iterations done.
        iterations: usize,
        /// Final scaled residual (the largest of the scaled KKT residuals).
        residual: f64,
        /// Scaled residual after each iteration.
        history: Vec<f64>,
        /// State of the last iterate.
        diagnostics: IterateDiagnostics,
    },
}

impl From<NewtonError> for StepError {
    fn from(e: NewtonError) -> Self {
        match e {
            NewtonError::Input(i) => StepError::Input(i),
            NewtonError::NotConverged {
                ref reason,
                iterations,
                residual,
                ref history,
                ref diagnostics,
            } => StepError::NotConverged {
                solver: "newton".into(),
                status: format!(
                    "{reason}: {}; last iterate: rho in [{:.3e}, {:.3e}], mass error {:.1e}, mu {:.1e}, step {:.1e}",
                    diagnostics.limiting,
                    diagnostics.min_rho,
                    diagnostics.max_rho,
                    diagnostics.mass_error,
                    diagnostics.mu,
                    diagnostics.last_step
                ),
                iterations,
                primal_residual: residual,
                dual_residual: diagnostics.mu,
                history: history.clone(),
            },
        }
    }
}

/// One timed numeric factorisation of a step's Newton matrix ([`NewtonSolver::factorisation`]).
///
/// ```rust
/// use jko_newton::Factorisation;
///
/// let f = Factorisation { seconds: 2e-3, cpu_seconds: 2e-3, matrix_nonzeros: 1000, factor_nonzeros: 4000 };
/// assert!(f.factor_nonzeros >= f.matrix_nonzeros);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Factorisation {
    /// Wall time of the numeric factorisation (symbolic factorisation reused).
    pub seconds: f64,
    /// CPU time of the same factorisation on the calling thread (it runs sequentially there),
    /// from Linux's /proc/thread-self/schedstat; NaN where that is not available. On a loaded
    /// machine the wall time is mostly time descheduled, the CPU time is not. The kernel
    /// updates that counter at scheduler ticks and switches: it resolves a few milliseconds,
    /// so it means something only for factorisations much longer than that (3D grids, ≥ 128²).
    pub cpu_seconds: f64,
    /// Stored nonzeros of S (lower triangle for Cholesky).
    pub matrix_nonzeros: usize,
    /// Stored nonzeros of its Cholesky factor (0 for LU).
    pub factor_nonzeros: usize,
}

/// Reduced systems (pattern, ordering, symbolic factorisation) are reused while the mesh stays
/// the same.
struct Cache {
    n: usize,
    faces: Vec<(usize, usize, f64)>,
    system: ReducedSystem,
}

/// The Newton backend (`"newton"`): docs/mathematics.md §2.1 solved by a primal–dual interior-point Newton
/// method on its optimality system (see the crate docs).
///
/// Treats entropy, porous medium, potential, frozen interaction and the congestion bound
/// ρ ≤ ρ_max, and any combination, including no internal energy at all. The reduced system's
/// sparsity pattern, ordering and symbolic factorisation are cached and reused while the mesh
/// stays the same, so one solver should be kept across steps. [`StepSolver::step`] adds the
/// `fallback_halving` retries to [`NewtonSolver::solve`].
///
/// ```rust
/// use jko_core::{Energy, JkoStep, Mesh, StepSolver, StepStatus};
/// use jko_newton::{NewtonParams, NewtonSolver};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Heat flow with a congestion cap: mass is conserved and 0 < ρ ≤ ρ_max holds.
/// let mesh = Mesh::grid(&[8], &[0.0], &[1.0])?;
/// let rho0 = mesh.sample(|x| if x[0] < 0.5 { 1.9 } else { 0.1 });
/// let energy = Energy { entropy: Some(0.1), max_density: Some(2.0), ..Energy::default() };
/// let frozen = energy.freeze(&mesh, &rho0)?;
/// let problem = JkoStep::new(&mesh, &rho0, 0.05, &frozen)?;
/// let solver = NewtonSolver::new(NewtonParams::default())?;
/// let out = solver.step(&problem, None)?;
/// assert_eq!(out.info.status, StepStatus::Solved);
/// assert!((mesh.mass(&out.rho) - mesh.mass(&rho0)).abs() < 1e-9);
/// assert!(out.rho.iter().all(|&r| r > 0.0 && r <= 2.0));
/// // Energy inequality of an exact minimiser: F(ρ¹) + W²/(2τ) ≤ F(ρ⁰).
/// assert!(frozen.value(&mesh, &out.rho) + out.info.kinetic / 0.1 <= frozen.value(&mesh, &rho0));
/// # Ok(())
/// # }
/// ```
pub struct NewtonSolver {
    params: NewtonParams,
    cache: Mutex<Option<Cache>>,
}

impl NewtonSolver {
    /// A solver with validated parameters.
    ///
    /// # Errors
    /// [`InputError::InvalidParameter`] from [`NewtonParams::validate`].
    ///
    /// ```rust
    /// use jko_newton::{NewtonParams, NewtonSolver};
    ///
    /// assert!(NewtonSolver::new(NewtonParams::default()).is_ok());
    /// assert!(NewtonSolver::new(NewtonParams { max_iter: 0, ..NewtonParams::default() }).is_err());
    /// ```
    pub fn new(params: NewtonParams) -> Result<Self, InputError> {
        params.validate()?;
        Ok(NewtonSolver {
            params,
            cache: Mutex::new(None),
        })
    }

    /// The parameters the solver was built with.
    ///
    /// ```rust
    /// use jko_newton::{NewtonParams, NewtonSolver};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let solver = NewtonSolver::new(NewtonParams { tol: 1e-8, ..NewtonParams::default() })?;
    /// assert_eq!(solver.params().tol, 1e-8);
    /// # Ok(())
    /// # }
    /// ```
    pub fn params(&self) -> &NewtonParams {
        &self.params
    }

    /// One step at the problem's τ, without fallback, with the backend's own error type.
    ///
    /// Unlike [`StepSolver::step`] it does not check which energy terms are present (every
    /// term of [`jko_core::StepEnergy`] is treated) and does not retry with half steps.
    /// `warm` may carry the previous step's potential φ; it is validated (length, finite
    /// values), used only when its starting point is better than the cold one, and a
    /// warm-started solve that fails is repeated from the cold start. Each of these decisions is
    /// recorded in the step's notes.
    ///
    /// # Errors
    /// [`NewtonError::NotConverged`] with the reason, the residual history and the last
    /// iterate's diagnostics; no unconverged result is ever returned.
    ///
    /// ```rust
    /// use jko_core::{Energy, JkoStep, Mesh, WarmStart};
    /// use jko_newton::{NewtonParams, NewtonSolver};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[4, 4], &[0.0, 0.0], &[1.0, 1.0])?;
    /// let rho0 = mesh.sample(|x| 1.0 + x[0] * x[1]);
    /// let energy = Energy { porous: Some(2.0), ..Energy::default() }.freeze(&mesh, &rho0)?;
    /// let problem = JkoStep::new(&mesh, &rho0, 0.01, &energy)?;
    /// let solver = NewtonSolver::new(NewtonParams::default())?;
    /// let first = solver.solve(&problem, None)?;
    /// assert!((mesh.mass(&first.rho) - mesh.mass(&rho0)).abs() < 1e-9);
    /// // Warm started from its own solution, the same step converges faster to the same ρ.
    /// let again = solver.solve(&problem, Some(&WarmStart::from(&first)))?;
    /// assert!(again.info.iterations <= first.info.iterations);
    /// assert!((&again.rho - &first.rho).iter().all(|d| d.abs() < 1e-8));
    /// # Ok(())
    /// # }
    /// ```
    pub fn solve(
        &self,
        problem: &JkoStep<'_>,
        warm: Option<&WarmStart>,
    ) -> Result<StepOutput, NewtonError> {
        let start = Instant::now();
        let (faces, mut guard) = self.system_for(problem.mesh)?;
        let cache = guard
            .as_mut()
            .ok_or_else(|| InputError::InvalidMesh("internal: reduced system missing".into()))?;
        let mut run = Run::new(problem, &faces, &self.params, &mut cache.system);
        let mut out = run.solve(warm)?;
        out.info.wall_time = start.elapsed().as_secs_f64();
        Ok(out)
    }

    /// One numeric factorisation of this step's Newton matrix S (assembled at the step's cold
    /// start; the symbolic factorisation is the one every step on this mesh reuses), timed,
    /// with the sizes of S and of its factor: the unit a step's time is compared with in the
    /// benches (a warm step costs about its number of iterations in factorisations).
    ///
    /// # Errors
    /// [`NewtonError::NotConverged`] with [`FailureReason::LinearSolver`] or
    /// [`FailureReason::Domain`] when the matrix cannot be built or factorised.
    ///
    /// ```rust
    /// use jko_core::{Energy, JkoStep, Mesh, Potential};
    /// use jko_newton::{NewtonParams, NewtonSolver};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[16, 16], &[-3.0, -3.0], &[3.0, 3.0])?;
    /// let rho0 = mesh.sample(|x| (-(x[0] * x[0] + x[1] * x[1])).exp());
    /// let energy = Energy::fokker_planck(1.0, Potential::Quadratic { center: vec![0.0; 2], stiffness: 1.0 });
    /// let frozen = energy.freeze(&mesh, &rho0)?;
    /// let problem = JkoStep::new(&mesh, &rho0, 0.1, &frozen)?;
    /// let f = NewtonSolver::new(NewtonParams::default())?.factorisation(&problem)?;
    /// // 13-point stencil: 7 stored entries per row of the lower triangle, fewer at the walls.
    /// assert!(f.matrix_nonzeros <= 7 * 256 && f.factor_nonzeros >= f.matrix_nonzeros);
    /// assert!(f.seconds > 0.0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn factorisation(&self, problem: &JkoStep<'_>) -> Result<Factorisation, NewtonError> {
        let (faces, mut guard) = self.system_for(problem.mesh)?;
        let cache = guard
            .as_mut()
            .ok_or_else(|| InputError::InvalidMesh("internal: reduced system missing".into()))?;
        let mut run = Run::new(problem, &faces, &self.params, &mut cache.system);
        run.time_factorisation()
    }

    /// The cached reduced system for this mesh (built when the mesh or the linear algebra
    /// parameters change), with the face list.
    #[allow(clippy::type_complexity)]
    fn system_for(
        &self,
        mesh: &Mesh,
    ) -> Result<
        (
            Vec<(usize, usize, f64)>,
            std::sync::MutexGuard<'_, Option<Cache>>,
        ),
        NewtonError,
    > {
        let faces: Vec<(usize, usize, f64)> = mesh
            .faces()
            .iter()
            .map(|f| (f.k, f.l, f.transmissibility()))
            .collect();
        let mut guard = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let reuse = matches!(&*guard, Some(c) if c.n == mesh.n_cells() && c.faces == faces
            && c.system.factorization() == self.params.factorization
            && c.system.ordering() == self.params.ordering);
        if !reuse {
            *guard = None;
            let system = ReducedSystem::new(mesh, self.params.factorization, self.params.ordering)
                .map_err(|e| linear_setup_failure(e.0))?;
            *guard = Some(Cache {
                n: mesh.n_cells(),
                faces: faces.clone(),
                system,
            });
        }
        Ok((faces, guard))
    }

    fn step_with_fallback(
        &self,
        problem: &JkoStep<'_>,
        warm: Option<&WarmStart>,
        depth: usize,
    ) -> Result<StepOutput, StepError> {
        let first = match self.solve(problem, warm) {
            Ok(out) => return Ok(out),
            Err(NewtonError::Input(e)) => return Err(e.into()),
            Err(e) => e,
        };
        if depth == 0 {
            return Err(first.into());
        }
        let start = Instant::now();
        let half = 0.5 * problem.tau;
        let half_warm = warm.map(|w| WarmStart {
            rho: w.rho.clone(),
            potential: w.potential.as_ref().map(|p| p * 0.5),
            backend: w.backend.clone(),
        });
        let p1 = JkoStep::new(problem.mesh, problem.rho_prev, half, problem.energy)?;
        let a = self.step_with_fallback(&p1, half_warm.as_ref(), depth - 1)?;
        let p2 = JkoStep::new(problem.mesh, &a.rho, half, problem.energy)?;
        let b = self.step_with_fallback(&p2, Some(&WarmStart::from(&a)), depth - 1)?;
        let flux = match (&a.flux, &b.flux) {
            (Some(f1), Some(f2)) => f1 + f2,
            _ => Array1::zeros(problem.mesh.faces().len()),
        };
        let kinetic = problem.mesh.kinetic_action(&b.rho, &flux);
        let mut notes = vec![format!(
            "fallback: step split into two half steps (tau/2 = {half:e}) after: {first}"
        )];
        notes.extend(a.info.notes.iter().cloned());
        notes.extend(b.info.notes.iter().cloned());
        let mut history = a.info.history.clone();
        history.extend_from_slice(&b.info.history);
        let info = StepInfo {
            solver: "newton".into(),
            status: StepStatus::Solved,
            iterations: a.info.iterations + b.info.iterations,
            primal_residual: a.info.primal_residual.max(b.info.primal_residual),
            dual_residual: a.info.dual_residual.max(b.info.dual_residual),
            objective: kinetic / (2.0 * problem.tau) + problem.energy.value(problem.mesh, &b.rho),
            kinetic,
            wall_time: start.elapsed().as_secs_f64(),
            history,
            notes,
            check: None,
        };
        Ok(StepOutput {
            rho: b.rho,
            flux: Some(flux),
            // φ scales like τ: twice the half step's φ is the warm start for a full step.
            potential: b.potential.map(|p| p * 2.0),
            info,
        })
    }
}

/// The accuracy an inexact Newton direction of the entropy ascent must reach
/// (`Problem::newton_direction`), in the units of `Errors::primal`: the mass balance the
/// linearisation leaves is at most η = min(FORCING, e) times the present one (a forcing term that
/// keeps Newton's quadratic rate, Eisenstat–Walker's choice 2 up to its constant), and need not
/// go below a tenth of the tolerance (or of the round-off floor, where that is larger).
fn inexact_target(e: &Errors, tol: f64) -> f64 {
    (e.primal.min(FORCING) * e.primal).max(0.1 * tol.max(e.floor))
}

fn linear_setup_failure(message: String) -> NewtonError {
    no_iterate_failure(
        FailureReason::LinearSolver(message),
        "the symbolic factorisation",
    )
}

/// A failure before the first iterate existed: nothing to report but the reason and the cause.
fn no_iterate_failure(reason: FailureReason, limiting: &str) -> NewtonError {
    NewtonError::NotConverged {
        reason,
        iterations: 0,
        residual: f64::INFINITY,
        history: Vec::new(),
        diagnostics: IterateDiagnostics {
            mass_residual: f64::INFINITY,
            mu: 0.0,
            min_rho: f64::NAN,
            max_rho: f64::NAN,
            mass_error: f64::NAN,
            last_step: 0.0,
            limiting: limiting.into(),
        },
    }
}

impl fmt::Debug for NewtonSolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewtonSolver")
            .field("params", &self.params)
            .finish()
    }
}

impl StepSolver for NewtonSolver {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn treats(&self, term: EnergyTerm) -> bool {
        matches!(
            term,
            EnergyTerm::Entropy
                | EnergyTerm::Porous
                | EnergyTerm::Potential
                | EnergyTerm::Interaction
                | EnergyTerm::MaxDensity
        )
    }

    fn step(
        &self,
        problem: &JkoStep<'_>,
        warm: Option<&WarmStart>,
    ) -> Result<StepOutput, StepError> {
        self.step_with_fallback(problem, warm, self.params.fallback_halving)
    }

    /// From `ReducedSystem::new` and the iteration (n cells, F faces, s = 1 + faces per
    /// cell): the face list (24 B per face, twice: cached and per step), the stencils (8 B ×
    /// n·s) and per-cell pair positions (8 B × n·s²), the column lists built once (up to 2 × 8
    /// B × n·s²/2 with Vec growth, plus a 24 B header per cell), the pattern, values, scaled
    /// values and row/column indices of S (40 B per stored nonzero, n·(1 + s₂)/2 with s₂ = 2s
    /// − 2 + 2·(s−1)(s−3)/4 cells within distance two, the 2·d² − d + … of a grid: 4, 12, 24
    /// in 1D–3D), ~40 cell vectors and ~12 face vectors of the iteration, and the Cholesky
    /// factor: the nested-dissection model [`jko_core::step::factor_nonzeros`] with 8 B per
    /// nonzero, doubled for the supernodal structure and the factorisation workspace (LU:
    /// doubled again). Checked against the measured peak of one step by
    /// `examples/memory_estimate.rs` (README).
    fn memory_estimate(&self, mesh: &Mesh, _terms: &[EnergyTerm]) -> Option<u64> {
        let n = mesh.n_cells() as f64;
        let nf = mesh.faces().len() as f64;
        let s = 1.0 + 2.0 * nf / n;
        let within_two = match mesh.dim() {
            1 => 4.0,
            2 => 12.0,
            _ => 24.0,
        };
        let nnz_s = n * (1.0 + within_two) / 2.0;
        let sides: Vec<f64> = match mesh.as_grid() {
            Some(g) => {
                let shrink = (n / g.len() as f64).powf(1.0 / g.cells.len() as f64);
                g.cells.iter().map(|&c| c as f64 * shrink).collect()
            }
            None => vec![n.powf(1.0 / mesh.dim() as f64); mesh.dim()],
        };
        let lu = if self.params.factorization == crate::Factorization::Lu {
            2.0
        } else {
            1.0
        };
        let factor = lu * 2.0 * 8.0 * jko_core::step::factor_nonzeros(&sides, 1.0);
        let bytes = 2.0 * 24.0 * nf
            + 8.0 * n * s
            + 8.0 * n * s * s
            + 16.0 * n * s * s / 2.0
            + 24.0 * n
            + 40.0 * nnz_s * lu
            + 40.0 * 8.0 * n
            + 12.0 * 8.0 * nf
            + factor;
        Some((2.0 * bytes) as u64)
    }
}

impl BackendInfo for NewtonSolver {
    const NAME: &'static str = "newton";
    const SUMMARY: &'static str = "Newton on the optimality system of the one-step scheme (reduced dual, sparse Cholesky, barrier for bounds)";
    const PROXIMAL: bool = true;
}

/// Which start a solve used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    Cold,
    Warm,
}

/// Floors of the cold start's candidates, as fractions of the mean density (`Run::regularised`);
/// the first is also the floor of ρⁿ against which the candidates are compared.
const COLD_FRACTIONS: [f64; 3] = [1e-3, 1e-1, 1.0];
/// Scalings λ of the cold start's first-order guess φ = −λ τ (f'(ρ⁰) + V).
const COLD_LAMBDAS: [f64; 6] = [1.0, 0.75, 0.5, 0.25, 0.125, 0.0];
/// Initial barrier parameter of a warm-started interior point (a congestion step, or one without
/// internal energy), as a fraction of the cold start's `mu_initial`. The previous potential is
/// central but not feasible: on crowd-2d 64² (τ = 0.2) its mass balance is ~1.1 ρ_s, the
/// crowd having moved by about one density unit. At 10⁻⁴ (μ = 10⁻⁵ ρ_s E_s) the cap's barrier
/// curvature ν/(ρ_max − ρ) ≈ μ|K|/(ρ_max − ρ)² is ~10⁻⁴ at cells 0.2 below the cap, far
/// below the entropy's β/ρ ≈ 0.014 (β = 0.01): the Newton model sends 30–130 such cells
/// 3–35 ρ_s past the cap, and the fraction to the boundary cut the first 15–19 steps to
/// α = 0.01–0.2 (traced, round 9). At 10⁻¹ (μ = 10⁻² ρ_s E_s) the barrier's curvature at those
/// cells exceeds the entropy's and the steps are long from the first. Measured per step, 3
/// steps (test profile), fraction 10⁻⁴ / 10⁻² / 3·10⁻² / 10⁻¹ / 1: crowd-2d 64² 18-30-25 /
/// 18-18-17 / 18-17-18 / 18-17-17 / 18-21-21; crowd 32² β 0.01 17-23-22 / 17-18-19 / 17-17-17 /
/// 17-17-17 / 17-18-20, β 0.1 16-19-19 / 16-16-16 / 16-15-15 / 16-15-15 / 16-16-19, β 0.5
/// 14-18-15 / 14-13-12 / 14-13-12 / 14-13-13 / 14-15-15; crowd double well 1D 9-7-6 / 9-7-7 /
/// 9-7-7 / 9-8-8 / 9-9-9; robust.toml's potential-only 1D 64-96-94 / 64-79-78 / 64-76-68 /
/// 64-59-58 and no-energy 1D 13-13-58 / 13-14-62 / 13-13-24 / 13-15-43. (With 3·10⁻² the
/// tight conic's polish failed on step 2 of crowd-2d 32² — "the interior-point solution is
/// returned", max|Δρ| 1.2e-6 against newton, whose warm and cold solves of that step agree to
/// 1.6e-10 — which `tests/examples.rs` counts as a disagreement.)
const WARM_MU_FRACTION: f64 = 1e-1;
/// Armijo constant of the line search on the dual function.
const ARMIJO: f64 = 1e-4;
/// The largest forcing term of an inexact Newton direction (`inexact_target`).
const FORCING: f64 = 1e-2;
/// The error reduction of the last full step above which the entropy ascent counts as
/// converging quadratically and tries an inexact direction on the previous factorisation
/// (`Problem::newton_direction`). Measured (`jko run`, OU 2D 64², τ = 0.1, tol 1e-8, 6 steps;
/// round 13): with no such condition, 7 attempts from the early iterations failed (6 iterations
/// of conjugate gradients, then the factorisation after all) and one iteration was added; with
/// 30, one failed, 9 of 30 directions were inexact, the iterations unchanged; robust.toml's
/// newton part: 1408 iterations in total before and after (two runs differ by one).
const QUADRATIC_GAIN: f64 = 30.0;
/// Smallest line-search step before the search is declared failed.
const MIN_STEP: f64 = 1e-12;
/// Largest factor by which a density of the entropy dual ascent may exceed its Newton prediction
/// in one step (see `Run::tail_overshoot`).
const OVERSHOOT: f64 = 10.0;
/// Iterations of the dual ascent on a porous step before the interior point takes over (the
/// ascent converges in 4–23 on the robustness matrix's porous cases, or stalls).
const POROUS_DUAL_BUDGET: usize = 30;
/// Barrier parameter, relative to ρ_s E_s, at which the interior point takes over a porous step
/// from the dual ascent's last potential (see `Run::handover`).
const HANDOVER_MU: f64 = 1e-10;
/// Barrier parameter, relative to ρ_s E_s, at which the interior point starts a porous step from
/// the step's own potential (warm or cold), without the dual ascent, where the free boundary is
/// degenerate (s* ≈ 0 on the front cells) in a way the semismooth ascent does not resolve:
/// - m > 2 on a mesh of dimension ≥ 2: the front is a curve of cells with ρ ~ s^{1/(m−1)}
///   (infinite slope at s = 0); on porous m3 2D 64² the ascent stalled at mass balance
///   10⁻³–10⁻² and spent its whole budget of 30 before the handover (20 / 41 / 39 iterations
///   per step); the interior point from the start takes 18 / 13 / 16. In 1D the front is two
///   cells and the ascent converges (m3 1D 400: ascent 17 / 17 / 7, interior point 20 / 22 /
///   13; m3 well 1D 7 / 7 / 6 against 7 / 10 / 8). Since round 15's landing corrector
///   (`ipm::landing`) the interior point takes m3 1D 400 in 11 / 11 / 8, so 1D m > 2 without
///   a potential starts with it too; with the well it takes 7 / 8 / 7 and the ascent is kept.
/// - m ≤ 2 with a potential: a confining potential stops the front where s* → 0 (the
///   stationary profile (C − V)/2 vanishes there), and the ascent crawled (m2 well 2D 64²
///   25 / 34 / 18, m2 well 1D 400 12 / 32 / 7; interior point 9 / 10 / 8 and 10 / 8 / 8).
///   Without a potential the front moves outwards every step, the ascent's kink rule resolves
///   it, and it is much faster (m2 2D 64²: 6 / 4 / 4 against 32 / 26 / 25; m2 1D 8 / 6 / 7
///   against 29 / 42 / 41).
///
/// Measured from the start at μ = 10⁻⁴ / 10⁻⁵ / 10⁻⁶ / 10⁻⁷ / 10⁻⁸ (test profile), porous m3 2D
/// 64² 18-13-16 / 31-19-18 / 19-18-17 / 19-20-18 / 21-23-21, m3 well 2D 64² 11-14-9 / 11-10-14 /
/// 13-13-10 / 16-18-22 / 20-50-29 (ascent first: 13-18-13), m2 well 2D 64² 9-10-8 / 10-10-7 /
/// 11-13-8 / 12-13-11 / 21-29-26, m2 well 1D 10-8-8 / 13-24-10 / 14-15-12 / 14-14-13 / 29-27-41.
const INTERIOR_FIRST_MU: f64 = 1e-4;
/// Largest mass balance (density units, relative to ρ_s) of a stalled porous ascent whose
/// potential is handed over (`Run::handover`); the ascents that stall near the solution end at
/// 10⁻³–10⁻⁵.
const HANDOVER_MAX_IMBALANCE: f64 = 1e-2;

/// One solve: the problem in the iteration's form and the reusable linear system.
struct Run<'a> {
    p: Problem<'a>,
    params: &'a NewtonParams,
    system: &'a mut ReducedSystem,
    /// Whether a bound needs the interior point: no entropy (ρ ≥ 0 can be active), or a cap.
    barrier: bool,
    /// Iterations the dual ascent may spend before the interior point takes over.
    dual_budget: usize,
    /// Smallest barrier parameter when no finish is possible: 0.1 tol² ρ_s E_s, whose
    /// perturbation of ρ is below tol ρ_s even at a degenerate free-boundary cell (√μ).
    mu_min: f64,
    linear_time: f64,
    /// The system's counts of assembled Newton matrices and of those solved on an earlier
    /// factorisation when the step began.
    assembled_before: (usize, usize),
    notes: Vec<String>,
    /// The point from which the interior point takes over a porous step whose dual ascent did
    /// not converge (`Run::handover`); `None` before, or when no such point exists.
    handover: Option<Point>,
}

/// Result of one iteration run from a start point.
struct Converged {
    rho: Vec<f64>,
    flux: Vec<f64>,
    phi: Vec<f64>,
    mu: f64,
    errors: Errors,
    iterations: usize,
    history: Vec<f64>,
}

impl<'a> Run<'a> {
    fn new(
        problem: &'a JkoStep<'a>,
        faces: &'a [(usize, usize, f64)],
        params: &'a NewtonParams,
        system: &'a mut ReducedSystem,
    ) -> Self {
        let mesh = problem.mesh;
        let n = mesh.n_cells();
        let e = problem.energy;
        let potential = e
            .potential
            .as_ref()
            .map_or_else(|| vec![0.0; n], |v| v.to_vec());
        let rho_prev = problem.rho_prev.to_vec();
        let rho_scale = rho_prev.iter().cloned().fold(0.0, f64::max);
        let (vmin, vmax) = potential
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let mut e_scale = (vmax - vmin).max(0.0);
        if let Some(b) = e.entropy {
            e_scale += b;
        }
        if let Some(m) = e.porous {
            e_scale += m * rho_scale.powf(m - 1.0) / (m - 1.0);
        }
        if !(e_scale > 0.0 && e_scale.is_finite()) {
            // No energy: the work of moving mass by one cell in time τ.
            e_scale = mesh.min_distance().powi(2) / problem.tau;
        }
        // The interior point drives both bounds whenever one of them matters; with entropy
        // alone the lower bound's barrier stays at its floor.
        // A porous step without entropy or cap is tried first by the (semismooth) dual ascent:
        // its exact cell law ρ = (f')⁻¹(max(s, 0)) makes ψ concave and C¹, and the ascent
        // takes 4–20 iterations where the interior point takes 60–240 (crate docs).
        let porous_dual = e.entropy.is_none() && e.porous.is_some() && e.max_density.is_none();
        let barrier = (e.entropy.is_none() || e.max_density.is_some()) && !porous_dual;
        let lower_active = barrier;
        // Porous m > 2 on a 2D or 3D mesh or without a potential, and m ≤ 2 with a potential:
        // the interior point from the start (see `INTERIOR_FIRST_MU`), the ascent gets no
        // iterations.
        let interior_first = porous_dual
            && e.porous.is_some_and(|m| {
                (m > 2.0 && (mesh.dim() >= 2 || e.potential.is_none()))
                    || (m <= 2.0 && e.potential.is_some())
            });
        let dual_budget = if interior_first {
            0
        } else if porous_dual {
            POROUS_DUAL_BUDGET.min(params.max_iter)
        } else {
            params.max_iter
        };
        let mu_min = 0.1 * params.tol * params.tol * rho_scale * e_scale;
        let assembled_before = (system.assembled(), system.preconditioned());
        Run {
            p: Problem {
                mesh,
                faces,
                vols: mesh.volumes(),
                potential,
                rho_prev,
                tau: problem.tau,
                law: CellLaw {
                    beta: e.entropy,
                    m: e.porous,
                    rho_max: e.max_density,
                },
                rho_scale,
                e_scale,
                mass: problem.mass(),
                mu_floor: mu_min,
                lower_active,
            },
            params,
            system,
            barrier,
            dual_budget,
            mu_min,
            linear_time: 0.0,
            assembled_before,
            notes: Vec::new(),
            handover: None,
        }
    }

    fn scale(&self) -> f64 {
        self.p.rho_scale * self.p.e_scale
    }

    /// Initial barrier parameter of a start (0 when no bound needs one).
    fn mu0(&self, start: Start) -> f64 {
        if !self.barrier {
            return 0.0;
        }
        let relative = match start {
            Start::Cold => self.params.mu_initial,
            Start::Warm => self.params.mu_initial * WARM_MU_FRACTION,
        };
        (relative * self.scale()).max(self.mu_min)
    }

    /// The point at φ, shifting φ by a constant when the cell law has no solution somewhere
    /// (without internal energy and without a cap, g < 0, so s_K must be negative).
    fn admissible(&self, mut phi: Vec<f64>, mu: f64) -> Option<Point> {
        let p = &self.p;
        if let Some(pt) = p.point(phi.clone(), mu, None) {
            return Some(pt);
        }
        let s_max = p
            .chemical_potential(&phi)
            .into_iter()
            .fold(f64::NEG_INFINITY, f64::max);
        if s_max.is_finite() {
            let shift = p.tau * (s_max.max(0.0) + p.e_scale);
            phi.iter_mut().for_each(|v| *v += shift);
            return p.point(phi, mu, None);
        }
        None
    }

    /// The potentials the cold start tries: the first-order guess φ = −λ τ (f'(ρ⁰) + V), exact
    /// as τ → 0, with floors on ρⁿ (fractions of the mean density, and of the cap) and scaled by
    /// λ ∈ [0, 1]. Where the step moves mass far (steep V or steep tails of ρⁿ: τ|∇(f'(ρ) + V)|²
    /// ≫ β) the full guess has large jumps whose quadratic term Q makes ρ(φ) = exp(s/β − 1)
    /// explode (to 5e36 on the quartic-1d example); scaling by λ interpolates between ρⁿ and the
    /// Gibbs state.
    fn cold_candidates(&self, fractions: Vec<f64>) -> impl Iterator<Item = Vec<f64>> + '_ {
        let p = &self.p;
        fractions.into_iter().flat_map(move |fraction| {
            let f1: Vec<f64> = self
                .regularised(fraction)
                .into_iter()
                .map(|r| p.law.f1(r))
                .collect();
            COLD_LAMBDAS.into_iter().map(move |lambda| {
                f1.iter()
                    .zip(&p.potential)
                    .map(|(f, v)| -lambda * p.tau * (f + v))
                    .collect()
            })
        })
    }

    /// Floors of the cold start's candidates as fractions of the mean density, smallest first
    /// (the smallest also floors ρⁿ in the cold start's comparison). For the entropy dual ascent
    /// the first is tol ρ_s, the level below which a density no longer enters the stopping
    /// test: far tails start there, and Newton brings them down in log ρ where it needs to. From
    /// the next floor, 10⁻³ of the mean, tails many orders above ρⁿ came down by one e-fold per
    /// iteration (the exponential law overshoots its linear model from above): OU 2D 64² and
    /// 128², τ = 0.05, cold steps took 16 iterations, 13 of them that linear tail phase; 7 and
    /// 8 from the tol ρ_s floor. (The interior point keeps its floors: its iteration counts
    /// were not measured with it.)
    fn cold_fractions(&self) -> Vec<f64> {
        let p = &self.p;
        let mut fractions = COLD_FRACTIONS.to_vec();
        let tail = self.params.tol * p.rho_scale / (p.mass / p.mesh.domain_volume());
        if p.law.beta.is_some() && !self.barrier && tail < fractions[0] {
            fractions.insert(0, tail);
        }
        fractions
    }

    /// ρⁿ with a floor of `fraction` × the mean density (and, with a cap, kept `fraction` × the
    /// cap below it).
    fn regularised(&self, fraction: f64) -> Vec<f64> {
        let p = &self.p;
        let mean = p.mass / p.mesh.domain_volume();
        let mut floor = fraction * mean;
        if let Some(c) = p.law.rho_max {
            floor = floor.min(fraction * c);
        }
        p.rho_prev
            .iter()
            .map(|&r| {
                let r = r.max(floor);
                match p.law.rho_max {
                    Some(c) => r.min(c - floor),
                    None => r,
                }
            })
            .collect()
    }

    /// Cold start: of the admissible [`Run::cold_candidates`] with the floors of
    /// [`Run::cold_fractions`], the one whose densities are closest to ρⁿ (with the smallest
    /// floor) in max_K |ln(ρ_K(φ)/ρ⁰_K)| (ties: the larger dual value).
    fn cold_start(&self) -> Option<Point> {
        self.closest_candidate(self.cold_fractions())
    }

    /// The admissible candidate with these floors closest to ρⁿ floored at the first.
    fn closest_candidate(&self, fractions: Vec<f64>) -> Option<Point> {
        let mu = self.mu0(Start::Cold);
        let rho0 = self.regularised(fractions[0]);
        let mut best: Option<(f64, Point)> = None;
        for phi in self.cold_candidates(fractions) {
            if let Some((bs, _)) = &best
                && self.farther_than(&phi, mu, &rho0, *bs)
            {
                continue;
            }
            if let Some(pt) = self.admissible(phi, mu) {
                let spread = log_spread(&pt, &rho0);
                let better = best
                    .as_ref()
                    .is_none_or(|(bs, b)| spread < *bs || (spread == *bs && pt.value > b.value));
                if better {
                    best = Some((spread, pt));
                }
            }
        }
        best.map(|(_, pt)| pt)
    }

    /// Whether the densities of the candidate φ are certainly farther from ρ⁰ than `bound`
    /// (max_K |ln(ρ_K/ρ⁰_K)| > bound), found cell by cell with the cell law and guess of
    /// `Problem::point`, stopping at the first such cell. Only for the entropy ascent (β > 0,
    /// no cap, no barrier): its law β(ln ρ + 1) − μ_F/ρ = s has a density for every finite s,
    /// so the point at φ exists exactly when these densities do and `Run::admissible` does not
    /// shift φ; elsewhere, and at a cell without a density, the answer is "no" (the candidate
    /// is built). The cold start's 18–24 candidates, each a cell-law solve in every cell and
    /// an evaluation of ψ, cost ~1.8 numeric factorisations of an OU 2D step (round 8); most
    /// are farther than the best one already at their first cells (a corner of the domain).
    fn farther_than(&self, phi: &[f64], mu: f64, rho0: &[f64], bound: f64) -> bool {
        let p = &self.p;
        if self.barrier || p.law.beta.is_none() || p.law.rho_max.is_some() {
            return false;
        }
        let mu_l = p.mu_lower(mu);
        let s = p.chemical_potential(phi);
        for ((&s, &r0), &floored) in s.iter().zip(&p.rho_prev).zip(rho0) {
            match p.law.density(s, mu_l, mu, r0) {
                None => return false,
                Some(c) if cell_spread(c.rho, floored) > bound => return true,
                Some(_) => {}
            }
        }
        false
    }

    /// Whether a candidate of the warm-start decision (floors `COLD_FRACTIONS`) could be closer
    /// to ρⁿ than a warm start whose densities are `warm_spread` e-folds from it
    /// (max_K |ln(ρ_K/ρⁿ_K)|), i.e. whether the candidates must be built to decide. Each
    /// candidate's densities are computed cell by cell (the same cell law, guess and
    /// chemical potential as `Problem::point`) and dropped at the first cell at least
    /// `warm_spread` from ρⁿ: the cold start is then no closer, whichever candidate it keeps.
    /// A warm start is the previous step's potential, whose densities are ρⁿ itself up to the
    /// change of the frozen energy (measured 10⁻¹⁰–10⁻³ e-folds on Fokker–Planck steps, against the
    /// cold start's 4–17), so every candidate is usually dropped at its first cells; building the
    /// cold start cost ~1.3 numeric factorisations of a 64² warm step (18 candidates, each a
    /// cell-law solve in every cell). A candidate with no density in a cell it reaches, where
    /// the cold start would shift it (`Run::admissible`), makes the answer "yes".
    fn cold_start_could_win(&self, warm_spread: f64) -> bool {
        let p = &self.p;
        let mu = self.mu0(Start::Cold);
        let mu_l = p.mu_lower(mu);
        self.cold_candidates(COLD_FRACTIONS.to_vec()).any(|phi| {
            let s = p.chemical_potential(&phi);
            for (&s, &r0) in s.iter().zip(&p.rho_prev) {
                match p.law.density(s, mu_l, mu, r0) {
                    None => return true,
                    Some(c) if cell_spread(c.rho, r0) >= warm_spread => return false,
                    Some(_) => {}
                }
            }
            true
        })
    }

    fn solve(&mut self, warm: Option<&WarmStart>) -> Result<StepOutput, NewtonError> {
        let n = self.p.n();
        // Built only when a warm start is missing, invalid or possibly worse.
        let mut cold: Option<Option<Point>> = None;
        let mut warm_start = None;
        if let Some(w) = warm.and_then(|w| w.potential.as_ref()) {
            if w.len() != n {
                self.notes.push(format!(
                    "warm start ignored: its potential has {} values for {n} cells; cold start",
                    w.len()
                ));
            } else if w.iter().any(|v| !v.is_finite()) {
                self.notes
                    .push("warm start ignored: its potential is not finite; cold start".into());
            } else {
                match self.admissible(w.to_vec(), self.mu0(Start::Warm)) {
                    None => self.notes.push(
                        "warm start rejected: no density solves the cell law at its potential; \
                         cold start"
                            .into(),
                    ),
                    Some(pt) => {
                        let rho0 = &self.p.rho_prev;
                        let sw = log_spread(&pt, rho0);
                        // The decision compares with the candidates of the floors 10⁻³, 10⁻¹, 1
                        // of the mean (not the tol ρ_s floor of the entropy ascent's cold start,
                        // whose first-order guess stays so close to ρⁿ that it beat even the
                        // step's own solution as a warm start).
                        let sc = if self.cold_start_could_win(sw) {
                            let c = self.closest_candidate(COLD_FRACTIONS.to_vec());
                            let sc = c.as_ref().map_or(f64::INFINITY, |c| log_spread(c, rho0));
                            if self.cold_fractions() == COLD_FRACTIONS {
                                cold = Some(c);
                            }
                            sc
                        } else {
                            f64::INFINITY
                        };
                        if sw <= sc {
                            warm_start = Some(pt);
                        } else {
                            self.notes.push(format!(
                                "warm start rejected: its densities are {sw:.1e} e-folds from \
                                 the previous step's, the cold start's {sc:.1e}; cold start"
                            ));
                        }
                    }
                }
            }
        }
        let start = match warm_start {
            Some(w) => Some((w, Start::Warm)),
            None => cold
                .unwrap_or_else(|| self.cold_start())
                .map(|c| (c, Start::Cold)),
        };
        let Some((x0, kind)) = start else {
            return Err(self.domain_failure());
        };
        let result = match self.iterate(x0) {
            Err(first) if kind == Start::Warm => match self.cold_start() {
                Some(c) => {
                    let again = self.iterate(c);
                    if again.is_ok() {
                        self.notes.push(format!(
                            "warm-started solve failed ({first}); repeated from the cold start"
                        ));
                    }
                    // The failed warm-started iterations are charged to the step.
                    let spent = spent_iterations(&first);
                    again.map(|mut c| {
                        c.iterations += spent;
                        (c, Start::Cold)
                    })
                }
                None => Err(first),
            },
            other => other.map(|c| (c, kind)),
        };
        let (c, kind) = result?;
        if kind == Start::Warm {
            self.notes
                .insert(0, "warm start from the previous potential".into());
        }
        Ok(self.output(c))
    }

    /// Assemble the Newton matrix at the cold start and time one numeric factorisation.
    fn time_factorisation(&mut self) -> Result<Factorisation, NewtonError> {
        let pt = self.cold_start().ok_or_else(|| self.domain_failure())?;
        let linear = |e: crate::system::LinearFailure| {
            linear_setup_failure(format!("factorisation: {}", e.0))
        };
        if self.barrier {
            let x = ipm::State::from_point(&self.p, &pt);
            let res = self.p.pd_residuals(&x);
            ipm::Linearisation::new(&self.p, &x, &res, self.system).map_err(linear)?;
        } else {
            self.p
                .newton_direction(&pt, self.system, None)
                .map_err(linear)?;
        }
        let (t0, c0) = (Instant::now(), thread_cpu_seconds());
        self.system.factorize(0.0).map_err(linear)?;
        Ok(Factorisation {
            seconds: t0.elapsed().as_secs_f64(),
            cpu_seconds: thread_cpu_seconds() - c0,
            matrix_nonzeros: self.system.nnz(),
            factor_nonzeros: self.system.factor_nnz(),
        })
    }

    /// The iteration from a start point: the primal–dual interior point when a bound matters,
    /// else Newton ascent on the dual function.
    fn iterate(&mut self, pt: Point) -> Result<Converged, NewtonError> {
        if self.barrier {
            return self.iterate_ipm(pt, self.params.max_iter);
        }
        match self.iterate_dual(pt) {
            Ok(c) => Ok(c),
            Err(first) => {
                // The dual function of a stiff entropy step (far from its Gibbs state, small
                // β) can defeat the damped Newton ascent from every start: the primal–dual
                // interior point, which updates ρ linearly, takes over from its own cold start.
                // The same for a porous step whose semismooth ascent did not converge within
                // its budget (degenerate free-boundary cells); it starts from the ascent's last
                // potential (`Run::handover`).
                self.barrier = true;
                self.p.lower_active = true;
                let spent = spent_iterations(&first);
                // `max_iter` bounds the step's iterations, the failed ascent's included.
                let budget = self.params.max_iter.saturating_sub(spent);
                if budget == 0 {
                    return Err(first);
                }
                // The handed-over start gets half the budget: where it does not help (a
                // porous step at τ = 10 whose ascent stalled far from the solution: mass
                // balance stuck at 67 for 270 iterations, tests/integration/limits.rs) the cold
                // start, which solved every such step before the handover existed, still runs.
                let mut spent_ipm = 0;
                let mut handed_over = None;
                if let Some(h) = self.handover.take() {
                    match self.iterate_ipm(h, budget / 2) {
                        Ok(c) => handed_over = Some(c),
                        Err(e) => {
                            spent_ipm = spent_iterations(&e);
                            self.notes.push(format!(
                                "the interior point from the ascent's last potential failed \
                                 ({e}); restarted from its cold start"
                            ));
                        }
                    }
                }
                let (again, from) = match handed_over {
                    Some(c) if self.dual_budget == 0 => (Ok(c), "from the start's potential"),
                    Some(c) => (Ok(c), "from the ascent's last potential"),
                    // saturating: an active-set finish may charge a few iterations past the
                    // handed-over run's half budget.
                    None => (
                        self.cold_start()
                            .ok_or_else(|| self.domain_failure())
                            .and_then(|x| self.iterate_ipm(x, budget.saturating_sub(spent_ipm))),
                        "from its cold start",
                    ),
                };
                let spent = spent + spent_ipm;
                match again {
                    Ok(mut c) => {
                        self.notes.push(if self.dual_budget == 0 {
                            format!(
                                "porous step with a degenerate free boundary: solved by the \
                                 primal-dual interior point {from}, without the dual ascent"
                            )
                        } else {
                            format!(
                                "dual Newton failed ({first}); solved by the primal-dual \
                                 interior point {from}"
                            )
                        });
                        c.iterations += spent;
                        Ok(c)
                    }
                    Err(mut e) => {
                        if let NewtonError::NotConverged { iterations, .. } = &mut e {
                            *iterations += spent;
                        }
                        Err(e)
                    }
                }
            }
        }
    }

    /// The primal–dual interior-point method from a (central) point.
    fn iterate_ipm(&mut self, pt: Point, max_iter: usize) -> Result<Converged, NewtonError> {
        let x = ipm::State::from_point(&self.p, &pt);
        let result = ipm::run(
            &self.p,
            self.system,
            x,
            pt.mu,
            self.mu_min,
            self.params.tol,
            max_iter,
        );
        match result {
            Ok(r) => {
                self.linear_time += r.linear_time;
                Ok(Converged {
                    rho: r.x.rho,
                    flux: r.x.g,
                    phi: r.x.phi,
                    mu: r.mu,
                    errors: r.errors,
                    iterations: r.iterations,
                    history: r.history,
                })
            }
            Err((stop, r)) => {
                self.linear_time += r.linear_time;
                Err(self.fail_at(
                    stop.reason,
                    r.iterations,
                    r.history,
                    &stop.x.rho,
                    stop.mu,
                    &stop.errors,
                    stop.last_step,
                ))
            }
        }
    }

    /// Damped Newton ascent on the concave dual function ψ (entropy without a cap: ρ(φ) is the
    /// exact cell law, whose lower barrier sits at its floor).
    fn iterate_dual(&mut self, mut pt: Point) -> Result<Converged, NewtonError> {
        let tol = self.params.tol;
        let mut history = Vec::new();
        let mut iterations = 0;
        let mut last_step = 1.0;
        let mut handed_over = false;
        // Whether the system holds the factorisation of this ascent's previous Newton matrix.
        let mut factorised = false;
        loop {
            let e = self.p.errors(&pt, tol);
            history.push(e.total());
            if e.excess <= 1.0 {
                return Ok(Converged {
                    rho: pt.cells.iter().map(|c| c.rho).collect(),
                    flux: self.p.flux(&pt),
                    phi: pt.phi,
                    mu: pt.mu,
                    errors: e,
                    iterations,
                    history,
                });
            }
            if iterations >= self.dual_budget {
                self.handover = self.handover(&pt);
                return Err(self.fail(
                    FailureReason::MaxIterations,
                    iterations,
                    history,
                    &pt,
                    &e,
                    last_step,
                ));
            }
            iterations += 1;
            // An inexact direction once the ascent converges quadratically: the last full step
            // cut the error by QUADRATIC_GAIN at least (`inexact_target`).
            let quadratic = history.len() >= 2
                && history[history.len() - 2] >= QUADRATIC_GAIN * e.total()
                && last_step == 1.0;
            let inexact = (factorised && quadratic && self.p.law.beta.is_some())
                .then(|| inexact_target(&e, tol));
            let (d, time) = match self.p.newton_direction(&pt, self.system, inexact) {
                Ok(v) => v,
                Err(err) => {
                    return Err(self.fail(
                        FailureReason::LinearSolver(err.0),
                        iterations,
                        history,
                        &pt,
                        &e,
                        last_step,
                    ));
                }
            };
            self.linear_time += time;
            factorised = true;
            // With entropy, the Newton model's density change, for the line search's overshoot
            // test and the lag count.
            let step = if self.p.law.beta.is_some() {
                self.linear_density_change(&pt, &d)
            } else {
                Vec::new()
            };
            match self.line_search(&pt, &d, &step) {
                Some((q, alpha)) => {
                    let lagging = if alpha == 1.0 {
                        self.cells_lagging_from_above(&pt, &step, &q)
                    } else {
                        0
                    };
                    pt = q;
                    last_step = alpha;
                    if lagging > 0 && !handed_over {
                        // Once: if the primal-dual iteration fails, the ascent goes on.
                        handed_over = true;
                        // The primal-dual iterations factorise matrices of their own.
                        factorised = false;
                        match self.primal_dual_from(&pt, iterations, lagging) {
                            Ok(mut c) => {
                                history.append(&mut c.history);
                                c.history = history;
                                return Ok(c);
                            }
                            Err((spent, tried)) => {
                                // The failed iterates' residuals, without their first (pt's own,
                                // recorded next as the ascent goes on from it).
                                history.extend(tried.into_iter().skip(1));
                                iterations += spent;
                            }
                        }
                    }
                    if self.p.law.beta.is_none() {
                        let mut phi = pt.phi.clone();
                        let rho: Vec<f64> = pt.cells.iter().map(|c| c.rho).collect();
                        ipm::repair_vacuum(&self.p, &rho, &mut phi, tol);
                        if phi != pt.phi
                            && let Some(q) = self.p.point(phi, pt.mu, Some(&pt.cells))
                        {
                            pt = q;
                        }
                    }
                }
                None => {
                    self.handover = self.handover(&pt);
                    return Err(self.fail(
                        FailureReason::LineSearch,
                        iterations,
                        history,
                        &pt,
                        &e,
                        MIN_STEP,
                    ));
                }
            }
        }
    }

    /// The entropy ascent's iterate pt handed to the primal–dual Newton iteration (the interior
    /// point, whose lower barrier stays at the floor μ_F: with entropy ρ ≥ 0 cannot be active)
    /// because `lagging` cells are more than an e-fold above their Newton targets
    /// (`Run::cells_lagging_from_above`). The primal–dual iteration keeps ρ as an unknown and
    /// linearises the cell law β(ln ρ + 1) = s at the current density: a cell far above its
    /// target goes to the model's density in one step (or, past ρ = 0, a fraction to the
    /// boundary), where the ascent, which re-solves the law for ρ(φ + δφ), moves it by one
    /// e-fold. Its stopping test is the same scaled KKT error with the stationarity residuals
    /// added. The barrier-free active-set finish is tried first (`Run::finish_from`), the
    /// interior point from pt when it fails. `Ok` with every iteration counted; when both
    /// failed, `Err` with the iterations they spent and the interior point's residual history
    /// (the ascent then goes on from pt, those charged).
    fn primal_dual_from(
        &mut self,
        pt: &Point,
        iterations: usize,
        lagging: usize,
    ) -> Result<Converged, (usize, Vec<f64>)> {
        // Half of what is left, so that the ascent still has room if it fails (as for the
        // porous handover in `Run::iterate`).
        let budget = self.params.max_iter.saturating_sub(iterations) / 2;
        if budget == 0 {
            return Err((0, Vec::new()));
        }
        self.barrier = true;
        let (finished, spent_finish, tried) = self.finish_from(pt, budget);
        if let Some(mut c) = finished {
            self.notes.push(format!(
                "dual ascent handed to the primal-dual Newton iteration after {iterations} \
                 iterations: {lagging} cells more than an e-fold above their Newton targets; \
                 its active-set finish converged in {spent_finish}"
            ));
            c.iterations += iterations;
            return Ok(c);
        }
        self.notes.push(format!(
            "the active-set finish from the dual ascent's iterate {iterations} failed after \
             {spent_finish} iterations; the interior point went on from the same iterate"
        ));
        let budget = budget.saturating_sub(spent_finish);
        if budget == 0 {
            self.barrier = false;
            return Err((spent_finish, tried));
        }
        match self.iterate_ipm(pt.clone(), budget) {
            Ok(mut c) => {
                self.notes.push(format!(
                    "dual ascent handed to the primal-dual Newton iteration after {iterations} \
                     iterations: {lagging} cells more than an e-fold above their Newton targets"
                ));
                c.iterations += iterations + spent_finish;
                Ok(c)
            }
            Err(e) => {
                self.barrier = false;
                self.notes.push(format!(
                    "the primal-dual Newton iteration from the dual ascent's iterate {iterations} \
                     failed ({e}); the ascent went on"
                ));
                match e {
                    NewtonError::NotConverged {
                        iterations,
                        history,
                        ..
                    } => Err((iterations + spent_finish, history)),
                    NewtonError::Input(_) => Err((spent_finish, tried)),
                }
            }
        }
    }

    /// The active-set finish (`ipm::finish`: Newton's method on (ρ, φ) without a barrier;
    /// with entropy and no cap no cell is held) from the entropy ascent's handed-over iterate
    /// pt, within `budget` iterations. Tried before the interior point because at the handover
    /// the interior point's barrier is already at its floor μ_F, so the two differ only in
    /// their step rule, and the interior point's is what failed in 2D: its one step length
    /// (fraction to the boundary) was cut to 0.15–0.6 by far-tail cells (ρ ~ 10⁻¹⁷, weightless
    /// in the stopping test) whose linear step would empty them, on the 2D double well 64²
    /// (β = 0.1) for 11 iterations, until its KKT excess fell below the finish's deferral
    /// threshold; the finish shrinks such a cell ×100 and takes the full step everywhere
    /// else. Its convergence test is the interior point's own (scaled KKT error, the same
    /// tol). Returns the converged step (history: pt's KKT error, then the finish's), the
    /// iterations spent (each factorises once), and pt's KKT error as a history.
    fn finish_from(&mut self, pt: &Point, budget: usize) -> (Option<Converged>, usize, Vec<f64>) {
        let tol = self.params.tol;
        let x = ipm::State::from_point(&self.p, pt);
        let start = self.p.pd_errors(&x, &self.p.pd_residuals(&x), tol).total();
        let (mut time, mut spent) = (0.0, 0);
        let done = ipm::finish(&self.p, self.system, &x, tol, budget, &mut time, &mut spent);
        self.linear_time += time;
        let converged = done.map(|(y, errors)| Converged {
            rho: y.rho,
            flux: y.g,
            phi: y.phi,
            mu: 0.0,
            history: vec![start, errors.total()],
            errors,
            iterations: spent,
        });
        (converged, spent, vec![start])
    }

    /// Backtracking (Armijo) on the concave dual function along φ + α d. A change below ψ's
    /// round-off at the current point (10 ε × the sum of the absolute values of its terms) is
    /// no change; steps that leave the dual domain are shortened. Where the step's whole
    /// predicted gain α ∇ψ·d is below that round-off, ψ cannot judge it and the step is taken
    /// if it reduces the mass balance (Armijo on ‖r_p‖).
    fn line_search(&self, pt: &Point, d: &[f64], step: &[f64]) -> Option<(Point, f64)> {
        let slope: f64 = d.iter().zip(&pt.r_p).map(|(a, b)| a * b).sum::<f64>() / self.p.tau;
        let roundoff = 10.0 * f64::EPSILON * pt.scale;
        let r0 = self.mass_balance(pt);
        let tail_overshoot = self.tail_overshoot(pt, step);
        let mut alpha = 1.0;
        while alpha >= MIN_STEP {
            let phi: Vec<f64> = pt.phi.iter().zip(d).map(|(a, b)| a + alpha * b).collect();
            if let Some(q) = self.p.point(phi, pt.mu, Some(&pt.cells))
                && !tail_overshoot(alpha, &q)
            {
                let reduces = || self.mass_balance(&q) <= (1.0 - ARMIJO * alpha) * r0;
                if q.value >= pt.value + ARMIJO * alpha * slope.max(0.0) - roundoff {
                    // A step whose change of ψ is within its round-off must reduce the mass
                    // balance instead (without entropy, a cell at the kink ρ = 0 of the cell
                    // law can otherwise make full steps cycle between ρ > 0 and ρ ≈ 0 at a
                    // constant ψ). (With entropy the law is smooth, and at the round-off floor
                    // of r_p no step can meet this test: `jko run` of OU 1D, 16384 cells,
                    // τ = 0.5 stopped at the iteration limit in step 1 with steps of 3e-8.)
                    let flat = self.p.law.beta.is_none() && q.value - pt.value <= roundoff;
                    if !flat || reduces() {
                        return Some((q, alpha));
                    }
                } else if alpha * slope <= roundoff && reduces() {
                    // Near the solution the gain ½ α ∇ψ·d of a Newton step is below ψ's
                    // round-off while the error of ψ's sum can exceed our 10 ε estimate of it:
                    // OU 2D 64², τ = 0.1 (the `ou-2d` example), warm step 2 at mass balance
                    // 8e-10 (scaled) had a predicted gain of 4e-17 and a computed change of
                    // −1.5e-14 against a round-off of 5.8e-15, so the full step was refused
                    // four times (α = 0.25, 0.5, 0.25, 0.5, the residual falling ×0.5–0.75 each)
                    // and the step took 10 iterations instead of 6. ψ cannot tell such steps
                    // apart; the mass balance, which Newton's step reduces quadratically, can.
                    return Some((q, alpha));
                }
            }
            alpha *= 0.5;
        }
        None
    }

    /// With entropy: whether the point q = φ + α d overshoots in a cell (`step` the Newton
    /// model's density change along d, `Run::linear_density_change`), i.e. some density is
    /// above OVERSHOOT × the larger of the cell's density and the density the Newton model
    /// predicts for it, ρ_K + α (dρ/ds) δs_K, and above the tolerance tol ρ_s (below it a density
    /// does not enter the stopping test). The exponential cell law overshoots its linear model
    /// by e^{x}/(1 + x) for δs = x β; in a far-tail cell that is invisible to ψ's Armijo test
    /// (the cell's share of ψ is ~10⁻⁶) but the cell then needs one Newton step per e-fold to come
    /// back down (the step from above lowers ρ by at most e): the narrow Gaussian 1D at 1000
    /// cells, warm step 2, went 1.1e-10 → 1.1e-6 (predicted 1.1e-9) and took 16 iterations,
    /// 6 with this test.
    fn tail_overshoot<'s>(
        &'s self,
        pt: &'s Point,
        step: &'s [f64],
    ) -> impl Fn(f64, &Point) -> bool + 's {
        let p = &self.p;
        let active = p.law.beta.is_some();
        let seen = self.params.tol * p.rho_scale;
        move |alpha: f64, q: &Point| {
            active
                && (0..p.n()).any(|k| {
                    let rho = pt.cells[k].rho;
                    let pred = rho + alpha * step[k];
                    let r = q.cells[k].rho;
                    r > seen && r > OVERSHOOT * pred.max(rho)
                })
        }
    }

    /// The Newton model's change of every density along d at pt: (dρ/ds) δs_K, with
    /// δs_K = −δφ_K/τ + δQ_K/|K| the linearisation of the chemical potential.
    fn linear_density_change(&self, pt: &Point, d: &[f64]) -> Vec<f64> {
        let p = &self.p;
        let mut ds: Vec<f64> = (0..p.n()).map(|k| -d[k] / p.tau).collect();
        for &(k, l, t) in p.faces {
            let e = t * (pt.phi[l] - pt.phi[k]) * (d[l] - d[k]) / (2.0 * p.tau);
            ds[k] += e / p.vols[k];
            ds[l] += e / p.vols[l];
        }
        let (mu, mu_l) = (pt.mu, p.mu_lower(pt.mu));
        ds.iter()
            .zip(&pt.cells)
            .map(|(&ds, &c)| p.law.compliance(c, mu_l, mu) * ds)
            .collect()
    }

    /// With entropy, after a full Newton step from pt along d to q (`step` the model's density
    /// change along d): the number of cells that
    /// the exact cell law left more than one e-fold above the density the Newton model wanted
    /// for them (ρ_K(q) > e · max(ρ_K + (dρ/ds) δs_K, 0)) while that lag still changes a mass
    /// balance by more than the tolerance — counted only when these lags account for the
    /// residual at q (the largest change they can make is at least the largest mass balance),
    /// and every mass balance they cannot reach (cells neither lagging nor next to one) is
    /// within √tol, one quadratic Newton step from tol — the ascent has converged but for them
    /// — else 0. (Handed over earlier, far from the solution, the primal–dual iteration failed
    /// where the ascent converges: OU 1D 16384 cells, τ = 0.5 and 1, and the double well at
    /// β = 0.02. Requiring tol instead of √tol there: double well 1D 400 warm 10, 9, at 1000
    /// cells 11, 8; with √tol 9, 7 and 9, 7.) A density that must fall by many e-folds is such
    /// a cell: the exponential law's
    /// linear model asks δs ≈ −β, so from above the ascent lowers it by one e-fold per
    /// iteration whatever its target, and once such cells carry the residual the ascent
    /// converges linearly with ratio 1/e (the double well's wall cells: 11 e-folds in 10
    /// iterations). The lag of cell K changes the mass balance of K and of its neighbours
    /// through θ_σ = (ρ_K + ρ_L)/2 by lag · (|K| + ½ Σ_σ T_σ |φ_L − φ_K|) at most. Measured
    /// (largest such change / residual): the double well's linear phase 1.2–1.8, the narrow
    /// Gaussian's cold step 1.3–2; OU 2D 64² (`peer_compare`), where the ascent converges in 4,
    /// at most 0.35, and there it never fires.
    fn cells_lagging_from_above(&self, pt: &Point, step: &[f64], q: &Point) -> usize {
        let p = &self.p;
        if p.law.beta.is_none() {
            return 0;
        }
        let mut reach: Vec<f64> = p.vols.to_vec();
        for &(k, l, t) in p.faces {
            let a = 0.5 * t * (q.phi[l] - q.phi[k]).abs();
            reach[k] += a;
            reach[l] += a;
        }
        // Both in the units of the stopping test: mass balance per |K| ρ_s.
        let tol = self.params.tol;
        let mut impact = 0.0f64;
        let mut residual = 0.0f64;
        let mut lags = vec![false; p.n()];
        for k in 0..p.n() {
            let unit = p.vols[k] * p.rho_scale;
            residual = residual.max(q.r_p[k].abs() / unit);
            let wanted = (pt.cells[k].rho + step[k]).max(0.0);
            let r = q.cells[k].rho;
            let effect = (r - wanted) * reach[k] / unit;
            if r > std::f64::consts::E * wanted && effect > tol {
                lags[k] = true;
                impact = impact.max(effect);
            }
        }
        // The cells whose mass balance a lag reaches: the lagging cells and their neighbours;
        // elsewhere the ascent must be within one quadratic step (√tol) of converged.
        let mut near = lags.clone();
        for &(k, l, _) in p.faces {
            if lags[k] || lags[l] {
                near[k] = true;
                near[l] = true;
            }
        }
        let converged_elsewhere =
            (0..p.n()).all(|k| near[k] || q.r_p[k].abs() <= tol.sqrt() * p.vols[k] * p.rho_scale);
        let lagging = lags.iter().filter(|&&l| l).count();
        if impact >= residual && converged_elsewhere {
            lagging
        } else {
            0
        }
    }

    /// The start of the interior point after a porous dual ascent stopped at `pt`: the same
    /// potential, its densities and multipliers on the central path at μ = HANDOVER_MU ρ_s E_s
    /// (the lower bound's barrier active). The ascent stalls close to the solution (mass balance
    /// 10⁻³–10⁻⁵ after its 30 iterations on porous m = 3 2D; the degenerate front cells ρ ~ √s
    /// are what it cannot resolve), and restarting the interior point from its cold start threw
    /// that away: it then stalled at complementarity 10⁻⁵–10⁻⁶ and took 141–145 iterations, or
    /// hit the 300-iteration limit on the un-normalised Barenblatt data
    /// (`tests/regressions.rs::porous_m3_2d_barenblatt_converges`). Measured on those two
    /// problems (3 steps each), handing over at μ = 10⁻⁵, 10⁻⁸, 10⁻¹⁰, 10⁻¹², 10⁻¹⁴, 10⁻¹⁶:
    /// max 159, 83, 68, 86, 167, 387 iterations per step (a large μ re-spreads the front, a tiny
    /// one starts the interior point off-centre). `None` when not a porous step or when the
    /// cell law has no solution at that μ (then the cold start is used).
    fn handover(&mut self, pt: &Point) -> Option<Point> {
        let law = self.p.law;
        if law.beta.is_some() || law.m.is_none() || law.rho_max.is_some() {
            return None;
        }
        if self.dual_budget == 0 {
            // The interior point from the start itself (`INTERIOR_FIRST_MU`).
            let mu = (INTERIOR_FIRST_MU * self.scale()).max(self.mu_min);
            let lower_active = std::mem::replace(&mut self.p.lower_active, true);
            let h = self.p.point(pt.phi.clone(), mu, Some(&pt.cells));
            self.p.lower_active = lower_active;
            return h;
        }
        // Only an ascent that stalled near the solution has a point worth keeping; one that
        // stopped far from it (a porous step at τ = 10 on a coarse line: mass balance ~10²
        // ρ_s) starts the interior point better from its cold start.
        if self.mass_balance(pt) > HANDOVER_MAX_IMBALANCE * self.p.rho_scale {
            return None;
        }
        let mu = (HANDOVER_MU * self.scale()).max(self.mu_min);
        let lower_active = std::mem::replace(&mut self.p.lower_active, true);
        let h = self.p.point(pt.phi.clone(), mu, Some(&pt.cells));
        self.p.lower_active = lower_active;
        h
    }

    /// ‖r_p‖₂ in density units (|r_p,K|/|K|).
    fn mass_balance(&self, pt: &Point) -> f64 {
        pt.r_p
            .iter()
            .zip(self.p.vols)
            .map(|(r, v)| (r / v) * (r / v))
            .sum::<f64>()
            .sqrt()
    }

    fn domain_failure(&self) -> NewtonError {
        no_iterate_failure(
            FailureReason::Domain,
            "no potential with a density in every cell",
        )
    }

    fn fail(
        &self,
        reason: FailureReason,
        iterations: usize,
        history: Vec<f64>,
        pt: &Point,
        e: &Errors,
        last_step: f64,
    ) -> NewtonError {
        let rho: Vec<f64> = pt.cells.iter().map(|c| c.rho).collect();
        self.fail_at(reason, iterations, history, &rho, pt.mu, e, last_step)
    }

    #[allow(clippy::too_many_arguments)]
    fn fail_at(
        &self,
        reason: FailureReason,
        iterations: usize,
        history: Vec<f64>,
        rho: &[f64],
        mu: f64,
        e: &Errors,
        last_step: f64,
    ) -> NewtonError {
        let p = &self.p;
        let m: f64 = p.vols.iter().zip(rho).map(|(v, r)| v * r).sum();
        let floor = if e.floor > 0.0 {
            format!(", round-off floor {:.1e}", e.floor)
        } else {
            String::new()
        };
        let limiting = format!(
            "{} {:.1e} (tol {:.0e}{floor})",
            e.dominant.describe(),
            e.dominant_value(),
            self.params.tol
        );
        NewtonError::NotConverged {
            reason,
            iterations,
            residual: e.total(),
            history,
            diagnostics: IterateDiagnostics {
                mass_residual: e.primal,
                mu: mu / self.scale(),
                min_rho: rho.iter().cloned().fold(f64::INFINITY, f64::min),
                max_rho: rho.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
                mass_error: ((m - p.mass) / p.mass).abs(),
                last_step,
                limiting,
            },
        }
    }

    fn output(&mut self, c: Converged) -> StepOutput {
        let p = &self.p;
        let mesh = p.mesh;
        let mut rho = Array1::from(c.rho);
        // The stopping test bounds each cell's continuity residual, not their sum, which is the
        // step's mass error; over a run those errors add up (OU 2D 64², τ = 0.01, default tol:
        // relative drift 1.0e-9 at step 132, past the driver's check). The converged density is
        // scaled to ρⁿ's mass: a relative change of the size of its residuals (with the entropy
        // law, exactly the density of the dual point φ + const). A larger mismatch is left for
        // the driver's check to report. Under a cap only downwards: scaling up would lift the
        // capped cells above ρ_max.
        // The flux G = T θ ∇φ scales with the face densities θ: it is scaled too, so that the
        // output keeps G = T θ (φ_L − φ_K) to round-off.
        let mass = mesh.mass(&rho);
        let rel = (mass - p.mass) / p.mass;
        let may_scale = p.law.rho_max.is_none() || rel > 0.0;
        let mut mass_scale = 1.0;
        if mass > 0.0 && may_scale && rel.abs() <= MASS_PROJECTION * self.params.tol {
            mass_scale = p.mass / mass;
            rho *= mass_scale;
        }
        // A face between two empty cells carries no mass. Clipping a round-off-negative density
        // to 0 in the active-set finish can leave such a face with a flux of round-off size,
        // whose action would be G²/0 = ∞ (found by the robustness matrix: porous m = 3).
        let flux: Array1<f64> = p
            .faces
            .iter()
            .zip(c.flux)
            .map(|(&(k, l, _), g)| {
                if rho[k] + rho[l] > 0.0 {
                    g * mass_scale
                } else {
                    0.0
                }
            })
            .collect();
        let kinetic = mesh.kinetic_action(&rho, &flux);
        let objective = kinetic / (2.0 * p.tau) + energy_value(p, &rho);
        let e = c.errors;
        let mut notes = std::mem::take(&mut self.notes);
        if e.floor > self.params.tol {
            notes.push(format!(
                "converged to the round-off floor {:.1e} of the residuals (above tol {:.0e}; \
                 (4d+4) eps x the sum of the absolute values of each residual's terms)",
                e.floor, self.params.tol
            ));
        }
        if self.barrier {
            notes.push(format!(
                "interior point: final mu {:.1e} (relative), complementarity {:.1e}",
                c.mu / self.scale(),
                e.complementarity
            ));
        }
        let preconditioned = self.system.preconditioned() - self.assembled_before.1;
        let factorised = self.system.assembled() - self.assembled_before.0 - preconditioned;
        notes.push(format!(
            "linear solves {:.1} ms in {factorised} factorisations and {preconditioned} \
             preconditioned CG solves ({} nonzeros in S, {} in its factor, {:?})",
            self.linear_time * 1e3,
            self.system.nnz(),
            self.system.factor_nnz(),
            self.params.factorization
        ));
        StepOutput {
            rho,
            flux: Some(flux),
            potential: Some(Array1::from(c.phi)),
            info: StepInfo {
                solver: "newton".into(),
                status: StepStatus::Solved,
                iterations: c.iterations,
                primal_residual: e.primal,
                dual_residual: e.dual.max(e.complementarity),
                objective,
                kinetic,
                wall_time: 0.0,
                history: c.history,
                notes,
                check: None,
            },
        }
    }
}

/// The iterations a failed attempt spent (charged to the step that retries).
/// CPU time of the calling thread in seconds (Linux: the first field of
/// /proc/thread-self/schedstat, nanoseconds on the CPU), NaN elsewhere.
pub(crate) fn thread_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |ns| ns * 1e-9)
}

/// The largest relative mass mismatch of a converged step, in units of the tolerance, that the
/// step's output corrects by scaling its density (`Run::output`).
const MASS_PROJECTION: f64 = 1e3;

fn spent_iterations(e: &NewtonError) -> usize {
    match e {
        NewtonError::NotConverged { iterations, .. } => *iterations,
        NewtonError::Input(_) => 0,
    }
}

/// max_K |ln(ρ_K(φ)/ρ⁰_K)|: how far a point's densities are from ρ⁰ in Newton's natural
/// (logarithmic) scale.
fn log_spread(pt: &Point, rho0: &[f64]) -> f64 {
    pt.cells
        .iter()
        .zip(rho0)
        .map(|(c, &y)| cell_spread(c.rho, y))
        .fold(0.0, f64::max)
}

/// |ln(x/y)|; equal zeros count as 0, a single zero as ∞.
fn cell_spread(x: f64, y: f64) -> f64 {
    if x == y {
        0.0
    } else if x > 0.0 && y > 0.0 {
        (x / y).ln().abs()
    } else {
        f64::INFINITY
    }
}

/// F_h(ρ) = Σ |K| (f(ρ_K) + V_K ρ_K) of the step's (frozen) energy.
fn energy_value(p: &Problem<'_>, rho: &Array1<f64>) -> f64 {
    rho.iter()
        .enumerate()
        .map(|(k, &r)| p.vols[k] * (p.f0(r) + p.potential[k] * r))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{Factorization, Ordering};
    use jko_core::StepEnergy;

    fn energy(
        entropy: Option<f64>,
        porous: Option<f64>,
        cap: Option<f64>,
        v: Array1<f64>,
    ) -> StepEnergy {
        StepEnergy {
            entropy,
            porous,
            potential: Some(v),
            max_density: cap,
            interaction_frozen: false,
        }
    }

    /// The dual ascent's solve stops refining at the residual's round-off: its direction must
    /// agree with the fully refined one to the round-off of the solve (κ(Ŝ) ε; Ŝ has a unit
    /// diagonal), and satisfy S d = r_p/τ to that level.
    #[test]
    fn refinement_stop_leaves_the_direction_at_round_off() {
        let mesh = Mesh::masked_grid(&[24, 24], &[0.0, 0.0], &[1.0, 1.0], None).unwrap();
        let n = mesh.n_cells();
        let rho_prev =
            mesh.sample(|x| (-8.0 * ((x[0] - 0.4).powi(2) + (x[1] - 0.5).powi(2))).exp());
        let v = mesh.sample(|x| 2.0 * ((x[0] - 0.5).powi(2) + (x[1] - 0.5).powi(2)));
        let faces: Vec<(usize, usize, f64)> = mesh
            .faces()
            .iter()
            .map(|f| (f.k, f.l, f.transmissibility()))
            .collect();
        let e = energy(Some(0.5), None, None, v);
        let problem = JkoStep::new(&mesh, &rho_prev, 0.05, &e).unwrap();
        let params = NewtonParams::default();
        let mut system =
            ReducedSystem::new(&mesh, Factorization::Cholesky, Ordering::Auto).unwrap();
        let run = Run::new(&problem, &faces, &params, &mut system);
        let pt = run.cold_start().expect("start");
        let p = &run.p;
        let mut sys = ReducedSystem::new(&mesh, Factorization::Cholesky, Ordering::Auto).unwrap();
        let (d, _) = p.newton_direction(&pt, &mut sys, None).unwrap();
        let b: Vec<f64> = pt.r_p.iter().map(|r| r / p.tau).collect();
        let mut full = b.clone();
        sys.solve(&mut full, crate::system::Refinement::WhileDecreasing)
            .unwrap();
        // max|a − c| / max|c|.
        let relative = |a: &[f64], c: &[f64]| {
            let norm = |v: &mut dyn Iterator<Item = f64>| v.fold(0.0f64, |m, x| m.max(x.abs()));
            norm(&mut a.iter().zip(c).map(|(x, y)| x - y)) / norm(&mut c.iter().copied())
        };
        let agreement = relative(&d, &full);
        let residual = relative(&sys.apply(&d), &b);
        assert!(
            agreement <= 1e-9 && residual <= 1e-10,
            "{agreement:e}, {residual:e}"
        );
        assert_eq!(d.len(), n);
    }

    /// The cold start's screening (`Run::farther_than`) must not change its choice: the
    /// exhaustive rule (build every admissible candidate, keep the closest to ρⁿ floored at the
    /// first floor, ties to the larger dual value) picks the same potential, on an OU-like 2D
    /// step whose corners are far tails (ρⁿ ~ 1e-30) and on a 1D double well.
    #[test]
    fn screened_cold_start_is_the_exhaustive_choice() {
        let cases: Vec<(Mesh, Array1<f64>, Array1<f64>, f64)> = vec![
            {
                let mesh = Mesh::masked_grid(&[20, 20], &[-4.0, -4.0], &[4.0, 4.0], None).unwrap();
                let rho = mesh.sample(|x| (-((x[0] - 0.5).powi(2) + x[1].powi(2)) / 0.72).exp());
                let v = mesh.sample(|x| 0.5 * (x[0] * x[0] + x[1] * x[1]));
                (mesh, rho, v, 1.0)
            },
            {
                let mesh = Mesh::grid(&[200], &[-2.5], &[2.5]).unwrap();
                let rho = mesh.sample(|x| (-(x[0] - 0.2).powi(2) / 0.5).exp());
                let v = mesh.sample(|x| (x[0] * x[0] - 1.0).powi(2));
                (mesh, rho, v, 0.1)
            },
        ];
        for (mesh, rho_prev, v, beta) in cases {
            let faces: Vec<(usize, usize, f64)> = mesh
                .faces()
                .iter()
                .map(|f| (f.k, f.l, f.transmissibility()))
                .collect();
            let e = energy(Some(beta), None, None, v);
            let problem = JkoStep::new(&mesh, &rho_prev, 0.1, &e).unwrap();
            let params = NewtonParams::default();
            let mut system =
                ReducedSystem::new(&mesh, Factorization::Cholesky, Ordering::Auto).unwrap();
            let run = Run::new(&problem, &faces, &params, &mut system);
            let fractions = run.cold_fractions();
            let screened = run.closest_candidate(fractions.clone()).expect("start");
            let rho0 = run.regularised(fractions[0]);
            let mu = run.mu0(Start::Cold);
            let mut best: Option<(f64, Point)> = None;
            let mut screened_out = 0;
            for phi in run.cold_candidates(fractions) {
                let pt = run.admissible(phi, mu).expect("admissible");
                let spread = log_spread(&pt, &rho0);
                if let Some((bs, _)) = &best
                    && run.farther_than(&pt.phi, mu, &rho0, *bs)
                {
                    screened_out += 1;
                }
                if best
                    .as_ref()
                    .is_none_or(|(bs, b)| spread < *bs || (spread == *bs && pt.value > b.value))
                {
                    best = Some((spread, pt));
                }
            }
            let exhaustive = best.expect("a candidate").1;
            assert_eq!(screened.phi, exhaustive.phi);
            // The screening does skip candidates here (else the test would not test it).
            assert!(screened_out > 0);
        }
    }

    /// S must be minus the Hessian of ψ_μ: compare S v with central differences of the
    /// gradient r_p/τ, and the gradient with central differences of ψ, for every energy family
    /// (with and without a cap, without internal energy) and both factorisations.
    #[test]
    fn newton_matrix_is_the_hessian_of_the_dual_function() {
        let mask: Vec<bool> = (0..30).map(|i| i != 7 && i != 8).collect();
        let mesh = Mesh::masked_grid(&[5, 6], &[0.0, 0.0], &[1.0, 1.2], Some(mask)).unwrap();
        let n = mesh.n_cells();
        let rho_prev = mesh.sample(|x| 0.5 + x[0] * x[1]);
        let v = mesh.sample(|x| x[0] - 0.5 * x[1] * x[1]);
        let faces: Vec<(usize, usize, f64)> = mesh
            .faces()
            .iter()
            .map(|f| (f.k, f.l, f.transmissibility()))
            .collect();
        for (e, fact) in [
            (
                energy(Some(0.5), None, None, v.clone()),
                Factorization::Cholesky,
            ),
            (
                energy(Some(0.5), Some(2.0), Some(3.0), v.clone()),
                Factorization::Lu,
            ),
            (
                energy(None, Some(2.5), None, v.clone()),
                Factorization::Cholesky,
            ),
            (energy(None, None, Some(2.0), v.clone()), Factorization::Lu),
            (energy(None, None, None, v.clone()), Factorization::Cholesky),
        ] {
            let problem = JkoStep::new(&mesh, &rho_prev, 0.05, &e).unwrap();
            let params = NewtonParams {
                factorization: fact,
                ..NewtonParams::default()
            };
            let mut system = ReducedSystem::new(&mesh, fact, Ordering::Auto).unwrap();
            let run = Run::new(&problem, &faces, &params, &mut system);
            let mu = 1e-2 * run.scale();
            let start = run.cold_start().expect("start");
            // Perturb φ so that the flux terms matter.
            let phi: Vec<f64> = start
                .phi
                .iter()
                .enumerate()
                .map(|(k, f)| f + 0.01 * (k as f64).sin())
                .collect();
            let p = &run.p;
            let pt = run.admissible(phi, mu).expect("point");
            let mut sys = ReducedSystem::new(&mesh, fact, Ordering::Auto).unwrap();
            p.newton_direction(&pt, &mut sys, None).unwrap();
            let dir: Vec<f64> = (0..n).map(|k| (0.7 * k as f64).cos()).collect();
            let sv = sys.apply(&dir);
            let eps = 1e-6;
            let at = |t: f64| {
                let phi: Vec<f64> = pt.phi.iter().zip(&dir).map(|(a, b)| a + t * b).collect();
                p.point(phi, mu, Some(&pt.cells)).unwrap()
            };
            let (qp, qm) = (at(eps), at(-eps));
            let scale = sv.iter().fold(0.0f64, |m, b| m.max(b.abs()));
            for k in 0..n {
                let fd = -(qp.r_p[k] - qm.r_p[k]) / p.tau / (2.0 * eps);
                assert!(
                    (fd - sv[k]).abs() < 1e-5 * scale,
                    "{e:?} cell {k}: {fd} vs {}",
                    sv[k]
                );
            }
            let fd = (qp.value - qm.value) / (2.0 * eps);
            let exact: f64 = pt.r_p.iter().zip(&dir).map(|(a, b)| a * b).sum::<f64>() / p.tau;
            assert!(
                (fd - exact).abs() < 1e-6 * (1.0 + exact.abs()),
                "{fd} vs {exact}"
            );
        }
    }
}

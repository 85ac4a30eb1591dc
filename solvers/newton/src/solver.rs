//! The damped Newton iteration on the reduced (dual) problem in φ.

use crate::cell::CellLaw;
use crate::params::NewtonParams;
use crate::system::{LinearFailure, ReducedSystem};
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
///         // ρ(φ) > 0 holds at every iterate, converged or not.
///         assert!(diagnostics.min_rho > 0.0 && diagnostics.max_rho >= diagnostics.min_rho);
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
    /// The line search found no acceptable step (smallest step tried in the diagnostics).
    LineSearch,
    /// The sparse factorisation failed or produced a non-finite direction.
    LinearSolver(String),
    /// No admissible starting point: the cell law has no solution at the initial potential.
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
/// };
/// assert!(d.min_rho <= d.max_rho);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct IterateDiagnostics {
    /// Scaled mass-balance residual max_K |r_K| τ / (|K| max ρⁿ).
    pub mass_residual: f64,
    /// Scaled barrier parameter (0 without a barrier).
    pub mu: f64,
    /// Smallest cell density min_K ρ_K of the last iterate.
    pub min_rho: f64,
    /// Largest cell density max_K ρ_K of the last iterate.
    pub max_rho: f64,
    /// Relative mass error |Σ|K|ρ_K − M| / M of the last iterate.
    pub mass_error: f64,
    /// Last accepted (or smallest tried) line-search step.
    pub last_step: f64,
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
///     },
/// };
/// match StepError::from(e) {
///     StepError::NotConverged { solver, status, iterations, history, .. } => {
///         assert_eq!(solver, "newton");
///         assert!(status.starts_with("line search failed"));
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
         mu {mu:.1e}, rho in [{min:.3e}, {max:.3e}], mass error {merr:.1e}, last step {step:.1e})",
        mu = diagnostics.mu, min = diagnostics.min_rho, max = diagnostics.max_rho,
        merr = diagnostics.mass_error, step = diagnostics.last_step
    )]
    /// The iteration stopped before the tolerance was met; no result is returned.
    NotConverged {
        /// Why it stopped.
        reason: FailureReason,
        /// Newton iterations done (over all barrier levels).
        iterations: usize,
        /// Final scaled residual (the quantity compared with `tol`).
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
                    "{reason}; last iterate: rho in [{:.3e}, {:.3e}], mass error {:.1e}, mu {:.1e}, step {:.1e}",
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

/// Scaled μ below which the barrier path hands over to the semismooth Newton finish at μ = 0.
const POLISH_MU: f64 = 1e-9;
/// Iterations allowed to the semismooth finish before it hands back to the barrier path.
const POLISH_ITERATIONS: usize = 15;

/// Reduced systems are reused while the mesh stays the same.
struct Cache {
    n: usize,
    faces: Vec<(usize, usize, f64)>,
    system: ReducedSystem,
}

/// The Newton backend (`"newton"`): docs/mathematics.md §2.1 solved on its optimality system.
///
/// Treats entropy, porous medium, potential, frozen interaction and the congestion bound
/// ρ ≤ ρ_max. The reduced system's sparsity pattern and symbolic factorisation are cached
/// and reused while the mesh stays the same, so one solver should be kept across steps.
/// [`StepSolver::step`] adds the `fallback_halving` retries to [`NewtonSolver::solve`].
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
/// assert!(out.rho.iter().all(|&r| r > 0.0 && r <= 2.0 + 1e-9));
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
    /// `warm` may carry the previous step's potential φ (and density), which shortens the
    /// iteration when consecutive steps are close.
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
    /// // Warm started from its own solution, the same step converges at once to the same ρ.
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
        let mesh = problem.mesh;
        let faces: Vec<(usize, usize, f64)> = mesh
            .faces()
            .iter()
            .map(|f| (f.k, f.l, f.transmissibility()))
            .collect();
        let mut guard = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let reuse = matches!(&*guard, Some(c) if c.n == mesh.n_cells() && c.faces == faces
            && c.system.factorization() == self.params.factorization);
        if !reuse {
            let system = ReducedSystem::new(mesh, self.params.factorization).map_err(|e| {
                NewtonError::NotConverged {
                    reason: FailureReason::LinearSolver(e.0),
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
                    },
                }
            })?;
            *guard = Some(Cache {
                n: mesh.n_cells(),
                faces: faces.clone(),
                system,
            });
        }
        let cache = guard
            .as_mut()
            .ok_or_else(|| InputError::InvalidMesh("internal: reduced system missing".into()))?;
        let mut newton = Newton::new(problem, &faces, &self.params, &mut cache.system);
        let mut out = newton.run(warm)?;
        out.info.wall_time = start.elapsed().as_secs_f64();
        Ok(out)
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

impl fmt::Debug for NewtonSolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewtonSolver")
            .field("params", &self.params)
            .finish()
    }
}

impl StepSolver for NewtonSolver {
    fn name(&self) -> &str {
        "newton"
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
    /// B × n·s²/2 with Vec growth, plus a 24 B header per cell), the pattern and values of S
    /// (16 B per stored nonzero, n·(1 + s₂)/2 with s₂ = 2s − 2 + 2·(s−1)(s−3)/4 cells within
    /// distance two, the 2·d² − d + … of a grid: 4, 12, 24 in 1D–3D), ~30 cell vectors of the
    /// iteration, and the Cholesky factor: the nested-dissection model
    /// [`jko_core::step::factor_nonzeros`] with 8 B per nonzero, doubled for faer's AMD
    /// ordering, supernodal fronts and the symbolic factor cloned per factorisation (LU:
    /// doubled again). That sum was 0.56–1.0 of the measured peak of one step
    /// (examples/memory_estimate.rs: 1D–3D, 10⁴–2.6·10⁵ cells), so it is doubled.
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
            + 16.0 * nnz_s * lu
            + 30.0 * 8.0 * n
            + factor;
        Some((2.0 * bytes) as u64)
    }
}

/// State of one Newton solve.
struct Newton<'a> {
    mesh: &'a Mesh,
    faces: &'a [(usize, usize, f64)],
    vols: &'a [f64],
    potential: Vec<f64>,
    rho_prev: &'a Array1<f64>,
    tau: f64,
    law: CellLaw,
    params: &'a NewtonParams,
    system: &'a mut ReducedSystem,
    problem: &'a JkoStep<'a>,
    /// max ρⁿ: density scale.
    rho_scale: f64,
    /// Energy per unit mass scale (β, porous pressure, potential range).
    energy_scale: f64,
    /// Current barrier parameter, scaled (μ_abs = mu · energy_scale · rho_scale).
    mu: f64,
    /// Time spent in factorisation and substitution.
    linear_time: f64,
}

/// An iterate: φ and the densities it determines, with the gradient of the dual function.
#[derive(Clone)]
struct Point {
    phi: Vec<f64>,
    rho: Vec<f64>,
    grad: Vec<f64>,
    value: f64,
    value_scale: f64,
    residual: f64,
}

impl<'a> Newton<'a> {
    fn new(
        problem: &'a JkoStep<'a>,
        faces: &'a [(usize, usize, f64)],
        params: &'a NewtonParams,
        system: &'a mut ReducedSystem,
    ) -> Self {
        let mesh = problem.mesh;
        let n = mesh.n_cells();
        let law = CellLaw::new(problem.energy);
        let potential = problem
            .energy
            .potential
            .as_ref()
            .map_or_else(|| vec![0.0; n], |v| v.to_vec());
        let rho_scale = problem.rho_prev.iter().cloned().fold(0.0, f64::max);
        let (vmin, vmax) = potential
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let mut energy_scale = (vmax - vmin).max(0.0);
        if let Some(b) = law.beta {
            energy_scale += b;
        }
        if let Some(m) = law.m {
            energy_scale += m * rho_scale.powf(m - 1.0) / (m - 1.0);
        }
        if !(energy_scale > 0.0 && energy_scale.is_finite()) {
            energy_scale = 1.0;
        }
        let mu = if law.has_barrier() {
            params.mu_initial
        } else {
            0.0
        };
        Newton {
            mesh,
            faces,
            vols: mesh.volumes(),
            potential,
            rho_prev: problem.rho_prev,
            tau: problem.tau,
            law,
            params,
            system,
            problem,
            rho_scale,
            energy_scale,
            mu,
            linear_time: 0.0,
        }
    }

    fn mu_abs(&self) -> f64 {
        self.mu * self.energy_scale * self.rho_scale
    }

    /// s_K = −V_K − φ_K/τ + Q_K/|K|, Q_K = (1/(4τ)) Σ_σ∋K T_σ (φ_L − φ_K)².
    fn chemical_potential(&self, phi: &[f64]) -> Vec<f64> {
        let mut q = vec![0.0; phi.len()];
        for &(k, l, t) in self.faces {
            let d = phi[l] - phi[k];
            let e = t * d * d / (4.0 * self.tau);
            q[k] += e;
            q[l] += e;
        }
        (0..phi.len())
            .map(|k| -self.potential[k] - phi[k] / self.tau + q[k] / self.vols[k])
            .collect()
    }

    /// The densities ρ(φ) solving the cell equations, or None outside the dual domain.
    fn densities(&self, phi: &[f64], guess: &[f64]) -> Option<Vec<f64>> {
        let s = self.chemical_potential(phi);
        let mu = self.mu_abs();
        s.iter()
            .zip(guess)
            .map(|(&s, &g)| self.law.density(s, mu, g))
            .collect()
    }

    /// Complete a point: gradient g = ∂Φ/∂φ, dual value ψ(φ) = Φ(ρ(φ), φ) and residual.
    fn point(&self, phi: Vec<f64>, rho: Vec<f64>) -> Point {
        let n = phi.len();
        let tau = self.tau;
        let mu = self.mu_abs();
        let mut grad = vec![0.0; n];
        let mut kinetic = 0.0;
        for &(k, l, t) in self.faces {
            let g = t * 0.5 * (rho[k] + rho[l]) * (phi[l] - phi[k]);
            grad[k] += g;
            grad[l] -= g;
            kinetic += g * (phi[l] - phi[k]);
        }
        let mut value = -kinetic / (2.0 * tau);
        let mut value_scale = kinetic.abs() / (2.0 * tau);
        let mut residual: f64 = 0.0;
        for k in 0..n {
            let v = self.vols[k];
            let change = v * (rho[k] - self.rho_prev[k]);
            grad[k] = (change + grad[k]) / tau;
            residual = residual.max(grad[k].abs() * tau / (v * self.rho_scale));
            let local = v * (self.law.energy(rho[k], mu) + self.potential[k] * rho[k]);
            let pair = phi[k] * change / tau;
            value += local + pair;
            value_scale += local.abs() + (v * phi[k] * (rho[k] + self.rho_prev[k]) / tau).abs();
        }
        if value.is_nan() {
            residual = f64::INFINITY;
        }
        Point {
            phi,
            rho,
            grad,
            value,
            value_scale,
            residual,
        }
    }

    fn diagnostics(&self, p: &Point, last_step: f64) -> IterateDiagnostics {
        let mass = self.problem.mass();
        let m: f64 = self.vols.iter().zip(&p.rho).map(|(v, r)| v * r).sum();
        IterateDiagnostics {
            mass_residual: p.residual,
            mu: self.mu,
            min_rho: p.rho.iter().cloned().fold(f64::INFINITY, f64::min),
            max_rho: p.rho.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
            mass_error: ((m - mass) / mass).abs(),
            last_step,
        }
    }

    fn fail(
        &self,
        reason: FailureReason,
        iterations: usize,
        history: Vec<f64>,
        p: Option<&Point>,
        last_step: f64,
    ) -> NewtonError {
        let diagnostics = match p {
            Some(p) => self.diagnostics(p, last_step),
            None => IterateDiagnostics {
                mass_residual: f64::INFINITY,
                mu: self.mu,
                min_rho: f64::NAN,
                max_rho: f64::NAN,
                mass_error: f64::NAN,
                last_step,
            },
        };
        NewtonError::NotConverged {
            reason,
            iterations,
            residual: diagnostics.mass_residual,
            history,
            diagnostics,
        }
    }

    /// Starting point: warm (ρ, φ) when given and usable, else ρⁿ kept away from the bounds
    /// and a first-order guess φ = −τ (f'(ρ) + V), exact as τ → 0. Where the step moves mass
    /// far (steep V or steep tails of ρⁿ: τ|∇(f'(ρ) + V)|² ≫ β) that guess has large jumps,
    /// whose quadratic term Q_K ≈ τ|∇(f' + V)|²/2 makes ρ(φ) = exp(s/β − 1) explode (to 5e36
    /// on the quartic-1d example); from there Newton removes about one e-fold per iteration
    /// (the Newton step of e^u − c u from u ≫ ln c is −1). So the guess is also tried with
    /// stronger floors on ρ and scaled by λ ∈ [0, 1] (Q scales like λ², the drift like λ:
    /// ρ(λφ) ∝ ρ^λ e^{−(1−λ)V/β} without Q, between ρⁿ and the Gibbs state), and the candidate
    /// whose densities are closest to ρ⁰ (ρⁿ with the weakest floor) in max_K |ln(ρ_K(φ)/ρ⁰_K)|
    /// is kept (ties: the larger dual value ψ). The largest ψ alone is not a safe choice: on
    /// crowd-2d it prefers a candidate with underflowed cells (ρ = 0), where the Newton
    /// direction is unbounded.
    fn start(&self, warm: Option<&WarmStart>) -> Option<Point> {
        let n = self.mesh.n_cells();
        let usable = |a: &Option<Array1<f64>>| {
            a.as_ref()
                .filter(|a| a.len() == n && a.iter().all(|v| v.is_finite()))
                .map(|a| a.to_vec())
        };
        let mean = self.problem.mass() / self.mesh.domain_volume();
        let base =
            usable(&warm.and_then(|w| w.rho.clone())).unwrap_or_else(|| self.rho_prev.to_vec());
        let regularised = |fraction: f64| -> Vec<f64> {
            let mut floor = fraction * mean;
            if let Some(r) = self.law.rho_max {
                floor = floor.min(fraction * r);
            }
            base.iter()
                .map(|&r| {
                    let r = r.max(floor);
                    match self.law.rho_max {
                        Some(m) => r.min(m - floor),
                        None => r,
                    }
                })
                .collect()
        };
        let rho0 = regularised(1e-3);
        if let Some(phi) = usable(&warm.and_then(|w| w.potential.clone()))
            && let Some(p) = self.admissible(phi, &rho0)
        {
            return Some(p);
        }
        // The first-order guess leaves the barrier out: its μ/ρ terms would be a poor guess of φ.
        let guess = |rho: &[f64], lambda: f64| -> Vec<f64> {
            (0..n)
                .map(|k| -lambda * self.tau * (self.law.slope(rho[k], 0.0) + self.potential[k]))
                .collect()
        };
        // Spread of a candidate: max_K |ln(ρ_K(φ)/ρ⁰_K)|, about the number of e-folds Newton
        // must undo (from above it removes one per iteration, from below it overshoots).
        let spread = |p: &Point| log_spread(&p.rho, &rho0);
        let mut best: Option<(f64, Point)> = None;
        for fraction in [1e-3, 1e-1, 1.0] {
            let rho = regularised(fraction);
            for lambda in [1.0, 0.75, 0.5, 0.25, 0.125, 0.0] {
                if let Some(p) = self.admissible(guess(&rho, lambda), &rho) {
                    let sp = spread(&p);
                    let better = best
                        .as_ref()
                        .is_none_or(|(bs, b)| sp < *bs || (sp == *bs && p.value > b.value));
                    if p.value.is_finite() && better {
                        best = Some((sp, p));
                    }
                }
            }
        }
        best.map(|(_, p)| p)
    }

    /// The point at φ, shifting φ by a constant when the cell law has no solution somewhere
    /// (without internal energy and without a cap g_μ < 0, so s_K must be negative).
    fn admissible(&self, mut phi: Vec<f64>, guess: &[f64]) -> Option<Point> {
        if let Some(rho) = self.densities(&phi, guess) {
            return Some(self.point(phi, rho));
        }
        let s_max = self
            .chemical_potential(&phi)
            .into_iter()
            .fold(f64::NEG_INFINITY, f64::max);
        if s_max.is_finite() {
            let shift = self.tau * (s_max.max(0.0) + self.energy_scale);
            phi.iter_mut().for_each(|p| *p += shift);
            if let Some(rho) = self.densities(&phi, guess) {
                return Some(self.point(phi, rho));
            }
        }
        None
    }

    /// Newton direction d = S⁻¹ g.
    fn direction(&mut self, p: &Point) -> Result<Vec<f64>, LinearFailure> {
        let tau = self.tau;
        let mu = self.mu_abs();
        let law = self.law;
        let dinv: Vec<f64> = (0..p.rho.len())
            .map(|k| law.compliance(p.rho[k], mu) / self.vols[k])
            .collect();
        let (faces, vols, mesh) = (self.faces, self.vols, self.mesh);
        let (phi, rho) = (&p.phi, &p.rho);
        self.system.assemble(
            &dinv,
            |k, c| {
                let fk = mesh.faces_of(k);
                c.push(0.0);
                let mut diag = vols[k];
                for &s in fk {
                    let (a, b, t) = faces[s];
                    let other = if a == k { b } else { a };
                    let g = t * (phi[other] - phi[k]);
                    diag += 0.5 * g;
                    c.push(-0.5 * g / tau);
                }
                c[0] = diag / tau;
            },
            |k, j| {
                let (a, b, t) = faces[mesh.faces_of(k)[j]];
                t * 0.5 * (rho[a] + rho[b]) / tau
            },
        );
        // A relative shift far below the tolerance keeps S definite when ρ underflows. At μ = 0
        // the dual potential is not unique in vacuum (any φ with s_K ≤ 0 is optimal there) and
        // the generalised Hessian is singular on those cells: a larger proximal shift keeps φ
        // in place there, slowing the converging cells only by a factor ~1e-10 per iteration.
        let relative = if mu == 0.0 { 1e-10 } else { 1e-14 };
        let shift = relative * self.system.mean_diagonal();
        self.system.shift_diagonal(shift);
        let mut d = p.grad.clone();
        let t0 = Instant::now();
        let r = self.system.solve(&mut d);
        self.linear_time += t0.elapsed().as_secs_f64();
        r.map(|_| d)
    }

    /// Backtracking line search along d; returns the accepted point and step.
    fn line_search(&self, p: &Point, d: &[f64]) -> (Option<Point>, f64) {
        let slope: f64 = d.iter().zip(&p.grad).map(|(a, b)| a * b).sum();
        let mut alpha = 1.0;
        while alpha >= 1e-12 {
            let phi: Vec<f64> = p.phi.iter().zip(d).map(|(a, b)| a + alpha * b).collect();
            if let Some(rho) = self.densities(&phi, &p.rho) {
                let q = self.point(phi, rho);
                let roundoff = 1e-13 * p.value_scale.max(q.value_scale);
                // Armijo on the concave dual; at the round-off level of ψ, a decrease of
                // the residual decides instead.
                let armijo = q.value >= p.value + 1e-4 * alpha * slope;
                let flat = (q.value - p.value).abs() <= roundoff && q.residual < p.residual;
                if q.residual.is_finite() && (armijo || flat) {
                    return (Some(q), alpha);
                }
            }
            alpha *= 0.5;
        }
        (None, alpha)
    }

    /// Lower μ while the barrier subproblem is solved well enough (superlinear schedule).
    fn update_barrier(&mut self, mut p: Point) -> Point {
        while self.mu > self.params.mu_final && p.residual <= 10.0 * self.mu {
            self.mu = (0.2 * self.mu)
                .min(self.mu.powf(1.5))
                .max(self.params.mu_final);
            match self.densities(&p.phi, &p.rho) {
                Some(rho) => p = self.point(p.phi.clone(), rho),
                None => break,
            }
        }
        p
    }

    fn run(&mut self, warm: Option<&WarmStart>) -> Result<StepOutput, NewtonError> {
        let barrier = self.law.has_barrier();
        let mut p = match self.start(warm) {
            Some(p) => p,
            None => return Err(self.fail(FailureReason::Domain, 0, Vec::new(), None, 0.0)),
        };
        let mut history = Vec::new();
        let mut last_step = 1.0;
        let mut iterations = 0;
        // Semismooth finish at μ = 0: (barrier μ and iterate at the switch, iterations since).
        let mut polish: Option<(f64, Point, usize)> = None;
        // Semismooth finish only for the cap: at a free boundary ρ = 0 (no entropy) the
        // dual is kinked at nearly degenerate cells and the finish stalls (measured).
        let mut polish_allowed = barrier && self.law.polishable() && !self.law.lower_barrier;
        // A warm start is close to the solution: go straight to the exact (μ = 0) problem.
        let warm_potential = warm.is_some_and(|w| {
            w.potential
                .as_ref()
                .is_some_and(|p| p.len() == self.mesh.n_cells())
        });
        if polish_allowed && warm_potential {
            self.mu = POLISH_MU;
        }
        loop {
            if barrier && polish.is_none() {
                p = self.update_barrier(p);
                if polish_allowed && self.mu <= POLISH_MU {
                    let saved = self.mu;
                    self.mu = 0.0;
                    match self.densities(&p.phi, &p.rho) {
                        Some(rho) => {
                            let exact = self.point(p.phi.clone(), rho);
                            polish = Some((saved, std::mem::replace(&mut p, exact), 0));
                        }
                        None => {
                            self.mu = saved;
                            polish_allowed = false;
                        }
                    }
                }
            }
            let total = if barrier && polish.is_none() {
                p.residual.max(self.mu)
            } else {
                p.residual
            };
            history.push(total);
            let mu_done = !barrier || polish.is_some() || self.mu <= self.params.mu_final;
            if p.residual <= self.params.tol && mu_done {
                break;
            }
            if iterations == self.params.max_iter {
                return Err(self.fail(
                    FailureReason::MaxIterations,
                    iterations,
                    history,
                    Some(&p),
                    last_step,
                ));
            }
            iterations += 1;
            let (next, reason) = match self.direction(&p) {
                Ok(d) => {
                    let (q, alpha) = self.line_search(&p, &d);
                    last_step = alpha;
                    (q, FailureReason::LineSearch)
                }
                Err(e) => (None, FailureReason::LinearSolver(e.0)),
            };
            if let Some((saved, at_switch, count)) = polish.take() {
                // The semismooth phase must converge fast; otherwise resume the barrier path.
                match next {
                    Some(q) if count < POLISH_ITERATIONS => {
                        p = q;
                        polish = Some((saved, at_switch, count + 1));
                    }
                    _ => {
                        self.mu = saved;
                        polish_allowed = false;
                        p = at_switch;
                    }
                }
                continue;
            }
            match next {
                Some(q) => p = q,
                None => return Err(self.fail(reason, iterations, history, Some(&p), last_step)),
            }
        }
        Ok(self.output(p, iterations, history))
    }

    fn output(&self, p: Point, iterations: usize, history: Vec<f64>) -> StepOutput {
        let mesh = self.mesh;
        let flux = Array1::from_iter(
            self.faces
                .iter()
                .map(|&(k, l, t)| t * 0.5 * (p.rho[k] + p.rho[l]) * (p.phi[l] - p.phi[k])),
        );
        let rho = Array1::from(p.rho.clone());
        let kinetic = mesh.kinetic_action(&rho, &flux);
        let objective = kinetic / (2.0 * self.tau) + self.problem.energy.value(mesh, &rho);
        // Stationarity of the cell equations (solved per cell to machine precision),
        // scaled like the energy; with a barrier the complementarity μ is the dual residual.
        let s = self.chemical_potential(&p.phi);
        let mu = self.mu_abs();
        let stationarity = (0..rho.len())
            .map(|k| {
                let g = self.law.slope(p.rho[k], mu);
                (g - s[k]).abs() / (s[k].abs() + self.energy_scale)
            })
            .fold(0.0, f64::max);
        let dual = if self.law.has_barrier() {
            stationarity.max(self.mu)
        } else {
            stationarity
        };
        let mut notes = Vec::new();
        if self.law.has_barrier() {
            notes.push(format!(
                "barrier continuation to mu = {:.1e} (scaled complementarity)",
                self.mu
            ));
        }
        notes.push(format!(
            "linear solves {:.1} ms ({} nonzeros in S, {:?})",
            self.linear_time * 1e3,
            self.system.nnz(),
            self.params.factorization
        ));
        StepOutput {
            rho,
            flux: Some(flux),
            potential: Some(Array1::from(p.phi)),
            info: StepInfo {
                solver: "newton".into(),
                status: StepStatus::Solved,
                iterations,
                primal_residual: p.residual,
                dual_residual: dual,
                objective,
                kinetic,
                wall_time: 0.0,
                history,
                notes,
                check: None,
            },
        }
    }
}

/// max_K |ln(a_K / b_K)|: how far apart two density fields are in Newton's natural (logarithmic)
/// scale; equal zeros count as 0, a single zero as ∞.
fn log_spread(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            if x == y {
                0.0
            } else if x > 0.0 && y > 0.0 {
                (x / y).ln().abs()
            } else {
                f64::INFINITY
            }
        })
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Factorization;
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

    /// S must be minus the Jacobian of ∇ψ: compare S v with central differences of the gradient.
    #[test]
    fn reduced_hessian_matches_finite_differences() {
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
        ] {
            let problem = JkoStep::new(&mesh, &rho_prev, 0.05, &e).unwrap();
            let params = NewtonParams {
                factorization: fact,
                ..NewtonParams::default()
            };
            let mut system = ReducedSystem::new(&mesh, fact).unwrap();
            let mut newton = Newton::new(&problem, &faces, &params, &mut system);
            newton.mu = 1e-2;
            let p = newton.start(None).expect("start");
            // Perturb φ so that the flux terms matter.
            let phi: Vec<f64> = p
                .phi
                .iter()
                .enumerate()
                .map(|(k, f)| f + 0.01 * (k as f64).sin())
                .collect();
            let rho = newton.densities(&phi, &p.rho).unwrap();
            let p = newton.point(phi, rho);
            newton.direction(&p).unwrap();
            let dir: Vec<f64> = (0..n).map(|k| (0.7 * k as f64).cos()).collect();
            let sv = newton.system.apply(&dir);
            let eps = 1e-6;
            let grad_at = |t: f64, nw: &Newton| {
                let phi: Vec<f64> = p.phi.iter().zip(&dir).map(|(a, b)| a + t * b).collect();
                let rho = nw.densities(&phi, &p.rho).unwrap();
                nw.point(phi, rho).grad
            };
            let gp = grad_at(eps, &newton);
            let gm = grad_at(-eps, &newton);
            let scale = sv.iter().fold(0.0f64, |a, b| a.max(b.abs()));
            for k in 0..n {
                let fd = -(gp[k] - gm[k]) / (2.0 * eps);
                assert!(
                    (fd - sv[k]).abs() < 1e-5 * scale,
                    "{:?} cell {k}: {fd} vs {}",
                    e,
                    sv[k]
                );
            }
            // And the gradient is the derivative of the dual value.
            let val_at = |t: f64| {
                let phi: Vec<f64> = p.phi.iter().zip(&dir).map(|(a, b)| a + t * b).collect();
                let rho = newton.densities(&phi, &p.rho).unwrap();
                newton.point(phi, rho).value
            };
            let fd = (val_at(eps) - val_at(-eps)) / (2.0 * eps);
            let exact: f64 = p.grad.iter().zip(&dir).map(|(a, b)| a * b).sum();
            assert!(
                (fd - exact).abs() < 1e-6 * (1.0 + exact.abs()),
                "{fd} vs {exact}"
            );
        }
    }
}

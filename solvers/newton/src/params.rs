//! Parameters of the Newton backend.

use jko_core::{InputError, at_least_one};
use serde::{Deserialize, Serialize};

/// Sparse factorisation of the reduced (Schur complement) system in φ.
///
/// Both factorisations solve the same system S d = ∇ψ, so the step does not depend on the
/// choice beyond round-off:
///
/// ```rust
/// use jko_core::{Energy, JkoStep, Mesh, StepSolver};
/// use jko_newton::{Factorization, NewtonParams, NewtonSolver};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::grid(&[6], &[0.0], &[1.0])?;
/// let rho0 = mesh.sample(|x| 1.0 + 0.5 * (3.0 * x[0]).cos());
/// let energy = Energy { entropy: Some(1.0), ..Energy::default() }.freeze(&mesh, &rho0)?;
/// let problem = JkoStep::new(&mesh, &rho0, 0.01, &energy)?;
/// let run = |factorization| -> Result<_, Box<dyn std::error::Error>> {
///     let params = NewtonParams { factorization, ..NewtonParams::default() };
///     Ok(NewtonSolver::new(params)?.step(&problem, None)?.rho)
/// };
/// let (llt, lu) = (run(Factorization::Cholesky)?, run(Factorization::Lu)?);
/// assert!((&llt - &lu).iter().all(|d| d.abs() < 1e-10));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Factorization {
    /// Sparse Cholesky LLᵀ of the lower triangle (the system is symmetric positive definite).
    Cholesky,
    /// Sparse LU of the full matrix (kept for comparison; slower).
    Lu,
}

/// Fill-reducing elimination order of the Cholesky factorisation.
///
/// `Auto` is nested dissection on 3D grids and approximate minimum degree elsewhere (measured:
/// nested dissection fills in less on 3D grids, minimum degree on 2D grids). The order changes
/// the factor's size and time, not the step (beyond round-off):
///
/// ```rust
/// use jko_core::{Energy, JkoStep, Mesh, Potential, StepSolver};
/// use jko_newton::{NewtonParams, NewtonSolver, Ordering};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::grid(&[12, 12], &[-2.0, -2.0], &[2.0, 2.0])?;
/// let rho0 = mesh.sample(|x| (-(x[0] * x[0] + x[1] * x[1])).exp());
/// let energy = Energy::fokker_planck(1.0, Potential::Quadratic { center: vec![0.0; 2], stiffness: 1.0 });
/// let frozen = energy.freeze(&mesh, &rho0)?;
/// let problem = JkoStep::new(&mesh, &rho0, 0.05, &frozen)?;
/// let run = |ordering| -> Result<_, Box<dyn std::error::Error>> {
///     Ok(NewtonSolver::new(NewtonParams { ordering, ..NewtonParams::default() })?.step(&problem, None)?.rho)
/// };
/// let (nd, amd) = (run(Ordering::NestedDissection)?, run(Ordering::MinimumDegree)?);
/// assert!((&nd - &amd).iter().all(|d| d.abs() < 1e-10));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ordering {
    /// Nested dissection on 3D grids, minimum degree otherwise.
    Auto,
    /// Geometric nested dissection (grids of dimension ≥ 2; minimum degree on other meshes).
    NestedDissection,
    /// faer's approximate minimum degree.
    MinimumDegree,
}

/// Settings of [`crate::NewtonSolver`] (serde: unknown fields are rejected, missing ones
/// take the defaults below).
///
/// Defaults: `tol = 1e-10`, `max_iter = 300`, `fallback_halving = 0`, `mu_initial = 0.1`,
/// Cholesky, `Ordering::Auto`.
///
/// ```rust
/// use jko_newton::{Factorization, NewtonParams};
///
/// let params = NewtonParams { tol: 1e-8, fallback_halving: 2, ..NewtonParams::default() };
/// assert!(params.validate().is_ok());
/// assert_eq!(params.factorization, Factorization::Cholesky);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NewtonParams {
    /// Stop when every scaled residual — mass balance, stationarity, complementarity, each
    /// expressed as a density error relative to max ρⁿ — is at most `tol`, or at most its
    /// round-off floor where that floor is larger (see the crate docs).
    pub tol: f64,
    /// Largest number of Newton iterations per step (a safeguard, not the stopping rule). Every
    /// iteration that factorises the Newton matrix counts: those of the active-set finish
    /// (successful or not) and those of an attempt that failed before another method or start
    /// took over.
    pub max_iter: usize,
    /// On failure, retry the step as two half steps, recursively up to this depth (0 = off).
    pub fallback_halving: usize,
    /// Initial barrier parameter μ of a cold start, relative to max ρⁿ × the energy scale,
    /// when a bound matters (no entropy term, or a congestion cap). A warm start begins at
    /// 10⁻⁴ of it; Mehrotra's predictor–corrector rule lowers it from there.
    pub mu_initial: f64,
    /// Factorisation of the reduced system.
    pub factorization: Factorization,
    /// Elimination order of the Cholesky factorisation.
    pub ordering: Ordering,
}

impl Default for NewtonParams {
    fn default() -> Self {
        NewtonParams {
            tol: 1e-10,
            max_iter: 300,
            fallback_halving: 0,
            mu_initial: 1e-1,
            factorization: Factorization::Cholesky,
            ordering: Ordering::Auto,
        }
    }
}

impl NewtonParams {
    /// Check the values: `tol` and `mu_initial` finite and in (0, 1), at least one
    /// iteration, fallback depth ≤ 20.
    ///
    /// # Errors
    /// [`InputError::InvalidParameter`] naming the first offending field.
    ///
    /// ```rust
    /// use jko_core::{InputError, at_least_one};
    /// use jko_newton::NewtonParams;
    ///
    /// let params = NewtonParams { mu_initial: 1.5, ..NewtonParams::default() };
    /// match params.validate() {
    ///     Err(InputError::InvalidParameter { name, .. }) => assert_eq!(name, "mu_initial"),
    ///     other => panic!("expected an invalid mu_initial, got {other:?}"),
    /// }
    /// ```
    pub fn validate(&self) -> Result<(), InputError> {
        let unit = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 && v < 1.0 {
                Ok(())
            } else {
                Err(InputError::parameter(
                    name,
                    v,
                    "must be finite and in (0, 1)",
                ))
            }
        };
        unit("tol", self.tol)?;
        unit("mu_initial", self.mu_initial)?;
        at_least_one("max_iter", self.max_iter)?;
        if self.fallback_halving > 20 {
            return Err(InputError::parameter(
                "fallback_halving",
                self.fallback_halving,
                "at most 20 halvings (2^20 sub-steps)",
            ));
        }
        Ok(())
    }
}

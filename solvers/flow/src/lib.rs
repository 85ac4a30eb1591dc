//! # jko-flow: JKO-Flow, the surrogate of the JKO scheme (Halmos & Hanin, arXiv 2511.14827)
//!
//! The JKO iterates with step η stay, over a fixed time, within O(η²) of the Wasserstein
//! gradient flow of the modified energy
//!
//!   J^η(ρ) = J(ρ) − (η/4) ∫ |∇ δJ/δρ|² ρ = J − (η/4) |grad J|²,
//!
//! while the plain gradient flow of J is only O(η) away. Since grad(½|grad J|²) = Hess J[grad J]
//! on any Riemannian manifold, grad J^η = grad J − (η/2) Hess J[grad J]; the **resummed**
//! velocity −(I + (η/2) Hess J)⁻¹ grad J agrees with it to O(η²) and is well posed, where the
//! J^η flow itself is anti-diffusive at fourth order (Fourier mode k grows at rate
//! −k² + (η/2)k⁴; docs/mathematics.md §2.4).
//!
//! - [`gaussian`]: Bures–Wasserstein (Gaussian) JKO-Flow for KL to a Gaussian and for pure
//!   entropy, any dimension: ODEs for (m, S) integrated to ~1e-12 next to the exact JKO iterates
//!   and the exact gradient flow; batched with rayon; the implicit-bias table.
//! - [`mesh`]: the gradient flow of the discrete modified energy J^η_h in the two-point-flux
//!   geometry of the proximal backends, explicit adaptive Dormand–Prince stages, rayon over cells
//!   and faces; the `modified` variant refuses η·λ_max ≥ 2, the `resummed` variant is stable.
//! - [`quantile`]: 1D quantile (Lagrangian) coordinates, where W₂ is flat and Hess J is the plain
//!   Hessian: the resummed flow (one tridiagonal solve per stage) and the proximal step on the
//!   same discretisation, for the implicit-bias studies (order 2 in η for OU and V = x⁴/4).
//! - [`FlowSolver`]: the surrogate as a [`jko_core::StepSolver`] named `flow`: one "step"
//!   integrates the flow with η = τ over a time τ.
//! - [`ode`]: the adaptive Runge–Kutta integrator both use.

#![warn(missing_docs)]

pub mod gaussian;
pub mod mesh;
pub mod ode;
pub mod quantile;
mod solver;

pub use mesh::{FlowStats, MeshFlow};
pub use solver::{FlowParams, FlowSolver};

use jko_core::{InputError, StepError};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Which velocity field is integrated.
///
/// ```rust
/// use jko_flow::{FlowParams, Variant};
///
/// let params: FlowParams = serde_json::from_str(r#"{ "variant": "modified" }"#).unwrap();
/// assert_eq!(params.variant, Variant::Modified);
/// assert_eq!(Variant::default(), Variant::Resummed);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// The gradient flow of J^η as it stands: −grad J + (η/4) grad |grad J|². Ill-posed at high
    /// frequency; on a mesh it is integrated only while η·λ_max < 2.
    Modified,
    /// −grad J + (η/2)(I + (η/2) P)⁻¹ Hess J[grad J], P a positive approximation of Hess J
    /// (exactly Hess J for Gaussians): the resummed velocity, within O(η²) of the J^η flow.
    #[default]
    Resummed,
}

/// Why a JKO-Flow integration failed.
///
/// Converts into [`StepError`]: input problems and the stability limit become
/// [`StepError::Input`] (the limit names `tau`), unsupported terms
/// [`StepError::Unsupported`], integration failures [`StepError::Numerical`].
///
/// ```rust
/// use jko_core::StepError;
/// use jko_flow::FlowError;
///
/// let e = FlowError::StabilityLimit { eta: 0.1, lambda_max: 40.0, product: 4.0 };
/// assert!(matches!(StepError::from(e), StepError::Input(_)));
/// let e = FlowError::StepSizeUnderflow { t: 0.01, dt: 1e-15 };
/// assert!(matches!(StepError::from(e), StepError::Numerical { .. }));
/// ```
#[derive(Debug, Error, Clone)]
pub enum FlowError {
    /// The data or the parameters were rejected before any work.
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(
        "the modified (un-resummed) JKO-Flow is stable only while eta*lambda_max < 2, but eta = {eta:e}, \
         lambda_max = {lambda_max:e} (Gershgorin bound of the discrete Hessian, ~4 d beta / h^2 for entropy), \
         eta*lambda_max = {product:.3}: use variant = \"resummed\", a smaller eta or a coarser mesh"
    )]
    /// The `modified` variant was asked for η·λ_max ≥ 2, where it is unstable.
    StabilityLimit {
        /// Step η (= τ).
        eta: f64,
        /// Gershgorin bound of the discrete Hessian of J.
        lambda_max: f64,
        /// η·λ_max.
        product: f64,
    },
    #[error("the flow backend does not treat the energy term `{term}`")]
    /// An energy term the surrogate does not treat.
    Unsupported {
        /// The term, as displayed in configs.
        term: String,
    },
    #[error("more than {max} substeps: reached t = {t_reached:e} of {t_end:e}")]
    /// The Runge–Kutta integration needed more than `max` substeps.
    TooManySubsteps {
        /// The substep cap.
        max: usize,
        /// Time reached.
        t_reached: f64,
        /// Time to reach.
        t_end: f64,
    },
    #[error("the substep fell to {dt:e} at t = {t:e} (stiffness or a state leaving the domain)")]
    /// The adaptive substep became negligible against t.
    StepSizeUnderflow {
        /// Time reached.
        t: f64,
        /// The substep at failure.
        dt: f64,
    },
    #[error("inadmissible state: {reason}")]
    /// The initial state is outside the flow's domain (e.g. a zero density with entropy).
    Inadmissible {
        /// What is wrong.
        reason: String,
    },
    #[error("the flow collapsed at t = {time:e}: {reason}")]
    /// The state left the domain during the integration.
    Collapse {
        /// Time of the collapse.
        time: f64,
        /// What happened.
        reason: String,
    },
    #[error(
        "the linear solve of the resummed velocity did not converge: {iterations} iterations, relative residual {residual:e}"
    )]
    /// The conjugate-gradient solve of the resummed velocity did not reach `linear_tol`.
    LinearSolve {
        /// CG iterations done.
        iterations: usize,
        /// Final relative residual.
        residual: f64,
    },
}

impl From<FlowError> for StepError {
    fn from(e: FlowError) -> Self {
        match e {
            FlowError::Input(i) => StepError::Input(i),
            FlowError::Unsupported { term } => {
                // The term's name starts the text; what follows it is detail for the hint.
                let (energy_term, detail) = jko_core::EnergyTerm::ALL
                    .iter()
                    .find_map(|t| term.strip_prefix(&t.to_string()).map(|rest| (*t, rest)))
                    .unwrap_or((jko_core::EnergyTerm::Potential, term.as_str()));
                StepError::Unsupported {
                    solver: "flow".into(),
                    term: energy_term,
                    hint: format!(
                        "{detail} (the JKO-Flow surrogate treats entropy, porous medium and potentials)"
                    ),
                }
            }
            FlowError::StabilityLimit { eta, .. } => {
                StepError::Input(InputError::parameter("tau", eta, &e.to_string()))
            }
            other => StepError::Numerical {
                solver: "flow".into(),
                message: other.to_string(),
            },
        }
    }
}

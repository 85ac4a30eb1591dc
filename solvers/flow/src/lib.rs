//! # jko-flow: JKO-Flow, the surrogate of the JKO scheme (Halmos & Hanin, arXiv 2511.14827)
//!
//! The JKO iterates with step η stay, over a fixed time, within O(η²) of the Wasserstein
//! gradient flow of the modified energy
//!
//!   J^η(ρ) = J(ρ) − (η/4) ∫ |∇ δJ/δρ|² ρ = J − (η/4) |grad J|²,
//!
//! while the plain gradient flow of J is only O(η) away. [`FlowSolver`] (backend `flow`)
//! integrates a well-posed form of that flow with η = τ over a time τ on the two-point-flux
//! meshes of the proximal backends ([`mesh`]). This page derives the form and the integrator and
//! says why each piece is there (docs/mathematics.md §2.4 is the summary); the numbers quoted were
//! measured with the code in this crate.
//!
//! ## 1. The J^η flow
//!
//! For J(ρ) = ∫ f(ρ) + Vρ (f the internal energy: β s log s, s^m/(m − 1); V a potential, a
//! frozen interaction W∗ρⁿ included), ψ = δJ/δρ = f'(ρ) + V and the plain flow is
//! ρ̇ = ∇·(ρ∇ψ) = −g. The Fisher term Φ = ∫|∇ψ|²ρ has δΦ/δρ = |∇ψ|² + 2 f''(ρ) g, so the flow
//! of J^η is ρ̇ = ∇·(ρ∇φ) with
//!
//!   φ = ψ − (η/4) |∇ψ|² + (η/2) f''(ρ) ρ̇_plain.
//!
//! Linearised at an equilibrium (Hess J ≈ P = −∇·(ρ∇(f''·))) its rates are −λ + (η/2)λ²:
//! mode k grows like e^{(η/2)β²k⁴t}, an ill-posed anti-diffusion (the `modified` variant, kept
//! for studies, refuses η·λ_max ≥ 2).
//!
//! ## 2. Resummation
//!
//! Any velocity −g + (η/2) Ĥg + O(η²) (Ĥg = Hess J[grad J]) keeps the O(η²) agreement. Replacing
//! ρ̇_plain by a combination of the actual rate ρ̇ and ρ̇_plain,
//!
//!   φ = ψ − (η/4) |∇ψ|² + η f''(ρ) [ b ρ̇ + (½ − b) ρ̇_plain ],
//!
//! changes φ by bη f''(ρ̇ − ρ̇_plain) = O(η²) and makes the relation implicit; the linearised
//! rates become −λ (1 + (b − ½)ηλ)/(1 + bηλ). b = ½ is the classical resummed velocity
//! −(I + (η/2)Hess J)⁻¹ grad J: its rates saturate at −2/η, so high frequencies are only damped
//! by e⁻² per step, and the nonlinear term −(η/4)|∇ψ|² (whose linearisation, resummed,
//! transports perturbations at speed ~|∇ψ|/(2b)) steepened Gaussian tails until the integration
//! failed (measured: 1D OU at 1000 cells, τ ≥ 0.1, every run). For b > ½ the high-frequency rate
//! is −λ(b − ½)/b: the flow is parabolic again. b = 2/3 matches the JKO step's linear rates
//! −log(1 + ηλ)/η to O(η²λ³); b = [`mesh::RESUMMATION`] = 0.6 was kept because it gave the
//! smallest errors against exact JKO iterates (OU 1D, 1000 cells, τ = 0.1, three steps, L1:
//! 1.39e-3 at b = 0.6, 2.18e-3 at b = 2/3; b = ½ fails).
//!
//! ## 3. Where the stiffness came from, and the discretisation
//!
//! The previous mesh integrator (explicit Dormand–Prince on the arithmetic-mean two-point-flux
//! geometry, b = ½) failed on 1D OU at 1000–4096 cells (τ = 0.1), at τ = 0.5 everywhere, and on
//! every 2D example. Measured causes, each treated here:
//!
//! - **The arithmetic face mean** θ = (ρ_K + ρ_L)/2 in a tail where ρ_L/ρ_K = e^{−a},
//!   a = h|∇log ρ|: the diffusive rate of the smaller cell is ~e^{a}/(2h²) (a ≈ 7.5 on 2D 32²).
//!   Fix: Scharfetter–Gummel fluxes (module `flux`) F = T[E(κ, w)ρ_K − E(κ, −w)ρ_L],
//!   E(κ, w) = w/(e^{w/κ} − 1), w the drift-potential difference, κ = ΔP/Δρ the face
//!   diffusivity of the pressure P = ρf' − f. The flux is second order, exactly zero on discrete
//!   Gibbs states, linear in ρ for the entropy, has no log ρ (vacuum is an ordinary state), and
//!   lets no mass leave an empty cell.
//! - **The fourth-order anti-diffusion**: resummed as in §2, implicitly.
//! - **Advection of perturbations** by the correction (speed ~|∇ψ|/(2b), |∇ψ| ≈ 20 in the tails
//!   of ou-1d): explicit integration needs h_t < h/|∇ψ| (thousands of substeps at 16384 cells).
//!   Fix: a linearly implicit integrator with the exact Jacobian.
//! - **Tails that grow by orders of magnitude within a step** (ρ̇/ρ ≈ 100 five deviations out):
//!   in ρ-variables the Jacobian has eigenvalues ≈ ρ̇/ρ − 2/η > 0 there, and linearly implicit
//!   steps explode. Fix: for the corrected flow under the entropy, the state variable
//!   y = log(ρ + ρ*), in which that growth is additive; ρ* = floor · max ρⁿ (1e-150).
//! - **Cells filled from vacuum** (a porous-medium front, the plain flow from a state with empty
//!   cells): such a cell receives a flux independent of its own density and grows linearly,
//!   ρ ≈ c t; in the log variable that is log(c t + ρ*), with curvature c²/ρ*² at the start,
//!   and every front cell forced substeps of ~ρ*/c (measured: "more than 1000 substeps" in
//!   the first 2–10 % of the first step on every porous case of the robustness matrix with
//!   m = 3 or in 2D, "the substep fell to 3.3e-12" from vacuum). There are no exponentially
//!   growing tails in these flows — a porous medium without entropy has compact support, and
//!   the plain flow under the entropy is the linear system ρ̇ = Aρ with a generator A — so
//!   they integrate y = ρ (negative round-off of the linearly implicit stages is set to zero on
//!   acceptance, its mass recorded in `clipped_mass`, the mass restored by rescaling).
//!
//! The correction enters the fluxes as a drift potential: with W = V + ζ,
//!
//!   ρ̇_K = R_K(ρ, ζ) = −(1/|K|) Σ_{σ∋K} ±F_σ(ρ, W),
//!   0 = G_K = ζ_K + (η/4) g²_K − η f''(ρ_K) [b R_K(ρ, ζ) + (½ − b) R_K(ρ, 0)],
//!
//! g²_K = (1/(2|K|)) Σ_{σ∋K} T_σ (ψ_L − ψ_K)² the cell value of |∇ψ|². To first order in ζ the
//! SG flux is the centred T_σθ_σ Δ(ψ + ζ), so this is the resummed flow of §2; f'' and ψ see
//! ρ + ρ*. An index-1 DAE (∂G/∂ζ = I + bηf''V⁻¹L_ω, L_ω the Laplacian of the face weights
//! −∂F/∂w > 0): mass is conserved by construction, ρ ≥ 0 is preserved by the exact flow.
//!
//! ## 4. Time integration
//!
//! ROS34PW2 (module `rosenbrock`; Rang & Angermann, BIT 45, 2005): a Rosenbrock–W method with four stages,
//! order 3, L-stable, stiffly accurate, with order conditions for index-1 DAEs and order 2 with
//! any Jacobian approximation. One sparse factorisation of W = M/(hγ) − J (2n unknowns
//! (y_K, ζ_K) with the mesh graph's 2×2 blocks) serves the four stages: block elimination on 1D
//! chains (O(n)), faer's sparse LU otherwise; the factorisation is kept while the substep stays
//! the same and the steps are accepted (within a step and across steps; a rejected substep with
//! an old factorisation is retried with a fresh one first). The local error estimate is the
//! L1 norm of the error of ρ (the error of y times dρ/dy) plus the mass defect (the log
//! variable does not conserve mass exactly; the accepted state is rescaled to the mass) over
//! rtol · mass, and, in the log variable, the largest error of y in any cell above ρ* over 1
//! (a safeguard of the tails — a substep may not move a tail cell's density by more than a
//! factor e — not an accuracy control: at 0.1 it held every OU 2D 64² step, τ = 0.1, to
//! substeps of τ/4–τ/3 through cells that carry no mass). Default rtol: 5 τ³ within
//! [1e-9, 1e-2]. The estimate is the error of the embedded order-2 solution (∝ h³), while the
//! propagated solution has order 3 (local error ∝ h⁴): at 5 τ³ one substep h = τ is accepted
//! on smooth states (its factorisation reused by the next steps), and the integration's global
//! error is O(τ³), below the surrogate's O(τ²) distance to the JKO iterates as τ → 0. At
//! τ = 0.1 the two are comparable (OU 1D, 1000 cells, L1 to the exact JKO iterates at
//! η = 0.1, 0.05, 0.025: 1.37e-3, 2.39e-4, 4.20e-5, observed orders 2.5; with rtol = 0.05 τ³,
//! the default before round 4: 5.6e-4, 1.30e-4, 2.70e-5, orders 2.1, 2.3, at 3× the substeps;
//! OU 2D 64²: a step at ~0.2 of a newton step instead of 0.8–0.9, L1 to the exact JKO iterate
//! 9.4e-4 instead of 1.2e-3; example `issue15_targets`).
//! The consistent ζ at the start is found by Newton's method with the symmetric positive
//! definite systems (V/f'' + bηL_ω) δζ = −(V/f'') G (sparse Cholesky), warm-started from the
//! previous step's ζ; a warm start needs one factorisation (the residual is checked before
//! each). Per evaluation, the fluxes without ζ under the entropy alone are linear in ρ with
//! coefficients fixed by V (cached per step), and each face needs one exponential
//! (B(−x) = B(x) + x gives both directions of the Scharfetter–Gummel flux).
//!
//! ## 5. When the correction cannot be applied
//!
//! - From a state with empty cells under the entropy (log ρ = −∞) the step is the plain
//!   gradient flow (it fills them; integrated in ρ, §3), said in the step's notes.
//! - If the corrected integration cannot proceed (substep underflow, substep cap, singular
//!   factorisation) the step is retried as the plain flow, status `AlmostSolved`, the reason in
//!   the notes. The congestion bound ρ ≤ ρ_max is refused before the first step.
//!
//! ## Modules
//!
//! - [`mesh`]: the discrete flow and its integration ([`MeshFlow`]).
//! - [`FlowSolver`]: the surrogate as a [`jko_core::StepSolver`] named `flow`.
//! - [`gaussian`], [`quantile`], [`ode`]: Bures–Wasserstein and quantile-coordinate studies of
//!   the implicit bias and their Dormand–Prince integrator.

#![warn(missing_docs)]

mod flux;
pub mod gaussian;
mod linear;
pub mod mesh;
pub mod ode;
pub mod quantile;
mod rosenbrock;
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
    /// The gradient flow of J itself (η ignored): O(η) from the JKO iterates, the baseline of
    /// the implicit-bias studies.
    Plain,
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
/// let e = FlowError::Unsupported { term: jko_core::EnergyTerm::MaxDensity, reason: "no smooth flow" };
/// assert!(matches!(StepError::from(e), StepError::Unsupported { term: jko_core::EnergyTerm::MaxDensity, .. }));
/// let e = FlowError::StepSizeUnderflow { t: 0.01, dt: 1e-15, reason: "cell 3".into() };
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
    #[error("the flow backend does not treat the energy term `{term}`: {reason}")]
    /// An energy term the surrogate does not treat.
    Unsupported {
        /// The term.
        term: jko_core::EnergyTerm,
        /// Why (the form of the term that is outside the method).
        reason: &'static str,
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
    #[error("the substep fell to {dt:e} at t = {t:e}: {reason}")]
    /// The adaptive substep became negligible against t.
    StepSizeUnderflow {
        /// Time reached.
        t: f64,
        /// The substep at failure.
        dt: f64,
        /// What stopped the substep, and where (cell, quantity).
        reason: String,
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
    #[error("the sparse factorisation of the Rosenbrock matrix failed at t = {t:e}: {message}")]
    /// The sparse LU factorisation of a substep's matrix failed.
    Linear {
        /// Time reached.
        t: f64,
        /// The factorisation's message.
        message: String,
    },
}

impl From<FlowError> for StepError {
    fn from(e: FlowError) -> Self {
        match e {
            FlowError::Input(i) => StepError::Input(i),
            FlowError::Unsupported { term, reason } => StepError::Unsupported {
                solver: "flow".into(),
                term,
                hint: format!(
                    "{reason} (the JKO-Flow surrogate treats entropy, porous medium and potentials)"
                ),
            },
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

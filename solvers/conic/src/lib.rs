//! # jko-conic: the JKO step as a conic program, solved by Clarabel
//!
//! The foundation backend of the jko engine: it solves the one-step two-point-flux JKO
//! problem (docs/mathematics.md §2.1, the variational finite-volume scheme of Cancès, Gallouët and
//! Todeschi, Numer. Math. 2020) to interior-point accuracy, and the other backends are
//! checked against it. With [`ConicParams::levels`] it solves the multi-level dynamic
//! Benamou–Brenier step of docs/mathematics.md §2.2 instead (see [below](#the-multi-level-scheme)),
//! whose iterates converge to the exact JKO iterates.
//!
//! ## The problem
//!
//! On a mesh with cells K (volume |K|) and interior faces σ = K|L (area |σ|, centre distance
//! d_σ, transmissibility T_σ = |σ|/d_σ), with G_σ the mass moved across σ from `face.k` to
//! `face.l` and θ_σ = (ρ_K + ρ_L)/2:
//!
//! ```text
//! minimise   (1/(2τ)) Σ_σ G_σ²/(T_σ θ_σ) + Σ_K |K| [ f(ρ_K) + V_K ρ_K ]
//! subject to |K|(ρ_K − ρⁿ_K) + Σ_{σ∋K} ±G_σ = 0,   0 ≤ ρ_K (≤ ρ_max),
//! ```
//!
//! f(s) = β s log s + s^m/(m−1); V contains a frozen interaction term when there is one.
//!
//! ## The conic form
//!
//! Unknowns are scaled to be O(1): r = ρ/c with c = max ρⁿ, and per face the momentum-like
//! ĝ_σ = G_σ/(τ|σ|c). Then
//! - continuity (zero cone, one row per cell, divided by c|K|):
//!   r_K − rⁿ_K + (τ/|K|) Σ_{σ∋K} ±|σ| ĝ_σ = 0  (+ when `face.k == K`);
//! - kinetic: G²/(Tθ) = c τ²|σ|d_σ ĝ²/θ̂, θ̂ = (r_K + r_L)/2; an epigraph u_σ ≥ ĝ²/θ̂ is the
//!   second-order cone ‖(2ĝ, u − θ̂)‖ ≤ u + θ̂ (since (u+θ̂)² − (u−θ̂)² = 4uθ̂), objective
//!   (τ/2)|σ|d_σ c u_σ;
//! - entropy: t ≥ r log r ⇔ (−t, r, 1) ∈ K_exp = cl{x : x₂ e^{x₁/x₂} ≤ x₃}, and
//!   β ρ log ρ = βc (r log r + r log c);
//! - porous medium: t ≥ r^m ⇔ (t, 1, r) ∈ K_pow(1/m) = {x : x₁^α x₂^{1−α} ≥ |x₃|}, and
//!   ρ^m/(m−1) = c^m r^m/(m−1);
//! - potential: linear cost |K| V_K c r_K;
//! - r ≥ 0 always (the power cone admits r < 0), r ≤ ρ_max/c with congestion.
//!
//! The whole objective is divided by the mass M of ρⁿ (energy per unit mass), so that
//! Clarabel's relative gap tolerance has the same meaning whatever the mass.
//!
//! ## The multi-level scheme
//!
//! The scheme of docs/mathematics.md §2.2.
//!
//! With `levels = Some(L)`: levels j = 0..L on the unit time interval, ρ_0 = ρⁿ fixed,
//! ρ_1..ρ_L free (ρ_L = ρ^{n+1}), one flux G_{σ,j+½} per face and interval, and
//!
//! ```text
//! minimise   (1/(2τ)) L Σ_j Σ_σ G²_{σ,j+½}/(T_σ θ_{σ,j+½}) + F_h(ρ_L)
//! subject to |K|(ρ_{j+1,K} − ρ_{j,K}) + Σ_{σ∋K} ±G_{σ,j+½} = 0,  ρ_j ≥ 0 (≤ ρ_max),
//! θ_{σ,j+½} = (ρ_{j,K} + ρ_{j,L} + ρ_{j+1,K} + ρ_{j+1,L})/4.
//! ```
//!
//! *Scaling of the action.* Benamou–Brenier on [0, 1] with Δt = 1/L: W² = ∫₀¹ ∫ |m|²/ρ.
//! With G_{σ,j+½} = Δt |σ| m_σ the mass crossing σ during interval j (continuity
//! ρ_{j+1} − ρ_j + Δt div m = 0 becomes the constraint above), the action
//! Σ_j Δt Σ_σ |σ| d_σ m_σ²/θ = Σ_j Σ_σ G²/(Δt T_σ θ) = L Σ_j Σ_σ G²/(T_σ θ).
//! For a translation by δ (measured: cos² bump, δ = 0.4, [-1, 1]) action/(δ²·mass) − 1 is
//! 2.1e-1, 3.0e-2, 4.6e-3, 8.4e-4, 2.5e-4 for L = 1, 2, 4, 8, 16 at N = 100 (order ≈ 2.8 in L
//! down to an O(h²) floor: 1.1e-3, 2.5e-4, 1.0e-4 at L = 16 for N = 50, 100, 200).
//!
//! *L = 1* is one interval with θ averaged over ρⁿ and ρ^{n+1}: not the one-step scheme of
//! §2.1 (`levels = None`), whose θ uses ρ^{n+1} only. Both are consistent O(1)-interval
//! discretisations; L = 1 is simply the coarsest member of the converging family, so
//! `levels = Some(1)` is kept as that (documented, tested to differ from §2.1).
//!
//! *Energy* (entropy, porous medium, potential including a frozen interaction) acts on ρ_L
//! only. *Congestion* ρ ≤ ρ_max is imposed on every free level: in the continuous model the
//! W² geodesic between two densities ≤ ρ_max stays ≤ ρ_max (the constraint is displacement
//! convex, McCann 1997), so imposing it along the path costs nothing in the limit and keeps
//! the discrete path admissible for crowd motion (a path through ρ > ρ_max is not a crowd
//! motion); ρ ≥ 0 is imposed on every free level as well.
//!
//! *What a step returns.* `rho` = ρ_L; `flux` = Σ_j G_{σ,j+½}, the total mass moved across
//! each face over the step (so |K|(ρ_L − ρⁿ) + div flux = 0); `info.kinetic` = the discrete
//! action above; `potential` = φ of the last interval, the Benamou–Brenier potential on the
//! unit time interval: G_{σ,L−½} = (1/L) T_σ θ_{σ,L−½} (φ_L − φ_K), and where ρ_L > 0
//! |K|(f'(ρ_L) + V_K) + |K| φ_K/τ − (1/(8τL)) Σ_{σ∋K} T_σ (φ_L − φ_K)² = 0 (with L = 1 and θ
//! from ρ^{n+1} alone, 1/(8τL) becomes §2.1's 1/(4τ)). [`ConicSolver::step_full`] returns all
//! levels and fluxes; [`ConicSolver::transport`] the discrete W² between two given densities.
//!
//! *Scalings* as for one step, with ĝ_{σ,j} = L G_{σ,j+½}/(τ|σ|c): continuity
//! r_{j+1,K} − r_{j,K} + (τ/(L|K|)) Σ ±|σ| ĝ_{σ,j} = 0 and kinetic cost (τ/(2L))|σ| d_σ c u
//! with u ≥ ĝ²/θ̂; fixed levels enter θ̂ and the continuity rows as constants. The one-step
//! scheme is the same assembly with L = 1 and θ weights (0, ½) instead of (¼, ¼).
//!
//! *Convergence to the exact JKO iterates* (OU, β = k = 1, on [-5, 5] from N(1, 0.5²),
//! τ = 0.1, 3 steps; errors against `OrnsteinUhlenbeck::jko_iterates`; measured with
//! `cargo run --release -p jko-conic --example multilevel`):
//!
//! | N   | L        | mean err | var err | L1 err  | order (var, L1) |
//! |-----|----------|----------|---------|---------|-----------------|
//! | 100 | one-step | 2.13e-2  | 4.35e-2 | 2.84e-2 |                 |
//! | 400 | one-step | 2.16e-2  | 4.31e-2 | 2.86e-2 |                 |
//! | 50  | 1        | 4.13e-4  | 6.17e-3 | 4.77e-3 |                 |
//! | 100 | 2        | 2.01e-4  | 1.80e-3 | 1.25e-3 | 1.78, 1.93      |
//! | 200 | 4        | 5.89e-5  | 4.73e-4 | 3.19e-4 | 1.93, 1.97      |
//! | 400 | 8        | 1.54e-5  | 1.20e-4 | 8.04e-5 | 1.98, 1.99      |
//! | 800 | 16       | 3.88e-6  | 3.01e-5 | 2.01e-5 | 2.00, 2.00      |
//!
//! Refining one parameter alone: at N = 800 the mean error is second order in L (7.1e-4,
//! 2.3e-4, 6.1e-5, 1.5e-5, 3.9e-6 for L = 1..16) while variance and L1 reach the O(h²) floor;
//! at L = 16 variance and L1 are second order in h (orders 1.93, 1.95, 1.86 for N = 50..400).
//! So the multi-level error is O(h² + 1/L²) against the exact JKO iterate, while the
//! one-step scheme keeps its O(τ) gap whatever h.
//!
//! *Cost.* L times the unknowns of one step (plus the energy cones once). One OU 2D step on
//! [-4, 4]² with L = 4 (`examples/timing.rs --levels 4`, release, faer): 32² (21k unknowns)
//! 100 iterations, `AlmostSolved`; 64² (85k unknowns) 70 iterations, `AlmostSolved`, 91 s wall
//! on the shared 2-core machine at load 11 (the whole run: 39 s CPU for 115 s wall), peak RSS
//! 212 MiB. The Gaussian tails of that problem (1e-17 of the peak) make Clarabel stall as
//! for one step (see below).
//!
//! ## Dual potential
//!
//! With multipliers ψ_K of the continuity constraints (in mass units), stationarity in G gives
//! G_σ = τ T_σ θ_σ (ψ_L − ψ_K), so φ = τψ satisfies docs/mathematics.md's G_σ = T_σ θ_σ (φ_L − φ_K), and
//! stationarity in ρ_K gives
//!
//! ```text
//! |K|(f'(ρ_K) + V_K) + |K|φ_K/τ − (1/(4τ)) Σ_{σ∋K} T_σ (φ_L − φ_K)² = λ_K − μ_K,
//! ```
//!
//! λ_K ≥ 0, λ_K ρ_K = 0 (and μ_K ≥ 0, μ_K(ρ_max − ρ_K) = 0 with congestion). Clarabel's
//! Lagrangian is qᵀx + zᵀ(Ax − b); the scaled continuity row is C_K/(c|K|), so
//! φ_K = τ M z_K/(c |K|).
//!
//! ## Polishing, warm start and defaults
//!
//! Clarabel alone cannot be the reference: on tails many orders below the peak its endgame
//! stalls (`AlmostSolved`, see "Accuracy and status" below), and its duality-gap tolerance
//! leaves ρ off by up to ~1e-5 of the peak at gap 1e-8 (measured against gap 1e-10 on
//! OU 1D, 1024 cells). So by default ([`ConicParams::default`]) Clarabel runs to a loose
//! tolerance (1e-6) and its point is *polished*: Newton's method on the KKT system of the
//! same discrete problem (module `polish`: fluxes eliminated exactly, a symmetric
//! quasi-definite system in (δρ, δψ) factorised by QDLDL with iterative refinement, LU
//! fallback; entropy cells move in log ρ; cells at 0 or ρ_max held and released by the sign
//! of their multiplier; with entropy and a congestion cap the cells at the cap are found first
//! by a barrier −ε log(ρ_max − ρ) driven to 0, see `polish::polish_under_cap`). The step is
//! `Solved` only when every KKT row holds to `polish_tol`
//! (1e-9) relative to the size of its terms and every held cell has a multiplier of the
//! right sign — conditions that certify the minimiser of the convex problem, whatever the
//! interior point's status; the mass is then projected back onto the transport constraint
//! (a correction of round-off size, recorded in the notes). If the polish fails from the
//! loose point, Clarabel runs again at [`MULTILEVEL_IPM_TOL`] and the polish is retried;
//! if that fails too the interior-point solution is returned as `AlmostSolved` with its
//! mass projected. With `levels` the interior point always runs at ≤ 1e-8.
//!
//! *Warm start.* Clarabel has no warm start, but the polish does: given the previous step's
//! ρ and φ ([`WarmStart`] from this backend, as the driver passes them), the one-step scheme
//! polishes from them directly, without Clarabel (5–6 Newton steps on OU 1D instead of
//! ~15 interior-point iterations + 2 Newton steps); when that polish does not converge within
//! 20 Newton steps (a free boundary that moved: porous media) the step runs cold. The answer
//! is the same certified KKT point either way. In a run this is what makes conic fast: on
//! OU 64² the warm steps take 5–8 Newton steps, ~5–10× less than a cold step (measured with
//! `examples/cvxpy_compare.rs --steps`, docs/notes/issue-17.md).
//!
//! *Newton from ρⁿ* ([`ConicParams::newton_start`], default on). Without a warm start, the
//! one-step scheme first polishes from the explicit guess ρ^{n+1} = ρⁿ (with entropy, tails
//! raised to 1e-10 of the peak, where an interior point would leave them) and
//! φ = −τ(f'(ρⁿ) + V), the potential that makes the density rows hold at G = 0, with a budget of
//! 30 Newton steps; the answer carries the same certificate as any polished step, and when
//! Newton does not get there Clarabel runs as before. On OU it converges in 14 steps at 1024
//! cells and 64², 20–25 at 128², several times faster than Clarabel on the same program
//! (docs/notes/issue-17.md); without energy ρⁿ itself is the certified minimiser (no step). It
//! is not tried with a porous term or a congestion bound, whose active sets move by many cells
//! (a porous front is released one cell per round of the polish: slower than Clarabel).
//!
//! ## Restriction to the support
//!
//! ([`ConicParams::restrict_support`], default on.) Without entropy a density of compact
//! support (porous media) keeps a compact support over one step, and every cone of the empty
//! region is wasted work for Clarabel (porous m = 2 at 64²: 1020 cells with mass in ρⁿ, 1508
//! after the step, 4096 in all). A one-step problem without entropy and without a warm start
//! is therefore solved first on the cells within a margin of face-neighbour layers around the
//! support of ρⁿ (module `support`: a wall of no flux around them, i.e. the whole problem with
//! ρ = 0 imposed outside; the margin from the explicit velocity, widened when the answer has
//! mass above `polish_tol` of its peak in the outermost layer). The restricted answer is then
//! lifted to the whole mesh and polished there: `Solved` carries the certificate of the whole
//! problem (every KKT row to `polish_tol`, every cell outside held at 0 with a multiplier of
//! the right sign), so the restriction changes the cost, never the answer; when that
//! certificate fails, the whole problem is solved as before.
//!
//!
//! (Measurements of Clarabel alone, without polishing, which motivated it.)
//! Accuracy of ρ is max|Δρ|/max ρ against a run at gap 1e-14 (measured, Clarabel 0.11.1):
//!
//! | problem                                 | gap 1e-10 | gap 1e-11 | gap 1e-12 |
//! |-----------------------------------------|-----------|---------------------|-----------|
//! | OU 2D, 32², Gaussian                    | 2.5e-9    | 2.2e-10             | 5.9e-12   |
//! | OU 1D on [-3, 3], N = 100               | 1.3e-6    | 5.4e-9              | 1.5e-11   |
//! | OU 1D on [-5, 5] (tails 1e-31)          | 4.2e-9    | 3.7e-9 (stalls)     | stalls    |
//! | porous m = 2 (free boundary), N = 100   | 2.8e-6    | 9.8e-8              | 5.1e-9    |
//! | congestion 2D, 16², bound active        | 1.6e-6    | 4.0e-7              | 1.2e-7    |
//!
//! Mass is conserved to 1e-11 relative or better at tol_feas = 1e-10. The gap
//! tolerance 1e-11 is the tightest that Clarabel usually reaches: it gives ~1e-8 on smooth
//! positive densities and ~1e-7 at free boundaries and active congestion bounds, which are
//! degenerate for interior-point methods. Below it, Clarabel's endgame often stalls (step
//! lengths collapse near a relative gap of 1e-11 to 1e-9), notably for densities with tails
//! many orders below their peak and with the faer solver in 2D; Clarabel then reports
//! `AlmostSolved`, which is returned as [`StepStatus::AlmostSolved`](jko_core::StepStatus)
//! with the achieved gap in the notes (or is an error when `accept_almost_solved` is false).
//! Any other Clarabel status is [`StepError::NotConverged`] naming it.
//!
//! *Tails, measured* (`examples/accuracy.rs`: one step of data/examples/ou-2d.toml, Gaussian
//! mean (1, −0.5), std (0.5, 0.8), τ = 0.1; "spread" is max|Δρ|/max ρ to a run at gap 1e-14,
//! itself `AlmostSolved`):
//!
//! | variant                                           | 32²                      | 64²                       |
//! |---------------------------------------------------|--------------------------|---------------------------|
//! | default, [-5, 5]² (tails 1e-31)                   | AlmostSolved, 100 it     | AlmostSolved, 37–100 it   |
//! | spread to the gap-1e-14 run                       | 1.8e-8 – 2.6e-8          | 0 – 1.6e-8                |
//! | same Gaussian on [-3, 3]² (tails 1e-14)           | Solved, 47 it            | Solved, 55 it             |
//! | same Gaussian on [-2, 2]²                         | Solved, 48 it            | Solved, 51 it             |
//! | same Gaussian on [-4, 4]² (tails 1e-22)           | AlmostSolved, 100 it     | AlmostSolved, 86 it       |
//! | per-cell scaling s_K = max(ρⁿ_K, f max ρⁿ), f = 1e-4, 1e-8, 1e-12, 1e-20 | 1 of 4 Solved (66 it, but 1.7e-5 spread) | 1 of 4 Solved (49 it) |
//! | QDLDL; or without the ρ ≥ 0 rows (redundant with the exponential cone) | AlmostSolved, 81–100 it | AlmostSolved, 52–100 it |
//!
//! Clarabel settings changed nothing or made it worse: equilibration (50 passes, scaling
//! range 1e-8..1e8), presolve off, iterative refinement (tolerances 1e-15, 50 passes: more
//! iterations), max step fraction 0.999 and 0.9999, line-search backtracking 0.5 (all still
//! `AlmostSolved`); static regularisation 1e-11 and dynamic regularisation δ = 1e-10 fail
//! (MaxIterations, negative densities beyond round-off). None is kept. The cause is the tails,
//! not the scaling: a positive diagonal rescaling of the unknowns changes every barrier only
//! by a constant (after an affine change of the epigraph variables), so the central path that
//! Clarabel follows is the same; only round-off differs. On that
//! path a tail cell sits near ρ ~ μ/(its multiplier) rather than at its 1e-31 value; reaching
//! a gap of 1e-11 over ~10⁴ cones needs μ ~ 1e-15, where the KKT system spans about 30 orders
//! of magnitude: in the 32² log the primal residual jumps from 5e-11 to 4e-9 at iteration 27
//! and the steps collapse. The densities are nevertheless accurate to a few 1e-8 of the peak
//! (the spread above), so the step is usable; `AlmostSolved` says so honestly.

#![warn(missing_docs)]

mod polish;
mod program;
mod scheme;
mod step_file;
mod support;

pub use program::SolveTiming;
pub use step_file::{
    EnergyData, FaceArrays, PeerSolution, STEP_FILE_FORMAT, StepFile, StepFileError,
};

use jko_core::{
    BackendInfo, EnergyTerm, InputError, JkoStep, Mesh, StepError, StepInfo, StepOutput,
    StepSolver, StepStatus, WarmStart,
};
use ndarray::Array1;
use polish::{PathPoint, PolishSettings};
use program::IpmStatus;
use scheme::{End, PathProblem, Scheme};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Largest interior-point tolerance used with `levels` and polishing.
pub const MULTILEVEL_IPM_TOL: f64 = 1e-8;

/// Newton steps a warm-started polish may take before the step runs cold instead.
const WARM_NEWTON_BUDGET: usize = 20;

/// Without entropy, a warm-polished density with a cell in (0, `WARM_TRACE`·peak) where ρⁿ
/// was 0 is a trace left by the polish, not the minimiser's: the step runs cold instead.
const WARM_TRACE: f64 = 1e-6;

/// Newton steps the explicit start may take before the step runs Clarabel (OU, cold: 14
/// steps at 1024 cells and 64², 20 at 128²).
const EXPLICIT_NEWTON_BUDGET: usize = 30;

/// Floor of the explicit Newton start's density with entropy, relative to the peak of ρⁿ.
const EXPLICIT_TAIL: f64 = 1e-10;

/// [`DirectSolver::Auto`] takes QDLDL up to this many cells in 2D and 3D (porous m = 2 at
/// 64²: Clarabel's 19 iterations took 1.25 s with QDLDL, 1.55 s with faer, same run), faer
/// above.
const QDLDL_MAX_CELLS: usize = 10_000;

/// Sparse LDLᵀ factorisation used inside Clarabel.
///
/// The choice changes the speed, not the problem: both solve the same KKT systems.
///
/// ```rust
/// use jko_conic::{ConicParams, DirectSolver};
///
/// let params: ConicParams = serde_json::from_str(r#"{ "direct_solver": "faer" }"#).unwrap();
/// assert_eq!(params.direct_solver, DirectSolver::Faer);
/// assert_eq!(ConicParams::default().direct_solver, DirectSolver::Auto);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectSolver {
    /// QDLDL for 1D meshes and up to 10⁴ cells, faer above (faer's supernodal factorisation
    /// is reported 2-10x faster on large 2D problems; QDLDL has less overhead on the banded 1D
    /// ones and was faster at 64²).
    #[default]
    Auto,
    /// Clarabel's built-in QDLDL (a port of the C QDLDL, left-looking, no supernodes).
    Qdldl,
    /// faer's supernodal LDLᵀ.
    Faer,
}

/// Parameters of the conic backend (serde: unknown fields are rejected, missing ones take
/// the defaults).
///
/// Defaults: Clarabel's gap (absolute and relative) and feasibility tolerances 1e-6, 100
/// iterations, [`DirectSolver::Auto`], `AlmostSolved` accepted, quiet, one-step scheme,
/// polishing on to a relative KKT residual of 1e-9 (crate docs, "Polishing, warm start and
/// defaults": the polished answer, not Clarabel's tolerance, sets the accuracy).
///
/// ```rust
/// use jko_conic::ConicParams;
///
/// let params: ConicParams = serde_json::from_str(r#"{ "levels": 4, "max_iter": 200 }"#).unwrap();
/// assert_eq!((params.levels, params.max_iter), (Some(4), 200));
/// assert_eq!(params.tol_feas, ConicParams::default().tol_feas);
/// assert!(params.polish && params.polish_tol == 1e-9);
/// assert!(serde_json::from_str::<ConicParams>(r#"{ "tolerance": 1e-8 }"#).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConicParams {
    /// Clarabel's absolute duality-gap tolerance (objective per unit mass).
    pub tol_gap_abs: f64,
    /// Clarabel's relative duality-gap tolerance.
    pub tol_gap_rel: f64,
    /// Clarabel's primal/dual feasibility tolerance.
    pub tol_feas: f64,
    /// Maximum number of interior-point iterations.
    pub max_iter: u32,
    /// LDLᵀ factorisation of Clarabel's KKT systems.
    pub direct_solver: DirectSolver,
    /// Return Clarabel's `AlmostSolved` as status `AlmostSolved` (true) or as an error (false).
    pub accept_almost_solved: bool,
    /// Print Clarabel's iteration log.
    pub verbose: bool,
    /// Time levels of the multi-level dynamic scheme (docs/mathematics.md §2.2); `None` is the one-step
    /// scheme (§2.1). `Some(1)` is one interval with θ averaged over both ends, not §2.1.
    pub levels: Option<usize>,
    /// Polish Clarabel's solution by Newton's method on the optimality system (crate docs,
    /// "Polishing, warm start and defaults"); the step is `Solved` when the polished point satisfies it.
    pub polish: bool,
    /// Relative residual of the optimality system the polish must reach.
    pub polish_tol: f64,
    /// One-step scheme without a warm start: try Newton on the optimality system from ρⁿ
    /// and the explicit potential first (crate docs, "Polishing, warm start and defaults"),
    /// and run Clarabel only when it does not converge. `false`: always Clarabel first.
    pub newton_start: bool,
    /// One-step scheme without entropy, ρⁿ with empty cells, no warm start: run Clarabel on
    /// the cells within a few layers of the support of ρⁿ only and certify the answer on the
    /// whole mesh by the polish (crate docs, "Restriction to the support"); `false`: Clarabel
    /// on the whole mesh.
    pub restrict_support: bool,
}

impl Default for ConicParams {
    fn default() -> Self {
        ConicParams {
            tol_gap_abs: 1e-6,
            tol_gap_rel: 1e-6,
            tol_feas: 1e-6,
            max_iter: 100,
            direct_solver: DirectSolver::Auto,
            accept_almost_solved: true,
            verbose: false,
            levels: None,
            polish: true,
            polish_tol: 1e-9,
            newton_start: true,
            restrict_support: true,
        }
    }
}

impl ConicParams {
    /// Tolerances finite and in (0, 1), at least one iteration, at least one time level when
    /// `levels` is given.
    ///
    /// # Errors
    /// [`InputError::InvalidParameter`] naming the first offending field.
    ///
    /// ```rust
    /// use jko_conic::ConicParams;
    /// use jko_core::InputError;
    ///
    /// assert!(ConicParams::default().validate().is_ok());
    /// match (ConicParams { levels: Some(0), ..ConicParams::default() }).validate() {
    ///     Err(InputError::InvalidParameter { name, .. }) => assert_eq!(name, "levels"),
    ///     other => panic!("expected an invalid `levels`, got {other:?}"),
    /// }
    /// ```
    pub fn validate(&self) -> Result<(), InputError> {
        for (name, v) in [
            ("tol_gap_abs", self.tol_gap_abs),
            ("tol_gap_rel", self.tol_gap_rel),
            ("tol_feas", self.tol_feas),
            ("polish_tol", self.polish_tol),
        ] {
            if !(v.is_finite() && v > 0.0 && v < 1.0) {
                return Err(InputError::parameter(
                    name,
                    v,
                    "a tolerance must be finite and in (0, 1)",
                ));
            }
        }
        if self.levels == Some(0) {
            return Err(InputError::parameter(
                "levels",
                0,
                "a multi-level scheme needs at least 1 time level (omit it for the one-step scheme)",
            ));
        }
        jko_core::at_least_one("max_iter", self.max_iter)?;
        Ok(())
    }
}

/// Timing of one step, for studies ([`ConicSolver::step_full`]). All times in seconds.
///
/// ```rust
/// use jko_conic::{SolveTiming, StepTiming};
///
/// let t = StepTiming {
///     build: 1e-4,
///     clarabel: SolveTiming { setup: 2e-4, solve: 3e-3, kkt_update: None, kkt_solve: None },
///     polish: 1e-3,
///     iterations: 12,
/// };
/// assert!(t.build + t.clarabel.setup + t.clarabel.solve + t.polish < 1.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepTiming {
    /// Assembling the conic program, in seconds.
    pub build: f64,
    /// Clarabel's setup and iterations.
    pub clarabel: SolveTiming,
    /// Polishing, in seconds (0 without it).
    pub polish: f64,
    /// Interior-point iterations Clarabel took (the step's `info.iterations` adds the Newton
    /// steps of the polish).
    pub iterations: usize,
}

/// The discrete transport path of a step or of [`ConicSolver::transport`].
///
/// For the one-step scheme: `densities = [ρⁿ, ρ^{n+1}]`, one flux. For the multi-level
/// scheme with L levels: ρ_0 = ρⁿ, …, ρ_L = ρ^{n+1} and the fluxes G_{σ,j+½}, j = 0..L−1.
///
/// Every interval conserves mass: ρ_{j+1} = ρ_j − div G_{σ,j+½} cell by cell.
///
/// ```rust
/// use jko_conic::{ConicParams, ConicSolver};
/// use jko_core::Mesh;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::grid(&[4], &[0.0], &[1.0])?;
/// let from = mesh.sample(|x| 1.5 - x[0]);
/// let to = mesh.sample(|x| 0.5 + x[0]);
/// let solver = ConicSolver::new(ConicParams { levels: Some(2), ..ConicParams::default() })?;
/// let path = solver.transport(&mesh, &from, &to)?;
/// assert_eq!((path.densities.len(), path.fluxes.len()), (3, 2));
/// for j in 0..2 {
///     // |K|(ρ_{j+1} − ρ_j) + Σ_σ ±G_σ = 0 (`Mesh::divergence` is the Σ_σ ±G_σ), |K| = 1/4.
///     let change = (&path.densities[j + 1] - &path.densities[j]) * 0.25;
///     let balance = change + mesh.divergence(&path.fluxes[j]);
///     assert!(balance.iter().all(|r| r.abs() < 1e-8));
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TransportPath {
    /// ρ_j, j = 0..=L (cell values).
    pub densities: Vec<Array1<f64>>,
    /// G_{σ,j+½}, j = 0..L: mass moved across each face (oriented k → l) during interval j.
    pub fluxes: Vec<Array1<f64>>,
    /// The discrete action L Σ_j Σ_σ G²_{σ,j+½}/(T_σ θ_{σ,j+½}) (the scheme's W_h²).
    pub action: f64,
}

/// The conic (Clarabel) backend: the one-step two-point-flux scheme (docs/mathematics.md §2.1) or, with
/// [`ConicParams::levels`], the multi-level dynamic scheme (§2.2).
///
/// Treats every energy term (entropy, porous medium, potential, frozen interaction, the
/// congestion bound). The step returns the density, the summed face fluxes and the potential
/// φ (the continuity multiplier); a warm start from this backend is polished directly
/// (crate docs, "Polishing, warm start and defaults").
///
/// ```rust
/// use jko_conic::{ConicParams, ConicSolver};
/// use jko_core::{Energy, JkoStep, Mesh, Potential, StepSolver};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // The discrete Gibbs state ρ_K ∝ e^{−V_K/β} is an exact fixed point of the one-step
/// // scheme (G = 0 and a constant φ solve its optimality conditions).
/// let mesh = Mesh::grid(&[8], &[-1.0], &[1.0])?;
/// let energy = Energy::fokker_planck(1.0, Potential::Quadratic { center: vec![0.0], stiffness: 2.0 });
/// let gibbs = mesh.sample(|x| (-x[0] * x[0]).exp());
/// let frozen = energy.freeze(&mesh, &gibbs)?;
/// let problem = JkoStep::new(&mesh, &gibbs, 0.1, &frozen)?;
/// let out = ConicSolver::new(ConicParams::default())?.step(&problem, None)?;
/// assert!((&out.rho - &gibbs).iter().all(|d| d.abs() < 1e-6));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ConicSolver {
    params: ConicParams,
}

impl ConicSolver {
    /// A solver with validated parameters.
    ///
    /// # Errors
    /// [`InputError::InvalidParameter`] from [`ConicParams::validate`].
    ///
    /// ```rust
    /// use jko_conic::{ConicParams, ConicSolver};
    ///
    /// assert!(ConicSolver::new(ConicParams::default()).is_ok());
    /// assert!(ConicSolver::new(ConicParams { tol_feas: 0.0, ..ConicParams::default() }).is_err());
    /// ```
    pub fn new(params: ConicParams) -> Result<Self, InputError> {
        params.validate()?;
        Ok(ConicSolver { params })
    }

    /// The parameters the solver was built with.
    ///
    /// ```rust
    /// use jko_conic::{ConicParams, ConicSolver};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let solver = ConicSolver::new(ConicParams { levels: Some(3), ..ConicParams::default() })?;
    /// assert_eq!(solver.params().levels, Some(3));
    /// # Ok(())
    /// # }
    /// ```
    pub fn params(&self) -> &ConicParams {
        &self.params
    }

    /// The discretisation selected by the parameters.
    fn scheme(&self) -> Scheme {
        match self.params.levels {
            None => Scheme::OneStep,
            Some(l) => Scheme::MultiLevel(l),
        }
    }

    /// The linear solver actually used on `mesh`.
    fn direct_solver(&self, mesh: &Mesh) -> DirectSolver {
        match self.params.direct_solver {
            DirectSolver::Auto if mesh.dim() == 1 || mesh.n_cells() <= QDLDL_MAX_CELLS => {
                DirectSolver::Qdldl
            }
            DirectSolver::Auto => DirectSolver::Faer,
            other => other,
        }
    }

    /// [`StepSolver::step`] that also returns the whole transport path (every time level of
    /// the multi-level scheme) and where the time went.
    ///
    /// # Errors
    /// As [`StepSolver::step`]: [`StepError::Unsupported`] never (every term is treated),
    /// [`StepError::NotConverged`] when Clarabel stops short of the tolerances (or at
    /// `AlmostSolved` with `accept_almost_solved = false`), [`StepError::Numerical`] when the
    /// recovered densities are negative beyond round-off.
    ///
    /// ```rust
    /// use jko_conic::{ConicParams, ConicSolver};
    /// use jko_core::{Energy, JkoStep, Mesh};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[6], &[0.0], &[1.0])?;
    /// let rho0 = mesh.sample(|x| if x[0] < 0.5 { 1.5 } else { 0.5 });
    /// let energy = Energy { porous: Some(2.0), ..Energy::default() }.freeze(&mesh, &rho0)?;
    /// let problem = JkoStep::new(&mesh, &rho0, 0.05, &energy)?;
    /// let (out, _, timing) = ConicSolver::new(ConicParams::default())?.step_full(&problem, None)?;
    /// // Interior-point iterations, then the Newton steps of the polish.
    /// assert!(timing.iterations <= out.info.iterations);
    /// assert!((mesh.mass(&out.rho) - mesh.mass(&rho0)).abs() < 1e-8);
    /// assert!(out.rho.iter().all(|&r| r >= 0.0));
    ///
    /// let rho0 = mesh.sample(|x| 1.0 + 0.5 * (3.0 * x[0]).cos());
    /// let energy = Energy { entropy: Some(1.0), ..Energy::default() }.freeze(&mesh, &rho0)?;
    /// let problem = JkoStep::new(&mesh, &rho0, 0.05, &energy)?;
    /// let solver = ConicSolver::new(ConicParams { levels: Some(2), ..ConicParams::default() })?;
    /// let (out, path, _) = solver.step_full(&problem, None)?;
    /// // The path runs from ρⁿ to ρ^{n+1}, and its action is the step's kinetic term.
    /// assert_eq!(path.densities.len(), 3);
    /// assert_eq!(path.densities[0], rho0);
    /// assert_eq!(path.densities[2], out.rho);
    /// assert_eq!(path.action, out.info.kinetic);
    /// # Ok(())
    /// # }
    /// ```
    pub fn step_full(
        &self,
        problem: &JkoStep<'_>,
        warm: Option<&WarmStart>,
    ) -> Result<(StepOutput, TransportPath, StepTiming), StepError> {
        let start = Instant::now();
        let path_problem = PathProblem {
            mesh: problem.mesh,
            start: problem.rho_prev,
            end: End::Free(problem.energy),
            tau: problem.tau,
            scheme: self.scheme(),
        };
        let solved = match self
            .warm_polish(&path_problem, warm)
            .or_else(|| self.explicit_polish(&path_problem))
            .or_else(|| self.restricted_solve(&path_problem))
        {
            Some(solved) => solved,
            None => self.solve_path(&path_problem)?,
        };
        let path = solved.path;
        let rho = path.densities[path.densities.len() - 1].clone();
        let flux = path
            .fluxes
            .iter()
            .fold(Array1::zeros(problem.mesh.faces().len()), |acc, g| acc + g);
        let kinetic = path.action;
        let objective = problem.energy.value(problem.mesh, &rho) + kinetic / (2.0 * problem.tau);
        let info = StepInfo {
            solver: self.name().to_string(),
            status: solved.status,
            iterations: solved.iterations,
            primal_residual: solved.primal_residual,
            dual_residual: solved.dual_residual,
            objective,
            kinetic,
            wall_time: start.elapsed().as_secs_f64(),
            history: Vec::new(),
            notes: solved.notes,
            check: None,
        };
        let timing = StepTiming {
            build: solved.build,
            clarabel: solved.clarabel,
            polish: solved.polish,
            iterations: solved.ipm_iterations,
        };
        let out = StepOutput {
            rho,
            flux: Some(flux),
            potential: Some(solved.potential),
            info,
        };
        Ok((out, path, timing))
    }

    /// The discrete transport cost between two densities of equal mass with the selected
    /// scheme: min action over paths from `from` to `to` (both fixed). With `levels` this is
    /// the multi-level Benamou–Brenier W_h² (→ W² as L → ∞, h → 0); without, the one-step
    /// cost Σ_σ G²/(T θ(`to`)), which is what a one-step JKO step charges. That one-step cost
    /// is infinite when mass must cross faces where `to` vanishes on both sides (then Clarabel
    /// fails and the error says so), and with L = 1 and both ends vanishing somewhere the
    /// program has no strictly feasible point, which Clarabel may not survive either.
    ///
    /// # Errors
    /// [`StepError::Input`] when a density is invalid or the masses differ (relative 1e-12);
    /// [`StepError::NotConverged`] / [`StepError::Numerical`] from Clarabel as above.
    ///
    /// ```rust
    /// use jko_conic::{ConicParams, ConicSolver};
    /// use jko_core::Mesh;
    /// use ndarray::array;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Two cells of [0, 1]: moving mass (1.5 − 1)·½ = ¼ across the face (T = 1/d = 2) at
    /// // θ(to) = 1 costs G²/(Tθ) = 1/32 in the one-step scheme.
    /// let mesh = Mesh::grid(&[2], &[0.0], &[1.0])?;
    /// let solver = ConicSolver::new(ConicParams::default())?;
    /// let path = solver.transport(&mesh, &array![1.5, 0.5], &array![1.0, 1.0])?;
    /// assert!((path.action - 1.0 / 32.0).abs() < 1e-8);
    /// // Unequal masses are an input error, not a solver failure.
    /// assert!(solver.transport(&mesh, &array![1.0, 1.0], &array![1.0, 2.0]).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn transport(
        &self,
        mesh: &Mesh,
        from: &Array1<f64>,
        to: &Array1<f64>,
    ) -> Result<TransportPath, StepError> {
        jko_core::check_density(mesh, from, "`from` density")?;
        jko_core::check_density(mesh, to, "`to` density")?;
        let (m0, m1) = (mesh.mass(from), mesh.mass(to));
        if (m0 - m1).abs() > 1e-12 * m0.max(m1) {
            return Err(InputError::parameter(
                "to",
                format!("mass {m1:e}"),
                &format!("transport needs equal masses; `from` has mass {m0:e}"),
            )
            .into());
        }
        // No energy; τ = 1/2 makes the objective action/(2τ) the action itself.
        let path_problem = PathProblem {
            mesh,
            start: from,
            end: End::Fixed(to),
            tau: 0.5,
            scheme: self.scheme(),
        };
        Ok(self.solve_path(&path_problem)?.path)
    }

    /// The parameters Clarabel runs with: the user's, except that with `levels` and polishing
    /// the tolerances are at most [`MULTILEVEL_IPM_TOL`] (polishing a multi-level path from
    /// a looser interior point takes many more rounds, or fails).
    fn ipm_params(&self) -> ConicParams {
        let mut p = self.params.clone();
        if p.polish && self.scheme() != Scheme::OneStep {
            p.tol_gap_abs = p.tol_gap_abs.min(MULTILEVEL_IPM_TOL);
            p.tol_gap_rel = p.tol_gap_rel.min(MULTILEVEL_IPM_TOL);
            p.tol_feas = p.tol_feas.min(MULTILEVEL_IPM_TOL);
        }
        p
    }

    fn polish_settings(&self) -> PolishSettings {
        PolishSettings {
            tol: self.params.polish_tol,
            max_newton: 30,
            max_total_newton: 150,
            max_rounds: 50,
        }
    }

    /// One-step scheme with a warm start (the previous step's ρ and φ, which the driver
    /// passes): polish from it directly, without Clarabel. `None` when there is no usable
    /// warm start or the polish does not converge from it (then the step runs cold).
    fn warm_polish(&self, pp: &PathProblem<'_>, warm: Option<&WarmStart>) -> Option<SolvedPath> {
        let warm = warm?;
        let (rho, phi) = (warm.rho.as_ref()?, warm.potential.as_ref()?);
        self.newton_from(
            pp,
            (rho, phi),
            WARM_NEWTON_BUDGET,
            "warm start from the previous step: no interior-point run",
        )
    }

    /// One-step scheme without a warm start: Newton from the explicit guess ρ^{n+1} = ρⁿ,
    /// φ = −τ (f'(ρⁿ) + V) (the potential that makes the density rows hold at G = 0; its flux
    /// Tθ(φ_L − φ_K) is an explicit Euler step), with the warm start's budget and checks. The
    /// answer is certified by the same KKT conditions as any polished step; when Newton does
    /// not get there the step runs Clarabel as before. Not tried with a porous term or a
    /// congestion bound (their active sets move by many cells: Clarabel is faster there).
    fn explicit_polish(&self, pp: &PathProblem<'_>) -> Option<SolvedPath> {
        let End::Free(energy) = pp.end else {
            return None;
        };
        // A porous front that must advance by several cells is released one cell per round
        // of the polish (4-5 Newton steps each) from ρⁿ, slower than Clarabel; a congestion
        // bound's active set likewise: those steps go to Clarabel directly.
        if !self.params.newton_start || energy.porous.is_some() || energy.max_density.is_some() {
            return None;
        }
        let peak = pp.start.iter().fold(0.0f64, |a, &r| a.max(r));
        // With entropy, far tails start where an interior point leaves them (~1e-10 of the
        // peak, from where Newton brings them down in log ρ), not at their own values many
        // orders below: the rows of such tails are weighted by ρ and barely steer the line
        // search, and starting Newton there stalls it (OU 2D 64², tails 1e-27).
        let guess = match energy.entropy {
            Some(_) => pp.start.mapv(|r| r.max(EXPLICIT_TAIL * peak)),
            None => pp.start.clone(),
        };
        let phi = Array1::from_iter(guess.iter().enumerate().map(|(k, &r)| {
            let v = energy.potential.as_ref().map_or(0.0, |v| v[k]);
            -pp.tau * (energy.df(r) + v)
        }));
        self.newton_from(
            pp,
            (&guess, &phi),
            EXPLICIT_NEWTON_BUDGET,
            "Newton from ρⁿ and the explicit potential: no interior-point run",
        )
    }

    /// Polish from the guess (ρ^{n+1}, φ) of the one-step scheme; `None` when it is not
    /// usable or Newton does not converge within `budget` steps.
    fn newton_from(
        &self,
        pp: &PathProblem<'_>,
        (rho, phi): (&Array1<f64>, &Array1<f64>),
        budget: usize,
        note: &str,
    ) -> Option<SolvedPath> {
        let n = pp.mesh.n_cells();
        let usable = |v: &Array1<f64>| v.len() == n && v.iter().all(|x| x.is_finite());
        if !self.params.polish
            || self.scheme() != Scheme::OneStep
            || !usable(rho)
            || !usable(phi)
            || rho.iter().any(|&r| r < 0.0)
        {
            return None;
        }
        let start = Instant::now();
        // G = T θ (φ_L − φ_K), θ from the guessed end density; ψ = φ/τ.
        let flux =
            Array1::from_iter(pp.mesh.faces().iter().map(|f| {
                f.transmissibility() * 0.5 * (rho[f.k] + rho[f.l]) * (phi[f.l] - phi[f.k])
            }));
        let mut point = PathPoint {
            densities: vec![pp.start.clone(), rho.clone()],
            fluxes: vec![flux],
            psi: vec![phi / pp.tau],
        };
        // A warm start that converges does so in a few Newton steps (5-8 on OU 1D and 2D); one
        // that does not (a free boundary that moved, porous media) would otherwise spend the
        // cold polish's whole budget before the cold step runs anyway.
        let settings = PolishSettings {
            max_total_newton: budget,
            ..self.polish_settings()
        };
        let report = polish::polish(pp, &mut point, settings);
        // Without entropy nothing keeps a density off 0, and a warm polish can end with
        // released cells left at a trace (~1e-9 of the peak) where the cold step has ρ = 0:
        // a halo that makes the next steps degenerate (porous m = 3 in a well, 1D: the next
        // two steps stalled at AlmostSolved). Such a point is not taken; the step runs cold.
        let has_entropy = matches!(pp.end, End::Free(e) if e.entropy.is_some());
        let end = &point.densities[point.densities.len() - 1];
        let peak = end.iter().fold(0.0f64, |a, &r| a.max(r));
        let trace = !has_entropy
            && end
                .iter()
                .zip(pp.start)
                .any(|(&r, &r0)| r > 0.0 && r < WARM_TRACE * peak && r0 == 0.0);
        (report.converged && !trace).then(|| {
            let notes = vec![note.to_string()];
            polished(
                pp,
                point,
                &report,
                notes,
                0,
                0.0,
                SolveTiming::default(),
                start.elapsed().as_secs_f64(),
            )
        })
    }

    /// One-step scheme without entropy from a ρⁿ with empty cells: Clarabel (and the polish)
    /// on the cells within a margin of the support of ρⁿ only, the answer then lifted and
    /// certified on the whole problem by the polish (module `support`). `None` when it does
    /// not apply (entropy, levels, a support that covers most of the mesh) or the certificate
    /// fails; then the whole problem is solved.
    fn restricted_solve(&self, pp: &PathProblem<'_>) -> Option<SolvedPath> {
        let End::Free(energy) = pp.end else {
            return None;
        };
        if !self.params.polish
            || !self.params.restrict_support
            || self.scheme() != Scheme::OneStep
            || energy.entropy.is_some()
        {
            return None;
        }
        let mut margin = support::initial_margin(pp.mesh, pp.start, energy, pp.tau);
        let (mut build, mut clarabel, mut polish_time, mut ipm_iterations, mut newton) =
            (0.0, SolveTiming::default(), 0.0, 0, 0);
        let mut notes = Vec::new();
        loop {
            let restriction = support::Restriction::new(pp, energy, margin)?;
            let sub = PathProblem {
                mesh: &restriction.mesh,
                start: &restriction.start,
                end: End::Free(&restriction.energy),
                tau: pp.tau,
                scheme: pp.scheme,
            };
            let solved = self.solve_path(&sub).ok()?;
            build += solved.build;
            clarabel = clarabel.plus(&solved.clarabel);
            polish_time += solved.polish;
            ipm_iterations += solved.ipm_iterations;
            newton += solved.iterations - solved.ipm_iterations;
            if solved.status != StepStatus::Solved {
                return None;
            }
            let rho = &solved.path.densities[1];
            // What happened on the restricted program (an interior point rerun at a tighter
            // tolerance, its polish) stays on record.
            notes.extend(
                solved
                    .notes
                    .iter()
                    .map(|n| format!("restricted program: {n}")),
            );
            if restriction.touches_wall(rho, self.params.polish_tol) {
                notes.push(format!(
                    "the restriction to {} cells ({margin} layers around the support of ρⁿ) \
                     reached its wall: widened",
                    restriction.len()
                ));
                margin = margin.saturating_mul(2);
                continue;
            }
            let mut point = restriction.lift(
                pp.start,
                rho,
                &solved.path.fluxes[0],
                &(&solved.potential / pp.tau),
            );
            let certify = Instant::now();
            let mut report = polish::certify(pp, &mut point, self.polish_settings());
            polish_time += certify.elapsed().as_secs_f64();
            if !report.converged {
                return None;
            }
            // The Newton steps of the restricted polishes count too.
            report.newton_steps += newton;
            notes.push(format!(
                "interior point on {} of {} cells ({margin} layers around the support of ρⁿ), \
                 {ipm_iterations} iterations; certified on the whole mesh",
                restriction.len(),
                pp.mesh.n_cells()
            ));
            return Some(polished(
                pp,
                point,
                &report,
                notes,
                ipm_iterations,
                build,
                clarabel,
                polish_time,
            ));
        }
    }

    /// Clarabel on the assembled program, then polishing (or, without it or when it fails,
    /// Clarabel's iterate with its mass projected back).
    fn solve_path(&self, pp: &PathProblem<'_>) -> Result<SolvedPath, StepError> {
        self.solve_path_with(pp, self.ipm_params())
    }

    /// [`Self::solve_path`] with Clarabel run at `ipm_params`. When polishing fails from an
    /// interior point looser than [`MULTILEVEL_IPM_TOL`] (a free boundary whose active set
    /// the loose point does not yet show), Clarabel runs again at that tolerance and the
    /// polish is retried from its point.
    fn solve_path_with(
        &self,
        pp: &PathProblem<'_>,
        ipm_params: ConicParams,
    ) -> Result<SolvedPath, StepError> {
        let start = Instant::now();
        let (program, layout) = pp.assemble();
        let build = start.elapsed().as_secs_f64();
        let sol = program.solve(&ipm_params, self.direct_solver(pp.mesh))?;
        let params = &ipm_params;
        // Polishing repairs densities Clarabel left slightly negative; without it only
        // round-off (the feasibility tolerance) is tolerated.
        let negative_tol = if params.polish { 1e-2 } else { params.tol_feas };
        // Clarabel stopped short (or its answer could not be used): the step did not converge.
        let not_converged = |status: String| StepError::NotConverged {
            solver: self.name().to_string(),
            status,
            iterations: sol.iterations,
            primal_residual: sol.primal_residual,
            dual_residual: sol.dual_residual,
            history: Vec::new(),
        };
        let rec = match (pp.recover(&layout, &sol, negative_tol), &sol.status) {
            (Ok(rec), _) => rec,
            // A stopped interior point's iterate may be far from feasible (negative densities
            // beyond round-off): that is non-convergence, reported as such, not a numerical fault.
            (Err(_), IpmStatus::Stopped(name)) => return Err(not_converged(name.clone())),
            (Err(e), _) => return Err(e),
        };
        let ipm_name = match &sol.status {
            IpmStatus::Solved => "Solved".to_string(),
            IpmStatus::AlmostSolved => "AlmostSolved".to_string(),
            IpmStatus::Stopped(name) => name.clone(),
        };
        let mut notes = Vec::new();
        let ipm = PathPoint {
            densities: rec.path.densities,
            fluxes: rec.path.fluxes,
            psi: rec.psi,
        };
        let polish_start = Instant::now();
        if params.polish {
            let mut point = ipm.clone();
            let report = polish::polish(pp, &mut point, self.polish_settings());
            let polish_time = polish_start.elapsed().as_secs_f64();
            if report.converged {
                notes.push(format!(
                    "interior point: {ipm_name} after {} iterations",
                    sol.iterations
                ));
                return Ok(polished(
                    pp,
                    point,
                    &report,
                    notes,
                    sol.iterations,
                    build,
                    sol.timing,
                    polish_time,
                ));
            }
            let loose = params
                .tol_gap_abs
                .max(params.tol_gap_rel)
                .max(params.tol_feas);
            if loose > MULTILEVEL_IPM_TOL {
                let tight = ConicParams {
                    tol_gap_abs: params.tol_gap_abs.min(MULTILEVEL_IPM_TOL),
                    tol_gap_rel: params.tol_gap_rel.min(MULTILEVEL_IPM_TOL),
                    tol_feas: params.tol_feas.min(MULTILEVEL_IPM_TOL),
                    ..params.clone()
                };
                let mut retried = self.solve_path_with(pp, tight)?;
                retried.notes.insert(
                    0,
                    format!(
                        "polishing from the interior point at tolerance {loose:.0e} failed \
                         ({}); Clarabel ran again at {MULTILEVEL_IPM_TOL:.0e}",
                        report.message
                    ),
                );
                retried.build += build;
                retried.clarabel = retried.clarabel.plus(&sol.timing);
                retried.polish += polish_time;
                retried.iterations += sol.iterations;
                retried.ipm_iterations += sol.iterations;
                return Ok(retried);
            }
            notes.push(format!(
                "polishing failed ({}); the interior-point solution is returned",
                report.message
            ));
        }
        let polish_time = polish_start.elapsed().as_secs_f64();
        let status = match (&sol.status, params.polish) {
            (IpmStatus::Stopped(name), _) => return Err(not_converged(name.clone())),
            (IpmStatus::Solved, false) => StepStatus::Solved,
            _ => StepStatus::AlmostSolved,
        };
        if status == StepStatus::AlmostSolved && !params.accept_almost_solved {
            return Err(not_converged(if params.polish {
                format!("{ipm_name}, polishing failed")
            } else {
                ipm_name
            }));
        }
        if rec.clipped > params.tol_feas.max(1e-12) {
            return Err(StepError::Numerical {
                solver: self.name().to_string(),
                message: format!(
                    "Clarabel returned densities down to {:.3e} of their maximum below 0, \
                     beyond its feasibility tolerance",
                    -rec.clipped
                ),
            });
        }
        notes.extend(rec.notes);
        if sol.gap_rel > params.tol_gap_rel {
            notes.push(format!("relative duality gap {:.3e}", sol.gap_rel));
        }
        let mut densities = ipm.densities;
        let free = match pp.end {
            End::Free(_) => densities.len() - 1,
            End::Fixed(_) => densities.len() - 2,
        };
        let projected = polish::project_masses_of(pp.mesh, &mut densities, free);
        if projected > 1e-15 {
            notes.push(format!(
                "mass projected back onto the transport constraint (relative correction {projected:.2e})"
            ));
        }
        let action = pp.action(&densities, &ipm.fluxes, params.tol_feas.max(1e-12));
        Ok(SolvedPath {
            path: TransportPath {
                densities,
                fluxes: ipm.fluxes,
                action,
            },
            potential: rec.potential,
            status,
            iterations: sol.iterations,
            ipm_iterations: sol.iterations,
            primal_residual: sol.primal_residual,
            dual_residual: sol.dual_residual,
            notes,
            build,
            clarabel: sol.timing,
            polish: polish_time,
        })
    }
}

/// The step from a converged polish.
#[allow(clippy::too_many_arguments)]
fn polished(
    pp: &PathProblem<'_>,
    point: PathPoint,
    report: &polish::PolishReport,
    mut notes: Vec<String>,
    ipm_iterations: usize,
    build: f64,
    clarabel: SolveTiming,
    polish_time: f64,
) -> SolvedPath {
    if report.mass_correction > 1e-15 {
        notes.push(format!(
            "mass projected back onto the transport constraint after polishing (relative \
             correction {:.1e})",
            report.mass_correction
        ));
    }
    notes.push(format!(
        "polished: {} Newton steps in {} rounds to relative KKT residual {:.1e} ({} densities \
         held at 0, {} at the cap)",
        report.newton_steps, report.rounds, report.residual, report.held.0, report.held.1,
    ));
    let action = pp.action(&point.densities, &point.fluxes, 0.0);
    let potential = &point.psi[point.psi.len() - 1] * pp.tau;
    SolvedPath {
        path: TransportPath {
            densities: point.densities,
            fluxes: point.fluxes,
            action,
        },
        potential,
        status: StepStatus::Solved,
        iterations: ipm_iterations + report.newton_steps,
        ipm_iterations,
        primal_residual: report.continuity,
        dual_residual: report.residual,
        notes,
        build,
        clarabel,
        polish: polish_time,
    }
}

/// What [`ConicSolver::solve_path`] found.
struct SolvedPath {
    path: TransportPath,
    potential: Array1<f64>,
    status: StepStatus,
    iterations: usize,
    ipm_iterations: usize,
    primal_residual: f64,
    dual_residual: f64,
    notes: Vec<String>,
    build: f64,
    clarabel: SolveTiming,
    polish: f64,
}

impl StepSolver for ConicSolver {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn treats(&self, term: EnergyTerm) -> bool {
        match term {
            EnergyTerm::Entropy
            | EnergyTerm::Porous
            | EnergyTerm::Potential
            | EnergyTerm::Interaction
            | EnergyTerm::MaxDensity => true,
        }
    }

    fn step(
        &self,
        problem: &JkoStep<'_>,
        warm: Option<&WarmStart>,
    ) -> Result<StepOutput, StepError> {
        self.step_full(problem, warm).map(|(out, ..)| out)
    }

    /// The sizes of the program `scheme::PathProblem::assemble` builds (n cells, F faces, L
    /// intervals): unknowns L·n + 2L·F (+ n per entropy or porous term), rows L·n continuity,
    /// L·n (+ L·n with congestion) bounds, 3L·F second-order cone rows (+ 3n per energy cone).
    /// Memory, fitted to the measured peak of one step (examples/memory_estimate.rs, 1D–3D,
    /// 2·10³–3·10⁴ cells): 570–820 B per unknown or row (the assembly's triplets and CSC
    /// copies, Clarabel's KKT matrix and its work vectors), taken as 1000 B; plus the LDLᵀ
    /// factor's fill beyond that, 1.1 × 16 B per nonzero of the nested-dissection model
    /// [`jko_core::step::factor_nonzeros`] on the grid × L-levels graph (which makes 3D grow
    /// like n^{4/3}), taken as 2 × 16 B.
    fn memory_estimate(&self, mesh: &Mesh, terms: &[EnergyTerm]) -> Option<u64> {
        let n = mesh.n_cells() as f64;
        let nf = mesh.faces().len() as f64;
        let l = self.scheme().intervals() as f64;
        let cones = [EnergyTerm::Entropy, EnergyTerm::Porous]
            .iter()
            .filter(|t| terms.contains(t))
            .count() as f64;
        let congestion = if terms.contains(&EnergyTerm::MaxDensity) {
            1.0
        } else {
            0.0
        };
        let vars = l * n + 2.0 * l * nf + cones * n;
        let rows = l * n * (2.0 + congestion) + 3.0 * l * nf + 3.0 * cones * n;
        let mut sides = grid_sides(mesh);
        if l > 1.0 {
            sides.push(l);
        }
        let fill = 2.0 * 16.0 * jko_core::step::factor_nonzeros(&sides, 1.0);
        Some((1000.0 * (vars + rows) + fill) as u64)
    }
}

impl BackendInfo for ConicSolver {
    const NAME: &'static str = "conic";
    const SUMMARY: &'static str = "Clarabel interior point: one-step two-point-flux scheme, or multi-level Benamou-Brenier with `levels = L`";
    const PROXIMAL: bool = true;
}

/// Nodes per axis of the mesh's graph: the grid's cells per axis scaled to the active cells,
/// or a cube of the mesh's size for a general mesh.
fn grid_sides(mesh: &Mesh) -> Vec<f64> {
    let n = mesh.n_cells() as f64;
    match mesh.as_grid() {
        Some(g) => {
            let shrink = (n / g.len() as f64).powf(1.0 / g.cells.len() as f64);
            g.cells.iter().map(|&c| c as f64 * shrink).collect()
        }
        None => vec![n.powf(1.0 / mesh.dim() as f64); mesh.dim()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_validate_and_round_trip() {
        assert!(ConicParams::default().validate().is_ok());
        let bad = ConicParams {
            tol_feas: 0.0,
            ..ConicParams::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("tol_feas"));
        let bad = ConicParams {
            max_iter: 0,
            ..ConicParams::default()
        };
        assert!(ConicSolver::new(bad).is_err());
        let p = ConicParams {
            direct_solver: DirectSolver::Faer,
            ..ConicParams::default()
        };
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains("\"direct_solver\":\"faer\""), "{json}");
        let back: ConicParams =
            serde_json::from_str(r#"{"direct_solver": "qdldl", "max_iter": 50}"#).unwrap();
        assert_eq!(back.direct_solver, DirectSolver::Qdldl);
        assert_eq!(back.max_iter, 50);
        assert_eq!(back.tol_feas, ConicParams::default().tol_feas);
        assert!(serde_json::from_str::<ConicParams>(r#"{"tolerance": 1e-8}"#).is_err());
    }
}

//! # jko-newton
//!
//! The `newton` backend: the one-step two-point-flux JKO scheme (docs/mathematics.md §2.1; Cancès, Gallouët
//! and Todeschi 2020) solved to high accuracy by Newton's method on its optimality system.
//! Two methods share one sparse linear algebra: Newton ascent on the dual function for steps
//! whose entropy keeps ρ > 0 (the Fokker–Planck class) and, semismooth, for porous media
//! without a cap, and a primal–dual interior point with an active-set finish for steps where
//! a bound matters otherwise (congestion, a potential alone, no energy) or where the porous
//! ascent stalls. This page is the reference for the mathematics the code relies on.
//!
//! ## The problem
//! Cells K (volume |K|), interior faces σ = K|L (transmissibility T_σ), densities ρ, fluxes
//! G_σ (mass moved K → L):
//!
//! ```text
//! minimise   k(ρ, G) + F(ρ),   k = Σ_σ G_σ² / (2τ T_σ θ_σ),   θ_σ = (ρ_K + ρ_L)/2,
//!            F = Σ_K |K| [f(ρ_K) + V_K ρ_K],   f(s) = β s ln s + s^m/(m−1),
//! subject to r_p,K := |K|(ρ_K − ρⁿ_K) + Σ_{σ∋K} G_{K,σ} = 0,   0 ≤ ρ_K ≤ ρ_max,
//! ```
//!
//! V holds the potential and a frozen interaction. k is jointly convex (a perspective), the
//! constraint linear: a convex program with a unique density when f is strictly convex.
//!
//! ## The optimality system
//! With multipliers φ/τ of the mass balance, λ ≥ 0 of ρ ≥ 0 and ν ≥ 0 of ρ ≤ ρ_max, and the
//! velocity w_σ = G_σ/(T_σ θ_σ):
//!
//! ```text
//! r_ρ,K = |K| (f'(ρ_K) + V_K + φ_K/τ) − Σ_{σ∋K} T_σ w_σ²/(4τ) − λ_K + ν_K = 0   (stationarity in ρ)
//! r_G,σ = (w_σ − (φ_L − φ_K))/τ = 0                                            (stationarity in G)
//! r_p,K = 0,   λ_K ρ_K = 0,   ν_K (ρ_max − ρ_K) = 0,   λ, ν, ρ, ρ_max − ρ ≥ 0.
//! ```
//!
//! At a solution G = T θ ∇φ, and the ρ-row says ρ_K = 0 or ρ_max or f'(ρ_K) = s_K with the
//! "chemical potential" s_K = −V_K − φ_K/τ + Q_K/|K|, Q_K = Σ_σ T_σ (φ_L − φ_K)²/(4τ).
//!
//! ## The Newton matrix
//! Linearising in (ρ, G, φ) and eliminating δG (its block is diagonal, 1/(τ T θ)) and then δρ
//! (its block is the diagonal D = |K| f'' + λ/ρ + ν/(ρ_max − ρ): the kinetic Hessian is rank one
//! per face and drops out) leaves one symmetric positive definite system for δφ,
//!
//! ```text
//! S δφ = R2 − Cᵀ D⁻¹ R1,   S = Cᵀ D⁻¹ C + L_θ/τ,
//! C_KK = (|K| + ½ Σ_σ T_σ w_{K,σ})/τ,   C_KL = −T_σ w_{K,σ}/(2τ),   L_θ: weights T_σ θ_σ,
//! ```
//!
//! with R1, R2 the residual combinations written out in `ipm.rs`. S couples cells at graph
//! distance ≤ 2. It is assembled into a pattern fixed per mesh, scaled to unit diagonal, and
//! factorised by sparse Cholesky (faer) in a nested-dissection order on 3D grids (two-plane
//! separators, since S reaches two cells) and an approximate-minimum-degree order elsewhere (on
//! 2D grids it fills in less; measured in the README); the symbolic factorisation,
//! the factor's storage and the workspace are reused for every iteration and step on a mesh.
//! Solves are refined iteratively. A row that vanishes identically (a cell that exchanges no
//! mass) is pinned: δφ_K = 0.
//!
//! Inexact directions (the entropy ascent, once it converges quadratically: the last full step
//! cut the error 30-fold): consecutive Newton matrices then differ by about the size of the
//! step, so the factorisation of the previous one is a near-exact preconditioner for the new
//! one. The direction is sought by conjugate gradients preconditioned with it (each iteration
//! one triangular solve pair and one product with S, ~1/6 of a factorisation at 64²) and
//! accepted when the mass balance its linearisation leaves is ≤ η times the present one in
//! every cell, η = min(10⁻², error) — a forcing term that keeps the quadratic rate (Eisenstat–
//! Walker) — or ≤ tol/10; after 6 iterations S is factorised after all. Measured (OU 2D 64²,
//! τ = 0.1, tol 10⁻⁸, 6 steps): 9 of 30 directions inexact, the iterations unchanged. Only
//! factorisations of the same step are used: a step's result does not depend on the steps
//! solved before it (a resumed run reproduces an uninterrupted one bit for bit).
//!
//! ## Entropy without a cap: Newton on the dual function
//! With β > 0 the entropy keeps ρ > 0, and ρ can be eliminated exactly: ρ_K(φ) solves the cell
//! law g(ρ_K) = s_K(φ), g = f' − μ_F/ρ, in closed form: ρ = μ_F/(β W₀(q)) with Lambert's W,
//! q = (μ_F/β) e^{1 − s/β}, ≈ e^{s/β − 1} where the floor barrier is negligible (`cell.rs`). The floor μ_F = 0.1 tol² ρ_s E_s only keeps far tails representable (ρ ≥ μ_F/|s|
//! instead of an underflow to 0, which made S singular). This leaves the concave dual function
//!
//! ```text
//! ψ(φ) = Σ_K |K| [f(ρ_K) + V_K ρ_K − μ_F ln ρ_K] + (1/τ) Σ_K |K| φ_K (ρ_K − ρⁿ_K)
//!        − (1/(2τ)) Σ_σ T_σ θ_σ (φ_L − φ_K)²,   ∇ψ = r_p/τ,   ∇²ψ = −S,
//! ```
//!
//! maximised by Newton's method with an Armijo line search on ψ itself. ψ is an exact merit
//! function: it increases at every accepted step and is bounded by the primal optimum, so no
//! step can diverge; a change of ψ below its round-off (10 ε Σ|terms| at the current point) is
//! no change. Convergence is quadratic (warm steps 4–10 iterations), except where densities must
//! fall by many e-folds: re-solving the exponential law at φ + δφ lowers a density far above its
//! Newton target by one e-fold per iteration. When, after a full step, cells more than an e-fold
//! above their Newton targets account for the whole residual, the iterate is handed to the
//! primal–dual iteration below (its lower barrier at the floor), which keeps ρ as an unknown and
//! linearises the law at the current density (double well 1D: warm steps 14 → 8). Its
//! barrier-free active-set finish is tried first: its step is taken per cell (a cell that the
//! linear step would empty shrinks ×100), where the interior point's one step length is cut by
//! far-tail cells (double well 2D 64²: warm steps 12, 13 → 9, 9); the interior point runs only
//! if the finish fails. If the ascent fails (a
//! stiff step far from its Gibbs state, where ψ grows like e^{s/β}), the interior point below
//! takes over from its own cold start, recorded in the notes.
//!
//! ## Porous media without a cap: the same ascent, semismooth
//! Without entropy the exact cell law is ρ_K = (f')⁻¹(max(s_K, 0)), continuous and monotone in
//! s: ψ is still concave and C¹, and the ascent above is a semismooth Newton method whose
//! generalised Hessian holds an empty cell fixed (compliance 0; the floor barrier μ_F keeps it
//! a tiny positive number). The free boundary needs no active-set logic: a cell fills when its
//! s_K turns positive, and λ_K = −|K| s_K ≥ 0 holds by construction where it stays empty. When
//! ψ stops changing beyond its round-off, a step must also reduce ‖r_p‖ (a cell at the kink
//! s = 0 could otherwise make full steps cycle). Measured on the robustness matrix's porous
//! cases (m = 2, 3, 1D and 2D, with and without a potential): 4–23 iterations where the
//! interior point below, every factorisation counted, took 60–240. The ascent has a budget of
//! 30 iterations (degenerate front cells of m = 3, or a well, can make it stall); then the
//! interior point takes over, within the same `max_iter`, recorded, from the ascent's last
//! potential with its densities and multipliers on the central path at μ = 10⁻¹⁰ ρ_s E_s (the
//! stalled ascent is close to the solution, mass balance 10⁻³–10⁻⁵; from its own cold start the
//! interior point stalled at complementarity 10⁻⁶ on porous m = 3 2D, 141–145 iterations or the
//! 300-iteration limit, against 46–68 from the ascent's point). Porous m > 2 on a 2D or 3D mesh,
//! and m ≤ 2 with a potential, skip the ascent (round 9): their free boundaries are degenerate
//! (s* ≈ 0 on a curve of front cells, or where a confining potential stops the front), and the
//! ascent spent its whole budget there; the interior point starts from the step's own potential
//! at μ = 10⁻⁴ ρ_s E_s (per step: porous m3 2D 64² 20 / 41 / 39 → 18 / 13 / 16, m2 well 2D
//! 25 / 34 / 18 → 9 / 10 / 8).
//!
//! ## Bounds that matter: primal–dual interior point
//! Without entropy, or with a cap, (ρ, G, φ, λ, ν) are iterated together, the gap ρ_max − ρ
//! kept as its own variable (exact even within an ulp of the cap). The complementarity
//! conditions are relaxed to λ_K ρ_K = μ|K|, ν_K(ρ_max − ρ_K) = μ|K| (with entropy, the lower
//! one stays at μ_F: it cannot be active). Each iteration factorises S once and solves it three
//! times: Mehrotra's affine (μ = 0) predictor sets the target μ_t = σ μ_c, σ = (μ_aff/μ_c)³,
//! μ_c the average complementarity; the corrector adds the predictor's second-order term δλ δρ;
//! the plain Newton direction to μ_t is kept as an alternative.
//!
//! A step moves (ρ, φ, λ, ν) along the direction and sets the flux to that of the new point,
//! G = T θ ∇φ (a second-order change against G + α δG that keeps w = G/(T θ) = ∇φ: stepped
//! linearly, w blew up on the faces of front cells whose density a step lowered ×100).
//! Globalisation (path following in a wide neighbourhood): the step starts at the
//! fraction to the boundary (0.99, common to primal and dual) and is halved until (i) the
//! weighted KKT residual ‖W(r_ρ, r_G, r_p)‖₂ decreases by the Armijo fraction, W turning each
//! residual into a density error (see the stopping rule), and (ii) every complementarity
//! product stays above 10⁻³ times their average. (i) cannot accept a diverging step; (ii) keeps
//! the iterates centred, without which cells at a free boundary collapse to 10⁻²⁰ and block
//! every later step. A barrier-objective merit was tried first and rejected: along the
//! primal–dual direction it is not consistent with the Newton model when μ changes each
//! iteration (measured: steps cut to 10⁻³ for tens of iterations).
//!
//! Active-set finish: interior points converge only linearly at degenerate cells (ρ and λ both
//! → 0 at a free boundary, where complementarity measures √μ). Once μ ≤ 10⁻⁸ ρ_s E_s (and, while
//! the interior point still takes long steps, ≥ 0.3, its KKT residual is within 10² tol: a finish
//! started further out failed after its whole budget), the cells
//! with ρ_K/ρ_s ≤ λ_K/(|K| E_s) are held at 0 (and likewise at the cap), the barrier is dropped,
//! and the smooth equality-constrained problem left is solved by Newton's method (quadratic,
//! 3–6 iterations). The result is accepted only if complementary: free densities in [0, ρ_max]
//! and the multipliers of held cells, read off their ρ-rows, ≥ 0 (to tol); otherwise cells are
//! exchanged (primal–dual active set, at most 3 rounds) or the interior point goes on. Porous
//! laws with m > 2 and no entropy exchange nothing: a cell released from ρ = 0 sits where
//! f''(0) = 0 and its linearised law diverges; the interior point goes on instead. The
//! potential of held cells that exchange no mass is not determined by the step; it is set to
//! make their multipliers nonnegative (Gauss–Seidel on a concave quadratic per cell).
//!
//! ## The stopping rule and its round-off floor
//! Every residual is translated into the density error that would absorb it, relative to
//! ρ_s = max ρⁿ: the mass balance |r_p,K|/(|K| ρ_s); stationarity in ρ through the cheaper of ρ_K
//! (|r_ρ,K|/(D_K ρ_s)) and φ_K (|r_ρ,K| τ Σ_σ T_σ θ_σ/(|K|² ρ_s)); the flux relation through the
//! flux it changes, |r_G,σ| τ T_σ θ_σ/(min(|K|,|L|) ρ_s); the natural complementarity residual
//! min(ρ_K/ρ_s, λ_K/(|K| E_s)) (E_s = β + osc V + f'_porous(ρ_s)); the relative total mass. The
//! step has converged when each is ≤ max(tol, its floor), where the floor is the round-off of
//! evaluating it, derived from the data: (4d + 4) ε × the sum of the absolute values of the
//! terms of that residual (for the flux relation ε(|w| + |φ_K| + |φ_L|): φ ~ τ E grows with τ
//! and the 1/h² of the scaling grows with N). A residual at its floor cannot be reduced by any
//! iteration and counts as converged; the step's notes then say so. When the iteration stops
//! without converging, the error names the residual furthest above its target, with its value,
//! tol and floor (`IterateDiagnostics::limiting`).
//!
//! Why refined OU 1D used to stall ("primal residual 2.4e-10, creeping ~1 % per iteration"): the
//! old dual Newton added 10⁻¹⁰ × the mean diagonal to S to keep it definite where ρ underflowed.
//! In tail cells (ρ ~ 10⁻¹⁰) that shift exceeds the matrix's own diagonal, so their Newton steps
//! were damped by diag/(diag + shift) ~ 1 %: linear convergence at the tolerance's level.
//! Removing the shift (the floor barrier keeps S definite; the scaled Cholesky handles its
//! dynamic range) restores quadratic convergence; the round-off floor was not the cause.
//!
//! ## Warm starts
//! A warm start's potential is validated (length, finite values) and used only when its
//! densities ρ(φ) are at least as close to ρⁿ (in max |ln ρ/ρⁿ|) as the best cold-start
//! candidate with floors 10⁻³, 10⁻¹, 1 of the mean density; a warm-started solve that fails is
//! repeated from the cold start. Each decision is recorded in the step's notes. The candidates
//! are built only when one of them could win: each is dropped at its first cell farther from ρⁿ
//! than the warm start (a warm start is the previous potential, whose densities are ρⁿ up to the
//! change of the frozen energy, so this usually happens at the first cells; building them cost
//! ~1.3 numeric factorisations of a 64² warm step). Cold starts try the first-order guess
//! φ = −λ τ (f'(ρⁿ) + V), exact as τ → 0, for λ ∈ [0, 1] and floors on ρⁿ (for the entropy
//! ascent the smallest is tol ρ_s, where the stopping test stops seeing a density: far tails
//! raised to 10⁻³ of the mean came down one e-fold per iteration), and keep the one closest to ρⁿ.
//!
//! ## Example
//! The discrete Gibbs state ρ_K ∝ e^{−V_K/β} is an exact fixed point of the discrete step
//! (G = 0, φ constant solve the optimality system), so one step must leave it in place:
//!
//! ```rust
//! use jko_core::{Energy, JkoStep, Mesh, Potential, StepSolver};
//! use jko_newton::{NewtonParams, NewtonSolver};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mesh = Mesh::grid(&[8], &[-1.0], &[1.0])?;
//! let energy = Energy::fokker_planck(1.0, Potential::Quadratic { center: vec![0.0], stiffness: 2.0 });
//! let v = mesh.sample(|x| x[0] * x[0]); // stiffness · x² / 2
//! let gibbs = v.mapv(|v| (-v).exp());
//! let frozen = energy.freeze(&mesh, &gibbs)?;
//! let problem = JkoStep::new(&mesh, &gibbs, 0.1, &frozen)?;
//! let out = NewtonSolver::new(NewtonParams::default())?.step(&problem, None)?;
//! let change = (&out.rho - &gibbs).mapv(f64::abs).fold(0.0_f64, |a, &b| a.max(b));
//! assert!(change < 1e-9, "Gibbs state moved by {change:e}");
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]
// `NewtonError::NotConverged` carries the iteration history and the last iterate's diagnostics by
// value (what a failure must say); failures are rare, so the size of the `Err` variant is not a
// cost worth an extra indirection in every signature.
#![allow(clippy::result_large_err)]
// Cell loops read and write several parallel per-cell arrays (ρ, λ, ν, the held flags) by the cell
// number, which is also the index into the mesh's face lists.
#![allow(clippy::needless_range_loop)]

mod cell;
mod ipm;
mod kkt;
mod ordering;
mod params;
mod solver;
mod system;

pub use params::{Factorization, NewtonParams, Ordering};
pub use solver::{Factorisation, FailureReason, IterateDiagnostics, NewtonError, NewtonSolver};

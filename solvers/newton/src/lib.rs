//! # jko-newton
//!
//! The `newton` backend: the one-step two-point-flux JKO scheme of DESIGN §2.1 solved by a
//! damped Newton method on its optimality system, reduced to the potential φ.
//!
//! ## The problem
//! minimise (1/(2τ)) Σ_σ G_σ² / (T_σ θ_σ(ρ)) + Σ_K |K| [f(ρ_K) + V_K ρ_K]
//! subject to |K|(ρ_K − ρⁿ_K) + Σ_{σ∋K} G_{K,σ} = 0, 0 ≤ ρ ≤ ρ_max,
//! with θ_σ = (ρ_K + ρ_L)/2, f(s) = β s ln s + s^m/(m−1); V contains a frozen interaction.
//!
//! ## The saddle function
//! Minimising over G at fixed ρ (multiplier φ/τ of the constraint) gives G_σ = T_σ θ_σ (φ_L − φ_K)
//! and the convex–concave function
//!   Φ(ρ, φ) = Σ_K |K| [e_μ(ρ_K) + V_K ρ_K] + (1/τ) Σ_K |K| φ_K (ρ_K − ρⁿ_K)
//!             − (1/(2τ)) Σ_σ T_σ θ_σ(ρ) (φ_L − φ_K)²,
//! whose stationarity equations are DESIGN's optimality system:
//!   ∂Φ/∂ρ_K = |K| (g_μ(ρ_K) + V_K + φ_K/τ) − Q_K(φ) = 0,  Q_K = (1/(4τ)) Σ_{σ∋K} T_σ (φ_L − φ_K)²,
//!   τ ∂Φ/∂φ_K = |K| (ρ_K − ρⁿ_K) + Σ_{σ∋K} T_σ θ_σ (φ_L − φ_K) = 0.
//! Here e_μ = f − μ ln ρ [without entropy] − μ ln(ρ_max − ρ) [with a cap] and g_μ = e_μ'. The
//! barrier terms are the multipliers of the bounds on the central path: λ_K = μ|K|/ρ_K,
//! ν_K = μ|K|/(ρ_max − ρ_K), so λ_K ρ_K = ν_K (ρ_max − ρ_K) = μ|K| (complementarity relaxed
//! by μ, driven to `mu_final` by continuation). With entropy, ρ > 0 holds without a barrier.
//!
//! ## Reduction to φ
//! ∂Φ/∂ρ is diagonal in ρ (Φ is linear in θ), so the ρ-equation of each cell is a scalar
//! monotone equation g_μ(ρ_K) = s_K(φ) := −V_K − φ_K/τ + Q_K/|K|, solved exactly per cell (closed
//! form ρ = e^{s/β − 1} for pure entropy). This leaves the concave dual function
//! ψ(φ) = Φ(ρ(φ), φ), with gradient ∂Φ/∂φ (the mass balance) and Hessian −S,
//!   S = Cᵀ D⁻¹ C + L_θ/τ,  D = diag(|K| g_μ'(ρ_K)),  C = ∂²Φ/∂ρ∂φ,
//!   C_KK = (|K| + ½ Σ_σ T_σ (φ_L − φ_K))/τ,  C_KL = −T_σ (φ_L − φ_K)/(2τ),
//! L_θ the graph Laplacian with weights T_σ θ_σ. S is symmetric positive definite (C·1 = |K|/τ
//! is nonzero on every connected component) with the distance-2 stencil of the mesh; this is
//! exactly the Schur complement of the (ρ, φ) Newton system after eliminating its diagonal
//! ρ–ρ block. Newton's direction d = S⁻¹ ∇ψ is an ascent direction; the step is damped by an
//! Armijo line search on ψ, which also rejects φ outside the dual domain, and ρ(φ) > 0 always.
//! The iteration stops when the scaled mass balance max_K |τ ∂Φ/∂φ_K| / (|K| max ρⁿ) ≤ `tol`
//! and μ has reached `mu_final`; with pure entropy the convergence is quadratic.
//!
//! Works on any two-point-flux mesh: it only uses volumes, faces and transmissibilities.
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

mod cell;
mod ipm;
mod kkt;
mod ordering;
mod params;
mod solver;
mod system;

pub use params::{Factorization, NewtonParams};
pub use solver::{FailureReason, IterateDiagnostics, NewtonError, NewtonSolver};

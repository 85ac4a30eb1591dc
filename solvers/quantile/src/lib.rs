//! # jko-quantile: 1D Lagrangian (quantile) JKO steps with exact W²
//!
//! In 1D the Wasserstein distance is flat in quantile coordinates: for measures of mass M with
//! quantile functions X, Xⁿ of ρ/M, ρⁿ/M,
//!
//! W²(ρ, ρⁿ) = M ∫₀¹ |X(u) − Xⁿ(u)|² du,
//!
//! so a JKO step ρ^{n+1} = argmin W²(ρ, ρⁿ)/(2τ) + F(ρ) is a smooth convex minimisation over
//! an increasing function X. The energy terms in these coordinates (ρ(X(u)) = M/X′(u)):
//!
//! - entropy β ∫ ρ log ρ = β M ∫₀¹ log(M/X′) du,
//! - porous medium ∫ ρ^m/(m−1) = M^m ∫₀¹ X′^{1−m} du/(m−1),
//! - potential ∫ V ρ = M ∫₀¹ V(X) du,
//! - interaction ½ ∬ W(x − y) ρρ = ½ M² ∬ W(X(u) − X(v)) du dv.
//!
//! The unknowns are X at mass levels u_i ([`QuantileGrid`]): equal-mass levels (first order for
//! densities with tails, whose quantile blows up at u → 0, 1) or levels u = Φ(z) with z evenly
//! spaced (second order, and exact on the Gaussian iterates of the Ornstein–Uhlenbeck and heat
//! flows; see [`grid`]). The discrete problem ([`energy`], [`newton`]) has a tridiagonal
//! Hessian and is solved by Newton with a line search that keeps X strictly increasing, to a
//! scaled gradient of 1e−12.
//!
//! Entry points: [`jko_step`] on a [`QuantileState`]; [`from_gaussian`], [`from_quantile`],
//! [`from_density`] and [`QuantileState::to_density`] to build and read states;
//! [`w2_squared`] (exact W² between the reconstructed measures) and [`w2_squared_nodal`];
//! [`QuantileSolver`], the `quantile` backend of the [`jko_core::StepSolver`] trait (1D meshes
//! whose cells tile one interval; mesh walls become bounds on the end nodes). The backend maps
//! a step back to the cells as the push-forward of ρⁿ by the nodes' displacement
//! ([`pushforward_masses`]), so a step that moves no node returns ρⁿ exactly.

#![warn(missing_docs)]

pub mod energy;
pub mod grid;
pub mod line;
pub mod newton;
mod normal;
pub mod potential;
pub mod solver;
pub mod state;

pub use energy::{InteractionTreatment, QuantileEnergy};
pub use grid::{NodeDistribution, QuantileGrid};
pub use line::LineMesh;
pub use newton::{QuantileParams, jko_step};
pub use potential::{CubicSpline, PotentialFn, QuantilePotential};
pub use solver::{QuantileSolver, QuantileStepOutput};
pub use state::{
    Moments, QuantileState, from_density, from_gaussian, from_quantile, pushforward_masses,
    w2_squared, w2_squared_nodal,
};

/// Cell densities of a state on a 1D mesh (the mesh must tile one interval): the cell masses
/// of the reconstructed piecewise-linear CDF, divided by the cell volumes. Mass that the
/// reconstruction puts outside the mesh goes to the end cells, so the mass is conserved.
///
/// # Errors
/// [`jko_core::InputError::InvalidMesh`] when the mesh is not one line of cells
/// ([`LineMesh::new`]).
///
/// ```rust
/// use jko_core::Mesh;
/// use jko_quantile::{QuantileGrid, from_gaussian, to_density};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let grid = QuantileGrid::gaussian(41, 8.0)?;
/// let state = from_gaussian(0.0, 0.3, &grid, 2.0)?;
/// let mesh = Mesh::grid(&[10], &[-2.0], &[2.0])?;
/// let rho = to_density(&state, &mesh)?;
/// assert!((mesh.mass(&rho) - 2.0).abs() < 1e-12);
/// assert!(rho.iter().all(|&r| r >= 0.0));
/// # Ok(())
/// # }
/// ```
pub fn to_density(
    state: &QuantileState,
    mesh: &jko_core::Mesh,
) -> Result<ndarray::Array1<f64>, jko_core::InputError> {
    let line = LineMesh::new(mesh)?;
    Ok(state.to_density(&line, mesh))
}

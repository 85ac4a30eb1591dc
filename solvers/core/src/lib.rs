//! # jko-core
//!
//! The shared vocabulary of the jko engine: [`Mesh`] (two-point-flux form), densities (cell
//! values, `ndarray::Array1<f64>`), [`Energy`], the JKO step problem [`JkoStep`], the
//! [`StepSolver`] trait that every backend implements, typed errors, and exact reference
//! solutions ([`exact`]).
//!
//! A JKO step computes ρ^{n+1} = argmin_ρ W_h²(ρⁿ, ρ)/(2τ) + F_h(ρ); see docs/mathematics.md §2 for the
//! discretisations the backends use.
#![warn(missing_docs)]

pub mod energy;
pub mod error;
pub mod exact;
pub mod gmsh;
pub mod mesh;
mod reduce;
pub mod simplicial;
pub mod step;

pub use energy::{Energy, EnergyTerm, Interaction, Potential, StepEnergy};
pub use error::{InputError, StepError, at_least_one, finite_non_negative, finite_positive};
pub use gmsh::Triangulation;
pub use mesh::{CellKind, CellShapes, Face, Grid, Mesh, shape_label};
pub use reduce::{deterministic_sum, deterministic_sum_pair, deterministic_sum_pair_of};
pub use simplicial::ControlVolumes;
pub use step::{
    BackendInfo, CheckReport, JkoStep, StepInfo, StepOutput, StepSolver, StepStatus, WarmStart,
    check_density,
};

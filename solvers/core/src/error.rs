//! Typed errors shared by every part of the engine.
//!
//! Input problems (`InputError`) are detected before any work is done; solver problems
//! (`StepError`) carry the diagnostics a person needs to understand what went wrong.

use thiserror::Error;

/// A problem with the data handed to the engine: mesh, density, energy or step size.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum InputError {
    #[error("shape mismatch in {what}: expected {expected}, found {found}")]
    ShapeMismatch {
        what: String,
        expected: String,
        found: String,
    },
    #[error("{what} contains a non-finite value ({value}) at index {index}")]
    NonFinite {
        what: String,
        index: usize,
        value: f64,
    },
    #[error("{what} is negative ({value:e}) at cell {index}; a density must be >= 0")]
    NegativeDensity {
        what: String,
        index: usize,
        value: f64,
    },
    #[error("{what} has zero mass; a JKO step needs a density of positive mass")]
    ZeroMass { what: String },
    #[error("time step tau must be finite and > 0, got {0}")]
    InvalidTau(f64),
    #[error("invalid mesh: {0}")]
    InvalidMesh(String),
    #[error("invalid parameter `{name}` = {value}: {reason}")]
    InvalidParameter {
        name: String,
        value: String,
        reason: String,
    },
    #[error(
        "congestion bound is infeasible: max_density x domain volume = {capacity:e} is below the mass {mass:e}"
    )]
    InfeasibleCongestion { capacity: f64, mass: f64 },
    #[error("{what} is too large: it would need about {bytes} bytes (limit {limit})")]
    TooLarge {
        what: String,
        bytes: u64,
        limit: u64,
    },
}

impl InputError {
    /// Shorthand for [`InputError::InvalidParameter`].
    pub fn parameter(name: &str, value: impl ToString, reason: &str) -> Self {
        InputError::InvalidParameter {
            name: name.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// Why a JKO step did not produce a result.
#[derive(Debug, Error, Clone)]
pub enum StepError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("the {solver} backend does not treat the energy term `{term}`{hint}")]
    Unsupported {
        solver: String,
        term: String,
        hint: String,
    },
    #[error(
        "the {solver} backend did not converge: status {status} after {iterations} iterations \
         (primal residual {primal_residual:.3e}, dual residual {dual_residual:.3e})"
    )]
    NotConverged {
        solver: String,
        status: String,
        iterations: usize,
        primal_residual: f64,
        dual_residual: f64,
        /// Residual history, one entry per iteration, when the backend records one.
        history: Vec<f64>,
    },
    #[error("the {solver} backend failed: {message}")]
    Numerical { solver: String, message: String },
}

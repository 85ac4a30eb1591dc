//! Typed errors shared by every part of the engine.
//!
//! Input problems (`InputError`) are detected before any work is done; solver problems
//! (`StepError`) carry the diagnostics a person needs to understand what went wrong.
//!
//! Both are plain data (`Clone`, and `PartialEq` for input errors), so callers can match on a
//! variant and read its fields; their `Display` is a complete sentence for a person.

use crate::energy::EnergyTerm;
use thiserror::Error;

/// A problem with the data handed to the engine: mesh, density, energy or step size.
///
/// ```rust
/// use jko_core::{InputError, Mesh};
///
/// let err = Mesh::grid(&[4], &[1.0], &[0.0]).unwrap_err();
/// assert!(matches!(err, InputError::InvalidMesh(_)));
/// assert_eq!(err.to_string(), "invalid mesh: axis 0: lower = 1 must be below upper = 0");
/// ```
#[derive(Debug, Error, Clone, PartialEq)]
pub enum InputError {
    /// An array or list does not have the expected length or shape.
    #[error("shape mismatch in {what}: expected {expected}, found {found}")]
    ShapeMismatch {
        /// What was checked ("density", "cell potential", ...).
        what: String,
        /// The expected length or shape, in words.
        expected: String,
        /// The length or shape found.
        found: String,
    },
    /// A value that must be finite is NaN or infinite.
    #[error("{what} contains a non-finite value ({value}) at index {index}")]
    NonFinite {
        /// What was checked.
        what: String,
        /// Index of the first non-finite entry.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// A density has a negative cell value.
    #[error("{what} is negative ({value:e}) at cell {index}; a density must be >= 0")]
    NegativeDensity {
        /// Which density.
        what: String,
        /// The first negative cell.
        index: usize,
        /// Its value.
        value: f64,
    },
    /// A density has mass Σ_K |K| ρ_K = 0.
    #[error("{what} has zero mass; a JKO step needs a density of positive mass")]
    ZeroMass {
        /// Which density.
        what: String,
    },
    /// The time step τ is not finite and > 0 (the value given).
    #[error("time step tau must be finite and > 0, got {0}")]
    InvalidTau(f64),
    /// The mesh description is invalid (the reason, in words).
    #[error("invalid mesh: {0}")]
    InvalidMesh(String),
    /// A mesh file that cannot be read: its path and what is wrong (with the section or
    /// element concerned).
    #[error("mesh file {path}: {message}")]
    MeshFile {
        /// The file, as given.
        path: String,
        /// What is wrong, in words.
        message: String,
    },
    /// A mesh whose geometry does not give a two-point-flux scheme (docs/mathematics.md §6):
    /// the reason with a few examples and what to do, and the file tags of every offending
    /// element (or node, for Voronoi cells).
    #[error("mesh not admissible for two-point fluxes: {reason}")]
    InadmissibleMesh {
        /// What fails, where, and what to do instead.
        reason: String,
        /// The mesh file's tags of the offending elements (nodes for Voronoi cells).
        tags: Vec<u64>,
    },
    /// A parameter is out of its range; see [`InputError::parameter`].
    #[error("invalid parameter `{name}` = {value}: {reason}")]
    InvalidParameter {
        /// The parameter's name as in configs ("porous.m", "entropy", ...).
        name: String,
        /// The value given, formatted.
        value: String,
        /// The condition it violates.
        reason: String,
    },
    /// ρ ≤ ρ_max cannot hold the mass: ρ_max |Ω| < M.
    #[error(
        "congestion bound is infeasible: max_density x domain volume = {capacity:e} is below the mass {mass:e}, so no density fits under max_density; raise max_density, enlarge the domain or lower the mass"
    )]
    InfeasibleCongestion {
        /// ρ_max |Ω|, the largest mass the bound allows.
        capacity: f64,
        /// The mass M of ρⁿ.
        mass: f64,
    },
    /// A problem larger than a fixed size limit (such as [`crate::mesh::MAX_CELLS`]).
    #[error("{what} is too large: it would need about {bytes} bytes (limit {limit})")]
    TooLarge {
        /// What is too large.
        what: String,
        /// Estimated memory, in bytes.
        bytes: u64,
        /// The limit, in bytes.
        limit: u64,
    },
    /// A computation whose estimated memory exceeds the limit, refused before allocating.
    #[error(
        "{what} needs about {} for {mesh} (estimate), more than the {} {limit_source}; {hint}",
        gib(.bytes),
        gib(.limit)
    )]
    OutOfMemory {
        /// What needs the memory ("the conic backend", "the mesh").
        what: String,
        /// The problem size in words ("a 2048x2048 mesh (4194304 cells)").
        mesh: String,
        /// Estimated peak memory, in bytes.
        bytes: u64,
        /// The memory limit, in bytes.
        limit: u64,
        /// Where the limit comes from ("available (MemAvailable)", "set by max_memory_gib").
        limit_source: String,
        /// What to do instead, appended to the message.
        hint: String,
    },
}

/// Bytes as GiB (or MiB below 1 GiB) for messages.
fn gib(bytes: &u64) -> String {
    let b = *bytes as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.1} GiB", b / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    }
}

impl InputError {
    /// Shorthand for [`InputError::InvalidParameter`].
    ///
    /// ```rust
    /// use jko_core::InputError;
    ///
    /// let err = InputError::parameter("entropy", -1.0, "must be > 0");
    /// assert_eq!(err.to_string(), "invalid parameter `entropy` = -1: must be > 0");
    /// ```
    pub fn parameter(name: &str, value: impl ToString, reason: &str) -> Self {
        InputError::InvalidParameter {
            name: name.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// `Ok(value)` when `value` is finite and > 0, else [`InputError::InvalidParameter`] naming
/// `name` ("must be finite and > 0"): the one check behind every positive parameter (τ,
/// temperatures, tolerances, widths, masses).
///
/// ```rust
/// use jko_core::{InputError, finite_positive};
///
/// assert_eq!(finite_positive("initial.std", 0.5), Ok(0.5));
/// let err = finite_positive("initial.std", 0.0).unwrap_err();
/// assert_eq!(err, InputError::parameter("initial.std", 0.0, "must be finite and > 0"));
/// assert!(finite_positive("tol", f64::NAN).is_err() && finite_positive("tol", f64::INFINITY).is_err());
/// ```
pub fn finite_positive(name: &str, value: f64) -> Result<f64, InputError> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(InputError::parameter(name, value, "must be finite and > 0"))
    }
}

/// `Ok(value)` when `value` is finite and ≥ 0, else [`InputError::InvalidParameter`] naming
/// `name` ("must be finite and >= 0").
///
/// ```rust
/// use jko_core::finite_non_negative;
///
/// assert_eq!(finite_non_negative("eta", 0.0), Ok(0.0));
/// assert!(finite_non_negative("eta", -1e-300).unwrap_err().to_string().contains("`eta`"));
/// ```
pub fn finite_non_negative(name: &str, value: f64) -> Result<f64, InputError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(InputError::parameter(
            name,
            value,
            "must be finite and >= 0",
        ))
    }
}

/// `Ok(value)` when the count `value` (any unsigned integer type) is at least 1, else [`InputError::InvalidParameter`]
/// naming `name` ("must be >= 1"): the one check behind every iteration cap, step count and
/// dimension.
///
/// ```rust
/// use jko_core::{InputError, at_least_one};
///
/// assert_eq!(at_least_one("max_iter", 50), Ok(50));
/// assert_eq!(at_least_one("max_iter", 0), Err(InputError::parameter("max_iter", 0, "must be >= 1")));
/// ```
pub fn at_least_one<T: Copy + PartialOrd + From<u8> + ToString>(
    name: &str,
    value: T,
) -> Result<T, InputError> {
    if value >= T::from(1) {
        Ok(value)
    } else {
        Err(InputError::parameter(name, value, "must be >= 1"))
    }
}

/// Why a JKO step did not produce a result.
///
/// ```rust
/// use jko_core::{InputError, StepError};
///
/// // Input errors convert with `?` and display unchanged.
/// let err: StepError = InputError::InvalidTau(0.0).into();
/// assert!(matches!(err, StepError::Input(InputError::InvalidTau(_))));
/// assert_eq!(err.to_string(), "time step tau must be finite and > 0, got 0");
/// ```
#[derive(Debug, Error, Clone)]
pub enum StepError {
    /// The input was invalid.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The backend does not treat a term of the energy.
    #[error("the {solver} backend does not treat the energy term `{term}`{hint}")]
    Unsupported {
        /// Backend name.
        solver: String,
        /// The term.
        term: EnergyTerm,
        /// Appended to the message as is: empty, or "; use ..." naming an alternative.
        hint: String,
    },
    /// The backend does not work on this mesh (its dimension, or a structure it needs such
    /// as a uniform grid); see [`crate::StepSolver::supports_mesh`].
    #[error("the {solver} backend does not treat this mesh: {reason}")]
    UnsupportedMesh {
        /// Backend name.
        solver: String,
        /// What the backend needs and what the mesh is ("1D meshes only; this mesh is 2D").
        reason: String,
    },
    /// The backend stopped before meeting its tolerances; its result is not returned.
    #[error(
        "the {solver} backend did not converge: status {status} after {iterations} iterations \
         (primal residual {primal_residual:.3e}, dual residual {dual_residual:.3e}); \
         a smaller time step tau, or a larger max_iter, usually helps"
    )]
    NotConverged {
        /// Backend name.
        solver: String,
        /// The backend's own status (such as `max_iter` or a solver status name).
        status: String,
        /// Iterations done.
        iterations: usize,
        /// Last primal residual, backend scaled.
        primal_residual: f64,
        /// Last dual residual, backend scaled.
        dual_residual: f64,
        /// Residual history, one entry per iteration, when the backend records one.
        history: Vec<f64>,
    },
    /// A numerical breakdown (singular system, NaN, ...).
    #[error("the {solver} backend failed: {message}")]
    Numerical {
        /// Backend name.
        solver: String,
        /// What went wrong.
        message: String,
    },
}

//! How a run proceeds: `[scheme]` (τ, steps), `[checks]` (invariant tolerances), `[limits]`
//! (resources).

use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

/// `[scheme]`: the JKO time step and the number of steps (final time τ · steps).
///
/// ```rust
/// let s: jko::config::SchemeConfig = toml::from_str("tau = 0.1\nsteps = 10").unwrap();
/// assert_eq!(s.tau * s.steps as f64, 1.0);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemeConfig {
    /// Time step τ (finite, > 0).
    pub tau: f64,
    /// Number of steps.
    pub steps: usize,
}

/// Invariant checks made after every step by [`crate::driver::Stepper::step`]; a violation
/// stops the run with [`RunError::Invariant`](crate::error::RunError::Invariant). Defaults: mass
/// 1e-9, positivity 1e-10, bound 1e-8, energy 1e-7.
///
/// ```rust
/// use jko::config::Checks;
///
/// let c: Checks = toml::from_str("mass_rtol = 1e-6").unwrap();
/// assert_eq!(c.mass_rtol, 1e-6);
/// assert_eq!(c.energy_rtol, Checks::default().energy_rtol);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Checks {
    /// |M^{n+1} − M⁰| / M⁰ allowed.
    pub mass_rtol: f64,
    /// ρ ≥ −positivity_atol · max(1, max ρ).
    pub positivity_atol: f64,
    /// ρ ≤ ρ_max (1 + bound_rtol).
    pub bound_rtol: f64,
    /// F(ρ^{n+1}) + W²/(2τ) ≤ F(ρⁿ) + energy_rtol · (|F(ρⁿ)| + W²/(2τ) + mass).
    pub energy_rtol: f64,
}

impl Default for Checks {
    fn default() -> Self {
        Checks {
            mass_rtol: 1e-9,
            positivity_atol: 1e-10,
            bound_rtol: 1e-8,
            energy_rtol: 1e-7,
        }
    }
}

/// `[limits]`: resources a run may use. A run whose estimated memory (the mesh plus the
/// backend's [`jko_core::StepSolver::memory_estimate`]) exceeds the limit is refused before
/// anything large is allocated (by [`crate::plan::Plan::build`], which reads the limit through
/// [`crate::plan::MemoryBudget::from_limits`]).
///
/// ```toml
/// [limits]
/// max_memory_gib = 8.0   # default: the environment's JKO_MAX_MEMORY_GIB, else MemAvailable
/// ```
///
/// ```rust
/// use jko::config::Limits;
///
/// let limits: Limits = toml::from_str("max_memory_gib = 0.5").unwrap();
/// assert_eq!(limits.max_memory_gib, Some(0.5));
/// ```
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Memory limit in GiB (None: `JKO_MAX_MEMORY_GIB`, else the available memory).
    pub max_memory_gib: Option<f64>,
}

impl Limits {
    pub(super) fn is_default(&self) -> bool {
        *self == Limits::default()
    }
}

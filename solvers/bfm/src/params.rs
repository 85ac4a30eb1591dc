//! Parameters of the dual Newton–Krylov iteration (`[solver]` keys of `kind = "bfm"`).

use jko_core::{InputError, at_least_one, finite_positive};
use serde::{Deserialize, Serialize};

/// Parameters of the `bfm` backend. Every field has a default.
///
/// ```rust
/// use jko_bfm::BfmParams;
///
/// let p = BfmParams::default();
/// assert!(p.validate().is_ok());
/// let bad = BfmParams { tol: 0.0, ..BfmParams::default() };
/// assert!(bad.validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BfmParams {
    /// Stop when the relative L1 marginal error Σ|K| |ρ(p) det(I − τD²ψ) − ρⁿ| / M (the
    /// mismatch between ρⁿ and the new density pulled back by the map) is at most this.
    pub tol: f64,
    /// Maximum Newton iterations per continuation stage.
    pub max_iter: usize,
    /// Krylov dimension of restarted GMRES (memory: this many arrays over the grid).
    pub krylov_dim: usize,
    /// Maximum GMRES matrix-vector products per Newton iteration.
    pub max_linear: usize,
    /// Maximum continuation stages in τ (used only when the plain Newton solve fails).
    pub max_stages: usize,
}

impl Default for BfmParams {
    fn default() -> Self {
        BfmParams {
            tol: 1e-9,
            max_iter: 40,
            krylov_dim: 20,
            max_linear: 200,
            max_stages: 40,
        }
    }
}

impl BfmParams {
    /// Check the ranges: `tol` finite and > 0; `max_iter`, `krylov_dim`, `max_linear`,
    /// `max_stages` ≥ 1.
    ///
    /// # Errors
    /// [`InputError::InvalidParameter`] naming the parameter.
    ///
    /// ```rust
    /// use jko_bfm::BfmParams;
    ///
    /// let err = BfmParams { max_iter: 0, ..BfmParams::default() }.validate().unwrap_err();
    /// assert!(err.to_string().contains("max_iter"));
    /// ```
    pub fn validate(&self) -> Result<(), InputError> {
        finite_positive("tol", self.tol)?;
        for (name, value) in [
            ("max_iter", self.max_iter),
            ("krylov_dim", self.krylov_dim),
            ("max_linear", self.max_linear),
            ("max_stages", self.max_stages),
        ] {
            at_least_one(name, value)?;
        }
        Ok(())
    }
}

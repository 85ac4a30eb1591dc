//! Parameters of the Sinkhorn backend (the `[solver]` table of a config with `kind = "sinkhorn"`).

use jko_core::{InputError, finite_positive};
use serde::{Deserialize, Serialize};

/// When to run the iterations on log-scalings (log-sum-exp kernel) instead of the plain kernel.
///
/// ```rust
/// use jko_sinkhorn::{LogDomain, SinkhornParams};
///
/// let params: SinkhornParams = toml::from_str(r#"log_domain = "always""#).unwrap();
/// assert_eq!(params.log_domain, LogDomain::Always);
/// assert_eq!(SinkhornParams::default().log_domain, LogDomain::Auto);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogDomain {
    /// Plain kernel while the scalings stay in floating-point range; switch to the log domain
    /// for the rest of the step as soon as a kernel product or a scaling under- or overflows.
    #[default]
    Auto,
    /// Always log-domain (slower per iteration, never underflows).
    Always,
    /// Plain kernel only: an underflow is an error.
    Never,
}

/// How the Gibbs kernel is applied.
///
/// ```rust
/// use jko_sinkhorn::{KernelChoice, SinkhornParams};
///
/// let params: SinkhornParams = toml::from_str(r#"kernel = "dense""#).unwrap();
/// assert_eq!(params.kernel, KernelChoice::Dense);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelChoice {
    /// Tensor product of 1D kernels on grids, dense N×N kernel on general meshes.
    #[default]
    Auto,
    /// Dense N×N kernel on any mesh (refused above `dense_limit_bytes`).
    Dense,
}

/// ε-scaling: solve a decreasing sequence ε₀ > ε₀θ > … > ε, each stage started from the
/// potentials of the previous one. Intermediate stages stop at `stage_tol` (or after
/// `stage_max_iter` iterations); only the last stage must reach `tol`.
///
/// Off by default: the proximal map of an internal energy damps every b-update, so a cold
/// start at the target ε converges in fewer iterations than the ladder (measured on the
/// robustness matrix: 1.3–2.5× fewer on every case, see the crate docs); it can help steps
/// without internal energy under a congestion bound at very small ε. When enabled:
/// ε₀ = diam²/100, θ = 1/2, stage tolerance 1e-4, 2000 iterations per stage, 3 stages above ε
/// after a warm start.
///
/// ```rust
/// use jko_sinkhorn::SinkhornParams;
///
/// let params: SinkhornParams =
///     toml::from_str("[epsilon_scaling]\nenabled = true\nfactor = 0.25").unwrap();
/// assert_eq!(params.epsilon_scaling.factor, 0.25);
/// assert_eq!(params.epsilon_scaling.stage_tol, 1e-4); // the other fields keep their defaults
/// assert!(params.validate().is_ok());
/// assert!(!jko_sinkhorn::SinkhornParams::default().epsilon_scaling.enabled);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EpsilonScaling {
    /// Run the ε ladder (false: one stage at the target ε, from a cold or warm start).
    pub enabled: bool,
    /// First ε of a cold start; `None`: ε₀ = diam²/100 (diam = diameter of the mesh's
    /// bounding box), never below the target ε.
    pub start: Option<f64>,
    /// Ratio θ ∈ (0, 1) between consecutive ε.
    pub factor: f64,
    /// Marginal violation at which an intermediate stage stops.
    pub stage_tol: f64,
    /// Iteration cap of an intermediate stage (reaching it is not an error).
    pub stage_max_iter: usize,
    /// Number of stages above the target ε when warm-started from a previous step's potential
    /// (0: start directly at the target ε). Between JKO steps the potential moves by O(τ),
    /// large against ε, so a short ladder from the warm potential is more robust than
    /// starting at ε itself (measured: no consistent gain either way; see the crate report).
    pub warm_stages: usize,
}

impl Default for EpsilonScaling {
    fn default() -> Self {
        EpsilonScaling {
            enabled: false,
            start: None,
            factor: 0.5,
            stage_tol: 1e-4,
            stage_max_iter: 2_000,
            warm_stages: 3,
        }
    }
}

/// Parameters of [`crate::SinkhornSolver`] (serde: unknown fields are rejected, missing ones
/// take the defaults).
///
/// Defaults: ε from the default rule (`epsilon_factor = 0.25`, `max_extra_temperature = 0.025`), `tol = 1e-10`, 50 000 iterations, `almost_tol = 1e-6`,
/// ε-scaling off, log domain `auto`, kernel `auto`, automatic over-relaxation capped at 1.95,
/// the global thread pool, dense kernels up to 512 MiB, no history, entropic bias removed to
/// first order (`debias`).
///
/// ```rust
/// use jko_sinkhorn::SinkhornParams;
///
/// let params: SinkhornParams = toml::from_str("epsilon = 0.01\ntol = 1e-9").unwrap();
/// assert_eq!((params.epsilon, params.tol), (Some(0.01), 1e-9));
/// assert!(toml::from_str::<SinkhornParams>("eps = 0.01").is_err()); // unknown field
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SinkhornParams {
    /// Entropic regularisation ε (units of the cost |x − y|², i.e. length²). `None`: the
    /// default rule ε = clamp(`epsilon_factor` · τ² · F², h², ε_max) of each step (see
    /// [`crate::SinkhornSolver::epsilon_for`] and the crate docs).
    pub epsilon: Option<f64>,
    /// The constant c of the default rule ε = c τ² F² (F² the mean squared driving force at
    /// ρⁿ): the entropic bias is then of the order of the step's own time-discretisation error.
    pub epsilon_factor: f64,
    /// Largest extra temperature ε/(4τ) of the default rule, as a fraction of β: ε ≤ 4τβ·this
    /// (with entropy). What `debias` leaves is second order in this fraction, the iteration count
    /// grows as its −½ power, and on long lines the work of a step does not depend on it (the
    /// band narrows as the count grows; module docs of `epsilon`). Measured on OU 1D at 16384
    /// cells, τ = 1: 0.1 gave 22 iterations and an L1 error 4.6e-3 against the exact JKO
    /// iterate, 0.025 (the default) 48 iterations and 3.0e-4, in the same CPU time.
    pub max_extra_temperature: f64,
    /// Stop when the relative ℓ¹ violation of the first marginal ‖π1 − p‖₁/‖p‖₁ is below this.
    pub tol: f64,
    /// Cap on the total number of iterations over the ε schedule (one iteration = one update
    /// of each scaling = two kernel applications).
    pub max_iter: usize,
    /// When the cap is reached with a violation below this, the step is returned with status
    /// `AlmostSolved` (and a note); above it the step fails with `NotConverged`.
    pub almost_tol: f64,
    /// The ε ladder of a step.
    pub epsilon_scaling: EpsilonScaling,
    /// When to iterate on log-scalings.
    pub log_domain: LogDomain,
    /// Tensor-product or dense Gibbs kernel.
    pub kernel: KernelChoice,
    /// Over-relaxation ω of the scaling updates: `None` chooses ω = 2/(1 + √(1 − θ)) per stage
    /// from the measured plain rate θ (capped at `omega_max`); `Some(1.0)` is plain Sinkhorn;
    /// `Some(ω)`, ω ∈ (0, 2), a fixed value. The last update is always unrelaxed.
    pub omega: Option<f64>,
    /// Cap of the automatic over-relaxation, in [1, 2).
    pub omega_max: f64,
    /// Rayon threads for this backend (`None`: the global pool). Results do not depend on it.
    pub threads: Option<usize>,
    /// Largest dense kernel (bytes of the N×N matrix) the backend will allocate.
    pub dense_limit_bytes: u64,
    /// Record the marginal violation of every iteration of the last stage in `StepInfo::history`.
    pub record_history: bool,
    /// Remove the entropic bias to first order: the blur acts as an extra temperature
    /// ε/(4τ), so the proximal map uses the temperature β − ε/(4τ) (bounded below by
    /// −ε/(6τ), which keeps each b-update a contraction; the step stays convex down to
    /// −ε/(2τ), see the module docs of `epsilon`). `false`: the plain entropic step.
    pub debias: bool,
    /// Start each step from the same step solved on a coarser grid at the same ε (unmasked
    /// grids whose blur √(ε/2) spans several cells; module `multiscale` of the crate source).
    /// The answer is the same to the tolerance; `false`: start from the previous potential.
    pub multiscale: bool,
    /// Balance the mass of every b-update: a common factor on the first scaling chosen so
    /// that the proximal map's output carries the mass of ρⁿ (exact block ascent of the dual;
    /// it removes the slowest mode of the iteration, a uniform error of the potential, which
    /// otherwise decays only as σβ/(1 + σβ) per iteration). Closed-form proximal maps only (not
    /// with a porous term). The answer is the same to the tolerance; `false`: plain updates.
    pub mass_balance: bool,
}

impl Default for SinkhornParams {
    fn default() -> Self {
        SinkhornParams {
            epsilon: None,
            epsilon_factor: 0.25,
            max_extra_temperature: 0.025,
            tol: 1e-10,
            max_iter: 50_000,
            almost_tol: 1e-6,
            epsilon_scaling: EpsilonScaling::default(),
            log_domain: LogDomain::Auto,
            omega: None,
            omega_max: 1.95,
            kernel: KernelChoice::Auto,
            threads: None,
            dense_limit_bytes: 512 << 20,
            record_history: false,
            debias: true,
            multiscale: true,
            mass_balance: true,
        }
    }
}

/// `Ok(())` when `value` lies in (0, 1) (a tolerance or a reduction factor), else
/// [`InputError::InvalidParameter`] naming `name` ("must lie in (0, 1)").
fn in_open_unit_interval(name: &str, value: f64) -> Result<(), InputError> {
    if value.is_finite() && value > 0.0 && value < 1.0 {
        Ok(())
    } else {
        Err(InputError::parameter(name, value, "must lie in (0, 1)"))
    }
}

impl SinkhornParams {
    /// Check every parameter: ε and ε₀ finite and > 0, tolerances in (0, 1) with
    /// `tol ≤ almost_tol`, ω ∈ (0, 2), `omega_max` ∈ [1, 2), θ ∈ (0, 1), positive caps.
    ///
    /// # Errors
    /// [`InputError::InvalidParameter`] naming the offending parameter as in a config
    /// (`solver.tol`, `solver.epsilon_scaling.factor`, ...).
    ///
    /// ```rust
    /// use jko_core::InputError;
    /// use jko_sinkhorn::SinkhornParams;
    ///
    /// let params = SinkhornParams { tol: 1e-6, almost_tol: 1e-8, ..SinkhornParams::default() };
    /// match params.validate() {
    ///     Err(InputError::InvalidParameter { name, .. }) => assert_eq!(name, "solver.almost_tol"),
    ///     other => panic!("expected an invalid almost_tol, got {other:?}"),
    /// }
    /// ```
    pub fn validate(&self) -> Result<(), InputError> {
        if let Some(e) = self.epsilon {
            finite_positive("solver.epsilon", e)?;
        }
        finite_positive("solver.epsilon_factor", self.epsilon_factor)?;
        finite_positive("solver.max_extra_temperature", self.max_extra_temperature)?;
        in_open_unit_interval("solver.tol", self.tol)?;
        if !(self.almost_tol.is_finite() && self.almost_tol >= self.tol && self.almost_tol < 1.0) {
            return Err(InputError::parameter(
                "solver.almost_tol",
                self.almost_tol,
                "must lie in [tol, 1)",
            ));
        }
        if let Some(w) = self.omega
            && !(w.is_finite() && w > 0.0 && w < 2.0)
        {
            return Err(InputError::parameter(
                "solver.omega",
                w,
                "the relaxation must lie in (0, 2)",
            ));
        }
        if !(self.omega_max.is_finite() && (1.0..2.0).contains(&self.omega_max)) {
            return Err(InputError::parameter(
                "solver.omega_max",
                self.omega_max,
                "must lie in [1, 2)",
            ));
        }
        jko_core::at_least_one("solver.max_iter", self.max_iter)?;
        if self.threads == Some(0) {
            return Err(InputError::parameter(
                "solver.threads",
                0,
                "must be >= 1 (or absent for the global pool)",
            ));
        }
        if self.dense_limit_bytes == 0 {
            return Err(InputError::parameter(
                "solver.dense_limit_bytes",
                0,
                "must be > 0",
            ));
        }
        let s = &self.epsilon_scaling;
        in_open_unit_interval("solver.epsilon_scaling.factor", s.factor)?;
        if let Some(e) = s.start {
            finite_positive("solver.epsilon_scaling.start", e)?;
        }
        in_open_unit_interval("solver.epsilon_scaling.stage_tol", s.stage_tol)?;
        jko_core::at_least_one("solver.epsilon_scaling.stage_max_iter", s.stage_max_iter)?;
        Ok(())
    }

    /// The ε schedule of one step: decreasing, ending exactly at `epsilon`.
    pub(crate) fn schedule(&self, epsilon: f64, diameter2: f64, warm: bool) -> Vec<f64> {
        let s = &self.epsilon_scaling;
        if !s.enabled {
            return vec![epsilon];
        }
        let mut start = s.start.unwrap_or(diameter2 / 100.0);
        if warm {
            start = start.min(epsilon * s.factor.powi(-(s.warm_stages as i32)));
        }
        let mut out = Vec::new();
        let mut e = start;
        // Stop a stage short of ε when the next one would be within 1% of it.
        while e > epsilon * 1.01 && out.len() < 200 {
            out.push(e);
            e *= s.factor;
        }
        out.push(epsilon);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_values_are_named() {
        assert!(SinkhornParams::default().validate().is_ok());
        let bad = |p: SinkhornParams, name: &str| {
            let msg = p.validate().unwrap_err().to_string();
            assert!(msg.contains(name), "{msg} should name {name}");
        };
        bad(
            SinkhornParams {
                epsilon: Some(0.0),
                ..Default::default()
            },
            "solver.epsilon",
        );
        bad(
            SinkhornParams {
                epsilon: Some(f64::NAN),
                ..Default::default()
            },
            "solver.epsilon",
        );
        bad(
            SinkhornParams {
                tol: 0.0,
                ..Default::default()
            },
            "solver.tol",
        );
        bad(
            SinkhornParams {
                max_iter: 0,
                ..Default::default()
            },
            "solver.max_iter",
        );
        bad(
            SinkhornParams {
                omega: Some(2.0),
                ..Default::default()
            },
            "solver.omega",
        );
        bad(
            SinkhornParams {
                threads: Some(0),
                ..Default::default()
            },
            "solver.threads",
        );
        bad(
            SinkhornParams {
                almost_tol: 1e-12,
                ..Default::default()
            },
            "solver.almost_tol",
        );
        let mut p = SinkhornParams::default();
        p.epsilon_scaling.factor = 1.0;
        bad(p, "factor");
    }

    #[test]
    fn schedule_decreases_to_the_target() {
        let mut p = SinkhornParams::default();
        assert_eq!(p.schedule(1e-3, 100.0, false), vec![1e-3]);
        p.epsilon_scaling.enabled = true;
        let s = p.schedule(1e-3, 100.0, false);
        assert_eq!(*s.last().unwrap(), 1e-3);
        assert!((s[0] - 1.0).abs() < 1e-15);
        assert!(s.windows(2).all(|w| w[1] < w[0]));
        // warm start: `warm_stages` stages above the target
        let w = p.schedule(1e-3, 100.0, true);
        assert_eq!(w.len(), 4);
        assert!(
            w.iter()
                .zip([8e-3, 4e-3, 2e-3, 1e-3])
                .all(|(a, b)| (a - b).abs() < 1e-15)
        );
        let mut q = p.clone();
        q.epsilon_scaling.warm_stages = 0;
        assert_eq!(q.schedule(1e-3, 100.0, true), vec![1e-3]);
        // target above the cold start: the target only
        assert_eq!(p.schedule(5.0, 100.0, false), vec![5.0]);
    }

    #[test]
    fn solver_table_parses_from_toml() {
        #[derive(Deserialize)]
        #[serde(tag = "kind", rename_all = "snake_case")]
        enum Solver {
            Sinkhorn(SinkhornParams),
        }
        #[derive(Deserialize)]
        struct Config {
            solver: Solver,
        }
        let c: Config = toml::from_str(
            "[solver]\nkind = \"sinkhorn\"\nepsilon = 1e-3\ntol = 1e-8\nlog_domain = \"always\"\n\
             [solver.epsilon_scaling]\nfactor = 0.7\n",
        )
        .unwrap();
        let Solver::Sinkhorn(p) = c.solver;
        assert_eq!(p.epsilon, Some(1e-3));
        assert_eq!(p.log_domain, LogDomain::Always);
        assert_eq!(p.epsilon_scaling.factor, 0.7);
        assert_eq!(p.max_iter, SinkhornParams::default().max_iter);
        let bad: Result<Config, _> =
            toml::from_str("[solver]\nkind = \"sinkhorn\"\nepsilom = 1.0\n");
        assert!(bad.is_err());
    }
}

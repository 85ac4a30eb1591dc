//! The backend registry: a backend is chosen by name at run time (config `[solver] kind = ...`
//! or `--solver`) and used through [`jko_core::StepSolver`]. Adding a backend is one variant here.

use crate::error::RunError;
use jko_core::{EnergyTerm, StepSolver};
use serde::{Deserialize, Serialize};

/// `[solver]` table: `kind` selects the backend, the other keys are its parameters (each
/// backend's params struct, with defaults for missing keys). `jko solvers` lists the backends.
///
/// ```rust
/// use jko::backend::SolverConfig;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config: SolverConfig = toml::from_str("kind = \"sinkhorn\"")?;
/// assert_eq!(config.name(), "sinkhorn");
/// assert_eq!(config, SolverConfig::default_for("sinkhorn")?);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SolverConfig {
    /// Clarabel on the one-step two-point-flux scheme (DESIGN §2.1).
    Conic(jko_conic::ConicParams),
    /// Newton on the optimality system of the same one-step scheme (DESIGN §2.1).
    Newton(jko_newton::NewtonParams),
    /// Entropic JKO (Peyré 2015): generalised Sinkhorn with tensor-product kernels.
    Sinkhorn(jko_sinkhorn::SinkhornParams),
    /// 1D Lagrangian (quantile) steps with exact W².
    Quantile(jko_quantile::QuantileParams),
    /// JKO-Flow surrogate: the gradient flow of the modified energy J^η over each step,
    /// optionally checked against a proximal backend.
    Flow(FlowConfig),
}

/// `[solver] kind = "flow"`: the surrogate's parameters plus its check against true proximal
/// steps: every `check_every` steps the step is also solved by `check_solver` from the same
/// ρⁿ; the discrepancy is recorded, and when it exceeds `check_tol` (relative L1) the proximal
/// result replaces the surrogate's (a fallback, recorded in the step record).
///
/// ```toml
/// [solver]
/// kind = "flow"
/// check_every = 5
/// check_solver = "newton"
/// check_tol = 1e-2
/// [solver.flow]          # the integrator's parameters (jko_flow::FlowParams), optional
/// variant = "resummed"
/// rtol = 1e-6
/// ```
///
/// ```rust
/// use jko::backend::{FlowConfig, SolverConfig};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config: SolverConfig = toml::from_str("kind = \"flow\"\ncheck_every = 5")?;
/// let SolverConfig::Flow(flow) = &config else { unreachable!() };
/// assert_eq!((flow.check_every, flow.check_solver.as_str(), flow.check_tol), (Some(5), "newton", 1e-2));
/// assert_eq!(FlowConfig::default().check_every, None);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowConfig {
    /// `[solver.flow]`: the integrator's parameters.
    #[serde(default)]
    pub flow: jko_flow::FlowParams,
    /// Check every `check_every`-th step against a proximal backend (None: no checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_every: Option<usize>,
    /// The proximal backend of the checks, with its default parameters (default `newton`).
    #[serde(default = "default_check_solver")]
    pub check_solver: String,
    /// Relative L1 discrepancy above which the proximal result is kept (default 1e-2).
    #[serde(default = "default_check_tol")]
    pub check_tol: f64,
}

fn default_check_solver() -> String {
    "newton".into()
}

fn default_check_tol() -> f64 {
    1e-2
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            flow: Default::default(),
            check_every: None,
            check_solver: default_check_solver(),
            check_tol: default_check_tol(),
        }
    }
}

/// Registered backends: (name, one-line summary), in the order `jko solvers` lists them.
pub const BACKENDS: &[(&str, &str)] = &[
    (
        "conic",
        "Clarabel interior point: one-step two-point-flux scheme, or multi-level Benamou-Brenier with `levels = L`",
    ),
    (
        "newton",
        "Newton on the optimality system of the one-step scheme (reduced dual, sparse Cholesky, barrier for bounds)",
    ),
    (
        "sinkhorn",
        "entropic JKO: generalised Sinkhorn, tensor-product Gibbs kernels, log-domain, eps-scaling",
    ),
    (
        "quantile",
        "1D Lagrangian JKO with exact W2: Newton on the quantile function (1D meshes only)",
    ),
    (
        "flow",
        "JKO-Flow surrogate (Halmos-Hanin): explicit RK integration of the modified energy's flow, resummed",
    ),
];

/// What `jko solvers` prints about one backend (see [`backends`]).
///
/// ```rust
/// let info = &jko::backend::backends().unwrap()[0];
/// assert_eq!((info.name, info.solver.name()), ("conic", "conic"));
/// ```
pub struct BackendInfo {
    /// The name as written in configs (`kind`).
    pub name: &'static str,
    /// One line on the method.
    pub summary: &'static str,
    /// The backend with default parameters.
    pub solver: Box<dyn StepSolver>,
}

impl SolverConfig {
    /// The backend's name as written in configs.
    ///
    /// ```rust
    /// use jko::backend::SolverConfig;
    ///
    /// assert_eq!(SolverConfig::Newton(Default::default()).name(), "newton");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            SolverConfig::Conic(_) => "conic",
            SolverConfig::Newton(_) => "newton",
            SolverConfig::Sinkhorn(_) => "sinkhorn",
            SolverConfig::Quantile(_) => "quantile",
            SolverConfig::Flow(_) => "flow",
        }
    }

    /// `--solver NAME`: keep the configured parameters when NAME is the configured backend,
    /// otherwise switch to NAME's defaults (None: no override).
    ///
    /// # Errors
    /// [`RunError::Config`] for an unknown name, listing the known ones.
    ///
    /// ```rust
    /// use jko::backend::SolverConfig;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let conic: SolverConfig = toml::from_str("kind = \"conic\"\nlevels = 4")?;
    /// assert_eq!(conic.clone().overridden(Some("conic"))?, conic);
    /// assert_eq!(conic.clone().overridden(None)?, conic);
    /// assert_eq!(conic.overridden(Some("newton"))?, SolverConfig::default_for("newton")?);
    /// # Ok(())
    /// # }
    /// ```
    pub fn overridden(self, name: Option<&str>) -> Result<SolverConfig, RunError> {
        match name {
            Some(n) if n != self.name() => SolverConfig::default_for(n),
            _ => Ok(self),
        }
    }

    /// Default parameters of the backend called `name`.
    ///
    /// # Errors
    /// [`RunError::Config`] for an unknown name, listing the known ones.
    ///
    /// ```rust
    /// use jko::backend::SolverConfig;
    ///
    /// assert!(matches!(SolverConfig::default_for("quantile"), Ok(SolverConfig::Quantile(_))));
    /// let err = SolverConfig::default_for("lbfgs").unwrap_err();
    /// assert!(err.to_string().contains("known solvers: conic, newton"));
    /// ```
    pub fn default_for(name: &str) -> Result<SolverConfig, RunError> {
        match name {
            "conic" => Ok(SolverConfig::Conic(Default::default())),
            "newton" => Ok(SolverConfig::Newton(Default::default())),
            "sinkhorn" => Ok(SolverConfig::Sinkhorn(Default::default())),
            "quantile" => Ok(SolverConfig::Quantile(Default::default())),
            "flow" => Ok(SolverConfig::Flow(Default::default())),
            other => Err(RunError::Config(format!(
                "unknown solver `{other}`; known solvers: {}",
                Self::names().join(", ")
            ))),
        }
    }

    /// The registered backends' names (from [`BACKENDS`]).
    ///
    /// ```rust
    /// assert_eq!(jko::backend::SolverConfig::names(), ["conic", "newton", "sinkhorn", "quantile", "flow"]);
    /// ```
    pub fn names() -> Vec<&'static str> {
        BACKENDS.iter().map(|b| b.0).collect()
    }

    /// Check the backend's parameters (and, for `flow`, the surrogate check's settings).
    ///
    /// # Errors
    /// [`RunError::Input`] naming the parameter; [`RunError::Config`] for a `flow` check
    /// against an unknown or non-proximal backend.
    ///
    /// ```rust
    /// use jko::backend::SolverConfig;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// SolverConfig::default_for("flow")?.validate()?;
    /// let bad: SolverConfig = toml::from_str("kind = \"flow\"\ncheck_every = 0")?;
    /// assert!(bad.validate().unwrap_err().to_string().contains("solver.check_every"));
    /// let circular: SolverConfig = toml::from_str("kind = \"flow\"\ncheck_every = 2\ncheck_solver = \"flow\"")?;
    /// assert!(circular.validate().is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn validate(&self) -> Result<(), RunError> {
        match self {
            SolverConfig::Conic(p) => p.validate()?,
            SolverConfig::Newton(p) => p.validate()?,
            SolverConfig::Sinkhorn(p) => p.validate()?,
            SolverConfig::Quantile(p) => p.validate()?,
            SolverConfig::Flow(f) => {
                f.flow.validate()?;
                if f.check_every == Some(0) {
                    return Err(jko_core::InputError::parameter(
                        "solver.check_every",
                        0,
                        "must be >= 1",
                    )
                    .into());
                }
                if !(f.check_tol.is_finite() && f.check_tol > 0.0) {
                    return Err(jko_core::InputError::parameter(
                        "solver.check_tol",
                        f.check_tol,
                        "must be finite and > 0",
                    )
                    .into());
                }
                if f.check_every.is_some() {
                    let check = SolverConfig::default_for(&f.check_solver)?;
                    if matches!(check, SolverConfig::Flow(_)) {
                        return Err(RunError::Config(
                            "solver.check_solver must be a proximal backend, not `flow`".into(),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Time levels of a multi-level scheme, when the backend has them.
    pub(crate) fn levels(&self) -> Option<usize> {
        match self {
            SolverConfig::Conic(p) => p.levels,
            _ => None,
        }
    }

    /// The same backend with `factor` times as many time levels (`--refine levels`).
    pub(crate) fn with_levels_scaled(&self, factor: usize) -> Result<SolverConfig, RunError> {
        match self {
            SolverConfig::Conic(p) if p.levels.is_some() => {
                Ok(SolverConfig::Conic(jko_conic::ConicParams {
                    levels: p.levels.map(|l| l * factor),
                    ..p.clone()
                }))
            }
            _ => Err(RunError::Config(format!(
                "--refine levels needs a backend with time levels (conic with `levels`); `{}` has none",
                self.name()
            ))),
        }
    }

    /// Build the backend, ready for [`crate::driver::Stepper`] or direct
    /// [`StepSolver::step`] calls.
    ///
    /// # Errors
    /// [`RunError::Input`] / [`RunError::Solver`] when the parameters are invalid.
    ///
    /// ```rust
    /// use jko::backend::SolverConfig;
    /// use jko_core::EnergyTerm;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let quantile = SolverConfig::default_for("quantile")?.build()?;
    /// assert_eq!(quantile.name(), "quantile");
    /// assert!(!quantile.treats(EnergyTerm::MaxDensity));
    /// # Ok(())
    /// # }
    /// ```
    pub fn build(&self) -> Result<Box<dyn StepSolver>, RunError> {
        Ok(match self {
            SolverConfig::Conic(p) => Box::new(jko_conic::ConicSolver::new(p.clone())?),
            SolverConfig::Newton(p) => Box::new(jko_newton::NewtonSolver::new(p.clone())?),
            SolverConfig::Sinkhorn(p) => Box::new(jko_sinkhorn::SinkhornSolver::new(p.clone())?),
            SolverConfig::Quantile(p) => Box::new(jko_quantile::QuantileSolver::new(p.clone())?),
            SolverConfig::Flow(f) => Box::new(jko_flow::FlowSolver::new(f.flow.clone())?),
        })
    }

    /// The surrogate check of a `flow` config with `check_every` (None for any other config):
    /// what [`crate::run`] sets as [`crate::driver::Stepper::check`].
    ///
    /// # Errors
    /// [`RunError::Config`] for an unknown `check_solver`; errors of building it.
    ///
    /// ```rust
    /// use jko::backend::SolverConfig;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let flow: SolverConfig = toml::from_str("kind = \"flow\"\ncheck_every = 3\ncheck_solver = \"conic\"")?;
    /// let check = flow.surrogate_check()?.unwrap();
    /// assert_eq!((check.every, check.solver.name(), check.tol), (3, "conic", 1e-2));
    /// assert!(SolverConfig::default_for("newton")?.surrogate_check()?.is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn surrogate_check(&self) -> Result<Option<crate::driver::SurrogateCheck>, RunError> {
        match self {
            SolverConfig::Flow(FlowConfig {
                check_every: Some(every),
                check_solver,
                check_tol,
                ..
            }) => Ok(Some(crate::driver::SurrogateCheck {
                every: *every,
                solver: SolverConfig::default_for(check_solver)?.build()?,
                tol: *check_tol,
            })),
            _ => Ok(None),
        }
    }
}

/// Every registered backend with default parameters, for `jko solvers`.
///
/// # Errors
/// Errors of building a backend (none with default parameters).
///
/// ```rust
/// let names: Vec<_> = jko::backend::backends().unwrap().iter().map(|b| b.name).collect();
/// assert_eq!(names, jko::backend::SolverConfig::names());
/// ```
pub fn backends() -> Result<Vec<BackendInfo>, RunError> {
    BACKENDS
        .iter()
        .map(|&(name, summary)| {
            Ok(BackendInfo {
                name,
                summary,
                solver: SolverConfig::default_for(name)?.build()?,
            })
        })
        .collect()
}

/// The energy terms a backend treats, as words (what `jko solvers` prints).
///
/// ```rust
/// use jko::backend::{SolverConfig, treated_terms};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let flow = SolverConfig::default_for("flow")?.build()?;
/// let terms = treated_terms(flow.as_ref());
/// assert!(terms.contains(&"entropy".to_string()));
/// assert!(!terms.contains(&"porous".to_string()));
/// # Ok(())
/// # }
/// ```
pub fn treated_terms(solver: &dyn StepSolver) -> Vec<String> {
    EnergyTerm::ALL
        .iter()
        .filter(|t| solver.treats(**t))
        .map(|t| t.to_string())
        .collect()
}

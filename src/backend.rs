//! The backend registry: a backend is chosen by name at run time (config `[solver] kind = ...`
//! or `--solver`) and used through [`jko_core::StepSolver`]. Adding a backend is one variant here.

use crate::error::RunError;
use jko_core::{EnergyTerm, StepSolver};
use serde::{Deserialize, Serialize};

/// `[solver]` table: `kind` selects the backend, the other keys are its parameters.
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowConfig {
    #[serde(default)]
    pub flow: jko_flow::FlowParams,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_every: Option<usize>,
    #[serde(default = "default_check_solver")]
    pub check_solver: String,
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

/// Registered backends: (name, one-line summary).
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

/// What `jko solvers` prints about one backend.
pub struct BackendInfo {
    pub name: &'static str,
    pub summary: &'static str,
    pub solver: Box<dyn StepSolver>,
}

impl SolverConfig {
    /// The backend's name as written in configs.
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
    /// otherwise switch to NAME's defaults.
    pub fn overridden(self, name: Option<&str>) -> Result<SolverConfig, RunError> {
        match name {
            Some(n) if n != self.name() => SolverConfig::default_for(n),
            _ => Ok(self),
        }
    }

    /// Default parameters of the backend called `name`.
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

    pub fn names() -> Vec<&'static str> {
        BACKENDS.iter().map(|b| b.0).collect()
    }

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
    pub fn levels(&self) -> Option<usize> {
        match self {
            SolverConfig::Conic(p) => p.levels,
            _ => None,
        }
    }

    /// The same backend with `factor` times as many time levels (`--refine levels`).
    pub fn with_levels_scaled(&self, factor: usize) -> Result<SolverConfig, RunError> {
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

    /// Build the backend.
    pub fn build(&self) -> Result<Box<dyn StepSolver>, RunError> {
        Ok(match self {
            SolverConfig::Conic(p) => Box::new(jko_conic::ConicSolver::new(p.clone())?),
            SolverConfig::Newton(p) => Box::new(jko_newton::NewtonSolver::new(p.clone())?),
            SolverConfig::Sinkhorn(p) => Box::new(jko_sinkhorn::SinkhornSolver::new(p.clone())?),
            SolverConfig::Quantile(p) => Box::new(jko_quantile::QuantileSolver::new(p.clone())?),
            SolverConfig::Flow(f) => Box::new(jko_flow::FlowSolver::new(f.flow.clone())?),
        })
    }

    /// The surrogate check of a `flow` config: (every, proximal backend, tolerance).
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

/// The energy terms a backend treats, as words.
pub fn treated_terms(solver: &dyn StepSolver) -> Vec<String> {
    EnergyTerm::ALL
        .iter()
        .filter(|t| solver.treats(**t))
        .map(|t| t.to_string())
        .collect()
}

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
    /// 1D Lagrangian (quantile) steps with exact W².
    Quantile(jko_quantile::QuantileParams),
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
        "quantile",
        "1D Lagrangian JKO with exact W2: Newton on the quantile function (1D meshes only)",
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
            SolverConfig::Quantile(_) => "quantile",
        }
    }

    /// Default parameters of the backend called `name`.
    pub fn default_for(name: &str) -> Result<SolverConfig, RunError> {
        match name {
            "conic" => Ok(SolverConfig::Conic(Default::default())),
            "newton" => Ok(SolverConfig::Newton(Default::default())),
            "quantile" => Ok(SolverConfig::Quantile(Default::default())),
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
            SolverConfig::Quantile(p) => p.validate()?,
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
            SolverConfig::Conic(p) if p.levels.is_some() => Ok(SolverConfig::Conic(jko_conic::ConicParams {
                levels: p.levels.map(|l| l * factor),
                ..p.clone()
            })),
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
            SolverConfig::Quantile(p) => Box::new(jko_quantile::QuantileSolver::new(p.clone())?),
        })
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

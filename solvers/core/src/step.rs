//! One JKO step: the problem, the solver trait, and what a solver returns.
//!
//! ρ^{n+1} = argmin_ρ W_h²(ρⁿ, ρ)/(2τ) + F_h(ρ). Which discretisation of W_h² a backend uses is
//! part of the backend (one-step two-point flux, multi-level Benamou–Brenier, entropic); every
//! backend validates nothing itself — [`JkoStep::new`] already has.

use crate::energy::{EnergyTerm, StepEnergy, check_finite};
use crate::error::{InputError, StepError};
use crate::mesh::Mesh;
use ndarray::Array1;
use serde::{Deserialize, Serialize};

/// A validated JKO step problem.
#[derive(Debug, Clone, Copy)]
pub struct JkoStep<'a> {
    pub mesh: &'a Mesh,
    /// ρⁿ, one value per active cell.
    pub rho_prev: &'a Array1<f64>,
    pub tau: f64,
    pub energy: &'a StepEnergy,
}

impl<'a> JkoStep<'a> {
    /// Check the data and build the problem: τ > 0, ρⁿ finite, ≥ 0, of positive mass and of
    /// the mesh's length, potential of the mesh's length, congestion bound feasible.
    pub fn new(
        mesh: &'a Mesh,
        rho_prev: &'a Array1<f64>,
        tau: f64,
        energy: &'a StepEnergy,
    ) -> Result<Self, InputError> {
        if !(tau.is_finite() && tau > 0.0) {
            return Err(InputError::InvalidTau(tau));
        }
        check_density(mesh, rho_prev, "density")?;
        if let Some(v) = &energy.potential {
            if v.len() != mesh.n_cells() {
                return Err(InputError::ShapeMismatch {
                    what: "cell potential".into(),
                    expected: mesh.n_cells().to_string(),
                    found: v.len().to_string(),
                });
            }
            check_finite("cell potential", v.as_slice().unwrap_or(&[]))?;
        }
        if let Some(rmax) = energy.max_density {
            let capacity = rmax * mesh.domain_volume();
            let mass = mesh.mass(rho_prev);
            if capacity < mass * (1.0 - 1e-12) {
                return Err(InputError::InfeasibleCongestion { capacity, mass });
            }
        }
        Ok(JkoStep {
            mesh,
            rho_prev,
            tau,
            energy,
        })
    }

    /// Mass of ρⁿ.
    pub fn mass(&self) -> f64 {
        self.mesh.mass(self.rho_prev)
    }
}

/// Check that a density has the mesh's length, is finite, ≥ 0 and has positive mass.
pub fn check_density(mesh: &Mesh, rho: &Array1<f64>, what: &str) -> Result<(), InputError> {
    if rho.len() != mesh.n_cells() {
        return Err(InputError::ShapeMismatch {
            what: what.to_string(),
            expected: format!("{} values (active cells)", mesh.n_cells()),
            found: rho.len().to_string(),
        });
    }
    for (i, &r) in rho.iter().enumerate() {
        if !r.is_finite() {
            return Err(InputError::NonFinite {
                what: what.to_string(),
                index: i,
                value: r,
            });
        }
        if r < 0.0 {
            return Err(InputError::NegativeDensity {
                what: what.to_string(),
                index: i,
                value: r,
            });
        }
    }
    if mesh.mass(rho) <= 0.0 {
        return Err(InputError::ZeroMass {
            what: what.to_string(),
        });
    }
    Ok(())
}

/// How a step ended. Failures are errors ([`StepError`]), not statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Converged to the requested tolerances.
    Solved,
    /// Converged to reduced tolerances only (reported, never hidden).
    AlmostSolved,
}

/// Diagnostics of one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepInfo {
    pub solver: String,
    pub status: StepStatus,
    pub iterations: usize,
    /// Final primal residual (feasibility of the continuity equation / marginals), backend scaled.
    pub primal_residual: f64,
    /// Final dual residual (optimality), backend scaled.
    pub dual_residual: f64,
    /// Objective W_h²/(2τ) + F_h(ρ) as the backend computed it.
    pub objective: f64,
    /// Kinetic action W_h²(ρⁿ, ρ^{n+1}) of the backend's discretisation.
    pub kinetic: f64,
    /// Wall time of the step in seconds.
    pub wall_time: f64,
    /// Residual per iteration, when the backend records it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<f64>,
    /// Free-form remarks (fallbacks taken, reduced accuracy, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// What a solver returns.
#[derive(Debug, Clone)]
pub struct StepOutput {
    /// ρ^{n+1}, one value per active cell.
    pub rho: Array1<f64>,
    /// Face fluxes G_σ (mass moved across σ, oriented k → l) for flux-based schemes.
    pub flux: Option<Array1<f64>>,
    /// Dual potential (φ for flux schemes, log-scaling for Sinkhorn), usable as a warm start.
    pub potential: Option<Array1<f64>>,
    pub info: StepInfo,
}

/// A warm start carried from one step to the next.
#[derive(Debug, Clone, Default)]
pub struct WarmStart {
    pub rho: Option<Array1<f64>>,
    pub potential: Option<Array1<f64>>,
}

impl From<&StepOutput> for WarmStart {
    fn from(out: &StepOutput) -> Self {
        WarmStart {
            rho: Some(out.rho.clone()),
            potential: out.potential.clone(),
        }
    }
}

/// A JKO step backend. Object safe, so a backend can be chosen at run time.
pub trait StepSolver: Send + Sync {
    /// Backend name as used in configs (`conic`, `newton`, ...).
    fn name(&self) -> &str;

    /// Whether this backend treats an energy term.
    fn treats(&self, term: EnergyTerm) -> bool;

    /// Solve one step. `warm` may carry the previous step's result.
    fn step(
        &self,
        problem: &JkoStep<'_>,
        warm: Option<&WarmStart>,
    ) -> Result<StepOutput, StepError>;

    /// Whether F_h(ρ^{n+1}) + kinetic/(2τ) ≤ F_h(ρⁿ) is a theorem for this backend's discrete
    /// problem (true for exact minimisers whose transport cost vanishes at ρ = ρⁿ). Entropic and
    /// surrogate backends return false: the driver then records the slack without failing on it.
    fn satisfies_energy_inequality(&self) -> bool {
        true
    }

    /// Error naming the first term of `energy` this backend does not treat.
    fn check_supported(&self, energy: &StepEnergy) -> Result<(), StepError> {
        match energy.terms().into_iter().find(|t| !self.treats(*t)) {
            Some(term) => Err(StepError::Unsupported {
                solver: self.name().to_string(),
                term: term.to_string(),
                hint: String::new(),
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn energy() -> StepEnergy {
        StepEnergy {
            entropy: Some(1.0),
            porous: None,
            potential: None,
            max_density: Some(1.0),
            interaction_frozen: false,
        }
    }

    #[test]
    fn bad_steps_are_rejected_with_names() {
        let mesh = Mesh::grid(&[4], &[0.0], &[1.0]).unwrap();
        let e = energy();
        let good = Array1::from(vec![0.5, 0.5, 0.5, 0.5]);
        assert!(JkoStep::new(&mesh, &good, 0.1, &e).is_ok());
        assert_eq!(
            JkoStep::new(&mesh, &good, 0.0, &e).unwrap_err(),
            InputError::InvalidTau(0.0)
        );
        assert!(matches!(
            JkoStep::new(&mesh, &good, f64::NAN, &e),
            Err(InputError::InvalidTau(_))
        ));
        let neg = Array1::from(vec![0.5, -0.1, 0.5, 0.5]);
        assert!(matches!(
            JkoStep::new(&mesh, &neg, 0.1, &e),
            Err(InputError::NegativeDensity { index: 1, .. })
        ));
        let nan = Array1::from(vec![0.5, f64::NAN, 0.5, 0.5]);
        assert!(matches!(
            JkoStep::new(&mesh, &nan, 0.1, &e),
            Err(InputError::NonFinite { .. })
        ));
        let zero = Array1::zeros(4);
        assert!(matches!(
            JkoStep::new(&mesh, &zero, 0.1, &e),
            Err(InputError::ZeroMass { .. })
        ));
        let short = Array1::from(vec![0.5; 3]);
        assert!(matches!(
            JkoStep::new(&mesh, &short, 0.1, &e),
            Err(InputError::ShapeMismatch { .. })
        ));
        let heavy = Array1::from(vec![2.0; 4]);
        assert!(matches!(
            JkoStep::new(&mesh, &heavy, 0.1, &e),
            Err(InputError::InfeasibleCongestion { .. })
        ));
    }
}

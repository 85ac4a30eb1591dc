//! Exact solutions behind configs: when the engine knows the solution of a config's PDE, the
//! convergence and comparison reports measure errors against it.
//!
//! Recognised (domain without obstacles or mask):
//! - Fokker–Planck / Ornstein–Uhlenbeck and heat: `entropy` (+ quadratic potential) from a
//!   Gaussian — exact on ℝ^d, so the box must hold the tails (the error floor is the mass
//!   outside it); also the exact JKO iterates (exact W²);
//! - porous medium: `porous` alone from a Barenblatt profile, while its support stays inside;
//! - `entropy` + linear potential from `drift_box`: the separable solution on the box.

use crate::config::{Config, InitialConfig, Problem};
use crate::error::RunError;
use jko_core::exact::{Barenblatt, DriftBox, Gaussian, OrnsteinUhlenbeck};
use jko_core::{Mesh, Potential};
use ndarray::Array1;

/// A known solution of the config's gradient flow.
#[derive(Debug, Clone)]
pub enum ExactSolution {
    Gaussian {
        ou: OrnsteinUhlenbeck,
        initial: Gaussian,
        mass: f64,
    },
    Barenblatt {
        profile: Barenblatt,
        t0: f64,
    },
    DriftBox(DriftBox),
}

impl ExactSolution {
    /// The exact solution of `config`, if the engine knows one.
    pub fn detect(config: &Config, problem: &Problem) -> Result<Option<ExactSolution>, RunError> {
        let e = &problem.energy;
        let mesh = &problem.mesh;
        if !config.mesh.obstacles.is_empty() || config.mesh.mask.is_some() {
            return Ok(None);
        }
        if e.interaction.is_some() || e.max_density.is_some() {
            return Ok(None);
        }
        let mass = mesh.mass(&problem.initial);
        Ok(match (&config.initial, e.entropy, e.porous, &e.potential) {
            (InitialConfig::Gaussian { mean, std, .. }, Some(beta), None, potential) => {
                let d = mesh.dim();
                let ou = match potential {
                    None => OrnsteinUhlenbeck::heat(beta, d),
                    Some(Potential::Quadratic { center, stiffness }) => OrnsteinUhlenbeck {
                        beta,
                        stiffness: *stiffness,
                        center: center.clone(),
                    },
                    _ => return Ok(None),
                };
                Some(ExactSolution::Gaussian {
                    ou,
                    initial: Gaussian::diagonal(mean, std),
                    mass,
                })
            }
            (InitialConfig::Barenblatt { m, t0, .. }, None, Some(pm), None)
                if (m - pm).abs() == 0.0 =>
            {
                let profile = Barenblatt::new(*m, mesh.dim(), mass)?;
                Some(ExactSolution::Barenblatt { profile, t0: *t0 })
            }
            (InitialConfig::DriftBox { .. }, Some(_), None, Some(Potential::Linear { .. })) => {
                Some(ExactSolution::DriftBox(config.initial.drift_box(mesh, e)?))
            }
            _ => None,
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            ExactSolution::Gaussian { ou, .. } if ou.stiffness == 0.0 => "heat kernel (Gaussian)",
            ExactSolution::Gaussian { .. } => "Ornstein-Uhlenbeck (Gaussian)",
            ExactSolution::Barenblatt { .. } => "Barenblatt profile",
            ExactSolution::DriftBox(_) => "Fokker-Planck with linear drift on the box (separable)",
        }
    }

    /// Exact density at time t after the initial state (cell centre values).
    pub fn density(&self, mesh: &Mesh, t: f64) -> Array1<f64> {
        match self {
            ExactSolution::Gaussian { ou, initial, mass } => {
                let g = ou.flow(initial, t);
                mesh.sample(|x| mass * g.density(x))
            }
            ExactSolution::Barenblatt { profile, t0 } => {
                mesh.sample(|x| profile.density(t0 + t, x))
            }
            ExactSolution::DriftBox(db) => mesh.sample(|x| db.density(t, x)),
        }
    }

    /// Whether the solution at time t is exact on the mesh's box (Barenblatt support inside).
    pub fn fits(&self, mesh: &Mesh, t: f64) -> bool {
        match (self, mesh.as_grid()) {
            (ExactSolution::Barenblatt { profile, t0 }, Some(g)) => {
                let r = profile.support_radius(t0 + t);
                g.lower.iter().zip(&g.upper).all(|(l, u)| *l < -r && r < *u)
            }
            _ => true,
        }
    }

    /// The exact JKO iterate (exact W²) after `steps` steps of size τ, where known (Gaussians).
    pub fn jko_density(&self, mesh: &Mesh, tau: f64, steps: usize) -> Option<Array1<f64>> {
        match self {
            ExactSolution::Gaussian { ou, initial, mass } => {
                let g = ou.jko_iterates(initial, tau, steps);
                Some(mesh.sample(|x| mass * g.density(x)))
            }
            _ => None,
        }
    }
}

/// Relative L1 distance Σ_K |K| |a_K − b_K| / Σ_K |K| |b_K|.
pub fn l1_relative(mesh: &Mesh, a: &Array1<f64>, b: &Array1<f64>) -> f64 {
    let v = mesh.volumes();
    let num: f64 = (0..a.len()).map(|k| v[k] * (a[k] - b[k]).abs()).sum();
    let den: f64 = (0..b.len()).map(|k| v[k] * b[k].abs()).sum();
    num / den
}

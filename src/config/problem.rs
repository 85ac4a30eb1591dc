//! What a config builds: mesh, energy and ρ⁰, checked for admissibility.

use crate::error::RunError;
use jko_core::{Energy, InputError, Mesh};
use ndarray::Array1;

/// Everything a run needs, built from a config by [`Config::build`](super::Config::build).
///
/// ```rust
/// use jko::config::Config;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::from_toml(r#"
///     mesh = { cells = [40], lower = [-4.0], upper = [4.0] }
///     initial = { kind = "gaussian", mean = [1.0], std = [0.5] }
///     energy = { entropy = 1.0, potential = { kind = "quadratic" } }
///     scheme = { tau = 0.1, steps = 2 }
///     solver = { kind = "newton" }
/// "#)?;
/// let problem = config.build(".".as_ref())?;
/// assert_eq!(problem.initial.len(), problem.mesh.n_cells());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Problem {
    /// The mesh (obstacles and mask applied).
    pub mesh: Mesh,
    /// The energy, validated.
    pub energy: Energy,
    /// ρ⁰ as cell values of `mesh`, normalised to its mass.
    pub initial: Array1<f64>,
}

impl Problem {
    /// Assemble a problem and check that ρ⁰ is admissible for the energy: with a congestion
    /// bound, ρ_max·|Ω| must hold the mass and ρ⁰ must lie below ρ_max.
    ///
    /// # Errors
    /// [`RunError::Input`]: `InputError::InfeasibleCongestion` when no density fits under
    /// ρ_max, `InputError::InvalidParameter` naming the first cell above it.
    ///
    /// ```rust
    /// use jko::config::Problem;
    /// use jko_core::{Energy, Mesh};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[4], &[0.0], &[1.0])?;
    /// let capped = Energy { max_density: Some(2.0), ..Energy::default() };
    /// assert!(Problem::new(mesh.clone(), capped.clone(), mesh.sample(|_| 1.0)).is_ok());
    /// let err = Problem::new(mesh.clone(), capped, mesh.sample(|x| 4.0 * x[0])).unwrap_err();
    /// assert!(err.to_string().contains("exceeds max_density"), "{err}");
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(mesh: Mesh, energy: Energy, initial: Array1<f64>) -> Result<Problem, RunError> {
        // No density fits under ρ_max when ρ_max·|Ω| < mass: say so, rather than name a cell.
        if let Some(rmax) = energy.max_density {
            let capacity = rmax * mesh.domain_volume();
            let mass = mesh.mass(&initial);
            if capacity < mass * (1.0 - 1e-12) {
                return Err(InputError::InfeasibleCongestion { capacity, mass }.into());
            }
        }
        if let Some(rmax) = energy.max_density
            && let Some((k, r)) = initial.iter().enumerate().find(|(_, r)| **r > rmax)
        {
            return Err(InputError::parameter(
                    "initial",
                    format!("density {r:.6} at cell {k}"),
                    &format!("exceeds max_density = {rmax}; start from an admissible density (spread it out or lower its mass)"),
                )
                .into());
        }
        Ok(Problem {
            mesh,
            energy,
            initial,
        })
    }
}

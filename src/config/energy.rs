//! `[energy]`: the terms of F as written in a config.

use super::NpyLoader;
use super::npy::read_npy;
use crate::error::RunError;
use crate::expression::Expression;
use jko_core::{Energy, Interaction, Mesh, Potential};
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use std::path::{Path, PathBuf};

/// `[energy]`: the energy as written in a config, any subset of the terms (see
/// `jko_core::Energy` for the mathematics).
///
/// ```rust
/// use jko::config::{EnergyConfig, Porous};
///
/// let e: EnergyConfig = toml::from_str("entropy = 0.5\nporous = { m = 2.0 }").unwrap();
/// assert_eq!(e.entropy, Some(0.5));
/// assert_eq!(e.porous, Some(Porous { m: 2.0 }));
/// ```
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnergyConfig {
    /// β in β∫ρ log ρ (diffusion).
    pub entropy: Option<f64>,
    /// The porous-medium term ∫ρ^m/(m − 1).
    pub porous: Option<Porous>,
    /// The potential V of ∫Vρ (drift).
    pub potential: Option<PotentialConfig>,
    /// The interaction ½∬W(x − y)ρ(x)ρ(y) (treated semi-implicitly).
    pub interaction: Option<Interaction>,
    /// The congestion bound ρ ≤ ρ_max.
    pub max_density: Option<f64>,
}

/// `porous = { m = ... }`: the porous-medium term ∫ρ^m/(m − 1).
///
/// ```rust
/// let p: jko::config::Porous = toml::from_str("m = 2.0").unwrap();
/// assert_eq!(p.m, 2.0);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Porous {
    /// The exponent m > 1.
    pub m: f64,
}

/// A number or a list of numbers (one per axis).
///
/// ```rust
/// use jko::config::PotentialConfig;
///
/// let p: PotentialConfig = toml::from_str("kind = \"linear\"\nslope = 2.0").unwrap();
/// assert!(matches!(p, PotentialConfig::Linear { slope: jko::config::PerAxis::One(2.0) }));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PerAxis {
    /// The same value on every axis.
    One(f64),
    /// One value per axis.
    Each(Vec<f64>),
}

impl PerAxis {
    fn expand(&self, dim: usize) -> Vec<f64> {
        match self {
            PerAxis::One(v) => vec![*v; dim],
            PerAxis::Each(v) => v.clone(),
        }
    }
}

/// `potential = { kind = ... }`: the potential V of the energy term ∫Vρ.
///
/// ```rust
/// use jko::config::EnergyConfig;
/// use jko_core::{Mesh, Potential};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let e: EnergyConfig = toml::from_str("potential = { kind = \"quadratic\", stiffness = 2.0 }")?;
/// let mesh = Mesh::grid(&[4, 4], &[-1.0, -1.0], &[1.0, 1.0])?;
/// let energy = e.build(&mesh, ".".as_ref())?;
/// assert_eq!(energy.potential, Some(Potential::Quadratic { center: vec![0.0, 0.0], stiffness: 2.0 }));
/// # Ok(())
/// # }
/// ```
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PotentialConfig {
    /// stiffness · |x − center|²/2 (center defaults to the origin, stiffness to 1).
    Quadratic {
        /// Minimum of the potential (default: the origin).
        center: Option<Vec<f64>>,
        /// Curvature k (default 1).
        #[serde(default = "one")]
        stiffness: f64,
    },
    /// slope · x; `slope` is a number (all axes) or one number per axis.
    Linear {
        /// The gradient of V.
        slope: PerAxis,
    },
    /// Σ x_i⁴/4.
    Quartic,
    /// Σ (x_i² − 1)²/4.
    DoubleWell,
    /// Cell values from a `.npy` file of shape `cells` (one value per cell on a mesh read from
    /// a file).
    Npy {
        /// The file, relative to the config's directory.
        path: PathBuf,
    },
    /// A formula in x, y, z (see [`crate::expression`]) evaluated at the cell centres.
    Expression {
        /// The formula.
        expr: String,
    },
}

fn one() -> f64 {
    1.0
}

impl EnergyConfig {
    /// Build the energy on `mesh` (paths relative to `base`): potential defaults filled in
    /// (quadratic centre at the origin, a linear slope number on every axis), the energy
    /// validated, the potential evaluated once.
    ///
    /// # Errors
    /// [`RunError::Input`] naming the invalid parameter (`entropy`, `porous.m`, a potential of
    /// the wrong dimension, ...); [`RunError::Io`] / [`RunError::Npy`] for an unreadable
    /// potential file.
    ///
    /// ```rust
    /// use jko::config::{EnergyConfig, PerAxis, PotentialConfig};
    /// use jko_core::{Mesh, Potential};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[4, 4], &[0.0, 0.0], &[1.0, 1.0])?;
    /// let config = EnergyConfig {
    ///     entropy: Some(1.0),
    ///     potential: Some(PotentialConfig::Linear { slope: PerAxis::One(2.0) }),
    ///     ..Default::default()
    /// };
    /// let energy = config.build(&mesh, ".".as_ref())?;
    /// assert_eq!(energy.potential, Some(Potential::Linear { slope: vec![2.0, 2.0] }));
    /// let bad = EnergyConfig { entropy: Some(-1.0), ..Default::default() };
    /// assert!(bad.build(&mesh, ".".as_ref()).unwrap_err().to_string().contains("entropy"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn build(&self, mesh: &Mesh, base: &Path) -> Result<Energy, RunError> {
        self.build_with(mesh, &|p: &Path| read_npy(&base.join(p)))
    }

    /// [`EnergyConfig::build`] with a potential array from `load` (see
    /// [`Config::build_with`](super::Config::build_with)).
    ///
    /// ```rust
    /// use jko::config::{EnergyConfig, PotentialConfig};
    /// use jko_core::{Mesh, Potential};
    /// use ndarray::{ArrayD, IxDyn};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[3], &[0.0], &[3.0])?;
    /// let config = EnergyConfig {
    ///     potential: Some(PotentialConfig::Npy { path: "v.npy".into() }),
    ///     ..Default::default()
    /// };
    /// let v = ArrayD::from_shape_vec(IxDyn(&[3]), vec![2.0, 1.0, 0.0])?;
    /// let energy = config.build_with(&mesh, &|_| Ok(v.clone()))?;
    /// assert_eq!(energy.potential, Some(Potential::Cells { values: vec![2.0, 1.0, 0.0] }));
    /// # Ok(())
    /// # }
    /// ```
    pub fn build_with(&self, mesh: &Mesh, load: &NpyLoader) -> Result<Energy, RunError> {
        let d = mesh.dim();
        let potential = match &self.potential {
            None => None,
            Some(PotentialConfig::Quadratic { center, stiffness }) => Some(Potential::Quadratic {
                center: center.clone().unwrap_or_else(|| vec![0.0; d]),
                stiffness: *stiffness,
            }),
            Some(PotentialConfig::Linear { slope }) => Some(Potential::Linear {
                slope: slope.expand(d),
            }),
            Some(PotentialConfig::Quartic) => Some(Potential::Quartic),
            Some(PotentialConfig::DoubleWell) => Some(Potential::DoubleWell),
            Some(PotentialConfig::Expression { expr }) => {
                let f = Expression::parse(expr, d, "energy.potential.expr")?;
                Some(Potential::Cells {
                    values: f.on_mesh(mesh, "energy.potential.expr")?.to_vec(),
                })
            }
            Some(PotentialConfig::Npy { path }) => {
                let arr = load(path)?;
                let values = mesh.from_cell_array("potential npy", &arr)?;
                jko_core::energy::check_finite("potential npy", values.as_slice().unwrap_or(&[]))?;
                Some(Potential::Cells {
                    values: values.to_vec(),
                })
            }
        };
        let energy = Energy {
            entropy: self.entropy,
            porous: self.porous.as_ref().map(|p| p.m),
            potential,
            interaction: self.interaction.clone(),
            max_density: self.max_density,
        };
        energy.validate()?;
        // Evaluate the potential once so a dimension mismatch is reported now.
        if let Some(p) = &energy.potential {
            p.on_mesh(mesh)?;
        }
        Ok(energy)
    }
}

//! `[initial]`: the initial density ρ⁰.

use super::NpyLoader;
use super::npy::read_npy;
use crate::error::RunError;
use crate::expression::Expression;
use jko_core::exact::{Barenblatt, DriftBox, Gaussian};
use jko_core::{Energy, InputError, Mesh, Potential};
use ndarray::Array1;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use std::path::{Path, PathBuf};

/// `[initial]`: the initial density, selected by `kind`. Every kind is normalised to `mass`
/// (default 1; `drift_box` uses it as the exact solution's mass) on the active cells.
///
/// ```rust
/// use jko::config::InitialConfig;
/// use jko_core::{Energy, Mesh};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::grid(&[8], &[0.0], &[2.0])?;
/// let uniform = InitialConfig::Uniform { mass: Some(3.0) };
/// let rho = uniform.build(&mesh, &Energy::default(), ".".as_ref())?;
/// assert!(rho.iter().all(|r| (r - 1.5).abs() < 1e-15));
/// # Ok(())
/// # }
/// ```
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum InitialConfig {
    /// A Gaussian with independent coordinates, sampled at cell centres and normalised.
    Gaussian {
        /// Mean, one entry per axis.
        mean: Vec<f64>,
        /// Standard deviation per axis (> 0).
        std: Vec<f64>,
        /// Total mass (default 1).
        mass: Option<f64>,
    },
    /// The Barenblatt profile of ∂ρ/∂t = Δρ^m at time t0, centred at the origin.
    Barenblatt {
        /// Exponent m > 1 of the porous medium equation.
        m: f64,
        /// Time of the profile (> 0): larger is wider.
        t0: f64,
        /// Total mass (default 1).
        mass: Option<f64>,
    },
    /// Constant density on the domain.
    Uniform {
        /// Total mass (default 1).
        mass: Option<f64>,
    },
    /// The exact non-Gaussian Fokker–Planck solution on the box for `entropy` + a linear
    /// potential (`jko_core::exact::DriftBox`) at t = 0: stationary profile plus one decaying
    /// mode per axis (`modes`, `amplitude` in [0, 1) of the positivity bound).
    DriftBox {
        /// Mode number of the decaying mode, per axis.
        modes: Vec<usize>,
        /// Its amplitude per axis, as a fraction in [0, 1) of the largest that keeps ρ ≥ 0.
        amplitude: Vec<f64>,
        /// Total mass (default 1).
        mass: Option<f64>,
    },
    /// A formula in x, y, z (see [`crate::expression`]) evaluated at the cell centres,
    /// normalised to `mass` (default 1). It must be finite and ≥ 0 at every centre.
    Expression {
        /// The formula.
        expr: String,
        /// Total mass (default 1).
        mass: Option<f64>,
    },
    /// Cell values from a `.npy` file (float64, shape = cells; on a mesh read from a file, one
    /// value per cell in the mesh's cell order), normalised to `mass` (default 1).
    Npy {
        /// The file, relative to the config's directory.
        path: PathBuf,
        /// Total mass (default 1).
        mass: Option<f64>,
    },
}

impl InitialConfig {
    /// The initial density on `mesh` as cell values, normalised to its mass (paths relative
    /// to `base`). `energy` is needed by `drift_box` (its exact solution depends on it).
    ///
    /// # Errors
    /// [`RunError::Input`] naming the invalid parameter (`initial.mean` of the wrong length,
    /// `initial.std ≤ 0`, `initial.mass ≤ 0`, a negative or non-finite density file, ...);
    /// [`RunError::Config`] for `drift_box` without entropy and a linear potential;
    /// [`RunError::Io`] / [`RunError::Npy`] for an unreadable file.
    ///
    /// ```rust
    /// use jko::config::InitialConfig;
    /// use jko_core::{Energy, Mesh};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[100], &[-5.0], &[5.0])?;
    /// let g = InitialConfig::Gaussian { mean: vec![1.0], std: vec![0.5], mass: Some(2.0) };
    /// let rho = g.build(&mesh, &Energy::default(), ".".as_ref())?;
    /// assert!((mesh.mass(&rho) - 2.0).abs() < 1e-12);
    /// let wrong = InitialConfig::Gaussian { mean: vec![1.0, 0.0], std: vec![0.5], mass: None };
    /// assert!(wrong.build(&mesh, &Energy::default(), ".".as_ref()).unwrap_err().to_string().contains("initial.mean"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn build(
        &self,
        mesh: &Mesh,
        energy: &Energy,
        base: &Path,
    ) -> Result<Array1<f64>, RunError> {
        self.build_with(mesh, energy, &|p: &Path| read_npy(&base.join(p)))
    }

    /// [`InitialConfig::build`] with a density array from `load` (see
    /// [`Config::build_with`](super::Config::build_with)).
    ///
    /// ```rust
    /// use jko::config::InitialConfig;
    /// use jko_core::{Energy, Mesh};
    /// use ndarray::{ArrayD, IxDyn};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[2], &[0.0], &[1.0])?;
    /// let config = InitialConfig::Npy { path: "rho0.npy".into(), mass: None };
    /// let values = ArrayD::from_shape_vec(IxDyn(&[2]), vec![1.0, 3.0])?;
    /// let rho = config.build_with(&mesh, &Energy::default(), &|_| Ok(values.clone()))?;
    /// // Normalised to mass 1 on cells of width 0.5.
    /// assert_eq!(rho.to_vec(), [0.5, 1.5]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn build_with(
        &self,
        mesh: &Mesh,
        energy: &Energy,
        load: &NpyLoader,
    ) -> Result<Array1<f64>, RunError> {
        let d = mesh.dim();
        let (raw, mass) = match self {
            InitialConfig::Gaussian { mean, std, mass } => {
                for (what, v) in [("initial.mean", mean), ("initial.std", std)] {
                    if v.len() != d {
                        return Err(InputError::ShapeMismatch {
                            what: what.into(),
                            expected: format!("{d} entries (mesh dimension)"),
                            found: v.len().to_string(),
                        }
                        .into());
                    }
                }
                for s in std {
                    jko_core::finite_positive("initial.std", *s)?;
                }
                let g = Gaussian::diagonal(mean, std);
                (mesh.sample(|x| g.density(x)), *mass)
            }
            InitialConfig::Barenblatt { m, t0, mass } => {
                jko_core::finite_positive("initial.t0", *t0)?;
                let b = Barenblatt::new(*m, d, mass.unwrap_or(1.0))?;
                (mesh.sample(|x| b.density(*t0, x)), *mass)
            }
            InitialConfig::Uniform { mass } => (Array1::ones(mesh.n_cells()), *mass),
            InitialConfig::DriftBox { .. } => {
                let exact = self.drift_box(mesh, energy)?;
                (mesh.sample(|x| exact.density(0.0, x)), Some(exact.mass))
            }
            InitialConfig::Expression { expr, mass } => {
                let f = Expression::parse(expr, d, "initial.expr")?;
                (f.on_mesh(mesh, "initial.expr")?, *mass)
            }
            InitialConfig::Npy { path, mass } => {
                let arr = load(path)?;
                (mesh.from_cell_array("initial density npy", &arr)?, *mass)
            }
        };
        let mass = jko_core::finite_positive("initial.mass", mass.unwrap_or(1.0))?;
        jko_core::check_density(mesh, &raw, "initial density")?;
        let scale = mass / mesh.mass(&raw);
        Ok(raw * scale)
    }

    /// The exact solution behind `kind = "drift_box"`: it needs `entropy` and a linear potential.
    ///
    /// # Errors
    /// [`RunError::Config`] for another kind, an energy without entropy and a linear
    /// potential, or a mesh without grid structure; [`RunError::Input`] for invalid modes or
    /// amplitudes.
    ///
    /// ```rust
    /// use jko::config::InitialConfig;
    /// use jko_core::{Energy, Mesh, Potential};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[20], &[0.0], &[1.0])?;
    /// let energy = Energy::fokker_planck(1.0, Potential::Linear { slope: vec![1.0] });
    /// let initial = InitialConfig::DriftBox { modes: vec![1], amplitude: vec![0.5], mass: None };
    /// let exact = initial.drift_box(&mesh, &energy)?;
    /// assert!((exact.mass - 1.0).abs() < 1e-15);
    /// assert!(initial.drift_box(&mesh, &Energy::default()).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn drift_box(&self, mesh: &Mesh, energy: &Energy) -> Result<DriftBox, RunError> {
        let InitialConfig::DriftBox {
            modes,
            amplitude,
            mass,
        } = self
        else {
            return Err(RunError::config("initial.kind", "is not drift_box"));
        };
        let (Some(beta), Some(Potential::Linear { slope })) = (energy.entropy, &energy.potential)
        else {
            return Err(RunError::config(
                "initial.kind",
                "drift_box needs [energy] entropy and a linear potential",
            ));
        };
        let grid = mesh
            .as_grid()
            .ok_or_else(|| RunError::config("initial.kind", "drift_box needs a grid mesh"))?;
        Ok(DriftBox::new(
            beta,
            slope.clone(),
            grid.lower.clone(),
            grid.upper.clone(),
            modes.clone(),
            amplitude.clone(),
            mass.unwrap_or(1.0),
        )?)
    }
}

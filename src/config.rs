//! Run configuration (TOML, via serde). Every table denies unknown keys, so a typo is an error
//! that names the key; a missing or mistyped key is an error naming it too.
//!
//! ```toml
//! [mesh]
//! cells = [64, 64]            # cells per axis; 1 to 3 axes
//! lower = [-5.0, -5.0]
//! upper = [5.0, 5.0]
//! # obstacles = [{ kind = "disc", center = [0.0, 0.0], radius = 1.0 }]   # cells removed from the domain
//! # mask = "mask.npy"        # or a mask array (nonzero = inside), shape = cells
//! [initial]                   # kind: gaussian (mean, std) | barenblatt (m, t0) | uniform | drift_box (modes, amplitude) | npy (path)
//! kind = "gaussian"
//! mean = [1.0, -0.5]
//! std = [0.5, 0.8]
//! [energy]                    # any subset
//! entropy = 1.0
//! potential = { kind = "quadratic", center = [0.0, 0.0], stiffness = 1.0 }
//! [scheme]
//! tau = 0.1
//! steps = 10
//! [solver]
//! kind = "conic"
//! ```

use crate::backend::SolverConfig;
use crate::error::RunError;
use jko_core::exact::{Barenblatt, DriftBox, Gaussian};
use jko_core::{Energy, InputError, Interaction, Mesh, Potential};
use ndarray::{Array1, ArrayD};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub mesh: MeshConfig,
    pub initial: InitialConfig,
    #[serde(default)]
    pub energy: EnergyConfig,
    pub scheme: SchemeConfig,
    pub solver: SolverConfig,
    #[serde(default)]
    pub checks: Checks,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshConfig {
    pub cells: Vec<usize>,
    pub lower: Vec<f64>,
    pub upper: Vec<f64>,
    /// Regions removed from the domain (walls with no flux).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub obstacles: Vec<Obstacle>,
    /// A `.npy` array of shape `cells`; nonzero entries are inside the domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Obstacle {
    /// A ball (disc in 2D, interval in 1D).
    Disc { center: Vec<f64>, radius: f64 },
    /// An axis-aligned box.
    Box { lower: Vec<f64>, upper: Vec<f64> },
}

impl Obstacle {
    fn contains(&self, x: &[f64]) -> bool {
        match self {
            Obstacle::Disc { center, radius } => {
                x.iter()
                    .zip(center)
                    .map(|(a, c)| (a - c) * (a - c))
                    .sum::<f64>()
                    <= radius * radius
            }
            Obstacle::Box { lower, upper } => x
                .iter()
                .zip(lower.iter().zip(upper))
                .all(|(a, (l, u))| *l <= *a && *a <= *u),
        }
    }

    fn dims(&self) -> usize {
        match self {
            Obstacle::Disc { center, .. } => center.len(),
            Obstacle::Box { lower, upper } => lower.len().max(upper.len()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum InitialConfig {
    /// A Gaussian with independent coordinates, sampled at cell centres and normalised.
    Gaussian {
        mean: Vec<f64>,
        std: Vec<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mass: Option<f64>,
    },
    /// The Barenblatt profile of ∂ρ/∂t = Δρ^m at time t0, centred at the origin.
    Barenblatt {
        m: f64,
        t0: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mass: Option<f64>,
    },
    /// Constant density on the domain.
    Uniform {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mass: Option<f64>,
    },
    /// The exact non-Gaussian Fokker–Planck solution on the box for `entropy` + a linear
    /// potential (`jko_core::exact::DriftBox`) at t = 0: stationary profile plus one decaying
    /// mode per axis (`modes`, `amplitude` in [0, 1) of the positivity bound).
    DriftBox {
        modes: Vec<usize>,
        amplitude: Vec<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mass: Option<f64>,
    },
    /// Cell values from a `.npy` file (float64, shape = cells), normalised to `mass` (default 1).
    Npy {
        path: PathBuf,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mass: Option<f64>,
    },
}

/// The energy as written in a config (see `jko_core::Energy` for the mathematics).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnergyConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entropy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub porous: Option<Porous>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub potential: Option<PotentialConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interaction: Option<Interaction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_density: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Porous {
    pub m: f64,
}

/// A number or a list of numbers (one per axis).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PerAxis {
    One(f64),
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PotentialConfig {
    /// stiffness · |x − center|²/2 (center defaults to the origin, stiffness to 1).
    Quadratic {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        center: Option<Vec<f64>>,
        #[serde(default = "one")]
        stiffness: f64,
    },
    /// slope · x; `slope` is a number (all axes) or one number per axis.
    Linear { slope: PerAxis },
    /// Σ x_i⁴/4.
    Quartic,
    /// Σ (x_i² − 1)²/4.
    DoubleWell,
    /// Cell values from a `.npy` file of shape `cells`.
    Npy { path: PathBuf },
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemeConfig {
    pub tau: f64,
    pub steps: usize,
}

/// Invariant checks made after every step; a violation stops the run with an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Checks {
    /// |M^{n+1} − M⁰| / M⁰ allowed.
    pub mass_rtol: f64,
    /// ρ ≥ −positivity_atol · max(1, max ρ).
    pub positivity_atol: f64,
    /// ρ ≤ ρ_max (1 + bound_rtol).
    pub bound_rtol: f64,
    /// F(ρ^{n+1}) + W²/(2τ) ≤ F(ρⁿ) + energy_rtol · (|F(ρⁿ)| + W²/(2τ) + mass).
    pub energy_rtol: f64,
}

impl Default for Checks {
    fn default() -> Self {
        Checks {
            mass_rtol: 1e-9,
            positivity_atol: 1e-10,
            bound_rtol: 1e-8,
            energy_rtol: 1e-7,
        }
    }
}

/// Everything a run needs, built from a config.
#[derive(Debug, Clone)]
pub struct Problem {
    pub mesh: Mesh,
    pub energy: Energy,
    pub initial: Array1<f64>,
}

impl Config {
    /// Parse TOML text. Errors name the offending key.
    pub fn from_toml(text: &str) -> Result<Config, RunError> {
        toml::from_str(text).map_err(|e| RunError::Config(e.to_string()))
    }

    /// Read and parse a config file.
    pub fn from_file(path: &Path) -> Result<Config, RunError> {
        let text = std::fs::read_to_string(path).map_err(|e| RunError::io(path, e))?;
        Self::from_toml(&text).map_err(|e| match e {
            RunError::Config(msg) => RunError::Config(format!("{}: {msg}", path.display())),
            other => other,
        })
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# could not serialise config: {e}"))
    }

    /// Check scalar parameters that serde cannot.
    pub fn validate(&self) -> Result<(), RunError> {
        if !(self.scheme.tau.is_finite() && self.scheme.tau > 0.0) {
            return Err(InputError::InvalidTau(self.scheme.tau).into());
        }
        self.solver.validate()?;
        Ok(())
    }

    /// Build mesh, energy and initial density. Relative paths are resolved against `base`.
    pub fn build(&self, base: &Path) -> Result<Problem, RunError> {
        self.validate()?;
        let mesh = self.mesh.build(base)?;
        let energy = self.energy.build(&mesh, base)?;
        energy.validate()?;
        let initial = self.initial.build(&mesh, &energy, base)?;
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

impl MeshConfig {
    pub fn build(&self, base: &Path) -> Result<Mesh, RunError> {
        // Validate the box before anything uses it (the mesh constructor repeats these checks).
        let plain = Mesh::grid(&self.cells, &self.lower, &self.upper)?;
        if self.obstacles.is_empty() && self.mask.is_none() {
            return Ok(plain);
        }
        let d = self.cells.len();
        let grid = plain
            .as_grid()
            .ok_or_else(|| RunError::Config("mesh without grid".into()))?;
        let mut inside = vec![true; grid.len()];
        if let Some(path) = &self.mask {
            let path = base.join(path);
            let arr = read_npy(&path)?;
            let values = plain.from_grid_array("mesh mask", &arr)?;
            for (k, &gi) in plain.grid_index().iter().enumerate() {
                if !values[k].is_finite() {
                    return Err(InputError::NonFinite {
                        what: "mesh mask".into(),
                        index: gi,
                        value: values[k],
                    }
                    .into());
                }
                inside[gi] = values[k] != 0.0;
            }
        }
        for (i, ob) in self.obstacles.iter().enumerate() {
            if ob.dims() != d {
                return Err(InputError::ShapeMismatch {
                    what: format!("mesh.obstacles[{i}]"),
                    expected: format!("{d} coordinates"),
                    found: ob.dims().to_string(),
                }
                .into());
            }
            for (k, &gi) in plain.grid_index().iter().enumerate() {
                if ob.contains(plain.centre(k)) {
                    inside[gi] = false;
                }
            }
        }
        Ok(Mesh::masked_grid(
            &self.cells,
            &self.lower,
            &self.upper,
            Some(inside),
        )?)
    }
}

impl EnergyConfig {
    pub fn build(&self, mesh: &Mesh, base: &Path) -> Result<Energy, RunError> {
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
            Some(PotentialConfig::Npy { path }) => {
                let arr = read_npy(&base.join(path))?;
                let values = mesh.from_grid_array("potential npy", &arr)?;
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

impl InitialConfig {
    pub fn build(
        &self,
        mesh: &Mesh,
        energy: &Energy,
        base: &Path,
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
                if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
                    return Err(
                        InputError::parameter("initial.std", s, "must be finite and > 0").into(),
                    );
                }
                let g = Gaussian::diagonal(mean, std);
                (mesh.sample(|x| g.density(x)), *mass)
            }
            InitialConfig::Barenblatt { m, t0, mass } => {
                if !(t0.is_finite() && *t0 > 0.0) {
                    return Err(
                        InputError::parameter("initial.t0", t0, "must be finite and > 0").into(),
                    );
                }
                let b = Barenblatt::new(*m, d, mass.unwrap_or(1.0))?;
                (mesh.sample(|x| b.density(*t0, x)), *mass)
            }
            InitialConfig::Uniform { mass } => (Array1::ones(mesh.n_cells()), *mass),
            InitialConfig::DriftBox { .. } => {
                let exact = self.drift_box(mesh, energy)?;
                (mesh.sample(|x| exact.density(0.0, x)), Some(exact.mass))
            }
            InitialConfig::Npy { path, mass } => {
                let arr = read_npy(&base.join(path))?;
                (mesh.from_grid_array("initial density npy", &arr)?, *mass)
            }
        };
        let mass = mass.unwrap_or(1.0);
        if !(mass.is_finite() && mass > 0.0) {
            return Err(
                InputError::parameter("initial.mass", mass, "must be finite and > 0").into(),
            );
        }
        jko_core::check_density(mesh, &raw, "initial density")?;
        let scale = mass / mesh.mass(&raw);
        Ok(raw * scale)
    }

    /// The exact solution behind `kind = "drift_box"`: it needs `entropy` and a linear potential.
    pub fn drift_box(&self, mesh: &Mesh, energy: &Energy) -> Result<DriftBox, RunError> {
        let InitialConfig::DriftBox {
            modes,
            amplitude,
            mass,
        } = self
        else {
            return Err(RunError::Config("initial.kind is not drift_box".into()));
        };
        let (Some(beta), Some(Potential::Linear { slope })) = (energy.entropy, &energy.potential)
        else {
            return Err(RunError::Config(
                "initial.kind = \"drift_box\" needs [energy] entropy and a linear potential".into(),
            ));
        };
        let grid = mesh
            .as_grid()
            .ok_or_else(|| RunError::Config("drift_box needs a grid".into()))?;
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

/// Read a float64 (or other numeric) `.npy` file as an f64 array.
pub fn read_npy(path: &Path) -> Result<ArrayD<f64>, RunError> {
    let file = std::fs::File::open(path).map_err(|e| RunError::io(path, e))?;
    ndarray_npy::ReadNpyExt::read_npy(file).map_err(|e: ndarray_npy::ReadNpyError| RunError::Npy {
        path: path.to_path_buf(),
        message: format!("{e} (expected float64, C or Fortran order)"),
    })
}

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
//! # file = "domain.msh"      # instead of the grid keys: a Gmsh MSH 4.1 triangle mesh
//! # control_volumes = "elements"   # with `file`: elements (circumcentres) | voronoi
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
use crate::expression::Expression;
use jko_core::exact::{Barenblatt, DriftBox, Gaussian};
use jko_core::{ControlVolumes, Energy, InputError, Interaction, Mesh, Potential};
use ndarray::{Array1, ArrayD};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};

/// A whole run: the config file of `jko run` (see the module docs for the format).
///
/// ```rust
/// use jko::config::{Config, InitialConfig};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::from_toml(r#"
///     mesh = { cells = [40], lower = [-4.0], upper = [4.0] }
///     initial = { kind = "gaussian", mean = [1.0], std = [0.5] }
///     energy = { entropy = 1.0, potential = { kind = "quadratic" } }
///     scheme = { tau = 0.1, steps = 2 }
///     solver = { kind = "newton" }
/// "#)?;
/// assert!(matches!(config.initial, InitialConfig::Gaussian { .. }));
/// assert_eq!(config.checks, Default::default());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[mesh]`: the box, its cells and the cells removed from it.
    pub mesh: MeshConfig,
    /// `[initial]`: the initial density ρ⁰.
    pub initial: InitialConfig,
    /// `[energy]`: the terms of F (none: the empty energy).
    #[serde(default)]
    pub energy: EnergyConfig,
    /// `[scheme]`: time step and number of steps.
    pub scheme: SchemeConfig,
    /// `[solver]`: the backend and its parameters.
    pub solver: SolverConfig,
    /// `[checks]`: tolerances of the invariants checked after every step.
    #[serde(default)]
    pub checks: Checks,
    /// `[limits]`: resources the run may use (memory).
    #[serde(default, skip_serializing_if = "Limits::is_default")]
    pub limits: Limits,
}

/// `[limits]`: resources a run may use. A run whose estimated memory (the mesh plus the
/// backend's [`jko_core::StepSolver::memory_estimate`]) exceeds the limit is refused before
/// anything large is allocated (by [`crate::plan::Plan::build`], which reads the limit through
/// [`crate::plan::MemoryBudget::from_limits`]).
///
/// ```toml
/// [limits]
/// max_memory_gib = 8.0   # default: the environment's JKO_MAX_MEMORY_GIB, else MemAvailable
/// ```
///
/// ```rust
/// use jko::config::Limits;
///
/// let limits: Limits = toml::from_str("max_memory_gib = 0.5").unwrap();
/// assert_eq!(limits.max_memory_gib, Some(0.5));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Memory limit in GiB (None: `JKO_MAX_MEMORY_GIB`, else the available memory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_memory_gib: Option<f64>,
}

impl Limits {
    fn is_default(&self) -> bool {
        *self == Limits::default()
    }
}

/// `[mesh]`: a Cartesian grid on the box [lower, upper] (1 to 3 axes), optionally with cells
/// removed (obstacles, a mask); or, with `file`, a Gmsh MSH 4.1 mesh of triangles (2D) or
/// tetrahedra (3D) turned into a two-point-flux mesh (`control_volumes`, see
/// `jko_core::simplicial` and docs/mathematics.md §6).
///
/// ```rust
/// use jko::config::{MeshConfig, Obstacle};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = MeshConfig {
///     cells: vec![10],
///     lower: vec![0.0],
///     upper: vec![1.0],
///     obstacles: vec![Obstacle::Box { lower: vec![0.0], upper: vec![0.3] }],
///     ..Default::default()
/// };
/// assert_eq!(config.build(".".as_ref())?.n_cells(), 7);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshConfig {
    /// Cells per axis (a grid; empty with `file`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cells: Vec<usize>,
    /// Lower corner of the box (a grid).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lower: Vec<f64>,
    /// Upper corner of the box (a grid).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upper: Vec<f64>,
    /// A Gmsh MSH 4.1 file (relative to the config's directory) instead of a grid: its
    /// triangles (2D) or tetrahedra (3D) make the mesh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// With `file`: the control volumes, the file's elements centred at their circumcentres
    /// (default) or the Voronoi cells of its vertices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_volumes: Option<ControlVolumes>,
    /// Regions removed from the domain (walls with no flux).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub obstacles: Vec<Obstacle>,
    /// A `.npy` array of shape `cells`; nonzero entries are inside the domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<PathBuf>,
}

/// A region removed from the domain (`mesh.obstacles`): a cell is removed when its centre is
/// inside; its faces become walls with no flux.
///
/// ```rust
/// use jko::config::Obstacle;
///
/// let disc: Obstacle = toml::from_str("kind = \"disc\"\ncenter = [0.0, 0.0]\nradius = 1.0").unwrap();
/// assert_eq!(disc, Obstacle::Disc { center: vec![0.0, 0.0], radius: 1.0 });
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Obstacle {
    /// A ball (disc in 2D, interval in 1D).
    Disc {
        /// Centre, one coordinate per axis.
        center: Vec<f64>,
        /// Radius (the boundary is inside).
        radius: f64,
    },
    /// An axis-aligned box.
    Box {
        /// Lower corner, one coordinate per axis.
        lower: Vec<f64>,
        /// Upper corner, one coordinate per axis.
        upper: Vec<f64>,
    },
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
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mass: Option<f64>,
    },
    /// The Barenblatt profile of ∂ρ/∂t = Δρ^m at time t0, centred at the origin.
    Barenblatt {
        /// Exponent m > 1 of the porous medium equation.
        m: f64,
        /// Time of the profile (> 0): larger is wider.
        t0: f64,
        /// Total mass (default 1).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mass: Option<f64>,
    },
    /// Constant density on the domain.
    Uniform {
        /// Total mass (default 1).
        #[serde(default, skip_serializing_if = "Option::is_none")]
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
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mass: Option<f64>,
    },
    /// A formula in x, y, z (see [`crate::expression`]) evaluated at the cell centres,
    /// normalised to `mass` (default 1). It must be finite and ≥ 0 at every centre.
    Expression {
        /// The formula.
        expr: String,
        /// Total mass (default 1).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mass: Option<f64>,
    },
    /// Cell values from a `.npy` file (float64, shape = cells; on a mesh read from a file, one
    /// value per cell in the mesh's cell order), normalised to `mass` (default 1).
    Npy {
        /// The file, relative to the config's directory.
        path: PathBuf,
        /// Total mass (default 1).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mass: Option<f64>,
    },
}

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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnergyConfig {
    /// β in β∫ρ log ρ (diffusion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entropy: Option<f64>,
    /// The porous-medium term ∫ρ^m/(m − 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub porous: Option<Porous>,
    /// The potential V of ∫Vρ (drift).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub potential: Option<PotentialConfig>,
    /// The interaction ½∬W(x − y)ρ(x)ρ(y) (treated semi-implicitly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interaction: Option<Interaction>,
    /// The congestion bound ρ ≤ ρ_max.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PotentialConfig {
    /// stiffness · |x − center|²/2 (center defaults to the origin, stiffness to 1).
    Quadratic {
        /// Minimum of the potential (default: the origin).
        #[serde(default, skip_serializing_if = "Option::is_none")]
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

/// `[scheme]`: the JKO time step and the number of steps (final time τ · steps).
///
/// ```rust
/// let s: jko::config::SchemeConfig = toml::from_str("tau = 0.1\nsteps = 10").unwrap();
/// assert_eq!(s.tau * s.steps as f64, 1.0);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemeConfig {
    /// Time step τ (finite, > 0).
    pub tau: f64,
    /// Number of steps.
    pub steps: usize,
}

/// Invariant checks made after every step by [`crate::driver::Stepper::step`]; a violation
/// stops the run with [`RunError::Invariant`]. Defaults: mass 1e-9, positivity 1e-10, bound
/// 1e-8, energy 1e-7.
///
/// ```rust
/// use jko::config::Checks;
///
/// let c: Checks = toml::from_str("mass_rtol = 1e-6").unwrap();
/// assert_eq!(c.mass_rtol, 1e-6);
/// assert_eq!(c.energy_rtol, Checks::default().energy_rtol);
/// ```
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

/// Supplies the array behind a `.npy` path written in a config (see [`Config::build_with`]).
///
/// ```rust
/// use jko::config::{NpyLoader, read_npy};
/// use std::path::Path;
///
/// // What `Config::build` uses: files relative to a base directory.
/// let base = Path::new("configs");
/// let load: &NpyLoader = &|p: &Path| read_npy(&base.join(p));
/// assert!(load(Path::new("missing.npy")).unwrap_err().to_string().starts_with("configs/missing.npy"));
/// ```
pub type NpyLoader<'a> = dyn Fn(&Path) -> Result<ArrayD<f64>, RunError> + 'a;

/// Everything a run needs, built from a config by [`Config::build`].
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

impl Config {
    /// Parse TOML text. Only the syntax and the keys are checked here; values are checked by
    /// [`Config::validate`] and [`Config::build`].
    ///
    /// # Errors
    /// [`RunError::Toml`] naming the offending key (unknown, missing or mistyped).
    ///
    /// ```rust
    /// use jko::config::Config;
    ///
    /// let text = jko::examples::example("ou-1d").unwrap().replace("tau", "dt");
    /// let err = Config::from_toml(&text).unwrap_err();
    /// assert!(err.to_string().contains("unknown field `dt`"), "{err}");
    /// ```
    pub fn from_toml(text: &str) -> Result<Config, RunError> {
        toml::from_str(text).map_err(|e| RunError::Toml {
            origin: None,
            source: Box::new(e),
        })
    }

    /// Read and parse a config file (`jko run CONFIG`).
    ///
    /// # Errors
    /// [`RunError::Io`] when the file cannot be read; [`RunError::Toml`] as for
    /// [`Config::from_toml`], with the path.
    ///
    /// ```rust
    /// use jko::config::Config;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("ou-1d.toml");
    /// std::fs::write(&path, jko::examples::example("ou-1d").unwrap())?;
    /// assert_eq!(Config::from_file(&path)?.mesh.cells, [200]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_file(path: &Path) -> Result<Config, RunError> {
        let text = std::fs::read_to_string(path).map_err(|e| RunError::io(path, e))?;
        toml::from_str(&text).map_err(|e| RunError::Toml {
            origin: Some(path.to_path_buf()),
            source: Box::new(e),
        })
    }

    /// The config as TOML text (what [`Config::from_toml`] reads back to an equal config).
    ///
    /// ```rust
    /// use jko::config::Config;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = Config::from_toml(jko::examples::example("crowd-2d").unwrap())?;
    /// assert_eq!(Config::from_toml(&config.to_toml())?, config);
    /// # Ok(())
    /// # }
    /// ```
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# could not serialise config: {e}"))
    }

    /// Check scalar parameters that serde cannot: τ and the backend's parameters (the mesh,
    /// energy and initial density are checked by [`Config::build`]).
    ///
    /// # Errors
    /// [`RunError::Input`] naming the parameter.
    ///
    /// ```rust
    /// use jko::config::Config;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut config = Config::from_toml(jko::examples::example("ou-1d").unwrap())?;
    /// config.validate()?;
    /// config.scheme.tau = -0.1;
    /// assert!(config.validate().unwrap_err().to_string().contains("tau"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn validate(&self) -> Result<(), RunError> {
        if !(self.scheme.tau.is_finite() && self.scheme.tau > 0.0) {
            return Err(InputError::InvalidTau(self.scheme.tau).into());
        }
        self.solver.validate()?;
        if let Some(v) = self.limits.max_memory_gib {
            jko_core::finite_positive("limits.max_memory_gib", v)?;
        }
        Ok(())
    }

    /// Build mesh, energy and initial density. Relative paths are resolved against `base`
    /// (the CLI passes the config file's directory).
    ///
    /// # Errors
    /// [`RunError::Input`] for invalid values (naming the key: a mesh bound, a negative
    /// `initial.std`, an initial density above `max_density`, ...); [`RunError::Io`] /
    /// [`RunError::Npy`] for a `.npy` file that cannot be read; [`RunError::Config`] for
    /// inconsistent tables (`drift_box` without a linear potential).
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
    /// assert!((problem.mesh.mass(&problem.initial) - 1.0).abs() < 1e-12);
    ///
    /// let bad = Config::from_toml(&jko::examples::example("ou-1d").unwrap().replace("std = [0.5]", "std = [-0.5]"))?;
    /// assert!(bad.build(".".as_ref()).unwrap_err().to_string().contains("initial.std"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn build(&self, base: &Path) -> Result<Problem, RunError> {
        let mut resolved = self.clone();
        resolved.mesh = self.mesh.relative_to(base);
        resolved.build_with(&|p: &Path| read_npy(&base.join(p)))
    }

    /// [`Config::build`] with the `.npy` arrays the config names (mask, potential, initial
    /// density) obtained from `load`, called with each path as written; no other file is
    /// touched. `build` is this with `load` = [`read_npy`] relative to its base (the fuzz
    /// targets call this with in-memory arrays). Nothing here checks memory or the backend:
    /// [`crate::plan::Plan::build_with`] does, around the same steps.
    ///
    /// # Errors
    /// As for [`Config::build`], plus whatever `load` returns.
    ///
    /// ```rust
    /// use jko::config::Config;
    /// use ndarray::{ArrayD, IxDyn};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = Config::from_toml(r#"
    ///     mesh = { cells = [4], lower = [0.0], upper = [4.0], mask = "mask.npy" }
    ///     initial = { kind = "uniform" }
    ///     scheme = { tau = 0.1, steps = 1 }
    ///     solver = { kind = "newton" }
    /// "#)?;
    /// // The mask comes from memory: the last cell is outside the domain.
    /// let load = |p: &std::path::Path| {
    ///     assert_eq!(p, std::path::Path::new("mask.npy"));
    ///     Ok(ArrayD::from_shape_vec(IxDyn(&[4]), vec![1.0, 1.0, 1.0, 0.0]).unwrap())
    /// };
    /// let problem = config.build_with(&load)?;
    /// assert_eq!(problem.mesh.n_cells(), 3);
    /// # Ok(())
    /// # }
    /// ```
    pub fn build_with(&self, load: &NpyLoader) -> Result<Problem, RunError> {
        self.validate()?;
        let mesh = self.mesh.build_with(load)?;
        let energy = self.energy.build_with(&mesh, load)?;
        let initial = self.initial.build_with(&mesh, &energy, load)?;
        Problem::new(mesh, energy, initial)
    }
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

impl MeshConfig {
    /// Build the mesh: the grid, then the cells removed by the mask (paths relative to
    /// `base`) and the obstacles.
    ///
    /// # Errors
    /// [`RunError::Input`] for an invalid box (0 or more than 3 axes, `lower ≥ upper`, lengths
    /// that differ), an obstacle of the wrong dimension, or a mask of the wrong shape;
    /// [`RunError::Io`] / [`RunError::Npy`] for an unreadable mask.
    ///
    /// ```rust
    /// use jko::config::{MeshConfig, Obstacle};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut config = MeshConfig {
    ///     cells: vec![20, 20],
    ///     lower: vec![-1.0, -1.0],
    ///     upper: vec![1.0, 1.0],
    ///     obstacles: vec![Obstacle::Disc { center: vec![0.0, 0.0], radius: 0.5 }],
    ///     ..Default::default()
    /// };
    /// let mesh = config.build(".".as_ref())?;
    /// // The disc of area π/4 removes about π/4 / 0.01 ≈ 79 cells of 400.
    /// assert!((mesh.n_cells() as f64 - (400.0 - 78.5)).abs() < 10.0);
    /// config.lower = vec![1.0, 1.0];
    /// assert!(config.build(".".as_ref()).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn build(&self, base: &Path) -> Result<Mesh, RunError> {
        self.relative_to(base)
            .build_with(&|p: &Path| read_npy(&base.join(p)))
    }

    /// The same config with its mesh `file` (if any) resolved against `base`: what
    /// [`MeshConfig::build`] and [`Config::build`] read (the `.npy` paths go through their
    /// loader instead).
    ///
    /// ```rust
    /// use jko::config::MeshConfig;
    ///
    /// let config = MeshConfig { file: Some("square.msh".into()), ..Default::default() };
    /// assert_eq!(config.relative_to("data".as_ref()).file, Some("data/square.msh".into()));
    /// ```
    pub fn relative_to(&self, base: &Path) -> MeshConfig {
        let mut resolved = self.clone();
        if let Some(f) = &self.file {
            resolved.file = Some(base.join(f));
        }
        resolved
    }

    /// [`MeshConfig::build`] with the mask array from `load` (see [`Config::build_with`]); a
    /// mesh `file` is read as written (relative to the working directory; [`MeshConfig::build`]
    /// resolves it against its base first).
    ///
    /// ```rust
    /// use jko::config::MeshConfig;
    /// use ndarray::{ArrayD, IxDyn};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = MeshConfig {
    ///     cells: vec![2, 2],
    ///     lower: vec![0.0, 0.0],
    ///     upper: vec![1.0, 1.0],
    ///     mask: Some("mask.npy".into()),
    ///     ..Default::default()
    /// };
    /// let mask = ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![1.0, 0.0, 1.0, 1.0])?;
    /// let mesh = config.build_with(&|_| Ok(mask.clone()))?;
    /// assert_eq!(mesh.n_cells(), 3);
    /// # Ok(())
    /// # }
    /// ```
    pub fn build_with(&self, load: &NpyLoader) -> Result<Mesh, RunError> {
        if let Some(file) = &self.file {
            let grid_keys = [
                ("cells", !self.cells.is_empty()),
                ("lower", !self.lower.is_empty()),
                ("upper", !self.upper.is_empty()),
                ("obstacles", !self.obstacles.is_empty()),
                ("mask", self.mask.is_some()),
            ];
            if let Some((key, _)) = grid_keys.iter().find(|(_, set)| *set) {
                return Err(RunError::config(
                    &format!("mesh.{key}"),
                    "is a grid key; a mesh read from `file` takes only `control_volumes` \
                     (cut holes and obstacles in the mesh file itself)",
                ));
            }
            return Ok(Mesh::from_msh(
                file,
                self.control_volumes.unwrap_or_default(),
            )?);
        }
        if self.control_volumes.is_some() {
            return Err(RunError::config(
                "mesh.control_volumes",
                "applies to a mesh read from `file`, not to a grid",
            ));
        }
        if self.cells.is_empty() {
            return Err(RunError::config(
                "mesh",
                "give the grid keys `cells`, `lower`, `upper`, or a mesh `file`",
            ));
        }
        // Validate the box before anything uses it (the mesh constructor repeats these checks).
        let plain = Mesh::grid(&self.cells, &self.lower, &self.upper)?;
        if self.obstacles.is_empty() && self.mask.is_none() {
            return Ok(plain);
        }
        let d = self.cells.len();
        let Some(grid) = plain.as_grid() else {
            unreachable!("Mesh::grid builds a grid")
        };
        let mut inside = vec![true; grid.len()];
        if let Some(path) = &self.mask {
            let arr = load(path)?;
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

    /// [`EnergyConfig::build`] with a potential array from `load` (see [`Config::build_with`]).
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

    /// [`InitialConfig::build`] with a density array from `load` (see [`Config::build_with`]).
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

/// Read a float64 `.npy` file as an f64 array (see [`read_npy_from`]): the step files of a
/// run directory, masks, potentials and initial densities named in configs.
///
/// # Errors
/// [`RunError::Io`] when the file cannot be opened; [`RunError::Npy`] when it is not a
/// float64 `.npy` array.
///
/// ```rust
/// use jko::config::read_npy;
/// use ndarray::array;
/// use ndarray_npy::WriteNpyExt;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("a.npy");
/// array![[1.0, 2.0], [3.0, 4.0]].write_npy(std::fs::File::create(&path)?)?;
/// let a = read_npy(&path)?;
/// assert_eq!(a.shape(), &[2, 2]);
/// assert_eq!(a[[1, 0]], 3.0);
/// # Ok(())
/// # }
/// ```
pub fn read_npy(path: &Path) -> Result<ArrayD<f64>, RunError> {
    let file = std::fs::File::open(path).map_err(|e| RunError::io(path, e))?;
    read_npy_from(std::io::BufReader::new(file), path)
}

/// Read a float64 `.npy` stream (C or Fortran order) as an f64 array; `origin` names it in
/// errors. The reader behind [`read_npy`], also fed raw bytes by the fuzz targets.
///
/// # Errors
/// [`RunError::Npy`] naming `origin` when the stream is not a float64 `.npy` array.
///
/// ```rust
/// use jko::config::read_npy_from;
/// use ndarray::array;
/// use ndarray_npy::WriteNpyExt;
/// use std::path::Path;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut bytes = Vec::new();
/// array![0.5, 1.5].write_npy(&mut bytes)?;
/// assert_eq!(read_npy_from(&bytes[..], Path::new("memory"))?.sum(), 2.0);
/// let err = read_npy_from(&b"not npy"[..], Path::new("memory")).unwrap_err();
/// assert!(err.to_string().starts_with("memory: not a readable .npy array"));
/// # Ok(())
/// # }
/// ```
///
/// `ndarray_npy` allocates the element count the header claims before reading any data, so a
/// 100-byte file claiming 2^40 values aborts the process. The header and the data present are
/// therefore read first (each bounded), and a header claiming more than the data holds is an
/// error; only then does `ndarray_npy` parse them.
pub fn read_npy_from(mut reader: impl Read, origin: &Path) -> Result<ArrayD<f64>, RunError> {
    let err = |message: String| RunError::Npy {
        path: origin.to_path_buf(),
        message,
    };
    // Preamble: magic (6 bytes), version (2), header length (u16 in version 1, u32 after).
    let mut pre = vec![0u8; 10];
    reader
        .read_exact(&mut pre)
        .map_err(|e| err(format!("{e} (reading the preamble)")))?;
    if pre[..6] != *b"\x93NUMPY" {
        return Err(err("not a .npy file (no \\x93NUMPY magic string)".into()));
    }
    let header_len = match pre[6] {
        1 => usize::from(u16::from_le_bytes([pre[8], pre[9]])),
        2 | 3 => {
            pre.resize(12, 0);
            reader
                .read_exact(&mut pre[10..])
                .map_err(|e| err(format!("{e} (reading the preamble)")))?;
            u32::from_le_bytes([pre[8], pre[9], pre[10], pre[11]]) as usize
        }
        v => return Err(err(format!("unsupported .npy format version {v}"))),
    };
    if header_len > NPY_MAX_HEADER {
        return Err(err(format!(
            "header of {header_len} bytes (at most {NPY_MAX_HEADER} accepted)"
        )));
    }
    let mut header = Vec::with_capacity(header_len);
    (&mut reader)
        .take(header_len as u64)
        .read_to_end(&mut header)
        .map_err(|e| err(e.to_string()))?;
    if header.len() < header_len {
        return Err(err(format!(
            "truncated header: {} of {header_len} bytes",
            header.len()
        )));
    }
    let mut depth = 0usize;
    for b in &header {
        match b {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth > NPY_MAX_NESTING {
            return Err(err(format!(
                "header nests brackets deeper than {NPY_MAX_NESTING}"
            )));
        }
    }
    let claimed = npy_claimed_values(&header).saturating_mul(8);
    let mut data = Vec::new();
    (&mut reader)
        .take(claimed.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(|e| err(e.to_string()))?;
    // Small claims go to ndarray_npy, whose own errors (wrong dtype, missing bytes) say more.
    if claimed > (data.len() as u64).max(1 << 20) {
        return Err(err(format!(
            "the header describes {} float64 values, the file holds {} bytes of data",
            claimed / 8,
            data.len()
        )));
    }
    let stream = pre
        .as_slice()
        .chain(header.as_slice())
        .chain(data.as_slice());
    ndarray_npy::ReadNpyExt::read_npy(stream).map_err(|e: ndarray_npy::ReadNpyError| {
        err(format!("{e} (expected float64, C or Fortran order)"))
    })
}

/// Largest `.npy` header accepted: numpy's own default `max_header_size`. A float64 array's
/// header is ~120 bytes; `ndarray_npy` would allocate whatever length the file claims (4 GiB
/// in 12 bytes of a version-2 file).
pub const NPY_MAX_HEADER: usize = 10_000;

/// Deepest bracket nesting accepted in a `.npy` header (numpy writes 2: the dict and the shape
/// tuple); the header's Python-literal parser recurses once per level.
const NPY_MAX_NESTING: usize = 8;

/// An upper bound on the number of values a `.npy` header describes: the product of every
/// integer literal in it (Python syntax: decimal, 0x/0o/0b, `_` separators; zeros count as 1,
/// unparseable or overflowing ones as `u64::MAX`). A numpy-written header's only integers
/// are the shape, so the bound is exact there.
fn npy_claimed_values(header: &[u8]) -> u64 {
    header
        .split(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
        .filter(|t| t.first().is_some_and(u8::is_ascii_digit))
        .map(|t| {
            let t: String = t
                .iter()
                .filter(|b| **b != b'_')
                .map(|b| *b as char)
                .collect();
            let lower = t.to_ascii_lowercase();
            let (digits, radix) = match lower.get(..2) {
                Some("0x") => (&lower[2..], 16),
                Some("0o") => (&lower[2..], 8),
                Some("0b") => (&lower[2..], 2),
                _ => (lower.as_str(), 10),
            };
            u64::from_str_radix(digits, radix).map_or(u64::MAX, |v| v.max(1))
        })
        .fold(1u64, u64::saturating_mul)
}

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
//!
//! The schema is split by section: [`MeshConfig`] (`[mesh]`), [`InitialConfig`] (`[initial]`),
//! [`EnergyConfig`] (`[energy]`), [`SchemeConfig`], [`Checks`] and [`Limits`] (`[scheme]`,
//! `[checks]`, `[limits]`: how the run proceeds), `[solver]` ([`SolverConfig`], from the backend
//! table in [`crate::backend`]); [`Problem`] is what a config builds, checked for admissibility;
//! [`read_npy`] reads the arrays a config names.

mod energy;
mod initial;
mod mesh;
mod npy;
mod problem;
mod run;

use crate::backend::SolverConfig;
pub use energy::{EnergyConfig, PerAxis, Porous, PotentialConfig};
pub use initial::InitialConfig;
pub use mesh::{MeshConfig, Obstacle};
pub use npy::{NPY_MAX_HEADER, read_npy, read_npy_from};
pub use problem::Problem;
pub use run::{Checks, Limits, SchemeConfig};

use crate::error::RunError;
use jko_core::InputError;
use ndarray::ArrayD;
use serde::{Deserialize, Serialize};
use std::path::Path;

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

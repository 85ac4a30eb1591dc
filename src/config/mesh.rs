//! `[mesh]`: a grid with obstacles and a mask, or a mesh file.

use super::NpyLoader;
use super::npy::read_npy;
use crate::error::RunError;
use jko_core::{ControlVolumes, InputError, Mesh};
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use std::path::{Path, PathBuf};

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
#[skip_serializing_none]
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
    pub file: Option<PathBuf>,
    /// With `file`: the control volumes, the file's elements centred at their circumcentres
    /// (default) or the Voronoi cells of its vertices.
    pub control_volumes: Option<ControlVolumes>,
    /// Regions removed from the domain (walls with no flux).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub obstacles: Vec<Obstacle>,
    /// A `.npy` array of shape `cells`; nonzero entries are inside the domain.
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
    /// [`MeshConfig::build`] and [`Config::build`](super::Config::build) read (the `.npy` paths
    /// go through their loader instead).
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

    /// [`MeshConfig::build`] with the mask array from `load` (see
    /// [`Config::build_with`](super::Config::build_with)); a mesh `file` is read as written
    /// (relative to the working directory; [`MeshConfig::build`] resolves it against its base
    /// first).
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

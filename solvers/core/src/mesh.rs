//! Meshes in two-point-flux form.
//!
//! A mesh is what every backend needs and nothing more: cell volumes |K|, cell centres x_K and
//! the list of interior faces σ = K|L with area |σ| and centre distance d_σ, so that the
//! transmissibility is T_σ = |σ|/d_σ. Boundary faces carry no flux (no-flux walls), so they are
//! not stored. Cartesian grids in 1D–3D, optionally with a cell mask, keep their axis structure
//! ([`Grid`]) for backends that exploit it (tensor-product kernels); a general mesh can be built
//! from its parts with [`Mesh::from_parts`].
//!
//! Conventions: cells are numbered `0..n_cells()` (active cells only); a density is one *cell
//! value* ρ_K per cell (a density, not a mass), and its mass is M = Σ_K |K| ρ_K
//! ([`Mesh::mass`]). A face flux G_σ is the *mass* moved across σ, oriented from `k` to `l`.
//!
//! ```rust
//! use jko_core::Mesh;
//! use ndarray::array;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Four cells of width 1/4 on [0, 1]: three interior faces, each with T_σ = 1/(1/4) = 4.
//! let mesh = Mesh::grid(&[4], &[0.0], &[1.0])?;
//! assert_eq!(mesh.n_cells(), 4);
//! assert_eq!(mesh.faces().len(), 3);
//! assert!(mesh.faces().iter().all(|f| f.transmissibility() == 4.0));
//! // A constant density 2 has mass 2 · |Ω| = 2.
//! assert_eq!(mesh.mass(&array![2.0, 2.0, 2.0, 2.0]), 2.0);
//! # Ok(())
//! # }
//! ```

use crate::error::InputError;
use ndarray::{Array1, ArrayD, IxDyn};
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use std::sync::Arc;

/// An interior face σ = K|L, oriented from `k` to `l`.
///
/// A face flux G_σ > 0 moves mass from cell `k` to cell `l`. [`Mesh::from_parts`] checks that
/// `k ≠ l` are cells of the mesh and that `area` and `distance` are finite and > 0.
///
/// ```rust
/// use jko_core::Face;
///
/// // Two unit squares side by side: |σ| = 1, d_σ = 1, so T_σ = 1.
/// let face = Face { k: 0, l: 1, area: 1.0, distance: 1.0, axis: 0 };
/// assert_eq!(face.transmissibility(), 1.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Face {
    /// Cell K the orientation starts from.
    pub k: usize,
    /// Cell L the orientation points to.
    pub l: usize,
    /// Face measure |σ| (length in 2D, area in 3D, 1 in 1D).
    pub area: f64,
    /// Distance d_σ between the centres of K and L.
    pub distance: f64,
    /// Grid axis the face is normal to (0 for general meshes).
    pub axis: usize,
}

impl Face {
    /// The transmissibility T_σ = |σ| / d_σ (h^{d−2} on a uniform grid of width h).
    ///
    /// ```rust
    /// use jko_core::Mesh;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // 2D grid of width h = 1/2: |σ| = h, d_σ = h, T_σ = h⁰ = 1.
    /// let mesh = Mesh::grid(&[2, 2], &[0.0, 0.0], &[1.0, 1.0])?;
    /// assert!(mesh.faces().iter().all(|f| f.transmissibility() == 1.0));
    /// # Ok(())
    /// # }
    /// ```
    pub fn transmissibility(&self) -> f64 {
        self.area / self.distance
    }
}

/// Axis structure of a (masked) uniform Cartesian grid.
///
/// Grid cells are numbered in C order over the whole box, active or not; [`Mesh::grid_index`]
/// maps each (active) mesh cell to its grid index.
///
/// Serialised (the `grid` of a conic step file) as its four fields, `mask` absent when every
/// cell is active; a deserialised grid is only data until [`Mesh::masked_grid`] validates it.
///
/// ```rust
/// use jko_core::Mesh;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::grid(&[2, 4], &[0.0, 0.0], &[1.0, 2.0])?;
/// let grid = mesh.as_grid().ok_or("a grid mesh has grid structure")?;
/// assert_eq!(grid.cells, vec![2, 4]);
/// assert_eq!(grid.spacing(), vec![0.5, 0.5]);
/// assert_eq!(grid.len(), 8);
/// # Ok(())
/// # }
/// ```
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grid {
    /// Cells per axis (C order: the last axis varies fastest).
    pub cells: Vec<usize>,
    /// Lower corner of the box, one coordinate per axis.
    pub lower: Vec<f64>,
    /// Upper corner of the box, one coordinate per axis (`upper[a] > lower[a]`).
    pub upper: Vec<f64>,
    /// `mask[i]` is true when grid cell `i` (C order) belongs to the domain.
    pub mask: Option<Vec<bool>>,
}

/// Cells per axis written `64x64` (`100` on a line): how messages, tables and benchmark names
/// give a grid's shape.
///
/// ```rust
/// assert_eq!(jko_core::shape_label(&[64, 32]), "64x32");
/// assert_eq!(jko_core::shape_label(&[100]), "100");
/// ```
pub fn shape_label(cells: &[usize]) -> String {
    cells
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

impl Grid {
    /// Cell width h_a = (upper_a − lower_a) / cells_a along each axis.
    ///
    /// ```rust
    /// use jko_core::Mesh;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[4, 2], &[0.0, -1.0], &[1.0, 1.0])?;
    /// assert_eq!(mesh.as_grid().ok_or("grid")?.spacing(), vec![0.25, 1.0]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn spacing(&self) -> Vec<f64> {
        (0..self.cells.len())
            .map(|a| (self.upper[a] - self.lower[a]) / self.cells[a] as f64)
            .collect()
    }

    /// Number of grid cells, active or not (the product of `cells`).
    ///
    /// ```rust
    /// use jko_core::Mesh;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // A 2×2 grid with one cell masked out: 4 grid cells, 3 mesh cells.
    /// let mask = vec![true, false, true, true];
    /// let mesh = Mesh::masked_grid(&[2, 2], &[0.0, 0.0], &[1.0, 1.0], Some(mask))?;
    /// assert_eq!(mesh.as_grid().ok_or("grid")?.len(), 4);
    /// assert_eq!(mesh.n_cells(), 3);
    /// # Ok(())
    /// # }
    /// ```
    pub fn len(&self) -> usize {
        self.cells.iter().product()
    }

    /// Whether the grid has no cells; never true for a grid built by [`Mesh::grid`] or
    /// [`Mesh::masked_grid`], which reject empty axes.
    ///
    /// ```rust
    /// use jko_core::Mesh;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[3], &[0.0], &[1.0])?;
    /// assert!(!mesh.as_grid().ok_or("grid")?.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Centre coordinate lower_a + (i + ½) h_a of the `i`-th cell along `axis` (a per-axis
    /// index, not a cell number).
    ///
    /// # Panics
    /// If `axis` is not an axis of the grid.
    ///
    /// ```rust
    /// use jko_core::Mesh;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[4], &[0.0], &[1.0])?;
    /// let grid = mesh.as_grid().ok_or("grid")?;
    /// assert_eq!(grid.coordinate(0, 0), 0.125);
    /// assert_eq!(grid.coordinate(0, 3), 0.875);
    /// # Ok(())
    /// # }
    /// ```
    pub fn coordinate(&self, axis: usize, i: usize) -> f64 {
        let h = (self.upper[axis] - self.lower[axis]) / self.cells[axis] as f64;
        self.lower[axis] + (i as f64 + 0.5) * h
    }
}

/// A mesh in two-point-flux form. Cells are numbered 0..n (active cells only).
///
/// Built by [`Mesh::grid`], [`Mesh::masked_grid`] or [`Mesh::from_parts`], which validate their
/// input, so every mesh has at least one cell, volumes finite and > 0, and faces joining two
/// distinct cells with finite positive area and distance. Immutable once built.
///
/// ```rust
/// use jko_core::Mesh;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // 3 × 4 cells on [0, 3] × [0, 2]: h = (1, 1/2), |K| = 1/2,
/// // 2·4 faces normal to axis 0 and 3·3 normal to axis 1.
/// let mesh = Mesh::grid(&[3, 4], &[0.0, 0.0], &[3.0, 2.0])?;
/// assert_eq!(mesh.n_cells(), 12);
/// assert_eq!(mesh.faces().len(), 2 * 4 + 3 * 3);
/// assert_eq!(mesh.domain_volume(), 6.0);
/// // Every cell is balanced by its faces: Σ_K (div G)_K = 0 for any flux.
/// let flux = ndarray::Array1::from_elem(mesh.faces().len(), 1.0);
/// assert_eq!(mesh.divergence(&flux).sum(), 0.0);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Mesh {
    dim: usize,
    volumes: Vec<f64>,
    /// Cell centres, `dim` coordinates per cell.
    centres: Vec<f64>,
    faces: Vec<Face>,
    /// Faces touching each cell: `cell_faces[cell_face_start[k]..cell_face_start[k+1]]`.
    cell_face_start: Vec<usize>,
    cell_faces: Vec<usize>,
    grid: Option<Grid>,
    /// For grids: grid index (C order) of each active cell.
    grid_index: Vec<usize>,
    /// For meshes read from a file: the cells' shapes (output and plots only).
    shapes: Option<Arc<CellShapes>>,
}

/// The kind of polygon or polyhedron every cell of a [`CellShapes`] is.
///
/// ```rust
/// use jko_core::CellKind;
///
/// assert_eq!(CellKind::Triangle.vtk_type(), 5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellKind {
    /// Triangles (3 points per cell).
    Triangle,
    /// Polygons with any number of points, in counter-clockwise order (Voronoi cells).
    Polygon,
    /// Tetrahedra: 4 points per tetrahedron, a cell listing those of its tetrahedra one after
    /// another (4·m points for a cell agglomerated from m co-spherical tetrahedra).
    Tetrahedron,
}

impl CellKind {
    /// The VTK cell type number (5 triangle, 7 polygon, 10 tetrahedron).
    ///
    /// ```rust
    /// use jko_core::CellKind;
    ///
    /// assert_eq!((CellKind::Polygon.vtk_type(), CellKind::Tetrahedron.vtk_type()), (7, 10));
    /// ```
    pub fn vtk_type(self) -> u8 {
        match self {
            CellKind::Triangle => 5,
            CellKind::Polygon => 7,
            CellKind::Tetrahedron => 10,
        }
    }
}

/// The geometry of a mesh's cells, for output (VTK unstructured grids) and plots: points and,
/// per cell, the indices of its corners. The two-point-flux data (volumes, centres, faces) is
/// what the backends use; this is only how the cells look.
///
/// ```rust
/// use jko_core::{CellKind, CellShapes};
///
/// // One triangle.
/// let shapes = CellShapes {
///     dim: 2,
///     points: vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0],
///     offsets: vec![0, 3],
///     connectivity: vec![0, 1, 2],
///     kind: CellKind::Triangle,
/// };
/// assert_eq!(shapes.cell(0), &[0, 1, 2]);
/// assert_eq!(shapes.point(1), &[1.0, 0.0]);
/// assert_eq!((shapes.n_cells(), shapes.n_points()), (1, 3));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CellShapes {
    /// Space dimension (coordinates per point).
    pub dim: usize,
    /// Point coordinates, `dim` per point.
    pub points: Vec<f64>,
    /// Cell k's corners are `connectivity[offsets[k]..offsets[k + 1]]` (n_cells + 1 entries).
    pub offsets: Vec<usize>,
    /// Point indices of the cells' corners.
    pub connectivity: Vec<usize>,
    /// What every cell is.
    pub kind: CellKind,
}

impl CellShapes {
    /// Number of cells.
    ///
    /// ```rust
    /// # use jko_core::{CellKind, CellShapes};
    /// let s = CellShapes { dim: 2, points: vec![], offsets: vec![0], connectivity: vec![], kind: CellKind::Polygon };
    /// assert_eq!(s.n_cells(), 0);
    /// ```
    pub fn n_cells(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Number of points.
    ///
    /// ```rust
    /// # use jko_core::{CellKind, CellShapes};
    /// let s = CellShapes { dim: 2, points: vec![0.0; 8], offsets: vec![0], connectivity: vec![], kind: CellKind::Polygon };
    /// assert_eq!(s.n_points(), 4);
    /// ```
    pub fn n_points(&self) -> usize {
        self.points.len() / self.dim.max(1)
    }

    /// Point indices of cell `k`'s corners.
    ///
    /// # Panics
    /// If `k ≥ n_cells()`.
    ///
    /// ```rust
    /// # use jko_core::{CellKind, CellShapes};
    /// let s = CellShapes { dim: 2, points: vec![0.0; 8], offsets: vec![0, 3, 6], connectivity: vec![0, 1, 2, 1, 3, 2], kind: CellKind::Triangle };
    /// assert_eq!(s.cell(1), &[1, 3, 2]);
    /// ```
    pub fn cell(&self, k: usize) -> &[usize] {
        &self.connectivity[self.offsets[k]..self.offsets[k + 1]]
    }

    /// Coordinates of point `i`.
    ///
    /// # Panics
    /// If `i ≥ n_points()`.
    ///
    /// ```rust
    /// # use jko_core::{CellKind, CellShapes};
    /// let s = CellShapes { dim: 2, points: vec![0.0, 1.0, 2.0, 3.0], offsets: vec![0], connectivity: vec![], kind: CellKind::Polygon };
    /// assert_eq!(s.point(1), &[2.0, 3.0]);
    /// ```
    pub fn point(&self, i: usize) -> &[f64] {
        &self.points[i * self.dim..(i + 1) * self.dim]
    }
}

/// Largest number of grid cells (active or not) a grid may have: 2^27 (keeps memory
/// estimates honest). Larger grids are rejected with [`InputError::TooLarge`].
pub const MAX_CELLS: usize = 1 << 27;

impl Mesh {
    /// A uniform Cartesian grid on the box [lower, upper] with `cells[a]` cells along axis `a`
    /// (1 to 3 axes). Cells are numbered in C order (the last axis varies fastest).
    ///
    /// # Errors
    /// [`InputError::InvalidMesh`] for 0 or more than 3 axes, an axis with zero cells, or a
    /// bound that is non-finite or has `lower ≥ upper`; [`InputError::ShapeMismatch`] when
    /// `lower` or `upper` do not have one entry per axis; [`InputError::TooLarge`] beyond
    /// [`MAX_CELLS`] cells.
    ///
    /// ```rust
    /// use jko_core::{InputError, Mesh};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[2, 2], &[0.0, 0.0], &[1.0, 1.0])?;
    /// assert_eq!(mesh.volumes(), &[0.25; 4]);
    /// assert!(matches!(
    ///     Mesh::grid(&[4], &[1.0], &[0.0]),
    ///     Err(InputError::InvalidMesh(_))
    /// ));
    /// assert!(matches!(
    ///     Mesh::grid(&[4], &[0.0, 0.0], &[1.0]),
    ///     Err(InputError::ShapeMismatch { .. })
    /// ));
    /// # Ok(())
    /// # }
    /// ```
    pub fn grid(cells: &[usize], lower: &[f64], upper: &[f64]) -> Result<Mesh, InputError> {
        Self::masked_grid(cells, lower, upper, None)
    }

    /// A uniform Cartesian grid restricted to the cells where `mask` is true (C order, one
    /// entry per grid cell). Faces between an active and an inactive cell become walls (no
    /// flux). `None` keeps every cell, as [`Mesh::grid`].
    ///
    /// # Errors
    /// Those of [`Mesh::grid`]; [`InputError::ShapeMismatch`] when `mask` does not have one
    /// entry per grid cell; [`InputError::InvalidMesh`] when the mask removes every cell.
    ///
    /// ```rust
    /// use jko_core::{InputError, Mesh};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // 2×2 grid without grid cell 1: the two faces touching it are walls.
    /// let mask = vec![true, false, true, true];
    /// let mesh = Mesh::masked_grid(&[2, 2], &[0.0, 0.0], &[1.0, 1.0], Some(mask))?;
    /// assert_eq!(mesh.n_cells(), 3);
    /// assert_eq!(mesh.faces().len(), 2);
    /// assert!(matches!(
    ///     Mesh::masked_grid(&[2], &[0.0], &[1.0], Some(vec![false, false])),
    ///     Err(InputError::InvalidMesh(_))
    /// ));
    /// # Ok(())
    /// # }
    /// ```
    pub fn masked_grid(
        cells: &[usize],
        lower: &[f64],
        upper: &[f64],
        mask: Option<Vec<bool>>,
    ) -> Result<Mesh, InputError> {
        let d = cells.len();
        if !(1..=3).contains(&d) {
            return Err(InputError::InvalidMesh(format!(
                "a grid has 1 to 3 axes, `cells` has {d}"
            )));
        }
        if lower.len() != d || upper.len() != d {
            return Err(InputError::ShapeMismatch {
                what: "mesh `cells`, `lower`, `upper`".into(),
                expected: format!("{d} entries each"),
                found: format!("cells: {d}, lower: {}, upper: {}", lower.len(), upper.len()),
            });
        }
        for a in 0..d {
            if cells[a] == 0 {
                return Err(InputError::InvalidMesh(format!("axis {a} has zero cells")));
            }
            if !lower[a].is_finite() || !upper[a].is_finite() {
                return Err(InputError::InvalidMesh(format!(
                    "axis {a} has a non-finite bound ({}, {})",
                    lower[a], upper[a]
                )));
            }
            if lower[a] >= upper[a] {
                return Err(InputError::InvalidMesh(format!(
                    "axis {a}: lower = {} must be below upper = {}",
                    lower[a], upper[a]
                )));
            }
        }
        let total = cells
            .iter()
            .try_fold(1usize, |acc, &c| acc.checked_mul(c))
            .filter(|&n| n <= MAX_CELLS)
            .ok_or_else(|| InputError::TooLarge {
                what: format!("a grid of {cells:?} cells"),
                bytes: cells
                    .iter()
                    .fold(1u64, |a, &c| a.saturating_mul(c as u64))
                    .saturating_mul(64),
                limit: MAX_CELLS as u64 * 64,
            })?;
        if let Some(m) = &mask
            && m.len() != total
        {
            return Err(InputError::ShapeMismatch {
                what: "cell mask".into(),
                expected: format!("{total} entries ({cells:?})"),
                found: format!("{}", m.len()),
            });
        }
        let grid = Grid {
            cells: cells.to_vec(),
            lower: lower.to_vec(),
            upper: upper.to_vec(),
            mask,
        };
        let h = grid.spacing();
        let volume: f64 = h.iter().product();
        let active = |i: usize| grid.mask.as_ref().is_none_or(|m| m[i]);
        let mut cell_of = vec![usize::MAX; total];
        let mut grid_index = Vec::new();
        for (i, c) in cell_of.iter_mut().enumerate() {
            if active(i) {
                *c = grid_index.len();
                grid_index.push(i);
            }
        }
        if grid_index.is_empty() {
            return Err(InputError::InvalidMesh(
                "the mask removes every cell".into(),
            ));
        }
        // C-order strides.
        let mut strides = vec![1usize; d];
        for a in (0..d.saturating_sub(1)).rev() {
            strides[a] = strides[a + 1] * cells[a + 1];
        }
        let mut centres = Vec::with_capacity(grid_index.len() * d);
        let mut faces = Vec::new();
        for &gi in &grid_index {
            let k = cell_of[gi];
            for a in 0..d {
                let ia = (gi / strides[a]) % cells[a];
                centres.push(grid.coordinate(a, ia));
                if ia + 1 < cells[a] {
                    let l = cell_of[gi + strides[a]];
                    if l != usize::MAX {
                        let area = volume / h[a];
                        faces.push(Face {
                            k,
                            l,
                            area,
                            distance: h[a],
                            axis: a,
                        });
                    }
                }
            }
        }
        let n = grid_index.len();
        let mut mesh = Mesh::assemble(d, vec![volume; n], centres, faces)?;
        mesh.grid = Some(grid);
        mesh.grid_index = grid_index;
        Ok(mesh)
    }

    /// A general two-point-flux mesh (e.g. a Voronoi mesh) from its parts: cell volumes |K|,
    /// cell centres (`dim` coordinates per cell, cell after cell) and the interior faces.
    /// The mesh has no grid structure ([`Mesh::as_grid`] is `None`).
    ///
    /// # Errors
    /// [`InputError::InvalidMesh`] when there is no cell, a volume is not finite and > 0, or a
    /// face joins a cell to itself or to a cell out of range, or has a non-finite or
    /// non-positive area or distance; [`InputError::ShapeMismatch`] when `centres` does not
    /// hold `dim` values per cell.
    ///
    /// ```rust
    /// use jko_core::{Face, InputError, Mesh};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Two cells of volumes 1 and 2 on a line, centres 0.5 and 2, one face between them.
    /// let face = Face { k: 0, l: 1, area: 1.0, distance: 1.5, axis: 0 };
    /// let mesh = Mesh::from_parts(1, vec![1.0, 2.0], vec![0.5, 2.0], vec![face])?;
    /// assert_eq!(mesh.domain_volume(), 3.0);
    /// assert!(mesh.as_grid().is_none());
    /// let loop_face = Face { k: 1, l: 1, ..face };
    /// assert!(matches!(
    ///     Mesh::from_parts(1, vec![1.0, 2.0], vec![0.5, 2.0], vec![loop_face]),
    ///     Err(InputError::InvalidMesh(_))
    /// ));
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_parts(
        dim: usize,
        volumes: Vec<f64>,
        centres: Vec<f64>,
        faces: Vec<Face>,
    ) -> Result<Mesh, InputError> {
        Self::assemble(dim, volumes, centres, faces)
    }

    fn assemble(
        dim: usize,
        volumes: Vec<f64>,
        centres: Vec<f64>,
        faces: Vec<Face>,
    ) -> Result<Mesh, InputError> {
        let n = volumes.len();
        if n == 0 {
            return Err(InputError::InvalidMesh("the mesh has no cells".into()));
        }
        if centres.len() != n * dim {
            return Err(InputError::ShapeMismatch {
                what: "mesh centres".into(),
                expected: format!("{} values ({n} cells x {dim})", n * dim),
                found: centres.len().to_string(),
            });
        }
        if let Some((i, v)) = volumes
            .iter()
            .enumerate()
            .find(|(_, v)| !(v.is_finite() && **v > 0.0))
        {
            return Err(InputError::InvalidMesh(format!(
                "cell {i} has volume {v}; volumes must be finite and > 0"
            )));
        }
        for (s, f) in faces.iter().enumerate() {
            if f.k >= n || f.l >= n || f.k == f.l {
                return Err(InputError::InvalidMesh(format!(
                    "face {s} joins cells {} and {} (mesh has {n} cells)",
                    f.k, f.l
                )));
            }
            if !(f.area > 0.0 && f.distance > 0.0 && f.area.is_finite() && f.distance.is_finite()) {
                return Err(InputError::InvalidMesh(format!(
                    "face {s} has area {} and distance {}; both must be finite and > 0",
                    f.area, f.distance
                )));
            }
        }
        let mut count = vec![0usize; n + 1];
        for f in &faces {
            count[f.k + 1] += 1;
            count[f.l + 1] += 1;
        }
        for k in 0..n {
            count[k + 1] += count[k];
        }
        let mut fill = count.clone();
        let mut cell_faces = vec![0usize; count[n]];
        for (s, f) in faces.iter().enumerate() {
            cell_faces[fill[f.k]] = s;
            fill[f.k] += 1;
            cell_faces[fill[f.l]] = s;
            fill[f.l] += 1;
        }
        Ok(Mesh {
            dim,
            volumes,
            centres,
            faces,
            cell_face_start: count,
            cell_faces,
            grid: None,
            grid_index: (0..n).collect(),
            shapes: None,
        })
    }

    /// The same mesh with its cells' shapes attached (for VTK output and plots; the backends
    /// do not use them).
    ///
    /// # Errors
    /// [`InputError::InvalidMesh`] when `shapes` does not have one cell per mesh cell, its
    /// dimension differs from the mesh's, or its offsets or point indices are out of range.
    ///
    /// ```rust
    /// use jko_core::{CellKind, CellShapes, Face, Mesh};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // The two triangles of the unit square split along its diagonal.
    /// let face = Face { k: 0, l: 1, area: 2f64.sqrt(), distance: 0.5, axis: 0 };
    /// let mesh = Mesh::from_parts(2, vec![0.5, 0.5], vec![0.6, 0.3, 0.3, 0.6], vec![face])?;
    /// let shapes = CellShapes {
    ///     dim: 2,
    ///     points: vec![0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0],
    ///     offsets: vec![0, 3, 6],
    ///     connectivity: vec![0, 1, 2, 0, 2, 3],
    ///     kind: CellKind::Triangle,
    /// };
    /// let mesh = mesh.with_shapes(shapes)?;
    /// assert_eq!(mesh.shapes().map(|s| s.cell(1).to_vec()), Some(vec![0, 2, 3]));
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_shapes(mut self, shapes: CellShapes) -> Result<Mesh, InputError> {
        let bad = |m: String| Err(InputError::InvalidMesh(m));
        if shapes.dim != self.dim || !shapes.points.len().is_multiple_of(self.dim.max(1)) {
            return bad(format!(
                "cell shapes of dimension {} ({} coordinates) for a {}D mesh",
                shapes.dim,
                shapes.points.len(),
                self.dim
            ));
        }
        if shapes.n_cells() != self.n_cells() || shapes.offsets.first() != Some(&0) {
            return bad(format!(
                "{} cell shapes for {} cells",
                shapes.n_cells(),
                self.n_cells()
            ));
        }
        if shapes.offsets.windows(2).any(|w| w[0] > w[1])
            || shapes.offsets.last() != Some(&shapes.connectivity.len())
        {
            return bad("cell shape offsets are not increasing up to the connectivity".into());
        }
        let np = shapes.n_points();
        if shapes.connectivity.iter().any(|&p| p >= np) {
            return bad(format!("a cell shape uses a point past the {np} points"));
        }
        self.shapes = Some(Arc::new(shapes));
        Ok(self)
    }

    /// The cells' shapes when the mesh has them (meshes read from a file), `None` otherwise.
    ///
    /// ```rust
    /// use jko_core::Mesh;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// assert!(Mesh::grid(&[2], &[0.0], &[1.0])?.shapes().is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn shapes(&self) -> Option<&CellShapes> {
        self.shapes.as_deref()
    }

    /// The shape of a cell-value array of this mesh as stored in files: the grid's `cells`
    /// for a grid, `[n_cells]` otherwise.
    ///
    /// ```rust
    /// use jko_core::{Face, Mesh};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// assert_eq!(Mesh::grid(&[3, 2], &[0.0; 2], &[1.0; 2])?.array_shape(), vec![3, 2]);
    /// let face = Face { k: 0, l: 1, area: 1.0, distance: 1.0, axis: 0 };
    /// let general = Mesh::from_parts(1, vec![1.0, 1.0], vec![0.5, 1.5], vec![face])?;
    /// assert_eq!(general.array_shape(), vec![2]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn array_shape(&self) -> Vec<usize> {
        match &self.grid {
            Some(g) => g.cells.clone(),
            None => vec![self.n_cells()],
        }
    }

    /// Cell values as the array written to files ([`Mesh::array_shape`]): grid-shaped with
    /// `fill` at inactive cells for a grid ([`Mesh::to_grid_array`]), the values themselves
    /// (one per cell, in cell order) otherwise.
    ///
    /// # Panics
    /// If `values` has fewer than [`Mesh::n_cells`] entries.
    ///
    /// ```rust
    /// use jko_core::{Face, Mesh};
    /// use ndarray::array;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let face = Face { k: 0, l: 1, area: 1.0, distance: 1.0, axis: 0 };
    /// let general = Mesh::from_parts(1, vec![1.0, 1.0], vec![0.5, 1.5], vec![face])?;
    /// assert_eq!(general.to_cell_array(&array![1.0, 2.0], 0.0).shape(), &[2]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn to_cell_array(&self, values: &Array1<f64>, fill: f64) -> ArrayD<f64> {
        match self.to_grid_array(values, fill) {
            Some(a) => a,
            None => values
                .slice(ndarray::s![..self.n_cells()])
                .to_owned()
                .into_dyn(),
        }
    }

    /// Cell values from an array of [`Mesh::array_shape`]: the inverse of
    /// [`Mesh::to_cell_array`] (for grids, [`Mesh::from_grid_array`]). `what` names the array
    /// in errors.
    ///
    /// # Errors
    /// [`InputError::ShapeMismatch`] when the array's shape is not the mesh's.
    ///
    /// ```rust
    /// use jko_core::{Face, InputError, Mesh};
    /// use ndarray::{ArrayD, IxDyn, array};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let face = Face { k: 0, l: 1, area: 1.0, distance: 1.0, axis: 0 };
    /// let general = Mesh::from_parts(1, vec![1.0, 1.0], vec![0.5, 1.5], vec![face])?;
    /// let a = ArrayD::from_shape_vec(IxDyn(&[2]), vec![3.0, 4.0])?;
    /// assert_eq!(general.from_cell_array("rho", &a)?, array![3.0, 4.0]);
    /// let wrong = ArrayD::zeros(IxDyn(&[3]));
    /// assert!(matches!(general.from_cell_array("rho", &wrong), Err(InputError::ShapeMismatch { .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_cell_array(
        &self,
        what: &str,
        array: &ArrayD<f64>,
    ) -> Result<Array1<f64>, InputError> {
        if self.grid.is_some() {
            return self.from_grid_array(what, array);
        }
        if array.shape() != [self.n_cells()] {
            return Err(InputError::ShapeMismatch {
                what: what.to_string(),
                expected: format!(
                    "[{}] (one value per mesh cell, in the mesh file's order)",
                    self.n_cells()
                ),
                found: format!("{:?}", array.shape()),
            });
        }
        Ok(Array1::from_iter(array.iter().copied()))
    }

    /// Number of (active) cells: the length of every density on this mesh.
    ///
    /// ```rust
    /// use jko_core::Mesh;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// assert_eq!(Mesh::grid(&[3, 2], &[0.0; 2], &[1.0; 2])?.n_cells(), 6);
    /// # Ok(())
    /// # }
    /// ```
    pub fn n_cells(&self) -> usize {
        self.volumes.len()
    }

    /// Space dimension d (number of coordinates of a centre).
    ///
    /// ```rust
    /// use jko_core::Mesh;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// assert_eq!(Mesh::grid(&[3, 2], &[0.0; 2], &[1.0; 2])?.dim(), 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Cell volumes |K| (length in 1D, area in 2D), one per cell.
    ///
    /// ```rust
    /// use jko_core::Mesh;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[2, 4], &[0.0; 2], &[1.0; 2])?;
    /// assert_eq!(mesh.volumes(), &[0.125; 8]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn volumes(&self) -> &[f64] {
        &self.volumes
    }

    /// Centre x_K of cell `k` (`dim` coordinates).
    ///
    /// # Panics
    /// If `k ≥ n_cells()`.
    ///
    /// ```rust
    /// use jko_core::Mesh;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // C order: cell 1 is the second cell along the last axis.
    /// let mesh = Mesh::grid(&[2, 2], &[0.0; 2], &[1.0; 2])?;
    /// assert_eq!(mesh.centre(1), &[0.25, 0.75]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn centre(&self, k: usize) -> &[f64] {
        &self.centres[k * self.dim..(k + 1) * self.dim]
    }

    /// All interior faces; a face flux has one entry per face, in this order.
    ///
    /// ```rust
    /// use jko_core::Mesh;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[3], &[0.0], &[3.0])?;
    /// let joined: Vec<(usize, usize)> = mesh.faces().iter().map(|f| (f.k, f.l)).collect();
    /// assert_eq!(joined, vec![(0, 1), (1, 2)]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn faces(&self) -> &[Face] {
        &self.faces
    }

    /// Indices (into [`Mesh::faces`]) of the faces touching cell `k`, in increasing order.
    ///
    /// # Panics
    /// If `k ≥ n_cells()`.
    ///
    /// ```rust
    /// use jko_core::Mesh;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[3], &[0.0], &[3.0])?;
    /// assert_eq!(mesh.faces_of(0), &[0]);
    /// assert_eq!(mesh.faces_of(1), &[0, 1]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn faces_of(&self, k: usize) -> &[usize] {
        &self.cell_faces[self.cell_face_start[k]..self.cell_face_start[k + 1]]
    }

    /// The grid structure when the mesh is a (masked) Cartesian grid, `None` for a mesh from
    /// [`Mesh::from_parts`].
    ///
    /// ```rust
    /// use jko_core::Mesh;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[4], &[0.0], &[2.0])?;
    /// assert_eq!(mesh.as_grid().map(|g| g.spacing()), Some(vec![0.5]));
    /// # Ok(())
    /// # }
    /// ```
    pub fn as_grid(&self) -> Option<&Grid> {
        self.grid.as_ref()
    }

    /// For grids: the grid index (C order) of each cell. For a mesh without grid structure it
    /// is the identity `0..n_cells()`.
    ///
    /// ```rust
    /// use jko_core::Mesh;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mask = vec![true, false, true, true];
    /// let mesh = Mesh::masked_grid(&[2, 2], &[0.0; 2], &[1.0; 2], Some(mask))?;
    /// assert_eq!(mesh.grid_index(), &[0, 2, 3]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn grid_index(&self) -> &[usize] {
        &self.grid_index
    }

    /// Total volume |Ω| = Σ_K |K| of the domain (active cells only).
    ///
    /// ```rust
    /// use jko_core::Mesh;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mask = vec![true, false, true, true];
    /// let mesh = Mesh::masked_grid(&[2, 2], &[0.0; 2], &[1.0; 2], Some(mask))?;
    /// assert_eq!(mesh.domain_volume(), 0.75);
    /// # Ok(())
    /// # }
    /// ```
    pub fn domain_volume(&self) -> f64 {
        self.volumes.iter().sum()
    }

    /// Mass M = Σ_K |K| ρ_K of a density given by its cell values ρ_K. `rho` should have
    /// [`Mesh::n_cells`] entries (extra or missing entries are ignored; [`crate::check_density`]
    /// rejects them).
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use ndarray::array;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[2], &[0.0], &[4.0])?; // |K| = 2
    /// assert_eq!(mesh.mass(&array![1.0, 3.0]), 8.0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn mass(&self, rho: &Array1<f64>) -> f64 {
        self.volumes
            .iter()
            .zip(rho.iter())
            .map(|(v, r)| v * r)
            .sum()
    }

    /// L1 distance Σ_K |K| |a_K − b_K| between two densities given by their cell values (the
    /// error measure of the tests, studies and reports; a relative error divides it by a mass).
    /// `a` and `b` must have [`Mesh::n_cells`] entries.
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use ndarray::array;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[2], &[0.0], &[4.0])?; // |K| = 2
    /// assert_eq!(mesh.l1_distance(&array![1.0, 3.0], &array![2.0, 0.5]), 2.0 * (1.0 + 2.5));
    /// # Ok(())
    /// # }
    /// ```
    pub fn l1_distance(&self, a: &Array1<f64>, b: &Array1<f64>) -> f64 {
        (0..self.n_cells())
            .map(|k| self.volumes[k] * (a[k] - b[k]).abs())
            .sum()
    }

    /// Smallest centre distance d_σ over all faces (the mesh size h on a uniform grid);
    /// `f64::INFINITY` for a mesh without faces.
    ///
    /// ```rust
    /// use jko_core::Mesh;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[4, 2], &[0.0; 2], &[1.0; 2])?;
    /// assert_eq!(mesh.min_distance(), 0.25);
    /// assert_eq!(Mesh::grid(&[1], &[0.0], &[1.0])?.min_distance(), f64::INFINITY);
    /// # Ok(())
    /// # }
    /// ```
    pub fn min_distance(&self) -> f64 {
        self.faces
            .iter()
            .map(|f| f.distance)
            .fold(f64::INFINITY, f64::min)
    }

    /// Cell values f(x_K) of a function of position, evaluated at the cell centres (a
    /// second-order approximation of the cell averages).
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use ndarray::array;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[4], &[0.0], &[1.0])?;
    /// assert_eq!(mesh.sample(|x| x[0]), array![0.125, 0.375, 0.625, 0.875]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn sample(&self, f: impl Fn(&[f64]) -> f64) -> Array1<f64> {
        Array1::from_iter((0..self.n_cells()).map(|k| f(self.centre(k))))
    }

    /// Divergence of a face flux: (div G)_K = Σ_{σ∋K} G_{K,σ}, with G oriented k → l.
    ///
    /// It is the net *mass* leaving cell K (not divided by |K|), so the discrete continuity
    /// equation reads |K| (ρ_K − ρⁿ_K) + (div G)_K = 0, and Σ_K (div G)_K = 0 for every flux.
    /// `flux` has one entry per face of [`Mesh::faces`].
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use ndarray::array;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Three cells, mass 1 moved from cell 0 to cell 1 across the first face.
    /// let mesh = Mesh::grid(&[3], &[0.0], &[3.0])?;
    /// assert_eq!(mesh.divergence(&array![1.0, 0.0]), array![1.0, -1.0, 0.0]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn divergence(&self, flux: &Array1<f64>) -> Array1<f64> {
        let mut div = Array1::zeros(self.n_cells());
        for (f, g) in self.faces.iter().zip(flux.iter()) {
            div[f.k] += g;
            div[f.l] -= g;
        }
        div
    }

    /// Discrete kinetic action Σ_σ G_σ² / (T_σ θ_σ(ρ)) with the arithmetic mean
    /// θ_σ = (ρ_K + ρ_L)/2; this approximates W²(ρⁿ, ρ) for the one-step scheme (docs/mathematics.md §2.1,
    /// with ρ the density at the end of the step). Faces with G_σ = 0 add 0; a face with
    /// G_σ ≠ 0 and θ_σ = 0 makes the action infinite.
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use ndarray::array;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Two unit cells, T_σ = 1, θ_σ = 1: the action of G = 1/2 is G² = 1/4.
    /// let mesh = Mesh::grid(&[2], &[0.0], &[2.0])?;
    /// assert_eq!(mesh.kinetic_action(&array![1.0, 1.0], &array![0.5]), 0.25);
    /// assert_eq!(mesh.kinetic_action(&array![0.0, 0.0], &array![0.5]), f64::INFINITY);
    /// # Ok(())
    /// # }
    /// ```
    pub fn kinetic_action(&self, rho: &Array1<f64>, flux: &Array1<f64>) -> f64 {
        self.faces
            .iter()
            .zip(flux.iter())
            .map(|(f, &g)| {
                let theta = 0.5 * (rho[f.k] + rho[f.l]);
                if g == 0.0 {
                    0.0
                } else {
                    g * g / (f.transmissibility() * theta.max(0.0))
                }
            })
            .sum()
    }

    /// Scatter cell values into an array of shape `cells` (inactive cells get `fill`).
    /// Returns `None` for meshes without grid structure.
    ///
    /// # Panics
    /// If `values` has fewer than [`Mesh::n_cells`] entries.
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use ndarray::array;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mask = vec![true, false, true, true];
    /// let mesh = Mesh::masked_grid(&[2, 2], &[0.0; 2], &[1.0; 2], Some(mask))?;
    /// let a = mesh.to_grid_array(&array![1.0, 2.0, 3.0], 0.0).ok_or("grid")?;
    /// assert_eq!(a.shape(), &[2, 2]);
    /// assert_eq!(a.as_slice(), Some(&[1.0, 0.0, 2.0, 3.0][..]));
    /// # Ok(())
    /// # }
    /// ```
    pub fn to_grid_array(&self, values: &Array1<f64>, fill: f64) -> Option<ArrayD<f64>> {
        let grid = self.grid.as_ref()?;
        let mut out = ArrayD::from_elem(IxDyn(&grid.cells), fill);
        let flat = out.as_slice_mut()?;
        for (k, &gi) in self.grid_index.iter().enumerate() {
            flat[gi] = values[k];
        }
        Some(out)
    }

    /// Gather cell values from an array of shape `cells` (values at inactive cells are
    /// ignored); the inverse of [`Mesh::to_grid_array`]. `what` names the array in errors.
    ///
    /// # Errors
    /// [`InputError::ShapeMismatch`] when the array's shape is not the grid's;
    /// [`InputError::InvalidMesh`] for a mesh without grid structure.
    ///
    /// ```rust
    /// use jko_core::{InputError, Mesh};
    /// use ndarray::{ArrayD, IxDyn, array};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mask = vec![true, false, true, true];
    /// let mesh = Mesh::masked_grid(&[2, 2], &[0.0; 2], &[1.0; 2], Some(mask))?;
    /// let a = ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![1.0, 9.0, 2.0, 3.0])?;
    /// assert_eq!(mesh.from_grid_array("rho", &a)?, array![1.0, 2.0, 3.0]);
    /// let wrong = ArrayD::zeros(IxDyn(&[4]));
    /// assert!(matches!(
    ///     mesh.from_grid_array("rho", &wrong),
    ///     Err(InputError::ShapeMismatch { .. })
    /// ));
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_grid_array(
        &self,
        what: &str,
        array: &ArrayD<f64>,
    ) -> Result<Array1<f64>, InputError> {
        let grid = self
            .grid
            .as_ref()
            .ok_or_else(|| InputError::InvalidMesh("the mesh has no grid structure".into()))?;
        if array.shape() != grid.cells.as_slice() {
            return Err(InputError::ShapeMismatch {
                what: what.to_string(),
                expected: format!("{:?} (mesh cells)", grid.cells),
                found: format!("{:?}", array.shape()),
            });
        }
        let standard = array.as_standard_layout();
        let flat = standard
            .as_slice()
            .ok_or_else(|| InputError::InvalidMesh("array is not contiguous".into()))?;
        Ok(Array1::from_iter(
            self.grid_index.iter().map(|&gi| flat[gi]),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_2d_faces_and_volumes() {
        let m = Mesh::grid(&[3, 4], &[0.0, 0.0], &[3.0, 2.0]).unwrap();
        assert_eq!(m.n_cells(), 12);
        // 2*4 faces normal to axis 0, 3*3 normal to axis 1
        assert_eq!(m.faces().len(), 2 * 4 + 3 * 3);
        assert!((m.volumes()[0] - 0.5).abs() < 1e-15);
        for f in m.faces() {
            let t = f.transmissibility();
            // T = h_other / h_axis
            let expect = if f.axis == 0 { 0.5 / 1.0 } else { 1.0 / 0.5 };
            assert!((t - expect).abs() < 1e-14);
        }
        assert_eq!(m.centre(0), &[0.5, 0.25]);
        assert_eq!(m.centre(1), &[0.5, 0.75]);
    }

    #[test]
    fn mask_removes_cells_and_faces() {
        let mask = vec![true, false, true, true];
        let m = Mesh::masked_grid(&[2, 2], &[0.0, 0.0], &[1.0, 1.0], Some(mask)).unwrap();
        assert_eq!(m.n_cells(), 3);
        // grid faces: (0,1) removed, (2,3) kept, (0,2) kept, (1,3) removed
        assert_eq!(m.faces().len(), 2);
        let rho = Array1::from(vec![1.0, 2.0, 3.0]);
        let a = m.to_grid_array(&rho, 0.0).unwrap();
        assert_eq!(a.as_slice().unwrap(), &[1.0, 0.0, 2.0, 3.0]);
        assert_eq!(m.from_grid_array("rho", &a).unwrap(), rho);
    }

    #[test]
    fn bad_grids_are_rejected() {
        assert!(Mesh::grid(&[4], &[0.0, 1.0], &[1.0]).is_err());
        assert!(Mesh::grid(&[4], &[1.0], &[1.0]).is_err());
        assert!(Mesh::grid(&[0], &[0.0], &[1.0]).is_err());
        assert!(Mesh::grid(&[2, 2, 2, 2], &[0.0; 4], &[1.0; 4]).is_err());
        assert!(Mesh::grid(&[1 << 20, 1 << 20], &[0.0; 2], &[1.0; 2]).is_err());
    }

    #[test]
    fn divergence_sums_to_zero() {
        let m = Mesh::grid(&[5, 3], &[0.0, 0.0], &[1.0, 1.0]).unwrap();
        let g = Array1::from_iter((0..m.faces().len()).map(|i| (i as f64).sin()));
        let div = m.divergence(&g);
        assert!(div.sum().abs() < 1e-12);
    }
}

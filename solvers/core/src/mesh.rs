//! Meshes in two-point-flux form.
//!
//! A mesh is what every backend needs and nothing more: cell volumes |K|, cell centres x_K and
//! the list of interior faces σ = K|L with area |σ| and centre distance d_σ, so that the
//! transmissibility is T_σ = |σ|/d_σ. Boundary faces carry no flux (no-flux walls), so they are
//! not stored. Cartesian grids in 1D–3D, optionally with a cell mask, keep their axis structure
//! ([`Grid`]) for backends that exploit it (tensor-product kernels); a general mesh can be built
//! from its parts with [`Mesh::from_parts`].

use crate::error::InputError;
use ndarray::{Array1, ArrayD, IxDyn};

/// An interior face σ = K|L, oriented from `k` to `l`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Face {
    pub k: usize,
    pub l: usize,
    /// Face measure |σ| (length in 2D, area in 3D, 1 in 1D).
    pub area: f64,
    /// Distance d_σ between the centres of K and L.
    pub distance: f64,
    /// Grid axis the face is normal to (0 for general meshes).
    pub axis: usize,
}

impl Face {
    /// T_σ = |σ| / d_σ.
    pub fn transmissibility(&self) -> f64 {
        self.area / self.distance
    }
}

/// Axis structure of a (masked) uniform Cartesian grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    /// Cells per axis (C order: the last axis varies fastest).
    pub cells: Vec<usize>,
    pub lower: Vec<f64>,
    pub upper: Vec<f64>,
    /// `mask[i]` is true when grid cell `i` (C order) belongs to the domain.
    pub mask: Option<Vec<bool>>,
}

impl Grid {
    /// Cell width along each axis.
    pub fn spacing(&self) -> Vec<f64> {
        (0..self.cells.len())
            .map(|a| (self.upper[a] - self.lower[a]) / self.cells[a] as f64)
            .collect()
    }

    /// Number of grid cells, active or not.
    pub fn len(&self) -> usize {
        self.cells.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Centre coordinate of cell `i` along `axis`.
    pub fn coordinate(&self, axis: usize, i: usize) -> f64 {
        let h = (self.upper[axis] - self.lower[axis]) / self.cells[axis] as f64;
        self.lower[axis] + (i as f64 + 0.5) * h
    }
}

/// A mesh in two-point-flux form. Cells are numbered 0..n (active cells only).
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
}

/// Largest number of cells a mesh may have (keeps memory estimates honest; ~ 2^27).
pub const MAX_CELLS: usize = 1 << 27;

impl Mesh {
    /// A uniform Cartesian grid on the box [lower, upper] with `cells[a]` cells along axis `a`.
    pub fn grid(cells: &[usize], lower: &[f64], upper: &[f64]) -> Result<Mesh, InputError> {
        Self::masked_grid(cells, lower, upper, None)
    }

    /// A uniform Cartesian grid restricted to the cells where `mask` is true (C order).
    /// Faces between an active and an inactive cell become walls (no flux).
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
                    .map(|&c| c as u64)
                    .product::<u64>()
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

    /// A general two-point-flux mesh (e.g. a Voronoi mesh) from its parts.
    /// `centres` holds `dim` coordinates per cell.
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
        })
    }

    /// Number of (active) cells.
    pub fn n_cells(&self) -> usize {
        self.volumes.len()
    }

    /// Space dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Cell volumes |K|.
    pub fn volumes(&self) -> &[f64] {
        &self.volumes
    }

    /// Centre of cell `k` (`dim` coordinates).
    pub fn centre(&self, k: usize) -> &[f64] {
        &self.centres[k * self.dim..(k + 1) * self.dim]
    }

    /// All interior faces.
    pub fn faces(&self) -> &[Face] {
        &self.faces
    }

    /// Indices of the faces touching cell `k`.
    pub fn faces_of(&self, k: usize) -> &[usize] {
        &self.cell_faces[self.cell_face_start[k]..self.cell_face_start[k + 1]]
    }

    /// The grid structure when the mesh is a (masked) Cartesian grid.
    pub fn as_grid(&self) -> Option<&Grid> {
        self.grid.as_ref()
    }

    /// For grids: the grid index (C order) of each cell.
    pub fn grid_index(&self) -> &[usize] {
        &self.grid_index
    }

    /// Total volume of the domain.
    pub fn domain_volume(&self) -> f64 {
        self.volumes.iter().sum()
    }

    /// Mass Σ_K |K| ρ_K of a density.
    pub fn mass(&self, rho: &Array1<f64>) -> f64 {
        self.volumes
            .iter()
            .zip(rho.iter())
            .map(|(v, r)| v * r)
            .sum()
    }

    /// Smallest centre distance over all faces (the mesh size h on a uniform grid).
    pub fn min_distance(&self) -> f64 {
        self.faces
            .iter()
            .map(|f| f.distance)
            .fold(f64::INFINITY, f64::min)
    }

    /// Cell values of a function of position.
    pub fn sample(&self, f: impl Fn(&[f64]) -> f64) -> Array1<f64> {
        Array1::from_iter((0..self.n_cells()).map(|k| f(self.centre(k))))
    }

    /// Divergence of a face flux: (div G)_K = Σ_{σ∋K} G_{K,σ}, with G oriented k → l.
    pub fn divergence(&self, flux: &Array1<f64>) -> Array1<f64> {
        let mut div = Array1::zeros(self.n_cells());
        for (f, g) in self.faces.iter().zip(flux.iter()) {
            div[f.k] += g;
            div[f.l] -= g;
        }
        div
    }

    /// Discrete kinetic action Σ_σ G_σ² / (T_σ θ_σ(ρ)) with the arithmetic mean θ_σ; this
    /// approximates W²(ρⁿ, ρ) for the one-step scheme. Faces with θ_σ = 0 and G_σ = 0 add 0.
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

    /// Scatter cell values into a grid-shaped array (inactive cells get `fill`).
    /// Returns `None` for meshes without grid structure.
    pub fn to_grid_array(&self, values: &Array1<f64>, fill: f64) -> Option<ArrayD<f64>> {
        let grid = self.grid.as_ref()?;
        let mut out = ArrayD::from_elem(IxDyn(&grid.cells), fill);
        let flat = out.as_slice_mut()?;
        for (k, &gi) in self.grid_index.iter().enumerate() {
            flat[gi] = values[k];
        }
        Some(out)
    }

    /// Gather cell values from a grid-shaped array (C order). Errors on a shape mismatch.
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

//! A 1D mesh seen as a line of cells: the ordering that quantile coordinates need.
//!
//! Quantile coordinates move mass along the line, so the cells must tile one interval
//! [e_0, e_n], consecutive cells must share a face (no wall inside the domain) and no face may
//! join non-consecutive cells. A masked 1D grid with holes, a 2D mesh or a 1D mesh with an
//! internal wall is refused with a message that says which.

use jko_core::{InputError, Mesh};

/// The cells of a 1D mesh in increasing order, with their edges.
///
/// ```rust
/// use jko_core::Mesh;
/// use jko_quantile::LineMesh;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::grid(&[4], &[0.0], &[2.0])?;
/// let line = LineMesh::new(&mesh)?;
/// assert_eq!(line.edges(), &[0.0, 0.5, 1.0, 1.5, 2.0]);
/// assert_eq!(line.domain(), (0.0, 2.0));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LineMesh {
    /// `order[j]` is the mesh cell at position j from the left.
    order: Vec<usize>,
    /// Cell edges e_0 < e_1 < … < e_n (n + 1 values).
    edges: Vec<f64>,
    /// Position of each mesh cell in the line (inverse of `order`).
    position: Vec<usize>,
}

impl LineMesh {
    /// Order the cells of a 1D mesh; errors on anything that is not one interval of cells.
    ///
    /// # Errors
    /// [`InputError::InvalidMesh`] for a mesh of dimension ≠ 1, a masked grid with holes, an
    /// internal wall, or faces between non-consecutive cells; the message says which.
    ///
    /// ```rust
    /// use jko_core::{InputError, Mesh};
    /// use jko_quantile::LineMesh;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let square = Mesh::grid(&[2, 2], &[0.0, 0.0], &[1.0, 1.0])?;
    /// assert!(matches!(LineMesh::new(&square), Err(InputError::InvalidMesh(_))));
    /// let holes = Mesh::masked_grid(&[3], &[0.0], &[3.0], Some(vec![true, false, true]))?;
    /// assert!(LineMesh::new(&holes).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(mesh: &Mesh) -> Result<Self, InputError> {
        if mesh.dim() != 1 {
            return Err(InputError::InvalidMesh(format!(
                "the quantile backend works on 1D meshes only (quantile coordinates need the cells \
                 in one line); this mesh is {}D",
                mesh.dim()
            )));
        }
        let n = mesh.n_cells();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| mesh.centre(a)[0].total_cmp(&mesh.centre(b)[0]));
        let mut position = vec![0; n];
        for (j, &k) in order.iter().enumerate() {
            position[k] = j;
        }
        let vol = mesh.volumes();
        let left = |k: usize| mesh.centre(k)[0] - 0.5 * vol[k];
        let right = |k: usize| mesh.centre(k)[0] + 0.5 * vol[k];
        let length = right(order[n - 1]) - left(order[0]);
        let mut edges = Vec::with_capacity(n + 1);
        edges.push(left(order[0]));
        for j in 0..n - 1 {
            let (a, b) = (order[j], order[j + 1]);
            let gap = left(b) - right(a);
            if gap.abs() > 1e-9 * length {
                return Err(InputError::InvalidMesh(format!(
                    "the quantile backend needs the cells of a 1D mesh to tile one interval; cells {a} \
                     and {b} are {} by {:e} (a masked grid with holes?)",
                    if gap > 0.0 {
                        "separated"
                    } else {
                        "overlapping"
                    },
                    gap.abs()
                )));
            }
            edges.push(0.5 * (right(a) + left(b)));
        }
        edges.push(right(order[n - 1]));
        if let Some(j) = edges.windows(2).position(|e| e[1] <= e[0]) {
            return Err(InputError::InvalidMesh(format!(
                "cell {} has an empty extent after ordering",
                order[j]
            )));
        }
        let mut joined = vec![false; n.saturating_sub(1)];
        for (s, f) in mesh.faces().iter().enumerate() {
            let (p, q) = (
                position[f.k].min(position[f.l]),
                position[f.k].max(position[f.l]),
            );
            if q != p + 1 {
                return Err(InputError::InvalidMesh(format!(
                    "face {s} joins cells {} and {}, which are not neighbours on the line",
                    f.k, f.l
                )));
            }
            joined[p] = true;
        }
        if let Some(p) = joined.iter().position(|&j| !j) {
            return Err(InputError::InvalidMesh(format!(
                "no face joins neighbouring cells {} and {}: a wall inside the domain splits it, \
                 which quantile coordinates cannot represent",
                order[p],
                order[p + 1]
            )));
        }
        Ok(LineMesh {
            order,
            edges,
            position,
        })
    }

    /// Number of cells.
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use jko_quantile::LineMesh;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// assert_eq!(LineMesh::new(&Mesh::grid(&[5], &[0.0], &[1.0])?)?.len(), 5);
    /// # Ok(())
    /// # }
    /// ```
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Always false: a mesh has at least one cell.
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use jko_quantile::LineMesh;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// assert!(!LineMesh::new(&Mesh::grid(&[1], &[0.0], &[1.0])?)?.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Cell edges e_0 < … < e_n.
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use jko_quantile::LineMesh;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let line = LineMesh::new(&Mesh::grid(&[2], &[-1.0], &[1.0])?)?;
    /// assert_eq!(line.edges(), &[-1.0, 0.0, 1.0]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn edges(&self) -> &[f64] {
        &self.edges
    }

    /// Mesh cell at position j from the left.
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use jko_quantile::LineMesh;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // On a grid the cells are already in order.
    /// let line = LineMesh::new(&Mesh::grid(&[3], &[0.0], &[1.0])?)?;
    /// assert_eq!(line.order(), &[0, 1, 2]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// Position on the line of mesh cell k (the inverse of [`LineMesh::order`]).
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use jko_quantile::LineMesh;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let line = LineMesh::new(&Mesh::grid(&[3], &[0.0], &[1.0])?)?;
    /// assert!((0..3).all(|k| line.order()[line.position(k)] == k));
    /// # Ok(())
    /// # }
    /// ```
    pub fn position(&self, k: usize) -> usize {
        self.position[k]
    }

    /// The domain [e_0, e_n].
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use jko_quantile::LineMesh;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let line = LineMesh::new(&Mesh::grid(&[8], &[-3.0], &[5.0])?)?;
    /// assert_eq!(line.domain(), (-3.0, 5.0));
    /// # Ok(())
    /// # }
    /// ```
    pub fn domain(&self) -> (f64, f64) {
        (self.edges[0], self.edges[self.edges.len() - 1])
    }

    /// Cell centres in line order (for interpolating cell values).
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use jko_quantile::LineMesh;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[2], &[0.0], &[1.0])?;
    /// assert_eq!(LineMesh::new(&mesh)?.centres(&mesh), vec![0.25, 0.75]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn centres(&self, mesh: &Mesh) -> Vec<f64> {
        self.order.iter().map(|&k| mesh.centre(k)[0]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jko_core::Face;

    #[test]
    fn grids_order_and_refusals() {
        let m = Mesh::grid(&[4], &[-1.0], &[1.0]).unwrap();
        let l = LineMesh::new(&m).unwrap();
        assert_eq!(l.edges(), &[-1.0, -0.5, 0.0, 0.5, 1.0]);
        let m2 = Mesh::grid(&[4, 4], &[0.0, 0.0], &[1.0, 1.0]).unwrap();
        let e = LineMesh::new(&m2).unwrap_err().to_string();
        assert!(e.contains("1D meshes only") && e.contains("2D"), "{e}");
        // Five cells of [0, 1], the active ones given by `mask`.
        let masked =
            |mask: [bool; 5]| Mesh::masked_grid(&[5], &[0.0], &[1.0], Some(mask.to_vec())).unwrap();
        let holes = masked([true, true, false, true, true]);
        let e = LineMesh::new(&holes).unwrap_err().to_string();
        assert!(e.contains("holes"), "{e}");
        // Masking only the ends leaves an interval: accepted.
        let ends = masked([false, true, true, true, false]);
        let (a, b) = LineMesh::new(&ends).unwrap().domain();
        assert!((a - 0.2).abs() < 1e-15 && (b - 0.8).abs() < 1e-15);
    }

    #[test]
    fn unordered_parts_and_internal_walls() {
        // Cells given right to left.
        let faces = vec![Face {
            k: 0,
            l: 1,
            area: 1.0,
            distance: 1.0,
            axis: 0,
        }];
        let m = Mesh::from_parts(1, vec![1.0, 1.0], vec![1.5, 0.5], faces).unwrap();
        let l = LineMesh::new(&m).unwrap();
        assert_eq!(l.order(), &[1, 0]);
        assert_eq!(l.position(0), 1);
        let wall = Mesh::from_parts(1, vec![1.0, 1.0], vec![1.5, 0.5], vec![]).unwrap();
        assert!(
            LineMesh::new(&wall)
                .unwrap_err()
                .to_string()
                .contains("wall")
        );
    }
}

//! `jko.Mesh`: Cartesian grids (1D–3D) with an optional cell mask and obstacles, and meshes
//! read from Gmsh files (triangles in 2D, tetrahedra in 3D) as the CLI's `[mesh] file` reads them.

use crate::convert::{cells_from_array, cells_to_py, from_json, py_to_json, Layout};
use crate::errors;
use jko::config::MeshConfig;
use jko::core::Mesh;
use ndarray::{Array1, Array2};
use numpy::{AllowTypeChange, IntoPyArray, PyArrayLikeDyn};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

/// A mesh in two-point-flux form: cell volumes, cell centres and interior faces.
///
/// Build one with ``Mesh.grid(cells, lower, upper, mask=None, obstacles=None)``,
/// ``Mesh.from_file(path, control_volumes="elements")`` (a Gmsh MSH 4.1 file) or
/// ``Mesh.from_config(dict)`` (the ``[mesh]`` table of a run config). Densities on a grid are
/// numpy arrays either of the grid's shape ``mesh.shape`` (C order; masked cells are ignored on
/// input and 0 on output) or flat over the active cells (length ``mesh.n_cells``); on a mesh
/// read from a file they are flat, one value per cell in ``centres``' order.
#[pyclass(name = "Mesh", module = "jko", frozen)]
pub struct PyMesh {
    pub inner: Arc<Mesh>,
}

impl PyMesh {
    /// The grid behind the mesh, or an `InputError` naming the grid-only getter `what` when
    /// the mesh was read from a file.
    fn grid_of(&self, py: Python<'_>, what: &str) -> PyResult<&jko::core::Grid> {
        self.inner.as_grid().ok_or_else(|| {
            errors::input(
                py,
                format!(
                    "Mesh.{what} exists only for grids; this mesh ({}) was read from a file: \
                     use mesh.centres and mesh.volumes (one row per cell), mesh.points and \
                     mesh.cells for its geometry",
                    self.describe()
                ),
            )
        })
    }

    /// "N triangles" / "N Voronoi cells" / "N tetrahedra" of a mesh read from a file.
    fn describe(&self) -> String {
        let n = self.inner.n_cells();
        match self.inner.shapes().map(|s| s.kind) {
            Some(jko::core::CellKind::Triangle) => format!("{n} triangles"),
            Some(jko::core::CellKind::Polygon) => format!("{n} Voronoi cells"),
            Some(jko::core::CellKind::Tetrahedron) => format!("{n} tetrahedra"),
            None => format!("{n} cells"),
        }
    }
}

#[pymethods]
impl PyMesh {
    /// A uniform Cartesian grid on the box ``[lower, upper]`` with ``cells[a]`` cells on axis a.
    ///
    /// Args:
    ///     cells: cells per axis (1 to 3 axes).
    ///     lower, upper: box corners, one value per axis.
    ///     mask: optional array of shape ``cells``; nonzero (or True) cells belong to the domain.
    ///         Faces between an active and a masked cell are walls (no flux).
    ///     obstacles: optional list of dicts removed from the domain, as in the TOML config:
    ///         ``{"kind": "disc", "center": [...], "radius": r}`` or
    ///         ``{"kind": "box", "lower": [...], "upper": [...]}``.
    ///
    /// Raises:
    ///     InputError: inconsistent lengths, empty or inverted box, mask of the wrong shape,
    ///         a mask that removes every cell.
    #[staticmethod]
    #[pyo3(signature = (cells, lower, upper, mask=None, obstacles=None))]
    fn grid(
        py: Python<'_>,
        cells: Vec<usize>,
        lower: Vec<f64>,
        upper: Vec<f64>,
        mask: Option<PyArrayLikeDyn<'_, f64, AllowTypeChange>>,
        obstacles: Option<Bound<'_, PyAny>>,
    ) -> PyResult<PyMesh> {
        let obstacles = match obstacles {
            None => Value::Array(vec![]),
            Some(o) => py_to_json(&o, "obstacles")?,
        };
        let config = serde_json::json!({
            "cells": cells, "lower": lower, "upper": upper, "obstacles": obstacles,
        });
        let config: MeshConfig = from_json(py, "mesh", config)?;
        let plain = config
            .build(Path::new("."))
            .map_err(|e| errors::from_run(py, e))?;
        let Some(mask) = mask else {
            return Ok(PyMesh {
                inner: Arc::new(plain),
            });
        };
        let mask = mask.as_array();
        if mask.shape() != cells.as_slice() {
            return Err(errors::from_input(
                py,
                jko::core::InputError::ShapeMismatch {
                    what: "mesh mask".into(),
                    expected: format!("shape {cells:?} (mesh cells)"),
                    found: format!("shape {:?}", mask.shape()),
                },
            ));
        }
        let standard = mask.as_standard_layout();
        let flat = standard.as_slice().unwrap_or(&[]);
        if let Some(i) = flat.iter().position(|v| !v.is_finite()) {
            return Err(errors::from_input(
                py,
                jko::core::InputError::NonFinite {
                    what: "mesh mask".into(),
                    index: i,
                    value: flat[i],
                },
            ));
        }
        // The obstacles' mask (if any) and the user's.
        let mut inside: Vec<bool> = flat.iter().map(|v| *v != 0.0).collect();
        if let Some(m) = plain.as_grid().and_then(|g| g.mask.as_ref()) {
            for (a, b) in inside.iter_mut().zip(m) {
                *a &= *b;
            }
        }
        let mesh = Mesh::masked_grid(&cells, &lower, &upper, Some(inside))
            .map_err(|e| errors::from_input(py, e))?;
        Ok(PyMesh {
            inner: Arc::new(mesh),
        })
    }

    /// A mesh read from a Gmsh MSH 4.1 file (ASCII or binary; what gmsh writes by default), as
    /// the CLI's ``[mesh] file = "..."`` reads it: its triangles (2D) or tetrahedra (3D) in
    /// two-point-flux form.
    ///
    /// Args:
    ///     path: the ``.msh`` file.
    ///     control_volumes: ``"elements"`` (default: the file's elements, centred at their
    ///         circumcentres; the mesh must be Delaunay with no obtuse boundary triangle) or
    ///         ``"voronoi"`` (2D: the Voronoi cells of the vertices, for any triangulation).
    ///
    /// Densities on such a mesh are flat arrays, one value per cell in the file's element
    /// order (``"elements"``) or vertex order (``"voronoi"``); the grid-only getters
    /// (``shape``, ``lower``, ``upper``, ``spacing``, ``axes``, ``mask``, ``grid_index``)
    /// raise ``InputError``.
    ///
    /// Raises:
    ///     InputError: the file cannot be read, is not MSH 4.1, has no triangles or
    ///         tetrahedra, or is a mesh that is not
    ///         admissible with ``"elements"`` (the message names the elements and suggests
    ///         ``"voronoi"``).
    ///     ConfigError: an unknown ``control_volumes``.
    #[staticmethod]
    #[pyo3(signature = (path, control_volumes=None))]
    fn from_file(
        py: Python<'_>,
        path: std::path::PathBuf,
        control_volumes: Option<String>,
    ) -> PyResult<PyMesh> {
        let mut config = serde_json::json!({ "file": path });
        // The only key a caller can get wrong here: name it in the error.
        let what = match control_volumes {
            Some(cv) => {
                config["control_volumes"] = Value::String(cv);
                "mesh (control_volumes)"
            }
            None => "mesh",
        };
        let config: MeshConfig = from_json(py, what, config)?;
        let mesh = config
            .build(Path::new("."))
            .map_err(|e| errors::from_run(py, e))?;
        Ok(PyMesh {
            inner: Arc::new(mesh),
        })
    }

    /// A mesh from the ``[mesh]`` table of a run config, as a dict (``cells``, ``lower``,
    /// ``upper``, optional ``obstacles`` and ``mask``, a ``.npy`` path relative to ``base``; or
    /// ``file`` and ``control_volumes``, the file relative to ``base``).
    #[staticmethod]
    #[pyo3(signature = (config, base=None))]
    fn from_config(
        py: Python<'_>,
        config: &Bound<'_, PyAny>,
        base: Option<std::path::PathBuf>,
    ) -> PyResult<PyMesh> {
        let config: MeshConfig = from_json(py, "mesh", py_to_json(config, "mesh")?)?;
        let base = base.unwrap_or_else(|| ".".into());
        let mesh = config.build(&base).map_err(|e| errors::from_run(py, e))?;
        Ok(PyMesh {
            inner: Arc::new(mesh),
        })
    }

    /// Number of active cells.
    #[getter]
    fn n_cells(&self) -> usize {
        self.inner.n_cells()
    }

    /// Space dimension.
    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    /// Cells per axis (the shape of grid-shaped arrays).
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.grid_of(py, "shape")?.cells)
    }

    /// Lower box corner.
    #[getter]
    fn lower(&self, py: Python<'_>) -> PyResult<Vec<f64>> {
        Ok(self.grid_of(py, "lower")?.lower.clone())
    }

    /// Upper box corner.
    #[getter]
    fn upper(&self, py: Python<'_>) -> PyResult<Vec<f64>> {
        Ok(self.grid_of(py, "upper")?.upper.clone())
    }

    /// Cell width along each axis.
    #[getter]
    fn spacing(&self, py: Python<'_>) -> PyResult<Vec<f64>> {
        Ok(self.grid_of(py, "spacing")?.spacing())
    }

    /// Cell volumes |K|, shape ``(n_cells,)``.
    #[getter]
    fn volumes<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        Array1::from(self.inner.volumes().to_vec())
            .into_pyarray(py)
            .into_any()
    }

    /// Cell centres, shape ``(n_cells, dim)``.
    #[getter]
    fn centres<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let m = &self.inner;
        let data: Vec<f64> = (0..m.n_cells())
            .flat_map(|k| m.centre(k).to_vec())
            .collect();
        let a = Array2::from_shape_vec((m.n_cells(), m.dim()), data)
            .map_err(|e| errors::raise(py, errors::Kind::Jko, e.to_string(), &[]))?;
        Ok(a.into_pyarray(py).into_any())
    }

    /// Cell-centre coordinates along each axis (a list of 1D arrays, for plotting).
    #[getter]
    fn axes<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let g = self.grid_of(py, "axes")?;
        Ok((0..g.cells.len())
            .map(|a| {
                Array1::from_iter((0..g.cells[a]).map(|i| g.coordinate(a, i)))
                    .into_pyarray(py)
                    .into_any()
            })
            .collect())
    }

    /// Boolean array of shape ``shape``, True for active cells (all True without a mask).
    #[getter]
    fn mask<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let g = self.grid_of(py, "mask")?;
        let values: Vec<bool> = match &g.mask {
            Some(m) => m.clone(),
            None => vec![true; g.len()],
        };
        let a = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&g.cells), values)
            .map_err(|e| errors::raise(py, errors::Kind::Jko, e.to_string(), &[]))?;
        Ok(a.into_pyarray(py).into_any())
    }

    /// Grid index (C order) of each active cell, shape ``(n_cells,)``.
    #[getter]
    fn grid_index<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.grid_of(py, "grid_index")?;
        Ok(
            Array1::from_iter(self.inner.grid_index().iter().map(|&i| i as i64))
                .into_pyarray(py)
                .into_any(),
        )
    }

    /// True for a Cartesian grid, False for a mesh read from a file.
    #[getter]
    fn is_grid(&self) -> bool {
        self.inner.as_grid().is_some()
    }

    /// Vertices of the cells of a mesh read from a file, shape ``(n_points, dim)`` (for
    /// plotting, e.g. matplotlib's ``tripcolor``); ``None`` on a grid.
    #[getter]
    fn points<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some(shapes) = self.inner.shapes() else {
            return Ok(None);
        };
        let data: Vec<f64> = (0..shapes.n_points())
            .flat_map(|i| shapes.point(i).to_vec())
            .collect();
        let a = Array2::from_shape_vec((shapes.n_points(), shapes.dim), data)
            .map_err(|e| errors::raise(py, errors::Kind::Jko, e.to_string(), &[]))?;
        Ok(Some(a.into_pyarray(py).into_any()))
    }

    /// The vertices (indices into ``points``) of each cell of a mesh read from a file, a list
    /// of lists (3 per triangle, 4 per tetrahedron, the polygon's corners in order for Voronoi
    /// cells); ``None`` on a grid.
    #[getter]
    fn cells(&self) -> Option<Vec<Vec<usize>>> {
        let shapes = self.inner.shapes()?;
        Some(
            (0..shapes.n_cells())
                .map(|k| shapes.cell(k).to_vec())
                .collect(),
        )
    }

    /// Total volume of the domain (active cells).
    #[getter]
    fn domain_volume(&self) -> f64 {
        self.inner.domain_volume()
    }

    /// Interior faces as a dict of arrays: ``k``, ``l`` (cells, oriented k -> l), ``area``,
    /// ``distance`` (between centres), ``axis``.
    fn faces<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let f = self.inner.faces();
        let d = PyDict::new(py);
        let ints = |g: &dyn Fn(&jko::core::Face) -> usize| {
            Array1::from_iter(f.iter().map(|x| g(x) as i64)).into_pyarray(py)
        };
        let floats = |g: &dyn Fn(&jko::core::Face) -> f64| {
            Array1::from_iter(f.iter().map(g)).into_pyarray(py)
        };
        d.set_item("k", ints(&|x| x.k))?;
        d.set_item("l", ints(&|x| x.l))?;
        d.set_item("area", floats(&|x| x.area))?;
        d.set_item("distance", floats(&|x| x.distance))?;
        d.set_item("axis", ints(&|x| x.axis))?;
        Ok(d)
    }

    /// Mass ``sum_K |K| rho_K`` of a density (grid-shaped or flat).
    fn mass(&self, py: Python<'_>, rho: PyArrayLikeDyn<'_, f64, AllowTypeChange>) -> PyResult<f64> {
        let (values, _) = cells_from_array(py, &self.inner, "density", rho.as_array())?;
        Ok(self.inner.mass(&values))
    }

    /// Grid-shaped array (masked cells = ``fill``) from values flat over the active cells.
    #[pyo3(signature = (values, fill=0.0))]
    fn to_grid<'py>(
        &self,
        py: Python<'py>,
        values: PyArrayLikeDyn<'py, f64, AllowTypeChange>,
        fill: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.grid_of(py, "to_grid")?;
        let (values, _) = cells_from_array(py, &self.inner, "values", values.as_array())?;
        if fill == 0.0 {
            return cells_to_py(py, &self.inner, values, Layout::Grid);
        }
        match self.inner.to_grid_array(&values, fill) {
            Some(a) => Ok(a.into_pyarray(py).into_any()),
            None => Err(errors::input(py, "the mesh has no grid structure")),
        }
    }

    /// Values flat over the active cells from a grid-shaped array.
    #[pyo3(name = "from_grid")]
    fn gather_grid<'py>(
        &self,
        py: Python<'py>,
        array: PyArrayLikeDyn<'py, f64, AllowTypeChange>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.grid_of(py, "from_grid")?;
        let (values, _) = cells_from_array(py, &self.inner, "array", array.as_array())?;
        cells_to_py(py, &self.inner, values, Layout::Flat)
    }

    fn __repr__(&self) -> String {
        let Some(g) = self.inner.as_grid() else {
            return format!(
                "<jko.Mesh read from a file: {}D, {}>",
                self.inner.dim(),
                self.describe()
            );
        };
        let masked = match &g.mask {
            Some(_) => format!(", {} active of {} cells", self.inner.n_cells(), g.len()),
            None => String::new(),
        };
        format!(
            "Mesh.grid(cells={:?}, lower={:?}, upper={:?}{masked})",
            g.cells, g.lower, g.upper
        )
    }
}

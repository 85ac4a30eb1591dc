//! `jko.Energy`: the energy functional, with the `[energy]` table's schema.

use crate::convert::{cells_from_array, from_json, py_to_json, to_py};
use crate::errors;
use crate::mesh::PyMesh;
use jko::config::EnergyConfig;
use jko::core::{Energy, Mesh, Potential};
use ndarray::ArrayD;
use numpy::{AllowTypeChange, IntoPyArray, PyArrayLikeDyn};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyInt};
use serde_json::{Map, Value};
use std::path::Path;

/// An energy F(rho) = beta ∫ rho log rho + ∫ rho^m/(m-1) + ∫ V rho + ½∬ W(x-y) rho rho,
/// optionally with the congestion bound rho <= max_density.
///
/// The keyword arguments are the keys of the ``[energy]`` table of a run config, so
/// ``Energy(**config["energy"])`` works:
///
/// Args:
///     entropy: beta > 0 in beta ∫ rho log rho.
///     porous: m > 1 in ∫ rho^m/(m-1), as a number or ``{"m": m}``.
///     potential: a dict as in the config, ``{"kind": "quadratic", "center": [...],
///         "stiffness": k}``, ``{"kind": "linear", "slope": s}``, ``{"kind": "quartic"}``,
///         ``{"kind": "double_well"}``, ``{"kind": "npy", "path": ...}``; or a numpy array of
///         cell values (grid-shaped or flat over the active cells of the mesh it is used on).
///     interaction: ``{"kind": "quadratic", "strength": s}`` or
///         ``{"kind": "gaussian", "strength": s, "width": w}`` (treated semi-implicitly).
///     max_density: congestion bound rho_max > 0.
///
/// Entropy + potential is the Fokker–Planck (KL) energy.
///
/// Raises:
///     InputError: a parameter out of range (beta <= 0, m <= 1, ...).
///     ConfigError: an unknown key or potential kind.
#[pyclass(name = "Energy", module = "jko", frozen)]
pub struct PyEnergy {
    config: EnergyConfig,
    /// Potential given as cell values (resolved against the mesh at use).
    cells: Option<ArrayD<f64>>,
}

impl PyEnergy {
    /// The engine's energy on `mesh` (paths of `npy` potentials relative to the working directory).
    pub fn build(&self, py: Python<'_>, mesh: &Mesh) -> PyResult<Energy> {
        let mut energy = self
            .config
            .build(mesh, Path::new("."))
            .map_err(|e| errors::from_run(py, e))?;
        if let Some(values) = &self.cells {
            let (v, _) = cells_from_array(py, mesh, "potential", values.view())?;
            jko::core::energy::check_finite("potential", v.as_slice().unwrap_or(&[]))
                .map_err(|e| errors::from_input(py, e))?;
            energy.potential = Some(Potential::Cells { values: v.to_vec() });
        }
        Ok(energy)
    }
}

#[pymethods]
impl PyEnergy {
    #[new]
    #[pyo3(signature = (*, entropy=None, porous=None, potential=None, interaction=None, max_density=None))]
    fn new(
        py: Python<'_>,
        entropy: Option<f64>,
        porous: Option<Bound<'_, PyAny>>,
        potential: Option<Bound<'_, PyAny>>,
        interaction: Option<Bound<'_, PyAny>>,
        max_density: Option<f64>,
    ) -> PyResult<PyEnergy> {
        let mut map = Map::new();
        let number = |name: &str, v: f64| -> PyResult<Value> {
            serde_json::Number::from_f64(v)
                .map(Value::Number)
                .ok_or_else(|| {
                    errors::input(py, format!("`{name}` = {v}: must be a finite number"))
                })
        };
        if let Some(b) = entropy {
            map.insert("entropy".into(), number("entropy", b)?);
        }
        if let Some(p) = porous {
            let v = if p.is_instance_of::<PyFloat>() || p.is_instance_of::<PyInt>() {
                let m: f64 = p.extract()?;
                serde_json::json!({ "m": number("porous", m)? })
            } else {
                py_to_json(&p, "porous")?
            };
            map.insert("porous".into(), v);
        }
        let mut cells = None;
        if let Some(p) = potential {
            if p.cast::<PyDict>().is_ok() {
                map.insert("potential".into(), py_to_json(&p, "potential")?);
            } else {
                let a: PyArrayLikeDyn<'_, f64, AllowTypeChange> = p.extract().map_err(|_| {
                    errors::config(
                        py,
                        "`potential` must be a dict like {\"kind\": \"quadratic\", ...} or an array of cell values",
                    )
                })?;
                cells = Some(a.as_array().to_owned());
            }
        }
        if let Some(w) = interaction {
            map.insert("interaction".into(), py_to_json(&w, "interaction")?);
        }
        if let Some(r) = max_density {
            map.insert("max_density".into(), number("max_density", r)?);
        }
        let config: EnergyConfig = from_json(py, "energy", Value::Object(map))?;
        // Check the scalar parameters now (the potential is checked against a mesh at use).
        let scalars = Energy {
            entropy: config.entropy,
            porous: config.porous.as_ref().map(|p| p.m),
            potential: None,
            interaction: config.interaction.clone(),
            max_density: config.max_density,
        };
        scalars.validate().map_err(|e| errors::from_input(py, e))?;
        Ok(PyEnergy { config, cells })
    }

    /// The discrete energy F_h(rho) on a mesh (interaction included), rho grid-shaped or flat.
    fn value(
        &self,
        py: Python<'_>,
        rho: PyArrayLikeDyn<'_, f64, AllowTypeChange>,
        mesh: &PyMesh,
    ) -> PyResult<f64> {
        let (values, _) = cells_from_array(py, &mesh.inner, "density", rho.as_array())?;
        jko::core::check_density(&mesh.inner, &values, "density")
            .map_err(|e| errors::from_input(py, e))?;
        let energy = self.build(py, &mesh.inner)?;
        energy
            .value(&mesh.inner, &values)
            .map_err(|e| errors::from_input(py, e))
    }

    /// Names of the terms present (``entropy``, ``porous``, ``potential``, ``interaction``,
    /// ``max_density``).
    #[getter]
    fn terms(&self) -> Vec<&'static str> {
        let c = &self.config;
        let mut t = Vec::new();
        if c.entropy.is_some() {
            t.push("entropy");
        }
        if c.porous.is_some() {
            t.push("porous");
        }
        if c.potential.is_some() || self.cells.is_some() {
            t.push("potential");
        }
        if c.interaction.is_some() {
            t.push("interaction");
        }
        if c.max_density.is_some() {
            t.push("max_density");
        }
        t
    }

    /// The energy as a dict of constructor arguments (a cell-value potential as an array).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let d = to_py(py, &self.config)?;
        if let Some(v) = &self.cells {
            d.set_item("potential", v.clone().into_pyarray(py))?;
        }
        Ok(d)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let mut parts = Vec::new();
        let v = serde_json::to_value(&self.config).unwrap_or(Value::Null);
        if let Value::Object(map) = v {
            for (k, v) in map {
                parts.push(format!(
                    "{k}={}",
                    crate::convert::json_to_py(py, &v)?.repr()?
                ));
            }
        }
        if let Some(c) = &self.cells {
            parts.push(format!("potential=<cell values, shape {:?}>", c.shape()));
        }
        Ok(format!("Energy({})", parts.join(", ")))
    }
}

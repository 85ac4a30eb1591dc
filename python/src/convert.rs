//! Conversions between Python objects and the engine's types.
//!
//! Configs and parameters go through JSON values: a Python dict becomes a `serde_json::Value`
//! and is deserialised into the engine's own serde types (`Config`, `SolverConfig`, ...), so the
//! Python API has exactly the TOML schema and the same error messages (unknown keys named).
//!
//! Densities are cell values: a numpy array either of the grid's shape (`mesh.shape`, masked
//! cells ignored on input and 0 on output) or flat over the active cells (`mesh.n_cells`).
//! Output arrays hand the engine's buffer to numpy without a copy when the layout allows
//! (flat, or grid-shaped without a mask); see [`cells_to_py`].

use crate::errors;
use jko::core::Mesh;
use ndarray::{Array1, ArrayD, ArrayViewD, IxDyn};
use numpy::{IntoPyArray, PyUntypedArray};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Number, Value};

/// Convert a Python object (dict, list, tuple, str, int, float, bool, None, os.PathLike, numpy
/// arrays and scalars) to JSON. `path` names the position for error messages.
pub fn py_to_json(obj: &Bound<'_, PyAny>, path: &str) -> PyResult<Value> {
    let py = obj.py();
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if obj.is_instance_of::<PyBool>() {
        return Ok(Value::Bool(obj.extract()?));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(v) = obj.extract::<i64>() {
            return Ok(Value::from(v));
        }
        if let Ok(v) = obj.extract::<u64>() {
            return Ok(Value::from(v));
        }
        return Err(errors::config(
            py,
            format!("`{path}`: integer {obj} is out of range"),
        ));
    }
    if obj.is_instance_of::<PyFloat>() {
        let v: f64 = obj.extract()?;
        return Number::from_f64(v).map(Value::Number).ok_or_else(|| {
            errors::input(
                py,
                format!("`{path}` = {v}: parameters must be finite numbers"),
            )
        });
    }
    if obj.is_instance_of::<PyString>() {
        return Ok(Value::String(obj.extract()?));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut map = Map::new();
        for (k, v) in d.iter() {
            let key: String = k.extract().map_err(|_| {
                errors::config(py, format!("`{path}`: keys must be strings, found {k:?}"))
            })?;
            let sub = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            map.insert(key, py_to_json(&v, &sub)?);
        }
        return Ok(Value::Object(map));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let mut items = Vec::new();
        for (i, v) in obj.try_iter()?.enumerate() {
            items.push(py_to_json(&v?, &format!("{path}[{i}]"))?);
        }
        return Ok(Value::Array(items));
    }
    // numpy arrays and scalars: their Python equivalent.
    if obj.is_instance_of::<PyUntypedArray>() || obj.hasattr("item")? && obj.hasattr("dtype")? {
        let plain = obj.call_method0("tolist")?;
        return py_to_json(&plain, path);
    }
    // pathlib.Path and other os.PathLike.
    if obj.hasattr("__fspath__")? {
        let s = obj.call_method0("__fspath__")?;
        return py_to_json(&s, path);
    }
    // Mappings and sequences that are not dict / list.
    if let Ok(items) = obj.call_method0("items") {
        let d = PyDict::new(py);
        for kv in items.try_iter()? {
            let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = kv?.extract()?;
            d.set_item(k, v)?;
        }
        return py_to_json(d.as_any(), path);
    }
    Err(errors::config(
        py,
        format!(
            "`{path}`: cannot use a value of type {} in a config (use dict, list, str, numbers, bool)",
            obj.get_type().name()?
        ),
    ))
}

/// Convert JSON to Python objects (dict, list, str, int, float, bool, None).
pub fn json_to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(json_to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let d = PyDict::new(py);
            for (k, v) in map {
                d.set_item(k, json_to_py(py, v)?)?;
            }
            d.into_any()
        }
    })
}

/// Serialise an engine value to Python through JSON.
pub fn to_py<'py, T: serde::Serialize>(py: Python<'py>, value: &T) -> PyResult<Bound<'py, PyAny>> {
    let v = serde_json::to_value(value)
        .map_err(|e| errors::raise(py, errors::Kind::Jko, e.to_string(), &[]))?;
    json_to_py(py, &v)
}

/// Deserialise a JSON value into an engine type; a failure is a `ConfigError` naming `what` and,
/// for a value of the wrong type, the key that holds it (serde_json's errors carry no path).
pub fn from_json<T: serde::de::DeserializeOwned>(
    py: Python<'_>,
    what: &str,
    v: Value,
) -> PyResult<T> {
    match serde_json::from_value::<T>(v.clone()) {
        Ok(t) => Ok(t),
        Err(e) => {
            let message = e.to_string();
            let path = culprit::<T>(&v, &message);
            Err(errors::config(
                py,
                if path.is_empty() {
                    format!("{what}: {message}")
                } else {
                    format!("{what}: `{}`: {message}", path.join("."))
                },
            ))
        }
    }
}

/// The key path of the value behind a deserialisation error: descend into the key whose removal
/// makes the error go away (or turn into "missing field" for that same key). Type errors are
/// reported while the key is visited, before missing keys are noticed, so removing any other key
/// leaves the error as it was.
fn culprit<T: serde::de::DeserializeOwned>(root: &Value, original: &str) -> Vec<String> {
    if !(original.starts_with("invalid type") || original.starts_with("invalid value")) {
        return Vec::new();
    }
    fn without(root: &Value, path: &[String]) -> Value {
        let mut v = root.clone();
        let mut node = &mut v;
        for (i, key) in path.iter().enumerate() {
            let Value::Object(map) = node else { break };
            if i + 1 == path.len() {
                map.remove(key);
                break;
            }
            match map.get_mut(key) {
                Some(next) => node = next,
                None => break,
            }
        }
        v
    }
    let mut path: Vec<String> = Vec::new();
    loop {
        let mut node = root;
        for key in &path {
            node = &node[key.as_str()];
        }
        let Value::Object(map) = node else { break };
        // Prefer a key whose removal makes the value parse; then a required key whose removal
        // turns the error into its own "missing field" (an enum tag like `kind` is read before
        // anything else, so its removal always does that: it comes last).
        let removal = |key: &String| {
            let mut p = path.clone();
            p.push(key.clone());
            serde_json::from_value::<T>(without(root, &p)).map_err(|e| e.to_string())
        };
        let next = map.keys().find(|key| removal(key).is_ok()).or_else(|| {
            map.keys().find(|key| {
                matches!(removal(key), Err(e) if e.starts_with(&format!("missing field `{key}`")))
            })
        });
        match next {
            Some(key) => path.push(key.clone()),
            None => break,
        }
    }
    path
}

/// How cell values were laid out by the caller, so results come back the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One value per active cell.
    Flat,
    /// Grid-shaped (`mesh.shape`), C order, masked cells 0.
    Grid,
}

/// Cell values from an array of the grid's shape or flat over the active cells.
pub fn cells_from_array(
    py: Python<'_>,
    mesh: &Mesh,
    what: &str,
    array: ArrayViewD<'_, f64>,
) -> PyResult<(Array1<f64>, Layout)> {
    let n = mesh.n_cells();
    let grid = mesh.as_grid();
    if let Some(g) = grid {
        if array.shape() == g.cells.as_slice() {
            let values = match array.as_slice() {
                // C-contiguous: gather straight from numpy's buffer.
                Some(flat) => Array1::from_iter(mesh.grid_index().iter().map(|&gi| flat[gi])),
                None => {
                    let standard = array.as_standard_layout();
                    let flat = standard.as_slice().unwrap_or(&[]);
                    Array1::from_iter(mesh.grid_index().iter().map(|&gi| flat[gi]))
                }
            };
            return Ok((values, Layout::Grid));
        }
    }
    if array.ndim() == 1 && array.len() == n {
        return Ok((array.iter().copied().collect(), Layout::Flat));
    }
    let expected = match grid {
        Some(g) if g.mask.is_some() => {
            format!("shape {:?} (the grid) or ({n},) (active cells)", g.cells)
        }
        Some(g) => format!("shape {:?} (the grid)", g.cells),
        None => format!("shape ({n},) (cells)"),
    };
    Err(errors::from_input(
        py,
        jko::core::InputError::ShapeMismatch {
            what: what.to_string(),
            expected,
            found: format!("shape {:?}", array.shape()),
        },
    ))
}

/// Cell values as a numpy array in the requested layout. Flat values, and grid values without a
/// mask, are handed to numpy without a copy (the buffer changes owner); a masked grid is
/// scattered into a zero-filled grid.
pub fn cells_to_py<'py>(
    py: Python<'py>,
    mesh: &Mesh,
    values: Array1<f64>,
    layout: Layout,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(match (layout, mesh.as_grid()) {
        (Layout::Grid, Some(g)) if g.mask.is_none() => values
            .into_shape_with_order(IxDyn(&g.cells))
            .map_err(|e| errors::raise(py, errors::Kind::Jko, e.to_string(), &[]))?
            .into_pyarray(py)
            .into_any(),
        (Layout::Grid, Some(_)) => match mesh.to_grid_array(&values, 0.0) {
            Some(a) => a.into_pyarray(py).into_any(),
            None => values.into_pyarray(py).into_any(),
        },
        _ => values.into_pyarray(py).into_any(),
    })
}

/// Stack frames (cell values) into one `[frames, *grid]` array (masked cells 0).
pub fn stack_frames(mesh: &Mesh, frames: &[Array1<f64>]) -> ArrayD<f64> {
    let (shape, index): (Vec<usize>, Vec<usize>) = match mesh.as_grid() {
        Some(g) => (g.cells.clone(), mesh.grid_index().to_vec()),
        None => (vec![mesh.n_cells()], (0..mesh.n_cells()).collect()),
    };
    let len: usize = shape.iter().product();
    let mut data = vec![0.0; frames.len() * len];
    for (f, frame) in frames.iter().enumerate() {
        let block = &mut data[f * len..(f + 1) * len];
        for (k, &gi) in index.iter().enumerate() {
            block[gi] = frame[k];
        }
    }
    let mut full = vec![frames.len()];
    full.extend(shape);
    ArrayD::from_shape_vec(IxDyn(&full), data).unwrap_or_else(|_| ArrayD::zeros(IxDyn(&[0])))
}

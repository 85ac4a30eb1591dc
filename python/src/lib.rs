//! # jko-python
//!
//! The PyO3 extension `jko._jko` behind the Python package `jko` (built with maturin; see
//! `python/pyproject.toml` and `scripts/setup-python.sh`). Everything goes through the engine's
//! public API: meshes and energies of `jko_core`, checked steps of [`jko::driver::Stepper`],
//! whole runs of [`jko::run`], and backends chosen by name through the registry
//! [`jko::backend::BACKENDS`] ([`jko::backend::SolverConfig`]), so a backend added to that
//! table is available here unchanged.
//!
//! - configs and solver parameters are Python dicts deserialised (through JSON) into the engine's
//!   serde types: one schema, the engine's error messages ([`convert`]);
//! - errors become a Python exception hierarchy rooted at `jko.JkoError` ([`errors`]);
//! - solves run with the GIL released (`Python::detach`); a whole run re-attaches between steps
//!   only to check for Ctrl-C and to call an optional progress callback.

mod convert;
mod energy;
mod errors;
mod exact;
mod mesh;
mod score;

use convert::{cells_from_array, cells_to_py, from_json, json_to_py, py_to_json, stack_frames};
use energy::PyEnergy;
use jko::backend::{self, SolverConfig};
use jko::config::{Checks, Config, Limits};
use jko::core::{StepOutput, WarmStart};
use jko::driver::{Observer, StepRecord, Stepper};
use jko::error::RunError;
use jko::plan::MemoryBudget;
use mesh::PyMesh;
use ndarray::Array1;
use numpy::{AllowTypeChange, IntoPyArray, PyArrayLikeDyn};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Numbers the temporary directories of `run(..., initial=array)` without `out`.
static SCRATCH: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A float64 C-order `.npy` file (format 1.0), as the engine's `read_npy` reads it.
fn write_npy(path: &Path, a: &ndarray::ArrayD<f64>) -> std::io::Result<()> {
    let shape = match a.shape() {
        [n] => format!("({n},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic (6) + version (2) + length (2) + header + newline: a multiple of 64 bytes.
    let pad = (64 - (10 + header.len() + 1) % 64) % 64;
    header.push_str(&" ".repeat(pad));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + 8 * a.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in a.iter() {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes)
}

/// Solver parameters `{"kind": solver, **params}` as the registry's `SolverConfig`.
fn solver_config(
    py: Python<'_>,
    solver: &str,
    params: Option<&Bound<'_, PyDict>>,
) -> PyResult<SolverConfig> {
    backend::find(solver).map_err(|e| errors::from_run(py, e))?;
    let mut map = match params {
        Some(p) => match py_to_json(p.as_any(), "")? {
            Value::Object(m) => m,
            _ => serde_json::Map::new(),
        },
        None => serde_json::Map::new(),
    };
    if map.contains_key("kind") {
        return Err(errors::config(
            py,
            "pass the backend as `solver=`, not as a `kind` parameter",
        ));
    }
    map.insert("kind".into(), Value::String(solver.to_string()));
    let config: SolverConfig = from_json(
        py,
        &format!("{solver} solver parameters"),
        Value::Object(map),
    )?;
    config.validate().map_err(|e| errors::from_run(py, e))?;
    Ok(config)
}

/// Step record as a dict (without `step` and `t`, which mean nothing for a lone step).
fn record_dict<'py>(py: Python<'py>, record: &StepRecord) -> PyResult<Bound<'py, PyDict>> {
    let v = serde_json::to_value(record)
        .map_err(|e| errors::raise(py, errors::Kind::Jko, e.to_string(), &[]))?;
    let d = json_to_py(py, &v)?.cast_into::<PyDict>()?;
    d.del_item("step")?;
    d.del_item("t")?;
    if !d.contains("notes")? {
        d.set_item("notes", PyList::empty(py))?;
    }
    Ok(d)
}

/// One JKO step: rho_next = argmin_rho W²(rho_prev, rho)/(2 tau) + F(rho), by the backend
/// ``solver`` (see ``jko.solvers()``), with the invariants of a run checked (mass, positivity,
/// max_density, JKO energy inequality).
///
/// Args:
///     rho: the density, a numpy array (or array-like) of the grid's shape ``mesh.shape`` or
///         flat over the active cells (``mesh.n_cells``). It is read, never modified.
///     tau: the time step, > 0.
///     energy: a ``jko.Energy``.
///     mesh: a ``jko.Mesh``.
///     solver: backend name (default ``"conic"``, which treats every energy term and mesh;
///         ``jko.solvers()`` lists the others).
///     warm: optional warm start, a dict with ``"rho"`` and/or ``"potential"`` arrays (e.g.
///         the previous step's ``rho_next`` and ``info["potential"]``), each of rho's shape and
///         finite; another key is an InputError.
///     checks: optional invariant tolerances, a dict with keys of the config's ``[checks]``
///         (``mass_rtol``, ``positivity_atol``, ``bound_rtol``, ``energy_rtol``).
///     **params: the backend's parameters, as in the config's ``[solver]`` table.
///
/// Returns:
///     ``(rho_next, info)``: rho_next in the layout of ``rho`` (a grid-shaped result has 0 on
///     masked cells; without a mask the engine's buffer is handed to numpy without a copy), and
///     a dict with the step record (``energy``, ``mass``, ``kinetic``, ``energy_slack``,
///     ``min_density``, ``max_density``, ``status``, ``iterations``, ``primal_residual``,
///     ``dual_residual``, ``wall_time``, ``notes``) plus ``solver``, ``objective``,
///     ``history`` (residual per iteration when recorded), and ``potential`` (the dual
///     potential, same layout as rho) / ``flux`` (per face) when the backend returns them.
///
/// Raises:
///     InputError: rho negative, non-finite, of zero mass or of the wrong shape; tau <= 0;
///         a parameter out of range. ConfigError: unknown solver or parameter.
///     SolverError (UnsupportedError, NotConvergedError, InvariantError): the backend could
///         not produce a valid step.
///
/// The GIL is released during the solve.
#[pyfunction]
#[pyo3(signature = (rho, tau, energy, mesh, solver="conic", *, warm=None, checks=None, **params))]
#[allow(clippy::too_many_arguments)]
fn step<'py>(
    py: Python<'py>,
    rho: PyArrayLikeDyn<'py, f64, AllowTypeChange>,
    tau: f64,
    energy: &PyEnergy,
    mesh: &PyMesh,
    solver: &str,
    warm: Option<Bound<'py, PyDict>>,
    checks: Option<Bound<'py, PyAny>>,
    params: Option<Bound<'py, PyDict>>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyDict>)> {
    let m = mesh.inner.clone();
    // The input is copied once into the engine's owned array (the core API takes
    // `&Array1<f64>`); the output is moved to numpy without a copy.
    let (rho, layout) = cells_from_array(py, &m, "density", rho.as_array())?;
    let energy = energy.build(py, &m)?;
    let config = solver_config(py, solver, params.as_ref())?;
    let checks: Checks = match checks {
        Some(c) => from_json(py, "checks", py_to_json(&c, "checks")?)?,
        None => Checks::default(),
    };
    let warm = match warm {
        None => None,
        Some(w) => {
            // A misspelt key would silently start cold: refuse it.
            for key in w.keys() {
                let key: String = key.extract().unwrap_or_else(|_| format!("{key}"));
                if key != "rho" && key != "potential" {
                    return Err(errors::input(
                        py,
                        format!("warm: unknown key `{key}`; known: rho, potential"),
                    ));
                }
            }
            let get = |key: &str| -> PyResult<Option<Array1<f64>>> {
                match w.get_item(key)? {
                    Some(v) if !v.is_none() => {
                        let a: PyArrayLikeDyn<'_, f64, AllowTypeChange> = v.extract()?;
                        let what = format!("warm[\"{key}\"]");
                        let (values, _) = cells_from_array(py, &m, &what, a.as_array())?;
                        if let Some(k) = values.iter().position(|v| !v.is_finite()) {
                            return Err(errors::input(
                                py,
                                format!("{what}: value {} at cell {k} is not finite", values[k]),
                            ));
                        }
                        Ok(Some(values))
                    }
                    _ => Ok(None),
                }
            };
            // The caller hands this backend its own previous result.
            Some(WarmStart {
                rho: get("rho")?,
                potential: get("potential")?,
                backend: config.name().to_string(),
            })
        }
    };
    let mass0 = m.mass(&rho);
    let result = py.detach(|| -> Result<(StepOutput, StepRecord), RunError> {
        let backend = config.build()?;
        let stepper = Stepper::new(&m, &energy, backend.as_ref(), tau, checks, mass0)?;
        // The step's memory against the environment's limit, as a run without [limits].
        if let Some(budget) = MemoryBudget::from_limits(&Limits::default())? {
            budget.check(backend.as_ref(), &m, &energy)?;
        }
        stepper.step(1, &rho, warm.as_ref())
    });
    let (out, record) = result.map_err(|e| errors::from_run(py, e))?;
    let info = record_dict(py, &record)?;
    info.set_item("solver", &out.info.solver)?;
    info.set_item("objective", out.info.objective)?;
    info.set_item(
        "history",
        Array1::from(out.info.history.clone()).into_pyarray(py),
    )?;
    if let Some(p) = out.potential {
        if p.len() == m.n_cells() {
            info.set_item("potential", cells_to_py(py, &m, p, layout)?)?;
        }
    }
    if let Some(f) = out.flux {
        info.set_item("flux", f.into_pyarray(py))?;
    }
    Ok((cells_to_py(py, &m, out.rho, layout)?, info))
}

/// Keeps every density of a run (the trajectory).
struct Frames(Vec<Array1<f64>>);

impl Observer for Frames {
    fn step(&mut self, _: &StepRecord, out: &StepOutput) -> Result<(), RunError> {
        self.0.push(out.rho.clone());
        Ok(())
    }
}

/// Calls the Python progress callback with each step record (re-attaching to Python).
struct Progress {
    callback: Py<PyAny>,
    error: Option<PyErr>,
}

impl Observer for Progress {
    fn step(&mut self, record: &StepRecord, _: &StepOutput) -> Result<(), RunError> {
        let result = Python::attach(|py| -> PyResult<()> {
            let v = serde_json::to_value(record)
                .map_err(|e| errors::raise(py, errors::Kind::Jko, e.to_string(), &[]))?;
            self.callback.call1(py, (json_to_py(py, &v)?,))?;
            Ok(())
        });
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                // Ctrl-C while the callback runs stops the run like Ctrl-C between steps: this
                // step is already written, and the run is recorded as interrupted (resumable).
                let interrupt = Python::attach(|py| {
                    e.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py)
                });
                self.error = Some(e);
                Err(if interrupt {
                    RunError::Interrupted(record.step)
                } else {
                    RunError::Observer("the progress callback raised an exception".into())
                })
            }
        }
    }
}

/// Records as columns: numbers become numpy arrays (int64 when every value is an integer),
/// anything else a list.
fn columns<'py>(py: Python<'py>, records: &[StepRecord]) -> PyResult<Bound<'py, PyDict>> {
    let rows: Vec<serde_json::Map<String, Value>> = records
        .iter()
        .filter_map(|r| match serde_json::to_value(r) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        })
        .collect();
    // Columns in the record's field order; `notes` is skipped when empty, so always add it.
    let mut keys: Vec<String> = Vec::new();
    for row in &rows {
        for k in row.keys() {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    if !keys.iter().any(|k| k == "notes") {
        keys.push("notes".into());
    }
    let d = PyDict::new(py);
    for key in keys {
        let values: Vec<Value> = rows
            .iter()
            .map(|r| match r.get(&key) {
                Some(v) => v.clone(),
                None if key == "notes" => Value::Array(vec![]),
                None => Value::Null,
            })
            .collect();
        if values.iter().all(|v| v.is_i64()) {
            let a: Array1<i64> = values.iter().filter_map(|v| v.as_i64()).collect();
            d.set_item(&key, a.into_pyarray(py))?;
        } else if values.iter().all(|v| v.is_number()) {
            let a: Array1<f64> = values.iter().filter_map(|v| v.as_f64()).collect();
            d.set_item(&key, a.into_pyarray(py))?;
        } else {
            d.set_item(&key, json_to_py(py, &Value::Array(values))?)?;
        }
    }
    Ok(d)
}

/// Run a config: the same as ``jko run CONFIG [--out DIR]``.
///
/// Args:
///     config: a path to a TOML config (relative paths in it are relative to the file), or a
///         dict with the config's tables (``mesh``, ``initial``, ``energy``, ``scheme``,
///         ``solver``, optional ``checks``; relative paths relative to ``base``, default the
///         working directory). ``jko.parse_config(jko.example("ou-1d"))`` is such a dict.
///     out: optional output directory: ``rho_NNNNN.npy`` per step, ``steps.jsonl`` and ``run.json``,
///         exactly as the CLI writes them.
///     solver, tau, steps: override the config (as ``--solver``, ``--tau``, ``--steps``).
///     resume: continue the run found in ``out`` (as ``--resume``).
///     force: overwrite a previous run in ``out`` (as ``--force``).
///     vtk: also write VTK files, a ``.vti`` per step and a ``.pvd`` series (as
///         ``--format npy,vtk``).
///     progress: optional callable receiving each step record (a dict) as it finishes.
///     initial: optional initial density, a numpy array of the mesh's shape (or flat over its
///         cells), instead of the config's ``initial`` (its mass is kept).
///     potential: optional potential V at the cell centres, an array like ``initial``, instead
///         of the config's ``energy.potential``. Both are written as ``initial.npy`` /
///         ``potential.npy`` in ``out`` (and named in its ``run.json``); without ``out``, in a
///         temporary directory removed after the run.
///
/// Returns:
///     ``(trajectory, records)``: trajectory is a float64 array of shape
///     ``(steps + 1, *mesh.shape)`` (step 0 is the initial density; masked cells 0), records a
///     dict of per-step columns (``step``, ``t``, ``energy``, ``mass``, ``kinetic``,
///     ``energy_slack``, ``min_density``, ``max_density``, ``iterations``, ... as numpy arrays;
///     ``status``, ``notes`` as lists).
///
/// Raises:
///     ConfigError, InputError, SolverError (and subclasses), OutputError; KeyboardInterrupt on
///     Ctrl-C (checked between steps; finished steps are saved in ``out``).
///
/// The GIL is released while steps are solved.
#[pyfunction]
#[pyo3(signature = (config, out=None, *, solver=None, tau=None, steps=None, resume=false, force=false, vtk=false, base=None, progress=None, initial=None, potential=None))]
#[allow(clippy::too_many_arguments)]
fn run<'py>(
    py: Python<'py>,
    config: &Bound<'py, PyAny>,
    out: Option<PathBuf>,
    solver: Option<String>,
    tau: Option<f64>,
    steps: Option<usize>,
    resume: bool,
    force: bool,
    vtk: bool,
    base: Option<PathBuf>,
    progress: Option<Py<PyAny>>,
    initial: Option<PyArrayLikeDyn<'py, f64, AllowTypeChange>>,
    potential: Option<PyArrayLikeDyn<'py, f64, AllowTypeChange>>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyDict>)> {
    let (mut cfg, base) = if config.cast::<PyDict>().is_ok() {
        let cfg: Config = from_json(py, "config", py_to_json(config, "")?)?;
        (cfg, base.unwrap_or_else(|| PathBuf::from(".")))
    } else {
        let path: PathBuf = config.extract().map_err(|_| {
            errors::config(py, "`config` must be a path (str or os.PathLike) or a dict")
        })?;
        let cfg = Config::from_file(&path).map_err(|e| errors::from_run(py, e))?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        (cfg, base.unwrap_or(dir))
    };
    cfg.solver = cfg
        .solver
        .overridden(solver.as_deref())
        .map_err(|e| errors::from_run(py, e))?;
    if let Some(t) = tau {
        cfg.scheme.tau = t;
    }
    if let Some(n) = steps {
        cfg.scheme.steps = n;
    }
    // Arrays given directly are written as .npy files (in `out`, so run.json names them and a
    // resume finds them; without `out`, in a temporary directory removed after the run) and
    // named in the config: one path into the engine for arrays and files.
    let scratch = if initial.is_some() || potential.is_some() {
        let (dir, scratch) = match &out {
            Some(o) => (o.clone(), None),
            None => {
                let d = std::env::temp_dir().join(format!(
                    "jko-run-{}-{}",
                    std::process::id(),
                    SCRATCH.fetch_add(1, Ordering::SeqCst)
                ));
                (d.clone(), Some(d))
            }
        };
        std::fs::create_dir_all(&dir).map_err(|e| errors::from_run(py, RunError::io(&dir, e)))?;
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        let mesh = cfg
            .mesh
            .build_with(&|p: &Path| jko::config::read_npy(&base.join(p)))
            .map_err(|e| errors::from_run(py, e))?;
        let write = |name: &str, a: &PyArrayLikeDyn<'py, f64, AllowTypeChange>| {
            let (cells, _) = cells_from_array(py, &mesh, name, a.as_array())?;
            let path = dir.join(format!("{name}.npy"));
            let grid = stack_frames(&mesh, std::slice::from_ref(&cells));
            write_npy(&path, &grid.index_axis(ndarray::Axis(0), 0).to_owned())
                .map_err(|e| errors::from_run(py, RunError::io(&path, e)))?;
            Ok::<_, PyErr>((path, cells))
        };
        if let Some(a) = &initial {
            let (path, cells) = write("initial", a)?;
            cfg.initial = jko::config::InitialConfig::Npy {
                path,
                mass: Some(mesh.mass(&cells)),
            };
        }
        if let Some(v) = &potential {
            let (path, _) = write("potential", v)?;
            cfg.energy.potential = Some(jko::config::PotentialConfig::Npy { path });
        }
        scratch
    } else {
        None
    };
    let opts = jko::RunOptions {
        out: out.clone(),
        resume,
        force,
        vtk,
    };
    let interrupted = AtomicBool::new(false);
    let signal: Mutex<Option<PyErr>> = Mutex::new(None);
    let stop = || {
        Python::attach(|py| match py.check_signals() {
            Ok(()) => false,
            Err(e) => {
                if let Ok(mut s) = signal.lock() {
                    *s = Some(e);
                }
                interrupted.store(true, Ordering::SeqCst);
                true
            }
        })
    };
    let mut frames = Frames(Vec::new());
    let mut progress = progress.map(|callback| Progress {
        callback,
        error: None,
    });
    let result = py.detach(|| -> Result<(jko::RunResult, Array1<f64>), RunError> {
        let problem = cfg.build(&base)?;
        let mut extra: Vec<&mut dyn Observer> = vec![&mut frames];
        if let Some(p) = progress.as_mut() {
            extra.push(p);
        }
        let result = jko::run(&cfg, &base, &opts, &mut extra, &stop)?;
        Ok((result, problem.initial))
    });
    if let Some(d) = scratch {
        let _ = std::fs::remove_dir_all(d);
    }
    if let Some(e) = progress.and_then(|p| p.error) {
        return Err(e);
    }
    if interrupted.load(Ordering::SeqCst) {
        if let Some(e) = signal.lock().ok().and_then(|mut s| s.take()) {
            return Err(e);
        }
    }
    let (result, initial) = result.map_err(|e| errors::from_run(py, e))?;
    let mesh = &result.mesh;
    // Steps finished before a resume are read back from the run directory.
    let first_new = result.records.len().saturating_sub(frames.0.len()) + 1;
    let mut all = Vec::with_capacity(result.records.len() + 1);
    if resume {
        let dir = out.as_deref().unwrap_or(Path::new("."));
        for n in 0..first_new {
            let path = dir.join(jko::output::step_file("rho", n));
            let arr = jko::config::read_npy(&path).map_err(|e| errors::from_run(py, e))?;
            all.push(
                mesh.from_grid_array("resumed density", &arr)
                    .map_err(|e| errors::from_input(py, e))?,
            );
        }
    } else {
        all.push(initial);
    }
    all.extend(frames.0);
    let trajectory = stack_frames(mesh, &all);
    Ok((
        trajectory.into_pyarray(py).into_any(),
        columns(py, &result.records)?,
    ))
}

/// The registered backends: a list of dicts with ``name``, ``summary``, ``treats`` (energy
/// terms), ``energy_inequality`` (whether F(rho+) + W²/(2 tau) <= F(rho) is checked as a
/// theorem) and ``defaults`` (default parameters).
#[pyfunction]
fn solvers<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for b in backend::BACKENDS {
        let solver = b.defaults().build().map_err(|e| errors::from_run(py, e))?;
        let d = PyDict::new(py);
        d.set_item("name", b.name)?;
        d.set_item("summary", b.summary)?;
        d.set_item("treats", backend::treated_terms(solver.as_ref()))?;
        d.set_item("meshes", backend::supported_meshes(solver.as_ref()))?;
        d.set_item("energy_inequality", solver.satisfies_energy_inequality())?;
        d.set_item("proximal", b.proximal)?;
        d.set_item("defaults", json_to_py(py, &Value::Object(b.parameters()))?)?;
        list.append(d)?;
    }
    Ok(list)
}

/// The TOML text of a built-in example config (``ou-1d``, ``ou-2d``, ...; see ``examples()``).
#[pyfunction]
fn example(py: Python<'_>, name: &str) -> PyResult<&'static str> {
    jko::examples::example(name).ok_or_else(|| {
        let names: Vec<&str> = jko::examples::EXAMPLES.iter().map(|e| e.0).collect();
        errors::config(
            py,
            format!("unknown example `{name}`; examples: {}", names.join(", ")),
        )
    })
}

/// The built-in examples: a dict name -> description.
#[pyfunction]
fn examples<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (name, description, _) in jko::examples::EXAMPLES {
        d.set_item(name, description)?;
    }
    Ok(d)
}

/// Parse TOML config text into a dict (validated against the config schema: unknown keys,
/// missing keys and wrong types raise ConfigError naming the key). ``run`` accepts the dict.
#[pyfunction]
fn parse_config<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    let cfg = Config::from_toml(text).map_err(|e| errors::from_run(py, e))?;
    convert::to_py(py, &cfg)
}

/// The PyO3 extension module `jko._jko`; the Python package `jko` re-exports it.
#[pymodule]
mod _jko {
    #[pymodule_export]
    use super::{example, examples, parse_config, run, solvers, step, PyEnergy, PyMesh};
    #[pymodule_export]
    use crate::exact::exact;
    #[pymodule_export]
    use crate::score::{distance, score};
    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        crate::errors::register(m)?;
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}

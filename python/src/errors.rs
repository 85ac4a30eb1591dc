//! The Python exception hierarchy and the mapping from the engine's typed errors.
//!
//! ```text
//! JkoError(Exception)
//! ├── InputError(JkoError, ValueError)      bad mesh, density, energy, tau, parameters
//! │   └── ConfigError(InputError)           a config (dict, TOML, solver parameters) that does not parse
//! ├── SolverError(JkoError, RuntimeError)   a backend could not produce a step
//! │   ├── UnsupportedError(SolverError)     the backend does not treat an energy term
//! │   ├── NotConvergedError(SolverError)    the backend stopped without converging
//! │   └── InvariantError(SolverError)       a step broke mass / positivity / bound / energy inequality
//! └── OutputError(JkoError, OSError)        a file could not be read or written
//! ```
//!
//! The classes are built with `type(name, bases, ns)` at import, so the ones that are also
//! `ValueError`, `RuntimeError` or `OSError` can be caught as such. The message is the engine's
//! own (`Display` of the Rust error); step errors carry the step number as `.step`.

use jko::core::{InputError, StepError};
use jko::error::RunError;
use pyo3::exceptions::{PyException, PyKeyboardInterrupt, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use pyo3::IntoPyObjectExt;

/// Which Python class an error maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Jko,
    Input,
    Config,
    Solver,
    Unsupported,
    NotConverged,
    Invariant,
    Output,
}

/// The Python built-in exception a class also derives from.
#[derive(Clone, Copy)]
enum Builtin {
    Exception,
    ValueError,
    RuntimeError,
    OSError,
}

/// One class: its kind, its name, its parent in the hierarchy, the built-in it also is, its
/// docstring.
type Class = (
    Kind,
    &'static str,
    Option<Kind>,
    Option<Builtin>,
    &'static str,
);

/// The hierarchy, parents before children, in the order of [`Kind`] (which indexes it).
const HIERARCHY: [Class; 8] = [
    (
        Kind::Jko,
        "JkoError",
        None,
        Some(Builtin::Exception),
        "Base class of every error raised by jko; the message is the engine's.",
    ),
    (
        Kind::Input,
        "InputError",
        Some(Kind::Jko),
        Some(Builtin::ValueError),
        "Invalid input: mesh, density (negative, non-finite, wrong shape, zero mass), \
         energy parameters, time step, solver parameters.",
    ),
    (
        Kind::Config,
        "ConfigError",
        Some(Kind::Input),
        None,
        "A run config or solver parameter set that does not parse (unknown key or solver, \
         missing key, wrong type).",
    ),
    (
        Kind::Solver,
        "SolverError",
        Some(Kind::Jko),
        Some(Builtin::RuntimeError),
        "A backend could not produce a JKO step.",
    ),
    (
        Kind::Unsupported,
        "UnsupportedError",
        Some(Kind::Solver),
        None,
        "The chosen backend does not treat a term of the energy (see jko.solvers()).",
    ),
    (
        Kind::NotConverged,
        "NotConvergedError",
        Some(Kind::Solver),
        None,
        "The backend stopped without converging; a non-converged step is never returned.",
    ),
    (
        Kind::Invariant,
        "InvariantError",
        Some(Kind::Solver),
        None,
        "A step violated an invariant checked after every step (mass, positivity, \
         max_density, JKO energy inequality); attributes what, value, limit.",
    ),
    (
        Kind::Output,
        "OutputError",
        Some(Kind::Jko),
        Some(Builtin::OSError),
        "A file could not be read or written (run directory, .npy input).",
    ),
];

/// The classes, indexed by [`Kind`].
static CLASSES: PyOnceLock<Vec<Py<PyType>>> = PyOnceLock::new();

fn make_class<'py>(
    py: Python<'py>,
    name: &str,
    bases: Vec<Bound<'py, PyType>>,
    doc: &str,
) -> PyResult<Bound<'py, PyType>> {
    let ns = PyDict::new(py);
    ns.set_item("__module__", "jko")?;
    ns.set_item("__doc__", doc)?;
    let bases = PyTuple::new(py, bases)?;
    let ty = py.get_type::<PyType>().call1((name, bases, ns))?;
    Ok(ty.cast_into::<PyType>()?)
}

fn classes(py: Python<'_>) -> PyResult<&Vec<Py<PyType>>> {
    CLASSES.get_or_try_init(py, || {
        let mut built: Vec<Bound<'_, PyType>> = Vec::with_capacity(HIERARCHY.len());
        for (kind, name, parent, builtin, doc) in HIERARCHY {
            debug_assert_eq!(
                kind as usize,
                built.len(),
                "HIERARCHY is in the order of Kind"
            );
            let mut bases: Vec<_> = parent
                .map(|p| built[p as usize].clone())
                .into_iter()
                .collect();
            bases.extend(builtin.map(|b| match b {
                Builtin::Exception => py.get_type::<PyException>(),
                Builtin::ValueError => py.get_type::<PyValueError>(),
                Builtin::RuntimeError => py.get_type::<PyRuntimeError>(),
                Builtin::OSError => py.get_type::<PyOSError>(),
            }));
            built.push(make_class(py, name, bases, doc)?);
        }
        Ok::<_, PyErr>(built.into_iter().map(Bound::unbind).collect())
    })
}

/// Add the exception classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    for ((_, name, ..), ty) in HIERARCHY.iter().zip(classes(py)?) {
        m.add(*name, ty.bind(py))?;
    }
    Ok(())
}

/// An exception of class `kind` with `message` and extra attributes.
pub fn raise(py: Python<'_>, kind: Kind, message: String, attrs: &[(&str, Py<PyAny>)]) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let ty = &classes(py)?[kind as usize];
        let value = ty.bind(py).call1((message.clone(),))?;
        for (name, v) in attrs {
            value.setattr(*name, v.bind(py))?;
        }
        Ok(PyErr::from_value(value))
    };
    // Building the exception can only fail if Python itself is in trouble; keep that error.
    build().unwrap_or_else(|e| e)
}

/// Shorthand: an `InputError` with a message.
pub fn input(py: Python<'_>, message: impl Into<String>) -> PyErr {
    raise(py, Kind::Input, message.into(), &[])
}

/// Shorthand: a `ConfigError` with a message.
pub fn config(py: Python<'_>, message: impl Into<String>) -> PyErr {
    raise(py, Kind::Config, message.into(), &[])
}

pub fn from_input(py: Python<'_>, e: InputError) -> PyErr {
    input(py, e.to_string())
}

fn step_kind(e: &StepError) -> Kind {
    match e {
        StepError::Input(_) => Kind::Input,
        StepError::Unsupported { .. } | StepError::UnsupportedMesh { .. } => Kind::Unsupported,
        StepError::NotConverged { .. } => Kind::NotConverged,
        StepError::Numerical { .. } => Kind::Solver,
    }
}

fn attr<'py, T: IntoPyObjectExt<'py>>(
    py: Python<'py>,
    name: &'static str,
    v: T,
) -> Option<(&'static str, Py<PyAny>)> {
    v.into_py_any(py).ok().map(|v| (name, v))
}

fn step_attrs(py: Python<'_>, e: &StepError) -> Vec<(&'static str, Py<PyAny>)> {
    match e {
        StepError::NotConverged {
            iterations,
            primal_residual,
            dual_residual,
            history,
            ..
        } => [
            attr(py, "iterations", *iterations),
            attr(py, "primal_residual", *primal_residual),
            attr(py, "dual_residual", *dual_residual),
            attr(py, "history", history.clone()),
        ]
        .into_iter()
        .flatten()
        .collect(),
        _ => Vec::new(),
    }
}

/// The engine's run-directory messages name the CLI's flags; a Python user passes arguments.
fn python_words(message: &str) -> String {
    message
        .replace("--out DIR", "out=DIR")
        .replace("another --out", "another out")
        .replace("--resume", "resume=True")
        .replace("--force", "force=True")
}

/// Map an engine error to its Python exception (the message is the engine's `Display`, with
/// the run-directory flags in Python's words).
pub fn from_run(py: Python<'_>, e: RunError) -> PyErr {
    let message = e.to_string();
    match &e {
        RunError::Config { .. } | RunError::Toml { .. } | RunError::UnknownBackend { .. } => {
            raise(py, Kind::Config, message, &[])
        }
        RunError::OutputExists(_) | RunError::Resume(_) | RunError::OutputDir { .. } => {
            raise(py, Kind::Config, python_words(&message), &[])
        }
        RunError::Input(_) => raise(py, Kind::Input, message, &[]),
        RunError::Npy { .. } => raise(py, Kind::Input, message, &[]),
        RunError::Io { .. } | RunError::Json { .. } => raise(py, Kind::Output, message, &[]),
        RunError::Solver(s) => raise(py, step_kind(s), message, &step_attrs(py, s)),
        RunError::Step { step, source } => {
            let mut attrs = step_attrs(py, source);
            attrs.extend(attr(py, "step", *step));
            raise(py, step_kind(source), message, &attrs)
        }
        RunError::Invariant {
            step,
            what,
            value,
            limit,
        } => {
            let attrs: Vec<_> = [
                attr(py, "step", *step),
                attr(py, "what", what.clone()),
                attr(py, "value", *value),
                attr(py, "limit", *limit),
            ]
            .into_iter()
            .flatten()
            .collect();
            raise(py, Kind::Invariant, message, &attrs)
        }
        RunError::Interrupted(_) => PyKeyboardInterrupt::new_err(message),
        #[allow(unreachable_patterns)]
        _ => raise(py, Kind::Jko, message, &[]),
    }
}

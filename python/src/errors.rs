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

struct Classes {
    jko: Py<PyType>,
    input: Py<PyType>,
    config: Py<PyType>,
    solver: Py<PyType>,
    unsupported: Py<PyType>,
    not_converged: Py<PyType>,
    invariant: Py<PyType>,
    output: Py<PyType>,
}

static CLASSES: PyOnceLock<Classes> = PyOnceLock::new();

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

fn classes(py: Python<'_>) -> PyResult<&Classes> {
    CLASSES.get_or_try_init(py, || {
        let jko = make_class(
            py,
            "JkoError",
            vec![py.get_type::<PyException>()],
            "Base class of every error raised by jko; the message is the engine's.",
        )?;
        let input = make_class(
            py,
            "InputError",
            vec![jko.clone(), py.get_type::<PyValueError>()],
            "Invalid input: mesh, density (negative, non-finite, wrong shape, zero mass), \
             energy parameters, time step, solver parameters.",
        )?;
        let config = make_class(
            py,
            "ConfigError",
            vec![input.clone()],
            "A run config or solver parameter set that does not parse (unknown key or solver, \
             missing key, wrong type).",
        )?;
        let solver = make_class(
            py,
            "SolverError",
            vec![jko.clone(), py.get_type::<PyRuntimeError>()],
            "A backend could not produce a JKO step.",
        )?;
        let unsupported = make_class(
            py,
            "UnsupportedError",
            vec![solver.clone()],
            "The chosen backend does not treat a term of the energy (see jko.solvers()).",
        )?;
        let not_converged = make_class(
            py,
            "NotConvergedError",
            vec![solver.clone()],
            "The backend stopped without converging; a non-converged step is never returned.",
        )?;
        let invariant = make_class(
            py,
            "InvariantError",
            vec![solver.clone()],
            "A step violated an invariant checked after every step (mass, positivity, \
             max_density, JKO energy inequality); attributes what, value, limit.",
        )?;
        let output = make_class(
            py,
            "OutputError",
            vec![jko.clone(), py.get_type::<PyOSError>()],
            "A file could not be read or written (run directory, .npy input).",
        )?;
        Ok::<_, PyErr>(Classes {
            jko: jko.unbind(),
            input: input.unbind(),
            config: config.unbind(),
            solver: solver.unbind(),
            unsupported: unsupported.unbind(),
            not_converged: not_converged.unbind(),
            invariant: invariant.unbind(),
            output: output.unbind(),
        })
    })
}

/// Add the exception classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let c = classes(py)?;
    for (name, ty) in [
        ("JkoError", &c.jko),
        ("InputError", &c.input),
        ("ConfigError", &c.config),
        ("SolverError", &c.solver),
        ("UnsupportedError", &c.unsupported),
        ("NotConvergedError", &c.not_converged),
        ("InvariantError", &c.invariant),
        ("OutputError", &c.output),
    ] {
        m.add(name, ty.bind(py))?;
    }
    Ok(())
}

/// An exception of class `kind` with `message` and extra attributes.
pub fn raise(py: Python<'_>, kind: Kind, message: String, attrs: &[(&str, Py<PyAny>)]) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let c = classes(py)?;
        let ty = match kind {
            Kind::Jko => &c.jko,
            Kind::Input => &c.input,
            Kind::Config => &c.config,
            Kind::Solver => &c.solver,
            Kind::Unsupported => &c.unsupported,
            Kind::NotConverged => &c.not_converged,
            Kind::Invariant => &c.invariant,
            Kind::Output => &c.output,
        };
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

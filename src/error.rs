//! Errors of the engine (config, plan, driver, output). Backends' errors arrive as
//! [`jko_core::StepError`], input problems as [`jko_core::InputError`].
//!
//! Every fallible function of this crate returns [`RunError`]; the `jko` command prints its
//! `Display` text (and its `source` chain) and exits with status 1.

use jko_core::{InputError, StepError};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a run, a plan or a file operation of the engine failed.
///
/// The message names what to fix: the config key, the file, the step and the invariant.
///
/// ```rust
/// use jko::config::Config;
/// use jko::error::RunError;
///
/// // A typo in a key is a TOML error that names the key.
/// let err = Config::from_toml("[mesh]\ncels = [4]").unwrap_err();
/// assert!(matches!(err, RunError::Toml { .. }));
/// assert!(err.to_string().contains("cels"));
///
/// // Backend input errors are unwrapped into `RunError::Input`.
/// let step = jko_core::StepError::from(jko_core::InputError::InvalidTau(0.0));
/// assert!(matches!(RunError::from(step), RunError::Input(_)));
/// ```
#[derive(Debug, Error)]
pub enum RunError {
    /// A config text does not parse: bad TOML, or an unknown, missing or mistyped key (named).
    #[error("{}{source}", origin_prefix(.origin))]
    Toml {
        /// The file it came from, if any.
        origin: Option<PathBuf>,
        /// The parser's error, naming the key (and its line).
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A config value that does not fit the rest of the config (a key each table accepts on
    /// its own, but not together).
    #[error("{key}: {reason}")]
    Config {
        /// The key (`initial.kind`, `solver.check_solver`, ...).
        key: String,
        /// What is inconsistent, and what would fit.
        reason: String,
    },
    /// A backend name that is not in the registry ([`crate::backend::BACKENDS`]).
    #[error("unknown backend `{name}`; known backends: {}", known.join(", "))]
    UnknownBackend {
        /// The name asked for.
        name: String,
        /// The registered names.
        known: Vec<&'static str>,
    },
    /// A parameter, mesh, density or array is invalid ([`InputError`]).
    #[error(transparent)]
    Input(#[from] InputError),
    /// The backend failed on step `step` (not converged, numerical failure, unsupported term).
    #[error("step {step}: {source}")]
    Step {
        /// Number of the failed step (1-based).
        step: usize,
        /// The backend's error.
        #[source]
        source: StepError,
    },
    /// A backend error outside a step (building the backend, a mesh or an energy term it does
    /// not treat, refused before the first step).
    #[error(transparent)]
    Solver(StepError),
    /// A step violated an invariant checked by the driver (mass, positivity, bound, energy
    /// inequality; see [`crate::driver`]); the step is not written.
    #[error(
        "step {step}: invariant violated: {what} ({value:.3e} exceeds the allowed {limit:.3e})"
    )]
    Invariant {
        /// Number of the offending step (1-based).
        step: usize,
        /// The invariant, in words.
        what: String,
        /// The measured violation.
        value: f64,
        /// The tolerance it exceeds (from [`crate::config::Checks`]).
        limit: f64,
    },
    /// Reading or writing `path` failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// `path` is not a float64 `.npy` array (or could not be written as one).
    #[error("{path}: not a readable .npy array: {message}")]
    Npy {
        /// The file.
        path: PathBuf,
        /// What the `.npy` reader or writer reported.
        message: String,
    },
    /// A JSON file of a run directory (`run.json`, a line of `steps.jsonl`) does not parse.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// The output directory already holds a run (neither `--resume` nor `--force` given).
    #[error(
        "{}: already holds a run: use --resume to continue it, --force to overwrite it, or another --out",
        .0.display()
    )]
    OutputExists(PathBuf),
    /// The output directory cannot hold a run: it is a file, or it cannot be created or
    /// written. The reason says what to do.
    #[error("{}: {reason}", .path.display())]
    OutputDir {
        /// The output directory given.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A run directory cannot be resumed (no `--out`, no readable run, or a config that
    /// differs from the one it was run with in more than `scheme.steps`).
    #[error("cannot resume: {0}")]
    Resume(String),
    /// An observer ([`crate::driver::Observer`]) stopped the run; the text says why.
    #[error("{0}")]
    Observer(String),
    /// The stop callback asked to stop after this step (Ctrl-C in the CLI); every finished step
    /// is saved and the run can be resumed.
    #[error("interrupted after step {0}; finished steps are saved (resume with --resume)")]
    Interrupted(usize),
}

fn origin_prefix(origin: &Option<PathBuf>) -> String {
    origin
        .as_ref()
        .map(|p| format!("{}: ", p.display()))
        .unwrap_or_default()
}

impl RunError {
    /// [`RunError::Io`] for `path`.
    ///
    /// ```rust
    /// use jko::error::RunError;
    /// use std::path::Path;
    ///
    /// let path = Path::new("/nonexistent/config.toml");
    /// let err = std::fs::read(path).map_err(|e| RunError::io(path, e)).unwrap_err();
    /// assert!(err.to_string().starts_with("/nonexistent/config.toml: "));
    /// ```
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        RunError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// [`RunError::Config`] naming `key`.
    ///
    /// ```rust
    /// use jko::error::RunError;
    ///
    /// let err = RunError::config("initial.kind", "drift_box needs [energy] entropy");
    /// assert_eq!(err.to_string(), "initial.kind: drift_box needs [energy] entropy");
    /// ```
    pub fn config(key: &str, reason: impl Into<String>) -> Self {
        RunError::Config {
            key: key.to_string(),
            reason: reason.into(),
        }
    }
}

impl From<StepError> for RunError {
    fn from(e: StepError) -> Self {
        match e {
            StepError::Input(i) => RunError::Input(i),
            other => RunError::Solver(other),
        }
    }
}

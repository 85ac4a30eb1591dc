//! Errors of the tools: an engine error ([`RunError`]) passed through, or what went wrong in a
//! study, a report, a plot or a dataset — each naming the option, file or sample to fix. The
//! `jko` binary prints the `Display` text and its `source` chain once and exits with status 1.

use jko::error::RunError;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a tool (`jko convergence`, `compare`, `implicit-bias`, `dataset`, `plot`, or a
/// command-line option) failed.
///
/// ```rust
/// use jko_cli::convergence::Refine;
/// use jko_cli::error::ToolError;
///
/// // A command-line option the tool cannot use names the option, not "config".
/// let err = Refine::parse("h,dx").unwrap_err();
/// assert!(matches!(err, ToolError::Option { .. }));
/// assert!(err.to_string().starts_with("--refine: unknown parameter `dx`"), "{err}");
/// ```
#[derive(Debug, Error)]
pub enum ToolError {
    /// An error of the engine: a config, an input, a failed step, a run directory.
    #[error(transparent)]
    Run(#[from] RunError),
    /// Reading or writing `path` failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A suite or dataset spec (TOML) does not parse: an unknown, missing or mistyped key.
    #[error("{origin}: {source}")]
    Toml {
        /// The file, or what the text is (`suite quick`).
        origin: String,
        /// The parser's error, naming the key.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A JSON file (`run.json`, `convergence.json`, ...) does not parse.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A command-line option or a spec value that the tool cannot use.
    #[error("{name}: {reason}")]
    Option {
        /// The option or key (`--refine`, `suite.repeats`, `dataset.initial`).
        name: String,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// The tool does not apply to this config or directory (its scope, in words).
    #[error("{tool} needs {what}")]
    Unsuited {
        /// The tool (`implicit-bias`, `dataset`, `plot`, `convergence`).
        tool: &'static str,
        /// What it needs that the input lacks.
        what: String,
    },
    /// Drawing or encoding a figure failed.
    #[error("cannot plot {what}: {message}")]
    Plot {
        /// The figure or file.
        what: String,
        /// The drawing library's message.
        message: String,
    },
    /// `jko compare --check`: runs failed inside their backend's domain and the suite does not
    /// expect them to.
    #[error("{failures} run(s) failed that the suite does not expect:{list}")]
    Check {
        /// How many.
        failures: usize,
        /// One line per failed run: problem, cells, backend, status.
        list: String,
    },
    /// A run inside a study failed (a reference run, a dataset sample).
    #[error("{context}: {source}")]
    Failed {
        /// Which run (`porous-1d: the reference run with conic`, `dataset sample 3`).
        context: String,
        /// Its error.
        #[source]
        source: Box<ToolError>,
    },
}

impl ToolError {
    /// [`ToolError::Io`] for `path`.
    ///
    /// ```rust
    /// use jko_cli::error::ToolError;
    /// use std::path::Path;
    ///
    /// let path = Path::new("/nonexistent/suite.toml");
    /// let err = std::fs::read(path).map_err(|e| ToolError::io(path, e)).unwrap_err();
    /// assert!(err.to_string().starts_with("/nonexistent/suite.toml: "));
    /// ```
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        ToolError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// [`ToolError::Option`] naming `name`.
    ///
    /// ```rust
    /// use jko_cli::error::ToolError;
    ///
    /// let err = ToolError::option("--format", "unknown output format `png`; known: npy, vtk");
    /// assert_eq!(err.to_string(), "--format: unknown output format `png`; known: npy, vtk");
    /// ```
    pub fn option(name: &str, reason: impl Into<String>) -> Self {
        ToolError::Option {
            name: name.to_string(),
            reason: reason.into(),
        }
    }

    /// [`ToolError::Failed`]: `source` with the run it happened in.
    ///
    /// ```rust
    /// use jko_cli::error::ToolError;
    ///
    /// let inner = ToolError::option("--runs", "needs at least 2");
    /// let err = ToolError::failed("dataset sample 3", inner);
    /// assert_eq!(err.to_string(), "dataset sample 3: --runs: needs at least 2");
    /// ```
    pub fn failed(context: impl Into<String>, source: impl Into<ToolError>) -> Self {
        ToolError::Failed {
            context: context.into(),
            source: Box::new(source.into()),
        }
    }
}

impl From<jko_core::InputError> for ToolError {
    fn from(e: jko_core::InputError) -> Self {
        ToolError::Run(e.into())
    }
}

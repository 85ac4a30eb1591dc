//! Errors of the engine (driver, configuration, I/O). Backends' errors arrive as
//! [`jko_core::StepError`], input problems as [`jko_core::InputError`].

use jko_core::{InputError, StepError};
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RunError {
    #[error("config: {0}")]
    Config(String),
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("step {step}: {source}")]
    Step {
        step: usize,
        #[source]
        source: StepError,
    },
    #[error(transparent)]
    Solver(StepError),
    #[error(
        "step {step}: invariant violated: {what} ({value:.3e} exceeds the allowed {limit:.3e})"
    )]
    Invariant {
        step: usize,
        what: String,
        value: f64,
        limit: f64,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a readable .npy array: {message}")]
    Npy { path: PathBuf, message: String },
    #[error("cannot resume: {0}")]
    Resume(String),
    #[error("interrupted after step {0}; finished steps are saved (resume with --resume)")]
    Interrupted(usize),
}

impl RunError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        RunError::Io {
            path: path.to_path_buf(),
            source,
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

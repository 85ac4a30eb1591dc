//! # jko
//!
//! Wasserstein gradient flows by the JKO (Jordan–Kinderlehrer–Otto) scheme on meshes,
//! ρ^{n+1} = argmin_ρ W²(ρⁿ, ρ)/(2τ) + F(ρ), with interchangeable optimisation backends behind
//! one trait, [`jko_core::StepSolver`].
//!
//! This crate is the engine: what a program that embeds JKO steps or whole runs needs, and
//! nothing of the command line (the `jko` binary and its tools — convergence studies,
//! comparisons, datasets, plots — are the `jko-cli` crate).
//!
//! - [`config`]: the TOML run description; [`backend`]: the backend registry (one table);
//! - [`plan`]: a config planned once ([`plan::Plan`]: problem, solver, memory budget);
//! - [`driver`]: checked steps ([`driver::Stepper`]) and the time loop ([`driver::march`])
//!   with its [`driver::Observer`]s;
//! - [`check`]: a surrogate backend checked against proximal steps, as one solver;
//! - [`output`]: run directories (`.npy` per step, `steps.jsonl`, `run.json`) with resume;
//!   [`vtk`]: ParaView files;
//! - [`reference`](mod@reference): exact solutions behind configs, distances between densities;
//! - [`examples`]: the built-in example configs (`jko example NAME`);
//! - [`error`]: [`error::RunError`], the error of every fallible function here.
//!
//! The mathematics shared by all backends is in `jko_core` (re-exported as [`core`]) and in
//! `docs/mathematics.md` of the repository.
//!
//! A whole run from a config, checked against the exact JKO iterates of the
//! Ornstein–Uhlenbeck process (the `quantile` backend computes 1D steps with exact W²):
//!
//! ```rust
//! use jko::config::Config;
//! use jko::core::exact::{Gaussian, OrnsteinUhlenbeck};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_toml(r#"
//!     mesh = { cells = [100], lower = [-5.0], upper = [5.0] }
//!     initial = { kind = "gaussian", mean = [1.0], std = [0.5] }
//!     energy = { entropy = 1.0, potential = { kind = "quadratic" } }
//!     scheme = { tau = 0.1, steps = 2 }
//!     solver = { kind = "quantile" }
//! "#)?;
//! let result = jko::run(&config, ".".as_ref(), &Default::default(), &mut [], &|| false)?;
//! let exact = OrnsteinUhlenbeck::standard(1).jko_iterates(&Gaussian::diagonal(&[1.0], &[0.5]), 0.1, 2);
//! let (mesh, rho) = (&result.mesh, &result.rho);
//! let moment = |p: i32| -> f64 {
//!     (0..mesh.n_cells()).map(|k| mesh.volumes()[k] * rho[k] * mesh.centre(k)[0].powi(p)).sum()
//! };
//! let (mean, var) = (moment(1), moment(2) - moment(1).powi(2));
//! assert!((mean - exact.mean[0]).abs() < 1e-3, "mean {mean} vs {}", exact.mean[0]);
//! // Cell values of width h = 0.1: the variance is off by O(h²) (2.9e-3 here, 7.3e-4 at h/2).
//! assert!((var - exact.cov[0]).abs() < 5e-3, "variance {var} vs {}", exact.cov[0]);
//! assert!(result.records[1].energy < result.records[0].energy);
//! # Ok(())
//! # }
//! ```
//!
//! Programs in `examples/` of the repository (`cargo run -p jko --example NAME`):
//! - `examples/reference_solution.rs`: a config run through [`run`] for three time steps,
//!   errors to the exact OU flow and to the exact JKO iterates of `jko_core::exact`, and the
//!   observed order in τ;
//! - `examples/solver_comparison.rs`: the same step with every registered backend
//!   ([`backend::BACKENDS`]): time, iterations and the difference between backends, and how
//!   a backend refuses a term it does not treat;
//! - `examples/embed_step.rs`: [`driver::Stepper::step`] in a user's own time loop
//!   (Fisher–KPP by splitting: a checked JKO step, then an exact reaction step);
//! - `examples/memory_estimate.rs`: the backends' memory estimates against the measured peak
//!   memory of one step.

#![warn(missing_docs)]

pub mod backend;
pub mod check;
pub mod config;
pub mod driver;
pub mod error;
pub mod examples;
pub mod expression;
pub mod output;
pub mod plan;
pub mod reference;
pub mod score;
pub mod vtk;

/// The core crate: meshes, energies, the step problem and the [`core::StepSolver`] trait, exact
/// solutions.
pub use jko_core as core;

use config::Config;
use driver::{Observer, State, march};
use error::RunError;
use ndarray::Array1;
use output::RunWriter;
use plan::Plan;
use std::path::{Path, PathBuf};

/// How to run a config: the options of `jko run` (`--out`, `--resume`, `--force`,
/// `--format vtk`). The default writes nothing and keeps the records in memory.
///
/// ```rust
/// let opts = jko::RunOptions { out: Some(std::env::temp_dir().join("my-run")), ..Default::default() };
/// assert!(!opts.resume && !opts.force && !opts.vtk);
/// ```
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Output directory (None: nothing is written); see [`output`] for its files.
    pub out: Option<PathBuf>,
    /// Continue the run found in `out` from its last finished step (the config may differ
    /// only in `scheme.steps`).
    pub resume: bool,
    /// Overwrite a previous run in `out` (without it, a directory holding a run is refused).
    pub force: bool,
    /// Also write VTK files (`.vti` per step on grids, `.vtu` on meshes read from a file; `.pvd` series).
    pub vtk: bool,
}

/// The outcome of a finished run.
///
/// ```rust
/// use jko::config::Config;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::from_toml(r#"
///     mesh = { cells = [20], lower = [0.0], upper = [1.0] }
///     initial = { kind = "uniform" }
///     energy = { entropy = 1.0 }
///     scheme = { tau = 0.1, steps = 2 }
///     solver = { kind = "newton" }
/// "#)?;
/// let result = jko::run(&config, ".".as_ref(), &Default::default(), &mut [], &|| false)?;
/// // The uniform density is the minimiser of the entropy: it does not move.
/// assert!(result.rho.iter().all(|r| (r - 1.0).abs() < 1e-9));
/// assert_eq!(result.records.iter().map(|r| r.step).collect::<Vec<_>>(), [1, 2]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The config's mesh.
    pub mesh: jko_core::Mesh,
    /// The density after the last step (cell values of `mesh`).
    pub rho: Array1<f64>,
    /// One record per step, in order; after a resume, the earlier steps' records too.
    pub records: Vec<driver::StepRecord>,
}

/// Keeps every record in memory (for runs without an output directory and for the caller).
#[derive(Default)]
struct Recorder(Vec<driver::StepRecord>);

impl Observer for Recorder {
    fn step(
        &mut self,
        record: &driver::StepRecord,
        _: &jko_core::StepOutput,
    ) -> Result<(), RunError> {
        self.0.push(record.clone());
        Ok(())
    }
}

/// Run a config (`jko run`): plan it ([`Plan::build`], paths relative to `base`), step
/// `scheme.steps` times checking the invariants of every step ([`driver`]), and write each
/// step as it finishes when `opts.out` is set ([`output::RunWriter`]: `rho_NNNNN.npy`,
/// `steps.jsonl`, `run.json`). `extra` observers see the march (progress reports); `stop` is
/// polled between steps (Ctrl-C).
///
/// # Errors
/// Those of [`Plan::build`] for a config that cannot run; [`RunError::Step`] or
/// [`RunError::Invariant`] for a failed step (the finished steps stay written, `run.json`
/// records the failure); [`RunError::Interrupted`] when `stop` returned true;
/// [`RunError::OutputExists`], [`RunError::Resume`] for the output directory.
///
/// ```rust
/// use jko::config::Config;
/// use jko::driver::RunStatus;
/// use jko::output::Summary;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut config = Config::from_toml(r#"
///     mesh = { cells = [50], lower = [-5.0], upper = [5.0] }
///     initial = { kind = "gaussian", mean = [1.0], std = [0.5] }
///     energy = { entropy = 1.0, potential = { kind = "quadratic" } }
///     scheme = { tau = 0.1, steps = 2 }
///     solver = { kind = "newton" }
/// "#)?;
/// let dir = tempfile::tempdir()?;
/// let opts = jko::RunOptions { out: Some(dir.path().to_path_buf()), ..Default::default() };
/// let result = jko::run(&config, ".".as_ref(), &opts, &mut [], &|| false)?;
/// assert_eq!(result.records.len(), 2);
/// // Mass is conserved and the energy decreases.
/// let mass0 = result.records[0].mass;
/// assert!((result.mesh.mass(&result.rho) - mass0).abs() < 1e-9 * mass0);
/// assert!(result.records[1].energy < result.records[0].energy);
/// assert!(dir.path().join("rho_00002.npy").exists());
///
/// // Resume with two more steps: only steps 3 and 4 run.
/// config.scheme.steps = 4;
/// let resumed = jko::RunOptions { resume: true, ..opts };
/// let result = jko::run(&config, ".".as_ref(), &resumed, &mut [], &|| false)?;
/// assert_eq!(result.records.last().unwrap().step, 4);
/// let summary = Summary::read(dir.path())?;
/// assert_eq!((summary.header.status, summary.steps.len()), (RunStatus::Completed, 4));
/// # Ok(())
/// # }
/// ```
pub fn run(
    config: &Config,
    base: &Path,
    opts: &RunOptions,
    extra: &mut [&mut dyn Observer],
    stop: &dyn Fn() -> bool,
) -> Result<RunResult, RunError> {
    let plan = Plan::build(config, base)?;
    let mesh = &plan.problem.mesh;
    let (writer, state, records) = match (&opts.out, opts.resume) {
        (Some(out), true) => {
            let (w, state, records) = RunWriter::resume(out, config, mesh)?;
            (Some(w), state, records)
        }
        (None, true) => return Err(RunError::Resume("--resume needs --out DIR".into())),
        (Some(out), false) => {
            let w = RunWriter::create(out, config, &plan, opts.force)?;
            (
                Some(w),
                State::initial(plan.problem.initial.clone()),
                Vec::new(),
            )
        }
        (None, false) => (
            None,
            State::initial(plan.problem.initial.clone()),
            Vec::new(),
        ),
    };
    let stepper = plan.stepper()?;
    let mut recorder = Recorder(records);
    let mut writer = writer.map(|mut w| {
        w.vtk = opts.vtk;
        w.mesh_source = config.mesh.file.as_ref().map(|f| base.join(f));
        w
    });
    let mut observers: Vec<&mut dyn Observer> = Vec::new();
    if let Some(w) = writer.as_mut() {
        observers.push(w);
    }
    observers.push(&mut recorder);
    for o in extra.iter_mut() {
        observers.push(*o);
    }
    let rho = march(&stepper, state, plan.steps, &mut observers, stop)?;
    Ok(RunResult {
        mesh: mesh.clone(),
        rho,
        records: recorder.0,
    })
}

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

//! # jko
//!
//! Wasserstein gradient flows by the JKO (Jordan–Kinderlehrer–Otto) scheme on meshes,
//! ρ^{n+1} = argmin_ρ W²(ρⁿ, ρ)/(2τ) + F(ρ), with interchangeable optimisation backends behind
//! one trait, [`jko_core::StepSolver`].
//!
//! This crate is the engine behind the `jko` command: each CLI command is one library call.
//!
//! | command | library |
//! |---|---|
//! | `jko run CONFIG --out DIR` | [`config::Config`] + [`run`] (checked steps, [`output`] directory, resume) |
//! | `jko convergence CONFIG --refine h,tau` | [`convergence::convergence`] |
//! | `jko compare SUITE` | [`compare::compare`] |
//! | `jko implicit-bias CONFIG` | [`implicit_bias::implicit_bias`] |
//! | `jko dataset SPEC --out DIR` | [`dataset::run_dataset`] |
//! | `jko plot DIR` | [`plot::plot_run`] |
//! | `jko solvers` | [`backend::backends`], [`backend::treated_terms`] |
//! | `jko example NAME` | [`examples::example`] |
//!
//! - [`config`]: the TOML run description; [`backend`]: the backend registry;
//! - [`driver`]: checked steps ([`driver::Stepper`]) and the time loop ([`driver::march`]);
//! - [`output`]: `.npy` + `summary.json` run directories with resume; [`vtk`]: ParaView files;
//! - [`examples`]: the built-in example configs (`jko example NAME`);
//! - [`error`]: [`error::RunError`], the error of every fallible function here.
//!
//! The mathematics shared by all backends is in `jko_core` (re-exported as [`core`]).
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
//!   ([`backend::backends`]): time, iterations and the difference between backends, and how
//!   a backend refuses a term it does not treat;
//! - `examples/embed_step.rs`: [`driver::Stepper::step`] in a user's own time loop
//!   (Fisher–KPP by splitting: a checked JKO step, then an exact reaction step);
//! - `examples/memory_estimate.rs`: the backends' memory estimates against the measured peak
//!   memory of one step.

#![warn(missing_docs)]

pub mod backend;
pub mod compare;
pub mod config;
pub mod convergence;
pub mod dataset;
pub mod driver;
pub mod error;
pub mod examples;
pub mod implicit_bias;
pub mod output;
pub mod plot;
pub(crate) mod reference;
pub mod vtk;

/// The core crate: meshes, energies, the step problem and the [`core::StepSolver`] trait, exact
/// solutions.
pub use jko_core as core;

use config::Config;
use driver::{Observer, Stepper, march};
use error::RunError;
use ndarray::Array1;
use output::{OutputDir, RunStatus, Summary};
use std::path::{Path, PathBuf};

/// The checked stepper `jko run` marches with, for `problem` built from `config` and the
/// config's backend `solver`: τ, checks and surrogate check from the config, the mass of the
/// initial density as the reference mass. Its memory check is off: [`Config::build`] already
/// compared mesh + backend estimate with the config's `[limits]`.
///
/// # Errors
/// As [`Stepper::new`], and [`RunError::Config`] for a surrogate check naming an unknown backend.
///
/// ```rust
/// use jko::config::Config;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::from_toml(jko::examples::example("ou-1d").unwrap())?;
/// let problem = config.build(".".as_ref())?;
/// let solver = config.solver.build()?;
/// let stepper = jko::stepper(&config, &problem, solver.as_ref())?;
/// assert_eq!(stepper.tau, config.scheme.tau);
/// assert!(stepper.memory.is_none());
/// # Ok(())
/// # }
/// ```
pub fn stepper<'a>(
    config: &Config,
    problem: &'a config::Problem,
    solver: &'a dyn core::StepSolver,
) -> Result<Stepper<'a>, RunError> {
    let mut stepper = Stepper::new(
        &problem.mesh,
        &problem.energy,
        solver,
        config.scheme.tau,
        config.checks.clone(),
        problem.mesh.mass(&problem.initial),
    )?;
    stepper.check = config.solver.surrogate_check()?;
    stepper.memory = None;
    Ok(stepper)
}

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
    /// Also write VTK image data (`.vti` per step, `.pvd` series).
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
    fn observe(
        &mut self,
        record: &driver::StepRecord,
        _: &jko_core::StepOutput,
    ) -> Result<(), RunError> {
        self.0.push(record.clone());
        Ok(())
    }
}

/// Run a config (`jko run`): build the problem (paths relative to `base`), step
/// `scheme.steps` times with the config's backend, checking the invariants of every step
/// ([`driver`]), and write each step as it finishes when `opts.out` is set (`rho_NNNNN.npy`,
/// `summary.json`, see [`output`]). `extra` observers see every step (progress reports);
/// `stop` is polled between steps (Ctrl-C).
///
/// # Errors
/// [`RunError::Config`] / [`RunError::Input`] for an invalid config or input file;
/// [`RunError::Solver`] when the backend does not treat an energy term; [`RunError::Step`]
/// or [`RunError::Invariant`] for a failed step (the finished steps stay written, the summary
/// records the failure); [`RunError::Interrupted`] when `stop` returned true;
/// [`RunError::Resume`] when the run in `out` cannot be resumed with this config.
///
/// ```rust
/// use jko::config::Config;
/// use jko::output::{RunStatus, Summary};
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
/// let summary: Summary = serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json"))?)?;
/// assert_eq!((summary.status, summary.steps.len()), (RunStatus::Completed, 4));
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
    let problem = config.build(base)?;
    let solver = config.solver.build()?;
    let mesh = &problem.mesh;
    let stepper = stepper(config, &problem, solver.as_ref())?;
    let steps = config.scheme.steps;

    let (mut dir, first, rho, warm) = match (&opts.out, opts.resume) {
        (Some(out), true) => {
            let (mut dir, last, rho, warm) = OutputDir::resume(out, mesh, config)?;
            dir.vtk = opts.vtk;
            (Some(dir), last + 1, rho, warm)
        }
        (None, true) => return Err(RunError::Resume("--resume needs --out DIR".into())),
        (Some(out), false) => {
            let summary = Summary {
                jko_version: env!("CARGO_PKG_VERSION").to_string(),
                solver: config.solver.name().to_string(),
                config: config.clone(),
                status: RunStatus::Running,
                error: None,
                mesh_cells: mesh.n_cells(),
                initial_mass: stepper.mass0,
                initial_energy: problem.energy.value(mesh, &problem.initial)?,
                steps: Vec::new(),
                peak_rss_kib: None,
            };
            let mut dir = OutputDir::create(out, mesh, summary, opts.force)?;
            dir.vtk = opts.vtk;
            dir.write_cells(&output::step_file("rho", 0), &problem.initial)?;
            if dir.vtk {
                dir.write_vtk(0, &problem.initial)?;
            }
            dir.write_summary()?;
            (Some(dir), 1, problem.initial.clone(), None)
        }
        (None, false) => (None, 1, problem.initial.clone(), None),
    };

    let mut recorder = Recorder::default();
    if let Some(d) = &dir {
        recorder.0 = d.summary.steps.clone();
    }
    let result = {
        let mut observers: Vec<&mut dyn Observer> = Vec::new();
        if let Some(d) = dir.as_mut() {
            observers.push(d);
        }
        observers.push(&mut recorder);
        for o in extra.iter_mut() {
            observers.push(*o);
        }
        march(
            &stepper,
            rho.clone(),
            warm,
            first,
            steps,
            &mut observers,
            stop,
        )
    };
    match result {
        Ok(rho_final) => {
            if let Some(d) = dir.as_mut() {
                d.finish(RunStatus::Completed, None)?;
            }
            Ok(RunResult {
                mesh: problem.mesh.clone(),
                rho: if first > steps { rho } else { rho_final },
                records: recorder.0,
            })
        }
        Err(e) => {
            if let Some(d) = dir.as_mut() {
                let status = if matches!(e, RunError::Interrupted(_)) {
                    RunStatus::Interrupted
                } else {
                    RunStatus::Failed
                };
                // The run's own error matters more than a failure to record it.
                let _ = d.finish(status, Some(e.to_string()));
            }
            Err(e)
        }
    }
}

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

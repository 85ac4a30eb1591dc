//! # jko
//!
//! Wasserstein gradient flows by the JKO (Jordan–Kinderlehrer–Otto) scheme on meshes,
//! ρ^{n+1} = argmin_ρ W²(ρⁿ, ρ)/(2τ) + F(ρ), with interchangeable optimisation backends behind
//! one trait, [`jko_core::StepSolver`].
//!
//! - [`config`]: the TOML run description; [`backend`]: the backend registry;
//! - [`driver`]: checked steps ([`driver::Stepper`]) and the time loop ([`driver::march`]);
//! - [`output`]: `.npy` + `summary.json` run directories with resume;
//! - [`examples`]: the built-in example configs (`jko example NAME`).
//!
//! The mathematics shared by all backends is in `jko_core` (re-exported as [`core`]).

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
pub mod reference;
pub mod vtk;

pub use jko_core as core;

use config::Config;
use driver::{Observer, Stepper, march};
use error::RunError;
use ndarray::Array1;
use output::{OutputDir, RunStatus, Summary};
use std::path::{Path, PathBuf};

/// How to run a config.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Output directory (None: nothing is written).
    pub out: Option<PathBuf>,
    /// Continue the run found in `out`.
    pub resume: bool,
    /// Overwrite a previous run in `out`.
    pub force: bool,
    /// Also write VTK image data (`.vti` per step, `.pvd` series).
    pub vtk: bool,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub mesh: jko_core::Mesh,
    pub rho: Array1<f64>,
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

/// Run a config: build the problem (paths relative to `base`), step `scheme.steps` times,
/// write each step as it finishes when `opts.out` is set. `extra` observers see every step
/// (progress reports); `stop` is polled between steps (Ctrl-C).
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
    let mass0 = mesh.mass(&problem.initial);
    let mut stepper = Stepper::new(
        mesh,
        &problem.energy,
        solver.as_ref(),
        config.scheme.tau,
        config.checks.clone(),
        mass0,
    )?;
    stepper.check = config.solver.surrogate_check()?;
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
                initial_mass: mass0,
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

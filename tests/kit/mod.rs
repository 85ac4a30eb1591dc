//! The dev-only test kit of the engine's test binaries: small shared cases, every registered
//! backend built as the engine builds it, one march loop through the driver (so every step
//! passes the driver's own invariant checks: mass, positivity, the congestion cap, the JKO
//! energy inequality), one relative L1 distance and one run in memory and one writing its
//! output files (npy, optionally VTK) into a fresh directory. Not part of any crate's API.

#![allow(dead_code)]

use jko::backend::{BACKENDS, SolverConfig};
use jko::config::Checks;
use jko::driver::{Observer, State, StepRecord, Stepper, march as drive};
use jko::error::RunError;
use jko::{RunOptions, RunResult};
use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
use jko_core::{Energy, Interaction, Mesh, Potential, StepOutput, StepSolver};
use ndarray::Array1;
use std::path::Path;

/// The exact density on a mesh at time t.
pub type ExactDensity = Box<dyn Fn(&Mesh, f64) -> Array1<f64>>;

/// One small problem: a mesh, an energy, ρ⁰ and τ, with the exact density at time t where one
/// is known.
pub struct Case {
    /// A short name for messages.
    pub name: &'static str,
    pub mesh: Mesh,
    pub energy: Energy,
    pub rho0: Array1<f64>,
    pub tau: f64,
    /// The exact solution of the PDE at time t, when known.
    pub exact: Option<ExactDensity>,
}

/// The Ornstein–Uhlenbeck problem from N(1, 0.5²) per axis (β = 1, V = |x|²/2) on [−4, 4]^d,
/// with its exact Gaussian solution.
pub fn ou(cells: &[usize], tau: f64) -> Case {
    let d = cells.len();
    let mesh = Mesh::grid(cells, &vec![-4.0; d], &vec![4.0; d]).expect("grid");
    let start = Gaussian::diagonal(&vec![1.0; d], &vec![0.5; d]);
    let rho0 = mesh.sample(|x| start.density(x));
    let flow = OrnsteinUhlenbeck::standard(d);
    Case {
        name: if d == 1 { "ou-1d" } else { "ou-2d" },
        energy: Energy::ornstein_uhlenbeck(d),
        rho0,
        mesh,
        tau,
        exact: Some(Box::new(move |mesh, t| {
            let g = flow.flow(&start, t);
            mesh.sample(|x| g.density(x))
        })),
    }
}

/// A 1D case on [−2, 2] (40 cells) from a positive bump, with the given energy.
fn line(name: &'static str, energy: Energy, tau: f64) -> Case {
    let mesh = Mesh::grid(&[40], &[-2.0], &[2.0]).expect("grid");
    let rho0 = mesh.sample(|x| 0.2 + (-(x[0] - 0.3).powi(2) / 0.3).exp());
    Case {
        name,
        mesh,
        energy,
        rho0,
        tau,
        exact: None,
    }
}

/// The shared cases: one per class of energy term (Fokker–Planck in 1D and 2D, porous medium,
/// congestion, interaction, a potential alone). Every backend runs each case its
/// `check_supported` accepts and must refuse the others with a typed error.
pub fn cases() -> Vec<Case> {
    let mass = 0.2 * 4.0 + (0.3 * std::f64::consts::PI).sqrt();
    vec![
        ou(&[40], 0.1),
        ou(&[10, 10], 0.1),
        line("porous-1d", Energy::porous_medium(2.0), 0.01),
        line(
            "crowd-1d",
            Energy {
                entropy: Some(0.1),
                potential: Some(Potential::Linear { slope: vec![1.0] }),
                max_density: Some(2.0 * mass / 4.0),
                ..Energy::default()
            },
            0.1,
        ),
        line(
            "aggregation-1d",
            Energy {
                entropy: Some(0.5),
                interaction: Some(Interaction::Quadratic { strength: 1.0 }),
                ..Energy::default()
            },
            0.1,
        ),
        line(
            "potential-only-1d",
            Energy {
                potential: Some(Potential::quadratic(vec![0.0], 1.0)),
                ..Energy::default()
            },
            0.05,
        ),
    ]
}

/// Every registered backend with its default parameters, built as the engine builds it
/// (`SolverConfig::default_for(name)?.build()`).
pub fn backends() -> Vec<Box<dyn StepSolver>> {
    BACKENDS
        .iter()
        .map(|b| {
            SolverConfig::default_for(b.name)
                .and_then(|c| c.build())
                .unwrap_or_else(|e| panic!("{}: {e}", b.name))
        })
        .collect()
}

/// Keeps every step's record and density.
#[derive(Default)]
pub struct Trajectory {
    pub records: Vec<StepRecord>,
    pub densities: Vec<Array1<f64>>,
}

impl Observer for Trajectory {
    fn step(&mut self, record: &StepRecord, output: &StepOutput) -> Result<(), RunError> {
        self.records.push(record.clone());
        self.densities.push(output.rho.clone());
        Ok(())
    }
}

/// March `steps` steps of `case` with `solver` through the driver ([`jko::driver::march`]
/// with a [`Stepper`] and the default [`Checks`]): every step is checked by the driver's own
/// invariants, and a violation is the error.
pub fn march(solver: &dyn StepSolver, case: &Case, steps: usize) -> Result<Trajectory, RunError> {
    let stepper = Stepper::new(
        &case.mesh,
        &case.energy,
        solver,
        case.tau,
        Checks::default(),
        case.mesh.mass(&case.rho0),
    )?;
    let mut trajectory = Trajectory::default();
    drive(
        &stepper,
        State::initial(case.rho0.clone()),
        steps,
        &mut [&mut trajectory],
        &|| false,
    )?;
    Ok(trajectory)
}

/// ‖a − b‖_L1 / ‖b‖_L1 on `mesh` (the engine's [`jko::reference::l1_relative`]).
pub fn l1(mesh: &Mesh, a: &Array1<f64>, b: &Array1<f64>) -> f64 {
    jko::reference::l1_relative(mesh, a, b)
}

/// `jko::run` of `config` (paths relative to `base`) writing its run directory (with VTK files
/// when `vtk`) into a new temporary directory, removed when the returned handle drops.
pub fn run_in_tempdir(
    config: &jko::config::Config,
    base: &Path,
    vtk: bool,
) -> Result<(tempfile::TempDir, RunResult), RunError> {
    let dir = tempfile::tempdir().unwrap();
    let opts = RunOptions {
        out: Some(dir.path().to_path_buf()),
        vtk,
        ..Default::default()
    };
    let result = jko::run(config, base, &opts, &mut [], &|| false)?;
    Ok((dir, result))
}

/// `jko::run` of `config` (paths relative to `base`) writing nothing and never stopped: the
/// trajectory in memory.
pub fn run_in_memory(config: &jko::config::Config, base: &Path) -> Result<RunResult, RunError> {
    jko::run(config, base, &RunOptions::default(), &mut [], &|| false)
}

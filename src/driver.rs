//! The time stepper: runs JKO steps with a backend, checks the invariants after every step and
//! hands each finished step to observers (writers, progress reports).
//!
//! Invariants checked after every step (tolerances in [`Checks`]):
//! - mass: |M^{n+1} − M⁰| ≤ mass_rtol · M⁰;
//! - positivity: ρ ≥ −positivity_atol · max(1, max ρ), and every value finite;
//! - congestion: ρ ≤ ρ_max (1 + bound_rtol);
//! - the JKO energy inequality F(ρ^{n+1}) + W_h²/(2τ) ≤ F(ρⁿ) (frozen step energy), for backends
//!   for which it is a theorem ([`StepSolver::satisfies_energy_inequality`]); for the others the
//!   slack is recorded only.
//!
//! A violation stops the run with [`RunError::Invariant`]; the violating step is not written.

use crate::config::Checks;
use crate::error::RunError;
use jko_core::{Energy, JkoStep, Mesh, StepOutput, StepSolver, StepStatus, WarmStart};
use ndarray::Array1;
use serde::{Deserialize, Serialize};

/// What the driver records about one finished step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Step number (1-based; step n produced `rho_{n:05}.npy`).
    pub step: usize,
    /// Time n·τ.
    pub t: f64,
    /// Full energy F_h(ρ^{n}) (interaction included).
    pub energy: f64,
    pub mass: f64,
    /// Kinetic action W_h²(ρ^{n−1}, ρ^{n}) of the backend's discretisation.
    pub kinetic: f64,
    /// F(ρ^{n−1}) − F(ρ^{n}) − W_h²/(2τ) with the step's (frozen) energy: ≥ 0 for exact minimisers.
    pub energy_slack: f64,
    pub min_density: f64,
    pub max_density: f64,
    pub status: StepStatus,
    pub iterations: usize,
    pub primal_residual: f64,
    pub dual_residual: f64,
    /// Wall time of the solve (seconds).
    pub wall_time: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Surrogate check made at this step (flow backend with `check_every`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckRecord>,
}

/// Checking a surrogate backend against true proximal steps.
pub struct SurrogateCheck {
    /// Check steps whose number is a multiple of `every`.
    pub every: usize,
    /// The proximal backend.
    pub solver: Box<dyn StepSolver>,
    /// Relative L1 discrepancy above which the proximal result replaces the surrogate's.
    pub tol: f64,
}

/// What a surrogate check found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckRecord {
    pub proximal_solver: String,
    /// Relative L1 distance between the surrogate's and the proximal step's densities.
    pub l1: f64,
    /// W2-like distance ([`crate::reference::w2_like`]).
    pub w2: f64,
    /// True when the discrepancy exceeded the tolerance and the proximal result was kept.
    pub fell_back: bool,
}

/// One checked JKO step at a time: the piece to embed in a user's own time loop.
///
/// ```
/// use jko::driver::Stepper;
/// use jko::config::Checks;
/// use jko_core::{Energy, Mesh, Potential};
///
/// let mesh = Mesh::grid(&[40], &[-4.0], &[4.0]).unwrap();
/// let energy = Energy::fokker_planck(1.0, Potential::Quadratic { center: vec![0.0], stiffness: 1.0 });
/// let solver = jko_conic::ConicSolver::new(Default::default()).unwrap();
/// let rho0 = mesh.sample(|x| (-(x[0] - 1.0).powi(2) / 0.5).exp());
/// let stepper = Stepper::new(&mesh, &energy, &solver, 0.1, Checks::default(), mesh.mass(&rho0)).unwrap();
/// let (out, record) = stepper.step(1, &rho0, None).unwrap();
/// assert!((mesh.mass(&out.rho) - mesh.mass(&rho0)).abs() < 1e-9);
/// assert!(record.energy_slack >= -1e-7);
/// ```
pub struct Stepper<'a> {
    pub mesh: &'a Mesh,
    pub energy: &'a Energy,
    pub solver: &'a dyn StepSolver,
    pub tau: f64,
    pub checks: Checks,
    /// Mass of the initial state, against which every step's mass is checked.
    pub mass0: f64,
    /// Optional check of a surrogate backend against proximal steps.
    pub check: Option<SurrogateCheck>,
}

impl<'a> Stepper<'a> {
    pub fn new(
        mesh: &'a Mesh,
        energy: &'a Energy,
        solver: &'a dyn StepSolver,
        tau: f64,
        checks: Checks,
        mass0: f64,
    ) -> Result<Self, RunError> {
        if !(tau.is_finite() && tau > 0.0) {
            return Err(jko_core::InputError::InvalidTau(tau).into());
        }
        energy.validate()?;
        // Refuse an energy the backend cannot treat before any step is taken.
        if let Some(term) = energy.terms().into_iter().find(|t| !solver.treats(*t)) {
            return Err(RunError::Solver(jko_core::StepError::Unsupported {
                solver: solver.name().to_string(),
                term: term.to_string(),
                hint: "; backends that treat it: see `jko solvers`".to_string(),
            }));
        }
        Ok(Stepper {
            mesh,
            energy,
            solver,
            tau,
            checks,
            mass0,
            check: None,
        })
    }

    /// Step `index` (1-based) from `rho`: solve, check the invariants, and record.
    pub fn step(
        &self,
        index: usize,
        rho: &Array1<f64>,
        warm: Option<&WarmStart>,
    ) -> Result<(StepOutput, StepRecord), RunError> {
        let frozen = self.energy.freeze(self.mesh, rho)?;
        self.solver
            .check_supported(&frozen)
            .map_err(|source| RunError::Step {
                step: index,
                source,
            })?;
        let problem = JkoStep::new(self.mesh, rho, self.tau, &frozen)?;
        let mut out = self
            .solver
            .step(&problem, warm)
            .map_err(|source| RunError::Step {
                step: index,
                source,
            })?;
        let mut producer = self.solver;
        let mut check_record = None;
        if let Some(check) = self
            .check
            .as_ref()
            .filter(|c| index.is_multiple_of(c.every))
        {
            let proximal = check
                .solver
                .step(&problem, None)
                .map_err(|source| RunError::Step {
                    step: index,
                    source,
                })?;
            let l1 = crate::reference::l1_relative(self.mesh, &out.rho, &proximal.rho);
            let w2 = crate::reference::w2_like(self.mesh, &out.rho, &proximal.rho);
            let fell_back = l1 > check.tol;
            check_record = Some(CheckRecord {
                proximal_solver: check.solver.name().to_string(),
                l1,
                w2,
                fell_back,
            });
            if fell_back {
                let mut p = proximal;
                p.info.notes.push(format!(
                    "surrogate discrepancy {l1:.3e} > check_tol {:.3e}: proximal step kept",
                    check.tol
                ));
                out = p;
                producer = check.solver.as_ref();
            }
        }
        let new = &out.rho;
        let invariant = |what: &str, value: f64, limit: f64| RunError::Invariant {
            step: index,
            what: what.to_string(),
            value,
            limit,
        };
        if new.len() != rho.len() {
            return Err(invariant(
                "density length changed",
                new.len() as f64,
                rho.len() as f64,
            ));
        }
        if let Some(v) = new.iter().find(|v| !v.is_finite()) {
            return Err(invariant("non-finite density value", *v, 0.0));
        }
        let max = new.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let min = new.iter().cloned().fold(f64::INFINITY, f64::min);
        let mass = self.mesh.mass(new);
        let drift = (mass - self.mass0).abs() / self.mass0;
        if drift > self.checks.mass_rtol {
            return Err(invariant(
                "relative mass drift",
                drift,
                self.checks.mass_rtol,
            ));
        }
        let floor = self.checks.positivity_atol * max.max(1.0);
        if min < -floor {
            return Err(invariant("negative density", -min, floor));
        }
        if let Some(rmax) = self.energy.max_density {
            let excess = (max - rmax) / rmax;
            if excess > self.checks.bound_rtol {
                return Err(invariant(
                    "relative excess over max_density",
                    excess,
                    self.checks.bound_rtol,
                ));
            }
        }
        let before = frozen.value(self.mesh, rho);
        let after = frozen.value(self.mesh, new);
        let dissipation = out.info.kinetic / (2.0 * self.tau);
        let slack = before - after - dissipation;
        let allowed = self.checks.energy_rtol * (before.abs() + dissipation + self.mass0);
        if producer.satisfies_energy_inequality() && slack < -allowed {
            return Err(invariant(
                "JKO energy inequality F(rho+) + W2/(2 tau) <= F(rho) (excess)",
                -slack,
                allowed,
            ));
        }
        let record = StepRecord {
            step: index,
            t: index as f64 * self.tau,
            energy: self.energy.value(self.mesh, new)?,
            mass,
            kinetic: out.info.kinetic,
            energy_slack: slack,
            min_density: min,
            max_density: max,
            status: out.info.status,
            iterations: out.info.iterations,
            primal_residual: out.info.primal_residual,
            dual_residual: out.info.dual_residual,
            wall_time: out.info.wall_time,
            notes: out.info.notes.clone(),
            check: check_record,
        };
        Ok((out, record))
    }
}

/// Receives every finished step (after its invariants passed).
pub trait Observer {
    fn observe(&mut self, record: &StepRecord, output: &StepOutput) -> Result<(), RunError>;
}

/// Run `steps` steps from `rho` (whose step number is `first - 1`), carrying the warm start.
/// Stops early, with [`RunError::Interrupted`], when `stop()` returns true between steps.
pub fn march(
    stepper: &Stepper<'_>,
    mut rho: Array1<f64>,
    mut warm: Option<WarmStart>,
    first: usize,
    last: usize,
    observers: &mut [&mut dyn Observer],
    stop: &dyn Fn() -> bool,
) -> Result<Array1<f64>, RunError> {
    for index in first..=last {
        let (out, record) = stepper.step(index, &rho, warm.as_ref())?;
        for o in observers.iter_mut() {
            o.observe(&record, &out)?;
        }
        warm = Some(WarmStart::from(&out));
        rho = out.rho;
        if index < last && stop() {
            return Err(RunError::Interrupted(index));
        }
    }
    Ok(rho)
}

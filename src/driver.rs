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

use crate::config::{Checks, Limits};
use crate::error::RunError;
use jko_core::{Energy, JkoStep, Mesh, StepOutput, StepSolver, StepStatus, WarmStart};
use ndarray::Array1;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};

/// What the driver records about one finished step: the rows of `summary.json`'s `steps`
/// and what [`Observer`]s see.
///
/// ```rust
/// use jko::config::Checks;
/// use jko::driver::Stepper;
/// use jko_core::{Energy, Mesh, Potential};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::grid(&[40], &[-4.0], &[4.0])?;
/// let energy = Energy::fokker_planck(1.0, Potential::Quadratic { center: vec![0.0], stiffness: 1.0 });
/// let solver = jko_newton::NewtonSolver::new(Default::default())?;
/// let rho0 = mesh.sample(|x| (-(x[0] - 1.0).powi(2) / 0.5).exp());
/// let stepper = Stepper::new(&mesh, &energy, &solver, 0.1, Checks::default(), mesh.mass(&rho0))?;
/// let (_, record) = stepper.step(1, &rho0, None)?;
/// assert_eq!((record.step, record.t), (1, 0.1));
/// // The JKO energy inequality: F(ρ⁰) − F(ρ¹) ≥ W²/(2τ), up to the solver's accuracy.
/// assert!(record.energy_slack > -1e-9 && record.kinetic > 0.0);
/// assert!(record.min_density > -1e-10 * record.max_density);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Step number (1-based; step n produced `rho_{n:05}.npy`).
    pub step: usize,
    /// Time n·τ.
    pub t: f64,
    /// Full energy F_h(ρ^{n}) (interaction included).
    pub energy: f64,
    /// Mass M^{n} = Σ_K |K| ρ_K.
    pub mass: f64,
    /// Kinetic action W_h²(ρ^{n−1}, ρ^{n}) of the backend's discretisation.
    pub kinetic: f64,
    /// F(ρ^{n−1}) − F(ρ^{n}) − W_h²/(2τ) with the step's (frozen) energy: ≥ 0 for exact minimisers.
    pub energy_slack: f64,
    /// Smallest cell value of ρ^{n}.
    pub min_density: f64,
    /// Largest cell value of ρ^{n}.
    pub max_density: f64,
    /// The backend's convergence status.
    pub status: StepStatus,
    /// The backend's iterations.
    pub iterations: usize,
    /// The backend's final primal residual (its own measure).
    pub primal_residual: f64,
    /// The backend's final dual residual (its own measure).
    pub dual_residual: f64,
    /// Wall time of the solve (seconds).
    pub wall_time: f64,
    /// What the backend or the driver noted (a fallback, a relaxed tolerance, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Surrogate check made at this step (flow backend with `check_every`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckRecord>,
}

/// Checking a surrogate backend against true proximal steps (`[solver] kind = "flow"` with
/// `check_every`; see [`crate::backend::FlowConfig`]).
///
/// ```rust
/// use jko::backend::SolverConfig;
/// use jko::config::Checks;
/// use jko::driver::{Stepper, SurrogateCheck};
/// use jko_core::{Energy, Mesh, Potential};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::grid(&[40], &[-4.0], &[4.0])?;
/// let energy = Energy::fokker_planck(1.0, Potential::Quadratic { center: vec![0.0], stiffness: 1.0 });
/// let flow = SolverConfig::default_for("flow")?.build()?;
/// let rho0 = mesh.sample(|x| (-(x[0] - 1.0).powi(2) / 0.5).exp());
/// let mut stepper = Stepper::new(&mesh, &energy, flow.as_ref(), 0.05, Checks::default(), mesh.mass(&rho0))?;
/// stepper.check = Some(SurrogateCheck { every: 1, solver: SolverConfig::default_for("newton")?.build()?, tol: 0.5 });
/// let (_, record) = stepper.step(1, &rho0, None)?;
/// let check = record.check.unwrap();
/// assert_eq!(check.proximal_solver, "newton");
/// // A small step: the surrogate agrees with the proximal step and is kept.
/// assert!(check.l1 < 0.05 && !check.fell_back);
/// # Ok(())
/// # }
/// ```
pub struct SurrogateCheck {
    /// Check steps whose number is a multiple of `every`.
    pub every: usize,
    /// The proximal backend.
    pub solver: Box<dyn StepSolver>,
    /// Relative L1 discrepancy above which the proximal result replaces the surrogate's.
    pub tol: f64,
}

/// What a surrogate check found (see [`SurrogateCheck`] for the check itself).
///
/// ```rust
/// use jko::driver::CheckRecord;
///
/// let check: CheckRecord = serde_json::from_str(
///     r#"{"proximal_solver": "newton", "l1": 0.03, "w2": 0.001, "fell_back": true}"#,
/// ).unwrap();
/// assert!(check.fell_back && check.l1 > 1e-2);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckRecord {
    /// The proximal backend's name.
    pub proximal_solver: String,
    /// Relative L1 distance between the surrogate's and the proximal step's densities.
    pub l1: f64,
    /// W2-like distance between them: exact W₂ on 1D grids (quantile functions), else the
    /// Gelbrich lower bound (W₂ between the moment-matched Gaussians).
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
    /// The mesh of every density.
    pub mesh: &'a Mesh,
    /// The energy F (frozen at ρⁿ for each step's semi-implicit terms).
    pub energy: &'a Energy,
    /// The backend that solves each step.
    pub solver: &'a dyn StepSolver,
    /// Time step τ.
    pub tau: f64,
    /// Tolerances of the invariant checks.
    pub checks: Checks,
    /// Mass of the initial state, against which every step's mass is checked.
    pub mass0: f64,
    /// Optional check of a surrogate backend against proximal steps.
    pub check: Option<SurrogateCheck>,
    /// Memory the steps may use: set by [`Stepper::new`] from `JKO_MAX_MEMORY_GIB` or the
    /// available memory, checked against the backend's estimate before the first step
    /// (`None`: no check).
    pub memory: Option<MemoryBudget>,
    /// Whether the memory check has been made.
    memory_checked: AtomicBool,
}

/// A memory limit for the steps, and what already counts against it.
///
/// ```rust
/// use jko::config::Limits;
/// use jko::driver::MemoryBudget;
///
/// let budget = MemoryBudget::from_limits(&Limits { max_memory_gib: Some(1.0) }, 4096).unwrap().unwrap();
/// assert_eq!((budget.bytes, budget.committed), (1 << 30, 4096));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryBudget {
    /// The limit, in bytes.
    pub bytes: u64,
    /// Where it comes from, for the message ("available (MemAvailable)", ...).
    pub source: String,
    /// Bytes already committed when the limit was read, added to the backend's estimate
    /// (the mesh, when the limit was read before building it).
    pub committed: u64,
}

impl MemoryBudget {
    /// The limit of `limits` (config key, else environment, else available memory).
    ///
    /// # Errors
    /// [`RunError::Input`] when `JKO_MAX_MEMORY_GIB` is not a positive number.
    ///
    /// ```rust
    /// use jko::config::Limits;
    /// use jko::driver::MemoryBudget;
    ///
    /// let budget = MemoryBudget::from_limits(&Limits { max_memory_gib: Some(0.5) }, 0).unwrap();
    /// assert_eq!(budget.unwrap().source, "set by limits.max_memory_gib");
    /// ```
    pub fn from_limits(limits: &Limits, committed: u64) -> Result<Option<Self>, RunError> {
        Ok(limits.memory_limit()?.map(|(bytes, source)| MemoryBudget {
            bytes,
            source,
            committed,
        }))
    }

    /// Refuse when a step of any of `solvers` (a backend and its surrogate check's backend)
    /// on `mesh` with `energy` would need more than the budget: estimate + `committed` > `bytes`.
    ///
    /// # Errors
    /// [`RunError::Input`] (`InputError::OutOfMemory`) naming the backend, the estimate and
    /// the limit's source.
    ///
    /// ```rust
    /// use jko::driver::MemoryBudget;
    /// use jko_core::{Energy, Mesh};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[64, 64], &[0.0, 0.0], &[1.0, 1.0])?;
    /// let energy = Energy { entropy: Some(1.0), ..Default::default() };
    /// let conic = jko_conic::ConicSolver::new(Default::default())?;
    /// let tiny = MemoryBudget { bytes: 1 << 20, source: "a test".into(), committed: 0 };
    /// assert!(tiny.check(&[&conic], &mesh, &energy).is_err());
    /// let ample = MemoryBudget { bytes: 1 << 40, ..tiny };
    /// assert!(ample.check(&[&conic], &mesh, &energy).is_ok());
    /// # Ok(())
    /// # }
    /// ```
    pub fn check(
        &self,
        solvers: &[&dyn StepSolver],
        mesh: &Mesh,
        energy: &Energy,
    ) -> Result<(), RunError> {
        let terms = energy.terms();
        for solver in solvers {
            jko_core::step::check_memory(
                *solver,
                mesh,
                &terms,
                self.committed,
                self.bytes,
                &self.source,
            )?;
        }
        Ok(())
    }
}

impl<'a> Stepper<'a> {
    /// A stepper for `energy` on `mesh` with the backend `solver`; `mass0` is the mass every
    /// step's mass is checked against (the initial mass).
    ///
    /// # Errors
    /// [`RunError::Input`] for τ not finite and > 0 or an invalid energy;
    /// [`RunError::Solver`] (`StepError::Unsupported`) when the backend does not treat one of
    /// the energy's terms — refused before any step.
    ///
    /// ```rust
    /// use jko::config::Checks;
    /// use jko::driver::Stepper;
    /// use jko_core::{Energy, Mesh};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[10, 10], &[0.0, 0.0], &[1.0, 1.0])?;
    /// let energy = Energy { porous: Some(2.0), ..Default::default() };
    /// let newton = jko_newton::NewtonSolver::new(Default::default())?;
    /// assert!(Stepper::new(&mesh, &energy, &newton, 0.1, Checks::default(), 1.0).is_ok());
    /// assert!(Stepper::new(&mesh, &energy, &newton, 0.0, Checks::default(), 1.0).is_err());
    /// // The flow backend does not treat the porous-medium term: refused, naming the term.
    /// let flow = jko_flow::FlowSolver::new(Default::default())?;
    /// let err = Stepper::new(&mesh, &energy, &flow, 0.1, Checks::default(), 1.0).err().unwrap();
    /// assert!(err.to_string().contains("porous"), "{err}");
    /// # Ok(())
    /// # }
    /// ```
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
            memory: MemoryBudget::from_limits(&Limits::default(), 0)?,
            memory_checked: AtomicBool::new(false),
        })
    }

    /// Refuse, before anything is allocated, steps whose estimated memory
    /// ([`StepSolver::memory_estimate`], plus the budget's committed bytes) exceeds the budget.
    /// Made once: [`Stepper::step`] calls it before the first step.
    ///
    /// # Errors
    /// [`RunError::Input`] (`InputError::OutOfMemory`) naming the backend, the mesh, the
    /// estimate and the limit.
    ///
    /// ```rust
    /// use jko::config::Checks;
    /// use jko::driver::{MemoryBudget, Stepper};
    /// use jko_core::{Energy, Mesh};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[100, 100], &[0.0, 0.0], &[1.0, 1.0])?;
    /// let energy = Energy { entropy: Some(1.0), ..Default::default() };
    /// let solver = jko_newton::NewtonSolver::new(Default::default())?;
    /// let mut stepper = Stepper::new(&mesh, &energy, &solver, 0.1, Checks::default(), 1.0)?;
    /// stepper.memory = Some(MemoryBudget { bytes: 1 << 10, source: "a test".into(), committed: 0 });
    /// assert!(stepper.check_memory().unwrap_err().to_string().contains("a test"));
    /// stepper.memory = Some(MemoryBudget { bytes: 1 << 40, source: "a test".into(), committed: 0 });
    /// assert!(stepper.check_memory().is_ok());
    /// # Ok(())
    /// # }
    /// ```
    pub fn check_memory(&self) -> Result<(), RunError> {
        if self.memory_checked.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        let Some(budget) = &self.memory else {
            return Ok(());
        };
        let mut solvers = vec![self.solver];
        if let Some(c) = &self.check {
            solvers.push(c.solver.as_ref());
        }
        budget
            .check(&solvers, self.mesh, self.energy)
            .inspect_err(|_| self.memory_checked.store(false, Ordering::Relaxed))
    }

    /// Step `index` (1-based) from `rho`: solve, check the invariants (see the module docs),
    /// and record. `warm` is the previous step's solution ([`WarmStart::from`] its output),
    /// which makes some backends converge in fewer iterations.
    ///
    /// # Errors
    /// [`RunError::Step`] when the backend fails (with the step number);
    /// [`RunError::Invariant`] when the result violates an invariant; [`RunError::Input`] for
    /// an invalid `rho` (wrong length, negative, zero mass).
    ///
    /// ```rust
    /// use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
    /// use jko_core::WarmStart;
    /// use jko::config::Checks;
    /// use jko::driver::Stepper;
    /// use jko_core::{Energy, Mesh, Potential};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[40], &[-4.0], &[4.0])?;
    /// let energy = Energy::fokker_planck(1.0, Potential::Quadratic { center: vec![0.0], stiffness: 1.0 });
    /// let solver = jko_newton::NewtonSolver::new(Default::default())?;
    /// let rho0 = mesh.sample(|x| (-(x[0] - 1.0).powi(2) / 0.5).exp());
    /// let stepper = Stepper::new(&mesh, &energy, &solver, 0.1, Checks::default(), mesh.mass(&rho0))?;
    /// // Two steps with a warm start: the energy decreases, the mass is kept.
    /// let (out1, record1) = stepper.step(1, &rho0, None)?;
    /// let (out2, record2) = stepper.step(2, &out1.rho, Some(&WarmStart::from(&out1)))?;
    /// assert!(record2.energy < record1.energy);
    /// assert!((mesh.mass(&out2.rho) - mesh.mass(&rho0)).abs() < 1e-9);
    ///
    /// // The quantile backend computes the JKO step with exact W² (1D): its mean follows the
    /// // exact JKO iterates of the OU process, m ↦ m/(1 + τ).
    /// let quantile = jko_quantile::QuantileSolver::new(Default::default())?;
    /// let rho0 = mesh.sample(|x| Gaussian::diagonal(&[1.0], &[0.5]).density(x));
    /// let stepper = Stepper::new(&mesh, &energy, &quantile, 0.1, Checks::default(), mesh.mass(&rho0))?;
    /// let (out, _) = stepper.step(1, &rho0, None)?;
    /// let mean = |rho: &ndarray::Array1<f64>| -> f64 {
    ///     (0..mesh.n_cells()).map(|k| mesh.volumes()[k] * rho[k] * mesh.centre(k)[0]).sum::<f64>() / mesh.mass(rho)
    /// };
    /// let exact = OrnsteinUhlenbeck::standard(1).jko_step(&Gaussian::diagonal(&[1.0], &[0.5]), 0.1);
    /// assert!((mean(&out.rho) - exact.mean[0]).abs() < 1e-3, "{} vs {}", mean(&out.rho), exact.mean[0]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn step(
        &self,
        index: usize,
        rho: &Array1<f64>,
        warm: Option<&WarmStart>,
    ) -> Result<(StepOutput, StepRecord), RunError> {
        self.check_memory()?;
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
        // With ρⁿ above the cap, ρⁿ is not a competitor (F(ρⁿ) = +∞) and the inequality says nothing.
        let prev_feasible = self.energy.max_density.is_none_or(|rmax| {
            rho.iter()
                .all(|&r| r <= rmax * (1.0 + self.checks.bound_rtol))
        });
        if producer.satisfies_energy_inequality() && prev_feasible && slack < -allowed {
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

/// Receives every finished step (after its invariants passed): the run directory writer,
/// the CLI's progress line, the dataset's trajectory recorder are observers.
///
/// ```rust
/// use jko::driver::{Observer, StepRecord};
/// use jko::error::RunError;
/// use jko_core::StepOutput;
///
/// /// Keeps the energy of every step.
/// struct Energies(Vec<f64>);
///
/// impl Observer for Energies {
///     fn observe(&mut self, record: &StepRecord, _: &StepOutput) -> Result<(), RunError> {
///         self.0.push(record.energy);
///         Ok(())
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = jko::config::Config::from_toml(r#"
///     mesh = { cells = [30], lower = [-4.0], upper = [4.0] }
///     initial = { kind = "gaussian", mean = [1.0], std = [0.5] }
///     energy = { entropy = 1.0, potential = { kind = "quadratic" } }
///     scheme = { tau = 0.1, steps = 3 }
///     solver = { kind = "newton" }
/// "#)?;
/// let mut energies = Energies(Vec::new());
/// jko::run(&config, ".".as_ref(), &Default::default(), &mut [&mut energies], &|| false)?;
/// assert_eq!(energies.0.len(), 3);
/// assert!(energies.0.windows(2).all(|w| w[1] < w[0]));
/// # Ok(())
/// # }
/// ```
pub trait Observer {
    /// Called once per finished step, in order; an error stops the run.
    ///
    /// ```rust
    /// use jko::driver::{Observer, StepRecord};
    /// use jko::error::RunError;
    /// use jko_core::StepOutput;
    ///
    /// /// Stops a run whose density leaves a band (an observer's error ends the run).
    /// struct MaxBelow(f64);
    ///
    /// impl Observer for MaxBelow {
    ///     fn observe(&mut self, record: &StepRecord, _: &StepOutput) -> Result<(), RunError> {
    ///         if record.max_density > self.0 {
    ///             return Err(RunError::Config(format!("step {}: max density too high", record.step)));
    ///         }
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Diffusion from a narrow Gaussian: the maximum only decreases.
    /// let config = jko::config::Config::from_toml(r#"
    ///     mesh = { cells = [30], lower = [-3.0], upper = [3.0] }
    ///     initial = { kind = "gaussian", mean = [0.0], std = [0.5] }
    ///     energy = { entropy = 1.0 }
    ///     scheme = { tau = 0.05, steps = 2 }
    ///     solver = { kind = "newton" }
    /// "#)?;
    /// let peak = 1.0 / (0.5 * (2.0 * std::f64::consts::PI).sqrt());
    /// let mut band = MaxBelow(peak);
    /// jko::run(&config, ".".as_ref(), &Default::default(), &mut [&mut band], &|| false)?;
    /// let mut tight = MaxBelow(0.1);
    /// assert!(jko::run(&config, ".".as_ref(), &Default::default(), &mut [&mut tight], &|| false).is_err());
    /// # Ok(())
    /// # }
    /// ```
    fn observe(&mut self, record: &StepRecord, output: &StepOutput) -> Result<(), RunError>;
}

/// Run steps `first..=last` from `rho` (whose step number is `first - 1`), carrying the warm
/// start, and hand each to the observers in order; returns the last density. Stops early, with
/// [`RunError::Interrupted`], when `stop()` returns true between steps. The loop behind
/// [`crate::run`] (which adds the writer and resume) and `jko dataset`.
///
/// # Errors
/// The first error of [`Stepper::step`] or of an observer; [`RunError::Interrupted`].
///
/// ```rust
/// use jko::driver::march;
/// use jko::error::RunError;
/// use jko::config::Checks;
/// use jko::driver::Stepper;
/// use jko_core::{Energy, Mesh, Potential};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::grid(&[40], &[-4.0], &[4.0])?;
/// let energy = Energy::fokker_planck(1.0, Potential::Quadratic { center: vec![0.0], stiffness: 1.0 });
/// let solver = jko_newton::NewtonSolver::new(Default::default())?;
/// let rho0 = mesh.sample(|x| (-(x[0] - 1.0).powi(2) / 0.5).exp());
/// let stepper = Stepper::new(&mesh, &energy, &solver, 0.1, Checks::default(), mesh.mass(&rho0))?;
/// let rho2 = march(&stepper, rho0.clone(), None, 1, 2, &mut [], &|| false)?;
/// assert!((mesh.mass(&rho2) - mesh.mass(&rho0)).abs() < 1e-9);
/// // A stop request after step 1 interrupts the march.
/// let stopped = march(&stepper, rho0, None, 1, 2, &mut [], &|| true);
/// assert!(matches!(stopped, Err(RunError::Interrupted(1))));
/// # Ok(())
/// # }
/// ```
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

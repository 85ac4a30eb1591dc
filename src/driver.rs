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
//!
//! [`march`] is the time loop: it hands every finished step to [`Observer`]s (the run
//! directory writer, progress reports, recorders), which also see the start and the end of the
//! march. The driver knows nothing about particular backends, surrogate checks or memory:
//! those are the solver's ([`StepSolver`]) and the plan's ([`crate::plan::Plan`]).

use crate::config::Checks;
use crate::error::RunError;
use jko_core::{CheckReport, Energy, JkoStep, Mesh, StepOutput, StepSolver, StepStatus, WarmStart};
use ndarray::Array1;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

/// What the driver records about one finished step: the lines of a run directory's `steps.jsonl`
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
#[skip_serializing_none]
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
    /// The step's kinetic term, the W² of the backend's own discretisation (the quantity
    /// divided by 2τ in its objective), not the exact W²(ρ^{n−1}, ρ^{n}): W_h², the action of
    /// the one-step two-point-flux scheme (`conic`, `newton`); the exact W² of the
    /// reconstructed measures in quantile coordinates (`quantile`); τ ∫ |v|² along the
    /// integrated flow (`flow`); ⟨c, π⟩, the transport cost of the entropic plan (`sinkhorn`),
    /// never below the W² between the plan's marginals, the blur making it larger. The first
    /// three converge to W² as h → 0 and can be compared on one problem; sinkhorn's only as
    /// ε → 0 too (docs/mathematics.md §2.3).
    pub kinetic: f64,
    /// F(ρ^{n−1}) − F(ρ^{n}) − W_h²/(2τ) with the step's (frozen) energy: ≥ 0 for exact minimisers.
    pub energy_slack: f64,
    /// Smallest cell value of ρ^{n}.
    pub min_density: f64,
    /// Largest cell value of ρ^{n}.
    pub max_density: f64,
    /// The backend that produced the step ([`jko_core::StepInfo::solver`]): the configured one,
    /// or the proximal backend of a surrogate check that fell back.
    pub solver: String,
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
    /// Surrogate check made at this step (a `[solver]` with `check_every`;
    /// [`crate::check::SurrogateCheck`]).
    pub check: Option<CheckReport>,
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
    /// The solver of each step (a backend, possibly wrapped in a surrogate check).
    pub solver: &'a dyn StepSolver,
    /// Time step τ.
    pub tau: f64,
    /// Tolerances of the invariant checks.
    pub checks: Checks,
    /// Mass of the initial state, against which every step's mass is checked.
    pub mass0: f64,
}

impl<'a> Stepper<'a> {
    /// A stepper for `energy` on `mesh` with the backend `solver`; `mass0` is the mass every
    /// step's mass is checked against (the initial mass). It checks no memory limit: a
    /// [`crate::plan::Plan`] does, once (or call [`crate::plan::MemoryBudget::check`]).
    ///
    /// # Errors
    /// [`RunError::Input`] for τ not finite and > 0 or an invalid energy;
    /// [`RunError::Solver`] (`StepError::Unsupported` / `UnsupportedMesh`) when the backend
    /// does not treat one of the energy's terms or the mesh — refused before any step
    /// ([`refuse_unsupported`]).
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
    /// // The bfm backend treats the congestion cap only with entropy: refused, naming the term.
    /// let crowd = Energy { porous: Some(2.0), max_density: Some(2.0), ..Default::default() };
    /// let bfm = jko_bfm::BfmSolver::new(Default::default())?;
    /// let err = Stepper::new(&mesh, &crowd, &bfm, 0.1, Checks::default(), 1.0).err().unwrap();
    /// assert!(err.to_string().contains("max_density"), "{err}");
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
        refuse_unsupported(solver, mesh, energy)?;
        Ok(Stepper {
            mesh,
            energy,
            solver,
            tau,
            checks,
            mass0,
        })
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
        let frozen = self.energy.freeze(self.mesh, rho)?;
        let problem = JkoStep::new(self.mesh, rho, self.tau, &frozen)?.numbered(index);
        let out = self
            .solver
            .solve(&problem, warm)
            .map_err(|source| RunError::Step {
                step: index,
                source,
            })?;
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
        if self.solver.energy_inequality_holds(&out.info) && prev_feasible && slack < -allowed {
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
            solver: out.info.solver.clone(),
            status: out.info.status,
            iterations: out.info.iterations,
            primal_residual: out.info.primal_residual,
            dual_residual: out.info.dual_residual,
            wall_time: out.info.wall_time,
            notes: out.info.notes.clone(),
            check: out.info.check.clone(),
        };
        Ok((out, record))
    }
}

/// Refuse, before any step, a mesh or an energy that `solver` does not treat
/// ([`StepSolver::check_supported`]); an unsupported term without a hint of the backend's own
/// points to `jko solvers`.
///
/// # Errors
/// [`RunError::Solver`] with `StepError::UnsupportedMesh` or `StepError::Unsupported`.
///
/// ```rust
/// use jko::driver::refuse_unsupported;
/// use jko_core::{Energy, Mesh};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::grid(&[10], &[0.0], &[1.0])?;
/// let crowd = Energy { entropy: Some(1.0), max_density: Some(2.0), ..Energy::default() };
/// let flow = jko_flow::FlowSolver::new(Default::default())?;
/// let err = refuse_unsupported(&flow, &mesh, &crowd).unwrap_err();
/// assert!(err.to_string().contains("max_density") && err.to_string().contains("jko solvers"));
/// let newton = jko_newton::NewtonSolver::new(Default::default())?;
/// assert!(refuse_unsupported(&newton, &mesh, &crowd).is_ok());
/// # Ok(())
/// # }
/// ```
pub fn refuse_unsupported(
    solver: &dyn StepSolver,
    mesh: &Mesh,
    energy: &Energy,
) -> Result<(), RunError> {
    solver
        .check_supported(mesh, &energy.terms())
        .map_err(|e| match e {
            jko_core::StepError::Unsupported { solver, term, hint } if hint.is_empty() => {
                jko_core::StepError::Unsupported {
                    solver,
                    term,
                    hint: "; backends that treat it: see `jko solvers`".to_string(),
                }
            }
            other => other,
        })?;
    Ok(())
}

/// How a run stands or ended (the `status` of a run directory's `run.json`; an
/// [`Observer`]'s [`Observer::finish`] sees one of the last three).
///
/// ```rust
/// use jko::driver::RunStatus;
///
/// assert_eq!(serde_json::to_string(&RunStatus::Completed).unwrap(), r#""completed""#);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// The run is in progress, or its process was killed (resume it).
    Running,
    /// Every step of the run finished.
    Completed,
    /// Stopped between steps on request (Ctrl-C); resume it.
    Interrupted,
    /// A step (or an observer) failed; the error says why.
    Failed,
}

/// Where a march starts: the state after step `first - 1` (ρ⁰ and step 1 for a new run, the
/// last finished step of a resumed one) and its warm start.
///
/// ```rust
/// use jko::driver::State;
/// use ndarray::array;
///
/// let start = State::initial(array![0.5, 1.5]);
/// assert_eq!((start.first, start.warm.is_none()), (1, true));
/// ```
#[derive(Debug, Clone)]
pub struct State {
    /// The density before step `first`.
    pub rho: Array1<f64>,
    /// The warm start for step `first` (the previous step's output, when known).
    pub warm: Option<WarmStart>,
    /// The number of the next step (1-based).
    pub first: usize,
}

impl State {
    /// The start of a new run from ρ⁰: step 1, no warm start.
    ///
    /// ```rust
    /// assert_eq!(jko::driver::State::initial(ndarray::array![1.0]).first, 1);
    /// ```
    pub fn initial(rho: Array1<f64>) -> State {
        State {
            rho,
            warm: None,
            first: 1,
        }
    }
}

/// How a march ended, as its observers' [`Observer::finish`] sees it.
#[derive(Debug)]
pub struct End<'a> {
    /// `Completed`, `Interrupted` or `Failed`.
    pub status: RunStatus,
    /// The error that ended an interrupted or failed march.
    pub error: Option<&'a RunError>,
    /// The last step that finished (the march's first step − 1 if none did).
    pub last: usize,
}

/// Sees a march: its start, every finished step (after its invariants passed), its end. The
/// run directory writer ([`crate::output::RunWriter`]), the CLI's progress line and the
/// dataset's trajectory recorder are observers. Only [`Observer::step`] must be written.
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
///     fn step(&mut self, record: &StepRecord, _: &StepOutput) -> Result<(), RunError> {
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
    /// Called once before the first step of a march, with the state it starts from; an error
    /// stops the march before any step. The default does nothing.
    ///
    /// ```rust
    /// use jko::driver::{Observer, State, StepRecord};
    /// use jko::error::RunError;
    /// use jko_core::StepOutput;
    ///
    /// /// Remembers where the march started.
    /// struct From(Option<usize>);
    ///
    /// impl Observer for From {
    ///     fn start(&mut self, state: &State) -> Result<(), RunError> {
    ///         self.0 = Some(state.first);
    ///         Ok(())
    ///     }
    ///     fn step(&mut self, _: &StepRecord, _: &StepOutput) -> Result<(), RunError> {
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = jko::config::Config::from_toml(jko::examples::example("porous-1d").unwrap())?;
    /// let mut from = From(None);
    /// let mut short = config.clone();
    /// short.scheme.steps = 1;
    /// jko::run(&short, ".".as_ref(), &Default::default(), &mut [&mut from], &|| false)?;
    /// assert_eq!(from.0, Some(1));
    /// # Ok(())
    /// # }
    /// ```
    fn start(&mut self, state: &State) -> Result<(), RunError> {
        let _ = state;
        Ok(())
    }

    /// Called once per finished step, in order; an error stops the march.
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
    ///     fn step(&mut self, record: &StepRecord, _: &StepOutput) -> Result<(), RunError> {
    ///         if record.max_density > self.0 {
    ///             return Err(RunError::Observer(format!("step {}: max density too high", record.step)));
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
    fn step(&mut self, record: &StepRecord, output: &StepOutput) -> Result<(), RunError>;

    /// Called once when the march ends, however it ends. For a completed march an error is
    /// the march's error; after a failure it is ignored (the failure matters more). The
    /// default does nothing.
    ///
    /// ```rust
    /// use jko::driver::{End, Observer, RunStatus, StepRecord};
    /// use jko::error::RunError;
    /// use jko_core::StepOutput;
    ///
    /// /// Keeps the final status.
    /// struct Status(Option<RunStatus>);
    ///
    /// impl Observer for Status {
    ///     fn step(&mut self, _: &StepRecord, _: &StepOutput) -> Result<(), RunError> {
    ///         Ok(())
    ///     }
    ///     fn finish(&mut self, end: &End<'_>) -> Result<(), RunError> {
    ///         self.0 = Some(end.status);
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut config = jko::config::Config::from_toml(jko::examples::example("porous-1d").unwrap())?;
    /// config.scheme.steps = 2;
    /// let mut status = Status(None);
    /// let stop_at_once = || true;
    /// let err = jko::run(&config, ".".as_ref(), &Default::default(), &mut [&mut status], &stop_at_once);
    /// assert!(matches!(err, Err(RunError::Interrupted(1))));
    /// assert_eq!(status.0, Some(RunStatus::Interrupted));
    /// # Ok(())
    /// # }
    /// ```
    fn finish(&mut self, end: &End<'_>) -> Result<(), RunError> {
        let _ = end;
        Ok(())
    }
}

/// Run steps `state.first..=last` from `state.rho`, carrying the warm start, and show the
/// march to the observers: [`Observer::start`], [`Observer::step`] for each finished step in
/// order, [`Observer::finish`] at the end however it ends. Stops early, with
/// [`RunError::Interrupted`], when `stop()` returns true between steps. Returns the last
/// density (`state.rho` when there is no step to take). The loop behind [`crate::run`] and
/// `jko dataset`.
///
/// # Errors
/// The first error of [`Stepper::step`] or of an observer; [`RunError::Interrupted`].
///
/// ```rust
/// use jko::config::Checks;
/// use jko::driver::{State, Stepper, march};
/// use jko::error::RunError;
/// use jko_core::{Energy, Mesh, Potential};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::grid(&[40], &[-4.0], &[4.0])?;
/// let energy = Energy::fokker_planck(1.0, Potential::Quadratic { center: vec![0.0], stiffness: 1.0 });
/// let solver = jko_newton::NewtonSolver::new(Default::default())?;
/// let rho0 = mesh.sample(|x| (-(x[0] - 1.0).powi(2) / 0.5).exp());
/// let stepper = Stepper::new(&mesh, &energy, &solver, 0.1, Checks::default(), mesh.mass(&rho0))?;
/// let rho2 = march(&stepper, State::initial(rho0.clone()), 2, &mut [], &|| false)?;
/// assert!((mesh.mass(&rho2) - mesh.mass(&rho0)).abs() < 1e-9);
/// // A stop request after step 1 interrupts the march.
/// let stopped = march(&stepper, State::initial(rho0), 2, &mut [], &|| true);
/// assert!(matches!(stopped, Err(RunError::Interrupted(1))));
/// # Ok(())
/// # }
/// ```
pub fn march(
    stepper: &Stepper<'_>,
    state: State,
    last: usize,
    observers: &mut [&mut dyn Observer],
    stop: &dyn Fn() -> bool,
) -> Result<Array1<f64>, RunError> {
    let mut done = state.first.saturating_sub(1);
    let result = march_steps(stepper, state, last, observers, stop, &mut done);
    let (status, error) = match &result {
        Ok(_) => (RunStatus::Completed, None),
        Err(e @ RunError::Interrupted(_)) => (RunStatus::Interrupted, Some(e)),
        Err(e) => (RunStatus::Failed, Some(e)),
    };
    let end = End {
        status,
        error,
        last: done,
    };
    let mut finished = Ok(());
    for o in observers.iter_mut() {
        let r = o.finish(&end);
        if finished.is_ok() {
            finished = r;
        }
    }
    // The march's own error matters more than a failure to record it.
    let rho = result?;
    finished.map(|()| rho)
}

fn march_steps(
    stepper: &Stepper<'_>,
    state: State,
    last: usize,
    observers: &mut [&mut dyn Observer],
    stop: &dyn Fn() -> bool,
    done: &mut usize,
) -> Result<Array1<f64>, RunError> {
    for o in observers.iter_mut() {
        o.start(&state)?;
    }
    let State {
        mut rho,
        mut warm,
        first,
    } = state;
    for index in first..=last {
        let (out, record) = stepper.step(index, &rho, warm.as_ref())?;
        for o in observers.iter_mut() {
            o.step(&record, &out)?;
        }
        *done = index;
        warm = Some(WarmStart::from(&out));
        rho = out.rho;
        if index < last && stop() {
            return Err(RunError::Interrupted(index));
        }
    }
    Ok(rho)
}

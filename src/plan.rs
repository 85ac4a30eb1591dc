//! One run, planned once: [`Plan::build`] turns a [`Config`] into the problem (mesh, energy,
//! ρ⁰), the solver (the backend, with its surrogate check if the config has one) and the
//! memory budget, refusing before anything large is allocated what cannot run — an invalid
//! value, a mesh or an energy term the backend does not treat, a step that would not fit in
//! memory. This is the only place that reads the memory limit from the environment
//! ([`MemoryBudget::from_limits`]) and the only place that checks it; the
//! [`crate::driver::Stepper`] it hands out knows nothing about memory.

use crate::config::{Checks, Config, Limits, NpyLoader, Problem, read_npy};
use crate::driver::Stepper;
use crate::error::RunError;
use jko_core::{Energy, InputError, Mesh, StepSolver};
use std::path::Path;

/// Everything a run needs, built and checked once from a config.
///
/// ```rust
/// use jko::config::Config;
/// use jko::plan::Plan;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::from_toml(jko::examples::example("ou-1d").unwrap())?;
/// let plan = Plan::build(&config, ".".as_ref())?;
/// assert_eq!((plan.solver.name(), plan.steps), ("conic", 10));
/// let stepper = plan.stepper()?;
/// assert_eq!(stepper.tau, config.scheme.tau);
/// assert!((stepper.mass0 - 1.0).abs() < 1e-12);
/// # Ok(())
/// # }
/// ```
pub struct Plan {
    /// Mesh, energy and initial density.
    pub problem: Problem,
    /// The solver: the config's backend, wrapped in its surrogate check if it has one.
    pub solver: Box<dyn StepSolver>,
    /// Time step τ.
    pub tau: f64,
    /// Number of steps.
    pub steps: usize,
    /// Tolerances of the invariants checked after every step.
    pub checks: Checks,
    /// The memory limit the plan was checked against (None: no limit known).
    pub budget: Option<MemoryBudget>,
}

impl Plan {
    /// Plan a config (paths in it relative to `base`). See [`Plan::build_with`].
    ///
    /// # Errors
    /// As [`Plan::build_with`].
    ///
    /// ```rust
    /// use jko::config::Config;
    /// use jko::error::RunError;
    /// use jko::plan::Plan;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // The quantile backend works on 1D meshes only: refused when planned, before any step.
    /// let mut config = Config::from_toml(jko::examples::example("ou-2d").unwrap())?;
    /// config.solver = jko::backend::SolverConfig::default_for("quantile")?;
    /// let err = Plan::build(&config, ".".as_ref()).err().unwrap();
    /// assert!(matches!(err, RunError::Solver(jko_core::StepError::UnsupportedMesh { .. })));
    /// assert!(err.to_string().contains("1D"), "{err}");
    /// # Ok(())
    /// # }
    /// ```
    pub fn build(config: &Config, base: &Path) -> Result<Plan, RunError> {
        let mut resolved = config.clone();
        resolved.mesh = config.mesh.relative_to(base);
        Plan::build_with(&resolved, &|p: &Path| read_npy(&base.join(p)))
    }

    /// Plan a config with the `.npy` arrays it names obtained from `load` (see
    /// [`Config::build_with`]), in this order: the config's values; the memory limit
    /// ([`MemoryBudget::from_limits`]) against the mesh's size before the mesh is built; the
    /// mesh and the energy; the solver, refusing a mesh or an energy term it does not treat
    /// ([`crate::driver::refuse_unsupported`]); the memory limit against the mesh plus the solver's
    /// estimate ([`StepSolver::memory_estimate`]); then ρ⁰.
    ///
    /// # Errors
    /// [`RunError::Input`] for invalid values (naming the key) and for a run that would not
    /// fit in memory (`InputError::OutOfMemory`, naming the estimate and the limit);
    /// [`RunError::Solver`] for a mesh or a term the backend does not treat;
    /// [`RunError::UnknownBackend`], [`RunError::Config`]; [`RunError::Io`] /
    /// [`RunError::Npy`] for unreadable files, or whatever `load` returns.
    ///
    /// ```rust
    /// use jko::config::Config;
    /// use jko::plan::Plan;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut config = Config::from_toml(jko::examples::example("ou-2d").unwrap())?;
    /// config.limits.max_memory_gib = Some(1e-4);
    /// let err = Plan::build_with(&config, &|_| unreachable!()).err().unwrap();
    /// assert!(err.to_string().contains("max_memory_gib"), "{err}");
    /// # Ok(())
    /// # }
    /// ```
    pub fn build_with(config: &Config, load: &NpyLoader) -> Result<Plan, RunError> {
        config.validate()?;
        let budget = MemoryBudget::from_limits(&config.limits)?;
        if let Some(b) = &budget {
            b.check_mesh(&config.mesh.cells)?;
        }
        let mesh = config.mesh.build_with(load)?;
        let energy = config.energy.build_with(&mesh, load)?;
        let solver = config.solver.build()?;
        crate::driver::refuse_unsupported(solver.as_ref(), &mesh, &energy)?;
        if let Some(b) = &budget {
            b.check(solver.as_ref(), &mesh, &energy)?;
        }
        let initial = config.initial.build_with(&mesh, &energy, load)?;
        Ok(Plan {
            problem: Problem::new(mesh, energy, initial)?,
            solver,
            tau: config.scheme.tau,
            steps: config.scheme.steps,
            checks: config.checks.clone(),
            budget,
        })
    }

    /// The checked stepper of this plan: its τ, checks and solver, the mass of ρ⁰ as the
    /// reference mass.
    ///
    /// # Errors
    /// As [`Stepper::new`] (none for a built plan).
    ///
    /// ```rust
    /// use jko::config::Config;
    /// use jko::plan::Plan;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let plan = Plan::build(&Config::from_toml(jko::examples::example("porous-1d").unwrap())?, ".".as_ref())?;
    /// let stepper = plan.stepper()?;
    /// let (out, record) = stepper.step(1, &plan.problem.initial, None)?;
    /// assert_eq!(record.step, 1);
    /// assert!((plan.problem.mesh.mass(&out.rho) - stepper.mass0).abs() < 1e-9 * stepper.mass0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn stepper(&self) -> Result<Stepper<'_>, RunError> {
        let p = &self.problem;
        Stepper::new(
            &p.mesh,
            &p.energy,
            self.solver.as_ref(),
            self.tau,
            self.checks.clone(),
            p.mesh.mass(&p.initial),
        )
    }
}

/// A memory limit for a run: the bytes it may use and where the limit comes from.
///
/// ```rust
/// use jko::config::Limits;
/// use jko::plan::MemoryBudget;
///
/// let budget = MemoryBudget::from_limits(&Limits { max_memory_gib: Some(1.0) }).unwrap().unwrap();
/// assert_eq!((budget.bytes, budget.source.as_str()), (1 << 30, "set by limits.max_memory_gib"));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryBudget {
    /// The limit, in bytes.
    pub bytes: u64,
    /// Where it comes from, for the message ("available (MemAvailable)", ...).
    pub source: String,
}

impl MemoryBudget {
    /// The limit of `limits`: `max_memory_gib`, else the environment variable
    /// `JKO_MAX_MEMORY_GIB`, else the real limit of this process ([`memory_limit`]: the
    /// smallest of MemAvailable, what the address-space limit `ulimit -v` leaves and what the
    /// memory cgroup leaves); `None` (no check) when none is known.
    ///
    /// # Errors
    /// [`RunError::Input`] when `JKO_MAX_MEMORY_GIB` is not a positive number.
    ///
    /// ```rust
    /// use jko::config::Limits;
    /// use jko::plan::MemoryBudget;
    ///
    /// let budget = MemoryBudget::from_limits(&Limits { max_memory_gib: Some(2.0) }).unwrap().unwrap();
    /// assert_eq!(budget.bytes, 2 << 30);
    /// if cfg!(target_os = "linux") && std::env::var_os("JKO_MAX_MEMORY_GIB").is_none() {
    ///     let available = MemoryBudget::from_limits(&Limits::default()).unwrap().unwrap();
    ///     assert!(available.source.starts_with("available"), "{}", available.source);
    /// }
    /// ```
    pub fn from_limits(limits: &Limits) -> Result<Option<MemoryBudget>, RunError> {
        let gib = |v: f64| (v * (1u64 << 30) as f64) as u64;
        let budget = |bytes, source: &str| {
            Some(MemoryBudget {
                bytes,
                source: source.into(),
            })
        };
        if let Some(v) = limits.max_memory_gib {
            return Ok(budget(gib(v), "set by limits.max_memory_gib"));
        }
        if let Ok(text) = std::env::var("JKO_MAX_MEMORY_GIB") {
            let v: f64 = text.trim().parse().map_err(|_| {
                InputError::parameter(
                    "JKO_MAX_MEMORY_GIB",
                    &text,
                    "must be a number of GiB, e.g. 8 or 0.5",
                )
            })?;
            jko_core::finite_positive("JKO_MAX_MEMORY_GIB", v)?;
            return Ok(budget(gib(v), "set by JKO_MAX_MEMORY_GIB"));
        }
        Ok(memory_limit().and_then(|(b, source)| budget(b, source)))
    }

    /// Refuse a grid of `cells` whose mesh alone ([`mesh_bytes`]) exceeds the budget, before
    /// the mesh is built. Cell counts beyond what a mesh may hold are left to the mesh's
    /// own check.
    ///
    /// # Errors
    /// [`RunError::Input`] (`InputError::OutOfMemory`).
    ///
    /// ```rust
    /// use jko::plan::MemoryBudget;
    ///
    /// let tiny = MemoryBudget { bytes: 1 << 20, source: "a test".into() };
    /// assert!(tiny.check_mesh(&[100]).is_ok());
    /// assert!(tiny.check_mesh(&[1000, 1000]).unwrap_err().to_string().contains("the mesh itself"));
    /// ```
    pub fn check_mesh(&self, cells: &[usize]) -> Result<(), RunError> {
        let n = cells.iter().map(|&c| c as f64).product::<f64>();
        let size = mesh_bytes(cells);
        if n <= jko_core::mesh::MAX_CELLS as f64 && size > self.bytes {
            return Err(InputError::OutOfMemory {
                what: "the mesh itself".into(),
                mesh: format!("{} cells ({cells:?})", n as u64),
                bytes: size,
                limit: self.bytes,
                limit_source: self.source.clone(),
                hint: "use a coarser mesh, or raise max_memory_gib in [limits] (or JKO_MAX_MEMORY_GIB)"
                    .into(),
            }
            .into());
        }
        Ok(())
    }

    /// Refuse when one step of `solver` on `mesh` with `energy` needs more than the budget:
    /// the solver's estimate plus the mesh ([`mesh_bytes`] of the grid's cells) against
    /// the limit. A solver with a surrogate check estimates the larger of its two backends.
    ///
    /// # Errors
    /// [`RunError::Input`] (`InputError::OutOfMemory`) naming the backend, the estimate and
    /// the limit's source.
    ///
    /// ```rust
    /// use jko::plan::MemoryBudget;
    /// use jko_core::{Energy, Mesh};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[64, 64], &[0.0, 0.0], &[1.0, 1.0])?;
    /// let energy = Energy { entropy: Some(1.0), ..Default::default() };
    /// let conic = jko_conic::ConicSolver::new(Default::default())?;
    /// let tiny = MemoryBudget { bytes: 1 << 20, source: "a test".into() };
    /// assert!(tiny.check(&conic, &mesh, &energy).unwrap_err().to_string().contains("a test"));
    /// let ample = MemoryBudget { bytes: 1 << 40, ..tiny };
    /// assert!(ample.check(&conic, &mesh, &energy).is_ok());
    /// # Ok(())
    /// # }
    /// ```
    pub fn check(
        &self,
        solver: &dyn StepSolver,
        mesh: &Mesh,
        energy: &Energy,
    ) -> Result<(), RunError> {
        let committed = mesh.as_grid().map_or(0, |g| mesh_bytes(&g.cells));
        jko_core::step::check_memory(
            solver,
            mesh,
            &energy.terms(),
            committed,
            self.bytes,
            &self.source,
        )?;
        Ok(())
    }
}

/// The memory this process can still allocate, with where the limit comes from: the smallest
/// of MemAvailable ([`available_memory`]), the address-space limit (RLIMIT_AS, `ulimit -v`)
/// less the process's current virtual size, and the memory cgroup's limit (v2 `memory.max`, or
/// v1 `memory.limit_in_bytes`) less its usage. Checked before allocating, so a run under such
/// a limit is refused with a message instead of aborting on a failed allocation. `None` where
/// none is known (not Linux).
///
/// ```rust
/// if cfg!(target_os = "linux") {
///     let (bytes, source) = jko::plan::memory_limit().unwrap();
///     assert!(bytes > 0 && bytes <= jko::plan::available_memory().unwrap());
///     assert!(source.starts_with("available"));
/// }
/// ```
pub fn memory_limit() -> Option<(u64, &'static str)> {
    let mut best: Option<(u64, &'static str)> =
        available_memory().map(|b| (b, "available (MemAvailable)"));
    let mut consider = |bytes: Option<u64>, source: &'static str| {
        if let Some(b) = bytes
            && best.is_none_or(|(current, _)| b < current)
        {
            best = Some((b, source));
        }
    };
    consider(
        address_space_left(),
        "available under the address-space limit (ulimit -v)",
    );
    consider(cgroup_left(), "available in the memory cgroup");
    best
}

/// RLIMIT_AS's soft limit (from /proc/self/limits) less VmSize; `None` when unlimited.
fn address_space_left() -> Option<u64> {
    // "unlimited" does not parse: no limit.
    let limit = proc_number("/proc/self/limits", "Max address space", 3)?;
    let size_kib = proc_number("/proc/self/status", "VmSize:", 1)?;
    Some(limit.saturating_sub(size_kib * 1024))
}

/// The number in whitespace-separated column `column` (0-based, the label's words included) of
/// the first line of the /proc file `path` that starts with `label`; `None` when the file,
/// the line or a number is not there.
pub(crate) fn proc_number(path: &str, label: &str, column: usize) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find(|l| l.starts_with(label))?
        .split_whitespace()
        .nth(column)?
        .parse()
        .ok()
}

/// The memory cgroup's limit less its usage (cgroup v2, else v1); `None` when unlimited.
fn cgroup_left() -> Option<u64> {
    let read = |p: &str| -> Option<u64> { std::fs::read_to_string(p).ok()?.trim().parse().ok() };
    let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    for line in membership.lines() {
        let mut parts = line.splitn(3, ':');
        let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let (limit, usage) = if id == "0" && controllers.is_empty() {
            let dir = format!("/sys/fs/cgroup{path}");
            (
                read(&format!("{dir}/memory.max")),
                read(&format!("{dir}/memory.current")),
            )
        } else if controllers.split(',').any(|c| c == "memory") {
            // Inside a container the cgroup's own directory is mounted at the root.
            let dir = [
                format!("/sys/fs/cgroup/memory{path}"),
                "/sys/fs/cgroup/memory".to_string(),
            ]
            .into_iter()
            .find(|d| std::path::Path::new(&format!("{d}/memory.limit_in_bytes")).exists())?;
            (
                read(&format!("{dir}/memory.limit_in_bytes")),
                read(&format!("{dir}/memory.usage_in_bytes")),
            )
        } else {
            continue;
        };
        // v1 reports "no limit" as a huge number (2⁶³ rounded to pages).
        if let (Some(l), Some(u)) = (limit, usage)
            && l < (1u64 << 60)
        {
            return Some(l.saturating_sub(u));
        }
    }
    None
}

/// MemAvailable of /proc/meminfo in bytes (Linux); `None` elsewhere.
///
/// ```rust
/// if cfg!(target_os = "linux") {
///     assert!(jko::plan::available_memory().unwrap() > 0);
/// }
/// ```
pub fn available_memory() -> Option<u64> {
    let kib = proc_number("/proc/meminfo", "MemAvailable:", 1)?;
    Some(kib * 1024)
}

/// Bytes a (masked) grid mesh of `cells` needs once built ([`Mesh::masked_grid`]): per cell
/// the volume, d centre coordinates, the face offsets, the grid index and the build's cell map
/// (8 B each); per face (≤ d per cell) the [`jko_core::Face`] record (40 B, up to twice over
/// by Vec growth) and two cell-face entries (16 B). A few cell arrays more hold the densities.
///
/// ```rust
/// use jko::plan::mesh_bytes;
///
/// // Linear in the number of cells.
/// assert_eq!(mesh_bytes(&[200, 200]), 4 * mesh_bytes(&[100, 100]));
/// ```
pub fn mesh_bytes(cells: &[usize]) -> u64 {
    let n = cells.iter().map(|&c| c as f64).product::<f64>();
    let d = cells.len() as f64;
    let faces = d * n;
    (8.0 * n * (4.0 + d) + faces * (2.0 * 40.0 + 16.0) + 8.0 * 8.0 * n) as u64
}

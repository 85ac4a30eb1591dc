//! Run directories. [`RunWriter`], an [`Observer`] of the march, writes:
//!
//! - `rho_NNNNN.npy` per step (float64 density values; on a grid, shape = cells per axis, C
//!   order, masked cells 0; on a mesh read from a file, one value per cell in the mesh's cell
//!   order); `rho_00000.npy` is the initial state;
//! - on a mesh read from a file, `centres.npy` (n_cells × d) and `volumes.npy` (n_cells), the
//!   geometry the values live on, and `mesh.msh`, a copy of the mesh file (when the run was
//!   started by [`crate::run`]);
//! - `potential_NNNNN.npy` when the backend returns a dual potential (used to resume
//!   bit-identically);
//! - `steps.jsonl`: one [`StepRecord`] per line (JSON), appended as each step finishes — the
//!   commit point of a step, written after its arrays;
//! - `run.json`: the run's header and status ([`RunHeader`]: config as run, backend, crate
//!   version, initial mass and energy, status, error, peak memory), small and rewritten only
//!   when the run starts and ends;
//! - with VTK output on, `rho_NNNNN.vti` (grids) or `rho_NNNNN.vtu` (meshes read from a file)
//!   per step and the `rho.pvd` series (see [`crate::vtk`]; the series is rewritten when the run
//!   ends).
//!
//! Arrays and `run.json` are written to a temporary name and renamed, so a file that exists is
//! complete; a line of `steps.jsonl` cut by a crash is dropped on resume. Bytes written per
//! step do not grow with the number of steps.
//!
//! `--force` removes a previous run's files first; `--resume` continues from the last step
//! recorded in `steps.jsonl` ([`RunWriter::resume`]). To read a run directory, [`Summary::read`]:
//!
//! ```rust
//! use jko::config::{Config, read_npy};
//! use jko::output::{Summary, step_file};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_toml(r#"
//!     mesh = { cells = [20], lower = [-4.0], upper = [4.0] }
//!     initial = { kind = "gaussian", mean = [0.5], std = [1.0] }
//!     energy = { entropy = 1.0 }
//!     scheme = { tau = 0.05, steps = 1 }
//!     solver = { kind = "newton" }
//! "#)?;
//! let dir = tempfile::tempdir()?;
//! let opts = jko::RunOptions { out: Some(dir.path().into()), ..Default::default() };
//! jko::run(&config, ".".as_ref(), &opts, &mut [], &|| false)?;
//! let summary = Summary::read(dir.path())?;
//! assert_eq!(summary.header.config, config);
//! let rho1 = read_npy(&dir.path().join(step_file("rho", 1)))?;
//! assert_eq!(rho1.shape(), &[20]);
//! // Cell volume 0.4: the density integrates to the recorded mass.
//! assert!((rho1.sum() * 0.4 - summary.steps[0].mass).abs() < 1e-12);
//! # Ok(())
//! # }
//! ```

use crate::config::{Config, read_npy};
use crate::driver::{End, Observer, RunStatus, State, StepRecord};
use crate::error::RunError;
use jko_core::{InputError, Mesh, StepOutput, WarmStart};
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The header and status file of a run directory.
pub const HEADER_FILE: &str = "run.json";

/// The per-step record file of a run directory (JSON lines, one [`StepRecord`] each).
pub const STEPS_FILE: &str = "steps.jsonl";

/// The cell centres of a run on a mesh read from a file (float64, n_cells × d).
pub const CENTRES_FILE: &str = "centres.npy";

/// The cell volumes of a run on a mesh read from a file (float64, n_cells).
pub const VOLUMES_FILE: &str = "volumes.npy";

/// The copy of the mesh file a run on a mesh read from a file keeps in its directory (so
/// `jko plot` and readers of the directory need nothing else).
pub const MESH_FILE: &str = "mesh.msh";

/// Contents of `run.json`: what the run is and how it stands.
///
/// ```rust
/// use jko::config::Config;
/// use jko::driver::RunStatus;
/// use jko::output::Summary;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::from_toml(r#"
///     mesh = { cells = [10], lower = [0.0], upper = [1.0] }
///     initial = { kind = "uniform", mass = 2.0 }
///     energy = { entropy = 1.0 }
///     scheme = { tau = 0.1, steps = 1 }
///     solver = { kind = "newton" }
/// "#)?;
/// let dir = tempfile::tempdir()?;
/// let opts = jko::RunOptions { out: Some(dir.path().into()), ..Default::default() };
/// jko::run(&config, ".".as_ref(), &opts, &mut [], &|| false)?;
/// let header = Summary::read(dir.path())?.header;
/// assert_eq!((header.status, header.solver.as_str(), header.mesh_cells), (RunStatus::Completed, "newton", 10));
/// assert!((header.initial_mass - 2.0).abs() < 1e-12);
/// # Ok(())
/// # }
/// ```
#[skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunHeader {
    /// Version of the engine that wrote the run.
    pub jko_version: String,
    /// The backend's name.
    pub solver: String,
    /// The config as run (after command-line overrides); `--resume` requires the same one
    /// up to `scheme.steps`.
    pub config: Config,
    /// Where the run stands.
    pub status: RunStatus,
    /// The error that ended a failed or interrupted run.
    pub error: Option<String>,
    /// Number of active cells of the mesh.
    pub mesh_cells: usize,
    /// Mass of ρ⁰, against which every step's mass is checked.
    pub initial_mass: f64,
    /// F_h(ρ⁰).
    pub initial_energy: f64,
    /// Peak resident memory of the process (KiB) when the run ended, where the OS reports it.
    pub peak_rss_kib: Option<u64>,
}

/// A run directory read back: its header and its step records, in order.
///
/// ```rust
/// use jko::output::Summary;
///
/// let err = Summary::read("/nonexistent-run".as_ref()).unwrap_err();
/// assert!(err.to_string().contains("run.json"));
/// ```
#[derive(Debug, Clone)]
pub struct Summary {
    /// `run.json`.
    pub header: RunHeader,
    /// `steps.jsonl`: one record per finished step, in order (a last line cut by a crash is
    /// left out).
    pub steps: Vec<StepRecord>,
}

impl Summary {
    /// Read `run.json` and `steps.jsonl` of a run directory.
    ///
    /// # Errors
    /// [`RunError::Io`] when a file cannot be read; [`RunError::Json`] when `run.json` or a
    /// complete line of `steps.jsonl` does not parse.
    ///
    /// ```rust
    /// use jko::config::Config;
    /// use jko::output::Summary;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut config = Config::from_toml(jko::examples::example("porous-1d").unwrap())?;
    /// config.scheme.steps = 2;
    /// let dir = tempfile::tempdir()?;
    /// let opts = jko::RunOptions { out: Some(dir.path().into()), ..Default::default() };
    /// jko::run(&config, ".".as_ref(), &opts, &mut [], &|| false)?;
    /// let steps: Vec<usize> = Summary::read(dir.path())?.steps.iter().map(|r| r.step).collect();
    /// assert_eq!(steps, [1, 2]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn read(dir: &Path) -> Result<Summary, RunError> {
        let path = dir.join(HEADER_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| RunError::io(&path, e))?;
        let header =
            serde_json::from_str(&text).map_err(|source| RunError::Json { path, source })?;
        let (steps, _) = read_steps(dir)?;
        Ok(Summary { header, steps })
    }
}

/// The records of `steps.jsonl` (none if it does not exist) and the byte length of its
/// complete lines; a last line without its newline (cut by a crash) is left out.
fn read_steps(dir: &Path) -> Result<(Vec<StepRecord>, u64), RunError> {
    let path = dir.join(STEPS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(RunError::io(&path, e)),
    };
    let complete = text.rfind('\n').map_or(0, |i| i + 1);
    let steps = text[..complete]
        .lines()
        .map(|line| {
            serde_json::from_str(line).map_err(|source| RunError::Json {
                path: path.clone(),
                source,
            })
        })
        .collect::<Result<Vec<StepRecord>, _>>()?;
    Ok((steps, complete as u64))
}

/// Writes a run directory as the march goes: an [`Observer`] that owns the run's header and
/// record file (see the module docs for the files). [`crate::run`] makes one for `--out`.
///
/// ```rust
/// use jko::config::Config;
/// use jko::driver::{State, march};
/// use jko::output::{RunWriter, Summary};
/// use jko::plan::Plan;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut config = Config::from_toml(jko::examples::example("porous-1d").unwrap())?;
/// config.scheme.steps = 2;
/// let plan = Plan::build(&config, ".".as_ref())?;
/// let dir = tempfile::tempdir()?;
/// let mut writer = RunWriter::create(dir.path(), &config, &plan, false)?;
/// let stepper = plan.stepper()?;
/// march(&stepper, State::initial(plan.problem.initial.clone()), 2, &mut [&mut writer], &|| false)?;
/// assert_eq!(Summary::read(dir.path())?.steps.len(), 2);
/// assert!(dir.path().join("rho_00002.npy").exists());
/// # Ok(())
/// # }
/// ```
pub struct RunWriter {
    dir: PathBuf,
    mesh: Mesh,
    header: RunHeader,
    /// Whether the march's start state is a new run's ρ⁰ (written as `rho_00000.npy`); false
    /// when resuming.
    initial: bool,
    /// Also write `rho_NNNNN.vti` (or `.vtu`) per step and the `rho.pvd` time series.
    pub vtk: bool,
    /// The last step written (for the VTK series).
    last: usize,
    /// The mesh file to copy into the directory as [`MESH_FILE`] when a new run starts.
    pub mesh_source: Option<PathBuf>,
}

impl RunWriter {
    /// A new run in `dir` (created if needed): refuses a directory that already holds a run
    /// unless `overwrite` (then the previous run's files are removed). Nothing is written
    /// until the march starts (a probe that the directory is writable is removed at once).
    ///
    /// # Errors
    /// [`RunError::OutputExists`]; [`RunError::OutputDir`] when `dir` is a file or cannot be
    /// created or written (a probe file, removed at once); [`RunError::Io`] when a previous
    /// run cannot be cleared; errors of evaluating the initial energy.
    ///
    /// ```rust
    /// use jko::config::Config;
    /// use jko::error::RunError;
    /// use jko::output::RunWriter;
    /// use jko::plan::Plan;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut config = Config::from_toml(jko::examples::example("porous-1d").unwrap())?;
    /// config.scheme.steps = 1;
    /// let plan = Plan::build(&config, ".".as_ref())?;
    /// let dir = tempfile::tempdir()?;
    /// let opts = jko::RunOptions { out: Some(dir.path().into()), ..Default::default() };
    /// jko::run(&config, ".".as_ref(), &opts, &mut [], &|| false)?;
    /// // The directory holds a run now.
    /// assert!(matches!(RunWriter::create(dir.path(), &config, &plan, false), Err(RunError::OutputExists(_))));
    /// assert!(RunWriter::create(dir.path(), &config, &plan, true).is_ok());
    /// # Ok(())
    /// # }
    /// ```
    pub fn create(
        dir: &Path,
        config: &Config,
        plan: &crate::plan::Plan,
        overwrite: bool,
    ) -> Result<RunWriter, RunError> {
        let unusable = |reason: String| RunError::OutputDir {
            path: dir.to_path_buf(),
            reason,
        };
        if dir.exists() && !dir.is_dir() {
            return Err(unusable(
                "exists and is not a directory: choose another output directory".into(),
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| {
            unusable(format!(
                "cannot create the output directory ({e}): choose one you can write to"
            ))
        })?;
        // Found now, not after the first step: can files be written here?
        let probe = dir.join(".jko-write-test");
        std::fs::write(&probe, b"")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|e| {
                unusable(format!(
                    "cannot write in the output directory ({e}): choose one you can write to"
                ))
            })?;
        if dir.join(HEADER_FILE).exists() && !overwrite {
            return Err(RunError::OutputExists(dir.to_path_buf()));
        }
        if overwrite {
            // Remove the previous run's files so nothing stale looks like a result.
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().to_string();
                    let step_file = (name.starts_with("rho") || name.starts_with("potential_"))
                        && (name.ends_with(".npy")
                            || name.ends_with(".vti")
                            || name.ends_with(".vtu")
                            || name.ends_with(".pvd"));
                    if step_file
                        || [
                            HEADER_FILE,
                            STEPS_FILE,
                            CENTRES_FILE,
                            VOLUMES_FILE,
                            MESH_FILE,
                        ]
                        .contains(&&*name)
                    {
                        std::fs::remove_file(e.path())
                            .map_err(|err| RunError::io(&e.path(), err))?;
                    }
                }
            }
        }
        let p = &plan.problem;
        let header = RunHeader {
            jko_version: env!("CARGO_PKG_VERSION").to_string(),
            solver: config.solver.name().to_string(),
            config: config.clone(),
            status: RunStatus::Running,
            error: None,
            mesh_cells: p.mesh.n_cells(),
            initial_mass: p.mesh.mass(&p.initial),
            initial_energy: p.energy.value(&p.mesh, &p.initial)?,
            peak_rss_kib: None,
        };
        Ok(RunWriter {
            dir: dir.to_path_buf(),
            mesh: p.mesh.clone(),
            header,
            initial: true,
            vtk: false,
            last: 0,
            mesh_source: None,
        })
    }

    /// Open the run in `dir` to continue it with `config` on `mesh`: returns the writer, the
    /// state after the last recorded step (its density, and its warm start from the written
    /// potential and the recorded backend) and the records so far. A last line of
    /// `steps.jsonl` cut by a crash is removed.
    ///
    /// # Errors
    /// [`RunError::Resume`] when `dir` holds no readable run or `config` differs from the
    /// run's in more than `scheme.steps`; [`RunError::Io`], [`RunError::Npy`],
    /// [`RunError::Json`] for unreadable files.
    ///
    /// ```rust
    /// use jko::config::Config;
    /// use jko::output::RunWriter;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut config = Config::from_toml(jko::examples::example("porous-1d").unwrap())?;
    /// config.scheme.steps = 2;
    /// let dir = tempfile::tempdir()?;
    /// let opts = jko::RunOptions { out: Some(dir.path().into()), ..Default::default() };
    /// let straight = jko::run(&config, ".".as_ref(), &opts, &mut [], &|| false)?;
    /// let (_, state, records) = RunWriter::resume(dir.path(), &config, &straight.mesh)?;
    /// assert_eq!((state.first, records.len()), (3, 2));
    /// assert_eq!(state.rho, straight.rho);
    /// assert_eq!(state.warm.unwrap().backend, config.solver.name());
    /// # Ok(())
    /// # }
    /// ```
    pub fn resume(
        dir: &Path,
        config: &Config,
        mesh: &Mesh,
    ) -> Result<(RunWriter, State, Vec<StepRecord>), RunError> {
        let path = dir.join(HEADER_FILE);
        if !path.exists() {
            return Err(RunError::Resume(format!(
                "{} holds no run to continue (no {HEADER_FILE}): start one there without --resume",
                dir.display()
            )));
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| RunError::Resume(format!("{}: {e}", path.display())))?;
        let mut header: RunHeader = serde_json::from_str(&text)
            .map_err(|e| RunError::Resume(format!("{}: {e}", path.display())))?;
        let mut stored = header.config.clone();
        let mut wanted = config.clone();
        // The number of steps may grow on resume; everything else must match.
        stored.scheme.steps = 0;
        wanted.scheme.steps = 0;
        if stored != wanted {
            return Err(RunError::Resume(format!(
                "the config differs from the one {} was run with (only scheme.steps may change)",
                dir.display()
            )));
        }
        let (records, complete) = read_steps(dir)?;
        let steps_path = dir.join(STEPS_FILE);
        if steps_path.exists() {
            // Drop a line cut by a crash, so the next record starts a line of its own.
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&steps_path)
                .map_err(|e| RunError::io(&steps_path, e))?;
            file.set_len(complete)
                .map_err(|e| RunError::io(&steps_path, e))?;
        }
        let last = records.last().map_or(0, |r| r.step);
        let rho_path = dir.join(step_file("rho", last));
        let rho = mesh.from_cell_array("resumed density", &read_npy(&rho_path)?)?;
        let pot_path = dir.join(step_file("potential", last));
        let potential = if last > 0 && pot_path.exists() {
            Some(mesh.from_cell_array("resumed potential", &read_npy(&pot_path)?)?)
        } else {
            None
        };
        let warm = records.last().map(|r| WarmStart {
            rho: Some(rho.clone()),
            potential,
            backend: r.solver.clone(),
        });
        header.config = config.clone();
        header.status = RunStatus::Running;
        header.error = None;
        let writer = RunWriter {
            dir: dir.to_path_buf(),
            mesh: mesh.clone(),
            header,
            initial: false,
            vtk: false,
            last,
            mesh_source: None,
        };
        let state = State {
            rho,
            warm,
            first: last + 1,
        };
        Ok((writer, state, records))
    }

    /// Write cell values as a `.npy` of [`Mesh::array_shape`] (write-then-rename).
    fn write_cells(&self, name: &str, values: &ndarray::Array1<f64>) -> Result<(), RunError> {
        self.write_npy(name, &self.mesh.to_cell_array(values, 0.0))
    }

    /// On a mesh that is not a grid, write `centres.npy` (n_cells × d) and `volumes.npy`.
    fn write_geometry(&self) -> Result<(), RunError> {
        if self.mesh.as_grid().is_some() {
            return Ok(());
        }
        let (n, d) = (self.mesh.n_cells(), self.mesh.dim());
        let centres: Vec<f64> = (0..n).flat_map(|k| self.mesh.centre(k).to_vec()).collect();
        let centres = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[n, d]), centres)
            .map_err(|e| InputError::InvalidMesh(e.to_string()))?;
        self.write_npy(CENTRES_FILE, &centres)?;
        let volumes = ndarray::Array1::from(self.mesh.volumes().to_vec()).into_dyn();
        self.write_npy(VOLUMES_FILE, &volumes)
    }

    /// Write an array as `.npy` (write-then-rename).
    fn write_npy(&self, name: &str, array: &ndarray::ArrayD<f64>) -> Result<(), RunError> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let file = std::fs::File::create(&tmp).map_err(|e| RunError::io(&tmp, e))?;
        ndarray_npy::WriteNpyExt::write_npy(array, std::io::BufWriter::new(file)).map_err(|e| {
            RunError::Npy {
                path: tmp.clone(),
                message: e.to_string(),
            }
        })?;
        std::fs::rename(&tmp, &path).map_err(|e| RunError::io(&path, e))
    }

    /// Write a text file (write-then-rename).
    fn write_text(&self, name: &str, text: &str) -> Result<(), RunError> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).map_err(|e| RunError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| RunError::io(&path, e))
    }

    /// Rewrite `run.json`.
    fn write_header(&self) -> Result<(), RunError> {
        let path = self.dir.join(HEADER_FILE);
        let text = serde_json::to_string_pretty(&self.header)
            .map_err(|source| RunError::Json { path, source })?;
        self.write_text(HEADER_FILE, &text)
    }

    /// Append one record as a line of `steps.jsonl`.
    fn append_record(&self, record: &StepRecord) -> Result<(), RunError> {
        let path = self.dir.join(STEPS_FILE);
        let mut line = serde_json::to_string(record).map_err(|source| RunError::Json {
            path: path.clone(),
            source,
        })?;
        line.push('\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| RunError::io(&path, e))?;
        file.write_all(line.as_bytes())
            .map_err(|e| RunError::io(&path, e))
    }

    /// Write step `step`'s density as `rho_NNNNN.vti` (grid) or `rho_NNNNN.vtu` (cell shapes).
    fn write_vtk(&self, step: usize, rho: &ndarray::Array1<f64>) -> Result<(), RunError> {
        let fields = [("rho", rho)];
        let text = crate::vtk::image_data(&self.mesh, &fields)
            .or_else(|| crate::vtk::unstructured_grid(&self.mesh, &fields))
            .ok_or_else(|| {
                InputError::InvalidMesh(
                    "VTK output needs a grid or a mesh read from a file (cell shapes)".into(),
                )
            })?;
        self.write_text(&self.vtk_file(step), &text)
    }

    /// `rho_NNNNN.vti` on a grid, `rho_NNNNN.vtu` otherwise.
    fn vtk_file(&self, step: usize) -> String {
        let ext = if self.mesh.as_grid().is_some() {
            "vti"
        } else {
            "vtu"
        };
        format!("rho_{step:05}.{ext}")
    }

    /// Rewrite the `rho.pvd` series: steps 0..=last.
    fn write_pvd(&self) -> Result<(), RunError> {
        let tau = self.header.config.scheme.tau;
        let entries: Vec<(f64, String)> = (0..=self.last)
            .map(|n| (n as f64 * tau, self.vtk_file(n)))
            .collect();
        self.write_text("rho.pvd", &crate::vtk::collection(&entries))
    }
}

impl Observer for RunWriter {
    /// Writes `run.json` (status running) and, for a new run, ρ⁰ as `rho_00000.npy`.
    fn start(&mut self, state: &State) -> Result<(), RunError> {
        if self.initial {
            if let Some(source) = &self.mesh_source {
                let copy = self.dir.join(MESH_FILE);
                std::fs::copy(source, &copy).map_err(|e| RunError::io(&copy, e))?;
            }
            self.write_geometry()?;
            self.write_cells(&step_file("rho", 0), &state.rho)?;
            if self.vtk {
                self.write_vtk(0, &state.rho)?;
                self.write_pvd()?;
            }
        }
        self.write_header()
    }

    /// Writes the step's arrays, then appends its record (the step's commit point).
    fn step(&mut self, record: &StepRecord, output: &StepOutput) -> Result<(), RunError> {
        self.write_cells(&step_file("rho", record.step), &output.rho)?;
        if self.vtk {
            self.write_vtk(record.step, &output.rho)?;
        }
        if let Some(p) = &output.potential
            && p.len() == self.mesh.n_cells()
        {
            self.write_cells(&step_file("potential", record.step), p)?;
        }
        self.append_record(record)?;
        self.last = record.step;
        Ok(())
    }

    /// Records the status, the error and the peak memory in `run.json`, and rewrites the VTK
    /// series.
    fn finish(&mut self, end: &End<'_>) -> Result<(), RunError> {
        self.header.status = end.status;
        self.header.error = end.error.map(|e| e.to_string());
        self.header.peak_rss_kib = peak_rss_kib();
        if self.vtk {
            self.write_pvd()?;
        }
        self.write_header()
    }
}

/// The file name of step `step` for `prefix` (`rho` or `potential`): `rho_00012.npy`.
///
/// ```rust
/// assert_eq!(jko::output::step_file("rho", 12), "rho_00012.npy");
/// ```
pub fn step_file(prefix: &str, step: usize) -> String {
    format!("{prefix}_{step:05}.npy")
}

/// Peak resident set size of this process in KiB (Linux: VmHWM in /proc/self/status).
///
/// ```rust
/// if cfg!(target_os = "linux") {
///     assert!(jko::output::peak_rss_kib().unwrap() > 0);
/// }
/// ```
pub fn peak_rss_kib() -> Option<u64> {
    crate::plan::proc_number("/proc/self/status", "VmHWM:", 1)
}

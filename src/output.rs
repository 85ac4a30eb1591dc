//! Run output: one `rho_NNNNN.npy` per step (float64, shape = cells per axis, C order, density
//! values, masked cells 0; `rho_00000.npy` is the initial state), `potential_NNNNN.npy` when
//! the backend returns a dual potential (used to resume bit-identically), and `summary.json`
//! (config as run, solver and parameters, crate version, per-step records, run status).
//!
//! Every file is written to a temporary name and renamed, so a file that exists is complete;
//! `summary.json` is written last for each step and is the commit point used by `--resume`.
//! With VTK output on, `rho_NNNNN.vti` and the `rho.pvd` series are written too (see [`crate::vtk`]).
//!
//! Run directories are written by [`crate::run`] (`jko run --out DIR`); `--force` removes a
//! previous run's step files first, `--resume` continues from the last step recorded in
//! `summary.json`. To read one:
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
//! let summary: Summary = serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json"))?)?;
//! assert_eq!(summary.config, config);
//! let rho1 = read_npy(&dir.path().join(step_file("rho", 1)))?;
//! assert_eq!(rho1.shape(), &[20]);
//! // Cell volume 0.4: the density integrates to the recorded mass.
//! assert!((rho1.sum() * 0.4 - summary.steps[0].mass).abs() < 1e-12);
//! # Ok(())
//! # }
//! ```

use crate::config::{Config, read_npy};
use crate::driver::{Observer, StepRecord};
use crate::error::RunError;
use jko_core::{Mesh, StepOutput, WarmStart};
use ndarray::Array1;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The run status written in `summary.json`.
///
/// ```rust
/// use jko::output::RunStatus;
///
/// assert_eq!(serde_json::to_string(&RunStatus::Completed).unwrap(), r#""completed""#);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// The run is in progress, or its process was killed (resume it).
    Running,
    /// Every step of the config finished.
    Completed,
    /// Stopped between steps on request (Ctrl-C); resume it.
    Interrupted,
    /// A step failed; `error` in the summary says why.
    Failed,
}

/// Contents of `summary.json` (see the module docs for an example that reads one).
///
/// ```rust
/// use jko::config::Config;
/// use jko::output::{RunStatus, Summary};
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
/// let summary: Summary = serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json"))?)?;
/// assert_eq!((summary.status, summary.solver.as_str(), summary.mesh_cells), (RunStatus::Completed, "newton", 10));
/// assert!((summary.initial_mass - 2.0).abs() < 1e-12);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// Version of this crate that wrote the run.
    pub jko_version: String,
    /// The backend's name.
    pub solver: String,
    /// The config as run (after command-line overrides); `--resume` requires the same one
    /// up to `scheme.steps`.
    pub config: Config,
    /// Where the run stands.
    pub status: RunStatus,
    /// The error that ended a failed or interrupted run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Number of active cells of the mesh.
    pub mesh_cells: usize,
    /// Mass of ρ⁰, against which every step's mass is checked.
    pub initial_mass: f64,
    /// F_h(ρ⁰).
    pub initial_energy: f64,
    /// One record per finished step, in order; the last one is the resume point.
    pub steps: Vec<StepRecord>,
    /// Peak resident memory of the process (KiB) when the run ended, where the OS reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_kib: Option<u64>,
}

/// A run directory being written.
pub(crate) struct OutputDir {
    dir: PathBuf,
    mesh: Mesh,
    pub summary: Summary,
    /// Also write `rho_NNNNN.vti` per step and the `rho.pvd` time series.
    pub vtk: bool,
}

impl OutputDir {
    /// Create (or reuse) the directory. Refuses a directory that already holds a run unless
    /// `resume` is set.
    pub fn create(
        dir: &Path,
        mesh: &Mesh,
        summary: Summary,
        overwrite: bool,
    ) -> Result<Self, RunError> {
        std::fs::create_dir_all(dir).map_err(|e| RunError::io(dir, e))?;
        let existing = dir.join("summary.json");
        if existing.exists() && !overwrite {
            return Err(RunError::Config(format!(
                "{} already holds a run: use --resume to continue it, --force to overwrite it, or another --out",
                dir.display()
            )));
        }
        if overwrite {
            // Remove the previous run's step files so nothing stale looks like a result.
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().to_string();
                    let step_file = (name.starts_with("rho") || name.starts_with("potential_"))
                        && (name.ends_with(".npy")
                            || name.ends_with(".vti")
                            || name.ends_with(".pvd"));
                    if step_file {
                        std::fs::remove_file(e.path())
                            .map_err(|err| RunError::io(&e.path(), err))?;
                    }
                }
            }
        }
        Ok(OutputDir {
            dir: dir.to_path_buf(),
            mesh: mesh.clone(),
            summary,
            vtk: false,
        })
    }

    /// Open a run directory to resume it: returns the directory, the last finished step number,
    /// its density and warm start.
    pub fn resume(
        dir: &Path,
        mesh: &Mesh,
        config: &Config,
    ) -> Result<(Self, usize, Array1<f64>, Option<WarmStart>), RunError> {
        let path = dir.join("summary.json");
        let text = std::fs::read_to_string(&path).map_err(|e| RunError::io(&path, e))?;
        let mut summary: Summary = serde_json::from_str(&text)
            .map_err(|e| RunError::Resume(format!("{}: {e}", path.display())))?;
        let mut stored = summary.config.clone();
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
        let last = summary.steps.last().map_or(0, |r| r.step);
        let rho_path = dir.join(step_file("rho", last));
        let rho = mesh.from_grid_array("resumed density", &read_npy(&rho_path)?)?;
        let pot_path = dir.join(step_file("potential", last));
        let potential = if last > 0 && pot_path.exists() {
            Some(mesh.from_grid_array("resumed potential", &read_npy(&pot_path)?)?)
        } else {
            None
        };
        let warm = (last > 0).then(|| WarmStart {
            rho: Some(rho.clone()),
            potential,
        });
        summary.config = config.clone();
        summary.status = RunStatus::Running;
        summary.error = None;
        Ok((
            OutputDir {
                dir: dir.to_path_buf(),
                mesh: mesh.clone(),
                summary,
                vtk: false,
            },
            last,
            rho,
            warm,
        ))
    }

    /// Write cell values as a grid-shaped `.npy` (write-then-rename).
    pub fn write_cells(&self, name: &str, values: &Array1<f64>) -> Result<(), RunError> {
        let path = self.dir.join(name);
        let array = self
            .mesh
            .to_grid_array(values, 0.0)
            .ok_or_else(|| RunError::Config("output needs a grid mesh".into()))?;
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let file = std::fs::File::create(&tmp).map_err(|e| RunError::io(&tmp, e))?;
        ndarray_npy::WriteNpyExt::write_npy(&array, std::io::BufWriter::new(file)).map_err(
            |e| RunError::Npy {
                path: tmp.clone(),
                message: e.to_string(),
            },
        )?;
        std::fs::rename(&tmp, &path).map_err(|e| RunError::io(&path, e))
    }

    /// Write a text file (write-then-rename).
    fn write_text(&self, name: &str, text: &str) -> Result<(), RunError> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).map_err(|e| RunError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| RunError::io(&path, e))
    }

    /// Rewrite `summary.json`.
    pub fn write_summary(&self) -> Result<(), RunError> {
        let text = serde_json::to_string_pretty(&self.summary)
            .map_err(|e| RunError::Config(format!("cannot serialise the summary: {e}")))?;
        self.write_text("summary.json", &text)
    }

    /// Write step `step`'s density as `rho_NNNNN.vti` and rewrite the `rho.pvd` series
    /// (steps 0..=step, as recorded in the summary).
    pub fn write_vtk(&self, step: usize, rho: &Array1<f64>) -> Result<(), RunError> {
        let text = crate::vtk::image_data(&self.mesh, &[("rho", rho)])
            .ok_or_else(|| RunError::Config("VTK output needs a grid mesh".into()))?;
        self.write_text(&vti_file(step), &text)?;
        let tau = self.summary.config.scheme.tau;
        let entries: Vec<(f64, String)> =
            (0..=step).map(|n| (n as f64 * tau, vti_file(n))).collect();
        self.write_text("rho.pvd", &crate::vtk::collection(&entries))
    }

    /// Record the end of the run.
    pub fn finish(&mut self, status: RunStatus, error: Option<String>) -> Result<(), RunError> {
        self.summary.status = status;
        self.summary.error = error;
        self.summary.peak_rss_kib = peak_rss_kib();
        self.write_summary()
    }
}

impl Observer for OutputDir {
    fn observe(&mut self, record: &StepRecord, output: &StepOutput) -> Result<(), RunError> {
        self.write_cells(&step_file("rho", record.step), &output.rho)?;
        if self.vtk {
            self.write_vtk(record.step, &output.rho)?;
        }
        if let Some(p) = &output.potential
            && p.len() == self.mesh.n_cells()
        {
            self.write_cells(&step_file("potential", record.step), p)?;
        }
        self.summary.steps.push(record.clone());
        self.write_summary()
    }
}

fn vti_file(step: usize) -> String {
    format!("rho_{step:05}.vti")
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
pub(crate) fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Write a report as `STEM.json` (serde) and `STEM.md` (Markdown) into `dir`.
pub(crate) fn write_report<T: Serialize>(
    dir: &Path,
    stem: &str,
    report: &T,
    markdown: &str,
) -> Result<(), RunError> {
    std::fs::create_dir_all(dir).map_err(|e| RunError::io(dir, e))?;
    let json = serde_json::to_string_pretty(report).map_err(|e| RunError::Config(e.to_string()))?;
    for (name, text) in [
        (format!("{stem}.json"), json.as_str()),
        (format!("{stem}.md"), markdown),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| RunError::io(&path, e))?;
    }
    Ok(())
}

//! Solver comparison: `jko compare SUITE --out DIR` runs every (problem × size × backend) on
//! equal terms — same mesh, τ, initial state and steps; each backend at its default stopping
//! accuracy — each run in its own process (so peak memory is per run), and writes
//! `compare.json` and `compare.md`: time per step (median over steps and repeats), iterations,
//! peak memory, and the relative L1 error at the final time against the exact solution where
//! one is known (Gaussians with entropy and a quadratic potential, Barenblatt profiles,
//! `drift_box`), else against a named reference backend at the finest size (restricted to
//! coarser grids by cell averaging).
//!
//! A suite is a TOML file (built in: `quick`, `standard`, in `data/compare/`):
//! ```toml
//! repeats = 1
//! [[case]]
//! problem = "quartic-1d"      # a built-in example or a config path (relative to the suite)
//! sizes = [[200], [400]]      # mesh cells per run
//! steps = 10                  # optional overrides
//! tau = 0.05
//! backends = ["conic", "quantile"]   # default: every registered backend
//! reference = "quantile"      # reference backend where no exact solution is known
//! ```
//!
//! A suite may list failures it expects today (top-level `expected_failures`, see
//! [`ExpectedFailure`]); `jko compare SUITE --check` ([`CompareReport::check`]) fails on any
//! other failed run, so CI runs the robustness matrix `data/compare/robust-ci.toml` this way.

use crate::convergence::restrict;
use crate::error::ToolError;
use jko::backend::{BACKENDS, SolverConfig};
use jko::config::{Config, read_npy};
use jko::output::Summary;
use jko::reference::{ExactSolution, l1_relative};
use jko_core::{Mesh, shape_label};
use ndarray::Array1;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A comparison suite (the TOML format of the module docs).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Suite {
    #[serde(default = "one")]
    pub repeats: usize,
    #[serde(default)]
    pub expected_failures: Vec<ExpectedFailure>,
    #[serde(rename = "case")]
    pub cases: Vec<Case>,
}

fn one() -> usize {
    1
}

/// One `[[case]]` of a suite.
#[skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Case {
    pub problem: String,
    pub sizes: Vec<Vec<usize>>,
    pub steps: Option<usize>,
    pub tau: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<String>,
    pub reference: Option<String>,
}

/// A failure a suite expects today: a known bug of `backend` on `problem` (at every size, or
/// at `cells`), to be fixed under `issue`. [`CompareReport::check`] accepts it and reports it
/// as fixed once it passes.
///
/// ```rust
/// use jko_cli::compare::ExpectedFailure;
///
/// let e: ExpectedFailure =
///     toml::from_str("problem = \"ou-1d\"\nbackend = \"flow\"\nissue = 15").unwrap();
/// assert!(e.cells.is_none() && e.issue == 15);
/// ```
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedFailure {
    /// The case's problem, as the suite names it.
    pub problem: String,
    /// The backend that fails.
    pub backend: String,
    /// Only at these cells per axis (default: every size of the problem's cases).
    pub cells: Option<Vec<usize>>,
    /// The issue whose fix removes this entry.
    pub issue: u32,
}

impl ExpectedFailure {
    /// Whether this entry is about `row`'s run.
    fn matches(&self, row: &CompareRow) -> bool {
        self.problem == row.problem
            && self.backend == row.backend
            && self.cells.as_ref().is_none_or(|c| *c == row.cells)
    }
}

/// Built-in suites: (name, TOML).
pub(crate) const SUITES: &[(&str, &str)] = &[
    ("quick", include_str!("../../data/compare/quick.toml")),
    ("standard", include_str!("../../data/compare/standard.toml")),
];

impl Suite {
    /// A built-in suite by name, or a suite file. Returns the suite and the base directory
    /// for relative problem paths.
    pub(crate) fn load(name_or_path: &str) -> Result<(Suite, PathBuf), ToolError> {
        let (text, base) = match SUITES.iter().find(|s| s.0 == name_or_path) {
            Some((_, text)) => (text.to_string(), PathBuf::from(".")),
            None => {
                let path = Path::new(name_or_path);
                if !path.exists() {
                    return Err(ToolError::option(
                        "suite",
                        format!(
                            "no built-in suite `{name_or_path}` (known: {}) and no such file",
                            SUITES.iter().map(|s| s.0).collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
                let text = std::fs::read_to_string(path).map_err(|e| ToolError::io(path, e))?;
                (text, path.parent().unwrap_or(Path::new(".")).to_path_buf())
            }
        };
        let suite: Suite = toml::from_str(&text).map_err(|e| ToolError::Toml {
            origin: format!("suite {name_or_path}"),
            source: Box::new(e),
        })?;
        if suite.repeats == 0 {
            return Err(ToolError::option("suite.repeats", "must be >= 1"));
        }
        // An expected failure must name a run of the suite, or it would silently go stale.
        for e in &suite.expected_failures {
            let runs = suite.cases.iter().any(|c| {
                c.problem == e.problem
                    && e.cells.as_ref().is_none_or(|cells| c.sizes.contains(cells))
                    && (c.backends.is_empty() || c.backends.contains(&e.backend))
            });
            if jko::backend::find(&e.backend).is_err() || !runs {
                return Err(ToolError::option(
                    "suite.expected_failures",
                    format!(
                        "{} with `{}`{} is not a run of this suite",
                        e.problem,
                        e.backend,
                        e.cells
                            .as_ref()
                            .map_or(String::new(), |c| format!(" at {c:?}"))
                    ),
                ));
            }
        }
        Ok((suite, base))
    }
}

/// One table row: one backend on one problem at one mesh size.
///
/// ```rust
/// use jko_cli::compare::CompareRow;
///
/// let row: CompareRow = serde_json::from_str(r#"{"problem": "porous-1d", "cells": [100],
///     "backend": "flow", "tau": 0.01, "steps": 5, "status": "unsupported: porous"}"#).unwrap();
/// assert!(row.error.is_none() && row.status.starts_with("unsupported"));
/// ```
#[skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompareRow {
    /// The case's problem (a built-in example name or a config path).
    pub problem: String,
    /// Cells per axis.
    pub cells: Vec<usize>,
    /// The backend's name.
    pub backend: String,
    /// Time step.
    pub tau: f64,
    /// Number of steps.
    pub steps: usize,
    /// `ok`, `unsupported: …` or `failed: …`.
    pub status: String,
    /// Median solve time of one step over steps and repeats (s).
    pub time_per_step: Option<f64>,
    /// Wall time of the whole `jko run` process (s).
    pub total_time: Option<f64>,
    /// Mean backend iterations per step.
    pub iterations_per_step: Option<f64>,
    /// Peak resident memory of the run's process (MiB), where the OS reports it.
    pub peak_rss_mib: Option<f64>,
    /// Relative L1 error at the final time.
    pub error: Option<f64>,
    /// What `error` is measured against.
    pub error_against: Option<String>,
}

/// The report of `jko compare`, written as `compare.json` and `compare.md`.
///
/// ```rust
/// use jko_cli::compare::CompareReport;
///
/// let json = r#"{"suite": "quick", "machine": "m", "jko_version": "0.1.0", "rows": []}"#;
/// let report: CompareReport = serde_json::from_str(json).unwrap();
/// assert!(report.markdown().starts_with("Suite `quick`, jko 0.1.0, on m."));
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompareReport {
    /// The suite's name or path, as given.
    pub suite: String,
    /// CPU, core count and OS of the machine that ran it.
    pub machine: String,
    /// Version of this crate.
    pub jko_version: String,
    /// One row per (case, size, backend), in suite order.
    pub rows: Vec<CompareRow>,
    /// The failures the suite expects today (see [`CompareReport::check`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected_failures: Vec<ExpectedFailure>,
}

/// What [`CompareReport::check`] found: the failed runs the suite does not expect, the expected
/// ones, and the expected failures that no longer fail.
#[derive(Debug, Clone, Default)]
pub struct CheckOutcome {
    /// Failed runs that no expected failure covers: bugs.
    pub unexpected: Vec<CompareRow>,
    /// Failed runs covered by an expected failure, with its issue.
    pub expected: Vec<(CompareRow, u32)>,
    /// Expected failures whose runs all passed (or were refused): delete them from the suite.
    pub fixed: Vec<ExpectedFailure>,
}

/// The finished run of one backend on one mesh.
struct RunOutcome {
    mesh: Mesh,
    rho: Array1<f64>,
    summary: Summary,
    elapsed: f64,
}

/// The problem's name as one path component of a run directory: a built-in example's name
/// as it is, a problem file's path with its separators replaced (an absolute path must not
/// take the run out of `--out`).
fn problem_tag(problem: &str) -> String {
    problem
        .trim_start_matches(['/', '\\'])
        .replace(['/', '\\'], "_")
}

/// Run the suite `suite_name` (a built-in suite, `quick` or `standard`, or a suite file):
/// `jko compare SUITE --out DIR`. `jko_exe` is the `jko` binary used for the isolated runs;
/// `work` holds their output directories (one per run, `PROBLEM-CELLS-BACKEND/`, with the
/// config written and the run directory). `progress` sees every row as it is finished.
///
/// A backend that does not treat the problem's energy gets a row with status
/// `unsupported: TERM`; a failed run gets `failed: MESSAGE` — neither stops the suite.
///
/// # Errors
/// [`ToolError::Option`] / [`ToolError::Toml`] for an unknown or malformed suite,
/// [`jko::error::RunError`] for a malformed config, [`ToolError::Failed`] for a failed
/// reference run (nothing to measure the others against).
///
/// ```rust,no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Takes about a minute; needs the `jko` binary (`cargo build --release -p jko-cli`).
/// let exe = std::path::Path::new("target/release/jko");
/// let report = jko_cli::compare::compare("quick", exe, "out/compare/runs".as_ref(), &mut |row| {
///     eprintln!("{} {} {}", row.problem, row.backend, row.status);
/// })?;
/// report.write("out/compare".as_ref())?;
/// assert!(report.rows.iter().any(|r| r.backend == "conic" && r.status == "ok"));
/// # Ok(())
/// # }
/// ```
pub fn compare(
    suite_name: &str,
    jko_exe: &Path,
    work: &Path,
    progress: &mut dyn FnMut(&CompareRow),
) -> Result<CompareReport, ToolError> {
    let (suite, base) = Suite::load(suite_name)?;
    let mut rows = Vec::new();
    for case in &suite.cases {
        let (mut config, config_base) = match jko::examples::example(&case.problem) {
            Some(text) => (Config::from_toml(text)?, base.clone()),
            None => {
                let path = base.join(&case.problem);
                (
                    Config::from_file(&path)?,
                    path.parent().unwrap_or(Path::new(".")).to_path_buf(),
                )
            }
        };
        if let Some(s) = case.steps {
            config.scheme.steps = s;
        }
        if let Some(t) = case.tau {
            config.scheme.tau = t;
        }
        let final_time = config.scheme.tau * config.scheme.steps as f64;
        let backends: Vec<String> = if case.backends.is_empty() {
            BACKENDS.iter().map(|b| b.name.to_string()).collect()
        } else {
            case.backends.clone()
        };
        let sized = |cells: &Vec<usize>, backend: &str| -> Result<Config, ToolError> {
            let mut c = config.clone();
            c.mesh.cells = cells.clone();
            c.solver = SolverConfig::default_for(backend)?;
            Ok(c)
        };
        // Reference where no exact solution is known: the reference backend at the finest size.
        let finest = case
            .sizes
            .iter()
            .max_by_key(|s| s.iter().product::<usize>())
            .cloned()
            .unwrap_or_default();
        let probe = sized(&finest, "conic")?.build(&config_base)?;
        let exact =
            ExactSolution::detect(&config, &probe)?.filter(|e| e.fits(&probe.mesh, final_time));
        let mut reference: Option<(String, RunOutcome)> = None;
        if exact.is_none() {
            let name = case.reference.clone().unwrap_or_else(|| "conic".into());
            let dir = work.join(format!(
                "{}-{}-{}-reference",
                problem_tag(&case.problem),
                shape_label(&finest),
                name
            ));
            let outcome = run_isolated(
                jko_exe,
                &sized(&finest, &name)?,
                &config_base,
                &dir,
                suite.repeats,
            )
            .map_err(|e| {
                ToolError::failed(
                    format!("{}: the reference run with `{name}`", case.problem),
                    ToolError::option("run", e),
                )
            })?;
            reference = Some((name, outcome));
        }
        for cells in &case.sizes {
            for backend in &backends {
                let c = sized(cells, backend)?;
                let mut row = CompareRow {
                    problem: case.problem.clone(),
                    cells: cells.clone(),
                    backend: backend.clone(),
                    tau: c.scheme.tau,
                    steps: c.scheme.steps,
                    status: "ok".into(),
                    time_per_step: None,
                    total_time: None,
                    iterations_per_step: None,
                    peak_rss_mib: None,
                    error: None,
                    error_against: None,
                };
                let solver = c.solver.build()?;
                let problem = c.build(&config_base)?;
                let refused = solver.check_supported(&problem.mesh, &problem.energy.terms());
                if let Err(e) = refused {
                    row.status = match e {
                        jko_core::StepError::Unsupported { term, .. } => {
                            format!("unsupported: {term}")
                        }
                        jko_core::StepError::UnsupportedMesh { reason, .. } => {
                            format!("unsupported mesh: {reason}")
                        }
                        other => format!("unsupported: {other}"),
                    };
                } else {
                    let dir = work.join(format!(
                        "{}-{}-{}",
                        problem_tag(&case.problem),
                        shape_label(cells),
                        backend
                    ));
                    let is_reference = reference.as_ref().is_some_and(|(name, _)| name == backend)
                        && *cells == finest;
                    if let (true, Some((_, r))) = (is_reference, &reference) {
                        row.status = "ok (the reference)".into();
                        row.time_per_step = median_step_time(&r.summary);
                        row.total_time = Some(r.elapsed);
                        row.peak_rss_mib = r.summary.header.peak_rss_kib.map(|k| k as f64 / 1024.0);
                        progress(&row);
                        rows.push(row);
                        continue;
                    }
                    match run_isolated(jko_exe, &c, &config_base, &dir, suite.repeats) {
                        Err(e) => row.status = format!("failed: {e}"),
                        Ok(out) => {
                            row.time_per_step = median_step_time(&out.summary);
                            row.total_time = Some(out.elapsed);
                            let its: usize = out.summary.steps.iter().map(|r| r.iterations).sum();
                            row.iterations_per_step =
                                Some(its as f64 / out.summary.steps.len().max(1) as f64);
                            row.peak_rss_mib =
                                out.summary.header.peak_rss_kib.map(|k| k as f64 / 1024.0);
                            let (error, against) = match (&exact, &reference) {
                                (Some(ex), _) => (
                                    Some(l1_relative(
                                        &out.mesh,
                                        &out.rho,
                                        &ex.density(&out.mesh, final_time),
                                    )),
                                    format!("exact: {}", ex.name()),
                                ),
                                (None, Some((name, r))) => (
                                    restrict(&r.mesh, &r.rho, &out.mesh)
                                        .ok()
                                        .map(|rr| l1_relative(&out.mesh, &out.rho, &rr)),
                                    format!("{name} at {}", shape_label(&finest)),
                                ),
                                (None, None) => (None, "none".into()),
                            };
                            row.error = error;
                            row.error_against = Some(against);
                        }
                    }
                }
                progress(&row);
                rows.push(row);
            }
        }
    }
    Ok(CompareReport {
        suite: suite_name.to_string(),
        machine: machine(),
        jko_version: env!("CARGO_PKG_VERSION").to_string(),
        rows,
        expected_failures: suite.expected_failures,
    })
}

fn median_step_time(summary: &Summary) -> Option<f64> {
    let mut times: Vec<f64> = summary.steps.iter().map(|r| r.wall_time).collect();
    times.sort_by(f64::total_cmp);
    times.get(times.len() / 2).copied()
}

/// Run a config in a separate `jko run` process (`repeats` times; the last run's output is
/// kept, the step times of all runs are pooled). A failure is the message for the table: the
/// first line the run printed, or what went wrong around it.
fn run_isolated(
    jko_exe: &Path,
    config: &Config,
    base: &Path,
    dir: &Path,
    repeats: usize,
) -> Result<RunOutcome, String> {
    match run_isolated_inner(jko_exe, config, base, dir, repeats) {
        Ok(Ok(outcome)) => Ok(outcome),
        Ok(Err(message)) => Err(message),
        Err(e) => Err(e.to_string()),
    }
}

/// The outcome of the runs (`Err`: the failed run's first line), or an error around them.
fn run_isolated_inner(
    jko_exe: &Path,
    config: &Config,
    base: &Path,
    dir: &Path,
    repeats: usize,
) -> Result<Result<RunOutcome, String>, ToolError> {
    std::fs::create_dir_all(dir).map_err(|e| ToolError::io(dir, e))?;
    let cfg_path = dir.join("config.toml");
    let mut config = config.clone();
    // Paths in the config are relative to its original directory.
    let absolute = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    if let Some(m) = &config.mesh.mask {
        config.mesh.mask = Some(absolute(m));
    }
    if let jko::config::InitialConfig::Npy { path, .. } = &mut config.initial {
        *path = absolute(path);
    }
    if let Some(jko::config::PotentialConfig::Npy { path }) = &mut config.energy.potential {
        *path = absolute(path);
    }
    std::fs::write(&cfg_path, config.to_toml()).map_err(|e| ToolError::io(&cfg_path, e))?;
    let out = dir.join("run");
    let mut pooled = Vec::new();
    let mut elapsed = 0.0;
    let mut summary: Option<Summary> = None;
    for _ in 0..repeats {
        let start = std::time::Instant::now();
        let result = Command::new(jko_exe)
            .arg("run")
            .arg(&cfg_path)
            .arg("--out")
            .arg(&out)
            .args(["--force", "--quiet"])
            .output()
            .map_err(|e| ToolError::io(jko_exe, e))?;
        elapsed = start.elapsed().as_secs_f64();
        if !result.status.success() {
            let msg = String::from_utf8_lossy(&result.stderr);
            let first = msg
                .lines()
                .next()
                .unwrap_or("unknown error")
                .trim_start_matches("error: ");
            return Ok(Err(first.to_string()));
        }
        let s = Summary::read(&out)?;
        pooled.extend(s.steps.iter().cloned());
        summary = Some(s);
    }
    let Some(mut summary) = summary else {
        return Ok(Err("no run (repeats = 0)".into()));
    };
    let last = summary.steps.last().map_or(0, |r| r.step);
    let mesh = config.mesh.build(base)?;
    let rho = mesh.from_grid_array(
        "final density",
        &read_npy(&out.join(jko::output::step_file("rho", last)))?,
    )?;
    summary.steps = pooled;
    Ok(Ok(RunOutcome {
        mesh,
        rho,
        summary,
        elapsed,
    }))
}

/// A one-line description of this machine.
pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("PRETTY_NAME="))
                .map(|l| l[12..].trim_matches('"').to_string())
        })
        .unwrap_or_else(|| std::env::consts::OS.to_string());
    format!("{cpu}, {cores} cores, {os}")
}

impl CompareReport {
    /// The table in Markdown (what `jko compare` prints and writes as `compare.md`); the
    /// `error × time` column is the L1 error times the total run time (smaller is better).
    ///
    /// ```rust
    /// use jko_cli::compare::{CompareReport, CompareRow};
    ///
    /// let row = CompareRow {
    ///     problem: "ou-1d".into(),
    ///     cells: vec![100],
    ///     backend: "newton".into(),
    ///     tau: 0.1,
    ///     steps: 5,
    ///     status: "ok".into(),
    ///     time_per_step: Some(2e-3),
    ///     total_time: Some(0.5),
    ///     iterations_per_step: Some(6.0),
    ///     peak_rss_mib: None,
    ///     error: Some(1e-2),
    ///     error_against: Some("exact: Ornstein-Uhlenbeck (Gaussian)".into()),
    /// };
    /// let report = CompareReport {
    ///     suite: "mine".into(),
    ///     machine: "test".into(),
    ///     jko_version: "0.1.0".into(),
    ///     rows: vec![row],
    ///     expected_failures: vec![],
    /// };
    /// let md = report.markdown();
    /// assert!(md.contains("| ou-1d | 100 | newton | 0.1 × 5 | 2.00e-3 | 0.50 | 6.0 | - | 1.00e-2 | 5.00e-3 |"));
    /// ```
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Suite `{}`, jko {}, on {}.\n",
            self.suite, self.jko_version, self.machine
        );
        let _ = writeln!(
            s,
            "| problem | cells | backend | τ × steps | time/step (s) | total (s) | it/step | peak MiB | L1 error | error × time | against | status |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|");
        let f = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |x| format!("{x:.p$}"));
        let e = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.2e}"));
        for r in &self.rows {
            let err_time = r.error.zip(r.total_time).map(|(a, b)| a * b);
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} × {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.problem,
                shape_label(&r.cells),
                r.backend,
                r.tau,
                r.steps,
                e(r.time_per_step),
                f(r.total_time, 2),
                f(r.iterations_per_step, 1),
                f(r.peak_rss_mib, 0),
                e(r.error),
                e(err_time),
                r.error_against.as_deref().unwrap_or("-"),
                r.status
            );
        }
        s
    }

    /// The robustness verdict: every row whose run failed (status `failed: …`) is either
    /// covered by one of the suite's expected failures or a bug. A refusal before the first
    /// step (`unsupported: …`) is outside the backend's domain and not a failure.
    ///
    /// ```rust
    /// use jko_cli::compare::{CompareReport, CompareRow, ExpectedFailure};
    ///
    /// let row = |backend: &str, status: &str| CompareRow {
    ///     problem: "ou-1d".into(), cells: vec![64], backend: backend.into(), tau: 0.1,
    ///     steps: 3, status: status.into(), time_per_step: None, total_time: None,
    ///     iterations_per_step: None, peak_rss_mib: None, error: None, error_against: None,
    /// };
    /// let expect = |backend: &str| ExpectedFailure {
    ///     problem: "ou-1d".into(), backend: backend.into(), cells: None, issue: 15,
    /// };
    /// let report = CompareReport {
    ///     suite: "ci".into(), machine: "m".into(), jko_version: "0.1.0".into(),
    ///     rows: vec![row("flow", "failed: step 3: ..."), row("newton", "ok"),
    ///                row("sinkhorn", "failed: step 1: ..."), row("quantile", "unsupported: x")],
    ///     expected_failures: vec![expect("flow"), expect("newton")],
    /// };
    /// let outcome = report.check();
    /// assert_eq!(outcome.unexpected.len(), 1);
    /// assert_eq!(outcome.unexpected[0].backend, "sinkhorn");
    /// assert_eq!(outcome.expected[0].1, 15);
    /// assert_eq!(outcome.fixed, vec![expect("newton")]);
    /// ```
    pub fn check(&self) -> CheckOutcome {
        let failed = |r: &CompareRow| r.status.starts_with("failed");
        let mut outcome = CheckOutcome::default();
        for row in self.rows.iter().filter(|r| failed(r)) {
            match self.expected_failures.iter().find(|e| e.matches(row)) {
                Some(e) => outcome.expected.push((row.clone(), e.issue)),
                None => outcome.unexpected.push(row.clone()),
            }
        }
        outcome.fixed = self
            .expected_failures
            .iter()
            .filter(|e| !self.rows.iter().any(|r| failed(r) && e.matches(r)))
            .cloned()
            .collect();
        outcome
    }

    /// Write `compare.json` and `compare.md` into `dir` (created if needed).
    ///
    /// # Errors
    /// [`ToolError::Io`] when `dir` or a file cannot be written.
    ///
    /// ```rust
    /// use jko_cli::compare::CompareReport;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let report = CompareReport {
    ///     suite: "mine".into(),
    ///     machine: "test".into(),
    ///     jko_version: "0.1.0".into(),
    ///     rows: vec![],
    ///     expected_failures: vec![],
    /// };
    /// let dir = tempfile::tempdir()?;
    /// report.write(dir.path())?;
    /// assert!(std::fs::read_to_string(dir.path().join("compare.md"))?.starts_with("Suite `mine`"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn write(&self, dir: &Path) -> Result<(), ToolError> {
        crate::write_report(dir, "compare", self, &self.markdown())
    }
}

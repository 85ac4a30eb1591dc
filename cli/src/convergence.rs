//! Convergence reports: `jko convergence CONFIG --refine h,tau[,levels]` runs a refinement
//! sequence (each level halves h and/or τ — at fixed final time — and/or doubles the number of
//! Benamou–Brenier time levels), measures the relative L1 error at the final time against the
//! exact solution when one is known (Gaussians with entropy and a quadratic potential,
//! Barenblatt profiles while their support stays inside the box, `drift_box`) or against the
//! finest run otherwise (restricted to the coarser grid by cell averaging), and writes
//! `convergence.json` and `convergence.md` with the observed orders.

use crate::error::ToolError;
use jko::RunOptions;
use jko::config::Config;
use jko::reference::{ExactSolution, l1_relative};
use jko_core::Mesh;
use ndarray::Array1;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use std::fmt::Write;
use std::path::Path;

/// What a refinement sequence refines (`--refine h,tau[,levels]`); level i of the sequence
/// multiplies each refined parameter's resolution by 2^i.
///
/// ```rust
/// use jko_cli::convergence::Refine;
///
/// assert_eq!(Refine::parse("h,tau").unwrap(), Refine { h: true, tau: true, levels: false });
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refine {
    /// Halve the cell width: double the cells on every axis.
    pub h: bool,
    /// Halve τ and double the number of steps (same final time).
    pub tau: bool,
    /// Double the Benamou–Brenier time levels (a `conic` backend with `levels`).
    pub levels: bool,
}

impl Refine {
    /// Parse `h,tau[,levels]` (any non-empty subset, comma separated).
    ///
    /// # Errors
    /// [`ToolError::Option`] naming an unknown part, or for an empty list.
    ///
    /// ```rust
    /// use jko_cli::convergence::Refine;
    ///
    /// let r = Refine::parse("tau, levels").unwrap();
    /// assert!(r.tau && r.levels && !r.h);
    /// assert!(Refine::parse("h,dt").unwrap_err().to_string().contains("`dt`"));
    /// assert!(Refine::parse("").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Refine, ToolError> {
        let mut r = Refine::default();
        for part in text.split(',').map(str::trim) {
            match part {
                "h" => r.h = true,
                "tau" => r.tau = true,
                "levels" => r.levels = true,
                other => {
                    return Err(ToolError::option(
                        "--refine",
                        format!(
                            "unknown parameter `{other}`; use a comma-separated subset of h, tau, levels"
                        ),
                    ));
                }
            }
        }
        if !(r.h || r.tau || r.levels) {
            return Err(ToolError::option(
                "--refine",
                "needs at least one of h, tau, levels",
            ));
        }
        Ok(r)
    }

    fn against(&self) -> &'static str {
        if self.h {
            "h"
        } else if self.tau {
            "tau"
        } else {
            "levels"
        }
    }
}

/// One refinement level of a [`ConvergenceReport`].
///
/// ```rust
/// use jko_cli::convergence::ConvergenceRow;
///
/// let row: ConvergenceRow = serde_json::from_str(r#"{"label": "conic", "cells": [64],
///     "h": 0.15625, "tau": 0.1, "steps": 10, "error": 0.012, "wall_time": 1.5}"#).unwrap();
/// assert!(row.order.is_none() && row.levels.is_none());
/// ```
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvergenceRow {
    /// The backend's name.
    pub label: String,
    /// Cells per axis.
    pub cells: Vec<usize>,
    /// Smallest cell width.
    pub h: f64,
    /// Time step.
    pub tau: f64,
    /// Number of steps (τ · steps is the same on every row).
    pub steps: usize,
    /// Benamou–Brenier time levels, for a multi-level backend.
    pub levels: Option<usize>,
    /// Relative L1 error at the final time.
    pub error: f64,
    /// ln(e_prev/e)/ln(2): the observed order per halving.
    pub order: Option<f64>,
    /// Relative L1 distance to the exact JKO iterates (exact W²), where known.
    pub error_jko: Option<f64>,
    /// Observed order of `error_jko`.
    pub order_jko: Option<f64>,
    /// Total solve time (s).
    pub wall_time: f64,
}

/// The report of `jko convergence`, written as `convergence.json` and `convergence.md` (and
/// drawn by `jko plot` as `convergence.png`). See [`convergence`] for one computed.
///
/// ```rust
/// use jko_cli::convergence::ConvergenceReport;
///
/// let json = r#"{"quantity": "relative L1 error at t = 1", "against": "h",
///     "reference": "finest run", "final_time": 1.0, "solver": "newton", "rows": []}"#;
/// let report: ConvergenceReport = serde_json::from_str(json).unwrap();
/// assert!(report.markdown().starts_with("Convergence of the `newton` backend"));
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConvergenceReport {
    /// What `error` measures.
    pub quantity: String,
    /// The refined parameter the orders refer to (`h`, `tau` or `levels`).
    pub against: String,
    /// `exact: NAME` or `finest run`.
    pub reference: String,
    /// The time at which errors are measured, τ · steps.
    pub final_time: f64,
    /// The backend's name.
    pub solver: String,
    /// One row per level, coarsest first. Against the finest run, the finest level has no row.
    pub rows: Vec<ConvergenceRow>,
}

/// Run the refinement sequence with `runs` levels (≥ 2): `jko convergence CONFIG --refine ...
/// --runs N`. Each level is a whole run of [`jko::run`] without output (paths in the config
/// relative to `base`); `progress` sees every row as it is finished. The error is the
/// relative L1 error at the final time against the exact solution when the engine knows one
/// for the config (Gaussians with entropy and a quadratic potential, Barenblatt profiles,
/// `drift_box`), else against the finest run.
///
/// # Errors
/// [`ToolError::Option`] for `runs < 2`; [`jko::error::RunError`] for `--refine levels` on a
/// backend without levels and any error of the runs (an invariant violated, a backend failure).
///
/// ```rust
/// use jko::config::Config;
/// use jko_cli::convergence::{Refine, convergence};
/// use std::path::Path;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Ornstein–Uhlenbeck from N(1, 0.5²), refined in h and τ together.
/// let config = Config::from_toml(r#"
///     mesh = { cells = [40], lower = [-5.0], upper = [5.0] }
///     initial = { kind = "gaussian", mean = [1.0], std = [0.5] }
///     energy = { entropy = 1.0, potential = { kind = "quadratic" } }
///     scheme = { tau = 0.2, steps = 2 }
///     solver = { kind = "newton" }
/// "#)?;
/// let refine = Refine::parse("h,tau")?;
/// let report = convergence(&config, Path::new("."), refine, 2, &mut |_| {})?;
/// assert_eq!(report.reference, "exact: Ornstein-Uhlenbeck (Gaussian)");
/// assert_eq!((report.rows[1].cells[0], report.rows[1].steps), (80, 4));
/// // First order: the error halves with h and τ.
/// let order = report.rows[1].order.unwrap();
/// assert!(order > 0.7 && order < 1.5, "order {order}");
/// # Ok(())
/// # }
/// ```
pub fn convergence(
    config: &Config,
    base: &Path,
    refine: Refine,
    runs: usize,
    progress: &mut dyn FnMut(&ConvergenceRow),
) -> Result<ConvergenceReport, ToolError> {
    if runs < 2 {
        return Err(ToolError::option(
            "--runs",
            "a convergence study needs at least 2 runs",
        ));
    }
    let final_time = config.scheme.tau * config.scheme.steps as f64;
    let mut results: Vec<(Config, Mesh, Array1<f64>, f64)> = Vec::new();
    for i in 0..runs {
        let factor = 1usize << i;
        let mut c = config.clone();
        if refine.h {
            c.mesh.cells = config.mesh.cells.iter().map(|n| n * factor).collect();
        }
        if refine.tau {
            c.scheme.tau = config.scheme.tau / factor as f64;
            c.scheme.steps = config.scheme.steps * factor;
        }
        if refine.levels {
            c.solver.backend = c.solver.backend.with_levels_scaled(factor)?;
        }
        let start = std::time::Instant::now();
        let result = jko::run(&c, base, &RunOptions::default(), &mut [], &|| false)?;
        let elapsed = start.elapsed().as_secs_f64();
        results.push((c, result.mesh, result.rho, elapsed));
    }
    let problem = config.build(base)?;
    let exact = ExactSolution::detect(config, &problem)?;
    let mut rows: Vec<ConvergenceRow> = Vec::new();
    let label = config.solver.name().to_string();
    let finest = results.len() - 1;
    for (i, (c, mesh, rho, wall)) in results.iter().enumerate() {
        let (error, error_jko) = match &exact {
            Some(ex) if ex.fits(mesh, final_time) => {
                let e = l1_relative(mesh, rho, &ex.density(mesh, final_time));
                let ej = ex
                    .jko_density(mesh, c.scheme.tau, c.scheme.steps)
                    .map(|j| l1_relative(mesh, rho, &j));
                (e, ej)
            }
            _ => {
                if i == finest {
                    break;
                }
                let (_, fine_mesh, fine_rho, _) = &results[finest];
                let restricted = restrict(fine_mesh, fine_rho, mesh)?;
                (l1_relative(mesh, rho, &restricted), None)
            }
        };
        let order = rows
            .last()
            .map(|p: &ConvergenceRow| (p.error / error).ln() / 2f64.ln());
        let order_jko = rows
            .last()
            .and_then(|p| p.error_jko.zip(error_jko))
            .map(|(a, b)| (a / b).ln() / 2f64.ln());
        let row = ConvergenceRow {
            label: label.clone(),
            cells: c.mesh.cells.clone(),
            h: mesh.min_distance(),
            tau: c.scheme.tau,
            steps: c.scheme.steps,
            levels: c.solver.backend.levels(),
            error,
            order,
            error_jko,
            order_jko,
            wall_time: *wall,
        };
        progress(&row);
        rows.push(row);
    }
    let reference = match &exact {
        Some(ex) if ex.fits(&results[finest].1, final_time) => format!("exact: {}", ex.name()),
        _ => "finest run".to_string(),
    };
    Ok(ConvergenceReport {
        quantity: format!("relative L1 error at t = {final_time}"),
        against: refine.against().to_string(),
        reference,
        final_time,
        solver: label,
        rows,
    })
}

/// Average a fine grid density onto a coarser grid whose cells it refines by an integer
/// factor per axis (masked fine cells carry no mass; coarse cells average their active
/// children by volume).
pub(crate) fn restrict(
    fine: &Mesh,
    rho: &Array1<f64>,
    coarse: &Mesh,
) -> Result<Array1<f64>, ToolError> {
    let (Some(fg), Some(cg)) = (fine.as_grid(), coarse.as_grid()) else {
        return Err(ToolError::Unsuited {
            tool: "restriction to a coarser run",
            what: "grid meshes".into(),
        });
    };
    let d = cg.cells.len();
    let ratio: Vec<usize> = (0..d).map(|a| fg.cells[a] / cg.cells[a]).collect();
    if (0..d).any(|a| ratio[a] == 0 || fg.cells[a] != ratio[a] * cg.cells[a])
        || fg.lower != cg.lower
        || fg.upper != cg.upper
    {
        return Err(ToolError::Unsuited {
            tool: "restriction to a coarser run",
            what: format!(
                "a fine grid that refines the coarse one by whole cells (got {:?} and {:?})",
                fg.cells, cg.cells
            ),
        });
    }
    // Both are grids (checked above), so the arrays exist.
    let fine_values = fine.to_grid_array(rho, 0.0).unwrap_or_default();
    let fine_active = fine
        .to_grid_array(&Array1::ones(fine.n_cells()), 0.0)
        .unwrap_or_default();
    let (fv, fa) = (
        fine_values.as_slice().unwrap_or(&[]),
        fine_active.as_slice().unwrap_or(&[]),
    );
    let fstride = |a: usize| -> usize { (a + 1..d).map(|b| fg.cells[b]).product() };
    let cstride = |a: usize| -> usize { (a + 1..d).map(|b| cg.cells[b]).product() };
    let mut sum = vec![0.0; cg.len()];
    let mut count = vec![0.0; cg.len()];
    for gi in 0..fg.len() {
        let mut ci = 0;
        for (a, r) in ratio.iter().enumerate() {
            let ia = (gi / fstride(a)) % fg.cells[a];
            ci += (ia / r) * cstride(a);
        }
        sum[ci] += fv[gi];
        count[ci] += fa[gi];
    }
    Ok(Array1::from_iter(coarse.grid_index().iter().map(|&ci| {
        if count[ci] > 0.0 {
            sum[ci] / count[ci]
        } else {
            0.0
        }
    })))
}

impl ConvergenceReport {
    /// The Markdown table (what `jko convergence` prints and writes as `convergence.md`).
    ///
    /// ```rust
    /// use jko_cli::convergence::{ConvergenceReport, ConvergenceRow};
    ///
    /// let row = ConvergenceRow {
    ///     label: "newton".into(),
    ///     cells: vec![40],
    ///     h: 0.25,
    ///     tau: 0.1,
    ///     steps: 10,
    ///     levels: None,
    ///     error: 2e-2,
    ///     order: None,
    ///     error_jko: None,
    ///     order_jko: None,
    ///     wall_time: 0.5,
    /// };
    /// let report = ConvergenceReport {
    ///     quantity: "relative L1 error at t = 1".into(),
    ///     against: "h".into(),
    ///     reference: "finest run".into(),
    ///     final_time: 1.0,
    ///     solver: "newton".into(),
    ///     rows: vec![row],
    /// };
    /// assert!(report.markdown().contains("| [40] | 2.5000e-1 | 1.0000e-1 | 10 | - | 2.000e-2 |"));
    /// ```
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Convergence of the `{}` backend: {} against {}.\n",
            self.solver, self.quantity, self.reference
        );
        let _ = writeln!(
            s,
            "| cells | h | τ | steps | levels | error | order | error vs exact JKO | order | time |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {:?} | {:.4e} | {:.4e} | {} | {} | {:.3e} | {} | {} | {} | {} |",
                r.cells,
                r.h,
                r.tau,
                r.steps,
                r.levels.map_or("-".into(), |l| l.to_string()),
                r.error,
                r.order.map_or("-".into(), |o| format!("{o:.2}")),
                r.error_jko.map_or("-".into(), |e| format!("{e:.3e}")),
                r.order_jko.map_or("-".into(), |o| format!("{o:.2}")),
                crate::format_duration(r.wall_time)
            );
        }
        s
    }

    /// Write `convergence.json` and `convergence.md` into `dir` (created if needed).
    ///
    /// # Errors
    /// [`ToolError::Io`] when `dir` or a file cannot be written.
    ///
    /// ```rust
    /// use jko_cli::convergence::ConvergenceReport;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let report = ConvergenceReport {
    ///     quantity: "relative L1 error at t = 1".into(),
    ///     against: "tau".into(),
    ///     reference: "finest run".into(),
    ///     final_time: 1.0,
    ///     solver: "conic".into(),
    ///     rows: vec![],
    /// };
    /// let dir = tempfile::tempdir()?;
    /// report.write(dir.path())?;
    /// let json = std::fs::read_to_string(dir.path().join("convergence.json"))?;
    /// assert!(json.contains(r#""against": "tau""#));
    /// # Ok(())
    /// # }
    /// ```
    pub fn write(&self, dir: &Path) -> Result<(), ToolError> {
        crate::write_report(dir, "convergence", self, &self.markdown())
    }
}

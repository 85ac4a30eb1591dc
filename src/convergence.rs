//! Convergence reports: `jko convergence CONFIG --refine h,tau[,levels]` runs a refinement
//! sequence (each level halves h and/or τ — at fixed final time — and/or doubles the number of
//! Benamou–Brenier time levels), measures the relative L1 error at the final time against the
//! exact solution when one is known ([`crate::reference`]) or against the finest run otherwise
//! (restricted to the coarser grid by cell averaging), and writes `convergence.json` and
//! `convergence.md` with the observed orders.

use crate::RunOptions;
use crate::config::Config;
use crate::error::RunError;
use crate::reference::{ExactSolution, l1_relative};
use jko_core::Mesh;
use ndarray::Array1;
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::path::Path;

/// What a refinement sequence refines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refine {
    pub h: bool,
    pub tau: bool,
    pub levels: bool,
}

impl Refine {
    /// Parse `h,tau[,levels]` (any non-empty subset).
    pub fn parse(text: &str) -> Result<Refine, RunError> {
        let mut r = Refine::default();
        for part in text.split(',').map(str::trim) {
            match part {
                "h" => r.h = true,
                "tau" => r.tau = true,
                "levels" => r.levels = true,
                other => {
                    return Err(RunError::Config(format!(
                        "--refine: unknown parameter `{other}`; use a comma-separated subset of h, tau, levels"
                    )));
                }
            }
        }
        if !(r.h || r.tau || r.levels) {
            return Err(RunError::Config(
                "--refine needs at least one of h, tau, levels".into(),
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

/// One refinement level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvergenceRow {
    pub label: String,
    pub cells: Vec<usize>,
    /// Smallest cell width.
    pub h: f64,
    pub tau: f64,
    pub steps: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub levels: Option<usize>,
    /// Relative L1 error at the final time.
    pub error: f64,
    /// ln(e_prev/e)/ln(2): the observed order per halving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    /// Relative L1 distance to the exact JKO iterates (exact W²), where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_jko: Option<f64>,
    /// Observed order of `error_jko`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_jko: Option<f64>,
    /// Total solve time (s).
    pub wall_time: f64,
}

/// `convergence.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConvergenceReport {
    /// What `error` measures.
    pub quantity: String,
    /// The refined parameter the orders refer to (`h`, `tau` or `levels`).
    pub against: String,
    /// `exact: NAME` or `finest run`.
    pub reference: String,
    pub final_time: f64,
    pub solver: String,
    pub rows: Vec<ConvergenceRow>,
}

/// Run the refinement sequence with `runs` levels (≥ 2).
pub fn convergence(
    config: &Config,
    base: &Path,
    refine: Refine,
    runs: usize,
    progress: &mut dyn FnMut(&ConvergenceRow),
) -> Result<ConvergenceReport, RunError> {
    if runs < 2 {
        return Err(RunError::Config(
            "a convergence study needs at least 2 runs".into(),
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
            c.solver = c.solver.with_levels_scaled(factor)?;
        }
        let start = std::time::Instant::now();
        let result = crate::run(&c, base, &RunOptions::default(), &mut [], &|| false)?;
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
            levels: c.solver.levels(),
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
pub fn restrict(fine: &Mesh, rho: &Array1<f64>, coarse: &Mesh) -> Result<Array1<f64>, RunError> {
    let (Some(fg), Some(cg)) = (fine.as_grid(), coarse.as_grid()) else {
        return Err(RunError::Config("restriction needs grid meshes".into()));
    };
    let d = cg.cells.len();
    let ratio: Vec<usize> = (0..d).map(|a| fg.cells[a] / cg.cells[a]).collect();
    if (0..d).any(|a| ratio[a] == 0 || fg.cells[a] != ratio[a] * cg.cells[a])
        || fg.lower != cg.lower
        || fg.upper != cg.upper
    {
        return Err(RunError::Config(format!(
            "cannot restrict a {:?} grid to a {:?} grid",
            fg.cells, cg.cells
        )));
    }
    let fine_values = fine
        .to_grid_array(rho, 0.0)
        .ok_or_else(|| RunError::Config("grid".into()))?;
    let fine_active = fine
        .to_grid_array(&Array1::ones(fine.n_cells()), 0.0)
        .ok_or_else(|| RunError::Config("grid".into()))?;
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
    /// The Markdown table.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Convergence of the `{}` backend: {} against {}.\n",
            self.solver, self.quantity, self.reference
        );
        let _ = writeln!(
            s,
            "| cells | h | τ | steps | levels | error | order | error vs exact JKO | order | time (s) |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {:?} | {:.4e} | {:.4e} | {} | {} | {:.3e} | {} | {} | {} | {:.2} |",
                r.cells,
                r.h,
                r.tau,
                r.steps,
                r.levels.map_or("-".into(), |l| l.to_string()),
                r.error,
                r.order.map_or("-".into(), |o| format!("{o:.2}")),
                r.error_jko.map_or("-".into(), |e| format!("{e:.3e}")),
                r.order_jko.map_or("-".into(), |o| format!("{o:.2}")),
                r.wall_time
            );
        }
        s
    }

    /// Write `convergence.json` and `convergence.md` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), RunError> {
        crate::output::write_report(dir, "convergence", self, &self.markdown())
    }
}

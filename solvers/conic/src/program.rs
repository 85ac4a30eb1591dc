//! A conic program in Clarabel's standard form, built block by block, and its solution.
//!
//! Clarabel solves  min qᵀx  s.t.  A x + s = b,  s ∈ K  (here P = 0), with K a product of
//! cones listed in row order. [`ConicProgram`] collects variable blocks and cone blocks as
//! they are added (each cone block owns consecutive rows), so a discretisation states its
//! problem as "these variables, these cones" and never handles row offsets by hand; a
//! multi-level scheme adds one block of variables per time level with the same calls.
//!
//! [`ConicProgram::solve`] runs Clarabel and returns its last iterate with its status (the
//! caller decides what a status means, after polishing); setup failures and panics inside
//! Clarabel are [`StepError::Numerical`].

use crate::{ConicParams, DirectSolver};
use clarabel::algebra::CscMatrix;
use clarabel::solver::{
    DefaultSettingsBuilder, DefaultSolver, IPSolver, SolverStatus, SupportedConeT,
};
use jko_core::StepError;
use std::ops::Range;
use std::time::Instant;

/// Name used in every error and record of this backend.
pub(crate) const SOLVER_NAME: &str = "conic";

/// One row of a cone block: sparse coefficients (column, value) and the right-hand side,
/// read as s = b − Σ value·x[column].
pub(crate) struct Row<'a> {
    pub coeffs: &'a [(usize, f64)],
    pub rhs: f64,
}

/// Shorthand for a [`Row`].
pub(crate) fn row(coeffs: &[(usize, f64)], rhs: f64) -> Row<'_> {
    Row { coeffs, rhs }
}

/// A conic program under construction.
#[derive(Debug, Default)]
pub(crate) struct ConicProgram {
    /// Linear objective, one entry per variable.
    q: Vec<f64>,
    /// Entries of A as (row, column, value), rows nondecreasing.
    entries: Vec<(usize, usize, f64)>,
    b: Vec<f64>,
    cones: Vec<SupportedConeT<f64>>,
}

impl ConicProgram {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add `n` variables with zero cost; returns their index range.
    pub fn add_variables(&mut self, n: usize) -> Range<usize> {
        let start = self.q.len();
        self.q.resize(start + n, 0.0);
        start..start + n
    }

    /// Add `value` to the cost of variable `j`.
    pub fn add_cost(&mut self, j: usize, value: f64) {
        self.q[j] += value;
    }

    /// Append one cone whose rows are `rows` (in the cone's coordinate order). Returns the
    /// range of rows it occupies (used to read its dual variables back).
    pub fn add_cone(&mut self, cone: SupportedConeT<f64>, rows: &[Row<'_>]) -> Range<usize> {
        let start = self.b.len();
        for (i, r) in rows.iter().enumerate() {
            for &(j, v) in r.coeffs {
                self.entries.push((start + i, j, v));
            }
            self.b.push(r.rhs);
        }
        self.cones.push(cone);
        start..self.b.len()
    }

    /// Append a block of `rows.len()` rows of one cone type that Clarabel takes with a
    /// dimension (zero or nonnegative cone), one row per call of `rows`.
    pub fn add_block(
        &mut self,
        make_cone: fn(usize) -> SupportedConeT<f64>,
        n: usize,
        mut rows: impl FnMut(usize, &mut Vec<(usize, f64)>) -> f64,
    ) -> Range<usize> {
        let start = self.b.len();
        let mut coeffs = Vec::new();
        for i in 0..n {
            coeffs.clear();
            let rhs = rows(i, &mut coeffs);
            for &(j, v) in &coeffs {
                self.entries.push((start + i, j, v));
            }
            self.b.push(rhs);
        }
        if n > 0 {
            self.cones.push(make_cone(n));
        }
        start..self.b.len()
    }

    /// Number of cones added so far.
    #[cfg(test)]
    pub fn cone_count(&self) -> usize {
        self.cones.len()
    }

    /// A in compressed sparse column form; duplicate (row, column) entries are summed.
    fn constraint_matrix(&self) -> CscMatrix<f64> {
        let (m, n) = (self.b.len(), self.q.len());
        let mut colptr = vec![0usize; n + 1];
        for &(_, j, _) in &self.entries {
            colptr[j + 1] += 1;
        }
        for j in 0..n {
            colptr[j + 1] += colptr[j];
        }
        let mut fill = colptr.clone();
        let mut rowval = vec![0usize; self.entries.len()];
        let mut nzval = vec![0.0; self.entries.len()];
        // Entries are stored in nondecreasing row order, so this stable counting sort leaves
        // every column sorted by row; equal rows are then adjacent.
        for &(i, j, v) in &self.entries {
            rowval[fill[j]] = i;
            nzval[fill[j]] = v;
            fill[j] += 1;
        }
        let (mut out_ptr, mut out_row, mut out_val) = (vec![0usize; n + 1], Vec::new(), Vec::new());
        for j in 0..n {
            for p in colptr[j]..colptr[j + 1] {
                let same = out_row.len() > out_ptr[j] && out_row.last() == Some(&rowval[p]);
                if same {
                    if let Some(last) = out_val.last_mut() {
                        *last += nzval[p];
                    }
                } else {
                    out_row.push(rowval[p]);
                    out_val.push(nzval[p]);
                }
            }
            out_ptr[j + 1] = out_row.len();
        }
        CscMatrix::new(m, n, out_ptr, out_row, out_val)
    }

    /// Solve with Clarabel. `direct` is the resolved linear solver (not `Auto`).
    pub fn solve(
        &self,
        params: &ConicParams,
        direct: DirectSolver,
    ) -> Result<ConicSolution, StepError> {
        let numerical = |message: String| StepError::Numerical {
            solver: SOLVER_NAME.to_string(),
            message,
        };
        if let Some(bad) = self
            .q
            .iter()
            .chain(&self.b)
            .chain(self.entries.iter().map(|e| &e.2))
            .find(|v| !v.is_finite())
        {
            return Err(numerical(format!(
                "the assembled conic program has a non-finite entry ({bad})"
            )));
        }
        let method = match direct {
            DirectSolver::Faer => "faer",
            DirectSolver::Qdldl | DirectSolver::Auto => "qdldl",
        };
        let settings = DefaultSettingsBuilder::<f64>::default()
            .max_iter(params.max_iter)
            .tol_gap_abs(params.tol_gap_abs)
            .tol_gap_rel(params.tol_gap_rel)
            .tol_feas(params.tol_feas)
            .verbose(params.verbose)
            .direct_solve_method(method.to_string())
            .build()
            .map_err(|e| numerical(format!("invalid Clarabel settings: {e}")))?;
        let n = self.q.len();
        let p = CscMatrix::<f64>::zeros((n, n));
        let a = self.constraint_matrix();

        let start = Instant::now();
        // Clarabel asserts internally on some malformed data and inside its linear solvers;
        // a panic there must reach the caller as an error, never unwind through the engine.
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let setup_start = Instant::now();
            let mut solver = DefaultSolver::new(&p, &self.q, &a, &self.b, &self.cones, settings)
                .map_err(|e| format!("Clarabel setup failed: {e}"))?;
            let setup = setup_start.elapsed().as_secs_f64();
            solver.solve();
            let timers = solver.timers.as_ref().map(|t| format!("{t:?}"));
            Ok::<_, String>((solver, setup, timers))
        }));
        let (solver, setup_time, timers) = match run {
            Ok(Ok(r)) => r,
            Ok(Err(message)) => return Err(numerical(message)),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".to_string());
                return Err(numerical(format!("Clarabel panicked: {what}")));
            }
        };
        let total = start.elapsed().as_secs_f64();
        let info = &solver.info;
        let status = match info.status {
            SolverStatus::Solved => IpmStatus::Solved,
            SolverStatus::AlmostSolved => IpmStatus::AlmostSolved,
            other => IpmStatus::Stopped(format!("{other:?}")),
        };
        let timing = SolveTiming {
            setup: setup_time,
            solve: (total - setup_time).max(0.0),
            kkt_update: timers
                .as_deref()
                .and_then(|t| timer_seconds(t, "kkt update")),
            kkt_solve: timers
                .as_deref()
                .and_then(|t| timer_seconds(t, "kkt solve")),
        };
        Ok(ConicSolution {
            x: solver.solution.x.clone(),
            z: solver.solution.z.clone(),
            status,
            iterations: info.iterations as usize,
            primal_residual: info.res_primal,
            dual_residual: info.res_dual,
            gap_rel: info.gap_rel,
            timing,
        })
    }
}

/// How Clarabel's iterations ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum IpmStatus {
    Solved,
    AlmostSolved,
    /// Any other status (`MaxIterations`, `InsufficientProgress`, ...), by name. The iterate
    /// is still returned: polishing may finish the job.
    Stopped(String),
}

/// What Clarabel returned: its last iterate and how it got there.
#[derive(Debug, Clone)]
pub(crate) struct ConicSolution {
    pub x: Vec<f64>,
    /// Dual variables, one per row of A (Lagrangian qᵀx + zᵀ(Ax − b)).
    pub z: Vec<f64>,
    pub status: IpmStatus,
    pub iterations: usize,
    pub primal_residual: f64,
    pub dual_residual: f64,
    pub gap_rel: f64,
    pub timing: SolveTiming,
}

/// Where the time of one Clarabel run went, in seconds.
///
/// ```rust
/// use jko_conic::{ConicParams, ConicSolver};
/// use jko_core::{Energy, JkoStep, Mesh};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::grid(&[4], &[0.0], &[1.0])?;
/// let rho0 = mesh.sample(|x| 1.0 + x[0]);
/// let energy = Energy { entropy: Some(1.0), ..Energy::default() }.freeze(&mesh, &rho0)?;
/// let problem = JkoStep::new(&mesh, &rho0, 0.1, &energy)?;
/// let (_, _, timing) = ConicSolver::new(ConicParams::default())?.step_full(&problem, None)?;
/// let t = timing.clarabel;
/// assert!(t.setup >= 0.0 && t.solve >= 0.0);
/// // The KKT parts, when reported, are parts of the iterations' time.
/// assert!(t.kkt_update.unwrap_or(0.0) + t.kkt_solve.unwrap_or(0.0) <= t.solve * 1.01 + 1e-6);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SolveTiming {
    /// Setup: presolve, equilibration, KKT symbolic analysis.
    pub setup: f64,
    /// Interior-point iterations.
    pub solve: f64,
    /// Part of `solve` spent refactoring the KKT matrix ("kkt update"), when Clarabel's timers
    /// report it.
    pub kkt_update: Option<f64>,
    /// Part of `solve` spent in KKT triangular solves and iterative refinement ("kkt solve").
    pub kkt_solve: Option<f64>,
}

impl SolveTiming {
    /// Both runs' times (a part unknown in either is unknown in the sum).
    pub(crate) fn plus(&self, other: &SolveTiming) -> SolveTiming {
        let sum = |a: Option<f64>, b: Option<f64>| Some(a? + b?);
        SolveTiming {
            setup: self.setup + other.setup,
            solve: self.solve + other.solve,
            kkt_update: sum(self.kkt_update, other.kkt_update),
            kkt_solve: sum(self.kkt_solve, other.kkt_solve),
        }
    }
}

/// Total seconds of a named Clarabel timer, read from the timers' `Debug` text (Clarabel
/// exposes its timer tree only for printing). `None` when the name or format is not found.
fn timer_seconds(debug: &str, key: &str) -> Option<f64> {
    let pattern = format!("\"{key}\": InnerTimer {{ start: None, elapsed: ");
    let mut total = 0.0;
    let mut found = false;
    let mut rest = debug;
    while let Some(pos) = rest.find(&pattern) {
        rest = &rest[pos + pattern.len()..];
        let end = rest.find(',')?;
        total += parse_duration(&rest[..end])?;
        found = true;
    }
    found.then_some(total)
}

/// Parse `std::time::Duration`'s `Debug` text (e.g. `1.5ms`, `12µs`, `3.2s`, `800ns`).
fn parse_duration(text: &str) -> Option<f64> {
    let text = text.trim();
    let units = [("ns", 1e-9), ("µs", 1e-6), ("ms", 1e-3), ("s", 1.0)];
    units.iter().find_map(|&(unit, scale)| {
        text.strip_suffix(unit)
            .and_then(|num| num.parse::<f64>().ok())
            .map(|v| v * scale)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("1.5ms"), Some(1.5e-3));
        assert_eq!(parse_duration("3s"), Some(3.0));
        assert!((parse_duration("12.5µs").unwrap() - 12.5e-6).abs() < 1e-18);
        assert!((parse_duration("7ns").unwrap() - 7e-9).abs() < 1e-20);
        // The format really is Duration's Debug text.
        for d in [
            std::time::Duration::from_nanos(1_234_567),
            std::time::Duration::from_millis(2500),
        ] {
            let back = parse_duration(&format!("{d:?}")).unwrap();
            assert!((back - d.as_secs_f64()).abs() < 1e-12, "{d:?}");
        }
        assert_eq!(parse_duration("abc"), None);
    }

    #[test]
    fn csc_sums_duplicates_and_sorts_rows() {
        let mut p = ConicProgram::new();
        let v = p.add_variables(2);
        p.add_block(SupportedConeT::ZeroConeT, 2, |i, c| {
            c.push((v.start + 1, 1.0));
            c.push((v.start + 1, 2.0));
            c.push((v.start, i as f64 + 1.0));
            0.0
        });
        let a = p.constraint_matrix();
        assert_eq!(a.colptr, vec![0, 2, 4]);
        assert_eq!(a.rowval, vec![0, 1, 0, 1]);
        assert_eq!(a.nzval, vec![1.0, 2.0, 3.0, 3.0]);
    }

    #[test]
    fn a_tiny_socp_is_solved() {
        // min u  s.t. ‖(2·1, u − 1)‖ ≤ u + 1  ⇔ 1 ≤ u·1  → u = 1.
        let mut p = ConicProgram::new();
        let u = p.add_variables(1).start;
        p.add_cost(u, 1.0);
        p.add_cone(
            SupportedConeT::SecondOrderConeT(3),
            &[
                row(&[(u, -1.0)], 1.0),
                row(&[], 2.0),
                row(&[(u, -1.0)], -1.0),
            ],
        );
        let params = ConicParams {
            tol_gap_abs: 1e-10,
            tol_gap_rel: 1e-10,
            tol_feas: 1e-10,
            ..ConicParams::default()
        };
        let sol = p.solve(&params, DirectSolver::Qdldl).unwrap();
        assert!((sol.x[0] - 1.0).abs() < 1e-8, "{:?}", sol.x);
        assert_eq!(sol.status, IpmStatus::Solved);
    }
}

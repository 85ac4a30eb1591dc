//! The quantile JKO step: a smooth convex minimisation over increasing X, solved by Newton.
//!
//! With the exact 1D distance W²(ρ, ρⁿ) = M ∫₀¹ |X − Xⁿ|² du, one step minimises (per unit
//! mass, see [`crate::energy`] for the energy terms)
//!
//! J(X) = Σ_i w_i [ (X_i − Xⁿ_i)²/(2τ) + V(X_i) ] + Σ_k φ_k(X_{k+1} − X_k) + J_int(X)
//!
//! over X_0 < X_1 < … (and a ≤ X_0, X_{n−1} ≤ b with walls). With walls, the tail masses
//! u_0 and 1 − u_{n−1} become two more cells, [a, X_0] and [X_{n−1}, b], in the entropy and
//! porous terms: without them the end nodes would feel no pressure from the mass behind
//! them and be pulled onto the walls (a first-order error on equal-mass nodes); with them a
//! uniform density between walls is exactly stationary on equal-mass nodes. The Hessian is tridiagonal
//! (w_i (1/τ + V″) on the diagonal plus the cell terms φ_k″ coupling neighbours), minus a
//! rank-one term for the implicit quadratic interaction (Sherman–Morrison), so a Newton step
//! costs O(n). J is strictly convex when 1/τ + V″ > 0 (the cell terms are convex); otherwise
//! the Hessian is regularised (Levenberg) and a stationary point is reported with a note.
//!
//! Globalisation: the step length is capped so that every D_k stays > 0 (fraction 0.99 to the
//! boundary), the end nodes are projected onto the walls, and Armijo backtracking on J
//! accepts the step. An end node on a wall whose gradient pushes it outward is held fixed
//! (active set). Convergence: the Hessian-scaled gradient (the Newton step) max_i |(H⁻¹∇J)_i| / ℓ
//! ≤ tol over the free nodes, with ℓ the standard deviation of ρⁿ: near the minimiser this is
//! the relative position error (Newton converges quadratically), not a diagonal proxy for it,
//! which on the stiff entropy Laplacian would underestimate the smooth error modes by ~n².

use crate::energy::{CellTerms, InteractionTreatment, QuantileEnergy};
use crate::grid::{NodeDistribution, pairwise_sum};
use crate::potential::QuantilePotential;
use crate::state::QuantileState;
use jko_core::{InputError, Interaction, StepError, StepInfo, StepStatus};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Parameters of the quantile backend (`[solver] kind = "quantile"`; serde: unknown fields are
/// rejected, missing ones take the defaults: 2001 Gaussian nodes with z_max = 6, `tol =
/// 1e-12`, 100 iterations).
///
/// ```rust
/// use jko_quantile::{NodeDistribution, QuantileParams};
///
/// let params: QuantileParams = serde_json::from_str(r#"{ "nodes": 101, "distribution": { "kind": "uniform" } }"#).unwrap();
/// assert_eq!((params.nodes, params.distribution), (101, NodeDistribution::Uniform));
/// assert_eq!(params.tol, 1e-12);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuantileParams {
    /// Number of quantile nodes when a state is built from a mesh density.
    pub nodes: usize,
    /// Where the nodes sit in mass (used with `nodes`).
    pub distribution: NodeDistribution,
    /// Tolerance on the Hessian-scaled gradient max |H⁻¹∇J| / std(ρⁿ) (relative position accuracy).
    pub tol: f64,
    /// Largest number of Newton iterations of a step.
    pub max_iter: usize,
}

impl Default for QuantileParams {
    fn default() -> Self {
        QuantileParams {
            nodes: 2001,
            distribution: NodeDistribution::default(),
            tol: 1e-12,
            max_iter: 100,
        }
    }
}

impl QuantileParams {
    /// Check the values: 3 ≤ nodes ≤ 2²⁷, a valid distribution, `tol` finite and > 0, at least
    /// one iteration.
    ///
    /// # Errors
    /// [`InputError::InvalidParameter`] naming the offending field.
    ///
    /// ```rust
    /// use jko_quantile::QuantileParams;
    ///
    /// assert!(QuantileParams::default().validate().is_ok());
    /// assert!(QuantileParams { nodes: 2, ..QuantileParams::default() }.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<(), InputError> {
        self.distribution.validate()?;
        if self.nodes < 3 || self.nodes > jko_core::mesh::MAX_CELLS {
            return Err(InputError::parameter(
                "nodes",
                self.nodes,
                "need at least 3 nodes (and at most 2^27)",
            ));
        }
        jko_core::finite_positive("tol", self.tol)?;
        jko_core::at_least_one("max_iter", self.max_iter)?;
        Ok(())
    }
}

/// A smooth function of position with two derivatives.
enum Field<'a> {
    Potential(&'a QuantilePotential),
    /// a2 x²/2 + a1 x + a0
    Quadratic {
        a2: f64,
        a1: f64,
        a0: f64,
    },
    /// Σ_j amp_j exp(−(x − y_j)²/(2ℓ²))
    GaussianSum {
        y: &'a [f64],
        amp: Vec<f64>,
        width: f64,
    },
}

impl Field<'_> {
    fn eval(&self, x: f64) -> [f64; 3] {
        match self {
            Field::Potential(p) => p.eval(x),
            Field::Quadratic { a2, a1, a0 } => [0.5 * a2 * x * x + a1 * x + a0, a2 * x + a1, *a2],
            Field::GaussianSum { y, amp, width } => {
                let s2 = width * width;
                let mut out = [0.0; 3];
                for (&yj, &aj) in y.iter().zip(amp) {
                    let d = x - yj;
                    let e = aj * (-0.5 * d * d / s2).exp();
                    out[0] += e;
                    out[1] -= e * d / s2;
                    out[2] += e * (d * d / s2 - 1.0) / s2;
                }
                out
            }
        }
    }

    fn is_expensive(&self) -> bool {
        matches!(self, Field::GaussianSum { .. })
    }
}

/// The discrete step problem (per unit mass).
struct Discrete<'a> {
    w: &'a [f64],
    c: &'a [f64],
    xprev: &'a [f64],
    tau: f64,
    cells: CellTerms,
    fields: Vec<Field<'a>>,
    /// σ of the implicit quadratic pair energy (σ/2)(W Σ w X² − (Σ w X)²); 0 if none.
    sigma: f64,
    wsum: f64,
    walls: (f64, f64),
    /// Masses of the wall cells [a, X_0] and [X_{n−1}, b] (the grid's tail masses u_0 and
    /// 1 − u_{n−1}), present with walls and an entropy or porous term.
    wall_cells: Option<(f64, f64)>,
}

impl Discrete<'_> {
    /// Lengths of the wall cells.
    fn wall_gaps(&self, x: &[f64]) -> (f64, f64) {
        (x[0] - self.walls.0, self.walls.1 - x[x.len() - 1])
    }

    fn potentials(&self, x: &[f64]) -> Vec<[f64; 3]> {
        let at = |xi: f64| {
            self.fields.iter().fold([0.0; 3], |mut acc, f| {
                let v = f.eval(xi);
                acc[0] += v[0];
                acc[1] += v[1];
                acc[2] += v[2];
                acc
            })
        };
        if self.fields.iter().any(Field::is_expensive) {
            x.par_iter().map(|&xi| at(xi)).collect()
        } else {
            x.iter().map(|&xi| at(xi)).collect()
        }
    }

    /// (J, magnitude of its parts) or None outside the feasible set.
    fn objective(&self, x: &[f64]) -> Option<(f64, f64)> {
        let n = x.len();
        if x[0] < self.walls.0 || x[n - 1] > self.walls.1 || x.windows(2).any(|p| p[1] <= p[0]) {
            return None;
        }
        let v = self.potentials(x);
        let node: Vec<f64> = (0..n)
            .map(|i| {
                let d = x[i] - self.xprev[i];
                self.w[i]
                    * (0.5 * d * d / self.tau + if self.fields.is_empty() { 0.0 } else { v[i][0] })
            })
            .collect();
        let mut cell: Vec<f64> = (0..n - 1)
            .map(|k| self.cells.value(self.c[k], x[k + 1] - x[k]))
            .collect();
        if let Some((cl, cr)) = self.wall_cells {
            let (dl, dr) = self.wall_gaps(x);
            if !(dl > 0.0 && dr > 0.0) {
                return None;
            }
            cell.push(self.cells.value(cl, dl));
            cell.push(self.cells.value(cr, dr));
        }
        let mut j = pairwise_sum(&node) + pairwise_sum(&cell);
        let mut mag =
            node.iter().map(|a| a.abs()).sum::<f64>() + cell.iter().map(|a| a.abs()).sum::<f64>();
        if self.sigma != 0.0 {
            let (s1, s2) = self.moments(x);
            let pair = 0.5 * self.sigma * (self.wsum * s2 - s1 * s1);
            j += pair;
            mag += 0.5 * self.sigma.abs() * (self.wsum * s2 + s1 * s1);
        }
        if !j.is_finite() {
            return None;
        }
        Some((j, mag))
    }

    fn moments(&self, x: &[f64]) -> (f64, f64) {
        let wx: Vec<f64> = self.w.iter().zip(x).map(|(w, x)| w * x).collect();
        let wxx: Vec<f64> = wx.iter().zip(x).map(|(a, x)| a * x).collect();
        (pairwise_sum(&wx), pairwise_sum(&wxx))
    }

    /// Gradient, Hessian diagonal and super-diagonal (without the rank-one part).
    fn gradient_hessian(&self, x: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let n = x.len();
        let v = self.potentials(x);
        let s1 = if self.sigma != 0.0 {
            self.moments(x).0
        } else {
            0.0
        };
        let mut g = vec![0.0; n];
        let mut d = vec![0.0; n];
        let mut off = vec![0.0; n - 1];
        for i in 0..n {
            let (dv, ddv) = if self.fields.is_empty() {
                (0.0, 0.0)
            } else {
                (v[i][1], v[i][2])
            };
            g[i] = self.w[i]
                * ((x[i] - self.xprev[i]) / self.tau + dv + self.sigma * (self.wsum * x[i] - s1));
            d[i] = self.w[i] * (1.0 / self.tau + ddv + self.sigma * self.wsum);
        }
        for k in 0..n - 1 {
            let (d1, d2) = self.cells.derivatives(self.c[k], x[k + 1] - x[k]);
            g[k + 1] += d1;
            g[k] -= d1;
            d[k] += d2;
            d[k + 1] += d2;
            off[k] = -d2;
        }
        if let Some((cl, cr)) = self.wall_cells {
            let (dl, dr) = self.wall_gaps(x);
            let (d1, d2) = self.cells.derivatives(cl, dl);
            g[0] += d1;
            d[0] += d2;
            let (d1, d2) = self.cells.derivatives(cr, dr);
            g[n - 1] -= d1;
            d[n - 1] += d2;
        }
        (g, d, off)
    }
}

/// Solve a symmetric tridiagonal system by LDLᵀ; None when a pivot is not positive (the matrix
/// is not positive definite).
pub(crate) fn solve_tridiagonal(diag: &[f64], off: &[f64], rhs: &[f64]) -> Option<Vec<f64>> {
    let n = diag.len();
    let mut piv = vec![0.0; n];
    let mut l = vec![0.0; n];
    let mut y = vec![0.0; n];
    piv[0] = diag[0];
    y[0] = rhs[0];
    if !(piv[0] > 0.0 && piv[0].is_finite()) {
        return None;
    }
    for i in 1..n {
        l[i] = off[i - 1] / piv[i - 1];
        piv[i] = diag[i] - l[i] * off[i - 1];
        if !(piv[i] > 1e-300 && piv[i].is_finite()) {
            return None;
        }
        y[i] = rhs[i] - l[i] * y[i - 1];
    }
    let mut x = vec![0.0; n];
    x[n - 1] = y[n - 1] / piv[n - 1];
    for i in (0..n - 1).rev() {
        x[i] = y[i] / piv[i] - l[i + 1] * x[i + 1];
    }
    Some(x)
}

/// Solve (T − σ v vᵀ) δ = rhs (Sherman–Morrison; σ = 0 is the plain tridiagonal solve).
fn solve_newton(diag: &[f64], off: &[f64], sigma: f64, v: &[f64], rhs: &[f64]) -> Option<Vec<f64>> {
    let y = solve_tridiagonal(diag, off, rhs)?;
    if sigma == 0.0 {
        return Some(y);
    }
    let z = solve_tridiagonal(diag, off, v)?;
    let vz: f64 = v.iter().zip(&z).map(|(a, b)| a * b).sum();
    let vy: f64 = v.iter().zip(&y).map(|(a, b)| a * b).sum();
    let den = 1.0 - sigma * vz;
    if den <= 1e-14 {
        return None;
    }
    Some(
        y.iter()
            .zip(&z)
            .map(|(y, z)| y + sigma * z * vy / den)
            .collect(),
    )
}

/// One JKO step in quantile coordinates from `state` with step `tau`: minimise
/// M Σ w_i (X_i − Xⁿ_i)²/(2τ) + F_h(X) over increasing X by Newton on the tridiagonal (plus
/// rank one for an implicit quadratic interaction) Hessian, with a line search that keeps X
/// increasing and inside the walls.
///
/// Returns the next state and the step's [`StepInfo`] (the report every backend gives, solver
/// `quantile`): `status` `Solved`, or `AlmostSolved` when Newton stopped (iteration limit or
/// line search stalled at round-off) with a scaled gradient within 1000 × `tol` (with a note);
/// `iterations` Newton iterations; `dual_residual` the final Hessian-scaled gradient
/// max |H⁻¹∇J| / ℓ (relative distance to the minimiser), `history` its value per iteration,
/// `primal_residual` 0 (X is feasible by construction); `objective` W²/(2τ) + F (interaction
/// frozen when semi-implicit) with the nodal W², and `kinetic` that W² = M Σ w (X − Xⁿ)².
///
/// # Errors
/// [`StepError::Input`] for τ ≤ 0 or invalid parameters/energy; [`StepError::NotConverged`]
/// when the scaled gradient stays above `tol` (no unconverged state is returned).
///
/// ```rust
/// use jko_core::{Energy, StepStatus};
/// use jko_quantile::{QuantileEnergy, QuantileGrid, QuantileParams, from_gaussian, jko_step, w2_squared_nodal};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let energy = QuantileEnergy::from_energy(&Energy { entropy: Some(1.0), ..Energy::default() }, None)?;
/// let state = from_gaussian(0.0, 1.0, &QuantileGrid::gaussian(21, 6.0)?, 1.0)?;
/// let (next, info) = jko_step(&state, 0.1, &energy, &QuantileParams::default())?;
/// assert_eq!((info.status, info.solver.as_str()), (StepStatus::Solved, "quantile"));
/// assert!(info.dual_residual <= 1e-12 && !info.history.is_empty());
/// // The kinetic term is the nodal W² between the two states.
/// assert!((info.kinetic - w2_squared_nodal(&state, &next)?).abs() < 1e-15);
/// # Ok(())
/// # }
/// ```
///
/// ```rust
/// use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
/// use jko_core::{Energy, Potential};
/// use jko_quantile::{QuantileEnergy, QuantileGrid, QuantileParams, from_gaussian, jko_step};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Ornstein–Uhlenbeck: the JKO iterate of a Gaussian is Gaussian, and Gaussian nodes carry
/// // it exactly up to the node quadrature.
/// let ou = Energy::fokker_planck(1.0, Potential::Quadratic { center: vec![0.0], stiffness: 1.0 });
/// let energy = QuantileEnergy::from_energy(&ou, None)?;
/// let state = from_gaussian(1.0, 0.5, &QuantileGrid::gaussian(41, 8.0)?, 1.0)?;
/// let (next, _) = jko_step(&state, 0.1, &energy, &QuantileParams::default())?;
/// let exact = OrnsteinUhlenbeck::standard(1).jko_step(&Gaussian::diagonal(&[1.0], &[0.5]), 0.1);
/// let m = next.moments();
/// assert!((m.mean - exact.mean[0]).abs() < 1e-9);
/// assert!((m.variance - exact.cov[0]).abs() < 1e-9);
/// assert!(jko_step(&state, -0.1, &energy, &QuantileParams::default()).is_err());
/// # Ok(())
/// # }
/// ```
pub fn jko_step(
    state: &QuantileState,
    tau: f64,
    energy: &QuantileEnergy,
    params: &QuantileParams,
) -> Result<(QuantileState, StepInfo), StepError> {
    let start = Instant::now();
    if !(tau.is_finite() && tau > 0.0) {
        return Err(InputError::InvalidTau(tau).into());
    }
    energy.validate()?;
    if !(params.tol.is_finite() && params.tol > 0.0) {
        return Err(InputError::parameter("tol", params.tol, "must be finite and > 0").into());
    }
    // Re-check the state: its fields are public.
    let state = QuantileState::new(state.grid.clone(), state.x.clone(), state.mass)?;
    let n = state.x.len();
    let mass = state.mass;
    let walls = energy.domain.unwrap_or((f64::NEG_INFINITY, f64::INFINITY));
    if state.x[0] < walls.0 || state.x[n - 1] > walls.1 {
        return Err(InputError::parameter(
            "domain",
            format!("({}, {})", walls.0, walls.1),
            "the state has nodes outside the domain",
        )
        .into());
    }
    let w = state.grid.weights();
    let wsum = pairwise_sum(w);
    let mut notes = Vec::new();
    let mut fields = Vec::new();
    if let Some(p) = &energy.potential {
        fields.push(Field::Potential(p));
    }
    let mut sigma = 0.0;
    let amp_storage;
    match (&energy.interaction, energy.interaction_treatment) {
        (Some(Interaction::Quadratic { strength }), InteractionTreatment::Implicit) => {
            sigma = strength * mass
        }
        (Some(Interaction::Quadratic { strength }), InteractionTreatment::SemiImplicit) => {
            // M s Σ_j w_j (x − Xⁿ_j)²/2
            let wx: Vec<f64> = w.iter().zip(&state.x).map(|(w, x)| w * x).collect();
            let wxx: Vec<f64> = wx.iter().zip(&state.x).map(|(a, x)| a * x).collect();
            let k = strength * mass;
            fields.push(Field::Quadratic {
                a2: k * wsum,
                a1: -k * pairwise_sum(&wx),
                a0: 0.5 * k * pairwise_sum(&wxx),
            });
            notes.push("interaction frozen at the previous state (semi-implicit)".to_string());
        }
        (Some(Interaction::Gaussian { strength, width }), _) => {
            amp_storage = w.iter().map(|w| strength * mass * w).collect::<Vec<f64>>();
            fields.push(Field::GaussianSum {
                y: &state.x,
                amp: amp_storage,
                width: *width,
            });
            notes.push("interaction frozen at the previous state (semi-implicit)".to_string());
        }
        (None, _) => {}
    }
    let cells = CellTerms::new(energy, mass);
    let wall_cells = (energy.domain.is_some() && cells.is_barrier()).then(|| {
        let g = &state.grid;
        (g.levels()[0], g.level_complements()[n - 1])
    });
    if wall_cells.is_some() && (state.x[0] <= walls.0 || state.x[n - 1] >= walls.1) {
        return Err(InputError::parameter(
            "quantile nodes",
            format!("X_0 = {}, X_n = {}", state.x[0], state.x[n - 1]),
            "the end nodes sit on the walls, leaving no room for the tail mass: lower z_max",
        )
        .into());
    }
    let problem = Discrete {
        w,
        c: state.grid.cell_masses(),
        xprev: &state.x,
        tau,
        cells,
        fields,
        sigma,
        wsum,
        walls,
        wall_cells,
    };
    let scale = state.moments().variance.sqrt().max(f64::MIN_POSITIVE);
    let mut x = state.x.clone();
    let (mut j, _) = problem
        .objective(&x)
        .ok_or_else(|| numerical("the initial objective is not finite"))?;
    let mut history = Vec::new();
    let mut residual = f64::INFINITY;
    let mut iterations = 0;
    let mut stalled = false;
    let mut regularised = false;
    for it in 0..=params.max_iter {
        let (g, mut d, mut off) = problem.gradient_hessian(&x);
        let active_lo = x[0] <= walls.0 && g[0] > 0.0;
        let active_hi = x[n - 1] >= walls.1 && g[n - 1] < 0.0;
        let free = |i: usize| !((i == 0 && active_lo) || (i == n - 1 && active_hi));
        if g.iter().any(|g| !g.is_finite()) {
            return Err(numerical("non-finite gradient"));
        }
        let mut rhs: Vec<f64> = g.iter().map(|g| -g).collect();
        let mut v = w.to_vec();
        for i in [0, n - 1] {
            if !free(i) {
                d[i] = 1.0;
                rhs[i] = 0.0;
                v[i] = 0.0;
                if i == 0 {
                    off[0] = 0.0;
                } else {
                    off[n - 2] = 0.0;
                }
            }
        }
        let mut delta = solve_newton(&d, &off, sigma, &v, &rhs);
        let mut mu = 1e-10;
        while delta.is_none() && mu < 1e10 {
            regularised = true;
            let dr: Vec<f64> = d.iter().map(|d| d * (1.0 + mu)).collect();
            delta = solve_newton(&dr, &off, sigma, &v, &rhs);
            mu *= 10.0;
        }
        let delta = delta.ok_or_else(|| numerical("the Newton system could not be regularised"))?;
        // The Hessian-scaled gradient |H⁻¹ ∇J|_∞ / ℓ: the distance to the minimiser, relative.
        residual = delta.iter().map(|d| d.abs()).fold(0.0, f64::max) / scale;
        history.push(residual);
        if !residual.is_finite() {
            return Err(numerical("non-finite Newton step"));
        }
        if it == params.max_iter {
            break;
        }
        iterations = it + 1;
        if residual <= params.tol {
            // Converged: take the (tiny) full step when it is feasible.
            let mut trial: Vec<f64> = x.iter().zip(&delta).map(|(x, d)| x + d).collect();
            trial[0] = trial[0].max(walls.0);
            trial[n - 1] = trial[n - 1].min(walls.1);
            if let Some((jt, _)) = problem.objective(&trial) {
                x = trial;
                j = jt;
            }
            break;
        }
        let mut alpha_max: f64 = 1.0;
        for k in 0..n - 1 {
            let dd = delta[k + 1] - delta[k];
            if dd < 0.0 {
                alpha_max = alpha_max.min(0.99 * (x[k + 1] - x[k]) / -dd);
            }
        }
        if problem.wall_cells.is_some() {
            let (dl, dr) = problem.wall_gaps(&x);
            if delta[0] < 0.0 {
                alpha_max = alpha_max.min(0.99 * dl / -delta[0]);
            }
            if delta[n - 1] > 0.0 {
                alpha_max = alpha_max.min(0.99 * dr / delta[n - 1]);
            }
        }
        let mut alpha = alpha_max;
        let mut accepted = None;
        for _ in 0..60 {
            let mut trial: Vec<f64> = x.iter().zip(&delta).map(|(x, d)| x + alpha * d).collect();
            trial[0] = trial[0].max(walls.0);
            trial[n - 1] = trial[n - 1].min(walls.1);
            if let Some((jt, mag)) = problem.objective(&trial) {
                let slope: f64 = g
                    .iter()
                    .zip(trial.iter().zip(&x))
                    .map(|(g, (t, x))| g * (t - x))
                    .sum();
                if jt <= j + 1e-4 * slope || (jt - j).abs() <= 32.0 * f64::EPSILON * mag {
                    accepted = Some((trial, jt));
                    break;
                }
            }
            alpha *= 0.5;
        }
        match accepted {
            Some((trial, jt)) => {
                x = trial;
                j = jt;
            }
            None => {
                stalled = true;
                break;
            }
        }
    }
    if regularised {
        notes.push(
            "the Hessian was not positive definite (1/τ + V'' ≤ 0 somewhere?): regularised; the result is a \
             stationary point"
                .to_string(),
        );
    }
    let status = if residual <= params.tol {
        StepStatus::Solved
    } else if residual <= 1e3 * params.tol {
        notes.push(format!(
            "scaled gradient {residual:.2e} above tol {:.1e} ({})",
            params.tol,
            if stalled {
                "line search stalled at round-off"
            } else {
                "iteration limit"
            }
        ));
        StepStatus::AlmostSolved
    } else {
        return Err(StepError::NotConverged {
            solver: "quantile".into(),
            status: if stalled {
                "line search stalled"
            } else {
                "iteration limit"
            }
            .into(),
            iterations,
            primal_residual: 0.0,
            dual_residual: residual,
            history,
        });
    };
    let kin: Vec<f64> = w
        .iter()
        .zip(x.iter().zip(&state.x))
        .map(|(w, (a, b))| w * (a - b) * (a - b))
        .collect();
    let kinetic = mass * pairwise_sum(&kin);
    let tail = problem.wall_cells.map_or(0.0, |(l, r)| l + r);
    let entropy_const =
        problem.cells.beta * (pairwise_sum(state.grid.cell_masses()) + tail) * mass.ln();
    let next = QuantileState::new(state.grid.clone(), x, mass)?;
    Ok((
        next,
        StepInfo {
            solver: "quantile".into(),
            status,
            iterations,
            primal_residual: 0.0,
            dual_residual: residual,
            objective: mass * (j + entropy_const),
            kinetic,
            wall_time: start.elapsed().as_secs_f64(),
            history,
            notes,
            check: None,
        },
    ))
}

fn numerical(message: &str) -> StepError {
    StepError::Numerical {
        solver: "quantile".into(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{QuantileGrid, from_gaussian};
    use jko_core::Potential;

    fn problem_fixture() -> (QuantileState, QuantileEnergy) {
        let g = QuantileGrid::gaussian(9, 3.0).unwrap();
        let s = from_gaussian(0.2, 0.7, &g, 1.3).unwrap();
        let e = QuantileEnergy {
            entropy: Some(0.8),
            porous: Some(2.5),
            potential: Some(QuantilePotential::Closed(Potential::DoubleWell)),
            interaction: Some(Interaction::Quadratic { strength: 0.6 }),
            interaction_treatment: InteractionTreatment::Implicit,
            domain: None,
        };
        (s, e)
    }

    #[test]
    fn gradient_and_hessian_match_finite_differences() {
        let (s, e) = problem_fixture();
        let mass = s.mass;
        let w = s.grid.weights();
        let p = Discrete {
            w,
            c: s.grid.cell_masses(),
            xprev: &s.x,
            tau: 0.3,
            cells: CellTerms::new(&e, mass),
            fields: vec![Field::Potential(e.potential.as_ref().unwrap())],
            sigma: 0.6 * mass,
            wsum: pairwise_sum(w),
            walls: (f64::NEG_INFINITY, f64::INFINITY),
            wall_cells: None,
        };
        let x: Vec<f64> =
            s.x.iter()
                .enumerate()
                .map(|(i, x)| 1.1 * x + 0.05 * (i as f64).sin())
                .collect();
        let (g, d, off) = p.gradient_hessian(&x);
        let h = 1e-6;
        let n = x.len();
        for i in 0..n {
            let mut a = x.clone();
            let mut b = x.clone();
            a[i] += h;
            b[i] -= h;
            let fd = (p.objective(&a).unwrap().0 - p.objective(&b).unwrap().0) / (2.0 * h);
            assert!(
                (fd - g[i]).abs() < 1e-7 * (1.0 + g[i].abs()),
                "g[{i}]: {fd} vs {}",
                g[i]
            );
            let (ga, _, _) = p.gradient_hessian(&a);
            let (gb, _, _) = p.gradient_hessian(&b);
            for k in 0..n {
                let fd2 = (ga[k] - gb[k]) / (2.0 * h);
                let exact = if k == i {
                    d[i]
                } else if k + 1 == i {
                    off[k]
                } else if k == i + 1 {
                    off[i]
                } else {
                    0.0
                } - p.sigma * w[i] * w[k];
                assert!(
                    (fd2 - exact).abs() < 1e-6 * (1.0 + exact.abs()),
                    "H[{i},{k}]: {fd2} vs {exact}"
                );
            }
        }
    }

    #[test]
    fn an_unconverged_step_is_an_error_not_a_result() {
        let g = QuantileGrid::gaussian(101, 8.0).unwrap();
        let s = from_gaussian(3.0, 0.2, &g, 1.0).unwrap();
        let e = QuantileEnergy {
            entropy: Some(1.0),
            potential: Some(QuantilePotential::Closed(Potential::Quartic)),
            ..QuantileEnergy::default()
        };
        let params = QuantileParams {
            max_iter: 1,
            ..QuantileParams::default()
        };
        match jko_step(&s, 1.0, &e, &params) {
            Err(StepError::NotConverged {
                iterations,
                history,
                ..
            }) => {
                assert_eq!(iterations, 1);
                assert_eq!(history.len(), 2);
            }
            other => panic!("expected NotConverged, got {other:?}"),
        }
        let (_, info) = jko_step(&s, 1.0, &e, &QuantileParams::default()).unwrap();
        assert_eq!(info.status, StepStatus::Solved);
        assert!(info.dual_residual <= 1e-12);
    }

    #[test]
    fn tridiagonal_solve_and_refusal() {
        let d = [4.0, 5.0, 6.0];
        let o = [1.0, 2.0];
        let x = solve_tridiagonal(&d, &o, &[1.0, 2.0, 3.0]).unwrap();
        let r = [
            4.0 * x[0] + x[1],
            x[0] + 5.0 * x[1] + 2.0 * x[2],
            2.0 * x[1] + 6.0 * x[2],
        ];
        for (a, b) in r.iter().zip([1.0, 2.0, 3.0]) {
            assert!((a - b).abs() < 1e-14);
        }
        assert!(solve_tridiagonal(&[1.0, 1.0], &[2.0], &[1.0, 1.0]).is_none());
    }

    #[test]
    fn params_parse_and_validate() {
        let p: QuantileParams =
            toml::from_str("nodes = 501\ndistribution = { kind = \"uniform\" }").unwrap();
        assert_eq!(p.nodes, 501);
        assert_eq!(p.distribution, NodeDistribution::Uniform);
        assert!(toml::from_str::<QuantileParams>("nodez = 5").is_err());
        let too_few = QuantileParams {
            nodes: 2,
            ..QuantileParams::default()
        };
        let no_tolerance = QuantileParams {
            tol: 0.0,
            ..QuantileParams::default()
        };
        for bad in [too_few, no_tolerance] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert!(QuantileParams::default().validate().is_ok());
    }
}

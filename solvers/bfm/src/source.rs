//! The optimality system of a JKO step written on the source grid, in the source potential ψ.
//!
//! With the cost |x − y|²/(2τ), the step's optimal map is T(x) = x − τ∇ψ(x) for a c-concave ψ
//! (A = I − τD²ψ positive definite), the target potential is φ = ψ^c̄ and, along the map,
//! φ(T(x)) = ψ(x) − τ|∇ψ(x)|²/2. The new density at T(x) is ρ(p) = (U*)'(p) of the pressure
//! p(x) = φ(T(x)) − V(T(x)), and mass conservation along the map is ρ(p(x)) det A(x) = μ(x).
//! Written in pressure units with s(x) = μ(x)/det A(x) (the density the map delivers at T(x)):
//!
//!   r(x) = p(x) − U'(s(x)) = 0                                  (entropy and/or porous medium)
//!   r(x) = min(p(x), P(s(x))) − U'(s(x)) = 0                     (with the cap ρ ≤ ρ_max)
//!
//! at every source cell (μ(x) > 0), P(s) = U'(ρ_max) for s ≥ ρ_max/2 (`LocalDual::
//! capped_pressure`). The min form says: either the density is below the cap and the pressure
//! equals U'(s), or the density is at the cap and the pressure is above U'(ρ_max) (the cap's
//! multiplier); on capped cells the rows keep only the second-order term. The unknown ψ lives on the support of μ only, so vacuum
//! in μ (porous medium, compact data) is never a degenerate equation here: it is simply not an
//! unknown. The linearisation is
//!
//!   δr = δψ + τ(∇V(T) − ∇ψ)·∇δψ − κ τ tr(A⁻¹ D²δψ),   κ = s U''(s)
//!
//! (β for the entropy, m s^{m−1} for the porous medium): up to the anisotropy A⁻¹ and a drift,
//! the Helmholtz operator 1 + τκ(−Δ) that the DCT inverts.
//!
//! Derivatives are centred differences, with two kinds of one-sided rules: at walls of the box
//! and at masked cells the potential is mirrored (∂ψ/∂n = 0: no mass crosses a wall, as in the
//! two-point-flux schemes of the other backends); next to vacuum (an active cell with μ = 0)
//! the gradient is taken inward (second-order one-sided when two inner cells exist) and the
//! second derivative across the edge is 0 (a linearly extrapolated ghost value). The
//! cross derivatives are the symmetrised differences of the gradient fields, so both rules
//! carry over to them.

use crate::dual::LocalDual;
use crate::lattice::{Lattice, par_sum};
use rayon::prelude::*;

/// Cells where ρⁿ is below this fraction of its maximum carry no unknown (their mass, far
/// below round-off of the total, is restored by the final mass shift); it keeps ln ρⁿ away
/// from subnormal numbers.
pub(crate) const SOURCE_FLOOR: f64 = 1e-200;

/// Source cells below this fraction of max ρⁿ see walls as free boundaries rather than
/// mirrors: the no-flux condition ∂ψ/∂n = 0 forces a boundary layer on the potential, which
/// for the far tails of a density (10⁻⁴⁰ at a wall) only stiffens the iteration; their mass
/// may leave the box and is restored by the final mass shift.
pub(crate) const WALL_FLOOR: f64 = 1e-6;

/// Number of second derivatives stored per cell: d(d + 1)/2 (diagonal first, then a < b).
pub(crate) fn n_second(d: usize) -> usize {
    d * (d + 1) / 2
}

/// The (a, b) pair of second-derivative slot `k`.
pub(crate) fn pair(d: usize, k: usize) -> (usize, usize) {
    if k < d {
        return (k, k);
    }
    match (d, k) {
        (2, 2) => (0, 1),
        (3, 3) => (0, 1),
        (3, 4) => (0, 2),
        (3, 5) => (1, 2),
        _ => unreachable!("slot {k} in dimension {d}"),
    }
}

/// The finite-difference rule of one source cell along one axis, fixed for a step.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rule {
    /// Both neighbours are source cells: centred differences.
    Centred,
    /// Mirror wall below, source cell above.
    WallBelow,
    /// Mirror wall above, source cell below.
    WallAbove,
    /// Vacuum above: inward from below, second order (two source cells below).
    InwardBelow2,
    /// Vacuum above, one source cell below.
    InwardBelow1,
    /// Vacuum below: inward from above, second order.
    InwardAbove2,
    /// Vacuum below, one source cell above.
    InwardAbove1,
    /// No usable neighbour: derivatives 0.
    Flat,
}

/// The source cells of one step and the finite-difference rules on them.
pub(crate) struct SourceGrid<'a> {
    pub lat: &'a Lattice,
    /// `in_s[i]`: box cell `i` is active and carries mass.
    pub in_s: Vec<bool>,
    /// The rule of each cell along each axis (source cells only; `Flat` elsewhere).
    rules: Vec<[Rule; 3]>,
    /// Free-boundary edges (porous medium without entropy only; empty otherwise): one per
    /// (edge cell, axis) with vacuum on one side, where the normal derivatives use a ghost
    /// value fixed by p = 0 at the edge (see [`SourceGrid::with_pressure_edges`]).
    edges: Vec<Edge>,
    /// `edge_of[i][a]`: index into `edges` of cell `i`'s edge along axis `a`, or [`NO_EDGE`]
    /// (empty when `edges` is).
    edge_of: Vec<[u32; 3]>,
}

const NO_EDGE: u32 = u32::MAX;

/// Edges closer than this fraction of a cell to the edge cell's centre get no ghost.
const MIN_EDGE_OFFSET: f64 = 0.2;

/// One free-boundary edge of supp μ: the source cell `cell` has vacuum on its `up` side
/// (above when true) along `axis`, and the edge of the support lies `delta` (0 < δ ≤ h)
/// beyond its centre.
#[derive(Debug, Clone, Copy)]
struct Edge {
    cell: usize,
    axis: usize,
    up: bool,
    delta: f64,
}

/// What lies next to a source cell along one axis.
#[derive(Clone, Copy, PartialEq)]
enum Side {
    In,
    Wall,
    Vacuum,
}

impl<'a> SourceGrid<'a> {
    /// The source cells: active cells where μ exceeds [`SOURCE_FLOOR`] times its maximum.
    #[cfg(test)]
    pub fn new(lat: &'a Lattice, mu: &[f64]) -> SourceGrid<'a> {
        Self::with_walls(lat, mu, |_, _, _| true)
    }

    /// As [`SourceGrid::new`], with `mirror(i, a, dir)` choosing, for a source cell `i` with a
    /// wall or obstacle on its side `dir` (±1) along axis `a`, between the mirror rule (true)
    /// and the free inward rule (false); cells below [`WALL_FLOOR`] are free in any case.
    pub fn with_walls(
        lat: &'a Lattice,
        mu: &[f64],
        mirror: impl Fn(usize, usize, isize) -> bool + Sync,
    ) -> SourceGrid<'a> {
        let top = mu.iter().fold(0.0f64, |a, &b| a.max(b));
        let floor = SOURCE_FLOOR * top;
        let in_s: Vec<bool> = (0..lat.len)
            .map(|i| lat.is_active(i) && mu[i] > floor)
            .collect();
        let walled: Vec<bool> = (0..lat.len)
            .map(|i| in_s[i] && mu[i] >= WALL_FLOOR * top)
            .collect();
        let d = lat.dim();
        let side = |i: usize, c: usize, a: usize, dir: isize| -> Side {
            let j = c as isize + dir;
            let wall = if walled[i] && mirror(i, a, dir) {
                Side::Wall
            } else {
                Side::Vacuum
            };
            if j < 0 || j >= lat.shape[a] as isize {
                return wall;
            }
            let n = (i as isize + dir * lat.strides[a] as isize) as usize;
            if !lat.is_active(n) {
                wall
            } else if in_s[n] {
                Side::In
            } else {
                Side::Vacuum
            }
        };
        let rules = (0..lat.len)
            .into_par_iter()
            .map(|i| {
                let mut r = [Rule::Flat; 3];
                if !in_s[i] {
                    return r;
                }
                let c = lat.coords(i);
                for (a, ra) in r.iter_mut().enumerate().take(d) {
                    let below = side(i, c[a], a, -1);
                    let above = side(i, c[a], a, 1);
                    *ra = match (below, above) {
                        (Side::In, Side::In) => Rule::Centred,
                        (Side::Wall, Side::In) => Rule::WallBelow,
                        (Side::In, Side::Wall) => Rule::WallAbove,
                        (Side::In, Side::Vacuum) => {
                            let l = i - lat.strides[a];
                            if side(l, c[a] - 1, a, -1) == Side::In {
                                Rule::InwardBelow2
                            } else {
                                Rule::InwardBelow1
                            }
                        }
                        (Side::Vacuum, Side::In) => {
                            let u = i + lat.strides[a];
                            if side(u, c[a] + 1, a, 1) == Side::In {
                                Rule::InwardAbove2
                            } else {
                                Rule::InwardAbove1
                            }
                        }
                        _ => Rule::Flat,
                    };
                }
                r
            })
            .collect();
        SourceGrid {
            lat,
            in_s,
            rules,
            edges: Vec::new(),
            edge_of: Vec::new(),
        }
    }

    /// Free-boundary edges for an internal energy with U'(0) finite (the porous medium
    /// U = s^m/(m − 1) without entropy). The pressure along the map vanishes where μ does:
    /// p(x) = U'(μ/det A) → 0 at ∂ supp μ. In the continuum this is the degenerate equation's
    /// own business; on the grid the first cell inside the support still carries an O(1)
    /// fraction of the peak for m = 3 (a square-root edge), so the edge needs the boundary
    /// condition explicitly. It is imposed at the sub-cell position of the edge, x_e = x_i ±
    /// δ e_a, through a ghost value ψ_g beyond the edge cell: the quadratic through ψ_{i∓1},
    /// ψ_i, ψ_g must give p(x_e) = ψ(x_e) − τ|∇ψ(x_e)|²/2 − V(x_e − τ∇ψ(x_e)) = 0, and the
    /// centred differences through ψ_g replace the one-sided rules at the edge cell (gradient and
    /// normal second derivative; cross derivatives keep the inward rules). δ comes from μ: the
    /// pressure μ^{m−1} of a porous-medium profile vanishes linearly at its edge (finite
    /// interface speed), so δ = h P_i/(P_{i∓1} − P_i), at most h (the next centre carries no
    /// mass, so the edge lies before it); below [`MIN_EDGE_OFFSET`] h the cell keeps the inward rule.
    pub fn with_pressure_edges(mut self, mu: &[f64], m: f64) -> SourceGrid<'a> {
        let lat = self.lat;
        let d = lat.dim();
        let pressure = |i: usize| mu[i].max(0.0).powf(m - 1.0);
        let mut edge_of = vec![[NO_EDGE; 3]; lat.len];
        let mut edges = Vec::new();
        for (i, slots) in edge_of.iter_mut().enumerate() {
            if !self.in_s[i] {
                continue;
            }
            for (a, slot) in slots.iter_mut().enumerate().take(d) {
                let up = match self.rules[i][a] {
                    Rule::InwardBelow1 | Rule::InwardBelow2 => true,
                    Rule::InwardAbove1 | Rule::InwardAbove2 => false,
                    _ => continue,
                };
                let h = lat.h[a];
                let inner = if up {
                    i - lat.strides[a]
                } else {
                    i + lat.strides[a]
                };
                let (pi, pj) = (pressure(i), pressure(inner));
                let delta = if pj > pi {
                    (h * pi / (pj - pi)).min(h)
                } else {
                    h
                };
                if delta < MIN_EDGE_OFFSET * h {
                    // The edge all but at the cell's centre (a cell with a sliver of mass, as the
                    // front of a previous step leaves them): p(x_e) = 0 there and the cell's
                    // own p = U'(s) ≈ 0 are one condition twice, and the ghost's weight
                    // 1/l₂(δ) ~ 2h/δ makes the system stiff (measured: Newton stagnating at
                    // such cells, μ = 6e-4 max μ, on porous-m2-2d at 128² step 2). They keep
                    // the inward rule.
                    continue;
                }
                *slot = edges.len() as u32;
                edges.push(Edge {
                    cell: i,
                    axis: a,
                    up,
                    delta,
                });
            }
        }
        self.edges = edges;
        self.edge_of = edge_of;
        self
    }

    /// The inner neighbour of an edge cell along the edge's axis.
    fn inner(&self, e: &Edge) -> usize {
        if e.up {
            e.cell - self.lat.strides[e.axis]
        } else {
            e.cell + self.lat.strides[e.axis]
        }
    }

    /// The ghost value of edge `k` in `ghost`, when it is in use (finite).
    #[inline]
    fn ghost_at(&self, ghost: &[f64], i: usize, a: usize) -> Option<f64> {
        let k = *self.edge_of.get(i)?.get(a)?;
        if k == NO_EDGE {
            return None;
        }
        ghost.get(k as usize).copied().filter(|g| g.is_finite())
    }

    /// Replace the edge cells' normal gradient components in `grad` by the centred difference
    /// through the ghost value (where one is in use).
    fn patch_gradients(&self, f: &[f64], ghost: &[f64], grad: &mut [[f64; 3]]) {
        for (e, &g) in self.edges.iter().zip(ghost) {
            if g.is_finite() {
                let sigma = if e.up { 1.0 } else { -1.0 };
                grad[e.cell][e.axis] = sigma * (g - f[self.inner(e)]) / (2.0 * self.lat.h[e.axis]);
            }
        }
    }

    /// The derivative along axis `a` at cell `i` of the field `f` (read through `at`).
    #[inline]
    fn grad_by(&self, i: usize, a: usize, at: impl Fn(usize) -> f64) -> f64 {
        let s = self.lat.strides[a];
        let h = self.lat.h[a];
        match self.rules[i][a] {
            Rule::Centred => (at(i + s) - at(i - s)) / (2.0 * h),
            Rule::WallBelow => (at(i + s) - at(i)) / (2.0 * h),
            Rule::WallAbove => (at(i) - at(i - s)) / (2.0 * h),
            Rule::InwardBelow2 => (3.0 * at(i) - 4.0 * at(i - s) + at(i - 2 * s)) / (2.0 * h),
            Rule::InwardBelow1 => (at(i) - at(i - s)) / h,
            Rule::InwardAbove2 => (-3.0 * at(i) + 4.0 * at(i + s) - at(i + 2 * s)) / (2.0 * h),
            Rule::InwardAbove1 => (at(i + s) - at(i)) / h,
            Rule::Flat => 0.0,
        }
    }

    /// The second derivative of `f` along axis `a` at cell `i`: centred, mirrored at walls,
    /// 0 next to vacuum (a linearly extrapolated ghost; the one-sided second difference would
    /// put −κτ/h² on the cell's own value and make its row of the linearisation indefinite).
    #[inline]
    fn second_by(&self, f: &[f64], ghost: &[f64], i: usize, a: usize) -> f64 {
        let s = self.lat.strides[a];
        let h2 = self.lat.h[a] * self.lat.h[a];
        if let Some(g) = self.ghost_at(ghost, i, a) {
            let inner = match self.rules[i][a] {
                Rule::InwardBelow1 | Rule::InwardBelow2 => f[i - s],
                _ => f[i + s],
            };
            return (g - 2.0 * f[i] + inner) / h2;
        }
        self.second_along(i, a, |j| f[j])
    }

    /// The second derivative along axis `a` at cell `i` of the field read through `at`, by the
    /// cell's rule (without a ghost).
    #[inline]
    fn second_along(&self, i: usize, a: usize, at: impl Fn(usize) -> f64) -> f64 {
        let s = self.lat.strides[a];
        let h2 = self.lat.h[a] * self.lat.h[a];
        match self.rules[i][a] {
            Rule::Centred => (at(i + s) - 2.0 * at(i) + at(i - s)) / h2,
            Rule::WallBelow => (at(i + s) - at(i)) / h2,
            Rule::WallAbove => (at(i - s) - at(i)) / h2,
            _ => 0.0,
        }
    }

    /// Gradients of `f` at every source cell (0 elsewhere) into `grad`. Linear in `f`.
    pub fn gradients(&self, f: &[f64], grad: &mut Vec<[f64; 3]>) {
        let d = self.lat.dim();
        grad.resize(self.lat.len, [0.0; 3]);
        grad.par_iter_mut().enumerate().for_each(|(i, g)| {
            *g = [0.0; 3];
            if self.in_s[i] {
                for (a, ga) in g.iter_mut().enumerate().take(d) {
                    *ga = self.grad_by(i, a, |j| f[j]);
                }
            }
        });
    }

    /// The second derivatives of `f` at source cell `i` (slots as in [`n_second`]), from `f`,
    /// its ghost values at free-boundary edges (`&[]` when there are none) and its gradient
    /// fields: cross derivatives are the symmetrised differences of the gradients, so walls
    /// and vacuum edges are treated as for the gradient.
    #[inline]
    #[allow(clippy::needless_range_loop)] // slot k indexes the output and names its axes
    pub fn seconds(&self, f: &[f64], ghost: &[f64], grad: &[[f64; 3]], i: usize) -> [f64; 6] {
        let d = self.lat.dim();
        let mut out = [0.0; 6];
        for (a, o) in out.iter_mut().enumerate().take(d) {
            *o = self.second_by(f, ghost, i, a);
        }
        for k in d..n_second(d) {
            let (a, b) = pair(d, k);
            out[k] =
                0.5 * (self.grad_by(i, b, |j| grad[j][a]) + self.grad_by(i, a, |j| grad[j][b]));
        }
        out
    }
}

/// Cholesky of a symmetric positive definite d×d matrix (d ≤ 3): `None` when not positive
/// definite. Returns (L, det).
#[allow(clippy::needless_range_loop)] // textbook index form of a 3×3 factorisation
fn cholesky(m: &[[f64; 3]; 3], d: usize) -> Option<([[f64; 3]; 3], f64)> {
    let mut l = [[0.0; 3]; 3];
    let mut det = 1.0;
    for j in 0..d {
        let mut s = m[j][j];
        for k in 0..j {
            s -= l[j][k] * l[j][k];
        }
        if s.is_nan() || s <= 0.0 {
            return None;
        }
        let ljj = s.sqrt();
        l[j][j] = ljj;
        det *= s;
        for i in (j + 1)..d {
            let mut s = m[i][j];
            for k in 0..j {
                s -= l[i][k] * l[j][k];
            }
            l[i][j] = s / ljj;
        }
    }
    Some((l, det))
}

/// The determinant of a symmetric d×d matrix (d ≤ 3) when it is positive definite.
pub(crate) fn cholesky_det(m: &[[f64; 3]; 3], d: usize) -> Option<f64> {
    cholesky(m, d).map(|(_, det)| det)
}

/// Inverse of a symmetric positive definite matrix from its Cholesky factor.
#[allow(clippy::needless_range_loop)] // textbook index form of 3×3 substitutions
fn spd_inverse(l: &[[f64; 3]; 3], d: usize) -> [[f64; 3]; 3] {
    // Columns of A⁻¹ by forward and back substitution.
    let mut inv = [[0.0; 3]; 3];
    for col in 0..d {
        let mut y = [0.0; 3];
        for i in 0..d {
            let mut s = if i == col { 1.0 } else { 0.0 };
            for k in 0..i {
                s -= l[i][k] * y[k];
            }
            y[i] = s / l[i][i];
        }
        let mut x = [0.0; 3];
        for i in (0..d).rev() {
            let mut s = y[i];
            for k in (i + 1)..d {
                s -= l[k][i] * x[k];
            }
            x[i] = s / l[i][i];
        }
        for i in 0..d {
            inv[i][col] = x[i];
        }
    }
    inv
}

/// The linearisation at one cell: δr = α δψ + b·∇δψ + Σ_k C_k (D²δψ)_k (off-diagonal slots
/// counted twice).
pub(crate) type Coef = [f64; 10];

/// One JKO step's source-side system.
pub(crate) struct SourceModel<'a> {
    pub grid: &'a SourceGrid<'a>,
    pub tau: f64,
    /// ρⁿ on the box.
    pub mu: &'a [f64],
    /// V on the box (0 on masked cells and where there is no potential).
    pub v: &'a [f64],
    pub local: LocalDual,
    /// Pressure scale κ of the preconditioner.
    pub kappa: f64,
    /// Mass of ρⁿ.
    pub mass: f64,
}

/// What one evaluation of the residual gives.
pub(crate) struct Evaluation {
    /// Σ r² over the source cells (pressure units).
    pub merit: f64,
    /// Relative L1 marginal error Σ|K| |ρ(p) det A − μ| / M.
    pub marginal: f64,
}

/// Scratch arrays of the gradient field and the free-boundary ghost values, and the ghosts'
/// linearisation at the last evaluation with coefficients.
pub(crate) struct Fields {
    pub grad: Vec<[f64; 3]>,
    /// Ghost value per free-boundary edge (NaN where the edge falls back to the inward rule).
    ghost: Vec<f64>,
    /// δψ_g = w₀ δψ_inner + w₁ δψ_i + Σ_b w_{2+b} ∂_bδψ_i (inward-rule gradient, b ≠ axis);
    /// NaN where the edge fell back. Written only with the coefficients, read by `apply`.
    ghost_lin: Vec<[f64; 5]>,
    /// Width ε (pressure units) over which the cap's min(p, P(s)) is smoothed in the
    /// evaluations (0: the exact min). Set by the Newton iteration, which lowers it with the
    /// residual (a smoothing Newton method); no effect without a cap.
    pub cap_smoothing: f64,
}

impl Fields {
    pub fn new() -> Fields {
        Fields {
            grad: Vec::new(),
            ghost: Vec::new(),
            ghost_lin: Vec::new(),
            cap_smoothing: 0.0,
        }
    }
}

/// min(p, q) smoothed over the width ε ≥ 0, m = (p + q − √((p − q)² + 4ε²))/2 (Chen–Harker–
/// Kanzow–Smale), and its derivative w = ∂m/∂p ∈ [0, 1] (∂m/∂q = 1 − w): 0 ≤ min − m ≤ ε,
/// exact for ε = 0 (w = 1 where p ≤ q, else 0). Written without the cancellation of the
/// textbook form.
pub(crate) fn smooth_min(p: f64, q: f64, eps: f64) -> (f64, f64) {
    if eps <= 0.0 {
        return if p > q { (q, 0.0) } else { (p, 1.0) };
    }
    let dpq = p - q;
    let root = dpq.hypot(2.0 * eps);
    let e2 = 2.0 * eps * eps;
    if dpq > 0.0 {
        (q - e2 / (root + dpq), e2 / (root * (root + dpq)))
    } else {
        (p - e2 / (root - dpq), (root - dpq) / (2.0 * root))
    }
}

impl SourceModel<'_> {
    fn dim(&self) -> usize {
        self.grid.lat.dim()
    }

    /// The cold start: ψ = U'(μ) + V on the source cells (explicit Euler's map), 0 elsewhere.
    pub fn cold_start(&self) -> Vec<f64> {
        let cap = self.local.cap().unwrap_or(f64::INFINITY);
        (0..self.grid.lat.len)
            .map(|i| {
                if self.grid.in_s[i] {
                    self.local.du(self.mu[i].min(cap)) + self.v[i]
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// r(ψ) into `r` (0 off the source cells) and, when `coef` is given, the linearisation.
    /// `None` when ψ is not c-concave at some source cell (A not positive definite) or a
    /// value is not finite.
    pub fn evaluate(
        &self,
        psi: &[f64],
        fields: &mut Fields,
        r: &mut [f64],
        coef: Option<&mut [Coef]>,
    ) -> Option<Evaluation> {
        let grid = self.grid;
        let lat = grid.lat;
        let d = self.dim();
        let tau = self.tau;
        grid.gradients(psi, &mut fields.grad);
        self.solve_ghosts(psi, fields, coef.is_some());
        grid.patch_gradients(psi, &fields.ghost, &mut fields.grad);
        let cap_smoothing = fields.cap_smoothing;
        let grad = &fields.grad;
        let ghost = &fields.ghost;
        let ns = n_second(d);
        let w = lat.volume;
        let cell = |i: usize, out: &mut f64, cf: Option<&mut Coef>| -> Option<f64> {
            if !grid.in_s[i] {
                *out = 0.0;
                if let Some(cf) = cf {
                    *cf = [0.0; 10];
                }
                return Some(0.0);
            }
            let second = grid.seconds(psi, ghost, grad, i);
            let mut a = [[0.0; 3]; 3];
            for (k, h) in second.iter().enumerate().take(ns) {
                let (p, q) = pair(d, k);
                a[p][q] = -tau * h;
                a[q][p] = -tau * h;
            }
            for (p, row) in a.iter_mut().enumerate().take(d) {
                row[p] += 1.0;
            }
            let (l, det) = cholesky(&a, d)?;
            let s = self.mu[i] / det;
            let c = lat.coords(i);
            let g = grad[i];
            let mut t = [0.0; 3];
            let mut g2 = 0.0;
            for q in 0..d {
                t[q] = lat.centre(q, c[q]) - tau * g[q];
                g2 += g[q] * g[q];
            }
            let (vt, dv) = lat.interpolate_with_gradient(self.v, &t);
            let p = psi[i] - 0.5 * tau * g2 - vt;
            // With the cap r = min(p, P(s)) − U'(s), P = U'(ρ_max) near the cap (LocalDual::
            // capped_pressure), the min smoothed over the width ε = `fields.cap_smoothing`
            // (see `smooth_min`); ε = 0 is the semismooth form, derivative 0 in p on capped cells.
            let du = self.local.du(s);
            // (the smoothed min, its weight ∂/∂p, the factor of κ on the capped branch)
            let branch = self.local.capped_pressure(s).map(|(cap_p, f)| {
                let (m, w) = smooth_min(p, cap_p, cap_smoothing);
                (m, w, f)
            });
            let res = branch.map_or(p, |(m, _, _)| m) - du;
            if !res.is_finite() {
                return None;
            }
            *out = res;
            if let Some(cf) = cf {
                let inv = spd_inverse(&l, d);
                let mut k_coef = [0.0; 10];
                // δr = w δp − κτ (w + (1 − w) f) tr(A⁻¹D²δψ), w = ∂min/∂p, where δp = δψ +
                // τ(∇V(T) − ∇ψ)·∇δψ and (1 − w)(f − 1) is the share of the raised kink's slope.
                let w = branch.map_or(1.0, |(_, w, _)| w);
                if w > 0.0 {
                    k_coef[0] = w;
                    for q in 0..d {
                        k_coef[1 + q] = w * tau * (dv[q] - g[q]);
                    }
                }
                let factor = branch.map_or(1.0, |(_, w, f)| w + (1.0 - w) * f);
                let scale = -self.local.kappa(s) * tau * factor;
                for k in 0..ns {
                    let (p, q) = pair(d, k);
                    let mult = if p == q { 1.0 } else { 2.0 };
                    k_coef[4 + k] = mult * scale * inv[p][q];
                }
                *cf = k_coef;
            }
            // Marginal error of the cell: |ρ(p) det A − μ|.
            let back = self.local.rho(p) * det;
            Some(w * (back - self.mu[i]).abs())
        };
        let marginal: Option<f64> = match coef {
            Some(cf) => r
                .par_iter_mut()
                .zip(cf.par_iter_mut())
                .enumerate()
                .map(|(i, (o, c))| cell(i, o, Some(c)))
                .try_reduce(|| 0.0, |x, y| Some(x + y)),
            None => r
                .par_iter_mut()
                .enumerate()
                .map(|(i, o)| cell(i, o, None))
                .try_reduce(|| 0.0, |x, y| Some(x + y)),
        };
        let marginal = marginal? / self.mass;
        let merit = par_sum(r.len(), |i| r[i] * r[i]);
        if !merit.is_finite() {
            return None;
        }
        Some(Evaluation { merit, marginal })
    }

    /// The ghost values of the free-boundary edges for `psi` into `fields.ghost` (and, when
    /// `lin`, their linearisation into `fields.ghost_lin`), from the inward-rule gradients
    /// in `fields.grad`. On the edge's axis, in the coordinate ξ pointing into the vacuum
    /// (ξ = −h, 0, h at the inner cell, the edge cell and the ghost), ψ is the quadratic
    /// q(ξ) = l₀ψ_inner + l₁ψ_i + l₂ψ_g; across it the gradient is the edge cell's. The ghost
    /// solves p(δ) = q(δ) − τ(q'(δ)² + |∇⊥ψ|²)/2 − V(x_e − τ∇ψ(x_e)) = 0 by scalar Newton
    /// from the linear extrapolation 2ψ_i − ψ_inner; ∂p/∂ψ_g = l₂ + β l₂' with
    /// β = τ(∂_ξV − q'), the map's displacement into the vacuum. Where that derivative is small
    /// (the map moving inward faster than about δ/2: the edge's pressure hardly depends on the
    /// ghost) or the solve fails, the edge falls back to the inward rule (NaN).
    fn solve_ghosts(&self, psi: &[f64], fields: &mut Fields, lin: bool) {
        let grid = self.grid;
        let lat = grid.lat;
        let d = self.dim();
        let tau = self.tau;
        let grad = &fields.grad;
        let solved: Vec<(f64, [f64; 5])> = grid
            .edges
            .par_iter()
            .map(|e| {
                let fail = (f64::NAN, [f64::NAN; 5]);
                let (i, a) = (e.cell, e.axis);
                let h = lat.h[a];
                let sigma = if e.up { 1.0 } else { -1.0 };
                let (fj, fi) = (psi[grid.inner(e)], psi[i]);
                let x = e.delta;
                let h2 = h * h;
                let l = [
                    x * (x - h) / (2.0 * h2),
                    1.0 - x * x / h2,
                    x * (x + h) / (2.0 * h2),
                ];
                let dl = [
                    (2.0 * x - h) / (2.0 * h2),
                    -2.0 * x / h2,
                    (2.0 * x + h) / (2.0 * h2),
                ];
                let c = lat.coords(i);
                let g = grad[i];
                let mut xe = [0.0; 3];
                let mut perp2 = 0.0;
                for q in 0..d {
                    xe[q] = lat.centre(q, c[q]);
                    if q != a {
                        perp2 += g[q] * g[q];
                    }
                }
                xe[a] += sigma * x;
                let mut ghost = 2.0 * fi - fj;
                for it in 0..30 {
                    let q = l[0] * fj + l[1] * fi + l[2] * ghost;
                    let dq = dl[0] * fj + dl[1] * fi + dl[2] * ghost;
                    let mut t = xe;
                    for b in 0..d {
                        t[b] -= tau * if b == a { sigma * dq } else { g[b] };
                    }
                    let (vt, dv) = lat.interpolate_with_gradient(self.v, &t);
                    let p = q - 0.5 * tau * (dq * dq + perp2) - vt;
                    let beta = tau * (sigma * dv[a] - dq);
                    let den = l[2] + beta * dl[2];
                    // (den ≤ 0.1 l₂, or NaN)
                    if den.partial_cmp(&(0.1 * l[2])) != Some(std::cmp::Ordering::Greater)
                        || !p.is_finite()
                    {
                        return fail;
                    }
                    let step = p / den;
                    if step.abs() <= 1e-13 * (1.0 + ghost.abs()) {
                        let mut w = [0.0; 5];
                        if lin {
                            w[0] = -(l[0] + beta * dl[0]) / den;
                            w[1] = -(l[1] + beta * dl[1]) / den;
                            for b in 0..d {
                                if b != a {
                                    w[2 + b] = -tau * (dv[b] - g[b]) / den;
                                }
                            }
                        }
                        return (ghost - step, w);
                    }
                    ghost -= step;
                    if it == 29 {
                        return fail;
                    }
                }
                fail
            })
            .collect();
        fields.ghost.clear();
        fields.ghost.extend(solved.iter().map(|x| x.0));
        if lin {
            fields.ghost_lin.clear();
            fields.ghost_lin.extend(
                solved
                    .iter()
                    .map(|x| if x.0.is_finite() { x.1 } else { [f64::NAN; 5] }),
            );
        }
    }

    /// The ghost values of the free-boundary edges at `psi`, as (box cell, value) for the
    /// vacuum cells next to the edges (inside the box; the largest value where a cell is the
    /// ghost of several edges). They carry the quadratic continuation of ψ to the edge of the
    /// support into the c-transform that recovers the target potential: from the cell centres
    /// alone φ = ψ^c̄ would continue past the image of the last cell with the cost's
    /// curvature 1/τ instead of the pressure's slope, and cut the front short (measured: the
    /// front cell of porous-m3-2d at 64² one step on, 0.086 against Barenblatt's 0.161).
    /// Beyond the edge the pressure of a ghost is negative, so it moves no mass there.
    pub fn ghost_extension(&self, psi: &[f64]) -> Vec<(usize, f64)> {
        let grid = self.grid;
        if grid.edges.is_empty() {
            return Vec::new();
        }
        let lat = grid.lat;
        let mut fields = Fields::new();
        grid.gradients(psi, &mut fields.grad);
        self.solve_ghosts(psi, &mut fields, false);
        let mut out: Vec<(usize, f64, isize)> = Vec::new();
        for (e, &g) in grid.edges.iter().zip(&fields.ghost) {
            if !g.is_finite() {
                continue;
            }
            // Two cells beyond the edge cell: the ghost, and the quadratic continued one more
            // cell (so that the c-transform's sub-cell refinement, which needs both neighbours
            // of a node, also refines at the ghost).
            let (fj, fi) = (psi[grid.inner(e)], psi[e.cell]);
            let c = lat.coords(e.cell)[e.axis] as isize;
            let sign = if e.up { 1 } else { -1 };
            for (k, value) in [(1isize, g), (2, fj - 3.0 * fi + 3.0 * g)] {
                let at = c + sign * k;
                if at < 0 || at >= lat.shape[e.axis] as isize {
                    break;
                }
                let cell = (e.cell as isize + sign * k * lat.strides[e.axis] as isize) as usize;
                if grid.in_s[cell] || !lat.is_active(cell) {
                    break;
                }
                match out.iter_mut().find(|x| x.0 == cell) {
                    // A first-layer ghost (an interpolation up to the edge) wins over a
                    // second-layer one (an extrapolation); among equals the smaller value,
                    // which moves less mass beyond the edge.
                    Some(x) if k < x.2 || (k == x.2 && value < x.1) => *x = (cell, value, k),
                    Some(_) => {}
                    None => out.push((cell, value, k)),
                }
            }
        }
        out.into_iter().map(|(c, v, _)| (c, v)).collect()
    }

    /// The diagonal J_ii of the linearisation at the cells with a free-boundary ghost in use
    /// (from the coefficients and ghost weights of the last evaluation with coefficients),
    /// without the small contributions of the cross derivatives and of the ghosts' transverse
    /// weights. The ghost's weight on its edge cell, −l₁/l₂ ≈ −2h/δ, makes these rows strongly
    /// diagonal where the edge lies close to the cell centre, which the constant-coefficient
    /// Helmholtz preconditioner does not see (issue 20, round 7: GMRES stalling at such cells).
    pub fn edge_diagonal(&self, coef: &[Coef], fields: &Fields) -> Vec<(usize, f64)> {
        let grid = self.grid;
        let lat = grid.lat;
        let d = self.dim();
        let mut cells: Vec<usize> = grid
            .edges
            .iter()
            .zip(&fields.ghost_lin)
            .filter(|(_, w)| w[0].is_finite())
            .map(|(e, _)| e.cell)
            .collect();
        cells.sort_unstable();
        cells.dedup();
        cells
            .into_iter()
            .map(|i| {
                let c = &coef[i];
                let mut diag = c[0];
                for a in 0..d {
                    let h = lat.h[a];
                    let ghost = grid
                        .edge_of
                        .get(i)
                        .map(|slots| slots[a])
                        .filter(|&k| k != NO_EDGE)
                        .map(|k| (grid.edges[k as usize], fields.ghost_lin[k as usize]))
                        .filter(|(_, w)| w[0].is_finite());
                    let (dg, ds) = match ghost {
                        Some((e, w)) => {
                            let sigma = if e.up { 1.0 } else { -1.0 };
                            (sigma * w[1] / (2.0 * h), (w[1] - 2.0) / (h * h))
                        }
                        // The rules' own weights on the cell: the rules applied to e_i.
                        None => {
                            let unit = |j: usize| if j == i { 1.0 } else { 0.0 };
                            (grid.grad_by(i, a, unit), grid.second_along(i, a, unit))
                        }
                    };
                    diag += c[1 + a] * dg + c[4 + a] * ds;
                }
                (i, diag)
            })
            .filter(|(_, diag)| diag.is_finite() && *diag != 0.0)
            .collect()
    }

    /// The capped rows of the linearisation (the cells on the cap's branch, whose row has no
    /// zeroth-order term: δr = Σ C_k (D²δψ)_k only), each with its mean diagonal diffusion
    /// b_i = −(1/d) Σ_a C_aa > 0, and the depth of the capped set: the largest number of cells
    /// between a capped cell and the nearest free source cell (the capped block couples to the
    /// free rows only through its rim). Edge cells with a ghost are left to the Jacobi block.
    pub fn capped_rows(&self, coef: &[Coef], skip: &[(usize, f64)]) -> (Vec<(usize, f64)>, usize) {
        let grid = self.grid;
        let lat = grid.lat;
        let d = self.dim();
        let rows: Vec<(usize, f64)> = (0..lat.len)
            .into_par_iter()
            .filter(|&i| grid.in_s[i] && coef[i][0] < 0.5)
            .filter_map(|i| {
                let b = -(0..d).map(|a| coef[i][4 + a]).sum::<f64>() / d as f64;
                (b > 0.0 && b.is_finite()).then_some((i, b))
            })
            .filter(|(i, _)| skip.binary_search_by_key(i, |e| e.0).is_err())
            .collect();
        if rows.is_empty() {
            return (rows, 0);
        }
        // Breadth-first distance (in cells, along the axes) from the free source cells.
        let mut depth = vec![usize::MAX; lat.len];
        for &(i, _) in &rows {
            depth[i] = usize::MAX - 1;
        }
        let mut front: Vec<usize> = (0..lat.len)
            .filter(|&i| grid.in_s[i] && depth[i] == usize::MAX)
            .collect();
        for &i in &front {
            depth[i] = 0;
        }
        let mut level = 0;
        while !front.is_empty() {
            level += 1;
            let mut next = Vec::new();
            for &i in &front {
                let c = lat.coords(i);
                for (a, &ca) in c.iter().enumerate().take(d) {
                    for dir in [-1isize, 1] {
                        let j = ca as isize + dir;
                        if j < 0 || j >= lat.shape[a] as isize {
                            continue;
                        }
                        let n = (i as isize + dir * lat.strides[a] as isize) as usize;
                        if depth[n] == usize::MAX - 1 {
                            depth[n] = level;
                            next.push(n);
                        }
                    }
                }
            }
            front = next;
        }
        // A capped cluster with no free neighbour at all: as deep as the box is wide.
        let widest = lat.shape.iter().copied().max().unwrap_or(1);
        let deepest = rows
            .iter()
            .map(|&(i, _)| {
                if depth[i] >= usize::MAX - 1 {
                    widest
                } else {
                    depth[i]
                }
            })
            .max()
            .unwrap_or(1);
        (rows, deepest)
    }

    /// out = J v with the coefficients of the last evaluation.
    pub fn apply(&self, coef: &[Coef], v: &[f64], fields: &mut Fields, out: &mut [f64]) {
        let d = self.dim();
        let ns = n_second(d);
        let grid = self.grid;
        grid.gradients(v, &mut fields.grad);
        // The ghosts' linearisation, from the inward-rule gradients of v.
        fields.ghost.clear();
        fields
            .ghost
            .extend(grid.edges.iter().zip(&fields.ghost_lin).map(|(e, w)| {
                let mut g = w[0] * v[grid.inner(e)] + w[1] * v[e.cell];
                for b in 0..d {
                    if b != e.axis {
                        g += w[2 + b] * fields.grad[e.cell][b];
                    }
                }
                g
            }));
        grid.patch_gradients(v, &fields.ghost, &mut fields.grad);
        let grad = &fields.grad;
        let ghost = &fields.ghost;
        out.par_iter_mut().enumerate().for_each(|(i, o)| {
            if !grid.in_s[i] {
                *o = 0.0;
                return;
            }
            let c = &coef[i];
            let g = grad[i];
            let second = grid.seconds(v, ghost, grad, i);
            let mut x = c[0] * v[i];
            for q in 0..d {
                x += c[1 + q] * g[q];
            }
            for k in 0..ns {
                x += c[4 + k] * second[k];
            }
            *o = x;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jko_core::Mesh;

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The linearisation matches finite differences of the residual, in 1D, 2D (with an
    /// obstacle and vacuum) and 3D, with and without the cap.
    #[test]
    fn linearisation_matches_finite_differences() {
        // 14 × 12 cells with a two-cell obstacle.
        let obstacle = || {
            Mesh::masked_grid(
                &[14, 12],
                &[-2.0, -2.0],
                &[2.0, 2.0],
                Some((0..168).map(|k| k != 40 && k != 41).collect()),
            )
            .unwrap()
        };
        let cases: Vec<(Mesh, LocalDual)> = vec![
            (
                Mesh::grid(&[30], &[-2.0], &[2.0]).unwrap(),
                LocalDual::new(Some(0.5), None, None).unwrap(),
            ),
            (
                obstacle(),
                LocalDual::new(None, Some(2.0), Some(1.2)).unwrap(),
            ),
            (
                Mesh::grid(&[7, 6, 8], &[-2.0; 3], &[2.0; 3]).unwrap(),
                LocalDual::new(Some(0.3), Some(3.0), None).unwrap(),
            ),
            // Entropy with the cap (crowd motion), a cap low enough to bind on some cells.
            (
                obstacle(),
                LocalDual::new(Some(0.05), None, Some(1.0)).unwrap(),
            ),
        ];
        // With a cap, both the exact min (ε = 0) and the smoothed one.
        let cases = cases.into_iter().flat_map(|(mesh, local)| {
            let widths: &[f64] = if local.cap().is_some() {
                &[0.0, 0.02]
            } else {
                &[0.0]
            };
            widths.iter().map(move |&eps| (mesh.clone(), local, eps))
        });
        for (mesh, local, eps) in cases {
            let lat = Lattice::of_mesh(&mesh).unwrap();
            let d = lat.dim();
            let mut seed = 7u64;
            let mu: Vec<f64> = (0..lat.len)
                .map(|i| {
                    let c = lat.coords(i);
                    let r2: f64 = (0..d).map(|a| lat.centre(a, c[a]).powi(2)).sum();
                    let m = (1.5 - r2).max(0.0);
                    if lat.is_active(i) {
                        m * (1.0 + 0.1 * lcg(&mut seed))
                    } else {
                        0.0
                    }
                })
                .collect();
            let v: Vec<f64> = (0..lat.len)
                .map(|i| {
                    let c = lat.coords(i);
                    (0..d)
                        .map(|a| 0.3 * lat.centre(a, c[a]).powi(2) + 0.1 * lat.centre(a, c[a]))
                        .sum()
                })
                .collect();
            // The porous cases (no entropy) carry free-boundary edges with ghost values.
            let grid = match local.free_boundary_exponent() {
                Some(m) => SourceGrid::new(&lat, &mu).with_pressure_edges(&mu, m),
                None => SourceGrid::new(&lat, &mu),
            };
            if local.free_boundary_exponent().is_some() {
                assert!(!grid.edges.is_empty());
            }
            let model = SourceModel {
                grid: &grid,
                tau: 0.05,
                mu: &mu,
                v: &v,
                local,
                kappa: 1.0,
                mass: lat.volume * mu.iter().sum::<f64>(),
            };
            let psi: Vec<f64> = model
                .cold_start()
                .iter()
                .map(|x| x + 0.01 * lcg(&mut seed))
                .collect();
            let dir: Vec<f64> = (0..lat.len)
                .map(|i| {
                    if grid.in_s[i] {
                        lcg(&mut seed) - 0.5
                    } else {
                        0.0
                    }
                })
                .collect();
            let mut fields = Fields::new();
            fields.cap_smoothing = eps;
            let mut r0 = vec![0.0; lat.len];
            let mut coef = vec![[0.0; 10]; lat.len];
            model
                .evaluate(&psi, &mut fields, &mut r0, Some(&mut coef))
                .expect("admissible");
            let mut jv = vec![0.0; lat.len];
            model.apply(&coef, &dir, &mut fields, &mut jv);
            let e = 1e-7;
            let shifted: Vec<f64> = psi.iter().zip(&dir).map(|(a, b)| a + e * b).collect();
            let mut r1 = vec![0.0; lat.len];
            model
                .evaluate(&shifted, &mut fields, &mut r1, None)
                .unwrap();
            let mut worst = 0.0f64;
            let mut scale = 0.0f64;
            for i in 0..lat.len {
                let fd = (r1[i] - r0[i]) / e;
                worst = worst.max((fd - jv[i]).abs());
                scale = scale.max(fd.abs());
            }
            // Kinks (the interpolation of V, the min of the cap) can sit between ψ and ψ + εv:
            // compare in the max norm relative to the size of Jv.
            assert!(worst < 1e-4 * scale, "dim {d}, ε {eps}: {worst} vs {scale}");
        }
    }

    /// The smoothed min: below the min by at most ε (exactly ε where p = q), the min itself for
    /// ε = 0, its weight ∂m/∂p against a central difference, and no cancellation far from the
    /// kink (the textbook form returns 0 for the gap there).
    #[test]
    fn smooth_min_bounds_derivative_and_limits() {
        let mut seed = 3u64;
        for _ in 0..200 {
            let p = 4.0 * lcg(&mut seed) - 2.0;
            let q = 4.0 * lcg(&mut seed) - 2.0;
            let eps = 0.01 + 0.1 * lcg(&mut seed);
            let (m, w) = smooth_min(p, q, eps);
            let gap = p.min(q) - m;
            assert!(
                (0.0..=eps * (1.0 + 1e-12)).contains(&gap),
                "{p} {q} {eps}: {gap}"
            );
            assert!((0.0..=1.0).contains(&w));
            let e = 1e-6;
            let fd = (smooth_min(p + e, q, eps).0 - smooth_min(p - e, q, eps).0) / (2.0 * e);
            assert!((fd - w).abs() < 1e-6, "{fd} vs {w}");
            assert_eq!(
                smooth_min(p, q, 0.0),
                if p > q { (q, 0.0) } else { (p, 1.0) }
            );
        }
        let (m, w) = smooth_min(1.0, 1.0, 0.01);
        assert!((m - 0.99).abs() < 1e-15 && (w - 0.5).abs() < 1e-15);
        let (m, _) = smooth_min(1e8, 0.0, 1e-6);
        assert!(m < 0.0 && m > -1e-19, "{m}");
    }
}

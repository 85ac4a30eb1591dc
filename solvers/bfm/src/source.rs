//! The optimality system of a JKO step written on the source grid, in the source potential ψ.
//!
//! With the cost |x − y|²/(2τ), the step's optimal map is T(x) = x − τ∇ψ(x) for a c-concave ψ
//! (A = I − τD²ψ positive definite), the target potential is φ = ψ^c̄ and, along the map,
//! φ(T(x)) = ψ(x) − τ|∇ψ(x)|²/2. The new density at T(x) is ρ(p) = (U*)'(p) of the pressure
//! p(x) = φ(T(x)) − V(T(x)), and mass conservation along the map is ρ(p(x)) det A(x) = μ(x).
//! Written in pressure units with s(x) = μ(x)/det A(x) (the density the map delivers at T(x)):
//!
//!   r(x) = p(x) − U'(s(x)) = 0                                  (entropy and/or porous medium)
//!   r(x) = min(p(x) − U'(s(x)), c (ρ_max − s(x))) = 0,  c = κ/ρ_max   (with the cap ρ ≤ ρ_max)
//!
//! at every source cell (μ(x) > 0). The min form says: either the density is below the cap
//! and the pressure equals U'(s), or the density is at the cap and the pressure is above
//! U'(ρ_max) (the cap's multiplier). The unknown ψ lives on the support of μ only, so vacuum
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
    pub fn new(lat: &'a Lattice, mu: &[f64]) -> SourceGrid<'a> {
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
            let wall = if walled[i] { Side::Wall } else { Side::Vacuum };
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
        SourceGrid { lat, in_s, rules }
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
    fn second_by(&self, f: &[f64], i: usize, a: usize) -> f64 {
        let s = self.lat.strides[a];
        let h2 = self.lat.h[a] * self.lat.h[a];
        match self.rules[i][a] {
            Rule::Centred => (f[i + s] - 2.0 * f[i] + f[i - s]) / h2,
            Rule::WallBelow => (f[i + s] - f[i]) / h2,
            Rule::WallAbove => (f[i - s] - f[i]) / h2,
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

    /// The second derivatives of `f` at source cell `i` (slots as in [`n_second`]), from `f`
    /// and its gradient fields: cross derivatives are the symmetrised differences of the
    /// gradients, so walls and vacuum edges are treated as for the gradient.
    #[inline]
    #[allow(clippy::needless_range_loop)] // slot k indexes the output and names its axes
    pub fn seconds(&self, f: &[f64], grad: &[[f64; 3]], i: usize) -> [f64; 6] {
        let d = self.lat.dim();
        let mut out = [0.0; 6];
        for (a, o) in out.iter_mut().enumerate().take(d) {
            *o = self.second_by(f, i, a);
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
    /// Pressure scale κ of the preconditioner and of the cap's residual.
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

/// Scratch array of the gradient field.
pub(crate) struct Fields {
    pub grad: Vec<[f64; 3]>,
}

impl Fields {
    pub fn new() -> Fields {
        Fields { grad: Vec::new() }
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
        let grad = &fields.grad;
        let ns = n_second(d);
        let cap = self.local.cap();
        let c_cap = cap.map(|c| self.kappa / c);
        let w = lat.volume;
        let cell = |i: usize, out: &mut f64, cf: Option<&mut Coef>| -> Option<f64> {
            if !grid.in_s[i] {
                *out = 0.0;
                if let Some(cf) = cf {
                    *cf = [0.0; 10];
                }
                return Some(0.0);
            }
            let second = grid.seconds(psi, grad, i);
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
            let r1 = p - self.local.du(s);
            let (res, saturated) = match (cap, c_cap) {
                (Some(rm), Some(cc)) => {
                    let r2 = cc * (rm - s);
                    if r2 < r1 { (r2, true) } else { (r1, false) }
                }
                _ => (r1, false),
            };
            if !res.is_finite() {
                return None;
            }
            *out = res;
            if let Some(cf) = cf {
                let inv = spd_inverse(&l, d);
                let mut k_coef = [0.0; 10];
                let scale = if saturated {
                    -c_cap.unwrap_or(0.0) * s * tau
                } else {
                    k_coef[0] = 1.0;
                    for q in 0..d {
                        k_coef[1 + q] = tau * (dv[q] - g[q]);
                    }
                    -self.local.kappa(s) * tau
                };
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

    /// out = J v with the coefficients of the last evaluation.
    pub fn apply(&self, coef: &[Coef], v: &[f64], fields: &mut Fields, out: &mut [f64]) {
        let d = self.dim();
        let ns = n_second(d);
        let grid = self.grid;
        grid.gradients(v, &mut fields.grad);
        let grad = &fields.grad;
        out.par_iter_mut().enumerate().for_each(|(i, o)| {
            if !grid.in_s[i] {
                *o = 0.0;
                return;
            }
            let c = &coef[i];
            let g = grad[i];
            let second = grid.seconds(v, grad, i);
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
        let cases: Vec<(Mesh, LocalDual)> = vec![
            (
                Mesh::grid(&[30], &[-2.0], &[2.0]).unwrap(),
                LocalDual::new(Some(0.5), None, None).unwrap(),
            ),
            (
                Mesh::masked_grid(
                    &[14, 12],
                    &[-2.0, -2.0],
                    &[2.0, 2.0],
                    Some((0..168).map(|k| k != 40 && k != 41).collect()),
                )
                .unwrap(),
                LocalDual::new(None, Some(2.0), Some(1.2)).unwrap(),
            ),
            (
                Mesh::grid(&[7, 6, 8], &[-2.0; 3], &[2.0; 3]).unwrap(),
                LocalDual::new(Some(0.3), Some(3.0), None).unwrap(),
            ),
        ];
        for (mesh, local) in cases {
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
            let grid = SourceGrid::new(&lat, &mu);
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
            assert!(worst < 1e-4 * scale, "dim {d}: {worst} vs {scale}");
        }
    }
}

//! The c-transforms for the cost c(x, y) = |x − y|²/(2τ), on the grid nodes:
//!
//!   φ^c(x) = min_y φ(y) + |x − y|²/(2τ),      ψ_c̄(y) = max_x ψ(x) − |x − y|²/(2τ).
//!
//! The cost is a sum over axes, so the minimum over y is taken one axis at a time (a
//! d-dimensional transform is d passes of 1D transforms over grid lines). Each 1D transform
//! is the lower envelope of the parabolas j ↦ f_j + w (i − j)², w = h²/(2τ), computed in
//! linear time (the envelope scan of Felzenszwalb & Huttenlocher; equivalent to Lucet's
//! linear-time Legendre transform, since φ^c(x) = |x|²/(2τ) − (φ + |·|²/(2τ))*(x/τ)).
//!
//! Masked cells are excluded: they enter as +∞ in a min-transform (no mass may go there) and
//! as −∞ in a max-transform (no mass comes from there). Every output cell, masked or not, gets
//! a finite value as long as some input is finite.

use crate::lattice::{Lattice, for_each_line};
use rayon::prelude::*;

/// Scratch of one 1D envelope scan.
#[derive(Default)]
pub(crate) struct Envelope {
    out: Vec<f64>,
    vertex: Vec<usize>,
    /// f_j + w j² of each vertex j on the stack.
    key: Vec<f64>,
    /// The abscissa from which each vertex's parabola is the lowest, as a fraction
    /// (numerator, denominator > 0): the scan compares products, without a division in its
    /// loop-carried chain (the divisions were most of a transform's time).
    cut: Vec<(f64, f64)>,
}

impl Envelope {
    /// In place: f_i ← min_j f_j + w (i − j)², skipping infinite f_j. A line of only
    /// infinite values stays infinite. With `refine`, the minimum over the grid nodes is
    /// lowered to the minimum over the half cells around the best node of the quadratic
    /// through it and its two neighbours: for smooth f the transform is then exact to O(h³)
    /// instead of O(h²/τ) (a grid node is missed when the slopes of f + w(i − j)² are spaced
    /// wider than the grid allows), and it never rises above the grid minimum, so duality
    /// pairs stay feasible on the grid. Only a node with finite values on both sides is
    /// refined: the quadratic then interpolates over the half cells searched. At the end of
    /// the finite values a one-sided quadratic would be extrapolated half a cell beyond the
    /// data, where a steep f (the potential near a wall) makes it arbitrarily wrong; that put
    /// spurious mass in the corners of a double well and broke the JKO energy inequality
    /// (issue 20), so the end nodes keep their grid value.
    #[cfg(test)]
    pub fn min_transform(&mut self, f: &mut [f64], w: f64, refine: bool) {
        self.min_transform_with(f, w, Refine::from(refine));
    }

    /// [`Envelope::min_transform`] with the refinement chosen by `how`.
    fn min_transform_with(&mut self, f: &mut [f64], w: f64, how: Refine) {
        let n = f.len();
        self.out.resize(n, 0.0);
        self.vertex.resize(n, 0);
        self.key.resize(n, 0.0);
        self.cut.resize(n + 1, (0.0, 1.0));
        const BELOW: (f64, f64) = (f64::NEG_INFINITY, 1.0);
        const ABOVE: (f64, f64) = (f64::INFINITY, 1.0);
        let (vertex, key, cut) = (&mut self.vertex[..], &mut self.key[..], &mut self.cut[..]);
        let mut k = 0usize;
        let mut first = true;
        for (q, &fq) in f.iter().enumerate() {
            if !fq.is_finite() {
                continue;
            }
            // The parabola of q is f_q + w (i − q)² = f_q + w q² − 2wq i + w i²: the lower
            // envelope compares the keys f_q + w q² (kept for the vertices on the stack).
            let kq = fq + w * (q * q) as f64;
            if first {
                vertex[0] = q;
                key[0] = kq;
                cut[0] = BELOW;
                first = false;
                continue;
            }
            loop {
                let p = vertex[k];
                // The parabolas of p and q cross at s = num/den.
                let (num, den) = (kq - key[k], 2.0 * w * (q - p) as f64);
                let (cn, cd) = cut[k];
                if k > 0 && num * cd <= cn * den {
                    k -= 1;
                } else {
                    k += 1;
                    vertex[k] = q;
                    key[k] = kq;
                    cut[k] = if num * cd < cn * den {
                        (cn, cd)
                    } else {
                        (num, den)
                    };
                    break;
                }
            }
        }
        if first {
            return;
        }
        // The last vertex's parabola is the lowest to the end of the line.
        cut[k + 1] = ABOVE;
        let mut k = 0usize;
        for (i, out) in self.out.iter_mut().enumerate() {
            while {
                let (cn, cd) = cut[k + 1];
                cn < i as f64 * cd
            } {
                k += 1;
            }
            let p = vertex[k];
            let di = i as f64 - p as f64;
            let grid = f[p] + w * di * di;
            *out = match how {
                Refine::No => grid,
                Refine::Quadratic => grid.min(refined(f, p, i, w, false)),
                Refine::Bounded => grid.min(refined(f, p, i, w, true)),
            };
        }
        f.copy_from_slice(&self.out[..n]);
    }
}

/// How the 1D transforms refine the grid minimum.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Refine {
    /// The minimum over the grid nodes.
    No,
    /// Lowered to the minimum over the half cells of the quadratic through the best node and
    /// its neighbours ([`Envelope::min_transform`]).
    Quadratic,
    /// As `Quadratic`, with the quadratic not allowed below the smallest of its three nodes.
    /// After the first pass of a d-dimensional transform, neighbouring nodes of a line may hold
    /// values from different parts of the support (a node next to the support's edge and one
    /// whose value comes from cells many rows away, larger by O(1)); the quadratic through such
    /// a kink dips far below its nodes. Measured on porous-m3-2d at 64² with the edge's ghost
    /// cells included: φ raised from −2.3e-2 (the exact maximum) to +9.9e-2 at a cell outside
    /// the support, which put mass 0.25 there. For a smooth f the bound only removes the
    /// quadratic's dip between nodes at an extremum of f, O(h² f'') there.
    Bounded,
}

impl From<bool> for Refine {
    fn from(refine: bool) -> Refine {
        if refine {
            Refine::Quadratic
        } else {
            Refine::No
        }
    }
}

/// The minimum of q(t) = f̃(p + t) + w (i − p − t)² over |t| ≤ ½, f̃ the quadratic through f at
/// p − 1, p, p + 1 (not below the smallest of the three when `bounded`); +∞ when a neighbour
/// is missing (no extrapolation) or q is not convex.
fn refined(f: &[f64], p: usize, i: usize, w: f64, bounded: bool) -> f64 {
    let n = f.len();
    let at = |j: isize| -> Option<f64> {
        if j < 0 || j >= n as isize {
            return None;
        }
        let v = f[j as usize];
        v.is_finite().then_some(v)
    };
    let q = p as isize;
    let (d1, d2) = match (at(q - 1), at(q + 1)) {
        (Some(m), Some(r)) => (0.5 * (r - m), r - 2.0 * f[p] + m),
        _ => return f64::INFINITY,
    };
    let curvature = d2 + 2.0 * w;
    if curvature.is_nan() || curvature <= 0.0 {
        return f64::INFINITY;
    }
    let di = i as f64 - p as f64;
    let t = ((2.0 * w * di - d1) / curvature).clamp(-0.5, 0.5);
    let mut interpolant = f[p] + d1 * t + 0.5 * d2 * t * t;
    if bounded {
        let floor = f[p].min(f[p - 1]).min(f[p + 1]);
        interpolant = interpolant.max(floor);
    }
    interpolant + w * (di - t) * (di - t)
}

/// Separable transforms on a lattice, with a reusable line buffer.
pub(crate) struct CTransform {
    weights: Vec<f64>,
    buffer: Vec<f64>,
}

impl CTransform {
    /// Transforms for the cost |x − y|²/(2τ) on `lat`.
    pub fn new(lat: &Lattice, tau: f64) -> CTransform {
        CTransform {
            weights: lat.h.iter().map(|h| h * h / (2.0 * tau)).collect(),
            buffer: Vec::new(),
        }
    }

    /// out ← φ^c: out(x) = min over the cells y with `include(y)` of φ(y) + |x − y|²/(2τ), at
    /// every box cell; `refine` as in [`Envelope::min_transform`].
    pub fn c_transform(
        &mut self,
        lat: &Lattice,
        phi: &[f64],
        include: impl Fn(usize) -> bool + Sync,
        refine: bool,
        out: &mut Vec<f64>,
    ) {
        self.transform(lat, phi, include, Refine::from(refine), 1.0, out);
    }

    /// out ← ψ^c̄: out(y) = max over the cells x with `include(x)` of ψ(x) − |x − y|²/(2τ),
    /// at every box cell; `refine` as in [`Envelope::min_transform`].
    pub fn cbar_transform(
        &mut self,
        lat: &Lattice,
        psi: &[f64],
        include: impl Fn(usize) -> bool + Sync,
        refine: bool,
        out: &mut Vec<f64>,
    ) {
        self.transform(lat, psi, include, Refine::from(refine), -1.0, out);
    }

    /// [`CTransform::cbar_transform`] with the bounded refinement (see `Refine::Bounded`): for
    /// potentials that include the ghost values beyond the edge of a support.
    pub fn cbar_transform_bounded(
        &mut self,
        lat: &Lattice,
        psi: &[f64],
        include: impl Fn(usize) -> bool + Sync,
        out: &mut Vec<f64>,
    ) {
        self.transform(lat, psi, include, Refine::Bounded, -1.0, out);
    }

    /// The min-transform of `sign`·f (excluded cells +∞), times `sign`: the c-transform for
    /// sign 1, the c̄-transform (a max-transform) for sign −1.
    fn transform(
        &mut self,
        lat: &Lattice,
        f: &[f64],
        include: impl Fn(usize) -> bool + Sync,
        how: Refine,
        sign: f64,
        out: &mut Vec<f64>,
    ) {
        out.clear();
        out.resize(f.len(), 0.0);
        out.par_iter_mut()
            .zip(f)
            .enumerate()
            .for_each(|(i, (o, &v))| *o = if include(i) { sign * v } else { f64::INFINITY });
        self.passes(lat, out, how);
        if sign < 0.0 {
            out.par_iter_mut().for_each(|v| *v = -*v);
        }
    }

    fn passes(&mut self, lat: &Lattice, data: &mut [f64], how: Refine) {
        for axis in 0..lat.dim() {
            let w = self.weights[axis];
            for_each_line(
                data,
                &lat.shape,
                axis,
                &mut self.buffer,
                Envelope::default,
                |env, line| env.min_transform_with(line, w, how),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(f: &[f64], w: f64) -> Vec<f64> {
        (0..f.len())
            .map(|i| {
                (0..f.len())
                    .filter(|&j| f[j].is_finite())
                    .map(|j| f[j] + w * ((i as f64 - j as f64).powi(2)))
                    .fold(f64::INFINITY, f64::min)
            })
            .collect()
    }

    #[test]
    fn envelope_matches_brute_force() {
        let mut env = Envelope::default();
        for seed in 0..40u64 {
            let n = 1 + (seed as usize * 7) % 37;
            let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let mut f: Vec<f64> = (0..n)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let u = (x >> 11) as f64 / (1u64 << 53) as f64;
                    if u < 0.15 {
                        f64::INFINITY
                    } else {
                        10.0 * (u - 0.5)
                    }
                })
                .collect();
            let w = 0.05 + (seed % 5) as f64 * 0.7;
            let expect = brute(&f, w);
            env.min_transform(&mut f, w, false);
            for i in 0..n {
                if expect[i].is_finite() {
                    assert!((f[i] - expect[i]).abs() < 1e-12, "seed {seed} i {i}");
                } else {
                    assert!(f[i].is_infinite());
                }
            }
        }
    }

    /// The refined transform never extrapolates beyond the data: for a steep line f_j = a j
    /// the exact minimum over the hull [0, n − 1] of the data at i = 0 is f_0 = 0, which the
    /// one-sided parabola at the end pushed to −a/2 + w/4 (the issue-20 corner bug).
    #[test]
    fn refined_transform_does_not_extrapolate_past_the_ends() {
        let mut env = Envelope::default();
        let (a, w) = (13.0, 0.5);
        for n in [3usize, 8] {
            let mut f: Vec<f64> = (0..n).map(|j| a * j as f64).collect();
            let mut g: Vec<f64> = (0..n).map(|j| -a * j as f64).collect();
            env.min_transform(&mut f, w, true);
            env.min_transform(&mut g, w, true);
            // Exact minima over t ∈ [0, n − 1] of ±a t + w (i − t)².
            assert!(f[0] >= -1e-12, "n {n}: {}", f[0]);
            let last = (n - 1) as f64;
            assert!(g[n - 1] >= -a * last - 1e-12, "n {n}: {}", g[n - 1]);
        }
    }

    /// A quadratic ψ(x) = −a|x − c|²/2 on a 2D grid: ψ^c̄(y) = −a|y − c|²/(2(1 + aτ)) in
    /// closed form (the max over x ∈ ℝ², attained inside the grid here). The grid transform is
    /// off by O(h²/τ); the refined one is exact up to round-off for a quadratic, and the refined
    /// one is never below the grid one.
    #[test]
    fn refined_transform_is_exact_on_quadratics() {
        use jko_core::Mesh;
        let mesh = Mesh::grid(&[40, 36], &[-2.0, -1.5], &[2.0, 2.5]).unwrap();
        let lat = Lattice::of_mesh(&mesh).unwrap();
        let (a, tau, c) = (0.7, 0.3, [0.2, 0.4]);
        let psi: Vec<f64> = (0..lat.len)
            .map(|i| {
                let k = lat.coords(i);
                let r2: f64 = (0..2).map(|q| (lat.centre(q, k[q]) - c[q]).powi(2)).sum();
                -0.5 * a * r2
            })
            .collect();
        let mut ct = CTransform::new(&lat, tau);
        let (mut grid, mut fine) = (Vec::new(), Vec::new());
        ct.cbar_transform(&lat, &psi, |_| true, false, &mut grid);
        ct.cbar_transform(&lat, &psi, |_| true, true, &mut fine);
        let (mut e_grid, mut e_fine) = (0.0f64, 0.0f64);
        for i in 0..lat.len {
            let k = lat.coords(i);
            let r2: f64 = (0..2).map(|q| (lat.centre(q, k[q]) - c[q]).powi(2)).sum();
            // Only where the argmax x = c + (y − c)/(1 + aτ) is at least a cell inside.
            let inside = (0..2).all(|q| {
                let x = c[q] + (lat.centre(q, k[q]) - c[q]) / (1.0 + a * tau);
                x > lat.lower[q] + lat.h[q]
                    && x < lat.lower[q] + (lat.shape[q] as f64 - 1.0) * lat.h[q]
            });
            assert!(fine[i] >= grid[i] - 1e-14);
            if inside {
                let exact = -0.5 * a * r2 / (1.0 + a * tau);
                e_grid = e_grid.max((grid[i] - exact).abs());
                e_fine = e_fine.max((fine[i] - exact).abs());
            }
        }
        assert!(e_fine < 1e-12, "refined {e_fine}");
        assert!(e_grid > 1e-4, "grid {e_grid}");
    }
}

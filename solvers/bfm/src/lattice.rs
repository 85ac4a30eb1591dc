//! The uniform box grid the method works on, and the few operations it needs on box-shaped
//! arrays: lines along an axis (for the separable c-transforms and the DCTs), centred
//! differences, multilinear interpolation and deterministic parallel sums.
//!
//! Arrays here cover the whole box (C order, last axis fastest), masked cells included: the
//! potentials φ and ψ live on the whole box, densities are 0 on masked cells.

use jko_core::Mesh;
use ndarray::Array1;
use rayon::prelude::*;

/// A uniform box grid of 1 to 3 axes, with an optional mask of active cells.
#[derive(Debug, Clone)]
pub(crate) struct Lattice {
    /// Cells per axis.
    pub shape: Vec<usize>,
    /// Cell width per axis.
    pub h: Vec<f64>,
    /// Lower corner of the box.
    pub lower: Vec<f64>,
    /// C-order strides.
    pub strides: Vec<usize>,
    /// Number of box cells.
    pub len: usize,
    /// `active[i]` for box cell `i`; `None` when every cell is active.
    pub active: Option<Vec<bool>>,
    /// Box index of each mesh cell.
    pub box_index: Vec<usize>,
    /// Cell volume h_1 ⋯ h_d.
    pub volume: f64,
}

impl Lattice {
    /// The lattice of a grid mesh; `None` when the mesh has no grid structure.
    pub fn of_mesh(mesh: &Mesh) -> Option<Lattice> {
        let g = mesh.as_grid()?;
        let d = g.cells.len();
        let mut strides = vec![1usize; d];
        for a in (0..d.saturating_sub(1)).rev() {
            strides[a] = strides[a + 1] * g.cells[a + 1];
        }
        let h = g.spacing();
        Some(Lattice {
            shape: g.cells.clone(),
            volume: h.iter().product(),
            h,
            lower: g.lower.clone(),
            strides,
            len: g.len(),
            active: g.mask.clone(),
            box_index: mesh.grid_index().to_vec(),
        })
    }

    /// Number of axes.
    pub fn dim(&self) -> usize {
        self.shape.len()
    }

    /// Whether box cell `i` belongs to the domain.
    #[inline]
    pub fn is_active(&self, i: usize) -> bool {
        self.active.as_ref().is_none_or(|m| m[i])
    }

    /// Mesh cell values spread over the box (`fill` on masked cells).
    pub fn to_box(&self, values: &Array1<f64>, fill: f64) -> Vec<f64> {
        let mut out = vec![fill; self.len];
        for (k, &i) in self.box_index.iter().enumerate() {
            out[i] = values[k];
        }
        out
    }

    /// Box values gathered back to mesh cells.
    pub fn to_mesh(&self, values: &[f64]) -> Array1<f64> {
        Array1::from_iter(self.box_index.iter().map(|&i| values[i]))
    }

    /// Per-axis index of box cell `i`.
    #[inline]
    pub fn coords(&self, i: usize) -> [usize; 3] {
        let mut c = [0usize; 3];
        for (a, ca) in c.iter_mut().enumerate().take(self.dim()) {
            *ca = (i / self.strides[a]) % self.shape[a];
        }
        c
    }

    /// Centre coordinate of the `j`-th cell along `axis`.
    #[inline]
    pub fn centre(&self, axis: usize, j: usize) -> f64 {
        self.lower[axis] + (j as f64 + 0.5) * self.h[axis]
    }

    /// Neighbour of box cell `i` one step along `axis` in direction `dir` (±1), or `i` itself
    /// when that neighbour is outside the box or masked (a mirror ghost: zero normal
    /// derivative at walls and obstacles).
    #[cfg(test)]
    #[inline]
    pub fn neighbour(&self, i: usize, c: &[usize; 3], axis: usize, dir: isize) -> usize {
        let j = c[axis] as isize + dir;
        if j < 0 || j >= self.shape[axis] as isize {
            return i;
        }
        let n = if dir > 0 {
            i + self.strides[axis]
        } else {
            i - self.strides[axis]
        };
        if self.is_active(n) { n } else { i }
    }

    /// Derivative of the box field `f` along `a` at cell `i` (coordinates `c`): centred
    /// inside, one-sided of second order at the walls, first order on a line of two cells, 0 on
    /// a line of one.
    pub fn derivative(&self, f: &[f64], i: usize, c: &[usize; 3], a: usize) -> f64 {
        let (n, s, h) = (self.shape[a], self.strides[a], self.h[a]);
        match (n, c[a]) {
            (1, _) => 0.0,
            (2, 0) => (f[i + s] - f[i]) / h,
            (2, _) => (f[i] - f[i - s]) / h,
            (_, 0) => (-3.0 * f[i] + 4.0 * f[i + s] - f[i + 2 * s]) / (2.0 * h),
            (_, j) if j + 1 == n => (3.0 * f[i] - 4.0 * f[i - s] + f[i - 2 * s]) / (2.0 * h),
            _ => (f[i + s] - f[i - s]) / (2.0 * h),
        }
    }

    /// Multilinear interpolation of the cell values `f` (active cells only) at the point `x`.
    /// The point is clamped into the box of cell centres (constant extrapolation over the
    /// half cell along walls); masked corners are left out and the weights renormalised, so
    /// a point next to an obstacle sees only the domain. 0 when every corner is masked.
    pub fn interpolate(&self, f: &[f64], x: &[f64; 3]) -> f64 {
        let d = self.dim();
        let mut base = 0usize;
        let mut frac = [0.0f64; 3];
        let mut step = [0usize; 3];
        for a in 0..d {
            let n = self.shape[a];
            let t = ((x[a] - self.lower[a]) / self.h[a] - 0.5).clamp(0.0, (n - 1) as f64);
            let j = (t.floor() as usize).min(n.saturating_sub(2));
            frac[a] = t - j as f64;
            step[a] = if n > 1 { self.strides[a] } else { 0 };
            base += j * self.strides[a];
        }
        let mut num = 0.0;
        let mut den = 0.0;
        for corner in 0..(1usize << d) {
            let mut idx = base;
            let mut w = 1.0;
            for a in 0..d {
                if corner >> a & 1 == 1 {
                    idx += step[a];
                    w *= frac[a];
                } else {
                    w *= 1.0 - frac[a];
                }
            }
            if w > 0.0 && self.is_active(idx) {
                num += w * f[idx];
                den += w;
            }
        }
        if den > 0.0 { num / den } else { 0.0 }
    }

    /// The multilinear interpolant of the cell values `f` at `x`, with its gradient, extended
    /// linearly beyond the outermost cell centres (no kink at the last centre line, unlike
    /// [`Lattice::interpolate`]'s clamp). Masked corners are left out and the weights
    /// renormalised, as in [`Lattice::interpolate`]; where that would divide by a small total
    /// weight (extrapolating next to a masked cell) the point is clamped instead.
    pub fn interpolate_with_gradient(&self, f: &[f64], x: &[f64; 3]) -> (f64, [f64; 3]) {
        let extrapolated = self.multilinear(f, x, false);
        if let Some(v) = extrapolated {
            return v;
        }
        self.multilinear(f, x, true).unwrap_or((0.0, [0.0; 3]))
    }

    fn multilinear(&self, f: &[f64], x: &[f64; 3], clamp: bool) -> Option<(f64, [f64; 3])> {
        let d = self.dim();
        let mut base = 0usize;
        let mut frac = [0.0f64; 3];
        let mut step = [0usize; 3];
        let mut live = [false; 3];
        for a in 0..d {
            let n = self.shape[a];
            let raw = (x[a] - self.lower[a]) / self.h[a] - 0.5;
            let top = (n - 1) as f64;
            let t = if clamp { raw.clamp(0.0, top) } else { raw };
            live[a] = n > 1 && (!clamp || (raw > 0.0 && raw < top));
            let j = (t.max(0.0).floor() as usize).min(n.saturating_sub(2));
            frac[a] = if n > 1 { t - j as f64 } else { 0.0 };
            step[a] = if n > 1 { self.strides[a] } else { 0 };
            base += j * self.strides[a];
        }
        let mut num = 0.0;
        let mut den = 0.0;
        let mut dnum = [0.0; 3];
        let mut dden = [0.0; 3];
        for corner in 0..(1usize << d) {
            let mut idx = base;
            let mut w = 1.0;
            let mut factors = [0.0; 3];
            let mut slopes = [0.0; 3];
            for a in 0..d {
                if corner >> a & 1 == 1 {
                    idx += step[a];
                    factors[a] = frac[a];
                    slopes[a] = 1.0;
                } else {
                    factors[a] = 1.0 - frac[a];
                    slopes[a] = -1.0;
                }
                w *= factors[a];
            }
            if !self.is_active(idx) {
                continue;
            }
            num += w * f[idx];
            den += w;
            for a in 0..d {
                if !live[a] {
                    continue;
                }
                let mut dw = slopes[a] / self.h[a];
                for (b, fb) in factors.iter().enumerate().take(d) {
                    if b != a {
                        dw *= fb;
                    }
                }
                dnum[a] += dw * f[idx];
                dden[a] += dw;
            }
        }
        if !(den >= 0.5 || (clamp && den > 0.0)) {
            return None;
        }
        let value = num / den;
        let mut grad = [0.0; 3];
        for a in 0..d {
            grad[a] = (dnum[a] - value * dden[a]) / den;
        }
        Some((value, grad))
    }
}

/// Σ_i f(i) over 0..n, independent of the number of threads (jko_core's chunked sum).
pub(crate) use jko_core::deterministic_sum as par_sum;

/// Apply `op` to every line of the box array `data` along `axis`, in parallel over lines.
///
/// Lines along the last axis are contiguous and are processed in place; other axes are
/// gathered into `buffer` (line after line), processed, and scattered back. `init` makes the
/// per-task scratch that `op` receives.
pub(crate) fn for_each_line<S>(
    data: &mut [f64],
    shape: &[usize],
    axis: usize,
    buffer: &mut Vec<f64>,
    init: impl Fn() -> S + Sync + Send,
    op: impl Fn(&mut S, &mut [f64]) + Sync + Send,
) {
    let d = shape.len();
    let n = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    if axis + 1 == d {
        data.par_chunks_mut(n)
            .for_each_init(&init, |s, line| op(s, line));
        return;
    }
    buffer.resize(data.len(), 0.0);
    // Lines are gathered and scattered LINE_BLOCK at a time, so that each grid row is read (and
    // written) in runs of LINE_BLOCK neighbouring values instead of one value per cache line:
    // at 512² the transposition without blocks was most of the Helmholtz solve's time.
    let src: &[f64] = data;
    buffer
        .par_chunks_mut(n * LINE_BLOCK)
        .enumerate()
        .for_each_init(&init, |s, (b, block)| {
            strided_block(src, b * LINE_BLOCK, inner, n, block);
            for line in block.chunks_mut(n) {
                op(s, line);
            }
        });
    let lines: &[f64] = buffer;
    data.par_chunks_mut(inner * LINE_BLOCK)
        .enumerate()
        .for_each(|(b, rows)| strided_block(lines, b * LINE_BLOCK, n, inner, rows));
}

/// dst ← the lines `first`, `first` + 1, … (as many as fit, each `len` long) of `src` read with
/// `stride`: line l starts at (l / stride)·len·stride + l % stride. With stride = inner and len =
/// n the gather of [`for_each_line`], with the two swapped its scatter; the values are read one
/// grid row at a time for all the lines of the block.
fn strided_block(src: &[f64], first: usize, stride: usize, len: usize, dst: &mut [f64]) {
    let count = dst.len() / len;
    let mut base = [0usize; LINE_BLOCK];
    for (g, at) in base.iter_mut().enumerate().take(count) {
        let l = first + g;
        *at = (l / stride) * len * stride + l % stride;
    }
    for t in 0..len {
        for (g, &at) in base.iter().enumerate().take(count) {
            dst[g * len + t] = src[at + t * stride];
        }
    }
}

/// Lines gathered or scattered together by [`for_each_line`].
const LINE_BLOCK: usize = 8;

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

/// Scratch of one 1D envelope scan.
#[derive(Default)]
pub(crate) struct Envelope {
    out: Vec<f64>,
    vertex: Vec<usize>,
    cut: Vec<f64>,
}

impl Envelope {
    /// In place: f_i ← min_j f_j + w (i − j)², skipping infinite f_j. A line of only
    /// infinite values stays infinite.
    pub fn min_transform(&mut self, f: &mut [f64], w: f64) {
        let n = f.len();
        self.out.resize(n, 0.0);
        self.vertex.resize(n, 0);
        self.cut.resize(n + 1, 0.0);
        let key = |j: usize, fj: f64| fj + w * (j * j) as f64;
        let mut k = 0usize;
        let mut first = true;
        for q in 0..n {
            if !f[q].is_finite() {
                continue;
            }
            if first {
                self.vertex[0] = q;
                self.cut[0] = f64::NEG_INFINITY;
                self.cut[1] = f64::INFINITY;
                first = false;
                continue;
            }
            let kq = key(q, f[q]);
            loop {
                let p = self.vertex[k];
                let s = (kq - key(p, f[p])) / (2.0 * w * (q - p) as f64);
                if s <= self.cut[k] && k > 0 {
                    k -= 1;
                } else {
                    k += 1;
                    self.vertex[k] = q;
                    self.cut[k] = s.max(self.cut[k - 1]);
                    self.cut[k + 1] = f64::INFINITY;
                    break;
                }
            }
        }
        if first {
            return;
        }
        let mut k = 0usize;
        for i in 0..n {
            while self.cut[k + 1] < i as f64 {
                k += 1;
            }
            let p = self.vertex[k];
            let di = i as f64 - p as f64;
            self.out[i] = f[p] + w * di * di;
        }
        f.copy_from_slice(&self.out[..n]);
    }
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

    /// out ← φ^c: out(x) = min over active y of φ(y) + |x − y|²/(2τ), at every box cell.
    pub fn c_transform(&mut self, lat: &Lattice, phi: &[f64], out: &mut Vec<f64>) {
        out.clear();
        out.extend(
            phi.iter()
                .enumerate()
                .map(|(i, &v)| if lat.is_active(i) { v } else { f64::INFINITY }),
        );
        self.min_passes(lat, out);
    }

    /// out ← ψ_c̄: out(y) = max over active x of ψ(x) − |x − y|²/(2τ), at every box cell.
    pub fn cbar_transform(&mut self, lat: &Lattice, psi: &[f64], out: &mut Vec<f64>) {
        out.clear();
        out.extend(
            psi.iter()
                .enumerate()
                .map(|(i, &v)| if lat.is_active(i) { -v } else { f64::INFINITY }),
        );
        self.min_passes(lat, out);
        out.iter_mut().for_each(|v| *v = -*v);
    }

    fn min_passes(&mut self, lat: &Lattice, data: &mut [f64]) {
        for axis in 0..lat.dim() {
            let w = self.weights[axis];
            for_each_line(
                data,
                &lat.shape,
                axis,
                &mut self.buffer,
                Envelope::default,
                |env, line| env.min_transform(line, w),
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
            env.min_transform(&mut f, w);
            for i in 0..n {
                if expect[i].is_finite() {
                    assert!((f[i] - expect[i]).abs() < 1e-12, "seed {seed} i {i}");
                } else {
                    assert!(f[i].is_infinite());
                }
            }
        }
    }
}

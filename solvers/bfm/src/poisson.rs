//! The H¹-type preconditioner: u = (a I + b(−Δ_h))⁻¹ f on the box with Neumann (no-flux)
//! walls, by the discrete cosine transform.
//!
//! The cell-centred Neumann Laplacian of a uniform grid is diagonalised by the DCT-II basis
//! cos(π k (j + ½)/n) along each axis, with eigenvalues λ_k = (2/h²)(1 − cos(π k/n)); so a
//! solve is a DCT-II along every axis, a division by a + b Σ_a λ_{k_a}, and a DCT-III back
//! (rustdct: DCT-III ∘ DCT-II = n/2, hence the scaling Π_a 2/n_a). O(N log N). When a = 0
//! the constant mode is set to 0 (the pure Neumann Poisson solve with a mean-free result).

use crate::lattice::{Lattice, for_each_line};
use rayon::prelude::*;
use rustdct::{DctPlanner, TransformType2And3};
use std::sync::Arc;

/// A DCT Helmholtz/Poisson solver for one lattice.
pub(crate) struct Helmholtz {
    shape: Vec<usize>,
    dct: Vec<Arc<dyn TransformType2And3<f64>>>,
    eigen: Vec<Vec<f64>>,
    buffer: Vec<f64>,
}

impl Helmholtz {
    /// Plans the transforms of every axis of `lat`.
    pub fn new(lat: &Lattice) -> Helmholtz {
        let mut planner = DctPlanner::new();
        let dct = lat.shape.iter().map(|&n| planner.plan_dct2(n)).collect();
        let eigen = lat
            .shape
            .iter()
            .zip(&lat.h)
            .map(|(&n, &h)| {
                (0..n)
                    .map(|k| {
                        2.0 / (h * h) * (1.0 - (std::f64::consts::PI * k as f64 / n as f64).cos())
                    })
                    .collect()
            })
            .collect();
        Helmholtz {
            shape: lat.shape.clone(),
            dct,
            eigen,
            buffer: Vec::new(),
        }
    }

    /// In place: f ← (a I + b(−Δ))⁻¹ f, a ≥ 0, b > 0.
    pub fn solve(&mut self, f: &mut [f64], a: f64, b: f64) {
        let d = self.shape.len();
        self.along_every_axis(f, |t, line, s| t.process_dct2_with_scratch(line, s));
        let last = d - 1;
        let n_last = self.shape[last];
        let eigen = &self.eigen;
        let shape = &self.shape;
        let scale: f64 = shape.iter().map(|&n| 2.0 / n as f64).product();
        f.par_chunks_mut(n_last).enumerate().for_each(|(c, chunk)| {
            // Σ over the leading axes of λ_{k_a}, from the chunk index.
            let mut lead = 0.0;
            let mut rest = c;
            for a in (0..last).rev() {
                lead += eigen[a][rest % shape[a]];
                rest /= shape[a];
            }
            for (k, v) in chunk.iter_mut().enumerate() {
                let denom = a + b * (lead + eigen[last][k]);
                *v = if denom > 0.0 { *v * scale / denom } else { 0.0 };
            }
        });
        self.along_every_axis(f, |t, line, s| t.process_dct3_with_scratch(line, s));
    }

    /// Applies the 1D transform `apply` (a DCT-II or DCT-III) to every grid line of `f`, one
    /// axis after the other.
    fn along_every_axis(
        &mut self,
        f: &mut [f64],
        apply: impl Fn(&dyn TransformType2And3<f64>, &mut [f64], &mut [f64]) + Sync,
    ) {
        for axis in 0..self.shape.len() {
            let t = self.dct[axis].clone();
            let scratch_len = t.get_scratch_len();
            for_each_line(
                f,
                &self.shape,
                axis,
                &mut self.buffer,
                || vec![0.0; scratch_len],
                |s, line| apply(t.as_ref(), line, s),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jko_core::Mesh;

    /// Applies a I + b(−Δ_h) with Neumann mirror ghosts, directly.
    fn apply(lat: &Lattice, u: &[f64], a: f64, b: f64) -> Vec<f64> {
        (0..lat.len)
            .map(|i| {
                let c = lat.coords(i);
                let mut lap = 0.0;
                for ax in 0..lat.dim() {
                    let p = lat.neighbour(i, &c, ax, 1);
                    let m = lat.neighbour(i, &c, ax, -1);
                    lap += (u[p] - 2.0 * u[i] + u[m]) / (lat.h[ax] * lat.h[ax]);
                }
                a * u[i] - b * lap
            })
            .collect()
    }

    #[test]
    fn inverts_the_neumann_helmholtz_operator_in_1d_2d_3d() {
        for (cells, lower, upper) in [
            (vec![17], vec![0.0], vec![2.0]),
            (vec![8, 13], vec![-1.0, 0.0], vec![1.0, 3.0]),
            (vec![5, 6, 7], vec![0.0; 3], vec![1.0, 2.0, 1.5]),
        ] {
            let mesh = Mesh::grid(&cells, &lower, &upper).unwrap();
            let lat = Lattice::of_mesh(&mesh).unwrap();
            let mut solver = Helmholtz::new(&lat);
            let u: Vec<f64> = (0..lat.len)
                .map(|i| ((i * 7919) % 101) as f64 / 50.0 - 1.0)
                .collect();
            // a > 0: the operator is invertible.
            let mut f = apply(&lat, &u, 0.7, 0.3);
            solver.solve(&mut f, 0.7, 0.3);
            let err = f
                .iter()
                .zip(&u)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max);
            assert!(err < 1e-11, "{cells:?}: {err}");
            // a = 0: recovers u up to its mean.
            let mean = u.iter().sum::<f64>() / u.len() as f64;
            let mut f = apply(&lat, &u, 0.0, 1.0);
            solver.solve(&mut f, 0.0, 1.0);
            let err = f
                .iter()
                .zip(&u)
                .map(|(x, y)| (x - (y - mean)).abs())
                .fold(0.0, f64::max);
            assert!(err < 1e-10, "{cells:?}: {err}");
        }
    }
}

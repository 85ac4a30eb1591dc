//! Restarted GMRES with right preconditioning (Saad & Schultz 1986), for the Newton systems.
//!
//! Right preconditioning keeps the minimised quantity the true residual ‖b − J x‖, so the
//! inexact-Newton forcing term is measured in the units of the equations. Dot products are
//! fixed-chunk parallel sums (results independent of the thread count).

use crate::lattice::par_sum;
use rayon::prelude::*;

fn dot(a: &[f64], b: &[f64]) -> f64 {
    par_sum(a.len(), |i| a[i] * b[i])
}

/// Outcome of one linear solve.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KrylovInfo {
    /// Matrix-vector products used.
    pub iterations: usize,
    /// Final ‖b − J x‖ / ‖b‖ (the GMRES estimate).
    pub relative_residual: f64,
}

/// Solves J x = b from x = 0 to ‖b − J x‖ ≤ `rtol` ‖b‖ or `max_iter` products.
/// `apply(v, out)` sets out = J v; `precond(v)` replaces v by M⁻¹ v.
pub(crate) fn gmres(
    mut apply: impl FnMut(&[f64], &mut [f64]),
    mut precond: impl FnMut(&mut [f64]),
    b: &[f64],
    x: &mut [f64],
    rtol: f64,
    restart: usize,
    max_iter: usize,
) -> KrylovInfo {
    let n = b.len();
    x.iter_mut().for_each(|v| *v = 0.0);
    let b_norm = dot(b, b).sqrt();
    if b_norm == 0.0 {
        return KrylovInfo {
            iterations: 0,
            relative_residual: 0.0,
        };
    }
    let m = restart.max(1);
    let mut basis: Vec<Vec<f64>> = (0..=m).map(|_| vec![0.0; n]).collect();
    let mut h = vec![vec![0.0; m]; m + 1];
    let mut cs = vec![0.0; m];
    let mut sn = vec![0.0; m];
    let mut g = vec![0.0; m + 1];
    let mut z = vec![0.0; n];
    let mut w = vec![0.0; n];
    let mut total = 0;
    let mut residual = b_norm;
    let mut first = true;
    while total < max_iter {
        // r = b − J x.
        if first {
            basis[0].copy_from_slice(b);
            first = false;
        } else {
            apply(x, &mut w);
            basis[0]
                .par_iter_mut()
                .zip(b)
                .zip(&w)
                .for_each(|((r, bi), wi)| *r = bi - wi);
        }
        let beta = dot(&basis[0], &basis[0]).sqrt();
        residual = beta;
        if beta <= rtol * b_norm {
            break;
        }
        basis[0].par_iter_mut().for_each(|v| *v /= beta);
        g.iter_mut().for_each(|v| *v = 0.0);
        g[0] = beta;
        let mut k = 0;
        while k < m && total < max_iter {
            z.copy_from_slice(&basis[k]);
            precond(&mut z);
            apply(&z, &mut w);
            total += 1;
            for i in 0..=k {
                let hik = dot(&w, &basis[i]);
                h[i][k] = hik;
                let vi = &basis[i];
                w.par_iter_mut().zip(vi).for_each(|(a, b)| *a -= hik * b);
            }
            let hn = dot(&w, &w).sqrt();
            h[k + 1][k] = hn;
            if hn > 0.0 {
                let (head, tail) = basis.split_at_mut(k + 1);
                let _ = head;
                tail[0]
                    .par_iter_mut()
                    .zip(&w)
                    .for_each(|(a, b)| *a = b / hn);
            }
            for i in 0..k {
                let t = cs[i] * h[i][k] + sn[i] * h[i + 1][k];
                h[i + 1][k] = -sn[i] * h[i][k] + cs[i] * h[i + 1][k];
                h[i][k] = t;
            }
            let den = (h[k][k] * h[k][k] + h[k + 1][k] * h[k + 1][k]).sqrt();
            if den == 0.0 {
                cs[k] = 1.0;
                sn[k] = 0.0;
            } else {
                cs[k] = h[k][k] / den;
                sn[k] = h[k + 1][k] / den;
            }
            h[k][k] = cs[k] * h[k][k] + sn[k] * h[k + 1][k];
            h[k + 1][k] = 0.0;
            g[k + 1] = -sn[k] * g[k];
            g[k] *= cs[k];
            k += 1;
            residual = g[k].abs();
            if residual <= rtol * b_norm || hn == 0.0 {
                break;
            }
        }
        // y = H⁻¹ g (upper triangular k×k), x += M⁻¹ (V y).
        let mut y = vec![0.0; k];
        for i in (0..k).rev() {
            let mut s = g[i];
            for j in (i + 1)..k {
                s -= h[i][j] * y[j];
            }
            y[i] = if h[i][i] != 0.0 { s / h[i][i] } else { 0.0 };
        }
        z.par_iter_mut().enumerate().for_each(|(idx, v)| {
            *v = (0..k).map(|j| y[j] * basis[j][idx]).sum();
        });
        precond(&mut z);
        x.par_iter_mut().zip(&z).for_each(|(a, b)| *a += b);
        if residual <= rtol * b_norm {
            break;
        }
    }
    KrylovInfo {
        iterations: total,
        relative_residual: residual / b_norm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A nonsymmetric tridiagonal system (convection–diffusion) with a Jacobi preconditioner.
    #[test]
    fn solves_a_nonsymmetric_system() {
        let n = 200;
        let apply = |v: &[f64], out: &mut [f64]| {
            for i in 0..n {
                let l = if i > 0 { v[i - 1] } else { 0.0 };
                let r = if i + 1 < n { v[i + 1] } else { 0.0 };
                out[i] = 3.0 * v[i] - 1.4 * l - 0.6 * r;
            }
        };
        let xs: Vec<f64> = (0..n).map(|i| (i as f64 * 0.1).sin()).collect();
        let mut b = vec![0.0; n];
        apply(&xs, &mut b);
        let mut x = vec![0.0; n];
        let info = gmres(
            apply,
            |v: &mut [f64]| v.iter_mut().for_each(|a| *a /= 3.0),
            &b,
            &mut x,
            1e-12,
            15,
            500,
        );
        let err = x
            .iter()
            .zip(&xs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-9, "{err} after {info:?}");
        assert!(info.relative_residual <= 1e-12);
    }
}

//! Multiscale start: solve the step on a coarser grid at the same ε, prolong the potential.
//!
//! **Why.** At a fixed ε the generalised Sinkhorn iteration contracts, near the solution, at
//! about 1 − 2√(ε/(2τβ_e)) per over-relaxed iteration (module `epsilon`), whatever the grid. From
//! a cold start (g = 0) or from the previous step's potential, which is O(τ)/ε away in ln b, the
//! iteration first has to build the large-scale shape of the potential, and on fine lines with
//! the blur far narrower than the distance mass moves this transient dominates: 16384 cells at
//! τ = 0.1 took ~1 500 iterations per step against ~190 predicted by the rate (round 2 notes),
//! each costing N·w (w ∝ √ε/h the kernel band). This large-scale shape does not need the fine
//! grid (Schmitzer 2019, §4: multiscale).
//!
//! **What.** When the blur √(ε/2) spans several cells, the grid is coarsened by a factor f on
//! every axis (f divides every n_a; coarse blur ≥ [`COARSE_BLUR_CELLS`] coarse cells; at least
//! [`MIN_COARSE_CELLS`] coarse cells per axis). The coarse problem is the same step on the
//! coarse cells: masses summed over the f^d children, the cell potential V averaged, volumes
//! summed, the same proximal map (same σ, β′, exponent and ρ_max), the same ε. It is solved
//! (scaling domain, log domain as fallback) from the potential restricted by averaging, to a
//! tolerance [`COARSE_TOL`]; its potential g (in cost units, so it carries over between grids
//! at the same ε up to a constant the next a-update absorbs) is prolonged by linear
//! interpolation along each axis (linear extrapolation beyond the outermost coarse centres) and
//! starts the fine iteration. The fine iteration then solves the fine problem to the step's
//! tolerance, exactly as from any other start: **the answer does not depend on the coarse
//! level** beyond the tolerance (tested against the one-level solve).
//!
//! Sampling the Gibbs kernel at spacing h_c with a blur √(ε/2) ≥ √2 h_c changes its row sums
//! by about e^{−π²ε/h_c²} ≤ e^{−4π²} (Poisson summation), so the coarse problem is the
//! continuous one up to the O(h_c²) averaging of p and V: the prolonged potential is accurate at
//! the large scales the fine iteration converges slowest on.
//!
//! Only unmasked grids with the tensor kernel use it (a masked coarse cell would mix active and
//! inactive children); `multiscale = false` in the solver table turns it off.

use jko_core::Grid;

/// Smallest coarse blur √(ε/2), in coarse cells.
pub const COARSE_BLUR_CELLS: f64 = std::f64::consts::SQRT_2;
/// Fewest coarse cells along an axis.
pub const MIN_COARSE_CELLS: usize = 16;
/// Relative marginal violation at which the coarse solve stops (its potential is only a start).
pub const COARSE_TOL: f64 = 1e-8;

/// The coarsening factor of a grid at regularisation ε, if any (≥ 2): the largest f dividing
/// every n_a with f·h_a ≤ √(ε/2)/[`COARSE_BLUR_CELLS`] and n_a/f ≥ [`MIN_COARSE_CELLS`].
pub(crate) fn factor(grid: &Grid, eps: f64) -> Option<usize> {
    let h = grid.spacing().into_iter().fold(0.0, f64::max);
    let by_blur = ((0.5 * eps).sqrt() / COARSE_BLUR_CELLS / h).floor();
    let by_cells = grid.cells.iter().map(|&n| n / MIN_COARSE_CELLS).min()?;
    let most = (by_blur.min(by_cells as f64).max(0.0)) as usize;
    (2..=most)
        .rev()
        .find(|&f| grid.cells.iter().all(|&n| n % f == 0))
}

/// The coarse grid of factor f (same box, n_a/f cells per axis, no mask).
pub(crate) fn coarse_grid(grid: &Grid, f: usize) -> Grid {
    Grid {
        cells: grid.cells.iter().map(|&n| n / f).collect(),
        lower: grid.lower.clone(),
        upper: grid.upper.clone(),
        mask: None,
    }
}

/// Sum (or mean, `mean` true) of an array on the fine grid of `shape` over blocks of f^d cells
/// (C order in and out).
pub(crate) fn restrict(shape: &[usize], f: usize, x: &[f64], mean: bool) -> Vec<f64> {
    let mut cur = x.to_vec();
    let mut sh = shape.to_vec();
    for a in 0..shape.len() {
        let outer: usize = sh[..a].iter().product();
        let inner: usize = sh[a + 1..].iter().product();
        let (n, nc) = (sh[a], sh[a] / f);
        let mut out = vec![0.0; outer * nc * inner];
        for o in 0..outer {
            for i in 0..n {
                let src = &cur[(o * n + i) * inner..(o * n + i + 1) * inner];
                let dst = &mut out[(o * nc + i / f) * inner..(o * nc + i / f + 1) * inner];
                for (d, s) in dst.iter_mut().zip(src) {
                    *d += s;
                }
            }
        }
        if mean {
            let w = 1.0 / f as f64;
            out.iter_mut().for_each(|v| *v *= w);
        }
        cur = out;
        sh[a] = nc;
    }
    cur
}

/// Linear interpolation of an array on the coarse grid (fine `shape` / f) to the fine cell
/// centres, axis by axis; beyond the outermost coarse centres, linear extrapolation.
pub(crate) fn prolong(shape: &[usize], f: usize, xc: &[f64]) -> Vec<f64> {
    let mut cur = xc.to_vec();
    let mut sh: Vec<usize> = shape.iter().map(|&n| n / f).collect();
    for a in 0..shape.len() {
        let outer: usize = sh[..a].iter().product();
        let inner: usize = sh[a + 1..].iter().product();
        let (nc, n) = (sh[a], shape[a]);
        let mut out = vec![0.0; outer * n * inner];
        for i in 0..n {
            // Fine centre i in coarse index units: (i + ½)/f − ½.
            let t = (i as f64 + 0.5) / f as f64 - 0.5;
            let (j, w) = if nc == 1 {
                (0, 0.0)
            } else {
                let j = (t.floor().max(0.0) as usize).min(nc - 2);
                (j, t - j as f64)
            };
            for o in 0..outer {
                let dst = &mut out[(o * n + i) * inner..(o * n + i + 1) * inner];
                let lo = &cur[(o * nc + j) * inner..(o * nc + j + 1) * inner];
                if nc == 1 {
                    dst.copy_from_slice(lo);
                    continue;
                }
                let hi = &cur[(o * nc + j + 1) * inner..(o * nc + j + 2) * inner];
                for ((d, l), h) in dst.iter_mut().zip(lo).zip(hi) {
                    *d = l + w * (h - l);
                }
            }
        }
        cur = out;
        sh[a] = n;
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::*;
    use jko_core::Mesh;

    fn grid(cells: &[usize]) -> Grid {
        let d = cells.len();
        Mesh::grid(cells, &vec![-1.0; d], &vec![2.0; d])
            .unwrap()
            .as_grid()
            .unwrap()
            .clone()
    }

    #[test]
    fn factor_follows_the_blur_and_divides_the_axes() {
        let g = grid(&[1024]); // h = 3/1024
        let h = 3.0 / 1024.0;
        // blur √(ε/2) = 8·√2 h: f = 8.
        let eps = 2.0 * (8.0 * COARSE_BLUR_CELLS * h).powi(2) * (1.0 + 1e-12);
        assert_eq!(factor(&g, eps), Some(8));
        // blur below 2·√2 cells: no coarsening.
        assert_eq!(
            factor(&g, 2.0 * (1.9 * COARSE_BLUR_CELLS * h).powi(2)),
            None
        );
        // 1000 cells, blur of 7 coarse-able cells: the largest divisor of 1000 up to 7 is 5.
        let g = Mesh::grid(&[1000], &[-1.0], &[2.0]).unwrap();
        let h = 3.0 / 1000.0;
        let eps = 2.0 * (7.0 * COARSE_BLUR_CELLS * h).powi(2) * (1.0 + 1e-12);
        assert_eq!(factor(g.as_grid().unwrap(), eps), Some(5));
        // at least MIN_COARSE_CELLS coarse cells per axis
        assert_eq!(factor(&grid(&[64, 32]), 100.0), Some(2));
    }

    #[test]
    fn restriction_and_prolongation_are_exact_on_affine_functions() {
        let shape = [12usize, 8];
        let f = 4;
        let fine = grid(&shape);
        let coarse = coarse_grid(&fine, f);
        let affine = |x: f64, y: f64| 0.7 - 1.3 * x + 2.1 * y;
        let on = |g: &Grid| -> Vec<f64> {
            let mut v = Vec::new();
            for i in 0..g.cells[0] {
                for j in 0..g.cells[1] {
                    v.push(affine(g.coordinate(0, i), g.coordinate(1, j)));
                }
            }
            v
        };
        let (xf, xc) = (on(&fine), on(&coarse));
        // the mean over the children of an affine function is its value at the coarse centre
        let r = restrict(&shape, f, &xf, true);
        assert!(r.iter().zip(&xc).all(|(a, b)| (a - b).abs() < 1e-13));
        // sums are f^d means
        let s = restrict(&shape, f, &xf, false);
        assert!(s.iter().zip(&r).all(|(a, b)| (a - 16.0 * b).abs() < 1e-12));
        // linear interpolation (and extrapolation at the ends) reproduces affine functions
        let p = prolong(&shape, f, &xc);
        assert!(p.iter().zip(&xf).all(|(a, b)| (a - b).abs() < 1e-12));
    }
}

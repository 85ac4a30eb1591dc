//! The sparse linear algebra of the mesh flow: a general sparse LU (faer, fill-reducing
//! ordering computed once per pattern), a sparse Cholesky for the symmetric positive definite
//! systems, and a 2×2-block tridiagonal solver for 1D chains of cells (O(n), no fill).

use faer::linalg::solvers::Solve;
use faer::sparse::linalg::solvers::{Llt, Lu, SymbolicLlt, SymbolicLu};
use faer::sparse::{SparseColMatRef, SymbolicSparseColMat, SymbolicSparseColMatRef};
use faer::{MatMut, Side};

/// Position of entry (row, col) in the values of a column-compressed pattern.
fn position_in(pattern: &SymbolicSparseColMat<usize>, row: usize, col: usize) -> Option<usize> {
    let start = pattern.col_ptr()[col];
    let end = pattern.col_ptr()[col + 1];
    pattern.row_idx()[start..end]
        .binary_search(&row)
        .ok()
        .map(|p| start + p)
}

/// A sparse factorisation kind: its symbolic analysis (computed once per pattern) and its
/// numeric factorisation of the values.
pub(crate) trait Factorization {
    type Symbolic: Clone;
    type Numeric: Solve<f64>;
    /// Only the lower triangle is stored (symmetric matrices).
    const LOWER: bool;
    fn analyse(pattern: SymbolicSparseColMatRef<'_, usize>) -> Result<Self::Symbolic, String>;
    fn factor(
        symbolic: Self::Symbolic,
        mat: SparseColMatRef<'_, usize, f64>,
    ) -> Result<Self::Numeric, String>;
}

/// General square matrices: LU with a fill-reducing ordering (faer).
pub(crate) struct LuKind;

impl Factorization for LuKind {
    type Symbolic = SymbolicLu<usize>;
    type Numeric = Lu<usize, f64>;
    const LOWER: bool = false;
    fn analyse(pattern: SymbolicSparseColMatRef<'_, usize>) -> Result<Self::Symbolic, String> {
        SymbolicLu::try_new(pattern).map_err(|e| format!("symbolic LU: {e:?}"))
    }
    fn factor(
        symbolic: Self::Symbolic,
        mat: SparseColMatRef<'_, usize, f64>,
    ) -> Result<Self::Numeric, String> {
        Lu::try_new_with_symbolic(symbolic, mat).map_err(|e| format!("sparse LU: {e:?}"))
    }
}

/// Symmetric positive definite matrices (lower triangle stored): Cholesky (faer).
pub(crate) struct LltKind;

impl Factorization for LltKind {
    type Symbolic = SymbolicLlt<usize>;
    type Numeric = Llt<usize, f64>;
    const LOWER: bool = true;
    fn analyse(pattern: SymbolicSparseColMatRef<'_, usize>) -> Result<Self::Symbolic, String> {
        SymbolicLlt::try_new(pattern, Side::Lower).map_err(|e| format!("symbolic Cholesky: {e:?}"))
    }
    fn factor(
        symbolic: Self::Symbolic,
        mat: SparseColMatRef<'_, usize, f64>,
    ) -> Result<Self::Numeric, String> {
        Llt::try_new_with_symbolic(symbolic, mat, Side::Lower)
            .map_err(|e| format!("sparse Cholesky: {e:?}"))
    }
}

/// A square sparse matrix with a fixed pattern, refilled and factorised in place.
pub(crate) struct Sparse<K: Factorization> {
    n: usize,
    pattern: SymbolicSparseColMat<usize>,
    symbolic: K::Symbolic,
    factor: Option<K::Numeric>,
    pub values: Vec<f64>,
}

/// General sparse LU.
pub(crate) type SparseLu = Sparse<LuKind>;
/// Sparse Cholesky of a symmetric positive definite matrix (lower triangle stored).
pub(crate) type SparseLlt = Sparse<LltKind>;

impl<K: Factorization> Sparse<K> {
    /// Pattern from the sorted row indices of every column (rows ≥ column for Cholesky).
    pub fn new(n: usize, col_ptr: Vec<usize>, row_idx: Vec<usize>) -> Result<Self, String> {
        let nnz = row_idx.len();
        let pattern = SymbolicSparseColMat::new_checked(n, n, col_ptr, None, row_idx);
        let symbolic = K::analyse(pattern.as_ref())?;
        Ok(Sparse {
            n,
            pattern,
            symbolic,
            factor: None,
            values: vec![0.0; nnz],
        })
    }

    /// Position of entry (row, col) in `values`, if it is in the pattern (for Cholesky, of the
    /// lower-triangle entry, in either order).
    pub fn position(&self, row: usize, col: usize) -> Option<usize> {
        if K::LOWER {
            position_in(&self.pattern, row.max(col), row.min(col))
        } else {
            position_in(&self.pattern, row, col)
        }
    }

    /// Factorise the current values.
    pub fn factorise(&mut self) -> Result<(), String> {
        let mat = SparseColMatRef::new(self.pattern.as_ref(), &self.values);
        self.factor = Some(K::factor(self.symbolic.clone(), mat)?);
        Ok(())
    }

    /// Solve with the last factorisation, in place; false if it produced a non-finite value.
    pub fn solve(&self, rhs: &mut [f64]) -> bool {
        let Some(f) = &self.factor else {
            return false;
        };
        f.solve_in_place(MatMut::from_column_major_slice_mut(rhs, self.n, 1));
        rhs.iter().all(|v| v.is_finite())
    }
}

/// A block-tridiagonal matrix with 2×2 blocks (row K couples K − 1, K, K + 1), solved by block
/// elimination without pivoting (the diagonal blocks here are dominated by the identity-like
/// terms of the stage matrix; a near-singular pivot block is reported, and the caller falls
/// back to the general LU).
#[derive(Debug, Clone)]
pub(crate) struct BlockTridiagonal {
    /// Blocks [lower, diagonal, upper] of each block row, row-major 2×2.
    pub blocks: Vec<[[f64; 4]; 3]>,
    /// Eliminated upper blocks and the inverted pivot blocks.
    factor: Vec<([f64; 4], [f64; 4])>,
}

fn inv2(a: &[f64; 4]) -> Option<[f64; 4]> {
    let det = a[0] * a[3] - a[1] * a[2];
    let scale = (a[0] * a[3]).abs() + (a[1] * a[2]).abs();
    if !(det.is_finite() && det.abs() > 1e-14 * scale && det != 0.0) {
        return None;
    }
    Some([a[3] / det, -a[1] / det, -a[2] / det, a[0] / det])
}

fn mul2(a: &[f64; 4], b: &[f64; 4]) -> [f64; 4] {
    [
        a[0] * b[0] + a[1] * b[2],
        a[0] * b[1] + a[1] * b[3],
        a[2] * b[0] + a[3] * b[2],
        a[2] * b[1] + a[3] * b[3],
    ]
}

fn mulv(a: &[f64; 4], x: [f64; 2]) -> [f64; 2] {
    [a[0] * x[0] + a[1] * x[1], a[2] * x[0] + a[3] * x[1]]
}

impl BlockTridiagonal {
    pub fn new(n: usize) -> Self {
        BlockTridiagonal {
            blocks: vec![[[0.0; 4]; 3]; n],
            factor: Vec::new(),
        }
    }

    /// Block elimination; Err when a pivot block is (nearly) singular.
    pub fn factorise(&mut self) -> Result<(), String> {
        let n = self.blocks.len();
        self.factor.clear();
        let mut prev: Option<[f64; 4]> = None; // D'_{K−1}⁻¹ U_{K−1}
        for k in 0..n {
            let [l, d, u] = self.blocks[k];
            let mut piv = d;
            if let Some(c) = prev {
                let lc = mul2(&l, &c);
                for i in 0..4 {
                    piv[i] -= lc[i];
                }
            }
            let inv = inv2(&piv).ok_or_else(|| format!("singular pivot block at cell {k}"))?;
            let c = mul2(&inv, &u);
            self.factor.push((c, inv));
            prev = Some(c);
        }
        Ok(())
    }

    /// Solve in place; `rhs` interleaved (2 per cell).
    pub fn solve(&self, rhs: &mut [f64]) -> bool {
        let n = self.blocks.len();
        if self.factor.len() != n {
            return false;
        }
        let mut y = vec![[0.0f64; 2]; n];
        for k in 0..n {
            let mut r = [rhs[2 * k], rhs[2 * k + 1]];
            if k > 0 {
                let ly = mulv(&self.blocks[k][0], y[k - 1]);
                r = [r[0] - ly[0], r[1] - ly[1]];
            }
            y[k] = mulv(&self.factor[k].1, r);
        }
        for k in (0..n).rev() {
            if k + 1 < n {
                let cx = mulv(&self.factor[k].0, y[k + 1]);
                y[k] = [y[k][0] - cx[0], y[k][1] - cx[1]];
            }
            rhs[2 * k] = y[k][0];
            rhs[2 * k + 1] = y[k][1];
        }
        rhs.iter().all(|v| v.is_finite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_tridiagonal_matches_the_general_lu() {
        let n = 7;
        let mut bt = BlockTridiagonal::new(n);
        let mut dense = vec![vec![0.0; 2 * n]; 2 * n];
        for k in 0..n {
            for (j, off) in [(0usize, -1i64), (1, 0), (2, 1)] {
                let l = k as i64 + off;
                if l < 0 || l >= n as i64 {
                    continue;
                }
                let b = [
                    if off == 0 { 5.0 } else { -1.0 } + 0.1 * k as f64,
                    0.3 * off as f64 + 0.2,
                    -0.4 + 0.05 * k as f64,
                    if off == 0 { -4.0 } else { 0.7 },
                ];
                bt.blocks[k][j] = b;
                let l = l as usize;
                dense[2 * k][2 * l] = b[0];
                dense[2 * k][2 * l + 1] = b[1];
                dense[2 * k + 1][2 * l] = b[2];
                dense[2 * k + 1][2 * l + 1] = b[3];
            }
        }
        bt.factorise().unwrap();
        let x0: Vec<f64> = (0..2 * n).map(|i| (i as f64 * 0.37).sin()).collect();
        let mut b: Vec<f64> = (0..2 * n)
            .map(|i| (0..2 * n).map(|j| dense[i][j] * x0[j]).sum())
            .collect();
        assert!(bt.solve(&mut b));
        for (a, e) in b.iter().zip(&x0) {
            assert!((a - e).abs() < 1e-12, "{a} {e}");
        }
    }

    #[test]
    fn cholesky_solves_a_graph_laplacian_plus_diagonal() {
        // 3 cells in a line: diag(1, 2, 3) + Laplacian with unit weights.
        let col_ptr = vec![0, 2, 4, 5];
        let row_idx = vec![0, 1, 1, 2, 2];
        let mut llt = SparseLlt::new(3, col_ptr, row_idx).unwrap();
        let vals = [
            (0, 0, 2.0),
            (1, 0, -1.0),
            (1, 1, 4.0),
            (2, 1, -1.0),
            (2, 2, 4.0),
        ];
        for (r, c, v) in vals {
            let p = llt.position(r, c).unwrap();
            llt.values[p] = v;
        }
        llt.factorise().unwrap();
        let mut b = vec![1.0, 2.0, 3.0];
        assert!(llt.solve(&mut b));
        let a = [[2.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 4.0]];
        for (i, row) in a.iter().enumerate() {
            let r: f64 = row.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((r - (i + 1) as f64).abs() < 1e-13);
        }
    }
}

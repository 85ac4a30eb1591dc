//! The sparse linear algebra of the mesh flow: a general sparse LU (faer, fill-reducing
//! ordering computed once per pattern), a sparse Cholesky for the symmetric positive definite
//! systems, and a 2×2-block tridiagonal solver for 1D chains of cells (O(n), no fill).

use faer::dyn_stack::{MemBuffer, MemStack, StackReq};
use faer::sparse::linalg::cholesky::{
    LltRef, SymbolicCholesky, SymmetricOrdering, factorize_symbolic_cholesky,
};
use faer::sparse::linalg::lu::{LuRef, NumericLu, SymbolicLu, factorize_symbolic_lu};
use faer::sparse::{SparseColMatRef, SymbolicSparseColMat, SymbolicSparseColMatRef};
use faer::{Conj, MatMut, Par, Side};

/// Position of entry (row, col) in the values of a column-compressed pattern.
fn position_in(pattern: &SymbolicSparseColMat<usize>, row: usize, col: usize) -> Option<usize> {
    let start = pattern.col_ptr()[col];
    let end = pattern.col_ptr()[col + 1];
    pattern.row_idx()[start..end]
        .binary_search(&row)
        .ok()
        .map(|p| start + p)
}

/// A sparse factorisation kind: its symbolic analysis (computed once per pattern), its numeric
/// factorisation of the values and the solves, all sequential (`Par::Seq`) in a workspace
/// allocated once. (faer's convenience types take the global parallelism, rayon over both
/// cores: measured on OU 2D 64² at load ~11, each stage solve with them cost 12–23 ms, three
/// quarters of a flow step — the supernodes are too small to share, and a waiting worker
/// thread that the loaded machine has descheduled stalls the solve.)
pub(crate) trait Factorization {
    type Symbolic;
    type Numeric;
    /// Only the lower triangle is stored (symmetric matrices).
    const LOWER: bool;
    fn analyse(pattern: SymbolicSparseColMatRef<'_, usize>) -> Result<Self::Symbolic, String>;
    /// The workspace of a factorisation and of a one-column solve.
    fn scratch(symbolic: &Self::Symbolic) -> StackReq;
    fn empty(symbolic: &Self::Symbolic) -> Self::Numeric;
    fn factor(
        symbolic: &Self::Symbolic,
        numeric: &mut Self::Numeric,
        mat: SparseColMatRef<'_, usize, f64>,
        stack: &mut MemStack,
    ) -> Result<(), String>;
    fn solve(
        symbolic: &Self::Symbolic,
        numeric: &Self::Numeric,
        rhs: MatMut<'_, f64>,
        stack: &mut MemStack,
    );
}

/// General square matrices: LU with partial pivoting and a fill-reducing column ordering
/// (faer, COLAMD).
pub(crate) struct LuKind;

impl Factorization for LuKind {
    type Symbolic = SymbolicLu<usize>;
    type Numeric = NumericLu<usize, f64>;
    const LOWER: bool = false;
    fn analyse(pattern: SymbolicSparseColMatRef<'_, usize>) -> Result<Self::Symbolic, String> {
        factorize_symbolic_lu(pattern, Default::default())
            .map_err(|e| format!("symbolic LU: {e:?}"))
    }
    fn scratch(symbolic: &Self::Symbolic) -> StackReq {
        symbolic
            .factorize_numeric_lu_scratch::<f64>(Par::Seq, Default::default())
            .or(symbolic.solve_in_place_scratch::<f64>(1, Par::Seq))
    }
    fn empty(_: &Self::Symbolic) -> Self::Numeric {
        NumericLu::new()
    }
    fn factor(
        symbolic: &Self::Symbolic,
        numeric: &mut Self::Numeric,
        mat: SparseColMatRef<'_, usize, f64>,
        stack: &mut MemStack,
    ) -> Result<(), String> {
        symbolic
            .factorize_numeric_lu(numeric, mat, Par::Seq, stack, Default::default())
            .map(|_| ())
            .map_err(|e| format!("sparse LU: {e:?}"))
    }
    fn solve(
        symbolic: &Self::Symbolic,
        numeric: &Self::Numeric,
        rhs: MatMut<'_, f64>,
        stack: &mut MemStack,
    ) {
        // SAFETY: `numeric` is only ever written by `factorize_numeric_lu` of this `symbolic`
        // (`Sparse::factorise`, on a matrix with the pattern `symbolic` was analysed from), and
        // `Sparse::solve` calls this only after a successful factorisation.
        let lu = unsafe { LuRef::new_unchecked(symbolic, numeric) };
        lu.solve_in_place_with_conj(Conj::No, rhs, Par::Seq, stack);
    }
}

/// Symmetric positive definite matrices (lower triangle stored): Cholesky (faer, AMD
/// ordering).
pub(crate) struct LltKind;

impl Factorization for LltKind {
    type Symbolic = SymbolicCholesky<usize>;
    type Numeric = Vec<f64>;
    const LOWER: bool = true;
    fn analyse(pattern: SymbolicSparseColMatRef<'_, usize>) -> Result<Self::Symbolic, String> {
        factorize_symbolic_cholesky(
            pattern,
            Side::Lower,
            SymmetricOrdering::Amd,
            Default::default(),
        )
        .map_err(|e| format!("symbolic Cholesky: {e:?}"))
    }
    fn scratch(symbolic: &Self::Symbolic) -> StackReq {
        symbolic
            .factorize_numeric_llt_scratch::<f64>(Par::Seq, Default::default())
            .or(symbolic.solve_in_place_scratch::<f64>(1, Par::Seq))
    }
    fn empty(symbolic: &Self::Symbolic) -> Self::Numeric {
        vec![0.0; symbolic.len_val()]
    }
    fn factor(
        symbolic: &Self::Symbolic,
        numeric: &mut Self::Numeric,
        mat: SparseColMatRef<'_, usize, f64>,
        stack: &mut MemStack,
    ) -> Result<(), String> {
        symbolic
            .factorize_numeric_llt::<f64>(
                numeric,
                mat,
                Side::Lower,
                Default::default(),
                Par::Seq,
                stack,
                Default::default(),
            )
            .map(|_| ())
            .map_err(|e| format!("sparse Cholesky: {e:?}"))
    }
    fn solve(
        symbolic: &Self::Symbolic,
        numeric: &Self::Numeric,
        rhs: MatMut<'_, f64>,
        stack: &mut MemStack,
    ) {
        LltRef::<usize, f64>::new(symbolic, numeric).solve_in_place_with_conj(
            Conj::No,
            rhs,
            Par::Seq,
            stack,
        );
    }
}

/// A square sparse matrix with a fixed pattern, refilled and factorised in place.
pub(crate) struct Sparse<K: Factorization> {
    n: usize,
    pattern: SymbolicSparseColMat<usize>,
    symbolic: K::Symbolic,
    numeric: K::Numeric,
    /// Whether `numeric` holds a factorisation of the current pattern.
    ready: bool,
    work: MemBuffer,
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
        let work = MemBuffer::try_new(K::scratch(&symbolic))
            .map_err(|e| format!("factorisation workspace: {e:?}"))?;
        Ok(Sparse {
            n,
            pattern,
            numeric: K::empty(&symbolic),
            symbolic,
            ready: false,
            work,
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
        self.ready = false;
        let mat = SparseColMatRef::new(self.pattern.as_ref(), &self.values);
        K::factor(
            &self.symbolic,
            &mut self.numeric,
            mat,
            MemStack::new(&mut self.work),
        )?;
        self.ready = true;
        Ok(())
    }

    /// Solve with the last factorisation, in place; false if there is none or it produced a
    /// non-finite value.
    pub fn solve(&mut self, rhs: &mut [f64]) -> bool {
        if !self.ready {
            return false;
        }
        K::solve(
            &self.symbolic,
            &self.numeric,
            MatMut::from_column_major_slice_mut(rhs, self.n, 1),
            MemStack::new(&mut self.work),
        );
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

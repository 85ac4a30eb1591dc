//! The reduced Newton system S δφ = g and its sparse factorisation.
//!
//! S = Cᵀ D⁻¹ C + L_θ/τ (see the crate docs). Row K of C touches K and its face neighbours,
//! so S couples cells at graph distance ≤ 2 (13 points per row on a 2D grid, 25 in 3D). The
//! sparsity pattern, the fill-reducing symbolic factorisation and, for every cell, the positions
//! of its stencil pairs in the value array are computed once per mesh and reused at every
//! iteration; each iteration only refills the values and runs the numeric factorisation.

use crate::params::Factorization;
use faer::linalg::solvers::Solve;
use faer::sparse::linalg::solvers::{Llt, Lu, SymbolicLlt, SymbolicLu};
use faer::sparse::{SparseColMatRef, SymbolicSparseColMat};
use faer::{MatMut, Side};
use jko_core::Mesh;

/// Stencils, pattern and symbolic factorisation of S for one mesh.
pub(crate) struct ReducedSystem {
    n: usize,
    factorization: Factorization,
    /// Stencil of cell K: K itself, then the cell across each face of `faces_of(K)`.
    stencil_start: Vec<usize>,
    /// Value positions of the stencil pairs (a, b), a ≤ b, stored as s×s blocks per cell.
    pair_start: Vec<usize>,
    pair_pos: Vec<usize>,
    pattern: SymbolicSparseColMat<usize>,
    symbolic: SymbolicFactor,
    pub values: Vec<f64>,
    diag_pos: Vec<usize>,
}

enum SymbolicFactor {
    Llt(SymbolicLlt<usize>),
    Lu(SymbolicLu<usize>),
}

/// Why the linear algebra failed.
#[derive(Debug, Clone)]
pub(crate) struct LinearFailure(pub String);

impl ReducedSystem {
    pub fn new(mesh: &Mesh, factorization: Factorization) -> Result<Self, LinearFailure> {
        let n = mesh.n_cells();
        let full = factorization == Factorization::Lu;
        let mut stencil_start = Vec::with_capacity(n + 1);
        let mut stencil = Vec::new();
        stencil_start.push(0);
        for k in 0..n {
            stencil.push(k);
            for &s in mesh.faces_of(k) {
                let f = mesh.faces()[s];
                stencil.push(if f.k == k { f.l } else { f.k });
            }
            stencil_start.push(stencil.len());
        }
        // Column lists of the stored triangle (lower: row ≥ col) or of the full matrix.
        let mut cols: Vec<Vec<usize>> = vec![Vec::new(); n];
        for k in 0..n {
            let st = &stencil[stencil_start[k]..stencil_start[k + 1]];
            for &i in st {
                for &j in st {
                    if full || i >= j {
                        cols[j].push(i);
                    }
                }
            }
        }
        let mut col_ptr = Vec::with_capacity(n + 1);
        let mut row_idx = Vec::new();
        col_ptr.push(0);
        for c in cols.iter_mut() {
            c.sort_unstable();
            c.dedup();
            row_idx.extend_from_slice(c);
            col_ptr.push(row_idx.len());
        }
        drop(cols);
        let position = |i: usize, j: usize| -> usize {
            let (r, c) = if full || i >= j { (i, j) } else { (j, i) };
            let rows = &row_idx[col_ptr[c]..col_ptr[c + 1]];
            // The pattern was built from these very pairs, so the search succeeds.
            col_ptr[c] + rows.binary_search(&r).unwrap_or(0)
        };
        let mut pair_start = Vec::with_capacity(n + 1);
        let mut pair_pos = Vec::new();
        pair_start.push(0);
        for k in 0..n {
            let st = &stencil[stencil_start[k]..stencil_start[k + 1]];
            for &i in st {
                for &j in st {
                    pair_pos.push(position(i, j));
                }
            }
            pair_start.push(pair_pos.len());
        }
        let diag_pos = (0..n).map(|k| position(k, k)).collect();
        let nnz = row_idx.len();
        let pattern = SymbolicSparseColMat::new_checked(n, n, col_ptr, None, row_idx);
        let symbolic = match factorization {
            Factorization::Cholesky => SymbolicFactor::Llt(
                SymbolicLlt::try_new(pattern.as_ref(), Side::Lower)
                    .map_err(|e| LinearFailure(format!("symbolic Cholesky: {e:?}")))?,
            ),
            Factorization::Lu => SymbolicFactor::Lu(
                SymbolicLu::try_new(pattern.as_ref())
                    .map_err(|e| LinearFailure(format!("symbolic LU: {e:?}")))?,
            ),
        };
        Ok(ReducedSystem {
            n,
            factorization,
            stencil_start,
            pair_start,
            pair_pos,
            pattern,
            symbolic,
            values: vec![0.0; nnz],
            diag_pos,
        })
    }

    /// Assemble S = Cᵀ D⁻¹ C + L_θ/τ.
    ///
    /// `coupling(k, c)` fills row K of C in stencil order into `c`; `dinv[k]` = 1/D_K;
    /// `face_weight(k, j)` is T_σ θ_σ / τ for the j-th face of K.
    pub fn assemble(
        &mut self,
        dinv: &[f64],
        mut coupling: impl FnMut(usize, &mut Vec<f64>),
        mut face_weight: impl FnMut(usize, usize) -> f64,
    ) {
        self.values.iter_mut().for_each(|v| *v = 0.0);
        let full = self.factorization == Factorization::Lu;
        let mut c = Vec::with_capacity(8);
        for (k, &d) in dinv.iter().enumerate().take(self.n) {
            let s = self.stencil_start[k + 1] - self.stencil_start[k];
            let pos = &self.pair_pos[self.pair_start[k]..self.pair_start[k + 1]];
            c.clear();
            coupling(k, &mut c);
            for a in 0..s {
                let ca = c[a] * d;
                for b in a..s {
                    let v = ca * c[b];
                    self.values[pos[a * s + b]] += v;
                    if full && a != b {
                        self.values[pos[b * s + a]] += v;
                    }
                }
            }
            for j in 1..s {
                let w = face_weight(k, j - 1);
                self.values[pos[0]] += w;
                self.values[pos[j]] -= 0.5 * w;
                if full {
                    self.values[pos[j * s]] -= 0.5 * w;
                }
            }
        }
    }

    /// Add `shift` to every diagonal entry.
    pub fn shift_diagonal(&mut self, shift: f64) {
        for &p in &self.diag_pos {
            self.values[p] += shift;
        }
    }

    /// Mean diagonal entry.
    pub fn mean_diagonal(&self) -> f64 {
        self.diag_pos.iter().map(|&p| self.values[p]).sum::<f64>() / self.n as f64
    }

    /// Factorise the current values and solve S x = rhs in place.
    pub fn solve(&self, rhs: &mut [f64]) -> Result<(), LinearFailure> {
        let mat = SparseColMatRef::new(self.pattern.as_ref(), &self.values);
        let x = MatMut::from_column_major_slice_mut(rhs, self.n, 1);
        match &self.symbolic {
            SymbolicFactor::Llt(sym) => {
                let f = Llt::try_new_with_symbolic(sym.clone(), mat, Side::Lower)
                    .map_err(|e| LinearFailure(format!("Cholesky: {e:?}")))?;
                f.solve_in_place(x);
            }
            SymbolicFactor::Lu(sym) => {
                let f = Lu::try_new_with_symbolic(sym.clone(), mat)
                    .map_err(|e| LinearFailure(format!("LU: {e:?}")))?;
                f.solve_in_place(x);
            }
        }
        if rhs.iter().all(|v| v.is_finite()) {
            Ok(())
        } else {
            Err(LinearFailure("the Newton direction is not finite".into()))
        }
    }

    /// Number of stored nonzeros of S.
    pub fn nnz(&self) -> usize {
        self.values.len()
    }

    /// y = S x, for checks.
    #[cfg(test)]
    pub fn apply(&self, x: &[f64]) -> Vec<f64> {
        let full = self.factorization == Factorization::Lu;
        let (cp, ri) = (self.pattern.col_ptr(), self.pattern.row_idx());
        let mut y = vec![0.0; self.n];
        for j in 0..self.n {
            let range = cp[j]..cp[j + 1];
            for (&i, &v) in ri[range.clone()].iter().zip(&self.values[range]) {
                y[i] += v * x[j];
                if !full && i != j {
                    y[j] += v * x[i];
                }
            }
        }
        y
    }

    pub fn factorization(&self) -> Factorization {
        self.factorization
    }
}

//! The reduced Newton system S δφ = b and its sparse factorisation.
//!
//! S = Cᵀ D⁻¹ C + L_θ/τ (see the crate docs). Row K of C touches K and its face neighbours,
//! so S couples cells at graph distance ≤ 2 (13 points per row on a 2D grid, 25 in 3D). The
//! sparsity pattern, the fill-reducing ordering, the symbolic factorisation, the numeric
//! factor's storage and the factorisation workspace are computed or allocated once per mesh and
//! reused at every iteration; an iteration only refills the values, scales them and runs the
//! numeric factorisation.
//!
//! The symbolic factorisation is faer's. The numeric one is faer's, except for supernodal
//! factors of low density (2D grids up to 256² in the minimum-degree order), which
//! `supernodal_llt_factor` computes into faer's storage, visiting only the supernodes that
//! update each other (faer visits every descendant); both triangular solves of a supernodal
//! factor are ours (`supernodal_llt_solve`). Measured per function below.
//!
//! The matrix is factorised after the symmetric diagonal scaling Ŝ = Δ S Δ, Δ = diag(S_KK^{-1/2}):
//! the entries of S span as many decades as the densities do (a cell of density 10⁻³⁰ has a
//! row ~10⁻³⁰ of the centre's), and the scaled matrix has a unit diagonal, so the Cholesky
//! factorisation's backward error is relative to each row's own size. A solve is followed by
//! iterative refinement while it reduces the residual.

use crate::ordering;
use crate::params::{Factorization, Ordering};
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::solvers::Solve;
use faer::sparse::linalg::SupernodalThreshold;
use faer::sparse::linalg::cholesky::supernodal::SymbolicSupernodalCholesky;
use faer::sparse::linalg::cholesky::{
    CholeskySymbolicParams, LltRef, SymbolicCholesky, SymbolicCholeskyRaw, SymmetricOrdering,
    factorize_symbolic_cholesky,
};
use faer::sparse::linalg::solvers::{Lu, SymbolicLu};
use faer::sparse::{SparseColMatRef, SymbolicSparseColMat};
use faer::{Conj, MatMut, MatRef, Par, Side};
use jko_core::Mesh;

/// faer factorises supernodally when the factorisation's flops per nonzero of L exceed 40 ×
/// this (its default: 1). Measured in the **release** profile on the OU timing problem
/// (`newton_timing`, round 12, load ~3.5, one numeric factorisation / mean warm step):
/// 32² 0.69 → 0.59 ms / 8 → 5 ms, 48² 4.1 → 1.2 ms / 26 → 10 ms, 64² 5.2 → 2.2 ms / 48 → 28 ms
/// (simplicial → supernodal); 96² and the 3D grids are supernodal at either threshold, 1D
/// grids simplicial (flops per nonzero below 20). Faer's supernodal kernels are generic code
/// instantiated in this crate: in the test profile (opt-level 2) they lost at 64² (round 10
/// chose 1.2 from test-profile timings, which made 64² simplicial), in release they win from
/// 32² up, so 0.5 (supernodal above 20 flops per nonzero).
const SUPERNODAL_THRESHOLD: f64 = 0.5;

/// The symbolic Cholesky factorisation of a pattern (one triangle, `side`) in the order `ord`,
/// supernodal above `SUPERNODAL_THRESHOLD`.
fn analyse(
    pattern: faer::sparse::SymbolicSparseColMatRef<'_, usize>,
    side: Side,
    ord: SymmetricOrdering<'_, usize>,
) -> Result<SymbolicCholesky<usize>, LinearFailure> {
    factorize_symbolic_cholesky(
        pattern,
        side,
        ord,
        CholeskySymbolicParams {
            supernodal_flop_ratio_threshold: SupernodalThreshold(SUPERNODAL_THRESHOLD),
            ..Default::default()
        },
    )
    .map_err(|e| LinearFailure(format!("symbolic Cholesky: {e:?}")))
}

/// Stencils, pattern, ordering and symbolic factorisation of S for one mesh.
pub(crate) struct ReducedSystem {
    n: usize,
    factorization: Factorization,
    order: Ordering,
    /// Stencil of cell K: K itself, then the cell across each face of `faces_of(K)`.
    stencil_start: Vec<usize>,
    /// Value positions of the stencil pairs (a, b) of each cell, stored as s×s blocks.
    pair_start: Vec<usize>,
    pair_pos: Vec<usize>,
    pattern: SymbolicSparseColMat<usize>,
    /// Row index of every stored value (for the scaling).
    value_row: Vec<usize>,
    /// Column index of every stored value.
    value_col: Vec<usize>,
    values: Vec<f64>,
    /// The scaled values Ŝ = Δ S Δ that are factorised.
    scaled: Vec<f64>,
    diag_pos: Vec<usize>,
    /// Δ = diag(S_KK^{-1/2}).
    scale: Vec<f64>,
    numeric: Numeric,
    /// (m + 1) ε, m the most entries in a row of S: the rounding of a computed residual
    /// b − Ŝ y relative to |b| + |Ŝ| |y| (the refinement's stopping level).
    residual_roundoff: f64,
    /// Newton matrices assembled since the system was built: each is factorised once or
    /// solved by `solve_preconditioned` (counted in `preconditioned`); the steps report their
    /// linear algebra from these counts, not from their own bookkeeping.
    assembled: usize,
    /// Assembled matrices solved by conjugate gradients on an earlier factorisation.
    preconditioned: usize,
    /// Whether the held factorisation is that of the assembled values.
    current: bool,
}

enum Numeric {
    Llt(Cholesky),
    Lu {
        symbolic: SymbolicLu<usize>,
        factor: Option<Lu<usize, f64>>,
    },
}

/// The sparse Cholesky factorisation of one mesh's pattern: the symbolic factorisation, the
/// numeric factor's storage and the workspace its factorisations and solves share.
struct Cholesky {
    symbolic: SymbolicCholesky<usize>,
    factor: Vec<f64>,
    work: MemBuffer,
    /// Whether `factor` holds a factorisation (of the current values or of an earlier matrix
    /// of the same pattern: `ReducedSystem::current` says which).
    ready: bool,
    /// The supernodal solve's permuted right-hand side.
    permuted: Vec<f64>,
    /// The supernodal solve's scratch for the rows below a diagonal block.
    below: Vec<f64>,
    /// For a supernodal factor: the matrix in the fill-reducing order, into which each
    /// factorisation's values are scattered (the symbolic factorisation then has no
    /// permutation of its own).
    ordered: Option<Box<Ordered>>,
}

/// S's lower triangle in the fill-reducing order P S Pᵀ, with the position each stored value of
/// S takes there. faer permutes the matrix itself at every numeric factorisation when its
/// symbolic factorisation carries the permutation (sorting the entries of every column anew:
/// 2.7 % of a warm 64² OU step); the permuted pattern is fixed, so it is built once and each
/// factorisation only scatters the values (`newton_timing 128 128`, release, idle: one
/// factorisation 11.8 → 11.0 ms).
struct Ordered {
    /// fwd[new] = old, inv[old] = new.
    fwd: Vec<usize>,
    inv: Vec<usize>,
    pattern: SymbolicSparseColMat<usize>,
    position: Vec<usize>,
    values: Vec<f64>,
    /// Whether `supernodal_llt_factor` factorises (else faer's numeric factorisation).
    own_factorisation: bool,
    /// Workspace of `supernodal_llt_factor`.
    scratch: FactorScratch,
}

impl Ordered {
    /// The permuted lower triangle of `pattern` (S's lower triangle) under `fwd`/`inv`.
    fn new(pattern: &SymbolicSparseColMat<usize>, fwd: &[usize], inv: &[usize]) -> Self {
        let n = fwd.len();
        let (cp, ri) = (pattern.col_ptr(), pattern.row_idx());
        // (new column, new row, old position) of every stored value, lower triangle.
        let mut entries = Vec::with_capacity(ri.len());
        for j in 0..n {
            for (p, &i) in ri.iter().enumerate().take(cp[j + 1]).skip(cp[j]) {
                let (a, b) = (inv[i], inv[j]);
                entries.push((a.min(b), a.max(b), p));
            }
        }
        entries.sort_unstable();
        let mut col_ptr = vec![0usize; n + 1];
        let mut row_idx = Vec::with_capacity(entries.len());
        let mut position = vec![0usize; entries.len()];
        for (q, &(c, r, p)) in entries.iter().enumerate() {
            col_ptr[c + 1] += 1;
            row_idx.push(r);
            position[p] = q;
        }
        for c in 0..n {
            col_ptr[c + 1] += col_ptr[c];
        }
        Ordered {
            fwd: fwd.to_vec(),
            inv: inv.to_vec(),
            pattern: SymbolicSparseColMat::new_checked(n, n, col_ptr, None, row_idx),
            values: vec![0.0; position.len()],
            position,
            own_factorisation: false,
            scratch: FactorScratch::default(),
        }
    }
}

impl Cholesky {
    /// Factorise `mat` (its lower triangle) into `factor`.
    fn factorize(&mut self, mat: SparseColMatRef<'_, usize, f64>) -> Result<(), LinearFailure> {
        let mat = match &mut self.ordered {
            Some(o) => {
                for (&q, &v) in o.position.iter().zip(mat.val()) {
                    o.values[q] = v;
                }
                if let (true, SymbolicCholeskyRaw::Supernodal(sym)) =
                    (o.own_factorisation, self.symbolic.raw())
                {
                    let a = SparseColMatRef::new(o.pattern.as_ref(), &o.values);
                    supernodal_llt_factor(
                        sym,
                        a,
                        &mut self.factor,
                        &mut o.scratch,
                        &mut self.work,
                    )?;
                    self.ready = true;
                    return Ok(());
                }
                SparseColMatRef::new(o.pattern.as_ref(), &o.values)
            }
            None => mat,
        };
        self.symbolic
            .factorize_numeric_llt::<f64>(
                &mut self.factor,
                mat,
                Side::Lower,
                Default::default(),
                Par::Seq,
                MemStack::new(&mut self.work),
                Default::default(),
            )
            .map_err(|e| LinearFailure(format!("Cholesky: {e:?}")))?;
        self.ready = true;
        Ok(())
    }

    /// Solve with the current factorisation in place (one right-hand side).
    fn solve_in_place(&mut self, x: &mut [f64]) -> Result<(), LinearFailure> {
        if !self.ready {
            return Err(LinearFailure("internal: no factorisation".into()));
        }
        if let SymbolicCholeskyRaw::Supernodal(sym) = self.symbolic.raw() {
            let perm = match &self.ordered {
                Some(o) => Some((&o.fwd[..], &o.inv[..])),
                None => self.symbolic.perm().map(|p| p.arrays()),
            };
            match perm {
                Some((fwd, inv)) => {
                    let y = &mut self.permuted;
                    y.clear();
                    y.extend(fwd.iter().map(|&i| x[i]));
                    supernodal_llt_solve(sym, &self.factor, y, &mut self.below);
                    for (xk, &i) in x.iter_mut().zip(inv) {
                        *xk = y[i];
                    }
                }
                None => supernodal_llt_solve(sym, &self.factor, x, &mut self.below),
            }
            return Ok(());
        }
        let n = x.len();
        LltRef::<usize, f64>::new(&self.symbolic, &self.factor).solve_in_place_with_conj(
            Conj::No,
            MatMut::from_column_major_slice_mut(x, n, 1),
            Par::Seq,
            MemStack::new(&mut self.work),
        );
        Ok(())
    }
}

/// `supernodal_llt_factor` factorises a supernodal factor whose multiply–adds per stored entry
/// (`flops_per_entry`) are at most this; denser factors go to faer, whose blocked kernels win
/// on wide supernodes. Measured (release, one factorisation of a 13-point matrix of the shape
/// of S, CPU time, load 5–6; faer → ours): 2D grids in the minimum-degree order 64² (67 per
/// entry) 2.35–2.58 → 1.85–2.04 ms, 128² (135) 16.4–16.9 → 14.1–14.2 ms, 256² (214) 90.9–92.4
/// → 77.9–79.8 ms, 512² (427) 624–637 → 624–626 ms; 3D grids in nested dissection 16³ (311)
/// 21.0 → 22.0 ms, 24³ (693) 203 → 233–240 ms.
const OWN_FACTORISATION_FLOPS: f64 = 250.0;

/// Σ_j c_j² / nnz(L), c_j the entries of column j of L: the factorisation's multiply–adds per
/// stored entry, up to a constant (the density of its dense blocks).
fn flops_per_entry(sym: &SymbolicSupernodalCholesky<usize>) -> f64 {
    let (begin, end, row_ptr) = (
        sym.supernode_begin(),
        sym.supernode_end(),
        sym.col_ptr_for_row_idx(),
    );
    let (mut flops, mut entries) = (0.0, 0.0);
    for s in 0..sym.n_supernodes() {
        let (size, below) = (end[s] - begin[s], row_ptr[s + 1] - row_ptr[s]);
        for j in 0..size {
            let c = (size - j + below) as f64;
            flops += c * c;
            entries += c;
        }
    }
    if entries > 0.0 { flops / entries } else { 0.0 }
}

/// Workspace of `supernodal_llt_factor`, sized at its first call.
#[derive(Default)]
struct FactorScratch {
    /// Supernode of every column.
    owner: Vec<usize>,
    /// Row of the supernode being factorised → its row in the supernode's block.
    local: Vec<usize>,
    /// Per supernode s: the first supernode d (linked through `next`) whose next update
    /// goes to s.
    head: Vec<usize>,
    next: Vec<usize>,
    /// Per supernode d: the first row of its pattern not yet applied as an update.
    pos: Vec<usize>,
    /// One column of an update block.
    column: Vec<f64>,
}

const NO_SUPERNODE: usize = usize::MAX;
/// Supernodes at least this wide are factorised by faer's dense Cholesky and triangular solve.
const DENSE_PANEL: usize = 16;
/// Updates of at least this many multiply–adds (columns × rows × the updating supernode's
/// width) are formed by faer's matrix product.
const DENSE_UPDATE: usize = 4096;

/// The numeric supernodal Cholesky factorisation L Lᵀ = A (A's lower triangle, in the factor's
/// own order: no permutation) into faer's supernodal storage (`factor`, as
/// `factorize_supernodal_numeric_llt` fills it; the substitution and faer's solve read it).
///
/// Left-looking, as faer's: a supernode s gathers A's columns, subtracts the updates of the
/// supernodes below it whose patterns reach its columns, and factorises its column block. faer
/// visits every descendant of s in the elimination tree and dispatches two dense products per
/// visit even when the descendant does not touch s (64² OU, AMD order: 760 supernodes, 308 of
/// one column, 6159 descendant visits for 2481 updates; its 29.7 M instructions per
/// factorisation were 47 % of a warm step by callgrind). Here each supernode is linked to the
/// next supernode it updates (the classic linked lists of left-looking sparse Cholesky), so
/// only real updates are visited, and the small dense products are plain loops over
/// contiguous columns that the compiler vectorises.
fn supernodal_llt_factor(
    sym: &SymbolicSupernodalCholesky<usize>,
    a: SparseColMatRef<'_, usize, f64>,
    factor: &mut [f64],
    w: &mut FactorScratch,
    stack: &mut MemBuffer,
) -> Result<(), LinearFailure> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { supernodal_llt_factor_avx2(sym, a, factor, w, stack) };
    }
    supernodal_llt_factor_body(sym, a, factor, w, stack)
}

/// `supernodal_llt_factor` compiled for AVX2: its loops over contiguous columns then run four
/// lanes wide instead of the two of the baseline x86-64 target (the crate is not built for a
/// particular CPU; faer selects its kernels at run time the same way). Multiplications and
/// additions stay separate (no fused multiply–add), so both paths round alike.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn supernodal_llt_factor_avx2(
    sym: &SymbolicSupernodalCholesky<usize>,
    a: SparseColMatRef<'_, usize, f64>,
    factor: &mut [f64],
    w: &mut FactorScratch,
    stack: &mut MemBuffer,
) -> Result<(), LinearFailure> {
    supernodal_llt_factor_body(sym, a, factor, w, stack)
}

#[inline(always)]
fn supernodal_llt_factor_body(
    sym: &SymbolicSupernodalCholesky<usize>,
    a: SparseColMatRef<'_, usize, f64>,
    factor: &mut [f64],
    w: &mut FactorScratch,
    stack: &mut MemBuffer,
) -> Result<(), LinearFailure> {
    let (begin, end, row_ptr, val_ptr, rows) = (
        sym.supernode_begin(),
        sym.supernode_end(),
        sym.col_ptr_for_row_idx(),
        sym.col_ptr_for_val(),
        sym.row_idx(),
    );
    let (n, ns) = (a.ncols(), sym.n_supernodes());
    if w.owner.len() != n {
        w.owner = vec![0; n];
        for s in 0..ns {
            w.owner[begin[s]..end[s]].fill(s);
        }
        w.local = vec![0; n];
    }
    w.head.clear();
    w.head.resize(ns, NO_SUPERNODE);
    w.next.clear();
    w.next.resize(ns, NO_SUPERNODE);
    w.pos.clear();
    w.pos.resize(ns, 0);
    let (a_ptr, a_rows, a_vals) = (a.col_ptr(), a.row_idx(), a.val());
    for s in 0..ns {
        let (start, size) = (begin[s], end[s] - begin[s]);
        let pattern = &rows[row_ptr[s]..row_ptr[s + 1]];
        let height = size + pattern.len();
        for j in 0..size {
            w.local[start + j] = j;
        }
        for (i, &r) in pattern.iter().enumerate() {
            w.local[r] = size + i;
        }
        let (done, rest) = factor.split_at_mut(val_ptr[s]);
        let ls = &mut rest[..val_ptr[s + 1] - val_ptr[s]];
        ls.fill(0.0);
        for j in 0..size {
            let col = &mut ls[j * height..(j + 1) * height];
            let range = a_ptr[start + j]..a_ptr[start + j + 1];
            for (&r, &v) in a_rows[range.clone()].iter().zip(&a_vals[range]) {
                col[w.local[r]] += v;
            }
        }
        // The updates of the supernodes d whose next pattern rows are columns of s.
        let mut d = std::mem::replace(&mut w.head[s], NO_SUPERNODE);
        while d != NO_SUPERNODE {
            let following = w.next[d];
            let d_pattern = &rows[row_ptr[d]..row_ptr[d + 1]];
            let d_size = end[d] - begin[d];
            let d_height = d_size + d_pattern.len();
            let ld = &done[val_ptr[d]..val_ptr[d + 1]];
            let first = w.pos[d];
            let rows_below = &d_pattern[first..];
            let k = rows_below.partition_point(|&r| r < start + size);
            let mut k_done = 0;
            if d_size * k * rows_below.len() >= DENSE_UPDATE {
                // A large update: faer's matrix product into a dense block, then its lower
                // part scattered.
                let m = rows_below.len();
                w.column.clear();
                w.column.resize(m * k, 0.0);
                let below = MatRef::from_column_major_slice_with_stride(
                    &ld[d_size + first..],
                    m,
                    d_size,
                    d_height,
                );
                let mut u = MatMut::from_column_major_slice_mut(&mut w.column, m, k);
                faer::linalg::matmul::matmul(
                    u.as_mut(),
                    faer::Accum::Replace,
                    below,
                    below.subrows(0, k).transpose(),
                    1.0,
                    Par::Seq,
                );
                for j in 0..k {
                    let col = &mut ls[(rows_below[j] - start) * height..];
                    let uj = &w.column[j * m..(j + 1) * m];
                    for (&r, &v) in rows_below[j..].iter().zip(&uj[j..]) {
                        col[w.local[r]] -= v;
                    }
                }
                k_done = k;
            }
            // Column j of the update: rows_below[j..] × row j of L_d's block (a single column:
            // subtracted directly).
            for j in k_done..k {
                let col = &mut ls[(rows_below[j] - start) * height..];
                let l0 = &ld[d_size + first + j..d_height];
                if d_size == 1 {
                    let ljc = l0[0];
                    for (&r, &l) in rows_below[j..].iter().zip(l0) {
                        col[w.local[r]] -= l * ljc;
                    }
                    continue;
                }
                w.column.clear();
                w.column.extend(l0.iter().map(|&l| l * l0[0]));
                for c in 1..d_size {
                    let lc = &ld[c * d_height + d_size + first + j..(c + 1) * d_height];
                    let ljc = lc[0];
                    for (u, &l) in w.column.iter_mut().zip(lc) {
                        *u += l * ljc;
                    }
                }
                for (&r, &u) in rows_below[j..].iter().zip(&w.column) {
                    col[w.local[r]] -= u;
                }
            }
            if k < rows_below.len() {
                w.pos[d] = first + k;
                let t = w.owner[rows_below[k]];
                w.next[d] = w.head[t];
                w.head[t] = d;
            }
            d = following;
        }
        // The column block: Cholesky of the diagonal block and, in the same sweep, the rows
        // below it (left-looking by columns); wide blocks by faer's dense kernels.
        if size >= DENSE_PANEL {
            let block = MatMut::from_column_major_slice_with_stride_mut(ls, height, size, height);
            let (mut top, bottom) = block.split_at_row_mut(size);
            faer::linalg::cholesky::llt::factor::cholesky_in_place(
                top.as_mut(),
                Default::default(),
                Par::Seq,
                MemStack::new(stack),
                Default::default(),
            )
            .map_err(|e| LinearFailure(format!("Cholesky: {e:?} in supernode {s}")))?;
            faer::linalg::triangular_solve::solve_lower_triangular_in_place(
                top.as_ref(),
                bottom.transpose_mut(),
                Par::Seq,
            );
        }
        for j in 0..if size >= DENSE_PANEL { 0 } else { size } {
            let (left, right) = ls.split_at_mut(j * height);
            let col = &mut right[j..height];
            for c in 0..j {
                let lc = &left[c * height + j..(c + 1) * height];
                let ljc = lc[0];
                for (v, &l) in col.iter_mut().zip(lc) {
                    *v -= l * ljc;
                }
            }
            let pivot = col[0];
            if !(pivot > 0.0 && pivot.is_finite()) {
                return Err(LinearFailure(format!(
                    "Cholesky: non-positive pivot at column {}",
                    start + j
                )));
            }
            let l = pivot.sqrt();
            col[0] = l;
            let inv = 1.0 / l;
            col[1..].iter_mut().for_each(|v| *v *= inv);
        }
        if let Some(&r) = pattern.first() {
            let t = w.owner[r];
            w.pos[s] = 0;
            w.next[s] = w.head[t];
            w.head[t] = s;
        }
    }
    Ok(())
}

/// Solve L Lᵀ x = b in place (b in `x`, in the factor's ordering) with a supernodal Cholesky
/// factor, one right-hand side, by substitution a supernode at a time; `below` is scratch.
///
/// faer's own supernodal solve treats each supernode as dense blocks (a triangular solve and a
/// matrix product, each dispatched to its SIMD kernels): on the 2D grids where the Newton
/// matrix is factorised supernodally most supernodes have a few columns, and that dispatch
/// cost about a third of a numeric factorisation per solve (64² OU, release, perf: 11 % of
/// the whole run in the solves against 36 % in the factorisations). The substitution below
/// reads the same storage (each supernode a column-major block: its diagonal block's rows,
/// then the rows of its pattern) and does the same 2 nnz(L) multiply–adds, without dispatch.
/// The block below a supernode's diagonal is applied as a dense product with contiguous
/// columns (forward: `below` = L_B x_S, then one scatter; backward: the pattern's values
/// gathered once, then one dot product per column), which the compiler vectorises; a
/// column-by-column scatter of every entry, as before, read and wrote x[r] once per entry
/// (callgrind, 64² OU warm steps: 4.7 M instructions per solve, 21 % of a step). Measured
/// (release, one solve of a 13-point matrix of the shape of S, CPU time, 3 runs at load 6):
/// 64² 0.32–0.33 → 0.17–0.19 ms, 128² 2.13–2.15 → 1.25–1.55 ms.
fn supernodal_llt_solve(
    sym: &SymbolicSupernodalCholesky<usize>,
    factor: &[f64],
    x: &mut [f64],
    below: &mut Vec<f64>,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { supernodal_llt_solve_avx2(sym, factor, x, below) };
    }
    supernodal_llt_solve_body(sym, factor, x, below)
}

/// `supernodal_llt_solve` compiled for AVX2 (as `supernodal_llt_factor_avx2`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn supernodal_llt_solve_avx2(
    sym: &SymbolicSupernodalCholesky<usize>,
    factor: &[f64],
    x: &mut [f64],
    below: &mut Vec<f64>,
) {
    supernodal_llt_solve_body(sym, factor, x, below)
}

#[inline(always)]
fn supernodal_llt_solve_body(
    sym: &SymbolicSupernodalCholesky<usize>,
    factor: &[f64],
    x: &mut [f64],
    below: &mut Vec<f64>,
) {
    let (begin, end, row_ptr, val_ptr, rows) = (
        sym.supernode_begin(),
        sym.supernode_end(),
        sym.col_ptr_for_row_idx(),
        sym.col_ptr_for_val(),
        sym.row_idx(),
    );
    let block = |s: usize| {
        let (start, size) = (begin[s], end[s] - begin[s]);
        let pattern = &rows[row_ptr[s]..row_ptr[s + 1]];
        let values = &factor[val_ptr[s]..val_ptr[s + 1]];
        (start, size, pattern, values, size + pattern.len())
    };
    // L y = b.
    for s in 0..sym.n_supernodes() {
        let (start, size, pattern, values, height) = block(s);
        let xs = &mut x[start..start + size];
        for j in 0..size {
            let col = &values[j * height..j * height + size];
            let xj = xs[j] / col[j];
            xs[j] = xj;
            for (xi, &l) in xs[j + 1..].iter_mut().zip(&col[j + 1..]) {
                *xi -= l * xj;
            }
        }
        if pattern.is_empty() {
            continue;
        }
        below.clear();
        below.resize(pattern.len(), 0.0);
        for (j, &xj) in x[start..start + size].iter().enumerate() {
            let col = &values[j * height + size..(j + 1) * height];
            for (b, &l) in below.iter_mut().zip(col) {
                *b += l * xj;
            }
        }
        for (&r, &b) in pattern.iter().zip(below.iter()) {
            x[r] -= b;
        }
    }
    // Lᵀ x = y.
    for s in (0..sym.n_supernodes()).rev() {
        let (start, size, pattern, values, height) = block(s);
        below.clear();
        below.extend(pattern.iter().map(|&r| x[r]));
        let xs = &mut x[start..start + size];
        for j in (0..size).rev() {
            let col = &values[j * height..(j + 1) * height];
            let mut acc = xs[j] - dot(&col[size..], below);
            for (&l, &xi) in col[j + 1..size].iter().zip(&xs[j + 1..]) {
                acc -= l * xi;
            }
            xs[j] = acc / col[j];
        }
    }
}

/// Σ a_i b_i in four interleaved partial sums (which the compiler keeps in one vector
/// register; a single running sum is a serial chain it may not reorder).
#[inline(always)]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let (mut acc, mut tail) = ([0.0f64; 4], 0.0);
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    for (&u, &v) in ca.remainder().iter().zip(cb.remainder()) {
        tail += u * v;
    }
    for (u, v) in ca.zip(cb) {
        for k in 0..4 {
            acc[k] += u[k] * v[k];
        }
    }
    (acc[0] + acc[2]) + (acc[1] + acc[3]) + tail
}

/// When `ReducedSystem::solve` stops refining.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refinement {
    /// At most two corrections, while the residual decreases.
    WhileDecreasing,
    /// As `WhileDecreasing`, and none once the componentwise backward error is at the round-off
    /// of the residual's own computation (there a correction cannot be judged). The dual
    /// ascent's solves with entropy: measured on OU 2D (64², 128²), the first solve's backward
    /// error is 2–6 ε, and the two corrections it used to get cost ~0.2 factorisations per
    /// Newton iteration without changing an iteration count. The semismooth porous ascent and
    /// the interior point keep `WhileDecreasing`: at the degenerate front cells of porous m = 3
    /// 2D their paths are sensitive to round-off (measured with the stop in both: step 2 of
    /// `class_iterations`'s raw-sample case 67 → 78 iterations, the other 67 → 61).
    ToRoundoff,
}

/// Why the linear algebra failed.
#[derive(Debug, Clone)]
pub(crate) struct LinearFailure(pub String);

impl ReducedSystem {
    pub fn new(
        mesh: &Mesh,
        factorization: Factorization,
        order: Ordering,
    ) -> Result<Self, LinearFailure> {
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
        let mut value_col = Vec::with_capacity(nnz);
        for c in 0..n {
            value_col.extend(std::iter::repeat_n(c, col_ptr[c + 1] - col_ptr[c]));
        }
        let value_row = row_idx.clone();
        let mut row_len = vec![0usize; n];
        for (&c, &r) in value_col.iter().zip(&value_row) {
            row_len[r] += 1;
            if !full && r != c {
                row_len[c] += 1;
            }
        }
        let residual_roundoff =
            (row_len.iter().copied().max().unwrap_or(0) + 1) as f64 * f64::EPSILON;
        let pattern = SymbolicSparseColMat::new_checked(n, n, col_ptr, None, row_idx);
        let numeric = match factorization {
            Factorization::Cholesky => {
                // Measured (README): nested dissection fills in less than minimum degree on 3D
                // grids (24³: 58 against 73 factor entries per entry of S, factorisation
                // 1.9× faster), more on 2D grids (256²: 21 against 15).
                let perm = match order {
                    Ordering::MinimumDegree => None,
                    Ordering::Auto if mesh.dim() < 3 => None,
                    Ordering::Auto | Ordering::NestedDissection => {
                        ordering::nested_dissection(mesh)
                    }
                };
                let inverse = perm.as_deref().map(ordering::inverse);
                let ord = match (&perm, &inverse) {
                    (Some(p), Some(i)) => {
                        SymmetricOrdering::Custom(faer::perm::PermRef::new_checked(p, i, n))
                    }
                    _ => SymmetricOrdering::Amd,
                };
                let symbolic = analyse(pattern.as_ref(), Side::Lower, ord)?;
                // A supernodal factor: the same symbolic factorisation of the matrix permuted
                // once here (`Ordered`).
                let (symbolic, ordered) = match (symbolic.raw(), symbolic.perm()) {
                    (SymbolicCholeskyRaw::Supernodal(_), Some(p)) => {
                        let (fwd, inv) = p.arrays();
                        let ordered = Ordered::new(&pattern, fwd, inv);
                        // faer reads the identity-ordered pattern as an upper triangle.
                        let upper = ordered
                            .pattern
                            .as_ref()
                            .transpose()
                            .to_col_major()
                            .map_err(|e| LinearFailure(format!("symbolic Cholesky: {e:?}")))?;
                        let again =
                            analyse(upper.as_ref(), Side::Upper, SymmetricOrdering::Identity)?;
                        if again.len_val() == symbolic.len_val()
                            && let SymbolicCholeskyRaw::Supernodal(sym) = again.raw()
                        {
                            let mut ordered = Box::new(ordered);
                            ordered.own_factorisation =
                                flops_per_entry(sym) <= OWN_FACTORISATION_FLOPS;
                            (again, Some(ordered))
                        } else {
                            (symbolic, None)
                        }
                    }
                    _ => (symbolic, None),
                };
                let factor = vec![0.0; symbolic.len_val()];
                let req = symbolic
                    .factorize_numeric_llt_scratch::<f64>(Par::Seq, Default::default())
                    .or(symbolic.solve_in_place_scratch::<f64>(2, Par::Seq));
                let work = MemBuffer::try_new(req)
                    .map_err(|e| LinearFailure(format!("Cholesky workspace: {e:?}")))?;
                Numeric::Llt(Cholesky {
                    symbolic,
                    factor,
                    work,
                    ready: false,
                    permuted: Vec::with_capacity(n),
                    below: Vec::with_capacity(n),
                    ordered,
                })
            }
            Factorization::Lu => Numeric::Lu {
                symbolic: SymbolicLu::try_new(pattern.as_ref())
                    .map_err(|e| LinearFailure(format!("symbolic LU: {e:?}")))?,
                factor: None,
            },
        };
        Ok(ReducedSystem {
            n,
            factorization,
            order,
            stencil_start,
            pair_start,
            pair_pos,
            pattern,
            value_row,
            value_col,
            values: vec![0.0; nnz],
            scaled: vec![0.0; nnz],
            diag_pos,
            scale: vec![1.0; n],
            numeric,
            residual_roundoff,
            assembled: 0,
            preconditioned: 0,
            current: false,
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
        self.assembled += 1;
        self.values.iter_mut().for_each(|v| *v = 0.0);
        let full = self.factorization == Factorization::Lu;
        let mut c = Vec::with_capacity(8);
        for (k, &d) in dinv.iter().enumerate().take(self.n) {
            let s = self.stencil_start[k + 1] - self.stencil_start[k];
            let pos = &self.pair_pos[self.pair_start[k]..self.pair_start[k + 1]];
            c.clear();
            coupling(k, &mut c);
            for (a, (&c_a, row)) in c.iter().zip(pos.chunks_exact(s)).enumerate() {
                let ca = c_a * d;
                for (b, (&c_b, &p)) in c.iter().zip(row).enumerate().skip(a) {
                    let v = ca * c_b;
                    self.values[p] += v;
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
        // The Cholesky factor of the previous matrix stays: it may precondition this one.
        self.current = false;
        if let Numeric::Lu { factor, .. } = &mut self.numeric {
            *factor = None;
        }
    }

    /// Newton matrices assembled since the system was built.
    pub fn assembled(&self) -> usize {
        self.assembled
    }

    /// Assembled matrices solved by `solve_preconditioned` instead of being factorised.
    pub fn preconditioned(&self) -> usize {
        self.preconditioned
    }

    /// Set the diagonal of every identically zero row (and column) of the assembled matrix
    /// to 1 and return those rows: there the system does not depend on the unknown, which is
    /// then pinned (its right-hand side must be 0).
    pub fn pin_empty_rows(&mut self) -> Vec<usize> {
        let mut pinned = Vec::new();
        for (k, &p) in self.diag_pos.iter().enumerate() {
            if self.values[p].is_nan() || self.values[p].abs() <= 1e-300 {
                self.values[p] = 1.0;
                pinned.push(k);
            }
        }
        pinned
    }

    /// Scale and factorise the assembled matrix. A relative diagonal shift `shift` (of the
    /// scaled, unit-diagonal matrix) may be added; 0 for the exact Newton matrix.
    pub fn factorize(&mut self, shift: f64) -> Result<(), LinearFailure> {
        // The scaling below is the factor's, and a failed factorisation leaves `factor` partly
        // overwritten: an earlier factor is no longer usable.
        self.current = false;
        if let Numeric::Llt(llt) = &mut self.numeric {
            llt.ready = false;
        }
        for (k, &p) in self.diag_pos.iter().enumerate() {
            let d = self.values[p];
            self.scale[k] = if d > 0.0 && d.is_finite() {
                1.0 / d.sqrt()
            } else {
                1.0
            };
        }
        for (i, v) in self.values.iter().enumerate() {
            self.scaled[i] = v * self.scale[self.value_row[i]] * self.scale[self.value_col[i]];
        }
        for &p in &self.diag_pos {
            self.scaled[p] += shift;
        }
        if self.scaled.iter().any(|v| !v.is_finite()) {
            return Err(LinearFailure("the Newton matrix is not finite".into()));
        }
        let mat = SparseColMatRef::new(self.pattern.as_ref(), &self.scaled);
        match &mut self.numeric {
            Numeric::Llt(llt) => llt.factorize(mat)?,
            Numeric::Lu { symbolic, factor } => {
                *factor = Some(
                    Lu::try_new_with_symbolic(symbolic.clone(), mat)
                        .map_err(|e| LinearFailure(format!("LU: {e:?}")))?,
                );
            }
        }
        self.current = true;
        Ok(())
    }

    /// Solve with the current factorisation, in the scaled variables.
    fn solve_scaled(&mut self, x: &mut [f64]) -> Result<(), LinearFailure> {
        match &mut self.numeric {
            Numeric::Llt(llt) => llt.solve_in_place(x)?,
            Numeric::Lu { factor, .. } => match factor {
                Some(f) => f.solve_in_place(MatMut::from_column_major_slice_mut(x, self.n, 1)),
                None => return Err(LinearFailure("internal: no factorisation".into())),
            },
        }
        Ok(())
    }

    /// Solve S x = b (b given in `x`, overwritten by the solution) with the factorisation of
    /// the last `factorize`, refining iteratively as `refinement` says.
    pub fn solve(&mut self, x: &mut [f64], refinement: Refinement) -> Result<(), LinearFailure> {
        if !self.current {
            return Err(LinearFailure(
                "internal: the matrix is not factorised".into(),
            ));
        }
        let n = self.n;
        let b: Vec<f64> = (0..n).map(|k| x[k] * self.scale[k]).collect();
        let mut y = b.clone();
        self.solve_scaled(&mut y)?;
        let norm = |v: &[f64]| v.iter().fold(0.0f64, |m, a| m.max(a.abs()));
        let (mut r, mut berr) = self.residual_scaled(&b, &y);
        let mut rn = norm(&r);
        let bn = norm(&b).max(f64::MIN_POSITIVE);
        for _ in 0..2 {
            let judged = refinement == Refinement::WhileDecreasing || berr > self.residual_roundoff;
            if rn.is_nan() || bn.is_nan() || rn <= 1e-15 * bn || !judged {
                break;
            }
            let mut c = r.clone();
            self.solve_scaled(&mut c)?;
            let trial: Vec<f64> = y.iter().zip(&c).map(|(a, b)| a + b).collect();
            let (r2, berr2) = self.residual_scaled(&b, &trial);
            let rn2 = norm(&r2);
            if rn2 < rn {
                y = trial;
                r = r2;
                rn = rn2;
                berr = berr2;
            } else {
                break;
            }
        }
        for k in 0..n {
            x[k] = y[k] * self.scale[k];
        }
        if x.iter().all(|v| v.is_finite()) {
            Ok(())
        } else {
            Err(LinearFailure("the Newton direction is not finite".into()))
        }
    }

    /// The residual b − Ŝ y and its componentwise backward error
    /// max_i |b − Ŝ y|_i / (|b| + |Ŝ| |y|)_i (Oettli–Prager; 0/0 counts as 0).
    fn residual_scaled(&self, b: &[f64], y: &[f64]) -> (Vec<f64>, f64) {
        let mut r = b.to_vec();
        let mut size: Vec<f64> = b.iter().map(|v| v.abs()).collect();
        let full = self.factorization == Factorization::Lu;
        let (cp, ri) = (self.pattern.col_ptr(), self.pattern.row_idx());
        for j in 0..self.n {
            for p in cp[j]..cp[j + 1] {
                let (i, v) = (ri[p], self.scaled[p]);
                r[i] -= v * y[j];
                size[i] += (v * y[j]).abs();
                if !full && i != j {
                    r[j] -= v * y[i];
                    size[j] += (v * y[i]).abs();
                }
            }
        }
        let berr =
            r.iter().zip(&size).fold(
                0.0f64,
                |m, (&ri, &si)| {
                    if ri == 0.0 { m } else { m.max(ri.abs() / si) }
                },
            );
        (r, berr)
    }

    /// Whether a Cholesky factorisation of an earlier matrix of this pattern is held that
    /// `solve_preconditioned` can use (the assembled matrix itself not factorised).
    pub fn holds_earlier_factor(&self) -> bool {
        !self.current && matches!(&self.numeric, Numeric::Llt(llt) if llt.ready)
    }

    /// Solve S x = b for the assembled S (b given in `x`) by conjugate gradients preconditioned
    /// with the held Cholesky factorisation of an earlier matrix M (`holds_earlier_factor`):
    /// the inexact directions of the crate docs ("The Newton matrix"). Near a solution consecutive
    /// Newton matrices differ by the size of the step, so M⁻¹S is close to the identity and a
    /// few iterations, each one triangular solve pair and one product with S, replace a numeric
    /// factorisation. `size(r)` measures a residual r = b − S x; the iteration stops when it is
    /// ≤ `target` (the matrix then counts as `preconditioned`) or after `max_iter` iterations.
    /// Returns the iterations and the last residual's size (infinite when the iteration broke
    /// down; x is then unspecified).
    pub fn solve_preconditioned(
        &mut self,
        x: &mut [f64],
        max_iter: usize,
        target: f64,
        size: impl Fn(&[f64]) -> f64,
    ) -> Result<(usize, f64), LinearFailure> {
        if !self.holds_earlier_factor() {
            return Err(LinearFailure("internal: no earlier factorisation".into()));
        }
        let n = self.n;
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(u, v)| u * v).sum::<f64>();
        let mut r = x.to_vec();
        x.iter_mut().for_each(|v| *v = 0.0);
        let mut z = self.precondition(&r)?;
        let mut p = z.clone();
        let mut rz = dot(&r, &z);
        let mut sp = vec![0.0; n];
        let (mut reached, mut done) = (f64::INFINITY, 0);
        for it in 1..=max_iter {
            done = it;
            self.multiply(&p, &mut sp);
            let psp = dot(&p, &sp);
            if !(psp > 0.0 && rz.is_finite()) {
                return Ok((it, f64::INFINITY));
            }
            let alpha = rz / psp;
            for k in 0..n {
                x[k] += alpha * p[k];
                r[k] -= alpha * sp[k];
            }
            reached = size(&r);
            if reached <= target || it == max_iter {
                break;
            }
            z = self.precondition(&r)?;
            let rz_next = dot(&r, &z);
            let beta = rz_next / rz;
            rz = rz_next;
            for k in 0..n {
                p[k] = z[k] + beta * p[k];
            }
        }
        if !x.iter().all(|v| v.is_finite()) {
            reached = f64::INFINITY;
        }
        if reached <= target {
            self.preconditioned += 1;
        }
        Ok((done, reached))
    }

    /// M⁻¹ r with the held factorisation of Δ M Δ: Δ (L Lᵀ)⁻¹ Δ r.
    fn precondition(&mut self, r: &[f64]) -> Result<Vec<f64>, LinearFailure> {
        let mut z: Vec<f64> = r.iter().zip(&self.scale).map(|(a, s)| a * s).collect();
        self.solve_scaled(&mut z)?;
        z.iter_mut().zip(&self.scale).for_each(|(v, s)| *v *= s);
        Ok(z)
    }

    /// y = S x for the assembled (unscaled) values.
    fn multiply(&self, x: &[f64], y: &mut [f64]) {
        let full = self.factorization == Factorization::Lu;
        let (cp, ri) = (self.pattern.col_ptr(), self.pattern.row_idx());
        y.iter_mut().for_each(|v| *v = 0.0);
        for j in 0..self.n {
            let range = cp[j]..cp[j + 1];
            for (&i, &v) in ri[range.clone()].iter().zip(&self.values[range]) {
                y[i] += v * x[j];
                if !full && i != j {
                    y[j] += v * x[i];
                }
            }
        }
    }

    /// Number of stored nonzeros of S.
    pub fn nnz(&self) -> usize {
        self.values.len()
    }

    /// Number of stored nonzeros of the Cholesky factor (0 for LU).
    pub fn factor_nnz(&self) -> usize {
        match &self.numeric {
            Numeric::Llt(llt) => llt.symbolic.len_val(),
            Numeric::Lu { .. } => 0,
        }
    }

    /// y = S x (unscaled), for checks.
    #[cfg(test)]
    pub fn apply(&self, x: &[f64]) -> Vec<f64> {
        let mut y = vec![0.0; self.n];
        self.multiply(x, &mut y);
        y
    }

    pub fn factorization(&self) -> Factorization {
        self.factorization
    }

    pub fn ordering(&self) -> Ordering {
        self.order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The system of an m × m grid on the unit square, and a right-hand side.
    fn test_system(m: usize) -> (Mesh, ReducedSystem, Vec<f64>) {
        let mesh = Mesh::grid(&[m, m], &[0.0, 0.0], &[1.0, 1.0]).expect("mesh");
        let system =
            ReducedSystem::new(&mesh, Factorization::Cholesky, Ordering::Auto).expect("system");
        let b = (0..mesh.n_cells())
            .map(|k| ((k * 37) % 11) as f64 - 5.0)
            .collect();
        (mesh, system, b)
    }

    /// Assemble an SPD 13-point matrix of the shape of S on `mesh` (a grid), its D⁻¹ scaled
    /// cellwise by 1 + wobble · (0..4).
    fn assemble_test_matrix(system: &mut ReducedSystem, mesh: &Mesh, wobble: f64) {
        let dinv: Vec<f64> = (0..mesh.n_cells())
            .map(|k| (1.0 + (k % 7) as f64) * (1.0 + wobble * ((k * 13) % 5) as f64))
            .collect();
        system.assemble(
            &dinv,
            |k, c| {
                let deg = mesh.faces_of(k).len();
                c.push(deg as f64 + 0.5);
                c.extend((0..deg).map(|j| -1.0 + 0.1 * j as f64));
            },
            |k, j| 1.0 + 0.01 * ((k + j) % 5) as f64,
        );
    }

    /// Conjugate gradients preconditioned with the factorisation of a nearby matrix reach the
    /// direct solution of the assembled one in a few iterations, and report a miss when the
    /// factorised matrix is far from it.
    #[test]
    fn preconditioned_solve_agrees_with_the_direct_solve() {
        let (mesh, mut system, b) = test_system(32);
        let assemble =
            |system: &mut ReducedSystem, wobble| assemble_test_matrix(system, &mesh, wobble);
        let size = |r: &[f64]| r.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        // The exact solution of the perturbed matrix, by its own factorisation.
        assemble(&mut system, 1e-3);
        system.factorize(0.0).expect("factorisation");
        let mut direct = b.clone();
        system
            .solve(&mut direct, Refinement::ToRoundoff)
            .expect("solve");
        for (wobble, max_iter, hits) in [(0.0, 6, true), (1.0, 2, false)] {
            assemble(&mut system, wobble);
            system.factorize(0.0).expect("factorisation");
            assemble(&mut system, 1e-3);
            assert!(system.holds_earlier_factor());
            let mut x = b.clone();
            let (its, reached) = system
                .solve_preconditioned(&mut x, max_iter, 1e-10 * size(&b), size)
                .expect("solve");
            assert_eq!(
                reached <= 1e-10 * size(&b),
                hits,
                "wobble {wobble}: {reached:e} in {its}"
            );
            if hits {
                let diff = x
                    .iter()
                    .zip(&direct)
                    .fold(0.0f64, |m, (a, c)| m.max((a - c).abs()));
                assert!(
                    diff <= 1e-9 * size(&direct),
                    "{diff:e} after {its} iterations"
                );
                // D⁻¹ differs by at most 0.4 %: κ(M⁻¹S) ≤ 1.004/0.996, so conjugate gradients
                // gain a factor ≈ 2·10⁻³ per iteration, 10 decades in 4.
                assert!(its <= 4, "{its} iterations from a factor 0.4 % away");
            }
        }
    }

    /// Our supernodal factorisation (`supernodal_llt_factor`) fills faer's storage with faer's
    /// own factor: the same values to round-off, on the shape of S (a 64² grid in the
    /// minimum-degree order, several matrices: the factor's storage is reused), and it reports
    /// a matrix that is not positive definite instead of factorising it.
    #[test]
    fn own_supernodal_factorisation_agrees_with_faer() {
        let (mesh, mut system, _) = test_system(64);
        for wobble in [0.0, 0.3, 1.0] {
            assemble_test_matrix(&mut system, &mesh, wobble);
            system.factorize(0.0).expect("factorisation");
            let Numeric::Llt(llt) = &mut system.numeric else {
                panic!("Cholesky expected");
            };
            let ordered = llt.ordered.as_ref().expect("the matrix permuted once");
            assert!(
                ordered.own_factorisation,
                "the test needs our factorisation at 64²"
            );
            let ours = llt.factor.clone();
            let a = SparseColMatRef::new(ordered.pattern.as_ref(), &ordered.values);
            llt.symbolic
                .factorize_numeric_llt::<f64>(
                    &mut llt.factor,
                    a,
                    Side::Lower,
                    Default::default(),
                    Par::Seq,
                    MemStack::new(&mut llt.work),
                    Default::default(),
                )
                .expect("faer's factorisation");
            let SymbolicCholeskyRaw::Supernodal(sym) = llt.symbolic.raw() else {
                panic!("a supernodal factor expected");
            };
            // Entries of L: each supernode's block below and on its diagonal (faer's dense
            // Cholesky may leave values above the diagonal, which no solve reads).
            let (begin, end, vp) = (
                sym.supernode_begin(),
                sym.supernode_end(),
                sym.col_ptr_for_val(),
            );
            let (mut size, mut diff) = (0.0f64, 0.0f64);
            for q in 0..sym.n_supernodes() {
                let width = end[q] - begin[q];
                let height = (vp[q + 1] - vp[q]) / width;
                for j in 0..width {
                    for i in j..height {
                        let p = vp[q] + j * height + i;
                        size = size.max(llt.factor[p].abs());
                        diff = diff.max((ours[p] - llt.factor[p]).abs());
                    }
                }
            }
            assert!(
                size > 0.0 && diff <= 1e-13 * size,
                "wobble {wobble}: max |ΔL| {diff:e} of {size:e}"
            );
        }
        // An indefinite matrix: the diagonal shifted below zero in the scaled variables.
        assemble_test_matrix(&mut system, &mesh, 0.0);
        assert!(system.factorize(-2.0).is_err());
    }

    /// The substitution on faer's supernodal storage solves like faer's own supernodal solve
    /// (given the right-hand side in the factor's order): an SPD 13-point matrix on a 48² grid
    /// (the shape of S), factorised supernodally from the once-permuted matrix (`Ordered`); and
    /// the solution solves the scaled system itself (residual at round-off), which checks the
    /// permutation independently of faer.
    #[test]
    fn supernodal_substitution_agrees_with_faer() {
        let (mesh, mut system, b) = test_system(48);
        let n = mesh.n_cells();
        assemble_test_matrix(&mut system, &mesh, 0.0);
        system.factorize(0.0).expect("factorisation");
        let scaled_b: Vec<f64> = b.iter().zip(&system.scale).map(|(v, s)| v * s).collect();
        let Numeric::Llt(llt) = &mut system.numeric else {
            panic!("Cholesky expected");
        };
        assert!(
            matches!(llt.symbolic.raw(), SymbolicCholeskyRaw::Supernodal(_)),
            "the test needs a supernodal factor"
        );
        let ordered = llt.ordered.as_ref().expect("the matrix permuted once");
        let (fwd, inv) = (ordered.fwd.clone(), ordered.inv.clone());
        let mut ours = scaled_b.clone();
        llt.solve_in_place(&mut ours).expect("solve");
        let mut theirs: Vec<f64> = fwd.iter().map(|&i| scaled_b[i]).collect();
        LltRef::<usize, f64>::new(&llt.symbolic, &llt.factor).solve_in_place_with_conj(
            Conj::No,
            MatMut::from_column_major_slice_mut(&mut theirs, n, 1),
            Par::Seq,
            MemStack::new(&mut llt.work),
        );
        let theirs: Vec<f64> = inv.iter().map(|&i| theirs[i]).collect();
        let scale = theirs.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let diff = ours
            .iter()
            .zip(&theirs)
            .fold(0.0f64, |m, (a, c)| m.max((a - c).abs()));
        assert!(
            scale > 0.0 && diff <= 1e-12 * scale,
            "max |Δx| {diff:e} of {scale:e}"
        );
        let (_, berr) = system.residual_scaled(&scaled_b, &ours);
        assert!(berr <= 1e-13, "backward error {berr:e}");
    }
}

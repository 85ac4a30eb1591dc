//! Gibbs kernels ξ_{KL} = exp(−|x_K − x_L|²/ε), with absorbed potentials, applied by GEMM.
//!
//! **Tensor product.** On a Cartesian grid the cost splits over the axes, |x − y|² =
//! Σ_a (x_a − y_a)², so ξ = ξ⁽¹⁾ ⊗ … ⊗ ξ⁽ᵈ⁾ with 1D kernels of size n_a × n_a. A product ξv
//! is d passes, one per axis: viewing v as an array (outer, n_a, inner), each pass multiplies
//! every line along axis a by the n_a × n_a factor — a matrix product, done by an optimised
//! GEMM (`matrixmultiply`): O(N Σ_a w_a) work for N cells and factors of bandwidth w_a ≤ n_a,
//! O(N) memory, never an N×N matrix. A mesh without grid structure is the one-factor case: one
//! dense N×N factor over all cells (refused above a byte limit).
//!
//! **Absorption** (Schmitzer 2019, §3; POT's `sinkhorn_stabilized`). The scalings of
//! Sinkhorn, a = e^{F}, b = e^{G} (F = f/ε and G = g/ε the dual potentials), span far more
//! than floating point when ε is small. Part of the potentials is absorbed into the kernel,
//!   K̃ = diag(e^{F̂}) ξ diag(e^{Ĝ}),   a = e^{F̂} ⊙ ũ,   b = e^{Ĝ} ⊙ ṽ,
//! so that the iteration works on residual scalings ũ, ṽ of moderate size (`crate::scaling`).
//! To keep the tensor structure the absorbed potentials are separable, Ĝ(K) = Σ_a ĝ_a(K_a):
//! `fit_separable` takes the additive fit of the current G (exact in 1D, and whenever the
//! problem separates over the axes, e.g. a Gaussian with diagonal covariance). Each factor's
//! row potential is the 1D c-transform of its column potential,
//!   f̂_a(i) = −max_j (ĝ_a(j) − c_a(i, j)/ε),
//! so that every entry is ≤ 1 and the largest of each row is 1: products never overflow, and
//! F̂ = Σ_a f̂_a is the c-transform of Ĝ for the separable cost.
//!
//! **Truncation.** Entries below e^{−θ} (of their row's largest, 1) are set to exact zeros
//! (never computed as subnormals); each factor keeps, per row, the interval of its nonzero
//! entries. The rows are grouped in tiles of `TILE` (32) outputs, each stored as a dense block over
//! the union of its rows' intervals: one GEMM per tile. A dropped entry of the tensor product
//! has one factor below e^{−θ} and the others ≤ 1, so a product K̃ṽ drops at most
//! δ · max ṽ per unit of ũ, δ = Σ_a n_a e^{−θ} Π_{b≠a} W_b (W_b the widest row of factor b), a
//! bound the iteration checks against its tolerance (`crate::scaling`): truncation is used
//! only where it is exact to it.
//!
//! **Lines.** On a 1D grid a dense band would be streamed from memory at every product (n × w
//! entries, tens of MB at n = 4096). There a tile is stored in Toeplitz-factored form whenever it
//! is representable: K̃(i, j) = a_i ξ_{|i−j|} b_j with a_i = e^{f_i + s}, b_j = e^{g_j − s} (one
//! shift s per tile, centring a near 1) and the 1D table ξ_k = e^{−(kh)²/ε}, so a product reads
//! two short vectors and a table that stay in cache. Representable means that no factor over- or
//! underflows where it matters: the table reaches every kept entry above e^{−700},
//! |f_i + s| ≤ 300 and g_j − s ≤ 400 (with residual scalings within e^{±300} the partial
//! products b_j ṽ_j then stay finite, and a kept entry ≥ e^{−θ} keeps ξ b above e^{−θ−300}).
//! Other tiles (far tails of strongly displaced plans) stay dense.
//! On a grid axis the interval of row i is found without scanning the line: the row maxima
//! M_i = max_j (ĝ(j) − c_ij/ε) have monotone arg-maxima (the cost has increasing differences),
//! found by divide and conquer, and for k > i, j ≥ k, ĝ(j) − c_ij/ε ≤ M_k − c_ik/ε, which stops
//! the scan at the first k where this bound falls below M_i − θ.
//!
//! **Log domain.** [`GibbsKernel::apply_log`] computes ln(ξ e^v) (the plain kernel, nothing
//! absorbed) by the same passes with a log-sum-exp along each line: out_i = m_i + ln Σ_j
//! e^{v_j − c_ij/ε − m_i}, m_i = max_j (v_j − c_ij/ε). Terms with v_j − c_ij/ε − m_i < −50 are
//! skipped (each below 2·10⁻²² of the sum); on a grid axis the scan is limited to
//! c_ij/ε ≤ max v − v_i + 50, beyond which no term can reach the cut. It never under- or
//! overflows, and costs one exponential per term: the fallback where absorption is not exact.
//!
//! **Determinism.** Every output entry is computed by one GEMM (or dot product) call whose
//! shape depends only on the grid, never on the number of threads, and global sums go through
//! fixed-size chunks summed in order (`deterministic_sum`): results are bitwise independent of
//! the thread count.

use jko_core::{InputError, Mesh};
use rayon::prelude::*;

/// Outputs per tile of a factor (one GEMM per tile and group of lines).
pub(crate) const TILE: usize = 32;
/// Lines per task of a pass along the last axis.
const LINES: usize = 64;
/// Stored kernel entries per task of a one-line product.
const LINE_WORK: usize = 1 << 16;
/// A log-sum-exp term below e^{−LSE_CUT} of the largest is dropped (see module docs).
const LSE_CUT: f64 = 50.0;
/// Chunk length of the chunked parallel loops (as jko_core::deterministic_sum's).
const SUM_CHUNK: usize = 4096;

/// Define `fn name(args) -> ret` whose body is compiled twice, for the baseline instruction set
/// and for AVX2 + FMA, the latter chosen at run time when the CPU has them: one implementation,
/// vectorised where the hardware allows. The same operations run in the same order either way
/// (explicit `mul_add` is a fused multiply-add on both; it is only slower without FMA), so
/// results depend on neither the instruction set nor the number of threads.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn imp($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    imp($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has the features `avx2` is compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            imp($($arg),*)
        }
    };
}
pub(crate) use multiversion;

pub(crate) use jko_core::deterministic_sum;

fn check_len(what: &str, expected: usize, found: usize) -> Result<(), InputError> {
    if expected != found {
        return Err(InputError::ShapeMismatch {
            what: format!("Gibbs kernel {what}"),
            expected: expected.to_string(),
            found: found.to_string(),
        });
    }
    Ok(())
}

fn check_epsilon(epsilon: f64) -> Result<(), InputError> {
    if !(epsilon.is_finite() && epsilon > 0.0) {
        return Err(InputError::parameter(
            "epsilon",
            epsilon,
            "must be finite and > 0",
        ));
    }
    Ok(())
}

/// How one tile of a factor is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    /// No nonzero entry.
    Empty,
    /// A dense row-major block (rows × width) at this offset of `data`, zeros outside each
    /// row's interval.
    Dense(usize),
    /// Toeplitz-factored (one line only): K̃(i, j) = a_i ξ_{|i−j|} b_j with a_i = e^{f_i + s},
    /// b_j = e^{g_j − s} (b at this offset of `data`, over the tile's columns) and the table ξ.
    Toeplitz(usize),
}

/// A factor stored as row tiles: tile t holds rows t·size .. (t+1)·size over the columns
/// lo[t] .. lo[t] + width[t], the union of its rows' intervals [row_lo, row_hi).
#[derive(Debug, Clone, Default)]
struct Tiles {
    size: usize,
    lo: Vec<usize>,
    width: Vec<usize>,
    block: Vec<Block>,
    row_lo: Vec<usize>,
    row_hi: Vec<usize>,
    data: Vec<f64>,
    /// Row scales a_i of the Toeplitz tiles.
    a: Vec<f64>,
    /// Mirrored table: table[mid + k] = ξ_{|k|} = e^{−(k h)²/ε} (or c ξ when weighted).
    table: Vec<f64>,
    mid: usize,
}

impl Tiles {
    fn tiles(&self) -> usize {
        self.lo.len()
    }

    fn rows(&self, t: usize, n: usize) -> std::ops::Range<usize> {
        t * self.size..((t + 1) * self.size).min(n)
    }

    /// The same tiles with entry (i, j) multiplied by the cost c(i, j) (the table by (k h)²).
    fn weighted(&self, n: usize, cost: impl Fn(usize, usize) -> f64, h: f64) -> Tiles {
        let mut out = self.clone();
        for t in 0..self.tiles() {
            if let Block::Dense(off) = self.block[t] {
                let w = self.width[t];
                for (r, i) in self.rows(t, n).enumerate() {
                    for k in 0..w {
                        let x = &mut out.data[off + r * w + k];
                        if *x != 0.0 {
                            *x *= cost(i, self.lo[t] + k);
                        }
                    }
                }
            }
        }
        for (k, x) in out.table.iter_mut().enumerate() {
            let d = (k as f64 - self.mid as f64) * h;
            *x *= d * d;
        }
        out
    }

    fn bytes(&self) -> u64 {
        8 * (self.data.len() + self.a.len() + self.table.len() + 5 * self.lo.len()) as u64
    }

    /// Row i of a Toeplitz tile: (table slice, offset of its first column in the tile).
    #[inline]
    fn toeplitz_row(&self, t: usize, i: usize) -> (&[f64], usize) {
        let (lo, hi) = (self.row_lo[i], self.row_hi[i]);
        let start = self.mid + lo - i;
        (&self.table[start..start + (hi - lo)], lo - self.lo[t])
    }

    /// Tiles per parallel task of a one-line product: about `LINE_WORK` stored entries each
    /// (depends on the kernel only, never on the thread count).
    fn tiles_per_task(&self, n: usize) -> usize {
        let entries: usize = (0..n).map(|i| self.row_hi[i] - self.row_lo[i]).sum();
        let per_tile = entries / self.tiles().max(1) + 1;
        (LINE_WORK / per_tile).clamp(1, self.tiles().max(1))
    }

    /// y = A x for one line (groups of tiles in parallel).
    fn apply_line(&self, n: usize, x: &[f64], y: &mut [f64]) {
        let group = self.tiles_per_task(n);
        y.par_chunks_mut(self.size * group)
            .enumerate()
            .for_each(|(c, yc)| {
                for (k, yt) in yc.chunks_mut(self.size).enumerate() {
                    line_tile(self, c * group + k, n, x, yt);
                }
            });
    }

    /// y = Aᵀ x for one line: each tile's contribution (groups of tiles in parallel), added in
    /// tile order.
    fn apply_line_transpose(&self, n: usize, x: &[f64], y: &mut [f64]) {
        let group = self.tiles_per_task(n);
        let parts: Vec<Vec<f64>> = (0..self.tiles().div_ceil(group))
            .into_par_iter()
            .flat_map_iter(|c| {
                (c * group..((c + 1) * group).min(self.tiles()))
                    .map(|t| line_tile_transpose(self, t, n, x))
                    .collect::<Vec<_>>()
            })
            .collect();
        y.fill(0.0);
        for (t, c) in parts.iter().enumerate() {
            let lo = self.lo[t];
            for (yj, cj) in y[lo..lo + c.len()].iter_mut().zip(c) {
                *yj += cj;
            }
        }
    }

    /// Tile t as a dense block: (first row r0, rows, first column lo, width w, the rows × w
    /// row-major block), or `None` when it has no stored entry (Toeplitz tiles exist on
    /// one-line factors only, which never reach the GEMM passes).
    fn dense(&self, t: usize, n: usize) -> Option<(usize, usize, usize, usize, &[f64])> {
        let r0 = t * self.size;
        let rows = self.size.min(n - r0);
        let (lo, w) = (self.lo[t], self.width[t]);
        match self.block[t] {
            Block::Dense(off) => Some((r0, rows, lo, w, &self.data[off..off + rows * w])),
            _ => None,
        }
    }

    /// y = A x along one axis of an array viewed as [outer][n][inner] (A = these tiles).
    fn apply(&self, n: usize, x: &[f64], y: &mut [f64], outer: usize, inner: usize) {
        if inner == 1 && outer == 1 {
            self.apply_line(n, x, y);
        } else if inner == 1 {
            // Lines are contiguous: Y[lines][tile] = X[lines][lo..lo+w] · Bᵀ, per group of lines.
            y.par_chunks_mut(LINES * n)
                .zip(x.par_chunks(LINES * n))
                .for_each(|(yc, xc)| {
                    let lines = yc.len() / n;
                    for t in 0..self.tiles() {
                        let Some((r0, rows, lo, w, b)) = self.dense(t, n) else {
                            let (r0, rows) = (t * self.size, self.size.min(n - t * self.size));
                            for l in 0..lines {
                                yc[l * n + r0..l * n + r0 + rows].fill(0.0);
                            }
                            continue;
                        };
                        // SAFETY: A reads xc[l n + lo + k] (l < lines, k < w), B reads
                        // b[i w + k] (i < rows), C writes yc[l n + r0 + i]: all inside the
                        // slices (lo + w ≤ n, r0 + rows ≤ n, lines · n = len).
                        unsafe {
                            gemm(
                                (lines, w, rows),
                                (xc.as_ptr().add(lo), n, 1),
                                (b.as_ptr(), 1, w),
                                0.0,
                                (yc.as_mut_ptr().add(r0), n, 1),
                            );
                        }
                    }
                });
        } else {
            // Y[o][tile][:] = B · X[o][lo..lo+w][:] for every outer index o and tile.
            y.par_chunks_mut(n * inner)
                .zip(x.par_chunks(n * inner))
                .for_each(|(yo, xo)| {
                    yo.par_chunks_mut(self.size * inner)
                        .enumerate()
                        .for_each(|(t, yb)| {
                            let Some((_, rows, lo, w, b)) = self.dense(t, n) else {
                                yb.fill(0.0);
                                return;
                            };
                            // SAFETY: A reads b[i w + k] (i < rows, k < w), B reads
                            // xo[(lo + k) inner + c] (c < inner, lo + w ≤ n), C writes
                            // yb[i inner + c]: all inside the slices.
                            unsafe {
                                gemm(
                                    (rows, w, inner),
                                    (b.as_ptr(), w, 1),
                                    (xo.as_ptr().add(lo * inner), inner, 1),
                                    0.0,
                                    (yb.as_mut_ptr(), inner, 1),
                                );
                            }
                        });
                });
        }
    }

    /// y = Aᵀ x along one axis of an array viewed as [outer][n][inner]: each tile adds
    /// B_tᵀ x[tile] into its columns, in tile order (a fixed order: deterministic).
    fn apply_transpose(&self, n: usize, x: &[f64], y: &mut [f64], outer: usize, inner: usize) {
        let tiles = self.tiles();
        if inner == 1 && outer == 1 {
            self.apply_line_transpose(n, x, y);
        } else if inner == 1 {
            y.par_chunks_mut(LINES * n)
                .zip(x.par_chunks(LINES * n))
                .for_each(|(yc, xc)| {
                    let lines = yc.len() / n;
                    yc.fill(0.0);
                    for (r0, rows, lo, w, b) in (0..tiles).filter_map(|t| self.dense(t, n)) {
                        // SAFETY: A reads xc[l n + r0 + i] (l < lines, i < rows), B reads
                        // b[i w + k], C updates yc[l n + lo + k] (k < w, lo + w ≤ n).
                        unsafe {
                            gemm(
                                (lines, rows, w),
                                (xc.as_ptr().add(r0), n, 1),
                                (b.as_ptr(), w, 1),
                                1.0,
                                (yc.as_mut_ptr().add(lo), n, 1),
                            );
                        }
                    }
                });
        } else {
            // Tasks own column blocks [c0, c0 + COLS) of Y[o]: disjoint but interleaved in
            // memory, so they write through a shared pointer.
            const COLS: usize = 256;
            let blocks = inner.div_ceil(COLS);
            let out = SharedMut(y.as_mut_ptr());
            (0..outer * blocks).into_par_iter().for_each(|task| {
                let (o, c0) = (task / blocks, (task % blocks) * COLS);
                let cc = COLS.min(inner - c0);
                let base = o * n * inner;
                let out = &out;
                for i in 0..n {
                    // SAFETY: row i of Y[o], columns c0..c0+cc: owned by this task only.
                    unsafe {
                        std::slice::from_raw_parts_mut(out.0.add(base + i * inner + c0), cc)
                            .fill(0.0);
                    }
                }
                for (r0, rows, lo, w, b) in (0..tiles).filter_map(|t| self.dense(t, n)) {
                    // SAFETY: A = Bᵀ reads b[i w + k], B reads x[base + (r0 + i) inner + c0 + c]
                    // (c < cc), C updates Y[o][lo + k][c0 + c]: columns owned by this task.
                    unsafe {
                        gemm(
                            (w, rows, cc),
                            (b.as_ptr(), 1, w),
                            (x.as_ptr().add(base + r0 * inner + c0), inner, 1),
                            1.0,
                            (out.0.add(base + lo * inner + c0), inner, 1),
                        );
                    }
                }
            });
        }
    }
}

/// C ← A·B + β C with `matrixmultiply::dgemm`, for (m, k, n) = `shape`, A m×k, B k×n, C m×n,
/// each given as (pointer, row stride, column stride) in elements.
///
/// # Safety
/// Every element the shapes and strides address must lie inside the allocation behind its
/// pointer, and C must not overlap A or B.
#[inline]
unsafe fn gemm(
    (m, k, n): (usize, usize, usize),
    (a, rsa, csa): (*const f64, usize, usize),
    (b, rsb, csb): (*const f64, usize, usize),
    beta: f64,
    (c, rsc, csc): (*mut f64, usize, usize),
) {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        matrixmultiply::dgemm(
            m,
            k,
            n,
            1.0,
            a,
            rsa as isize,
            csa as isize,
            b,
            rsb as isize,
            csb as isize,
            beta,
            c,
            rsc as isize,
            csc as isize,
        );
    }
}

multiversion! {
/// Rows of tile t of a one-line factor: y = (A x)[tile].
fn line_tile(a: &Tiles, t: usize, n: usize, x: &[f64], yt: &mut [f64]) {
    let (lo, w) = (a.lo[t], a.width[t]);
    match a.block[t] {
        Block::Empty => yt.fill(0.0),
        Block::Dense(off) => {
            for (yi, row) in yt.iter_mut().zip(a.data[off..].chunks_exact(w)) {
                *yi = dot(row, &x[lo..lo + w]);
            }
        }
        Block::Toeplitz(off) => {
            let bx: Vec<f64> = a.data[off..off + w]
                .iter()
                .zip(&x[lo..lo + w])
                .map(|(b, v)| b * v)
                .collect();
            for (yi, i) in yt.iter_mut().zip(a.rows(t, n)) {
                let (tab, k) = a.toeplitz_row(t, i);
                *yi = a.a[i] * dot(tab, &bx[k..k + tab.len()]);
            }
        }
    }
}
}

multiversion! {
/// The contribution of tile t of a one-line factor to Aᵀ x, over the tile's columns.
fn line_tile_transpose(a: &Tiles, t: usize, n: usize, x: &[f64]) -> Vec<f64> {
    let w = a.width[t];
    let mut c = vec![0.0; w];
    match a.block[t] {
        Block::Empty => {}
        Block::Dense(off) => {
            for (i, row) in a.rows(t, n).zip(a.data[off..].chunks_exact(w)) {
                if x[i] != 0.0 {
                    for (ck, bk) in c.iter_mut().zip(row) {
                        *ck = x[i].mul_add(*bk, *ck);
                    }
                }
            }
        }
        Block::Toeplitz(off) => {
            for i in a.rows(t, n) {
                let z = a.a[i] * x[i];
                if z != 0.0 {
                    let (tab, k) = a.toeplitz_row(t, i);
                    for (ck, m) in c[k..k + tab.len()].iter_mut().zip(tab) {
                        *ck = z.mul_add(*m, *ck);
                    }
                }
            }
            for (ck, b) in c.iter_mut().zip(&a.data[off..off + w]) {
                *ck *= b;
            }
        }
    }
    c
}
}

multiversion! {
/// One line of a log-domain pass (see `Factor::lse_line`).
fn lse_worker(fac: &Factor, eps: f64, weighted: bool, x: &[f64], y: &mut [f64], buf: &mut [f64]) {
    fac.lse_line(eps, weighted, x, y, buf)
}
}

/// A pointer to an output array whose parts are written by different tasks, each its own.
struct SharedMut(*mut f64);
// SAFETY: tasks holding it write disjoint entries (see `Tiles::apply_transpose`).
unsafe impl Sync for SharedMut {}

/// Σ a_k b_k in sixteen lanes (fused multiply-adds), fixed order.
#[inline(always)]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0; 16];
    let (ac, bc) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f64 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .fold(0.0, |s, (x, y)| x.mul_add(*y, s));
    for (x, y) in ac.zip(bc) {
        for l in 0..16 {
            acc[l] = x[l].mul_add(y[l], acc[l]);
        }
    }
    for l in 0..8 {
        acc[l] += acc[l + 8];
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail
}

/// One factor of the tensor product: the points of one grid axis (or every cell of a general
/// mesh), the absorbed potentials and the truncated kernel, as row tiles.
#[derive(Debug, Clone)]
struct Factor {
    n: usize,
    dim: usize,
    /// n points of `dim` coordinates.
    points: Vec<f64>,
    /// Spacing of a grid axis (its points increase by h): rows are found by monotone search;
    /// 0 for a general mesh.
    h: f64,
    /// The factor is the whole kernel of a line (1D grid): tiles may be Toeplitz-factored.
    line: bool,
    /// Absorbed row and column potentials (dimensionless, already divided by ε).
    f: Vec<f64>,
    g: Vec<f64>,
    /// Row maxima of g_j − c_ij/ε (= −f_i) and their arg-maxima.
    row_max: Vec<f64>,
    arg: Vec<usize>,
    rows: Tiles,
}

/// Bounds of the Toeplitz-factored form: |f_i + s| ≤ A_RANGE, g_j − s ≤ B_RANGE and the table
/// above e^{−TABLE_RANGE}, so that with residual scalings within e^{±300} no product over- or
/// underflows (entries kept are ≥ e^{−θ}; see `Factor::absorb`).
const A_RANGE: f64 = 300.0;
const B_RANGE: f64 = 400.0;
const TABLE_RANGE: f64 = 700.0;

impl Factor {
    fn new(dim: usize, points: Vec<f64>, h: f64, line: bool) -> Factor {
        let n = points.len() / dim;
        Factor {
            n,
            dim,
            points,
            h,
            line,
            f: vec![0.0; n],
            g: vec![0.0; n],
            row_max: vec![0.0; n],
            arg: (0..n).collect(),
            rows: Tiles::default(),
        }
    }

    fn sorted(&self) -> bool {
        self.h > 0.0
    }

    #[inline]
    fn cost(&self, i: usize, j: usize) -> f64 {
        if self.dim == 1 {
            let t = self.points[i] - self.points[j];
            t * t
        } else {
            let d = self.dim;
            let (a, b) = (
                &self.points[i * d..(i + 1) * d],
                &self.points[j * d..(j + 1) * d],
            );
            a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
        }
    }

    /// Row maxima M_i = max_j (g_j − c_ij/ε) and their arg-maxima.
    fn c_transform(&self, eps: f64, g: &[f64]) -> (Vec<usize>, Vec<f64>) {
        let n = self.n;
        let term = |i: usize, j: usize| g[j] - self.cost(i, j) / eps;
        if self.sorted() {
            monotone_argmax(n, &term)
        } else {
            (0..n)
                .into_par_iter()
                .map(|i| {
                    (0..n).fold((0, f64::NEG_INFINITY), |(b, m), j| {
                        let t = term(i, j);
                        if t > m { (j, t) } else { (b, m) }
                    })
                })
                .unzip()
        }
    }

    /// Absorb a potential (dimensionless; −∞ allowed; the kernel is built by `build`): the
    /// column potential g0 when `from_rows` is false, the row potential f0 when it is true. With h^c(i) =
    /// −max_j (h_j − c_ij/ε) the absorbed pair is (f, g) = (g0^c, g0^{cc}), or
    /// (f0^{cc}, f0^c): in both cases f = g^c and g = f^c, so K̃(i, j) = exp(f_i + g_j − c_ij/ε)
    /// ≤ 1 with largest entry 1 in every row and every column (no row or column is ever
    /// truncated away); the largest entries sit where the given potential is attained (g = g0,
    /// or f = f0).
    fn set_potentials(&mut self, eps: f64, pot: Vec<f64>, from_rows: bool) {
        let transform = |h: &[f64]| -> Vec<f64> {
            let (_, m) = self.c_transform(eps, h);
            m.iter()
                .map(|&m| if m.is_finite() { -m } else { 0.0 })
                .collect()
        };
        let g = if from_rows {
            transform(&pot)
        } else {
            transform(&transform(&pot))
        };
        let (arg, max) = self.c_transform(eps, &g);
        self.f = max
            .iter()
            .map(|&m| if m.is_finite() { -m } else { 0.0 })
            .collect();
        self.g = g;
        self.arg = arg;
        self.row_max = max;
    }

    /// Build the truncated kernel of the absorbed potentials: entries below e^{−θ} dropped.
    fn build(&mut self, eps: f64, theta: f64) {
        let n = self.n;
        let (g, arg, max) = (&self.g, &self.arg, &self.row_max);
        let term = |i: usize, j: usize| g[j] - self.cost(i, j) / eps;
        // On a grid axis term_i(j) = h_j + (2 x_i x_j − x_i²)/ε with h_j = g_j − x_j²/ε: its
        // upper concave envelope bounds every row by a concave function of x_j.
        let hull = if self.sorted() {
            let h: Vec<f64> = (0..n)
                .map(|j| g[j] - self.points[j] * self.points[j] / eps)
                .collect();
            concave_envelope(&self.points, &h)
        } else {
            Vec::new()
        };
        // Interval of each row: the entries with g_j − c_ij/ε ≥ M_i − θ.
        let ranges: Vec<(usize, usize)> = (0..n)
            .into_par_iter()
            .map(|i| {
                let m = max[i];
                if m == f64::NEG_INFINITY {
                    return (0, 0);
                }
                let cut = m - theta;
                if !self.sorted() {
                    let lo = (0..n).position(|j| term(i, j) >= cut).unwrap_or(0);
                    let hi = (0..n)
                        .rposition(|j| term(i, j) >= cut)
                        .map_or(lo, |h| h + 1);
                    return (lo, hi);
                }
                // The concave upper bound of the row is ≥ the cut on an interval around the
                // arg-max (found by bisection); beyond it no entry reaches the cut. Inside, scan
                // inwards from its ends to the outermost entries that do.
                let (x, xi) = (&self.points, self.points[i]);
                let bound = |j: usize| hull[j] + (2.0 * xi * x[j] - xi * xi) / eps;
                let j0 = arg[i];
                let (mut a, mut b) = (j0, n); // bound(a) ≥ cut, b: end or bound < cut
                while b - a > 1 {
                    let m = (a + b) / 2;
                    if bound(m) >= cut { a = m } else { b = m }
                }
                let hi = (j0 + 1..=a)
                    .rev()
                    .find(|&k| term(i, k) >= cut)
                    .map_or(j0 + 1, |k| k + 1);
                let (mut a, mut b) = (j0 as isize, -1isize); // bound(a) ≥ cut
                while a - b > 1 {
                    let m = (a + b) / 2;
                    if bound(m as usize) >= cut {
                        a = m
                    } else {
                        b = m
                    }
                }
                let lo = (a as usize..j0).find(|&k| term(i, k) >= cut).unwrap_or(j0);
                (lo, hi)
            })
            .collect();
        let f = &self.f;
        let size = if n <= TILE + TILE / 2 { n } else { TILE };
        let tiles = n.div_ceil(size);
        let mut t = Tiles {
            size,
            lo: vec![0; tiles],
            width: vec![0; tiles],
            block: vec![Block::Empty; tiles],
            row_lo: ranges.iter().map(|r| r.0).collect(),
            row_hi: ranges.iter().map(|r| r.1).collect(),
            data: Vec::new(),
            a: Vec::new(),
            table: Vec::new(),
            mid: 0,
        };
        // Per tile: the Toeplitz form where it is representable (one line only), else dense.
        let mut span = 0usize;
        let mut shift = vec![0.0; tiles];
        let mut toeplitz = vec![false; tiles];
        for k in 0..tiles {
            let rows = t.rows(k, n);
            let live: Vec<usize> = rows
                .clone()
                .filter(|&i| ranges[i].0 < ranges[i].1)
                .collect();
            if live.is_empty() {
                continue;
            }
            let lo = live.iter().map(|&i| ranges[i].0).min().unwrap_or(0);
            let hi = live.iter().map(|&i| ranges[i].1).max().unwrap_or(0);
            t.lo[k] = lo;
            t.width[k] = hi - lo;
            if self.line && self.sorted() {
                let s = -f[live[live.len() / 2]];
                let d = live
                    .iter()
                    .map(|&i| (i.abs_diff(ranges[i].0)).max(i.abs_diff(ranges[i].1 - 1)))
                    .max()
                    .unwrap_or(0);
                let dx = d as f64 * self.h;
                toeplitz[k] = dx * dx / eps <= TABLE_RANGE
                    && live.iter().all(|&i| (f[i] + s).abs() <= A_RANGE)
                    && g[lo..hi].iter().all(|&x| x - s <= B_RANGE);
                if toeplitz[k] {
                    shift[k] = s;
                    span = span.max(d);
                }
            }
        }
        if toeplitz.iter().any(|&x| x) {
            t.mid = span;
            t.table = (0..2 * span + 1)
                .map(|k| {
                    let d = (k as f64 - span as f64) * self.h;
                    exp(-d * d / eps)
                })
                .collect();
            t.a = vec![0.0; n];
        }
        for k in 0..tiles {
            let (lo, w) = (t.lo[k], t.width[k]);
            if w == 0 {
                continue;
            }
            let off = t.data.len();
            if toeplitz[k] {
                t.block[k] = Block::Toeplitz(off);
                t.data
                    .extend(g[lo..lo + w].iter().map(|&x| exp(x - shift[k])));
                for i in t.rows(k, n) {
                    t.a[i] = exp(f[i] + shift[k]);
                }
            } else {
                t.block[k] = Block::Dense(off);
                let rows = t.rows(k, n);
                t.data.resize(off + rows.len() * w, 0.0);
                for (r, i) in rows.enumerate() {
                    let (a, b) = ranges[i];
                    let row = &mut t.data[off + r * w..off + (r + 1) * w];
                    for j in a..b {
                        let x = term(i, j) + f[i];
                        if x >= -theta {
                            row[j - lo] = exp(x);
                        }
                    }
                }
            }
        }
        self.rows = t;
    }

    /// out_i = ln Σ_j exp(x_j − c_ij/ε) (+ ln c_ij when `weighted`) for one line x.
    #[inline(always)]
    fn lse_line(&self, eps: f64, weighted: bool, x: &[f64], out: &mut [f64], buf: &mut [f64]) {
        let n = self.n;
        let xmax = x.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        for (i, o) in out.iter_mut().enumerate() {
            // No term beyond c_ij/ε = xmax − x_i + cut can reach the cut (the j = i term is x_i).
            let (lo, hi) = if self.sorted() && x[i] > f64::NEG_INFINITY && !weighted {
                let r = (eps * (xmax - x[i] + LSE_CUT)).sqrt();
                let xi = self.points[i];
                (
                    self.points.partition_point(|&p| p < xi - r),
                    self.points.partition_point(|&p| p <= xi + r),
                )
            } else {
                (0, n)
            };
            let t = &mut buf[lo..hi];
            let mut m = f64::NEG_INFINITY;
            for (k, tk) in t.iter_mut().enumerate() {
                let j = lo + k;
                let c = self.cost(i, j);
                *tk = x[j] - c / eps
                    + if weighted {
                        if c > 0.0 { c.ln() } else { f64::NEG_INFINITY }
                    } else {
                        0.0
                    };
                m = if *tk > m { *tk } else { m };
            }
            if m == f64::NEG_INFINITY {
                *o = m;
                continue;
            }
            let s: f64 = t
                .iter()
                .map(|&tk| {
                    let e = exp((tk - m).max(-LSE_CUT - 1.0));
                    if tk - m > -LSE_CUT { e } else { 0.0 }
                })
                .sum();
            *o = m + s.ln();
        }
    }
}

/// Row maxima M_i = max_j term(i, j) and their (smallest) arg-maxima, for a term whose
/// arg-maxima are monotone in i (Monge structure): divide and conquer, O(n log n) terms.
fn monotone_argmax(
    n: usize,
    term: &(impl Fn(usize, usize) -> f64 + Sync),
) -> (Vec<usize>, Vec<f64>) {
    let mut arg = vec![0; n];
    let mut max = vec![f64::NEG_INFINITY; n];
    let mut stack = vec![(0usize, n, 0usize, n.saturating_sub(1))];
    while let Some((ilo, ihi, jlo, jhi)) = stack.pop() {
        if ilo >= ihi {
            continue;
        }
        let i = (ilo + ihi) / 2;
        let (mut b, mut m) = (jlo, f64::NEG_INFINITY);
        for j in jlo..=jhi {
            let t = term(i, j);
            if t > m {
                b = j;
                m = t;
            }
        }
        arg[i] = b;
        max[i] = m;
        stack.push((ilo, i, jlo, b));
        stack.push((i + 1, ihi, b, jhi));
    }
    (arg, max)
}

/// The upper concave envelope of the points (x_j, h_j) (x increasing), evaluated at every x_j;
/// −∞ entries are ignored (and get the envelope's value where it is defined, −∞ outside).
fn concave_envelope(x: &[f64], h: &[f64]) -> Vec<f64> {
    // Monotone chain: keep the vertices of the upper hull.
    let mut hull: Vec<usize> = Vec::new();
    for j in (0..x.len()).filter(|&j| h[j] > f64::NEG_INFINITY) {
        while hull.len() >= 2 {
            let (a, b) = (hull[hull.len() - 2], hull[hull.len() - 1]);
            // b lies on or below the chord a–j: drop it.
            if (h[b] - h[a]) * (x[j] - x[a]) <= (h[j] - h[a]) * (x[b] - x[a]) {
                hull.pop();
            } else {
                break;
            }
        }
        hull.push(j);
    }
    let mut out = vec![f64::NEG_INFINITY; x.len()];
    for w in hull.windows(2) {
        let (a, b) = (w[0], w[1]);
        for j in a..=b {
            let t = (x[j] - x[a]) / (x[b] - x[a]);
            // Round up: the envelope must not fall below h through rounding.
            let v = h[a] + t * (h[b] - h[a]);
            out[j] = v + 1e-12 * (1.0 + v.abs());
        }
    }
    if let [only] = hull[..] {
        out[only] = h[only];
    }
    out
}

/// Which factor tiles a pass uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// K̃ (rows).
    Kernel,
    /// K̃ᵀ.
    Transpose,
}

/// The Gibbs kernel of a mesh: a tensor product of factors over the axes of a (masked) grid,
/// or one dense factor over the cells of a general mesh, with absorbed potentials.
///
/// Vectors are in the kernel's layout of [`GibbsKernel::len`] entries: full grid arrays in C
/// order on a grid (inactive cells included: give them 0), cell arrays otherwise. The kernel
/// applies K̃ = diag(e^{F̂}) ξ diag(e^{Ĝ}) with separable absorbed potentials (see the module
/// docs); a new kernel has Ĝ = 0, hence F̂ = 0 (the c-transform of 0: the diagonal cost is 0),
/// so it applies ξ itself, entries below e^{−θ} dropped.
///
/// ```rust
/// use jko_core::Mesh;
/// use jko_sinkhorn::GibbsKernel;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // 2 × 2 grid of unit cells: ξ(K, L) = e^{−|x_K − x_L|²/ε}, so ξ1 = 1 + 2e^{−1/ε} + e^{−2/ε}
/// // in every cell.
/// let mesh = Mesh::grid(&[2, 2], &[0.0, 0.0], &[2.0, 2.0])?;
/// let kernel = GibbsKernel::new(&mesh, 0.5)?;
/// let (mut out, mut work) = (vec![0.0; 4], vec![0.0; 4]);
/// kernel.apply(&[1.0; 4], &mut out, &mut work)?;
/// let xi1 = 1.0 + 2.0 * (-2.0f64).exp() + (-4.0f64).exp();
/// assert!(out.iter().all(|v| (v - xi1).abs() < 1e-15));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct GibbsKernel {
    shape: Vec<usize>,
    factors: Vec<Factor>,
    epsilon: f64,
    theta: f64,
}

/// Default truncation level of a new kernel (entries below e^{−θ} of their row's largest).
const DEFAULT_THETA: f64 = 80.0;

impl GibbsKernel {
    /// The tensor-product kernel of a grid mesh (masked grids included) at regularisation ε.
    ///
    /// # Errors
    /// [`InputError::InvalidMesh`] on a mesh without grid structure,
    /// [`InputError::InvalidParameter`] unless ε is finite and > 0.
    ///
    /// ```rust
    /// use jko_core::{InputError, Mesh};
    /// use jko_sinkhorn::GibbsKernel;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[4, 3], &[0.0, 0.0], &[1.0, 1.0])?;
    /// assert_eq!(GibbsKernel::new(&mesh, 0.01)?.len(), 12);
    /// assert!(matches!(GibbsKernel::new(&mesh, -1.0), Err(InputError::InvalidParameter { .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(mesh: &Mesh, epsilon: f64) -> Result<Self, InputError> {
        check_epsilon(epsilon)?;
        let grid = mesh.as_grid().ok_or_else(|| {
            InputError::InvalidMesh(
                "the tensor-product Gibbs kernel needs a Cartesian grid; use GibbsKernel::dense"
                    .into(),
            )
        })?;
        let factors = grid
            .cells
            .iter()
            .enumerate()
            .map(|(a, &n)| {
                let x = (0..n).map(|i| grid.coordinate(a, i)).collect();
                Factor::new(1, x, grid.spacing()[a], grid.cells.len() == 1)
            })
            .collect();
        let mut k = GibbsKernel {
            shape: grid.cells.clone(),
            factors,
            epsilon,
            theta: DEFAULT_THETA,
        };
        k.reset();
        Ok(k)
    }

    /// The kernel as one dense N×N factor over the cells of any mesh (vectors have one entry
    /// per cell), refused above `limit_bytes` ([`GibbsKernel::dense_bytes`]).
    ///
    /// # Errors
    /// [`InputError::TooLarge`] with the bytes it would need, [`InputError::InvalidParameter`]
    /// unless ε is finite and > 0.
    ///
    /// ```rust
    /// use jko_core::{InputError, Mesh};
    /// use jko_sinkhorn::GibbsKernel;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[3, 2], &[0.0, 0.0], &[1.0, 1.0])?;
    /// let (dense, tensor) = (GibbsKernel::dense(&mesh, 0.1, 1 << 20)?, GibbsKernel::new(&mesh, 0.1)?);
    /// let v = [1.0, 2.0, 0.5, 0.0, 3.0, 1.0];
    /// let (mut a, mut b, mut w) = (vec![0.0; 6], vec![0.0; 6], vec![0.0; 6]);
    /// dense.apply(&v, &mut a, &mut w)?;
    /// tensor.apply(&v, &mut b, &mut w)?;
    /// assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-14));
    /// let big = Mesh::grid(&[100, 100], &[0.0; 2], &[1.0; 2])?;
    /// assert!(matches!(GibbsKernel::dense(&big, 0.1, 1 << 20), Err(InputError::TooLarge { .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub fn dense(mesh: &Mesh, epsilon: f64, limit_bytes: u64) -> Result<Self, InputError> {
        check_epsilon(epsilon)?;
        let n = mesh.n_cells();
        let bytes = Self::dense_bytes(n);
        if bytes > limit_bytes {
            return Err(InputError::TooLarge {
                what: format!(
                    "a dense Gibbs kernel on {n} cells (use a grid for the tensor-product kernel, \
                     or raise solver.dense_limit_bytes)"
                ),
                bytes,
                limit: limit_bytes,
            });
        }
        let dim = mesh.dim();
        let points = (0..n).flat_map(|k| mesh.centre(k).to_vec()).collect();
        let mut k = GibbsKernel {
            shape: vec![n],
            factors: vec![Factor::new(dim, points, 0.0, false)],
            epsilon,
            theta: DEFAULT_THETA,
        };
        k.reset();
        Ok(k)
    }

    /// Bytes a dense kernel on `n_cells` cells needs: the N×N matrix.
    ///
    /// ```rust
    /// use jko_sinkhorn::GibbsKernel;
    ///
    /// assert_eq!(GibbsKernel::dense_bytes(1000), 8_000_000);
    /// ```
    pub fn dense_bytes(n_cells: usize) -> u64 {
        (n_cells as u64)
            .saturating_mul(n_cells as u64)
            .saturating_mul(8)
    }

    /// Length of the vectors the kernel acts on (the full grid, masked cells included).
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use jko_sinkhorn::GibbsKernel;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::masked_grid(&[3, 3], &[0.0; 2], &[1.0; 2], Some(vec![true, false, true, true, true, true, true, true, true]))?;
    /// assert_eq!(GibbsKernel::new(&mesh, 0.1)?.len(), 9);
    /// # Ok(())
    /// # }
    /// ```
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the kernel acts on empty vectors (never, for a kernel built from a mesh).
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use jko_sinkhorn::GibbsKernel;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// assert!(!GibbsKernel::new(&Mesh::grid(&[2], &[0.0], &[1.0])?, 0.1)?.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The regularisation ε (units of the cost |x − y|², length²).
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use jko_sinkhorn::GibbsKernel;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// assert_eq!(GibbsKernel::new(&Mesh::grid(&[2], &[0.0], &[1.0])?, 0.25)?.epsilon(), 0.25);
    /// # Ok(())
    /// # }
    /// ```
    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }

    /// Set ε and drop the absorbed potentials (Ĝ = 0: K̃ = ξ).
    ///
    /// # Errors
    /// [`InputError::InvalidParameter`] unless ε is finite and > 0 (the kernel is unchanged).
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use jko_sinkhorn::GibbsKernel;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Two cells of [0, 1]: centres 1/4 and 3/4, cost c₀₁ = 1/4.
    /// let mut kernel = GibbsKernel::new(&Mesh::grid(&[2], &[0.0], &[1.0])?, 0.25)?;
    /// kernel.set_epsilon(0.125)?;
    /// let (mut out, mut work) = (vec![0.0; 2], vec![0.0; 2]);
    /// kernel.apply(&[0.0, 1.0], &mut out, &mut work)?;
    /// // ξ₀₁ at ε = 1/8: e^{−2}.
    /// assert!((out[0] - (-2.0f64).exp()).abs() < 1e-15);
    /// assert!(kernel.set_epsilon(0.0).is_err());
    /// assert_eq!(kernel.epsilon(), 0.125);
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_epsilon(&mut self, epsilon: f64) -> Result<(), InputError> {
        check_epsilon(epsilon)?;
        self.epsilon = epsilon;
        self.reset();
        Ok(())
    }

    fn reset(&mut self) {
        let eps = self.epsilon;
        for f in &mut self.factors {
            let n = f.n;
            f.set_potentials(eps, vec![0.0; n], false);
        }
        self.truncate(self.theta);
    }

    /// Absorb separable potentials (one vector per factor, dimensionless, −∞ allowed): column
    /// potentials Ĝ = ⊕ pot[a] (`from_rows` false) or row potentials F̂ = ⊕ pot[a], completed to
    /// a c-conjugate pair factor by factor (see `Factor::set_potentials`). The kernel must then
    /// be built by [`GibbsKernel::truncate`].
    pub(crate) fn absorb(&mut self, pot: Vec<Vec<f64>>, from_rows: bool) {
        let eps = self.epsilon;
        for (f, pa) in self.factors.iter_mut().zip(pot) {
            f.set_potentials(eps, pa, from_rows);
        }
    }

    /// Build the kernel of the absorbed potentials with truncation level θ (entries below
    /// e^{−θ} dropped).
    pub(crate) fn truncate(&mut self, theta: f64) {
        self.theta = theta;
        let eps = self.epsilon;
        for f in &mut self.factors {
            f.build(eps, theta);
        }
    }

    /// Upper bound e^{−θ} on a dropped entry of K̃: it has a factor below e^{−θ}, the others
    /// ≤ 1. A product K̃v then drops at most e^{−θ} Σ_j v_j from each entry.
    pub(crate) fn truncation(&self) -> f64 {
        (-self.theta).exp()
    }

    /// The absorbed potentials on the full layout: F̂ = Σ_a f̂_a, Ĝ = Σ_a ĝ_a.
    pub(crate) fn absorbed(&self, fhat: &mut [f64], ghat: &mut [f64]) {
        let shape = &self.shape;
        fhat.par_chunks_mut(SUM_CHUNK)
            .zip(ghat.par_chunks_mut(SUM_CHUNK))
            .enumerate()
            .for_each(|(c, (fc, gc))| {
                for (k, (fk, gk)) in fc.iter_mut().zip(gc.iter_mut()).enumerate() {
                    let mut rest = c * SUM_CHUNK + k;
                    let (mut fs, mut gs) = (0.0, 0.0);
                    for a in (0..shape.len()).rev() {
                        let i = rest % shape[a];
                        rest /= shape[a];
                        fs += self.factors[a].f[i];
                        gs += self.factors[a].g[i];
                    }
                    *fk = fs;
                    *gk = gs;
                }
            });
    }

    fn check(&self, v: &[f64], out: &[f64], work: &[f64]) -> Result<(), InputError> {
        let n = self.len();
        check_len("input", n, v.len())?;
        check_len("output", n, out.len())?;
        check_len("work buffer", n, work.len())
    }

    /// One pass per axis, the last axis first, each reading the previous pass's result (`v` for
    /// the first) and writing through `out`/`work` so that the last pass lands in `out`.
    /// `pass(axis, src, dst, outer, inner)` sees the arrays as [outer][n_axis][inner].
    fn sweep(
        &self,
        v: &[f64],
        out: &mut [f64],
        work: &mut [f64],
        mut pass: impl FnMut(usize, &[f64], &mut [f64], usize, usize),
    ) {
        let d = self.shape.len();
        let mut src_is_input = true;
        let mut dst_is_out = d % 2 == 1;
        for a in (0..d).rev() {
            let outer: usize = self.shape[..a].iter().product();
            let inner: usize = self.shape[a + 1..].iter().product();
            let (src, dst): (&[f64], &mut [f64]) = match (src_is_input, dst_is_out) {
                (true, true) => (v, &mut *out),
                (true, false) => (v, &mut *work),
                (false, true) => (&*work, &mut *out),
                (false, false) => (&*out, &mut *work),
            };
            pass(a, src, dst, outer, inner);
            src_is_input = false;
            dst_is_out = !dst_is_out;
        }
    }

    /// Plain passes of K̃ (or K̃ᵀ), with factor `weighted.0` replaced by the tiles `weighted.1`.
    fn passes(
        &self,
        side: Side,
        weighted: Option<(usize, &Tiles)>,
        v: &[f64],
        out: &mut [f64],
        work: &mut [f64],
    ) {
        self.sweep(v, out, work, |a, src, dst, outer, inner| {
            let tiles = match weighted {
                Some((w, t)) if w == a => t,
                _ => &self.factors[a].rows,
            };
            let n = self.shape[a];
            match side {
                Side::Kernel => tiles.apply(n, src, dst, outer, inner),
                Side::Transpose => tiles.apply_transpose(n, src, dst, outer, inner),
            }
        });
    }

    /// out = K̃ v (`work`: scratch of the same length).
    ///
    /// # Errors
    /// [`InputError::ShapeMismatch`] when a slice does not have [`GibbsKernel::len`] entries.
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use jko_sinkhorn::GibbsKernel;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Three cells 1 apart at ε = 1: ξ e₁ = (e^{−1}, 1, e^{−1}).
    /// let kernel = GibbsKernel::new(&Mesh::grid(&[3], &[0.0], &[3.0])?, 1.0)?;
    /// let (mut out, mut work) = (vec![0.0; 3], vec![0.0; 3]);
    /// kernel.apply(&[0.0, 1.0, 0.0], &mut out, &mut work)?;
    /// let e1 = (-1.0f64).exp();
    /// assert!((out[0] - e1).abs() < 1e-15 && out[1] == 1.0 && (out[2] - e1).abs() < 1e-15);
    /// assert!(kernel.apply(&[1.0], &mut out, &mut work).is_err()); // wrong length
    /// # Ok(())
    /// # }
    /// ```
    pub fn apply(&self, v: &[f64], out: &mut [f64], work: &mut [f64]) -> Result<(), InputError> {
        self.check(v, out, work)?;
        self.passes(Side::Kernel, None, v, out, work);
        Ok(())
    }

    /// out = K̃ᵀ u (`work`: scratch of the same length).
    ///
    /// # Errors
    /// [`InputError::ShapeMismatch`] when a slice does not have [`GibbsKernel::len`] entries.
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use jko_sinkhorn::GibbsKernel;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // ⟨u, K̃v⟩ = ⟨K̃ᵀu, v⟩.
    /// let kernel = GibbsKernel::new(&Mesh::grid(&[3, 2], &[0.0; 2], &[1.0; 2])?, 0.3)?;
    /// let (u, v) = ([1.0, 0.5, 2.0, 0.0, 1.5, 3.0], [0.2, 1.0, 0.0, 4.0, 1.0, 0.5]);
    /// let (mut kv, mut ku, mut w) = (vec![0.0; 6], vec![0.0; 6], vec![0.0; 6]);
    /// kernel.apply(&v, &mut kv, &mut w)?;
    /// kernel.apply_transpose(&u, &mut ku, &mut w)?;
    /// let (a, b): (f64, f64) = (u.iter().zip(&kv).map(|(x, y)| x * y).sum(), ku.iter().zip(&v).map(|(x, y)| x * y).sum());
    /// assert!((a - b).abs() < 1e-14);
    /// # Ok(())
    /// # }
    /// ```
    pub fn apply_transpose(
        &self,
        u: &[f64],
        out: &mut [f64],
        work: &mut [f64],
    ) -> Result<(), InputError> {
        self.check(u, out, work)?;
        self.passes(Side::Transpose, None, u, out, work);
        Ok(())
    }

    /// out = ln(ξ e^{lv}) with the plain kernel ξ (nothing absorbed; entries −∞ allowed), by
    /// log-sum-exp: no underflow for any ε.
    ///
    /// # Errors
    /// [`InputError::ShapeMismatch`] when a slice does not have [`GibbsKernel::len`] entries.
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use jko_sinkhorn::GibbsKernel;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // ε = 10⁻⁴ and cells 0.1 apart: ξ underflows beyond 3 cells, its logarithm does not.
    /// let kernel = GibbsKernel::new(&Mesh::grid(&[100], &[-5.0], &[5.0])?, 1e-4)?;
    /// let mut lv = vec![f64::NEG_INFINITY; 100];
    /// lv[80] = 0.0;
    /// let (mut out, mut work) = (vec![0.0; 100], vec![0.0; 100]);
    /// kernel.apply_log(&lv, &mut out, &mut work)?;
    /// // ln ξ(20, 80) = −(6.0)²/ε
    /// assert!((out[20] + 36.0 / 1e-4).abs() < 1e-6);
    /// # Ok(())
    /// # }
    /// ```
    pub fn apply_log(
        &self,
        lv: &[f64],
        out: &mut [f64],
        work: &mut [f64],
    ) -> Result<(), InputError> {
        self.check(lv, out, work)?;
        self.passes_log(None, lv, out, work);
        Ok(())
    }

    /// Log-domain passes, factor `weighted` with the cost-weighted kernel c ξ.
    fn passes_log(&self, weighted: Option<usize>, v: &[f64], out: &mut [f64], work: &mut [f64]) {
        let eps = self.epsilon;
        self.sweep(v, out, work, |a, src, dst, _outer, inner| {
            let n = self.shape[a];
            let fac = &self.factors[a];
            let w = weighted == Some(a);
            if inner == 1 {
                dst.par_chunks_mut(n).zip(src.par_chunks(n)).for_each_init(
                    || vec![0.0; n],
                    |buf, (y, x)| lse_worker(fac, eps, w, x, y, buf),
                );
            } else {
                // Gather strided lines into [outer][inner][n], transform, scatter back.
                let mut lines = vec![0.0; src.len()];
                lines.par_chunks_mut(n).enumerate().for_each_init(
                    || (vec![0.0; n], vec![0.0; n]),
                    |(x, buf), (l, y)| {
                        let (o, c) = (l / inner, l % inner);
                        for (j, xj) in x.iter_mut().enumerate() {
                            *xj = src[(o * n + j) * inner + c];
                        }
                        lse_worker(fac, eps, w, x, y, buf);
                    },
                );
                dst.par_chunks_mut(inner).enumerate().for_each(|(r, y)| {
                    let (o, i) = (r / n, r % n);
                    for (c, yc) in y.iter_mut().enumerate() {
                        *yc = lines[(o * inner + c) * n + i];
                    }
                });
            }
        });
    }

    /// ⟨c, π⟩ = Σ_{K,L} u_K K̃_{KL} c_{KL} v_L, the transport cost of the plan
    /// π = diag(u) K̃ diag(v) (c = Σ_a c⁽ᵃ⁾: one product per axis with that factor weighted).
    ///
    /// # Errors
    /// [`InputError::ShapeMismatch`] when a slice does not have [`GibbsKernel::len`] entries.
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use jko_sinkhorn::GibbsKernel;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Two cells 1/2 apart, ε = 1/4: only the two off-diagonal entries cost c₀₁ = 1/4.
    /// let kernel = GibbsKernel::new(&Mesh::grid(&[2], &[0.0], &[1.0])?, 0.25)?;
    /// let cost = kernel.transport_cost(&[1.0, 1.0], &[1.0, 1.0])?;
    /// assert!((cost - 0.5 * (-1.0f64).exp()).abs() < 1e-15);
    /// # Ok(())
    /// # }
    /// ```
    pub fn transport_cost(&self, u: &[f64], v: &[f64]) -> Result<f64, InputError> {
        let n = self.len();
        check_len("scaling u", n, u.len())?;
        check_len("scaling v", n, v.len())?;
        let (mut out, mut work) = (vec![0.0; n], vec![0.0; n]);
        let mut total = 0.0;
        for (a, fac) in self.factors.iter().enumerate() {
            let w = fac.rows.weighted(fac.n, |i, j| fac.cost(i, j), fac.h);
            self.passes(Side::Kernel, Some((a, &w)), v, &mut out, &mut work);
            total += deterministic_sum(n, |k| if u[k] == 0.0 { 0.0 } else { u[k] * out[k] });
        }
        Ok(total)
    }

    /// Σ_{K,L} c_{KL} exp(la_K − c_{KL}/ε + lb_L): the transport cost of the plan with the
    /// plain kernel and log-scalings (nothing absorbed).
    ///
    /// # Errors
    /// [`InputError::ShapeMismatch`] when a slice does not have [`GibbsKernel::len`] entries.
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use jko_sinkhorn::GibbsKernel;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Two cells 1/2 apart, ε = 1/4: Σ c ξ a b = 2 · (1/4) e^{−1} for a = b = 1.
    /// let kernel = GibbsKernel::new(&Mesh::grid(&[2], &[0.0], &[1.0])?, 0.25)?;
    /// let cost = kernel.transport_cost_log(&[0.0, 0.0], &[0.0, 0.0])?;
    /// assert!((cost - 0.5 * (-1.0f64).exp()).abs() < 1e-15);
    /// # Ok(())
    /// # }
    /// ```
    pub fn transport_cost_log(&self, la: &[f64], lb: &[f64]) -> Result<f64, InputError> {
        let n = self.len();
        check_len("log-scaling a", n, la.len())?;
        check_len("log-scaling b", n, lb.len())?;
        let (mut out, mut work) = (vec![0.0; n], vec![0.0; n]);
        let mut total = 0.0;
        for a in 0..self.factors.len() {
            self.passes_log(Some(a), lb, &mut out, &mut work);
            total += deterministic_sum(n, |k| {
                let e = la[k] + out[k];
                if e == f64::NEG_INFINITY { 0.0 } else { e.exp() }
            });
        }
        Ok(total)
    }

    /// Bytes of kernel storage (not counting the vectors): the tiles of every factor.
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use jko_sinkhorn::GibbsKernel;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // 4000 cells at ε = 10⁻⁵ on [0, 1]: a narrow band, far below the 8 · 4000² bytes of ξ.
    /// let kernel = GibbsKernel::new(&Mesh::grid(&[4000], &[0.0], &[1.0])?, 1e-5)?;
    /// assert!(kernel.storage_bytes() > 0 && kernel.storage_bytes() < 8 * 4000 * 4000 / 10);
    /// # Ok(())
    /// # }
    /// ```
    pub fn storage_bytes(&self) -> u64 {
        self.factors.iter().map(|f| f.rows.bytes()).sum()
    }

    /// Average number of stored entries per row, per factor (the bandwidths w_a).
    pub(crate) fn bandwidths(&self) -> Vec<f64> {
        self.factors
            .iter()
            .map(|f| {
                (0..f.n)
                    .map(|i| (f.rows.row_hi[i] - f.rows.row_lo[i]) as f64)
                    .sum::<f64>()
                    / f.n as f64
            })
            .collect()
    }
}

/// The additive (separable) fit Ĝ(K) = Σ_a ĝ_a(K_a) of a potential G on a grid of `shape`,
/// least squares over the cells with `weight` true, by backfitting (three sweeps; exact when G
/// is separable). In one dimension ĝ = G wherever G is finite. Indices without a weighted cell
/// get −∞ (absorption replaces ĝ by its double c-transform, finite everywhere: any potentials
/// are valid, the fit only keeps the residual scalings small).
pub(crate) fn fit_separable(shape: &[usize], g: &[f64], weight: &[bool]) -> Vec<Vec<f64>> {
    let d = shape.len();
    if d == 1 {
        let out: Vec<f64> = g
            .iter()
            .zip(weight)
            .map(|(&x, &w)| {
                if w && x.is_finite() {
                    x
                } else {
                    f64::NEG_INFINITY
                }
            })
            .collect();
        return vec![out];
    }
    let mut fit: Vec<Vec<f64>> = shape.iter().map(|&n| vec![0.0; n]).collect();
    let strides: Vec<usize> = (0..d).map(|a| shape[a + 1..].iter().product()).collect();
    let index = |k: usize, a: usize| (k / strides[a]) % shape[a];
    let mut missing: Vec<Vec<bool>> = shape.iter().map(|&n| vec![false; n]).collect();
    for _ in 0..3 {
        for a in 0..d {
            let n = shape[a];
            // Sums over the hyperplanes K_a = i, in fixed chunks (deterministic).
            let parts: Vec<(Vec<f64>, Vec<f64>)> = (0..g.len().div_ceil(SUM_CHUNK))
                .into_par_iter()
                .map(|c| {
                    let (mut num, mut den) = (vec![0.0; n], vec![0.0; n]);
                    for k in c * SUM_CHUNK..((c + 1) * SUM_CHUNK).min(g.len()) {
                        if weight[k] && g[k].is_finite() {
                            let rest: f64 = (0..d)
                                .filter(|&b| b != a)
                                .map(|b| fit[b][index(k, b)])
                                .sum();
                            let i = index(k, a);
                            num[i] += g[k] - rest;
                            den[i] += 1.0;
                        }
                    }
                    (num, den)
                })
                .collect();
            let mut num = vec![0.0; n];
            let mut den = vec![0.0; n];
            for (pn, pd) in &parts {
                for i in 0..n {
                    num[i] += pn[i];
                    den[i] += pd[i];
                }
            }
            // Missing hyperplanes: 0 while fitting the other axes, −∞ in the result.
            fit[a] = (0..n)
                .map(|i| if den[i] > 0.0 { num[i] / den[i] } else { 0.0 })
                .collect();
            missing[a] = (0..n).map(|i| den[i] == 0.0).collect();
        }
    }
    for (f, m) in fit.iter_mut().zip(&missing) {
        for (x, &gone) in f.iter_mut().zip(m) {
            if gone {
                *x = f64::NEG_INFINITY;
            }
        }
    }
    fit
}

/// e^x, branch-free so that loops over it vectorise: x = k ln 2 + r with k = round(x/ln 2)
/// (by the 1.5·2⁵² trick, which also leaves k in the low bits), |r| ≤ ln2/2 (Cody–Waite split
/// of ln 2), e^r by its Taylor polynomial of degree 12 (truncation ≤ 0.35¹³/13! ≈ 2·10⁻¹⁶),
/// times 2^k built from its bits. Within a few ulp of `f64::exp` on [−708, 709]; 0 below (where
/// e^x is subnormal: flushed, never computed), +∞ above, NaN for NaN.
#[inline(always)]
pub(crate) fn exp(x: f64) -> f64 {
    const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5 · 2^52
    // ln 2 = LN2_HI + LN2_LO, LN2_HI with 32 trailing zero bits so that k·LN2_HI is exact
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    const C: [f64; 13] = [
        1.0,
        1.0,
        1.0 / 2.0,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5040.0,
        1.0 / 40320.0,
        1.0 / 362_880.0,
        1.0 / 3_628_800.0,
        1.0 / 39_916_800.0,
        1.0 / 479_001_600.0,
    ];
    let xc = x.clamp(-708.0, 709.0);
    let y = xc * std::f64::consts::LOG2_E + MAGIC;
    let k = y - MAGIC;
    let r = (xc - k * LN2_HI) - k * LN2_LO;
    let kbits = y.to_bits().wrapping_sub(MAGIC.to_bits());
    let scale = f64::from_bits(kbits.wrapping_add(1023) << 52);
    let mut p = C[12];
    for c in C[..12].iter().rev() {
        p = p * r + c;
    }
    let e = p * scale;
    if x < -708.0 {
        0.0
    } else if x > 709.0 {
        f64::INFINITY
    } else if x.is_nan() {
        x
    } else {
        e
    }
}

/// ln x, branch-free so that loops over it vectorise: x = 2^k m with m ∈ [√½, √2) (from the
/// bits; subnormal x scaled by 2⁵² first), ln m = 2 atanh s = 2 Σ s^{2j+1}/(2j + 1) with
/// s = (m − 1)/(m + 1), |s| ≤ 0.172 (12 terms: truncation below 10⁻¹⁸), plus k ln 2 (split so
/// that k·LN2_HI is exact). Within a few ulp of `f64::ln`; −∞ at 0, NaN below 0, +∞ at +∞.
#[inline(always)]
pub(crate) fn ln(x: f64) -> f64 {
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    let sub = x < f64::MIN_POSITIVE;
    let xs = if sub { x * 4_503_599_627_370_496.0 } else { x }; // 2^52
    let bits = xs.to_bits();
    let mut k = ((bits >> 52) & 0x7ff) as i64 - 1023 - if sub { 52 } else { 0 };
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    let big = m > std::f64::consts::SQRT_2;
    m = if big { 0.5 * m } else { m };
    k += big as i64;
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut p = 1.0 / 23.0;
    for j in (0..11).rev() {
        p = p * s2 + 1.0 / (2 * j + 1) as f64;
    }
    // k as f64 through the bits (|k| < 2⁵¹): vectorises where an integer conversion would not.
    const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5 · 2^52
    let kf = f64::from_bits(MAGIC.to_bits().wrapping_add(k as u64)) - MAGIC;
    let r = kf * LN2_HI + (2.0 * s * p + kf * LN2_LO);
    if x > 0.0 && x < f64::INFINITY {
        r
    } else if x == 0.0 {
        f64::NEG_INFINITY
    } else if x == f64::INFINITY {
        x
    } else {
        f64::NAN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand_vec(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 11) as f64) / ((1u64 << 53) as f64)
            })
            .collect()
    }

    /// Cost between two cells of a grid (full layout indices) or of a general mesh.
    fn cost(mesh: &Mesh, k: usize, l: usize) -> f64 {
        mesh.centre(k)
            .iter()
            .zip(mesh.centre(l))
            .map(|(a, b)| (a - b) * (a - b))
            .sum()
    }

    fn meshes() -> Vec<Mesh> {
        vec![
            Mesh::grid(&[13], &[-1.0], &[2.0]).unwrap(),
            Mesh::grid(&[100], &[0.0], &[1.0]).unwrap(),
            Mesh::grid(&[9, 6], &[0.0, -1.0], &[1.0, 1.0]).unwrap(),
            Mesh::grid(&[5, 4, 7], &[0.0; 3], &[1.0, 0.8, 1.4]).unwrap(),
            // several tiles per axis, and their ragged ends
            Mesh::grid(&[70, 37], &[0.0, -1.0], &[1.0, 1.0]).unwrap(),
            Mesh::grid(&[6, 40, 9], &[0.0; 3], &[1.0, 0.7, 1.2]).unwrap(),
            Mesh::masked_grid(
                &[8, 7],
                &[0.0; 2],
                &[1.0; 2],
                Some((0..56).map(|i| i % 5 != 2).collect()),
            )
            .unwrap(),
        ]
    }

    /// Random separable absorbed potentials: smooth slopes plus noise, per axis.
    fn absorb_random(k: &mut GibbsKernel, seed: u64) {
        let g: Vec<Vec<f64>> = k
            .shape
            .iter()
            .enumerate()
            .map(|(a, &n)| {
                let r = rand_vec(n, seed + a as u64);
                (0..n)
                    .map(|i| 3.0 * (i as f64 / n as f64) + 2.0 * r[i] - 1.0)
                    .collect()
            })
            .collect();
        k.absorb(g, false);
        k.truncate(60.0);
    }

    /// K̃v, K̃ᵀu and the transport cost against direct double sums over the cells, with and
    /// without absorbed potentials, the tensor kernel against the dense one; rows of K̃ sum to 1.
    #[test]
    fn products_match_direct_sums() {
        for mesh in &meshes() {
            let idx = mesh.grid_index().to_vec();
            let n_cells = mesh.n_cells();
            for &eps in &[0.5, 0.05, 0.002] {
                for absorbed in [false, true] {
                    let mut tk = GibbsKernel::new(mesh, eps).unwrap();
                    if absorbed {
                        absorb_random(&mut tk, 5);
                    }
                    let len = tk.len();
                    let (mut fhat, mut ghat) = (vec![0.0; len], vec![0.0; len]);
                    tk.absorbed(&mut fhat, &mut ghat);
                    let entry = |k: usize, l: usize| {
                        (fhat[idx[k]] + ghat[idx[l]] - cost(mesh, k, l) / eps).exp()
                    };
                    let (uc, vc) = (rand_vec(n_cells, 7), rand_vec(n_cells, 11));
                    let (mut u, mut v) = (vec![0.0; len], vec![0.0; len]);
                    for (k, &w) in idx.iter().enumerate() {
                        u[w] = uc[k];
                        v[w] = vc[k];
                    }
                    let (mut kv, mut ku, mut work) =
                        (vec![0.0; len], vec![0.0; len], vec![0.0; len]);
                    tk.apply(&v, &mut kv, &mut work).unwrap();
                    tk.apply_transpose(&u, &mut ku, &mut work).unwrap();
                    let mut direct_cost = 0.0;
                    for k in 0..n_cells {
                        let (mut dv, mut du) = (0.0, 0.0);
                        for l in 0..n_cells {
                            dv += entry(k, l) * vc[l];
                            du += entry(l, k) * uc[l];
                            direct_cost += uc[k] * entry(k, l) * cost(mesh, k, l) * vc[l];
                        }
                        let (a, b) = (kv[idx[k]], ku[idx[k]]);
                        assert!(
                            (a - dv).abs() <= 1e-12 * dv.abs().max(1e-300),
                            "K v: {a} vs {dv} (eps {eps})"
                        );
                        assert!(
                            (b - du).abs() <= 1e-12 * du.abs().max(1e-300),
                            "K^T u: {b} vs {du} (eps {eps})"
                        );
                    }
                    // the largest entry of every row is 1 (unmasked grids: every cell is a row)
                    if mesh.as_grid().is_some_and(|g| g.mask.is_none()) {
                        for k in 0..n_cells {
                            let m = (0..n_cells).map(|l| entry(k, l)).fold(0.0, f64::max);
                            assert!((m - 1.0).abs() < 1e-12, "row max {m}");
                        }
                    }
                    let t = tk.transport_cost(&u, &v).unwrap();
                    assert!(
                        (t - direct_cost).abs() <= 1e-11 * direct_cost.abs().max(1e-300),
                        "{t} vs {direct_cost}"
                    );
                    if !absorbed {
                        let dk = GibbsKernel::dense(mesh, eps, 1 << 30).unwrap();
                        let (mut dout, mut dwork) = (vec![0.0; n_cells], vec![0.0; n_cells]);
                        // a new kernel applies ξ itself
                        dk.apply(&vc, &mut dout, &mut dwork).unwrap();
                        for (k, &out) in dout.iter().enumerate() {
                            let direct: f64 = (0..n_cells)
                                .map(|l| (-cost(mesh, k, l) / eps).exp() * vc[l])
                                .sum::<f64>();
                            assert!((out - direct).abs() <= 1e-12 * direct);
                        }
                    }
                }
            }
        }
    }

    /// The log-domain products against direct log-sums of the plain kernel (with −∞ entries),
    /// and the log transport cost against a direct double sum.
    #[test]
    fn log_products_match_direct_sums() {
        for mesh in &meshes() {
            let idx = mesh.grid_index().to_vec();
            let n_cells = mesh.n_cells();
            for &eps in &[0.5, 0.05, 0.002] {
                for kernel in [
                    GibbsKernel::new(mesh, eps).unwrap(),
                    GibbsKernel::dense(mesh, eps, 1 << 30).unwrap(),
                ] {
                    let len = kernel.len();
                    let dense = len == n_cells
                        && mesh.as_grid().is_some_and(|g| g.len() != n_cells)
                        || kernel.factors[0].dim > 1
                        || (len == n_cells && kernel.shape.len() == 1 && mesh.dim() > 1);
                    let at = |k: usize| if dense { k } else { idx[k] };
                    let r = rand_vec(n_cells, 3);
                    let mut lv = vec![f64::NEG_INFINITY; len];
                    let mut la = vec![f64::NEG_INFINITY; len];
                    for k in 0..n_cells {
                        // wide range, and one cell without mass
                        if k != 1 {
                            lv[at(k)] = 40.0 * (r[k] - 0.5);
                        }
                        la[at(k)] = 3.0 * r[(k + 1) % n_cells];
                    }
                    let (mut out, mut work) = (vec![0.0; len], vec![0.0; len]);
                    kernel.apply_log(&lv, &mut out, &mut work).unwrap();
                    let mut direct_cost = 0.0;
                    for k in 0..n_cells {
                        let terms: Vec<f64> = (0..n_cells)
                            .map(|l| lv[at(l)] - cost(mesh, k, l) / eps)
                            .collect();
                        let m = terms.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
                        let direct = m + terms.iter().map(|t| (t - m).exp()).sum::<f64>().ln();
                        assert!(
                            (out[at(k)] - direct).abs() <= 1e-12 * (1.0 + direct.abs()),
                            "{} vs {direct}",
                            out[at(k)]
                        );
                        for l in 0..n_cells {
                            let c = cost(mesh, k, l);
                            direct_cost += c * (la[at(k)] - c / eps + lv[at(l)]).exp();
                        }
                    }
                    let t = kernel.transport_cost_log(&la, &lv).unwrap();
                    assert!(
                        (t - direct_cost).abs() <= 1e-11 * direct_cost,
                        "{t} vs {direct_cost}"
                    );
                }
            }
        }
    }

    /// ε = 1e-4 on [-5, 5]: ξ underflows 3 cells apart, the absorbed kernel does not: with the
    /// exact potential of a far-away target absorbed, K̃ still carries the mass there.
    #[test]
    fn absorption_keeps_far_entries_that_the_plain_kernel_loses() {
        let mesh = Mesh::grid(&[100], &[-5.0], &[5.0]).unwrap();
        let eps = 1e-4;
        let mut k = GibbsKernel::new(&mesh, eps).unwrap();
        // all mass of every row should go to cell 80: g = −∞ elsewhere
        let g: Vec<f64> = (0..100)
            .map(|j| if j == 80 { 0.0 } else { f64::NEG_INFINITY })
            .collect();
        k.absorb(vec![g], false);
        k.truncate(60.0);
        let mut e80 = vec![0.0; 100];
        e80[80] = 1.0;
        let (mut out, mut work) = (vec![0.0; 100], vec![0.0; 100]);
        k.apply(&e80, &mut out, &mut work).unwrap();
        assert!(out.iter().all(|&x| (x - 1.0).abs() < 1e-15), "{out:?}");
        // the plain kernel's rows do not reach it
        let plain = GibbsKernel::new(&mesh, eps).unwrap();
        plain.apply(&e80, &mut out, &mut work).unwrap();
        assert_eq!(out[20], 0.0);
        assert!(plain.bandwidths()[0] < 40.0);
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        for shape in [vec![3000], vec![70, 45], vec![20, 33, 12]] {
            let d = shape.len();
            let mesh = Mesh::grid(&shape, &vec![0.0; d], &vec![1.0; d]).unwrap();
            let mut k = GibbsKernel::new(&mesh, 0.003).unwrap();
            absorb_random(&mut k, 9);
            let v = rand_vec(k.len(), 3);
            let lv: Vec<f64> = v.iter().map(|x| 20.0 * x).collect();
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| {
                    let n = k.len();
                    let (mut a, mut b, mut c, mut w) =
                        (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
                    k.apply(&v, &mut a, &mut w).unwrap();
                    k.apply_transpose(&v, &mut b, &mut w).unwrap();
                    k.apply_log(&lv, &mut c, &mut w).unwrap();
                    (a, b, c, k.transport_cost(&v, &v).unwrap())
                })
            };
            let (a1, b1, c1, t1) = run(1);
            let (a3, b3, c3, t3) = run(3);
            let same =
                |x: &[f64], y: &[f64]| x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits());
            assert!(same(&a1, &a3) && same(&b1, &b3) && same(&c1, &c3));
            assert_eq!(t1.to_bits(), t3.to_bits());
        }
    }

    #[test]
    fn monotone_argmax_matches_brute_force() {
        let x: Vec<f64> = (0..200).map(|i| i as f64 * 0.05).collect();
        let r = rand_vec(200, 17);
        for eps in [1e-3, 0.1, 10.0] {
            let g: Vec<f64> = (0..200)
                .map(|j| {
                    if j % 7 == 3 {
                        f64::NEG_INFINITY
                    } else {
                        30.0 * r[j]
                    }
                })
                .collect();
            let term = |i: usize, j: usize| g[j] - (x[i] - x[j]).powi(2) / eps;
            let (arg, max) = monotone_argmax(200, &term);
            for i in 0..200 {
                let m = (0..200)
                    .map(|j| term(i, j))
                    .fold(f64::NEG_INFINITY, f64::max);
                assert_eq!(max[i], m);
                assert_eq!(term(i, arg[i]), m);
            }
        }
    }

    #[test]
    fn separable_fit_is_exact_on_separable_potentials() {
        let shape = [7, 5, 4];
        let (a, b, c) = (rand_vec(7, 1), rand_vec(5, 2), rand_vec(4, 3));
        let g: Vec<f64> = (0..140)
            .map(|k| 10.0 * a[k / 20] - 3.0 * b[(k / 4) % 5] + c[k % 4])
            .collect();
        // rows 2 of axis 0 without any weighted cell
        let weight: Vec<bool> = (0..140).map(|k| k / 20 != 2).collect();
        let fit = fit_separable(&shape, &g, &weight);
        for k in 0..140 {
            if weight[k] {
                let s = fit[0][k / 20] + fit[1][(k / 4) % 5] + fit[2][k % 4];
                assert!((s - g[k]).abs() < 1e-10, "{s} vs {}", g[k]);
            }
        }
        assert_eq!(fit[0][2], f64::NEG_INFINITY);
    }

    #[test]
    fn branch_free_exp_matches_std() {
        let mut worst: f64 = 0.0;
        for i in 0..=1_000_000 {
            let x = -708.0 + 1417.0 * i as f64 / 1_000_000.0;
            let (a, b) = (exp(x), x.exp());
            worst = worst.max(((a - b) / b).abs());
        }
        assert!(worst < 4.0 * f64::EPSILON, "relative error {worst:e}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-710.0), 0.0);
        assert_eq!(exp(f64::NEG_INFINITY), 0.0);
        assert_eq!(exp(710.0), f64::INFINITY);
        assert!(exp(f64::NAN).is_nan());
    }

    #[test]
    fn branch_free_ln_matches_std() {
        let mut worst: f64 = 0.0;
        let mut x = 1e-320;
        while x < 1e300 {
            let (a, b) = (ln(x), x.ln());
            worst = worst.max((a - b).abs() / b.abs().max(1.0));
            x *= 1.000_37;
        }
        assert!(worst < 4.0 * f64::EPSILON, "error {worst:e}");
        assert_eq!(ln(1.0), 0.0);
        assert_eq!(ln(0.0), f64::NEG_INFINITY);
        assert_eq!(ln(f64::INFINITY), f64::INFINITY);
        assert!(ln(-1.0).is_nan() && ln(f64::NAN).is_nan());
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let mesh = Mesh::grid(&[4, 4], &[0.0; 2], &[1.0; 2]).unwrap();
        let k = GibbsKernel::new(&mesh, 0.1).unwrap();
        let (mut o, mut w) = (vec![0.0; 16], vec![0.0; 16]);
        assert!(matches!(
            k.apply(&[0.0; 15], &mut o, &mut w),
            Err(InputError::ShapeMismatch { .. })
        ));
        assert!(k.transport_cost(&[0.0; 16], &[0.0; 3]).is_err());
        assert!(GibbsKernel::new(&mesh, -1.0).is_err());
    }
}

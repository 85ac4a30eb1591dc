//! Gibbs kernels ξ_{KL} = exp(−|x_K − x_L|²/ε), applied to vectors.
//!
//! **Tensor product on grids** ([`GibbsKernel`]). On a Cartesian grid the cost splits over the
//! axes, |x − y|² = Σ_a (x_a − y_a)², so ξ = ξ⁽¹⁾ ⊗ … ⊗ ξ⁽ᵈ⁾ with 1D kernels ξ⁽ᵃ⁾ of size
//! n_a × n_a. ξv is computed by d passes, each multiplying every grid line along one axis by
//! its 1D kernel: O(N Σ_a n_a) = O(N·n) work for N cells, O(N) memory (two grid-sized
//! buffers), never an N×N matrix. Each pass runs along the last (contiguous) axis and writes
//! its result transposed, (…, n_a) → (n_a, …), so the next axis is last in turn and after d
//! passes the array is back in C order; the plain passes use a register-blocked kernel
//! (AVX-512 or AVX2+FMA when the CPU has them, detected at run time). The 1D kernels of a uniform grid are Toeplitz, so each is
//! stored as one mirrored vector of 2n − 1 entries; entries that underflow to 0 are skipped
//! (a band), which is exact. Masked cells are ordinary grid cells whose scaling is 0 (−∞ in
//! the log domain): they carry no mass and contribute nothing.
//!
//! **Log domain.** [`GibbsKernel::apply_log`] computes ln(ξ e^v) by the same passes with a
//! log-sum-exp along each line: out_i = m_i + ln Σ_j e^{v_j − c_ij/ε − m_i}, m_i = max_j (v_j −
//! c_ij/ε). Terms with v_j − c_ij/ε − m_i < −50 are skipped: each is below e^{−50} ≈ 2·10⁻²²
//! of the sum, so dropping them changes the result by less than n·2·10⁻²² relative — below
//! round-off for any grid line. The log domain never under- or overflows.
//!
//! **Dense** (`DenseGibbsKernel`, chosen by [`crate::KernelChoice::Dense`] or on non-grid
//! meshes): the N×N matrix, for general meshes and for comparisons;
//! refused (with the memory it would need) above a byte limit.
//!
//! **Determinism.** Every output entry is accumulated by one thread, over the input index in
//! increasing order, and global sums go through fixed-size chunks summed in order
//! (`deterministic_sum`): results are bitwise independent of the number of threads.

use jko_core::{Grid, InputError, Mesh};
use rayon::prelude::*;

/// A log-sum-exp term below e^{−LSE_CUT} of the largest is dropped (see module docs).
const LSE_CUT: f64 = 50.0;
/// Chunk length of deterministic reductions.
const SUM_CHUNK: usize = 4096;

/// Σ_i f(i) over 0..n, computed in fixed chunks summed in order: the result does not depend
/// on the number of threads.
pub(crate) fn deterministic_sum(n: usize, f: impl Fn(usize) -> f64 + Sync) -> f64 {
    let parts: Vec<f64> = (0..n.div_ceil(SUM_CHUNK))
        .into_par_iter()
        .map(|c| {
            let lo = c * SUM_CHUNK;
            let hi = (lo + SUM_CHUNK).min(n);
            (lo..hi).map(&f).sum::<f64>()
        })
        .collect();
    parts.iter().sum()
}

/// What a Sinkhorn iteration needs from a kernel: products with ξ (symmetric, so ξᵀ = ξ)
/// in the plain and the log domain, and the transport cost ⟨c, diag(a) ξ diag(b)⟩.
/// Vectors live in the kernel's own layout of [`GibbsOperator::len`] entries.
///
/// Here ξ_{KL} = exp(−|x_K − x_L|²/ε) with x_K the cell centres; terms below e^{−50} of the
/// largest one in a product are dropped (relative error ≤ e^{−50} per entry).
///
/// # Errors
/// The products return [`InputError::ShapeMismatch`] when a slice does not have
/// [`GibbsOperator::len`] entries.
///
/// ```rust
/// use jko_core::Mesh;
/// use jko_sinkhorn::{GibbsKernel, GibbsOperator};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Used behind `dyn`, as the Sinkhorn iteration does.
/// let mesh = Mesh::grid(&[3], &[0.0], &[3.0])?;
/// let kernel: Box<dyn GibbsOperator> = Box::new(GibbsKernel::new(&mesh, 1.0)?);
/// let (mut out, mut work) = (vec![0.0; 3], vec![0.0; 3]);
/// kernel.apply(&[0.0, 1.0, 0.0], &mut out, &mut work)?;
/// // Column 1 of ξ: e^{−1}, 1, e^{−1} (neighbours at distance 1).
/// let e1 = (-1.0f64).exp();
/// assert!((out[0] - e1).abs() < 1e-15 && out[1] == 1.0 && (out[2] - e1).abs() < 1e-15);
/// # Ok(())
/// # }
/// ```
pub trait GibbsOperator: Send + Sync {
    /// Length of the vectors the kernel acts on.
    ///
    /// For [`GibbsKernel`] this is the full grid length (masked cells included).
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use jko_sinkhorn::{GibbsKernel, GibbsOperator};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Two cells of [0, 1]: centres 1/4 and 3/4, cost c₀₁ = 1/4, so ξ₀₁ = e^{−1} at ε = 1/4.
    /// let mesh = Mesh::grid(&[2], &[0.0], &[1.0])?;
    /// let kernel = GibbsKernel::new(&mesh, 0.25)?;
    /// assert_eq!(kernel.len(), 2);
    /// # Ok(())
    /// # }
    /// ```
    fn len(&self) -> usize;
    /// Whether the kernel acts on empty vectors (never, for a kernel built from a mesh).
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use jko_sinkhorn::{GibbsKernel, GibbsOperator};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Two cells of [0, 1]: centres 1/4 and 3/4, cost c₀₁ = 1/4, so ξ₀₁ = e^{−1} at ε = 1/4.
    /// let mesh = Mesh::grid(&[2], &[0.0], &[1.0])?;
    /// let kernel = GibbsKernel::new(&mesh, 0.25)?;
    /// assert!(!kernel.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The regularisation ε (units of the cost |x − y|², length²).
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use jko_sinkhorn::{GibbsKernel, GibbsOperator};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Two cells of [0, 1]: centres 1/4 and 3/4, cost c₀₁ = 1/4, so ξ₀₁ = e^{−1} at ε = 1/4.
    /// let mesh = Mesh::grid(&[2], &[0.0], &[1.0])?;
    /// let kernel = GibbsKernel::new(&mesh, 0.25)?;
    /// assert_eq!(kernel.epsilon(), 0.25);
    /// # Ok(())
    /// # }
    /// ```
    fn epsilon(&self) -> f64;
    /// Rebuild the kernel for another ε.
    ///
    /// # Errors
    /// [`InputError::InvalidParameter`] unless ε is finite and > 0 (the kernel is unchanged).
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use jko_sinkhorn::{GibbsKernel, GibbsOperator};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Two cells of [0, 1]: centres 1/4 and 3/4, cost c₀₁ = 1/4, so ξ₀₁ = e^{−1} at ε = 1/4.
    /// let mesh = Mesh::grid(&[2], &[0.0], &[1.0])?;
    /// let kernel = GibbsKernel::new(&mesh, 0.25)?;
    /// let mut kernel = kernel;
    /// kernel.set_epsilon(0.125)?;
    /// let (mut out, mut work) = (vec![0.0; 2], vec![0.0; 2]);
    /// kernel.apply(&[1.0, 0.0], &mut out, &mut work)?;
    /// assert!((out[1] - (-2.0f64).exp()).abs() < 1e-15);
    /// assert!(kernel.set_epsilon(0.0).is_err());
    /// assert_eq!(kernel.epsilon(), 0.125);
    /// # Ok(())
    /// # }
    /// ```
    fn set_epsilon(&mut self, epsilon: f64) -> Result<(), InputError>;
    /// out = ξ v (`work`: scratch of the same length).
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use jko_sinkhorn::{GibbsKernel, GibbsOperator};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Two cells of [0, 1]: centres 1/4 and 3/4, cost c₀₁ = 1/4, so ξ₀₁ = e^{−1} at ε = 1/4.
    /// let mesh = Mesh::grid(&[2], &[0.0], &[1.0])?;
    /// let kernel = GibbsKernel::new(&mesh, 0.25)?;
    /// let (mut out, mut work) = (vec![0.0; 2], vec![0.0; 2]);
    /// kernel.apply(&[1.0, 0.0], &mut out, &mut work)?;
    /// assert_eq!(out[0], 1.0);
    /// assert!((out[1] - (-1.0f64).exp()).abs() < 1e-15);
    /// assert!(kernel.apply(&[1.0], &mut out, &mut work).is_err()); // wrong length
    /// # Ok(())
    /// # }
    /// ```
    fn apply(&self, v: &[f64], out: &mut [f64], work: &mut [f64]) -> Result<(), InputError>;
    /// out = ln(ξ e^{lv}) (entries −∞ allowed), by log-sum-exp: no underflow for any ε.
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use jko_sinkhorn::{GibbsKernel, GibbsOperator};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Two cells of [0, 1]: centres 1/4 and 3/4, cost c₀₁ = 1/4, so ξ₀₁ = e^{−1} at ε = 1/4.
    /// let mesh = Mesh::grid(&[2], &[0.0], &[1.0])?;
    /// let kernel = GibbsKernel::new(&mesh, 0.25)?;
    /// let (mut out, mut work) = (vec![0.0; 2], vec![0.0; 2]);
    /// kernel.apply_log(&[0.0, f64::NEG_INFINITY], &mut out, &mut work)?;
    /// assert!(out[0].abs() < 1e-15 && (out[1] + 1.0).abs() < 1e-15);
    /// # Ok(())
    /// # }
    /// ```
    fn apply_log(&self, lv: &[f64], out: &mut [f64], work: &mut [f64]) -> Result<(), InputError>;
    /// Σ_{K,L} a_K c_{KL} ξ_{KL} b_L: the transport cost ⟨c, π⟩ of the plan
    /// π = diag(a) ξ diag(b).
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use jko_sinkhorn::{GibbsKernel, GibbsOperator};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Two cells of [0, 1]: centres 1/4 and 3/4, cost c₀₁ = 1/4, so ξ₀₁ = e^{−1} at ε = 1/4.
    /// let mesh = Mesh::grid(&[2], &[0.0], &[1.0])?;
    /// let kernel = GibbsKernel::new(&mesh, 0.25)?;
    /// // Only the two off-diagonal entries cost: 2 · c₀₁ ξ₀₁ = e^{−1}/2.
    /// let cost = kernel.transport_cost(&[1.0, 1.0], &[1.0, 1.0])?;
    /// assert!((cost - 0.5 * (-1.0f64).exp()).abs() < 1e-15);
    /// # Ok(())
    /// # }
    /// ```
    fn transport_cost(&self, a: &[f64], b: &[f64]) -> Result<f64, InputError>;
    /// Σ_{K,L} c_{KL} exp(la_K − c_{KL}/ε + lb_L): [`GibbsOperator::transport_cost`] from
    /// log-scalings.
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use jko_sinkhorn::{GibbsKernel, GibbsOperator};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Two cells of [0, 1]: centres 1/4 and 3/4, cost c₀₁ = 1/4, so ξ₀₁ = e^{−1} at ε = 1/4.
    /// let mesh = Mesh::grid(&[2], &[0.0], &[1.0])?;
    /// let kernel = GibbsKernel::new(&mesh, 0.25)?;
    /// let plain = kernel.transport_cost(&[2.0, 0.5], &[1.0, 3.0])?;
    /// let log = kernel.transport_cost_log(&[2f64.ln(), 0.5f64.ln()], &[0.0, 3f64.ln()])?;
    /// assert!((plain - log).abs() < 1e-14 * plain);
    /// # Ok(())
    /// # }
    /// ```
    fn transport_cost_log(&self, la: &[f64], lb: &[f64]) -> Result<f64, InputError>;
    /// Bytes of kernel storage (not counting the vectors): O(Σ_axes n) for the tensor-product
    /// kernel, 8N² for the dense one.
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use jko_sinkhorn::{GibbsKernel, GibbsOperator};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Two cells of [0, 1]: centres 1/4 and 3/4, cost c₀₁ = 1/4, so ξ₀₁ = e^{−1} at ε = 1/4.
    /// let mesh = Mesh::grid(&[2], &[0.0], &[1.0])?;
    /// let kernel = GibbsKernel::new(&mesh, 0.25)?;
    /// // 1D tables on 400 cells: far below the 8 · 400² bytes of the dense matrix.
    /// let fine = GibbsKernel::new(&Mesh::grid(&[400], &[0.0], &[1.0])?, 1e-4)?;
    /// assert!(fine.storage_bytes() > 0 && fine.storage_bytes() < 8 * 400 * 400 / 10);
    /// # Ok(())
    /// # }
    /// ```
    fn storage_bytes(&self) -> u64;
}

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

/// The 1D kernels of one grid axis, as mirrored Toeplitz vectors: entry (i, j) of a table is
/// `t[n − 1 + i − j]`.
#[derive(Debug, Clone)]
struct AxisKernel {
    n: usize,
    h: f64,
    /// ξ_ij = exp(−c_ij/ε)
    xi: Vec<f64>,
    /// c_ij ξ_ij
    xi_cost: Vec<f64>,
    /// c_ij/ε
    cost_eps: Vec<f64>,
    /// c_ij/ε − ln c_ij (+∞ on the diagonal): log of the weighted kernel, negated
    cost_eps_weighted: Vec<f64>,
    /// Largest |i − j| with ξ_ij > 0.
    band: usize,
}

impl AxisKernel {
    fn new(n: usize, h: f64, epsilon: f64) -> Self {
        let mut k = AxisKernel {
            n,
            h,
            xi: Vec::new(),
            xi_cost: Vec::new(),
            cost_eps: Vec::new(),
            cost_eps_weighted: Vec::new(),
            band: 0,
        };
        k.set_epsilon(epsilon);
        k
    }

    fn set_epsilon(&mut self, epsilon: f64) {
        let n = self.n;
        let cost = |t: usize| {
            let d = (t as f64 - (n as f64 - 1.0)) * self.h;
            d * d
        };
        self.cost_eps = (0..2 * n - 1).map(|t| cost(t) / epsilon).collect();
        self.xi = self.cost_eps.iter().map(|c| (-c).exp()).collect();
        self.xi_cost = (0..2 * n - 1).map(|t| cost(t) * self.xi[t]).collect();
        self.cost_eps_weighted = (0..2 * n - 1)
            .map(|t| {
                let c = cost(t);
                if c > 0.0 {
                    c / epsilon - c.ln()
                } else {
                    f64::INFINITY
                }
            })
            .collect();
        self.band = (0..n)
            .rev()
            .find(|&d| self.xi[n - 1 + d] > 0.0)
            .unwrap_or(0);
    }
}

/// Instruction set of the plain passes, detected once at run time. The SIMD paths use fused
/// multiply-adds (in the same order as their scalar remainder code, so AVX2 and AVX-512 give
/// identical bits); the portable path differs from them in the last bits. None of this
/// depends on the number of threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

fn isa() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::env::var_os("JKO_SINKHORN_NO_AVX512").is_none()
                && is_x86_feature_detected!("avx512f")
            {
                return Isa::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Isa::Avx2Fma;
            }
        }
        Isa::Portable
    })
}

/// Lines per register block of the plain passes.
const MR: usize = 4;

/// The register-blocked inner product of the plain passes, written transposed:
/// out[(ib + k) m + o0 + r] = Σ_{j ∈ jlo..jhi} inp[(o0 + r) n + j] · table[c − j + i0 + k] for
/// r < R, k < NR, accumulated in increasing j (c = n − 1). Callers guarantee jlo < jhi ≤ n,
/// i0 + NR ≤ n and (o0 + R) n ≤ inp.len().
trait Micro {
    /// Outputs along the axis per block.
    const NR: usize;
    #[allow(clippy::too_many_arguments)]
    fn micro<const R: usize>(
        table: &[f64],
        n: usize,
        inp: &[f64],
        o0: usize,
        i0: usize,
        jlo: usize,
        jhi: usize,
        out: &mut [f64],
        ib: usize,
        m: usize,
    );
    fn fmadd(a: f64, b: f64, c: f64) -> f64;
}

/// Portable code (whatever the compiler vectorises).
struct Portable;

impl Micro for Portable {
    const NR: usize = 8;

    #[inline(always)]
    fn micro<const R: usize>(
        table: &[f64],
        n: usize,
        inp: &[f64],
        o0: usize,
        i0: usize,
        jlo: usize,
        jhi: usize,
        out: &mut [f64],
        ib: usize,
        m: usize,
    ) {
        let c = n - 1;
        let mut acc = [[0.0; 8]; R];
        for j in jlo..jhi {
            let s = c - j + i0;
            let bj = &table[s..s + 8];
            for (r, a) in acc.iter_mut().enumerate() {
                let x = inp[(o0 + r) * n + j];
                for (ak, b) in a.iter_mut().zip(bj) {
                    *ak += x * b;
                }
            }
        }
        for k in 0..8 {
            for (r, a) in acc.iter().enumerate() {
                out[(ib + k) * m + o0 + r] = a[k];
            }
        }
    }

    #[inline(always)]
    fn fmadd(a: f64, b: f64, c: f64) -> f64 {
        a * b + c
    }
}

/// AVX2 + FMA intrinsics; only used inside `block_avx2`, called only when the CPU has both.
#[cfg(target_arch = "x86_64")]
struct Avx2Fma;

#[cfg(target_arch = "x86_64")]
impl Micro for Avx2Fma {
    const NR: usize = 8;

    #[inline(always)]
    fn micro<const R: usize>(
        table: &[f64],
        n: usize,
        inp: &[f64],
        o0: usize,
        i0: usize,
        jlo: usize,
        jhi: usize,
        out: &mut [f64],
        ib: usize,
        m: usize,
    ) {
        // SAFETY: reached only through `block_avx2` (CPU support checked by `isa()`).
        let acc = unsafe { micro_avx2::<R>(table, n, inp, o0, i0, jlo, jhi) };
        for k in 0..8 {
            for (r, a) in acc.iter().enumerate() {
                out[(ib + k) * m + o0 + r] = a[k];
            }
        }
    }

    #[inline(always)]
    fn fmadd(a: f64, b: f64, c: f64) -> f64 {
        a.mul_add(b, c)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn micro_avx2<const R: usize>(
    table: &[f64],
    n: usize,
    inp: &[f64],
    o0: usize,
    i0: usize,
    jlo: usize,
    jhi: usize,
) -> [[f64; 8]; R] {
    unsafe {
        use std::arch::x86_64::*;
        let c = n - 1;
        // The largest table index read is c − jlo + i0 + 7 and the largest input index
        // (o0 + R − 1) n + jhi − 1: check them once, then read without bounds checks.
        assert!(
            jlo < jhi && jhi <= n && c - jlo + i0 + 8 <= table.len() && (o0 + R) * n <= inp.len()
        );
        let mut acc = [[_mm256_setzero_pd(); 2]; R];
        let tp = table.as_ptr();
        let ip = inp.as_ptr();
        for j in jlo..jhi {
            let s = c - j + i0;
            let b0 = _mm256_loadu_pd(tp.add(s));
            let b1 = _mm256_loadu_pd(tp.add(s + 4));
            for (r, a) in acc.iter_mut().enumerate() {
                let x = _mm256_set1_pd(*ip.add((o0 + r) * n + j));
                a[0] = _mm256_fmadd_pd(x, b0, a[0]);
                a[1] = _mm256_fmadd_pd(x, b1, a[1]);
            }
        }
        let mut out = [[0.0; 8]; R];
        for (o, a) in out.iter_mut().zip(&acc) {
            _mm256_storeu_pd(o.as_mut_ptr(), a[0]);
            _mm256_storeu_pd(o.as_mut_ptr().add(4), a[1]);
        }
        out
    }
}

/// AVX-512 intrinsics; only used inside `block_avx512`, called only when the CPU has it.
#[cfg(target_arch = "x86_64")]
struct Avx512;

#[cfg(target_arch = "x86_64")]
impl Micro for Avx512 {
    const NR: usize = 16;

    #[inline(always)]
    fn micro<const R: usize>(
        table: &[f64],
        n: usize,
        inp: &[f64],
        o0: usize,
        i0: usize,
        jlo: usize,
        jhi: usize,
        out: &mut [f64],
        ib: usize,
        m: usize,
    ) {
        // SAFETY: reached only through `block_avx512` (CPU support checked by `isa()`).
        let acc = unsafe { micro_avx512::<R>(table, n, inp, o0, i0, jlo, jhi) };
        for k in 0..16 {
            for (r, a) in acc.iter().enumerate() {
                out[(ib + k) * m + o0 + r] = a[k];
            }
        }
    }

    #[inline(always)]
    fn fmadd(a: f64, b: f64, c: f64) -> f64 {
        a.mul_add(b, c)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn micro_avx512<const R: usize>(
    table: &[f64],
    n: usize,
    inp: &[f64],
    o0: usize,
    i0: usize,
    jlo: usize,
    jhi: usize,
) -> [[f64; 16]; R] {
    unsafe {
        use std::arch::x86_64::*;
        let c = n - 1;
        // As in `micro_avx2`, with 16 outputs.
        assert!(
            jlo < jhi && jhi <= n && c - jlo + i0 + 16 <= table.len() && (o0 + R) * n <= inp.len()
        );
        let mut acc = [[_mm512_setzero_pd(); 2]; R];
        let tp = table.as_ptr();
        let ip = inp.as_ptr();
        for j in jlo..jhi {
            let s = c - j + i0;
            let b0 = _mm512_loadu_pd(tp.add(s));
            let b1 = _mm512_loadu_pd(tp.add(s + 8));
            for (r, a) in acc.iter_mut().enumerate() {
                let x = _mm512_set1_pd(*ip.add((o0 + r) * n + j));
                a[0] = _mm512_fmadd_pd(x, b0, a[0]);
                a[1] = _mm512_fmadd_pd(x, b1, a[1]);
            }
        }
        let mut out = [[0.0; 16]; R];
        for (o, a) in out.iter_mut().zip(&acc) {
            _mm512_storeu_pd(o.as_mut_ptr(), a[0]);
            _mm512_storeu_pd(o.as_mut_ptr().add(8), a[1]);
        }
        out
    }
}

/// Rows i0..i0+ni of the transposed product: out[i − i0][o] = Σ_j inp[o][j] ξ_{ji} for all m
/// lines o of length n (`out` holds ni rows of m values).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn block<M: Micro>(
    table: &[f64],
    band: usize,
    n: usize,
    m: usize,
    inp: &[f64],
    i0: usize,
    ni: usize,
    out: &mut [f64],
) {
    let c = n - 1;
    let mut ib = 0;
    while ib < ni {
        let w = M::NR.min(ni - ib);
        let ia = i0 + ib;
        let jlo = ia.saturating_sub(band);
        let jhi = (ia + w + band).min(n);
        let mut o0 = 0;
        while o0 < m {
            let rows = MR.min(m - o0);
            if w == M::NR && rows == MR {
                M::micro::<MR>(table, n, inp, o0, ia, jlo, jhi, out, ib, m);
            } else if w == M::NR {
                for r in 0..rows {
                    M::micro::<1>(table, n, inp, o0 + r, ia, jlo, jhi, out, ib, m);
                }
            } else {
                for r in 0..rows {
                    for k in 0..w {
                        let mut s = 0.0;
                        for j in jlo..jhi {
                            s = M::fmadd(inp[(o0 + r) * n + j], table[c - j + ia + k], s);
                        }
                        out[(ib + k) * m + o0 + r] = s;
                    }
                }
            }
            o0 += rows;
        }
        ib += w;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
fn block_avx2(
    table: &[f64],
    band: usize,
    n: usize,
    m: usize,
    inp: &[f64],
    i0: usize,
    ni: usize,
    out: &mut [f64],
) {
    block::<Avx2Fma>(table, band, n, m, inp, i0, ni, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
fn block_avx512(
    table: &[f64],
    band: usize,
    n: usize,
    m: usize,
    inp: &[f64],
    i0: usize,
    ni: usize,
    out: &mut [f64],
) {
    block::<Avx512>(table, band, n, m, inp, i0, ni, out)
}

/// One plain pass along the last axis, output transposed: the input is m lines of length n
/// (C order, the axis last), the output is (n, m): out[i][o] = Σ_j ξ_{ij} inp[o][j]. After d
/// such passes (axes d−1, …, 0) the array is back in its original order. Each output entry is
/// Σ_j over the band in increasing j (terms outside the band are exact zeros), whatever the
/// blocking and the threads. Parallel over blocks of output rows, which are contiguous.
fn pass_plain(table: &[f64], band: usize, n: usize, inp: &[f64], out: &mut [f64]) {
    let isa = isa();
    let m = inp.len() / n;
    // Output rows per task: each task streams the whole input once.
    const TI: usize = 16;
    out.par_chunks_mut(TI * m).enumerate().for_each(|(t, oc)| {
        let ni = oc.len() / m;
        match isa {
            // SAFETY: these variants are only chosen when the CPU reports the features.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { block_avx512(table, band, n, m, inp, t * TI, ni, oc) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => unsafe { block_avx2(table, band, n, m, inp, t * TI, ni, oc) },
            Isa::Portable => block::<Portable>(table, band, n, m, inp, t * TI, ni, oc),
        }
    });
}

/// e^x for x ∈ [−700, 0], branch-free so that loops over it vectorise: x = k ln 2 + r with
/// k = round(x/ln 2) (by the 1.5·2⁵² trick, which also leaves k in the low bits), |r| ≤ ln2/2
/// (Cody–Waite split of ln 2), e^r by its Taylor polynomial of degree 12 (truncation
/// ≤ 0.35¹³/13! ≈ 2·10⁻¹⁶), times 2^k built from its bits. Within a few ulp of `f64::exp`.
#[inline(always)]
fn exp_nonpositive(x: f64) -> f64 {
    const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5 · 2^52
    // ln 2 = LN2_HI + LN2_LO, LN2_HI with 32 trailing zero bits so that k·LN2_HI is exact
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    let y = x * std::f64::consts::LOG2_E + MAGIC;
    let k = y - MAGIC;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let kbits = y.to_bits().wrapping_sub(MAGIC.to_bits());
    let scale = f64::from_bits(kbits.wrapping_add(1023) << 52);
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
    let mut p = C[12];
    for c in C[..12].iter().rev() {
        p = p * r + c;
    }
    p * scale
}

/// 2^(j/64), j = 0..64, correctly rounded (bits computed at 60 digits).
const EXP2_TABLE_BITS: [u64; 64] = [
    0x3ff0000000000000,
    0x3ff02c9a3e778061,
    0x3ff059b0d3158574,
    0x3ff0874518759bc8,
    0x3ff0b5586cf9890f,
    0x3ff0e3ec32d3d1a2,
    0x3ff11301d0125b51,
    0x3ff1429aaea92de0,
    0x3ff172b83c7d517b,
    0x3ff1a35beb6fcb75,
    0x3ff1d4873168b9aa,
    0x3ff2063b88628cd6,
    0x3ff2387a6e756238,
    0x3ff26b4565e27cdd,
    0x3ff29e9df51fdee1,
    0x3ff2d285a6e4030b,
    0x3ff306fe0a31b715,
    0x3ff33c08b26416ff,
    0x3ff371a7373aa9cb,
    0x3ff3a7db34e59ff7,
    0x3ff3dea64c123422,
    0x3ff4160a21f72e2a,
    0x3ff44e086061892d,
    0x3ff486a2b5c13cd0,
    0x3ff4bfdad5362a27,
    0x3ff4f9b2769d2ca7,
    0x3ff5342b569d4f82,
    0x3ff56f4736b527da,
    0x3ff5ab07dd485429,
    0x3ff5e76f15ad2148,
    0x3ff6247eb03a5585,
    0x3ff6623882552225,
    0x3ff6a09e667f3bcd,
    0x3ff6dfb23c651a2f,
    0x3ff71f75e8ec5f74,
    0x3ff75feb564267c9,
    0x3ff7a11473eb0187,
    0x3ff7e2f336cf4e62,
    0x3ff82589994cce13,
    0x3ff868d99b4492ed,
    0x3ff8ace5422aa0db,
    0x3ff8f1ae99157736,
    0x3ff93737b0cdc5e5,
    0x3ff97d829fde4e50,
    0x3ff9c49182a3f090,
    0x3ffa0c667b5de565,
    0x3ffa5503b23e255d,
    0x3ffa9e6b5579fdbf,
    0x3ffae89f995ad3ad,
    0x3ffb33a2b84f15fb,
    0x3ffb7f76f2fb5e47,
    0x3ffbcc1e904bc1d2,
    0x3ffc199bdd85529c,
    0x3ffc67f12e57d14b,
    0x3ffcb720dcef9069,
    0x3ffd072d4a07897c,
    0x3ffd5818dcfba487,
    0x3ffda9e603db3285,
    0x3ffdfc97337b9b5f,
    0x3ffe502ee78b3ff6,
    0x3ffea4afa2a490da,
    0x3ffefa1bee615a27,
    0x3fff50765b6e4540,
    0x3fffa7c1819e90d8,
];

/// e^x for the scalar element-wise updates: x = (64k' + j) ln2/64 + r, |r| ≤ ln2/128, e^x =
/// 2^k' · 2^(j/64) · p(r) with a degree-5 polynomial (truncation ≤ 4·10⁻¹⁷) evaluated by Estrin's
/// scheme (short dependency chains: this is latency-bound scalar code). Within 2 ulp of
/// `f64::exp` on |x| ≤ 708; `f64::exp` elsewhere (overflow, subnormal results, ±∞, NaN).
#[inline(always)]
pub(crate) fn fast_exp(x: f64) -> f64 {
    if x.is_nan() || x.abs() > 708.0 {
        return x.exp();
    }
    const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5 · 2^52
    const INV: f64 = 92.332_482_616_893_66; // 64 / ln 2
    // ln2/64 = HI + LO, HI with 32 significant bits so that k·HI is exact for |k| < 2^21
    const HI: f64 = f64::from_bits(0x3f86_2e42_ff00_0000);
    const LO: f64 = f64::from_bits(0xbd67_1843_2a1b_0e26);
    let y = x * INV + MAGIC;
    let k = y - MAGIC;
    let r = (x - k * HI) - k * LO;
    let ki = y.to_bits().wrapping_sub(MAGIC.to_bits()) as i64;
    let t = f64::from_bits(EXP2_TABLE_BITS[(ki & 63) as usize]);
    let scale = f64::from_bits((((ki >> 6) + 1023) as u64) << 52);
    let r2 = r * r;
    let p = (1.0 + r) + r2 * ((0.5 + r * (1.0 / 6.0)) + r2 * (1.0 / 24.0 + r * (1.0 / 120.0)));
    t * p * scale
}

/// ln Σ_j exp(v_j − t_{ij}) for one output i of a line (t = mirrored table), with `buf` (of
/// the line's length) as scratch. The table is symmetric, t[c + i − j] = t[c − i + j], so row i
/// is the forward slice t[c − i .. c − i + n]. Both scans run in fixed lanes, with the same
/// operations whatever the instruction set: the result is the same on every path.
#[inline(always)]
fn lse_line_entry(v: &[f64], table: &[f64], i: usize, buf: &mut [f64]) -> f64 {
    const L: usize = 8;
    let n = v.len();
    let row = &table[n - 1 - i..2 * n - 1 - i];
    let mut lanes = [f64::NEG_INFINITY; L];
    let (vc, rc, bc) = (
        v.chunks_exact(L),
        row.chunks_exact(L),
        buf.chunks_exact_mut(L),
    );
    let (vr, rr) = (vc.remainder(), rc.remainder());
    for ((x, t), b) in vc.zip(rc).zip(bc) {
        for l in 0..L {
            b[l] = x[l] - t[l];
            lanes[l] = if b[l] > lanes[l] { b[l] } else { lanes[l] };
        }
    }
    let tail = n - vr.len();
    for (k, (x, t)) in vr.iter().zip(rr).enumerate() {
        buf[tail + k] = x - t;
        lanes[k] = if buf[tail + k] > lanes[k] {
            buf[tail + k]
        } else {
            lanes[k]
        };
    }
    let m = lanes
        .iter()
        .fold(f64::NEG_INFINITY, |a, &b| if b > a { b } else { a });
    if m == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    // Terms below e^{-LSE_CUT} of the largest are dropped; the rest summed in L lanes.
    let mut sums = [0.0; L];
    let bc = buf.chunks_exact(L);
    let br = bc.remainder();
    for b in bc {
        for l in 0..L {
            let x = b[l] - m;
            let e = exp_nonpositive(x.max(-LSE_CUT - 1.0));
            sums[l] += if x > -LSE_CUT { e } else { 0.0 };
        }
    }
    for (l, &t) in br.iter().enumerate() {
        let x = t - m;
        if x > -LSE_CUT {
            sums[l] += exp_nonpositive(x);
        }
    }
    let s =
        ((sums[0] + sums[1]) + (sums[2] + sums[3])) + ((sums[4] + sums[5]) + (sums[6] + sums[7]));
    m + s.ln()
}

/// Output rows t·TI.. of a log pass (see [`pass_log`]).
#[inline(always)]
fn lse_task(
    table: &[f64],
    n: usize,
    m: usize,
    inp: &[f64],
    i0: usize,
    oc: &mut [f64],
    buf: &mut [f64],
) {
    let ni = oc.len() / m;
    for o in 0..m {
        let line = &inp[o * n..(o + 1) * n];
        for r in 0..ni {
            oc[r * m + o] = lse_line_entry(line, table, i0 + r, buf);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn lse_task_avx512(
    table: &[f64],
    n: usize,
    m: usize,
    inp: &[f64],
    i0: usize,
    oc: &mut [f64],
    buf: &mut [f64],
) {
    lse_task(table, n, m, inp, i0, oc, buf)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn lse_task_avx2(
    table: &[f64],
    n: usize,
    m: usize,
    inp: &[f64],
    i0: usize,
    oc: &mut [f64],
    buf: &mut [f64],
) {
    lse_task(table, n, m, inp, i0, oc, buf)
}

/// One log-domain pass along the last axis, output transposed (as [`pass_plain`]): the input
/// is m lines of length n, out[i][o] = ln Σ_j exp(inp[o][j] − t_ij). Parallel over blocks of
/// output rows; each task reads every input line once per block.
fn pass_log(table: &[f64], n: usize, inp: &[f64], out: &mut [f64]) {
    let isa = isa();
    let m = inp.len() / n;
    const TI: usize = 8;
    out.par_chunks_mut(TI * m).enumerate().for_each_init(
        || vec![0.0; n],
        |buf, (t, oc)| match isa {
            // SAFETY: these variants are only chosen when the CPU reports the features.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { lse_task_avx512(table, n, m, inp, t * TI, oc, buf) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => unsafe { lse_task_avx2(table, n, m, inp, t * TI, oc, buf) },
            Isa::Portable => lse_task(table, n, m, inp, t * TI, oc, buf),
        },
    );
}

/// Which 1D table a pass uses.
#[derive(Clone, Copy, PartialEq)]
enum Table {
    Plain,
    Weighted,
}

/// The Gibbs kernel of a (masked) Cartesian grid as a tensor product of 1D kernels.
/// Vectors are full grid arrays in C order (`Grid::len()` entries, inactive cells included:
/// give them 0, or −∞ in the log domain).
///
/// On a grid, |x_K − x_L|² = Σ_axes (i_a − j_a)² h_a², so ξ = ⊗_a ξ_a: one product costs
/// O(N Σ_a n_a) instead of O(N²), and the 1D tables are cut where they fall below e^{−50}
/// relative to 1 (the band).
///
/// ```rust
/// use jko_core::Mesh;
/// use jko_sinkhorn::{GibbsKernel, GibbsOperator};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // 2 × 2 grid of unit cells: the tensor product gives ξ(K, L) = e^{−|x_K − x_L|²/ε}, so
/// // ξ 1 is 1 + 2e^{−1/ε} + e^{−2/ε} in every cell.
/// let mesh = Mesh::grid(&[2, 2], &[0.0, 0.0], &[2.0, 2.0])?;
/// let kernel = GibbsKernel::new(&mesh, 0.5)?;
/// let (mut out, mut work) = (vec![0.0; 4], vec![0.0; 4]);
/// kernel.apply(&[1.0; 4], &mut out, &mut work)?;
/// let exact = 1.0 + 2.0 * (-2.0f64).exp() + (-4.0f64).exp();
/// assert!(out.iter().all(|v| (v - exact).abs() < 1e-14));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct GibbsKernel {
    shape: Vec<usize>,
    axes: Vec<AxisKernel>,
    epsilon: f64,
}

impl GibbsKernel {
    /// The kernel of a grid mesh (masked grids included) at regularisation ε.
    ///
    /// # Errors
    /// [`InputError::InvalidMesh`] on a mesh without grid structure,
    /// [`InputError::InvalidParameter`] unless ε is finite and > 0.
    ///
    /// ```rust
    /// use jko_core::{InputError, Mesh};
    /// use jko_sinkhorn::{GibbsKernel, GibbsOperator};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[4, 3], &[0.0, 0.0], &[1.0, 1.0])?;
    /// assert_eq!(GibbsKernel::new(&mesh, 0.01)?.len(), 12);
    /// assert!(matches!(GibbsKernel::new(&mesh, -1.0), Err(InputError::InvalidParameter { .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(mesh: &Mesh, epsilon: f64) -> Result<Self, InputError> {
        let grid = mesh.as_grid().ok_or_else(|| {
            InputError::InvalidMesh(
                "the tensor-product Gibbs kernel needs a Cartesian grid; use DenseGibbsKernel"
                    .into(),
            )
        })?;
        Self::from_grid(grid, epsilon)
    }

    pub(crate) fn from_grid(grid: &Grid, epsilon: f64) -> Result<Self, InputError> {
        check_epsilon(epsilon)?;
        let h = grid.spacing();
        let axes = grid
            .cells
            .iter()
            .zip(&h)
            .map(|(&n, &h)| AxisKernel::new(n, h, epsilon))
            .collect();
        Ok(GibbsKernel {
            shape: grid.cells.clone(),
            axes,
            epsilon,
        })
    }

    /// Largest |i − j| with a nonzero 1D kernel entry, per axis (checked by the unit tests).
    #[cfg(test)]
    pub(crate) fn bands(&self) -> Vec<usize> {
        self.axes.iter().map(|a| a.band).collect()
    }

    /// Passes along every axis, the last axis first; `weighted` replaces one axis's table by
    /// the cost-weighted one. The result lands in `out`.
    fn passes(
        &self,
        log: bool,
        weighted: Option<usize>,
        v: &[f64],
        out: &mut [f64],
        work: &mut [f64],
    ) {
        let d = self.shape.len();
        // Ping-pong so that the last pass writes `out`.
        let mut src_is_input = true;
        let mut dst_is_out = d % 2 == 1;
        for a in (0..d).rev() {
            let n = self.shape[a];
            let ax = &self.axes[a];
            let table = if weighted == Some(a) {
                Table::Weighted
            } else {
                Table::Plain
            };
            let t = match (log, table) {
                (false, Table::Plain) => &ax.xi,
                (false, Table::Weighted) => &ax.xi_cost,
                (true, Table::Plain) => &ax.cost_eps,
                (true, Table::Weighted) => &ax.cost_eps_weighted,
            };
            let (src, dst): (&[f64], &mut [f64]) = match (src_is_input, dst_is_out) {
                (true, true) => (v, &mut *out),
                (true, false) => (v, &mut *work),
                (false, true) => (&*work, &mut *out),
                (false, false) => (&*out, &mut *work),
            };
            // Both passes rotate the axes, (…, n_a) → (n_a, …), so the next axis is last.
            if log {
                pass_log(t, n, src, dst);
            } else {
                pass_plain(t, ax.band, n, src, dst);
            }
            src_is_input = false;
            dst_is_out = !dst_is_out;
        }
    }

    fn check(&self, v: &[f64], out: &[f64], work: &[f64]) -> Result<(), InputError> {
        let n = self.len();
        check_len("input", n, v.len())?;
        check_len("output", n, out.len())?;
        check_len("work buffer", n, work.len())
    }
}

impl GibbsOperator for GibbsKernel {
    fn len(&self) -> usize {
        self.shape.iter().product()
    }

    fn epsilon(&self) -> f64 {
        self.epsilon
    }

    fn set_epsilon(&mut self, epsilon: f64) -> Result<(), InputError> {
        check_epsilon(epsilon)?;
        for a in &mut self.axes {
            a.set_epsilon(epsilon);
        }
        self.epsilon = epsilon;
        Ok(())
    }

    fn apply(&self, v: &[f64], out: &mut [f64], work: &mut [f64]) -> Result<(), InputError> {
        self.check(v, out, work)?;
        self.passes(false, None, v, out, work);
        Ok(())
    }

    fn apply_log(&self, lv: &[f64], out: &mut [f64], work: &mut [f64]) -> Result<(), InputError> {
        self.check(lv, out, work)?;
        self.passes(true, None, lv, out, work);
        Ok(())
    }

    fn transport_cost(&self, a: &[f64], b: &[f64]) -> Result<f64, InputError> {
        let n = self.len();
        check_len("scaling a", n, a.len())?;
        check_len("scaling b", n, b.len())?;
        let (mut out, mut work) = (vec![0.0; n], vec![0.0; n]);
        let mut total = 0.0;
        // c = Σ_axes c⁽ᵃ⁾: one product per axis with that axis's table weighted by c⁽ᵃ⁾.
        for axis in 0..self.shape.len() {
            self.passes(false, Some(axis), b, &mut out, &mut work);
            total += deterministic_sum(n, |k| a[k] * out[k]);
        }
        Ok(total)
    }

    fn transport_cost_log(&self, la: &[f64], lb: &[f64]) -> Result<f64, InputError> {
        let n = self.len();
        check_len("log-scaling a", n, la.len())?;
        check_len("log-scaling b", n, lb.len())?;
        let (mut out, mut work) = (vec![0.0; n], vec![0.0; n]);
        let mut total = 0.0;
        for axis in 0..self.shape.len() {
            self.passes(true, Some(axis), lb, &mut out, &mut work);
            total += deterministic_sum(n, |k| {
                let e = la[k] + out[k];
                if e == f64::NEG_INFINITY { 0.0 } else { e.exp() }
            });
        }
        Ok(total)
    }

    fn storage_bytes(&self) -> u64 {
        self.axes.iter().map(|a| 4 * (2 * a.n as u64 - 1) * 8).sum()
    }
}

/// The Gibbs kernel as a dense N×N matrix, on any mesh. Vectors have one entry per cell.
#[derive(Debug, Clone)]
pub(crate) struct DenseGibbsKernel {
    dim: usize,
    centres: Vec<f64>,
    xi: Vec<f64>,
    epsilon: f64,
}

impl DenseGibbsKernel {
    /// Bytes the N×N matrix of a mesh of `n_cells` cells needs.
    pub fn bytes_needed(n_cells: usize) -> u64 {
        (n_cells as u64)
            .saturating_mul(n_cells as u64)
            .saturating_mul(8)
    }

    /// Build the matrix; refused with [`InputError::TooLarge`] above `limit_bytes`.
    pub fn new(mesh: &Mesh, epsilon: f64, limit_bytes: u64) -> Result<Self, InputError> {
        check_epsilon(epsilon)?;
        let n = mesh.n_cells();
        let bytes = Self::bytes_needed(n);
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
        let centres: Vec<f64> = (0..n).flat_map(|k| mesh.centre(k).to_vec()).collect();
        let mut k = DenseGibbsKernel {
            dim,
            centres,
            xi: Vec::new(),
            epsilon,
        };
        k.fill();
        Ok(k)
    }

    fn cost(&self, k: usize, l: usize) -> f64 {
        let d = self.dim;
        let (x, y) = (
            &self.centres[k * d..(k + 1) * d],
            &self.centres[l * d..(l + 1) * d],
        );
        x.iter().zip(y).map(|(a, b)| (a - b) * (a - b)).sum()
    }

    fn fill(&mut self) {
        let n = self.centres.len() / self.dim;
        let mut xi = std::mem::take(&mut self.xi);
        xi.resize(n * n, 0.0);
        let eps = self.epsilon;
        xi.par_chunks_mut(n).enumerate().for_each(|(k, row)| {
            for (l, x) in row.iter_mut().enumerate() {
                *x = (-self.cost(k, l) / eps).exp();
            }
        });
        self.xi = xi;
    }

    /// Row k of a product, as a 4-lane dot product (fixed order: deterministic).
    fn dot(row: &[f64], v: &[f64]) -> f64 {
        let mut acc = [0.0; 4];
        let (rc, vc) = (row.chunks_exact(4), v.chunks_exact(4));
        let (rr, vr) = (rc.remainder(), vc.remainder());
        for (r, x) in rc.zip(vc) {
            for l in 0..4 {
                acc[l] += r[l] * x[l];
            }
        }
        let tail: f64 = rr.iter().zip(vr).map(|(a, b)| a * b).sum();
        (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
    }

    /// ln Σ_l exp(lv_l − t_l) with t computed by `t(l)`, using `buf` as scratch.
    fn lse(lv: &[f64], buf: &mut [f64], t: impl Fn(usize) -> f64) -> f64 {
        let mut m = f64::NEG_INFINITY;
        for (l, b) in buf.iter_mut().enumerate() {
            *b = lv[l] - t(l);
            if *b > m {
                m = *b;
            }
        }
        if m == f64::NEG_INFINITY {
            return m;
        }
        let s: f64 = buf
            .iter()
            .filter(|&&x| x - m > -LSE_CUT)
            .map(|x| (x - m).exp())
            .sum();
        m + s.ln()
    }
}

impl GibbsOperator for DenseGibbsKernel {
    fn len(&self) -> usize {
        self.centres.len() / self.dim
    }

    fn epsilon(&self) -> f64 {
        self.epsilon
    }

    fn set_epsilon(&mut self, epsilon: f64) -> Result<(), InputError> {
        check_epsilon(epsilon)?;
        if epsilon != self.epsilon {
            self.epsilon = epsilon;
            self.fill();
        }
        Ok(())
    }

    fn apply(&self, v: &[f64], out: &mut [f64], _work: &mut [f64]) -> Result<(), InputError> {
        let n = self.len();
        check_len("input", n, v.len())?;
        check_len("output", n, out.len())?;
        out.par_iter_mut().enumerate().for_each(|(k, o)| {
            *o = Self::dot(&self.xi[k * n..(k + 1) * n], v);
        });
        Ok(())
    }

    fn apply_log(&self, lv: &[f64], out: &mut [f64], _work: &mut [f64]) -> Result<(), InputError> {
        let n = self.len();
        check_len("input", n, lv.len())?;
        check_len("output", n, out.len())?;
        let eps = self.epsilon;
        out.par_iter_mut().enumerate().for_each_init(
            || vec![0.0; n],
            |buf, (k, o)| *o = Self::lse(lv, buf, |l| self.cost(k, l) / eps),
        );
        Ok(())
    }

    fn transport_cost(&self, a: &[f64], b: &[f64]) -> Result<f64, InputError> {
        let n = self.len();
        check_len("scaling a", n, a.len())?;
        check_len("scaling b", n, b.len())?;
        Ok(deterministic_sum(n, |k| {
            if a[k] == 0.0 {
                return 0.0;
            }
            let row = &self.xi[k * n..(k + 1) * n];
            a[k] * (0..n).map(|l| self.cost(k, l) * row[l] * b[l]).sum::<f64>()
        }))
    }

    fn transport_cost_log(&self, la: &[f64], lb: &[f64]) -> Result<f64, InputError> {
        let n = self.len();
        check_len("log-scaling a", n, la.len())?;
        check_len("log-scaling b", n, lb.len())?;
        let eps = self.epsilon;
        let mut buf = vec![0.0; n];
        // sequential over rows to reuse the buffer: this is called once per step
        let mut total = 0.0;
        for (k, &lak) in la.iter().enumerate() {
            if lak == f64::NEG_INFINITY {
                continue;
            }
            let l = Self::lse(lb, &mut buf, |l| {
                let c = self.cost(k, l);
                if c > 0.0 {
                    c / eps - c.ln()
                } else {
                    f64::INFINITY
                }
            });
            if l != f64::NEG_INFINITY {
                total += (lak + l).exp();
            }
        }
        Ok(total)
    }

    fn storage_bytes(&self) -> u64 {
        (self.xi.len() as u64) * 8
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

    /// The tensor kernel on a full-grid vector agrees with the dense kernel, in 1D, 2D and 3D,
    /// with a mask, in the plain and the log domain, and for the transport cost.
    #[test]
    fn tensor_kernel_matches_dense_kernel() {
        let meshes = [
            Mesh::grid(&[13], &[-1.0], &[2.0]).unwrap(),
            Mesh::grid(&[9, 6], &[0.0, -1.0], &[1.0, 1.0]).unwrap(),
            Mesh::grid(&[5, 4, 7], &[0.0; 3], &[1.0, 0.8, 1.4]).unwrap(),
            // sizes that exercise the register-blocked paths (4 rows x 8 columns) and their edges
            Mesh::grid(&[19, 24], &[0.0, -1.0], &[1.0, 1.0]).unwrap(),
            Mesh::grid(&[6, 9, 17], &[0.0; 3], &[1.0, 0.7, 1.2]).unwrap(),
            Mesh::grid(&[70], &[0.0], &[1.0]).unwrap(),
            Mesh::masked_grid(
                &[8, 7],
                &[0.0; 2],
                &[1.0; 2],
                Some((0..56).map(|i| i % 5 != 2).collect()),
            )
            .unwrap(),
        ];
        for mesh in &meshes {
            for &eps in &[0.5, 0.05, 0.002] {
                let tk = GibbsKernel::new(mesh, eps).unwrap();
                let dk = DenseGibbsKernel::new(mesh, eps, 1 << 30).unwrap();
                let grid_n = tk.len();
                let idx = mesh.grid_index();
                let vc = rand_vec(mesh.n_cells(), 7);
                let wc = rand_vec(mesh.n_cells(), 11);
                let mut v = vec![0.0; grid_n];
                let mut w = vec![0.0; grid_n];
                for (k, &g) in idx.iter().enumerate() {
                    v[g] = vc[k];
                    w[g] = wc[k];
                }
                let (mut out, mut work) = (vec![0.0; grid_n], vec![0.0; grid_n]);
                tk.apply(&v, &mut out, &mut work).unwrap();
                let mut dout = vec![0.0; mesh.n_cells()];
                dk.apply(&vc, &mut dout, &mut []).unwrap();
                for (k, &g) in idx.iter().enumerate() {
                    assert!(
                        (out[g] - dout[k]).abs() <= 1e-13 * (1.0 + dout[k].abs()),
                        "plain eps {eps}"
                    );
                }
                // log domain: ln ξ e^{ln v}, with −∞ on masked cells
                let lv: Vec<f64> = (0..grid_n)
                    .map(|g| {
                        if v[g] > 0.0 {
                            v[g].ln() * 30.0
                        } else {
                            f64::NEG_INFINITY
                        }
                    })
                    .collect();
                let lvc: Vec<f64> = idx.iter().map(|&g| lv[g]).collect();
                tk.apply_log(&lv, &mut out, &mut work).unwrap();
                dk.apply_log(&lvc, &mut dout, &mut []).unwrap();
                for (k, &g) in idx.iter().enumerate() {
                    assert!(
                        (out[g] - dout[k]).abs() <= 1e-12 * (1.0 + dout[k].abs()),
                        "log eps {eps}: {} vs {}",
                        out[g],
                        dout[k]
                    );
                }
                // transport cost, against a direct double sum
                let direct: f64 = (0..mesh.n_cells())
                    .map(|k| {
                        (0..mesh.n_cells())
                            .map(|l| {
                                let c: f64 = mesh
                                    .centre(k)
                                    .iter()
                                    .zip(mesh.centre(l))
                                    .map(|(a, b)| (a - b) * (a - b))
                                    .sum();
                                vc[k] * c * (-c / eps).exp() * wc[l]
                            })
                            .sum::<f64>()
                    })
                    .sum();
                let t = tk.transport_cost(&v, &w).unwrap();
                let td = dk.transport_cost(&vc, &wc).unwrap();
                assert!(
                    (t - direct).abs() <= 1e-12 * direct.abs().max(1e-300),
                    "{t} vs {direct}"
                );
                assert!((td - direct).abs() <= 1e-12 * direct.abs().max(1e-300));
                let lw: Vec<f64> = (0..grid_n)
                    .map(|g| {
                        if w[g] > 0.0 {
                            w[g].ln()
                        } else {
                            f64::NEG_INFINITY
                        }
                    })
                    .collect();
                let la: Vec<f64> = (0..grid_n)
                    .map(|g| {
                        if v[g] > 0.0 {
                            v[g].ln()
                        } else {
                            f64::NEG_INFINITY
                        }
                    })
                    .collect();
                let tl = tk.transport_cost_log(&la, &lw).unwrap();
                assert!(
                    (tl - direct).abs() <= 1e-11 * direct.abs().max(1e-300),
                    "log cost {tl} vs {direct}"
                );
                let lac: Vec<f64> = idx.iter().map(|&g| la[g]).collect();
                let lwc: Vec<f64> = idx.iter().map(|&g| lw[g]).collect();
                let tdl = dk.transport_cost_log(&lac, &lwc).unwrap();
                assert!((tdl - direct).abs() <= 1e-11 * direct.abs().max(1e-300));
            }
        }
    }

    #[test]
    fn log_domain_does_not_underflow_where_the_plain_kernel_does() {
        // ε = 1e-4 on [-5, 5]: mass 3 apart sees exp(−9e4) = 0 in the plain kernel.
        let mesh = Mesh::grid(&[100], &[-5.0], &[5.0]).unwrap();
        let k = GibbsKernel::new(&mesh, 1e-4).unwrap();
        assert!(k.bands()[0] < 99);
        let mut lv = vec![f64::NEG_INFINITY; 100];
        lv[80] = 0.0;
        let (mut out, mut work) = (vec![0.0; 100], vec![0.0; 100]);
        k.apply_log(&lv, &mut out, &mut work).unwrap();
        // exact: −(x_i − x_80)²/ε
        for (i, &o) in out.iter().enumerate() {
            let d = (i as f64 - 80.0) * 0.1;
            assert!(
                (o + d * d / 1e-4).abs() <= 1e-9 * (1.0 + d * d / 1e-4),
                "{i}: {o}"
            );
        }
        let v: Vec<f64> = lv.iter().map(|x| x.exp()).collect();
        k.apply(&v, &mut out, &mut work).unwrap();
        assert_eq!(out[20], 0.0);
    }

    #[test]
    fn dense_kernel_refuses_with_the_memory_it_needs() {
        let mesh = Mesh::grid(&[100, 100], &[0.0; 2], &[1.0; 2]).unwrap();
        match DenseGibbsKernel::new(&mesh, 0.1, 1 << 20) {
            Err(InputError::TooLarge { bytes, limit, .. }) => {
                assert_eq!(bytes, 10_000u64 * 10_000 * 8);
                assert_eq!(limit, 1 << 20);
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let mesh = Mesh::grid(&[40, 33], &[0.0; 2], &[1.0; 2]).unwrap();
        let k = GibbsKernel::new(&mesh, 0.01).unwrap();
        let v = rand_vec(k.len(), 3);
        let lv: Vec<f64> = v.iter().map(|x| 20.0 * x).collect();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let (mut a, mut b, mut w) =
                    (vec![0.0; k.len()], vec![0.0; k.len()], vec![0.0; k.len()]);
                k.apply(&v, &mut a, &mut w).unwrap();
                k.apply_log(&lv, &mut b, &mut w).unwrap();
                (a, b, k.transport_cost(&v, &v).unwrap())
            })
        };
        let (a1, b1, c1) = run(1);
        let (a3, b3, c3) = run(3);
        assert!(a1.iter().zip(&a3).all(|(x, y)| x.to_bits() == y.to_bits()));
        assert!(b1.iter().zip(&b3).all(|(x, y)| x.to_bits() == y.to_bits()));
        assert_eq!(c1.to_bits(), c3.to_bits());
    }

    #[test]
    fn branch_free_exp_matches_std() {
        let mut worst: f64 = 0.0;
        for i in 0..=200_000 {
            let x = -60.0 * i as f64 / 200_000.0;
            let (a, b) = (exp_nonpositive(x), x.exp());
            worst = worst.max(((a - b) / b).abs());
        }
        assert!(worst < 4.0 * f64::EPSILON, "relative error {worst:e}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!((exp_nonpositive(-700.0) / (-700f64).exp() - 1.0).abs() < 1e-14);
    }

    #[test]
    fn fast_exp_matches_std() {
        let mut worst: f64 = 0.0;
        for i in 0..=1_000_000 {
            let x = -740.0 + 1450.0 * i as f64 / 1_000_000.0;
            let (a, b) = (fast_exp(x), x.exp());
            if b > 0.0 && b.is_finite() {
                worst = worst.max(((a - b) / b).abs());
            } else {
                assert_eq!(a, b);
            }
        }
        assert!(worst < 3.0 * f64::EPSILON, "relative error {worst:e}");
        assert_eq!(fast_exp(0.0), 1.0);
        assert!(fast_exp(f64::NAN).is_nan());
        assert_eq!(fast_exp(f64::NEG_INFINITY), 0.0);
        assert_eq!(fast_exp(800.0), f64::INFINITY);
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
        assert!(GibbsKernel::new(&mesh, -1.0).is_err());
    }
}

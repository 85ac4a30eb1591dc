//! Reductions whose result does not depend on the number of threads.

use rayon::prelude::*;

/// Chunk length of [`deterministic_sum`].
const SUM_CHUNK: usize = 4096;

/// Σ_i f(i) over 0..n, computed in fixed chunks of 4096 terms summed in order: the result is
/// bit-identical whatever the number of threads (datasets and resumed runs rely on it).
///
/// ```rust
/// let s = jko_core::deterministic_sum(10_000, |i| i as f64);
/// assert_eq!(s, 49_995_000.0);
/// ```
pub fn deterministic_sum(n: usize, f: impl Fn(usize) -> f64 + Sync) -> f64 {
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

//! The convex conjugate of the internal energy, cell by cell.
//!
//! For U(s) = β s ln s + s^m/(m − 1) + ι_{[0, ρ_max]}(s) (any non-empty subset of the three
//! terms), the conjugate is U*(p) = sup_{0 ≤ s ≤ ρ_max} p s − U(s) and the density of a dual
//! potential is ρ(p) = (U*)'(p) = argmax_s, i.e. U'(s) = p clamped to [0, ρ_max]:
//! - entropy: s = e^{p/β − 1};
//! - porous medium: s = ((m − 1) p / m)₊^{1/(m−1)};
//! - both: β(t + 1) + m/(m − 1) e^{(m−1)t} = p in t = ln s, by Newton from the right (the
//!   left side is convex and increasing in t, and each term alone bounds the root above);
//! - the cap alone: s = ρ_max 1{p > 0}, a step, which this method cannot use as a density map
//!   (see [`LocalDual::new`]);
//! - entropy with the cap: s = min(ρ_max, e^{p/β − 1}), U* C¹ with a kink of ρ at
//!   p* = U'(ρ_max) = β(1 + ln ρ_max) (dρ/dp = 0 above it).
//!
//! The JKO step's dual potential φ gives ρ = ρ(φ − V) at every cell, and adding a constant c
//! to φ changes the dual objective by c·M − Σ|K| U*(φ − V + c) + Σ|K| U*(φ − V): its maximum
//! over c is where Σ|K| ρ(φ − V + c) = M. [`LocalDual::mass_shift`] solves that scalar
//! equation, which is why every density the solver returns has exactly the mass of ρⁿ.

use crate::lattice::par_sum;
use jko_core::deterministic_sum_pair_of;

/// θ of [`LocalDual::capped_pressure`].
const CAP_RISE: f64 = 10.0;

/// U, U* and ρ = (U*)' of the local energy terms of one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LocalDual {
    beta: Option<f64>,
    m: Option<f64>,
    cap: Option<f64>,
}

impl LocalDual {
    /// `None` when neither entropy nor porous medium is present: without a strictly convex
    /// internal energy ρ(p) is not a function (a step for the cap alone, undefined for a
    /// potential alone).
    pub fn new(beta: Option<f64>, m: Option<f64>, cap: Option<f64>) -> Option<LocalDual> {
        if beta.is_none() && m.is_none() {
            return None;
        }
        Some(LocalDual { beta, m, cap })
    }

    /// The pressure above which a cell delivering density s is on the capped branch of the
    /// source residual, P(s) = U'(ρ_max) + θ (U'(ρ_max/2) − U'(s))₊, and the factor
    /// 1 − (dP/ds)/U''(s) (1 + θ below ρ_max/2, else 1) that multiplies the linearisation's
    /// κ on that branch; `None` without a cap. The residual is r = min(p, P(s)) − U'(s). P = U'(ρ_max) wherever
    /// s ≥ ρ_max/2, so near the solution r = U'(ρ(p)) − U'(s) exactly (semismooth, derivative 0
    /// in p on capped cells); below ρ_max/2, P rises so that a cell far from the cap is never
    /// on the capped branch (see the crate docs, "The cap").
    pub fn capped_pressure(&self, s: f64) -> Option<(f64, f64)> {
        let cap = self.cap?;
        let half = self.du(0.5 * cap) - self.du(s);
        Some(if half > 0.0 {
            (self.du(cap) + CAP_RISE * half, 1.0 + CAP_RISE)
        } else {
            (self.du(cap), 1.0)
        })
    }

    /// The cap ρ_max, if any.
    pub fn cap(&self) -> Option<f64> {
        self.cap
    }

    /// The exponent m when the internal energy is the porous medium without entropy: then
    /// U'(0) = 0 is finite and the edge of a compact support is a free boundary where the
    /// pressure vanishes.
    pub fn free_boundary_exponent(&self) -> Option<f64> {
        match (self.beta, self.m) {
            (None, Some(m)) => Some(m),
            _ => None,
        }
    }

    #[cfg(test)]
    /// Internal energy density U(s) (without the cap).
    pub fn u(&self, s: f64) -> f64 {
        if s <= 0.0 {
            return 0.0;
        }
        let mut v = 0.0;
        if let Some(b) = self.beta {
            v += b * s * s.ln();
        }
        if let Some(m) = self.m {
            v += s.powf(m) / (m - 1.0);
        }
        v
    }

    /// U'(s); −∞ at s = 0 with entropy.
    pub fn du(&self, s: f64) -> f64 {
        let mut v = 0.0;
        if let Some(b) = self.beta {
            v += b * (s.ln() + 1.0);
        }
        if let Some(m) = self.m {
            v += m / (m - 1.0) * power(s.max(0.0), m - 1.0);
        }
        v
    }

    /// ρ(p) = (U*)'(p) ∈ [0, ρ_max].
    pub fn rho(&self, p: f64) -> f64 {
        let s = match (self.beta, self.m) {
            (Some(b), None) => (p / b - 1.0).exp(),
            (None, Some(m)) => power(((m - 1.0) / m * p).max(0.0), 1.0 / (m - 1.0)),
            (Some(b), Some(m)) => {
                let ta = p / b - 1.0;
                let mut t = if p > 0.0 {
                    ta.min(((m - 1.0) / m * p).ln() / (m - 1.0))
                } else {
                    ta
                };
                for _ in 0..60 {
                    let e = ((m - 1.0) * t).exp();
                    let f = b * (t + 1.0) + m / (m - 1.0) * e - p;
                    let df = b + m * e;
                    let dt = f / df;
                    t -= dt;
                    if dt.abs() <= 1e-15 * (1.0 + t.abs()) {
                        break;
                    }
                }
                t.exp()
            }
            (None, None) => 0.0,
        };
        match self.cap {
            Some(c) => s.min(c),
            None => s,
        }
    }

    /// dρ/dp = 1/U''(ρ) where 0 < ρ < ρ_max, else 0.
    pub fn drho(&self, p: f64) -> f64 {
        self.drho_at(self.rho(p))
    }

    /// dρ/dp at the density s = ρ(p).
    pub fn drho_at(&self, s: f64) -> f64 {
        if s <= 0.0 || self.cap.is_some_and(|c| s >= c) {
            return 0.0;
        }
        let mut u2 = 0.0;
        if let Some(b) = self.beta {
            u2 += b / s;
        }
        if let Some(m) = self.m {
            u2 += m * power(s, m - 2.0);
        }
        1.0 / u2
    }

    /// κ(s) = s U''(s) = β + m s^{m−1}: the pressure change per relative density change.
    pub fn kappa(&self, s: f64) -> f64 {
        let mut k = 0.0;
        if let Some(b) = self.beta {
            k += b;
        }
        if let Some(m) = self.m {
            k += m * power(s.max(0.0), m - 1.0);
        }
        k
    }

    #[cfg(test)]
    /// U*(p) = p ρ(p) − U(ρ(p)).
    pub fn ustar(&self, p: f64) -> f64 {
        let s = self.rho(p);
        p * s - self.u(s)
    }

    /// (Σ ρ(p_i + c), Σ ρ'(p_i + c)) over the cells where `active(i)`, one ρ per cell; the
    /// cells with p_i + c ≤ 0 skipped when `vacuum` (their terms are exact zeros). Over the
    /// slice, as [`linear_sums`].
    fn sums(
        &self,
        p: &[f64],
        active: &(impl Fn(usize) -> bool + Sync),
        vacuum: bool,
        c: f64,
    ) -> (f64, f64) {
        deterministic_sum_pair_of(p, |i, q| {
            if active(i) && !(vacuum && q + c <= 0.0) {
                let s = self.rho(q + c);
                (s, self.drho_at(s))
            } else {
                (0.0, 0.0)
            }
        })
    }

    /// The constant c with Σ_i w ρ(p_i + c) = mass over the cells where `active(i)`; every
    /// p_i finite there. Safeguarded Newton on the increasing function c ↦ mass(c).
    pub fn mass_shift(
        &self,
        p: &[f64],
        active: impl Fn(usize) -> bool + Sync,
        w: f64,
        mass: f64,
    ) -> Option<f64> {
        let n = p.len();
        // The porous medium alone (with or without the cap): ρ(p) = ρ'(p) = 0 for p ≤ 0, so
        // the cells of vacuum cost one comparison (the same sums: their terms are exact zeros).
        let vacuum = self.beta.is_none();
        // m = 2 alone: ρ(q) = max(q/2, 0) and ρ' = 1/2 on the support, with the constants of
        // `rho` and `drho_at` taken out of the loop (the same values).
        let linear = match (self.beta, self.m, self.cap) {
            (None, Some(m), None) if m == 2.0 => Some(((m - 1.0) / m, 1.0 / m)),
            _ => None,
        };
        // Σρ and Σρ' in one sweep, one ρ per cell.
        let eval = |c: f64| {
            let (m, dm) = match linear {
                Some(coefficients) => linear_sums(p, &active, coefficients, c),
                None => self.sums(p, &active, vacuum, c),
            };
            (w * m - mass, w * dm)
        };
        // Entropy alone, no cap: ρ(p + c) = e^{c/β} ρ(p).
        if let (Some(b), None, None) = (self.beta, self.m, self.cap) {
            let total = w * par_sum(n, |i| if active(i) { self.rho(p[i]) } else { 0.0 });
            if total > 0.0 && total.is_finite() {
                let c = b * (mass / total).ln();
                // One Newton correction removes the rounding of the logarithm.
                let (g, dg) = eval(c);
                return Some(if dg > 0.0 { c - g / dg } else { c });
            }
        }
        let scale = self.beta.unwrap_or(1.0).max(1e-3);
        let (g0, dg0) = eval(0.0);
        if g0 == 0.0 {
            return Some(0.0);
        }
        // Bracket the root, from twice the Newton step at 0 where there is one: the shift is
        // usually small against `scale` (the back-and-forth finisher shifts φ once per pass,
        // after an ascent step that changes the mass little), and a bracket of width `scale`
        // costs the bisections down to it.
        let newton0 = -g0 / dg0;
        let (mut lo, mut hi) = (0.0, 0.0);
        let mut step = if dg0 > 0.0 && newton0.is_finite() && newton0 != 0.0 {
            2.0 * newton0.abs()
        } else {
            scale
        };
        let mut found = false;
        for _ in 0..200 {
            let c = if g0 < 0.0 { step } else { -step };
            let (g, _) = eval(c);
            if !g.is_finite() {
                step *= 0.5;
                continue;
            }
            if (g0 < 0.0) == (g < 0.0) {
                if g0 < 0.0 {
                    lo = c;
                } else {
                    hi = c;
                }
                step *= 2.0;
            } else {
                if g0 < 0.0 {
                    hi = c;
                } else {
                    lo = c;
                }
                found = true;
                break;
            }
        }
        if !found {
            return None;
        }
        let mut c = if newton0 > lo && newton0 < hi {
            newton0
        } else {
            0.5 * (lo + hi)
        };
        for _ in 0..200 {
            let (g, dg) = eval(c);
            if g.abs() <= 1e-15 * mass {
                return Some(c);
            }
            if g < 0.0 {
                lo = c;
            } else {
                hi = c;
            }
            let newton = if dg > 0.0 { c - g / dg } else { f64::NAN };
            c = if newton > lo && newton < hi {
                newton
            } else {
                0.5 * (lo + hi)
            };
            if hi - lo <= 1e-16 * (1.0 + c.abs()) {
                return Some(c);
            }
        }
        Some(c)
    }
}

/// (Σ a(p_i + c), ds × #cells) over the cells where `active(i)` and a(p_i + c) > 0: the mass
/// and its derivative in c for m = 2, ρ(q) = max(q/2, 0). Summed over the slice
/// (`deterministic_sum_pair_of`, the same chunks and order as the index form): through the index
/// closure of `deterministic_sum_pair` one sum took 0.88 ms at 512² in the release build, over
/// the slice 0.14 ms (about 4 sums per shift, one shift per pass of the back-and-forth ascent).
fn linear_sums(
    p: &[f64],
    active: &(impl Fn(usize) -> bool + Sync),
    (a, ds): (f64, f64),
    c: f64,
) -> (f64, f64) {
    deterministic_sum_pair_of(p, |i, q| {
        let s = a * (q + c);
        if s > 0.0 && active(i) {
            (s, ds)
        } else {
            (0.0, 0.0)
        }
    })
}

/// s^e for s ≥ 0, without the general `powf` for the exponents of the porous medium with
/// m = 2 and 3 (e = 0, 1, ½): `powf` was 18% of the authors' example's profile (rho, drho and
/// the mass shift call it once per cell per evaluation).
#[inline]
fn power(s: f64, e: f64) -> f64 {
    if e == 1.0 {
        s
    } else if e == 0.0 {
        1.0
    } else if e == 0.5 {
        s.sqrt()
    } else {
        s.powf(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rho_inverts_du_and_is_the_derivative_of_ustar() {
        for dual in [
            LocalDual::new(Some(0.7), None, None),
            LocalDual::new(None, Some(2.0), None),
            LocalDual::new(None, Some(3.0), Some(1.5)),
            LocalDual::new(Some(0.3), Some(2.5), None),
            LocalDual::new(Some(0.01), None, Some(1.0)),
        ]
        .into_iter()
        .flatten()
        {
            for &p in &[-2.0, -0.3, 0.1, 0.8, 1.7, 3.0] {
                let s = dual.rho(p);
                if s > 1e-12 && dual.cap.is_none_or(|c| s < c) {
                    assert!(
                        (dual.du(s) - p).abs() < 1e-10,
                        "{dual:?} p {p}: U'(ρ) = {}",
                        dual.du(s)
                    );
                }
                let e = 1e-6;
                let fd = (dual.ustar(p + e) - dual.ustar(p - e)) / (2.0 * e);
                assert!(
                    (fd - s).abs() < 1e-6 * (1.0 + s),
                    "{dual:?} p {p}: {fd} vs {s}"
                );
                let fd2 = (dual.rho(p + e) - dual.rho(p - e)) / (2.0 * e);
                assert!(
                    (fd2 - dual.drho(p)).abs() < 1e-5 * (1.0 + fd2.abs()),
                    "{dual:?} p {p}"
                );
            }
        }
        assert!(LocalDual::new(None, None, Some(1.0)).is_none());
    }

    #[test]
    fn mass_shift_hits_the_mass() {
        let p: Vec<f64> = (0..200)
            .map(|i| -((i as f64 - 100.0) / 30.0).powi(2))
            .collect();
        for dual in [
            LocalDual::new(Some(1.0), None, None),
            LocalDual::new(None, Some(2.0), None),
            LocalDual::new(Some(0.2), Some(3.0), Some(0.9)),
        ]
        .into_iter()
        .flatten()
        {
            let c = dual.mass_shift(&p, |_| true, 0.05, 3.0).unwrap();
            let m: f64 = p.iter().map(|&x| 0.05 * dual.rho(x + c)).sum();
            assert!((m - 3.0).abs() < 1e-13, "{dual:?}: {m}");
        }
    }
}

//! KL proximal maps of the cell energy, in masses and in log form.
//!
//! For a cell K with volume |K|, potential V_K and mass q = |K|ρ, the energy of docs/mathematics.md §1 is
//!
//!   F_K(q) = β q (ln q − ln|K|) + |K| (q/|K|)^m/(m − 1) + V_K q,   q ≤ |K| ρ_max,
//!
//! (β q ln(q/|K|) = |K|·β ρ ln ρ). The KL proximal map with step σ = 2τ/ε is
//!
//!   prox_σ(z) = argmin_q σ F_K(q) + KL(q | z),   KL(q | z) = q ln(q/z) − q + z.
//!
//! Setting the derivative to zero, with u = ln q:
//!
//!   (1 + σβ) u + σ m/(m−1) |K|^{1−m} e^{(m−1)u} = ln z − σβ(1 − ln|K|) − σV_K.
//!
//! - Without the porous term this is linear in u:
//!   q = (z |K|^{σβ} e^{−σ(β + V)})^{1/(1+σβ)}  (docs/mathematics.md §2.3; V alone gives q = z e^{−σV}).
//! - With it, the left side is convex and increasing in u: one scalar Newton solve per cell
//!   (see `KlProx::log_mass`), started to the right of the root so that it cannot overshoot.
//! - The bound q ≤ |K|ρ_max of a convex one-dimensional problem is applied by clipping the
//!   unconstrained minimiser: q = min(q*, |K|ρ_max) (congestion alone: q = min(z, |K|ρ_max)).
//!
//! Everything is computed from ln z and returned as ln q, so the map works in the log domain.

use crate::kernel::fast_exp;

/// The KL proximal map of one step's cell energy with step σ = 2τ/ε.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct KlProx {
    /// Proximal step σ = 2τ/ε.
    pub sigma: f64,
    /// Temperature β (0 without an entropy term).
    pub beta: f64,
    /// Porous-medium exponent m > 1.
    pub porous: Option<f64>,
    /// Congestion bound ρ_max.
    pub max_density: Option<f64>,
}

impl KlProx {
    /// ln q of the proximal map at ln z, for a cell with ln|K| = `ln_vol` and potential `v`.
    /// ln z = −∞ (z = 0) gives ln q = −∞.
    pub(crate) fn log_mass(&self, lz: f64, ln_vol: f64, v: f64) -> f64 {
        if lz == f64::NEG_INFINITY {
            return f64::NEG_INFINITY;
        }
        let sb = self.sigma * self.beta;
        let b = 1.0 + sb;
        let c = lz - sb * (1.0 - ln_vol) - self.sigma * v;
        let free = c / b;
        let u = match self.porous {
            None => free,
            Some(m) => {
                let k = m - 1.0;
                let ln_a = (self.sigma * m / k).ln() - k * ln_vol;
                porous_root(ln_a, k, b, free)
            }
        };
        match self.max_density {
            Some(r) => u.min(ln_vol + r.ln()),
            None => u,
        }
    }
}

/// Root u* of g(u) = e^{ln_a + k u} − b (hi − u), where hi is the root without the exponential.
///
/// g is convex and increasing, and so is h(u) = ln_a + k u − ln(b (hi − u)) on u < hi; both
/// vanish at u*. From a point right of u*, a Newton step on either lands in [u*, u): take the
/// smaller one (the step on h is nearly exact where the exponential dominates, the step on g
/// where the linear part does). From the left, a Newton step on g lands in (u*, hi).
fn porous_root(ln_a: f64, k: f64, b: f64, hi: f64) -> f64 {
    let mut x = hi;
    for _ in 0..200 {
        let e = ln_a + k * x;
        let d = hi - x;
        // g(x)/g'(x), written to avoid overflowing e^e.
        let step_g = if e > 0.0 {
            let ie = fast_exp(-e);
            (1.0 - b * d * ie) / (k + b * ie)
        } else {
            let ex = fast_exp(e);
            (ex - b * d) / (k * ex + b)
        };
        let mut next = x - step_g;
        let lbd = (b * d).ln();
        let right_of_root = d <= 0.0 || e > lbd;
        if right_of_root && d > 0.0 {
            let h = e - lbd;
            next = next.min(x - h / (k + 1.0 / d));
        }
        if (next - x).abs() <= 1e-15 * x.abs().max(1.0) {
            return next;
        }
        x = next;
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    /// σ F_K(q) + KL(q | z) − z for one cell (the constant z dropped: it would swamp the
    /// variation of the objective when q ≪ z).
    fn objective(p: &KlProx, q: f64, z: f64, vol: f64, v: f64) -> f64 {
        let rho = q / vol;
        let mut f = v * q;
        if p.beta > 0.0 {
            f += vol * p.beta * rho * rho.ln();
        }
        if let Some(m) = p.porous {
            f += vol * rho.powf(m) / (m - 1.0);
        }
        p.sigma * f + q * (q.ln() - z.ln()) - q
    }

    /// Brute force: golden-section search on u = ln q over a wide bracket.
    fn brute_force(p: &KlProx, z: f64, vol: f64, v: f64) -> f64 {
        let phi = |u: f64| objective(p, u.exp(), z, vol, v);
        let (mut lo, mut hi) = (-800.0f64, 30.0f64);
        if let Some(r) = p.max_density {
            hi = (vol * r).ln();
        }
        let g = (5f64.sqrt() - 1.0) / 2.0;
        let (mut x1, mut x2) = (hi - g * (hi - lo), lo + g * (hi - lo));
        let (mut f1, mut f2) = (phi(x1), phi(x2));
        for _ in 0..400 {
            if f1 < f2 {
                hi = x2;
                x2 = x1;
                f2 = f1;
                x1 = hi - g * (hi - lo);
                f1 = phi(x1);
            } else {
                lo = x1;
                x1 = x2;
                f1 = f2;
                x2 = lo + g * (hi - lo);
                f2 = phi(x2);
            }
        }
        0.5 * (lo + hi)
    }

    fn cases() -> Vec<(f64, f64, f64)> {
        // (z, |K|, V)
        vec![
            (0.3, 0.01, 0.5),
            (2e-3, 0.1, -1.0),
            (1.5, 1.0, 3.0),
            (1e-6, 0.04, 0.0),
            (0.05, 2.0, 0.2),
        ]
    }

    #[test]
    fn entropy_potential_closed_form_matches_brute_force() {
        for &sigma in &[0.1, 2.0, 40.0] {
            for &beta in &[0.5, 1.0] {
                let p = KlProx {
                    sigma,
                    beta,
                    porous: None,
                    max_density: None,
                };
                for (z, vol, v) in cases() {
                    let u = p.log_mass(z.ln(), vol.ln(), v);
                    // the closed form of docs/mathematics.md §2.3, written in masses
                    let q = (z * vol.powf(sigma * beta) * (-sigma * (beta + v)).exp())
                        .powf(1.0 / (1.0 + sigma * beta));
                    assert!(
                        (u.exp() - q).abs() <= 1e-12 * q,
                        "closed form {q} vs {}",
                        u.exp()
                    );
                    let ub = brute_force(&p, z, vol, v);
                    assert!(
                        (u - ub).abs() < 1e-6,
                        "σ {sigma} β {beta} z {z}: {u} vs brute force {ub}"
                    );
                }
            }
        }
    }

    #[test]
    fn potential_only_and_congestion() {
        let p = KlProx {
            sigma: 3.0,
            beta: 0.0,
            porous: None,
            max_density: Some(2.0),
        };
        for (z, vol, v) in cases() {
            let u = p.log_mass(z.ln(), vol.ln(), v);
            let expect = (z * (-3.0 * v).exp()).min(2.0 * vol);
            assert!((u.exp() - expect).abs() <= 1e-13 * expect);
            let ub = brute_force(&p, z, vol, v);
            assert!((u - ub).abs() < 1e-6, "{u} vs {ub}");
        }
        // congestion alone: q = min(z, |K| ρ_max)
        let p = KlProx {
            sigma: 3.0,
            beta: 0.0,
            porous: None,
            max_density: Some(1.0),
        };
        assert_eq!(p.log_mass(2f64.ln(), 0.0, 0.0), 0.0);
        assert!((p.log_mass(0.5f64.ln(), 0.0, 0.0).exp() - 0.5).abs() < 1e-15);
    }

    #[test]
    fn porous_newton_matches_brute_force_and_is_stationary() {
        for &m in &[1.5, 2.0, 4.0] {
            for &sigma in &[0.05, 5.0, 200.0] {
                for &beta in &[0.0, 0.3] {
                    for &cap in &[None, Some(3.0)] {
                        let p = KlProx {
                            sigma,
                            beta,
                            porous: Some(m),
                            max_density: cap,
                        };
                        for (z, vol, v) in cases() {
                            let u = p.log_mass(z.ln(), vol.ln(), v);
                            assert!(u.is_finite());
                            let ub = brute_force(&p, z, vol, v);
                            assert!(
                                (u - ub).abs() < 1e-5,
                                "m {m} σ {sigma} β {beta} z {z} |K| {vol}: {u} vs {ub}"
                            );
                            if cap.is_none() {
                                // stationarity of the objective in u
                                let k = m - 1.0;
                                let g = (1.0 + sigma * beta) * u
                                    + sigma * m / k * vol.powf(-k) * (k * u).exp()
                                    - (z.ln() - sigma * beta * (1.0 - vol.ln()) - sigma * v);
                                assert!(
                                    g.abs() < 1e-10 * (1.0 + z.ln().abs() + sigma),
                                    "residual {g}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn porous_newton_survives_extreme_arguments() {
        let p = KlProx {
            sigma: 1e4,
            beta: 0.0,
            porous: Some(3.0),
            max_density: None,
        };
        for &lz in &[-700.0, -30.0, 0.0, 50.0, 700.0] {
            let u = p.log_mass(lz, (1e-4f64).ln(), -2.0);
            assert!(u.is_finite(), "ln z {lz}");
            let g = u + 1e4 * 1.5 * 1e8 * (2.0 * u).exp() - (lz + 2e4);
            assert!(
                g.abs() < 1e-9 * (1.0 + lz.abs() + 2e4),
                "ln z {lz}: residual {g}"
            );
        }
        assert_eq!(p.log_mass(f64::NEG_INFINITY, 0.0, 0.0), f64::NEG_INFINITY);
    }
}

//! The cell law: the density of one cell as a function of its "chemical potential" s.
//!
//! Per unit volume a cell carries the internal energy f(ρ) = β ρ ln ρ + ρ^m/(m−1) and the
//! barrier terms of its bounds, e(ρ) = f(ρ) − μ_L ln ρ − μ_U ln(ρ_max − ρ). Its derivative
//! g = e' is strictly increasing on (0, ρ_max), so g(ρ) = s has at most one solution: the
//! minimiser of e(ρ) − s ρ. A safeguarded Newton iteration solves it to machine precision in
//! u = ln ρ, or, when the solution lies in the upper half of (0, ρ_max), in v = ln(ρ_max − ρ),
//! so that the gap to the cap is exact even where ρ rounds to ρ_max. With entropy alone and a
//! negligible barrier it is the closed form ρ = exp(s/β − 1).
//!
//! With μ_L = μ_U = 0 it is the exact (complementarity) law: ρ = 0 when s ≤ f'(0+) (possible
//! without entropy), ρ = ρ_max when s ≥ f'(ρ_max), else f'(ρ) = s.

/// The local law of one step's energy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CellLaw {
    pub beta: Option<f64>,
    pub m: Option<f64>,
    pub rho_max: Option<f64>,
}

/// A solution of the cell law: the density and, with a cap, its gap ρ_max − ρ (0 without).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Cell {
    pub rho: f64,
    pub gap: f64,
}

impl CellLaw {
    /// f'(ρ) (without barriers).
    pub fn f1(&self, rho: f64) -> f64 {
        let mut v = 0.0;
        if let Some(b) = self.beta {
            v += b * (rho.ln() + 1.0);
        }
        if let Some(m) = self.m {
            v += m * rho.powf(m - 1.0) / (m - 1.0);
        }
        v
    }

    /// f''(ρ).
    pub fn f2(&self, rho: f64) -> f64 {
        let mut v = 0.0;
        if let Some(b) = self.beta {
            v += b / rho;
        }
        if let Some(m) = self.m {
            v += m * rho.powf(m - 2.0);
        }
        v
    }

    /// g(ρ) = f'(ρ) − μ_L/ρ + μ_U/gap.
    pub fn slope(&self, rho: f64, gap: f64, mu_l: f64, mu_u: f64) -> f64 {
        let mut v = self.f1(rho) - mu_l / rho;
        if self.rho_max.is_some() && mu_u > 0.0 {
            v += mu_u / gap;
        }
        v
    }

    /// g'(ρ) = f''(ρ) + μ_L/ρ² + μ_U/gap².
    pub fn curvature(&self, rho: f64, gap: f64, mu_l: f64, mu_u: f64) -> f64 {
        let mut v = self.f2(rho) + mu_l / (rho * rho);
        if self.rho_max.is_some() && mu_u > 0.0 {
            v += mu_u / (gap * gap);
        }
        v
    }

    /// dρ/ds = 1/g'(ρ) at a solution; 0 at a bound of the exact law (the element of the
    /// generalised derivative that keeps the cell at its bound).
    pub fn compliance(&self, c: Cell, mu_l: f64, mu_u: f64) -> f64 {
        if c.rho <= 0.0 || (self.rho_max.is_some() && c.gap <= 0.0) {
            return 0.0;
        }
        1.0 / self.curvature(c.rho, c.gap, mu_l, mu_u)
    }

    /// Solve g(ρ) = s. `guess` is a previous density (≤ 0 for none). `None` when s is outside
    /// the range of g, or for the exact law without internal energy (not a function of s).
    pub fn density(&self, s: f64, mu_l: f64, mu_u: f64, guess: f64) -> Option<Cell> {
        if !s.is_finite() {
            return None;
        }
        let cap = self.rho_max;
        if mu_l == 0.0 {
            if self.beta.is_none() && self.m.is_none() {
                return None;
            }
            // f'(0+) = 0 for the porous term alone.
            if self.beta.is_none() && s <= 0.0 {
                return Some(Cell {
                    rho: 0.0,
                    gap: cap.unwrap_or(0.0),
                });
            }
        }
        if let Some(c) = cap
            && mu_u == 0.0
            && s >= self.f1(c)
        {
            return Some(Cell { rho: c, gap: 0.0 });
        }
        if let (None, Some(2.0), None) = (self.beta, self.m, cap) {
            // m = 2 alone: 2ρ − μ_L/ρ = s is a quadratic, ρ = (s + r)/4 = 2μ_L/(r − s) with
            // r = √(s² + 8μ_L) (the second form where s < 0, free of cancellation).
            let r = (s * s + 8.0 * mu_l).sqrt();
            let rho = if s >= 0.0 {
                0.25 * (s + r)
            } else {
                2.0 * mu_l / (r - s)
            };
            return (rho.is_finite() && rho > 0.0).then_some(Cell { rho, gap: 0.0 });
        }
        if let (Some(b), None, None) = (self.beta, self.m, cap)
            && mu_l > 0.0
        {
            return entropy_with_barrier(b, mu_l, s);
        }
        if let (Some(b), None) = (self.beta, self.m) {
            let rho = (s / b - 1.0).exp();
            let negligible = mu_l <= 1e-17 * b * rho;
            let below_cap = cap.is_none_or(|c| mu_u == 0.0 && rho < c);
            if rho.is_finite() && rho > 0.0 && negligible && below_cap {
                return Some(Cell {
                    rho,
                    gap: cap.map_or(0.0, |c| c - rho),
                });
            }
        }
        // Which half of (0, ρ_max) holds the solution decides the variable.
        let upper = match cap {
            Some(c) => self.slope(0.5 * c, 0.5 * c, mu_l, mu_u) < s,
            None => false,
        };
        if upper {
            let c = cap?;
            // v = ln(gap), ρ = c − e^v; h(v) = g(ρ) − s decreases in v.
            let v = solve_monotone(
                |v| {
                    let gap = v.exp();
                    let rho = c - gap;
                    let h = self.slope(rho, gap, mu_l, mu_u) - s;
                    let dh = -gap * self.curvature(rho, gap, mu_l, mu_u);
                    (-h, -dh)
                },
                if guess > 0.5 * c && guess < c {
                    (c - guess).ln()
                } else {
                    (0.25 * c).ln()
                },
                f64::NEG_INFINITY,
                (0.5 * c).ln(),
            )?;
            let gap = v.exp();
            Some(Cell { rho: c - gap, gap })
        } else {
            let hi = cap.map_or(f64::INFINITY, |c| (0.5 * c).ln());
            let start = if guess > 0.0 && guess.is_finite() {
                guess.ln().min(hi - std::f64::consts::LN_2)
            } else {
                0.0f64.min(hi - std::f64::consts::LN_2)
            };
            let u = solve_monotone(
                |u| {
                    let rho = u.exp();
                    let gap = cap.map_or(0.0, |c| c - rho);
                    let h = self.slope(rho, gap, mu_l, mu_u) - s;
                    (h, rho * self.curvature(rho, gap, mu_l, mu_u))
                },
                start,
                f64::NEG_INFINITY,
                hi,
            )?;
            let rho = u.exp();
            (rho > 0.0).then_some(Cell {
                rho,
                gap: cap.map_or(0.0, |c| c - rho),
            })
        }
    }
}

/// The entropy law with the lower barrier alone, β(ln ρ + 1) − μ/ρ = s, in closed form: with
/// u₀ = s/β − 1 and ρ = e^{u₀ + w}, w solves w eʷ = q = (μ/β) e^{−u₀}, so w = W₀(q) (Lambert's W)
/// and ρ = e^{u₀} eʷ = μ/(β w). For q < 10⁻⁵ the series W₀(q) = q − q² + 3q³/2 (next term
/// 8q⁴/3 < 3·10⁻²⁰), and ρ = e^{u₀} eʷ; else Newton on w + ln w = ln q (concave and increasing
/// in w) from a lower bound of W₀(q), so the iterates rise monotonically (quadratically) to the
/// root, and ρ = μ/(β w) (no overflow where e^{u₀} underflows).
/// Replaces a safeguarded Newton iteration in ln ρ (an exp and a log per iteration) for the tail
/// cells of entropy steps, where the barrier's floor is not negligible.
fn entropy_with_barrier(b: f64, mu_l: f64, s: f64) -> Option<Cell> {
    let u0 = s / b - 1.0;
    let r0 = u0.exp();
    let q = mu_l / (b * r0);
    if r0 > 0.0 && r0.is_finite() && q < 1e-5 {
        // One exponential, as without the barrier: eʷ by its series too (next term w⁴/24).
        let w = q * (1.0 - q * (1.0 - 1.5 * q));
        let rho = r0 * (1.0 + w * (1.0 + w * (0.5 + w / 6.0)));
        return (rho > 0.0).then_some(Cell { rho, gap: 0.0 });
    }
    let ln_q = (mu_l / b).ln() - u0;
    if !ln_q.is_finite() {
        return None;
    }
    // From a lower bound of W₀(q): ln q − ln ln q for q ≥ e, q/(1 + q) below.
    let mut w = if ln_q >= 1.0 {
        ln_q - ln_q.ln()
    } else {
        let q = ln_q.exp();
        q / (1.0 + q)
    };
    for _ in 0..50 {
        let dw = (w + w.ln() - ln_q) / (1.0 + 1.0 / w);
        w -= dw;
        if dw.abs() <= 2.0 * f64::EPSILON * w {
            break;
        }
    }
    let rho = mu_l / (b * w);
    (rho.is_finite() && rho > 0.0).then_some(Cell { rho, gap: 0.0 })
}

/// Root of an increasing function h on (lo, hi) by Newton's method safeguarded by bisection
/// (steps of at most 30 in the log variable), from `x`. `f(x)` returns (h, h').
fn solve_monotone(
    f: impl Fn(f64) -> (f64, f64),
    mut x: f64,
    mut lo: f64,
    mut hi: f64,
) -> Option<f64> {
    for _ in 0..200 {
        let (h, dh) = f(x);
        if h.is_nan() {
            return None;
        }
        if h > 0.0 {
            hi = x;
        } else if h < 0.0 {
            lo = x;
        } else {
            return Some(x);
        }
        let mut step = -h / dh;
        if !step.is_finite() {
            step = if h > 0.0 { -1.0 } else { 1.0 };
        }
        step = step.clamp(-30.0, 30.0);
        let mut next = x + step;
        if next <= lo || next >= hi {
            next = match (lo.is_finite(), hi.is_finite()) {
                (true, true) => 0.5 * (lo + hi),
                (true, false) => lo + 1.0,
                (false, true) => hi - 1.0,
                (false, false) => next,
            };
        }
        if !(-745.0..=709.0).contains(&next) {
            return None;
        }
        let dx = next - x;
        x = next;
        if dx.abs() <= 1e-15 * x.abs().max(1.0) || (hi - lo) <= 1e-15 * x.abs().max(1.0) {
            return Some(x);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn laws() -> Vec<CellLaw> {
        let law = |beta, m, rho_max| CellLaw { beta, m, rho_max };
        vec![
            law(Some(0.7), None, None),
            law(Some(0.7), Some(2.0), None),
            law(None, Some(2.0), None),
            law(None, Some(3.0), Some(2.0)),
            law(None, Some(1.5), None),
            law(Some(0.3), None, Some(1.5)),
            law(None, None, Some(1.0)),
        ]
    }

    #[test]
    fn density_inverts_the_slope_and_the_curvature_is_its_derivative() {
        for law in laws() {
            for &(mu_l, mu_u) in &[(1e-2, 1e-2), (1e-9, 1e-3), (1e-20, 1e-9)] {
                for &rho in &[1e-6, 0.01, 0.3, 0.9] {
                    let gap = law.rho_max.map_or(0.0, |c| c - rho);
                    let s = law.slope(rho, gap, mu_l, mu_u);
                    let back = law.density(s, mu_l, mu_u, 0.5).expect("in range");
                    assert!(
                        (back.rho - rho).abs() <= 1e-10 * rho,
                        "{law:?} mu {mu_l} {mu_u}: {rho} -> {back:?}"
                    );
                    let h = 1e-6 * rho;
                    let g = |r: f64| law.slope(r, law.rho_max.map_or(0.0, |c| c - r), mu_l, mu_u);
                    let fd = (g(rho + h) - g(rho - h)) / (2.0 * h);
                    let c = law.curvature(rho, gap, mu_l, mu_u);
                    assert!((fd - c).abs() < 1e-5 * c, "{law:?}: {fd} vs {c}");
                }
            }
        }
    }

    /// The Lambert-W form of the entropy law with a barrier recovers the density the
    /// chemical potential was computed from, from the series' range (q ≪ 1) to the barrier-
    /// dominated tail (q ≫ 1, ρ ≈ μ/(β ln q)), to the rounding of s times the law's condition
    /// number |s| / (ρ g'(ρ)).
    #[test]
    fn entropy_with_barrier_inverts_its_law() {
        for &(b, mu) in &[(1.0f64, 1e-17f64), (0.01, 1e-12), (3.0, 1e-3)] {
            let law = CellLaw {
                beta: Some(b),
                m: None,
                rho_max: None,
            };
            for &rho in &[1e-300f64, 1e-40, 1e-20, 1e-12, 1e-6, 0.3, 1.0, 1e6] {
                let s = law.slope(rho, 0.0, mu, 0.0);
                let c = law.density(s, mu, 0.0, 0.0).expect("a density");
                let condition = s.abs().max(b) / (b + mu / rho);
                assert!(
                    (c.rho - rho).abs() <= 1e-14 * condition.max(1.0) * rho,
                    "beta {b} mu {mu} rho {rho:e}: {:e} (condition {condition:.1e})",
                    c.rho
                );
            }
        }
    }

    #[test]
    fn the_gap_to_the_cap_is_exact_below_one_ulp() {
        let law = CellLaw {
            beta: Some(0.01),
            m: None,
            rho_max: Some(1.0),
        };
        // ρ = 1 − 1e-20 rounds to 1; its gap must not.
        let gap = 1e-20;
        let s = law.slope(1.0 - gap, gap, 1e-25, 1e-22);
        let c = law.density(s, 1e-25, 1e-22, 0.9).unwrap();
        assert!((c.gap - gap).abs() < 1e-9 * gap, "{c:?}");
        assert_eq!(c.rho, 1.0);
    }

    #[test]
    fn exact_law_clamps_at_the_bounds() {
        let porous = CellLaw {
            beta: None,
            m: Some(2.0),
            rho_max: Some(1.0),
        };
        assert_eq!(porous.density(-0.3, 0.0, 0.0, 0.5).unwrap().rho, 0.0);
        assert_eq!(porous.density(5.0, 0.0, 0.0, 0.5).unwrap().gap, 0.0);
        let r = porous.density(1.0, 0.0, 0.0, 0.1).unwrap().rho;
        assert!((r - 0.5).abs() < 1e-14, "{r}");
        assert_eq!(
            porous.compliance(Cell { rho: 0.0, gap: 1.0 }, 0.0, 0.0),
            0.0
        );
        let entropy = CellLaw {
            beta: Some(1.0),
            m: None,
            rho_max: Some(2.0),
        };
        assert_eq!(entropy.density(10.0, 0.0, 0.0, 1.0).unwrap().rho, 2.0);
        let r = entropy.density(1.0, 0.0, 0.0, 1.5).unwrap().rho;
        assert!((r - 1.0).abs() < 1e-13, "{r}");
    }

    #[test]
    fn out_of_range_is_reported() {
        // Without internal energy and without a cap, g = −μ/ρ < 0.
        let law = CellLaw {
            beta: None,
            m: None,
            rho_max: None,
        };
        assert!(law.density(0.1, 1e-3, 0.0, 1.0).is_none());
        assert!(law.density(f64::NAN, 1e-3, 0.0, 1.0).is_none());
        assert!(law.density(-1.0, 0.0, 0.0, 1.0).is_none());
        assert!((law.density(-1e-3, 1e-3, 0.0, 0.5).unwrap().rho - 1.0).abs() < 1e-12);
    }
}

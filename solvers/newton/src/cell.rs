//! The cell law: ρ as a function of the local "chemical potential" s.
//!
//! Per unit volume a cell carries the (barrier-augmented) internal energy
//!   e_μ(ρ) = f(ρ) − μ ln ρ [no entropy] − μ ln(ρ_max − ρ) [congestion],
//! f(ρ) = β ρ ln ρ + ρ^m/(m−1). Its derivative g_μ = e_μ' is strictly increasing on the open
//! admissible interval, so g_μ(ρ) = s has at most one solution; with entropy and no bound it is
//! the closed form ρ = exp(s/β − 1). Elsewhere a safeguarded Newton iteration in u = ln ρ
//! solves it to machine precision.

use jko_core::StepEnergy;

/// The local law of one step's energy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CellLaw {
    pub beta: Option<f64>,
    pub m: Option<f64>,
    pub rho_max: Option<f64>,
    /// True when ρ ≥ 0 needs a barrier (no entropy term keeps ρ away from 0).
    pub lower_barrier: bool,
}

impl CellLaw {
    pub fn new(e: &StepEnergy) -> Self {
        CellLaw {
            beta: e.entropy,
            m: e.porous,
            rho_max: e.max_density,
            lower_barrier: e.entropy.is_none(),
        }
    }

    pub fn has_barrier(&self) -> bool {
        self.lower_barrier || self.rho_max.is_some()
    }

    /// Whether the exact (μ = 0) law ρ(s) is continuous, so that a semismooth Newton
    /// iteration can finish the barrier continuation: true unless f = 0.
    pub fn polishable(&self) -> bool {
        self.beta.is_some() || self.m.is_some()
    }

    /// e_μ(ρ) (per unit volume), +∞ outside the admissible interval.
    pub fn energy(&self, rho: f64, mu: f64) -> f64 {
        let mut v = 0.0;
        if let Some(b) = self.beta {
            v += if rho > 0.0 { b * rho * rho.ln() } else { 0.0 };
        }
        if let Some(m) = self.m {
            v += rho.max(0.0).powf(m) / (m - 1.0);
        }
        if mu > 0.0 {
            if self.lower_barrier {
                v -= mu * rho.ln();
            }
            if let Some(r) = self.rho_max {
                v -= mu * (r - rho).ln();
            }
        }
        v
    }

    /// g_μ(ρ) = e_μ'(ρ).
    pub fn slope(&self, rho: f64, mu: f64) -> f64 {
        let mut v = 0.0;
        if let Some(b) = self.beta {
            v += b * (rho.ln() + 1.0);
        }
        if let Some(m) = self.m {
            v += m * rho.powf(m - 1.0) / (m - 1.0);
        }
        if mu > 0.0 {
            if self.lower_barrier {
                v -= mu / rho;
            }
            if let Some(r) = self.rho_max {
                v += mu / (r - rho);
            }
        }
        v
    }

    /// g_μ'(ρ) = e_μ''(ρ) > 0.
    pub fn curvature(&self, rho: f64, mu: f64) -> f64 {
        let mut v = 0.0;
        if let Some(b) = self.beta {
            v += b / rho;
        }
        if let Some(m) = self.m {
            v += m * rho.powf(m - 2.0);
        }
        if mu > 0.0 {
            if self.lower_barrier {
                v += mu / (rho * rho);
            }
            if let Some(r) = self.rho_max {
                v += mu / ((r - rho) * (r - rho));
            }
        }
        v
    }

    /// dρ/ds = 1/g_μ'(ρ); 0 (not NaN) when ρ underflows to 0 with entropy, and, for μ = 0, the
    /// element of the generalised derivative that is 0 on cells at a bound.
    pub fn compliance(&self, rho: f64, mu: f64) -> f64 {
        if rho <= 0.0 || self.rho_max.is_some_and(|r| rho >= r) {
            return 0.0;
        }
        1.0 / self.curvature(rho, mu)
    }

    /// Solve g_μ(ρ) = s. `guess` is a previous value (any positive number, or ≤ 0 for none).
    /// Returns `None` when s is outside the range of g_μ (or the solution overflows).
    /// With μ = 0 (and f ≠ 0) this is the exact complementarity law: ρ = 0 when s ≤ f'(0+)
    /// without entropy, ρ = ρ_max when s ≥ f'(ρ_max) with a cap, else f'(ρ) = s.
    pub fn density(&self, s: f64, mu: f64, guess: f64) -> Option<f64> {
        if !s.is_finite() {
            return None;
        }
        if mu == 0.0 {
            if !self.polishable() {
                return None;
            }
            // f'(0+) = 0 for the porous term alone.
            if self.lower_barrier && s <= 0.0 {
                return Some(0.0);
            }
            if let Some(r) = self.rho_max
                && s >= self.slope(r, 0.0)
            {
                return Some(r);
            }
        }
        if let (Some(b), None, None) = (self.beta, self.m, self.rho_max) {
            let rho = (s / b - 1.0).exp();
            return rho.is_finite().then_some(rho);
        }
        // u = ln ρ; h(u) = g_μ(e^u) − s is increasing, h'(u) = ρ g_μ'(ρ).
        let mut lo = f64::NEG_INFINITY;
        let mut hi = self.rho_max.map_or(f64::INFINITY, f64::ln);
        let mut u = if guess > 0.0 && guess.is_finite() {
            guess.ln()
        } else {
            0.0
        };
        if u >= hi {
            u = hi - std::f64::consts::LN_2;
        }
        for _ in 0..200 {
            let rho = u.exp();
            let h = self.slope(rho, mu) - s;
            if h.is_nan() {
                return None;
            }
            if h > 0.0 {
                hi = u;
            } else if h < 0.0 {
                lo = u;
            } else {
                return Some(rho);
            }
            let dh = rho * self.curvature(rho, mu);
            let mut step = -h / dh;
            if !step.is_finite() {
                step = if h > 0.0 { -1.0 } else { 1.0 };
            }
            step = step.clamp(-30.0, 30.0);
            let mut next = u + step;
            if next <= lo || next >= hi {
                next = match (lo.is_finite(), hi.is_finite()) {
                    (true, true) => 0.5 * (lo + hi),
                    (true, false) => lo + 1.0,
                    (false, true) => hi - 1.0,
                    (false, false) => next,
                };
            }
            if next > 700.0 {
                return None;
            }
            let du = next - u;
            u = next;
            if du.abs() <= 1e-14 * u.abs().max(1.0) || (hi - lo) <= 1e-15 * u.abs().max(1.0) {
                return Some(u.exp());
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn laws() -> Vec<CellLaw> {
        let law = |beta, m, rho_max| CellLaw {
            beta,
            m,
            rho_max,
            lower_barrier: beta.is_none(),
        };
        vec![
            law(Some(0.7), None, None),
            law(Some(0.7), Some(2.0), None),
            law(None, Some(2.0), None),
            law(None, Some(3.0), Some(2.0)),
            law(None, Some(1.5), None),
            law(Some(0.3), None, Some(1.5)),
            law(None, None, Some(1.0)),
            law(None, None, None),
        ]
    }

    #[test]
    fn density_inverts_the_slope_and_derivatives_match() {
        for law in laws() {
            for &mu in &[1e-2, 1e-9] {
                for &rho in &[1e-6, 0.01, 0.3, 0.9] {
                    let s = law.slope(rho, mu);
                    let back = law.density(s, mu, 0.5).expect("in range");
                    assert!(
                        (back - rho).abs() <= 1e-10 * rho,
                        "{law:?} mu {mu}: {rho} -> {back}"
                    );
                    let h = 1e-6 * rho;
                    let fd1 = (law.energy(rho + h, mu) - law.energy(rho - h, mu)) / (2.0 * h);
                    let fd2 = (law.slope(rho + h, mu) - law.slope(rho - h, mu)) / (2.0 * h);
                    assert!(
                        (fd1 - s).abs() < 1e-6 * (1.0 + s.abs() + mu / rho),
                        "{law:?}"
                    );
                    let c = law.curvature(rho, mu);
                    assert!((fd2 - c).abs() < 1e-5 * c, "{law:?}: {fd2} vs {c}");
                }
            }
        }
    }

    #[test]
    fn exact_law_clamps_at_the_bounds() {
        let porous = CellLaw {
            beta: None,
            m: Some(2.0),
            rho_max: Some(1.0),
            lower_barrier: true,
        };
        assert_eq!(porous.density(-0.3, 0.0, 0.5), Some(0.0));
        assert_eq!(porous.density(5.0, 0.0, 0.5), Some(1.0));
        let r = porous.density(1.0, 0.0, 0.1).unwrap();
        assert!((r - 0.5).abs() < 1e-14, "{r}");
        assert_eq!(porous.compliance(0.0, 0.0), 0.0);
        assert_eq!(porous.compliance(1.0, 0.0), 0.0);
        assert!((porous.compliance(0.5, 0.0) - 0.5).abs() < 1e-14);
        let entropy = CellLaw {
            beta: Some(1.0),
            m: None,
            rho_max: Some(2.0),
            lower_barrier: false,
        };
        assert_eq!(entropy.density(10.0, 0.0, 1.0), Some(2.0));
        let r = entropy.density(1.0, 0.0, 1.5).unwrap();
        assert!((r - 1.0).abs() < 1e-13, "{r}");
    }

    #[test]
    fn out_of_range_is_reported() {
        // Without internal energy and without a cap, g_μ = −μ/ρ < 0.
        let law = CellLaw {
            beta: None,
            m: None,
            rho_max: None,
            lower_barrier: true,
        };
        assert!(law.density(0.1, 1e-3, 1.0).is_none());
        assert!(law.density(f64::NAN, 1e-3, 1.0).is_none());
    }
}

//! The Scharfetter–Gummel face flux of the mesh flow and its derivatives.
//!
//! On a face σ = K|L with transmissibility T_σ, the flux of ∂ρ/∂t = ∇·(∇P(ρ) + ρ∇W) from K to L
//! is
//!
//!   F_σ = T_σ [E(κ_σ, w_σ) ρ_K − E(κ_σ, −w_σ) ρ_L],   E(κ, w) = κ B(w/κ),   B(x) = x/(eˣ − 1),
//!
//! with w_σ = W_L − W_K the drift potential difference and κ_σ = (P(ρ_K) − P(ρ_L))/(ρ_K − ρ_L)
//! the face diffusivity (P the pressure, ρ f'(ρ) − f(ρ): β ρ for the entropy β ρ log ρ, ρ^m for
//! the porous medium ρ^m/(m−1)). Properties the integrator relies on (tested below):
//!
//! - F_σ = T_σ [P(ρ_K) − P(ρ_L) + ½(ρ_K + ρ_L)(W_K − W_L)] + O(w²): a centred, second-order
//!   flux; for the entropy it is the exponentially fitted flux, exact on the discrete Gibbs
//!   state ρ ∝ e^{−W/β} (zero flux there) and linear in ρ.
//! - the outflow from a cell is a non-negative multiple of its own density (E ≥ 0): an empty
//!   cell only receives mass, so the flow keeps ρ ≥ 0; no logarithm of ρ appears, so vacuum is
//!   an ordinary state.
//! - κ → 0 (no diffusion: a potential alone, or porous-medium vacuum on both sides) gives the
//!   upwind flux T_σ [(−w)₊ ρ_K − w₊ ρ_L].

/// B(x) = x/(eˣ − 1) and B'(x), accurate for every x (series near 0, exp(−|x|) forms away from
/// it; B → 0 for x → +∞ and B ≈ −x for x → −∞ without overflow).
pub(crate) fn bernoulli(x: f64) -> (f64, f64) {
    if x.abs() < 0.1 {
        let x2 = x * x;
        let b = 1.0 - x / 2.0
            + x2 * (1.0 / 12.0 + x2 * (-1.0 / 720.0 + x2 * (1.0 / 30240.0 - x2 / 1_209_600.0)));
        let db = -0.5
            + x * (1.0 / 6.0 + x2 * (-1.0 / 180.0 + x2 * (1.0 / 5040.0 + x2 * (-1.0 / 151_200.0))));
        (b, db)
    } else if x > 0.0 {
        let e = (-x).exp();
        let den = -(-x).exp_m1();
        (x * e / den, e * (den - x) / (den * den))
    } else {
        let em1 = x.exp_m1();
        (x / em1, (em1 - x * (em1 + 1.0)) / (em1 * em1))
    }
}

/// E(κ, w) = κ B(w/κ) with ∂E/∂w and ∂E/∂κ; the upwind limit (−w)₊ for κ = 0.
pub(crate) fn fitted(kappa: f64, w: f64) -> (f64, f64, f64) {
    if kappa <= 0.0 || (w / kappa).abs() > 700.0 {
        // |w/κ| > 700: e^{−700} ≈ 1e-304, the upwind limit to the last bit.
        return if w < 0.0 {
            (-w, -1.0, 0.0)
        } else {
            (0.0, 0.0, 0.0)
        };
    }
    let x = w / kappa;
    let (b, db) = bernoulli(x);
    (kappa * b, db, b - x * db)
}

/// The internal energy's pressure P(s) = β s + s^m and the face diffusivity
/// κ(a, b) = (P(a) − P(b))/(a − b) with its partial derivatives (negative values count as 0).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pressure {
    pub beta: f64,
    pub m: Option<f64>,
}

impl Pressure {
    /// κ(a, b), ∂κ/∂a, ∂κ/∂b.
    pub fn diffusivity(&self, a: f64, b: f64) -> (f64, f64, f64) {
        let Some(m) = self.m else {
            return (self.beta, 0.0, 0.0);
        };
        let (a, b) = (a.max(0.0), b.max(0.0));
        if m == 2.0 {
            return (self.beta + a + b, 1.0, 1.0);
        }
        let c = 0.5 * (a + b);
        let d = a - b;
        if c == 0.0 {
            return (self.beta, 0.0, 0.0);
        }
        if d.abs() > 1e-3 * c {
            let (am, bm) = (a.powf(m), b.powf(m));
            let q = (am - bm) / d;
            let dqa = (m * a.powf(m - 1.0) - q) / d;
            let dqb = (q - m * b.powf(m - 1.0)) / d;
            (self.beta + q, dqa, dqb)
        } else {
            // Around the midpoint c with δ = a − b: Q = m c^{m−1} + m(m−1)(m−2)/24 c^{m−3} δ² + O(δ⁴).
            let k2 = m * (m - 1.0) * (m - 2.0) / 24.0;
            let q = m * c.powf(m - 1.0) + k2 * c.powf(m - 3.0) * d * d;
            let dqc = m * (m - 1.0) * c.powf(m - 2.0) + k2 * (m - 3.0) * c.powf(m - 4.0) * d * d;
            let dqd = 2.0 * k2 * c.powf(m - 3.0) * d;
            (self.beta + q, 0.5 * dqc + dqd, 0.5 * dqc - dqd)
        }
    }
}

/// E(κ, w) and E(κ, −w) with their derivatives (∂/∂w of each, ∂/∂κ of each), from one
/// evaluation of B: B(−x) = B(x) + x, so E(κ, −w) = E(κ, w) + w. The identity is applied in
/// the direction without cancellation (from the smaller of the two, at |w|, up to the larger).
fn fitted_pair(kappa: f64, w: f64) -> ((f64, f64, f64), (f64, f64, f64)) {
    let a = w.abs();
    let (small, d_small, k_small) = fitted(kappa, a);
    if a == 0.0 {
        // Both directions are E(κ, 0) (the upwind limit's kink included).
        return ((small, d_small, k_small), (small, d_small, k_small));
    }
    // E(κ, −a) = E(κ, a) + a; d/d(−a) E(κ, −a) = −(∂E(κ, a)/∂a + 1); ∂/∂κ unchanged.
    let large = (small + a, -(d_small + 1.0), k_small);
    if w >= 0.0 {
        ((small, d_small, k_small), large)
    } else {
        (large, (small, d_small, k_small))
    }
}

/// For a diffusivity independent of ρ (the entropy alone: κ = β), the flux is linear in ρ,
/// F/T = c₀ ρ_K − c₂ ρ_L, with coefficients fixed by w alone: returns [E(β, w), ∂E(β, w)/∂w, E(β, −w), ∂E(β, −w)/∂w'] (w' = −w, as in [`face_flux`]),
/// or None when κ depends on ρ (porous medium).
pub(crate) fn linear_coefficients(p: &Pressure, w: f64) -> Option<[f64; 4]> {
    if p.m.is_some() {
        return None;
    }
    let ((ep, dep_w, _), (em, dem_w, _)) = fitted_pair(p.beta, w);
    Some([ep, dep_w, em, dem_w])
}

/// [`face_flux`] from [`linear_coefficients`]: (F/T, ∂/∂ρ_K, ∂/∂ρ_L, ∂/∂w).
pub(crate) fn linear_flux(c: &[f64; 4], rk: f64, rl: f64) -> (f64, f64, f64, f64) {
    (c[0] * rk - c[2] * rl, c[0], -c[2], c[1] * rk + c[3] * rl)
}

/// Flux F/T from K to L and its derivatives (∂/∂ρ_K, ∂/∂ρ_L, ∂/∂w), w = W_L − W_K.
pub(crate) fn face_flux(p: &Pressure, rk: f64, rl: f64, w: f64) -> (f64, f64, f64, f64) {
    let (kappa, dka, dkb) = p.diffusivity(rk, rl);
    let ((ep, dep_w, dep_k), (em, dem_w, dem_k)) = fitted_pair(kappa, w);
    let f = ep * rk - em * rl;
    let dk = dep_k * rk - dem_k * rl;
    (f, ep + dk * dka, -em + dk * dkb, dep_w * rk + dem_w * rl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bernoulli_matches_its_definition_and_derivative() {
        for &x in &[
            -50.0, -3.0, -0.2, -0.1, -0.05, -1e-8, 0.0, 1e-8, 0.05, 0.1, 0.2, 3.0, 50.0,
        ] {
            let (b, db) = bernoulli(x);
            if x != 0.0 {
                // x/(eˣ−1) in extended care: exp_m1 is accurate for every x here.
                let exact = x / x.exp_m1();
                assert!(
                    (b - exact).abs() <= 1e-14 * exact.abs().max(1e-300),
                    "{x}: {b} {exact}"
                );
            } else {
                assert_eq!(b, 1.0);
            }
            let h = 1e-5 * (1.0 + x.abs());
            let fd = (bernoulli(x + h).0 - bernoulli(x - h).0) / (2.0 * h);
            assert!((db - fd).abs() < 1e-8 * (1.0 + db.abs()), "{x}: {db} {fd}");
        }
        // Limits without overflow.
        assert_eq!(bernoulli(800.0), (0.0, 0.0));
        assert_eq!(bernoulli(-800.0), (800.0, -1.0));
    }

    #[test]
    fn flux_is_centred_for_small_drift_and_exact_on_gibbs_states() {
        let p = Pressure { beta: 0.7, m: None };
        let (rk, rl, w) = (1.3, 0.9, 1e-4);
        let (f, ..) = face_flux(&p, rk, rl, w);
        let centred = 0.7 * (rk - rl) - 0.5 * (rk + rl) * w;
        assert!((f - centred).abs() < 1e-8);
        // ρ_L/ρ_K = e^{−w/β}: no flux, for any w.
        for w in [-30.0, -1.0, 0.3, 5.0] {
            let (f, ..) = face_flux(&p, 2.0, 2.0 * (-w / 0.7f64).exp(), w);
            assert!(f.abs() < 1e-14 * 2.0 * (1.0 + w.abs()), "{w}: {f}");
        }
    }

    #[test]
    fn flux_derivatives_match_finite_differences() {
        for p in [
            Pressure { beta: 1.0, m: None },
            Pressure {
                beta: 0.0,
                m: Some(2.0),
            },
            Pressure {
                beta: 0.0,
                m: Some(3.0),
            },
            Pressure {
                beta: 0.1,
                m: Some(1.5),
            },
        ] {
            for &(rk, rl, w) in &[(1.0, 0.5, 0.3), (0.2, 0.2000001, -2.0), (3.0, 0.01, 10.0)] {
                let (_, da, db, dw) = face_flux(&p, rk, rl, w);
                let h = 1e-6;
                let fd = |f: &dyn Fn(f64) -> f64, x: f64| (f(x + h) - f(x - h)) / (2.0 * h);
                let fa = fd(&|x| face_flux(&p, x, rl, w).0, rk);
                let fb = fd(&|x| face_flux(&p, rk, x, w).0, rl);
                let fw = fd(&|x| face_flux(&p, rk, rl, x).0, w);
                for (a, b) in [(da, fa), (db, fb), (dw, fw)] {
                    assert!(
                        (a - b).abs() < 1e-6 * (1.0 + a.abs()),
                        "{p:?} {rk} {rl} {w}: {a} {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn one_bernoulli_evaluation_gives_both_directions_to_round_off() {
        // fitted_pair against two independent evaluations of E(κ, ±w), including the upwind
        // limits and |w/κ| beyond the series and overflow thresholds.
        for &kappa in &[0.0, 1e-3, 0.7, 2.0] {
            for &w in &[
                -800.0, -30.0, -1.0, -0.05, -1e-9, 0.0, 1e-9, 0.05, 1.0, 30.0, 800.0,
            ] {
                let (p, m) = fitted_pair(kappa, w);
                for (pair, one) in [(p, fitted(kappa, w)), (m, fitted(kappa, -w))] {
                    for (a, b) in [(pair.0, one.0), (pair.1, one.1), (pair.2, one.2)] {
                        assert!(
                            (a - b).abs() <= 1e-13 * (1.0 + a.abs().max(b.abs())),
                            "kappa {kappa}, w {w}: {pair:?} {one:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn linear_coefficients_reproduce_the_entropy_flux_and_refuse_the_porous_medium() {
        let p = Pressure { beta: 0.7, m: None };
        for &w in &[-40.0, -1.0, 0.0, 0.3, 12.0] {
            let c = linear_coefficients(&p, w).unwrap();
            for &(rk, rl) in &[(1.0, 0.5), (0.0, 2.0), (1e-30, 3.0)] {
                let a = linear_flux(&c, rk, rl);
                let b = face_flux(&p, rk, rl, w);
                for (x, y) in [(a.0, b.0), (a.1, b.1), (a.2, b.2), (a.3, b.3)] {
                    assert!(
                        (x - y).abs() <= 1e-14 * (1.0 + y.abs()),
                        "{w} {rk} {rl}: {a:?} {b:?}"
                    );
                }
            }
        }
        let porous = Pressure {
            beta: 0.0,
            m: Some(2.0),
        };
        assert!(linear_coefficients(&porous, 1.0).is_none());
    }

    #[test]
    fn outflow_from_an_empty_cell_is_zero_and_no_diffusion_is_upwind() {
        let p = Pressure { beta: 0.5, m: None };
        // ρ_K = 0: only inflow into K, whatever the drift.
        for w in [-5.0, 0.0, 5.0] {
            assert!(face_flux(&p, 0.0, 1.0, w).0 <= 0.0);
        }
        let none = Pressure { beta: 0.0, m: None };
        assert_eq!(face_flux(&none, 2.0, 3.0, -1.5).0, 3.0);
        assert_eq!(face_flux(&none, 2.0, 3.0, 1.5).0, -4.5);
    }
}

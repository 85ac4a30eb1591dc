//! Exact solutions used as references (DESIGN §3).
//!
//! - Fokker–Planck with a quadratic potential (Ornstein–Uhlenbeck), energy
//!   β ∫ ρ log ρ + (k/2) ∫ |x − c|² ρ: Gaussians stay Gaussian, both along the gradient flow and
//!   along exact JKO iterates (any dimension and covariance). k = 0 is the heat equation.
//! - Porous medium ∂_t ρ = Δ ρ^m: Barenblatt profiles.

use crate::error::InputError;

/// A Gaussian N(mean, cov) in d dimensions; `cov` is d×d row major.
#[derive(Debug, Clone, PartialEq)]
pub struct Gaussian {
    pub mean: Vec<f64>,
    pub cov: Vec<f64>,
}

impl Gaussian {
    /// A Gaussian with independent coordinates of the given standard deviations.
    pub fn diagonal(mean: &[f64], std: &[f64]) -> Gaussian {
        let d = mean.len();
        let mut cov = vec![0.0; d * d];
        for i in 0..d {
            cov[i * d + i] = std[i] * std[i];
        }
        Gaussian {
            mean: mean.to_vec(),
            cov,
        }
    }

    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Probability density at x (unit mass).
    pub fn density(&self, x: &[f64]) -> f64 {
        let d = self.dim();
        let (vals, vecs) = symmetric_eigen(&self.cov, d);
        let mut q = 0.0;
        let mut det = 1.0;
        for j in 0..d {
            let proj: f64 = (0..d).map(|i| vecs[i * d + j] * (x[i] - self.mean[i])).sum();
            q += proj * proj / vals[j];
            det *= vals[j];
        }
        (-0.5 * q).exp() / ((2.0 * std::f64::consts::PI).powi(d as i32) * det).sqrt()
    }

    /// Apply a map to the eigenvalues of the covariance's square root (the standard deviations
    /// along the principal axes).
    fn map_std(&self, f: impl Fn(f64) -> f64) -> Vec<f64> {
        let d = self.dim();
        let (vals, vecs) = symmetric_eigen(&self.cov, d);
        let s: Vec<f64> = vals.iter().map(|v| f(v.max(0.0).sqrt())).collect();
        let mut cov = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                cov[i * d + j] = (0..d).map(|e| vecs[i * d + e] * s[e] * s[e] * vecs[j * d + e]).sum();
            }
        }
        cov
    }
}

/// Fokker–Planck with quadratic potential: F(ρ) = β ∫ ρ log ρ + (k/2) ∫ |x − c|² ρ.
#[derive(Debug, Clone, PartialEq)]
pub struct OrnsteinUhlenbeck {
    pub beta: f64,
    pub stiffness: f64,
    pub center: Vec<f64>,
}

impl OrnsteinUhlenbeck {
    /// The standard OU process of DESIGN §3: β = 1, k = 1, c = 0.
    pub fn standard(dim: usize) -> Self {
        OrnsteinUhlenbeck {
            beta: 1.0,
            stiffness: 1.0,
            center: vec![0.0; dim],
        }
    }

    /// The heat equation ∂_t ρ = β Δρ.
    pub fn heat(beta: f64, dim: usize) -> Self {
        OrnsteinUhlenbeck {
            beta,
            stiffness: 0.0,
            center: vec![0.0; dim],
        }
    }

    /// The exact JKO iterate (exact W²) from N(m, S) with step τ:
    /// m' = c + (m − c)/(1 + τk); along each principal axis of S the standard deviation s maps to
    /// s' = (s + √(s² + 4τβ(1 + τk))) / (2(1 + τk)).
    pub fn jko_step(&self, g: &Gaussian, tau: f64) -> Gaussian {
        let a = 1.0 + tau * self.stiffness;
        let mean = g
            .mean
            .iter()
            .zip(&self.center)
            .map(|(m, c)| c + (m - c) / a)
            .collect();
        let cov = g.map_std(|s| (s + (s * s + 4.0 * tau * self.beta * a).sqrt()) / (2.0 * a));
        Gaussian { mean, cov }
    }

    /// `steps` exact JKO iterates.
    pub fn jko_iterates(&self, g: &Gaussian, tau: f64, steps: usize) -> Gaussian {
        (0..steps).fold(g.clone(), |g, _| self.jko_step(&g, tau))
    }

    /// The exact gradient flow at time t: m(t) = c + (m − c) e^{−kt};
    /// S(t) = (β/k) I + (S − (β/k) I) e^{−2kt}  (S + 2βt I when k = 0).
    pub fn flow(&self, g: &Gaussian, t: f64) -> Gaussian {
        let d = g.dim();
        let k = self.stiffness;
        let decay = (-k * t).exp();
        let mean = g
            .mean
            .iter()
            .zip(&self.center)
            .map(|(m, c)| c + (m - c) * decay)
            .collect();
        let mut cov = g.cov.clone();
        for i in 0..d {
            for j in 0..d {
                let id = if i == j { 1.0 } else { 0.0 };
                cov[i * d + j] = if k == 0.0 {
                    g.cov[i * d + j] + 2.0 * self.beta * t * id
                } else {
                    self.beta / k * id + (g.cov[i * d + j] - self.beta / k * id) * decay * decay
                };
            }
        }
        Gaussian { mean, cov }
    }
}

/// Barenblatt profile of ∂_t ρ = Δ(ρ^m) in d dimensions, of the given mass, centred at 0:
/// ρ(t, x) = t^{−α} (C − κ |x|² t^{−2α/d})_+^{1/(m−1)},
/// α = d/(d(m−1)+2), κ = α(m−1)/(2md).
/// It is the gradient flow of ∫ ρ^m/(m−1) (the energy of the `porous` term).
#[derive(Debug, Clone, PartialEq)]
pub struct Barenblatt {
    pub m: f64,
    pub dim: usize,
    pub mass: f64,
    c: f64,
}

impl Barenblatt {
    pub fn new(m: f64, dim: usize, mass: f64) -> Result<Self, InputError> {
        if !(m.is_finite() && m > 1.0) {
            return Err(InputError::parameter("m", m, "Barenblatt profiles need m > 1"));
        }
        if !(mass.is_finite() && mass > 0.0) {
            return Err(InputError::parameter("mass", mass, "must be finite and > 0"));
        }
        let d = dim as f64;
        let (alpha, kappa) = Self::exponents(m, dim);
        let _ = alpha;
        // ∫ (C − κ|y|²)_+^p dy = C^{p+d/2} κ^{−d/2} π^{d/2} Γ(p+1)/Γ(p+1+d/2), p = 1/(m−1).
        let p = 1.0 / (m - 1.0);
        let unit = kappa.powf(-d / 2.0)
            * std::f64::consts::PI.powf(d / 2.0)
            * (ln_gamma(p + 1.0) - ln_gamma(p + 1.0 + d / 2.0)).exp();
        let c = (mass / unit).powf(1.0 / (p + d / 2.0));
        Ok(Barenblatt { m, dim, mass, c })
    }

    fn exponents(m: f64, dim: usize) -> (f64, f64) {
        let d = dim as f64;
        let alpha = d / (d * (m - 1.0) + 2.0);
        (alpha, alpha * (m - 1.0) / (2.0 * m * d))
    }

    /// ρ(t, x) for t > 0.
    pub fn density(&self, t: f64, x: &[f64]) -> f64 {
        let (alpha, kappa) = Self::exponents(self.m, self.dim);
        let r2: f64 = x.iter().map(|a| a * a).sum();
        let inner = self.c - kappa * r2 * t.powf(-2.0 * alpha / self.dim as f64);
        if inner <= 0.0 {
            0.0
        } else {
            t.powf(-alpha) * inner.powf(1.0 / (self.m - 1.0))
        }
    }

    /// Radius of the support at time t.
    pub fn support_radius(&self, t: f64) -> f64 {
        let (alpha, kappa) = Self::exponents(self.m, self.dim);
        (self.c / kappa).sqrt() * t.powf(alpha / self.dim as f64)
    }
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, ~1e-15 relative).
pub fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Eigen-decomposition of a symmetric d×d matrix (row major) by cyclic Jacobi rotations.
/// Returns (eigenvalues, eigenvectors as columns, row major).
pub fn symmetric_eigen(a: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0.0; d * d];
    for i in 0..d {
        v[i * d + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * d + j] * a[i * d + j])
            .sum();
        let scale: f64 = (0..d).map(|i| a[i * d + i] * a[i * d + i]).sum::<f64>();
        if off <= 1e-30 * scale.max(1e-300) {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * d + q] - a[p * d + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let akp = a[k * d + p];
                    let akq = a[k * d + q];
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let apk = a[p * d + k];
                    let aqk = a[q * d + k];
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
                for k in 0..d {
                    let vkp = v[k * d + p];
                    let vkq = v[k * d + q];
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..d).map(|i| a[i * d + i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ou_jko_step_satisfies_the_optimality_condition_1d() {
        // (s' − s)/τ + s' − 1/s' = 0 and m' = m/(1+τ) for the standard OU.
        let ou = OrnsteinUhlenbeck::standard(1);
        let g = Gaussian::diagonal(&[1.0], &[0.5]);
        let tau = 0.1;
        let n = ou.jko_step(&g, tau);
        let s = n.cov[0].sqrt();
        assert!(((s - 0.5) / tau + s - 1.0 / s).abs() < 1e-13);
        assert!((n.mean[0] - 1.0 / 1.1).abs() < 1e-15);
    }

    #[test]
    fn ou_jko_step_rotates_with_the_covariance() {
        // A rotated diagonal covariance maps like the diagonal one, rotated.
        let ou = OrnsteinUhlenbeck::standard(2);
        let (c, s) = (0.6f64, 0.8f64);
        let (a, b) = (0.25, 2.0);
        let cov = vec![
            c * c * a + s * s * b,
            c * s * (a - b),
            c * s * (a - b),
            s * s * a + c * c * b,
        ];
        let g = Gaussian { mean: vec![1.0, -1.0], cov };
        let out = ou.jko_step(&g, 0.3);
        let da = ou.jko_step(&Gaussian::diagonal(&[0.0], &[a.sqrt()]), 0.3).cov[0];
        let db = ou.jko_step(&Gaussian::diagonal(&[0.0], &[b.sqrt()]), 0.3).cov[0];
        let expect = [c * c * da + s * s * db, c * s * (da - db), c * s * (da - db), s * s * da + c * c * db];
        for i in 0..4 {
            assert!((out.cov[i] - expect[i]).abs() < 1e-13, "{i}");
        }
    }

    #[test]
    fn jko_iterates_approach_the_flow() {
        let ou = OrnsteinUhlenbeck::standard(1);
        let g = Gaussian::diagonal(&[1.0], &[0.5]);
        let err = |n: usize| {
            let tau = 1.0 / n as f64;
            let a = ou.jko_iterates(&g, tau, n);
            let b = ou.flow(&g, 1.0);
            (a.mean[0] - b.mean[0]).abs() + (a.cov[0] - b.cov[0]).abs()
        };
        let order = (err(50) / err(100)).log2();
        assert!((order - 1.0).abs() < 0.05, "order {order}");
    }

    #[test]
    fn barenblatt_has_its_mass_and_solves_the_pde() {
        for &(m, d) in &[(2.0, 1usize), (3.0, 1), (2.0, 2)] {
            let b = Barenblatt::new(m, d, 1.7).unwrap();
            let t = 0.3;
            let r = b.support_radius(t);
            let n = 4000;
            let h = 2.0 * r / n as f64;
            let mass = if d == 1 {
                (0..n).map(|i| b.density(t, &[-r + (i as f64 + 0.5) * h]) * h).sum::<f64>()
            } else {
                (0..n).map(|i| {
                    let rr = (i as f64 + 0.5) * r / n as f64;
                    2.0 * std::f64::consts::PI * rr * b.density(t, &[rr, 0.0]) * r / n as f64
                }).sum::<f64>()
            };
            assert!((mass - 1.7).abs() < 1e-4, "m {m} d {d}: mass {mass}");
        }
        // ∂_t ρ = (ρ^m)'' at an interior point, 1D.
        let b = Barenblatt::new(2.0, 1, 1.0).unwrap();
        let (t, x, e) = (0.5, 0.2, 1e-4);
        let dt = (b.density(t + e, &[x]) - b.density(t - e, &[x])) / (2.0 * e);
        let p = |x: f64| b.density(t, &[x]).powi(2);
        let lap = (p(x + e) - 2.0 * p(x) + p(x - e)) / (e * e);
        assert!((dt - lap).abs() < 1e-5 * dt.abs().max(1.0), "{dt} vs {lap}");
    }

    #[test]
    fn ln_gamma_known_values() {
        assert!((ln_gamma(1.0)).abs() < 1e-14);
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-13);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-13);
    }
}

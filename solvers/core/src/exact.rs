//! Exact solutions used as references (docs/mathematics.md §3).
//!
//! - Fokker–Planck with a quadratic potential (Ornstein–Uhlenbeck), energy
//!   β ∫ ρ log ρ + (k/2) ∫ |x − c|² ρ: Gaussians stay Gaussian, both along the gradient flow and
//!   along exact JKO iterates (any dimension and covariance). k = 0 is the heat equation.
//! - Porous medium ∂_t ρ = Δ ρ^m: Barenblatt profiles.

use crate::error::InputError;

/// A Gaussian N(mean, cov) in d dimensions; `cov` is d×d row major.
///
/// A probability density (unit mass); scale it by the mass to compare with a density of
/// another mass.
///
/// ```rust
/// use jko_core::exact::Gaussian;
///
/// let g = Gaussian { mean: vec![0.0], cov: vec![1.0] };
/// let peak = 1.0 / (2.0 * std::f64::consts::PI).sqrt();
/// assert!((g.density(&[0.0]) - peak).abs() < 1e-15);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Gaussian {
    /// Mean m, d coordinates.
    pub mean: Vec<f64>,
    /// Covariance S, d×d row major, symmetric positive definite.
    pub cov: Vec<f64>,
}

impl Gaussian {
    /// A Gaussian with independent coordinates of the given standard deviations
    /// (`std` has one entry per coordinate of `mean`).
    ///
    /// # Panics
    /// If `std` is shorter than `mean`.
    ///
    /// ```rust
    /// use jko_core::exact::Gaussian;
    ///
    /// let g = Gaussian::diagonal(&[1.0, -1.0], &[2.0, 3.0]);
    /// assert_eq!(g.cov, vec![4.0, 0.0, 0.0, 9.0]);
    /// ```
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

    /// Dimension d.
    ///
    /// ```rust
    /// use jko_core::exact::Gaussian;
    ///
    /// assert_eq!(Gaussian::diagonal(&[0.0, 0.0], &[1.0, 1.0]).dim(), 2);
    /// ```
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Probability density at x (unit mass): (2π)^{−d/2} det(S)^{−1/2} e^{−(x−m)ᵀS⁻¹(x−m)/2}.
    ///
    /// ```rust
    /// use jko_core::exact::Gaussian;
    ///
    /// // At the mean: 1 / (2π σ₁ σ₂).
    /// let g = Gaussian::diagonal(&[1.0, 2.0], &[1.0, 2.0]);
    /// let peak = 1.0 / (4.0 * std::f64::consts::PI);
    /// assert!((g.density(&[1.0, 2.0]) - peak).abs() < 1e-15 * peak);
    /// ```
    pub fn density(&self, x: &[f64]) -> f64 {
        let d = self.dim();
        let (vals, vecs) = symmetric_eigen(&self.cov, d);
        let mut q = 0.0;
        let mut det = 1.0;
        for j in 0..d {
            let proj: f64 = (0..d)
                .map(|i| vecs[i * d + j] * (x[i] - self.mean[i]))
                .sum();
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
                cov[i * d + j] = (0..d)
                    .map(|e| vecs[i * d + e] * s[e] * s[e] * vecs[j * d + e])
                    .sum();
            }
        }
        cov
    }
}

/// Fokker–Planck with quadratic potential: F(ρ) = β ∫ ρ log ρ + (k/2) ∫ |x − c|² ρ, on the
/// whole space. Its stationary state is N(c, (β/k) I); k = 0 is the heat equation.
///
/// The matching [`crate::Energy`] is
/// `Energy::fokker_planck(beta, Potential::Quadratic { center, stiffness })`.
///
/// ```rust
/// use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
///
/// // The Gibbs measure N(0, 1) of the standard process is a fixed point of the exact JKO step.
/// let ou = OrnsteinUhlenbeck::standard(1);
/// let next = ou.jko_step(&Gaussian::diagonal(&[0.0], &[1.0]), 0.1);
/// assert!((next.cov[0] - 1.0).abs() < 1e-14);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct OrnsteinUhlenbeck {
    /// Temperature β > 0 (diffusion coefficient).
    pub beta: f64,
    /// Stiffness k ≥ 0 of the potential (k/2)|x − c|².
    pub stiffness: f64,
    /// Centre c of the potential, one coordinate per axis.
    pub center: Vec<f64>,
}

impl OrnsteinUhlenbeck {
    /// The standard OU process of docs/mathematics.md §3: β = 1, k = 1, c = 0.
    ///
    /// ```rust
    /// use jko_core::exact::OrnsteinUhlenbeck;
    ///
    /// let ou = OrnsteinUhlenbeck::standard(2);
    /// assert_eq!((ou.beta, ou.stiffness), (1.0, 1.0));
    /// assert_eq!(ou.center, vec![0.0, 0.0]);
    /// ```
    pub fn standard(dim: usize) -> Self {
        OrnsteinUhlenbeck {
            beta: 1.0,
            stiffness: 1.0,
            center: vec![0.0; dim],
        }
    }

    /// The heat equation ∂_t ρ = β Δρ (k = 0).
    ///
    /// ```rust
    /// use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
    ///
    /// // The variance grows like 2βt.
    /// let heat = OrnsteinUhlenbeck::heat(0.5, 1);
    /// let later = heat.flow(&Gaussian::diagonal(&[0.0], &[1.0]), 3.0);
    /// assert_eq!(later.cov, vec![4.0]);
    /// ```
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
    ///
    /// These solve the optimality conditions of the continuous JKO step; a discrete step
    /// approaches them as the mesh is refined.
    ///
    /// ```rust
    /// use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
    ///
    /// // Standard OU, 1D: m' = m/(1 + τ) and (s' − s)/τ + s' − 1/s' = 0.
    /// let ou = OrnsteinUhlenbeck::standard(1);
    /// let (s, tau) = (0.5, 0.1);
    /// let next = ou.jko_step(&Gaussian::diagonal(&[1.0], &[s]), tau);
    /// let s1 = next.cov[0].sqrt();
    /// assert!((next.mean[0] - 1.0 / 1.1).abs() < 1e-15);
    /// assert!(((s1 - s) / tau + s1 - 1.0 / s1).abs() < 1e-13);
    /// ```
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

    /// `steps` exact JKO iterates of step τ ([`OrnsteinUhlenbeck::jko_step`] applied `steps`
    /// times; `steps = 0` returns `g`).
    ///
    /// ```rust
    /// use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
    ///
    /// // The mean contracts by 1/(1 + τk) per step.
    /// let ou = OrnsteinUhlenbeck::standard(1);
    /// let g = ou.jko_iterates(&Gaussian::diagonal(&[1.0], &[0.5]), 0.1, 10);
    /// assert!((g.mean[0] - 1.1f64.powi(-10)).abs() < 1e-15);
    /// ```
    pub fn jko_iterates(&self, g: &Gaussian, tau: f64, steps: usize) -> Gaussian {
        (0..steps).fold(g.clone(), |g, _| self.jko_step(&g, tau))
    }

    /// The exact gradient flow at time t: m(t) = c + (m − c) e^{−kt};
    /// S(t) = (β/k) I + (S − (β/k) I) e^{−2kt}  (S + 2βt I when k = 0).
    ///
    /// The JKO iterates converge to it at first order in τ.
    ///
    /// ```rust
    /// use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
    ///
    /// // Standard OU from N(2, 1): the variance is already stationary, the mean decays.
    /// let ou = OrnsteinUhlenbeck::standard(1);
    /// let g = ou.flow(&Gaussian::diagonal(&[2.0], &[1.0]), 0.5);
    /// assert!((g.mean[0] - 2.0 * (-0.5f64).exp()).abs() < 1e-15);
    /// assert_eq!(g.cov, vec![1.0]);
    /// ```
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
///
/// Time t is measured from the Dirac mass at t = 0; the profile has compact support of
/// radius [`Barenblatt::support_radius`].
///
/// ```rust
/// use jko_core::exact::Barenblatt;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // m = 2 in 1D: α = 1/3, so the support grows like t^{1/3}.
/// let b = Barenblatt::new(2.0, 1, 1.0)?;
/// assert!((b.support_radius(8.0) / b.support_radius(1.0) - 2.0).abs() < 1e-14);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Barenblatt {
    /// Porous-medium exponent m > 1.
    pub m: f64,
    /// Space dimension d ≥ 1.
    pub dim: usize,
    /// Total mass ∫ ρ (conserved in time).
    pub mass: f64,
    c: f64,
}

impl Barenblatt {
    /// The profile of exponent `m`, dimension `dim` and mass `mass`; the constant C is fixed by
    /// the mass.
    ///
    /// # Errors
    /// [`InputError::InvalidParameter`] when `m` is not finite and > 1 or `mass` is not finite
    /// and > 0.
    ///
    /// ```rust
    /// use jko_core::InputError;
    /// use jko_core::exact::Barenblatt;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Midpoint quadrature over the support recovers the mass.
    /// let b = Barenblatt::new(2.0, 1, 1.5)?;
    /// let (t, n) = (0.5, 2000);
    /// let r = b.support_radius(t);
    /// let h = 2.0 * r / n as f64;
    /// let mass: f64 = (0..n).map(|i| b.density(t, &[-r + (i as f64 + 0.5) * h]) * h).sum();
    /// assert!((mass - 1.5).abs() < 1e-5);
    /// assert!(matches!(
    ///     Barenblatt::new(1.0, 1, 1.0),
    ///     Err(InputError::InvalidParameter { .. })
    /// ));
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(m: f64, dim: usize, mass: f64) -> Result<Self, InputError> {
        crate::at_least_one("dim", dim)?;
        if !(m.is_finite() && m > 1.0) {
            return Err(InputError::parameter(
                "m",
                m,
                "Barenblatt profiles need m > 1",
            ));
        }
        crate::error::finite_positive("mass", mass)?;
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

    /// ρ(t, x) for t > 0 (`x` has `dim` coordinates); 0 outside the support.
    ///
    /// ```rust
    /// use jko_core::exact::Barenblatt;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let b = Barenblatt::new(2.0, 2, 1.0)?;
    /// let r = b.support_radius(1.0);
    /// assert!(b.density(1.0, &[0.0, 0.99 * r]) > 0.0);
    /// assert_eq!(b.density(1.0, &[0.0, 1.01 * r]), 0.0);
    /// // Radial symmetry.
    /// assert_eq!(b.density(1.0, &[0.3, 0.0]), b.density(1.0, &[0.0, 0.3]));
    /// # Ok(())
    /// # }
    /// ```
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

    /// Radius √(C/κ) t^{α/d} of the support at time t > 0.
    ///
    /// ```rust
    /// use jko_core::exact::Barenblatt;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let b = Barenblatt::new(3.0, 1, 1.0)?;
    /// let r = b.support_radius(0.5);
    /// assert!(b.density(0.5, &[0.999 * r]) > 0.0);
    /// assert_eq!(b.density(0.5, &[1.001 * r]), 0.0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn support_radius(&self, t: f64) -> f64 {
        let (alpha, kappa) = Self::exponents(self.m, self.dim);
        (self.c / kappa).sqrt() * t.powf(alpha / self.dim as f64)
    }
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, ~1e-15 relative).
pub(crate) fn ln_gamma(x: f64) -> f64 {
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
/// Returns (eigenvalues, eigenvectors as columns, row major), in no particular order; the
/// eigenvectors are orthonormal. Only the symmetric part of `a` is meaningful.
///
/// ```rust
/// use jko_core::exact::symmetric_eigen;
///
/// let a = [2.0, 1.0, 1.0, 2.0];
/// let (vals, vecs) = symmetric_eigen(&a, 2);
/// let mut sorted = vals.clone();
/// sorted.sort_by(f64::total_cmp);
/// assert!((sorted[0] - 1.0).abs() < 1e-14 && (sorted[1] - 3.0).abs() < 1e-14);
/// // V Λ Vᵀ = A.
/// for i in 0..2 {
///     for j in 0..2 {
///         let aij: f64 = (0..2).map(|e| vecs[i * 2 + e] * vals[e] * vecs[j * 2 + e]).sum();
///         assert!((aij - a[i * 2 + j]).abs() < 1e-14);
///     }
/// }
/// ```
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

/// The principal square root S^{½} of a symmetric positive semi-definite d×d matrix (row major),
/// V Λ^{½} Vᵀ from [`symmetric_eigen`]; negative eigenvalues (round-off) count as 0.
///
/// ```rust
/// use jko_core::exact::symmetric_sqrt;
///
/// // [[5, 4], [4, 5]] = R², R = [[2, 1], [1, 2]].
/// let r = symmetric_sqrt(&[5.0, 4.0, 4.0, 5.0], 2);
/// for (x, y) in r.iter().zip([2.0, 1.0, 1.0, 2.0]) {
///     assert!((x - y).abs() < 1e-14);
/// }
/// ```
pub fn symmetric_sqrt(a: &[f64], d: usize) -> Vec<f64> {
    let (vals, vecs) = symmetric_eigen(a, d);
    let mut r = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            r[i * d + j] = (0..d)
                .map(|e| vecs[i * d + e] * vals[e].max(0.0).sqrt() * vecs[j * d + e])
                .sum();
        }
    }
    r
}

/// Fokker–Planck with a linear potential on a box with no-flux walls:
/// ∂_t ρ = β Δρ + ∇·(ρ a), V(x) = a·x, on Π_i [l_i, u_i], (β ∇ρ + ρ a)·n = 0 on the walls.
///
/// The equation separates: ρ(t, x) = M Π_i ρ_i(t, x_i) / Z_i, each factor solving the 1D problem
/// ∂_t ρ_i = β ρ_i'' + a_i ρ_i' with no flux. In the shifted coordinate y = x_i − l_i ∈ [0, L],
/// substituting ρ_i = e^{−a y/(2β)} v gives v_t = β v'' − (a²/(4β)) v with the Robin condition
/// β v' + (a/2) v = 0 at y = 0 and y = L. Its solutions are the stationary part v = e^{−a y/(2β)}
/// and the modes X(y) = cos(ky) − (a/(2βk)) sin(ky), kL = nπ (the Robin condition at y = 0 fixes
/// the sine coefficient, and holds at y = L because sin(nπ) = 0), with decay rate
/// λ = β k² + a²/(4β). Hence
///   ρ_i(t, y) = e^{−a y/β} + A e^{−λ t} e^{−a y/(2β)} X(y),   Z_i = ∫_0^L e^{−a y/β} dy,
/// whose mode part carries no mass (it decays while the flux through the walls vanishes). It
/// stays positive when A max|X| < min e^{−a y/(2β)}, i.e. A < min(1, e^{−aL/(2β)}) / √(1 + (a/(2βk))²);
/// `amplitude` is A as a fraction of that bound.
///
/// The matching [`crate::Energy`] is `Energy::fokker_planck(beta, Potential::Linear { slope })`
/// on a grid of the same box.
///
/// ```rust
/// use jko_core::exact::DriftBox;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Without a mode the profile is stationary: ρ ∝ e^{−a x/β}, so ρ(0)/ρ(1) = e^{a/β}.
/// let db = DriftBox::new(0.5, vec![1.0], vec![0.0], vec![1.0], vec![1], vec![0.0], 1.0)?;
/// let ratio = db.density(0.0, &[0.0]) / db.density(7.0, &[1.0]);
/// assert!((ratio - 2f64.exp()).abs() < 1e-13);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct DriftBox {
    /// Temperature β > 0 (diffusion coefficient).
    pub beta: f64,
    /// Drift a (the slope of V), one entry per axis.
    pub slope: Vec<f64>,
    /// Lower corner l of the box, one entry per axis.
    pub lower: Vec<f64>,
    /// Upper corner u of the box, one entry per axis (u_i > l_i).
    pub upper: Vec<f64>,
    /// Mode number n_i ≥ 1 per axis (k_i = n_i π / L_i).
    pub modes: Vec<usize>,
    /// Mode amplitude per axis as a fraction in [0, 1) of the largest amplitude keeping ρ > 0.
    pub amplitude: Vec<f64>,
    /// Total mass M (conserved in time).
    pub mass: f64,
}

impl DriftBox {
    /// Check the parameters: β > 0, finite slopes, lower < upper, modes ≥ 1, 0 ≤ amplitude < 1,
    /// mass > 0, all vectors of the same length.
    ///
    /// # Errors
    /// [`InputError::ShapeMismatch`] when the vectors are empty or of different lengths;
    /// [`InputError::InvalidParameter`] for any other violated condition.
    ///
    /// ```rust
    /// use jko_core::InputError;
    /// use jko_core::exact::DriftBox;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // The mode part carries no mass: midpoint quadrature recovers M = 2 at t = 0.
    /// let db = DriftBox::new(0.4, vec![1.5], vec![0.0], vec![1.0], vec![2], vec![0.9], 2.0)?;
    /// let n = 1000;
    /// let h = 1.0 / n as f64;
    /// let mass: f64 = (0..n).map(|i| db.density(0.0, &[(i as f64 + 0.5) * h]) * h).sum();
    /// assert!((mass - 2.0).abs() < 1e-5);
    /// assert!(matches!(
    ///     DriftBox::new(0.4, vec![1.5], vec![0.0], vec![1.0], vec![0], vec![0.9], 2.0),
    ///     Err(InputError::InvalidParameter { .. })
    /// ));
    /// assert!(matches!(
    ///     DriftBox::new(0.4, vec![1.5, 0.0], vec![0.0], vec![1.0], vec![1], vec![0.9], 2.0),
    ///     Err(InputError::ShapeMismatch { .. })
    /// ));
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(
        beta: f64,
        slope: Vec<f64>,
        lower: Vec<f64>,
        upper: Vec<f64>,
        modes: Vec<usize>,
        amplitude: Vec<f64>,
        mass: f64,
    ) -> Result<Self, InputError> {
        let d = slope.len();
        if [lower.len(), upper.len(), modes.len(), amplitude.len()]
            .iter()
            .any(|&l| l != d)
            || d == 0
        {
            return Err(InputError::ShapeMismatch {
                what: "DriftBox slope, lower, upper, modes, amplitude".into(),
                expected: format!("{d} (> 0) entries each"),
                found: format!(
                    "{}, {}, {}, {}, {}",
                    d,
                    lower.len(),
                    upper.len(),
                    modes.len(),
                    amplitude.len()
                ),
            });
        }
        crate::error::finite_positive("beta", beta)?;
        crate::error::finite_positive("mass", mass)?;
        for i in 0..d {
            if !(slope[i].is_finite()
                && lower[i].is_finite()
                && upper[i].is_finite()
                && lower[i] < upper[i])
            {
                return Err(InputError::parameter(
                    "DriftBox axis",
                    format!("slope {}, [{}, {}]", slope[i], lower[i], upper[i]),
                    "needs a finite slope and finite lower < upper",
                ));
            }
            if modes[i] == 0 {
                return Err(InputError::parameter("modes", 0, "mode numbers start at 1"));
            }
            if !(0.0..1.0).contains(&amplitude[i]) {
                return Err(InputError::parameter(
                    "amplitude",
                    amplitude[i],
                    "must lie in [0, 1)",
                ));
            }
        }
        Ok(DriftBox {
            beta,
            slope,
            lower,
            upper,
            modes,
            amplitude,
            mass,
        })
    }

    /// Dimension d (number of axes).
    ///
    /// ```rust
    /// use jko_core::exact::DriftBox;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (lower, upper) = (vec![0.0; 2], vec![1.0; 2]);
    /// let db = DriftBox::new(1.0, vec![0.0; 2], lower, upper, vec![1; 2], vec![0.5; 2], 1.0)?;
    /// assert_eq!(db.dim(), 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn dim(&self) -> usize {
        self.slope.len()
    }

    fn wavenumber(&self, axis: usize) -> f64 {
        self.modes[axis] as f64 * std::f64::consts::PI / (self.upper[axis] - self.lower[axis])
    }

    /// Decay rate λ_i = β k_i² + a_i²/(4β) of the mode along `axis`, k_i = n_i π / L_i.
    ///
    /// # Panics
    /// If `axis ≥ dim()`.
    ///
    /// ```rust
    /// use jko_core::exact::DriftBox;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // β = 1, a = 2, L = π, n = 1: λ = 1 + 4/4 = 2.
    /// let pi = std::f64::consts::PI;
    /// let db = DriftBox::new(1.0, vec![2.0], vec![0.0], vec![pi], vec![1], vec![0.5], 1.0)?;
    /// assert!((db.decay_rate(0) - 2.0).abs() < 1e-15);
    /// # Ok(())
    /// # }
    /// ```
    pub fn decay_rate(&self, axis: usize) -> f64 {
        let k = self.wavenumber(axis);
        let a = self.slope[axis];
        self.beta * k * k + a * a / (4.0 * self.beta)
    }

    /// Z_i = ∫_0^L e^{−a y/β} dy.
    fn axis_mass(&self, axis: usize) -> f64 {
        let l = self.upper[axis] - self.lower[axis];
        let c = self.slope[axis] / self.beta;
        if (c * l).abs() < 1e-8 {
            l * (1.0 - c * l / 2.0)
        } else {
            -(-c * l).exp_m1() / c
        }
    }

    /// ρ_i(t, x_i) / Z_i (unit mass on its axis).
    fn axis_factor(&self, axis: usize, t: f64, x: f64) -> f64 {
        let (beta, a) = (self.beta, self.slope[axis]);
        let l = self.upper[axis] - self.lower[axis];
        let k = self.wavenumber(axis);
        let b = a / (2.0 * beta * k);
        let bound = (1.0f64).min((-a * l / (2.0 * beta)).exp()) / (1.0 + b * b).sqrt();
        let amp = self.amplitude[axis] * bound;
        let y = x - self.lower[axis];
        let mode = (k * y).cos() - b * (k * y).sin();
        let value = (-a * y / beta).exp()
            + amp * (-self.decay_rate(axis) * t).exp() * (-a * y / (2.0 * beta)).exp() * mode;
        value / self.axis_mass(axis)
    }

    /// ρ(t, x) at time t ≥ 0, for x in the box (`dim` coordinates); positive there.
    ///
    /// ```rust
    /// use jko_core::exact::DriftBox;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Heat equation on [0, 1] (a = 0): ρ(t, x) = 1 + A cos(πx) e^{−π² t}, A = 0.5.
    /// let db = DriftBox::new(1.0, vec![0.0], vec![0.0], vec![1.0], vec![1], vec![0.5], 1.0)?;
    /// let pi = std::f64::consts::PI;
    /// let expect = 1.0 + 0.5 * (-pi * pi * 0.1).exp();
    /// assert!((db.density(0.1, &[0.0]) - expect).abs() < 1e-14);
    /// # Ok(())
    /// # }
    /// ```
    pub fn density(&self, t: f64, x: &[f64]) -> f64 {
        self.mass
            * (0..self.dim())
                .map(|i| self.axis_factor(i, t, x[i]))
                .product::<f64>()
    }
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
        let g = Gaussian {
            mean: vec![1.0, -1.0],
            cov,
        };
        let out = ou.jko_step(&g, 0.3);
        let da = ou
            .jko_step(&Gaussian::diagonal(&[0.0], &[a.sqrt()]), 0.3)
            .cov[0];
        let db = ou
            .jko_step(&Gaussian::diagonal(&[0.0], &[b.sqrt()]), 0.3)
            .cov[0];
        let expect = [
            c * c * da + s * s * db,
            c * s * (da - db),
            c * s * (da - db),
            s * s * da + c * c * db,
        ];
        for (i, (a, b)) in out.cov.iter().zip(expect).enumerate() {
            assert!((a - b).abs() < 1e-13, "{i}");
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
                (0..n)
                    .map(|i| b.density(t, &[-r + (i as f64 + 0.5) * h]) * h)
                    .sum::<f64>()
            } else {
                (0..n)
                    .map(|i| {
                        let rr = (i as f64 + 0.5) * r / n as f64;
                        2.0 * std::f64::consts::PI * rr * b.density(t, &[rr, 0.0]) * r / n as f64
                    })
                    .sum::<f64>()
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
    #[test]
    fn drift_box_solves_the_pde_keeps_its_mass_and_has_no_flux() {
        let beta = 0.4;
        let a = [1.5, -0.7];
        let db = DriftBox::new(
            beta,
            a.to_vec(),
            vec![0.0, -0.5],
            vec![1.0, 1.5],
            vec![1, 2],
            vec![0.9, 0.8],
            2.0,
        )
        .unwrap();
        let rho = |t: f64, x: f64, y: f64| db.density(t, &[x, y]);
        // ∂_t ρ = β Δρ + a·∇ρ (∇·(ρ a) with constant a) at interior points, by finite differences.
        let e = 1e-4;
        for &(t, x, y) in &[(0.05, 0.3, 0.2), (0.2, 0.8, 1.1), (0.01, 0.5, -0.3)] {
            let dt = (rho(t + e, x, y) - rho(t - e, x, y)) / (2.0 * e);
            let c = rho(t, x, y);
            let dxx = (rho(t, x + e, y) - 2.0 * c + rho(t, x - e, y)) / (e * e);
            let dyy = (rho(t, x, y + e) - 2.0 * c + rho(t, x, y - e)) / (e * e);
            let dx = (rho(t, x + e, y) - rho(t, x - e, y)) / (2.0 * e);
            let dy = (rho(t, x, y + e) - rho(t, x, y - e)) / (2.0 * e);
            let rhs = beta * (dxx + dyy) + a[0] * dx + a[1] * dy;
            assert!(
                (dt - rhs).abs() < 1e-4 * dt.abs().max(1.0),
                "t {t}: {dt} vs {rhs}"
            );
            assert!(dt.abs() > 1e-3, "the test point must see the decaying mode");
        }
        // No flux: β ∂_n ρ + a_n ρ = 0 on the walls.
        for &t in &[0.0, 0.1] {
            for &s in &[-0.4, 0.3, 1.2] {
                for &x in &[0.0, 1.0] {
                    let d = (rho(t, x + e, s) - rho(t, x - e, s)) / (2.0 * e);
                    let flux = beta * d + a[0] * rho(t, x, s);
                    assert!(flux.abs() < 1e-6, "x wall {x}: {flux}");
                }
                let xs = (s + 0.5) / 2.0;
                for &y in &[-0.5, 1.5] {
                    let d = (rho(t, xs, y + e) - rho(t, xs, y - e)) / (2.0 * e);
                    let flux = beta * d + a[1] * rho(t, xs, y);
                    assert!(flux.abs() < 1e-6, "y wall {y}: {flux}");
                }
            }
        }
        // Mass and positivity by midpoint quadrature at several times.
        let n = 400;
        for &t in &[0.0, 0.05, 1.0] {
            let (hx, hy) = (1.0 / n as f64, 2.0 / n as f64);
            let mut mass = 0.0;
            let mut min = f64::INFINITY;
            for i in 0..n {
                for j in 0..n {
                    let v = rho(t, (i as f64 + 0.5) * hx, -0.5 + (j as f64 + 0.5) * hy);
                    mass += v * hx * hy;
                    min = min.min(v);
                }
            }
            assert!((mass - 2.0).abs() < 1e-4, "t {t}: mass {mass}");
            assert!(min > 0.0, "t {t}: min {min}");
        }
        // Refused: mode 0 (mode numbers start at 1) and an amplitude of 1, the whole
        // positivity bound (ρ would touch 0).
        for (mode, amplitude) in [(0, 0.5), (1, 1.0)] {
            let one_d = DriftBox::new(
                beta,
                vec![1.0],
                vec![0.0],
                vec![1.0],
                vec![mode],
                vec![amplitude],
                1.0,
            );
            assert!(one_d.is_err(), "mode {mode}, amplitude {amplitude}");
        }
    }
}

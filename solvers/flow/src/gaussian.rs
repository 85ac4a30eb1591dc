//! JKO-Flow on Gaussian states (Bures–Wasserstein geometry), any dimension.
//!
//! Energy J(ρ) = β ∫ ρ log ρ + (k/2) ∫ |x − c|² ρ (β KL to N(c, (β/k) I) up to a constant;
//! k = 0 is pure entropy, the heat equation). For ρ = N(m, S):
//!
//! - J = −(β/2) log det S + (k/2)(|m − c|² + tr S) + const,
//! - δJ/δρ = β log ρ + k|x − c|²/2 + const, ∇δJ/δρ = (kI − βS⁻¹)(x − m) + k(m − c),
//! - Fisher-type correction I(ρ) = ∫ |∇δJ/δρ|² ρ = k²|m − c|² + tr(k²S − 2kβI + β²S⁻¹),
//! - J^η = J − (η/4) I (Halmos–Hanin modified energy).
//!
//! **Bures–Wasserstein gradient.** An affine velocity v(x) = a + A(x − m), A symmetric, moves
//! N(m, S) to ṁ = a, Ṡ = AS + SA, with Otto metric ‖v‖² = |a|² + tr(ASA). For F(m, S) with
//! dF = ∂_mF·ṁ + tr(G Ṡ), G = ∂_S F symmetric, the gradient flow is a = −∂_mF, A = −2G:
//! ṁ = −∂_m F, Ṡ = −2(GS + SG). For J this is the Ornstein–Uhlenbeck flow (Ṡ = 2βI − 2kS).
//! For quadratic V the first variation of J^η is quadratic in x, so the exact (PDE) flow of J^η
//! keeps Gaussians and this restricted flow *is* the J^η flow. With
//! ∂_m I = 2k²(m − c), ∂_S I = k²I − β²S⁻²:
//!
//! - modified flow:  ṁ = −k(1 − ηk/2)(m − c),   Ṡ = 2βI − 2kS + η(k²S − β²S⁻¹).
//!
//! In 1D with β = k = 1 this is docs/mathematics.md §2.4's J^η = (m² + s²)/2 − log s − (η/4)(m² + (s − 1/s)²)
//! with ṁ = −∂_m J^η, ṡ = −∂_s J^η (checked in the tests).
//!
//! **Resummed velocity** v = −(I + (η/2) Hess J)⁻¹ grad J. The Gaussians form a totally geodesic
//! submanifold, so the Wasserstein Hessian restricts: Hess J(v, v) = k(|a|² + tr(ASA)) + β tr(A²).
//! As an operator for the metric above, H(a, A) = (k a, kA + β 𝓛_S⁻¹(A)), 𝓛_S(X) = (XS + SX)/2.
//! grad J = (k(m − c), kI − βS⁻¹) commutes with S, hence
//!
//! - resummed flow:  ṁ = −k(m − c)/(1 + ηk/2),   Ṡ = −2 (kS − βI) ((1 + ηk/2) S + (ηβ/2) I)⁻¹ S.
//!
//! Both differ from the exact JKO iterates (step η) by O(η²) at a fixed time; for OU the mean
//! gap at T = 1 is −e⁻¹η²/3 (modified) and −e⁻¹η²/12 (resummed); the plain gradient flow of J
//! is O(η) away. The ODEs are integrated by adaptive Dormand–Prince 5(4) to the requested
//! tolerance. The modified flow is ill-posed for thin Gaussians: an eigenvalue λ of S below the
//! smaller root of (2k − ηk²)λ² − 2βλ + ηβ² collapses to 0 in finite time; that is reported as
//! an error, never returned.
//!
//! Distances: [`moment_error`] = |Δm|₂ + ‖ΔS‖_F (used in the tables), and the exact
//! (Bures–Wasserstein) W₂ between Gaussians in the `w2_*` columns of [`ImplicitBiasRow`].

use crate::ode::{OdeOptions, integrate};
use crate::{FlowError, Variant};
use jko_core::InputError;
use jko_core::exact::{Gaussian, OrnsteinUhlenbeck, symmetric_eigen, symmetric_sqrt};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The energy β ∫ ρ log ρ + (k/2) ∫ |x − c|² ρ on Gaussian states.
///
/// ```rust
/// use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
/// use jko_flow::gaussian::GaussianFlow;
///
/// // Built from an Ornstein–Uhlenbeck process; its plain flow is the process's exact flow.
/// let ou = OrnsteinUhlenbeck::standard(2);
/// let flow = GaussianFlow::from(&ou);
/// let g = Gaussian::diagonal(&[1.0, -1.0], &[0.5, 2.0]);
/// assert_eq!(flow.plain_flow(&g, 0.7), ou.flow(&g, 0.7));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianFlow {
    /// Temperature β > 0.
    pub beta: f64,
    /// Stiffness k ≥ 0 of the quadratic potential (0: heat equation).
    pub stiffness: f64,
    /// Centre c of the potential, one coordinate per axis.
    pub center: Vec<f64>,
}

impl From<&OrnsteinUhlenbeck> for GaussianFlow {
    fn from(ou: &OrnsteinUhlenbeck) -> Self {
        GaussianFlow {
            beta: ou.beta,
            stiffness: ou.stiffness,
            center: ou.center.clone(),
        }
    }
}

/// One row of the implicit-bias study: errors at time T against the exact JKO iterates.
/// See [`GaussianFlow::implicit_bias_table`] for an example.
///
/// ```rust
/// use jko_flow::gaussian::ImplicitBiasRow;
///
/// let row = ImplicitBiasRow {
///     eta: 0.1, steps: 10, err_flow: 4e-3, err_resummed: 1e-3, err_wgf: 2e-2, w2_flow: 3e-3, w2_wgf: 1e-2,
/// };
/// assert_eq!(row.eta * row.steps as f64, 1.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ImplicitBiasRow {
    /// JKO step η.
    pub eta: f64,
    /// Number of JKO steps, T/η.
    pub steps: usize,
    /// |Δm| + ‖ΔS‖_F between the JKO iterates and the J^η (modified) flow.
    pub err_flow: f64,
    /// Same for the resummed flow.
    pub err_resummed: f64,
    /// Same for the plain gradient flow of J.
    pub err_wgf: f64,
    /// Exact W₂ between the JKO iterates and the modified flow.
    pub w2_flow: f64,
    /// Exact W₂ between the JKO iterates and the plain flow.
    pub w2_wgf: f64,
}

/// Observed orders log₂(e(η)/e(η/2))-style between consecutive rows (any ratio of η).
/// Returns (η, order of err_flow, order of err_resummed, order of err_wgf) for rows 1.. .
///
/// ```rust
/// use jko_flow::gaussian::{ImplicitBiasRow, observed_orders};
///
/// let row = |eta: f64| ImplicitBiasRow {
///     eta, steps: 1, err_flow: eta * eta, err_resummed: eta * eta, err_wgf: eta, w2_flow: 0.0, w2_wgf: 0.0,
/// };
/// let orders = observed_orders(&[row(0.2), row(0.1)]);
/// let (eta, o_flow, _, o_wgf) = orders[0];
/// assert_eq!(eta, 0.1);
/// assert!((o_flow - 2.0).abs() < 1e-12 && (o_wgf - 1.0).abs() < 1e-12);
/// ```
pub fn observed_orders(rows: &[ImplicitBiasRow]) -> Vec<(f64, f64, f64, f64)> {
    rows.windows(2)
        .map(|w| {
            let r = (w[0].eta / w[1].eta).ln();
            let o = |a: f64, b: f64| (a / b).ln() / r;
            (
                w[1].eta,
                o(w[0].err_flow, w[1].err_flow),
                o(w[0].err_resummed, w[1].err_resummed),
                o(w[0].err_wgf, w[1].err_wgf),
            )
        })
        .collect()
}

/// |Δm|₂ + ‖ΔS‖_F.
///
/// ```rust
/// use jko_core::exact::Gaussian;
/// use jko_flow::gaussian::moment_error;
///
/// let a = Gaussian::diagonal(&[0.0, 0.0], &[1.0, 1.0]);
/// let b = Gaussian::diagonal(&[3.0, 4.0], &[1.0, 1.0]);
/// assert_eq!(moment_error(&a, &b), 5.0);
/// ```
pub fn moment_error(a: &Gaussian, b: &Gaussian) -> f64 {
    squared_distance(&a.mean, &b.mean).sqrt() + squared_distance(&a.cov, &b.cov).sqrt()
}

/// Σ_i (a_i − b_i)².
fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// tr S of a d×d matrix (row major).
fn trace(s: &[f64], d: usize) -> f64 {
    (0..d).map(|i| s[i * d + i]).sum()
}

/// Exact W₂(N(m₁, S₁), N(m₂, S₂)) = (|Δm|² + tr S₁ + tr S₂ − 2 tr (S₁^{½} S₂ S₁^{½})^{½})^{½}.
pub(crate) fn bures_wasserstein(a: &Gaussian, b: &Gaussian) -> f64 {
    let d = a.dim();
    let dm = squared_distance(&a.mean, &b.mean);
    let r = symmetric_sqrt(&a.cov, d);
    let inner = matmul(&matmul(&r, &b.cov, d), &r, d);
    let (vals, _) = symmetric_eigen(&inner, d);
    let cross: f64 = vals.iter().map(|v| v.max(0.0).sqrt()).sum();
    (dm + trace(&a.cov, d) + trace(&b.cov, d) - 2.0 * cross)
        .max(0.0)
        .sqrt()
}

impl GaussianFlow {
    fn check(&self, g: &Gaussian, eta: f64, t: f64, tol: f64) -> Result<(), FlowError> {
        let d = g.dim();
        let finite = |name: &str, v: f64| {
            if v.is_finite() {
                Ok(())
            } else {
                Err(InputError::parameter(name, v, "must be finite"))
            }
        };
        finite("beta", self.beta)?;
        finite("stiffness", self.stiffness)?;
        if self.beta < 0.0 {
            return Err(
                InputError::parameter("beta", self.beta, "the temperature must be >= 0").into(),
            );
        }
        if self.center.len() != d || g.cov.len() != d * d || d == 0 {
            return Err(InputError::ShapeMismatch {
                what: "Gaussian mean / covariance / centre".into(),
                expected: format!(
                    "dimension {d}: {d} means, {} covariance entries, {d} centre entries",
                    d * d
                ),
                found: format!("{} / {} / {}", g.mean.len(), g.cov.len(), self.center.len()),
            }
            .into());
        }
        if !(eta.is_finite() && eta >= 0.0) {
            return Err(InputError::parameter("eta", eta, "must be finite and >= 0").into());
        }
        if !(t.is_finite() && t >= 0.0) {
            return Err(InputError::parameter("t", t, "must be finite and >= 0").into());
        }
        if !(tol.is_finite() && tol > 0.0 && tol < 1.0) {
            return Err(InputError::parameter("tol", tol, "must be in (0, 1)").into());
        }
        if g.mean
            .iter()
            .chain(&g.cov)
            .chain(&self.center)
            .any(|v| !v.is_finite())
        {
            return Err(
                InputError::parameter("gaussian", format!("{g:?}"), "non-finite entry").into(),
            );
        }
        if cholesky(&g.cov, d).is_none() {
            return Err(InputError::parameter(
                "gaussian.cov",
                format!("{:?}", g.cov),
                "the covariance must be symmetric positive definite",
            )
            .into());
        }
        Ok(())
    }

    /// J(N(m, S)) = −(β/2) log det S − (βd/2)(1 + log 2π) + (k/2)(|m − c|² + tr S).
    ///
    /// ```rust
    /// use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
    /// use jko_flow::gaussian::GaussianFlow;
    ///
    /// // Standard OU at its equilibrium N(0, 1): J = −½(1 + log 2π) + ½ = −½ log 2π.
    /// let j = GaussianFlow::from(&OrnsteinUhlenbeck::standard(1)).energy(&Gaussian::diagonal(&[0.0], &[1.0]));
    /// assert!((j + 0.5 * (2.0 * std::f64::consts::PI).ln()).abs() < 1e-15);
    /// ```
    pub fn energy(&self, g: &Gaussian) -> f64 {
        let d = g.dim();
        let logdet = cholesky(&g.cov, d)
            .map(|l| (0..d).map(|i| 2.0 * l[i * d + i].ln()).sum::<f64>())
            .unwrap_or(f64::NEG_INFINITY);
        let (dm2, tr) = (squared_distance(&g.mean, &self.center), trace(&g.cov, d));
        -0.5 * self.beta * logdet
            - 0.5 * self.beta * d as f64 * (1.0 + (2.0 * std::f64::consts::PI).ln())
            + 0.5 * self.stiffness * (dm2 + tr)
    }

    /// I(ρ) = ∫ |∇δJ/δρ|² ρ = k²|m − c|² + tr(k²S − 2kβI + β²S⁻¹).
    ///
    /// ```rust
    /// use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
    /// use jko_flow::gaussian::GaussianFlow;
    ///
    /// let flow = GaussianFlow::from(&OrnsteinUhlenbeck::standard(1));
    /// // Zero at the equilibrium N(0, 1); 4 − 2 + 1/4 at N(0, 4).
    /// assert_eq!(flow.fisher_information(&Gaussian::diagonal(&[0.0], &[1.0])), 0.0);
    /// assert!((flow.fisher_information(&Gaussian::diagonal(&[0.0], &[2.0])) - 2.25).abs() < 1e-15);
    /// ```
    pub fn fisher_information(&self, g: &Gaussian) -> f64 {
        let d = g.dim();
        let (b, k) = (self.beta, self.stiffness);
        let (dm2, tr) = (squared_distance(&g.mean, &self.center), trace(&g.cov, d));
        let tr_inv = cholesky(&g.cov, d)
            .map(|l| trace(&spd_inverse(&l, d), d))
            .unwrap_or(f64::INFINITY);
        k * k * dm2 + k * k * tr - 2.0 * k * b * d as f64 + b * b * tr_inv
    }

    /// J^η = J − (η/4) I.
    ///
    /// ```rust
    /// use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
    /// use jko_flow::gaussian::GaussianFlow;
    ///
    /// let flow = GaussianFlow::from(&OrnsteinUhlenbeck::standard(1));
    /// let g = Gaussian::diagonal(&[1.0], &[2.0]);
    /// let expected = flow.energy(&g) - 0.025 * flow.fisher_information(&g);
    /// assert_eq!(flow.modified_energy(&g, 0.1), expected);
    /// ```
    pub fn modified_energy(&self, g: &Gaussian, eta: f64) -> f64 {
        self.energy(g) - 0.25 * eta * self.fisher_information(g)
    }

    /// The exact gradient flow of J at time t (the plain flow).
    ///
    /// ```rust
    /// use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
    /// use jko_flow::gaussian::GaussianFlow;
    ///
    /// // Heat flow: the variance grows by 2βt.
    /// let heat = GaussianFlow { beta: 0.5, stiffness: 0.0, center: vec![0.0] };
    /// let later = heat.plain_flow(&Gaussian::diagonal(&[0.0], &[1.0]), 2.0);
    /// assert!((later.cov[0] - 3.0).abs() < 1e-14);
    /// ```
    pub fn plain_flow(&self, g: &Gaussian, t: f64) -> Gaussian {
        self.ou().flow(g, t)
    }

    /// `steps` exact JKO iterates with step η.
    ///
    /// ```rust
    /// use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
    /// use jko_flow::gaussian::GaussianFlow;
    ///
    /// let ou = OrnsteinUhlenbeck::standard(1);
    /// let g = Gaussian::diagonal(&[1.0], &[0.5]);
    /// // One JKO step contracts the mean by 1/(1 + η k).
    /// let next = GaussianFlow::from(&ou).jko_iterates(&g, 0.1, 1);
    /// assert!((next.mean[0] - 1.0 / 1.1).abs() < 1e-15);
    /// ```
    pub fn jko_iterates(&self, g: &Gaussian, eta: f64, steps: usize) -> Gaussian {
        self.ou().jko_iterates(g, eta, steps)
    }

    fn ou(&self) -> OrnsteinUhlenbeck {
        OrnsteinUhlenbeck {
            beta: self.beta,
            stiffness: self.stiffness,
            center: self.center.clone(),
        }
    }

    /// Velocity (ṁ, Ṡ) of a variant at (m, S); `None` when S is not positive definite.
    pub(crate) fn velocity(
        &self,
        variant: Variant,
        eta: f64,
        m: &[f64],
        s: &[f64],
        dm: &mut [f64],
        ds: &mut [f64],
    ) -> Option<()> {
        let d = m.len();
        let (b, k) = (self.beta, self.stiffness);
        let l = cholesky(s, d)?;
        let eta = if variant == Variant::Plain { 0.0 } else { eta };
        match variant {
            Variant::Modified | Variant::Plain => {
                let rate = k * (1.0 - 0.5 * eta * k);
                for i in 0..d {
                    dm[i] = -rate * (m[i] - self.center[i]);
                }
                let inv = spd_inverse(&l, d);
                for i in 0..d {
                    for j in 0..d {
                        let id = if i == j { 1.0 } else { 0.0 };
                        ds[i * d + j] = 2.0 * b * id - 2.0 * k * s[i * d + j]
                            + eta * (k * k * s[i * d + j] - b * b * inv[i * d + j]);
                    }
                }
            }
            Variant::Resummed => {
                let a = 1.0 + 0.5 * eta * k;
                for i in 0..d {
                    dm[i] = -k * (m[i] - self.center[i]) / a;
                }
                // M = a S + (ηβ/2) I, X = M⁻¹ S, B = kS − βI, Ṡ = −(BX + XᵀB).
                let mut mm = vec![0.0; d * d];
                for i in 0..d {
                    for j in 0..d {
                        let id = if i == j { 1.0 } else { 0.0 };
                        mm[i * d + j] = a * s[i * d + j] + 0.5 * eta * b * id;
                    }
                }
                let lm = cholesky(&mm, d)?;
                let x = matmul(&spd_inverse(&lm, d), s, d);
                for i in 0..d {
                    for j in 0..d {
                        let mut bx = 0.0;
                        let mut xb = 0.0;
                        for e in 0..d {
                            let bie = k * s[i * d + e] - if i == e { b } else { 0.0 };
                            let bej = k * s[e * d + j] - if e == j { b } else { 0.0 };
                            bx += bie * x[e * d + j];
                            xb += x[e * d + i] * bej;
                        }
                        ds[i * d + j] = -(bx + xb);
                    }
                }
            }
        }
        Some(())
    }

    /// The flow of `variant` at time t from `g`: [`Variant::Modified`], the gradient flow of
    /// J^η (the modified energy); [`Variant::Resummed`], −(I + (η/2) Hess J)⁻¹ grad J;
    /// [`Variant::Plain`], the gradient flow of J (η ignored; [`GaussianFlow::plain_flow`] is its
    /// closed form). The ODE for (m, S) is integrated over [0, t] by Dormand–Prince 5(4) with
    /// rtol = atol = `tol`.
    ///
    /// # Errors
    /// [`FlowError::Input`] for invalid η, t, `tol` or Gaussian; [`FlowError::Collapse`] when
    /// the covariance collapses under the modified flow (a variance below the smaller root of
    /// (2k − ηk²)λ² − 2βλ + ηβ²): the flow is ill-posed from there.
    ///
    /// ```rust
    /// use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
    /// use jko_flow::Variant;
    /// use jko_flow::gaussian::GaussianFlow;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let flow = GaussianFlow::from(&OrnsteinUhlenbeck::standard(1));
    /// // Modified: ṁ = −k(1 − ηk/2)(m − c), the mean decays at rate 1 − η/2 for the standard OU.
    /// let out = flow.flow(&Gaussian::diagonal(&[1.0], &[0.8]), Variant::Modified, 0.2, 1.0, 1e-12)?;
    /// assert!((out.mean[0] - (-0.9f64).exp()).abs() < 1e-10);
    /// // Resummed: ṁ = −k(m − c)/(1 + ηk/2), and the equilibrium N(c, β/k) stays put.
    /// let out = flow.flow(&Gaussian::diagonal(&[1.0], &[1.0]), Variant::Resummed, 0.2, 1.0, 1e-12)?;
    /// assert!((out.mean[0] - (-1.0f64 / 1.1).exp()).abs() < 1e-10);
    /// assert!((out.cov[0] - 1.0).abs() < 1e-12);
    /// # Ok(())
    /// # }
    /// ```
    pub fn flow(
        &self,
        g: &Gaussian,
        variant: Variant,
        eta: f64,
        t: f64,
        tol: f64,
    ) -> Result<Gaussian, FlowError> {
        self.check(g, eta, t, tol)?;
        let d = g.dim();
        let mut y: Vec<f64> = g.mean.iter().chain(&g.cov).copied().collect();
        let opts = OdeOptions {
            rtol: tol,
            atol: tol,
            max_steps: 1_000_000,
            ..OdeOptions::default()
        };
        let result = integrate(
            &mut y,
            t,
            &opts,
            |y, dy| {
                let (m, s) = y.split_at(d);
                let (dm, ds) = dy.split_at_mut(d);
                Ok(self.velocity(variant, eta, m, s, dm, ds).is_some())
            },
            |_, _, _| {},
        );
        match result {
            Ok(_) => Ok(Gaussian {
                mean: y[..d].to_vec(),
                cov: y[d..].to_vec(),
            }),
            Err(FlowError::StepSizeUnderflow { t: reached, .. }) => Err(FlowError::Collapse {
                time: reached,
                reason: format!(
                    "the covariance stops being positive definite near t = {reached:.4}: the {variant:?} flow \
                     with eta = {eta} is ill-posed from this Gaussian (a variance below the smaller root of \
                     (2k - eta k^2) x^2 - 2 beta x + eta beta^2 collapses)"
                ),
            }),
            Err(e) => Err(e),
        }
    }

    /// The flow of `variant` ([`GaussianFlow::flow`]) for many initial Gaussians in parallel (rayon); one
    /// result per initial Gaussian, in order, each with its own error.
    ///
    /// ```rust
    /// use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
    /// use jko_flow::Variant;
    /// use jko_flow::gaussian::GaussianFlow;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let flow = GaussianFlow::from(&OrnsteinUhlenbeck::standard(1));
    /// let starts = [Gaussian::diagonal(&[1.0], &[0.8]), Gaussian::diagonal(&[-1.0], &[1.5])];
    /// let batch = flow.flow_batch(&starts, Variant::Resummed, 0.1, 0.5, 1e-10);
    /// for (g, out) in starts.iter().zip(batch) {
    ///     assert_eq!(out?, flow.flow(g, Variant::Resummed, 0.1, 0.5, 1e-10)?);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn flow_batch(
        &self,
        initial: &[Gaussian],
        variant: Variant,
        eta: f64,
        t: f64,
        tol: f64,
    ) -> Vec<Result<Gaussian, FlowError>> {
        initial
            .par_iter()
            .map(|g| self.flow(g, variant, eta, t, tol))
            .collect()
    }

    /// Errors at time `t_end` of the modified flow, the resummed flow and the plain gradient flow
    /// against the exact JKO iterates with step η, for each η (t_end/η must be an integer).
    /// The η are processed in parallel.
    ///
    /// # Errors
    /// [`FlowError::Input`] when an η is not positive or t_end/η is not an integer; the errors
    /// of the flows.
    ///
    /// ```rust
    /// use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
    /// use jko_flow::gaussian::GaussianFlow;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // The plain gradient flow is O(η) from the JKO iterates, the resummed flow O(η²).
    /// let flow = GaussianFlow::from(&OrnsteinUhlenbeck::standard(1));
    /// let rows = flow.implicit_bias_table(&Gaussian::diagonal(&[1.0], &[0.5]), &[0.1, 0.05], 1.0, 1e-12)?;
    /// assert_eq!(rows[1].steps, 20);
    /// let (_, _, o_resummed, o_wgf) = jko_flow::gaussian::observed_orders(&rows)[0];
    /// assert!((o_wgf - 1.0).abs() < 0.1 && (o_resummed - 2.0).abs() < 0.1);
    /// assert!(flow.implicit_bias_table(&Gaussian::diagonal(&[1.0], &[0.5]), &[0.3], 1.0, 1e-12).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn implicit_bias_table(
        &self,
        initial: &Gaussian,
        etas: &[f64],
        t_end: f64,
        tol: f64,
    ) -> Result<Vec<ImplicitBiasRow>, FlowError> {
        etas.par_iter()
            .map(|&eta| {
                if !(eta.is_finite() && eta > 0.0) {
                    return Err(InputError::parameter("eta", eta, "must be finite and > 0").into());
                }
                let steps = (t_end / eta).round();
                if steps < 1.0 || (steps * eta - t_end).abs() > 1e-9 * t_end {
                    return Err(InputError::parameter(
                        "eta",
                        eta,
                        "t_end / eta must be a positive integer (whole JKO steps)",
                    )
                    .into());
                }
                let steps = steps as usize;
                let jko = self.jko_iterates(initial, eta, steps);
                let flow = self.flow(initial, Variant::Modified, eta, t_end, tol)?;
                let res = self.flow(initial, Variant::Resummed, eta, t_end, tol)?;
                let wgf = self.plain_flow(initial, t_end);
                Ok(ImplicitBiasRow {
                    eta,
                    steps,
                    err_flow: moment_error(&jko, &flow),
                    err_resummed: moment_error(&jko, &res),
                    err_wgf: moment_error(&jko, &wgf),
                    w2_flow: bures_wasserstein(&jko, &flow),
                    w2_wgf: bures_wasserstein(&jko, &wgf),
                })
            })
            .collect()
    }
}

/// Cholesky factor (lower, row major) of a symmetric d×d matrix; `None` unless positive definite.
pub(crate) fn cholesky(a: &[f64], d: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let mut s = 0.5 * (a[i * d + j] + a[j * d + i]);
            for e in 0..j {
                s -= l[i * d + e] * l[j * d + e];
            }
            if i == j {
                if !(s > 0.0 && s.is_finite()) {
                    return None;
                }
                l[i * d + i] = s.sqrt();
            } else {
                l[i * d + j] = s / l[j * d + j];
            }
        }
    }
    Some(l)
}

/// (LLᵀ)⁻¹ from the Cholesky factor.
fn spd_inverse(l: &[f64], d: usize) -> Vec<f64> {
    let mut inv = vec![0.0; d * d];
    for col in 0..d {
        // Solve L y = e_col, then Lᵀ x = y.
        let mut y = vec![0.0; d];
        for i in 0..d {
            let mut s = if i == col { 1.0 } else { 0.0 };
            for e in 0..i {
                s -= l[i * d + e] * y[e];
            }
            y[i] = s / l[i * d + i];
        }
        for i in (0..d).rev() {
            let mut s = y[i];
            for e in i + 1..d {
                s -= l[e * d + i] * inv[e * d + col];
            }
            inv[i * d + col] = s / l[i * d + i];
        }
    }
    inv
}

fn matmul(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let mut c = vec![0.0; d * d];
    for i in 0..d {
        for e in 0..d {
            let aie = a[i * d + e];
            for j in 0..d {
                c[i * d + j] += aie * b[e * d + j];
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standard() -> GaussianFlow {
        GaussianFlow::from(&OrnsteinUhlenbeck::standard(1))
    }

    /// A 2D target with β ≠ 1, k ≠ 1 and an off-origin centre: nothing in the closed forms
    /// can cancel by accident.
    fn general_target() -> GaussianFlow {
        GaussianFlow {
            beta: 0.8,
            stiffness: 1.5,
            center: vec![0.3, -0.2],
        }
    }

    /// A 2D start with a non-diagonal covariance (its eigenbasis is not the axes).
    fn tilted_start() -> Gaussian {
        Gaussian {
            mean: vec![1.0, -0.5],
            cov: vec![0.5, 0.2, 0.2, 0.3],
        }
    }

    /// Observed orders between successive η of an implicit-bias table: 2 for the modified flow
    /// (and the resummed one when `resummed`), 1 for the plain Wasserstein gradient flow.
    fn assert_orders(rows: &[ImplicitBiasRow], resummed: bool) {
        for (eta, o_flow, o_res, o_wgf) in observed_orders(rows) {
            assert!(
                (1.8..=2.2).contains(&o_flow),
                "eta {eta}: modified order {o_flow}"
            );
            assert!(
                !resummed || (1.8..=2.2).contains(&o_res),
                "eta {eta}: resummed order {o_res}"
            );
            assert!(
                (0.9..=1.1).contains(&o_wgf),
                "eta {eta}: plain order {o_wgf}"
            );
        }
    }

    #[test]
    fn modified_flow_matches_the_design_formula_in_1d() {
        // docs/mathematics.md §2.4: J^η = (m² + s²)/2 − log s − (η/4)(m² + (s − 1/s)²), ṁ = −∂_m, ṡ = −∂_s,
        // integrated here independently by classical RK4 with a fixed small step.
        let eta = 0.1;
        let rhs = |m: f64, s: f64| {
            let q = s - 1.0 / s;
            (
                -(m - 0.5 * eta * m),
                -(s - 1.0 / s - 0.5 * eta * q * (1.0 + 1.0 / (s * s))),
            )
        };
        let (mut m, mut s) = (1.0f64, 0.5f64);
        let n = 4000;
        let h = 1.0 / n as f64;
        for _ in 0..n {
            let k1 = rhs(m, s);
            let k2 = rhs(m + 0.5 * h * k1.0, s + 0.5 * h * k1.1);
            let k3 = rhs(m + 0.5 * h * k2.0, s + 0.5 * h * k2.1);
            let k4 = rhs(m + h * k3.0, s + h * k3.1);
            m += h / 6.0 * (k1.0 + 2.0 * k2.0 + 2.0 * k3.0 + k4.0);
            s += h / 6.0 * (k1.1 + 2.0 * k2.1 + 2.0 * k3.1 + k4.1);
        }
        let g = standard()
            .flow(
                &Gaussian::diagonal(&[1.0], &[0.5]),
                Variant::Modified,
                eta,
                1.0,
                1e-12,
            )
            .unwrap();
        assert!((g.mean[0] - m).abs() < 1e-11, "{} vs {m}", g.mean[0]);
        assert!(
            (g.cov[0] - s * s).abs() < 1e-11,
            "{} vs {}",
            g.cov[0],
            s * s
        );
        // And the energy the tests differentiate is the one the module evaluates.
        let gs = Gaussian::diagonal(&[0.7], &[1.3]);
        let (mm, ss) = (0.7f64, 1.3f64);
        let design =
            (mm * mm + ss * ss) / 2.0 - ss.ln() - 0.25 * eta * (mm * mm + (ss - 1.0 / ss).powi(2));
        let constant = -0.5 * (1.0 + (2.0 * std::f64::consts::PI).ln());
        assert!((standard().modified_energy(&gs, eta) - (design + constant)).abs() < 1e-13);
    }

    #[test]
    fn eigenvalues_follow_the_implicit_closed_form() {
        // Each eigenvalue λ of S solves λ' = P(λ)/λ, P(λ) = −aλ² + 2βλ − ηβ², a = 2k − ηk²;
        // by partial fractions t = −[r₁ ln|(λ−r₁)/(λ₀−r₁)| − r₂ ln|(λ−r₂)/(λ₀−r₂)|] / (a (r₁ − r₂)).
        let f = general_target();
        let g = tilted_start();
        let (eta, t) = (0.05, 0.7);
        let out = f.flow(&g, Variant::Modified, eta, t, 1e-12).unwrap();
        let (b, k) = (f.beta, f.stiffness);
        let a = 2.0 * k - eta * k * k;
        let disc = (1.0 - a * eta).sqrt();
        let (r1, r2) = (b * (1.0 + disc) / a, b * (1.0 - disc) / a);
        let (l0, v0) = symmetric_eigen(&g.cov, 2);
        let (l1, v1) = symmetric_eigen(&out.cov, 2);
        let mut l1s = l1.clone();
        // Match eigenvalues by eigenvector (the eigenbasis is invariant).
        for i in 0..2 {
            let j = (0..2)
                .max_by(|&p, &q| {
                    let dp = (v0[i] * v1[p] + v0[2 + i] * v1[2 + p]).abs();
                    let dq = (v0[i] * v1[q] + v0[2 + i] * v1[2 + q]).abs();
                    dp.total_cmp(&dq)
                })
                .unwrap();
            l1s[i] = l1[j];
        }
        for i in 0..2 {
            let (x0, x) = (l0[i], l1s[i]);
            let time = -(r1 * ((x - r1) / (x0 - r1)).abs().ln()
                - r2 * ((x - r2) / (x0 - r2)).abs().ln())
                / (a * (r1 - r2));
            assert!((time - t).abs() < 1e-9, "eigenvalue {i}: t = {time}");
        }
        let decay = (-k * (1.0 - 0.5 * eta * k) * t).exp();
        for i in 0..2 {
            let m = f.center[i] + (g.mean[i] - f.center[i]) * decay;
            assert!((out.mean[i] - m).abs() < 1e-11);
        }
    }

    #[test]
    fn zero_eta_reproduces_the_exact_gradient_flow() {
        let f = general_target();
        let g = tilted_start();
        for v in [Variant::Modified, Variant::Resummed] {
            let out = f.flow(&g, v, 0.0, 1.3, 1e-12).unwrap();
            assert!(moment_error(&out, &f.plain_flow(&g, 1.3)) < 1e-10, "{v:?}");
        }
    }

    #[test]
    fn ou_1d_orders_and_gap_constants() {
        // Must-show: N(1, 0.5²), V = x²/2, T = 1, η = 0.1 → 0.00625.
        let f = standard();
        let g = Gaussian::diagonal(&[1.0], &[0.5]);
        let etas = [0.1, 0.05, 0.025, 0.0125, 0.00625];
        let rows = f.implicit_bias_table(&g, &etas, 1.0, 1e-13).unwrap();
        assert_orders(&rows, true);
        // Mean gaps (docs/mathematics.md §2.4): −e⁻¹η²/3 (modified), −e⁻¹η²/12 (resummed).
        let eta = 0.00625;
        let n = 160;
        let jko = f.jko_iterates(&g, eta, n).mean[0];
        let m_mod = f.flow(&g, Variant::Modified, eta, 1.0, 1e-13).unwrap().mean[0];
        let m_res = f.flow(&g, Variant::Resummed, eta, 1.0, 1e-13).unwrap().mean[0];
        let e1 = (-1.0f64).exp();
        assert!(((jko - m_mod) / (eta * eta) + e1 / 3.0).abs() < 0.01 * e1 / 3.0);
        assert!(((jko - m_res) / (eta * eta) + e1 / 12.0).abs() < 0.02 * e1 / 12.0);
    }

    #[test]
    fn ou_2d_non_diagonal_orders() {
        let f = GaussianFlow {
            beta: 1.0,
            stiffness: 1.0,
            center: vec![0.0, 0.0],
        };
        let g = tilted_start();
        let etas = [0.1, 0.05, 0.025, 0.0125, 0.00625];
        let rows = f.implicit_bias_table(&g, &etas, 1.0, 1e-13).unwrap();
        assert_orders(&rows, true);
        // A general target (β, k, c) as well.
        let f = general_target();
        let rows = f.implicit_bias_table(&g, &etas, 1.0, 1e-13).unwrap();
        assert_orders(&rows, false);
    }

    #[test]
    fn batch_equals_sequential_and_collapse_is_an_error() {
        let f = standard();
        let gs: Vec<Gaussian> = (0..16)
            .map(|i| Gaussian::diagonal(&[i as f64 * 0.1], &[0.4 + 0.05 * i as f64]))
            .collect();
        let batch = f.flow_batch(&gs, Variant::Modified, 0.1, 1.0, 1e-10);
        for (g, b) in gs.iter().zip(batch) {
            assert_eq!(
                b.unwrap(),
                f.flow(g, Variant::Modified, 0.1, 1.0, 1e-10).unwrap()
            );
        }
        // λ₀ = 0.01 is below the root r₂ ≈ 0.111 for η = 0.2: the variance collapses.
        let thin = Gaussian::diagonal(&[0.0], &[0.1]);
        assert!(matches!(
            f.flow(&thin, Variant::Modified, 0.2, 1.0, 1e-10),
            Err(FlowError::Collapse { .. })
        ));
        // The resummed flow is well posed from the same state.
        assert!(f.flow(&thin, Variant::Resummed, 0.2, 1.0, 1e-10).is_ok());
        // Bad input is typed.
        assert!(matches!(
            f.flow(&thin, Variant::Modified, -1.0, 1.0, 1e-10),
            Err(FlowError::Input(_))
        ));
        let not_spd = Gaussian {
            mean: vec![0.0],
            cov: vec![-1.0],
        };
        assert!(matches!(
            f.flow(&not_spd, Variant::Modified, 0.1, 1.0, 1e-10),
            Err(FlowError::Input(_))
        ));
    }

    #[test]
    fn bures_wasserstein_known_values() {
        // Commuting case: W₂² = |Δm|² + ‖S₁^{½} − S₂^{½}‖².
        let a = Gaussian::diagonal(&[0.0, 1.0], &[1.0, 2.0]);
        let b = Gaussian::diagonal(&[1.0, 1.0], &[3.0, 0.5]);
        let w = bures_wasserstein(&a, &b);
        assert!((w * w - (1.0 + 4.0 + 2.25)).abs() < 1e-12);
        assert!(bures_wasserstein(&a, &a) < 1e-7);
    }
}

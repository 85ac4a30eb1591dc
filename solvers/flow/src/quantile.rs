//! JKO-Flow in 1D quantile (Lagrangian) coordinates, where the Wasserstein geometry is flat.
//!
//! A density on ℝ is described by its quantile function X(u); W₂² = ∫₀¹ |X − Y|² du (docs/mathematics.md §3).
//! Discretisation: quantile levels u_i = Φ(z_i) with z_i evenly spaced on [−Z, Z] (second order
//! for densities with tails, docs/mathematics.md §2.4), particles X_0 < … < X_{n−1}, cell masses
//! μ_j = u_{j+1} − u_j, particle weights w_i = (μ_{i−1} + μ_i)/2 (the tail masses Φ(−Z) go to
//! the end particles). With d_j = X_{j+1} − X_j and ρ_j = μ_j/d_j:
//!
//!   J(X) = Σ_i w_i V(X_i) + β Σ_j μ_j log(μ_j / d_j),   ‖Ẋ‖² = Σ_i w_i Ẋ_i²  (flat metric W).
//!
//! ∂J/∂X_i = w_i V'(X_i) + β(ρ_{i−1} − ρ_i) and the Hessian ∇²J is tridiagonal:
//! w_i V''(X_i) + β(μ_{i−1}/d_{i−1}² + μ_i/d_i²) on the diagonal, −β μ_i/d_i² off it.
//! In these coordinates the JKO step is implicit Euler for Ẋ = −W⁻¹∂J, and:
//!
//! - plain flow:     Ẋ = −W⁻¹ ∂J;
//! - modified flow:  Ẋ = −W⁻¹ (∂J − (η/2) ∇²J W⁻¹ ∂J)  (gradient of J − (η/4) ∂Jᵀ W⁻¹ ∂J);
//!   unstable once η λ_max(W⁻¹∇²J) ≥ 2, and in the tails where V'' > 2/η (docs/mathematics.md §2.4);
//! - resummed flow:  (W + (η/2) ∇²J) Ẋ = −∂J, one tridiagonal SPD solve per stage (convex V):
//!   "Hess" is the plain Hessian here because the metric is flat.
//!
//! [`jko_step`] is the proximal step on the same discrete problem (Newton with a backtracking
//! line search keeping the particles ordered), so flow and JKO iterates are compared without
//! spatial error.

use crate::ode::{OdeOptions, OdeStats, integrate};
use crate::{FlowError, Variant};
use jko_core::{EnergyTerm, InputError, Potential};

/// Quantile levels, cell masses and particle weights (total mass 1).
///
/// ```rust
/// use jko_flow::quantile::QuantileGrid;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let grid = QuantileGrid::gaussian_levels(201, 7.0)?;
/// let total: f64 = grid.weights.iter().sum();
/// assert!((total - 1.0).abs() < 1e-14);
/// // Trapezoidal weights: the variance of N(1, 0.5²) to second order in the z spacing.
/// let (mean, var) = grid.moments(&grid.gaussian(1.0, 0.5));
/// assert!((mean - 1.0).abs() < 1e-14 && (var - 0.25).abs() < 1e-3);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct QuantileGrid {
    /// z_i with u_i = Φ(z_i).
    pub z: Vec<f64>,
    /// μ_j = u_{j+1} − u_j, j = 0..n−2.
    pub cell_mass: Vec<f64>,
    /// w_i, summing to 1.
    pub weights: Vec<f64>,
}

impl QuantileGrid {
    /// n particles at u_i = Φ(z_i), z_i evenly spaced on [−z_max, z_max].
    ///
    /// # Errors
    /// [`InputError::InvalidParameter`] for n < 3 or z_max outside (0, 30].
    ///
    /// ```rust
    /// use jko_flow::quantile::QuantileGrid;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let grid = QuantileGrid::gaussian_levels(5, 2.0)?;
    /// assert_eq!(grid.z, vec![-2.0, -1.0, 0.0, 1.0, 2.0]);
    /// assert!(QuantileGrid::gaussian_levels(2, 2.0).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn gaussian_levels(n: usize, z_max: f64) -> Result<Self, InputError> {
        if n < 3 {
            return Err(InputError::parameter("n", n, "need at least 3 particles"));
        }
        if !(z_max.is_finite() && z_max > 0.0 && z_max <= 30.0) {
            return Err(InputError::parameter("z_max", z_max, "must be in (0, 30]"));
        }
        let dz = 2.0 * z_max / (n - 1) as f64;
        let z: Vec<f64> = (0..n).map(|i| -z_max + i as f64 * dz).collect();
        let cell_mass: Vec<f64> = z.windows(2).map(|w| normal_mass(w[0], w[1])).collect();
        let tail = normal_tail(z_max);
        let mut weights = vec![0.0; n];
        for (j, m) in cell_mass.iter().enumerate() {
            weights[j] += 0.5 * m;
            weights[j + 1] += 0.5 * m;
        }
        weights[0] += tail;
        weights[n - 1] += tail;
        Ok(QuantileGrid {
            z,
            cell_mass,
            weights,
        })
    }

    /// Number of particles.
    ///
    /// ```rust
    /// use jko_flow::quantile::QuantileGrid;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// assert_eq!(QuantileGrid::gaussian_levels(11, 5.0)?.len(), 11);
    /// # Ok(())
    /// # }
    /// ```
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// Always false: a grid has at least 3 particles.
    ///
    /// ```rust
    /// use jko_flow::quantile::QuantileGrid;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// assert!(!QuantileGrid::gaussian_levels(3, 1.0)?.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// Particles of N(mean, std²): X_i = mean + std z_i (its exact quantiles at the levels).
    ///
    /// ```rust
    /// use jko_flow::quantile::QuantileGrid;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let grid = QuantileGrid::gaussian_levels(3, 1.0)?;
    /// assert_eq!(grid.gaussian(2.0, 0.5), vec![1.5, 2.0, 2.5]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn gaussian(&self, mean: f64, std: f64) -> Vec<f64> {
        self.z.iter().map(|z| mean + std * z).collect()
    }

    /// W₂ between two states on this grid: (Σ_i w_i |X_i − Y_i|²)^{½}.
    ///
    /// ```rust
    /// use jko_flow::quantile::QuantileGrid;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // A translation by d is at distance |d| (the weights sum to 1).
    /// let grid = QuantileGrid::gaussian_levels(41, 6.0)?;
    /// let w = grid.w2(&grid.gaussian(0.0, 1.0), &grid.gaussian(0.3, 1.0));
    /// assert!((w - 0.3).abs() < 1e-14);
    /// # Ok(())
    /// # }
    /// ```
    pub fn w2(&self, x: &[f64], y: &[f64]) -> f64 {
        self.weights
            .iter()
            .zip(x.iter().zip(y))
            .map(|(w, (a, b))| w * (a - b) * (a - b))
            .sum::<f64>()
            .sqrt()
    }

    /// (mean, variance) by the particle quadrature.
    ///
    /// ```rust
    /// use jko_flow::quantile::QuantileGrid;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let grid = QuantileGrid::gaussian_levels(101, 7.0)?;
    /// let (mean, _) = grid.moments(&grid.gaussian(-2.0, 1.0));
    /// assert!((mean + 2.0).abs() < 1e-14);
    /// # Ok(())
    /// # }
    /// ```
    pub fn moments(&self, x: &[f64]) -> (f64, f64) {
        let m: f64 = self.weights.iter().zip(x).map(|(w, a)| w * a).sum();
        let v: f64 = self
            .weights
            .iter()
            .zip(x)
            .map(|(w, a)| w * (a - m) * (a - m))
            .sum();
        (m, v)
    }
}

/// ∫_a^b φ(z) dz by 5-point Gauss–Legendre on [a, b] (|b − a| ≲ 0.5 gives ~1e-16).
fn normal_mass(a: f64, b: f64) -> f64 {
    const X: [f64; 5] = [
        0.0,
        -0.538_469_310_105_683_1,
        0.538_469_310_105_683_1,
        -0.906_179_845_938_664,
        0.906_179_845_938_664,
    ];
    const W: [f64; 5] = [
        0.568_888_888_888_888_9,
        0.478_628_670_499_366_5,
        0.478_628_670_499_366_5,
        0.236_926_885_056_189_1,
        0.236_926_885_056_189_1,
    ];
    // Split long intervals so the rule stays accurate.
    let pieces = ((b - a) / 0.25).ceil().max(1.0) as usize;
    let h = (b - a) / pieces as f64;
    let phi = |z: f64| (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
    (0..pieces)
        .map(|p| {
            let (lo, hi) = (a + p as f64 * h, a + (p + 1) as f64 * h);
            let (c, r) = (0.5 * (lo + hi), 0.5 * (hi - lo));
            r * X
                .iter()
                .zip(&W)
                .map(|(x, w)| w * phi(c + r * x))
                .sum::<f64>()
        })
        .sum()
}

/// 1 − Φ(z) = ∫_z^∞ φ, by quadrature up to z + 40.
fn normal_tail(z: f64) -> f64 {
    normal_mass(z, z + 40.0)
}

/// The energy β ∫ ρ log ρ + ∫ V ρ in quantile coordinates.
///
/// ```rust
/// use jko_core::Potential;
/// use jko_flow::quantile::QuantileEnergy;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ou = QuantileEnergy::new(1.0, Some(Potential::Quadratic { center: vec![0.0], stiffness: 1.0 }))?;
/// assert_eq!(ou.beta, 1.0);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct QuantileEnergy {
    /// Temperature β ≥ 0 (0: potential energy only).
    pub beta: f64,
    /// A closed-form potential (quadratic, linear, quartic, double well); `Cells` is refused.
    pub potential: Option<Potential>,
}

impl QuantileEnergy {
    /// Check β ≥ 0 and a one-dimensional closed-form potential.
    ///
    /// # Errors
    /// [`FlowError::Input`] for β or a potential of the wrong dimension;
    /// [`FlowError::Unsupported`] for `Cells` potentials.
    ///
    /// ```rust
    /// use jko_core::Potential;
    /// use jko_flow::FlowError;
    /// use jko_flow::quantile::QuantileEnergy;
    ///
    /// let cells = Potential::Cells { values: vec![0.0; 4] };
    /// assert!(matches!(QuantileEnergy::new(1.0, Some(cells)), Err(FlowError::Unsupported { .. })));
    /// assert!(QuantileEnergy::new(-1.0, None).is_err());
    /// ```
    pub fn new(beta: f64, potential: Option<Potential>) -> Result<Self, FlowError> {
        if !(beta.is_finite() && beta >= 0.0) {
            return Err(InputError::parameter("beta", beta, "must be finite and >= 0").into());
        }
        match &potential {
            Some(Potential::Cells { .. }) => {
                return Err(FlowError::Unsupported {
                    term: EnergyTerm::Potential,
                    reason: "given by cell values (quantile coordinates need V, V', V'' in closed form)",
                });
            }
            Some(Potential::Quadratic { center, .. }) if center.len() != 1 => {
                return Err(InputError::parameter(
                    "potential.center",
                    format!("{center:?}"),
                    "1D: one entry",
                )
                .into());
            }
            Some(Potential::Linear { slope }) if slope.len() != 1 => {
                return Err(InputError::parameter(
                    "potential.slope",
                    format!("{slope:?}"),
                    "1D: one entry",
                )
                .into());
            }
            _ => {}
        }
        Ok(QuantileEnergy { beta, potential })
    }

    /// (V, V', V'') at x.
    fn v(&self, x: f64) -> (f64, f64, f64) {
        match &self.potential {
            None | Some(Potential::Cells { .. }) => (0.0, 0.0, 0.0),
            Some(Potential::Quadratic { center, stiffness }) => {
                let y = x - center[0];
                (0.5 * stiffness * y * y, stiffness * y, *stiffness)
            }
            Some(Potential::Linear { slope }) => (slope[0] * x, slope[0], 0.0),
            Some(Potential::Quartic) => (0.25 * x.powi(4), x.powi(3), 3.0 * x * x),
            Some(Potential::DoubleWell) => (
                0.25 * (x * x - 1.0).powi(2),
                x * (x * x - 1.0),
                3.0 * x * x - 1.0,
            ),
        }
    }

    /// J(X); +∞ unless the particles are strictly increasing.
    pub(crate) fn value(&self, grid: &QuantileGrid, x: &[f64]) -> f64 {
        let mut e: f64 = grid
            .weights
            .iter()
            .zip(x)
            .map(|(w, a)| w * self.v(*a).0)
            .sum();
        for (j, m) in grid.cell_mass.iter().enumerate() {
            let d = x[j + 1] - x[j];
            if d.is_nan() || d <= 0.0 {
                return f64::INFINITY;
            }
            e += self.beta * m * (m / d).ln();
        }
        e
    }

    /// ∂J/∂X.
    pub(crate) fn gradient(&self, grid: &QuantileGrid, x: &[f64]) -> Vec<f64> {
        let n = x.len();
        let mut g: Vec<f64> = (0..n).map(|i| grid.weights[i] * self.v(x[i]).1).collect();
        for (j, m) in grid.cell_mass.iter().enumerate() {
            let r = self.beta * m / (x[j + 1] - x[j]);
            g[j] += r;
            g[j + 1] -= r;
        }
        g
    }

    /// ∇²J as (diagonal, off-diagonal (i, i+1)).
    pub(crate) fn hessian(&self, grid: &QuantileGrid, x: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let n = x.len();
        let mut diag: Vec<f64> = (0..n).map(|i| grid.weights[i] * self.v(x[i]).2).collect();
        let mut off = vec![0.0; n - 1];
        for (j, m) in grid.cell_mass.iter().enumerate() {
            let d = x[j + 1] - x[j];
            let c = self.beta * m / (d * d);
            diag[j] += c;
            diag[j + 1] += c;
            off[j] = -c;
        }
        (diag, off)
    }
}

/// Symmetric tridiagonal solve without pivoting; `None` unless every pivot is > 0.
fn tridiagonal_spd(diag: &[f64], off: &[f64], b: &[f64]) -> Option<Vec<f64>> {
    let n = diag.len();
    let mut c = vec![0.0; n];
    let mut d = vec![0.0; n];
    let mut denom = diag[0];
    if denom.is_nan() || denom <= 0.0 {
        return None;
    }
    c[0] = if n > 1 { off[0] / denom } else { 0.0 };
    d[0] = b[0] / denom;
    for i in 1..n {
        denom = diag[i] - off[i - 1] * c[i - 1];
        if denom.is_nan() || denom <= 1e-14 * diag[i].abs() {
            return None;
        }
        c[i] = if i + 1 < n { off[i] / denom } else { 0.0 };
        d[i] = (b[i] - off[i - 1] * d[i - 1]) / denom;
    }
    let mut y = d;
    for i in (0..n - 1).rev() {
        y[i] -= c[i] * y[i + 1];
    }
    Some(y)
}

fn increasing(x: &[f64]) -> bool {
    x.iter().all(|v| v.is_finite()) && x.windows(2).all(|w| w[1] > w[0])
}

/// JKO-Flow (or the plain flow, η = 0) on a quantile grid. The public fields may be changed
/// after [`QuantileFlow::new`] (defaults of `ode`: `rtol = 1e-10`, `atol = 1e-12`, 10⁶ steps).
///
/// ```rust
/// use jko_core::Potential;
/// use jko_flow::Variant;
/// use jko_flow::quantile::{QuantileEnergy, QuantileFlow, QuantileGrid};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // V = x²/2 without entropy: ∂J = W k X and ∇²J = W k, so the resummed flow is
/// // Ẋ = −k X/(1 + ηk/2): X(t) = X(0) e^{−t/(1 + η/2)} exactly.
/// let grid = QuantileGrid::gaussian_levels(21, 5.0)?;
/// let energy = QuantileEnergy::new(0.0, Some(Potential::Quadratic { center: vec![0.0], stiffness: 1.0 }))?;
/// let flow = QuantileFlow::new(&grid, &energy, 0.1, Variant::Resummed)?;
/// let x0 = grid.gaussian(1.0, 0.5);
/// let (x1, _) = flow.integrate(&x0, 1.0)?;
/// let decay = (-1.0f64 / 1.05).exp();
/// assert!(x0.iter().zip(&x1).all(|(a, b)| (a * decay - b).abs() < 1e-8));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct QuantileFlow<'a> {
    /// The particle grid.
    pub grid: &'a QuantileGrid,
    /// The energy J.
    pub energy: &'a QuantileEnergy,
    /// Step η of the modified energy (0: the plain gradient flow).
    pub eta: f64,
    /// Modified or resummed velocity.
    pub variant: Variant,
    /// Runge–Kutta tolerances and the substep cap.
    pub ode: OdeOptions,
}

impl<'a> QuantileFlow<'a> {
    /// The flow of `energy` on `grid` with step η ≥ 0.
    ///
    /// # Errors
    /// [`FlowError::Input`] for η negative or not finite.
    ///
    /// ```rust
    /// use jko_core::Potential;
    /// use jko_flow::Variant;
    /// use jko_flow::quantile::{QuantileEnergy, QuantileFlow, QuantileGrid};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let grid = QuantileGrid::gaussian_levels(5, 2.0)?;
    /// let energy = QuantileEnergy::new(1.0, None)?;
    /// assert!(QuantileFlow::new(&grid, &energy, 0.0, Variant::Modified).is_ok());
    /// assert!(QuantileFlow::new(&grid, &energy, -0.1, Variant::Modified).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(
        grid: &'a QuantileGrid,
        energy: &'a QuantileEnergy,
        eta: f64,
        variant: Variant,
    ) -> Result<Self, FlowError> {
        if !(eta.is_finite() && eta >= 0.0) {
            return Err(InputError::parameter("eta", eta, "must be finite and >= 0").into());
        }
        Ok(QuantileFlow {
            grid,
            energy,
            eta,
            variant,
            ode: OdeOptions {
                rtol: 1e-10,
                atol: 1e-12,
                max_steps: 1_000_000,
                ..OdeOptions::default()
            },
        })
    }

    /// Ẋ at X; `None` when X is not strictly increasing (or the resummed matrix is not SPD).
    pub(crate) fn velocity(&self, x: &[f64]) -> Option<Vec<f64>> {
        if !increasing(x) {
            return None;
        }
        let w = &self.grid.weights;
        let g = self.energy.gradient(self.grid, x);
        if self.eta == 0.0 || self.variant == Variant::Plain {
            return Some(g.iter().zip(w).map(|(a, b)| -a / b).collect());
        }
        let (diag, off) = self.energy.hessian(self.grid, x);
        match self.variant {
            Variant::Modified | Variant::Plain => {
                let wg: Vec<f64> = g.iter().zip(w).map(|(a, b)| a / b).collect();
                let n = x.len();
                Some(
                    (0..n)
                        .map(|i| {
                            let mut hv = diag[i] * wg[i];
                            if i > 0 {
                                hv += off[i - 1] * wg[i - 1];
                            }
                            if i + 1 < n {
                                hv += off[i] * wg[i + 1];
                            }
                            -(g[i] - 0.5 * self.eta * hv) / w[i]
                        })
                        .collect(),
                )
            }
            Variant::Resummed => {
                let a: Vec<f64> = diag
                    .iter()
                    .zip(w)
                    .map(|(d, wi)| wi + 0.5 * self.eta * d)
                    .collect();
                let o: Vec<f64> = off.iter().map(|v| 0.5 * self.eta * v).collect();
                let rhs: Vec<f64> = g.iter().map(|v| -v).collect();
                tridiagonal_spd(&a, &o, &rhs)
            }
        }
    }

    /// Integrate from X over a time t.
    ///
    /// # Errors
    /// [`FlowError::Input`] for X of the wrong length; [`FlowError::Inadmissible`] when X is
    /// not strictly increasing; the integrator's errors ([`crate::ode::integrate`]).
    ///
    /// ```rust
    /// use jko_core::Potential;
    /// use jko_flow::Variant;
    /// use jko_flow::quantile::{QuantileEnergy, QuantileFlow, QuantileGrid};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Plain flow (η = 0) of V = x²/2: X(t) = X(0) e^{−t}.
    /// let grid = QuantileGrid::gaussian_levels(11, 4.0)?;
    /// let energy = QuantileEnergy::new(0.0, Some(Potential::Quadratic { center: vec![0.0], stiffness: 1.0 }))?;
    /// let flow = QuantileFlow::new(&grid, &energy, 0.0, Variant::Modified)?;
    /// let (x, stats) = flow.integrate(&grid.gaussian(0.0, 1.0), 0.5)?;
    /// assert!((x[10] - 4.0 * (-0.5f64).exp()).abs() < 1e-8 && stats.accepted > 0);
    /// assert!(flow.integrate(&[0.0, 1.0], 0.5).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn integrate(&self, x: &[f64], t: f64) -> Result<(Vec<f64>, OdeStats), FlowError> {
        if x.len() != self.grid.len() {
            return Err(InputError::ShapeMismatch {
                what: "quantile particles".into(),
                expected: self.grid.len().to_string(),
                found: x.len().to_string(),
            }
            .into());
        }
        let mut y = x.to_vec();
        let stats = integrate(
            &mut y,
            t,
            &self.ode,
            |y, dy| match self.velocity(y) {
                Some(v) => {
                    dy.copy_from_slice(&v);
                    Ok(true)
                }
                None => Ok(false),
            },
            |_, _, _| {},
        )?;
        Ok((y, stats))
    }
}

/// One proximal (JKO) step on the grid: argmin_X Σ w_i |X_i − Xⁿ_i|²/(2τ) + J(X), by Newton with
/// backtracking until the Newton step is below `tol` in the W-norm (the W₂ distance to the
/// minimiser, to second order). Returns (X, Newton iterations).
///
/// # Errors
/// [`FlowError::Input`] for τ ≤ 0; [`FlowError::Inadmissible`] for particles that are not
/// strictly increasing or of the wrong number; [`FlowError::StepSizeUnderflow`] when the line
/// search fails, [`FlowError::TooManySubsteps`] (`max` = 200) when Newton does not converge.
///
/// ```rust
/// use jko_core::Potential;
/// use jko_flow::quantile::{QuantileEnergy, QuantileGrid, jko_step};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // V = x²/2 without entropy: the step is X = Xⁿ/(1 + τ) exactly.
/// let grid = QuantileGrid::gaussian_levels(11, 4.0)?;
/// let energy = QuantileEnergy::new(0.0, Some(Potential::Quadratic { center: vec![0.0], stiffness: 1.0 }))?;
/// let x0 = grid.gaussian(1.0, 0.5);
/// let (x1, _) = jko_step(&grid, &energy, &x0, 0.1, 1e-12)?;
/// assert!(x0.iter().zip(&x1).all(|(a, b)| (a / 1.1 - b).abs() < 1e-12));
/// assert!(jko_step(&grid, &energy, &x0, 0.0, 1e-12).is_err());
/// # Ok(())
/// # }
/// ```
pub fn jko_step(
    grid: &QuantileGrid,
    energy: &QuantileEnergy,
    x_prev: &[f64],
    tau: f64,
    tol: f64,
) -> Result<(Vec<f64>, usize), FlowError> {
    if !(tau.is_finite() && tau > 0.0) {
        return Err(InputError::InvalidTau(tau).into());
    }
    if !increasing(x_prev) || x_prev.len() != grid.len() {
        return Err(FlowError::Inadmissible {
            reason: "quantile particles must be finite and strictly increasing, one per level"
                .into(),
        });
    }
    let w = &grid.weights;
    let objective = |x: &[f64]| -> f64 {
        let kin: f64 = (0..x.len())
            .map(|i| w[i] * (x[i] - x_prev[i]).powi(2))
            .sum::<f64>()
            / (2.0 * tau);
        kin + energy.value(grid, x)
    };
    let mut x = x_prev.to_vec();
    let mut f = objective(&x);
    for it in 0..200 {
        let g: Vec<f64> = energy
            .gradient(grid, &x)
            .iter()
            .enumerate()
            .map(|(i, gi)| gi + w[i] * (x[i] - x_prev[i]) / tau)
            .collect();
        let (mut diag, off) = energy.hessian(grid, &x);
        for (d, wi) in diag.iter_mut().zip(w) {
            *d += wi / tau;
        }
        let rhs: Vec<f64> = g.iter().map(|v| -v).collect();
        let dx = tridiagonal_spd(&diag, &off, &rhs).ok_or_else(|| FlowError::Inadmissible {
            reason: "the JKO objective's Hessian is not positive definite (non-convex potential with a large tau)".into(),
        })?;
        // The W-norm of the Newton step is the W₂ distance to the minimiser (to second order).
        let step_norm = dx
            .iter()
            .zip(w)
            .map(|(d, wi)| wi * d * d)
            .sum::<f64>()
            .sqrt();
        if step_norm <= tol {
            let done: Vec<f64> = x.iter().zip(&dx).map(|(a, b)| a + b).collect();
            if increasing(&done) {
                return Ok((done, it + 1));
            }
        }
        let slope: f64 = g.iter().zip(&dx).map(|(a, b)| a * b).sum();
        let mut step = 1.0;
        loop {
            let trial: Vec<f64> = x.iter().zip(&dx).map(|(a, b)| a + step * b).collect();
            let ft = objective(&trial);
            if ft.is_finite() && ft <= f + 1e-4 * step * slope {
                x = trial;
                f = ft;
                break;
            }
            // Near the minimum the decrease is below round-off: accept a full Newton step that
            // keeps the particles ordered.
            if step == 1.0 && ft.is_finite() && (ft - f).abs() <= 1e-14 * f.abs().max(1.0) {
                x = trial;
                f = ft;
                break;
            }
            step *= 0.5;
            if step < 1e-12 {
                return Err(FlowError::StepSizeUnderflow {
                    t: 0.0,
                    dt: step,
                    reason: "the line search found no descent".into(),
                });
            }
        }
    }
    Err(FlowError::TooManySubsteps {
        max: 200,
        t_reached: 0.0,
        t_end: tau,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};

    fn ou() -> QuantileEnergy {
        QuantileEnergy::new(1.0, Some(Potential::quadratic(vec![0.0], 1.0))).unwrap()
    }

    #[test]
    fn grid_has_unit_mass_and_gaussian_moments() {
        let g = QuantileGrid::gaussian_levels(801, 7.0).unwrap();
        assert!((g.weights.iter().sum::<f64>() - 1.0).abs() < 1e-13);
        let (m, v) = g.moments(&g.gaussian(1.0, 0.5));
        assert!((m - 1.0).abs() < 1e-12);
        // Trapezoid quadrature of z² against the levels: O(dz²).
        assert!((v - 0.25).abs() < 1e-4, "{v}");
    }

    #[test]
    fn gradient_and_hessian_match_finite_differences() {
        let g = QuantileGrid::gaussian_levels(15, 4.0).unwrap();
        let e = QuantileEnergy::new(0.7, Some(Potential::Quartic)).unwrap();
        let x: Vec<f64> =
            g.z.iter()
                .map(|z| 0.3 + 0.6 * z + 0.05 * z * z * z)
                .collect();
        let gr = e.gradient(&g, &x);
        let (diag, off) = e.hessian(&g, &x);
        for i in 0..x.len() {
            let h = 1e-6;
            let mut p = x.clone();
            p[i] += h;
            let mut m = x.clone();
            m[i] -= h;
            let fd = (e.value(&g, &p) - e.value(&g, &m)) / (2.0 * h);
            assert!((fd - gr[i]).abs() < 1e-7, "{i}");
            let gp = e.gradient(&g, &p);
            let gm = e.gradient(&g, &m);
            assert!(((gp[i] - gm[i]) / (2.0 * h) - diag[i]).abs() < 1e-5 * diag[i].abs().max(1.0));
            if i + 1 < x.len() {
                assert!(
                    ((gp[i + 1] - gm[i + 1]) / (2.0 * h) - off[i]).abs()
                        < 1e-5 * off[i].abs().max(1.0)
                );
            }
        }
    }

    #[test]
    fn jko_step_approaches_the_exact_gaussian_iterate() {
        // Exact W₂ JKO iterate of OU from N(1, 0.5²), τ = 0.1, against the quantile step:
        // agreement to the grid's O(dz²).
        let ou_exact = OrnsteinUhlenbeck::standard(1);
        let exact = ou_exact.jko_step(&Gaussian::diagonal(&[1.0], &[0.5]), 0.1);
        let errs: Vec<f64> = [201usize, 401]
            .iter()
            .map(|&n| {
                let g = QuantileGrid::gaussian_levels(n, 7.0).unwrap();
                let (x, it) = jko_step(&g, &ou(), &g.gaussian(1.0, 0.5), 0.1, 1e-12).unwrap();
                assert!(it < 20);
                g.w2(&x, &g.gaussian(exact.mean[0], exact.cov[0].sqrt()))
            })
            .collect();
        assert!(errs[1] < 1e-3, "{errs:?}");
        let order = (errs[0] / errs[1]).log2();
        assert!(order > 1.7, "order {order}, {errs:?}");
    }

    #[test]
    fn resummed_flow_tracks_jko_iterates_at_second_order() {
        // Same discrete problem for flow and prox: no spatial error in the comparison.
        let g = QuantileGrid::gaussian_levels(201, 6.0).unwrap();
        let e = QuantileEnergy::new(1.0, Some(Potential::Quartic)).unwrap();
        let x0 = g.gaussian(1.0, 0.5);
        let err = |eta: f64, v: Variant, wgf: bool| {
            let steps = (0.5 / eta).round() as usize;
            let mut x = x0.clone();
            for _ in 0..steps {
                x = jko_step(&g, &e, &x, eta, 1e-12).unwrap().0;
            }
            let f = QuantileFlow::new(&g, &e, if wgf { 0.0 } else { eta }, v).unwrap();
            let (y, _) = f.integrate(&x0, 0.5).unwrap();
            g.w2(&x, &y)
        };
        let (a, b) = (
            err(0.05, Variant::Resummed, false),
            err(0.025, Variant::Resummed, false),
        );
        let o = (a / b).log2();
        assert!(
            (1.8..=2.2).contains(&o),
            "resummed order {o} ({a:e}, {b:e})"
        );
        let (a, b) = (
            err(0.05, Variant::Resummed, true),
            err(0.025, Variant::Resummed, true),
        );
        let o = (a / b).log2();
        assert!((0.9..=1.1).contains(&o), "plain order {o}");
    }
}

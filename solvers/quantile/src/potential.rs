//! Potentials V(x) evaluated at arbitrary positions with V′ and V″ (Newton needs both).
//!
//! Closed forms ([`Potential::Quadratic`], `Linear`, `Quartic`, `DoubleWell`) are evaluated
//! exactly. Cell values ([`Potential::Cells`], and every potential a mesh backend sees, since
//! the frozen interaction arrives as cell values) are interpolated by a clamped cubic spline
//! through the cell centres, with end slopes from three-point one-sided differences. The spline
//! is C², so Newton sees a continuous Hessian, and it reproduces quadratics exactly (the
//! quadratic itself satisfies every spline condition). Outside the outermost centres the end
//! cubic is continued (only the half cells at the walls are out there).

use jko_core::{InputError, Mesh, Potential};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

use crate::line::LineMesh;

/// V(x) → [V, V′, V″].
pub type PotentialFn = Arc<dyn Fn(f64) -> [f64; 3] + Send + Sync>;

/// A potential the quantile backend can evaluate at any x, with two derivatives.
///
/// ```rust
/// use jko_quantile::QuantilePotential;
/// use std::sync::Arc;
///
/// // V = cosh x, given with V′ and V″.
/// let v = QuantilePotential::Custom(Arc::new(|x: f64| [x.cosh(), x.sinh(), x.cosh()]));
/// assert_eq!(v.eval(0.0), [1.0, 0.0, 1.0]);
/// ```
#[derive(Clone)]
pub enum QuantilePotential {
    /// A 1D closed form (not `Cells`; convert those with [`QuantilePotential::from_potential`]).
    Closed(Potential),
    /// Cell values interpolated by a cubic spline.
    Spline(CubicSpline),
    /// Any smooth V given with its first two derivatives.
    Custom(PotentialFn),
}

impl fmt::Debug for QuantilePotential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuantilePotential::Closed(p) => f.debug_tuple("Closed").field(p).finish(),
            QuantilePotential::Spline(s) => f.debug_tuple("Spline").field(s).finish(),
            QuantilePotential::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

impl QuantilePotential {
    /// From a core potential; `Cells` needs the 1D mesh the values live on (they become a
    /// [`CubicSpline`] through the cell centres).
    ///
    /// # Errors
    /// [`InputError::ShapeMismatch`] for a centre or slope that is not one-dimensional or cell
    /// values of the wrong length; [`InputError::InvalidParameter`] for `Cells` without a mesh;
    /// [`InputError::InvalidMesh`] when the mesh is not one line of cells.
    ///
    /// ```rust
    /// use jko_core::{Mesh, Potential};
    /// use jko_quantile::QuantilePotential;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Cell values of x² are interpolated by a spline that reproduces quadratics exactly.
    /// let mesh = Mesh::grid(&[6], &[-1.5], &[1.5])?;
    /// let cells = Potential::Cells { values: mesh.sample(|x| x[0] * x[0]).to_vec() };
    /// let v = QuantilePotential::from_potential(&cells, Some(&mesh))?;
    /// let [v0, d1, d2] = v.eval(0.3);
    /// assert!((v0 - 0.09).abs() < 1e-12 && (d1 - 0.6).abs() < 1e-12 && (d2 - 2.0).abs() < 1e-10);
    /// assert!(QuantilePotential::from_potential(&cells, None).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_potential(p: &Potential, mesh: Option<&Mesh>) -> Result<Self, InputError> {
        let one = |what: &str, len: usize| {
            if len != 1 {
                return Err(InputError::ShapeMismatch {
                    what: format!("potential `{what}`"),
                    expected: "1 entry (the quantile backend is 1D)".into(),
                    found: len.to_string(),
                });
            }
            Ok(())
        };
        match p {
            Potential::Quadratic { center, stiffness } => {
                one("center", center.len())?;
                if !(stiffness.is_finite() && center[0].is_finite()) {
                    return Err(InputError::parameter(
                        "potential",
                        format!("{p:?}"),
                        "non-finite parameter",
                    ));
                }
            }
            Potential::Linear { slope } => {
                one("slope", slope.len())?;
                if !slope[0].is_finite() {
                    return Err(InputError::parameter(
                        "potential.slope",
                        slope[0],
                        "non-finite",
                    ));
                }
            }
            Potential::Quartic | Potential::DoubleWell => {}
            Potential::Cells { values } => {
                let mesh = mesh.ok_or_else(|| {
                    InputError::parameter(
                        "potential",
                        "cells",
                        "cell values need the 1D mesh they live on",
                    )
                })?;
                let line = LineMesh::new(mesh)?;
                if values.len() != mesh.n_cells() {
                    return Err(InputError::ShapeMismatch {
                        what: "potential cell values".into(),
                        expected: mesh.n_cells().to_string(),
                        found: values.len().to_string(),
                    });
                }
                let ordered: Vec<f64> = line.order().iter().map(|&k| values[k]).collect();
                return Ok(QuantilePotential::Spline(CubicSpline::new(
                    line.centres(mesh),
                    ordered,
                )?));
            }
        }
        Ok(QuantilePotential::Closed(p.clone()))
    }

    /// [V, V′, V″] at x.
    ///
    /// ```rust
    /// use jko_core::Potential;
    /// use jko_quantile::QuantilePotential;
    ///
    /// let double_well = QuantilePotential::Closed(Potential::DoubleWell); // (x² − 1)²/4
    /// assert_eq!(double_well.eval(1.0), [0.0, 0.0, 2.0]);
    /// ```
    pub fn eval(&self, x: f64) -> [f64; 3] {
        match self {
            QuantilePotential::Closed(p) => closed_form(p, x),
            QuantilePotential::Spline(s) => s.eval(x),
            QuantilePotential::Custom(f) => f(x),
        }
    }
}

fn closed_form(p: &Potential, x: f64) -> [f64; 3] {
    match p {
        Potential::Quadratic { center, stiffness } => {
            let d = x - center[0];
            [0.5 * stiffness * d * d, stiffness * d, *stiffness]
        }
        Potential::Linear { slope } => [slope[0] * x, slope[0], 0.0],
        Potential::Quartic => [0.25 * x.powi(4), x.powi(3), 3.0 * x * x],
        Potential::DoubleWell => {
            let q = x * x - 1.0;
            [0.25 * q * q, x * q, 3.0 * x * x - 1.0]
        }
        // Converted to a spline by `from_potential`; never stored as `Closed`.
        Potential::Cells { .. } => [f64::NAN; 3],
    }
}

/// A clamped cubic spline through (x_j, y_j), x increasing, with end slopes from three-point
/// one-sided differences (exact for quadratics).
///
/// ```rust
/// use jko_quantile::CubicSpline;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let s = CubicSpline::new(vec![0.0, 1.0, 2.0, 3.0], vec![1.0, 2.0, 5.0, 10.0])?; // 1 + x²
/// let [v, d1, d2] = s.eval(1.5);
/// assert!((v - 3.25).abs() < 1e-12 && (d1 - 3.0).abs() < 1e-12 && (d2 - 2.0).abs() < 1e-12);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CubicSpline {
    x: Vec<f64>,
    y: Vec<f64>,
    /// Second derivatives at the knots.
    m: Vec<f64>,
}

impl CubicSpline {
    /// Knots must be strictly increasing and values finite. One knot: constant; two: linear.
    ///
    /// # Errors
    /// [`InputError::ShapeMismatch`] for no knots or mismatched lengths,
    /// [`InputError::NonFinite`] for non-finite data, [`InputError::InvalidParameter`] for
    /// knots that do not increase.
    ///
    /// ```rust
    /// use jko_quantile::CubicSpline;
    ///
    /// assert!(CubicSpline::new(vec![0.0, 0.0], vec![1.0, 2.0]).is_err());
    /// assert!(CubicSpline::new(vec![0.0, 1.0], vec![1.0]).is_err());
    /// ```
    pub fn new(x: Vec<f64>, y: Vec<f64>) -> Result<Self, InputError> {
        let n = x.len();
        if n == 0 || y.len() != n {
            return Err(InputError::ShapeMismatch {
                what: "spline knots and values".into(),
                expected: format!("equal, non-zero lengths ({n} knots)"),
                found: y.len().to_string(),
            });
        }
        jko_core::energy::check_finite("spline values", &y)?;
        jko_core::energy::check_finite("spline knots", &x)?;
        if x.windows(2).any(|p| p[1] <= p[0]) {
            return Err(InputError::parameter(
                "spline knots",
                "not increasing",
                "knots must be strictly increasing",
            ));
        }
        if n < 3 {
            return Ok(CubicSpline {
                m: vec![0.0; n],
                x,
                y,
            });
        }
        let h: Vec<f64> = x.windows(2).map(|p| p[1] - p[0]).collect();
        let slope = |i: usize| (y[i + 1] - y[i]) / h[i];
        // Three-point one-sided derivatives (exact for quadratics).
        let d3 = |a: usize, b: usize, c: usize, at: usize| {
            let (xa, xb, xc) = (x[a], x[b], x[c]);
            let t = x[at];
            y[a] * ((t - xb) + (t - xc)) / ((xa - xb) * (xa - xc))
                + y[b] * ((t - xa) + (t - xc)) / ((xb - xa) * (xb - xc))
                + y[c] * ((t - xa) + (t - xb)) / ((xc - xa) * (xc - xb))
        };
        let d0 = d3(0, 1, 2, 0);
        let dn = d3(n - 3, n - 2, n - 1, n - 1);
        let mut diag = vec![0.0; n];
        let mut off = vec![0.0; n - 1];
        let mut rhs = vec![0.0; n];
        diag[0] = 2.0 * h[0];
        off[0] = h[0];
        rhs[0] = 6.0 * (slope(0) - d0);
        for i in 1..n - 1 {
            diag[i] = 2.0 * (h[i - 1] + h[i]);
            off[i] = h[i];
            rhs[i] = 6.0 * (slope(i) - slope(i - 1));
        }
        diag[n - 1] = 2.0 * h[n - 2];
        rhs[n - 1] = 6.0 * (dn - slope(n - 2));
        let m = crate::newton::solve_tridiagonal(&diag, &off, &rhs).ok_or_else(|| {
            InputError::parameter("spline", "singular system", "knots too close together")
        })?;
        Ok(CubicSpline { x, y, m })
    }

    /// [S, S′, S″] at t (the end cubics are continued outside the knots).
    ///
    /// ```rust
    /// use jko_quantile::CubicSpline;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Two knots: the straight line, continued outside.
    /// let s = CubicSpline::new(vec![0.0, 1.0], vec![0.0, 2.0])?;
    /// assert_eq!(s.eval(3.0), [6.0, 2.0, 0.0]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn eval(&self, t: f64) -> [f64; 3] {
        let n = self.x.len();
        if n == 1 {
            return [self.y[0], 0.0, 0.0];
        }
        let i = self.x[1..n - 1].partition_point(|&k| k <= t);
        let h = self.x[i + 1] - self.x[i];
        let a = (self.x[i + 1] - t) / h;
        let b = (t - self.x[i]) / h;
        let (mi, mj) = (self.m[i], self.m[i + 1]);
        let v = a * self.y[i]
            + b * self.y[i + 1]
            + ((a * a * a - a) * mi + (b * b * b - b) * mj) * h * h / 6.0;
        let d = (self.y[i + 1] - self.y[i]) / h - (3.0 * a * a - 1.0) / 6.0 * h * mi
            + (3.0 * b * b - 1.0) / 6.0 * h * mj;
        [v, d, a * mi + b * mj]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spline_reproduces_quadratics_on_uneven_knots() {
        let x = vec![-2.0, -1.3, -0.2, 0.1, 0.9, 2.5, 3.0];
        let q = |t: f64| 0.7 * (t - 0.4) * (t - 0.4) - 1.1 * t + 0.3;
        let s = CubicSpline::new(x.clone(), x.iter().map(|&t| q(t)).collect()).unwrap();
        for i in 0..=50 {
            let t = -2.2 + 5.4 * i as f64 / 50.0;
            let [v, d, dd] = s.eval(t);
            assert!((v - q(t)).abs() < 1e-12, "{t}: {v} vs {}", q(t));
            assert!((d - (1.4 * (t - 0.4) - 1.1)).abs() < 1e-11);
            assert!((dd - 1.4).abs() < 1e-10);
        }
    }

    #[test]
    fn spline_converges_at_fourth_order_on_a_smooth_function() {
        let err = |n: usize| {
            let x: Vec<f64> = (0..n)
                .map(|i| -2.0 + 4.0 * i as f64 / (n - 1) as f64)
                .collect();
            let s = CubicSpline::new(x.clone(), x.iter().map(|t| t.sin()).collect()).unwrap();
            (0..400)
                .map(|i| -2.0 + 4.0 * (i as f64 + 0.5) / 400.0)
                .map(|t| (s.eval(t)[0] - t.sin()).abs())
                .fold(0.0, f64::max)
        };
        let order = (err(20) / err(40)).log2();
        // Clamped with O(h²) end slopes: O(h³) near the ends (O(h⁴) inside).
        assert!(order > 2.5, "order {order}");
    }

    #[test]
    fn closed_forms_have_consistent_derivatives() {
        for p in [
            Potential::quadratic(vec![0.3], 2.0),
            Potential::Linear { slope: vec![-0.5] },
            Potential::Quartic,
            Potential::DoubleWell,
        ] {
            let v = QuantilePotential::from_potential(&p, None).unwrap();
            for &x in &[-1.7, -0.2, 0.0, 0.9, 2.3] {
                let e = 1e-5;
                let [_, d, dd] = v.eval(x);
                let fd = (v.eval(x + e)[0] - v.eval(x - e)[0]) / (2.0 * e);
                let fdd = (v.eval(x + e)[1] - v.eval(x - e)[1]) / (2.0 * e);
                assert!((fd - d).abs() < 1e-8 * (1.0 + d.abs()), "{p:?} at {x}");
                assert!((fdd - dd).abs() < 1e-7 * (1.0 + dd.abs()), "{p:?} at {x}");
            }
        }
        assert!(QuantilePotential::from_potential(&Potential::Quartic, None).is_ok());
        let two_d = Potential::quadratic(vec![0.0, 0.0], 1.0);
        assert!(QuantilePotential::from_potential(&two_d, None).is_err());
        assert!(
            QuantilePotential::from_potential(&Potential::Cells { values: vec![1.0] }, None)
                .is_err()
        );
    }
}

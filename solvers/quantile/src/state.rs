//! A measure in quantile coordinates, and the maps between it and cell densities.
//!
//! A [`QuantileState`] of mass M holds X_i = X(u_i), the quantile function of ρ/M at the
//! grid's levels. Between nodes the measure is reconstructed with a piecewise-linear CDF:
//! F(X_i) = M u_i, linear in x between nodes (density M (u_{i+1} − u_i)/(X_{i+1} − X_i)), and
//! extended past the end nodes with the slope of the end cell until it reaches 0 and M. This
//! reconstruction conserves mass exactly; [`from_density`] and [`QuantileState::to_density`]
//! are its two directions (cell CDFs are piecewise linear too, so a round trip only smooths
//! at the kinks that fall between nodes). Tail masses are always taken from the side they are
//! small on (u near 0 from u, u near 1 from 1 − u).

use crate::grid::{QuantileGrid, pairwise_sum};
use crate::line::LineMesh;
use crate::normal;
use jko_core::{InputError, Mesh, check_density};
use ndarray::Array1;
use serde::{Deserialize, Serialize};

/// The quantile function X at the grid's mass levels, and the total mass.
///
/// ```rust
/// use jko_quantile::{QuantileGrid, QuantileState};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Uniform measure on [0, 1] on equal-mass nodes: X(u) = u.
/// let grid = QuantileGrid::uniform(4)?;
/// let state = QuantileState::new(grid.clone(), grid.levels().to_vec(), 1.0)?;
/// let m = state.moments();
/// assert!((m.mean - 0.5).abs() < 1e-15);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantileState {
    /// The mass levels u_i at which X is known.
    pub grid: QuantileGrid,
    /// X_i, strictly increasing.
    pub x: Vec<f64>,
    /// Total mass M > 0.
    pub mass: f64,
}

/// Mass, mean and variance by the node quadrature (Σ w_i X_i, Σ w_i (X_i − mean)²), which is
/// spectrally accurate on Gaussian nodes for quantiles smooth in z. Mean and variance are
/// those of the probability ρ/M.
///
/// ```rust
/// use jko_quantile::{QuantileGrid, from_gaussian};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let m = from_gaussian(2.0, 0.5, &QuantileGrid::gaussian(41, 8.0)?, 3.0)?.moments();
/// assert_eq!(m.mass, 3.0);
/// assert!((m.mean - 2.0).abs() < 1e-14 && (m.variance - 0.25).abs() < 1e-14);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    /// Total mass M.
    pub mass: f64,
    /// Mean Σ w_i X_i.
    pub mean: f64,
    /// Variance Σ w_i (X_i − mean)².
    pub variance: f64,
}

impl QuantileState {
    /// Validate X (finite, strictly increasing, right length) and the mass.
    ///
    /// # Errors
    /// [`InputError::ShapeMismatch`], [`InputError::NonFinite`], or
    /// [`InputError::InvalidParameter`] for a non-positive mass or X not strictly increasing.
    ///
    /// ```rust
    /// use jko_quantile::{QuantileGrid, QuantileState};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let grid = QuantileGrid::uniform(3)?;
    /// assert!(QuantileState::new(grid.clone(), vec![0.0, 1.0, 2.0], 1.0).is_ok());
    /// assert!(QuantileState::new(grid.clone(), vec![0.0, 1.0, 1.0], 1.0).is_err()); // a tie
    /// assert!(QuantileState::new(grid, vec![0.0, 1.0, 2.0], 0.0).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(grid: QuantileGrid, x: Vec<f64>, mass: f64) -> Result<Self, InputError> {
        if x.len() != grid.len() {
            return Err(InputError::ShapeMismatch {
                what: "quantile nodes".into(),
                expected: grid.len().to_string(),
                found: x.len().to_string(),
            });
        }
        jko_core::energy::check_finite("quantile nodes", &x)?;
        if !(mass.is_finite() && mass > 0.0) {
            return Err(InputError::parameter(
                "mass",
                mass,
                "must be finite and > 0",
            ));
        }
        if let Some(i) = x.windows(2).position(|p| p[1] <= p[0]) {
            return Err(InputError::parameter(
                "quantile nodes",
                format!("X[{i}] = {:e}, X[{}] = {:e}", x[i], i + 1, x[i + 1]),
                "must be strictly increasing; levels finer than double precision near the edge of \
                 the support produce ties: lower z_max or the number of nodes",
            ));
        }
        Ok(QuantileState { grid, x, mass })
    }

    /// Mass levels u_i.
    ///
    /// ```rust
    /// use jko_quantile::{QuantileGrid, from_gaussian};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let state = from_gaussian(0.0, 1.0, &QuantileGrid::uniform(5)?, 1.0)?;
    /// assert_eq!(state.levels(), state.grid.levels());
    /// # Ok(())
    /// # }
    /// ```
    pub fn levels(&self) -> &[f64] {
        self.grid.levels()
    }

    /// Moments by the node quadrature.
    ///
    /// ```rust
    /// use jko_quantile::{QuantileGrid, from_gaussian};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Equal-mass nodes are only first order for a Gaussian's tails: the variance is low.
    /// let m = from_gaussian(0.0, 1.0, &QuantileGrid::uniform(1000)?, 1.0)?.moments();
    /// assert!(m.mean.abs() < 1e-12 && m.variance < 1.0 && m.variance > 0.99);
    /// # Ok(())
    /// # }
    /// ```
    pub fn moments(&self) -> Moments {
        let w = self.grid.weights();
        let wx: Vec<f64> = w.iter().zip(&self.x).map(|(w, x)| w * x).collect();
        let mean = pairwise_sum(&wx);
        let dev: Vec<f64> = w
            .iter()
            .zip(&self.x)
            .map(|(w, x)| w * (x - mean) * (x - mean))
            .collect();
        Moments {
            mass: self.mass,
            mean,
            variance: pairwise_sum(&dev),
        }
    }

    /// Extension lengths past the end nodes of the reconstructed CDF.
    fn tails(&self) -> (f64, f64) {
        let (u, uc, x) = (self.grid.levels(), self.grid.level_complements(), &self.x);
        let n = x.len();
        let left = u[0] * (x[1] - x[0]) / (u[1] - u[0]);
        let right = uc[n - 1] * (x[n - 1] - x[n - 2]) / (uc[n - 2] - uc[n - 1]);
        (left, right)
    }

    /// Knots (u, 1 − u, x) of the piecewise-linear quantile function of the reconstruction.
    fn knots(&self) -> Vec<(f64, f64, f64)> {
        let (l, r) = self.tails();
        let n = self.x.len();
        let mut k = Vec::with_capacity(n + 2);
        k.push((0.0, 1.0, self.x[0] - l));
        for i in 0..n {
            k.push((
                self.grid.levels()[i],
                self.grid.level_complements()[i],
                self.x[i],
            ));
        }
        k.push((1.0, 0.0, self.x[n - 1] + r));
        k
    }

    /// Reconstructed CDF at increasing points `xs`, as pairs (F, M − F), each accurate on
    /// its small side.
    fn cdf_at(&self, xs: &[f64]) -> Vec<(f64, f64)> {
        let knots = self.knots();
        let m = self.mass;
        let mut j = 0; // knots[j].2 <= x < knots[j+1].2
        xs.iter()
            .map(|&x| {
                if x <= knots[0].2 {
                    return (0.0, m);
                }
                if x >= knots[knots.len() - 1].2 {
                    return (m, 0.0);
                }
                while j + 2 < knots.len() && knots[j + 1].2 <= x {
                    j += 1;
                }
                let (a, b) = (knots[j], knots[j + 1]);
                let theta = (x - a.2) / (b.2 - a.2);
                (
                    m * (a.0 + theta * (b.0 - a.0)),
                    m * (a.1 - theta * (a.1 - b.1)),
                )
            })
            .collect()
    }

    /// Cell densities on a line of cells: cell mass = CDF difference at the cell edges, / |K|.
    /// Mass that the reconstruction puts outside the mesh goes to the end cells, so the mass is
    /// conserved exactly.
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use jko_quantile::{LineMesh, QuantileGrid, from_density};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // A round trip through quantile coordinates returns a cellwise-constant density exactly
    /// // when the grid resolves every cell.
    /// let mesh = Mesh::grid(&[4], &[0.0], &[1.0])?;
    /// let line = LineMesh::new(&mesh)?;
    /// let rho = ndarray::array![0.5, 1.5, 1.0, 1.0];
    /// let state = from_density(&mesh, &line, &rho, &QuantileGrid::uniform(40)?)?;
    /// let back = state.to_density(&line, &mesh);
    /// assert!((mesh.mass(&back) - mesh.mass(&rho)).abs() < 1e-14);
    /// # Ok(())
    /// # }
    /// ```
    pub fn to_density(&self, line: &LineMesh, mesh: &Mesh) -> Array1<f64> {
        let masses = self.cell_masses_on(line);
        let mut rho = Array1::zeros(line.len());
        for (j, &k) in line.order().iter().enumerate() {
            rho[k] = masses[j] / mesh.volumes()[k];
        }
        rho
    }

    /// Cell masses in line order.
    pub(crate) fn cell_masses_on(&self, line: &LineMesh) -> Vec<f64> {
        let e = line.edges();
        let n = line.len();
        let mut f = self.cdf_at(e);
        f[0] = (0.0, self.mass);
        f[n] = (self.mass, 0.0);
        (0..n)
            .map(|j| {
                let d = if f[j + 1].0 <= 0.5 * self.mass {
                    f[j + 1].0 - f[j].0
                } else {
                    f[j].1 - f[j + 1].1
                };
                d.max(0.0)
            })
            .collect()
    }
}

/// (below, above): below[j] = mass left of edge e_j, above[j] = mass right of it, each summed
/// from its own end so that both are accurate on their small side.
fn cumulative_masses(cell: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let n = cell.len();
    let mut below = vec![0.0; n + 1];
    for j in 0..n {
        below[j + 1] = below[j] + cell[j];
    }
    let mut above = vec![0.0; n + 1];
    for j in (0..n).rev() {
        above[j] = above[j + 1] + cell[j];
    }
    (below, above)
}

/// Cell masses (in line order) of T_#ρⁿ, the push-forward of the cell density ρⁿ (cell masses
/// `old`, in line order) by the monotone map T that moves each node of `prev` to the same node
/// of `next`: T(x) = x + d(x) with the displacement d piecewise linear between the nodes and
/// constant beyond the end nodes. The CDF of T_#ρⁿ at a cell edge y is Fⁿ(T⁻¹(y)), with Fⁿ the
/// exact piecewise-linear CDF of the cell density; mass pushed past the domain's ends goes to the
/// end cells. T is the identity when `next` equals `prev`, so a step that does not move the
/// nodes returns ρⁿ exactly (the fixed point of a JKO step with no energy). Reconstructing the
/// cell masses from `next`'s quantiles alone would not: the piecewise-linear quantile function
/// at fixed levels does not reproduce the kinks of Fⁿ at the cell edges, an error of order h²
/// made at every step that drifted ρ by 1.3 % over 20 steps with no energy (issue 21).
///
/// # Errors
/// [`InputError::InvalidParameter`] when the two states do not have the same number of nodes,
/// `old` is not one mass per cell, or the masses differ (relative 1e-12).
///
/// ```rust
/// use jko_core::Mesh;
/// use jko_quantile::{LineMesh, QuantileGrid, QuantileState, from_density, pushforward_masses};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::grid(&[8], &[0.0], &[1.0])?;
/// let line = LineMesh::new(&mesh)?;
/// let rho = mesh.sample(|x| 1.0 + 0.5 * x[0] * x[0]);
/// let old: Vec<f64> = rho.iter().map(|r| r / 8.0).collect();
/// let prev = from_density(&mesh, &line, &rho, &QuantileGrid::uniform(30)?)?;
/// // The identity map returns ρⁿ exactly.
/// let same = pushforward_masses(&line, &old, &prev, &prev)?;
/// assert!(same.iter().zip(&old).all(|(a, b)| (a - b).abs() < 1e-15));
/// // A translation by a quarter cell moves a quarter of each cell's mass to its right neighbour.
/// let moved = QuantileState::new(prev.grid.clone(), prev.x.iter().map(|x| x + 1.0 / 32.0).collect(), prev.mass)?;
/// let shifted = pushforward_masses(&line, &old, &prev, &moved)?;
/// assert!((shifted[3] - (0.75 * old[3] + 0.25 * old[2])).abs() < 1e-15);
/// assert!((shifted.iter().sum::<f64>() - old.iter().sum::<f64>()).abs() < 1e-14);
/// # Ok(())
/// # }
/// ```
pub fn pushforward_masses(
    line: &LineMesh,
    old: &[f64],
    prev: &QuantileState,
    next: &QuantileState,
) -> Result<Vec<f64>, InputError> {
    check_masses(prev, next)?;
    let n = line.len();
    if prev.x.len() != next.x.len() || old.len() != n {
        return Err(InputError::InvalidParameter {
            name: "pushforward_masses".into(),
            value: format!(
                "{} and {} nodes, {} cell masses",
                prev.x.len(),
                next.x.len(),
                old.len()
            ),
            reason: format!("needs states on one grid and one mass per cell ({n} cells)"),
        });
    }
    let e = line.edges();
    let (p, q) = (&prev.x, &next.x);
    let last = p.len() - 1;
    // T⁻¹(y): y minus the displacement, interpolated between the nodes of `next`.
    let inverse = |y: f64| -> f64 {
        if y <= q[0] {
            return y - (q[0] - p[0]);
        }
        if y >= q[last] {
            return y - (q[last] - p[last]);
        }
        let i = q.partition_point(|&v| v <= y) - 1; // q[i] <= y < q[i+1]
        let theta = (y - q[i]) / (q[i + 1] - q[i]);
        p[i] + theta * (p[i + 1] - p[i])
    };
    let (below, above) = cumulative_masses(old);
    let mass = below[n];
    // (Fⁿ(x), M − Fⁿ(x)), each accurate on its small side.
    let cdf = |x: f64| -> (f64, f64) {
        if x <= e[0] {
            return (0.0, mass);
        }
        if x >= e[n] {
            return (mass, 0.0);
        }
        let j = (e.partition_point(|&v| v <= x) - 1).min(n - 1); // e[j] <= x < e[j+1]
        let part = old[j] * (x - e[j]) / (e[j + 1] - e[j]);
        (below[j] + part, above[j + 1] + (old[j] - part))
    };
    let mut f: Vec<(f64, f64)> = e.iter().map(|&y| cdf(inverse(y))).collect();
    f[0] = (0.0, mass);
    f[n] = (mass, 0.0);
    Ok((0..n)
        .map(|j| {
            let d = if f[j + 1].0 <= 0.5 * mass {
                f[j + 1].0 - f[j].0
            } else {
                f[j].1 - f[j + 1].1
            };
            d.max(0.0)
        })
        .collect())
}

/// The quantile of N(mean, std²) at the grid's levels (exactly mean + std·z on Gaussian nodes).
///
/// # Errors
/// [`InputError::InvalidParameter`] unless mean is finite and std finite and > 0; the errors
/// of [`QuantileState::new`].
///
/// ```rust
/// use jko_quantile::{QuantileGrid, from_gaussian};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let grid = QuantileGrid::gaussian(5, 4.0)?;
/// assert_eq!(from_gaussian(1.0, 0.5, &grid, 1.0)?.x, vec![-1.0, 0.0, 1.0, 2.0, 3.0]);
/// assert!(from_gaussian(0.0, -1.0, &grid, 1.0).is_err());
/// # Ok(())
/// # }
/// ```
pub fn from_gaussian(
    mean: f64,
    std: f64,
    grid: &QuantileGrid,
    mass: f64,
) -> Result<QuantileState, InputError> {
    if !(mean.is_finite() && std.is_finite() && std > 0.0) {
        return Err(InputError::parameter(
            "gaussian",
            format!("mean {mean}, std {std}"),
            "need finite mean and std > 0",
        ));
    }
    let x = match grid.distribution() {
        crate::NodeDistribution::Gaussian { .. } => {
            grid.parameters().iter().map(|z| mean + std * z).collect()
        }
        crate::NodeDistribution::Uniform => grid
            .levels()
            .iter()
            .zip(grid.level_complements())
            .map(|(&u, &uc)| mean + std * normal::quantile(u, uc))
            .collect(),
    };
    QuantileState::new(grid.clone(), x, mass)
}

/// From a quantile function given as a closure of (u, 1 − u), so that both tails can be
/// evaluated without cancellation.
///
/// # Errors
/// The errors of [`QuantileState::new`] (e.g. a quantile that is not strictly increasing).
///
/// ```rust
/// use jko_quantile::{QuantileGrid, from_quantile};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Exponential law of rate 1: X(u) = −ln(1 − u), from the complement for the right tail.
/// let grid = QuantileGrid::uniform(10)?;
/// let state = from_quantile(&grid, 1.0, |_u, uc| -uc.ln())?;
/// assert!((state.x[9] - 20f64.ln()).abs() < 1e-14); // u = 0.95
/// assert!(from_quantile(&grid, 1.0, |_, _| 0.0).is_err()); // constant: not increasing
/// # Ok(())
/// # }
/// ```
pub fn from_quantile(
    grid: &QuantileGrid,
    mass: f64,
    quantile: impl Fn(f64, f64) -> f64,
) -> Result<QuantileState, InputError> {
    let x = grid
        .levels()
        .iter()
        .zip(grid.level_complements())
        .map(|(&u, &uc)| quantile(u, uc))
        .collect();
    QuantileState::new(grid.clone(), x, mass)
}

/// From cell densities on a 1D mesh, through the piecewise-linear CDF of the cell densities.
///
/// # Errors
/// The density checks of [`jko_core::check_density`] (length, finite, ≥ 0, positive mass)
/// and the errors of [`QuantileState::new`].
///
/// ```rust
/// use jko_core::Mesh;
/// use jko_quantile::{LineMesh, QuantileGrid, from_density};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Uniform density 2 on [0, 1]: X(u) = u exactly, mass 2.
/// let mesh = Mesh::grid(&[5], &[0.0], &[1.0])?;
/// let line = LineMesh::new(&mesh)?;
/// let grid = QuantileGrid::uniform(8)?;
/// let state = from_density(&mesh, &line, &mesh.sample(|_| 2.0), &grid)?;
/// assert_eq!(state.mass, 2.0);
/// assert!(state.x.iter().zip(grid.levels()).all(|(x, u)| (x - u).abs() < 1e-15));
/// # Ok(())
/// # }
/// ```
pub fn from_density(
    mesh: &Mesh,
    line: &LineMesh,
    rho: &Array1<f64>,
    grid: &QuantileGrid,
) -> Result<QuantileState, InputError> {
    check_density(mesh, rho, "density")?;
    let e = line.edges();
    let n = line.len();
    let cell: Vec<f64> = line
        .order()
        .iter()
        .map(|&k| mesh.volumes()[k] * rho[k])
        .collect();
    let (below, above) = cumulative_masses(&cell);
    let mass = below[n];
    let x = grid
        .levels()
        .iter()
        .zip(grid.level_complements())
        .map(|(&u, &uc)| {
            if u <= 0.5 {
                let t = mass * u;
                // first j with below[j+1] > t
                let j = below[1..].partition_point(|&b| b <= t).min(n - 1);
                e[j] + (t - below[j]) / cell[j] * (e[j + 1] - e[j])
            } else {
                let t = mass * uc;
                // last j with above[j] > t
                let j = above[..n].partition_point(|&a| a > t).saturating_sub(1);
                e[j + 1] - (t - above[j + 1]) / cell[j] * (e[j + 1] - e[j])
            }
        })
        .collect();
    QuantileState::new(grid.clone(), x, mass)
}

/// Exact W²(a, b) between the reconstructed measures (any two grids, equal masses):
/// M ∫₀¹ |X_a(u) − X_b(u)|² du with both quantile functions piecewise linear in u, integrated
/// exactly on the merged knots.
///
/// # Errors
/// [`InputError::InvalidParameter`] when the masses differ (relative 1e-12).
///
/// ```rust
/// use jko_quantile::{QuantileGrid, from_gaussian, w2_squared};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // A translation by d costs M d², whatever the two grids.
/// let a = from_gaussian(0.0, 1.0, &QuantileGrid::gaussian(21, 6.0)?, 2.0)?;
/// let b = from_gaussian(0.5, 1.0, &QuantileGrid::uniform(30)?, 2.0)?;
/// let shifted = from_gaussian(0.5, 1.0, &a.grid, 2.0)?;
/// assert!((w2_squared(&a, &shifted)? - 2.0 * 0.25).abs() < 1e-12);
/// assert!(w2_squared(&a, &b)? > 0.0);
/// # Ok(())
/// # }
/// ```
pub fn w2_squared(a: &QuantileState, b: &QuantileState) -> Result<f64, InputError> {
    check_masses(a, b)?;
    let (ka, kb) = (a.knots(), b.knots());
    // Merge the knots by level; each side is linear between its own knots.
    let mut levels: Vec<(f64, f64)> = ka.iter().chain(&kb).map(|k| (k.0, k.1)).collect();
    levels.sort_by(|p, q| p.0.total_cmp(&q.0));
    levels.dedup_by(|p, q| p.0 == q.0);
    let eval = |k: &[(f64, f64, f64)], u: f64, j: &mut usize| {
        while *j + 2 < k.len() && k[*j + 1].0 <= u {
            *j += 1;
        }
        let (p, q) = (k[*j], k[*j + 1]);
        if q.0 == p.0 {
            return q.2;
        }
        p.2 + (u - p.0) / (q.0 - p.0) * (q.2 - p.2)
    };
    let (mut ja, mut jb) = (0, 0);
    let d: Vec<f64> = levels
        .iter()
        .map(|&(u, _)| eval(&ka, u, &mut ja) - eval(&kb, u, &mut jb))
        .collect();
    let pieces: Vec<f64> = (0..levels.len() - 1)
        .map(|i| {
            // Δu from whichever side of ½ keeps it accurate.
            let du = if levels[i + 1].0 <= 0.5 {
                levels[i + 1].0 - levels[i].0
            } else {
                levels[i].1 - levels[i + 1].1
            };
            du * (d[i] * d[i] + d[i] * d[i + 1] + d[i + 1] * d[i + 1]) / 3.0
        })
        .collect();
    Ok(a.mass * pairwise_sum(&pieces))
}

/// W² by the node quadrature M Σ w_i (X_i − Y_i)² (the kinetic term of the quantile JKO step);
/// both states must be on the same grid. Spectrally accurate on Gaussian nodes for quantiles
/// smooth in z.
///
/// # Errors
/// [`InputError::InvalidParameter`] when the masses or the grids differ.
///
/// ```rust
/// use jko_quantile::{QuantileGrid, from_gaussian, w2_squared_nodal};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Gaussians N(0, 1) and N(0, 4): W² = (σ₁ − σ₀)² = 1, spectrally on Gaussian nodes.
/// let grid = QuantileGrid::gaussian(41, 8.0)?;
/// let w2 = w2_squared_nodal(&from_gaussian(0.0, 1.0, &grid, 1.0)?, &from_gaussian(0.0, 2.0, &grid, 1.0)?)?;
/// assert!((w2 - 1.0).abs() < 1e-12);
/// let other = from_gaussian(0.0, 1.0, &QuantileGrid::uniform(41)?, 1.0)?;
/// assert!(w2_squared_nodal(&from_gaussian(0.0, 1.0, &grid, 1.0)?, &other).is_err());
/// # Ok(())
/// # }
/// ```
pub fn w2_squared_nodal(a: &QuantileState, b: &QuantileState) -> Result<f64, InputError> {
    check_masses(a, b)?;
    if a.grid != b.grid {
        return Err(InputError::parameter(
            "grid",
            "different grids",
            "the nodal W² needs both states on the same grid; use w2_squared",
        ));
    }
    let terms: Vec<f64> = a
        .grid
        .weights()
        .iter()
        .zip(a.x.iter().zip(&b.x))
        .map(|(w, (x, y))| w * (x - y) * (x - y))
        .collect();
    Ok(a.mass * pairwise_sum(&terms))
}

fn check_masses(a: &QuantileState, b: &QuantileState) -> Result<(), InputError> {
    if (a.mass - b.mass).abs() > 1e-12 * a.mass.max(b.mass) {
        return Err(InputError::parameter(
            "mass",
            format!("{} vs {}", a.mass, b.mass),
            "W² compares measures of equal mass",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn density_round_trip_conserves_mass_and_shape() {
        let mesh = Mesh::grid(&[200], &[-5.0], &[5.0]).unwrap();
        let line = LineMesh::new(&mesh).unwrap();
        let rho = mesh.sample(|x| {
            2.0 * (-(x[0] - 1.0).powi(2) / 0.5).exp() + 0.1 * (x[0] < 0.0) as u8 as f64
        });
        for grid in [
            QuantileGrid::gaussian(4001, 6.0).unwrap(),
            QuantileGrid::uniform(4000).unwrap(),
        ] {
            let s = from_density(&mesh, &line, &rho, &grid).unwrap();
            let back = s.to_density(&line, &mesh);
            let m0 = mesh.mass(&rho);
            assert!((mesh.mass(&back) - m0).abs() < 1e-13 * m0);
            let l1: f64 = (&back - &rho).iter().map(|d| d.abs() * 0.05).sum();
            assert!(l1 < 2e-3 * m0, "{:?}: L1 {l1}", grid.distribution());
        }
    }

    #[test]
    fn w2_of_a_translation_and_nodal_agreement() {
        let g = QuantileGrid::gaussian(801, 8.0).unwrap();
        let a = from_gaussian(0.0, 1.0, &g, 2.0).unwrap();
        let b = from_gaussian(0.3, 1.0, &g, 2.0).unwrap();
        // A translation: W² = M · 0.3² exactly for both formulas.
        assert!((w2_squared(&a, &b).unwrap() - 2.0 * 0.09).abs() < 1e-12);
        assert!((w2_squared_nodal(&a, &b).unwrap() - 2.0 * 0.09).abs() < 1e-12);
        // Scaling: W²(N(0,1), N(0,s²)) = (1 − s)².
        let c = from_gaussian(0.0, 1.5, &g, 2.0).unwrap();
        assert!((w2_squared_nodal(&a, &c).unwrap() - 2.0 * 0.25).abs() < 1e-12);
        let exact = w2_squared(&a, &c).unwrap();
        assert!((exact - 0.5).abs() < 1e-3, "{exact}");
        // Different grids: still comparable.
        let u = from_gaussian(0.3, 1.0, &QuantileGrid::uniform(500).unwrap(), 2.0).unwrap();
        assert!((w2_squared(&b, &u).unwrap()).abs() < 1e-3);
        assert!(w2_squared_nodal(&b, &u).is_err());
    }

    #[test]
    fn ties_are_refused_with_a_hint() {
        let g = QuantileGrid::uniform(3).unwrap();
        let e = QuantileState::new(g, vec![0.0, 0.0, 1.0], 1.0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("strictly increasing"), "{e}");
    }
}

//! Mass levels (nodes) of the quantile function and their quadrature weights.
//!
//! Nodes sit at levels u_i = g(s_i) with s_i evenly spaced (spacing h). Two distributions:
//!
//! - [`NodeDistribution::Uniform`]: equal-mass nodes u_i = (i + ½)/n, node weights w_i = 1/n,
//!   cell masses c_{i+½} = 1/n between consecutive nodes (the half cells at the two ends are
//!   not resolved). For densities with tails X(u) blows up at u → 0, 1 and the scheme is only
//!   first order in 1/n (docs/mathematics.md §2.4).
//! - [`NodeDistribution::Gaussian`]: u_i = Φ(z_i), z_i evenly spaced on [−z_max, z_max].
//!   In z the quantile of a Gaussian is linear, X(Φ(z)) = m + σz, and the quantile of any
//!   smooth density with Gaussian-like or compact tails is smooth. Node weights are the
//!   trapezoid rule in z, w_i ∝ h φ(z_i) normalised to Σ w_i = 1, which is spectrally accurate
//!   for smooth integrands decaying like φ. Cell masses follow from the discrete identity
//!
//!   c_{i+½} − c_{i−½} = −h z_i w_i,  c_{−½} = 0,
//!
//!   the discrete form of (φ)' = −zφ, so c_{i+½} = h φ(z_{i+½}) (1 + O(h²)). This identity makes
//!   the discrete entropy exact on Gaussians: summation by parts gives
//!   Σ_i z_i ∂/∂X_i [−Σ c log(X_{i+1} − X_i)] = −Σ c / b for X = a + b z, with Σ c = Σ w z²,
//!   so the discrete Ornstein–Uhlenbeck/heat JKO step maps a linear-in-z quantile to a linear
//!   one with exactly the continuous mean and standard deviation (up to the spectrally small
//!   errors in Σ w = 1, Σ w z² = 1). For non-Gaussian data the scheme is second order in h.

use crate::normal;
use jko_core::InputError;
use serde::{Deserialize, Serialize};

/// How the mass levels are spread over (0, 1). Serde form: `{ kind = "gaussian", z_max = 6 }`
/// or `{ kind = "uniform" }`; the default is Gaussian with z_max = 6.
///
/// ```rust
/// use jko_quantile::{NodeDistribution, QuantileGrid};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let uniform = QuantileGrid::new(4, NodeDistribution::Uniform)?;
/// assert_eq!(uniform.levels(), &[0.125, 0.375, 0.625, 0.875]);
/// assert_eq!(NodeDistribution::default(), NodeDistribution::Gaussian { z_max: 6.0 });
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum NodeDistribution {
    /// Equal-mass nodes u_i = (i + ½)/n (first order for densities with tails).
    Uniform,
    /// u_i = Φ(z_i), z_i evenly spaced on [−z_max, z_max] (second order; exact on Gaussians).
    Gaussian {
        /// Largest |z| of a node, in (0, [`MAX_Z`]].
        z_max: f64,
    },
}

impl NodeDistribution {
    /// Check the parameters (0 < z_max ≤ 12).
    ///
    /// # Errors
    /// [`InputError::InvalidParameter`] for `z_max`.
    ///
    /// ```rust
    /// use jko_quantile::NodeDistribution;
    ///
    /// assert!(NodeDistribution::Gaussian { z_max: 8.0 }.validate().is_ok());
    /// assert!(NodeDistribution::Gaussian { z_max: 20.0 }.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<(), InputError> {
        if let NodeDistribution::Gaussian { z_max } = *self
            && !(z_max.is_finite() && z_max > 0.0 && z_max <= MAX_Z)
        {
            return Err(InputError::parameter(
                "z_max",
                z_max,
                "must be in (0, 12]; 8 resolves Gaussian tails to ~1e-15, 6 suits mesh data",
            ));
        }
        Ok(())
    }
}

impl Default for NodeDistribution {
    fn default() -> Self {
        NodeDistribution::Gaussian { z_max: 6.0 }
    }
}

/// The serialised form of a grid: it is rebuilt (and validated) from these two numbers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GridSpec {
    nodes: usize,
    distribution: NodeDistribution,
}

/// Mass levels u_i, their complements 1 − u_i, node weights w_i (Σ w = 1) and cell masses
/// c_{i+½} between consecutive nodes.
///
/// On Gaussian nodes w_i ∝ φ(z_i) and c_{i+½} are the trapezoidal masses, so that
/// Σ_i w_i f(X_i) is spectrally accurate for f(X(Φ(z))) smooth in z. Serialised as its node
/// count and distribution only.
///
/// ```rust
/// use jko_quantile::QuantileGrid;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // The node quadrature integrates z² against the Gaussian: Σ w_i z_i² = 1.
/// let grid = QuantileGrid::gaussian(41, 8.0)?;
/// let second: f64 = grid.weights().iter().zip(grid.parameters()).map(|(w, z)| w * z * z).sum();
/// assert!((second - 1.0).abs() < 1e-12);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "GridSpec", into = "GridSpec")]
pub struct QuantileGrid {
    distribution: NodeDistribution,
    /// Parameter of each node (z for Gaussian nodes, u for uniform ones).
    s: Vec<f64>,
    spacing: f64,
    u: Vec<f64>,
    u_complement: Vec<f64>,
    weights: Vec<f64>,
    cell_masses: Vec<f64>,
}

/// Largest z_max: beyond it the tail levels Φ(−z_max) are below any useful resolution.
pub const MAX_Z: f64 = 12.0;

impl QuantileGrid {
    /// A grid of `nodes` nodes (at least 3, at most 2²⁷).
    ///
    /// # Errors
    /// [`InputError::InvalidParameter`] for the node count or the distribution.
    ///
    /// ```rust
    /// use jko_quantile::{NodeDistribution, QuantileGrid};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let grid = QuantileGrid::new(5, NodeDistribution::Gaussian { z_max: 4.0 })?;
    /// assert_eq!(grid.parameters(), &[-4.0, -2.0, 0.0, 2.0, 4.0]);
    /// assert!(QuantileGrid::new(2, NodeDistribution::Uniform).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(nodes: usize, distribution: NodeDistribution) -> Result<Self, InputError> {
        if nodes < 3 {
            return Err(InputError::parameter(
                "nodes",
                nodes,
                "a quantile grid needs at least 3 nodes",
            ));
        }
        if nodes > jko_core::mesh::MAX_CELLS {
            return Err(InputError::parameter("nodes", nodes, "too many nodes"));
        }
        distribution.validate()?;
        Ok(match distribution {
            NodeDistribution::Uniform => Self::build_uniform(nodes),
            NodeDistribution::Gaussian { z_max } => Self::build_gaussian(nodes, z_max),
        })
    }

    /// Equal-mass nodes u_i = (i + ½)/n.
    ///
    /// # Errors
    /// As [`QuantileGrid::new`].
    ///
    /// ```rust
    /// use jko_quantile::QuantileGrid;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let grid = QuantileGrid::uniform(10)?;
    /// assert!(grid.weights().iter().all(|&w| w == 0.1));
    /// # Ok(())
    /// # }
    /// ```
    pub fn uniform(nodes: usize) -> Result<Self, InputError> {
        Self::new(nodes, NodeDistribution::Uniform)
    }

    /// Nodes at u = Φ(z), z evenly spaced on [−z_max, z_max].
    ///
    /// # Errors
    /// As [`QuantileGrid::new`].
    ///
    /// ```rust
    /// use jko_quantile::QuantileGrid;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let grid = QuantileGrid::gaussian(3, 1.0)?;
    /// // Φ(0) = 1/2 at the middle node, symmetric levels around it.
    /// assert_eq!(grid.levels()[1], 0.5);
    /// assert_eq!(grid.levels()[0], grid.level_complements()[2]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn gaussian(nodes: usize, z_max: f64) -> Result<Self, InputError> {
        Self::new(nodes, NodeDistribution::Gaussian { z_max })
    }

    fn build_uniform(n: usize) -> Self {
        let nf = n as f64;
        let u: Vec<f64> = (0..n).map(|i| (i as f64 + 0.5) / nf).collect();
        let u_complement = (0..n).map(|i| (nf - i as f64 - 0.5) / nf).collect();
        QuantileGrid {
            distribution: NodeDistribution::Uniform,
            s: u.clone(),
            spacing: 1.0 / nf,
            u,
            u_complement,
            weights: vec![1.0 / nf; n],
            cell_masses: vec![1.0 / nf; n - 1],
        }
    }

    fn build_gaussian(n: usize, z_max: f64) -> Self {
        let last = (n - 1) as f64;
        let h = 2.0 * z_max / last;
        // z_{n−1−i} = −z_i exactly, so every symmetric sum below is symmetric in floating point.
        let z: Vec<f64> = (0..n)
            .map(|i| z_max * (2.0 * i as f64 - last) / last)
            .collect();
        let raw: Vec<f64> = z.iter().map(|&z| normal::pdf(z)).collect();
        let total: f64 = pairwise_sum(&raw);
        let weights: Vec<f64> = raw.iter().map(|p| p / total).collect();
        let mut cell_masses = vec![0.0; n - 1];
        let mut partial = 0.0;
        for k in 0..(n - 1).div_ceil(2) {
            partial += z[k] * weights[k];
            cell_masses[k] = -h * partial;
        }
        for k in (n - 1).div_ceil(2)..n - 1 {
            cell_masses[k] = cell_masses[n - 2 - k];
        }
        QuantileGrid {
            distribution: NodeDistribution::Gaussian { z_max },
            u: z.iter().map(|&z| normal::cdf(z)).collect(),
            u_complement: z.iter().map(|&z| normal::cdf(-z)).collect(),
            s: z,
            spacing: h,
            weights,
            cell_masses,
        }
    }

    /// Number of nodes.
    ///
    /// ```rust
    /// use jko_quantile::QuantileGrid;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// assert_eq!(QuantileGrid::uniform(7)?.len(), 7);
    /// # Ok(())
    /// # }
    /// ```
    pub fn len(&self) -> usize {
        self.u.len()
    }

    /// Always false: a grid has at least 3 nodes.
    ///
    /// ```rust
    /// use jko_quantile::QuantileGrid;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// assert!(!QuantileGrid::uniform(3)?.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_empty(&self) -> bool {
        self.u.is_empty()
    }

    /// The distribution the grid was built with.
    ///
    /// ```rust
    /// use jko_quantile::{NodeDistribution, QuantileGrid};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// assert_eq!(QuantileGrid::gaussian(9, 5.0)?.distribution(), NodeDistribution::Gaussian { z_max: 5.0 });
    /// # Ok(())
    /// # }
    /// ```
    pub fn distribution(&self) -> NodeDistribution {
        self.distribution
    }

    /// Mass levels u_i ∈ (0, 1), increasing.
    ///
    /// ```rust
    /// use jko_quantile::QuantileGrid;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let grid = QuantileGrid::gaussian(21, 8.0)?;
    /// assert!(grid.levels().windows(2).all(|p| 0.0 < p[0] && p[0] < p[1] && p[1] < 1.0));
    /// # Ok(())
    /// # }
    /// ```
    pub fn levels(&self) -> &[f64] {
        &self.u
    }

    /// 1 − u_i, computed without cancellation.
    ///
    /// ```rust
    /// use jko_quantile::QuantileGrid;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // At z = 8, 1 − u ≈ 6.2e−16 would round to 0 or 1.1e−16 as 1 − u; kept exactly here.
    /// let grid = QuantileGrid::gaussian(3, 8.0)?;
    /// assert!((grid.level_complements()[2] / 6.22096057427e-16 - 1.0).abs() < 1e-9);
    /// # Ok(())
    /// # }
    /// ```
    pub fn level_complements(&self) -> &[f64] {
        &self.u_complement
    }

    /// Node parameter s_i (z_i for Gaussian nodes, u_i for uniform ones).
    ///
    /// ```rust
    /// use jko_quantile::QuantileGrid;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let grid = QuantileGrid::uniform(4)?;
    /// assert_eq!(grid.parameters(), grid.levels());
    /// # Ok(())
    /// # }
    /// ```
    pub fn parameters(&self) -> &[f64] {
        &self.s
    }

    /// Spacing h of the node parameter.
    ///
    /// ```rust
    /// use jko_quantile::QuantileGrid;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// assert_eq!(QuantileGrid::gaussian(5, 4.0)?.spacing(), 2.0);
    /// assert_eq!(QuantileGrid::uniform(4)?.spacing(), 0.25);
    /// # Ok(())
    /// # }
    /// ```
    pub fn spacing(&self) -> f64 {
        self.spacing
    }

    /// Node weights w_i (Σ w = 1): ∫₀¹ f(X(u)) du ≈ Σ w_i f(X_i).
    ///
    /// ```rust
    /// use jko_quantile::QuantileGrid;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let total: f64 = QuantileGrid::gaussian(31, 6.0)?.weights().iter().sum();
    /// assert!((total - 1.0).abs() < 1e-14);
    /// # Ok(())
    /// # }
    /// ```
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// Cell masses c_{i+½} between nodes i and i + 1 (len − 1 values).
    ///
    /// ```rust
    /// use jko_quantile::QuantileGrid;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Mass strictly between the end levels: Σ c ≈ u_{n−1} − u_0 (spectrally on Gaussian nodes).
    /// let grid = QuantileGrid::gaussian(41, 8.0)?;
    /// let inner: f64 = grid.cell_masses().iter().sum();
    /// assert_eq!(grid.cell_masses().len(), 40);
    /// assert!((inner - (grid.levels()[40] - grid.levels()[0])).abs() < 1e-12);
    /// # Ok(())
    /// # }
    /// ```
    pub fn cell_masses(&self) -> &[f64] {
        &self.cell_masses
    }
}

impl TryFrom<GridSpec> for QuantileGrid {
    type Error = InputError;
    fn try_from(spec: GridSpec) -> Result<Self, InputError> {
        QuantileGrid::new(spec.nodes, spec.distribution)
    }
}

impl From<QuantileGrid> for GridSpec {
    fn from(g: QuantileGrid) -> Self {
        GridSpec {
            nodes: g.len(),
            distribution: g.distribution,
        }
    }
}

/// Sum with O(ε log n) error.
pub(crate) fn pairwise_sum(v: &[f64]) -> f64 {
    if v.len() <= 32 {
        v.iter().sum()
    } else {
        let (a, b) = v.split_at(v.len() / 2);
        pairwise_sum(a) + pairwise_sum(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_grid_moments_are_spectrally_exact() {
        for &n in &[21, 101, 1001] {
            let g = QuantileGrid::gaussian(n, 8.0).unwrap();
            let z = g.parameters();
            let w = g.weights();
            let m1: f64 = z.iter().zip(w).map(|(z, w)| z * w).sum();
            let m2: f64 = z.iter().zip(w).map(|(z, w)| z * z * w).sum();
            let m4: f64 = z.iter().zip(w).map(|(z, w)| z.powi(4) * w).sum();
            assert!(m1.abs() < 1e-15, "{n}: {m1}");
            // Trapezoid error ~ (2π/h)^k e^{−2π²/h²}: 5e-12 at h = 0.8 (n = 21), round-off beyond.
            let tol = if n < 50 { 1e-10 } else { 1e-13 };
            assert!((m2 - 1.0).abs() < tol, "{n}: {m2}");
            // ∫_{|z|>8} z⁴ φ ≈ 5e-12 is missing from the truncated grid.
            assert!((m4 - 3.0).abs() < 1e-11 + 10.0 * tol, "{n}: {m4}");
            // Σ c = Σ w z² (summation-by-parts identity behind the exactness on Gaussians).
            let c: f64 = g.cell_masses().iter().sum();
            assert!((c - m2).abs() < 1e-13, "{n}: {c}");
            assert!(g.cell_masses().iter().all(|&c| c > 0.0));
            // c ≈ h φ(z_{i+½}) to second order.
            let h = g.spacing();
            let k = n / 3;
            let mid = 0.5 * (z[k] + z[k + 1]);
            let rel = (g.cell_masses()[k] / (h * normal::pdf(mid)) - 1.0).abs();
            assert!(rel < 0.5 * h * h, "{n}: {rel}");
        }
    }

    #[test]
    fn levels_and_complements_are_consistent() {
        let g = QuantileGrid::gaussian(51, 8.0).unwrap();
        for (u, uc) in g.levels().iter().zip(g.level_complements()) {
            assert!((u + uc - 1.0).abs() < 2e-16);
        }
        assert!(g.levels().windows(2).all(|p| p[0] < p[1]));
        let u = QuantileGrid::uniform(10).unwrap();
        assert_eq!(u.levels()[0], 0.05);
        assert_eq!(u.level_complements()[9], 0.05);
    }

    #[test]
    fn bad_grids_are_rejected_and_serde_round_trips() {
        assert!(QuantileGrid::uniform(2).is_err());
        assert!(QuantileGrid::gaussian(10, 0.0).is_err());
        assert!(QuantileGrid::gaussian(10, 40.0).is_err());
        let g = QuantileGrid::gaussian(11, 5.0).unwrap();
        let text = serde_json::to_string(&g).unwrap();
        let back: QuantileGrid = serde_json::from_str(&text).unwrap();
        assert_eq!(back, g);
        assert!(
            serde_json::from_str::<QuantileGrid>(
                r#"{"nodes":2,"distribution":{"kind":"uniform"}}"#
            )
            .is_err()
        );
    }
}

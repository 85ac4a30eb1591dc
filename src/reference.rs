//! Exact solutions behind configs: when the engine knows the solution of a config's PDE, the
//! convergence and comparison reports measure errors against it.
//!
//! Recognised (domain without obstacles or mask):
//! - Fokker–Planck / Ornstein–Uhlenbeck and heat: `entropy` (+ quadratic potential) from a
//!   Gaussian — exact on ℝ^d, so the box must hold the tails (the error floor is the mass
//!   outside it); also the exact JKO iterates (exact W²);
//! - porous medium: `porous` alone from a Barenblatt profile, while its support stays inside;
//! - `entropy` + linear potential from `drift_box`: the separable solution on the box.
//!
//! Also the distances used to compare densities on a mesh: [`l1_relative`] and [`w2_like`].

use crate::config::{Config, InitialConfig, Problem};
use crate::error::RunError;
use jko_core::exact::{Barenblatt, DriftBox, Gaussian, OrnsteinUhlenbeck};
use jko_core::{Mesh, Potential};
use ndarray::Array1;

/// A known solution of the config's gradient flow.
///
/// ```rust
/// use jko::config::Config;
/// use jko::reference::ExactSolution;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::from_toml(jko::examples::example("porous-1d").unwrap())?;
/// let problem = config.build(".".as_ref())?;
/// let exact = ExactSolution::detect(&config, &problem)?.unwrap();
/// assert_eq!(exact.name(), "Barenblatt profile");
/// // At t = 0 it is the initial density (up to ρ⁰'s normalisation to mass 1 on the cells).
/// let rho0 = exact.density(&problem.mesh, 0.0);
/// assert!(jko::reference::l1_relative(&problem.mesh, &problem.initial, &rho0) < 1e-2);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub enum ExactSolution {
    /// A Gaussian under the Ornstein–Uhlenbeck (or heat) flow.
    Gaussian {
        /// The flow: temperature, stiffness and centre of the quadratic potential.
        ou: OrnsteinUhlenbeck,
        /// The Gaussian at t = 0.
        initial: Gaussian,
        /// Its mass.
        mass: f64,
    },
    /// A Barenblatt profile of the porous medium equation.
    Barenblatt {
        /// The profile (exponent, dimension, mass).
        profile: Barenblatt,
        /// The profile's time at t = 0.
        t0: f64,
    },
    /// The separable Fokker–Planck solution on a box with a linear potential.
    DriftBox(DriftBox),
}

impl ExactSolution {
    /// The exact solution of `config` (built as `problem`), if the engine knows one.
    ///
    /// # Errors
    /// [`RunError::Input`] / [`RunError::Config`] for a profile the config cannot give.
    ///
    /// ```rust
    /// use jko::config::Config;
    /// use jko::reference::ExactSolution;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let quartic = Config::from_toml(jko::examples::example("quartic-1d").unwrap())?;
    /// assert!(ExactSolution::detect(&quartic, &quartic.build(".".as_ref())?)?.is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn detect(config: &Config, problem: &Problem) -> Result<Option<ExactSolution>, RunError> {
        let e = &problem.energy;
        let mesh = &problem.mesh;
        if !config.mesh.obstacles.is_empty() || config.mesh.mask.is_some() {
            return Ok(None);
        }
        if e.interaction.is_some() || e.max_density.is_some() {
            return Ok(None);
        }
        let mass = mesh.mass(&problem.initial);
        Ok(match (&config.initial, e.entropy, e.porous, &e.potential) {
            (InitialConfig::Gaussian { mean, std, .. }, Some(beta), None, potential) => {
                let d = mesh.dim();
                let ou = match potential {
                    None => OrnsteinUhlenbeck::heat(beta, d),
                    Some(Potential::Quadratic { center, stiffness }) => OrnsteinUhlenbeck {
                        beta,
                        stiffness: *stiffness,
                        center: center.clone(),
                    },
                    _ => return Ok(None),
                };
                Some(ExactSolution::Gaussian {
                    ou,
                    initial: Gaussian::diagonal(mean, std),
                    mass,
                })
            }
            (InitialConfig::Barenblatt { m, t0, .. }, None, Some(pm), None)
                if (m - pm).abs() == 0.0 =>
            {
                let profile = Barenblatt::new(*m, mesh.dim(), mass)?;
                Some(ExactSolution::Barenblatt { profile, t0: *t0 })
            }
            (InitialConfig::DriftBox { .. }, Some(_), None, Some(Potential::Linear { .. })) => {
                Some(ExactSolution::DriftBox(config.initial.drift_box(mesh, e)?))
            }
            _ => None,
        })
    }

    /// What the solution is, in words (the `against` of reports).
    ///
    /// ```rust
    /// use jko::reference::ExactSolution;
    /// use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
    ///
    /// let heat = ExactSolution::Gaussian {
    ///     ou: OrnsteinUhlenbeck::heat(1.0, 1),
    ///     initial: Gaussian::diagonal(&[0.0], &[1.0]),
    ///     mass: 1.0,
    /// };
    /// assert_eq!(heat.name(), "heat kernel (Gaussian)");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            ExactSolution::Gaussian { ou, .. } if ou.stiffness == 0.0 => "heat kernel (Gaussian)",
            ExactSolution::Gaussian { .. } => "Ornstein-Uhlenbeck (Gaussian)",
            ExactSolution::Barenblatt { .. } => "Barenblatt profile",
            ExactSolution::DriftBox(_) => "Fokker-Planck with linear drift on the box (separable)",
        }
    }

    /// Exact density at time t after the initial state (cell centre values).
    ///
    /// ```rust
    /// use jko::reference::ExactSolution;
    /// use jko_core::Mesh;
    /// use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ou = ExactSolution::Gaussian {
    ///     ou: OrnsteinUhlenbeck::standard(1),
    ///     initial: Gaussian::diagonal(&[0.0], &[1.0]),
    ///     mass: 1.0,
    /// };
    /// // N(0, 1) is the equilibrium: it does not move.
    /// let mesh = Mesh::grid(&[8], &[-2.0], &[2.0])?;
    /// assert_eq!(ou.density(&mesh, 0.0), ou.density(&mesh, 3.0));
    /// # Ok(())
    /// # }
    /// ```
    pub fn density(&self, mesh: &Mesh, t: f64) -> Array1<f64> {
        match self {
            ExactSolution::Gaussian { ou, initial, mass } => {
                let g = ou.flow(initial, t);
                mesh.sample(|x| mass * g.density(x))
            }
            ExactSolution::Barenblatt { profile, t0 } => {
                mesh.sample(|x| profile.density(t0 + t, x))
            }
            ExactSolution::DriftBox(db) => mesh.sample(|x| db.density(t, x)),
        }
    }

    /// Whether the solution at time t is exact on the mesh's box (Barenblatt support inside).
    ///
    /// ```rust
    /// use jko::reference::ExactSolution;
    /// use jko_core::Mesh;
    /// use jko_core::exact::Barenblatt;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let b = ExactSolution::Barenblatt { profile: Barenblatt::new(2.0, 1, 1.0)?, t0: 0.1 };
    /// let mesh = Mesh::grid(&[20], &[-2.0], &[2.0])?;
    /// assert!(b.fits(&mesh, 0.0) && !b.fits(&mesh, 1e6));
    /// # Ok(())
    /// # }
    /// ```
    pub fn fits(&self, mesh: &Mesh, t: f64) -> bool {
        match (self, mesh.as_grid()) {
            (ExactSolution::Barenblatt { profile, t0 }, Some(g)) => {
                let r = profile.support_radius(t0 + t);
                g.lower.iter().zip(&g.upper).all(|(l, u)| *l < -r && r < *u)
            }
            _ => true,
        }
    }

    /// The exact JKO iterate (exact W²) after `steps` steps of size τ, where known (Gaussians).
    ///
    /// ```rust
    /// use jko::reference::ExactSolution;
    /// use jko_core::Mesh;
    /// use jko_core::exact::{Barenblatt, Gaussian, OrnsteinUhlenbeck};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[8], &[-2.0], &[2.0])?;
    /// let ou = ExactSolution::Gaussian {
    ///     ou: OrnsteinUhlenbeck::standard(1),
    ///     initial: Gaussian::diagonal(&[0.0], &[1.0]),
    ///     mass: 1.0,
    /// };
    /// assert_eq!(ou.jko_density(&mesh, 0.1, 3), Some(ou.density(&mesh, 0.0)));
    /// let b = ExactSolution::Barenblatt { profile: Barenblatt::new(2.0, 1, 1.0)?, t0: 0.1 };
    /// assert!(b.jko_density(&mesh, 0.1, 3).is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn jko_density(&self, mesh: &Mesh, tau: f64, steps: usize) -> Option<Array1<f64>> {
        match self {
            ExactSolution::Gaussian { ou, initial, mass } => {
                let g = ou.jko_iterates(initial, tau, steps);
                Some(mesh.sample(|x| mass * g.density(x)))
            }
            _ => None,
        }
    }
}

/// Relative L1 distance Σ_K |K| |a_K − b_K| / Σ_K |K| |b_K|.
///
/// ```rust
/// use jko_core::Mesh;
/// use ndarray::array;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::grid(&[2], &[0.0], &[1.0])?;
/// assert_eq!(jko::reference::l1_relative(&mesh, &array![1.5, 0.5], &array![1.0, 1.0]), 0.5);
/// # Ok(())
/// # }
/// ```
pub fn l1_relative(mesh: &Mesh, a: &Array1<f64>, b: &Array1<f64>) -> f64 {
    let den: f64 = (0..b.len()).map(|k| mesh.volumes()[k] * b[k].abs()).sum();
    mesh.l1_distance(a, b) / den
}

/// A W2-like distance between two densities of equal mass on a mesh, normalised to unit mass:
/// on 1D grids the exact W₂ between the piecewise-constant densities (through their quantile
/// functions, midpoint rule on 4096 mass levels); otherwise the Gelbrich bound — the
/// Bures–Wasserstein distance between the moment-matched Gaussians, a lower bound on W₂.
///
/// ```rust
/// use jko_core::Mesh;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // A shift by s moves every quantile by s: W₂ = s (up to the cells' width).
/// let mesh = Mesh::grid(&[400], &[-5.0], &[5.0])?;
/// let bump = |c: f64| mesh.sample(|x| (-(x[0] - c).powi(2) * 2.0).exp());
/// let w2 = jko::reference::w2_like(&mesh, &bump(0.0), &bump(0.5));
/// assert!((w2 - 0.5).abs() < 1e-3, "{w2}");
/// # Ok(())
/// # }
/// ```
pub fn w2_like(mesh: &Mesh, a: &Array1<f64>, b: &Array1<f64>) -> f64 {
    if let Some(g) = mesh
        .as_grid()
        .filter(|g| g.cells.len() == 1 && g.mask.is_none())
    {
        let h = (g.upper[0] - g.lower[0]) / g.cells[0] as f64;
        let quantiles = |rho: &Array1<f64>| -> Vec<f64> {
            let total: f64 = rho.iter().sum::<f64>() * h;
            let levels = 4096;
            let mut out = Vec::with_capacity(levels);
            let (mut cell, mut below) = (0usize, 0.0);
            for i in 0..levels {
                let u = (i as f64 + 0.5) / levels as f64 * total;
                while cell + 1 < rho.len() && below + rho[cell] * h < u {
                    below += rho[cell] * h;
                    cell += 1;
                }
                let inside = if rho[cell] > 0.0 {
                    (u - below) / rho[cell]
                } else {
                    0.0
                };
                out.push(g.lower[0] + cell as f64 * h + inside.clamp(0.0, h));
            }
            out
        };
        let (qa, qb) = (quantiles(a), quantiles(b));
        let s: f64 = qa
            .iter()
            .zip(&qb)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f64>()
            / qa.len() as f64;
        return s.sqrt();
    }
    let moments = |rho: &Array1<f64>| {
        let d = mesh.dim();
        let m = mesh.mass(rho);
        let mut mean = vec![0.0; d];
        for k in 0..rho.len() {
            for (i, x) in mesh.centre(k).iter().enumerate() {
                mean[i] += mesh.volumes()[k] * rho[k] * x / m;
            }
        }
        let mut cov = vec![0.0; d * d];
        for k in 0..rho.len() {
            let x = mesh.centre(k);
            for i in 0..d {
                for j in 0..d {
                    cov[i * d + j] +=
                        mesh.volumes()[k] * rho[k] * (x[i] - mean[i]) * (x[j] - mean[j]) / m;
                }
            }
        }
        (mean, cov)
    };
    let ((ma, sa), (mb, sb)) = (moments(a), moments(b));
    let d = mesh.dim();
    let sqrtm = |s: &[f64]| jko_core::exact::symmetric_sqrt(s, d);
    // BW² = |Δm|² + tr Sa + tr Sb − 2 tr (Sa^½ Sb Sa^½)^½
    let ra = sqrtm(&sa);
    let mut inner = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            inner[i * d + j] = (0..d)
                .flat_map(|p| (0..d).map(move |q| (p, q)))
                .map(|(p, q)| ra[i * d + p] * sb[p * d + q] * ra[q * d + j])
                .sum();
        }
    }
    let cross: f64 = (0..d).map(|i| sqrtm(&inner)[i * d + i]).sum();
    let trace = |s: &[f64]| (0..d).map(|i| s[i * d + i]).sum::<f64>();
    let dm: f64 = ma.iter().zip(&mb).map(|(x, y)| (x - y) * (x - y)).sum();
    (dm + trace(&sa) + trace(&sb) - 2.0 * cross).max(0.0).sqrt()
}

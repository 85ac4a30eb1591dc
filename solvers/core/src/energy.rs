//! Energies F(ρ) = ∫ f(ρ) + V ρ + ½ ∬ W(x − y) ρ(x) ρ(y), with an optional bound ρ ≤ ρ_max.
//!
//! Discretised on a mesh (docs/mathematics.md §1):
//! F_h(ρ) = Σ_K |K| [ f(ρ_K) + V_K ρ_K ] + ½ Σ_{K,L} |K||L| W(x_K − x_L) ρ_K ρ_L,
//! with f(s) = β s log s (entropy) + s^m/(m−1) (porous medium).
//!
//! β·KL(ρ | e^{−V/β}/Z) = β ∫ ρ log ρ + ∫ V ρ + const, so entropy + potential *is* the
//! Fokker–Planck (KL) energy; [`Energy::fokker_planck`] builds it.
//!
//! The interaction term is not convex in ρ for general kernels, so every backend treats it
//! semi-implicitly: inside a step it is frozen into the potential, V_eff = V + W * ρⁿ
//! ([`Energy::freeze`]). This is a first-order-in-τ consistent treatment, stated in
//! `jko solvers` and in the step record.
//!
//! All quantities are per cell: ρ_K and V_K are cell values, and F_h weights them by |K|.
//!
//! ```rust
//! use jko_core::{Energy, Mesh, Potential};
//! use ndarray::array;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // β ∫ ρ log ρ + ∫ x ρ on [0, 1], two cells: at ρ ≡ 1 the entropy vanishes and the
//! // potential energy is Σ_K |K| x_K = ½ (1/4 + 3/4) = 1/2.
//! let mesh = Mesh::grid(&[2], &[0.0], &[1.0])?;
//! let energy = Energy::fokker_planck(1.0, Potential::Linear { slope: vec![1.0] });
//! assert_eq!(energy.value(&mesh, &array![1.0, 1.0])?, 0.5);
//! # Ok(())
//! # }
//! ```

use crate::error::InputError;
use crate::mesh::Mesh;
use ndarray::Array1;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use std::fmt;

/// External potential V(x), described as data (serde: `kind = "quadratic"`, ...).
///
/// Evaluated at the cell centres by [`Potential::on_mesh`]; it enters the energy as
/// Σ_K |K| V_K ρ_K.
///
/// ```rust
/// use jko_core::{Mesh, Potential};
/// use ndarray::array;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::grid(&[2], &[-1.0], &[1.0])?; // centres ±1/2
/// let v = Potential::DoubleWell.on_mesh(&mesh)?;
/// // (x² − 1)²/4 at x = ±1/2: (3/4)²/4 = 9/64.
/// assert_eq!(v, array![9.0 / 64.0, 9.0 / 64.0]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Potential {
    /// stiffness · |x − center|² / 2
    Quadratic {
        /// Minimum c of the potential, one coordinate per axis.
        center: Vec<f64>,
        /// Stiffness k ≥ 0 (k = 1 with β = 1 is the standard Ornstein–Uhlenbeck process).
        stiffness: f64,
    },
    /// slope · x (one slope per axis)
    Linear {
        /// The constant force −∇V is −slope; one entry per axis.
        slope: Vec<f64>,
    },
    /// Σ_i x_i⁴ / 4
    Quartic,
    /// Σ_i (x_i² − 1)² / 4
    DoubleWell,
    /// Given cell values V_K (one per active cell).
    Cells {
        /// V_K, one value per active cell in cell order.
        values: Vec<f64>,
    },
}

impl Potential {
    /// The quadratic well stiffness · |x − center|² / 2 ([`Potential::Quadratic`]).
    ///
    /// ```rust
    /// use jko_core::Potential;
    ///
    /// let well = Potential::quadratic(vec![0.5, 0.5], 2.0);
    /// assert_eq!(well, Potential::Quadratic { center: vec![0.5, 0.5], stiffness: 2.0 });
    /// ```
    pub fn quadratic(center: Vec<f64>, stiffness: f64) -> Potential {
        Potential::Quadratic { center, stiffness }
    }

    /// Cell values V_K = V(x_K) on a mesh (for `Cells`, the given values).
    ///
    /// # Errors
    /// [`InputError::ShapeMismatch`] when `center` or `slope` does not have one entry per axis,
    /// or `Cells` does not have one value per cell; [`InputError::NonFinite`] when a value is
    /// not finite.
    ///
    /// ```rust
    /// use jko_core::{InputError, Mesh, Potential};
    /// use ndarray::array;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[2], &[-1.0], &[1.0])?; // centres ±1/2
    /// let quadratic = Potential::Quadratic { center: vec![0.5], stiffness: 2.0 };
    /// assert_eq!(quadratic.on_mesh(&mesh)?, array![1.0, 0.0]);
    /// let wrong = Potential::Linear { slope: vec![1.0, 1.0] };
    /// assert!(matches!(wrong.on_mesh(&mesh), Err(InputError::ShapeMismatch { .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub fn on_mesh(&self, mesh: &Mesh) -> Result<Array1<f64>, InputError> {
        let d = mesh.dim();
        let dims = |what: &str, len: usize| -> Result<(), InputError> {
            if len != d {
                return Err(InputError::ShapeMismatch {
                    what: format!("potential `{what}`"),
                    expected: format!("{d} entries (mesh dimension)"),
                    found: len.to_string(),
                });
            }
            Ok(())
        };
        let values = match self {
            Potential::Quadratic { center, stiffness } => {
                dims("center", center.len())?;
                mesh.sample(|x| {
                    0.5 * stiffness
                        * x.iter()
                            .zip(center)
                            .map(|(a, c)| (a - c) * (a - c))
                            .sum::<f64>()
                })
            }
            Potential::Linear { slope } => {
                dims("slope", slope.len())?;
                mesh.sample(|x| x.iter().zip(slope).map(|(a, s)| a * s).sum())
            }
            Potential::Quartic => mesh.sample(|x| x.iter().map(|a| a.powi(4) / 4.0).sum()),
            Potential::DoubleWell => {
                mesh.sample(|x| x.iter().map(|a| (a * a - 1.0).powi(2) / 4.0).sum())
            }
            Potential::Cells { values } => {
                if values.len() != mesh.n_cells() {
                    return Err(InputError::ShapeMismatch {
                        what: "potential cell values".into(),
                        expected: format!("{} (active cells)", mesh.n_cells()),
                        found: values.len().to_string(),
                    });
                }
                Array1::from(values.clone())
            }
        };
        check_finite("potential", values.as_slice().unwrap_or(&[]))?;
        Ok(values)
    }
}

/// Interaction kernel W(z), a function of the squared distance |z|².
///
/// It enters the energy as ½ Σ_{K,L} |K||L| W(x_K − x_L) ρ_K ρ_L; inside a JKO step it is
/// frozen into the potential ([`Energy::freeze`]).
///
/// ```rust
/// use jko_core::Interaction;
///
/// let w = Interaction::Gaussian { strength: 2.0, width: 1.0 };
/// assert_eq!(w.kernel(0.0), 2.0);
/// assert_eq!(w.kernel(2.0), 2.0 * (-1.0f64).exp());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Interaction {
    /// strength · |z|² / 2 (attractive for strength > 0)
    Quadratic {
        /// Strength (finite; > 0 attracts, < 0 repels).
        strength: f64,
    },
    /// strength · exp(−|z|² / (2 width²)) (repulsive for strength > 0)
    Gaussian {
        /// Strength (finite; > 0 repels, < 0 attracts).
        strength: f64,
        /// Width (finite and > 0), in units of length.
        width: f64,
    },
}

impl Interaction {
    /// W(z) as a function of the squared distance `z2` = |z|².
    ///
    /// ```rust
    /// use jko_core::Interaction;
    ///
    /// // |z| = 3: strength · 9 / 2.
    /// assert_eq!(Interaction::Quadratic { strength: 2.0 }.kernel(9.0), 9.0);
    /// ```
    pub fn kernel(&self, z2: f64) -> f64 {
        match *self {
            Interaction::Quadratic { strength } => 0.5 * strength * z2,
            Interaction::Gaussian { strength, width } => {
                strength * (-z2 / (2.0 * width * width)).exp()
            }
        }
    }

    /// (W * ρ)_K = Σ_L |L| W(x_K − x_L) ρ_L; `rho` has one value per cell. O(N) for the
    /// quadratic kernel (through the moments of ρ), O(N²) (parallel) for the Gaussian one.
    pub(crate) fn convolve(&self, mesh: &Mesh, rho: &Array1<f64>) -> Array1<f64> {
        use rayon::prelude::*;
        let n = mesh.n_cells();
        let d = mesh.dim();
        match *self {
            // Closed form through the first two moments: O(N).
            Interaction::Quadratic { strength } => {
                let mass = mesh.mass(rho);
                let mut m1 = vec![0.0; d];
                let mut m2 = 0.0;
                for k in 0..n {
                    let w = mesh.volumes()[k] * rho[k];
                    let x = mesh.centre(k);
                    for a in 0..d {
                        m1[a] += w * x[a];
                        m2 += w * x[a] * x[a];
                    }
                }
                mesh.sample(|x| {
                    let x2: f64 = x.iter().map(|a| a * a).sum();
                    let xm: f64 = x.iter().zip(&m1).map(|(a, b)| a * b).sum();
                    0.5 * strength * (mass * x2 - 2.0 * xm + m2)
                })
            }
            Interaction::Gaussian { .. } => {
                let v: Vec<f64> = (0..n)
                    .into_par_iter()
                    .map(|k| {
                        let xk = mesh.centre(k);
                        (0..n)
                            .map(|l| {
                                let xl = mesh.centre(l);
                                let z2: f64 =
                                    xk.iter().zip(xl).map(|(a, b)| (a - b) * (a - b)).sum();
                                mesh.volumes()[l] * rho[l] * self.kernel(z2)
                            })
                            .sum()
                    })
                    .collect();
                Array1::from(v)
            }
        }
    }
}

/// The energy functional, as a user describes it (serde: unknown fields are rejected).
///
/// F(ρ) = β ∫ ρ log ρ + ∫ ρ^m/(m − 1) + ∫ V ρ + ½ ∬ W(x − y) ρ(x) ρ(y), each term present
/// when its field is `Some`, subject to ρ ≤ ρ_max when `max_density` is set. The default is
/// the zero energy. Call [`Energy::validate`] (or [`Energy::freeze`], which does) before use.
///
/// ```rust
/// use jko_core::{Energy, EnergyTerm, Interaction};
///
/// let energy = Energy {
///     porous: Some(2.0),
///     interaction: Some(Interaction::Quadratic { strength: 1.0 }),
///     ..Energy::default()
/// };
/// assert!(energy.validate().is_ok());
/// assert_eq!(energy.terms(), vec![EnergyTerm::Porous, EnergyTerm::Interaction]);
/// assert!(Energy::default().terms().is_empty());
/// ```
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Energy {
    /// β in β ∫ ρ log ρ (β > 0).
    pub entropy: Option<f64>,
    /// m in ∫ ρ^m / (m − 1) (m > 1).
    pub porous: Option<f64>,
    /// External potential V.
    pub potential: Option<Potential>,
    /// Interaction kernel W (treated semi-implicitly inside a step).
    pub interaction: Option<Interaction>,
    /// Congestion bound ρ ≤ ρ_max (crowd motion).
    pub max_density: Option<f64>,
}

/// The terms an energy can have; backends state which ones they treat
/// ([`crate::StepSolver::treats`]).
///
/// Displayed as in configs (`entropy`, `porous`, ...); the interaction is displayed as
/// `interaction (semi-implicit)`.
///
/// ```rust
/// use jko_core::EnergyTerm;
///
/// assert_eq!(EnergyTerm::MaxDensity.to_string(), "max_density");
/// assert_eq!(EnergyTerm::ALL.len(), 5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnergyTerm {
    /// β ∫ ρ log ρ.
    Entropy,
    /// ∫ ρ^m / (m − 1).
    Porous,
    /// ∫ V ρ.
    Potential,
    /// ½ ∬ W(x − y) ρ(x) ρ(y), frozen inside a step.
    Interaction,
    /// The constraint ρ ≤ ρ_max.
    MaxDensity,
}

impl EnergyTerm {
    /// Every term, in the order [`Energy::terms`] lists them.
    pub const ALL: [EnergyTerm; 5] = [
        EnergyTerm::Entropy,
        EnergyTerm::Porous,
        EnergyTerm::Potential,
        EnergyTerm::Interaction,
        EnergyTerm::MaxDensity,
    ];

    /// The terms whose flag is set, in the order of [`EnergyTerm::ALL`].
    fn present(flags: [bool; 5]) -> Vec<EnergyTerm> {
        EnergyTerm::ALL
            .into_iter()
            .zip(flags)
            .filter_map(|(term, on)| on.then_some(term))
            .collect()
    }
}

impl fmt::Display for EnergyTerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EnergyTerm::Entropy => "entropy",
            EnergyTerm::Porous => "porous",
            EnergyTerm::Potential => "potential",
            EnergyTerm::Interaction => "interaction (semi-implicit)",
            EnergyTerm::MaxDensity => "max_density",
        })
    }
}

impl Energy {
    /// β KL(ρ | e^{−V/β}/Z) up to a constant: entropy β plus potential V. Its gradient flow
    /// is the Fokker–Planck equation ∂_t ρ = β Δρ + ∇·(ρ ∇V). Not validated here.
    ///
    /// ```rust
    /// use jko_core::{Energy, EnergyTerm, Potential};
    ///
    /// let energy = Energy::fokker_planck(0.5, Potential::Quartic);
    /// assert_eq!(energy.entropy, Some(0.5));
    /// assert_eq!(energy.terms(), vec![EnergyTerm::Entropy, EnergyTerm::Potential]);
    /// ```
    pub fn fokker_planck(beta: f64, potential: Potential) -> Energy {
        Energy {
            entropy: Some(beta),
            potential: Some(potential),
            ..Energy::default()
        }
    }

    /// The Ornstein–Uhlenbeck energy in dimension `dim`: ∫ρ log ρ + ∫|x|²/2 ρ, the
    /// [Fokker–Planck](Energy::fokker_planck) energy with β = 1 and V(x) = |x|²/2. Its flow
    /// keeps Gaussians Gaussian (exact solutions in [`crate::exact`]), which makes it the
    /// standard test problem of every backend.
    ///
    /// ```rust
    /// use jko_core::{Energy, Potential};
    ///
    /// let ou = Energy::ornstein_uhlenbeck(2);
    /// assert_eq!(ou.entropy, Some(1.0));
    /// assert_eq!(ou.potential, Some(Potential::Quadratic { center: vec![0.0, 0.0], stiffness: 1.0 }));
    /// ```
    pub fn ornstein_uhlenbeck(dim: usize) -> Energy {
        Energy::fokker_planck(1.0, Potential::quadratic(vec![0.0; dim], 1.0))
    }

    /// The porous-medium energy ∫ ρ^m / (m − 1) alone. Its gradient flow is the porous medium
    /// equation ∂_t ρ = Δ(ρ^m), whose self-similar solutions are the Barenblatt profiles
    /// ([`crate::exact::Barenblatt`]). Not validated here (m > 1 is checked by
    /// [`Energy::validate`]).
    ///
    /// ```rust
    /// use jko_core::{Energy, EnergyTerm};
    ///
    /// let energy = Energy::porous_medium(2.0);
    /// assert_eq!(energy.porous, Some(2.0));
    /// assert_eq!(energy.terms(), vec![EnergyTerm::Porous]);
    /// ```
    pub fn porous_medium(m: f64) -> Energy {
        Energy {
            porous: Some(m),
            ..Energy::default()
        }
    }

    /// The crowd-motion energy ∫ V ρ under the congestion bound ρ ≤ ρ_max, without internal
    /// energy (Maury, Roudneff-Chupin and Santambrogio's model: the crowd moves down V where
    /// it is not saturated). Add an `entropy` for the diffusive variant. Not validated here.
    ///
    /// ```rust
    /// use jko_core::{Energy, EnergyTerm, Potential};
    ///
    /// let crowd = Energy::crowd_motion(Potential::quadratic(vec![0.0, 0.0], 4.0), 1.0);
    /// assert_eq!(crowd.max_density, Some(1.0));
    /// assert_eq!(crowd.terms(), vec![EnergyTerm::Potential, EnergyTerm::MaxDensity]);
    /// ```
    pub fn crowd_motion(potential: Potential, max_density: f64) -> Energy {
        Energy {
            potential: Some(potential),
            max_density: Some(max_density),
            ..Energy::default()
        }
    }

    /// Check the parameters: β finite and > 0, m finite and > 1, ρ_max finite and > 0,
    /// finite potential and kernel parameters, Gaussian width > 0. Shapes against a mesh are
    /// checked later, by [`Energy::freeze`].
    ///
    /// # Errors
    /// [`InputError::InvalidParameter`] naming the offending parameter.
    ///
    /// ```rust
    /// use jko_core::{Energy, InputError};
    ///
    /// let m_is_one = Energy { porous: Some(1.0), ..Energy::default() };
    /// match m_is_one.validate() {
    ///     Err(InputError::InvalidParameter { name, .. }) => assert_eq!(name, "porous.m"),
    ///     other => panic!("expected InvalidParameter, got {other:?}"),
    /// }
    /// assert!(Energy { entropy: Some(1.0), ..Energy::default() }.validate().is_ok());
    /// ```
    pub fn validate(&self) -> Result<(), InputError> {
        if let Some(b) = self.entropy
            && !(b.is_finite() && b > 0.0)
        {
            return Err(InputError::parameter(
                "entropy",
                b,
                "the temperature must be finite and > 0",
            ));
        }
        if let Some(m) = self.porous
            && !(m.is_finite() && m > 1.0)
        {
            return Err(InputError::parameter(
                "porous.m",
                m,
                "the porous-medium exponent must be finite and > 1 (m = 1 is the entropy)",
            ));
        }
        if let Some(r) = self.max_density {
            crate::error::finite_positive("max_density", r)?;
        }
        match &self.potential {
            Some(Potential::Quadratic { center, stiffness })
                if !stiffness.is_finite() || center.iter().any(|c| !c.is_finite()) =>
            {
                return Err(InputError::parameter(
                    "potential",
                    format!("{:?}", self.potential),
                    "non-finite parameter",
                ));
            }
            Some(Potential::Linear { slope }) if slope.iter().any(|s| !s.is_finite()) => {
                return Err(InputError::parameter(
                    "potential.slope",
                    format!("{slope:?}"),
                    "non-finite slope",
                ));
            }
            _ => {}
        }
        match self.interaction {
            Some(Interaction::Quadratic { strength }) if !strength.is_finite() => {
                return Err(InputError::parameter(
                    "interaction.strength",
                    strength,
                    "must be finite",
                ));
            }
            Some(Interaction::Gaussian { strength, width })
                if !(strength.is_finite() && width.is_finite() && width > 0.0) =>
            {
                return Err(InputError::parameter(
                    "interaction",
                    format!("strength {strength}, width {width}"),
                    "strength must be finite and width finite and > 0",
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// The terms present, in the order of [`EnergyTerm::ALL`].
    ///
    /// ```rust
    /// use jko_core::{Energy, EnergyTerm};
    ///
    /// let energy = Energy { max_density: Some(2.0), entropy: Some(1.0), ..Energy::default() };
    /// assert_eq!(energy.terms(), vec![EnergyTerm::Entropy, EnergyTerm::MaxDensity]);
    /// ```
    pub fn terms(&self) -> Vec<EnergyTerm> {
        EnergyTerm::present([
            self.entropy.is_some(),
            self.porous.is_some(),
            self.potential.is_some(),
            self.interaction.is_some(),
            self.max_density.is_some(),
        ])
    }

    /// Freeze the energy for one step from ρⁿ: cell potential V_K + (W * ρⁿ)_K.
    ///
    /// `rho_prev` holds the cell values of ρⁿ and must have one value per cell (check it with
    /// [`crate::check_density`] first). Without an interaction the result does not depend on
    /// `rho_prev`.
    ///
    /// # Errors
    /// Those of [`Energy::validate`] and of [`Potential::on_mesh`].
    ///
    /// ```rust
    /// use jko_core::{Energy, Interaction, Mesh};
    /// use ndarray::array;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Two unit cells at distance 1, W(z) = |z|²/2: (W * ρ)_K = Σ_L |L| W(x_K − x_L) ρ_L = 1/2.
    /// let mesh = Mesh::grid(&[2], &[0.0], &[2.0])?;
    /// let energy = Energy {
    ///     interaction: Some(Interaction::Quadratic { strength: 1.0 }),
    ///     ..Energy::default()
    /// };
    /// let step = energy.freeze(&mesh, &array![1.0, 1.0])?;
    /// assert!(step.interaction_frozen);
    /// let v = step.potential.ok_or("frozen potential")?;
    /// assert!(v.iter().all(|&x| (x - 0.5).abs() < 1e-14));
    /// # Ok(())
    /// # }
    /// ```
    pub fn freeze(&self, mesh: &Mesh, rho_prev: &Array1<f64>) -> Result<StepEnergy, InputError> {
        self.validate()?;
        if rho_prev.len() != mesh.n_cells() {
            return Err(InputError::ShapeMismatch {
                what: "density".into(),
                expected: format!("{} values (active cells)", mesh.n_cells()),
                found: rho_prev.len().to_string(),
            });
        }
        let mut potential = match &self.potential {
            Some(p) => Some(p.on_mesh(mesh)?),
            None => None,
        };
        if let Some(w) = &self.interaction {
            let conv = w.convolve(mesh, rho_prev);
            potential = Some(match potential {
                Some(v) => v + &conv,
                None => conv,
            });
        }
        Ok(StepEnergy {
            entropy: self.entropy,
            porous: self.porous,
            potential,
            max_density: self.max_density,
            interaction_frozen: self.interaction.is_some(),
        })
    }

    /// The full discrete energy F_h(ρ) of cell values ρ (one per cell), interaction included
    /// (not frozen): Σ_K |K| [f(ρ_K) + V_K ρ_K] + ½ Σ_{K,L} |K||L| W(x_K − x_L) ρ_K ρ_L.
    /// The bound ρ ≤ ρ_max is a constraint, not a term, and adds nothing.
    ///
    /// # Errors
    /// Those of [`Energy::freeze`].
    ///
    /// ```rust
    /// use jko_core::{Energy, Interaction, Mesh};
    /// use ndarray::array;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Two unit cells at distance 1, W(z) = |z|²/2, ρ ≡ 1: ½ · 2 · W(1) = 1/2.
    /// let mesh = Mesh::grid(&[2], &[0.0], &[2.0])?;
    /// let energy = Energy {
    ///     interaction: Some(Interaction::Quadratic { strength: 1.0 }),
    ///     ..Energy::default()
    /// };
    /// assert!((energy.value(&mesh, &array![1.0, 1.0])? - 0.5).abs() < 1e-14);
    /// # Ok(())
    /// # }
    /// ```
    pub fn value(&self, mesh: &Mesh, rho: &Array1<f64>) -> Result<f64, InputError> {
        let local = Energy {
            interaction: None,
            ..self.clone()
        }
        .freeze(mesh, rho)?
        .value(mesh, rho);
        let pair = match &self.interaction {
            Some(w) => {
                0.5 * mesh
                    .volumes()
                    .iter()
                    .zip(rho)
                    .zip(w.convolve(mesh, rho).iter())
                    .map(|((v, r), c)| v * r * c)
                    .sum::<f64>()
            }
            None => 0.0,
        };
        Ok(local + pair)
    }
}

/// The energy as one JKO step sees it: local terms and a cell potential (interaction frozen).
///
/// F_h(ρ) = Σ_K |K| [ f(ρ_K) + V_K ρ_K ], f(s) = β s log s + s^m/(m−1), subject to
/// ρ_K ≤ ρ_max. Usually built by [`Energy::freeze`], which validates the parameters;
/// [`crate::JkoStep::new`] checks the potential against the mesh.
///
/// ```rust
/// use jko_core::{Mesh, StepEnergy};
/// use ndarray::array;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::grid(&[2], &[0.0], &[2.0])?; // |K| = 1
/// let energy = StepEnergy {
///     entropy: None,
///     porous: Some(2.0),
///     potential: Some(array![0.0, 1.0]),
///     max_density: None,
///     interaction_frozen: false,
/// };
/// // ρ = (1, 2): f(1) + f(2) + V·ρ = 1 + 4 + 2.
/// assert_eq!(energy.value(&mesh, &array![1.0, 2.0]), 7.0);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct StepEnergy {
    /// Temperature β of the entropy β s log s (β > 0).
    pub entropy: Option<f64>,
    /// Exponent m of the porous-medium term s^m/(m − 1) (m > 1).
    pub porous: Option<f64>,
    /// V_K (+ (W * ρⁿ)_K when an interaction is frozen in).
    pub potential: Option<Array1<f64>>,
    /// Congestion bound ρ_max > 0 on the cell values.
    pub max_density: Option<f64>,
    /// True when `potential` contains a frozen interaction term.
    pub interaction_frozen: bool,
}

impl StepEnergy {
    /// Terms present (the frozen interaction counts as `Interaction`), in the order of
    /// [`EnergyTerm::ALL`].
    ///
    /// ```rust
    /// use jko_core::{Energy, EnergyTerm, Interaction, Mesh};
    /// use ndarray::array;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[2], &[0.0], &[1.0])?;
    /// let energy = Energy {
    ///     entropy: Some(1.0),
    ///     interaction: Some(Interaction::Quadratic { strength: 1.0 }),
    ///     ..Energy::default()
    /// };
    /// // The frozen W * ρⁿ becomes a cell potential, but the term is still named.
    /// let step = energy.freeze(&mesh, &array![1.0, 1.0])?;
    /// assert_eq!(
    ///     step.terms(),
    ///     vec![EnergyTerm::Entropy, EnergyTerm::Potential, EnergyTerm::Interaction]
    /// );
    /// # Ok(())
    /// # }
    /// ```
    pub fn terms(&self) -> Vec<EnergyTerm> {
        EnergyTerm::present([
            self.entropy.is_some(),
            self.porous.is_some(),
            self.potential.is_some(),
            self.interaction_frozen,
            self.max_density.is_some(),
        ])
    }

    /// Internal energy density f(s) = β s log s + s^m/(m−1), with 0 log 0 = 0 (s is a cell
    /// value of the density; absent terms contribute 0).
    ///
    /// ```rust
    /// use jko_core::StepEnergy;
    ///
    /// let entropy = StepEnergy {
    ///     entropy: Some(1.0),
    ///     porous: None,
    ///     potential: None,
    ///     max_density: None,
    ///     interaction_frozen: false,
    /// };
    /// assert_eq!(entropy.f(1.0), 0.0);
    /// assert_eq!(entropy.f(0.0), 0.0);
    /// // e log e = e.
    /// let e = std::f64::consts::E;
    /// assert!((entropy.f(e) - e).abs() < 1e-15);
    /// ```
    pub fn f(&self, s: f64) -> f64 {
        let mut v = 0.0;
        if let Some(b) = self.entropy
            && s > 0.0
        {
            v += b * s * s.ln();
        }
        if let Some(m) = self.porous {
            v += s.max(0.0).powf(m) / (m - 1.0);
        }
        v
    }

    /// f'(s) = β (log s + 1) + m s^{m−1}/(m−1); −∞ at s = 0 with entropy.
    ///
    /// ```rust
    /// use jko_core::StepEnergy;
    ///
    /// let both = StepEnergy {
    ///     entropy: Some(1.0),
    ///     porous: Some(2.0),
    ///     potential: None,
    ///     max_density: None,
    ///     interaction_frozen: false,
    /// };
    /// // β (log 1 + 1) + 2 · 1 = 3.
    /// assert_eq!(both.df(1.0), 3.0);
    /// assert_eq!(both.df(0.0), f64::NEG_INFINITY);
    /// ```
    pub fn df(&self, s: f64) -> f64 {
        let mut v = 0.0;
        if let Some(b) = self.entropy {
            v += b * (s.ln() + 1.0);
        }
        if let Some(m) = self.porous {
            v += m * s.max(0.0).powf(m - 1.0) / (m - 1.0);
        }
        v
    }

    /// f''(s) = β / s + m s^{m−2} (> 0 for s > 0: f is strictly convex); +∞ at s = 0 with
    /// entropy.
    ///
    /// ```rust
    /// use jko_core::StepEnergy;
    ///
    /// let both = StepEnergy {
    ///     entropy: Some(1.0),
    ///     porous: Some(2.0),
    ///     potential: None,
    ///     max_density: None,
    ///     interaction_frozen: false,
    /// };
    /// // 1/2 + 2.
    /// assert_eq!(both.d2f(2.0), 2.5);
    /// ```
    pub fn d2f(&self, s: f64) -> f64 {
        let mut v = 0.0;
        if let Some(b) = self.entropy {
            v += b / s;
        }
        if let Some(m) = self.porous {
            v += m * s.max(0.0).powf(m - 2.0);
        }
        v
    }

    /// F_h(ρ) = Σ_K |K| [ f(ρ_K) + V_K ρ_K ] of cell values ρ, the frozen interaction
    /// included through V. The bound ρ ≤ ρ_max is not checked here.
    ///
    /// # Panics
    /// If `rho` has more entries than the mesh or the potential (a validated
    /// [`crate::JkoStep`] rules this out).
    ///
    /// ```rust
    /// use jko_core::{Mesh, StepEnergy};
    /// use ndarray::array;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[2], &[0.0], &[1.0])?; // |K| = 1/2
    /// let energy = StepEnergy {
    ///     entropy: Some(2.0),
    ///     porous: None,
    ///     potential: Some(array![1.0, 3.0]),
    ///     max_density: None,
    ///     interaction_frozen: false,
    /// };
    /// // ρ ≡ 1: no entropy, ½ (1 + 3) of potential energy.
    /// assert_eq!(energy.value(&mesh, &array![1.0, 1.0]), 2.0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn value(&self, mesh: &Mesh, rho: &Array1<f64>) -> f64 {
        let vols = mesh.volumes();
        (0..rho.len())
            .map(|k| {
                let v = self.potential.as_ref().map_or(0.0, |p| p[k]);
                vols[k] * (self.f(rho[k]) + v * rho[k])
            })
            .sum()
    }

    /// First variation δF/δρ at each cell: f'(ρ_K) + V_K (per unit mass: the gradient of F_h
    /// with respect to ρ_K divided by |K|).
    ///
    /// ```rust
    /// use jko_core::StepEnergy;
    /// use ndarray::array;
    ///
    /// let energy = StepEnergy {
    ///     entropy: Some(1.0),
    ///     porous: None,
    ///     potential: Some(array![0.0, 1.0]),
    ///     max_density: None,
    ///     interaction_frozen: false,
    /// };
    /// // log 1 + 1 + V_K.
    /// assert_eq!(energy.first_variation(&array![1.0, 1.0]), array![1.0, 2.0]);
    /// ```
    pub fn first_variation(&self, rho: &Array1<f64>) -> Array1<f64> {
        Array1::from_iter(
            (0..rho.len()).map(|k| self.df(rho[k]) + self.potential.as_ref().map_or(0.0, |p| p[k])),
        )
    }
}

/// Check that every value is finite; `what` names the values in the error.
///
/// # Errors
/// [`InputError::NonFinite`] with the index and value of the first non-finite entry.
///
/// ```rust
/// use jko_core::InputError;
/// use jko_core::energy::check_finite;
///
/// assert!(check_finite("potential", &[1.0, 2.0]).is_ok());
/// assert!(matches!(
///     check_finite("potential", &[1.0, f64::NAN, f64::INFINITY]),
///     Err(InputError::NonFinite { index: 1, .. })
/// ));
/// ```
pub fn check_finite(what: &str, values: &[f64]) -> Result<(), InputError> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(InputError::NonFinite {
            what: what.to_string(),
            index: i,
            value: values[i],
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivatives_match_finite_differences() {
        let e = StepEnergy {
            entropy: Some(0.7),
            porous: Some(2.5),
            potential: None,
            max_density: None,
            interaction_frozen: false,
        };
        for &s in &[0.05, 0.5, 1.3, 4.0] {
            let h = 1e-6 * s;
            let fd1 = (e.f(s + h) - e.f(s - h)) / (2.0 * h);
            let fd2 = (e.df(s + h) - e.df(s - h)) / (2.0 * h);
            assert!((fd1 - e.df(s)).abs() < 1e-7 * (1.0 + fd1.abs()), "{s}");
            assert!((fd2 - e.d2f(s)).abs() < 1e-6 * (1.0 + fd2.abs()), "{s}");
        }
    }

    #[test]
    fn quadratic_interaction_closed_form_matches_sum() {
        let mesh = Mesh::grid(&[7, 5], &[-1.0, 0.0], &[2.0, 1.0]).unwrap();
        let rho = mesh.sample(|x| 1.0 + x[0] * x[1]);
        let w = Interaction::Quadratic { strength: 1.3 };
        let fast = w.convolve(&mesh, &rho);
        for k in 0..mesh.n_cells() {
            let direct: f64 = (0..mesh.n_cells())
                .map(|l| {
                    let z2: f64 = mesh
                        .centre(k)
                        .iter()
                        .zip(mesh.centre(l))
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum();
                    mesh.volumes()[l] * rho[l] * w.kernel(z2)
                })
                .sum();
            assert!((fast[k] - direct).abs() < 1e-12 * (1.0 + direct.abs()));
        }
    }

    #[test]
    fn invalid_parameters_are_named() {
        let e = Energy::porous_medium(1.0);
        let msg = e.validate().unwrap_err().to_string();
        assert!(msg.contains("porous"), "{msg}");
        let e = Energy {
            entropy: Some(-1.0),
            ..Energy::default()
        };
        assert!(e.validate().unwrap_err().to_string().contains("entropy"));
    }
}

//! Energies in quantile coordinates and their discretisation on a [`QuantileGrid`](crate::QuantileGrid).
//!
//! For a measure of mass M with quantile X (of ρ/M), with D_k = X_{k+1} − X_k, cell masses c_k
//! and node weights w_i (see [`crate::grid`]), the discrete energy is
//!
//! - entropy β ∫ ρ log ρ = β M ∫₀¹ log(M / X′(u)) du ≈ β M [Σ_k c_k log(c_k / D_k) + Σ_k c_k log M],
//!   exactly the entropy of the density M c_k / D_k on [X_k, X_{k+1}];
//! - porous medium ∫ ρ^m/(m−1) = M^m ∫₀¹ X′(u)^{1−m} du/(m−1) ≈ M^m/(m−1) Σ_k c_k (c_k/D_k)^{m−1};
//! - potential ∫ V ρ = M ∫₀¹ V(X(u)) du ≈ M Σ_i w_i V(X_i);
//! - interaction ½ ∬ W(x − y) ρ(x) ρ(y) ≈ ½ M² Σ_{i,j} w_i w_j W(X_i − X_j);
//! - the domain [a, b] (no-flux walls) as the constraint a ≤ X_0, X_{n−1} ≤ b; with entropy
//!   or porous medium the tail masses u_0 and 1 − u_{n−1} fill the wall cells [a, X_0] and
//!   [X_{n−1}, b], which enter the sums above like any other cell.
//!
//! Each cell term is a convex function of D_k (−log D, D^{1−m}) that blows up as D_k → 0, so
//! with entropy or porous medium the discrete problem keeps X strictly increasing by itself.
//!
//! The interaction is treated, by default, semi-implicitly as the mesh backends do
//! ([`InteractionTreatment::SemiImplicit`]): inside a step it is frozen into the potential
//! V_eff(x) = M Σ_j w_j W(x − Xⁿ_j). [`InteractionTreatment::Implicit`] keeps the full pair
//! energy for the quadratic kernel (its Hessian is diagonal minus rank one, so Newton stays
//! O(n)); the Gaussian kernel would need a dense Hessian and is refused implicitly.

use crate::grid::pairwise_sum;
use crate::potential::QuantilePotential;
use crate::state::QuantileState;
use jko_core::{Energy, EnergyTerm, InputError, Interaction, Mesh, StepError};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// How the interaction enters a step.
///
/// ```rust
/// use jko_core::{Interaction, StepError};
/// use jko_quantile::{InteractionTreatment, QuantileEnergy};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let gaussian = QuantileEnergy {
///     entropy: Some(1.0),
///     interaction: Some(Interaction::Gaussian { strength: 1.0, width: 0.5 }),
///     interaction_treatment: InteractionTreatment::Implicit,
///     ..QuantileEnergy::default()
/// };
/// // An implicit Gaussian kernel would need a dense Hessian: refused, naming the term.
/// assert!(matches!(gaussian.validate(), Err(StepError::Unsupported { .. })));
/// let frozen = QuantileEnergy { interaction_treatment: InteractionTreatment::SemiImplicit, ..gaussian };
/// assert!(frozen.validate().is_ok());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InteractionTreatment {
    /// Frozen at ρⁿ: V_eff = W * ρⁿ (first order in τ; what the mesh backends do).
    #[default]
    SemiImplicit,
    /// The full pair energy inside the step (quadratic kernel only).
    Implicit,
}

/// The energy of a quantile JKO step: entropy, porous medium, potential, interaction and
/// no-flux walls, discretised as in the module docs. The congestion bound is not treated.
///
/// ```rust
/// use jko_core::Potential;
/// use jko_quantile::{QuantileEnergy, QuantileGrid, QuantilePotential, from_gaussian};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // V = x²/2 on N(0, 1): ∫ V ρ = 1/2 (node quadrature, spectrally accurate on Gaussian nodes).
/// let energy = QuantileEnergy {
///     potential: Some(QuantilePotential::Closed(Potential::Quadratic { center: vec![0.0], stiffness: 1.0 })),
///     ..QuantileEnergy::default()
/// };
/// let state = from_gaussian(0.0, 1.0, &QuantileGrid::gaussian(61, 8.0)?, 1.0)?;
/// assert!((energy.value(&state)? - 0.5).abs() < 1e-12);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct QuantileEnergy {
    /// β in β ∫ ρ log ρ.
    pub entropy: Option<f64>,
    /// m in ∫ ρ^m/(m − 1).
    pub porous: Option<f64>,
    /// V in ∫ V ρ, evaluated at the nodes with V′ and V″.
    pub potential: Option<QuantilePotential>,
    /// W in ½ ∬ W(x − y) ρ(x) ρ(y).
    pub interaction: Option<Interaction>,
    /// Frozen at ρⁿ (default) or implicit.
    pub interaction_treatment: InteractionTreatment,
    /// No-flux walls: the measure stays in [a, b]. `None` is the whole line.
    pub domain: Option<(f64, f64)>,
}

impl QuantileEnergy {
    /// From a user energy; `Cells` potentials need the 1D mesh they live on. Congestion
    /// (`max_density`) is not treated. The result has no walls (`domain = None`) and a
    /// semi-implicit interaction.
    ///
    /// # Errors
    /// [`StepError::Input`] for invalid parameters or a `Cells` potential without a 1D mesh;
    /// [`StepError::Unsupported`] for `max_density`.
    ///
    /// ```rust
    /// use jko_core::{Energy, Potential, StepError};
    /// use jko_quantile::QuantileEnergy;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ou = QuantileEnergy::from_energy(&Energy::fokker_planck(1.0, Potential::Quartic), None)?;
    /// assert_eq!(ou.entropy, Some(1.0));
    /// assert!(ou.potential.is_some() && ou.domain.is_none());
    /// let capped = Energy { entropy: Some(1.0), max_density: Some(2.0), ..Energy::default() };
    /// assert!(matches!(QuantileEnergy::from_energy(&capped, None), Err(StepError::Unsupported { .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_energy(energy: &Energy, mesh: Option<&Mesh>) -> Result<Self, StepError> {
        energy.validate()?;
        if energy.max_density.is_some() {
            return Err(unsupported(EnergyTerm::MaxDensity, ""));
        }
        let potential = match &energy.potential {
            Some(p) => Some(QuantilePotential::from_potential(p, mesh)?),
            None => None,
        };
        Ok(QuantileEnergy {
            entropy: energy.entropy,
            porous: energy.porous,
            potential,
            interaction: energy.interaction.clone(),
            interaction_treatment: InteractionTreatment::SemiImplicit,
            domain: None,
        })
    }

    /// Check the parameters: those of [`Energy::validate`], no raw `Cells` potential, finite
    /// walls a < b, no implicit Gaussian interaction.
    ///
    /// # Errors
    /// [`StepError::Input`] naming the parameter, or [`StepError::Unsupported`] for an
    /// implicit Gaussian interaction.
    ///
    /// ```rust
    /// use jko_quantile::QuantileEnergy;
    ///
    /// let walls = QuantileEnergy { entropy: Some(1.0), domain: Some((1.0, -1.0)), ..QuantileEnergy::default() };
    /// assert!(walls.validate().is_err());
    /// assert!(QuantileEnergy { domain: Some((-1.0, 1.0)), ..walls }.validate().is_ok());
    /// ```
    pub fn validate(&self) -> Result<(), StepError> {
        Energy {
            entropy: self.entropy,
            porous: self.porous,
            potential: None,
            interaction: self.interaction.clone(),
            max_density: None,
        }
        .validate()?;
        if let Some(QuantilePotential::Closed(jko_core::Potential::Cells { .. })) = &self.potential
        {
            return Err(InputError::parameter(
                "potential",
                "cells",
                "convert cell values with QuantilePotential::from_potential (it needs the mesh)",
            )
            .into());
        }
        if let Some((a, b)) = self.domain
            && !(a.is_finite() && b.is_finite() && a < b)
        {
            return Err(InputError::parameter(
                "domain",
                format!("({a}, {b})"),
                "need finite a < b",
            )
            .into());
        }
        if self.interaction_treatment == InteractionTreatment::Implicit
            && let Some(Interaction::Gaussian { .. }) = self.interaction
        {
            return Err(unsupported(
                EnergyTerm::Interaction,
                ": an implicit Gaussian kernel needs a dense Hessian; use interaction_treatment = semi_implicit",
            ));
        }
        Ok(())
    }

    /// The discrete energy of a state (interaction in full, never frozen). +∞ outside the domain.
    ///
    /// # Errors
    /// As [`QuantileEnergy::validate`].
    ///
    /// ```rust
    /// use jko_quantile::{QuantileEnergy, QuantileGrid, from_gaussian};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Entropy of N(0, σ²): −½ ln(2πe σ²). The discrete entropy of the piecewise-constant
    /// // reconstruction is close to it on a fine grid.
    /// let energy = QuantileEnergy { entropy: Some(1.0), ..QuantileEnergy::default() };
    /// let state = from_gaussian(0.0, 0.5, &QuantileGrid::gaussian(201, 8.0)?, 1.0)?;
    /// let exact = -0.5 * (2.0 * std::f64::consts::PI * std::f64::consts::E * 0.25).ln();
    /// assert!((energy.value(&state)? - exact).abs() < 1e-3);
    /// let outside = QuantileEnergy { domain: Some((-1.0, 1.0)), ..energy };
    /// assert_eq!(outside.value(&state)?, f64::INFINITY); // nodes reach ±4
    /// # Ok(())
    /// # }
    /// ```
    pub fn value(&self, state: &QuantileState) -> Result<f64, StepError> {
        self.validate()?;
        let m = state.mass;
        let (w, c, x) = (state.grid.weights(), state.grid.cell_masses(), &state.x);
        if let Some((a, b)) = self.domain
            && (x[0] < a || x[x.len() - 1] > b)
        {
            return Ok(f64::INFINITY);
        }
        let cells = CellTerms::new(self, m);
        let mut local: Vec<f64> = c
            .iter()
            .zip(x.windows(2))
            .map(|(&c, p)| cells.value(c, p[1] - p[0]))
            .collect();
        let mut tail = 0.0;
        if let (Some((a, b)), true) = (self.domain, cells.is_barrier()) {
            // The wall cells of the step (see `newton`): the tail masses between walls and end nodes.
            let n = x.len();
            let (cl, cr) = (
                state.grid.levels()[0],
                state.grid.level_complements()[n - 1],
            );
            local.push(cells.value(cl, x[0] - a));
            local.push(cells.value(cr, b - x[n - 1]));
            tail = cl + cr;
        }
        let mut e = m * (pairwise_sum(&local) + cells.beta * (pairwise_sum(c) + tail) * m.ln());
        if let Some(p) = &self.potential {
            let v: Vec<f64> = w.iter().zip(x).map(|(w, &x)| w * p.eval(x)[0]).collect();
            e += m * pairwise_sum(&v);
        }
        if let Some(k) = &self.interaction {
            let pair: f64 = match *k {
                Interaction::Quadratic { strength } => {
                    let s0 = pairwise_sum(w);
                    let wx: Vec<f64> = w.iter().zip(x).map(|(w, x)| w * x).collect();
                    let s1 = pairwise_sum(&wx);
                    let wxx: Vec<f64> = wx.iter().zip(x).map(|(a, x)| a * x).collect();
                    0.5 * strength * (s0 * pairwise_sum(&wxx) - s1 * s1)
                }
                Interaction::Gaussian { .. } => x
                    .par_iter()
                    .zip(w)
                    .map(|(&xi, &wi)| {
                        wi * x
                            .iter()
                            .zip(w)
                            .map(|(&xj, &wj)| wj * k.kernel((xi - xj) * (xi - xj)))
                            .sum::<f64>()
                    })
                    .sum::<f64>(),
            };
            e += 0.5 * m * m * pair;
        }
        Ok(e)
    }
}

pub(crate) fn unsupported(term: EnergyTerm, hint: &str) -> StepError {
    StepError::Unsupported {
        solver: "quantile".into(),
        term,
        hint: hint.to_string(),
    }
}

/// Per-unit-mass cell term φ(D) = β c log(c/D) + κ c (c/D)^{m−1}, κ = M^{m−1}/(m−1).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CellTerms {
    pub beta: f64,
    /// (m, κ)
    pub porous: Option<(f64, f64)>,
}

impl CellTerms {
    pub fn new(energy: &QuantileEnergy, mass: f64) -> Self {
        CellTerms {
            beta: energy.entropy.unwrap_or(0.0),
            porous: energy.porous.map(|m| (m, mass.powf(m - 1.0) / (m - 1.0))),
        }
    }

    pub fn value(&self, c: f64, d: f64) -> f64 {
        let q = c / d;
        let mut v = 0.0;
        if self.beta != 0.0 {
            v += self.beta * c * q.ln();
        }
        if let Some((m, k)) = self.porous {
            v += k * c * q.powf(m - 1.0);
        }
        v
    }

    /// (φ′(D), φ″(D)) with q = c/D: φ′ = −βq − κ(m−1)q^m, φ″ = [βq + κ m(m−1) q^m]/D.
    /// Whether the cell terms blow up as a cell closes (entropy or porous medium present).
    pub fn is_barrier(&self) -> bool {
        self.beta > 0.0 || self.porous.is_some()
    }

    pub fn derivatives(&self, c: f64, d: f64) -> (f64, f64) {
        let q = c / d;
        let (mut d1, mut d2) = (-self.beta * q, self.beta * q);
        if let Some((m, k)) = self.porous {
            let qm = q.powf(m);
            d1 -= k * (m - 1.0) * qm;
            d2 += k * m * (m - 1.0) * qm;
        }
        (d1, d2 / d)
    }
}

//! Energies F(ρ) = ∫ f(ρ) + V ρ + ½ ∬ W(x − y) ρ(x) ρ(y), with an optional bound ρ ≤ ρ_max.
//!
//! Discretised on a mesh (DESIGN §1):
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

use crate::error::InputError;
use crate::mesh::Mesh;
use ndarray::Array1;
use serde::{Deserialize, Serialize};
use std::fmt;

/// External potential V(x).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Potential {
    /// stiffness · |x − center|² / 2
    Quadratic { center: Vec<f64>, stiffness: f64 },
    /// slope · x (one slope per axis)
    Linear { slope: Vec<f64> },
    /// Σ_i x_i⁴ / 4
    Quartic,
    /// Σ_i (x_i² − 1)² / 4
    DoubleWell,
    /// Given cell values V_K (one per active cell).
    Cells { values: Vec<f64> },
}

impl Potential {
    /// Cell values V_K on a mesh.
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

/// Interaction kernel W(z).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Interaction {
    /// strength · |z|² / 2 (attractive for strength > 0)
    Quadratic { strength: f64 },
    /// strength · exp(−|z|² / (2 width²)) (repulsive for strength > 0)
    Gaussian { strength: f64, width: f64 },
}

impl Interaction {
    pub fn kernel(&self, z2: f64) -> f64 {
        match *self {
            Interaction::Quadratic { strength } => 0.5 * strength * z2,
            Interaction::Gaussian { strength, width } => {
                strength * (-z2 / (2.0 * width * width)).exp()
            }
        }
    }

    /// (W * ρ)_K = Σ_L |L| W(x_K − x_L) ρ_L.
    pub fn convolve(&self, mesh: &Mesh, rho: &Array1<f64>) -> Array1<f64> {
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

/// The energy functional, as a user describes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Energy {
    /// β in β ∫ ρ log ρ (β > 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entropy: Option<f64>,
    /// m in ∫ ρ^m / (m − 1) (m > 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub porous: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub potential: Option<Potential>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interaction: Option<Interaction>,
    /// Congestion bound ρ ≤ ρ_max (crowd motion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_density: Option<f64>,
}

/// The terms an energy can have; backends state which ones they treat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnergyTerm {
    Entropy,
    Porous,
    Potential,
    Interaction,
    MaxDensity,
}

impl EnergyTerm {
    pub const ALL: [EnergyTerm; 5] = [
        EnergyTerm::Entropy,
        EnergyTerm::Porous,
        EnergyTerm::Potential,
        EnergyTerm::Interaction,
        EnergyTerm::MaxDensity,
    ];
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
    /// β KL(ρ | e^{−V/β}/Z) up to a constant: entropy β plus potential V.
    pub fn fokker_planck(beta: f64, potential: Potential) -> Energy {
        Energy {
            entropy: Some(beta),
            potential: Some(potential),
            ..Energy::default()
        }
    }

    /// Check the parameters (β > 0, m > 1, ρ_max > 0, finite kernel parameters).
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
        if let Some(r) = self.max_density
            && !(r.is_finite() && r > 0.0)
        {
            return Err(InputError::parameter(
                "max_density",
                r,
                "must be finite and > 0",
            ));
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

    /// The terms present.
    pub fn terms(&self) -> Vec<EnergyTerm> {
        let mut t = Vec::new();
        if self.entropy.is_some() {
            t.push(EnergyTerm::Entropy);
        }
        if self.porous.is_some() {
            t.push(EnergyTerm::Porous);
        }
        if self.potential.is_some() {
            t.push(EnergyTerm::Potential);
        }
        if self.interaction.is_some() {
            t.push(EnergyTerm::Interaction);
        }
        if self.max_density.is_some() {
            t.push(EnergyTerm::MaxDensity);
        }
        t
    }

    /// Freeze the energy for one step from ρⁿ: cell potential V_K + (W * ρⁿ)_K.
    pub fn freeze(&self, mesh: &Mesh, rho_prev: &Array1<f64>) -> Result<StepEnergy, InputError> {
        self.validate()?;
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

    /// The full discrete energy F_h(ρ), interaction included (not frozen).
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
#[derive(Debug, Clone, PartialEq)]
pub struct StepEnergy {
    pub entropy: Option<f64>,
    pub porous: Option<f64>,
    /// V_K (+ (W * ρⁿ)_K when an interaction is frozen in).
    pub potential: Option<Array1<f64>>,
    pub max_density: Option<f64>,
    /// True when `potential` contains a frozen interaction term.
    pub interaction_frozen: bool,
}

impl StepEnergy {
    /// Terms present (the frozen interaction counts as `Interaction`).
    pub fn terms(&self) -> Vec<EnergyTerm> {
        let mut t = Vec::new();
        if self.entropy.is_some() {
            t.push(EnergyTerm::Entropy);
        }
        if self.porous.is_some() {
            t.push(EnergyTerm::Porous);
        }
        if self.potential.is_some() {
            t.push(EnergyTerm::Potential);
        }
        if self.interaction_frozen {
            t.push(EnergyTerm::Interaction);
        }
        if self.max_density.is_some() {
            t.push(EnergyTerm::MaxDensity);
        }
        t
    }

    /// Internal energy density f(s) = β s log s + s^m/(m−1), with 0 log 0 = 0.
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

    /// f'(s) = β (log s + 1) + m s^{m−1}/(m−1).
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

    /// f''(s) = β / s + m s^{m−2}.
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

    /// F_h(ρ) = Σ_K |K| [ f(ρ_K) + V_K ρ_K ].
    pub fn value(&self, mesh: &Mesh, rho: &Array1<f64>) -> f64 {
        let vols = mesh.volumes();
        (0..rho.len())
            .map(|k| {
                let v = self.potential.as_ref().map_or(0.0, |p| p[k]);
                vols[k] * (self.f(rho[k]) + v * rho[k])
            })
            .sum()
    }

    /// First variation δF/δρ at each cell: f'(ρ_K) + V_K.
    pub fn first_variation(&self, rho: &Array1<f64>) -> Array1<f64> {
        Array1::from_iter(
            (0..rho.len()).map(|k| self.df(rho[k]) + self.potential.as_ref().map_or(0.0, |p| p[k])),
        )
    }
}

/// Error on the first non-finite entry.
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
        let e = Energy {
            porous: Some(1.0),
            ..Energy::default()
        };
        let msg = e.validate().unwrap_err().to_string();
        assert!(msg.contains("porous"), "{msg}");
        let e = Energy {
            entropy: Some(-1.0),
            ..Energy::default()
        };
        assert!(e.validate().unwrap_err().to_string().contains("entropy"));
    }
}

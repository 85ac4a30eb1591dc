//! JKO-Flow on a two-point-flux mesh: the resummed flow of J^η as an index-1 DAE in
//! (y, ζ), y = log(ρ + ρ*) (corrected flow under the entropy) or y = ρ, integrated by a linearly implicit Rosenbrock method whose four
//! stages share one sparse factorisation.
//!
//! The derivation is in the crate documentation ([`crate`], §1–§5; docs/mathematics.md §2.4). In short, with
//! Scharfetter–Gummel face fluxes F_σ and the drift potential W = V + ζ:
//!
//!   ρ̇_K = R_K(ρ, ζ) = −(1/|K|) Σ_{σ∋K} ±F_σ(ρ, V + ζ),
//!   0   = G_K(ρ, ζ) = ζ_K + (η/4) g²_K(ρ) − η f''(ρ_K) [b R_K(ρ, ζ) + (½ − b) R_K(ρ, 0)],
//!
//! g²_K = (1/(2|K|)) Σ_{σ∋K} T_σ (ψ_L − ψ_K)² the cell value of |∇ψ|², ψ = f'(ρ) + V. The
//! unknowns are interleaved per cell, (y_K, ζ_K); the Jacobian has the mesh graph's pattern
//! with 2×2 blocks (block-tridiagonal on a 1D chain).

use crate::flux::{Pressure, face_flux, linear_coefficients, linear_flux};
use crate::linear::{BlockTridiagonal, SparseLlt, SparseLu};
use crate::rosenbrock::Tableau;
use crate::{FlowError, Variant};
use jko_core::{EnergyTerm, InputError, Mesh, StepEnergy, check_density};
use ndarray::Array1;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Below this many cells the cell and face loops stay sequential.
const PAR_MIN: usize = 4096;

/// (0..n).map(f), in parallel (rayon) from [`PAR_MIN`] items on.
fn par_map<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
    if n >= PAR_MIN {
        (0..n).into_par_iter().with_min_len(1024).map(f).collect()
    } else {
        (0..n).map(f).collect()
    }
}

/// b of the resummed variant: the linearised rates −λ(1 + (b − ½)ηλ)/(1 + bηλ) agree with
/// the J^η flow's −λ + (η/2)λ² to O(η²λ³) and stay diffusive (−λ(b − ½)/b = −λ/6) at high
/// frequency, where b = ½ saturates at −2/η and lets the nonlinear terms steepen the tails
/// (crate docs: the choice of b, with measurements).
pub const RESUMMATION: f64 = 0.6;

/// Largest local error of log(ρ + ρ*) in any cell per substep: a safeguard of the tails, where
/// the mass-weighted norm does not look (a substep may not move a cell's density by more than
/// a factor e), not an accuracy control (0.1 held every OU 2D 64² step at τ = 0.1 to substeps of
/// τ/4–τ/3 because of cells far below any mass that matters; crate docs §4).
const LOG_TOL: f64 = 1.0;

/// Work and diagnostics of one integration.
///
/// ```rust
/// use jko_core::{Energy, Mesh};
/// use jko_flow::{MeshFlow, Variant};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::grid(&[8], &[0.0], &[1.0])?;
/// let rho = mesh.sample(|x| 1.0 + 0.5 * (std::f64::consts::PI * x[0]).cos());
/// let energy = Energy { entropy: Some(1.0), ..Energy::default() }.freeze(&mesh, &rho)?;
/// let flow = MeshFlow::new(&mesh, &energy, 0.01, Variant::Resummed)?;
/// let (_, stats) = flow.integrate(&rho, 0.01)?;
/// assert!(stats.substeps > 0 && stats.evaluations >= 4 * stats.substeps);
/// assert!(stats.mass_drift.abs() < 1e-12 && stats.max_error <= 1.0);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowStats {
    /// Accepted Rosenbrock substeps.
    pub substeps: usize,
    /// Rejected substeps (error too large, a non-finite stage, or negative mass above the
    /// tolerance).
    pub rejected: usize,
    /// Evaluations of the DAE right-hand side.
    pub evaluations: usize,
    /// Sparse LU factorisations (one per attempted substep, plus the consistent start).
    pub factorizations: usize,
    /// Largest η·λ_max seen (the `modified` variant's stability measure; 0 otherwise).
    pub max_eta_lambda: f64,
    /// Benamou–Brenier action of the path, t_end ∫₀^{t_end} ‖u̇‖² dt (trapezoidal in the
    /// substeps; ‖u̇‖² = Σ_σ F_σ (φ_K − φ_L), φ = f'(ρ) + V + ζ).
    pub kinetic: f64,
    /// Relative mass change.
    pub mass_drift: f64,
    /// Mass of the negative round-off values set to zero (relative to the mass), summed.
    pub clipped_mass: f64,
    /// Last accepted substep.
    pub last_dt: f64,
    /// Largest accepted local error estimate, in units of the tolerance (≤ 1).
    pub max_error: f64,
}

/// The JKO-Flow integrator for one energy on one mesh, with step η and a [`Variant`].
///
/// The public fields tune the integration: `rtol` (default 1e-4) bounds the local error of each
/// substep in L1 relative to the mass, `max_substeps` (default 1000) the attempted substeps,
/// `floor` (default 1e-150 with entropy, 1e-6 without) the relative density below which the
/// η-correction sees a
/// regularised density (see the crate docs).
///
/// ```rust
/// use jko_core::{Energy, Mesh};
/// use jko_flow::{MeshFlow, Variant};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::grid(&[8], &[0.0], &[1.0])?;
/// let rho = mesh.sample(|x| 1.0 + 0.5 * (std::f64::consts::PI * x[0]).cos());
/// let energy = Energy { entropy: Some(1.0), ..Energy::default() }.freeze(&mesh, &rho)?;
/// let flow = MeshFlow::new(&mesh, &energy, 0.01, Variant::Resummed)?;
/// // The flow conserves mass, keeps ρ > 0 and decreases J_h.
/// let (next, _) = flow.integrate(&rho, 0.01)?;
/// assert!((mesh.mass(&next) - mesh.mass(&rho)).abs() < 1e-12);
/// assert!(next.iter().all(|&r| r > 0.0));
/// assert!(flow.energy(&next) < flow.energy(&rho));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MeshFlow<'a> {
    mesh: &'a Mesh,
    energy: &'a StepEnergy,
    eta: f64,
    variant: Variant,
    /// T_σ per face.
    trans: Vec<f64>,
    pressure: Pressure,
    /// V_K (0 without a potential).
    potential: Vec<f64>,
    /// Per face, T_σ × [`linear_coefficients`] at w = V_L − V_K: the fluxes without ζ are
    /// linear in ρ with fixed coefficients when the diffusivity is (entropy alone), so
    /// R(ρ, 0) needs no exponential after construction. None with a porous medium.
    plain: Option<Vec<[f64; 4]>>,
    /// Local error tolerance of a substep: L1 norm of the error estimate over rtol · mass.
    pub rtol: f64,
    /// Largest number of attempted substeps per integration.
    pub max_substeps: usize,
    /// ρ* = floor · max ρ⁰: the η-correction uses f'(ρ + ρ*), f''(ρ + ρ*); the corrected
    /// flow under the entropy integrates y = log(ρ + ρ*).
    pub floor: f64,
}

/// Face fluxes and their derivatives at one state.
struct FaceFluxes {
    /// (F/T, ∂/∂ρ_k, ∂/∂ρ_l, ∂/∂w) per face, times T_σ.
    d: Vec<[f64; 4]>,
}

/// One evaluation of the DAE at (ρ, ζ).
struct Evaluation {
    rate: Vec<f64>,
    algebraic: Vec<f64>,
}

/// The density scale ρ* of one integration (floor × max ρ⁰) and the state variable: the
/// η-correction sees ρ̃ = ρ + ρ* (> 0 for every state); the integrated variable is
/// y = log(ρ + ρ*) where densities grow by orders of magnitude within a step (the corrected
/// flow under the entropy: Gaussian tails), and y = ρ otherwise (porous media without entropy,
/// the plain flow). A cell that a porous front or the plain flow fills from vacuum grows
/// linearly in time, ρ ≈ c t, whose logarithm log(c t + ρ*) has curvature c²/ρ*² at the start:
/// in the log variable every such cell forced substeps of ~ρ*/c (measured: the "more than 1000
/// substeps" failures of porous fronts and of steps from vacuum).
struct Scale {
    rho_floor: f64,
    /// y = log(ρ + ρ*) (true) or y = ρ.
    log: bool,
}

impl Scale {
    /// y(ρ).
    fn to_y(&self, rho: f64) -> f64 {
        if self.log {
            (rho + self.rho_floor).ln()
        } else {
            rho
        }
    }

    /// ρ(y) (negative values possible in the linear variable; clipped on acceptance).
    fn to_rho(&self, y: f64) -> f64 {
        if self.log {
            y.exp() - self.rho_floor
        } else {
            y
        }
    }

    /// dρ/dy at ρ.
    fn slope(&self, rho: f64) -> f64 {
        if self.log { rho + self.rho_floor } else { 1.0 }
    }
}

/// The parts of the algebraic equation G that depend on ρ alone (fixed while the consistent
/// start iterates on ζ).
struct FrozenParts {
    /// f''(ρ̃).
    c: Vec<f64>,
    /// g² = |∇ψ|² per cell.
    g2: Vec<f64>,
    /// R(ρ, 0).
    r0: Vec<f64>,
}

/// Per-cell quantities of the η-correction.
struct Cells {
    /// ψ = f'(ρ̃) + V.
    psi: Vec<f64>,
    /// f''(ρ̃).
    c: Vec<f64>,
    /// f'''(ρ̃).
    dc: Vec<f64>,
}

impl<'a> MeshFlow<'a> {
    /// Check the energy (entropy, porous medium, potential — a frozen interaction counts as a
    /// potential; no congestion bound) and η ≥ 0.
    ///
    /// # Errors
    /// [`FlowError::Unsupported`] for `max_density`; [`FlowError::Input`] for η < 0 or a
    /// potential of the wrong length.
    ///
    /// ```rust
    /// use jko_core::{Energy, Mesh};
    /// use jko_flow::{FlowError, MeshFlow, Variant};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[4], &[0.0], &[1.0])?;
    /// let rho = mesh.sample(|_| 1.0);
    /// let capped = Energy { entropy: Some(1.0), max_density: Some(2.0), ..Energy::default() }.freeze(&mesh, &rho)?;
    /// assert!(matches!(MeshFlow::new(&mesh, &capped, 0.1, Variant::Resummed), Err(FlowError::Unsupported { .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(
        mesh: &'a Mesh,
        energy: &'a StepEnergy,
        eta: f64,
        variant: Variant,
    ) -> Result<Self, FlowError> {
        if let Some(term) = energy
            .terms()
            .into_iter()
            .find(|t| *t == EnergyTerm::MaxDensity)
        {
            return Err(FlowError::Unsupported {
                term,
                reason: "the congestion bound rho <= rho_max has no smooth gradient flow",
            });
        }
        if !(eta.is_finite() && eta >= 0.0) {
            return Err(InputError::parameter("eta", eta, "must be finite and >= 0").into());
        }
        let potential = match &energy.potential {
            Some(v) if v.len() != mesh.n_cells() => {
                return Err(InputError::ShapeMismatch {
                    what: "cell potential".into(),
                    expected: mesh.n_cells().to_string(),
                    found: v.len().to_string(),
                }
                .into());
            }
            Some(v) => v.to_vec(),
            None => vec![0.0; mesh.n_cells()],
        };
        let trans: Vec<f64> = mesh.faces().iter().map(|f| f.transmissibility()).collect();
        let pressure = Pressure {
            beta: energy.entropy.unwrap_or(0.0),
            m: energy.porous,
        };
        let plain = mesh
            .faces()
            .iter()
            .zip(&trans)
            .map(|(f, t)| {
                linear_coefficients(&pressure, potential[f.l] - potential[f.k])
                    .map(|c| c.map(|v| t * v))
            })
            .collect();
        Ok(MeshFlow {
            mesh,
            energy,
            eta,
            variant,
            trans,
            pressure,
            potential,
            plain,
            rtol: 1e-4,
            max_substeps: 1000,
            floor: if energy.entropy.is_some() {
                1e-150
            } else {
                1e-6
            },
        })
    }

    fn scale(&self, rho0: &[f64]) -> Scale {
        let max = rho0.iter().cloned().fold(0.0, f64::max);
        Scale {
            rho_floor: (self.floor * max).max(f64::MIN_POSITIVE),
            log: self.energy.entropy.is_some() && self.corrected(),
        }
    }

    fn has_internal(&self) -> bool {
        self.energy.entropy.is_some() || self.energy.porous.is_some()
    }

    /// f'(s̃), f''(s̃), f'''(s̃) at s̃ = s + ρ* (> 0 for the states of an integration).
    fn internal(&self, s: f64, rho_floor: f64) -> (f64, f64, f64) {
        let s = (s + rho_floor).max(rho_floor);
        let (mut d1, mut d2, mut d3) = (0.0, 0.0, 0.0);
        if let Some(b) = self.energy.entropy {
            d1 += b * (s.ln() + 1.0);
            d2 += b / s;
            d3 -= b / (s * s);
        }
        if let Some(m) = self.energy.porous {
            d1 += m / (m - 1.0) * s.powf(m - 1.0);
            d2 += m * s.powf(m - 2.0);
            d3 += m * (m - 2.0) * s.powf(m - 3.0);
        }
        (d1, d2, d3)
    }

    fn cells(&self, rho: &[f64], rho_floor: f64) -> Cells {
        let n = rho.len();
        let one = |k: usize| {
            let (d1, d2, d3) = self.internal(rho[k], rho_floor);
            (d1 + self.potential[k], d2, d3)
        };
        let v: Vec<(f64, f64, f64)> = par_map(n, one);
        Cells {
            psi: v.iter().map(|x| x.0).collect(),
            c: v.iter().map(|x| x.1).collect(),
            dc: v.iter().map(|x| x.2).collect(),
        }
    }

    /// Fluxes with drift potential W = V + ζ (ζ = None: W = V).
    fn fluxes(&self, rho: &[f64], zeta: Option<&[f64]>) -> FaceFluxes {
        let faces = self.mesh.faces();
        if let (None, Some(plain)) = (zeta, &self.plain) {
            let one = |s: usize| {
                let f = &faces[s];
                let (v, dk, dl, dw) = linear_flux(&plain[s], rho[f.k], rho[f.l]);
                [v, dk, dl, dw]
            };
            return FaceFluxes {
                d: par_map(faces.len(), one),
            };
        }
        let pot = |k: usize| self.potential[k] + zeta.map_or(0.0, |z| z[k]);
        let one = |s: usize| {
            let f = &faces[s];
            let t = self.trans[s];
            let (v, dk, dl, dw) =
                face_flux(&self.pressure, rho[f.k], rho[f.l], pot(f.l) - pot(f.k));
            [t * v, t * dk, t * dl, t * dw]
        };
        FaceFluxes {
            d: par_map(faces.len(), one),
        }
    }

    /// Per cell K, `finish(Σ_{σ∋K} term(K, σ), |K|)` (in parallel on large meshes).
    fn per_cell(
        &self,
        term: impl Fn(usize, usize) -> f64 + Sync + Send,
        finish: impl Fn(f64, f64) -> f64 + Sync + Send,
    ) -> Vec<f64> {
        let vols = self.mesh.volumes();
        par_map(self.mesh.n_cells(), |k| {
            let sum: f64 = self.mesh.faces_of(k).iter().map(|&s| term(k, s)).sum();
            finish(sum, vols[k])
        })
    }

    /// R_K = −(1/|K|) Σ ±F_σ.
    fn rates(&self, fl: &FaceFluxes) -> Vec<f64> {
        let faces = self.mesh.faces();
        self.per_cell(
            |k, s| {
                if faces[s].k == k {
                    fl.d[s][0]
                } else {
                    -fl.d[s][0]
                }
            },
            |out, vol| -out / vol,
        )
    }

    /// g²_K = (1/(2|K|)) Σ_{σ∋K} T_σ (ψ_L − ψ_K)².
    fn gradient_squared(&self, psi: &[f64]) -> Vec<f64> {
        let faces = self.mesh.faces();
        debug_assert_eq!(psi.len(), self.mesh.n_cells());
        self.per_cell(
            |_, s| self.trans[s] * (psi[faces[s].l] - psi[faces[s].k]).powi(2),
            |s2, vol| 0.5 * s2 / vol,
        )
    }

    /// Whether the η-correction is on (ζ ≠ 0).
    fn corrected(&self) -> bool {
        self.eta > 0.0 && self.variant != Variant::Plain
    }

    /// The weight b of the implicit rate in G = ζ + (η/4) g² − bη f'' R(ρ, ζ) − (½ − b)η f''
    /// R(ρ, 0): 0 for the modified flow, [`RESUMMATION`] for the resummed one.
    fn implicit_weight(&self) -> f64 {
        match self.variant {
            Variant::Modified => 0.0,
            _ => RESUMMATION,
        }
    }

    fn evaluate(&self, rho: &[f64], zeta: &[f64], fz: &Scale) -> Evaluation {
        let rate = self.rates(&self.fluxes(rho, Some(zeta)));
        let algebraic = if !self.corrected() {
            zeta.to_vec()
        } else {
            self.algebraic(zeta, &rate, &self.frozen_parts(rho, fz))
        };
        Evaluation { rate, algebraic }
    }

    /// The parts of G that depend on ρ alone: f''(ρ̃), g², R(ρ, 0) (one flux sweep without ζ).
    fn frozen_parts(&self, rho: &[f64], fz: &Scale) -> FrozenParts {
        let cells = self.cells(rho, fz.rho_floor);
        FrozenParts {
            g2: self.gradient_squared(&cells.psi),
            c: cells.c,
            r0: self.rates(&self.fluxes(rho, None)),
        }
    }

    /// G = ζ + (η/4) g² − η f'' [b R(ρ, ζ) + (½ − b) R(ρ, 0)] from R(ρ, ζ) and the ρ-parts.
    fn algebraic(&self, zeta: &[f64], rate: &[f64], fr: &FrozenParts) -> Vec<f64> {
        let b = self.implicit_weight();
        (0..zeta.len())
            .map(|k| {
                zeta[k] + 0.25 * self.eta * fr.g2[k]
                    - self.eta * fr.c[k] * (b * rate[k] + (0.5 - b) * fr.r0[k])
            })
            .collect()
    }

    /// ‖u̇‖² = Σ_σ F_σ (φ_K − φ_L), φ = f'(ρ̃) + V + ζ.
    fn speed_squared(&self, rho: &[f64], zeta: &[f64], rho_floor: f64) -> f64 {
        let fl = self.fluxes(rho, Some(zeta));
        let cells = self.cells(rho, rho_floor);
        self.mesh
            .faces()
            .iter()
            .zip(&fl.d)
            .map(|(f, d)| d[0] * (cells.psi[f.k] + zeta[f.k] - cells.psi[f.l] - zeta[f.l]))
            .sum()
    }

    /// Gershgorin bound of D^{½} L D^{½} (D = f''(ρ)/|K|, L the arithmetic-mean weighted graph
    /// Laplacian) at ρ: the largest rate of the linearised flow; the `modified` variant is
    /// well posed only while η·λ_max < 2. 0 without entropy or porous medium.
    ///
    /// ```rust
    /// use jko_core::{Energy, Mesh};
    /// use jko_flow::{MeshFlow, Variant};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Entropy β on a uniform 1D grid, constant ρ: exactly 4β/h² (interior cells).
    /// let mesh = Mesh::grid(&[8], &[0.0], &[1.0])?;
    /// let rho = mesh.sample(|_| 3.0);
    /// let energy = Energy { entropy: Some(0.5), ..Energy::default() }.freeze(&mesh, &rho)?;
    /// let flow = MeshFlow::new(&mesh, &energy, 0.01, Variant::Modified)?;
    /// assert!((flow.lambda_max(rho.as_slice().unwrap()) - 4.0 * 0.5 * 64.0).abs() < 1e-10);
    /// # Ok(())
    /// # }
    /// ```
    pub fn lambda_max(&self, rho: &[f64]) -> f64 {
        if !self.has_internal() {
            return 0.0;
        }
        let faces = self.mesh.faces();
        let vols = self.mesh.volumes();
        let d = |k: usize| self.energy.d2f(rho[k]) / vols[k];
        let row = |k: usize| {
            let dk = d(k);
            self.mesh
                .faces_of(k)
                .iter()
                .map(|&s| {
                    let f = &faces[s];
                    let other = if f.k == k { f.l } else { f.k };
                    self.trans[s] * 0.5 * (rho[f.k] + rho[f.l]) * (dk + (dk * d(other)).sqrt())
                })
                .sum::<f64>()
        };
        let m = (0..rho.len()).map(row).fold(0.0, f64::max);
        if m.is_finite() { m } else { f64::INFINITY }
    }

    /// J_h(ρ) = Σ_K |K| [f(ρ_K) + V_K ρ_K], as [`jko_core::StepEnergy::value`].
    ///
    /// ```rust
    /// use jko_core::{Energy, Mesh};
    /// use jko_flow::{MeshFlow, Variant};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[8], &[0.0], &[1.0])?;
    /// let rho = mesh.sample(|x| 1.0 + 0.5 * (std::f64::consts::PI * x[0]).cos());
    /// let energy = Energy { entropy: Some(1.0), ..Energy::default() }.freeze(&mesh, &rho)?;
    /// let flow = MeshFlow::new(&mesh, &energy, 0.01, Variant::Resummed)?;
    /// assert_eq!(flow.energy(&rho), energy.value(&mesh, &rho));
    /// # Ok(())
    /// # }
    /// ```
    pub fn energy(&self, rho: &Array1<f64>) -> f64 {
        self.energy.value(self.mesh, rho)
    }

    /// Discrete Fisher information Φ(ρ) = |grad J_h|² = Σ_σ F_σ (ψ_K − ψ_L) (plain fluxes,
    /// ψ = f'(ρ) + V): the dissipation rate of J_h along its gradient flow, ≥ 0.
    ///
    /// ```rust
    /// use jko_core::{Energy, Mesh, Potential};
    /// use jko_flow::{MeshFlow, Variant};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Zero exactly at the discrete Gibbs state ρ_K ∝ e^{−V_K/β}, where ψ is constant.
    /// let mesh = Mesh::grid(&[8], &[-1.0], &[1.0])?;
    /// let gibbs = mesh.sample(|x| (-x[0] * x[0]).exp());
    /// let fp = Energy::fokker_planck(1.0, Potential::Quadratic { center: vec![0.0], stiffness: 2.0 });
    /// let energy = fp.freeze(&mesh, &gibbs)?;
    /// let flow = MeshFlow::new(&mesh, &energy, 0.1, Variant::Resummed)?;
    /// assert!(flow.fisher_information(&gibbs) < 1e-25);
    /// assert!(flow.fisher_information(&mesh.sample(|_| 1.0)) > 0.1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn fisher_information(&self, rho: &Array1<f64>) -> f64 {
        let r = rho.to_vec();
        let zero = vec![0.0; r.len()];
        self.speed_squared(&r, &zero, 0.0)
    }

    /// J^η_h(ρ) = J_h − (η/4) Φ.
    ///
    /// ```rust
    /// use jko_core::{Energy, Mesh};
    /// use jko_flow::{MeshFlow, Variant};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[8], &[0.0], &[1.0])?;
    /// let rho = mesh.sample(|x| 1.0 + 0.5 * (std::f64::consts::PI * x[0]).cos());
    /// let energy = Energy { entropy: Some(1.0), ..Energy::default() }.freeze(&mesh, &rho)?;
    /// let flow = MeshFlow::new(&mesh, &energy, 0.01, Variant::Resummed)?;
    /// let expected = flow.energy(&rho) - 0.25 * 0.01 * flow.fisher_information(&rho);
    /// assert_eq!(flow.modified_energy(&rho), expected);
    /// # Ok(())
    /// # }
    /// ```
    pub fn modified_energy(&self, rho: &Array1<f64>) -> f64 {
        self.energy(rho) - 0.25 * self.eta * self.fisher_information(rho)
    }

    /// ρ̇ of the chosen variant at ρ (ζ solved from the algebraic equation by Newton's method).
    ///
    /// # Errors
    /// [`FlowError::Inadmissible`] for a density of the wrong length, non-finite or negative;
    /// [`FlowError::Linear`] when the algebraic equation cannot be solved.
    ///
    /// ```rust
    /// use jko_core::{Energy, Mesh};
    /// use jko_flow::{MeshFlow, Variant};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[8], &[0.0], &[1.0])?;
    /// let rho = mesh.sample(|x| 1.0 + 0.5 * (std::f64::consts::PI * x[0]).cos());
    /// let energy = Energy { entropy: Some(1.0), ..Energy::default() }.freeze(&mesh, &rho)?;
    /// let flow = MeshFlow::new(&mesh, &energy, 0.01, Variant::Resummed)?;
    /// let rho_dot = flow.velocity(&rho)?;
    /// // Mass conservation: Σ_K |K| ρ̇_K = 0.
    /// assert!(mesh.mass(&rho_dot).abs() < 1e-12);
    /// assert!(flow.velocity(&mesh.sample(|_| -1.0)).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn velocity(&self, rho: &Array1<f64>) -> Result<Array1<f64>, FlowError> {
        let r = rho.to_vec();
        if r.len() != self.mesh.n_cells() || r.iter().any(|v| !(v.is_finite() && *v >= 0.0)) {
            return Err(FlowError::Inadmissible {
                reason: "density of the wrong length, non-finite or negative".into(),
            });
        }
        let fz = self.scale(&r);
        let mut ws = Workspace::new(self.mesh)?;
        let (zeta, _) = self.consistent_correction(&r, None, &mut ws.llt, &fz)?;
        Ok(Array1::from(self.evaluate(&r, &zeta, &fz).rate))
    }

    /// Fill W = M/(hγ) − J at (ρ, ζ) (`shift` = 1/(hγ)); `shift` = None: the ρ rows are the
    /// identity (Newton on the algebraic equation alone).
    fn assemble(
        &self,
        rho: &[f64],
        zeta: &[f64],
        fz: &Scale,
        shift: Option<f64>,
        sys: &mut BlockSystem,
    ) {
        let rho_floor = fz.rho_floor;
        let faces = self.mesh.faces();
        let vols = self.mesh.volumes();
        let fl = self.fluxes(rho, Some(zeta));
        let rate = self.rates(&fl);
        let corrected = self.corrected();
        let b = self.implicit_weight();
        let (cells, plain) = if corrected {
            let cells = self.cells(rho, rho_floor);
            let p = self.fluxes(rho, None);
            let r = self.rates(&p);
            (Some(cells), Some((p, r)))
        } else {
            (None, None)
        };
        let quarter_eta = 0.25 * self.eta;
        sys.clear();
        let n = rho.len();
        // dρ/dy: ρ + ρ* for y = log(ρ + ρ*), 1 for y = ρ.
        let rt = |k: usize| fz.slope(rho[k]);
        let mut other = [0usize; 16];
        for k in 0..n {
            let fk = self.mesh.faces_of(k);
            let inv_vol = 1.0 / vols[k];
            // Jacobian of R_K (the density rate): entries (stencil j, variable b), b = 0: ρ, 1: ζ.
            let mut jr = [[0.0f64; 2]; 16];
            let mut jr_plain = [[0.0f64; 2]; 16];
            let stencil = fk.len() + 1;
            debug_assert!(stencil <= 16);
            other[0] = k;
            for (j, &s) in fk.iter().enumerate() {
                let f = &faces[s];
                other[j + 1] = if f.k == k { f.l } else { f.k };
                let sign = if f.k == k { -inv_vol } else { inv_vol };
                let d = &fl.d[s];
                // ∂F/∂ρ_own, ∂F/∂ρ_other; w = ζ_l − ζ_k + V_l − V_k.
                let (d_own, d_other) = if f.k == k { (d[1], d[2]) } else { (d[2], d[1]) };
                let dw_own = if f.k == k { -d[3] } else { d[3] };
                jr[0][0] += sign * d_own;
                jr[j + 1][0] += sign * d_other;
                jr[0][1] += sign * dw_own;
                jr[j + 1][1] -= sign * dw_own;
                if let Some((p, _)) = &plain {
                    let d = &p.d[s];
                    let (d_own, d_other) = if f.k == k { (d[1], d[2]) } else { (d[2], d[1]) };
                    jr_plain[0][0] += sign * d_own;
                    jr_plain[j + 1][0] += sign * d_other;
                }
            }
            // y row: ẏ_K = R_K / ρ̃_K.
            let rk = rt(k);
            for j in 0..stencil {
                let (a, b) = match shift {
                    Some(sh) => {
                        let mut a = -jr[j][0] * rt(other[j]) / rk;
                        if j == 0 {
                            // ẏ = R/ρ̃ in the log variable: ∂(1/ρ̃)/∂y = −1/ρ̃.
                            a += sh + if fz.log { rate[k] / rk } else { 0.0 };
                        }
                        (a, -jr[j][1] / rk)
                    }
                    None => (if j == 0 { 1.0 } else { 0.0 }, 0.0),
                };
                sys.add(k, j, 0, a);
                sys.add(k, j, 1, b);
            }
            // ζ row: −∂G.
            match &cells {
                Some(cells) => {
                    let ck = cells.c[k];
                    // ∂g²_K/∂ρ: own and neighbours.
                    let mut dg = [0.0f64; 16];
                    for (j, &s) in fk.iter().enumerate() {
                        let l = other[j + 1];
                        let t = self.trans[s] * inv_vol;
                        let diff = cells.psi[l] - cells.psi[k];
                        dg[0] -= t * diff * ck;
                        dg[j + 1] += t * diff * cells.c[l];
                    }
                    let r0 = plain.as_ref().map_or(0.0, |(_, r)| r[k]);
                    let (wb, w0) = (self.eta * b, self.eta * (0.5 - b));
                    // G = ζ − C, C = −(η/4) g² + η f''(b R + (½ − b) R₀).
                    let r = wb * rate[k] + w0 * r0;
                    for j in 0..stencil {
                        let mut g_rho =
                            quarter_eta * dg[j] - ck * (wb * jr[j][0] + w0 * jr_plain[j][0]);
                        if j == 0 && r != 0.0 {
                            g_rho -= cells.dc[k] * r;
                        }
                        let mut g_zeta = -wb * ck * jr[j][1];
                        if j == 0 {
                            g_zeta += 1.0;
                        }
                        sys.add(k, j, 2, -g_rho * rt(other[j]));
                        sys.add(k, j, 3, -g_zeta);
                    }
                }
                None => {
                    sys.add(k, 0, 3, -1.0);
                }
            }
        }
    }

    /// ζ with G(ρ, ζ) = 0 by Newton's method from `guess` (or 0): each step solves the
    /// symmetric positive definite system (V/f''(ρ̃) + bη L_ω) δζ = −(V/f''(ρ̃)) G, L_ω the graph
    /// Laplacian of the face weights ω = −∂F/∂w > 0 (G_ζ = I + bη f'' V⁻¹ L_ω), in at most 8
    /// steps; returns ζ and the number of factorisations. Converged when max |G| ≤ ε (1 + max |ζ|),
    /// ε = `consistency_tolerance`: checked before each factorisation, so a guess that
    /// is already consistent (a warm start) costs none. Since (D + L)⁻¹D, D positive diagonal
    /// and L a graph Laplacian, has ∞-norm ≤ 1, the next Newton correction would be at most
    /// max |G| — the same test on ζ's change.
    fn consistent_correction(
        &self,
        rho: &[f64],
        guess: Option<&[f64]>,
        llt: &mut SparseLlt,
        fz: &Scale,
    ) -> Result<(Vec<f64>, usize), FlowError> {
        let n = rho.len();
        let mut zeta = match guess {
            Some(g) if g.len() == n && g.iter().all(|v| v.is_finite()) => g.to_vec(),
            _ => vec![0.0; n],
        };
        if !self.corrected() {
            return Ok((vec![0.0; n], 0));
        }
        if !self.has_internal() {
            // f'' = 0: G = ζ + (η/4) g² is explicit in ζ.
            let g = self.evaluate(rho, &vec![0.0; n], fz).algebraic;
            return Ok((g.iter().map(|v| -v).collect(), 0));
        }
        let faces = self.mesh.faces();
        let vols = self.mesh.volumes();
        let fr = self.frozen_parts(rho, fz);
        let d = &fr.c;
        let weight = self.eta * self.implicit_weight();
        let tol = self.consistency_tolerance();
        for it in 0..8 {
            let fl = self.fluxes(rho, Some(&zeta));
            let g = self.algebraic(&zeta, &self.rates(&fl), &fr);
            let gmax = g.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            let zmax = zeta.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            if gmax <= tol * (1.0 + zmax) {
                return Ok((zeta, it));
            }
            llt.values.iter_mut().for_each(|v| *v = 0.0);
            for k in 0..n {
                if let Some(p) = llt.position(k, k) {
                    llt.values[p] += vols[k] / d[k];
                }
            }
            if weight > 0.0 {
                for (f, d) in faces.iter().zip(&fl.d) {
                    let w = weight * (-d[3]).max(0.0);
                    for (r, c, v) in [(f.k, f.k, w), (f.l, f.l, w), (f.l, f.k, -w)] {
                        if let Some(p) = llt.position(r, c) {
                            llt.values[p] += v;
                        }
                    }
                }
            }
            llt.factorise()
                .map_err(|message| FlowError::Linear { t: 0.0, message })?;
            let mut rhs: Vec<f64> = (0..n).map(|k| -vols[k] / d[k] * g[k]).collect();
            if !llt.solve(&mut rhs) {
                return Err(FlowError::Linear {
                    t: 0.0,
                    message: "non-finite correction potential at the start".into(),
                });
            }
            for (z, d) in zeta.iter_mut().zip(&rhs) {
                *z += d;
            }
        }
        Ok((zeta, 8))
    }

    /// ε of the consistent start ([`MeshFlow::consistent_correction`]): 10⁻³ rtol within
    /// [10⁻¹², 10⁻⁶] — an algebraic residual far below the substep's local error tolerance (the
    /// linearly implicit stages also see it and correct it to first order).
    fn consistency_tolerance(&self) -> f64 {
        (1e-3 * self.rtol).clamp(1e-12, 1e-6)
    }

    /// What this flow integrates beyond the mesh (a continued run must match it).
    fn signature(&self) -> Signature {
        Signature {
            potential: self.potential.clone(),
            eta: self.eta,
            variant: self.variant,
            floor: self.floor,
            rtol: self.rtol,
        }
    }

    /// Integrate the chosen flow from ρ over a time `t`.
    ///
    /// # Errors
    /// [`FlowError::Input`] for an invalid density or t; [`FlowError::StabilityLimit`]
    /// (modified variant, η·λ_max ≥ 2); [`FlowError::TooManySubsteps`] and
    /// [`FlowError::StepSizeUnderflow`] (each naming the time reached and the cell and quantity
    /// that stopped the step); [`FlowError::Linear`].
    ///
    /// ```rust
    /// use jko_core::{Energy, Mesh};
    /// use jko_flow::{MeshFlow, Variant};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // The modified variant refuses η·λ_max ≥ 2 (here 0.1 · 256 = 25.6); the resummed one runs.
    /// let mesh = Mesh::grid(&[8], &[0.0], &[1.0])?;
    /// let rho = mesh.sample(|x| 1.0 + 0.5 * (std::f64::consts::PI * x[0]).cos());
    /// let energy = Energy { entropy: Some(1.0), ..Energy::default() }.freeze(&mesh, &rho)?;
    /// let modified = MeshFlow::new(&mesh, &energy, 0.1, Variant::Modified)?;
    /// assert!(matches!(modified.integrate(&rho, 0.1), Err(jko_flow::FlowError::StabilityLimit { .. })));
    /// let resummed = MeshFlow::new(&mesh, &energy, 0.1, Variant::Resummed)?;
    /// let (next, _) = resummed.integrate(&rho, 0.1)?;
    /// assert!((mesh.mass(&next) - mesh.mass(&rho)).abs() < 1e-12);
    /// # Ok(())
    /// # }
    /// ```
    pub fn integrate(
        &self,
        rho: &Array1<f64>,
        t: f64,
    ) -> Result<(Array1<f64>, FlowStats), FlowError> {
        let mut ws = Workspace::new(self.mesh)?;
        self.integrate_with(rho, t, &mut ws)
    }

    /// As [`MeshFlow::integrate`], with a [`Workspace`] kept between calls on the same mesh: the
    /// symbolic factorisations, the last correction potential (the next start's Newton guess),
    /// the last substep and the last stage-matrix factorisation are reused (a Rosenbrock-W
    /// method keeps its order with a Jacobian from an earlier state; a rejected substep with a
    /// reused factorisation is retried with a fresh one before the substep shrinks).
    pub(crate) fn integrate_with(
        &self,
        rho: &Array1<f64>,
        t: f64,
        ws: &mut Workspace,
    ) -> Result<(Array1<f64>, FlowStats), FlowError> {
        check_density(self.mesh, rho, "density")?;
        if !(t.is_finite() && t >= 0.0) {
            return Err(InputError::parameter("t", t, "must be finite and >= 0").into());
        }
        if !ws.fits(self.mesh) {
            *ws = Workspace::new(self.mesh)?;
        }
        let continued = ws.continues(rho.as_slice().unwrap_or(&rho.to_vec()));
        if !continued {
            ws.zeta = None;
            ws.h_hint = None;
            ws.factor_h = None;
        }
        // The next step of the same run on the same problem (potential, η, variant, floor)
        // continues the last integration: its end state (ρ, ζ) and path speed are this
        // integration's start, as they would be within one longer integration, where substeps
        // follow each other without a consistent-ζ projection (the linearly implicit stages
        // correct the algebraic residual).
        let signature = self.signature();
        let resumed = continued && ws.signature.as_ref() == Some(&signature);
        let n = rho.len();
        let rho0: Vec<f64> = rho.to_vec();
        let mut stats = FlowStats::default();
        if self.variant == Variant::Modified && self.eta > 0.0 {
            let lambda = self.lambda_max(&rho0);
            let product = self.eta * lambda;
            if product >= 2.0 {
                return Err(FlowError::StabilityLimit {
                    eta: self.eta,
                    lambda_max: lambda,
                    product,
                });
            }
            stats.max_eta_lambda = product;
        }
        let mass0 = self.mesh.mass(rho);
        if t == 0.0 || mass0 == 0.0 {
            return Ok((rho.clone(), stats));
        }
        let fz = self.scale(&rho0);
        let rc = fz.rho_floor;
        let (mut zeta, resumed_speed) = match (&ws.zeta, ws.speed) {
            (Some(z), Some(speed)) if resumed => (z.clone(), Some(speed)),
            _ => {
                let (zeta, f0) =
                    self.consistent_correction(&rho0, ws.zeta.as_deref(), &mut ws.llt, &fz)?;
                stats.factorizations += f0;
                (zeta, None)
            }
        };
        let tab = Tableau::ros34pw2();
        let vols = self.mesh.volumes();
        let mass = |r: &[f64]| -> f64 { r.iter().zip(vols).map(|(a, b)| a * b).sum() };
        let mut rho_now = rho0;
        let mut y: Vec<f64> = rho_now.iter().map(|&r| fz.to_y(r)).collect();
        let mut time = 0.0;
        // Substeps tile the interval (h = remaining / k), so an accepted h can be kept and its
        // factorisation reused.
        let hint = ws.h_hint.filter(|h| *h > 0.0).unwrap_or(t);
        let mut h = tile(t, hint);
        let mut next_hint = h;
        let mut attempts = 0usize;
        let mut speed0 = resumed_speed.unwrap_or_else(|| self.speed_squared(&rho_now, &zeta, rc));
        let mut action = 0.0;
        let mut u = vec![vec![0.0; 2 * n]; tab.stages];
        let mut stage_rho = vec![0.0; n];
        let mut stage_zeta = vec![0.0; n];
        let tol_mass = self.rtol * mass0;
        let mut fresh = false;
        while t - time > 1e-12 * t {
            if attempts >= self.max_substeps {
                return Err(FlowError::TooManySubsteps {
                    max: self.max_substeps,
                    t_reached: time,
                    t_end: t,
                });
            }
            attempts += 1;
            h = h.min(t - time);
            let shift = 1.0 / (h * tab.gamma);
            if ws.factor_h != Some(h) {
                self.assemble(&rho_now, &zeta, &fz, Some(shift), &mut ws.sys);
                stats.factorizations += 1;
                if let Err(message) = ws.sys.factorise() {
                    ws.factor_h = None;
                    return Err(FlowError::Linear { t: time, message });
                }
                ws.factor_h = Some(h);
                fresh = true;
            }
            let mut ok = true;
            for i in 0..tab.stages {
                for k in 0..n {
                    let (mut yk, mut z) = (y[k], zeta[k]);
                    for (a, uj) in tab.a[i].iter().zip(&u).take(i) {
                        yk += a * uj[2 * k];
                        z += a * uj[2 * k + 1];
                    }
                    stage_rho[k] = fz.to_rho(yk);
                    stage_zeta[k] = z;
                }
                let ev = self.evaluate(&stage_rho, &stage_zeta, &fz);
                stats.evaluations += 1;
                let (done, rest) = u.split_at_mut(i);
                let ui = &mut rest[0];
                for k in 0..n {
                    let mut r = ev.rate[k] / fz.slope(stage_rho[k]);
                    for (j, uj) in done.iter().enumerate() {
                        r += tab.c[i][j] / h * uj[2 * k];
                    }
                    ui[2 * k] = r;
                    ui[2 * k + 1] = ev.algebraic[k];
                }
                if !ws.sys.solve(ui) {
                    ok = false;
                    break;
                }
            }
            // The candidate and its error estimate: the mass-weighted L1 norm of the error of
            // log(ρ + ρ*), the mass defect (the logarithmic variable does not conserve mass
            // exactly), and the largest log error in any cell (relative accuracy in the tails).
            let mut err = 0.0;
            let mut err_log = 0.0f64;
            let mut worst = (0.0f64, 0usize);
            let mut new_y = vec![0.0; n];
            let mut new_zeta = vec![0.0; n];
            let mut new_rho = vec![0.0; n];
            if ok {
                for k in 0..n {
                    let (mut yk, mut z, mut e) = (y[k], zeta[k], 0.0);
                    for ((m, e_j), uj) in tab.m.iter().zip(&tab.e).zip(&u).take(tab.stages) {
                        yk += m * uj[2 * k];
                        z += m * uj[2 * k + 1];
                        e += e_j * uj[2 * k];
                    }
                    new_y[k] = yk;
                    new_zeta[k] = z;
                    new_rho[k] = fz.to_rho(yk).max(0.0);
                    let ek = vols[k] * fz.slope(new_rho[k]).max(fz.slope(rho_now[k])) * e.abs();
                    err += ek;
                    if fz.log && new_rho[k].max(rho_now[k]) >= rc {
                        err_log = err_log.max(e.abs());
                    }
                    if ek > worst.0 {
                        worst = (ek, k);
                    }
                }
                ok = new_y.iter().chain(&new_zeta).all(|v| v.is_finite());
            }
            let defect = if ok { mass(&new_rho) - mass0 } else { 0.0 };
            let err_norm = if ok {
                ((err + defect.abs()) / tol_mass).max(err_log / LOG_TOL)
            } else {
                f64::INFINITY
            };
            let accept = ok && err_norm <= 1.0;
            let factor = if !ok {
                0.25
            } else if err_norm == 0.0 {
                5.0
            } else {
                (0.9 * err_norm.powf(-1.0 / (tab.embedded_order as f64 + 1.0))).clamp(0.2, 5.0)
            };
            if accept {
                let m = mass(&new_rho);
                for r in new_rho.iter_mut() {
                    *r *= mass0 / m;
                }
                stats.clipped_mass += (m - mass0).abs() / mass0;
                y = new_rho.iter().map(|&r| fz.to_y(r)).collect();
                rho_now = new_rho;
                zeta = new_zeta;
                time += h;
                let speed1 = self.speed_squared(&rho_now, &zeta, rc);
                action += 0.5 * h * (speed0 + speed1);
                speed0 = speed1;
                stats.substeps += 1;
                stats.last_dt = h;
                stats.max_error = stats.max_error.max(err_norm);
                // The next integration starts from h (its factorisation reusable) unless the
                // error allows a much larger substep.
                next_hint = if factor > 1.5 { h * factor } else { h };
                // Keep h (and its factorisation) unless the error allows a much larger one.
                let remaining = t - time;
                if factor > 1.5 && remaining > 1e-12 * t {
                    h = tile(remaining, h * factor);
                }
            } else {
                stats.rejected += 1;
                if !fresh {
                    // The factorisation came from an earlier state: retry with a fresh one.
                    ws.factor_h = None;
                    continue;
                }
                if h <= 1e-10 * t {
                    let reason = if !ok {
                        format!("a stage produced non-finite values near cell {}", worst.1)
                    } else {
                        format!(
                            "local error {err_norm:.3e} of the tolerance, largest at cell {} (density {:.3e})",
                            worst.1, new_rho[worst.1]
                        )
                    };
                    return Err(FlowError::StepSizeUnderflow {
                        t: time,
                        dt: h,
                        reason,
                    });
                }
                let remaining = t - time;
                h = remaining / (remaining / (h * factor) - 1e-9).ceil().max(1.0);
            }
            fresh = false;
        }
        ws.zeta = Some(zeta);
        ws.h_hint = Some(next_hint.min(t));
        ws.last = Some(rho_now.clone());
        ws.speed = Some(speed0);
        ws.signature = Some(signature);
        let out = Array1::from(rho_now);
        stats.kinetic = t * action;
        stats.mass_drift = (self.mesh.mass(&out) - mass0) / mass0;
        Ok((out, stats))
    }
}

/// Largest ratio of a substep to the step-size controller's proposal (which already carries
/// the safety factor 0.9): substeps tile the remaining time, h = remaining / k, and k is the
/// fewest substeps of at most `TILE_SLACK` × the proposal. Each change of h costs a
/// factorisation, so rounding a proposal of 0.85 τ down to τ/2 cost two substeps and a second
/// factorisation one step later (OU 2D 64², τ = 0.1: steps 1 and 2 of every run; with the slack
/// step 1 takes h = τ at once and is accepted). A substep that is too long is rejected by its
/// error estimate like any other.
const TILE_SLACK: f64 = 1.2;

/// The substep that tiles `remaining` with the fewest substeps of at most
/// [`TILE_SLACK`] × `proposal`.
fn tile(remaining: f64, proposal: f64) -> f64 {
    remaining / (remaining / (TILE_SLACK * proposal) - 1e-9).ceil().max(1.0)
}

/// The connectivity the workspace's sparsity patterns were built for: cells and the (K, L) of
/// every face. (Counts and Σ T_σ were not enough: a 12 × 4 grid and its 4 × 12 transpose agree
/// on them, and a solver that stepped on one reused the other's patterns — found by the
/// transpose symmetry of tests/integration/properties.rs.)
type MeshKey = (usize, Vec<(usize, usize)>);

/// Scratch kept between integrations on one mesh (see [`MeshFlow::integrate_with`]).
pub(crate) struct Workspace {
    /// The mesh connectivity the workspace was built for.
    key: MeshKey,
    sys: BlockSystem,
    llt: SparseLlt,
    zeta: Option<Vec<f64>>,
    h_hint: Option<f64>,
    /// The substep of the current stage-matrix factorisation.
    factor_h: Option<f64>,
    /// The density the last integration ended at: the state above (ζ, substep, factorisation)
    /// is reused only by an integration that starts there (the next step of the same run), so
    /// a step's result does not depend on unrelated earlier solves on the same mesh (found by
    /// the mirror-symmetry property of tests/integration/properties.rs: the image of a step,
    /// solved after the step itself, started from the step's factorisation and substep).
    last: Option<Vec<f64>>,
    /// ‖u̇‖² at the end of the last integration.
    speed: Option<f64>,
    /// What the last integration integrated ([`MeshFlow::signature`]).
    signature: Option<Signature>,
}

/// The flow an integration follows, beyond the mesh: potential, η, variant, floor, tolerance.
#[derive(Debug, Clone, PartialEq)]
struct Signature {
    potential: Vec<f64>,
    eta: f64,
    variant: Variant,
    floor: f64,
    rtol: f64,
}

impl Workspace {
    pub(crate) fn new(mesh: &Mesh) -> Result<Self, FlowError> {
        let n = mesh.n_cells();
        let faces = mesh.faces();
        let mut col_ptr = vec![0usize];
        let mut row_idx = Vec::new();
        for j in 0..n {
            let mut rows: Vec<usize> = std::iter::once(j)
                .chain(mesh.faces_of(j).iter().map(|&s| {
                    let f = &faces[s];
                    if f.k == j { f.l } else { f.k }
                }))
                .filter(|&r| r >= j)
                .collect();
            rows.sort_unstable();
            rows.dedup();
            row_idx.extend(rows);
            col_ptr.push(row_idx.len());
        }
        let llt = SparseLlt::new(n, col_ptr, row_idx)
            .map_err(|message| FlowError::Linear { t: 0.0, message })?;
        Ok(Workspace {
            key: Self::key_of(mesh),
            sys: BlockSystem::new(mesh)?,
            llt,
            zeta: None,
            h_hint: None,
            factor_h: None,
            last: None,
            speed: None,
            signature: None,
        })
    }

    fn key_of(mesh: &Mesh) -> MeshKey {
        (
            mesh.n_cells(),
            mesh.faces().iter().map(|f| (f.k, f.l)).collect(),
        )
    }

    fn fits(&self, mesh: &Mesh) -> bool {
        self.key == Self::key_of(mesh)
    }

    /// Whether `rho` is (to 1e-12 of its maximum) where the last integration ended.
    fn continues(&self, rho: &[f64]) -> bool {
        let Some(last) = &self.last else {
            return false;
        };
        let scale = rho.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        last.len() == rho.len()
            && rho
                .iter()
                .zip(last)
                .all(|(a, b)| (a - b).abs() <= 1e-12 * scale)
    }
}

/// The 2n × 2n stage matrix (unknowns (y_K, ζ_K) interleaved) with the mesh graph's 2×2 blocks:
/// a sparse LU in general, block elimination on a 1D chain of cells.
struct BlockSystem {
    kind: Kind,
    /// Start of cell K's entries in `slots`, one per stencil entry (K, then the cell across each
    /// of `faces_of(K)`).
    start: Vec<usize>,
    /// General: value positions of (y_K, y_L), (y_K, ζ_L), (ζ_K, y_L), (ζ_K, ζ_L); chain: the
    /// block slot (0 lower, 1 diagonal, 2 upper) in the first entry.
    slots: Vec<[usize; 4]>,
}

enum Kind {
    General(Box<SparseLu>),
    Chain(BlockTridiagonal),
}

impl BlockSystem {
    fn new(mesh: &Mesh) -> Result<Self, FlowError> {
        let n = mesh.n_cells();
        let faces = mesh.faces();
        let stencil = |k: usize| -> Vec<usize> {
            std::iter::once(k)
                .chain(mesh.faces_of(k).iter().map(|&s| {
                    let f = &faces[s];
                    if f.k == k { f.l } else { f.k }
                }))
                .collect()
        };
        let chain = faces.len() + 1 == n
            && faces
                .iter()
                .enumerate()
                .all(|(i, f)| f.k == i && f.l == i + 1);
        let mut start = Vec::with_capacity(n + 1);
        let mut slots = Vec::new();
        start.push(0);
        if chain {
            for k in 0..n {
                for l in stencil(k) {
                    let slot = if l + 1 == k {
                        0
                    } else if l == k {
                        1
                    } else {
                        2
                    };
                    slots.push([slot, 0, 0, 0]);
                }
                start.push(slots.len());
            }
            return Ok(BlockSystem {
                kind: Kind::Chain(BlockTridiagonal::new(n)),
                start,
                slots,
            });
        }
        let mut col_ptr = Vec::with_capacity(2 * n + 1);
        let mut row_idx = Vec::new();
        col_ptr.push(0);
        for l in 0..n {
            let mut cells = stencil(l);
            cells.sort_unstable();
            for _b in 0..2 {
                for &k in &cells {
                    row_idx.push(2 * k);
                    row_idx.push(2 * k + 1);
                }
                col_ptr.push(row_idx.len());
            }
        }
        let lu = SparseLu::new(2 * n, col_ptr, row_idx)
            .map_err(|message| FlowError::Linear { t: 0.0, message })?;
        for k in 0..n {
            for l in stencil(k) {
                let p = |r: usize, c: usize| lu.position(r, c).unwrap_or(0);
                slots.push([
                    p(2 * k, 2 * l),
                    p(2 * k, 2 * l + 1),
                    p(2 * k + 1, 2 * l),
                    p(2 * k + 1, 2 * l + 1),
                ]);
            }
            start.push(slots.len());
        }
        Ok(BlockSystem {
            kind: Kind::General(Box::new(lu)),
            start,
            slots,
        })
    }

    fn clear(&mut self) {
        match &mut self.kind {
            Kind::General(lu) => lu.values.iter_mut().for_each(|v| *v = 0.0),
            Kind::Chain(bt) => bt.blocks.iter_mut().for_each(|b| *b = [[0.0; 4]; 3]),
        }
    }

    /// Add `v` to entry `ab` (0: (y, y), 1: (y, ζ), 2: (ζ, y), 3: (ζ, ζ)) of the block of cell
    /// K and its `j`-th stencil cell.
    fn add(&mut self, k: usize, j: usize, ab: usize, v: f64) {
        let slot = self.slots[self.start[k] + j];
        match &mut self.kind {
            Kind::General(lu) => lu.values[slot[ab]] += v,
            Kind::Chain(bt) => bt.blocks[k][slot[0]][ab] += v,
        }
    }

    fn factorise(&mut self) -> Result<(), String> {
        match &mut self.kind {
            Kind::General(lu) => lu.factorise(),
            Kind::Chain(bt) => bt.factorise(),
        }
    }

    fn solve(&mut self, rhs: &mut [f64]) -> bool {
        match &mut self.kind {
            Kind::General(lu) => lu.solve(rhs),
            Kind::Chain(bt) => bt.solve(rhs),
        }
    }

    /// Entry (row, col) of the interleaved 2n × 2n matrix (tests).
    #[cfg(test)]
    fn entry(&self, row: usize, col: usize) -> f64 {
        let (k, l) = (row / 2, col / 2);
        let ab = 2 * (row % 2) + col % 2;
        match &self.kind {
            Kind::General(lu) => lu.position(row, col).map_or(0.0, |p| lu.values[p]),
            Kind::Chain(bt) => {
                if l + 1 == k {
                    bt.blocks[k][0][ab]
                } else if l == k {
                    bt.blocks[k][1][ab]
                } else if l == k + 1 {
                    bt.blocks[k][2][ab]
                } else {
                    0.0
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;

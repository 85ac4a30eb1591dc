//! JKO-Flow on a mesh: the gradient flow of the discrete modified energy J^η_h in the
//! two-point-flux geometry of the proximal backends (docs/mathematics.md §2.1, §2.4).
//!
//! **Geometry.** Masses u_K = |K| ρ_K. The Onsager operator is the weighted graph Laplacian
//! L(ρ) = Σ_σ T_σ θ_σ(ρ) (e_K − e_L)(e_K − e_L)ᵀ, θ_σ = (ρ_K + ρ_L)/2, and the gradient flow of
//! J_h(ρ) = Σ_K |K| [f(ρ_K) + V_K ρ_K] is u̇ = −L ψ, ψ_K = ∂J_h/∂u_K = f'(ρ_K) + V_K (the
//! continuity equation of the one-step scheme with flux G_σ = T_σ θ_σ (ψ_K − ψ_L) per unit time).
//! The metric is ‖u̇‖² = φᵀLφ for u̇ = −Lφ, so |grad J_h|² = ψᵀLψ and
//!
//!   J^η_h = J_h − (η/4) Φ,   Φ(ρ) = Σ_σ T_σ θ_σ (ψ_L − ψ_K)²,
//!
//! the discrete Fisher information. Its derivative is
//! χ_J = ∂Φ/∂u_J = (1/|J|) [ ½ Σ_{σ∋J} T_σ (Δ_σψ)² + 2 f''(ρ_J) (Lψ)_J ].
//!
//! **Modified variant**: u̇ = −L(ψ − (η/4)χ), the exact gradient flow of J^η_h. Linearised at a
//! steady state it is u̇ = (−P + (η/2) P²) δu with P = L D, D = diag(f''(ρ_K)/|K|): every mode of
//! P with η μ > 2 grows. The integrator refuses to start (and stops) unless η·λ_max < 2, with
//! λ_max the Gershgorin bound of D^{½} L D^{½} (similar to P), max_J Σ_{σ∋J} T_σ θ_σ (D_J +
//! √(D_J D_L)) — for entropy on a uniform grid exactly 4dβ/h².
//!
//! **Resummed variant**: on any Riemannian manifold grad(½|grad J|²) = Hess J[grad J], so
//! Lχ = 2 Hess J_h[grad J_h] *exactly*, with the Riemannian Hessian of the discrete geometry and
//! all its connection terms. The velocity
//!
//!   u̇ = −Lψ + (η/4) (I + (η/2) P)⁻¹ Lχ
//!
//! is the resummed velocity −(I + (η/2) Hess J)⁻¹ grad J when P = Hess J, and for any P differs
//! from grad J^η_h by (η²/4) P (I + (η/2)P)⁻¹ Hess J[grad J] = O(η²) on resolved scales. We take
//! P = L D (the Hessian with the mobility frozen: exact at steady states and at high frequency,
//! where it dominates), so the linearised rates at steady states become −μ/(1 + ημ/2) ∈ (−2/η, 0]:
//! the fourth-order anti-diffusion is removed at any mesh size and the substep is ~η, not ~h².
//! One SPD solve per stage: (I + (η/2)LD) z = Lχ becomes, with
//! y = D z, (D⁻¹ + (η/2) L) y = Lχ and z = L(χ − (η/2) y); tridiagonal (Thomas) on 1D chains,
//! Jacobi-preconditioned CG (rayon matvec) otherwise. Mass is conserved exactly
//! (1ᵀL = 0) up to the linear tolerance.
//!
//! **The exact Riemannian Hessian** of the discrete geometry, in potential coordinates
//! (tangent vector Lφ), is d²/dt² J_h along the geodesic u̇ = −L(u)φ, φ̇ = ½∂_u(φᵀL(u)φ):
//! Ĥ = L D L + ½(Q + Qᵀ) − Δᵀ diag(½ T_σ a_σ) Δ, Q = Δᵀ diag(T_σ Δ_σψ) M V⁻¹ L,
//! a_σ = ((Lψ)_K/|K| + (Lψ)_L/|L|)/2 (Δ face differences, M face averages, V = diag|K|). It is
//! implemented and tested (second derivative along geodesics; Ĥψ = ½Lχ) but not used: for a
//! state far from equilibrium (a Gaussian tail several σ out, where η|∇ψ|² ≫ 1) it is indefinite,
//! so L + (η/2)Ĥ has negative pivots even for η = 0.002 — the discrete geometry is not
//! geodesically convex there. P = L D keeps the solve SPD.
//!
//! **Limits.** The connection terms (advection of the perturbation by ∇ψ) are not resummed. On a
//! mesh that holds far tails of a density far from equilibrium (N(1, 0.5²) on [−8, 8]: ρ ~ 1e−70
//! at the walls, |∇ log ρ| ≈ 36) the explicit integration becomes stiff there and can fail
//! (step-size underflow); on [−5, 5] it runs in ~150 substeps over T = 1. The failure is reported,
//! never hidden.
//!
//! Time stepping: adaptive Dormand–Prince 5(4) ([`crate::ode`]); a stage with a negative
//! density (or a zero one under entropy) is rejected. Cell and face loops run in parallel
//! (rayon) on large meshes.

use crate::ode::{OdeOptions, integrate};
use crate::{FlowError, Variant};
use jko_core::{EnergyTerm, Mesh, StepEnergy, check_density};
use ndarray::Array1;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::cell::Cell;

/// Below this many cells the loops stay sequential.
const PAR_MIN: usize = 4096;

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
/// assert!(stats.substeps > 0 && stats.evaluations >= 6 * stats.substeps);
/// assert!(stats.mass_drift < 1e-12 && stats.max_error <= 1.0);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowStats {
    /// Accepted Runge–Kutta substeps.
    pub substeps: usize,
    /// Rejected substeps (error too large or an inadmissible stage).
    pub rejected: usize,
    /// Velocity evaluations (stages).
    pub evaluations: usize,
    /// Linear-solver iterations summed over stages (resummed variant, CG only).
    pub linear_iterations: usize,
    /// Largest η·λ_max seen at accepted states.
    pub max_eta_lambda: f64,
    /// Benamou–Brenier action of the path, t_end ∫₀^{t_end} ‖u̇‖² dt (≥ W_h² on the discrete
    /// geometry, comparable to the one-step kinetic term).
    pub kinetic: f64,
    /// Relative mass change.
    pub mass_drift: f64,
    /// Last accepted substep.
    pub last_dt: f64,
    /// Largest accepted local error estimate, in units of the tolerance (≤ 1).
    pub max_error: f64,
}

/// The JKO-Flow integrator for one energy on one mesh, with step η and a [`Variant`].
///
/// The public fields tune the integration (defaults: `rtol = 1e-6`, `atol = 1e-12`, 10 000
/// substeps; CG to 1e-11 in at most 5000 iterations).
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
    /// Cells 0..n joined by faces (i, i+1) in order: the resummed solve is tridiagonal.
    chain: bool,
    /// Runge–Kutta tolerances and the substep cap.
    pub ode: OdeOptions,
    /// Relative residual of the CG solve.
    pub linear_tol: f64,
    /// Largest number of CG iterations per solve.
    pub linear_max_iter: usize,
}

/// Per-face and per-cell quantities of one velocity evaluation.
/// The geometry at ρ as the Hessian sees it.
#[cfg(test)]
struct Frame {
    /// T_σ θ_σ.
    w: Vec<f64>,
    /// Δ_σψ = ψ_L − ψ_K.
    dpsi: Vec<f64>,
    /// a_σ = (g_K/|K| + g_L/|L|)/2, g = Lψ.
    a: Vec<f64>,
    /// D_K = f''(ρ_K)/|K| (0 without internal energy).
    dcell: Vec<f64>,
}

struct Evaluation {
    /// φ with u̇ = −Lφ (= ∂J^η_h/∂u for the modified variant).
    #[cfg_attr(not(test), allow(dead_code))]
    phi: Vec<f64>,
    /// u̇ / |K| = ρ̇.
    rho_dot: Vec<f64>,
    /// φᵀLφ = ‖u̇‖².
    speed2: f64,
    linear_iterations: usize,
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
                term: term.to_string(),
            });
        }
        if !(eta.is_finite() && eta >= 0.0) {
            return Err(
                jko_core::InputError::parameter("eta", eta, "must be finite and >= 0").into(),
            );
        }
        if let Some(v) = &energy.potential
            && v.len() != mesh.n_cells()
        {
            return Err(jko_core::InputError::ShapeMismatch {
                what: "cell potential".into(),
                expected: mesh.n_cells().to_string(),
                found: v.len().to_string(),
            }
            .into());
        }
        let faces = mesh.faces();
        let chain = mesh.dim() == 1
            && faces.len() + 1 == mesh.n_cells()
            && faces
                .iter()
                .enumerate()
                .all(|(i, f)| f.k == i && f.l == i + 1);
        Ok(MeshFlow {
            mesh,
            energy,
            eta,
            variant,
            trans: faces.iter().map(|f| f.transmissibility()).collect(),
            chain,
            ode: OdeOptions {
                rtol: 1e-6,
                atol: 1e-12,
                max_steps: 10_000,
                initial_dt: None,
                max_dt: f64::INFINITY,
            },
            linear_tol: 1e-11,
            linear_max_iter: 5000,
        })
    }

    fn has_internal(&self) -> bool {
        self.energy.entropy.is_some() || self.energy.porous.is_some()
    }

    /// Whether ρ lies in the domain of the velocity (finite; > 0 under entropy, ≥ 0 otherwise).
    pub(crate) fn admissible(&self, rho: &[f64]) -> bool {
        let strict = self.energy.entropy.is_some();
        rho.iter()
            .all(|&r| r.is_finite() && if strict { r > 0.0 } else { r >= 0.0 })
    }

    fn psi(&self, rho: &[f64]) -> Vec<f64> {
        let e = self.energy;
        let f = |k: usize| e.df(rho[k]) + e.potential.as_ref().map_or(0.0, |p| p[k]);
        let n = rho.len();
        if n >= PAR_MIN {
            (0..n).into_par_iter().with_min_len(2048).map(f).collect()
        } else {
            (0..n).map(f).collect()
        }
    }

    /// D_K = f''(ρ_K)/|K|.
    fn d(&self, rho: &[f64], k: usize) -> f64 {
        self.energy.d2f(rho[k]) / self.mesh.volumes()[k]
    }

    fn theta(&self, rho: &[f64]) -> Vec<f64> {
        self.mesh
            .faces()
            .iter()
            .map(|f| 0.5 * (rho[f.k] + rho[f.l]))
            .collect()
    }

    /// (L_w x)_K = Σ_{σ∋K} w_σ (x_K − x_other).
    fn laplacian(&self, weight: &[f64], x: &[f64]) -> Vec<f64> {
        let faces = self.mesh.faces();
        let cell = |k: usize| {
            self.mesh
                .faces_of(k)
                .iter()
                .map(|&s| {
                    let f = &faces[s];
                    let other = if f.k == k { f.l } else { f.k };
                    weight[s] * (x[k] - x[other])
                })
                .sum::<f64>()
        };
        let n = x.len();
        if n >= PAR_MIN {
            (0..n)
                .into_par_iter()
                .with_min_len(2048)
                .map(cell)
                .collect()
        } else {
            (0..n).map(cell).collect()
        }
    }

    /// Gershgorin bound of D^{½} L D^{½} at ρ (λ_max of the linearised Hessian); 0 without
    /// entropy or porous medium.
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
        let theta = self.theta(rho);
        let row = |k: usize| {
            let dk = self.d(rho, k);
            self.mesh
                .faces_of(k)
                .iter()
                .map(|&s| {
                    let f = &faces[s];
                    let other = if f.k == k { f.l } else { f.k };
                    self.trans[s] * theta[s] * (dk + (dk * self.d(rho, other)).sqrt())
                })
                .sum::<f64>()
        };
        let n = rho.len();
        let m = if n >= PAR_MIN {
            (0..n)
                .into_par_iter()
                .with_min_len(2048)
                .map(row)
                .reduce(|| 0.0, f64::max)
        } else {
            (0..n).map(row).fold(0.0, f64::max)
        };
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

    /// Discrete Fisher information Φ(ρ) = Σ_σ T_σ θ_σ (Δ_σψ)² = |grad J_h|².
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
        let r = rho.as_slice().unwrap_or(&[]);
        let psi = self.psi(r);
        self.mesh
            .faces()
            .iter()
            .zip(&self.trans)
            .map(|(f, t)| t * 0.5 * (r[f.k] + r[f.l]) * (psi[f.l] - psi[f.k]).powi(2))
            .sum()
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

    /// ρ̇ of the chosen variant at ρ (ρ must be admissible).
    ///
    /// # Errors
    /// [`FlowError::Inadmissible`] for a density of the wrong length, non-finite, negative or
    /// zero under entropy; [`FlowError::LinearSolve`] when the resummed solve fails.
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
    /// // Mass conservation: Σ_K |K| ρ̇_K = 0 (1ᵀL = 0), up to the linear tolerance.
    /// assert!(mesh.mass(&rho_dot).abs() < 1e-9);
    /// assert!(flow.velocity(&mesh.sample(|_| 0.0)).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn velocity(&self, rho: &Array1<f64>) -> Result<Array1<f64>, FlowError> {
        let r = rho.as_slice().unwrap_or(&[]);
        if r.len() != self.mesh.n_cells() || !self.admissible(r) {
            return Err(FlowError::Inadmissible {
                reason: "density of the wrong length, non-finite, negative, or zero under entropy"
                    .into(),
            });
        }
        match self.evaluate(r)? {
            Some(ev) => Ok(Array1::from(ev.rho_dot)),
            None => Err(FlowError::Inadmissible {
                reason: "the resummed operator L + (eta/2) Hess is not positive definite at this density".into(),
            }),
        }
    }

    fn evaluate(&self, rho: &[f64]) -> Result<Option<Evaluation>, FlowError> {
        let n = rho.len();
        let vols = self.mesh.volumes();
        let faces = self.mesh.faces();
        let psi = self.psi(rho);
        let w: Vec<f64> = faces
            .iter()
            .zip(&self.trans)
            .map(|(f, t)| t * 0.5 * (rho[f.k] + rho[f.l]))
            .collect();
        let mut linear_iterations = 0;
        let phi = if self.eta == 0.0 {
            psi
        } else {
            match self.variant {
                Variant::Modified => {
                    let g = self.laplacian(&w, &psi);
                    let chi = self.chi(rho, &psi, &g);
                    psi.iter()
                        .zip(&chi)
                        .map(|(p, c)| p - 0.25 * self.eta * c)
                        .collect()
                }
                Variant::Resummed => {
                    let g = self.laplacian(&w, &psi);
                    let chi = self.chi(rho, &psi, &g);
                    if !self.has_internal() {
                        // P = 0: the resummed and the modified velocities coincide.
                        psi.iter()
                            .zip(&chi)
                            .map(|(p, c)| p - 0.25 * self.eta * c)
                            .collect()
                    } else {
                        // (I + (η/2) L D) z = Lχ ⇔ (D⁻¹ + (η/2) L) y = Lχ, z = L(χ − (η/2) y), so
                        // u̇ = −L(ψ − (η/4)(χ − (η/2) y)).
                        let rhs = self.laplacian(&w, &chi);
                        let dinv: Vec<f64> =
                            (0..n).map(|k| 1.0 / self.d(rho, k).max(1e-300)).collect();
                        let half_eta_w: Vec<f64> = w.iter().map(|x| 0.5 * self.eta * x).collect();
                        let y = if self.chain {
                            thomas(&dinv, &half_eta_w, &rhs)
                        } else {
                            let (y, it) = self.cg(&dinv, &half_eta_w, &rhs)?;
                            linear_iterations = it;
                            y
                        };
                        psi.iter()
                            .zip(&chi)
                            .zip(&y)
                            .map(|((p, c), yk)| p - 0.25 * self.eta * (c - 0.5 * self.eta * yk))
                            .collect()
                    }
                }
            }
        };
        let lphi = self.laplacian(&w, &phi);
        let speed2: f64 = phi.iter().zip(&lphi).map(|(a, b)| a * b).sum();
        let rho_dot: Vec<f64> = lphi.iter().zip(vols).map(|(g, v)| -g / v).collect();
        debug_assert_eq!(rho_dot.len(), n);
        Ok(Some(Evaluation {
            phi,
            rho_dot,
            speed2,
            linear_iterations,
        }))
    }

    /// χ_J = ∂Φ/∂u_J = (1/|J|) [½ Σ_{σ∋J} T_σ (Δ_σψ)² + 2 f''(ρ_J) g_J], g = Lψ.
    fn chi(&self, rho: &[f64], psi: &[f64], g: &[f64]) -> Vec<f64> {
        let faces = self.mesh.faces();
        let vols = self.mesh.volumes();
        let chi_of = |k: usize| {
            let sq: f64 = self
                .mesh
                .faces_of(k)
                .iter()
                .map(|&s| {
                    let f = &faces[s];
                    self.trans[s] * (psi[f.l] - psi[f.k]).powi(2)
                })
                .sum();
            let curv = if self.has_internal() {
                2.0 * self.energy.d2f(rho[k]) * g[k]
            } else {
                0.0
            };
            (0.5 * sq + curv) / vols[k]
        };
        let n = rho.len();
        if n >= PAR_MIN {
            (0..n)
                .into_par_iter()
                .with_min_len(2048)
                .map(chi_of)
                .collect()
        } else {
            (0..n).map(chi_of).collect()
        }
    }

    #[cfg(test)]
    fn frame(&self, rho: &[f64], psi: &[f64], w: Vec<f64>) -> Frame {
        let faces = self.mesh.faces();
        let vols = self.mesh.volumes();
        let g = self.laplacian(&w, psi);
        let dcell: Vec<f64> = if self.has_internal() {
            (0..rho.len()).map(|k| self.d(rho, k)).collect()
        } else {
            vec![0.0; rho.len()]
        };
        Frame {
            dpsi: faces.iter().map(|f| psi[f.l] - psi[f.k]).collect(),
            a: faces
                .iter()
                .map(|f| 0.5 * (g[f.k] / vols[f.k] + g[f.l] / vols[f.l]))
                .collect(),
            w,
            dcell,
        }
    }

    #[cfg(test)]
    /// Face differences (Δx)_σ = x_L − x_K.
    fn diff(&self, x: &[f64]) -> Vec<f64> {
        self.mesh.faces().iter().map(|f| x[f.l] - x[f.k]).collect()
    }

    #[cfg(test)]
    /// (Δᵀ q)_K = Σ_{σ: L=K} q_σ − Σ_{σ: K=K} q_σ, so that L_w = Δᵀ diag(w) Δ.
    fn div_t(&self, q: &[f64]) -> Vec<f64> {
        let faces = self.mesh.faces();
        let cell = |k: usize| {
            self.mesh
                .faces_of(k)
                .iter()
                .map(|&s| if faces[s].l == k { q[s] } else { -q[s] })
                .sum::<f64>()
        };
        let n = self.mesh.n_cells();
        if n >= PAR_MIN {
            (0..n)
                .into_par_iter()
                .with_min_len(2048)
                .map(cell)
                .collect()
        } else {
            (0..n).map(cell).collect()
        }
    }

    #[cfg(test)]
    /// The Riemannian Hessian of J_h in potential coordinates applied to φ (a tangent vector in
    /// mass coordinates): Ĥφ = L D L φ + ½(Q + Qᵀ) φ − Δᵀ(½ T a ∘ Δφ), Q = Δᵀ diag(T Δψ) M V⁻¹ L.
    fn hessian_apply(&self, fr: &Frame, phi: &[f64]) -> Vec<f64> {
        let faces = self.mesh.faces();
        let vols = self.mesh.volumes();
        let dphi = self.diff(phi);
        let lphi = self.laplacian(&fr.w, phi);
        let dl: Vec<f64> = lphi.iter().zip(&fr.dcell).map(|(l, d)| l * d).collect();
        let t1 = self.laplacian(&fr.w, &dl);
        let q_faces: Vec<f64> = faces
            .iter()
            .enumerate()
            .map(|(s, f)| {
                self.trans[s] * fr.dpsi[s] * 0.5 * (lphi[f.k] / vols[f.k] + lphi[f.l] / vols[f.l])
            })
            .collect();
        let q = self.div_t(&q_faces);
        let tdd: Vec<f64> = (0..faces.len())
            .map(|s| self.trans[s] * fr.dpsi[s] * dphi[s])
            .collect();
        let mut inner = vec![0.0; phi.len()];
        for (f, v) in faces.iter().zip(&tdd) {
            inner[f.k] += 0.5 * v;
            inner[f.l] += 0.5 * v;
        }
        for (x, v) in inner.iter_mut().zip(vols) {
            *x /= v;
        }
        let qt = self.laplacian(&fr.w, &inner);
        let t3_faces: Vec<f64> = (0..faces.len())
            .map(|s| 0.5 * self.trans[s] * fr.a[s] * dphi[s])
            .collect();
        let t3 = self.div_t(&t3_faces);
        (0..phi.len())
            .map(|k| t1[k] + 0.5 * (q[k] + qt[k]) - t3[k])
            .collect()
    }

    /// Jacobi-preconditioned CG for (diag(a) + L_w) y = b (SPD).
    fn cg(&self, a: &[f64], w: &[f64], b: &[f64]) -> Result<(Vec<f64>, usize), FlowError> {
        let n = b.len();
        let faces = self.mesh.faces();
        let mut diag = a.to_vec();
        for (f, ws) in faces.iter().zip(w) {
            diag[f.k] += ws;
            diag[f.l] += ws;
        }
        let dot = |p: &[f64], q: &[f64]| -> f64 {
            if n >= PAR_MIN {
                p.par_iter()
                    .zip(q)
                    .with_min_len(2048)
                    .map(|(a, b)| a * b)
                    .sum()
            } else {
                p.iter().zip(q).map(|(a, b)| a * b).sum()
            }
        };
        // Rows scale like ρ (tails may be 1e-70): measure the residual in the Jacobi-scaled norm.
        let bnorm = dot(
            b,
            &b.iter().zip(&diag).map(|(x, d)| x / d).collect::<Vec<_>>(),
        )
        .sqrt();
        let mut x: Vec<f64> = b.iter().zip(&diag).map(|(bi, di)| bi / di).collect();
        if bnorm == 0.0 {
            return Ok((vec![0.0; n], 0));
        }
        let lx = self.laplacian(w, &x);
        let mut r: Vec<f64> = (0..n).map(|i| b[i] - lx[i] - a[i] * x[i]).collect();
        let mut z: Vec<f64> = r.iter().zip(&diag).map(|(ri, di)| ri / di).collect();
        let mut p = z.clone();
        let mut rz = dot(&r, &z);
        for it in 0..self.linear_max_iter {
            if rz.max(0.0).sqrt() <= self.linear_tol * bnorm {
                return Ok((x, it));
            }
            let lp = self.laplacian(w, &p);
            let ap: Vec<f64> = (0..n).map(|i| lp[i] + a[i] * p[i]).collect();
            let alpha = rz / dot(&p, &ap);
            for i in 0..n {
                x[i] += alpha * p[i];
                r[i] -= alpha * ap[i];
                z[i] = r[i] / diag[i];
            }
            let rz_new = dot(&r, &z);
            let beta = rz_new / rz;
            rz = rz_new;
            for i in 0..n {
                p[i] = z[i] + beta * p[i];
            }
        }
        Err(FlowError::LinearSolve {
            iterations: self.linear_max_iter,
            residual: rz.max(0.0).sqrt() / bnorm,
        })
    }

    /// Integrate the chosen flow from ρ over a time `t`.
    ///
    /// # Errors
    /// [`FlowError::Input`] for an invalid density or t, and for a zero density under
    /// entropy; [`FlowError::StabilityLimit`] (modified variant,
    /// η·λ_max ≥ 2); the integrator's [`FlowError::TooManySubsteps`] and
    /// [`FlowError::StepSizeUnderflow`]; [`FlowError::LinearSolve`].
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
    /// assert!((mesh.mass(&next) - mesh.mass(&rho)).abs() < 1e-9);
    /// # Ok(())
    /// # }
    /// ```
    pub fn integrate(
        &self,
        rho: &Array1<f64>,
        t: f64,
    ) -> Result<(Array1<f64>, FlowStats), FlowError> {
        check_density(self.mesh, rho, "density")?;
        if !(t.is_finite() && t >= 0.0) {
            return Err(jko_core::InputError::parameter("t", t, "must be finite and >= 0").into());
        }
        let mut y: Vec<f64> = rho.to_vec();
        // check_density leaves only an empty cell under the entropy (log ρ is its first
        // variation): a refusal of the data, not a failure of the integration.
        if !self.admissible(&y) {
            let empty = y.iter().filter(|&&r| r <= 0.0).count();
            return Err(jko_core::InputError::parameter(
                "density",
                format!("{empty} empty cells"),
                "the flow backend integrates the entropy only from a density > 0 in every cell; \
                 use a proximal backend (newton, conic)",
            )
            .into());
        }
        let limit = |r: &[f64]| -> Result<f64, FlowError> {
            let lambda = self.lambda_max(r);
            let product = self.eta * lambda;
            if self.variant == Variant::Modified && product >= 2.0 {
                return Err(FlowError::StabilityLimit {
                    eta: self.eta,
                    lambda_max: lambda,
                    product,
                });
            }
            Ok(product)
        };
        let mut stats = FlowStats {
            max_eta_lambda: limit(&y)?,
            ..FlowStats::default()
        };
        let mass0 = self.mesh.mass(rho);
        let speed2 = Cell::new(0.0);
        let lin = Cell::new(0usize);
        let max_prod = Cell::new(stats.max_eta_lambda);
        let mut action = 0.0;
        let mut prev_speed2 = None::<f64>;
        let result = integrate(
            &mut y,
            t,
            &self.ode,
            |r, dr| {
                if !self.admissible(r) {
                    return Ok(false);
                }
                let Some(ev) = self.evaluate(r)? else {
                    return Ok(false);
                };
                dr.copy_from_slice(&ev.rho_dot);
                speed2.set(ev.speed2);
                lin.set(lin.get() + ev.linear_iterations);
                Ok(true)
            },
            |dt, y_new, _| {
                // The last stage (FSAL) was evaluated at y_new: its speed is the current one.
                let s_new = speed2.get();
                let s_old = prev_speed2.unwrap_or(s_new);
                action += 0.5 * dt * (s_old + s_new);
                prev_speed2 = Some(s_new);
                if self.variant == Variant::Modified {
                    max_prod.set(max_prod.get().max(self.eta * self.lambda_max(y_new)));
                }
            },
        );
        let product = max_prod.get();
        if self.variant == Variant::Modified && product >= 2.0 {
            return Err(FlowError::StabilityLimit {
                eta: self.eta,
                lambda_max: product / self.eta,
                product,
            });
        }
        let ode = result?;
        let out = Array1::from(y);
        stats.substeps = ode.accepted;
        stats.rejected = ode.rejected;
        stats.evaluations = ode.evaluations;
        stats.linear_iterations = lin.get();
        stats.max_eta_lambda = product;
        stats.kinetic = t * action;
        stats.mass_drift = (self.mesh.mass(&out) - mass0) / mass0;
        stats.last_dt = ode.last_dt;
        stats.max_error = ode.max_error;
        Ok((out, stats))
    }
}

#[cfg(test)]
mod tests;

/// Solve the SPD tridiagonal system (diag(a) + L_w) y = b on a chain (faces (i, i+1)).
fn thomas(a: &[f64], w: &[f64], b: &[f64]) -> Vec<f64> {
    let n = a.len();
    let diag =
        |i: usize| a[i] + if i > 0 { w[i - 1] } else { 0.0 } + if i + 1 < n { w[i] } else { 0.0 };
    // Off-diagonal entries are −w_i between i and i+1.
    let mut c = vec![0.0; n];
    let mut d = vec![0.0; n];
    let mut denom = diag(0);
    c[0] = if n > 1 { -w[0] / denom } else { 0.0 };
    d[0] = b[0] / denom;
    for i in 1..n {
        denom = diag(i) + w[i - 1] * c[i - 1];
        c[i] = if i + 1 < n { -w[i] / denom } else { 0.0 };
        d[i] = (b[i] + w[i - 1] * d[i - 1]) / denom;
    }
    let mut y = d;
    for i in (0..n.saturating_sub(1)).rev() {
        y[i] -= c[i] * y[i + 1];
    }
    y
}

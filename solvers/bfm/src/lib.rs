//! # jko-bfm: exact-W² JKO steps on uniform grids through the dual (work in progress)
//!
//! After Jacobs & Léger (Numer. Math. 2020, optimal transport) and Jacobs, Lee & Léger
//! (ESAIM:COCV 2021, JKO steps). Not yet registered as a backend: the iteration does not yet
//! reach tight tolerances on every step (see the notes of issue 20).
//!
//! ## The dual problem
//! With the cost c(x, y) = |x − y|²/(2τ), the JKO step ρ = argmin F(ρ) + W²(ρ, μ)/(2τ),
//! μ = ρⁿ, F(ρ) = ∫ U(ρ) + V ρ, has the dual
//!
//!   sup_φ  J(φ) = ∫ φ^c μ − ∫ U*(φ − V),   φ^c(x) = min_y φ(y) + |x − y|²/(2τ),
//!
//! with the new density ρ = (U*)'(φ − V) at the optimum and the optimality condition T#μ = ρ
//! for the map T(x) = x − τ∇φ^c(x). Its inverse is S(y) = y + τ∇φ(y) when φ is c-convex, so
//! T#μ(y) = μ(S(y)) det(I + τD²φ(y)) (a Monge–Ampère expression in φ alone; second order in
//! h with centred differences and multilinear interpolation of μ). δJ/δφ = T#μ − ρ(φ).
//!
//! ## The iteration (default)
//! Ascent on φ: φ ← φ + σ (1 + τκ(−Δ_h))⁻¹ [(T#μ − ρ)/(ρ/κ)], κ = max ρ U''(ρ) (β for the
//! entropy), i.e. the Hessian −(τ div(ρ∇·) + dρ/dp) with its coefficients frozen, the
//! Neumann operator inverted by DCT in O(N log N); σ is shortened when the marginal error
//! grows. After every step φ is shifted by the constant that gives ρ(φ − V) exactly the mass
//! of μ (the exact maximisation of J along constants). With `back_and_forth = true` the
//! ascent alternates with steps on ψ = φ^c linked by grid c-transforms (separable lower
//! envelopes of parabolas, linear time per line, rayon over lines); on grids that transform
//! is not idempotent where the map compresses, and the alternation was measured to stall.
//!
//! The iteration stops when the relative L1 marginal error Σ|K| |T#μ − ρ| / M is below `tol`.
//! The returned density is ρ(φ − V): its mass is that of ρⁿ to round-off, 0 ≤ ρ ≤ ρ_max holds
//! exactly, and F(ρ) + W²/(2τ) ≤ F(ρⁿ) holds for the dual estimate W² = 2τ(Σψμ − Σφρ),
//! ψ = φ^c, by weak duality.
#![warn(missing_docs)]

mod ctransform;
mod dual;
mod krylov;
mod lattice;
mod newton;
mod params;
mod poisson;
mod source;
#[cfg(test)]
mod study;

pub use params::BfmParams;

use ctransform::CTransform;
use dual::LocalDual;
use jko_core::{
    EnergyTerm, InputError, JkoStep, Mesh, StepError, StepInfo, StepOutput, StepSolver, StepStatus,
    WarmStart,
};
use lattice::{Lattice, par_sum};
use source::{SourceGrid, SourceModel};
use std::time::Instant;

const NAME: &str = "bfm";

/// The back-and-forth backend (`"bfm"`): exact-W² JKO steps on uniform 1D–3D grids.
///
/// Treats entropy, porous medium (m > 1), potentials, the frozen interaction and the
/// congestion bound ρ ≤ ρ_max together with entropy or porous medium. It refuses an energy
/// without entropy or porous term (ρ = (U*)'(φ − V) is then not a function of φ) and meshes
/// without grid structure.
///
/// ```rust
/// use jko_bfm::{BfmParams, BfmSolver};
/// use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
/// use jko_core::{Energy, JkoStep, Mesh, Potential, StepSolver};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // One OU step on a 64² grid against the exact JKO iterate.
/// let mesh = Mesh::grid(&[64, 64], &[-5.0, -5.0], &[5.0, 5.0])?;
/// let g0 = Gaussian::diagonal(&[1.0, -0.5], &[0.5, 0.8]);
/// let rho0 = mesh.sample(|x| g0.density(x));
/// let energy = Energy::fokker_planck(1.0, Potential::Quadratic { center: vec![0.0; 2], stiffness: 1.0 });
/// let frozen = energy.freeze(&mesh, &rho0)?;
/// let out = BfmSolver::new(BfmParams::default())?.step(&JkoStep::new(&mesh, &rho0, 0.1, &frozen)?, None)?;
/// assert!((mesh.mass(&out.rho) / mesh.mass(&rho0) - 1.0).abs() < 1e-13);
/// let exact = OrnsteinUhlenbeck::standard(2).jko_step(&g0, 0.1);
/// let m = mesh.mass(&rho0);
/// let l1: f64 = (0..mesh.n_cells())
///     .map(|k| mesh.volumes()[k] * (out.rho[k] - m * exact.density(mesh.centre(k))).abs())
///     .sum();
/// assert!(l1 < 1e-2, "{l1}");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct BfmSolver {
    params: BfmParams,
}

impl BfmSolver {
    /// Validate the parameters.
    ///
    /// # Errors
    /// Those of [`BfmParams::validate`].
    ///
    /// ```rust
    /// use jko_bfm::{BfmParams, BfmSolver};
    ///
    /// assert!(BfmSolver::new(BfmParams::default()).is_ok());
    /// assert!(BfmSolver::new(BfmParams { sigma: -1.0, ..BfmParams::default() }).is_err());
    /// ```
    pub fn new(params: BfmParams) -> Result<Self, InputError> {
        params.validate()?;
        Ok(BfmSolver { params })
    }

    /// The parameters.
    ///
    /// ```rust
    /// use jko_bfm::{BfmParams, BfmSolver};
    ///
    /// let s = BfmSolver::new(BfmParams::default()).unwrap();
    /// assert_eq!(s.params(), &BfmParams::default());
    /// ```
    pub fn params(&self) -> &BfmParams {
        &self.params
    }
}

fn lattice(mesh: &Mesh) -> Result<Lattice, StepError> {
    Lattice::of_mesh(mesh).ok_or_else(|| {
        StepError::Input(InputError::InvalidMesh(
            "the bfm backend needs a uniform grid (a mesh from `cells`, `lower`, `upper`); \
             use conic or newton on general meshes"
                .into(),
        ))
    })
}

impl StepSolver for BfmSolver {
    fn name(&self) -> &str {
        NAME
    }

    fn treats(&self, term: EnergyTerm) -> bool {
        matches!(
            term,
            EnergyTerm::Entropy
                | EnergyTerm::Porous
                | EnergyTerm::Potential
                | EnergyTerm::Interaction
                | EnergyTerm::MaxDensity
        )
    }

    fn memory_estimate(&self, mesh: &Mesh, _terms: &[EnergyTerm]) -> Option<u64> {
        let n = mesh.as_grid().map_or(mesh.n_cells(), |g| g.len()) as u64;
        // μ, V, φ, ψ, φ̃, ρ, T#μ, g, u, the line buffers of the transforms and the DCT, and
        // the mass-shift scratch: 13 arrays of f64 over the box.
        Some(13 * 8 * n)
    }

    fn step(
        &self,
        problem: &JkoStep<'_>,
        warm: Option<&WarmStart>,
    ) -> Result<StepOutput, StepError> {
        let start = Instant::now();
        self.check_supported(problem.energy)?;
        let mesh = problem.mesh;
        let lat = lattice(mesh)?;
        let e = problem.energy;
        let Some(local) = LocalDual::new(e.entropy, e.porous, e.max_density) else {
            if e.terms().is_empty() {
                // F = 0: ρⁿ is the minimiser.
                return Ok(StepOutput {
                    rho: problem.rho_prev.clone(),
                    flux: None,
                    potential: None,
                    info: info(
                        0,
                        0.0,
                        0.0,
                        0.0,
                        start,
                        vec!["zero energy: rho^n is the minimiser".into()],
                    ),
                });
            }
            let term = if e.max_density.is_some() {
                EnergyTerm::MaxDensity
            } else {
                EnergyTerm::Potential
            };
            return Err(StepError::Unsupported {
                solver: NAME.into(),
                term: term.to_string(),
                hint: " without entropy or porous medium: the back-and-forth method needs a \
                       strictly convex internal energy to map the dual potential to a density; \
                       add a small entropy, or use conic or newton"
                    .into(),
            });
        };
        let mass = problem.mass();
        let mu = lat.to_box(problem.rho_prev, 0.0);
        let v = match &e.potential {
            Some(v) => lat.to_box(v, 0.0),
            None => vec![0.0; lat.len],
        };
        let grid = SourceGrid::new(&lat, &mu);
        let model = SourceModel {
            grid: &grid,
            tau: problem.tau,
            mu: &mu,
            v: &v,
            local,
            kappa: pressure_scale(&local, &lat, &mu, mass),
            mass,
        };
        let warm_psi = warm
            .and_then(|w| w.potential.as_ref())
            .filter(|p| p.len() == lat.box_index.len())
            .map(|p| lat.to_box(p, f64::NAN))
            .filter(|p| (0..lat.len).all(|i| !grid.in_s[i] || p[i].is_finite()));
        let out = newton::solve(&model, &self.params, warm_psi);
        if !out.converged {
            return Err(StepError::NotConverged {
                solver: NAME.into(),
                status: format!(
                    "{} (continuation stages at tau = {:?})",
                    out.failure.unwrap_or("the continuation ran out of stages"),
                    out.stages
                ),
                iterations: out.iterations,
                primal_residual: out.marginal,
                dual_residual: 0.0,
                history: out.history,
            });
        }
        // The target potential φ = ψ^c̄ and the new density ρ(φ − V), shifted to the mass.
        let mut ct = CTransform::new(&lat, problem.tau);
        let mut phi = Vec::with_capacity(lat.len);
        ct.cbar_transform(&lat, &out.psi, |i| grid.in_s[i], true, &mut phi);
        let pv: Vec<f64> = phi.iter().zip(&v).map(|(a, b)| a - b).collect();
        let shift = local
            .mass_shift(&pv, |i| lat.is_active(i), lat.volume, mass)
            .filter(|c| c.is_finite())
            .ok_or_else(|| StepError::Numerical {
                solver: NAME.into(),
                message: "no constant shift of the target potential gives the mass of rho^n".into(),
            })?;
        let rho_box: Vec<f64> = (0..lat.len)
            .map(|i| {
                if lat.is_active(i) {
                    local.rho(pv[i] + shift)
                } else {
                    0.0
                }
            })
            .collect();
        // W² estimate from the dual pair (ψ + c, φ + c), feasible on the grid: a lower bound.
        let w = lat.volume;
        let transport = w * par_sum(lat.len, |i| {
            let source = if grid.in_s[i] {
                mu[i] * out.psi[i]
            } else {
                0.0
            };
            let target = if lat.is_active(i) {
                phi[i] * rho_box[i]
            } else {
                0.0
            };
            source - target
        });
        let kinetic = (2.0 * problem.tau * transport).max(0.0);
        let rho = lat.to_mesh(&rho_box);
        let objective = e.value(mesh, &rho) + kinetic / (2.0 * problem.tau);
        // The potential handed to the next step: ψ + c on the source cells and the c-concave
        // extension (φ + c)^c elsewhere.
        let mut ext = Vec::with_capacity(lat.len);
        let phi_shifted: Vec<f64> = phi.iter().map(|p| p + shift).collect();
        ct.c_transform(&lat, &phi_shifted, |i| lat.is_active(i), true, &mut ext);
        let potential: Vec<f64> = (0..lat.len)
            .map(|i| {
                if grid.in_s[i] {
                    out.psi[i] + shift
                } else {
                    ext[i]
                }
            })
            .collect();
        let mut i = info(
            out.iterations,
            out.marginal,
            objective,
            kinetic,
            start,
            vec![
                format!(
                    "newton {} iterations, {} GMRES products, continuation stages {:?}",
                    out.iterations, out.linear, out.stages
                ),
                format!(
                    "mass shift of the target potential {:.3e} (pressure units; kappa = {:.3e})",
                    shift, model.kappa
                ),
            ],
        );
        i.history = out.history;
        Ok(StepOutput {
            rho,
            flux: None,
            potential: Some(lat.to_mesh(&potential)),
            info: i,
        })
    }
}

/// κ of the preconditioner: β plus the mass average of m ρ^{m−1} for the porous medium.
fn pressure_scale(local: &LocalDual, lat: &Lattice, mu: &[f64], mass: f64) -> f64 {
    let w = lat.volume;
    let k = w * par_sum(lat.len, |i| {
        if lat.is_active(i) && mu[i] > 0.0 {
            mu[i] * local.kappa(mu[i])
        } else {
            0.0
        }
    }) / mass;
    if k > 0.0 && k.is_finite() { k } else { 1.0 }
}

fn info(
    iterations: usize,
    residual: f64,
    objective: f64,
    kinetic: f64,
    start: Instant,
    notes: Vec<String>,
) -> StepInfo {
    StepInfo {
        solver: NAME.into(),
        status: StepStatus::Solved,
        iterations,
        primal_residual: residual,
        dual_residual: 0.0,
        objective,
        kinetic,
        wall_time: start.elapsed().as_secs_f64(),
        history: Vec::new(),
        notes,
    }
}

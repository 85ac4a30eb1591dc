//! # jko-sinkhorn: the entropic JKO step (docs/mathematics.md §2.3; Peyré, SIAM J. Imaging Sci. 2015)
//!
//! ## The problem
//! With cell masses p_K = |K| ρⁿ_K, cost c_{KL} = |x_K − x_L|² and Gibbs kernel
//! ξ_{KL} = exp(−c_{KL}/ε), the entropic JKO step is
//!
//!   min_{π ≥ 0, π1 = p}  ⟨c, π⟩ + ε Σ π_{KL}(ln π_{KL} − 1) + 2τ F_h(q/|·|),   q = πᵀ1,
//!
//! i.e. the JKO objective W²/(2τ) + F multiplied by 2τ, with W² replaced by its entropic
//! regularisation. Since ⟨c, π⟩ + ε Σ π(ln π − 1) = ε KL(π | ξ) + const, dividing by ε gives
//! min ε KL(π|ξ) + 2τ F: **the proximal step is σ = 2τ/ε** (not τ/ε: the factor 2 comes from
//! W²/(2τ)). The new density is ρ_K = q_K/|K|.
//!
//! ## Generalised Sinkhorn
//! π = diag(a) ξ diag(b) with
//!   a ← p / (ξ b),   b ← prox^{KL}_{σF}(ξᵀ a) / (ξᵀ a),
//! where prox^{KL}_{σF}(z) = argmin_q σF(q) + KL(q|z) acts cell by cell for the local energy
//! F_K(q) = β q ln(q/|K|) + |K|(q/|K|)^m/(m−1) + V_K q (q ≤ |K|ρ_max). Closed forms and the
//! porous Newton solve are derived in the [`prox`] module; the interaction term enters frozen in V
//! (semi-implicit, as for every backend: [`jko_core::Energy::freeze`]). An energy term without
//! a proximal map would be refused with `StepError::Unsupported`; every current term has one.
//!
//! ## Kernels
//! On grids ξ is applied as a tensor product of 1D kernels (O(N·n) per product, O(N)
//! memory, rayon-parallel over grid lines, masks exact); on general meshes as a dense N×N
//! matrix, refused above `dense_limit_bytes` with the memory it would need. See [`kernel`].
//!
//! ## Stabilisation, ε-scaling, warm starts
//! - Log domain ([`LogDomain`]): iterations on ln a, ln b with log-sum-exp products. In `auto`
//!   mode a stage runs with the plain kernel until a product underflows or a scaling leaves
//!   e^{±650}; it is then rerun in the log domain, and so are the later stages.
//! - ε-scaling ([`EpsilonScaling`]): stages ε₀ > θε₀ > … > ε; each starts from the previous
//!   stage's potential g = ε ln b (the potentials have the units of the cost, so they carry
//!   over between ε). Intermediate stages stop at a looser tolerance.
//! - Over-relaxation (`omega`): the updates are relaxed in the log domain with ω ∈ [1, 2),
//!   chosen per stage from the measured rate (SOR Sinkhorn; details in the `scaling` module).
//!   Plain Sinkhorn needs O(1/ε) iterations; the relaxed one about O(1/√ε).
//! - Warm start: the step returns `potential` = g, the dual (Kantorovich) potential of the
//!   new density, g_K = ε ln b_K on every cell (finite wherever q_K > 0). Handed back through
//!   `WarmStart::potential`, it initialises b = e^{g/ε} of the next step: for a smooth flow
//!   the backward displacement −∇g/2 from ρ^{n+1} changes little from one step to the next.
//!   Little is not much against ε, though (g moves by O(τ)), so a warm step still runs
//!   `warm_stages` (default 3) ε-stages from the warm potential; measured on OU and the porous
//!   medium, warm and cold steps cost about the same (examples/ou_bias.rs). Only a potential
//!   from this backend is meaningful here (a flux potential φ of another backend is not g).
//!
//! ## Choosing ε
//! The default is ε = 2h² (h the grid spacing): the blur √(ε/2) is one cell. Measured on OU
//! (examples/ou_bias.rs): for ε ≳ h² the discrete step reproduces the *continuous* entropic
//! JKO step of a Gaussian to 1e-10, and its bias against the exact JKO iterate is ∝ ε (variance
//! error ≈ 0.36 ε for τ = 0.1). For ε ≪ h² the plan can no longer move mass by less than a
//! cell ("lock-in"): the error stops shrinking and Sinkhorn needs many more iterations. So
//! ε → 0 must go with h → 0 at ε/h² ≳ 1.
//!
//! ## What a step returns
//! - `rho`: ρ_K = q_K/|K|, q the second marginal of the final plan (exactly the proximal
//!   map's output, so ρ ≤ ρ_max holds to round-off).
//! - `info.primal_residual`: ‖π1 − p‖₁/‖p‖₁ of the final plan (mass is conserved to it);
//!   `info.dual_residual`: relative ℓ¹ change of q in the last iteration.
//! - `info.kinetic` = ⟨c, π⟩, the transport cost of the entropic plan: the estimate of
//!   W²(ρⁿ, ρ^{n+1}) (biased upwards by the blur, about ε·d/2 per unit mass);
//!   `info.objective` = ⟨c, π⟩/(2τ) + F_h(ρ^{n+1}).
//! - `info.iterations`: total over the ε schedule; notes give ε, the schedule, where the log
//!   domain took over and the kernel used.
//!
//! Results are bitwise independent of the thread count: every entry of a kernel product is
//! accumulated by one thread in a fixed order, and sums use fixed chunks added in order.

#![warn(missing_docs)]

pub mod kernel;
pub mod params;
pub mod prox;
mod scaling;

use kernel::DenseGibbsKernel;
pub use kernel::{GibbsKernel, GibbsOperator};
use params::default_epsilon;
pub use params::{EpsilonScaling, KernelChoice, LogDomain, SinkhornParams};
use prox::KlProx;

use jko_core::{
    EnergyTerm, InputError, JkoStep, Mesh, StepError, StepInfo, StepOutput, StepSolver, StepStatus,
    WarmStart,
};
use ndarray::Array1;
use scaling::{Buffers, Stage, StageOutcome, log_stage, plain_stage};
use std::time::Instant;

const NAME: &str = "sinkhorn";

/// The entropic JKO backend (`"sinkhorn"`): generalised Sinkhorn on the entropic JKO step,
/// with ε-scaling, automatic log-domain stabilisation and over-relaxation (see the crate
/// docs for what a step returns).
///
/// Treats entropy, porous medium, potential, frozen interaction and the congestion bound.
/// Its discrete problem differs from the flux backends' (W² is entropically regularised), so
/// [`StepSolver::satisfies_energy_inequality`] is false.
///
/// ```rust
/// use jko_core::{Energy, JkoStep, Mesh, StepSolver, StepStatus};
/// use jko_sinkhorn::{SinkhornParams, SinkhornSolver};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Heat flow with a congestion cap on 8 cells.
/// let mesh = Mesh::grid(&[8], &[0.0], &[1.0])?;
/// let rho0 = mesh.sample(|x| if x[0] < 0.5 { 1.8 } else { 0.2 });
/// let energy = Energy { entropy: Some(0.1), max_density: Some(2.0), ..Energy::default() };
/// let frozen = energy.freeze(&mesh, &rho0)?;
/// let problem = JkoStep::new(&mesh, &rho0, 0.05, &frozen)?;
/// let solver = SinkhornSolver::new(SinkhornParams::default())?;
/// let out = solver.step(&problem, None)?;
/// assert_eq!(out.info.status, StepStatus::Solved);
/// // Mass is conserved to the marginal tolerance, 0 ≤ ρ ≤ ρ_max to round-off.
/// assert!((mesh.mass(&out.rho) / mesh.mass(&rho0) - 1.0).abs() < 1e-9);
/// assert!(out.rho.iter().all(|&r| r >= 0.0 && r <= 2.0 * (1.0 + 1e-12)));
/// assert!(!solver.satisfies_energy_inequality());
/// # Ok(())
/// # }
/// ```
pub struct SinkhornSolver {
    params: SinkhornParams,
    pool: Option<rayon::ThreadPool>,
}

impl std::fmt::Debug for SinkhornSolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkhornSolver")
            .field("params", &self.params)
            .finish()
    }
}

impl SinkhornSolver {
    /// Validate the parameters and build the thread pool (when `threads` is set).
    ///
    /// # Errors
    /// [`InputError::InvalidParameter`] from [`SinkhornParams::validate`], or when the thread
    /// pool cannot be built.
    ///
    /// ```rust
    /// use jko_sinkhorn::{SinkhornParams, SinkhornSolver};
    ///
    /// assert!(SinkhornSolver::new(SinkhornParams { threads: Some(1), ..SinkhornParams::default() }).is_ok());
    /// assert!(SinkhornSolver::new(SinkhornParams { threads: Some(0), ..SinkhornParams::default() }).is_err());
    /// ```
    pub fn new(params: SinkhornParams) -> Result<Self, InputError> {
        params.validate()?;
        let pool = match params.threads {
            Some(t) => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(t)
                    .build()
                    .map_err(|e| InputError::parameter("solver.threads", t, &e.to_string()))?,
            ),
            None => None,
        };
        Ok(SinkhornSolver { params, pool })
    }

    /// The parameters the solver was built with.
    ///
    /// ```rust
    /// use jko_sinkhorn::{SinkhornParams, SinkhornSolver};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let solver = SinkhornSolver::new(SinkhornParams { tol: 1e-8, ..SinkhornParams::default() })?;
    /// assert_eq!(solver.params().tol, 1e-8);
    /// # Ok(())
    /// # }
    /// ```
    pub fn params(&self) -> &SinkhornParams {
        &self.params
    }

    /// The ε a step on `mesh` uses: [`SinkhornParams::epsilon`] when set, else 2h² with h the
    /// largest grid spacing (on a general mesh, the side of a cube of the mean cell volume), so
    /// that the entropic blur √(ε/2) is one cell.
    ///
    /// ```rust
    /// use jko_core::Mesh;
    /// use jko_sinkhorn::{SinkhornParams, SinkhornSolver};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[10, 4], &[0.0, 0.0], &[1.0, 1.0])?; // h = 0.1 and 0.25
    /// let default = SinkhornSolver::new(SinkhornParams::default())?;
    /// assert!((default.epsilon_for(&mesh) - 2.0 * 0.25 * 0.25).abs() < 1e-15);
    /// let fixed = SinkhornSolver::new(SinkhornParams { epsilon: Some(1e-3), ..SinkhornParams::default() })?;
    /// assert_eq!(fixed.epsilon_for(&mesh), 1e-3);
    /// # Ok(())
    /// # }
    /// ```
    pub fn epsilon_for(&self, mesh: &Mesh) -> f64 {
        self.params.epsilon.unwrap_or_else(|| default_epsilon(mesh))
    }

    fn solve(
        &self,
        problem: &JkoStep<'_>,
        warm: Option<&WarmStart>,
    ) -> Result<StepOutput, StepError> {
        let start = Instant::now();
        let prm = &self.params;
        let mesh = problem.mesh;
        let energy = problem.energy;
        let tau = problem.tau;
        let eps = self.epsilon_for(mesh);
        let n_cells = mesh.n_cells();
        let mut notes = Vec::new();

        // Layout: full grid arrays for the tensor kernel, cell arrays for the dense one.
        let tensor = prm.kernel == KernelChoice::Auto && mesh.as_grid().is_some();
        let (len, map): (usize, Vec<usize>) = match (tensor, mesh.as_grid()) {
            (true, Some(g)) => (g.len(), mesh.grid_index().to_vec()),
            _ => (n_cells, (0..n_cells).collect()),
        };

        // Warm start: the previous step's potential g, if it fits this mesh.
        let mut g = vec![0.0; len];
        let mut warm_used = false;
        if let Some(pot) = warm.and_then(|w| w.potential.as_ref()) {
            if pot.len() == n_cells && pot.iter().all(|x| x.is_finite()) {
                for (k, &w) in map.iter().enumerate() {
                    g[w] = pot[k];
                }
                warm_used = true;
            } else {
                notes.push(format!(
                    "warm-start potential ignored ({} values for {n_cells} cells, or non-finite)",
                    pot.len()
                ));
            }
        }

        let schedule = prm.schedule(eps, diameter2(mesh), warm_used);
        let mut kernel: Box<dyn GibbsOperator> = if tensor {
            Box::new(GibbsKernel::new(mesh, schedule[0])?)
        } else {
            Box::new(DenseGibbsKernel::new(
                mesh,
                schedule[0],
                prm.dense_limit_bytes,
            )?)
        };

        let mut p = vec![0.0; len];
        let mut active = vec![false; len];
        let mut ln_vol = vec![0.0; len];
        let mut potential = vec![0.0; len];
        let vols = mesh.volumes();
        for (k, &w) in map.iter().enumerate() {
            p[w] = vols[k] * problem.rho_prev[k];
            active[w] = true;
            ln_vol[w] = vols[k].ln();
            potential[w] = energy.potential.as_ref().map_or(0.0, |v| v[k]);
        }
        let mass = kernel::deterministic_sum(len, |w| p[w]);
        let ln_p: Vec<f64> = p
            .iter()
            .map(|&x| if x > 0.0 { x.ln() } else { f64::NEG_INFINITY })
            .collect();
        let beta = energy.entropy.unwrap_or(0.0);

        let mut buf = Buffers::new(len);
        let mut use_log = prm.log_domain == LogDomain::Always;
        let mut log_from: Option<(usize, f64)> = if use_log {
            Some((0, schedule[0]))
        } else {
            None
        };
        let mut total = 0usize;
        let mut per_stage = Vec::with_capacity(schedule.len());
        let mut omega_used: f64 = 1.0;
        let mut last: Option<StageOutcome> = None;
        for (s, &e) in schedule.iter().enumerate() {
            let final_stage = s + 1 == schedule.len();
            kernel.set_epsilon(e)?;
            let remaining = prm.max_iter.saturating_sub(total);
            let cap = if final_stage {
                remaining.max(1)
            } else {
                prm.epsilon_scaling.stage_max_iter.min(remaining / 2).max(1)
            };
            let stage = Stage {
                kernel: kernel.as_ref(),
                prox: KlProx {
                    sigma: 2.0 * tau / e,
                    beta,
                    porous: energy.porous,
                    max_density: energy.max_density,
                },
                p: &p,
                ln_p: &ln_p,
                active: &active,
                ln_vol: &ln_vol,
                potential: &potential,
                mass,
                tol: if final_stage {
                    prm.tol
                } else {
                    prm.epsilon_scaling.stage_tol
                },
                cap,
                record: prm.record_history && final_stage,
                omega: prm.omega,
                omega_max: prm.omega_max,
            };
            let mut outcome = None;
            if !use_log {
                match plain_stage(&stage, &g, e, &mut buf) {
                    Ok(o) => outcome = Some(o),
                    Err(_) if prm.log_domain == LogDomain::Never => {
                        return Err(StepError::Numerical {
                            solver: NAME.into(),
                            message: format!(
                                "the plain Gibbs kernel under- or overflowed at epsilon = {e:.3e}; \
                                 set solver.log_domain = \"auto\" or \"always\""
                            ),
                        });
                    }
                    Err(_) => {
                        use_log = true;
                        log_from = Some((s, e));
                    }
                }
            }
            let outcome = match outcome {
                Some(o) => o,
                None => log_stage(&stage, &g, e, &mut buf)?,
            };
            for w in 0..len {
                g[w] = if active[w] { e * buf.lb[w] } else { 0.0 };
            }
            total += outcome.iterations;
            per_stage.push(outcome.iterations);
            omega_used = omega_used.max(outcome.omega);
            last = Some(outcome);
        }
        let last = last.ok_or_else(|| StepError::Numerical {
            solver: NAME.into(),
            message: "empty epsilon schedule".into(),
        })?;
        if !last.violation.is_finite() {
            return Err(StepError::Numerical {
                solver: NAME.into(),
                message: format!(
                    "non-finite marginal violation after {total} iterations at epsilon = {eps:.3e}"
                ),
            });
        }
        let status = if last.converged {
            StepStatus::Solved
        } else if last.violation <= prm.almost_tol {
            notes.push(format!(
                "iteration cap reached: marginal violation {:.3e} above tol {:.1e}, below almost_tol {:.1e}",
                last.violation, prm.tol, prm.almost_tol
            ));
            StepStatus::AlmostSolved
        } else {
            let keep = last.history.len().saturating_sub(100);
            return Err(StepError::NotConverged {
                solver: NAME.into(),
                status: "max_iter".into(),
                iterations: total,
                primal_residual: last.violation,
                dual_residual: last.change,
                history: last.history[keep..].to_vec(),
            });
        };

        let rho = Array1::from_iter(map.iter().enumerate().map(|(k, &w)| buf.q[w] / vols[k]));
        if let Some(k) = rho.iter().position(|r| !r.is_finite()) {
            return Err(StepError::Numerical {
                solver: NAME.into(),
                message: format!("non-finite density at cell {k} (epsilon = {eps:.3e})"),
            });
        }
        let kinetic = if use_log {
            kernel.transport_cost_log(&buf.la, &buf.lb)?
        } else {
            kernel.transport_cost(&buf.a, &buf.b)?
        };
        let objective = kinetic / (2.0 * tau) + energy.value(mesh, &rho);
        let pot = Array1::from_iter(map.iter().map(|&w| g[w]));

        notes.push(format!(
            "epsilon = {eps:.3e}{}; {} stage(s) from {:.3e}, iterations per stage {:?}",
            if prm.epsilon.is_none() {
                " (mesh default 2h^2)"
            } else {
                ""
            },
            schedule.len(),
            schedule[0],
            per_stage
        ));
        notes.push(format!("over-relaxation: largest omega {omega_used:.3}"));
        notes.push(match log_from {
            None => "log-domain: not needed".into(),
            Some((0, _)) if prm.log_domain == LogDomain::Always => "log-domain: always".into(),
            Some((s, e)) => {
                format!("log-domain: from stage {s} (epsilon = {e:.3e}), plain kernel underflowed")
            }
        });
        notes.push(if tensor {
            "kernel: tensor product of 1D kernels".into()
        } else {
            format!(
                "kernel: dense {n_cells}x{n_cells} ({} bytes)",
                kernel.storage_bytes()
            )
        });
        if warm_used {
            notes.push("warm-started from the previous potential".into());
        }
        if energy.interaction_frozen {
            notes.push("interaction treated semi-implicitly (frozen in the potential)".into());
        }
        notes.push("kinetic = <c, pi>, the transport cost of the entropic plan".into());

        Ok(StepOutput {
            rho,
            flux: None,
            potential: Some(pot),
            info: StepInfo {
                solver: NAME.into(),
                status,
                iterations: total,
                primal_residual: last.violation,
                dual_residual: last.change,
                objective,
                kinetic,
                wall_time: start.elapsed().as_secs_f64(),
                history: last.history,
                notes,
                check: None,
            },
        })
    }
}

/// Squared diameter of the mesh's bounding box (of the grid box, or of the cell centres).
fn diameter2(mesh: &Mesh) -> f64 {
    if let Some(g) = mesh.as_grid() {
        return g
            .lower
            .iter()
            .zip(&g.upper)
            .map(|(l, u)| (u - l) * (u - l))
            .sum();
    }
    let d = mesh.dim();
    (0..d)
        .map(|a| {
            let (lo, hi) = (0..mesh.n_cells())
                .map(|k| mesh.centre(k)[a])
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| {
                    (l.min(x), h.max(x))
                });
            (hi - lo) * (hi - lo)
        })
        .sum()
}

impl StepSolver for SinkhornSolver {
    fn name(&self) -> &str {
        NAME
    }

    /// The entropic blur (ε KL(π|ξ)/(2τ)) is part of the minimised objective, so
    /// F(ρ⁺) + ⟨c, π⟩/(2τ) ≤ F(ρⁿ) is not a theorem for this scheme.
    fn satisfies_energy_inequality(&self) -> bool {
        false
    }

    /// Every term with a KL proximal map: entropy and potential (closed form), congestion
    /// (clipping), porous medium (Newton per cell), interaction (frozen into the potential).
    fn treats(&self, term: EnergyTerm) -> bool {
        match term {
            EnergyTerm::Entropy
            | EnergyTerm::Potential
            | EnergyTerm::MaxDensity
            | EnergyTerm::Porous
            | EnergyTerm::Interaction => true,
        }
    }

    fn step(
        &self,
        problem: &JkoStep<'_>,
        warm: Option<&WarmStart>,
    ) -> Result<StepOutput, StepError> {
        match &self.pool {
            Some(pool) => pool.install(|| self.solve(problem, warm)),
            None => self.solve(problem, warm),
        }
    }

    /// From `solve`: with the tensor-product kernel, arrays over the full grid G (inactive
    /// cells included): the eight `scaling::Buffers`, g, p, ln p, ln |K|, the potential,
    /// the active mask and the cell map, about 16 arrays of 8 B, doubled for the output and
    /// per-stage copies and the proximal maps' scratch; plus the 1D kernels, four tables of
    /// 2nₐ − 1 entries per axis. With the dense kernel: the N×N matrix
    /// (`DenseGibbsKernel::bytes_needed`, refused above `dense_limit_bytes` by the kernel
    /// itself) plus the same cell arrays.
    fn memory_estimate(&self, mesh: &Mesh, _terms: &[EnergyTerm]) -> Option<u64> {
        let tensor = self.params.kernel == KernelChoice::Auto && mesh.as_grid().is_some();
        let (len, kernel) = match mesh.as_grid() {
            Some(g) if tensor => (
                g.len() as u64,
                g.cells.iter().map(|&c| 4 * 8 * (2 * c as u64 - 1)).sum(),
            ),
            _ => (
                mesh.n_cells() as u64,
                DenseGibbsKernel::bytes_needed(mesh.n_cells()),
            ),
        };
        Some(kernel.saturating_add(32 * 8 * len))
    }
}

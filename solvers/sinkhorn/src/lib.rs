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
//! On grids ξ is applied as a tensor product of 1D kernels, one GEMM-based pass per axis
//! (O(N Σ_a w_a) work for bandwidths w_a, O(N) memory, never an N×N matrix; masks exact); on
//! general meshes as a dense N×N matrix, refused above `dense_limit_bytes` with the memory it
//! would need. Entries below the truncation level are exact zeros, never subnormals. See
//! [`kernel`].
//!
//! ## Stabilisation
//! - Scaling domain with absorption (the default; Schmitzer 2019, POT's
//!   `sinkhorn_stabilized`): the iteration runs on residual scalings, the (separable part of
//!   the) potentials absorbed into the kernel, re-absorbed when a residual leaves e^{±300} or the
//!   mass the truncation may drop exceeds 10⁻² tol. Two plain GEMM products per iteration.
//! - Log domain ([`LogDomain`]): iterations on ln a, ln b with log-sum-exp products, one
//!   exponential per kernel term. In `auto` mode it is used only where the scaling domain is not
//!   exact to the tolerance (potentials too far from separable, or a product vanishing where
//!   mass must go): that stage is rerun in the log domain, and the step notes say from which
//!   stage and why. Details and the bounds checked in the `scaling` module.
//! - Over-relaxation (`omega`): the updates are relaxed in the log domain with ω ∈ [1, 2),
//!   chosen per stage from the measured rate (SOR Sinkhorn; details in the `scaling` module).
//!   Plain Sinkhorn needs O(τ/ε) iterations here; the relaxed one about O(√(τ/ε)).
//! - ε-scaling ([`EpsilonScaling`], off by default: with the default ε it cost more iterations
//!   on every robustness case than it saved): stages ε₀ > θε₀ > … > ε, each from the previous
//!   stage's potential g = ε ln b (the potentials have the units of the cost, so they carry
//!   over between ε). Intermediate stages stop at a looser tolerance.
//! - Warm start: the step returns `potential` = g, the dual (Kantorovich) potential of the
//!   new density, g_K = ε ln b_K on every cell (finite wherever q_K > 0). Handed back through
//!   `WarmStart::potential`, it initialises b = e^{g/ε} of the next step. Only a potential
//!   from this backend is meaningful here (a flux potential φ of another backend is not g).
//!
//! ## Choosing ε
//! The entropic blur acts, to first order, as an extra temperature ε/(4τ) added to the
//! energy (module [`epsilon`]: derivation, and a test against the continuous entropic step of
//! a Gaussian). The default ties ε to the displacement of the step rather than to the mesh:
//! ε = clamp(0.25 τ² F², h², ε_max), F² the mean squared driving force at ρⁿ, so the bias
//! relative to the driving terms is O(τ), like the time discretisation itself, and the
//! iteration count ~ ½ ln(1/tol) √(1 + 2τβ/ε) does not grow as h → 0 (ε_max = max(h²,
//! min(4τβ·2.5 %, diam²/100)) does not depend on h either; why no mesh-tied cap, ε-schedule or
//! coarse correction could bound it: [`epsilon`]). The floor h² (blur of 0.7 cell) avoids lock-in: for ε ≪ h² the plan can no
//! longer move mass by less than a cell. By default (`debias`) the first-order bias is removed:
//! the proximal map runs at the temperature β − ε/(4τ) (the step stays convex; derivation and
//! bounds in [`epsilon`]), so what remains is second order in ε — on coarse meshes, where the
//! floor makes ε large against the step, this is the difference between an L1 error of 0.81 and
//! 0.08 (OU 2D, 10×10). Every step's notes state ε, the rule, the
//! extra temperature (absolute and relative to β), how much of it was removed, and the blur; a warning is added when the
//! estimated iteration count exceeds [`epsilon::LONG_SOLVE`] (a user ε that is too small).
//! The previous default, ε = 2h², made a 1024-cell line take ~3 000 iterations per step.
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

pub mod epsilon;
pub mod kernel;
mod multiscale;
pub mod params;
pub mod prox;
mod scaling;

pub use epsilon::EpsilonChoice;
pub use kernel::GibbsKernel;
pub use params::{EpsilonScaling, KernelChoice, LogDomain, SinkhornParams};
use prox::KlProx;
#[cfg(feature = "trace")]
pub use scaling::{TRACE, TraceEvent};

use jko_core::{
    BackendInfo, EnergyTerm, Grid, InputError, JkoStep, Mesh, StepError, StepInfo, StepOutput,
    StepSolver, StepStatus, WarmStart,
};
use ndarray::Array1;
use scaling::{Buffers, FLOOR, Stage, StageOutcome, Trouble, log_stage, scaling_stage};
use std::time::Instant;

const NAME: &str = "sinkhorn";

/// The entropic JKO backend (`"sinkhorn"`): generalised Sinkhorn on the entropic JKO step,
/// in the scaling domain with absorbed potentials (log domain where that is not exact),
/// ε-scaling and over-relaxation (see the crate docs for what a step returns).
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

    /// The ε a step uses and what it implies: [`SinkhornParams::epsilon`] when set, else the
    /// default rule ε = clamp(c τ² F², h², ε_max) (module [`epsilon`]), with the entropic bias
    /// (an extra temperature ε/(4τ)) and the estimated iteration count.
    ///
    /// ```rust
    /// use jko_core::{Energy, JkoStep, Mesh, Potential};
    /// use jko_sinkhorn::{SinkhornParams, SinkhornSolver};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[10, 4], &[0.0, 0.0], &[1.0, 1.0])?; // h = 0.1 and 0.25
    /// let rho = mesh.sample(|_| 1.0);
    /// let energy = Energy { entropy: Some(1.0), ..Energy::default() }.freeze(&mesh, &rho)?;
    /// let problem = JkoStep::new(&mesh, &rho, 0.1, &energy)?;
    /// // A uniform density under pure entropy does not move (F² = 0): the floor h², h the
    /// // largest spacing; the bias ε/(4τ) is removed from the proximal temperature.
    /// let default = SinkhornSolver::new(SinkhornParams::default())?.epsilon_for(&problem);
    /// assert!((default.epsilon - 0.25 * 0.25).abs() < 1e-15 && default.drive2 == 0.0);
    /// assert!((default.compensation - default.epsilon / 0.4).abs() < 1e-15);
    /// let fixed = SinkhornSolver::new(SinkhornParams { epsilon: Some(1e-3), ..SinkhornParams::default() })?;
    /// assert_eq!(fixed.epsilon_for(&problem).epsilon, 1e-3);
    /// # Ok(())
    /// # }
    /// ```
    pub fn epsilon_for(&self, problem: &JkoStep<'_>) -> EpsilonChoice {
        epsilon::choose(&self.params, problem)
    }

    /// One step; `negative_temperature` allows the debiased proximal temperature β′ = β − ε/(4τ)
    /// to go below 0 (module `epsilon`), otherwise it stops at β′ = 0.
    fn solve_step(
        &self,
        problem: &JkoStep<'_>,
        warm: Option<&WarmStart>,
        negative_temperature: bool,
    ) -> Result<StepOutput, StepError> {
        let start = Instant::now();
        let prm = &self.params;
        let mesh = problem.mesh;
        let energy = problem.energy;
        let tau = problem.tau;
        let choice = self.epsilon_for(problem);
        let eps = choice.epsilon;
        let n_cells = mesh.n_cells();
        let mut notes = vec![choice.describe(tau)];
        notes.extend(choice.warning());

        // Layout: full grid arrays for the tensor kernel, cell arrays for the dense one.
        let tensor = prm.kernel == KernelChoice::Auto && mesh.as_grid().is_some();
        let (shape, map): (Vec<usize>, Vec<usize>) = match (tensor, mesh.as_grid()) {
            (true, Some(g)) => (g.cells.clone(), mesh.grid_index().to_vec()),
            _ => (vec![n_cells], (0..n_cells).collect()),
        };
        let len: usize = shape.iter().product();

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

        let schedule = prm.schedule(eps, epsilon::diameter2(mesh), warm_used);
        let mut kernel = if tensor {
            GibbsKernel::new(mesh, schedule[0])?
        } else {
            GibbsKernel::dense(mesh, schedule[0], prm.dense_limit_bytes)?
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
        let (mass, ln_p) = floor_masses(&mut p);
        let beta = energy.entropy.unwrap_or(0.0);
        let prox_at = |e: f64| {
            KlProx::new(
                2.0 * tau / e,
                beta - epsilon::compensation(
                    prm.debias,
                    beta,
                    energy.max_density.is_some()
                        || energy.porous.is_some()
                        || !negative_temperature,
                    e,
                    tau,
                ),
                energy.porous,
                energy.max_density,
            )
        };

        // Multiscale start (module `multiscale`): unmasked grids, tensor kernel.
        let (mut coarse_note, mut multiscale_used) = (None, false);
        if let Some(grid) = mesh.as_grid().filter(|g| {
            prm.multiscale && tensor && prm.log_domain != LogDomain::Always && g.len() == n_cells
        }) && let Some(f) = multiscale::factor(grid, schedule[0])
        {
            let vol: Vec<f64> = ln_vol.iter().map(|x| x.exp()).collect();
            let level = Level {
                p: &p,
                vol: &vol,
                potential: &potential,
            };
            coarse_note = Some(
                match self.coarse_start(
                    grid,
                    f,
                    prox_at(schedule[0]),
                    schedule[0],
                    level,
                    &mut g,
                )? {
                    Some(c) => {
                        multiscale_used = true;
                        c
                    }
                    None => format!(
                        "multiscale start skipped: the coarse solve ({f}x coarser) needed the log domain"
                    ),
                },
            );
        }

        let mut buf = Buffers::new(len);
        let mut use_log = prm.log_domain == LogDomain::Always;
        let mut log_from: Option<(usize, f64, &'static str)> = if use_log {
            Some((0, schedule[0], "log_domain = always"))
        } else {
            None
        };
        let mut total = 0usize;
        let mut per_stage = Vec::with_capacity(schedule.len());
        let mut absorptions = 0usize;
        let mut omega_used: f64 = 1.0;
        let mut last: Option<StageOutcome> = None;
        for (s, &e) in schedule.iter().enumerate() {
            let final_stage = s + 1 == schedule.len();
            if s > 0 {
                kernel.set_epsilon(e)?;
            }
            let remaining = prm.max_iter.saturating_sub(total);
            let cap = if final_stage {
                remaining.max(1)
            } else {
                prm.epsilon_scaling.stage_max_iter.min(remaining / 2).max(1)
            };
            let stage = Stage {
                prox: prox_at(e),
                p: &p,
                ln_p: &ln_p,
                active: &active,
                ln_vol: &ln_vol,
                potential: &potential,
                shape: &shape,
                mass,
                tol: if final_stage {
                    prm.tol
                } else {
                    prm.epsilon_scaling.stage_tol
                },
                cap,
                record: prm.record_history && final_stage,
                near: s == 0 && multiscale_used,
                omega: prm.omega,
                omega_max: prm.omega_max,
                balance: prm.mass_balance,
            };
            let mut outcome = None;
            if !use_log {
                match scaling_stage(&stage, &mut kernel, &g, e, &mut buf) {
                    Ok(o) => outcome = Some(o),
                    Err(Trouble(why)) if prm.log_domain == LogDomain::Never => {
                        return Err(StepError::Numerical {
                            solver: NAME.into(),
                            message: format!(
                                "the scaling domain is not exact at epsilon = {e:.3e} ({why}); \
                                 set solver.log_domain = \"auto\" or \"always\""
                            ),
                        });
                    }
                    Err(Trouble(why)) => {
                        use_log = true;
                        log_from = Some((s, e, why));
                    }
                }
            }
            let outcome = match outcome {
                Some(o) => o,
                None => log_stage(&stage, &kernel, &g, e, &mut buf)?,
            };
            finite_potential(&buf.lb, &active, e, &mut g);
            total += outcome.iterations;
            per_stage.push(outcome.iterations);
            absorptions += outcome.absorptions;
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
            kernel.transport_cost(&buf.u, &buf.v)?
        };
        let objective = kinetic / (2.0 * tau) + energy.value(mesh, &rho);
        let pot = Array1::from_iter(map.iter().map(|&w| g[w]));

        notes.push(format!(
            "{} stage(s) from epsilon = {:.3e}, iterations per stage {:?}",
            schedule.len(),
            schedule[0],
            per_stage
        ));
        notes.push(format!("over-relaxation: largest omega {omega_used:.3}"));
        notes.push(match log_from {
            None => format!(
                "scaling domain with absorption throughout ({absorptions} absorptions; kernel bandwidths {:?}; kernel storage {} bytes)",
                kernel
                    .bandwidths()
                    .iter()
                    .map(|w| w.round() as usize)
                    .collect::<Vec<_>>(),
                kernel.storage_bytes()
            ),
            Some((0, _, why)) if prm.log_domain == LogDomain::Always => {
                format!("log-domain: always ({why})")
            }
            Some((s, e, why)) => {
                format!("log-domain: from stage {s} (epsilon = {e:.3e}): {why}")
            }
        });
        notes.push(if tensor {
            "kernel: tensor product of 1D kernels (GEMM per axis)".into()
        } else {
            format!(
                "kernel: dense {n_cells}x{n_cells} ({} bytes)",
                kernel.storage_bytes()
            )
        });
        notes.extend(coarse_note);
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

/// The iterations of a step's multiscale start (its coarse solve), read from the step notes;
/// `None` when the step had none (`StepInfo::iterations` counts the fine iterations only).
///
/// ```rust
/// use jko_core::{Energy, JkoStep, Mesh, StepSolver};
/// use jko_sinkhorn::{SinkhornParams, SinkhornSolver, coarse_iterations};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // 2048 cells, default ε at τ = 0.5: the blur spans many cells, the step starts coarse.
/// let mesh = Mesh::grid(&[2048], &[-5.0], &[5.0])?;
/// let rho = mesh.sample(|x| (-(x[0] - 1.0).powi(2) / 0.5).exp());
/// let rho = &rho / mesh.mass(&rho);
/// let energy = Energy::ornstein_uhlenbeck(1).freeze(&mesh, &rho)?;
/// let problem = JkoStep::new(&mesh, &rho, 0.5, &energy)?;
/// let out = SinkhornSolver::new(SinkhornParams::default())?.step(&problem, None)?;
/// assert!(coarse_iterations(&out.info).is_some_and(|n| n > 0));
/// # Ok(())
/// # }
/// ```
pub fn coarse_iterations(info: &StepInfo) -> Option<usize> {
    info.notes
        .iter()
        .find_map(|n| n.strip_prefix("multiscale start:"))
        .and_then(|n| n.split(" took ").nth(1))
        .and_then(|n| n.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The total mass of `p` (deterministic sum); masses below FLOOR · mass set to 0 (they carry
/// none: see the scaling module); and ln p (−∞ where 0).
fn floor_masses(p: &mut [f64]) -> (f64, Vec<f64>) {
    let mass = kernel::deterministic_sum(p.len(), |w| p[w]);
    for x in p.iter_mut() {
        if *x < FLOOR * mass {
            *x = 0.0;
        }
    }
    let ln_p = p
        .iter()
        .map(|&x| if x > 0.0 { x.ln() } else { f64::NEG_INFINITY })
        .collect();
    (mass, ln_p)
}

/// The arrays of a level of the multiscale start, in grid layout (unmasked grid).
struct Level<'a> {
    /// Masses of ρⁿ (0 below the floor).
    p: &'a [f64],
    /// Cell volumes.
    vol: &'a [f64],
    /// Cell potential V.
    potential: &'a [f64],
}

impl SinkhornSolver {
    /// The multiscale start (module `multiscale`): the step on the grid coarsened f times, at
    /// the same ε and proximal map, solved from the restriction of `g`; `g` is replaced by the
    /// prolonged coarse potential. Returns a note for the step record, or `None` (g unchanged)
    /// when the coarse level would need the log domain and `log_domain = "never"`.
    fn coarse_start(
        &self,
        grid: &Grid,
        f: usize,
        prox: KlProx,
        eps: f64,
        fine: Level<'_>,
        g: &mut [f64],
    ) -> Result<Option<String>, StepError> {
        let prm = &self.params;
        let shape = &grid.cells;
        let cg = multiscale::coarse_grid(grid, f);
        let cmesh = Mesh::grid(&cg.cells, &cg.lower, &cg.upper)?;
        let mut p = multiscale::restrict(shape, f, fine.p, false);
        let ln_vol: Vec<f64> = multiscale::restrict(shape, f, fine.vol, false)
            .iter()
            .map(|v| v.ln())
            .collect();
        let potential = multiscale::restrict(shape, f, fine.potential, true);
        let g0 = multiscale::restrict(shape, f, g, true);
        let len = p.len();
        let (mass, ln_p) = floor_masses(&mut p);
        let active = vec![true; len];
        let mut kernel = GibbsKernel::new(&cmesh, eps)?;
        let stage = Stage {
            prox,
            p: &p,
            ln_p: &ln_p,
            active: &active,
            ln_vol: &ln_vol,
            potential: &potential,
            shape: &cg.cells,
            mass,
            tol: multiscale::COARSE_TOL.max(prm.tol),
            cap: prm.max_iter,
            record: false,
            near: false,
            omega: prm.omega,
            omega_max: prm.omega_max,
            balance: prm.mass_balance,
        };
        let mut buf = Buffers::new(len);
        let (outcome, domain) = match scaling_stage(&stage, &mut kernel, &g0, eps, &mut buf) {
            Ok(o) => (o, "scaling domain"),
            Err(_) if prm.log_domain == LogDomain::Never => return Ok(None),
            Err(Trouble(_)) => (
                log_stage(&stage, &kernel, &g0, eps, &mut buf)?,
                "log domain",
            ),
        };
        let mut gc = vec![0.0; len];
        finite_potential(&buf.lb, &active, eps, &mut gc);
        g.copy_from_slice(&multiscale::prolong(shape, f, &gc));
        Ok(Some(format!(
            "multiscale start: the step on {:?} cells ({f}x coarser, same epsilon) took {} iterations \
             ({}, violation {:.1e}{}); its potential, prolonged, starts the iteration on this grid",
            cg.cells,
            outcome.iterations,
            domain,
            outcome.violation,
            if outcome.converged {
                ""
            } else {
                ", not converged"
            }
        )))
    }
}

/// g = ε ln b on the active cells, finite everywhere: where b = 0 (no mass arrives) the
/// smallest finite value (a low potential: the next stage or step starts with little mass
/// there); 0 on inactive cells.
fn finite_potential(lb: &[f64], active: &[bool], eps: f64, g: &mut [f64]) {
    let low = lb
        .iter()
        .zip(active)
        .filter(|(x, a)| **a && x.is_finite())
        .fold(f64::INFINITY, |m, (x, _)| m.min(*x));
    let low = if low.is_finite() { low } else { 0.0 };
    for ((gw, &x), &a) in g.iter_mut().zip(lb).zip(active) {
        *gw = if !a {
            0.0
        } else if x.is_finite() {
            eps * x
        } else {
            eps * low
        };
    }
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
        // A negative debiased temperature β′ < 0 is convex in theory (module `epsilon`) but the
        // property tests found steps where the iteration then stalls (1D with an attractive
        // interaction, a masked 2D grid with empty cells at small τ): such a step is solved again
        // with β′ ≥ 0 — the bias removed only in part, and the notes say so.
        let solve = || {
            let beta = problem.energy.entropy.unwrap_or(0.0);
            match self.solve_step(problem, warm, true) {
                Err(StepError::NotConverged { iterations, .. })
                    if self.epsilon_for(problem).compensation > beta =>
                {
                    let mut out = self.solve_step(problem, warm, false)?;
                    out.info.notes.push(format!(
                        "with the debiased temperature below 0 the solve did not converge in \
                         {iterations} iterations: solved again with it at 0 (bias removed in part)"
                    ));
                    Ok(out)
                }
                other => other,
            }
        };
        match &self.pool {
            Some(pool) => pool.install(solve),
            None => solve(),
        }
    }

    /// From `solve_step`: about 24 arrays over the kernel's layout (the full grid G with the tensor
    /// kernel: the stage buffers, p, ln p, ln |K|, the potential, g, the mask, the cell map and
    /// the transport-cost scratch), plus the kernel: per axis n_a rows of at most
    /// 2√(θ ε_max)/h_a + 2·TILE stored entries (on a 1D line one such row per tile of TILE rows,
    /// the Toeplitz-factored form; tiles of far tails where that form would under- or overflow
    /// are stored dense and not counted) (θ the truncation level at `tol`, ε_max the
    /// largest ε the step can use: `epsilon` when set, else the default rule's cap diam²/100,
    /// or the first ε-scaling stage when larger), doubled for the cost-weighted copy the
    /// transport cost builds. With the dense kernel: the N×N matrix
    /// ([`GibbsKernel::dense_bytes`], refused above `dense_limit_bytes` by the kernel itself).
    fn memory_estimate(&self, mesh: &Mesh, _terms: &[EnergyTerm]) -> Option<u64> {
        let tensor = self.params.kernel == KernelChoice::Auto && mesh.as_grid().is_some();
        let (len, kernel) = match mesh.as_grid() {
            Some(g) if tensor => {
                let h = epsilon::spacing(mesh);
                let mut eps_max = self
                    .params
                    .epsilon
                    .unwrap_or((h * h).max(epsilon::diameter2(mesh) / 100.0));
                if self.params.epsilon_scaling.enabled {
                    let start = self
                        .params
                        .epsilon_scaling
                        .start
                        .unwrap_or(epsilon::diameter2(mesh) / 100.0);
                    eps_max = eps_max.max(start);
                }
                let theta = scaling::truncation_level(self.params.tol, &g.cells);
                let line = g.cells.len() == 1;
                let bytes: f64 = g
                    .cells
                    .iter()
                    .zip(g.spacing())
                    .map(|(&n, h)| {
                        let band = (2.0 * (theta * eps_max).sqrt() / h + 2.0 * kernel::TILE as f64)
                            .min(n as f64);
                        // A line stores its tiles Toeplitz-factored: one row of b per tile of
                        // TILE rows, the row scales a and the table (module `kernel`).
                        let rows = if line {
                            (n as f64 / kernel::TILE as f64).ceil() + 3.0
                        } else {
                            n as f64
                        };
                        2.0 * 8.0 * rows * band
                    })
                    .sum();
                (g.len() as u64, bytes as u64)
            }
            _ => (
                mesh.n_cells() as u64,
                GibbsKernel::dense_bytes(mesh.n_cells()),
            ),
        };
        Some(kernel.saturating_add(24 * 8 * len))
    }
}

impl BackendInfo for SinkhornSolver {
    const NAME: &'static str = NAME;
    const SUMMARY: &'static str =
        "entropic JKO: generalised Sinkhorn, tensor-product Gibbs kernels, log-domain, eps-scaling";
    const PROXIMAL: bool = true;
}

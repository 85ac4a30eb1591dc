//! # jko-conic: the JKO step as a conic program, solved by Clarabel
//!
//! The foundation backend of the jko engine: it solves the one-step two-point-flux JKO
//! problem (DESIGN §2.1, the variational finite-volume scheme of Cancès, Gallouët and
//! Todeschi, Numer. Math. 2020) to interior-point accuracy, and the other backends are
//! checked against it.
//!
//! ## The problem
//!
//! On a mesh with cells K (volume |K|) and interior faces σ = K|L (area |σ|, centre distance
//! d_σ, transmissibility T_σ = |σ|/d_σ), with G_σ the mass moved across σ from `face.k` to
//! `face.l` and θ_σ = (ρ_K + ρ_L)/2:
//!
//! ```text
//! minimise   (1/(2τ)) Σ_σ G_σ²/(T_σ θ_σ) + Σ_K |K| [ f(ρ_K) + V_K ρ_K ]
//! subject to |K|(ρ_K − ρⁿ_K) + Σ_{σ∋K} ±G_σ = 0,   0 ≤ ρ_K (≤ ρ_max),
//! ```
//!
//! f(s) = β s log s + s^m/(m−1); V contains a frozen interaction term when there is one.
//!
//! ## The conic form
//!
//! Unknowns are scaled to be O(1): r = ρ/c with c = max ρⁿ, and per face the momentum-like
//! ĝ_σ = G_σ/(τ|σ|c). Then
//! - continuity (zero cone, one row per cell, divided by c|K|):
//!   r_K − rⁿ_K + (τ/|K|) Σ_{σ∋K} ±|σ| ĝ_σ = 0  (+ when `face.k == K`);
//! - kinetic: G²/(Tθ) = c τ²|σ|d_σ ĝ²/θ̂, θ̂ = (r_K + r_L)/2; an epigraph u_σ ≥ ĝ²/θ̂ is the
//!   second-order cone ‖(2ĝ, u − θ̂)‖ ≤ u + θ̂ (since (u+θ̂)² − (u−θ̂)² = 4uθ̂), objective
//!   (τ/2)|σ|d_σ c u_σ;
//! - entropy: t ≥ r log r ⇔ (−t, r, 1) ∈ K_exp = cl{x : x₂ e^{x₁/x₂} ≤ x₃}, and
//!   β ρ log ρ = βc (r log r + r log c);
//! - porous medium: t ≥ r^m ⇔ (t, 1, r) ∈ K_pow(1/m) = {x : x₁^α x₂^{1−α} ≥ |x₃|}, and
//!   ρ^m/(m−1) = c^m r^m/(m−1);
//! - potential: linear cost |K| V_K c r_K;
//! - r ≥ 0 always (the power cone admits r < 0), r ≤ ρ_max/c with congestion.
//!
//! The whole objective is divided by the mass M of ρⁿ (energy per unit mass), so that
//! Clarabel's relative gap tolerance has the same meaning whatever the mass.
//!
//! ## Dual potential
//!
//! With multipliers ψ_K of the continuity constraints (in mass units), stationarity in G gives
//! G_σ = τ T_σ θ_σ (ψ_L − ψ_K), so φ = τψ satisfies DESIGN's G_σ = T_σ θ_σ (φ_L − φ_K), and
//! stationarity in ρ_K gives
//!
//! ```text
//! |K|(f'(ρ_K) + V_K) + |K|φ_K/τ − (1/(4τ)) Σ_{σ∋K} T_σ (φ_L − φ_K)² = λ_K − μ_K,
//! ```
//!
//! λ_K ≥ 0, λ_K ρ_K = 0 (and μ_K ≥ 0, μ_K(ρ_max − ρ_K) = 0 with congestion). Clarabel's
//! Lagrangian is qᵀx + zᵀ(Ax − b); the scaled continuity row is C_K/(c|K|), so
//! φ_K = τ M z_K/(c |K|).
//!
//! ## Accuracy and status
//!
//! Accuracy of ρ is max|Δρ|/max ρ against a run at gap 1e-14 (measured, Clarabel 0.11.1):
//!
//! | problem                                 | gap 1e-10 | gap 1e-11 (default) | gap 1e-12 |
//! |-----------------------------------------|-----------|---------------------|-----------|
//! | OU 2D, 32², Gaussian                    | 2.5e-9    | 2.2e-10             | 5.9e-12   |
//! | OU 1D on [-3, 3], N = 100               | 1.3e-6    | 5.4e-9              | 1.5e-11   |
//! | OU 1D on [-5, 5] (tails 1e-31)          | 4.2e-9    | 3.7e-9 (stalls)     | stalls    |
//! | porous m = 2 (free boundary), N = 100   | 2.8e-6    | 9.8e-8              | 5.1e-9    |
//! | congestion 2D, 16², bound active        | 1.6e-6    | 4.0e-7              | 1.2e-7    |
//!
//! Mass is conserved to 1e-11 relative or better at tol_feas = 1e-10. The default gap
//! tolerance 1e-11 is the tightest that Clarabel usually reaches: it gives ~1e-8 on smooth
//! positive densities and ~1e-7 at free boundaries and active congestion bounds, which are
//! degenerate for interior-point methods. Below it, Clarabel's endgame often stalls (step
//! lengths collapse near a relative gap of 1e-11 to 1e-9), notably for densities with tails
//! many orders below their peak and with the faer solver in 2D; Clarabel then reports
//! `AlmostSolved`, which is returned as [`StepStatus::AlmostSolved`](jko_core::StepStatus)
//! with the achieved gap in the notes (or is an error when `accept_almost_solved` is false).
//! Any other Clarabel status is [`StepError::NotConverged`] naming it. Clarabel has no warm
//! start: a [`WarmStart`] is ignored.

mod one_step;
mod program;

pub use program::SolveTiming;

use jko_core::{
    EnergyTerm, InputError, JkoStep, StepError, StepInfo, StepOutput, StepSolver, WarmStart,
};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Sparse LDLᵀ factorisation used inside Clarabel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectSolver {
    /// QDLDL for 1D meshes, faer otherwise (faer's supernodal factorisation is reported 2-10x
    /// faster on 2D problems; QDLDL has less overhead on the banded 1D ones).
    #[default]
    Auto,
    Qdldl,
    Faer,
}

/// Parameters of the conic backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConicParams {
    /// Clarabel's absolute duality-gap tolerance (objective per unit mass).
    pub tol_gap_abs: f64,
    /// Clarabel's relative duality-gap tolerance.
    pub tol_gap_rel: f64,
    /// Clarabel's primal/dual feasibility tolerance.
    pub tol_feas: f64,
    /// Maximum number of interior-point iterations.
    pub max_iter: u32,
    pub direct_solver: DirectSolver,
    /// Return Clarabel's `AlmostSolved` as status `AlmostSolved` (true) or as an error (false).
    pub accept_almost_solved: bool,
    /// Print Clarabel's iteration log.
    pub verbose: bool,
}

impl Default for ConicParams {
    fn default() -> Self {
        ConicParams {
            tol_gap_abs: 1e-11,
            tol_gap_rel: 1e-11,
            tol_feas: 1e-10,
            max_iter: 100,
            direct_solver: DirectSolver::Auto,
            accept_almost_solved: true,
            verbose: false,
        }
    }
}

impl ConicParams {
    /// Tolerances finite and in (0, 1), at least one iteration.
    pub fn validate(&self) -> Result<(), InputError> {
        for (name, v) in [
            ("tol_gap_abs", self.tol_gap_abs),
            ("tol_gap_rel", self.tol_gap_rel),
            ("tol_feas", self.tol_feas),
        ] {
            if !(v.is_finite() && v > 0.0 && v < 1.0) {
                return Err(InputError::parameter(
                    name,
                    v,
                    "a tolerance must be finite and in (0, 1)",
                ));
            }
        }
        if self.max_iter == 0 {
            return Err(InputError::parameter(
                "max_iter",
                self.max_iter,
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// Timing of one step, for studies ([`ConicSolver::step_timed`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepTiming {
    /// Assembling the conic program, in seconds.
    pub build: f64,
    /// Clarabel's setup and iterations.
    pub clarabel: SolveTiming,
    pub iterations: usize,
}

/// The conic (Clarabel) backend for the one-step two-point-flux scheme.
#[derive(Debug, Clone)]
pub struct ConicSolver {
    params: ConicParams,
}

impl ConicSolver {
    pub fn new(params: ConicParams) -> Result<Self, InputError> {
        params.validate()?;
        Ok(ConicSolver { params })
    }

    pub fn params(&self) -> &ConicParams {
        &self.params
    }

    /// The linear solver actually used on `problem`.
    fn direct_solver(&self, problem: &JkoStep<'_>) -> DirectSolver {
        match self.params.direct_solver {
            DirectSolver::Auto if problem.mesh.dim() == 1 => DirectSolver::Qdldl,
            DirectSolver::Auto => DirectSolver::Faer,
            other => other,
        }
    }

    /// [`StepSolver::step`] that also reports where the time went.
    pub fn step_timed(
        &self,
        problem: &JkoStep<'_>,
        _warm: Option<&WarmStart>,
    ) -> Result<(StepOutput, StepTiming), StepError> {
        self.check_supported(problem.energy)?;
        let start = Instant::now();
        let (program, layout) = one_step::assemble(problem);
        let build = start.elapsed().as_secs_f64();
        let sol = program.solve(&self.params, self.direct_solver(problem))?;
        let rec = one_step::recover(problem, &layout, &sol, self.params.tol_feas)?;
        let kinetic = problem.mesh.kinetic_action(&rec.rho, &rec.flux);
        let objective =
            problem.energy.value(problem.mesh, &rec.rho) + kinetic / (2.0 * problem.tau);
        let mut notes = rec.notes;
        if sol.gap_rel > self.params.tol_gap_rel {
            notes.push(format!("relative duality gap {:.3e}", sol.gap_rel));
        }
        let info = StepInfo {
            solver: self.name().to_string(),
            status: sol.status,
            iterations: sol.iterations,
            primal_residual: sol.primal_residual,
            dual_residual: sol.dual_residual,
            objective,
            kinetic,
            wall_time: start.elapsed().as_secs_f64(),
            history: Vec::new(),
            notes,
        };
        let timing = StepTiming {
            build,
            clarabel: sol.timing,
            iterations: sol.iterations,
        };
        Ok((
            StepOutput {
                rho: rec.rho,
                flux: Some(rec.flux),
                potential: Some(rec.potential),
                info,
            },
            timing,
        ))
    }
}

impl StepSolver for ConicSolver {
    fn name(&self) -> &str {
        "conic"
    }

    fn treats(&self, term: EnergyTerm) -> bool {
        match term {
            EnergyTerm::Entropy
            | EnergyTerm::Porous
            | EnergyTerm::Potential
            | EnergyTerm::Interaction
            | EnergyTerm::MaxDensity => true,
        }
    }

    fn step(
        &self,
        problem: &JkoStep<'_>,
        warm: Option<&WarmStart>,
    ) -> Result<StepOutput, StepError> {
        self.step_timed(problem, warm).map(|(out, _)| out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_validate_and_round_trip() {
        assert!(ConicParams::default().validate().is_ok());
        let bad = ConicParams {
            tol_feas: 0.0,
            ..ConicParams::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("tol_feas"));
        let bad = ConicParams {
            max_iter: 0,
            ..ConicParams::default()
        };
        assert!(ConicSolver::new(bad).is_err());
        let p = ConicParams {
            direct_solver: DirectSolver::Faer,
            ..ConicParams::default()
        };
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains("\"direct_solver\":\"faer\""), "{json}");
        let back: ConicParams =
            serde_json::from_str(r#"{"direct_solver": "qdldl", "max_iter": 50}"#).unwrap();
        assert_eq!(back.direct_solver, DirectSolver::Qdldl);
        assert_eq!(back.max_iter, 50);
        assert_eq!(back.tol_feas, ConicParams::default().tol_feas);
        assert!(serde_json::from_str::<ConicParams>(r#"{"tolerance": 1e-8}"#).is_err());
    }
}

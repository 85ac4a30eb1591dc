//! Choosing ε: the default rule, the entropic bias it implies and the cost it implies.
//!
//! **Bias.** For small ε the entropic transport cost of a plan with marginals p, q is
//! OT_ε(p, q) = W²(p, q) + (ε/2)(H(p) + H(q)) + const + o(ε), H(q) = ∫ q ln q (for the cost
//! |x − y|²). The entropic JKO step, min_q OT_ε(ρⁿ, q)/(2τ) + F(q), is therefore to first order
//! the exact JKO step of F + (ε/(4τ)) H: **the blur acts as an extra temperature ε/(4τ)**. For
//! a Gaussian this is exact to first order: the continuous entropic step of N(m, s²) under
//! β H + (k/2)∫x²ρ solves (s′ − s)/τ − (β + ε/(4τ))/s′ + k s′ = O(ε²) (the closed form is in the
//! crate's tests). The step record states this temperature beside β.
//!
//! **Removing the bias (`debias`, on by default).** Since the blur adds the temperature
//! ε/(4τ) to first order, the proximal map is run with β′ = β − ε/(4τ) instead of β: the
//! entropic step is then the exact JKO step to second order in ε (measured on OU: the L1 gap to
//! the exact JKO iterate drops from 1e-2 to 1e-4 and below on resolved lines, and from 0.8 to
//! 0.08 on a 10×10 mesh, see the crate's tests). β′ may be negative (always for β = 0): the
//! step stays convex as long as β′ ≥ −ε/(2τ), because 2τβ′ Σ q ln q adds to the Hessian
//! ε diag(1/π) of the entropy a term ≥ 2τβ′/ε · ε diag(1/π) (Cauchy–Schwarz on
//! (Σ_K δπ_{KL})² ≤ q_L Σ_K δπ_{KL}²/π_{KL}).
//!
//! **When β′ < 0 is admissible (convergence).** Linearise one iteration at the solution, in
//! F = ln a, G = ln b: the a-update gives δF = −A δG (A_{KL} = π_{KL}/p_K), and the b-update
//! ln b = ln q − ln z with ln q = (ln z − const)/(1 + σβ′) gives δG = −κ δ ln z, δ ln z = B δF
//! (B_{LK} = π_{KL}/q_L), κ = σβ′/(1 + σβ′). So δG ← κ M δG with M = BA a Markov operator
//! similar to the positive semi-definite D_q^{−1/2} πᵀ D_p^{−1} π D_q^{−1/2}: its spectrum lies
//! in [0, 1], and that of the iteration in [κ, 0] when κ < 0. Plain updates then contract at
//! rate |κ| = −σβ′/(1 + σβ′), < 1 iff σβ′ > −1/2; β′ is kept ≥ −ε/(6τ) (σβ′ ≥ −1/3, rate
//! ≤ 1/2: ~35 iterations to 1e-10). Over-relaxation, which the positive spectrum of β′ ≥ 0
//! needs (rate κ → 1 as σβ′ grows), diverges on this one: with imaginary Jacobi eigenvalues
//! (μ² = κm < 0) SOR converges only for ω < 2/(1 + √|κ|) (Young), 1.17 at κ = −1/2, while the
//! automatic ω goes up to 1.95 — which is what stalled the two steps of the root property tests
//! (tests/properties.proptest-regressions) at 50 000 iterations. Hence: **a stage with β′ < 0
//! runs unrelaxed** (`scaling::Relaxation`), and β′ < 0 is used only where every cell has
//! κ ≤ 0, i.e. the proximal map is the closed form with one σβ′ for all cells. Under a
//! congestion bound (κ = 1 on the cells at the bound: δ ln q = 0) or with a porous term
//! (κ_K = 1 − 1/(1 + σβ′ + σ m ρ_K^{m−1}) > 0 on dense cells) the spectrum has both signs, the
//! positive part needs ω near 2 and the negative part forbids it: there β′ stays ≥ 0. Below
//! these bounds (β < ε/(12τ), or a congestion/porous step with β < ε/(4τ)) the bias is removed
//! only in part, and the step notes say so. Not removed at all without entropy (β = 0).
//!
//! **Default ε.** The one-step schemes and the JKO iterates themselves differ from the flow at
//! O(τ) over a fixed time, and a step's own error is O(δ²) relative, δ the distance mass moves in
//! it. Choosing ε ∝ δ² puts the entropic bias at that order too: ε/(4τ) relative to the driving
//! terms is then O(τ). The default is
//!
//!   ε = clamp(c · τ² · F², h², ε_max),   F² = (1/M) Σ_σ T_σ θ_σ Σ_terms (Δ_σ δF_term/δρ)²,
//!
//! c = `epsilon_factor` (0.25), F² the mean squared driving force of each energy term at ρⁿ
//! (entropy β ln ρ, pressure m ρ^{m−1}/(m − 1), potential V; a finite-volume ∫ ρ |∇ φ|² with
//! θ_σ the mean density of the face; faces with an empty side skip the entropy term), so τ²F²
//! is the squared displacement of a step. The floor h² keeps the blur √(ε/2) at least 0.7 cell
//! (well below it the plan cannot move mass by less than a cell: the discrete problem locks in;
//! measured on OU 10×10: L1 error 0.08 at h², 0.11 at h²/2, 0.27–0.40 at h²/4, 0.6 at h²/8),
//! and ε_max = max(h², min(4 τ β t, diam²/100)) keeps the extra temperature ε/(4τ) within
//! t = `max_extra_temperature` (2.5 %) of β, and the blur within a fraction of the domain.
//! With `debias` what is left of the bias is second order in ε/(4τβ); the cap was 10 % up to
//! round 5 of issue 16, which on OU 1D at τ = 0.5–1 (where it binds) left L1 errors of
//! 2–5·10⁻³ against the exact JKO iterate; at 2.5 % they are 1–3·10⁻⁴ for twice the iterations
//! and, on long lines, the same work (see "What it costs" below). Nothing in the rule depends
//! on h once h² is below c τ² F²: **as h → 0 the default ε, and with it the iteration count,
//! stays fixed** (next paragraph).
//!
//! **Which method bounds the count** (derivation behind the rule; round 6 of issue 16).
//! Linearised at the solution one plain iteration contracts a Fourier mode k of the error of
//! ln b by about κ m(k) (the over-relaxed one, the slowest mode by about 1 − 2√(1 − κ m(k))),
//! κ = σβ′/(1 + σβ′), m(k) ≈ e^{−k²ε/2} the symbol of the Markov operator M
//! (two passes of a kernel of variance ε/2), the constant mode removed by the mass balance.
//! So 1 − κ m(k) ≈ (ε/2)(1/(τβ′) + k²) for the smooth modes: the slow modes live at the
//! physical scale √(τβ′), not at the mesh scale, and their rate depends on ε alone, not on h.
//! Hence, for a fixed tolerance:
//! - **an h-dependent ε** (the previous cap 2(32h)²) gives σβ′ ∝ 1/h² and over-relaxed counts
//!   ∝ √(σβ′) ∝ 1/h — whatever else is done on the fine grid;
//! - **an ε-schedule** ending at that ε does not help: the last stage starts from the previous
//!   stage's solution, whose smooth error (the O(Δε) change of the bias) it must remove at the
//!   same rate 1 − O(√(ε/τβ)): ln(bias/tol)·√(τβ/ε) iterations, still ∝ 1/h;
//! - **coarse-grid corrections** (multigrid at the same ε) remove the smooth modes from the
//!   fine level, but the coarse grid must resolve the kernel (coarse spacing ≤ blur/√2, module
//!   `multiscale`), so the coarsest level has the same slow modes and its count grows ∝ 1/h;
//! - **an ε independent of h** bounds the count outright: ≈ ½ ln(1/tol) √(1 + 2τβ′/ε) with
//!   ε = c τ² F², i.e. √(1 + 8β′/(c τ F²)), a property of the problem and τ; at the
//!   temperature cap ε = 4τβt, √(1 + 1/(2t)) ≈ 4.6 at t = 2.5 %: ½ ln(10¹⁰) · 4.6 ≈ 53
//!   iterations (measured on OU 1D at τ = 0.5 and 1: 46–48 at 1024 to 16384 cells).
//!
//! What it costs: the kernel band is w ≈ 2√(θε)/h cells (θ ≈ 45 the truncation level), so one
//! product costs N·w. With a band kernel the work of a step, iterations × N·w ∝
//! √(τβ/ε) · N √(θε)/h = N √(τβθ)/h, does not depend on ε at all while w < n: the cap bought
//! nothing in work and cost the bounded count; once the band spans the whole axis (w = n) a
//! larger ε is strictly cheaper (fewer iterations at the same N·n). Work per cell bounded as
//! h → 0 needs a product whose cost does not grow with the band (an FFT convolution per line):
//! not exact in the scaling domain, where e^{Ĝ}ṽ spans far more than the 10⁻¹⁶ relative accuracy
//! of an FFT can carry (small outputs would be swamped by the round-off of the large ones), so
//! not used. Memory on a line stays O(N·w/32): Toeplitz tiles store one row of b per tile.
//!
//! **Cost.** The proximal map damps each b-update by the factor κ = σβ_e/(1 + σβ_e),
//! σ = 2τ/ε, β_e = β + max m ρ^{m−1} the stiffest internal-energy curvature ρ f''(ρ): plain
//! Sinkhorn contracts at about κ per iteration, the over-relaxed one at about 1 − 2√(1 − κ), so a
//! solve takes about ½ ln(1/tol) √(1 + 2τβ_e/ε) iterations — growing with τ/ε, not with the
//! number of cells. [`EpsilonChoice::estimated_iterations`] is this estimate (times a factor
//! measured on OU steps); above [`LONG_SOLVE`] the step notes carry a warning.

use crate::SinkhornParams;
use jko_core::{JkoStep, Mesh};

/// Estimated iterations above which a step's notes warn of a long solve.
pub const LONG_SOLVE: f64 = 20_000.0;

/// How a step's ε was chosen and what it implies (see the module docs of `epsilon`).
///
/// ```rust
/// use jko_core::{Energy, JkoStep, Mesh, Potential};
/// use jko_sinkhorn::{SinkhornParams, SinkhornSolver};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // OU from a Gaussian, 1000 cells on [-5, 5], τ = 0.05: ε = 0.25 τ² F² (above the floor h²,
/// // below the temperature cap 4τβ · 2.5 %).
/// let mesh = Mesh::grid(&[1000], &[-5.0], &[5.0])?;
/// let rho = mesh.sample(|x| (-(x[0] - 1.0).powi(2) / 0.5).exp());
/// let rho = &rho / mesh.mass(&rho);
/// let energy = Energy::fokker_planck(1.0, Potential::Quadratic { center: vec![0.0], stiffness: 1.0 })
///     .freeze(&mesh, &rho)?;
/// let solver = SinkhornSolver::new(SinkhornParams::default())?;
/// let choice = solver.epsilon_for(&JkoStep::new(&mesh, &rho, 0.05, &energy)?);
/// assert!(choice.default);
/// // Per term: E[(ρ'/ρ)²] + E[x²] = 4 + 1.25 for N(1, 0.5²) (entropy and potential).
/// assert!((choice.drive2 - 5.25).abs() < 0.01);
/// assert!((choice.epsilon - 0.25 * 0.05 * 0.05 * choice.drive2).abs() < 1e-12);
/// assert!((choice.extra_temperature - choice.epsilon / 0.2).abs() < 1e-15);
/// // At τ = 0.1 the rule's 1.3e-2 would add 3.3 % of β: ε is held at 4τβ · 2.5 % = 0.01.
/// let capped = solver.epsilon_for(&JkoStep::new(&mesh, &rho, 0.1, &energy)?);
/// assert!((capped.epsilon - 0.01).abs() < 1e-15 && capped.cap == capped.epsilon);
/// assert!(choice.estimated_iterations < 1000.0);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct EpsilonChoice {
    /// The regularisation ε (length²).
    pub epsilon: f64,
    /// True for the default rule, false when `epsilon` is set.
    pub default: bool,
    /// F², the mean squared driving force of the energy terms at ρⁿ.
    pub drive2: f64,
    /// The resolution floor h².
    pub floor: f64,
    /// The upper clamp ε_max of the default rule.
    pub cap: f64,
    /// The temperature the blur adds, ε/(4τ).
    pub extra_temperature: f64,
    /// The temperature β of the energy (0 without entropy).
    pub beta: f64,
    /// The temperature removed from the proximal map against the bias (`debias`; 0 when off):
    /// ε/(4τ), or less where β′ = β − ε/(4τ) would fall below −ε/(6τ).
    pub compensation: f64,
    /// Blur length √(ε/2).
    pub blur: f64,
    /// Estimated over-relaxed iterations to the tolerance (the last ε-stage).
    pub estimated_iterations: f64,
}

impl EpsilonChoice {
    /// A one-line account for the step notes.
    pub(crate) fn describe(&self, tau: f64) -> String {
        let rule = if self.default {
            format!(
                "default 0.25 tau^2 F^2 clamped to [h^2, eps_max] = [{:.3e}, {:.3e}], F^2 = {:.3e}",
                self.floor, self.cap, self.drive2
            )
        } else {
            "set by solver.epsilon".to_string()
        };
        let relative = if self.beta > 0.0 {
            format!(
                " ({:.2} % of beta = {})",
                100.0 * self.extra_temperature / self.beta,
                self.beta
            )
        } else {
            String::new()
        };
        let removed = if self.compensation == 0.0 {
            "not removed (debias = false)".to_string()
        } else if self.compensation < self.extra_temperature {
            format!(
                "removed in part: proximal temperature beta - {:.3e} (bounded below: beta' >= -eps/(6 tau), or >= 0 with congestion or porous term), residual {:.3e}",
                self.compensation,
                self.extra_temperature - self.compensation
            )
        } else {
            format!(
                "removed to first order: proximal temperature beta - eps/(4 tau) = {:.3e}",
                self.beta - self.compensation
            )
        };
        format!(
            "epsilon = {:.3e} ({rule}); entropic bias: acts as an extra temperature eps/(4 tau) = {:.3e}{relative} at tau = {tau}, {removed}; blur sqrt(eps/2) = {:.3e}",
            self.epsilon, self.extra_temperature, self.blur
        )
    }

    /// The warning of a long solve, if the estimate is above [`LONG_SOLVE`].
    pub(crate) fn warning(&self) -> Option<String> {
        (self.estimated_iterations > LONG_SOLVE).then(|| {
            format!(
                "warning: epsilon = {:.3e} is small against tau times the stiffness of the energy: \
                 about {:.0} iterations expected (each Sinkhorn iteration contracts by ~ 1 - 2 sqrt(eps / (2 tau beta))); \
                 leave solver.epsilon unset for the default, or raise it",
                self.epsilon, self.estimated_iterations
            )
        })
    }
}

/// Largest grid spacing, or the side of a cube of the mean cell volume on a general mesh.
pub(crate) fn spacing(mesh: &Mesh) -> f64 {
    match mesh.as_grid() {
        Some(g) => g.spacing().into_iter().fold(0.0, f64::max),
        None => {
            let mean = mesh.domain_volume() / mesh.n_cells() as f64;
            mean.powf(1.0 / mesh.dim().max(1) as f64)
        }
    }
}

/// Squared diameter of the mesh's bounding box (of the grid box, or of the cell centres).
pub(crate) fn diameter2(mesh: &Mesh) -> f64 {
    if let Some(g) = mesh.as_grid() {
        return g
            .lower
            .iter()
            .zip(&g.upper)
            .map(|(l, u)| (u - l) * (u - l))
            .sum();
    }
    (0..mesh.dim())
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

/// F² = (1/M) Σ_σ T_σ θ_σ Σ_terms (Δ_σ δF_term/δρ)² at ρⁿ (module docs).
pub(crate) fn drive2(problem: &JkoStep<'_>) -> f64 {
    let (mesh, rho, energy) = (problem.mesh, problem.rho_prev, problem.energy);
    let mut sum = 0.0;
    for f in mesh.faces() {
        let (a, b) = (rho[f.k], rho[f.l]);
        let theta = 0.5 * (a + b);
        if theta <= 0.0 {
            continue;
        }
        let mut s = 0.0;
        if let Some(beta) = energy.entropy
            && a > 0.0
            && b > 0.0
        {
            let d = beta * (b.ln() - a.ln());
            s += d * d;
        }
        if let Some(m) = energy.porous {
            let d = m / (m - 1.0) * (b.powf(m - 1.0) - a.powf(m - 1.0));
            s += d * d;
        }
        if let Some(v) = &energy.potential {
            let d = v[f.l] - v[f.k];
            s += d * d;
        }
        sum += f.transmissibility() * theta * s;
    }
    sum / problem.mass()
}

/// The temperature removed from the proximal map at regularisation `eps` (module docs):
/// ε/(4τ), capped so that β′ = β − it stays ≥ −ε/(6τ) (unrelaxed rate ≤ 1/2); 0 without
/// `debias` or without entropy; at most β when `mixed` (a congestion bound or a porous term:
/// cells with κ > 0, where the over-relaxation the step needs diverges if β′ < 0).
pub(crate) fn compensation(debias: bool, beta: f64, mixed: bool, eps: f64, tau: f64) -> f64 {
    if !debias || beta <= 0.0 {
        return 0.0;
    }
    let full = eps / (4.0 * tau);
    if mixed {
        full.min(beta)
    } else {
        full.min(beta + eps / (6.0 * tau))
    }
}

/// The ε of a step and what it implies.
pub(crate) fn choose(params: &SinkhornParams, problem: &JkoStep<'_>) -> EpsilonChoice {
    let mesh = problem.mesh;
    let tau = problem.tau;
    let energy = problem.energy;
    let beta = energy.entropy.unwrap_or(0.0);
    let h = spacing(mesh);
    let floor = h * h;
    let temperature_cap = if beta > 0.0 {
        4.0 * tau * beta * params.max_extra_temperature
    } else {
        f64::INFINITY
    };
    let cap = floor.max(temperature_cap.min(diameter2(mesh) / 100.0));
    let drive2 = drive2(problem);
    let (epsilon, default) = match params.epsilon {
        Some(e) => (e, false),
        None => (
            (params.epsilon_factor * tau * tau * drive2).clamp(floor, cap),
            true,
        ),
    };
    // β_e: the stiffest internal-energy curvature ρ f''(ρ) among the cells with mass.
    let porous = energy.porous.map_or(0.0, |m| {
        problem
            .rho_prev
            .iter()
            .fold(0.0f64, |acc, &r| acc.max(m * r.powf(m - 1.0)))
    });
    let compensation = compensation(
        params.debias,
        beta,
        energy.max_density.is_some() || energy.porous.is_some(),
        epsilon,
        tau,
    );
    let beta_e = (beta - compensation + porous).max(0.0);
    let estimated_iterations = ITERATION_FACTOR
        * 0.5
        * (1.0 / params.tol).ln()
        * (1.0 + 2.0 * tau * beta_e / epsilon).sqrt();
    EpsilonChoice {
        epsilon,
        default,
        drive2,
        floor,
        cap,
        extra_temperature: epsilon / (4.0 * tau),
        beta,
        compensation,
        blur: (0.5 * epsilon).sqrt(),
        estimated_iterations,
    }
}

/// Measured ratio of the iterations of over-relaxed steps to ½ ln(1/tol) √(1 + 2τβ_e/ε).
const ITERATION_FACTOR: f64 = 1.0;

#[cfg(test)]
mod tests {
    use super::*;
    use jko_core::{Energy, JkoStep, Mesh};

    /// The warning of a long solve comes from τ/ε alone: a user ε far below the default on a
    /// stiff step is flagged before any iteration, the default rule is not.
    #[test]
    fn a_small_user_epsilon_against_tau_is_warned_of() {
        let mesh = Mesh::grid(&[1024], &[-5.0], &[5.0]).unwrap();
        let rho = mesh.sample(|x| (-(x[0] - 1.0).powi(2) / 0.5).exp());
        let rho = &rho / mesh.mass(&rho);
        let energy = Energy::ornstein_uhlenbeck(1).freeze(&mesh, &rho).unwrap();
        let problem = JkoStep::new(&mesh, &rho, 1.0, &energy).unwrap();
        let default = choose(&SinkhornParams::default(), &problem);
        assert!(default.warning().is_none(), "{default:?}");
        let small = SinkhornParams {
            epsilon: Some(5e-7),
            ..SinkhornParams::default()
        };
        let choice = choose(&small, &problem);
        // ½ ln(1e10) √(1 + 2τβ′/ε) with β′ = β − ε/(4τ) ≈ 1: about 2.7e4 iterations.
        let expected = 0.5 * 1e10f64.ln() * (1.0 + 2.0 / 5e-7f64).sqrt();
        assert!((choice.estimated_iterations / expected - 1.0).abs() < 1e-3);
        let warning = choice.warning().expect("a warning");
        assert!(warning.contains("iterations expected"), "{warning}");
    }
}

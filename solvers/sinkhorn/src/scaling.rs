//! Generalised Sinkhorn iterations at one ε (one stage of the ε schedule).
//!
//! π = diag(a) ξ diag(b); one iteration is
//!   a ← p / (ξ b),   b ← prox_σ(ξᵀ a) / (ξᵀ a),   σ = 2τ/ε,
//! so that after it the second marginal q = b ⊙ ξᵀa is exactly the proximal map's output and
//! the first marginal a ⊙ ξb differs from p by the violation measured at the next iteration,
//! ‖a ⊙ ξb − p‖₁ / ‖p‖₁ (computed from the product ξb the next a-update needs anyway).
//!
//! **Scaling domain with absorption** ([`scaling_stage`], the default). The iteration runs on
//! residual scalings a = e^{F̂} ⊙ ũ, b = e^{Ĝ} ⊙ ṽ with the separable potentials (F̂, Ĝ)
//! absorbed into the kernel K̃ = diag(e^{F̂}) ξ diag(e^{Ĝ}) (see [`crate::kernel`]):
//!   ũ ← p / (K̃ṽ),   ln z = ln(K̃ᵀũ) − Ĝ,   ṽ ← prox_σ(z) / (K̃ᵀũ),
//! plain floating point and two GEMM-based products per iteration. The largest entry of each
//! row of K̃ is 1, so the mass its truncation drops from the plan is at most
//! T = max ṽ · Σũ · δ (δ from the kernel); every iteration checks T ≤ 10⁻² tol · Σq (the mass
//! of the current plan, which tends to the mass of ρⁿ), and when it
//! fails, or a residual scaling leaves e^{±[`RANGE`]}, the current potentials G = Ĝ + ln ṽ are
//! fitted again and absorbed (the iterate itself is unchanged: an exact change of variables;
//! a uniform growth of ṽ, compensated by ũ, needs none). When that cannot be
//! had — the potentials are too far from separable for the residuals to stay in range, or a
//! product vanishes where mass must go — the stage reports [`Trouble`] and the caller reruns
//! it in the log domain from the same starting potential. So the scaling domain is used
//! exactly where it is exact to the tolerance.
//!
//! **Log domain** ([`log_stage`]): the same iteration on ln a, ln b with log-sum-exp products
//! of the plain kernel; never under- or overflows, one exponential per kernel term.
//!
//! Masses below [`FLOOR`] · mass (in ρⁿ, or in the second marginal) are set to zero: they are
//! 10⁻¹⁵⁰ of the total, far below any tolerance, and would otherwise be carried as subnormal
//! numbers through the products.
//!
//! **Over-relaxation.** Each update is relaxed in the log domain, ln a ← ln a + ω(ln a* − ln a)
//! (same for b), with ω ∈ [1, 2). Linearised at the solution, Sinkhorn is block Gauss–Seidel on
//! the (positive definite) Hessian of the dual, so this is SOR: convergent for ω ∈ (0, 2), and
//! with the plain rate θ the choice ω* = 2/(1 + √(1 − θ)) brings the rate down to about ω* − 1
//! (Thibault, Chizat, Dossal, Papadakis 2021; Lehmann, von Renesse, Sambale, Uschmajew 2021).
//! In automatic mode θ is measured on the first plain iterations of each stage and ω is then
//! corrected from the observed rate (Young's relation, see `Relaxation`). When the violation
//! drops below tol/10 after a relaxed update, the next b-update is unrelaxed; if the violation
//! is then below tol the stage stops, otherwise relaxation resumes towards a 10× smaller
//! target. A stage therefore always ends on an unrelaxed b-update: q = b ⊙ ξᵀa is exactly the
//! proximal map's output (this is what makes ρ ≤ ρ_max hold to round-off).

use crate::kernel::{GibbsKernel, exp, fit_separable, ln, multiversion};
use crate::prox::KlProx;
use jko_core::InputError;
use rayon::prelude::*;

/// Absorb again when a residual scaling leaves e^{±RANGE} (overflow guard; exactness is
/// guarded by the truncation bound).
pub const RANGE: f64 = 300.0;
/// Growth e^{MARGIN} of the spread of the residual scalings a kernel is built to allow before
/// the next absorption (see `absorb`).
pub const MARGIN: f64 = 10.0;
/// Relative mass below which a cell carries none (see module docs).
pub const FLOOR: f64 = 1e-150;
/// Chunk length of the element-wise updates (fixed: results do not depend on threads).
const CHUNK: usize = 4096;
/// Plain iterations whose violations estimate the rate θ: θ = (v[B]/v[A])^{1/(B−A)}.
const RATE_FROM: usize = 4;
const RATE_TO: usize = 10;

/// Diagnostics (cargo feature `trace`, never in the library's default build): when set, called
/// after every iteration of a stage that records its history (the final fine stage with
/// `record_history`), with the iteration count, the violation measured before it, the ω of its
/// b-update, whether it was followed by an absorption, and ln b (−∞ where b = 0) in the
/// kernel's layout. Used by `examples/slow_mode.rs` to find the slow mode of the iteration.
#[cfg(feature = "trace")]
#[allow(clippy::type_complexity)]
pub static TRACE: std::sync::Mutex<Option<Box<dyn FnMut(TraceEvent<'_>) + Send>>> =
    std::sync::Mutex::new(None);

/// One iteration as seen by [`TRACE`].
#[cfg(feature = "trace")]
#[derive(Debug)]
pub struct TraceEvent<'a> {
    /// Iterations done.
    pub iteration: usize,
    /// Relative ℓ¹ marginal violation measured before the last b-update.
    pub violation: f64,
    /// ω of the last b-update.
    pub omega: f64,
    /// The iteration ended with an absorption.
    pub absorbed: bool,
    /// ln b = Ĝ + ln ṽ.
    pub ln_b: &'a [f64],
}

#[cfg(feature = "trace")]
fn trace(st: &Stage, it: usize, violation: f64, omega: f64, absorbed: bool, buf: &Buffers) {
    if !st.record {
        return;
    }
    let Ok(mut hook) = TRACE.lock() else { return };
    if let Some(f) = hook.as_mut() {
        let ln_b: Vec<f64> = (0..st.p.len())
            .map(|w| {
                if buf.v[w] > 0.0 {
                    buf.ghat[w] + buf.lv[w]
                } else {
                    f64::NEG_INFINITY
                }
            })
            .collect();
        f(TraceEvent {
            iteration: it,
            violation,
            omega,
            absorbed,
            ln_b: &ln_b,
        });
    }
}

/// Why a stage could not run in the scaling domain: the caller reruns it in the log domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trouble(pub &'static str);

/// The data of one stage, in the kernel's layout.
pub struct Stage<'a> {
    pub prox: KlProx,
    /// Masses of ρⁿ (0 on inactive cells and below the floor) and their logarithms.
    pub p: &'a [f64],
    pub ln_p: &'a [f64],
    pub active: &'a [bool],
    pub ln_vol: &'a [f64],
    pub potential: &'a [f64],
    /// Grid shape of the layout (one entry for a dense kernel).
    pub shape: &'a [usize],
    pub mass: f64,
    pub tol: f64,
    /// Iteration cap of the stage (≥ 1).
    pub cap: usize,
    pub record: bool,
    /// The start is close to the solution (prolonged from a coarse solve): the linearised rate
    /// applies from the first iterations (see `Relaxation`).
    pub near: bool,
    /// Relaxation ω: `None` for the automatic choice, `Some(1.0)` for plain Sinkhorn.
    pub omega: Option<f64>,
    pub omega_max: f64,
    /// Balance the mass of every b-update (`mass_balance`, see `mass_shift`).
    pub balance: bool,
}

/// How a stage ended.
#[derive(Debug, Clone)]
pub struct StageOutcome {
    pub iterations: usize,
    pub converged: bool,
    /// Final relative marginal violation.
    pub violation: f64,
    /// Relative ℓ¹ change of q in the last iteration.
    pub change: f64,
    /// Largest ω used.
    pub omega: f64,
    /// Absorptions (scaling domain; the first one included).
    pub absorptions: usize,
    pub history: Vec<f64>,
}

/// Work vectors, all of the kernel's length. After a scaling stage `u`, `v` hold the residual
/// scalings and `fhat`, `ghat` the absorbed potentials; after a log stage `la`, `lb` hold
/// ln a, ln b. After either, `lb` holds ln b (−∞ where b = 0) and `q` the second marginal.
pub struct Buffers {
    pub u: Vec<f64>,
    pub v: Vec<f64>,
    pub lv: Vec<f64>,
    pub la: Vec<f64>,
    pub lb: Vec<f64>,
    pub fhat: Vec<f64>,
    pub ghat: Vec<f64>,
    pub kb: Vec<f64>,
    pub ka: Vec<f64>,
    pub q: Vec<f64>,
    pub work: Vec<f64>,
}

impl Buffers {
    pub fn new(n: usize) -> Self {
        Buffers {
            u: vec![0.0; n],
            v: vec![0.0; n],
            lv: vec![f64::NEG_INFINITY; n],
            la: vec![f64::NEG_INFINITY; n],
            lb: vec![f64::NEG_INFINITY; n],
            fhat: vec![0.0; n],
            ghat: vec![0.0; n],
            kb: vec![0.0; n],
            ka: vec![0.0; n],
            q: vec![0.0; n],
            work: vec![0.0; n],
        }
    }
}

/// The largest truncation level of a stage (the first absorption's, with the spread bounded by
/// the number of cells N): θ = ln(100/tol) + ln N + MARGIN; later absorptions choose less.
pub fn truncation_level(tol: f64, shape: &[usize]) -> f64 {
    (100.0 / tol).ln() + (shape.iter().product::<usize>() as f64).ln() + MARGIN
}

/// Iterations near convergence (violation ≤ 10 tol) whose products are not exact (each followed
/// by an absorption) without the truncation bound shrinking by 10 %, after which the stage gives
/// up the scaling domain. (In a cold start the far tails of strongly damped steps take many
/// iterations to drain, with the bound shrinking steadily; that is progress.)
const PATIENCE: usize = 30;

/// The ω schedule of a stage.
///
/// Two-block Gauss–Seidel is consistently ordered, so Young's SOR theory applies to the
/// linearised iteration: with plain rate θ = μ², ω < ω* = 2/(1 + √(1 − μ²)) gives the rate ρ
/// solving (ρ + ω − 1)² = ρ ω² μ², and ω ≥ ω* gives ρ = ω − 1. The controller measures θ on
/// plain iterations, sets ω*, then re-measures ρ over windows: a rate well above ω − 1 means
/// μ² was underestimated (raise ω from Young's relation), a window without decrease means the
/// relaxation is too strong for the nonlinear iteration (halve ω − 1).
///
/// Where the start is close to the solution (multiscale) and the plain rate is known in closed
/// form it is not measured: with the closed-form
/// proximal map (no porous term) and no congestion bound, every cell has the same
/// κ = σβ′/(1 + σβ′), and the linearised iteration is κM with M a Markov operator whose
/// spectrum is in [0, 1] and contains 1 (module `epsilon`), so μ² = κ and
/// ω* = 2/(1 + 1/√(1 + σβ′)) is set after the first RATE_FROM plain iterations. (The measured
/// θ, taken early in the transient, underestimates μ²: on a 4096-cell line at τ = 1 the
/// measured schedule took 446 iterations after the multiscale start, ω* from the start 132.
/// From a cold or previous-step start the transient is not linear and the measured schedule
/// did better: 4096 cells τ = 1 cold, 626 iterations against 989 with ω*.)
struct Relaxation {
    fixed: Option<f64>,
    /// ω* from the closed-form rate, until it is used.
    known: Option<f64>,
    max: f64,
    omega: f64,
    /// Violations since the last change of ω.
    window: Vec<f64>,
    /// Smallest violation since ω was last changed.
    best: f64,
    /// The tolerance was met after a relaxed update: one update with ω = 1 follows.
    finishing: bool,
    /// ω to return to when the unrelaxed update missed the tolerance.
    resume: f64,
    /// Relaxed phases aim at `margin · tol`, so that the final unrelaxed update (which
    /// undoes part of the last relaxed step) lands below `tol`.
    margin: f64,
    largest: f64,
}

/// Window (iterations) over which a rate is measured.
const WINDOW: usize = 20;
/// Iterations after a change of ω before its rate is judged (the transient of the change;
/// see `Relaxation::observe`). Measured on a 16384-cell line (τ = 0.1, ω* = 1.884 after the
/// multiscale start): the violation grows 11× over the first 6 iterations and is back at its
/// starting level after ~30; judged over the first 20 (the previous rule) ω was halved, raised
/// again from the measured rate, halved …: 828 iterations at ω ∈ [1.37, 1.73] against 159
/// at ω* held. At ω near 2 the transient lasts longer, see `Relaxation::grace`.
const GRACE: usize = 2 * WINDOW;
/// Growth of the violation over its best since the last change of ω that counts as a
/// divergence at once (otherwise the envelope of a window is judged after the transient).
const BLOW_UP: f64 = 1e3;

impl Relaxation {
    fn new(st: &Stage) -> Self {
        // A negative proximal temperature (the debiased β′ < 0, module `epsilon`) puts the
        // spectrum of the linearised iteration in [κ, 0], κ = σβ′/(1 + σβ′) ∈ [−½, 0): plain
        // updates contract at |κ| ≤ ½, and over-relaxation diverges from ω = 2/(1 + √|κ|) on
        // (Young: imaginary Jacobi eigenvalues). Such steps run unrelaxed.
        let negative = st.prox.beta < 0.0;
        Relaxation {
            fixed: if negative { Some(1.0) } else { st.omega },
            known: (st.near && st.prox.closed_form() && st.prox.max_density.is_none() && !negative)
                .then(|| {
                    let sb = st.prox.sigma * st.prox.beta;
                    2.0 / (1.0 + 1.0 / (1.0 + sb).sqrt())
                }),
            max: st.omega_max,
            omega: 1.0,
            window: Vec::new(),
            best: f64::INFINITY,
            finishing: false,
            resume: 1.0,
            margin: 0.1,
            largest: 1.0,
        }
    }

    /// Iterations after the last change of ω before its rate is judged: [`GRACE`], or four
    /// e-folds of the relaxed rate ω − 1 when that is longer (ω near 2).
    fn grace(&self) -> usize {
        GRACE.max((4.0 / (2.0 - self.omega)).ceil() as usize)
    }

    fn set(&mut self, omega: f64, v: f64) {
        self.omega = omega;
        self.window.clear();
        self.window.push(v);
        self.best = v;
        self.largest = self.largest.max(omega);
    }

    /// Record the violation measured before iteration `it`; returns whether the stage may
    /// stop (tolerance met and the last update unrelaxed).
    fn observe(&mut self, it: usize, v: f64, tol: f64) -> bool {
        if self.finishing {
            if v <= tol {
                return true;
            }
            // the unrelaxed update missed: resume relaxing towards a smaller target
            self.finishing = false;
            self.margin *= 0.1;
            self.omega = self.resume;
            return false;
        }
        if self.omega == 1.0 && v <= tol {
            return true;
        }
        if self.omega > 1.0 && v <= self.margin * tol {
            self.finishing = true;
            self.resume = self.omega;
            self.omega = 1.0;
            return false;
        }
        if let Some(w) = self.fixed {
            if it >= 1 && self.omega != w {
                self.set(w, v);
            }
            return false;
        }
        self.window.push(v);
        self.best = self.best.min(v);
        // Right after ω is raised the violation grows for a while before it decays at the
        // relaxed rate (SOR is not normal: near ω* its modes are nearly defective, and the
        // prolonged or warm start excites them), and with ω ≥ ω* the eigenvalues are complex:
        // the violation oscillates under a decaying envelope. So only a blow-up backs off at
        // once; otherwise the envelope (largest violation per window) is judged, after the
        // transient.
        let len = self.window.len();
        if self.omega > 1.0 && v > BLOW_UP * self.best {
            // diverging: back off
            let w = 1.0 + 0.5 * (self.omega - 1.0);
            self.set(if w < 1.05 { 1.0 } else { w }, v);
            return false;
        }
        if self.omega == 1.0 {
            // plain: skip the first iterations (transient), then ω* from the closed-form rate
            // or θ measured over a short window
            if let Some(w) = self.known
                && len > RATE_FROM
            {
                self.known = None;
                if w > 1.05 {
                    self.set(w.min(self.max), v);
                }
            } else if len > RATE_TO {
                let theta = (self.window[RATE_TO] / self.window[RATE_FROM])
                    .powf(1.0 / (RATE_TO - RATE_FROM) as f64);
                if theta.is_finite() && theta > 0.5 && theta < 1.0 {
                    self.set((2.0 / (1.0 + (1.0 - theta).sqrt())).min(self.max), v);
                } else {
                    self.window.clear();
                }
            }
        } else if len > self.grace() + WINDOW {
            let envelope =
                |r: std::ops::Range<usize>| self.window[r].iter().fold(0.0f64, |a, &b| a.max(b));
            let rho = (envelope(len - WINDOW..len) / envelope(len - 2 * WINDOW..len - WINDOW))
                .powf(1.0 / WINDOW as f64);
            let w = self.omega;
            if rho.is_nan() || rho >= 1.0 {
                let back = 1.0 + 0.5 * (w - 1.0);
                self.set(if back < 1.05 { 1.0 } else { back }, v);
            } else if rho > 1.1 * (w - 1.0) + 0.01 {
                let mu2 = (rho + w - 1.0).powi(2) / (rho * w * w);
                if mu2 < 1.0 {
                    let target = (2.0 / (1.0 + (1.0 - mu2).sqrt())).min(self.max);
                    if target > w + 1e-3 {
                        self.set(target, v);
                    } else {
                        self.window.remove(0);
                    }
                } else {
                    self.window.remove(0);
                }
            } else {
                self.window.remove(0);
            }
        }
        false
    }
}

/// x + ω (y − x), with −∞ handled (a cell without mass stays without mass).
#[inline]
fn relax(x: f64, y: f64, omega: f64) -> f64 {
    if omega == 1.0 || y == f64::NEG_INFINITY || x == f64::NEG_INFINITY {
        y
    } else {
        x + omega * (y - x)
    }
}

/// Absorb the current potentials into the kernel and rebuild it. First call (`first`): the
/// starting potential G = g/ε (in `lb`) is fitted and absorbed as column potential. Later calls:
/// the row potential F = F̂ + ln ũ of the current iterate (on the rows with mass) is fitted and
/// absorbed, so that every column's largest kernel entry sits on a row that carries mass (the
/// b-side products are the ones the proximal map amplifies); G = Ĝ + ln ṽ is carried over
/// exactly. Recomputes ũ, ṽ (0 where out of range: no previous value / no mass), then chooses
/// the truncation level from the spread S = Σṽ Σũ / mass of the residual scalings:
/// θ = ln(100/tol) + ln S + MARGIN (S = N before the first a-update), so that the bounds of
/// the module docs hold until S has grown by e^{MARGIN}. Returns δ = e^{−θ}.
fn absorb(st: &Stage, kernel: &mut GibbsKernel, buf: &mut Buffers, first: bool) -> f64 {
    let len = st.p.len();
    if !first {
        for w in 0..len {
            buf.lb[w] = if buf.v[w] > 0.0 {
                buf.ghat[w] + buf.lv[w]
            } else {
                f64::NEG_INFINITY
            };
        }
    }
    for w in 0..len {
        buf.la[w] = if buf.u[w] > 0.0 {
            buf.fhat[w] + buf.u[w].ln()
        } else {
            f64::NEG_INFINITY
        };
    }
    if first {
        let weight: Vec<bool> = (0..len)
            .map(|w| st.active[w] && buf.lb[w].is_finite())
            .collect();
        kernel.absorb(fit_separable(st.shape, &buf.lb, &weight), false);
    } else {
        let weight: Vec<bool> = (0..len)
            .map(|w| st.p[w] > 0.0 && buf.la[w].is_finite())
            .collect();
        kernel.absorb(fit_separable(st.shape, &buf.la, &weight), true);
    }
    kernel.absorbed(&mut buf.fhat, &mut buf.ghat);
    for w in 0..len {
        let lv = buf.lb[w] - buf.ghat[w];
        (buf.lv[w], buf.v[w]) = if lv.is_finite() && lv.abs() <= RANGE {
            (lv, exp(lv))
        } else {
            (f64::NEG_INFINITY, 0.0)
        };
        // ũ = 0 means "no previous value": the next a-update is then unrelaxed there.
        let lu = buf.la[w] - buf.fhat[w];
        buf.u[w] = if lu.abs() <= RANGE { exp(lu) } else { 0.0 };
    }
    let (sum_u, sum_v): (f64, f64) = (buf.u.iter().sum(), buf.v.iter().sum());
    let spread = if first || sum_u == 0.0 {
        len as f64
    } else {
        (sum_u * sum_v / st.mass).max(1.0)
    };
    let theta = (100.0 / st.tol).ln() + spread.ln() + MARGIN;
    kernel.truncate(theta);
    kernel.truncation()
}

/// Lanes of the reductions (fixed order, vectorised by the compiler).
const L: usize = 8;

/// Σ s(i) (three sums), max m(i) and any(bad(i)) over 0..n, `$f` an expression of `$i` giving
/// (s, m, bad): L lanes combined in a fixed order (expanded in place so that the lane loop
/// vectorises).
macro_rules! reduce {
    ($n:expr, |$i:ident| $f:expr) => {{
        let n = $n;
        let mut sum = [[0.0f64; L]; 3];
        let mut max = [f64::NEG_INFINITY; L];
        let mut bad = [false; L];
        let full = n / L * L;
        for b in (0..full).step_by(L) {
            for l in 0..L {
                let $i = b + l;
                let (s, m, x): ([f64; 3], f64, bool) = $f;
                for k in 0..3 {
                    sum[k][l] += s[k];
                }
                max[l] = if m > max[l] { m } else { max[l] };
                bad[l] |= x;
            }
        }
        for $i in full..n {
            let (s, m, x): ([f64; 3], f64, bool) = $f;
            for k in 0..3 {
                sum[k][0] += s[k];
            }
            max[0] = if m > max[0] { m } else { max[0] };
            bad[0] |= x;
        }
        let total =
            |a: &[f64; L]| ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
        (
            [total(&sum[0]), total(&sum[1]), total(&sum[2])],
            max.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b)),
            bad.iter().any(|&b| b),
        )
    }};
}

/// Reduce per-chunk results in chunk order.
fn combine(parts: &[([f64; 3], f64, bool)]) -> ([f64; 3], f64, bool) {
    let mut out = ([0.0; 3], f64::NEG_INFINITY, false);
    for (s, m, b) in parts {
        for (o, x) in out.0.iter_mut().zip(s) {
            *o += x;
        }
        out.1 = out.1.max(*m);
        out.2 |= *b;
    }
    out
}

multiversion! {
/// One chunk of the a-update: next ũ ← p / (K̃ṽ), relaxed in the log domain as
/// ũ (p / (ũ K̃ṽ))^ω where a previous ũ exists. A row whose product vanishes (its kernel row
/// sees only cells without mass yet) gets ũ = 0: its mass is dropped and counted. Returns
/// (violation Σ|ũ K̃ṽ − p| of the current ũ, Σ next, dropped mass), max next, ·.
fn a_chunk(p: &[f64], kb: &[f64], u: &[f64], next: &mut [f64], omega: f64) -> ([f64; 3], f64, bool) {
    let n = next.len();
    assert!(p.len() == n && kb.len() == n && u.len() == n);
    // A pure map first (vectorises), then the reductions.
    for i in 0..n {
        let plain = p[i] / kb[i];
        let x = if omega == 1.0 {
            plain
        } else {
            let relaxed = u[i] * exp(omega * ln(plain / u[i]));
            if u[i] > 0.0 { relaxed } else { plain }
        };
        next[i] = if p[i] > 0.0 && x > 0.0 && x < f64::INFINITY { x } else { 0.0 };
    }
    reduce!(n, |i| {
        let x = next[i];
        let dropped = if p[i] > 0.0 && x == 0.0 { p[i] } else { 0.0 };
        ([(u[i] * kb[i] - p[i]).abs(), x, dropped], x, false)
    })
}
}

multiversion! {
/// One chunk of the b-update, cells `base..` (`qn`: scratch): ln z = ln K̃ᵀũ − Ĝ,
/// ln q = prox(ln z), ln ṽ ← relax(ln ṽ, ln q − ln K̃ᵀũ). Cells without mass (inactive, or q
/// below the floor) get ṽ = 0, ln ṽ = −∞, q = 0. An active cell whose product K̃ᵀũ is 0 (all of
/// its column truncated) gets q = 0, and the mass the proximal map would give to the largest
/// value the truncation may have hidden, K̃ᵀũ = e^{lk_hidden}, is counted. Returns (Σ|Δq|,
/// Σ q/K̃ᵀũ, hidden mass), max ln ṽ, bad (an active cell with a non-finite product).
#[allow(clippy::too_many_arguments)]
fn b_chunk(
    st: &Stage,
    base: usize,
    ka: &[f64],
    ghat: &[f64],
    v: &mut [f64],
    lv: &mut [f64],
    q: &mut [f64],
    qn: &mut [f64],
    omega: f64,
    ln_floor: f64,
    lk_hidden: f64,
) -> ([f64; 3], f64, bool) {
    let n = v.len();
    let r = base..base + n;
    let (ka, ghat) = (&ka[r.clone()], &ghat[r.clone()]);
    let (act, lnv, pot) = (&st.active[r.clone()], &st.ln_vol[r.clone()], &st.potential[r]);
    let prox = st.prox;
    // Equal lengths, stated once: the loops below run without bounds checks.
    assert!(
        ka.len() == n && ghat.len() == n && act.len() == n && lnv.len() == n && pot.len() == n
            && lv.len() == n && q.len() == n && qn.len() == n
    );
    // A pure map first (vectorises with the closed-form proximal map; the porous Newton solve
    // does not), then the reductions.
    macro_rules! map {
        ($log_mass:ident) => {
            for i in 0..n {
                let k = ka[i];
                let lk = ln(k);
                let lq = prox.$log_mass(lk - ghat[i], lnv[i], pot[i]);
                let target = lq - lk;
                let l = if omega == 1.0 || lv[i] == f64::NEG_INFINITY {
                    target
                } else {
                    lv[i] + omega * (target - lv[i])
                };
                let x = exp(l);
                let qx = if omega == 1.0 { x * k } else { exp(lq) };
                let keep = act[i] & (k > 0.0) & (lq >= ln_floor) & (lq < f64::INFINITY);
                let bad = act[i] & !(0.0..f64::INFINITY).contains(&k);
                v[i] = if keep { x } else { 0.0 };
                lv[i] = if keep { l } else { f64::NEG_INFINITY };
                qn[i] = if bad { f64::NAN } else if keep { qx } else { 0.0 };
            }
        };
    }
    if prox.closed_form() {
        map!(log_mass_closed);
    } else {
        map!(log_mass);
    }
    let out = reduce!(n, |i| {
        let x = qn[i];
        let ratio = if x > 0.0 { x / ka[i] } else { 0.0 };
        let hidden = if act[i] && ka[i] == 0.0 {
            let lq = prox.log_mass(lk_hidden - ghat[i], lnv[i], pot[i]);
            if lq >= ln_floor { exp(lq) } else { 0.0 }
        } else {
            0.0
        };
        ([(x - q[i]).abs(), ratio, hidden], lv[i], x.is_nan())
    });
    for i in 0..n {
        q[i] = if qn[i].is_nan() { 0.0 } else { qn[i] };
    }
    out
}
}

/// The mass balance of a b-update: the shift t of the row potential, a ← a e^t (so
/// z = ξᵀa ← z e^t), after which the proximal map's output has the mass of ρⁿ,
/// Σ_L prox(z_L e^t) = Σ p. `lz(w)` is ln z of cell w (−∞ where z = 0).
///
/// **Why.** Linearised at the solution the b-update damps every error δG of ln b by
/// κ M (module `epsilon`), and the top eigenvector of the Markov operator M is the constant:
/// a uniform error of ln b (too much or too little mass arriving) decays only as κ^k, and
/// κ = σβ′/(1 + σβ′) → 1 as τ/ε grows. On a 16384-cell line (τ = 0.1, ε = 7.6e-4, κ = 0.996)
/// the error of the iterate at a violation 1e-8 was this constant to 5·10⁻⁶ of its energy
/// (examples/slow_mode.rs). The shift removes it exactly: maximising the (concave) dual over
/// the new ln b and a common shift t of ln a at once gives, by the envelope theorem,
/// d/dt = ε (Σ p − Σ prox(z e^t)) = 0 — so this is exact block ascent, the fixed point is
/// unchanged (t = 0 there), and the linearised iteration becomes κ M P, P the projection
/// removing the q-weighted mean.
///
/// With the closed-form map ln q = (ln z + t − c)/(1 + σβ′) uncapped cells scale by
/// e^{t/(1+σβ′)}: one pass gives t; cells at the congestion bound do not move, which a
/// safeguarded Newton iteration on ln Σq handles. Not done for the porous map (a Newton solve
/// per cell per evaluation; t = 0) or when 1 + σβ′ ≤ 0. Sums in fixed chunks (deterministic).
fn mass_shift(st: &Stage, lz: impl Fn(usize) -> f64 + Sync) -> f64 {
    let prox = st.prox;
    let b = 1.0 + prox.sigma * prox.beta;
    if !prox.closed_form() || b <= 0.0 || st.mass <= 0.0 {
        return 0.0;
    }
    let len = st.p.len();
    let ln_floor = (FLOOR * st.mass).ln();
    // (Σ q, Σ q over the cells below the bound) at shift t.
    let sums = |t: f64| -> (f64, f64) {
        let parts: Vec<(f64, f64)> = (0..len.div_ceil(CHUNK))
            .into_par_iter()
            .map(|c| {
                let (mut all, mut free) = (0.0, 0.0);
                for w in c * CHUNK..((c + 1) * CHUNK).min(len) {
                    if !st.active[w] {
                        continue;
                    }
                    let l = lz(w);
                    if l == f64::NEG_INFINITY {
                        continue;
                    }
                    let lq = prox.log_mass_closed(l + t, st.ln_vol[w], st.potential[w]);
                    if lq >= ln_floor && lq < f64::INFINITY {
                        let q = exp(lq);
                        all += q;
                        if lq < st.ln_vol[w] + prox.ln_max_density {
                            free += q;
                        }
                    }
                }
                (all, free)
            })
            .collect();
        parts
            .iter()
            .fold((0.0, 0.0), |(a, f), (x, y)| (a + x, f + y))
    };
    // Newton on ln Σq(t) − ln Σp, d/dt ln Σq = (Σ free q)/(b Σq): exact in one step without
    // the bound; with it, the best shift seen is kept (never worse than none).
    let (mut t, mut best) = (0.0, (f64::INFINITY, 0.0));
    for _ in 0..30 {
        let (all, free) = sums(t);
        let gap = (all / st.mass).ln();
        if !gap.is_finite() {
            break;
        }
        if gap.abs() < best.0 {
            best = (gap.abs(), t);
        }
        if gap.abs() < 1e-14 || free <= 0.0 || (prox.max_density.is_none() && t != 0.0) {
            break;
        }
        t -= gap * b * all / free;
        if !t.is_finite() {
            break;
        }
        if prox.max_density.is_none() {
            return t;
        }
    }
    best.1
}

/// What both stages keep from iteration to iteration: the count, the relative marginal
/// violation of the current a, the relative ℓ¹ change of q in the last b-update, the violations
/// recorded (when the stage records them) and the over-relaxation that picks ω.
struct Progress {
    it: usize,
    violation: f64,
    change: f64,
    history: Vec<f64>,
    relaxation: Relaxation,
}

impl Progress {
    fn new(st: &Stage) -> Self {
        Progress {
            it: 0,
            violation: f64::INFINITY,
            change: f64::INFINITY,
            history: Vec::new(),
            relaxation: Relaxation::new(st),
        }
    }

    /// ω of this iteration's next update (1 in the first iteration: no rate is measured yet).
    fn omega(&self) -> f64 {
        if self.it == 0 {
            1.0
        } else {
            self.relaxation.omega
        }
    }

    /// Take Σ_K |a_K (K̃b)_K − p_K| of the current a (from the second iteration on): kept
    /// relative to the mass and recorded when the stage records. `None` when it is not finite,
    /// else whether the relaxation lets the stage stop (it may change ω).
    fn observe(&mut self, st: &Stage, violation: f64) -> Option<bool> {
        self.violation = violation / st.mass;
        if st.record {
            self.history.push(self.violation);
        }
        self.violation
            .is_finite()
            .then(|| self.relaxation.observe(self.it, self.violation, st.tol))
    }

    /// How the stage ended.
    fn outcome(self, converged: bool, absorptions: usize) -> StageOutcome {
        StageOutcome {
            iterations: self.it,
            converged,
            violation: self.violation,
            change: self.change,
            omega: self.relaxation.largest,
            absorptions,
            history: self.history,
        }
    }
}

/// `f(cells, chunk)` on the chunks of `CHUNK` entries of `out` in parallel, the results in
/// chunk order: the chunks are fixed, so the reductions over them do not depend on the thread
/// count.
fn per_chunk<T: Send>(
    out: &mut [f64],
    f: impl Fn(std::ops::Range<usize>, &mut [f64]) -> T + Sync + Send,
) -> Vec<T> {
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .map(|(c, chunk)| f(c * CHUNK..c * CHUNK + chunk.len(), chunk))
        .collect()
}

/// One stage in the scaling domain with absorption, starting from the potential g (cost
/// units; b = e^{g/ε}).
pub fn scaling_stage(
    st: &Stage,
    kernel: &mut GibbsKernel,
    g: &[f64],
    eps: f64,
    buf: &mut Buffers,
) -> Result<StageOutcome, Trouble> {
    let len = st.p.len();
    let ln_floor = (FLOOR * st.mass).ln();
    for ((lb, &active), &gw) in buf.lb.iter_mut().zip(st.active).zip(g).take(len) {
        *lb = if active { gw / eps } else { f64::NEG_INFINITY };
    }
    buf.u[..len].fill(0.0);
    buf.q[..len].fill(0.0);
    let mut delta = absorb(st, kernel, buf, true);
    let mut absorptions = 1;
    // A dropped kernel entry is below δ = e^{−θ}: the a-update's marginal error is at most
    // δ Σṽ Σũ' (ũ' the new ũ) plus the mass of rows dropped, the b-update's δ Σũ Σ(q/K̃ᵀũ)
    // plus the mass hidden columns may miss; both are held below 10⁻² tol · mass for the
    // iterations the stage may stop at.
    let allowed = 1e-2 * st.tol * st.mass;
    let mut progress = Progress::new(st);
    let mut sum_v: f64 = buf.v.iter().sum();
    // The last iteration's products were exact to the tolerance (needed to stop).
    let mut exact = false;
    let (mut stalled, mut last_bound) = (0usize, f64::INFINITY);
    let converged = loop {
        kernel
            .apply(&buf.v, &mut buf.kb, &mut buf.work)
            .map_err(|_| Trouble("kernel product"))?;
        let omega = progress.omega();
        // The violation of the current ũ, and the next ũ (into `ka`, swapped in below).
        let (kb, u_now) = (&buf.kb, &buf.u);
        let parts = per_chunk(&mut buf.ka, |r, next| {
            a_chunk(&st.p[r.clone()], &kb[r.clone()], &u_now[r], next, omega)
        });
        let ([viol, mut sum_u, dropped], mut max_u, _) = combine(&parts);
        if progress.it > 0 {
            let Some(may_stop) = progress.observe(st, viol) else {
                return Err(Trouble("non-finite marginal violation"));
            };
            if may_stop && exact {
                break true;
            }
        }
        if progress.it >= st.cap {
            break false;
        }
        std::mem::swap(&mut buf.u, &mut buf.ka);
        // the b-update follows the decision just taken (ω = 1 when finishing)
        let omega = progress.omega();
        kernel
            .apply_transpose(&buf.u, &mut buf.ka, &mut buf.work)
            .map_err(|_| Trouble("kernel product"))?;
        if st.balance {
            let (ka, ghat) = (&buf.ka, &buf.ghat);
            let t = mass_shift(st, |w| {
                if ka[w] > 0.0 {
                    ln(ka[w]) - ghat[w]
                } else {
                    f64::NEG_INFINITY
                }
            });
            if t != 0.0 {
                // a ← a e^t: z = ξᵀa ← z e^t (the plan is the same up to this factor).
                let f = exp(t);
                buf.u.par_iter_mut().for_each(|x| *x *= f);
                buf.ka.par_iter_mut().for_each(|x| *x *= f);
                sum_u *= f;
                max_u *= f;
            }
        }
        let bound_a = delta * sum_v * sum_u + dropped;
        let (ka, ghat) = (&buf.ka, &buf.ghat);
        // The most a fully truncated column can have received: e^{−θ} Σũ.
        let lk_hidden = delta.ln() + sum_u.ln();
        let parts: Vec<_> = buf
            .v
            .par_chunks_mut(CHUNK)
            .zip(buf.lv.par_chunks_mut(CHUNK))
            .zip(buf.q.par_chunks_mut(CHUNK))
            .zip(buf.work.par_chunks_mut(CHUNK))
            .enumerate()
            .map(|(c, (((vc, lvc), qc), sc))| {
                b_chunk(
                    st,
                    c * CHUNK,
                    ka,
                    ghat,
                    vc,
                    lvc,
                    qc,
                    sc,
                    omega,
                    ln_floor,
                    lk_hidden,
                )
            })
            .collect();
        let ([dq, ratio, hidden], max_lv, bad) = combine(&parts);
        progress.change = dq / st.mass;
        sum_v = buf.v.iter().sum();
        let bound = bound_a.max(delta * sum_u * ratio + hidden);
        exact = bound <= allowed && !bad;
        progress.it += 1;
        if !exact || max_lv > RANGE || max_u.ln() > RANGE {
            // Absorb, so that the next products are exact again (an inexact iteration only
            // perturbs the iterate; the stage stops only after an exact one). Near convergence
            // the bound must keep shrinking, or the scaling domain is given up.
            if progress.violation <= 10.0 * st.tol && bound > 0.9 * last_bound {
                stalled += 1;
                if stalled > PATIENCE {
                    return Err(Trouble(
                        "the products stay inexact after absorption (potentials far from separable)",
                    ));
                }
            }
            last_bound = bound;
            delta = absorb(st, kernel, buf, false);
            sum_v = buf.v.iter().sum();
            absorptions += 1;
        } else {
            stalled = 0;
            last_bound = f64::INFINITY;
        }
        #[cfg(feature = "trace")]
        trace(
            st,
            progress.it,
            progress.violation,
            omega,
            !exact || max_lv > RANGE || max_u.ln() > RANGE,
            buf,
        );
    };
    for w in 0..len {
        buf.lb[w] = if buf.v[w] > 0.0 {
            buf.ghat[w] + buf.lv[w]
        } else {
            f64::NEG_INFINITY
        };
    }
    Ok(progress.outcome(converged, absorptions))
}

/// The log-domain b-update from ln z = ln ξᵀa: ln b ← relax(ln b, ln q − ln z), q = prox(z).
/// Returns Σ|Δq|.
fn update_b_log(st: &Stage, lz: &[f64], omega: f64, lb: &mut [f64], q: &mut [f64]) -> f64 {
    let ln_floor = (FLOOR * st.mass).ln();
    let parts: Vec<f64> = lb
        .par_chunks_mut(CHUNK)
        .zip(q.par_chunks_mut(CHUNK))
        .enumerate()
        .map(|(c, (lbc, qc))| {
            let mut dq = 0.0;
            for i in 0..lbc.len() {
                let w = c * CHUNK + i;
                let (lbw, qw) = if !st.active[w] || lz[w] == f64::NEG_INFINITY {
                    (f64::NEG_INFINITY, 0.0)
                } else {
                    let lq = st.prox.log_mass(lz[w], st.ln_vol[w], st.potential[w]);
                    if lq < ln_floor {
                        (f64::NEG_INFINITY, 0.0)
                    } else {
                        (relax(lbc[i], lq - lz[w], omega), exp(lq))
                    }
                };
                dq += (qw - qc[i]).abs();
                qc[i] = qw;
                lbc[i] = lbw;
            }
            dq
        })
        .collect();
    parts.iter().sum()
}

/// One stage in the log domain, starting from the potential g (ln b = g/ε).
pub fn log_stage(
    st: &Stage,
    kernel: &GibbsKernel,
    g: &[f64],
    eps: f64,
    buf: &mut Buffers,
) -> Result<StageOutcome, InputError> {
    for ((lb, &gw), &active) in buf.lb.iter_mut().zip(g).zip(st.active) {
        *lb = if active { gw / eps } else { f64::NEG_INFINITY };
    }
    buf.la.fill(f64::NEG_INFINITY);
    let mut progress = Progress::new(st);
    let converged = loop {
        kernel.apply_log(&buf.lb, &mut buf.kb, &mut buf.work)?;
        let omega = progress.omega();
        // One pass: the violation of the current ln a and the next one (in `ka`).
        let (lkb, la_now) = (&buf.kb, &buf.la);
        let parts = per_chunk(&mut buf.ka, |r, next| {
            let mut viol = 0.0;
            for (ln, w) in next.iter_mut().zip(r) {
                let (p, e) = (st.p[w], la_now[w] + lkb[w]);
                viol += (exp(e) - p).abs();
                *ln = if p > 0.0 {
                    relax(la_now[w], st.ln_p[w] - lkb[w], omega)
                } else {
                    f64::NEG_INFINITY
                };
            }
            viol
        });
        if progress.it > 0 {
            match progress.observe(st, parts.iter().sum::<f64>()) {
                None => break false,
                Some(true) => break true,
                Some(false) => {}
            }
        }
        if progress.it >= st.cap {
            break false;
        }
        std::mem::swap(&mut buf.la, &mut buf.ka);
        let omega = progress.omega();
        kernel.apply_log(&buf.la, &mut buf.ka, &mut buf.work)?;
        if st.balance {
            let lz = &buf.ka;
            let t = mass_shift(st, |w| lz[w]);
            if t != 0.0 {
                buf.la.par_iter_mut().for_each(|x| *x += t);
                buf.ka.par_iter_mut().for_each(|x| *x += t);
            }
        }
        let dq = update_b_log(st, &buf.ka, omega, &mut buf.lb, &mut buf.q);
        progress.change = dq / st.mass;
        progress.it += 1;
    };
    Ok(progress.outcome(converged, 0))
}

//! Generalised Sinkhorn iterations at one ε (one stage of the ε schedule).
//!
//! π = diag(a) ξ diag(b); one iteration is
//!   a ← p / (ξ b),   b ← prox_σ(ξᵀ a) / (ξᵀ a),   σ = 2τ/ε,
//! so that after it the second marginal q = b ⊙ ξᵀa is exactly the proximal map's output and
//! the first marginal a ⊙ ξb differs from p by the violation measured at the next iteration,
//! ‖a ⊙ ξb − p‖₁ / ‖p‖₁ (computed from the product ξb the next a-update needs anyway).
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
//!
//! The plain stage works on a, b; the log stage on ln a, ln b with log-sum-exp kernel products.
//! A plain stage reports [`Trouble`] when a kernel product falls below [`TINY`] where it
//! must divide, or a scaling leaves e^{±650}: the caller then reruns the stage in the log
//! domain from the same starting potential.

use crate::kernel::{GibbsOperator, fast_exp};
use crate::prox::KlProx;
use jko_core::InputError;
use rayon::prelude::*;

/// Smallest kernel product the plain stage divides by.
const TINY: f64 = 1e-280;
/// Largest |ln scaling| of the plain stage.
const LOG_RANGE: f64 = 650.0;
/// Chunk length of the element-wise updates (fixed: results do not depend on threads).
const CHUNK: usize = 4096;
/// Plain iterations whose violations estimate the rate θ: θ = (v[B]/v[A])^{1/(B−A)}.
const RATE_FROM: usize = 4;
const RATE_TO: usize = 10;

/// The plain kernel under- or overflowed: run the stage in the log domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trouble;

/// The data of one stage, in the kernel's layout.
pub struct Stage<'a> {
    pub kernel: &'a dyn GibbsOperator,
    pub prox: KlProx,
    /// Masses of ρⁿ (0 on inactive cells) and their logarithms (−∞ where 0).
    pub p: &'a [f64],
    pub ln_p: &'a [f64],
    pub active: &'a [bool],
    pub ln_vol: &'a [f64],
    pub potential: &'a [f64],
    pub mass: f64,
    pub tol: f64,
    /// Iteration cap of the stage (≥ 1).
    pub cap: usize,
    pub record: bool,
    /// Relaxation ω: `None` for the automatic choice, `Some(1.0)` for plain Sinkhorn.
    pub omega: Option<f64>,
    pub omega_max: f64,
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
    pub history: Vec<f64>,
}

/// Work vectors, all of the kernel's length. After a stage, `lb` holds ln b and `q` the second
/// marginal (masses); `a`, `b` hold the scalings after a plain stage, `la` ln a after a log one.
pub struct Buffers {
    pub a: Vec<f64>,
    pub b: Vec<f64>,
    pub la: Vec<f64>,
    pub lb: Vec<f64>,
    pub kb: Vec<f64>,
    pub ka: Vec<f64>,
    pub q: Vec<f64>,
    pub work: Vec<f64>,
}

impl Buffers {
    pub fn new(n: usize) -> Self {
        Buffers {
            a: vec![0.0; n],
            b: vec![0.0; n],
            la: vec![f64::NEG_INFINITY; n],
            lb: vec![f64::NEG_INFINITY; n],
            kb: vec![0.0; n],
            ka: vec![0.0; n],
            q: vec![0.0; n],
            work: vec![0.0; n],
        }
    }
}

/// The ω schedule of a stage.
///
/// Two-block Gauss–Seidel is consistently ordered, so Young's SOR theory applies to the
/// linearised iteration: with plain rate θ = μ², ω < ω* = 2/(1 + √(1 − μ²)) gives the rate ρ
/// solving (ρ + ω − 1)² = ρ ω² μ², and ω ≥ ω* gives ρ = ω − 1. The controller measures θ on
/// plain iterations, sets ω*, then re-measures ρ over windows: a rate well above ω − 1 means
/// μ² was underestimated (raise ω from Young's relation), a window without decrease means the
/// relaxation is too strong for the nonlinear iteration (halve ω − 1).
struct Relaxation {
    fixed: Option<f64>,
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

impl Relaxation {
    fn new(st: &Stage) -> Self {
        Relaxation {
            fixed: st.omega,
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
        if self.omega > 1.0 && v > 10.0 * self.best {
            // diverging: back off
            let w = 1.0 + 0.5 * (self.omega - 1.0);
            self.set(if w < 1.05 { 1.0 } else { w }, v);
            return false;
        }
        let len = self.window.len();
        if self.omega == 1.0 {
            // plain: skip the first iterations (transient), then θ over a short window
            if len > RATE_TO {
                let theta = (self.window[RATE_TO] / self.window[RATE_FROM])
                    .powf(1.0 / (RATE_TO - RATE_FROM) as f64);
                if theta.is_finite() && theta > 0.5 && theta < 1.0 {
                    self.set((2.0 / (1.0 + (1.0 - theta).sqrt())).min(self.max), v);
                } else {
                    self.window.clear();
                }
            }
        } else if len > WINDOW {
            let rho =
                (self.window[len - 1] / self.window[len - 1 - WINDOW]).powf(1.0 / WINDOW as f64);
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

/// |ln scaling| beyond what the plain stage represents (or NaN).
fn out_of_range(x: f64) -> bool {
    x.is_nan() || x.abs() > LOG_RANGE
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

/// The log-domain b-update from ln z = ln ξᵀa: ln b ← relax(ln b, ln q − ln z), q = prox(z).
/// Returns Σ|Δq|.
fn update_b_log(st: &Stage, lz: &[f64], omega: f64, lb: &mut [f64], q: &mut [f64]) -> f64 {
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
                    (relax(lbc[i], lq - lz[w], omega), fast_exp(lq))
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

/// The plain b-update from z = ξᵀa: b ← prox(z)/z (relaxed in the log domain), ln b kept
/// for the potential. One ln and one exp per cell without relaxation. Returns (Σ|Δq|, trouble).
fn update_b_plain(
    st: &Stage,
    z: &[f64],
    omega: f64,
    b: &mut [f64],
    lb: &mut [f64],
    q: &mut [f64],
) -> (f64, bool) {
    let parts: Vec<(f64, bool)> = b
        .par_chunks_mut(CHUNK)
        .zip(lb.par_chunks_mut(CHUNK))
        .zip(q.par_chunks_mut(CHUNK))
        .enumerate()
        .map(|(c, ((bc, lbc), qc))| {
            let mut dq = 0.0;
            let mut bad = false;
            for i in 0..bc.len() {
                let w = c * CHUNK + i;
                if !st.active[w] {
                    bc[i] = 0.0;
                    lbc[i] = f64::NEG_INFINITY;
                    qc[i] = 0.0;
                    continue;
                }
                let zw = z[w];
                if !(zw >= TINY && zw.is_finite()) {
                    bad = true;
                    continue;
                }
                let lz = zw.ln();
                let lbn = st.prox.log_mass(lz, st.ln_vol[w], st.potential[w]) - lz;
                let bn = fast_exp(lbn);
                let qw = bn * zw;
                let lbw = relax(lbc[i], lbn, omega);
                if out_of_range(lbw) {
                    bad = true;
                }
                bc[i] = if omega == 1.0 { bn } else { fast_exp(lbw) };
                lbc[i] = lbw;
                dq += (qw - qc[i]).abs();
                qc[i] = qw;
            }
            (dq, bad)
        })
        .collect();
    (parts.iter().map(|x| x.0).sum(), parts.iter().any(|x| x.1))
}

/// One stage in the plain domain, starting from the potential g (b = e^{g/ε}).
pub fn plain_stage(
    st: &Stage,
    g: &[f64],
    eps: f64,
    buf: &mut Buffers,
) -> Result<StageOutcome, Trouble> {
    for (((lb, b), &gw), &active) in buf
        .lb
        .iter_mut()
        .zip(buf.b.iter_mut())
        .zip(g)
        .zip(st.active)
    {
        if active {
            let x = gw / eps;
            if out_of_range(x) {
                return Err(Trouble);
            }
            *lb = x;
            *b = x.exp();
        } else {
            *lb = f64::NEG_INFINITY;
            *b = 0.0;
        }
    }
    let mut relaxation = Relaxation::new(st);
    let mut history = Vec::new();
    let (mut violation_now, mut change) = (f64::INFINITY, f64::INFINITY);
    let mut it = 0;
    let converged = loop {
        st.kernel
            .apply(&buf.b, &mut buf.kb, &mut buf.work)
            .map_err(|_| Trouble)?;
        let omega = if it == 0 { 1.0 } else { relaxation.omega };
        // One pass: the violation of the current a, and the next a ← p / ξb (relaxed as
        // a ← a (p / (a ξb))^ω) written to `ka`, swapped in only if the stage goes on.
        let (kb, a_now) = (&buf.kb, &buf.a);
        let parts: Vec<(f64, bool)> = buf
            .ka
            .par_chunks_mut(CHUNK)
            .enumerate()
            .map(|(c, next)| {
                let (mut viol, mut bad) = (0.0, false);
                for (i, an) in next.iter_mut().enumerate() {
                    let w = c * CHUNK + i;
                    let (p, k, a) = (st.p[w], kb[w], a_now[w]);
                    viol += (a * k - p).abs();
                    *an = if p > 0.0 {
                        if !(k >= TINY && k.is_finite()) {
                            bad = true;
                        }
                        let x = if omega == 1.0 {
                            p / k
                        } else {
                            a * fast_exp(omega * (p / (k * a)).ln())
                        };
                        if !(x > 0.0 && x.is_finite()) {
                            bad = true;
                        }
                        x
                    } else {
                        0.0
                    };
                }
                (viol, bad)
            })
            .collect();
        if it > 0 {
            violation_now = parts.iter().map(|x| x.0).sum::<f64>() / st.mass;
            if !violation_now.is_finite() {
                return Err(Trouble);
            }
            if st.record {
                history.push(violation_now);
            }
            if relaxation.observe(it, violation_now, st.tol) {
                break true;
            }
        }
        if it >= st.cap {
            break false;
        }
        if parts.iter().any(|x| x.1) {
            return Err(Trouble);
        }
        std::mem::swap(&mut buf.a, &mut buf.ka);
        // the b-update follows the decision just taken (ω = 1 when finishing)
        let omega = if it == 0 { 1.0 } else { relaxation.omega };
        st.kernel
            .apply(&buf.a, &mut buf.ka, &mut buf.work)
            .map_err(|_| Trouble)?;
        let (dq, bad) = update_b_plain(st, &buf.ka, omega, &mut buf.b, &mut buf.lb, &mut buf.q);
        if bad {
            return Err(Trouble);
        }
        change = dq / st.mass;
        it += 1;
    };
    Ok(StageOutcome {
        iterations: it,
        converged,
        violation: violation_now,
        change,
        omega: relaxation.largest,
        history,
    })
}

/// One stage in the log domain, starting from the potential g (ln b = g/ε).
pub fn log_stage(
    st: &Stage,
    g: &[f64],
    eps: f64,
    buf: &mut Buffers,
) -> Result<StageOutcome, InputError> {
    for ((lb, &gw), &active) in buf.lb.iter_mut().zip(g).zip(st.active) {
        *lb = if active { gw / eps } else { f64::NEG_INFINITY };
    }
    let mut relaxation = Relaxation::new(st);
    let mut history = Vec::new();
    let (mut violation_now, mut change) = (f64::INFINITY, f64::INFINITY);
    let mut it = 0;
    let converged = loop {
        st.kernel.apply_log(&buf.lb, &mut buf.kb, &mut buf.work)?;
        let omega = if it == 0 { 1.0 } else { relaxation.omega };
        // One pass: the violation of the current ln a and the next one (in `ka`).
        let (lkb, la_now) = (&buf.kb, &buf.la);
        let parts: Vec<f64> = buf
            .ka
            .par_chunks_mut(CHUNK)
            .enumerate()
            .map(|(c, next)| {
                let mut viol = 0.0;
                for (i, ln) in next.iter_mut().enumerate() {
                    let w = c * CHUNK + i;
                    let (p, e) = (st.p[w], la_now[w] + lkb[w]);
                    viol += (fast_exp(e) - p).abs();
                    *ln = if p > 0.0 {
                        relax(la_now[w], st.ln_p[w] - lkb[w], omega)
                    } else {
                        f64::NEG_INFINITY
                    };
                }
                viol
            })
            .collect();
        if it > 0 {
            violation_now = parts.iter().sum::<f64>() / st.mass;
            if st.record {
                history.push(violation_now);
            }
            if !violation_now.is_finite() {
                break false;
            }
            if relaxation.observe(it, violation_now, st.tol) {
                break true;
            }
        }
        if it >= st.cap {
            break false;
        }
        std::mem::swap(&mut buf.la, &mut buf.ka);
        let omega = if it == 0 { 1.0 } else { relaxation.omega };
        st.kernel.apply_log(&buf.la, &mut buf.ka, &mut buf.work)?;
        let dq = update_b_log(st, &buf.ka, omega, &mut buf.lb, &mut buf.q);
        change = dq / st.mass;
        it += 1;
    };
    Ok(StageOutcome {
        iterations: it,
        converged,
        violation: violation_now,
        change,
        omega: relaxation.largest,
        history,
    })
}

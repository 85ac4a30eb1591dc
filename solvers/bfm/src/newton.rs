//! Inexact Newton on the source-side system r(ψ) = 0 (see [`crate::source`]): GMRES on
//! J δ = −r right-preconditioned by the DCT Helmholtz solve (1 + τκ(−Δ))⁻¹ on the free source
//! cells, by a shifted DCT Poisson solve on the capped cells (congestion), and by the
//! Jacobian's diagonal at free-boundary edge cells (porous medium); with a cap, the min of the
//! capped residual smoothed over a width that falls with the residual; Eisenstat–Walker
//! forcing terms, a backtracking line search on Σ r² that also keeps ψ c-concave
//! (A = I − τD²ψ positive definite at every source cell), and, when the start is not
//! c-concave or Newton stalls, continuation in the step size: the same step solved with
//! τ' < τ first (whose explicit-Euler start is c-concave when τ' max D²ψ < 1), then τ' raised
//! towards τ, each solution starting the next.

use crate::ctransform::CTransform;
use crate::krylov::gmres;
use crate::params::BfmParams;
use crate::poisson::Helmholtz;
use crate::source::{Coef, Fields, SourceGrid, SourceModel};
use rayon::prelude::*;

/// What the solve ends with.
pub(crate) struct NewtonOutcome {
    /// The source potential ψ (box values; only source cells are meaningful).
    pub psi: Vec<f64>,
    /// Newton iterations, over all continuation stages.
    pub iterations: usize,
    /// GMRES matrix-vector products, over all stages.
    pub linear: usize,
    /// Final relative L1 marginal error.
    pub marginal: f64,
    /// Marginal error after each Newton iteration (all stages).
    pub history: Vec<f64>,
    pub converged: bool,
    /// Step sizes of the continuation stages (just τ when none was needed).
    pub stages: Vec<f64>,
    /// Why the last failed stage failed.
    pub failure: Option<&'static str>,
    /// The step size `psi` solves (τ when converged; the last solved continuation stage, or 0
    /// when none was solved, otherwise).
    pub solved_tau: f64,
}

struct Workspace {
    fields: Fields,
    r: Vec<f64>,
    coef: Vec<Coef>,
    rhs: Vec<f64>,
    dir: Vec<f64>,
    trial: Vec<f64>,
    r_trial: Vec<f64>,
    /// The edge cells' Jacobi values inside one preconditioner application.
    edge_values: Vec<f64>,
    /// The capped block's right-hand side and solution inside one preconditioner application.
    capped_values: Vec<f64>,
    helm: Helmholtz,
    /// With the finisher behind Newton and more than one part of the source: the parts'
    /// labels ([`source_parts`]) and a gradient buffer for [`images_touch`].
    contact: Option<(Vec<u32>, Vec<[f64; 3]>)>,
    /// The back-and-forth finisher applies: GMRES stalls end the stage.
    finisher: bool,
}

/// Initial smoothing width of the cap's min, in units of the pressure scale κ.
const SMOOTHING_START: f64 = 0.1;
/// The smoothing width after an accepted step: at most this times the rms residual.
const SMOOTHING_RATIO: f64 = 0.1;
/// The capped block and the smoothing are used when κτ/h² is below this.
const SMALL_DIFFUSION: f64 = 0.1;

enum StageEnd {
    Converged,
    /// Not admissible at the start, or the line search or the iteration budget ran out.
    Failed(&'static str),
}

struct Stage {
    end: StageEnd,
    marginal: f64,
}

/// One Newton solve at the model's τ, from and into `psi`, to the marginal tolerance `tol`.
fn newton_stage(
    model: &SourceModel<'_>,
    params: &BfmParams,
    tol: f64,
    psi: &mut Vec<f64>,
    ws: &mut Workspace,
    counters: &mut (usize, usize, Vec<f64>),
) -> Stage {
    let in_s = &model.grid.in_s;
    // The cap's min is smoothed over a width that follows the residual down (a smoothing
    // Newton method): with the exact min, cells at the kink p = P(s) — the rim of the
    // congested zone, where the solution is degenerate — switch branch under every step
    // and the line search on Σ r² finds no decrease (measured: crowd-2d at 32², step 2).
    // Both only where the capped rows are weak, κτ/h² < SMALL_DIFFUSION (measured: at β = 0.1
    // on 64², κτ/h² = 0.82, the capped block made step 1 of crowd-beta0.1 take 64k GMRES
    // products instead of 5k, and the smoothing made step 2 take 494 Newton iterations
    // instead of 29; at 12²–32² with β = 0.01, κτ/h² = 0.005–0.02, they are what converges).
    let lat = model.grid.lat;
    let h = lat.h.iter().copied().fold(f64::INFINITY, f64::min);
    let weak_caps =
        model.local.cap().is_some() && model.kappa * model.tau < SMALL_DIFFUSION * h * h;
    let n_source = in_s.iter().filter(|&&x| x).count().max(1) as f64;
    ws.fields.cap_smoothing = if weak_caps {
        SMOOTHING_START * model.kappa
    } else {
        0.0
    };
    let Some(mut eval) = model.evaluate(psi, &mut ws.fields, &mut ws.r, Some(&mut ws.coef)) else {
        return Stage {
            end: StageEnd::Failed("the start is not c-concave"),
            marginal: f64::INFINITY,
        };
    };
    let b = model.tau * model.kappa;
    let mut eta = 0.1f64;
    let mut previous_merit = f64::NAN;
    for _ in 0..params.max_iter {
        counters.2.push(eval.marginal);
        if eval.marginal <= tol {
            return Stage {
                end: StageEnd::Converged,
                marginal: eval.marginal,
            };
        }
        counters.0 += 1;
        // Eisenstat–Walker (choice 2, γ = 0.9, α = 2) with the usual safeguard.
        if previous_merit.is_finite() {
            let ratio = (eval.merit / previous_merit).sqrt();
            let candidate = 0.9 * ratio * ratio;
            let safeguard = 0.9 * eta * eta;
            eta = if safeguard > 0.1 {
                candidate.max(safeguard)
            } else {
                candidate
            };
            eta = eta.clamp(1e-10, 0.1);
        }
        ws.rhs.par_iter_mut().zip(&ws.r).for_each(|(a, b)| *a = -b);
        let coef = &ws.coef;
        // The preconditioner: Jacobi at the free-boundary edge cells (whose rows the ghost
        // makes strongly diagonal), the DCT Helmholtz solve on the other source cells — a
        // block-diagonal split of the two. With the Helmholtz solve alone GMRES stalled at
        // relative residuals 0.1–0.5 on such rows (porous-m2-2d at 128², steps 2–3: 189 Newton
        // iterations, 22–25k GMRES products; with the split: 16 and 14 iterations, 130–147
        // products, the same density).
        // A third block for the capped rows (the cap's branch, w = ∂min/∂p < ½): their
        // linearisation is δr = w δψ + … − κτ(w + (1 − w)f) tr(A⁻¹D²δψ) with w ≈ 0, a pure
        // diffusion of size κτ/h² against the O(1) free rows, which the Helmholtz solve with
        // a = 1 leaves near the identity (eigenvalues κτλ/(1 + κτλ) ≪ 1: GMRES stalled at
        // relative residual 0.9 after 200 products, crowd-2d at 32² step 2). Each capped row
        // is divided by its diffusion b_i and the block solved by the DCT with the shift
        // (π/2w)², w the depth of the capped set: the lowest mode of a zone held at its rim
        // by the free rows (a Dirichlet condition there, which the box solve does not see).
        let edge = model.edge_diagonal(coef, &ws.fields);
        let (capped, depth) = if weak_caps {
            model.capped_rows(coef, &edge)
        } else {
            (Vec::new(), 0)
        };
        let width = depth.max(1) as f64 * h;
        let shift = (std::f64::consts::FRAC_PI_2 / width).powi(2);
        let edge_values = &mut ws.edge_values;
        let capped_values = &mut ws.capped_values;
        let fields = &mut ws.fields;
        let helm = &mut ws.helm;
        let info = gmres(
            |v, out| model.apply(coef, v, fields, out),
            |v| {
                edge_values.clear();
                edge_values.extend(edge.iter().map(|&(i, diagonal)| {
                    let x = v[i] / diagonal;
                    v[i] = 0.0;
                    x
                }));
                if !capped.is_empty() {
                    capped_values.clear();
                    capped_values.resize(v.len(), 0.0);
                    for &(i, bi) in &capped {
                        capped_values[i] = v[i] / bi;
                        v[i] = 0.0;
                    }
                }
                mask(v, in_s);
                helm.solve(v, 1.0, b);
                mask(v, in_s);
                if !capped.is_empty() {
                    helm.solve(capped_values, shift, 1.0);
                    for &(i, _) in &capped {
                        v[i] = capped_values[i];
                    }
                }
                for (&(i, _), &x) in edge.iter().zip(edge_values.iter()) {
                    v[i] = x;
                }
            },
            &ws.rhs,
            &mut ws.dir,
            eta,
            params.krylov_dim,
            params.max_linear,
        );
        counters.1 += info.iterations;
        // With the finisher behind Newton, a linear solve that misses its tolerance ends the
        // stage: on the authors' porous example (step 1, three squares whose images come to
        // overlap) GMRES ran to its cap at almost every iteration of the attempt at τ (512²: 17
        // iterations, 3 400 products, 21 s, before the images touched; 128²: 7 iterations,
        // 1 157 products). Where Newton converges (the Barenblatt tests) every solve met η.
        if ws.finisher && info.relative_residual > eta {
            return Stage {
                end: StageEnd::Failed(GMRES_STALL),
                marginal: eval.marginal,
            };
        }
        if cfg!(feature = "trace") {
            let (worst, at) = largest(ws.r.iter().map(|x| x.abs()));
            eprintln!(
                "tau {:.3e} merit {:.3e} marginal {:.3e} max|r| {:.3e} at {:?} mu {:.3e}; gmres {} its rel {:.1e} eta {:.1e}",
                model.tau,
                eval.merit,
                eval.marginal,
                worst,
                model.grid.lat.coords(at),
                model.mu[at],
                info.iterations,
                info.relative_residual,
                eta
            );
        }
        // Backtracking on Σ r², staying c-concave.
        let mut lambda = 1.0;
        let mut accepted = None;
        for _ in 0..40 {
            along(&mut ws.trial, psi, &ws.dir, lambda);
            if let Some(e) = model.evaluate(&ws.trial, &mut ws.fields, &mut ws.r_trial, None)
                && e.merit <= (1.0 - 1e-4 * lambda) * eval.merit
            {
                accepted = Some(e);
                break;
            }
            lambda *= 0.5;
        }
        if accepted.is_none() {
            if cfg!(feature = "trace") {
                let mut l = 1.0;
                for _ in 0..6 {
                    along(&mut ws.trial, psi, &ws.dir, l);
                    let e = model.evaluate(&ws.trial, &mut ws.fields, &mut ws.r_trial, None);
                    let (worst, at) =
                        largest(ws.r_trial.iter().zip(&ws.r).map(|(x, y)| (x - y).abs()));
                    eprintln!(
                        "  line search failed: lambda {l:.2e} merit {:?} (from {:.3e}); largest change {worst:.2e} at {:?} mu {:.2e} r {:.2e} -> {:.2e}",
                        e.map(|e| e.merit),
                        eval.merit,
                        model.grid.lat.coords(at),
                        model.mu[at],
                        ws.r[at],
                        ws.r_trial[at]
                    );
                    l *= 0.5;
                }
            }
            return Stage {
                end: StageEnd::Failed("the line search found no decrease"),
                marginal: eval.marginal,
            };
        }
        if cfg!(feature = "trace") {
            eprintln!(
                "  accepted lambda {lambda:.2e}; capped rows {} depth {depth}",
                capped.len()
            );
        }
        std::mem::swap(psi, &mut ws.trial);
        // Colliding supports: Newton would go on to a solution whose images overlap (measured:
        // the authors' example at 128², step 1: 21 iterations, 3313 GMRES products, then a
        // negative W² estimate); the finisher takes over from the last solved stage.
        if let Some((label, grad)) = ws.contact.as_mut()
            && images_touch(model, psi, label, grad, 0)
        {
            return Stage {
                end: StageEnd::Failed(TOUCH),
                marginal: eval.marginal,
            };
        }
        previous_merit = eval.merit;
        if weak_caps {
            let rms = (accepted.map_or(eval.merit, |e| e.merit) / n_source).sqrt();
            ws.fields.cap_smoothing = ws.fields.cap_smoothing.min(SMOOTHING_RATIO * rms);
        }
        eval = match model.evaluate(psi, &mut ws.fields, &mut ws.r, Some(&mut ws.coef)) {
            Some(e) => e,
            None => {
                return Stage {
                    end: StageEnd::Failed("an accepted iterate is not c-concave"),
                    marginal: f64::INFINITY,
                };
            }
        };
    }
    counters.2.push(eval.marginal);
    if eval.marginal <= tol {
        return Stage {
            end: StageEnd::Converged,
            marginal: eval.marginal,
        };
    }
    Stage {
        end: StageEnd::Failed("the Newton iteration budget ran out"),
        marginal: eval.marginal,
    }
}

/// trial ← ψ + λ·direction.
fn along(trial: &mut [f64], psi: &[f64], direction: &[f64], lambda: f64) {
    trial
        .par_iter_mut()
        .zip(psi.par_iter())
        .zip(direction)
        .for_each(|((t, p), d)| *t = p + lambda * d);
}

/// The largest value and its index (0, 0 when empty): where a debug print points.
fn largest(values: impl Iterator<Item = f64>) -> (f64, usize) {
    values.enumerate().fold(
        (0.0f64, 0usize),
        |(w, at), (i, x)| if x > w { (x, i) } else { (w, at) },
    )
}

fn mask(v: &mut [f64], in_s: &[bool]) {
    v.par_iter_mut().zip(in_s).for_each(|(x, &s)| {
        if !s {
            *x = 0.0;
        }
    });
}

/// Newton's outcome when it hands over to the finisher, which starts from the cold start.
fn hand_over(
    model: &SourceModel<'_>,
    counters: (usize, usize, Vec<f64>),
    marginal: f64,
    stages: Vec<f64>,
    failure: Option<&'static str>,
) -> NewtonOutcome {
    NewtonOutcome {
        psi: model.cold_start(),
        iterations: counters.0,
        linear: counters.1,
        marginal,
        history: counters.2,
        converged: false,
        stages,
        failure,
        solved_tau: 0.0,
    }
}

/// With the finisher behind Newton, the smallest first continuation stage, relative to τ.
const FINISHER_FIRST_STAGE: f64 = 0.25;

/// Why a stage failed when a linear solve missed its tolerance with the finisher behind Newton.
const GMRES_STALL: &str = "GMRES did not reach its tolerance (the finisher takes over)";

/// Why a stage failed when the images of two parts of the support touch.
const TOUCH: &str = "the images of two parts of the support touch (colliding supports)";

/// Why Newton handed over before the continuation when the parts are predicted to meet.
const PREDICTED: &str = "the parts of the support are predicted to meet within the step";

/// Each part of a porous support is predicted to spread by `SPREAD` √(τP) in one step, P its
/// largest pressure U'(ρⁿ) (the front of the porous medium moves like √(P t): p_t = (m − 1)pΔp +
/// |∇p|² has no other length scale). Bracketed on the authors' porous example (three squares
/// 0.18 apart after the drift of V, P = 1/3; 128² and 256²): Newton solves the stage at τ/2 with
/// images apart (so 2·SPREAD·√(τP/2) < 0.18: SPREAD < 0.70) and fails at τ (SPREAD > 0.49).
const SPREAD: f64 = 0.6;

/// The GMRES budget per solve of the attempts at τ when the parts are predicted to meet.
const PREDICTED_MAX_LINEAR: usize = 50;

/// Sources of more parts than this are not predicted (one distance transform per part).
const MAX_PREDICTED_PARTS: u32 = 8;

/// Whether two parts of the source (labels from [`source_parts`], `parts` of them) are predicted
/// to meet within the step: the distance between their images under the drift x − τ∇V (cell
/// centres, ∇V by `Lattice::derivative`) is below the sum of their spreads [`SPREAD`] √(τP).
/// A cheap prediction (one distance transform per part, the separable c-transform with cost
/// |x − y|²), made before any Newton iteration; `false` for one part or more than
/// [`MAX_PREDICTED_PARTS`].
fn parts_predicted_to_meet(model: &SourceModel<'_>, label: &[u32], parts: u32) -> bool {
    let lat = model.grid.lat;
    if !(2..=MAX_PREDICTED_PARTS).contains(&parts) {
        return false;
    }
    let d = lat.dim();
    let tau = model.tau;
    let mut pressure = vec![0.0f64; parts as usize];
    // (part, cell of its image) for every source cell.
    let mut images = Vec::new();
    for i in (0..lat.len).filter(|&i| label[i] != OFF_SOURCE) {
        let part = label[i] as usize;
        pressure[part] = pressure[part].max(model.local.du(model.mu[i]));
        let c = lat.coords(i);
        let mut k = 0;
        for (a, &ca) in c.iter().enumerate().take(d) {
            let n = lat.shape[a];
            let y = lat.centre(a, ca) - tau * lat.derivative(model.v, i, &c, a);
            let j = (((y - lat.lower[a]) / lat.h[a]).floor() as isize).clamp(0, n as isize - 1);
            k += j as usize * lat.strides[a];
        }
        images.push((part, k));
    }
    // Squared distances: the c-transform with 2τ' = 1 of 0 on the images, +∞ elsewhere.
    let mut ct = CTransform::new(lat, 0.5);
    let mut f = vec![f64::INFINITY; lat.len];
    let mut dist = Vec::with_capacity(lat.len);
    for a in 0..parts as usize - 1 {
        f.fill(f64::INFINITY);
        for &(_, k) in images.iter().filter(|(p, _)| *p == a) {
            f[k] = 0.0;
        }
        ct.c_transform(lat, &f, |_| true, false, &mut dist);
        for b in a + 1..parts as usize {
            let gap = images
                .iter()
                .filter(|(p, _)| *p == b)
                .map(|&(_, k)| dist[k])
                .fold(f64::INFINITY, f64::min)
                .sqrt();
            let reach = SPREAD * ((tau * pressure[a]).sqrt() + (tau * pressure[b]).sqrt());
            if gap < reach {
                return true;
            }
        }
    }
    false
}

/// Label of the cells off the source in [`source_parts`].
const OFF_SOURCE: u32 = u32::MAX;

/// The connected parts of the source set (cells sharing a face): a label per box cell
/// ([`OFF_SOURCE`] off the source) and their number. The source-side system couples only the
/// cells of one part (its stencils do not cross vacuum).
fn source_parts(grid: &SourceGrid<'_>) -> (Vec<u32>, u32) {
    let lat = grid.lat;
    let mut label = vec![OFF_SOURCE; lat.len];
    let mut parts = 0u32;
    let mut stack = Vec::new();
    for seed in 0..lat.len {
        if !grid.in_s[seed] || label[seed] != OFF_SOURCE {
            continue;
        }
        label[seed] = parts;
        stack.push(seed);
        while let Some(i) = stack.pop() {
            let c = lat.coords(i);
            for (a, &ca) in c.iter().enumerate().take(lat.dim()) {
                for dir in [-1isize, 1] {
                    let j = ca as isize + dir;
                    if j < 0 || j >= lat.shape[a] as isize {
                        continue;
                    }
                    let k = (i as isize + dir * lat.strides[a] as isize) as usize;
                    if grid.in_s[k] && label[k] == OFF_SOURCE {
                        label[k] = parts;
                        stack.push(k);
                    }
                }
            }
        }
        parts += 1;
    }
    (label, parts)
}

/// Whether the images x − τ∇ψ(x) of two different parts of the source (labels from
/// [`source_parts`]) land within `reach` cells of each other along every axis: the supports collide
/// during the step, which the source-side system, moving each part as if the others did not
/// exist, cannot represent (docs/mathematics.md §5, "Colliding supports").
fn images_touch(
    model: &SourceModel<'_>,
    psi: &[f64],
    label: &[u32],
    grad: &mut Vec<[f64; 3]>,
    reach: isize,
) -> bool {
    let lat = model.grid.lat;
    let d = lat.dim();
    model.grid.gradients(psi, grad);
    let mut owner = vec![OFF_SOURCE; lat.len];
    for i in (0..lat.len).filter(|&i| label[i] != OFF_SOURCE) {
        let c = lat.coords(i);
        let mut lo = [0isize; 3];
        let mut hi = [0isize; 3];
        for a in 0..d {
            let y = lat.centre(a, c[a]) - model.tau * grad[i][a];
            let n = lat.shape[a] as isize;
            let j = (((y - lat.lower[a]) / lat.h[a]).floor() as isize).clamp(0, n - 1);
            lo[a] = (j - reach).max(0);
            hi[a] = (j + reach).min(n - 1);
        }
        // Every cell of the block lo..=hi (one axis after the other).
        let mut at = lo;
        loop {
            let k: usize = (0..d).map(|a| at[a] as usize * lat.strides[a]).sum();
            if owner[k] == OFF_SOURCE {
                owner[k] = label[i];
            } else if owner[k] != label[i] {
                return true;
            }
            let mut a = 0;
            while a < d && at[a] == hi[a] {
                at[a] = lo[a];
                a += 1;
            }
            if a == d {
                break;
            }
            at[a] += 1;
        }
    }
    false
}

/// Solves the step: Newton from the cold start, then (if that fails) from the warm start, then
/// continuation in τ from the cold start. With `with_finisher` (the back-and-forth finisher
/// applies) Newton hands over at its first failed continuation stage (`solved_tau` 0: the
/// finisher starts cold), a stage failing also when two parts' images touch or a linear solve
/// misses its tolerance.
pub(crate) fn solve(
    model: &SourceModel<'_>,
    params: &BfmParams,
    warm: Option<Vec<f64>>,
    with_finisher: bool,
) -> NewtonOutcome {
    let n = model.grid.lat.len;
    let mut ws = Workspace {
        fields: Fields::new(),
        r: vec![0.0; n],
        coef: vec![[0.0; 10]; n],
        rhs: vec![0.0; n],
        dir: vec![0.0; n],
        trial: vec![0.0; n],
        r_trial: vec![0.0; n],
        edge_values: Vec::new(),
        capped_values: Vec::new(),
        helm: Helmholtz::new(model.grid.lat),
        contact: None,
        finisher: with_finisher,
    };
    let mut parts = 1;
    if with_finisher {
        let (label, count) = source_parts(model.grid);
        parts = count;
        if count > 1 {
            ws.contact = Some((label, Vec::new()));
        }
    }
    let mut counters = (0usize, 0usize, Vec::new());
    let tau = model.tau;
    let mut stages = vec![tau];
    let mut marginal = f64::INFINITY;
    let mut failure = None;
    // Parts predicted to meet: the attempts at τ get a smaller GMRES budget per solve (the
    // authors' example at 512², step 1: one iteration, the 200 products of the cap, ~2 s, before
    // the hand-over; at 64², where Newton solves that step at τ, its six solves took 8–34 products).
    let predicted = ws
        .contact
        .as_ref()
        .is_some_and(|(label, _)| parts_predicted_to_meet(model, label, parts));
    let attempt = BfmParams {
        max_linear: if predicted {
            params.max_linear.min(PREDICTED_MAX_LINEAR)
        } else {
            params.max_linear
        },
        ..params.clone()
    };
    for start in std::iter::once(model.cold_start()).chain(warm) {
        let mut psi = start;
        let first = newton_stage(
            model,
            &attempt,
            params.tol,
            &mut psi,
            &mut ws,
            &mut counters,
        );
        marginal = first.marginal;
        if let StageEnd::Failed(why) = first.end {
            failure = Some(why);
        }
        if matches!(first.end, StageEnd::Converged) {
            return NewtonOutcome {
                psi,
                iterations: counters.0,
                linear: counters.1,
                marginal,
                history: counters.2,
                converged: true,
                stages,
                failure: None,
                solved_tau: tau,
            };
        }
    }
    // With the finisher behind it, a source of several parts that the attempts at τ did not
    // solve and whose parts are predicted to meet within the step hands over at once: the
    // continuation would solve a smaller step first (the authors' porous example at 128² and
    // 256², step 1: the stage at τ/2, 7–10 Newton iterations and 275–487 GMRES products, ~30% of
    // the step) and then fail at τ, and the finisher starts cold whatever Newton did.
    if predicted {
        stages.clear();
        return hand_over(model, counters, marginal, stages, Some(PREDICTED));
    }
    // Continuation in τ: from the largest τ' = τ/2^k at which the start is c-concave, raised
    // towards τ with the map-preserving predictor ψ' = (τ_done/τ_try) ψ (the map
    // x − τ∇ψ and so A = I − τD²ψ stay as they are; the residual changes by O(Δτ/τ)).
    stages.clear();
    let at = |t: f64| SourceModel { tau: t, ..*model };
    let mut good = model.cold_start();
    let mut t_try = tau;
    for _ in 0..60 {
        t_try *= 0.5;
        if at(t_try)
            .evaluate(&good, &mut ws.fields, &mut ws.r, None)
            .is_some()
        {
            break;
        }
    }
    // With the finisher behind it, a cold start c-concave only at a small fraction of τ (a
    // strongly compressive step) hands over at once: measured, the authors' porous example's
    // colliding steps 2–3 start at τ/64 (128², 256²) and their first stages cost 30–60 Newton
    // iterations before failing; the Barenblatt steps, which Newton solves, start at τ/2.
    if with_finisher && t_try < FINISHER_FIRST_STAGE * tau {
        return hand_over(
            model,
            counters,
            marginal,
            stages,
            Some("the cold start is c-concave only far below tau"),
        );
    }
    let mut t_done = 0.0;
    let mut increment = t_try;
    let mut converged = false;
    for _ in 0..params.max_stages {
        let mut trial: Vec<f64> = if t_done > 0.0 {
            let ratio = t_done / t_try;
            good.par_iter().map(|x| ratio * x).collect()
        } else {
            good.clone()
        };
        // The map-preserving predictor keeps A = I − τD²ψ on the centred cells, but not at the
        // free-boundary edges, whose ghosts carry the pressure and the potential, which do not
        // scale with 1/τ (porous medium: ψ ≈ U'(s) + V). Where it is not c-concave the last
        // solution itself starts the stage (measured: on the authors' porous example at 256²
        // every predictor more than ~3% above τ_done failed at its start, and the 40 stages
        // ran out at 0.078 of τ = 0.1).
        if t_done > 0.0
            && at(t_try)
                .evaluate(&trial, &mut ws.fields, &mut ws.r, None)
                .is_none()
        {
            trial.copy_from_slice(&good);
        }
        let stage_tol = if t_try >= tau {
            params.tol
        } else {
            params.tol.max(1e-6)
        };
        let m = at(t_try);
        let out = newton_stage(&m, params, stage_tol, &mut trial, &mut ws, &mut counters);
        stages.push(t_try);
        marginal = out.marginal;
        match out.end {
            StageEnd::Converged => {
                good = trial;
                t_done = t_try;
                if t_done >= tau {
                    converged = true;
                    break;
                }
                increment *= 2.0;
                t_try = (t_done + increment).min(tau);
            }
            StageEnd::Failed(why) => {
                failure = Some(why);
                // With the finisher behind it, the first failed stage hands over, and the
                // finisher starts from the cold start: on the authors' porous example every
                // colliding step measured (64²–512², rounds 9–11) cut its increment within its
                // first stages and then crept for up to 40 stages (60–90% of the step) or ended
                // with touching images; from the cold start the finisher settled in fewer passes
                // (256², steps 1–3: 165/174/141 against 150/251/327 from the last solved stage)
                // at the same marginal error (round 12). The Barenblatt steps, whose start is not
                // c-concave at τ, reach τ without a failed stage.
                if with_finisher {
                    return hand_over(model, counters, marginal, stages, failure);
                }
                increment *= 0.5;
                if increment < 1e-6 * tau {
                    break;
                }
                t_try = if t_done > 0.0 {
                    t_done + increment
                } else {
                    increment
                };
            }
        }
    }
    NewtonOutcome {
        psi: good,
        iterations: counters.0,
        linear: counters.1,
        marginal,
        history: counters.2,
        converged,
        stages,
        failure,
        solved_tau: t_done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dual::LocalDual;
    use crate::lattice::Lattice;
    use jko_core::Mesh;

    /// Two squares of source four cells apart (three vacuum cells between them) on a 32² grid,
    /// moved towards or away from each other by `cells` cells each by the linear potential
    /// ψ = ∓(δ/τ)x₁ (the map x − τ∇ψ a translation): whether their images touch.
    fn squares_touch(cells: f64) -> (u32, bool, bool) {
        let n = 32;
        let mesh = Mesh::grid(&[n, n], &[0.0, 0.0], &[1.0, 1.0]).unwrap();
        let lat = Lattice::of_mesh(&mesh).unwrap();
        let part = |i: usize| {
            let [r, c, _] = lat.coords(i);
            match (r, c) {
                (10..=20, 4..=10) => Some(0),
                (10..=20, 14..=20) => Some(1),
                _ => None,
            }
        };
        let mu: Vec<f64> = (0..lat.len)
            .map(|i| f64::from(u8::from(part(i).is_some())))
            .collect();
        let grid = SourceGrid::new(&lat, &mu);
        let (tau, h) = (0.1, lat.h[0]);
        let slope = cells * h / tau;
        let psi: Vec<f64> = (0..lat.len)
            .map(|i| {
                let x = lat.centre(1, lat.coords(i)[1]);
                match part(i) {
                    Some(0) => -slope * x,
                    Some(_) => slope * x,
                    None => 0.0,
                }
            })
            .collect();
        let model = SourceModel {
            grid: &grid,
            tau,
            mu: &mu,
            v: &vec![0.0; lat.len],
            local: LocalDual::new(None, Some(2.0), None).unwrap(),
            kappa: 1.0,
            mass: 1.0,
        };
        let (label, parts) = source_parts(&grid);
        let touch = |reach| images_touch(&model, &psi, &label, &mut Vec::new(), reach);
        (parts, touch(1), touch(0))
    }

    /// The authors' porous example's squares (side 0.2, m = 2, mass 0.02, V = |x − (0.9, 0.9)|²/2)
    /// on an n² grid, centred at `centres`: whether they are predicted to meet in a step of `tau`.
    fn squares_predicted_to_meet(n: usize, centres: &[[f64; 2]], tau: f64) -> bool {
        let mesh = Mesh::grid(&[n, n], &[0.0, 0.0], &[1.0, 1.0]).unwrap();
        let lat = Lattice::of_mesh(&mesh).unwrap();
        let at = |i: usize| {
            let c = lat.coords(i);
            [lat.centre(0, c[0]), lat.centre(1, c[1])]
        };
        let inside = |x: [f64; 2]| {
            centres
                .iter()
                .any(|q| (x[0] - q[0]).abs() < 0.1 && (x[1] - q[1]).abs() < 0.1)
        };
        let cells = (0..lat.len).filter(|&i| inside(at(i))).count() as f64;
        let mass = 0.02;
        let mu: Vec<f64> = (0..lat.len)
            .map(|i| {
                if inside(at(i)) {
                    mass / (cells * lat.volume)
                } else {
                    0.0
                }
            })
            .collect();
        let v: Vec<f64> = (0..lat.len)
            .map(|i| {
                let x = at(i);
                0.5 * ((x[0] - 0.9).powi(2) + (x[1] - 0.9).powi(2))
            })
            .collect();
        let grid = SourceGrid::new(&lat, &mu);
        let model = SourceModel {
            grid: &grid,
            tau,
            mu: &mu,
            v: &v,
            local: LocalDual::new(None, Some(2.0), None).unwrap(),
            kappa: 1.0,
            mass,
        };
        let (label, parts) = source_parts(&grid);
        assert_eq!(parts as usize, centres.len());
        parts_predicted_to_meet(&model, &label, parts)
    }

    /// The prediction by hand: the three squares of the authors' example (0.2 apart, 0.18 after
    /// the drift of V over τ = 0.1; P = 1/3, so each spreads 0.6 √(τP) = 0.110) meet at τ = 0.1
    /// (where Newton fails at 128²–512²) and not at τ/2 (spread 0.078, where Newton solves the
    /// stage); the same squares 0.4 apart do not meet at τ; a single square has nothing to meet.
    #[test]
    fn parts_are_predicted_to_meet_when_their_gap_is_below_their_spread() {
        let authors = [[0.3, 0.3], [0.3, 0.7], [0.7, 0.3]];
        for n in [64, 128, 256] {
            assert!(squares_predicted_to_meet(n, &authors, 0.1), "{n}");
            assert!(!squares_predicted_to_meet(n, &authors, 0.05), "{n}");
        }
        let far = [[0.2, 0.2], [0.2, 0.8], [0.8, 0.2]];
        assert!(!squares_predicted_to_meet(128, &far, 0.1));
        assert!(squares_predicted_to_meet(128, &far, 0.5));
        assert!(!squares_predicted_to_meet(128, &[[0.5, 0.5]], 0.1));
    }

    /// Images two cells apart or closer touch with reach 1, in one cell with reach 0; three
    /// cells apart, or moving apart, do not (the geometry by hand: the facing columns 10 and
    /// 14 move to 10 + δ and 14 − δ).
    #[test]
    fn images_of_two_parts_touch_when_they_meet() {
        assert_eq!(squares_touch(0.0), (2, false, false));
        assert_eq!(squares_touch(0.5), (2, false, false));
        assert_eq!(squares_touch(1.0), (2, true, false));
        assert_eq!(squares_touch(2.0), (2, true, true));
        assert_eq!(squares_touch(-2.0), (2, false, false));
    }
}

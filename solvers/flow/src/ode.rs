//! Adaptive explicit Runge–Kutta integration: Dormand–Prince 5(4) with FSAL.
//!
//! The JKO-Flow right-hand sides are explicit (one velocity evaluation per stage, possibly with
//! one linear solve inside), so an embedded pair with error control is all that is needed: the
//! local error estimate ‖y₅ − y₄‖ in the weighted RMS norm with weights atol + rtol·|y|
//! chooses dt (factor 0.9·err^{−1/5}, clamped to [0.2, 5]). A right-hand side may declare a
//! stage state inadmissible (a negative density, a covariance that is no longer positive
//! definite); the step is then rejected and dt divided by 4.

use crate::FlowError;
use rayon::prelude::*;

/// Tolerances and limits of one integration. Defaults: `rtol = 1e-8`, `atol = 1e-12`, 100 000
/// steps, automatic first step, no step limit.
///
/// ```rust
/// use jko_flow::ode::OdeOptions;
///
/// let opts = OdeOptions { rtol: 1e-10, ..OdeOptions::default() };
/// assert_eq!((opts.atol, opts.initial_dt), (1e-12, None));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OdeOptions {
    /// Relative tolerance of the local error (weights atol + rtol·|y|).
    pub rtol: f64,
    /// Absolute tolerance of the local error, in the units of y.
    pub atol: f64,
    /// Largest number of attempted steps (accepted + rejected).
    pub max_steps: usize,
    /// First step to try; `None` picks one from ‖y‖ / ‖f(y)‖.
    pub initial_dt: Option<f64>,
    /// Largest step allowed.
    pub max_dt: f64,
}

impl Default for OdeOptions {
    fn default() -> Self {
        OdeOptions {
            rtol: 1e-8,
            atol: 1e-12,
            max_steps: 100_000,
            initial_dt: None,
            max_dt: f64::INFINITY,
        }
    }
}

/// Work done by one integration (see [`integrate`] for an example).
///
/// ```rust
/// use jko_flow::ode::OdeStats;
///
/// // Nothing to integrate, no work.
/// assert_eq!(OdeStats::default().evaluations, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OdeStats {
    /// Accepted steps.
    pub accepted: usize,
    /// Rejected steps (error too large, or an inadmissible stage).
    pub rejected: usize,
    /// Right-hand-side evaluations.
    pub evaluations: usize,
    /// Last accepted step (a good first step for the next call).
    pub last_dt: f64,
    /// Largest accepted local error estimate (weighted RMS norm, ≤ 1).
    pub max_error: f64,
}

// Dormand–Prince 5(4) tableau (autonomous systems: the nodes c are not needed).
const A: [[f64; 6]; 7] = [
    [0.0; 6],
    [0.2, 0.0, 0.0, 0.0, 0.0, 0.0],
    [3.0 / 40.0, 9.0 / 40.0, 0.0, 0.0, 0.0, 0.0],
    [44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0, 0.0, 0.0, 0.0],
    [
        19372.0 / 6561.0,
        -25360.0 / 2187.0,
        64448.0 / 6561.0,
        -212.0 / 729.0,
        0.0,
        0.0,
    ],
    [
        9017.0 / 3168.0,
        -355.0 / 33.0,
        46732.0 / 5247.0,
        49.0 / 176.0,
        -5103.0 / 18656.0,
        0.0,
    ],
    [
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
    ],
];
/// b − b̂ (fifth minus embedded fourth order weights).
const E: [f64; 7] = [
    71.0 / 57600.0,
    0.0,
    -71.0 / 16695.0,
    71.0 / 1920.0,
    -17253.0 / 339200.0,
    22.0 / 525.0,
    -1.0 / 40.0,
];

/// Below this length vector updates stay sequential (rayon overhead).
const PAR_MIN: usize = 1 << 14;

/// out = y + dt Σ_j a_j k_j.
fn combine(out: &mut [f64], y: &[f64], dt: f64, a: &[f64], k: &[Vec<f64>]) {
    let body = |(i, o): (usize, &mut f64)| {
        let mut s = 0.0;
        for (aj, kj) in a.iter().zip(k) {
            if *aj != 0.0 {
                s += aj * kj[i];
            }
        }
        *o = y[i] + dt * s;
    };
    if out.len() >= PAR_MIN {
        out.par_iter_mut()
            .enumerate()
            .with_min_len(4096)
            .for_each(body);
    } else {
        out.iter_mut().enumerate().for_each(body);
    }
}

/// Weighted RMS norm of dt Σ_j e_j k_j with weights atol + rtol·max(|y|, |y_new|).
fn error_norm(y: &[f64], y_new: &[f64], dt: f64, k: &[Vec<f64>], opts: &OdeOptions) -> f64 {
    let term = |i: usize| {
        let mut s = 0.0;
        for (ej, kj) in E.iter().zip(k) {
            s += ej * kj[i];
        }
        let sc = opts.atol + opts.rtol * y[i].abs().max(y_new[i].abs());
        let r = dt * s / sc;
        r * r
    };
    let n = y.len();
    let sum: f64 = if n >= PAR_MIN {
        (0..n).into_par_iter().with_min_len(4096).map(term).sum()
    } else {
        (0..n).map(term).sum()
    };
    (sum / n.max(1) as f64).sqrt()
}

fn weighted_rms(v: &[f64], y: &[f64], opts: &OdeOptions) -> f64 {
    let n = v.len().max(1) as f64;
    (v.iter()
        .zip(y)
        .map(|(a, b)| {
            let r = a / (opts.atol + opts.rtol * b.abs());
            r * r
        })
        .sum::<f64>()
        / n)
        .sqrt()
}

/// Integrate y' = f(y) from t = 0 to `t_end` in place.
///
/// `rhs(y, dy)` writes f(y) into `dy` and returns `Ok(false)` when `y` is inadmissible (the
/// step is then rejected). `on_accept(dt, y_new, f_new)` sees every accepted step.
///
/// # Errors
/// [`FlowError::Inadmissible`] when the initial state is inadmissible,
/// [`FlowError::TooManySubsteps`] past `max_steps`, [`FlowError::StepSizeUnderflow`] when dt
/// becomes negligible, and any error `rhs` returns.
///
/// ```rust
/// use jko_flow::ode::{OdeOptions, integrate};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // y' = −y from y(0) = 1: y(1) = e^{−1} to about the tolerance.
/// let mut y = [1.0];
/// let opts = OdeOptions { rtol: 1e-10, ..OdeOptions::default() };
/// let mut steps = 0;
/// let stats = integrate(&mut y, 1.0, &opts, |y, dy| { dy[0] = -y[0]; Ok(true) }, |_, _, _| steps += 1)?;
/// assert!((y[0] - (-1.0f64).exp()).abs() < 1e-9);
/// assert_eq!(stats.accepted, steps);
/// assert!(stats.max_error <= 1.0);
/// # Ok(())
/// # }
/// ```
pub fn integrate<F, O>(
    y: &mut [f64],
    t_end: f64,
    opts: &OdeOptions,
    mut rhs: F,
    mut on_accept: O,
) -> Result<OdeStats, FlowError>
where
    F: FnMut(&[f64], &mut [f64]) -> Result<bool, FlowError>,
    O: FnMut(f64, &[f64], &[f64]),
{
    let n = y.len();
    let mut stats = OdeStats::default();
    if t_end <= 0.0 || n == 0 {
        return Ok(stats);
    }
    let mut k: Vec<Vec<f64>> = (0..7).map(|_| vec![0.0; n]).collect();
    let mut stage = vec![0.0; n];
    let mut y_new = vec![0.0; n];
    if !rhs(y, &mut k[0])? {
        return Err(FlowError::Inadmissible {
            reason: "the initial state is outside the domain of the velocity".into(),
        });
    }
    stats.evaluations += 1;
    let mut dt = match opts.initial_dt {
        Some(h) if h > 0.0 => h,
        _ => {
            let d0 = weighted_rms(y, y, opts);
            let d1 = weighted_rms(&k[0], y, opts);
            if d0 < 1e-5 || d1 < 1e-5 {
                1e-6 * t_end.max(1e-300)
            } else {
                0.01 * d0 / d1
            }
        }
    }
    .min(opts.max_dt)
    .min(t_end);
    let mut t = 0.0;
    let mut last_rejected = false;
    while t < t_end {
        if stats.accepted + stats.rejected >= opts.max_steps {
            return Err(FlowError::TooManySubsteps {
                max: opts.max_steps,
                t_reached: t,
                t_end,
            });
        }
        // Land exactly on t_end; avoid a sliver of a last step.
        let remaining = t_end - t;
        if dt >= remaining || dt > 0.9 * remaining && remaining - dt < 0.1 * dt {
            dt = remaining;
        }
        if dt.is_nan() || dt <= 1e-14 * t_end.max(t) {
            return Err(FlowError::StepSizeUnderflow {
                t,
                dt,
                reason: "stiffness or a state leaving the domain".into(),
            });
        }
        let mut admissible = true;
        for s in 1..7 {
            let (done, rest) = k.split_at_mut(s);
            let target = if s == 6 { &mut y_new } else { &mut stage };
            combine(target, y, dt, &A[s][..s], done);
            stats.evaluations += 1;
            if !rhs(target, &mut rest[0])? {
                admissible = false;
                break;
            }
        }
        if !admissible {
            stats.rejected += 1;
            dt *= 0.25;
            last_rejected = true;
            continue;
        }
        let err = error_norm(y, &y_new, dt, &k, opts);
        if !err.is_finite() {
            stats.rejected += 1;
            dt *= 0.25;
            last_rejected = true;
            continue;
        }
        if err <= 1.0 {
            t += dt;
            y.copy_from_slice(&y_new);
            // FSAL: the last stage is f(y_new).
            k.swap(0, 6);
            stats.accepted += 1;
            stats.last_dt = dt;
            stats.max_error = stats.max_error.max(err);
            on_accept(dt, y, &k[0]);
            let grow = if last_rejected { 1.0 } else { 5.0 };
            let fac = (0.9 * err.max(1e-10).powf(-0.2)).clamp(0.2, grow);
            dt = (dt * fac).min(opts.max_dt);
            last_rejected = false;
        } else {
            stats.rejected += 1;
            dt *= (0.9 * err.powf(-0.2)).clamp(0.1, 0.9);
            last_rejected = true;
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifth_order_on_a_linear_system() {
        // y'' = −y as a system; exact (cos t, −sin t).
        let opts = OdeOptions {
            rtol: 1e-12,
            atol: 1e-14,
            ..OdeOptions::default()
        };
        let mut y = [1.0, 0.0];
        let stats = integrate(
            &mut y,
            10.0,
            &opts,
            |y, dy| {
                dy[0] = y[1];
                dy[1] = -y[0];
                Ok(true)
            },
            |_, _, _| {},
        )
        .unwrap();
        assert!((y[0] - 10f64.cos()).abs() < 1e-10, "{}", y[0]);
        assert!((y[1] + 10f64.sin()).abs() < 1e-10);
        assert!(stats.accepted < 2000);
    }

    #[test]
    fn inadmissible_stages_are_rejected_not_accepted() {
        // y' = −1 from y = 1 to t = 0.999: every stage stays > 0 only if the step is small near
        // the end; a rhs that refuses y ≤ 0 must never see an accepted negative state.
        let mut y = [1.0];
        let mut min_seen = f64::INFINITY;
        integrate(
            &mut y,
            0.999,
            &OdeOptions::default(),
            |y, dy| {
                dy[0] = -1.0;
                Ok(y[0] > 0.0)
            },
            |_, y, _| min_seen = min_seen.min(y[0]),
        )
        .unwrap();
        assert!((y[0] - 0.001).abs() < 1e-12);
        assert!(min_seen > 0.0);
    }

    #[test]
    fn step_limit_is_an_error() {
        let mut y = [1.0];
        let opts = OdeOptions {
            max_steps: 3,
            rtol: 1e-14,
            atol: 1e-16,
            ..OdeOptions::default()
        };
        let r = integrate(
            &mut y,
            100.0,
            &opts,
            |y, dy| {
                dy[0] = -y[0] * y[0].cos();
                Ok(true)
            },
            |_, _, _| {},
        );
        assert!(matches!(r, Err(FlowError::TooManySubsteps { max: 3, .. })));
    }
}

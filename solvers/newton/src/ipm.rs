//! The primal–dual interior-point method on (ρ, G, φ, λ, ν) for the steps whose bounds matter
//! (no entropy, or a congestion cap); see the crate docs for the equations, the merit function
//! and the path-following rule.

use crate::kkt::{Errors, Part, Point, Problem};
use crate::system::{LinearFailure, ReducedSystem, Refinement};
use std::time::Instant;

/// Bound multipliers are kept within [μ|K|/(KAPPA_SIGMA ρ), KAPPA_SIGMA μ|K|/ρ] (as IPOPT does).
const KAPPA_SIGMA: f64 = 1e10;
/// Corrected directions per iteration of a porous step (`mehrotra`): each re-aims the
/// complementarity of every cell at the exact landing point computed from the previous one
/// (one solve on the iteration's factorisation each, no new factorisation). Porous m = 3 2D,
/// steps 1/2/3 (round 15): 1 pass without `LAMBDA_FLOOR` 64² 14/10/17, 256² 17/16/16; with the
/// floor, 2 passes 11/10/11 and 17/14/15, 3 passes 10/9/10 and 16/14/15 (Mehrotra's corrector:
/// 17/13/14 and 24/21/21).
const LANDING_PASSES: usize = 3;
/// On a porous step the multiplier λ_K of ρ ≥ 0 is kept above LAMBDA_FLOOR × its value by a
/// per-cell floor instead of the fraction to the boundary. Why: at a degenerate front cell
/// (λ ∝ ρ² along stationarity) the linear step of λ = 1.5|K|ρ² goes negative as soon as ρ
/// shrinks by more than half (δλ/λ = 2δρ/ρ), and the fraction to the boundary then cut every
/// step of the iteration to 0.76–0.87 on porous m3 2D 256² (traced, round 15), so μ fell only
/// ×5 per iteration. λ enters no mass balance; its floor moves r_ρ of such cells only.
/// 256² steps 1/2/3 with 3 landing passes: 17/17/17 → 16/14/15 (floor 0.1: 15/17/20).
const LAMBDA_FLOOR: f64 = 0.01;
/// Armijo constant of the merit-function line search.
const ARMIJO: f64 = 1e-4;
/// Relative barrier parameter from which the active-set finish is tried.
const FINISH_MU: f64 = 1e-8;
/// Smallest line-search step before the search is declared failed.
pub(crate) const MIN_STEP: f64 = 1e-12;
/// Newton iterations of one active-set finish without entropy: when its held set is right it
/// converges quadratically in 2–5 (porous m = 3 2D, traced in rounds 6–8).
const FINISH_ITERATIONS: usize = 12;
/// Growth of the finish's certificate (the interior point's KKT excess at its iterate) over its
/// best value at which a finish with a degenerate law is abandoned (it only grows when the held
/// set is wrong).
const FINISH_DIVERGENCE: f64 = 1e3;
/// Exchange rounds of a finish with a degenerate law: once its held set's Newton iteration has
/// converged without a certificate, the held cells whose negative multiplier the certificate
/// cannot absorb are released once (the front advanced into them). Porous m3 2D 64², 60 steps:
/// 0 / 1 / 2 rounds 587 / 527 / 527 iterations, max 20 / 13 / 13 per step (release build).
const DEGENERATE_RELEASE_ROUNDS: usize = 1;
/// The same with entropy: the free cells' linearised law β ln ρ brings a far-off density back
/// by a bounded factor per iteration, and the finish's excess falls only ×3–10 per iteration from
/// its start at 10⁸–10¹⁰ × tol (crowd-2d 64², traced in rounds 5 and 8): 12 iterations cut
/// off finishes at excess 1.1 that the next iteration would have completed, and the interior
/// point then spent 5 more iterations and another finish 9–11. crowd-2d 64² per step with a
/// budget of 12 / 14 / 15 / 16 / 17 / 18 / 20: 57-65-63 / 59-53-48 / 45-53-49 / 45-54-50 /
/// 45-55-51 / 45-56-52 / 45-39-79 (test profile).
const FINISH_ITERATIONS_ENTROPY: usize = 16;
/// KKT excess (residual / tol) above which the finish is not tried while the interior point's
/// steps are long. Since it steps G as the flux of its new point, the interior point takes steps
/// of 0.8–0.96 near the end and reduces the excess ×3–10 per iteration, while a finish started
/// at excess 10⁶–10⁸ failed after its whole budget (crowd-2d 64² warm steps: 15 iterations).
/// Threshold 10² / 10³ / 10⁴ / 10⁵ / 10⁶ / none, class_iterations per step (test profile):
/// crowd-2d 64² 18-30-25 / 17-30-38 / 18-32-27 / 19-34-34 / 18-35-43 / 21-47-48, crowd-2d 32²
/// 17-23-22 / 17-23-22 / 20-23-23 / 19-23-24 / 18-29-25 / 20-38-25, porous m3 2D 64²
/// 20-41-39 / 20-42-39 / 20-43-38 / 20-42-41 / 20-42-39 / 20-42-39.
const FINISH_DEFER_EXCESS: f64 = 1e2;
/// The same for a degenerate law (porous m > 2 without entropy, `degenerate_law`), whose finish
/// is certified by the interior point's own stopping test and abandoned as soon as its held set
/// proves wrong (round 15). Porous m3 2D per step, 64² / 256², threshold 10² / 3·10³ / 10⁴ /
/// 3·10⁴ / 10⁵: 15-11-12 / 14-9-9 / 13-8-8 / 13-7-8 / 13-6-8 and 21-16-15 / 18-14-13 /
/// 18-13-12 / 18-13-13 / 27-12-13 (release build; at 10⁵ the 256² step 1 finish, tried at
/// excess 8.9·10⁴, held 8 cells that are free and was rejected after 7 iterations).
/// With the landing corrector (merged after those measurements) the interior point reaches a
/// lower excess sooner and 10⁴ tried the finish too early: 256² step 3 tried it at 4.2·10³,
/// where it ran its 12 iterations without a certificate (steps 14/10/26). Both merged,
/// threshold 10² / 10³ / 10⁴: 64² 10-7-7 / 9-6-7 / 8-6-7, 256² 15-12-12 / 14-12-12 / 14-10-26,
/// m3 well 2D 64² 8-7-6 / 8-7-6 / 7-6-5 (release, lead, round 15).
const FINISH_DEFER_EXCESS_DEGENERATE: f64 = 1e3;
/// Last step length from which the interior point counts as converging fast; with shorter
/// steps (a stalled, degenerate path: the finish exists for it) the finish is tried as soon as
/// μ ≤ FINISH_MU (0.3 and 0.5 measured the same within one iteration).
const FINISH_DEFER_STEP: f64 = 0.3;

/// An iterate: primal (ρ, G), the multiplier φ of the mass balance (scaled by τ), the bound
/// multipliers λ (ρ ≥ 0) and ν (ρ ≤ ρ_max), and the gap ρ_max − ρ kept as its own variable (a
/// density within one ulp of the cap still has an exact, positive gap). `gap` and `nu` are
/// empty without a cap.
#[derive(Clone, Debug)]
pub(crate) struct State {
    pub rho: Vec<f64>,
    pub gap: Vec<f64>,
    pub g: Vec<f64>,
    pub phi: Vec<f64>,
    pub lam: Vec<f64>,
    pub nu: Vec<f64>,
}

/// The KKT residuals at an iterate (unscaled), with the face quantities they use.
pub(crate) struct Residuals {
    /// Stationarity in ρ: |K|(f'(ρ) + V + φ/τ) − Σ_σ T w²/(4τ) − λ + ν.
    pub r_rho: Vec<f64>,
    /// Stationarity in G: (w − (φ_L − φ_K))/τ, w = G/(Tθ).
    pub r_g: Vec<f64>,
    /// Mass balance: |K|(ρ − ρⁿ) + Σ_σ G_{K,σ}.
    pub r_p: Vec<f64>,
    pub theta: Vec<f64>,
    pub w: Vec<f64>,
}

/// A Newton direction: a step (δρ, δgap, δG, δφ, δλ, δν) in the iterate's own variables, with
/// δgap = −δρ (empty without a cap), so that the step and the fraction to the boundary treat
/// the gap's bound like the others.
pub(crate) type Direction = State;

/// How a run of the method ended without converging.
pub(crate) struct Stop {
    pub reason: crate::FailureReason,
    pub x: State,
    pub errors: Errors,
    pub mu: f64,
    pub last_step: f64,
}

/// The result of a run: the last iterate, its errors, the iterations and the residual history.
pub(crate) struct Run {
    pub x: State,
    pub errors: Errors,
    pub mu: f64,
    pub iterations: usize,
    pub history: Vec<f64>,
    pub linear_time: f64,
}

impl State {
    /// The primal–dual state of a point of the dual method (on the central path of its μ).
    pub fn from_point(p: &Problem<'_>, pt: &Point) -> State {
        let n = p.n();
        let mu_l = p.mu_lower(pt.mu);
        let rho: Vec<f64> = pt.cells.iter().map(|c| c.rho).collect();
        let gap: Vec<f64> = match p.law.rho_max {
            Some(_) => pt.cells.iter().map(|c| c.gap).collect(),
            None => Vec::new(),
        };
        State {
            lam: (0..n).map(|k| mu_l * p.vols[k] / rho[k]).collect(),
            nu: gap
                .iter()
                .enumerate()
                .map(|(k, g)| pt.mu * p.vols[k] / g)
                .collect(),
            g: p.flux(pt),
            phi: pt.phi.clone(),
            rho,
            gap,
        }
    }
}

impl<'a> Problem<'a> {
    pub fn pd_residuals(&self, x: &State) -> Residuals {
        let n = self.n();
        let tau = self.tau;
        let nf = self.faces.len();
        let mut theta = vec![0.0; nf];
        let mut w = vec![0.0; nf];
        let mut r_g = vec![0.0; nf];
        let mut kin = vec![0.0; n];
        let mut r_p: Vec<f64> = (0..n)
            .map(|k| self.vols[k] * (x.rho[k] - self.rho_prev[k]))
            .collect();
        for (s, &(k, l, t)) in self.faces.iter().enumerate() {
            let th = 0.5 * (x.rho[k] + x.rho[l]);
            // Between two empty cells (the active-set finish) G = 0 and w = ∇φ.
            let v = if th > 0.0 {
                x.g[s] / (t * th)
            } else {
                x.phi[l] - x.phi[k]
            };
            theta[s] = th;
            w[s] = v;
            r_g[s] = (v - (x.phi[l] - x.phi[k])) / tau;
            let e = t * v * v / (4.0 * tau);
            kin[k] += e;
            kin[l] += e;
            r_p[k] += x.g[s];
            r_p[l] -= x.g[s];
        }
        let r_rho = (0..n)
            .map(|k| {
                let mut r = self.vols[k]
                    * (self.law.f1(x.rho[k]) + self.potential[k] + x.phi[k] / tau)
                    - kin[k]
                    - x.lam[k];
                if !x.nu.is_empty() {
                    r += x.nu[k];
                }
                r
            })
            .collect();
        Residuals {
            r_rho,
            r_g,
            r_p,
            theta,
            w,
        }
    }

    /// The primal–dual Hessian diagonal D_K = |K| f''(ρ_K) + λ_K/ρ_K + ν_K/(ρ_max − ρ_K).
    pub fn pd_hessian(&self, x: &State) -> Vec<f64> {
        (0..self.n())
            .map(|k| {
                let mut d = self.vols[k] * self.law.f2(x.rho[k]) + x.lam[k] / x.rho[k];
                if !x.nu.is_empty() {
                    d += x.nu[k] / x.gap[k];
                }
                d
            })
            .collect()
    }

    /// Scaled KKT error with its round-off floors; each residual is translated into the
    /// density error that would absorb it.
    pub fn pd_errors(&self, x: &State, res: &Residuals, tol: f64) -> Errors {
        let n = self.n();
        let tau = self.tau;
        let (rs, es) = (self.rho_scale, self.e_scale);
        let gamma = self.gamma();
        let d = self.pd_hessian(x);
        // Per cell: Σ_σ T θ (for the φ-route of the ρ-row), Σ_σ |G| and Σ T w²/(4τ) (floors).
        let mut tth = vec![0.0; n];
        let mut gabs = vec![0.0; n];
        let mut kin = vec![0.0; n];
        for (s, &(k, l, t)) in self.faces.iter().enumerate() {
            let a = t * res.theta[s];
            tth[k] += a;
            tth[l] += a;
            gabs[k] += x.g[s].abs();
            gabs[l] += x.g[s].abs();
            let e = t * res.w[s] * res.w[s] / (4.0 * tau);
            kin[k] += e;
            kin[l] += e;
        }
        let mut e = Errors::default();
        for k in 0..n {
            let v = self.vols[k];
            let r = res.r_p[k].abs() / (v * rs);
            let floor = gamma * (v * (x.rho[k] + self.rho_prev[k]) + gabs[k]) / (v * rs);
            e.primal = e.primal.max(r);
            e.consider(Part::Primal, r, floor, tol);
            // Stationarity in ρ: the smaller of the density changes that absorb it through
            // ρ_K (1/D_K) or through φ_K (τ Σ T θ / |K|²).
            let to_density = (1.0 / (d[k] * rs)).min(tau * tth[k] / (v * v * rs));
            let r = res.r_rho[k].abs() * to_density;
            let mut terms = v
                * (self.law.f1(x.rho[k]).abs()
                    + self.law.f2(x.rho[k]) * x.rho[k]
                    + self.potential[k].abs()
                    + x.phi[k].abs() / tau)
                + kin[k]
                + x.lam[k];
            if !x.nu.is_empty() {
                terms += x.nu[k];
            }
            e.dual = e.dual.max(r);
            e.consider(Part::StationarityRho, r, gamma * terms * to_density, tol);
            // Complementarity (natural residual).
            let mut c = (x.rho[k] / rs).min(x.lam[k] / (v * es));
            if !x.nu.is_empty() {
                c = c.max((x.gap[k] / rs).min(x.nu[k] / (v * es)));
            }
            e.complementarity = e.complementarity.max(c);
            e.consider(Part::Complementarity, c, 0.0, tol);
        }
        for (s, &(k, l, t)) in self.faces.iter().enumerate() {
            let vmin = self.vols[k].min(self.vols[l]);
            let to_density = tau * t * res.theta[s] / (vmin * rs);
            let r = res.r_g[s].abs() * to_density;
            let floor = gamma * (res.w[s].abs() + x.phi[k].abs() + x.phi[l].abs()) / tau;
            e.dual = e.dual.max(r);
            e.consider(Part::StationarityFlux, r, floor * to_density, tol);
        }
        let total: f64 = res.r_p.iter().sum();
        let size: f64 = (0..n)
            .map(|k| self.vols[k] * (x.rho[k] + self.rho_prev[k]))
            .sum();
        e.mass = total.abs() / self.mass;
        e.consider(Part::Mass, e.mass, gamma * size / self.mass, tol);
        if e.excess.is_nan() {
            e.excess = f64::INFINITY;
        }
        e
    }

    /// Weights that turn the residuals (r_ρ, r_G, r_p) into density errors at x (the scalings
    /// of `pd_errors`), fixed for one line search.
    pub fn residual_weights(&self, x: &State, res: &Residuals) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let n = self.n();
        let tau = self.tau;
        let rs = self.rho_scale;
        let d = self.pd_hessian(x);
        let mut tth = vec![0.0; n];
        for (s, &(k, l, t)) in self.faces.iter().enumerate() {
            let a = t * res.theta[s];
            tth[k] += a;
            tth[l] += a;
        }
        let w_rho = (0..n)
            .map(|k| {
                let v = self.vols[k];
                (1.0 / (d[k] * rs)).min(tau * tth[k] / (v * v * rs))
            })
            .collect();
        let w_g = self
            .faces
            .iter()
            .enumerate()
            .map(|(s, &(k, l, t))| tau * t * res.theta[s] / (self.vols[k].min(self.vols[l]) * rs))
            .collect();
        let w_p = (0..n).map(|k| 1.0 / (self.vols[k] * rs)).collect();
        (w_rho, w_g, w_p)
    }

    /// Whether every complementarity product of x is at least γ = 10⁻³ times their average
    /// (the wide neighbourhood of the central path).
    pub fn centred(&self, x: &State) -> bool {
        let mu = self.pd_complementarity(&x.rho, &x.lam, &x.gap, &x.nu);
        let gamma = 1e-3;
        (0..self.n()).all(|k| {
            let floor = gamma * mu * self.vols[k];
            (!self.lower_active || x.lam[k] * x.rho[k] >= floor)
                && (x.nu.is_empty() || x.nu[k] * x.gap[k] >= floor)
        })
    }

    /// Σ of the squared weighted residuals (r_ρ, r_G, r_p) at x.
    pub fn residual_norm2(&self, x: &State, w: &(Vec<f64>, Vec<f64>, Vec<f64>)) -> f64 {
        let r = self.pd_residuals(x);
        let sq =
            |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(u, v)| (u * v) * (u * v)).sum::<f64>();
        sq(&r.r_rho, &w.0) + sq(&r.r_g, &w.1) + sq(&r.r_p, &w.2)
    }

    /// Average complementarity μ_c of the bounds the interior point drives (both without
    /// entropy, only the cap with it): Σ (λ ρ + ν (ρ_max − ρ)) / (n_bounds Σ |K|).
    pub fn pd_complementarity(&self, rho: &[f64], lam: &[f64], gap: &[f64], nu: &[f64]) -> f64 {
        let mut s = 0.0;
        let mut nb = 0.0;
        if self.lower_active {
            s += rho.iter().zip(lam).map(|(r, l)| r * l).sum::<f64>();
            nb += 1.0;
        }
        if self.law.rho_max.is_some() {
            s += gap.iter().zip(nu).map(|(g, v)| g * v).sum::<f64>();
            nb += 1.0;
        }
        if nb == 0.0 {
            return 0.0;
        }
        s / (nb * self.vols.iter().sum::<f64>())
    }

    /// The point x + α d (λ, ν with their own step α_D), with the flux G = T θ ∇φ of its own
    /// densities and potential.
    ///
    /// Why G is not stepped linearly: G enters the residuals only through the velocity
    /// w = G/(T θ), and a step that brings a free-boundary cell's density down by ×100 (the
    /// fraction to the boundary allows it) multiplies w by up to 100 on its faces and the kinetic
    /// term T w²/(4τ) of its ρ-row by up to 10⁴: traced on porous m = 3 2D, steps at 0.9 of the
    /// fraction to the boundary raised the weighted KKT residual ×4–2000 and every step was
    /// halved to ~0.45 (the residual then falls only ×2 per iteration). The flux of the new
    /// point differs from the linear step by the second-order term α² T δθ ∇δφ, keeps r_G = 0
    /// and w = ∇φ exactly (G is the minimiser of the kinetic term for given ρ and φ, as in the
    /// dual method and the active-set finish), and the Newton direction is unchanged.
    /// class_iterations per step (test profile): crowd-2d 64² 45/54/50 → 21/47/48, 32²
    /// 26/25/45 → 20/38/25, porous m3 2D 64² 20/57/64 → 20/42/39, raw samples 22/44/54 →
    /// 22/42/38; the other classes do not use the interior point.
    pub fn advance(&self, x: &State, d: &Direction, alpha: f64, alpha_d: f64) -> State {
        let lin = |a: &[f64], b: &[f64], t: f64| -> Vec<f64> {
            a.iter().zip(b).map(|(p, q)| p + t * q).collect()
        };
        let rho = lin(&x.rho, &d.rho, alpha);
        let phi = lin(&x.phi, &d.phi, alpha);
        let g = self.flux_of(&rho, &phi);
        let mut lam = lin(&x.lam, &d.lam, alpha_d);
        if self.lands() {
            for (l, l0) in lam.iter_mut().zip(&x.lam) {
                *l = l.max(LAMBDA_FLOOR * l0);
            }
        }
        State {
            gap: lin(&x.gap, &d.gap, alpha),
            g,
            lam,
            nu: lin(&x.nu, &d.nu, alpha_d),
            rho,
            phi,
        }
    }

    /// Whether the iteration uses the landing corrector and the floor of λ (`LANDING_PASSES`,
    /// `LAMBDA_FLOOR`): a porous step without entropy or cap, whose lower bound the interior
    /// point drives. (Congestion, a potential alone and no energy keep Mehrotra's corrector:
    /// measured with it, crowd-open 2D 32² 16/14/14 → 17/14/15 and potential-only 1D
    /// 67/63/51 → 50/66/68 per step.)
    pub fn lands(&self) -> bool {
        self.lower_active
            && self.law.m.is_some()
            && self.law.beta.is_none()
            && self.law.rho_max.is_none()
    }

    /// Fraction to the boundary: the largest steps α_P, α_D ≤ 1 with ρ + α δρ ≥ (1 − t) ρ, the
    /// same for the gap, and λ, ν likewise (t = 1: the step to the boundary itself).
    pub fn fraction_to_boundary(&self, x: &State, d: &Direction, t: f64) -> (f64, f64) {
        // The largest α ≤ 1 with v + α δv ≥ (1 − t) v for one nonnegative variable (1 where
        // the variable is absent: the gap and ν without a cap).
        let largest = |v: &[f64], dv: &[f64]| {
            v.iter().zip(dv).fold(
                1.0f64,
                |a, (v, dv)| {
                    if *dv < 0.0 { a.min(-t * v / dv) } else { a }
                },
            )
        };
        // On a porous step λ has its floor instead (see `LAMBDA_FLOOR`).
        let dual = if self.lands() {
            largest(&x.nu, &d.nu)
        } else {
            largest(&x.lam, &d.lam).min(largest(&x.nu, &d.nu))
        };
        (largest(&x.rho, &d.rho).min(largest(&x.gap, &d.gap)), dual)
    }

    /// Keep the bound multipliers within a factor KAPPA_SIGMA of the central path at μ.
    pub fn safeguard(&self, x: &mut State, mu: f64) {
        let mu_l = self.mu_lower(mu);
        for k in 0..self.n() {
            if mu_l > 0.0 {
                let c = mu_l * self.vols[k] / x.rho[k];
                x.lam[k] = x.lam[k].clamp(c / KAPPA_SIGMA, c * KAPPA_SIGMA);
            }
            if !x.nu.is_empty() && mu > 0.0 {
                let c = mu * self.vols[k] / x.gap[k];
                x.nu[k] = x.nu[k].clamp(c / KAPPA_SIGMA, c * KAPPA_SIGMA);
            }
        }
    }
}

/// The Newton matrix of one iterate, factorised once and used for every direction of the
/// iteration (affine predictor, corrector, fallback).
pub(crate) struct Linearisation<'s> {
    system: &'s mut ReducedSystem,
    /// D⁻¹ (0 for a cell held at a bound by the active-set finish).
    dinv: Vec<f64>,
    /// C_KK.
    c_diag: Vec<f64>,
    /// Rows of S that vanish identically (their unknown is held: δφ_K = 0).
    pinned: Vec<usize>,
    pub time: f64,
}

impl<'s> Linearisation<'s> {
    /// Assemble and factorise S = Cᵀ D⁻¹ C + L_θ/τ at x.
    pub fn new(
        p: &Problem<'_>,
        x: &State,
        res: &Residuals,
        system: &'s mut ReducedSystem,
    ) -> Result<Self, LinearFailure> {
        let d = p.pd_hessian(x);
        if d.iter().any(|v| !(*v > 0.0 && v.is_finite())) {
            return Err(LinearFailure(
                "the Hessian diagonal is not positive and finite".into(),
            ));
        }
        let dinv: Vec<f64> = d.iter().map(|v| 1.0 / v).collect();
        Self::with_compliance(p, res, dinv, system)
    }

    /// Assemble and factorise S = Cᵀ diag(dinv) C + L_θ/τ.
    pub fn with_compliance(
        p: &Problem<'_>,
        res: &Residuals,
        dinv: Vec<f64>,
        system: &'s mut ReducedSystem,
    ) -> Result<Self, LinearFailure> {
        let t0 = Instant::now();
        let (c_diag, pinned) = p.factorise_newton_matrix(
            system,
            &dinv,
            |s| res.w[s],
            |s| p.faces[s].2 * res.theta[s] / p.tau,
        )?;
        Ok(Linearisation {
            system,
            dinv,
            c_diag,
            pinned,
            time: t0.elapsed().as_secs_f64(),
        })
    }

    /// The Newton direction for the complementarity target μ_t, with the optional Mehrotra
    /// corrections (c_λ, c_ν) added to λρ and ν(ρ_max − ρ).
    pub fn direction(
        &mut self,
        p: &Problem<'_>,
        x: &State,
        res: &Residuals,
        mu_t: f64,
        corr: Option<(&[f64], &[f64])>,
    ) -> Result<Direction, LinearFailure> {
        let t0 = Instant::now();
        let tau = p.tau;
        let n = p.n();
        let capped = !x.nu.is_empty();
        let mu_l = p.mu_lower(mu_t);
        // r_λ = λρ − μ_L|K| (+ c_λ), r_ν = ν(ρ_max − ρ) − μ|K| (+ c_ν).
        let r_lam: Vec<f64> = (0..n)
            .map(|k| x.lam[k] * x.rho[k] - mu_l * p.vols[k] + corr.map_or(0.0, |(c, _)| c[k]))
            .collect();
        let r_nu: Vec<f64> = if capped {
            (0..n)
                .map(|k| x.nu[k] * x.gap[k] - mu_t * p.vols[k] + corr.map_or(0.0, |(_, v)| v[k]))
                .collect()
        } else {
            Vec::new()
        };
        // R1 = r_ρ + r_λ/ρ − r_ν/(ρ_max − ρ) + ½ Σ_σ T w r_G;  R2 = (r_p − τ Σ_σ T θ r_G)/τ.
        // (A cell held at a bound by the active-set finish has ρ or its gap = 0 and no
        // multiplier term.)
        let over = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        let mut r1: Vec<f64> = (0..n)
            .map(|k| {
                let mut v = res.r_rho[k] + over(r_lam[k], x.rho[k]);
                if capped {
                    v -= over(r_nu[k], x.gap[k]);
                }
                v
            })
            .collect();
        let mut r2: Vec<f64> = res.r_p.clone();
        for (s, &(k, l, t)) in p.faces.iter().enumerate() {
            let a = 0.5 * t * res.w[s] * res.r_g[s];
            r1[k] += a;
            r1[l] += a;
            let b = tau * t * res.theta[s] * res.r_g[s];
            r2[k] -= b;
            r2[l] += b;
        }
        r2.iter_mut().for_each(|v| *v /= tau);
        // S δφ = R2 − Cᵀ D⁻¹ R1.
        let y: Vec<f64> = (0..n).map(|k| r1[k] * self.dinv[k]).collect();
        let cty = self.c_transpose(p, res, &y);
        let mut dphi: Vec<f64> = (0..n).map(|k| r2[k] - cty[k]).collect();
        for &k in &self.pinned {
            dphi[k] = 0.0;
        }
        self.system.solve(&mut dphi, Refinement::WhileDecreasing)?;
        // δρ = −D⁻¹ (R1 + C δφ).
        let cd = self.c_times(p, res, &dphi);
        let drho: Vec<f64> = (0..n).map(|k| -(r1[k] + cd[k]) * self.dinv[k]).collect();
        // δG = −τ T θ r_G + T w δθ + T θ (δφ_L − δφ_K).
        let dg: Vec<f64> = p
            .faces
            .iter()
            .enumerate()
            .map(|(s, &(k, l, t))| {
                let th = res.theta[s];
                -tau * t * th * res.r_g[s]
                    + t * res.w[s] * 0.5 * (drho[k] + drho[l])
                    + t * th * (dphi[l] - dphi[k])
            })
            .collect();
        let dlam: Vec<f64> = (0..n)
            .map(|k| over(-(r_lam[k] + x.lam[k] * drho[k]), x.rho[k]))
            .collect();
        let dnu: Vec<f64> = if capped {
            (0..n)
                .map(|k| over(-r_nu[k] + x.nu[k] * drho[k], x.gap[k]))
                .collect()
        } else {
            Vec::new()
        };
        self.time += t0.elapsed().as_secs_f64();
        let d = Direction {
            gap: if capped {
                drho.iter().map(|r| -r).collect()
            } else {
                Vec::new()
            },
            rho: drho,
            g: dg,
            phi: dphi,
            lam: dlam,
            nu: dnu,
        };
        let finite = d
            .rho
            .iter()
            .chain(&d.g)
            .chain(&d.lam)
            .chain(&d.nu)
            .all(|v| v.is_finite());
        if finite {
            Ok(d)
        } else {
            Err(LinearFailure("the Newton direction is not finite".into()))
        }
    }

    /// C v: (C v)_K = C_KK v_K − Σ_σ T w_{K,σ}/(2τ) v_L.
    fn c_times(&self, p: &Problem<'_>, res: &Residuals, v: &[f64]) -> Vec<f64> {
        let mut out: Vec<f64> = (0..p.n()).map(|k| self.c_diag[k] * v[k]).collect();
        for (s, &(k, l, t)) in p.faces.iter().enumerate() {
            let a = 0.5 * t * res.w[s] / p.tau;
            out[k] -= a * v[l];
            out[l] += a * v[k];
        }
        out
    }

    /// Cᵀ v: (Cᵀ v)_K = C_KK v_K + Σ_σ T w_{K,σ}/(2τ) v_L.
    fn c_transpose(&self, p: &Problem<'_>, res: &Residuals, v: &[f64]) -> Vec<f64> {
        let mut out: Vec<f64> = (0..p.n()).map(|k| self.c_diag[k] * v[k]).collect();
        for (s, &(k, l, t)) in p.faces.iter().enumerate() {
            let a = 0.5 * t * res.w[s] / p.tau;
            out[k] += a * v[l];
            out[l] -= a * v[k];
        }
        out
    }
}

/// Porous m > 2 without entropy: f''(0) = 0, a cell released from ρ = 0 has a divergent linearised
/// law, and the active-set finish exchanges no cells (see `finish`).
fn degenerate_law(p: &Problem<'_>) -> bool {
    p.law.beta.is_none() && p.law.m.is_some_and(|m| m > 2.0)
}

/// Run the method from x with barrier parameter μ (absolute) down to `mu_min`, for at most
/// `max_iter` iterations.
///
/// Each iteration factorises the Newton matrix once and takes Mehrotra's predictor–corrector
/// direction: the affine (μ = 0) direction measures how much complementarity one step can
/// remove and sets the target μ_t = σ μ_c with σ = (μ_aff/μ_c)³; the corrector adds its
/// second-order term δλ δρ. The step starts at the fraction to the boundary (0.99) and is
/// halved until (i) the weighted KKT residual ‖W (r_ρ, r_G, r_p)‖₂ decreases by the Armijo
/// fraction and (ii) every complementarity product stays in the wide neighbourhood
/// λ_K ρ_K ≥ γ μ |K| (γ = 10⁻³) of the central path. Once μ is small the active-set finish
/// ([`finish`]) is tried. On a porous step ([`Problem::lands`]) the corrector is the landing
/// corrector ([`landing`]) and λ has a per-cell floor instead of the fraction to the boundary.
pub(crate) fn run(
    p: &Problem<'_>,
    system: &mut ReducedSystem,
    mut x: State,
    mut mu: f64,
    mu_min: f64,
    tol: f64,
    max_iter: usize,
) -> Result<Run, (Stop, Run)> {
    let scale = p.rho_scale * p.e_scale;
    let mut out = Run {
        x: x.clone(),
        errors: Errors::default(),
        mu,
        iterations: 0,
        history: Vec::new(),
        linear_time: 0.0,
    };
    let mut last_step = 1.0;
    let mut next_finish = 0;
    loop {
        let res = p.pd_residuals(&x);
        let e = p.pd_errors(&x, &res, tol);
        out.history.push(e.total());
        let stop = |reason, x: State, out: Run, last_step, mu| {
            Err((
                Stop {
                    reason,
                    x,
                    errors: e,
                    mu,
                    last_step,
                },
                out,
            ))
        };
        if e.excess <= 1.0 {
            certify_vacuum(p, &mut x, tol);
            out.x = x;
            out.errors = e;
            out.mu = mu;
            return Ok(out);
        }
        // Active-set finish once the barrier is small, then every few iterations.
        // While the interior point itself converges fast (steps ≥ FINISH_DEFER_STEP), the
        // finish waits until the KKT excess is ≤ FINISH_DEFER_EXCESS (see the constants).
        let defer_excess = if degenerate_law(p) {
            FINISH_DEFER_EXCESS_DEGENERATE
        } else {
            FINISH_DEFER_EXCESS
        };
        let defer = last_step >= FINISH_DEFER_STEP && e.excess > defer_excess;
        // `max_iter` bounds the run's iterations, the finish's included.
        let left = max_iter.saturating_sub(out.iterations);
        if mu <= FINISH_MU * scale && out.iterations >= next_finish && !defer && left > 0 {
            let mut t = 0.0;
            let mut its = 0;
            let finished = finish(p, system, &x, tol, left, &mut t, &mut its);

            out.linear_time += t;
            // Every Newton iteration of the finish factorises once, and is charged whether
            // the finish succeeds or not.
            out.iterations += its;
            if let Some((y, ef)) = finished {
                out.history.push(ef.total());
                out.x = y;
                out.errors = ef;
                out.mu = 0.0;
                return Ok(out);
            }
            next_finish = out.iterations + 5;
        }
        if out.iterations >= max_iter {
            return stop(crate::FailureReason::MaxIterations, x, out, last_step, mu);
        }
        out.iterations += 1;
        // The iteration's linear algebra (one factorisation, then its directions) stops the run
        // alike wherever it fails.
        let directions = Linearisation::new(p, &x, &res, system).and_then(|mut lin| {
            let directions = mehrotra(p, &x, &res, &mut lin, mu_min);
            out.linear_time += lin.time;
            directions
        });
        let (mu_t, d, plain) = match directions {
            Ok(v) => v,
            Err(err) => {
                return stop(
                    crate::FailureReason::LinearSolver(err.0),
                    x,
                    out,
                    last_step,
                    mu,
                );
            }
        };
        let w = p.residual_weights(&x, &res);
        let r0 = p.residual_norm2(&x, &w);
        // Residuals at their round-off floor count as zero.
        let floor = (e.floor * e.floor + tol * tol) * 1e-4;
        let search = |d: &Direction| -> Option<(State, f64)> {
            let (ap, ad) = p.fraction_to_boundary(&x, d, 0.99);
            let mut alpha = ap.min(ad);
            while alpha >= MIN_STEP {
                let trial = p.advance(&x, d, alpha, alpha);
                let inside =
                    trial.rho.iter().all(|r| *r > 0.0) && trial.gap.iter().all(|g| *g > 0.0);
                if inside && p.centred(&trial) {
                    let r1 = p.residual_norm2(&trial, &w);
                    if r1 <= (1.0 - ARMIJO * alpha) * r0 + floor {
                        return Some((trial, alpha));
                    }
                }
                alpha *= 0.5;
            }
            None
        };
        // The corrector helps on the central path; where it shortens the step a lot, the plain
        // Newton direction of the same target may go further.
        let mut accepted = search(&d);
        if accepted.as_ref().is_none_or(|(_, a)| *a < 0.1)
            && let Some(plain) = plain
            && let Some(other) = search(&plain)
            && accepted.as_ref().is_none_or(|(_, a)| other.1 > *a)
        {
            accepted = Some(other);
        }
        match accepted {
            Some((next, alpha)) => {
                x = next;
                last_step = alpha;
            }
            None => return stop(crate::FailureReason::LineSearch, x, out, MIN_STEP, mu),
        }
        mu = mu_t;
        p.safeguard(&mut x, mu);
    }
}

/// Mehrotra's predictor–corrector directions at x with the factorised Newton matrix `lin`: the
/// affine (μ = 0) direction sets the target μ_t = σ μ_c, σ = (μ_aff/μ_c)³, and the corrector
/// adds its second-order terms δλ δρ and δν δgap. Returns μ_t, the corrected direction and the
/// plain Newton direction of the same target; at μ_c ≤ `mu_min` only the plain direction to
/// `mu_min`.
fn mehrotra(
    p: &Problem<'_>,
    x: &State,
    res: &Residuals,
    lin: &mut Linearisation<'_>,
    mu_min: f64,
) -> Result<(f64, Direction, Option<Direction>), LinearFailure> {
    let mu_c = p.pd_complementarity(&x.rho, &x.lam, &x.gap, &x.nu);
    if mu_c <= mu_min {
        let d = lin.direction(p, x, res, mu_min, None)?;
        return Ok((mu_min, d, None));
    }
    let aff = lin.direction(p, x, res, 0.0, None)?;
    let (ap, ad) = p.fraction_to_boundary(x, &aff, 1.0);
    let trial = p.advance(x, &aff, ap, ad);
    let mu_aff = p
        .pd_complementarity(&trial.rho, &trial.lam, &trial.gap, &trial.nu)
        .max(0.0);
    let sigma = (mu_aff / mu_c).powi(3).clamp(0.0, 1.0);
    let mu_t = (sigma * mu_c).max(mu_min);
    let c_nu: Vec<f64> = (0..x.nu.len()).map(|k| aff.nu[k] * aff.gap[k]).collect();
    // Mehrotra's second-order term, or on a porous step the landing corrector, re-aimed
    // `LANDING_PASSES` − 1 more times from the previous corrected direction.
    let (c_lam, passes) = if p.lands() {
        (landing(p, x, &aff, &aff, mu_t), LANDING_PASSES)
    } else {
        ((0..p.n()).map(|k| aff.lam[k] * aff.rho[k]).collect(), 1)
    };
    let mut d = lin.direction(p, x, res, mu_t, Some((&c_lam, &c_nu)))?;
    for _ in 1..passes {
        let c_lam = landing(p, x, &aff, &d, mu_t);
        d = lin.direction(p, x, res, mu_t, Some((&c_lam, &c_nu)))?;
    }
    let plain = lin.direction(p, x, res, mu_t, None)?;
    Ok((mu_t, d, Some(plain)))
}

/// The landing corrector of a porous step: the second-order term c_K added to λ_K ρ_K − μ_t|K|
/// in the complementarity row, given a predicted direction `pred` (the affine one, then the
/// previous corrected one) and the affine direction `aff`, which says which of ρ_K, λ_K vanishes.
///
/// Derivation. Where ρ_K vanishes (δρ_aff/ρ ≤ δλ_aff/λ: a vacuum or front cell), the exact
/// point of the path at μ_t for the predicted multiplier is ρ_t = μ_t|K|/(λ + δλ_pred). With
/// c = δλ_pred (ρ_t − ρ), the linearised row λ δρ + ρ δλ = μ_t|K| − λρ − c gives, when the
/// solve reproduces δλ = δλ_pred, ρ + δρ = (μ_t|K| − c − ρ δλ_pred)/λ = ρ_t exactly. Where λ_K
/// vanishes (a free cell), symmetrically λ_t = μ_t|K|/(ρ + δρ_pred), c = δρ_pred (λ_t − λ).
/// Mehrotra's corrector δλ_aff δρ_aff is the same expression with ρ + δρ_aff in place of ρ_t:
/// at a cell whose λ is still converging to a small λ* > 0 (s* slightly below 0, the lagging
/// front cells of round 14: ρ 10⁻⁸–10⁻¹⁰ ρ_s, λ 2–4× λ*), the linearised product leaves
/// ρ + δρ = ρ (λ − λ*)/λ + μ_t|K|/λ, so ρ falls only 2–10× per iteration whatever μ_t
/// (traced on porous m3 2D 64²: μ_c ×10–20 per iteration, those cells 30–250× above it). The
/// update stays linear in ρ (the mass balance is linear in ρ, so the Newton model's mass change
/// is exact) — unlike the log form ln λ + ln ρ = ln μ with a multiplicative update, which
/// round 14 and this round measured to lose the mass balance. Where λ + δλ_pred ≤ 0 (or
/// ρ + δρ_pred ≤ 0) no landing point exists and Mehrotra's term is kept. Repeating the
/// corrector with the corrected δλ (`LANDING_PASSES`) brings the solve's δλ closer to the one
/// predicted; cells that overshoot are still held by the fraction to the boundary.
fn landing(p: &Problem<'_>, x: &State, aff: &Direction, pred: &Direction, mu_t: f64) -> Vec<f64> {
    let mu_l = p.mu_lower(mu_t);
    (0..p.n())
        .map(|k| {
            let (r, l) = (x.rho[k], x.lam[k]);
            let target = mu_l * p.vols[k];
            if aff.rho[k] / r <= aff.lam[k] / l {
                let l_new = l + pred.lam[k];
                if l_new > 0.0 {
                    return pred.lam[k] * (target / l_new - r);
                }
            } else {
                let r_new = r + pred.rho[k];
                if r_new > 0.0 {
                    return pred.rho[k] * (target / r_new - l);
                }
            }
            aff.lam[k] * aff.rho[k]
        })
        .collect()
}

/// The active-set finish: hold the cells the interior point has put at a bound there
/// (ρ_K/ρ_s ≤ λ_K/(|K| E_s), and likewise at the cap), drop the barrier, and solve the
/// remaining smooth equality-constrained problem in (ρ_free, φ) with G = T θ ∇φ by Newton's
/// method. Accepted only when it converges and its solution is complementary: free densities
/// within the bounds, and the multipliers of the held cells, read off their stationarity
/// rows, ≥ 0 (both up to tol). Degenerate cells (ρ and λ both ~0) are right either way.
/// Returns the finished state, or `None` (then the interior point goes on); `iterations` counts
/// the Newton iterations (one factorisation each) it spent either way, at most `max_iter`.
///
/// ## A degenerate law (porous m > 2 without entropy): the interior point's own certificate
/// Here the held cells' multipliers are ill-determined: at a held front cell K whose faces
/// carry θ ~ 10⁻⁵ ρ_s, λ_K = |K|(V_K + φ_K/τ) − Q_K, and Q_K = Σ_σ T_σ(φ_L − φ_K)²/(4τ) takes
/// the potential of the empty cells beyond K, which no mass balance determines (their faces
/// carry θ = 0). Round 14 found 16 such cells with λ = −6.7·10⁻⁶…−9.7·10⁻⁶ |K|E_s at a held-set
/// solution within 8.8·10⁻¹¹ ρ_s of the interior point's answer. Three things make the finish
/// right there:
/// 1. The empty cells' potential (`repair_held_potential`) is extended from the coupled cells
///    layer by layer into the vacuum, then each is moved into the interval where its own and its
///    held neighbours' multipliers are ≥ 0. This moves no mass (every face of such a cell has
///    θ = 0) and changes no residual but the held cells' multipliers. With it the 16 cells'
///    multipliers are ≥ 0 (64² step 1: certificate 1.8·10⁻⁵ after 2 iterations).
/// 2. The acceptance test is the interior point's stopping test itself (`pd_errors`, the same
///    function and tol), evaluated at the finish's iterate read as a primal–dual point
///    (`candidate`): held cells at ρ = 0 with λ_K = max(r_ρ,K, 0), free cells with ρ clipped to
///    ≥ 0 and λ = 0, G = T θ ∇φ. That point satisfies every sign condition (ρ, λ ≥ 0) exactly,
///    so its KKT residuals r_ρ, r_G, r_p and the complementarity min(ρ/ρ_s, λ/(|K|E_s)) (= 0)
///    are those the interior point measures at its own iterates, translated into density errors
///    the same way; a negative multiplier −ε left at a held cell is a stationarity residual
///    ε, whose density error is min(1/D_K, τ Σ_σ T_σθ_σ/|K|²) ε/ρ_s (D_K = |K| f''(0) = 0, so
///    the φ-route), exactly as the interior point would count it. Nothing is accepted that the
///    interior point's own test would reject at that point; the test is evaluated at every pass
///    (no factorisation), also before the first Newton iteration.
/// 3. When the held set's Newton iteration has converged (its own excess ≤ 1) and the
///    certificate still fails, the held cells whose negative multiplier its φ-route cannot
///    absorb (the front advanced into them) are released once (`DEGENERATE_RELEASE_ROUNDS`),
///    restarting from the interior point's density (≥ tol ρ_s) where the linearised law
///    3|K|ρ is finite, and the Newton iteration goes on. A certificate that grows 10³-fold over
///    its best (`FINISH_DIVERGENCE`), a second failure at convergence, or the budget send the
///    step back to the interior point.
///
/// Checked: `tests/porous_finish.rs` compares the finished answers with newton's at tol 10⁻¹²
/// (≤ 3.6·10⁻¹³ ρ_s) and with the tight conic; against main's answers (interior point or
/// its old finish) ≤ 1.04·10⁻¹⁰ ρ_s per step at 64² and 256² (issue-14 notes,
/// round 15).
pub(crate) fn finish(
    p: &Problem<'_>,
    system: &mut ReducedSystem,
    x: &State,
    tol: f64,
    max_iter: usize,
    time: &mut f64,
    iterations: &mut usize,
) -> Option<(State, Errors)> {
    // Without an internal energy the free densities are not determined by their cells.
    if p.law.beta.is_none() && p.law.m.is_none() {
        return None;
    }
    let n = p.n();
    let (rs, es) = (p.rho_scale, p.e_scale);
    let cap = p.law.rho_max;
    // With entropy ρ > 0 always: only the cap can be active.
    let lower = |k: usize| p.law.beta.is_none() && x.rho[k] / rs <= x.lam[k] / (p.vols[k] * es);
    let upper = |k: usize| !x.nu.is_empty() && x.gap[k] / rs <= x.nu[k] / (p.vols[k] * es);
    let mut held: Vec<u8> = (0..n)
        .map(|k| {
            if lower(k) {
                1
            } else if upper(k) {
                2
            } else {
                0
            }
        })
        .collect();
    let mut rounds = 0;
    // Exchange rounds. A cell released from ρ = 0 restarts at ρ = tol ρ_s; where the porous
    // law is degenerate there (m > 2 without entropy: f''(0) = 0, ρ ~ s^{1/(m−1)}), the
    // linearised law sends it to δs/f''(ρ) ≫ its density and the round diverges or stalls
    // (excess 10⁹–10¹⁷, or stuck at 10³: rounds 3, 6 and 8 traced it on porous m = 3 2D; no
    // exchange round succeeded there). A degenerate law instead takes the certified path
    // below (see the function's docs), whose one release happens only at a converged held set.
    let max_rounds = if degenerate_law(p) { 0 } else { 3 };
    // A held cell all of whose neighbours are held too exchanges no mass in this step: its
    // potential (hence its multiplier) is not determined by the step, so its sign is not
    // checked.
    let coupled = |held: &[u8], k: usize| {
        p.mesh.faces_of(k).iter().any(|&s| {
            let (a, b, _) = p.faces[s];
            held[if a == k { b } else { a }] == 0
        })
    };
    let mut y = x.clone();
    for k in 0..n {
        match held[k] {
            1 => {
                y.rho[k] = 0.0;
                if let Some(c) = cap {
                    y.gap[k] = c;
                }
            }
            2 => {
                y.rho[k] = cap.unwrap_or(y.rho[k]);
                y.gap[k] = 0.0;
            }
            _ => {}
        }
        y.lam[k] = 0.0;
        if !y.nu.is_empty() {
            y.nu[k] = 0.0;
        }
    }
    y.g = p.flux_of(&y.rho, &y.phi);
    let budget = if p.law.beta.is_some() {
        FINISH_ITERATIONS_ENTROPY
    } else {
        FINISH_ITERATIONS
    }
    .min(max_iter);
    let mut best = f64::INFINITY;
    for _ in 0..budget {
        if max_rounds == 0 {
            repair_held_potential(p, &held, &coupled, &mut y.phi);
        } else {
            repair_vacuum_potential(p, &held, &coupled, &mut y.phi);
        }
        let res = p.pd_residuals(&y);
        // Errors: the free cells' stationarity, the mass balance, and the signs.
        let mut e = Errors::default();
        let gamma = p.gamma();
        let mut ok_signs = true;
        for k in 0..n {
            let v = p.vols[k];
            let r = res.r_p[k].abs() / (v * rs);
            e.primal = e.primal.max(r);
            e.consider(
                Part::Primal,
                r,
                gamma * (v * (y.rho[k] + p.rho_prev[k])) / (v * rs),
                tol,
            );
            match held[k] {
                0 => {
                    let d = v * p.law.f2(y.rho[k]);
                    let r = res.r_rho[k].abs() / (d * rs);
                    let terms = v
                        * (p.law.f1(y.rho[k]).abs()
                            + p.potential[k].abs()
                            + y.phi[k].abs() / p.tau);
                    e.dual = e.dual.max(r);
                    e.consider(Part::StationarityRho, r, gamma * terms / (d * rs), tol);
                    if y.rho[k] < -tol * rs || (cap.is_some() && y.gap[k] < -tol * rs) {
                        ok_signs = false;
                    }
                }
                // With the multipliers left out, r_ρ = λ at a held lower cell and −ν at a held
                // upper cell: both multipliers must be ≥ 0.
                1 => ok_signs &= res.r_rho[k] >= -tol * v * es || !coupled(&held, k),
                _ => ok_signs &= -res.r_rho[k] >= -tol * v * es || !coupled(&held, k),
            }
        }
        let total: f64 = res.r_p.iter().sum();
        e.mass = total.abs() / p.mass;
        e.consider(Part::Mass, e.mass, gamma, tol);
        // Round 9b stopped a degenerate finish at its first negative multiplier (16–36 front
        // cells kept one to convergence); round 15 traced those to the vacuum potential
        // (`repair_held_potential`) and certifies instead.
        if max_rounds == 0 {
            // Degenerate law: certified by the interior point's own stopping test at the
            // finish's iterate read as a primal–dual point (see the function's docs).
            let z = candidate(p, &y, &held, &res);
            let ez = p.pd_errors(&z, &p.pd_residuals(&z), tol);
            if ez.excess <= 1.0 {
                return Some((z, ez));
            }
            // A growing certificate means a wrong held set: the interior point goes on.
            if ez.excess > FINISH_DIVERGENCE * best {
                return None;
            }
            best = best.min(ez.excess);
            if e.excess <= 1.0 {
                // The held set's solution is not a KKT point within tol: release the held
                // cells whose negative multiplier the φ-route does not absorb, once.
                rounds += 1;
                if rounds > DEGENERATE_RELEASE_ROUNDS {
                    return None;
                }
                let mut tth = vec![0.0; n];
                for &(k, l, t) in p.faces.iter() {
                    let a = t * 0.5 * (y.rho[k] + y.rho[l]);
                    tth[k] += a;
                    tth[l] += a;
                }
                let release: Vec<usize> = (0..n)
                    .filter(|&k| {
                        held[k] == 1
                            && res.r_rho[k] < 0.0
                            && -res.r_rho[k] * p.tau * tth[k] / (p.vols[k] * p.vols[k] * rs) > tol
                    })
                    .collect();
                if release.is_empty() {
                    return None;
                }
                for &k in &release {
                    held[k] = 0;
                    y.rho[k] = x.rho[k].max(tol * rs);
                }
                y.g = p.flux_of(&y.rho, &y.phi);
                continue;
            }
        } else {
            if e.excess <= 1.0 && !ok_signs {
                // Primal–dual active set: release held cells with a negative multiplier, hold
                // free cells that left their interval, and solve again.
                rounds += 1;
                if rounds > max_rounds {
                    return None;
                }
                let small = tol * rs;
                for k in 0..n {
                    let c = coupled(&held, k);
                    match held[k] {
                        1 if c && res.r_rho[k] < -tol * p.vols[k] * es => {
                            held[k] = 0;
                            y.rho[k] = small;
                            if let Some(c) = cap {
                                y.gap[k] = c - small;
                            }
                        }
                        2 if c && -res.r_rho[k] < -tol * p.vols[k] * es => {
                            held[k] = 0;
                            if let Some(c) = cap {
                                y.rho[k] = c - small;
                                y.gap[k] = small;
                            }
                        }
                        0 if y.rho[k] < -small => {
                            held[k] = 1;
                            y.rho[k] = 0.0;
                            if let Some(c) = cap {
                                y.gap[k] = c;
                            }
                        }
                        0 if cap.is_some() && y.gap[k] < -small => {
                            held[k] = 2;
                            y.rho[k] = cap.unwrap_or(y.rho[k]);
                            y.gap[k] = 0.0;
                        }
                        _ => {}
                    }
                }
                y.g = p.flux_of(&y.rho, &y.phi);
                continue;
            }
            if e.excess <= 1.0 {
                // Clip round-off-sized excursions of free cells, recover the multipliers.
                to_bounds(p, &mut y, &held, &res);
                return Some((y, e));
            }
        }
        // Newton step on the free cells (held cells: δρ = 0).
        let dinv: Vec<f64> = (0..n)
            .map(|k| {
                if held[k] == 0 {
                    1.0 / (p.vols[k] * p.law.f2(y.rho[k].max(f64::MIN_POSITIVE)))
                } else {
                    0.0
                }
            })
            .collect();
        if dinv.iter().any(|v| !v.is_finite()) {
            return None;
        }
        *iterations += 1;
        let mut lin = Linearisation::with_compliance(p, &res, dinv, system).ok()?;
        let mut res0 = res;
        for k in 0..n {
            if held[k] != 0 {
                res0.r_rho[k] = 0.0;
            }
        }
        let d = lin.direction(p, &y, &res0, 0.0, None).ok()?;
        *time += lin.time;
        for k in 0..n {
            if held[k] == 0 {
                // With entropy ρ > 0: a cell the linear step would empty (a far tail, where
                // the density is negligible) shrinks by 100 at most.
                let mut step = d.rho[k];
                if p.law.beta.is_some() && y.rho[k] + step < 0.01 * y.rho[k] {
                    step = -0.99 * y.rho[k];
                }
                y.rho[k] += step;
                if !y.gap.is_empty() {
                    y.gap[k] -= step;
                }
                if !y.rho[k].is_finite() {
                    return None;
                }
            }
            y.phi[k] += d.phi[k];
        }
        y.g = p.flux_of(&y.rho, &y.phi);
    }
    None
}

/// The held-empty cells that exchange no mass (every neighbour held too): the cells whose
/// potential the step does not determine.
fn uncoupled_held(n: usize, held: &[u8], coupled: &dyn Fn(&[u8], usize) -> bool) -> Vec<usize> {
    (0..n)
        .filter(|&k| held[k] == 1 && !coupled(held, k))
        .collect()
}

/// Held-empty cells that exchange no mass (all neighbours held): move each φ_J so that its own
/// multiplier and those of its held neighbours are nonnegative, or as little negative as possible.
/// Per volume, with f'(0) = 0, λ_K/|K| = V_K + φ_K/τ − Σ_σ T_σ (φ_L − φ_K)²/(4τ|K|): as a function
/// of φ_J, J's own and each held neighbour K's are concave quadratics q_i; g = min_i q_i is concave,
/// {g ≥ 0} an interval (the intersection of the q_i's). φ_J moves to the nearest point of that
/// interval, or to the maximiser of g when it is empty. No mass moves: every face of J has θ = 0.
fn repair_held_potential(
    p: &Problem<'_>,
    held: &[u8],
    coupled: &dyn Fn(&[u8], usize) -> bool,
    phi: &mut [f64],
) {
    let (n, tau) = (p.n(), p.tau);
    let cells = uncoupled_held(n, held, coupled);
    let other = |a: usize, b: usize, k: usize| if a == k { b } else { a };
    // Extend φ from the coupled cells into the vacuum, layer by layer (each cell the mean of its
    // neighbours in the layers before), so that the sweeps start near the front's potential.
    {
        let mut set: Vec<bool> = (0..n).map(|k| held[k] != 1 || coupled(held, k)).collect();
        let mut layer: Vec<usize> = cells
            .iter()
            .copied()
            .filter(|&j| {
                p.mesh.faces_of(j).iter().any(|&s| {
                    let (a, b, _) = p.faces[s];
                    set[other(a, b, j)]
                })
            })
            .collect();
        let mut queued = vec![false; n];
        while !layer.is_empty() {
            let vals: Vec<f64> = layer
                .iter()
                .map(|&j| {
                    let (mut sum, mut cnt) = (0.0, 0.0);
                    for &s in p.mesh.faces_of(j) {
                        let (a, b, _) = p.faces[s];
                        let o = other(a, b, j);
                        if set[o] {
                            sum += phi[o];
                            cnt += 1.0;
                        }
                    }
                    sum / cnt
                })
                .collect();
            for (&j, &v) in layer.iter().zip(&vals) {
                phi[j] = v;
            }
            for &j in &layer {
                set[j] = true;
            }
            let mut next = Vec::new();
            for &j in &layer {
                for &s in p.mesh.faces_of(j) {
                    let (a, b, _) = p.faces[s];
                    let o = other(a, b, j);
                    if !set[o] && !queued[o] {
                        queued[o] = true;
                        next.push(o);
                    }
                }
            }
            layer = next;
        }
    }
    let mut quads: Vec<(f64, f64, f64)> = Vec::new();
    for sweep in 0..6 {
        let order: Box<dyn Iterator<Item = &usize>> = if sweep % 2 == 0 {
            Box::new(cells.iter())
        } else {
            Box::new(cells.iter().rev())
        };
        for &j in order {
            quads.clear();
            // J's own: a v² + b v + c.
            let (mut t1, mut t2, mut t3) = (0.0, 0.0, 0.0);
            for &s in p.mesh.faces_of(j) {
                let (a, b, t) = p.faces[s];
                let o = phi[other(a, b, j)];
                t1 += t;
                t2 += t * o;
                t3 += t * o * o;
            }
            if t1 <= 0.0 {
                continue;
            }
            let vj = p.vols[j];
            quads.push((
                -t1 / (4.0 * tau * vj),
                1.0 / tau + t2 / (2.0 * tau * vj),
                p.potential[j] - t3 / (4.0 * tau * vj),
            ));
            // Each held neighbour K through face σ: c_K − T (v − φ_K)²/(4τ|K|).
            for &s in p.mesh.faces_of(j) {
                let (a, b, t) = p.faces[s];
                let k = other(a, b, j);
                if held[k] != 1 {
                    continue;
                }
                let vk = p.vols[k];
                let mut rest = p.potential[k] + phi[k] / tau;
                for &s2 in p.mesh.faces_of(k) {
                    if s2 == s {
                        continue;
                    }
                    let (a2, b2, t2) = p.faces[s2];
                    let d = phi[other(a2, b2, k)] - phi[k];
                    rest -= t2 * d * d / (4.0 * tau * vk);
                }
                let w = t / (4.0 * tau * vk);
                quads.push((-w, 2.0 * w * phi[k], rest - w * phi[k] * phi[k]));
            }
            let g = |v: f64| {
                quads
                    .iter()
                    .fold(f64::INFINITY, |m, &(a, b, c)| m.min((a * v + b) * v + c))
            };
            let cur = phi[j];
            if g(cur) >= 0.0 {
                continue;
            }
            // The maximiser of g lies between the smallest and the largest vertex.
            let (mut lo, mut hi) =
                quads
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &(a, b, _)| {
                        let v = -b / (2.0 * a);
                        (l.min(v), h.max(v))
                    });
            for _ in 0..100 {
                let m1 = lo + (hi - lo) / 3.0;
                let m2 = hi - (hi - lo) / 3.0;
                if g(m1) < g(m2) {
                    lo = m1;
                } else {
                    hi = m2;
                }
            }
            let top = 0.5 * (lo + hi);
            if g(top) <= 0.0 {
                phi[j] = top;
                continue;
            }
            // Bisect between the maximiser and the current value for the edge of {g ≥ 0}.
            let (mut inside, mut outside) = (top, cur);
            for _ in 0..100 {
                let mid = 0.5 * (inside + outside);
                if g(mid) >= 0.0 {
                    inside = mid;
                } else {
                    outside = mid;
                }
            }
            phi[j] = inside;
        }
    }
}

/// The finish's iterate as a primal–dual state: held cells at their bound with the multiplier
/// read off their stationarity row (clipped at 0), free cells clipped into their interval with
/// zero multipliers.
fn candidate(p: &Problem<'_>, y: &State, held: &[u8], res: &Residuals) -> State {
    let mut z = y.clone();
    to_bounds(p, &mut z, held, res);
    z.g = p.flux_of(&z.rho, &z.phi);
    z
}

/// Held cells' multipliers read off their stationarity rows (clipped at 0), free cells' densities
/// clipped into their interval.
fn to_bounds(p: &Problem<'_>, y: &mut State, held: &[u8], res: &Residuals) {
    let cap = p.law.rho_max;
    for k in 0..p.n() {
        match held[k] {
            1 => y.lam[k] = res.r_rho[k].max(0.0),
            2 => y.nu[k] = (-res.r_rho[k]).max(0.0),
            _ => {
                y.rho[k] = y.rho[k].max(0.0);
                if let Some(c) = cap {
                    y.rho[k] = y.rho[k].min(c);
                    y.gap[k] = y.gap[k].max(0.0);
                }
            }
        }
    }
}

/// The potential of held-empty cells that exchange no mass (all their neighbours are held too)
/// is not determined by the step; any value with a nonnegative multiplier
/// λ_K(φ_K) = |K|(V_K + φ_K/τ) − Σ_σ T_σ(φ_L − φ_K)²/(4τ) is optimal. Gauss–Seidel sweeps (both
/// directions) move each such φ_K to the nearest point of {λ_K ≥ 0}, an interval around the
/// maximiser φ*_K = (Σ_σ T_σ φ_L + 2|K|)/Σ_σ T_σ (or to φ*_K when the interval is empty).
fn repair_vacuum_potential(
    p: &Problem<'_>,
    held: &[u8],
    coupled: &dyn Fn(&[u8], usize) -> bool,
    phi: &mut [f64],
) {
    let (n, tau) = (p.n(), p.tau);
    let cells = uncoupled_held(n, held, coupled);
    for sweep in 0..6 {
        let order: Box<dyn Iterator<Item = &usize>> = if sweep % 2 == 0 {
            Box::new(cells.iter())
        } else {
            Box::new(cells.iter().rev())
        };
        for &k in order {
            // λ(φ) = a φ² + b φ + c with a = −ΣT/(4τ), b = |K|/τ + ΣTφ_L/(2τ),
            // c = |K|V − ΣTφ_L²/(4τ).
            let (mut t1, mut t2, mut t3) = (0.0, 0.0, 0.0);
            for &s in p.mesh.faces_of(k) {
                let (a, b, t) = p.faces[s];
                let o = phi[if a == k { b } else { a }];
                t1 += t;
                t2 += t * o;
                t3 += t * o * o;
            }
            if t1 <= 0.0 {
                continue;
            }
            let v = p.vols[k];
            let qa = -t1 / (4.0 * tau);
            let qb = v / tau + t2 / (2.0 * tau);
            let qc = v * p.potential[k] - t3 / (4.0 * tau);
            let top = -qb / (2.0 * qa);
            let disc = qb * qb - 4.0 * qa * qc;
            if disc <= 0.0 {
                phi[k] = top;
                continue;
            }
            let half = disc.sqrt() / (2.0 * -qa);
            let (lo, hi) = (top - half, top + half);
            phi[k] = phi[k].clamp(lo, hi);
        }
    }
}

/// At the end of the interior point, give the empty region a dual certificate: the potential
/// of a cell whose density and whose neighbours' densities are all below tol ρ_s · 10⁻³ does
/// not change ρ (its rows are weighted by ~ρ in the stopping test), so it is set, as in the
/// active-set finish, to make its multiplier nonnegative.
fn certify_vacuum(p: &Problem<'_>, x: &mut State, tol: f64) {
    if !p.lower_active {
        return;
    }
    repair_vacuum(p, &x.rho, &mut x.phi, tol);
}

/// Without entropy: set the potential of every cell whose density and whose neighbours'
/// densities are below tol ρ_s · 10⁻³ so that its multiplier is nonnegative (see
/// [`repair_vacuum_potential`]). Such a potential is not determined by the step (it moves no
/// mass), and a left-over jump of it between two empty cells would fill them through Q_K.
pub(crate) fn repair_vacuum(p: &Problem<'_>, rho: &[f64], phi: &mut [f64], tol: f64) {
    if p.law.beta.is_some() {
        return;
    }
    let empty: Vec<u8> = rho
        .iter()
        .map(|&r| u8::from(r <= 1e-3 * tol * p.rho_scale))
        .collect();
    let coupled = |held: &[u8], k: usize| {
        p.mesh.faces_of(k).iter().any(|&s| {
            let (a, b, _) = p.faces[s];
            held[if a == k { b } else { a }] == 0
        })
    };
    repair_vacuum_potential(p, &empty, &coupled, phi);
}

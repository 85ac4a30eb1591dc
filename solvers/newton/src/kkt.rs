//! One step's optimality system: the data, the dual function ψ_μ and its gradient, the scaled
//! KKT error with its round-off floors, and the Newton matrix (see the crate docs for the
//! equations).

use crate::cell::{Cell, CellLaw};
use crate::system::{LinearFailure, ReducedSystem, Refinement};
use jko_core::Mesh;
use std::time::Instant;

/// Width of the window below the kink s = 0 of the porous cell law, relative to the energy
/// scale, in which the semismooth Newton matrix uses the positive branch's slope.
const KINK_WINDOW: f64 = 1e-6;
/// Densities (relative to max ρⁿ) below which a cell counts as at the kink.
const KINK_DENSITY: f64 = 1e-8;

/// Conjugate-gradient iterations an inexact Newton direction may take before the Newton matrix
/// is factorised after all (`Problem::newton_direction`): about what one factorisation costs at
/// 64² (each a triangular solve pair and a product with S, ~0.25 ms against ~1.7 ms idle).
const PRECONDITIONED_ITERATIONS: usize = 6;

/// One step's data, in the form the iteration uses.
pub(crate) struct Problem<'a> {
    pub mesh: &'a Mesh,
    /// (K, L, T_σ) for every interior face.
    pub faces: &'a [(usize, usize, f64)],
    pub vols: &'a [f64],
    pub potential: Vec<f64>,
    pub rho_prev: Vec<f64>,
    pub tau: f64,
    pub law: CellLaw,
    /// max ρⁿ: the density scale.
    pub rho_scale: f64,
    /// Energy per unit mass scale: β + osc V + f'_porous(ρ_s) (or h²/τ without energy).
    pub e_scale: f64,
    /// Mass of ρⁿ.
    pub mass: f64,
    /// Barrier parameter of the lower bound when the entropy keeps ρ > 0 by itself: a floor
    /// that only keeps far tails representable (ρ ≥ μ/|s| instead of underflowing to 0).
    pub mu_floor: f64,
    /// Whether the lower bound ρ ≥ 0 can be active (no entropy): then its barrier follows μ.
    pub lower_active: bool,
}

/// An iterate of the dual method: the potential φ, the barrier parameter μ of the active
/// bounds, the cell densities ρ(φ) (with their gaps to the cap) and the dual value.
#[derive(Clone, Debug)]
pub(crate) struct Point {
    pub phi: Vec<f64>,
    pub mu: f64,
    pub cells: Vec<Cell>,
    /// ψ_μ(φ).
    pub value: f64,
    /// Σ of the absolute values of the terms of ψ (its round-off scale).
    pub scale: f64,
    /// Mass balance r_p,K = |K|(ρ_K − ρⁿ_K) + Σ_σ G_{K,σ} (τ ∂ψ/∂φ_K).
    pub r_p: Vec<f64>,
}

/// The scaled KKT error of an iterate: every residual translated into a density error
/// relative to ρ_scale, next to its round-off floor in the same units.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Errors {
    /// Mass balance max_K |r_p,K| / (|K| ρ_s).
    pub primal: f64,
    /// Stationarity in ρ and G, density-equivalent (0 at the points of the dual method).
    pub dual: f64,
    /// Natural complementarity residual max_K min(ρ_K/ρ_s, λ_K/(|K| E_s)) (and at the cap).
    pub complementarity: f64,
    /// Relative mass error |Σ r_p| / M.
    pub mass: f64,
    /// Largest round-off floor among the residuals that are above `tol` (0 when none).
    pub floor: f64,
    /// max over residuals of residual / max(tol, floor): the iteration stops when ≤ 1.
    pub excess: f64,
    /// Which residual attains `excess`.
    pub dominant: Part,
}

/// The residual groups, for diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Part {
    #[default]
    Primal,
    StationarityRho,
    StationarityFlux,
    Complementarity,
    Mass,
}

impl Part {
    pub fn describe(self) -> &'static str {
        match self {
            Part::Primal => "mass balance",
            Part::StationarityRho => "stationarity in rho",
            Part::StationarityFlux => "flux-potential relation G = T theta grad phi",
            Part::Complementarity => "complementarity at a bound (barrier)",
            Part::Mass => "total mass",
        }
    }
}

impl Errors {
    /// Take one residual into account: its value and round-off floor (in density units).
    pub fn consider(&mut self, part: Part, value: f64, floor: f64, tol: f64) {
        let q = value / tol.max(floor);
        if q.is_nan() || self.excess.is_nan() || q > self.excess {
            self.excess = q;
            self.dominant = part;
        }
        if value > tol {
            self.floor = self.floor.max(floor);
        }
    }

    /// The scalar recorded in the history: the largest scaled residual.
    pub fn total(&self) -> f64 {
        self.primal
            .max(self.dual)
            .max(self.complementarity)
            .max(self.mass)
    }

    /// The value of the dominant residual.
    pub fn dominant_value(&self) -> f64 {
        match self.dominant {
            Part::Primal => self.primal,
            Part::StationarityRho | Part::StationarityFlux => self.dual,
            Part::Complementarity => self.complementarity,
            Part::Mass => self.mass,
        }
    }
}

impl<'a> Problem<'a> {
    pub fn n(&self) -> usize {
        self.vols.len()
    }

    /// Barrier parameter of the lower bound when the bounds' parameter is μ.
    pub fn mu_lower(&self, mu: f64) -> f64 {
        if self.lower_active { mu } else { self.mu_floor }
    }

    /// f(ρ) per unit volume: β ρ ln ρ + ρ^m/(m−1).
    pub fn f0(&self, r: f64) -> f64 {
        self.f0_with_ln(r, r.ln())
    }

    /// f(ρ) given ln ρ (the point's evaluation needs it for the barrier too).
    fn f0_with_ln(&self, r: f64, ln_r: f64) -> f64 {
        let mut v = 0.0;
        if let Some(b) = self.law.beta {
            v += if r > 0.0 { b * r * ln_r } else { 0.0 };
        }
        if let Some(m) = self.law.m {
            v += r.max(0.0).powf(m) / (m - 1.0);
        }
        v
    }

    /// The round-off of a sum of the terms of one residual: (4d + 4) ε (worst-case summation of
    /// the at most 2d + 3 terms, with the rounding of the data).
    pub fn gamma(&self) -> f64 {
        (4.0 * self.mesh.dim() as f64 + 4.0) * f64::EPSILON
    }

    /// s_K = −V_K − φ_K/τ + Q_K/|K|, Q_K = Σ_σ T_σ (φ_L − φ_K)²/(4τ).
    pub fn chemical_potential(&self, phi: &[f64]) -> Vec<f64> {
        let mut q = vec![0.0; phi.len()];
        for &(k, l, t) in self.faces {
            let d = phi[l] - phi[k];
            let e = t * d * d / (4.0 * self.tau);
            q[k] += e;
            q[l] += e;
        }
        (0..phi.len())
            .map(|k| -self.potential[k] - phi[k] / self.tau + q[k] / self.vols[k])
            .collect()
    }

    /// The point at φ and μ: ρ(φ) from the cell law, ψ_μ(φ) and the mass balance. `None` when
    /// the cell law has no solution somewhere (outside the dual domain).
    pub fn point(&self, phi: Vec<f64>, mu: f64, guess: Option<&[Cell]>) -> Option<Point> {
        let n = self.n();
        let tau = self.tau;
        let s = self.chemical_potential(&phi);
        let mu_l = self.mu_lower(mu);
        let cells: Vec<Cell> = (0..n)
            .map(|k| {
                let g = guess.map_or(self.rho_prev[k], |c| c[k].rho);
                self.law.density(s[k], mu_l, mu, g)
            })
            .collect::<Option<_>>()?;
        let mut value = 0.0;
        let mut scale = 0.0;
        let mut r_p: Vec<f64> = (0..n)
            .map(|k| self.vols[k] * (cells[k].rho - self.rho_prev[k]))
            .collect();
        for (k, c) in cells.iter().enumerate() {
            let v = self.vols[k];
            let ln_rho = if self.law.beta.is_some() || mu_l > 0.0 {
                c.rho.ln()
            } else {
                0.0
            };
            let mut local = v * (self.f0_with_ln(c.rho, ln_rho) + self.potential[k] * c.rho);
            if mu_l > 0.0 {
                local -= mu_l * v * ln_rho;
            }
            if self.law.rho_max.is_some() && mu > 0.0 {
                local -= mu * v * c.gap.ln();
            }
            let pair = phi[k] * r_p[k] / tau;
            value += local + pair;
            scale += local.abs() + (v * phi[k] * (c.rho + self.rho_prev[k]) / tau).abs();
        }
        for &(k, l, t) in self.faces {
            let d = phi[l] - phi[k];
            let g = t * 0.5 * (cells[k].rho + cells[l].rho) * d;
            let e = g * d / (2.0 * tau);
            value -= e;
            scale += e.abs();
            r_p[k] += g;
            r_p[l] -= g;
        }
        value.is_finite().then_some(Point {
            phi,
            mu,
            cells,
            value,
            scale,
            r_p,
        })
    }

    /// The two-point flux G_σ = T_σ θ_σ (φ_L − φ_K) of a point.
    pub fn flux(&self, p: &Point) -> Vec<f64> {
        let rho: Vec<f64> = p.cells.iter().map(|c| c.rho).collect();
        self.flux_of(&rho, &p.phi)
    }

    /// The two-point flux G_σ = T_σ θ_σ (φ_L − φ_K) of densities ρ and potential φ (θ_σ the
    /// face's arithmetic mean density): the minimiser of the kinetic term for given ρ and φ.
    pub fn flux_of(&self, rho: &[f64], phi: &[f64]) -> Vec<f64> {
        self.faces
            .iter()
            .map(|&(k, l, t)| t * 0.5 * (rho[k] + rho[l]) * (phi[l] - phi[k]))
            .collect()
    }

    /// Scaled KKT error with its round-off floors. Stationarity in ρ and in G holds exactly at
    /// every point of the dual method (ρ solves its cell law, G = T θ ∇φ), so the residuals are
    /// the mass balance and the complementarity of the barrier (λ_K = μ_L|K|/ρ_K,
    /// ν_K = μ|K|/(ρ_max − ρ_K)).
    pub fn errors(&self, p: &Point, tol: f64) -> Errors {
        let n = self.n();
        let (rs, es) = (self.rho_scale, self.e_scale);
        let gamma = self.gamma();
        let mu_l = self.mu_lower(p.mu);
        let mut gabs = vec![0.0; n];
        for &(k, l, t) in self.faces {
            let g = (t * 0.5 * (p.cells[k].rho + p.cells[l].rho) * (p.phi[l] - p.phi[k])).abs();
            // The flux is computed from φ: its round-off is that of φ_L − φ_K.
            let gf =
                t * 0.5 * (p.cells[k].rho + p.cells[l].rho) * (p.phi[l].abs() + p.phi[k].abs());
            gabs[k] += g + gf;
            gabs[l] += g + gf;
        }
        let mut e = Errors::default();
        let consider = |part, value, floor, e: &mut Errors| e.consider(part, value, floor, tol);
        for k in 0..n {
            let v = self.vols[k];
            let c = p.cells[k];
            let r = p.r_p[k].abs() / (v * rs);
            let floor = gamma * (v * (c.rho + self.rho_prev[k]) + gabs[k]) / (v * rs);
            e.primal = e.primal.max(r);
            consider(Part::Primal, r, floor, &mut e);
            let mut comp = 0.0f64;
            if mu_l > 0.0 && c.rho > 0.0 {
                comp = (c.rho / rs).min(mu_l / (c.rho * es));
            }
            if self.law.rho_max.is_some() && p.mu > 0.0 && c.gap > 0.0 {
                comp = comp.max((c.gap / rs).min(p.mu / (c.gap * es)));
            }
            e.complementarity = e.complementarity.max(comp);
            consider(Part::Complementarity, comp, 0.0, &mut e);
        }
        let total: f64 = p.r_p.iter().sum();
        let size: f64 = (0..n)
            .map(|k| self.vols[k] * (p.cells[k].rho + self.rho_prev[k]))
            .sum();
        e.mass = total.abs() / self.mass;
        consider(Part::Mass, e.mass, gamma * size / self.mass, &mut e);
        if e.excess.is_nan() {
            e.excess = f64::INFINITY;
        }
        e
    }

    /// Assemble and factorise S = Cᵀ diag(dinv) C + L_θ/τ, the Newton matrix of both methods:
    /// C_KK = |K|/τ + Σ_σ ±T_σ w_σ/(2τ), C_KL = −T_σ w_{K,σ}/(2τ), from the face velocity w_σ
    /// (`w(s)`, oriented as face s; the dual ascent's ∇φ, the interior point's G/(Tθ)), and
    /// `face_weight(s)` = T_σ θ_σ/τ. Rows where S vanishes identically are pinned (see
    /// `ReducedSystem::pin_empty_rows`). Returns C's diagonal and the pinned rows.
    pub fn factorise_newton_matrix(
        &self,
        system: &mut ReducedSystem,
        dinv: &[f64],
        w: impl Fn(usize) -> f64,
        face_weight: impl Fn(usize) -> f64,
    ) -> Result<(Vec<f64>, Vec<usize>), LinearFailure> {
        let assembled = self.assemble_newton_matrix(system, dinv, w, face_weight);
        factorise(system)?;
        Ok(assembled)
    }

    /// Assemble S as `factorise_newton_matrix` does, without factorising it.
    fn assemble_newton_matrix(
        &self,
        system: &mut ReducedSystem,
        dinv: &[f64],
        w: impl Fn(usize) -> f64,
        face_weight: impl Fn(usize) -> f64,
    ) -> (Vec<f64>, Vec<usize>) {
        let tau = self.tau;
        // Per face, once: T_σ w_σ/(2τ) (oriented as the face) and T_σ θ_σ/τ.
        let half: Vec<f64> = (self.faces.iter().enumerate())
            .map(|(s, &(_, _, t))| 0.5 * t * w(s) / tau)
            .collect();
        let weights: Vec<f64> = (0..self.faces.len()).map(face_weight).collect();
        let mut c_diag: Vec<f64> = (0..self.n()).map(|k| self.vols[k] / tau).collect();
        for (&(k, l, _), &a) in self.faces.iter().zip(&half) {
            c_diag[k] += a;
            c_diag[l] -= a;
        }
        let mesh = self.mesh;
        system.assemble(
            dinv,
            |k, c| {
                c.push(c_diag[k]);
                // w oriented away from K.
                c.extend(mesh.faces_of(k).iter().map(|&s| {
                    if self.faces[s].0 == k {
                        -half[s]
                    } else {
                        half[s]
                    }
                }));
            },
            |k, j| weights[mesh.faces_of(k)[j]],
        );
        let pinned = system.pin_empty_rows();
        (c_diag, pinned)
    }

    /// Assemble and factorise the Newton matrix S = Cᵀ D⁻¹ C + L_θ/τ of ψ_μ at p (−S is its
    /// Hessian), and solve S δφ = ∇ψ = r_p/τ. Rows of cells where S vanishes identically (deep
    /// in a vacuum or at the cap, at μ = 0, where ψ does not depend on φ_K) are pinned:
    /// δφ_K = 0. Returns the direction and the time spent.
    ///
    /// With `inexact = Some(target)` and a factorisation of an earlier matrix held by `system`
    /// (the caller's previous direction), the direction is first sought by conjugate gradients
    /// preconditioned with it (`ReducedSystem::solve_preconditioned`, at most
    /// `PRECONDITIONED_ITERATIONS`): accepted when the mass balance the linearisation leaves,
    /// τ (b − S δφ) in the units of `Errors::primal`, is ≤ target in every cell; otherwise S is
    /// factorised as without it.
    pub fn newton_direction(
        &self,
        p: &Point,
        system: &mut ReducedSystem,
        inexact: Option<f64>,
    ) -> Result<(Vec<f64>, f64), LinearFailure> {
        let t0 = Instant::now();
        let tau = self.tau;
        let n = self.n();
        let mu_l = self.mu_lower(p.mu);
        let mut dinv: Vec<f64> = (0..n)
            .map(|k| self.law.compliance(p.cells[k], mu_l, p.mu) / self.vols[k])
            .collect();
        // Porous law, m ≤ 2, without entropy: a cell just below the kink of ρ(s) = (f')⁻¹(max(s,
        // 0)) takes the positive branch's element of the generalised derivative (the cell may
        // fill) instead of 0, so that a cell at the free boundary cannot make the semismooth
        // steps cycle across the kink (measured: 24/187/118 → 13/9/8 iterations on the robustness
        // matrix's fine Barenblatt 1D). For m > 2, f''(0+) = 0 and the branch has no finite slope.
        if let (None, Some(m)) = (self.law.beta, self.law.m)
            && m <= 2.0
        {
            let s = self.chemical_potential(&p.phi);
            let small = KINK_DENSITY * self.rho_scale;
            for k in 0..n {
                if p.cells[k].rho < small && s[k] > -KINK_WINDOW * self.e_scale {
                    dinv[k] = 1.0 / (self.vols[k] * self.law.f2(small));
                }
            }
        }
        // The face gradient is w = ∇φ: G = T θ ∇φ is the flux of the dual point.
        let (_, pinned) = self.assemble_newton_matrix(
            system,
            &dinv,
            |s| {
                let (k, l, _) = self.faces[s];
                p.phi[l] - p.phi[k]
            },
            |s| {
                let (a, b, t) = self.faces[s];
                t * 0.5 * (p.cells[a].rho + p.cells[b].rho) / tau
            },
        );
        let mut d: Vec<f64> = p.r_p.iter().map(|r| r / tau).collect();
        for &k in &pinned {
            d[k] = 0.0;
        }
        if let Some(target) = inexact
            && system.holds_earlier_factor()
        {
            let mut x = d.clone();
            let (rs, vols) = (self.rho_scale, self.vols);
            let size = |r: &[f64]| {
                r.iter()
                    .zip(vols)
                    .fold(0.0f64, |m, (rk, v)| m.max(tau * rk.abs() / (v * rs)))
            };
            let (_, reached) =
                system.solve_preconditioned(&mut x, PRECONDITIONED_ITERATIONS, target, size)?;
            if reached <= target {
                return Ok((x, t0.elapsed().as_secs_f64()));
            }
        }
        factorise(system)?;
        // With entropy the cell law is smooth and the ascent's path is insensitive to the
        // round-off of a direction; the semismooth porous ascent is not (see `Refinement`).
        let refinement = match self.law.beta {
            Some(_) => Refinement::ToRoundoff,
            None => Refinement::WhileDecreasing,
        };
        system.solve(&mut d, refinement)?;
        Ok((d, t0.elapsed().as_secs_f64()))
    }
}

/// Factorise the assembled Newton matrix. Round-off can make the (positive definite) matrix
/// numerically indefinite: a relative shift of the unit-diagonal scaled matrix far below the
/// tolerances restores it.
fn factorise(system: &mut ReducedSystem) -> Result<(), LinearFailure> {
    system.factorize(0.0).or_else(|_| system.factorize(1e-12))
}

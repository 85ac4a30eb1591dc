//! The flux-based transport schemes (docs/mathematics.md §2.1 and §2.2) as one conic program, and the
//! recovery of densities, fluxes and the dual potential from Clarabel's solution.
//!
//! Both schemes are a path ρ_0 = ρⁿ, ρ_1, …, ρ_L over L time intervals with one flux G_{σ,j+½}
//! per face and interval, continuity |K|(ρ_{j+1,K} − ρ_{j,K}) + Σ_{σ∋K} ±G_{σ,j+½} = 0 and
//! action L Σ_j Σ_σ G²_{σ,j+½}/(T_σ θ_{σ,j+½}). They differ only in L and in θ:
//! - one-step (§2.1): L = 1 and θ = (ρ_{1,K} + ρ_{1,L})/2, the end density only;
//! - multi-level (§2.2): θ_{σ,j+½} = (ρ_{j,K} + ρ_{j,L} + ρ_{j+1,K} + ρ_{j+1,L})/4.
//!
//! The end density is free with the energy on it (a JKO step) or fixed (the discrete W²
//! between two densities, [`crate::ConicSolver::transport`]). See the crate documentation for
//! the scalings.

use crate::program::{ConicProgram, ConicSolution, SOLVER_NAME, row};
use clarabel::solver::SupportedConeT;
use jko_core::{Mesh, StepEnergy, StepError};
use ndarray::Array1;
use std::ops::Range;

/// Negative densities down to this fraction of max ρ are always treated as round-off.
const ROUND_OFF: f64 = 1e-12;

/// Which discretisation of the transport cost a step uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// docs/mathematics.md §2.1: one interval, θ from the end density.
    OneStep,
    /// docs/mathematics.md §2.2 with this many (≥ 1) time intervals, θ the four-point mean.
    MultiLevel(usize),
}

impl Scheme {
    pub fn intervals(self) -> usize {
        match self {
            Scheme::OneStep => 1,
            Scheme::MultiLevel(l) => l,
        }
    }

    /// Weights of (ρ_{j,K}, ρ_{j,L}) and of (ρ_{j+1,K}, ρ_{j+1,L}) in θ_{σ,j+½}.
    fn theta_weights(self) -> (f64, f64) {
        match self {
            Scheme::OneStep => (0.0, 0.5),
            Scheme::MultiLevel(_) => (0.25, 0.25),
        }
    }

    /// θ_{σ,j+½} from the densities at both ends of the interval.
    pub fn theta(self, start: &Array1<f64>, end: &Array1<f64>, k: usize, l: usize) -> f64 {
        let (a, b) = self.theta_weights();
        a * (start[k] + start[l]) + b * (end[k] + end[l])
    }
}

/// The end of the path: free with the step's energy on it, or a given density.
#[derive(Debug, Clone, Copy)]
pub(crate) enum End<'a> {
    Free(&'a StepEnergy),
    Fixed(&'a Array1<f64>),
}

/// A transport problem from a fixed density `start` over `scheme.intervals()` intervals.
/// The action enters the objective as action/(2τ).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PathProblem<'a> {
    pub mesh: &'a Mesh,
    pub start: &'a Array1<f64>,
    pub end: End<'a>,
    pub tau: f64,
    pub scheme: Scheme,
}

/// Where the unknowns live in the conic program, and the scalings.
#[derive(Debug)]
pub(crate) struct PathLayout {
    /// Scaled densities r_{j,K} = ρ_{j,K}/c of the free levels (1..=L, or 1..L with a fixed
    /// end), level-major.
    rho: Range<usize>,
    /// Scaled momenta ĝ_{σ,j} = L G_{σ,j+½}/(τ|σ|c), interval-major.
    flux: Range<usize>,
    /// Continuity rows (zero cone), interval-major, one per cell.
    continuity: Range<usize>,
    /// Density scale c (max of the fixed densities).
    scale: f64,
    /// Mass M of the start density; the objective is divided by it.
    mass: f64,
}

/// A density at level j of the path: an unknown (column) or a fixed value.
enum Level<'a> {
    Free(usize),
    Fixed(&'a Array1<f64>),
}

impl PathProblem<'_> {
    fn intervals(&self) -> usize {
        self.scheme.intervals()
    }

    /// Number of levels whose density is unknown.
    fn free_levels(&self) -> usize {
        match self.end {
            End::Free(_) => self.intervals(),
            End::Fixed(_) => self.intervals() - 1,
        }
    }

    /// Level j as an unknown block start or a fixed density (unscaled).
    fn level(&self, layout_rho: &Range<usize>, j: usize) -> Level<'_> {
        let n = self.mesh.n_cells();
        if j == 0 {
            Level::Fixed(self.start)
        } else if j == self.intervals() {
            match self.end {
                End::Free(_) => Level::Free(layout_rho.start + (j - 1) * n),
                End::Fixed(end) => Level::Fixed(end),
            }
        } else {
            Level::Free(layout_rho.start + (j - 1) * n)
        }
    }

    /// Density scale c = max of the fixed densities. (Scaling each cell by its own ρⁿ_K, with
    /// floors 1e-4 to 1e-20, was measured and did not help Clarabel's endgame: see the crate
    /// docs.)
    fn density_scale(&self) -> f64 {
        let mut c = self.start.iter().fold(0.0f64, |a, &r| a.max(r));
        if let End::Fixed(end) = self.end {
            c = end.iter().fold(c, |a, &r| a.max(r));
        }
        // Positive and finite: the start density is ≥ 0 of positive mass.
        c
    }

    /// Assemble the conic program.
    pub fn assemble(&self) -> (ConicProgram, PathLayout) {
        let mesh = self.mesh;
        let tau = self.tau;
        let n = mesh.n_cells();
        let faces = mesh.faces();
        let nf = faces.len();
        let vols = mesh.volumes();
        let big_l = self.intervals();
        let l = big_l as f64;
        let scale = self.density_scale();
        let mass = mesh.mass(self.start);
        // Objective weights per unit mass, in the scaled variables.
        let w = scale / mass;

        let mut p = ConicProgram::new();
        let rho = p.add_variables(self.free_levels() * n);
        let flux = p.add_variables(big_l * nf);
        let kin = p.add_variables(big_l * nf);
        // L G²/(Tθ) = τ²|σ|d c ĝ²/(L θ̂) with θ = c θ̂, and u ≥ ĝ²/θ̂: cost
        // (τ/(2L))|σ|d (c/M) u.
        for j in 0..big_l {
            for (s, f) in faces.iter().enumerate() {
                p.add_cost(
                    kin.start + j * nf + s,
                    0.5 * tau * f.area * f.distance * w / l,
                );
            }
        }
        let end_energy = match self.end {
            End::Free(e) => Some(e),
            End::Fixed(_) => None,
        };
        // Column of the end density at cell k (free end only).
        let end_col = |k: usize| rho.start + (big_l - 1) * n + k;
        if let Some(v) = end_energy.and_then(|e| e.potential.as_ref()) {
            for k in 0..n {
                p.add_cost(end_col(k), vols[k] * v[k] * w);
            }
        }

        // Continuity on interval j, divided by c|K|:
        // r_{j+1,K} − r_{j,K} + (τ/(L|K|)) Σ_σ ±|σ| ĝ_{σ,j} = 0, fixed levels in the rhs.
        let continuity = p.add_block(SupportedConeT::ZeroConeT, big_l * n, |i, c| {
            let (j, k) = (i / n, i % n);
            let mut rhs = 0.0;
            match self.level(&rho, j + 1) {
                Level::Free(col) => c.push((col + k, 1.0)),
                Level::Fixed(r) => rhs -= r[k] / scale,
            }
            match self.level(&rho, j) {
                Level::Free(col) => c.push((col + k, -1.0)),
                Level::Fixed(r) => rhs += r[k] / scale,
            }
            for &s in mesh.faces_of(k) {
                let f = &faces[s];
                let sign = if f.k == k { 1.0 } else { -1.0 };
                c.push((flux.start + j * nf + s, sign * tau * f.area / (l * vols[k])));
            }
            rhs
        });
        // ρ ≥ 0 on every free level (the power cone alone would allow ρ < 0 at the end, and
        // nothing else bounds intermediate levels).
        p.add_block(SupportedConeT::NonnegativeConeT, rho.len(), |i, c| {
            c.push((rho.start + i, -1.0));
            0.0
        });
        // Congestion on every free level: the whole path stays admissible (see crate docs).
        if let Some(rmax) = end_energy.and_then(|e| e.max_density) {
            p.add_block(SupportedConeT::NonnegativeConeT, rho.len(), |i, c| {
                c.push((rho.start + i, 1.0));
                rmax / scale
            });
        }
        // Kinetic epigraph ĝ² ≤ u θ̂:  ‖(2ĝ, u − θ̂)‖ ≤ u + θ̂, fixed parts of θ̂ in the rhs.
        let (wa, wb) = self.scheme.theta_weights();
        let mut plus = Vec::with_capacity(5);
        let mut minus = Vec::with_capacity(5);
        for j in 0..big_l {
            for (s, f) in faces.iter().enumerate() {
                let (g, u) = (flux.start + j * nf + s, kin.start + j * nf + s);
                plus.clear();
                minus.clear();
                plus.push((u, -1.0));
                minus.push((u, -1.0));
                let mut fixed = 0.0;
                for (level, weight) in [(j, wa), (j + 1, wb)] {
                    if weight == 0.0 {
                        continue;
                    }
                    match self.level(&rho, level) {
                        Level::Free(col) => {
                            for cell in [f.k, f.l] {
                                plus.push((col + cell, -weight));
                                minus.push((col + cell, weight));
                            }
                        }
                        Level::Fixed(r) => fixed += weight * (r[f.k] + r[f.l]) / scale,
                    }
                }
                p.add_cone(
                    SupportedConeT::SecondOrderConeT(3),
                    &[
                        row(&plus, fixed),
                        row(&[(g, -2.0)], 0.0),
                        row(&minus, -fixed),
                    ],
                );
            }
        }
        if let Some(e) = end_energy {
            // Entropy: t ≥ r log r ⇔ (−t, r, 1) ∈ K_exp;  β ρ log ρ = β c (r log r + r log c).
            if let Some(beta) = e.entropy {
                let t = p.add_variables(n);
                for (k, &vol) in vols.iter().enumerate() {
                    p.add_cost(t.start + k, beta * vol * w);
                    p.add_cost(end_col(k), beta * vol * w * scale.ln());
                    p.add_cone(
                        SupportedConeT::ExponentialConeT(),
                        &[
                            row(&[(t.start + k, 1.0)], 0.0),
                            row(&[(end_col(k), -1.0)], 0.0),
                            row(&[], 1.0),
                        ],
                    );
                }
            }
            // Porous medium: t ≥ r^m ⇔ (t, 1, r) ∈ K_pow(1/m);  ρ^m/(m−1) = c^m r^m/(m−1).
            if let Some(m) = e.porous {
                let t = p.add_variables(n);
                let weight = scale.powf(m) / (mass * (m - 1.0));
                for (k, &vol) in vols.iter().enumerate() {
                    p.add_cost(t.start + k, vol * weight);
                    p.add_cone(
                        SupportedConeT::PowerConeT(1.0 / m),
                        &[
                            row(&[(t.start + k, -1.0)], 0.0),
                            row(&[], 1.0),
                            row(&[(end_col(k), -1.0)], 0.0),
                        ],
                    );
                }
            }
        }
        let layout = PathLayout {
            rho,
            flux,
            continuity,
            scale,
            mass,
        };
        (p, layout)
    }

    /// Densities of all levels, fluxes per interval (mass units, oriented k → l), the dual
    /// potential of the last interval, the action and remarks, from a converged solution.
    ///
    /// The densities are Clarabel's primal x, which satisfies ρ ≥ 0 only up to the primal
    /// residual (the cone slack s = ρ is what stays strictly inside the cone). Negative values
    /// down to −max(1e-12, `tol_feas`)·max ρ are therefore round-off: they are set to 0 and
    /// the largest correction is recorded in the notes; anything more negative is an error.
    pub fn recover(
        &self,
        layout: &PathLayout,
        sol: &ConicSolution,
        tol_feas: f64,
    ) -> Result<Recovered, StepError> {
        let mesh = self.mesh;
        let n = mesh.n_cells();
        let nf = mesh.faces().len();
        let big_l = self.intervals();
        let l = big_l as f64;
        let c = layout.scale;
        let numerical = |message: String| StepError::Numerical {
            solver: SOLVER_NAME.to_string(),
            message,
        };

        let mut densities = Vec::with_capacity(big_l + 1);
        let mut worst = 0.0f64;
        for j in 0..=big_l {
            let mut rho = match self.level(&layout.rho, j) {
                Level::Fixed(r) => {
                    densities.push(r.clone());
                    continue;
                }
                Level::Free(col) => Array1::from_iter(sol.x[col..col + n].iter().map(|r| c * r)),
            };
            let max_rho = rho.iter().fold(0.0f64, |a, &r| a.max(r));
            for (k, r) in rho.iter_mut().enumerate() {
                if !r.is_finite() {
                    return Err(numerical(format!(
                        "Clarabel returned a non-finite density ({r}) at cell {k}, level {j}"
                    )));
                }
                if *r < 0.0 {
                    if *r < -ROUND_OFF.max(tol_feas) * max_rho {
                        return Err(numerical(format!(
                            "Clarabel returned a negative density {r:e} at cell {k}, level {j} \
                             (max density {max_rho:e}); beyond round-off"
                        )));
                    }
                    worst = worst.max(-*r);
                    *r = 0.0;
                }
            }
            densities.push(rho);
        }
        let mut notes = Vec::new();
        if worst > 0.0 {
            notes.push(format!(
                "negative round-off densities set to 0 (largest {worst:.3e})"
            ));
        }

        let fluxes: Vec<Array1<f64>> = (0..big_l)
            .map(|j| {
                let g = &sol.x[layout.flux.start + j * nf..layout.flux.start + (j + 1) * nf];
                Array1::from_iter(
                    mesh.faces()
                        .iter()
                        .zip(g)
                        .map(|(f, g)| self.tau * f.area * c * g / l),
                )
            })
            .collect();
        // Lagrangian of the scaled program: J/M + Σ z C/(c|K|), with C the continuity
        // constraint in mass units; stationarity in G gives G = (τ/L) T θ (ψ_L − ψ_K) with
        // ψ = M z/(c|K|). φ = τψ is the Benamou–Brenier potential on the unit time interval:
        // G_{σ,j+½} = (1/L) T θ (φ_L − φ_K), docs/mathematics.md's convention when L = 1.
        let last = layout.continuity.start + (big_l - 1) * n;
        let potential = Array1::from_iter(
            sol.z[last..last + n]
                .iter()
                .zip(mesh.volumes())
                .map(|(z, v)| self.tau * layout.mass * z / (c * v)),
        );
        if potential.iter().any(|p| !p.is_finite())
            || fluxes.iter().flatten().any(|g| !g.is_finite())
        {
            return Err(numerical(
                "Clarabel returned a non-finite flux or dual potential".into(),
            ));
        }
        let action = self.action(&densities, &fluxes, ROUND_OFF.max(tol_feas));
        Ok(Recovered {
            path: crate::TransportPath {
                densities,
                fluxes,
                action,
            },
            potential,
            notes,
        })
    }

    /// L Σ_j Σ_σ G²_{σ,j+½}/(T_σ θ_{σ,j+½}). Faces with θ = 0 (all four densities 0 after
    /// round-off clipping) must carry no flux; a flux there below `round_off` times the
    /// largest flux of its interval is round-off and adds 0 (a larger one makes the action
    /// infinite, as it is).
    pub fn action(&self, densities: &[Array1<f64>], fluxes: &[Array1<f64>], round_off: f64) -> f64 {
        let l = self.intervals() as f64;
        let faces = self.mesh.faces();
        let mut total = 0.0;
        for (j, g) in fluxes.iter().enumerate() {
            let g_max = g.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            for (f, &g) in faces.iter().zip(g) {
                let theta = self
                    .scheme
                    .theta(&densities[j], &densities[j + 1], f.k, f.l);
                if g == 0.0 || (theta <= 0.0 && g.abs() <= round_off * g_max) {
                    continue;
                }
                total += g * g / (f.transmissibility() * theta.max(0.0));
            }
        }
        l * total
    }
}

/// What [`PathProblem::recover`] returns.
pub(crate) struct Recovered {
    pub path: crate::TransportPath,
    /// φ of the last interval (see [`PathProblem::recover`]).
    pub potential: Array1<f64>,
    pub notes: Vec<String>,
}

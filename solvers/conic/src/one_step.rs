//! The one-step two-point-flux JKO problem (DESIGN §2.1) as a conic program, and the
//! recovery of (ρ, G, φ) from Clarabel's primal and dual solution.
//!
//! See the crate documentation for the formulation and the scalings.

use crate::program::{row, ConicProgram, ConicSolution, SOLVER_NAME};
use clarabel::solver::SupportedConeT;
use jko_core::{JkoStep, StepError};
use ndarray::Array1;
use std::ops::Range;

/// Negative densities down to this fraction of max ρ are always treated as round-off.
const ROUND_OFF: f64 = 1e-12;

/// Where the unknowns of the one-step problem live in the conic program, and the scalings.
#[derive(Debug)]
pub(crate) struct OneStepLayout {
    /// Scaled densities r = ρ / c.
    rho: Range<usize>,
    /// Scaled face momenta ĝ = G / (τ |σ| c).
    flux: Range<usize>,
    /// Continuity rows (zero cone), one per cell.
    continuity: Range<usize>,
    /// Density scale c = max ρⁿ.
    scale: f64,
    /// Mass M of ρⁿ; the objective is divided by it.
    mass: f64,
}

/// Assemble the conic program of one step.
pub(crate) fn assemble(problem: &JkoStep<'_>) -> (ConicProgram, OneStepLayout) {
    let mesh = problem.mesh;
    let energy = problem.energy;
    let tau = problem.tau;
    let n = mesh.n_cells();
    let faces = mesh.faces();
    let vols = mesh.volumes();
    // JkoStep guarantees ρⁿ ≥ 0 of positive mass, so both scales are positive and finite.
    let scale = problem.rho_prev.iter().fold(0.0f64, |a, &r| a.max(r));
    let mass = problem.mass();
    // Objective weights per unit mass, in the scaled variables.
    let w = scale / mass;

    let mut p = ConicProgram::new();
    let rho = p.add_variables(n);
    let flux = p.add_variables(faces.len());
    let kin = p.add_variables(faces.len());
    for (s, f) in faces.iter().enumerate() {
        p.add_cost(kin.start + s, 0.5 * tau * f.area * f.distance * w);
    }
    if let Some(v) = &energy.potential {
        for k in 0..n {
            p.add_cost(rho.start + k, vols[k] * v[k] * w);
        }
    }

    // Continuity: r_K − rⁿ_K + (τ/|K|) Σ_σ ±|σ| ĝ_σ = 0.
    let continuity = p.add_block(SupportedConeT::ZeroConeT, n, |k, c| {
        c.push((rho.start + k, 1.0));
        for &s in mesh.faces_of(k) {
            let f = &faces[s];
            let sign = if f.k == k { 1.0 } else { -1.0 };
            c.push((flux.start + s, sign * tau * f.area / vols[k]));
        }
        problem.rho_prev[k] / scale
    });
    // ρ ≥ 0 (the power cone alone would allow ρ < 0).
    p.add_block(SupportedConeT::NonnegativeConeT, n, |k, c| {
        c.push((rho.start + k, -1.0));
        0.0
    });
    if let Some(rmax) = energy.max_density {
        p.add_block(SupportedConeT::NonnegativeConeT, n, |k, c| {
            c.push((rho.start + k, 1.0));
            rmax / scale
        });
    }
    // Kinetic epigraph ĝ² ≤ u θ̂:  ‖(2ĝ, u − θ̂)‖ ≤ u + θ̂.
    for (s, f) in faces.iter().enumerate() {
        let (g, u, rk, rl) = (
            flux.start + s,
            kin.start + s,
            rho.start + f.k,
            rho.start + f.l,
        );
        p.add_cone(
            SupportedConeT::SecondOrderConeT(3),
            &[
                row(&[(u, -1.0), (rk, -0.5), (rl, -0.5)], 0.0),
                row(&[(g, -2.0)], 0.0),
                row(&[(u, -1.0), (rk, 0.5), (rl, 0.5)], 0.0),
            ],
        );
    }
    // Entropy: t ≥ r log r ⇔ (−t, r, 1) ∈ K_exp;  β ρ log ρ = β c (r log r + r log c).
    if let Some(beta) = energy.entropy {
        let t = p.add_variables(n);
        for (k, &vol) in vols.iter().enumerate() {
            p.add_cost(t.start + k, beta * vol * w);
            p.add_cost(rho.start + k, beta * vol * w * scale.ln());
            p.add_cone(
                SupportedConeT::ExponentialConeT(),
                &[
                    row(&[(t.start + k, 1.0)], 0.0),
                    row(&[(rho.start + k, -1.0)], 0.0),
                    row(&[], 1.0),
                ],
            );
        }
    }
    // Porous medium: t ≥ r^m ⇔ (t, 1, r) ∈ K_pow(1/m);  ρ^m/(m−1) = c^m r^m/(m−1).
    if let Some(m) = energy.porous {
        let t = p.add_variables(n);
        let weight = scale.powf(m) / (mass * (m - 1.0));
        for (k, &vol) in vols.iter().enumerate() {
            p.add_cost(t.start + k, vol * weight);
            p.add_cone(
                SupportedConeT::PowerConeT(1.0 / m),
                &[
                    row(&[(t.start + k, -1.0)], 0.0),
                    row(&[], 1.0),
                    row(&[(rho.start + k, -1.0)], 0.0),
                ],
            );
        }
    }
    let layout = OneStepLayout {
        rho,
        flux,
        continuity,
        scale,
        mass,
    };
    (p, layout)
}

/// ρ, G (mass units, oriented k → l) and φ (DESIGN's convention G = Tθ(φ_L − φ_K)), plus
/// remarks, from a converged solution.
pub(crate) struct Recovered {
    pub rho: Array1<f64>,
    pub flux: Array1<f64>,
    pub potential: Array1<f64>,
    pub notes: Vec<String>,
}

///
/// The densities are Clarabel's primal x, which satisfies ρ ≥ 0 only up to the primal
/// residual (the cone slack s = ρ is what stays strictly inside the cone). Negative values
/// down to −max(1e-12, `tol_feas`)·max ρ are therefore round-off: they are set to 0 and the
/// largest correction is recorded in the notes; anything more negative is an error.
pub(crate) fn recover(
    problem: &JkoStep<'_>,
    layout: &OneStepLayout,
    sol: &ConicSolution,
    tol_feas: f64,
) -> Result<Recovered, StepError> {
    let mesh = problem.mesh;
    let tau = problem.tau;
    let c = layout.scale;
    let mut rho = Array1::from_iter(sol.x[layout.rho.clone()].iter().map(|r| c * r));
    let flux = Array1::from_iter(
        mesh.faces()
            .iter()
            .zip(&sol.x[layout.flux.clone()])
            .map(|(f, g)| tau * f.area * c * g),
    );
    // Lagrangian of the scaled program: J/M + Σ_K z_K C_K/(c|K|), with C_K the continuity
    // constraint in mass units; so ψ_K = M z_K/(c|K|) and φ = τ ψ.
    let potential = Array1::from_iter(
        sol.z[layout.continuity.clone()]
            .iter()
            .zip(mesh.volumes())
            .map(|(z, v)| tau * layout.mass * z / (c * v)),
    );

    let max_rho = rho.iter().fold(0.0f64, |a, &r| a.max(r));
    let mut notes = Vec::new();
    let mut worst = 0.0f64;
    for (k, r) in rho.iter_mut().enumerate() {
        if !r.is_finite() {
            return Err(StepError::Numerical {
                solver: SOLVER_NAME.to_string(),
                message: format!("Clarabel returned a non-finite density ({r}) at cell {k}"),
            });
        }
        if *r < 0.0 {
            if *r < -ROUND_OFF.max(tol_feas) * max_rho {
                return Err(StepError::Numerical {
                    solver: SOLVER_NAME.to_string(),
                    message: format!(
                        "Clarabel returned a negative density {r:e} at cell {k} (max density {max_rho:e}); \
                         beyond round-off"
                    ),
                });
            }
            worst = worst.max(-*r);
            *r = 0.0;
        }
    }
    if worst > 0.0 {
        notes.push(format!(
            "negative round-off densities set to 0 (largest {worst:.3e})"
        ));
    }
    if potential.iter().any(|p| !p.is_finite()) || flux.iter().any(|g| !g.is_finite()) {
        return Err(StepError::Numerical {
            solver: SOLVER_NAME.to_string(),
            message: "Clarabel returned a non-finite flux or dual potential".into(),
        });
    }
    Ok(Recovered {
        rho,
        flux,
        potential,
        notes,
    })
}

//! Regression tests on the project's built-in examples `crowd-2d` and `quartic-1d`
//! (data/examples/*.toml), on the same meshes and initial data: cold starts with extreme
//! density tails, on which the first-order guess of φ makes ρ(φ) = exp(…) explode. The newton
//! backend must converge at every step and agree with the conic backend.

mod common;
use common::{crowd_2d, gaussian, history, side_by_side};
use jko_core::{Energy, Mesh, Potential, StepEnergy};
use ndarray::Array1;

/// Largest |ρ_K − ρ(s_K(φ))| / max ρ over cells for pure entropy β, ρ(s) = exp(s/β − 1): how far
/// a backend's own (ρ, φ) pair is from the cell stationarity equation
/// (s_K = −V_K − φ_K/τ + Σ_σ T_σ (φ_L − φ_K)² / (4τ|K|)).
fn entropy_law_residual(
    mesh: &Mesh,
    e: &StepEnergy,
    tau: f64,
    rho: &Array1<f64>,
    phi: &Array1<f64>,
) -> Option<f64> {
    let beta = e.entropy?;
    if e.max_density.is_some() || e.porous.is_some() {
        return None;
    }
    let scale = rho.iter().cloned().fold(0.0, f64::max);
    Some(
        common::chemical_potential(mesh, e, tau, phi)
            .into_iter()
            .enumerate()
            .map(|(k, (s, _))| (rho[k] - (s / beta - 1.0).exp()).abs() / scale)
            .fold(0.0, f64::max),
    )
}

/// Run `steps` steps with both backends (newton warm-started from its previous step, as a run
/// does), checking convergence, mass, bounds and agreement at every step; returns the largest
/// max|ρ_newton − ρ_conic| / max ρ and newton's iteration counts.
fn run(
    name: &str,
    problem: (&Mesh, &Energy, Array1<f64>),
    tau: f64,
    steps: usize,
) -> (f64, Vec<usize>) {
    let mesh = problem.0;
    let mass = mesh.mass(&problem.2);
    let mut iterations = Vec::new();
    let worst = side_by_side(name, problem, tau, steps, |c| {
        let (step, e, a, b, diff) = (c.step, c.energy, c.newton, c.conic, c.diff);
        println!(
            "{name} step {step}: max|drho|/max rho = {diff:.2e}, newton {} iterations \
             (residual {:.1e}), conic residuals {:.1e}/{:.1e}, history {:?}",
            a.info.iterations,
            a.info.primal_residual,
            b.info.primal_residual,
            b.info.dual_residual,
            history(a)
        );
        if let (Some(kn), Some(kc)) = (
            entropy_law_residual(mesh, e, tau, &a.rho, a.potential.as_ref().unwrap()),
            entropy_law_residual(mesh, e, tau, &b.rho, b.potential.as_ref().unwrap()),
        ) {
            println!("  cell-law residual: newton {kn:.1e}, conic {kc:.1e}");
            // Agreement to 1e-6, or else the conic is the inexact side.
            common::conic_limited_verdict(&format!("{name} step {step}"), diff, kn, kc, 1e-6, 1e-5);
        } else {
            assert!(
                diff <= 1e-6,
                "{name} step {step}: max|drho|/max rho = {diff:e}"
            );
        }
        assert!(a.rho.iter().all(|r| *r >= 0.0 && r.is_finite()));
        let merr = (mesh.mass(&a.rho) - mass).abs() / mass;
        assert!(merr < 1e-9, "{name} step {step}: mass error {merr:e}");
        if let Some(cap) = e.max_density {
            assert!(a.rho.iter().all(|r| *r <= cap));
        }
        iterations.push(a.info.iterations);
    });
    (worst, iterations)
}

/// data/examples/crowd-2d.toml: congestion ρ ≤ 1 with entropy 0.01 around a disc obstacle.
///
/// Used to fail at the first step (line search): with β = 0.01 against a potential range of ~53
/// the dual function is extremely stiff and the far cells underflowed to ρ = 0, where the reduced
/// matrix is singular. Fixed (issue 14) by solving capped steps with the primal–dual interior
/// point (the densities are its own unknowns, the cap's gap is kept exactly) and an active-set
/// finish; every step agrees with the conic backend.
#[test]
fn crowd_2d_example() {
    let (mesh, energy, rho0) = crowd_2d(32);
    let (worst, iterations) = run("crowd 2d", (&mesh, &energy, rho0), 0.2, 3);
    println!("crowd 2d: iterations {iterations:?}, max|drho|/max rho = {worst:.1e}");
}

/// data/examples/quartic-1d.toml: Langevin dynamics in V = x⁴/4.
#[test]
fn quartic_1d_example() {
    let mesh = Mesh::grid(&[200], &[-4.0], &[4.0]).unwrap();
    let energy = Energy::fokker_planck(1.0, Potential::Quartic);
    let rho0 = gaussian(&mesh, &[1.0], &[0.5], 1.0);
    // The first 10 of the 20 steps (all 20 pass too, in ~5 s); the cold first step used to stall
    // (ρ up to e^88 at the start).
    let (worst, iterations) = run("quartic 1d", (&mesh, &energy, rho0), 0.05, 10);
    println!("quartic 1d: iterations {iterations:?}, max|drho|/max rho = {worst:.1e}");
    assert!(
        iterations[0] <= 40,
        "cold step took {} iterations",
        iterations[0]
    );
}

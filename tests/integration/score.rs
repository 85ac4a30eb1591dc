//! `jko::score` on Ornstein–Uhlenbeck (docs/mathematics.md §9), against exact solutions:
//! - the exact JKO iterate of a Gaussian (cell averages) scores a gap that vanishes like h⁴/τ
//!   (its distance to the discrete minimiser is O(h²)), below 1e-8 on a fine mesh;
//! - a step of the one-step scheme (newton) is O(τ) from the exact step and scores the gap
//!   that distance implies, large against the exact iterate's;
//! - ρ* + εφ scores a gap quadratic in ε, with the constant of J's Hessian (≥ (1/τ)·W²/2).

use jko::score::{ScoreOptions, cell_averages_1d, score};
use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
use jko_core::{Energy, JkoStep, Mesh, StepSolver};
use ndarray::Array1;

fn ou() -> Energy {
    Energy::ornstein_uhlenbeck(1)
}

/// ρⁿ and the exact JKO iterate from it, as cell averages of the Gaussians.
fn exact_pair(mesh: &Mesh, tau: f64) -> (Array1<f64>, Array1<f64>) {
    let g0 = Gaussian::diagonal(&[0.8], &[0.6]);
    let g1 = OrnsteinUhlenbeck::standard(1).jko_step(&g0, tau);
    (
        cell_averages_1d(mesh, |x| g0.density(&[x])).unwrap(),
        cell_averages_1d(mesh, |x| g1.density(&[x])).unwrap(),
    )
}

#[test]
fn exact_ou_iterate_scores_a_gap_vanishing_like_h4() {
    let tau = 0.1;
    let mut gaps = Vec::new();
    for cells in [100, 200, 400, 800] {
        let mesh = Mesh::grid(&[cells], &[-5.0], &[5.0]).unwrap();
        let (prev, exact) = exact_pair(&mesh, tau);
        // Cell averages of a normalised Gaussian on [−5, 5]: mass 1 up to 1e-12.
        let exact = &exact * (mesh.mass(&prev) / mesh.mass(&exact));
        let s = score(&mesh, &ou(), tau, &prev, &exact, &ScoreOptions::default()).unwrap();
        assert!(s.method.is_exact());
        assert!(s.certificate < 1e-12, "certificate {}", s.certificate);
        assert!(s.gap >= -1e-12, "negative gap {}", s.gap);
        // The distance to ρ* is O(h²) and the gap ≈ W²(ρ̂, ρ*)/(2τ)·(1 + τλ).
        let bound = 0.5 * (1.0 / tau) * s.w2_to_minimiser.powi(2);
        assert!(s.gap >= 0.9 * bound - 1e-14, "gap {} below {bound}", s.gap);
        eprintln!(
            "cells/tau: gap {:.3e}, W to rho* {:.3e}",
            s.gap, s.w2_to_minimiser
        );
        gaps.push(s.gap);
    }
    // Measured: 6.4e-9, 3.7e-10, 2.4e-11, 2.5e-12 (orders 4.1, 3.9, then the 1e-12 floor).
    for w in gaps.windows(2).filter(|w| w[1] > 1e-11) {
        let order = (w[0] / w[1]).log2();
        assert!(
            order > 3.5 && order < 4.5,
            "observed order {order} ({gaps:?})"
        );
    }
    // The target: the exact iterate scores a gap ≤ 1e-8.
    assert!(*gaps.last().unwrap() <= 1e-8, "{gaps:?}");
}

#[test]
fn one_step_scheme_is_order_tau_away_and_scores_the_gap_that_implies() {
    // Fine mesh so that the step's temporal error dominates its spatial one.
    let mesh = Mesh::grid(&[400], &[-5.0], &[5.0]).unwrap();
    let newton = jko_newton::NewtonSolver::new(Default::default()).unwrap();
    let energy = ou();
    let mut gaps = Vec::new();
    for tau in [0.2, 0.1, 0.05] {
        let (prev, exact) = exact_pair(&mesh, tau);
        let frozen = energy.freeze(&mesh, &prev).unwrap();
        let problem = JkoStep::new(&mesh, &prev, tau, &frozen).unwrap();
        let step = StepSolver::solve(&newton, &problem, None).unwrap();
        let opts = ScoreOptions::default();
        let s = score(&mesh, &energy, tau, &prev, &step.rho, &opts).unwrap();
        let exact = &exact * (mesh.mass(&prev) / mesh.mass(&exact));
        let e = score(&mesh, &energy, tau, &prev, &exact, &opts).unwrap();
        // Far worse than the exact iterate on the same mesh, and a small fraction of the
        // decrease of J the exact step achieves.
        assert!(
            s.gap > 100.0 * e.gap,
            "tau {tau}: {} vs exact {}",
            s.gap,
            e.gap
        );
        assert!(s.relative_gap.unwrap() < 0.05, "{:?}", s.relative_gap);
        eprintln!(
            "cells/tau: gap {:.3e}, W to rho* {:.3e}",
            s.gap, s.w2_to_minimiser
        );
        // The gap is what the distance implies: (1/τ + λ)W²/2 ≤ gap ≤ 2× that (λ = 1).
        let implied = 0.5 * (1.0 / tau + 1.0) * s.w2_to_minimiser.powi(2);
        assert!(
            s.gap >= implied && s.gap <= 2.0 * implied,
            "tau {tau}: gap {} vs {implied}",
            s.gap
        );
        gaps.push(s.w2_to_minimiser);
    }
    // The one-step scheme is O(τ) from the exact step (measured W: 3.5e-2, 1.9e-2, 7.5e-3).
    for w in gaps.windows(2) {
        let order = (w[0] / w[1]).log2();
        assert!(
            order > 0.7 && order < 1.6,
            "observed order {order} in tau of W to rho* ({gaps:?})"
        );
    }
}

#[test]
fn perturbed_minimiser_scores_a_gap_quadratic_in_the_perturbation() {
    let mesh = Mesh::grid(&[300], &[-5.0], &[5.0]).unwrap();
    let tau = 0.1;
    let (prev, _) = exact_pair(&mesh, tau);
    let energy = ou();
    let opts = ScoreOptions::default();
    let star = score(&mesh, &energy, tau, &prev, &prev, &opts)
        .unwrap()
        .minimiser;
    // A mass-free perturbation supported where ρ* is not small (so ρ* + εφ ≥ 0).
    let bump = mesh.sample(|x| (x[0] - 0.5) * (-(x[0] - 0.5).powi(2) / 0.3).exp());
    let mut ratios = Vec::new();
    let mut previous: Option<f64> = None;
    for eps in [0.08, 0.04, 0.02, 0.01, 0.005] {
        let cand = &star + &(&bump * eps);
        assert!(cand.iter().all(|v| *v >= 0.0));
        let s = score(&mesh, &energy, tau, &prev, &cand, &opts).unwrap();
        assert!(s.gap > 0.0);
        // (1/τ)-convexity along generalised geodesics (λ = 1 here): gap ≥ (1/τ + 1) W²/2.
        let bound = 0.5 * (1.0 / tau + 1.0) * s.w2_to_minimiser.powi(2);
        assert!(s.gap >= 0.99 * bound, "eps {eps}: gap {} < {bound}", s.gap);
        if let Some(p) = previous {
            ratios.push(p / s.gap);
        }
        previous = Some(s.gap);
    }
    // Halving ε divides the gap by 4 (up to the cubic term).
    for r in &ratios {
        assert!((r - 4.0).abs() < 0.15, "ratios {ratios:?}");
    }
    assert!(
        (ratios.last().unwrap() - 4.0).abs() < 0.02,
        "ratios {ratios:?}"
    );
}

// ---- 2D: the semi-discrete problem (ScoreMethod::SemiDiscrete) ----

/// ρⁿ and the exact OU iterate from it on a 2D grid (cell-centre values, normalised to the mass
/// of ρⁿ).
fn exact_pair_2d(mesh: &Mesh, tau: f64) -> (Array1<f64>, Array1<f64>) {
    let g0 = Gaussian::diagonal(&[0.8, -0.4], &[0.7, 0.9]);
    let g1 = OrnsteinUhlenbeck::standard(2).jko_step(&g0, tau);
    let prev = mesh.sample(|x| g0.density(x));
    let exact = mesh.sample(|x| g1.density(x));
    let exact = &exact * (mesh.mass(&prev) / mesh.mass(&exact));
    (prev, exact)
}

/// The exact minimiser of the semi-discrete J is certified (primal J(ρ*) against the dual
/// bound G(φ) ≤ min J) to a relative 1e-8 of the step's decrease; it converges to the exact
/// Gaussian iterate like h²; the exact Gaussian iterate and bfm's step score small positive
/// gaps. Measured (test profile, load ~9): 32²: certificate 2.6e-10 of a decrease 6.6e-2,
/// exact iterate relative gap 1.06e-2, L1 to ρ* 1.21e-2, bfm relative gap 1.01e-2; 64² (345 s):
/// certificate 6.9e-11 of 6.1e-2, exact iterate 7.3e-4 (order 3.9 ≈ the h⁴/τ of 1D), L1 3.1e-3
/// (order 2.0), bfm 7.8e-4. The default run takes 32² and 48² (idle machine, test profile:
/// 1.1 s and 9.5 s; 48²: certificate 3.8e-12, exact iterate relative gap 2.1e-3, L1 5.85e-3:
/// order 1.79 from 32²; 16² is pre-asymptotic, order 1.3 from 16² to 32²).
#[test]
fn semidiscrete_minimiser_is_certified_and_converges_to_the_exact_iterate() {
    semidiscrete_certified_and_converging(&[32, 48]);
}

/// The same at 32² and 64² (the 64² step costs minutes: out of the default run).
#[test]
#[ignore]
fn semidiscrete_minimiser_is_certified_and_converges_to_the_exact_iterate_64() {
    semidiscrete_certified_and_converging(&[32, 64]);
}

fn semidiscrete_certified_and_converging(sizes: &[usize; 2]) {
    let tau = 0.1;
    let energy = Energy::ornstein_uhlenbeck(2);
    let bfm = jko_bfm::BfmSolver::new(Default::default()).unwrap();
    let mut l1s = Vec::new();
    for &n in sizes {
        let mesh = Mesh::grid(&[n, n], &[-5.0, -5.0], &[5.0, 5.0]).unwrap();
        let (prev, exact) = exact_pair_2d(&mesh, tau);
        let t0 = std::time::Instant::now();
        let s = score(&mesh, &energy, tau, &prev, &exact, &ScoreOptions::default()).unwrap();
        let secs = t0.elapsed().as_secs_f64();
        assert_eq!(s.method, jko::score::ScoreMethod::SemiDiscrete);
        let decrease = s.gap / s.relative_gap.unwrap();
        let frozen = energy.freeze(&mesh, &prev).unwrap();
        let problem = JkoStep::new(&mesh, &prev, tau, &frozen).unwrap();
        let b = StepSolver::solve(&bfm, &problem, None).unwrap();
        let sb = score(&mesh, &energy, tau, &prev, &b.rho, &ScoreOptions::default()).unwrap();
        let l1 = mesh.l1_distance(&s.minimiser, &exact) / mesh.mass(&prev);
        eprintln!(
            "{n}^2: {secs:.1} s; certificate {:.2e} (decrease {decrease:.4e}); exact iterate: gap \
             {:.3e} (rel {:.2e}), W {:.2e}, L1 to rho* {l1:.2e}; bfm: gap {:.3e} (rel {:.2e}), \
             L1 {:.2e}",
            s.certificate,
            s.gap,
            s.relative_gap.unwrap(),
            s.w2_to_minimiser,
            sb.gap,
            sb.relative_gap.unwrap(),
            sb.relative_l1
        );
        assert!(s.certificate <= 1e-8 * decrease, "{s:?}");
        assert!(s.gap >= -s.certificate && sb.gap >= -sb.certificate);
        l1s.push(l1);
    }
    let order = (l1s[0] / l1s[1]).ln() / (sizes[1] as f64 / sizes[0] as f64).ln();
    assert!(order > 1.5, "L1 of rho* to the exact iterate: {l1s:?}");
}

/// ρ* + εφ scores a gap quadratic in ε (measured ratios 3.95, 3.98, 4.00); the one-step scheme
/// (newton) scores a positive gap (measured at 32², τ = 0.2, 0.1, 0.05: 2.2e-3, 7.8e-4, 3.5e-4,
/// against (1/τ + 1)W²/2 = 2.6e-3, 5.4e-4, 5.5e-4 with the lattice W; at 32² the O(h²)
/// difference between newton's and this discretisation, ~7e-4 as the exact iterate's gap shows,
/// hides the O(τ) part below τ = 0.1, so no order in τ is asserted).
#[test]
fn semidiscrete_score_of_perturbations_and_of_the_one_step_scheme() {
    let mesh = Mesh::grid(&[32, 32], &[-5.0, -5.0], &[5.0, 5.0]).unwrap();
    let energy = Energy::ornstein_uhlenbeck(2);
    let opts = ScoreOptions::default();
    let tau = 0.1;
    let (prev, _) = exact_pair_2d(&mesh, tau);
    let v = mesh.sample(|x| 0.5 * (x[0] * x[0] + x[1] * x[1]));
    let options = jko_bfm::SemiDiscreteOptions::default();
    let star = jko_bfm::semidiscrete_jko_step(&mesh, &prev, tau, 1.0, Some(&v), &options)
        .unwrap()
        .rho;
    // A mass-free perturbation ρ*·(x₀ − mean x₀): ρ* + εφ ≥ 0 for ε·6 < 1.
    let m = mesh.mass(&star);
    let mean: f64 = (0..mesh.n_cells())
        .map(|k| mesh.volumes()[k] * star[k] * mesh.centre(k)[0])
        .sum::<f64>()
        / m;
    let bump = Array1::from_iter((0..mesh.n_cells()).map(|k| star[k] * (mesh.centre(k)[0] - mean)));
    let mut gaps = Vec::new();
    for eps in [0.04, 0.02, 0.01, 0.005] {
        let cand = &star + &(&bump * eps);
        assert!(cand.iter().all(|v| *v >= 0.0));
        let s = score(&mesh, &energy, tau, &prev, &cand, &opts).unwrap();
        eprintln!("eps {eps}: gap {:.4e} cert {:.1e}", s.gap, s.certificate);
        gaps.push(s.gap);
    }
    let ratios: Vec<f64> = gaps.windows(2).map(|w| w[0] / w[1]).collect();
    let order = ratios.last().unwrap().log2();
    eprintln!("ratios {ratios:?}, order {order:.3}");
    assert!((order - 2.0).abs() < 0.05, "{ratios:?}");

    let newton = jko_newton::NewtonSolver::new(Default::default()).unwrap();
    for tau in [0.2, 0.1, 0.05] {
        let (prev, _) = exact_pair_2d(&mesh, tau);
        let frozen = energy.freeze(&mesh, &prev).unwrap();
        let problem = JkoStep::new(&mesh, &prev, tau, &frozen).unwrap();
        let step = StepSolver::solve(&newton, &problem, None).unwrap();
        let s = score(&mesh, &energy, tau, &prev, &step.rho, &opts).unwrap();
        let implied = 0.5 * (1.0 / tau + 1.0) * s.w2_to_minimiser.powi(2);
        eprintln!(
            "newton tau {tau}: gap {:.3e} (rel {:.2e}), W {:.3e}, implied {implied:.3e}, L1 {:.2e}",
            s.gap,
            s.relative_gap.unwrap(),
            s.w2_to_minimiser,
            s.relative_l1
        );
        assert!(s.gap > 0.0);
    }
}

//! W₂² by the back-and-forth method (`jko_bfm::w2_squared`) against closed forms:
//! - two Gaussians with commuting (diagonal) covariances, W₂² = |m₁ − m₂|² + ‖Σ₁^{½} − Σ₂^{½}‖²_F,
//!   in 2D and 3D: the W₂² of the cell-centre measures (what the method computes, a lower bound
//!   of it) exceeds the continuous one by O(h²); the error must fall with h;
//! - a block translated by whole cells, W₂² = mass × |shift|² exactly, also for the node measures;
//! - invariants: W₂²(μ, μ) = 0, symmetry, and the dual value below the map's cost.
use jko_bfm::{TransportOptions, w2_squared};
use jko_core::exact::Gaussian;
use jko_core::{Mesh, StepError};
use ndarray::Array1;

fn gaussian(mesh: &Mesh, mean: &[f64], std: &[f64]) -> Array1<f64> {
    let g = Gaussian::diagonal(mean, std);
    let rho = mesh.sample(|x| g.density(x));
    let m = mesh.mass(&rho);
    rho / m
}

fn closed_form(m1: &[f64], s1: &[f64], m2: &[f64], s2: &[f64]) -> f64 {
    let means: f64 = m1.iter().zip(m2).map(|(a, b)| (a - b).powi(2)).sum();
    let stds: f64 = s1.iter().zip(s2).map(|(a, b)| (a - b).powi(2)).sum();
    means + stds
}

/// Relative errors of W₂² against the closed form on a sequence of grids.
fn gaussian_errors(
    sizes: &[usize],
    half: f64,
    m: [&[f64]; 2],
    s: [&[f64]; 2],
) -> Vec<(usize, f64, f64)> {
    let d = m[0].len();
    let exact = closed_form(m[0], s[0], m[1], s[1]);
    sizes
        .iter()
        .map(|&n| {
            let mesh = Mesh::grid(&vec![n; d], &vec![-half; d], &vec![half; d]).unwrap();
            let a = gaussian(&mesh, m[0], s[0]);
            let b = gaussian(&mesh, m[1], s[1]);
            let t = w2_squared(&mesh, &a, &b, &TransportOptions::default()).unwrap();
            let err = (t.w2 - exact).abs() / exact;
            println!(
                "{d}D {n}: W2^2 {:.10} exact {exact:.10} rel. error {err:.2e}, map cost {:.10} \
                 (gap {:.2e}), marginal {:.2e}, {} iterations",
                t.w2, t.primal, t.gap, t.marginal, t.iterations
            );
            (n, err, t.marginal)
        })
        .collect()
}

#[test]
fn gaussians_2d_match_the_closed_form_to_the_grid_error() {
    let errors = gaussian_errors(
        &[24, 48],
        6.0,
        [&[0.6, -0.4], &[-0.5, 0.3]],
        [&[0.8, 1.1], &[1.2, 0.7]],
    );
    let (e24, e48) = (errors[0].1, errors[1].1);
    assert!(e48 < 1e-2, "48²: {e48:.2e}");
    assert!(
        e48 < 0.5 * e24,
        "no convergence in h: {e24:.2e} -> {e48:.2e}"
    );
}

#[test]
fn gaussians_3d_match_the_closed_form_to_the_grid_error() {
    let errors = gaussian_errors(
        &[12, 18],
        4.5,
        [&[0.5, -0.3, 0.2], &[-0.4, 0.2, -0.3]],
        [&[0.9, 1.1, 1.0], &[1.2, 0.8, 0.9]],
    );
    let (e12, e18) = (errors[0].1, errors[1].1);
    assert!(e18 < 5e-2, "18³: {e18:.2e}");
    assert!(
        e18 < 0.7 * e12,
        "no convergence in h: {e12:.2e} -> {e18:.2e}"
    );
}

fn block(mesh: &Mesh, h: f64, lo: &[usize], width: usize, mass: f64) -> Array1<f64> {
    let rho = mesh.sample(|x| {
        let inside = x
            .iter()
            .zip(lo)
            .all(|(xa, &l)| (l..l + width).contains(&((xa / h) as usize)));
        if inside { 1.0 } else { 0.0 }
    });
    let m = mesh.mass(&rho);
    rho * (mass / m)
}

#[test]
fn translated_blocks_cost_mass_times_shift_squared() {
    let h = 0.25;
    for (d, n, lo_a, lo_b) in [
        (2usize, 24usize, vec![3usize, 5], vec![9usize, 4]),
        (2, 32, vec![4, 4], vec![4, 14]),
        (3, 16, vec![2, 3, 4], vec![5, 3, 7]),
    ] {
        let mesh = Mesh::grid(&vec![n; d], &vec![0.0; d], &vec![n as f64 * h; d]).unwrap();
        let mass = 2.5;
        let a = block(&mesh, h, &lo_a, 5, mass);
        let b = block(&mesh, h, &lo_b, 5, mass);
        let shift2: f64 = lo_a
            .iter()
            .zip(&lo_b)
            .map(|(x, y)| ((*y as f64 - *x as f64) * h).powi(2))
            .sum();
        let exact = mass * shift2;
        let t = w2_squared(&mesh, &a, &b, &TransportOptions::default()).unwrap();
        let back = w2_squared(&mesh, &b, &a, &TransportOptions::default()).unwrap();
        println!(
            "{d}D {n} block: {t:?}, exact {exact}; reversed {:.12}",
            back.w2
        );
        assert!((t.w2 - exact).abs() < 1e-12 * exact, "{t:?} vs {exact}");
        assert!(
            (back.w2 - exact).abs() < 1e-12 * exact,
            "{back:?} vs {exact}"
        );
    }
}

#[test]
fn identical_densities_are_at_distance_zero() {
    let mesh = Mesh::grid(&[24, 20], &[-3.0, -3.0], &[3.0, 3.0]).unwrap();
    let a = gaussian(&mesh, &[0.3, 0.1], &[0.7, 0.9]);
    let t = w2_squared(&mesh, &a, &a, &TransportOptions::default()).unwrap();
    assert!(t.w2.abs() < 1e-12 && t.marginal < 1e-12, "{t:?}");
}

#[test]
fn unequal_masses_masks_and_bad_densities_are_refused() {
    let mesh = Mesh::grid(&[8, 8], &[0.0, 0.0], &[1.0, 1.0]).unwrap();
    let a = Array1::from_elem(64, 1.0);
    let err = w2_squared(&mesh, &a, &(&a * 2.0), &TransportOptions::default()).unwrap_err();
    assert!(err.to_string().contains("mass"), "{err}");
    let mut bad = a.clone();
    bad[3] = -1.0;
    let err = w2_squared(&mesh, &a, &bad, &TransportOptions::default()).unwrap_err();
    assert!(matches!(err, StepError::Input(_)), "{err}");
    let masked = Mesh::masked_grid(
        &[4, 4],
        &[0.0, 0.0],
        &[1.0, 1.0],
        Some((0..16).map(|k| k != 5).collect()),
    )
    .unwrap();
    let ones = Array1::from_elem(masked.n_cells(), 1.0);
    let err = w2_squared(&masked, &ones, &ones, &TransportOptions::default()).unwrap_err();
    assert!(matches!(err, StepError::UnsupportedMesh { .. }), "{err}");
}

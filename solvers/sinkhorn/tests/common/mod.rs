//! References shared by the tests and the examples (which include this file with `#[path]`):
//! independent of the code under test.
#![allow(dead_code)]

use jko_core::Mesh;
use jko_core::exact::Gaussian;
use jko_sinkhorn::{KernelChoice, SinkhornParams, SinkhornSolver};
use ndarray::Array1;

/// The continuous entropic JKO step of a 1D Gaussian N(m, s²) for β ∫ρ ln ρ + (k/2)∫x²ρ:
/// min over Gaussian couplings of [E|X − Y|² + ε ∫π ln π]/(2τ) + F(law of Y). With correlation
/// r and new standard deviation s', stationarity gives ε r = 2 s s' (1 − r²) and
/// (2s' − 2rs − ε/s')/(2τ) − β/s' + k s' = 0 (the mean is unbiased: m' = m/(1 + kτ)).
/// Solved by alternating the closed-form r and a Newton step in s'. Independent of the code
/// under test; on a grid the discrete problem converges to this as h → 0 with ε fixed.
pub fn entropic_ou_std(s: f64, tau: f64, beta: f64, k: f64, eps: f64) -> f64 {
    let mut sp = s;
    for _ in 0..200 {
        let a = 2.0 * s * sp;
        let r = (-eps + (eps * eps + 4.0 * a * a).sqrt()) / (2.0 * a);
        for _ in 0..3 {
            let f = (2.0 * sp - 2.0 * r * s - eps / sp) / (2.0 * tau) - beta / sp + k * sp;
            let df = (2.0 + eps / (sp * sp)) / (2.0 * tau) + beta / (sp * sp) + k;
            sp -= f / df;
        }
    }
    sp
}

/// max_k |a_k − b_k|: how far two results of the same problem are apart.
pub fn max_abs_diff<'a>(
    a: impl IntoIterator<Item = &'a f64>,
    b: impl IntoIterator<Item = &'a f64>,
) -> f64 {
    a.into_iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

/// The 1D Ornstein–Uhlenbeck start of the tests and studies: `cells` cells of [−5, 5], the
/// Gaussian N(1, 0.5²) and ρ⁰, its samples at the cell centres normalised to mass 1.
pub fn ou_1d_start(cells: usize) -> (Mesh, Gaussian, Array1<f64>) {
    let mesh = Mesh::grid(&[cells], &[-5.0], &[5.0]).expect("grid");
    let g0 = Gaussian::diagonal(&[1.0], &[0.5]);
    let rho0 = mesh.sample(|x| g0.density(x));
    let rho0 = &rho0 / mesh.mass(&rho0);
    (mesh, g0, rho0)
}

/// A Sinkhorn solver at the fixed ε = `epsilon` with the kernel `kernel`, allowed a dense kernel
/// of up to `dense_limit_bytes` (the kernel-cost studies compare tensor and dense kernels).
pub fn fixed_epsilon(epsilon: f64, kernel: KernelChoice, dense_limit_bytes: u64) -> SinkhornSolver {
    SinkhornSolver::new(SinkhornParams {
        epsilon: Some(epsilon),
        kernel,
        dense_limit_bytes,
        ..Default::default()
    })
    .expect("solver")
}

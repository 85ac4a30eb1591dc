//! The OU step problem of `benches/step.rs` and `examples/conic_timing.rs`: a Gaussian bump on
//! [-4, 4]^d of unit mass under Fokker–Planck with the unit quadratic well at the origin.

use jko_core::{Energy, InputError, Mesh, StepEnergy};
use ndarray::Array1;

/// Mesh, ρⁿ and the frozen energy on a grid of `cells`.
pub fn ou_problem(cells: &[usize]) -> Result<(Mesh, Array1<f64>, StepEnergy), InputError> {
    let d = cells.len();
    let mesh = Mesh::grid(cells, &vec![-4.0; d], &vec![4.0; d])?;
    let bump = |x: &[f64]| {
        let r2: f64 = x
            .iter()
            .enumerate()
            .map(|(a, v)| (v - 0.5 + 0.2 * a as f64).powi(2))
            .sum();
        (-r2).exp()
    };
    let rho = mesh.sample(bump);
    let rho = &rho / mesh.mass(&rho);
    let e = Energy::ornstein_uhlenbeck(d).freeze(&mesh, &rho)?;
    Ok((mesh, rho, e))
}

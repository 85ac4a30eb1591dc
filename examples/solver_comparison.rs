//! The same JKO step with every registered backend (`jko::backend::BACKENDS`): wall time,
//! iterations, and the L1 difference of ρ¹ to the first backend's, for a 1D and a 2D
//! Fokker–Planck step. A backend that does not treat an energy term says so.
//!
//! ```sh
//! cargo run --release -p jko --example solver_comparison
//! ```

use jko::backend::BACKENDS;
use jko::config::Checks;
use jko::driver::Stepper;
use jko_core::exact::Gaussian;
use jko_core::{Energy, Mesh};
use ndarray::Array1;

fn compare(
    label: &str,
    mesh: &Mesh,
    energy: &Energy,
    rho0: &Array1<f64>,
    tau: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    println!("\n{label}: {} cells, tau = {tau}", mesh.n_cells());
    println!(
        "{:>10} {:>10} {:>8} {:>16} {:>12}",
        "backend", "status", "iters", "L1 to first", "time s"
    );
    let mut first: Option<Array1<f64>> = None;
    for backend in BACKENDS {
        let solver = backend.defaults().build()?;
        let stepper = match Stepper::new(
            mesh,
            energy,
            solver.as_ref(),
            tau,
            Checks::default(),
            mesh.mass(rho0),
        ) {
            Ok(s) => s,
            Err(e) => {
                println!("{:>10} skipped: {e}", backend.name);
                continue;
            }
        };
        let start = std::time::Instant::now();
        match stepper.step(1, rho0, None) {
            Ok((out, record)) => {
                let seconds = start.elapsed().as_secs_f64();
                let diff = match &first {
                    None => 0.0,
                    Some(r) => mesh.l1_distance(&out.rho, r),
                };
                println!(
                    "{:>10} {:>10} {:>8} {:>16.3e} {:>12.3}",
                    backend.name,
                    format!("{:?}", record.status),
                    record.iterations,
                    diff,
                    seconds
                );
                first.get_or_insert(out.rho);
            }
            Err(e) => println!("{:>10} failed: {e}", backend.name),
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let names: Vec<&str> = BACKENDS.iter().map(|b| b.name).collect();
    println!("registered backends: {}", names.join(", "));

    let mesh = Mesh::grid(&[200], &[-5.0], &[5.0])?;
    let energy = Energy::ornstein_uhlenbeck(1);
    let g = Gaussian::diagonal(&[1.0], &[0.5]);
    let rho0 = mesh.sample(|x| g.density(x));
    compare("1D Fokker-Planck", &mesh, &energy, &rho0, 0.1)?;

    let mesh = Mesh::grid(&[32, 32], &[-4.0, -4.0], &[4.0, 4.0])?;
    let energy = Energy::ornstein_uhlenbeck(2);
    let g = Gaussian::diagonal(&[1.0, -0.5], &[0.6, 0.9]);
    let rho0 = mesh.sample(|x| g.density(x));
    compare("2D Fokker-Planck", &mesh, &energy, &rho0, 0.1)?;
    Ok(())
}

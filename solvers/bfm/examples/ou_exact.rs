//! OU 2D against the exact JKO iterates: L1 error per grid, iterations, time.
//! `cargo run --profile test -p jko-bfm --example ou_exact -- 64 128 256` (the time per GMRES
//! product includes the Newton evaluations, line searches and c-transforms of the steps).
use jko_bfm::{BfmParams, BfmSolver};
use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
use jko_core::{Energy, JkoStep, Mesh, Potential, StepSolver, WarmStart};
use std::time::Instant;

mod common;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sizes = common::sizes_from_args(&[64, 128]);
    let tol: f64 = common::env_or("BFM_TOL", 1e-9);
    let tau = 0.1;
    let steps = 3;
    let g0 = Gaussian::diagonal(&[1.0, -0.5], &[0.5, 0.8]);
    let ou = OrnsteinUhlenbeck::standard(2);
    let energy = Energy::fokker_planck(
        1.0,
        Potential::Quadratic {
            center: vec![0.0; 2],
            stiffness: 1.0,
        },
    );
    let solver = BfmSolver::new(BfmParams {
        tol,
        ..BfmParams::default()
    })?;
    for &n in &sizes {
        let mesh = Mesh::grid(&[n, n], &[-5.0, -5.0], &[5.0, 5.0])?;
        let mut rho = mesh.sample(|x| g0.density(x));
        let m = mesh.mass(&rho);
        rho /= m;
        let mut warm: Option<WarmStart> = None;
        let t0 = Instant::now();
        let mut iters = Vec::new();
        let mut products = 0;
        for _ in 0..steps {
            let frozen = energy.freeze(&mesh, &rho)?;
            let out = match solver.step(&JkoStep::new(&mesh, &rho, tau, &frozen)?, warm.as_ref()) {
                Ok(o) => o,
                Err(jko_core::StepError::NotConverged {
                    iterations,
                    primal_residual,
                    history,
                    ..
                }) => {
                    let h: Vec<String> = history
                        .iter()
                        .take(60)
                        .map(|x| format!("{x:.1e}"))
                        .collect();
                    return Err(format!(
                        "not converged after {iterations}: {primal_residual:.2e}; {h:?}"
                    )
                    .into());
                }
                Err(e) => return Err(e.into()),
            };
            iters.push(out.info.iterations);
            products += common::gmres_products(&out.info.notes);
            let h = &out.info.history;
            eprintln!(
                "  n={n} iters {} residual {:.2e} hist[..5] {:?} notes {:?}",
                out.info.iterations,
                out.info.primal_residual,
                h.iter()
                    .step_by((h.len() / 10).max(1))
                    .map(|x| format!("{x:.1e}"))
                    .collect::<Vec<_>>(),
                out.info.notes
            );
            warm = Some(WarmStart::from(&out));
            rho = out.rho;
        }
        let dt = t0.elapsed().as_secs_f64();
        let exact = ou.jko_iterates(&g0, tau, steps);
        let l1: f64 = (0..mesh.n_cells())
            .map(|k| mesh.volumes()[k] * (rho[k] - exact.density(mesh.centre(k))).abs())
            .sum();
        let flow = ou.flow(&g0, tau * steps as f64);
        let l1_flow: f64 = (0..mesh.n_cells())
            .map(|k| mesh.volumes()[k] * (rho[k] - flow.density(mesh.centre(k))).abs())
            .sum();
        println!(
            "{n}x{n}: L1 vs exact JKO {l1:.3e}  (vs gradient flow {l1_flow:.3e})  mass err {:.1e}  iterations {iters:?}  {dt:.2} s, {products} GMRES products, {:.3} ms per product, {:.3} us per product and cell",
            (mesh.mass(&rho) - 1.0).abs(),
            1e3 * dt / products.max(1) as f64,
            1e6 * dt / (products.max(1) * n * n) as f64
        );
    }
    Ok(())
}

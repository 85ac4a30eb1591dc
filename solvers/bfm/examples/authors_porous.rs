//! The porous-medium example of Jacobs, Lee & Léger's public code (wgfBFMcodes,
//! python/BFM-porous.py), set up as a problem of ours (issue 20, round 8): the unit square,
//! U(ρ) = ρ^m/(m − 1) with m = 2, V(x) = |x − (0.9, 0.9)|²/2, τ = 0.1, ρ⁰ uniform on three
//! squares of side 0.2 centred at (0.3, 0.3), (0.3, 0.7), (0.7, 0.3) with total mass 0.02.
//! Their driver runs 20 JKO steps, each at most 500 back-and-forth passes, stopped when the
//! relative change of their error indicator falls below 1e-3 × mass.
//!
//! Per step: Newton iterations, GMRES products, the relative L1 marginal error at exit (our
//! stopping rule, `BFM_TOL`, default 1e-9), the mass error and the wall time; at the end the mean
//! step time and per GMRES product. `cargo run --profile test -p jko-bfm --example authors_porous
//! -- 128 256 512` (`BFM_STEPS=n`, default 20; `BFM_M` the exponent, default 2; `BFM_STAGES` the
//! continuation stages, `[solver] max_stages`, default 40; `BFM_NOTES` prints every note of a
//! step (the continuation's stages); `BFM_MAP` prints a
//! character map of each density, `BFM_DUMP=tag` writes it to /tmp/rho_{n}_{step}_{tag}.txt).
//! Steps finished by the back-and-forth ascent (colliding supports) print its note; their
//! "Newton its" count Newton iterations and ascent passes together.
use jko_bfm::{BfmParams, BfmSolver};
use jko_core::{Energy, JkoStep, Mesh, Potential, StepSolver, WarmStart};
use std::time::Instant;

mod common;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sizes = common::sizes_from_args(&[128]);
    let steps: usize = common::env_or("BFM_STEPS", 20);
    let tol: f64 = common::env_or("BFM_TOL", 1e-9);
    let m: f64 = common::env_or("BFM_M", 2.0);
    let (tau, mass) = (0.1, 0.02);
    let energy = Energy {
        porous: Some(m),
        potential: Some(Potential::Quadratic {
            center: vec![0.9, 0.9],
            stiffness: 1.0,
        }),
        ..Energy::default()
    };
    let solver = BfmSolver::new(BfmParams {
        tol,
        max_stages: common::env_or("BFM_STAGES", BfmParams::default().max_stages),
        ..BfmParams::default()
    })?;
    for &n in &sizes {
        let mesh = Mesh::grid(&[n, n], &[0.0, 0.0], &[1.0, 1.0])?;
        solver.check_supported(&mesh, &energy.terms())?;
        let square =
            |x: &[f64], c: [f64; 2]| (x[0] - c[0]).abs() < 0.1 && (x[1] - c[1]).abs() < 0.1;
        let mut rho = mesh.sample(|x| {
            if square(x, [0.3, 0.3]) || square(x, [0.3, 0.7]) || square(x, [0.7, 0.3]) {
                1.0
            } else {
                0.0
            }
        });
        rho *= mass / mesh.mass(&rho);
        let mut warm: Option<WarmStart> = None;
        let (mut total, mut linear, mut newton) = (0.0, 0usize, 0usize);
        let mut worst_mass = 0.0f64;
        for step in 1..=steps {
            let frozen = energy.freeze(&mesh, &rho)?;
            let t = Instant::now();
            let out = solver.step(&JkoStep::new(&mesh, &rho, tau, &frozen)?, warm.as_ref())?;
            let dt = t.elapsed().as_secs_f64();
            let mass_err = mesh.mass(&out.rho) / mass - 1.0;
            let prods = common::gmres_products(&out.info.notes);
            println!(
                "{n}x{n} step {step:2}: {:3} Newton its, {:5} GMRES products, marginal {:.1e}, mass err {:.1e}, {:.3} s",
                out.info.iterations, prods, out.info.primal_residual, mass_err, dt
            );
            let all_notes = std::env::var("BFM_NOTES").is_ok();
            for note in out
                .info
                .notes
                .iter()
                .filter(|n| all_notes || n.contains("finisher"))
            {
                println!("  {note}");
            }
            total += dt;
            linear += prods;
            newton += out.info.iterations;
            worst_mass = worst_mass.max(mass_err.abs());
            if std::env::var("BFM_MAP").is_ok() {
                // A character map of the density (rows: first axis), for looking at fronts.
                let top = out.rho.iter().fold(0.0f64, |a, &b| a.max(b));
                let stride = (n / 64).max(1);
                for i in (0..n).step_by(stride) {
                    let row: String = (0..n)
                        .step_by(stride)
                        .map(|j| {
                            let r = out.rho[i * n + j] / top;
                            match r {
                                r if r <= 0.0 => '.',
                                r if r < 0.05 => ',',
                                r if r < 0.3 => '-',
                                r if r < 0.6 => '+',
                                _ => '#',
                            }
                        })
                        .collect();
                    println!("  {row}");
                }
            }
            if let Ok(tag) = std::env::var("BFM_DUMP") {
                let text: Vec<String> = out.rho.iter().map(|x| format!("{x:e}")).collect();
                std::fs::write(format!("/tmp/rho_{n}_{step}_{tag}.txt"), text.join("\n"))?;
            }
            warm = Some(WarmStart::from(&out));
            rho = out.rho;
        }
        println!(
            "{n}x{n}: {steps} steps, mean {:.3} s/step, {} Newton its, {linear} GMRES products ({:.2} ms/product incl. evaluations), max |mass err| {worst_mass:.1e}, tol {tol:.0e}",
            total / steps as f64,
            newton,
            1e3 * total / linear.max(1) as f64
        );
    }
    Ok(())
}

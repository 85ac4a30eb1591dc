//! Cost of a JKO step: a 512² step (time, iterations, peak memory of the process), a 3D 64³
//! step, and the same step with the tensor-product and with the dense N×N kernel at 64² and
//! 128² (the dense kernel at 128² holds a 2 GiB matrix).
//!
//! Problem: Fokker–Planck on the unit square (cube), β = 0.05, V = (5/2)|x − c|², τ = 0.5,
//! ε = 1e-2, tol = 1e-9.
//!
//! Run: cargo run --release -p jko-sinkhorn --example scaling [-- no-dense]

use jko_core::{Energy, JkoStep, Mesh, Potential, StepOutput, StepSolver};
use jko_sinkhorn::KernelChoice;
use std::time::Instant;

#[path = "common/mod.rs"]
mod common;
#[path = "../tests/common/mod.rs"]
mod reference;
use common::peak_rss_mib;
use reference::{fixed_epsilon, max_abs_diff};

fn step(cells: &[usize], kernel: KernelChoice) -> (f64, StepOutput) {
    let d = cells.len();
    let mesh = Mesh::grid(cells, &vec![0.0; d], &vec![1.0; d]).expect("grid");
    let centre: Vec<f64> = (0..d).map(|a| if a == 0 { 0.3 } else { 0.6 }).collect();
    let rho0 = mesh.sample(|x| {
        (-x.iter()
            .zip(&centre)
            .map(|(a, c)| (a - c).powi(2))
            .sum::<f64>()
            / 0.02)
            .exp()
    });
    let rho0 = &rho0 / mesh.mass(&rho0);
    let energy = Energy::fokker_planck(0.05, Potential::quadratic(vec![0.5; d], 5.0))
        .freeze(&mesh, &rho0)
        .expect("energy");
    let problem = JkoStep::new(&mesh, &rho0, 0.5, &energy).expect("step");
    let solver = fixed_epsilon(1e-2, kernel, 4 << 30);
    let t0 = Instant::now();
    let out = solver.step(&problem, None).expect("solve");
    (t0.elapsed().as_secs_f64(), out)
}

fn main() {
    let dense = !std::env::args().any(|a| a == "no-dense");
    println!(
        "load average: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!("peak RSS at start: {:.1} MiB", peak_rss_mib());
    for cells in [vec![512, 512], vec![64, 64, 64]] {
        let (t, out) = step(&cells, KernelChoice::Auto);
        println!(
            "{cells:?}: {t:.2} s, {} iterations ({:.2} ms/iteration), violation {:.1e}, peak RSS so far {:.1} MiB",
            out.info.iterations,
            1e3 * t / out.info.iterations as f64,
            out.info.primal_residual,
            peak_rss_mib()
        );
    }
    if !dense {
        return;
    }
    println!("\n| grid | kernel | time (s) | iterations | ms/iteration | dense / tensor |");
    println!("|---|---|---|---|---|---|");
    for n in [64, 128] {
        let (tt, ot) = step(&[n, n], KernelChoice::Auto);
        let (td, od) = step(&[n, n], KernelChoice::Dense);
        let diff = max_abs_diff(&ot.rho, &od.rho);
        for (name, t, o) in [("tensor", tt, &ot), ("dense", td, &od)] {
            println!(
                "| {n}x{n} | {name} | {t:.3} | {} | {:.3} | {} |",
                o.info.iterations,
                1e3 * t / o.info.iterations as f64,
                if name == "dense" {
                    format!("{:.0}x (max |rho diff| {diff:.1e})", td / tt)
                } else {
                    String::new()
                }
            );
        }
    }
}

//! Time per OU step of the newton backend on 2D 64², 128², 256² and 3D 32³ grids, with the
//! share of the linear solves (factorisation + substitution), Cholesky against LU, and the
//! conic backend at 64² for the speed ratio.
//!
//! cargo run --release -p jko-newton --example newton_timing            # the whole table
//! /usr/bin/time -v target/release/examples/newton_timing 256           # one size, for peak RSS

use jko_conic::{ConicParams, ConicSolver};
use jko_core::{Energy, JkoStep, Mesh, Potential, StepOutput, StepSolver, WarmStart};
use jko_newton::{Factorization, NewtonParams, NewtonSolver};
use std::time::Instant;

fn linear_ms(out: &StepOutput) -> f64 {
    out.info
        .notes
        .iter()
        .find_map(|n| {
            n.strip_prefix("linear solves ")?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(f64::NAN)
}

fn problem(cells: &[usize]) -> (Mesh, Energy, ndarray::Array1<f64>) {
    let d = cells.len();
    let mesh = Mesh::grid(cells, &vec![-4.0; d], &vec![4.0; d]).unwrap();
    let energy = Energy::fokker_planck(
        1.0,
        Potential::Quadratic {
            center: vec![0.0; d],
            stiffness: 1.0,
        },
    );
    let rho = mesh.sample(|x| {
        let r2: f64 = x
            .iter()
            .enumerate()
            .map(|(i, a)| (a - 0.5 + 0.2 * i as f64).powi(2))
            .sum();
        (-r2 / (2.0 * 0.6 * 0.6)).exp()
    });
    (mesh, energy, rho)
}

/// Cold first step, then `warm_steps` warm steps; returns (cold s, mean warm s, iterations, linear share).
fn run(cells: &[usize], fact: Factorization, warm_steps: usize) -> (f64, f64, Vec<usize>, f64) {
    let (mesh, energy, mut rho) = problem(cells);
    let solver = NewtonSolver::new(NewtonParams {
        factorization: fact,
        ..NewtonParams::default()
    })
    .unwrap();
    let tau = 0.05;
    let mut warm: Option<WarmStart> = None;
    let (mut cold, mut warm_time, mut lin, mut total) = (0.0, 0.0, 0.0, 0.0);
    let mut its = Vec::new();
    for step in 0..=warm_steps {
        let e = energy.freeze(&mesh, &rho).unwrap();
        let p = JkoStep::new(&mesh, &rho, tau, &e).unwrap();
        let t0 = Instant::now();
        let out = solver.step(&p, warm.as_ref()).unwrap();
        let dt = t0.elapsed().as_secs_f64();
        if step == 0 {
            cold = dt;
        } else {
            warm_time += dt;
            lin += linear_ms(&out) * 1e-3;
            total += dt;
        }
        its.push(out.info.iterations);
        warm = Some(WarmStart::from(&out));
        rho = out.rho;
    }
    (cold, warm_time / warm_steps as f64, its, lin / total)
}

fn main() {
    let only: Option<usize> = std::env::args().nth(1).and_then(|a| a.parse().ok());
    if let Some(n) = only {
        let (cold, warm, its, share) = run(&[n, n], Factorization::Cholesky, 3);
        println!(
            "{n}x{n}: cold {cold:.3} s, warm {warm:.3} s/step, iterations {its:?}, linear share {:.0}%",
            share * 100.0
        );
        return;
    }
    println!(
        "| grid | factorisation | cold step (s) | warm step (s) | Newton iterations (cold, warm...) | linear-solve share |"
    );
    println!("|---|---|---|---|---|---|");
    let cases: Vec<(Vec<usize>, Factorization)> = vec![
        (vec![64, 64], Factorization::Cholesky),
        (vec![64, 64], Factorization::Lu),
        (vec![128, 128], Factorization::Cholesky),
        (vec![128, 128], Factorization::Lu),
        (vec![256, 256], Factorization::Cholesky),
        (vec![32, 32, 32], Factorization::Cholesky),
    ];
    for (cells, fact) in cases {
        let (cold, warm, its, share) = run(&cells, fact, 3);
        println!(
            "| {} | {fact:?} | {cold:.3} | {warm:.3} | {its:?} | {:.0}% |",
            cells
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join("x"),
            share * 100.0
        );
    }
    // Conic at 64², first step of the same problem.
    let (mesh, energy, rho) = problem(&[64, 64]);
    let e = energy.freeze(&mesh, &rho).unwrap();
    let p = JkoStep::new(&mesh, &rho, 0.05, &e).unwrap();
    let conic = ConicSolver::new(ConicParams::default()).unwrap();
    let t0 = Instant::now();
    match conic.step(&p, None) {
        Ok(out) => {
            let tc = t0.elapsed().as_secs_f64();
            let newton = NewtonSolver::new(NewtonParams::default()).unwrap();
            let t1 = Instant::now();
            let cold = newton.step(&p, None).unwrap();
            let tn = t1.elapsed().as_secs_f64();
            let diff = (&cold.rho - &out.rho)
                .iter()
                .fold(0.0f64, |m, d| m.max(d.abs()))
                / out.rho.iter().cloned().fold(0.0, f64::max);
            println!(
                "conic 64x64 step: {tc:.3} s ({} IPM iterations); newton same (cold) step {tn:.3} s: ratio {:.0}x; max|drho|/max rho {diff:.1e}",
                out.info.iterations,
                tc / tn
            );
        }
        Err(err) => println!("conic 64x64 failed: {err}"),
    }
}

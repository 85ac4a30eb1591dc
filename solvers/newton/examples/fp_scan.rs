//! Newton iterations per step on the Fokker–Planck cases of data/compare/robust.toml (issue 14's
//! target: warm steps ≤ 10), 3 warm-started steps each, with each step's residual history and
//! notes. Cases: `ou-1d N τ`, `ou-2d N τ` (the `ou-2d` example: mean (1, −0.5), std (0.5, 0.8)
//! on [−5, 5]²), `ou-3d N τ` (robust/ou-3d.toml), `dw-2d N τ β` (robust/double-well-2d.toml's
//! Gaussian), or `all` for robust.toml's OU and double-well cases.
//!
//! cargo run --profile test -p jko-newton --example fp_scan -- ou-2d 128 0.1

use jko_core::{Energy, JkoStep, Mesh, Potential, StepSolver, WarmStart};
use jko_newton::{NewtonParams, NewtonSolver};
use ndarray::Array1;
use std::time::Instant;

#[path = "../tests/common/mod.rs"]
mod common;
use common::gaussian;

struct Case {
    name: String,
    mesh: Mesh,
    energy: Energy,
    rho: Array1<f64>,
    tau: f64,
}

fn quadratic(d: usize) -> Potential {
    Potential::Quadratic {
        center: vec![0.0; d],
        stiffness: 1.0,
    }
}

fn case(kind: &str, n: usize, tau: f64, beta: f64) -> Case {
    let (d, mean, std, energy): (usize, Vec<f64>, Vec<f64>, Energy) = match kind {
        "ou-1d" => (
            1,
            vec![1.0],
            vec![0.5],
            Energy::fokker_planck(1.0, quadratic(1)),
        ),
        "ou-2d" => (
            2,
            vec![1.0, -0.5],
            vec![0.5, 0.8],
            Energy::fokker_planck(1.0, quadratic(2)),
        ),
        "ou-2d-centred" => (
            2,
            vec![0.0, 0.0],
            vec![0.5, 0.5],
            Energy::fokker_planck(1.0, quadratic(2)),
        ),
        "ou-3d" => (
            3,
            vec![1.0, -0.5, 0.5],
            vec![0.6, 0.8, 1.0],
            Energy::fokker_planck(1.0, quadratic(3)),
        ),
        "dw-2d" => (
            2,
            vec![0.3, -0.2],
            vec![0.6, 0.6],
            Energy::fokker_planck(beta, Potential::DoubleWell),
        ),
        _ => panic!("unknown case {kind}"),
    };
    let (lo, hi) = if kind == "dw-2d" {
        (-2.5, 2.5)
    } else {
        (-5.0, 5.0)
    };
    let mesh = Mesh::grid(&vec![n; d], &vec![lo; d], &vec![hi; d]).unwrap();
    let rho = gaussian(&mesh, &mean, &std, 1.0);
    let name = if kind == "dw-2d" {
        format!("{kind} {n} τ {tau} β {beta}")
    } else {
        format!("{kind} {n} τ {tau}")
    };
    Case {
        name,
        mesh,
        energy,
        rho,
        tau,
    }
}

fn run(c: Case, verbose: bool) -> Vec<usize> {
    let solver = NewtonSolver::new(NewtonParams::default()).unwrap();
    let mut warm: Option<WarmStart> = None;
    let mut its = Vec::new();
    let mut rho = c.rho;
    let t0 = Instant::now();
    for step in 0..3 {
        let e = c.energy.freeze(&c.mesh, &rho).unwrap();
        let p = JkoStep::new(&c.mesh, &rho, c.tau, &e).unwrap();
        let out = match solver.step(&p, warm.as_ref()) {
            Ok(o) => o,
            Err(err) => {
                println!("{} step {step}: FAILED {err}", c.name);
                its.push(usize::MAX);
                return its;
            }
        };
        if verbose {
            let h: Vec<String> = out
                .info
                .history
                .iter()
                .map(|v| format!("{v:.0e}"))
                .collect();
            println!(
                "{} step {step}: {} it; notes {:?}; history {}",
                c.name,
                out.info.iterations,
                out.info.notes,
                h.join(" ")
            );
        }
        its.push(out.info.iterations);
        warm = Some(WarmStart::from(&out));
        rho = out.rho;
    }
    println!(
        "{}: iterations {its:?} ({:.2} s)",
        c.name,
        t0.elapsed().as_secs_f64()
    );
    its
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let verbose = args.iter().any(|a| a == "-v");
    let args: Vec<&str> = args
        .iter()
        .map(|s| s.as_str())
        .filter(|a| *a != "-v")
        .collect();
    if args.first() == Some(&"all") {
        let mut cases = Vec::new();
        for &(sizes, tau) in &[
            (&[256usize, 1024, 4096, 16384][..], 0.01),
            (&[256, 1000, 1024, 4096, 16384][..], 0.1),
            (&[256, 1024, 4096, 16384][..], 0.5),
            (&[256, 1024, 4096, 16384][..], 1.0),
        ] {
            for &n in sizes {
                cases.push(("ou-1d", n, tau, 1.0));
            }
        }
        for &tau in &[0.1, 1.0] {
            for n in [64, 128] {
                cases.push(("ou-2d", n, tau, 1.0));
            }
        }
        cases.push(("dw-2d", 64, 0.1, 0.2));
        cases.push(("dw-2d", 64, 0.1, 0.1));
        if args.get(1) == Some(&"3d") {
            cases.push(("ou-3d", 24, 0.1, 1.0));
        }
        for (k, n, tau, beta) in cases {
            run(case(k, n, tau, beta), verbose);
        }
        return;
    }
    let kind = args.first().copied().unwrap_or("ou-2d");
    let n: usize = args.get(1).map_or(64, |s| s.parse().unwrap());
    let tau: f64 = args.get(2).map_or(0.1, |s| s.parse().unwrap());
    let beta: f64 = args.get(3).map_or(0.2, |s| s.parse().unwrap());
    run(case(kind, n, tau, beta), verbose);
}

//! Where the time of one conic JKO step goes, for growing 1D and 2D OU problems.
//! `cargo run --release -p jko-conic --example conic_timing [-- --levels L]`
//!
//! With `--levels L`, the multi-level scheme (docs/mathematics.md §2.2) with L time levels on the 2D grids
//! 32² and 64² only (peak memory: run the binary under `/usr/bin/time -v`).
//!
//! Columns: cells, linear solver, build (assembling the conic program), Clarabel setup
//! (presolve, equilibration, symbolic KKT analysis), Clarabel iterations, iteration count,
//! time per iteration, and the parts of the iterations spent refactoring the KKT matrix
//! ("kkt update") and in triangular solves with iterative refinement ("kkt solve").

use jko_conic::{ConicParams, ConicSolver, DirectSolver};
use jko_core::{JkoStep, shape_label};

#[path = "../benches/support/ou.rs"]
mod ou;
use ou::ou_problem;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let levels = match args.iter().position(|a| a == "--levels") {
        Some(i) => Some(
            args.get(i + 1)
                .ok_or("--levels needs a number")?
                .parse::<usize>()?,
        ),
        None => None,
    };
    // Clarabel's phases are what is timed: no Newton start from ρⁿ.
    let auto = ConicSolver::new(ConicParams {
        levels,
        newton_start: false,
        ..ConicParams::default()
    })?;
    let qdldl = ConicSolver::new(ConicParams {
        direct_solver: DirectSolver::Qdldl,
        levels,
        newton_start: false,
        ..ConicParams::default()
    })?;
    if let Some(l) = levels {
        println!("multi-level scheme, {l} levels");
    }
    println!(
        "{:>9} {:>6} {:>9} {:>9} {:>9} {:>5} {:>9} {:>9} {:>9} {:>13}",
        "cells",
        "solver",
        "build s",
        "setup s",
        "iter s",
        "it",
        "ms/it",
        "factor s",
        "solve s",
        "status"
    );
    let all = [
        (vec![256], &auto),
        (vec![1024], &auto),
        (vec![4096], &auto),
        (vec![32, 32], &auto),
        (vec![32, 32], &qdldl),
        (vec![64, 64], &auto),
        (vec![64, 64], &qdldl),
        (vec![128, 128], &auto),
    ];
    let runs: Vec<_> = match levels {
        None => all.into_iter().collect(),
        Some(_) => vec![(vec![32, 32], &auto), (vec![64, 64], &auto)],
    };
    for (cells, solver) in runs {
        let (mesh, rho, e) = ou_problem(&cells)?;
        let p = JkoStep::new(&mesh, &rho, 0.1, &e)?;
        let (out, _, t) = solver.step_full(&p, None)?;
        let fmt = |v: Option<f64>| v.map_or("-".to_string(), |s| format!("{s:.4}"));
        println!(
            "{:>9} {:>6} {:>9.4} {:>9.4} {:>9.4} {:>5} {:>9.3} {:>9} {:>9} {:>13}",
            shape_label(&cells),
            // DirectSolver::Auto: QDLDL in 1D and up to 10⁴ cells, faer above.
            if cells.len() == 1
                || mesh.n_cells() <= 10_000
                || solver.params().direct_solver == DirectSolver::Qdldl
            {
                "qdldl"
            } else {
                "faer"
            },
            t.build,
            t.clarabel.setup,
            t.clarabel.solve,
            t.iterations,
            1e3 * t.clarabel.solve / t.iterations.max(1) as f64,
            fmt(t.clarabel.kkt_update),
            fmt(t.clarabel.kkt_solve),
            format!("{:?}", out.info.status),
        );
    }
    Ok(())
}

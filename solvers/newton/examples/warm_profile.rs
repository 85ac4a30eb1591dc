//! Many warm steps of peer_compare's OU 2D case (the second step, warm from the first), for
//! `perf record` / callgrind and for A/B timing of the warm path:
//!
//! ```text
//! warm_profile [cells per side, 64] [steps, 400] [file for the density]
//! ```
//!
//! Prints the minimum and median wall time of a warm step, its iterations, and a checksum of the
//! density (to see that an A/B pair computes the same answer).

use jko_core::{JkoStep, StepSolver, WarmStart};
use jko_newton::{NewtonParams, NewtonSolver};
use std::time::Instant;

#[path = "../../conic/examples/peer/mod.rs"]
#[allow(dead_code)]
mod peer;

/// CPU time of this thread in seconds (Linux: /proc/thread-self/schedstat), NaN elsewhere.
fn thread_cpu() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |ns| ns * 1e-9)
}

fn main() -> Result<(), peer::Error> {
    let args: Vec<String> = std::env::args().collect();
    let side: usize = args.get(1).map_or(Ok(64), |s| s.parse())?;
    let steps: usize = args.get(2).map_or(Ok(400), |s| s.parse())?;
    let case = peer::ou("ou-2d", &[side, side], 0.1)?;
    let newton = NewtonSolver::new(NewtonParams {
        tol: 1e-8,
        ..NewtonParams::default()
    })?;
    let e0 = case.energy.freeze(&case.mesh, &case.rho)?;
    let first = newton.step(&JkoStep::new(&case.mesh, &case.rho, case.tau, &e0)?, None)?;
    let warm = WarmStart::from(&first);
    let e1 = case.energy.freeze(&case.mesh, &first.rho)?;
    let step = JkoStep::new(&case.mesh, &first.rho, case.tau, &e1)?;
    let mut times = Vec::with_capacity(steps);
    let mut cpu = Vec::with_capacity(steps);
    let mut last = None;
    for _ in 0..steps {
        let (t, c) = (Instant::now(), thread_cpu());
        let out = newton.step(&step, Some(&warm))?;
        times.push(t.elapsed().as_secs_f64());
        cpu.push(thread_cpu() - c);
        last = Some(out);
    }
    times.sort_by(f64::total_cmp);
    // The thread's CPU clock ticks coarsely (4 ms on the shared machine): its mean over the
    // steps is exact, a single step's value is not.
    let cpu_mean = cpu.iter().sum::<f64>() / steps as f64;
    let out = last.ok_or("no step")?;
    let sum: f64 = out.rho.iter().sum();
    let sq: f64 = out.rho.iter().map(|v| v * v).sum();
    println!(
        "{side}²: warm step min {:.3} ms, median {:.3} ms (CPU mean {:.3} ms), {} iterations; Σρ {sum:.17e} Σρ² {sq:.17e}",
        times[0] * 1e3,
        times[steps / 2] * 1e3,
        cpu_mean * 1e3,
        out.info.iterations
    );
    println!("  history {:?}", out.info.history);
    // A third argument: write the density there, one value a line (to compare two builds).
    if let Some(path) = args.get(3) {
        let text: Vec<String> = out.rho.iter().map(|v| format!("{v:.17e}")).collect();
        std::fs::write(path, text.join("\n"))?;
    }
    for n in &out.info.notes {
        println!("  {n}");
    }
    Ok(())
}

//! newton beside our `conic` and the CVXPY + Clarabel program of the same discrete problem
//! (`benches/peers/tpfa_cvxpy.py`), interleaved in one run at one tolerance: the time of a cold
//! and of a warm step, the ratios, and the agreement of the answers.
//!
//! ```text
//! scripts/setup-peers.sh      # once: .venv-peers with cvxpy and clarabel
//! cargo run --release -p jko-newton --example peer_compare -- [--tol 1e-8] [--repeats 1]
//!     [--cases ou-2d-64,ou-2d-128,porous-m2-2d-64] [--no-conic] [--dir target/peer-compare]
//! ```
//!
//! Each case takes one step from ρ⁰ (newton, untimed) and times the *second* step, from ρ¹:
//! newton cold (no warm start), newton warm (the first step's potential), conic cold (Clarabel
//! at tol_gap_abs = tol_gap_rel = tol_feas = tol, then its polish), conic warm (its polish from
//! its own first step), the same two for the conic without its Newton start
//! (`ConicParams::newton_start = false`: Clarabel alone, the conic issue 14's "≥ 20× faster than
//! our conic" was set against before round 7 gave the conic newton's iterate as its start) and
//! the peer (CVXPY build + `Problem.solve` at the same tol, as it reports them; Python start-up
//! not counted). The problem goes to the peer as a
//! `jko_conic::StepFile`, bit-identical. Repeats alternate the solvers; the best time is kept.
//! The agreement is max|Δρ| / max ρ.

use jko_conic::{ConicParams, ConicSolver, StepFile};
use jko_core::{JkoStep, StepOutput, StepSolver, WarmStart};
use jko_newton::{NewtonParams, NewtonSolver};
use std::path::PathBuf;
use std::time::Instant;

// The cases, the peer's command line and the agreement measure are the conic comparison's own.
#[path = "../../conic/examples/peer/mod.rs"]
mod peer;
use peer::{Error, flag, ou, porous, relative_distance, run_peer};

/// Time one step; keep the best time over the repeats and the last output.
fn timed(
    best: &mut f64,
    f: impl FnOnce() -> Result<StepOutput, jko_core::StepError>,
) -> Result<StepOutput, Error> {
    let start = Instant::now();
    let out = f()?;
    *best = best.min(start.elapsed().as_secs_f64());
    Ok(out)
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let tol: f64 = flag(&args, "--tol").unwrap_or("1e-8").parse()?;
    let repeats: usize = flag(&args, "--repeats").unwrap_or("1").parse()?;
    let with_conic = !args.iter().any(|a| a == "--no-conic");
    let dir = PathBuf::from(flag(&args, "--dir").unwrap_or("target/peer-compare"));
    let only: Vec<&str> = flag(&args, "--cases")
        .unwrap_or("ou-2d-64,porous-m2-2d-64")
        .split(',')
        .collect();
    std::fs::create_dir_all(&dir)?;
    let newton = NewtonSolver::new(NewtonParams {
        tol,
        ..NewtonParams::default()
    })?;
    let conic_params = ConicParams {
        tol_gap_abs: tol,
        tol_gap_rel: tol,
        tol_feas: tol,
        max_iter: 400,
        ..ConicParams::default()
    };
    // The same conic without newton's iterate as its start.
    let plain = ConicSolver::new(ConicParams {
        newton_start: false,
        ..conic_params.clone()
    })?;
    let conic = ConicSolver::new(conic_params)?;
    let all = [
        ou("ou-2d-64", &[64, 64], 0.1)?,
        ou("ou-2d-128", &[128, 128], 0.1)?,
        porous("porous-m2-2d-64", &[64, 64], 2.0)?,
        porous("porous-m2-2d-128", &[128, 128], 2.0)?,
    ];
    println!("tolerance {tol:e} everywhere; the second step of each case; best of {repeats}");
    println!(
        "| case | cells | newton cold s (it) | newton warm s (it) | conic cold s | conic warm s | conic w/o Newton start cold s | warm s | cvxpy s (status, it) | cvxpy/newton cold | cvxpy/newton warm | conic/newton cold | conic/newton warm | conic w/o Newton start / newton cold | warm | Δρ newton–cvxpy | Δρ newton–conic | Δρ newton–conic w/o Newton start |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for case in all.iter().filter(|c| only.contains(&c.name)) {
        let first_energy = case.energy.freeze(&case.mesh, &case.rho)?;
        let first = JkoStep::new(&case.mesh, &case.rho, case.tau, &first_energy)?;
        let newton_first = newton.step(&first, None)?;
        let rho1 = newton_first.rho.clone();
        let newton_warm = WarmStart::from(&newton_first);
        let conic_warm = if with_conic {
            Some((
                WarmStart::from(&conic.step(&first, None)?),
                WarmStart::from(&plain.step(&first, None)?),
            ))
        } else {
            None
        };
        let energy = case.energy.freeze(&case.mesh, &rho1)?;
        let step = JkoStep::new(&case.mesh, &rho1, case.tau, &energy)?;
        let file = dir.join(format!("{}.json", case.name));
        StepFile::from_step(&step).write(&file)?;
        let out_file = dir.join(format!("{}-cvxpy.json", case.name));
        let mut t = [f64::INFINITY; 7];
        let mut last = None;
        for _ in 0..repeats {
            let cold = timed(&mut t[0], || newton.step(&step, None))?;
            let warm = timed(&mut t[1], || newton.step(&step, Some(&newton_warm)))?;
            let conic_out = match &conic_warm {
                Some((w, wp)) => {
                    let c = timed(&mut t[2], || conic.step(&step, None))?;
                    timed(&mut t[3], || conic.step(&step, Some(w)))?;
                    let cp = timed(&mut t[5], || plain.step(&step, None))?;
                    timed(&mut t[6], || plain.step(&step, Some(wp)))?;
                    Some((c, cp))
                }
                None => None,
            };
            let peer = run_peer(&file, &out_file, tol, None, false)?;
            t[4] = t[4].min(peer.build_time + peer.solve_time);
            last = Some((cold, warm, conic_out, peer));
        }
        let (cold, warm, conic_out, peer) = last.ok_or("no repeat ran")?;
        let away = |c: &StepOutput| relative_distance(&cold.rho, c.rho.as_slice().unwrap_or(&[]));
        let (dc, dp) = conic_out
            .as_ref()
            .map_or((f64::NAN, f64::NAN), |(c, cp)| (away(c), away(cp)));
        println!(
            "| {} | {} | {:.3} ({}) | {:.3} ({}) | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} ({}, {}) | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1e} | {:.1e} | {:.1e} |",
            case.name,
            case.mesh.n_cells(),
            t[0],
            cold.info.iterations,
            t[1],
            warm.info.iterations,
            t[2],
            t[3],
            t[5],
            t[6],
            t[4],
            peer.status,
            peer.iterations,
            t[4] / t[0],
            t[4] / t[1],
            t[2] / t[0],
            t[3] / t[1],
            t[5] / t[0],
            t[6] / t[1],
            relative_distance(&cold.rho, &peer.rho),
            dc,
            dp,
        );
    }
    Ok(())
}

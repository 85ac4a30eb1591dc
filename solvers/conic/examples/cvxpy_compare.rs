//! The conic backend beside the CVXPY + Clarabel program of the same discrete problem
//! (`benches/peers/tpfa_cvxpy.py`), interleaved in one run: time per step, the ratio, and the
//! agreement of the two answers.
//!
//! ```text
//! scripts/setup-peers.sh      # once: .venv-peers with cvxpy and clarabel
//! cargo run --release -p jko-conic --example cvxpy_compare -- [--tol 1e-8] [--repeats 3]
//!     [--ours-tol TOL|default] [--polish-tol 1e-9] [--agree-tol 1e-12] [--cases ou-1d-1024,ou-2d-64,...]
//!     [--peer-direct qdldl|faer] [--ours-direct qdldl|faer] [--newton-start on|off]
//!     [--restrict on|off]
//!     [--steps K] [--dir target/cvxpy-compare]
//! ```
//!
//! Every case writes its step problem as JSON (`jko_conic::StepFile`) into `--dir`, solves it
//! with our backend, Clarabel at `--ours-tol` (tol_gap_abs = tol_gap_rel = tol_feas; default
//! `--tol`, `default` = the backend's defaults) then the polish, and runs the peer on the same
//! file at `--tol`; repeats alternate ours and the peer. Our time
//! is the whole step (assembly, Clarabel, recovery); the peer's is `Problem.solve` (CVXPY's
//! canonicalisation, Clarabel, unpacking) plus building its expressions, as the peer reports
//! them (Python start-up and imports are not counted). The agreement is max|Δρ| / max ρ, against
//! the timed peer run and against one more (untimed) peer run at `--agree-tol` with the peer's
//! `--refine` (tight iterative refinement): Clarabel's duality-gap tolerance 1e-8 leaves the
//! peer's ρ off by up to ~1e-5 of its peak (its answer moves that much between 1e-8 and 1e-10),
//! while ours is polished to a KKT residual of 1e-9.
//! With `--steps K` each case runs K steps instead: ours warm-started from its previous step
//! (as the driver does), the peer cold on each step's problem (same ρⁿ), totals compared.

use jko_conic::{ConicParams, ConicSolver, StepFile};
use jko_core::{JkoStep, Mesh, WarmStart};
use ndarray::Array1;
use std::path::{Path, PathBuf};
use std::time::Instant;

mod peer;
use peer::{Case, Error, flag, ou, porous, relative_distance, run_peer};

fn cases() -> Result<Vec<Case>, Error> {
    Ok(vec![
        ou("ou-1d-1024", &[1024], 0.1)?,
        ou("ou-2d-64", &[64, 64], 0.1)?,
        ou("ou-2d-128", &[128, 128], 0.1)?,
        porous("porous-m2-1d-400", &[400], 2.0)?,
        porous("porous-m3-1d-400", &[400], 3.0)?,
        porous("porous-m2-2d-64", &[64, 64], 2.0)?,
        porous("porous-m3-2d-64", &[64, 64], 3.0)?,
        porous("porous-m2-2d-128", &[128, 128], 2.0)?,
        porous("porous-m3-2d-128", &[128, 128], 3.0)?,
    ])
}

/// The step's objective F_h(ρ) + Σ_σ G²/(2τ T θ) at a point (ρ, G), θ = (ρ_K + ρ_L)/2; faces
/// with θ ≤ 0 add nothing (the peer returns ρ = 0 exactly on empty cells).
fn step_objective(step: &JkoStep<'_>, rho: &[f64], flux: &[f64]) -> f64 {
    let r = Array1::from(rho.iter().map(|&x| x.max(0.0)).collect::<Vec<_>>());
    let kinetic: f64 = step
        .mesh
        .faces()
        .iter()
        .zip(flux)
        .map(|(f, g)| {
            let theta = 0.5 * (r[f.k] + r[f.l]);
            if theta > 0.0 {
                g * g / (f.transmissibility() * theta)
            } else {
                0.0
            }
        })
        .sum();
    step.energy.value(step.mesh, &r) + kinetic / (2.0 * step.tau)
}

/// max_K ||K|(ρ_K − ρⁿ_K) + Σ_σ ±G_σ| / mass.
fn continuity_residual(mesh: &Mesh, prev: &Array1<f64>, rho: &[f64], flux: &[f64]) -> f64 {
    let mut r: Vec<f64> = mesh
        .volumes()
        .iter()
        .zip(prev.iter().zip(rho))
        .map(|(v, (p, r))| v * (r - p))
        .collect();
    for (f, g) in mesh.faces().iter().zip(flux) {
        r[f.k] += g;
        r[f.l] -= g;
    }
    r.iter().fold(0.0f64, |a, x| a.max(x.abs())) / mesh.mass(prev)
}

/// `steps` steps from the case's ρ⁰: ours with the driver's warm start (the previous step's ρ
/// and φ), the peer cold on each step's problem written from our ρⁿ. Prints one table row.
fn trajectory(
    case: &Case,
    steps: usize,
    solver: &ConicSolver,
    dir: &Path,
    tol: f64,
    direct: Option<&str>,
) -> Result<(), Error> {
    let mut rho = case.rho.clone();
    let mut warm: Option<WarmStart> = None;
    let (mut ours_total, mut peer_total, mut worst) = (0.0, 0.0, 0.0f64);
    let mut per_step = Vec::new();
    for n in 0..steps {
        let frozen = case.energy.freeze(&case.mesh, &rho)?;
        let step = JkoStep::new(&case.mesh, &rho, case.tau, &frozen)?;
        let file = dir.join(format!("{}-step{n}.json", case.name));
        StepFile::from_step(&step).write(&file)?;
        let start = Instant::now();
        let (out, _, timing) = solver.step_full(&step, warm.as_ref())?;
        let ours = start.elapsed().as_secs_f64();
        ours_total += ours;
        let peer = run_peer(
            &file,
            &dir.join(format!("{}-cvxpy.json", case.name)),
            tol,
            direct,
            false,
        )?;
        peer_total += peer.build_time + peer.solve_time;
        worst = worst.max(relative_distance(&out.rho, &peer.rho));
        let kind = if timing.iterations == 0 {
            "newton"
        } else {
            "ipm+newton"
        };
        per_step.push(format!(
            "{ours:.3} / {} {kind} / {:?}",
            out.info.iterations, out.info.status
        ));
        warm = Some(WarmStart::from(&out));
        rho = out.rho;
    }
    println!(
        "| {} | {} | {ours_total:.3} | {} | {peer_total:.3} | {:.2} | {worst:.1e} |",
        case.name,
        case.mesh.n_cells(),
        per_step.join("; "),
        peer_total / ours_total
    );
    Ok(())
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let tol: f64 = flag(&args, "--tol").unwrap_or("1e-8").parse()?;
    let agree_tol: f64 = flag(&args, "--agree-tol").unwrap_or("1e-12").parse()?;
    let repeats: usize = flag(&args, "--repeats").unwrap_or("1").parse()?;
    let direct = flag(&args, "--peer-direct");
    let dir = PathBuf::from(flag(&args, "--dir").unwrap_or("target/cvxpy-compare"));
    let only: Option<Vec<&str>> = flag(&args, "--cases").map(|c| c.split(',').collect());
    std::fs::create_dir_all(&dir)?;
    // Our interior point's tolerance: `--tol` unless `--ours-tol` is given (`default`: the
    // backend's defaults, Clarabel at 1e-6 then the polish to a KKT residual of 1e-9).
    let ours_params = match flag(&args, "--ours-tol") {
        Some("default") => ConicParams::default(),
        other => {
            let t: f64 = other.map(str::parse).transpose()?.unwrap_or(tol);
            ConicParams {
                tol_gap_abs: t,
                tol_gap_rel: t,
                tol_feas: t,
                max_iter: 400,
                ..ConicParams::default()
            }
        }
    };
    let ours_params = ConicParams {
        polish_tol: flag(&args, "--polish-tol")
            .map(str::parse)
            .transpose()?
            .unwrap_or(ours_params.polish_tol),
        ..ours_params
    };
    let ours_params = ConicParams {
        direct_solver: match flag(&args, "--ours-direct") {
            Some("qdldl") => jko_conic::DirectSolver::Qdldl,
            Some("faer") => jko_conic::DirectSolver::Faer,
            _ => ours_params.direct_solver,
        },
        newton_start: flag(&args, "--newton-start") != Some("off"),
        restrict_support: flag(&args, "--restrict") != Some("off"),
        ..ours_params
    };
    let ours_tol = ours_params.tol_gap_rel;
    let solver = ConicSolver::new(ours_params)?;
    println!(
        "peer tolerance {tol:e}; ours: Clarabel at {ours_tol:e}, polish to {:e}; peer direct solver {}",
        solver.params().polish_tol,
        direct.unwrap_or("default (qdldl)")
    );
    println!(
        "| case | cells | conic s | ipm s (setup+solve) | polish s | status | ipm it + newton | cvxpy s (build + solve) | clarabel-in-cvxpy s | status | it | ratio | ratio clarabel-only | max|Δρ|/max ρ | same, peer at {agree_tol:e} |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let steps: usize = flag(&args, "--steps").unwrap_or("1").parse()?;
    if steps > 1 {
        println!(
            "\n{steps} steps of a run: ours warm-started from the previous step (the driver's \
             WarmStart), the peer cold on every step (CVXPY + Clarabel have no warm start), both \
             on the same ρⁿ (ours)"
        );
        println!(
            "| case | cells | conic s total | per step: s / newton-or-ipm it / status | cvxpy s total | ratio | max over steps of max|Δρ|/max ρ |"
        );
        println!("|---|---|---|---|---|---|---|");
    }
    for case in cases()? {
        if only.as_ref().is_some_and(|o| !o.contains(&case.name)) {
            continue;
        }
        if steps > 1 {
            trajectory(&case, steps, &solver, &dir, tol, direct)?;
            continue;
        }
        let frozen = case.energy.freeze(&case.mesh, &case.rho)?;
        let step = JkoStep::new(&case.mesh, &case.rho, case.tau, &frozen)?;
        let file = dir.join(format!("{}.json", case.name));
        StepFile::from_step(&step).write(&file)?;
        let out_file = dir.join(format!("{}-cvxpy.json", case.name));
        let (mut ours_best, mut peer_best, mut peer_solver_best) =
            (f64::INFINITY, f64::INFINITY, f64::INFINITY);
        let mut last = None;
        let mut ours_timing = None;
        for _ in 0..repeats {
            let start = Instant::now();
            let (out, _, timing) = solver.step_full(&step, None)?;
            let elapsed = start.elapsed().as_secs_f64();
            if elapsed < ours_best {
                ours_best = elapsed;
                ours_timing = Some(timing);
            }
            let peer = run_peer(&file, &out_file, tol, direct, false)?;
            peer_best = peer_best.min(peer.build_time + peer.solve_time);
            peer_solver_best = peer_solver_best.min(peer.solver_time);
            last = Some((out, peer));
        }
        let (out, peer) = last.ok_or("no repeat ran")?;
        // Our ρ beside the peer's, for comparisons with other peer settings.
        std::fs::write(
            dir.join(format!("{}-ours.json", case.name)),
            serde_json::json!({ "rho": out.rho.to_vec() }).to_string(),
        )?;
        let timing = ours_timing.ok_or("no repeat ran")?;
        let ipm = timing.clarabel.setup + timing.clarabel.solve;
        let diff = relative_distance(&out.rho, &peer.rho);
        let tight_file = dir.join(format!("{}-cvxpy-tight.json", case.name));
        let tight = run_peer(&file, &tight_file, agree_tol, direct, true)?;
        let tight_diff = relative_distance(&out.rho, &tight.rho);
        // Which side limits the agreement: both points are compared on the same objective (the
        // peer's recomputed in numpy from its ρ and G), the peer's checked for feasibility.
        let objective_gap = (step_objective(&step, &tight.rho, &tight.flux) - out.info.objective)
            / out.info.objective.abs();
        let continuity = continuity_residual(&case.mesh, &case.rho, &tight.rho, &tight.flux);
        println!(
            "| {} | {} | {:.3} | {:.3} | {:.3} | {:?} | {} + {} | {:.3} | {:.3} | {} | {} | {:.2} | {} | {:.1e} | {:.1e} ({}) |",
            case.name,
            case.mesh.n_cells(),
            ours_best,
            ipm,
            timing.polish,
            out.info.status,
            timing.iterations,
            out.info.iterations - timing.iterations,
            peer_best,
            peer_solver_best,
            peer.status,
            peer.iterations,
            peer_best / ours_best,
            if ipm > 0.0 {
                format!("{:.2}", peer_solver_best / ipm)
            } else {
                "– (no interior point)".to_string()
            },
            diff,
            tight_diff,
            tight.status
        );
        println!(
            "    {}: objective J(peer at {agree_tol:e}) − J(ours) = {objective_gap:.2e} relative; \
             peer continuity residual {continuity:.1e} of the mass; ours: {}",
            case.name,
            out.info.notes.join("; ")
        );
    }
    Ok(())
}

//! The conic backend beside the CVXPY + Clarabel program of the same discrete problem
//! (`benches/peers/tpfa_cvxpy.py`), interleaved in one run: time per step, the ratio, and the
//! agreement of the two answers.
//!
//! ```text
//! scripts/setup-peers.sh      # once: .venv-peers with cvxpy and clarabel
//! cargo run --release -p jko-conic --example cvxpy_compare -- [--tol 1e-8] [--repeats 3]
//!     [--agree-tol 1e-10] [--cases ou-1d-1024,ou-2d-64,...] [--peer-direct qdldl|faer]
//!     [--dir target/cvxpy-compare]
//! ```
//!
//! Every case writes its step problem as JSON (`jko_conic::StepFile`) into `--dir`, solves it
//! with our backend at tolerance `--tol` (tol_gap_abs = tol_gap_rel = tol_feas) and runs the
//! peer on the same file at the same tolerances; repeats alternate ours and the peer. Our time
//! is the whole step (assembly, Clarabel, recovery); the peer's is `Problem.solve` (CVXPY's
//! canonicalisation, Clarabel, unpacking) plus building its expressions, as the peer reports
//! them (Python start-up and imports are not counted). The agreement is max|Δρ| / max ρ, against
//! the timed peer run and against one more (untimed) peer run at `--agree-tol`: Clarabel's
//! duality-gap tolerance 1e-8 leaves the peer's ρ off by up to ~1e-5 of its peak (its answer
//! moves that much between 1e-8 and 1e-10), while ours is polished to a KKT residual of 1e-9.

use jko_conic::{ConicParams, ConicSolver, PeerSolution, StepFile};
use jko_core::exact::{Barenblatt, Gaussian};
use jko_core::{Energy, JkoStep, Mesh, Potential, StepSolver};
use ndarray::Array1;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// A named step problem: mesh, ρⁿ, τ, energy.
struct Case {
    name: &'static str,
    mesh: Mesh,
    rho: Array1<f64>,
    tau: f64,
    energy: Energy,
}

fn normalised(mesh: &Mesh, f: impl Fn(&[f64]) -> f64) -> Array1<f64> {
    let rho = mesh.sample(f);
    let m = mesh.mass(&rho);
    rho / m
}

fn ou(name: &'static str, cells: &[usize], tau: f64) -> Result<Case, Box<dyn std::error::Error>> {
    let d = cells.len();
    // data/examples/ou-1d.toml and ou-2d.toml: [-5, 5]^d, mean (1, −0.5), std (0.5, 0.8).
    let (mean, std) = ([1.0, -0.5], [0.5, 0.8]);
    let mesh = Mesh::grid(cells, &vec![-5.0; d], &vec![5.0; d])?;
    let g = Gaussian::diagonal(&mean[..d], &std[..d]);
    let rho = normalised(&mesh, |x| g.density(x));
    let energy = Energy::fokker_planck(
        1.0,
        Potential::Quadratic {
            center: vec![0.0; d],
            stiffness: 1.0,
        },
    );
    Ok(Case {
        name,
        mesh,
        rho,
        tau,
        energy,
    })
}

/// data/compare/robust/porous-m{m}-{d}d.toml: Barenblatt at t0 = 0.05 on [-2, 2] (1D) or
/// [-1.5, 1.5]² (2D), τ = 0.01.
fn porous(name: &'static str, cells: &[usize], m: f64) -> Result<Case, Box<dyn std::error::Error>> {
    let d = cells.len();
    let half = if d == 1 { 2.0 } else { 1.5 };
    let mesh = Mesh::grid(cells, &vec![-half; d], &vec![half; d])?;
    let b = Barenblatt::new(m, d, 1.0)?;
    let rho = normalised(&mesh, |x| b.density(0.05, x));
    let energy = Energy {
        porous: Some(m),
        ..Energy::default()
    };
    Ok(Case {
        name,
        mesh,
        rho,
        tau: 0.01,
        energy,
    })
}

fn cases() -> Result<Vec<Case>, Box<dyn std::error::Error>> {
    Ok(vec![
        ou("ou-1d-1024", &[1024], 0.1)?,
        ou("ou-2d-64", &[64, 64], 0.1)?,
        ou("ou-2d-128", &[128, 128], 0.1)?,
        porous("porous-m2-1d-400", &[400], 2.0)?,
        porous("porous-m3-1d-400", &[400], 3.0)?,
        porous("porous-m2-2d-64", &[64, 64], 2.0)?,
        porous("porous-m3-2d-64", &[64, 64], 3.0)?,
    ])
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn run_peer(
    file: &Path,
    out: &Path,
    tol: f64,
    direct: Option<&str>,
) -> Result<PeerSolution, Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv-peers/bin/python");
    if !python.exists() {
        return Err("no .venv-peers: run scripts/setup-peers.sh first".into());
    }
    let mut cmd = Command::new(python);
    cmd.arg(root.join("benches/peers/tpfa_cvxpy.py"))
        .arg(file)
        .args(["--tol", &tol.to_string(), "--max-iter", "400", "--out"])
        .arg(out);
    if let Some(d) = direct {
        cmd.args(["--direct", d]);
    }
    let _ = std::fs::remove_file(out);
    let run = cmd.output()?;
    // The peer exits with 1 for any status but "optimal" and still writes its solution when it
    // has one; the status is printed in the table.
    if !out.exists() {
        return Err(format!(
            "peer failed on {}: {}{}",
            file.display(),
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        )
        .into());
    }
    Ok(PeerSolution::read(out)?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let tol: f64 = flag(&args, "--tol").unwrap_or("1e-8").parse()?;
    let agree_tol: f64 = flag(&args, "--agree-tol").unwrap_or("1e-10").parse()?;
    let repeats: usize = flag(&args, "--repeats").unwrap_or("1").parse()?;
    let direct = flag(&args, "--peer-direct");
    let dir = PathBuf::from(flag(&args, "--dir").unwrap_or("target/cvxpy-compare"));
    let only: Option<Vec<&str>> = flag(&args, "--cases").map(|c| c.split(',').collect());
    std::fs::create_dir_all(&dir)?;
    let solver = ConicSolver::new(ConicParams {
        tol_gap_abs: tol,
        tol_gap_rel: tol,
        tol_feas: tol,
        max_iter: 400,
        ..ConicParams::default()
    })?;
    println!(
        "tolerance {tol:e} on both sides; peer direct solver {}",
        direct.unwrap_or("default (qdldl)")
    );
    println!(
        "| case | cells | conic s | status | it | cvxpy s (build + solve) | clarabel-in-cvxpy s | status | it | ratio | max|Δρ|/max ρ | same, peer at {agree_tol:e} |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for case in cases()? {
        if only.as_ref().is_some_and(|o| !o.contains(&case.name)) {
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
        for _ in 0..repeats {
            let start = Instant::now();
            let out = solver.step(&step, None)?;
            ours_best = ours_best.min(start.elapsed().as_secs_f64());
            let peer = run_peer(&file, &out_file, tol, direct)?;
            peer_best = peer_best.min(peer.build_time + peer.solve_time);
            peer_solver_best = peer_solver_best.min(peer.solver_time);
            last = Some((out, peer));
        }
        let (out, peer) = last.ok_or("no repeat ran")?;
        let max = out.rho.iter().fold(0.0f64, |a, &r| a.max(r));
        let distance = |other: &[f64]| {
            out.rho
                .iter()
                .zip(other)
                .fold(0.0f64, |a, (x, y)| a.max((x - y).abs()))
        };
        let diff = distance(&peer.rho);
        let tight_file = dir.join(format!("{}-cvxpy-tight.json", case.name));
        let tight = run_peer(&file, &tight_file, agree_tol, direct)?;
        let tight_diff = distance(&tight.rho);
        println!(
            "| {} | {} | {:.3} | {:?} | {} | {:.3} | {:.3} | {} | {} | {:.2} | {:.1e} | {:.1e} ({}) |",
            case.name,
            case.mesh.n_cells(),
            ours_best,
            out.info.status,
            out.info.iterations,
            peer_best,
            peer_solver_best,
            peer.status,
            peer.iterations,
            peer_best / ours_best,
            diff / max,
            tight_diff / max,
            tight.status
        );
    }
    Ok(())
}

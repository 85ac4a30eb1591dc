//! What the two comparisons with the CVXPY + Clarabel peer (`benches/peers/tpfa_cvxpy.py`)
//! share: this crate's `cvxpy_compare` and jko-newton's `peer_compare` (which includes this
//! file by path). Both pose the same step problems (OU as in data/examples, Barenblatt as in
//! data/compare/robust), send them to the same script through a `jko_conic::StepFile`, read its
//! `PeerSolution` back and score the agreement the same way, so a change to the peer's command
//! line, its cases or the agreement measure is made here once.

use jko_conic::PeerSolution;
use jko_core::exact::{Barenblatt, Gaussian};
use jko_core::{Energy, Mesh};
use ndarray::Array1;
use std::path::Path;
use std::process::Command;

pub type Error = Box<dyn std::error::Error>;

/// A named step problem: mesh, ρⁿ, τ, energy.
pub struct Case {
    pub name: &'static str,
    pub mesh: Mesh,
    pub rho: Array1<f64>,
    pub tau: f64,
    pub energy: Energy,
}

fn normalised(mesh: &Mesh, f: impl Fn(&[f64]) -> f64) -> Array1<f64> {
    let rho = mesh.sample(f);
    let m = mesh.mass(&rho);
    rho / m
}

/// data/examples/ou-1d.toml and ou-2d.toml: [-5, 5]^d, mean (1, −0.5), std (0.5, 0.8), β = 1,
/// V = |x|²/2.
pub fn ou(name: &'static str, cells: &[usize], tau: f64) -> Result<Case, Error> {
    let d = cells.len();
    let (mean, std) = ([1.0, -0.5], [0.5, 0.8]);
    let mesh = Mesh::grid(cells, &vec![-5.0; d], &vec![5.0; d])?;
    let g = Gaussian::diagonal(&mean[..d], &std[..d]);
    let rho = normalised(&mesh, |x| g.density(x));
    let energy = Energy::ornstein_uhlenbeck(d);
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
pub fn porous(name: &'static str, cells: &[usize], m: f64) -> Result<Case, Error> {
    let d = cells.len();
    let half = if d == 1 { 2.0 } else { 1.5 };
    let mesh = Mesh::grid(cells, &vec![-half; d], &vec![half; d])?;
    let b = Barenblatt::new(m, d, 1.0)?;
    let rho = normalised(&mesh, |x| b.density(0.05, x));
    let energy = Energy::porous_medium(m);
    Ok(Case {
        name,
        mesh,
        rho,
        tau: 0.01,
        energy,
    })
}

/// The value after `name` on the command line.
pub fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// Run the peer on the step problem `file` at tolerance `tol` (its `--direct` solver if given,
/// its tight iterative refinement with `refine`) and read the solution it writes to `out`.
pub fn run_peer(
    file: &Path,
    out: &Path,
    tol: f64,
    direct: Option<&str>,
    refine: bool,
) -> Result<PeerSolution, Error> {
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
    if refine {
        cmd.arg("--refine");
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

/// max|ours − other| / max ours: the agreement of two answers on the same discrete problem.
pub fn relative_distance(ours: &Array1<f64>, other: &[f64]) -> f64 {
    let peak = ours.iter().fold(0.0f64, |a, &r| a.max(r));
    let diff = ours
        .iter()
        .zip(other)
        .fold(0.0f64, |a, (x, y)| a.max((x - y).abs()));
    diff / peak
}

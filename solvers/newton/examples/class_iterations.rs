//! Newton iterations per step on the robustness matrix's hardest case of each iteration target
//! (issue 14): crowd-2d at 64² (congestion, 3 steps τ = 0.2), porous m = 3 from a Barenblatt
//! profile in 2D at 64² (data/compare/robust/porous-m3-2d.toml: 3 steps τ = 0.01; `porous-raw`:
//! the same profile without normalising its samples to mass 1) and the
//! narrow Gaussian on 1000 cells (Fokker–Planck, data/compare/robust/narrow-1d.toml: 3 steps
//! τ = 0.05; `double-well`: data/compare/robust/double-well-1d.toml; `double-well-2d`: issue 14's
//! 2D double well). Each step is warm-started from the previous one, as `jko run` does.
//! Named only (not in the default run): `fp-scan`, data/compare/robust.toml's Fokker–Planck
//! cases (OU 1D, 2D, the 2D double well; issue 14's target: warm steps ≤ 10), and `fp KIND N
//! τ [β]`, one of them (KIND: ou-1d, ou-2d — the `ou-2d` example's Gaussian —, ou-2d-centred,
//! ou-3d — robust/ou-3d.toml —, dw-2d — robust/double-well-2d.toml's Gaussian, β default 0.2).
//!
//! cargo run --profile test -p jko-newton --example class_iterations [crowd|crowd32|porous|porous-raw|porous2|double-well|double-well-2d|double-well-2d-robust|narrow|fp-scan]
//! cargo run --profile test -p jko-newton --example class_iterations fp ou-2d 128 0.1

use jko_core::{Energy, JkoStep, Mesh, Potential, StepSolver, WarmStart};
use jko_newton::{NewtonParams, NewtonSolver};
use ndarray::Array1;
use std::time::Instant;

// The test problems (Gaussian data, crowd-2d) are the integration tests' own.
#[path = "../tests/common/mod.rs"]
mod common;
use common::{crowd_2d, gaussian};

/// data/examples/crowd-2d.toml on an n × n grid (3 steps of τ = 0.2).
fn crowd(n: usize) -> (Mesh, Energy, Array1<f64>, f64) {
    let (mesh, energy, rho) = crowd_2d(n);
    (mesh, energy, rho, 0.2)
}

/// The Barenblatt profile at t₀ = 0.05 sampled at cell centres on [−1.5, 1.5]^d, normalised to
/// mass 1 as `jko run` does (`normalise`), or the raw samples (mass 1 − 2e-3 at 64²).
fn porous(m: f64, d: usize, n: usize, normalise: bool) -> (Mesh, Energy, Array1<f64>, f64) {
    let mesh = Mesh::grid(&vec![n; d], &vec![-1.5; d], &vec![1.5; d]).unwrap();
    let b = jko_core::exact::Barenblatt::new(m, d, 1.0).unwrap();
    let mut rho = mesh.sample(|x| b.density(0.05, x));
    if normalise {
        let mass = mesh.mass(&rho);
        rho /= mass;
    }
    let energy = Energy::porous_medium(m);
    (mesh, energy, rho, 0.01)
}

fn narrow() -> (Mesh, Energy, Array1<f64>, f64) {
    let mesh = Mesh::grid(&[1000], &[-5.0], &[5.0]).unwrap();
    let energy = Energy::ornstein_uhlenbeck(1);
    let rho = gaussian(&mesh, &[0.5], &[0.1], 1.0);
    (mesh, energy, rho, 0.05)
}

fn double_well() -> (Mesh, Energy, Array1<f64>, f64) {
    let mesh = Mesh::grid(&[400], &[-2.5], &[2.5]).unwrap();
    let energy = Energy::fokker_planck(0.1, Potential::DoubleWell);
    let rho = gaussian(&mesh, &[0.2], &[0.5], 1.0);
    (mesh, energy, rho, 0.1)
}

/// The 2D double well of issue 14 (64², β = 0.1, τ = 0.1, a Gaussian between the wells), and
/// data/compare/robust/double-well-2d.toml (β = 0.2, another Gaussian) with `robust`.
fn double_well_2d(robust: bool) -> (Mesh, Energy, Array1<f64>, f64) {
    let mesh = Mesh::grid(&[64, 64], &[-2.5, -2.5], &[2.5, 2.5]).unwrap();
    let (beta, mean, std) = if robust {
        (0.2, [0.3, -0.2], [0.6, 0.6])
    } else {
        (0.1, [0.2, 0.0], [0.5, 0.5])
    };
    let energy = Energy::fokker_planck(beta, Potential::DoubleWell);
    let rho = gaussian(&mesh, &mean, &std, 1.0);
    (mesh, energy, rho, 0.1)
}

/// robust.toml's Fokker–Planck problems on n cells per axis: OU from the Gaussians of the
/// `ou-1d`/`ou-2d` examples and robust/ou-3d.toml on [−5, 5]^d, a centred one, and the 2D
/// double well of robust/double-well-2d.toml at entropy β.
fn fokker_planck(kind: &str, n: usize, tau: f64, beta: f64) -> (Mesh, Energy, Array1<f64>, f64) {
    let ou = |d: usize| Energy::ornstein_uhlenbeck(d);
    let (d, mean, std, energy): (usize, &[f64], &[f64], Energy) = match kind {
        "ou-1d" => (1, &[1.0], &[0.5], ou(1)),
        "ou-2d" => (2, &[1.0, -0.5], &[0.5, 0.8], ou(2)),
        "ou-2d-centred" => (2, &[0.0, 0.0], &[0.5, 0.5], ou(2)),
        "ou-3d" => (3, &[1.0, -0.5, 0.5], &[0.6, 0.8, 1.0], ou(3)),
        "dw-2d" => (
            2,
            &[0.3, -0.2],
            &[0.6, 0.6],
            Energy::fokker_planck(beta, Potential::DoubleWell),
        ),
        _ => panic!("unknown Fokker-Planck case {kind}"),
    };
    let half = if kind == "dw-2d" { 2.5 } else { 5.0 };
    let mesh = Mesh::grid(&vec![n; d], &vec![-half; d], &vec![half; d]).unwrap();
    let rho = gaussian(&mesh, mean, std, 1.0);
    (mesh, energy, rho, tau)
}

/// The `fp-scan` cases: (kind, cells per axis, τ, β), as in data/compare/robust.toml.
fn fp_scan() -> Vec<(&'static str, usize, f64, f64)> {
    let mut cases = Vec::new();
    for (sizes, tau) in [
        (&[256usize, 1024, 4096, 16384][..], 0.01),
        (&[256, 1000, 1024, 4096, 16384][..], 0.1),
        (&[256, 1024, 4096, 16384][..], 0.5),
        (&[256, 1024, 4096, 16384][..], 1.0),
    ] {
        cases.extend(sizes.iter().map(|&n| ("ou-1d", n, tau, 1.0)));
    }
    for tau in [0.1, 1.0] {
        cases.extend([64, 128].map(|n| ("ou-2d", n, tau, 1.0)));
    }
    cases.extend([("dw-2d", 64, 0.1, 0.2), ("dw-2d", 64, 0.1, 0.1)]);
    cases
}

fn run(what: &str, (mesh, energy, mut rho, tau): (Mesh, Energy, Array1<f64>, f64)) {
    let solver = NewtonSolver::new(NewtonParams::default()).unwrap();
    let mut warm: Option<WarmStart> = None;
    let mut its = Vec::new();
    let t0 = Instant::now();
    for step in 0..3 {
        let e = energy.freeze(&mesh, &rho).unwrap();
        let p = JkoStep::new(&mesh, &rho, tau, &e).unwrap();
        let out = match solver.step(&p, warm.as_ref()) {
            Ok(o) => o,
            Err(err) => {
                println!("{what} step {step}: FAILED {err}");
                return;
            }
        };
        let h: Vec<String> = out
            .info
            .history
            .iter()
            .map(|v| format!("{v:.0e}"))
            .collect();
        println!(
            "{what} step {step}: {} it; notes {:?}; history {}",
            out.info.iterations,
            out.info.notes,
            h.join(" ")
        );
        its.push(out.info.iterations);
        warm = Some(WarmStart::from(&out));
        rho = out.rho;
    }
    println!(
        "{what}: iterations {its:?} ({:.2} s)",
        t0.elapsed().as_secs_f64()
    );
}

fn main() {
    let which: Vec<String> = std::env::args().skip(1).collect();
    if which.first().map(String::as_str) == Some("fp") {
        let arg = |i: usize, default: f64| which.get(i).map_or(default, |s| s.parse().unwrap());
        let kind = which.get(1).map_or("ou-2d", String::as_str);
        let (n, tau, beta) = (arg(2, 64.0) as usize, arg(3, 0.1), arg(4, 0.2));
        run(
            &format!("{kind} {n} τ {tau} β {beta}"),
            fokker_planck(kind, n, tau, beta),
        );
        return;
    }
    if which.iter().any(|w| w == "fp-scan") {
        for (kind, n, tau, beta) in fp_scan() {
            run(
                &format!("{kind} {n} τ {tau} β {beta}"),
                fokker_planck(kind, n, tau, beta),
            );
        }
    }
    let want = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    if want("crowd") {
        run("crowd-2d 64²", crowd(64));
    }
    if want("crowd32") {
        run("crowd-2d 32²", crowd(32));
    }
    if want("porous") {
        run("porous m3 2d 64²", porous(3.0, 2, 64, true));
    }
    if want("porous-raw") {
        run("porous m3 2d 64² (raw samples)", porous(3.0, 2, 64, false));
    }
    if want("porous2") {
        run("porous m2 2d 64²", porous(2.0, 2, 64, true));
    }
    if want("double-well") {
        run("double well 1d 400", double_well());
    }
    if want("double-well-2d") {
        run("double well 2d 64² β 0.1", double_well_2d(false));
    }
    if want("double-well-2d-robust") {
        run("double well 2d 64² β 0.2 (robust)", double_well_2d(true));
    }
    if want("narrow") {
        run("narrow 1d 1000", narrow());
    }
}

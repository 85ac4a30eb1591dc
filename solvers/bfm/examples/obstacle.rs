//! Crowd motion beside an obstacle (issue 20): crowd-2d's problem (a Gaussian crowd of mass 10,
//! V = |x − (4, 0)|²/2, the disc of radius 1.2 at (1, 0) masked out, entropy β, optional cap)
//! stepped by bfm — `step` is called without `check_supported`, so that masked steps bfm refuses
//! (without the cap) can be measured too; with the cap bfm runs Newton and then the
//! back-and-forth finisher from Newton's map (round 14) — and, on the same masked grid, by
//! `conic` with `levels` (the multi-level Benamou–Brenier scheme, an independent method that
//! converges to the JKO step as the levels grow) and, with `SEMI=1` (no cap), by the exact
//! semi-discrete JKO step (`jko_bfm::semidiscrete_jko_step`: Laguerre cells, damped Newton,
//! certified; run on the open box with ρⁿ = 0 on the obstacle and V raised there by 60β — the
//! masked problem with V = +∞ there). Per step: status, iterations, notes, time, mass error,
//! max ρ and where; the relative L1 (Σ|K||Δρ|/10) between the answers. With `OUT=dir` it
//! writes ρⁿ (`rho0.npy`), each answer (`bfm_k.npy`, `conic_k.npy`, `semi_k.npy`), V and the
//! mask on the box for `benches/peers/jko_objective.py` (the JKO objective with an exact W²,
//! POT's LP). Round 14's measurements (docs/notes/issue-20.md) came from this example.
//!
//! `cargo run --profile test -p jko-bfm --example obstacle -- N`
//! (env `BETA` 0.1, `CAP` 0 = none, `TAU` 0.2, `STEPS` 1, `LEVELS` 4 (0: skip conic), `OUT`,
//! `BFM=0` skips bfm, `SEMI=1` adds the semi-discrete step, `NO_OBSTACLE=1` the open box,
//! `SQUARE=1` the square obstacle (0, 2) × (−1, 1) instead of the disc, `CENTER_X` and `MEAN_X`
//! move V's centre and the crowd: `NO_OBSTACLE=1 CENTER_X=8 MEAN_X=2.5` drives the crowd into
//! the straight wall x = 5, the control of round 14).
use jko_bfm::{BfmParams, BfmSolver, SemiDiscreteOptions, semidiscrete_jko_step};
use jko_conic::{ConicParams, ConicSolver};
use jko_core::exact::Gaussian;
use jko_core::{Energy, JkoStep, Mesh, Potential, StepSolver, WarmStart};
use ndarray::Array1;
use std::time::Instant;

mod common;

fn mesh(n: usize, obstacle: bool) -> Result<Mesh, Box<dyn std::error::Error>> {
    let probe = Mesh::grid(&[n, n], &[-5.0, -5.0], &[5.0, 5.0])?;
    let mask = obstacle.then(|| {
        (0..probe.n_cells())
            .map(|k| {
                let x = probe.centre(k);
                if std::env::var("SQUARE").is_ok() {
                    !(x[0] > 0.0 && x[0] < 2.0 && x[1].abs() < 1.0)
                } else {
                    (x[0] - 1.0).powi(2) + x[1].powi(2) >= 1.2 * 1.2
                }
            })
            .collect()
    });
    Ok(Mesh::masked_grid(
        &[n, n],
        &[-5.0, -5.0],
        &[5.0, 5.0],
        mask,
    )?)
}

/// The densities of `steps` steps (`None` from the first failed step on).
fn run(
    solver: &dyn StepSolver,
    mesh: &Mesh,
    energy: &Energy,
    rho0: &Array1<f64>,
    tau: f64,
    steps: usize,
) -> Vec<Option<Array1<f64>>> {
    let mut rho = rho0.clone();
    let mut warm: Option<WarmStart> = None;
    let mut out = Vec::new();
    for k in 1..=steps {
        let frozen = match energy.freeze(mesh, &rho) {
            Ok(f) => f,
            Err(e) => {
                println!("{} step {k}: {e}", solver.name());
                break;
            }
        };
        let problem = match JkoStep::new(mesh, &rho, tau, &frozen) {
            Ok(p) => p,
            Err(e) => {
                println!("{} step {k}: {e}", solver.name());
                break;
            }
        };
        let t = Instant::now();
        match solver.step(&problem, warm.as_ref()) {
            Ok(o) => {
                let secs = t.elapsed().as_secs_f64();
                let m0 = mesh.mass(&rho);
                let top = o.rho.iter().fold(0.0f64, |a, &r| a.max(r));
                let arg = o
                    .rho
                    .iter()
                    .enumerate()
                    .fold((0, 0.0f64), |a, (i, &r)| if r > a.1 { (i, r) } else { a })
                    .0;
                let c = mesh.centre(arg);
                println!(
                    "{} step {k}: {:?}, {} its, {secs:.2} s, mass err {:.1e}, max rho {top:.4} at ({:.2}, {:.2}), \
                     objective {:.5}, kinetic {:.5} | {}",
                    solver.name(),
                    o.info.status,
                    o.info.iterations,
                    (mesh.mass(&o.rho) / m0 - 1.0).abs(),
                    c[0],
                    c[1],
                    o.info.objective,
                    o.info.kinetic,
                    o.info.notes.join("; ")
                );
                warm = Some(WarmStart::from(&o));
                rho = o.rho.clone();
                out.push(Some(o.rho));
            }
            Err(e) => {
                println!(
                    "{} step {k}: FAILED after {:.2} s: {e}",
                    solver.name(),
                    t.elapsed().as_secs_f64()
                );
                break;
            }
        }
    }
    out.resize(steps, None);
    out
}

/// The semi-discrete JKO steps (Laguerre cells, damped Newton; `jko_bfm::semidiscrete_jko_step`)
/// of the masked problem, on the open box with ρⁿ = 0 on the obstacle and V raised there by
/// 60β above its largest value on the domain (so that e^{−ΔV/β} < 1e-26 of the density beside).
fn semi_steps(
    mesh: &Mesh,
    energy: &Energy,
    rho0: &Array1<f64>,
    beta: f64,
    tau: f64,
    steps: usize,
) -> Vec<Option<Array1<f64>>> {
    let Some(g) = mesh.as_grid() else {
        return vec![None; steps];
    };
    let open = Mesh::grid(&g.cells, &g.lower, &g.upper).expect("the box");
    let spread = |x: &Array1<f64>, fill: f64| {
        let mut bx = Array1::from_elem(open.n_cells(), fill);
        for (k, &i) in mesh.grid_index().iter().enumerate() {
            bx[i] = x[k];
        }
        bx
    };
    let mut rho = spread(rho0, 0.0);
    let mut out = Vec::new();
    for k in 1..=steps {
        let mut back = Array1::zeros(mesh.n_cells());
        for (m, &i) in mesh.grid_index().iter().enumerate() {
            back[m] = rho[i];
        }
        let frozen = energy.freeze(mesh, &back).expect("frozen energy");
        let v = frozen
            .potential
            .clone()
            .unwrap_or_else(|| Array1::zeros(mesh.n_cells()));
        let top = v.iter().fold(f64::NEG_INFINITY, |a, &x| a.max(x));
        let v_open = spread(&v, top + 60.0 * beta);
        let t = Instant::now();
        match semidiscrete_jko_step(
            &open,
            &rho,
            tau,
            beta,
            Some(&v_open),
            &SemiDiscreteOptions::default(),
        ) {
            Ok(s) => {
                let inside: f64 = (0..open.n_cells())
                    .filter(|&i| !mesh.grid_index().contains(&i))
                    .map(|i| s.rho[i])
                    .sum();
                println!(
                    "semi-discrete step {k}: {} Newton its, {:.2} s, certificate {:.2e}, kinetic {:.5}, mass in the obstacle {:.1e}",
                    s.iterations,
                    t.elapsed().as_secs_f64(),
                    s.certificate,
                    s.kinetic,
                    inside * open.volumes()[0]
                );
                rho = s.rho.clone();
                let mut back = Array1::zeros(mesh.n_cells());
                for (m, &i) in mesh.grid_index().iter().enumerate() {
                    back[m] = s.rho[i];
                }
                out.push(Some(back));
            }
            Err(e) => {
                println!("semi-discrete step {k}: FAILED: {e}");
                break;
            }
        }
    }
    out.resize(steps, None);
    out
}

fn write(dir: &str, name: &str, mesh: &Mesh, rho: &Array1<f64>) {
    let Some(g) = mesh.as_grid() else { return };
    let mut bx = vec![0.0; g.len()];
    for (k, &i) in mesh.grid_index().iter().enumerate() {
        bx[i] = rho[k];
    }
    let path = format!("{dir}/{name}.npy");
    if let Err(e) = ndarray_npy::write_npy(&path, &Array1::from(bx)) {
        eprintln!("{path}: {e}");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n = common::sizes_from_args(&[32])[0];
    let beta: f64 = common::env_or("BETA", 0.1);
    let cap: f64 = common::env_or("CAP", 0.0);
    let tau: f64 = common::env_or("TAU", 0.2);
    let steps: usize = common::env_or("STEPS", 1);
    let levels: usize = common::env_or("LEVELS", 4);
    let obstacle = common::env_or("NO_OBSTACLE", 0) == 0;
    let out_dir = std::env::var("OUT").ok();
    let mesh = mesh(n, obstacle)?;
    let energy = Energy {
        entropy: Some(beta),
        potential: Some(Potential::Quadratic {
            center: vec![common::env_or("CENTER_X", 4.0), 0.0],
            stiffness: 1.0,
        }),
        max_density: (cap > 0.0).then_some(cap),
        ..Energy::default()
    };
    let g = Gaussian::diagonal(&[common::env_or("MEAN_X", -2.5), 0.0], &[1.5, 1.5]);
    let rho0 = mesh.sample(|x| g.density(x));
    let rho0 = &rho0 * (10.0 / mesh.mass(&rho0));
    println!(
        "crowd {n}², beta {beta}, cap {cap}, tau {tau}, {steps} steps, obstacle {obstacle}, {} cells",
        mesh.n_cells()
    );
    let b = if common::env_or("BFM", 1) == 1 {
        run(
            &BfmSolver::new(BfmParams::default())?,
            &mesh,
            &energy,
            &rho0,
            tau,
            steps,
        )
    } else {
        vec![None; steps]
    };
    let c = if levels > 0 {
        let conic = ConicSolver::new(ConicParams {
            levels: Some(levels),
            ..ConicParams::default()
        })?;
        run(&conic, &mesh, &energy, &rho0, tau, steps)
    } else {
        vec![None; steps]
    };
    let semi = if common::env_or("SEMI", 0) == 1 && cap <= 0.0 {
        Some(semi_steps(&mesh, &energy, &rho0, beta, tau, steps))
    } else {
        None
    };
    for k in 0..steps {
        if let (Some(s), Some(y)) = (semi.as_ref().and_then(|s| s[k].as_ref()), &c[k]) {
            let d: Array1<f64> = (s - y).mapv(f64::abs);
            println!(
                "step {}: relative L1 semi-discrete vs conic({levels} levels) {:.4e}",
                k + 1,
                mesh.mass(&d) / 10.0
            );
        }
        if let (Some(x), Some(y)) = (&b[k], &c[k]) {
            let d: Array1<f64> = (x - y).mapv(f64::abs);
            println!(
                "step {}: relative L1 bfm vs conic({levels} levels) {:.4e}",
                k + 1,
                mesh.mass(&d) / 10.0
            );
        }
    }
    if let Some(dir) = out_dir {
        std::fs::create_dir_all(&dir)?;
        write(&dir, "rho0", &mesh, &rho0);
        let v = energy.freeze(&mesh, &rho0)?;
        if let Some(p) = &v.potential {
            write(&dir, "V", &mesh, p);
        }
        write(&dir, "mask", &mesh, &Array1::from_elem(mesh.n_cells(), 1.0));
        for k in 0..steps {
            if let Some(x) = &b[k] {
                write(&dir, &format!("bfm_{}", k + 1), &mesh, x);
            }
            if let Some(y) = &c[k] {
                write(&dir, &format!("conic_{}", k + 1), &mesh, y);
            }
            if let Some(z) = semi.as_ref().and_then(|s| s[k].as_ref()) {
                write(&dir, &format!("semi_{}", k + 1), &mesh, z);
            }
        }
    }
    Ok(())
}

//! Checks the backends' memory estimates ([`jko_core::StepSolver::memory_estimate`]) against
//! the measured peak resident memory of one step.
//!
//! Each case runs in a child process (this program with `--child BACKEND DIM N`), which builds
//! an OU problem (entropy + quadratic potential) on an N^DIM grid, reads its resident memory
//! (VmRSS), takes one step and reads the high-water mark (VmHWM): the step's measured peak is
//! the difference, the memory the step added on top of the mesh and densities. The estimate
//! should be above it, by at most a factor ~2. Arguments restrict the run to those backends
//! (`conic-l4` is the multi-level conic scheme with 4 levels).
//!
//! ```sh
//! cargo run --release -p jko --example memory_estimate [BACKEND...]
//! ```
//!
//! Measured (dev profile, OU problem, τ = 0.05), estimate / measured step peak:
//! conic 1D 2000–32000 cells 1.67–1.73; 2D 32²–128² 1.47–1.57; 3D 12³–24³ 1.48–1.57;
//! conic with 4 levels 1D 1000–4000 and 2D 16²–32² 1.53–1.69; newton 1D 10⁴–10⁵ 1.12–1.65,
//! 2D 64²–512² 1.45–1.86, 3D 16³–32³ 1.62–2.05; sinkhorn 2D 64²–256² 1.53–1.95, 3D 16³–32³
//! 1.60–1.85; quantile 1.01–1.57; flow 1D/2D 1.84–2.52.

use jko::backend::BackendConfig;
use jko_core::{Energy, EnergyTerm, JkoStep, Mesh};
use std::process::Command;

/// (field, KiB) from /proc/self/status.
fn status_kib(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn child(backend: &str, dim: usize, n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let mesh = Mesh::grid(&vec![n; dim], &vec![-4.0; dim], &vec![4.0; dim])?;
    let energy = Energy::ornstein_uhlenbeck(dim);
    // `conic-l4`: the multi-level conic scheme with 4 levels.
    let solver = match backend {
        "conic-l4" => BackendConfig::Conic(jko_conic::ConicParams {
            levels: Some(4),
            ..Default::default()
        }),
        name => BackendConfig::default_for(name)?,
    }
    .build()?;
    let rho0 = mesh.sample(|x| {
        (-x.iter()
            .enumerate()
            .map(|(a, v)| (v - 0.5 + 0.2 * a as f64).powi(2))
            .sum::<f64>())
        .exp()
            + 1e-3
    });
    let frozen = energy.freeze(&mesh, &rho0)?;
    let terms: Vec<EnergyTerm> = frozen.terms();
    let estimate = solver.memory_estimate(&mesh, &terms).unwrap_or(0);
    let problem = JkoStep::new(&mesh, &rho0, 0.05, &frozen)?;
    let before = status_kib("VmRSS:").ok_or("no /proc/self/status")?;
    let start = std::time::Instant::now();
    let status = match solver.solve(&problem, None) {
        Ok(out) => format!("{:?}", out.info.status),
        Err(e) => format!("error: {e}"),
    };
    let wall = start.elapsed().as_secs_f64();
    let peak = status_kib("VmHWM:").ok_or("no /proc/self/status")?;
    println!(
        "{} {} {} {:.1}",
        estimate / 1024,
        peak.saturating_sub(before),
        status.replace(' ', "_"),
        wall
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 5 && args[1] == "--child" {
        return child(&args[2], args[3].parse()?, args[4].parse()?);
    }
    // `memory_estimate BACKEND...` runs only those backends' cases.
    let only: Vec<&str> = args[1..].iter().map(|s| s.as_str()).collect();
    let cases: &[(&str, usize, &[usize])] = &[
        ("conic", 1, &[2000, 8000, 32000]),
        ("conic", 2, &[32, 64, 128]),
        ("conic", 3, &[12, 16, 24]),
        ("conic-l4", 1, &[1000, 4000]),
        ("conic-l4", 2, &[16, 32]),
        ("newton", 1, &[10000, 100000]),
        ("newton", 2, &[64, 256, 512]),
        ("newton", 3, &[16, 32]),
        ("sinkhorn", 2, &[64, 128, 256]),
        ("sinkhorn", 3, &[16, 32]),
        ("quantile", 1, &[1000, 100000]),
        ("flow", 1, &[1000, 10000]),
        ("flow", 2, &[64, 128]),
    ];
    let cases: Vec<_> = cases
        .iter()
        .filter(|c| only.is_empty() || only.contains(&c.0))
        .collect();
    println!(
        "| backend | mesh | estimate (MiB) | measured step peak (MiB) | estimate/measured | status | wall (s) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let exe = std::env::current_exe()?;
    for &&(backend, dim, sizes) in &cases {
        for &n in sizes {
            let out = Command::new(&exe)
                .args(["--child", backend, &dim.to_string(), &n.to_string()])
                .output()?;
            let text = String::from_utf8_lossy(&out.stdout);
            let f: Vec<&str> = text.split_whitespace().collect();
            if f.len() < 4 {
                println!(
                    "| {backend} | {n}^{dim} | failed: {} |",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                continue;
            }
            let est: f64 = f[0].parse::<f64>()? / 1024.0;
            let meas: f64 = f[1].parse::<f64>()? / 1024.0;
            println!(
                "| {backend} | {n}^{dim} | {est:.1} | {meas:.1} | {:.2} | {} | {} |",
                est / meas.max(1e-3),
                f[2],
                f[3]
            );
        }
    }
    Ok(())
}

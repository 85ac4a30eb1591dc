//! Runs the bfm backend on problem configs (the `[mesh]`, `[initial]`, `[energy]`, `[scheme]`
//! tables of a jko config; obstacles, masks from files and npy initial states are not read):
//! per step the status, Newton iterations, time and mass error, at the end the L1 error
//! against the exact solution when one is known (Ornstein–Uhlenbeck JKO iterates, Barenblatt).
//!
//! `cargo run --profile test -p jko-bfm --example cases -- data/compare/robust/*.toml`
//! (`BFM_CELLS=64,64` overrides the mesh size, `BFM_STEPS=n` the number of steps,
//! `BFM_NPY=path.npy` writes the last density as a flat float64 .npy file, `BFM_SPLIT=1` splits
//! the Barenblatt L1 error into bulk / edge layer / outside the exact support and prints one row;
//! `BFM_TOL`, `BFM_KRYLOV`, `BFM_LINEAR` set `tol`, `krylov_dim`, `max_linear`).
use jko_bfm::{BfmParams, BfmSolver};
use jko_core::exact::{Barenblatt, Gaussian, OrnsteinUhlenbeck};
use jko_core::{Energy, Interaction, JkoStep, Mesh, Potential, StepSolver, WarmStart};
use ndarray::Array1;
use std::time::Instant;
use toml::Value;

mod common;

fn floats(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_float().or(x.as_integer().map(|i| i as f64)).unwrap())
            .collect(),
        Value::Float(f) => vec![*f],
        Value::Integer(i) => vec![*i as f64],
        _ => panic!("not numbers: {v}"),
    }
}

fn num(v: &Value) -> f64 {
    floats(v)[0]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let solver = BfmSolver::new(BfmParams {
        krylov_dim: common::env_or("BFM_KRYLOV", 20),
        max_linear: common::env_or("BFM_LINEAR", 200),
        tol: common::env_or("BFM_TOL", 1e-9),
        ..BfmParams::default()
    })?;
    for path in std::env::args().skip(1) {
        let text = std::fs::read_to_string(&path)?;
        let cfg: Value = toml::from_str(&text)?;
        let mesh_t = &cfg["mesh"];
        let mut cells: Vec<usize> = floats(&mesh_t["cells"])
            .iter()
            .map(|&c| c as usize)
            .collect();
        if let Ok(s) = std::env::var("BFM_CELLS") {
            let c: Vec<usize> = s.split(',').map(|x| x.parse().unwrap()).collect();
            if c.len() == cells.len() {
                cells = c;
            }
        }
        let lower = floats(&mesh_t["lower"]);
        let upper = floats(&mesh_t["upper"]);
        let d = cells.len();
        let probe = Mesh::grid(&cells, &lower, &upper)?;
        let mask: Option<Vec<bool>> = mesh_t.get("obstacles").map(|obs| {
            (0..probe.n_cells())
                .map(|k| {
                    let x = probe.centre(k);
                    !obs.as_array()
                        .unwrap()
                        .iter()
                        .any(|o| match o["kind"].as_str().unwrap() {
                            "disc" => {
                                let c = floats(&o["center"]);
                                let r = num(&o["radius"]);
                                (0..d).map(|a| (x[a] - c[a]).powi(2)).sum::<f64>() < r * r
                            }
                            "box" => {
                                let lo = floats(&o["lower"]);
                                let hi = floats(&o["upper"]);
                                (0..d).all(|a| x[a] > lo[a] && x[a] < hi[a])
                            }
                            k => panic!("obstacle kind {k}"),
                        })
                })
                .collect()
        });
        let mesh = Mesh::masked_grid(&cells, &lower, &upper, mask)?;
        let init = &cfg["initial"];
        let mass0 = init.get("mass").map(num).unwrap_or(1.0);
        let kind = init["kind"].as_str().unwrap();
        let mut barenblatt = None;
        let mut gauss = None;
        let mut rho: Array1<f64> = match kind {
            "gaussian" => {
                let g = Gaussian::diagonal(&floats(&init["mean"]), &floats(&init["std"]));
                let r = mesh.sample(|x| g.density(x));
                gauss = Some(g);
                r
            }
            "barenblatt" => {
                let b = Barenblatt::new(num(&init["m"]), d, 1.0)?;
                let t0 = num(&init["t0"]);
                let r = mesh.sample(|x| b.density(t0, x));
                barenblatt = Some((b, t0));
                r
            }
            "uniform" => Array1::from_elem(mesh.n_cells(), 1.0),
            k => panic!("initial kind {k}"),
        };
        let m = mesh.mass(&rho);
        rho *= mass0 / m;
        let e = &cfg["energy"];
        let potential = e
            .get("potential")
            .map(|p| match p["kind"].as_str().unwrap() {
                "quadratic" => Potential::Quadratic {
                    center: floats(&p["center"]),
                    stiffness: num(&p["stiffness"]),
                },
                "double_well" => Potential::DoubleWell,
                "quartic" => Potential::Quartic,
                "linear" => Potential::Linear {
                    slope: {
                        let s = floats(&p["slope"]);
                        if s.len() == 1 { vec![s[0]; d] } else { s }
                    },
                },
                k => panic!("potential kind {k}"),
            });
        let energy = Energy {
            entropy: e.get("entropy").map(num),
            porous: e.get("porous").map(|p| num(&p["m"])),
            potential: potential.clone(),
            interaction: e
                .get("interaction")
                .map(|i| match i["kind"].as_str().unwrap() {
                    "quadratic" => Interaction::Quadratic {
                        strength: num(&i["strength"]),
                    },
                    "gaussian" => Interaction::Gaussian {
                        strength: num(&i["strength"]),
                        width: num(&i["width"]),
                    },
                    k => panic!("interaction kind {k}"),
                }),
            max_density: e.get("max_density").map(num),
        };
        let tau = num(&cfg["scheme"]["tau"]);
        let steps = std::env::var("BFM_STEPS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(num(&cfg["scheme"]["steps"]) as usize);
        println!("{path}: cells {cells:?}, tau {tau}, {steps} steps");
        let mut warm: Option<WarmStart> = None;
        let start = Instant::now();
        let mut failed = false;
        for n in 0..steps {
            let frozen = energy.freeze(&mesh, &rho)?;
            let t = Instant::now();
            match solver.step(&JkoStep::new(&mesh, &rho, tau, &frozen)?, warm.as_ref()) {
                Ok(out) => {
                    let mass = mesh.mass(&out.rho);
                    let slack = frozen.value(&mesh, &rho)
                        - (frozen.value(&mesh, &out.rho) + out.info.kinetic / (2.0 * tau));
                    println!(
                        "  step {}: {} its, marginal {:.1e}, {:.3} s, mass err {:.1e}, min {:.1e}, max {:.3e}, energy slack {:.2e} | {}",
                        n + 1,
                        out.info.iterations,
                        out.info.primal_residual,
                        t.elapsed().as_secs_f64(),
                        mass / mass0 - 1.0,
                        out.rho.iter().fold(f64::INFINITY, |a, &b| a.min(b)),
                        out.rho.iter().fold(0.0f64, |a, &b| a.max(b)),
                        slack,
                        out.info.notes.join("; ")
                    );
                    if let Ok(spot) = std::env::var("BFM_SPOT") {
                        let c: Vec<usize> = spot.split(',').map(|x| x.parse().unwrap()).collect();
                        for i in c[0] - 3..=c[0] + 3 {
                            let row: Vec<String> = (c[1] - 3..=c[1] + 3)
                                .map(|j| format!("{:.3e}", out.rho[i * cells[1] + j]))
                                .collect();
                            println!("    {}", row.join(" "));
                        }
                    }
                    warm = Some(WarmStart::from(&out));
                    rho = out.rho;
                }
                Err(err) => {
                    println!("  step {}: FAILED: {err}", n + 1);
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            continue;
        }
        let total = start.elapsed().as_secs_f64();
        if let Ok(out) = std::env::var("BFM_NPY") {
            ndarray_npy::write_npy(&out, &rho)?;
        }
        let l1 = |f: &dyn Fn(&[f64]) -> f64| -> f64 {
            (0..mesh.n_cells())
                .map(|k| mesh.volumes()[k] * (rho[k] - f(mesh.centre(k))).abs())
                .sum()
        };
        let ou = matches!(
            (&energy.entropy, &energy.potential, &energy.porous, &energy.max_density),
            (Some(b), Some(Potential::Quadratic { center, stiffness }), None, None)
                if *b == 1.0 && *stiffness == 1.0 && center.iter().all(|c| *c == 0.0)
        ) && energy.interaction.is_none();
        if let (true, Some(g)) = (ou, &gauss) {
            let exact = OrnsteinUhlenbeck::standard(d).jko_iterates(g, tau, steps);
            println!(
                "  L1 vs exact JKO iterate {:.3e} ({total:.2} s)",
                l1(&|x| mass0 * exact.density(x))
            );
        } else if let (Some((b, t0)), None, None, None) = (
            &barenblatt,
            &energy.potential,
            &energy.entropy,
            &energy.max_density,
        ) {
            let t1 = t0 + tau * steps as f64;
            println!(
                "  L1 vs Barenblatt at t = {t1} {:.3e} ({total:.2} s)",
                l1(&|x| mass0 * b.density(t1, x))
            );
            if std::env::var("BFM_SPLIT").is_ok() {
                // Where the error sits: the bulk (exact ≥ 0.3 max), the edge layer
                // (0 < exact < 0.3 max) and outside the exact support; and one row's profile.
                let exact: Vec<f64> = (0..mesh.n_cells())
                    .map(|k| mass0 * b.density(t1, mesh.centre(k)))
                    .collect();
                let top = exact.iter().fold(0.0f64, |a, &x| a.max(x));
                let mut parts = [0.0; 3];
                let mut signed = [0.0; 3];
                for k in 0..mesh.n_cells() {
                    let part = if exact[k] >= 0.3 * top {
                        0
                    } else if exact[k] > 0.0 {
                        1
                    } else {
                        2
                    };
                    parts[part] += mesh.volumes()[k] * (rho[k] - exact[k]).abs();
                    signed[part] += mesh.volumes()[k] * (rho[k] - exact[k]);
                }
                println!(
                    "  L1 bulk/edge/outside {:.3e} {:.3e} {:.3e}, signed {:.3e} {:.3e} {:.3e}",
                    parts[0], parts[1], parts[2], signed[0], signed[1], signed[2]
                );
                let (row, width) = if d == 2 {
                    (cells[0] / 2, cells[1])
                } else {
                    (0, cells[0])
                };
                let line: Vec<String> = (width / 2..width)
                    .map(|j| {
                        let k = row * width + j;
                        format!("{:.3}/{:.3}", rho[k], exact[k])
                    })
                    .collect();
                println!("  row {row}: {}", line.join(" "));
                let mut worst: Vec<usize> = (0..mesh.n_cells()).collect();
                worst.sort_by(|&a, &b| {
                    (rho[b] - exact[b])
                        .abs()
                        .total_cmp(&(rho[a] - exact[a]).abs())
                });
                let list: Vec<String> = worst[..12]
                    .iter()
                    .map(|&k| format!("{k}:{:.3}/{:.3}", rho[k], exact[k]))
                    .collect();
                println!("  worst cells {}", list.join(" "));
            }
        } else {
            println!("  ({total:.2} s)");
        }
    }
    Ok(())
}

//! Accuracy and cost of one surrogate step against one proximal (jko-newton) step, same τ, same
//! mesh, measured against the exact JKO step (closed form, Gaussian): the bench's setups.
//! Run: cargo run --release -p jko-flow --example step_accuracy
use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
use jko_core::{Energy, JkoStep, Mesh, StepSolver};
use jko_flow::gaussian::moment_error;
use jko_flow::{FlowParams, FlowSolver};
use jko_newton::{NewtonParams, NewtonSolver};
use ndarray::Array1;
use std::time::Instant;

fn moments(mesh: &Mesh, rho: &Array1<f64>) -> Gaussian {
    let d = mesh.dim();
    let m = mesh.mass(rho);
    let mean: Vec<f64> = (0..d)
        .map(|a| {
            (0..mesh.n_cells())
                .map(|k| mesh.volumes()[k] * rho[k] * mesh.centre(k)[a])
                .sum::<f64>()
                / m
        })
        .collect();
    let mut cov = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            cov[i * d + j] = (0..mesh.n_cells())
                .map(|k| {
                    mesh.volumes()[k]
                        * rho[k]
                        * (mesh.centre(k)[i] - mean[i])
                        * (mesh.centre(k)[j] - mean[j])
                })
                .sum::<f64>()
                / m;
        }
    }
    Gaussian { mean, cov }
}

fn time<T>(reps: usize, f: impl Fn() -> T) -> (T, f64) {
    let t0 = Instant::now();
    for _ in 1..reps {
        let _ = f();
    }
    let out = f();
    (out, t0.elapsed().as_secs_f64() / reps as f64)
}

fn main() {
    for (cells, half, steps) in [
        (vec![400usize], 5.0, 10usize),
        (vec![64, 64], 4.0, 10),
        (vec![128, 128], 4.0, 10),
    ] {
        let d = cells.len();
        let mesh = Mesh::grid(&cells, &vec![-half; d], &vec![half; d]).unwrap();
        let mean: Vec<f64> = (0..d).map(|a| if a == 0 { 0.5 } else { -0.25 }).collect();
        let g0 = Gaussian::diagonal(&mean, &vec![0.8; d]);
        let rho0 = mesh.sample(|x| g0.density(x));
        let rho0 = &rho0 / mesh.mass(&rho0);
        let e = Energy::ornstein_uhlenbeck(d).freeze(&mesh, &rho0).unwrap();
        let tau = 0.1;
        println!(
            "\nmesh {cells:?} on [-{half}, {half}]^{d}, N({mean:?}, 0.8^2 I), tau = eta = {tau}; {steps} steps (T = 1); error = |dm| + ||dS||_F vs exact JKO iterates"
        );
        let exact = OrnsteinUhlenbeck::standard(d).jko_iterates(&g0, tau, steps);
        let run = |s: &dyn StepSolver| {
            let mut rho = rho0.clone();
            let mut iters = 0;
            for _ in 0..steps {
                let p = JkoStep::new(&mesh, &rho, tau, &e).unwrap();
                let out = s.step(&p, None).unwrap();
                iters += out.info.iterations;
                rho = out.rho;
            }
            (rho, iters)
        };
        let newton = NewtonSolver::new(NewtonParams::default()).unwrap();
        let ((rn, itn), tn) = time(2, || run(&newton));
        println!(
            "  newton (one-step scheme)     : err {:.3e}  {:>5} Newton its  {:.4} s",
            moment_error(&moments(&mesh, &rn), &exact),
            itn,
            tn
        );
        for rtol in [1e-6, 1e-4, 1e-3] {
            let flow = FlowSolver::new(FlowParams {
                rtol: Some(rtol),
                ..FlowParams::default()
            })
            .unwrap();
            let ((rf, itf), tf) = time(2, || run(&flow));
            let p = JkoStep::new(&mesh, &rho0, tau, &e).unwrap();
            let note = flow.step(&p, None).unwrap().info.notes[0].clone();
            println!(
                "  flow resummed, rtol {rtol:.0e}: err {:.3e}  {:>5} substeps  {:.4} s  (speed-up {:.2}x)\n      first step: {}",
                moment_error(&moments(&mesh, &rf), &exact),
                itf,
                tf,
                tn / tf,
                note
            );
        }
    }
}

//! Convergence to an exact, non-Gaussian solution: Fokker–Planck with a linear potential on a
//! box with no-flux walls (jko_core::exact::DriftBox). The one-step scheme is first order in τ
//! and (with τ ∝ h) the L1 error at a fixed time must halve when h and τ halve.

use jko_core::exact::DriftBox;
use jko_core::{Energy, JkoStep, Mesh, Potential, StepSolver, WarmStart};
use jko_newton::{NewtonParams, NewtonSolver};

fn l1_error(exact: &DriftBox, cells: usize, steps: usize, t_end: f64) -> f64 {
    let mesh = Mesh::grid(&[cells, cells], &[0.0, 0.0], &[1.0, 1.0]).unwrap();
    let energy = Energy::fokker_planck(
        exact.beta,
        Potential::Linear {
            slope: exact.slope.clone(),
        },
    );
    let solver = NewtonSolver::new(NewtonParams::default()).unwrap();
    let tau = t_end / steps as f64;
    let mut rho = mesh.sample(|x| exact.density(0.0, x));
    let mut warm: Option<WarmStart> = None;
    for _ in 0..steps {
        let e = energy.freeze(&mesh, &rho).unwrap();
        let problem = JkoStep::new(&mesh, &rho, tau, &e).unwrap();
        let out = solver.step(&problem, warm.as_ref()).unwrap();
        warm = Some(WarmStart::from(&out));
        rho = out.rho;
    }
    let reference = mesh.sample(|x| exact.density(t_end, x));
    mesh.volumes()
        .iter()
        .zip(rho.iter().zip(&reference))
        .map(|(v, (a, b))| v * (a - b).abs())
        .sum()
}

#[test]
fn drift_box_is_first_order_in_tau_and_h() {
    let exact = DriftBox::new(
        0.2,
        vec![1.0, -0.6],
        vec![0.0, 0.0],
        vec![1.0, 1.0],
        vec![1, 1],
        vec![0.9, 0.9],
        1.0,
    )
    .unwrap();
    let t_end = 0.2;
    // h = 1/n, τ = t_end / steps = h (steps = n/5).
    let levels = [(10usize, 2usize), (20, 4), (40, 8), (80, 16)];
    let errors: Vec<f64> = levels
        .iter()
        .map(|&(n, s)| l1_error(&exact, n, s, t_end))
        .collect();
    // The initial mode must matter at t_end, otherwise the test would only see the steady state.
    let mode_left = (-exact.decay_rate(0) * t_end).exp();
    assert!(mode_left > 0.05, "mode decayed to {mode_left}");
    let orders: Vec<f64> = errors.windows(2).map(|w| (w[0] / w[1]).log2()).collect();
    println!("L1 errors {errors:?}, observed orders {orders:?}");
    for (i, &p) in orders.iter().enumerate().skip(1) {
        assert!((0.8..1.3).contains(&p), "level {i}: observed order {p}");
    }
    assert!(errors.windows(2).all(|w| w[1] < w[0]), "{errors:?}");
}

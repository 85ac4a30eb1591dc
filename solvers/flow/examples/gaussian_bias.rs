//! Implicit-bias study on Gaussian states (exact Bures–Wasserstein paths).
//! Run: CARGO_TARGET_DIR=... cargo run --release -p jko-flow --example gaussian_bias
use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
use jko_flow::gaussian::{GaussianFlow, observed_orders};

fn table(name: &str, flow: &GaussianFlow, g: &Gaussian) {
    let etas = [0.2, 0.1, 0.05, 0.025, 0.0125, 0.00625, 0.003125];
    let rows = flow
        .implicit_bias_table(g, &etas, 1.0, 1e-13)
        .expect("table");
    let orders = observed_orders(&rows);
    println!("\n{name}  (T = 1, error = |dm| + ||dS||_F against the exact JKO iterates)");
    println!(
        "{:>9} {:>5} | {:>11} {:>5} | {:>11} {:>5} | {:>11} {:>5} | {:>10} {:>10}",
        "eta",
        "steps",
        "J^eta flow",
        "ord",
        "resummed",
        "ord",
        "plain WGF",
        "ord",
        "W2 flow",
        "W2 WGF"
    );
    for (i, r) in rows.iter().enumerate() {
        let (a, b, c) = if i == 0 {
            (f64::NAN, f64::NAN, f64::NAN)
        } else {
            let o = orders[i - 1];
            (o.1, o.2, o.3)
        };
        println!(
            "{:>9.6} {:>5} | {:>11.4e} {:>5.2} | {:>11.4e} {:>5.2} | {:>11.4e} {:>5.2} | {:>10.3e} {:>10.3e}",
            r.eta, r.steps, r.err_flow, a, r.err_resummed, b, r.err_wgf, c, r.w2_flow, r.w2_wgf
        );
    }
}

fn main() {
    let ou1 = GaussianFlow::from(&OrnsteinUhlenbeck::standard(1));
    table(
        "1D OU, V = x^2/2, N(1, 0.5^2)",
        &ou1,
        &Gaussian::diagonal(&[1.0], &[0.5]),
    );
    let ou2 = GaussianFlow::from(&OrnsteinUhlenbeck::standard(2));
    let g2 = Gaussian {
        mean: vec![1.0, -0.5],
        cov: vec![0.5, 0.2, 0.2, 0.3],
    };
    table(
        "2D OU, V = |x|^2/2, m = (1, -0.5), S = [[0.5, 0.2], [0.2, 0.3]]",
        &ou2,
        &g2,
    );
    let r#gen = GaussianFlow {
        beta: 0.8,
        stiffness: 1.5,
        center: vec![0.3, -0.2],
    };
    table(
        "2D, beta = 0.8, k = 1.5, c = (0.3, -0.2), same initial state",
        &r#gen,
        &g2,
    );
    let heat = GaussianFlow::from(&OrnsteinUhlenbeck::heat(1.0, 2));
    table("2D heat (pure entropy), same initial state", &heat, &g2);
    // Batched: many initial Gaussians in parallel.
    let many: Vec<Gaussian> = (0..10_000)
        .map(|i| {
            let a = 0.3 + (i % 100) as f64 * 0.01;
            let b = 0.4 + (i / 100) as f64 * 0.01;
            Gaussian {
                mean: vec![1.0, -1.0],
                cov: vec![a, 0.1, 0.1, b],
            }
        })
        .collect();
    let t0 = std::time::Instant::now();
    let out = ou2.flow_batch(&many, jko_flow::Variant::Resummed, 0.1, 1.0, 1e-10);
    let ok = out.iter().filter(|r| r.is_ok()).count();
    println!(
        "\nbatch: {} 2D Gaussians, resummed flow to T = 1 at tol 1e-10: {:.3} s, {ok} ok",
        many.len(),
        t0.elapsed().as_secs_f64()
    );
}

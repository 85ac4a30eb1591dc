//! JKO-Flow on a 1D mesh (two-point-flux geometry) against the Gaussian closed forms.
//! Run: cargo run --release -p jko-flow --example mesh_gaussian
use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
use jko_core::{Energy, Mesh};
use jko_flow::gaussian::{GaussianFlow, moment_error};
use jko_flow::{FlowError, FlowStats, MeshFlow, Variant};
use ndarray::Array1;

fn moments(mesh: &Mesh, rho: &Array1<f64>) -> Gaussian {
    let m = mesh.mass(rho);
    let x = |k: usize| mesh.centre(k)[0];
    let mean: f64 = (0..mesh.n_cells())
        .map(|k| mesh.volumes()[k] * rho[k] * x(k))
        .sum::<f64>()
        / m;
    let var: f64 = (0..mesh.n_cells())
        .map(|k| mesh.volumes()[k] * rho[k] * (x(k) - mean).powi(2))
        .sum::<f64>()
        / m;
    Gaussian {
        mean: vec![mean],
        cov: vec![var],
    }
}

#[allow(clippy::too_many_arguments)]
fn run(
    g0: &Gaussian,
    lo: f64,
    hi: f64,
    h: f64,
    eta: f64,
    v: Variant,
    rtol: f64,
) -> Result<(Gaussian, FlowStats, f64), FlowError> {
    let n = ((hi - lo) / h).round() as usize;
    let mesh = Mesh::grid(&[n], &[lo], &[hi]).unwrap();
    let rho0 = mesh.sample(|x| g0.density(x));
    let rho0 = &rho0 / mesh.mass(&rho0);
    let e = Energy::ornstein_uhlenbeck(1).freeze(&mesh, &rho0).unwrap();
    let mut flow = MeshFlow::new(&mesh, &e, eta, v)?;
    flow.rtol = rtol;
    flow.max_substeps = 200_000;
    let t0 = std::time::Instant::now();
    let (rho, stats) = flow.integrate(&rho0, 1.0)?;
    Ok((moments(&mesh, &rho), stats, t0.elapsed().as_secs_f64()))
}

fn main() {
    let gf = GaussianFlow::from(&OrnsteinUhlenbeck::standard(1));
    println!("1D OU (V = x^2/2), T = 1; error = |dmean| + |dvar| of the mesh moments");
    for (g0, lo, hi) in [
        (Gaussian::diagonal(&[0.5], &[0.8]), -5.0, 5.0),
        (Gaussian::diagonal(&[1.0], &[0.5]), -5.0, 5.0),
    ] {
        println!(
            "\n(a) modified (J^eta_h) variant inside eta*lambda_max < 2: refinement against the Gaussian J^eta flow"
        );
        println!(
            "    initial N({}, {}^2), domain [{lo}, {hi}]",
            g0.mean[0],
            g0.cov[0].sqrt()
        );
        println!(
            "{:>7} {:>7} | {:>11} {:>11} {:>11} | {:>9} {:>6}",
            "eta", "h", "mesh-BWmod", "mesh-BWplain", "BWmod-BWplain", "eta*lmax", "steps"
        );
        for &eta in &[0.002, 0.0005] {
            let bw_mod = gf.flow(&g0, Variant::Modified, eta, 1.0, 1e-13).unwrap();
            let bw_plain = gf.plain_flow(&g0, 1.0);
            for &h in &[0.4, 0.2, 0.1, 0.05] {
                match run(&g0, lo, hi, h, eta, Variant::Modified, 1e-10) {
                    Ok((m, s, _)) => println!(
                        "{eta:>7} {h:>7} | {:>11.3e} {:>11.3e} {:>11.3e} | {:>9.3} {:>6}",
                        moment_error(&m, &bw_mod),
                        moment_error(&m, &bw_plain),
                        moment_error(&bw_mod, &bw_plain),
                        s.max_eta_lambda,
                        s.substeps
                    ),
                    Err(e) => println!(
                        "{eta:>7} {h:>7} | {}",
                        e.to_string().chars().take(150).collect::<String>()
                    ),
                }
            }
        }
        println!("\n(b) resummed variant, h = 0.01: error against the exact JKO iterates");
        println!(
            "{:>9} | {:>11} {:>5} | {:>11} {:>5} | {:>11} | {:>6} {:>8}",
            "eta", "mesh res.", "ord", "BW res.", "ord", "mesh WGF", "steps", "time s"
        );
        let wgf = run(&g0, lo, hi, 0.01, 0.0, Variant::Resummed, 1e-10).map(|r| r.0);
        let mut prev: Option<(f64, f64)> = None;
        for &eta in &[0.2f64, 0.1, 0.05, 0.025, 0.0125, 0.00625] {
            let steps = (1.0 / eta).round() as usize;
            let jko = gf.jko_iterates(&g0, eta, steps);
            let e_bw = moment_error(
                &gf.flow(&g0, Variant::Resummed, eta, 1.0, 1e-13).unwrap(),
                &jko,
            );
            let e_wgf = wgf.as_ref().map_or(f64::NAN, |w| moment_error(w, &jko));
            match run(&g0, lo, hi, 0.01, eta, Variant::Resummed, 1e-10) {
                Ok((m, s, secs)) => {
                    let e = moment_error(&m, &jko);
                    let (o1, o2) = prev.map_or((f64::NAN, f64::NAN), |p| {
                        ((p.0 / e).log2(), (p.1 / e_bw).log2())
                    });
                    println!(
                        "{eta:>9} | {e:>11.4e} {o1:>5.2} | {e_bw:>11.4e} {o2:>5.2} | {e_wgf:>11.4e} | {:>6} {secs:>8.3}",
                        s.substeps
                    );
                    prev = Some((e, e_bw));
                }
                Err(err) => {
                    println!(
                        "{eta:>9} | failed: {}",
                        err.to_string().chars().take(120).collect::<String>()
                    );
                    prev = None;
                }
            }
        }
    }
}

use super::*;
use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
use jko_core::{Energy, Potential};

fn fokker_planck(mesh: &Mesh, beta: f64, k: f64) -> StepEnergy {
    let rho = Array1::ones(mesh.n_cells());
    Energy::fokker_planck(
        beta,
        Potential::Quadratic {
            center: vec![0.0; mesh.dim()],
            stiffness: k,
        },
    )
    .freeze(mesh, &rho)
    .unwrap()
}

fn gaussian_on(mesh: &Mesh, g: &Gaussian) -> Array1<f64> {
    let rho = mesh.sample(|x| g.density(x));
    let mass = mesh.mass(&rho);
    rho / mass
}

#[test]
fn modified_potential_is_the_derivative_of_the_discrete_modified_energy() {
    // φ = ∂J^η_h/∂u_K, checked by central differences of J_h − (η/4)Φ, in 1D and on a 2D grid,
    // with entropy + potential and with porous medium + potential.
    let meshes = [
        Mesh::grid(&[12], &[-2.0], &[2.5]).unwrap(),
        Mesh::grid(&[5, 4], &[-1.0, -1.0], &[1.5, 1.0]).unwrap(),
    ];
    for mesh in &meshes {
        let mut energies = vec![fokker_planck(mesh, 0.7, 1.3)];
        let mut por = fokker_planck(mesh, 0.7, 1.3);
        por.entropy = None;
        por.porous = Some(2.5);
        energies.push(por);
        for e in &energies {
            let flow = MeshFlow::new(mesh, e, 0.3, Variant::Modified).unwrap();
            let rho =
                mesh.sample(|x| 1.0 + 0.5 * (2.0 * x[0]).sin() + 0.3 * x.iter().sum::<f64>().cos());
            let ev = flow.evaluate(rho.as_slice().unwrap()).unwrap().unwrap();
            for k in 0..mesh.n_cells() {
                let v = mesh.volumes()[k];
                let eps = 1e-6;
                let mut p = rho.clone();
                p[k] += eps / v;
                let mut m = rho.clone();
                m[k] -= eps / v;
                let fd = (flow.modified_energy(&p) - flow.modified_energy(&m)) / (2.0 * eps);
                assert!(
                    (fd - ev.phi[k]).abs() < 1e-6 * (1.0 + fd.abs()),
                    "cell {k}: fd {fd} vs {}",
                    ev.phi[k]
                );
            }
        }
    }
}

#[test]
fn stability_limit_is_enforced_and_named() {
    // Uniform density, entropy β: λ_max = 4dβ/h² exactly (Gershgorin of a uniform Laplacian).
    let mesh = Mesh::grid(&[20, 20], &[0.0, 0.0], &[1.0, 1.0]).unwrap();
    let e = StepEnergy {
        entropy: Some(0.5),
        porous: None,
        potential: None,
        max_density: None,
        interaction_frozen: false,
    };
    let rho = Array1::ones(mesh.n_cells());
    let h: f64 = 0.05;
    let flow = MeshFlow::new(&mesh, &e, 0.01, Variant::Modified).unwrap();
    let lambda = flow.lambda_max(rho.as_slice().unwrap());
    assert!(
        (lambda - 4.0 * 2.0 * 0.5 / (h * h)).abs() < 1e-9 * lambda,
        "{lambda}"
    );
    // η λ = 0.01 · 1600 = 16 ≥ 2: refused with a message naming the limit.
    let err = flow.integrate(&rho, 0.01).unwrap_err();
    assert!(matches!(err, FlowError::StabilityLimit { .. }));
    assert!(err.to_string().contains("eta*lambda_max < 2"), "{err}");
    // Inside the limit (η λ = 1.6) it runs; the resummed variant runs beyond it.
    let ok = MeshFlow::new(&mesh, &e, 0.001, Variant::Modified).unwrap();
    assert!(ok.integrate(&rho, 0.001).is_ok());
    let res = MeshFlow::new(&mesh, &e, 0.01, Variant::Resummed).unwrap();
    assert!(res.integrate(&rho, 0.01).is_ok());
}

fn test_energies(mesh: &Mesh) -> Vec<StepEnergy> {
    let mut es = vec![fokker_planck(mesh, 0.7, 1.3)];
    let mut por = fokker_planck(mesh, 0.7, 1.3);
    por.entropy = None;
    por.porous = Some(2.5);
    es.push(por);
    es
}

#[test]
fn hessian_maps_the_gradient_to_the_gradient_of_half_the_fisher_information() {
    // Riemannian identity Hess J[grad J] = grad ½|grad J|²: Ĥψ = ½ Lχ, exactly.
    for mesh in [
        Mesh::grid(&[12], &[-2.0], &[2.5]).unwrap(),
        Mesh::grid(&[5, 4], &[-1.0, -1.0], &[1.5, 1.0]).unwrap(),
    ] {
        for e in test_energies(&mesh) {
            let flow = MeshFlow::new(&mesh, &e, 0.3, Variant::Resummed).unwrap();
            let rho =
                mesh.sample(|x| 1.0 + 0.5 * (2.0 * x[0]).sin() + 0.3 * x.iter().sum::<f64>().cos());
            let r = rho.as_slice().unwrap();
            let psi = flow.psi(r);
            let w: Vec<f64> = mesh
                .faces()
                .iter()
                .zip(&flow.trans)
                .map(|(f, t)| t * 0.5 * (r[f.k] + r[f.l]))
                .collect();
            let fr = flow.frame(r, &psi, w.clone());
            let g = flow.laplacian(&w, &psi);
            let lchi = flow.laplacian(&w, &flow.chi(r, &psi, &g));
            let hpsi = flow.hessian_apply(&fr, &psi);
            let scale = lchi.iter().map(|x| x.abs()).fold(0.0, f64::max);
            for k in 0..mesh.n_cells() {
                assert!(
                    (hpsi[k] - 0.5 * lchi[k]).abs() < 1e-11 * scale,
                    "cell {k}: {} vs {}",
                    hpsi[k],
                    0.5 * lchi[k]
                );
            }
        }
    }
}

#[test]
fn hessian_form_is_the_second_derivative_along_geodesics() {
    // φᵀĤφ = d²/dt² J_h(γ(t)) at 0 for the geodesic u̇ = −L(u)φ, φ̇ = ½ ∂_u(φᵀL(u)φ).
    // Second-order Taylor of γ, central differences in t.
    for mesh in [
        Mesh::grid(&[9], &[-2.0], &[2.5]).unwrap(),
        Mesh::grid(&[4, 3], &[-1.0, -1.0], &[1.5, 1.0]).unwrap(),
    ] {
        for e in test_energies(&mesh) {
            let flow = MeshFlow::new(&mesh, &e, 0.3, Variant::Resummed).unwrap();
            let rho =
                mesh.sample(|x| 1.0 + 0.5 * (2.0 * x[0]).sin() + 0.3 * x.iter().sum::<f64>().cos());
            let r = rho.as_slice().unwrap();
            let phi =
                mesh.sample(|x| (1.3 * x[0]).cos() + 0.2 * x.iter().map(|a| a * a).sum::<f64>());
            let vols = mesh.volumes();
            let w = |r: &[f64]| -> Vec<f64> {
                mesh.faces()
                    .iter()
                    .zip(&flow.trans)
                    .map(|(f, t)| t * 0.5 * (r[f.k] + r[f.l]))
                    .collect()
            };
            let p = phi.as_slice().unwrap();
            // u̇ = −L(u)φ; ü = −L(u̇)φ − L(u)φ̇ with L(u̇) the Laplacian with weights T θ(ρ̇).
            let udot: Vec<f64> = flow.laplacian(&w(r), p).iter().map(|x| -x).collect();
            let rdot: Vec<f64> = udot.iter().zip(vols).map(|(a, v)| a / v).collect();
            let mut phidot = vec![0.0; r.len()];
            for (s, f) in mesh.faces().iter().enumerate() {
                let q = flow.trans[s] * (p[f.l] - p[f.k]).powi(2) / 4.0;
                phidot[f.k] += q / vols[f.k];
                phidot[f.l] += q / vols[f.l];
            }
            let a1 = flow.laplacian(&w(&rdot), p);
            let a2 = flow.laplacian(&w(r), &phidot);
            let uddot: Vec<f64> = a1.iter().zip(&a2).map(|(x, y)| -x - y).collect();
            let at = |t: f64| -> f64 {
                let rt = Array1::from_iter(
                    (0..r.len()).map(|k| r[k] + (t * udot[k] + 0.5 * t * t * uddot[k]) / vols[k]),
                );
                flow.energy(&rt)
            };
            let eps = 1e-3;
            let fd = (at(eps) - 2.0 * at(0.0) + at(-eps)) / (eps * eps);
            let psi = flow.psi(r);
            let fr = flow.frame(r, &psi, w(r));
            let form: f64 = flow
                .hessian_apply(&fr, p)
                .iter()
                .zip(p)
                .map(|(a, b)| a * b)
                .sum();
            assert!(
                (fd - form).abs() < 1e-4 * (1.0 + form.abs()),
                "fd {fd} vs form {form}"
            );
            // Symmetry of Ĥ.
            let q2 = mesh.sample(|x| (0.7 * x[0] - 0.3).sin());
            let q2 = q2.as_slice().unwrap();
            let a: f64 = flow
                .hessian_apply(&fr, p)
                .iter()
                .zip(q2)
                .map(|(a, b)| a * b)
                .sum();
            let b: f64 = flow
                .hessian_apply(&fr, q2)
                .iter()
                .zip(p)
                .map(|(a, b)| a * b)
                .sum();
            assert!((a - b).abs() < 1e-12 * (a.abs() + b.abs() + 1.0));
        }
    }
}

#[test]
fn tridiagonal_and_cg_solves_agree() {
    // A 1D chain solved by the tridiagonal (Thomas) elimination and, with the faces listed in reverse
    // (so the mesh is not recognised as a chain), by CG on the same operator.
    let mesh = Mesh::grid(&[40], &[-3.0], &[3.0]).unwrap();
    let rev_faces: Vec<_> = mesh.faces().iter().rev().copied().collect();
    let centres: Vec<f64> = (0..mesh.n_cells())
        .flat_map(|k| mesh.centre(k).to_vec())
        .collect();
    let general = Mesh::from_parts(1, mesh.volumes().to_vec(), centres, rev_faces).unwrap();
    let e = fokker_planck(&mesh, 1.0, 1.0);
    let g = Gaussian::diagonal(&[0.5], &[0.7]);
    let rho = gaussian_on(&mesh, &g);
    let a = MeshFlow::new(&mesh, &e, 0.2, Variant::Resummed).unwrap();
    let b = MeshFlow::new(&general, &e, 0.2, Variant::Resummed).unwrap();
    assert!(a.chain && !b.chain);
    let va = a.velocity(&rho).unwrap();
    let vb = b.velocity(&rho).unwrap();
    let scale = va.iter().map(|x| x.abs()).fold(0.0, f64::max);
    for k in 0..mesh.n_cells() {
        assert!(
            (va[k] - vb[k]).abs() < 1e-8 * scale,
            "{k}: {} vs {}",
            va[k],
            vb[k]
        );
    }
    let _ = OrnsteinUhlenbeck::standard(1);
}

/// Moments (mean, variance) of a 1D mesh density as a Gaussian.
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

fn ou_on_mesh(
    h: f64,
    g0: &Gaussian,
    eta: f64,
    variant: Variant,
) -> Result<(Gaussian, FlowStats), FlowError> {
    let n = (10.0 / h).round() as usize;
    let mesh = Mesh::grid(&[n], &[-5.0], &[5.0]).unwrap();
    let rho0 = gaussian_on(&mesh, g0);
    let e = fokker_planck(&mesh, 1.0, 1.0);
    let mut flow = MeshFlow::new(&mesh, &e, eta, variant)?;
    flow.ode.rtol = 1e-10;
    flow.ode.atol = 1e-14;
    flow.ode.max_steps = 100_000;
    let (rho, stats) = flow.integrate(&rho0, 1.0)?;
    assert!((mesh.mass(&rho) - 1.0).abs() < 1e-12);
    Ok((moments(&mesh, &rho), stats))
}

#[test]
fn modified_variant_reproduces_the_gaussian_modified_flow_under_refinement() {
    // Inside η·λ_max < 2: the mesh J^η_h flow converges at O(h²) to the Bures–Wasserstein J^η
    // flow, and the η-effect measured on the mesh (modified minus plain, same mesh: the spatial
    // error cancels) matches the closed-form one.
    use crate::gaussian::{GaussianFlow, moment_error};
    let gf = GaussianFlow::from(&OrnsteinUhlenbeck::standard(1));
    let g0 = Gaussian::diagonal(&[0.5], &[0.8]);
    let eta = 0.0005;
    let bw = gf.modified_flow(&g0, eta, 1.0, 1e-13).unwrap();
    let errs: Vec<f64> = [0.2, 0.1, 0.05]
        .iter()
        .map(|&h| {
            let (m, s) = ou_on_mesh(h, &g0, eta, Variant::Modified).unwrap();
            assert!(s.max_eta_lambda < 2.0);
            moment_error(&m, &bw)
        })
        .collect();
    for w in errs.windows(2) {
        let order = (w[0] / w[1]).log2();
        assert!(
            (1.8..=2.2).contains(&order),
            "spatial order {order}: {errs:?}"
        );
    }
    let (m_mod, _) = ou_on_mesh(0.05, &g0, eta, Variant::Modified).unwrap();
    let (m_plain, _) = ou_on_mesh(0.05, &g0, 0.0, Variant::Modified).unwrap();
    let bw_plain = gf.plain_flow(&g0, 1.0);
    let mesh_effect = m_mod.cov[0] - m_plain.cov[0];
    let bw_effect = bw.cov[0] - bw_plain.cov[0];
    assert!(
        (mesh_effect - bw_effect).abs() < 0.05 * bw_effect.abs(),
        "{mesh_effect} vs {bw_effect}"
    );
    let mesh_effect = m_mod.mean[0] - m_plain.mean[0];
    let bw_effect = bw.mean[0] - bw_plain.mean[0];
    assert!(
        (mesh_effect - bw_effect).abs() < 0.05 * bw_effect.abs(),
        "{mesh_effect} vs {bw_effect}"
    );
}

#[test]
fn resummed_variant_tracks_exact_jko_iterates_at_second_order_on_a_fine_mesh() {
    // h = 0.01 on [−5, 5], N(1, 0.5²), T = 1: error against the exact (closed-form) JKO iterates.
    use crate::gaussian::{GaussianFlow, moment_error};
    let gf = GaussianFlow::from(&OrnsteinUhlenbeck::standard(1));
    let g0 = Gaussian::diagonal(&[1.0], &[0.5]);
    let errs: Vec<f64> = [0.05f64, 0.025, 0.0125]
        .iter()
        .map(|&eta| {
            let jko = gf.jko_iterates(&g0, eta, (1.0 / eta).round() as usize);
            let (m, s) = ou_on_mesh(0.01, &g0, eta, Variant::Resummed).unwrap();
            // η·λ_max ≫ 2: far beyond the limit of the modified variant.
            assert!(s.max_eta_lambda > 100.0);
            moment_error(&m, &jko)
        })
        .collect();
    for w in errs.windows(2) {
        let order = (w[0] / w[1]).log2();
        assert!((1.8..=2.2).contains(&order), "order {order}: {errs:?}");
    }
    // The plain flow on the same mesh is O(η) away.
    let jko = gf.jko_iterates(&g0, 0.0125, 80);
    let (wgf, _) = ou_on_mesh(0.01, &g0, 0.0, Variant::Resummed).unwrap();
    assert!(moment_error(&wgf, &jko) > 100.0 * errs[2]);
}

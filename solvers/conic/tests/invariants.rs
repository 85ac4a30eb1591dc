//! Invariants of single steps on 2D problems: mass, positivity, the congestion bound, the
//! JKO energy inequality and the continuity equation on masked domains.

mod common;

use common::*;
use jko_core::{Energy, JkoStep, Mesh, StepSolver};

#[test]
fn congestion_bound_becomes_active_and_holds() {
    // A blob of mass 0.2 pushed into the corner (0, 0), where it must pile up at rho_max.
    let (mesh, mut rho, energy, rho_max) = congested_disc(16);
    let s = solver();
    let mass0 = mesh.mass(&rho);
    let mut at_cap = 0;
    for step in 0..4 {
        let e = energy.freeze(&mesh, &rho).unwrap();
        let p = JkoStep::new(&mesh, &rho, 0.2, &e).unwrap();
        let out = s.step(&p, None).unwrap();
        let (lo, hi) = out
            .rho
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(a, b), &r| (a.min(r), b.max(r)));
        assert!(hi <= rho_max * (1.0 + 1e-8), "step {step}: max rho {hi}");
        assert!(lo >= 0.0, "step {step}: min rho {lo}");
        let dm = (mesh.mass(&out.rho) - mass0).abs() / mass0;
        assert!(dm < 1e-9, "step {step}: mass error {dm:.3e}");
        assert!(energy_decrease(&p, &out) < 1e-8, "step {step}");
        at_cap = saturated(&out.rho, rho_max);
        println!(
            "congestion step {step}: max {hi:.12} min {lo:.3e} mass err {dm:.2e}, {at_cap} cells at the bound, {} it",
            out.info.iterations
        );
        rho = out.rho;
    }
    assert!(
        at_cap >= 5,
        "the bound never became active ({at_cap} cells)"
    );
}

/// A disc of radius 1 with a square obstacle; Fokker–Planck towards a point behind it.
#[test]
fn masked_domain_keeps_mass_positivity_and_energy_inequality() {
    let n = 20;
    let lower = [-1.0, -1.0];
    let upper = [1.0, 1.0];
    let h = 2.0 / n as f64;
    let centre = |i: usize| -1.0 + (i as f64 + 0.5) * h;
    let mut mask = Vec::with_capacity(n * n);
    for i in 0..n {
        for j in 0..n {
            let (x, y) = (centre(i), centre(j));
            let in_disc = x * x + y * y < 1.0;
            let in_obstacle = x.abs() < 0.25 && (-0.6..-0.1).contains(&y);
            mask.push(in_disc && !in_obstacle);
        }
    }
    let mesh = Mesh::masked_grid(&[n, n], &lower, &upper, Some(mask.clone())).unwrap();
    let full = Mesh::grid(&[n, n], &lower, &upper).unwrap();
    assert!(mesh.faces().len() < full.faces().len());
    let mut rho = normalised(&mesh, 1.0, |x| {
        (-((x[0]).powi(2) + (x[1] - 0.4).powi(2)) / 0.1).exp()
    });
    let energy = Energy::fokker_planck(0.2, well(vec![0.0, -0.8], 4.0));
    let s = solver();
    let mass0 = mesh.mass(&rho);
    for step in 0..3 {
        let e = energy.freeze(&mesh, &rho).unwrap();
        let p = JkoStep::new(&mesh, &rho, 0.1, &e).unwrap();
        let out = s.step(&p, None).unwrap();
        let dm = (mesh.mass(&out.rho) - mass0).abs() / mass0;
        assert!(dm < 1e-9, "step {step}: mass error {dm:.3e}");
        assert!(out.rho.iter().all(|&r| r >= 0.0));
        let de = energy_decrease(&p, &out);
        assert!(
            de < 1e-8,
            "step {step}: energy inequality violated by {de:.3e}"
        );
        // Every face of the flux is a face of the masked mesh (none crosses a wall) and it
        // explains the change of density cell by cell.
        let g = out.flux.as_ref().unwrap();
        assert_eq!(g.len(), mesh.faces().len());
        let opt = optimality(&p, &out);
        assert!(
            opt.continuity < 1e-9,
            "step {step}: continuity residual {:.3e}",
            opt.continuity
        );
        println!(
            "masked step {step}: mass err {dm:.2e}, energy decrease {de:.3e}, continuity {:.2e}",
            opt.continuity
        );
        rho = out.rho;
    }
    // Mass went round the obstacle: cells directly below it gained density.
    let below = (0..mesh.n_cells())
        .filter(|&k| mesh.centre(k)[0].abs() < 0.25 && mesh.centre(k)[1] < -0.6)
        .map(|k| rho[k])
        .fold(0.0f64, f64::max);
    assert!(
        below > 1e-3,
        "no mass reached the region behind the obstacle ({below:.3e})"
    );
}

#[test]
fn porous_medium_with_potential_in_2d() {
    let mesh = Mesh::grid(&[16, 16], &[-1.0, -1.0], &[1.0, 1.0]).unwrap();
    let mut rho = normalised(&mesh, 1.0, |x| (0.25 - x[0] * x[0] - x[1] * x[1]).max(0.0));
    let energy = Energy {
        porous: Some(2.0),
        potential: Some(well(vec![0.4, 0.0], 2.0)),
        ..Energy::default()
    };
    let s = solver();
    let mass0 = mesh.mass(&rho);
    for step in 0..3 {
        let e = energy.freeze(&mesh, &rho).unwrap();
        let p = JkoStep::new(&mesh, &rho, 0.05, &e).unwrap();
        let out = s.step(&p, None).unwrap();
        let dm = (mesh.mass(&out.rho) - mass0).abs() / mass0;
        assert!(dm < 1e-9, "step {step}: mass error {dm:.3e}");
        assert!(out.rho.iter().all(|&r| r >= 0.0));
        let de = energy_decrease(&p, &out);
        assert!(de < 1e-8, "step {step}: {de:.3e}");
        // The step does decrease the energy strictly: the potential pulls the mass.
        assert!(de < -1e-4, "step {step}: no progress ({de:.3e})");
        let vacuum = out
            .rho
            .iter()
            .filter(|&&r| r < 1e-8 * max_abs(&out.rho))
            .count();
        println!(
            "porous 2D step {step}: mass err {dm:.2e}, energy change {de:.3e}, {vacuum} vacuum cells, {:?} {} it",
            out.info.status, out.info.iterations
        );
        assert!(vacuum > 50, "compact support lost ({vacuum} vacuum cells)");
        rho = out.rho;
    }
}

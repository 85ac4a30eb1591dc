//! Invariants of single steps on 2D problems: mass, positivity, the congestion bound, the
//! JKO energy inequality and the continuity equation on masked domains.

use crate::common::*;
use jko_core::{Energy, Mesh, Potential};

#[test]
fn congestion_bound_becomes_active_and_holds() {
    // A blob of mass 0.2 pushed into the corner (0, 0), where it must pile up at rho_max.
    let (mesh, rho, energy, rho_max) = congested_disc(16);
    let mut at_cap = 0;
    march(&solver(), (&mesh, &rho, &energy), 0.2, 4, |step, _, out| {
        let hi = out.rho.iter().fold(0.0f64, |a, &r| a.max(r));
        assert!(hi <= rho_max * (1.0 + 1e-8), "step {step}: max rho {hi}");
        at_cap = saturated(&out.rho, rho_max);
        println!(
            "congestion step {step}: max {hi:.12}, {at_cap} cells at the bound, {} it",
            out.info.iterations
        );
    });
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
    let rho = normalised(&mesh, 1.0, |x| {
        (-((x[0]).powi(2) + (x[1] - 0.4).powi(2)) / 0.1).exp()
    });
    let energy = Energy::fokker_planck(0.2, Potential::quadratic(vec![0.0, -0.8], 4.0));
    let rho = march(&solver(), (&mesh, &rho, &energy), 0.1, 3, |step, p, out| {
        // Every face of the flux is a face of the masked mesh (none crosses a wall) and it
        // explains the change of density cell by cell.
        let g = out.flux.as_ref().unwrap();
        assert_eq!(g.len(), mesh.faces().len());
        let opt = optimality(p, out);
        assert!(
            opt.continuity < 1e-9,
            "step {step}: continuity residual {:.3e}",
            opt.continuity
        );
        println!(
            "masked step {step}: energy decrease {:.3e}, continuity {:.2e}",
            energy_decrease(p, out),
            opt.continuity
        );
    });
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
    let rho = normalised(&mesh, 1.0, |x| (0.25 - x[0] * x[0] - x[1] * x[1]).max(0.0));
    let energy = Energy {
        porous: Some(2.0),
        potential: Some(Potential::quadratic(vec![0.4, 0.0], 2.0)),
        ..Energy::default()
    };
    march(
        &solver(),
        (&mesh, &rho, &energy),
        0.05,
        3,
        |step, p, out| {
            // The step does decrease the energy strictly: the potential pulls the mass.
            let de = energy_decrease(p, out);
            assert!(de < -1e-4, "step {step}: no progress ({de:.3e})");
            let vacuum = out
                .rho
                .iter()
                .filter(|&&r| r < 1e-8 * max_abs(&out.rho))
                .count();
            println!(
                "porous 2D step {step}: energy change {de:.3e}, {vacuum} vacuum cells, {:?} {} it",
                out.info.status, out.info.iterations
            );
            assert!(vacuum > 50, "compact support lost ({vacuum} vacuum cells)");
        },
    );
}

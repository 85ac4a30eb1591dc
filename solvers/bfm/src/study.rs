//! Studies (ignored tests): the authors' back-and-forth iteration as published in
//! wonjunee/wgfBFMcodes (python/BFM-porous.py with python/src/BFM.h, FLT.h), re-implemented
//! from its description in our sign convention, to measure where it converges to.
//!
//! Their iteration, per pass (φ here = −φ of their code; ψ the same):
//! - forth: ψ = φ^c, φ = ψ^c̄, shift φ for the mass (bisection to 1e-4 M), push = T#μ by
//!   μ(S(y))/det(I − τD²ψ(S(y))) (det > 0.2) else μ(S(y)) det(I + τD²φ(y)) (capped at h^{-1/2}),
//!   second differences over 2h, S(y) = y + τ∇φ(y); φ += σ (θ₁ + θ₂(−Δ))⁻¹ (push − ρ(φ − V));
//! - back: ψ = φ^c, pull = S#ρ by the mirror formula (threshold 0.99);
//!   ψ += σ (θ₁ + θ₂(−Δ))⁻¹ (μ − pull); φ = ψ^c̄;
//! - stop when the relative change of mean|u f| (either half) is below 1e-3 · mass, or after
//!   500 passes; σ = 0.05, θ₁ = 1, θ₂ = 10⁻³ on the unit square.

use crate::ascent;
use crate::ctransform::CTransform;
use crate::lattice::Lattice;
use crate::poisson::Helmholtz;

pub(crate) struct Authors<'a> {
    pub lat: &'a Lattice,
    pub tau: f64,
    pub rho: &'a dyn Fn(f64) -> f64,
    pub sigma: f64,
    pub theta: (f64, f64),
}

impl Authors<'_> {
    /// One half of a pass: target += σ (θ₁ + θ₂(−Δ))⁻¹ f; returns their error indicator mean|u f|.
    fn ascent(&self, hh: &mut Helmholtz, theta2: f64, f: &[f64], target: &mut [f64]) -> f64 {
        let mut u = f.to_vec();
        hh.solve(&mut u, self.theta.0, theta2);
        for (t, x) in target.iter_mut().zip(&u) {
            *t += self.sigma * x;
        }
        u.iter().zip(f).map(|(a, b)| (a * b).abs()).sum::<f64>() / f.len() as f64
    }

    /// Runs the iteration; `observe(pass, phi, err_forth, err_back)` after every pass.
    pub fn run(
        &self,
        mu: &[f64],
        v: &[f64],
        mass: f64,
        phi: &mut Vec<f64>,
        max_pass: usize,
        mut observe: impl FnMut(usize, &[f64], f64, f64),
    ) -> usize {
        let lat = self.lat;
        let n = lat.len;
        let w = lat.volume;
        let mut ct = CTransform::new(lat, self.tau);
        let mut hh = Helmholtz::new(lat);
        let mut psi = vec![0.0; n];
        let mut push = vec![0.0; n];
        let mut dk = Vec::new();
        let mut f = vec![0.0; n];
        let (mut prev_f, mut prev_b) = (1.0, 1.0);
        let rho = |p: &[f64], vv: &[f64]| -> Vec<f64> {
            p.iter().zip(vv).map(|(a, b)| (self.rho)(a - b)).collect()
        };
        // Unit-square scale of their θ₂: θ₂ (−Δ) on [0,1]² is θ₂ L² (−Δ) on a box of side L.
        let side = lat.shape[0] as f64 * lat.h[0];
        let theta2 = self.theta.1 * side * side;
        for pass in 0..max_pass {
            // forth
            ct.c_transform(lat, phi, |i| lat.is_active(i), false, &mut psi);
            ct.cbar_transform(lat, &psi, |i| lat.is_active(i), false, phi);
            // mass normalisation by bisection on the shift, tolerance 1e-4 M (theirs)
            let m_of = |c: f64, phi: &[f64]| -> f64 {
                w * phi
                    .iter()
                    .zip(v)
                    .map(|(a, b)| (self.rho)(a + c - b))
                    .sum::<f64>()
            };
            let mut lo = -1.0;
            let mut hi = 1.0;
            while m_of(lo, phi) > mass {
                lo *= 2.0;
            }
            while m_of(hi, phi) < mass {
                hi *= 2.0;
            }
            let mut c = 0.0;
            if (m_of(0.0, phi) - mass).abs() >= 1e-4 * mass {
                for _ in 0..20 {
                    c = 0.5 * (lo + hi);
                    let val = m_of(c, phi) - mass;
                    if val.abs() < 1e-4 {
                        break;
                    }
                    if val < 0.0 {
                        lo = c;
                    } else {
                        hi = c;
                    }
                }
            }
            phi.iter_mut().for_each(|p| *p += c);
            let r = rho(phi, v);
            ascent::push(
                lat,
                self.tau,
                mu,
                (phi, &psi),
                1.0,
                0.2,
                2,
                &mut dk,
                &mut push,
            );
            for i in 0..n {
                f[i] = push[i] - r[i];
            }
            let err_f = self.ascent(&mut hh, theta2, &f, phi);
            // back
            ct.c_transform(lat, phi, |i| lat.is_active(i), false, &mut psi);
            let r = rho(phi, v);
            ascent::push(
                lat,
                self.tau,
                &r,
                (&psi, phi),
                -1.0,
                0.99,
                2,
                &mut dk,
                &mut push,
            );
            for i in 0..n {
                f[i] = mu[i] - push[i];
            }
            let err_b = self.ascent(&mut hh, theta2, &f, &mut psi);
            ct.cbar_transform(lat, &psi, |i| lat.is_active(i), false, phi);
            observe(pass, phi, err_f, err_b);
            let e1 = ((err_f - prev_f) / prev_f).abs();
            let e2 = ((err_b - prev_b) / prev_b).abs();
            if e1.min(e2) < 1e-3 * mass && std::env::var("BFM_NOSTOP").is_err() {
                return pass + 1;
            }
            prev_f = err_f;
            prev_b = err_b;
        }
        max_pass
    }
}

/// The square grid n² on [lower, upper]², n from the environment variable BFM_N (default
/// `default_n`), and its lattice.
fn square_grid(default_n: usize, lower: f64, upper: f64) -> (jko_core::Mesh, Lattice) {
    let n: usize = std::env::var("BFM_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_n);
    let mesh = jko_core::Mesh::grid(&[n, n], &[lower; 2], &[upper; 2]).unwrap();
    let lat = Lattice::of_mesh(&mesh).unwrap();
    (mesh, lat)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};

    /// Their porous example (m = 2, three squares of mass 0.02 on [0,1]², V = |x − (0.9, 0.9)|²/2,
    /// τ = 0.1): passes, stopping rule, mass drift. `cargo test --release -p jko-bfm
    /// authors_porous -- --ignored --nocapture` (BFM_N sets the grid, default 128).
    #[test]
    #[ignore]
    fn authors_porous() {
        let (mesh, lat) = super::square_grid(128, 0.0, 1.0);
        let inside =
            |x: &[f64], c: [f64; 2]| (x[0] - c[0]).abs() < 0.1 && (x[1] - c[1]).abs() < 0.1;
        let mut mu: Vec<f64> = lat.to_box(
            &mesh.sample(|x| {
                if inside(x, [0.3, 0.3]) || inside(x, [0.3, 0.7]) || inside(x, [0.7, 0.3]) {
                    1.0
                } else {
                    0.0
                }
            }),
            0.0,
        );
        let mean = mu.iter().sum::<f64>() / mu.len() as f64;
        mu.iter_mut().for_each(|m| *m *= 0.02 / mean);
        let mass = 0.02;
        let v = lat.to_box(
            &mesh.sample(|x| ((x[0] - 0.9).powi(2) + (x[1] - 0.9).powi(2)) / 2.0),
            0.0,
        );
        let m = 2.0;
        let rho = move |p: f64| ((m - 1.0) / m * p).max(0.0).powf(1.0 / (m - 1.0));
        let a = Authors {
            lat: &lat,
            tau: 0.1,
            rho: &rho,
            sigma: 0.05,
            theta: (1.0, 0.001),
        };
        let mut phi = v.clone();
        for step in 1..=3 {
            let t0 = std::time::Instant::now();
            let passes = a.run(&mu, &v, mass, &mut phi, 500, |p, phi, ef, eb| {
                if p % 50 == 0 {
                    let m: f64 =
                        lat.volume * phi.iter().zip(&v).map(|(a, b)| rho(a - b)).sum::<f64>();
                    eprintln!(
                        "  pass {p}: errors {ef:.3e} {eb:.3e}, mass drift {:.2e}",
                        m / mass - 1.0
                    );
                }
            });
            let new: Vec<f64> = phi.iter().zip(&v).map(|(a, b)| rho(a - b)).collect();
            let m: f64 = lat.volume * new.iter().sum::<f64>();
            eprintln!(
                "step {step}: {passes} passes, {:.2} s, mass drift {:.2e}",
                t0.elapsed().as_secs_f64(),
                m / mass - 1.0
            );
            mu = new;
        }
    }

    /// The same iteration on OU 2D (entropy 1, V = |x|²/2, τ = 0.1, one step) with the preconditioner
    /// of their m = 2 code adapted (θ₁ = max dρ/dp, θ₂ = τ max μ, σ = 1): L1 of ρ(φ − V) against the
    /// exact JKO iterate along the passes. `cargo test --release -p jko-bfm authors_ou -- --ignored
    /// --nocapture` (BFM_N, default 64).
    #[test]
    #[ignore]
    fn authors_ou() {
        let (mesh, lat) = super::square_grid(64, -5.0, 5.0);
        let g0 = Gaussian::diagonal(&[1.0, -0.5], &[0.5, 0.8]);
        let g1 = OrnsteinUhlenbeck::standard(2).jko_step(&g0, 0.1);
        let mu = lat.to_box(&mesh.sample(|x| g0.density(x)), 0.0);
        let exact = lat.to_box(&mesh.sample(|x| g1.density(x)), 0.0);
        let mass = lat.volume * mu.iter().sum::<f64>();
        let v = lat.to_box(&mesh.sample(|x| 0.5 * (x[0] * x[0] + x[1] * x[1])), 0.0);
        let rho = |p: f64| (p - 1.0).exp();
        let mu_max = mu.iter().fold(0.0f64, |a, &b| a.max(b));
        let side = 10.0;
        for sigma in [1.0, 0.3] {
            let a = Authors {
                lat: &lat,
                tau: 0.1,
                rho: &rho,
                sigma,
                // θ₂ is given on the unit square: divide by side² here.
                theta: (mu_max, 0.1 * mu_max / (side * side)),
            };
            let mut phi: Vec<f64> = mu
                .iter()
                .zip(&v)
                .map(|(m, vv)| m.max(1e-300).ln() + 1.0 + vv)
                .collect();
            let passes = a.run(&mu, &v, mass, &mut phi, 500, |p, phi, ef, eb| {
                if p % 100 == 0 || p < 3 {
                    let l1: f64 = lat.volume
                        * phi
                            .iter()
                            .zip(&v)
                            .zip(&exact)
                            .map(|((a, b), e)| (rho(a - b) - mass * e).abs())
                            .sum::<f64>();
                    eprintln!("  sigma {sigma} pass {p}: errors {ef:.3e} {eb:.3e}, L1 vs exact JKO {l1:.3e}");
                }
            });
            eprintln!("sigma {sigma}: {passes} passes");
        }
    }
}

#[cfg(test)]
mod timing {
    use crate::dual::LocalDual;
    use crate::poisson::Helmholtz;
    use crate::source::{Fields, SourceGrid, SourceModel};
    use std::time::Instant;

    /// Prints the mean wall time of `reps` calls of `f`.
    fn time(label: &str, reps: usize, mut f: impl FnMut()) {
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        eprintln!(
            "{label}: {:.2} ms",
            t.elapsed().as_secs_f64() * 1e3 / reps as f64
        );
    }

    /// Time of the pieces of one Newton–Krylov iteration at 256². `cargo test --release -p
    /// jko-bfm pieces -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn pieces() {
        let (_, lat) = super::square_grid(256, -5.0, 5.0);
        let mu: Vec<f64> = (0..lat.len)
            .map(|i| {
                let c = lat.coords(i);
                let (x, y) = (lat.centre(0, c[0]), lat.centre(1, c[1]));
                (-(x - 1.0).powi(2) / 0.5 - (y + 0.5).powi(2) / 1.28).exp()
            })
            .collect();
        let v: Vec<f64> = (0..lat.len)
            .map(|i| {
                let c = lat.coords(i);
                0.5 * (lat.centre(0, c[0]).powi(2) + lat.centre(1, c[1]).powi(2))
            })
            .collect();
        let grid = SourceGrid::new(&lat, &mu);
        let model = SourceModel {
            grid: &grid,
            tau: 0.1,
            mu: &mu,
            v: &v,
            local: LocalDual::new(Some(1.0), None, None).unwrap(),
            kappa: 1.0,
            mass: 1.0,
        };
        let psi = model.cold_start();
        let mut fields = Fields::new();
        let mut r = vec![0.0; lat.len];
        let mut coef = vec![[0.0; 10]; lat.len];
        let reps = 20;
        time("evaluate with coefficients", reps, || {
            model.evaluate(&psi, &mut fields, &mut r, Some(&mut coef));
        });
        time("evaluate", reps, || {
            model.evaluate(&psi, &mut fields, &mut r, None);
        });
        let mut out = vec![0.0; lat.len];
        time("apply", reps, || {
            model.apply(&coef, &psi, &mut fields, &mut out);
        });
        let mut hh = Helmholtz::new(&lat);
        time("helmholtz", reps, || {
            hh.solve(&mut out, 1.0, 0.1);
        });
    }

    /// Time of the pieces of one back-and-forth pass (the finisher, ascent.rs) on the authors'
    /// porous example's first density (m = 2, τ = 0.1; `BFM_N` cells a side, default 128), and
    /// of whole passes. `cargo test --profile test -p jko-bfm finisher_pieces -- --ignored
    /// --nocapture`
    #[test]
    #[ignore]
    fn finisher_pieces() {
        use crate::ascent::{BackAndForth, push};
        use crate::ctransform::CTransform;
        let (_, lat) = super::square_grid(128, 0.0, 1.0);
        let tau = 0.1;
        let square = |x: f64, y: f64, c: [f64; 2]| (x - c[0]).abs() < 0.1 && (y - c[1]).abs() < 0.1;
        let mu: Vec<f64> = (0..lat.len)
            .map(|i| {
                let c = lat.coords(i);
                let (x, y) = (lat.centre(0, c[0]), lat.centre(1, c[1]));
                let inside = [[0.3, 0.3], [0.3, 0.7], [0.7, 0.3]]
                    .iter()
                    .any(|&q| square(x, y, q));
                if inside { 1.0 / 6.0 } else { 0.0 }
            })
            .collect();
        let v: Vec<f64> = (0..lat.len)
            .map(|i| {
                let c = lat.coords(i);
                0.5 * ((lat.centre(0, c[0]) - 0.9).powi(2) + (lat.centre(1, c[1]) - 0.9).powi(2))
            })
            .collect();
        let local = LocalDual::new(None, Some(2.0), None).unwrap();
        let psi0: Vec<f64> = (0..lat.len).map(|i| local.du(mu[i]) + v[i]).collect();
        let mut ct = CTransform::new(&lat, tau);
        let mut phi = Vec::new();
        ct.cbar_transform(&lat, &psi0, |i| mu[i] > 0.0, false, &mut phi);
        let reps = 20;
        let mut psi = Vec::new();
        time("c-transform", reps, || {
            ct.c_transform(&lat, &phi, |_| true, false, &mut psi);
        });
        let (mut out, mut dk) = (vec![0.0; lat.len], Vec::new());
        time("push", reps, || {
            push(&lat, tau, &mu, (&phi, &psi), 1.0, 0.2, 1, &mut dk, &mut out);
        });
        let mut hh = Helmholtz::new(&lat);
        time("helmholtz", reps, || {
            hh.solve(&mut out, 1.0, 0.1);
        });
        let pv: Vec<f64> = phi.iter().zip(&v).map(|(a, b)| a - b).collect();
        let mass = 0.02;
        time("mass shift", reps, || {
            local.mass_shift(&pv, |_| true, lat.volume, mass);
        });
        let bf = BackAndForth {
            lat: &lat,
            tau,
            local,
            mu: &mu,
            v: &v,
            mass,
        };
        let passes = 50;
        let t = Instant::now();
        let a = bf.run(phi.clone(), 0.0, passes).unwrap();
        eprintln!(
            "pass: {:.2} ms ({} passes, marginal {:.3e})",
            t.elapsed().as_secs_f64() * 1e3 / passes as f64,
            a.passes(),
            a.marginal
        );
    }
}

//! Linearly implicit (Rosenbrock–Wanner) time stepping for the flow's index-1 DAE.
//!
//! For M y' = F(y), M = diag(I, 0) (differential variables ρ, algebraic variables ζ), one step
//! of size h solves s linear systems with the same matrix W = M/(hγ) − J, J ≈ ∂F/∂y at the
//! start of the step, in the transformed form of Hairer & Wanner (Solving ODEs II, §IV.7):
//!
//!   W u_i = F(y₀ + Σ_{j<i} a_ij u_j) + M Σ_{j<i} (c_ij/h) u_j,   y₁ = y₀ + Σ m_j u_j,
//!
//! so one sparse LU factorisation serves every stage. The coefficients are those of ROS34PW2
//! (Rang & Angermann, BIT 45, 2005): four stages, order 3, stiffly accurate, L-stable, an
//! embedded order-2 solution for error control, and order conditions for index-1 DAEs and for
//! W-methods (order 2 with any approximation of J). The tableau is stored in the usual (α, Γ,
//! b, b̂) form and transformed once (a = αΓ⁻¹, c = diag(1/γ) − Γ⁻¹, m = bᵀΓ⁻¹).

/// A Rosenbrock method in transformed form.
#[derive(Debug, Clone)]
pub(crate) struct Tableau {
    pub stages: usize,
    pub gamma: f64,
    /// Y_i = y₀ + Σ_{j<i} a[i][j] u_j.
    pub a: [[f64; 4]; 4],
    /// Right-hand side term M Σ_{j<i} (c[i][j]/h) u_j.
    pub c: [[f64; 4]; 4],
    /// y₁ = y₀ + Σ m_j u_j.
    pub m: [f64; 4],
    /// Local error estimate Σ e_j u_j (solution minus embedded solution).
    pub e: [f64; 4],
    /// Order of the embedded solution (the step-size controller's exponent is 1/(this + 1)).
    pub embedded_order: usize,
}

impl Tableau {
    /// ROS34PW2 (Rang & Angermann 2005), γ = 0.435866521508459 (the L-stable root).
    pub fn ros34pw2() -> Self {
        let g = 4.358_665_215_084_59e-1;
        let alpha = [
            [0.0, 0.0, 0.0, 0.0],
            [8.717_330_430_169_18e-1, 0.0, 0.0, 0.0],
            [
                8.445_706_001_536_942e-1,
                -1.129_906_423_648_418_5e-1,
                0.0,
                0.0,
            ],
            [0.0, 0.0, 1.0, 0.0],
        ];
        let gam = [
            [g, 0.0, 0.0, 0.0],
            [-8.717_330_430_169_18e-1, g, 0.0, 0.0],
            [-9.033_805_701_304_408e-1, 5.418_067_238_809_533e-2, g, 0.0],
            [
                2.421_238_070_609_535e-1,
                -1.223_250_583_904_514_7,
                5.452_602_553_351_021e-1,
                g,
            ],
        ];
        let b = [
            2.421_238_070_609_535e-1,
            -1.223_250_583_904_514_7,
            1.545_260_255_335_102,
            g,
        ];
        let bhat = [
            3.781_090_314_581_937e-1,
            -9.604_229_221_242_318e-2,
            0.5,
            2.179_332_607_542_295e-1,
        ];
        Self::transformed(4, g, alpha, gam, b, bhat, 2)
    }

    fn transformed(
        stages: usize,
        gamma: f64,
        alpha: [[f64; 4]; 4],
        gam: [[f64; 4]; 4],
        b: [f64; 4],
        bhat: [f64; 4],
        embedded_order: usize,
    ) -> Self {
        // Γ⁻¹ by forward substitution (Γ lower triangular with diagonal γ).
        let mut inv = [[0.0; 4]; 4];
        for col in 0..stages {
            inv[col][col] = 1.0 / gam[col][col];
            for row in col + 1..stages {
                let s: f64 = (col..row).map(|k| gam[row][k] * inv[k][col]).sum();
                inv[row][col] = -s / gam[row][row];
            }
        }
        let mut a = [[0.0; 4]; 4];
        let mut c = [[0.0; 4]; 4];
        for i in 0..stages {
            for j in 0..i {
                a[i][j] = (0..stages).map(|k| alpha[i][k] * inv[k][j]).sum();
                c[i][j] = -inv[i][j];
            }
        }
        let mut m = [0.0; 4];
        let mut e = [0.0; 4];
        for j in 0..stages {
            m[j] = (0..stages).map(|k| b[k] * inv[k][j]).sum();
            e[j] = (0..stages).map(|k| (b[k] - bhat[k]) * inv[k][j]).sum();
        }
        Tableau {
            stages,
            gamma,
            a,
            c,
            m,
            e,
            embedded_order,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Integrate the index-1 DAE y' = −z, 0 = z − y² (y' = −y²; y(0) = 1, y(t) = 1/(1 + t))
    /// with constant steps, solving the 2×2 stage systems densely: order 3 with the exact
    /// Jacobian, order ≥ 2 with a frozen one (a W-method).
    fn run(steps: usize, frozen: bool) -> f64 {
        let tab = Tableau::ros34pw2();
        let h = 1.0 / steps as f64;
        let (mut y, mut z) = (1.0f64, 1.0f64);
        let f = |y: f64, z: f64| (-z, z - y * y);
        for _ in 0..steps {
            // J = [[0, −1], [−2y, 1]] (∂F/∂(y, z)); frozen: at y = 1.
            let jy = if frozen { 1.0 } else { y };
            let w = [[1.0 / (h * tab.gamma), 1.0], [2.0 * jy, -1.0]];
            let det = w[0][0] * w[1][1] - w[0][1] * w[1][0];
            let mut u = [[0.0; 2]; 4];
            for i in 0..tab.stages {
                let mut yi = (y, z);
                for (a, uj) in tab.a[i].iter().zip(&u).take(i) {
                    yi.0 += a * uj[0];
                    yi.1 += a * uj[1];
                }
                let (mut r0, r1) = f(yi.0, yi.1);
                for (c, uj) in tab.c[i].iter().zip(&u).take(i) {
                    r0 += c / h * uj[0];
                }
                u[i] = [
                    (w[1][1] * r0 - w[0][1] * r1) / det,
                    (w[0][0] * r1 - w[1][0] * r0) / det,
                ];
            }
            for (m, uj) in tab.m.iter().zip(&u).take(tab.stages) {
                y += m * uj[0];
                z += m * uj[1];
            }
        }
        (y - 0.5).abs()
    }

    #[test]
    fn ros34pw2_has_order_three_on_an_index_one_dae_and_two_as_a_w_method() {
        let exact: Vec<f64> = [10, 20, 40].iter().map(|&n| run(n, false)).collect();
        let order = (exact[1] / exact[2]).log2();
        assert!((2.8..3.4).contains(&order), "{exact:?}");
        let w: Vec<f64> = [10, 20, 40].iter().map(|&n| run(n, true)).collect();
        let order = (w[1] / w[2]).log2();
        assert!(order > 1.8, "{w:?}");
    }

    #[test]
    fn embedded_weights_differ_and_sum_conditions_hold() {
        let tab = Tableau::ros34pw2();
        // Consistency: Σ b_i = 1 in the untransformed form ⇔ Σ_j m_j (Γ 1)_j ... checked through
        // y' = 1 (F constant): y₁ − y₀ = h for the solution and 0 difference for the estimate.
        let h = 0.3;
        let mut u = [0.0; 4];
        for i in 0..4 {
            let rhs: f64 = 1.0 + (0..i).map(|j| tab.c[i][j] / h * u[j]).sum::<f64>();
            u[i] = rhs * h * tab.gamma;
        }
        let y1: f64 = (0..4).map(|j| tab.m[j] * u[j]).sum();
        let est: f64 = (0..4).map(|j| tab.e[j] * u[j]).sum();
        assert!((y1 - h).abs() < 1e-14 && est.abs() < 1e-14, "{y1} {est}");
    }
}

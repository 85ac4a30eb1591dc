"""The exact references through the bindings, checked against independent computations."""

import numpy as np

import jko


def test_ou_jko_step_solves_the_optimality_condition():
    # 1D standard OU: (s' - s)/tau + s' - 1/s' = 0 and m' = m/(1 + tau).
    tau, s = 0.1, 0.5
    mean, cov = jko.exact.ou_jko_step([1.0], s * s, tau)
    s1 = np.sqrt(cov[0, 0])
    assert abs((s1 - s) / tau + s1 - 1 / s1) < 1e-13
    assert abs(mean[0] - 1 / 1.1) < 1e-15


def test_ou_iterates_converge_to_the_flow_at_first_order():
    def err(n):
        m, c = jko.exact.ou_jko_iterates([1.0, -0.5], [0.25, 2.0], 1.0 / n, n)
        fm, fc = jko.exact.ou_flow([1.0, -0.5], [0.25, 2.0], 1.0)
        return np.abs(m - fm).sum() + np.abs(c - fc).sum()

    order = np.log2(err(50) / err(100))
    assert abs(order - 1.0) < 0.05


def test_ou_flow_closed_form():
    beta, k, t = 0.7, 2.0, 0.3
    mean, cov = jko.exact.ou_flow([1.0], [[0.2]], t, beta=beta, stiffness=k, center=[0.5])
    assert abs(mean[0] - (0.5 + 0.5 * np.exp(-k * t))) < 1e-15
    assert abs(cov[0, 0] - (beta / k + (0.2 - beta / k) * np.exp(-2 * k * t))) < 1e-15


def test_gaussian_density_integrates_to_one():
    x = np.linspace(-6, 6, 601)
    gx, gy = np.meshgrid(x, x, indexing="ij")
    pts = np.stack([gx, gy], axis=-1)
    cov = [[1.0, 0.3], [0.3, 0.5]]
    rho = jko.exact.gaussian_density([0.2, -0.1], cov, pts)
    assert rho.shape == (601, 601)
    h = x[1] - x[0]
    assert abs(rho.sum() * h * h - 1.0) < 1e-6


def test_barenblatt_has_its_mass_inside_its_support():
    m, mass, t = 2.0, 1.5, 0.2
    r = jko.exact.barenblatt_radius(m, 1, mass, t)
    x = np.linspace(-1.2 * r, 1.2 * r, 20001)
    rho = jko.exact.barenblatt(m, 1, mass, t, x)
    h = x[1] - x[0]
    assert abs(rho.sum() * h - mass) < 1e-4
    assert np.all(rho[np.abs(x) > r] == 0.0)


def test_drift_box_is_positive_with_unit_mass():
    x = np.linspace(0, 1, 2001)
    x = 0.5 * (x[1:] + x[:-1])
    rho = jko.exact.drift_box(0.5, [1.0], [0.0], [1.0], [1], [0.9], 0.0, x[:, None])
    assert rho.min() > 0
    assert abs(rho.sum() / 2000 - 1.0) < 1e-6

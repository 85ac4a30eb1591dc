"""jko.step on user-made numpy arrays: invariants, the exact OU iterate, layouts, GIL."""

import threading
import time

import numpy as np
import pytest

import jko

FP_1D = dict(entropy=1.0, potential={"kind": "quadratic", "center": [0.0], "stiffness": 1.0})


def gaussian_1d(x, mean, std):
    rho = np.exp(-0.5 * ((x - mean) / std) ** 2)
    return rho


@pytest.fixture(scope="module")
def ou_1d():
    mesh = jko.Mesh.grid([200], [-5.0], [5.0])
    x = np.linspace(-5.0, 5.0, 201)
    x = 0.5 * (x[1:] + x[:-1])  # cell centres, computed by hand
    rho0 = gaussian_1d(x, 1.0, 0.5)
    rho0 /= rho0.sum() * 0.05  # unit mass
    return mesh, x, rho0


def moments(x, rho, h):
    mass = h * rho.sum()
    mean = h * np.sum(x * rho) / mass
    var = h * np.sum((x - mean) ** 2 * rho) / mass
    return mass, mean, var


def test_mesh_matches_the_grid(ou_1d):
    mesh, x, _ = ou_1d
    assert mesh.n_cells == 200 and mesh.dim == 1 and mesh.shape == (200,)
    np.testing.assert_allclose(mesh.centres[:, 0], x, rtol=0, atol=1e-14)
    np.testing.assert_allclose(mesh.volumes, 0.05, rtol=1e-14)
    assert mesh.faces()["k"].shape == (199,)


def test_conic_step_conserves_mass_and_matches_the_exact_ou_iterate(ou_1d):
    mesh, x, rho0 = ou_1d
    before = rho0.copy()
    energy = jko.Energy(**FP_1D)
    tau = 0.1
    rho1, info = jko.step(rho0, tau, energy, mesh, solver="conic")
    np.testing.assert_array_equal(rho0, before)  # the input is not modified
    assert rho1.shape == rho0.shape and rho1.dtype == np.float64
    mass, mean, var = moments(x, rho1, 0.05)
    assert abs(mass - 1.0) < 1e-9
    assert rho1.min() >= -1e-10
    assert info["status"] in ("solved", "almost_solved")
    assert info["solver"] == "conic"
    assert abs(info["mass"] - mass) < 1e-12
    # The JKO energy inequality, checked independently with Energy.value.
    f0, f1 = energy.value(rho0, mesh), energy.value(rho1, mesh)
    assert f1 + info["kinetic"] / (2 * tau) <= f0 + 1e-7 * (abs(f0) + 1)
    assert info["energy_slack"] >= -1e-7
    assert abs(info["energy"] - f1) < 1e-10 * (1 + abs(f1))
    # Exact JKO iterate from the sampled initial moments: mean m/(1+tau), and
    # s' = (s + sqrt(s^2 + 4 tau (1 + tau))) / (2 (1 + tau)).
    _, m0, v0 = moments(x, rho0, 0.05)
    exact_mean, exact_cov = jko.exact.ou_jko_step([m0], v0, tau)
    s = np.sqrt(v0)
    s1 = (s + np.sqrt(s * s + 4 * tau * (1 + tau))) / (2 * (1 + tau))
    assert abs(exact_mean[0] - m0 / (1 + tau)) < 1e-15
    assert abs(exact_cov[0, 0] - s1 * s1) < 1e-14
    # The one-step two-point-flux scheme replaces W2 by a one-step action: one step differs from
    # the exact JKO iterate by O(tau^2) (first order over a run), independently of h. Measured at
    # h = 0.05: mean -1.31e-2, variance +2.80e-2 (tau = 0.1); -5.1e-3, +1.17e-2 (tau = 0.05).
    err_mean, err_var = abs(mean - exact_mean[0]), abs(var - exact_cov[0, 0])
    assert err_mean < 0.02 and err_var < 0.04, (err_mean, err_var)
    half, _ = jko.step(rho0, tau / 2, energy, mesh)
    _, mean_h, var_h = moments(x, half, 0.05)
    exact_mean_h, exact_cov_h = jko.exact.ou_jko_step([m0], v0, tau / 2)
    assert abs(mean_h - exact_mean_h[0]) < err_mean / 1.8
    assert abs(var_h - exact_cov_h[0, 0]) < err_var / 1.8


def test_lists_and_flat_arrays_work_too(ou_1d):
    mesh, _, rho0 = ou_1d
    energy = jko.Energy(**FP_1D)
    a, _ = jko.step(rho0, 0.05, energy, mesh)
    b, _ = jko.step(list(rho0), 0.05, energy, mesh)
    np.testing.assert_array_equal(a, b)
    c, _ = jko.step(np.asfortranarray(rho0[::-1])[::-1], 0.05, energy, mesh)  # a strided view
    np.testing.assert_array_equal(a, c)


@pytest.fixture(scope="module")
def ou_2d():
    mesh = jko.Mesh.grid([24, 20], [-4.0, -4.0], [4.0, 4.0])
    gx, gy = np.meshgrid(*mesh.axes, indexing="ij")
    rho0 = np.exp(-((gx - 1.0) ** 2) / 0.5 - (gy + 0.5) ** 2 / 1.0)
    energy = jko.Energy(entropy=1.0, potential={"kind": "quadratic", "stiffness": 1.0})
    return mesh, rho0, energy


def test_grid_and_flat_layouts_give_the_same_step(ou_2d):
    mesh, rho0, energy = ou_2d
    assert rho0.shape == mesh.shape
    grid, info = jko.step(rho0, 0.1, energy, mesh)
    flat, _ = jko.step(rho0.reshape(-1), 0.1, energy, mesh)
    assert grid.shape == mesh.shape and flat.shape == (mesh.n_cells,)
    np.testing.assert_array_equal(grid.reshape(-1), flat)
    assert abs(mesh.mass(grid) - mesh.mass(rho0)) <= 1e-9 * mesh.mass(rho0)
    assert info["potential"].shape == mesh.shape


def test_masked_grid_keeps_masked_cells_empty():
    mesh = jko.Mesh.grid(
        [30, 30], [-3.0, -3.0], [3.0, 3.0], obstacles=[{"kind": "disc", "center": [0.0, 0.0], "radius": 1.0}]
    )
    assert mesh.n_cells < 900
    inside = mesh.mask
    gx, gy = np.meshgrid(*mesh.axes, indexing="ij")
    assert not inside[np.hypot(gx, gy) <= 1.0].any()
    rho0 = np.exp(-((gx - 2.0) ** 2) - gy**2)  # also nonzero in the obstacle: ignored
    energy = jko.Energy(entropy=0.5, potential={"kind": "linear", "slope": [1.0, 0.0]})
    rho1, _ = jko.step(rho0, 0.05, energy, mesh)
    assert rho1.shape == (30, 30)
    assert np.all(rho1[~inside] == 0.0)
    m0 = mesh.mass(rho0)
    assert abs(mesh.mass(rho1) - m0) <= 1e-9 * m0
    # A user mask combines with the obstacles.
    user = np.ones((30, 30), dtype=bool)
    user[:, :3] = False
    both = jko.Mesh.grid([30, 30], [-3.0, -3.0], [3.0, 3.0], mask=user,
                         obstacles=[{"kind": "disc", "center": [0.0, 0.0], "radius": 1.0}])
    np.testing.assert_array_equal(both.mask, inside & user)


def test_cell_value_potential_equals_the_analytic_one(ou_2d):
    mesh, rho0, energy = ou_2d
    c = mesh.centres
    values = 0.5 * (c**2).sum(axis=1)
    by_values = jko.Energy(entropy=1.0, potential=values)
    a, _ = jko.step(rho0, 0.1, energy, mesh)
    b, _ = jko.step(rho0, 0.1, by_values, mesh)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * np.abs(a).max())


def test_warm_start_is_accepted(ou_1d):
    mesh, _, rho0 = ou_1d
    energy = jko.Energy(**FP_1D)
    rho1, info = jko.step(rho0, 0.1, energy, mesh)
    warm = {"rho": rho1, "potential": info.get("potential")}
    rho2_warm, _ = jko.step(rho1, 0.1, energy, mesh, warm=warm)
    rho2_cold, _ = jko.step(rho1, 0.1, energy, mesh)
    # Both are solutions of the same convex problem to the solver's tolerance.
    assert np.abs(rho2_warm - rho2_cold).max() < 1e-5 * rho2_cold.max()


def test_solver_parameters_reach_the_backend(ou_1d):
    mesh, _, rho0 = ou_1d
    energy = jko.Energy(**FP_1D)
    relaxed = {"mass_rtol": 1e-4}  # a loose solve drifts by ~2e-6 in mass
    # Clarabel's tolerances count only when Clarabel runs: without the Newton start from rho^n.
    _, loose = jko.step(rho0, 0.1, energy, mesh, solver="conic", checks=relaxed, newton_start=False,
                        tol_gap_rel=1e-3, tol_gap_abs=1e-3, tol_feas=1e-3)
    _, tight = jko.step(rho0, 0.1, energy, mesh, solver="conic", newton_start=False,
                        tol_gap_rel=1e-10, tol_gap_abs=1e-10)
    assert loose["iterations"] < tight["iterations"]
    # The Newton start (the default) skips Clarabel on this problem: its note says so.
    _, started = jko.step(rho0, 0.1, energy, mesh, solver="conic", newton_start=True)
    assert any("no interior-point run" in n for n in started["notes"]), started["notes"]
    assert not any("no interior-point run" in n for n in tight["notes"]), tight["notes"]
    # Too few iterations: an error with the diagnostics, never a result.
    with pytest.raises(jko.NotConvergedError, match="did not converge") as err:
        jko.step(rho0, 0.1, energy, mesh, solver="conic", newton_start=False, max_iter=2)
    assert err.value.iterations == 2 and err.value.primal_residual > 0


def test_every_registered_backend_steps_through_the_registry(ou_1d):
    mesh, x, rho0 = ou_1d
    energy = jko.Energy(**FP_1D)
    names = [s["name"] for s in jko.solvers()]
    assert "conic" in names
    for s in jko.solvers():
        if not {"entropy", "potential"} <= set(s["treats"]):
            continue
        rho1, info = jko.step(rho0, 0.1, energy, mesh, solver=s["name"])
        assert info["solver"] == s["name"]
        mass, mean, _ = moments(x, rho1, 0.05)
        assert abs(mass - 1.0) < 1e-8, s["name"]
        assert abs(mean - 1.0 / 1.1) < 0.02, (s["name"], mean)


def _gap_while_solving(n):
    """Largest gap between iterations of a Python loop while a solve runs in another thread."""
    mesh = jko.Mesh.grid([n, n], [-4.0, -4.0], [4.0, 4.0])
    gx, gy = np.meshgrid(*mesh.axes, indexing="ij")
    rho0 = np.exp(-((gx - 1.0) ** 2) - gy**2)
    energy = jko.Energy(entropy=1.0, potential={"kind": "quadratic", "stiffness": 1.0})
    result = {}

    def solve():
        t0 = time.perf_counter()
        result["out"] = jko.step(rho0, 0.1, energy, mesh)
        result["time"] = time.perf_counter() - t0

    thread = threading.Thread(target=solve)
    thread.start()
    last = time.perf_counter()
    gap = 0.0
    while thread.is_alive():
        now = time.perf_counter()
        gap = max(gap, now - last)
        last = now
        time.sleep(0.001)
    thread.join()
    assert "out" in result
    return gap, result["time"]


def test_the_gil_is_released_during_a_solve():
    # While a solve runs in another thread, this thread keeps running Python code: the largest
    # gap between its loop iterations stays far below the solve time (with the GIL held it
    # would be the whole solve). The grid grows until the solve is long enough to tell.
    for n in (32, 64, 96, 128):
        gap, solve_time = _gap_while_solving(n)
        if solve_time > 0.2:
            break
    assert solve_time > 0.2, "the solve is too short to observe the GIL"
    assert gap < 0.5 * solve_time, (gap, solve_time)


def test_run_reports_progress_and_returns_columns():
    config = jko.parse_config(jko.example("ou-1d"))
    seen = []
    trajectory, records = jko.run(config, steps=3, progress=seen.append)
    assert trajectory.shape == (4, 200)
    assert [r["step"] for r in seen] == [1, 2, 3]
    np.testing.assert_array_equal(records["step"], [1, 2, 3])
    np.testing.assert_allclose(records["t"], [0.1, 0.2, 0.3])
    assert records["energy"].dtype == np.float64
    assert np.all(np.diff(records["energy"]) < 0)  # the energy decreases along the run


def test_run_resume_returns_the_whole_trajectory(tmp_path):
    config = jko.parse_config(jko.example("ou-1d"))
    full, _ = jko.run(config, steps=4)
    jko.run(config, out=tmp_path, steps=2)
    resumed, records = jko.run(config, out=tmp_path, steps=4, resume=True)
    np.testing.assert_array_equal(records["step"], [1, 2, 3, 4])
    assert resumed.shape == full.shape
    np.testing.assert_allclose(resumed, full, rtol=0, atol=1e-9 * full.max())


def test_run_takes_arrays_for_the_initial_density_and_the_potential(tmp_path):
    # The same run from the config's Gaussian and from its cells as an array (issue 21).
    config = jko.parse_config(jko.example("ou-1d"))
    from_config, _ = jko.run(config, steps=2)
    from_array, _ = jko.run(config, steps=2, initial=from_config[0])
    np.testing.assert_allclose(from_array, from_config, rtol=0, atol=1e-12 * from_config.max())
    # A potential array written into the run directory and named in run.json.
    x = np.asarray(jko.Mesh.from_config(config["mesh"]).centres)[:, 0]
    config["energy"]["potential"] = {"kind": "quadratic", "center": [0.0], "stiffness": 1.0}
    quadratic, _ = jko.run(config, steps=2)
    arrays, _ = jko.run(config, out=tmp_path, steps=2, potential=0.5 * x**2)
    np.testing.assert_allclose(arrays, quadratic, rtol=0, atol=1e-9 * quadratic.max())
    assert (tmp_path / "potential.npy").exists()

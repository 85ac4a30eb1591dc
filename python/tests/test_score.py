"""jko.score agrees with the CLI's `jko score CONFIG RHO_PREV.npy RHO_CANDIDATE.npy --json` on
the same files, and scores what the mathematics says (the minimiser scores 0, a perturbation
of it a gap quadratic in its size)."""

import json
import subprocess

import numpy as np
import pytest

import jko

EXAMPLE = "ou-1d"


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    """The ou-1d example's config file, mesh, energy, tau and initial density, and a candidate:
    one step of the conic backend (close to, not at, the exact minimiser)."""
    tmp = tmp_path_factory.mktemp("score")
    toml = jko.example(EXAMPLE)
    path = tmp / f"{EXAMPLE}.toml"
    path.write_text(toml)
    config = jko.parse_config(toml)
    mesh = jko.Mesh.from_config(config["mesh"])
    energy = jko.Energy(**config["energy"])
    tau = config["scheme"]["tau"]
    trajectory, _ = jko.run(config, steps=1)
    prev = trajectory[0]
    candidate, _ = jko.step(prev, tau, energy, mesh, solver="newton")
    np.save(tmp / "prev.npy", prev)
    np.save(tmp / "candidate.npy", candidate)
    return tmp, path, mesh, energy, tau, prev, candidate


def cli_score(jko_cli, tmp, config, candidate="candidate.npy"):
    out = subprocess.run(
        [
            str(jko_cli), "score", str(config), str(tmp / "prev.npy"), str(tmp / candidate),
            "--json", "--minimiser", str(tmp / "star.npy"),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out), np.load(tmp / "star.npy")


def test_python_score_matches_the_cli_on_the_same_files(jko_cli, problem):
    tmp, config, mesh, energy, tau, _, _ = problem
    theirs, star = cli_score(jko_cli, tmp, config)
    # The same files, read by numpy.
    ours = jko.score(np.load(tmp / "prev.npy"), np.load(tmp / "candidate.npy"), tau, energy, mesh)
    assert ours["method"] == theirs["method"] == {"kind": "exact_cells"}
    assert set(theirs) == set(ours) - {"minimiser"}
    for key, value in theirs.items():
        if isinstance(value, float):
            assert ours[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key
    assert ours["minimiser"].shape == star.shape == tuple(mesh.shape)
    np.testing.assert_allclose(ours["minimiser"], star, rtol=1e-12, atol=1e-15)
    # A one-step-scheme step is not the exact minimiser: a positive gap, certified.
    assert ours["gap"] > 100 * ours["certificate"] > 0


def test_minimiser_scores_zero_and_perturbations_quadratically(jko_cli, problem):
    tmp, config, mesh, energy, tau, prev, _ = problem
    star = jko.score(prev, prev, tau, energy, mesh)["minimiser"]
    at_star = jko.score(prev, star, tau, energy, mesh)
    assert abs(at_star["gap"]) < 1e-10 and at_star["w2_to_minimiser"] < 1e-6
    # rho* + eps * phi with a mass-free phi supported where rho* > 0: gap ~ eps^2.
    x = np.asarray(mesh.centres).reshape(-1)
    phi = np.sin(x) * star
    phi -= phi.sum() / star.sum() * star
    gaps = []
    for eps in (0.2, 0.1, 0.05):
        gaps.append(jko.score(prev, star + eps * phi, tau, energy, mesh)["gap"])
    ratios = [gaps[0] / gaps[1], gaps[1] / gaps[2]]
    assert all(3.5 < r < 4.5 for r in ratios), (gaps, ratios)
    # The CLI on a file written here agrees on the perturbed candidate too.
    np.save(tmp / "perturbed.npy", star + 0.1 * phi)
    theirs, _ = cli_score(jko_cli, tmp, config, "perturbed.npy")
    assert theirs["gap"] == pytest.approx(gaps[1], rel=1e-12)


def test_bad_candidate_is_an_input_error(problem):
    _, _, mesh, energy, tau, prev, _ = problem
    with pytest.raises(jko.InputError, match="mass"):
        jko.score(prev, 2.0 * prev, tau, energy, mesh)
    with pytest.raises(jko.InputError):
        jko.score(prev, prev[:-1], tau, energy, mesh)
    doubled = jko.score(prev, 2.0 * prev, tau, energy, mesh, normalize=True)
    assert doubled["mass_defect"] == pytest.approx(1.0)


def _quantile_w2(edges, a, b, n=400_000):
    """W2 between cellwise-constant densities by numpy alone: the quantile functions of the
    piecewise-linear CDFs (np.interp inverts them exactly) on a fine midpoint rule in s."""
    def quantile(rho):
        cdf = np.concatenate([[0.0], np.cumsum(rho * np.diff(edges))])
        s = (np.arange(n) + 0.5) / n * cdf[-1]
        return np.interp(s, cdf, edges)
    mass = np.sum(a * np.diff(edges))
    return np.sqrt(np.mean((quantile(a) - quantile(b)) ** 2) * mass)


def test_distance_agrees_with_an_independent_quantile_computation():
    mesh = jko.Mesh.grid([60], [-3.0], [3.0])
    x = mesh.centres[:, 0]
    a = np.exp(-((x - 0.4) ** 2) / 0.5) + 0.02
    b = np.exp(-((x + 0.7) ** 2) / 1.2) + 0.05
    a /= a.sum() * 0.1
    b /= b.sum() * 0.1
    edges = np.linspace(-3.0, 3.0, 61)
    assert jko.distance(a, b, mesh) == pytest.approx(_quantile_w2(edges, a, b), rel=1e-7)
    assert jko.distance(a, a, mesh) == pytest.approx(0.0, abs=1e-12)
    # A block moved by 3 cells: W2 = 0.3 exactly.
    c = np.zeros(60)
    c[10:20] = 1.0
    assert jko.distance(c, np.roll(c, 3), mesh) == pytest.approx(0.3, rel=1e-12)


def test_distance_refuses_unequal_masses():
    mesh = jko.Mesh.grid([10], [0.0], [1.0])
    with pytest.raises(jko.InputError, match="mass"):
        jko.distance(np.ones(10), 2.0 * np.ones(10), mesh)
    square = jko.Mesh.grid([4, 4], [0.0, 0.0], [1.0, 1.0])
    with pytest.raises(jko.InputError, match="mass"):
        jko.distance(np.ones((4, 4)), 2.0 * np.ones((4, 4)), square)


def test_distance_2d_translated_block():
    # A block of 3x3 cells moved by (2, 4) cells of width 0.25 (back-and-forth method, issue 20):
    # W2 = |(0.5, 1.0)| exactly for the cell-centre measures of unit mass (W2² scales with the
    # mass, as in the 1D test above: a block of height 1 here would have mass 9/16).
    square = jko.Mesh.grid([12, 12], [0.0, 0.0], [3.0, 3.0])
    a = np.zeros((12, 12))
    a[2:5, 1:4] = 1.0 / (9 * 0.25**2)
    b = np.roll(np.roll(a, 2, axis=0), 4, axis=1)
    assert jko.distance(a, b, square) == pytest.approx(np.hypot(0.5, 1.0), rel=1e-12)
    assert jko.distance(a, a, square) == pytest.approx(0.0, abs=1e-12)

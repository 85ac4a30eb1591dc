"""The bindings run the same engine as the CLI: same densities, same step records."""

import json
import subprocess

import numpy as np
import pytest

import jko

EXAMPLE = "ou-1d"


def read_run(out):
    """A run directory as one dict: run.json's header and the records of steps.jsonl."""
    summary = json.loads((out / "run.json").read_text())
    summary["steps"] = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    return summary

@pytest.fixture(scope="module")
def cli_run(jko_cli, tmp_path_factory):
    """`jko example ou-1d > ou-1d.toml; jko run ou-1d.toml --out out` with the CLI binary."""
    tmp = tmp_path_factory.mktemp("cli")
    toml = subprocess.run(
        [str(jko_cli), "example", EXAMPLE], check=True, capture_output=True, text=True
    ).stdout
    config = tmp / f"{EXAMPLE}.toml"
    config.write_text(toml)
    out = tmp / "out"
    subprocess.run(
        [str(jko_cli), "run", str(config), "--out", str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    summary = read_run(out)
    steps = summary["config"]["scheme"]["steps"]
    frames = np.stack([np.load(out / f"rho_{n:05d}.npy") for n in range(steps + 1)])
    return config, toml, frames, summary


def test_example_text_is_the_clis(cli_run):
    _, toml, _, _ = cli_run
    assert jko.example(EXAMPLE) == toml


def test_run_from_the_config_file_matches_the_cli(cli_run):
    config, _, frames, summary = cli_run
    trajectory, records = jko.run(config)
    assert trajectory.shape == frames.shape
    assert trajectory.dtype == np.float64
    scale = np.abs(frames).max()
    assert np.abs(trajectory - frames).max() <= 1e-12 * scale
    steps = summary["steps"]
    np.testing.assert_array_equal(records["step"], [r["step"] for r in steps])
    for key in ("t", "energy", "mass", "kinetic", "energy_slack", "min_density", "max_density"):
        np.testing.assert_allclose(records[key], [r[key] for r in steps], rtol=1e-10, atol=1e-13, err_msg=key)
    assert records["status"] == [r["status"] for r in steps]
    np.testing.assert_array_equal(records["iterations"], [r["iterations"] for r in steps])


def test_run_from_a_dict_writes_what_the_cli_writes(cli_run, tmp_path):
    _, toml, frames, summary = cli_run
    config = jko.parse_config(toml)
    assert config["solver"]["kind"] == "conic"
    trajectory, records = jko.run(config, out=tmp_path / "py")
    scale = np.abs(frames).max()
    assert np.abs(trajectory - frames).max() <= 1e-12 * scale
    for n in range(frames.shape[0]):
        written = np.load(tmp_path / "py" / f"rho_{n:05d}.npy")
        assert np.abs(written - frames[n]).max() <= 1e-12 * scale
    ours = read_run(tmp_path / "py")
    assert ours["status"] == "completed"
    assert ours["config"] == summary["config"]
    assert len(records["energy"]) == len(summary["steps"])


def test_the_trajectory_follows_the_exact_flow(cli_run):
    # Sanity of what both produce: the mean follows the exact OU flow to first order in tau.
    _, toml, frames, summary = cli_run
    mesh = jko.Mesh.from_config(jko.parse_config(toml)["mesh"])
    x = mesh.centres[:, 0]
    h = mesh.spacing[0]
    tau = summary["config"]["scheme"]["tau"]
    for n in range(frames.shape[0]):
        mean = h * np.sum(frames[n] * x)
        exact_mean, _ = jko.exact.ou_flow([1.0], 0.25, n * tau)
        assert abs(mean - exact_mean[0]) < 0.03, (n, mean, exact_mean)

"""Errors arrive as jko exceptions carrying the engine's message, naming the problem."""

import numpy as np
import pytest

import jko


@pytest.fixture(scope="module")
def problem():
    mesh = jko.Mesh.grid([8], [0.0], [1.0])
    energy = jko.Energy(entropy=1.0, potential={"kind": "quadratic", "center": [0.5]})
    rho = np.ones(8)
    return mesh, energy, rho


def test_hierarchy():
    assert issubclass(jko.InputError, jko.JkoError) and issubclass(jko.InputError, ValueError)
    assert issubclass(jko.ConfigError, jko.InputError)
    assert issubclass(jko.SolverError, jko.JkoError) and issubclass(jko.SolverError, RuntimeError)
    for cls in (jko.UnsupportedError, jko.NotConvergedError, jko.InvariantError):
        assert issubclass(cls, jko.SolverError)
    assert issubclass(jko.OutputError, OSError)
    assert jko.InputError.__module__ == "jko"


def test_negative_density(problem):
    mesh, energy, rho = problem
    bad = rho.copy()
    bad[3] = -0.5
    with pytest.raises(jko.InputError, match=r"density is negative \(-5e-1\) at cell 3"):
        jko.step(bad, 0.1, energy, mesh)


def test_nan_density(problem):
    mesh, energy, rho = problem
    bad = rho.copy()
    bad[5] = np.nan
    with pytest.raises(jko.InputError, match=r"density contains a non-finite value \(NaN\) at index 5"):
        jko.step(bad, 0.1, energy, mesh)


def test_zero_mass(problem):
    mesh, energy, _ = problem
    with pytest.raises(jko.InputError, match="zero mass"):
        jko.step(np.zeros(8), 0.1, energy, mesh)


def test_wrong_shape(problem):
    mesh, energy, _ = problem
    with pytest.raises(jko.InputError, match=r"shape mismatch in density: expected shape \[8\].*found shape \[7\]"):
        jko.step(np.ones(7), 0.1, energy, mesh)
    with pytest.raises(jko.InputError, match="shape mismatch"):
        jko.step(np.ones((2, 4)), 0.1, energy, mesh)


@pytest.mark.parametrize("tau", [0.0, -0.1, float("nan"), float("inf")])
def test_bad_tau(problem, tau):
    mesh, energy, rho = problem
    with pytest.raises(jko.InputError, match="time step tau must be finite and > 0"):
        jko.step(rho, tau, energy, mesh)


def test_unknown_solver(problem):
    mesh, energy, rho = problem
    with pytest.raises(jko.ConfigError, match=r"unknown backend `nope`; known backends: .*conic"):
        jko.step(rho, 0.1, energy, mesh, solver="nope")


def test_unknown_solver_parameter(problem):
    mesh, energy, rho = problem
    with pytest.raises(jko.ConfigError, match=r"conic solver parameters: unknown field `tolerance`"):
        jko.step(rho, 0.1, energy, mesh, solver="conic", tolerance=1e-8)


def test_solver_parameter_of_the_wrong_type(problem):
    mesh, energy, rho = problem
    with pytest.raises(jko.ConfigError, match=r"conic solver parameters: `max_iter`: invalid type: string \"many\""):
        jko.step(rho, 0.1, energy, mesh, solver="conic", max_iter="many")
    config = jko.parse_config(jko.example("ou-1d"))
    config["scheme"]["tau"] = "0.1"
    with pytest.raises(jko.ConfigError, match=r"`scheme.tau`: invalid type: string"):
        jko.run(config)
    with pytest.raises(jko.ConfigError, match=r"`porous.m`: invalid type"):
        jko.Energy(porous={"m": "two"})


def test_bad_energies():
    with pytest.raises(jko.InputError, match="entropy"):
        jko.Energy(entropy=-1.0)
    with pytest.raises(jko.InputError, match="porous.m"):
        jko.Energy(porous=0.5)
    with pytest.raises(jko.ConfigError, match="unknown variant `cubic`"):
        jko.Energy(potential={"kind": "cubic"})
    with pytest.raises(jko.ConfigError, match="unknown field `centre`"):
        jko.Energy(potential={"kind": "quadratic", "centre": [0.0]})


def test_potential_of_the_wrong_dimension(problem):
    mesh, _, rho = problem
    energy = jko.Energy(entropy=1.0, potential={"kind": "quadratic", "center": [0.0, 0.0]})
    with pytest.raises(jko.InputError, match="potential `center`"):
        jko.step(rho, 0.1, energy, mesh)
    values = jko.Energy(entropy=1.0, potential=np.zeros(5))
    with pytest.raises(jko.InputError, match="shape mismatch in potential"):
        jko.step(rho, 0.1, values, mesh)


def test_unsupported_term(problem):
    mesh, _, rho = problem
    energy = jko.Energy(entropy=1.0, max_density=2.0)
    without = [s["name"] for s in jko.solvers() if "max_density" not in s["treats"]]
    if not without:
        pytest.skip("every registered backend treats max_density")
    with pytest.raises(jko.UnsupportedError, match=f"the {without[0]} backend does not treat the energy term `max_density`"):
        jko.step(rho * 0.5, 0.1, energy, mesh, solver=without[0])


def test_invariant_violation_is_an_error_with_attributes(problem):
    mesh, energy, rho = problem
    # energy_rtol < 0 demands a decrease no step can deliver: the check must fire, not pass.
    with pytest.raises(jko.InvariantError, match="JKO energy inequality") as err:
        jko.step(rho, 0.1, energy, mesh, checks={"energy_rtol": -1.0})
    assert err.value.step == 1
    assert "energy inequality" in err.value.what
    with pytest.raises(jko.ConfigError, match="unknown field `mass_tol`"):
        jko.step(rho, 0.1, energy, mesh, checks={"mass_tol": 1e-3})


def test_bad_meshes():
    with pytest.raises(jko.InputError, match="lower = 1 must be below upper = 0"):
        jko.Mesh.grid([4], [1.0], [0.0])
    with pytest.raises(jko.InputError, match="a grid has 1 to 3 axes"):
        jko.Mesh.grid([2, 2, 2, 2], [0.0] * 4, [1.0] * 4)
    with pytest.raises(jko.InputError, match="shape mismatch in mesh mask"):
        jko.Mesh.grid([4, 4], [0.0, 0.0], [1.0, 1.0], mask=np.ones((4, 3)))
    with pytest.raises(jko.InputError, match="the mask removes every cell"):
        jko.Mesh.grid([4], [0.0], [1.0], mask=np.zeros(4))


def test_bad_run_configs(tmp_path):
    config = jko.parse_config(jko.example("ou-1d"))
    config["scheme"]["tua"] = 0.1
    with pytest.raises(jko.ConfigError, match="unknown field `tua`"):
        jko.run(config)
    del config["scheme"]["tua"]
    del config["initial"]
    with pytest.raises(jko.ConfigError, match="missing field `initial`"):
        jko.run(config)
    with pytest.raises(jko.OutputError, match="no-such.toml"):
        jko.run(tmp_path / "no-such.toml")
    with pytest.raises(jko.ConfigError, match="unknown example"):
        jko.example("nope")
    with pytest.raises(jko.ConfigError, match="unknown backend `nope`"):
        jko.run(jko.parse_config(jko.example("ou-1d")), solver="nope")


def test_run_refuses_to_overwrite(tmp_path):
    config = jko.parse_config(jko.example("ou-1d"))
    jko.run(config, out=tmp_path, steps=1)
    with pytest.raises(jko.ConfigError, match="already holds a run"):
        jko.run(config, out=tmp_path, steps=1)
    jko.run(config, out=tmp_path, steps=1, force=True)


def test_progress_callback_errors_propagate():
    def boom(record):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        jko.run(jko.parse_config(jko.example("ou-1d")), steps=2, progress=boom)


def test_exact_reference_input_errors():
    with pytest.raises(jko.InputError, match="tau"):
        jko.exact.ou_jko_step([0.0], 1.0, tau=0.0)
    with pytest.raises(jko.InputError, match="not positive definite"):
        jko.exact.ou_flow([0.0, 0.0], [[1.0, 2.0], [2.0, 1.0]], t=1.0)
    with pytest.raises(jko.InputError, match="Barenblatt profiles need m > 1"):
        jko.exact.barenblatt(1.0, 1, 1.0, 0.1, np.zeros(3))


def test_ctrl_c_stops_a_run_after_a_saved_step(tmp_path):
    import json
    import os
    import signal

    def interrupt(record):
        if record["step"] == 2:
            os.kill(os.getpid(), signal.SIGINT)  # as a Ctrl-C during the run would

    config = jko.parse_config(jko.example("ou-1d"))
    # Python leaves SIGINT ignored when it starts ignored (a job started in the background by a
    # non-interactive shell, as CI may run this suite): install Ctrl-C's usual handler here.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            jko.run(config, out=tmp_path, steps=5, progress=interrupt)
    finally:
        signal.signal(signal.SIGINT, previous)
    header = json.loads((tmp_path / "run.json").read_text())
    assert header["status"] == "interrupted"
    steps = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2]
    trajectory, records = jko.run(config, out=tmp_path, steps=5, resume=True)
    np.testing.assert_array_equal(records["step"], [1, 2, 3, 4, 5])
    assert trajectory.shape == (6, 200)


def test_run_directory_errors_name_python_arguments(tmp_path):
    # Issue 21: the messages named the CLI's --resume / --force.
    config = jko.parse_config(jko.example("ou-1d"))
    jko.run(config, out=tmp_path / "a", steps=1)
    with pytest.raises(jko.ConfigError) as e:
        jko.run(config, out=tmp_path / "a", steps=1)
    assert "resume=True" in str(e.value) and "force=True" in str(e.value)
    assert "--" not in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(jko.ConfigError, match="holds no run") as e:
        jko.run(config, out=tmp_path / "empty", steps=1, resume=True)
    assert "--" not in str(e.value)


def test_warm_start_is_validated(problem):
    mesh, energy, rho = problem
    with pytest.raises(jko.InputError, match="unknown key `phi`"):
        jko.step(rho, 0.1, energy, mesh, warm={"phi": rho})
    bad = rho.copy()
    bad[2] = np.nan
    with pytest.raises(jko.InputError, match="not finite"):
        jko.step(rho, 0.1, energy, mesh, warm={"rho": bad})
    with pytest.raises(jko.InputError):
        jko.step(rho, 0.1, energy, mesh, warm={"potential": np.zeros(5)})

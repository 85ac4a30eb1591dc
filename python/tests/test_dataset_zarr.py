"""`jko dataset-zarr`: the shards of a dataset merged into one Zarr v2 store, read back by the
zarr package and by plain numpy from the .zarray header, equal to the unsharded NPY arrays."""

import json
import subprocess

import numpy as np
import pytest

SPEC = """
samples = 7
seed = 5
[base]
mesh = { cells = [12], lower = [-3.0], upper = [3.0] }
energy = { entropy = 1.0, potential = { kind = "quadratic" } }
scheme = { tau = 0.1, steps = 3 }
solver = { kind = "newton" }
[[initial]]
kind = "gaussian_mixture"
components = [1, 2]
std = [0.5, 1.0]
"""


@pytest.fixture(scope="module")
def dataset(jko_cli, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("zarr")
    spec = tmp / "spec.toml"
    spec.write_text(SPEC)
    run = lambda *args: subprocess.run([str(jko_cli), *map(str, args)], check=True, capture_output=True, text=True)
    # One failing sample (fault injection), so the store must carry a failure too.
    run("dataset", spec, "--out", tmp / "one", "--quiet", "--fail-sample", 4)
    for i in range(3):
        run("dataset", spec, "--out", tmp / "sharded", "--shard", f"{i}/3", "--quiet", "--fail-sample", 4)
    run("dataset-zarr", tmp / "sharded", "--out", tmp / "all.zarr")
    return tmp


def numpy_read(array_dir):
    """A float64 / bool Zarr v2 array without compression, decoded from its .zarray alone."""
    meta = json.loads((array_dir / ".zarray").read_text())
    assert meta["compressor"] is None and meta["order"] == "C"
    shape, chunks = meta["shape"], meta["chunks"]
    dtype = np.dtype(meta["dtype"])
    parts = []
    for c in range(-(-shape[0] // chunks[0])):
        key = ".".join([str(c)] + ["0"] * (len(shape) - 1))
        parts.append(np.fromfile(array_dir / key, dtype=dtype).reshape(chunks))
    return np.concatenate(parts)[: shape[0]]


def test_store_equals_the_unsharded_arrays(dataset):
    one = dataset / "one"
    for name in ("inputs", "trajectories", "energies"):
        expected = np.load(one / f"{name}_00000-of-00001.npy")
        got = numpy_read(dataset / "all.zarr" / name)
        np.testing.assert_array_equal(got, expected, err_msg=name)
    ok = numpy_read(dataset / "all.zarr" / "ok")
    np.testing.assert_array_equal(ok, [True] * 4 + [False] + [True] * 2)
    assert np.isnan(numpy_read(dataset / "all.zarr" / "trajectories")[4]).all()


def test_zarr_package_reads_the_store(dataset):
    zarr = pytest.importorskip("zarr")
    group = zarr.open_group(str(dataset / "all.zarr"), mode="r")
    traj = group["trajectories"]
    assert traj.shape == (7, 4, 12)
    expected = np.load(dataset / "one" / "trajectories_00000-of-00001.npy")
    np.testing.assert_array_equal(traj[:], expected)
    np.testing.assert_array_equal(group["ok"][:], [True] * 4 + [False] + [True] * 2)
    attrs = group.attrs.asdict()
    assert "injected" in attrs["errors"]["4"]
    assert attrs["times"] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    # Mass is conserved along every kept trajectory (cell width 0.5).
    masses = np.nansum(traj[:], axis=-1) * 0.5
    kept = group["ok"][:]
    np.testing.assert_allclose(masses[kept], masses[kept][:, :1].repeat(4, axis=1), rtol=1e-9)

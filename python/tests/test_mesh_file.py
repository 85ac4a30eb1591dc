"""jko.Mesh.from_file: gmsh meshes as the CLI's `[mesh] file` reads them (issue 19).

The geometry is checked against numpy computations from the file's own points and triangles
(shoelace areas), not against the engine's numbers; the grid-only getters must raise a Python
exception (not a Rust panic) on such a mesh.
"""

import pathlib

import numpy as np
import pytest

import jko

MESHES = pathlib.Path(__file__).resolve().parents[2] / "data" / "meshes"
SQUARE = MESHES / "square-h8.msh"


def shoelace(points, cell):
    """Area of the polygon with these corner indices (in order)."""
    xy = points[cell]
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


@pytest.fixture(scope="module")
def square():
    return jko.Mesh.from_file(SQUARE)


def test_triangles_of_a_gmsh_square(square):
    m = square
    assert not m.is_grid and m.dim == 2
    points, cells = m.points, m.cells
    assert points.shape[1] == 2 and len(cells) == m.n_cells > 100
    assert all(len(c) == 3 for c in cells)
    # Volumes are the triangles' areas, and they tile the unit square.
    areas = np.array([shoelace(points, c) for c in cells])
    np.testing.assert_allclose(m.volumes, areas, rtol=1e-12)
    assert abs(m.volumes.sum() - 1.0) < 1e-12
    assert abs(m.domain_volume - 1.0) < 1e-12
    # Circumcentres: equidistant from the three corners.
    c = m.centres
    assert c.shape == (m.n_cells, 2)
    d = np.linalg.norm(points[np.array(cells)] - c[:, None, :], axis=2)
    np.testing.assert_allclose(d, d[:, :1].repeat(3, axis=1), rtol=1e-9)
    f = m.faces()
    assert f["k"].shape == f["l"].shape and f["k"].max() < m.n_cells
    assert "triangles" in repr(m)


def test_binary_and_ascii_files_give_the_same_mesh(square):
    binary = jko.Mesh.from_file(str(MESHES / "square-h8-binary.msh"))
    assert binary.n_cells == square.n_cells
    # The same geometry; the ASCII file's decimal coordinates round differently (~1e-15).
    np.testing.assert_allclose(binary.volumes, square.volumes, rtol=1e-12)
    np.testing.assert_allclose(binary.centres, square.centres, rtol=1e-12, atol=1e-14)


def test_voronoi_cells_tile_the_square(square):
    v = jko.Mesh.from_file(SQUARE, control_volumes="voronoi")
    assert not v.is_grid
    # One cell per vertex of the triangulation, polygons that tile the square.
    assert v.n_cells == square.points.shape[0]
    areas = np.array([shoelace(v.points, c) for c in v.cells])
    np.testing.assert_allclose(v.volumes, areas, rtol=1e-9)
    assert abs(v.volumes.sum() - 1.0) < 1e-12
    assert "Voronoi" in repr(v)


def test_from_config_reads_the_file_relative_to_base(square):
    m = jko.Mesh.from_config({"file": SQUARE.name}, base=MESHES)
    np.testing.assert_array_equal(m.volumes, square.volumes)


@pytest.mark.parametrize(
    "getter", ["shape", "lower", "upper", "spacing", "axes", "mask", "grid_index"]
)
def test_grid_getters_raise_on_a_mesh_from_a_file(square, getter):
    with pytest.raises(jko.InputError, match=f"Mesh.{getter} exists only for grids"):
        getattr(square, getter)


def test_grid_conversions_raise_on_a_mesh_from_a_file(square):
    with pytest.raises(jko.InputError, match="to_grid"):
        square.to_grid(np.ones(square.n_cells))
    with pytest.raises(jko.InputError, match="from_grid"):
        square.from_grid(np.ones(square.n_cells))


def test_grids_have_no_points_or_cells():
    g = jko.Mesh.grid([4, 3], [0.0, 0.0], [1.0, 1.0])
    assert g.is_grid and g.points is None and g.cells is None


def test_bad_files_and_options_raise():
    with pytest.raises(jko.JkoError, match="nothere.msh"):
        jko.Mesh.from_file(MESHES / "nothere.msh")
    with pytest.raises(jko.ConfigError, match="control_volumes"):
        jko.Mesh.from_file(SQUARE, control_volumes="dual")
    # A TOML file is not a mesh file.
    with pytest.raises(jko.InputError):
        jko.Mesh.from_file(MESHES / "fokker-planck-square.toml")


def test_a_step_on_the_gmsh_mesh_conserves_mass_and_decreases_the_energy(square):
    m = square
    x = m.centres
    rho0 = 1.0 + 0.5 * np.cos(np.pi * x[:, 0])
    rho0 /= m.mass(rho0)
    energy = jko.Energy(entropy=1.0, potential=-x[:, 0])
    rho1, info = jko.step(rho0, 0.01, energy, m, solver="conic")
    assert rho1.shape == (m.n_cells,)
    assert abs(m.mass(rho1) - 1.0) < 1e-9
    assert rho1.min() >= -1e-10
    f0, f1 = energy.value(rho0, m), energy.value(rho1, m)
    assert f1 + info["kinetic"] / (2 * 0.01) <= f0 + 1e-7 * (abs(f0) + 1)

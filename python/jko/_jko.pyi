"""Type stubs of the extension module ``jko._jko`` (re-exported by ``jko``)."""

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Optional, Union, final

import numpy as np
import numpy.typing as npt

from . import exact as exact

__version__: str
__all__ = [
    "JkoError",
    "InputError",
    "ConfigError",
    "SolverError",
    "UnsupportedError",
    "NotConvergedError",
    "InvariantError",
    "OutputError",
    "Mesh",
    "Energy",
    "step",
    "run",
    "solvers",
    "example",
    "examples",
    "parse_config",
    "__version__",
    "exact",
]

_ArrayLike = npt.ArrayLike
_FloatArray = npt.NDArray[np.float64]
_PathLike = Union[str, "os.PathLike[str]"]
_Status = Literal["solved", "almost_solved"]

# ---------------------------------------------------------------------------------------------
# Exceptions. The message is the engine's own (e.g. "density is negative (-5e-1) at cell 3;
# a density must be >= 0").

class JkoError(Exception):
    """Base class of every error raised by jko; the message is the engine's."""

class InputError(JkoError, ValueError):
    """Invalid input: mesh, density (negative, non-finite, wrong shape, zero mass), energy
    parameters, time step, solver parameters."""

class ConfigError(InputError):
    """A run config or solver parameter set that does not parse (unknown key or solver,
    missing key, wrong type)."""

class SolverError(JkoError, RuntimeError):
    """A backend could not produce a JKO step. ``step`` (run step number) is set when known."""

    step: int

class UnsupportedError(SolverError):
    """The chosen backend does not treat a term of the energy (see ``jko.solvers()``)."""

class NotConvergedError(SolverError):
    """The backend stopped without converging; a non-converged step is never returned."""

    iterations: int
    primal_residual: float
    dual_residual: float
    history: list[float]

class InvariantError(SolverError):
    """A step violated an invariant checked after every step (mass, positivity, max_density,
    JKO energy inequality)."""

    what: str
    value: float
    limit: float

class OutputError(JkoError, OSError):
    """A file could not be read or written (run directory, .npy input)."""

# ---------------------------------------------------------------------------------------------

@final
class Mesh:
    """A mesh in two-point-flux form: cell volumes, cell centres and interior faces.

    Densities on a grid are numpy arrays of the grid's shape ``mesh.shape`` (C order; masked
    cells ignored on input, 0 on output) or flat over the active cells (``mesh.n_cells``); on a
    mesh read from a file (``Mesh.from_file``) they are flat, one value per cell.
    """

    @staticmethod
    def grid(
        cells: Sequence[int],
        lower: Sequence[float],
        upper: Sequence[float],
        mask: Optional[_ArrayLike] = None,
        obstacles: Optional[Sequence[Mapping[str, Any]]] = None,
    ) -> Mesh:
        """A uniform Cartesian grid (1 to 3 axes) on the box ``[lower, upper]``.

        ``mask``: array of shape ``cells``, nonzero = inside the domain. ``obstacles``: dicts
        ``{"kind": "disc", "center", "radius"}`` or ``{"kind": "box", "lower", "upper"}``
        removed from the domain. Faces next to removed cells are walls (no flux).
        """

    @staticmethod
    def from_file(path: _PathLike, control_volumes: Optional[str] = None) -> Mesh:
        """A mesh read from a Gmsh MSH 4.1 file (ASCII or binary), as ``[mesh] file`` reads it.

        ``control_volumes``: ``"elements"`` (default; the file's triangles/tetrahedra centred
        at their circumcentres, refused with the offending elements named when not Delaunay) or
        ``"voronoi"`` (2D: Voronoi cells of the vertices). The grid-only getters (``shape``,
        ``lower``, ``upper``, ``spacing``, ``axes``, ``mask``, ``grid_index``, ``to_grid``,
        ``from_grid``) raise ``InputError`` on such a mesh; use ``centres``, ``volumes``,
        ``points`` and ``cells``.
        """

    @staticmethod
    def from_config(config: Mapping[str, Any], base: Optional[_PathLike] = None) -> Mesh:
        """A mesh from the ``[mesh]`` table of a run config (``mask`` or ``file`` relative to ``base``)."""

    @property
    def is_grid(self) -> bool:
        """True for a Cartesian grid, False for a mesh read from a file."""

    @property
    def points(self) -> Optional[_FloatArray]:
        """Vertices of a mesh read from a file, shape ``(n_points, dim)``; None on a grid."""

    @property
    def cells(self) -> Optional[list[list[int]]]:
        """Vertex indices (into ``points``) of each cell of a mesh read from a file; None on a grid."""

    @property
    def n_cells(self) -> int:
        """Number of active cells."""

    @property
    def dim(self) -> int:
        """Space dimension."""

    @property
    def shape(self) -> tuple[int, ...]:
        """Cells per axis (the shape of grid-shaped arrays)."""

    @property
    def lower(self) -> list[float]: ...
    @property
    def upper(self) -> list[float]: ...
    @property
    def spacing(self) -> list[float]:
        """Cell width along each axis."""

    @property
    def volumes(self) -> _FloatArray:
        """Cell volumes, shape ``(n_cells,)``."""

    @property
    def centres(self) -> _FloatArray:
        """Cell centres, shape ``(n_cells, dim)``."""

    @property
    def axes(self) -> list[_FloatArray]:
        """Cell-centre coordinates along each axis."""

    @property
    def mask(self) -> npt.NDArray[np.bool_]:
        """True for active cells, shape ``shape``."""

    @property
    def grid_index(self) -> npt.NDArray[np.int64]:
        """Grid index (C order) of each active cell."""

    @property
    def domain_volume(self) -> float: ...
    def faces(self) -> dict[str, npt.NDArray[Any]]:
        """Interior faces: arrays ``k``, ``l``, ``area``, ``distance``, ``axis``."""

    def mass(self, rho: _ArrayLike) -> float:
        """Mass ``sum_K |K| rho_K``."""

    def to_grid(self, values: _ArrayLike, fill: float = 0.0) -> _FloatArray:
        """Grid-shaped array from values flat over the active cells (masked cells = fill)."""

    def from_grid(self, array: _ArrayLike) -> _FloatArray:
        """Values flat over the active cells from a grid-shaped array."""

@final
class Energy:
    """F(rho) = beta ∫ rho log rho + ∫ rho^m/(m-1) + ∫ V rho + ½∬ W(x-y) rho rho, optionally
    with rho <= max_density. The keywords are the keys of the config's ``[energy]`` table."""

    def __new__(
        cls,
        *,
        entropy: Optional[float] = None,
        porous: Union[float, Mapping[str, float], None] = None,
        potential: Union[Mapping[str, Any], _ArrayLike, None] = None,
        interaction: Optional[Mapping[str, Any]] = None,
        max_density: Optional[float] = None,
    ) -> Energy: ...
    def value(self, rho: _ArrayLike, mesh: Mesh) -> float:
        """The discrete energy F_h(rho) (interaction included)."""

    @property
    def terms(self) -> list[str]:
        """Names of the terms present."""

    def to_dict(self) -> dict[str, Any]:
        """The constructor arguments."""

def step(
    rho: _ArrayLike,
    tau: float,
    energy: Energy,
    mesh: Mesh,
    solver: str = "conic",
    *,
    warm: Optional[Mapping[str, Optional[_ArrayLike]]] = None,
    checks: Optional[Mapping[str, float]] = None,
    **params: Any,
) -> tuple[_FloatArray, dict[str, Any]]:
    """One checked JKO step by the backend ``solver`` with parameters ``**params``.

    Returns ``(rho_next, info)``; rho_next has the layout of ``rho``. ``info`` holds the step
    record (energy, mass, kinetic, energy_slack, min_density, max_density, status,
    iterations, primal_residual, dual_residual, wall_time, notes) plus solver, objective,
    history, and potential / flux when the backend returns them. The GIL is released.
    """

def run(
    config: Union[_PathLike, Mapping[str, Any]],
    out: Optional[_PathLike] = None,
    *,
    solver: Optional[str] = None,
    tau: Optional[float] = None,
    steps: Optional[int] = None,
    resume: bool = False,
    force: bool = False,
    vtk: bool = False,
    base: Optional[_PathLike] = None,
    progress: Optional[Callable[[dict[str, Any]], Any]] = None,
    initial: Optional[_ArrayLike] = None,
    potential: Optional[_ArrayLike] = None,
) -> tuple[_FloatArray, dict[str, Any]]:
    """Run a config (path or dict) as ``jko run`` does; returns ``(trajectory, records)`` with
    trajectory of shape ``(steps + 1, *mesh.shape)`` and records a dict of per-step columns.
    ``initial`` / ``potential`` arrays replace the config's initial density / potential."""

def score(
    rho_prev: _ArrayLike,
    candidate: _ArrayLike,
    tau: float,
    energy: Energy,
    mesh: Mesh,
    *,
    levels: int = 4,
    normalize: bool = False,
) -> dict[str, Any]:
    """Score a candidate JKO step against the minimiser rho* of W²(rho, rho_prev)/(2 tau) + F(rho),
    as ``jko score`` does: objective, minimum, gap, relative_gap, kinetic, energy,
    minimiser_kinetic, minimiser_energy, w2_to_minimiser, l1_to_minimiser, relative_l1,
    mass_defect, certificate, method, and minimiser (rho*, in the layout of ``candidate``).
    Exact W² in 1D; multi-level conic (``levels``) in 2D/3D. The GIL is released."""

def distance(a: _ArrayLike, b: _ArrayLike, mesh: Mesh) -> float:
    """W2(a, b) (not squared) between two densities of equal mass on a 1D mesh, exact for
    cellwise-constant densities (quantiles), as ``jko distance`` prints it; 2D/3D meshes raise
    InputError (the exact grid W2 is not available yet)."""

def solvers() -> list[dict[str, Any]]:
    """Registered backends: name, summary, treats, meshes, energy_inequality, proximal, defaults."""

def example(name: str) -> str:
    """TOML text of a built-in example config."""

def examples() -> dict[str, str]:
    """Built-in examples: name -> description."""

def parse_config(text: str) -> dict[str, Any]:
    """Parse and validate TOML config text into a dict that ``run`` accepts."""

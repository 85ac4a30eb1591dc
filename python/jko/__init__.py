"""jko — Wasserstein gradient flows by the JKO scheme, on meshes, with pluggable solvers.

The Python face of the Rust engine (a PyO3 extension, ``jko._jko``). One JKO step computes

    rho_next = argmin_rho  W²(rho_prev, rho) / (2 tau) + F(rho)

with a backend chosen by name (``jko.solvers()`` lists them and the energy terms each treats).

Quick start::

    import numpy as np, jko
    mesh = jko.Mesh.grid([200], [-5.0], [5.0])
    energy = jko.Energy(entropy=1.0, potential={"kind": "quadratic", "center": [0.0], "stiffness": 1.0})
    rho0 = jko.exact.gaussian_density([1.0], 0.25, mesh.centres)
    rho1, info = jko.step(rho0, 0.1, energy, mesh, solver="conic")

    trajectory, records = jko.run(jko.parse_config(jko.example("ou-1d")))

Densities are numpy arrays of the grid's shape (``mesh.shape``) or flat over the active cells
(``mesh.n_cells``); results come back in the layout given. Configs and solver parameters use
the TOML schema of the CLI (see the README), as dicts. Errors are ``jko.JkoError`` subclasses
carrying the engine's message; solves release the GIL.
"""

from ._jko import (
    ConfigError,
    Energy,
    InputError,
    InvariantError,
    JkoError,
    Mesh,
    NotConvergedError,
    OutputError,
    SolverError,
    UnsupportedError,
    __version__,
    distance,
    example,
    examples,
    parse_config,
    run,
    score,
    solvers,
    step,
)
from . import exact

__all__ = [
    "ConfigError",
    "Energy",
    "InputError",
    "InvariantError",
    "JkoError",
    "Mesh",
    "NotConvergedError",
    "OutputError",
    "SolverError",
    "UnsupportedError",
    "__version__",
    "distance",
    "exact",
    "example",
    "examples",
    "parse_config",
    "run",
    "score",
    "solvers",
    "step",
]

"""Exact references (stubs): Ornstein–Uhlenbeck Gaussians and exact JKO iterates, Barenblatt
profiles, Fokker–Planck with a linear drift on a box.

The public names are the functions defined below (a stub exports what it defines; its imports
are not re-exported), the same list as ``__all__`` in exact.py."""

from collections.abc import Sequence
from typing import Optional

import numpy as np
import numpy.typing as npt

_FloatArray = npt.NDArray[np.float64]

def ou_jko_step(
    mean: Sequence[float],
    cov: npt.ArrayLike,
    tau: float,
    beta: float = 1.0,
    stiffness: float = 1.0,
    center: Optional[Sequence[float]] = None,
) -> tuple[_FloatArray, _FloatArray]:
    """Exact JKO iterate (exact W2) of beta ∫ rho log rho + (stiffness/2) ∫ |x-center|² rho from
    N(mean, cov) with step tau; ``cov`` is (d, d), d variances, or a scalar variance in 1D.
    Returns ``(mean, cov)`` with cov of shape (d, d)."""

def ou_jko_iterates(
    mean: Sequence[float],
    cov: npt.ArrayLike,
    tau: float,
    steps: int,
    beta: float = 1.0,
    stiffness: float = 1.0,
    center: Optional[Sequence[float]] = None,
) -> tuple[_FloatArray, _FloatArray]:
    """``steps`` exact JKO iterates; returns ``(mean, cov)``."""

def ou_flow(
    mean: Sequence[float],
    cov: npt.ArrayLike,
    t: float,
    beta: float = 1.0,
    stiffness: float = 1.0,
    center: Optional[Sequence[float]] = None,
) -> tuple[_FloatArray, _FloatArray]:
    """The exact Fokker–Planck flow at time t from N(mean, cov); returns ``(mean, cov)``."""

def gaussian_density(mean: Sequence[float], cov: npt.ArrayLike, x: npt.ArrayLike) -> _FloatArray:
    """Density of N(mean, cov) at points ``x`` of shape (..., d) (any shape in 1D)."""

def barenblatt(m: float, dim: int, mass: float, t: float, x: npt.ArrayLike) -> _FloatArray:
    """Barenblatt profile of d rho/dt = Δ rho^m (mass ``mass``, centred at 0) at time t > 0
    and points ``x`` of shape (..., dim) (any shape in 1D)."""

def barenblatt_radius(m: float, dim: int, mass: float, t: float) -> float:
    """Radius of the Barenblatt profile's support at time t."""

def drift_box(
    beta: float,
    slope: Sequence[float],
    lower: Sequence[float],
    upper: Sequence[float],
    modes: Sequence[int],
    amplitude: Sequence[float],
    t: float,
    x: npt.ArrayLike,
    mass: float = 1.0,
) -> _FloatArray:
    """Fokker–Planck with V = slope·x on a box with no-flux walls: exact solution at time t
    and points ``x`` of shape (..., d)."""

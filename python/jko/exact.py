"""Exact references: Ornstein–Uhlenbeck (Fokker–Planck with a quadratic potential) Gaussians
along the flow and along exact JKO iterates, Barenblatt profiles of the porous-medium equation,
and Fokker–Planck with a linear drift on a box.

These are the references the engine's tests use (``jko_core::exact``); compare a computed
density with them, e.g. ``jko.exact.ou_jko_step([1.0], 0.25, tau=0.1)`` gives the mean and
covariance of the exact JKO iterate from N(1, 0.5²).
"""

from ._jko import exact as _exact

ou_jko_step = _exact.ou_jko_step
ou_jko_iterates = _exact.ou_jko_iterates
ou_flow = _exact.ou_flow
gaussian_density = _exact.gaussian_density
barenblatt = _exact.barenblatt
barenblatt_radius = _exact.barenblatt_radius
drift_box = _exact.drift_box

__all__ = [
    "barenblatt",
    "barenblatt_radius",
    "drift_box",
    "gaussian_density",
    "ou_flow",
    "ou_jko_iterates",
    "ou_jko_step",
]

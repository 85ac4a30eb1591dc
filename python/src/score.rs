//! `jko.score`: the engine's [`jko::score::score`] (the JKO objective of a candidate step
//! against the true minimiser's), as `jko score CONFIG RHO_PREV.npy RHO_CANDIDATE.npy` computes
//! it from files.

use crate::convert::{cells_from_array, cells_to_py, to_py};
use crate::energy::PyEnergy;
use crate::errors;
use crate::mesh::PyMesh;
use jko::score::ScoreOptions;
use numpy::{AllowTypeChange, PyArrayLikeDyn};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Score a candidate JKO step: how far ``candidate`` (e.g. a learned operator's output) is from
/// the minimiser rho* of J(rho) = W²(rho, rho_prev)/(2 tau) + F(rho), the metric a learned
/// step is judged by (docs/mathematics.md §9). The same computation as the CLI's
/// ``jko score CONFIG RHO_PREV.npy RHO_CANDIDATE.npy --json``.
///
/// In 1D, W² is exact between cellwise-constant densities and rho* is the exact minimiser over
/// them (certified); on 2D grids without masks with an entropy (no porous medium or cap), W² is
/// the exact semi-discrete transport from rho_prev (cellwise constant) to atoms at the cell
/// centres and rho* that problem's certified minimiser; otherwise both use the multi-level
/// Benamou–Brenier discretisation with ``levels`` time levels (conic), which is not exact:
/// ``method`` says which.
///
/// Args:
///     rho_prev: rho^n, a numpy array of the grid's shape ``mesh.shape`` or flat over the active
///         cells (``mesh.n_cells``).
///     candidate: the candidate for rho^{n+1}, same layouts; same mass as rho_prev (up to a
///         relative 1e-9) unless ``normalize``.
///     tau: the time step, > 0.
///     energy: a ``jko.Energy``.
///     mesh: a ``jko.Mesh``.
///     levels: time levels L of the 2D/3D discretisation of W² (ignored in 1D).
///     normalize: rescale a candidate of another mass to rho_prev's (the defect is reported).
///
/// Returns:
///     a dict with ``method`` (``{"kind": "exact_cells"}``, ``{"kind": "semi_discrete"}`` or
///     ``{"kind": "conic_multi_level", "levels": L}``), ``objective`` J(candidate), ``minimum`` J(rho*), ``gap`` (their
///     difference), ``relative_gap``, ``kinetic``, ``energy``, ``minimiser_kinetic``,
///     ``minimiser_energy``, ``w2_to_minimiser`` W(candidate, rho*), ``l1_to_minimiser``,
///     ``relative_l1``, ``mass_defect``, ``certificate`` (bound on J(rho*) − min J), and
///     ``minimiser``: rho* in the layout of ``candidate``.
///
/// Raises:
///     InputError: a density negative, non-finite or of the wrong shape; tau <= 0; a mass
///         defect without ``normalize``; a candidate above the energy's max_density.
///     SolverError: the minimiser could not be computed.
///
/// The GIL is released during the computation.
#[pyfunction]
#[pyo3(signature = (rho_prev, candidate, tau, energy, mesh, *, levels=4, normalize=false))]
#[allow(clippy::too_many_arguments)]
pub fn score<'py>(
    py: Python<'py>,
    rho_prev: PyArrayLikeDyn<'py, f64, AllowTypeChange>,
    candidate: PyArrayLikeDyn<'py, f64, AllowTypeChange>,
    tau: f64,
    energy: &PyEnergy,
    mesh: &PyMesh,
    levels: usize,
    normalize: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let m = mesh.inner.clone();
    let (prev, _) = cells_from_array(py, &m, "rho_prev", rho_prev.as_array())?;
    let (cand, layout) = cells_from_array(py, &m, "candidate", candidate.as_array())?;
    let energy = energy.build(py, &m)?;
    let options = ScoreOptions { levels, normalize };
    let s = py
        .detach(|| jko::score::score(&m, &energy, tau, &prev, &cand, &options))
        .map_err(|e| errors::from_run(py, e))?;
    let d = to_py(py, &s)?.cast_into::<PyDict>()?;
    d.set_item("minimiser", cells_to_py(py, &m, s.minimiser, layout)?)?;
    Ok(d)
}

/// The Wasserstein distance W₂(a, b) (not squared) between two densities of equal mass — what
/// ``jko distance CONFIG A.npy B.npy`` prints: on a 1D mesh exact for cellwise-constant densities
/// (by quantiles); on a 2D/3D uniform grid without masks by the back-and-forth method (the W₂ of
/// the cell-centre measures, within O(h²) of the continuous one; issue 20).
///
/// Args:
///     a, b: cell values, numpy arrays of the grid's shape or flat over the active cells.
///     mesh: a 1D ``jko.Mesh`` or a 2D/3D grid without masks.
///
/// Returns:
///     W₂(a, b), a float.
///
/// Raises:
///     InputError: a mesh read from a file or a masked 2D/3D grid; a density negative, non-finite or of the wrong shape; unequal
///         masses (relative 1e-9).
#[pyfunction]
pub fn distance<'py>(
    py: Python<'py>,
    a: PyArrayLikeDyn<'py, f64, AllowTypeChange>,
    b: PyArrayLikeDyn<'py, f64, AllowTypeChange>,
    mesh: &PyMesh,
) -> PyResult<f64> {
    let m = mesh.inner.clone();
    let (a, _) = cells_from_array(py, &m, "a", a.as_array())?;
    let (b, _) = cells_from_array(py, &m, "b", b.as_array())?;
    jko::score::w2_distance(&m, &a, &b).map_err(|e| errors::from_run(py, e))
}

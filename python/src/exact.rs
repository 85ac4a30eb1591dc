//! `jko.exact`: the exact references of `jko_core::exact` (Ornstein–Uhlenbeck Gaussians, exact
//! JKO iterates, Barenblatt profiles, drift on a box).

use crate::errors;
use jko::core::exact::{symmetric_eigen, Barenblatt, DriftBox, Gaussian, OrnsteinUhlenbeck};
use jko::core::{finite_non_negative, finite_positive};
use ndarray::{Array1, Array2, ArrayD, IxDyn};
use numpy::{AllowTypeChange, IntoPyArray, PyArrayLikeDyn};
use pyo3::prelude::*;

/// `value` when finite and > 0 (`jko_core::finite_positive`), else an InputError naming `name`.
fn positive(py: Python<'_>, name: &str, value: f64) -> PyResult<f64> {
    finite_positive(name, value).map_err(|e| errors::from_input(py, e))
}

/// `value` when finite and >= 0 (`jko_core::finite_non_negative`), else an InputError naming
/// `name`.
fn non_negative(py: Python<'_>, name: &str, value: f64) -> PyResult<f64> {
    finite_non_negative(name, value).map_err(|e| errors::from_input(py, e))
}

/// A Gaussian from a mean and a covariance given as a (d, d) matrix, d variances, or a scalar
/// variance when d = 1. Checks symmetry and positive definiteness.
fn gaussian(
    py: Python<'_>,
    mean: Vec<f64>,
    cov: PyArrayLikeDyn<'_, f64, AllowTypeChange>,
) -> PyResult<Gaussian> {
    let d = mean.len();
    if d == 0 {
        return Err(errors::input(py, "`mean` is empty"));
    }
    if mean.iter().any(|m| !m.is_finite()) {
        return Err(errors::input(
            py,
            format!("`mean` = {mean:?}: must be finite"),
        ));
    }
    let c = cov.as_array();
    let full: Vec<f64> = match c.ndim() {
        0 | 1 if c.len() == d => {
            let vars: Vec<f64> = c.iter().copied().collect();
            let mut full = vec![0.0; d * d];
            for i in 0..d {
                full[i * d + i] = vars[i];
            }
            full
        }
        2 if c.shape() == [d, d] => c.as_standard_layout().iter().copied().collect(),
        _ => {
            return Err(errors::input(
                py,
                format!(
                    "shape mismatch in `cov`: expected ({d}, {d}), ({d},) or a scalar when d = 1, found {:?}",
                    c.shape()
                ),
            ))
        }
    };
    if full.iter().any(|v| !v.is_finite()) {
        return Err(errors::input(py, "`cov` contains a non-finite value"));
    }
    let scale = full.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    for i in 0..d {
        for j in 0..i {
            if (full[i * d + j] - full[j * d + i]).abs() > 1e-12 * scale {
                return Err(errors::input(py, "`cov` is not symmetric"));
            }
        }
    }
    let (vals, _) = symmetric_eigen(&full, d);
    if vals.iter().any(|v| v.is_nan() || *v <= 0.0) {
        return Err(errors::input(
            py,
            format!("`cov` is not positive definite (eigenvalues {vals:?})"),
        ));
    }
    Ok(Gaussian { mean, cov: full })
}

fn ou(
    py: Python<'_>,
    d: usize,
    beta: f64,
    stiffness: f64,
    center: Option<Vec<f64>>,
) -> PyResult<OrnsteinUhlenbeck> {
    positive(py, "beta", beta)?;
    non_negative(py, "stiffness", stiffness)?;
    let center = center.unwrap_or_else(|| vec![0.0; d]);
    if center.len() != d || center.iter().any(|c| !c.is_finite()) {
        return Err(errors::input(
            py,
            format!("`center` = {center:?}: expected {d} finite entries (the dimension of `mean`)"),
        ));
    }
    Ok(OrnsteinUhlenbeck {
        beta,
        stiffness,
        center,
    })
}

fn gaussian_to_py<'py>(
    py: Python<'py>,
    g: Gaussian,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let d = g.dim();
    let cov = Array2::from_shape_vec((d, d), g.cov)
        .map_err(|e| errors::raise(py, errors::Kind::Jko, e.to_string(), &[]))?;
    Ok((
        Array1::from(g.mean).into_pyarray(py).into_any(),
        cov.into_pyarray(py).into_any(),
    ))
}

/// The exact JKO iterate (exact W2) of the Fokker–Planck energy
/// beta ∫ rho log rho + (stiffness/2) ∫ |x - center|² rho from N(mean, cov) with step tau.
///
/// Returns ``(mean, cov)`` of the next Gaussian: m' = c + (m - c)/(1 + tau k); along each
/// principal axis s' = (s + sqrt(s² + 4 tau beta (1 + tau k))) / (2 (1 + tau k)).
/// ``cov`` is a (d, d) matrix, d variances, or a scalar variance in 1D.
#[pyfunction]
#[pyo3(signature = (mean, cov, tau, beta=1.0, stiffness=1.0, center=None))]
fn ou_jko_step<'py>(
    py: Python<'py>,
    mean: Vec<f64>,
    cov: PyArrayLikeDyn<'py, f64, AllowTypeChange>,
    tau: f64,
    beta: f64,
    stiffness: f64,
    center: Option<Vec<f64>>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    ou_jko_iterates(py, mean, cov, tau, 1, beta, stiffness, center)
}

/// ``steps`` exact JKO iterates from N(mean, cov) (see ``ou_jko_step``); returns ``(mean, cov)``.
#[pyfunction]
#[pyo3(signature = (mean, cov, tau, steps, beta=1.0, stiffness=1.0, center=None))]
#[allow(clippy::too_many_arguments)]
fn ou_jko_iterates<'py>(
    py: Python<'py>,
    mean: Vec<f64>,
    cov: PyArrayLikeDyn<'py, f64, AllowTypeChange>,
    tau: f64,
    steps: usize,
    beta: f64,
    stiffness: f64,
    center: Option<Vec<f64>>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    positive(py, "tau", tau)?;
    let g = gaussian(py, mean, cov)?;
    let ou = ou(py, g.dim(), beta, stiffness, center)?;
    gaussian_to_py(py, ou.jko_iterates(&g, tau, steps))
}

/// The exact Fokker–Planck flow at time t from N(mean, cov): m(t) = c + (m - c) e^{-kt},
/// S(t) = (beta/k) I + (S - (beta/k) I) e^{-2kt} (S + 2 beta t I when k = 0).
/// Returns ``(mean, cov)``.
#[pyfunction]
#[pyo3(signature = (mean, cov, t, beta=1.0, stiffness=1.0, center=None))]
fn ou_flow<'py>(
    py: Python<'py>,
    mean: Vec<f64>,
    cov: PyArrayLikeDyn<'py, f64, AllowTypeChange>,
    t: f64,
    beta: f64,
    stiffness: f64,
    center: Option<Vec<f64>>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    non_negative(py, "t", t)?;
    let g = gaussian(py, mean, cov)?;
    let ou = ou(py, g.dim(), beta, stiffness, center)?;
    gaussian_to_py(py, ou.flow(&g, t))
}

/// Points from an array whose last axis has `d` coordinates (or any shape when d = 1).
/// Returns (flat coordinates, output shape).
fn points(
    py: Python<'_>,
    x: &PyArrayLikeDyn<'_, f64, AllowTypeChange>,
    d: usize,
) -> PyResult<(Vec<f64>, Vec<usize>)> {
    let a = x.as_array();
    let shape = a.shape().to_vec();
    let flat: Vec<f64> = a.as_standard_layout().iter().copied().collect();
    if d == 1 && shape.last() != Some(&1) {
        return Ok((flat, shape));
    }
    match shape.split_last() {
        Some((&last, rest)) if last == d => Ok((flat, rest.to_vec())),
        _ => Err(errors::input(
            py,
            format!("shape mismatch in `x`: expected (..., {d}) points, found {shape:?}"),
        )),
    }
}

fn values_to_py<'py>(
    py: Python<'py>,
    values: Vec<f64>,
    shape: Vec<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let a = ArrayD::from_shape_vec(IxDyn(&shape), values)
        .map_err(|e| errors::raise(py, errors::Kind::Jko, e.to_string(), &[]))?;
    Ok(a.into_pyarray(py).into_any())
}

/// Density of N(mean, cov) at points ``x`` of shape (..., d) (any shape in 1D); for example
/// ``gaussian_density(m, S, mesh.centres)`` samples it at cell centres.
#[pyfunction]
fn gaussian_density<'py>(
    py: Python<'py>,
    mean: Vec<f64>,
    cov: PyArrayLikeDyn<'py, f64, AllowTypeChange>,
    x: PyArrayLikeDyn<'py, f64, AllowTypeChange>,
) -> PyResult<Bound<'py, PyAny>> {
    let g = gaussian(py, mean, cov)?;
    let d = g.dim();
    let (flat, shape) = points(py, &x, d)?;
    let values = flat.chunks(d).map(|p| g.density(p)).collect();
    values_to_py(py, values, shape)
}

/// The Barenblatt profile of d rho/dt = Δ rho^m in ``dim`` dimensions, of mass ``mass``,
/// centred at 0, at time t > 0 and points ``x`` of shape (..., dim) (any shape in 1D):
/// rho(t, x) = t^{-α} (C - κ |x|² t^{-2α/d})_+^{1/(m-1)}, α = d/(d(m-1)+2), κ = α(m-1)/(2md).
#[pyfunction]
fn barenblatt<'py>(
    py: Python<'py>,
    m: f64,
    dim: usize,
    mass: f64,
    t: f64,
    x: PyArrayLikeDyn<'py, f64, AllowTypeChange>,
) -> PyResult<Bound<'py, PyAny>> {
    if !(1..=3).contains(&dim) {
        return Err(errors::input(
            py,
            format!("`dim` = {dim}: must be 1, 2 or 3"),
        ));
    }
    positive(py, "t", t)?;
    let b = Barenblatt::new(m, dim, mass).map_err(|e| errors::from_input(py, e))?;
    let (flat, shape) = points(py, &x, dim)?;
    let values = flat.chunks(dim).map(|p| b.density(t, p)).collect();
    values_to_py(py, values, shape)
}

/// Radius of the support of the Barenblatt profile at time t.
#[pyfunction]
fn barenblatt_radius(py: Python<'_>, m: f64, dim: usize, mass: f64, t: f64) -> PyResult<f64> {
    positive(py, "t", t)?;
    let b = Barenblatt::new(m, dim, mass).map_err(|e| errors::from_input(py, e))?;
    Ok(b.support_radius(t))
}

/// Fokker–Planck with a linear potential V = slope·x on a box with no-flux walls (a separable
/// exact solution: stationary profile plus one decaying mode per axis), evaluated at time t and
/// points ``x`` of shape (..., d). ``amplitude`` is each mode's amplitude as a fraction in
/// [0, 1) of the largest keeping rho > 0; ``modes`` are mode numbers >= 1.
#[pyfunction]
#[pyo3(signature = (beta, slope, lower, upper, modes, amplitude, t, x, mass=1.0))]
#[allow(clippy::too_many_arguments)]
fn drift_box<'py>(
    py: Python<'py>,
    beta: f64,
    slope: Vec<f64>,
    lower: Vec<f64>,
    upper: Vec<f64>,
    modes: Vec<usize>,
    amplitude: Vec<f64>,
    t: f64,
    x: PyArrayLikeDyn<'py, f64, AllowTypeChange>,
    mass: f64,
) -> PyResult<Bound<'py, PyAny>> {
    non_negative(py, "t", t)?;
    let db = DriftBox::new(beta, slope, lower, upper, modes, amplitude, mass)
        .map_err(|e| errors::from_input(py, e))?;
    let d = db.dim();
    let (flat, shape) = points(py, &x, d)?;
    let values = flat.chunks(d).map(|p| db.density(t, p)).collect();
    values_to_py(py, values, shape)
}

/// `jko._jko.exact`, which `jko.exact` re-exports.
#[pymodule(submodule)]
pub mod exact {
    #[pymodule_export]
    use super::{
        barenblatt, barenblatt_radius, drift_box, gaussian_density, ou_flow, ou_jko_iterates,
        ou_jko_step,
    };
}

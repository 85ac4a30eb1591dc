//! `jko score CONFIG RHO_PREV.npy RHO_CANDIDATE.npy`: the JKO objective of a candidate step
//! against the true minimiser's value ([`jko::score::score`], docs/mathematics.md §9), read
//! from files as a learned operator would write them; and `jko distance CONFIG A.npy B.npy`,
//! the W₂ distance between two such files ([`distance_files`]).
//!
//! The config gives the mesh, the energy and τ (its `[initial]` and `[solver]` are not used:
//! the minimiser is computed by the scoring method, exact in 1D and on 2D grids with entropy).
//! The arrays hold cell values, grid-shaped (as `jko run` and `jko dataset` write them) or flat
//! (one value per active cell).

use crate::error::ToolError;
use jko::config::{Config, read_npy};
use jko::error::RunError;
use jko::score::{Score, ScoreOptions, score, w2_distance};
use jko_core::{InputError, Mesh};
use ndarray::Array1;
use std::path::Path;

/// Read a density for `mesh` from `path`: grid-shaped (inactive cells ignored) or flat with one
/// value per cell.
fn read_density(mesh: &Mesh, path: &Path, what: &str) -> Result<Array1<f64>, ToolError> {
    let a = read_npy(path)?;
    if a.ndim() == 1 && a.len() == mesh.n_cells() {
        return Ok(Array1::from_iter(a.iter().cloned()));
    }
    Ok(mesh.from_grid_array(what, &a).map_err(RunError::from)?)
}

/// Score the candidate in `candidate` for the step from `prev` under `config` (paths in the
/// config relative to its directory). Returns the score and the grid shape (for writing ρ*).
///
/// # Errors
/// [`RunError`] for a config, array or density that is invalid (shape, mass, sign) and for a
/// minimiser that cannot be computed; [`ToolError::Io`] for unreadable files.
///
/// ```rust
/// use jko::score::ScoreOptions;
/// use ndarray::Array1;
/// use ndarray_npy::write_npy;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let config = dir.path().join("ou.toml");
/// std::fs::write(&config, jko::examples::example("ou-1d").unwrap())?;
/// let cfg = jko::config::Config::from_file(&config)?;
/// let problem = cfg.build(dir.path())?;
/// write_npy(dir.path().join("prev.npy"), &problem.initial)?;
/// // ρⁿ itself as the candidate: not the minimiser, a positive gap.
/// let (s, shape) = jko_cli::score::score_files(
///     &config, &dir.path().join("prev.npy"), &dir.path().join("prev.npy"), &ScoreOptions::default())?;
/// assert!(s.gap > 0.0 && s.method.is_exact());
/// assert_eq!(shape, vec![problem.mesh.n_cells()]);
/// # Ok(())
/// # }
/// ```
pub fn score_files(
    config: &Path,
    prev: &Path,
    candidate: &Path,
    options: &ScoreOptions,
) -> Result<(Score, Vec<usize>), ToolError> {
    let cfg = Config::from_file(config)?;
    let base = config.parent().unwrap_or(Path::new("."));
    let mesh = cfg.mesh.build(base)?;
    let energy = cfg.energy.build(&mesh, base)?;
    let grid = mesh.as_grid().ok_or_else(|| ToolError::Unsuited {
        tool: "score",
        what: "a grid mesh (the arrays are grid-shaped)".into(),
    })?;
    let shape = grid.cells.clone();
    let rho_prev = read_density(&mesh, prev, "rho_prev")?;
    let rho_cand = read_density(&mesh, candidate, "rho_candidate")?;
    if cfg.scheme.tau <= 0.0 || !cfg.scheme.tau.is_finite() {
        return Err(RunError::from(InputError::InvalidTau(cfg.scheme.tau)).into());
    }
    let s = score(
        &mesh,
        &energy,
        cfg.scheme.tau,
        &rho_prev,
        &rho_cand,
        options,
    )?;
    Ok((s, shape))
}

/// `jko distance CONFIG A.npy B.npy`: the Wasserstein distance W₂(ρ_A, ρ_B) (not squared)
/// between two densities of equal mass on the config's mesh, exact for piecewise-constant cell
/// densities on a 1D mesh, by the back-and-forth method on 2D/3D grids without masks
/// ([`w2_distance`]).
///
/// # Errors
/// [`RunError`] for a mesh that is not a grid (or a masked 2D/3D grid), arrays of the wrong shape, negative or
/// non-finite values, or unequal masses; [`ToolError::Io`] for unreadable files.
///
/// ```rust
/// use ndarray::array;
/// use ndarray_npy::write_npy;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let config = dir.path().join("line.toml");
/// std::fs::write(&config, "mesh = { cells = [4], lower = [0.0], upper = [2.0] }\n\
///     initial = { kind = \"uniform\" }\nenergy = { entropy = 1.0 }\nscheme = { tau = 0.1, steps = 1 }\nsolver = { kind = \"conic\" }\n")?;
/// // Mass 1 uniform on [0, 1] vs on [1, 2]: a translation by 1, W₂ = 1.
/// write_npy(dir.path().join("a.npy"), &array![1.0, 1.0, 0.0, 0.0])?;
/// write_npy(dir.path().join("b.npy"), &array![0.0, 0.0, 1.0, 1.0])?;
/// let w = jko_cli::score::distance_files(&config, &dir.path().join("a.npy"), &dir.path().join("b.npy"))?;
/// assert!((w - 1.0).abs() < 1e-14);
/// # Ok(())
/// # }
/// ```
pub fn distance_files(config: &Path, a: &Path, b: &Path) -> Result<f64, ToolError> {
    let cfg = Config::from_file(config)?;
    let base = config.parent().unwrap_or(Path::new("."));
    let mesh = cfg.mesh.build(base)?;
    let rho_a = read_density(&mesh, a, "a")?;
    let rho_b = read_density(&mesh, b, "b")?;
    Ok(w2_distance(&mesh, &rho_a, &rho_b)?)
}

/// Write the minimiser ρ* of a score as a grid-shaped `.npy` (inactive cells 0).
///
/// # Errors
/// [`ToolError::Io`] when the file cannot be written.
///
/// ```rust
/// use jko::score::{ScoreOptions, score};
/// use jko_core::{Energy, Mesh, Potential};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::grid(&[8], &[0.0], &[1.0])?;
/// let rho = mesh.sample(|x| 1.0 + x[0]);
/// let rho = &rho / mesh.mass(&rho);
/// let s = score(&mesh, &Energy::fokker_planck(1.0, Potential::Quadratic { center: vec![0.5], stiffness: 1.0 }), 0.01, &rho, &rho, &ScoreOptions::default())?;
/// let dir = tempfile::tempdir()?;
/// jko_cli::score::write_minimiser(&dir.path().join("star.npy"), &s, &[8])?;
/// let back = jko::config::read_npy(&dir.path().join("star.npy"))?;
/// assert_eq!(back.shape(), &[8]);
/// # Ok(())
/// # }
/// ```
pub fn write_minimiser(path: &Path, s: &Score, shape: &[usize]) -> Result<(), ToolError> {
    let grid = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape), s.minimiser.to_vec())
        .map_err(|e| ToolError::option("--minimiser", e.to_string()))?;
    ndarray_npy::write_npy(path, &grid).map_err(|e| ToolError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })
}

/// The score as a few lines for a person (`jko score` without `--json`).
///
/// ```rust
/// use jko::score::{ScoreOptions, score};
/// use jko_core::{Energy, Mesh, Potential};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::grid(&[8], &[0.0], &[1.0])?;
/// let rho = mesh.sample(|x| 1.0 + x[0]);
/// let rho = &rho / mesh.mass(&rho);
/// let s = score(&mesh, &Energy::fokker_planck(1.0, Potential::Quadratic { center: vec![0.5], stiffness: 1.0 }), 0.01, &rho, &rho, &ScoreOptions::default())?;
/// let text = jko_cli::score::describe(&s);
/// assert!(text.contains("gap") && text.contains("exact W2"));
/// # Ok(())
/// # }
/// ```
pub fn describe(s: &Score) -> String {
    let rel = s
        .relative_gap
        .map_or("-".to_string(), |r| format!("{r:.3e}"));
    format!(
        "method      {}\n\
         J(candidate) {:+.15e}  (W2^2 {:.6e}, F {:+.6e})\n\
         J(minimiser) {:+.15e}  (W2^2 {:.6e}, F {:+.6e}; certified to {:.1e})\n\
         gap          {:.6e}  (relative to the exact step's decrease: {rel})\n\
         W2(candidate, minimiser) {:.6e}   L1 {:.6e} (relative {:.3e})   mass defect {:.1e}\n",
        s.method,
        s.objective,
        s.kinetic,
        s.energy,
        s.minimum,
        s.minimiser_kinetic,
        s.minimiser_energy,
        s.certificate,
        s.gap,
        s.w2_to_minimiser,
        s.l1_to_minimiser,
        s.relative_l1,
        s.mass_defect,
    )
}

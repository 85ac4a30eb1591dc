//! One JKO step problem as a self-contained JSON document, and what a peer program returns.
//!
//! The document carries everything that defines the discrete problem of docs/mathematics.md §2.1 — cell
//! volumes and centres, the interior faces (k, l, |σ|, d_σ), ρⁿ, τ and the frozen step energy
//! (β, m, the cell potential, ρ_max) — so that an independent program (the CVXPY + Clarabel
//! script `benches/peers/tpfa_cvxpy.py`) solves *the same* discrete problem as our backends,
//! and our side can read a problem written by someone else. Floats are written by serde_json in
//! shortest round-trip form, so a value read back (in Rust or Python) is bit-identical.

use jko_core::{Face, Grid, InputError, JkoStep, Mesh, StepEnergy};
use ndarray::Array1;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use std::path::{Path, PathBuf};

/// Format tag written into every document (checked on reading).
pub const STEP_FILE_FORMAT: &str = "jko-step-problem/1";

/// Why a step document could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum StepFileError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid document of this format.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The document describes an invalid mesh, density or energy.
    #[error(transparent)]
    Input(#[from] InputError),
}

/// The interior faces of a mesh as parallel arrays (face s joins `k[s]` and `l[s]`, oriented
/// k → l, with area |σ| and centre distance d_σ).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaceArrays {
    /// Cell each face's orientation starts from.
    pub k: Vec<usize>,
    /// Cell each face points to.
    pub l: Vec<usize>,
    /// Face measure |σ|.
    pub area: Vec<f64>,
    /// Centre distance d_σ.
    pub distance: Vec<f64>,
    /// Grid axis the face is normal to (0 on general meshes).
    pub axis: Vec<usize>,
}

/// The frozen energy of the step (docs/mathematics.md §1): f(s) = β s log s + s^m/(m−1), the cell potential
/// V_K (with any interaction W∗ρⁿ already frozen into it) and the bound ρ ≤ ρ_max.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EnergyData {
    /// Temperature β of the entropy term.
    #[serde(default)]
    pub entropy: Option<f64>,
    /// Exponent m > 1 of the porous-medium term.
    #[serde(default)]
    pub porous: Option<f64>,
    /// Cell potential V_K.
    #[serde(default)]
    pub potential: Option<Vec<f64>>,
    /// Congestion bound ρ_max.
    #[serde(default)]
    pub max_density: Option<f64>,
    /// True when `potential` contains a frozen interaction.
    #[serde(default)]
    pub interaction_frozen: bool,
}

/// One JKO step problem of the one-step two-point-flux scheme (docs/mathematics.md §2.1), as a JSON
/// document:
///
/// ```text
/// minimise  (1/(2τ)) Σ_σ G_σ²/(T_σ θ_σ) + Σ_K |K| [ f(ρ_K) + V_K ρ_K ],  T_σ = |σ|/d_σ,
/// subject to |K|(ρ_K − ρⁿ_K) + Σ_{σ∋K} ±G_σ = 0 (+ when K = k_σ),  0 ≤ ρ (≤ ρ_max).
/// ```
///
/// ```rust
/// use jko_conic::StepFile;
/// use jko_core::{Energy, JkoStep, Mesh, Potential};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::grid(&[3, 2], &[0.0, 0.0], &[1.5, 1.0])?;
/// let rho = mesh.sample(|x| 1.0 + x[0]);
/// let energy = Energy::fokker_planck(0.5, Potential::Quartic).freeze(&mesh, &rho)?;
/// let step = JkoStep::new(&mesh, &rho, 0.1, &energy)?;
/// let file = StepFile::from_step(&step);
/// // A round trip through JSON gives back the same problem, bit for bit.
/// let back: StepFile = serde_json::from_str(&serde_json::to_string(&file)?)?;
/// let (mesh2, rho2, tau2, energy2) = back.problem()?;
/// assert_eq!((rho2, tau2, energy2), (rho, 0.1, energy));
/// assert_eq!(mesh2.faces(), mesh.faces());
/// assert!(mesh2.as_grid().is_some());
/// # Ok(())
/// # }
/// ```
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepFile {
    /// [`STEP_FILE_FORMAT`].
    pub format: String,
    /// Space dimension.
    pub dim: usize,
    /// Cell volumes |K|.
    pub volumes: Vec<f64>,
    /// Cell centres, `dim` values per cell.
    pub centres: Vec<f64>,
    /// Interior faces.
    pub faces: FaceArrays,
    /// The grid the mesh was made from, when it is one: kept so that a grid mesh is read back
    /// as a grid (with its axis structure), not only as cells and faces.
    pub grid: Option<Grid>,
    /// ρⁿ (cell values).
    pub rho_prev: Vec<f64>,
    /// Time step τ.
    pub tau: f64,
    /// The step's frozen energy.
    pub energy: EnergyData,
}

impl StepFile {
    /// The document of a validated step problem.
    ///
    /// ```rust
    /// use jko_conic::StepFile;
    /// use jko_core::{Energy, JkoStep, Mesh};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[4], &[0.0], &[1.0])?;
    /// let rho = mesh.sample(|x| 2.0 - x[0]);
    /// let energy = Energy { porous: Some(2.0), ..Energy::default() }.freeze(&mesh, &rho)?;
    /// let file = StepFile::from_step(&JkoStep::new(&mesh, &rho, 0.01, &energy)?);
    /// assert_eq!((file.volumes.len(), file.faces.k.len()), (4, 3));
    /// assert_eq!(file.energy.porous, Some(2.0));
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_step(step: &JkoStep<'_>) -> StepFile {
        let mesh = step.mesh;
        let faces = mesh.faces();
        let e = step.energy;
        StepFile {
            format: STEP_FILE_FORMAT.to_string(),
            dim: mesh.dim(),
            volumes: mesh.volumes().to_vec(),
            centres: (0..mesh.n_cells())
                .flat_map(|k| mesh.centre(k).to_vec())
                .collect(),
            faces: FaceArrays {
                k: faces.iter().map(|f| f.k).collect(),
                l: faces.iter().map(|f| f.l).collect(),
                area: faces.iter().map(|f| f.area).collect(),
                distance: faces.iter().map(|f| f.distance).collect(),
                axis: faces.iter().map(|f| f.axis).collect(),
            },
            grid: mesh.as_grid().cloned(),
            rho_prev: step.rho_prev.to_vec(),
            tau: step.tau,
            energy: EnergyData {
                entropy: e.entropy,
                porous: e.porous,
                potential: e.potential.as_ref().map(|v| v.to_vec()),
                max_density: e.max_density,
                interaction_frozen: e.interaction_frozen,
            },
        }
    }

    /// The mesh, ρⁿ, τ and step energy the document describes. A grid is rebuilt as a grid
    /// and must then have exactly the document's cells and faces.
    ///
    /// # Errors
    /// [`StepFileError::Format`] for a wrong format tag, ragged face arrays or a grid that does
    /// not match the listed faces; [`StepFileError::Input`] for an invalid mesh. (Densities and
    /// the energy are checked when the caller builds a [`JkoStep`] from them.)
    ///
    /// ```rust
    /// use jko_conic::StepFile;
    /// use jko_core::{Energy, JkoStep, Mesh};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[3], &[0.0], &[1.0])?;
    /// let rho = mesh.sample(|_| 1.0);
    /// let energy = Energy { entropy: Some(1.0), ..Energy::default() }.freeze(&mesh, &rho)?;
    /// let mut file = StepFile::from_step(&JkoStep::new(&mesh, &rho, 0.1, &energy)?);
    /// file.faces.l.pop();
    /// assert!(file.problem().unwrap_err().to_string().contains("face arrays"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn problem(&self) -> Result<(Mesh, Array1<f64>, f64, StepEnergy), StepFileError> {
        let format = |message: String| StepFileError::Format {
            path: PathBuf::new(),
            message,
        };
        if self.format != STEP_FILE_FORMAT {
            return Err(format(format!(
                "format `{}`, expected `{STEP_FILE_FORMAT}`",
                self.format
            )));
        }
        let f = &self.faces;
        let nf = f.k.len();
        if [f.l.len(), f.area.len(), f.distance.len(), f.axis.len()]
            .iter()
            .any(|&len| len != nf)
        {
            return Err(format(
                "the face arrays (k, l, area, distance, axis) differ in length".into(),
            ));
        }
        let faces: Vec<Face> = (0..nf)
            .map(|s| Face {
                k: f.k[s],
                l: f.l[s],
                area: f.area[s],
                distance: f.distance[s],
                axis: f.axis[s],
            })
            .collect();
        let mesh = match &self.grid {
            Some(g) => {
                let mesh = Mesh::masked_grid(&g.cells, &g.lower, &g.upper, g.mask.clone())?;
                if mesh.faces() != faces.as_slice() || mesh.volumes() != self.volumes.as_slice() {
                    return Err(format(
                        "the grid does not produce the listed cells and faces".into(),
                    ));
                }
                mesh
            }
            None => Mesh::from_parts(self.dim, self.volumes.clone(), self.centres.clone(), faces)?,
        };
        let energy = StepEnergy {
            entropy: self.energy.entropy,
            porous: self.energy.porous,
            potential: self.energy.potential.clone().map(Array1::from),
            max_density: self.energy.max_density,
            interaction_frozen: self.energy.interaction_frozen,
        };
        Ok((mesh, Array1::from(self.rho_prev.clone()), self.tau, energy))
    }

    /// Write the document as JSON.
    ///
    /// # Errors
    /// [`StepFileError::Io`] when the file cannot be written.
    ///
    /// ```rust
    /// use jko_conic::StepFile;
    /// use jko_core::{Energy, JkoStep, Mesh};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[5], &[0.0], &[1.0])?;
    /// let rho = mesh.sample(|x| 1.0 + x[0] * x[0]);
    /// let energy = Energy { entropy: Some(1.0), ..Energy::default() }.freeze(&mesh, &rho)?;
    /// let file = StepFile::from_step(&JkoStep::new(&mesh, &rho, 0.1, &energy)?);
    /// let path = std::env::temp_dir().join(format!("jko-step-{}.json", std::process::id()));
    /// file.write(&path)?;
    /// assert_eq!(StepFile::read(&path)?, file);
    /// std::fs::remove_file(&path)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn write(&self, path: &Path) -> Result<(), StepFileError> {
        let text = serde_json::to_string(self).map_err(|e| StepFileError::Format {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        std::fs::write(path, text).map_err(|source| StepFileError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Read a document written by [`StepFile::write`] (or by another program).
    ///
    /// # Errors
    /// [`StepFileError::Io`] when the file cannot be read, [`StepFileError::Format`] when it is
    /// not a document of this format (unknown or missing keys included).
    ///
    /// ```rust
    /// use jko_conic::{StepFile, StepFileError};
    ///
    /// let path = std::env::temp_dir().join(format!("jko-bad-{}.json", std::process::id()));
    /// std::fs::write(&path, r#"{ "format": "jko-step-problem/1" }"#).unwrap();
    /// assert!(matches!(StepFile::read(&path), Err(StepFileError::Format { .. })));
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn read(path: &Path) -> Result<StepFile, StepFileError> {
        read_json(path)
    }
}

/// What the peer script `benches/peers/tpfa_cvxpy.py` writes with `--out FILE.json`: its status,
/// timings and the solution of the step problem.
///
/// ```rust
/// use jko_conic::PeerSolution;
///
/// let text = r#"{ "status": "optimal", "iterations": 30, "build_time": 0.1,
///     "solve_time": 0.5, "solver_time": 0.4, "objective": 1.5, "kinetic": 0.2,
///     "rho": [1.0, 2.0], "flux": [0.5], "potential": [0.0, 0.1] }"#;
/// let sol: PeerSolution = serde_json::from_str(text).unwrap();
/// assert_eq!(sol.rho, vec![1.0, 2.0]);
/// assert!(sol.solver_time <= sol.solve_time);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerSolution {
    /// CVXPY's status (`optimal`, `optimal_inaccurate`, ...).
    pub status: String,
    /// Interior-point iterations (Clarabel).
    pub iterations: usize,
    /// Seconds to build the CVXPY expressions.
    pub build_time: f64,
    /// Seconds of `Problem.solve` (canonicalisation + Clarabel + unpacking).
    pub solve_time: f64,
    /// Seconds inside Clarabel alone (its own report).
    pub solver_time: f64,
    /// W_h²/(2τ) + F_h at the returned point.
    pub objective: f64,
    /// Σ_σ G_σ²/(T_σ θ_σ) at the returned point.
    pub kinetic: f64,
    /// ρ^{n+1}.
    pub rho: Vec<f64>,
    /// G_σ.
    pub flux: Vec<f64>,
    /// φ (the continuity multiplier times τ, the sign of docs/mathematics.md: G = Tθ(φ_L − φ_K)).
    pub potential: Vec<f64>,
}

impl PeerSolution {
    /// Read the JSON the peer wrote.
    ///
    /// # Errors
    /// [`StepFileError::Io`] or [`StepFileError::Format`].
    ///
    /// ```rust
    /// use jko_conic::PeerSolution;
    ///
    /// let missing = std::path::Path::new("/nonexistent/peer.json");
    /// assert!(PeerSolution::read(missing).unwrap_err().to_string().contains("peer.json"));
    /// ```
    pub fn read(path: &Path) -> Result<PeerSolution, StepFileError> {
        read_json(path)
    }
}

/// A JSON document of this module read from `path` (the step file, or the peer's answer).
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, StepFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| StepFileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| StepFileError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jko_core::Energy;

    fn document(mesh: &Mesh) -> String {
        let rho = mesh.sample(|_| 1.0);
        let energy = Energy::default().freeze(mesh, &rho).unwrap();
        let step = JkoStep::new(mesh, &rho, 0.1, &energy).unwrap();
        serde_json::to_string(&StepFile::from_step(&step)).unwrap()
    }

    /// The `grid` member of the document as the peer script and older files have it: cells,
    /// lower, upper and (only for a masked grid) mask, in that order; a general mesh has none,
    /// and an unknown member of `grid` is refused.
    #[test]
    fn grid_member_keeps_its_json() {
        let mask = vec![true, false, true, true];
        let masked = Mesh::masked_grid(&[2, 2], &[0.0, -1.0], &[1.0, 1.0], Some(mask)).unwrap();
        let text = document(&masked);
        assert!(
            text.contains(
                r#""grid":{"cells":[2,2],"lower":[0.0,-1.0],"upper":[1.0,1.0],"mask":[true,false,true,true]},"#
            ),
            "{text}"
        );
        let full = Mesh::grid(&[3], &[0.0], &[1.5]).unwrap();
        let text = document(&full);
        assert!(
            text.contains(r#""grid":{"cells":[3],"lower":[0.0],"upper":[1.5]},"rho_prev":"#),
            "{text}"
        );
        let face = Face {
            k: 0,
            l: 1,
            area: 1.0,
            distance: 0.5,
            axis: 0,
        };
        let general = Mesh::from_parts(1, vec![0.5, 0.5], vec![0.25, 0.75], vec![face]).unwrap();
        assert!(!document(&general).contains("grid"));

        let extra = text.replace(r#""upper":[1.5]"#, r#""upper":[1.5],"spacing":[0.5]"#);
        let err = serde_json::from_str::<StepFile>(&extra).unwrap_err();
        assert!(err.to_string().contains("spacing"), "{err}");
        let back: StepFile = serde_json::from_str(&text).unwrap();
        assert_eq!(back.problem().unwrap().0.as_grid(), full.as_grid());
    }
}

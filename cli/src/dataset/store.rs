//! The files of a dataset shard: NPY arrays allocated at their final shape and written row by
//! row as samples finish, the append-only progress log that makes a shard resumable, and the
//! manifest written when every row is settled.
//!
//! A row is written in place (`seek` + `write`) before its progress line is appended, so a
//! progress line always describes bytes already in the file; a line cut by a crash is
//! dropped on resume and its sample recomputed (every sample depends only on the spec and its
//! index, so the recomputed bytes are the same).

use crate::error::ToolError;
use jko::error::RunError;
use jko::score::ScoreMethod;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{DatasetSpec, Shard};

/// Header of an NPY (format 1.0) file of little-endian float64 in C order with this shape,
/// padded so that the data starts at a multiple of 64 bytes (numpy's own layout).
fn npy_header(shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let dict = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape_text}, }}");
    let unpadded = 10 + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    let len = (dict.len() + pad + 1) as u16;
    let mut header = b"\x93NUMPY\x01\x00".to_vec();
    header.extend_from_slice(&len.to_le_bytes());
    header.extend_from_slice(dict.as_bytes());
    header.extend(std::iter::repeat_n(b' ', pad));
    header.push(b'\n');
    header
}

/// An NPY array of shape `[rows, row shape…]` whose rows are written independently.
pub(crate) struct RowFile {
    path: PathBuf,
    file: Mutex<File>,
    header: u64,
    row_len: usize,
}

impl RowFile {
    /// Create (or truncate) the file at its full size: rows not yet written read as 0.
    pub fn create(path: &Path, shape: &[usize]) -> Result<RowFile, ToolError> {
        let header = npy_header(shape);
        let row_len: usize = shape[1..].iter().product();
        let bytes = header.len() as u64 + 8 * (shape[0] * row_len) as u64;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| ToolError::io(path, e))?;
        file.write_all(&header)
            .map_err(|e| ToolError::io(path, e))?;
        file.set_len(bytes).map_err(|e| ToolError::io(path, e))?;
        Ok(RowFile {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            header: header.len() as u64,
            row_len,
        })
    }

    /// Open a file made by [`RowFile::create`] with the same shape (resume, retry).
    pub fn open(path: &Path, shape: &[usize]) -> Result<RowFile, ToolError> {
        let expected = npy_header(shape);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| ToolError::io(path, e))?;
        let mut found = vec![0u8; expected.len()];
        let row_len: usize = shape[1..].iter().product();
        let size = file.metadata().map_err(|e| ToolError::io(path, e))?.len();
        let ok = file.read_exact(&mut found).is_ok()
            && found == expected
            && size == expected.len() as u64 + 8 * (shape[0] * row_len) as u64;
        if !ok {
            return Err(RunError::Npy {
                path: path.to_path_buf(),
                message: format!(
                    "not the array this shard writes (float64, shape {shape:?}): was the spec changed? start over with --force"
                ),
            }
            .into());
        }
        Ok(RowFile {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            header: expected.len() as u64,
            row_len,
        })
    }

    /// Write row `row` (exactly `row_len` values).
    pub fn write_row(&self, row: usize, values: &[f64]) -> Result<(), ToolError> {
        debug_assert_eq!(values.len(), self.row_len);
        let mut bytes = Vec::with_capacity(8 * values.len());
        for v in values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let offset = self.header + 8 * (row * self.row_len) as u64;
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.write_all(&bytes))
            .map_err(|e| ToolError::io(&self.path, e))
    }

    /// Read row `row` back (`row_len` values).
    pub fn read_row(&self, row: usize) -> Result<Vec<f64>, ToolError> {
        let mut bytes = vec![0u8; 8 * self.row_len];
        let offset = self.header + 8 * (row * self.row_len) as u64;
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(|e| ToolError::io(&self.path, e))?;
        Ok(bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            .collect())
    }

    /// Values per row.
    pub fn row_len(&self) -> usize {
        self.row_len
    }
}

/// Names of the files a shard writes (in the output directory).
///
/// ```rust
/// use jko_cli::dataset::{Shard, ShardFiles};
///
/// let files = ShardFiles::of(Shard::new(1, 4).unwrap());
/// assert_eq!(files.trajectories, "trajectories_00001-of-00004.npy");
/// assert_eq!(files.progress, "progress_00001-of-00004.jsonl");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardFiles {
    /// `inputs_SHARD.npy`: the initial densities.
    pub inputs: String,
    /// `trajectories_SHARD.npy`: ρ⁰ … ρ^steps of every sample.
    pub trajectories: String,
    /// `energies_SHARD.npy`: F_h(ρⁿ) of every sample and step.
    pub energies: String,
    /// `progress_SHARD.jsonl`: the append-only log of settled samples (resume, retry).
    pub progress: String,
}

impl ShardFiles {
    /// The file names of `shard`.
    ///
    /// ```rust
    /// let files = jko_cli::dataset::ShardFiles::of(jko_cli::dataset::Shard::all());
    /// assert_eq!(files.inputs, "inputs_00000-of-00001.npy");
    /// ```
    pub fn of(shard: Shard) -> ShardFiles {
        let tag = shard.tag();
        ShardFiles {
            inputs: format!("inputs_{tag}.npy"),
            trajectories: format!("trajectories_{tag}.npy"),
            energies: format!("energies_{tag}.npy"),
            progress: format!("progress_{tag}.jsonl"),
        }
    }
}

/// Array shapes of a shard (`n` samples, `steps + 1` states, `cells…` the grid).
///
/// ```rust
/// let s = jko_cli::dataset::ShardShapes::new(3, 5, &[8, 8]);
/// assert_eq!((s.inputs, s.trajectories, s.energies), (vec![3, 8, 8], vec![3, 6, 8, 8], vec![3, 6]));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardShapes {
    /// `[n, cells…]`.
    pub inputs: Vec<usize>,
    /// `[n, steps + 1, cells…]`.
    pub trajectories: Vec<usize>,
    /// `[n, steps + 1]`.
    pub energies: Vec<usize>,
}

impl ShardShapes {
    /// The shapes for `n` samples of `steps` steps on a grid of `cells`.
    ///
    /// ```rust
    /// assert_eq!(jko_cli::dataset::ShardShapes::new(2, 1, &[4]).trajectories, [2, 2, 4]);
    /// ```
    pub fn new(n: usize, steps: usize, cells: &[usize]) -> ShardShapes {
        let shape = |lead: &[usize]| -> Vec<usize> { lead.iter().chain(cells).cloned().collect() };
        ShardShapes {
            inputs: shape(&[n]),
            trajectories: shape(&[n, steps + 1]),
            energies: vec![n, steps + 1],
        }
    }
}

/// How a sample ended.
///
/// ```rust
/// use jko_cli::dataset::SampleStatus;
///
/// assert_eq!(serde_json::to_string(&SampleStatus::Failed).unwrap(), "\"failed\"");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleStatus {
    /// Its rows hold its trajectory.
    Ok,
    /// Its rows are NaN; `error` says why.
    Failed,
}

/// Distance of one dataset step to the exact-W² step from the same ρⁿ ([`jko::score`]).
///
/// ```rust
/// use jko_cli::dataset::StepQuality;
///
/// let q = StepQuality { step: 1, gap: 1e-9, relative_gap: Some(1e-6), w2_to_exact: 1e-5, relative_l1: 1e-4 };
/// assert!(serde_json::to_string(&q).unwrap().contains("\"w2_to_exact\""));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepQuality {
    /// Step number n (the step from ρⁿ⁻¹ to ρⁿ).
    pub step: usize,
    /// J(ρⁿ) − J(ρ*): the suboptimality gap of the dataset's step.
    pub gap: f64,
    /// gap / (F(ρⁿ⁻¹) − J(ρ*)).
    pub relative_gap: Option<f64>,
    /// W(ρⁿ, ρ*).
    pub w2_to_exact: f64,
    /// Σ|K||ρⁿ − ρ*| / mass.
    pub relative_l1: f64,
}

/// One row of a shard: which sample, how it ended, who computed it.
///
/// ```rust
/// use jko_cli::dataset::{SampleRecord, SampleStatus};
///
/// let r = SampleRecord { index: 7, family: 0, status: SampleStatus::Ok, backend: "newton".into(), error: None, quality: vec![], quality_error: None };
/// let text = serde_json::to_string(&r).unwrap();
/// assert_eq!(text, r#"{"index":7,"family":0,"status":"ok","backend":"newton"}"#);
/// ```
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleRecord {
    /// The sample index (its random initial density depends only on the spec and this).
    pub index: usize,
    /// The family (index into the spec's `[[initial]]`) it was drawn from.
    pub family: usize,
    /// Ok, or failed (rows NaN).
    pub status: SampleStatus,
    /// The backend of the last attempt (a retry may use another than the spec's).
    pub backend: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Distances to exact-W² steps, for the samples of the quality subset.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quality: Vec<StepQuality>,
    /// Why its quality could not be measured (the reference step or W² failed); the sample
    /// itself is kept. Absent when measured or not in the quality subset.
    pub quality_error: Option<String>,
}

/// The first line of a progress log: what the shard is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ProgressHeader {
    jko_version: String,
    shard: Shard,
    spec: DatasetSpec,
}

/// A line of a progress log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ProgressLine {
    // Boxed: the header carries the whole spec (a config), ten times a sample line's size.
    Dataset(Box<ProgressHeader>),
    Sample {
        #[serde(flatten)]
        record: SampleRecord,
        wall_time: f64,
    },
}

/// The append-only progress log of a shard.
pub(crate) struct ProgressLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl ProgressLog {
    /// Start a log for `shard` of `spec` (truncating any old one).
    pub fn create(path: &Path, spec: &DatasetSpec, shard: Shard) -> Result<ProgressLog, ToolError> {
        let file = File::create(path).map_err(|e| ToolError::io(path, e))?;
        let log = ProgressLog {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        };
        log.append(&ProgressLine::Dataset(Box::new(ProgressHeader {
            jko_version: env!("CARGO_PKG_VERSION").into(),
            shard,
            spec: spec.clone(),
        })))?;
        Ok(log)
    }

    /// Open an existing log: check it belongs to `spec` and `shard`, drop a line cut by a
    /// crash, and return the settled samples (the last line of each wins) with the log.
    pub fn open(
        path: &Path,
        spec: &DatasetSpec,
        shard: Shard,
    ) -> Result<(ProgressLog, Vec<SampleRecord>), ToolError> {
        let file = File::open(path).map_err(|e| ToolError::io(path, e))?;
        let mut lines = Vec::new();
        let mut good_bytes = 0u64;
        for line in BufReader::new(file).split(b'\n') {
            let line = line.map_err(|e| ToolError::io(path, e))?;
            match serde_json::from_slice::<ProgressLine>(&line) {
                Ok(parsed) => {
                    good_bytes += line.len() as u64 + 1;
                    lines.push(parsed);
                }
                // A cut last line (a crash while appending): dropped below.
                Err(_) => break,
            }
        }
        let header = match lines.first() {
            Some(ProgressLine::Dataset(h)) => (**h).clone(),
            _ => {
                return Err(ToolError::option(
                    "--resume",
                    format!(
                        "{} is not a dataset progress log; start over with --force",
                        path.display()
                    ),
                ));
            }
        };
        if header.shard != shard || header.spec != *spec {
            return Err(ToolError::option(
                "--resume",
                format!(
                    "{} was started with another spec or shard ({}); finish it with that spec, or start over with --force",
                    path.display(),
                    header.shard
                ),
            ));
        }
        let mut records: Vec<SampleRecord> = Vec::new();
        for line in lines.into_iter().skip(1) {
            if let ProgressLine::Sample { record, .. } = line {
                match records.iter_mut().find(|r| r.index == record.index) {
                    Some(old) => *old = record,
                    None => records.push(record),
                }
            }
        }
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| ToolError::io(path, e))?;
        // Cut what did not parse, then append after the good lines.
        file.set_len(good_bytes)
            .map_err(|e| ToolError::io(path, e))?;
        let mut file = file;
        file.seek(SeekFrom::End(0))
            .map_err(|e| ToolError::io(path, e))?;
        Ok((
            ProgressLog {
                path: path.to_path_buf(),
                file: Mutex::new(file),
            },
            records,
        ))
    }

    /// Append the record of a settled sample.
    pub fn record(&self, record: &SampleRecord, wall_time: f64) -> Result<(), ToolError> {
        self.append(&ProgressLine::Sample {
            record: record.clone(),
            wall_time,
        })
    }

    fn append(&self, line: &ProgressLine) -> Result<(), ToolError> {
        let mut text = serde_json::to_string(line).map_err(|source| ToolError::Json {
            path: self.path.clone(),
            source,
        })?;
        text.push('\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(text.as_bytes())
            .and_then(|_| file.flush())
            .map_err(|e| ToolError::io(&self.path, e))
    }
}

/// Summary of the quality subset of a shard: how far its steps are from exact-W² steps.
///
/// ```rust
/// use jko_cli::dataset::QualitySummary;
///
/// let q = QualitySummary { reference: jko::score::ScoreMethod::ExactCells, samples: vec![0], steps: 3,
///     max_gap: 1e-9, max_relative_gap: Some(1e-6), max_w2_to_exact: 1e-4, max_relative_l1: 1e-3 };
/// assert!(serde_json::to_string(&q).unwrap().contains("exact_cells"));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualitySummary {
    /// What the reference steps are (exact W² in 1D; multi-level conic in 2D/3D).
    pub reference: ScoreMethod,
    /// The measured samples of this shard (their per-step numbers are in `samples`).
    pub samples: Vec<usize>,
    /// Steps measured in all.
    pub steps: usize,
    /// Largest suboptimality gap.
    pub max_gap: f64,
    /// Largest relative gap.
    pub max_relative_gap: Option<f64>,
    /// Largest W(ρⁿ, ρ*).
    pub max_w2_to_exact: f64,
    /// Largest relative L1 distance to ρ*.
    pub max_relative_l1: f64,
}

/// Contents of `manifest_SHARD.json`, written when every sample of the shard is settled.
/// Deterministic (no timings: those are in the progress log), so the same spec and shard
/// give identical files.
///
/// ```rust
/// use jko_cli::dataset::{DatasetOptions, DatasetSpec, Manifest, SampleStatus, Shard, run_dataset};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let spec = DatasetSpec::from_toml(r#"
///     samples = 2
///     seed = 1
///     [base]
///     mesh = { cells = [8, 8], lower = [-1.0, -1.0], upper = [1.0, 1.0] }
///     energy = { entropy = 1.0 }
///     scheme = { tau = 0.05, steps = 1 }
///     solver = { kind = "newton" }
///     [[initial]]
///     kind = "smooth_field"
///     modes = 2
///     max_wavenumber = 2
///     amplitude = 0.5
/// "#)?;
/// let out = tempfile::tempdir()?;
/// let manifest = run_dataset(&spec, ".".as_ref(), out.path(), Shard::all(), &DatasetOptions::default())?;
/// assert_eq!(Manifest::read(out.path(), Shard::all())?, manifest);
/// assert_eq!((manifest.sample_indices(), manifest.times.clone()), (vec![0, 1], vec![0.0, 0.05]));
/// assert!(manifest.samples.iter().all(|s| s.status == SampleStatus::Ok && s.backend == "newton"));
/// # Ok(())
/// # }
/// ```
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Version of the crate that wrote the shard.
    pub jko_version: String,
    /// The spec's backend (a row's own is in `samples`).
    pub solver: String,
    /// Which shard this is.
    pub shard: Shard,
    /// One record per row of the arrays, in row order.
    pub samples: Vec<SampleRecord>,
    /// Number of failed rows (NaN in the arrays).
    pub failed: usize,
    /// t_n = nτ of each trajectory column, n = 0..=steps.
    pub times: Vec<f64>,
    /// The files of the shard.
    pub files: ShardFiles,
    /// The array shapes.
    pub shapes: ShardShapes,
    /// Element type of the arrays (`float64`).
    pub dtype: String,
    /// Distances of the quality subset's steps to exact-W² steps (see the spec's `[quality]`).
    pub quality: Option<QualitySummary>,
    /// The spec the shard was made from.
    pub spec: DatasetSpec,
}

impl Manifest {
    /// Sample index of each row.
    ///
    /// ```rust
    /// # use jko_cli::dataset::*;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let spec = DatasetSpec::from_toml("samples = 3\nseed = 1\n[base]\nmesh = { cells = [8], lower = [-1.0], upper = [1.0] }\nenergy = { entropy = 1.0 }\nscheme = { tau = 0.05, steps = 1 }\nsolver = { kind = \"newton\" }\n[[initial]]\nkind = \"smooth_field\"\nmodes = 2\nmax_wavenumber = 2\namplitude = 0.5")?;
    /// # let out = tempfile::tempdir()?;
    /// let m = run_dataset(&spec, ".".as_ref(), out.path(), Shard::new(1, 2)?, &DatasetOptions::default())?;
    /// assert_eq!(m.sample_indices(), [1]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn sample_indices(&self) -> Vec<usize> {
        self.samples.iter().map(|s| s.index).collect()
    }

    /// Read `manifest_SHARD.json` of `shard` in `dir`.
    ///
    /// # Errors
    /// [`ToolError::Io`] when it cannot be read (a shard not finished has none);
    /// [`ToolError::Json`] when it does not parse.
    ///
    /// ```rust
    /// use jko_cli::dataset::{Manifest, Shard};
    ///
    /// assert!(Manifest::read("no/such/dir".as_ref(), Shard::all()).is_err());
    /// ```
    pub fn read(dir: &Path, shard: Shard) -> Result<Manifest, ToolError> {
        let path = dir.join(super::manifest_file(shard));
        let text = std::fs::read_to_string(&path).map_err(|e| ToolError::io(&path, e))?;
        serde_json::from_str(&text).map_err(|source| ToolError::Json { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_numpy_layout() {
        for shape in [vec![3], vec![2, 4], vec![1000, 11, 128, 128]] {
            let h = npy_header(&shape);
            assert_eq!(h.len() % 64, 0, "{shape:?}");
            assert_eq!(&h[..8], b"\x93NUMPY\x01\x00");
            assert_eq!(*h.last().unwrap(), b'\n');
        }
        let text = String::from_utf8(npy_header(&[3])[10..].to_vec()).unwrap();
        assert!(text.starts_with("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }"));
    }

    #[test]
    fn rows_written_out_of_order_read_back_with_ndarray_npy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.npy");
        let f = RowFile::create(&path, &[3, 2, 2]).unwrap();
        f.write_row(2, &[9.0, 10.0, 11.0, 12.0]).unwrap();
        f.write_row(0, &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(f.read_row(2).unwrap(), [9.0, 10.0, 11.0, 12.0]);
        drop(f);
        let a: ndarray::ArrayD<f64> =
            ndarray_npy::ReadNpyExt::read_npy(File::open(&path).unwrap()).unwrap();
        assert_eq!(a.shape(), &[3, 2, 2]);
        assert_eq!(a[[0, 1, 1]], 4.0);
        assert_eq!(a[[1, 0, 0]], 0.0);
        assert_eq!(a[[2, 0, 1]], 10.0);
        // Reopened with the same shape it is accepted; with another, refused.
        assert!(RowFile::open(&path, &[3, 2, 2]).is_ok());
        assert!(RowFile::open(&path, &[3, 4]).is_err());
    }
}

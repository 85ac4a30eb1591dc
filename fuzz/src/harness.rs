//! The fuzzing harness, shared by the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`) and the
//! regression tests (`tests/integration/fuzz_regressions.rs`, which includes this file with `#[path]`), so
//! a crash input replays through exactly the code the fuzzer ran.
//!
//! - [`fuzz_config`]: TOML text → [`Config::from_toml`] → [`Config::build_with`] (mesh,
//!   energy, initial density, as `jko run` builds them) → the backend and the checked stepper
//!   (`jko::plan::Plan::build_with`, as `jko::run` plans it) → the initial energy; plus a serialisation round trip
//!   (`to_toml` → `from_toml` → `to_toml` is a fixed point: run directories store the config
//!   this way and `--resume` reads it back).
//! - [`fuzz_npy`]: bytes → [`read_npy_from`] (the reader behind every `.npy` file the engine
//!   opens) → the array used as a mesh mask, a cell potential and an initial density.
//!
//! `.npy` paths in a fuzzed config never reach the file system: [`fixture`] serves a few
//! in-memory arrays, encoded as `.npy` bytes and decoded by the real reader.

#![allow(dead_code)] // each target uses part of the harness

use jko::config::{Config, InitialConfig, PotentialConfig, read_npy_from};
use jko::core::mesh::MAX_CELLS;
use jko::error::RunError;
use ndarray::{ArrayD, IxDyn};
use std::path::{Path, PathBuf};

/// Meshes the config harness builds: at most 2^16 cells. The engine's hard limit,
/// `jko_core::mesh::MAX_CELLS` = 2^27, admits meshes of over 20 GB, and its memory check
/// (`[limits] max_memory_gib`, default the memory available) can be raised by the config
/// itself, so a mesh between the two sizes is skipped (not an error); one above `MAX_CELLS`
/// goes to the engine, which must refuse it without allocating.
pub const FUZZ_MAX_CELLS: usize = 1 << 16;

/// What the harness made of one input. Panics (and aborts, OOMs, timeouts) are the findings.
#[derive(Debug)]
pub enum Verdict {
    /// Everything was built; the number of active cells.
    Built(usize),
    /// The engine refused the input with a typed error.
    Rejected(RunError),
    /// The input asks for more than the harness lets through (see [`FUZZ_MAX_CELLS`]).
    Skipped(&'static str),
}

impl Verdict {
    fn of(r: Result<usize, RunError>) -> Verdict {
        match r {
            Ok(n) => Verdict::Built(n),
            Err(e) => Verdict::Rejected(e),
        }
    }
}

/// Config text through the engine, as `jko run` goes (no step is taken).
pub fn fuzz_config(text: &str) -> Verdict {
    let config = match Config::from_toml(text) {
        Ok(c) => c,
        Err(e) => return Verdict::Rejected(e),
    };
    round_trip(&config);
    let cells = config
        .mesh
        .cells
        .iter()
        .try_fold(1usize, |acc, &c| acc.checked_mul(c));
    if let Some(n) = cells
        && n > FUZZ_MAX_CELLS
        && n <= MAX_CELLS
    {
        return Verdict::Skipped("mesh larger than FUZZ_MAX_CELLS");
    }
    Verdict::of(build_like_run(&config, &fixture))
}

/// `to_toml` must give text that parses back to a config printing the same text.
fn round_trip(config: &Config) {
    let text = config.to_toml();
    let back = Config::from_toml(&text)
        .unwrap_or_else(|e| panic!("to_toml gave unparseable text ({e}):\n{text}"));
    assert_eq!(back.to_toml(), text, "to_toml is not a fixed point");
}

fn build_like_run(config: &Config, load: &jko::config::NpyLoader) -> Result<usize, RunError> {
    let plan = jko::plan::Plan::build_with(config, load)?;
    plan.stepper()?;
    let problem = &plan.problem;
    problem.energy.value(&problem.mesh, &problem.initial)?;
    Ok(problem.mesh.n_cells())
}

/// The arrays a fuzzed config may name, by file stem; any other path is a missing file.
/// Each is encoded as `.npy` bytes and decoded by [`read_npy_from`], shape `[4]`, `[4, 4]` or
/// `[2, 2, 2]` by the first letter after the kind: `ones1`, `ramp2`, `nan3`, ...
pub fn fixture(path: &Path) -> Result<ArrayD<f64>, RunError> {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let missing = || {
        RunError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such fixture"),
        )
    };
    let (kind, dim) = stem.split_at(stem.len().saturating_sub(1));
    let shape: &[usize] = match dim {
        "1" => &[4],
        "2" => &[4, 4],
        "3" => &[2, 2, 2],
        _ => return Err(missing()),
    };
    let n: usize = shape.iter().product();
    let values: Vec<f64> = match kind {
        "ones" => vec![1.0; n],
        "zeros" => vec![0.0; n],
        "ramp" => (0..n).map(|i| i as f64 - 1.5).collect(),
        "nan" => (0..n)
            .map(|i| if i == 1 { f64::NAN } else { 1.0 })
            .collect(),
        "inf" => (0..n)
            .map(|i| if i == 2 { f64::INFINITY } else { 1.0 })
            .collect(),
        "neg" => (0..n).map(|i| if i == 0 { -1.0 } else { 1.0 }).collect(),
        _ => return Err(missing()),
    };
    read_npy_from(&npy_bytes(shape, &values, false)[..], path)
}

/// A version-1.0 `.npy` file of little-endian float64 values (given in C order; stored
/// transposed when `fortran` is set), as numpy writes it.
pub fn npy_bytes(shape: &[usize], values: &[f64], fortran: bool) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let order = if fortran { "True" } else { "False" };
    let mut header = format!("{{'descr': '<f8', 'fortran_order': {order}, 'shape': {tuple}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    let stored: Vec<f64> = if fortran {
        let c = ArrayD::from_shape_vec(IxDyn(shape), values.to_vec()).expect("shape of values");
        c.t().iter().copied().collect()
    } else {
        values.to_vec()
    };
    for v in stored {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// `.npy` bytes through the reader, then (arrays of 1–3 axes and at most [`FUZZ_MAX_CELLS`]
/// entries) through the three consumers of config arrays on a mesh of the array's shape.
/// Returns the reader's verdict; the consumers' outcomes are in `uses`.
pub fn fuzz_npy(bytes: &[u8]) -> (Verdict, Vec<Verdict>) {
    let arr = match read_npy_from(bytes, Path::new("fuzz.npy")) {
        Ok(a) => a,
        Err(e) => return (Verdict::Rejected(e), Vec::new()),
    };
    let shape = arr.shape().to_vec();
    if !(1..=3).contains(&shape.len())
        || shape.contains(&0)
        || shape.iter().product::<usize>() > FUZZ_MAX_CELLS
    {
        return (Verdict::Built(arr.len()), Vec::new());
    }
    let load = |_: &Path| Ok(arr.clone());
    let npy = || PathBuf::from("fuzz.npy");
    let axes = shape.len();
    let base = Config::from_toml(&format!(
        "mesh = {{ cells = {shape:?}, lower = {:?}, upper = {:?} }}\n\
         initial = {{ kind = \"uniform\" }}\n\
         energy = {{ entropy = 1.0 }}\n\
         scheme = {{ tau = 0.1, steps = 1 }}\n\
         solver = {{ kind = \"newton\" }}\n",
        vec![0.0; axes],
        vec![1.0; axes],
    ))
    .expect("the harness's config is valid");
    let mut as_mask = base.clone();
    as_mask.mesh.mask = Some(npy());
    let mut as_potential = base.clone();
    as_potential.energy.potential = Some(PotentialConfig::Npy { path: npy() });
    let mut as_initial = base;
    as_initial.initial = InitialConfig::Npy {
        path: npy(),
        mass: None,
    };
    let uses = [as_mask, as_potential, as_initial]
        .iter()
        .map(|c| Verdict::of(build_like_run(c, &load)))
        .collect();
    (Verdict::Built(arr.len()), uses)
}

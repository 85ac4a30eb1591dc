//! `jko dataset-zarr DIR --out STORE.zarr`: the finished shards of a dataset merged into one
//! Zarr (format 2) store, for ML code that wants the whole dataset as one chunked array.
//!
//! Why Zarr beside the NPY shards: the shards are one file per shard and array, sized for the
//! writers (each job streams its own rows); a training job wants one array indexed by sample,
//! read in chunks from local disk or an object store, without knowing the sharding. Zarr v2 is
//! the simplest format that does this and that numpy-only code can still read by hand: a
//! directory per array with a JSON header (`.zarray`) and one raw file per chunk. The store is
//! written without compression (raw little-endian float64, C order), so a chunk file is exactly
//! `prod(chunks)` values; HDF5 would need a C library for the same job.
//!
//! Layout (`zarr.open(STORE)` in Python gives a group):
//! - `inputs` `[samples, cells…]`, `trajectories` `[samples, steps + 1, cells…]`, `energies`
//!   `[samples, steps + 1]` (float64; rows of failed samples NaN, as in the shards), chunked
//!   along the sample axis only (`chunks[0]` rows of about 8 MiB of trajectories per chunk);
//! - `ok` `[samples]` (bool): false for a failed sample;
//! - the group's `.zattrs`: `times`, `solver`, `backends` (per sample), `errors` (index →
//!   message of the failed samples), `jko_version`, and the `spec`.
//!
//! Memory is one chunk: rows are read from the shards' NPY files and written chunk by chunk.

use super::{DatasetSpec, Manifest, SampleStatus, Shard, manifest_file};
use crate::error::ToolError;
use serde_json::json;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use super::store::RowFile;

/// Bytes of trajectories aimed at per chunk.
const CHUNK_BYTES: usize = 8 << 20;

/// What [`export_zarr`] wrote.
///
/// ```rust
/// let s = jko_cli::dataset::ZarrSummary { samples: 4, failed: 1, shards: 2, rows_per_chunk: 4, chunks: 1 };
/// assert_eq!(s.samples - s.failed, 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZarrSummary {
    /// Samples in the store (the spec's `samples`).
    pub samples: usize,
    /// Failed samples (NaN rows, `ok` false).
    pub failed: usize,
    /// Shards merged.
    pub shards: usize,
    /// Rows per chunk along the sample axis.
    pub rows_per_chunk: usize,
    /// Chunks per array.
    pub chunks: usize,
}

/// Merge the finished shards in `dir` (every `manifest_*.json` of one spec, all `count` shards
/// of it present) into a Zarr v2 store at `out` (see the module docs).
///
/// # Errors
/// [`ToolError::Option`] when `dir` holds no finished shard, shards of different specs, or not
/// all shards of the split; when `out` exists; [`ToolError::Io`] / [`ToolError::Json`] for
/// files that cannot be read or written; [`jko::error::RunError::Npy`] for a shard array that
/// is not the one its manifest describes.
///
/// ```rust
/// use jko_cli::dataset::{DatasetOptions, DatasetSpec, Shard, export_zarr, run_dataset};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let spec = DatasetSpec::from_toml("samples = 3\nseed = 1\n[base]\nmesh = { cells = [8], lower = [-1.0], upper = [1.0] }\nenergy = { entropy = 1.0 }\nscheme = { tau = 0.05, steps = 2 }\nsolver = { kind = \"newton\" }\n[[initial]]\nkind = \"smooth_field\"\nmodes = 2\nmax_wavenumber = 2\namplitude = 0.5")?;
/// let dir = tempfile::tempdir()?;
/// for i in 0..2 {
///     run_dataset(&spec, ".".as_ref(), dir.path(), Shard::new(i, 2)?, &DatasetOptions::default())?;
/// }
/// let store = dir.path().join("all.zarr");
/// let s = export_zarr(dir.path(), &store)?;
/// assert_eq!((s.samples, s.shards, s.failed), (3, 2, 0));
/// // Sample 1 (shard 1's row 0) is chunk 0's row 1: 3 states of 8 cells after sample 0's.
/// let chunk = std::fs::read(store.join("trajectories").join("0.0.0"))?;
/// let traj = jko::config::read_npy(&dir.path().join("trajectories_00001-of-00002.npy"))?;
/// let v = f64::from_le_bytes(chunk[8 * 24..8 * 25].try_into()?);
/// assert_eq!(v, traj[[0, 0, 0]]);
/// # Ok(())
/// # }
/// ```
pub fn export_zarr(dir: &Path, out: &Path) -> Result<ZarrSummary, ToolError> {
    if out.exists() {
        return Err(ToolError::option(
            "--out",
            format!("{} exists; choose a new store path", out.display()),
        ));
    }
    let manifests = read_manifests(dir)?;
    let first = &manifests[0];
    let count = first.shard.count;
    let spec: &DatasetSpec = &first.spec;
    let samples = spec.samples;
    let cells = first.shapes.inputs[1..].to_vec();
    let states = first.shapes.energies[1];
    // Open every shard's arrays with the shapes its manifest states.
    let mut shards = Vec::with_capacity(count);
    for m in &manifests {
        let open = |name: &str, shape: &[usize]| RowFile::open(&dir.join(name), shape);
        shards.push((
            open(&m.files.inputs, &m.shapes.inputs)?,
            open(&m.files.trajectories, &m.shapes.trajectories)?,
            open(&m.files.energies, &m.shapes.energies)?,
        ));
    }
    let row_bytes = 8 * states * cells.iter().product::<usize>();
    let rows = (CHUNK_BYTES / row_bytes.max(1)).clamp(1, samples.max(1));
    let chunks = samples.div_ceil(rows);
    let lead = |tail: &[usize]| -> Vec<usize> { [samples].iter().chain(tail).cloned().collect() };
    let chunked = |tail: &[usize]| -> Vec<usize> { [rows].iter().chain(tail).cloned().collect() };
    let traj_tail: Vec<usize> = [states].iter().chain(&cells).cloned().collect();

    fs::create_dir_all(out).map_err(|e| ToolError::io(out, e))?;
    write_json(&out.join(".zgroup"), &json!({ "zarr_format": 2 }))?;
    let mut backends = Vec::with_capacity(samples);
    let mut errors = BTreeMap::new();
    let mut ok = Vec::with_capacity(samples);
    for i in 0..samples {
        let record = &manifests[i % count].samples[i / count];
        backends.push(record.backend.clone());
        ok.push(record.status == SampleStatus::Ok);
        if let Some(e) = &record.error {
            errors.insert(i.to_string(), e.clone());
        }
    }
    let failed = ok.iter().filter(|o| !**o).count();
    write_json(
        &out.join(".zattrs"),
        &json!({
            "jko_version": first.jko_version,
            "solver": first.solver,
            "times": first.times,
            "backends": backends,
            "errors": errors,
            "spec": spec,
        }),
    )?;
    let arrays = [
        ("inputs", lead(&cells), chunked(&cells)),
        ("trajectories", lead(&traj_tail), chunked(&traj_tail)),
        ("energies", lead(&[states]), chunked(&[states])),
    ];
    for (name, shape, chunk) in &arrays {
        write_array_header(&out.join(name), shape, chunk, "<f8", json!("NaN"))?;
    }
    write_array_header(&out.join("ok"), &[samples], &[rows], "|b1", json!(false))?;
    // Chunk keys: the chunk's index along samples, 0 along every other axis.
    let key = |c: usize, ndim: usize| -> String {
        std::iter::once(c.to_string())
            .chain(std::iter::repeat_n("0".to_string(), ndim - 1))
            .collect::<Vec<_>>()
            .join(".")
    };
    for c in 0..chunks {
        for (a, (name, shape, _)) in arrays.iter().enumerate() {
            let row_len: usize = shape[1..].iter().product();
            // A partial last chunk is padded with the fill value: Zarr stores whole chunks.
            let mut bytes = Vec::with_capacity(8 * rows * row_len);
            for r in 0..rows {
                let i = c * rows + r;
                let values = if i < samples {
                    let (inputs, trajectories, energies) = &shards[i % count];
                    [inputs, trajectories, energies][a].read_row(i / count)?
                } else {
                    vec![f64::NAN; row_len]
                };
                for v in values {
                    bytes.extend_from_slice(&v.to_le_bytes());
                }
            }
            let path = out.join(name).join(key(c, shape.len()));
            fs::write(&path, bytes).map_err(|e| ToolError::io(&path, e))?;
        }
        let flags: Vec<u8> = (c * rows..(c + 1) * rows)
            .map(|i| u8::from(ok.get(i).copied().unwrap_or(false)))
            .collect();
        let path = out.join("ok").join(c.to_string());
        fs::write(&path, flags).map_err(|e| ToolError::io(&path, e))?;
    }
    Ok(ZarrSummary {
        samples,
        failed,
        shards: count,
        rows_per_chunk: rows,
        chunks,
    })
}

/// The manifests of every shard of one dataset in `dir`, in shard order.
fn read_manifests(dir: &Path) -> Result<Vec<Manifest>, ToolError> {
    let mut found: Vec<Manifest> = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| ToolError::io(dir, e))? {
        let entry = entry.map_err(|e| ToolError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("manifest_") && name.ends_with(".json") {
            let path = entry.path();
            let text = fs::read_to_string(&path).map_err(|e| ToolError::io(&path, e))?;
            found.push(
                serde_json::from_str(&text).map_err(|source| ToolError::Json { path, source })?,
            );
        }
    }
    let Some(first) = found.first() else {
        return Err(ToolError::option(
            "DIR",
            format!(
                "{} holds no finished shard (manifest_*.json); finish the shards first (--resume)",
                dir.display()
            ),
        ));
    };
    let (spec, count) = (first.spec.clone(), first.shard.count);
    if let Some(other) = found
        .iter()
        .find(|m| m.spec != spec || m.shard.count != count)
    {
        return Err(ToolError::option(
            "DIR",
            format!(
                "shard {} was made from another spec or split than shard {}; one store holds one dataset",
                other.shard, first.shard
            ),
        ));
    }
    found.sort_by_key(|m| m.shard.index);
    found.dedup_by_key(|m| m.shard.index);
    let missing: Vec<String> = (0..count)
        .filter(|i| !found.iter().any(|m| m.shard.index == *i))
        .map(|i| manifest_file(Shard { index: i, count }))
        .collect();
    if !missing.is_empty() {
        return Err(ToolError::option(
            "DIR",
            format!(
                "not every shard is finished: missing {} (run or --resume them first)",
                missing.join(", ")
            ),
        ));
    }
    for m in &found {
        let expected = m.shard.indices(spec.samples);
        if m.sample_indices() != expected {
            return Err(ToolError::option(
                "DIR",
                format!(
                    "{}: its rows are not the samples of shard {}",
                    manifest_file(m.shard),
                    m.shard
                ),
            ));
        }
    }
    Ok(found)
}

/// `.zarray` of an uncompressed C-order array.
fn write_array_header(
    dir: &Path,
    shape: &[usize],
    chunks: &[usize],
    dtype: &str,
    fill: serde_json::Value,
) -> Result<(), ToolError> {
    fs::create_dir_all(dir).map_err(|e| ToolError::io(dir, e))?;
    write_json(
        &dir.join(".zarray"),
        &json!({
            "zarr_format": 2,
            "shape": shape,
            "chunks": chunks,
            "dtype": dtype,
            "compressor": null,
            "fill_value": fill,
            "order": "C",
            "filters": null,
            "dimension_separator": ".",
        }),
    )
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), ToolError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|source| ToolError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    text.push('\n');
    let mut f = fs::File::create(path).map_err(|e| ToolError::io(path, e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| ToolError::io(path, e))
}

//! `jko_cli::dataset`: sharding and the number of threads must not change a sample, the same
//! spec must give the same files, every row must be a real trajectory (mass conserved, energy
//! non-increasing), a failed sample is recorded while the others are kept, an interrupted
//! shard resumes to the same bytes, and failed samples can be retried with another backend.

use jko_cli::dataset::{
    DatasetOptions, DatasetSpec, Manifest, SampleStatus, Shard, manifest_file, run_dataset,
    run_dataset_with,
};
use ndarray::{ArrayD, Axis};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

fn threads(n: usize) -> DatasetOptions {
    DatasetOptions {
        threads: Some(n),
        ..Default::default()
    }
}

const SPEC: &str = r#"
samples = 6
seed = 11
[base]
mesh = { cells = [32], lower = [-4.0], upper = [4.0] }
energy = { entropy = 1.0, potential = { kind = "quadratic" } }
scheme = { tau = 0.1, steps = 3 }
solver = { kind = "conic" }
[[initial]]
kind = "gaussian_mixture"
components = [1, 3]
mean = [-2.0, 2.0]
std = [0.4, 1.0]
[[initial]]
kind = "smooth_field"
modes = 3
max_wavenumber = 3
amplitude = 1.0
"#;

fn read(dir: &Path, name: &str) -> ArrayD<f64> {
    let file = std::fs::File::open(dir.join(name)).unwrap();
    ndarray_npy::ReadNpyExt::read_npy(file).unwrap()
}

fn manifest(dir: &Path, shard: Shard) -> Manifest {
    let text = std::fs::read_to_string(dir.join(manifest_file(shard))).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn shards_reproduce_the_single_run_and_runs_are_deterministic() {
    let spec = DatasetSpec::from_toml(SPEC).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (one, two, again) = (
        tmp.path().join("one"),
        tmp.path().join("two"),
        tmp.path().join("again"),
    );
    let all = Shard::all();
    let m = run_dataset(&spec, tmp.path(), &one, all, &threads(2)).unwrap();
    assert_eq!(m.sample_indices(), (0..6).collect::<Vec<_>>());
    assert_eq!(m.failed, 0);
    assert_eq!(m.shapes.inputs, vec![6, 32]);
    assert_eq!(m.shapes.trajectories, vec![6, 4, 32]);
    assert_eq!(m.shapes.energies, vec![6, 4]);
    assert_eq!(manifest(&one, all), m);

    let inputs = read(&one, &m.files.inputs);
    let traj = read(&one, &m.files.trajectories);
    let energies = read(&one, &m.files.energies);
    assert_eq!(inputs.shape(), &[6, 32]);
    assert_eq!(traj.shape(), &[6, 4, 32]);
    // Both families occur, and the samples differ from one another.
    let families: Vec<usize> = m.samples.iter().map(|s| s.family).collect();
    assert!(
        families.contains(&0) && families.contains(&1),
        "{families:?}"
    );
    for a in 0..6 {
        for b in 0..a {
            assert_ne!(inputs.index_axis(Axis(0), a), inputs.index_axis(Axis(0), b));
        }
    }
    let h = 8.0 / 32.0;
    for s in 0..6 {
        // Row 0 of a trajectory is the input; mass is conserved; the energy decreases.
        assert_eq!(
            traj.index_axis(Axis(0), s).index_axis(Axis(0), 0),
            inputs.index_axis(Axis(0), s)
        );
        for n in 0..4 {
            let mass: f64 = traj.index_axis(Axis(0), s).index_axis(Axis(0), n).sum() * h;
            assert!(
                (mass - 1.0).abs() < 1e-8,
                "sample {s} step {n}: mass {mass}"
            );
            if n > 0 {
                let (before, after) = (energies[[s, n - 1]], energies[[s, n]]);
                assert!(
                    after <= before + 1e-9,
                    "sample {s} step {n}: {before} -> {after}"
                );
            }
        }
        assert!(
            energies[[s, 3]] < energies[[s, 0]],
            "sample {s} did not move"
        );
    }

    // Two shards on one thread each: round robin, and every sample bit-identical to the
    // single run on two threads.
    let mut seen = Vec::new();
    for i in 0..2 {
        let shard = Shard::new(i, 2).unwrap();
        let ms = run_dataset(&spec, tmp.path(), &two, shard, &threads(1)).unwrap();
        assert_eq!(ms.sample_indices(), shard.indices(6));
        let (si, st, se) = (
            read(&two, &ms.files.inputs),
            read(&two, &ms.files.trajectories),
            read(&two, &ms.files.energies),
        );
        for (row, &sample) in ms.sample_indices().iter().enumerate() {
            let bits =
                |a: ndarray::ArrayViewD<f64>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(si.index_axis(Axis(0), row)),
                bits(inputs.index_axis(Axis(0), sample))
            );
            assert_eq!(
                bits(st.index_axis(Axis(0), row)),
                bits(traj.index_axis(Axis(0), sample))
            );
            assert_eq!(
                bits(se.index_axis(Axis(0), row)),
                bits(energies.index_axis(Axis(0), sample))
            );
            assert_eq!(ms.samples[row], m.samples[sample]);
            seen.push(sample);
        }
    }
    seen.sort();
    assert_eq!(seen, (0..6).collect::<Vec<_>>());

    // The same spec twice (one thread now): identical files, byte for byte.
    run_dataset(&spec, tmp.path(), &again, all, &threads(1)).unwrap();
    for name in [
        m.files.inputs.clone(),
        m.files.trajectories.clone(),
        m.files.energies.clone(),
        manifest_file(all),
    ] {
        let a = std::fs::read(one.join(&name)).unwrap();
        let b = std::fs::read(again.join(&name)).unwrap();
        assert!(a == b, "{name} differs between two runs of the same spec");
    }
}

#[test]
fn an_inadmissible_sample_is_recorded_and_the_others_kept() {
    // max_density below the peak of narrow Gaussians: some initial densities are inadmissible.
    let text = SPEC.replace(
        "energy = { entropy = 1.0, potential = { kind = \"quadratic\" } }",
        "energy = { entropy = 1.0, max_density = 0.5 }",
    );
    let spec = DatasetSpec::from_toml(&text).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let m = run_dataset(&spec, tmp.path(), tmp.path(), Shard::all(), &threads(2)).unwrap();
    assert!(m.failed > 0 && m.failed < 6, "{} failed", m.failed);
    let traj = read(tmp.path(), &m.files.trajectories);
    for (row, s) in m.samples.iter().enumerate() {
        let values = traj.index_axis(Axis(0), row);
        match s.status {
            SampleStatus::Failed => {
                let e = s.error.as_deref().unwrap();
                assert!(e.contains(&format!("sample {}", s.index)), "{e}");
                assert!(e.contains("max_density"), "{e}");
                assert!(values.iter().all(|v| v.is_nan()));
            }
            SampleStatus::Ok => assert!(values.iter().all(|v| v.is_finite())),
        }
    }
    assert_eq!(Manifest::read(tmp.path(), Shard::all()).unwrap(), m);
}

/// Stops the run once `after` samples are settled (as Ctrl-C does).
static STOP: AtomicBool = AtomicBool::new(false);

#[test]
fn interrupted_shard_resumes_to_the_same_bytes_and_failures_are_retried() {
    let spec = DatasetSpec::from_toml(&SPEC.replace("samples = 6", "samples = 10")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (whole, cut) = (tmp.path().join("whole"), tmp.path().join("cut"));
    let shard = Shard::new(1, 2).unwrap();
    let failing = DatasetOptions {
        threads: Some(2),
        fail_samples: vec![3],
        ..Default::default()
    };
    let m = run_dataset(&spec, tmp.path(), &whole, shard, &failing).unwrap();
    assert_eq!(m.sample_indices(), [1, 3, 5, 7, 9]);
    assert_eq!(m.failed, 1);
    assert!(
        m.samples[1]
            .error
            .as_deref()
            .unwrap()
            .contains("injected failure")
    );

    // The same shard, stopped after two samples: no manifest, and a plain rerun is refused.
    let settled = AtomicUsize::new(0);
    let stopping = DatasetOptions {
        stop: Some(&STOP),
        ..failing.clone()
    };
    let err = run_dataset_with(&spec, tmp.path(), &cut, shard, &stopping, &|_, _| {
        if settled.fetch_add(1, Ordering::SeqCst) + 1 >= 2 {
            STOP.store(true, Ordering::SeqCst);
        }
    })
    .unwrap_err();
    assert!(err.to_string().contains("--resume"), "{err}");
    assert!(!cut.join(manifest_file(shard)).exists());
    STOP.store(false, Ordering::SeqCst);
    let err = run_dataset(&spec, tmp.path(), &cut, shard, &failing).unwrap_err();
    assert!(err.to_string().contains("already started"), "{err}");

    // --resume runs only the rest and ends with the uninterrupted run's bytes.
    let ran = AtomicUsize::new(0);
    let resume = DatasetOptions {
        resume: true,
        ..failing.clone()
    };
    let m2 = run_dataset_with(&spec, tmp.path(), &cut, shard, &resume, &|_, _| {
        ran.fetch_add(1, Ordering::SeqCst);
    })
    .unwrap();
    assert!(
        ran.load(Ordering::SeqCst) <= 3,
        "{}",
        ran.load(Ordering::SeqCst)
    );
    assert_eq!(m2, m);
    for name in [&m.files.inputs, &m.files.trajectories, &m.files.energies] {
        assert!(
            std::fs::read(whole.join(name)).unwrap() == std::fs::read(cut.join(name)).unwrap(),
            "{name} differs after resume"
        );
    }

    // --retry-failed with another backend replaces the failed row only.
    let retry = DatasetOptions {
        threads: Some(1),
        retry: Some(jko::backend::SolverConfig::default_for("newton").unwrap()),
        ..Default::default()
    };
    let m3 = run_dataset(&spec, tmp.path(), &cut, shard, &retry).unwrap();
    assert_eq!(m3.failed, 0);
    assert_eq!(m3.samples[1].backend, "newton");
    assert_eq!(m3.samples[0], m.samples[0]);
    let (before, after) = (
        read(&whole, &m.files.trajectories),
        read(&cut, &m.files.trajectories),
    );
    for row in [0, 2, 3, 4] {
        assert_eq!(
            before.index_axis(Axis(0), row),
            after.index_axis(Axis(0), row)
        );
    }
    let retried = after.index_axis(Axis(0), 1);
    assert!(retried.iter().all(|v| v.is_finite()));
    let h = 8.0 / 32.0;
    assert!((retried.index_axis(Axis(0), 3).sum() * h - 1.0).abs() < 1e-8);
}

#[test]
fn spec_errors_name_the_key() {
    let err =
        DatasetSpec::from_toml(&SPEC.replace("seed = 11", "seed = 11\nsamles = 3")).unwrap_err();
    assert!(err.to_string().contains("samles"), "{err}");
    let bad = DatasetSpec::from_toml(&SPEC.replace("components = [1, 3]", "components = [3, 1]"))
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let err = run_dataset(&bad, tmp.path(), tmp.path(), Shard::all(), &threads(1)).unwrap_err();
    assert!(err.to_string().contains("initial[0].components"), "{err}");
    assert!("2/2".parse::<Shard>().is_err());
}

#[test]
fn example_spec_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/dataset-example.toml");
    let spec = DatasetSpec::from_file(&path).unwrap();
    spec.validate().unwrap();
    assert_eq!(spec.samples, 8);
    assert_eq!(spec.base.mesh.cells, vec![64]);
    assert_eq!(spec.base.solver.name(), "conic");
}

/// Decode an uncompressed float64 Zarr v2 array by its `.zarray` alone (shape, chunks along
/// the first axis, C order, "." separator): an independent reader of what `export_zarr` wrote.
fn read_zarr(dir: &Path) -> (Vec<usize>, Vec<f64>) {
    let header: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(".zarray")).unwrap()).unwrap();
    assert_eq!(header["zarr_format"], 2);
    assert_eq!(header["dtype"], "<f8");
    assert!(header["compressor"].is_null() && header["filters"].is_null());
    assert_eq!(header["order"], "C");
    let shape: Vec<usize> = serde_json::from_value(header["shape"].clone()).unwrap();
    let chunks: Vec<usize> = serde_json::from_value(header["chunks"].clone()).unwrap();
    assert_eq!(chunks[1..], shape[1..], "chunked along samples only");
    let row: usize = shape[1..].iter().product();
    let mut values = Vec::new();
    for c in 0..shape[0].div_ceil(chunks[0]) {
        let key = std::iter::once(c.to_string())
            .chain(std::iter::repeat_n("0".to_string(), shape.len() - 1))
            .collect::<Vec<_>>()
            .join(".");
        let bytes = std::fs::read(dir.join(key)).unwrap();
        assert_eq!(bytes.len(), 8 * chunks[0] * row, "a whole chunk");
        values.extend(
            bytes
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap())),
        );
    }
    values.truncate(shape[0] * row);
    (shape, values)
}

#[test]
fn zarr_store_of_the_shards_is_the_unsharded_dataset() {
    use jko_cli::dataset::export_zarr;
    let spec = DatasetSpec::from_toml(
        r#"
samples = 5
seed = 3
[base]
mesh = { cells = [6, 5], lower = [-2.0, -2.0], upper = [2.0, 2.0] }
energy = { entropy = 1.0, potential = { kind = "quadratic" } }
scheme = { tau = 0.1, steps = 2 }
solver = { kind = "newton" }
[[initial]]
kind = "smooth_field"
modes = 2
max_wavenumber = 2
amplitude = 0.5
"#,
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (one, sharded) = (tmp.path().join("one"), tmp.path().join("sharded"));
    let failing = DatasetOptions {
        fail_samples: vec![3],
        ..threads(1)
    };
    let m = run_dataset(&spec, tmp.path(), &one, Shard::all(), &failing).unwrap();
    assert_eq!(m.failed, 1);
    // Not all shards finished: refused, naming the missing one.
    run_dataset(
        &spec,
        tmp.path(),
        &sharded,
        Shard::new(0, 2).unwrap(),
        &failing,
    )
    .unwrap();
    let err = export_zarr(&sharded, &tmp.path().join("early.zarr")).unwrap_err();
    assert!(
        err.to_string().contains("manifest_00001-of-00002.json"),
        "{err}"
    );
    run_dataset(
        &spec,
        tmp.path(),
        &sharded,
        Shard::new(1, 2).unwrap(),
        &failing,
    )
    .unwrap();
    let store = tmp.path().join("all.zarr");
    let summary = export_zarr(&sharded, &store).unwrap();
    assert_eq!((summary.samples, summary.failed, summary.shards), (5, 1, 2));
    // An existing store is not overwritten.
    assert!(export_zarr(&sharded, &store).is_err());

    for (name, file) in [
        ("inputs", &m.files.inputs),
        ("trajectories", &m.files.trajectories),
        ("energies", &m.files.energies),
    ] {
        let expected = read(&one, file);
        let (shape, values) = read_zarr(&store.join(name));
        assert_eq!(shape, expected.shape(), "{name}");
        // NaN rows (the failed sample) compare by their bits.
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&values),
            bits(expected.as_slice().unwrap()),
            "{name}: the store differs from the unsharded run"
        );
    }
    assert_eq!(
        std::fs::read(store.join("ok").join("0")).unwrap()[..5],
        [1, 1, 1, 0, 1]
    );
    let attrs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(store.join(".zattrs")).unwrap()).unwrap();
    assert!(attrs["errors"]["3"].as_str().unwrap().contains("injected"));
    assert_eq!(attrs["times"], serde_json::json!([0.0, 0.1, 0.2]));
    assert_eq!(attrs["backends"][0], "newton");
}

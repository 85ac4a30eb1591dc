//! Fuzzing regressions (issue 8): every input in `data/fuzz/<target>/` — crash inputs found by
//! `scripts/fuzz.sh`, minimised, plus hand-made nasty ones — replayed through the same harness
//! the cargo-fuzz targets run (`fuzz/src/harness.rs`, included below). Each must end in a
//! built problem or a typed error, never a panic; inputs listed in the tables below must end
//! in the stated outcome. A new crash input dropped into the folder is replayed automatically.

#[path = "../../fuzz/src/harness.rs"]
mod harness;

use harness::{Verdict, fuzz_config, fuzz_npy, npy_bytes};
use jko::config::read_npy_from;
use jko::core::InputError;
use jko::error::RunError;
use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/fuzz")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn name(path: &Path) -> &str {
    path.file_name()
        .and_then(|n| n.to_str())
        .expect("utf-8 name")
}

fn is_input(v: &Verdict, pred: impl Fn(&InputError) -> bool) -> bool {
    matches!(v, Verdict::Rejected(RunError::Input(e)) if pred(e))
}

fn non_finite(v: &Verdict) -> bool {
    is_input(v, |e| matches!(e, InputError::NonFinite { .. }))
}

/// Expected outcome of the named config inputs (others: anything but a panic).
fn expect_config(name: &str, v: &Verdict) -> Option<bool> {
    Some(match name {
        // Above jko_core::mesh::MAX_CELLS, or overflowing usize: refused before allocating.
        "huge-cells.toml" | "overflow-cells.toml" => {
            is_input(v, |e| matches!(e, InputError::TooLarge { .. }))
        }
        // 2^27 cells is within the engine's limit but needs > 10 GB: the harness skips it.
        "max-cells.toml" => matches!(v, Verdict::Skipped(_)),
        "negative-tau.toml" | "nan-tau.toml" => {
            is_input(v, |e| matches!(e, InputError::InvalidTau(_)))
        }
        "negative-cells.toml" | "not-toml.toml" => {
            matches!(v, Verdict::Rejected(RunError::Toml { .. }))
        }
        "mask-nan.toml" | "potential-inf.toml" => non_finite(v),
        "initial-negative.toml" => is_input(v, |e| matches!(e, InputError::NegativeDensity { .. })),
        "initial-zeros.toml" => is_input(v, |e| matches!(e, InputError::ZeroMass { .. })),
        "mask-removes-all.toml" => is_input(v, |e| matches!(e, InputError::InvalidMesh(_))),
        "missing-npy.toml" => matches!(v, Verdict::Rejected(RunError::Io { .. })),
        "all-npy-ok.toml" => matches!(v, Verdict::Built(16)),
        _ => return None,
    })
}

#[test]
fn config_inputs_end_in_typed_outcomes() {
    let files = inputs("config");
    assert!(
        files.len() >= 10,
        "data/fuzz/config has {} inputs",
        files.len()
    );
    for path in &files {
        let bytes = std::fs::read(path).expect("readable input");
        // The target skips non-UTF-8 inputs the same way.
        let Ok(text) = std::str::from_utf8(&bytes) else {
            continue;
        };
        let v = fuzz_config(text);
        if let Some(ok) = expect_config(name(path), &v) {
            assert!(ok, "{}: unexpected outcome {v:?}", path.display());
        }
    }
}

#[test]
fn npy_inputs_end_in_typed_outcomes() {
    let files = inputs("npy");
    assert!(files.len() >= 8, "data/fuzz/npy has {} inputs", files.len());
    for path in &files {
        let bytes = std::fs::read(path).expect("readable input");
        let (read, uses) = fuzz_npy(&bytes);
        let ok = match name(path) {
            // Malformed or lying headers: a typed reader error, without allocating what the
            // header claims.
            "truncated-header.npy"
            | "huge-header-len.npy"
            | "huge-shape.npy"
            | "huge-shape-zero-axis.npy"
            | "deep-nesting.npy"
            | "missing-data.npy"
            | "extra-data.npy"
            | "wrong-dtype-f4.npy"
            | "wrong-dtype-i8.npy" => matches!(read, Verdict::Rejected(RunError::Npy { .. })),
            // NaN payload: read fine, refused by all three uses.
            "nan-payload.npy" => {
                matches!(read, Verdict::Built(4)) && uses.len() == 3 && uses.iter().all(non_finite)
            }
            "fortran-order.npy" | "big-endian.npy" => {
                matches!(read, Verdict::Built(_))
                    && uses.len() == 3
                    && uses.iter().all(|u| matches!(u, Verdict::Built(_)))
            }
            _ => true,
        };
        assert!(
            ok,
            "{}: unexpected outcome {read:?} {uses:?}",
            path.display()
        );
    }
}

/// The fixed files mean what the test above assumes: values of `fortran-order.npy` (written
/// by numpy from `arange(12).reshape(3, 4)` in Fortran order) come back in C order.
#[test]
fn fortran_order_is_transposed_on_read() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fuzz/npy");
    let bytes = std::fs::read(dir.join("fortran-order.npy")).expect("fixture");
    let a = read_npy_from(&bytes[..], Path::new("fortran-order.npy")).expect("valid file");
    assert_eq!(a.shape(), &[3, 4]);
    let c: Vec<f64> = a.as_standard_layout().iter().copied().collect();
    assert_eq!(c, (0..12).map(f64::from).collect::<Vec<_>>());
}

/// The harness's own encoder agrees with the reader (C and Fortran order), so fixtures served
/// to fuzzed configs are what they claim.
#[test]
fn harness_npy_encoder_round_trips() {
    let values: Vec<f64> = (0..6).map(|i| i as f64 * 0.5 - 1.0).collect();
    for fortran in [false, true] {
        let bytes = npy_bytes(&[2, 3], &values, fortran);
        let a = read_npy_from(&bytes[..], Path::new("x.npy")).expect("valid file");
        assert_eq!(a.shape(), &[2, 3]);
        let c: Vec<f64> = a.as_standard_layout().iter().copied().collect();
        assert_eq!(c, values, "fortran = {fortran}");
    }
}

/// The committed seed corpus starts the fuzzer from inputs the engine accepts.
#[test]
fn seeds_are_accepted() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for entry in std::fs::read_dir(root.join("config")).expect("config seeds") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("utf-8 seed");
        let v = fuzz_config(&text);
        assert!(matches!(v, Verdict::Built(_)), "{}: {v:?}", path.display());
    }
    for entry in std::fs::read_dir(root.join("npy")).expect("npy seeds") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("seed");
        let (read, _) = fuzz_npy(&bytes);
        let wrong_dtype = name(&path).starts_with("f32");
        assert_eq!(
            matches!(read, Verdict::Built(_)),
            !wrong_dtype,
            "{}: {read:?}",
            path.display()
        );
    }
}

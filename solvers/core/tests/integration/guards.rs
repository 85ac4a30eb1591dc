//! Library inputs that used to panic (found while documenting the crate) now return typed errors.

use jko_core::energy::{Energy, Interaction};
use jko_core::error::InputError;
use jko_core::exact::Barenblatt;
use jko_core::mesh::Mesh;
use ndarray::Array1;

#[test]
fn short_density_is_a_shape_error_not_an_index_panic() {
    let mesh = Mesh::grid(&[8], &[-1.0], &[1.0]).expect("mesh");
    let energy = Energy {
        entropy: Some(1.0),
        interaction: Some(Interaction::Quadratic { strength: 1.0 }),
        ..Energy::default()
    };
    let short = Array1::from_elem(5, 0.5);
    for result in [
        energy.freeze(&mesh, &short).map(|_| ()),
        energy.value(&mesh, &short).map(|_| ()),
    ] {
        match result {
            Err(InputError::ShapeMismatch { what, found, .. }) => {
                assert_eq!(what, "density");
                assert_eq!(found, "5");
            }
            other => panic!("expected a shape mismatch, got {other:?}"),
        }
    }
}

#[test]
fn barenblatt_in_dimension_zero_is_refused() {
    match Barenblatt::new(2.0, 0, 1.0) {
        Err(InputError::InvalidParameter { name, .. }) => assert_eq!(name, "dim"),
        other => panic!("expected an invalid-parameter error, got {other:?}"),
    }
}

#[test]
fn cell_counts_overflowing_u64_are_too_large_not_an_overflow_panic() {
    // data/fuzz/config/overflow-cells.toml: the report multiplied the counts unchecked.
    match Mesh::grid(&[usize::MAX / 2, 3], &[0.0, 0.0], &[1.0, 1.0]) {
        Err(InputError::TooLarge { bytes, .. }) => assert_eq!(bytes, u64::MAX),
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

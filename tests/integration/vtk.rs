//! VTK output opens in a VTK reader (the vtkio crate) with the values the run wrote.

use crate::kit::run_in_tempdir;
use jko::config::Config;
use ndarray::ArrayD;
use std::path::Path;
use vtkio::model::{Attribute, DataSet, ElementType};

#[test]
fn vti_files_read_back_with_the_density_in_vtk_order() {
    let mut config = Config::from_toml(jko::examples::example("crowd-2d").unwrap()).unwrap();
    config.mesh.cells = vec![12, 10];
    config.scheme.steps = 1;
    let (dir, _) = run_in_tempdir(&config, Path::new("."), true).unwrap();
    let rho: ArrayD<f64> = ndarray_npy::read_npy(dir.path().join("rho_00001.npy")).unwrap();
    let vtk = vtkio::Vtk::import(dir.path().join("rho_00001.vti")).expect("vtkio reads the .vti");
    let DataSet::ImageData {
        extent,
        spacing,
        pieces,
        ..
    } = vtk.data
    else {
        panic!("not image data");
    };
    assert_eq!(spacing[0], 10.0 / 12.0);
    assert!(format!("{extent:?}").contains("12") && format!("{extent:?}").contains("10"));
    let piece = pieces[0].load_piece_data(None).unwrap();
    let mut seen_mask = false;
    for attr in &piece.data.cell {
        let Attribute::DataArray(arr) = attr else {
            continue;
        };
        let values: Vec<f64> = arr.data.clone().cast_into().unwrap();
        assert_eq!(values.len(), 120);
        match arr.name.as_str() {
            "rho" => {
                assert!(matches!(
                    arr.elem,
                    ElementType::Scalars { .. } | ElementType::Generic(1)
                ));
                // VTK: x (axis 0) fastest; the npy array is C order (axis 1 fastest).
                for i in 0..12 {
                    for j in 0..10 {
                        assert_eq!(values[j * 12 + i], rho[[i, j]]);
                    }
                }
            }
            "mask" => {
                seen_mask = true;
                assert!(values.contains(&0.0), "the obstacle is masked");
            }
            other => panic!("unexpected field {other}"),
        }
    }
    assert!(seen_mask);
    let pvd = std::fs::read_to_string(dir.path().join("rho.pvd")).unwrap();
    assert!(pvd.contains("rho_00000.vti") && pvd.contains("rho_00001.vti"));
}

//! `jko plot` on runs over meshes read from gmsh files (issue 19): filled triangles (or Voronoi
//! polygons) coloured by the density, with a colour bar, from the run directory alone.

use jko::RunOptions;
use jko::config::Config;
use jko_cli::plot::{plot_run, render_run};
use std::path::Path;

fn meshes() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/meshes")
}

fn crowd_run(dir: &Path, control_volumes: &str) {
    let mut config =
        Config::from_toml(&std::fs::read_to_string(meshes().join("crowd-hole.toml")).unwrap())
            .unwrap();
    config.scheme.steps = 2;
    config.mesh.control_volumes = Some(match control_volumes {
        "voronoi" => jko_core::ControlVolumes::Voronoi,
        _ => jko_core::ControlVolumes::Elements,
    });
    let opts = RunOptions {
        out: Some(dir.to_path_buf()),
        ..Default::default()
    };
    jko::run(&config, &meshes(), &opts, &mut [], &|| false).unwrap();
}

#[test]
fn triangle_mesh_runs_plot_as_filled_cells_from_the_run_directory_alone() {
    for cv in ["elements", "voronoi"] {
        let tmp = tempfile::tempdir().unwrap();
        let first = tmp.path().join("run");
        crowd_run(&first, cv);
        // The run directory moved away from the config and mesh: its mesh.msh copy is used.
        let moved = tmp.path().join("moved");
        std::fs::rename(&first, &moved).unwrap();
        let figures = render_run(&moved).unwrap();
        let density = &figures[0];
        assert_eq!(density.name, "density");
        // Many cells of many colours (a grey-free viridis fill), the white hole in the middle
        // of each panel, and the colour bar.
        assert!(
            density.distinct_colours() > 50,
            "{cv}: {}",
            density.distinct_colours()
        );
        // density.png, energy.png, then the animation of the steps.
        let fig = tmp.path().join("fig");
        let paths = plot_run(&moved, &fig).unwrap();
        assert_eq!(paths.len(), 3);
        assert_eq!(paths.last(), Some(&fig.join("animation.gif")));
        assert!(std::fs::metadata(&paths[0]).unwrap().len() > 1000);
        assert!(std::fs::metadata(&paths[2]).unwrap().len() > 1000);
    }
}

#[test]
fn gmsh_cube_tetrahedra_are_refused_by_the_run_naming_the_faults() {
    let tmp = tempfile::tempdir().unwrap();
    // The cube's gmsh tetrahedra are not strictly Delaunay: the run itself is refused, naming
    // the elements and control_volumes.
    let config = Config::from_toml(&format!(
        r#"
        mesh = {{ file = "{}" }}
        initial = {{ kind = "uniform" }}
        energy = {{ entropy = 1.0 }}
        scheme = {{ tau = 0.1, steps = 1 }}
        solver = {{ kind = "newton" }}
        "#,
        meshes().join("cube-h4.msh").display()
    ))
    .unwrap();
    let opts = RunOptions {
        out: Some(tmp.path().join("cube")),
        ..Default::default()
    };
    let err = jko::run(&config, ".".as_ref(), &opts, &mut [], &|| false).unwrap_err();
    assert!(err.to_string().contains("Delaunay"), "{err}");
}

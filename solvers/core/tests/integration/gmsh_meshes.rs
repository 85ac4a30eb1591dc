//! Triangulations turned into two-point-flux meshes, with both kinds of control volumes: the
//! meshes of data/meshes/ (made by gmsh's default mesher, see data/meshes/make_meshes.py) and a
//! jittered hand-made one.

use jko_core::{ControlVolumes, InputError, Mesh, Triangulation};
use std::path::PathBuf;

fn mesh_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/meshes")
        .join(name)
}

/// max over cells away from the boundary of |Σ_σ T_σ (u_L − u_K)| for a linear u: zero on an
/// orthogonal mesh (the discrete flux of a constant gradient balances in every cell).
fn linear_imbalance(mesh: &Mesh, interior: impl Fn(&[f64]) -> bool) -> f64 {
    let u: Vec<f64> = (0..mesh.n_cells())
        .map(|k| {
            let x = mesh.centre(k);
            0.3 * x[0] - 0.7 * x[1] + if x.len() > 2 { 0.2 * x[2] } else { 0.0 }
        })
        .collect();
    let mut div = vec![0.0; mesh.n_cells()];
    for f in mesh.faces() {
        let g = f.transmissibility() * (u[f.l] - u[f.k]);
        div[f.k] += g;
        div[f.l] -= g;
    }
    (0..mesh.n_cells())
        .filter(|&k| interior(mesh.centre(k)))
        .map(|k| div[k].abs() / mesh.volumes()[k])
        .fold(0.0, f64::max)
}

#[test]
fn binary_and_ascii_files_give_the_same_mesh() {
    let ascii = Triangulation::read_msh(&mesh_file("square-h8.msh")).unwrap();
    let binary = Triangulation::read_msh(&mesh_file("square-h8-binary.msh")).unwrap();
    // ASCII carries 16 significant digits, binary the exact doubles.
    assert_eq!(ascii.simplices, binary.simplices);
    assert_eq!(
        (&ascii.point_tags, &ascii.simplex_tags),
        (&binary.point_tags, &binary.simplex_tags)
    );
    let gap = ascii
        .points
        .iter()
        .zip(&binary.points)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(gap < 1e-15, "{gap}");
}

#[test]
fn gmsh_default_square_meshes_are_admissible_with_both_control_volumes() {
    for n in [8, 16, 32, 64] {
        let tri = Triangulation::read_msh(&mesh_file(&format!("square-h{n}.msh"))).unwrap();
        let inner = |x: &[f64]| {
            x.iter()
                .all(|&c| c > 1.5 / n as f64 && c < 1.0 - 1.5 / n as f64)
        };
        for cv in [ControlVolumes::Elements, ControlVolumes::Voronoi] {
            let mesh = Mesh::from_triangulation(&tri, cv)
                .unwrap_or_else(|e| panic!("h = 1/{n}, {cv}: {e}"));
            let cells = match cv {
                ControlVolumes::Elements => tri.n_simplices(),
                ControlVolumes::Voronoi => tri.n_points(),
            };
            assert_eq!(mesh.n_cells(), cells);
            assert!(
                (mesh.domain_volume() - 1.0).abs() < 1e-12,
                "h = 1/{n}, {cv}"
            );
            let imbalance = linear_imbalance(&mesh, inner);
            assert!(imbalance < 1e-9, "h = 1/{n}, {cv}: {imbalance}");
            println!(
                "h = 1/{n} {cv}: {} cells, {} faces, min d_sigma/h = {:.3}",
                mesh.n_cells(),
                mesh.faces().len(),
                mesh.min_distance() * n as f64
            );
        }
    }
}

#[test]
fn hole_and_disc_meshes() {
    for (name, area) in [
        ("hole-h16.msh", 4.0 - std::f64::consts::PI * 0.09),
        ("disc-h16.msh", std::f64::consts::PI),
    ] {
        let tri = Triangulation::read_msh(&mesh_file(name)).unwrap();
        for cv in [ControlVolumes::Elements, ControlVolumes::Voronoi] {
            match Mesh::from_triangulation(&tri, cv) {
                Ok(mesh) => {
                    // Polygonal boundary: the area is within O(h²) of the curved domain's.
                    let rel = (mesh.domain_volume() - area).abs() / area;
                    assert!(rel < 1e-2, "{name} {cv}: area {}", mesh.domain_volume());
                    println!("{name} {cv}: {} cells", mesh.n_cells());
                }
                Err(e) => println!("{name} {cv}: {e}"),
            }
        }
    }
}

#[test]
fn gmsh_default_tetrahedra_are_refused_naming_their_non_delaunay_faces() {
    // gmsh's default 3D mesh of the cube is optimised after the Delaunay step, which leaves
    // faces with d_σ < 0 (9 of 650 interior faces at h = 1/4): the refusal names them and says
    // how to mesh instead.
    let tri = Triangulation::read_msh(&mesh_file("cube-h4.msh")).unwrap();
    assert_eq!(tri.dim, 3);
    let err = Mesh::from_triangulation(&tri, ControlVolumes::Elements).unwrap_err();
    let InputError::InadmissibleMesh { reason, tags } = &err else {
        panic!("{err}")
    };
    assert!(
        reason.contains("not Delaunay") && reason.contains("Mesh.Optimize = 0") && !tags.is_empty(),
        "{reason}"
    );
}

#[test]
fn gmsh_delaunay_tetrahedra_are_agglomerated_and_orthogonal() {
    // HXT without the optimiser (data/meshes/make_meshes.py): Delaunay, with a few
    // co-spherical neighbours that become one control volume each.
    for n in [4, 8, 12] {
        let tri = Triangulation::read_msh(&mesh_file(&format!("cube-delaunay-h{n}.msh"))).unwrap();
        let mesh = Mesh::from_triangulation(&tri, ControlVolumes::Elements)
            .unwrap_or_else(|e| panic!("h = 1/{n}: {e}"));
        assert!(mesh.n_cells() < tri.n_simplices(), "h = 1/{n}");
        assert!((mesh.domain_volume() - 1.0).abs() < 1e-12, "h = 1/{n}");
        let shapes = mesh.shapes().unwrap();
        assert_eq!(shapes.connectivity.len(), 4 * tri.n_simplices());
        let inner = |x: &[f64]| {
            x.iter()
                .all(|&c| c > 1.5 / n as f64 && c < 1.0 - 1.5 / n as f64)
        };
        let imbalance = linear_imbalance(&mesh, inner);
        println!(
            "cube h = 1/{n}: {} tetrahedra -> {} cells, {} faces, min d_sigma/h = {:.3e}, \
             linear imbalance {imbalance:.1e}",
            tri.n_simplices(),
            mesh.n_cells(),
            mesh.faces().len(),
            mesh.min_distance() * n as f64
        );
        assert!(imbalance < 1e-9, "h = 1/{n}: {imbalance}");
    }
}

/// A structured-ish perturbed triangulation of [0, 1]² (n × n squares, each split along a
/// diagonal, interior points jittered): not Delaunay everywhere.
fn jittered(n: usize, jitter: f64) -> Triangulation {
    let mut points = Vec::new();
    let mut seed = 12345u64;
    let mut rand = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) as f64 / (1u64 << 31) as f64) - 0.5
    };
    for i in 0..=n {
        for j in 0..=n {
            let interior = i > 0 && i < n && j > 0 && j < n;
            let (dx, dy) = if interior {
                (jitter * rand(), jitter * rand())
            } else {
                (0.0, 0.0)
            };
            points.push((i as f64 + dx) / n as f64);
            points.push((j as f64 + dy) / n as f64);
        }
    }
    let id = |i: usize, j: usize| i * (n + 1) + j;
    let mut simplices = Vec::new();
    for i in 0..n {
        for j in 0..n {
            simplices.extend([id(i, j), id(i + 1, j), id(i + 1, j + 1)]);
            simplices.extend([id(i, j), id(i + 1, j + 1), id(i, j + 1)]);
        }
    }
    Triangulation::new(2, points, simplices).unwrap()
}

#[test]
fn voronoi_of_a_jittered_mesh_is_orthogonal_and_tiles_the_domain() {
    let tri = jittered(12, 0.6);
    // The primal refuses it (right-angle splits are cocircular, jitter breaks Delaunay).
    let err = Mesh::from_triangulation(&tri, ControlVolumes::Elements).unwrap_err();
    assert!(matches!(err, InputError::InadmissibleMesh { .. }), "{err}");
    let mesh = Mesh::from_triangulation(&tri, ControlVolumes::Voronoi).unwrap();
    assert_eq!(mesh.n_cells(), 13 * 13);
    assert!((mesh.domain_volume() - 1.0).abs() < 1e-13);
    // Polygon areas (shoelace) equal the cell volumes: the shapes are the cells.
    let shapes = mesh.shapes().unwrap();
    for k in 0..mesh.n_cells() {
        let c = shapes.cell(k);
        let area: f64 = (0..c.len())
            .map(|i| {
                let (a, b) = (shapes.point(c[i]), shapes.point(c[(i + 1) % c.len()]));
                0.5 * (a[0] * b[1] - a[1] * b[0])
            })
            .sum();
        assert!(
            (area - mesh.volumes()[k]).abs() < 1e-13,
            "cell {k}: {area} vs {}",
            mesh.volumes()[k]
        );
    }
    // Cells away from the boundary: linear functions are balanced exactly.
    let far = |x: &[f64]| x[0] > 0.01 && x[0] < 0.99 && x[1] > 0.01 && x[1] < 0.99;
    let imbalance = linear_imbalance(&mesh, far);
    // Per unit volume: |K| < 1, so this is stricter than |Σ_σ T_σ (u_L − u_K)| < 1e-12.
    assert!(imbalance < 1e-12, "{imbalance:.2e}");
}

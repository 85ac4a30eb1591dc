//! VTK output for ParaView: one `.vti` (XML ImageData) file per step on grids, or `.vtu` (XML
//! UnstructuredGrid, [`unstructured_grid`]) on meshes read from a file, with the density as a cell
//! field (and the domain mask as a second cell field on masked grids), plus a `.pvd` collection
//! that ParaView opens as a time series.
//!
//! VTK orders cells with x fastest; the engine's arrays are C order (last axis fastest), so
//! values are written transposed. 1D and 2D grids become one-cell-thick 3D images.

use jko_core::{CellKind, Mesh};
use ndarray::Array1;
use std::fmt::Write;

/// The `.vti` text of cell values on a grid mesh (None for meshes without grid structure).
///
/// `fields` are (name, cell values) pairs, each written as a `Float64` cell array; the first
/// is the active scalar. Masked grids get a `UInt8` `mask` array (1 = inside). Cells outside
/// the domain hold 0.
///
/// ```rust
/// use jko_core::Mesh;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::grid(&[3, 2], &[0.0, 0.0], &[3.0, 1.0])?;
/// let rho = mesh.sample(|x| x[0]);
/// let vti = jko::vtk::image_data(&mesh, &[("rho", &rho)]).unwrap();
/// assert!(vti.contains(r#"WholeExtent="0 3 0 2 0 1""#));
/// // x fastest: the first row holds the cells (0, 0), (1, 0), (2, 0).
/// assert!(vti.contains("  5e-1 1.5e0 2.5e0\n"));
/// # Ok(())
/// # }
/// ```
pub fn image_data(mesh: &Mesh, fields: &[(&str, &Array1<f64>)]) -> Option<String> {
    let grid = mesh.as_grid()?;
    let d = grid.cells.len();
    let h = grid.spacing();
    let n = |a: usize| if a < d { grid.cells[a] } else { 1 };
    let origin = |a: usize| if a < d { grid.lower[a] } else { 0.0 };
    let spacing = |a: usize| if a < d { h[a] } else { 1.0 };
    let (nx, ny, nz) = (n(0), n(1), n(2));
    let mut s = String::new();
    let _ = writeln!(s, r#"<?xml version="1.0"?>"#);
    let _ = writeln!(
        s,
        r#"<VTKFile type="ImageData" version="1.0" byte_order="LittleEndian">"#
    );
    let _ = writeln!(
        s,
        r#"  <ImageData WholeExtent="0 {nx} 0 {ny} 0 {nz}" Origin="{} {} {}" Spacing="{} {} {}">"#,
        origin(0),
        origin(1),
        origin(2),
        spacing(0),
        spacing(1),
        spacing(2)
    );
    let _ = writeln!(s, r#"    <Piece Extent="0 {nx} 0 {ny} 0 {nz}">"#);
    let first = fields.first().map_or("rho", |f| f.0);
    let _ = writeln!(s, r#"      <CellData Scalars="{first}">"#);
    // C-order grid strides.
    let stride = |a: usize| -> usize { (a + 1..d).map(|b| grid.cells[b]).product() };
    let grid_values = |values: &Array1<f64>| mesh.to_grid_array(values, 0.0);
    let mut write_array = |name: &str, ty: &str, flat: &dyn Fn(usize) -> String| {
        let _ = writeln!(
            s,
            r#"        <DataArray type="{ty}" Name="{name}" format="ascii">"#
        );
        for k in 0..nz {
            for j in 0..ny {
                let mut line = String::from("         ");
                for i in 0..nx {
                    let mut gi = i * stride(0);
                    if d > 1 {
                        gi += j * stride(1);
                    }
                    if d > 2 {
                        gi += k * stride(2);
                    }
                    line.push(' ');
                    line.push_str(&flat(gi));
                }
                let _ = writeln!(s, "{line}");
            }
        }
        let _ = writeln!(s, "        </DataArray>");
    };
    for (name, values) in fields {
        let g = grid_values(values)?;
        let flat = g.as_slice()?.to_vec();
        write_array(name, "Float64", &|gi| format!("{:e}", flat[gi]));
    }
    if let Some(mask) = &grid.mask {
        write_array("mask", "UInt8", &|gi| u8::from(mask[gi]).to_string());
    }
    let _ = writeln!(s, "      </CellData>");
    let _ = writeln!(s, "    </Piece>");
    let _ = writeln!(s, "  </ImageData>");
    let _ = writeln!(s, "</VTKFile>");
    Some(s)
}

/// The `.pvd` collection text for (time, file name) pairs: ParaView opens it as a time
/// series of the `.vti` files (written by `jko run --format vtk` as `rho.pvd`).
///
/// ```rust
/// let pvd = jko::vtk::collection(&[(0.0, "rho_00000.vti".into()), (0.1, "rho_00001.vti".into())]);
/// assert!(pvd.contains(r#"<DataSet timestep="1e-1" part="0" file="rho_00001.vti"/>"#));
/// assert_eq!(pvd.matches("<DataSet").count(), 2);
/// ```
pub fn collection(entries: &[(f64, String)]) -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\"?>\n<VTKFile type=\"Collection\" version=\"0.1\">\n  <Collection>\n",
    );
    for (t, file) in entries {
        let _ = writeln!(
            s,
            r#"    <DataSet timestep="{t:e}" part="0" file="{file}"/>"#
        );
    }
    s.push_str("  </Collection>\n</VTKFile>\n");
    s
}

/// The `.vtu` text (XML UnstructuredGrid) of cell values on a mesh with cell shapes (meshes
/// read from a file: triangles, Voronoi polygons, tetrahedra), None for meshes without them.
///
/// `fields` are (name, cell values) pairs, each a `Float64` cell array in the mesh's cell
/// order; the first is the active scalar. 2D points get z = 0.
///
/// ```rust
/// use jko_core::{ControlVolumes, Mesh, Triangulation};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let points = vec![0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.5, 0.5];
/// let tri = Triangulation::new(2, points, vec![0, 1, 4, 1, 2, 4, 2, 3, 4, 3, 0, 4])?;
/// let mesh = Mesh::from_triangulation(&tri, ControlVolumes::Elements)?;
/// let rho = mesh.sample(|x| x[1]);
/// let vtu = jko::vtk::unstructured_grid(&mesh, &[("rho", &rho)]).unwrap();
/// assert!(vtu.contains(r#"<Piece NumberOfPoints="5" NumberOfCells="4">"#));
/// assert!(vtu.contains("5 5 5 5")); // four VTK triangles
/// assert!(jko::vtk::unstructured_grid(&Mesh::grid(&[2], &[0.0], &[1.0])?, &[]).is_none());
/// # Ok(())
/// # }
/// ```
pub fn unstructured_grid(mesh: &Mesh, fields: &[(&str, &Array1<f64>)]) -> Option<String> {
    let shapes = mesh.shapes()?;
    // VTK cells: one per cell, or one per tetrahedron of an agglomerated tetrahedral cell
    // (each with its cell's values): (cell, corners).
    let pieces: Vec<(usize, &[usize])> = (0..shapes.n_cells())
        .flat_map(|k| {
            let corners = shapes.cell(k);
            let per = if shapes.kind == CellKind::Tetrahedron {
                4
            } else {
                corners.len().max(1)
            };
            corners.chunks(per).map(move |c| (k, c))
        })
        .collect();
    let (np, nc) = (shapes.n_points(), pieces.len());
    let mut s = String::new();
    let _ = writeln!(s, r#"<?xml version="1.0"?>"#);
    let _ = writeln!(
        s,
        r#"<VTKFile type="UnstructuredGrid" version="1.0" byte_order="LittleEndian" header_type="UInt64">"#
    );
    let _ = writeln!(s, "  <UnstructuredGrid>");
    let _ = writeln!(
        s,
        r#"    <Piece NumberOfPoints="{np}" NumberOfCells="{nc}">"#
    );
    let _ = writeln!(s, "      <Points>");
    let _ = writeln!(
        s,
        r#"        <DataArray type="Float64" NumberOfComponents="3" format="ascii">"#
    );
    for i in 0..np {
        let p = shapes.point(i);
        let c = |a: usize| p.get(a).copied().unwrap_or(0.0);
        let _ = writeln!(s, "          {:e} {:e} {:e}", c(0), c(1), c(2));
    }
    let _ = writeln!(s, "        </DataArray>");
    let _ = writeln!(s, "      </Points>");
    let _ = writeln!(s, "      <Cells>");
    data_array(
        &mut s,
        "connectivity",
        "Int64",
        &mut pieces.iter().flat_map(|p| p.1).map(|c| c.to_string()),
    );
    data_array(
        &mut s,
        "offsets",
        "Int64",
        &mut pieces.iter().scan(0, |end, p| {
            *end += p.1.len();
            Some(end.to_string())
        }),
    );
    let ty = shapes.kind.vtk_type().to_string();
    data_array(&mut s, "types", "UInt8", &mut (0..nc).map(|_| ty.clone()));
    let _ = writeln!(s, "      </Cells>");
    let first = fields.first().map_or("rho", |f| f.0);
    let _ = writeln!(s, r#"      <CellData Scalars="{first}">"#);
    for (name, values) in fields {
        if values.len() != shapes.n_cells() {
            return None;
        }
        data_array(
            &mut s,
            name,
            "Float64",
            &mut pieces.iter().map(|p| format!("{:e}", values[p.0])),
        );
    }
    let _ = writeln!(s, "      </CellData>");
    let _ = writeln!(s, "    </Piece>");
    let _ = writeln!(s, "  </UnstructuredGrid>");
    let _ = writeln!(s, "</VTKFile>");
    Some(s)
}

/// One ASCII `DataArray` of `items`, twelve per line.
fn data_array(s: &mut String, name: &str, ty: &str, items: &mut dyn Iterator<Item = String>) {
    let _ = writeln!(
        s,
        r#"        <DataArray type="{ty}" Name="{name}" format="ascii">"#
    );
    let items: Vec<String> = items.collect();
    for line in items.chunks(12) {
        let _ = writeln!(s, "          {}", line.join(" "));
    }
    let _ = writeln!(s, "        </DataArray>");
}

//! Two-point-flux meshes from triangulations: triangles (2D) or tetrahedra (3D) read from a
//! mesh file ([`crate::gmsh`]) become a [`Mesh`] whose faces satisfy the orthogonality the
//! two-point flux needs (docs/mathematics.md §6). Two choices of control volumes
//! ([`ControlVolumes`]):
//!
//! - `elements` (default): the cells are the file's triangles or tetrahedra, in the file's
//!   order, centred at their **circumcentres**. Two neighbours' circumcentres lie on the line
//!   through their shared face's circumcentre orthogonal to it, so T_σ = |σ|/d_σ with d_σ the
//!   signed distance of the two circumcentres along the face normal. Admissible when every
//!   interior face has d_σ > 0 (a strictly Delaunay face: in 2D the two angles opposite the edge
//!   sum to less than π) and every circumcentre lies on the inner side of its boundary faces (no
//!   obtuse angle opposite a boundary edge: the centre would lie outside the domain). Otherwise
//!   the mesh is refused with [`InputError::InadmissibleMesh`], naming the elements.
//!   In 3D, neighbouring tetrahedra whose circumcentres coincide (d_σ = 0: five co-spherical
//!   corners, frequent in Delaunay meshes of boxes) are first **agglomerated** into one
//!   polyhedral control volume centred at the common circumcentre (the faces between them
//!   dropped; the cells are then numbered in the order of their first tetrahedron), so only
//!   faces with d_σ < 0 (truly non-Delaunay) are refused.
//! - `voronoi` (2D): the cells are the Voronoi regions of the mesh's vertices, clipped to the
//!   domain, centred at the vertices; cell k is the k-th node of the file (among the nodes the
//!   triangles use). The interface of two cells lies on the perpendicular bisector of their
//!   vertices, so d_σ is the edge length, always > 0. Interior edges that are not Delaunay
//!   are first flipped (Lawson's algorithm; the vertices and the boundary stay), and a triangle
//!   with an obtuse angle opposite a boundary edge, whose circumcentre lies outside the domain,
//!   is split by the bisectors of its two short edges instead of at its circumcentre. Any
//!   triangulation of a 2D domain whose vertices' fans are manifold is accepted.
//!
//! ```rust
//! use jko_core::{ControlVolumes, Mesh, Triangulation};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The unit square split into four triangles around its centre (right angles at the centre).
//! let points = vec![0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.5, 0.5];
//! let tri = Triangulation::new(2, points, vec![0, 1, 4, 1, 2, 4, 2, 3, 4, 3, 0, 4])?;
//! let mesh = Mesh::from_triangulation(&tri, ControlVolumes::Elements)?;
//! assert_eq!(mesh.n_cells(), 4);
//! // Circumcentres at the midpoints of the square's sides; neighbours are 1/√2 apart.
//! assert_eq!(mesh.centre(0), &[0.5, 0.0]);
//! assert!(mesh.faces().iter().all(|f| (f.distance - 0.5f64.sqrt()).abs() < 1e-15));
//! let dual = Mesh::from_triangulation(&tri, ControlVolumes::Voronoi)?;
//! assert_eq!(dual.n_cells(), 5);
//! assert!((dual.domain_volume() - 1.0).abs() < 1e-15);
//! assert!((dual.volumes()[4] - 0.5).abs() < 1e-15); // the centre's diamond
//! # Ok(())
//! # }
//! ```

use crate::error::InputError;
use crate::gmsh::Triangulation;
use crate::mesh::{CellKind, CellShapes, Face, Mesh};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Which control volumes a triangulation becomes (config key `mesh.control_volumes`).
///
/// ```rust
/// use jko_core::ControlVolumes;
///
/// assert_eq!(ControlVolumes::default(), ControlVolumes::Elements);
/// assert_eq!(ControlVolumes::Voronoi.to_string(), "voronoi");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlVolumes {
    /// The file's triangles or tetrahedra, centred at their circumcentres.
    #[default]
    Elements,
    /// Voronoi cells of the vertices, clipped to the domain (2D).
    Voronoi,
}

impl std::fmt::Display for ControlVolumes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ControlVolumes::Elements => "elements",
            ControlVolumes::Voronoi => "voronoi",
        })
    }
}

/// Relative tolerance of the geometric tests: d_σ ≤ TOL·|edge| counts as d_σ = 0 (cocircular
/// neighbours: infinite transmissibility), an area ≤ TOL·h² as zero.
const TOL: f64 = 1e-9;

/// How many offending elements a message lists.
const EXAMPLES: usize = 5;

impl Mesh {
    /// Read a Gmsh MSH 4.1 file ([`Triangulation::read_msh`]) and build its two-point-flux
    /// mesh ([`Mesh::from_triangulation`]).
    ///
    /// # Errors
    /// Those of both.
    ///
    /// ```rust
    /// use jko_core::{ControlVolumes, InputError, Mesh};
    ///
    /// let err = Mesh::from_msh("missing.msh".as_ref(), ControlVolumes::Elements).unwrap_err();
    /// assert!(matches!(err, InputError::MeshFile { .. }));
    /// ```
    pub fn from_msh(path: &Path, control_volumes: ControlVolumes) -> Result<Mesh, InputError> {
        Mesh::from_triangulation(&Triangulation::read_msh(path)?, control_volumes)
    }

    /// The two-point-flux mesh of a triangulation with the given control volumes (see the
    /// module docs); the mesh carries the cells' shapes ([`Mesh::shapes`]).
    ///
    /// # Errors
    /// [`InputError::InadmissibleMesh`] naming the offending elements (or vertices) and what
    /// to do: degenerate simplices, non-Delaunay faces or obtuse boundary triangles with
    /// `elements`, a vertex whose triangles do not form one fan with `voronoi`;
    /// [`InputError::InvalidMesh`] for `voronoi` in 3D.
    ///
    /// ```rust
    /// use jko_core::{ControlVolumes, InputError, Mesh, Triangulation};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Two triangles whose shared edge is not Delaunay (opposite angles 2 × 126.9° > 180°).
    /// let points = vec![0.0, 0.0, 2.0, 0.0, 1.0, 0.5, 1.0, -0.5];
    /// let tri = Triangulation::new(2, points, vec![0, 1, 2, 1, 0, 3])?;
    /// let err = Mesh::from_triangulation(&tri, ControlVolumes::Elements).unwrap_err();
    /// assert!(matches!(&err, InputError::InadmissibleMesh { tags, .. } if tags == &vec![1, 2]));
    /// assert!(err.to_string().contains("voronoi"), "{err}");
    /// // The Voronoi cells of the four vertices (the edge is flipped): the vertical edge
    /// // between the two apexes carries the flux of the left and right vertices' cells.
    /// let dual = Mesh::from_triangulation(&tri, ControlVolumes::Voronoi)?;
    /// assert_eq!(dual.n_cells(), 4);
    /// assert!((dual.domain_volume() - 1.0).abs() < 1e-14);
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_triangulation(
        tri: &Triangulation,
        control_volumes: ControlVolumes,
    ) -> Result<Mesh, InputError> {
        match (control_volumes, tri.dim) {
            (ControlVolumes::Elements, 2) => elements_2d(tri),
            (ControlVolumes::Elements, _) => elements_3d(tri),
            (ControlVolumes::Voronoi, 2) => voronoi_2d(tri),
            (ControlVolumes::Voronoi, d) => Err(InputError::InvalidMesh(format!(
                "control_volumes = \"voronoi\" is implemented for 2D triangulations; this one \
                 is {d}D (use control_volumes = \"elements\")"
            ))),
        }
    }
}

type P2 = [f64; 2];
type P3 = [f64; 3];

fn sub2(a: P2, b: P2) -> P2 {
    [a[0] - b[0], a[1] - b[1]]
}
fn dot2(a: P2, b: P2) -> f64 {
    a[0] * b[0] + a[1] * b[1]
}
fn cross2(a: P2, b: P2) -> f64 {
    a[0] * b[1] - a[1] * b[0]
}
fn norm2(a: P2) -> f64 {
    dot2(a, a).sqrt()
}
fn mid2(a: P2, b: P2) -> P2 {
    [0.5 * (a[0] + b[0]), 0.5 * (a[1] + b[1])]
}
fn sub3(a: P3, b: P3) -> P3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
fn dot3(a: P3, b: P3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
fn cross3(a: P3, b: P3) -> P3 {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn p2(tri: &Triangulation, i: usize) -> P2 {
    let p = tri.point(i);
    [p[0], p[1]]
}

fn p3(tri: &Triangulation, i: usize) -> P3 {
    let p = tri.point(i);
    [p[0], p[1], p[2]]
}

/// Circumcentre of a triangle (non-degenerate).
fn circumcentre2(a: P2, b: P2, c: P2) -> P2 {
    let (u, v) = (sub2(b, a), sub2(c, a));
    let d = 2.0 * cross2(u, v);
    let (uu, vv) = (dot2(u, u), dot2(v, v));
    [
        a[0] + (v[1] * uu - u[1] * vv) / d,
        a[1] + (u[0] * vv - v[0] * uu) / d,
    ]
}

/// Circumcentre of a tetrahedron (non-degenerate): a + x with 2 (p_i − a)·x = |p_i − a|².
fn circumcentre3(a: P3, b: P3, c: P3, d: P3) -> P3 {
    let (u, v, w) = (sub3(b, a), sub3(c, a), sub3(d, a));
    let det = dot3(u, cross3(v, w));
    let (uu, vv, ww) = (dot3(u, u), dot3(v, v), dot3(w, w));
    let (vw, wu, uv) = (cross3(v, w), cross3(w, u), cross3(u, v));
    let s = 0.5 / det;
    [
        a[0] + s * (uu * vw[0] + vv * wu[0] + ww * uv[0]),
        a[1] + s * (uu * vw[1] + vv * wu[1] + ww * uv[1]),
        a[2] + s * (uu * vw[2] + vv * wu[2] + ww * uv[2]),
    ]
}

/// Cotangent of the angle at `o` between the rays to `a` and `b`.
fn cot_at(o: P2, a: P2, b: P2) -> f64 {
    let (u, v) = (sub2(a, o), sub2(b, o));
    dot2(u, v) / cross2(u, v).abs()
}

fn degrees_from_cot(cot: f64) -> f64 {
    (1.0f64).atan2(cot).to_degrees()
}

fn key2(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

/// "N what: e1, e2, ... (and M more)".
fn listing(what: &str, items: &[String]) -> String {
    let shown: Vec<&str> = items.iter().take(EXAMPLES).map(String::as_str).collect();
    let more = items.len().saturating_sub(EXAMPLES);
    let tail = if more > 0 {
        format!(" (and {more} more)")
    } else {
        String::new()
    };
    format!("{} {what}: {}{tail}", items.len(), shown.join(", "))
}

const ELEMENTS_HINT: &str = "use control_volumes = \"voronoi\" in [mesh] (cells around the \
    vertices, which accepts any triangulation), or remesh with a Delaunay mesher that keeps \
    angles opposite the boundary below 90 degrees (gmsh's default 2D algorithm usually does)";

fn refuse(parts: Vec<String>, hint: &str, mut tags: Vec<u64>) -> InputError {
    tags.sort_unstable();
    tags.dedup();
    InputError::InadmissibleMesh {
        reason: format!("{}; {hint}", parts.join("; ")),
        tags,
    }
}

/// Refuse the simplices `flat` (indices into `tri`) as degenerate, naming them by element tag.
fn refuse_flat(tri: &Triangulation, flat: &[usize], what: &str) -> Result<(), InputError> {
    if flat.is_empty() {
        return Ok(());
    }
    let items: Vec<String> = flat
        .iter()
        .map(|&s| format!("element {}", tri.simplex_tags[s]))
        .collect();
    Err(refuse(
        vec![listing(what, &items)],
        "remove or repair them",
        flat.iter().map(|&s| tri.simplex_tags[s]).collect(),
    ))
}

/// Orient every triangle counter-clockwise; refuse degenerate ones.
fn oriented_triangles(tri: &Triangulation) -> Result<Vec<[usize; 3]>, InputError> {
    let mut out = Vec::with_capacity(tri.n_simplices());
    let mut flat = Vec::new();
    for s in 0..tri.n_simplices() {
        let v = tri.simplex(s);
        let (a, b, c) = (p2(tri, v[0]), p2(tri, v[1]), p2(tri, v[2]));
        let area2 = cross2(sub2(b, a), sub2(c, a));
        let h2 = dot2(sub2(b, a), sub2(b, a))
            .max(dot2(sub2(c, a), sub2(c, a)))
            .max(dot2(sub2(c, b), sub2(c, b)));
        if area2.abs() <= TOL * h2 || v[0] == v[1] || v[1] == v[2] || v[0] == v[2] {
            flat.push(s);
        }
        out.push(if area2 >= 0.0 {
            [v[0], v[1], v[2]]
        } else {
            [v[0], v[2], v[1]]
        });
    }
    refuse_flat(tri, &flat, "triangles have (almost) zero area")?;
    Ok(out)
}

/// Edge → triangles containing it (sorted map: deterministic order everywhere).
fn edge_map(tris: &[[usize; 3]]) -> BTreeMap<(usize, usize), Vec<usize>> {
    let mut edges: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
    for (t, c) in tris.iter().enumerate() {
        for l in 0..3 {
            edges.entry(key2(c[l], c[(l + 1) % 3])).or_default().push(t);
        }
    }
    edges
}

fn non_manifold(
    tri: &Triangulation,
    edges: &BTreeMap<(usize, usize), Vec<usize>>,
) -> Result<(), InputError> {
    let bad: Vec<(&(usize, usize), &Vec<usize>)> =
        edges.iter().filter(|(_, ts)| ts.len() > 2).collect();
    if bad.is_empty() {
        return Ok(());
    }
    let items: Vec<String> = bad
        .iter()
        .map(|((a, b), ts)| {
            format!(
                "nodes {}-{} (elements {})",
                tri.point_tags[*a],
                tri.point_tags[*b],
                ts.iter()
                    .map(|&t| tri.simplex_tags[t].to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .collect();
    let tags = bad
        .iter()
        .flat_map(|(_, ts)| ts.iter().map(|&t| tri.simplex_tags[t]))
        .collect();
    Err(refuse(
        vec![listing(
            "edges are shared by more than two triangles",
            &items,
        )],
        "a mesh of a domain has at most two triangles per edge (overlapping or duplicated elements?)",
        tags,
    ))
}

fn elements_2d(tri: &Triangulation) -> Result<Mesh, InputError> {
    let tris = oriented_triangles(tri)?;
    let edges = edge_map(&tris);
    non_manifold(tri, &edges)?;
    let n = tris.len();
    let mut volumes = Vec::with_capacity(n);
    let mut centres = Vec::with_capacity(2 * n);
    let mut cc = Vec::with_capacity(n);
    for c in &tris {
        let (a, b, d) = (p2(tri, c[0]), p2(tri, c[1]), p2(tri, c[2]));
        volumes.push(0.5 * cross2(sub2(b, a), sub2(d, a)));
        let o = circumcentre2(a, b, d);
        centres.extend_from_slice(&o);
        cc.push(o);
    }
    let third = |t: usize, a: usize, b: usize| {
        tris[t]
            .iter()
            .copied()
            .find(|&v| v != a && v != b)
            .unwrap_or(a)
    };
    let mut faces = Vec::new();
    let mut not_delaunay = Vec::new();
    let mut obtuse = Vec::new();
    let mut tags = Vec::new();
    for (&(a, b), ts) in &edges {
        let (pa, pb) = (p2(tri, a), p2(tri, b));
        let e = norm2(sub2(pb, pa));
        let normal = [(pb[1] - pa[1]) / e, (pa[0] - pb[0]) / e];
        let k = ts[0];
        let ok = p2(tri, third(k, a, b));
        // Orient the normal away from K.
        let sign = if dot2(sub2(ok, pa), normal) > 0.0 {
            -1.0
        } else {
            1.0
        };
        let n_out = [sign * normal[0], sign * normal[1]];
        if ts.len() == 1 {
            // Signed distance of K's circumcentre to the boundary edge, inwards.
            let inside = -dot2(sub2(cc[k], pa), n_out);
            if inside < -TOL * e {
                let angle = degrees_from_cot(cot_at(ok, pa, pb));
                obtuse.push(format!(
                    "element {} (angle {angle:.1} deg opposite boundary nodes {}-{})",
                    tri.simplex_tags[k], tri.point_tags[a], tri.point_tags[b]
                ));
                tags.push(tri.simplex_tags[k]);
            }
            continue;
        }
        let l = ts[1];
        let d = dot2(sub2(cc[l], cc[k]), n_out);
        if d <= TOL * e {
            let ol = p2(tri, third(l, a, b));
            let sum = degrees_from_cot(cot_at(ok, pa, pb)) + degrees_from_cot(cot_at(ol, pa, pb));
            not_delaunay.push(format!(
                "elements {}|{} (opposite angles sum to {sum:.2} deg)",
                tri.simplex_tags[k], tri.simplex_tags[l]
            ));
            tags.extend([tri.simplex_tags[k], tri.simplex_tags[l]]);
            continue;
        }
        faces.push(Face {
            k,
            l,
            area: e,
            distance: d,
            axis: 0,
        });
    }
    if !not_delaunay.is_empty() || !obtuse.is_empty() {
        let mut parts = Vec::new();
        if !not_delaunay.is_empty() {
            parts.push(listing(
                "interior edges are not strictly Delaunay (the neighbours' circumcentres \
                 coincide or are in the wrong order: d_sigma <= 0)",
                &not_delaunay,
            ));
        }
        if !obtuse.is_empty() {
            parts.push(listing(
                "boundary triangles have an obtuse angle opposite the boundary (their \
                 circumcentre lies outside the domain)",
                &obtuse,
            ));
        }
        return Err(refuse(parts, ELEMENTS_HINT, tags));
    }
    let shapes = CellShapes {
        dim: 2,
        points: tri.points.clone(),
        offsets: (0..=n).map(|k| 3 * k).collect(),
        connectivity: tris.iter().flatten().copied().collect(),
        kind: CellKind::Triangle,
    };
    Mesh::from_parts(2, volumes, centres, faces)?.with_shapes(shapes)
}

/// Relative distance under which two neighbouring tetrahedra's circumcentres count as one
/// point (co-spherical neighbours, |d_σ| ≤ AGGLOMERATE·√|σ|): they become one control volume.
const AGGLOMERATE: f64 = 1e-6;

/// One triangular face of a tetrahedral mesh: its corners, the tetrahedra that own it with
/// each one's opposite corner, a corner, the unit normal out of the first owner, its area.
struct TetFace {
    corners: [usize; 3],
    owners: Vec<(usize, usize)>,
    point: P3,
    normal: P3,
    area: f64,
}

impl TetFace {
    /// √|σ|, the length scale of the face's tolerances.
    fn scale(&self) -> f64 {
        self.area.sqrt()
    }
}

/// Union–find root of `a`, halving paths.
fn root(parent: &mut [usize], mut a: usize) -> usize {
    while parent[a] != a {
        parent[a] = parent[parent[a]];
        a = parent[a];
    }
    a
}

/// The faces of a tetrahedral mesh, each with its owners (sorted map: deterministic order).
fn tet_faces(tri: &Triangulation) -> Vec<TetFace> {
    let mut faces_of: BTreeMap<[usize; 3], Vec<(usize, usize)>> = BTreeMap::new();
    for s in 0..tri.n_simplices() {
        let v = tri.simplex(s);
        for skip in 0..4 {
            let mut f: Vec<usize> = (0..4).filter(|&i| i != skip).map(|i| v[i]).collect();
            f.sort_unstable();
            faces_of
                .entry([f[0], f[1], f[2]])
                .or_default()
                .push((s, v[skip]));
        }
    }
    faces_of
        .into_iter()
        .map(|(corners, owners)| {
            let (p, q, r) = (
                p3(tri, corners[0]),
                p3(tri, corners[1]),
                p3(tri, corners[2]),
            );
            let nv = cross3(sub3(q, p), sub3(r, p));
            let len = dot3(nv, nv).sqrt();
            // Orient the normal away from the first owner.
            let sign = if dot3(sub3(p3(tri, owners[0].1), p), nv) > 0.0 {
                -1.0 / len
            } else {
                1.0 / len
            };
            TetFace {
                corners,
                owners,
                point: p,
                normal: [sign * nv[0], sign * nv[1], sign * nv[2]],
                area: 0.5 * len,
            }
        })
        .collect()
}

/// Circumcentred tetrahedra; neighbours whose circumcentres coincide (co-spherical: gmsh's
/// Delaunay meshes have them wherever the points are locally regular) are agglomerated into one
/// polyhedral control volume centred at the common circumcentre, the faces between them
/// dropped. All faces between two control volumes lie in the bisector plane of their centres,
/// so T = Σ|σ| / |x_L − x_K| stays a consistent two-point flux.
fn elements_3d(tri: &Triangulation) -> Result<Mesh, InputError> {
    let n = tri.n_simplices();
    let mut volumes = vec![0.0; n];
    let mut cc = vec![[0.0; 3]; n];
    let mut flat = Vec::new();
    for s in 0..n {
        let v = tri.simplex(s);
        let (a, b, c, d) = (p3(tri, v[0]), p3(tri, v[1]), p3(tri, v[2]), p3(tri, v[3]));
        let vol6 = dot3(sub3(b, a), cross3(sub3(c, a), sub3(d, a)));
        let h = [
            sub3(b, a),
            sub3(c, a),
            sub3(d, a),
            sub3(c, b),
            sub3(d, b),
            sub3(d, c),
        ]
        .iter()
        .map(|e| dot3(*e, *e).sqrt())
        .fold(0.0, f64::max);
        if vol6.abs() <= TOL * h * h * h {
            flat.push(s);
            continue;
        }
        volumes[s] = vol6.abs() / 6.0;
        cc[s] = circumcentre3(a, b, c, d);
    }
    refuse_flat(tri, &flat, "tetrahedra have (almost) zero volume")?;
    let faces = tet_faces(tri);
    // Agglomerate neighbours with one circumcentre.
    let mut parent: Vec<usize> = (0..n).collect();
    for f in faces.iter().filter(|f| f.owners.len() == 2) {
        let (k, l) = (f.owners[0].0, f.owners[1].0);
        if dot3(sub3(cc[l], cc[k]), f.normal).abs() <= AGGLOMERATE * f.scale() {
            let (rk, rl) = (root(&mut parent, k), root(&mut parent, l));
            parent[rk.max(rl)] = rk.min(rl);
        }
    }
    // Control volumes numbered in the order of their first tetrahedron in the file.
    let mut cell_of_root = vec![usize::MAX; n];
    let mut cell_of = vec![0; n];
    let mut members: Vec<Vec<usize>> = Vec::new();
    for s in 0..n {
        let r = root(&mut parent, s);
        if cell_of_root[r] == usize::MAX {
            cell_of_root[r] = members.len();
            members.push(Vec::new());
        }
        cell_of[s] = cell_of_root[r];
        members[cell_of[s]].push(s);
    }
    let cell_volumes: Vec<f64> = members
        .iter()
        .map(|m| m.iter().map(|&s| volumes[s]).sum())
        .collect();
    let centres: Vec<P3> = members
        .iter()
        .zip(&cell_volumes)
        .map(|(m, &vol)| {
            let mut x = [0.0; 3];
            for &s in m {
                for (xa, ca) in x.iter_mut().zip(cc[s]) {
                    *xa += volumes[s] * ca / vol;
                }
            }
            x
        })
        .collect();
    // Faces between control volumes: Σ|σ| and Σ|σ|/d_σ per pair.
    let mut pairs: BTreeMap<(usize, usize), (f64, f64)> = BTreeMap::new();
    let mut not_delaunay = Vec::new();
    let mut outside = Vec::new();
    let mut many = Vec::new();
    let mut tags = Vec::new();
    for f in &faces {
        let k = f.owners[0].0;
        match f.owners.len() {
            1 => {
                let inside = -dot3(sub3(centres[cell_of[k]], f.point), f.normal);
                if inside < -TOL * f.scale() {
                    outside.push(format!(
                        "element {} (circumcentre {:.3e} outside its boundary face)",
                        tri.simplex_tags[k], -inside
                    ));
                    tags.push(tri.simplex_tags[k]);
                }
            }
            2 => {
                let l = f.owners[1].0;
                let (a, b) = (cell_of[k], cell_of[l]);
                if a == b {
                    continue;
                }
                let d = dot3(sub3(centres[b], centres[a]), f.normal);
                if d <= TOL * f.scale() {
                    not_delaunay.push(format!(
                        "elements {}|{} (d_sigma = {d:.3e})",
                        tri.simplex_tags[k], tri.simplex_tags[l]
                    ));
                    tags.extend([tri.simplex_tags[k], tri.simplex_tags[l]]);
                } else {
                    let e = pairs.entry(key2(a, b)).or_default();
                    e.0 += f.area;
                    e.1 += f.area / d;
                }
            }
            _ => {
                many.push(format!(
                    "nodes {}-{}-{}",
                    tri.point_tags[f.corners[0]],
                    tri.point_tags[f.corners[1]],
                    tri.point_tags[f.corners[2]]
                ));
                tags.extend(f.owners.iter().map(|&(s, _)| tri.simplex_tags[s]));
            }
        }
    }
    if !(not_delaunay.is_empty() && outside.is_empty() && many.is_empty()) {
        let mut parts = Vec::new();
        if !many.is_empty() {
            parts.push(listing(
                "faces are shared by more than two tetrahedra",
                &many,
            ));
        }
        if !not_delaunay.is_empty() {
            parts.push(listing(
                "interior faces are not Delaunay (d_sigma < 0: the neighbours' circumcentres \
                 are in the wrong order)",
                &not_delaunay,
            ));
        }
        if !outside.is_empty() {
            parts.push(listing(
                "boundary tetrahedra have their circumcentre outside the domain",
                &outside,
            ));
        }
        return Err(refuse(parts, TETRAHEDRA_HINT, tags));
    }
    let faces = pairs
        .into_iter()
        .map(|((k, l), (area, t))| Face {
            k,
            l,
            area,
            distance: area / t,
            axis: 0,
        })
        .collect();
    let mut offsets = vec![0];
    let mut connectivity = Vec::with_capacity(4 * n);
    for m in &members {
        for &s in m {
            connectivity.extend_from_slice(tri.simplex(s));
        }
        offsets.push(connectivity.len());
    }
    let shapes = CellShapes {
        dim: 3,
        points: tri.points.clone(),
        offsets,
        connectivity,
        kind: CellKind::Tetrahedron,
    };
    Mesh::from_parts(3, cell_volumes, centres.concat(), faces)?.with_shapes(shapes)
}

const TETRAHEDRA_HINT: &str = "the Voronoi dual is 2D only here: the tetrahedra must be \
    Delaunay. gmsh's 3D optimiser (Mesh.Optimize = 1, its default) moves a Delaunay mesh away \
    from Delaunay; mesh with Mesh.Algorithm3D = 10 (HXT) and Mesh.Optimize = 0 (as \
    data/meshes/make_meshes.py does)";

/// Flip interior edges until every one is locally Delaunay (Lawson); returns the number of
/// flips. `tris` stay counter-clockwise; `edges` is kept up to date.
fn lawson_flips(
    tri: &Triangulation,
    tris: &mut [[usize; 3]],
    edges: &mut BTreeMap<(usize, usize), Vec<usize>>,
) -> Result<usize, InputError> {
    let mut stack: Vec<(usize, usize)> = edges
        .iter()
        .filter(|(_, ts)| ts.len() == 2)
        .map(|(k, _)| *k)
        .collect();
    stack.reverse();
    let limit = 50 * (edges.len() + 10);
    let mut flips = 0;
    while let Some(e) = stack.pop() {
        let Some(ts) = edges.get(&e) else { continue };
        if ts.len() != 2 {
            continue;
        }
        let (t1, t2) = (ts[0], ts[1]);
        // Make t1 = (a, b, c) and t2 = (b, a, d), both counter-clockwise.
        let ccw_has =
            |t: &[usize; 3], a: usize, b: usize| (0..3).any(|l| t[l] == a && t[(l + 1) % 3] == b);
        let (a, b) = if ccw_has(&tris[t1], e.0, e.1) {
            (e.0, e.1)
        } else {
            (e.1, e.0)
        };
        let third = |t: &[usize; 3]| t.iter().copied().find(|&v| v != a && v != b);
        let (Some(c), Some(d)) = (third(&tris[t1]), third(&tris[t2])) else {
            continue;
        };
        let (pa, pb, pc, pd) = (p2(tri, a), p2(tri, b), p2(tri, c), p2(tri, d));
        if cot_at(pc, pa, pb) + cot_at(pd, pa, pb) >= -TOL {
            continue;
        }
        tris[t1] = [c, a, d];
        tris[t2] = [d, b, c];
        edges.remove(&e);
        edges.insert(key2(c, d), vec![t1, t2]);
        for (edge, from, to) in [(key2(a, d), t2, t1), (key2(b, c), t1, t2)] {
            if let Some(ts) = edges.get_mut(&edge) {
                for t in ts.iter_mut().filter(|t| **t == from) {
                    *t = to;
                }
            }
        }
        for edge in [key2(a, d), key2(d, b), key2(b, c), key2(c, a)] {
            if edges.get(&edge).is_some_and(|ts| ts.len() == 2) {
                stack.push(edge);
            }
        }
        flips += 1;
        if flips > limit {
            return Err(InputError::InvalidMesh(format!(
                "Delaunay edge flips did not terminate after {flips} flips (overlapping \
                 triangles?)"
            )));
        }
    }
    Ok(flips)
}

/// One triangle's part of a vertex's Voronoi cell: the points of its boundary after the
/// vertex, counter-clockwise, and the first and last neighbours (to chain the parts).
struct Piece {
    first: usize,
    last: usize,
    points: Vec<P2>,
}

fn voronoi_2d(tri: &Triangulation) -> Result<Mesh, InputError> {
    let mut tris = oriented_triangles(tri)?;
    let mut edges = edge_map(&tris);
    non_manifold(tri, &edges)?;
    lawson_flips(tri, &mut tris, &mut edges)?;
    let np = tri.n_points();
    let mut volumes = vec![0.0; np];
    let mut interface: BTreeMap<(usize, usize), f64> = BTreeMap::new();
    let mut pieces: Vec<Vec<Piece>> = (0..np).map(|_| Vec::new()).collect();
    for t in &tris {
        let p = [p2(tri, t[0]), p2(tri, t[1]), p2(tri, t[2])];
        let area = 0.5 * cross2(sub2(p[1], p[0]), sub2(p[2], p[0]));
        // cot[l]: angle at local vertex l; len[l]: edge (l, l+1).
        let cot: Vec<f64> = (0..3)
            .map(|l| cot_at(p[l], p[(l + 1) % 3], p[(l + 2) % 3]))
            .collect();
        let len: Vec<f64> = (0..3).map(|l| norm2(sub2(p[(l + 1) % 3], p[l]))).collect();
        let boundary = |l: usize| {
            edges
                .get(&key2(t[l], t[(l + 1) % 3]))
                .is_some_and(|ts| ts.len() == 1)
        };
        // An obtuse angle at m opposite a boundary edge (m+1, m+2): clip at that edge.
        let clipped = (0..3).find(|&m| cot[m] < -TOL && boundary((m + 1) % 3));
        match clipped {
            None => {
                let o = circumcentre2(p[0], p[1], p[2]);
                for l in 0..3 {
                    let (b, c) = ((l + 1) % 3, (l + 2) % 3);
                    // Edge (l, b) is opposite c; edge (l, c) = len[c] is opposite b.
                    volumes[t[l]] += (len[l] * len[l] * cot[c] + len[c] * len[c] * cot[b]) / 8.0;
                    *interface.entry(key2(t[l], t[b])).or_default() += 0.5 * len[l] * cot[c];
                    pieces[t[l]].push(Piece {
                        first: t[b],
                        last: t[c],
                        points: vec![mid2(p[l], p[b]), o, mid2(p[l], p[c])],
                    });
                }
            }
            Some(m) => {
                let (i, j) = ((m + 1) % 3, (m + 2) % 3);
                // Bisector of (i, m) meets edge (i, j) at distance (|im|/2)/cos θ_i from i.
                // len[l] is edge (l, l+1): (m, i) = len[m], (j, m) = len[j].
                let (e_im, e_jm) = (len[m], len[j]);
                let (tan_i, tan_j) = (1.0 / cot[i], 1.0 / cot[j]);
                let cos = |c: f64| c / (1.0 + c * c).sqrt();
                let along = |from: usize, to: usize, dist: f64| {
                    let d = sub2(p[to], p[from]);
                    let s = dist / norm2(d);
                    [p[from][0] + s * d[0], p[from][1] + s * d[1]]
                };
                let q_i = along(i, j, 0.5 * e_im / cos(cot[i]));
                let q_j = along(j, i, 0.5 * e_jm / cos(cot[j]));
                let vol_i = e_im * e_im * tan_i / 8.0;
                let vol_j = e_jm * e_jm * tan_j / 8.0;
                volumes[t[i]] += vol_i;
                volumes[t[j]] += vol_j;
                volumes[t[m]] += area - vol_i - vol_j;
                *interface.entry(key2(t[i], t[m])).or_default() += 0.5 * e_im * tan_i;
                *interface.entry(key2(t[j], t[m])).or_default() += 0.5 * e_jm * tan_j;
                interface.entry(key2(t[i], t[j])).or_default();
                pieces[t[i]].push(Piece {
                    first: t[j],
                    last: t[m],
                    points: vec![q_i, mid2(p[i], p[m])],
                });
                pieces[t[j]].push(Piece {
                    first: t[m],
                    last: t[i],
                    points: vec![mid2(p[j], p[m]), q_j],
                });
                pieces[t[m]].push(Piece {
                    first: t[i],
                    last: t[j],
                    points: vec![mid2(p[m], p[i]), q_i, q_j, mid2(p[m], p[j])],
                });
            }
        }
    }
    // Chain each vertex's pieces into one polygon (its fan, counter-clockwise).
    let scale = tri
        .points
        .iter()
        .fold(0.0f64, |m, x| m.max(x.abs()))
        .max(1e-300);
    let mut shape_points: Vec<f64> = Vec::new();
    let mut offsets = vec![0];
    let mut connectivity = Vec::new();
    let mut broken = Vec::new();
    for (v, list) in pieces.iter().enumerate() {
        let start = list
            .iter()
            .position(|a| !list.iter().any(|b| b.last == a.first));
        let on_boundary = start.is_some();
        let mut order = vec![start.unwrap_or(0)];
        while order.len() < list.len() {
            let cur = &list[order[order.len() - 1]];
            match list.iter().position(|b| b.first == cur.last) {
                Some(next) if !order.contains(&next) => order.push(next),
                _ => break,
            }
        }
        if order.len() != list.len() {
            broken.push(v);
            continue;
        }
        let mut poly: Vec<P2> = Vec::new();
        if on_boundary {
            poly.push(p2(tri, v));
        }
        for &i in &order {
            for &q in &list[i].points {
                if poly
                    .last()
                    .is_none_or(|l| norm2(sub2(*l, q)) > 1e-13 * scale)
                {
                    poly.push(q);
                }
            }
        }
        if poly.len() > 1 && norm2(sub2(poly[0], poly[poly.len() - 1])) <= 1e-13 * scale {
            poly.pop();
        }
        for q in poly {
            connectivity.push(shape_points.len() / 2);
            shape_points.extend_from_slice(&q);
        }
        offsets.push(connectivity.len());
    }
    if !broken.is_empty() {
        let items: Vec<String> = broken
            .iter()
            .map(|&v| format!("node {}", tri.point_tags[v]))
            .collect();
        return Err(refuse(
            vec![listing(
                "vertices are shared by triangles that do not form one fan (the domain \
                 touches itself there)",
                &items,
            )],
            "separate the parts or mesh them together",
            broken.iter().map(|&v| tri.point_tags[v]).collect(),
        ));
    }
    let mean = volumes.iter().sum::<f64>() / np as f64;
    let empty: Vec<usize> = (0..np).filter(|&v| volumes[v] <= TOL * mean).collect();
    if !empty.is_empty() {
        let items: Vec<String> = empty
            .iter()
            .map(|&v| format!("node {} (area {:.3e})", tri.point_tags[v], volumes[v]))
            .collect();
        return Err(refuse(
            vec![listing("Voronoi cells have no area", &items)],
            "remesh: a vertex whose cell vanishes is too close to its neighbours' circumcentres",
            empty.iter().map(|&v| tri.point_tags[v]).collect(),
        ));
    }
    let mut faces = Vec::new();
    for (&(a, b), &length) in &interface {
        let e = norm2(sub2(p2(tri, b), p2(tri, a)));
        if length > TOL * e {
            faces.push(Face {
                k: a,
                l: b,
                area: length,
                distance: e,
                axis: 0,
            });
        }
    }
    let shapes = CellShapes {
        dim: 2,
        points: shape_points,
        offsets,
        connectivity,
        kind: CellKind::Polygon,
    };
    Mesh::from_parts(2, volumes, tri.points.clone(), faces)?.with_shapes(shapes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn obtuse_boundary_triangle_is_clipped_in_the_dual_and_refused_in_the_primal() {
        // A flat triangle on the boundary y = 0: angle 2·atan(2/0.3)... obtuse at (0.5, 0.2).
        let points = vec![0.0, 0.0, 1.0, 0.0, 0.5, 0.2, 0.0, 1.0, 1.0, 1.0];
        let simplices = vec![0, 1, 2, 0, 2, 3, 2, 1, 4, 3, 2, 4];
        let tri = Triangulation::new(2, points, simplices).unwrap();
        let err = Mesh::from_triangulation(&tri, ControlVolumes::Elements).unwrap_err();
        let InputError::InadmissibleMesh { reason, tags } = &err else {
            panic!("{err}")
        };
        assert!(
            reason.contains("obtuse angle opposite the boundary"),
            "{reason}"
        );
        assert!(tags.contains(&1), "{tags:?}");
        let mesh = Mesh::from_triangulation(&tri, ControlVolumes::Voronoi).unwrap();
        assert!((mesh.domain_volume() - 1.0).abs() < 1e-14);
        assert!(mesh.volumes().iter().all(|&v| v > 0.0));
        assert!(
            mesh.faces()
                .iter()
                .all(|f| f.area > 0.0 && f.distance > 0.0)
        );
        // No face between the two ends of the clipped boundary edge (nodes 0 and 1).
        assert!(!mesh.faces().iter().any(|f| (f.k, f.l) == (0, 1)));
    }

    #[test]
    fn degenerate_triangles_and_tetrahedra_are_refused_by_tag() {
        // Triangle 2 has three collinear corners; tetrahedron 2 four coplanar ones.
        let points = vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 2.0, 0.0];
        let tri = Triangulation::new(2, points, vec![0, 1, 2, 0, 1, 3]).unwrap();
        let flat_area = "triangles have (almost) zero area";
        let tet_points = vec![
            0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0,
        ];
        let tet = Triangulation::new(3, tet_points, vec![0, 1, 2, 3, 0, 1, 2, 4]).unwrap();
        let flat_volume = "tetrahedra have (almost) zero volume";
        for (tri, what) in [(tri, flat_area), (tet, flat_volume)] {
            let err = Mesh::from_triangulation(&tri, ControlVolumes::Elements).unwrap_err();
            let InputError::InadmissibleMesh { reason, tags } = &err else {
                panic!("{err}")
            };
            assert!(
                reason.contains(what) && reason.contains("element 2"),
                "{reason}"
            );
            assert_eq!(tags, &vec![2]);
        }
    }

    #[test]
    fn regular_triangles_have_the_expected_transmissibility() {
        // Two equilateral triangles of side 1: d_σ = 2 · (1/(2√3)) = 1/√3, T = √3.
        let h = 3f64.sqrt() / 2.0;
        let points = vec![0.0, 0.0, 1.0, 0.0, 0.5, h, 0.5, -h];
        let tri = Triangulation::new(2, points, vec![0, 1, 2, 1, 0, 3]).unwrap();
        let mesh = Mesh::from_triangulation(&tri, ControlVolumes::Elements).unwrap();
        assert_eq!(mesh.faces().len(), 1);
        assert!((mesh.faces()[0].transmissibility() - 3f64.sqrt()).abs() < 1e-14);
        assert!((mesh.volumes()[0] - h / 2.0).abs() < 1e-15);
    }

    #[test]
    fn cospherical_tetrahedra_are_agglomerated_into_one_cell() {
        // Two unit cubes side by side along x, each cut into Kuhn's six tetrahedra (all six on
        // the cube's circumsphere): two control volumes, the cubes, centred at their centres,
        // with one face of area 1 at distance 1 (the grid's two-point flux).
        let id = |i: usize, j: usize, k: usize| i * 4 + j * 2 + k;
        let mut points = Vec::new();
        for i in 0..3 {
            for j in 0..2 {
                for k in 0..2 {
                    points.extend([i as f64, j as f64, k as f64]);
                }
            }
        }
        let mut simplices = Vec::new();
        for x in 0..2 {
            for order in [
                [0, 1, 2],
                [0, 2, 1],
                [1, 0, 2],
                [1, 2, 0],
                [2, 0, 1],
                [2, 1, 0],
            ] {
                let mut c = [x, 0, 0];
                simplices.push(id(c[0], c[1], c[2]));
                for axis in order {
                    c[axis] += 1;
                    simplices.push(id(c[0], c[1], c[2]));
                }
            }
        }
        let tri = Triangulation::new(3, points, simplices).unwrap();
        let mesh = Mesh::from_triangulation(&tri, ControlVolumes::Elements).unwrap();
        assert_eq!(mesh.n_cells(), 2);
        for (k, x) in [(0, 0.5), (1, 1.5)] {
            assert!((mesh.volumes()[k] - 1.0).abs() < 1e-14);
            let c = mesh.centre(k);
            assert!((c[0] - x).abs() + (c[1] - 0.5).abs() + (c[2] - 0.5).abs() < 1e-14);
        }
        assert_eq!(mesh.faces().len(), 1);
        let f = &mesh.faces()[0];
        assert!((f.area - 1.0).abs() < 1e-14 && (f.distance - 1.0).abs() < 1e-14);
        // Each cell's shape lists its six tetrahedra.
        let shapes = mesh.shapes().unwrap();
        assert_eq!((shapes.cell(0).len(), shapes.cell(1).len()), (24, 24));
    }

    #[test]
    fn tetrahedra_circumcentres_inside_or_refused() {
        // A regular tetrahedron: circumcentre at the origin, volume 8/3.
        let regular = vec![
            1.0, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0, 1.0, -1.0, -1.0, -1.0, 1.0,
        ];
        let tri = Triangulation::new(3, regular, vec![0, 1, 2, 3]).unwrap();
        let mesh = Mesh::from_triangulation(&tri, ControlVolumes::Elements).unwrap();
        assert!(mesh.centre(0).iter().all(|x| x.abs() < 1e-15));
        assert!((mesh.volumes()[0] - 8.0 / 3.0).abs() < 1e-14);
        assert!(Mesh::from_triangulation(&tri, ControlVolumes::Voronoi).is_err());
        // The cube's corner tetrahedron has its circumcentre (½, ½, ½) beyond its slanted face.
        let corner = vec![0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        let tri = Triangulation::new(3, corner, vec![0, 1, 2, 3]).unwrap();
        let err = Mesh::from_triangulation(&tri, ControlVolumes::Elements).unwrap_err();
        assert!(
            matches!(&err, InputError::InadmissibleMesh { tags, .. } if tags == &vec![1]),
            "{err}"
        );
    }
}

//! Gmsh MSH 4.1 files (the format gmsh writes by default), ASCII or binary, read into a
//! [`Triangulation`]: the points and the top-dimensional simplices (triangles in 2D,
//! tetrahedra in 3D) in the file's order, with their file tags for messages.
//!
//! What is read: `$MeshFormat` (version 4.1, ASCII or binary, either byte order), `$Nodes` and
//! `$Elements`; every other section (`$Entities`, `$PhysicalNames`, `$Periodic`, data
//! sections, ...) is skipped. Elements of lower dimension (boundary lines, points) are
//! ignored: the boundary is found from the simplices themselves (faces with one neighbour).
//! A 2D mesh is a set of triangles in a plane z = const (gmsh writes z = 0); triangulated
//! surfaces in 3D, quadrangles, hexahedra and second-order elements are refused with a message
//! naming them. Older versions (MSH 2.2, 4.0) are refused with the command that converts them.
//!
//! The parser is a small hand-written one (no dependency): it checks every count against the
//! bytes present before allocating, so a corrupt or truncated file is an error, never a panic or
//! a huge allocation.
//!
//! ```rust
//! use jko_core::gmsh::Triangulation;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Two triangles on the unit square (node tags 1-4, element tags 7-8).
//! let text = "$MeshFormat\n4.1 0 8\n$EndMeshFormat\n\
//!     $Nodes\n1 4 1 4\n2 1 0 4\n1\n2\n3\n4\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n$EndNodes\n\
//!     $Elements\n1 2 7 8\n2 1 2 2\n7 1 2 3\n8 1 3 4\n$EndElements\n";
//! let tri = Triangulation::parse_msh(text.as_bytes(), "square.msh")?;
//! assert_eq!((tri.dim, tri.n_points(), tri.n_simplices()), (2, 4, 2));
//! assert_eq!(tri.simplex(1), &[0, 2, 3]);
//! assert_eq!(tri.simplex_tags, vec![7, 8]);
//! # Ok(())
//! # }
//! ```

use crate::error::InputError;
use std::collections::HashMap;
use std::path::Path;

/// Points and simplices (triangles in 2D, tetrahedra in 3D), as read from a mesh file or
/// given by hand ([`Triangulation::new`]).
///
/// ```rust
/// use jko_core::gmsh::Triangulation;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let tri = Triangulation::new(2, vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0], vec![0, 1, 2])?;
/// assert_eq!(tri.point(2), &[0.0, 1.0]);
/// assert!(Triangulation::new(2, vec![0.0, 0.0], vec![0, 1, 2]).is_err());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Triangulation {
    /// Space dimension, 2 (triangles) or 3 (tetrahedra).
    pub dim: usize,
    /// Point coordinates, `dim` per point.
    pub points: Vec<f64>,
    /// The file's node tag of each point (1-based numbers for a hand-made triangulation).
    pub point_tags: Vec<u64>,
    /// Point indices, `dim + 1` per simplex.
    pub simplices: Vec<usize>,
    /// The file's element tag of each simplex (1-based numbers for a hand-made one).
    pub simplex_tags: Vec<u64>,
}

impl Triangulation {
    /// A triangulation from points (`dim` coordinates each) and simplices (`dim + 1` point
    /// indices each); tags are 1, 2, ... in the given order.
    ///
    /// # Errors
    /// [`InputError::InvalidMesh`] for `dim` other than 2 or 3, lengths that are not
    /// multiples of the entries per item, an index past the points, a non-finite coordinate,
    /// or no simplex.
    ///
    /// ```rust
    /// use jko_core::gmsh::Triangulation;
    ///
    /// let err = Triangulation::new(2, vec![0.0; 6], vec![0, 1, 5]).unwrap_err();
    /// assert!(err.to_string().contains("point 5"), "{err}");
    /// ```
    pub fn new(
        dim: usize,
        points: Vec<f64>,
        simplices: Vec<usize>,
    ) -> Result<Triangulation, InputError> {
        let n_points = points.len() / dim.max(1);
        let tri = Triangulation {
            dim,
            point_tags: (1..=n_points as u64).collect(),
            simplex_tags: (1..=(simplices.len() / (dim + 1)) as u64).collect(),
            points,
            simplices,
        };
        tri.validate()?;
        Ok(tri)
    }

    fn validate(&self) -> Result<(), InputError> {
        let bad = |m: String| Err(InputError::InvalidMesh(m));
        if !(2..=3).contains(&self.dim) {
            return bad(format!(
                "a triangulation is 2D or 3D, got dimension {}",
                self.dim
            ));
        }
        let d = self.dim;
        if !self.points.len().is_multiple_of(d) || !self.simplices.len().is_multiple_of(d + 1) {
            return bad(format!(
                "{} coordinates and {} simplex indices are not multiples of {d} and {}",
                self.points.len(),
                self.simplices.len(),
                d + 1
            ));
        }
        if self.simplices.is_empty() {
            return bad("the triangulation has no simplex".into());
        }
        if let Some(i) = self.points.iter().position(|x| !x.is_finite()) {
            return bad(format!("point {} has a non-finite coordinate", i / d));
        }
        let n = self.n_points();
        if let Some(&p) = self.simplices.iter().find(|&&p| p >= n) {
            return bad(format!(
                "a simplex uses point {p}, but there are {n} points"
            ));
        }
        Ok(())
    }

    /// Number of points.
    ///
    /// ```rust
    /// # use jko_core::gmsh::Triangulation;
    /// let tri = Triangulation::new(2, vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0], vec![0, 1, 2]).unwrap();
    /// assert_eq!(tri.n_points(), 3);
    /// ```
    pub fn n_points(&self) -> usize {
        self.points.len() / self.dim
    }

    /// Number of simplices.
    ///
    /// ```rust
    /// # use jko_core::gmsh::Triangulation;
    /// let tri = Triangulation::new(2, vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0], vec![0, 1, 2]).unwrap();
    /// assert_eq!(tri.n_simplices(), 1);
    /// ```
    pub fn n_simplices(&self) -> usize {
        self.simplices.len() / (self.dim + 1)
    }

    /// Coordinates of point `i`.
    ///
    /// # Panics
    /// If `i ≥ n_points()`.
    ///
    /// ```rust
    /// # use jko_core::gmsh::Triangulation;
    /// let tri = Triangulation::new(2, vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0], vec![0, 1, 2]).unwrap();
    /// assert_eq!(tri.point(1), &[1.0, 0.0]);
    /// ```
    pub fn point(&self, i: usize) -> &[f64] {
        &self.points[i * self.dim..(i + 1) * self.dim]
    }

    /// Point indices of simplex `s`.
    ///
    /// # Panics
    /// If `s ≥ n_simplices()`.
    ///
    /// ```rust
    /// # use jko_core::gmsh::Triangulation;
    /// let tri = Triangulation::new(2, vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0], vec![0, 1, 2]).unwrap();
    /// assert_eq!(tri.simplex(0), &[0, 1, 2]);
    /// ```
    pub fn simplex(&self, s: usize) -> &[usize] {
        &self.simplices[s * (self.dim + 1)..(s + 1) * (self.dim + 1)]
    }

    /// Read a Gmsh MSH 4.1 file (ASCII or binary); see the module docs for what is read.
    ///
    /// # Errors
    /// [`InputError::MeshFile`] naming the file: unreadable, another format or version,
    /// truncated or inconsistent sections, unsupported elements, no triangles or tetrahedra.
    ///
    /// ```rust
    /// use jko_core::gmsh::Triangulation;
    ///
    /// let err = Triangulation::read_msh("missing.msh".as_ref()).unwrap_err();
    /// assert!(err.to_string().starts_with("mesh file missing.msh: "), "{err}");
    /// ```
    pub fn read_msh(path: &Path) -> Result<Triangulation, InputError> {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| InputError::MeshFile {
            path: origin.clone(),
            message: e.to_string(),
        })?;
        Self::parse_msh(&bytes, &origin)
    }

    /// Parse the bytes of an MSH 4.1 file; `origin` names it in errors.
    ///
    /// # Errors
    /// As [`Triangulation::read_msh`].
    ///
    /// ```rust
    /// use jko_core::gmsh::Triangulation;
    ///
    /// let old = b"$MeshFormat\n2.2 0 8\n$EndMeshFormat\n";
    /// let err = Triangulation::parse_msh(old, "old.msh").unwrap_err();
    /// assert!(err.to_string().contains("-format msh41"), "{err}");
    /// ```
    pub fn parse_msh(bytes: &[u8], origin: &str) -> Result<Triangulation, InputError> {
        Parser {
            b: bytes,
            pos: 0,
            origin,
            binary: false,
            swap: false,
        }
        .parse()
    }
}

/// Nodes per element of the Gmsh element types this reader can skip or use, with the
/// element's dimension and name (gmsh's numbering).
fn element_type(t: i64) -> Option<(usize, usize, &'static str)> {
    Some(match t {
        1 => (2, 1, "2-node line"),
        2 => (3, 2, "3-node triangle"),
        3 => (4, 2, "4-node quadrangle"),
        4 => (4, 3, "4-node tetrahedron"),
        5 => (8, 3, "8-node hexahedron"),
        6 => (6, 3, "6-node prism"),
        7 => (5, 3, "5-node pyramid"),
        8 => (3, 1, "3-node line"),
        9 => (6, 2, "6-node triangle"),
        10 => (9, 2, "9-node quadrangle"),
        11 => (10, 3, "10-node tetrahedron"),
        12 => (27, 3, "27-node hexahedron"),
        13 => (18, 3, "18-node prism"),
        14 => (14, 3, "14-node pyramid"),
        15 => (1, 0, "point"),
        16 => (8, 2, "8-node quadrangle"),
        17 => (20, 3, "20-node hexahedron"),
        18 => (15, 3, "15-node prism"),
        19 => (13, 3, "13-node pyramid"),
        _ => return None,
    })
}

struct Parser<'a> {
    b: &'a [u8],
    pos: usize,
    origin: &'a str,
    binary: bool,
    /// Binary data in the other byte order than this machine's.
    swap: bool,
}

/// One block of elements as read: its type and (tag, node tags) pairs.
struct Block {
    kind: i64,
    tags: Vec<u64>,
    nodes: Vec<u64>,
}

impl<'a> Parser<'a> {
    fn err<T>(&self, message: impl Into<String>) -> Result<T, InputError> {
        Err(InputError::MeshFile {
            path: self.origin.to_string(),
            message: message.into(),
        })
    }

    fn skip_space(&mut self) {
        while self.pos < self.b.len() && self.b[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    /// The next line (without its end of line), after skipping blank space.
    fn line(&mut self) -> Option<&'a str> {
        self.skip_space();
        if self.pos >= self.b.len() {
            return None;
        }
        let start = self.pos;
        while self.pos < self.b.len() && self.b[self.pos] != b'\n' {
            self.pos += 1;
        }
        let line = &self.b[start..self.pos];
        // Consume the end of line: binary data starts right after it.
        self.pos = (self.pos + 1).min(self.b.len());
        Some(std::str::from_utf8(line).map_or("<not text>", str::trim_end))
    }

    /// The next whitespace-separated ASCII token.
    fn token(&mut self, what: &str) -> Result<&'a str, InputError> {
        self.skip_space();
        let start = self.pos;
        while self.pos < self.b.len() && !self.b[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
        if start == self.pos {
            return self.err(format!("the file ends while reading {what}"));
        }
        match std::str::from_utf8(&self.b[start..self.pos]) {
            Ok(t) => Ok(t),
            Err(_) => self.err(format!("{what} is not text")),
        }
    }

    fn int(&mut self, what: &str) -> Result<i64, InputError> {
        if self.binary {
            let raw = self.bytes::<4>(what)?;
            return Ok(i64::from(i32::from_ne_bytes(raw)));
        }
        let t = self.token(what)?;
        t.parse()
            .or_else(|_| self.err(format!("{what}: `{t}` is not an integer")))
    }

    /// A count or tag: `size_t` (8 bytes) in binary files.
    fn size(&mut self, what: &str) -> Result<u64, InputError> {
        if self.binary {
            return Ok(u64::from_ne_bytes(self.bytes::<8>(what)?));
        }
        let t = self.token(what)?;
        t.parse()
            .or_else(|_| self.err(format!("{what}: `{t}` is not a non-negative integer")))
    }

    fn real(&mut self, what: &str) -> Result<f64, InputError> {
        let x = if self.binary {
            f64::from_ne_bytes(self.bytes::<8>(what)?)
        } else {
            let t = self.token(what)?;
            t.parse()
                .or_else(|_| self.err(format!("{what}: `{t}` is not a number")))?
        };
        if x.is_finite() {
            Ok(x)
        } else {
            self.err(format!("{what} is not finite ({x})"))
        }
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N], InputError> {
        if self.pos + N > self.b.len() {
            return self.err(format!("the file ends while reading {what}"));
        }
        let mut raw = [0u8; N];
        raw.copy_from_slice(&self.b[self.pos..self.pos + N]);
        if self.swap {
            raw.reverse();
        }
        self.pos += N;
        Ok(raw)
    }

    /// A count that allocates: at most what the rest of the file can hold at `min_bytes`
    /// bytes per item (one ASCII digit and a separator, or the binary size).
    fn count(&mut self, what: &str, min_bytes: usize) -> Result<usize, InputError> {
        let n = self.size(what)?;
        let room = (self.b.len() - self.pos) / min_bytes.max(1);
        if n > room as u64 {
            return self.err(format!(
                "{what} = {n}, more than the {} bytes left in the file can hold",
                self.b.len() - self.pos
            ));
        }
        Ok(n as usize)
    }

    fn expect_end(&mut self, section: &str) -> Result<(), InputError> {
        let want = format!("$End{section}");
        match self.line() {
            Some(l) if l == want => Ok(()),
            Some(l) => self.err(format!("expected {want}, found `{}`", truncate(l))),
            None => self.err(format!("the file ends before {want}")),
        }
    }

    /// Skip to the line after `$End<section>` (any content, text or binary).
    fn skip_section(&mut self, section: &str) -> Result<(), InputError> {
        let want = format!("$End{section}");
        let rest = &self.b[self.pos..];
        match rest.windows(want.len()).position(|w| w == want.as_bytes()) {
            Some(i) => {
                self.pos += i + want.len();
                Ok(())
            }
            None => self.err(format!("the file ends before {want}")),
        }
    }

    fn parse(mut self) -> Result<Triangulation, InputError> {
        let mut format_seen = false;
        let mut nodes: Option<(Vec<u64>, Vec<[f64; 3]>)> = None;
        let mut blocks: Vec<Block> = Vec::new();
        while let Some(line) = self.line() {
            let Some(section) = line.strip_prefix('$') else {
                return self.err(format!(
                    "expected a section such as $MeshFormat, found `{}`",
                    truncate(line)
                ));
            };
            let section = section.trim();
            if !format_seen && section != "MeshFormat" {
                return self.err("not a Gmsh mesh file: it does not start with $MeshFormat");
            }
            match section {
                "MeshFormat" => {
                    self.format()?;
                    format_seen = true;
                }
                "Nodes" => nodes = Some(self.nodes()?),
                "Elements" => blocks = self.elements()?,
                other => self.skip_section(other)?,
            }
        }
        if !format_seen {
            return self.err("not a Gmsh mesh file: it does not start with $MeshFormat");
        }
        let Some((node_tags, coords)) = nodes else {
            return self.err("no $Nodes section");
        };
        self.assemble(node_tags, coords, blocks)
    }

    fn format(&mut self) -> Result<(), InputError> {
        let version = self.token("the MSH version")?;
        if version != "4.1" {
            return self.err(format!(
                "MSH version {version}; this reader takes version 4.1, gmsh's default \
                 (convert with `gmsh FILE -save -format msh41 -o NEW.msh`)"
            ));
        }
        let file_type = self.token("the file type")?;
        let data_size = self.token("the data size")?;
        if data_size != "8" {
            return self.err(format!(
                "data size {data_size}; only 8-byte sizes (gmsh's) are read"
            ));
        }
        match file_type {
            "0" => {}
            "1" => {
                // One int 1 in the writer's byte order, after the line's end.
                while self.pos < self.b.len() && self.b[self.pos] != b'\n' {
                    self.pos += 1;
                }
                self.pos += 1;
                let one = self.bytes::<4>("the byte-order mark")?;
                if i32::from_ne_bytes(one) == 1 {
                    self.swap = false;
                } else if i32::from_ne_bytes([one[3], one[2], one[1], one[0]]) == 1 {
                    self.swap = true;
                } else {
                    return self.err("binary file without a readable byte-order mark");
                }
                self.binary = true;
            }
            other => return self.err(format!("file type {other} (expected 0 or 1)")),
        }
        self.expect_end("MeshFormat")
    }

    /// A `$Nodes` or `$Elements` section's header: its numbers of blocks and of `item`s, then
    /// the smallest and largest tag (not needed); an item takes at least `item_fields` numbers.
    fn section_header(
        &mut self,
        item: &str,
        item_fields: usize,
    ) -> Result<(usize, usize), InputError> {
        let min = if self.binary { 8 } else { 2 };
        let n_blocks = self.count(&format!("the number of {item} blocks"), 4 * min)?;
        let n_items = self.count(&format!("the number of {item}s"), item_fields * min)?;
        self.size(&format!("the smallest {item} tag"))?;
        self.size(&format!("the largest {item} tag"))?;
        Ok((n_blocks, n_items))
    }

    fn nodes(&mut self) -> Result<(Vec<u64>, Vec<[f64; 3]>), InputError> {
        let min = if self.binary { 8 } else { 2 };
        let (n_blocks, n_nodes) = self.section_header("node", 4)?;
        let mut tags = Vec::with_capacity(n_nodes);
        let mut coords = Vec::with_capacity(n_nodes);
        for _ in 0..n_blocks {
            let entity_dim = self.int("a node block's entity dimension")?;
            let _entity = self.int("a node block's entity tag")?;
            let parametric = self.int("a node block's parametric flag")?;
            let n = self.count("the nodes in a block", 4 * min)?;
            if tags.len() + n > n_nodes {
                return self.err(format!(
                    "the node blocks hold more than the {n_nodes} nodes announced"
                ));
            }
            let extra = match (parametric, entity_dim) {
                (0, _) => 0,
                (1, d @ 0..=3) => d as usize,
                (p, d) => {
                    return self.err(format!(
                        "node block with parametric flag {p} on an entity of dimension {d}"
                    ));
                }
            };
            let first = tags.len();
            for _ in 0..n {
                tags.push(self.size("a node tag")?);
            }
            for i in 0..n {
                let mut x = [0.0; 3];
                for (a, xa) in x.iter_mut().enumerate() {
                    *xa = self.real(&format!("coordinate {a} of node {}", tags[first + i]))?;
                }
                for _ in 0..extra {
                    self.real("a parametric coordinate")?;
                }
                coords.push(x);
            }
        }
        if tags.len() != n_nodes {
            return self.err(format!("{n_nodes} nodes announced, {} found", tags.len()));
        }
        self.expect_end("Nodes")?;
        Ok((tags, coords))
    }

    fn elements(&mut self) -> Result<Vec<Block>, InputError> {
        let min = if self.binary { 8 } else { 2 };
        let (n_blocks, n_elements) = self.section_header("element", 2)?;
        let mut blocks = Vec::with_capacity(n_blocks);
        let mut total = 0usize;
        for _ in 0..n_blocks {
            let _entity_dim = self.int("an element block's entity dimension")?;
            let _entity = self.int("an element block's entity tag")?;
            let kind = self.int("an element type")?;
            let Some((per, _, _)) = element_type(kind) else {
                return self.err(format!(
                    "element type {kind} is not one this reader knows (lines, triangles, \
                     quadrangles, tetrahedra, hexahedra, prisms, pyramids, points)"
                ));
            };
            let n = self.count("the elements in a block", (per + 1) * min)?;
            total += n;
            if total > n_elements {
                return self.err(format!(
                    "the element blocks hold more than the {n_elements} elements announced"
                ));
            }
            let mut tags = Vec::with_capacity(n);
            let mut nodes = Vec::with_capacity(n * per);
            for _ in 0..n {
                tags.push(self.size("an element tag")?);
                for _ in 0..per {
                    nodes.push(self.size("an element's node tag")?);
                }
            }
            blocks.push(Block { kind, tags, nodes });
        }
        if total != n_elements {
            return self.err(format!("{n_elements} elements announced, {total} found"));
        }
        self.expect_end("Elements")?;
        Ok(blocks)
    }

    fn assemble(
        &self,
        node_tags: Vec<u64>,
        coords: Vec<[f64; 3]>,
        blocks: Vec<Block>,
    ) -> Result<Triangulation, InputError> {
        let top = blocks
            .iter()
            .filter(|b| !b.tags.is_empty())
            .filter_map(|b| element_type(b.kind).map(|t| t.1))
            .max();
        let dim = match top {
            Some(d @ 2..=3) => d,
            _ => return self.err("no triangles or tetrahedra (is the mesh generated?)"),
        };
        let simplex = if dim == 2 { 2 } else { 4 };
        for b in &blocks {
            if let Some((_, d, name)) = element_type(b.kind)
                && d == dim
                && b.kind != simplex
                && let Some(tag) = b.tags.first()
            {
                return self.err(format!(
                    "element {tag} is a {name}; only {} are read (mesh with first-order \
                     simplices)",
                    if dim == 2 {
                        "3-node triangles"
                    } else {
                        "4-node tetrahedra"
                    }
                ));
            }
        }
        let index: HashMap<u64, usize> =
            node_tags.iter().enumerate().map(|(i, &t)| (t, i)).collect();
        // Points used by the simplices, in the file's node order.
        let mut used = vec![usize::MAX; node_tags.len()];
        let mut simplex_tags = Vec::new();
        let mut raw = Vec::new();
        for b in blocks.iter().filter(|b| b.kind == simplex) {
            simplex_tags.extend_from_slice(&b.tags);
            for (e, chunk) in b.nodes.chunks(dim + 1).enumerate() {
                for &t in chunk {
                    let Some(&i) = index.get(&t) else {
                        return self.err(format!(
                            "element {} uses node {t}, which is not in $Nodes",
                            b.tags[e]
                        ));
                    };
                    used[i] = 0;
                    raw.push(i);
                }
            }
        }
        let mut next = 0;
        for u in used.iter_mut().filter(|u| **u == 0) {
            *u = next;
            next += 1;
        }
        let mut points = Vec::with_capacity(next * dim);
        let mut point_tags = Vec::with_capacity(next);
        let z0 = raw.first().map_or(0.0, |&i| coords[i][2]);
        let scale = coords
            .iter()
            .flat_map(|c| c.iter())
            .fold(0.0f64, |m, x| m.max(x.abs()))
            .max(1e-300);
        for (i, c) in coords.iter().enumerate() {
            if used[i] == usize::MAX {
                continue;
            }
            if dim == 2 && (c[2] - z0).abs() > 1e-12 * scale {
                return self.err(format!(
                    "the triangles are not in a plane z = const (node {} has z = {}, another \
                     {z0}); triangulated surfaces are not supported",
                    node_tags[i], c[2]
                ));
            }
            points.extend_from_slice(&c[..dim]);
            point_tags.push(node_tags[i]);
        }
        let simplices = raw.into_iter().map(|i| used[i]).collect();
        let tri = Triangulation {
            dim,
            points,
            point_tags,
            simplices,
            simplex_tags,
        };
        if let Err(InputError::InvalidMesh(m)) = tri.validate() {
            return self.err(m);
        }
        Ok(tri)
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SQUARE: &str = "$MeshFormat\n4.1 0 8\n$EndMeshFormat\n\
        $PhysicalNames\n1\n2 1 \"domain\"\n$EndPhysicalNames\n\
        $Nodes\n2 5 1 5\n0 1 0 1\n5\n0.5 0.5 0\n2 1 0 4\n1\n2\n3\n4\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n$EndNodes\n\
        $Elements\n2 5 1 5\n1 1 1 1\n1 1 2\n2 1 2 4\n2 1 2 5\n3 2 3 5\n4 3 4 5\n5 4 1 5\n$EndElements\n";

    #[test]
    fn ascii_square_with_centre_node() {
        let t = Triangulation::parse_msh(SQUARE.as_bytes(), "s").unwrap();
        assert_eq!(t.dim, 2);
        // Node 5 comes first in the file, so it is point 0.
        assert_eq!(t.point_tags, vec![5, 1, 2, 3, 4]);
        assert_eq!(t.point(0), &[0.5, 0.5]);
        assert_eq!(t.simplex_tags, vec![2, 3, 4, 5]);
        assert_eq!(t.simplex(0), &[1, 2, 0]);
    }

    #[test]
    fn binary_matches_ascii() {
        // The same mesh written in binary by hand (gmsh's layout).
        let mut b: Vec<u8> = b"$MeshFormat\n4.1 1 8\n".to_vec();
        b.extend_from_slice(&1i32.to_ne_bytes());
        b.extend_from_slice(b"\n$EndMeshFormat\n$Nodes\n");
        let size = |b: &mut Vec<u8>, v: u64| b.extend_from_slice(&v.to_ne_bytes());
        let int = |b: &mut Vec<u8>, v: i32| b.extend_from_slice(&v.to_ne_bytes());
        // A section's header: blocks, items, smallest and largest tag.
        let section = |b: &mut Vec<u8>, sizes: [u64; 4]| sizes.into_iter().for_each(|v| size(b, v));
        // A block's header: entity dimension, entity tag, parametric flag (nodes) or element
        // type (elements); then its number of items.
        let block = |b: &mut Vec<u8>, ints: [i32; 3], items: u64| {
            ints.into_iter().for_each(|v| int(b, v));
            size(b, items);
        };
        section(&mut b, [2, 5, 1, 5]);
        block(&mut b, [0, 1, 0], 1);
        size(&mut b, 5);
        for x in [0.5, 0.5, 0.0] {
            b.extend_from_slice(&f64::to_ne_bytes(x));
        }
        block(&mut b, [2, 1, 0], 4);
        for t in 1..=4 {
            size(&mut b, t);
        }
        for x in [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0] {
            b.extend_from_slice(&f64::to_ne_bytes(x));
        }
        b.extend_from_slice(b"\n$EndNodes\n$Elements\n");
        section(&mut b, [1, 4, 2, 5]);
        block(&mut b, [2, 1, 2], 4);
        for (tag, nodes) in [
            (2, [1, 2, 5]),
            (3, [2, 3, 5]),
            (4, [3, 4, 5]),
            (5, [4, 1, 5]),
        ] {
            size(&mut b, tag);
            for n in nodes {
                size(&mut b, n);
            }
        }
        b.extend_from_slice(b"\n$EndElements\n");
        let bin = Triangulation::parse_msh(&b, "b").unwrap();
        let ascii = Triangulation::parse_msh(SQUARE.as_bytes(), "s").unwrap();
        assert_eq!(bin, ascii);
        // Every truncation is an error, never a panic.
        for cut in 0..b.len() - 1 {
            assert!(
                Triangulation::parse_msh(&b[..cut], "b").is_err(),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn refusals_name_the_problem() {
        let start = SQUARE.find("$Elements").unwrap();
        let quad = format!(
            "{}$Elements\n1 1 1 1\n2 1 3 1\n1 1 2 3 4\n$EndElements\n",
            &SQUARE[..start]
        );
        let e = Triangulation::parse_msh(quad.as_bytes(), "q").unwrap_err();
        assert!(e.to_string().contains("quadrangle"), "{e}");
        let lifted = SQUARE.replace("0.5 0.5 0\n", "0.5 0.5 0.1\n");
        let e = Triangulation::parse_msh(lifted.as_bytes(), "l").unwrap_err();
        assert!(e.to_string().contains("plane"), "{e}");
        let missing = SQUARE.replace("5 4 1 5\n", "5 4 1 9\n");
        let e = Triangulation::parse_msh(missing.as_bytes(), "m").unwrap_err();
        assert!(e.to_string().contains("node 9"), "{e}");
        let huge = SQUARE.replace("$Nodes\n2 5 1 5", "$Nodes\n2 99999999999 1 5");
        let e = Triangulation::parse_msh(huge.as_bytes(), "h").unwrap_err();
        assert!(e.to_string().contains("more than"), "{e}");
        for cut in 0..SQUARE.len() {
            let _ = Triangulation::parse_msh(&SQUARE.as_bytes()[..cut], "c");
        }
        let e = Triangulation::parse_msh(b"hello", "x").unwrap_err();
        assert!(e.to_string().contains("$MeshFormat"), "{e}");
    }
}

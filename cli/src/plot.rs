//! Figures of a run directory (`jko plot DIR --out FIG_DIR`), drawn with pure-Rust plotters
//! into PNG files:
//!
//! - `density.png`: snapshots of ρⁿ. 1D: line plots of up to six steps from ρ⁰ to the last
//!   step in one figure, coloured by time; 2D: heat maps of up to four steps side by side with
//!   x/y axes and one colour bar labelled ρ (viridis, 0 to the largest value shown), cells
//!   outside the domain (obstacles, mask) in grey; 3D: the same for the slice through the
//!   middle of the last axis; meshes read from a file: their triangles or Voronoi cells filled.
//!   When the engine knows the exact solution of the run ([`jko::reference::ExactSolution`]),
//!   it is overlaid in red (1D: dashed curves; 2D grids: its level lines at 20/40/60/80 % of
//!   the colour scale) and each snapshot's caption gives its relative L1 error.
//! - `animation.gif`: every saved step (at most 60, evenly spread) on one fixed scale, as the
//!   density figure draws it (1D frames keep ρ⁰ for reference).
//! - `energy.png`: F_h(ρⁿ) against t = nτ; when the minimum F_min of the discrete energy at
//!   the run's mass is explicit (entropy or porous term, with a potential and a density cap;
//!   no interaction), F_h(ρⁿ) − F_min on a log scale — its slope shows the rate of approach
//!   (e^{−2t} for Ornstein–Uhlenbeck), and a run that stalls stays visibly above 0. The gap to
//!   the last step's energy is not drawn: it reaches 0 by construction and makes any run look
//!   converged. Last, per step, the backend's kinetic term over τ (W_h²/τ for conic/newton;
//!   what it is for each backend is in the legend) next to the energy drop F(ρⁿ⁻¹) − F(ρⁿ),
//!   on a log scale. A JKO step satisfies F(ρⁿ⁻¹) − F(ρⁿ) ≥ W²/(2τ), and both curves approach
//!   τ ∫|∇δF/δρ|²ρ as τ → 0, so they run close together.
//! - `implicit_bias.png` when the directory holds `implicit_bias.json`
//!   (`{"rows": [{"eta", "err_flow", "err_wgf"}, ...]}`, see [`ImplicitBiasTable`]): log-log
//!   errors of the JKO iterates against the gradient flow of J (first order in η) and
//!   against the flow of the modified energy J^η (second order), with order-1 and order-2
//!   reference lines.
//! - `convergence.png` when the directory holds `convergence.json` (the report of
//!   `jko convergence`, [`crate::convergence::ConvergenceReport`]): log-log error against the
//!   refined parameter (h, τ, or 1/levels for the number of Benamou–Brenier time levels), and
//!   the error to the exact JKO iterates when the report has it, with the same reference lines.
//!
//! A directory holding only the JSON tables (a study without a run) is plotted too.
//!
//! Text needs a font: plotters with `ab_glyph` draws none unless one is registered, so the
//! embedded DejaVu Sans (data/fonts, with its licence) is registered once as "sans-serif".

use crate::convergence::{ConvergenceReport, ConvergenceRow};
use crate::error::ToolError;
use jko::config::{Config, Problem, read_npy};
use jko::output::{Summary, step_file};
use jko::reference::{ExactSolution, l1_relative};
use jko_core::{CellKind, CellShapes, Energy, Grid, Mesh};
use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../../data/fonts/DejaVuSans.ttf");
/// Colour of cells outside the domain (not a viridis colour).
const MASKED: RGBColor = RGBColor(190, 190, 190);

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// A drawing area of a figure.
type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// One rendered figure: RGB pixels, row-major from the top-left corner.
///
/// ```rust
/// use jko_cli::plot::Figure;
///
/// // A 2 × 1 figure: one white and one black pixel.
/// let fig = Figure { name: "tiny".into(), width: 2, height: 1, rgb: vec![255, 255, 255, 0, 0, 0] };
/// assert_eq!(fig.distinct_colours(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct Figure {
    /// File stem (`density`, `energy`, ...).
    pub name: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// 3 bytes per pixel.
    pub rgb: Vec<u8>,
}

impl Figure {
    /// Number of distinct colours (1 for a blank figure).
    ///
    /// ```rust
    /// use jko_cli::plot::Figure;
    ///
    /// let blank = Figure { name: "blank".into(), width: 4, height: 4, rgb: vec![255; 48] };
    /// assert_eq!(blank.distinct_colours(), 1);
    /// ```
    pub fn distinct_colours(&self) -> usize {
        self.rgb
            .chunks_exact(3)
            .map(|p| [p[0], p[1], p[2]])
            .collect::<HashSet<_>>()
            .len()
    }

    /// Number of pixels of exactly this colour.
    ///
    /// ```rust
    /// use jko_cli::plot::Figure;
    ///
    /// let fig = Figure { name: "tiny".into(), width: 3, height: 1, rgb: vec![0, 0, 0, 9, 9, 9, 0, 0, 0] };
    /// assert_eq!(fig.count_colour([0, 0, 0]), 2);
    /// assert_eq!(fig.count_colour([1, 2, 3]), 0);
    /// ```
    pub fn count_colour(&self, rgb: [u8; 3]) -> usize {
        self.rgb.chunks_exact(3).filter(|p| **p == rgb).count()
    }

    /// Write as PNG (to a temporary name, then renamed).
    ///
    /// # Errors
    /// [`ToolError::Plot`] when the PNG cannot be encoded or written, [`ToolError::Io`] when
    /// it cannot be renamed into place.
    ///
    /// ```rust
    /// use jko_cli::plot::Figure;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let fig = Figure { name: "grey".into(), width: 8, height: 4, rgb: vec![128; 8 * 4 * 3] };
    /// let dir = tempfile::tempdir()?;
    /// fig.save(&dir.path().join("grey.png"))?;
    /// assert!(std::fs::read(dir.path().join("grey.png"))?.starts_with(b"\x89PNG"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn save(&self, path: &Path) -> Result<(), ToolError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_else(|| format!("{}.png", self.name));
        // The bitmap encoder picks the format from the extension: keep `.png` last.
        let tmp = dir.join(format!(".partial-{file}"));
        {
            let mut backend = BitMapBackend::new(&tmp, (self.width, self.height));
            backend
                .blit_bitmap((0, 0), (self.width, self.height), &self.rgb)
                .and_then(|_| backend.present())
                .map_err(|e| ToolError::Plot {
                    what: tmp.display().to_string(),
                    message: e.to_string(),
                })?;
        }
        std::fs::rename(&tmp, path).map_err(|e| ToolError::io(path, e))
    }
}

use crate::implicit_bias::ImplicitBiasTable;

/// Render the figures of a run directory (see the module docs) without writing them.
///
/// # Errors
/// [`ToolError::Unsuited`] when the directory holds nothing to plot, [`ToolError::Json`] for a
/// malformed file;
/// [`ToolError::Io`] / [`jko::error::RunError::Npy`] when a file cannot be read.
///
/// ```rust
/// use jko_cli::implicit_bias::{ImplicitBiasRow, ImplicitBiasTable};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let row = |eta: f64| ImplicitBiasRow {
///     eta,
///     err_flow: eta * eta,
///     err_wgf: eta,
///     err_resummed: None,
///     order_flow: None,
///     order_wgf: None,
/// };
/// let dir = tempfile::tempdir()?;
/// ImplicitBiasTable { rows: vec![row(0.2), row(0.1), row(0.05)], final_time: None, method: None }
///     .write(dir.path())?;
/// let figures = jko_cli::plot::render_run(dir.path())?;
/// assert_eq!(figures.len(), 1);
/// assert_eq!(figures[0].name, "implicit_bias");
/// assert!(figures[0].distinct_colours() > 2);
/// // An empty directory has nothing to plot.
/// assert!(jko_cli::plot::render_run(tempfile::tempdir()?.path()).is_err());
/// # Ok(())
/// # }
/// ```
pub fn render_run(dir: &Path) -> Result<Vec<Figure>, ToolError> {
    register_font()?;
    let mut figures = Vec::new();
    let summary_path = dir.join(jko::output::HEADER_FILE);
    if summary_path.exists() {
        let run = RunData::read(dir)?;
        figures.push(density_figure(&run)?);
        figures.push(energy_figure(&run)?);
    }
    let bias_path = dir.join("implicit_bias.json");
    if bias_path.exists() {
        let table: ImplicitBiasTable = read_json(&bias_path)?;
        figures.push(implicit_bias_figure(&table)?);
    }
    let conv_path = dir.join("convergence.json");
    if conv_path.exists() {
        let table: ConvergenceReport = read_json(&conv_path)?;
        figures.push(convergence_figure(&table)?);
    }
    if figures.is_empty() {
        return Err(ToolError::Unsuited {
            tool: "plot",
            what: format!(
                "a run directory, implicit_bias.json or convergence.json (nothing to plot in {})",
                dir.display()
            ),
        });
    }
    Ok(figures)
}

/// Plot a run directory into `out` (created if needed): the PNGs of [`render_run`] and, for a
/// run with two or more saved densities, `animation.gif`; returns the paths written
/// (`jko plot DIR --out FIG_DIR`). Errors as for [`render_run`], and [`ToolError::Io`] when
/// `out` cannot be written.
///
/// ```rust
/// use jko::config::Config;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::from_toml(r#"
///     mesh = { cells = [20], lower = [-4.0], upper = [4.0] }
///     initial = { kind = "gaussian", mean = [0.5], std = [1.0] }
///     energy = { entropy = 1.0, potential = { kind = "quadratic" } }
///     scheme = { tau = 0.1, steps = 2 }
///     solver = { kind = "newton" }
/// "#)?;
/// let dir = tempfile::tempdir()?;
/// let opts = jko::RunOptions { out: Some(dir.path().into()), ..Default::default() };
/// jko::run(&config, ".".as_ref(), &opts, &mut [], &|| false)?;
/// let written = jko_cli::plot::plot_run(dir.path(), &dir.path().join("figures"))?;
/// let names: Vec<_> = written.iter().map(|p| p.file_name().unwrap().to_owned()).collect();
/// assert_eq!(names, ["density.png", "energy.png", "animation.gif"]);
/// assert!(std::fs::read(&written[2])?.starts_with(b"GIF89a"));
/// # Ok(())
/// # }
/// ```
pub fn plot_run(dir: &Path, out: &Path) -> Result<Vec<PathBuf>, ToolError> {
    let figures = render_run(dir)?;
    std::fs::create_dir_all(out).map_err(|e| ToolError::io(out, e))?;
    let mut paths = Vec::new();
    for fig in &figures {
        let path = out.join(format!("{}.png", fig.name));
        fig.save(&path)?;
        paths.push(path);
    }
    if dir.join(jko::output::HEADER_FILE).exists() {
        let path = out.join("animation.gif");
        if animation(&RunData::read(dir)?, &path)? > 0 {
            paths.push(path);
        }
    }
    Ok(paths)
}

fn register_font() -> Result<(), ToolError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(ToolError::Plot {
            what: "any figure".into(),
            message: "the embedded font could not be loaded".into(),
        })
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ToolError> {
    let text = std::fs::read_to_string(path).map_err(|e| ToolError::io(path, e))?;
    serde_json::from_str(&text).map_err(|source| ToolError::Json {
        path: path.to_path_buf(),
        source,
    })
}

fn draw_error(what: &str, e: Box<dyn std::error::Error>) -> ToolError {
    ToolError::Plot {
        what: what.to_string(),
        message: e.to_string(),
    }
}

/// Render into an RGB buffer of the given size.
fn render(
    name: &str,
    (width, height): (u32, u32),
    draw: impl FnOnce(&Area) -> DrawResult,
) -> Result<Figure, ToolError> {
    let mut rgb = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        let result: DrawResult = (|| {
            root.fill(&WHITE)?;
            draw(&root)?;
            root.present()?;
            Ok(())
        })();
        result.map_err(|e| draw_error(name, e))?;
    }
    Ok(Figure {
        name: name.to_string(),
        width,
        height,
        rgb,
    })
}

/// One saved density: (step, t, cell values of the run's mesh).
type Snapshot = (usize, f64, ndarray::Array1<f64>);

/// What the plots need from a run directory.
struct RunData {
    summary: Summary,
    mesh: Mesh,
    /// Every step file found, in step order.
    snapshots: Vec<Snapshot>,
    /// The run's energy on `mesh`, when it can be rebuilt from the directory.
    energy: Option<Energy>,
    /// The exact solution of the run's PDE, when the engine knows one.
    exact: Option<ExactSolution>,
}

impl RunData {
    fn read(dir: &Path) -> Result<RunData, ToolError> {
        let summary = Summary::read(dir)?;
        let mesh = plot_mesh(&summary.header.config, dir)?;
        let tau = summary.header.config.scheme.tau;
        let mut steps = vec![(0usize, 0.0)];
        steps.extend(summary.steps.iter().map(|r| (r.step, r.t)));
        let mut snapshots = Vec::new();
        for (step, t) in steps {
            let path = dir.join(step_file("rho", step));
            if !path.exists() {
                continue;
            }
            let t = if t.is_finite() { t } else { step as f64 * tau };
            let rho = mesh.from_cell_array(&path.display().to_string(), &read_npy(&path)?)?;
            snapshots.push((step, t, rho));
        }
        let Some(first) = snapshots.first() else {
            return Err(ToolError::Unsuited {
                tool: "plot",
                what: format!("rho_NNNNN.npy files: {} has none", dir.display()),
            });
        };
        // Optional extras: a potential file that moved away only costs the overlays.
        let config = &summary.header.config;
        let energy = config.energy.build(&mesh, dir).ok();
        let exact = energy.as_ref().and_then(|e| {
            let problem = Problem {
                mesh: mesh.clone(),
                energy: e.clone(),
                initial: first.2.clone(),
            };
            ExactSolution::detect(config, &problem).ok().flatten()
        });
        Ok(RunData {
            summary,
            mesh,
            snapshots,
            energy,
            exact,
        })
    }

    /// Up to `n` snapshots evenly spread from the first to the last.
    fn chosen(&self, n: usize) -> Vec<&Snapshot> {
        let m = self.snapshots.len();
        if m <= n {
            return self.snapshots.iter().collect();
        }
        let mut idx: Vec<usize> = (0..n)
            .map(|i| (i * (m - 1) + (n - 1) / 2) / (n - 1))
            .collect();
        idx.dedup();
        idx.into_iter().map(|i| &self.snapshots[i]).collect()
    }

    /// The exact density at time t (cell values), where the exact solution holds on the mesh.
    fn exact_at(&self, t: f64) -> Option<ndarray::Array1<f64>> {
        let exact = self.exact.as_ref()?;
        exact
            .fits(&self.mesh, t)
            .then(|| exact.density(&self.mesh, t))
    }

    /// "step n, t = …" with the relative L1 error to the exact solution when there is one.
    fn caption(&self, (step, t, rho): &Snapshot) -> String {
        match self.exact_at(*t) {
            Some(e) => format!(
                "step {step}, t = {} (L1 err {:.1e})",
                format_value(*t),
                l1_relative(&self.mesh, rho, &e)
            ),
            None => format!("step {step}, t = {}", format_value(*t)),
        }
    }

    /// Largest value shown over these snapshots (and the exact solution at their times).
    fn vmax(&self, shown: &[&Snapshot]) -> f64 {
        let v = shown
            .iter()
            .flat_map(|(_, t, rho)| {
                let exact = self.exact_at(*t).map(|e| e.to_vec()).unwrap_or_default();
                rho.iter().copied().chain(exact).collect::<Vec<_>>()
            })
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max);
        if v > 0.0 { v } else { 1.0 }
    }
}

/// The run's mesh with its mask (obstacles; a mask file relative to the run directory or
/// absolute). When the mask file cannot be found, the plain grid (no masked cells) is used.
/// A mesh read from a file is rebuilt from the run directory's copy of it
/// ([`jko::output::MESH_FILE`]), else from `file` relative to the run directory.
fn plot_mesh(config: &Config, dir: &Path) -> Result<Mesh, ToolError> {
    let copy = dir.join(jko::output::MESH_FILE);
    if config.mesh.file.is_some() && copy.exists() {
        let mut own = config.mesh.clone();
        own.file = Some(copy);
        return Ok(own.build_with(&|_| unreachable_npy())?);
    }
    match config.mesh.build(dir) {
        Ok(mesh) => Ok(mesh),
        Err(e) if config.mesh.mask.is_some() => {
            let mut plain = config.mesh.clone();
            plain.mask = None;
            plain.build(dir).map_err(|_| e.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// A mesh from a file names no `.npy` (its config refuses a mask).
fn unreachable_npy() -> Result<ndarray::ArrayD<f64>, jko::error::RunError> {
    Err(jko::error::RunError::config(
        "mesh.mask",
        "is a grid key; a mesh read from `file` has none",
    ))
}

/// Viridis, piecewise linear through 11 samples; `s` in [0, 1].
fn viridis(s: f64) -> RGBColor {
    const V: [(u8, u8, u8); 11] = [
        (68, 1, 84),
        (72, 36, 117),
        (65, 68, 135),
        (53, 95, 141),
        (42, 120, 142),
        (33, 145, 140),
        (34, 168, 132),
        (68, 191, 112),
        (122, 209, 81),
        (189, 223, 38),
        (253, 231, 37),
    ];
    let s = if s.is_finite() {
        s.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = s * 10.0;
    let i = (x.floor() as usize).min(9);
    let f = x - i as f64;
    let lerp = |a: u8, b: u8| (a as f64 + f * (b as f64 - a as f64)).round() as u8;
    let (a, b) = (V[i], V[i + 1]);
    RGBColor(lerp(a.0, b.0), lerp(a.1, b.1), lerp(a.2, b.2))
}

/// Line colour for snapshot `i` of `n` (viridis without its pale yellow end).
fn time_colour(i: usize, n: usize) -> RGBColor {
    viridis(0.85 * i as f64 / (n.max(2) - 1) as f64)
}

fn font(size: u32) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font()).color(&BLACK)
}

/// Colour of the exact solution's curves and level lines (not a viridis colour).
const EXACT: RGBColor = RGBColor(230, 25, 45);
/// Fractions of the colour scale at which level lines of the exact solution are drawn.
const LEVELS: [f64; 4] = [0.2, 0.4, 0.6, 0.8];

/// How a run's densities are drawn.
enum View<'a> {
    /// 1D grid: line plots.
    Line(&'a Grid),
    /// 2D grid (3D: the slice through the middle of the last axis): heat maps.
    Heat(&'a Grid),
    /// 2D mesh read from a file: filled triangles or Voronoi polygons.
    Cells(&'a CellShapes),
}

impl<'a> View<'a> {
    fn of(mesh: &'a Mesh) -> Result<View<'a>, ToolError> {
        if let Some(shapes) = mesh.shapes() {
            if shapes.dim != 2 {
                return Err(ToolError::Unsuited {
                    tool: "plot",
                    what: format!(
                        "a 2D mesh (this one is {}D: open rho.pvd in ParaView, from --format vtk)",
                        shapes.dim
                    ),
                });
            }
            return Ok(View::Cells(shapes));
        }
        let grid = mesh.as_grid().ok_or_else(|| ToolError::Unsuited {
            tool: "plot",
            what: "a grid mesh".into(),
        })?;
        match grid.cells.len() {
            1 => Ok(View::Line(grid)),
            2 | 3 => Ok(View::Heat(grid)),
            d => Err(ToolError::Unsuited {
                tool: "plot",
                what: format!("a 1D to 3D density, not {d}D"),
            }),
        }
    }

    /// The plotted box of a 2D view: (x range, y range).
    fn bounds(&self) -> ((f64, f64), (f64, f64)) {
        match self {
            View::Line(g) => ((g.lower[0], g.upper[0]), (0.0, 1.0)),
            View::Heat(g) => ((g.lower[0], g.upper[0]), (g.lower[1], g.upper[1])),
            View::Cells(s) => (
                range((0..s.n_points()).map(|i| s.point(i)[0])),
                range((0..s.n_points()).map(|i| s.point(i)[1])),
            ),
        }
    }

    /// Plot height of a 2D panel 260 px wide, keeping the box's aspect ratio.
    fn plot_h(&self) -> f64 {
        let ((x0, x1), (y0, y1)) = self.bounds();
        (260.0 * (y1 - y0) / (x1 - x0).max(f64::MIN_POSITIVE)).clamp(120.0, 520.0)
    }

    /// Figure size for `panels` snapshots side by side (2D) or one chart (1D).
    fn size(&self, panels: usize) -> (u32, u32) {
        match self {
            View::Line(_) => (900, 560),
            _ => (
                PANEL_W * panels as u32 + BAR_W,
                self.plot_h() as u32 + PANEL_EXTRA_H + TITLE_H,
            ),
        }
    }

    /// The figure's title.
    fn title(&self, run: &RunData) -> String {
        let exact = run.exact.as_ref().map(|e| e.name());
        match self {
            View::Line(g) => {
                let mut t = format!(
                    "density ρⁿ ({} cells, τ = {})",
                    g.cells[0], run.summary.header.config.scheme.tau
                );
                if let Some(name) = exact {
                    t.push_str(&format!(" — dashed: exact, {name}"));
                }
                t
            }
            View::Heat(g) => {
                let mut t = match g.cells[..] {
                    [nx, ny, nz] => format!(
                        "density ρⁿ, {nx}×{ny}×{nz}: slice z = {:.3} (cell {})",
                        g.coordinate(2, nz / 2),
                        nz / 2
                    ),
                    _ => format!("density ρⁿ, {}×{}", g.cells[0], g.cells[1]),
                };
                if g.mask.is_some() {
                    t.push_str(" — grey: outside the domain");
                }
                if exact.is_some() {
                    t.push_str(" — red: exact level lines at 20/40/60/80 % of the scale");
                }
                t
            }
            View::Cells(s) => {
                let kind = match s.kind {
                    CellKind::Triangle => "triangles",
                    CellKind::Polygon => "Voronoi cells",
                    CellKind::Tetrahedron => "tetrahedra",
                };
                format!("density ρⁿ, {} {kind}", s.n_cells())
            }
        }
    }
}

/// 2D panel geometry: the plot is 260 px wide; the rest holds the axes, labels and caption.
const PANEL_W: u32 = 330;
const PANEL_EXTRA_H: u32 = 105;
const BAR_W: u32 = 120;
const TITLE_H: u32 = 45;

type Chart2d<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

fn density_figure(run: &RunData) -> Result<Figure, ToolError> {
    let view = View::of(&run.mesh)?;
    let shown = run.chosen(match view {
        View::Line(_) => 6,
        _ => 4,
    });
    let size = view.size(shown.len());
    let plot = DensityPlot {
        vmax: run.vmax(&shown),
        title: view.title(run),
        run,
        view,
    };
    render("density", size, |root| plot.draw(root, &shown))
}

/// The densities of a run as its figures draw them: the view of its mesh, the scale 0..vmax
/// and the title (the density figure and every frame of the animation).
struct DensityPlot<'a> {
    run: &'a RunData,
    view: View<'a>,
    vmax: f64,
    title: String,
}

impl DensityPlot<'_> {
    /// The densities `shown` (on one chart in 1D, side by side in 2D).
    fn draw(&self, root: &Area, shown: &[&Snapshot]) -> DrawResult {
        let (run, vmax) = (self.run, self.vmax);
        match &self.view {
            View::Line(grid) => self.lines(root, grid, shown),
            View::Heat(grid) => {
                let inside = inside_mask(&run.mesh);
                let inside = grid_slice(
                    grid,
                    &inside.iter().map(|&b| b as u8 as f64).collect::<Vec<_>>(),
                );
                let (hx, hy) = (grid.spacing()[0], grid.spacing()[1]);
                let (nx, ny) = (grid.cells[0], grid.cells[1]);
                let x: Vec<f64> = (0..nx).map(|i| grid.coordinate(0, i)).collect();
                let y: Vec<f64> = (0..ny).map(|j| grid.coordinate(1, j)).collect();
                self.panels(root, shown, &|chart, (_, t, rho)| {
                    let slice = grid_slice(grid, &on_grid(&run.mesh, rho));
                    chart.draw_series((0..nx * ny).map(|ij| {
                        let (i, j) = (ij / ny, ij % ny);
                        let colour = if inside[ij] > 0.0 {
                            viridis(slice[ij] / vmax)
                        } else {
                            MASKED
                        };
                        Rectangle::new(
                            [
                                (x[i] - hx / 2.0, y[j] - hy / 2.0),
                                (x[i] + hx / 2.0, y[j] + hy / 2.0),
                            ],
                            colour.filled(),
                        )
                    }))?;
                    if let Some(exact) = run.exact_at(*t) {
                        let field = grid_slice(grid, &on_grid(&run.mesh, &exact));
                        let segments = LEVELS
                            .iter()
                            .flat_map(|s| level_lines(&x, &y, &field, s * vmax));
                        chart
                            .draw_series(segments.map(|[a, b]| {
                                PathElement::new(vec![a, b], EXACT.stroke_width(2))
                            }))?;
                    }
                    Ok(())
                })
            }
            View::Cells(shapes) => self.panels(root, shown, &|chart, (_, _, rho)| {
                chart.draw_series((0..shapes.n_cells()).map(|k| {
                    let corners: Vec<(f64, f64)> = shapes
                        .cell(k)
                        .iter()
                        .map(|&i| (shapes.point(i)[0], shapes.point(i)[1]))
                        .collect();
                    Polygon::new(corners, viridis(rho[k] / vmax).filled())
                }))?;
                Ok(())
            }),
        }
    }

    /// Line plots of 1D densities coloured by time, the exact solution dashed over each.
    fn lines(&self, root: &Area, grid: &Grid, shown: &[&Snapshot]) -> DrawResult {
        let (run, ymax) = (self.run, 1.08 * self.vmax);
        let n = grid.cells[0];
        let inside = inside_mask(&run.mesh);
        let x: Vec<f64> = (0..n).map(|i| grid.coordinate(0, i)).collect();
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, font(22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(65)
            .build_cartesian_2d(grid.lower[0]..grid.upper[0], 0.0..ymax)?;
        chart
            .configure_mesh()
            .x_desc("x")
            .y_desc("ρ")
            .label_style(font(15))
            .axis_desc_style(font(17))
            .y_label_formatter(&|v| format_value(*v))
            .light_line_style(RGBColor(242, 242, 242))
            .draw()?;
        // Cells outside the domain: grey bands.
        let hx = grid.spacing()[0];
        chart.draw_series((0..n).filter(|i| !inside[*i]).map(|i| {
            Rectangle::new(
                [(x[i] - hx / 2.0, 0.0), (x[i] + hx / 2.0, ymax)],
                MASKED.filled(),
            )
        }))?;
        // One polyline per run of inside cells.
        let runs = {
            let mut runs = Vec::new();
            let mut i = 0;
            while i < n {
                let start = i;
                while i < n && inside[i] {
                    i += 1;
                }
                if i > start {
                    runs.push(start..i);
                }
                i += 1;
            }
            runs
        };
        let m = shown.len();
        let mut exact_labelled = false;
        for (j, snapshot) in shown.iter().enumerate() {
            let (_, t, rho) = snapshot;
            let values = on_grid(&run.mesh, rho);
            let colour = time_colour(j, m);
            for (r, cells) in runs.iter().enumerate() {
                let series = chart.draw_series(LineSeries::new(
                    cells.clone().map(|c| (x[c], values[c])),
                    colour.stroke_width(2),
                ))?;
                if r == 0 {
                    series
                        .label(run.caption(snapshot))
                        .legend(legend_line(colour.stroke_width(3)));
                }
            }
            let Some(exact) = run.exact_at(*t) else {
                continue;
            };
            let exact = on_grid(&run.mesh, &exact);
            for cells in &runs {
                let series = chart.draw_series(DashedLineSeries::new(
                    cells.clone().map(|c| (x[c], exact[c])),
                    6,
                    5,
                    EXACT.stroke_width(2),
                ))?;
                if !exact_labelled {
                    exact_labelled = true;
                    series.label("exact solution").legend(|(a, b)| {
                        EmptyElement::at((a, b))
                            + PathElement::new(vec![(0, 0), (8, 0)], EXACT.stroke_width(3))
                            + PathElement::new(vec![(13, 0), (21, 0)], EXACT.stroke_width(3))
                    });
                }
            }
        }
        legend_box(&mut chart, 15, SeriesLabelPosition::UpperRight)?;
        Ok(())
    }

    /// 2D snapshots side by side, each with x and y axes, and one labelled colour bar; `fill`
    /// draws one snapshot into its chart.
    fn panels(
        &self,
        root: &Area,
        shown: &[&Snapshot],
        fill: &dyn Fn(&mut Chart2d<'_, '_>, &Snapshot) -> DrawResult,
    ) -> DrawResult {
        let ((x0, x1), (y0, y1)) = self.view.bounds();
        let (title_area, body) = root.split_vertically(TITLE_H);
        title_area.titled(&self.title, font(22))?;
        let (panels, bar) = body.split_horizontally(PANEL_W * shown.len() as u32);
        let areas = panels.split_evenly((1, shown.len()));
        for (area, snapshot) in areas.iter().zip(shown) {
            let mut chart = ChartBuilder::on(area)
                .caption(self.run.caption(snapshot), font(16))
                .margin(8)
                .x_label_area_size(45)
                .y_label_area_size(55)
                .build_cartesian_2d(x0..x1, y0..y1)?;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_labels(5)
                .y_labels(5)
                .x_desc("x")
                .y_desc("y")
                .x_label_formatter(&|v| format_value(*v))
                .y_label_formatter(&|v| format_value(*v))
                .label_style(font(14))
                .axis_desc_style(font(16))
                .draw()?;
            fill(&mut chart, snapshot)?;
        }
        colour_bar(&bar, self.vmax, self.view.plot_h())
    }
}

/// Cell values in grid order (C order over the whole box, NaN outside the domain).
fn on_grid(mesh: &Mesh, values: &ndarray::Array1<f64>) -> Vec<f64> {
    let len = mesh.as_grid().map_or(0, |g| g.len());
    let mut full = vec![f64::NAN; len];
    for (k, &g) in mesh.grid_index().iter().enumerate() {
        full[g] = values[k];
    }
    full
}

/// The 2D values `i * ny + j` of grid-ordered values: the grid itself in 2D, the slice
/// through the middle of the last axis in 3D.
fn grid_slice(grid: &Grid, full: &[f64]) -> Vec<f64> {
    let (nx, ny) = (grid.cells[0], grid.cells[1]);
    let nz = grid.cells.get(2).copied().unwrap_or(1);
    (0..nx * ny).map(|ij| full[ij * nz + nz / 2]).collect()
}

/// Level line {f = level} of a field given at the nodes (x_i, y_j) of a lattice, `f[i * ny + j]`
/// (NaN: no value), by marching squares: in each square of four valued nodes, the crossings
/// of its edges (linear interpolation) joined in pairs.
fn level_lines(x: &[f64], y: &[f64], f: &[f64], level: f64) -> Vec<[(f64, f64); 2]> {
    let ny = y.len();
    let mut segments = Vec::new();
    for i in 0..x.len().saturating_sub(1) {
        for j in 0..ny.saturating_sub(1) {
            let corners = [(i, j), (i + 1, j), (i + 1, j + 1), (i, j + 1)];
            let v = corners.map(|(a, b)| f[a * ny + b] - level);
            if v.iter().any(|v| !v.is_finite()) {
                continue;
            }
            let p = corners.map(|(a, b)| (x[a], y[b]));
            let mut cross = Vec::with_capacity(4);
            for e in 0..4 {
                let (a, b) = (e, (e + 1) % 4);
                if (v[a] < 0.0) != (v[b] < 0.0) {
                    let s = v[a] / (v[a] - v[b]);
                    cross.push((
                        p[a].0 + s * (p[b].0 - p[a].0),
                        p[a].1 + s * (p[b].1 - p[a].1),
                    ));
                }
            }
            for pair in cross.chunks_exact(2) {
                segments.push([pair[0], pair[1]]);
            }
        }
    }
    segments
}

/// Inside flags per grid cell (C order).
fn inside_mask(mesh: &Mesh) -> Vec<bool> {
    let len = mesh.as_grid().map_or(0, |g| g.len());
    let mut inside = vec![false; len];
    for &g in mesh.grid_index() {
        inside[g] = true;
    }
    inside
}

/// The colour bar beside 2D panels: viridis from 0 to vmax, labelled ρ, aligned with the
/// panels' plot areas (`plot_h` high).
fn colour_bar(area: &Area, vmax: f64, plot_h: f64) -> DrawResult {
    let top = 38;
    area.draw(&Text::new("ρ", (14, top - 26), font(18)))?;
    let area = area.margin(
        top,
        (area.dim_in_pixel().1 as f64 - top as f64 - plot_h - 45.0).max(0.0) as u32,
        5,
        10,
    );
    let mut chart = ChartBuilder::on(&area)
        .y_label_area_size(0)
        .right_y_label_area_size(62)
        .build_cartesian_2d(0.0..1.0, 0.0..vmax)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_labels(6)
        .y_label_formatter(&|v| format_value(*v))
        .label_style(font(15))
        .draw()?;
    let n = 200;
    chart.draw_series((0..n).map(|i| {
        let (a, b) = (i as f64 / n as f64, (i + 1) as f64 / n as f64);
        Rectangle::new(
            [(0.0, a * vmax), (1.0, b * vmax)],
            viridis((a + b) / 2.0).filled(),
        )
    }))?;
    Ok(())
}

/// Write `animation.gif`: every saved density (at most [`MAX_FRAMES`], evenly spread) on one
/// fixed scale, about 5 s per loop; 1D frames also show ρ⁰. Returns the number of frames
/// (0, and no file, for a run with fewer than two saved densities).
fn animation(run: &RunData, path: &Path) -> Result<usize, ToolError> {
    let frames = run.chosen(MAX_FRAMES);
    if frames.len() < 2 {
        return Ok(0);
    }
    let view = View::of(&run.mesh)?;
    let all: Vec<&Snapshot> = run.snapshots.iter().collect();
    let delay = (5000 / frames.len() as u32).clamp(80, 500);
    let size = view.size(1);
    let plot = DensityPlot {
        vmax: run.vmax(&all),
        title: view.title(run),
        run,
        view,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(".partial-animation.gif");
    let result: DrawResult = (|| {
        let root = BitMapBackend::gif(&tmp, size, delay)?.into_drawing_area();
        for frame in &frames {
            root.fill(&WHITE)?;
            let shown = match plot.view {
                View::Line(_) if frame.0 != frames[0].0 => vec![frames[0], *frame],
                _ => vec![*frame],
            };
            plot.draw(&root, &shown)?;
            root.present()?;
        }
        Ok(())
    })();
    result.map_err(|e| draw_error("animation.gif", e))?;
    std::fs::rename(&tmp, path).map_err(|e| ToolError::io(path, e))?;
    Ok(frames.len())
}

/// Most frames in `animation.gif`.
const MAX_FRAMES: usize = 60;

fn format_value(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if (1e-2..1e4).contains(&a) {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.1e}")
    }
}

/// Log-axis tick label: only mantissas 1, 2 and 5 are labelled (the others stay tick marks),
/// so a decade never carries nine crowded labels.
fn format_log(v: f64) -> String {
    if !(v.is_finite() && v > 0.0) {
        return String::new();
    }
    let mantissa = v / 10f64.powf(v.log10().floor());
    if [1.0, 2.0, 5.0, 10.0]
        .iter()
        .any(|m| (mantissa - m).abs() < 1e-6 * m)
    {
        format!("{v:.0e}")
    } else {
        String::new()
    }
}

fn energy_figure(run: &RunData) -> Result<Figure, ToolError> {
    let s = &run.summary;
    let tau = s.header.config.scheme.tau;
    let solver = s.header.config.solver.name();
    let mut energy = vec![(0.0, s.header.initial_energy)];
    energy.extend(s.steps.iter().map(|r| (r.t, r.energy)));
    let dissipation: Vec<(f64, f64)> = s.steps.iter().map(|r| (r.t, r.kinetic / tau)).collect();
    let drop: Vec<(f64, f64)> = energy
        .windows(2)
        .map(|w| (w[1].0, w[0].1 - w[1].1))
        .collect();
    let t_end = energy.last().map_or(1.0, |e| e.0).max(tau);
    let f_min = run_equilibrium_energy(run);
    let gap: Vec<(f64, f64)> = match f_min {
        Some(f_min) => energy.iter().map(|&(t, f)| (t, f - f_min)).collect(),
        None => Vec::new(),
    };
    let n_panels = if f_min.is_some() { 3 } else { 2 };
    render("energy", (500 * n_panels as u32, 530), |root| {
        let (title_area, body) = root.split_vertically(62);
        title_area.titled(
            &format!(
                "energy and dissipation ({} steps, τ = {tau}, {solver} backend)",
                s.steps.len()
            ),
            font(22),
        )?;
        let note = match f_min {
            Some(_) => {
                "F_min: the minimum of the discrete energy at the run's mass (its equilibrium)"
                    .to_string()
            }
            None => "no equilibrium known for this energy: the gap to the minimum is not drawn \
                     (F − F_final would reach 0 by construction)"
                .to_string(),
        };
        title_area.draw(&Text::new(note, (12, 38), font(14)))?;
        let panels = body.split_evenly((1, n_panels));
        // F(ρⁿ), linear, with the minimum when known.
        let (lo, hi) = range(energy.iter().map(|e| e.1).chain(f_min));
        let mut chart = time_chart(&panels[0], "F(ρⁿ)", t_end, lo..hi, format_value)?;
        let blue = RGBColor(31, 119, 180);
        draw_curve(&mut chart, ("F(ρⁿ)", &energy, blue), 3)?;
        if let Some(f_min) = f_min {
            let grey = RGBColor(90, 90, 90);
            chart
                .draw_series(DashedLineSeries::new(
                    [(0.0, f_min), (t_end, f_min)],
                    8,
                    5,
                    grey.stroke_width(2),
                ))?
                .label("F_min")
                .legend(legend_line(grey.stroke_width(2)));
        }
        legend_box(&mut chart, 14, SeriesLabelPosition::UpperRight)?;
        if f_min.is_some() {
            log_panel(
                &panels[1],
                "F(ρⁿ) − F_min",
                t_end,
                &[("F − F_min", &gap, blue)],
            )?;
        }
        // Per step: the kinetic term / τ and the energy drop.
        let orange = RGBColor(230, 110, 20);
        log_panel(
            &panels[n_panels - 1],
            "per step",
            t_end,
            &[
                (kinetic_label(solver), &dissipation, orange),
                ("F(ρⁿ⁻¹) − F(ρⁿ)", &drop, blue),
            ],
        )?;
        Ok(())
    })
}

/// What a backend's kinetic term divided by τ is (see `jko::driver::StepRecord::kinetic`).
fn kinetic_label(solver: &str) -> &'static str {
    match solver {
        "conic" | "newton" => "kinetic/τ: W_h²/τ (two-point-flux action)",
        "quantile" => "kinetic/τ: W²/τ (exact, quantiles)",
        "flow" => "kinetic/τ: ∫|v|² along the flow",
        "sinkhorn" => "kinetic/τ: <c, π>/τ (entropic plan, ≥ W²)",
        _ => "kinetic/τ",
    }
}

/// F_min of the run's energy at its mass ([`equilibrium`]), when it can be computed and the
/// recorded energies are that discrete energy (F_h(ρ⁰) and F_h(ρ^N) recomputed from the saved
/// densities match the records).
fn run_equilibrium_energy(run: &RunData) -> Option<f64> {
    let energy = run.energy.as_ref()?;
    let s = &run.summary;
    let (first, last) = (run.snapshots.first()?, run.snapshots.last()?);
    let recorded = |step: usize| {
        if step == 0 {
            Some(s.header.initial_energy)
        } else {
            s.steps.iter().find(|r| r.step == step).map(|r| r.energy)
        }
    };
    for (step, _, rho) in [first, last] {
        let f = energy.value(&run.mesh, rho).ok()?;
        let r = recorded(*step)?;
        if (f - r).abs() > 1e-8 * (1.0 + r.abs()) {
            return None;
        }
    }
    let (_, f_min) = equilibrium(&run.mesh, energy, run.mesh.mass(&first.2))?;
    Some(f_min)
}

/// The minimiser ρ_∞ of the discrete energy F_h(ρ) = Σ_K |K| [f(ρ_K) + V_K ρ_K] at mass
/// `mass` (subject to 0 ≤ ρ ≤ ρ_max) and F_h(ρ_∞), where it is explicit up to the Lagrange
/// multiplier λ of the mass: f'(ρ_K) + V_K = λ wherever 0 < ρ_K < ρ_max, so
/// ρ_K = min(ρ_max, (f')⁻¹(λ − V_K)) with (f')⁻¹(u) = e^{u/β − 1} for f = β ρ log ρ and
/// ((m − 1) u₊ / m)^{1/(m−1)} for f = ρ^m/(m − 1); λ by bisection on the (monotone) mass.
/// `None` for an interaction, for entropy and porous together, for no internal energy, or for
/// a cap that cannot hold the mass.
fn equilibrium(mesh: &Mesh, energy: &Energy, mass: f64) -> Option<(ndarray::Array1<f64>, f64)> {
    if energy.interaction.is_some() || !(mass.is_finite() && mass > 0.0) {
        return None;
    }
    let v = match &energy.potential {
        Some(p) => p.on_mesh(mesh).ok()?,
        None => ndarray::Array1::zeros(mesh.n_cells()),
    };
    let cap = energy.max_density.unwrap_or(f64::INFINITY);
    if mesh.domain_volume() * cap < mass {
        return None;
    }
    let inverse: Box<dyn Fn(f64) -> f64> = match (energy.entropy, energy.porous) {
        (Some(beta), None) => Box::new(move |u: f64| (u / beta - 1.0).exp()),
        (None, Some(m)) => {
            Box::new(move |u: f64| ((m - 1.0) / m * u.max(0.0)).powf(1.0 / (m - 1.0)))
        }
        _ => return None,
    };
    let (v_min, v_max) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    // Shift λ by V_min: for the entropy without a cap, the density is then at most e^{λ'/β − 1}.
    let density = |lambda: f64| v.mapv(|vk| cap.min(inverse(lambda - (vk - v_min))));
    let mass_of = |lambda: f64| mesh.mass(&density(lambda));
    let (mut lo, mut hi) = (-1.0, 1.0);
    let width = (v_max - v_min).max(1.0);
    let mut expand = 0;
    while mass_of(lo) > mass {
        lo -= width * 2f64.powi(expand);
        expand += 1;
        if expand > 200 {
            return None;
        }
    }
    expand = 0;
    while mass_of(hi) < mass {
        hi += width * 2f64.powi(expand);
        expand += 1;
        if expand > 200 {
            return None;
        }
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if mass_of(mid) < mass {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let rho = density(0.5 * (lo + hi));
    let f = energy.value(mesh, &rho).ok()?;
    f.is_finite().then_some((rho, f))
}

/// The legend box of every chart here: translucent white with a grey border.
fn legend_box<'a, 'b: 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, BitMapBackend<'b>, CT>,
    size: u32,
    position: SeriesLabelPosition,
) -> DrawResult {
    chart
        .configure_series_labels()
        .label_font(font(size))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .position(position)
        .draw()?;
    Ok(())
}

/// A legend entry's sample: a short line in the series' style.
fn legend_line(style: ShapeStyle) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(a, b)| PathElement::new(vec![(a, b), (a + 22, b)], style)
}

/// Padded range of finite values.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo {
        0.06 * (hi - lo)
    } else {
        0.5 * lo.abs().max(1e-12)
    };
    (lo - pad, hi + pad)
}

/// Positive range in log space, padded by a factor.
fn log_range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return None;
    }
    let (lo, hi) = if hi / lo < 10.0 {
        let mid = (lo * hi).sqrt();
        (
            mid / 4.0_f64.max((hi / lo).sqrt() * 1.5),
            mid * 4.0_f64.max((hi / lo).sqrt() * 1.5),
        )
    } else {
        (lo / 1.6, hi * 1.6)
    };
    Some((lo, hi))
}

/// (legend, points, colour) of one line.
type Curve<'a> = (&'a str, &'a [(f64, f64)], RGBColor);

/// A panel with log y axis; non-positive values are left out (a log scale cannot show them).
fn log_panel(area: &Area, caption: &str, t_end: f64, series: &[Curve]) -> DrawResult {
    let all = series.iter().flat_map(|s| s.1.iter().map(|p| p.1));
    let Some((lo, hi)) = log_range(all) else {
        area.titled(caption, font(18))?.draw(&Text::new(
            "no positive values",
            (40, 60),
            font(15),
        ))?;
        return Ok(());
    };
    let mut chart = time_chart(area, caption, t_end, (lo..hi).log_scale(), format_log)?;
    for &(name, points, colour) in series {
        let pos: Vec<(f64, f64)> = points
            .iter()
            .cloned()
            .filter(|p| p.1.is_finite() && p.1 > 0.0)
            .collect();
        draw_curve(&mut chart, (name, &pos, colour), 3)?;
    }
    legend_box(&mut chart, 14, SeriesLabelPosition::UpperRight)?;
    Ok(())
}

/// A chart of the energy figure: t ∈ [0, t_end] across, the range `y` (linear or log) up with
/// labels written by `format`, light grid lines.
fn time_chart<'a, 'b, Y>(
    area: &'a Area<'b>,
    caption: &str,
    t_end: f64,
    y: Y,
    format: fn(f64) -> String,
) -> Result<TimeChart<'a, 'b, Y::CoordDescType>, Box<dyn std::error::Error>>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .caption(caption, font(18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..t_end, y)?;
    chart
        .configure_mesh()
        .x_desc("t")
        .label_style(font(15))
        .axis_desc_style(font(15))
        .y_label_formatter(&|v| format(*v))
        .light_line_style(RGBColor(242, 242, 242))
        .draw()?;
    Ok(chart)
}

/// A chart with t across and the y coordinate `Y`.
type TimeChart<'a, 'b, Y> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, Y>>;

/// A curve in its colour with a dot of radius `dot` at every point, and its legend entry.
fn draw_curve<CT: CoordTranslate<From = (f64, f64)>>(
    chart: &mut ChartContext<'_, BitMapBackend<'_>, CT>,
    (label, points, colour): Curve,
    dot: u32,
) -> DrawResult {
    chart
        .draw_series(LineSeries::new(
            points.iter().cloned(),
            colour.stroke_width(2),
        ))?
        .label(label)
        .legend(legend_line(colour.stroke_width(3)));
    chart.draw_series(points.iter().map(|&p| Circle::new(p, dot, colour.filled())))?;
    Ok(())
}

/// Least-squares slope of log e against log x.
fn fitted_order(points: &[(f64, f64)]) -> Option<f64> {
    let logs: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| p.0 > 0.0 && p.1 > 0.0 && p.0.is_finite() && p.1.is_finite())
        .map(|p| (p.0.ln(), p.1.ln()))
        .collect();
    if logs.len() < 2 {
        return None;
    }
    let n = logs.len() as f64;
    let (mx, my) = logs
        .iter()
        .fold((0.0, 0.0), |(a, b), p| (a + p.0 / n, b + p.1 / n));
    let sxx: f64 = logs.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = logs.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

const SERIES_COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// Log-log error plot with order-1 and order-2 reference lines. The order-p line runs
/// parallel to the series whose fitted slope is closest to p, a factor 2 below its point at
/// the coarsest abscissa, so it neither hides nor is hidden by the data.
fn error_figure(
    name: &str,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<Figure, ToolError> {
    let points = || series.iter().flat_map(|s| s.1.iter().cloned());
    let positive = |p: &(f64, f64)| p.0 > 0.0 && p.1 > 0.0 && p.0.is_finite() && p.1.is_finite();
    let xs: Vec<f64> = points().filter(positive).map(|p| p.0).collect();
    let x_max = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let x_min = xs.iter().cloned().fold(f64::INFINITY, f64::min);
    let fitted: Vec<Option<f64>> = series
        .iter()
        .map(|s| fitted_order(&s.1.iter().cloned().filter(positive).collect::<Vec<_>>()))
        .collect();
    let mut references: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for p in [1, 2] {
        // The series to run along: fitted slope closest to p.
        let Some(j) = (0..series.len())
            .filter(|&j| fitted[j].is_some())
            .min_by(|&a, &b| {
                let d = |j: usize| (fitted[j].unwrap_or(f64::INFINITY) - p as f64).abs();
                d(a).total_cmp(&d(b))
            })
        else {
            continue;
        };
        let Some(&(xa, ya)) = series[j]
            .1
            .iter()
            .filter(|q| positive(q))
            .max_by(|a, b| a.0.total_cmp(&b.0))
        else {
            continue;
        };
        let f = |x: f64| 0.5 * ya * (x / xa).powi(p);
        references.push((
            format!("order {p}"),
            vec![(x_min, f(x_min)), (x_max, f(x_max))],
        ));
    }
    let ys = points()
        .filter(positive)
        .map(|p| p.1)
        .chain(references.iter().flat_map(|r| r.1.iter().map(|p| p.1)));
    let Some((ylo, yhi)) = log_range(ys) else {
        return Err(ToolError::Plot {
            what: name.to_string(),
            message: "no positive (abscissa, error) pairs".into(),
        });
    };
    let (xlo, xhi) = if x_max > x_min {
        (x_min / 1.25, x_max * 1.25)
    } else {
        (x_min / 2.0, x_max * 2.0)
    };
    // Ticks at the refinements themselves (plotters' log axis labels only some decades).
    let mut x_ticks = xs.clone();
    x_ticks.sort_by(f64::total_cmp);
    x_ticks.dedup();
    render(name, (900, 650), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, font(21))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(75)
            .build_cartesian_2d(
                (xlo..xhi).log_scale().with_key_points(x_ticks.clone()),
                (ylo..yhi).log_scale(),
            )?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .label_style(font(14))
            .axis_desc_style(font(16))
            .y_labels(12)
            .x_label_formatter(&|v| format_value(*v))
            .y_label_formatter(&|v| format_log(*v))
            .light_line_style(RGBColor(242, 242, 242))
            .draw()?;
        for (j, (label, pts)) in references.iter().enumerate() {
            // Order 1: short grey dashes; order 2: long black dashes.
            let (colour, dash, gap) = if j == 0 {
                (RGBColor(110, 110, 110), 5, 5)
            } else {
                (BLACK, 14, 6)
            };
            let style = ShapeStyle::from(&colour).stroke_width(2);
            chart
                .draw_series(DashedLineSeries::new(pts.iter().cloned(), dash, gap, style))?
                .label(label.clone())
                .legend(move |(a, b)| {
                    let d = dash.min(9);
                    EmptyElement::at((a, b))
                        + PathElement::new(vec![(0, 0), (d, 0)], style)
                        + PathElement::new(vec![(d + 4, 0), (2 * d + 4, 0)], style)
                });
        }
        for (j, (label, pts)) in series.iter().enumerate() {
            let colour = SERIES_COLOURS[j % SERIES_COLOURS.len()];
            let mut pts: Vec<(f64, f64)> = pts.iter().cloned().filter(positive).collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let label = match fitted_order(&pts) {
                Some(p) => format!("{label} (fitted slope {p:.2})"),
                None => label.clone(),
            };
            draw_curve(&mut chart, (&label, &pts, colour), 4)?;
        }
        legend_box(&mut chart, 15, SeriesLabelPosition::LowerRight)?;
        Ok(())
    })
}

fn implicit_bias_figure(table: &ImplicitBiasTable) -> Result<Figure, ToolError> {
    let flow = table.rows.iter().map(|r| (r.eta, r.err_flow)).collect();
    let wgf = table.rows.iter().map(|r| (r.eta, r.err_wgf)).collect();
    error_figure(
        "implicit_bias",
        "JKO iterates against the gradient flow of J and of J^η",
        "η (JKO step)",
        "error",
        &[
            ("JKO-Flow (J^η flow) vs JKO iterates".to_string(), flow),
            ("plain gradient flow of J vs JKO iterates".to_string(), wgf),
        ],
    )
}

fn convergence_figure(report: &ConvergenceReport) -> Result<Figure, ToolError> {
    let (x_desc, abscissa): (&str, fn(&ConvergenceRow) -> Option<f64>) =
        match report.against.as_str() {
            "h" => ("h (mesh size)", |r| Some(r.h)),
            "tau" => ("τ (time step)", |r| Some(r.tau)),
            "levels" => ("1 / time levels", |r| r.levels.map(|l| 1.0 / l as f64)),
            other => {
                return Err(ToolError::Plot {
                    what: "convergence.json".into(),
                    message: format!("unknown `against` = {other:?} (h, tau or levels)"),
                });
            }
        };
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    let mut push = |name: String, point: (f64, f64)| match series.iter_mut().find(|s| s.0 == name) {
        Some(s) => s.1.push(point),
        None => series.push((name, vec![point])),
    };
    for row in &report.rows {
        let Some(x) = abscissa(row) else { continue };
        push(
            format!("{} vs {}", row.label, report.reference),
            (x, row.error),
        );
        if let Some(e) = row.error_jko {
            push(format!("{} vs exact JKO iterates", row.label), (x, e));
        }
    }
    error_figure(
        "convergence",
        &format!("convergence of the {} backend", report.solver),
        x_desc,
        &report.quantity,
        &series,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use jko_core::Potential;

    #[test]
    fn level_lines_of_a_paraboloid_are_circles() {
        let n = 41;
        let x: Vec<f64> = (0..n)
            .map(|i| -1.0 + 2.0 * i as f64 / (n - 1) as f64)
            .collect();
        let f: Vec<f64> = (0..n * n)
            .map(|ij| x[ij / n].powi(2) + x[ij % n].powi(2))
            .collect();
        let segments = level_lines(&x, &x, &f, 0.25);
        let mut length = 0.0;
        for [a, b] in &segments {
            for p in [a, b] {
                let r = p.0.hypot(p.1);
                assert!((r - 0.5).abs() < 2e-3, "point at radius {r}");
            }
            length += (a.0 - b.0).hypot(a.1 - b.1);
        }
        let circumference = std::f64::consts::PI;
        assert!(
            (length - circumference).abs() < 1e-2 * circumference,
            "length {length}"
        );
        // A NaN node removes its squares only.
        let mut holed = f.clone();
        holed[20 * n + 30] = f64::NAN;
        let fewer = level_lines(&x, &x, &holed, 0.25).len();
        assert!(fewer < segments.len() && fewer + 4 >= segments.len());
    }

    /// F_h at ρ_∞ is not lowered by any mass-preserving perturbation (within the constraints).
    fn assert_minimum(mesh: &Mesh, energy: &Energy, rho: &ndarray::Array1<f64>, f: f64) {
        let n = rho.len();
        let vol = mesh.volumes();
        let cap = energy.max_density.unwrap_or(f64::INFINITY);
        for (a, b) in [
            (0, n - 1),
            (n / 3, n / 2),
            (n / 2, n / 2 + 1),
            (1, 2 * n / 3),
        ] {
            for eps in [1e-3, -1e-3] {
                // Move mass eps from cell b to cell a.
                let mut p = rho.clone();
                p[a] += eps / vol[a];
                p[b] -= eps / vol[b];
                if p[a] < 0.0 || p[b] < 0.0 || p[a] > cap || p[b] > cap {
                    continue;
                }
                let g = energy.value(mesh, &p).unwrap();
                assert!(g >= f - 1e-12, "moving {eps} from {b} to {a}: {g} < {f}");
            }
        }
    }

    #[test]
    fn equilibrium_of_fokker_planck_is_the_gibbs_density() {
        let mesh = Mesh::grid(&[400], &[-6.0], &[6.0]).unwrap();
        let energy = Energy::ornstein_uhlenbeck(1);
        let (rho, f) = equilibrium(&mesh, &energy, 1.0).unwrap();
        assert!((mesh.mass(&rho) - 1.0).abs() < 1e-12);
        // The standard normal density at the cell centres, to O(h²).
        let gauss =
            mesh.sample(|x| (-0.5 * x[0] * x[0]).exp() / (2.0 * std::f64::consts::PI).sqrt());
        let err = (&rho - &gauss).iter().fold(0.0f64, |a, e| a.max(e.abs()));
        assert!(err < 1e-3, "max error to N(0, 1): {err}");
        assert_minimum(&mesh, &energy, &rho, f);
        // F(N(0,1)) = −½ log(2π) − ½ + ½ = −½ log(2π) for β = 1, V = x²/2.
        let exact = -0.5 * (2.0 * std::f64::consts::PI).ln();
        assert!((f - exact).abs() < 1e-3, "{f} vs {exact}");
    }

    #[test]
    fn equilibrium_of_porous_media_and_crowds_is_a_minimum() {
        let mesh = Mesh::grid(&[200], &[-3.0], &[3.0]).unwrap();
        let quadratic = Some(Potential::quadratic(vec![0.5], 2.0));
        let porous = Energy {
            porous: Some(2.0),
            potential: quadratic.clone(),
            ..Energy::default()
        };
        let (rho, f) = equilibrium(&mesh, &porous, 1.0).unwrap();
        assert!((mesh.mass(&rho) - 1.0).abs() < 1e-10);
        assert!(rho.iter().any(|&r| r == 0.0), "compact support expected");
        assert_minimum(&mesh, &porous, &rho, f);
        let crowd = Energy {
            entropy: Some(0.05),
            potential: quadratic,
            max_density: Some(0.6),
            ..Energy::default()
        };
        let (rho, f) = equilibrium(&mesh, &crowd, 1.0).unwrap();
        assert!((mesh.mass(&rho) - 1.0).abs() < 1e-10);
        assert!(rho.iter().all(|&r| r <= 0.6) && rho.iter().any(|&r| r == 0.6));
        assert_minimum(&mesh, &crowd, &rho, f);
        // A cap that cannot hold the mass, and energies without an explicit minimiser.
        let tight = Energy {
            max_density: Some(0.1),
            ..crowd.clone()
        };
        assert!(equilibrium(&mesh, &tight, 1.0).is_none());
        let both = Energy {
            porous: Some(2.0),
            ..crowd
        };
        assert!(equilibrium(&mesh, &both, 1.0).is_none());
    }
}

//! Figures of a run directory (`jko plot DIR --out FIG_DIR`), drawn with pure-Rust plotters
//! into PNG files:
//!
//! - `density.png`: snapshots of ρⁿ. 1D: line plots of up to six steps from ρ⁰ to the last
//!   step in one figure, coloured by time; 2D: heat maps of up to four steps side by side on a
//!   common colour scale (viridis, 0 to the largest value shown), cells outside the domain
//!   (obstacles, mask) in grey; 3D: the same for the slice through the middle of the last axis.
//! - `energy.png`: F_h(ρⁿ) against t = nτ; F_h(ρⁿ) − F_h(ρ^N) on a log scale (N the last
//!   step: its slope shows the rate of approach, e.g. e^{−2t} for Ornstein–Uhlenbeck); and the
//!   per-step dissipation W_h²(ρⁿ⁻¹, ρⁿ)/τ next to the energy drop F(ρⁿ⁻¹) − F(ρⁿ), also on a
//!   log scale. A JKO step satisfies F(ρⁿ⁻¹) − F(ρⁿ) ≥ W²/(2τ), and both curves approach
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
use jko::config::{Config, read_npy};
use jko::output::{Summary, step_file};
use jko_core::Mesh;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../../data/fonts/DejaVuSans.ttf");
/// Colour of cells outside the domain (not a viridis colour).
const MASKED: RGBColor = RGBColor(190, 190, 190);

type DrawResult = Result<(), Box<dyn std::error::Error>>;

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

/// Plot a run directory into `out` (created if needed); returns the PNG paths written
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
/// assert_eq!(names, ["density.png", "energy.png"]);
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
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> DrawResult,
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

/// What the plots need from a run directory.
struct RunData {
    summary: Summary,
    mesh: Mesh,
    /// (step, t, density as cell values of `mesh`) for every step file found.
    snapshots: Vec<(usize, f64, ndarray::Array1<f64>)>,
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
        if snapshots.is_empty() {
            return Err(ToolError::Unsuited {
                tool: "plot",
                what: format!("rho_NNNNN.npy files: {} has none", dir.display()),
            });
        }
        Ok(RunData {
            summary,
            mesh,
            snapshots,
        })
    }

    /// Up to `n` snapshots evenly spread from the first to the last.
    fn chosen(&self, n: usize) -> Vec<&(usize, f64, ndarray::Array1<f64>)> {
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

fn density_figure(run: &RunData) -> Result<Figure, ToolError> {
    if let Some(shapes) = run.mesh.shapes() {
        return density_cells(run, shapes);
    }
    let grid = run.mesh.as_grid().ok_or_else(|| ToolError::Unsuited {
        tool: "plot",
        what: "a grid mesh".into(),
    })?;
    match grid.cells.len() {
        1 => density_1d(run),
        2 | 3 => density_heat_maps(run),
        d => Err(ToolError::Unsuited {
            tool: "plot",
            what: format!("a 1D to 3D density, not {d}D"),
        }),
    }
}

fn density_1d(run: &RunData) -> Result<Figure, ToolError> {
    let grid = run.mesh.as_grid().ok_or_else(|| ToolError::Unsuited {
        tool: "plot",
        what: "a grid mesh".into(),
    })?;
    let shown = run.chosen(6);
    let n = grid.cells[0];
    let inside = inside_mask(&run.mesh);
    let x: Vec<f64> = (0..n).map(|i| grid.coordinate(0, i)).collect();
    let gi = run.mesh.grid_index();
    let mut ymax = 0.0f64;
    let mut curves = Vec::new();
    for (step, t, rho) in &shown {
        let mut values = vec![0.0; n];
        for (k, &g) in gi.iter().enumerate() {
            values[g] = rho[k];
        }
        ymax = ymax.max(values.iter().cloned().fold(0.0, f64::max));
        curves.push((*step, *t, values));
    }
    let ymax = if ymax > 0.0 { 1.08 * ymax } else { 1.0 };
    let title = format!(
        "density ρⁿ ({} cells, τ = {})",
        n, run.summary.header.config.scheme.tau
    );
    render("density", (900, 560), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, font(22))
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
        let m = curves.len();
        for (j, (step, t, values)) in curves.iter().enumerate() {
            let colour = time_colour(j, m);
            let style = colour.stroke_width(2);
            // One polyline per run of inside cells.
            let mut first = true;
            let mut i = 0;
            while i < n {
                if !inside[i] {
                    i += 1;
                    continue;
                }
                let start = i;
                while i < n && inside[i] {
                    i += 1;
                }
                let series = chart.draw_series(LineSeries::new(
                    (start..i).map(|c| (x[c], values[c])),
                    style,
                ))?;
                if first {
                    series
                        .label(format!("step {step}, t = {}", format_value(*t)))
                        .legend(move |(a, b)| {
                            PathElement::new(vec![(a, b), (a + 22, b)], colour.stroke_width(3))
                        });
                    first = false;
                }
            }
        }
        chart
            .configure_series_labels()
            .label_font(font(15))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(160, 160, 160))
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
        Ok(())
    })
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

/// 2D heat maps (3D: the slice through the middle of the last axis), side by side.
fn density_heat_maps(run: &RunData) -> Result<Figure, ToolError> {
    let grid = run.mesh.as_grid().ok_or_else(|| ToolError::Unsuited {
        tool: "plot",
        what: "a grid mesh".into(),
    })?;
    let d = grid.cells.len();
    let (nx, ny) = (grid.cells[0], grid.cells[1]);
    let nz = if d == 3 { grid.cells[2] } else { 1 };
    let kz = nz / 2;
    let inside = inside_mask(&run.mesh);
    let gi = run.mesh.grid_index();
    let shown = run.chosen(4);
    // Grid values of the shown slice (NaN outside the domain).
    let mut slices = Vec::new();
    let mut vmax = 0.0f64;
    for (step, t, rho) in &shown {
        let mut full = vec![f64::NAN; grid.len()];
        for (k, &g) in gi.iter().enumerate() {
            full[g] = rho[k];
        }
        let slice: Vec<f64> = (0..nx * ny).map(|ij| full[ij * nz + kz]).collect();
        vmax = slice
            .iter()
            .filter(|v| v.is_finite())
            .fold(vmax, |a, &b| a.max(b));
        slices.push((*step, *t, slice));
    }
    let vmax = if vmax > 0.0 { vmax } else { 1.0 };
    let (lx, ly) = (grid.upper[0] - grid.lower[0], grid.upper[1] - grid.lower[1]);
    let (hx, hy) = (grid.spacing()[0], grid.spacing()[1]);
    let plot_w = 260.0;
    let plot_h = (plot_w * ly / lx).clamp(120.0, 520.0);
    let panel_w = plot_w as u32 + 70;
    let panel_h = plot_h as u32 + 95;
    let bar_w = 110;
    let width = panel_w * slices.len() as u32 + bar_w;
    let height = panel_h + 50;
    let masked_any = inside.iter().any(|i| !i);
    let mut title = format!("density ρⁿ, {nx}×{ny}");
    if d == 3 {
        title = format!(
            "density ρⁿ, {}×{}×{}: slice z = {:.3} (cell {kz})",
            nx,
            ny,
            nz,
            grid.coordinate(2, kz)
        );
    }
    if masked_any {
        title.push_str(" — grey: outside the domain");
    }
    let inside_slice: Vec<bool> = (0..nx * ny).map(|ij| inside[ij * nz + kz]).collect();
    render("density", (width, height), |root| {
        let (title_area, body) = root.split_vertically(45);
        title_area.titled(&title, font(22))?;
        let (panels, bar) = body.split_horizontally(panel_w * slices.len() as u32);
        let areas = panels.split_evenly((1, slices.len()));
        for (area, (step, t, slice)) in areas.iter().zip(&slices) {
            let mut chart = ChartBuilder::on(area)
                .caption(format!("step {step}, t = {}", format_value(*t)), font(17))
                .margin(8)
                .x_label_area_size(35)
                .y_label_area_size(45)
                .build_cartesian_2d(grid.lower[0]..grid.upper[0], grid.lower[1]..grid.upper[1])?;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_labels(5)
                .y_labels(5)
                .label_style(font(15))
                .draw()?;
            chart.draw_series((0..nx * ny).map(|ij| {
                let (i, j) = (ij / ny, ij % ny);
                let (x, y) = (grid.coordinate(0, i), grid.coordinate(1, j));
                let colour = if inside_slice[ij] {
                    viridis(slice[ij] / vmax)
                } else {
                    MASKED
                };
                Rectangle::new(
                    [(x - hx / 2.0, y - hy / 2.0), (x + hx / 2.0, y + hy / 2.0)],
                    colour.filled(),
                )
            }))?;
        }
        colour_bar(&bar, vmax, plot_h)?;
        Ok(())
    })
}

/// A mesh read from a file (2D): every cell (triangle or Voronoi polygon) filled with its
/// density's colour, snapshots side by side, one colour bar.
fn density_cells(run: &RunData, shapes: &jko_core::CellShapes) -> Result<Figure, ToolError> {
    if shapes.dim != 2 {
        return Err(ToolError::Unsuited {
            tool: "plot",
            what: format!(
                "a 2D mesh (this one is {}D: open rho.pvd in ParaView, from --format vtk)",
                shapes.dim
            ),
        });
    }
    let shown = run.chosen(4);
    let vmax = shown
        .iter()
        .flat_map(|(_, _, rho)| rho.iter())
        .filter(|v| v.is_finite())
        .fold(0.0f64, |a, &b| a.max(b));
    let vmax = if vmax > 0.0 { vmax } else { 1.0 };
    let (x0, x1) = range((0..shapes.n_points()).map(|i| shapes.point(i)[0]));
    let (y0, y1) = range((0..shapes.n_points()).map(|i| shapes.point(i)[1]));
    let plot_w = 260.0;
    let plot_h = (plot_w * (y1 - y0) / (x1 - x0).max(f64::MIN_POSITIVE)).clamp(120.0, 520.0);
    let panel_w = plot_w as u32 + 70;
    let panel_h = plot_h as u32 + 95;
    let bar_w = 110;
    let width = panel_w * shown.len() as u32 + bar_w;
    let height = panel_h + 50;
    let kind = match shapes.kind {
        jko_core::CellKind::Triangle => "triangles",
        jko_core::CellKind::Polygon => "Voronoi cells",
        jko_core::CellKind::Tetrahedron => "tetrahedra",
    };
    let title = format!("density ρⁿ, {} {kind}", shapes.n_cells());
    render("density", (width, height), |root| {
        let (title_area, body) = root.split_vertically(45);
        title_area.titled(&title, font(22))?;
        let (panels, bar) = body.split_horizontally(panel_w * shown.len() as u32);
        let areas = panels.split_evenly((1, shown.len()));
        for (area, (step, t, rho)) in areas.iter().zip(&shown) {
            let mut chart = ChartBuilder::on(area)
                .caption(format!("step {step}, t = {}", format_value(*t)), font(17))
                .margin(8)
                .x_label_area_size(35)
                .y_label_area_size(45)
                .build_cartesian_2d(x0..x1, y0..y1)?;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_labels(5)
                .y_labels(5)
                .label_style(font(15))
                .draw()?;
            chart.draw_series((0..shapes.n_cells()).map(|k| {
                let corners: Vec<(f64, f64)> = shapes
                    .cell(k)
                    .iter()
                    .map(|&i| (shapes.point(i)[0], shapes.point(i)[1]))
                    .collect();
                Polygon::new(corners, viridis(rho[k] / vmax).filled())
            }))?;
        }
        colour_bar(&bar, vmax, plot_h)?;
        Ok(())
    })
}

fn colour_bar(area: &DrawingArea<BitMapBackend, Shift>, vmax: f64, plot_h: f64) -> DrawResult {
    let area = area.margin(
        38,
        (area.dim_in_pixel().1 as f64 - 38.0 - plot_h - 35.0).max(0.0) as u32,
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
    let mut energy = vec![(0.0, s.header.initial_energy)];
    energy.extend(s.steps.iter().map(|r| (r.t, r.energy)));
    let f_final = energy.last().map_or(0.0, |e| e.1);
    let gap: Vec<(f64, f64)> = energy[..energy.len() - 1]
        .iter()
        .map(|&(t, f)| (t, f - f_final))
        .collect();
    let dissipation: Vec<(f64, f64)> = s.steps.iter().map(|r| (r.t, r.kinetic / tau)).collect();
    let drop: Vec<(f64, f64)> = energy
        .windows(2)
        .map(|w| (w[1].0, w[0].1 - w[1].1))
        .collect();
    let t_end = energy.last().map_or(1.0, |e| e.0).max(tau);
    render("energy", (1500, 500), |root| {
        let (title_area, body) = root.split_vertically(40);
        title_area.titled(
            &format!(
                "energy and dissipation ({} steps, τ = {tau})",
                s.steps.len()
            ),
            font(22),
        )?;
        let panels = body.split_evenly((1, 3));
        // F(ρⁿ), linear.
        let (lo, hi) = range(energy.iter().map(|e| e.1));
        let mut chart = ChartBuilder::on(&panels[0])
            .caption("F(ρⁿ)", font(18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..t_end, lo..hi)?;
        chart
            .configure_mesh()
            .x_desc("t")
            .label_style(font(15))
            .axis_desc_style(font(15))
            .y_label_formatter(&|v| format_value(*v))
            .light_line_style(RGBColor(242, 242, 242))
            .draw()?;
        let blue = RGBColor(31, 119, 180);
        chart.draw_series(LineSeries::new(
            energy.iter().cloned(),
            blue.stroke_width(2),
        ))?;
        chart.draw_series(energy.iter().map(|&p| Circle::new(p, 3, blue.filled())))?;
        // F(ρⁿ) − F(ρ^N), log.
        log_panel(
            &panels[1],
            "F(ρⁿ) − F(ρ_final)",
            t_end,
            &[("F − F_final", &gap, blue)],
        )?;
        // Per step: W²/τ and the energy drop.
        let orange = RGBColor(230, 110, 20);
        log_panel(
            &panels[2],
            "per step",
            t_end,
            &[
                ("kinetic/τ (W_h² of the step)", &dissipation, orange),
                ("F(ρⁿ⁻¹) − F(ρⁿ)", &drop, blue),
            ],
        )?;
        Ok(())
    })
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
fn log_panel(
    area: &DrawingArea<BitMapBackend, Shift>,
    caption: &str,
    t_end: f64,
    series: &[Curve],
) -> DrawResult {
    let all = series.iter().flat_map(|s| s.1.iter().map(|p| p.1));
    let Some((lo, hi)) = log_range(all) else {
        area.titled(caption, font(18))?.draw(&Text::new(
            "no positive values",
            (40, 60),
            font(15),
        ))?;
        return Ok(());
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, font(18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..t_end, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("t")
        .label_style(font(15))
        .axis_desc_style(font(15))
        .y_label_formatter(&|v| format_log(*v))
        .light_line_style(RGBColor(242, 242, 242))
        .draw()?;
    for &(name, points, colour) in series {
        let pos: Vec<(f64, f64)> = points
            .iter()
            .cloned()
            .filter(|p| p.1.is_finite() && p.1 > 0.0)
            .collect();
        chart
            .draw_series(LineSeries::new(pos.iter().cloned(), colour.stroke_width(2)))?
            .label(name)
            .legend(move |(a, b)| {
                PathElement::new(vec![(a, b), (a + 22, b)], colour.stroke_width(3))
            });
        chart.draw_series(pos.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
    }
    chart
        .configure_series_labels()
        .label_font(font(14))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
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
            chart
                .draw_series(LineSeries::new(pts.iter().cloned(), colour.stroke_width(2)))?
                .label(label)
                .legend(move |(a, b)| {
                    PathElement::new(vec![(a, b), (a + 22, b)], colour.stroke_width(3))
                });
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, colour.filled())))?;
        }
        chart
            .configure_series_labels()
            .label_font(font(15))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(160, 160, 160))
            .position(SeriesLabelPosition::LowerRight)
            .draw()?;
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

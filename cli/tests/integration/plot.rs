//! `jko_cli::plot`: figures of real run directories are written as PNGs of the rendered size,
//! carry text (the embedded font works) and data, show masked cells, overlay the exact
//! solution when the run has one (and only then), draw a colour bar that spans the colour map,
//! and animate the run as a GIF with one frame per saved step.

use jko::RunOptions;
use jko::config::Config;
use jko_cli::convergence::{Refine, convergence};
use jko_cli::plot::{Figure, plot_run, render_run};
use std::path::{Path, PathBuf};

const ONE_D: &str = r#"
mesh = { cells = [40], lower = [-4.0], upper = [4.0] }
initial = { kind = "gaussian", mean = [1.0], std = [0.5] }
energy = { entropy = 1.0, potential = { kind = "quadratic" } }
scheme = { tau = 0.1, steps = 4 }
solver = { kind = "conic" }
"#;

const TWO_D: &str = r#"
mesh = { cells = [10, 8], lower = [-3.0, -2.0], upper = [3.0, 2.0], obstacles = [{ kind = "disc", center = [1.0, 0.0], radius = 0.8 }] }
initial = { kind = "gaussian", mean = [-1.0, 0.0], std = [0.8, 0.8] }
energy = { entropy = 1.0, potential = { kind = "quadratic" } }
scheme = { tau = 0.2, steps = 2 }
solver = { kind = "conic" }
"#;

/// A 2D Ornstein–Uhlenbeck run on an open box: the engine knows its exact solution.
const TWO_D_EXACT: &str = r#"
mesh = { cells = [24, 20], lower = [-4.0, -3.5], upper = [4.0, 3.5] }
initial = { kind = "gaussian", mean = [1.0, 0.0], std = [0.7, 0.7] }
energy = { entropy = 1.0, potential = { kind = "quadratic" } }
scheme = { tau = 0.2, steps = 3 }
solver = { kind = "conic" }
"#;

/// The colour of the exact solution's overlay (`EXACT` in cli/src/plot.rs).
const EXACT: [u8; 3] = [230, 25, 45];

/// Runs `toml` into `run/` of a new temporary directory; returns the directory and `run/`.
fn run(toml: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let config = Config::from_toml(toml).unwrap();
    let opts = RunOptions {
        out: Some(dir.clone()),
        ..Default::default()
    };
    jko::run(&config, &dir, &opts, &mut [], &|| false).unwrap();
    (tmp, dir)
}

/// Width and height from the PNG signature and IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

/// Non-white pixels in rows `rows` of a figure.
fn ink(fig: &Figure, rows: std::ops::Range<u32>) -> usize {
    let w = fig.width as usize * 3;
    fig.rgb[rows.start as usize * w..rows.end as usize * w]
        .chunks_exact(3)
        .filter(|p| *p != [255, 255, 255])
        .count()
}

/// Plots the run in `dir` into `out` (`plot_run`) and renders it again (`render_run`): the
/// figures are `names`, each written as a PNG of its rendered size with text and data. Returns
/// the written paths and the figures.
fn plotted(dir: &Path, out: &Path, names: &[&str]) -> (Vec<PathBuf>, Vec<Figure>) {
    let paths = plot_run(dir, out).unwrap();
    let figures = render_run(dir).unwrap();
    let got: Vec<&str> = figures.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(got, names);
    let pngs: Vec<_> = paths
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    assert_eq!(pngs.len(), figures.len());
    for (fig, path) in figures.iter().zip(pngs) {
        assert_eq!(
            path.file_name().unwrap().to_string_lossy(),
            format!("{}.png", fig.name)
        );
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(
            png_size(&bytes),
            (fig.width, fig.height),
            "{}",
            path.display()
        );
        assert!(
            bytes.len() > 10_000,
            "{}: only {} bytes",
            path.display(),
            bytes.len()
        );
        // Text (title), axes and coloured data: many colours, ink in the title strip.
        assert!(
            fig.distinct_colours() > 50,
            "{}: {} colours",
            fig.name,
            fig.distinct_colours()
        );
        assert!(ink(fig, 0..35) > 200, "{}: no title drawn", fig.name);
    }
    (paths, figures)
}

#[test]
fn one_d_run_with_error_tables() {
    let (tmp, dir) = run(ONE_D);
    std::fs::write(
        dir.join("implicit_bias.json"),
        r#"{"rows": [{"eta": 0.2, "err_flow": 0.02, "err_wgf": 0.004},
                     {"eta": 0.1, "err_flow": 0.01, "err_wgf": 0.001},
                     {"eta": 0.05, "err_flow": 0.005, "err_wgf": 0.00025}]}"#,
    )
    .unwrap();
    // A real `jko convergence` report (τ halved once) in the format it writes.
    let config = Config::from_toml(ONE_D).unwrap();
    let tau = Refine {
        tau: true,
        ..Default::default()
    };
    let report = convergence(&config, tmp.path(), tau, 2, &mut |_| {}).unwrap();
    report.write(&dir).unwrap();

    let out = tmp.path().join("fig");
    let (paths, figures) = plotted(
        &dir,
        &out,
        &["density", "energy", "implicit_bias", "convergence"],
    );
    // No cell is masked in this run: no area of the masked grey (text anti-aliasing may
    // produce a few such pixels).
    assert!(figures[0].count_colour([190, 190, 190]) < 20);
    // The run is Ornstein–Uhlenbeck from a Gaussian: the exact solution is drawn (dashed).
    let red = figures[0].count_colour(EXACT);
    assert!(red > 300, "exact overlay: {red} pixels");
    // The energy figure has the gap to the equilibrium (three panels, 500 px each).
    assert_eq!(figures[1].width, 1500);
    // The animation: one frame per saved step (ρ⁰ … ρ⁴), the figure's size, frames that differ.
    let gif = out.join("animation.gif");
    assert_eq!(paths.last(), Some(&gif));
    let frames = gif_frames(&gif);
    assert_eq!(frames.len(), 5);
    assert!(frames.windows(2).all(|w| w[0] != w[1]), "identical frames");
}

/// The frames of a GIF as RGBA buffers of the full canvas (900 × 560 or the 2D size).
fn gif_frames(path: &Path) -> Vec<Vec<u8>> {
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::RGBA);
    let mut decoder = options
        .read_info(std::fs::File::open(path).unwrap())
        .unwrap();
    let (w, h) = (decoder.width(), decoder.height());
    let mut frames = Vec::new();
    while let Some(frame) = decoder.read_next_frame().unwrap() {
        assert_eq!((frame.width, frame.height), (w, h), "partial frame");
        frames.push(frame.buffer.to_vec());
    }
    frames
}

/// The colour bar: the column of the figure's right part with the most saturated pixels runs
/// from viridis' yellow at the top to its purple at the bottom.
fn check_colour_bar(fig: &Figure) {
    let (w, h) = (fig.width as usize, fig.height as usize);
    let px = |x: usize, y: usize| {
        let i = 3 * (y * w + x);
        [
            fig.rgb[i] as i32,
            fig.rgb[i + 1] as i32,
            fig.rgb[i + 2] as i32,
        ]
    };
    let coloured = |p: [i32; 3]| (p[0] - p[1]).abs() + (p[1] - p[2]).abs() > 40;
    let (x, n) = (w - 120..w)
        .map(|x| (x, (0..h).filter(|&y| coloured(px(x, y))).count()))
        .max_by_key(|c| c.1)
        .unwrap();
    assert!(n > 100, "colour bar column {x}: {n} coloured pixels");
    let ys: Vec<usize> = (0..h).filter(|&y| coloured(px(x, y))).collect();
    let (top, bottom) = (px(x, ys[0]), px(x, *ys.last().unwrap()));
    assert!(
        top[0] > 220 && top[1] > 210 && top[2] < 80,
        "top of the bar {top:?}"
    );
    assert!(
        bottom[0] < 90 && bottom[1] < 20 && bottom[2] > 70,
        "bottom of the bar {bottom:?}"
    );
    // Contiguous: the bar has no gap.
    assert_eq!(
        ys.last().unwrap() - ys[0] + 1,
        ys.len(),
        "gaps in the colour bar"
    );
}

#[test]
fn two_d_run_shows_the_obstacle() {
    let (tmp, dir) = run(TWO_D);
    let out = tmp.path().join("fig");
    let (_, figures) = plotted(&dir, &out, &["density", "energy"]);
    // The obstacle's cells are drawn in the masked grey, in every panel.
    assert!(figures[0].count_colour([190, 190, 190]) > 500);
    // No exact solution with an obstacle: nothing drawn in its colour.
    assert_eq!(figures[0].count_colour(EXACT), 0);
    check_colour_bar(&figures[0]);
}

#[test]
fn two_d_run_with_an_exact_solution_overlays_its_level_lines() {
    let (tmp, dir) = run(TWO_D_EXACT);
    let out = tmp.path().join("fig");
    let (_, figures) = plotted(&dir, &out, &["density", "energy"]);
    let density = &figures[0];
    // Four panels (steps 0..3) and the bar.
    assert_eq!(density.width, 4 * 330 + 120);
    let red = density.count_colour(EXACT);
    assert!(red > 400, "exact level lines: {red} pixels");
    check_colour_bar(density);
    let frames = gif_frames(&out.join("animation.gif"));
    assert_eq!(frames.len(), 4);
    assert_eq!(
        frames[0].len(),
        (330 + 120) as usize * density.height as usize * 4
    );
}

#[test]
fn nothing_to_plot_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = plot_run(tmp.path(), &tmp.path().join("fig")).unwrap_err();
    assert!(err.to_string().contains("nothing to plot"), "{err}");
}

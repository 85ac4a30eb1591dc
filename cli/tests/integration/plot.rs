//! `jko_cli::plot`: figures of real run directories are written as PNGs of the rendered size,
//! carry text (the embedded font works) and data, and show masked cells.

use jko::RunOptions;
use jko::config::Config;
use jko_cli::convergence::{Refine, convergence};
use jko_cli::plot::{Figure, plot_run, render_run};
use std::path::Path;

const ONE_D: &str = r#"
[mesh]
cells = [40]
lower = [-4.0]
upper = [4.0]
[initial]
kind = "gaussian"
mean = [1.0]
std = [0.5]
[energy]
entropy = 1.0
potential = { kind = "quadratic" }
[scheme]
tau = 0.1
steps = 4
[solver]
kind = "conic"
"#;

const TWO_D: &str = r#"
[mesh]
cells = [10, 8]
lower = [-3.0, -2.0]
upper = [3.0, 2.0]
obstacles = [{ kind = "disc", center = [1.0, 0.0], radius = 0.8 }]
[initial]
kind = "gaussian"
mean = [-1.0, 0.0]
std = [0.8, 0.8]
[energy]
entropy = 1.0
potential = { kind = "quadratic" }
[scheme]
tau = 0.2
steps = 2
[solver]
kind = "conic"
"#;

fn run(toml: &str, dir: &Path) {
    let config = Config::from_toml(toml).unwrap();
    let opts = RunOptions {
        out: Some(dir.to_path_buf()),
        ..Default::default()
    };
    jko::run(&config, dir, &opts, &mut [], &|| false).unwrap();
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

fn check_written(figures: &[Figure], paths: &[std::path::PathBuf], names: &[&str]) {
    let got: Vec<&str> = figures.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(got, names);
    assert_eq!(paths.len(), figures.len());
    for (fig, path) in figures.iter().zip(paths) {
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
}

#[test]
fn one_d_run_with_error_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    run(ONE_D, &dir);
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
    let paths = plot_run(&dir, &out).unwrap();
    let figures = render_run(&dir).unwrap();
    check_written(
        &figures,
        &paths,
        &["density", "energy", "implicit_bias", "convergence"],
    );
    // No cell is masked in this run: no area of the masked grey (text anti-aliasing may
    // produce a few such pixels).
    assert!(figures[0].count_colour([190, 190, 190]) < 20);
}

#[test]
fn two_d_run_shows_the_obstacle() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    run(TWO_D, &dir);
    let out = tmp.path().join("fig");
    let paths = plot_run(&dir, &out).unwrap();
    let figures = render_run(&dir).unwrap();
    check_written(&figures, &paths, &["density", "energy"]);
    // The obstacle's cells are drawn in the masked grey, in every panel.
    assert!(figures[0].count_colour([190, 190, 190]) > 500);
}

#[test]
fn nothing_to_plot_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = plot_run(tmp.path(), &tmp.path().join("fig")).unwrap_err();
    assert!(err.to_string().contains("nothing to plot"), "{err}");
}

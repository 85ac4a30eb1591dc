//! # jko-cli
//!
//! The `jko` command line and the tools built on the engine library [`jko`]: refinement studies,
//! backend comparisons, implicit-bias tables, datasets for learned solvers and plots. The
//! engine itself (config, backend registry, plan, stepper, output) carries none of this, so a
//! program that embeds a JKO step does not compile a plotting or command-line stack.
//!
//! | command | library |
//! |---|---|
//! | `jko run CONFIG --out DIR` | [`jko::run`] (the engine) |
//! | `jko convergence CONFIG --refine h,tau` | [`convergence::convergence`] |
//! | `jko compare SUITE` | [`compare::compare`] |
//! | `jko implicit-bias CONFIG` | [`implicit_bias::implicit_bias`] |
//! | `jko dataset SPEC --out DIR` | [`dataset::run_dataset`] |
//! | `jko score CONFIG RHO_PREV RHO_CAND` | [`score::score_files`] ([`jko::score::score`]) |
//! | `jko plot DIR` | [`plot::plot_run`] |
//! | `jko solvers` | [`jko::backend::BACKENDS`] |
//! | `jko example NAME` | [`jko::examples::example`] |
//!
//! A new subcommand is a variant of the `Command` enum in `src/main.rs` that calls one
//! function of a module here (or of the engine); its errors are [`jko::error::RunError`] or,
//! for a tool's own failures, [`error::ToolError`].
//!
//! A tool's error names what to fix, and is not a config error:
//!
//! ```rust
//! use jko::config::Config;
//! use jko_cli::error::ToolError;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // implicit-bias needs a Gaussian initial state (exact Bures–Wasserstein paths) or a 1D mesh.
//! let porous = Config::from_toml(jko::examples::example("porous-2d").unwrap())?;
//! let err = jko_cli::implicit_bias::implicit_bias(&porous, &[0.1]).unwrap_err();
//! assert!(matches!(err, ToolError::Unsuited { tool: "implicit-bias", .. }));
//! assert!(err.to_string().starts_with("implicit-bias needs a Gaussian initial state"), "{err}");
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod compare;
pub mod convergence;
pub mod dataset;
pub mod error;
pub mod implicit_bias;
pub mod plot;
pub mod score;

use error::ToolError;
use serde::Serialize;
use std::path::Path;

/// A duration for a person: three significant digits in the unit that fits (ns, µs, ms, s),
/// minutes and hours beyond a minute, so a fast step never reads "0.000 s".
///
/// ```rust
/// use jko_cli::format_duration;
///
/// assert_eq!(format_duration(0.000_042_1), "42.1 µs");
/// assert_eq!(format_duration(0.0123), "12.3 ms");
/// assert_eq!(format_duration(2.5), "2.50 s");
/// assert_eq!(format_duration(0.9996), "1.00 s");
/// assert_eq!(format_duration(125.0), "2 min 05 s");
/// assert_eq!(format_duration(7380.0), "2 h 03 min");
/// assert_eq!(format_duration(3e-9), "3.00 ns");
/// assert_eq!(format_duration(f64::NAN), "-");
/// ```
pub fn format_duration(seconds: f64) -> String {
    if !(seconds.is_finite() && seconds >= 0.0) {
        return "-".into();
    }
    // Three significant digits of v (1 <= v < 1000 after rounding).
    let sig3 = |v: f64| {
        if v >= 99.95 {
            format!("{v:.0}")
        } else if v >= 9.995 {
            format!("{v:.1}")
        } else {
            format!("{v:.2}")
        }
    };
    // A unit is used while the value rounds below 1000 of it.
    if seconds < 999.5e-9 {
        format!("{} ns", sig3(seconds * 1e9))
    } else if seconds < 999.5e-6 {
        format!("{} µs", sig3(seconds * 1e6))
    } else if seconds < 0.9995 {
        format!("{} ms", sig3(seconds * 1e3))
    } else if seconds < 59.5 {
        format!("{} s", sig3(seconds))
    } else if seconds < 3599.5 {
        let s = seconds.round() as u64;
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        let m = (seconds / 60.0).round() as u64;
        format!("{} h {:02} min", m / 60, m % 60)
    }
}

/// Write a report as `STEM.json` (serde) and `STEM.md` (Markdown) into `dir`.
pub(crate) fn write_report<T: Serialize>(
    dir: &Path,
    stem: &str,
    report: &T,
    markdown: &str,
) -> Result<(), ToolError> {
    std::fs::create_dir_all(dir).map_err(|e| ToolError::io(dir, e))?;
    let json = serde_json::to_string_pretty(report).map_err(|e| ToolError::io(dir, e.into()))?;
    for (name, text) in [
        (format!("{stem}.json"), json.as_str()),
        (format!("{stem}.md"), markdown),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| ToolError::io(&path, e))?;
    }
    Ok(())
}

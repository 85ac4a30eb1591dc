//! `jko implicit-bias`: the implicit bias of the JKO scheme (Halmos & Hanin). For step sizes η,
//! the errors at the final time T = τ·steps between the exact JKO iterates and (a) the
//! JKO-Flow — the gradient flow of J^η = J − (η/4)∫|∇δJ/δρ|²ρ — and (b) the plain gradient flow
//! of J, with their observed orders (2 and 1). For a Gaussian initial state with entropy and a
//! quadratic potential everything is exact on the Bures–Wasserstein manifold
//! (`jko_flow::gaussian`); error = |Δmean| + ‖ΔS‖_F.

use crate::error::ToolError;
use jko::config::{Config, InitialConfig};
use jko::error::RunError;
use jko_core::Potential;
use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::path::Path;

/// The errors for one step size η.
///
/// ```rust
/// use jko_cli::implicit_bias::ImplicitBiasRow;
///
/// let row: ImplicitBiasRow =
///     serde_json::from_str(r#"{"eta": 0.1, "err_flow": 1e-4, "err_wgf": 1e-2}"#).unwrap();
/// assert_eq!((row.err_resummed, row.order_flow), (None, None));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImplicitBiasRow {
    /// The step size η = τ.
    pub eta: f64,
    /// Error of the JKO-Flow (the J^η flow) against the JKO iterates: O(η²).
    pub err_flow: f64,
    /// Error of the plain gradient flow of J against the JKO iterates: O(η).
    pub err_wgf: f64,
    /// Error of the resummed JKO-Flow −(I + (η/2) Hess J)⁻¹ grad J: O(η²).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub err_resummed: Option<f64>,
    /// Observed order of `err_flow` against the previous row's η (None on the first row).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_flow: Option<f64>,
    /// Observed order of `err_wgf` against the previous row's η (None on the first row).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_wgf: Option<f64>,
}

/// The report of `jko implicit-bias`, written as `implicit_bias.json` (and drawn by `jko plot`
/// as `implicit_bias.png`).
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
/// let table = ImplicitBiasTable { rows: vec![row(0.1), row(0.05)], final_time: Some(1.0), method: None };
/// let dir = tempfile::tempdir()?;
/// table.write(dir.path())?;
/// let text = std::fs::read_to_string(dir.path().join("implicit_bias.json"))?;
/// assert_eq!(serde_json::from_str::<ImplicitBiasTable>(&text)?, table);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImplicitBiasTable {
    /// One row per step size, in the order given.
    pub rows: Vec<ImplicitBiasRow>,
    /// The time T = τ·steps at which the errors are measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_time: Option<f64>,
    /// How the errors were computed, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// The study for a config (Gaussian initial state, entropy + optional quadratic potential):
/// `jko implicit-bias CONFIG --etas ...`. The config's mesh only fixes the dimension (the
/// computation is exact, not on the mesh); its solver is not used; T = `scheme.tau` ·
/// `scheme.steps`.
///
/// # Errors
/// [`ToolError::Unsuited`] for another initial state or energy; [`RunError::Input`] for an η
/// that is not finite and > 0; [`RunError::Solver`] if the reference ODE integration fails.
///
/// ```rust
/// use jko::config::Config;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::from_toml(jko::examples::example("ou-1d").unwrap())?;
/// let table = jko_cli::implicit_bias::implicit_bias(&config, &[0.2, 0.1])?;
/// let r = &table.rows[1];
/// // The JKO-Flow tracks the JKO iterates at second order, the plain flow at first order.
/// assert!(r.err_flow < r.err_wgf);
/// assert!((r.order_flow.unwrap() - 2.0).abs() < 0.3);
/// assert!((r.order_wgf.unwrap() - 1.0).abs() < 0.3);
/// assert!(table.markdown().starts_with("| η |"));
/// # Ok(())
/// # }
/// ```
pub fn implicit_bias(config: &Config, etas: &[f64]) -> Result<ImplicitBiasTable, ToolError> {
    let e = &config.energy;
    let InitialConfig::Gaussian { mean, std, .. } = &config.initial else {
        return Err(ToolError::Unsuited {
            tool: "implicit-bias",
            what: "a Gaussian initial state (the exact Bures-Wasserstein path); \
                   mesh studies: solvers/flow/examples/quantile_bias.rs"
                .into(),
        });
    };
    let energy = e.build(&config.mesh.build(Path::new("."))?, Path::new("."))?;
    let beta = energy.entropy.ok_or_else(|| ToolError::Unsuited {
        tool: "implicit-bias",
        what: "[energy] entropy".into(),
    })?;
    if energy.porous.is_some() || energy.interaction.is_some() || energy.max_density.is_some() {
        return Err(ToolError::Unsuited {
            tool: "implicit-bias",
            what: "entropy + a quadratic potential only (Gaussian closed forms)".into(),
        });
    }
    let d = mean.len();
    let ou = match &energy.potential {
        None => OrnsteinUhlenbeck::heat(beta, d),
        Some(Potential::Quadratic { center, stiffness }) => OrnsteinUhlenbeck {
            beta,
            stiffness: *stiffness,
            center: center.clone(),
        },
        Some(_) => {
            return Err(ToolError::Unsuited {
                tool: "implicit-bias",
                what: "a quadratic potential (or none)".into(),
            });
        }
    };
    if let Some(eta) = etas.iter().find(|e| !(e.is_finite() && **e > 0.0)) {
        return Err(RunError::from(jko_core::InputError::parameter(
            "etas",
            eta,
            "must be finite and > 0",
        ))
        .into());
    }
    let t_end = config.scheme.tau * config.scheme.steps as f64;
    let flow = jko_flow::gaussian::GaussianFlow::from(&ou);
    let raw = flow
        .implicit_bias_table(&Gaussian::diagonal(mean, std), etas, t_end, 1e-12)
        .map_err(|e| RunError::Solver(e.into()))?;
    let mut rows: Vec<ImplicitBiasRow> = Vec::new();
    for r in raw {
        let order = |a: f64, b: f64, ea: f64| (a / b).ln() / (ea / r.eta).ln();
        let (order_flow, order_wgf) = match rows.last() {
            Some(p) => (
                Some(order(p.err_flow, r.err_flow, p.eta)),
                Some(order(p.err_wgf, r.err_wgf, p.eta)),
            ),
            None => (None, None),
        };
        rows.push(ImplicitBiasRow {
            eta: r.eta,
            err_flow: r.err_flow,
            err_wgf: r.err_wgf,
            err_resummed: Some(r.err_resummed),
            order_flow,
            order_wgf,
        });
    }
    Ok(ImplicitBiasTable {
        rows,
        final_time: Some(t_end),
        method: Some("exact Bures-Wasserstein: JKO iterates (closed form), J^eta flow and plain flow (ODE, tol 1e-12); error |dm| + |dS|_F".into()),
    })
}

impl ImplicitBiasTable {
    /// The table in Markdown (what `jko implicit-bias` prints and writes as `implicit_bias.md`).
    ///
    /// ```rust
    /// use jko_cli::implicit_bias::{ImplicitBiasRow, ImplicitBiasTable};
    ///
    /// let row = ImplicitBiasRow {
    ///     eta: 0.1,
    ///     err_flow: 1e-3,
    ///     err_wgf: 1e-2,
    ///     err_resummed: None,
    ///     order_flow: None,
    ///     order_wgf: None,
    /// };
    /// let table = ImplicitBiasTable { rows: vec![row], final_time: None, method: None };
    /// assert!(table.markdown().contains("| 0.1 | 1.000e-3 | - | - | 1.000e-2 | - |"));
    /// ```
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "| η | JKO-Flow error | order | resummed error | plain flow error | order |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|");
        let o = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.2}"));
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} | {:.3e} | {} | {} | {:.3e} | {} |",
                r.eta,
                r.err_flow,
                o(r.order_flow),
                r.err_resummed.map_or("-".into(), |e| format!("{e:.3e}")),
                r.err_wgf,
                o(r.order_wgf)
            );
        }
        s
    }

    /// Write `implicit_bias.json` and `implicit_bias.md` into `dir` (created if needed).
    ///
    /// # Errors
    /// [`ToolError::Io`] when `dir` or a file cannot be written.
    ///
    /// ```rust
    /// use jko_cli::implicit_bias::ImplicitBiasTable;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let table = ImplicitBiasTable { rows: vec![], final_time: None, method: None };
    /// let dir = tempfile::tempdir()?;
    /// table.write(&dir.path().join("study"))?;
    /// assert!(dir.path().join("study/implicit_bias.md").exists());
    /// # Ok(())
    /// # }
    /// ```
    pub fn write(&self, dir: &Path) -> Result<(), ToolError> {
        crate::write_report(dir, "implicit_bias", self, &self.markdown())
    }
}

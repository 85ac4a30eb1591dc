//! `jko implicit-bias`: the implicit bias of the JKO scheme (Halmos & Hanin). For step sizes η,
//! the errors at the final time T = τ·steps between the exact JKO iterates and (a) the
//! JKO-Flow — the gradient flow of J^η = J − (η/4)∫|∇δJ/δρ|²ρ — and (b) the plain gradient flow
//! of J, with their observed orders (2 and 1). For a Gaussian initial state with entropy and a
//! quadratic potential everything is exact on the Bures–Wasserstein manifold
//! (`jko_flow::gaussian`); error = |Δmean| + ‖ΔS‖_F. Any other problem on a 1D mesh (other
//! potentials, porous media, interaction, a non-Gaussian start) is a mesh study: the `flow`
//! backend (resummed J^η flow) and the plain gradient flow on the config's mesh against the
//! exact-W² JKO iterates of `quantile` on the same mesh, L1 errors.

use crate::error::ToolError;
use jko::backend::BackendConfig;
use jko::config::{Config, InitialConfig};
use jko::error::RunError;
use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
use jko_core::{JkoStep, Potential, StepSolver};
use ndarray::Array1;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
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
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImplicitBiasRow {
    /// The step size η = τ.
    pub eta: f64,
    /// Error of the JKO-Flow (the J^η flow) against the JKO iterates: O(η²).
    pub err_flow: f64,
    /// Error of the plain gradient flow of J against the JKO iterates: O(η).
    pub err_wgf: f64,
    /// Error of the resummed JKO-Flow −(I + (η/2) Hess J)⁻¹ grad J: O(η²).
    pub err_resummed: Option<f64>,
    /// Observed order of `err_flow` against the previous row's η (None on the first row).
    pub order_flow: Option<f64>,
    /// Observed order of `err_wgf` against the previous row's η (None on the first row).
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
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImplicitBiasTable {
    /// One row per step size, in the order given.
    pub rows: Vec<ImplicitBiasRow>,
    /// The time T = τ·steps at which the errors are measured.
    pub final_time: Option<f64>,
    /// How the errors were computed, in words.
    pub method: Option<String>,
}

/// The study for a config: `jko implicit-bias CONFIG --etas ...`; its solver is not used;
/// T = `scheme.tau` · `scheme.steps`.
/// - Gaussian initial state, entropy + optional quadratic potential: exact on the
///   Bures–Wasserstein manifold; the config's mesh only fixes the dimension.
/// - Anything else on a 1D mesh: `flow` (resummed, rtol 0.05 η³) and the plain gradient flow
///   on the mesh against `quantile`'s exact-W² JKO iterates (16 nodes per cell), L1 errors
///   at T. These include the spatial discretisation error, which does not fall with η: refine
///   the mesh until it is below the errors of interest.
///
/// # Errors
/// [`ToolError::Unsuited`] for a mesh study on a 2D/3D mesh; [`RunError::Input`] for an η
/// that is not finite and > 0; [`RunError::Solver`] if the reference ODE integration or a
/// step fails (a congestion bound, which `flow` refuses, or an energy `quantile` does not
/// treat).
///
/// ```rust
/// use jko::config::Config;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Quartic potential (no closed form), 2000 cells, T = 0.4.
/// let mut config = Config::from_toml(jko::examples::example("quartic-1d").unwrap())?;
/// config.mesh.cells = vec![2000];
/// config.scheme.steps = 8;
/// let table = jko_cli::implicit_bias::implicit_bias(&config, &[0.2, 0.1])?;
/// let r = &table.rows[1];
/// assert!(r.err_flow < r.err_wgf / 5.0, "{r:?}");
/// assert!(r.order_flow.unwrap() > 1.5 && (r.order_wgf.unwrap() - 1.0).abs() < 0.3, "{r:?}");
/// # Ok(())
/// # }
/// ```
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
    if let Some(eta) = etas.iter().find(|e| !(e.is_finite() && **e > 0.0)) {
        return Err(RunError::from(jko_core::InputError::parameter(
            "etas",
            eta,
            "must be finite and > 0",
        ))
        .into());
    }
    let t_end = config.scheme.tau * config.scheme.steps as f64;
    let energy = e.build(&config.mesh.build(Path::new("."))?, Path::new("."))?;
    let gaussian_ou = match (&config.initial, energy.entropy, &energy.potential) {
        _ if energy.porous.is_some()
            || energy.interaction.is_some()
            || energy.max_density.is_some() =>
        {
            None
        }
        (InitialConfig::Gaussian { mean, std, .. }, Some(beta), None) => {
            Some((mean, std, OrnsteinUhlenbeck::heat(beta, mean.len())))
        }
        (
            InitialConfig::Gaussian { mean, std, .. },
            Some(beta),
            Some(Potential::Quadratic { center, stiffness }),
        ) => Some((
            mean,
            std,
            OrnsteinUhlenbeck {
                beta,
                stiffness: *stiffness,
                center: center.clone(),
            },
        )),
        _ => None,
    };
    let Some((mean, std, ou)) = gaussian_ou else {
        return mesh_study(config, etas, t_end);
    };
    let flow = jko_flow::gaussian::GaussianFlow::from(&ou);
    let raw = flow
        .implicit_bias_table(&Gaussian::diagonal(mean, std), etas, t_end, 1e-12)
        .map_err(|e| RunError::Solver(e.into()))?;
    let mut rows: Vec<ImplicitBiasRow> = Vec::new();
    for r in raw {
        rows.push(row_with_orders(
            rows.last(),
            r.eta,
            r.err_flow,
            r.err_wgf,
            Some(r.err_resummed),
        ));
    }
    Ok(ImplicitBiasTable {
        rows,
        final_time: Some(t_end),
        method: Some("exact Bures-Wasserstein: JKO iterates (closed form), J^eta flow and plain flow (ODE, tol 1e-12); error |dm| + |dS|_F".into()),
    })
}

/// Quantile nodes per cell of the reference: the exact-W² JKO iterates are computed with
/// 16 quantile nodes per cell (at 8 per cell the reference's own discretisation floored the
/// OU/quartic errors near 5e-5 at 4000 cells; docs/notes/issue-15.md, round 4).
const NODES_PER_CELL: usize = 16;

/// The mesh study: on the config's 1D mesh, for each η = τ, `flow` (the resummed J^η flow,
/// rtol 0.05 η³ so that the integration error stays below the surrogate's O(η²)) and the plain
/// gradient flow (`flow` with `variant = "plain"`) run to T, and their L1 distances
/// Σ_K |K| |ρ_K − ρ_ref,K| to the exact-W² JKO iterates of `quantile` on the same mesh.
fn mesh_study(config: &Config, etas: &[f64], t_end: f64) -> Result<ImplicitBiasTable, ToolError> {
    let problem = config.build(Path::new("."))?;
    let mesh = &problem.mesh;
    if mesh.dim() != 1 {
        return Err(ToolError::Unsuited {
            tool: "implicit-bias",
            what: "a Gaussian initial state with entropy and a quadratic potential (exact \
                   Bures-Wasserstein paths) or a 1D mesh (exact-W² JKO iterates by quantile)"
                .into(),
        });
    }
    let build = |value: serde_json::Value| -> Result<Box<dyn StepSolver>, ToolError> {
        let backend: BackendConfig =
            serde_json::from_value(value).map_err(|e| ToolError::Option {
                name: "implicit-bias backend".into(),
                reason: e.to_string(),
            })?;
        Ok(backend.build()?)
    };
    let reference = build(serde_json::json!({
        "kind": "quantile",
        "nodes": NODES_PER_CELL * mesh.n_cells() + 1,
    }))?;
    let run = |solver: &dyn StepSolver, eta: f64| -> Result<Array1<f64>, ToolError> {
        let mut rho = problem.initial.clone();
        for _ in 0..(t_end / eta).round().max(1.0) as usize {
            let frozen = problem.energy.freeze(mesh, &rho).map_err(RunError::from)?;
            let step = JkoStep::new(mesh, &rho, eta, &frozen).map_err(RunError::from)?;
            rho = solver.solve(&step, None).map_err(RunError::Solver)?.rho;
        }
        Ok(rho)
    };
    let l1 = |a: &Array1<f64>, b: &Array1<f64>| -> f64 {
        mesh.volumes()
            .iter()
            .zip(a.iter().zip(b))
            .map(|(v, (x, y))| v * (x - y).abs())
            .sum()
    };
    let mut rows: Vec<ImplicitBiasRow> = Vec::new();
    for &eta in etas {
        let exact = run(reference.as_ref(), eta)?;
        let flow = build(serde_json::json!({ "kind": "flow", "rtol": 0.05 * eta.powi(3) }))?;
        let plain = build(serde_json::json!({ "kind": "flow", "variant": "plain" }))?;
        let err_flow = l1(&run(flow.as_ref(), eta)?, &exact);
        let err_wgf = l1(&run(plain.as_ref(), eta)?, &exact);
        rows.push(row_with_orders(rows.last(), eta, err_flow, err_wgf, None));
    }
    Ok(ImplicitBiasTable {
        rows,
        final_time: Some(t_end),
        method: Some(format!(
            "mesh ({} cells): flow (resummed J^eta flow, rtol 0.05 eta^3) and the plain gradient flow \
             against the exact-W2 JKO iterates of quantile ({} nodes) on the same mesh; error = L1 \
             sum |K| |rho - rho_ref| at T (includes the spatial discretisation error, which does not \
             fall with eta)",
            mesh.n_cells(),
            NODES_PER_CELL * mesh.n_cells() + 1
        )),
    })
}

/// A table row, with the observed orders against the previous row (None on the first).
fn row_with_orders(
    prev: Option<&ImplicitBiasRow>,
    eta: f64,
    err_flow: f64,
    err_wgf: f64,
    err_resummed: Option<f64>,
) -> ImplicitBiasRow {
    let order = |a: f64, b: f64, ea: f64| (a / b).ln() / (ea / eta).ln();
    ImplicitBiasRow {
        eta,
        err_flow,
        err_wgf,
        err_resummed,
        order_flow: prev.map(|p| order(p.err_flow, err_flow, p.eta)),
        order_wgf: prev.map(|p| order(p.err_wgf, err_wgf, p.eta)),
    }
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

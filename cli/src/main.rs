//! The `jko` command line: run configs, print built-in examples, list backends.

use clap::{Parser, Subcommand};
use jko::backend::{BACKENDS, supported_meshes, treated_terms};
use jko::config::Config;
use jko::driver::{Observer, StepRecord};
use jko::error::RunError;
use jko::{RunOptions, examples};
use jko_cli::error::ToolError;
use jko_cli::format_duration;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Parser)]
#[command(
    name = "jko",
    version,
    about = "Wasserstein gradient flows by the JKO scheme on meshes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a config: one JKO step after another, each written to DIR as it finishes.
    Run {
        /// The TOML config, or a built-in example's name (`jko example` lists them).
        config: PathBuf,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Backend to use instead of the config's (with its default parameters).
        #[arg(long)]
        solver: Option<String>,
        /// Time step instead of the config's.
        #[arg(long)]
        tau: Option<f64>,
        /// Number of steps instead of the config's.
        #[arg(long)]
        steps: Option<usize>,
        /// Continue the run in DIR from its last finished step.
        #[arg(long)]
        resume: bool,
        /// Overwrite a previous run in DIR.
        #[arg(long, conflicts_with = "resume")]
        force: bool,
        /// Output formats, comma separated: npy (always written) and vtk (.vti per step on grids, .vtu on mesh files, + .pvd).
        #[arg(long, default_value = "npy", value_delimiter = ',')]
        format: Vec<String>,
        /// Print nothing but errors.
        #[arg(long, short, conflicts_with = "verbose")]
        quiet: bool,
        /// Print every step with the solver's notes and surrogate checks.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Refinement study: run the config at successive refinements, report errors and orders.
    Convergence {
        /// The TOML config, or a built-in example's name (`jko example` lists them).
        config: PathBuf,
        /// What to refine, comma separated: h, tau, levels (each run halves h / τ, doubles levels).
        #[arg(long, default_value = "h,tau")]
        refine: String,
        /// Number of runs in the sequence.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Backend to use instead of the config's.
        #[arg(long)]
        solver: Option<String>,
        /// Where to write convergence.json and convergence.md.
        #[arg(long)]
        out: PathBuf,
    },
    /// Compare every backend on a suite of problems (built in: quick, standard; or a TOML file).
    Compare {
        /// The suite: `quick`, `standard`, or a suite TOML file.
        suite: String,
        /// Where to write compare.json, compare.md and the runs.
        #[arg(long)]
        out: PathBuf,
        /// Robustness check: exit with status 1 if a run fails that the suite does not list in
        /// `expected_failures` (a backend's refusal of a term or mesh is not a failure).
        #[arg(long)]
        check: bool,
    },
    /// Plot a run directory (densities with the exact solution when known, energy and
    /// dissipation, implicit_bias.json, convergence.json) as PNG files, and the run as
    /// animation.gif.
    Plot {
        /// The directory to plot (a run, a convergence study, an implicit-bias study).
        dir: PathBuf,
        /// Where to write the figures (default: DIR).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Trajectories from random initial densities, for learned JKO operators: NPY arrays
    /// written row by row as samples finish, failures recorded in the manifest, resumable.
    Dataset {
        /// The dataset spec TOML.
        spec: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// i/n: run the samples whose index is i modulo n (a cluster job array's slice).
        #[arg(long, default_value = "0/1")]
        shard: jko_cli::dataset::Shard,
        /// Samples run at the same time, one solver each (default: RAYON_NUM_THREADS or the
        /// number of cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Finish a started shard (run only the samples not settled yet).
        #[arg(long, conflicts_with_all = ["force", "retry_failed"])]
        resume: bool,
        /// Start the shard over, deleting its rows.
        #[arg(long, conflicts_with = "retry_failed")]
        force: bool,
        /// Run the failed samples of a finished shard again (with --solver: another backend).
        #[arg(long)]
        retry_failed: bool,
        /// Backend for --retry-failed (with its default parameters; default: the spec's).
        #[arg(long, requires = "retry_failed")]
        solver: Option<String>,
        /// Make this sample fail at its first step (fault injection, for testing the failure path).
        #[arg(long, hide = true)]
        fail_sample: Vec<usize>,
        /// Print nothing but errors.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Merge a dataset's finished shards (every manifest_*.json in DIR) into one Zarr v2
    /// store: arrays inputs, trajectories, energies, ok, chunked along the samples.
    DatasetZarr {
        /// The dataset's output directory (the shards' --out).
        dir: PathBuf,
        /// The store to create (a directory, e.g. dataset.zarr; must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Score a candidate JKO step: J(ρ̂) = W²(ρ̂, ρⁿ)/(2τ) + F(ρ̂) against the true minimiser's
    /// value (suboptimality gap, distances to ρ*); W² exact in 1D, multi-level conic in 2D/3D.
    Score {
        /// The run config giving mesh, energy and τ ([initial] is not used).
        config: PathBuf,
        /// ρⁿ, cell values (.npy, grid-shaped or flat).
        rho_prev: PathBuf,
        /// The candidate ρ̂ for ρⁿ⁺¹ (.npy, same shape).
        rho_candidate: PathBuf,
        /// Time levels of the 2D/3D W² discretisation.
        #[arg(long, default_value_t = 4)]
        levels: usize,
        /// Rescale a candidate whose mass differs from ρⁿ's (the defect is reported).
        #[arg(long)]
        normalize: bool,
        /// Write ρ* here (.npy, grid-shaped).
        #[arg(long)]
        minimiser: Option<PathBuf>,
        /// Print the score as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The Wasserstein distance W2 (not squared) between two densities of equal mass on the
    /// config's mesh, printed on the last line; exact on 1D meshes (quantiles), by the back-and-forth
    /// method on 2D/3D grids without masks.
    Distance {
        /// The run config giving the mesh (its other sections are not used).
        config: PathBuf,
        /// The first density, cell values (.npy, grid-shaped or flat).
        a: PathBuf,
        /// The second density (.npy, same shape and mass).
        b: PathBuf,
    },
    /// Implicit bias of the JKO scheme: JKO iterates vs JKO-Flow vs the plain gradient flow
    /// over a range of step sizes η (Gaussian initial state with a quadratic potential).
    ImplicitBias {
        /// The TOML config, or a built-in example's name.
        config: PathBuf,
        /// Step sizes, comma separated (default 0.2, 0.1, 0.05, 0.025, 0.0125, 0.00625).
        #[arg(long, value_delimiter = ',')]
        etas: Option<Vec<f64>>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a built-in example config (without NAME: list them).
    Example {
        /// The example's name.
        name: Option<String>,
    },
    /// List the backends and the energy terms each one treats.
    Solvers,
}

static STOP: AtomicBool = AtomicBool::new(false);

fn main() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Each cause once: our errors already show their source in their own message.
            let mut said = e.to_string();
            eprintln!("error: {said}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                let text = s.to_string();
                if !said.contains(&text) {
                    eprintln!("  caused by: {text}");
                    said.push_str(&text);
                }
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}

/// Progress on stderr: on a terminal, one self-updating line (step, residual, ETA); otherwise
/// (a log file, CI) one line per finished step. `--verbose` adds each step's notes.
struct Progress {
    steps: usize,
    tty: bool,
    verbose: bool,
    start: std::time::Instant,
    first: Option<usize>,
}

impl Observer for Progress {
    fn step(&mut self, r: &StepRecord, _: &jko::core::StepOutput) -> Result<(), RunError> {
        let first = *self.first.get_or_insert(r.step);
        let done = r.step + 1 - first;
        let left = self.steps.saturating_sub(r.step);
        let eta = self.start.elapsed().as_secs_f64() / done as f64 * left as f64;
        if self.tty && !self.verbose {
            eprint!(
                "\rstep {}/{}  t = {:.4}  F = {:+.6e}  residual {:.1e}  {} it  ETA {}   ",
                r.step,
                self.steps,
                r.t,
                r.energy,
                r.primal_residual,
                r.iterations,
                format_duration(eta)
            );
            if left == 0 {
                eprintln!();
            }
        } else {
            eprintln!(
                "step {:>5}/{}  t = {:<9.4}  F = {:<+13.6e}  kinetic = {:<10.3e}  mass = {:<12.9e}  {:?} in {} it, {}",
                r.step,
                self.steps,
                r.t,
                r.energy,
                r.kinetic,
                r.mass,
                r.status,
                r.iterations,
                format_duration(r.wall_time)
            );
        }
        if self.verbose {
            for n in &r.notes {
                eprintln!("    {n}");
            }
            if let Some(c) = &r.check {
                eprintln!(
                    "    check against {}: L1 {:.3e}, W2 {:.3e}, fell back: {}",
                    c.proximal_solver, c.l1, c.w2, c.fell_back
                );
            }
        }
        Ok(())
    }
}

/// The end-of-run line: steps, times, the slowest step, reduced-tolerance and fallback counts,
/// and the final mass with its drift from ρ⁰'s (the mass of the final density itself, so a run
/// of zero steps reports ρ⁰'s mass).
fn summary_line(cfg: &Config, result: &jko::RunResult, out: &Path) -> String {
    let records = &result.records;
    let mass = result.mesh.mass(&result.rho);
    let mut line = format!(
        "done: {} steps with the {} backend",
        records.len(),
        cfg.solver.name()
    );
    if !records.is_empty() {
        let total: f64 = records.iter().map(|r| r.wall_time).sum();
        let slowest = records
            .iter()
            .max_by(|a, b| a.wall_time.total_cmp(&b.wall_time))
            .map_or((0, 0.0), |r| (r.step, r.wall_time));
        let almost = records
            .iter()
            .filter(|r| r.status == jko::core::StepStatus::AlmostSolved)
            .count();
        let fell_back = records
            .iter()
            .filter(|r| r.check.as_ref().is_some_and(|c| c.fell_back))
            .count();
        line.push_str(&format!(
            " in {} ({}/step, slowest: step {} in {}); {almost} AlmostSolved, {fell_back} fell back",
            format_duration(total),
            format_duration(total / records.len() as f64),
            slowest.0,
            format_duration(slowest.1)
        ));
    }
    // Drift against ρ⁰'s mass as the run directory recorded it (also after a resume).
    let initial = jko::output::Summary::read(out)
        .ok()
        .map(|s| s.header.initial_mass);
    match initial {
        Some(m0) if m0 > 0.0 => line.push_str(&format!(
            "; final mass {mass:.12e} (relative drift {:.1e} from the initial density)",
            (mass - m0).abs() / m0
        )),
        _ => line.push_str(&format!("; final mass {mass:.12e}")),
    }
    line.push_str(&format!("; output in {}", out.display()));
    line
}

/// The config at `path` with the directory its relative paths are relative to; a path that is
/// not a file but a built-in example's name (`jko run ou-1d`) loads that example.
fn load_config(path: &Path) -> Result<(Config, PathBuf), ToolError> {
    if !path.exists() {
        if let Some(text) = path.to_str().and_then(examples::example) {
            return Ok((Config::from_toml(text)?, PathBuf::from(".")));
        }
        let known: Vec<&str> = examples::EXAMPLES.iter().map(|e| e.0).collect();
        return Err(ToolError::option(
            "CONFIG",
            format!(
                "{}: no such file, nor a built-in example (known: {})",
                path.display(),
                known.join(", ")
            ),
        ));
    }
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    Ok((Config::from_file(path)?, base))
}

fn execute(command: Command) -> Result<(), ToolError> {
    match command {
        Command::Run {
            config,
            out,
            solver,
            tau,
            steps,
            resume,
            force,
            format,
            quiet,
            verbose,
        } => {
            let mut vtk = false;
            for f in &format {
                match f.as_str() {
                    "npy" => {}
                    "vtk" => vtk = true,
                    other => {
                        return Err(ToolError::option(
                            "--format",
                            format!("unknown output format `{other}`; known: npy, vtk"),
                        ));
                    }
                }
            }
            let (mut cfg, base) = load_config(&config)?;
            cfg.solver = cfg.solver.overridden(solver.as_deref())?;
            if let Some(t) = tau {
                cfg.scheme.tau = t;
            }
            if let Some(n) = steps {
                cfg.scheme.steps = n;
            }
            // Ctrl-C: finish the current step, save it, stop.
            let _ = ctrlc::set_handler(|| {
                if STOP.swap(true, Ordering::SeqCst) {
                    std::process::exit(130);
                }
                eprintln!(
                    "interrupt: stopping after the current step (press Ctrl-C again to abort)"
                );
            });
            let mut progress = Progress {
                steps: cfg.scheme.steps,
                tty: std::io::IsTerminal::is_terminal(&std::io::stderr()),
                verbose,
                start: std::time::Instant::now(),
                first: None,
            };
            let mut extra: Vec<&mut dyn Observer> = Vec::new();
            if !quiet {
                extra.push(&mut progress);
            }
            let opts = RunOptions {
                out: Some(out.clone()),
                resume,
                force,
                vtk,
            };
            let result = jko::run(&cfg, &base, &opts, &mut extra, &|| {
                STOP.load(Ordering::SeqCst)
            })?;
            if !quiet {
                eprintln!("{}", summary_line(&cfg, &result, &out));
            }
            Ok(())
        }
        Command::Convergence {
            config,
            refine,
            runs,
            solver,
            out,
        } => {
            let (mut cfg, base) = load_config(&config)?;
            cfg.solver = cfg.solver.overridden(solver.as_deref())?;
            let refine = jko_cli::convergence::Refine::parse(&refine)?;
            let report = jko_cli::convergence::convergence(&cfg, &base, refine, runs, &mut |r| {
                eprintln!(
                    "cells {:?}  tau {:.4e}  error {:.3e}  order {}  ({})",
                    r.cells,
                    r.tau,
                    r.error,
                    r.order.map_or("-".into(), |o| format!("{o:.2}")),
                    format_duration(r.wall_time)
                )
            })?;
            report.write(&out)?;
            print!("{}", report.markdown());
            Ok(())
        }
        Command::Compare { suite, out, check } => {
            let exe = std::env::current_exe().map_err(|e| ToolError::io(Path::new("jko"), e))?;
            let report = jko_cli::compare::compare(&suite, &exe, &out.join("runs"), &mut |r| {
                eprintln!(
                    "{:<12} {:<10} {:<9} {}",
                    r.problem,
                    format!("{:?}", r.cells),
                    r.backend,
                    match (r.time_per_step, r.error) {
                        (Some(t), Some(e)) => format!("{}/step, error {e:.2e}", format_duration(t)),
                        (Some(t), None) => format!("{}/step", format_duration(t)),
                        _ => r.status.clone(),
                    }
                )
            })?;
            report.write(&out)?;
            print!("{}", report.markdown());
            if !check {
                return Ok(());
            }
            let outcome = report.check();
            for (r, issue) in &outcome.expected {
                println!(
                    "expected failure (issue {issue}): {} {:?} {}",
                    r.problem, r.cells, r.backend
                );
            }
            for e in &outcome.fixed {
                println!(
                    "no longer fails: {} {} (issue {}); delete it from the suite's expected_failures",
                    e.problem, e.backend, e.issue
                );
            }
            let runs = report
                .rows
                .iter()
                .filter(|r| !r.status.starts_with("unsupported"))
                .count();
            println!(
                "robustness: {} passed, {} failed ({} expected failures, {} refused as outside the domain)",
                runs - outcome.unexpected.len() - outcome.expected.len(),
                outcome.unexpected.len(),
                outcome.expected.len(),
                report.rows.len() - runs
            );
            match outcome.unexpected.len() {
                0 => Ok(()),
                n => Err(ToolError::Check {
                    failures: n,
                    list: outcome
                        .unexpected
                        .iter()
                        .map(|r| {
                            format!(
                                "\n  {} {:?} {}: {}",
                                r.problem, r.cells, r.backend, r.status
                            )
                        })
                        .collect(),
                }),
            }
        }
        Command::Plot { dir, out } => {
            for p in jko_cli::plot::plot_run(&dir, out.as_deref().unwrap_or(&dir))? {
                println!("{}", p.display());
            }
            Ok(())
        }
        Command::Dataset {
            spec,
            out,
            shard,
            threads,
            resume,
            force,
            retry_failed,
            solver,
            fail_sample,
            quiet,
        } => {
            let s = jko_cli::dataset::DatasetSpec::from_file(&spec)?;
            let retry = if retry_failed {
                Some(s.base.solver.clone().overridden(solver.as_deref())?)
            } else {
                None
            };
            // Ctrl-C: finish the samples running now, stop; --resume finishes the shard.
            let _ = ctrlc::set_handler(|| {
                if STOP.swap(true, Ordering::SeqCst) {
                    std::process::exit(130);
                }
                eprintln!(
                    "interrupt: stopping after the samples running now (--resume finishes the shard; Ctrl-C again aborts)"
                );
            });
            let opts = jko_cli::dataset::DatasetOptions {
                threads,
                resume,
                force,
                retry,
                fail_samples: fail_sample,
                stop: Some(&STOP),
            };
            let start = std::time::Instant::now();
            let m = jko_cli::dataset::run_dataset_with(
                &s,
                spec.parent().unwrap_or(Path::new(".")),
                &out,
                shard,
                &opts,
                &|r, p| {
                    if quiet {
                        return;
                    }
                    let status = match &r.error {
                        Some(e) => format!("FAILED: {e}"),
                        None => "ok".into(),
                    };
                    eprintln!(
                        "sample {:>6} ({}/{}, {} failed)  {}  {}",
                        r.index,
                        p.settled,
                        p.total,
                        p.failed,
                        format_duration(p.wall_time),
                        status
                    );
                },
            )?;
            if !quiet {
                println!(
                    "shard {}: {} samples ({} failed) with the {} backend in {} -> {}",
                    m.shard,
                    m.samples.len(),
                    m.failed,
                    m.solver,
                    format_duration(start.elapsed().as_secs_f64()),
                    out.display()
                );
                if let Some(q) = &m.quality {
                    println!(
                        "quality ({}): {} steps of samples {:?}: max gap {:.3e}, max W2 to exact step {:.3e}, max relative L1 {:.3e}",
                        q.reference,
                        q.steps,
                        q.samples,
                        q.max_gap,
                        q.max_w2_to_exact,
                        q.max_relative_l1
                    );
                }
                for r in m.samples.iter().filter(|r| r.quality_error.is_some()) {
                    println!(
                        "quality of sample {} not measured: {}",
                        r.index,
                        r.quality_error.as_deref().unwrap_or_default()
                    );
                }
            }
            Ok(())
        }
        Command::DatasetZarr { dir, out } => {
            let s = jko_cli::dataset::export_zarr(&dir, &out)?;
            println!(
                "{} samples ({} failed) of {} shards -> {} ({} chunks of {} samples per array)",
                s.samples,
                s.failed,
                s.shards,
                out.display(),
                s.chunks,
                s.rows_per_chunk
            );
            Ok(())
        }
        Command::Score {
            config,
            rho_prev,
            rho_candidate,
            levels,
            normalize,
            minimiser,
            json,
        } => {
            let opts = jko::score::ScoreOptions { levels, normalize };
            let (s, grid_shape) =
                jko_cli::score::score_files(&config, &rho_prev, &rho_candidate, &opts)?;
            if let Some(path) = &minimiser {
                jko_cli::score::write_minimiser(path, &s, &grid_shape)?;
            }
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&s)
                        .map_err(|e| ToolError::option("--json", e.to_string()))?
                );
            } else {
                print!("{}", jko_cli::score::describe(&s));
            }
            Ok(())
        }
        Command::Distance { config, a, b } => {
            let w = jko_cli::score::distance_files(&config, &a, &b)?;
            println!("W2 = {w:.15e}");
            Ok(())
        }
        Command::ImplicitBias { config, etas, out } => {
            let (cfg, _) = load_config(&config)?;
            let etas = etas.unwrap_or_else(|| vec![0.2, 0.1, 0.05, 0.025, 0.0125, 0.00625]);
            let table = jko_cli::implicit_bias::implicit_bias(&cfg, &etas)?;
            table.write(&out)?;
            print!("{}", table.markdown());
            Ok(())
        }
        Command::Example { name: None } => {
            for (name, about, _) in examples::EXAMPLES {
                println!("{name:<12} {about}");
            }
            Ok(())
        }
        Command::Example { name: Some(name) } => match examples::example(&name) {
            Some(text) => {
                print!("{text}");
                Ok(())
            }
            None => Err(ToolError::option(
                "example",
                format!(
                    "no built-in example `{name}`; known: {}",
                    examples::EXAMPLES
                        .iter()
                        .map(|e| e.0)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        },
        Command::Solvers => {
            for b in BACKENDS {
                let solver = b.defaults().build()?;
                println!("{:<10} {}", b.name, b.summary);
                println!(
                    "{:<10} treats: {}",
                    "",
                    treated_terms(solver.as_ref()).join(", ")
                );
                println!(
                    "{:<10} meshes: {}",
                    "",
                    supported_meshes(solver.as_ref()).join(", ")
                );
                let params: Vec<String> = b
                    .parameters()
                    .iter()
                    .map(|(k, v)| format!("{k} = {v}"))
                    .collect();
                println!("{:<10} parameters: {}", "", params.join(", "));
            }
            println!(
                "\nInteraction energies are treated semi-implicitly by every backend (W * rho^n frozen in the step)."
            );
            Ok(())
        }
    }
}

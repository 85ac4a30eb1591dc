//! Datasets of JKO trajectories for learned solvers (`jko dataset SPEC.toml --out DIR
//! [--shard i/n]`): many random initial densities, each marched `scheme.steps` steps with
//! one backend, written as NPY arrays a Python loader reads directly.
//!
//! ```toml
//! samples = 8                 # samples 0..8
//! seed = 2024                 # with the sample index, fixes the sample's initial density
//! # mass = 1.0                # mass of every initial density
//!
//! [base]                      # a run config without [initial] (same tables and keys)
//! mesh = { cells = [64], lower = [-5.0], upper = [5.0] }
//! energy = { entropy = 1.0, potential = { kind = "quadratic" } }
//! scheme = { tau = 0.1, steps = 5 }
//! solver = { kind = "conic" }
//!
//! [[initial]]                 # one or more families; a sample draws one ∝ weight
//! kind = "gaussian_mixture"
//! components = [1, 3]         # number of components, uniform in [1, 3]
//! mean = [-2.5, 2.5]          # every mean coordinate uniform in this range (default: the
//!                             # middle 60 % of the box, per axis)
//! std = [0.3, 1.0]            # every standard deviation uniform in this range
//! # weight = 1.0
//!
//! [[initial]]
//! kind = "smooth_field"       # ρ ∝ exp(f), f a sum of random cosine modes
//! modes = 4
//! max_wavenumber = 3
//! amplitude = 1.0
//! ```
//!
//! **Families.** A Gaussian mixture has K components (K uniform in `components`), weights
//! uniform on the simplex (normalised exponential draws), means and standard deviations
//! uniform in their ranges, independently per axis; the mixture density is sampled at cell
//! centres. A smooth field is ρ ∝ exp(f) with
//! f(x) = amplitude · Σ_{j<modes} a_j cos(π k_j·ξ + φ_j),  ξ_i = (x_i − lower_i)/(upper_i − lower_i),
//! integer wave vectors k_j ∈ {0..max_wavenumber}^d \ {0}, a_j ~ N(0, 1)/|k_j| (smoother for
//! larger |k|) and phases φ_j uniform in [0, 2π). Every initial density is normalised to
//! `mass` on the active cells.
//!
//! **Randomness.** Sample i's generator is xoshiro256** seeded by SplitMix64 from (seed, i),
//! so a sample depends only on the spec and its index: sharding, the number of threads and
//! the order in which samples run cannot change it.
//!
//! **Shards.** `--shard i/n` runs the samples whose index ≡ i (mod n) (round robin: samples
//! of different cost spread evenly over shards); the default 0/1 runs all. Shard i of n writes
//! `inputs_SHARD.npy` (samples × cells…), `trajectories_SHARD.npy` (samples × (steps+1) ×
//! cells…, row 0 = the input), `energies_SHARD.npy` (samples × (steps+1), F_h(ρⁿ)),
//! `progress_SHARD.jsonl` (one line per settled sample) and, once every sample is settled,
//! `manifest_SHARD.json` (the spec, one record per row: sample index, family, status, backend,
//! error, quality; shapes, times, crate version), with SHARD = `iiiii-of-nnnnn` (e.g.
//! `00001-of-00004`). Arrays are float64, C order, grid-shaped per sample with cells outside
//! the domain 0 (as in run directories). The union of the shards is the unsharded run, byte
//! for byte.
//!
//! **Parallel, streamed, resumable.** Samples run on `--threads` workers (default: rayon's
//! thread count), each with its own solver instance, so no lock inside a backend serialises
//! them. The arrays are allocated at their final shape and each sample's rows are written in
//! place as it finishes (memory: one trajectory per worker, not the dataset), then its line
//! is appended to the progress log. A sample that fails (an inadmissible initial density, a
//! step that does not converge or breaks an invariant) is recorded with its error and NaN
//! rows; the others are kept. `--resume` finishes an interrupted shard (Ctrl-C stops after
//! the running samples) and `--retry-failed [--solver NAME]` reruns the failed samples, with
//! another backend if asked (the row's `backend` says which). A sample depends only on the
//! spec and its index, so neither threads, sharding nor resuming change its bytes.
//!
//! **Zarr.** `jko dataset-zarr DIR --out STORE.zarr` merges the finished shards into one
//! Zarr v2 store indexed by sample ([`export_zarr`]): one chunked array per quantity instead
//! of one file per shard, for training code that reads it without knowing the sharding.
//!
//! **Quality.** `[quality]` chooses samples whose steps are scored against the exact-W² step
//! from the same ρⁿ ([`jko::score`]): exact in 1D (default: one sample, every step), exact
//! semi-discrete W² on 2D grids without masks with entropy (no porous medium or cap; default:
//! one sample, the first step), the multi-level conic discretisation otherwise (default:
//! none). The manifest states the reference, the per-step gaps and W distances, and their
//! maxima.

mod store;
mod zarr;

pub use store::{
    Manifest, QualitySummary, SampleRecord, SampleStatus, ShardFiles, ShardShapes, StepQuality,
};
pub use zarr::{ZarrSummary, export_zarr};

use crate::error::ToolError;
use jko::backend::SolverConfig;
use jko::config::{Checks, EnergyConfig, MeshConfig, SchemeConfig};
use jko::driver::{Observer, State, StepRecord, Stepper, march};
use jko::error::RunError;
use jko::plan::MemoryBudget;
use jko::score::{ScoreMethod, ScoreOptions, score};
use jko_core::exact::Gaussian;
use jko_core::{
    Energy, EnergyTerm, InputError, JkoStep, Mesh, StepError, StepOutput, StepSolver, WarmStart,
};
use ndarray::Array1;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use store::{ProgressLog, RowFile};

/// A dataset description (TOML, see the module docs; every table denies unknown keys).
///
/// ```rust
/// use jko_cli::dataset::DatasetSpec;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let spec = DatasetSpec::from_toml(r#"
///     samples = 3
///     seed = 7
///     [base]
///     mesh = { cells = [16], lower = [-4.0], upper = [4.0] }
///     energy = { entropy = 1.0, potential = { kind = "quadratic" } }
///     scheme = { tau = 0.1, steps = 2 }
///     solver = { kind = "newton" }
///     [[initial]]
///     kind = "gaussian_mixture"
///     components = [1, 2]
///     std = [0.5, 1.0]
/// "#)?;
/// assert_eq!(spec.initial[0].kind(), "gaussian_mixture");
/// assert_eq!(spec.mass(), 1.0);
/// # Ok(())
/// # }
/// ```
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// Number of samples (indices 0..samples).
    pub samples: usize,
    /// With the sample index, fixes every sample's initial density.
    pub seed: u64,
    /// Mass of every initial density (default 1).
    pub mass: Option<f64>,
    /// Mesh, energy, scheme, backend and checks shared by every sample (`[base]`).
    pub base: BaseConfig,
    /// The random initial-density families (`[[initial]]`).
    pub initial: Vec<InitialFamily>,
    /// `[quality]`: which samples are measured against exact-W² steps (default: one sample,
    /// every step, on 1D meshes; one sample, the first step, where the 2D semi-discrete
    /// reference applies; none otherwise, where the conic reference is expensive).
    pub quality: Option<QualitySpec>,
}

/// `[quality]` of a dataset spec: the samples whose steps are scored against the exact-W²
/// step from the same ρⁿ ([`jko::score::score`]; exact in 1D and, semi-discrete, on 2D grids
/// with entropy; multi-level conic with `levels` time levels otherwise). Measured samples: ⌊j·samples/k⌋ for j < k.
///
/// ```rust
/// use jko_cli::dataset::QualitySpec;
///
/// let q: QualitySpec = toml::from_str("samples = 4\nsteps = [1, 5]").unwrap();
/// assert_eq!((q.samples, q.steps, q.levels), (4, Some(vec![1, 5]), 4));
/// ```
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualitySpec {
    /// Number k of samples measured (0: none). Default 1.
    #[serde(default = "one_sample")]
    pub samples: usize,
    /// Step numbers measured (default: every step in 1D, the first in 2D/3D).
    pub steps: Option<Vec<usize>>,
    /// Time levels L of the 2D/3D reference. Default 4.
    #[serde(default = "four_levels")]
    pub levels: usize,
}

fn one_sample() -> usize {
    1
}

fn four_levels() -> usize {
    4
}

/// A run config without `[initial]`: the tables of [`jko::config::Config`].
///
/// ```rust
/// use jko_cli::dataset::BaseConfig;
///
/// let base: BaseConfig = toml::from_str(r#"
///     mesh = { cells = [32], lower = [0.0], upper = [1.0] }
///     scheme = { tau = 0.01, steps = 4 }
///     solver = { kind = "quantile" }
/// "#).unwrap();
/// assert_eq!(base.energy, Default::default());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseConfig {
    /// `[base.mesh]`, as in a run config.
    pub mesh: MeshConfig,
    /// `[base.energy]`, as in a run config.
    #[serde(default)]
    pub energy: EnergyConfig,
    /// `[base.scheme]`: τ and the number of steps of every trajectory.
    pub scheme: SchemeConfig,
    /// `[base.solver]`: the backend that computes every trajectory.
    pub solver: SolverConfig,
    /// `[base.checks]`: the driver's invariant checks.
    #[serde(default)]
    pub checks: Checks,
}

/// A family of random initial densities (see the module docs).
///
/// ```rust
/// use jko_cli::dataset::InitialFamily;
///
/// let f: InitialFamily = toml::from_str("kind = \"gaussian_mixture\"\ncomponents = [1, 3]\nstd = [0.3, 1.0]").unwrap();
/// assert_eq!((f.kind(), f.weight()), ("gaussian_mixture", 1.0));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InitialFamily {
    /// `kind = "gaussian_mixture"`.
    GaussianMixture(GaussianMixture),
    /// `kind = "smooth_field"`.
    SmoothField(SmoothField),
}

/// `kind = "gaussian_mixture"`: K components, K uniform in `components`; random weights,
/// means and standard deviations.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GaussianMixture {
    /// Inclusive range of the number of components.
    pub components: [usize; 2],
    /// Range of every mean coordinate (default: the middle 60 % of the box, per axis).
    pub mean: Option<[f64; 2]>,
    /// Range of every standard deviation.
    pub std: [f64; 2],
    /// Relative probability of drawing this family (default 1).
    #[serde(default = "one")]
    pub weight: f64,
}

/// `kind = "smooth_field"`: ρ ∝ exp(f), f a random sum of cosine modes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmoothField {
    /// Number of cosine modes.
    pub modes: usize,
    /// Largest wave number per axis (wave number k: k/2 periods across the box).
    pub max_wavenumber: usize,
    /// Scale of the log-density f.
    pub amplitude: f64,
    /// Relative probability of drawing this family (default 1).
    #[serde(default = "one")]
    pub weight: f64,
}

fn one() -> f64 {
    1.0
}

/// What a family's parameter check reports: the key (under `initial[i].`), its value, why.
type Bad<'a> = &'a dyn Fn(&str, String, &str) -> RunError;

impl InitialFamily {
    /// The family's relative probability (`weight`, default 1).
    ///
    /// ```rust
    /// use jko_cli::dataset::{InitialFamily, SmoothField};
    ///
    /// let f = InitialFamily::SmoothField(SmoothField { modes: 4, max_wavenumber: 3, amplitude: 1.0, weight: 2.0 });
    /// assert_eq!(f.weight(), 2.0);
    /// ```
    pub fn weight(&self) -> f64 {
        match self {
            InitialFamily::GaussianMixture(f) => f.weight,
            InitialFamily::SmoothField(f) => f.weight,
        }
    }

    /// The family's `kind` as written in specs.
    ///
    /// ```rust
    /// use jko_cli::dataset::{InitialFamily, SmoothField};
    ///
    /// let f = InitialFamily::SmoothField(SmoothField { modes: 4, max_wavenumber: 3, amplitude: 1.0, weight: 1.0 });
    /// assert_eq!(f.kind(), "smooth_field");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            InitialFamily::GaussianMixture(_) => "gaussian_mixture",
            InitialFamily::SmoothField(_) => "smooth_field",
        }
    }

    fn validate(&self, i: usize) -> Result<(), RunError> {
        let bad = |key: &str, value: String, why: &str| -> RunError {
            InputError::parameter(&format!("initial[{i}].{key}"), value, why).into()
        };
        let w = self.weight();
        if !(w.is_finite() && w >= 0.0) {
            return Err(bad("weight", w.to_string(), "must be finite and >= 0"));
        }
        match self {
            InitialFamily::GaussianMixture(f) => f.validate(&bad),
            InitialFamily::SmoothField(f) => f.validate(&bad),
        }
    }

    /// Unnormalised cell values of one random member of the family.
    fn draw(&self, mesh: &Mesh, lower: &[f64], upper: &[f64], rng: &mut SampleRng) -> Array1<f64> {
        match self {
            InitialFamily::GaussianMixture(f) => f.draw(mesh, lower, upper, rng),
            InitialFamily::SmoothField(f) => f.draw(mesh, lower, upper, rng),
        }
    }
}

impl GaussianMixture {
    fn validate(&self, bad: Bad<'_>) -> Result<(), RunError> {
        let (components, mean, std) = (&self.components, &self.mean, &self.std);
        if components[0] < 1 || components[0] > components[1] {
            return Err(bad(
                "components",
                format!("{components:?}"),
                "must be [min, max] with 1 <= min <= max",
            ));
        }
        if !(std[0].is_finite() && std[1].is_finite() && std[0] > 0.0 && std[0] <= std[1]) {
            return Err(bad(
                "std",
                format!("{std:?}"),
                "must be [min, max] with 0 < min <= max, finite",
            ));
        }
        if let Some(m) = mean
            && !(m[0].is_finite() && m[1].is_finite() && m[0] <= m[1])
        {
            return Err(bad(
                "mean",
                format!("{m:?}"),
                "must be [min, max] with min <= max, finite",
            ));
        }
        Ok(())
    }

    fn draw(&self, mesh: &Mesh, lower: &[f64], upper: &[f64], rng: &mut SampleRng) -> Array1<f64> {
        let d = mesh.dim();
        let (components, mean, std) = (&self.components, &self.mean, &self.std);
        let k = rng.integer(components[0], components[1]);
        let raw: Vec<f64> = (0..k).map(|_| -rng.uniform_open().ln()).collect();
        let total: f64 = raw.iter().sum();
        let parts: Vec<(f64, Gaussian)> = raw
            .iter()
            .map(|w| {
                let m: Vec<f64> = (0..d)
                    .map(|a| {
                        let (lo, hi) = match mean {
                            Some(r) => (r[0], r[1]),
                            None => {
                                let l = upper[a] - lower[a];
                                (lower[a] + 0.2 * l, upper[a] - 0.2 * l)
                            }
                        };
                        rng.uniform_in(lo, hi)
                    })
                    .collect();
                let s: Vec<f64> = (0..d).map(|_| rng.uniform_in(std[0], std[1])).collect();
                (w / total, Gaussian::diagonal(&m, &s))
            })
            .collect();
        mesh.sample(|x| parts.iter().map(|(w, g)| w * g.density(x)).sum())
    }
}

impl SmoothField {
    fn validate(&self, bad: Bad<'_>) -> Result<(), RunError> {
        let (modes, max_wavenumber, amplitude) =
            (&self.modes, &self.max_wavenumber, &self.amplitude);
        if *modes < 1 {
            return Err(bad("modes", modes.to_string(), "must be >= 1"));
        }
        if *max_wavenumber < 1 {
            return Err(bad(
                "max_wavenumber",
                max_wavenumber.to_string(),
                "must be >= 1",
            ));
        }
        if !(amplitude.is_finite() && *amplitude >= 0.0) {
            return Err(bad(
                "amplitude",
                amplitude.to_string(),
                "must be finite and >= 0",
            ));
        }
        Ok(())
    }

    fn draw(&self, mesh: &Mesh, lower: &[f64], upper: &[f64], rng: &mut SampleRng) -> Array1<f64> {
        let d = mesh.dim();
        let (modes, max_wavenumber, amplitude) =
            (&self.modes, &self.max_wavenumber, &self.amplitude);
        let waves: Vec<(Vec<f64>, f64, f64)> = (0..*modes)
            .map(|_| {
                let k = loop {
                    let k: Vec<f64> = (0..d)
                        .map(|_| rng.integer(0, *max_wavenumber) as f64)
                        .collect();
                    if k.iter().any(|c| *c != 0.0) {
                        break k;
                    }
                };
                let norm = k.iter().map(|c| c * c).sum::<f64>().sqrt();
                let a = rng.normal() / norm;
                let phase = 2.0 * std::f64::consts::PI * rng.uniform();
                (k, a, phase)
            })
            .collect();
        mesh.sample(|x| {
            let f: f64 = waves
                .iter()
                .map(|(k, a, phase)| {
                    let arg: f64 = (0..d)
                        .map(|i| k[i] * (x[i] - lower[i]) / (upper[i] - lower[i]))
                        .sum();
                    a * (std::f64::consts::PI * arg + phase).cos()
                })
                .sum();
            (amplitude * f).exp()
        })
    }
}

/// Which samples a process runs: index ≡ `index` (mod `count`) (`--shard index/count`).
///
/// ```rust
/// use jko_cli::dataset::Shard;
///
/// let shard: Shard = "1/3".parse().unwrap();
/// assert_eq!(shard.indices(8), [1, 4, 7]);
/// assert_eq!(shard.to_string(), "1/3");
/// assert!("3/3".parse::<Shard>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This shard's number, `0 <= index < count`.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Shard {
    /// Shard `index` of `count`.
    ///
    /// # Errors
    /// [`RunError::Input`] unless `0 <= index < count`.
    ///
    /// ```rust
    /// use jko_cli::dataset::Shard;
    ///
    /// assert_eq!(Shard::new(0, 1).unwrap(), Shard::all());
    /// assert!(Shard::new(2, 2).is_err());
    /// ```
    pub fn new(index: usize, count: usize) -> Result<Shard, RunError> {
        if count == 0 || index >= count {
            return Err(InputError::parameter(
                "shard",
                format!("{index}/{count}"),
                "must be i/n with 0 <= i < n",
            )
            .into());
        }
        Ok(Shard { index, count })
    }

    /// Every sample (shard 0/1).
    ///
    /// ```rust
    /// assert_eq!(jko_cli::dataset::Shard::all().indices(3), [0, 1, 2]);
    /// ```
    pub fn all() -> Shard {
        Shard { index: 0, count: 1 }
    }

    /// The sample indices of this shard among `samples` (round robin).
    ///
    /// ```rust
    /// use jko_cli::dataset::Shard;
    ///
    /// assert_eq!(Shard::new(0, 2).unwrap().indices(5), [0, 2, 4]);
    /// ```
    pub fn indices(&self, samples: usize) -> Vec<usize> {
        (self.index..samples).step_by(self.count.max(1)).collect()
    }

    /// `00001-of-00004`, used in the file names.
    ///
    /// ```rust
    /// assert_eq!(jko_cli::dataset::Shard::new(1, 4).unwrap().tag(), "00001-of-00004");
    /// ```
    pub fn tag(&self) -> String {
        format!("{:05}-of-{:05}", self.index, self.count)
    }
}

impl Default for Shard {
    fn default() -> Self {
        Shard::all()
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = RunError;

    /// Parse `i/n`.
    fn from_str(s: &str) -> Result<Shard, RunError> {
        let bad = || -> RunError {
            InputError::parameter("shard", s, "must be i/n with 0 <= i < n, e.g. 0/4").into()
        };
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let i = i.trim().parse().map_err(|_| bad())?;
        let n = n.trim().parse().map_err(|_| bad())?;
        Shard::new(i, n)
    }
}

impl DatasetSpec {
    /// The family (index into `initial`) sample `index` is drawn from: the first draw of
    /// its generator.
    ///
    /// ```rust
    /// use jko_cli::dataset::DatasetSpec;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let spec = DatasetSpec::from_toml(r#"
    ///     samples = 100
    ///     seed = 7
    ///     [base]
    ///     mesh = { cells = [16], lower = [-4.0], upper = [4.0] }
    ///     scheme = { tau = 0.1, steps = 2 }
    ///     solver = { kind = "newton" }
    ///     [[initial]]
    ///     kind = "gaussian_mixture"
    ///     components = [1, 2]
    ///     std = [0.5, 1.0]
    ///     [[initial]]
    ///     kind = "smooth_field"
    ///     modes = 2
    ///     max_wavenumber = 2
    ///     amplitude = 1.0
    ///     weight = 3.0
    /// "#)?;
    /// let second = (0..100).filter(|&i| spec.family_of(i) == 1).count();
    /// assert!(second > 60 && second < 90, "{second}"); // weight 3 of 4
    /// # Ok(())
    /// # }
    /// ```
    pub fn family_of(&self, index: usize) -> usize {
        self.pick_family(&mut SampleRng::for_sample(self.seed, index as u64))
    }

    fn pick_family(&self, rng: &mut SampleRng) -> usize {
        let total: f64 = self.initial.iter().map(|f| f.weight()).sum();
        let mut u = rng.uniform() * total;
        for (i, f) in self.initial.iter().enumerate() {
            if u < f.weight() {
                return i;
            }
            u -= f.weight();
        }
        self.initial.len() - 1
    }

    /// The quality subset on `mesh` (see [`QualitySpec`]).
    fn quality_plan(&self, mesh: &Mesh, energy: &Energy) -> Option<QualityPlan> {
        let one_d = mesh.dim() == 1;
        let levels = self.quality.as_ref().map_or(four_levels(), |q| q.levels);
        let method = jko::score::method_for(mesh, energy, levels);
        let q = match &self.quality {
            Some(q) => q.clone(),
            // Exact references by default (1D: every step; 2D semi-discrete: the first
            // step: 41 s at 64² measured under load, round 7); the conic reference costs minutes.
            None if method.is_exact() => QualitySpec {
                samples: 1,
                steps: None,
                levels,
            },
            None => return None,
        };
        let k = q.samples.min(self.samples);
        if k == 0 {
            return None;
        }
        Some(QualityPlan {
            samples: (0..k).map(|j| j * self.samples / k).collect(),
            steps: q.steps.or_else(|| (!one_d).then(|| vec![1])),
            method,
            options: ScoreOptions {
                levels: q.levels,
                normalize: false,
            },
        })
    }

    /// Parse a spec from TOML text.
    ///
    /// # Errors
    /// [`ToolError::Toml`] naming the offending key (unknown, missing or mistyped).
    ///
    /// ```rust
    /// use jko_cli::dataset::DatasetSpec;
    ///
    /// let err = DatasetSpec::from_toml("samples = 2\nsed = 1").unwrap_err();
    /// assert!(err.to_string().contains("sed"));
    /// assert!(err.to_string().starts_with("dataset spec: "), "{err}");
    /// ```
    pub fn from_toml(text: &str) -> Result<DatasetSpec, ToolError> {
        toml::from_str(text).map_err(|e| ToolError::Toml {
            origin: "dataset spec".into(),
            source: Box::new(e),
        })
    }

    /// Read and parse a spec file (`jko dataset SPEC.toml`).
    ///
    /// # Errors
    /// [`ToolError::Io`] when the file cannot be read; [`ToolError::Toml`] as for
    /// [`DatasetSpec::from_toml`], naming the file.
    ///
    /// ```rust
    /// use jko_cli::dataset::DatasetSpec;
    /// use jko_cli::error::ToolError;
    ///
    /// let err = DatasetSpec::from_file("no/such/spec.toml".as_ref()).unwrap_err();
    /// assert!(matches!(err, ToolError::Io { .. }));
    /// ```
    pub fn from_file(path: &Path) -> Result<DatasetSpec, ToolError> {
        let text = std::fs::read_to_string(path).map_err(|e| ToolError::io(path, e))?;
        toml::from_str(&text).map_err(|e| ToolError::Toml {
            origin: path.display().to_string(),
            source: Box::new(e),
        })
    }

    /// Check what serde cannot: at least one sample and one family, family parameters in
    /// range (errors name `initial[i].KEY`), weights not all 0, a positive mass and τ, and the
    /// backend's parameters.
    ///
    /// # Errors
    /// [`RunError::Input`] (as [`ToolError::Run`]) or [`ToolError::Option`] naming the
    /// parameter.
    ///
    /// ```rust
    /// use jko_cli::dataset::DatasetSpec;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut spec = DatasetSpec::from_toml(r#"
    ///     samples = 3
    ///     seed = 7
    ///     [base]
    ///     mesh = { cells = [16], lower = [-4.0], upper = [4.0] }
    ///     energy = { entropy = 1.0, potential = { kind = "quadratic" } }
    ///     scheme = { tau = 0.1, steps = 2 }
    ///     solver = { kind = "newton" }
    ///     [[initial]]
    ///     kind = "gaussian_mixture"
    ///     components = [1, 2]
    ///     std = [0.5, 1.0]
    /// "#)?;
    /// spec.validate()?;
    /// spec.samples = 0;
    /// assert!(spec.validate().unwrap_err().to_string().contains("`samples`"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn validate(&self) -> Result<(), ToolError> {
        jko_core::at_least_one("samples", self.samples).map_err(RunError::from)?;
        if self.initial.is_empty() {
            return Err(ToolError::option(
                "initial",
                "the spec needs at least one [[initial]] family",
            ));
        }
        for (i, fam) in self.initial.iter().enumerate() {
            fam.validate(i)?;
        }
        if self.initial.iter().map(|f| f.weight()).sum::<f64>() <= 0.0 {
            return Err(InputError::parameter(
                "initial.weight",
                0,
                "the family weights must not all be 0",
            )
            .into());
        }
        jko_core::finite_positive("mass", self.mass())?;
        let tau = self.base.scheme.tau;
        if !(tau.is_finite() && tau > 0.0) {
            return Err(InputError::InvalidTau(tau).into());
        }
        Ok(self.base.solver.validate()?)
    }

    /// Mass of every initial density (`mass`, default 1).
    ///
    /// ```rust
    /// use jko_cli::dataset::DatasetSpec;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let spec = DatasetSpec::from_toml(r#"
    ///     samples = 3
    ///     seed = 7
    ///     [base]
    ///     mesh = { cells = [16], lower = [-4.0], upper = [4.0] }
    ///     energy = { entropy = 1.0, potential = { kind = "quadratic" } }
    ///     scheme = { tau = 0.1, steps = 2 }
    ///     solver = { kind = "newton" }
    ///     [[initial]]
    ///     kind = "gaussian_mixture"
    ///     components = [1, 2]
    ///     std = [0.5, 1.0]
    /// "#)?;
    /// assert_eq!(spec.mass(), 1.0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn mass(&self) -> f64 {
        self.mass.unwrap_or(1.0)
    }

    /// Mesh and energy of the base config (paths relative to `base`), after
    /// [`DatasetSpec::validate`].
    ///
    /// # Errors
    /// As for [`DatasetSpec::validate`], and the mesh and energy errors of a run config.
    ///
    /// ```rust
    /// use jko_cli::dataset::DatasetSpec;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let spec = DatasetSpec::from_toml(r#"
    ///     samples = 3
    ///     seed = 7
    ///     [base]
    ///     mesh = { cells = [16], lower = [-4.0], upper = [4.0] }
    ///     energy = { entropy = 1.0, potential = { kind = "quadratic" } }
    ///     scheme = { tau = 0.1, steps = 2 }
    ///     solver = { kind = "newton" }
    ///     [[initial]]
    ///     kind = "gaussian_mixture"
    ///     components = [1, 2]
    ///     std = [0.5, 1.0]
    /// "#)?;
    /// let (mesh, energy) = spec.build(".".as_ref())?;
    /// assert_eq!(mesh.n_cells(), 16);
    /// assert_eq!(energy.entropy, Some(1.0));
    /// # Ok(())
    /// # }
    /// ```
    pub fn build(&self, base: &Path) -> Result<(Mesh, Energy), ToolError> {
        self.validate()?;
        let mesh = self.base.mesh.build(base)?;
        let energy = self.base.energy.build(&mesh, base)?;
        Ok((mesh, energy))
    }

    /// The initial density of sample `index` on `mesh` (from [`DatasetSpec::build`]) and the
    /// family it was drawn from. Depends only on (spec, index); normalised to
    /// [`DatasetSpec::mass`].
    ///
    /// # Errors
    /// [`RunError::Input`] for a density that is invalid (non-finite, zero mass) or above the
    /// energy's `max_density`; [`ToolError::Unsuited`] on a mesh without grid structure.
    ///
    /// ```rust
    /// use jko_cli::dataset::DatasetSpec;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let spec = DatasetSpec::from_toml(r#"
    ///     samples = 3
    ///     seed = 7
    ///     [base]
    ///     mesh = { cells = [16], lower = [-4.0], upper = [4.0] }
    ///     energy = { entropy = 1.0, potential = { kind = "quadratic" } }
    ///     scheme = { tau = 0.1, steps = 2 }
    ///     solver = { kind = "newton" }
    ///     [[initial]]
    ///     kind = "gaussian_mixture"
    ///     components = [1, 2]
    ///     std = [0.5, 1.0]
    /// "#)?;
    /// let (mesh, energy) = spec.build(".".as_ref())?;
    /// let (family, rho) = spec.sample_initial(&mesh, &energy, 2)?;
    /// assert_eq!(family, 0);
    /// assert!((mesh.mass(&rho) - 1.0).abs() < 1e-12);
    /// // The same sample index always gives the same density.
    /// assert_eq!(spec.sample_initial(&mesh, &energy, 2)?.1, rho);
    /// # Ok(())
    /// # }
    /// ```
    pub fn sample_initial(
        &self,
        mesh: &Mesh,
        energy: &Energy,
        index: usize,
    ) -> Result<(usize, Array1<f64>), ToolError> {
        let grid = mesh.as_grid().ok_or_else(needs_grid)?;
        let mut rng = SampleRng::for_sample(self.seed, index as u64);
        let family = self.pick_family(&mut rng);
        let raw = self.initial[family].draw(mesh, &grid.lower, &grid.upper, &mut rng);
        let what = format!("initial density of sample {index}");
        jko_core::check_density(mesh, &raw, &what)?;
        let mass = mesh.mass(&raw);
        if !(mass.is_finite() && mass > 0.0) {
            return Err(InputError::ZeroMass { what }.into());
        }
        let rho = raw * (self.mass() / mass);
        if let Some(rmax) = energy.max_density
            && let Some((k, r)) = rho.iter().enumerate().find(|(_, r)| **r > rmax)
        {
            return Err(InputError::parameter(
                &what,
                format!("{r:.6} at cell {k}"),
                &format!("exceeds max_density = {rmax}; widen the std range or lower the mass"),
            )
            .into());
        }
        Ok((family, rho))
    }
}

/// Options of [`run_dataset`]: the flags of `jko dataset`.
///
/// ```rust
/// let opts = jko_cli::dataset::DatasetOptions { threads: Some(2), ..Default::default() };
/// assert!(!opts.resume && opts.retry.is_none());
/// ```
#[derive(Debug, Clone, Default)]
pub struct DatasetOptions {
    /// Samples run at the same time, one solver each (default: rayon's thread count, i.e.
    /// `RAYON_NUM_THREADS` or the number of cores).
    pub threads: Option<usize>,
    /// Finish a started shard: run only the samples its progress log has not settled (a shard
    /// not started yet is started).
    pub resume: bool,
    /// Start the shard over, deleting its files.
    pub force: bool,
    /// Run the failed samples of a finished shard again with this solver (`--retry-failed`,
    /// with `--solver NAME` for another backend); their rows and records are replaced.
    pub retry: Option<SolverConfig>,
    /// Make these samples fail at their first step (a fault injection for tests of the
    /// failure path; `--fail-sample`, not shown in `--help`).
    pub fail_samples: Vec<usize>,
    /// Stop after the samples running now (Ctrl-C); `--resume` finishes the shard.
    pub stop: Option<&'static AtomicBool>,
}

/// How far a shard is, after each settled sample (for progress reports).
///
/// ```rust
/// let p = jko_cli::dataset::ShardProgress { settled: 3, total: 10, failed: 1, wall_time: 0.5 };
/// assert_eq!(p.total - p.settled, 7);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShardProgress {
    /// Samples settled (ok or failed), including those of earlier runs of the shard.
    pub settled: usize,
    /// Samples of the shard.
    pub total: usize,
    /// Samples failed so far.
    pub failed: usize,
    /// Wall time of the sample just settled (seconds).
    pub wall_time: f64,
}

/// Keeps every density and energy of one trajectory.
struct Trajectory {
    rho: Vec<Array1<f64>>,
    energy: Vec<f64>,
}

impl Observer for Trajectory {
    fn step(&mut self, record: &StepRecord, output: &StepOutput) -> Result<(), RunError> {
        self.rho.push(output.rho.clone());
        self.energy.push(record.energy);
        Ok(())
    }
}

/// A backend made to fail at its first step ([`DatasetOptions::fail_samples`]).
struct InjectedFailure<'a>(&'a dyn StepSolver);

impl StepSolver for InjectedFailure<'_> {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn treats(&self, term: EnergyTerm) -> bool {
        self.0.treats(term)
    }

    fn step(
        &self,
        _problem: &JkoStep<'_>,
        _warm: Option<&WarmStart>,
    ) -> Result<StepOutput, StepError> {
        Err(StepError::Numerical {
            solver: self.0.name().into(),
            message: "injected failure (--fail-sample)".into(),
        })
    }
}

/// What the workers share: the problem, the output files and the log.
struct ShardRun<'a> {
    spec: &'a DatasetSpec,
    mesh: &'a Mesh,
    energy: &'a Energy,
    config: &'a SolverConfig,
    options: &'a DatasetOptions,
    quality: Option<QualityPlan>,
    inputs: RowFile,
    trajectories: RowFile,
    energies: RowFile,
    log: ProgressLog,
}

/// Which samples and steps are measured against exact-W² steps, and how.
#[derive(Debug, Clone)]
struct QualityPlan {
    samples: Vec<usize>,
    steps: Option<Vec<usize>>,
    method: ScoreMethod,
    options: ScoreOptions,
}

impl ShardRun<'_> {
    /// Run sample `index` (row `row`) with `solver`, write its rows and its progress line.
    fn settle(
        &self,
        solver: &dyn StepSolver,
        row: usize,
        index: usize,
    ) -> Result<(SampleRecord, f64), ToolError> {
        let start = std::time::Instant::now();
        let family = self.spec.family_of(index);
        let injected = InjectedFailure(solver);
        let solver: &dyn StepSolver = if self.options.fail_samples.contains(&index) {
            &injected
        } else {
            solver
        };
        let mut record = SampleRecord {
            index,
            family,
            status: SampleStatus::Ok,
            backend: solver.name().to_string(),
            error: None,
            quality: Vec::new(),
            quality_error: None,
        };
        match self.trajectory(solver, index) {
            Ok(traj) => {
                let mut flat = Vec::with_capacity(self.trajectories.row_len());
                for rho in &traj.rho {
                    flat.extend(self.to_grid(rho)?);
                }
                self.inputs.write_row(row, &self.to_grid(&traj.rho[0])?)?;
                self.trajectories.write_row(row, &flat)?;
                self.energies.write_row(row, &traj.energy)?;
                if let Some(plan) = &self.quality
                    && plan.samples.contains(&index)
                {
                    // A failed measurement is recorded, not dropped: the manifest must not
                    // read as "measured" when it was not.
                    match self.measure(plan, &traj) {
                        Ok(q) => record.quality = q,
                        Err(e) => record.quality_error = Some(e.to_string()),
                    }
                }
            }
            Err(e) => {
                record.status = SampleStatus::Failed;
                record.error = Some(e.to_string());
                let nan = |len: usize| vec![f64::NAN; len];
                self.inputs.write_row(row, &nan(self.inputs.row_len()))?;
                self.trajectories
                    .write_row(row, &nan(self.trajectories.row_len()))?;
                self.energies
                    .write_row(row, &nan(self.energies.row_len()))?;
            }
        }
        let wall = start.elapsed().as_secs_f64();
        self.log.record(&record, wall)?;
        Ok((record, wall))
    }

    /// One sample: its initial density marched `steps` steps.
    fn trajectory(&self, solver: &dyn StepSolver, index: usize) -> Result<Trajectory, ToolError> {
        let (mesh, energy) = (self.mesh, self.energy);
        let (_, rho0) = self.spec.sample_initial(mesh, energy, index)?;
        let stepper = Stepper::new(
            mesh,
            energy,
            solver,
            self.spec.base.scheme.tau,
            self.spec.base.checks.clone(),
            mesh.mass(&rho0),
        )?;
        let mut traj = Trajectory {
            rho: vec![rho0.clone()],
            energy: vec![energy.value(mesh, &rho0).map_err(RunError::from)?],
        };
        march(
            &stepper,
            State::initial(rho0),
            self.spec.base.scheme.steps,
            &mut [&mut traj],
            &|| false,
        )?;
        Ok(traj)
    }

    /// Score the steps of a trajectory against exact-W² steps from the same ρⁿ.
    fn measure(&self, plan: &QualityPlan, traj: &Trajectory) -> Result<Vec<StepQuality>, RunError> {
        let steps = traj.rho.len() - 1;
        let chosen: Vec<usize> = match &plan.steps {
            Some(s) => s
                .iter()
                .cloned()
                .filter(|&n| n >= 1 && n <= steps)
                .collect(),
            None => (1..=steps).collect(),
        };
        chosen
            .into_iter()
            .map(|n| {
                let s = score(
                    self.mesh,
                    self.energy,
                    self.spec.base.scheme.tau,
                    &traj.rho[n - 1],
                    &traj.rho[n],
                    &plan.options,
                )?;
                Ok(StepQuality {
                    step: n,
                    gap: s.gap,
                    relative_gap: s.relative_gap,
                    w2_to_exact: s.w2_to_minimiser,
                    relative_l1: s.relative_l1,
                })
            })
            .collect()
    }

    fn to_grid(&self, rho: &Array1<f64>) -> Result<Vec<f64>, ToolError> {
        self.mesh
            .to_grid_array(rho, 0.0)
            .map(|a| a.iter().cloned().collect())
            .ok_or_else(needs_grid)
    }
}

/// Run the samples of `shard` and write its arrays, progress log and manifest into `out` (see
/// the module docs): `jko dataset SPEC --out DIR --shard i/n`. Paths in the spec are relative
/// to `base`. Every step of every trajectory is checked by the driver
/// ([`jko::driver::Stepper`]); a sample that fails is recorded (its rows NaN, its error in
/// the manifest) and the others are kept. `on_sample` sees every settled sample.
///
/// # Errors
/// Errors of [`DatasetSpec::build`]; [`RunError::Solver`] when the backend does not treat the
/// mesh or the energy, [`RunError::Input`] when `threads` steps at once would not fit in
/// memory (both before any sample runs); [`ToolError::Option`] for a shard already started
/// (without `resume` or `force`), a progress log of another spec, or a retry of a shard
/// not finished; [`ToolError::Failed`] when stopped before the shard is finished;
/// [`ToolError::Io`] when writing fails.
///
/// ```rust
/// use jko::config::read_npy;
/// use jko_cli::dataset::{DatasetOptions, DatasetSpec, Shard, run_dataset};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let spec = DatasetSpec::from_toml(r#"
///     samples = 3
///     seed = 7
///     [base]
///     mesh = { cells = [16], lower = [-4.0], upper = [4.0] }
///     energy = { entropy = 1.0, potential = { kind = "quadratic" } }
///     scheme = { tau = 0.1, steps = 2 }
///     solver = { kind = "newton" }
///     [[initial]]
///     kind = "gaussian_mixture"
///     components = [1, 2]
///     std = [0.5, 1.0]
/// "#)?;
/// let out = tempfile::tempdir()?;
/// let manifest = run_dataset(&spec, ".".as_ref(), out.path(), Shard::all(), &DatasetOptions::default())?;
/// assert_eq!((manifest.shapes.trajectories.clone(), manifest.failed), (vec![3, 3, 16], 0));
/// let energies = read_npy(&out.path().join(&manifest.files.energies))?;
/// // Every trajectory's energy decreases step by step.
/// for row in energies.outer_iter() {
///     assert!(row[1] < row[0] && row[2] < row[1]);
/// }
/// // 1D: the steps of a sample are measured against exact-W² steps (newton is O(τ²) away).
/// let q = manifest.quality.as_ref().unwrap();
/// assert!(q.max_relative_l1 > 0.0 && q.max_relative_l1 < 0.1);
/// # Ok(())
/// # }
/// ```
pub fn run_dataset(
    spec: &DatasetSpec,
    base: &Path,
    out: &Path,
    shard: Shard,
    options: &DatasetOptions,
) -> Result<Manifest, ToolError> {
    run_dataset_with(spec, base, out, shard, options, &|_, _| {})
}

/// [`run_dataset`] with a report of every settled sample (`jko dataset` prints progress).
///
/// # Errors
/// As [`run_dataset`].
///
/// ```rust
/// use jko_cli::dataset::{DatasetOptions, DatasetSpec, Shard, run_dataset_with};
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let spec = DatasetSpec::from_toml(r#"
///     samples = 4
///     seed = 7
///     [base]
///     mesh = { cells = [16], lower = [-4.0], upper = [4.0] }
///     energy = { entropy = 1.0, potential = { kind = "quadratic" } }
///     scheme = { tau = 0.1, steps = 1 }
///     solver = { kind = "newton" }
///     [[initial]]
///     kind = "gaussian_mixture"
///     components = [1, 2]
///     std = [0.5, 1.0]
/// "#)?;
/// let out = tempfile::tempdir()?;
/// let seen = AtomicUsize::new(0);
/// let opts = DatasetOptions { fail_samples: vec![2], ..Default::default() };
/// let m = run_dataset_with(&spec, ".".as_ref(), out.path(), Shard::all(), &opts, &|_, p| {
///     seen.fetch_add(1, Ordering::SeqCst);
///     assert!(p.settled <= p.total);
/// })?;
/// assert_eq!(seen.load(Ordering::SeqCst), 4);
/// // The failed sample is recorded with its error; the other three are kept.
/// assert_eq!(m.failed, 1);
/// assert!(m.samples[2].error.as_deref().unwrap().contains("injected failure"));
/// # Ok(())
/// # }
/// ```
pub fn run_dataset_with(
    spec: &DatasetSpec,
    base: &Path,
    out: &Path,
    shard: Shard,
    options: &DatasetOptions,
    on_sample: &(dyn Fn(&SampleRecord, &ShardProgress) + Sync),
) -> Result<Manifest, ToolError> {
    let shard = Shard::new(shard.index, shard.count)?;
    let (mesh, energy) = spec.build(base)?;
    let grid = mesh.as_grid().ok_or_else(needs_grid)?;
    let cells = grid.cells.clone();
    let config = match &options.retry {
        Some(c) => {
            c.validate()?;
            c
        }
        None => &spec.base.solver,
    };
    let solver = config.build()?;
    let threads = options
        .threads
        .unwrap_or_else(rayon::current_num_threads)
        .max(1);
    // Refuse a mesh or an energy the backend cannot treat, or `threads` steps at once that do
    // not fit in memory (the environment's limit, as a run without [limits]), before any
    // sample runs.
    jko::driver::refuse_unsupported(solver.as_ref(), &mesh, &energy)?;
    if let Some(budget) = MemoryBudget::from_limits(&Default::default())? {
        let share = MemoryBudget {
            bytes: budget.bytes / threads as u64,
            source: format!(
                "{} shared by {threads} worker threads (--threads)",
                budget.source
            ),
        };
        share.check(solver.as_ref(), &mesh, &energy)?;
    }
    std::fs::create_dir_all(out).map_err(|e| ToolError::io(out, e))?;

    let indices = shard.indices(spec.samples);
    let steps = spec.base.scheme.steps;
    let shapes = ShardShapes::new(indices.len(), steps, &cells);
    let files = ShardFiles::of(shard);
    let path = |name: &str| out.join(name);
    let manifest_path = out.join(manifest_file(shard));
    let started = path(&files.progress).exists();
    if started && !(options.resume || options.force || options.retry.is_some()) {
        return Err(ToolError::option(
            "--out",
            format!(
                "shard {shard} was already started in {}: --resume finishes it, --retry-failed reruns its failed samples, --force starts it over",
                out.display()
            ),
        ));
    }
    if !started && options.retry.is_some() {
        return Err(ToolError::option(
            "--retry-failed",
            format!("shard {shard} has not been run in {}", out.display()),
        ));
    }
    let fresh = !started || options.force;
    // A manifest describes a finished shard: remove it while the shard changes.
    if manifest_path.exists() {
        std::fs::remove_file(&manifest_path).map_err(|e| ToolError::io(&manifest_path, e))?;
    }
    let (log, mut settled, arrays) = if fresh {
        let arrays = (
            RowFile::create(&path(&files.inputs), &shapes.inputs)?,
            RowFile::create(&path(&files.trajectories), &shapes.trajectories)?,
            RowFile::create(&path(&files.energies), &shapes.energies)?,
        );
        let log = ProgressLog::create(&path(&files.progress), spec, shard)?;
        (log, Vec::new(), arrays)
    } else {
        let (log, settled) = ProgressLog::open(&path(&files.progress), spec, shard)?;
        let arrays = (
            RowFile::open(&path(&files.inputs), &shapes.inputs)?,
            RowFile::open(&path(&files.trajectories), &shapes.trajectories)?,
            RowFile::open(&path(&files.energies), &shapes.energies)?,
        );
        (log, settled, arrays)
    };
    let pending: Vec<(usize, usize)> = if options.retry.is_some() {
        let unsettled = indices
            .iter()
            .filter(|i| !settled.iter().any(|r| r.index == **i))
            .count();
        if unsettled > 0 {
            return Err(ToolError::option(
                "--retry-failed",
                format!(
                    "shard {shard} has {unsettled} samples not run yet: finish it with --resume first"
                ),
            ));
        }
        indices
            .iter()
            .enumerate()
            .filter(|(_, i)| {
                settled
                    .iter()
                    .any(|r| r.index == **i && r.status == SampleStatus::Failed)
            })
            .map(|(row, &i)| (row, i))
            .collect()
    } else {
        indices
            .iter()
            .enumerate()
            .filter(|(_, i)| !settled.iter().any(|r| r.index == **i))
            .map(|(row, &i)| (row, i))
            .collect()
    };

    let run = ShardRun {
        spec,
        mesh: &mesh,
        energy: &energy,
        config,
        options,
        quality: spec.quality_plan(&mesh, &energy),
        inputs: arrays.0,
        trajectories: arrays.1,
        energies: arrays.2,
        log,
    };
    let results = run_pending(&run, &pending, threads, &settled, indices.len(), on_sample)?;
    for r in results {
        match settled.iter_mut().find(|s| s.index == r.index) {
            Some(old) => *old = r,
            None => settled.push(r),
        }
    }
    let done = indices
        .iter()
        .filter(|i| settled.iter().any(|r| r.index == **i))
        .count();
    if done < indices.len() {
        return Err(ToolError::option(
            "dataset",
            format!(
                "stopped with {done} of {} samples of shard {shard} settled; `jko dataset ... --resume` finishes it",
                indices.len()
            ),
        ));
    }
    let samples: Vec<SampleRecord> = indices
        .iter()
        .filter_map(|i| settled.iter().find(|r| r.index == *i).cloned())
        .collect();
    let manifest = Manifest {
        jko_version: env!("CARGO_PKG_VERSION").to_string(),
        solver: spec.base.solver.name().to_string(),
        shard,
        failed: samples
            .iter()
            .filter(|s| s.status == SampleStatus::Failed)
            .count(),
        quality: run.quality.as_ref().and_then(|q| q.summary(&samples)),
        samples,
        times: (0..=steps)
            .map(|k| k as f64 * spec.base.scheme.tau)
            .collect(),
        files,
        shapes,
        dtype: "float64".into(),
        spec: spec.clone(),
    };
    let text = serde_json::to_string_pretty(&manifest).map_err(|source| ToolError::Json {
        path: manifest_path.clone(),
        source,
    })?;
    write_atomic(&manifest_path, |tmp| {
        std::fs::write(tmp, &text).map_err(|e| ToolError::io(tmp, e))
    })?;
    Ok(manifest)
}

/// Run the pending (row, sample) pairs on `threads` workers, each with its own solver (no
/// solver is shared, so no lock inside a backend serialises the samples). The workers run
/// in a pool of `threads` threads, which is also where the backends' own parallel loops run.
fn run_pending(
    run: &ShardRun<'_>,
    pending: &[(usize, usize)],
    threads: usize,
    settled: &[SampleRecord],
    total: usize,
    on_sample: &(dyn Fn(&SampleRecord, &ShardProgress) + Sync),
) -> Result<Vec<SampleRecord>, ToolError> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(total - pending.len());
    let failed = AtomicUsize::new(
        settled
            .iter()
            .filter(|r| r.status == SampleStatus::Failed && !pending.iter().any(|p| p.1 == r.index))
            .count(),
    );
    let results: Mutex<Vec<SampleRecord>> = Mutex::new(Vec::new());
    let error: Mutex<Option<ToolError>> = Mutex::new(None);
    let stopped = || run.options.stop.is_some_and(|s| s.load(Ordering::SeqCst));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| ToolError::option("--threads", e.to_string()))?;
    let worker = || {
        let solver = match run.config.build() {
            Ok(s) => s,
            Err(e) => {
                *error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.into());
                return;
            }
        };
        loop {
            if stopped() || error.lock().map(|e| e.is_some()).unwrap_or(true) {
                return;
            }
            let p = next.fetch_add(1, Ordering::SeqCst);
            let Some(&(row, index)) = pending.get(p) else {
                return;
            };
            match run.settle(solver.as_ref(), row, index) {
                Ok((record, wall_time)) => {
                    if record.status == SampleStatus::Failed {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                    let progress = ShardProgress {
                        settled: done.fetch_add(1, Ordering::SeqCst) + 1,
                        total,
                        failed: failed.load(Ordering::SeqCst),
                        wall_time,
                    };
                    on_sample(&record, &progress);
                    results
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(record);
                }
                Err(e) => {
                    *error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    return;
                }
            }
        }
    };
    pool.scope(|s| {
        for _ in 0..threads.min(pending.len()) {
            s.spawn(|_| worker());
        }
    });
    if let Some(e) = error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok(results.into_inner().unwrap_or_else(|p| p.into_inner()))
}

impl QualityPlan {
    /// The manifest's summary of the measured rows (`None` when no row was measured).
    fn summary(&self, samples: &[SampleRecord]) -> Option<QualitySummary> {
        let measured: Vec<&SampleRecord> =
            samples.iter().filter(|s| !s.quality.is_empty()).collect();
        let rows: Vec<&StepQuality> = measured.iter().flat_map(|s| &s.quality).collect();
        if rows.is_empty() {
            return None;
        }
        let max = |f: &dyn Fn(&StepQuality) -> f64| rows.iter().map(|q| f(q)).fold(0.0, f64::max);
        let relative: Vec<f64> = rows.iter().filter_map(|q| q.relative_gap).collect();
        Some(QualitySummary {
            reference: self.method,
            samples: measured.iter().map(|s| s.index).collect(),
            steps: rows.len(),
            max_gap: max(&|q| q.gap),
            max_relative_gap: (!relative.is_empty())
                .then(|| relative.iter().cloned().fold(0.0, f64::max)),
            max_w2_to_exact: max(&|q| q.w2_to_exact),
            max_relative_l1: max(&|q| q.relative_l1),
        })
    }
}

/// The manifest's file name for `shard`: `manifest_00001-of-00004.json`.
///
/// ```rust
/// use jko_cli::dataset::{Shard, manifest_file};
///
/// assert_eq!(manifest_file(Shard::new(1, 4).unwrap()), "manifest_00001-of-00004.json");
/// ```
pub fn manifest_file(shard: Shard) -> String {
    format!("manifest_{}.json", shard.tag())
}

/// Write with `write` to a temporary name beside `path`, then rename.
fn write_atomic(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), ToolError>,
) -> Result<(), ToolError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp: PathBuf = path.with_file_name(format!(".{name}.tmp"));
    write(&tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| ToolError::io(path, e))
}

/// The error of a dataset on a mesh without grid structure.
fn needs_grid() -> ToolError {
    ToolError::Unsuited {
        tool: "dataset",
        what: "a grid mesh (its arrays have the grid's shape)".into(),
    }
}

/// xoshiro256** (Blackman & Vigna), seeded by SplitMix64: the per-sample random generator.
#[derive(Debug, Clone)]
pub(crate) struct SampleRng {
    s: [u64; 4],
}

/// One SplitMix64 step: advances `state` and returns the next output.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SampleRng {
    /// The generator of sample `index` of a dataset with `seed`.
    pub fn for_sample(seed: u64, index: u64) -> SampleRng {
        // Hash seed and index separately so (seed, index) and (seed + 1, index − 1) differ.
        let mut a = seed;
        let mut b = index ^ 0xD1B5_4A32_D192_ED03;
        let mut state = splitmix64(&mut a) ^ splitmix64(&mut b).rotate_left(17);
        let s = [
            splitmix64(&mut state),
            splitmix64(&mut state),
            splitmix64(&mut state),
            splitmix64(&mut state),
        ];
        SampleRng::from_state(s)
    }

    /// A generator with this state (not all zero).
    pub fn from_state(s: [u64; 4]) -> SampleRng {
        let s = if s == [0; 4] { [1, 0, 0, 0] } else { s };
        SampleRng { s }
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in (0, 1].
    pub fn uniform_open(&mut self) -> f64 {
        1.0 - self.uniform()
    }

    pub fn uniform_in(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Uniform integer in [lo, hi] (inclusive; multiply-shift, bias below 2⁻⁶⁰ for small ranges).
    pub fn integer(&mut self, lo: usize, hi: usize) -> usize {
        let span = (hi - lo) as u128 + 1;
        lo + ((self.next_u64() as u128 * span) >> 64) as usize
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let r = (-2.0 * self.uniform_open().ln()).sqrt();
        r * (2.0 * std::f64::consts::PI * self.uniform()).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec is written into every manifest and progress log and read back by `--resume`
    /// and `dataset-zarr`: the families' TOML and JSON forms are part of the format.
    #[test]
    fn initial_families_keep_their_toml_and_json() {
        #[derive(Deserialize)]
        struct Families {
            initial: Vec<InitialFamily>,
        }
        let spec = r#"
            [[initial]]
            kind = "gaussian_mixture"
            components = [1, 3]
            std = [0.3, 1.0]
            [[initial]]
            kind = "gaussian_mixture"
            components = [2, 2]
            mean = [-1.0, 1.0]
            std = [0.5, 0.5]
            weight = 2.0
            [[initial]]
            kind = "smooth_field"
            modes = 4
            max_wavenumber = 3
            amplitude = 1.5
        "#;
        let families = toml::from_str::<Families>(spec).unwrap().initial;
        let json = serde_json::to_string(&families).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"[{"kind":"gaussian_mixture","components":[1,3],"std":[0.3,1.0],"weight":1.0},"#,
                r#"{"kind":"gaussian_mixture","components":[2,2],"mean":[-1.0,1.0],"std":[0.5,0.5],"weight":2.0},"#,
                r#"{"kind":"smooth_field","modes":4,"max_wavenumber":3,"amplitude":1.5,"weight":1.0}]"#
            )
        );
        assert_eq!(
            serde_json::from_str::<Vec<InitialFamily>>(&json).unwrap(),
            families
        );
        // A key of the other family, an unknown kind, no kind: refused.
        for bad in [
            "kind = \"smooth_field\"\nmodes = 1\nmax_wavenumber = 1\namplitude = 1.0\nstd = [0.1, 0.2]",
            "kind = \"gaussian_mixture\"\ncomponents = [1, 2]\nstd = [0.1, 0.2]\nmodes = 3",
            "kind = \"uniform\"",
            "components = [1, 2]\nstd = [0.1, 0.2]",
        ] {
            assert!(toml::from_str::<InitialFamily>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn xoshiro256starstar_reference_outputs() {
        // Reference sequence of the published algorithm from state [1, 2, 3, 4].
        let mut rng = SampleRng::from_state([1, 2, 3, 4]);
        let got: Vec<u64> = (0..4).map(|_| rng.next_u64()).collect();
        assert_eq!(got, [11520, 0, 1509978240, 1215971899390074240]);
    }

    #[test]
    fn splitmix64_reference_outputs() {
        // Vigna's splitmix64.c from seed 0: first outputs.
        let mut s = 0u64;
        assert_eq!(splitmix64(&mut s), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(&mut s), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn uniform_moments_and_integer_range() {
        let mut rng = SampleRng::for_sample(7, 3);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| rng.uniform()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        // Standard errors: 1/sqrt(12 n) ≈ 6.5e-4 for the mean.
        assert!((mean - 0.5).abs() < 4e-3, "mean {mean}");
        assert!((var - 1.0 / 12.0).abs() < 2e-3, "variance {var}");
        let mut counts = [0usize; 3];
        for _ in 0..30_000 {
            let k = rng.integer(2, 4);
            assert!((2..=4).contains(&k));
            counts[k - 2] += 1;
        }
        assert!(
            counts.iter().all(|c| (*c as f64 - 10_000.0).abs() < 600.0),
            "{counts:?}"
        );
        let zs: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let m = zs.iter().sum::<f64>() / n as f64;
        let v = zs.iter().map(|z| (z - m).powi(2)).sum::<f64>() / n as f64;
        assert!(
            m.abs() < 1e-2 && (v - 1.0).abs() < 2e-2,
            "normal mean {m} variance {v}"
        );
    }

    #[test]
    fn samples_have_distinct_streams() {
        let a = SampleRng::for_sample(1, 0).next_u64();
        let b = SampleRng::for_sample(1, 1).next_u64();
        let c = SampleRng::for_sample(2, 0).next_u64();
        assert!(a != b && a != c && b != c);
        assert_eq!(a, SampleRng::for_sample(1, 0).next_u64());
    }

    #[test]
    fn shard_parsing_and_round_robin() {
        let s: Shard = "1/3".parse().unwrap();
        assert_eq!(s, Shard { index: 1, count: 3 });
        assert_eq!(s.indices(8), vec![1, 4, 7]);
        assert_eq!(s.tag(), "00001-of-00003");
        for bad in ["3/3", "1", "a/2", "0/0", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        let mut union: Vec<usize> = (0..3)
            .flat_map(|i| Shard::new(i, 3).unwrap().indices(10))
            .collect();
        union.sort();
        assert_eq!(union, (0..10).collect::<Vec<_>>());
    }
}

//! The backend registry: ONE table, [`BACKENDS`], from which everything that names a backend
//! derives — the `[solver]` table of a config ([`SolverConfig`], [`BackendConfig`]), the
//! `--solver NAME` override, `jko solvers` and Python's `jko.solvers()`.
//!
//! Words: a *backend* is a way of computing a JKO step (a crate implementing
//! [`jko_core::StepSolver`], one row of the table, named by `kind`); a *solver* is a backend
//! configured with parameters (the `[solver]` table, a `Box<dyn StepSolver>` built from it).
//!
//! # Adding a backend
//! 1. a crate under `solvers/` whose solver implements [`jko_core::StepSolver`] and
//!    [`jko_core::BackendInfo`] (its name, one-line summary, whether it computes proximal
//!    steps) and whose parameters type has `Default`, serde (`deny_unknown_fields`) and
//!    `validate()`, with a constructor `new(params) -> Result<Self, E>` (`E` converts into
//!    [`RunError`]);
//! 2. one line in the `backends!` table below: `Variant(ParamsType) => SolverType,`;
//! 3. the crate as a dependency of this one (`Cargo.toml`, `[dependencies]` and
//!    `[workspace.dependencies]`).
//!
//! Configs, `--solver`, `jko solvers`, `jko compare` and Python pick it up from the table. A
//! backend that only works on some meshes says so in
//! [`jko_core::StepSolver::supports_mesh`]; nothing here names it.

use crate::check::{ExactWhereAvailable, SurrogateCheck};
use crate::error::RunError;
use jko_core::{BackendInfo, EnergyTerm, Mesh, StepSolver};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// One row of the registry: what `jko solvers` lists and what configs name.
///
/// ```rust
/// let quantile = jko::backend::find("quantile").unwrap();
/// assert!(quantile.proximal && quantile.summary.contains("1D"));
/// assert_eq!(quantile.defaults().name(), "quantile");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Backend {
    /// The name configs use (`kind`).
    pub name: &'static str,
    /// One line on the method.
    pub summary: &'static str,
    /// Whether it computes proximal (JKO) steps, so it can check a surrogate; false for a
    /// surrogate such as `flow`.
    pub proximal: bool,
    defaults: fn() -> BackendConfig,
}

impl Backend {
    /// The backend with its default parameters.
    ///
    /// ```rust
    /// use jko::backend::{BackendConfig, find};
    ///
    /// assert!(matches!(find("newton").unwrap().defaults(), BackendConfig::Newton(_)));
    /// ```
    pub fn defaults(&self) -> BackendConfig {
        (self.defaults)()
    }

    /// The parameters with their defaults, as `jko solvers` lists them (key → value).
    ///
    /// ```rust
    /// let params = jko::backend::find("newton").unwrap().parameters();
    /// assert_eq!(params["tol"], 1e-10);
    /// assert!(!params.contains_key("kind"));
    /// ```
    pub fn parameters(&self) -> Map<String, Value> {
        let mut map = self.defaults().to_map();
        map.remove("kind");
        map
    }
}

/// Declares the registry: the [`BackendConfig`] enum, its dispatch and its serde form, and
/// [`BACKENDS`], from one entry per backend (each backend describes itself in its crate:
/// [`BackendInfo`]).
macro_rules! backends {
    ($(
        $(#[$doc:meta])*
        $variant:ident($params:ty) => $solver:ty,
    )*) => {
        /// The backend of a `[solver]` table and its parameters, tagged by `kind` (generated
        /// from the registry table, one variant per backend).
        ///
        /// ```rust
        /// use jko::backend::BackendConfig;
        ///
        /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
        /// let conic: BackendConfig = toml::from_str("kind = \"conic\"\nlevels = 4")?;
        /// let BackendConfig::Conic(params) = &conic else { unreachable!() };
        /// assert_eq!((conic.name(), params.levels), ("conic", Some(4)));
        /// assert_eq!(toml::from_str::<BackendConfig>(&toml::to_string(&conic)?)?, conic);
        /// let unknown = toml::from_str::<BackendConfig>("kind = \"lbfgs\"").unwrap_err();
        /// assert!(unknown.to_string().contains("unknown variant `lbfgs`, expected one of `conic`"));
        /// # Ok(())
        /// # }
        /// ```
        #[derive(Debug, Clone, PartialEq)]
        pub enum BackendConfig {
            $(
                $(#[$doc])*
                $variant($params),
            )*
        }

        /// The registered backends, in the order `jko solvers` lists them.
        pub const BACKENDS: &[Backend] = &[
            $(
                Backend {
                    name: <$solver as BackendInfo>::NAME,
                    summary: <$solver as BackendInfo>::SUMMARY,
                    proximal: <$solver as BackendInfo>::PROXIMAL,
                    defaults: || BackendConfig::$variant(<$params>::default()),
                },
            )*
        ];

        /// The names `kind` takes, in table order.
        const KINDS: &[&str] = &[$(<$solver as BackendInfo>::NAME,)*];

        /// `kind` first, then the parameters (as a derived internally tagged enum would).
        impl Serialize for BackendConfig {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                #[derive(Serialize)]
                struct Tagged<'a, P> {
                    kind: &'static str,
                    #[serde(flatten)]
                    params: &'a P,
                }
                let kind = self.name();
                match self {
                    $(BackendConfig::$variant(params) => Tagged { kind, params }.serialize(serializer),)*
                }
            }
        }

        /// `kind` selects the backend, the other keys are its parameters.
        impl<'de> Deserialize<'de> for BackendConfig {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                use serde::de::Error;
                let mut params = Map::<String, Value>::deserialize(deserializer)?;
                let kind = match params.remove("kind") {
                    Some(Value::String(kind)) => kind,
                    Some(other) => return Err(D::Error::custom(format!("kind = {other}: not a name"))),
                    None => return Err(D::Error::missing_field("kind")),
                };
                let params = Value::Object(params);
                match kind.as_str() {
                    $(k if k == <$solver as BackendInfo>::NAME => serde_json::from_value(params)
                        .map(BackendConfig::$variant)
                        .map_err(D::Error::custom),)*
                    _ => Err(D::Error::unknown_variant(&kind, KINDS)),
                }
            }
        }

        impl BackendConfig {
            /// The backend's name as written in configs.
            ///
            /// ```rust
            /// use jko::backend::BackendConfig;
            ///
            /// assert_eq!(BackendConfig::Newton(Default::default()).name(), "newton");
            /// ```
            pub fn name(&self) -> &'static str {
                match self {
                    $(BackendConfig::$variant(_) => <$solver as BackendInfo>::NAME,)*
                }
            }

            /// Check the parameters.
            ///
            /// # Errors
            /// [`RunError::Input`] naming the parameter.
            ///
            /// ```rust
            /// use jko::backend::BackendConfig;
            ///
            /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
            /// let bad: BackendConfig = toml::from_str("kind = \"newton\"\ntol = -1.0")?;
            /// assert!(bad.validate().unwrap_err().to_string().contains("tol"));
            /// # Ok(())
            /// # }
            /// ```
            pub fn validate(&self) -> Result<(), RunError> {
                match self {
                    $(BackendConfig::$variant(p) => p.validate()?,)*
                }
                Ok(())
            }

            /// Build the backend.
            ///
            /// # Errors
            /// [`RunError::Input`] / [`RunError::Solver`] when the parameters are invalid.
            ///
            /// ```rust
            /// use jko::backend::BackendConfig;
            /// use jko_core::EnergyTerm;
            ///
            /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
            /// let quantile = BackendConfig::default_for("quantile")?.build()?;
            /// assert_eq!(quantile.name(), "quantile");
            /// assert!(!quantile.treats(EnergyTerm::MaxDensity));
            /// # Ok(())
            /// # }
            /// ```
            pub fn build(&self) -> Result<Box<dyn StepSolver>, RunError> {
                Ok(match self {
                    $(BackendConfig::$variant(p) => Box::new(<$solver>::new(p.clone())?),)*
                })
            }
        }
    };
}

backends! {
    /// Clarabel interior point on the one-step two-point-flux scheme, or on the multi-level
    /// dynamic Benamou–Brenier scheme with `levels` (docs/mathematics.md §2.1, §2.2).
    Conic(jko_conic::ConicParams) => jko_conic::ConicSolver,
    /// Newton on the optimality system of the same one-step scheme (docs/mathematics.md §2.1).
    Newton(jko_newton::NewtonParams) => jko_newton::NewtonSolver,
    /// Entropic JKO (Peyré 2015): generalised Sinkhorn with tensor-product kernels
    /// (docs/mathematics.md §2.3).
    Sinkhorn(jko_sinkhorn::SinkhornParams) => jko_sinkhorn::SinkhornSolver,
    /// 1D Lagrangian (quantile) steps with exact W² (docs/mathematics.md §3).
    Quantile(jko_quantile::QuantileParams) => jko_quantile::QuantileSolver,
    /// JKO-Flow surrogate: the gradient flow of the modified energy J^η over each step
    /// (docs/mathematics.md §2.4); check it against a proximal backend with `check_every`.
    Flow(jko_flow::FlowParams) => jko_flow::FlowSolver,
    /// Exact W² on uniform grids through the dual of the step (docs/mathematics.md §5): the
    /// source-side optimality system solved by Newton–Krylov with a DCT Helmholtz preconditioner.
    Bfm(jko_bfm::BfmParams) => jko_bfm::BfmSolver,
}

/// The registry row of the backend called `name`.
///
/// # Errors
/// [`RunError::UnknownBackend`], listing the known names.
///
/// ```rust
/// assert_eq!(jko::backend::find("sinkhorn").unwrap().name, "sinkhorn");
/// let err = jko::backend::find("lbfgs").unwrap_err();
/// assert!(err.to_string().contains("known backends: conic, newton"), "{err}");
/// ```
pub fn find(name: &str) -> Result<&'static Backend, RunError> {
    BACKENDS
        .iter()
        .find(|b| b.name == name)
        .ok_or_else(|| RunError::UnknownBackend {
            name: name.to_string(),
            known: names(),
        })
}

/// The registered backends' names, in table order.
///
/// ```rust
/// assert_eq!(jko::backend::names(), ["conic", "newton", "sinkhorn", "quantile", "flow", "bfm"]);
/// ```
pub fn names() -> Vec<&'static str> {
    BACKENDS.iter().map(|b| b.name).collect()
}

impl BackendConfig {
    /// Default parameters of the backend called `name`.
    ///
    /// # Errors
    /// [`RunError::UnknownBackend`], listing the known names.
    ///
    /// ```rust
    /// use jko::backend::BackendConfig;
    ///
    /// assert!(matches!(BackendConfig::default_for("quantile"), Ok(BackendConfig::Quantile(_))));
    /// assert!(BackendConfig::default_for("lbfgs").is_err());
    /// ```
    pub fn default_for(name: &str) -> Result<BackendConfig, RunError> {
        Ok(find(name)?.defaults())
    }

    /// The parameters as a JSON object with `kind` (unset optional parameters left out, at every
    /// depth).
    ///
    /// ```rust
    /// use jko::backend::BackendConfig;
    ///
    /// let map = BackendConfig::default_for("conic").unwrap().to_map();
    /// assert_eq!(map["kind"], "conic");
    /// assert!(!map.contains_key("levels"));
    /// // Every backend's defaults survive a TOML round trip (TOML has no null).
    /// for b in jko::backend::BACKENDS {
    ///     let config = jko::backend::SolverConfig::default_for(b.name).unwrap();
    ///     let text = toml::to_string(&config).unwrap();
    ///     assert_eq!(toml::from_str::<jko::backend::SolverConfig>(&text).unwrap(), config);
    /// }
    /// ```
    pub fn to_map(&self) -> Map<String, Value> {
        /// Unset optional values (null), at every depth: TOML has no null.
        fn strip_nulls(map: &mut Map<String, Value>) {
            map.retain(|_, v| !v.is_null());
            for v in map.values_mut() {
                if let Value::Object(inner) = v {
                    strip_nulls(inner);
                }
            }
        }
        match serde_json::to_value(self) {
            Ok(Value::Object(mut map)) => {
                strip_nulls(&mut map);
                map
            }
            // Every params type is a struct: serialised as an object.
            _ => Map::new(),
        }
    }

    /// Time levels of a multi-level scheme: the backend's `levels` parameter, when it has
    /// one set.
    ///
    /// ```rust
    /// use jko::backend::BackendConfig;
    ///
    /// let conic: BackendConfig = toml::from_str("kind = \"conic\"\nlevels = 4").unwrap();
    /// assert_eq!(conic.levels(), Some(4));
    /// assert_eq!(BackendConfig::default_for("newton").unwrap().levels(), None);
    /// ```
    pub fn levels(&self) -> Option<usize> {
        self.to_map()
            .get("levels")
            .and_then(Value::as_u64)
            .map(|l| l as usize)
    }

    /// The same backend with `factor` times as many time levels (`--refine levels`).
    ///
    /// # Errors
    /// [`RunError::Config`] for a backend without `levels` set.
    ///
    /// ```rust
    /// use jko::backend::BackendConfig;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let conic: BackendConfig = toml::from_str("kind = \"conic\"\nlevels = 2")?;
    /// assert_eq!(conic.with_levels_scaled(4)?.levels(), Some(8));
    /// assert!(BackendConfig::default_for("newton")?.with_levels_scaled(2).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_levels_scaled(&self, factor: usize) -> Result<BackendConfig, RunError> {
        let Some(levels) = self.levels() else {
            return Err(RunError::config(
                "solver.levels",
                format!(
                    "--refine levels needs a backend with time levels (conic with `levels`); `{}` has none",
                    self.name()
                ),
            ));
        };
        let mut map = self.to_map();
        map.insert("levels".into(), Value::from(levels * factor));
        serde_json::from_value(Value::Object(map))
            .map_err(|e| RunError::config("solver.levels", e.to_string()))
    }
}

/// The check of a surrogate against true proximal steps (`[solver]` keys `check_every`,
/// `check_solver`, `check_tol`; see [`SurrogateCheck`]): every `every`-th step is also solved by
/// the backend `solver` from the same ρⁿ; the discrepancy is recorded, and above `tol`
/// (relative L1) the proximal result is kept.
///
/// ```rust
/// use jko::backend::{CheckConfig, CheckSolver, SolverConfig};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config: SolverConfig = toml::from_str("kind = \"flow\"\ncheck_every = 5")?;
/// assert_eq!(config.check, Some(CheckConfig { every: 5, ..CheckConfig::default() }));
/// assert_eq!(CheckConfig::default().solver, CheckSolver::Auto);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckConfig {
    /// Check the steps whose number is a multiple of `every` (≥ 1).
    pub every: usize,
    /// The proximal backend of the checks, with its default parameters.
    pub solver: CheckSolver,
    /// Relative L1 discrepancy above which the proximal result is kept.
    pub tol: f64,
}

/// The proximal backend of a surrogate check (`check_solver`): a backend by name, or `auto`
/// (the default), an exact-W² backend where one treats the problem (`quantile` on 1D meshes) and
/// `newton` otherwise ([`crate::check::ExactWhereAvailable`], with the measurement behind the
/// choice). Written in configs as the string `"auto"` or the backend's name.
///
/// ```rust
/// use jko::backend::CheckSolver;
///
/// assert_eq!(CheckSolver::from("auto".to_string()), CheckSolver::Auto);
/// assert_eq!(CheckSolver::from("conic".to_string()).to_string(), "conic");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum CheckSolver {
    /// Exact W² where available, `newton` otherwise.
    #[default]
    Auto,
    /// The named proximal backend with its default parameters.
    Backend(String),
}

impl From<String> for CheckSolver {
    fn from(name: String) -> Self {
        if name == "auto" {
            CheckSolver::Auto
        } else {
            CheckSolver::Backend(name)
        }
    }
}

impl From<CheckSolver> for String {
    fn from(solver: CheckSolver) -> String {
        solver.to_string()
    }
}

impl std::fmt::Display for CheckSolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckSolver::Auto => f.write_str("auto"),
            CheckSolver::Backend(name) => f.write_str(name),
        }
    }
}

impl CheckSolver {
    /// Refuse a backend that is not proximal (a surrogate cannot check a surrogate) or unknown.
    fn validate(&self) -> Result<(), RunError> {
        match self {
            CheckSolver::Backend(name) if !find(name)?.proximal => Err(RunError::config(
                "solver.check_solver",
                format!("must be a proximal backend, not the surrogate `{name}`"),
            )),
            _ => Ok(()),
        }
    }

    /// The checking solver, with its backends' default parameters.
    fn build(&self) -> Result<Box<dyn StepSolver>, RunError> {
        Ok(match self {
            CheckSolver::Auto => Box::new(ExactWhereAvailable::new(
                BackendConfig::default_for("quantile")?.build()?,
                BackendConfig::default_for("newton")?.build()?,
            )),
            CheckSolver::Backend(name) => BackendConfig::default_for(name)?.build()?,
        })
    }
}

/// The relative L1 discrepancy above which a check keeps the proximal step, unless
/// `check_tol` sets another.
pub const DEFAULT_CHECK_TOL: f64 = 1e-2;

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            every: 1,
            solver: CheckSolver::Auto,
            tol: DEFAULT_CHECK_TOL,
        }
    }
}

/// The `[solver]` table: `kind` selects the backend, its parameters sit beside it (each
/// backend's params struct, defaults for missing keys), and the optional keys `check_every`,
/// `check_solver`, `check_tol` check it against a proximal backend ([`CheckConfig`]). One
/// shape for every backend; `jko solvers` lists them.
///
/// ```toml
/// [solver]
/// kind = "flow"
/// variant = "resummed"   # the backend's parameters
/// rtol = 1e-6
/// check_every = 5        # optional: check every 5th step against newton
/// ```
///
/// ```rust
/// use jko::backend::SolverConfig;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config: SolverConfig = toml::from_str("kind = \"sinkhorn\"")?;
/// assert_eq!(config.name(), "sinkhorn");
/// assert_eq!(config, SolverConfig::default_for("sinkhorn")?);
/// let checked: SolverConfig = toml::from_str("kind = \"flow\"\nrtol = 1e-7\ncheck_every = 2\ncheck_solver = \"conic\"")?;
/// let solver = checked.build()?;
/// assert_eq!(solver.name(), "flow");
/// // Round trip through TOML.
/// assert_eq!(toml::from_str::<SolverConfig>(&toml::to_string(&checked)?)?, checked);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SolverConfig {
    /// The backend and its parameters.
    pub backend: BackendConfig,
    /// An optional check against a proximal backend.
    pub check: Option<CheckConfig>,
}

impl Serialize for SolverConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = self.backend.to_map();
        if let Some(c) = &self.check {
            map.insert("check_every".into(), Value::from(c.every));
            map.insert("check_solver".into(), Value::from(c.solver.to_string()));
            map.insert("check_tol".into(), Value::from(c.tol));
        }
        map.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SolverConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut map = Map::<String, Value>::deserialize(deserializer)?;
        let kind = match map.get("kind") {
            Some(Value::String(k)) => k.clone(),
            Some(other) => return Err(D::Error::custom(format!("kind = {other}: not a name"))),
            None => return Err(D::Error::missing_field("kind")),
        };
        find(&kind).map_err(D::Error::custom)?;
        let every = map.remove("check_every");
        let solver = map.remove("check_solver");
        let tol = map.remove("check_tol");
        let check = match every {
            None => {
                if let Some(key) = [("check_solver", &solver), ("check_tol", &tol)]
                    .iter()
                    .find(|(_, v)| v.is_some())
                    .map(|(k, _)| k)
                {
                    return Err(D::Error::custom(format!(
                        "{key} needs check_every (the steps to check)"
                    )));
                }
                None
            }
            Some(every) => {
                let field =
                    |key: &str, e: serde_json::Error| D::Error::custom(format!("{key}: {e}"));
                let defaults = CheckConfig::default();
                Some(CheckConfig {
                    every: serde_json::from_value(every).map_err(|e| field("check_every", e))?,
                    solver: match solver {
                        Some(s) => {
                            serde_json::from_value(s).map_err(|e| field("check_solver", e))?
                        }
                        None => defaults.solver,
                    },
                    tol: match tol {
                        Some(t) => serde_json::from_value(t).map_err(|e| field("check_tol", e))?,
                        None => defaults.tol,
                    },
                })
            }
        };
        let backend: BackendConfig =
            serde_json::from_value(Value::Object(map.clone())).map_err(|e| {
                // serde_json does not say which key a type error is about: name the first key
                // that fails on its own (an unknown key's message already names it).
                let culprit = map.iter().filter(|(k, _)| *k != "kind").find_map(|(k, v)| {
                    let alone = Map::from_iter([
                        ("kind".to_string(), Value::String(kind.clone())),
                        (k.clone(), v.clone()),
                    ]);
                    let e = serde_json::from_value::<BackendConfig>(Value::Object(alone)).err()?;
                    let e = e.to_string();
                    Some(if e.contains(&format!("`{k}`")) {
                        e
                    } else {
                        format!("`{k}`: {e}")
                    })
                });
                D::Error::custom(culprit.unwrap_or_else(|| e.to_string()))
            })?;
        Ok(SolverConfig { backend, check })
    }
}

impl SolverConfig {
    /// The backend `name` with its default parameters and no check.
    ///
    /// # Errors
    /// [`RunError::UnknownBackend`], listing the known names.
    ///
    /// ```rust
    /// use jko::backend::SolverConfig;
    ///
    /// let newton = SolverConfig::default_for("newton").unwrap();
    /// assert!(newton.check.is_none());
    /// assert!(SolverConfig::default_for("lbfgs").unwrap_err().to_string().contains("lbfgs"));
    /// ```
    pub fn default_for(name: &str) -> Result<SolverConfig, RunError> {
        Ok(SolverConfig {
            backend: BackendConfig::default_for(name)?,
            check: None,
        })
    }

    /// The backend's name as written in configs.
    ///
    /// ```rust
    /// use jko::backend::SolverConfig;
    ///
    /// assert_eq!(SolverConfig::default_for("newton").unwrap().name(), "newton");
    /// ```
    pub fn name(&self) -> &'static str {
        self.backend.name()
    }

    /// `--solver NAME`: keep the configured parameters (and check) when NAME is the
    /// configured backend, otherwise switch to NAME's defaults without a check (None: no
    /// override).
    ///
    /// # Errors
    /// [`RunError::UnknownBackend`] for an unknown name, listing the known ones.
    ///
    /// ```rust
    /// use jko::backend::SolverConfig;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let conic: SolverConfig = toml::from_str("kind = \"conic\"\nlevels = 4")?;
    /// assert_eq!(conic.clone().overridden(Some("conic"))?, conic);
    /// assert_eq!(conic.clone().overridden(None)?, conic);
    /// assert_eq!(conic.overridden(Some("newton"))?, SolverConfig::default_for("newton")?);
    /// # Ok(())
    /// # }
    /// ```
    pub fn overridden(self, name: Option<&str>) -> Result<SolverConfig, RunError> {
        match name {
            Some(n) if n != self.name() => SolverConfig::default_for(n),
            _ => Ok(self),
        }
    }

    /// Check the backend's parameters and the check's settings.
    ///
    /// # Errors
    /// [`RunError::Input`] naming the parameter; [`RunError::UnknownBackend`] for an unknown
    /// `check_solver`; [`RunError::Config`] for a check by a backend that is not proximal.
    ///
    /// ```rust
    /// use jko::backend::SolverConfig;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// SolverConfig::default_for("flow")?.validate()?;
    /// let bad: SolverConfig = toml::from_str("kind = \"flow\"\ncheck_every = 0")?;
    /// assert!(bad.validate().unwrap_err().to_string().contains("solver.check_every"));
    /// let circular: SolverConfig = toml::from_str("kind = \"flow\"\ncheck_every = 2\ncheck_solver = \"flow\"")?;
    /// assert!(circular.validate().unwrap_err().to_string().contains("proximal"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn validate(&self) -> Result<(), RunError> {
        self.backend.validate()?;
        if let Some(c) = &self.check {
            jko_core::at_least_one("solver.check_every", c.every)?;
            jko_core::finite_positive("solver.check_tol", c.tol)?;
            c.solver.validate()?;
        }
        Ok(())
    }

    /// Build the solver: the backend, wrapped in a [`SurrogateCheck`] when the config has a
    /// check. Ready for [`crate::driver::Stepper`] or direct
    /// [`StepSolver::solve`] calls.
    ///
    /// # Errors
    /// As [`SolverConfig::validate`], and [`RunError::Input`] / [`RunError::Solver`] from the
    /// backends' constructors.
    ///
    /// ```rust
    /// use jko::backend::SolverConfig;
    /// use jko_core::EnergyTerm;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let quantile = SolverConfig::default_for("quantile")?.build()?;
    /// assert_eq!(quantile.name(), "quantile");
    /// assert!(!quantile.treats(EnergyTerm::MaxDensity));
    /// # Ok(())
    /// # }
    /// ```
    pub fn build(&self) -> Result<Box<dyn StepSolver>, RunError> {
        self.validate()?;
        let backend = self.backend.build()?;
        Ok(match &self.check {
            None => backend,
            Some(c) => Box::new(SurrogateCheck::new(
                backend,
                c.solver.build()?,
                c.every,
                c.tol,
            )),
        })
    }
}

/// The energy terms a solver treats, as words (what `jko solvers` prints).
///
/// ```rust
/// use jko::backend::{SolverConfig, treated_terms};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let bfm = SolverConfig::default_for("bfm")?.build()?;
/// let terms = treated_terms(bfm.as_ref());
/// assert!(terms.contains(&"entropy".to_string()));
/// assert!(terms.contains(&"porous".to_string()));
/// assert!(terms.contains(&"max_density".to_string()));
/// let quantile = SolverConfig::default_for("quantile")?.build()?;
/// assert!(!treated_terms(quantile.as_ref()).contains(&"max_density".to_string()));
/// # Ok(())
/// # }
/// ```
pub fn treated_terms(solver: &dyn StepSolver) -> Vec<String> {
    EnergyTerm::ALL
        .iter()
        .filter(|t| solver.treats(**t))
        .map(|t| t.to_string())
        .collect()
}

/// The kinds of mesh a solver works on, probed with [`StepSolver::supports_mesh`] on one
/// small mesh of each kind: `1D`, `2D`, `3D` grids and a `masked 2D` grid.
///
/// ```rust
/// use jko::backend::{SolverConfig, supported_meshes};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let quantile = SolverConfig::default_for("quantile")?.build()?;
/// assert_eq!(supported_meshes(quantile.as_ref()), ["1D"]);
/// let newton = SolverConfig::default_for("newton")?.build()?;
/// assert_eq!(supported_meshes(newton.as_ref()).len(), 4);
/// # Ok(())
/// # }
/// ```
pub fn supported_meshes(solver: &dyn StepSolver) -> Vec<&'static str> {
    let probes: [(&str, Result<Mesh, _>); 4] = [
        ("1D", Mesh::grid(&[4], &[0.0], &[1.0])),
        ("2D", Mesh::grid(&[4, 4], &[0.0; 2], &[1.0; 2])),
        ("3D", Mesh::grid(&[4, 4, 4], &[0.0; 3], &[1.0; 3])),
        (
            "masked 2D",
            Mesh::masked_grid(
                &[4, 4],
                &[0.0; 2],
                &[1.0; 2],
                Some((0..16).map(|i| i != 5).collect()),
            ),
        ),
    ];
    probes
        .into_iter()
        .filter(|(_, mesh)| mesh.as_ref().is_ok_and(|m| solver.supports_mesh(m).is_ok()))
        .map(|(name, _)| name)
        .collect()
}

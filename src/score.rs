//! Scoring a candidate JKO step: how far a density ρ̂ proposed for ρⁿ⁺¹ (by a learned
//! operator, another backend, a perturbation) is from the true minimiser of the JKO objective
//!
//! J(ρ) = W²(ρ, ρⁿ)/(2τ) + F_h(ρ)
//!
//! (docs/mathematics.md §9). [`score`] returns J(ρ̂), the minimum J(ρ*), the suboptimality gap
//! J(ρ̂) − J(ρ*) ≥ 0 and the distances from ρ̂ to ρ*. The gap is the natural metric for a
//! learned step: it is zero only at the minimiser and, J being (1/τ + λ)-convex along
//! (generalised) geodesics for a λ-convex F, it bounds the distance,
//! gap ≥ (1/τ + λ)/2 · W²(ρ̂, ρ*).
//!
//! What "W²" and "the minimiser" are depends on the mesh ([`ScoreMethod`]):
//!
//! - **1D** ([`ScoreMethod::ExactCells`]): densities are cellwise constant on the line of
//!   cells; W² between two of them is computed exactly (their quantile functions are
//!   piecewise linear, [`w2_squared_cells`]); F_h is the engine's cell energy. ρ* minimises
//!   this J over all cellwise-constant densities of the mesh, computed here by a barrier
//!   Newton method in the cumulative masses whose W² Hessian is tridiagonal
//!   ([`exact_step_1d`]); its optimality is certified to `certificate`.
//! - **2D** grids without masks, entropy, no porous medium or cap ([`ScoreMethod::SemiDiscrete`]):
//!   ρⁿ is a cellwise-constant density and ρ atoms of mass |K|ρ_j at the cell centres; W² between
//!   them is exact semi-discrete transport (Laguerre cells), and ρ* is the exact minimiser of
//!   this J ([`jko_bfm::semidiscrete_jko_step`]), certified by weak duality: its dual G(φ) ≤ min J
//!   and J(ρ*) is evaluated exactly (the Laguerre plan is optimal for ρ*'s masses). J(ρ̂) uses
//!   the same W² ([`jko_bfm::semidiscrete_w2`], bracketed; the bracket joins the certificate).
//!   Why this problem and not bfm's step with a refined-transform W² (not the minimiser of any
//!   J built from that transform, whose sup over ψ is not concave in 2D) or the lattice W² of
//!   the cell-centre measures (certifiable, but mass only moves where |∇(f′(ρ) + V)| > h/(2τ)):
//!   docs/mathematics.md §9.2. K(ρⁿ, ρⁿ) = M(h₀² + h₁²)/(24τ) ≠ 0 (the cells' variance), so
//!   `relative_gap` divides by J(ρⁿ) − J(ρ*).
//! - **3D, and 2D otherwise** ([`ScoreMethod::ConicMultiLevel`]): W² is the multi-level
//!   Benamou–Brenier discretisation with L time levels (docs/mathematics.md §2.2; `conic` with
//!   `levels = L`), which converges to W² as h → 0 and L → ∞ but is not exact at finite L; ρ* is
//!   that scheme's step and J(ρ̂) uses the same discrete W²
//!   ([`jko_conic::ConicSolver::transport`]). This is stated in the score.
//!
//! Interaction energies are frozen at ρⁿ, as in every backend.

use crate::error::RunError;
use jko_core::{Energy, InputError, Mesh, StepEnergy, StepError, StepSolver};
use jko_quantile::LineMesh;
use ndarray::Array1;
use serde::{Deserialize, Serialize};

/// How a score was computed (what W² and the minimiser are).
///
/// ```rust
/// use jko::score::ScoreMethod;
///
/// assert!(ScoreMethod::ExactCells.is_exact() && ScoreMethod::SemiDiscrete.is_exact());
/// assert!(!ScoreMethod::ConicMultiLevel { levels: 4 }.is_exact());
/// assert!(ScoreMethod::ConicMultiLevel { levels: 4 }.to_string().contains("L = 4"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ScoreMethod {
    /// 1D: exact W² between cellwise-constant densities; ρ* the exact minimiser over them.
    ExactCells,
    /// 2D, unmasked grid, entropy (no porous medium or cap): exact W² from ρⁿ as a
    /// cellwise-constant density to ρ as atoms at the cell centres (semi-discrete transport);
    /// ρ* the exact minimiser of that J (module docs).
    SemiDiscrete,
    /// 2D/3D otherwise: the multi-level Benamou–Brenier W² with `levels` time levels (conic).
    ConicMultiLevel {
        /// Number of time levels L.
        levels: usize,
    },
}

impl ScoreMethod {
    /// True when W² is exact for the discrete densities (not a discretisation of it).
    ///
    /// ```rust
    /// assert!(jko::score::ScoreMethod::ExactCells.is_exact());
    /// ```
    pub fn is_exact(&self) -> bool {
        matches!(self, ScoreMethod::ExactCells | ScoreMethod::SemiDiscrete)
    }
}

impl std::fmt::Display for ScoreMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScoreMethod::ExactCells => {
                write!(f, "exact W2 between cellwise-constant densities (1D)")
            }
            ScoreMethod::SemiDiscrete => write!(
                f,
                "exact W2 from rho^n as cellwise-constant density to atoms at the cell centres (2D semi-discrete)"
            ),
            ScoreMethod::ConicMultiLevel { levels } => write!(
                f,
                "multi-level Benamou-Brenier W2 (conic, L = {levels}; converges to W2 as h -> 0, L -> oo, not exact)"
            ),
        }
    }
}

/// Options of [`score`].
///
/// ```rust
/// let opts = jko::score::ScoreOptions::default();
/// assert_eq!((opts.levels, opts.normalize), (4, false));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreOptions {
    /// Time levels L of the 2D/3D discretisation of W² (ignored in 1D). Default 4.
    pub levels: usize,
    /// Rescale a candidate whose mass differs from ρⁿ's (the defect is reported); without it
    /// a relative mass difference above 1e-9 is an error, since W² compares equal masses.
    pub normalize: bool,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        ScoreOptions {
            levels: 4,
            normalize: false,
        }
    }
}

/// The score of a candidate step ([`score`]).
///
/// ```rust
/// use jko::score::{ScoreOptions, score};
/// use jko_core::{Energy, Mesh, Potential};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::grid(&[200], &[-5.0], &[5.0])?;
/// let energy = Energy::fokker_planck(1.0, Potential::Quadratic { center: vec![0.0], stiffness: 1.0 });
/// let prev = mesh.sample(|x| (-(x[0] - 1.0).powi(2)).exp());
/// let prev = &prev / mesh.mass(&prev);
/// // ρⁿ itself as the candidate: a feasible point, but not the minimiser.
/// let s = score(&mesh, &energy, 0.1, &prev, &prev, &ScoreOptions::default())?;
/// assert!(s.gap > 0.0 && s.kinetic == 0.0);
/// // Its own minimiser scores (numerically) zero.
/// let best = score(&mesh, &energy, 0.1, &prev, &s.minimiser, &ScoreOptions::default())?;
/// assert!(best.gap.abs() < 1e-10 && best.w2_to_minimiser < 1e-6);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// What W² and the minimiser are.
    pub method: ScoreMethod,
    /// J(ρ̂) = W²(ρ̂, ρⁿ)/(2τ) + F_h(ρ̂).
    pub objective: f64,
    /// J(ρ*), the minimum (computed; at most `certificate` above the true minimum).
    pub minimum: f64,
    /// J(ρ̂) − J(ρ*): the suboptimality gap.
    pub gap: f64,
    /// gap / (J(ρⁿ) − J(ρ*)): the fraction of the exact step's decrease of J that ρ̂ loses
    /// (`None` when ρⁿ is already the minimiser).
    pub relative_gap: Option<f64>,
    /// W²(ρ̂, ρⁿ).
    pub kinetic: f64,
    /// F_h(ρ̂) (frozen interaction).
    pub energy: f64,
    /// W²(ρ*, ρⁿ).
    pub minimiser_kinetic: f64,
    /// F_h(ρ*).
    pub minimiser_energy: f64,
    /// W(ρ̂, ρ*) (the distance, not squared; semi-discrete method: the lattice W of `jko distance`).
    pub w2_to_minimiser: f64,
    /// Σ_K |K| |ρ̂_K − ρ*_K|.
    pub l1_to_minimiser: f64,
    /// l1_to_minimiser / mass.
    pub relative_l1: f64,
    /// (mass(ρ̂) − mass(ρⁿ)) / mass(ρⁿ) before any rescaling.
    pub mass_defect: f64,
    /// Upper bound on J(ρ*) − min J: 1D, the barrier method's bound (n_constraints · μ plus
    /// the last Newton decrement); semi-discrete, J(ρ*) − G(φ) plus the width of the
    /// candidate's W² bracket /(2τ); conic, Clarabel's duality-gap tolerances on the step.
    pub certificate: f64,
    /// ρ*, cell values (not serialised).
    #[serde(skip)]
    pub minimiser: Array1<f64>,
}

/// Score the candidate `candidate` for the JKO step from `rho_prev` with time step `tau` and
/// energy `energy` on `mesh` (see the module docs).
///
/// # Errors
/// [`RunError::Input`] for invalid densities (negative, non-finite, wrong length), τ, a mass
/// defect above 1e-9 without `normalize`, a candidate above `max_density`, or a mesh that is
/// neither a line of cells (1D) nor treated by the conic backend;
/// [`RunError::Solver`] when the minimiser cannot be computed.
///
/// ```rust
/// use jko::score::{ScoreMethod, ScoreOptions, score};
/// use jko_core::exact::{Gaussian, OrnsteinUhlenbeck};
/// use jko_core::{Energy, Mesh, Potential};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // OU: the exact JKO iterate of a Gaussian, as cell averages, against the true minimiser.
/// let mesh = Mesh::grid(&[400], &[-6.0], &[6.0])?;
/// let energy = Energy::fokker_planck(1.0, Potential::Quadratic { center: vec![0.0], stiffness: 1.0 });
/// let g0 = Gaussian::diagonal(&[1.0], &[0.6]);
/// let g1 = OrnsteinUhlenbeck::standard(1).jko_step(&g0, 0.1);
/// let prev = jko::score::cell_averages_1d(&mesh, |x| g0.density(&[x]))?;
/// let exact = jko::score::cell_averages_1d(&mesh, |x| g1.density(&[x]))?;
/// let s = score(&mesh, &energy, 0.1, &prev, &exact, &ScoreOptions::default())?;
/// assert_eq!(s.method, ScoreMethod::ExactCells);
/// assert!(s.gap >= -1e-12 && s.gap < 1e-6, "gap {}", s.gap);
/// # Ok(())
/// # }
/// ```
pub fn score(
    mesh: &Mesh,
    energy: &Energy,
    tau: f64,
    rho_prev: &Array1<f64>,
    candidate: &Array1<f64>,
    options: &ScoreOptions,
) -> Result<Score, RunError> {
    jko_core::finite_positive("tau", tau)?;
    energy.validate()?;
    jko_core::check_density(mesh, rho_prev, "rho_prev")?;
    jko_core::check_density(mesh, candidate, "candidate")?;
    let mass = mesh.mass(rho_prev);
    let mass_defect = (mesh.mass(candidate) - mass) / mass;
    let candidate = if mass_defect.abs() > 1e-9 {
        if !options.normalize {
            return Err(InputError::parameter(
                "candidate",
                format!("relative mass defect {mass_defect:.3e}"),
                "W2 compares densities of equal mass: rescale the candidate to rho_prev's mass (--normalize)",
            )
            .into());
        }
        candidate * (mass / mesh.mass(candidate))
    } else {
        candidate.clone()
    };
    let frozen = energy.freeze(mesh, rho_prev)?;
    if let Some(rmax) = frozen.max_density
        && let Some((k, r)) = candidate
            .iter()
            .enumerate()
            .find(|(_, r)| **r > rmax * (1.0 + 1e-9))
    {
        return Err(InputError::parameter(
            "candidate",
            format!("{r} at cell {k}"),
            &format!("exceeds max_density = {rmax}: J is +infinity there"),
        )
        .into());
    }
    let f_prev = frozen.value(mesh, rho_prev);
    let step = ScoredStep {
        mesh,
        energy: &frozen,
        tau,
        rho_prev,
        candidate: &candidate,
    };
    let parts = match method_for(mesh, energy, options.levels) {
        ScoreMethod::ExactCells => step.exact_1d(&LineMesh::new(mesh)?)?,
        ScoreMethod::SemiDiscrete => step.semidiscrete()?,
        ScoreMethod::ConicMultiLevel { levels } => step.conic(levels)?,
    };
    let objective = parts.kinetic / (2.0 * tau) + frozen.value(mesh, &candidate);
    let minimum = parts.minimiser_kinetic / (2.0 * tau) + frozen.value(mesh, &parts.minimiser);
    let gap = objective - minimum;
    let decrease = parts.prev_kinetic / (2.0 * tau) + f_prev - minimum;
    let l1 = mesh.l1_distance(&candidate, &parts.minimiser);
    Ok(Score {
        method: parts.method,
        objective,
        minimum,
        gap,
        relative_gap: (decrease > 0.0).then(|| gap / decrease),
        kinetic: parts.kinetic,
        energy: frozen.value(mesh, &candidate),
        minimiser_kinetic: parts.minimiser_kinetic,
        minimiser_energy: frozen.value(mesh, &parts.minimiser),
        w2_to_minimiser: parts.w2_squared_to_minimiser.max(0.0).sqrt(),
        l1_to_minimiser: l1,
        relative_l1: l1 / mass,
        mass_defect,
        certificate: parts.certificate,
        minimiser: parts.minimiser,
    })
}

/// What a method computes for [`score`].
struct Parts {
    method: ScoreMethod,
    /// W²(ρⁿ, ρⁿ) in the method's discrete W² (not 0 for the semi-discrete one).
    prev_kinetic: f64,
    kinetic: f64,
    minimiser: Array1<f64>,
    minimiser_kinetic: f64,
    w2_squared_to_minimiser: f64,
    certificate: f64,
}

/// The method [`score`] uses for `energy` on `mesh`: [`ScoreMethod::ExactCells`] on a line of
/// cells, [`ScoreMethod::SemiDiscrete`] on a 2D grid without masks with an entropy and neither
/// porous medium nor cap (ρ = e^{(−φ − V)/β − 1} is then a function of the dual potential),
/// [`ScoreMethod::ConicMultiLevel`] with `levels` otherwise.
///
/// ```rust
/// use jko::score::{ScoreMethod, method_for};
/// use jko_core::{Energy, Mesh};
///
/// let square = Mesh::grid(&[8, 8], &[0.0, 0.0], &[1.0, 1.0]).unwrap();
/// let ou = Energy::ornstein_uhlenbeck(2);
/// assert_eq!(method_for(&square, &ou, 4), ScoreMethod::SemiDiscrete);
/// let porous = Energy { porous: Some(2.0), ..Energy::default() };
/// assert_eq!(method_for(&square, &porous, 4), ScoreMethod::ConicMultiLevel { levels: 4 });
/// ```
pub fn method_for(mesh: &Mesh, energy: &Energy, levels: usize) -> ScoreMethod {
    let unmasked = mesh.as_grid().is_some_and(|g| g.mask.is_none());
    match mesh.dim() {
        1 => ScoreMethod::ExactCells,
        2 if unmasked
            && energy.entropy.is_some()
            && energy.porous.is_none()
            && energy.max_density.is_none() =>
        {
            ScoreMethod::SemiDiscrete
        }
        _ => ScoreMethod::ConicMultiLevel { levels },
    }
}

/// The JKO step [`score`] measures, as each method reads it: from `rho_prev` with time step
/// `tau` and the energy frozen at ρⁿ, on `mesh`, and the candidate (rescaled to ρⁿ's mass).
struct ScoredStep<'a> {
    mesh: &'a Mesh,
    energy: &'a StepEnergy,
    tau: f64,
    rho_prev: &'a Array1<f64>,
    candidate: &'a Array1<f64>,
}

impl ScoredStep<'_> {
    fn exact_1d(&self, line: &LineMesh) -> Result<Parts, RunError> {
        let mesh = self.mesh;
        let masses = |rho: &Array1<f64>| -> Vec<f64> {
            line.order()
                .iter()
                .map(|&k| mesh.volumes()[k] * rho[k])
                .collect()
        };
        let (prev, cand) = (masses(self.rho_prev), masses(self.candidate));
        let step = exact_step_1d(mesh, line, self.energy, self.tau, self.rho_prev)?;
        let star = masses(&step.rho);
        let edges = line.edges();
        Ok(Parts {
            method: ScoreMethod::ExactCells,
            prev_kinetic: 0.0,
            kinetic: w2_squared_masses(edges, &cand, &prev),
            minimiser_kinetic: w2_squared_masses(edges, &star, &prev),
            w2_squared_to_minimiser: w2_squared_masses(edges, &cand, &star),
            minimiser: step.rho,
            certificate: step.certificate,
        })
    }

    fn semidiscrete(&self) -> Result<Parts, RunError> {
        let (mesh, rho_prev, candidate) = (self.mesh, self.rho_prev, self.candidate);
        let options = jko_bfm::SemiDiscreteOptions::default();
        let beta = self.energy.entropy.unwrap_or(1.0);
        let step = jko_bfm::semidiscrete_jko_step(
            mesh,
            rho_prev,
            self.tau,
            beta,
            self.energy.potential.as_ref(),
            &options,
        )?;
        // The candidate's W² from the minimiser's potential: near ρ* Newton starts in its
        // quadratic region.
        let cand =
            jko_bfm::semidiscrete_w2(mesh, rho_prev, candidate, Some(&step.potential), &options)?;
        // W(ρ̂, ρ*) between two atomic measures: the lattice W² of `jko distance`.
        let to_min = jko_bfm::w2_squared(mesh, candidate, &step.rho, &Default::default())?.w2;
        let grid = mesh.as_grid().map(|g| g.spacing()).unwrap_or_default();
        let cell_variance: f64 = grid.iter().map(|h| h * h / 12.0).sum();
        Ok(Parts {
            method: ScoreMethod::SemiDiscrete,
            prev_kinetic: mesh.mass(rho_prev) * cell_variance,
            kinetic: cand.w2,
            minimiser_kinetic: step.kinetic,
            w2_squared_to_minimiser: to_min,
            minimiser: step.rho,
            // J(ρ*) − min J, plus the candidate's W² bracket (its dual value is used).
            certificate: step.certificate + (cand.w2_upper - cand.w2) / (2.0 * self.tau),
        })
    }

    fn conic(&self, levels: usize) -> Result<Parts, RunError> {
        let mesh = self.mesh;
        let params = jko_conic::ConicParams {
            levels: Some(levels),
            ..Default::default()
        };
        let certificate =
            params.tol_gap_abs + params.tol_gap_rel * self.energy.value(mesh, self.rho_prev).abs();
        let solver = jko_conic::ConicSolver::new(params)?;
        solver.supports_mesh(mesh).map_err(RunError::Solver)?;
        let problem = jko_core::JkoStep::new(mesh, self.rho_prev, self.tau, self.energy)?;
        let out = solver.solve(&problem, None).map_err(RunError::Solver)?;
        let transport = |a: &Array1<f64>, b: &Array1<f64>| -> Result<f64, RunError> {
            Ok(solver
                .transport(mesh, a, b)
                .map_err(RunError::Solver)?
                .action)
        };
        Ok(Parts {
            method: ScoreMethod::ConicMultiLevel { levels },
            prev_kinetic: 0.0,
            kinetic: transport(self.rho_prev, self.candidate)?,
            minimiser_kinetic: out.info.kinetic,
            w2_squared_to_minimiser: transport(self.candidate, &out.rho)?,
            minimiser: out.rho,
            certificate,
        })
    }
}

/// Exact W²(a, b) between two cellwise-constant densities on a 1D mesh whose cells tile an
/// interval: ∫₀^M |X_a(s) − X_b(s)|² ds with X_a, X_b their quantile functions, which are
/// piecewise linear in s (knots at the cumulative masses), integrated exactly.
///
/// # Errors
/// [`RunError::Input`] for a mesh that is not one line of cells, invalid densities, or
/// masses that differ by more than 1e-9 (relative).
///
/// ```rust
/// use jko::score::w2_squared_cells;
/// use jko_core::Mesh;
/// use ndarray::array;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Mass 2 on [0, 1] vs mass 2 on [1, 2]: a translation by 1 costs mass × 1² = 2.
/// let mesh = Mesh::grid(&[4], &[0.0], &[2.0])?;
/// let w2 = w2_squared_cells(&mesh, &array![2.0, 2.0, 0.0, 0.0], &array![0.0, 0.0, 2.0, 2.0])?;
/// assert!((w2 - 2.0).abs() < 1e-15);
/// // Uniform on [0, 2] vs uniform on [0, 1]: X_b = X_a/2, W² = ∫₀¹ (2s − s)² ds = 1/3.
/// let w2 = w2_squared_cells(&mesh, &array![0.5, 0.5, 0.5, 0.5], &array![1.0, 1.0, 0.0, 0.0])?;
/// assert!((w2 - 1.0 / 3.0).abs() < 1e-15);
/// # Ok(())
/// # }
/// ```
pub fn w2_squared_cells(mesh: &Mesh, a: &Array1<f64>, b: &Array1<f64>) -> Result<f64, RunError> {
    let line = LineMesh::new(mesh)?;
    jko_bfm::equal_masses(mesh, a, b, ("a", "b"))?;
    let masses = |rho: &Array1<f64>| -> Vec<f64> {
        line.order()
            .iter()
            .map(|&k| mesh.volumes()[k] * rho[k])
            .collect()
    };
    Ok(w2_squared_masses(line.edges(), &masses(a), &masses(b)))
}

/// The Wasserstein distance W₂(a, b) (not squared) between two densities of equal mass: what
/// `jko distance` prints and `jko.distance` returns. On a 1D grid mesh exact among
/// cellwise-constant densities ([`w2_squared_cells`]); on a 2D/3D uniform grid without masks by
/// the back-and-forth method ([`jko_bfm::w2_squared`]: the dual value, a lower bound of the W₂²
/// of the cell-centre measures, within O(h²) of the continuous W₂²). Other meshes are refused
/// here, once for both.
///
/// # Errors
/// [`InputError::InvalidMesh`] for a mesh from a file or a masked 2D/3D grid; the errors of
/// [`w2_squared_cells`] and [`jko_bfm::w2_squared`] (densities, unequal masses, no convergence).
///
/// ```rust
/// use jko::score::w2_distance;
/// use jko_core::Mesh;
/// use ndarray::array;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Mass 1 on [0, 1] moved to [1, 2]: W₂ = 1.
/// let line = Mesh::grid(&[4], &[0.0], &[2.0])?;
/// let w = w2_distance(&line, &array![1.0, 1.0, 0.0, 0.0], &array![0.0, 0.0, 1.0, 1.0])?;
/// assert!((w - 1.0).abs() < 1e-15);
/// // In 2D, a block of 2×2 cells moved by 2 cells (1.0): W₂ = 1.
/// let square = Mesh::grid(&[6, 6], &[0.0, 0.0], &[3.0, 3.0])?;
/// let block = |j0: usize| square.sample(|x| {
///     let (i, j) = ((x[0] / 0.5) as usize, (x[1] / 0.5) as usize);
///     if (1..3).contains(&i) && (j0..j0 + 2).contains(&j) { 1.0 } else { 0.0 }
/// });
/// let w = w2_distance(&square, &block(1), &block(3))?;
/// assert!((w - 1.0).abs() < 1e-12, "{w}");
/// # Ok(())
/// # }
/// ```
pub fn w2_distance(mesh: &Mesh, a: &Array1<f64>, b: &Array1<f64>) -> Result<f64, RunError> {
    let Some(grid) = mesh.as_grid() else {
        return Err(InputError::InvalidMesh(format!(
            "W2 distances need a grid mesh (1D: exact by quantiles; 2D/3D: back-and-forth \
             method); this is a {}D mesh read from a file",
            mesh.dim()
        ))
        .into());
    };
    if grid.cells.len() == 1 {
        return Ok(w2_squared_cells(mesh, a, b)?.sqrt());
    }
    if grid.mask.is_some() {
        return Err(InputError::InvalidMesh(format!(
            "W2 distances on {}D grids with masks or obstacles are not available (the \
             back-and-forth method needs the whole box; issue 20)",
            mesh.dim()
        ))
        .into());
    }
    let t = jko_bfm::w2_squared(mesh, a, b, &jko_bfm::TransportOptions::default())?;
    Ok(t.w2.max(0.0).sqrt())
}

/// Cell averages (1/|K|)∫_K ρ of a density given as a function of x on a 1D grid mesh, by
/// 8-point Gauss–Legendre quadrature on each cell (exact for polynomials of degree 15):
/// the natural way to put an exact solution onto cells for [`score`].
///
/// # Errors
/// [`RunError::Input`] when the mesh is not one line of cells.
///
/// ```rust
/// use jko_core::Mesh;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::grid(&[3], &[0.0], &[3.0])?;
/// let rho = jko::score::cell_averages_1d(&mesh, |x| x * x)?;
/// // ∫₀¹ x² = 1/3, ∫₁² x² = 7/3, ∫₂³ x² = 19/3.
/// assert!((rho[0] - 1.0 / 3.0).abs() < 1e-14 && (rho[2] - 19.0 / 3.0).abs() < 1e-13);
/// # Ok(())
/// # }
/// ```
pub fn cell_averages_1d(mesh: &Mesh, f: impl Fn(f64) -> f64) -> Result<Array1<f64>, RunError> {
    const NODES: [(f64, f64); 4] = [
        (0.183_434_642_495_649_8, 0.362_683_783_378_362),
        (0.525_532_409_916_329, 0.313_706_645_877_887_3),
        (0.796_666_477_413_626_7, 0.222_381_034_453_374_5),
        (0.960_289_856_497_536_3, 0.101_228_536_290_376_3),
    ];
    let line = LineMesh::new(mesh)?;
    let e = line.edges();
    let mut rho = Array1::zeros(mesh.n_cells());
    for (j, &k) in line.order().iter().enumerate() {
        let (c, r) = (0.5 * (e[j] + e[j + 1]), 0.5 * (e[j + 1] - e[j]));
        let sum: f64 = NODES
            .iter()
            .map(|&(x, w)| w * (f(c - r * x) + f(c + r * x)))
            .sum();
        rho[k] = 0.5 * sum;
    }
    Ok(rho)
}

/// The exact JKO step among cellwise-constant densities (1D), from [`exact_step_1d`].
///
/// ```rust
/// use jko_core::{Energy, Mesh};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::grid(&[50], &[0.0], &[1.0])?;
/// let line = jko_quantile::LineMesh::new(&mesh)?;
/// let energy = Energy { entropy: Some(1.0), ..Default::default() };
/// let rho0 = mesh.sample(|x| 1.0 + 0.5 * (std::f64::consts::PI * x[0]).cos());
/// let step = jko::score::exact_step_1d(&mesh, &line, &energy.freeze(&mesh, &rho0)?, 0.01, &rho0)?;
/// assert!((mesh.mass(&step.rho) - mesh.mass(&rho0)).abs() < 1e-13);
/// assert!(step.certificate < 1e-12 && step.iterations > 0);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ExactStep1d {
    /// ρ*, cell values.
    pub rho: Array1<f64>,
    /// Upper bound on J(ρ*) − min J.
    pub certificate: f64,
    /// Newton iterations over all barrier stages.
    pub iterations: usize,
}

/// Minimise J(ρ) = W²(ρ, ρⁿ)/(2τ) + F_h(ρ) over cellwise-constant densities of mass M on a
/// line of cells, W² exact (docs/mathematics.md §9.1).
///
/// Unknowns: the cumulative masses C_i at the interior faces (C_0 = 0, C_N = M), so that
/// the candidate's CDF F is the piecewise-linear interpolant of C. In these coordinates
/// ∂W²/∂C_i = −2∫(x − T(x)) λ_i(x) dx and ∂²W²[δC, δC] = 2∫ Xⁿ′(F(x)) δF(x)² dx (T = Xⁿ∘F the
/// monotone map to ρⁿ, λ_i the hat function of face i, δF = Σ δC_i λ_i), so the Hessian is
/// tridiagonal; so is the energy's, F_h being a sum over cells of m_j = C_{j+1} − C_j.
/// Constraints m_j ≥ 0 (and m_j ≤ ρ_max |K_j|) by a logarithmic barrier μ → 0 (ten stages
/// down to 1e-17 of the problem's scale); each stage by Newton with a backtracking line
/// search. Mass updates are recovered from the Newton step cell by cell (δm_j ∝ 1/f″), so
/// far tails of 1e-30 keep their relative precision — except where that recovery is the less
/// accurate one (full cells without internal energy, f″ = μ/m² alone), where δm_j is the
/// difference of the face updates. Below the objective's resolution the line search is
/// replaced by full Newton steps while the decrement keeps falling. Densities with empty
/// cells and no internal energy (a block translated by a linear potential) are solved.
///
/// # Errors
/// [`RunError::Input`] when a cap leaves no strictly feasible density
/// (ρ_max·|Ω| ≤ M); [`RunError::Solver`] (`StepError::NotConverged`) when a barrier stage
/// needs more than 100 Newton iterations.
///
/// ```rust
/// use jko_core::{Energy, Mesh, Potential};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Ornstein–Uhlenbeck from a displaced Gaussian: the step keeps the mass, is certified, and
/// // moves the mean towards 0 by the exact factor 1/(1 + τ) up to O(h²).
/// let mesh = Mesh::grid(&[200], &[-5.0], &[5.0])?;
/// let line = jko_quantile::LineMesh::new(&mesh)?;
/// let energy = Energy::fokker_planck(1.0, Potential::Quadratic { center: vec![0.0], stiffness: 1.0 });
/// let rho0 = mesh.sample(|x| (-(x[0] - 1.0).powi(2) / 0.5).exp());
/// let rho0 = &rho0 / mesh.mass(&rho0);
/// let step = jko::score::exact_step_1d(&mesh, &line, &energy.freeze(&mesh, &rho0)?, 0.1, &rho0)?;
/// assert!((mesh.mass(&step.rho) - 1.0).abs() < 1e-13 && step.certificate < 1e-12);
/// let mean = |r: &ndarray::Array1<f64>| (0..200).map(|k| mesh.centre(k)[0] * r[k] * 0.05).sum::<f64>();
/// assert!((mean(&step.rho) - mean(&rho0) / 1.1).abs() < 1e-3, "{}", mean(&step.rho));
/// # Ok(())
/// # }
/// ```
pub fn exact_step_1d(
    mesh: &Mesh,
    line: &LineMesh,
    energy: &StepEnergy,
    tau: f64,
    rho_prev: &Array1<f64>,
) -> Result<ExactStep1d, RunError> {
    let n = line.len();
    let order = line.order();
    let edges = line.edges();
    let h: Vec<f64> = (0..n).map(|j| edges[j + 1] - edges[j]).collect();
    let prev: Vec<f64> = order
        .iter()
        .map(|&k| mesh.volumes()[k] * rho_prev[k])
        .collect();
    let mass: f64 = prev.iter().sum();
    let potential: Vec<f64> = order
        .iter()
        .map(|&k| energy.potential.as_ref().map_or(0.0, |p| p[k]))
        .collect();
    let cap: Option<Vec<f64>> = energy
        .max_density
        .map(|r| h.iter().map(|hj| r * hj).collect());
    if let Some(c) = &cap
        && c.iter().sum::<f64>() <= mass * (1.0 + 1e-12)
    {
        return Err(InputError::parameter(
            "max_density",
            energy.max_density.unwrap_or(0.0),
            "leaves no room: rho_max * |domain| must exceed the mass for a strictly feasible step",
        )
        .into());
    }
    let problem = Problem1d {
        edges,
        h: &h,
        prev: &prev,
        potential: &potential,
        cap: cap.as_deref(),
        energy,
        tau,
    };
    // Start: ρⁿ blended with the uniform density (strictly inside every constraint).
    let total: f64 = h.iter().sum();
    let theta = 1e-3;
    let mut m: Vec<f64> = (0..n)
        .map(|j| (1.0 - theta) * prev[j] + theta * mass * h[j] / total)
        .collect();
    let scale = mass + energy.value(mesh, rho_prev).abs();
    let constraints = n as f64 * if cap.is_some() { 2.0 } else { 1.0 };
    let mu_final = 1e-17 * scale / n as f64;
    let mut mu = 1e-5 * scale / n as f64;
    let mut iterations = 0;
    let mut decrement;
    loop {
        let last = mu <= mu_final;
        let tol = if last {
            1e-16 * scale
        } else {
            constraints * mu
        };
        let mut its = 0;
        let mut invisible = f64::INFINITY;
        loop {
            let (dm, dec) = problem.newton_direction(&m, mu);
            decrement = dec;
            if dec / 2.0 <= tol {
                break;
            }
            let phi0 = problem.objective(&m, mu);
            its += 1;
            iterations += 1;
            if its > 100 {
                return Err(RunError::Solver(StepError::NotConverged {
                    solver: "exact 1D score".into(),
                    status: format!("Newton stalled at barrier mu = {mu:.1e}"),
                    iterations,
                    primal_residual: dec,
                    dual_residual: 0.0,
                    history: Vec::new(),
                }));
            }
            // Fraction to the boundary, then backtracking on the barrier objective.
            let mut alpha: f64 = 1.0;
            for j in 0..n {
                if dm[j] < 0.0 {
                    alpha = alpha.min(0.99 * m[j] / -dm[j]);
                }
                if let Some(c) = problem.cap
                    && dm[j] > 0.0
                {
                    alpha = alpha.min(0.99 * (c[j] - m[j]) / dm[j]);
                }
            }
            if dec / 2.0 <= 8.0 * f64::EPSILON * phi0.abs() {
                // A decrease below a few ulps of the objective cannot be seen by a line
                // search: Newton is in its quadratic regime here, so take full steps while
                // the decrement keeps falling, and stop when it no longer does.
                if dec >= 0.25 * invisible {
                    break;
                }
                invisible = dec;
                m = (0..n).map(|j| m[j] + alpha * dm[j]).collect();
                continue;
            }
            let mut stalled = true;
            for _ in 0..60 {
                let trial: Vec<f64> = (0..n).map(|j| m[j] + alpha * dm[j]).collect();
                let phi = problem.objective(&trial, mu);
                // Strictly lower: an Armijo margin below the objective's ulp would accept an
                // equal value and loop without progress.
                if phi < phi0 && phi <= phi0 - 1e-4 * alpha * dec {
                    m = trial;
                    stalled = false;
                    break;
                }
                alpha *= 0.5;
            }
            if stalled {
                // No decrease the arithmetic can represent: the iterate is as good as it gets.
                break;
            }
        }
        if last {
            break;
        }
        mu = (mu * 0.1).max(mu_final);
    }
    // Exact mass (the updates conserve it up to rounding).
    let sum: f64 = m.iter().sum();
    let mut rho = Array1::zeros(mesh.n_cells());
    for (j, &k) in order.iter().enumerate() {
        rho[k] = m[j] * (mass / sum) / mesh.volumes()[k];
    }
    Ok(ExactStep1d {
        rho,
        certificate: constraints * mu_final + decrement / 2.0,
        iterations,
    })
}

/// The 1D problem in cell masses (line order).
struct Problem1d<'a> {
    edges: &'a [f64],
    h: &'a [f64],
    prev: &'a [f64],
    potential: &'a [f64],
    cap: Option<&'a [f64]>,
    energy: &'a StepEnergy,
    tau: f64,
}

impl Problem1d<'_> {
    /// φ_j(m) = h f(m/h) + V m − μ log m (− μ log(cap − m)) and its two derivatives.
    fn cell(&self, j: usize, m: f64, mu: f64) -> (f64, f64, f64) {
        let (h, e) = (self.h[j], self.energy);
        let r = m / h;
        let mut v = h * e.f(r) + self.potential[j] * m;
        let mut d1 = e.df(r) + self.potential[j];
        let mut d2 = e.d2f(r) / h;
        if mu > 0.0 {
            v -= mu * m.ln();
            d1 -= mu / m;
            d2 += mu / (m * m);
            if let Some(c) = self.cap {
                let room = c[j] - m;
                v -= mu * room.ln();
                d1 += mu / room;
                d2 += mu / (room * room);
            }
        }
        (v, d1, d2)
    }

    /// The barrier objective W²/(2τ) + Σ φ_j; +∞ outside the constraints.
    fn objective(&self, m: &[f64], mu: f64) -> f64 {
        if m.iter()
            .enumerate()
            .any(|(j, &mj)| mj.is_nan() || mj <= 0.0 || self.cap.is_some_and(|c| mj >= c[j]))
        {
            return f64::INFINITY;
        }
        let w2 = transport_sweep(self.edges, m, self.prev, false).value;
        w2 / (2.0 * self.tau) + (0..m.len()).map(|j| self.cell(j, m[j], mu).0).sum::<f64>()
    }

    /// Newton step at masses `m`: (mass update δm, Newton decrement λ² = −g·δC).
    fn newton_direction(&self, m: &[f64], mu: f64) -> (Vec<f64>, f64) {
        let n = m.len();
        let sweep = transport_sweep(self.edges, m, self.prev, true);
        let s = 1.0 / (2.0 * self.tau);
        let cells: Vec<(f64, f64, f64)> = (0..n).map(|j| self.cell(j, m[j], mu)).collect();
        // Interior faces i = 1..n−1 (unknowns C_i), index i − 1.
        let k = n - 1;
        let mut g = vec![0.0; k];
        let mut diag = vec![0.0; k];
        let mut off = vec![0.0; k.saturating_sub(1)];
        for i in 1..n {
            g[i - 1] = s * sweep.grad[i] + cells[i - 1].1 - cells[i].1;
            diag[i - 1] = s * sweep.diag[i] + cells[i - 1].2 + cells[i].2;
            if i + 1 < n {
                off[i - 1] = s * sweep.off[i] - cells[i].2;
            }
        }
        let dc = solve_tridiagonal(&diag, &off, &g.iter().map(|v| -v).collect::<Vec<_>>());
        let decrement: f64 = -g.iter().zip(&dc).map(|(a, b)| a * b).sum::<f64>();
        // Mass updates cell by cell: with r_j = f″_j δm_j + f′_j, row i of the Newton system
        // reads r_i = r_{i−1} + ψ_i + (K δC)_i (ψ, K: the transport gradient and Hessian), so
        // δm_j = (r_0 + S_j − f′_j)/f″_j with S_j the partial sums; r_0 makes Σ δm = 0.
        let kdc = |i: usize| -> f64 {
            // (K δC)_i with δC_0 = δC_n = 0; K = s × the sweep's Hessian.
            let at = |f: usize| if f == 0 || f == n { 0.0 } else { dc[f - 1] };
            s * (sweep.diag[i] * at(i)
                + if i >= 1 {
                    sweep.off[i - 1] * at(i - 1)
                } else {
                    0.0
                }
                + if i < n { sweep.off[i] * at(i + 1) } else { 0.0 })
        };
        let mut partial = vec![0.0; n];
        for j in 1..n {
            partial[j] = partial[j - 1] + s * sweep.grad[j] + kdc(j);
        }
        let (mut num, mut den) = (0.0, 0.0);
        for j in 0..n {
            num += (cells[j].1 - partial[j]) / cells[j].2;
            den += 1.0 / cells[j].2;
        }
        let r0 = num / den;
        // Both recoveries of δm_j solve the same system; take the one with the smaller
        // rounding error. Cell by cell, the error is ε(|r_0| + |S_j| + |f′_j|)/f″_j: tiny for
        // a cell near 0 (f″ ≥ μ/m² large), which keeps far tails' relative precision, but
        // huge for a full cell without internal energy (f″ = μ/m² alone, → 0 with μ), where
        // it stalled the barrier stages. The difference δC_{j+1} − δC_j errs by ε(C + |δC|)
        // whatever f″ is.
        let face = |f: usize| if f == 0 || f == n { 0.0 } else { dc[f - 1] };
        let mut cumulative = 0.0;
        let dm: Vec<f64> = (0..n)
            .map(|j| {
                cumulative += m[j];
                let by_cell = (r0 + partial[j] - cells[j].1) / cells[j].2;
                let by_faces = face(j + 1) - face(j);
                let cell_error = (r0.abs() + partial[j].abs() + cells[j].1.abs()) / cells[j].2;
                let face_error = cumulative + face(j + 1).abs() + face(j).abs();
                if cell_error <= face_error {
                    by_cell
                } else {
                    by_faces
                }
            })
            .collect();
        (dm, decrement.max(0.0))
    }
}

/// Solve the symmetric tridiagonal system (diag, off) x = b (Thomas; the system is positive
/// definite, so no pivoting is needed).
fn solve_tridiagonal(diag: &[f64], off: &[f64], b: &[f64]) -> Vec<f64> {
    let n = diag.len();
    if n == 0 {
        return Vec::new();
    }
    let mut c = vec![0.0; n];
    let mut d = vec![0.0; n];
    c[0] = if n > 1 { off[0] / diag[0] } else { 0.0 };
    d[0] = b[0] / diag[0];
    for i in 1..n {
        let denom = diag[i] - off[i - 1] * c[i - 1];
        c[i] = if i + 1 < n { off[i] / denom } else { 0.0 };
        d[i] = (b[i] - off[i - 1] * d[i - 1]) / denom;
    }
    let mut x = d;
    for i in (0..n - 1).rev() {
        let next = x[i + 1];
        x[i] -= c[i] * next;
    }
    x
}

/// W² between cellwise-constant densities given by their cell masses in line order.
fn w2_squared_masses(edges: &[f64], a: &[f64], b: &[f64]) -> f64 {
    transport_sweep(edges, a, b, false).value
}

/// W²(m, p) between cellwise-constant densities with cell masses `m` and `p` on the cells
/// between `edges`, and with `derivatives` its gradient and tridiagonal Hessian with respect
/// to the cumulative masses of `m` at the faces (index = face 0..=n; docs/mathematics.md §9.1).
struct Sweep {
    value: f64,
    grad: Vec<f64>,
    diag: Vec<f64>,
    off: Vec<f64>,
}

fn transport_sweep(edges: &[f64], m: &[f64], p: &[f64], derivatives: bool) -> Sweep {
    let n = m.len();
    let cumulative = |v: &[f64]| -> Vec<f64> {
        let mut c = vec![0.0; n + 1];
        for j in 0..n {
            c[j + 1] = c[j] + v[j];
        }
        c
    };
    let (c, mut cp) = (cumulative(m), cumulative(p));
    // Equal totals by construction up to rounding: make the last knots coincide.
    cp[n] = c[n];
    let faces = if derivatives { n + 1 } else { 0 };
    let mut sweep = Sweep {
        value: 0.0,
        grad: vec![0.0; faces],
        diag: vec![0.0; faces],
        off: vec![0.0; faces],
    };
    // ∫_{ta}^{tb} p q dt for p, q linear with end values (pa, pb), (qa, qb).
    let int = |dt: f64, pa: f64, pb: f64, qa: f64, qb: f64| {
        dt * (2.0 * pa * qa + pa * qb + pb * qa + 2.0 * pb * qb) / 6.0
    };
    let (mut j, mut l) = (0, 0);
    let mut values = Vec::with_capacity(2 * n);
    while j < n && l < n {
        if m[j] <= 0.0 {
            j += 1;
            continue;
        }
        if p[l] <= 0.0 {
            l += 1;
            continue;
        }
        let sa = c[j].max(cp[l]);
        let sb = c[j + 1].min(cp[l + 1]);
        if sb > sa {
            let hj = edges[j + 1] - edges[j];
            let hl = edges[l + 1] - edges[l];
            let (ta, tb) = ((sa - c[j]) / m[j], (sb - c[j]) / m[j]);
            let (ua, ub) = ((sa - cp[l]) / p[l], (sb - cp[l]) / p[l]);
            let da = edges[j] + ta.clamp(0.0, 1.0) * hj - (edges[l] + ua.clamp(0.0, 1.0) * hl);
            let db = edges[j] + tb.clamp(0.0, 1.0) * hj - (edges[l] + ub.clamp(0.0, 1.0) * hl);
            values.push((sb - sa) * (da * da + da * db + db * db) / 3.0);
            if derivatives {
                let dt = tb - ta;
                sweep.grad[j] -= 2.0 * hj * int(dt, da, db, 1.0 - ta, 1.0 - tb);
                sweep.grad[j + 1] -= 2.0 * hj * int(dt, da, db, ta, tb);
                let w = 2.0 * hl * hj / p[l];
                sweep.diag[j] += w * int(dt, 1.0 - ta, 1.0 - tb, 1.0 - ta, 1.0 - tb);
                sweep.diag[j + 1] += w * int(dt, ta, tb, ta, tb);
                sweep.off[j] += w * int(dt, 1.0 - ta, 1.0 - tb, ta, tb);
            }
        }
        if c[j + 1] <= cp[l + 1] {
            j += 1;
        } else {
            l += 1;
        }
    }
    sweep.value = pairwise_sum(&values);
    if derivatives {
        // Empty cells of p make its quantile jump by their width at one mass level s: a
        // point mass of Xⁿ′, adding 2·jump·δF(x_s)²/ρ(x_s) to the Hessian.
        let mut l = 0;
        while l < n {
            if p[l] > 0.0 {
                l += 1;
                continue;
            }
            let start = l;
            while l < n && p[l] <= 0.0 {
                l += 1;
            }
            let s = cp[start];
            if start == 0 || l == n || s <= 0.0 || s >= c[n] {
                continue;
            }
            let jump = edges[l] - edges[start];
            let j = c[1..].partition_point(|&v| v <= s).min(n - 1);
            if m[j] <= 0.0 {
                continue;
            }
            let hj = edges[j + 1] - edges[j];
            let t = ((s - c[j]) / m[j]).clamp(0.0, 1.0);
            let w = 2.0 * jump * hj / m[j];
            sweep.diag[j] += w * (1.0 - t) * (1.0 - t);
            sweep.diag[j + 1] += w * t * t;
            sweep.off[j] += w * t * (1.0 - t);
        }
    }
    sweep
}

/// Sum with pairwise (cascade) summation: error O(log n · ε) instead of O(n · ε).
fn pairwise_sum(v: &[f64]) -> f64 {
    if v.len() <= 16 {
        return v.iter().sum();
    }
    let (a, b) = v.split_at(v.len() / 2);
    pairwise_sum(a) + pairwise_sum(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_masses(n: usize, seed: u64, zeros: bool) -> Vec<f64> {
        let mut s = seed;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64) / ((1u64 << 53) as f64)
        };
        let mut v: Vec<f64> = (0..n)
            .map(|_| {
                let u = next();
                if zeros && u < 0.2 { 0.0 } else { 0.05 + u }
            })
            .collect();
        let t: f64 = v.iter().sum();
        v.iter_mut().for_each(|x| *x /= t);
        v
    }

    #[test]
    fn transport_derivatives_match_finite_differences() {
        // Random cellwise-constant densities on a non-uniform line, ρⁿ with empty cells.
        let n = 12;
        let mut edges = vec![0.0];
        for j in 0..n {
            edges.push(edges[j] + 0.5 + 0.1 * ((j * 7 % 5) as f64));
        }
        let m = random_masses(n, 3, false);
        let p = random_masses(n, 11, true);
        let at = |m: &[f64]| transport_sweep(&edges, m, &p, false).value;
        let sweep = transport_sweep(&edges, &m, &p, true);
        // Perturb C_i (moves mass from cell i to cell i−1).
        let shift = |m: &[f64], i: usize, d: f64| -> Vec<f64> {
            let mut v = m.to_vec();
            v[i - 1] += d;
            v[i] -= d;
            v
        };
        let eps = 1e-6;
        for i in 1..n {
            let fd = (at(&shift(&m, i, eps)) - at(&shift(&m, i, -eps))) / (2.0 * eps);
            assert!(
                (fd - sweep.grad[i]).abs() < 1e-7 * (1.0 + fd.abs()),
                "gradient at face {i}: {fd} vs {}",
                sweep.grad[i]
            );
            // Second derivatives from the gradient (C¹ everywhere, piecewise C²).
            let gp = transport_sweep(&edges, &shift(&m, i, eps), &p, true).grad;
            let gm = transport_sweep(&edges, &shift(&m, i, -eps), &p, true).grad;
            let hii = (gp[i] - gm[i]) / (2.0 * eps);
            assert!(
                (hii - sweep.diag[i]).abs() < 1e-4 * (1.0 + hii.abs()),
                "Hessian ({i}, {i}): {hii} vs {}",
                sweep.diag[i]
            );
            if i + 1 < n {
                let hij = (gp[i + 1] - gm[i + 1]) / (2.0 * eps);
                assert!(
                    (hij - sweep.off[i]).abs() < 1e-4 * (1.0 + hij.abs()),
                    "Hessian ({i}, {}): {hij} vs {}",
                    i + 1,
                    sweep.off[i]
                );
            }
        }
    }

    #[test]
    fn w2_against_the_quantile_crate_and_symmetry() {
        let mesh = Mesh::grid(&[30], &[-2.0], &[3.0]).unwrap();
        let a = mesh.sample(|x| (-(x[0] - 0.3).powi(2)).exp());
        let b = mesh.sample(|x| 0.2 + (x[0] - 1.0).abs());
        let b = &b * (mesh.mass(&a) / mesh.mass(&b));
        let ours = w2_squared_cells(&mesh, &a, &b).unwrap();
        assert!((ours - w2_squared_cells(&mesh, &b, &a).unwrap()).abs() < 1e-14);
        // jko-quantile reconstructs the same piecewise-linear CDFs; its exact W² between the
        // states converges to ours as its grid resolves every cell.
        let line = LineMesh::new(&mesh).unwrap();
        let grid = jko_quantile::QuantileGrid::uniform(20000).unwrap();
        let qa = jko_quantile::from_density(&mesh, &line, &a, &grid).unwrap();
        let qb = jko_quantile::from_density(&mesh, &line, &b, &grid).unwrap();
        let theirs = jko_quantile::w2_squared(&qa, &qb).unwrap();
        assert!((ours - theirs).abs() < 1e-6 * ours, "{ours} vs {theirs}");
    }

    /// Block densities with empty cells and no internal energy (regression: the barrier stages
    /// stalled at μ ≈ 1e-10, the mass updates of full cells being divided by f″ = μ/m² alone).
    /// A linear potential V = s·x at the cell centres translates a block by −τs exactly: on
    /// cellwise-constant densities F_h(ρ) = ∫Vρ, so the continuous minimiser, a block moved by
    /// whole cells here, is the discrete one.
    #[test]
    fn linear_potential_translates_a_block_with_empty_cells() {
        let mesh = Mesh::grid(&[20], &[0.0], &[2.0]).unwrap();
        let line = LineMesh::new(&mesh).unwrap();
        let block = |a: f64, b: f64| mesh.sample(|x| if x[0] > a && x[0] < b { 2.0 } else { 0.0 });
        // (slope, τ, block after the step): moved right, left, and by more than its width.
        for (slope, tau, moved) in [
            (-2.0, 0.1, block(0.7, 1.2)),
            (3.0, 0.1, block(0.2, 0.7)),
            (-8.0, 0.1, block(1.3, 1.8)),
        ] {
            let energy = Energy {
                potential: Some(jko_core::Potential::Linear { slope: vec![slope] }),
                ..Default::default()
            };
            let rho0 = block(0.5, 1.0);
            let frozen = energy.freeze(&mesh, &rho0).unwrap();
            let step = exact_step_1d(&mesh, &line, &frozen, tau, &rho0).unwrap();
            assert!(step.certificate < 1e-14, "certificate {}", step.certificate);
            // J is (1/τ)-convex, so J(ρ) − min J ≤ δ puts ρ within W² ≤ 2τδ of the
            // minimiser; δ is the certificate plus J's rounding (16 ε of its scale).
            let w2 = w2_squared_cells(&mesh, &step.rho, &moved).unwrap();
            let scale = 1.0 + frozen.value(&mesh, &rho0).abs();
            let delta = step.certificate + 16.0 * f64::EPSILON * scale;
            assert!(
                w2 <= 2.0 * tau * delta,
                "slope {slope}: W2^2 {w2:e}, δ {delta:e}"
            );
            let l1: f64 = (&step.rho - &moved).iter().map(|d| d.abs() * 0.1).sum();
            assert!(l1 < 1e-7, "slope {slope}: L1 {l1}");
            // Scored through the public API: the moved block is the minimiser, ρⁿ is not.
            let opts = ScoreOptions::default();
            let s = score(&mesh, &energy, tau, &rho0, &moved, &opts).unwrap();
            assert!(s.gap.abs() < 1e-12 && s.w2_to_minimiser < 1e-6, "{s:?}");
            let s = score(&mesh, &energy, tau, &rho0, &rho0, &opts).unwrap();
            // J(ρⁿ) − J(ρ*) = τ s² M/2 (M = 1): the continuous step's decrease.
            let expected = tau * slope * slope / 2.0;
            assert!(
                (s.gap - expected).abs() < 1e-12 * expected,
                "{} vs {expected}",
                s.gap
            );
        }
    }

    #[test]
    fn tridiagonal_solver() {
        let (d, o) = (vec![4.0, 5.0, 6.0], vec![1.0, 2.0]);
        let x = solve_tridiagonal(&d, &o, &[6.0, 17.0, 22.0]);
        // [[4,1,0],[1,5,2],[0,2,6]] x = b with x = (1, 2, 3).
        for (a, b) in x.iter().zip([1.0, 2.0, 3.0]) {
            assert!((a - b).abs() < 1e-14);
        }
    }
}

//! Newton polishing of the interior-point solution on the optimality (KKT) system of the path
//! problem (crate docs, "Polishing").
//!
//! Unknowns: the free densities ρ_{j,K} (cells not held at a bound), the fluxes G_{j,σ} of the
//! live faces (θ_{j,σ} not identically 0) and the continuity multipliers ψ_{j,K} (mass units,
//! G = (τ/L) T θ (ψ_L − ψ_K)). With a = L/(2τT_σ) the Lagrangian is
//!
//! ```text
//! ℒ = Σ_j Σ_σ a G²/θ + E(ρ_L) + Σ_j Σ_K ψ_{j,K} (|K|(ρ_{j+1,K} − ρ_{j,K}) + Σ_{σ∋K} ±G_{j,σ})
//! ```
//!
//! and Newton solves ∂ℒ/∂G = 0, ∂ℒ/∂ρ = 0 (free cells), C = 0. Each G appears in one term
//! only, so ∂ℒ/∂G = 2aG/θ + ψ_k − ψ_l is eliminated exactly from the linearised system; the
//! kinetic ρ–ρ Hessian cancels in that elimination (the perspective's Hessian has rank one),
//! which leaves a symmetric system in (δρ, δψ):
//!
//! ```text
//! [ E''   Bᵀ  ] [δρ]   [ −r_ρ − Σ (G w/θ) r_G     ]
//! [ B    −Λ  ] [δψ] = [ −r_C + Σ ±(θ/(2a)) r_G   ]
//! ```
//!
//! with E'' = |K| f''(ρ) on the energy level, B = the continuity coefficients |K| plus the
//! kinetic couplings G w/θ, Λ the graph Laplacian with weights θ/(2a) = τTθ/L, and
//! δG = −(θ/(2a)) r_G + (G/θ) Σ w δρ − (θ/(2a))(δψ_k − δψ_l). After a symmetric
//! equilibration it is factorised by QDLDL (LDLᵀ with signs + on densities, − on
//! multipliers) and refined iteratively; a sparse LU (faer) is the fallback when the
//! factorisation is not accurate (intermediate levels of the multi-level scheme carry no
//! energy on the diagonal). Cells with entropy move multiplicatively,
//! ρ ← ρ exp(δρ/ρ) (Newton in log ρ, which keeps ρ > 0 and reaches densities many orders
//! below the peak); other free densities move additively and stay positive; a cell the step
//! would push below 0 joins the set held at 0.
//!
//! The active set starts from the interior-point solution (densities below a small fraction
//! of the peak held at 0 where there is no entropy; at ρ_max with congestion) and is checked
//! after convergence: a held cell whose multiplier has the wrong sign (λ < 0 at 0, λ > 0 at
//! ρ_max) is released and Newton runs again. Converged means every row of the system holds
//! to `tol` relative to the size of its terms and every held cell has a multiplier of the
//! right sign: the KKT conditions of the convex problem, which certify the minimiser.

use crate::scheme::{End, PathProblem};
use clarabel::algebra::CscMatrix;
use clarabel::qdldl::{QDLDLFactorisation, QDLDLSettingsBuilder};
use jko_core::StepEnergy;
use ndarray::Array1;

/// A point of the path problem: densities of every level (fixed ones included), fluxes and
/// continuity multipliers of every interval.
#[derive(Debug, Clone)]
pub(crate) struct PathPoint {
    pub densities: Vec<Array1<f64>>,
    pub fluxes: Vec<Array1<f64>>,
    /// ψ_{j,K} in mass units: G = (τ/L) T θ (ψ_L − ψ_K).
    pub psi: Vec<Array1<f64>>,
}

/// How polishing ended.
#[derive(Debug, Clone)]
pub(crate) struct PolishReport {
    pub converged: bool,
    pub newton_steps: usize,
    pub rounds: usize,
    /// Largest relative residual of the last iterate (stationarity, flux, continuity).
    pub residual: f64,
    /// Largest relative mass drift of a level at the last iterate (before the final
    /// projection).
    pub continuity: f64,
    /// Largest relative correction of the final mass projection (0 when exact already).
    pub mass_correction: f64,
    /// Cells held at 0 and at ρ_max (all free levels).
    pub held: (usize, usize),
    /// Largest wrong-signed multiplier of a held density, relative to the largest density
    /// row (0 when all have the right sign).
    pub multiplier_violation: f64,
    pub message: String,
}

/// Where a free density stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    Free,
    Lower,
    Upper,
}

/// Settings of the polish.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PolishSettings {
    /// Relative residual to reach.
    pub tol: f64,
    pub max_newton: usize,
    /// Newton steps over all rounds.
    pub max_total_newton: usize,
    pub max_rounds: usize,
}

/// Share of its gap to the cap a density may keep after a step under the cap barrier.
const CAP_FRACTION: f64 = 0.01;

/// Smallest entropy density a Newton step leaves, relative to the peak (see
/// [`Polisher::step`]).
const TAIL_FLOOR: f64 = 1e-200;

/// Largest decrease of log ρ in one Newton step.
const MAX_LOG_STEP: f64 = 30.0;

/// Largest increase of log ρ in one Newton step.
const MAX_LOG_GROWTH: f64 = 5.0;

/// A held density is released when its multiplier has the wrong sign by more than this many
/// polish tolerances (relative to the largest density row).
const RELEASE_TOL: f64 = 100.0;

/// Iterative refinement steps of a Newton direction.
const REFINEMENT_STEPS: usize = 5;

/// Diagonal shift of the equilibrated Newton matrix.
const DIAGONAL_SHIFT: f64 = 1e-13;

/// Progress of the polish (Newton residuals, rounds, held and released cells, the barrier
/// stages) printed to stderr: diagnostics, only with the cargo feature `trace` (off in every
/// normal build). A library never reads the environment to decide this (issue 18).
const TRACE: bool = cfg!(feature = "trace");

/// See [`Polisher::frame`]: (cells, faces, intervals), (faces, volumes), (τ, L as a number),
/// the θ weights (wa, wb).
type Frame<'a> = (
    (usize, usize, usize),
    (&'a [jko_core::Face], &'a [f64]),
    (f64, f64),
    (f64, f64),
);

/// QDLDL's factorisation of the Newton matrix, with the pattern it was built for (free
/// densities, column pointers, row indices).
type LdlCache = Option<((usize, Vec<usize>, Vec<usize>), QDLDLFactorisation<f64>)>;

struct Polisher<'a> {
    problem: &'a PathProblem<'a>,
    n: usize,
    nf: usize,
    big_l: usize,
    free_levels: usize,
    /// (wa, wb): weights of the start and end levels of an interval in θ.
    weights: (f64, f64),
    hold: Vec<Hold>,
    /// Densities released from a hold by the multiplier check: never held again by a step.
    released: Vec<bool>,
    /// Free-density variable index of (level j ≥ 1, cell) as (j − 1)·n + K.
    rho_var: Vec<Option<usize>>,
    /// ψ variable index of (interval j, cell) as j·n + K.
    psi_var: Vec<Option<usize>>,
    /// Live faces, interval-major.
    live: Vec<bool>,
    n_vars: usize,
    n_rho: usize,
    /// Entropy β on the energy level.
    beta: Option<f64>,
    /// The polish tolerance.
    tol: f64,
    rho_max: Option<f64>,
    /// Weight ε of an entropy ε ρ log ρ added on the energy level by [`polish`]'s homotopy
    /// (0: the problem itself).
    reg: f64,
    /// Weight ε of a barrier −ε log(ρ_max − ρ) per unit volume added on the energy level by
    /// [`polish`]'s cap homotopy (0: the problem itself). While it is on, no cell is held at the
    /// cap and steps stay strictly below it.
    cap_barrier: f64,
    /// The last factorisation, reused while the pattern is the same.
    ldl: std::cell::RefCell<LdlCache>,
}

impl<'a> Polisher<'a> {
    fn new(problem: &'a PathProblem<'a>, tol: f64) -> Self {
        let n = problem.mesh.n_cells();
        let nf = problem.mesh.faces().len();
        let big_l = problem.scheme.intervals();
        let free_levels = match problem.end {
            End::Free(_) => big_l,
            End::Fixed(_) => big_l - 1,
        };
        let (beta, rho_max) = match problem.end {
            End::Free(e) => (e.entropy, e.max_density),
            End::Fixed(_) => (None, None),
        };
        Polisher {
            problem,
            n,
            nf,
            big_l,
            free_levels,
            weights: problem.scheme.theta_weights(),
            hold: vec![Hold::Free; free_levels * n],
            released: vec![false; free_levels * n],
            rho_var: Vec::new(),
            psi_var: Vec::new(),
            live: Vec::new(),
            n_vars: 0,
            n_rho: 0,
            beta,
            tol,
            rho_max,
            reg: 0.0,
            cap_barrier: 0.0,
            ldl: std::cell::RefCell::new(None),
        }
    }

    /// The sizes and data every pass over the path problem reads.
    fn frame(&self) -> Frame<'a> {
        let mesh = self.problem.mesh;
        (
            (self.n, self.nf, self.big_l),
            (mesh.faces(), mesh.volumes()),
            (self.problem.tau, self.big_l as f64),
            self.weights,
        )
    }

    fn is_free_level(&self, j: usize) -> bool {
        j >= 1 && j <= self.free_levels
    }

    /// Does level j carry the energy (entropy, porous, potential)?
    fn energy_level(&self, j: usize) -> bool {
        matches!(self.problem.end, End::Free(_)) && j == self.big_l
    }

    fn entropy_cell(&self, j: usize) -> bool {
        self.energy_level(j) && (self.beta.is_some() || self.reg > 0.0)
    }

    fn hold_of(&self, j: usize, k: usize) -> Option<Hold> {
        self.is_free_level(j)
            .then(|| self.hold[(j - 1) * self.n + k])
    }

    /// Initial holds: without entropy, densities below `frac` of the peak are held at 0 (in the
    /// one-step scheme only where ρⁿ is 0: a cell that had mass and ends in a far tail, e.g.
    /// every step without energy, where ρ^{n+1} = ρⁿ, cannot be held at 0 unless its mass
    /// leaves through a live face; a free one that Newton drives to 0 is held then); with
    /// congestion, densities within `frac` of ρ_max are held there.
    fn initial_holds(&mut self, point: &mut PathPoint, frac: f64) {
        let peak = point
            .densities
            .iter()
            .flat_map(|d| d.iter())
            .fold(0.0f64, |a, &r| a.max(r));
        for j in 1..=self.free_levels {
            for k in 0..self.n {
                let r = point.densities[j][k];
                let mut h = Hold::Free;
                let had_mass = self.big_l == 1 && point.densities[0][k] > 0.0;
                if !self.entropy_cell(j) && r <= frac * peak && had_mass {
                    // The interior point keeps a far-tail density near its barrier parameter,
                    // orders above the tail's own value: start from the smaller of the two.
                    point.densities[j][k] = r.min(point.densities[0][k]);
                }
                if !self.entropy_cell(j) && r <= frac * peak && !had_mass {
                    h = Hold::Lower;
                }
                if let Some(m) = self.rho_max
                    && r >= m * (1.0 - frac)
                    && self.cap_barrier == 0.0
                {
                    h = Hold::Upper;
                }
                self.hold[(j - 1) * self.n + k] = h;
            }
        }
    }

    /// θ of face s on interval j and whether it can be positive (some contributing density
    /// is free or a fixed positive value).
    fn theta(&self, d: &[Array1<f64>], j: usize, s: usize) -> (f64, bool) {
        let f = self.problem.mesh.faces()[s];
        let (wa, wb) = self.weights;
        let mut theta = 0.0;
        let mut live = false;
        for (level, w) in [(j, wa), (j + 1, wb)] {
            if w == 0.0 {
                continue;
            }
            for cell in [f.k, f.l] {
                theta += w * d[level][cell];
                live |= match self.hold_of(level, cell) {
                    Some(Hold::Free) | Some(Hold::Upper) => true,
                    Some(Hold::Lower) => false,
                    None => d[level][cell] > 0.0,
                };
            }
        }
        (theta, live)
    }

    /// Index maps for the current holds. Returns the cells (level, cell) whose continuity row
    /// has no unknown but does not hold: they must be released.
    fn build_maps(&mut self, point: &PathPoint) -> Vec<(usize, usize)> {
        let (n, nf, big_l) = (self.n, self.nf, self.big_l);
        self.live = vec![false; big_l * nf];
        for j in 0..big_l {
            for s in 0..nf {
                self.live[j * nf + s] = self.theta(&point.densities, j, s).1;
            }
        }
        self.rho_var = vec![None; self.free_levels * n];
        let mut next = 0;
        for (i, h) in self.hold.iter().enumerate() {
            if *h == Hold::Free {
                self.rho_var[i] = Some(next);
                next += 1;
            }
        }
        self.n_rho = next;
        self.psi_var = vec![None; big_l * n];
        let mut stuck = Vec::new();
        for j in 0..big_l {
            for k in 0..n {
                let free_rho = [j, j + 1]
                    .iter()
                    .any(|&l| self.hold_of(l, k) == Some(Hold::Free));
                let live_face = self
                    .problem
                    .mesh
                    .faces_of(k)
                    .iter()
                    .any(|&s| self.live[j * nf + s]);
                if free_rho || live_face {
                    self.psi_var[j * n + k] = Some(next);
                    next += 1;
                } else {
                    let vol = self.problem.mesh.volumes()[k];
                    let change = vol * (point.densities[j + 1][k] - point.densities[j][k]);
                    if change.abs() > 0.0 {
                        stuck.push((j, k));
                    }
                }
            }
        }
        // A fixed end leaves one additive constant of ψ free: pin the ψ of the start's peak.
        if matches!(self.problem.end, End::Fixed(_)) {
            let k0 = (0..n)
                .max_by(|&a, &b| point.densities[0][a].total_cmp(&point.densities[0][b]))
                .unwrap_or(0);
            if let Some(v) = self.psi_var[k0].take() {
                for p in self.psi_var.iter_mut().flatten() {
                    if *p > v {
                        *p -= 1;
                    }
                }
                next -= 1;
            }
        }
        self.n_vars = next;
        stuck
    }

    /// f'(ρ) + V_K and f''(ρ) on the energy level.
    fn energy_derivatives(&self, k: usize, r: f64) -> (f64, f64) {
        match self.problem.end {
            End::Free(e) => {
                let v = e.potential.as_ref().map_or(0.0, |v| v[k]);
                let df = if e.entropy.is_some() && r <= 0.0 {
                    f64::NEG_INFINITY
                } else {
                    e.df(r)
                };
                let d2 = if r > 0.0 { e.d2f(r) } else { 0.0 };
                let (d1, d2) = match (self.reg > 0.0, r > 0.0) {
                    (false, _) => (df + v, d2),
                    (true, true) => (df + v + self.reg * (r.ln() + 1.0), d2 + self.reg / r),
                    (true, false) => (f64::NEG_INFINITY, d2),
                };
                match (self.cap_barrier > 0.0, e.max_density) {
                    (true, Some(m)) if r < m => {
                        let gap = m - r;
                        (
                            d1 + self.cap_barrier / gap,
                            d2 + self.cap_barrier / (gap * gap),
                        )
                    }
                    (true, Some(_)) => (f64::INFINITY, d2),
                    _ => (d1, d2),
                }
            }
            End::Fixed(_) => (0.0, 0.0),
        }
    }

    /// Residuals and their scales. Returns (rows, scales) in variable order for ρ and ψ rows
    /// and, separately, the flux residuals r_G (live faces; 0 elsewhere) and their scales.
    fn residuals(&self, p: &PathPoint) -> Residuals {
        let mesh = self.problem.mesh;
        let ((n, nf, big_l), (faces, vols), (tau, l), (wa, wb)) = self.frame();
        let mut r = vec![0.0; self.n_vars];
        let mut scale = vec![0.0; self.n_vars];
        let mut rg = vec![0.0; big_l * nf];
        let mut sg = vec![0.0; big_l * nf];
        let mut theta = vec![0.0; big_l * nf];
        // Flux rows and their contributions to the density and continuity rows.
        for j in 0..big_l {
            for (s, f) in faces.iter().enumerate() {
                let idx = j * nf + s;
                let g = p.fluxes[j][s];
                let (th, _) = self.theta(&p.densities, j, s);
                theta[idx] = th;
                for (cell, sign) in [(f.k, 1.0), (f.l, -1.0)] {
                    if let Some(v) = self.psi_var[j * n + cell] {
                        r[v] += sign * g;
                        scale[v] += g.abs();
                    }
                }
                if !self.live[idx] {
                    continue;
                }
                let a = l / (2.0 * tau * f.transmissibility());
                let vel = if th > 0.0 { g / th } else { 0.0 };
                rg[idx] = 2.0 * a * vel + p.psi[j][f.k] - p.psi[j][f.l];
                sg[idx] = (2.0 * a * vel).abs() + p.psi[j][f.k].abs() + p.psi[j][f.l].abs();
                // −a G² w/θ² on each free density of θ.
                let kin = a * vel * vel;
                for (level, w) in [(j, wa), (j + 1, wb)] {
                    if w == 0.0 || !self.is_free_level(level) {
                        continue;
                    }
                    for cell in [f.k, f.l] {
                        if let Some(v) = self.rho_var[(level - 1) * n + cell] {
                            r[v] -= kin * w;
                            scale[v] += kin * w;
                        }
                    }
                }
            }
        }
        // Density rows: energy and multiplier terms.
        for j in 1..=self.free_levels {
            for (k, &vol) in vols.iter().enumerate() {
                let Some(v) = self.rho_var[(j - 1) * n + k] else {
                    continue;
                };
                if self.energy_level(j) {
                    let (d1, _) = self.energy_derivatives(k, p.densities[j][k]);
                    r[v] += vol * d1;
                    scale[v] += vol * d1.abs();
                }
                let up = vol * p.psi[j - 1][k];
                r[v] += up;
                scale[v] += up.abs();
                if j < big_l {
                    let down = vol * p.psi[j][k];
                    r[v] -= down;
                    scale[v] += down.abs();
                }
            }
        }
        // Continuity rows: |K|(ρ_{j+1} − ρ_j) (the flux part was added above).
        for j in 0..big_l {
            for (k, &vol) in vols.iter().enumerate() {
                if let Some(v) = self.psi_var[j * n + k] {
                    let (a, b) = (p.densities[j + 1][k], p.densities[j][k]);
                    r[v] += vol * (a - b);
                    scale[v] += vol * (a.abs() + b.abs());
                }
            }
        }
        // Each row is measured by its effect on the densities relative to their peak: the
        // stationarity row of a density ρ and the flux row of a face (mean θ) are weighted by
        // ρ and θ (an error δ in log ρ or in the velocity moves δρ or δθ of mass), and rows of
        // a kind are compared with the largest weighted row of that kind. A far tail, whose
        // values are many orders below the peak, then converges with the peak instead of
        // being chased to its own relative precision.
        let n_rho = self.n_rho;
        let raw_rho = scale[..n_rho].iter().fold(0.0f64, |a, &b| a.max(b));
        let mass = mesh.mass(&p.densities[0]);
        let mass_drift = p.densities[1..]
            .iter()
            .map(|d| (mesh.mass(d) - mass).abs() / mass)
            .fold(0.0f64, f64::max);
        let mut weight = vec![1.0; self.n_vars];
        for j in 1..=self.free_levels {
            for k in 0..n {
                if let Some(v) = self.rho_var[(j - 1) * n + k] {
                    weight[v] = p.densities[j][k];
                }
            }
        }
        let weighted_max =
            |sc: &[f64], w: &[f64]| sc.iter().zip(w).fold(0.0f64, |a, (s, w)| a.max(s * w));
        let d_rho = weighted_max(&scale[..n_rho], &weight[..n_rho]);
        let d_c = weighted_max(&scale[n_rho..], &weight[n_rho..]);
        let d_g = weighted_max(&sg, &theta);
        for (s, w) in scale[..n_rho].iter_mut().zip(&weight[..n_rho]) {
            *s = d_rho / w.max(f64::MIN_POSITIVE);
        }
        scale[n_rho..].iter_mut().for_each(|s| *s = d_c);
        for (s, th) in sg.iter_mut().zip(&theta) {
            *s = d_g / th.max(f64::MIN_POSITIVE);
        }
        Residuals {
            r,
            scale,
            raw_rho,
            mass_drift,
            cell_mass: (0..=self.big_l)
                .flat_map(|j| p.densities[j].iter().zip(vols).map(|(r, v)| r * v))
                .fold(0.0f64, f64::max),
            rg,
            sg,
            theta,
        }
    }

    fn debug_worst(&self, res: &Residuals, p: &PathPoint) {
        let rel = |r: f64, s: f64| if s > 0.0 { r.abs() / s } else { r.abs() };
        let mut best = (0.0, String::new());
        for (j, k) in (0..self.big_l).flat_map(|j| (0..self.n).map(move |k| (j, k))) {
            if let Some(v) = self.psi_var[j * self.n + k] {
                let x = rel(res.r[v], res.scale[v]);
                if x > best.0 {
                    let mut info = String::new();
                    for &s in self.problem.mesh.faces_of(k) {
                        let f = self.problem.mesh.faces()[s];
                        let o = if f.k == k { f.l } else { f.k };
                        info += &format!(
                            " [face {s} to {o}: live {} theta {:.3e} G {:.3e} rg {:.3e} nb rho {:.3e} hold {:?} psi {:.3e}/{:.3e}]",
                            self.live[j * self.nf + s],
                            res.theta[j * self.nf + s],
                            p.fluxes[j][s],
                            res.rg[j * self.nf + s],
                            p.densities[j + 1][o],
                            self.hold_of(j + 1, o),
                            p.psi[j][k],
                            p.psi[j][o]
                        );
                    }
                    best = (
                        x,
                        format!(
                            "C row ({j},{k}) r {:.3e} s {:.3e} rho {:.3e}->{:.3e} hold {:?}{info}",
                            res.r[v],
                            res.scale[v],
                            p.densities[j][k],
                            p.densities[j + 1][k],
                            self.hold_of(j + 1, k)
                        ),
                    );
                }
            }
        }
        for (j, k) in (1..=self.free_levels).flat_map(|j| (0..self.n).map(move |k| (j, k))) {
            if let Some(v) = self.rho_var[(j - 1) * self.n + k] {
                let x = rel(res.r[v], res.scale[v]);
                if x > best.0 {
                    best = (
                        x,
                        format!(
                            "rho row ({j},{k}) r {:.3e} s {:.3e} rho {:.3e}",
                            res.r[v], res.scale[v], p.densities[j][k]
                        ),
                    );
                }
            }
        }
        for (i, (&r, &s)) in res.rg.iter().zip(&res.sg).enumerate() {
            let x = rel(r, s);
            if x > best.0 {
                let f = self.problem.mesh.faces()[i % self.nf];
                best = (
                    x,
                    format!(
                        "G row {i} ({}-{}) r {r:.3e} s {s:.3e} theta {:.3e} G {:.3e}",
                        f.k,
                        f.l,
                        res.theta[i],
                        p.fluxes[i / self.nf][i % self.nf]
                    ),
                );
            }
        }
        eprintln!("   worst: {:.3e} {}", best.0, best.1);
    }

    /// Relative size of residuals: (largest over all rows, largest relative mass drift of a
    /// level).
    fn measure(&self, res: &Residuals) -> (f64, f64) {
        let rel = |r: f64, s: f64| if s > 0.0 { r.abs() / s } else { r.abs() };
        let mut worst = 0.0f64;
        let mut cont = 0.0f64;
        for (v, (&r, &s)) in res.r.iter().zip(&res.scale).enumerate() {
            let x = rel(r, s);
            worst = worst.max(x);
            if v >= self.n_rho {
                cont = cont.max(x);
            }
        }
        for (&r, &s) in res.rg.iter().zip(&res.sg) {
            worst = worst.max(rel(r, s));
        }
        // The continuity rows are linear and an additive Newton step satisfies them: Newton
        // continues until they hold to round-off in absolute terms (against the largest cell
        // mass), not only relative to the fluxes, which can be ~10× a cell's mass.
        let cell_mass = res.cell_mass.max(f64::MIN_POSITIVE);
        let exact = res.r[self.n_rho..]
            .iter()
            .fold(0.0f64, |a, &r| a.max(r.abs() / cell_mass));
        (worst.max(cont), res.mass_drift.max(exact))
    }

    /// Newton direction (δρ over free densities, δψ, δG over all faces).
    fn direction(&self, p: &PathPoint, res: &Residuals) -> Result<Direction, String> {
        let ((n, nf, big_l), (faces, vols), (tau, l), (wa, wb)) = self.frame();
        let mut trip: Vec<Triplet> = Vec::new();
        let mut rhs: Vec<f64> = res.r.iter().map(|r| -r).collect();
        let push = |i: usize, j: usize, v: f64, trip: &mut Vec<Triplet>| {
            trip.push(Triplet::new(i, j, v));
            if i != j {
                trip.push(Triplet::new(j, i, v));
            }
        };
        // Energy diagonal and continuity coefficients of the densities.
        for j in 1..=self.free_levels {
            for (k, &vol) in vols.iter().enumerate() {
                let Some(v) = self.rho_var[(j - 1) * n + k] else {
                    continue;
                };
                let mut diag = 0.0;
                if self.energy_level(j) {
                    diag = vol * self.energy_derivatives(k, p.densities[j][k]).1;
                }
                trip.push(Triplet::new(v, v, diag));
                if let Some(w) = self.psi_var[(j - 1) * n + k] {
                    push(v, w, vol, &mut trip);
                }
                if j < big_l
                    && let Some(w) = self.psi_var[j * n + k]
                {
                    push(v, w, -vol, &mut trip);
                }
            }
        }
        // Live faces: kinetic couplings and the ψ Laplacian.
        for j in 0..big_l {
            for (s, f) in faces.iter().enumerate() {
                let idx = j * nf + s;
                if !self.live[idx] {
                    continue;
                }
                let th = res.theta[idx];
                let a = l / (2.0 * tau * f.transmissibility());
                let d = th / (2.0 * a);
                let vel = if th > 0.0 { p.fluxes[j][s] / th } else { 0.0 };
                let rg = res.rg[idx];
                let (pk, pl) = (self.psi_var[j * n + f.k], self.psi_var[j * n + f.l]);
                for (level, w) in [(j, wa), (j + 1, wb)] {
                    if w == 0.0 || !self.is_free_level(level) {
                        continue;
                    }
                    for cell in [f.k, f.l] {
                        if let Some(v) = self.rho_var[(level - 1) * n + cell] {
                            let c = vel * w;
                            rhs[v] -= c * rg;
                            if let Some(q) = pk {
                                push(v, q, c, &mut trip);
                            }
                            if let Some(q) = pl {
                                push(v, q, -c, &mut trip);
                            }
                        }
                    }
                }
                if let Some(q) = pk {
                    trip.push(Triplet::new(q, q, -d));
                    rhs[q] += d * rg;
                }
                if let Some(q) = pl {
                    trip.push(Triplet::new(q, q, -d));
                    rhs[q] -= d * rg;
                }
                if let (Some(a1), Some(b1)) = (pk, pl) {
                    push(a1, b1, d, &mut trip);
                }
            }
        }
        let nv = self.n_vars;
        // Symmetric equilibration: D A D with D_i = 1/√(max_j |A_ij|), a few passes.
        let mut dscale = vec![1.0; nv];
        for _ in 0..4 {
            let mut rowmax = vec![0.0f64; nv];
            for t in &trip {
                let v = (t.val * dscale[t.row] * dscale[t.col]).abs();
                rowmax[t.row] = rowmax[t.row].max(v);
            }
            for (d, m) in dscale.iter_mut().zip(&rowmax) {
                if *m > 0.0 && m.is_finite() {
                    *d /= m.sqrt();
                }
            }
        }
        let scaled: Vec<Triplet> = trip
            .iter()
            .map(|t| Triplet::new(t.row, t.col, t.val * dscale[t.row] * dscale[t.col]))
            .collect();
        let rhs_scaled: Vec<f64> = (0..nv).map(|i| rhs[i] * dscale[i]).collect();
        // LDLᵀ of the symmetric quasi-definite matrix (densities +, multipliers −) by QDLDL,
        // from its upper triangle; a tiny shift of the diagonal with those signs keeps zero
        // pivots away (a density row without energy has a zero diagonal), and QDLDL's dynamic
        // regularisation catches any left. Iterative refinement against the unshifted matrix
        // then recovers the exact Newton direction.
        let (mut ii, mut jj, mut vv) = (Vec::new(), Vec::new(), Vec::new());
        for t in scaled.iter().filter(|t| t.row <= t.col) {
            ii.push(t.row);
            jj.push(t.col);
            vv.push(t.val);
        }
        let signs: Vec<i8> = (0..nv)
            .map(|i| if i < self.n_rho { 1 } else { -1 })
            .collect();
        for (i, &sign) in signs.iter().enumerate() {
            ii.push(i);
            jj.push(i);
            vv.push(f64::from(sign) * DIAGONAL_SHIFT);
        }
        let upper = CscMatrix::new_from_triplets(nv, nv, ii, jj, vv);
        let settings = QDLDLSettingsBuilder::<f64>::default()
            .Dsigns(signs)
            .build()
            .map_err(|e| format!("LDLᵀ settings: {e}"))?;
        let residual = |x: &[f64]| {
            let mut r = rhs_scaled.clone();
            for t in &scaled {
                r[t.row] -= t.val * x[t.col];
            }
            r
        };
        let norm = |v: &[f64]| v.iter().fold(0.0f64, |a, b| a.max(b.abs()));
        let target = 1e-15 * norm(&rhs_scaled);
        let refine = |solve: &mut dyn FnMut(&mut [f64])| {
            let mut x = rhs_scaled.clone();
            solve(&mut x);
            for _ in 0..REFINEMENT_STEPS {
                let mut r = residual(&x);
                if norm(&r).partial_cmp(&target) != Some(std::cmp::Ordering::Greater) {
                    break;
                }
                solve(&mut r);
                x.iter_mut().zip(&r).for_each(|(a, b)| *a += b);
            }
            let accurate = norm(&residual(&x)) <= 1e-10 * norm(&rhs_scaled);
            (x, accurate)
        };
        // Within a round of the active set the matrix keeps its pattern: QDLDL's ordering and
        // symbolic analysis are reused and only the values refactored (about half of a
        // factorisation's time at 64²).
        let mut cache = self.ldl.borrow_mut();
        let key = (self.n_rho, upper.colptr.clone(), upper.rowval.clone());
        let refactored = match cache.as_mut() {
            Some((k, ldl)) if *k == key => {
                let all: Vec<usize> = (0..upper.nzval.len()).collect();
                ldl.update_values(&all, &upper.nzval);
                ldl.refactor().is_ok()
            }
            _ => false,
        };
        if !refactored {
            *cache = QDLDLFactorisation::new(&upper, Some(settings))
                .ok()
                .map(|ldl| (key, ldl));
        }
        let mut solved = None;
        if let Some((_, ldl)) = cache.as_mut() {
            let (x, accurate) = refine(&mut |b: &mut [f64]| ldl.solve(b));
            if accurate && x.iter().all(|v| v.is_finite()) {
                solved = Some(x);
            }
        }
        drop(cache);
        // Without a useful quasi-definite structure (intermediate levels of the multi-level
        // scheme have no energy on the diagonal), an LU with partial pivoting (faer).
        let solved = match solved {
            Some(x) => x,
            None => self.lu_solve(nv, &scaled, &refine)?,
        };
        let sol: Vec<f64> = (0..nv).map(|i| solved[i] * dscale[i]).collect();
        if TRACE {
            let mut ax = vec![0.0; nv];
            for t in &trip {
                ax[t.row] += t.val * sol[t.col];
            }
            let (mut num, mut den) = (0.0f64, 0.0f64);
            for i in 0..nv {
                num = num.max(((ax[i] - rhs[i]) * dscale[i]).abs());
                den = den.max((rhs[i] * dscale[i]).abs());
            }
            let dmin = dscale.iter().cloned().fold(f64::INFINITY, f64::min);
            let dmax = dscale.iter().cloned().fold(0.0, f64::max);
            eprintln!(
                "   linear solve: scaled residual {:.3e} (rhs {den:.3e}), D in [{dmin:.2e}, {dmax:.2e}]",
                num
            );
        }
        if sol.iter().any(|v| !v.is_finite()) {
            return Err("the Newton direction is not finite".into());
        }
        // The velocity v = G/θ of each live face moves by δv = −(r_G + δψ_k − δψ_l)/(2a);
        // the step then sets G = θ v with the new θ (G and θ stay proportional on faces
        // whose densities move by large factors, far in a tail).
        let mut dv = vec![0.0; big_l * nf];
        for j in 0..big_l {
            for (s, f) in faces.iter().enumerate() {
                let idx = j * nf + s;
                if !self.live[idx] {
                    continue;
                }
                let a = l / (2.0 * tau * f.transmissibility());
                let dpk = self.psi_var[j * n + f.k].map_or(0.0, |q| sol[q]);
                let dpl = self.psi_var[j * n + f.l].map_or(0.0, |q| sol[q]);
                dv[idx] = -(res.rg[idx] + dpk - dpl) / (2.0 * a);
            }
        }
        Ok(Direction { x: sol, dv })
    }

    /// Solve the equilibrated system by a sparse LU with partial pivoting (faer), refined.
    fn lu_solve(
        &self,
        nv: usize,
        scaled: &[Triplet],
        refine: &Refine<'_>,
    ) -> Result<Vec<f64>, String> {
        use faer::linalg::solvers::Solve;
        let entries: Vec<faer::sparse::Triplet<usize, usize, f64>> = scaled
            .iter()
            .map(|t| faer::sparse::Triplet::new(t.row, t.col, t.val))
            .chain((0..nv).map(|i| {
                let sign = if i < self.n_rho { 1.0 } else { -1.0 };
                faer::sparse::Triplet::new(i, i, sign * DIAGONAL_SHIFT)
            }))
            .collect();
        let mat = faer::sparse::SparseColMat::<usize, f64>::try_new_from_triplets(nv, nv, &entries)
            .map_err(|e| format!("assembling the Newton matrix: {e:?}"))?;
        // faer's sparse LU panics on an exactly zero pivot: contain it as a failure.
        let (x, _) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let lu = mat
                .sp_lu()
                .map_err(|e| format!("LU of the Newton matrix: {e:?}"))?;
            Ok::<_, String>(refine(&mut |b: &mut [f64]| {
                let mut x = faer::Mat::<f64>::from_fn(nv, 1, |i, _| b[i]);
                lu.solve_in_place(x.as_mut());
                b.iter_mut().enumerate().for_each(|(i, v)| *v = x[(i, 0)]);
            }))
        }))
        .map_err(|_| "the Newton matrix is singular".to_string())??;
        Ok(x)
    }

    /// The point after a step of length α along `dir`, or the free cells without entropy that
    /// the step would push to (or below) 0.
    fn step(
        &self,
        p: &PathPoint,
        dir: &Direction,
        alpha: f64,
    ) -> Result<PathPoint, Vec<(usize, Hold)>> {
        let (n, nf) = (self.n, self.nf);
        let mut q = p.clone();
        let mut blocked = Vec::new();
        // Entropy tails move in log ρ by up to e^-30 per step; over the tens of steps of a
        // homotopy they would underflow to 0 (β = 0.01 in a well of depth 50 has a Gibbs tail
        // of e^-5000), where f'(ρ) = −∞ ends Newton. They stop at `TAIL_FLOOR` of the peak,
        // far below anything the ρ-weighted certificate or the mass can see.
        let floor = TAIL_FLOOR * peak(p);
        for j in 1..=self.free_levels {
            for k in 0..n {
                let i = (j - 1) * n + k;
                let Some(v) = self.rho_var[i] else { continue };
                let r = p.densities[j][k];
                let d = dir.x[v];
                // Densities that decrease move multiplicatively, ρ ← ρ exp(δρ/ρ) (Newton in
                // log ρ, which keeps them positive). A density without entropy whose additive Newton step
                // would reach 0 (δρ ≤ −0.99 ρ) is held there instead (unless it was released
                // by the multiplier check, then it just moves).
                if !self.entropy_cell(j) && d <= -0.99 * r && !self.released[i] {
                    blocked.push((i, Hold::Lower));
                }
                // Growth is capped at a factor e^MAX_LOG_GROWTH per step (e^x ≫ 1 + x would
                // overshoot a density that must grow by orders, such as a released cell).
                // A moderate change (−½ρ ≤ δρ ≤ ρ) is taken as it is: the continuity rows are
                // linear, and the additive step keeps them exact where the multiplicative one
                // leaves a drift of order (δρ/ρ)² that slows Newton's endgame. (Not with
                // congestion: there it made a crowd step's held set at the cap stall, 32²,
                // step 2 of tests/regressions.rs `crowd_with_active_congestion_is_solved`.)
                let x = d / r;
                // Without entropy (and without a cap) every decrease is the plain Newton step,
                // kept at ≥ 1 % of ρ (fraction to the boundary; a cell Newton sends below that
                // was blocked above unless released): a released front cell heading for a
                // value orders below where it was released shrank by e^x ≥ e^-1 per step
                // before, and Newton converged only linearly (porous m = 2 at 64²: 17 steps at
                // rate 1/e).
                let mut next = if self.rho_max.is_none() && !self.entropy_cell(j) && x <= 1.0 {
                    (r + alpha * d).max(0.01 * r)
                } else if self.rho_max.is_none() && (-0.5..=1.0).contains(&x) {
                    r + alpha * d
                } else if self.cap_barrier > 0.0 {
                    // The cap homotopy's line search shortens α to keep below the cap: the
                    // step must follow the Newton direction for every α (clamping x before
                    // scaling by α does not, and the merit then need not decrease).
                    r * (alpha * x).clamp(-MAX_LOG_STEP, MAX_LOG_GROWTH).exp()
                } else {
                    r * (alpha * x.clamp(-MAX_LOG_STEP, MAX_LOG_GROWTH)).exp()
                };
                if self.entropy_cell(j) {
                    next = next.max(floor);
                }
                // Under the barrier a step may close at most 99 % of a cell's gap to the cap
                // (fraction to the boundary); a longer one is refused, α is halved.
                if let Some(cap) = self.rho_max
                    && self.cap_barrier > 0.0
                    && next >= cap - CAP_FRACTION * (cap - r)
                {
                    return Err(Vec::new());
                }
                if let Some(cap) = self.rho_max
                    && next >= cap
                {
                    if self.released[i] {
                        next = r + 0.99 * (cap - r);
                    } else {
                        blocked.push((i, Hold::Upper));
                    }
                }
                q.densities[j][k] = next;
            }
        }
        if !blocked.is_empty() {
            return Err(blocked);
        }
        for j in 0..self.big_l {
            for k in 0..n {
                if let Some(v) = self.psi_var[j * n + k] {
                    q.psi[j][k] += alpha * dir.x[v];
                }
            }
            for s in 0..nf {
                let idx = j * nf + s;
                if !self.live[idx] {
                    continue;
                }
                let (th, _) = self.theta(&p.densities, j, s);
                let (th_new, _) = self.theta(&q.densities, j, s);
                let v = if th > 0.0 { p.fluxes[j][s] / th } else { 0.0 };
                q.fluxes[j][s] = th_new * (v + alpha * dir.dv[idx]);
            }
        }
        Ok(q)
    }

    /// Would releasing the held density (level j, cell k), whose multiplier is wrong by
    /// `excess`, change the solution by more than the polish tolerance? Locally the released
    /// density solves f'(ρ) = f'(bound) + excess/|K|; with a porous term f'(ρ) − f'(0) =
    /// m ρ^{m−1}/(m−1), which gives ρ. Near a free boundary the multipliers of the empty cells
    /// decay layer by layer (ρ and λ both ≈ 0: a degenerate complementarity); cells whose
    /// density would stay below `tol`·max ρ are left at 0.
    fn significant(&self, j: usize, k: usize, excess: f64, peak: f64) -> bool {
        let porous = match self.problem.end {
            End::Free(e) if self.energy_level(j) => e.porous,
            _ => None,
        };
        match porous {
            Some(m) if self.hold[(j - 1) * self.n + k] == Hold::Lower => {
                let vol = self.problem.mesh.volumes()[k];
                let rho = ((m - 1.0) / m * excess / vol).powf(1.0 / (m - 1.0));
                rho > self.tol * peak
            }
            _ => true,
        }
    }

    /// ψ on the (interval, cell) pairs outside the system (held cells whose faces are all
    /// dead): any values for which the held cells' multipliers have the right sign certify
    /// the solution. Take the mean of the already known neighbours, sweeping outwards from
    /// the system's cells, so that the quadratic face terms −(τT/(2L)) w (ψ_k − ψ_l)² across
    /// the empty region vanish. Pairs with no path to the system keep their values.
    fn extend_psi(&self, p: &mut PathPoint) {
        let (n, mesh) = (self.n, self.problem.mesh);
        for j in 0..self.big_l {
            let mut known: Vec<bool> = (0..n).map(|k| self.psi_var[j * n + k].is_some()).collect();
            // The pinned ψ of a fixed end is known too.
            if matches!(self.problem.end, End::Fixed(_)) && j == 0 {
                known.iter_mut().for_each(|k| *k = true);
            }
            let mut frontier: Vec<usize> = (0..n).filter(|&k| !known[k]).collect();
            while !frontier.is_empty() {
                let mut next = Vec::new();
                let mut assigned = Vec::new();
                for &k in &frontier {
                    let (mut sum, mut count) = (0.0, 0);
                    for &s in mesh.faces_of(k) {
                        let f = mesh.faces()[s];
                        let o = if f.k == k { f.l } else { f.k };
                        if known[o] {
                            sum += p.psi[j][o];
                            count += 1;
                        }
                    }
                    if count > 0 {
                        assigned.push((k, sum / count as f64));
                    } else {
                        next.push(k);
                    }
                }
                if assigned.is_empty() {
                    break;
                }
                for (k, v) in assigned {
                    p.psi[j][k] = v;
                    known[k] = true;
                }
                frontier = next;
            }
        }
    }

    /// Multiplier of the bound of a held density (level j, cell k): ∂ℒ/∂ρ with the kinetic
    /// term in its dual form −(τT/(2L)) w (ψ_k − ψ_l)² on every face (live or not).
    fn multiplier(&self, p: &PathPoint, j: usize, k: usize) -> (f64, f64) {
        let mesh = self.problem.mesh;
        let faces = mesh.faces();
        let vol = mesh.volumes()[k];
        let tau = self.problem.tau;
        let l = self.big_l as f64;
        let (wa, wb) = self.weights;
        let mut lam = 0.0;
        let mut scale = 0.0;
        if self.energy_level(j) {
            let (d1, _) = self.energy_derivatives(k, p.densities[j][k]);
            lam += vol * d1;
            scale += vol * d1.abs();
        }
        lam += vol * p.psi[j - 1][k];
        scale += (vol * p.psi[j - 1][k]).abs();
        if j < self.big_l {
            lam -= vol * p.psi[j][k];
            scale += (vol * p.psi[j][k]).abs();
        }
        for (interval, w) in [(j - 1, wb), (j, wa)] {
            if w == 0.0 || interval >= self.big_l {
                continue;
            }
            for &s in mesh.faces_of(k) {
                let f = faces[s];
                let dpsi = p.psi[interval][f.k] - p.psi[interval][f.l];
                let q = tau * f.transmissibility() / (2.0 * l) * w * dpsi * dpsi;
                lam -= q;
                scale += q;
            }
        }
        (lam, scale)
    }
}

/// Iterative refinement of a solve (a linear solver applied in place): the solution and
/// whether it reached the accuracy asked for.
type Refine<'a> = dyn Fn(&mut dyn FnMut(&mut [f64])) -> (Vec<f64>, bool) + 'a;

/// One entry of a sparse matrix.
#[derive(Debug, Clone, Copy)]
struct Triplet {
    row: usize,
    col: usize,
    val: f64,
}

impl Triplet {
    fn new(row: usize, col: usize, val: f64) -> Self {
        Triplet { row, col, val }
    }
}

struct Residuals {
    /// ρ rows then ψ rows, in variable order.
    r: Vec<f64>,
    /// Effective scale of each row (see `Polisher::residuals`).
    scale: Vec<f64>,
    /// Largest sum of absolute terms of a density row (|K| times the pressure scale).
    raw_rho: f64,
    /// Largest |M(ρ_j) − M(ρⁿ)|/M(ρⁿ) over the levels.
    mass_drift: f64,
    /// Largest cell mass |K| ρ_{j,K} over the levels.
    cell_mass: f64,
    rg: Vec<f64>,
    sg: Vec<f64>,
    theta: Vec<f64>,
}

struct Direction {
    x: Vec<f64>,
    /// Velocity changes δv of the live faces.
    dv: Vec<f64>,
}

/// [`polish`] of a point whose active set is already known (the lifted answer of a
/// restriction, module `support`): exactly the cells at 0 without mass in ρⁿ start held, so a
/// front cell at 1e-10 of the peak is not held and released again. Falls back to [`polish`]
/// when that does not converge.
pub(crate) fn certify(
    problem: &PathProblem<'_>,
    point: &mut PathPoint,
    settings: PolishSettings,
) -> PolishReport {
    let mut trial = point.clone();
    let report = polish_with(problem, &mut trial, settings, (0.0, 0.0), 0.0);
    if report.converged {
        *point = trial;
        return report;
    }
    let mut fallback = polish(problem, point, settings);
    fallback.newton_steps += report.newton_steps;
    fallback
}

/// Entropy weights ε of the homotopy of [`polish`], in order.
const HOMOTOPY: [f64; 7] = [1e-2, 1e-4, 1e-6, 1e-8, 1e-10, 1e-12, 1e-14];

/// Polish `point` in place. On failure `point` is left at the last accepted iterate of the
/// last round (never worse than the start in the residual it started from).
///
/// A one-step problem whose energy is a potential alone (no entropy, porous term or cap) with
/// ρⁿ > 0 everywhere is polished through a homotopy: an entropy ε ρ log ρ is added and Newton
/// runs for ε = 1e-2, 1e-4, …, 1e-14 in turn, every cell free and moving in log ρ as with
/// entropy, the last stage to 1e-3 of the tolerance; the last point must then satisfy the
/// optimality system of the problem itself (the term left out is ≤ 1e-14 |log ρ| per row),
/// checked without a Newton step. Such a problem has no vacuum (a cell with mass in ρⁿ passes
/// it on through faces whose θ is its own end density, so the minimiser keeps every such cell
/// positive: tails down to 1e-36 of the peak for data/compare/robust/potential-only-1d.toml),
/// and without curvature the direct polish held those tails at 0 and churned, or stalled where
/// Newton asked a tail to go below 0 (docs/notes/issue-17.md, round 5). If a stage or the check
/// fails, the direct polish runs as before. Each stage has the caller's Newton budget.
pub(crate) fn polish(
    problem: &PathProblem<'_>,
    point: &mut PathPoint,
    settings: PolishSettings,
) -> PolishReport {
    let homotopy = match problem.end {
        End::Free(e) => {
            e.entropy.is_none()
                && e.porous.is_none()
                && e.max_density.is_none()
                && e.potential.is_some()
                && problem.scheme.intervals() == 1
                && problem.start.iter().all(|&r| r > 0.0)
        }
        End::Fixed(_) => false,
    };
    if let End::Free(e) = problem.end
        && let Some(rho_max) = e.max_density
        && e.entropy.is_some()
        && problem.scheme.intervals() == 1
    {
        return polish_under_cap(problem, point, settings, e, rho_max);
    }
    if !homotopy {
        return polish_with(problem, point, settings, (0.0, 0.0), INITIAL_HOLD);
    }
    // Tails start at 1e-10 of the peak at least (as an interior point leaves them, and as the
    // explicit start does with entropy): from ρⁿ's far tails (1e-40 after two steps) the
    // capped growth of log ρ would spend the Newton budget on raising them.
    let mut trial = point.clone();
    let top = peak(&trial);
    if let Some(end) = trial.densities.last_mut() {
        end.mapv_inplace(|r| r.max(1e-10 * top));
    }
    let mut newton = 0;
    for reg in HOMOTOPY {
        // The last stage aims at round-off (1e-3 of the tolerance): at the bottom of a well
        // every term of a density row vanishes, and a row left at 1e-12 of the largest one is
        // 2e-8 of its own terms there (tests/regressions.rs, stationarity per cell).
        let stage = PolishSettings {
            tol: if reg == HOMOTOPY[HOMOTOPY.len() - 1] {
                1e-3 * settings.tol
            } else {
                settings.tol
            },
            ..settings
        };
        let report = polish_with(problem, &mut trial, stage, (reg, 0.0), INITIAL_HOLD);
        newton += report.newton_steps;
        if !report.converged {
            return polish_with(problem, point, settings, (0.0, 0.0), INITIAL_HOLD);
        }
    }
    // The check of the problem itself, without a Newton step (Newton without curvature is what
    // fails on these problems).
    let check = PolishSettings {
        max_newton: 0,
        ..settings
    };
    let mut report = polish_with(problem, &mut trial, check, (0.0, 0.0), 0.0);
    report.newton_steps += newton;
    if !report.converged {
        return polish_with(problem, point, settings, (0.0, 0.0), INITIAL_HOLD);
    }
    *point = trial;
    report
}

/// Barrier weights of [`polish_under_cap`]'s homotopy, relative to ρ_max times the largest
/// |f'(ρ) + V| of the start, in order.
const CAP_HOMOTOPY: [f64; 5] = [1e-4, 1e-6, 1e-8, 1e-10, 1e-12];

/// Relative residual each stage of [`polish_under_cap`]'s homotopy is solved to: the stages
/// only have to stay near the barrier path; the last, direct polish certifies the answer.
const CAP_STAGE_TOL: f64 = 1e-6;

/// Cells within this fraction of ρ_max at the end of [`polish_under_cap`]'s homotopy start
/// held at the cap in its last, direct polish.
const CAP_HOLD: f64 = 1e-6;

/// [`polish`] of a one-step problem with entropy and a congestion cap ρ ≤ ρ_max (`e`'s
/// `max_density`).
///
/// The direct polish finds the cells at the cap by holding every cell that a Newton step
/// carries over it, from wherever it was: on a crowd whose congested region grows
/// (tests/regressions.rs `crowd_with_active_congestion_is_solved`, step 2) each round held
/// 20–30 more cells, cells at 0.1 ρ_max among them, until the held mass exceeded what the
/// other cells could balance (206 held, residual 0.2, mass drift 1.5: `AlmostSolved`). Here the
/// cap is first replaced by a barrier −ε log(ρ_max − ρ) per unit volume (every cell free, steps
/// kept strictly below the cap, Newton in log ρ as with entropy), ε driven from 1e-2 to 1e-12
/// of ρ_max times the pressure scale; on that path a cell at the cap ends within ε/μ of it (μ
/// its multiplier) and every other cell where it should be. The cells then within
/// [`CAP_HOLD`] of ρ_max are held at the cap and the direct polish of the problem itself
/// finishes, with its usual certificate (every KKT row to the tolerance, held multipliers of
/// the right sign). If a stage or the last polish fails, the direct polish runs from the
/// original point as before.
fn polish_under_cap(
    problem: &PathProblem<'_>,
    point: &mut PathPoint,
    settings: PolishSettings,
    e: &StepEnergy,
    rho_max: f64,
) -> PolishReport {
    let mut trial = point.clone();
    let top = peak(&trial);
    let last = trial.densities.len() - 1;
    // Strictly inside (0, ρ_max): an interior point or a warm start may sit on the cap (or
    // above it by Clarabel's feasibility tolerance), where the barrier is infinite; the mass
    // this moves is restored by the first Newton steps (the continuity rows are linear).
    trial.densities[last].mapv_inplace(|r| r.clamp(1e-10 * top, (1.0 - 1e-3) * rho_max));
    // Pressure scale: the largest |f'(ρ) + V| over the cells.
    let pressure = trial.densities[last]
        .iter()
        .enumerate()
        .map(|(k, &r)| (e.df(r) + e.potential.as_ref().map_or(0.0, |v| v[k])).abs())
        .fold(0.0f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let mut newton = 0;
    let stage = PolishSettings {
        tol: settings.tol.max(CAP_STAGE_TOL),
        ..settings
    };
    for weight in CAP_HOMOTOPY {
        let report = polish_with(
            problem,
            &mut trial,
            stage,
            (0.0, weight * rho_max * pressure),
            0.0,
        );
        newton += report.newton_steps;
        if TRACE {
            eprintln!(
                "cap barrier {weight:.0e}: converged {} in {} Newton steps, residual {:.3e}",
                report.converged, report.newton_steps, report.residual
            );
        }
        if !report.converged {
            return polish_with(problem, point, settings, (0.0, 0.0), INITIAL_HOLD);
        }
    }
    let mut report = polish_with(problem, &mut trial, settings, (0.0, 0.0), CAP_HOLD);
    report.newton_steps += newton;
    if !report.converged {
        return polish_with(problem, point, settings, (0.0, 0.0), INITIAL_HOLD);
    }
    *point = trial;
    report
}

/// Fraction of the peak below which a density without entropy starts held at 0 (see
/// [`Polisher::initial_holds`]).
const INITIAL_HOLD: f64 = 1e-9;

/// [`polish`] of the problem with an entropy ε ρ log ρ and a cap barrier −ε' log(ρ_max − ρ)
/// added on the energy level, `(reg, cap_barrier)` = (ε, ε') (0: none), densities below `hold`
/// of the peak held at 0 (and within `hold` of ρ_max at the cap) at the start.
fn polish_with(
    problem: &PathProblem<'_>,
    point: &mut PathPoint,
    settings: PolishSettings,
    (reg, cap_barrier): (f64, f64),
    hold: f64,
) -> PolishReport {
    // Newton runs until every row (continuity included) is within `tol`/1000 and the mass of
    // every level is that of ρⁿ to round-off (the continuity rows are linear: a full step
    // satisfies them exactly), or until it stops progressing; the result is accepted when
    // every row is within `tol`, and the masses are then made exact by `project_masses_of`.
    let target = |worst: f64, drift: f64| worst <= 1e-3 * settings.tol && drift <= 1e-14;
    let done = |worst: f64, _drift: f64| worst <= settings.tol;
    let mut pol = Polisher::new(problem, settings.tol);
    pol.reg = reg;
    pol.cap_barrier = cap_barrier;
    pol.initial_holds(point, hold);
    // Held densities take their bound exactly.
    let start = point.clone();
    let mut report = PolishReport {
        converged: false,
        newton_steps: 0,
        rounds: 0,
        residual: f64::INFINITY,
        continuity: f64::INFINITY,
        held: (0, 0),
        multiplier_violation: 0.0,
        mass_correction: 0.0,
        message: String::new(),
    };
    let mut current = point.clone();
    for round in 0..settings.max_rounds {
        report.rounds = round + 1;
        apply_holds(&pol, &mut current);
        let stuck = pol.build_maps(&current);
        if !stuck.is_empty() {
            // A cell that must gain or lose mass but has no live face: free it and its held
            // neighbours (at the levels of that interval), from small values, for good.
            let mesh = problem.mesh;
            for (j, k) in stuck {
                let mut cells = vec![k];
                cells.extend(mesh.faces_of(k).iter().map(|&s| {
                    let f = mesh.faces()[s];
                    if f.k == k { f.l } else { f.k }
                }));
                for level in [j + 1, j] {
                    if !pol.is_free_level(level) {
                        continue;
                    }
                    for &c in &cells {
                        let i = (level - 1) * pol.n + c;
                        if pol.hold[i] != Hold::Free {
                            pol.hold[i] = Hold::Free;
                            pol.released[i] = true;
                            current.densities[level][c] =
                                start.densities[level][c].max(1e-9 * peak(&start));
                        }
                    }
                }
            }
            continue;
        }
        // Faces whose θ vanishes identically carry no flux.
        for j in 0..pol.big_l {
            for s in 0..pol.nf {
                if !pol.live[j * pol.nf + s] {
                    current.fluxes[j][s] = 0.0;
                }
            }
        }
        let mut res = pol.residuals(&current);
        let (mut worst, mut cont) = pol.measure(&res);
        let mut released_by_step = false;
        for _ in 0..settings.max_newton {
            if report.newton_steps >= settings.max_total_newton {
                break;
            }
            if target(worst, cont) {
                break;
            }
            if TRACE {
                eprintln!(
                    "   newton: worst {worst:.3e} cont {cont:.3e} merit {:.3e}",
                    merit(&res, &res)
                );
                pol.debug_worst(&res, &current);
            }
            let dir = match pol.direction(&current, &res) {
                Ok(d) => d,
                Err(e) => {
                    report.message = e;
                    *point = current;
                    report.residual = worst;
                    report.continuity = cont;
                    return report;
                }
            };
            report.newton_steps += 1;
            let merit0 = merit(&res, &res);
            let mut alpha = 1.0;
            let mut accepted = None;
            for _ in 0..40 {
                match pol.step(&current, &dir, alpha) {
                    // Too long a step under the cap barrier: shorten it.
                    Err(cells) if cells.is_empty() => {}
                    Err(cells) => {
                        // Densities reach a bound: hold them there and restart (released
                        // ones are kept inside by the step instead).
                        for (i, h) in cells {
                            pol.hold[i] = h;
                        }
                        released_by_step = true;
                        break;
                    }
                    Ok(q) => {
                        let r = pol.residuals(&q);
                        if merit(&r, &res) < (1.0 - 1e-4 * alpha) * merit0 || {
                            let (w, c) = pol.measure(&r);
                            target(w, c)
                        } {
                            accepted = Some((q, r));
                            break;
                        }
                    }
                }
                alpha *= 0.5;
            }
            if released_by_step {
                break;
            }
            match accepted {
                Some((q, r)) => {
                    if TRACE {
                        eprintln!("   accepted alpha {alpha:.3e}");
                    }
                    // A density without entropy that keeps halving on its way to 0 is a
                    // free-boundary cell whose solution is 0 (Newton converges only linearly
                    // to such a degenerate root): hold it, unless it was released before.
                    let top = peak(&q);
                    let mut halving = Vec::new();
                    for j in 1..=pol.free_levels {
                        if pol.entropy_cell(j) {
                            continue;
                        }
                        for k in 0..pol.n {
                            let i = (j - 1) * pol.n + k;
                            let (old, new) = (current.densities[j][k], q.densities[j][k]);
                            if pol.hold[i] == Hold::Free
                                && !pol.released[i]
                                && new < 0.8 * old
                                && new < 1e-3 * top
                            {
                                halving.push(i);
                            }
                        }
                    }
                    current = q;
                    res = r;
                    (worst, cont) = pol.measure(&res);
                    if !done(worst, cont) && !halving.is_empty() {
                        for i in halving {
                            pol.hold[i] = Hold::Lower;
                        }
                        released_by_step = true;
                        break;
                    }
                }
                None => break,
            }
        }
        report.residual = worst;
        report.continuity = cont;
        if TRACE {
            eprintln!(
                "round {round}: held {} low {} up, {} newton so far, residual {worst:.3e}, released_by_step {released_by_step}",
                pol.hold.iter().filter(|&&h| h == Hold::Lower).count(),
                pol.hold.iter().filter(|&&h| h == Hold::Upper).count(),
                report.newton_steps
            );
        }
        if released_by_step {
            continue;
        }
        if !done(worst, cont) {
            report.message = format!(
                "Newton stopped at relative residual {worst:.3e} (tolerance {:.1e}), \
                 mass drift {cont:.1e}",
                settings.tol
            );
            break;
        }
        // Converged for this active set: extend ψ over the cells it does not enter (their
        // multiplier only has to exist), then check the multipliers of the held densities.
        pol.extend_psi(&mut current);
        // Multipliers are measured against the largest density row (|K| times the pressure
        // scale), so that a held cell is released only when the mass it would take is above
        // the tolerance.
        let mut scale = pol.residuals(&current).raw_rho;
        let mut checks = Vec::new();
        for j in 1..=pol.free_levels {
            for k in 0..pol.n {
                let h = pol.hold[(j - 1) * pol.n + k];
                if h != Hold::Free {
                    let (lam, s) = pol.multiplier(&current, j, k);
                    let i = (j - 1) * pol.n + k;
                    let reached = pol.psi_var[i].is_some()
                        || (j < pol.big_l && pol.psi_var[j * pol.n + k].is_some());
                    if reached {
                        scale = scale.max(s);
                    }
                    checks.push((j, k, h, lam, reached));
                }
            }
        }
        let limit = RELEASE_TOL * settings.tol.max(f64::EPSILON) * scale.max(f64::MIN_POSITIVE);
        let mut changed = false;
        let mut violation = 0.0f64;
        for (j, k, h, lam, reached) in checks {
            let i = (j - 1) * pol.n + k;
            let excess = match h {
                Hold::Lower => -lam,
                Hold::Upper => lam,
                Hold::Free => 0.0,
            };
            // Only cells the system reaches (their ψ is computed, not extended) are
            // released; mass reaches the cells beyond them only through them.
            if excess > limit && reached && pol.significant(j, k, excess, peak(&current)) {
                if TRACE {
                    eprintln!(
                        "  release level {j} cell {k}: lambda {lam:.3e} (limit {limit:.3e}) rho_ipm {:.3e}",
                        start.densities[j][k]
                    );
                }
                pol.hold[i] = Hold::Free;
                pol.released[i] = true;
                current.densities[j][k] = if h == Hold::Lower {
                    start.densities[j][k].max(1e-9 * peak(&start))
                } else {
                    0.999 * pol.rho_max.unwrap_or(1.0)
                };
                changed = true;
            } else {
                if reached {
                    violation = violation.max(excess / scale.max(f64::MIN_POSITIVE));
                }
            }
        }
        report.multiplier_violation = violation;
        if TRACE {
            eprintln!(
                "  check: limit {limit:.3e} scale {scale:.3e} violation {violation:.3e} changed {changed}"
            );
        }
        if !changed {
            report.mass_correction =
                project_masses_of(problem.mesh, &mut current.densities, pol.free_levels);
            report.converged = true;
            report.held = (
                pol.hold.iter().filter(|&&h| h == Hold::Lower).count(),
                pol.hold.iter().filter(|&&h| h == Hold::Upper).count(),
            );
            *point = current;
            return report;
        }
    }
    if report.message.is_empty() {
        report.message = format!(
            "the held set did not settle in {} rounds",
            settings.max_rounds
        );
    }
    *point = current;
    report
}

/// Scale every free level to the mass of ρⁿ (levels 1..=`free_levels`), ρ ← ρ M/M(ρ): the
/// projection onto the mass constraint in the metric weighted by 1/ρ, which keeps ρ ≥ 0 and the
/// held densities at 0. Returns the largest relative correction.
pub(crate) fn project_masses_of(
    mesh: &jko_core::Mesh,
    densities: &mut [Array1<f64>],
    free_levels: usize,
) -> f64 {
    let mass = mesh.mass(&densities[0]);
    let mut worst = 0.0f64;
    for rho in densities.iter_mut().skip(1).take(free_levels) {
        let m = mesh.mass(rho);
        if m > 0.0 {
            let factor = mass / m;
            worst = worst.max((factor - 1.0).abs());
            *rho *= factor;
        }
    }
    worst
}

fn apply_holds(pol: &Polisher<'_>, p: &mut PathPoint) {
    for j in 1..=pol.free_levels {
        for k in 0..pol.n {
            match pol.hold[(j - 1) * pol.n + k] {
                Hold::Lower => p.densities[j][k] = 0.0,
                Hold::Upper => p.densities[j][k] = pol.rho_max.unwrap_or(p.densities[j][k]),
                Hold::Free => {
                    if p.densities[j][k] <= 0.0 {
                        p.densities[j][k] = 1e-12 * peak(p).max(1e-300);
                    }
                }
            }
        }
    }
}

fn peak(p: &PathPoint) -> f64 {
    p.densities
        .iter()
        .flat_map(|d| d.iter())
        .fold(0.0f64, |a, &r| a.max(r))
}

/// Σ (r/s)² with the row scales s of `scales` (held fixed along a line search, so that the
/// Newton direction is a descent direction).
fn merit(res: &Residuals, scales: &Residuals) -> f64 {
    let rel = |r: f64, s: f64| if s > 0.0 { r / s } else { r };
    res.r
        .iter()
        .zip(&scales.scale)
        .map(|(&r, &s)| rel(r, s).powi(2))
        .chain(
            res.rg
                .iter()
                .zip(&scales.sg)
                .map(|(&r, &s)| rel(r, s).powi(2)),
        )
        .sum()
}

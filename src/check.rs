//! Checking a surrogate against true proximal steps (docs/mathematics.md §2.4, §7): a
//! [`StepSolver`] that wraps a surrogate backend and a proximal one. The driver sees one
//! solver; the check reports through [`StepInfo::check`].

use crate::reference::{l1_relative, w2_like};
use jko_core::{
    CheckReport, EnergyTerm, JkoStep, Mesh, StepError, StepInfo, StepOutput, StepSolver, WarmStart,
};

/// A surrogate backend checked against a proximal backend: every step whose number
/// ([`JkoStep::number`]) is a multiple of `every` is also solved by the proximal backend from
/// the same ρⁿ (without a warm start, so the check is independent of the surrogate's path);
/// the relative L1 and W2-like distances are reported in [`StepInfo::check`], and when the L1
/// distance exceeds `tol` the proximal result is returned instead (a fallback, noted in
/// [`StepInfo::notes`]). A step that stands alone (number 0) is always checked.
///
/// Built from a config by [`crate::backend::SolverConfig::build`] (`[solver]` keys
/// `check_every`, `check_solver`, `check_tol`).
///
/// ```rust
/// use jko::backend::BackendConfig;
/// use jko::check::SurrogateCheck;
/// use jko_core::{Energy, JkoStep, Mesh, Potential, StepSolver};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mesh = Mesh::grid(&[40], &[-4.0], &[4.0])?;
/// let energy = Energy::fokker_planck(1.0, Potential::Quadratic { center: vec![0.0], stiffness: 1.0 });
/// let rho0 = mesh.sample(|x| (-(x[0] - 1.0).powi(2) / 0.5).exp());
/// let frozen = energy.freeze(&mesh, &rho0)?;
/// let checked = SurrogateCheck::new(
///     BackendConfig::default_for("flow")?.build()?,
///     BackendConfig::default_for("newton")?.build()?,
///     1,
///     0.5,
/// );
/// let out = checked.solve(&JkoStep::new(&mesh, &rho0, 0.05, &frozen)?.numbered(1), None)?;
/// let check = out.info.check.unwrap();
/// assert_eq!((out.info.solver.as_str(), check.proximal_solver.as_str()), ("flow", "newton"));
/// // A small step: the surrogate agrees with the proximal step and is kept.
/// assert!(check.l1 < 0.05 && !check.fell_back);
/// # Ok(())
/// # }
/// ```
pub struct SurrogateCheck {
    surrogate: Box<dyn StepSolver>,
    proximal: Box<dyn StepSolver>,
    every: usize,
    tol: f64,
}

impl SurrogateCheck {
    /// Check `surrogate` against `proximal` every `every` steps (`every` ≥ 1; 0 is taken as
    /// 1), keeping the proximal result when the relative L1 distance exceeds `tol`.
    ///
    /// ```rust
    /// use jko::backend::BackendConfig;
    /// use jko::check::SurrogateCheck;
    /// use jko_core::{EnergyTerm, StepSolver};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let flow = BackendConfig::default_for("flow")?.build()?;
    /// let quantile = BackendConfig::default_for("quantile")?.build()?;
    /// let checked = SurrogateCheck::new(flow, quantile, 5, 1e-2);
    /// // It treats what both treat, on the meshes both work on.
    /// assert_eq!(checked.name(), "flow");
    /// assert!(!checked.treats(EnergyTerm::MaxDensity));
    /// let square = jko_core::Mesh::grid(&[4, 4], &[0.0, 0.0], &[1.0, 1.0])?;
    /// assert!(checked.supports_mesh(&square).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(
        surrogate: Box<dyn StepSolver>,
        proximal: Box<dyn StepSolver>,
        every: usize,
        tol: f64,
    ) -> Self {
        SurrogateCheck {
            surrogate,
            proximal,
            every: every.max(1),
            tol,
        }
    }
}

impl StepSolver for SurrogateCheck {
    /// The surrogate's name: the wrapper is the surrogate, checked.
    fn name(&self) -> &str {
        self.surrogate.name()
    }

    /// What both backends treat (both run on checked steps).
    fn treats(&self, term: EnergyTerm) -> bool {
        self.surrogate.treats(term) && self.proximal.treats(term)
    }

    /// The meshes both backends work on.
    fn supports_mesh(&self, mesh: &Mesh) -> Result<(), StepError> {
        self.surrogate.supports_mesh(mesh)?;
        self.proximal.supports_mesh(mesh)
    }

    /// Each backend's own check, so each one's hint is kept.
    fn check_supported(&self, mesh: &Mesh, terms: &[EnergyTerm]) -> Result<(), StepError> {
        self.surrogate.check_supported(mesh, terms)?;
        self.proximal.check_supported(mesh, terms)
    }

    fn satisfies_energy_inequality(&self) -> bool {
        self.surrogate.satisfies_energy_inequality()
    }

    /// A step that fell back is the proximal backend's, held to its standard.
    fn energy_inequality_holds(&self, info: &StepInfo) -> bool {
        match &info.check {
            Some(c) if c.fell_back => self.proximal.energy_inequality_holds(info),
            _ => self.surrogate.energy_inequality_holds(info),
        }
    }

    /// The larger of the two estimates: the backends run one after the other.
    fn memory_estimate(&self, mesh: &Mesh, terms: &[EnergyTerm]) -> Option<u64> {
        let a = self.surrogate.memory_estimate(mesh, terms);
        let b = self.proximal.memory_estimate(mesh, terms);
        a.max(b)
    }

    fn step(
        &self,
        problem: &JkoStep<'_>,
        warm: Option<&WarmStart>,
    ) -> Result<StepOutput, StepError> {
        let mut out = self.surrogate.solve(problem, warm)?;
        if !problem.number.is_multiple_of(self.every) {
            return Ok(out);
        }
        let mut proximal = self.proximal.solve(problem, None)?;
        let l1 = l1_relative(problem.mesh, &out.rho, &proximal.rho);
        let w2 = w2_like(problem.mesh, &out.rho, &proximal.rho);
        let fell_back = l1 > self.tol;
        let report = CheckReport {
            proximal_solver: self.proximal.name().to_string(),
            l1,
            w2,
            fell_back,
        };
        if fell_back {
            proximal.info.notes.push(format!(
                "surrogate discrepancy {l1:.3e} > check_tol {:.3e}: proximal step kept",
                self.tol
            ));
            proximal.info.check = Some(report);
            Ok(proximal)
        } else {
            out.info.check = Some(report);
            Ok(out)
        }
    }
}

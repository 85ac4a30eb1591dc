//! The one-step problem restricted to the cells its mass can reach in one step.
//!
//! Without entropy a density with compact support (a porous-medium Barenblatt profile) keeps a
//! compact support over one step: its front advances by a few cells, and every cell beyond it
//! stays empty. Clarabel on the whole mesh carries a cone per face and per cell of that empty
//! region (porous m = 2 at 64²: 1020 cells of ρⁿ > 0, 1508 of ρ^{n+1} > 0, 4096 in all), so the
//! interior point costs 3–4× what the cells that matter need. Here the program is solved on
//! the cells within `margin` face-neighbour layers of the support of ρⁿ (a wall of no flux
//! around them, i.e. the whole problem with ρ = 0 imposed outside), then lifted back and
//! certified on the whole problem by the polish: every KKT row to `polish_tol`, and every cell
//! outside held at 0 with a multiplier of the right sign — the certificate of the minimiser of
//! the whole problem, whatever the restriction. If the answer has mass in the outermost layer
//! (the front reached the wall) the margin doubles; if the certificate fails the caller solves
//! the whole problem.

use crate::polish::PathPoint;
use crate::scheme::PathProblem;
use jko_core::{Face, Mesh, StepEnergy};
use ndarray::Array1;

/// Largest share of the cells a restriction may keep: above it the restricted program is not
/// much smaller than the whole one.
const MAX_SHARE: f64 = 0.75;

/// The restriction to the cells `cells` (indices into the whole mesh, increasing) and the faces
/// between two of them.
pub(crate) struct Restriction {
    pub mesh: Mesh,
    pub start: Array1<f64>,
    pub energy: StepEnergy,
    cells: Vec<usize>,
    faces: Vec<usize>,
    /// For each restricted cell: whether it lies in the outermost layer (the wall).
    outer: Vec<bool>,
    n: usize,
    nf: usize,
}

impl Restriction {
    /// Restriction of the one-step problem (with its free end's `energy`) to the support of
    /// ρⁿ and `margin` layers around it; `None` when it would keep more than [`MAX_SHARE`] of
    /// the cells (not worth it) or the mesh cannot be built.
    pub fn new(problem: &PathProblem<'_>, energy: &StepEnergy, margin: usize) -> Option<Self> {
        let (mesh, start) = (problem.mesh, problem.start);
        let n = mesh.n_cells();
        // Layer of every cell: 0 on the support, k for the k-th ring of neighbours around it.
        let mut layer = vec![usize::MAX; n];
        let mut ring: Vec<usize> = (0..n).filter(|&k| start[k] > 0.0).collect();
        ring.iter().for_each(|&k| layer[k] = 0);
        for depth in 1..=margin {
            if ring.is_empty() {
                break;
            }
            let mut next = Vec::new();
            for &k in &ring {
                for &s in mesh.faces_of(k) {
                    let f = mesh.faces()[s];
                    let o = if f.k == k { f.l } else { f.k };
                    if layer[o] == usize::MAX {
                        layer[o] = depth;
                        next.push(o);
                    }
                }
            }
            ring = next;
        }
        let cells: Vec<usize> = (0..n).filter(|&k| layer[k] != usize::MAX).collect();
        if cells.is_empty() || cells.len() as f64 > MAX_SHARE * n as f64 {
            return None;
        }
        let mut index = vec![usize::MAX; n];
        cells.iter().enumerate().for_each(|(i, &k)| index[k] = i);
        let faces: Vec<usize> = (0..mesh.faces().len())
            .filter(|&s| {
                let f = mesh.faces()[s];
                index[f.k] != usize::MAX && index[f.l] != usize::MAX
            })
            .collect();
        let sub_faces: Vec<Face> = faces
            .iter()
            .map(|&s| {
                let f = mesh.faces()[s];
                Face {
                    k: index[f.k],
                    l: index[f.l],
                    ..f
                }
            })
            .collect();
        let volumes = cells.iter().map(|&k| mesh.volumes()[k]).collect();
        let centres = cells
            .iter()
            .flat_map(|&k| mesh.centre(k).to_vec())
            .collect();
        let sub = Mesh::from_parts(mesh.dim(), volumes, centres, sub_faces).ok()?;
        let pick = |v: &Array1<f64>| Array1::from_iter(cells.iter().map(|&k| v[k]));
        let energy = StepEnergy {
            potential: energy.potential.as_ref().map(pick),
            ..energy.clone()
        };
        Some(Restriction {
            mesh: sub,
            start: pick(start),
            energy,
            outer: cells.iter().map(|&k| layer[k] == margin).collect(),
            cells,
            faces,
            n,
            nf: mesh.faces().len(),
        })
    }

    /// Number of cells kept.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Whether `rho` (on the restricted cells) has mass above `frac` of its peak in the
    /// outermost layer: the front may then have been stopped by the wall. Below that the
    /// one-step scheme's front trails off super-exponentially (porous m = 2 at 24²: cells down
    /// to 6e-17 of the peak 8+ layers out) and whether such a trace is right is the certificate's
    /// question (a held cell is released only when the mass it would take is significant).
    pub fn touches_wall(&self, rho: &Array1<f64>, frac: f64) -> bool {
        let peak = rho.iter().fold(0.0f64, |a, &r| a.max(r));
        rho.iter()
            .zip(&self.outer)
            .any(|(&r, &wall)| wall && r > frac * peak)
    }

    /// The point of the whole problem: densities and fluxes zero outside, ψ from the restricted
    /// solution inside (the polish extends it over the empty cells, see `Polisher::extend_psi`).
    pub fn lift(
        &self,
        start: &Array1<f64>,
        rho: &Array1<f64>,
        flux: &Array1<f64>,
        psi: &Array1<f64>,
    ) -> PathPoint {
        let mut full_rho = Array1::zeros(self.n);
        let mut full_psi = Array1::zeros(self.n);
        for (i, &k) in self.cells.iter().enumerate() {
            full_rho[k] = rho[i];
            full_psi[k] = psi[i];
        }
        let mut full_flux = Array1::zeros(self.nf);
        for (i, &s) in self.faces.iter().enumerate() {
            full_flux[s] = flux[i];
        }
        PathPoint {
            densities: vec![start.clone(), full_rho],
            fluxes: vec![full_flux],
            psi: vec![full_psi],
        }
    }
}

/// Layers the front of ρⁿ may cross in one step, from the explicit velocity: the largest
/// τ |Δ(f'(ρ) + V)| / d_σ² over faces with mass on one side (the explicit Euler displacement
/// in units of d_σ) times 4, plus 3. The factor is measured, not derived: the one-step
/// scheme's front runs ahead of the explicit velocity (Barenblatt, τ = 0.01: m = 2 moved 11
/// cells for an estimate of 5.1 in 1D and 4 for 0.85 at 64²; m = 3 6 for 3.5 and 2 for 0.5).
/// An estimate only: a restriction whose answer reaches its wall is widened, and the answer is
/// certified on the whole problem anyway.
pub(crate) fn initial_margin(
    mesh: &Mesh,
    start: &Array1<f64>,
    energy: &StepEnergy,
    tau: f64,
) -> usize {
    let pressure = |k: usize| energy.df(start[k]) + energy.potential.as_ref().map_or(0.0, |v| v[k]);
    let cells = mesh
        .faces()
        .iter()
        .filter(|f| start[f.k] > 0.0 || start[f.l] > 0.0)
        .map(|f| tau * (pressure(f.l) - pressure(f.k)).abs() / (f.distance * f.distance))
        .fold(0.0f64, f64::max);
    if !cells.is_finite() {
        return usize::MAX;
    }
    ((4.0 * cells).ceil() as usize).saturating_add(3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheme::{End, Scheme};
    use ndarray::array;

    #[test]
    fn restriction_keeps_the_support_and_its_layers_and_lifts_back() {
        // Ten cells on a line, mass in cells 4 and 5.
        let mesh = Mesh::grid(&[10], &[0.0], &[1.0]).unwrap();
        let start = array![0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 0.0, 0.0, 0.0];
        let energy = StepEnergy {
            porous: Some(2.0),
            potential: Some(Array1::from_iter((0..10).map(|k| k as f64))),
            entropy: None,
            max_density: None,
            interaction_frozen: false,
        };
        let problem = |margin| {
            let pp = PathProblem {
                mesh: &mesh,
                start: &start,
                end: End::Free(&energy),
                tau: 0.1,
                scheme: Scheme::OneStep,
            };
            Restriction::new(&pp, &energy, margin)
        };
        let r = problem(2).unwrap();
        // Cells 2..=7: the support and two layers on each side; faces between them only.
        assert_eq!(r.cells, vec![2, 3, 4, 5, 6, 7]);
        assert_eq!(r.faces, vec![2, 3, 4, 5, 6]);
        assert_eq!(r.mesh.faces().len(), 5);
        assert_eq!(r.start, array![0.0, 0.0, 1.0, 2.0, 0.0, 0.0]);
        assert_eq!(
            r.energy.potential,
            Some(array![2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
        );
        assert_eq!(r.outer, vec![true, false, false, false, false, true]);
        // Mass in the outer layer above the fraction touches the wall; a trace below it does not.
        assert!(r.touches_wall(&array![1e-3, 0.1, 1.0, 2.0, 0.1, 0.0], 1e-9));
        assert!(!r.touches_wall(&array![1e-12, 0.1, 1.0, 2.0, 0.1, 0.0], 1e-9));
        let p = r.lift(
            &start,
            &array![0.0, 0.5, 1.0, 1.0, 0.5, 0.0],
            &array![0.1, 0.2, 0.3, 0.4, 0.5],
            &array![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        );
        assert_eq!(p.densities[1][3], 0.5);
        assert_eq!(p.densities[1][0], 0.0);
        assert_eq!(p.fluxes[0][2], 0.1);
        assert_eq!(p.fluxes[0][0], 0.0);
        assert_eq!(p.psi[0][7], 6.0);
        // Not worth it when the support covers most of the mesh.
        assert!(problem(4).is_none());
    }
}

#!/usr/bin/env python3
"""One JKO step of the one-step two-point-flux scheme (docs/mathematics.md §2.1), written in CVXPY the way a
user would write it, solved by Clarabel: the independent peer of the `conic` and `newton` backends.

    minimise   (1/(2τ)) Σ_σ G_σ² / (T_σ θ_σ) + Σ_K |K| [β ρ_K log ρ_K + ρ_K^m/(m−1) + V_K ρ_K]
    subject to |K| (ρ_K − ρⁿ_K) + Σ_{σ∋K} ±G_σ = 0   (+ when K is the face's `k`),
               ρ ≥ 0 (ρ ≤ ρ_max),
    T_σ = |σ|/d_σ,  θ_σ = (ρ_K + ρ_L)/2,

in the natural unknowns (ρ, G) and units, with the kinetic term as rotated second-order cones
‖(2G, s − Tθ)‖ ≤ s + Tθ (s ≥ G²/(Tθ)), the entropy as CVXPY's `entr` (exponential cones), the
porous term as `power` (CVXPY's own cones for it).

Input: a step problem as JSON (format "jko-step-problem/1", written by `jko_conic::StepFile`):
volumes, centres, faces {k, l, area, distance, axis}, rho_prev, tau, energy {entropy, porous,
potential, max_density}.

Usage (from the repository root, after scripts/setup-peers.sh):

    .venv-peers/bin/python benches/peers/tpfa_cvxpy.py PROBLEM.json [--tol 1e-8] [--feas TOL]
        [--max-iter 200] [--direct qdldl|faer] [--refine] [--out RESULT.json] [--npy RHO.npy]
        [--verbose]

`--tol` sets Clarabel's tol_gap_abs and tol_gap_rel (default 1e-8), `--feas` tol_feas (default:
the same as --tol); `--direct` Clarabel's direct_solve_method (default: Clarabel's own, qdldl).
`--refine` is for tight tolerances (1e-10 and below): Clarabel's iterative refinement to 1e-16
(relative and absolute, up to 50 steps, no early stop on a stalling ratio) and a step fraction of
0.999. With the defaults Clarabel stalls near 1e-10 (`optimal_inaccurate`) and its ρ stays
~7e-8 of the peak from the KKT point on OU 1D 1024; with `--refine` at 1e-12, 7e-9
(docs/notes/issue-17.md, round 5).
Prints one JSON line: status, iterations, build_time (CVXPY expressions), solve_time
(Problem.solve: canonicalisation + Clarabel + unpacking), solver_time (Clarabel alone),
objective. `--out` writes the same plus rho, flux and potential φ (= τ × the continuity
multiplier, signed so that G = Tθ(φ_L − φ_K)); `--npy` writes rho as a .npy file.
The exit status is 1 when CVXPY reports anything but "optimal".
"""

import argparse
import json
import sys
import time

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

FORMAT = "jko-step-problem/1"


def load(path):
    with open(path) as f:
        problem = json.load(f)
    if problem.get("format") != FORMAT:
        sys.exit(f"{path}: format {problem.get('format')!r}, expected {FORMAT!r}")
    return problem


def build(problem):
    """The CVXPY problem, its variables and the continuity constraint."""
    vol = np.asarray(problem["volumes"], dtype=float)
    rho_prev = np.asarray(problem["rho_prev"], dtype=float)
    tau = float(problem["tau"])
    faces = problem["faces"]
    k = np.asarray(faces["k"], dtype=np.int64)
    l = np.asarray(faces["l"], dtype=np.int64)
    trans = np.asarray(faces["area"], dtype=float) / np.asarray(faces["distance"], dtype=float)
    n, nf = vol.size, k.size
    energy = problem["energy"]

    # Divergence (+G at k, −G at l) and the face average θ = (ρ_k + ρ_l)/2 as sparse matrices.
    faces_idx = np.arange(nf)
    div = sp.csr_matrix(
        (np.r_[np.ones(nf), -np.ones(nf)], (np.r_[k, l], np.r_[faces_idx, faces_idx])),
        shape=(n, nf),
    )
    mean = sp.csr_matrix(
        (np.full(2 * nf, 0.5), (np.r_[faces_idx, faces_idx], np.r_[k, l])), shape=(nf, n)
    )

    rho = cp.Variable(n, nonneg=True)
    flux = cp.Variable(nf)
    kin = cp.Variable(nf)
    t_theta = cp.multiply(trans, mean @ rho)
    continuity = cp.multiply(vol, rho - rho_prev) + div @ flux == 0
    constraints = [
        continuity,
        cp.SOC(kin + t_theta, cp.vstack([2 * flux, kin - t_theta]), axis=0),
    ]
    objective = cp.sum(kin) / (2 * tau)
    if energy.get("entropy") is not None:
        objective += float(energy["entropy"]) * (vol @ -cp.entr(rho))
    if energy.get("porous") is not None:
        m = float(energy["porous"])
        objective += (vol @ cp.power(rho, m)) / (m - 1)
    if energy.get("potential") is not None:
        objective += (vol * np.asarray(energy["potential"], dtype=float)) @ rho
    if energy.get("max_density") is not None:
        constraints.append(rho <= float(energy["max_density"]))
    prob = cp.Problem(cp.Minimize(objective), constraints)
    return prob, rho, flux, continuity, (vol, rho_prev, tau, k, l, trans, energy)


def energy_value(rho, vol, energy):
    """F_h(ρ) evaluated in numpy (0 log 0 = 0)."""
    value = 0.0
    if energy.get("entropy") is not None:
        pos = rho > 0
        value += float(energy["entropy"]) * np.sum(vol[pos] * rho[pos] * np.log(rho[pos]))
    if energy.get("porous") is not None:
        m = float(energy["porous"])
        value += np.sum(vol * np.maximum(rho, 0.0) ** m) / (m - 1)
    if energy.get("potential") is not None:
        value += np.sum(vol * np.asarray(energy["potential"]) * rho)
    return value


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("problem")
    parser.add_argument("--tol", type=float, default=1e-8)
    parser.add_argument("--feas", type=float, default=None)
    parser.add_argument("--max-iter", type=int, default=200)
    parser.add_argument("--direct", choices=["qdldl", "faer"], default=None)
    parser.add_argument("--refine", action="store_true")
    parser.add_argument("--out")
    parser.add_argument("--npy")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()

    problem = load(args.problem)
    start = time.perf_counter()
    prob, rho, flux, continuity, data = build(problem)
    build_time = time.perf_counter() - start
    vol, rho_prev, tau, k, l, trans, energy = data

    settings = dict(
        tol_gap_abs=args.tol,
        tol_gap_rel=args.tol,
        tol_feas=args.feas if args.feas is not None else args.tol,
        max_iter=args.max_iter,
    )
    if args.refine:
        settings.update(
            iterative_refinement_reltol=1e-16,
            iterative_refinement_abstol=1e-16,
            iterative_refinement_max_iter=50,
            iterative_refinement_stop_ratio=1.0,
            max_step_fraction=0.999,
        )
    if args.direct is not None:
        settings["direct_solve_method"] = args.direct
    start = time.perf_counter()
    try:
        prob.solve(solver=cp.CLARABEL, verbose=args.verbose, **settings)
    except cp.error.SolverError as e:
        print(json.dumps({"status": "solver_error", "message": str(e)}))
        return 1
    solve_time = time.perf_counter() - start
    stats = prob.solver_stats

    summary = {
        "status": prob.status,
        "iterations": int(stats.num_iters or 0),
        "build_time": build_time,
        "solve_time": solve_time,
        "solver_time": float(stats.solve_time or 0.0),
    }
    if rho.value is None:
        print(json.dumps(summary))
        return 1
    r = np.asarray(rho.value, dtype=float)
    g = np.asarray(flux.value, dtype=float)
    theta = 0.5 * (r[k] + r[l])
    # Faces between two empty cells (CVXPY returns ρ = 0 exactly there) carry round-off flux.
    active = (g != 0) & (theta > 0)
    kinetic = float(np.sum(g[active] ** 2 / (trans[active] * theta[active])))
    summary["objective"] = kinetic / (2 * tau) + energy_value(r, vol, energy)
    summary["kinetic"] = kinetic
    print(json.dumps(summary))
    if args.out:
        # CVXPY's multiplier ν of `c == 0` enters its Lagrangian as f − ν·c (c = |K|(ρ − ρⁿ) +
        # div G), so stationarity in G_σ reads G_σ = τ T_σ θ_σ (ν_L − ν_K): φ = τν. (Checked:
        # G = Tθ(φ_L − φ_K) holds to the solver tolerance on the returned point.)
        phi = tau * np.asarray(continuity.dual_value, dtype=float)
        full = dict(summary, rho=r.tolist(), flux=g.tolist(), potential=phi.tolist())
        with open(args.out, "w") as f:
            json.dump(full, f)
    if args.npy:
        np.save(args.npy, r)
    return 0 if prob.status == cp.OPTIMAL else 1


if __name__ == "__main__":
    sys.exit(main())

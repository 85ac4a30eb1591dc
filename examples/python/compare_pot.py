"""The same entropic JKO step with POT and with jko's `sinkhorn` backend (not run in CI).

Problem: Fokker–Planck with V = |x|²/2 (Ornstein–Uhlenbeck), energy F = β ∫ ρ log ρ + ∫ V ρ,
from a Gaussian on a grid, one step of size τ. The entropic JKO step (Peyré 2015) is

    min_{π ≥ 0, π1 = p}  <C, π> + ε Σ π (log π − 1) + 2τ F(q),   q = πᵀ1,

and with μ_K = |K| exp(−V_K/β), 2τ F(q) = 2τβ KL(q | μ) + const because the mass is fixed.
That is semi-unbalanced entropic OT: a hard first marginal and a KL-penalised second marginal
of weight 2τβ — exactly what a POT user reaches for:

    ot.unbalanced.sinkhorn_unbalanced(p, mu, M, reg=eps, reg_m=(inf, 2*tau*beta), reg_type="entropy")

Both solve the same discrete problem (same ε = 2h², the backend's default), so they should agree
with each other to the solver tolerance; both are compared with the exact (unregularised) JKO
iterate of the Gaussian, jko.exact.ou_jko_step, whose distance to them is the entropic bias ∝ ε.

Run (after `scripts/setup-python.sh compare`, which installs POT into .venv):

    .venv/bin/python examples/python/compare_pot.py            # 1D, 200 cells, and 2D, 48² cells
    .venv/bin/python examples/python/compare_pot.py --dim 2 --n 64
    .venv/bin/python examples/python/compare_pot.py --dim 1 --eps-factor 20   # a blur POT's plain Sinkhorn survives

Measured here (2 cores; POT 0.9.7 with its dense cost matrix; jko: tensor-product kernel, log domain,
eps-scaling), tau = 0.1:
    1D, 200 cells, eps = 2h^2:  POT sinkhorn and sinkhorn_stabilized stop on under/overflow with the wrong
        mass (1.37 and 2e-7); jko 20 ms, mass 1 - 1e-12, covariance error 1.8e-3 against the exact JKO
        iterate (conic, unregularised: 2.8e-2).
    2D, 48^2 cells, eps = 2h^2: POT 0.9 s / 1.1 s, jko 24 ms; the densities agree to 1.8e-9 / 6.4e-11
        (relative), both 3.4e-2 from the exact iterate's covariance (the entropic bias).
    1D with --eps-factor 20: POT sinkhorn 11 ms, jko 4 ms, agreeing to 1.8e-9.
"""

import argparse
import time
import warnings

import numpy as np

import jko

try:
    import ot
except ImportError as e:  # pragma: no cover - explained to the user
    raise SystemExit("POT is needed: `scripts/setup-python.sh compare` (or pip install pot)") from e


def setup(dim, n, tau, beta=1.0):
    lo, hi = -5.0, 5.0
    mesh = jko.Mesh.grid([n] * dim, [lo] * dim, [hi] * dim)
    x = mesh.centres  # (N, dim)
    mean0 = np.array([1.0, -0.5, 0.25][:dim])
    cov0 = np.diag([0.25, 0.5, 0.3][:dim])
    rho0 = jko.exact.gaussian_density(mean0, cov0, x)
    rho0 /= mesh.mass(rho0)
    energy = jko.Energy(entropy=beta, potential={"kind": "quadratic", "stiffness": 1.0})
    return mesh, x, rho0, energy


def pot_step(mesh, x, rho0, tau, eps, beta=1.0, method="sinkhorn"):
    """The entropic JKO step written the POT way (dense cost, generalised Sinkhorn)."""
    vol = mesh.volumes
    p = vol * rho0  # cell masses
    V = 0.5 * (x**2).sum(axis=1)
    mu = vol * np.exp(-V / beta)  # Gibbs reference measure of the KL energy
    t0 = time.perf_counter()
    M = ot.dist(x, x)  # squared Euclidean cost
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "reg_type = entropy ... overwritten" notice
        plan, log = ot.unbalanced.sinkhorn_unbalanced(
            p, mu, M, reg=eps, reg_m=(float("inf"), 2 * tau * beta), reg_type="entropy",
            method=method, numItermax=200_000, stopThr=1e-9, log=True,
        )
    elapsed = time.perf_counter() - t0
    q = plan.sum(axis=0)
    # POT logs its error every 10 iterations: iterations ~ 10 x entries.
    return q / vol, elapsed, len(log.get("err", [])) * 10


def moments(mesh, x, rho):
    w = mesh.volumes * rho
    mass = w.sum()
    mean = (w[:, None] * x).sum(axis=0) / mass
    d = x - mean
    cov = (w[:, None, None] * d[:, :, None] * d[:, None, :]).sum(axis=0) / mass
    return mean, cov


def report(name, mesh, x, rho, exact_mean, exact_cov, elapsed, iters):
    if rho is None or not np.all(np.isfinite(rho)):
        print(f"  {name:28s} failed (non-finite result)")
        return
    mean, cov = moments(mesh, x, rho)
    drift = abs(mesh.mass(rho) - 1.0)
    # An early exit on under/overflow returns an unconverged plan: say so rather than compare it.
    verdict = "ok" if drift < 1e-6 else f"FAILED (mass drift {drift:.1e})"
    exact_rho = jko.exact.gaussian_density(exact_mean, exact_cov, x)
    l1 = np.sum(mesh.volumes * np.abs(rho - exact_rho))
    print(
        f"  {name:28s} {elapsed * 1e3:9.1f} ms  {iters:>7}  mass {mesh.mass(rho):.12f}  "
        f"|mean err| {np.abs(mean - exact_mean).max():.2e}  |cov err| {np.abs(cov - exact_cov).max():.2e}  "
        f"L1 {l1:.2e}  {verdict}"
    )


def compare(dim, n, tau, eps_factor):
    mesh, x, rho0, energy = setup(dim, n, tau)
    h = mesh.spacing[0]
    eps = eps_factor * h * h
    m0, c0 = moments(mesh, x, rho0)
    exact_mean, exact_cov = jko.exact.ou_jko_step(m0, c0, tau)
    print(f"\n{dim}D, {mesh.n_cells} cells (h = {h:.4f}), tau = {tau}, eps = {eps_factor:g} h^2 = {eps:.2e}")
    print(f"  {'':28s} {'time':>12s}  {'iters':>7}")
    results = {}
    for method in ("sinkhorn", "sinkhorn_stabilized"):
        try:
            rho, elapsed, iters = pot_step(mesh, x, rho0, tau, eps, method=method)
        except MemoryError:
            print(f"  POT {method}: out of memory for the dense {mesh.n_cells}² cost matrix")
            continue
        results[method] = rho
        report(f"POT unbalanced ({method})", mesh, x, rho, exact_mean, exact_cov, elapsed, iters)
    try:
        t0 = time.perf_counter()
        try:
            rho, info = jko.step(rho0, tau, energy, mesh, solver="sinkhorn", epsilon=eps)
        except jko.InvariantError as e:
            # The entropic plan's transport cost carries the blur (about eps*d/2 per unit mass),
            # so F(rho+) + cost/(2 tau) <= F(rho) is not a theorem for an entropic step; a backend
            # that does not say so (StepSolver::satisfies_energy_inequality) trips the driver's
            # check. Report it and compare the step anyway, with that one check switched off.
            print(f"  jko sinkhorn: {e}\n    -> repeated with the energy-inequality check off")
            t0 = time.perf_counter()
            rho, info = jko.step(rho0, tau, energy, mesh, solver="sinkhorn", epsilon=eps,
                                 checks={"energy_rtol": 1e300})
        elapsed = time.perf_counter() - t0
    except jko.ConfigError as e:
        print(f"  jko sinkhorn: not available in this build ({e})")
        return
    report("jko sinkhorn", mesh, x, rho, exact_mean, exact_cov, elapsed, info["iterations"])
    print(f"  jko sinkhorn: status {info['status']}, solve {info['wall_time'] * 1e3:.1f} ms")
    for method, other in results.items():
        if other is not None and np.all(np.isfinite(other)) and abs(mesh.mass(other) - 1.0) < 1e-6:
            diff = np.abs(other - rho).max() / rho.max()
            print(f"  max |rho_POT({method}) - rho_jko| / max rho = {diff:.2e}")
    t0 = time.perf_counter()
    rho_c, info_c = jko.step(rho0, tau, energy, mesh, solver="conic")
    report("jko conic (unregularised)", mesh, x, rho_c, exact_mean, exact_cov, time.perf_counter() - t0,
           info_c["iterations"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dim", type=int, choices=[1, 2], help="only this dimension")
    parser.add_argument("--n", type=int, help="cells per axis (default 200 in 1D, 48 in 2D)")
    parser.add_argument("--tau", type=float, default=0.1)
    parser.add_argument("--eps-factor", type=float, default=2.0, help="eps = factor * h^2 (default 2, the backend's default)")
    args = parser.parse_args()
    print(f"POT {ot.__version__}, jko {jko.__version__}; backends: {', '.join(s['name'] for s in jko.solvers())}")
    for dim in [args.dim] if args.dim else [1, 2]:
        compare(dim, args.n or (200 if dim == 1 else 48), args.tau, args.eps_factor)


if __name__ == "__main__":
    main()

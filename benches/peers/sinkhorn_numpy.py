"""Entropic JKO steps by separable generalised Sinkhorn in numpy (the peer of jko's `sinkhorn`).

The problem (the built-in example ou-2d at n x n cells): Fokker-Planck / Ornstein-Uhlenbeck on
[-5, 5]^2, F = int rho log rho + int |x|^2/2 rho, rho0 = N((1, -0.5), diag(0.5^2, 0.8^2)) sampled
at the cell centres and normalised to mass 1, tau = 0.1, eps = 1e-2, three steps, each step
solved until the relative l1 violation of the first marginal ||pi 1 - p||_1 / ||p||_1 <= 1e-10.

The algorithm, written as a numpy user would (POT's `sinkhorn_stabilized` in the scaling domain,
with the Gibbs kernel applied separably: K v = K0 @ V @ K1, two BLAS matrix products):
  u <- p / (K v),   z = K^T u,   q = prox(z),   v <- q / z,   sigma = 2 tau / eps,
  prox in closed form: ln q = (ln z + sigma*beta*ln|K| - sigma*(beta + V)) / (1 + sigma*beta).
Absorption as POT's stabilised solvers do: when a scaling leaves [1e-100, 1e100] its logarithm
is moved into per-axis potentials of the kernels (the problem is separable over the axes, so the
absorbed kernels stay tensor products); the iterate is unchanged. Plain Sinkhorn (no relaxation),
each step started from v = 1.

Usage:
  .venv-peers/bin/python benches/peers/sinkhorn_numpy.py N [--steps 3] [--eps 1e-2] [--tau 0.1]
      [--tol 1e-10] [--out DIR]
prints one JSON line (per-step seconds and iterations, numpy/BLAS versions); with --out writes
rho_1.npy ... (float64, shape (N, N), C order) for the agreement check.
Run beside the Rust backend by: cargo run --release -p jko-sinkhorn --example peers
"""

import argparse
import json
import os
import time

import numpy as np


def problem(n):
    h = 10.0 / n
    x = -5.0 + (np.arange(n) + 0.5) * h
    X, Y = np.meshgrid(x, x, indexing="ij")
    rho0 = np.exp(-0.5 * ((X - 1.0) / 0.5) ** 2 - 0.5 * ((Y + 0.5) / 0.8) ** 2)
    rho0 /= rho0.sum() * h * h
    V = 0.5 * (X**2 + Y**2)
    return x, h, rho0, V


def step(x, h, rho, V, eps, tau, beta, tol, max_iter=100_000):
    n = len(x)
    vol = h * h
    p = rho * vol
    mass = p.sum()
    C = (x[:, None] - x[None, :]) ** 2
    # per-axis absorbed potentials (dimensionless): K_a = exp(f_a[i] + g_a[j] - C / eps)
    f = [np.zeros(n), np.zeros(n)]
    g = [np.zeros(n), np.zeros(n)]

    def kernels():
        return [np.exp(f[a][:, None] + g[a][None, :] - C / eps) for a in range(2)]

    K = kernels()
    sigma = 2.0 * tau / eps
    sb = sigma * beta
    shift = sb * np.log(vol) - sigma * (beta + V)
    u = np.zeros((n, n))
    v = np.ones((n, n))
    it = 0
    absorptions = 0
    while True:
        Kv = K[0] @ v @ K[1].T
        if it > 0:
            viol = np.abs(u * Kv - p).sum() / mass
            if viol <= tol or it >= max_iter:
                break
        u = p / Kv
        Ka = K[0].T @ u @ K[1]
        # z = K^T a in the unabsorbed variables: ln z = ln Ka - G
        G = g[0][:, None] + g[1][None, :]
        lz = np.log(Ka) - G
        lq = (lz + shift) / (1.0 + sb)
        v = np.exp(lq - np.log(Ka))
        it += 1
        if not (1e-100 < u.max() < 1e100 and 1e-100 < v.max() < 1e100):
            # absorb the total potentials, fitted separably through the heaviest cell (exact
            # for this problem, a product over the axes); the iterate is unchanged
            F = f[0][:, None] + f[1][None, :]
            lu = np.log(np.maximum(u, 1e-300)) + F
            lv = np.log(v) + G
            i0, j0 = np.unravel_index(np.argmax(p), p.shape)
            g = [lv[:, j0] - lv[i0, j0] / 2, lv[i0, :] - lv[i0, j0] / 2]
            f = [lu[:, j0] - lu[i0, j0] / 2, lu[i0, :] - lu[i0, j0] / 2]
            K = kernels()
            v = np.exp(lv - (g[0][:, None] + g[1][None, :]))
            u = np.exp(lu - (f[0][:, None] + f[1][None, :])) * (u > 0)
            absorptions += 1
    q = v * Ka
    return q / vol, it, viol, absorptions


def run_steps(step, default_steps, versions):
    """The command line shared by the Sinkhorn peers: N cells per axis, `--steps` steps of `step`
    from the problem's initial density, one JSON line of timings (plus `versions`) on stdout."""
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int)
    ap.add_argument("--steps", type=int, default=default_steps)
    ap.add_argument("--eps", type=float, default=1e-2)
    ap.add_argument("--tau", type=float, default=0.1)
    ap.add_argument("--beta", type=float, default=1.0)
    ap.add_argument("--tol", type=float, default=1e-10)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    x, h, rho, V = problem(a.n)
    times, iters, viols, absorbed = [], [], [], []
    for k in range(a.steps):
        t0 = time.perf_counter()
        rho, it, viol, ab = step(x, h, rho, V, a.eps, a.tau, a.beta, a.tol)
        times.append(time.perf_counter() - t0)
        iters.append(it)
        viols.append(viol)
        absorbed.append(ab)
        if a.out:
            os.makedirs(a.out, exist_ok=True)
            np.save(os.path.join(a.out, f"rho_{k + 1}.npy"), np.ascontiguousarray(rho))
    print(json.dumps({"n": a.n, "seconds": times, "iterations": iters, "violation": viols,
                      "absorptions": absorbed, **versions}))


def main():
    blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    run_steps(step, 3, {"numpy": np.__version__,
                        "blas": " ".join([blas.get("name", "?")]
                                         + str(blas.get("openblas configuration", "")).split()[:2])})


if __name__ == "__main__":
    main()

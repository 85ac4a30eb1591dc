"""One entropic JKO step by generalised Sinkhorn with tensor-product kernels, in numpy.

The reference implementation the Rust backend is timed against (examples/numpy_compare.rs runs
both). Same problem and stopping rule as the Rust example:

  unit square, n x n cells, rho0 = normalised exp(-|x - (0.3, 0.6)|^2 / 0.02),
  F = beta * int rho log rho + int V rho, beta = 0.05, V = (5/2)|x - (0.5, 0.5)|^2,
  tau = 0.05, eps = 1e-2, stop when ||pi 1 - p||_1 / ||p||_1 <= 1e-9.

Plain Sinkhorn (no eps-scaling, no relaxation): K b = K0 @ B @ K1 with the 1D Gibbs kernels,
a = p / (K b), b = prox(K a) / (K a), prox in closed form (entropy + potential), sigma = 2 tau / eps.

Usage: python3 numpy_step.py [n] [repeats] [beta] [tau]   -> prints one JSON line
(defaults 128, 3, 0.05, 0.5)
"""

import json
import sys
import time

import numpy as np


def problem(n):
    h = 1.0 / n
    x = (np.arange(n) + 0.5) * h
    X, Y = np.meshgrid(x, x, indexing="ij")
    rho0 = np.exp(-((X - 0.3) ** 2 + (Y - 0.6) ** 2) / 0.02)
    rho0 /= rho0.sum() * h * h
    V = 2.5 * ((X - 0.5) ** 2 + (Y - 0.5) ** 2)
    return x, h, rho0, V


def jko_step(n, eps=1e-2, tau=0.5, beta=0.05, tol=1e-9, max_iter=100000):
    x, h, rho0, V = problem(n)
    vol = h * h
    p = rho0 * vol
    mass = p.sum()
    K = np.exp(-((x[:, None] - x[None, :]) ** 2) / eps)  # symmetric 1D kernel
    sigma = 2.0 * tau / eps
    sb = sigma * beta
    # ln q = (ln z - sigma*beta*(1 - ln|K|) - sigma*V) / (1 + sigma*beta)
    shift = -sb * (1.0 - np.log(vol)) - sigma * V
    b = np.ones((n, n))
    a = None
    it = 0
    viol = np.inf
    while True:
        Kb = K @ b @ K
        if a is not None:
            viol = np.abs(a * Kb - p).sum() / mass
            if viol <= tol or it >= max_iter:
                break
        a = p / Kb
        Ka = K @ a @ K
        lz = np.log(Ka)
        lq = (lz + shift) / (1.0 + sb)
        b = np.exp(lq - lz)
        it += 1
    q = b * Ka
    return q / vol, it, viol


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 128
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    beta = float(sys.argv[3]) if len(sys.argv) > 3 else 0.05
    tau = float(sys.argv[4]) if len(sys.argv) > 4 else 0.5
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        rho, it, viol = jko_step(n, beta=beta, tau=tau)
        times.append(time.perf_counter() - t0)
    _, h, _, _ = problem(n)
    x = (np.arange(n) + 0.5) * h
    mx = rho.sum(axis=1) * h * h
    mean_x = float((mx * x).sum())
    var_x = float((mx * (x - mean_x) ** 2).sum())
    print(json.dumps({"n": n, "beta": beta, "tau": tau, "seconds": min(times),
                      "seconds_all": times, "iterations": it, "violation": viol,
                      "mass": float(rho.sum() * h * h), "mean_x": mean_x, "var_x": var_x,
                      "rho_max": float(rho.max()), "numpy": np.__version__}))


if __name__ == "__main__":
    main()

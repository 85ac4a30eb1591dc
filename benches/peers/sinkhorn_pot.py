"""The entropic JKO step with a dense kernel, POT style (the reference users know), same
problem as sinkhorn_numpy.py (ou-2d at n x n cells, eps = 1e-2, tau = 0.1).

The entropic JKO step for F = beta int rho log rho + int V rho is a semi-relaxed unbalanced
transport problem: with m_K = |K| exp(-1 - V_K / beta), 2 tau F(q) = 2 tau beta KL(q | m) + const
on the masses of fixed total, so
    min_pi <C, pi> + eps sum pi (log pi - 1) + 2 tau beta KL(pi^T 1 | m),   pi 1 = p,
i.e. POT's `ot.unbalanced.sinkhorn_unbalanced(p, m, C, reg=eps, reg_m=(inf, 2 tau beta),
reg_type="entropy")` with the dense N x N cost C = ot.dist(x, x) (N = n^2 cells). POT 0.9.7's
own solvers do not finish this problem at eps = 1e-2 (measured at 32^2): method="sinkhorn"
overflows (K^T u underflows in the far cells, v = inf after 22 iterations) and
method="sinkhorn_stabilized" stops after 4 iterations with a marginal violation of 1.0 (it
absorbs a scalar max(u) only, and regularises K v + 1e-16). So this script runs POT's
`ot.bregman.sinkhorn_stabilized` loop -- dense kernel K = exp((alpha + beta - C) / eps) with
per-entry absorption of log u, log v into alpha, beta when a scaling exceeds tau = 1e3 -- with
the unbalanced update of `sinkhorn_unbalanced`:
    u = p / (K v),   v = (m / (K^T u))^fi * exp(-beta / (eps + 2 tau beta)),
    fi = 2 tau beta / (2 tau beta + eps),
stopping on the same rule as the Rust backend (||pi 1 - p||_1 / ||p||_1 <= tol).

Usage:
  .venv-peers/bin/python benches/peers/sinkhorn_pot.py N [--steps 1] [--tol 1e-10] [--out DIR]
prints one JSON line; with --out writes rho_1.npy, ... (shape (N, N)).
"""


import numpy as np
import ot

from sinkhorn_numpy import problem, run_steps


def step(x, h, rho, V, eps, tau, beta, tol, max_iter=100_000, tau_abs=1e3):
    n = len(x)
    X, Y = np.meshgrid(x, x, indexing="ij")
    pts = np.stack([X.ravel(), Y.ravel()], axis=1)
    vol = h * h
    p = (rho * vol).ravel()
    mass = p.sum()
    m = (vol * np.exp(-1.0 - V / beta)).ravel()
    C = ot.dist(pts, pts, metric="sqeuclidean")
    reg_m = 2.0 * tau * beta
    fi = reg_m / (reg_m + eps)
    alpha = np.zeros(n * n)
    beta_ = np.zeros(n * n)

    def kernel():
        return np.exp((alpha[:, None] + beta_[None, :] - C) / eps)

    K = kernel()
    u = np.ones(n * n)
    v = np.ones(n * n)
    it, absorptions = 0, 0
    while True:
        Kv = K @ v
        if it > 0:
            viol = np.abs(u * Kv - p).sum() / mass
            if viol <= tol or it >= max_iter:
                break
        u = p / Kv
        Ktu = K.T @ u
        v = (m / Ktu) ** fi * np.exp(-beta_ / (eps + reg_m))
        it += 1
        if np.abs(u).max() > tau_abs or np.abs(v).max() > tau_abs:
            alpha += eps * np.log(u)
            beta_ += eps * np.log(v)
            u = np.ones(n * n)
            v = np.ones(n * n)
            K = kernel()
            absorptions += 1
    q = v * (K.T @ u)
    return (q / vol).reshape(n, n), it, viol, absorptions


def main():
    run_steps(step, 1, {"pot": ot.__version__, "numpy": np.__version__})


if __name__ == "__main__":
    main()

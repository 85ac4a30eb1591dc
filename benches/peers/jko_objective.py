"""The JKO objective F(rho) + W2^2(rho, rho^n) / (2 tau) of finished steps, with an exact discrete
W2 (POT's network-simplex `ot.emd2` on the cell centres, squared Euclidean cost), for answers of
different backends on the same (masked) grid: an independent check of which answer is the
better minimiser (issue 20, obstacles). F = sum |K| (beta rho log rho + V rho) (+ the cap as a
constraint: max rho is printed).

Usage (after `OUT=dir cargo run -p jko-bfm --example obstacle -- N`):
  .venv-peers/bin/python benches/peers/jko_objective.py DIR --beta 0.1 --tau 0.2 [--step 1]
      [--prev bfm_0]  # the source density of the step: rho0.npy for step 1, else NAME_{step-1}
Prints one line per answer file NAME_step.npy found in DIR (bfm, conic, sinkhorn, ...):
F, W2 (exact LP), F + W2/(2 tau), relative L1 to the others.
"""
import argparse
import glob
import os

import numpy as np
import ot


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--beta", type=float, required=True)
    ap.add_argument("--tau", type=float, required=True)
    ap.add_argument("--step", type=int, default=1)
    ap.add_argument("--lower", type=float, default=-5.0)
    ap.add_argument("--upper", type=float, default=5.0)
    ap.add_argument("--prev", default=None, help="source file (default rho0.npy at step 1)")
    a = ap.parse_args()
    mask = np.load(os.path.join(a.dir, "mask.npy")) > 0.5
    V = np.load(os.path.join(a.dir, "V.npy"))
    N = int(round(np.sqrt(mask.size)))
    h = (a.upper - a.lower) / N
    c = a.lower + (np.arange(N) + 0.5) * h
    X, Y = np.meshgrid(c, c, indexing="ij")
    pts = np.stack([X.ravel(), Y.ravel()], axis=1)[mask]
    vol = h * h
    M = ot.dist(pts, pts, metric="sqeuclidean")
    prev = a.prev or ("rho0" if a.step == 1 else None)
    answers = sorted(glob.glob(os.path.join(a.dir, f"*_{a.step}.npy")))
    rhos = {os.path.basename(f)[: -len(f"_{a.step}.npy")]: np.load(f) for f in answers}
    for name, rho in rhos.items():
        src = prev if prev else f"{name}_{a.step - 1}"
        mu = np.load(os.path.join(a.dir, src + ".npy"))
        p = mu[mask] * vol
        q = rho[mask] * vol
        q = np.maximum(q, 0.0)
        q *= p.sum() / q.sum()
        w2 = ot.emd2(p, q, M, numItermax=10_000_000)
        r = rho[mask]
        ent = np.where(r > 0, r * np.log(np.where(r > 0, r, 1.0)), 0.0)
        F = vol * np.sum(a.beta * ent + V[mask] * r)
        l1 = {o: np.abs(r - s[mask]).sum() * vol / (mu[mask].sum() * vol) for o, s in rhos.items() if o != name}
        l1s = ", ".join(f"L1 to {o} {v:.4f}" for o, v in l1.items())
        print(f"{name:>10} step {a.step}: F {F:.4f}  W2 {w2:.4f}  F+W2/2tau {F + w2 / (2 * a.tau):.4f}  max rho {r.max():.4f}  {l1s}")


if __name__ == "__main__":
    main()

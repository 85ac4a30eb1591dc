#!/usr/bin/env python3
"""Write data/reference/{ou-1d-jko,barenblatt-1d}.json: closed-form references evaluated here,
in Python's decimal arithmetic (40 digits), independently of the Rust code they check
(jko_core::exact, compared in tests/convergence/reference_data.rs).

    python3 scripts/reference_data.py

- Ornstein-Uhlenbeck, J = KL(rho | N(0, 1)), from N(1, 0.5^2), tau = 0.1: the exact JKO iterate
  of a Gaussian is Gaussian with m' = m/(1 + tau), s' = (s + sqrt(s^2 + 4 tau (1 + tau)))/(2 (1 + tau))
  (minimise W^2/(2 tau) + J over N(m', s'^2): W^2 = (m - m')^2 + (s - s')^2 and
  J = (m'^2 + s'^2)/2 - log s' + const give m' (1 + tau) = m and (1 + tau) s'^2 - s s' - tau = 0).
- Barenblatt profile of d rho/dt = (rho^2)'' in 1D with unit mass:
  rho(t, x) = t^(-1/3) (C - x^2 / (12 t^(2/3)))_+ with C = 9^(2/3) / 12
  (alpha = beta = 1/3, k = alpha (m - 1) / (2 m d) = 1/12; the mass (12 C)^(3/2) / 9 = 1 gives C).
"""

import json
from decimal import Decimal, getcontext
from pathlib import Path

getcontext().prec = 40
ROOT = Path(__file__).resolve().parent.parent / "data" / "reference"
PROVENANCE = "scripts/reference_data.py: closed form evaluated in Python decimal arithmetic (40 digits), independently of jko_core::exact"


def ou_iterates(m, s, tau, steps):
    out = [(0, m, s * s)]
    for n in range(1, steps + 1):
        m = m / (1 + tau)
        s = (s + (s * s + 4 * tau * (1 + tau)).sqrt()) / (2 * (1 + tau))
        out.append((n, m, s * s))
    return out


def barenblatt(t, x):
    c = Decimal(9) ** (Decimal(2) / Decimal(3)) / 12
    inner = c - x * x / (12 * t ** (Decimal(2) / Decimal(3)))
    return max(inner, Decimal(0)) / t ** (Decimal(1) / Decimal(3))


def main():
    tau = Decimal("0.1")
    ou = {
        "provenance": PROVENANCE,
        "problem": "entropy 1 + |x|^2/2, initial N(1, 0.5^2), exact JKO iterates, tau = 0.1",
        "iterates": [
            {"step": n, "mean": float(m), "variance": float(v)}
            for n, m, v in ou_iterates(Decimal(1), Decimal("0.5"), tau, 10)
        ],
    }
    points = []
    for t in ("0.1", "0.2"):
        for i in range(9):
            x = Decimal("-1.2") + Decimal("0.3") * i
            points.append({"t": float(t), "x": float(x), "rho": float(barenblatt(Decimal(t), x))})
    c = Decimal(9) ** (Decimal(2) / Decimal(3)) / 12
    radius = lambda t: float((12 * c).sqrt() * Decimal(t) ** (Decimal(1) / Decimal(3)))
    bj = {
        "provenance": PROVENANCE,
        "m": 2.0,
        "dim": 1,
        "mass": 1.0,
        "support_radius": {"0.1": radius("0.1"), "0.2": radius("0.2")},
        "points": points,
    }
    for name, value in [("ou-1d-jko.json", ou), ("barenblatt-1d.json", bj)]:
        (ROOT / name).write_text(json.dumps(value, indent=2) + "\n")
        print("wrote", ROOT / name)


if __name__ == "__main__":
    main()

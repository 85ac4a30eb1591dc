"""Load a `jko dataset` directory for training a learned JKO operator.

A dataset directory holds, per shard i of n (SHARD = iiiii-of-nnnnn):

    inputs_SHARD.npy        (rows, *cells)            the initial densities rho^0
    trajectories_SHARD.npy  (rows, steps + 1, *cells) rho^0 ... rho^steps (row 0 = the input)
    energies_SHARD.npy      (rows, steps + 1)         F_h(rho^n)
    manifest_SHARD.json     which sample each row is, its status (ok / failed: NaN rows), the
                            backend, tau and the times, the spec, the quality subset

`JkoPairs` reads every finished shard (memory-mapped: only the rows touched are read), drops
failed rows, and serves (rho^n, rho^{n+1}) pairs with tau — the input and target of one learned
JKO step. Only numpy is needed; with PyTorch installed, `JkoPairs.torch()` wraps it as a
`torch.utils.data.Dataset`.

    jko dataset data/dataset-example.toml --out out/dataset
    python examples/python/dataset_loader.py out/dataset
"""

import json
import sys
from pathlib import Path

import numpy as np


class JkoPairs:
    """(rho_n, rho_next) pairs of every ok sample and step of the shards in `directory`."""

    def __init__(self, directory, mmap=True):
        directory = Path(directory)
        manifests = sorted(directory.glob("manifest_*-of-*.json"))
        if not manifests:
            raise FileNotFoundError(f"no manifest_*.json in {directory}: is the dataset finished?")
        self.shards = []  # (trajectories array, ok row numbers, manifest)
        self.failed = []  # (sample index, error) of the failed samples
        for path in manifests:
            m = json.loads(path.read_text())
            traj = np.load(directory / m["files"]["trajectories"], mmap_mode="r" if mmap else None)
            ok = [row for row, s in enumerate(m["samples"]) if s["status"] == "ok"]
            self.failed += [(s["index"], s.get("error")) for s in m["samples"] if s["status"] != "ok"]
            self.shards.append((traj, ok, m))
        first = self.shards[0][2]
        self.tau = first["spec"]["base"]["scheme"]["tau"]
        self.steps = first["spec"]["base"]["scheme"]["steps"]
        self.quality = [m.get("quality") for _, _, m in self.shards if m.get("quality")]
        # Pair k -> (shard, row, step): every ok row contributes `steps` pairs.
        self.index = [
            (s, row, n) for s, (_, ok, _) in enumerate(self.shards) for row in ok for n in range(self.steps)
        ]

    def __len__(self):
        return len(self.index)

    def __getitem__(self, k):
        s, row, n = self.index[k]
        traj = self.shards[s][0]
        return np.asarray(traj[row, n]), np.asarray(traj[row, n + 1]), self.tau

    def trajectories(self):
        """All ok trajectories as one array (samples, steps + 1, *cells), in sample order."""
        rows = []
        for traj, ok, m in self.shards:
            rows += [(m["samples"][r]["index"], traj[r]) for r in ok]
        rows.sort(key=lambda x: x[0])
        return np.stack([np.asarray(t) for _, t in rows])

    def torch(self):
        """This dataset as a torch.utils.data.Dataset of (rho_n, rho_next, tau) float tensors."""
        import torch

        pairs = self

        class TorchJkoPairs(torch.utils.data.Dataset):
            def __len__(self):
                return len(pairs)

            def __getitem__(self, k):
                a, b, tau = pairs[k]
                return torch.from_numpy(a.copy()), torch.from_numpy(b.copy()), torch.tensor(tau)

        return TorchJkoPairs()


def main(directory):
    data = JkoPairs(directory)
    a, b, tau = data[0]
    print(f"{len(data)} pairs (rho_n, rho_next) of shape {a.shape}, tau = {tau}")
    print(f"{len(data.failed)} failed samples: {data.failed[:3]}")
    for q in data.quality:
        print(f"quality against {q['reference']['kind']}: max gap {q['max_gap']:.3e}, "
              f"max W2 to the exact step {q['max_w2_to_exact']:.3e}")
    traj = data.trajectories()
    # Each trajectory keeps its mass (cells outside the domain are 0).
    mass = traj.reshape(traj.shape[0], traj.shape[1], -1).sum(axis=-1)
    assert np.allclose(mass, mass[:, :1], rtol=1e-8), "mass not conserved"
    print(f"trajectories {traj.shape}: mass conserved along every one")
    try:
        import torch  # noqa: F401
    except ImportError:
        print("PyTorch not installed: skipping the torch Dataset")
        return
    loader = __import__("torch").utils.data.DataLoader(data.torch(), batch_size=8, shuffle=True)
    x, y, t = next(iter(loader))
    print(f"torch batch: {tuple(x.shape)} -> {tuple(y.shape)}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out/dataset")

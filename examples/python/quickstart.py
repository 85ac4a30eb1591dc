# %% [markdown]
# # jko from Python: a quick start
#
# Wasserstein gradient flows by the JKO scheme: each step solves
#
#     rho_next = argmin_rho  W²(rho, rho_prev) / (2 tau) + F(rho)
#
# Set up with `scripts/setup-python.sh`, then run this file with `.venv/bin/python
# examples/python/quickstart.py` (or cell by cell in an editor that understands `# %%`).
# Plots are drawn when matplotlib is installed and skipped otherwise.

# %%
import numpy as np

import jko

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:  # plots are optional
    plt = None

print("jko", jko.__version__)
for s in jko.solvers():
    print(f"  {s['name']:10s} treats {', '.join(s['treats'])}")

# %% [markdown]
# ## One step on your own numpy array
#
# Fokker–Planck with V = |x|²/2 (the Ornstein–Uhlenbeck process): the energy is
# ∫ rho log rho + ∫ V rho, and from a Gaussian the exact JKO iterate is again Gaussian.

# %%
mesh = jko.Mesh.grid([200], [-5.0], [5.0])
energy = jko.Energy(entropy=1.0, potential={"kind": "quadratic", "center": [0.0], "stiffness": 1.0})

x = mesh.centres[:, 0]
rho0 = np.exp(-0.5 * ((x - 1.0) / 0.5) ** 2)
rho0 /= mesh.mass(rho0)  # unit mass

tau = 0.1
rho1, info = jko.step(rho0, tau, energy, mesh, solver="conic")
print(f"status {info['status']}, {info['iterations']} iterations, {info['wall_time'] * 1e3:.1f} ms")
print(f"mass {info['mass']:.12f}, energy {energy.value(rho0, mesh):.5f} -> {info['energy']:.5f}")

h = mesh.spacing[0]
mean = h * np.sum(x * rho1)
var = h * np.sum((x - mean) ** 2 * rho1)
m0 = h * np.sum(x * rho0)
v0 = h * np.sum((x - m0) ** 2 * rho0)
exact_mean, exact_cov = jko.exact.ou_jko_step([m0], v0, tau)
print(f"mean {mean:.5f} (exact JKO iterate {exact_mean[0]:.5f}), variance {var:.5f} ({exact_cov[0, 0]:.5f})")

# %% [markdown]
# ## A time loop of your own, with a warm start

# %%
rho, warm = rho0, None
for n in range(1, 6):
    rho, info = jko.step(rho, tau, energy, mesh, warm=warm)
    warm = {"rho": rho, "potential": info.get("potential")}
    mean = h * np.sum(x * rho)
    flow_mean, _ = jko.exact.ou_flow([m0], v0, n * tau)
    print(f"t = {n * tau:.1f}: mean {mean:.5f}, exact flow {flow_mean[0]:.5f}")

# %% [markdown]
# ## A whole run from a config (the CLI's `jko run`)
#
# Any built-in example, a TOML file, or a dict with the same tables.

# %%
config = jko.parse_config(jko.example("ou-2d"))
config["scheme"]["steps"] = 5
trajectory, records = jko.run(config)
print("trajectory", trajectory.shape, "energy", np.round(records["energy"], 5))

# %% [markdown]
# ## 2D with an obstacle: grid-shaped arrays in, grid-shaped arrays out

# %%
mesh2 = jko.Mesh.grid(
    [48, 48], [-3.0, -3.0], [3.0, 3.0], obstacles=[{"kind": "disc", "center": [0.0, 0.0], "radius": 1.0}]
)
gx, gy = np.meshgrid(*mesh2.axes, indexing="ij")
rho2d = np.exp(-2.0 * ((gx + 2.0) ** 2 + gy**2)) * mesh2.mask
drift = jko.Energy(entropy=0.1, potential={"kind": "linear", "slope": [1.0, 0.0]})
frames = [rho2d]
for _step in range(4):
    rho2d, info = jko.step(rho2d, 0.1, drift, mesh2)
    frames.append(rho2d)
print("2D steps, masses:", [round(mesh2.mass(f), 10) for f in frames])

# %% [markdown]
# ## Errors are exceptions with the engine's message

# %%
bad = rho0.copy()
bad[3] = -0.5
try:
    jko.step(bad, tau, energy, mesh)
except jko.InputError as e:
    print("InputError:", e)
try:
    jko.step(rho0, tau, energy, mesh, solver="conic", tolerance=1e-8)
except jko.ConfigError as e:
    print("ConfigError:", e)

# %%
if plt is not None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].plot(x, rho0, label="rho0")
    axes[0].plot(x, rho1, label="one step")
    axes[0].legend()
    axes[1].imshow(frames[-1].T, origin="lower", extent=[-3, 3, -3, 3])
    fig.savefig("quickstart.png", dpi=80)
    print("wrote quickstart.png")

"""Claim: memory grows linearly with the batch size.

Measured, not computed: for each batch size a fresh Python process builds a
wide MLP (three Dense layers of 1,024 units, Adam), trains a few steps at that
batch size, and reports the growth of its peak resident memory (the high-water
mark, `ru_maxrss`) over the same process after one step at batch 1. The
growth is fitted with `a + b * batch`: the slope is the memory per sample
(activations and their gradients), the intercept what does not depend on the
batch. Each batch size is measured in `--seeds` separate processes.

    python examples/claims/memory.py [--seeds 3] [--quick]
"""

from __future__ import annotations

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as c

CLAIMS = [
    {"id": "memory-linear", "sources": ["002", "000"],
     "claim": "Memory requirements increase linearly with the batch size (the "
              "activations and gradients of every sample are stored); too "
              "large a batch runs out of memory.",
     "literature": "Holds for activation memory, which is proportional to the "
                   "batch (Rhu et al. 2016; Chen et al. 2016 trade it for "
                   "recomputation); weights and optimizer state are a constant "
                   "on top. `kbatch.find_max_batch_size` finds the limit."},
]
WIDTH = 1024

_PROBE = """
import os, resource, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras, numpy as np
batch, width, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
keras.utils.set_random_seed(seed)
model = keras.Sequential([keras.Input((40,))]
                         + [keras.layers.Dense(width, activation="relu")
                            for _ in range(3)]
                         + [keras.layers.Dense(10, activation="softmax")])
model.compile("adam", "sparse_categorical_crossentropy")
rng = np.random.default_rng(seed)
def steps(b, n):
    x = rng.standard_normal((b * n, 40)).astype("float32")
    y = rng.integers(0, 10, b * n).astype("int32")
    model.fit(x, y, batch_size=b, epochs=1, verbose=0, shuffle=False)
steps(1, 2)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
steps(batch, 3)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(before * 1024, after * 1024)
"""


def probe(batch, seed):
    out = subprocess.run([sys.executable, "-c", _PROBE, str(batch), str(WIDTH),
                          str(seed)], capture_output=True, text=True, check=True)
    before, after = (int(v) for v in out.stdout.split()[-2:])
    return (after - before) / 2**20


def run(args):

    sizes = (256, 1024, 4096) if args.quick else (256, 1024, 2048, 4096, 8192, 16384)
    growth = {str(b): c.stats([probe(b, s) for s in range(args.seeds)])
              for b in sizes}
    for b in sizes:
        print(b, c.pm(growth[str(b)], 1), "MiB", flush=True)
    fit = fit_affine(sizes, growth)
    # what the activations alone need: every layer's output and its gradient,
    # float32, per sample (the ReLU outputs of 3 layers of WIDTH, plus the head)
    per_sample = 2 * (3 * WIDTH + 10) * 4 / 2**20
    return {"batch_sizes": list(sizes), "width": WIDTH, "growth_mib": growth,
            "fit": fit, "activations_mib_per_sample": per_sample}


def fit_affine(sizes, growth):
    """Least-squares `intercept + slope * batch` over every measurement, R²."""
    import numpy as np

    x = np.repeat(sizes, len(growth[str(sizes[0])]["values"])).astype(float)
    y = np.concatenate([growth[str(b)]["values"] for b in sizes])
    slope, intercept = np.polyfit(x, y, 1)
    r2 = 1 - (y - intercept - slope * x).var() / y.var()
    return {"slope_mib_per_sample": float(slope), "intercept_mib": float(intercept),
            "r2": float(r2)}


def verdicts(results):
    fit = results["fit"]
    kib = fit["slope_mib_per_sample"] * 1024
    measured = (f"peak memory growth fits {fit['intercept_mib']:.0f} MiB + "
                f"{kib:.1f} KiB x batch (R² = {fit['r2']:.3f}; activations and "
                f"their gradients alone: "
                f"{results['activations_mib_per_sample'] * 1024:.1f} KiB per "
                f"sample), batch {results['batch_sizes'][0]} to "
                f"{results['batch_sizes'][-1]}.")
    if fit["r2"] < 0.95 or fit["slope_mib_per_sample"] <= 0:
        return {"memory-linear": (c.DOES_NOT_HOLD, measured)}
    largest = results["batch_sizes"][-1]
    constant_share = fit["intercept_mib"] / (fit["intercept_mib"]
                                             + fit["slope_mib_per_sample"] * largest)
    if abs(constant_share) > 0.2:
        return {"memory-linear": (c.CONDITIONS, measured + (
            " Affine, not proportional: a batch-independent part remains."))}
    return {"memory-linear": (c.HOLDS, measured)}


def plot(results, path):
    import matplotlib.pyplot as plt
    import numpy as np

    sizes = results["batch_sizes"]
    rows = [results["growth_mib"][str(b)] for b in sizes]
    fit = results["fit"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar(sizes, [r["mean"] for r in rows], [r["std"] for r in rows],
                marker="o", capsize=3, ls="none", label="measured (peak RSS growth)")
    grid = np.linspace(0, sizes[-1], 50)
    ax.plot(grid, fit["intercept_mib"] + fit["slope_mib_per_sample"] * grid,
            label=f"fit, R² = {fit['r2']:.3f}")
    ax.plot(grid, results["activations_mib_per_sample"] * grid, ls=":",
            label="activations + gradients (computed)")
    ax.set(xlabel="batch size", ylabel="MiB", title=f"Training memory vs batch "
           f"size (MLP 3x{results['width']}, Adam, CPU)")
    ax.grid(alpha=0.3)
    ax.legend()
    c.save_figure(fig, path)


if __name__ == "__main__":
    c.main(sys.modules[__name__], __doc__)

"""Claims: a larger batch gives a more accurate gradient; larger batches cause
exploding gradients, smaller ones vanishing gradients.

Measured directly on an MLP (SGD with momentum) on MNIST-1D, at initialisation
and after a few epochs of training: the full-batch gradient G over the
training split, then, for batch sizes 4 ... 1024, the gradients g_B of 30
random mini-batches each: their norm |g_B| and their error |g_B - G| / |G|.
Theory for sampling with replacement: E|g_B|^2 = |G|^2 + tr(Sigma)/B and the
relative error falls like 1/sqrt(B).

    python examples/claims/gradient_noise.py [--seeds 3] [--quick]
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as c

CLAIMS = [
    {"id": "larger-batch-accurate-gradient", "sources": ["002"],
     "claim": "A larger batch gives a more accurate estimate of the gradient.",
     "literature": "The mini-batch gradient is an average of B samples: its "
                   "standard error falls like 1/sqrt(B) (McCandlish et al. 2018 "
                   "build the gradient noise scale on it)."},
    {"id": "exploding-vanishing-gradients", "sources": ["002"],
     "claim": "A larger batch can lead to exploding gradients, a smaller batch "
              "to vanishing gradients.",
     "literature": "Exploding and vanishing gradients are properties of depth, "
                   "initialisation and activations (Hochreiter 1991; Bengio et "
                   "al. 1994; Glorot & Bengio 2010), not of the batch size; "
                   "smaller batches give larger, noisier gradient norms."},
]
DRAWS = 30


def flat_gradient(model, x, y):
    import numpy as np
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = model.compute_loss(x=x, y=y, y_pred=model(x, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    return np.concatenate([g.numpy().reshape(-1) for g in grads])


def measure(model, data, sizes, rng):
    import numpy as np

    n = len(data.x_train)
    full = flat_gradient(model, data.x_train, data.y_train)
    g_norm = float(np.linalg.norm(full))
    rows = {}
    for b in sizes:
        norms, errors = [], []
        for _ in range(DRAWS):
            idx = rng.choice(n, size=b, replace=True)
            g = flat_gradient(model, data.x_train[idx], data.y_train[idx])
            norms.append(float(np.linalg.norm(g)))
            errors.append(float(np.linalg.norm(g - full)) / g_norm)
        rows[str(b)] = {"norm": float(np.mean(norms)),
                        "norm_sq": float(np.mean(np.square(norms))),
                        "relative_error": float(np.mean(errors))}
    return g_norm, rows


def run(args):
    import keras
    import numpy as np

    data = c.load_data(args.quick)
    sizes = (4, 64, 1024) if args.quick else (4, 16, 64, 256, 1024)
    train_epochs = 1 if args.quick else 3
    results = {"batch_sizes": list(sizes), "draws": DRAWS,
               "train_epochs": train_epochs, "stages": {}}
    for stage in ("initial", "trained"):
        per_seed = []
        for seed in range(args.seeds):
            keras.utils.set_random_seed(seed)
            model = c.mlp(data, learning_rate=0.05)
            if stage == "trained":
                c.fit_quiet(model, data, batch_size=64, epochs=train_epochs)
            per_seed.append(measure(model, data, sizes, np.random.default_rng(seed)))
        rows = {}
        for b in sizes:
            rows[str(b)] = {key: c.stats([s[1][str(b)][key] for s in per_seed])
                            for key in ("norm", "norm_sq", "relative_error")}
        slope = float(np.polyfit(np.log(sizes),
                                 np.log([rows[str(b)]["relative_error"]["mean"]
                                         for b in sizes]), 1)[0])
        # E|g_B|^2 = |G|^2 + tr(Sigma) / B, least squares in (1, 1/B)
        design = np.stack([np.ones(len(sizes)), 1.0 / np.array(sizes)], axis=1)
        g_sq, trace = np.linalg.lstsq(
            design, [rows[str(b)]["norm_sq"]["mean"] for b in sizes], rcond=None)[0]
        results["stages"][stage] = {
            "full_gradient_norm": c.stats([s[0] for s in per_seed]),
            "by_batch": rows, "error_exponent": slope,
            "fit_g_sq": float(g_sq), "fit_trace": float(trace)}
        print(stage, f"error ~ B^{slope:.2f}", flush=True)
    return results


def verdicts(results):
    sizes = [str(b) for b in results["batch_sizes"]]
    accurate, explode = [], []
    parts = []
    for stage, r in results["stages"].items():
        rows = r["by_batch"]
        accurate.append(-0.65 <= r["error_exponent"] <= -0.35)
        norms = [rows[b]["norm"]["mean"] for b in sizes]
        explode.append(norms[-1] > norms[0])
        parts.append(f"{stage}: |g_B| from {norms[0]:.3g} (batch {sizes[0]}) to "
                     f"{norms[-1]:.3g} (batch {sizes[-1]}), full-batch |G| "
                     f"{r['full_gradient_norm']['mean']:.3g}; error ~ "
                     f"B^{r['error_exponent']:.2f}")
    measured = "; ".join(parts) + "."
    return {
        "larger-batch-accurate-gradient": (
            c.HOLDS if all(accurate) else c.CONDITIONS if any(accurate)
            else c.DOES_NOT_HOLD, measured),
        "exploding-vanishing-gradients": (
            c.HOLDS if all(explode) else c.CONDITIONS if any(explode)
            else c.DOES_NOT_HOLD, measured + " Smaller batches have the larger "
            "gradient norms (noise), larger ones approach |G|: nothing explodes "
            "or vanishes with the batch size." if not any(explode) else measured),
    }


def plot(results, path):
    import matplotlib.pyplot as plt
    import numpy as np

    sizes = np.array(results["batch_sizes"], dtype=float)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for i, (stage, r) in enumerate(results["stages"].items()):
        rows = [r["by_batch"][str(int(b))] for b in sizes]
        ax1.errorbar(sizes, [x["norm"]["mean"] for x in rows],
                     [x["norm"]["std"] for x in rows], marker="o", capsize=3,
                     color=f"C{i}", label=f"{stage}: |g_B|")
        ax1.plot(sizes, np.sqrt(r["fit_g_sq"] + r["fit_trace"] / sizes), ls=":",
                 color=f"C{i}", label="sqrt(|G|² + tr Σ / B), fitted")
        ax1.axhline(r["full_gradient_norm"]["mean"], color=f"C{i}", ls="--", lw=0.8)
        ax2.errorbar(sizes, [x["relative_error"]["mean"] for x in rows],
                     [x["relative_error"]["std"] for x in rows], marker="o",
                     capsize=3, color=f"C{i}",
                     label=f"{stage}: ~B^{r['error_exponent']:.2f}")
    ax1.set(xscale="log", yscale="log", xlabel="batch size",
            ylabel="gradient norm", title="Mini-batch gradient norm")
    ax2.set(xscale="log", yscale="log", xlabel="batch size",
            ylabel="|g_B − G| / |G|", title="Error of the mini-batch gradient")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    c.save_figure(fig, path)


if __name__ == "__main__":
    c.main(sys.modules[__name__], __doc__)

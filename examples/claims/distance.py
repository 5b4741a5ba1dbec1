"""Claim: larger batches move farther from the initial weights.

The L2 distance between the final and the initial weights of an MLP with SGD
and momentum on MNIST-1D, after the same number of epochs (the same samples
seen), at batch sizes 16 ... 1024, in two settings: the same LR at every batch
size, and the LR scaled linearly with the batch size (with warm-up, capped at
the range test's divergence LR).

    python examples/claims/distance.py [--seeds 3] [--quick]
"""

from __future__ import annotations

import itertools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as c

CLAIMS = [
    {"id": "larger-batches-move-farther", "sources": ["003"],
     "claim": "After the same number of samples, larger batches move farther "
              "from the initial weights.",
     "literature": "Hoffer et al. 2017: the distance grows like the log of the "
                   "number of updates, so at a fixed LR larger batches (fewer "
                   "updates) stay closer; scaling the LR up with the batch "
                   "restores the distance."},
]
BASE = 32


def distance(data, batch_size, lr, epochs, seed, scaled):
    import keras
    import numpy as np

    import kbatch

    keras.utils.set_random_seed(seed)
    model = c.mlp(data, learning_rate=lr)
    start = np.concatenate([w.reshape(-1) for w in model.get_weights()])
    callbacks = []
    if scaled and batch_size != BASE:
        callbacks.append(kbatch.ScaleLearningRate(
            lr, base_batch_size=BASE, batch_size=batch_size, rule="linear",
            warmup_epochs=1, verbose=0))
    c.fit_quiet(model, data, batch_size=batch_size, epochs=epochs,
                callbacks=callbacks)
    end = np.concatenate([w.reshape(-1) for w in model.get_weights()])
    return float(np.linalg.norm(end - start)), c.test_accuracy(model, data)


def run(args):
    import keras

    data = c.load_data(args.quick)
    sizes = (16, 128, 1024) if args.quick else (16, 64, 256, 1024)
    epochs = 3 if args.quick else 10
    keras.utils.set_random_seed(0)
    lr = c.range_test_lr(c.mlp(data), data, BASE)
    results = {"batch_sizes": list(sizes), "epochs": epochs, "base_lr": lr}
    for setting, scaled in (("same_lr", False), ("scaled_lr", True)):
        rows = {}
        for b in sizes:
            runs = [distance(data, b, lr, epochs, s, scaled)
                    for s in range(args.seeds)]
            rows[str(b)] = {"distance": c.stats([r[0] for r in runs]),
                            "test_accuracy": c.stats([r[1] for r in runs])}
        results[setting] = rows
        print(setting, {b: round(r["distance"]["mean"], 2) for b, r in rows.items()},
              flush=True)
    return results


def _grows(rows, sizes):
    """Whether the distance grows with every step up in batch size."""
    means = [rows[str(b)]["distance"]["mean"] for b in sizes]
    return all(b > a for a, b in itertools.pairwise(means))


def verdicts(results):
    sizes = results["batch_sizes"]
    same, scaled = results["same_lr"], results["scaled_lr"]
    small, large = str(sizes[0]), str(sizes[-1])
    measured = (f"L2 distance from the initial weights after {results['epochs']} "
                f"epochs, batch {small} vs {large}: same LR "
                f"{c.pm(same[small]['distance'], 2)} vs "
                f"{c.pm(same[large]['distance'], 2)}; LR scaled linearly "
                f"{c.pm(scaled[small]['distance'], 2)} vs "
                f"{c.pm(scaled[large]['distance'], 2)} (test accuracy "
                f"{c.pm(scaled[small]['test_accuracy'])} vs "
                f"{c.pm(scaled[large]['test_accuracy'])}).")
    scaled_row = ", ".join(f"{b}: {scaled[str(b)]['distance']['mean']:.1f}"
                           for b in sizes)
    measured += f" With the scaled LR, by batch size: {scaled_row}."
    if _grows(same, sizes):
        return {"larger-batches-move-farther": (c.HOLDS, measured)}
    ratio = scaled[large]["distance"]["mean"] / scaled[small]["distance"]["mean"]
    healthy = (scaled[large]["test_accuracy"]["mean"]
               >= scaled[small]["test_accuracy"]["mean"] - 0.05)
    if ratio > 1.5 and healthy:
        return {"larger-batches-move-farther": (c.CONDITIONS, measured + (
            " Only when the LR grows with the batch; at one LR, larger batches "
            "move less."))}
    if ratio > 1.5:
        return {"larger-batches-move-farther": (c.DOES_NOT_HOLD, measured + (
            " At one LR larger batches move less; with the LR scaled they move "
            "about as far, and farther only where the scaled LR breaks training."))}
    return {"larger-batches-move-farther": (c.DOES_NOT_HOLD, measured + (
        " At one LR larger batches move less; with the LR scaled, about as far."))}


def plot(results, path):
    import matplotlib.pyplot as plt

    sizes = results["batch_sizes"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for setting, label in (("same_lr", f"same LR ({results['base_lr']:.3g})"),
                           ("scaled_lr", "LR scaled linearly")):
        rows = [results[setting][str(b)]["distance"] for b in sizes]
        ax.errorbar(sizes, [r["mean"] for r in rows], [r["std"] for r in rows],
                    marker="o", capsize=3, label=label)
    ax.set(xscale="log", yscale="log", xlabel="batch size",
           ylabel="‖w_final − w_initial‖",
           title=f"Distance travelled in {results['epochs']} epochs (MNIST-1D MLP)")
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.grid(alpha=0.3)
    ax.legend()
    c.save_figure(fig, path)


if __name__ == "__main__":
    c.main(sys.modules[__name__], __doc__)

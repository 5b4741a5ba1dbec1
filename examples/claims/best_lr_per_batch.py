"""Claim: "0.01 is the best LR for batch 32, 0.08 for the larger batch sizes".

One article reports these two numbers from its own experiment and then uses
0.01 at batch 32 as the base of a scaling rule. Are they a property of batch
sizes, or of one model and dataset? An MLP with plain SGD on MNIST-1D, trained
for a fixed number of epochs at batch 32, 128 and 512 over a grid of LRs
(factors of 2 from 0.0025 to 5.12), several seeds each; the best LR per batch
size is the one with the highest mean validation accuracy.

    python examples/claims/best_lr_per_batch.py [--seeds 3] [--quick]
"""

from __future__ import annotations

import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as c

CLAIMS = [
    {"id": "lr-0.01-at-32-0.08-larger", "sources": ["003"],
     "claim": "An LR of 0.01 is best for batch size 32, and 0.08 for the larger "
              "batch sizes.",
     "literature": "Shallue et al. 2018: the best LR depends on the model, the "
                   "data, the optimizer and the training budget, and grows with "
                   "the batch size up to a point; no universal values exist. "
                   "`kbatch.find_lr` measures it for your model."},
]


def train(data, batch_size, lr, epochs, seed):
    import keras

    keras.utils.set_random_seed(seed)
    model = c.mlp(data, optimizer="sgd", learning_rate=lr)
    history = c.fit_quiet(model, data, batch_size=batch_size, epochs=epochs,
                          validation_data=data.val)
    val = history.history["val_accuracy"][-1]
    return float(val) if math.isfinite(val) else 0.0


def run(args):
    import numpy as np

    data = c.load_data(args.quick)
    sizes = (32, 512) if args.quick else (32, 128, 512)
    lrs = [0.01, 0.04, 0.16] if args.quick else [0.0025 * 2**k for k in range(12)]
    epochs = 4 if args.quick else 15
    val = {}
    for b in sizes:
        val[str(b)] = {f"{lr:g}": c.stats([train(data, b, lr, epochs, s)
                                            for s in range(args.seeds)])
                       for lr in lrs}
        print(b, {k: round(v["mean"], 3) for k, v in val[str(b)].items()}, flush=True)
    best = {b: float(max(row, key=lambda k: row[k]["mean"])) for b, row in val.items()}
    slope = float(np.polyfit(np.log(sizes), np.log([best[str(b)] for b in sizes]),
                             1)[0])
    return {"batch_sizes": list(sizes), "learning_rates": lrs, "epochs": epochs,
            "val_accuracy": val, "best_lr": best, "best_lr_exponent": slope}


def verdicts(results):
    best = results["best_lr"]
    sizes = [str(b) for b in results["batch_sizes"]]
    at_32 = abs(math.log2(best["32"] / 0.01)) <= 1
    larger = all(abs(math.log2(best[b] / 0.08)) <= 1 for b in sizes[1:])
    same_larger = len({best[b] for b in sizes[1:]}) == 1
    val = results["val_accuracy"]
    measured = ("best LR (mean validation accuracy): " + ", ".join(
        f"batch {b}: {best[b]:g} ({val[b][f'{best[b]:g}']['mean']:.3f})"
        for b in sizes) + f"; it grows like batch^{results['best_lr_exponent']:.2f}.")
    top = [b for b in sizes if best[b] == max(results["learning_rates"])]
    if top:
        measured += (f" At batch {', '.join(top)} the best LR is the grid's largest: "
                     "the optimum may lie above it.")
    if at_32 and larger and same_larger:
        return {"lr-0.01-at-32-0.08-larger": (c.HOLDS, measured)}
    if at_32 or larger:
        return {"lr-0.01-at-32-0.08-larger": (c.CONDITIONS, measured + (
            " Part of it matches on this task; the rest does not."))}
    return {"lr-0.01-at-32-0.08-larger": (c.DOES_NOT_HOLD, measured)}


def plot(results, path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    lrs = results["learning_rates"]
    for b in results["batch_sizes"]:
        row = results["val_accuracy"][str(b)]
        ax.errorbar(lrs, [row[f"{lr:g}"]["mean"] for lr in lrs],
                    [row[f"{lr:g}"]["std"] for lr in lrs], marker="o", capsize=3,
                    label=f"batch {b}")
    for lr, text in ((0.01, "0.01"), (0.08, "0.08")):
        ax.axvline(lr, color="grey", ls=":")
        ax.text(lr, 0.02, f" {text} (claim)", transform=ax.get_xaxis_transform(),
                color="grey")
    ax.set(xscale="log", xlabel="learning rate (SGD)", ylabel="validation accuracy",
           title=f"Best LR per batch size, {results['epochs']} epochs "
                 "(MNIST-1D MLP)")
    ax.grid(alpha=0.3)
    ax.legend()
    c.save_figure(fig, path)


if __name__ == "__main__":
    c.main(sys.modules[__name__], __doc__)

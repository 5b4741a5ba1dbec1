"""Claim: a learning-rate finder identifies a suitable learning rate.

For two tasks (MNIST-1D MLP with SGD and momentum at batch 64; digits MLP with
Adam at batch 32) and several seeds: the LR suggested by `kbatch.find_lr`
(its agreed `auto` value) is trained, and compared with the best LR of a grid
of 7 values spaced by half decades, trained with the same seeds. Reported: the
test accuracy of the suggestion divided by the grid's best (mean and worst).

    python examples/claims/lr_finder.py [--seeds 3] [--quick]
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as c

CLAIMS = [
    {"id": "lr-finder-finds-a-good-lr", "sources": ["000"],
     "claim": "A learning-rate finder (loss against a rising LR) identifies a "
              "suitable learning rate.",
     "literature": "Smith 2017 (LR range test), Howard & Gugger 2020 (fastai). "
                   "Finders differ in their worst case: a steepest-slope rule can "
                   "land past the edge of stability (see kbatch's "
                   "benchmarks/results/lr_quality.md)."},
]
TASKS = {
    # name: (dataset, optimizer, batch size, epochs, grid exponents)
    "mnist1d-mlp-momentum": ("mnist1d", "momentum", 64, 20, (-3.0, 0.0)),
    "digits-mlp-adam": ("digits", "adam", 32, 15, (-4.5, -1.5)),
}


def run(args):
    import keras
    import numpy as np

    results = {"tasks": {}}
    for task, (dataset, optimizer, batch, epochs, (low, high)) in TASKS.items():
        data = c.load_data(args.quick, dataset)
        epochs = max(3, epochs // 4) if args.quick else epochs
        grid = [float(v) for v in 10 ** np.linspace(low, high, 4 if args.quick else 7)]

        def train(lr, seed, data=data, optimizer=optimizer, batch=batch,
                  epochs=epochs):
            keras.utils.set_random_seed(seed)
            model = c.mlp(data, optimizer=optimizer, learning_rate=lr)
            c.fit_quiet(model, data, batch_size=batch, epochs=epochs)
            return c.test_accuracy(model, data)

        suggested, finder_acc = [], []
        grid_acc = {f"{lr:.3g}": [] for lr in grid}
        for seed in range(args.seeds):
            keras.utils.set_random_seed(seed)
            lr = c.range_test_lr(c.mlp(data, optimizer=optimizer), data, batch, seed)
            suggested.append(lr)
            finder_acc.append(train(lr, seed))
            for g in grid:
                grid_acc[f"{g:.3g}"].append(train(g, seed))
        grid_stats = {k: c.stats(v) for k, v in grid_acc.items()}
        best = max(grid_stats, key=lambda k: grid_stats[k]["mean"])
        results["tasks"][task] = {
            "batch_size": batch, "epochs": epochs, "suggested_lr": suggested,
            "finder_accuracy": c.stats(finder_acc), "grid": grid_stats,
            "grid_best_lr": float(best), "grid_best": grid_stats[best],
            "ratio": c.stats([a / grid_stats[best]["mean"] for a in finder_acc])}
        print(task, c.pm(results["tasks"][task]["ratio"]), flush=True)
    return results


def verdicts(results):
    tasks = results["tasks"]
    parts = [f"{t}: {c.pm(r['finder_accuracy'])} vs grid best "
             f"{c.pm(r['grid_best'])} at {r['grid_best_lr']:.3g} (ratio mean "
             f"{r['ratio']['mean']:.3f}, worst {min(r['ratio']['values']):.3f})"
             for t, r in tasks.items()]
    measured = "; ".join(parts) + "."
    worst = min(min(r["ratio"]["values"]) for r in tasks.values())
    mean = min(r["ratio"]["mean"] for r in tasks.values())
    if worst >= 0.97:
        verdict = c.HOLDS
    elif mean >= 0.97:
        verdict = c.CONDITIONS
    else:
        verdict = c.DOES_NOT_HOLD
    return {"lr-finder-finds-a-good-lr": (verdict, measured)}


def plot(results, path):
    import matplotlib.pyplot as plt

    tasks = results["tasks"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.8))
    for ax, (task, r) in zip(axes, tasks.items()):
        lrs = [float(k) for k in r["grid"]]
        ax.errorbar(lrs, [v["mean"] for v in r["grid"].values()],
                    [v["std"] for v in r["grid"].values()], marker="o", capsize=3,
                    label="grid")
        ax.scatter(r["suggested_lr"], r["finder_accuracy"]["values"], color="C3",
                   zorder=3, label="kbatch.find_lr suggestion")
        ax.set(xscale="log", xlabel="learning rate", ylabel="test accuracy",
               title=task)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower center")
    c.save_figure(fig, path)


if __name__ == "__main__":
    c.main(sys.modules[__name__], __doc__)

"""Claims: small batches generalize better / large batches generalize better.

Two of the articles kbatch grew from say smaller batches generalize better;
another says larger ones do. An MLP with SGD and momentum on MNIST-1D at batch
sizes 16 ... 1024, each with its best LR (a range test's LR at batch 32 scaled
by the square root, times 1/2, 1 or 2, picked on the validation split), under
two budgets:

- the same number of epochs (larger batches take fewer updates), and
- the same number of updates (larger batches see more epochs, at most 16x),

reporting test accuracy and the generalization gap (train - test accuracy).

    python examples/claims/generalization.py [--seeds 3] [--quick]
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as c

CLAIMS = [
    {"id": "small-batches-generalize", "sources": ["000", "003", "004"],
     "claim": "Smaller batches generalize better: their noisier gradients help "
              "escape poor minima.",
     "literature": "Keskar et al. 2016: large batches (10% of the data) reach "
                   "sharper minima and test worse at a fixed epoch budget; Hoffer "
                   "et al. 2017 and Shallue et al. 2018: the gap closes with "
                   "enough updates and a retuned LR (\"train longer, generalize "
                   "better\")."},
    {"id": "large-batches-generalize", "sources": ["002"],
     "claim": "Larger batches generalize better, since the model sees more "
              "samples per update.",
     "literature": "Not supported by the literature above: at best large batches "
                   "match small ones (Goyal et al. 2017, Shallue et al. 2018)."},
]
MULTIPLIERS = (0.5, 1.0, 2.0)
BASE = 32


def train(data, batch_size, lr, epochs, seed):
    import keras

    keras.utils.set_random_seed(seed)
    model = c.mlp(data, learning_rate=lr)
    history = c.fit_quiet(model, data, batch_size=batch_size, epochs=epochs,
                          validation_data=data.val)
    train_acc = float(model.evaluate(*data.train, verbose=0,
                                     return_dict=True)["accuracy"])
    return {"val": float(history.history["val_accuracy"][-1]),
            "test": c.test_accuracy(model, data), "train": train_acc}


def best_lr_runs(data, batch_size, centre, epochs, seeds, multipliers=MULTIPLIERS):
    """Runs at the multiplier whose mean validation accuracy is highest."""
    import numpy as np

    candidates = {}
    for m in multipliers:
        candidates[m] = [train(data, batch_size, centre * m, epochs, s)
                         for s in seeds]
    best = max(candidates, key=lambda m: np.mean([r["val"] for r in candidates[m]]))
    runs = candidates[best]
    return {"learning_rate": centre * best, "epochs": epochs,
            "test": c.stats([r["test"] for r in runs]),
            "train": c.stats([r["train"] for r in runs]),
            "gap": c.stats([r["train"] - r["test"] for r in runs])}


def run(args):
    import keras

    import kbatch

    data = c.load_data(args.quick)
    sizes = (16, 256) if args.quick else (16, 64, 256, 1024)
    epochs = 4 if args.quick else 20
    keras.utils.set_random_seed(0)
    base_lr = c.range_test_lr(c.mlp(data), data, BASE)
    seeds = range(args.seeds)
    multipliers = (1.0,) if args.quick else MULTIPLIERS
    longest = 2 if args.quick else 16
    results = {"base_lr": base_lr, "batch_sizes": list(sizes), "epochs": epochs,
               "multipliers": list(multipliers), "same_epochs": {},
               "same_updates": {}}
    for b in sizes:
        centre = kbatch.scale_lr(base_lr, BASE, b, "sqrt")
        results["same_epochs"][str(b)] = best_lr_runs(data, b, centre, epochs, seeds,
                                                      multipliers)
        # as many updates as the smallest batch size gets, capped at 16x the
        # epochs (2x with --quick) so that the largest batches stay affordable
        same = min(epochs * b // sizes[0], longest * epochs)
        results["same_updates"][str(b)] = (
            results["same_epochs"][str(b)] if same == epochs
            else best_lr_runs(data, b, centre, same, seeds, multipliers))
        print(b, c.pm(results["same_epochs"][str(b)]["test"]),
              c.pm(results["same_updates"][str(b)]["test"]), flush=True)
    return results


def verdicts(results):
    sizes = [str(b) for b in results["batch_sizes"]]
    small, large = sizes[0], sizes[-1]
    epochs, updates = results["same_epochs"], results["same_updates"]
    small_wins_epochs = c.significant(epochs[small]["test"], epochs[large]["test"])
    small_wins_updates = c.significant(updates[small]["test"], updates[large]["test"])
    large_wins_epochs = c.significant(epochs[large]["test"], epochs[small]["test"])
    large_wins_updates = c.significant(updates[large]["test"], updates[small]["test"])
    by_size = "; ".join(f"{b}: {epochs[b]['test']['mean']:.3f} / "
                        f"{updates[b]['test']['mean']:.3f} ({updates[b]['epochs']} "
                        "epochs)" for b in sizes)
    measured = (f"test accuracy, best LR per batch size, {results['epochs']} epochs "
                f"/ as many updates as batch {small} gets (capped at 16x the epochs): "
                f"{by_size}. Batch {small} vs {large}: same epochs "
                f"{c.pm(epochs[small]['test'])} vs {c.pm(epochs[large]['test'])}; "
                f"generalization gap (train - test) {c.pm(epochs[small]['gap'])} vs "
                f"{c.pm(epochs[large]['gap'])}.")
    if small_wins_epochs and small_wins_updates:
        small_verdict = (c.HOLDS, measured)
    elif small_wins_epochs:
        small_verdict = (c.CONDITIONS, measured + " Small batches win only when "
                         "the large ones get fewer updates.")
    elif small_wins_updates:
        small_verdict = (c.CONDITIONS, measured)
    else:
        small_verdict = (c.DOES_NOT_HOLD, measured + " At equal epochs no "
                         "significant difference.")
    if large_wins_epochs:
        large_verdict = (c.HOLDS, measured)
    elif large_wins_updates:
        large_verdict = (c.CONDITIONS, measured + " The large batch wins only when "
                         "it is given more epochs than the small one; at equal "
                         "epochs, no significant difference.")
    else:
        large_verdict = (c.DOES_NOT_HOLD, measured)
    return {"small-batches-generalize": small_verdict,
            "large-batches-generalize": large_verdict}


def plot(results, path):
    import matplotlib.pyplot as plt

    sizes = results["batch_sizes"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("same_epochs", f"same epochs ({results['epochs']})"),
                       ("same_updates", "same updates (more epochs)")):
        rows = [results[key][str(b)] for b in sizes]
        ax1.errorbar(sizes, [r["test"]["mean"] for r in rows],
                     [r["test"]["std"] for r in rows], marker="o", capsize=3,
                     label=label)
        ax2.errorbar(sizes, [r["gap"]["mean"] for r in rows],
                     [r["gap"]["std"] for r in rows], marker="o", capsize=3,
                     label=label)
    ax1.set(ylabel="test accuracy")
    ax2.set(ylabel="train - test accuracy")
    for ax in (ax1, ax2):
        ax.set(xscale="log", xlabel="batch size")
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Generalization vs batch size, best LR per batch (MNIST-1D MLP)")
    c.save_figure(fig, path)


if __name__ == "__main__":
    c.main(sys.modules[__name__], __doc__)

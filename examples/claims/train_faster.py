"""Claims: larger batches train faster; smaller batches converge in fewer epochs.

Speed is time to a target, not time per epoch. An MLP with SGD and momentum on
MNIST-1D at batch sizes 16 ... 1024, each at the LR of its own range test
(`kbatch.find_lr` at that batch size), trained until the validation accuracy
first reaches a common target (95% of the best accuracy that every batch size
reaches). The wall-clock seconds and the epochs to the target are read from
the same runs.

    python examples/claims/train_faster.py [--seeds 3] [--quick]
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as c
import keras

CLAIMS = [
    {"id": "larger-batches-train-faster", "sources": ["002", "004"],
     "claim": "Larger batches train faster, because more samples are processed "
              "in parallel.",
     "literature": "Shallue et al. 2018, McCandlish et al. 2018: the steps to a "
                   "target fall almost linearly with the batch size up to the "
                   "critical batch size, then flatten; wall-clock gains also need "
                   "hardware parallelism the small batch leaves unused."},
    {"id": "smaller-batches-converge-faster", "sources": ["002"],
     "claim": "Smaller batches converge faster (in epochs), since the weights are "
              "updated more often.",
     "literature": "True per epoch below the critical batch size (Shallue et al. "
                   "2018; McCandlish et al. 2018), where an epoch of small batches "
                   "buys more progress than an epoch of large ones."},
]


class _Clock(keras.callbacks.Callback):
    """Wall-clock seconds at the end of each epoch."""

    def on_train_begin(self, logs=None):
        self.start, self.times = time.perf_counter(), []

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start)


def train(data, batch_size, lr, epochs, seed):
    keras.utils.set_random_seed(seed)
    model = c.mlp(data, learning_rate=lr)
    clock = _Clock()
    history = c.fit_quiet(model, data, batch_size=batch_size, epochs=epochs,
                          validation_data=data.val, callbacks=[clock])
    return {"val": [float(v) for v in history.history["val_accuracy"]],
            "seconds": clock.times}


def run(args):
    data = c.load_data(args.quick)
    sizes = (16, 256) if args.quick else (16, 64, 256, 1024)
    epochs = 6 if args.quick else 40
    results = {"batch_sizes": list(sizes), "epochs": epochs, "runs": {}, "lr": {}}
    for b in sizes:
        keras.utils.set_random_seed(0)
        lr = c.range_test_lr(c.mlp(data), data, b)
        results["lr"][str(b)] = lr
        train(data, b, lr, 1, 0)  # warm the tracing caches: time the training
        results["runs"][str(b)] = [train(data, b, lr, epochs, s)
                                   for s in range(args.seeds)]
        print(b, f"lr {lr:.3g}", flush=True)
    summarize(results)
    return results


def summarize(results):
    """Target, and the seconds and epochs to it per batch size (in place)."""
    import numpy as np

    sizes = [str(b) for b in results["batch_sizes"]]
    best = {b: np.mean([max(r["val"]) for r in results["runs"][b]]) for b in sizes}
    target = 0.95 * min(best.values())
    results["target"] = float(target)
    results["to_target"] = {}
    for b in sizes:
        seconds, epochs = [], []
        for r in results["runs"][b]:
            hit = next((i for i, v in enumerate(r["val"]) if v >= target), None)
            seconds.append(r["seconds"][hit] if hit is not None else float("inf"))
            epochs.append(hit + 1 if hit is not None else float("inf"))
        results["to_target"][b] = {"seconds": c.stats(seconds),
                                   "epochs": c.stats(epochs),
                                   "seconds_per_epoch": float(np.mean(
                                       [r["seconds"][-1] / len(r["seconds"])
                                        for r in results["runs"][b]]))}


def verdicts(results):
    sizes = [str(b) for b in results["batch_sizes"]]
    t = results["to_target"]
    fastest = min(sizes, key=lambda b: t[b]["seconds"]["mean"])
    fewest = min(sizes, key=lambda b: t[b]["epochs"]["mean"])
    row = "; ".join(f"{b}: {t[b]['seconds']['mean']:.1f} s / "
                    f"{t[b]['epochs']['mean']:.1f} epochs" for b in sizes)
    measured = (f"to {results['target']:.3f} validation accuracy — {row}.")
    if fastest == sizes[-1]:
        faster = c.HOLDS
    elif fastest == sizes[0]:
        faster = c.DOES_NOT_HOLD
    else:
        faster = c.CONDITIONS
    fast_text = measured + f" Fastest in seconds: batch {fastest}."
    if fewest == sizes[0]:
        converge = c.HOLDS
    elif fewest == sizes[-1]:
        converge = c.DOES_NOT_HOLD
    else:
        converge = c.CONDITIONS
    return {"larger-batches-train-faster": (faster, fast_text),
            "smaller-batches-converge-faster": (
                converge, measured + f" Fewest epochs: batch {fewest}.")}


def plot(results, path):
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for b in results["batch_sizes"]:
        runs = results["runs"][str(b)]
        val = np.mean([r["val"] for r in runs], axis=0)
        seconds = np.mean([r["seconds"] for r in runs], axis=0)
        ax1.plot(np.arange(1, len(val) + 1), val, label=f"batch {b}")
        ax2.plot(seconds, val, label=f"batch {b}")
    for ax in (ax1, ax2):
        ax.axhline(results["target"], color="grey", ls=":")
        ax.grid(alpha=0.3)
    ax1.set(xlabel="epoch", ylabel="validation accuracy")
    ax2.set(xlabel="wall-clock seconds (this CPU)", xscale="log")
    ax2.legend()
    fig.suptitle("Time to a target accuracy (MNIST-1D MLP, LR from a range test "
                 "at each batch size)")
    c.save_figure(fig, path)


if __name__ == "__main__":
    c.main(sys.modules[__name__], __doc__)

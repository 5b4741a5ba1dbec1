"""Don't decay the learning rate, increase the batch size (Smith et al. 2017).

Three ways to spend the same number of epochs on an MNIST-1D MLP with SGD and
momentum:

- constant: the base learning rate and batch size throughout;
- LR decay: the learning rate divided by `factor` at each boundary;
- batch increase: the batch size multiplied by `factor` at the same boundaries
  instead (`kbatch.BatchSizeSchedule`, capped at N/10, after which the learning
  rate decays), which needs fewer parameter updates.

The script prints the test accuracy (mean +- std over seeds) and the number of
parameter updates of each, and plots test accuracy against epochs and against
updates.

    python examples/increase_batch_not_lr.py [--seeds 3] [--epochs 30] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import kbatch
from kbatch import datasets
from kbatch import models
from kbatch.scaling.batch_size_schedule import Phase
from kbatch.scaling.batch_size_schedule import updates_per_epoch


class _TestAccuracy(keras.callbacks.Callback):
    def __init__(self, x, y):
        super().__init__()
        self.x, self.y, self.values = x, y, []

    def on_epoch_end(self, epoch, logs=None):
        result = self.model.evaluate(self.x, self.y, verbose=0, return_dict=True)
        self.values.append(float(result["accuracy"]))


def run_one(data, kind, schedule, epochs, base_lr, seed):
    keras.utils.set_random_seed(seed)
    model = models.build_mlp(data.input_shape, data.num_classes, hidden=(128, 128),
                             optimizer="momentum", learning_rate=base_lr)
    tracker = _TestAccuracy(*data.test)
    n = len(data.x_train)
    if kind == "batch increase":
        history = kbatch.fit_with_batch_schedule(
            model, *data.train, schedule=schedule, epochs=epochs,
            callbacks=[tracker], verbose=0)
    else:
        if kind == "LR decay":
            phases = schedule.decay_equivalent(epochs, base_lr)
        else:
            phases = [Phase(0, epochs, schedule.batch_size, base_lr)]
        updates, batch_sizes = [], []
        for phase in phases:
            model.optimizer.learning_rate = phase.learning_rate
            model.fit(*data.train, batch_size=phase.batch_size,
                      initial_epoch=phase.start_epoch, epochs=phase.end_epoch,
                      callbacks=[tracker], verbose=0)
            span = phase.end_epoch - phase.start_epoch
            updates += [updates_per_epoch(n, phase.batch_size)] * span
            batch_sizes += [phase.batch_size] * span
        history = keras.callbacks.History()
        history.history = {"updates": updates, "batch_size": batch_sizes}
    return {
        "test_accuracy": tracker.values,
        "updates": history.history["updates"],
        "batch_size": history.history["batch_size"],
    }


def plot(curves, path):
    """`curves`: {kind: (test accuracy per epoch, cumulative updates per epoch)}."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for kind, (accuracy, updates) in curves.items():
        ax1.plot(np.arange(1, len(accuracy) + 1), accuracy, label=kind)
        ax2.plot(updates, accuracy, label=kind)
    ax1.set(xlabel="epoch", ylabel="test accuracy")
    ax2.set(xlabel="parameter updates")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    ax2.legend()
    fig.suptitle("Increase the batch size instead of decaying the LR (MNIST-1D MLP)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--factor", type=float, default=3.0)
    parser.add_argument("--out", default="kbatch-examples/increase_batch_not_lr")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    data = datasets.load_mnist1d()
    keras.utils.set_random_seed(0)
    probe = models.build_mlp(data.input_shape, data.num_classes, hidden=(128, 128),
                             optimizer="momentum", learning_rate=0.01)
    base_lr = kbatch.find_lr(probe, *data.train, batch_size=args.batch_size,
                             seed=0, verbose=0).suggestion()
    boundaries = [args.epochs // 3, 2 * args.epochs // 3]
    schedule = kbatch.BatchSizeSchedule(args.batch_size, boundaries,
                                        factor=args.factor)
    print(f"base LR {base_lr:.3g} at batch {args.batch_size}; boundaries "
          f"{boundaries}, factor {args.factor:g}")
    for phase in schedule.phases(args.epochs, len(data.x_train), base_lr):
        print(f"  batch increase: epochs {phase.start_epoch}-{phase.end_epoch}: "
              f"batch {phase.batch_size}, lr {phase.learning_rate:.3g}")

    kinds = ("constant", "LR decay", "batch increase")
    results = {kind: [run_one(data, kind, schedule, args.epochs, base_lr, seed)
                      for seed in range(args.seeds)] for kind in kinds}

    print(f"\n{'':>15}  test accuracy     updates")
    summary = {}
    for kind, runs in results.items():
        final = [r["test_accuracy"][-1] for r in runs]
        updates = sum(runs[0]["updates"])
        summary[kind] = {"accuracy_mean": float(np.mean(final)),
                         "accuracy_std": float(np.std(final)), "updates": updates}
        print(f"{kind:>15}  {np.mean(final):.3f} +- {np.std(final):.3f}  {updates:8d}")

    plot({kind: (np.mean([r["test_accuracy"] for r in runs], axis=0),
                 np.cumsum(runs[0]["updates"])) for kind, runs in results.items()},
         os.path.join(args.out, "increase_batch_not_lr.png"))
    with open(os.path.join(args.out, "increase_batch_not_lr.json"), "w") as f:
        json.dump({"base_learning_rate": base_lr, "schedule": schedule.get_config(),
                   "epochs": args.epochs, "summary": summary, "runs": results}, f,
                  indent=1)
    print(f"figure and numbers in {args.out}/")


if __name__ == "__main__":
    main()

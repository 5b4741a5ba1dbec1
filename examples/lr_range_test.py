"""LR range test on MNIST-1D, as a function and as a callback, then checked.

Runs on a CPU in about a minute, with no download:

    python examples/lr_range_test.py [--out DIR] [--optimizer momentum|adam]

1. `kbatch.find_lr` on a small CNN: the curve, the suggestions, a plot, a JSON.
2. The same test as a `model.fit` callback (`kbatch.LRRangeTest`).
3. Why the per-batch loss matters: Keras' `logs["loss"]` in a batch callback is
   the running mean of the epoch, which lags behind the real loss; the plot
   shows both.
4. A check: a few epochs at the suggested LR against a 5-point LR grid.
"""

from __future__ import annotations

import argparse
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


class RunningMeanSpy(keras.callbacks.Callback):
    """Records what naive LR finders plot: `logs["loss"]` at each batch."""

    def __init__(self):
        super().__init__()
        self.values = []

    def on_train_batch_end(self, batch, logs=None):
        self.values.append(float(logs["loss"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="kbatch-examples/lr_range_test")
    parser.add_argument("--optimizer", default="momentum",
                        choices=("momentum", "sgd", "adam", "rmsprop"))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    data = datasets.load_mnist1d()
    keras.utils.set_random_seed(0)

    def build(lr=0.01):
        return models.build("cnn", data, optimizer=args.optimizer, learning_rate=lr)

    # 1. One function call; the model comes back untouched.
    model = build()
    # verbose='auto': a progress bar, then the summary of the suggestions.
    result = kbatch.find_lr(model, *data.train, batch_size=args.batch_size, seed=0)
    result.save(os.path.join(args.out, "find_lr.json"))
    ax = result.plot(path=os.path.join(args.out, "find_lr.png"))
    plt.close(ax.figure)

    # 2. The callback, inside an ordinary fit call (one epoch is ~28 steps, so
    #    the sweep spans several epochs; the callback stops training when done).
    model = build()
    finder = kbatch.LRRangeTest(num_steps=100)
    spy = RunningMeanSpy()
    model.fit(*data.train, batch_size=args.batch_size, epochs=100,
              callbacks=[finder, spy], verbose=0)
    callback_result = finder.result
    print(f"callback: {callback_result}")

    # 3. True per-batch losses vs the running mean a naive finder would plot.
    fig, ax = plt.subplots(figsize=(7, 4.5))
    n = callback_result.lrs.size
    ax.plot(callback_result.lrs, callback_result.losses, alpha=0.5,
            label="per-batch loss (kbatch)")
    ax.plot(callback_result.lrs, np.asarray(spy.values[:n]),
            label='logs["loss"]: running mean of the epoch')
    ax.set_xscale("log")
    ax.set_ylim(0.95 * np.nanmin(callback_result.losses), 4.0)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "running_mean_vs_batch_loss.png"), dpi=120)
    plt.close(fig)

    # 4. Check the suggestion against a small grid, same budget and seed.
    suggested = result.suggestion()
    grid = [suggested, *np.geomspace(1e-3, 1.0, 5)]
    print(f"\ntraining {args.epochs} epochs per LR (suggested: {suggested:.3g})")
    scores = {}
    for lr in grid:
        keras.utils.set_random_seed(0)
        model = build(float(lr))
        model.fit(*data.train, batch_size=args.batch_size, epochs=args.epochs,
                  verbose=0)
        scores[float(lr)] = model.evaluate(*data.val, verbose=0,
                                           return_dict=True)["accuracy"]
        tag = "  <- suggested" if lr == suggested else ""
        print(f"  lr {lr:9.3g}: validation accuracy {scores[float(lr)]:.3f}{tag}")
    best = max(scores.values())
    print(f"suggested / best of grid: {scores[suggested] / best:.3f}")
    print(f"figures and JSON in {args.out}/")


if __name__ == "__main__":
    main()

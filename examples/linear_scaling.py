"""Which LR scaling rule holds, and up to which batch size? Measured on MNIST-1D.

One of the articles kbatch grew from says: when the batch grows, grow the
learning rate, linearly or by the square root. Here is the experiment done
properly: an MLP trained with SGD and momentum for a fixed number of epochs at
batch sizes 32 ... 1024, with the learning rate

- unscaled (the base LR at every batch size),
- scaled linearly (Goyal et al. 2017), with and without gradual warm-up,
- scaled by the square root (Krizhevsky 2014; Hoffer et al. 2017), with and
  without warm-up,

the base LR coming from an LR range test at batch 32 (`kbatch.find_lr`). Every
setting runs with several seeds; the script prints the mean +- std test accuracy
and, for each rule, the largest batch size whose accuracy stays within one
point of batch 32. It writes one figure of the validation-loss curves and a JSON
of every number.

    python examples/linear_scaling.py [--seeds 3] [--epochs 20] [--out DIR]
    python examples/linear_scaling.py --quick   # about two minutes
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

BASE_BATCH = 32
VARIANTS = {
    # name: (rule, warm-up)
    "unscaled": ("none", False),
    "linear": ("linear", False),
    "linear + warm-up": ("linear", True),
    "sqrt": ("sqrt", False),
    "sqrt + warm-up": ("sqrt", True),
}


def build(data):
    return models.build_mlp(data.input_shape, data.num_classes, hidden=(128, 128),
                            optimizer="momentum", learning_rate=0.01)


def base_learning_rate(data, seed):
    keras.utils.set_random_seed(seed)
    result = kbatch.find_lr(build(data), *data.train, batch_size=BASE_BATCH,
                            seed=seed, verbose=0)
    return result.suggestion()


def train(data, batch_size, base_lr, rule, warmup, epochs, seed):
    keras.utils.set_random_seed(seed)
    model = build(data)
    scale = kbatch.ScaleLearningRate(
        base_lr, base_batch_size=BASE_BATCH, batch_size=batch_size, rule=rule,
        warmup_epochs=max(1, epochs // 10) if warmup else None, verbose=0,
    )
    history = model.fit(*data.train, batch_size=batch_size, epochs=epochs,
                        validation_data=data.val, callbacks=[scale], verbose=0)
    accuracy = model.evaluate(*data.test, verbose=0, return_dict=True)["accuracy"]
    val_loss = [v if np.isfinite(v) else None for v in history.history["val_loss"]]
    return {"accuracy": float(accuracy), "val_loss": val_loss,
            "learning_rate": scale.schedule.learning_rate}


def run(batch_sizes, seeds, epochs, out):
    data = datasets.load_mnist1d()
    base_lrs = [base_learning_rate(data, seed) for seed in seeds]
    base_lr = float(np.exp(np.mean(np.log(base_lrs))))
    print(f"base LR at batch {BASE_BATCH} (LR range test, {len(seeds)} seeds): "
          f"{base_lr:.3g}")
    results = {}
    for name, (rule, warmup) in VARIANTS.items():
        for batch_size in batch_sizes:
            if batch_size == BASE_BATCH and name != "unscaled":
                results[(name, batch_size)] = results[("unscaled", BASE_BATCH)]
                continue
            runs = [train(data, batch_size, base_lr, rule, warmup, epochs, s)
                    for s in seeds]
            results[(name, batch_size)] = runs
            accs = [r["accuracy"] for r in runs]
            lr = runs[0]["learning_rate"]
            print(f"{name:>17} batch {batch_size:5d}  lr {lr:8.3g}  test accuracy "
                  f"{np.mean(accs):.3f} +- {np.std(accs):.3f}", flush=True)
    return data, base_lr, results


def verdicts(results, batch_sizes):
    base = np.mean([r["accuracy"] for r in results[("unscaled", BASE_BATCH)]])
    holds = {}
    for name in VARIANTS:
        largest = BASE_BATCH
        for batch_size in batch_sizes:
            mean = np.mean([r["accuracy"] for r in results[(name, batch_size)]])
            if mean >= base - 0.01:
                largest = batch_size
            else:
                break
        holds[name] = largest
    return base, holds


def plot(results, batch_sizes, path):
    fig, axes = plt.subplots(1, len(VARIANTS), figsize=(4 * len(VARIANTS), 3.6),
                             sharey=True)
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(batch_sizes)))
    for ax, name in zip(axes, VARIANTS):
        for color, batch_size in zip(colors, batch_sizes):
            curves = np.array([[np.nan if v is None else v for v in r["val_loss"]]
                               for r in results[(name, batch_size)]])
            ax.plot(np.arange(1, curves.shape[1] + 1), np.nanmean(curves, axis=0),
                    color=color, label=f"B={batch_size}")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylim(0.8, 2.4)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation loss")
    axes[-1].legend(fontsize="small")
    fig.suptitle("MNIST-1D MLP, SGD+momentum, same epochs at every batch size")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", default="kbatch-examples/linear_scaling")
    parser.add_argument("--quick", action="store_true",
                        help="2 seeds, 10 epochs, batch sizes 32..512")
    args = parser.parse_args()
    batch_sizes = [32, 64, 128, 256, 512, 1024]
    seeds, epochs = list(range(args.seeds)), args.epochs
    if args.quick:
        batch_sizes, seeds, epochs = batch_sizes[:-1], [0, 1], 10
    os.makedirs(args.out, exist_ok=True)

    _, base_lr, results = run(batch_sizes, seeds, epochs, args.out)
    base, holds = verdicts(results, batch_sizes)
    plot(results, batch_sizes, os.path.join(args.out, "linear_scaling.png"))
    print(f"\nbatch {BASE_BATCH}: test accuracy {base:.3f}. Largest batch within "
          "1 point of it, same number of epochs:")
    for name, largest in holds.items():
        print(f"  {name:>17}: {largest}")
    with open(os.path.join(args.out, "linear_scaling.json"), "w") as f:
        json.dump({
            "base_batch_size": BASE_BATCH, "base_learning_rate": base_lr,
            "epochs": epochs, "seeds": seeds, "batch_sizes": batch_sizes,
            "base_accuracy": base, "largest_batch_within_1_point": holds,
            "runs": {f"{name}@{b}": runs for (name, b), runs in results.items()},
        }, f, indent=1)
    print(f"figure and numbers in {args.out}/")


if __name__ == "__main__":
    main()

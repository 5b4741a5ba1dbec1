"""Claims: a higher LR converges faster but may diverge; a too-low LR gets
stuck in local minima.

An MLP with plain SGD on MNIST-1D at batch 64, over LRs spaced by factors of 2
from 0.005 to 5.12: the training loss per epoch, the epochs to get half-way
from the initial loss to the best final loss, and whether the run diverged
(non-finite loss, or a final loss above the initial one). Then the "stuck"
test: the best LR divided by 10, trained 10 times as many epochs (the same
LR x steps), against the best LR: if the low LR were stuck in a local minimum,
the extra epochs would not bring it to the same loss.

    python examples/claims/learning_rates.py [--seeds 3] [--quick]
"""

from __future__ import annotations

import itertools
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as c

CLAIMS = [
    {"id": "higher-lr-faster-may-diverge", "sources": ["000"],
     "claim": "A higher learning rate converges faster but risks overshooting "
              "and diverging.",
     "literature": "Holds below the edge of stability (LR < 2/sharpness for "
                   "gradient descent; Cohen et al. 2021); Smith 2017's range test "
                   "reads the edge off a short run."},
    {"id": "low-lr-stuck-local-minima", "sources": ["000"],
     "claim": "A too-low learning rate may take an excessively long time, or get "
              "stuck in local minima.",
     "literature": "Slow: yes (progress per step scales with the LR). Stuck: in "
                   "overparameterised networks small-LR SGD keeps descending "
                   "(Goodfellow et al. 2015 find no barriers on the path); a low "
                   "LR tends to generalize somewhat worse (Li et al. 2019), "
                   "rather than stall."},
]
BATCH = 64


def train(data, lr, epochs, seed):
    import keras

    keras.utils.set_random_seed(seed)
    model = c.mlp(data, optimizer="sgd", learning_rate=lr)
    initial = float(model.evaluate(*data.train, verbose=0, return_dict=True)["loss"])
    history = c.fit_quiet(model, data, batch_size=BATCH, epochs=epochs)
    losses = [float(v) if math.isfinite(v) else float("inf")
              for v in history.history["loss"]]
    return {"initial": initial, "losses": losses,
            "diverged": (not math.isfinite(losses[-1])) or losses[-1] > initial}


def run(args):
    import numpy as np

    data = c.load_data(args.quick)
    lrs = [0.02, 0.32, 5.12] if args.quick else [0.005 * 2**k for k in range(11)]
    epochs = 3 if args.quick else 10
    runs = {f"{lr:g}": [train(data, lr, epochs, s) for s in range(args.seeds)]
            for lr in lrs}
    final = {k: float(np.mean([r["losses"][-1] for r in v])) for k, v in runs.items()}
    ok = {k: v for k, v in final.items()
          if not any(r["diverged"] for r in runs[k])}
    best = min(ok, key=ok.get)
    low = float(best) / 10
    long_epochs = 10 * epochs
    stuck = [train(data, low, long_epochs, s) for s in range(args.seeds)]
    best_runs = runs[best]
    print("best", best, "final", ok[best], flush=True)
    return {"batch_size": BATCH, "epochs": epochs, "learning_rates": lrs,
            "runs": runs, "final_loss": final, "best_lr": float(best),
            "diverged": {k: sum(r["diverged"] for r in v) for k, v in runs.items()},
            "low_lr": {"learning_rate": low, "epochs": long_epochs,
                       "final_loss": c.stats([r["losses"][-1] for r in stuck]),
                       "curve": np.mean([r["losses"] for r in stuck], 0).tolist(),
                       "best_final_loss": c.stats([r["losses"][-1]
                                                   for r in best_runs])}}


def speed(results):
    """The target (half-way from the initial loss to the best final loss) and
    the mean epochs each LR takes to reach it (`None`: not in every run)."""
    import numpy as np

    runs = results["runs"]
    initial = float(np.mean([r["initial"] for v in runs.values() for r in v]))
    best = results["final_loss"][f"{results['best_lr']:g}"]
    target = initial - 0.5 * (initial - best)
    reach = {}
    for k, v in runs.items():
        hits = [next((i + 1 for i, x in enumerate(r["losses"]) if x <= target), None)
                for r in v]
        reach[k] = None if None in hits else float(np.mean(hits))
    return target, reach


def verdicts(results):
    lrs = [f"{lr:g}" for lr in results["learning_rates"]]
    best = f"{results['best_lr']:g}"
    target, reach = speed(results)
    below = [k for k in lrs if float(k) <= float(best) and reach[k] is not None]
    faster = all(reach[b] <= reach[a] for a, b in itertools.pairwise(below))
    diverged = [k for k in lrs if results["diverged"][k]]
    measured = (f"epochs to training loss {target:.3f} (half-way to the best): "
                + ", ".join(
        f"LR {k}: {reach[k]:.1f}" if reach[k] is not None else f"LR {k}: never"
        for k in lrs) + f"; diverged (loss above its start) from LR "
        f"{diverged[0] if diverged else 'none'}.")
    if faster and diverged and float(diverged[0]) > float(best):
        high = (c.HOLDS, measured + f" Fastest stable LR: {best}.")
    elif faster or diverged:
        high = (c.CONDITIONS, measured)
    else:
        high = (c.DOES_NOT_HOLD, measured)
    low = results["low_lr"]
    reached = low["final_loss"]["mean"] <= 1.1 * low["best_final_loss"]["mean"]
    low_text = (f"LR {low['learning_rate']:.3g} (best / 10) for {low['epochs']} "
                f"epochs reaches training loss {c.pm(low['final_loss'])}, the best LR "
                f"in {results['epochs']} epochs {c.pm(low['best_final_loss'])}.")
    if reached:
        stuck = (c.CONDITIONS, low_text + " Slow, not stuck: given the steps, the "
                 "low LR gets there.")
    else:
        stuck = (c.HOLDS, low_text + " Even with 10x the epochs it stays behind.")
    return {"higher-lr-faster-may-diverge": high, "low-lr-stuck-local-minima": stuck}


def plot(results, path):
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    cmap = plt.get_cmap("viridis")
    lrs = results["learning_rates"]
    for i, lr in enumerate(lrs):
        runs = results["runs"][f"{lr:g}"]
        curve = np.mean([r["losses"] for r in runs], 0)
        ax1.plot(np.arange(1, len(curve) + 1), np.minimum(curve, 10),
                 color=cmap(i / max(1, len(lrs) - 1)), label=f"{lr:g}")
    ax1.axhline(speed(results)[0], color="grey", ls=":")
    ax1.set(xlabel="epoch", ylabel="training loss (clipped at 10)", yscale="log",
            title=f"SGD, batch {results['batch_size']}: LR sweep")
    ax1.legend(fontsize=7, ncol=2, title="LR")
    low = results["low_lr"]
    ax2.plot(np.arange(1, len(low["curve"]) + 1), low["curve"],
             label=f"LR {low['learning_rate']:.3g}")
    ax2.axhline(low["best_final_loss"]["mean"], color="C3", ls="--",
                label=f"best LR {results['best_lr']:g} after {results['epochs']} "
                      "epochs")
    ax2.set(xlabel="epoch", ylabel="training loss", title="A 10x lower LR, 10x longer")
    ax2.legend()
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    c.save_figure(fig, path)


if __name__ == "__main__":
    c.main(sys.modules[__name__], __doc__)

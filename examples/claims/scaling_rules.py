"""Claim: scale the LR with the batch size, linearly or by the square root.

An MLP with SGD and momentum on MNIST-1D, trained for a fixed number of epochs
at batch 32 and at larger batches, with the LR from a range test at batch 32
left unscaled, scaled linearly or by the square root (both with a gradual
warm-up over the first tenth of training). A rule "holds" up to the largest
batch whose test accuracy is not below batch 32's by more than one point and
two standard errors (nor by more than three points).

    python examples/claims/scaling_rules.py [--seeds 3] [--quick]
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as c

CLAIMS = [
    {"id": "linear-scaling", "sources": ["001"],
     "claim": "When the batch size grows by k, multiply the LR by k (linear "
              "scaling) to keep the same performance.",
     "literature": "Goyal et al. 2017: linear scaling with gradual warm-up holds "
                   "for ResNet-50 up to batch 8k, then breaks; Shallue et al. 2018: "
                   "the best LR grows with the batch size, but rarely linearly "
                   "past a problem-dependent batch size."},
    {"id": "sqrt-scaling", "sources": ["001"],
     "claim": "Or multiply the LR by sqrt(k), a more conservative rule.",
     "literature": "Krizhevsky 2014 and Hoffer et al. 2017 argue for sqrt "
                   "scaling (it keeps the gradient noise constant); Malladi et "
                   "al. 2022 derive it for Adam. For SGD it under-scales when "
                   "linear scaling still holds."},
]
RULES = ("none", "linear", "sqrt")
BASE = 32
TOLERANCE = 0.01


def train(data, batch_size, base_lr, rule, epochs, seed):
    import keras

    import kbatch

    keras.utils.set_random_seed(seed)
    model = c.mlp(data)
    callbacks = []
    if batch_size != BASE:
        callbacks.append(kbatch.ScaleLearningRate(
            base_lr, base_batch_size=BASE, batch_size=batch_size, rule=rule,
            warmup_epochs=None if rule == "none" else max(1, epochs // 10),
            verbose=0))
    else:
        model.optimizer.learning_rate = base_lr
    c.fit_quiet(model, data, batch_size=batch_size, epochs=epochs,
                callbacks=callbacks)
    return c.test_accuracy(model, data)


def run(args):
    import keras

    data = c.load_data(args.quick)
    epochs = 6 if args.quick else 20
    sizes = (128, 512) if args.quick else (128, 256, 512, 1024)
    keras.utils.set_random_seed(0)
    base_lr = c.range_test_lr(c.mlp(data), data, BASE)
    seeds = range(args.seeds)
    results = {"base_lr": base_lr, "base_batch_size": BASE, "epochs": epochs,
               "batch_sizes": list(sizes),
               "base": c.stats([train(data, BASE, base_lr, "none", epochs, s)
                                for s in seeds]),
               "rules": {}}
    for rule in RULES:
        results["rules"][rule] = {
            str(b): c.stats([train(data, b, base_lr, rule, epochs, s) for s in seeds])
            for b in sizes}
        print(rule, {b: c.pm(v) for b, v in results["rules"][rule].items()},
              flush=True)
    return results


def largest_kept(results, rule):
    """The largest batch size up to which the rule stays within TOLERANCE."""
    kept = BASE
    for b in results["batch_sizes"]:
        row = results["rules"][rule][str(b)]
        drop = results["base"]["mean"] - row["mean"]
        # beyond one point and the noise, or beyond three points whatever the noise
        if c.significant(results["base"], row, TOLERANCE) or drop > 3 * TOLERANCE:
            break
        kept = b
    return kept


def _verdict(results, rule):
    kept = largest_kept(results, rule)
    unscaled = largest_kept(results, "none")
    largest = results["batch_sizes"][-1]
    row = ", ".join(f"{b}: {c.pm(results['rules'][rule][str(b)])}"
                    for b in results["batch_sizes"])
    measured = (f"test accuracy at batch {BASE}: {c.pm(results['base'])}; {rule} "
                f"rule: {row}. Within {TOLERANCE * 100:.0f} pt of batch {BASE} (or "
                f"2 standard errors, at most 3 pt) up to batch {kept}; unscaled, "
                f"up to {unscaled}.")
    if kept == largest:
        return c.HOLDS, measured
    if kept > unscaled:
        return c.CONDITIONS, measured + f" Helps up to {kept}, not beyond."
    return c.DOES_NOT_HOLD, measured


def verdicts(results):
    return {"linear-scaling": _verdict(results, "linear"),
            "sqrt-scaling": _verdict(results, "sqrt")}


def plot(results, path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    sizes = [BASE] + results["batch_sizes"]
    for rule in RULES:
        rows = [results["base"]] + [results["rules"][rule][str(b)]
                                    for b in results["batch_sizes"]]
        ax.errorbar(sizes, [r["mean"] for r in rows], [r["std"] for r in rows],
                    marker="o", capsize=3, label=rule)
    ax.axhline(results["base"]["mean"] - TOLERANCE, color="grey", ls=":",
               label=f"batch {BASE} - {TOLERANCE * 100:.0f} pt")
    ax.set(xscale="log", xlabel="batch size", ylabel="test accuracy",
           title="LR scaling rules (MNIST-1D MLP, SGD+momentum)")
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.grid(alpha=0.3)
    ax.legend()
    c.save_figure(fig, path)


if __name__ == "__main__":
    c.main(sys.modules[__name__], __doc__)

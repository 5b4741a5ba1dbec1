"""Claim: a larger batch makes batch normalization more accurate.

An MLP with batch normalization (SGD with momentum) trained on MNIST-1D; then,
at its first batch-norm layer, the statistics of batches of 2 ... 512 samples
are compared with those of the whole training split (the error of the batch
mean in units of the population standard deviation, over 50 batches each), and
the test accuracy is measured with batch statistics at each batch size
(`training=True`, weights restored afterwards) against inference with the
moving statistics.

    python examples/claims/batch_norm.py [--seeds 3] [--quick]
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as c

CLAIMS = [
    {"id": "larger-batch-better-batch-norm", "sources": ["002"],
     "claim": "A larger batch size leads to more accurate batch normalization, "
              "since the statistics are computed over more samples.",
     "literature": "The batch statistics' error falls like 1/sqrt(B); Ioffe 2017 "
                   "(Batch Renormalization) and Wu & He 2018 (Group Norm) show "
                   "accuracy suffers at small batches (below ~16-32) and is flat "
                   "above."},
]
DRAWS = 50


def run(args):
    import keras
    import numpy as np

    data = c.load_data(args.quick)
    sizes = (2, 16, 128) if args.quick else (2, 4, 8, 16, 32, 64, 128, 512)
    epochs = 3 if args.quick else 10
    errors = {str(b): [] for b in sizes}
    batch_acc = {str(b): [] for b in sizes}
    inference = []
    for seed in range(args.seeds):
        keras.utils.set_random_seed(seed)
        model = c.mlp(data, batch_norm=True, learning_rate=0.05)
        c.fit_quiet(model, data, batch_size=64, epochs=epochs)
        inference.append(c.test_accuracy(model, data))
        bn = next(layer for layer in model.layers
                  if isinstance(layer, keras.layers.BatchNormalization))
        features = keras.Model(model.inputs, bn.input).predict(data.x_train,
                                                                verbose=0)
        mu, sigma = features.mean(0), features.std(0) + 1e-6
        rng = np.random.default_rng(seed)
        weights = model.get_weights()
        for b in sizes:
            errs = []
            for _ in range(DRAWS):
                idx = rng.choice(len(features), size=b, replace=False)
                errs.append(float(np.sqrt(np.mean(
                    ((features[idx].mean(0) - mu) / sigma) ** 2))))
            errors[str(b)].append(float(np.mean(errs)))
            # test accuracy when each test batch of b is normalised by itself
            order = rng.permutation(len(data.x_test))
            n = len(order) // b * b
            correct = 0
            for start in range(0, n, b):
                idx = order[start:start + b]
                pred = model(data.x_test[idx], training=True)
                correct += int(np.sum(np.argmax(np.asarray(pred), 1)
                                      == data.y_test[idx]))
            batch_acc[str(b)].append(correct / n)
            model.set_weights(weights)  # training=True moved the statistics
        print(seed, {b: round(v[-1], 3) for b, v in batch_acc.items()}, flush=True)
    error_stats = {b: c.stats(v) for b, v in errors.items()}
    slope = float(np.polyfit(np.log(sizes), np.log(
        [error_stats[str(b)]["mean"] for b in sizes]), 1)[0])
    return {"batch_sizes": list(sizes), "epochs": epochs,
            "statistics_error": error_stats, "error_exponent": slope,
            "batch_statistics_accuracy": {b: c.stats(v) for b, v in batch_acc.items()},
            "inference_accuracy": c.stats(inference)}


def verdicts(results):
    sizes = [str(b) for b in results["batch_sizes"]]
    acc = results["batch_statistics_accuracy"]
    reference = results["inference_accuracy"]
    stats_hold = -0.65 <= results["error_exponent"] <= -0.35
    small_hurts = c.significant(reference, acc[sizes[0]], margin=0.01)
    close = [b for b in sizes if not c.significant(reference, acc[b], margin=0.01)]
    measured = (f"error of the batch mean ~ B^{results['error_exponent']:.2f}; test "
                f"accuracy with batch statistics: " + ", ".join(
                    f"batch {b}: {acc[b]['mean']:.3f}" for b in sizes)
                + f"; with the moving statistics: {c.pm(reference)}.")
    if not stats_hold:
        return {"larger-batch-better-batch-norm": (c.DOES_NOT_HOLD, measured)}
    if small_hurts and close and close[0] != sizes[0]:
        return {"larger-batch-better-batch-norm": (c.CONDITIONS, measured + (
            f" The statistics sharpen like 1/sqrt(B), but accuracy gains stop at "
            f"about batch {close[0]}."))}
    return {"larger-batch-better-batch-norm": (c.HOLDS, measured)}


def plot(results, path):
    import matplotlib.pyplot as plt
    import numpy as np

    sizes = np.array(results["batch_sizes"], dtype=float)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    err = [results["statistics_error"][str(int(b))] for b in sizes]
    ax1.errorbar(sizes, [e["mean"] for e in err], [e["std"] for e in err],
                 marker="o", capsize=3, label="measured")
    ax1.plot(sizes, err[0]["mean"] * np.sqrt(sizes[0] / sizes), ls=":",
             label="1/sqrt(B)")
    ax1.set(xscale="log", yscale="log", xlabel="batch size",
            ylabel="RMS error of the batch mean (in σ)",
            title="Batch statistics vs the population")
    acc = [results["batch_statistics_accuracy"][str(int(b))] for b in sizes]
    ax2.errorbar(sizes, [a["mean"] for a in acc], [a["std"] for a in acc],
                 marker="o", capsize=3, label="normalised by the batch")
    ref = results["inference_accuracy"]
    ax2.axhline(ref["mean"], color="C3", ls="--", label="moving statistics")
    ax2.set(xscale="log", xlabel="batch size", ylabel="test accuracy",
            title="Accuracy with batch statistics")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    c.save_figure(fig, path)


if __name__ == "__main__":
    c.main(sys.modules[__name__], __doc__)

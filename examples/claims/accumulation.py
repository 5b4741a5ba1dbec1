"""Claim: gradient accumulation gives the results of a larger batch.

Batch 128 against batch 32 with `gradient_accumulation_steps=4` (Keras 3
optimizers), same LR, same initial weights, same data order, on MNIST-1D; an
MLP without batch normalization (where accumulation averages exactly the same
gradients) and one with it (where each micro-batch of 32 is normalized with
its own statistics). Reported: the relative distance between the two runs'
final weights and their test accuracies. Training is chaotic: float rounding
alone grows over hundreds of steps. So a control, the "twin", reruns batch 128
from initial weights perturbed by one part in a million; accumulation counts
as equal to the larger batch when it is no farther from it than the twin.

    python examples/claims/accumulation.py [--seeds 3] [--quick]
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as c

CLAIMS = [
    {"id": "accumulation-equals-large-batch", "sources": ["003"],
     "claim": "Accumulating gradients over k micro-batches trains like a k times "
              "larger batch, within the memory of the small one.",
     "literature": "Exact for the averaged gradient of models without batch "
                   "statistics (it is the same sum); batch normalization sees "
                   "micro-batch statistics instead (Ioffe & Szegedy 2015; Hoffer "
                   "et al. 2017 use such \"ghost batches\" on purpose)."},
]
LARGE, MICRO = 128, 32


def train(data, batch_norm, mode, lr, epochs, seed):
    """`mode`: "large", "accumulate" (MICRO x LARGE // MICRO) or "twin" (large,
    initial weights perturbed by 1e-6 relative)."""
    import keras
    import numpy as np

    accumulate = mode == "accumulate"
    keras.utils.set_random_seed(seed)
    model = c.mlp(data, batch_norm=batch_norm, learning_rate=lr)
    if mode == "twin":
        rng = np.random.default_rng(seed)
        model.set_weights([w * (1 + 1e-6 * rng.standard_normal(w.shape))
                           .astype(w.dtype) for w in model.get_weights()])
    if accumulate:
        optimizer = keras.optimizers.SGD(lr, momentum=0.9,
                                         gradient_accumulation_steps=LARGE // MICRO)
        model.compile(optimizer, "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    n = len(data.x_train) // LARGE * LARGE  # whole batches: same data, same order
    model.fit(data.x_train[:n], data.y_train[:n], shuffle=False, epochs=epochs,
              batch_size=MICRO if accumulate else LARGE, verbose=0)
    weights = np.concatenate([w.reshape(-1) for w in model.get_weights()])
    return weights, c.test_accuracy(model, data)


def run(args):
    import numpy as np

    data = c.load_data(args.quick)
    epochs = 3 if args.quick else 10
    lr = 0.05
    results = {"epochs": epochs, "learning_rate": lr, "large": LARGE,
               "micro": MICRO}
    for name, bn in (("plain", False), ("batch_norm", True)):
        distance, twin, large_acc, accum_acc = [], [], [], []
        for seed in range(args.seeds):
            w_large, a_large = train(data, bn, "large", lr, epochs, seed)
            w_accum, a_accum = train(data, bn, "accumulate", lr, epochs, seed)
            w_twin, _ = train(data, bn, "twin", lr, epochs, seed)
            norm = np.linalg.norm(w_large)
            distance.append(float(np.linalg.norm(w_large - w_accum) / norm))
            twin.append(float(np.linalg.norm(w_large - w_twin) / norm))
            large_acc.append(a_large)
            accum_acc.append(a_accum)
        results[name] = {"relative_distance": c.stats(distance),
                         "twin_distance": c.stats(twin),
                         "large_accuracy": c.stats(large_acc),
                         "accumulated_accuracy": c.stats(accum_acc)}
        print(name, results[name]["relative_distance"]["mean"], flush=True)
    return results


def verdicts(results):
    plain, bn = results["plain"], results["batch_norm"]
    measured = (f"batch {results['large']} vs {results['micro']} x "
                f"{results['large'] // results['micro']} accumulated: final weights "
                f"differ by {plain['relative_distance']['mean']:.1e} (relative; the "
                f"1e-6-perturbed twin: {plain['twin_distance']['mean']:.1e}) without "
                f"batch norm, accuracy {c.pm(plain['large_accuracy'])} vs "
                f"{c.pm(plain['accumulated_accuracy'])}; with batch norm "
                f"{bn['relative_distance']['mean']:.1e} (twin "
                f"{bn['twin_distance']['mean']:.1e}), accuracy "
                f"{c.pm(bn['large_accuracy'])} vs {c.pm(bn['accumulated_accuracy'])}.")
    # "equal": no farther from the larger batch than rounding noise grown by
    # chaotic training (the twin), and no difference in accuracy beyond one
    # point and the noise
    def as_far_as_twin(side):
        return side["relative_distance"]["mean"] <= 3 * side["twin_distance"]["mean"]

    equal = as_far_as_twin(plain) and not (
        c.significant(plain["large_accuracy"], plain["accumulated_accuracy"], 0.01)
        or c.significant(plain["accumulated_accuracy"], plain["large_accuracy"],
                         0.01))
    bn_differs = not as_far_as_twin(bn)
    if equal and bn_differs:
        return {"accumulation-equals-large-batch": (c.CONDITIONS, measured + (
            " Equal up to float rounding without batch norm; with it, the "
            "micro-batch statistics change the training (if not, here, the "
            "accuracy)."))}
    if equal:
        return {"accumulation-equals-large-batch": (c.HOLDS, measured)}
    return {"accumulation-equals-large-batch": (c.DOES_NOT_HOLD, measured)}


def plot(results, path):
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    names = ("plain", "batch_norm")
    x = range(len(names))
    for offset, key, label in ((-0.2, "relative_distance", "accumulated"),
                               (0.2, "twin_distance", "twin (1e-6 perturbed)")):
        ax1.bar([i + offset for i in x], [results[n][key]["mean"] for n in names],
                0.4, yerr=[results[n][key]["std"] for n in names], capsize=4,
                label=label)
    ax1.set_xticks(list(x), names)
    ax1.set(yscale="log", ylabel="‖w − w_large‖ / ‖w_large‖",
            title="final weights vs batch 128")
    ax1.legend(loc="upper left")
    ax2.bar([i - 0.2 for i in x], [results[n]["large_accuracy"]["mean"] for n in names],
            0.4, yerr=[results[n]["large_accuracy"]["std"] for n in names],
            capsize=4, label=f"batch {results['large']}")
    ax2.bar([i + 0.2 for i in x],
            [results[n]["accumulated_accuracy"]["mean"] for n in names], 0.4,
            yerr=[results[n]["accumulated_accuracy"]["std"] for n in names],
            capsize=4, label=f"{results['micro']} x "
                             f"{results['large'] // results['micro']} accumulated")
    ax2.set_xticks(list(x), names)
    ax2.set(ylabel="test accuracy", title="accuracy")
    ax2.legend(loc="lower right")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle("Gradient accumulation vs a larger batch (MNIST-1D MLP, SGD+momentum)")
    c.save_figure(fig, path)


if __name__ == "__main__":
    c.main(sys.modules[__name__], __doc__)

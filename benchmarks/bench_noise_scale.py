"""Gradient noise scale: overhead of the callback, and B_simple against the batch
size where linear LR scaling stops holding.

1. Overhead: the same `fit` with and without `GradientNoiseScale` at its
   default interval, in one process (target: <= 10% more time).
2. B_simple of the MNIST-1D MLP of `examples/linear_scaling.py` (SGD with
   momentum, batch 32, its range-test LR), measured through training, against
   the largest batch at which linear scaling kept accuracy within one point in
   that example. McCandlish et al. report agreement within about 10x.

    python -m benchmarks.bench_noise_scale [--epochs 20]
"""

from __future__ import annotations

import argparse
import json
import os
import time

from benchmarks._common import write_markdown
from benchmarks._common import write_results

# examples/linear_scaling.py's result, kept as data (rerun the example with
# `--out benchmarks/data` and copy linear_scaling.json here to refresh it).
LINEAR_SCALING_JSON = os.path.join(os.path.dirname(__file__), "data",
                                   "linear_scaling.json")


class _StepTimes:
    """Wall time of every step (a callback, created lazily to import keras late)."""

    @staticmethod
    def make():
        import keras

        class StepTimes(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.times = []

            def on_train_batch_begin(self, batch, logs=None):
                self._start = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                self.times.append(time.perf_counter() - self._start)

        return StepTimes()


def _overhead(data, build, batch_size, epochs, repeats):
    """Total fit time with/without the callback, and the steady-state share.

    The callback compiles its measuring train function at the first measured
    step (a one-time cost of about a second); the steady-state overhead is the
    mean step time without that first measured step.
    """
    import keras
    import numpy as np

    import kbatch

    totals = {"plain": [], "with_callback": []}
    steady = {"plain": [], "with_callback": []}
    trace_seconds = []
    for r in range(repeats):
        for kind in totals:
            keras.utils.set_random_seed(r)
            model = build()
            model.fit(*data.train, batch_size=batch_size, epochs=1, verbose=0)  # warm
            timer = _StepTimes.make()
            callbacks = [timer]
            gns = None
            if kind != "plain":
                gns = kbatch.GradientNoiseScale()
                callbacks.insert(0, gns)
            start = time.perf_counter()
            model.fit(*data.train, batch_size=batch_size, epochs=epochs,
                      callbacks=callbacks, verbose=0)
            totals[kind].append(time.perf_counter() - start)
            times = np.array(timer.times)
            if gns is not None:
                first_due = gns.interval - 1
                trace_seconds.append(float(times[first_due]))
                times = np.delete(times, first_due)
            steady[kind].append(float(times[1:].mean()))
    total = {k: min(v) for k, v in totals.items()}
    step = {k: min(v) for k, v in steady.items()}
    return {"seconds": total, "ratio": total["with_callback"] / total["plain"],
            "steady_ratio": step["with_callback"] / step["plain"],
            "first_measurement_seconds": min(trace_seconds), "epochs": epochs}


def _b_simple_through_training(data, epochs):
    import keras

    import kbatch
    from kbatch import models

    def build(lr=0.01):
        return models.build_mlp(data.input_shape, data.num_classes,
                                hidden=(128, 128), optimizer="momentum",
                                learning_rate=lr)

    keras.utils.set_random_seed(0)
    lr = kbatch.find_lr(build(), *data.train, batch_size=32, seed=0,
                        verbose=0).suggestion()
    keras.utils.set_random_seed(0)
    model = build(lr)
    gns = kbatch.GradientNoiseScale(interval=5, num_micro_batches=4, beta=0.9)
    history = model.fit(*data.train, batch_size=32, epochs=epochs, callbacks=[gns],
                        verbose=0)
    return lr, history.history["gradient_noise_scale"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from kbatch import datasets
    from kbatch import models

    data = datasets.load_mnist1d()
    overhead = {
        "mnist1d_cnn_b128": _overhead(
            data, lambda: models.build("cnn", data, optimizer="momentum"), 128, 20,
            args.repeats),
        "mnist1d_mlp_b32": _overhead(
            data, lambda: models.build("mlp", data, optimizer="momentum"), 32, 5,
            args.repeats),
    }
    for name, row in overhead.items():
        print(f"overhead {name}: steady x{row['steady_ratio']:.3f}, whole fit "
              f"x{row['ratio']:.3f} (first measurement compiles in "
              f"{row['first_measurement_seconds']:.2f} s)")

    lr, series = _b_simple_through_training(data, args.epochs)
    print("B_simple per epoch:", [round(v, 1) for v in series])
    breakpoint_batch = None
    if os.path.exists(LINEAR_SCALING_JSON):
        with open(LINEAR_SCALING_JSON) as f:
            breakpoint_batch = json.load(f)["largest_batch_within_1_point"]["linear"]
    final = series[-1]
    agreement = (max(breakpoint_batch, final) / min(breakpoint_batch, final)
                 if breakpoint_batch else None)
    write_results("noise_scale", {
        "overhead": overhead,
        "b_simple_per_epoch": series,
        "base_learning_rate": lr,
        "linear_scaling_holds_up_to": breakpoint_batch,
        "agreement_factor": agreement,
        "targets": {"overhead_max": 1.10,
                    "overhead_met": all(r["steady_ratio"] <= 1.10
                                        for r in overhead.values()),
                    "agreement_within_10x": None if agreement is None
                    else agreement <= 10},
    })
    lines = ["| model | step time with / without GradientNoiseScale | whole fit | "
             "one-time compile |", "|---|---|---|---|"]
    lines += [f"| {n} ({r['epochs']} epochs) | {r['steady_ratio']:.3f} | "
              f"{r['ratio']:.3f} | {r['first_measurement_seconds']:.2f} s |"
              for n, r in overhead.items()]
    lines.append("")
    lines.append(f"B_simple of the MNIST-1D MLP at batch 32: {series[0]:.3g} after one "
                 f"epoch, {final:.3g} after {len(series)}.")
    if breakpoint_batch:
        lines.append(f"Linear LR scaling held up to batch {breakpoint_batch} in "
                     f"examples/linear_scaling.py: a factor {agreement:.1f} from "
                     "B_simple.")
    else:
        lines.append(f"(Run examples/linear_scaling.py and keep its result as "
                     f"{LINEAR_SCALING_JSON} to compare.)")
    write_markdown("noise_scale", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

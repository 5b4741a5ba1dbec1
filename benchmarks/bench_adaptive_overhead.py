"""The costs behind fit_adaptive, on each backend.

1. Noise-scale overhead: the same `fit` (MNIST-1D MLP and CNN, batch 32) with
   and without `GradientNoiseScale(method="steps")` measuring every step or
   one window of 4 steps in 20, steady state (epochs after the first), runs
   alternated in one process; the overhead is the median, over repeats, of
   the ratio of neighbouring runs. Target: <= 5% of fit time on each backend at
   the default interval (20).
2. Gradient accumulation: 4 micro-batches of 64 accumulated against one batch
   of 256 (an MLP without batch norm, SGD with momentum, the same 3840 samples
   in the same order):
   the weights after 2 epochs (target: equal to float tolerance), and the
   time of accumulation against the large batch.

    python -m benchmarks.bench_adaptive_overhead [--backends tensorflow,jax,torch]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from benchmarks._common import write_markdown
from benchmarks._common import write_results

NAME = "adaptive_overhead"
# every step (a window of 4 in every 4), and one window in 20 steps (the
# default of GradientNoiseScale and fit_adaptive)
INTERVALS = (4, 20)
REPEATS = 8  # alternated runs of 3 epochs each: the timings drift


def _child():
    """Runs in a process whose KERAS_BACKEND is set; prints one JSON line."""
    import time

    import keras
    import numpy as np

    import kbatch
    from kbatch import datasets
    from kbatch import models
    from kbatch._internal import optimizer as _optimizer

    if keras.config.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    elif keras.config.backend() == "torch":
        import torch

        torch.set_num_threads(1)
    data = datasets.load("mnist1d", validation_fraction=0.0)
    x, y = data.x_train, data.y_train

    class EpochTimes(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self._start)

    out = {"backend": keras.config.backend(), "overhead": {}}
    for name in ("mlp", "cnn"):
        build = models.build_mlp if name == "mlp" else models.build_cnn
        keras.utils.set_random_seed(0)
        model = build(x.shape[1:], 10, optimizer="momentum", learning_rate=0.01)
        times = {None: [], **{i: [] for i in INTERVALS}}
        ratios = {i: [] for i in INTERVALS}
        for repeat in range(REPEATS):
            # the order alternates, and each repeat is a pair of neighbours in
            # time: the ratio within a repeat cancels the machine's drift
            order = list(times) if repeat % 2 == 0 else list(times)[::-1]
            medians = {}
            for interval in order:
                timer = EpochTimes()
                callbacks = [timer] + ([kbatch.GradientNoiseScale(
                    method="steps", interval=interval)] if interval else [])
                model.fit(x, y, batch_size=32, epochs=3, verbose=0,
                          callbacks=callbacks)
                times[interval].extend(timer.times[1:])
                medians[interval] = float(np.median(timer.times[1:]))
            for interval in INTERVALS:
                ratios[interval].append(medians[interval] / medians[None])
        plain = float(np.median(times[None]))
        for interval in INTERVALS:
            low, mid, high = np.percentile(ratios[interval], [25, 50, 75])
            out["overhead"][f"{name}, interval {interval}"] = {
                "plain_epoch_s": plain,
                "measured_epoch_s": float(np.median(times[interval])),
                "overhead": float(mid) - 1.0,
                "overhead_quartiles": [float(low) - 1.0, float(high) - 1.0]}

    xs, ys = x[:3840], y[:3840]  # 15 batches of 256: the windows line up
    keras.utils.set_random_seed(1)
    big = models.build_mlp(x.shape[1:], 10, optimizer="momentum", learning_rate=0.05)
    small = models.build_mlp(x.shape[1:], 10, optimizer="momentum", learning_rate=0.05)
    small.set_weights(big.get_weights())
    small.optimizer.build(small.trainable_variables)
    _optimizer.set_gradient_accumulation(small.optimizer, 4)
    times = {}
    for label, model, batch in (("large", big, 256), ("accumulated", small, 64)):
        timer = EpochTimes()
        model.fit(xs, ys, batch_size=batch, epochs=2, shuffle=False, verbose=0,
                  callbacks=[timer])
        times[label] = timer.times[1]
    diffs = [float(np.max(np.abs(a - b)))
             for a, b in zip(big.get_weights(), small.get_weights())]
    scale = max(float(np.max(np.abs(w))) for w in big.get_weights())
    out["accumulation"] = {
        "max_abs_weight_difference": max(diffs),
        "largest_weight": scale,
        "equal": all(np.allclose(a, b, rtol=1e-4, atol=1e-5)
                     for a, b in zip(big.get_weights(), small.get_weights())),
        "large_epoch_s": times["large"], "accumulated_epoch_s": times["accumulated"],
        "time_ratio": times["accumulated"] / times["large"],
    }
    print(json.dumps(out))


def markdown(results):
    lines = ["# Costs behind fit_adaptive", "",
             "Overhead: the median over repeats of the ratio of neighbouring "
             "runs (order alternated); its quartiles show the spread.", "",
             "| backend | model, measured | epoch without | with the noise scale "
             "| overhead (target <= 5% at interval 20) | quartiles |",
             "|---|---|---|---|---|---|"]
    for r in results:
        for name, row in r["overhead"].items():
            mark = ("met" if row["overhead"] <= 0.05 else "missed"
                    ) if name.endswith("interval 20") else "every step"
            low, high = row.get("overhead_quartiles", [float("nan")] * 2)
            lines.append(f"| {r['backend']} | {name} | {row['plain_epoch_s']:.2f} s | "
                         f"{row['measured_epoch_s']:.2f} s | "
                         f"{100 * row['overhead']:+.1f}% ({mark}) | "
                         f"{100 * low:+.1f}% .. {100 * high:+.1f}% |")
    lines += ["", "| backend | weights: accumulated 4 x 64 vs one batch of 256 | "
              "time per epoch, accumulated / large |", "|---|---|---|"]
    for r in results:
        a = r["accumulation"]
        lines.append(f"| {r['backend']} | max difference "
                     f"{a['max_abs_weight_difference']:.2e} "
                     f"({'equal' if a['equal'] else 'NOT equal'} at rtol 1e-4) | "
                     f"{a['time_ratio']:.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child()
        return
    results = []
    for backend in args.backends.split(","):
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_adaptive_overhead", "--child"],
            env=env, capture_output=True, text=True, check=False)
        if done.returncode:
            raise SystemExit(done.stderr[-3000:])
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    write_results(NAME, {"results": results})
    write_markdown(NAME, markdown(results))


if __name__ == "__main__":
    main()

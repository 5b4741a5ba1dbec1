"""Training step time: float32 vs mixed_float16 vs mixed_bfloat16, on the
device present (recorded with the results).

On an NVIDIA GPU of compute capability >= 7.0 mixed_float16 must be faster
than float32 (tensor cores): the target is a speed-up >= 1.3 on the CNN. On a
CPU no speed-up is expected (CPUs emulate or convert 16-bit arithmetic), and
the result says so instead of claiming one; `kbatch.precision.auto_policy()`
picks float32 there.

    python -m benchmarks.bench_mixed_precision
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks._common import write_markdown
from benchmarks._common import write_results

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
MODELS = {"mlp": 256, "cnn": 128}  # model: batch size (multiples of 8)
STEPS, WARMUP, REPEATS = 30, 5, 3


def _step_time(model_name, policy, data):
    import keras

    from kbatch import models
    from kbatch import precision

    batch = MODELS[model_name]
    with precision.dtype_policy(policy):
        keras.utils.set_random_seed(0)
        model = models.build(model_name, data, optimizer="momentum",
                             learning_rate=0.01)
        n = batch * (STEPS + WARMUP)
        idx = np.arange(n) % len(data.x_train)
        x, y = data.x_train[idx], data.y_train[idx]
        times = []

        class Timer(keras.callbacks.Callback):
            def on_train_batch_end(self, i, logs=None):
                if i == WARMUP - 1:
                    self.start = time.perf_counter()

            def on_train_end(self, logs=None):
                times.append((time.perf_counter() - self.start) / STEPS)

        for _ in range(REPEATS):
            model.fit(x, y, batch_size=batch, epochs=1, shuffle=False,
                      callbacks=[Timer()], verbose=0)
        return min(times)


def main(argv=None):
    from kbatch import datasets
    from kbatch import precision
    from kbatch._internal import backend as _backend

    facts = _backend.device_facts()
    data = datasets.load_mnist1d()
    rows = {}
    for model_name in MODELS:
        base = None
        for policy in POLICIES:
            seconds = _step_time(model_name, policy, data)
            base = base or seconds
            rows[f"{model_name}/{policy}"] = {
                "step_ms": 1e3 * seconds, "speedup_vs_float32": base / seconds}
            print(f"{model_name} {policy}: {1e3 * seconds:.2f} ms/step, "
                  f"speed-up {base / seconds:.2f}", flush=True)
    tensor_cores = (facts["kind"] == "gpu" and facts["compute_capability"]
                    and facts["compute_capability"][0] >= 7)
    speedup = rows["cnn/mixed_float16"]["speedup_vs_float32"]
    if tensor_cores:
        expectation = "mixed_float16 faster than float32 (target >= 1.3x on the CNN)"
        met = speedup >= 1.3
    else:
        expectation = ("no speed-up expected on this device; kbatch's auto policy "
                       f"here is {precision.auto_policy()!r}")
        met = None
    write_results("mixed_precision", {"device": facts, "rows": rows,
                                      "expectation": expectation, "met": met})
    lines = [f"Device: {facts['kind']} ({facts['name']}). {expectation}.", "",
             "| model | policy | ms/step | speed-up vs float32 |",
             "|---|---|---:|---:|"]
    for key, row in rows.items():
        model_name, policy = key.split("/")
        lines.append(f"| {model_name} (batch {MODELS[model_name]}) | {policy} | "
                     f"{row['step_ms']:.2f} | {row['speedup_vs_float32']:.2f} |")
    write_markdown("mixed_precision", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

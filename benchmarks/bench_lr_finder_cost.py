"""Cost of `find_lr(num_steps=N)` against N plain training steps, same process.

Two models: the MNIST-1D CNN at batch 128 (the target: ratio <= 1.10) and a
tiny MLP at batch 32, where Keras' per-step Python overhead dominates and the
callback's per-step work shows most. Each is timed cold (fresh model, tracing
included) and warm (the same call again), median of `--repeats`.

Memory: in separate processes, the peak resident memory of a plain fit and of
a find_lr on a wide MLP (~4M parameters, Adam), against the size of the one
copy of weights and optimizer state that find_lr keeps.

    python -m benchmarks.bench_lr_finder_cost [--repeats 3] [--num-steps 100]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from benchmarks._common import write_markdown
from benchmarks._common import write_results


def _tiled(x, y, n):
    import numpy as np

    idx = np.arange(n) % len(x)
    return x[idx], y[idx]


def _time_pair(build, x, y, batch_size, num_steps, repeats):
    import keras

    import kbatch

    xs, ys = _tiled(x, y, batch_size * num_steps)
    rows = {"plain_cold": [], "plain_warm": [], "find_lr_cold": [], "find_lr_warm": []}
    for r in range(repeats):
        for kind in ("plain", "find_lr"):
            keras.utils.set_random_seed(r)
            model = build()
            for phase in ("cold", "warm"):
                start = time.perf_counter()
                if kind == "plain":
                    model.fit(xs, ys, batch_size=batch_size, epochs=1, shuffle=False,
                              verbose=0)
                else:
                    # A sweep that never diverges, so all N steps run.
                    result = kbatch.find_lr(model, x, y, batch_size=batch_size,
                                            min_lr=1e-6, max_lr=1e-4,
                                            num_steps=num_steps, seed=r, verbose=0)
                    assert result.lrs.size == num_steps, result
                rows[f"{kind}_{phase}"].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in rows.items()}
    return {
        "seconds": med,
        "ratio_cold": med["find_lr_cold"] / med["plain_cold"],
        "ratio_warm": med["find_lr_warm"] / med["plain_warm"],
        "ms_per_step_plain": 1000 * med["plain_warm"] / num_steps,
        "ms_per_step_find_lr": 1000 * med["find_lr_warm"] / num_steps,
    }


_MEMORY_CHILD = r"""
import json, os, resource, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras, numpy as np
import kbatch
from kbatch._internal.state import TrainingState
kind, steps = sys.argv[1], int(sys.argv[2])
keras.utils.set_random_seed(0)
x = np.random.default_rng(0).normal(size=(4096, 512)).astype("float32")
y = (np.arange(4096) % 10).astype("int32")
model = keras.Sequential([keras.Input((512,)),
                          keras.layers.Dense(2048, activation="relu"),
                          keras.layers.Dense(1536, activation="relu"),
                          keras.layers.Dense(10, activation="softmax")])
model.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy")
model.fit(x[:256], y[:256], batch_size=256, verbose=0)  # built, optimizer state
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
copy = TrainingState(model).nbytes
if kind == "plain":
    model.fit(x, y, batch_size=128, epochs=-(-steps // 32), verbose=0)
else:
    kbatch.find_lr(model, x, y, batch_size=128, min_lr=1e-7, max_lr=1e-5,
                   num_steps=steps, verbose=0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_mb": peak / 1024, "before_mb": base / 1024,
                  "state_copy_mb": copy / 2**20,
                  "params": int(model.count_params())}))
"""


def _memory(num_steps):
    out = {}
    for kind in ("plain", "find_lr"):
        proc = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, kind,
                               str(num_steps)], capture_output=True, text=True,
                              check=True)
        out[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
    extra = out["find_lr"]["peak_mb"] - out["plain"]["peak_mb"]
    copy = out["find_lr"]["state_copy_mb"]
    return {**out, "extra_peak_mb": extra, "state_copy_mb": copy,
            "within_bound": extra <= copy * 1.1 + 32}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-steps", type=int, default=100)
    args = parser.parse_args(argv)

    from kbatch import datasets
    from kbatch import models

    data = datasets.load_mnist1d()
    x, y = data.train
    cases = {
        "mnist1d_cnn_b128": (lambda: models.build("cnn", data, optimizer="momentum",
                                                  learning_rate=0.01), 128),
        "tiny_mlp_b32": (lambda: models.build_mlp((40,), 10, hidden=(16,),
                                                  optimizer="adam"), 32),
    }
    results = {}
    for name, (build, batch_size) in cases.items():
        results[name] = _time_pair(build, x, y, batch_size, args.num_steps,
                                   args.repeats)
        print(name, json.dumps({k: round(v, 3) for k, v in results[name].items()
                                if not isinstance(v, dict)}))
    memory = _memory(args.num_steps)
    print("memory", json.dumps({k: v for k, v in memory.items()
                                if not isinstance(v, dict)}))
    cnn = results["mnist1d_cnn_b128"]
    write_results("lr_finder_cost", {
        "num_steps": args.num_steps,
        "repeats": args.repeats,
        "timing": results,
        "memory": memory,
        "targets": {"cnn_ratio_warm_max": 1.10,
                    "cnn_ratio_warm_met": cnn["ratio_warm"] <= 1.10},
    })
    lines = [
        "| model | plain ms/step | find_lr ms/step | ratio (warm) | ratio (cold) |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {r['ms_per_step_plain']:.2f} | "
                     f"{r['ms_per_step_find_lr']:.2f} | {r['ratio_warm']:.2f} | "
                     f"{r['ratio_cold']:.2f} |")
    lines.append("")
    plain, found = memory["plain"], memory["find_lr"]
    lines.append(
        f"Peak memory (wide MLP, {found['params']:,} parameters, Adam): plain fit "
        f"{plain['peak_mb']:.0f} MB, find_lr {found['peak_mb']:.0f} MB "
        f"({memory['extra_peak_mb']:+.0f} MB; one state copy is "
        f"{memory['state_copy_mb']:.0f} MB)."
    )
    write_markdown("lr_finder_cost", "\n".join(lines) + "\n")
    return results


if __name__ == "__main__":
    main()

"""Search efficiency of `BatchLRHyperModel` against plain searches and a grid.

On each task, with the same batch sizes (16 ... 512) and the same epochs per
trial:

(a) `"scaled"` RandomSearch, 8 trials (its LR range tests included in the cost);
(b) `"independent"` RandomSearch, 16 trials, LR log-uniform over a wide range;
(c) a dense grid: every batch size x 9 LRs over the same range.

(a) and (b) run with 5 search seeds spaced far apart (KerasTuner seeds `s` and
`s + 2` replay nearly the same trials). The pick of every search is retrained
on fresh seeds and scored on the test split. Compute is counted in training
samples (trials x epochs x samples, plus the range tests' steps x batch).
Targets: (a) matches (b), reaches at least the grid's pick, at <= 25% of the
grid's compute.

    python -m benchmarks.bench_tuner [--tasks mnist1d-cnn-momentum,digits-mlp-adam]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np

from benchmarks._common import write_markdown
from benchmarks._common import write_results

BATCH_SIZES = (16, 32, 64, 128, 256, 512)
SEARCH_SEEDS = (1, 1001, 2001, 3001, 4001)
RETRAIN_SEEDS = (100, 200)

# name: (dataset, model, optimizer, epochs, lr range for (b) and (c))
TASKS = {
    "mnist1d-cnn-momentum": ("mnist1d", "cnn", "momentum", 15, (1e-3, 3.0)),
    "digits-mlp-adam": ("digits", "mlp", "adam", 20, (1e-5, 1e-1)),
}


def _task(name):
    from kbatch import datasets
    from kbatch import models

    dataset, model_name, optimizer, epochs, lr_range = TASKS[name]
    data = datasets.load(dataset)

    def build(hp=None, lr=None):
        return models.build(model_name, data, optimizer=optimizer,
                            learning_rate=lr or 0.01)

    return data, build, epochs, lr_range


def _retrain(data, build, batch_size, lr, epochs):
    import keras

    scores = []
    for seed in RETRAIN_SEEDS:
        keras.utils.set_random_seed(seed)
        model = build(lr=lr)
        model.fit(*data.train, batch_size=batch_size, epochs=epochs, verbose=0)
        scores.append(model.evaluate(*data.test, verbose=0,
                                     return_dict=True)["accuracy"])
    return float(np.mean(scores))


def _search(name, data, build, epochs, lr_range, parametrization, trials, seed):
    import keras_tuner

    from kbatch.tuner import BatchLRHyperModel
    from kbatch.tuner import summarize

    kwargs = {"learning_rate": lr_range} if parametrization == "independent" else {}
    hypermodel = BatchLRHyperModel(lambda hp: build(hp), batch_sizes=BATCH_SIZES,
                                   parametrization=parametrization, epochs=epochs,
                                   **kwargs)
    directory = tempfile.mkdtemp(prefix="kbatch-bench-")
    try:
        started = time.perf_counter()
        tuner = keras_tuner.RandomSearch(hypermodel, objective="val_accuracy",
                                         max_trials=trials, directory=directory,
                                         project_name=f"{name}-{seed}", seed=seed)
        tuner.search(*data.train, validation_data=data.val, verbose=0)
        seconds = time.perf_counter() - started
        best = summarize(tuner).best()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    n = len(data.x_train)
    samples = trials * epochs * n
    if parametrization == "scaled" and hypermodel.anchors:
        # three range tests of 100 steps, one at each anchor batch size
        samples += 100 * sum(hypermodel.anchors["edges"].keys())
    return {"batch_size": best["batch_size"], "learning_rate": best["learning_rate"],
            "val_accuracy": best["objective"], "samples": samples,
            "seconds": seconds}


def _grid(name, data, build, epochs, lr_range):
    import keras

    lrs = np.geomspace(*lr_range, 9)
    started = time.perf_counter()
    best = None
    for batch_size in BATCH_SIZES:
        for lr in lrs:
            keras.utils.set_random_seed(0)
            model = build(lr=float(lr))
            history = model.fit(*data.train, batch_size=batch_size, epochs=epochs,
                                validation_data=data.val, verbose=0)
            score = max(history.history["val_accuracy"])
            if best is None or score > best["val_accuracy"]:
                best = {"batch_size": batch_size, "learning_rate": float(lr),
                        "val_accuracy": score}
    best["samples"] = len(BATCH_SIZES) * len(lrs) * epochs * len(data.x_train)
    best["seconds"] = time.perf_counter() - started
    return best


def run_task(name):
    data, build, epochs, lr_range = _task(name)
    grid = _grid(name, data, build, epochs, lr_range)
    grid["test_accuracy"] = _retrain(data, build, grid["batch_size"],
                                     grid["learning_rate"], epochs)
    print(f"{name} grid: {grid}", flush=True)
    out = {"grid": grid, "scaled": [], "independent": []}
    for seed in SEARCH_SEEDS:
        for kind, trials in (("scaled", 8), ("independent", 16)):
            pick = _search(name, data, build, epochs, lr_range, kind, trials, seed)
            pick["test_accuracy"] = _retrain(data, build, pick["batch_size"],
                                             pick["learning_rate"], epochs)
            out[kind].append(pick)
            print(f"{name} {kind} seed {seed}: {pick}", flush=True)
    summary = {}
    for kind in ("scaled", "independent"):
        picks = out[kind]
        summary[kind] = {
            "test_accuracy_mean": float(np.mean([p["test_accuracy"] for p in picks])),
            "test_accuracy_min": float(np.min([p["test_accuracy"] for p in picks])),
            "compute_vs_grid": float(np.mean([p["samples"] for p in picks])
                                     / grid["samples"]),
            "seconds_vs_grid": float(np.mean([p["seconds"] for p in picks])
                                     / grid["seconds"]),
        }
    summary["grid"] = {"test_accuracy": grid["test_accuracy"]}
    out["summary"] = summary
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    results = {name: run_task(name) for name in args.tasks.split(",")}
    write_results("tuner", {"tasks": results, "batch_sizes": list(BATCH_SIZES),
                            "search_seeds": list(SEARCH_SEEDS),
                            "retrain_seeds": list(RETRAIN_SEEDS)})
    write_markdown("tuner", render(results))


def render(results) -> str:
    """The Markdown table and the verdict on the targets, from the results."""
    lines = [
        "Test accuracy of each search's pick, retrained on fresh seeds (mean and "
        "worst of 5 searches); compute in training samples relative to the grid.",
        "",
        "| task | scaled, 8 trials | independent, 16 trials | grid, 54 trials | "
        "scaled compute | independent compute |",
        "|---|---|---|---|---|---|",
    ]
    verdicts = []
    for name, r in results.items():
        s = r["summary"]
        lines.append(
            f"| {name} | {s['scaled']['test_accuracy_mean']:.3f} "
            f"(worst {s['scaled']['test_accuracy_min']:.3f}) | "
            f"{s['independent']['test_accuracy_mean']:.3f} "
            f"(worst {s['independent']['test_accuracy_min']:.3f}) | "
            f"{s['grid']['test_accuracy']:.3f} | "
            f"{s['scaled']['compute_vs_grid']:.0%} | "
            f"{s['independent']['compute_vs_grid']:.0%} |")
        scaled, independent = s["scaled"], s["independent"]
        checks = {
            "matches independent/16": scaled["test_accuracy_mean"]
            >= independent["test_accuracy_mean"] - 0.002,
            "reaches the grid": scaled["test_accuracy_mean"]
            >= s["grid"]["test_accuracy"] - 0.002,
            "<= 25% of the grid's compute": scaled["compute_vs_grid"] <= 0.25,
        }
        verdicts.append(f"{name}: " + ", ".join(
            f"{what} {'met' if ok else 'NOT met'}" for what, ok in checks.items()))
    lines += ["", "Targets (within 0.2 points): " + "; ".join(verdicts) + "."]
    return "\n".join(lines) + "\n"


def rerender():
    """Rewrite results/tuner.md from results/tuner.json (no rerun)."""
    import json

    from benchmarks._common import RESULTS

    with open(os.path.join(RESULTS, "tuner.json"), encoding="utf-8") as f:
        write_markdown("tuner", render(json.load(f)["tasks"]))



if __name__ == "__main__":
    main()

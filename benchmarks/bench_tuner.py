"""Search efficiency of `BatchLRHyperModel` against plain searches and a grid.

On each task, with the same batch sizes (16 ... 512) and the same epochs per
trial:

(a) `"scaled"`, 8 trials (its LR range tests included in the cost), searched
    by KerasTuner's RandomSearch and by kbatch's `PatternSearch` (sequential);
(b) `"independent"` RandomSearch, 16 trials, LR log-uniform over a wide range;
(c) a dense grid: every batch size x 9 LRs over the same range.

(a) and (b) run with 5 search seeds spaced far apart (KerasTuner seeds `s` and
`s + 2` replay nearly the same trials; the seed also seeds the training). The
pick of every search is retrained on fresh seeds and scored on the test split.
Compute is counted in training samples (trials x epochs x samples, plus the
range tests' steps x batch). Targets: (a) matches (b), reaches at least the
grid's pick, at <= 25% of the grid's compute.

    python -m benchmarks.bench_tuner [--tasks mnist1d-cnn-momentum,digits-mlp-adam]
        [--kinds grid,spread,scaled,pattern,independent]

`--kinds` runs only some of the searches and keeps the others' results from
`results/tuner.json`; `spread` retrains the grid's pick on 6 more seeds, to say
how noisy one retrained score is.
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
# the grid's pick retrained on these too, for the spread of a retrained score
SPREAD_SEEDS = (300, 400, 500, 600, 700, 800)
# kind: (parametrization, trials, tuner)
SEARCHES = {
    "scaled": ("scaled", 8, "random"),
    "pattern": ("scaled", 8, "pattern"),
    "independent": ("independent", 16, "random"),
}
LABELS = {"scaled": "scaled, random, 8 trials", "pattern": "scaled, pattern, 8 trials",
          "independent": "independent, 16 trials"}

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


def _retrain(data, build, batch_size, lr, epochs, seeds=RETRAIN_SEEDS,
             average=True):
    import keras

    scores = []
    for seed in seeds:
        keras.utils.set_random_seed(seed)
        model = build(lr=lr)
        model.fit(*data.train, batch_size=batch_size, epochs=epochs, verbose=0)
        scores.append(model.evaluate(*data.test, verbose=0,
                                     return_dict=True)["accuracy"])
    return float(np.mean(scores)) if average else [float(s) for s in scores]


def _search(name, data, build, epochs, lr_range, parametrization, trials, seed,
            tuner="random"):
    import keras
    import keras_tuner

    from kbatch.tuner import BatchLRHyperModel
    from kbatch.tuner import PatternSearch
    from kbatch.tuner import summarize

    keras.utils.set_random_seed(seed)
    tuner_class = PatternSearch if tuner == "pattern" else keras_tuner.RandomSearch

    kwargs = {"learning_rate": lr_range} if parametrization == "independent" else {}
    hypermodel = BatchLRHyperModel(lambda hp: build(hp), batch_sizes=BATCH_SIZES,
                                   parametrization=parametrization, epochs=epochs,
                                   **kwargs)
    directory = tempfile.mkdtemp(prefix="kbatch-bench-")
    try:
        started = time.perf_counter()
        search = tuner_class(hypermodel, objective="val_accuracy",
                             max_trials=trials, directory=directory,
                             project_name=f"{name}-{seed}", seed=seed)
        search.search(*data.train, validation_data=data.val, verbose=0)
        seconds = time.perf_counter() - started
        best = summarize(search).best()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    n = len(data.x_train)
    samples = trials * epochs * n
    anchors = hypermodel.anchors or {}
    if parametrization == "scaled" and anchors.get("measured"):
        # learning_rate="auto": the probes of lr_for_batch_sizes
        samples += anchors["measured"]["samples_trained"]
    elif parametrization == "scaled" and anchors:
        # three range tests of 100 steps, one at each anchor batch size
        samples += 100 * sum(anchors["edges"].keys())
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


def run_task(name, kinds=("grid", *SEARCHES), previous=None):
    data, build, epochs, lr_range = _task(name)
    out = {key: value for key, value in (previous or {}).items()
           if key != "summary"}
    if "grid" in kinds:
        grid = _grid(name, data, build, epochs, lr_range)
        grid["test_accuracy"] = _retrain(data, build, grid["batch_size"],
                                         grid["learning_rate"], epochs)
        print(f"{name} grid: {grid}", flush=True)
        out["grid"] = grid
    out["run_on"] = dict(out.get("run_on", {}))
    for kind in kinds:
        out["run_on"][kind] = time.strftime("%Y-%m-%d", time.gmtime())
    grid = out["grid"]
    if "spread" in kinds:
        grid["test_accuracy_seeds"] = _retrain(
            data, build, grid["batch_size"], grid["learning_rate"], epochs,
            RETRAIN_SEEDS + SPREAD_SEEDS, average=False)
        print(f"{name} grid pick retrained: {grid['test_accuracy_seeds']}", flush=True)
    for kind in SEARCHES:
        if kind in kinds:
            out[kind] = []
    for seed in SEARCH_SEEDS:
        for kind, (parametrization, trials, tuner) in SEARCHES.items():
            if kind not in kinds:
                continue
            pick = _search(name, data, build, epochs, lr_range, parametrization,
                           trials, seed, tuner)
            pick["test_accuracy"] = _retrain(data, build, pick["batch_size"],
                                             pick["learning_rate"], epochs)
            out[kind].append(pick)
            print(f"{name} {kind} seed {seed}: {pick}", flush=True)
    out["summary"] = _summary(out)
    return out


def _summary(out):
    """Mean, worst, standard error and compute of each search; the grid."""
    grid = out["grid"]
    summary = {}
    for kind in SEARCHES:
        picks = out.get(kind)
        if not picks:
            continue
        summary[kind] = {
            "test_accuracy_mean": float(np.mean([p["test_accuracy"] for p in picks])),
            "test_accuracy_min": float(np.min([p["test_accuracy"] for p in picks])),
            "test_accuracy_se": float(np.std([p["test_accuracy"] for p in picks],
                                             ddof=1) / np.sqrt(len(picks))),
            "compute_vs_grid": float(np.mean([p["samples"] for p in picks])
                                     / grid["samples"]),
            "seconds_vs_grid": float(np.mean([p["seconds"] for p in picks])
                                     / grid["seconds"]),
        }
    summary["grid"] = {"test_accuracy": grid["test_accuracy"]}
    if grid.get("test_accuracy_seeds"):
        scores = grid["test_accuracy_seeds"]
        summary["grid"]["retrain_std"] = float(np.std(scores, ddof=1))
        summary["grid"]["retrain_mean"] = float(np.mean(scores))
        summary["grid"]["retrain_seeds"] = len(scores)
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--kinds", default=",".join(("grid", "spread", *SEARCHES)))
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    kinds = args.kinds.split(",")
    unknown = set(kinds) - {"grid", "spread", *SEARCHES}
    if unknown:
        parser.error(f"unknown --kinds {sorted(unknown)}")
    previous = {} if set(kinds) >= {"grid", "spread", *SEARCHES} else _previous()
    results = {name: run_task(name, kinds, previous.get(name))
               for name in args.tasks.split(",")}
    write_results("tuner", {"tasks": results, "batch_sizes": list(BATCH_SIZES),
                            "search_seeds": list(SEARCH_SEEDS),
                            "retrain_seeds": list(RETRAIN_SEEDS)})
    write_markdown("tuner", render(results))


def _previous():
    import json

    from benchmarks._common import RESULTS

    path = os.path.join(RESULTS, "tuner.json")
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)["tasks"]


def render(results) -> str:
    """The Markdown table and the verdict on the targets, from the results."""
    lines = [
        "Test accuracy of each search's pick, retrained on fresh seeds (mean and "
        "worst of 5 searches); compute in training samples relative to the grid "
        "(54 trials).",
        "",
        "| task | search | test accuracy (± s.e.) | worst | compute |",
        "|---|---|---|---|---|",
    ]
    verdicts = []
    for name, r in results.items():
        s = r["summary"]
        for kind, label in LABELS.items():
            if kind in s:
                lines.append(
                    f"| {name} | {label} | {s[kind]['test_accuracy_mean']:.3f} "
                    f"± {s[kind].get('test_accuracy_se', float('nan')):.3f} | "
                    f"{s[kind]['test_accuracy_min']:.3f} | "
                    f"{s[kind]['compute_vs_grid']:.0%} |")
        grid = s["grid"]
        cell = f"{grid['test_accuracy']:.3f}"
        if "retrain_mean" in grid:
            cell += (f" (on {grid['retrain_seeds']} seeds: {grid['retrain_mean']:.3f}"
                     f" ± {grid['retrain_std'] / grid['retrain_seeds'] ** 0.5:.3f})")
        lines.append(f"| {name} | grid, 54 trials | {cell} | | 100% |")
        # the grid is one pick: its score is compared on all the seeds it was
        # retrained on when there are more than the 2 of every search's pick
        grid_score = grid.get("retrain_mean", grid["test_accuracy"])
        grid_se = (grid["retrain_std"] / grid["retrain_seeds"] ** 0.5
                   if "retrain_std" in grid else float("nan"))
        independent = s["independent"]
        for kind in ("scaled", "pattern"):
            if kind not in s:
                continue
            a = s[kind]
            se = a.get("test_accuracy_se", float("nan"))
            checks = [
                ("matches independent/16", a["test_accuracy_mean"],
                 independent["test_accuracy_mean"],
                 (se ** 2 + independent.get("test_accuracy_se", float("nan")) ** 2)
                 ** 0.5),
                ("reaches the grid", a["test_accuracy_mean"], grid_score,
                 (se ** 2 + grid_se ** 2) ** 0.5),
            ]
            words = []
            for what, mine, theirs, both in checks:
                if mine >= theirs - 0.002:
                    words.append(f"{what} met")
                else:
                    words.append(f"{what} NOT met ({100 * (mine - theirs):+.1f} "
                                 f"± {100 * both:.1f} pt)")
            words.append("<= 25% of the grid's compute "
                         + ("met" if a["compute_vs_grid"] <= 0.25 else "NOT met"))
            verdicts.append(f"{name}, {LABELS[kind]}: " + ", ".join(words))
    lines += ["", "Targets (within 0.2 points; the grid's score on all the seeds "
              "its pick was retrained on):", ""]
    lines += [f"- {verdict}" for verdict in verdicts]
    spreads = [(name, r["summary"]["grid"]) for name, r in results.items()
               if "retrain_std" in r["summary"]["grid"]]
    if spreads:
        lines += ["", "How noisy a retrained score is: the grid's pick retrained on "
                  "8 seeds (mean, std of one seed; every search's pick is "
                  "retrained on 2 seeds, and a search's row averages 5 picks):", ""]
        lines += [f"- {name}: {g['retrain_mean']:.3f}, std {g['retrain_std']:.3f} "
                  f"over {g['retrain_seeds']} seeds (standard error of a 2-seed "
                  f"score {g['retrain_std'] / 2 ** 0.5:.3f}, of a 5-search mean "
                  f"{g['retrain_std'] / 10 ** 0.5:.3f})" for name, g in spreads]
    return "\n".join(lines) + "\n"


def rerender():
    """Rewrite results/tuner.md from results/tuner.json (no rerun)."""
    import json

    from benchmarks._common import RESULTS

    with open(os.path.join(RESULTS, "tuner.json"), encoding="utf-8") as f:
        results = json.load(f)["tasks"]
    for out in results.values():
        out["summary"] = _summary(out)
    write_markdown("tuner", render(results))


if __name__ == "__main__":
    main()

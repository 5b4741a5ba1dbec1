"""Why 8 random trials of the scaled search fall short of the grid: the landscape.

`bench_tuner` compares searches by retraining their picks, which is expensive
and noisy. This benchmark measures the whole (batch size x LR) landscape once
- the 6 x 9 grid of `bench_tuner`, seed 0, validation and test accuracy of
every cell - and then replays thousands of searches on it: a trial's scores
are interpolated between grid cells in log LR, its validation score gets the
binomial noise of the task's validation split, and a search picks the trial
with the best noisy validation score. Compared, with the LRs computed by
`BatchLRHyperModel` itself (its range tests included):

- `"scaled"`, 8 trials, with the default multiplier range and narrower ones;
- `"scaled"` with the batch size restricted to the smaller half;
- `"scaled"`, 8 trials, searched by `PatternSearch` (its own oracle, driven
  by the replayed scores);
- `"independent"`, 8 and 16 trials; the grid's own noisy pick.

A replayed search is an approximation (the interpolation between grid cells;
one training seed); its value is to compare search spaces on the same
landscape without the retraining noise.

    python -m benchmarks.bench_tuner_landscape [--tasks ...] [--searches 4000]
        [--reuse]

`--reuse` replays on the landscape and range tests saved in
`results/tuner_landscape.json` instead of measuring them again.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile

import numpy as np

from benchmarks._common import RESULTS
from benchmarks._common import write_markdown
from benchmarks._common import write_results
from benchmarks.bench_tuner import BATCH_SIZES
from benchmarks.bench_tuner import TASKS
from benchmarks.bench_tuner import _task


def landscape(data, build, epochs, lr_range):
    import keras

    cells = []
    for batch_size in BATCH_SIZES:
        for lr in np.geomspace(*lr_range, 9):
            keras.utils.set_random_seed(0)
            model = build(lr=float(lr))
            history = model.fit(*data.train, batch_size=batch_size, epochs=epochs,
                                validation_data=data.val, verbose=0)
            test = model.evaluate(*data.test, verbose=0, return_dict=True)
            val = max(history.history["val_accuracy"])
            cells.append({"batch_size": batch_size, "learning_rate": float(lr),
                          "val_accuracy": float(val) if math.isfinite(val) else 0.0,
                          "test_accuracy": float(test["accuracy"])})
        print(f"  batch {batch_size} done", flush=True)
    return cells


def scaled_lr_function(data, build, epochs, multiplier_range, anchors=None):
    """The hypermodel's own LR for (batch size, multiplier); `anchors` from an
    earlier call skip its range tests (they do not depend on the range)."""
    import keras_tuner

    from kbatch.tuner import BatchLRHyperModel

    hypermodel = BatchLRHyperModel(lambda hp: build(), batch_sizes=BATCH_SIZES,
                                   epochs=epochs, multiplier_range=multiplier_range)
    hypermodel.anchors = anchors
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)

    def lr(batch_size, multiplier):
        hp.values["batch_size"] = batch_size
        hp.values["lr_multiplier"] = multiplier
        return hypermodel.trial_learning_rate(hp, model, *data.train)

    lr(BATCH_SIZES[0], 1.0)  # runs (and keeps) the range tests
    return lr, hypermodel.anchors


def replay(cells, n_val, searches, seed=0):
    by_batch = {}
    for cell in cells:
        by_batch.setdefault(cell["batch_size"], []).append(cell)
    rng = np.random.default_rng(seed)

    def score(batch_size, lr, key):
        rows = by_batch[batch_size]
        x = np.log([r["learning_rate"] for r in rows])
        return float(np.interp(np.log(lr), x, [r[key] for r in rows]))

    def noisy(val):
        return val + rng.normal(0.0, math.sqrt(max(val * (1 - val), 1e-4) / n_val))

    def search(trials, draw):
        best = None
        for _ in range(trials):
            batch_size, lr = draw()
            val = noisy(score(batch_size, lr, "val_accuracy"))
            if best is None or val > best[0]:
                best = (val, score(batch_size, lr, "test_accuracy"), batch_size)
        return best

    def summary(picks):
        tests = np.array([p[1] for p in picks])
        sizes = [p[2] for p in picks]
        return {"test_mean": float(tests.mean()),
                "test_p10": float(np.percentile(tests, 10)),
                "picked_batch_sizes": {str(b): sizes.count(b) / len(sizes)
                                       for b in BATCH_SIZES}}

    def run(trials, draw):
        return summary([search(trials, draw) for _ in range(searches)])

    def run_pattern(trials, lr_of, count):
        """`PatternSearch` on the replayed scores (`count` searches: each
        writes its trials to disk, as KerasTuner does)."""
        picks = [_pattern_search(trials, lr_of, score, noisy)
                 for _ in range(count)]
        return summary(picks)

    grid = summary([max((noisy(c["val_accuracy"]), c["test_accuracy"],
                          c["batch_size"]) for c in cells) for _ in range(searches)])
    return run, run_pattern, grid, rng


def _pattern_search(trials, lr_of, score, noisy):
    import keras_tuner

    from kbatch.tuner import PatternSearch

    class Replayed(PatternSearch):
        def run_trial(self, trial, *args, **kwargs):
            values = trial.hyperparameters.values
            batch_size = values["batch_size"]
            lr = lr_of(batch_size, values["lr_multiplier"])
            tests[trial.trial_id] = (score(batch_size, lr, "test_accuracy"),
                                     batch_size)
            return {"val_accuracy": noisy(score(batch_size, lr, "val_accuracy"))}

    hp = keras_tuner.HyperParameters()
    hp.Choice("batch_size", BATCH_SIZES)
    hp.Float("lr_multiplier", 0.25, 4.0, sampling="log")
    tests = {}
    directory = tempfile.mkdtemp(prefix="kbatch-replay-")
    try:
        tuner = Replayed(objective=keras_tuner.Objective("val_accuracy", "max"),
                         hyperparameters=hp, max_trials=trials,
                         directory=directory)
        tuner.search(verbose=0)
        best = tuner.oracle.get_best_trials(1)[0]
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return (best.score, *tests[best.trial_id])


def _saved(name):
    with open(os.path.join(RESULTS, "tuner_landscape.json"), encoding="utf-8") as f:
        task = json.load(f)["tasks"][name]
    anchors = task["anchors"]
    anchors["edges"] = {int(b): v for b, v in anchors["edges"].items()}
    return task["cells"], anchors


def run_task(name, searches, reuse=False):
    data, build, epochs, lr_range = _task(name)
    if reuse:
        cells, anchors = _saved(name)
    else:
        cells, anchors = landscape(data, build, epochs, lr_range), None
    run, run_pattern, grid, rng = replay(cells, len(data.x_val), searches)

    def log_uniform(low, high):
        return math.exp(rng.uniform(math.log(low), math.log(high)))

    out = {"cells": cells, "grid": grid, "searches": searches, "replays": {},
           "anchors": anchors}
    for label, window, sizes in (
        ("scaled x(0.25, 4)", (0.25, 4.0), BATCH_SIZES),
        ("scaled x(0.5, 2)", (0.5, 2.0), BATCH_SIZES),
        ("scaled x(0.25, 4), batch <= 64", (0.25, 4.0), BATCH_SIZES[:3]),
    ):
        lr_of, out["anchors"] = scaled_lr_function(data, build, epochs, window,
                                                   out["anchors"])

        def draw(lr_of=lr_of, window=window, sizes=sizes):
            batch_size = sizes[rng.integers(len(sizes))]
            return batch_size, lr_of(batch_size, log_uniform(*window))

        out["replays"][label] = run(8, draw)
    lr_of, out["anchors"] = scaled_lr_function(data, build, epochs, (0.25, 4.0),
                                               out["anchors"])
    out["replays"]["scaled x(0.25, 4), pattern search"] = run_pattern(
        8, lr_of, max(searches // 4, 1))
    for trials in (8, 16):
        def draw():
            return (BATCH_SIZES[rng.integers(len(BATCH_SIZES))],
                    log_uniform(*lr_range))

        out["replays"][f"independent, {trials} trials"] = run(trials, draw)
    return out


def render(results) -> str:
    lines = ["Replayed searches on the measured landscape (6 batch sizes x 9 LRs, "
             "seed 0): test accuracy of the pick, mean and 10th percentile.", ""]
    for name, r in results.items():
        lines += [f"**{name}** (grid's own pick: {r['grid']['test_mean']:.3f})", "",
                  "| search | test mean | p10 | picks at batch 16 / 32 |",
                  "|---|---|---|---|"]
        for label, s in r["replays"].items():
            small = s["picked_batch_sizes"]
            lines.append(f"| {label} | {s['test_mean']:.3f} | {s['test_p10']:.3f} | "
                         f"{small['16']:.0%} / {small['32']:.0%} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--searches", type=int, default=4000)
    parser.add_argument("--reuse", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    results = {name: run_task(name, args.searches, args.reuse)
               for name in args.tasks.split(",")}
    write_results("tuner_landscape", {"tasks": results})
    write_markdown("tuner_landscape", render(results))
    print(render(results))


if __name__ == "__main__":
    main()

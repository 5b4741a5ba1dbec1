"""How good are the suggested learning rates? Against a 9-point LR grid.

For each task and seed: a range test on a fresh model (`find_lr`, defaults),
then the same model trained for a fixed budget at each rule's suggestion and at
each LR of a 9-point log grid (half a decade apart). The score of a rule is its
test accuracy divided by the best grid accuracy (grid averaged over seeds); for
regression, the same with R^2 (the fraction of variance explained) in place of
accuracy. Target: `auto` >= 0.97 on every design task, worst seed included.
`auto (before)` is the agreed suggestion of the range test as it was before
it was sized in samples, trained in the same run: `auto` must not be worse.

Tasks are split in two: those the rules were designed on (MNIST-1D MLP and CNN,
digits) and held-out ones they were checked on afterwards (other optimizers,
batch sizes, a regression on Friedman #1).

    python -m benchmarks.bench_lr_quality [--seeds 2] [--tasks a,b]
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

from benchmarks._common import read_tasks
from benchmarks._common import write_markdown
from benchmarks._common import write_results
from benchmarks.lr_batch_score import _old_range_test

RULES = ("auto", "steepest", "valley", "minimum")
# The agreed suggestion as it was before the range test was sized in samples
# (100 steps, no guard against a dead suggestion): trained in the same run,
# so "no worse than before" is a ratio of one run, not of two grids.
BEFORE = "auto (before)"
COLUMNS = (*RULES, BEFORE)

# name: (dataset, model, optimizer, batch size, epochs, grid low, grid high, split)
TASKS = {
    "mnist1d-mlp-adam": ("mnist1d", "mlp", "adam", 128, 30, -4.0, 0.0, "design"),
    "mnist1d-cnn-momentum": ("mnist1d", "cnn", "momentum", 128, 30, -3.0, 1.0,
                             "design"),
    "digits-mlp-adam": ("digits", "mlp", "adam", 64, 20, -4.0, 0.0, "design"),
    "digits-cnn-sgd": ("digits", "cnn", "sgd", 64, 20, -2.5, 1.5, "design"),
    "mnist1d-logistic-sgd": ("mnist1d", "logistic", "sgd", 64, 20, -2.5, 1.5,
                             "held-out"),
    "mnist1d-cnn-adam-b32": ("mnist1d", "cnn", "adam", 32, 15, -4.5, -0.5,
                             "held-out"),
    "digits-mlp-momentum-b256": ("digits", "mlp", "momentum", 256, 40, -3.5, 0.5,
                                 "held-out"),
    "mnist1d-mlp-rmsprop-b256": ("mnist1d", "mlp", "rmsprop", 256, 40, -4.0, 0.0,
                                 "held-out"),
    "friedman-mlp-adam": ("friedman", "mlp", "adam", 64, 20, -4.5, -0.5, "held-out"),
    "friedman-mlp-momentum": ("friedman", "mlp", "momentum", 64, 20, -4.5, -0.5,
                              "held-out"),
}


def _friedman():
    """Friedman #1 regression (generated), 4,000 train / 1,000 test, standardised."""
    from sklearn.datasets import make_friedman1

    x, y = make_friedman1(n_samples=5000, noise=1.0, random_state=0)
    x = ((x - x.mean(0)) / x.std(0)).astype("float32")
    y = ((y - y.mean()) / y.std()).astype("float32")
    return x[:4000], y[:4000], x[4000:], y[4000:]


def _task_data(dataset):
    from kbatch import datasets

    if dataset == "friedman":
        return None, _friedman()
    data = datasets.load(dataset)
    return data, (data.x_train, data.y_train, data.x_test, data.y_test)


def _build(task, data, lr, seed):
    import keras

    from kbatch import models

    dataset, model_name, optimizer = TASKS[task][:3]
    keras.utils.set_random_seed(seed)
    if dataset == "friedman":
        inputs = keras.Input((10,))
        h = keras.layers.Dense(64, activation="relu")(inputs)
        h = keras.layers.Dense(64, activation="relu")(h)
        model = keras.Model(inputs, keras.layers.Dense(1)(h))
        model.compile(models.make_optimizer(optimizer, lr), "mse")
        return model
    return models.build(model_name, data, optimizer=optimizer, learning_rate=lr)


def _score(task, model, x, y):
    """Higher is better: accuracy, or R^2 (variance explained) for regression."""
    if TASKS[task][0] == "friedman":
        pred = model.predict(x, verbose=0).reshape(-1)
        mse = float(np.mean((pred - y) ** 2))
        return 1.0 - mse / float(np.var(y)) if math.isfinite(mse) else -1e9
    acc = model.evaluate(x, y, verbose=0, return_dict=True)["accuracy"]
    return float(acc)


def _ratio(score, best):
    return max(score, 0.0) / best


def run_task(task, seeds):
    import kbatch

    dataset, _, _, batch_size, epochs, low, high, split = TASKS[task]
    data, (x, y, x_test, y_test) = _task_data(dataset)
    grid = [float(v) for v in 10 ** np.linspace(low, high, 9)]
    grid_scores = {lr: [] for lr in grid}
    rule_scores = {rule: [] for rule in COLUMNS}
    rule_lrs = {rule: [] for rule in COLUMNS}

    def train(lr, seed):
        model = _build(task, data, lr, seed)
        model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0)
        return _score(task, model, x_test, y_test)

    for seed in seeds:
        model = _build(task, data, 1e-3, seed)
        result = kbatch.find_lr(model, x, y, batch_size=batch_size, seed=seed,
                                verbose=0)
        suggestions = result.suggestions()
        suggestions[BEFORE] = _old_range_test(_build(task, data, 1e-3, seed), x,
                                              y, batch_size, seed)
        trained = {}
        for rule in COLUMNS:
            lr = suggestions[rule]
            rule_lrs[rule].append(lr)
            if lr is None:
                rule_scores[rule].append(None)
                continue
            if lr not in trained:
                trained[lr] = train(lr, seed)
            rule_scores[rule].append(trained[lr])
        for lr in grid:
            grid_scores[lr].append(train(lr, seed))
        print(f"{task} seed {seed}: " + ", ".join(
            f"{r} {suggestions[r] or 0:.2g}" for r in COLUMNS),
            flush=True)

    grid_mean = {lr: float(np.mean(v)) for lr, v in grid_scores.items()}
    best_lr = max(grid_mean, key=grid_mean.get)
    best = grid_mean[best_lr]
    summary = {}
    for rule in COLUMNS:
        ratios = [_ratio(s, best) if s is not None else 0.0
                  for s in rule_scores[rule]]
        lrs = [v for v in rule_lrs[rule] if v]
        summary[rule] = {
            "worst": float(min(ratios)),
            "mean": float(np.mean(ratios)),
            "lrs": rule_lrs[rule],
            "lr_over_grid_best": float(np.exp(np.mean(np.log(lrs))) / best_lr)
            if lrs else None,
        }
    return {
        "split": split,
        "batch_size": batch_size,
        "epochs": epochs,
        "grid": grid_mean,
        "grid_best_lr": best_lr,
        "grid_best": best,
        "rules": summary,
        "seeds": list(seeds),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--merge", action="store_true",
                        help="keep the other tasks of the existing results file")
    args = parser.parse_args(argv)
    from benchmarks.bench_lr_batch import _single_thread

    _single_thread()  # one core: results comparable while other jobs run
    seeds = [1000 * (i + 1) for i in range(args.seeds)]
    results = read_tasks("lr_quality") if args.merge else {}
    for task in args.tasks.split(","):
        if task not in TASKS:
            raise SystemExit(f"unknown task {task!r}; known: {list(TASKS)}")
        results[task] = run_task(task, seeds)
        print(json.dumps({r: round(v["worst"], 3)
                          for r, v in results[task]["rules"].items()}), flush=True)
    write_results("lr_quality", {"tasks": results, "rules": list(RULES)})
    columns = COLUMNS
    header = "| task | split | " + " | ".join(columns) + " |"
    lines = [
        "Suggestion score = test accuracy at the suggested LR / best accuracy of a "
        "9-point LR grid (worst seed; regression: R^2 instead of accuracy). "
        "`auto (before)`: the agreed suggestion of the 100-step range test "
        "without the dead-suggestion guard, trained in the same run.",
        "",
        header,
        "|" + "---|" * (len(columns) + 2),
    ]
    results = {task: results[task] for task in TASKS if task in results}
    for task, r in results.items():
        cells = [f"{r['rules'][rule]['worst']:.3f}" if rule in r["rules"] else "-"
                 for rule in columns]
        lines.append(f"| {task} | {r['split']} | " + " | ".join(cells) + " |")
    worst = {rule: min(r["rules"][rule]["worst"] for r in results.values()
                       if rule in r["rules"]) for rule in columns}
    lines.append("| **worst task** | | " + " | ".join(
        f"**{worst[rule]:.3f}**" for rule in columns) + " |")
    write_markdown("lr_quality", "\n".join(lines) + "\n")
    return results


if __name__ == "__main__":
    main()

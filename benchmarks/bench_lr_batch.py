"""The learning rate at every batch size: kbatch's answer against a fine grid.

    python -m benchmarks.bench_lr_batch grid [--tasks a,b] [--seeds 3]
    python -m benchmarks.bench_lr_batch score [--tasks a,b]
    python -m benchmarks.bench_lr_batch render

`grid` trains every task at 7 batch sizes (16-1024) x >= 14 learning rates
(a quarter-decade apart) x seeds, for the task's fixed epoch budget, and
writes `benchmarks/data/lr_batch_grid.json` (committed: computed once, then
read). A row whose best LR lies at the grid's edge is extended until it does
not. `score` runs kbatch's measurement and the old range test on each task,
trains the LR each hands out at every batch size on the same seeds, and
writes `results/lr_batch.{json,md}`: score = test metric at kbatch's LR / test
metric at the grid row's best LR (best by the mean over seeds), per seed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from benchmarks import lr_batch_tasks as T

GRID_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                         "lr_batch_grid.json")


def _single_thread():
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def load_grid() -> dict:
    if not os.path.exists(GRID_PATH):
        return {"tasks": {}}
    with open(GRID_PATH, encoding="utf-8") as f:
        return json.load(f)


def save_grid(grid):
    from kbatch._internal import io as _io

    _io.write_json_atomic(GRID_PATH, grid)


def _key(lr):
    return f"{lr:.6g}"


def row_means(entry, batch_size):
    """`{lr: mean score over seeds}` of one grid row (complete cells only)."""
    seeds = entry["seeds"]
    row = entry["scores"][str(batch_size)]
    return {float(k): float(np.mean(v)) for k, v in row.items()
            if len(v) == len(seeds)}


def grid_task(task, seeds, grid):
    trainer = T.Trainer(task)
    entry = grid["tasks"].setdefault(task, {
        "spec": list(T.TASKS[task]), "seeds": list(seeds),
        "batch_sizes": list(T.BATCH_SIZES),
        "scores": {str(b): {} for b in T.BATCH_SIZES},
        "seconds": {str(b): 0.0 for b in T.BATCH_SIZES},
    })
    lrs = {b: T.grid_lrs(task) for b in T.BATCH_SIZES}
    while True:
        todo = [(b, lr) for b in T.BATCH_SIZES for lr in lrs[b]
                if len(entry["scores"][str(b)].get(_key(lr), [])) < len(seeds)]
        for b, lr in todo:
            cell = entry["scores"][str(b)].setdefault(_key(lr), [])
            for seed in seeds[len(cell):]:
                started = time.perf_counter()
                cell.append(trainer.run(b, lr, seed))
                entry["seconds"][str(b)] += time.perf_counter() - started
            print(f"{task} B={b} lr={lr:.3g}: {np.round(cell, 3).tolist()}",
                  file=sys.stderr, flush=True)
            save_grid(grid)
        extended = False
        for b in T.BATCH_SIZES:
            means = row_means(entry, b)
            ordered = sorted(means)
            best = max(means, key=means.get)
            step = 10 ** T.GRID_STEP
            if best == ordered[0] and ordered[0] > 1e-6:
                lrs[b] = [ordered[0] / step, ordered[0] / step ** 2, *lrs[b]]
                extended = True
            elif best == ordered[-1] and ordered[-1] < 30:
                lrs[b] = [*lrs[b], ordered[-1] * step, ordered[-1] * step ** 2]
                extended = True
            # keep the extension points so the loop above sees them
            lrs[b] = sorted(set(lrs[b]) | set(ordered))
        if not extended:
            break
    save_grid(grid)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("grid", "score", "render"))
    parser.add_argument("--tasks", default=",".join(T.TASKS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--methods", default="kbatch,range_test,range_test_old",
                        help="methods to score; the others keep their earlier "
                        "scores")
    args = parser.parse_args(argv)
    if args.command == "render":  # the markdown again, from the results JSON
        from benchmarks import lr_batch_score

        lr_batch_score.render()
        return
    _single_thread()
    tasks = args.tasks.split(",")
    for task in tasks:
        if task not in T.TASKS:
            raise SystemExit(f"unknown task {task!r}; known: {list(T.TASKS)}")
    if args.command == "grid":
        grid = load_grid()
        seeds = [1000 * (i + 1) for i in range(args.seeds)]
        for task in tasks:
            grid_task(task, seeds, grid)
        return
    from benchmarks import lr_batch_score

    lr_batch_score.main(tasks, tuple(args.methods.split(",")))


if __name__ == "__main__":
    main()

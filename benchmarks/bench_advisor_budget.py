"""The advisor with a budget against the reference grid's best cell.

    python -m benchmarks.bench_advisor_budget [--tasks a,b]

For each task of `lr_batch_tasks` and each grid seed: `kbatch.advise(...,
epochs=budget)` on a fresh model, its (batch size, LR) trained for the budget
on the same seed as the grid (`Trainer.run`), and scored against the grid's
best cell (the (batch size, LR) with the best mean over seeds), same seed.
Cost: the advice's samples trained (all its probes, its range test, the
memory, throughput and noise-scale measurements counted as samples) and
seconds, against one seed of the grid. Writes `results/advisor_budget.*`.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np

from benchmarks import lr_batch_tasks as T
from benchmarks._common import read_tasks
from benchmarks._common import write_markdown
from benchmarks._common import write_task
from benchmarks.bench_lr_batch import _single_thread
from benchmarks.bench_lr_batch import load_grid
from benchmarks.bench_lr_batch import row_means

# the advisor's targets (issue: "The right learning rate at every batch size")
TARGET_SCORE = 0.98
TARGET_COST = 0.05
GRID_SEEDS = 3  # seeds of the reference grid


def best_cell(entry):
    cells = [(mean, b, lr) for b in entry["batch_sizes"]
             for lr, mean in row_means(entry, b).items()]
    _, b, lr = max(cells)
    return b, lr


def run_task(task, entry):
    import kbatch

    trainer = T.Trainer(task)
    seeds = entry["seeds"]
    b_best, lr_best = best_cell(entry)
    row = entry["scores"][str(b_best)]
    ref = row[min(row, key=lambda k: abs(float(k) - lr_best))]
    grid_seconds = sum(entry["seconds"].values()) / len(seeds)
    grid_samples = len(trainer.x) * trainer.epochs * sum(
        len(entry["scores"][str(b)]) for b in entry["batch_sizes"])
    rows = []
    for i, seed in enumerate(seeds):
        def build(seed=seed):
            return T.build(task, seed, trainer.x, trainer.num_classes)

        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            advice = kbatch.advise(build, trainer.x, trainer.y,
                                   epochs=trainer.epochs, seed=seed, verbose=0)
        seconds = time.perf_counter() - started
        measured = advice.lr_by_batch_size
        samples = measured.metadata["samples_trained"]
        score = trainer.run(advice.batch_size, advice.learning_rate, seed)
        rows.append({
            "seed": seed, "batch_size": advice.batch_size,
            "learning_rate": advice.learning_rate,
            "warmup_steps": advice.warmup_steps,
            "score": score, "ratio": score / ref[i] if ref[i] > 0 else 0.0,
            "seconds": seconds, "lr_samples": samples,
        })
        print(f"{task} seed {seed}: B={advice.batch_size} "
              f"LR={advice.learning_rate:.3g} -> {score:.3f} "
              f"(grid best B={b_best} LR={lr_best:.3g}: {ref[i]:.3f}); "
              f"{seconds:.0f}s", file=sys.stderr, flush=True)
    ratios = [r["ratio"] for r in rows]
    return {
        "split": T.TASKS[task][6], "epochs": trainer.epochs,
        "grid_best": {"batch_size": b_best, "learning_rate": lr_best},
        "rows": rows,
        "mean_ratio": float(np.mean(ratios)), "worst_ratio": float(np.min(ratios)),
        "cost_samples": float(np.mean([r["lr_samples"] for r in rows]) / grid_samples),
        "cost_seconds": float(np.mean([r["seconds"] for r in rows]) / grid_seconds),
    }


def markdown(results) -> str:
    lines = [
        "The advisor with a budget (`advise(..., epochs=)`), its (batch size, LR) "
        "trained for the budget, / the grid's best cell, same seed. Cost: the "
        "LR-per-batch-size probes in samples, and the whole advice in seconds, "
        "as a fraction of one seed of the grid.",
        "",
        "| task | split | advice (B, LR) per seed | grid best cell | score mean / "
        "worst | cost samples / seconds |",
        "|---|---|---|---|---|---|",
    ]
    for task, r in results.items():
        picks = "; ".join(f"{x['batch_size']}, {x['learning_rate']:.3g}"
                          for x in r["rows"])
        best = r["grid_best"]
        lines.append(
            f"| {task} | {r['split']} | {picks} | {best['batch_size']}, "
            f"{best['learning_rate']:.3g} | {r['mean_ratio']:.3f} / "
            f"{r['worst_ratio']:.3f} | {100 * r['cost_samples']:.1f}% / "
            f"{100 * r['cost_seconds']:.1f}% |")
    report = [r for r in results.values() if r["split"] == "report"]
    if report:
        ratios = [x["ratio"] for r in report for x in r["rows"]]
        mean = float(np.mean(ratios))
        cost = max(r["cost_samples"] for r in report)
        seconds = max(r["cost_seconds"] for r in report)
        lines += [
            "",
            "Targets (report tasks, pooled over seeds):",
            "",
            f"- >= {TARGET_SCORE} of the grid's best cell: mean {mean:.3f}, "
            f"worst {min(ratios):.3f}: {'met' if mean >= TARGET_SCORE else 'missed'}"
            " (on the mean)",
            f"- measurements <= {TARGET_COST:.0%} of the grid's compute "
            f"({GRID_SEEDS} seeds): the probes {cost / GRID_SEEDS:.1%} in "
            f"samples (worst task; {cost:.1%} of one seed), "
            f"{'met' if cost / GRID_SEEDS <= TARGET_COST else 'missed'}; the "
            f"whole advice (also the memory search, throughput and range test, "
            f"not counted in samples) {seconds / GRID_SEEDS:.1%} in seconds "
            f"({seconds:.1%} of one seed), "
            f"{'met' if seconds / GRID_SEEDS <= TARGET_COST else 'missed'}; "
            "other benchmarks shared the 2 cores while it ran",
        ]
    return "\n".join(lines) + "\n"


def render():
    """Rewrite `results/advisor_budget.md` from its JSON."""
    write_markdown("advisor_budget", markdown(read_tasks("advisor_budget")))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = [t for t in T.TASKS if T.TASKS[t][6] == "report"
               and T.TASKS[t][2] != "rmsprop"]  # the GRU: hours per seed here
    parser.add_argument("--tasks", default=",".join(default))
    args = parser.parse_args(argv)
    _single_thread()
    grid = load_grid()
    for task in args.tasks.split(","):
        write_task("advisor_budget", task, run_task(task, grid["tasks"][task]),
                   T.TASKS, markdown)


if __name__ == "__main__":
    main()

"""Run every benchmark, write `benchmarks/results/` and the generated block of
`docs/benchmarks.md` (`make bench`).

Benchmarks measure ratios within one run (kbatch vs the same work without it),
so their results do not depend on the machine's speed. They are not tests:
nothing here fails the build.
"""

from __future__ import annotations

import sys

from benchmarks import bench_adaptive
from benchmarks import bench_adaptive_overhead
from benchmarks import bench_advisor_budget
from benchmarks import bench_demo
from benchmarks import bench_lr_batch
from benchmarks import bench_lr_finder_cost
from benchmarks import bench_lr_quality
from benchmarks import bench_mixed_precision
from benchmarks import bench_noise_scale
from benchmarks import bench_tuner
from benchmarks import bench_tuner_landscape
from benchmarks import summary

BENCHMARKS = {
    "lr_finder_cost": bench_lr_finder_cost.main,
    "noise_scale": bench_noise_scale.main,
    "demo": bench_demo.main,
    "mixed_precision": bench_mixed_precision.main,
    "lr_quality": bench_lr_quality.main,
    # the grid is committed (benchmarks/data/lr_batch_grid.json); `grid`
    # recomputes it (hours)
    "lr_batch": lambda argv: bench_lr_batch.main(["score"]),
    "advisor_budget": bench_advisor_budget.main,
    "tuner": bench_tuner.main,
    "tuner_landscape": bench_tuner_landscape.main,
    "adaptive": lambda argv: (bench_adaptive.main(["run", "--split", "report"]),
                              bench_adaptive.main(["run", "--split", "design"])),
    "adaptive_overhead": bench_adaptive_overhead.main,
}


def main(argv=None):
    names = (argv if argv is not None else sys.argv[1:]) or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; known: {list(BENCHMARKS)}")
    for name in names:
        print(f"== {name}", flush=True)
        BENCHMARKS[name]([])
    summary.write_page()  # docs/benchmarks.md


if __name__ == "__main__":
    main()

"""Mutation score of the pure math, per module, from a `mutmut run`.

    make mutation          # mutmut run, then this report
    python -m benchmarks.mutation

Reads mutmut's results (`mutants/**/*.py.meta`) for the modules listed under
`[tool.mutmut] only_mutate` in pyproject.toml and writes
`benchmarks/results/mutation.{json,md}`. A mutant is *killed* when a test
failed or timed out, *survived* when every test passed, and *no tests* when no
test ran its code (counted as a survivor). Survivors that no test can kill
because they do not change behaviour are listed with a one-line reason in
`benchmarks/data/equivalent_mutants.json` and left out of the score.
Target: >= 90% of the non-equivalent mutants killed in every module.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

from benchmarks._common import write_markdown
from benchmarks._common import write_results

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EQUIVALENT = os.path.join(ROOT, "benchmarks", "data", "equivalent_mutants.json")
TARGET = 0.90
KILLED = {1: "killed", 3: "killed", 36: "timeout", -24: "timeout", -9: "timeout",
          37: "killed"}


def modules():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["tool"]["mutmut"]["only_mutate"]


def classify(code):
    if code in KILLED:
        return "killed"
    if code == 0:
        return "survived"
    if code in (5, 33):
        return "no_tests"
    if code is None:
        return "not_checked"
    return "other"


def score(meta_path, equivalent):
    with open(meta_path) as f:
        codes = json.load(f)["exit_code_by_key"]
    counts = {"killed": 0, "survived": 0, "no_tests": 0, "equivalent": 0,
              "not_checked": 0, "other": 0}
    survivors = []
    for key, code in sorted(codes.items()):
        kind = classify(code)
        if key in equivalent and kind == "killed":
            print(f"stale entry in {EQUIVALENT}: {key} is killed now",
                  file=sys.stderr)
        if kind in ("survived", "no_tests") and key in equivalent:
            counts["equivalent"] += 1
            continue
        counts[kind] += 1
        if kind in ("survived", "no_tests"):
            survivors.append(key)
    judged = counts["killed"] + counts["survived"] + counts["no_tests"]
    counts["score"] = counts["killed"] / judged if judged else None
    counts["met"] = counts["score"] is not None and counts["score"] >= TARGET
    return counts, survivors


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--survivors", action="store_true",
                        help="list the surviving mutants' keys")
    args = parser.parse_args(argv)
    equivalent = {}
    if os.path.exists(EQUIVALENT):
        with open(EQUIVALENT) as f:
            equivalent = json.load(f)
    rows, missing = {}, []
    for module in modules():
        meta = os.path.join(ROOT, "mutants", module + ".meta")
        if not os.path.exists(meta):
            missing.append(module)
            continue
        counts, survivors = score(meta, equivalent)
        rows[module] = counts
        if args.survivors:
            for key in survivors:
                print(key)
    if missing:
        sys.exit(f"no mutmut results for {missing}: run `make mutation` first")
    write_results("mutation", {"target": TARGET, "modules": rows,
                               "all_met": all(r["met"] for r in rows.values())})
    lines = ["| module | mutants | killed | survived | no test | equivalent | "
             "score | target 90% |", "|---|---|---|---|---|---|---|---|"]
    for module, r in rows.items():
        total = sum(r[k] for k in ("killed", "survived", "no_tests", "equivalent"))
        lines.append(f"| `{module}` | {total} | {r['killed']} | {r['survived']} | "
                     f"{r['no_tests']} | {r['equivalent']} | {r['score']:.1%} | "
                     f"{'met' if r['met'] else 'missed'} |")
    write_markdown("mutation", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Put the benchmark results into docs/benchmarks.md (between the `bench:start`
and `bench:end` markers), with the date and the machine of each run.

    python -m benchmarks.summary           # print the section
    python -m benchmarks.summary --write   # and write it into docs/benchmarks.md
    python -m benchmarks.summary --write other.md   # or into another page

`make bench` runs it after the benchmarks.
"""

from __future__ import annotations

import argparse
import json
import os

from benchmarks._common import RESULTS

PAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "docs", "benchmarks.md")
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
TITLES = {
    "lr_finder_cost": "Cost of the range test (time per step vs plain training)",
    "lr_quality": "Quality of the suggested LR",
    "lr_batch": "The LR at every batch size, against a fine grid",
    "advisor_budget": "The advisor with a budget, against the grid's best cell",
    "noise_scale": "Gradient noise scale: overhead and the measured B_simple",
    "tuner": "Batch size and LR searched together (KerasTuner)",
    "tuner_landscape": "Searches replayed on the measured batch x LR landscape",
    "mixed_precision": "Mixed precision: step time on the device present",
    "demo": "`make demo`",
    "adaptive": "fit_adaptive against fixed batch sizes (equal samples seen)",
    "adaptive_overhead": "Costs behind fit_adaptive: noise scale, accumulation",
    "mutation": "Mutation score of the pure math (`make mutation`)",
}
COMMANDS = {"lr_batch": "python -m benchmarks.bench_lr_batch score",
            "adaptive": "python -m benchmarks.bench_adaptive run --split report",
            "mutation": "make mutation"}


def _machine(info):
    device = info.get("device", "?")
    return (f"{info.get('date', '?')}, {device}, {info.get('cpu_count', '?')} "
            f"cores, Python {info.get('python', '?')}, Keras {info.get('keras', '?')} "
            f"({info.get('backend', '?')} {info.get('tensorflow', '')})").replace(
                " )", ")")


def section() -> str:
    parts = []
    for name, title in TITLES.items():
        md = os.path.join(RESULTS, f"{name}.md")
        js = os.path.join(RESULTS, f"{name}.json")
        if not (os.path.exists(md) and os.path.exists(js)):
            continue
        with open(js, encoding="utf-8") as f:
            machine = json.load(f).get("machine", {})
        with open(md, encoding="utf-8") as f:
            body = f.read().strip()
        command = COMMANDS.get(name, f"python -m benchmarks.bench_{name}")
        parts.append(f"## {title}\n\n*Run {_machine(machine)}; "
                     f"`{command}`.*\n\n{body}\n")
    return "\n".join(parts)


def write_page(path=PAGE):
    """Replace the block between the markers of `path` with `section()`."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if START not in text or END not in text:
        raise SystemExit(f"{path} has no {START} ... {END} markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{section()}\n{END}{tail}"
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(new)
    os.replace(path + ".tmp", path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", nargs="?", const=PAGE, default=None,
                        metavar="PAGE", help="page to update in place (default "
                        "docs/benchmarks.md)")
    args = parser.parse_args(argv)
    if args.write:
        write_page(args.write)
    else:
        print(section())


if __name__ == "__main__":
    main()

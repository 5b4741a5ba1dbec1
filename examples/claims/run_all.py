"""Run every claim experiment and write `docs/claims.md` from their results.

    python examples/claims/run_all.py                 # every claim, then the page
    python examples/claims/run_all.py --only memory   # some scripts, then the page
    python examples/claims/run_all.py --render        # only rewrite the page

Each script can also run alone (`python examples/claims/memory.py`); its JSON
and figure go to `docs/claims/` and `docs/images/claims/`. The verdicts are
computed from the numbers by each script's `verdicts()`, never typed in. The
verdict table sits between the page's `claims:start` and `claims:end` markers
(`table_block()`), so that it can be found and checked on its own.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _common as c

SCRIPTS = (
    "scaling_rules", "generalization", "train_faster", "best_lr_per_batch",
    "increase_batch", "distance", "memory", "lr_finder", "learning_rates",
    "gradient_noise", "batch_norm", "accumulation",
)
PAGE = os.path.join(c.ROOT, "docs", "claims.md")
START, END = "<!-- claims:start -->", "<!-- claims:end -->"


def load(name):
    return importlib.import_module(name)


def rows(results_dir=None):
    """(script, claim, verdict, measured, meta) for every claim with results."""
    out = []
    for name in SCRIPTS:
        module = load(name)
        results = c.load_results(name, results_dir)
        if results is None:
            continue
        verdicts = module.verdicts(results)
        for claim in module.CLAIMS:
            verdict, measured = verdicts[claim["id"]]
            out.append((name, claim, verdict, measured, results.get("_meta", {})))
    return out


def render(results_dir=None, images="images/claims") -> str:
    table = rows(results_dir)
    metas = {name: meta for name, _, _, _, meta in table}
    minutes = sum(meta.get("seconds", 0) for meta in metas.values()) / 60
    cores = ", ".join(sorted({str(meta.get("cpu_count", "?")) for meta in
                              metas.values()}))
    lines = [
        "# The claims of the articles kbatch grew from, tested",
        "",
        "The articles kbatch grew from (listed at the end) give advice about batch "
        "sizes and learning rates. Some of it is sound, some contradicts other "
        "articles, some is wrong. Each claim below was turned into a small "
        "experiment you can rerun on a CPU (MNIST-1D or digits, no download; "
        "a few minutes each, the generalization one about half an hour), with "
        "several seeds (mean ± standard deviation). The verdict "
        "is computed from the measured numbers by the script's `verdicts()`, "
        "and the figures are drawn by the scripts.",
        "",
        "Verdicts: **holds**; **holds with conditions** (the conditions are "
        "stated); **does not hold here** (on these tasks; the literature column "
        "says what is known in general). Small models on small data are not "
        "ImageNet: read a verdict as \"what you will see on a problem of this "
        "size\", and rerun the script on your own model where it matters.",
        "",
        f"Rerun everything (the scripts of this page took {minutes:.0f} minutes "
        f"in all, on {cores} CPU cores) and rewrite this page:",
        "",
        "```bash",
        "python examples/claims/run_all.py",
        "```",
        "",
        table_block(results_dir),
        "",
    ]
    for i, (name, claim, verdict, measured, meta) in enumerate(table, 1):
        seeds = meta.get("seeds", "?")
        when = meta.get("date", "?")
        quick = " (quick run: small data, not the reference figures)" if meta.get(
            "quick") else ""
        lines += [
            f'<a id="{claim["id"]}"></a>',
            f"## {i}. {claim['claim']}",
            "",
            "- **From:** " + "; ".join(f"{s} — {c.SOURCES[s]}"
                                        for s in claim["sources"]),
            f"- **Verdict: {verdict}.**",
            f"- **Measured** ({seeds} seeds, {when}, "
            f"`python examples/claims/{name}.py`){quick}: {measured}",
            f"- **Literature:** {claim['literature']}",
            "",
            f"![{claim['id']}]({images}/{name}.png)",
            "",
        ]
    lines += [
        "## Sources",
        "",
        "The articles kbatch grew from (in the project's shared notes, not "
        "redistributed here):",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in c.SOURCES.items()]
    lines += [
        "",
        "Papers cited: Goyal et al. 2017 (arXiv:1706.02677); Keskar et al. 2016 "
        "(arXiv:1609.04836); Hoffer, Hubara & Soudry 2017 (arXiv:1705.08741); "
        "Smith, Kindermans, Ying & Le 2017 (arXiv:1711.00489); Smith 2017 "
        "(arXiv:1506.01186); Masters & Luschi 2018 (arXiv:1804.07612); Shallue "
        "et al. 2018 (arXiv:1811.03600); McCandlish et al. 2018 "
        "(arXiv:1812.06162); Malladi et al. 2022 (arXiv:2205.10287); Krizhevsky "
        "2014 (arXiv:1404.5997); Ioffe & Szegedy 2015 (arXiv:1502.03167); Ioffe "
        "2017 (arXiv:1702.03275); Wu & He 2018 (arXiv:1803.08494); Cohen et al. "
        "2021 (arXiv:2103.00065); Goodfellow, Vinyals & Saxe 2015 "
        "(arXiv:1412.6544); Li, Wei & Ma 2019 (arXiv:1907.04595); Glorot & Bengio "
        "2010; Bengio, Simard & Frasconi 1994; Rhu et al. 2016 "
        "(arXiv:1602.08124); Chen et al. 2016 (arXiv:1604.06174); Howard & "
        "Gugger 2020 (arXiv:2002.04688).",
        "",
    ]
    return "\n".join(lines)


def table_block(results_dir=None) -> str:
    """The verdict table of the page, between its claims markers."""
    lines = [START, "", "| # | claim | from | verdict | experiment |",
             "|---|---|---|---|---|"]
    for i, (name, claim, verdict, _, _) in enumerate(rows(results_dir), 1):
        sources = ", ".join(claim["sources"])
        lines.append(f"| {i} | [{claim['claim']}](#{claim['id']}) | {sources} | "
                     f"**{verdict}** | `examples/claims/{name}.py` |")
    return "\n".join([*lines, "", END])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None,
                        help="comma-separated script names (default: all)")
    parser.add_argument("--render", action="store_true",
                        help="only rewrite docs/claims.md from the saved results")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if not args.render:
        names = args.only.split(",") if args.only else SCRIPTS
        for name in names:
            if name not in SCRIPTS:
                raise SystemExit(f"unknown claim script {name!r}; known: {SCRIPTS}")
            print(f"== {name}", flush=True)
            c.execute(load(name), args)
    if args.out is None:
        with open(PAGE + ".tmp", "w", encoding="utf-8") as f:
            f.write(render())
        os.replace(PAGE + ".tmp", PAGE)
        print(f"wrote {PAGE}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""What every claim experiment shares: arguments, data, models, statistics, output.

A claim script defines

- `CLAIMS`: the claims it tests, each a dict with `id`, `claim` (what the
  article says, in our words), `sources` (numbers of the articles kbatch grew
  from), `literature` (the published result to compare with);
- `run(args) -> dict`: the experiment; JSON-serialisable results with every
  number, per seed;
- `verdicts(results) -> {claim id: (verdict, measured)}`: the verdict follows
  from the numbers (one of `VERDICTS`), with one sentence of what was measured;
- `plot(results, path)`: the figure.

`main(module)` runs a script from the command line; `run_all.py` runs them all
and writes `docs/claims.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = os.path.join(ROOT, "docs", "claims")
IMAGES = os.path.join(ROOT, "docs", "images", "claims")

HOLDS = "holds"
CONDITIONS = "holds with conditions"
DOES_NOT_HOLD = "does not hold here"
VERDICTS = (HOLDS, CONDITIONS, DOES_NOT_HOLD)

SOURCES = {
    "000": "Impact of Batch Size and Learning Rate on Model Performance "
           "(interview-course article)",
    "001": "The interplay between learning rate and batch size (article on "
           "linear and square-root scaling)",
    "002": "Batch size: its effects on model performance, training time and "
           "convergence (article)",
    "003": "Determining the Right Batch Size for a Neural Network "
           "(R. Pramoditha, Data Science 365, a compilation)",
    "004": "Batch size (glossary entry)",
}


def parser(doc: str, seeds: int = 3) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    p.add_argument("--seeds", type=int, default=seeds,
                   help=f"independent runs per setting (default {seeds})")
    p.add_argument("--quick", action="store_true",
                   help="small data and short training: a smoke run in seconds, "
                        "not the figures of docs/claims.md")
    p.add_argument("--out", default=None,
                   help="directory for the JSON and PNG (default: docs/claims and "
                        "docs/images/claims of the repository)")
    return p


def load_data(quick: bool, name: str = "mnist1d"):
    """MNIST-1D (4,000 training signals; 1,600 with `quick`) or digits."""
    from kbatch import datasets

    if name == "digits":
        return datasets.load_digits()
    return datasets.load_mnist1d(num_samples=2000 if quick else 5000)


def mlp(data, optimizer="momentum", learning_rate=0.01, hidden=(128, 128),
        batch_norm=False):
    """The claims' reference MLP; with `batch_norm`, BatchNorm after each layer."""
    import keras

    from kbatch import models

    if not batch_norm:
        return models.build_mlp(data.input_shape, data.num_classes, hidden=hidden,
                                optimizer=optimizer, learning_rate=learning_rate)
    inputs = keras.Input(data.input_shape)
    x = inputs
    for width in hidden:
        x = keras.layers.Dense(width, use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Activation("relu")(x)
    x = keras.layers.Dense(data.num_classes)(x)
    outputs = keras.layers.Activation("softmax", dtype="float32")(x)
    model = keras.Model(inputs, outputs, name="mlp_bn")
    model.compile(models.make_optimizer(optimizer, learning_rate),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def stats(values) -> dict:
    """Mean, standard deviation (ddof=1) and the values, as floats."""
    values = [float(v) for v in values]
    if len(values) < 2:
        std = 0.0
    elif all(np.isfinite(values)):
        std = float(np.std(values, ddof=1))
    else:  # a run that never reached a target (inf): no spread to report
        std = float("inf")
    return {"mean": float(np.mean(values)), "std": std, "values": values}


def pm(s: dict, digits: int = 3) -> str:
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def paths(name: str, out: str | None):
    results = out or RESULTS
    images = out or IMAGES
    os.makedirs(results, exist_ok=True)
    os.makedirs(images, exist_ok=True)
    return os.path.join(results, f"{name}.json"), os.path.join(images, f"{name}.png")


def machine() -> dict:
    import platform

    import keras

    return {"date": time.strftime("%Y-%m-%d", time.gmtime()),
            "python": platform.python_version(), "keras": keras.__version__,
            "backend": keras.config.backend(), "cpu_count": os.cpu_count(),
            "dtype_policy": keras.config.dtype_policy().name}


def save_figure(fig, path):
    """Lay out, write (100 dpi) and close a figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def execute(module, args) -> dict:
    """Run `module`'s experiment, write its JSON and figure, print its verdicts."""
    import matplotlib

    matplotlib.use("Agg")
    name = os.path.splitext(os.path.basename(module.__file__))[0]
    started = time.perf_counter()
    results = module.run(args)
    results["_meta"] = {"script": f"examples/claims/{name}.py", "seeds": args.seeds,
                        "quick": bool(args.quick),
                        "seconds": round(time.perf_counter() - started, 1),
                        **machine()}
    json_path, png_path = paths(name, args.out)
    module.plot(results, png_path)
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1, sort_keys=True)
    for claim in module.CLAIMS:
        verdict, measured = module.verdicts(results)[claim["id"]]
        print(f"[{verdict}] {claim['claim']}\n    {measured}")
    print(f"wrote {json_path} and {png_path} "
          f"({results['_meta']['seconds']:.0f} s)", file=sys.stderr)
    return results


def main(module, doc: str, seeds: int = 3):
    args = parser(doc, seeds).parse_args()
    execute(module, args)


def load_results(name: str, out: str | None = None) -> dict | None:
    json_path, _ = paths(name, out)
    if not os.path.exists(json_path):
        return None
    with open(json_path, encoding="utf-8") as f:
        return json.load(f)


def fit_quiet(model, data, **kwargs):
    """`model.fit` on the training split, silent; returns the History."""
    kwargs.setdefault("verbose", 0)
    return model.fit(*data.train, **kwargs)


def test_accuracy(model, data) -> float:
    return float(model.evaluate(*data.test, verbose=0, return_dict=True)["accuracy"])


def range_test_lr(model, data, batch_size: int, seed: int = 0) -> float:
    """The agreed suggestion of a kbatch LR range test on the training split."""
    import kbatch

    return float(kbatch.find_lr(model, *data.train, batch_size=batch_size, seed=seed,
                                verbose=0).suggestion())


def standard_error(a: dict, b: dict) -> float:
    """Standard error of mean(a) - mean(b) (independent runs)."""
    return (a["std"] ** 2 / len(a["values"]) + b["std"] ** 2 / len(b["values"])) ** 0.5


def significant(a: dict, b: dict, margin: float = 0.0, z: float = 2.0) -> bool:
    """Whether mean(a) exceeds mean(b) by more than `margin` and by more than
    `z` standard errors of the difference."""
    diff = a["mean"] - b["mean"]
    return diff > margin and diff > z * standard_error(a, b)

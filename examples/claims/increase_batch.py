"""Claim: increase the batch size instead of decaying the learning rate.

Runs `examples/increase_batch_not_lr.py`'s experiment (an MNIST-1D MLP with
SGD and momentum: constant LR, step LR decay, and the batch size multiplied by
the same factor at the same epochs instead) and turns it into a verdict: the
batch increase "holds" if it reaches the LR decay's test accuracy (within one
point or two standard errors) with fewer parameter updates.

    python examples/claims/increase_batch.py [--seeds 3] [--quick]
"""

from __future__ import annotations

import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _common as c

CLAIMS = [
    {"id": "increase-batch-not-decay-lr", "sources": ["003"],
     "claim": "Instead of decaying the learning rate, increase the batch size: "
              "the same accuracy with fewer parameter updates.",
     "literature": "Smith, Kindermans, Ying & Le 2017 (\"Don't decay the learning "
                   "rate, increase the batch size\"): equivalent test accuracy "
                   "with fewer updates, on CIFAR-10 and ImageNet."},
]
KINDS = ("constant", "LR decay", "batch increase")


def _example():
    path = os.path.join(os.path.dirname(HERE), "increase_batch_not_lr.py")
    spec = importlib.util.spec_from_file_location("increase_batch_not_lr", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(args):
    import keras

    import kbatch

    example = _example()
    data = c.load_data(args.quick)
    epochs = 9 if args.quick else 30
    batch = 32
    keras.utils.set_random_seed(0)
    base_lr = c.range_test_lr(c.mlp(data), data, batch)
    schedule = kbatch.BatchSizeSchedule(batch, [epochs // 3, 2 * epochs // 3],
                                        factor=3.0)
    results = {"epochs": epochs, "base_lr": base_lr,
               "schedule": schedule.get_config(), "kinds": {}}
    for kind in KINDS:
        runs = [example.run_one(data, kind, schedule, epochs, base_lr, s)
                for s in range(args.seeds)]
        results["kinds"][kind] = {
            "test_accuracy": c.stats([r["test_accuracy"][-1] for r in runs]),
            "updates": int(sum(runs[0]["updates"])),
            "curve": [sum(v) / len(v) for v in zip(*[r["test_accuracy"]
                                                     for r in runs])],
            "cumulative_updates": [int(sum(runs[0]["updates"][:i + 1]))
                                   for i in range(epochs)]}
        print(kind, c.pm(results["kinds"][kind]["test_accuracy"]), flush=True)
    return results


def verdicts(results):
    k = results["kinds"]
    decay, increase = k["LR decay"], k["batch increase"]
    measured = ("test accuracy: " + "; ".join(
        f"{name} {c.pm(v['test_accuracy'])} ({v['updates']} updates)"
        for name, v in k.items()) + ".")
    matches = not c.significant(decay["test_accuracy"], increase["test_accuracy"],
                                margin=0.01)
    fewer = increase["updates"] < decay["updates"]
    if matches and fewer:
        return {"increase-batch-not-decay-lr": (c.HOLDS, measured)}
    if matches or fewer:
        return {"increase-batch-not-decay-lr": (c.CONDITIONS, measured)}
    return {"increase-batch-not-decay-lr": (c.DOES_NOT_HOLD, measured)}


def plot(results, path):
    _example().plot({name: (v["curve"], v["cumulative_updates"])
                     for name, v in results["kinds"].items()}, path)


if __name__ == "__main__":
    c.main(sys.modules[__name__], __doc__)

"""Shared helpers of the benchmarks: machine facts and result files."""

from __future__ import annotations

import datetime
import os
import platform
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def machine() -> dict:
    import keras
    import numpy as np

    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M UTC"
        ),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "keras": keras.__version__,
        "backend": keras.config.backend(),
        "numpy": np.__version__,
    }
    if keras.config.backend() == "tensorflow":
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
        gpus = tf.config.list_physical_devices("GPU")
        info["device"] = "GPU: " + ", ".join(g.name for g in gpus) if gpus else "CPU"
    return info


def write_results(name: str, data: dict) -> str:
    """Write `results/<name>.json` (with the machine facts) and return the path."""
    from kbatch._internal import io as _io

    path = os.path.join(RESULTS, f"{name}.json")
    _io.write_json_atomic(path, {"benchmark": name, "machine": machine(), **data})
    print(f"wrote {path}", file=sys.stderr)
    return path


def read_tasks(name: str) -> dict:
    """The `tasks` of `results/<name>.json`, or `{}` when there is none."""
    import json

    path = os.path.join(RESULTS, f"{name}.json")
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f).get("tasks", {})


def write_task(name: str, task: str, result: dict, order, markdown) -> dict:
    """Merge one task's `result` into `results/<name>.json` and rewrite
    `results/<name>.md` with `markdown(tasks)`. The file is read again first:
    another run may have written other tasks since. Tasks are kept in
    `order`; returns them."""
    tasks = read_tasks(name)
    tasks[task] = result
    tasks = {t: tasks[t] for t in order if t in tasks}
    write_results(name, {"tasks": tasks})
    write_markdown(name, markdown(tasks))
    return tasks


def write_markdown(name: str, text: str) -> str:
    path = os.path.join(RESULTS, f"{name}.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path

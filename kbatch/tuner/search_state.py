"""What a `BatchLRHyperModel` search keeps between trials and across resumed
runs: the range tests' anchors and the smallest batch size that ran out of
memory, in one JSON file in the tuner's project directory."""

from __future__ import annotations

import math
import os

import keras_tuner

from kbatch._internal import io as _io

__all__ = ["CACHE_FILE", "FORMAT", "load_state", "save_state", "state_path"]

CACHE_FILE = "kbatch_search_state.json"
FORMAT = "kbatch.SearchState"


def state_path(callbacks, cache_dir=None):
    """The state file of the search that passed `callbacks` to `fit`.

    KerasTuner hands every trial a callback holding the tuner; its project
    directory holds the file. Without one, `cache_dir`, else `None`.

    Example:

    >>> state_path([], cache_dir="/tmp/search").endswith(CACHE_FILE)
    True
    """
    for callback in callbacks or []:
        tuner = getattr(callback, "tuner", None)
        project = getattr(tuner, "project_dir", None)
        if project:
            return os.path.join(project, CACHE_FILE)
    if cache_dir:
        return os.path.join(cache_dir, CACHE_FILE)
    return None


def _positive_finite(value):
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"base_lr={value} is not a positive finite number")
    return value


def load_state(path, base_batch_size):
    """`(anchors, smallest_oom)` from the file at `path` (`(None, None)` if
    there is none). Anchors measured at another base batch size are ignored.
    A file that is not a kbatch search state, or is damaged, is left as it is
    and the search stops with a `FatalValueError` saying what to do.

    Example:

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), CACHE_FILE)
    >>> save_state(path, {"base_lr": 0.1, "base_batch_size": 64,
    ...                   "edges": {16: 0.5, 512: None}}, smallest_oom=1024)
    >>> load_state(path, base_batch_size=64)
    ({'base_lr': 0.1, 'base_batch_size': 64, 'edges': {16: 0.5, 512: None}}, 1024)
    """
    if not os.path.exists(path):
        return None, None
    try:
        data = _io.read_json(path, what="kbatch search state")
    except ValueError as error:
        raise keras_tuner.errors.FatalValueError(
            f"{error} It was left as it is; remove it to rerun the cached "
            "range tests, or use another project directory.") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise keras_tuner.errors.FatalValueError(
            f"{path} exists but is not a kbatch search state file; remove it "
            "or use another project directory.")
    anchors, smallest_oom = None, None
    try:
        stored = data.get("anchors")
        if stored and stored.get("base_batch_size") == base_batch_size:
            edges = {int(b): (None if v is None else float(v))
                     for b, v in stored["edges"].items()}
            anchors = {
                "base_lr": _positive_finite(stored["base_lr"]),
                "base_batch_size": int(stored["base_batch_size"]),
                "edges": edges,
            }
            measured = stored.get("measured")
            if measured:
                sizes = [int(b) for b in measured["batch_sizes"]]
                lrs = [_positive_finite(v) for v in measured["learning_rates"]]
                if not sizes or len(sizes) != len(lrs):
                    raise ValueError("bad measured relation")
                anchors["measured"] = {"batch_sizes": sizes, "learning_rates": lrs,
                                       "epochs": int(measured["epochs"])}
                if "samples_trained" in measured:  # what the measurement cost
                    anchors["measured"]["samples_trained"] = int(
                        measured["samples_trained"])
        if data.get("smallest_oom") is not None:
            smallest_oom = int(data["smallest_oom"])
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise keras_tuner.errors.FatalValueError(
            f"{path} is a damaged kbatch search state file "
            f"({type(error).__name__}: {error}). It was left as it is; "
            "remove it to rerun the cached range tests.") from None
    return anchors, smallest_oom


def save_state(path, anchors, smallest_oom):
    """Write the search state atomically (a crash never leaves half a file).

    Example:

    >>> import tempfile, os, json
    >>> path = os.path.join(tempfile.mkdtemp(), CACHE_FILE)
    >>> save_state(path, None, smallest_oom=512)
    >>> json.load(open(path))["smallest_oom"]
    512
    """
    _io.write_json_atomic(path, {
        "format": FORMAT,
        "anchors": None if anchors is None else {
            "base_lr": anchors["base_lr"],
            "base_batch_size": anchors["base_batch_size"],
            "edges": {str(b): v for b, v in anchors["edges"].items()},
            **({"measured": anchors["measured"]} if anchors.get("measured") else {}),
        },
        "smallest_oom": smallest_oom,
    })

"""Result files: JSON only (never pickle or eval), written atomically."""

from __future__ import annotations

import json
import math
import os
import tempfile

import numpy as np


def json_floats(values) -> list:
    """Floats for JSON: NaN and inf become `null` (strict JSON has neither)."""
    return [float(v) if math.isfinite(v) else None for v in np.asarray(values).tolist()]


def floats_from_json(values, name: str) -> np.ndarray:
    """The inverse of `json_floats`, refusing anything but numbers and nulls."""
    if not isinstance(values, list):
        raise ValueError(f"Corrupt file: {name!r} must be a list of numbers.")
    out = []
    for v in values:
        if v is None:
            out.append(math.nan)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(float(v))
        else:
            raise ValueError(f"Corrupt file: {name!r} holds a non-number {v!r}.")
    return np.asarray(out, dtype=np.float64)


def _default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.ndarray):
        return json_floats(value) if value.dtype.kind == "f" else value.tolist()
    raise TypeError(f"Cannot write {type(value).__name__} to JSON: {value!r}")


def write_json_atomic(path, data):
    """Write `data` as JSON to `path` via a temporary file and a rename.

    A reader never sees a half-written file, and an existing file is replaced
    only once the new one is complete.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    text = json.dumps(data, indent=1, default=_default, allow_nan=False)
    fd, tmp = tempfile.mkstemp(prefix=".kbatch-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def read_json(path, what: str):
    """Read a JSON file, turning every way it can be damaged into `ValueError`."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"No {what} file at {path!r}.") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path!r} is not a {what} JSON file: {e}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{path!r} is not a valid {what} JSON file (truncated or damaged?): {e}"
        ) from None

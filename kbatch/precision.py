"""Mixed precision: which policy for this device, set it for a block, check a model.

Mixed precision computes in 16 bits and keeps the weights in float32. On
NVIDIA GPUs with tensor cores (compute capability 7.0 and up) `mixed_float16`
is up to several times faster; it needs loss scaling, which `model.compile`
adds by wrapping the optimizer in a `keras.optimizers.LossScaleOptimizer`.
`mixed_bfloat16` has float32's exponent range, needs no loss scaling and is
the native format of TPUs (and of GPUs of compute capability 8.0 and up). On a
CPU neither is faster, so `auto_policy()` picks float32 there unless forced.

Example:

>>> from kbatch import precision
>>> precision.policy_for_device("gpu", (8, 6))
'mixed_float16'
>>> precision.policy_for_device("gpu", (6, 1))
'float32'
>>> precision.policy_for_device("cpu", None)
'float32'
>>> with precision.dtype_policy("mixed_bfloat16"):
...     keras.config.dtype_policy().name
'mixed_bfloat16'
>>> keras.config.dtype_policy().name
'float32'
"""

from __future__ import annotations

import contextlib
import warnings

import keras

from kbatch._internal import backend as _backend
from kbatch._internal.validate import check_choice

__all__ = [
    "POLICIES",
    "PREFERENCES",
    "PrecisionWarning",
    "auto_policy",
    "check_model",
    "dtype_policy",
    "policy_for_device",
    "resolve",
]

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
PREFERENCES = ("auto", "float16", "bfloat16")


class PrecisionWarning(UserWarning):
    """A model or batch size that loses the speed or accuracy of mixed precision.

    Example:

    >>> issubclass(PrecisionWarning, UserWarning)
    True
    """


def policy_for_device(kind: str, compute_capability=None, prefer: str = "auto",
                      force: bool = False) -> str:
    """The dtype policy kbatch recommends for a device.

    Args:
        kind: `"gpu"`, `"tpu"` or `"cpu"`.
        compute_capability: `(major, minor)` of an NVIDIA GPU, or `None`.
        prefer: `"auto"`, `"float16"` or `"bfloat16"`.
        force: Use mixed precision even where it is not faster (CPUs, old
            GPUs): useful to test a mixed-precision setup on a laptop.

    Returns:
        `"mixed_float16"`, `"mixed_bfloat16"` or `"float32"`.

    Example:

    >>> policy_for_device("gpu", (8, 0), prefer="bfloat16")  # e.g. an A100
    'mixed_bfloat16'
    >>> policy_for_device("cpu", force=True)
    'mixed_bfloat16'
    """
    check_choice("kind", kind, ("gpu", "tpu", "cpu"))
    check_choice("prefer", prefer, PREFERENCES)
    if kind == "tpu":
        return "mixed_bfloat16"
    if kind == "gpu":
        major = compute_capability[0] if compute_capability else 0
        if prefer == "bfloat16" and (major >= 8 or force):
            return "mixed_bfloat16"
        if major >= 7 or force:
            return "mixed_float16"
        return "float32"
    if force:  # CPU: bfloat16 is the 16-bit format CPUs compute natively
        return "mixed_float16" if prefer == "float16" else "mixed_bfloat16"
    return "float32"


def auto_policy(prefer: str = "auto", force: bool = False) -> str:
    """The dtype policy for the device Keras runs on (see `policy_for_device`).

    `mixed_float16` on NVIDIA GPUs of compute capability >= 7.0,
    `mixed_bfloat16` on TPUs (and on GPUs >= 8.0 with `prefer="bfloat16"`),
    `float32` on CPUs and older GPUs unless `force=True`.

    Example:

    >>> auto_policy() in ("float32", "mixed_float16", "mixed_bfloat16")
    True
    """
    facts = _backend.device_facts()
    return policy_for_device(facts["kind"], facts["compute_capability"], prefer,
                             force)


def resolve(mixed_precision) -> str:
    """A user's `mixed_precision=` argument as a policy name: `"auto"` ->
    `auto_policy()`, `None` -> `"float32"`, a policy name as itself.

    Example:

    >>> resolve(None), resolve("mixed_bfloat16")
    ('float32', 'mixed_bfloat16')
    """
    if mixed_precision is None:
        return "float32"
    if mixed_precision == "auto":
        return auto_policy()
    check_choice("mixed_precision", mixed_precision, (*POLICIES, "auto", None))
    return mixed_precision


@contextlib.contextmanager
def dtype_policy(name):
    """Set the global dtype policy inside a `with` block, and put the previous
    one back afterwards, also after an error. `None` leaves it as it is.

    Example:

    >>> with dtype_policy("mixed_float16"):
    ...     layer = keras.layers.Dense(8)
    >>> layer.dtype_policy.name, keras.config.dtype_policy().name
    ('mixed_float16', 'float32')
    """
    if isinstance(name, str):
        check_choice("name", name, POLICIES)
    previous = keras.config.dtype_policy()
    if name is not None:
        keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _all_layers(model):
    for layer in getattr(model, "layers", []):
        yield layer
        yield from _all_layers(layer)


def _policy_name(layer):
    policy = getattr(layer, "dtype_policy", None)
    return getattr(policy, "name", "float32")


def check_model(model, batch_size: int | None = None, *, warn: bool = True) -> list:
    """Check a model for the usual mixed-precision mistakes.

    - The output is not float32 (the loss, and softmax, lose precision): make
      the last layer `keras.layers.Activation("softmax", dtype="float32")` or
      pass `dtype="float32"` to it.
    - Under `mixed_float16`: `Dense` units, convolution filters or the batch
      size not multiples of 8 (tensor cores need multiples of 8).
    - Under `mixed_float16`: an optimizer without loss scaling (gradients
      underflow to zero); compile with the default `auto_scale_loss=True`.

    Args:
        model: A `keras.Model`.
        batch_size: Optional batch size to check too.
        warn: Issue each finding as a `PrecisionWarning`. Defaults to `True`.

    Returns:
        The list of findings (empty when the model is fine or float32).

    Example:

    >>> with dtype_policy("mixed_float16"):
    ...     model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32),
    ...                               keras.layers.Dense(10, dtype="float32")])
    >>> model.compile("sgd", "mse")
    >>> for finding in check_model(model, batch_size=100, warn=False):
    ...     print(finding)
    Under mixed_float16 the batch size should be a multiple of 8;
    batch_size=100. Try 104.
    """
    layers = list(_all_layers(model))
    policies = {_policy_name(layer) for layer in layers}
    findings = []
    mixed = any(p.startswith("mixed_") for p in policies)
    if not mixed:
        return findings
    outputs = getattr(model, "outputs", None) or []
    for output in outputs:
        dtype = keras.backend.standardize_dtype(output.dtype)
        if dtype != "float32":
            findings.append(
                f"The model's output is {dtype}: the loss loses precision. Make "
                "the last layer float32, e.g. `keras.layers.Activation('softmax', "
                "dtype='float32')`.")
    if "mixed_float16" in policies:
        narrow = []
        for layer in layers:
            if _policy_name(layer) != "mixed_float16":
                continue  # a float32 layer does not use tensor cores
            width = getattr(layer, "units", None) or getattr(layer, "filters", None)
            if isinstance(width, int) and width % 8:
                narrow.append(f"{layer.name} ({width})")
        if narrow:
            findings.append(
                "Under mixed_float16, layer widths should be multiples of 8 for "
                f"tensor cores; not: {', '.join(narrow)}.")
        if batch_size is not None and batch_size % 8:
            findings.append(
                f"Under mixed_float16 the batch size should be a multiple of 8; "
                f"batch_size={batch_size}. Try {-(-batch_size // 8) * 8}.")
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None and not isinstance(
                optimizer, keras.optimizers.LossScaleOptimizer):
            findings.append(
                "Under mixed_float16 the optimizer has no loss scaling, so small "
                "gradients underflow to zero. Compile with the default "
                "`auto_scale_loss=True` or wrap it in "
                "`keras.optimizers.LossScaleOptimizer`.")
    if warn:
        for finding in findings:
            warnings.warn(finding, PrecisionWarning, stacklevel=2)
    return findings

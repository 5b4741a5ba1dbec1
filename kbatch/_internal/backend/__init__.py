"""Backend-specific code, one small module per Keras backend.

Everything that depends on TensorFlow, JAX or PyTorch (gradients for the noise
scale, out-of-memory exception types, device facts) lives here; the rest of
kbatch talks to Keras only.
"""

from __future__ import annotations

import contextlib
import functools
import importlib

import keras

BACKENDS = ("tensorflow", "jax", "torch")
# Backends with gradient code for the noise scale (`micro_batch_norms`).
GRADIENTS = ("tensorflow", "jax", "torch")
# ... and with a train step that also measures, for
# `GradientNoiseScale(method="micro_batches")` inside `fit`.
IN_FIT_MICRO_BATCHES = ("tensorflow",)


def module(name: str | None = None):
    """The kbatch module of a Keras backend (default: the active one).

    Raises:
        NotImplementedError: for a backend kbatch does not know.
    """
    name = name or keras.config.backend()
    if name not in BACKENDS:
        raise NotImplementedError(
            f"kbatch supports the Keras backends {BACKENDS}; the active backend "
            f"is {name!r}. Set KERAS_BACKEND to one of them."
        )
    return importlib.import_module(f"kbatch._internal.backend.{name}")


def current():
    """The active backend's module, for the gradient code of the noise scale.

    Raises:
        NotImplementedError: on a backend without it, saying what to do.
    """
    name = keras.config.backend()
    if name not in GRADIENTS:
        raise NotImplementedError(
            "The gradient noise scale (`GradientNoiseScale`, "
            "`measure_noise_scale`, and `advise`, which uses it) needs the "
            f"TensorFlow backend; the active Keras backend is {name!r}. Run it "
            "with KERAS_BACKEND=tensorflow; the range test, LR scaling, "
            "throughput, memory search and tuner work on every backend."
        )
    return module(name)


def oom_errors() -> tuple:
    """Exception types that mean "out of memory" on the active backend."""
    return (MemoryError, *module().oom_errors())


def is_oom(error: BaseException) -> bool:
    """Whether `error` is an out-of-memory error of the active backend.

    JAX reports out-of-memory as a runtime error whose message holds
    `RESOURCE_EXHAUSTED`; it is recognised by that text.
    """
    if isinstance(error, oom_errors()):
        return True
    return "RESOURCE_EXHAUSTED" in str(error) or "out of memory" in str(error).lower()


def global_rng_state():
    """The global random states a `fit` may draw from besides the model's own
    seed generators: Python's, NumPy's and the backend's (PyTorch's data
    loader draws a seed for every pass). `set_global_rng_state` puts them
    back, so that a trial leaves the data order of what follows unchanged."""
    import random

    import numpy as np

    # (the legacy global state is the one others draw from)
    return (random.getstate(), np.random.get_state(),  # noqa: NPY002
            getattr(module(), "rng_state", lambda: None)())


def set_global_rng_state(state):
    import random

    import numpy as np

    python, numpy_state, backend = state
    random.setstate(python)
    np.random.set_state(numpy_state)  # noqa: NPY002
    if backend is not None:
        module().set_rng_state(backend)


def replicas_in_sync() -> int:
    """Replicas a data-parallel step runs on (TensorFlow's `tf.distribute`;
    1 elsewhere and outside a replica context)."""
    return getattr(module(), "replicas_in_sync", lambda: 1)()


def all_reduce(op: str, values):
    """`"sum"` or `"mean"` of `values` over the replicas of the step."""
    return module().all_reduce(op, values)


def executing_eagerly(value) -> bool:
    """Whether the code that computed `value` runs op by op (PyTorch, a model
    with `run_eagerly=True`), rather than being traced into a compiled step."""
    return module().executing_eagerly(value)


def device_facts() -> dict:
    """The accelerator Keras will run on: `{"kind": "gpu" | "tpu" | "cpu",
    "name": str, "compute_capability": (major, minor) | None}`."""
    facts = module().device_facts()
    if facts is not None:
        return facts
    import platform

    return {"kind": "cpu", "name": platform.processor() or platform.machine(),
            "compute_capability": None}


def model_scope(model):
    """A context in which `model`'s variables may be created and changed.

    A model compiled under a `tf.distribute` strategy creates its optimizer
    variables (and kbatch its learning-rate variable) only inside that
    strategy's scope; outside it TensorFlow raises half-way through, leaving
    an optimizer that can no longer train. This enters the model's strategy
    scope when the caller is not already in one; elsewhere it does nothing.
    """
    enter = getattr(module(), "model_scope", None)
    if enter is None:
        return contextlib.nullcontext()
    return enter(model)


def in_model_scope(function):
    """Decorator: run `function(model, ...)` inside `model_scope(model)`.

    The wrapper is one more frame between the caller and `function`: a
    warning `function` raises itself points at its caller with `stacklevel=3`.
    """

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        model = args[0] if args else kwargs.get("model")
        with model_scope(model):
            return function(*args, **kwargs)

    return wrapper

"""Backend-specific code, one small module per Keras backend.

Everything that depends on TensorFlow, JAX or PyTorch (gradients for the noise
scale, out-of-memory exception types, device facts) lives here; the rest of
kbatch talks to Keras only.
"""

from __future__ import annotations

import importlib

import keras

SUPPORTED = ("tensorflow",)


def current():
    """The module for the active Keras backend.

    Raises:
        NotImplementedError: for a backend kbatch does not support yet, with
            what to do instead.
    """
    name = keras.config.backend()
    if name not in SUPPORTED:
        raise NotImplementedError(
            f"This kbatch feature needs the TensorFlow backend; the active Keras "
            f"backend is {name!r}. Set KERAS_BACKEND=tensorflow."
        )
    return importlib.import_module(f"kbatch._backend.{name}")


def oom_errors() -> tuple:
    """Exception types that mean "out of memory" on the active backend."""
    errors = [MemoryError]
    name = keras.config.backend()
    if name == "tensorflow":
        import tensorflow as tf

        errors.append(tf.errors.ResourceExhaustedError)
    elif name == "torch":
        import torch

        errors.append(torch.OutOfMemoryError)
    return tuple(errors)


def is_oom(error: BaseException) -> bool:
    """Whether `error` is an out-of-memory error of the active backend.

    JAX reports out-of-memory as a runtime error whose message holds
    `RESOURCE_EXHAUSTED`; it is recognised by that text.
    """
    if isinstance(error, oom_errors()):
        return True
    return "RESOURCE_EXHAUSTED" in str(error) or "out of memory" in str(error).lower()


def device_facts() -> dict:
    """The accelerator Keras will run on: `{"kind": "gpu" | "tpu" | "cpu",
    "name": str, "compute_capability": (major, minor) | None}`.

    Only TensorFlow is asked today; on other backends the answer is "cpu"
    unless their own device query says otherwise.
    """
    name = keras.config.backend()
    if name == "tensorflow":
        import tensorflow as tf

        if tf.config.list_logical_devices("TPU"):
            return {"kind": "tpu", "name": "TPU", "compute_capability": None}
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            capability = details.get("compute_capability")
            return {"kind": "gpu", "name": details.get("device_name", gpus[0].name),
                    "compute_capability": tuple(capability) if capability else None}
    elif name == "torch":
        import torch

        if torch.cuda.is_available():
            return {"kind": "gpu", "name": torch.cuda.get_device_name(0),
                    "compute_capability": tuple(torch.cuda.get_device_capability(0))}
    elif name == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform in ("gpu", "tpu"):
            capability = getattr(device, "compute_capability", None)
            if isinstance(capability, str):
                capability = tuple(int(p) for p in capability.split("."))
            return {"kind": device.platform, "name": str(device.device_kind),
                    "compute_capability": capability}
    import platform

    return {"kind": "cpu", "name": platform.processor() or platform.machine(),
            "compute_capability": None}

"""JAX: out-of-memory types and device facts.

(During `fit` the JAX trainer keeps variable values in its own state; Keras'
`Callback.model` puts them back into the variables when a callback reads it,
and the next step then reads assigned values such as a learning rate. kbatch's
callbacks rely on that, so nothing JAX-specific is needed here for it.)
"""

from __future__ import annotations


def oom_errors() -> tuple:
    return ()  # XLA's out-of-memory is a runtime error: see `is_oom`


def device_facts():
    import jax

    device = jax.devices()[0]
    if device.platform not in ("gpu", "tpu"):
        return None
    capability = getattr(device, "compute_capability", None)
    if isinstance(capability, str):
        capability = tuple(int(p) for p in capability.split("."))
    return {"kind": device.platform, "name": str(device.device_kind),
            "compute_capability": capability}

"""JAX: state sync during `fit`, out-of-memory types, device facts.

During `fit` the JAX trainer keeps every variable's value in its own state and
empties the variables; a callback that reads or assigns one must first call
`model.jax_state_sync()`, after which the next step reads the state back from
the variables (so an assigned learning rate takes effect at that step).
"""

from __future__ import annotations


def oom_errors() -> tuple:
    return ()  # XLA's out-of-memory is a runtime error: see `is_oom`


def sync_variables(model):
    sync = getattr(model, "jax_state_sync", None)
    if sync is not None:
        sync()


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

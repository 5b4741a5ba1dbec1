"""PyTorch: out-of-memory types and device facts."""

from __future__ import annotations


def oom_errors() -> tuple:
    import torch

    return (torch.OutOfMemoryError,)


def device_facts():
    import torch

    if not torch.cuda.is_available():
        return None
    return {"kind": "gpu", "name": torch.cuda.get_device_name(0),
            "compute_capability": tuple(torch.cuda.get_device_capability(0))}

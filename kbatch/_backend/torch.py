"""PyTorch: out-of-memory types and device facts (variables are live during
`fit`, so there is nothing to sync)."""

from __future__ import annotations


def oom_errors() -> tuple:
    import torch

    return (torch.OutOfMemoryError,)


def sync_variables(model):
    """Variables are live during `fit`: nothing to do."""


def device_facts():
    import torch

    if not torch.cuda.is_available():
        return None
    return {"kind": "gpu", "name": torch.cuda.get_device_name(0),
            "compute_capability": tuple(torch.cuda.get_device_capability(0))}

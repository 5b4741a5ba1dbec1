"""A batch past the memory limit, trained as micro-batches with gradient
accumulation (the optimizer's `gradient_accumulation_steps`): shared by
`fit_adaptive` and `fit_with_batch_schedule`."""

from __future__ import annotations

import keras

from kbatch._internal import data as _data
from kbatch._internal import optimizer as _optimizer
from kbatch._internal.building import ensure_built


def micro_batch(batch_size: int, fails: int = 0, limit: int | None = None) -> int:
    """The largest `batch_size / 2**j` below `fails` (the smallest micro-batch
    known not to fit; 0: none) and at most `limit`. An odd size is not split.

    Example:

    >>> micro_batch(256, fails=128), micro_batch(256, limit=48), micro_batch(12, 3)
    (64, 32, 3)
    """
    micro = int(batch_size)
    while micro > 1 and ((fails and micro >= fails) or (limit and micro > limit)):
        if micro % 2:
            break
        micro //= 2
    return micro


def configure(model, steps: int):
    """Make the model's optimizer accumulate `steps` micro-batches per update
    (1: none), and its train function follow."""
    if steps != _optimizer.gradient_accumulation_steps(model.optimizer):
        _optimizer.set_gradient_accumulation(model.optimizer, steps)
        model.make_train_function(force=True)


def ensure_optimizer_built(model, x, y, caller):
    """Build the model and its optimizer from a first batch, as `fit` would
    (the accumulators are added to a built optimizer)."""
    if model.built and model.optimizer.built:
        return
    first = _data.rebatched(x, y, 2, model, caller)
    if "y" in first:
        batch = (keras.tree.map_structure(lambda a: a[:2], first["x"]), None)
    else:
        batch = next(iter(first["x"]))
        if _data.is_py_dataset(first["x"]):
            batch = first["x"][0]
    ensure_built(model, batch)


def has_accumulators(model) -> bool:
    base = _optimizer.base_optimizer(model.optimizer)
    return getattr(base, "_accumulated_gradients", None) is not None


def remove_accumulators(model):
    """Take the accumulators `configure` built off the optimizer again (a
    measurement leaves the optimizer's variables as it found them)."""
    base = _optimizer.base_optimizer(model.optimizer)
    accumulators = getattr(base, "_accumulated_gradients", None)
    if accumulators is None:
        return
    _optimizer.set_gradient_accumulation(base, 1)
    _optimizer.remove_variables(base, [a for a in accumulators if a is not None])
    base._accumulated_gradients = None
    model.make_train_function(force=True)

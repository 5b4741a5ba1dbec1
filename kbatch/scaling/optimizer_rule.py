"""`default_rule`: the usual LR scaling rule for a Keras optimizer."""

from __future__ import annotations

import keras

from kbatch._internal import optimizer as _optimizer

__all__ = ["default_rule"]


def default_rule(optimizer) -> str:
    """The usual scaling rule for an optimizer.

    `"linear"` for SGD (with or without momentum), as in Goyal et al. 2017;
    `"sqrt"` for adaptive optimizers (the Adam family, RMSprop, Adagrad, ...),
    as in Malladi et al. 2022. A `LossScaleOptimizer` is judged by the optimizer
    it wraps; an optimizer kbatch does not know gets `"sqrt"`, the more
    cautious rule when scaling up.

    Example:

    >>> default_rule(keras.optimizers.SGD(0.1, momentum=0.9))
    'linear'
    >>> default_rule(keras.optimizers.Adam())
    'sqrt'
    """

    if isinstance(optimizer, str):
        optimizer = keras.optimizers.get(optimizer)
    base = _optimizer.base_optimizer(optimizer)
    if not isinstance(base, keras.optimizers.Optimizer):
        raise TypeError(
            "Argument `optimizer` must be a Keras optimizer or its name. "
            f"Received: optimizer={optimizer!r}"
        )
    if isinstance(base, keras.optimizers.SGD):
        return "linear"
    return "sqrt"

"""Snapshot and exact restore of everything a measurement may touch.

`get_weights()` misses the optimizer (iteration count, moments, loss scale) and
RNG seed states; restoring only weights changes the training that follows. A
`TrainingState` copies every model variable (weights, non-trainable statistics,
seed generator states), every optimizer variable (including a
`LossScaleOptimizer`'s scale and counter), the compiled metrics' state, the
learning-rate object and the global dtype policy, and puts them back bit for
bit. (A train function traced meanwhile is kept: it computes the same thing,
and keeping it spares the next `fit` a retrace.)
"""

from __future__ import annotations

import keras
import numpy as np

from kbatch._internal import optimizer as _optimizer

_MISSING = object()


def _values(variables):
    return [np.array(v.numpy(), copy=True) for v in variables]


def _assign(variables, values):
    for variable, value in zip(variables, values):
        variable.assign(value)


class TrainingState:
    """A copy of a compiled model's training state, restorable in place."""

    def __init__(self, model):
        self.model = model
        optimizer = model.optimizer
        self._model_vars = list(model.variables)
        self._model_values = _values(self._model_vars)
        self._optimizer = optimizer
        self._opt_vars = list(optimizer.variables) if optimizer is not None else []
        self._opt_values = _values(self._opt_vars)
        self._metric_vars = list(getattr(model, "metrics_variables", []))
        self._metric_values = _values(self._metric_vars)
        self._lr_object = (
            None if optimizer is None else _optimizer.learning_rate_object(optimizer)
        )
        self._stop_training = getattr(model, "stop_training", False)
        self._history = getattr(model, "history", _MISSING)
        self._dtype_policy = keras.config.dtype_policy()

    @classmethod
    def capture(cls, model) -> TrainingState:
        return cls(model)

    @property
    def nbytes(self) -> int:
        """Host memory held by the copy."""
        arrays = self._model_values + self._opt_values + self._metric_values
        return int(sum(a.nbytes for a in arrays))

    def restore(self, include_history: bool = True):
        """Put every captured value back. Variables created since are left alone.

        Args:
            include_history: Also put back `model.history`. A callback that
                restores from inside `fit` passes `False`, since `fit` returns
                `model.history` after the callbacks have ended.
        """
        model = self.model
        if model.optimizer is not self._optimizer:
            model.optimizer = self._optimizer
        if self._optimizer is not None:
            base = _optimizer.base_optimizer(self._optimizer)
            current = _optimizer.learning_rate_object(self._optimizer)
            if current is not self._lr_object and not _optimizer.is_variable(
                self._lr_object
            ):
                base.learning_rate = self._lr_object
        _assign(self._model_vars, self._model_values)
        _assign(self._opt_vars, self._opt_values)
        _assign(self._metric_vars, self._metric_values)
        model.stop_training = self._stop_training
        if include_history and self._history is not _MISSING:
            model.history = self._history
        if keras.config.dtype_policy().name != self._dtype_policy.name:
            keras.config.set_dtype_policy(self._dtype_policy)


def forget_restored_epoch(model):
    """Undo the epoch a `BackupAndRestore` set on `model` for its next `fit`.

    When it finds a checkpoint, Keras' `BackupAndRestore` stores the epoch to
    resume from on the model (`_initial_epoch`), and no `fit` clears it: every
    later `fit` of that model would start from that epoch. kbatch runs one
    `fit` per epoch with the callback, so it clears it when it is done.
    """
    if getattr(model, "_initial_epoch", None) is not None:
        model._initial_epoch = None

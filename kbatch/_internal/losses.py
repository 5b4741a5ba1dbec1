"""The model's own loss, called the way Keras' trainers call it."""

from __future__ import annotations

import inspect

__all__ = ["compute_loss"]


def _accepts_training(method) -> bool:
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == "training" or p.kind is inspect.Parameter.VAR_KEYWORD
               for p in parameters)


def compute_loss(model, x, y, y_pred, sample_weight=None, training=True):
    """`model.compute_loss(...)`, passing `training` only when the method takes
    it: an override written for Keras < 3.4 (no `training` argument) is what
    `fit` accepts too, so kbatch must accept it."""
    kwargs = {"x": x, "y": y, "y_pred": y_pred, "sample_weight": sample_weight}
    if _accepts_training(model.compute_loss):
        kwargs["training"] = training
    return model.compute_loss(**kwargs)

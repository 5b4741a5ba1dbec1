"""Checks of the model handed to a kbatch front end (compiled, one optimizer,
trainable), with errors in the style of Keras' own."""

from __future__ import annotations

import keras

from kbatch._internal import optimizer as _optimizer

__all__ = ["check_compiled_model", "check_trainable"]


def check_compiled_model(model, caller: str):
    """Check that `model` is a compiled `keras.Model` with an optimizer."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`{caller}` needs a `keras.Model`. "
            f"Received: model={model!r} (of type {type(model).__name__})"
        )
    compiled = getattr(model, "compiled", False)
    if not compiled or getattr(model, "optimizer", None) is None:
        raise ValueError(
            f"`{caller}` needs a compiled model with an optimizer; the model "
            f"{model.name!r} is not compiled. Call "
            "`model.compile(optimizer=..., loss=...)` first."
        )

    optimizer = model.optimizer
    if _optimizer.learning_rate_object(optimizer) is None:
        raise ValueError(
            f"`{caller}` needs an optimizer with a learning rate. Received: "
            f"optimizer={type(optimizer).__name__} (no `learning_rate`)."
        )
    own = {id(optimizer), id(_optimizer.base_optimizer(optimizer))}
    others = [name for name, value in vars(model).items()
              if isinstance(value, keras.optimizers.Optimizer)
              and id(value) not in own]
    if others:
        raise ValueError(
            f"`{caller}` controls the learning rate of `model.optimizer`, but the "
            f"model {model.name!r} holds other optimizers too ({', '.join(others)}): "
            "their learning rates would not be swept or restored. Run it on a "
            "model with one optimizer."
        )
    return model


def check_trainable(model):
    """Check that a built model has weights a learning rate can move."""
    if not model.trainable_weights:
        raise ValueError(
            f"The model {model.name!r} has no trainable weights, so a learning "
            "rate has no effect. Unfreeze some layers (`layer.trainable = True`) "
            "before the range test."
        )

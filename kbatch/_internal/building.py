"""Create a model's and its optimizer's variables before a front end reads or
snapshots them, as `fit` would, and refuse samples of the wrong shape first."""

from __future__ import annotations

import keras

__all__ = ["check_input_shape", "ensure_built"]


def check_input_shape(model, x):
    """Refuse samples whose shape the model cannot take, before any training
    (otherwise the error surfaces deep inside a compiled step)."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return
    leaves = keras.tree.flatten(x)
    if not inputs or len(inputs) != 1 or len(leaves) != 1:
        return  # several inputs: Keras matches them by name
    expected = tuple(inputs[0].shape[1:])
    shape = tuple(None if d is None else int(d) for d in leaves[0].shape)
    got = shape[1:]
    if len(expected) != len(got) or any(
        e is not None and g is not None and e != g for e, g in zip(expected, got)
    ):
        raise ValueError(
            f"Argument `x` has samples of shape {got}, but model {model.name!r} "
            f"expects {expected}. Received: x with batch shape {shape}."
        )


def ensure_built(model, first_batch):
    """Create the model's and the optimizer's variables, as `fit` would."""
    x, _, _ = keras.utils.unpack_x_y_sample_weight(first_batch)
    if model.built:
        check_input_shape(model, x)
    else:
        model(x)
    optimizer = model.optimizer
    if not optimizer.built:
        optimizer.build(model.trainable_variables)

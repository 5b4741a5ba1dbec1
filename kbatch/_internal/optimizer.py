"""Small helpers around Keras 3 optimizers.

The only place in kbatch that touches an optimizer's private learning-rate slot
(``_learning_rate``), its step counter (``_iterations``) and its variable list:
Keras has no public accessor for the schedule object an optimizer was built
with (its public ``learning_rate`` property returns the schedule's *value*), no
public way back from a schedule to a settable rate, and under gradient
accumulation its public ``iterations`` is not the step schedules see. Keeping
that access here means one place to adapt when Keras changes.
"""

from __future__ import annotations

import keras
import numpy as np

_LossScaleOptimizer = keras.optimizers.LossScaleOptimizer
_Schedule = keras.optimizers.schedules.LearningRateSchedule


def deserialize_schedule(value, name: str):
    """`value` as a Keras `LearningRateSchedule`: kept if it is one (or
    `None`), rebuilt if it is its serialized dict; otherwise a `TypeError`
    naming argument `name`."""
    if value is None or isinstance(value, _Schedule):
        return value
    if isinstance(value, dict):
        return keras.optimizers.schedules.deserialize(value)
    raise TypeError(
        f"Argument `{name}` must be a `keras.optimizers.schedules."
        f"LearningRateSchedule` or None. Received: {name}={value!r}"
    )


def base_optimizer(optimizer):
    """The optimizer that owns the learning rate (unwraps `LossScaleOptimizer`)."""
    if isinstance(optimizer, _LossScaleOptimizer):
        return optimizer.inner_optimizer
    return optimizer


def loss_scale_variable(optimizer):
    """The dynamic loss scale variable of a built `LossScaleOptimizer`, else None."""
    if isinstance(optimizer, _LossScaleOptimizer) and optimizer.built:
        return optimizer.dynamic_scale
    return None


def learning_rate_object(optimizer):
    """What the optimizer's learning rate is: a `keras.Variable`, a schedule or
    a callable."""
    base = base_optimizer(optimizer)
    return getattr(base, "_learning_rate", None)


def is_variable(value) -> bool:
    """Whether `value` is a Keras variable (not a schedule or a callable).

    Before Keras 3.5, `keras.Variable` is not a base class of the backends'
    variables, so `isinstance(v, keras.Variable)` is False for an optimizer's
    own learning-rate variable there; an `assign` method is what they share.
    """
    return isinstance(value, keras.Variable) or (
        hasattr(value, "assign") and not isinstance(value, _Schedule))


def has_settable_learning_rate(optimizer) -> bool:
    """True when `optimizer.learning_rate = value` assigns a variable."""
    return is_variable(learning_rate_object(optimizer))


def gradient_accumulation_steps(optimizer) -> int:
    """Micro-batches per parameter update (1 when the optimizer does not accumulate)."""
    steps = getattr(base_optimizer(optimizer), "gradient_accumulation_steps", None)
    return int(steps) if steps else 1


def heavy_ball_momentum(optimizer) -> float:
    """Momentum that delays the effect of the learning rate (SGD, RMSprop).

    Adam-style optimizers apply the learning rate when the update is made and
    report 0 here.
    """
    base = base_optimizer(optimizer)
    if not isinstance(base, (keras.optimizers.SGD, keras.optimizers.RMSprop)):
        return 0.0
    momentum = getattr(base, "momentum", 0.0) or 0.0
    try:
        momentum = float(momentum)
    except (TypeError, ValueError):
        return 0.0
    return momentum if 0.0 <= momentum < 1.0 else 0.0


def schedule_step(optimizer) -> int:
    """The step Keras passes to a `LearningRateSchedule` for the next update.

    That is the optimizer's own counter: under gradient accumulation it counts
    micro-batches, while the public `iterations` counts updates.
    """
    base = base_optimizer(optimizer)
    counter = getattr(base, "_iterations", None)
    if counter is None:
        return int(keras.ops.convert_to_numpy(base.iterations))
    return int(counter.numpy())


def settable_learning_rate(optimizer, value: float):
    """Give the optimizer a plain learning-rate variable holding `value`; return
    it.

    An optimizer built with a float already has one, and only its value
    changes. One that holds a schedule or a callable (Keras' public setter
    refuses a float then) gets a new variable, tracked where an optimizer built
    with a float keeps it (right after the step counter), so the optimizer's
    variables save, load and, on JAX, reach the compiled step as usual. Putting
    a schedule back with the public setter (`optimizer.learning_rate =
    schedule`) untracks the variable again. Re-create the train function after
    the swap (`model.make_train_function(force=True)`).
    """
    base = base_optimizer(optimizer)
    current = learning_rate_object(base)
    if is_variable(current):
        current.assign(float(value))
        return current
    with keras.name_scope(base.name):
        variable = keras.Variable(
            float(value),
            dtype=keras.config.floatx(),
            trainable=False,
            name="learning_rate",
            aggregation="only_first_replica",
        )
    base._learning_rate = variable  # Keras' attribute tracking appends it
    tracked = base._variables  # the tracker's own list
    if not any(v is variable for v in tracked):
        base._track_variable(variable)
    position = next(i for i, v in enumerate(tracked) if v is variable)
    tracked.pop(position)
    counter = [i for i, v in enumerate(tracked) if v is base._iterations]
    tracked.insert(counter[0] + 1 if counter else 0, variable)
    return variable


def current_learning_rate(optimizer) -> float:
    """The learning rate the optimizer would use for its next update, as a float."""
    return float(keras.ops.convert_to_numpy(base_optimizer(optimizer).learning_rate))


class _HeldLearningRate(_Schedule):
    """A schedule that returns the value of a variable kbatch controls.

    Swapped in, temporarily, for an optimizer built with a schedule, so that a
    range test can set the learning rate step by step.
    """

    def __init__(self, variable):
        self.variable = variable

    def __call__(self, step):
        del step
        return self.variable.value

    def get_config(self):
        return {"value": float(keras.ops.convert_to_numpy(self.variable))}


class LearningRateControl:
    """Set a compiled model's learning rate step by step, and undo it.

    For an optimizer with a variable learning rate the variable is assigned
    (nothing else changes). For an optimizer built with a `LearningRateSchedule`
    or a callable, a schedule holding a kbatch variable is swapped in and the
    train function is re-traced; `release()` puts the original schedule and the
    original train function back.

    The optimizer is always reached through `model.optimizer` (a cached
    reference is silently ignored on some backends).
    """

    def __init__(self, model):
        self.model = model
        self._original = None
        self._original_value = None
        self._train_function = None
        self._variable = None
        self._swapped = False
        self._active = False

    def acquire(self, initial_lr: float, retrace: bool = True):
        optimizer = self.model.optimizer
        self._original = learning_rate_object(optimizer)
        if is_variable(self._original):
            self._original_value = self._original.numpy()
        else:
            self._variable = keras.Variable(
                float(initial_lr),
                dtype="float32",
                trainable=False,
                name="kbatch_range_test_learning_rate",
            )
            self._train_function = getattr(self.model, "train_function", None)
            base_optimizer(optimizer).learning_rate = _HeldLearningRate(self._variable)
            self._swapped = True
            if retrace:
                self.model.make_train_function(force=True)
            else:
                self.model.train_function = None
        self._active = True
        self.set(initial_lr)

    def encode(self, values):
        """Learning rates as tensors of the controlled variable's dtype.

        Assigning a ready tensor costs about half as much as assigning a Python
        float, which matters for tiny models where a step takes ~1 ms.
        """
        if self._swapped:
            dtype = self._variable.dtype
        else:
            dtype = learning_rate_object(self.model.optimizer).dtype
        return [keras.ops.convert_to_tensor(float(v), dtype=dtype) for v in values]

    def set(self, lr):
        """Set the learning rate: a float, or a tensor from `encode`."""
        if self._swapped:
            self._variable.assign(lr)
        else:
            base_optimizer(self.model.optimizer).learning_rate = lr

    def release(self):
        """Put the learning rate back as it was. Safe to call more than once."""
        if not self._active:
            return
        self._active = False
        base = base_optimizer(self.model.optimizer)
        if self._swapped:
            base.learning_rate = self._original
            self.model.train_function = self._train_function
            self._swapped = False
        else:
            self._original.assign(self._original_value)
        self._original = self._original_value = None
        self._train_function = self._variable = None


def set_gradient_accumulation(optimizer, steps: int):
    """Make `optimizer` average `steps` micro-batches per update (1: none).

    Keras builds the accumulators only for an optimizer created (or built)
    with `gradient_accumulation_steps`; an unbuilt optimizer is given the
    setting, a built one gets them here when first needed (and
    then stay, zero, when accumulation is switched off, so the optimizer's
    variables keep one layout for checkpoints). The private step counter,
    which counts micro-batches under accumulation, is re-based so that the
    public `iterations` (updates) and the position in the accumulation window
    both carry over: an update never mixes micro-batches from before and
    after the switch. Re-create the train function afterwards
    (`model.make_train_function(force=True)`).
    """
    base = base_optimizer(optimizer)
    steps = int(steps)
    if steps < 1:
        raise ValueError(f"Gradient accumulation steps must be >= 1; got {steps}.")
    old = gradient_accumulation_steps(base)
    if steps == old:
        return
    if not base.built:  # Keras builds the accumulators with the optimizer
        base.gradient_accumulation_steps = steps if steps > 1 else None
        return
    if steps > 1 and getattr(base, "_accumulated_gradients", None) is None:
        base._accumulated_gradients = [
            base.add_variable_from_reference(v, name="gradient_accumulator")
            for v in base._trainable_variables
        ]
    for accumulator in getattr(base, "_accumulated_gradients", None) or []:
        if accumulator is not None:
            accumulator.assign(keras.ops.zeros(accumulator.shape, accumulator.dtype))
    updates = int(keras.ops.convert_to_numpy(base._iterations)) // old
    base.gradient_accumulation_steps = steps if steps > 1 else None
    base._iterations.assign(updates * steps)


def add_variables(optimizer, shapes, name: str):
    """New float32 zero variables for kbatch's own sums, updated inside the
    optimizer's `apply`. On JAX they are tracked as the optimizer's (a
    compiled step reads and writes only the state it is given: the model's,
    the optimizer's and the metrics' variables); elsewhere they stay
    untracked, so the optimizer's checkpoints keep their layout.
    `remove_variables` takes tracked ones off again."""
    base = base_optimizer(optimizer)
    if keras.config.backend() == "jax":
        return [base.add_variable(tuple(shape), initializer="zeros",
                                  dtype="float32", name=f"{name}_{i}")
                for i, shape in enumerate(shapes)]
    # every replica of a data-parallel step writes the same (all-reduced)
    # values: the first replica's write is kept
    return [keras.Variable(np.zeros(tuple(shape), "float32"), trainable=False,
                           name=f"{name}_{i}", aggregation="only_first_replica")
            for i, shape in enumerate(shapes)]


def remove_variables(optimizer, variables):
    """Untrack variables made by `add_variables` (checkpoints keep the
    optimizer's own layout). Re-create the train function afterwards."""
    base = base_optimizer(optimizer)
    ids = {id(v) for v in variables}
    tracked = base._variables  # the tracker's own list
    for i in reversed(range(len(tracked))):
        if id(tracked[i]) in ids:
            tracked.pop(i)


def adam_preconditioner(optimizer, variables):
    """`1 / (sqrt(v_hat) + epsilon)` of an Adam-type optimizer (Adam, AdamW)
    for each of `variables`, as float32 arrays: what Adam divides a gradient
    by, from its bias-corrected second moment. `None` for another optimizer,
    or before the first update (when `v` holds nothing yet)."""
    base = base_optimizer(optimizer)
    if not isinstance(base, keras.optimizers.Adam) or not base.built:
        return None
    steps = int(keras.ops.convert_to_numpy(base.iterations))
    if steps < 1:
        return None
    beta_2 = float(keras.ops.convert_to_numpy(base.beta_2))
    correction = 1.0 - beta_2**steps
    epsilon = float(base.epsilon)
    velocities = base._velocities  # Adam's second moments, in its own order
    out = []
    for variable in variables:
        v = keras.ops.convert_to_numpy(velocities[base._get_variable_index(variable)])
        out.append((1.0 / (np.sqrt(v.astype("float64") / correction) + epsilon))
                   .astype("float32"))
    return out

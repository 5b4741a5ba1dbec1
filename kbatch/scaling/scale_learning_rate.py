"""`ScaleLearningRate`: one line for the right LR at the batch size you train with."""

from __future__ import annotations

import math
import warnings

import keras
import numpy as np

from kbatch._internal import backend as _backend
from kbatch._internal import optimizer as _optimizer
from kbatch._internal import report
from kbatch._internal.validate import check_int
from kbatch._internal.validate import check_number
from kbatch._internal.validate import check_verbose
from kbatch.scaling.optimizer_rule import default_rule
from kbatch.scaling.rules import scaling_factor
from kbatch.scaling.schedules import BatchScaledSchedule

__all__ = [
    "ScaleLearningRate",
    "global_batch_size",
]


def global_batch_size(model, batch_size=None, per_replica_batch_size=None):
    """The global batch size of one optimizer update, and how it was counted.

    Under a `tf.distribute` strategy Keras splits the batch given to `fit`
    across replicas, so that batch is already global; a batch counted per
    replica (as in custom training loops) is multiplied by the number of
    replicas. With `gradient_accumulation_steps=a`, one update averages `a`
    batches. Give exactly one of the two batch sizes.

    Returns:
        `(global_batch_size, parts)` where `parts` is a dict with
        `batch_size` (as given to `fit`), `replicas` and `accumulation`.

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> model.compile(keras.optimizers.SGD(0.01, gradient_accumulation_steps=4),
    ...               "mse")
    >>> batch, parts = global_batch_size(model, batch_size=32)
    >>> batch, parts["accumulation"]  # 4 batches of 32 per update
    (128, 4)
    """
    if (batch_size is None) == (per_replica_batch_size is None):
        raise ValueError(
            "Give exactly one of `batch_size` (what you pass to `fit`, which Keras "
            "splits across replicas) and `per_replica_batch_size`. Received: "
            f"batch_size={batch_size!r}, "
            f"per_replica_batch_size={per_replica_batch_size!r}"
        )
    strategy = getattr(model, "distribute_strategy", None)
    replicas = int(getattr(strategy, "num_replicas_in_sync", 1) or 1)
    if batch_size is None:
        per_replica = check_int("per_replica_batch_size", per_replica_batch_size,
                                minimum=1)
        batch_size = per_replica * replicas
    else:
        batch_size = check_int("batch_size", batch_size, minimum=1)
    accumulation = _optimizer.gradient_accumulation_steps(model.optimizer)
    parts = {
        "batch_size": batch_size,
        "replicas": replicas,
        "accumulation": accumulation,
        "strategy": type(strategy).__name__ if strategy is not None else None,
    }
    return batch_size * accumulation, parts


class ScaleLearningRate(keras.callbacks.Callback):
    """Train at the learning rate scaled to the batch size actually used.

    You know a learning rate that works at some batch size (from a paper, an
    earlier run or `kbatch.find_lr`). Add this callback to `fit` and the
    optimizer trains with that rate scaled to the **global** batch size of this
    run: the batch given to `fit` (Keras splits it across the replicas of a
    `tf.distribute` strategy) times the optimizer's
    `gradient_accumulation_steps`. The rate follows a `BatchScaledSchedule`
    (optional linear warm-up from the base rate, then constant or the shape of
    any Keras schedule), which replaces the optimizer's learning rate.

    During `fit` the optimizer holds a plain learning-rate variable (an
    optimizer built with a schedule gets one for the run), and the callback
    sets it before each step to the schedule's value at the optimizer's step:
    the same rates as the schedule driving the optimizer itself, while
    `model.optimizer.learning_rate` reads back the rate of the current step and
    other callbacks can set it. When `fit` ends, the schedule is put on the
    optimizer and stays with the model when it is saved (a checkpoint saved
    during `fit` holds that moment's rate as a float; a `fit` stopped by an
    exception leaves that plain rate). Each `fit` starts again from the scaled
    schedule. With `steps_per_execution=k`, Keras calls batch callbacks once
    per `k` steps: during a warm-up or an `after` schedule the rate then
    changes once per execution, to the schedule's value at the middle of its
    `k` steps.

    With Keras' `ReduceLROnPlateau`, `LearningRateScheduler` or any callback
    that sets `model.optimizer.learning_rate`, in either order in the callbacks
    list: a rate another callback sets is taken as a change of the current
    rate, and kept as a factor on the schedule (the attribute `factor`, the
    rate set divided by the scheduled rate of that moment). From then on each
    step trains at `factor * schedule(step)`. So:

    - `ReduceLROnPlateau(factor=0.5)` halves the scaled, warmed-up rate (a
      warm-up still running goes on at half height). Its `min_lr` bounds the
      rate when it lowers it, not the changes of a warm-up or `after` later.
    - A `LearningRateScheduler` whose function takes `(epoch, lr)` receives the
      current, scaled rate; what it does to it (`lr * 0.9`) multiplies the
      schedule the same way.
    - A `LearningRateScheduler` whose function returns rates without reading
      `lr` (`lambda epoch: 0.1`) wins: the next step trains at that rate,
      not scaled to the batch size (a warm-up still running scales it on until
      it ends). Make it relative to `lr`, or give the shape as `after=`, to
      have it scaled.

    The schedule put on the optimizer when `fit` ends includes the factor (its
    base rate times `factor`; `schedule` is then that schedule), so the model
    saves and keeps the rate the run ended with.

    At the start of training the callback prints which rate it chose and why;
    after the first step it checks the batch size against the number of
    samples Keras actually averaged, and warns when they differ. The rate of
    the last step of each epoch is added to the logs as `learning_rate`
    (History, TensorBoard), unless another callback logged it already.

    Args:
        base_learning_rate: Float. The learning rate that works at
            `base_batch_size`.
        base_batch_size: Integer. The global batch size it was found at.
        batch_size: Integer. The batch size given to `fit` (or the batch of a
            batched dataset). Give this or `per_replica_batch_size`.
        per_replica_batch_size: Integer. The batch size per replica.
        rule: `"auto"` (`kbatch.default_rule`: linear for SGD, square root for
            adaptive optimizers), any rule of `kbatch.scale_lr`, or a measured
            relation: the `LRByBatchSize` of `kbatch.lr_for_batch_sizes` (see
            `from_measured`). Defaults to `"auto"`.
        noise_scale: Float. Gradient noise scale, for `rule="noise_aware"`.
        warmup_steps: Integer. Steps of linear warm-up (batches seen by `fit`).
            Defaults to `0`.
        warmup_epochs: Float. Warm-up length in epochs instead (converted with
            the number of steps per epoch of the `fit` call).
        after: Optional Keras `LearningRateSchedule` to follow after warm-up.
        verbose: `0` (silent) or `1` (print the choice). Defaults to `1`.

    Example:

    >>> import keras, numpy as np
    >>> x, y = np.random.rand(256, 4), np.random.rand(256, 1)
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> model.compile(keras.optimizers.SGD(0.01), "mse")
    >>> scale = ScaleLearningRate(0.01, base_batch_size=32, batch_size=128,
    ...                           verbose=0)
    >>> _ = model.fit(x, y, batch_size=128, callbacks=[scale], verbose=0)
    >>> round(scale.schedule.learning_rate, 6)  # linear rule for SGD: 0.01 * 4
    0.04

    With `ReduceLROnPlateau` (here, no epoch after the first counts as better):

    >>> plateau = keras.callbacks.ReduceLROnPlateau("loss", factor=0.5,
    ...                                             patience=1, min_delta=10.0)
    >>> scale = ScaleLearningRate(0.01, base_batch_size=32, batch_size=128,
    ...                           verbose=0)
    >>> _ = model.fit(x, y, batch_size=128, epochs=2, verbose=0,
    ...               callbacks=[plateau, scale])
    >>> scale.factor, round(float(model.optimizer.learning_rate), 6)
    (0.5, 0.02)
    """

    def __init__(
        self,
        base_learning_rate: float,
        base_batch_size: int,
        batch_size: int | None = None,
        *,
        per_replica_batch_size: int | None = None,
        rule="auto",
        noise_scale: float | None = None,
        warmup_steps: int = 0,
        warmup_epochs: float | None = None,
        after=None,
        verbose: int = 1,
    ):
        super().__init__()
        self.base_learning_rate = check_number(
            "base_learning_rate", base_learning_rate, positive=True
        )
        self.base_batch_size = check_int("base_batch_size", base_batch_size,
                                         minimum=1)
        if (batch_size is None) == (per_replica_batch_size is None):
            raise ValueError(
                "Give exactly one of `batch_size` and `per_replica_batch_size`. "
                f"Received: batch_size={batch_size!r}, "
                f"per_replica_batch_size={per_replica_batch_size!r}"
            )
        self.batch_size = check_int("batch_size", batch_size, minimum=1,
                                    allow_none=True)
        self.per_replica_batch_size = check_int(
            "per_replica_batch_size", per_replica_batch_size, minimum=1,
            allow_none=True,
        )
        if isinstance(rule, dict):  # a measured relation, as get_config gives it
            from kbatch.lr.batch_sizes import LRByBatchSize

            rule = LRByBatchSize.from_dict(rule)
        if _is_measured(rule):
            if not rule.batch_sizes:
                raise ValueError("The measured relation `rule` holds no batch size.")
        elif rule != "auto":
            scaling_factor(1, 1, rule, noise_scale)  # validates
        self.rule = rule
        self.noise_scale = noise_scale
        self.warmup_steps = check_int("warmup_steps", warmup_steps, minimum=0)
        if warmup_epochs is not None:
            warmup_epochs = check_number("warmup_epochs", warmup_epochs, low=0.0)
            if warmup_steps:
                raise ValueError(
                    "Give `warmup_steps` or `warmup_epochs`, not both. Received: "
                    f"warmup_steps={warmup_steps}, warmup_epochs={warmup_epochs}"
                )
        self.warmup_epochs = warmup_epochs
        self.after = _optimizer.deserialize_schedule(after, "after")
        self.verbose = check_verbose(verbose)
        self.schedule = None
        self.explanation = None
        self._expected_samples = None
        self._steps_per_execution = 1
        self._reset_rate()

    def on_train_begin(self, logs=None):
        model = self.model
        if getattr(model, "optimizer", None) is None:
            raise ValueError(
                "`ScaleLearningRate` needs a compiled model. Call "
                "`model.compile(optimizer=..., loss=...)` first."
            )
        global_batch, parts = global_batch_size(
            model, self.batch_size, self.per_replica_batch_size
        )
        rule = self.rule
        why_rule = ""
        multiplier = 1.0
        shown = "measured" if _is_measured(rule) else None
        if _is_measured(rule):
            measured = rule
            multiplier = measured.predict(global_batch) / self.base_learning_rate
            rule = "none"
            why_rule = f" ({measured.verdict()})"
        elif rule == "auto":
            rule = default_rule(model.optimizer)
            name = type(_optimizer.base_optimizer(model.optimizer)).__name__
            why_rule = f" (the usual rule for {name})"
        warmup = self.warmup_steps
        if self.warmup_epochs is not None:
            steps = (self.params or {}).get("steps")
            if not steps:
                raise ValueError(
                    "`warmup_epochs` needs the number of steps per epoch, which "
                    "this `fit` call does not know (an infinite dataset without "
                    "`steps_per_epoch`?). Use `warmup_steps` instead."
                )
            warmup = round(self.warmup_epochs * steps)
        self.schedule = BatchScaledSchedule(
            self.base_learning_rate,
            self.base_batch_size,
            global_batch,
            rule=rule,
            noise_scale=self.noise_scale,
            warmup_steps=warmup,
            after=self.after,
            multiplier=multiplier,
        )
        self._reset_rate()
        self._steps_per_execution = int(
            getattr(model, "steps_per_execution", 1) or 1)
        with _backend.model_scope(model):
            variable = _optimizer.settable_learning_rate(
                model.optimizer, self.schedule.base_learning_rate)
        model.make_train_function(force=True)
        self._follow(variable, model.optimizer)
        self._expected_samples = parts["batch_size"]
        self.explanation = _explain(self.schedule, parts, global_batch,
                                    shown or rule, why_rule)
        if self.verbose:
            report.message(self.explanation)

    @classmethod
    def from_measured(cls, measured, batch_size=None, **kwargs):
        """Train at the LR `kbatch.lr_for_batch_sizes` measured for this
        run's global batch size (interpolated between measured sizes).

        The warm-up, if any, starts from the LR measured at the smallest size.

        Example:

        >>> from kbatch.lr import LRByBatchSize
        >>> measured = LRByBatchSize([32, 128], [0.01, 0.04], epochs=5)
        >>> scale = ScaleLearningRate.from_measured(measured, batch_size=64,
        ...                                         verbose=0)
        >>> scale.base_learning_rate, scale.base_batch_size
        (0.01, 32)
        """
        if not _is_measured(measured):
            raise TypeError(
                "Argument `measured` must be the result of "
                "`kbatch.lr_for_batch_sizes`. Received: "
                f"{type(measured).__name__}")
        base = measured.batch_sizes[0]
        return cls(measured.learning_rates[0], base, batch_size, rule=measured,
                   **kwargs)

    def on_train_batch_begin(self, batch, logs=None):
        if self._constant:
            return
        optimizer = self.model.optimizer  # on JAX, puts the variables back
        self._follow(self._variable_of(optimizer), optimizer)

    def on_train_batch_end(self, batch, logs=None):
        if self._expected_samples is None:
            return
        expected, self._expected_samples = self._expected_samples, None
        for metric in getattr(self.model, "metrics", []):
            if metric.name == "loss" and hasattr(metric, "count"):
                seen = float(metric.count.numpy())
                steps = getattr(self.model, "steps_per_execution", 1) or 1
                if seen > 0 and abs(seen / steps - expected) > 0.5:
                    warnings.warn(
                        f"ScaleLearningRate was told the batch size is {expected}, "
                        f"but the first step averaged {seen / steps:g} samples. "
                        "The learning rate was scaled for the wrong batch size: "
                        "pass the batch size your data really has.",
                        UserWarning,
                        stacklevel=2,
                    )
                return

    def on_epoch_end(self, epoch, logs=None):
        # `setdefault`: a ReduceLROnPlateau earlier in the list logged the rate
        # of this epoch before lowering it; keep that, whatever the order.
        if logs is not None:
            logs.setdefault("learning_rate", _optimizer.current_learning_rate(
                self.model.optimizer))

    def on_train_end(self, logs=None):
        if self.schedule is None or self._applied_value is None:
            return
        model = self.model
        variable = _optimizer.learning_rate_object(model.optimizer)
        if not _optimizer.is_variable(variable):
            return  # something else took the learning rate over: leave it
        self._absorb(variable)
        if not (math.isfinite(self.factor) and self.factor > 0):
            return  # a rate of 0 stays a plain rate
        if self.factor != 1.0:
            self.schedule = _scaled(self.schedule, self.factor)
        _optimizer.base_optimizer(model.optimizer).learning_rate = self.schedule
        model.make_train_function(force=True)

    # ------------------------------------------------ the rate, step by step
    def _reset_rate(self):
        self.factor = 1.0
        self._applied_value = None
        self._applied_scheduled = None
        self._constant = False
        self._values = None

    def _variable_of(self, optimizer):
        variable = _optimizer.learning_rate_object(optimizer)
        if not _optimizer.is_variable(variable):
            raise ValueError(
                "ScaleLearningRate sets the optimizer's learning rate before each "
                "step, but something replaced it with "
                f"{type(variable).__name__} during `fit`. Pass the schedule as "
                "`ScaleLearningRate(..., after=schedule)` instead."
            )
        return variable

    def _absorb(self, variable):
        """Turn a rate another callback set since our last write into a factor."""
        current = float(variable.numpy())
        if current == self._applied_value:
            return
        if self._applied_value > 0:  # relative to what was read: exact halving
            self.factor *= current / self._applied_value
        elif self._applied_scheduled > 0:
            self.factor = current / self._applied_scheduled

    def _follow(self, variable, optimizer):
        """Set the rate of the next step (or execution): factor x schedule."""
        if self._values is None:
            self._values = _ScheduleValues(self.schedule)
        if self._applied_value is not None:
            self._absorb(variable)
        step = _optimizer.schedule_step(optimizer)
        scheduled = self._values(step + (self._steps_per_execution - 1) / 2)
        value = np.asarray(self.factor * scheduled, dtype=variable.dtype)
        if float(value) != self._applied_value:
            variable.assign(value)
        self._applied_value = float(value)
        self._applied_scheduled = scheduled
        self._constant = (self.schedule.after is None
                          and step >= self.schedule.warmup_steps)

    def get_config(self):
        return {
            "base_learning_rate": self.base_learning_rate,
            "base_batch_size": self.base_batch_size,
            "batch_size": self.batch_size,
            "per_replica_batch_size": self.per_replica_batch_size,
            "rule": self.rule.to_dict() if _is_measured(self.rule) else self.rule,
            "noise_scale": self.noise_scale,
            "warmup_steps": self.warmup_steps,
            "warmup_epochs": self.warmup_epochs,
            "after": None if self.after is None
            else keras.optimizers.schedules.serialize(self.after),
            "verbose": self.verbose,
        }


class _ScheduleValues:
    """A `BatchScaledSchedule`'s value at a step, as a float, cheaply.

    A warm-up alone is computed in Python. With an `after` schedule the values
    of the next `block` steps are computed in one call, when the schedule
    takes a vector of steps (checked against single calls at both ends).
    """

    def __init__(self, schedule, block=1024):
        self.schedule = schedule
        self.block = block
        self._first = None
        self._values = None
        self._vectorizes = schedule.after is not None

    def _single(self, step):
        return float(keras.ops.convert_to_numpy(self.schedule(step)))

    def __call__(self, step):
        schedule = self.schedule
        if schedule.after is None:
            start, target = schedule.base_learning_rate, schedule.learning_rate
            if step < schedule.warmup_steps:
                return start + (target - start) * step / schedule.warmup_steps
            return target
        if not self._vectorizes:
            return self._single(step)
        if self._values is not None:
            offset = step - self._first
            if offset == int(offset) and 0 <= offset < len(self._values):
                return float(self._values[int(offset)])
        steps = step + np.arange(self.block, dtype="float32")
        try:
            values = keras.ops.convert_to_numpy(schedule(steps)).astype(float)
            fits = (values.shape == steps.shape and np.allclose(
                values[[0, -1]], [self._single(step), self._single(steps[-1])],
                rtol=1e-6, atol=0.0))
        except Exception:  # a schedule written for one step at a time
            fits = False
        if not fits:
            self._vectorizes = False
            return self._single(step)
        self._first, self._values = step, values
        return float(values[0])


def _scaled(schedule, factor):
    """`schedule` times `factor`, as the same kind of schedule (every rule is
    proportional to the base rate, so scaling it and the cap scales it all)."""
    config = schedule.get_config()
    config["base_learning_rate"] *= factor
    if config.get("max_learning_rate") is not None:
        config["max_learning_rate"] *= factor
    return type(schedule).from_config(config)


def _is_measured(rule) -> bool:
    return hasattr(rule, "predict") and hasattr(rule, "batch_sizes")


def _explain(schedule, parts, global_batch, rule, why_rule):
    counted = f"{parts['batch_size']}"
    if parts["replicas"] > 1:
        counted += (f" (split over {parts['replicas']} replicas of "
                    f"{parts['strategy']})")
    if parts["accumulation"] > 1:
        counted += f" x {parts['accumulation']} accumulated micro-batches"
    text = (
        f"ScaleLearningRate: global batch {global_batch} = {counted}; "
        f"{rule!r} rule{why_rule}: {schedule.base_learning_rate:g} at batch "
        f"{schedule.base_batch_size} -> {schedule.learning_rate:.4g} at batch "
        f"{global_batch}"
    )
    if schedule.warmup_steps:
        text += f", reached after a linear warm-up of {schedule.warmup_steps} steps"
    if schedule.after is not None:
        text += f", then following {type(schedule.after).__name__}"
    return text + "."

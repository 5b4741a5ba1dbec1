"""Learning-rate schedules that know the batch size.

`BatchScaledSchedule` is "the base LR at the base batch size, scaled to this
batch size, with gradual warm-up, then any Keras schedule after". It is a
regular `keras.optimizers.schedules.LearningRateSchedule`: pass it to any
optimizer, save the model, load it back.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from kbatch._internal import optimizer as _optimizer
from kbatch._internal.validate import check_int
from kbatch._internal.validate import check_number
from kbatch.scaling.rules import scale_lr

__all__ = [
    "BatchScaledSchedule",
    "LinearWarmup",
    "OneCycle",
    "PerUpdate",
]

_Schedule = keras.optimizers.schedules.LearningRateSchedule


def _warmup_then(step, start, target, warmup_steps, after, after_start):
    """`start -> target` linearly over `warmup_steps`, then `after`'s shape."""
    step = ops.cast(step, "float32")
    target_t = ops.cast(target, "float32")
    rate = target_t
    if after is not None:
        since = ops.maximum(step - float(warmup_steps), 0.0)
        rate = target_t * ops.cast(after(since), "float32") / after_start
    if warmup_steps:
        start_t = ops.cast(start, "float32")
        fraction = ops.minimum(step / float(warmup_steps), 1.0)
        warm = start_t + (target_t - start_t) * fraction
        rate = ops.where(step < float(warmup_steps), warm, rate)
    return rate


def _after_start(after):
    if after is None:
        return None
    start = float(ops.convert_to_numpy(after(0)))
    if not start > 0:
        raise ValueError(
            "The `after` schedule must start above 0, since the rate follows its "
            f"shape relative to its start. Received a schedule with after(0)={start:g}"
        )
    return start


@keras.saving.register_keras_serializable(package="kbatch")
class LinearWarmup(_Schedule):
    """Linear warm-up from `initial_learning_rate` to `learning_rate`, then
    constant or the shape of another schedule.

    Args:
        initial_learning_rate: Float. Rate at step 0.
        learning_rate: Float. Rate reached at `warmup_steps`.
        warmup_steps: Integer >= 0.
        after: Optional `LearningRateSchedule` whose shape the rate follows
            after the warm-up, rescaled to start at `learning_rate`.
        name: Optional name.

    Example:

    >>> schedule = LinearWarmup(0.01, 0.1, warmup_steps=10)
    >>> [round(float(schedule(s)), 3) for s in (0, 5, 10, 50)]
    [0.01, 0.055, 0.1, 0.1]
    """

    def __init__(self, initial_learning_rate: float, learning_rate: float,
                 warmup_steps: int, after=None, name: str | None = None):
        super().__init__()
        self.initial_learning_rate = check_number(
            "initial_learning_rate", initial_learning_rate, positive=True)
        self.learning_rate = check_number("learning_rate", learning_rate,
                                          positive=True)
        self.warmup_steps = check_int("warmup_steps", warmup_steps, minimum=0)
        self.after = _optimizer.deserialize_schedule(after, "after")
        self._after_start = _after_start(self.after)
        self.name = name or "LinearWarmup"

    def __call__(self, step):
        return _warmup_then(step, self.initial_learning_rate, self.learning_rate,
                            self.warmup_steps, self.after, self._after_start)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "learning_rate": self.learning_rate,
            "warmup_steps": self.warmup_steps,
            "after": None
            if self.after is None
            else keras.optimizers.schedules.serialize(self.after),
            "name": self.name,
        }


@keras.saving.register_keras_serializable(package="kbatch")
class BatchScaledSchedule(_Schedule):
    """Base LR scaled to the batch size, with warm-up, then any schedule.

    The target learning rate is `scale_lr(base_learning_rate, base_batch_size,
    batch_size, rule)`. During the first `warmup_steps` steps the rate ramps
    linearly, step by step, from `base_learning_rate` to the target: the
    "gradual warm-up" of Goyal et al. (2017), which lets large batches use the
    linearly scaled rate without the early instability. After the warm-up, the
    rate is the target, or follows the shape of the `after` schedule rescaled to
    start at the target: `target * after(t) / after(0)` with `t` counted from
    the end of the warm-up. So `after` can be any Keras schedule (cosine,
    piecewise, ...), written as you would write it for one batch size.

    Steps are the optimizer's steps (`optimizer.iterations`, which with
    gradient accumulation counts micro-batches, as every Keras schedule does).

    Reference: P. Goyal et al., "Accurate, Large Minibatch SGD: Training
    ImageNet in 1 Hour", 2017, https://arxiv.org/abs/1706.02677.

    Args:
        base_learning_rate: Float. The learning rate that works at
            `base_batch_size`.
        base_batch_size: Integer. The (global) batch size it was tuned at.
        batch_size: Integer. The (global) batch size trained with.
        rule: Scaling rule, see `kbatch.scale_lr`: `"linear"`, `"sqrt"`,
            `"none"`, `"noise_aware"` or an exponent. Defaults to `"linear"`.
        noise_scale: Float. Gradient noise scale, for `"noise_aware"`.
        warmup_steps: Integer >= 0. Length of the linear warm-up. Defaults to
            `0` (no warm-up).
        after: Optional `LearningRateSchedule` whose shape the rate follows
            after the warm-up. Defaults to `None` (constant).
        max_learning_rate: Optional float. The scaled rate is capped here
            (e.g. the edge of stability a range test measured at this batch
            size) before `multiplier` applies. Defaults to `None` (no cap).
        multiplier: Float > 0. Factor on the (capped) scaled rate, e.g. the
            `lr_multiplier` a tuner searches around it. Defaults to `1.0`.
        name: Optional name.

    Example:

    >>> schedule = BatchScaledSchedule(0.1, 256, 1024, warmup_steps=100)
    >>> [round(float(schedule(s)), 4) for s in (0, 50, 100, 1000)]
    [0.1, 0.25, 0.4, 0.4]
    >>> cosine = keras.optimizers.schedules.CosineDecay(1.0, decay_steps=1000)
    >>> schedule = BatchScaledSchedule(0.1, 256, 1024, warmup_steps=100,
    ...                                after=cosine)
    >>> [round(float(schedule(s)), 4) for s in (100, 600, 1100)]
    [0.4, 0.2, 0.0]
    >>> capped = BatchScaledSchedule(0.1, 256, 1024, max_learning_rate=0.3,
    ...                              multiplier=0.5)
    >>> round(capped.learning_rate, 4)
    0.15
    """

    def __init__(
        self,
        base_learning_rate: float,
        base_batch_size: int,
        batch_size: int,
        rule="linear",
        noise_scale: float | None = None,
        warmup_steps: int = 0,
        after=None,
        name: str | None = None,
        *,
        max_learning_rate: float | None = None,
        multiplier: float = 1.0,
    ):
        super().__init__()
        self.base_learning_rate = check_number(
            "base_learning_rate", base_learning_rate, positive=True
        )
        self.base_batch_size = check_int("base_batch_size", base_batch_size, minimum=1)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.rule = rule
        self.noise_scale = noise_scale
        self.max_learning_rate = (
            None if max_learning_rate is None
            else check_number("max_learning_rate", max_learning_rate, positive=True))
        self.multiplier = check_number("multiplier", multiplier, positive=True)
        scaled = scale_lr(
            self.base_learning_rate, self.base_batch_size, self.batch_size, rule,
            noise_scale,
        )
        if self.max_learning_rate is not None:
            scaled = min(scaled, self.max_learning_rate)
        self.learning_rate = scaled * self.multiplier
        self.warmup_steps = check_int("warmup_steps", warmup_steps, minimum=0)
        self.after = _optimizer.deserialize_schedule(after, "after")
        self._after_start = _after_start(self.after)
        self.name = name or "BatchScaledSchedule"

    def __call__(self, step):
        return _warmup_then(step, self.base_learning_rate, self.learning_rate,
                            self.warmup_steps, self.after, self._after_start)

    def get_config(self):
        return {
            "base_learning_rate": self.base_learning_rate,
            "base_batch_size": self.base_batch_size,
            "batch_size": self.batch_size,
            "rule": self.rule,
            "noise_scale": self.noise_scale,
            "warmup_steps": self.warmup_steps,
            "after": None
            if self.after is None
            else keras.optimizers.schedules.serialize(self.after),
            "name": self.name,
            "max_learning_rate": self.max_learning_rate,
            "multiplier": self.multiplier,
        }

    def __repr__(self):
        text = (
            f"BatchScaledSchedule({self.base_learning_rate:g} at batch "
            f"{self.base_batch_size} -> {self.learning_rate:.4g} at batch "
            f"{self.batch_size}, rule={self.rule!r}"
        )
        if self.warmup_steps:
            text += f", warm-up {self.warmup_steps} steps"
        if self.after is not None:
            text += f", then {type(self.after).__name__}"
        return text + ")"


@keras.saving.register_keras_serializable(package="kbatch")
class OneCycle(_Schedule):
    """The one-cycle policy (Smith & Topin 2018): up, then far down.

    The rate rises from `max_learning_rate / div_factor` to
    `max_learning_rate` over the first `warmup_fraction` of `total_steps`,
    then falls to `max_learning_rate / (div_factor * final_div_factor)` at
    `total_steps`, both along half a cosine; it stays there afterwards.

    Reference: L. N. Smith and N. Topin, "Super-Convergence: Very Fast
    Training of Neural Networks Using Large Learning Rates", 2018,
    https://arxiv.org/abs/1708.07120.

    Example:

    >>> schedule = OneCycle(0.1, total_steps=100, warmup_fraction=0.3)
    >>> [round(float(schedule(s)), 5) for s in (0, 15, 30, 100, 200)]
    [0.004, 0.052, 0.1, 0.0, 0.0]
    """

    def __init__(self, max_learning_rate: float, total_steps: int,
                 warmup_fraction: float = 0.25, div_factor: float = 25.0,
                 final_div_factor: float = 1e4, name: str | None = None):
        super().__init__()
        self.max_learning_rate = check_number("max_learning_rate",
                                              max_learning_rate, positive=True)
        self.total_steps = check_int("total_steps", total_steps, minimum=1)
        self.warmup_fraction = check_number("warmup_fraction", warmup_fraction,
                                            low=0.0, high=1.0, high_inclusive=False)
        self.div_factor = check_number("div_factor", div_factor, low=1.0)
        self.final_div_factor = check_number("final_div_factor", final_div_factor,
                                             low=1.0)
        self.name = name or "OneCycle"

    def __call__(self, step):
        step = ops.cast(step, "float32")
        peak = self.max_learning_rate
        start = peak / self.div_factor
        end = start / self.final_div_factor
        rise = max(1.0, round(self.warmup_fraction * self.total_steps))
        fall = max(1.0, self.total_steps - rise)

        def cosine(frm, to, fraction):
            fraction = ops.clip(fraction, 0.0, 1.0)
            return to + (frm - to) * 0.5 * (1.0 + ops.cos(math.pi * fraction))

        up = cosine(start, peak, step / rise)
        down = cosine(peak, end, (step - rise) / fall)
        if self.warmup_fraction == 0:
            return down
        return ops.where(step < rise, up, down)

    def get_config(self):
        return {
            "max_learning_rate": self.max_learning_rate,
            "total_steps": self.total_steps,
            "warmup_fraction": self.warmup_fraction,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
            "name": self.name,
        }


@keras.saving.register_keras_serializable(package="kbatch")
class PerUpdate(_Schedule):
    """A schedule stepped once per update under gradient accumulation.

    Keras calls an optimizer's schedule with its micro-batch count, which
    under `gradient_accumulation_steps=k` advances `k` times per update: a
    warm-up or decay written in updates would run `k` times too fast. This
    divides the count by `steps` first.

    Example:

    >>> inner = LinearWarmup(0.01, 0.1, warmup_steps=10)
    >>> schedule = PerUpdate(inner, steps=4)
    >>> round(float(schedule(20)), 3) == round(float(inner(5)), 3)
    True
    """

    def __init__(self, schedule, steps: int):
        super().__init__()
        self.schedule = _optimizer.deserialize_schedule(schedule, "schedule")
        self.steps = check_int("steps", steps, minimum=1)

    def __call__(self, step):
        return self.schedule(ops.floor_divide(step, self.steps))

    def get_config(self):
        return {"schedule": keras.optimizers.schedules.serialize(self.schedule),
                "steps": self.steps}

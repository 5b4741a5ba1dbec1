"""`BatchLRHyperModel`: search batch size and learning rate together, with
KerasTuner.

Searched independently, the batch size and the learning rate waste most
trials: the good LR moves with the batch size. `BatchLRHyperModel` searches the
LR as a multiplier around the rate scaled to each batch size, from one LR range
test, and keeps every trial below the edge of stability measured by the range
tests. It runs on KerasTuner's own tuners (`RandomSearch`,
`BayesianOptimization`, `Hyperband`, `GridSearch`) and distributed engine, and
on `PatternSearch`, a sequential search made for it (one axis at a time).
"""

from __future__ import annotations

import logging
import math
import os
import random
import warnings

import keras
import keras_tuner
import numpy as np

from kbatch import precision
from kbatch._internal import backend as _backend
from kbatch._internal import data as _data
from kbatch._internal import optimizer as _optimizer
from kbatch._internal.building import ensure_built
from kbatch._internal.state import TrainingState
from kbatch._internal.validate import check_choice
from kbatch._internal.validate import check_int
from kbatch._internal.validate import check_number
from kbatch.lr import probes as lr_probes
from kbatch.lr import rules as lr_rules
from kbatch.precision import dtype_policy
from kbatch.scaling import rules as scaling_rules
from kbatch.scaling.optimizer_rule import default_rule
from kbatch.scaling.scale_learning_rate import global_batch_size
from kbatch.scaling.schedules import BatchScaledSchedule
from kbatch.scaling.schedules import LinearWarmup
from kbatch.scaling.schedules import PerUpdate
from kbatch.tuner import search_state
from kbatch.tuner.errors import OutOfMemoryError
from kbatch.tuner.recorder import TrialRecorder

__all__ = [
    "CACHE_FILE",
    "PARAMETRIZATIONS",
    "POLICIES",
    "RECORDED",
    "TRIAL_SCHEDULE_NAME",
    "BatchLRHyperModel",
    "divergence_lr",
    "resolve_policy",
]

PARAMETRIZATIONS = ("scaled", "independent")
DEFAULT_MULTIPLIER_RANGE = (0.25, 4.0)
# What `fit` records in a trial's hyperparameters (not searched): the LR and
# global batch size the trial trained with, and its warm-up.
RECORDED = ("learning_rate", "global_batch_size", "warmup_steps",
            "warmup_initial_learning_rate")
# The name of the schedule the hypermodel sets on a trial's optimizer, so
# that the schedule compiled by `build_model` (its `after`) can be told apart.
TRIAL_SCHEDULE_NAME = "kbatch_trial_learning_rate"
POLICIES = precision.POLICIES
CACHE_FILE = search_state.CACHE_FILE
_Schedule = keras.optimizers.schedules.LearningRateSchedule


def resolve_policy(mixed_precision) -> str | None:
    """`"auto"` -> `kbatch.precision.auto_policy()`; float32 is `None`.

    Example:

    >>> resolve_policy("float32") is None, resolve_policy("mixed_bfloat16")
    (True, 'mixed_bfloat16')
    """
    policy = precision.resolve(mixed_precision)
    return None if policy == "float32" else policy


def divergence_lr(result) -> float | None:
    """The LR at which a range test's loss climbed back above its start
    (`kbatch.lr.rules.divergence_lr` of an `LRFinderResult`).

    Example:

    >>> import numpy as np, kbatch
    >>> lrs = np.geomspace(1e-4, 1.0, 50)
    >>> losses = 1.0 - 0.5 * np.log10(lrs / 1e-4) / 4 + 40 * lrs ** 2
    >>> result = kbatch.LRFinderResult(lrs, losses)
    >>> 0.05 < divergence_lr(result) < 0.3  # where the loss is back to 1.0
    True
    """
    return lr_rules.divergence_lr(result.effective_lrs, result.trend,
                                  diverged=result.diverged)


class BatchLRHyperModel(keras_tuner.HyperModel):
    """Search the batch size and the learning rate together.

    `build_model(hp)` returns your compiled model, as for any KerasTuner
    search (declare other hyperparameters on `hp` as usual). The hypermodel
    adds two: `batch_size` (a choice among `batch_sizes`, declared in `build`
    so that the very first trial honours it too) and the learning rate, and
    sets the optimizer's learning rate in `build` (from the trial's
    hyperparameters) and in `fit`, which trains with that batch size.

    With `parametrization="scaled"` (the default) the LR is searched as
    `lr_multiplier`, log-uniform in `multiplier_range`, times a centre that
    moves with the batch size. With `learning_rate="auto"` (the default) the
    centre is the LR measured best at the trial's batch size for `epochs`
    epochs by `kbatch.lr_for_batch_sizes` (short probe runs at every batch
    size), run once, on the first trial's data, and cached in the tuner's
    project directory, so a resumed search does not rerun it: the first trial
    at each batch size (multiplier 1) already trains at the measured LR.
    With `learning_rate=(low, high)` the window is searched at
    `base_batch_size` and moves with the batch size: a trial's LR is
    `scale_lr(sqrt(low * high), base_batch_size, batch_size, scaling_rule) *
    lr_multiplier`, with `lr_multiplier` in `(sqrt(low / high),
    sqrt(high / low))`, so the LRs tried at `base_batch_size` span exactly
    `[low, high]`, and at another batch size the window scaled by the rule
    (with the linear rule, twice the batch, twice both ends).
    `parametrization="independent"` searches `learning_rate` log-uniformly in
    `[low, high]` at every batch size, the plain search, for comparison.

    What KerasTuner hands back is what was trained. Each trial's
    hyperparameters (`tuner.get_best_hyperparameters()`,
    `trial.hyperparameters.values`) also hold, beside the searched values,
    these derived ones, set when the trial trains: `learning_rate` (the LR it
    trained at, after warm-up), `global_batch_size` (samples per optimizer
    update: the batch given to `fit`, split over replicas, times the
    optimizer's `gradient_accumulation_steps`), `warmup_steps` and, with a
    warm-up, `warmup_initial_learning_rate` (where it started). `build(hp)`
    sets the optimizer's learning rate from them, so `tuner.get_best_models()`
    and `tuner.load_model(trial)` return the model with the learning rate (or
    the schedule) its trial trained with, not the one compiled in
    `build_model`. A trial without warm-up whose model was compiled with a
    float LR trains at a constant rate: its optimizer's `learning_rate` is
    `hp["learning_rate"]`. Otherwise the optimizer holds a
    `kbatch.scaling.LinearWarmup` with the trial's warm-up, its
    `learning_rate` the trial's LR.

    A learning-rate schedule compiled into your model is kept: the trial
    follows its shape, rescaled to start at the trial's LR (`after` of
    `kbatch.BatchScaledSchedule`: `lr * schedule(t) / schedule(0)`, with `t`
    counted from the end of the warm-up). Its own initial value is replaced,
    as a float LR is; it must start above 0.

    Do not declare a `learning_rate` hyperparameter in `build_model`: the
    hypermodel searches the LR itself, and a second one would be sampled and
    recorded but not trained with. `build` refuses it
    (`keras_tuner.errors.FatalValueError`, raised when the tuner is created,
    before any trial trains); pass its range as `learning_rate=(low, high)`
    instead (with `parametrization="independent"` for a plain LR search).

    Every trial reports, beside its metrics: `train_seconds`,
    `samples_per_second`, `updates` (optimizer steps), `batch_size` and
    `learning_rate`; with `target=("val_accuracy", 0.9)` also
    `time_to_target` and `epochs_to_target` (`inf` if never reached), usable
    as objectives: `keras_tuner.Objective("time_to_target", "min")`.

    Out of memory: a trial whose batch does not fit trains it as micro-batches
    with gradient accumulation (the optimizer's `gradient_accumulation_steps`):
    the trial's batch size and its learning rate stay what was drawn, and the
    trial records both sizes (`micro_batch_size` and
    `gradient_accumulation_steps` join its hyperparameters' values). The try
    that ran out of memory is undone (the model and optimizer as they were
    built) and the trial goes on at half the micro-batch; the smallest batch
    that ran out of memory is kept in the project directory, so later trials
    (and resumed searches) start below it and probe no size past the limit
    again (on TensorFlow's CPU allocator each failed try costs ~10 s of
    retries). A warm-up or compiled schedule is stepped per update, not per
    micro-batch. Only a micro-batch of 1 that does not fit fails the trial
    (`keras_tuner.errors.FailedTrialError`).

    Mixed precision: the dtype policy is set while the trial's model is built
    and put back after, so nothing leaks between trials or into your session
    (KerasTuner clears the session before every build, which would wipe a policy
    set before `search`). Under `mixed_float16` batch sizes are rounded up to
    multiples of 8, and a warning says if the model's output is not float32.

    Args:
        build_model: Function `hp -> compiled keras.Model`. Must not declare
            a `learning_rate` hyperparameter (see above).
        batch_sizes: Batch sizes to choose from. Defaults to 16 ... 512.
        learning_rate: `"auto"` (measured per batch size) or `(low, high)`: for
            `"scaled"`, the window searched at `base_batch_size` (scaled to
            the other batch sizes by `scaling_rule`); for `"independent"`,
            the search range at every batch size. Defaults to `"auto"`.
        base_batch_size: Integer. Batch size of the base LR. Defaults to the
            middle of `batch_sizes` (shortest extrapolation).
        scaling_rule: `"auto"` (`kbatch.default_rule` of the optimizer) or any
            rule of `kbatch.scale_lr`; used with `learning_rate=(low, high)`
            (with `"auto"` the LR of every batch size is measured).
        parametrization: `"scaled"` or `"independent"`.
        multiplier_range: `(low, high)` of the LR multiplier, containing 1.
            Defaults to `(0.25, 4.0)` with `learning_rate="auto"`; with a
            window `learning_rate=(low, high)` and `"scaled"`, it is
            `(sqrt(low / high), sqrt(high / low))` (the window at
            `base_batch_size`), and passing it too is an error.
        lr_steps: Optional integer: the multiplier (or LR) takes this many
            values on a log grid instead of a continuous range (for
            `GridSearch`).
        mixed_precision: `"auto"` (float16 with a GPU, float32 on CPU), a
            policy name, or `None`.
        epochs: Integer. Epochs per trial when the tuner does not set them
            (Hyperband does). Defaults to `10`.
        warmup: `"auto"` (linear warm-up over 5% of a trial's steps whenever its
            LR exceeds the base LR), `0` or a number of steps.
        target: Optional `(metric, value)` or `(metric, value, "max"|"min")`
            for the time-to-target metrics.
        cache_dir: Directory for the cached range tests when the tuner's
            project directory cannot be found. Defaults to `None`.
        name, tunable: As for `keras_tuner.HyperModel`.

    Example:

    ```python
    def build_model(hp):
        model = keras.Sequential([...])
        model.compile(optimizer=keras.optimizers.SGD(momentum=0.9),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    tuner = keras_tuner.RandomSearch(
        kbatch.tuner.BatchLRHyperModel(build_model, epochs=10),
        objective="val_accuracy", max_trials=8, directory="search")
    tuner.search(x, y, validation_data=(x_val, y_val))
    summary = kbatch.tuner.summarize(tuner)  # .text(), .plot(path)
    best = tuner.get_best_hyperparameters()[0]
    best["batch_size"], best["learning_rate"]  # what the best trial trained at
    ```

    A tiny search that runs in seconds (a fixed LR window, so no range test):

    >>> import keras, keras_tuner, numpy as np, tempfile
    >>> rng = np.random.default_rng(0)
    >>> x = rng.random((256, 8)).astype("float32")
    >>> y = (x.sum(axis=1) > 4).astype("int32")
    >>> def build_model(hp):
    ...     model = keras.Sequential([keras.Input((8,)),
    ...                               keras.layers.Dense(2, activation="softmax")])
    ...     model.compile(keras.optimizers.SGD(), "sparse_categorical_crossentropy",
    ...                   metrics=["accuracy"])
    ...     return model
    >>> hypermodel = BatchLRHyperModel(build_model, batch_sizes=(16, 64),
    ...                                learning_rate=(0.01, 0.1), epochs=1,
    ...                                warmup=0)
    >>> hypermodel.base_batch_size, hypermodel.multiplier_range  # sqrt(10)
    (64, (0.31622776601683794, 3.1622776601683795))
    >>> tuner = keras_tuner.RandomSearch(hypermodel, objective="val_accuracy",
    ...                                  max_trials=2, seed=0,
    ...                                  directory=tempfile.mkdtemp())
    >>> tuner.search(x, y, validation_split=0.25, verbose=0)
    >>> from kbatch.tuner import summarize
    >>> rows = summarize(tuner).rows
    >>> [row["status"] for row in rows]
    ['COMPLETED', 'COMPLETED']
    >>> # the window at batch 64, scaled linearly (SGD) to the trial's batch
    >>> all(0.01 <= row["learning_rate"] * 64 / row["batch_size"] <= 0.1
    ...     for row in rows)
    True
    >>> best = tuner.get_best_hyperparameters()[0]
    >>> model = tuner.get_best_models()[0]
    >>> bool(np.isclose(float(model.optimizer.learning_rate),
    ...                 best["learning_rate"]))
    True
    """

    def __init__(
        self,
        build_model,
        *,
        batch_sizes=(16, 32, 64, 128, 256, 512),
        learning_rate="auto",
        base_batch_size: int | None = None,
        scaling_rule="auto",
        parametrization: str = "scaled",
        multiplier_range=None,
        lr_steps: int | None = None,
        mixed_precision="auto",
        epochs: int = 10,
        warmup="auto",
        target=None,
        cache_dir=None,
        name=None,
        tunable=True,
    ):
        super().__init__(name=name, tunable=tunable)
        if not callable(build_model):
            raise TypeError(
                "Argument `build_model` must be a function `hp -> compiled model`. "
                f"Received: build_model={build_model!r}")
        self.build_model = build_model
        self.policy = resolve_policy(mixed_precision)
        self.batch_sizes = self._check_batch_sizes(batch_sizes)
        self.parametrization = check_choice("parametrization", parametrization,
                                            PARAMETRIZATIONS)
        self.learning_rate = self._check_learning_rate(learning_rate)
        if self.parametrization == "independent" and learning_rate == "auto":
            self.learning_rate = "auto"
        if base_batch_size is None:
            base_batch_size = self.batch_sizes[len(self.batch_sizes) // 2]
        self.base_batch_size = check_int("base_batch_size", base_batch_size,
                                         minimum=1)
        if scaling_rule != "auto":
            scaling_rules.scaling_factor(1, 1, scaling_rule)  # validates
        self.scaling_rule = scaling_rule
        self.multiplier_range = self._multiplier_range(multiplier_range)
        self.lr_steps = check_int("lr_steps", lr_steps, minimum=2, allow_none=True)
        self.epochs = check_int("epochs", epochs, minimum=1)
        if warmup != "auto":
            warmup = check_int("warmup", warmup, minimum=0)
        self.warmup = warmup
        self.target = self._check_target(target)
        self.cache_dir = None if cache_dir is None else os.fspath(cache_dir)
        self.anchors = None  # {"base_lr", "edges": {batch: lr}}
        self.smallest_oom = None
        self._cache_path = None

    # ------------------------------------------------------------- checking
    def _check_batch_sizes(self, batch_sizes):
        sizes = [batch_sizes] if isinstance(batch_sizes, int) else list(batch_sizes)
        if not sizes:
            raise ValueError(
                "Argument `batch_sizes` is empty. Received: "
                f"batch_sizes={batch_sizes!r}. Pass at least one batch size, "
                "e.g. batch_sizes=(32, 64, 128).")
        sizes = [check_int(f"batch_sizes[{i}]", b, minimum=1)
                 for i, b in enumerate(sizes)]
        if self.policy == "mixed_float16":
            rounded = sorted({-(-b // 8) * 8 for b in sizes})
            if rounded != sorted(set(sizes)):
                warnings.warn(
                    f"Under mixed_float16, batch sizes {sizes} were rounded up to "
                    f"multiples of 8 for tensor cores: {rounded}.", stacklevel=3)
            sizes = rounded
        return sorted(set(sizes))

    @staticmethod
    def _check_range(name, value):
        if not (isinstance(value, (tuple, list)) and len(value) == 2):
            raise ValueError(
                f"Argument `{name}` must be a pair (low, high). Received: "
                f"{name}={value!r}")
        low = check_number(f"{name}[0]", value[0], positive=True)
        high = check_number(f"{name}[1]", value[1], positive=True)
        if not low < high:
            raise ValueError(
                f"Argument `{name}` must have low < high. Received: {name}={value!r}")
        return low, high

    def _multiplier_range(self, multiplier_range):
        window = (self.learning_rate if self.parametrization == "scaled"
                  and self.learning_rate != "auto" else None)
        if multiplier_range is None:
            if window is None:
                return DEFAULT_MULTIPLIER_RANGE
            # the multipliers that take the window's centre to its ends
            low, high = window
            return (math.sqrt(low / high), math.sqrt(high / low))
        if window is not None:
            raise ValueError(
                "Pass `learning_rate=(low, high)` or `multiplier_range`, not both: "
                "with parametrization='scaled' the window is searched at "
                "`base_batch_size`, which sets the multiplier range "
                f"(sqrt(low / high), sqrt(high / low)). Received: "
                f"learning_rate={window!r}, multiplier_range={multiplier_range!r}")
        low, high = self._check_range("multiplier_range", multiplier_range)
        if not low <= 1.0 <= high:
            raise ValueError(
                "Argument `multiplier_range` must contain 1 (the scaled LR itself). "
                f"Received: multiplier_range={multiplier_range!r}")
        return (low, high)

    def _check_learning_rate(self, learning_rate):
        if learning_rate == "auto":
            return "auto"
        return self._check_range("learning_rate", learning_rate)

    @staticmethod
    def _check_target(target):
        if target is None:
            return None
        if not isinstance(target, (tuple, list)) or len(target) not in (2, 3):
            raise ValueError(
                "Argument `target` must be (metric, value) or (metric, value, "
                f"'max'|'min'). Received: target={target!r}")
        name = str(target[0])
        value = check_number("target[1]", target[1])
        if len(target) == 3:
            direction = check_choice("target[2]", target[2], ("max", "min"))
        else:
            inferred = keras_tuner.engine.metrics_tracking.infer_metric_direction(
                name)
            direction = inferred or "max"
        return name, value, direction

    # ----------------------------------------------------------------- build
    def build(self, hp):
        hp.Choice("batch_size", self.batch_sizes)
        low, high = self.multiplier_range
        if self.parametrization == "scaled":
            self._float(hp, "lr_multiplier", low, high)
        elif self.learning_rate == "auto":
            raise keras_tuner.errors.FatalValueError(
                "parametrization='independent' needs an explicit "
                "learning_rate=(low, high) range.")
        with dtype_policy(self.policy):
            model = self.build_model(hp)
        self._refuse_learning_rate_hp(hp)
        if self.parametrization == "independent":
            # declared after build_model, so that one declared there shows
            self._float(hp, "learning_rate", *self.learning_rate)
        if not isinstance(model, keras.Model):
            raise keras_tuner.errors.FatalTypeError(
                "`build_model(hp)` must return a compiled keras.Model. Received: "
                f"{model!r} of type {type(model).__name__}.")
        if not getattr(model, "compiled", False) or model.optimizer is None:
            raise keras_tuner.errors.FatalValueError(
                "`build_model(hp)` must return a compiled model: call "
                "`model.compile(optimizer=..., loss=..., metrics=...)` in it. The "
                "hypermodel sets the optimizer's learning rate and the batch size.")
        if self.policy is not None:
            precision.check_model(model)
        learning_rate = self._built_learning_rate(hp, model)
        if learning_rate is not None:
            _set_learning_rate(model, learning_rate)
        return model

    def _refuse_learning_rate_hp(self, hp):
        """A `learning_rate` hyperparameter declared by `build_model` would be
        sampled and recorded, but the trial trains at the hypermodel's LR."""
        ours = None
        if self.parametrization == "independent":
            probe = keras_tuner.HyperParameters()
            self._float(probe, "learning_rate", *self.learning_rate)
            ours = probe.space[0].get_config()
        for declared in hp.space:
            if declared.name == "learning_rate" and declared.get_config() != ours:
                raise keras_tuner.errors.FatalValueError(
                    "`build_model(hp)` declares a hyperparameter named "
                    f"'learning_rate' ({type(declared).__name__} "
                    f"{declared.get_config()}), but BatchLRHyperModel searches "
                    "the learning rate itself and sets it on the optimizer: yours "
                    "would be sampled and recorded but not trained with. Remove "
                    "it from build_model and pass its range as "
                    "BatchLRHyperModel(learning_rate=(low, high)) (with "
                    "parametrization='independent' to search the LR directly). "
                    "Each trial records the LR it trained at as "
                    "hp['learning_rate'].")

    def _micro_batch(self, batch_size):
        """The largest `batch_size / 2**j` below the smallest batch known to
        run out of memory (`batch_size` itself when none is known)."""
        micro = batch_size
        while (self.smallest_oom is not None and micro >= self.smallest_oom
               and micro % 2 == 0):
            micro //= 2
        if self.smallest_oom is not None and micro >= self.smallest_oom:
            raise keras_tuner.errors.FatalRuntimeError(
                f"Batch size {batch_size} cannot be split into micro-batches "
                f"below {self.smallest_oom}, the smallest that ran out of memory. "
                "Use batch sizes with more factors of 2, or a smaller model.")
        return micro

    def _float(self, hp, name, low, high):
        if self.lr_steps:
            step = (high / low) ** (1.0 / (self.lr_steps - 1))
            return hp.Float(name, low, high, step=step, sampling="log")
        return hp.Float(name, low, high, sampling="log")

    # ------------------------------------------------------------------- fit
    def fit(self, hp, model, *args, **kwargs):
        self._load_state(kwargs.get("callbacks"))
        batch_size = hp.get("batch_size")
        given_args, given_kwargs = args, dict(kwargs)
        args, kwargs, x, y = self._prepare_data(model, batch_size, args, kwargs)
        epochs = kwargs.pop("epochs", self.epochs)
        initial_epoch = kwargs.get("initial_epoch", 0)
        schedule = self.trial_schedule(
            hp, model, x, y, kwargs,
            warmup_steps=self._warmup_steps(x, batch_size, epochs, initial_epoch))
        self._record(hp, schedule)
        learning_rate = _optimizer_learning_rate(
            schedule.learning_rate, schedule.base_learning_rate,
            schedule.warmup_steps, schedule.after)
        callbacks = list(kwargs.get("callbacks") or [])
        micro = self._micro_batch(batch_size)
        _build(model, x)
        snapshot = TrainingState.capture(model)  # what a failed try goes back to
        while True:
            accumulation = batch_size // micro
            if accumulation > 1:  # past the memory limit: the same batch, in parts
                args, kwargs, _, _ = self._prepare_data(model, micro, given_args,
                                                        dict(given_kwargs))
                kwargs.pop("epochs", None)
                _optimizer.set_gradient_accumulation(model.optimizer, accumulation)
            if accumulation > 1:  # both sizes, for a trial that accumulates
                hp.values["micro_batch_size"] = int(micro)
                hp.values["gradient_accumulation_steps"] = int(accumulation)
            _set_learning_rate(model, learning_rate if accumulation == 1 or not
                               isinstance(learning_rate, _Schedule)
                               else PerUpdate(learning_rate, accumulation))
            recorder = TrialRecorder(micro, schedule.learning_rate, self.target)
            kwargs["callbacks"] = [recorder, *callbacks]
            try:
                history = model.fit(*args, batch_size=micro, epochs=epochs, **kwargs)
            except Exception as error:
                if not _backend.is_oom(error):
                    raise
                self.smallest_oom = (micro if self.smallest_oom is None
                                     else min(self.smallest_oom, micro))
                self._save_state()
                if micro < 2 or micro % 2:
                    raise OutOfMemoryError(micro) from error
                snapshot.restore()
                micro //= 2
                logging.getLogger("kbatch").info(
                    "Batch %d ran out of memory; the trial trains it as %d "
                    "micro-batches of %d with gradient accumulation.",
                    batch_size, batch_size // micro, micro)
                continue
            break
        for key in recorder.rows[0] if recorder.rows else ():
            values = [row[key] for row in recorder.rows]
            if len(history.history.get(key, [])) != len(values):
                history.history[key] = values
        return history

    def _record(self, hp, schedule):
        """Write what the trial trains with into its hyperparameters (see
        `RECORDED`): KerasTuner keeps them with the trial, and `build` sets
        the optimizer's learning rate from them."""
        if self.parametrization == "scaled":  # else it is the searched value
            hp.values["learning_rate"] = float(schedule.learning_rate)
        hp.values["global_batch_size"] = int(schedule.batch_size)
        hp.values["warmup_steps"] = int(schedule.warmup_steps)
        if schedule.warmup_steps:
            hp.values["warmup_initial_learning_rate"] = float(
                schedule.base_learning_rate)
        else:
            hp.values.pop("warmup_initial_learning_rate", None)

    def _prepare_data(self, model, batch_size, args, kwargs):
        args = list(args)
        x = args[0] if args else kwargs.get("x")
        y = args[1] if len(args) > 1 else kwargs.get("y")
        if "batch_size" in kwargs:
            raise keras_tuner.errors.FatalValueError(
                "Do not pass `batch_size` to search(): BatchLRHyperModel searches "
                "it.")
        if _data.is_tf_dataset(x):
            rank = _data.model_input_rank(model)
            element = _data.element_rank(x)
            if rank is not None and element is not None and element >= rank:
                raise keras_tuner.errors.FatalValueError(
                    "The tf.data.Dataset passed to search() is already batched, so "
                    "Keras would ignore the batch size being searched. Pass the "
                    "dataset before `.batch()`: the hypermodel batches it for each "
                    "trial.")
            batched = x.batch(batch_size)
            if args:
                args[0] = batched
            else:
                kwargs["x"] = batched
        elif _data.is_py_dataset(x) or _data.is_generator(x):
            raise keras_tuner.errors.FatalValueError(
                "BatchLRHyperModel needs data it can batch: arrays or an unbatched "
                "tf.data.Dataset. A PyDataset or generator fixes the batch size.")
        return args, kwargs, x, y

    # ------------------------------------------------------- learning rates
    def rule_for(self, model):
        if self.scaling_rule == "auto":
            return default_rule(model.optimizer)
        return self.scaling_rule

    def trial_learning_rate(self, hp, model, x=None, y=None, fit_kwargs=None):
        """The learning rate of a trial (after warm-up), from its hyperparameters."""
        return self.trial_schedule(hp, model, x, y, fit_kwargs).learning_rate

    def trial_schedule(self, hp, model, x=None, y=None, fit_kwargs=None,
                       warmup_steps: int = 0) -> BatchScaledSchedule:
        """The trial's learning rate as a `BatchScaledSchedule`: the base LR
        scaled to the trial's batch size, capped below the edge of stability,
        times `lr_multiplier`, warmed up from the base LR over `warmup_steps`
        (only when the trial's LR is above the base LR), then following the
        shape of the schedule `build_model` compiled, if any."""
        after = _compiled_schedule(model)
        batch, _ = global_batch_size(model, batch_size=hp.get("batch_size"))
        if self.parametrization == "independent":
            return BatchScaledSchedule(float(hp.get("learning_rate")), batch, batch,
                                       rule="none", after=after)
        base_batch, _ = global_batch_size(model, batch_size=self.base_batch_size)
        multiplier = float(hp.get("lr_multiplier"))
        if self.learning_rate == "auto":
            split = (fit_kwargs or {}).get("validation_split")
            if split and self.anchors is None:
                x, y = _training_part(x, y, split)
            self._ensure_anchors(hp, x, y)
            base_lr = self.anchors["base_lr"]
            measured = self.anchors.get("measured")
        else:
            low, high = self.learning_rate
            base_lr, measured = math.sqrt(low * high), None
        if measured:
            # centred on the LR measured for this batch size and budget
            at_batch = lr_probes.interpolate(measured["batch_sizes"],
                                             measured["learning_rates"], batch)
            arguments = {"rule": "none", "multiplier": at_batch / base_lr * multiplier}
        else:
            cap = self.stability_cap(batch)
            arguments = {
                "rule": self.rule_for(model), "multiplier": multiplier,
                "max_learning_rate": (None if cap is None
                                      else cap / self.multiplier_range[1])}
        schedule = BatchScaledSchedule(base_lr, base_batch, batch, after=after,
                                       **arguments)
        if warmup_steps and schedule.learning_rate > base_lr:
            schedule = BatchScaledSchedule(base_lr, base_batch, batch, after=after,
                                           warmup_steps=warmup_steps, **arguments)
        return schedule

    def _built_learning_rate(self, hp, model):
        """What `build` sets on the optimizer, from the trial's hyperparameters:
        the LR `fit` trains with (after `fit`, with its warm-up), or `None`
        before the range tests of `learning_rate="auto"` have run."""
        values = hp.values
        after = _compiled_schedule(model)  # validated here, before any trial
        if (self.parametrization == "independent" or self.learning_rate != "auto"
                or self.anchors is not None):
            schedule = self.trial_schedule(hp, model)
            learning_rate = schedule.learning_rate
            start = schedule.base_learning_rate
            # the warm-up `fit` recorded for these values (after a GridSearch or
            # PatternSearch proposal copied another trial's values, the LR
            # differs and there is none yet)
            warmup = (_int(values.get("warmup_steps"))
                      if values.get("learning_rate") == learning_rate else 0)
        elif "learning_rate" in values:
            # a trained trial, rebuilt where the range tests are not loaded
            # (`get_best_models()` in a new process): its recorded values
            learning_rate = float(values["learning_rate"])
            start = values.get("warmup_initial_learning_rate")
            warmup = _int(values.get("warmup_steps")) if start else 0
        else:
            return None
        return _optimizer_learning_rate(learning_rate, start, warmup, after)

    def stability_cap(self, batch_size):
        """The measured divergence LR at a batch size (log-log interpolated)."""
        if not self.anchors or not self.anchors.get("edges"):
            return None
        edges = sorted((int(b), lr) for b, lr in self.anchors["edges"].items()
                       if lr is not None)
        if not edges:
            return None
        sizes = np.log([b for b, _ in edges])
        lrs = np.log([lr for _, lr in edges])
        return float(np.exp(np.interp(math.log(batch_size), sizes, lrs)))

    def _ensure_anchors(self, hp, x, y):
        if self.anchors is not None:
            return
        if x is None:
            raise keras_tuner.errors.FatalValueError(
                "learning_rate='auto' measures the best LR per batch size on the "
                "training data, but search() was given none.")
        from kbatch.lr.batch_sizes import lr_for_batch_sizes

        if _data.is_tf_dataset(x):
            x, y = _data.unbatched_to_arrays(x, y)
        n = _data.num_samples(x, "x")
        sizes = [b for b in self.batch_sizes if b <= n] or [min(self.batch_sizes[0], n)]
        # The measurement starts from seed 0, so the anchors do not depend on
        # the search; the trials after it go on from a seed drawn from the
        # random state before it (not from seed 0, which would make every
        # search train the same way from here on).
        resume_seed = random.randrange(2**31 - 1)
        try:
            keras.utils.set_random_seed(0)
            with dtype_policy(self.policy):
                model = self.build_model(hp)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # left-out sizes: in the anchors
                measured = lr_for_batch_sizes(model, x, y, batch_sizes=sizes,
                                              epochs=self.epochs, seed=0, verbose=0)
            del model
        finally:
            keras.utils.set_random_seed(resume_seed)
        self.anchors = {
            "base_lr": measured.predict(self.base_batch_size),
            "base_batch_size": self.base_batch_size,
            "edges": {},
            "measured": {"batch_sizes": measured.batch_sizes,
                         "learning_rates": measured.learning_rates,
                         "epochs": self.epochs,
                         "samples_trained": measured.metadata["samples_trained"]},
        }
        self._save_state()

    def _warmup_steps(self, x, batch_size, epochs, initial_epoch):
        """Warm-up length: 5% of the trial's steps with `warmup="auto"`, none
        for a trial that resumes (Hyperband's later rounds)."""
        if initial_epoch:
            return 0
        if self.warmup == "auto":
            steps = _steps_per_epoch(x, batch_size)
            return max(1, round(0.05 * steps * epochs)) if steps else 0
        return self.warmup

    # ------------------------------------------------------- cached state
    def _load_state(self, callbacks):
        path = search_state.state_path(callbacks, self.cache_dir)
        if path is None or path == self._cache_path:
            return
        self._cache_path = path
        anchors, smallest_oom = search_state.load_state(path, self.base_batch_size)
        if anchors is not None:
            self.anchors = anchors
        if smallest_oom is not None:
            self.smallest_oom = smallest_oom

    def _save_state(self):
        if self._cache_path is not None:
            search_state.save_state(self._cache_path, self.anchors, self.smallest_oom)


def _int(value) -> int:
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


def _compiled_schedule(model):
    """The learning-rate schedule `build_model` compiled into the model, or
    `None` for a float learning rate."""
    current = _optimizer.learning_rate_object(model.optimizer)
    if current is None or _optimizer.is_variable(current):
        return None
    if isinstance(current, LinearWarmup) and current.name == TRIAL_SCHEDULE_NAME:
        return current.after  # set by the hypermodel: the compiled one is inside
    if not isinstance(current, _Schedule):
        raise keras_tuner.errors.FatalValueError(
            "The optimizer returned by `build_model(hp)` has a learning rate that "
            f"is a callable ({current!r}), which BatchLRHyperModel cannot rescale "
            "to each trial's LR. Compile it with a float or a "
            "keras.optimizers.schedules.LearningRateSchedule.")
    start = float(keras.ops.convert_to_numpy(current(0)))
    if not start > 0:
        raise keras_tuner.errors.FatalValueError(
            "The learning-rate schedule compiled in `build_model(hp)` "
            f"({type(current).__name__}) starts at {start:g}; BatchLRHyperModel "
            "follows its shape rescaled to start at each trial's LR, so it must "
            "start above 0. Leave out its warm-up: BatchLRHyperModel(warmup=...) "
            "warms up each trial.")
    return current


def _optimizer_learning_rate(learning_rate, start, warmup_steps, after):
    """What a trial's optimizer holds: a float for a constant LR, else a
    `LinearWarmup` (named `TRIAL_SCHEDULE_NAME`) from `start` to
    `learning_rate` over `warmup_steps`, then the shape of `after`."""
    learning_rate = float(learning_rate)
    if not warmup_steps and after is None:
        return learning_rate
    return LinearWarmup(float(start) if warmup_steps else learning_rate,
                        learning_rate, int(warmup_steps), after=after,
                        name=TRIAL_SCHEDULE_NAME)


def _build(model, x):
    """Create the model's and optimizer's variables before the trial's first
    try, as `fit` would, so that a failed try can be undone exactly."""
    if model.built and model.optimizer.built:
        return
    if _data.is_tf_dataset(x):
        first = next(iter(x.batch(2)))
    else:
        first = (keras.tree.map_structure(lambda a: a[:2], x),)
    ensure_built(model, first)


def _set_learning_rate(model, learning_rate):
    """Set a float or a schedule as the optimizer's learning rate.

    Keras refuses a float once the optimizer holds a schedule (a Hyperband
    round after a warmed-up one): a constant schedule takes its place."""
    base = _optimizer.base_optimizer(model.optimizer)
    if (not isinstance(learning_rate, _Schedule)
            and not _optimizer.is_variable(_optimizer.learning_rate_object(base))):
        learning_rate = LinearWarmup(learning_rate, learning_rate, 0,
                                     name=TRIAL_SCHEDULE_NAME)
    base.learning_rate = learning_rate


def _training_part(x, y, validation_split):
    """The samples `fit(validation_split=...)` trains on (it holds out the last
    fraction), so the range tests do not see the validation samples."""
    if not hasattr(x, "shape") or not hasattr(x, "__getitem__"):
        return x, y
    keep = math.ceil(len(x) * (1.0 - validation_split))
    return x[:keep], (None if y is None else y[:keep])


def _steps_per_epoch(x, batch_size):
    if x is None:
        return None
    if _data.is_tf_dataset(x):
        n = int(x.cardinality())
        return -(-n // batch_size) if n > 0 else None
    try:
        n = _data.num_samples(_data.to_numpy_structure(x), "x")
    except (ValueError, TypeError):
        return None
    return -(-n // batch_size)



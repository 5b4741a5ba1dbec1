"""`LRRangeTest`: the learning-rate range test as a `model.fit` callback."""

from __future__ import annotations

import math
import warnings

import keras
import numpy as np

from kbatch._internal import data as _data
from kbatch._internal import optimizer as _optimizer
from kbatch._internal import report
from kbatch._internal.losses import compute_loss
from kbatch._internal.model_checks import check_trainable
from kbatch._internal.state import TrainingState
from kbatch._internal.validate import check_choice
from kbatch._internal.validate import check_int
from kbatch._internal.validate import check_number
from kbatch._internal.validate import check_verbose
from kbatch.lr import rules
from kbatch.lr.result import LRFinderResult
from kbatch.lr.result import LRFinderWarning

__all__ = [
    "MAX_CONSECUTIVE_SKIPS",
    "LRRangeTest",
]

# A LossScaleOptimizer halves its scale on every skipped step; after this many
# skips in a row the scale has collapsed and the sweep cannot go on.
MAX_CONSECUTIVE_SKIPS = 40


def _find_loss_tracker(model):
    for metric in getattr(model, "metrics", []):
        if metric.name == "loss" and hasattr(metric, "count"):
            return metric
    return None


def _read(variable) -> float:
    return float(variable.numpy())


class LRRangeTest(keras.callbacks.Callback):
    """Learning-rate range test (Smith, 2017) as a `model.fit` callback.

    The learning rate grows from `min_lr` to `max_lr` over `num_steps` steps,
    exponentially (default) or linearly. The LR of step `i` is set before step
    `i` runs, and the loss recorded for step `i` is **that batch's own loss**,
    recovered from Keras' running mean (which is what `logs["loss"]` holds in a
    batch callback). Losses are smoothed with a bias-corrected exponential
    moving average, and the test stops early once the smoothed loss exceeds
    `diverge_threshold` times its best value or becomes non-finite.

    After the test, `callback.result` holds an `LRFinderResult` with the curve,
    the suggestions and a plot. By default the callback puts the weights and the
    optimizer state back as they were when training began (the weights after a
    range test are rarely worth keeping). For the same test as one function
    call with any kind of data, see `kbatch.find_lr`, which also restores the
    model when training is interrupted by an exception.

    Special cases:
    - `steps_per_execution=k`: Keras calls batch callbacks once per `k` steps, so
      each LR is held for `k` batches and paired with their mean loss.
    - Gradient accumulation over `a` micro-batches: each LR is held for one full
      update (`a` micro-batches, or the least common multiple with `k`).
    - `mixed_float16` (`LossScaleOptimizer`): a step whose update was skipped
      because of an inf/NaN gradient is not recorded, and its LR is retried.
    - An optimizer built with a `LearningRateSchedule`: the schedule is replaced
      by a controllable one during the test and put back afterwards.
    - A custom `train_step` that returns the batch's own loss (instead of a
      `Mean` tracker's running mean, as Keras' own `train_step` does) is
      recognised: the loss tracker's count does not move, so the value in the
      logs is used as it is.

    What other callbacks see: each recorded step writes `learning_rate` and
    `range_test_loss` (the batch's own loss) into the batch logs, and the last
    of them into the epoch logs. Callbacks listed *after* this one in `fit`
    read them (`TensorBoard(update_freq=1)` plots `batch_learning_rate` and
    `batch_range_test_loss`; `CSVLogger` writes them per epoch).

    Reference: Leslie N. Smith, "Cyclical Learning Rates for Training Neural
    Networks", 2017, https://arxiv.org/abs/1506.01186.

    Args:
        min_lr: Float. First learning rate of the sweep. Defaults to `1e-7`.
        max_lr: Float. Last learning rate of the sweep. Defaults to `10.0`.
        num_steps: Integer. Number of learning rates tried (recorded points).
            Defaults to `100`.
        mode: `"exponential"` or `"linear"` spacing of the learning rates.
            Defaults to `"exponential"`.
        smoothing: Float in `[0, 1)`. Coefficient of the exponential moving
            average of the loss; `0` disables smoothing. Defaults to `0.98`.
        diverge_threshold: Float `> 1`. Stop when the smoothed loss exceeds this
            multiple of its lowest value. Defaults to `4.0`.
        restore_weights: Boolean. Restore the weights and every optimizer
            variable at the end of training. Defaults to `True`.
        validation_data: Optional. A few fixed batches (tuple `(x, y)` of
            arrays, a batched `tf.data.Dataset` or a `PyDataset`). When given,
            the loss recorded after each step is the loss on these batches
            instead of the training batch's loss. Defaults to `None`.
        verbose: `0` (silent), `1` (progress bar) or `2` (one line at the end).
            Defaults to `0`.

    Example:

    >>> import keras, numpy as np
    >>> x = np.random.rand(256, 4).astype("float32")
    >>> y = x.sum(axis=1, keepdims=True)
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> finder = LRRangeTest(min_lr=1e-4, max_lr=10.0, num_steps=30)
    >>> _ = model.fit(x, y, batch_size=16, epochs=5, callbacks=[finder], verbose=0)
    >>> finder.result.lrs.size <= 30
    True
    """

    def __init__(
        self,
        min_lr: float = 1e-7,
        max_lr: float = 10.0,
        num_steps: int = 100,
        mode: str = "exponential",
        smoothing: float = 0.98,
        diverge_threshold: float = 4.0,
        restore_weights: bool = True,
        validation_data=None,
        verbose: int = 0,
    ):
        super().__init__()
        validate_sweep_arguments(
            min_lr=min_lr,
            max_lr=max_lr,
            num_steps=num_steps,
            mode=mode,
            smoothing=smoothing,
            diverge_threshold=diverge_threshold,
        )
        self.min_lr = float(min_lr)
        self.max_lr = float(max_lr)
        self.num_steps = int(num_steps)
        self.mode = mode
        self.smoothing = float(smoothing)
        self.diverge_threshold = float(diverge_threshold)
        self.restore_weights = bool(restore_weights)
        self.validation_data = validation_data
        self.verbose = check_verbose(verbose)
        # Set by `find_lr` when every batch has the same size: the running mean
        # can then be de-averaged without reading the sample count.
        self._equal_batches = False
        self._reset()

    def _reset(self):
        self.batch_size = None
        self._lrs = []
        self._losses = []
        self._avg = 0.0
        self._best = math.inf
        self._skipped = 0
        self._consecutive_skips = 0
        self._in_group = 0
        self._seg_total = 0.0
        self._seg_count = 0.0
        self._prev_mean = 0.0
        self._prev_count = 0.0
        # None until the first step of the fit shows which kind of loss the
        # logs carry (see `_logs_hold_running_mean`)
        self._batch_losses = None
        self._scale = None
        self._current_lr = None
        self.stop_reason = None
        self._control = None
        self._state = None
        self._tracker = None
        self._scale_var = None
        self._val_batches = None
        self._progbar = None
        self._plan_tensors = None
        self._momentum = 0.0

    # ------------------------------------------------------------------ setup
    def on_train_begin(self, logs=None):
        self._reset()
        model = self.model
        if getattr(model, "optimizer", None) is None:
            raise ValueError(
                "`LRRangeTest` needs a compiled model with an optimizer. Call "
                "`model.compile(optimizer=..., loss=...)` first."
            )
        check_trainable(model)
        spe = getattr(model, "steps_per_execution", 1) or 1
        spe = check_int("steps_per_execution", spe, minimum=1)
        accumulation = _optimizer.gradient_accumulation_steps(model.optimizer)
        self._spe = spe
        self._group = _data.lcm(spe, accumulation) // spe
        self._plan = rules.lr_sweep(
            self.min_lr, self.max_lr, self.num_steps, self.mode
        )
        if self.validation_data is not None:
            self._val_batches = _data.fixed_batches(self.validation_data)
        self._tracker = _find_loss_tracker(model)
        self._momentum = _optimizer.heavy_ball_momentum(model.optimizer)
        self._scale_var = _optimizer.loss_scale_variable(model.optimizer)
        if self._scale_var is not None:
            self._scale = _read(self._scale_var)
        if self.restore_weights:
            self._state = TrainingState.capture(model)
        self._control = _optimizer.LearningRateControl(model)
        self._control.acquire(self._plan[0], retrace=True)
        self._plan_tensors = self._control.encode(self._plan)
        self._current_lr = float(self._plan[0])
        if self.verbose == 1:
            self._progbar = keras.utils.Progbar(
                self.num_steps, stateful_metrics=["lr", "loss"], unit_name="lr"
            )

    def on_epoch_begin(self, epoch, logs=None):
        # Keras resets its running mean of the loss at every epoch.
        self._prev_mean = 0.0
        self._prev_count = 0.0

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self._lrs:  # the epoch's last point, for CSVLogger
            logs["learning_rate"] = self._lrs[-1]
            logs["range_test_loss"] = self._losses[-1]

    # ---------------------------------------------------------------- per step
    def on_train_batch_begin(self, batch, logs=None):
        if self.stop_reason is not None or self._in_group:
            return
        index = len(self._lrs)
        lr = float(self._plan[index])
        if lr != self._current_lr:
            self._control.set(self._plan_tensors[index])
            self._current_lr = lr

    def on_train_batch_end(self, batch, logs=None):
        if self.stop_reason is not None:
            return
        # On JAX, `fit` keeps variable values in its own state during an epoch;
        # reading `self.model` makes Keras put them back (the loss count and
        # loss scale read below), and the next step then reads the LR assigned
        # meanwhile. Elsewhere it is a plain attribute.
        _ = self.model
        self._accumulate(logs or {})
        self._in_group += 1
        if self._in_group < self._group:
            return
        self._in_group = 0
        seg_total, seg_count = self._seg_total, self._seg_count
        if (self.batch_size is None and self._counts_samples() and seg_count > 0
                and self._batch_losses is False):
            self.batch_size = round(seg_count / (self._group * self._spe))
        self._seg_total = self._seg_count = 0.0
        if self._step_was_skipped():
            self._skipped += 1
            self._consecutive_skips += 1
            if self._consecutive_skips >= MAX_CONSECUTIVE_SKIPS:
                self._stop("loss_scale")
            return
        self._consecutive_skips = 0
        if self._val_batches is not None:
            loss = self._validation_loss()
        else:
            loss = seg_total / seg_count if seg_count > 0 else math.nan
        self._record(self._current_lr, loss)
        if logs is not None:  # for TensorBoard, CSVLogger & co., after this one
            logs["learning_rate"] = self._lrs[-1]
            logs["range_test_loss"] = loss

    def _accumulate(self, logs):
        if "loss" not in logs:
            raise ValueError(
                "`LRRangeTest` reads the training loss from the batch logs, but "
                f"they have no 'loss' entry (keys: {sorted(logs)}). Compile the "
                "model with a loss, or make a custom `train_step` return 'loss'."
            )
        mean = float(logs["loss"])
        if self._batch_losses is None:  # the same train_step all along
            self._batch_losses = not self._logs_hold_running_mean(mean)
        if self._batch_losses:
            # A custom `train_step` that returns the batch's own loss.
            self._seg_total += mean
            self._seg_count += 1.0
            return
        if self._counts_samples():
            count = _read(self._tracker.count)
        else:  # every step weighs the same
            count = self._prev_count + 1.0
        if count < self._prev_count:  # the running mean was reset
            self._prev_mean = self._prev_count = 0.0
        if count == self._prev_count:  # nothing new was averaged in
            return
        # The running mean m_k over c_k samples holds c_k*m_k - c_{k-1}*m_{k-1}
        # for this batch alone.
        self._seg_total += count * mean - self._prev_count * self._prev_mean
        self._seg_count += count - self._prev_count
        self._prev_mean, self._prev_count = mean, count

    def _logs_hold_running_mean(self, value) -> bool:
        """Whether `logs["loss"]` is the running mean of a loss tracker.

        Keras' own `train_step` (and the custom ones of its guide) return the
        result of a `Mean` metric named "loss", which adds every step to its
        count. A custom `train_step` that returns the batch's own loss leaves
        that count alone (or has no such metric): its value is used as it is.
        Read once, after the first step of the fit (Keras resets the tracker
        at the start of every epoch, so its count is 0 unless the step moved
        it).
        """
        if self._tracker is None or _read(self._tracker.count) == 0:
            return False
        tracked = float(keras.ops.convert_to_numpy(self._tracker.result()))
        return math.isclose(tracked, value, rel_tol=1e-5, abs_tol=1e-6) or not (
            math.isfinite(tracked) and math.isfinite(value))

    def _counts_samples(self) -> bool:
        """Whether the sample count of Keras' running mean is read each step."""
        return self._tracker is not None and not self._equal_batches

    def _step_was_skipped(self) -> bool:
        if self._scale_var is None:
            return False
        scale = _read(self._scale_var)
        skipped = scale < self._scale
        self._scale = scale
        return skipped

    def _validation_loss(self) -> float:
        model = self.model
        total = 0.0
        count = 0
        for x, y, sample_weight in self._val_batches:
            y_pred = model(x, training=False)
            loss = compute_loss(model, x, y, y_pred, sample_weight, training=False)
            n = _data.batch_size_of((x,))
            total += float(keras.ops.convert_to_numpy(loss)) * n
            count += n
        return total / count

    def _record(self, lr, loss):
        n = len(self._losses)
        self._lrs.append(lr)
        self._losses.append(loss)
        self._avg = self.smoothing * self._avg + (1.0 - self.smoothing) * loss
        smoothed = self._avg / (1.0 - self.smoothing ** (n + 1))
        if self._progbar is not None:
            self._progbar.update(n + 1, values=[("lr", lr), ("loss", smoothed)])
        if not math.isfinite(smoothed):
            self._stop("non_finite")
        elif self._best > 0 and smoothed > self.diverge_threshold * self._best:
            self._stop("diverged")
        else:
            self._best = min(self._best, smoothed)
            if len(self._lrs) >= self.num_steps:
                self._stop("completed")

    def _stop(self, reason):
        self.stop_reason = reason
        self.model.stop_training = True

    # ------------------------------------------------------------------ finish
    def on_train_end(self, logs=None):
        self.release(reason="ended")
        recorded = len(self._lrs)
        if self.stop_reason == "ended" and recorded < self.num_steps:
            per_epoch = (self.params or {}).get("steps")
            epochs = (self.params or {}).get("epochs")
            need = ""
            if per_epoch:
                need = (f" Give `fit` at least {math.ceil(self.num_steps / per_epoch)}"
                        f" epochs of {per_epoch} steps")
                need += f" (it had {epochs})," if epochs else ","
                need += " or lower `num_steps`."
            else:
                need = " Train for more steps, or lower `num_steps`."
            reached = self._lrs[-1] if self._lrs else self.min_lr
            warnings.warn(
                f"LRRangeTest: training ended after {recorded} of {self.num_steps} "
                f"steps, so the sweep reached only LR {reached:.3g} of "
                f"max_lr={self.max_lr:g}; a suggestion read off it may be far too "
                "low." + need, LRFinderWarning, stacklevel=2)

    def release(self, reason="interrupted"):
        """Undo the test's changes to the model and freeze the result.

        Called by `on_train_end`; call it yourself if `fit` was interrupted by
        an exception. Safe to call more than once.
        """
        if self.stop_reason is None:
            self.stop_reason = reason
        if self._control is not None:
            self._control.release()
            self._control = None
        self._plan_tensors = None
        if self._state is not None:
            self._state.restore(include_history=False)
            self._state = None
        if self._progbar is not None and self.stop_reason != "completed":
            self._progbar.update(len(self._lrs), finalize=True)
        self._progbar = None
        if self.verbose == 2:
            report.message(
                f"LRRangeTest: {len(self._lrs)} points, stopped: {self.stop_reason}"
            )

    @property
    def result(self) -> LRFinderResult:
        """The `LRFinderResult` of the last (or current) test."""
        return LRFinderResult(
            lrs=np.asarray(self._lrs, dtype=np.float64),
            losses=np.asarray(self._losses, dtype=np.float64),
            smoothing=self.smoothing,
            batch_size=self.batch_size,
            min_lr=self.min_lr,
            max_lr=self.max_lr,
            num_steps=self.num_steps,
            mode=self.mode,
            diverge_threshold=self.diverge_threshold,
            stop_reason=self.stop_reason or "running",
            skipped_steps=self._skipped,
            loss_kind="validation" if self.validation_data is not None else "train",
            momentum=self._momentum,
        )

    def get_config(self):
        return {
            "min_lr": self.min_lr,
            "max_lr": self.max_lr,
            "num_steps": self.num_steps,
            "mode": self.mode,
            "smoothing": self.smoothing,
            "diverge_threshold": self.diverge_threshold,
            "restore_weights": self.restore_weights,
            "verbose": self.verbose,
        }


def validate_sweep_arguments(
    *, min_lr, max_lr, num_steps, mode, smoothing, diverge_threshold
):
    """Check the arguments shared by `LRRangeTest` and `find_lr`."""
    min_lr = check_number("min_lr", min_lr, positive=True)
    max_lr = check_number("max_lr", max_lr, positive=True)
    if max_lr <= min_lr:
        raise ValueError(
            "Argument `max_lr` must be greater than `min_lr`. "
            f"Received: min_lr={min_lr:g}, max_lr={max_lr:g}"
        )
    check_int("num_steps", num_steps, minimum=2)
    check_choice("mode", mode, rules.SWEEP_MODES)
    check_number("smoothing", smoothing, low=0.0, high=1.0, high_inclusive=False)
    check_number("diverge_threshold", diverge_threshold, low=1.0, low_inclusive=False)

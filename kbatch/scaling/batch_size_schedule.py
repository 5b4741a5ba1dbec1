"""Increase the batch size instead of decaying the learning rate.

Smith, Kindermans, Ying and Le (2017) showed that where a step schedule would
divide the learning rate by `factor`, multiplying the batch size by `factor`
instead reaches the same accuracy with fewer parameter updates: the noise scale
of SGD, `g ~ lr * N / (B * (1 - momentum))`, falls by the same factor either
way. Once the batch reaches a cap (N/10 by default, where the approximation
`B << N` stops holding), the learning rate decays as before.

Changing the batch size inside one `fit` call is unreliable in Keras 3 (a
mutable `PyDataset` reports stale step counts, a `tf.data` pipeline does not see
a new batch size), so `fit_with_batch_schedule` runs one `fit` call per phase
with `initial_epoch` and merges their histories.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict
from dataclasses import dataclass

import keras

from kbatch._internal import accumulation
from kbatch._internal import backend as _backend
from kbatch._internal import data as _data
from kbatch._internal import optimizer as _optimizer
from kbatch._internal import report
from kbatch._internal.state import TrainingState
from kbatch._internal.validate import check_int
from kbatch._internal.validate import check_number

__all__ = [
    "BatchSizeSchedule",
    "Phase",
    "fit_with_batch_schedule",
    "updates_per_epoch",
]


@dataclass(frozen=True)
class Phase:
    """Epochs `[start_epoch, end_epoch)` trained at one batch size and LR.

    Example:

    >>> phase = Phase(0, 30, batch_size=128, learning_rate=0.1)
    >>> phase.end_epoch - phase.start_epoch
    30
    """

    start_epoch: int
    end_epoch: int
    batch_size: int
    learning_rate: float


class BatchSizeSchedule:
    """Where a step LR decay would divide the LR, multiply the batch instead.

    Reference: S. L. Smith, P.-J. Kindermans, C. Ying, Q. V. Le, "Don't Decay
    the Learning Rate, Increase the Batch Size", ICLR 2018,
    https://arxiv.org/abs/1711.00489.

    Args:
        batch_size: Integer. Batch size of the first phase.
        boundaries: Increasing epochs at which a step schedule would decay the
            learning rate.
        factor: Float > 1. The decay factor of that schedule (the batch is
            multiplied by it instead). Defaults to `5.0`, as in Smith et al.
        max_batch_size: Integer. Cap on the batch size; past it the learning
            rate decays instead. Defaults to `None`: a tenth of the number of
            training samples.

    Example:

    >>> schedule = BatchSizeSchedule(128, boundaries=[10, 20, 30], factor=5)
    >>> for p in schedule.phases(40, num_samples=50_000, learning_rate=0.1):
    ...     print(p.start_epoch, p.end_epoch, p.batch_size, round(p.learning_rate, 4))
    0 10 128 0.1
    10 20 640 0.1
    20 30 3200 0.1
    30 40 3200 0.02
    """

    def __init__(self, batch_size: int, boundaries, factor: float = 5.0,
                 max_batch_size: int | None = None):
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        boundaries = list(boundaries)
        for i, b in enumerate(boundaries):
            check_int(f"boundaries[{i}]", b, minimum=1)
        if any(b <= a for a, b in itertools.pairwise(boundaries)):
            raise ValueError(
                "Argument `boundaries` must be strictly increasing epochs. "
                f"Received: boundaries={boundaries}"
            )
        self.boundaries = [int(b) for b in boundaries]
        self.factor = check_number("factor", factor, low=1.0, low_inclusive=False)
        self.max_batch_size = check_int("max_batch_size", max_batch_size, minimum=1,
                                        allow_none=True)
        if self.max_batch_size is not None and self.max_batch_size < batch_size:
            raise ValueError(
                "Argument `max_batch_size` must be at least `batch_size`. Received: "
                f"batch_size={batch_size}, max_batch_size={max_batch_size}"
            )

    def cap(self, num_samples: int) -> int:
        if self.max_batch_size is not None:
            return self.max_batch_size
        return max(self.batch_size, num_samples // 10)

    def phases(self, epochs: int, num_samples: int, learning_rate: float):
        """The phases of a run of `epochs` epochs over `num_samples` samples."""
        epochs = check_int("epochs", epochs, minimum=1)
        num_samples = check_int("num_samples", num_samples, minimum=1)
        learning_rate = check_number("learning_rate", learning_rate, positive=True)
        cap = self.cap(num_samples)
        batch, lr, start = self.batch_size, learning_rate, 0
        phases = []
        for boundary in [*self.boundaries, epochs]:
            end = min(boundary, epochs)
            if end > start:
                phases.append(Phase(start, end, batch, lr))
                start = end
            if start >= epochs:
                break
            grown = round(batch * self.factor)
            if grown <= cap:
                batch = grown
            else:
                lr = lr / self.factor
        return phases

    def decay_equivalent(self, epochs: int, learning_rate: float):
        """The step LR-decay schedule this one replaces (constant batch size)."""
        epochs = check_int("epochs", epochs, minimum=1)
        lr, start, phases = learning_rate, 0, []
        for boundary in [*self.boundaries, epochs]:
            end = min(boundary, epochs)
            if end > start:
                phases.append(Phase(start, end, self.batch_size, lr))
                start = end
            if start >= epochs:
                break
            lr = lr / self.factor
        return phases

    def get_config(self):
        return {
            "batch_size": self.batch_size,
            "boundaries": list(self.boundaries),
            "factor": self.factor,
            "max_batch_size": self.max_batch_size,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return (f"BatchSizeSchedule(batch_size={self.batch_size}, boundaries="
                f"{self.boundaries}, factor={self.factor:g}, max_batch_size="
                f"{self.max_batch_size})")


class _UpdateCounter(keras.callbacks.Callback):
    """Counts optimizer updates per epoch, from the optimizer itself."""

    def __init__(self):
        super().__init__()
        self.updates = []
        self._start = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = int(self.model.optimizer.iterations.numpy())

    def on_epoch_end(self, epoch, logs=None):
        self.updates.append(int(self.model.optimizer.iterations.numpy()) - self._start)


def fit_with_batch_schedule(
    model,
    x,
    y=None,
    *,
    schedule: BatchSizeSchedule,
    epochs: int,
    num_samples: int | None = None,
    max_micro_batch_size: int | None = None,
    callbacks=None,
    verbose="auto",
    **fit_kwargs,
):
    """Train with a `BatchSizeSchedule`: one `fit` call per phase, one History.

    A phase whose batch is above `max_micro_batch_size`, or runs out of memory
    (the backend's out-of-memory error), trains as micro-batches with gradient
    accumulation: the batch and its learning rate stay the schedule's. An
    out-of-memory error puts back the phase's starting state (copied to host
    memory at each phase) and retries it at half the micro-batch; a size that
    failed is not tried again.

    Args:
        model: A compiled model whose optimizer has a plain (variable)
            learning rate: the first phase uses it, later phases change it
            only once the batch size is capped.
        x: NumPy arrays (with `y`), an *unbatched* `tf.data.Dataset`, a
            `PyDataset` with a settable `batch_size` attribute, or a function
            `batch_size -> PyDataset`.
        y: Targets, for arrays.
        schedule: The `BatchSizeSchedule`.
        epochs: Integer. Total epochs.
        num_samples: Integer. Training samples, when they cannot be counted
            from `x` (PyDataset, infinite dataset); sets the default cap.
        max_micro_batch_size: Integer. The largest batch known to fit (e.g.
            from `kbatch.find_max_batch_size`); larger ones accumulate.
            Defaults to `None`: found by running out of memory.
        callbacks: Callbacks passed to every phase's `fit`.
        verbose: As in `fit`.
        **fit_kwargs: Anything else `fit` accepts (`validation_data`, ...),
            except `batch_size`, `epochs` and `initial_epoch`.

    Returns:
        A `keras.callbacks.History` of all epochs, with `batch_size`,
        `micro_batch_size`, `learning_rate` and `updates` (optimizer steps)
        per epoch added.

    Example:

    >>> import keras, numpy as np
    >>> x, y = np.random.rand(640, 4), np.random.rand(640, 1)
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> model.compile(keras.optimizers.SGD(0.01), "mse")
    >>> schedule = BatchSizeSchedule(16, boundaries=[2], factor=4)
    >>> history = fit_with_batch_schedule(model, x, y, schedule=schedule,
    ...                                   epochs=3, verbose=0)
    >>> history.history["batch_size"], history.history["updates"]
    ([16, 16, 64], [40, 40, 10])
    """
    if not isinstance(schedule, BatchSizeSchedule):
        raise TypeError(
            "Argument `schedule` must be a `kbatch.BatchSizeSchedule`. "
            f"Received: schedule={schedule!r}"
        )
    for reserved in ("batch_size", "epochs", "initial_epoch"):
        if reserved in fit_kwargs:
            raise ValueError(
                f"Argument `{reserved}` is set by the schedule; do not pass it to "
                "fit_with_batch_schedule."
            )
    if getattr(model, "optimizer", None) is None:
        raise ValueError("fit_with_batch_schedule needs a compiled model.")
    max_micro_batch_size = check_int("max_micro_batch_size", max_micro_batch_size,
                                     minimum=1, allow_none=True)
    if _optimizer.gradient_accumulation_steps(model.optimizer) > 1:
        raise ValueError(
            "fit_with_batch_schedule chooses the gradient accumulation itself; "
            "compile the model with an optimizer without "
            "`gradient_accumulation_steps`.")
    if not _optimizer.has_settable_learning_rate(model.optimizer):
        raise ValueError(
            "fit_with_batch_schedule sets the learning rate of each phase, so the "
            "optimizer must have a plain learning rate, not a "
            "LearningRateSchedule. Compile with e.g. SGD(learning_rate=0.1)."
        )
    if num_samples is None:
        num_samples = _data.count_samples(x, y)
    if num_samples is None:
        if schedule.max_batch_size is None:
            raise ValueError(
                "The number of training samples cannot be counted from `x`; pass "
                "`num_samples` (it sets the default batch-size cap, N/10) or give "
                "the schedule a `max_batch_size`."
            )
        num_samples = schedule.max_batch_size * 10
    base_lr = _optimizer.current_learning_rate(model.optimizer)
    phases = schedule.phases(epochs, num_samples, base_lr)

    merged = keras.callbacks.History()
    merged.history = {}
    merged.epoch = []
    counter = _UpdateCounter()
    fails = 0  # the smallest micro-batch that ran out of memory
    try:
        for phase in phases:
            history, micro, fails = _fit_phase(
                model, x, y, phase, counter, callbacks, verbose, fit_kwargs,
                max_micro_batch_size, fails)
            epochs_run = len(history.epoch)
            merged.epoch.extend(history.epoch)
            extra = {
                "batch_size": [phase.batch_size] * epochs_run,
                "micro_batch_size": [micro] * epochs_run,
                "learning_rate": [phase.learning_rate] * epochs_run,
                "updates": counter.updates[:epochs_run],
            }
            for key, values in {**history.history, **extra}.items():
                merged.history.setdefault(key, []).extend(values)
            if (model.stop_training
                    or epochs_run < phase.end_epoch - phase.start_epoch):
                break
    finally:
        accumulation.configure(model, 1)
    merged.set_model(model)
    merged.params = {"epochs": epochs, "phases": [asdict(p) for p in phases]}
    model.history = merged
    return merged


def _fit_phase(model, x, y, phase, counter, callbacks, verbose, fit_kwargs,
               limit, fails):
    """One phase's `fit`, as micro-batches past the memory limit; returns its
    History, the micro-batch it trained at and the smallest that failed."""
    micro = accumulation.micro_batch(phase.batch_size, fails, limit)
    snapshot = TrainingState.capture(model)  # what an out-of-memory goes back to
    while True:
        accumulation.configure(model, phase.batch_size // micro)
        model.optimizer.learning_rate = phase.learning_rate
        counter.updates = []
        try:
            history = model.fit(
                **_data.rebatched(x, y, micro, model, "fit_with_batch_schedule"),
                initial_epoch=phase.start_epoch,
                epochs=phase.end_epoch,
                callbacks=[*(callbacks or []), counter],
                verbose=verbose,
                **fit_kwargs,
            )
            return history, micro, fails
        except Exception as error:
            if not _backend.is_oom(error) or micro < 2 or micro % 2:
                raise
            snapshot.restore()
            fails = micro
            micro //= 2
            if verbose:
                report.message(
                    f"fit_with_batch_schedule: batch {micro * 2} ran out of "
                    f"memory; retrying epoch {phase.start_epoch + 1} as "
                    f"{phase.batch_size // micro} micro-batches of {micro} with "
                    "gradient accumulation.")


def updates_per_epoch(num_samples: int, batch_size: int) -> int:
    """Optimizer updates in one epoch of `num_samples` at `batch_size`.

    Example:

    >>> updates_per_epoch(1000, 128)  # the last, short batch counts too
    8
    """
    return math.ceil(num_samples / batch_size)

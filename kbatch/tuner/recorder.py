"""`TrialRecorder`: the per-epoch cost and progress of a tuner trial."""

from __future__ import annotations

import math
import time

import keras

from kbatch._internal import optimizer as _optimizer

__all__ = ["TrialRecorder"]


class TrialRecorder(keras.callbacks.Callback):
    """Records, per epoch of a trial: wall time, optimizer updates, samples per
    second, the batch size and learning rate, and (with a `target`) the time
    and epochs to reach a metric value; adds them to the epoch's `logs`, so
    KerasTuner records them as trial metrics.

    Args:
        batch_size: Integer. The trial's batch size.
        learning_rate: Float. The trial's learning rate (after any warm-up).
        target: Optional `(metric, value, "max"|"min")`.

    Example:

    >>> recorder = TrialRecorder(32, 0.01, ("val_accuracy", 0.9, "max"))
    >>> recorder.batch_size, recorder.rows
    (32, [])
    """

    def __init__(self, batch_size, learning_rate, target):
        super().__init__()
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.target = target
        self.rows = []
        self._start = None
        self._updates0 = 0
        self._reached = None

    def on_train_begin(self, logs=None):
        self._start = time.perf_counter()
        self._updates0 = int(self.model.optimizer.iterations.numpy())

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._start
        updates = int(self.model.optimizer.iterations.numpy()) - self._updates0
        accumulation = _optimizer.gradient_accumulation_steps(self.model.optimizer)
        row = {
            "train_seconds": seconds,
            "updates": float(updates),
            "samples_per_second": updates * accumulation * self.batch_size
            / max(seconds, 1e-9),
            "batch_size": float(self.batch_size),
            "learning_rate": float(self.learning_rate),
        }
        if self.target is not None:
            name, value, direction = self.target
            current = (logs or {}).get(name)
            if self._reached is None and current is not None and (
                current >= value if direction == "max" else current <= value
            ):
                self._reached = (seconds, epoch + 1)
            row["time_to_target"] = self._reached[0] if self._reached else math.inf
            row["epochs_to_target"] = (float(self._reached[1]) if self._reached
                                       else math.inf)
        self.rows.append(row)
        if logs is not None:
            logs.update(row)

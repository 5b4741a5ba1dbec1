"""Typed trial failures, so that a search reacts to a failure by its kind and
not by parsing its message."""

from __future__ import annotations

import keras_tuner

__all__ = ["OutOfMemoryError"]


class OutOfMemoryError(keras_tuner.errors.FailedTrialError):
    """A trial ran out of device memory at its batch size.

    A `keras_tuner.errors.FailedTrialError`, so KerasTuner records the trial
    as failed and goes on; `PatternSearchOracle` reads its `batch_size` and
    proposes no batch size this large again.

    Args:
        batch_size: Integer. The batch size that did not fit.
        message: Optional text; defaults to one naming the batch size.

    Example:

    >>> error = OutOfMemoryError(512)
    >>> error.batch_size, isinstance(error, keras_tuner.errors.FailedTrialError)
    (512, True)
    """

    def __init__(self, batch_size: int, message: str | None = None):
        self.batch_size = int(batch_size)
        super().__init__(message or (
            f"Out of memory at batch size {self.batch_size}; this search will "
            "not run batch sizes this large again."))


_TYPE_LINE = f"{OutOfMemoryError.__module__}.{OutOfMemoryError.__qualname__}:"


def ran_out_of_memory(trial) -> bool:
    """Whether a failed KerasTuner trial raised `OutOfMemoryError`.

    KerasTuner keeps, of a failed trial, its status and the formatted traceback
    (also across the chief/worker engine), not the exception object; the
    exception's type is read from the traceback's exception line, so the test
    does not depend on the message's wording.

    Example:

    >>> import traceback
    >>> from keras_tuner.engine.trial import Trial
    >>> from keras_tuner import HyperParameters
    >>> try:
    ...     raise OutOfMemoryError(256)
    ... except OutOfMemoryError:
    ...     trial = Trial(HyperParameters(), message=traceback.format_exc())
    >>> ran_out_of_memory(trial), ran_out_of_memory(Trial(HyperParameters()))
    (True, False)
    """
    message = getattr(trial, "message", None) or ""
    return any(line.startswith(_TYPE_LINE) for line in message.splitlines())

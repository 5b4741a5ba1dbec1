"""`find_max_batch_size`: the largest batch that fits in memory, for training
and for evaluation."""

from __future__ import annotations

import gc
import traceback

import keras
import numpy as np

from kbatch._internal import backend as _backend
from kbatch._internal import data as _data
from kbatch._internal import report
from kbatch._internal.building import ensure_built
from kbatch._internal.model_checks import check_compiled_model
from kbatch._internal.results import Result
from kbatch._internal.state import TrainingState
from kbatch._internal.validate import check_choice
from kbatch._internal.validate import check_int
from kbatch._internal.validate import check_number
from kbatch._internal.validate import check_verbose

__all__ = [
    "MODES",
    "MaxBatchSizeResult",
    "find_max_batch_size",
]

MODES = ("power", "binsearch")


class MaxBatchSizeResult(Result):
    """Largest batch sizes that fit, and every trial that found them.

    Attributes:
        train_batch_size: Largest batch that trains, less the margin (`None`
            when not even `start` fits).
        eval_batch_size: The same for evaluation/prediction (`None` if not
            searched).
        largest_train, largest_eval: The largest sizes that ran, before the
            margin.
        trials: `[{"phase", "batch_size", "outcome"}, ...]` in order; outcomes
            are `"ok"` and `"oom"`.
        margin: The safety margin taken off.

    Example:

    >>> result = MaxBatchSizeResult(1000, None, [], margin=0.05,
    ...                             max_batch_size=8192)
    >>> result.train_batch_size  # 5% below the largest batch that trained
    950
    """

    def __init__(self, largest_train, largest_eval, trials, margin, max_batch_size):
        self.largest_train = largest_train
        self.largest_eval = largest_eval
        self.trials = list(trials)
        self.margin = margin
        self.max_batch_size = max_batch_size
        self.train_batch_size = self._with_margin(largest_train)
        self.eval_batch_size = self._with_margin(largest_eval)

    def _with_margin(self, size):
        if size is None:
            return None
        return max(1, int(size * (1.0 - self.margin)))

    @property
    def hit_limit(self) -> bool:
        """True when `max_batch_size` itself trained: memory was not the limit."""
        return self.largest_train == self.max_batch_size

    @classmethod
    def _from_fields(cls, data):
        return cls(data["largest_train"], data["largest_eval"], data["trials"],
                   float(data["margin"]), data["max_batch_size"])

    def _fields(self):
        return {
            "train_batch_size": self.train_batch_size,
            "eval_batch_size": self.eval_batch_size,
            "largest_train": self.largest_train,
            "largest_eval": self.largest_eval,
            "margin": self.margin,
            "max_batch_size": self.max_batch_size,
            "trials": self.trials,
        }

    def __repr__(self):
        return (f"<MaxBatchSizeResult train={self.train_batch_size} "
                f"eval={self.eval_batch_size} ({len(self.trials)} trials, margin "
                f"{self.margin:g}{', limit reached' if self.hit_limit else ''})>")


class _Trials:
    """Runs one trial per batch size, restoring the model after each."""

    def __init__(self, model, x, y, steps, state, verbose):
        self.model, self.x, self.y = model, x, y
        self.n = _data.num_samples(x, "x")
        self.steps = steps
        self.state = state
        self.verbose = verbose
        self.log = []

    def batch(self, size):
        idx = np.arange(size) % self.n
        xb = keras.tree.map_structure(lambda a: a[idx], self.x)
        yb = None if self.y is None else keras.tree.map_structure(
            lambda a: a[idx], self.y)
        return xb, yb

    def fits(self, phase, size):
        xb, yb = self.batch(size)
        try:
            for _ in range(self.steps):
                if phase == "train":
                    self.model.train_on_batch(xb, yb)
                else:
                    self.model.predict_on_batch(xb)
            outcome = "ok"
        except Exception as error:
            if not _backend.is_oom(error):
                raise
            outcome = "oom"
            # The error's traceback keeps the failed step's frames (and their
            # tensors) alive, in reference cycles: drop the frames' locals so
            # that reference counting frees the memory before the next size.
            traceback.clear_frames(error.__traceback__)
        finally:
            del xb, yb
            self.state.restore()
        if outcome == "oom":
            # Whatever cycles are left are young: a collection of the young
            # generations frees them without the cost of a full collection
            # (seconds in a large session, for every size probed).
            gc.collect(1)
        self.log.append({"phase": phase, "batch_size": int(size), "outcome": outcome})
        if self.verbose:
            report.message(f"find_max_batch_size: {phase} batch {size}: {outcome}")
        return outcome == "ok"


def _search(trials, phase, start, limit, mode):
    """Largest size in [start, limit] that fits (None if start does not)."""
    if not trials.fits(phase, start):
        return None
    low, high = start, None  # low fits; high (if known) does not
    if mode == "power":
        size = start
        while True:
            if size == limit:
                return limit
            size = min(size * 2, limit)
            if trials.fits(phase, size):
                low = size
            else:
                high = size
                break
    else:
        if trials.fits(phase, limit):
            return limit
        high = limit
    while high - low > 1:
        middle = (low + high) // 2
        if trials.fits(phase, middle):
            low = middle
        else:
            high = middle
    return low


@_backend.in_model_scope
def find_max_batch_size(
    model,
    x,
    y=None,
    *,
    start: int = 2,
    max_batch_size: int = 8192,
    mode: str = "power",
    steps_per_trial: int = 3,
    margin: float = 0.05,
    evaluation: bool = True,
    verbose="auto",
) -> MaxBatchSizeResult:
    """Find the largest batch size that trains (and evaluates) without running
    out of memory.

    Each trial runs `steps_per_trial` training steps (`train_on_batch`) at one
    batch size, built by cycling the given samples; an out-of-memory error of
    the backend (`tf.errors.ResourceExhaustedError` on TensorFlow) marks the
    size as too large, any other error is raised. `"power"` mode doubles the
    size from `start` until a trial fails, then bisects between the last size
    that fit and the first that did not; `"binsearch"` bisects
    `[start, max_batch_size]` from the outset. Both return the exact largest
    size that fits; `margin` then takes a safety fraction off (memory use
    varies a little from run to run). Evaluation is searched separately from
    the training size up: without gradients and optimizer state it fits more.

    The weights, the optimizer state and every other variable are restored
    after every trial and at the end, whatever happens.

    Args:
        model: A compiled `keras.Model`.
        x, y: Training samples as arrays (a handful is enough; they are cycled),
            or an unbatched `tf.data.Dataset` (its first `max_batch_size`
            samples are used).
        start: Integer. First (smallest) batch size tried. Defaults to `2`.
        max_batch_size: Integer. Largest size tried. Defaults to `8192`.
        mode: `"power"` or `"binsearch"`. Defaults to `"power"`.
        steps_per_trial: Integer. Training steps per trial. Defaults to `3`.
        margin: Float in `[0, 1)`. Fraction taken off the largest size that
            fit. Defaults to `0.05`.
        evaluation: Boolean. Also find the largest evaluation (prediction)
            batch. Defaults to `True`.
        verbose: `"auto"`, `0` or `1` (a line per trial).

    Returns:
        A `MaxBatchSizeResult`.

    Example:

    >>> import keras, numpy as np
    >>> x = np.random.rand(512, 8).astype("float32")
    >>> y = (x.sum(axis=1) > 4).astype("int32")
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16),
    ...                           keras.layers.Dense(2, activation="softmax")])
    >>> model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    >>> result = find_max_batch_size(model, x, y, max_batch_size=256, verbose=0)
    >>> result.largest_train  # on a CPU with GBs free: the limit, not memory
    256
    >>> result.train_batch_size  # with the 5% margin
    243
    """
    check_compiled_model(model, "find_max_batch_size")
    start = check_int("start", start, minimum=1)
    max_batch_size = check_int("max_batch_size", max_batch_size, minimum=1)
    if start > max_batch_size:
        raise ValueError(
            "Argument `start` must not exceed `max_batch_size`. Received: "
            f"start={start}, max_batch_size={max_batch_size}"
        )
    check_choice("mode", mode, MODES)
    steps_per_trial = check_int("steps_per_trial", steps_per_trial, minimum=1)
    margin = check_number("margin", margin, low=0.0, high=1.0, high_inclusive=False)
    verbose = check_verbose(verbose)
    x, y = _data.arrays_for_trials(x, y, max_batch_size)

    ensure_built(model, (keras.tree.map_structure(lambda a: a[:1], x),))
    state = TrainingState.capture(model)
    trials = _Trials(model, x, y, steps_per_trial, state, verbose)
    try:
        largest_train = _search(trials, "train", start, max_batch_size, mode)
        largest_eval = None
        if evaluation:
            floor = largest_train if largest_train is not None else start
            largest_eval = _search(trials, "eval", floor, max_batch_size, mode)
    finally:
        state.restore()
    return MaxBatchSizeResult(largest_train, largest_eval, trials.log, margin,
                              max_batch_size)

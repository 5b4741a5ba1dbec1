"""`measure_throughput`: training samples per second at each batch size, and the
knee past which a larger batch buys little speed."""

from __future__ import annotations

import math
import time

import keras
import numpy as np

from kbatch._internal import backend as _backend
from kbatch._internal import data as _data
from kbatch._internal import report
from kbatch._internal.building import ensure_built
from kbatch._internal.model_checks import check_compiled_model
from kbatch._internal.results import Result
from kbatch._internal.state import TrainingState
from kbatch._internal.validate import check_int
from kbatch._internal.validate import check_number
from kbatch._internal.validate import check_verbose
from kbatch.critical.fits import throughput_knee

__all__ = [
    "ThroughputResult",
    "measure_throughput",
]


class ThroughputResult(Result):
    """Samples per second per batch size, and the knee of the curve.

    Example:

    >>> result = ThroughputResult([16, 64, 256], [1000.0, 3700.0, 4000.0])
    >>> result.knee, result.best  # 64 reaches >= 90% of the best
    (64, 4000.0)
    """

    def __init__(self, batch_sizes, samples_per_second, fraction=0.9,
                 out_of_memory=()):
        self.batch_sizes = [int(b) for b in batch_sizes]
        self.samples_per_second = [float(v) for v in samples_per_second]
        self.fraction = fraction
        self.out_of_memory = [int(b) for b in out_of_memory]
        self.knee = throughput_knee(self.batch_sizes, self.samples_per_second,
                                    fraction)
        finite = [v for v in self.samples_per_second if math.isfinite(v)]
        self.best = max(finite) if finite else math.nan

    @classmethod
    def _from_fields(cls, data):
        speeds = [math.nan if v is None else float(v)
                  for v in data["samples_per_second"]]
        return cls(data["batch_sizes"], speeds, float(data.get("fraction", 0.9)),
                   data.get("out_of_memory", ()))

    def _fields(self):
        return {
            "batch_sizes": self.batch_sizes,
            "samples_per_second": [v if math.isfinite(v) else None
                                   for v in self.samples_per_second],
            "knee": self.knee,
            "fraction": self.fraction,
            "out_of_memory": self.out_of_memory,
        }

    def plot(self, ax=None):
        """Throughput against batch size (log scale), the knee marked."""
        from kbatch import plotting

        return plotting.plot_throughput(self, ax=ax)

    def __repr__(self):
        return (f"<ThroughputResult knee={self.knee} (>= {self.fraction:.0%} of "
                f"the best {self.best:.0f} samples/s), {len(self.batch_sizes)} "
                "batch sizes>")


class _Timer(keras.callbacks.Callback):
    """Times the steps after the first `warmup_steps`. Keras calls batch
    callbacks once per `steps_per_execution` steps, with the index of the last
    step run: steps are counted from that index, not from the calls."""

    def __init__(self, warmup_steps):
        super().__init__()
        self.warmup_steps = warmup_steps
        self.start = None
        self.end = None
        self.start_step = None
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps = int(batch) + 1
        now = time.perf_counter()
        if self.start is None and self.steps >= self.warmup_steps:
            self.start, self.start_step = now, self.steps
        self.end = now


@_backend.in_model_scope
def measure_throughput(
    model,
    x,
    y=None,
    *,
    batch_sizes,
    num_steps: int = 20,
    warmup_steps: int = 3,
    fraction: float = 0.9,
    verbose="auto",
) -> ThroughputResult:
    """Measure training throughput (samples per second) at several batch sizes.

    For each batch size, `warmup_steps + num_steps` training steps run through
    `fit` (so the input pipeline is included); the first `warmup_steps`
    (tracing, compilation, caches) are excluded from the timing. A batch size
    that runs out of memory is recorded as such and larger ones are skipped.
    The weights and optimizer are restored afterwards.

    The knee is the smallest batch size reaching `fraction` (90%) of the best
    throughput: below it the hardware idles, above it a larger batch buys
    little speed.

    Args:
        model: A compiled `keras.Model`.
        x, y: Samples as arrays (cycled) or an unbatched `tf.data.Dataset`.
        batch_sizes: Increasing batch sizes to measure.
        num_steps: Integer. Timed steps per batch size. Defaults to `20`.
        warmup_steps: Integer. Untimed steps first. Defaults to `3`.
        fraction: Float. Share of the best throughput that defines the knee.
            Defaults to `0.9`.
        verbose: `"auto"`, `0` or `1` (a line per batch size).

    Returns:
        A `ThroughputResult`.

    Example:

    >>> import keras, numpy as np
    >>> x = np.random.rand(512, 8).astype("float32")
    >>> y = (x.sum(axis=1) > 4).astype("int32")
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16),
    ...                           keras.layers.Dense(2, activation="softmax")])
    >>> model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    >>> result = measure_throughput(model, x, y, batch_sizes=[8, 64, 256],
    ...                             num_steps=5, verbose=0)
    >>> result.knee in (8, 64, 256)  # the smallest batch at >= 90% of the best
    True
    """
    check_compiled_model(model, "measure_throughput")
    sizes = list(batch_sizes) if not isinstance(batch_sizes, int) else [batch_sizes]
    if not sizes:
        raise ValueError("Argument `batch_sizes` is empty. Pass at least one size.")
    for i, b in enumerate(sizes):
        check_int(f"batch_sizes[{i}]", b, minimum=1)
    if sorted(set(sizes)) != sizes:
        raise ValueError(
            "Argument `batch_sizes` must be strictly increasing. "
            f"Received: batch_sizes={sizes}"
        )
    num_steps = check_int("num_steps", num_steps, minimum=1)
    warmup_steps = check_int("warmup_steps", warmup_steps, minimum=1)
    fraction = check_number("fraction", fraction, low=0.0, high=1.0,
                            low_inclusive=False)
    verbose = check_verbose(verbose)
    x, y = _data.arrays_for_trials(x, y, max(sizes))
    n = _data.num_samples(x, "x")

    ensure_built(model, (keras.tree.map_structure(lambda a: a[:1], x),))
    # whole executions: Keras runs `steps_per_execution` steps per call
    spe = int(getattr(model, "steps_per_execution", 1) or 1)
    warm = -(-warmup_steps // spe) * spe
    timed = -(-num_steps // spe) * spe
    state = TrainingState.capture(model)
    speeds, oom = [], []
    try:
        for size in sizes:
            if oom:
                speeds.append(math.nan)
                continue
            total = size * (warm + timed)
            idx = np.arange(total) % n
            xb = keras.tree.map_structure(lambda a, idx=idx: a[idx], x)
            yb = None if y is None else keras.tree.map_structure(
                lambda a, idx=idx: a[idx], y)
            timer = _Timer(warm)
            try:
                model.fit(xb, yb, batch_size=size, epochs=1, shuffle=False,
                          callbacks=[timer], verbose=0)
                elapsed = timer.end - timer.start
                speed = size * (timer.steps - timer.start_step) / elapsed
            except Exception as error:
                if not _backend.is_oom(error):
                    raise
                oom.append(size)
                speed = math.nan
            finally:
                state.restore()
            speeds.append(speed)
            if verbose:
                shown = "out of memory" if math.isnan(speed) else f"{speed:,.0f}/s"
                report.message(f"measure_throughput: batch {size}: {shown}")
    finally:
        state.restore()
    return ThroughputResult(sizes, speeds, fraction, oom)

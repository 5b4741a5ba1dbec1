"""`find_lr`: run an LR range test on a compiled model and leave it untouched."""

from __future__ import annotations

import time
import warnings

import keras

from kbatch._internal import backend as _backend
from kbatch._internal import data as _data
from kbatch._internal import optimizer as _optimizer
from kbatch._internal import report
from kbatch._internal.building import ensure_built
from kbatch._internal.model_checks import check_compiled_model
from kbatch._internal.model_checks import check_trainable
from kbatch._internal.state import TrainingState
from kbatch._internal.validate import check_int
from kbatch._internal.validate import check_verbose
from kbatch.lr.range_test import MAX_CONSECUTIVE_SKIPS
from kbatch.lr.range_test import LRRangeTest
from kbatch.lr.range_test import validate_sweep_arguments
from kbatch.lr.result import LRFinderResult
from kbatch.lr.result import LRFinderWarning

__all__ = [
    "DEFAULT_NUM_SAMPLES",
    "LRFinderWarning",
    "find_lr",
]

# A test is sized in samples: a small batch needs more steps for its loss to
# fall visibly. 6,400 samples is 100 steps at batch 64 (never fewer than 100).
DEFAULT_NUM_SAMPLES = 6400
MIN_STEPS = 100
# A curve whose loss was not seen to fall is swept again, this many times
# longer, up to EXTENSIONS times.
EXTEND_FACTOR = 4
EXTENSIONS = 2


def _check_callbacks(callbacks) -> list:
    if callbacks is None:
        return []
    if isinstance(callbacks, keras.callbacks.Callback):
        callbacks = [callbacks]
    callbacks = list(callbacks)
    for i, callback in enumerate(callbacks):
        if not isinstance(callback, keras.callbacks.Callback):
            raise TypeError(
                "Argument `callbacks` must be a list of keras.callbacks.Callback. "
                f"Received: callbacks[{i}] of type {type(callback).__name__}")
    return callbacks


@_backend.in_model_scope
def find_lr(
    model,
    x,
    y=None,
    *,
    batch_size: int | None = None,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    num_steps: int | None = None,
    num_samples: int | None = None,
    mode: str = "exponential",
    smoothing: float = 0.98,
    diverge_threshold: float = 4.0,
    validation_data=None,
    sample_weight=None,
    shuffle: bool = True,
    seed: int | None = None,
    extend: bool = True,
    callbacks=None,
    verbose="auto",
) -> LRFinderResult:
    """Run an LR range test and return the curve with suggested learning rates.

    Trains `model` while the learning rate grows from `min_lr` to `max_lr`,
    records each batch's own loss, stops when the loss diverges, and then puts
    the model back exactly as it was: weights, every optimizer variable
    (iteration count, moments, learning rate or schedule, loss scale), seed
    states and metrics. The restore also happens after an exception, a NaN or
    Ctrl-C.

    The test is sized in samples (`num_samples`, default 6,400, and never
    fewer than 100 steps), so a small batch gets the steps its noisier loss
    needs. If the loss was not seen to fall by more than its noise, the test
    is run again 4x longer (twice at most, `extend=True`); a curve that still
    did not fall gives no suggestion (`suggestion()` raises and says what to
    change) rather than a learning rate at which the model does not train.

    Data can be NumPy arrays (batched here with a local random generator, so
    global random states are left alone), a `tf.data.Dataset` (batched, or
    unbatched together with `batch_size`), a `keras.utils.PyDataset` or a Python
    generator of batches. Data shorter than the test is cycled; a generator is
    consumed and its batches replayed.

    Reference: Leslie N. Smith, "Cyclical Learning Rates for Training Neural
    Networks", 2017, https://arxiv.org/abs/1506.01186.

    Args:
        model: A compiled `keras.Model`.
        x: Input data (see above).
        y: Targets, for array inputs only.
        batch_size: Integer. Batch size for array inputs (default `32`) or for
            an unbatched `tf.data.Dataset`. Must be `None` for pre-batched data.
        min_lr: Float. First learning rate. Defaults to `1e-7`.
        max_lr: Float. Last learning rate. Defaults to `10.0`.
        num_steps: Optional integer. Number of learning rates tried (one per
            step). Defaults to `num_samples / batch_size`, at least 100.
        num_samples: Optional integer. Samples the test trains on (instead of
            `num_steps`). Defaults to 6,400.
        mode: `"exponential"` or `"linear"`. Defaults to `"exponential"`.
        smoothing: Float in `[0, 1)`. EMA coefficient of the loss. Defaults to
            `0.98`.
        diverge_threshold: Float `> 1`. Stop when the smoothed loss exceeds this
            multiple of its best value. Defaults to `4.0`.
        validation_data: Optional few fixed batches (`(x, y)` arrays, a batched
            `tf.data.Dataset` or a `PyDataset`); the curve then uses their loss
            after each step. Slower, less noisy.
        sample_weight: Optional array of one weight per sample, for array
            inputs (a dataset carries its weights as the third element).
        shuffle: Boolean. Shuffle array inputs. Defaults to `True`.
        seed: Optional integer seed for shuffling array inputs.
        extend: Boolean. Sweep again, longer, when the loss was not seen to
            fall. Defaults to `True`.
        callbacks: Optional list of `keras.callbacks.Callback` run during the
            sweep, after the range test's own: a `TensorBoard(update_freq=1)`
            or `CSVLogger` sees the LR (`learning_rate`) and the batch's own
            loss (`range_test_loss`) in the logs. An extended sweep is another
            `fit`, so they see it again.
        verbose: `"auto"`, `0`, `1` or `2`. Defaults to `"auto"` (progress bar).

    Returns:
        An `LRFinderResult`: `.suggestion()`, `.suggestions()`, `.plot()`,
        `.save(path)`, and the raw `.lrs` / `.losses`.

    Example:

    >>> import keras, numpy as np
    >>> x = np.random.rand(1024, 8).astype("float32")
    >>> y = (x.sum(axis=1) > 4).astype("int32")
    >>> model = keras.Sequential([
    ...     keras.Input((8,)),
    ...     keras.layers.Dense(16, activation="relu"),
    ...     keras.layers.Dense(2, activation="softmax"),
    ... ])
    >>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    >>> result = find_lr(model, x, y, min_lr=1e-5, num_steps=60, verbose=0)
    >>> lr = result.suggestion()  # then: model.optimizer.learning_rate = lr
    >>> 1e-5 < lr < 10.0
    True
    """
    # Every argument is checked before anything touches the model.
    if num_steps is not None and num_samples is not None:
        raise ValueError(
            "Pass `num_steps` or `num_samples`, not both. Received: "
            f"num_steps={num_steps}, num_samples={num_samples}"
        )
    if num_samples is not None:
        num_samples = check_int("num_samples", num_samples, minimum=1)
    callbacks = _check_callbacks(callbacks)
    validate_sweep_arguments(
        min_lr=min_lr,
        max_lr=max_lr,
        num_steps=MIN_STEPS if num_steps is None else num_steps,
        mode=mode,
        smoothing=smoothing,
        diverge_threshold=diverge_threshold,
    )
    verbose_level = check_verbose(verbose)
    check_compiled_model(model, "find_lr")
    if seed is not None:
        check_int("seed", seed, minimum=0)
    if y is None and _data.is_array_like(x) and getattr(model, "loss", None):
        raise ValueError(
            "Argument `y` is required with array inputs: the model was compiled "
            f"with a loss ({model.loss!r}) that compares predictions with targets. "
            "Pass `find_lr(model, x, y, ...)`, or a dataset of `(x, y)` batches.")
    if sample_weight is not None and not _data.is_array_like(x):
        raise ValueError(
            "Argument `sample_weight` is for array inputs; a dataset carries its "
            "weights in its batches, as `(x, y, sample_weight)`.")

    optimizer = model.optimizer
    spe = getattr(model, "steps_per_execution", 1) or 1
    group = _data.lcm(int(spe), _optimizer.gradient_accumulation_steps(optimizer))
    mixed = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    def batches_for(steps):
        # Steps the loss scaler skips are retried: allow for as many again,
        # plus the run of skips while a too-large initial scale halves down.
        skips = steps + MAX_CONSECUTIVE_SKIPS if mixed else 0
        return (steps + skips) * group

    stream = _data.make_stream(
        x,
        y,
        batch_size=batch_size,
        num_batches=batches_for(num_steps or MIN_STEPS),
        shuffle=shuffle,
        seed=seed,
        model=model,
        sample_weight=sample_weight,
    )
    if num_steps is None:
        samples = DEFAULT_NUM_SAMPLES if num_samples is None else num_samples
        num_steps = max(MIN_STEPS, -(-samples // stream.batch_size))
    if validation_data is not None:
        validation_data = _data.fixed_batches(validation_data, stream.batch_size)

    ensure_built(model, stream.first_batch)
    check_trainable(model)

    started = time.perf_counter()
    attempts = 1 + (EXTENSIONS if extend else 0)
    for attempt in range(attempts):
        callback = LRRangeTest(
            min_lr=min_lr,
            max_lr=max_lr,
            num_steps=num_steps,
            mode=mode,
            smoothing=smoothing,
            diverge_threshold=diverge_threshold,
            restore_weights=False,
            verbose=verbose_level,
        )
        callback.validation_data = validation_data
        callback._equal_batches = stream.equal_batches
        stream.resize(batches_for(num_steps))
        state = TrainingState.capture(model)
        try:
            model.fit(**stream.fit_kwargs(), epochs=1,
                      callbacks=[callback, *callbacks], verbose=0)
        finally:
            callback.release()
            state.restore()
        result = callback.result
        # A NaN or an overflow is not cured by a longer sweep.
        if (not result.dead or attempt == attempts - 1
                or result.stop_reason not in ("completed", "diverged")):
            break
        num_steps *= EXTEND_FACTOR
        if verbose_level:
            report.message(
                f"The loss was not seen to fall in {result.lrs.size} steps; "
                f"sweeping again with {num_steps} steps."
            )
    seconds = time.perf_counter() - started

    result.batch_size = stream.batch_size
    result.metadata.update(
        {
            "model": model.name,
            "optimizer": type(_optimizer.base_optimizer(optimizer)).__name__,
            "loss_scaled": mixed,
            "dtype_policy": model.dtype_policy.name,
            "data": stream.kind,
            "steps_per_execution": int(spe),
            "extensions": attempt,
            "seconds": round(seconds, 3),
        }
    )
    for problem in result.diagnose():
        warnings.warn(problem, LRFinderWarning, stacklevel=3)
    if result.dead and not any("never fell" in p or "noisy" in p
                               for p in result.diagnose()):
        warnings.warn(
            "The loss was not seen to fall by more than its noise; there is no "
            "suggestion. Give the test more samples (`num_samples`) or a larger "
            "`batch_size`.", LRFinderWarning, stacklevel=3)
    if verbose_level:
        report.message(result.summary())
    return result

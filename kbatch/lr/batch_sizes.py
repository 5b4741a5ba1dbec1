"""`lr_for_batch_sizes`: the learning rate that is best at each batch size,
for a training budget, measured with short probe runs."""

from __future__ import annotations

import math
import time
import warnings

import keras
import numpy as np

from kbatch._internal import accumulation
from kbatch._internal import backend as _backend
from kbatch._internal import data as _data
from kbatch._internal import optimizer as _optimizer
from kbatch._internal import report
from kbatch._internal.building import ensure_built
from kbatch._internal.model_checks import check_compiled_model
from kbatch._internal.model_checks import check_trainable
from kbatch._internal.results import Result
from kbatch._internal.state import TrainingState
from kbatch._internal.validate import check_int
from kbatch._internal.validate import check_number
from kbatch._internal.validate import check_verbose
from kbatch.critical import fits
from kbatch.lr import probes

__all__ = ["LRByBatchSize", "lr_for_batch_sizes"]

# Each probe trains this fraction of the budget's samples; rungs of the LR
# ladder are this many decades apart; at most this many rungs per batch size.
PROBE_FRACTION = 0.25
SPACING = 0.5
MAX_RUNGS = 8
# ... but at least this many steps (capped at the budget's): two time
# constants of a 0.9 momentum or Adam's beta_1, so a probe sees the full
# effective step. Shorter probes missed divergences that come later.
MIN_PROBE_STEPS = 20
# Probes shorter than this are run again at the best LR of their ladder, on
# another data order, and the two losses averaged: with few steps, one run
# at an LR near the edge of stability may be a lucky one. (Longer probes
# average over enough batches; repeating them would cost a sixth more.)
REPEAT_BELOW_STEPS = 50


class LRByBatchSize(Result):
    """The best learning rate at each batch size, as measured.

    Attributes:
        batch_sizes: The measured batch sizes (increasing).
        learning_rates: The best LR at each of them.
        bands: `(low, high)` per batch size: the LRs whose probe loss is within
            2% of the best (see `kbatch.lr.probes.band`).
        probes: Per batch size, the `(lr, validation loss)` pairs probed
            (a repeated best LR: the mean of its two runs).
        epochs: The training budget the LRs are for.
        exponent: Fitted `lr ~ B**exponent` over the measured sizes.
        eps_max, b_noise: Fitted `lr = eps_max / (1 + b_noise / B)`
            (McCandlish et al. 2018), `None` when fewer than two sizes.
        left_out: `{batch_size: reason}` for sizes that could not be measured.
        metadata: Settings, cost (samples and seconds) and the model's name.

    Example:

    >>> r = LRByBatchSize([32, 128], [0.01, 0.04], epochs=5)
    >>> r.predict(64), r.exponent
    (0.02, 1.0)
    """

    def __init__(self, batch_sizes, learning_rates, *, epochs, bands=None,
                 probes=None, left_out=None, metadata=None):
        order = np.argsort(np.asarray(batch_sizes, dtype=np.int64))
        self.batch_sizes = [int(batch_sizes[i]) for i in order]
        self.learning_rates = [float(learning_rates[i]) for i in order]
        if len(self.batch_sizes) != len(set(self.batch_sizes)):
            raise ValueError(f"Repeated batch sizes: {self.batch_sizes}")
        for lr in self.learning_rates:
            if not (math.isfinite(lr) and lr > 0):
                raise ValueError(f"Learning rates must be positive: {learning_rates}")
        self.epochs = epochs
        bands = bands or {}
        self.bands = {b: tuple(float(v) for v in bands[b]) if b in bands
                      else (lr, lr)
                      for b, lr in zip(self.batch_sizes, self.learning_rates)}
        self.probes = {int(b): [(float(lr), float(loss)) for lr, loss in pairs]
                       for b, pairs in (probes or {}).items()}
        self.left_out = {int(b): str(why) for b, why in (left_out or {}).items()}
        self.metadata = dict(metadata or {})

    # ------------------------------------------------------------ the relation
    def predict(self, batch_size) -> float:
        """The LR at `batch_size`: measured, interpolated in log-log between
        measured sizes, or extrapolated with an exponent kept in `[0, 1]`."""
        batch_size = check_number("batch_size", batch_size, low=1)
        if not self.batch_sizes:
            raise ValueError("No batch size was measured; nothing to predict.")
        return probes.interpolate(self.batch_sizes, self.learning_rates, batch_size)

    def __call__(self, batch_size) -> float:
        return self.predict(batch_size)

    @property
    def best_losses(self) -> dict:
        """`{batch_size: lowest validation loss of its probes}`: how good each
        batch size got, at its best LR, on equal samples."""
        out = {}
        for b in self.batch_sizes:
            finite = [loss for _, loss in self.probes.get(b, []) if math.isfinite(loss)]
            if finite:
                out[b] = min(finite)
        return out

    @property
    def exponent(self) -> float | None:
        if len(self.batch_sizes) < 2:
            return None
        return round(fits.fit_power_law(self.batch_sizes, self.learning_rates)[0], 12)

    def noise_law(self):
        """`(eps_max, b_noise, rms)` of the fitted noise law, or `None`."""
        if len(self.batch_sizes) < 2:
            return None
        return fits.fit_noise_law(self.batch_sizes, self.learning_rates)

    def verdict(self) -> str:
        """One line: how the best LR moves with the batch size."""
        if len(self.batch_sizes) < 2:
            return "one batch size measured: no relation"
        alpha = self.exponent
        rule = fits.rule_for_exponent(alpha)
        low, high = self.batch_sizes[0], self.batch_sizes[-1]
        return (f"best LR grows as B^{alpha:.2f} from batch {low} to {high} "
                f"(closest textbook rule: {rule!r}), for {self.epochs} epochs")

    def summary(self) -> str:
        lines = [f"Best LR per batch size for {self.epochs} epochs:"]
        for b, lr in zip(self.batch_sizes, self.learning_rates):
            low, high = self.bands[b]
            lines.append(f"  batch {b:>6}: {lr:.3g}  (as good within 2%: "
                         f"{low:.3g}..{high:.3g})")
        for b, why in self.left_out.items():
            lines.append(f"  batch {b:>6}: left out ({why})")
        lines.append("  " + self.verdict())
        return "\n".join(lines)

    def __repr__(self):
        pairs = ", ".join(f"{b}: {lr:.3g}" for b, lr in
                          zip(self.batch_sizes, self.learning_rates))
        return f"<LRByBatchSize {{{pairs}}}, epochs={self.epochs}>"

    def plot(self, ax=None, *, path=None):
        """Best LR against batch size (log-log) with its band and the fitted
        laws. Needs matplotlib."""
        from kbatch import plotting

        return plotting.plot_lr_by_batch_size(self, ax=ax, path=path)

    # ------------------------------------------------------------ file format
    def _fields(self) -> dict:
        law = self.noise_law()
        return {
            "epochs": self.epochs,
            "batch_sizes": self.batch_sizes,
            "learning_rates": self.learning_rates,
            "bands": {str(b): list(v) for b, v in self.bands.items()},
            "probes": {str(b): [list(p) for p in pairs]
                       for b, pairs in self.probes.items()},
            "exponent": self.exponent,
            "noise_law": None if law is None else {
                "eps_max": law[0], "b_noise": law[1], "rms_log": law[2]},
            "left_out": {str(b): why for b, why in self.left_out.items()},
            "metadata": self.metadata,
        }

    @classmethod
    def _from_fields(cls, data):
        sizes = [int(b) for b in data["batch_sizes"]]
        lrs = [float(v) for v in data["learning_rates"]]
        if len(sizes) != len(lrs):
            raise ValueError("'batch_sizes' and 'learning_rates' differ in length")
        bands = {int(b): tuple(v) for b, v in (data.get("bands") or {}).items()}
        pairs = {int(b): [tuple(p) for p in v]
                 for b, v in (data.get("probes") or {}).items()}
        for b, v in pairs.items():
            for p in v:
                if len(p) != 2:
                    raise ValueError(f"bad probe {p!r} at batch size {b}")
        return cls(sizes, lrs, epochs=data["epochs"], bands=bands, probes=pairs,
                   left_out=data.get("left_out"), metadata=data.get("metadata"))


def _split(x, y, validation_data, validation_split, seed):
    """`(x_train, y_train, x_val, y_val, n_train)` as NumPy structures."""
    if _data.is_tf_dataset(x):
        if validation_data is None:
            raise ValueError(
                "lr_for_batch_sizes with a tf.data.Dataset needs "
                "`validation_data` (the probes are compared on it).")
        x, y = _data.unbatched_to_arrays(x, y)
    elif _data.is_py_dataset(x) or _data.is_generator(x):
        raise ValueError(
            "lr_for_batch_sizes re-batches the data at every batch size, so it "
            "needs arrays or an unbatched tf.data.Dataset. Received: x of type "
            f"{type(x).__name__}.")
    if y is None:
        raise ValueError(
            "Argument `y` is required with array inputs (the targets). "
            "Received: y=None")
    x, y, n = _data.check_arrays(x, y)
    if validation_data is not None:
        if _data.is_tf_dataset(validation_data):
            xv, yv = _data.unbatched_to_arrays(validation_data, None)
        elif isinstance(validation_data, (tuple, list)) and len(validation_data) == 2:
            xv, yv = validation_data
        else:
            raise ValueError(
                "Argument `validation_data` must be `(x_val, y_val)` or a "
                f"tf.data.Dataset. Received: {type(validation_data).__name__}")
        xv, yv, _ = _data.check_arrays(xv, yv, name="validation_data")
        return x, y, xv, yv, n
    n_val = round(n * validation_split)
    if n_val < 1 or n - n_val < 1:
        raise ValueError(
            f"Argument `validation_split` leaves no validation or no training "
            f"samples out of {n}. Received: validation_split={validation_split}")
    order = np.random.default_rng(seed).permutation(n)
    train, val = order[n_val:], order[:n_val]
    take = _data.take_samples
    return take(x, train), take(y, train), take(x, val), take(y, val), n - n_val


def _check_batch_sizes(batch_sizes, n_train):
    if isinstance(batch_sizes, (int, np.integer)) or batch_sizes is None:
        raise TypeError(
            "Argument `batch_sizes` must be a list of batch sizes. Received: "
            f"batch_sizes={batch_sizes!r}")
    sizes = [check_int(f"batch_sizes[{i}]", b, minimum=1)
             for i, b in enumerate(batch_sizes)]
    if not sizes:
        raise ValueError("Argument `batch_sizes` is empty. Pass one or more sizes.")
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"Argument `batch_sizes` repeats a size. Received: {sizes}")
    too_big = [b for b in sizes if b > n_train]
    if too_big:
        raise ValueError(
            f"Argument `batch_sizes` holds sizes larger than the {n_train} "
            f"training samples: {too_big}. Pass smaller sizes or more data.")
    return sorted(sizes)


@_backend.in_model_scope
def lr_for_batch_sizes(
    model,
    x,
    y=None,
    *,
    batch_sizes,
    epochs,
    validation_data=None,
    validation_split: float = 0.15,
    probe_fraction: float = PROBE_FRACTION,
    max_micro_batch_size: int | None = None,
    seed: int = 0,
    verbose="auto",
) -> LRByBatchSize:
    """Measure the learning rate that is best at each batch size, for a budget.

    The best LR depends on the batch size *and* on how long one trains, so it
    is measured, not read off a rule: at each batch size, short probe runs
    from the model's current weights, each on `probe_fraction` (a quarter) of
    the samples that `epochs` epochs would see (but at least 20 steps, and
    never more than the budget's), at a ladder of learning rates half a
    decade apart, compared on their validation loss. The ladder is extended
    until the best probe has a worse one on each side; probes of fewer than
    50 steps run the best LR again on another data order and average its two
    losses (one lucky run near the edge of stability is not a best LR); and
    the best LR is refined by a parabola in log LR through the best probe and
    its neighbours. The first (largest) batch size starts its ladder at
    `find_lr`'s suggestion; each smaller one at the previous answer scaled by
    the square root of the batch ratio (or, if the range test gives no
    suggestion, at the model's compiled LR).

    It costs about one to one and a half training runs of the budget at each
    batch size (4 to 6 probes of a quarter each; more where 20 steps are more
    than a quarter of the budget) plus a short range test.

    A batch size above `max_micro_batch_size`, or one that runs out of memory
    (the backend's out-of-memory error), is probed as micro-batches with
    gradient accumulation, as it would be trained
    (`.metadata["micro_batch_sizes"]` says which). The model is left exactly
    as it was: weights, every optimizer variable and the learning rate (or
    schedule), also after an exception, a NaN or Ctrl-C. A batch size that
    fails otherwise (or does not fit even as single samples) is left out and
    reported in `.left_out`; the others are
    still measured.

    Args:
        model: A compiled `keras.Model`, usually freshly initialised (the
            probes start from its current weights).
        x, y: Training data: arrays (or dicts/lists of arrays), or an
            unbatched `tf.data.Dataset` of `(x, y)` that fits in memory (with
            `validation_data`).
        batch_sizes: The batch sizes to measure (positive integers, each at
            most the number of training samples).
        epochs: Integer `>= 1`. The training budget the LRs are for.
        validation_data: Optional `(x_val, y_val)` or unbatched dataset the
            probes are compared on. Default: `validation_split` of `x`.
        validation_split: Float in `(0, 1)`. Held out of `x` when no
            `validation_data` is given. Defaults to `0.15`.
        probe_fraction: Float in `(0, 1]`. Fraction of the budget's samples
            each probe trains on. Defaults to `0.25`.
        max_micro_batch_size: Integer. The largest batch known to fit in
            memory (e.g. `kbatch.find_max_batch_size`); larger ones are
            probed with accumulation. Defaults to `None`: found by running
            out of memory.
        seed: Integer. Seeds the split and the probes' shuffling.
        verbose: `"auto"`, `0`, `1` (a progress bar) or `2` (a line per
            batch size).

    Returns:
        An `LRByBatchSize`: `.learning_rates`, `.predict(B)`, `.bands`,
        `.exponent`, `.summary()`, `.plot()`, `.save(path)`.

    Example:

    >>> import keras, numpy as np
    >>> x = np.random.default_rng(0).random((512, 8)).astype("float32")
    >>> y = (x.sum(axis=1) > 4).astype("int32")
    >>> model = keras.Sequential([
    ...     keras.Input((8,)),
    ...     keras.layers.Dense(16, activation="relu"),
    ...     keras.layers.Dense(2, activation="softmax"),
    ... ])
    >>> model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    >>> best = lr_for_batch_sizes(model, x, y, batch_sizes=[16, 64], epochs=2,
    ...                           verbose=0)
    >>> sorted(best.batch_sizes) == [16, 64] and best.predict(32) > 0
    True
    """
    check_compiled_model(model, "lr_for_batch_sizes")
    epochs = check_int("epochs", epochs, minimum=1)
    validation_split = check_number("validation_split", validation_split,
                                    low=0.0, high=1.0, low_inclusive=False,
                                    high_inclusive=False)
    probe_fraction = check_number("probe_fraction", probe_fraction, low=0.0,
                                  high=1.0, low_inclusive=False)
    seed = check_int("seed", seed, minimum=0)
    max_micro_batch_size = check_int("max_micro_batch_size", max_micro_batch_size,
                                     minimum=1, allow_none=True)
    if _optimizer.gradient_accumulation_steps(model.optimizer) > 1:
        raise ValueError(
            "lr_for_batch_sizes chooses the gradient accumulation itself; compile "
            "the model with an optimizer without `gradient_accumulation_steps`.")
    verbose = check_verbose(verbose)
    x_tr, y_tr, x_val, y_val, n_train = _split(x, y, validation_data,
                                               validation_split, seed)
    sizes = _check_batch_sizes(batch_sizes, n_train)
    budget = epochs * n_train  # samples of the training run the LRs are for

    first = _data.make_stream(x_tr, y_tr, batch_size=min(sizes), num_batches=1,
                              seed=seed, model=model)
    ensure_built(model, first.first_batch)
    check_trainable(model)

    from kbatch.lr.find import find_lr
    from kbatch.lr.result import LRFinderWarning

    state = TrainingState.capture(model)
    had_accumulators = accumulation.has_accumulators(model)
    control = _optimizer.LearningRateControl(model)
    measured, bands, tried, left_out = {}, {}, {}, {}
    probe_steps, probe_runs = {}, {}
    samples_used = 0
    started = time.perf_counter()
    progbar = None
    if verbose == 1:
        progbar = keras.utils.Progbar(len(sizes), unit_name="batch size")

    micro_sizes = {}
    fails = [0]  # the smallest micro-batch that ran out of memory

    def probe(lr, batch_size, steps, index):
        while True:
            micro = accumulation.micro_batch(batch_size, fails[0],
                                             max_micro_batch_size)
            micro_sizes[batch_size] = micro
            state.restore()
            accumulation.configure(model, batch_size // micro)
            control.set(float(lr))
            try:
                return train_and_validate(micro, steps * (batch_size // micro),
                                          index)
            except Exception as error:
                if not _backend.is_oom(error) or micro < 2 or micro % 2:
                    raise
                fails[0] = micro  # retried as smaller micro-batches
                if verbose:
                    report.message(
                        f"lr_for_batch_sizes: batch {micro} ran out of memory; "
                        f"probing batch {batch_size} as micro-batches of "
                        f"{micro // 2} with gradient accumulation.")
            finally:
                accumulation.configure(model, 1)

    def train_and_validate(micro, micro_steps, index):
        stream = _data.make_stream(x_tr, y_tr, batch_size=micro,
                                   num_batches=micro_steps, seed=seed + index,
                                   model=model)
        history = model.fit(**stream.fit_kwargs(), epochs=1, verbose=0)
        train_loss = history.history.get("loss", [math.nan])[-1]
        if not math.isfinite(train_loss):
            return math.inf
        loss = model.evaluate(x_val, y_val, batch_size=micro, verbose=0,
                              return_dict=True)["loss"]
        return float(loss) if math.isfinite(loss) else math.inf

    compiled_lr = _optimizer.current_learning_rate(model.optimizer)
    try:
        control.acquire(compiled_lr)
        previous = None
        for batch_size in reversed(sizes):  # largest first: cheapest probes
            try:
                if previous is None:
                    control.release()
                    state.restore()
                    # (past the memory limit: at the largest batch that fits,
                    # scaled by the square root, as between the sizes below)
                    range_batch = accumulation.micro_batch(
                        batch_size, fails[0], max_micro_batch_size)
                    while True:
                        try:
                            with warnings.catch_warnings():
                                warnings.simplefilter("ignore", LRFinderWarning)
                                curve = find_lr(model, x_tr, y_tr,
                                                batch_size=range_batch,
                                                seed=seed, verbose=0)
                            break
                        except Exception as error:
                            if (not _backend.is_oom(error) or range_batch < 2
                                    or range_batch % 2):
                                raise
                            fails[0] = range_batch
                            range_batch //= 2
                            if verbose:
                                report.message(
                                    f"lr_for_batch_sizes: batch {range_batch * 2}"
                                    " ran out of memory; the range test runs at "
                                    f"{range_batch}, batch {batch_size} is probed "
                                    "with gradient accumulation.")
                    try:
                        centre = curve.suggestion() * math.sqrt(
                            batch_size / range_batch)
                    except ValueError:  # no suggestion: start from the model's LR
                        centre = compiled_lr
                    control = _optimizer.LearningRateControl(model)
                    control.acquire(centre)
                else:
                    prev_b, prev_lr = previous
                    centre = prev_lr * math.sqrt(batch_size / prev_b)
                steps = min(math.ceil(budget / batch_size), max(
                    MIN_PROBE_STEPS, math.ceil(probe_fraction * budget / batch_size)))
                lrs, losses, runs = probes.search(
                    lambda lr, index, b=batch_size, s=steps: probe(lr, b, s, index),
                    centre, spacing=SPACING, max_rungs=MAX_RUNGS,
                    repeat_best=steps < REPEAT_BELOW_STEPS)
                samples_used += runs * steps * batch_size
                probe_runs[batch_size] = runs
                probe_steps[batch_size] = steps
                if not any(math.isfinite(v) for v in losses):
                    raise FloatingPointError("every probe diverged")
                best = probes.vertex(lrs, losses)
                measured[batch_size] = best
                low, high = probes.band(lrs, losses)
                bands[batch_size] = (min(low, best), max(high, best))
                tried[batch_size] = sorted(zip(lrs, losses))
                previous = (batch_size, best)
                if verbose == 2:
                    report.message(f"lr_for_batch_sizes: batch {batch_size}: "
                                   f"best LR {best:.3g} ({len(lrs)} probes of "
                                   f"{steps} steps)")
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as error:  # leave this size out, go on
                why = ("out of memory" if _backend.is_oom(error)
                       else f"{type(error).__name__}: {error}")
                left_out[batch_size] = why
                if verbose:
                    report.message(f"lr_for_batch_sizes: batch {batch_size} "
                                   f"left out ({why.splitlines()[0][:120]})")
            if progbar is not None:
                progbar.add(1)
    finally:
        control.release()
        state.restore()
        if not had_accumulators:
            accumulation.remove_accumulators(model)
    if not measured:
        raise ValueError(
            "lr_for_batch_sizes measured no batch size; every one failed: "
            + "; ".join(f"{b}: {why}" for b, why in left_out.items()))
    if left_out:
        warnings.warn(
            "lr_for_batch_sizes left out batch sizes "
            + ", ".join(f"{b} ({why.splitlines()[0][:80]})"
                        for b, why in left_out.items()), stacklevel=3)
    result = LRByBatchSize(
        list(measured), list(measured.values()), epochs=epochs, bands=bands,
        probes=tried, left_out=left_out,
        metadata={
            "model": model.name,
            "optimizer": type(_optimizer.base_optimizer(model.optimizer)).__name__,
            "train_samples": n_train,
            "probe_fraction": probe_fraction,
            "spacing_decades": SPACING,
            "probe_steps": {str(b): v for b, v in sorted(probe_steps.items())},
            "probe_runs": {str(b): v for b, v in sorted(probe_runs.items())},
            "micro_batch_sizes": {str(b): m for b, m in sorted(micro_sizes.items())
                                  if m < b and b in measured},
            "samples_trained": samples_used,
            "budget_runs": round(samples_used / budget, 3),
            "seconds": round(time.perf_counter() - started, 3),
        })
    if verbose:
        report.message(result.summary())
    return result

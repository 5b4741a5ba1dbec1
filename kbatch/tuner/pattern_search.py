"""`PatternSearch`: a sequential search over (batch size, learning rate).

Random search spends its trials blindly; in `BatchLRHyperModel`'s scaled
coordinates the batch size and the LR multiplier are close to independent, so
a search along one axis at a time works. `PatternSearchOracle` is a compass
search (Kolda, Lewis & Torczon, SIAM Review 2003) on the two hyperparameters
the hypermodel declares:

1. *Batch sweep.* `initial_batch_sizes` batch sizes spread over the choices
   (the smallest and the largest included), each at the centre of the LR axis
   (`lr_multiplier` 1, or the geometric middle of a plain `learning_rate`
   range).
2. *Poll.* Around the best completed trial, try the LR `step` times higher and
   lower, then the neighbouring batch sizes at the best trial's LR (for
   `lr_multiplier`, its multiplier: the LR scaled to the other batch size).
   When every poll point has been tried and none is better, the step is
   halved in log scale (x2 becomes x1.41, then x1.19, ...).

Its proposals depend only on the trials so far, so a resumed search (KerasTuner
reloads the trials) continues where it stopped, and on KerasTuner's
chief/worker engine several workers get distinct trials: a worker that asks
while the poll points are all running gets the next untried one, or a random
one. Other hyperparameters of your model take random values in the batch sweep
and the best trial's values afterwards. A trial that failed for lack of memory
(`BatchLRHyperModel` raises `kbatch.tuner.OutOfMemoryError`) rules out its
batch size and every larger one; other failures rule out only their point.
"""

from __future__ import annotations

import math

import keras_tuner

from kbatch._internal.validate import check_int
from kbatch._internal.validate import check_number
from kbatch.tuner.errors import ran_out_of_memory

__all__ = [
    "PatternSearch",
    "PatternSearchOracle",
]

_LR_NAMES = ("lr_multiplier", "learning_rate")
_RANDOM_DRAWS = 20  # untried random points sought before the search stops
_COMPLETED = keras_tuner.engine.trial.TrialStatus.COMPLETED
_FAILED = keras_tuner.engine.trial.TrialStatus.FAILED
_RUNNING = keras_tuner.engine.trial.TrialStatus.RUNNING
_STOPPED = keras_tuner.engine.trial.TrialStatus.STOPPED


class PatternSearchOracle(keras_tuner.Oracle):
    """Compass search over `batch_size` and the LR of `BatchLRHyperModel`.

    Args:
        objective, max_trials, seed, hyperparameters, tune_new_entries,
            allow_new_entries, max_retries_per_trial,
            max_consecutive_failed_trials: As for `keras_tuner.Oracle`.
        initial_batch_sizes: Integer. Batch sizes of the first sweep, spread
            over the choices. Defaults to `3`.
        step: Number > 1. Factor between the LR of the best trial and the LRs
            polled around it. Defaults to `2.0`.

    Use it through `PatternSearch`, or pass it to any `keras_tuner.Tuner`.

    Example:

    >>> import keras_tuner
    >>> oracle = PatternSearchOracle(
    ...     objective=keras_tuner.Objective("val_accuracy", "max"), max_trials=8)
    >>> oracle.initial_batch_sizes, oracle.step
    (3, 2.0)
    """

    def __init__(
        self,
        objective=None,
        max_trials=8,
        seed=None,
        hyperparameters=None,
        allow_new_entries=True,
        tune_new_entries=True,
        max_retries_per_trial=0,
        max_consecutive_failed_trials=3,
        initial_batch_sizes=3,
        step=2.0,
    ):
        super().__init__(
            objective=objective,
            max_trials=max_trials,
            hyperparameters=hyperparameters,
            tune_new_entries=tune_new_entries,
            allow_new_entries=allow_new_entries,
            seed=seed,
            max_retries_per_trial=max_retries_per_trial,
            max_consecutive_failed_trials=max_consecutive_failed_trials,
        )
        self.initial_batch_sizes = check_int("initial_batch_sizes",
                                             initial_batch_sizes, minimum=1)
        self.step = check_number("step", step, positive=True)
        if not self.step > 1:
            raise ValueError(f"Argument `step` must be > 1. Received: step={step!r}")

    # ----------------------------------------------------------------- space
    def _axes(self):
        """(batch_size hp or None, LR hp or None) of the search space."""
        names = {hp.name: hp for hp in self.hyperparameters.space}
        batch = names.get("batch_size")
        lr = next((names[n] for n in _LR_NAMES if n in names), None)
        if batch is not None and not isinstance(
                batch, keras_tuner.engine.hyperparameters.Choice):
            batch = None
        if lr is not None and not isinstance(
                lr, keras_tuner.engine.hyperparameters.Float):
            lr = None
        if batch is None and lr is None:
            raise keras_tuner.errors.FatalValueError(
                "PatternSearch searches the `batch_size` (a Choice) and the "
                "`lr_multiplier` or `learning_rate` (a Float) that "
                "kbatch.tuner.BatchLRHyperModel declares; this search space has "
                f"neither: {sorted(names)}.")
        return batch, lr

    @staticmethod
    def _centre(lr_hp):
        low, high = lr_hp.min_value, lr_hp.max_value
        if lr_hp.name == "lr_multiplier" and low <= 1.0 <= high:
            return 1.0
        if low > 0:
            return math.sqrt(low * high)
        return 0.5 * (low + high)

    @staticmethod
    def _snap(lr_hp, value):
        """Clip to the range and onto the hp's step grid, if it has one."""
        value = min(max(value, lr_hp.min_value), lr_hp.max_value)
        if getattr(lr_hp, "step", None):
            value = lr_hp.prob_to_value(lr_hp.value_to_prob(value))
        return float(value)

    @staticmethod
    def _key(values, lr_hp):
        lr = values.get(lr_hp.name) if lr_hp is not None else None
        return (values.get("batch_size"),
                None if lr is None else round(math.log(lr), 6) if lr > 0 else lr)

    def _searched(self, values):
        """The values of the search space's own hyperparameters, without what
        a hypermodel records beside them (`BatchLRHyperModel` writes the LR a
        trial trained at into its values), so that a point is "tried" by what
        was searched."""
        names = {hp.name for hp in self.hyperparameters.space}
        return tuple(sorted((k, repr(v)) for k, v in values.items() if k in names))

    # ------------------------------------------------------------- proposals
    def populate_space(self, trial_id):
        batch_hp, lr_hp = self._axes()
        trials = list(self.trials.values())
        tried = {self._key(t.hyperparameters.values, lr_hp) for t in trials}
        tried_values = {self._searched(t.hyperparameters.values) for t in trials}
        for values in self._candidates(batch_hp, lr_hp):
            if (self._key(values, lr_hp) not in tried
                    and self._searched(values) not in tried_values):
                return {"status": _RUNNING, "values": values}
        for _ in range(_RANDOM_DRAWS):
            values = self._random_values()
            if values is None:
                break
            if self._searched(values) not in tried_values:
                return {"status": _RUNNING, "values": values}
        return {"status": _STOPPED, "values": None}  # the space is exhausted

    def _candidates(self, batch_hp, lr_hp):
        sizes = sorted(batch_hp.values) if batch_hp is not None else [None]
        trials = list(self.trials.values())
        failed = [t.hyperparameters.values.get("batch_size") for t in trials
                  if t.status == _FAILED and batch_hp is not None
                  and ran_out_of_memory(t)]
        failed = [b for b in failed if b is not None and b > sizes[0]]
        if failed:  # stay below the smallest batch size that ran out of memory
            sizes = [b for b in sizes if b < min(failed)]
        if lr_hp is not None:
            centre = self._snap(lr_hp, self._centre(lr_hp))

        def point(base, batch_size, lr):
            values = dict(base)
            if batch_hp is not None:
                values["batch_size"] = batch_size
            if lr_hp is not None:
                values[lr_hp.name] = self._snap(lr_hp, lr)
            return values

        # 1. batch sweep at the centre of the LR axis
        n = min(self.initial_batch_sizes, len(sizes))
        picks = sorted({round(i * (len(sizes) - 1) / max(n - 1, 1))
                        for i in range(n)})
        for i in picks:
            yield point(self._random_values() or {}, sizes[i],
                        centre if lr_hp is not None else None)

        # 2. poll around the best completed trial
        best = [t for t in self.get_best_trials(1) if t.status == _COMPLETED]
        if not best:
            return
        names = {hp.name for hp in self.hyperparameters.space}
        base = {k: v for k, v in best[0].hyperparameters.values.items()
                if k in names}  # not what the best trial recorded beside them
        batch = base.get("batch_size")
        lr = base.get(lr_hp.name) if lr_hp is not None else None
        neighbours = []
        if batch_hp is not None and batch in sizes:
            i = sizes.index(batch)
            neighbours = [sizes[j] for j in (i - 1, i + 1) if 0 <= j < len(sizes)]
        step = self.step
        for _ in range(8):  # steps down to step ** (1 / 256)
            if lr_hp is not None and lr is not None:
                yield point(base, batch, lr * step)
                yield point(base, batch, lr / step)
            for other in neighbours:
                yield point(base, other, lr)
            step = math.sqrt(step)


class PatternSearch(keras_tuner.Tuner):
    """KerasTuner tuner running `PatternSearchOracle`.

    Made for `kbatch.tuner.BatchLRHyperModel`: it searches the hypermodel's
    `batch_size` and `lr_multiplier` (or `learning_rate`) one axis at a time,
    which in the scaled parametrization reaches a good pair in fewer trials
    than a random search. Arguments as for `keras_tuner.RandomSearch` (but
    `max_trials` defaults to 8), plus `initial_batch_sizes` and `step` (see
    `PatternSearchOracle`).

    Example:

    >>> import keras, numpy as np, tempfile
    >>> from kbatch.tuner import BatchLRHyperModel
    >>> rng = np.random.default_rng(0)
    >>> x = rng.random((256, 8)).astype("float32")
    >>> y = (x.sum(axis=1) > 4).astype("int32")
    >>> def build_model(hp):
    ...     model = keras.Sequential([keras.Input((8,)),
    ...                               keras.layers.Dense(2, activation="softmax")])
    ...     model.compile(keras.optimizers.SGD(), "sparse_categorical_crossentropy",
    ...                   metrics=["accuracy"])
    ...     return model
    >>> hypermodel = BatchLRHyperModel(build_model, batch_sizes=(16, 32, 64),
    ...                                learning_rate=(0.01, 1.0), epochs=1)
    >>> tuner = PatternSearch(hypermodel, objective="val_accuracy", max_trials=4,
    ...                       directory=tempfile.mkdtemp())
    >>> tuner.search(x, y, validation_split=0.25, verbose=0)
    >>> trials = [tuner.oracle.get_trial(i) for i in tuner.oracle.start_order]
    >>> [t.hyperparameters.get("batch_size") for t in trials[:3]]  # the sweep
    [16, 32, 64]
    >>> [t.hyperparameters.get("lr_multiplier") for t in trials[:3]]
    [1.0, 1.0, 1.0]
    >>> trials[3].hyperparameters.get("lr_multiplier")  # the first poll: x2
    2.0
    """

    def __init__(
        self,
        hypermodel=None,
        objective=None,
        max_trials=8,
        seed=None,
        hyperparameters=None,
        tune_new_entries=True,
        allow_new_entries=True,
        max_retries_per_trial=0,
        max_consecutive_failed_trials=3,
        initial_batch_sizes=3,
        step=2.0,
        **kwargs,
    ):
        self.seed = seed
        oracle = PatternSearchOracle(
            objective=objective,
            max_trials=max_trials,
            seed=seed,
            hyperparameters=hyperparameters,
            tune_new_entries=tune_new_entries,
            allow_new_entries=allow_new_entries,
            max_retries_per_trial=max_retries_per_trial,
            max_consecutive_failed_trials=max_consecutive_failed_trials,
            initial_batch_sizes=initial_batch_sizes,
            step=step,
        )
        super().__init__(oracle, hypermodel, **kwargs)

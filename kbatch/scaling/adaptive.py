"""Train with a batch size that follows the gradient noise scale.

The critical batch size, past which a larger batch stops buying proportionally
fewer steps, is of the order of the gradient noise scale `B_simple`
(McCandlish et al., 2018), and it moves during training: near zero at the
start, then mostly rising, sometimes falling. `fit_adaptive` measures
`B_simple` as it trains (`GradientNoiseScale`), and at the end of each epoch
moves the batch in power-of-two steps toward `fraction * B_simple` when the
estimate's interval is clearly past the next step (`adaptive_rule`). Each
change scales the learning rate (a rule, or the relation
`kbatch.lr_for_batch_sizes` measured) with a short warm-up when it rises. The
data budget stays the same in samples: every epoch is one pass over the data,
in fewer, larger steps.

A batch that does not fit in memory is run as micro-batches with gradient
accumulation (the optimizer's `gradient_accumulation_steps`): the effective
batch and its learning rate stay what the rule asked for.

Keras does not change the batch size inside one `fit` call, so each epoch is
one `fit` call (`initial_epoch`), and their histories are merged.
"""

from __future__ import annotations

import json
import os

import keras
import numpy as np

from kbatch._internal import accumulation
from kbatch._internal import backend as _backend
from kbatch._internal import data as _data
from kbatch._internal import optimizer as _optimizer
from kbatch._internal import report
from kbatch._internal.state import TrainingState
from kbatch._internal.state import forget_restored_epoch
from kbatch._internal.validate import check_int
from kbatch._internal.validate import check_number
from kbatch._internal.validate import check_verbose
from kbatch.critical.noise_scale import GradientNoiseScale
from kbatch.scaling import adaptive_rule
from kbatch.scaling.optimizer_rule import default_rule
from kbatch.scaling.rules import scaling_factor

__all__ = ["fit_adaptive", "plot_adaptive"]

STATE_FILE = "kbatch_adaptive.json"
SIGNALS = ("noise_scale", "branch")
_RESERVED = ("batch_size", "epochs", "initial_epoch", "steps_per_epoch")


class _Run:
    """Everything `fit_adaptive` carries from one epoch to the next (and
    writes next to a `BackupAndRestore` checkpoint to resume)."""

    def __init__(self, batch_size, ratio_rule):
        self.epoch = 0
        self.batch_size = batch_size
        self.micro_batch_size = batch_size
        self.ratio = 1.0            # LR of this batch / LR compiled (at batch_size)
        self.previous_ratio = 1.0   # ... of the batch before the last change
        self.warmup_done = 0        # updates since the last change (its warm-up)
        self.samples = 0            # samples seen (drives a compiled schedule)
        self.g_sq, self.trace = [], []
        self.decided_at = 0         # measurements seen at the last decision
        self.fits = 0               # largest micro-batch known to fit
        self.fails = 0              # smallest micro-batch known not to fit
        self.accumulators = False
        self.pending = 0            # a rise to try in branches (signal "branch")
        self.refusals = 0           # rises refused in a row
        self.retry_at = 0           # no trial before this epoch
        self.trial_updates = 0      # optimizer steps of all trial branches
        self.ratio_rule = ratio_rule

    def to_dict(self):
        fields = dict(vars(self))
        fields.pop("ratio_rule")
        return fields

    def update(self, fields):
        for key, value in fields.items():
            if hasattr(self, key) and key != "ratio_rule":
                setattr(self, key, value)


class _EpochControl(keras.callbacks.Callback):
    """First in the list, inside one epoch's `fit`: the LR of every step, the
    counts, the logs (before the user's callbacks read them) and the
    decision for the next epoch."""

    def __init__(self, run, gns, decide, base_lr, base_batch):
        super().__init__()
        self.run, self.gns, self.decide = run, gns, decide
        self.base_lr, self.base_batch = base_lr, base_batch
        self.decision = None
        self._start = 0
        self._accumulate = 1
        self._variable = None
        self._last = None

    def _warming(self):
        run = self.run
        return run.ratio > run.previous_ratio and run.warmup_done < run.warmup

    def _lr_now(self, updates_done):
        """The LR after `updates_done` updates of this epoch (a warm-up goes
        on across epochs, from where the last one stopped)."""
        run = self.run
        ratio = run.ratio
        if self._warming():
            done = min(1.0, (run.warmup_done + updates_done) / run.warmup)
            ratio = run.previous_ratio + (run.ratio - run.previous_ratio) * done
        base = self.base_lr
        if callable(base):
            step = (run.samples + updates_done * run.batch_size) / self.base_batch
            base = float(keras.ops.convert_to_numpy(base(step)))
        return base * ratio

    def on_epoch_begin(self, epoch, logs=None):
        model = self.model
        self._variable = _optimizer.learning_rate_object(model.optimizer)
        self._start = _optimizer.schedule_step(model.optimizer)
        self._accumulate = _optimizer.gradient_accumulation_steps(model.optimizer)
        self._set_lr(0)

    def _set_lr(self, updates_done):
        value = self._lr_now(updates_done)
        if value != self._last:
            self._variable.assign(value)
            self._last = value

    def on_train_batch_begin(self, batch, logs=None):
        # (`batch` is the epoch's step; no batch-end hook, so that JAX keeps
        # dispatching steps without waiting for their logs)
        if self._warming() or callable(self.base_lr):
            self.model  # on JAX, puts the variables back before the assign  # noqa: B018
            self._set_lr(batch // self._accumulate)

    def on_epoch_end(self, epoch, logs=None):
        model, run = self.model, self.run
        end = _optimizer.schedule_step(model.optimizer)
        k = self._accumulate
        updates = end // k - self._start // k
        run.samples += updates * run.batch_size
        run.warmup_done += updates
        self.gns.collect()
        for entry in self.gns.history:
            run.g_sq.append(entry["g_sq"])
            run.trace.append(entry["trace"])
        self.gns.history.clear()
        decision = self.decide(run)
        self.decision = decision
        if logs is not None:
            logs["batch_size"] = run.batch_size
            logs["micro_batch_size"] = run.micro_batch_size
            logs["learning_rate"] = float(self._last)
            logs["updates"] = int(updates)
            logs["noise_scale"] = decision.b_simple
            logs["noise_scale_low"], logs["noise_scale_high"] = decision.interval
        run.epoch = epoch + 1
        _apply(run, decision.batch_size)


class _Continuing(keras.callbacks.Callback):
    """A user's callback seen as in one `fit`: its `on_train_begin` runs in
    the first epoch's `fit` only and its `on_train_end` once, at the end of
    the run (so `EarlyStopping`, `ReduceLROnPlateau`, `CSVLogger` and a
    `BackupAndRestore` keep their state from epoch to epoch)."""

    def __init__(self, callback):
        super().__init__()
        self.callback = callback
        self.started = False

    def set_model(self, model):
        super().set_model(model)
        self.callback.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        self.callback.set_params(params)

    def on_train_begin(self, logs=None):
        if not self.started:
            self.started = True
            self.callback.on_train_begin(logs)

    def on_train_end(self, logs=None):
        pass  # `fit_adaptive` ends it once, when the run is complete

    def __getattribute__(self, name):
        if name.startswith("on_") and name not in ("on_train_begin",
                                                   "on_train_end"):
            return getattr(object.__getattribute__(self, "callback"), name)
        return object.__getattribute__(self, name)


class _Tail(keras.callbacks.Callback):
    """Last in the list: sets up the epoch's accumulation after a
    `BackupAndRestore` has loaded its checkpoint (whose optimizer has the
    layout of before this change), and ends the epoch's `fit` and writes
    kbatch's state after it has saved one."""

    def __init__(self, run, gns, window, state_path):
        super().__init__()
        self.run, self.gns, self.window = run, gns, window
        self.state_path = state_path
        self.user_stopped = False

    def on_train_begin(self, logs=None):
        steps = self.run.batch_size // self.run.micro_batch_size
        accumulation.configure(self.model, steps)
        if steps > 1:
            self.run.accumulators = True
        # accumulated micro-batches share the weights: an exact window
        self.gns.set_step_window(steps if steps > 1 else self.window,
                                 self.run.micro_batch_size)

    def on_epoch_end(self, epoch, logs=None):
        self.user_stopped = bool(self.model.stop_training)  # EarlyStopping, ...
        self.model.stop_training = True  # one epoch per `fit` call
        forget_restored_epoch(self.model)  # a loaded checkpoint's epoch: used
        if self.state_path:
            with open(self.state_path, "w", encoding="utf-8") as f:
                json.dump(self.run.to_dict(), f)


def _apply(run, batch_size):
    """Move `run` to `batch_size`: new LR ratio and warm-up."""
    if batch_size == run.batch_size:
        return
    ratio = run.ratio_rule(batch_size)
    run.previous_ratio = run.ratio
    run.ratio = ratio
    run.warmup_done = 0
    run.batch_size = batch_size


class _TrialControl(_EpochControl):
    """The LR of a trial branch's steps, as the real run would set it."""

    def __init__(self, run, base_lr, base_batch):
        super().__init__(run, None, None, base_lr, base_batch)

    def on_epoch_end(self, epoch, logs=None):
        pass


class _Branches:
    """The direct test of a rise (Merrill et al., 2025): from one state, a
    short branch at the current batch and one at each candidate, on the same
    samples in the same order, compared on the loss of held-out training
    samples. Nothing of the branches stays: the run goes on from the state
    they started from, at the batch accepted."""

    def __init__(self, x, y, *, samples, tolerance, max_micro, base_lr,
                 base_batch, verbose):
        self.tolerance = tolerance
        self.max_micro = max_micro
        self.base_lr, self.base_batch = base_lr, base_batch
        self.verbose = verbose
        self._source = (x, y)
        self._samples = samples
        self._pool = None

    def _data(self, seed):
        """`(x_train, y_train, x_eval, y_eval)` of this trial: held-out
        samples fixed for the run, training samples drawn anew."""
        if self._pool is None:
            x, y, n = _pool(*self._source)
            held = max(1, min(2048, n // 4))
            order = np.random.default_rng(0).permutation(n)
            self._pool = (x, y, order[:held], order[held:])
            if self._samples is None:
                self._samples = max(1, n // 4)
        x, y, held, rest = self._pool
        count = min(self._samples, len(rest))
        picked = np.sort(np.random.default_rng(seed).choice(rest, count,
                                                            replace=False))
        take = _data.take_samples
        return take(x, picked), take(y, picked), take(x, held), take(y, held)

    def test(self, model, run, gns, candidates, epoch):
        """The largest of `candidates` accepted (or None) and the record."""
        xs, ys, xe, ye = self._data(seed=epoch)
        start = TrainingState.capture(model)
        randomness = _backend.global_rng_state()  # the data order to come
        windows = gns._steps_state()
        steps_before = _optimizer.gradient_accumulation_steps(model.optimizer)

        def loss():
            out = model.evaluate(xe, ye, batch_size=min(1024, _data.num_samples(
                xe, "x")), verbose=0, return_dict=True)
            return float(out["loss"])

        def branch(size):
            trial = _Run(run.batch_size, run.ratio_rule)
            trial.update(run.to_dict())
            trial.warmup = run.warmup
            _apply(trial, size)
            while True:
                start.restore()
                trial.micro_batch_size = _micro_batch(trial, self.max_micro)
                accumulation.configure(model, size // trial.micro_batch_size)
                control = _TrialControl(trial, self.base_lr, self.base_batch)
                try:
                    model.fit(xs, ys, batch_size=trial.micro_batch_size, epochs=1,
                              shuffle=False, verbose=0, callbacks=[control])
                except Exception as error:
                    start.restore()
                    if not _backend.is_oom(error) or trial.micro_batch_size < 2:
                        raise
                    run.fails = trial.micro_batch_size
                    trial.fails = run.fails
                    continue
                updates = -(-_data.num_samples(xs, "x") // size)
                run.trial_updates += updates
                return loss()

        record = {"epoch": epoch, "from": run.batch_size,
                  "samples": _data.num_samples(xs, "x"), "losses": {},
                  "accepted": None}
        try:
            record["loss_start"] = start_loss = loss()
            current = branch(run.batch_size)
            record["losses"][run.batch_size] = current
            for size in candidates:
                candidate = branch(size)
                record["losses"][size] = candidate
                if adaptive_rule.branch_accepts(start_loss, current, candidate,
                                                self.tolerance):
                    record["accepted"] = size
                    break
        finally:
            start.restore()
            _backend.set_global_rng_state(randomness)
            gns._set_steps_state(windows)
            accumulation.configure(model, steps_before)
        if self.verbose:
            tried = ", ".join(f"{size}: {value:.4g}" for size, value
                              in record["losses"].items())
            accepted = record["accepted"]
            progressed = record["losses"][run.batch_size] < record["loss_start"]
            verdict = (f"batch {run.batch_size} stays: the rise lost progress"
                       if not accepted else
                       f"batch {accepted} kept the progress" if progressed else
                       f"no progress at {run.batch_size} over the branch; "
                       f"batch {accepted} is not worse")
            report.message(
                f"fit_adaptive: branches of {record['samples']} samples before "
                f"epoch {epoch + 1}, held-out loss from {record['loss_start']:.4g}"
                f" ({tried}): {verdict}.")
        return record["accepted"], record


def _pool(x, y):
    """Samples for trial branches as arrays: `(x, y, n)` (at most 8192
    samples read from a dataset)."""
    if _data.is_tf_dataset(x):
        x, y = _data.unbatched_to_arrays(x.take(8192), y)
    elif _data.is_py_dataset(x) or callable(x):
        x, y = _data.py_dataset_to_arrays(x, 8192)
    x, y, n = _data.check_arrays(x, y)
    if y is None:
        raise ValueError("signal='branch' compares losses on held-out training "
                         "samples, so it needs targets `y`.")
    return x, y, n


def _ratio_rule(rule, optimizer, batch_size):
    """`size -> LR(size) / LR(batch_size)` from a rule or a measured relation."""
    if hasattr(rule, "predict") and hasattr(rule, "batch_sizes"):
        anchor = rule.predict(batch_size)
        return lambda size: rule.predict(size) / anchor
    if rule == "auto":
        rule = default_rule(optimizer)
    scaling_factor(1, 2, rule)  # validates the name
    return lambda size: scaling_factor(batch_size, size, rule)


def _micro_batch(run, max_micro):
    return accumulation.micro_batch(run.batch_size, run.fails, max_micro)


@_backend.in_model_scope
def fit_adaptive(
    model,
    x,
    y=None,
    *,
    batch_size: int,
    epochs: int,
    validation_data=None,
    rule="auto",
    fraction: float = 0.25,
    min_batch_size: int | None = None,
    max_batch_size: int | None = None,
    max_micro_batch_size: int | None = None,
    window: int = 4,
    interval: int = 20,
    min_measurements: int = 6,
    warmup_steps: int = 20,
    signal: str = "noise_scale",
    tolerance: float = 0.1,
    branch_samples: int | None = None,
    callbacks=None,
    verbose="auto",
    **fit_kwargs,
):
    """Train with a batch size that follows the measured gradient noise scale.

    Starts at `batch_size` with the model's compiled learning rate, measures
    `B_simple` from the gradients of its own steps (no extra pass), and at each
    epoch's end moves the batch in power-of-two steps (at most x4 per epoch)
    toward `fraction * B_simple` when the 90% interval of the estimate lies
    clearly past the next step: up when `fraction * low >= 2 * batch`, down
    when `fraction * high < batch / 2` (`kbatch.scaling.adaptive_rule`). At
    each change the learning rate follows `rule`, warmed up linearly over
    `warmup_steps` updates when it rises. Every epoch is one pass over the
    data, so the run sees the same samples as a fixed-batch run of `epochs`
    epochs, in fewer updates.

    A batch above `max_micro_batch_size`, or one that runs out of memory
    (the backend's out-of-memory error, on TensorFlow, JAX and PyTorch), is
    trained as micro-batches with gradient accumulation: the batch and its
    learning rate stay what the rule asked for; `History` records both sizes.
    An out-of-memory error restores the epoch's starting state and retries at
    half the micro-batch; sizes known not to fit are not tried again (on
    TensorFlow's CPU allocator each failed try costs ~10 s of retries).

    An exception or Ctrl-C in the first epoch at a new size (after a change)
    leaves the model as the last completed epoch left it: the state is copied
    (host memory: the model and optimizer variables once) at such epochs.
    Elsewhere an error leaves the model as `fit` would.

    Args:
        model: A compiled `keras.Model`. A learning-rate schedule it was
            compiled with is followed in samples (its step `s` is reached
            after `s * batch_size` samples), scaled like a constant rate.
        x, y: Training data: arrays, an unbatched `tf.data.Dataset`, a
            `PyDataset` with a settable `batch_size`, or a function
            `batch_size -> PyDataset`.
        batch_size: Integer. The first batch size (and, by default, the
            smallest).
        epochs: Integer. Passes over the data.
        validation_data: As in `fit`.
        rule: How the LR follows the batch: `"auto"` (`kbatch.default_rule`:
            linear for SGD, square root for adaptive optimizers), a rule name
            of `kbatch.scale_lr`, or the `LRByBatchSize` of
            `kbatch.lr_for_batch_sizes` (its ratios, anchored at the compiled
            LR).
        fraction: Float in `(0, 1]`. The batch aimed at is `fraction *
            B_simple`. Defaults to `0.25`: at `B = B_simple / 4` a run needs
            about a quarter more samples than at a tiny batch (McCandlish et
            al.) for several times fewer steps; chosen on the design tasks of
            `benchmarks/bench_adaptive.py`.
        min_batch_size, max_batch_size: Bounds. Default: `batch_size`, and a
            tenth of the training samples (or `64 * batch_size` when they
            cannot be counted).
        max_micro_batch_size: Integer. The largest batch known to fit in
            memory (e.g. from `kbatch.find_max_batch_size`); larger batches
            accumulate. Defaults to `None`: found by running out of memory.
        window: Integer >= 2. The noise scale compares the gradient of each
            step with the mean of `window` consecutive ones (the gradients
            `fit` computes anyway: no extra pass; `GradientNoiseScale(method=
            "steps")`). Under accumulation, the micro-batches of an update.
            Defaults to `4`.
        interval: Integer. One window is measured at the start of every
            `interval` steps (rounded up to a multiple of `window`). Defaults
            to `20`: a fifth of the steps (chosen for the cost, at most ~5% of
            the fit time; the design tasks moved the same with every step).
        min_measurements: Integer. Measurements a decision needs. Defaults to
            `6`.
        warmup_steps: Integer. Updates over which a larger LR is reached.
        signal: What a rise acts on. `"noise_scale"`: the noise scale alone.
            `"branch"`: a rise the noise scale proposes is first tried (Merrill
            et al., 2025): from the state before the next epoch, a branch at
            the current batch and one at each candidate size (largest first)
            train on the same `branch_samples` samples, and the largest
            candidate whose held-out loss kept at least `1 - tolerance` of the
            current batch's progress is taken
            (`adaptive_rule.branch_accepts`). The branches are then undone.
            After a refusal the next try waits 2, 4, 8, ... epochs. Needs
            targets `y` (arrays, or read from the first 8192 samples of a
            dataset). Falls are not tried: they follow the noise scale.
        tolerance: Float in `[0, 1]`. Of `signal="branch"`. Defaults to `0.1`.
        branch_samples: Integer. Samples of each branch. Defaults to a
            quarter of the training samples (the held-out ones are another
            quarter, at most 2048).
        callbacks: Callbacks for every epoch's `fit`. A
            `keras.callbacks.BackupAndRestore` makes the run resumable: kbatch
            keeps its own state next to the checkpoint.
        verbose: As in `fit`; `1` also reports each change of batch size.
        **fit_kwargs: Anything else `fit` accepts (`class_weight`, ...),
            except `batch_size`, `epochs`, `initial_epoch`, `steps_per_epoch`.

    Returns:
        A `keras.callbacks.History` of all epochs with, per epoch,
        `batch_size`, `micro_batch_size`, `learning_rate`, `updates`,
        `noise_scale` (`B_simple`) and its interval `noise_scale_low` /
        `noise_scale_high`. `history.params["changes"]` lists the changes,
        `history.params["trials"]` the branch tests (their held-out losses)
        and `history.params["trial_updates"]` the optimizer steps they took.

    Example:

    >>> import keras, numpy as np
    >>> x = np.random.rand(1024, 8).astype("float32")
    >>> y = (x.sum(axis=1) > 4).astype("int32")
    >>> model = keras.Sequential([keras.Input((8,)),
    ...                           keras.layers.Dense(2, activation="softmax")])
    >>> model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    >>> history = fit_adaptive(model, x, y, batch_size=16, epochs=3, verbose=0)
    >>> sorted(history.history)[:4]
    ['batch_size', 'learning_rate', 'loss', 'micro_batch_size']
    """
    if getattr(model, "optimizer", None) is None:
        raise ValueError("fit_adaptive needs a compiled model: call "
                         "`model.compile(optimizer=..., loss=...)` first.")
    for reserved in _RESERVED:
        if reserved in fit_kwargs:
            raise ValueError(f"Argument `{reserved}` is set by fit_adaptive; do "
                             "not pass it.")
    batch_size = check_int("batch_size", batch_size, minimum=1)
    window = check_int("window", window, minimum=2)
    interval = check_int("interval", interval, minimum=1)
    epochs = check_int("epochs", epochs, minimum=1)
    fraction = check_number("fraction", fraction, low=0.0, high=1.0,
                            low_inclusive=False)
    min_measurements = check_int("min_measurements", min_measurements, minimum=2)
    warmup_steps = check_int("warmup_steps", warmup_steps, minimum=0)
    if signal not in SIGNALS:
        raise ValueError(f"Argument `signal` must be one of {SIGNALS}. "
                         f"Received: signal={signal!r}")
    tolerance = check_number("tolerance", tolerance, low=0.0, high=1.0)
    branch_samples = check_int("branch_samples", branch_samples, minimum=1,
                               allow_none=True)
    verbose = check_verbose(verbose)
    min_batch_size = check_int("min_batch_size", min_batch_size or batch_size,
                               minimum=1)
    max_micro_batch_size = check_int("max_micro_batch_size", max_micro_batch_size,
                                     minimum=1, allow_none=True)
    if min_batch_size > batch_size:
        raise ValueError(f"min_batch_size={min_batch_size} is above "
                         f"batch_size={batch_size}.")
    num_samples = _data.count_samples(x, y)
    if max_batch_size is None:
        max_batch_size = max(batch_size, (num_samples // 10) if num_samples
                             else 64 * batch_size)
    max_batch_size = check_int("max_batch_size", max_batch_size,
                               minimum=batch_size)
    sizes = adaptive_rule.power_of_two_sizes(batch_size, min_batch_size,
                                             max_batch_size)
    callbacks = list(callbacks or [])
    backup = next((c for c in callbacks
                   if isinstance(c, keras.callbacks.BackupAndRestore)), None)
    state_path = (os.path.join(backup.backup_dir, STATE_FILE) if backup
                  else None)

    optimizer = model.optimizer
    original_lr = _optimizer.learning_rate_object(optimizer)
    original_value = (float(original_lr.numpy()) if _optimizer.is_variable(
        original_lr) else None)
    base_lr = original_value if original_value is not None else original_lr
    if not callable(base_lr) and not isinstance(base_lr, float):
        raise ValueError("fit_adaptive needs an optimizer with a learning rate "
                         f"or a schedule; got {original_lr!r}.")
    ratio_rule = _ratio_rule(rule, optimizer, batch_size)
    original_accumulation = _optimizer.gradient_accumulation_steps(optimizer)
    if original_accumulation > 1:
        raise ValueError(
            "fit_adaptive chooses the gradient accumulation itself; compile the "
            "model with an optimizer without `gradient_accumulation_steps`.")

    run = _Run(batch_size, ratio_rule)
    run.warmup = warmup_steps
    if state_path and os.path.exists(state_path):
        with open(state_path, encoding="utf-8") as f:
            run.update(json.load(f))
        if verbose:
            report.message(f"fit_adaptive: resuming at epoch {run.epoch + 1} with "
                           f"batch {run.batch_size}.")

    branches = None
    if signal == "branch":
        branches = _Branches(x, y, samples=branch_samples, tolerance=tolerance,
                             max_micro=max_micro_batch_size, base_lr=base_lr,
                             base_batch=batch_size, verbose=verbose)

    def decide(run):
        keep = max(min_measurements, len(run.g_sq) - run.decided_at)
        g, t = run.g_sq[-keep:], run.trace[-keep:]
        run.decided_at = len(run.g_sq)
        decision = adaptive_rule.next_batch_size(
            run.batch_size, g, t, sizes=sizes, fraction=fraction,
            min_measurements=min_measurements)
        if branches is None or decision.batch_size <= run.batch_size:
            return decision
        # a rise is tried in branches before the next epoch (not too often)
        if run.epoch + 1 >= run.retry_at:
            run.pending = decision.batch_size
        return adaptive_rule.Decision(run.batch_size, decision.b_simple,
                                      decision.interval, "to try")

    continuing = [_Continuing(c) for c in callbacks]
    trials, decisions = [], []
    merged = keras.callbacks.History()
    merged.history, merged.epoch = {}, []
    changes = []
    accumulation.ensure_optimizer_built(model, x, y, "fit_adaptive")
    with _backend.model_scope(model):
        _optimizer.settable_learning_rate(model.optimizer, _initial_lr(base_lr))
    if run.accumulators:  # the checkpoint holds accumulators: build them
        accumulation.configure(model, 2)
        accumulation.configure(model, 1)
    # the sums of fit's own step gradients, installed once for the whole run
    # (before any checkpoint is loaded: on JAX they are optimizer variables)
    gns = GradientNoiseScale(num_micro_batches=window, interval=interval,
                             method="steps", batch_size=batch_size,
                             persistent=True)
    gns.set_model(model)
    # room for an epoch of windows at the smallest batch
    gns.set_params({"steps": -(-num_samples // sizes[0]) if num_samples
                    else None})
    gns.on_train_begin()
    trained_at = None
    try:
        while run.epoch < epochs:
            epoch = run.epoch
            before = run.batch_size
            if run.pending:
                candidates = [size for size in sizes
                              if run.batch_size < size <= run.pending][::-1]
                accepted, record = branches.test(model, run, gns, candidates,
                                                 epoch)
                trials.append(record)
                run.pending = 0
                if accepted:
                    run.refusals = 0
                    _apply(run, accepted)
                    _note_change(changes, run, before,
                                 decisions[-1] if decisions else None, verbose)
                else:
                    run.refusals += 1
                    run.retry_at = adaptive_rule.retry_epoch(epoch, run.refusals)
                before = run.batch_size
            run.micro_batch_size = _micro_batch(run, max_micro_batch_size)
            # a copy of the state where a size is new (a change, or a
            # micro-batch not known to fit): what an error there goes back to
            sizes_now = (run.batch_size, run.micro_batch_size)
            snapshot = (TrainingState.capture(model) if sizes_now != trained_at
                        or run.micro_batch_size > run.fits else None)
            control = _EpochControl(run, gns, decide, base_lr, batch_size)
            tail = _Tail(run, gns, window, state_path)
            try:
                history = model.fit(
                    **_data.rebatched(x, y, run.micro_batch_size, model,
                                      "fit_adaptive"),
                    initial_epoch=epoch, epochs=epochs,
                    validation_data=validation_data,
                    callbacks=[control, *continuing, tail, gns],
                    verbose=verbose, **fit_kwargs)
            except Exception as error:
                if snapshot is None:
                    raise
                snapshot.restore()  # first: on JAX a failed step loses the state
                if not _backend.is_oom(error) or run.micro_batch_size < 2:
                    raise
                run.fails = run.micro_batch_size
                run.epoch = epoch
                if verbose:
                    report.message(
                        f"fit_adaptive: batch {run.micro_batch_size} ran out of "
                        "memory; retrying epoch "
                        f"{epoch + 1} as micro-batches of "
                        f"{run.micro_batch_size // 2} with gradient accumulation "
                        "(each size past the limit costs one failed try).")
                continue
            except BaseException:
                if snapshot is not None:
                    snapshot.restore()
                raise
            trained_at = sizes_now
            if run.micro_batch_size > run.fits:
                run.fits = run.micro_batch_size
            _merge(merged, history)
            if control.decision is not None:
                decisions.append(control.decision)
                if run.batch_size != before:
                    _note_change(changes, run, before, control.decision, verbose)
            if tail.user_stopped or len(history.epoch) == 0:
                break
    finally:
        gns.release()
        accumulation.configure(model, 1)
        _restore_lr(model, original_lr, original_value)
        model.stop_training = False
        forget_restored_epoch(model)
    last = {k: v[-1] for k, v in merged.history.items() if v}
    for callback in callbacks:  # the run is complete (a checkpoint goes)
        callback.on_train_end(last)
    merged.set_model(model)
    merged.params = {"epochs": epochs, "batch_sizes": sizes,
                     "changes": changes, "fraction": fraction, "signal": signal,
                     "trials": trials, "trial_updates": run.trial_updates}
    model.history = merged
    return merged


def _note_change(changes, run, before, decision, verbose):
    """Record a change of batch size (`decision`: the noise scale's, or None
    after a resume) and report it."""
    nan = float("nan")
    b_simple = decision.b_simple if decision else nan
    low, high = decision.interval if decision else (nan, nan)
    changes.append({"epoch": run.epoch, "from": before, "to": run.batch_size,
                    "noise_scale": b_simple, "interval": [low, high]})
    if verbose:
        report.message(
            f"fit_adaptive: B_simple ~{b_simple:.0f} ({low:.0f}..{high:.0f}); "
            f"batch {before} -> {run.batch_size} from epoch {run.epoch + 1}, "
            f"LR x{run.ratio / run.previous_ratio:.3g}.")


def _initial_lr(base_lr):
    if callable(base_lr):
        return float(keras.ops.convert_to_numpy(base_lr(0)))
    return base_lr


def _restore_lr(model, original_lr, original_value):
    base = _optimizer.base_optimizer(model.optimizer)
    current = _optimizer.learning_rate_object(base)
    if original_value is not None:
        current.assign(original_value)
    elif current is not original_lr:
        base.learning_rate = original_lr
        model.make_train_function(force=True)


def _merge(merged, history):
    merged.epoch.extend(history.epoch)
    for key, values in history.history.items():
        merged.history.setdefault(key, []).extend(values)


def plot_adaptive(history, ax=None, *, path=None):
    """Batch size, learning rate and `B_simple` per epoch of `fit_adaptive`.

    Returns the matplotlib axes (batch size and `B_simple` on a log scale,
    the LR on a second axis).

    Example:

    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> history = {"batch_size": [32, 64, 64], "learning_rate": [0.1, 0.2, 0.2],
    ...            "noise_scale": [300.0, 700.0, 900.0],
    ...            "noise_scale_low": [200.0, 500.0, 600.0],
    ...            "noise_scale_high": [500.0, 1000.0, 1400.0]}
    >>> ax = plot_adaptive(history)
    >>> ax.get_xlabel()
    'epoch'
    """
    from kbatch import plotting

    return plotting.plot_adaptive(history, ax=ax, path=path)


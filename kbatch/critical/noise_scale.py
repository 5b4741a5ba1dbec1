"""The gradient noise scale: a `fit` callback and a one-call measurement."""

from __future__ import annotations

import logging
import math

import keras
import numpy as np

from kbatch._internal import backend as _backend
from kbatch._internal import data as _data
from kbatch._internal import io as _io
from kbatch._internal import optimizer as _optimizer
from kbatch._internal.building import ensure_built
from kbatch._internal.model_checks import check_compiled_model
from kbatch._internal.results import Result
from kbatch._internal.state import TrainingState
from kbatch._internal.step_gradients import StepGradients
from kbatch._internal.validate import check_int
from kbatch._internal.validate import check_number
from kbatch._internal.validate import check_verbose
from kbatch.critical import estimators

__all__ = [
    "GradientNoiseScale",
    "NoiseScaleResult",
    "measure_noise_scale",
]


METHODS = ("auto", "micro_batches", "steps")


def _switches() -> bool:
    """Whether `method="steps"` switches train functions per step (on
    TensorFlow, whose steps wait for their logs anyway) rather than gating
    the measurement inside one compiled step (JAX keeps steps in flight
    while no callback reads them; PyTorch runs eagerly)."""
    return keras.config.backend() == "tensorflow"


def _samples_per_step(model, steps):
    """Samples per step of the epoch so far, from the loss tracker's count
    over the epoch's `steps`."""
    if not steps:
        return None
    for metric in getattr(model, "metrics", []):
        if metric.name == "loss" and hasattr(metric, "count"):
            seen = float(keras.ops.convert_to_numpy(metric.count))
            return max(1, math.ceil(seen / steps)) if seen > 0 else None
    return None


def _check_micro(num_micro_batches):
    return check_int("num_micro_batches", num_micro_batches, minimum=2)


def _loss_scale(optimizer) -> float:
    scale = _optimizer.loss_scale_variable(optimizer)
    return 1.0 if scale is None else float(scale.numpy())


class GradientNoiseScale(keras.callbacks.Callback):
    """Measure the gradient noise scale `B_simple` during `fit`.

    Two ways to get a small and a big batch's gradient, chosen by `method`:

    - `"micro_batches"` (TensorFlow): every `interval` steps the current batch
      is split into `num_micro_batches` micro-batches; their gradients give
      `|G_small|^2` (mean over micro-batches) and `|G_big|^2` (of their mean,
      the batch gradient). Exact (one set of weights), at the cost of one
      extra forward and backward pass per measurement.
    - `"steps"` (every backend): the gradients `fit` computes anyway, handed
      to the optimizer, are summed over `num_micro_batches` consecutive steps:
      `|G_small|^2` is the mean of their squared norms at the batch size of a
      step, `|G_big|^2` that of their mean. No extra pass, every sample
      counts; the weights move between the steps of a window, which biases
      the estimate a little (docs/adaptive.md). Under gradient accumulation
      the window is the accumulation's, whose micro-batches share the
      weights: exact. Under a `tf.distribute` strategy each step is an
      exact pair: each replica's gradient is the small batch, their
      all-reduced mean the big one (one more all-reduce of the gradients, no
      extra pass). The gradients are summed in float32, after a
      `LossScaleOptimizer` has unscaled them.
    - `"auto"`: `"micro_batches"` on TensorFlow, `"steps"` elsewhere.

    The two-batch estimator of McCandlish et al. (2018) gives unbiased
    estimates of `|G|^2` and `tr(Sigma)` from them. Each is smoothed by a bias-
    corrected moving average (`beta`), and their ratio, `B_simple`, is logged
    each epoch as `gradient_noise_scale` (so History and TensorBoard get it).
    The critical batch size, past which larger batches stop paying off in
    steps, is of the order of `B_simple`; it grows as training progresses.

    With `"micro_batches"`, gradients are computed in float32, without loss
    scaling (a `LossScaleOptimizer`'s scale is applied and removed), and a
    measurement whose gradients overflow is skipped. The measurement does not
    change the model: batch-norm statistics and seed states are put back.
    Batches whose size `num_micro_batches` does not divide (a short last
    batch) are skipped. Keras callbacks do not see the batch, so the callback
    compiles a second train function that also measures, and switches to it
    only on the steps that are due: the other steps run Keras' own train
    function, unchanged. Not under a `tf.distribute` strategy.

    Reference: S. McCandlish et al., "An Empirical Model of Large-Batch
    Training", 2018, https://arxiv.org/abs/1812.06162, Appendix A.1.

    Args:
        interval: Integer. Measure every `interval` steps (`"micro_batches"`),
            or one window of `num_micro_batches` steps at the start of every
            `interval` steps (`"steps"`; rounded up to a multiple of the
            window, and at least one window). Defaults to `20`.
        num_micro_batches: Integer >= 2. Parts the batch is split into
            (`"micro_batches"`), or steps combined (`"steps"`). Defaults to `4`.
        method: `"auto"`, `"micro_batches"` or `"steps"` (above).
        batch_size: Integer. `"steps"`: samples per step; defaults to `None`,
            read from the loss tracker after the first step.
        beta: Float in `[0, 1)`. Moving-average coefficient. Defaults to `0.99`.
        persistent: Boolean. Keep the step count, the estimates and the
            compiled functions from one `fit` call to the next (while the
            model's train function stays the same), for a run made of several
            `fit` calls, whose owner logs the estimate (this callback then
            does not); call `release()` at its end. Defaults to `False`.

    Attributes:
        b_simple: The current estimate.
        history: Per measurement: step, `|G|^2` and `tr(Sigma)` estimates.

    Example:

    >>> import keras, numpy as np
    >>> x = np.random.rand(512, 4).astype("float32")
    >>> y = (x @ np.arange(4.0) > 3).astype("int32")
    >>> model = keras.Sequential([keras.Input((4,)),
    ...                           keras.layers.Dense(2, activation="softmax")])
    >>> model.compile("sgd", "sparse_categorical_crossentropy")
    >>> gns = GradientNoiseScale(interval=2)
    >>> history = model.fit(x, y, batch_size=64, epochs=2, callbacks=[gns],
    ...                     verbose=0)
    >>> "gradient_noise_scale" in history.history
    True
    """

    def __init__(self, interval: int = 20, num_micro_batches: int = 4,
                 beta: float = 0.99, *, method: str = "auto",
                 batch_size: int | None = None, persistent: bool = False):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"Argument `method` must be one of {METHODS}. "
                             f"Received: method={method!r}")
        self.method = method
        self.batch_size = check_int("batch_size", batch_size, minimum=1,
                                    allow_none=True)
        self.interval = check_int("interval", interval, minimum=1)
        self.num_micro_batches = _check_micro(num_micro_batches)
        self.beta = check_number("beta", beta, low=0.0, high=1.0,
                                 high_inclusive=False)
        self._persistent = bool(persistent)
        if self._resolved_method() == "steps" and not _switches():
            # no per-step hooks: Keras then dispatches the steps without
            # waiting for each one's logs (on JAX a large part of a small
            # model's step time)
            self.on_train_batch_begin = self._no_batch_hook_begin
            self.on_train_batch_end = self._no_batch_hook_end
        self._reset()

    def _reset(self):
        self._replicas = 1
        self._switch_step = 0
        self._steps_probe = None
        self._step_batch = None
        self._warned = False
        self.ema = estimators.NoiseScaleEMA(self.beta)
        self.history = []
        self._normal = None
        self._measuring = None
        self._vars = None
        self._steps = 0
        self._due = False
        self._seen = 0

    @property
    def b_simple(self) -> float:
        return self.ema.b_simple

    _no_batch_hook_begin = keras.callbacks.Callback.on_train_batch_begin
    _no_batch_hook_end = keras.callbacks.Callback.on_train_batch_end

    def _resolved_method(self):
        if self.method != "auto":
            return self.method
        return ("micro_batches"
                if keras.config.backend() in _backend.IN_FIT_MICRO_BATCHES
                else "steps")

    def on_train_begin(self, logs=None):
        model = self.model
        if self._resolved_method() == "steps":
            self._begin_steps(model)
            return
        if (self._persistent and self._measuring is not None
                and model.train_function is self._normal):
            return  # the next `fit` of a run measured across `fit` calls
        self._reset()
        if getattr(model, "optimizer", None) is None:
            raise ValueError("`GradientNoiseScale` needs a compiled model.")
        if keras.config.backend() not in _backend.IN_FIT_MICRO_BATCHES:
            raise NotImplementedError(
                "GradientNoiseScale(method='micro_batches') splits the batch "
                "inside TensorFlow's train step; on the "
                f"{keras.config.backend()!r} backend use method='steps' (the "
                "default there), which measures with fit's own gradients.")
        backend = _backend.current()
        _refuse_distributed(model, "GradientNoiseScale")
        self._spe = int(getattr(model, "steps_per_execution", 1) or 1)
        self._vars = {
            name: keras.Variable(0, dtype=dtype, trainable=False,
                                 name=f"kbatch_gns_{name}")
            for name, dtype in (("measured", "int64"), ("small", "float32"),
                                ("big", "float32"), ("batch", "int64"))
        }
        # Two train functions: Keras' own, and one that also measures. The
        # callback switches to the second only on the steps that are due, so
        # the other steps run exactly the graph they would run without it.
        model.make_train_function()
        self._normal = model.train_function
        original = model.train_step
        v, k = self._vars, self.num_micro_batches
        scale_var = _optimizer.loss_scale_variable(model.optimizer)

        def measuring_train_step(data):
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
            batch = keras.ops.shape(keras.tree.flatten(x)[0])[0]

            def measure():
                scale = (keras.ops.cast(scale_var.value, "float32")
                         if scale_var is not None else 1.0)
                small, big = backend.micro_batch_norms(model, x, y, sample_weight,
                                                       k, scale)
                v["small"].assign(small)
                v["big"].assign(big)
                v["batch"].assign(keras.ops.cast(batch, "int64"))
                v["measured"].assign_add(1)
                return keras.ops.convert_to_tensor(0)

            keras.ops.cond(keras.ops.equal(batch % k, 0), measure,
                           lambda: keras.ops.convert_to_tensor(0))
            return original(data)

        model.train_step = measuring_train_step
        try:
            model.make_train_function(force=True)
            self._measuring = model.train_function
        finally:
            del model.train_step
            model.train_function = self._normal

    # ------------------------------------------ method "steps": fit's own gradients
    def _begin_steps(self, model):
        if self._steps_probe is not None and self._steps_probe.installed:
            return  # persistent: the sums carry on into this `fit`
        self._reset()
        if getattr(model, "optimizer", None) is None:
            raise ValueError("`GradientNoiseScale` needs a compiled model.")
        if not model.optimizer.built:
            with _backend.model_scope(model):
                model.optimizer.build(model.trainable_variables)
        strategy = getattr(model, "distribute_strategy", None)
        self._replicas = int(getattr(strategy, "num_replicas_in_sync", 1) or 1)
        window = _optimizer.gradient_accumulation_steps(model.optimizer)
        window = window if window > 1 else self.num_micro_batches
        if self._replicas > 1:  # one pair per step: replicas vs their mean
            window = self._replicas
        # the windows of an epoch are read at its end: room for all of them
        # (a small ring: a compiled JAX step carries it through every step)
        steps = (self.params or {}).get("steps") or 4096
        period = math.ceil(self.interval / window) * window
        # TensorFlow (one step per execution): a plain and a measuring train
        # function, switched per step, so unmeasured steps run Keras' own
        switch = _switches() and int(getattr(model, "steps_per_execution", 1)
                                     or 1) == 1
        self._steps_probe = StepGradients(
            model, window, interval=self.interval,
            capacity=max(64, steps // period + 2), switched=switch)
        self._steps_probe.install()
        model.make_train_function(force=True)
        if switch:
            self._build_switch(model)

    def _build_switch(self, model):
        """The measuring train functions: Keras' step with the probe armed
        while it is traced (and run, when eager), one that adds a step's
        gradient to the window and one that ends the window."""
        probe, original = self._steps_probe, model.train_step
        model.make_train_function(force=True)
        self._normal = model.train_function
        functions = {}
        for part in ("accumulate", "finish"):
            def measuring_train_step(data, part=part):
                probe.armed = part
                try:
                    return original(data)
                finally:
                    probe.armed = None

            model.train_step = measuring_train_step
            try:
                model.make_train_function(force=True)
                functions[part] = model.train_function
            finally:
                del model.train_step
        model.train_function = self._normal
        self._measuring = functions
        self._switch_step = 0

    def set_step_window(self, window: int, batch_size: int):
        """Method `"steps"`: combine `window` steps of `batch_size` samples
        from now on (`fit_adaptive` sets the accumulation steps, whose
        micro-batches share the weights)."""
        self.batch_size = int(batch_size)
        if self._steps_probe is not None:
            self._collect_steps()
            self._steps_probe.set_window(window)
            if self._steps_probe.switched:
                model = self.model
                if model.train_function is not self._normal:
                    self._build_switch(model)  # the train function was remade
                self._switch_step = 0

    def _steps_state(self):
        """Method `"steps"`: a copy of the window sums (or None)."""
        probe = self._steps_probe
        if probe is None or not probe.installed:
            return None
        return probe.state(), self._switch_step

    def _set_steps_state(self, state):
        """Undo the steps since `_steps_state()` (a trial's)."""
        if state is not None and self._steps_probe is not None:
            self._steps_probe.set_state(state[0])
            self._switch_step = state[1]

    def collect(self):
        """Method `"steps"`: fold in the windows finished so far (otherwise
        done at each epoch's end, after the callbacks before this one)."""
        self._collect_steps()

    def _collect_steps(self):
        probe = self._steps_probe
        if probe is None or not probe.installed:
            return
        model = self.model  # on JAX, puts the state of `fit` back first
        b_small = self.batch_size or self._step_batch or _samples_per_step(
            model, (self.params or {}).get("steps"))
        if not b_small:
            return
        self._step_batch = b_small
        b_big = b_small * probe.window
        steps_per_pair = probe.period  # a window at the start of each period
        if self._replicas > 1:  # the samples of a step are the global batch
            b_small, b_big, steps_per_pair = b_small // self._replicas, b_small, 1
        windows = probe.read()
        if probe.lost and not self._warned:
            self._warned = True
            logging.getLogger("kbatch").warning(
                "GradientNoiseScale: %d windows were overwritten before they "
                "were read (more than %d in an epoch).", probe.lost, probe.capacity)
        for small, big in windows:
            step = self._steps + min(steps_per_pair, probe.window)  # its end
            self._steps += steps_per_pair
            g_sq, trace = estimators.two_batch_estimates(small, big, b_small, b_big)
            if self.ema.update(g_sq, trace):
                self.history.append({"step": step, "g_sq": g_sq,
                                     "trace": trace, "batch_size": b_big})

    # ---------------------------------- method "micro_batches": split the batch
    def on_train_batch_begin(self, batch, logs=None):
        if self._normal is None:
            return
        probe = self._steps_probe
        if probe is not None:  # "steps", switched: a window at each period's start
            phase = self._switch_step % probe.period
            self.model.train_function = (
                self._normal if phase >= probe.window
                else self._measuring["finish" if phase == probe.window - 1
                                     else "accumulate"])
            return
        start, end = self._steps, self._steps + self._spe
        self._due = end // self.interval > start // self.interval
        self.model.train_function = self._measuring if self._due else self._normal

    def on_train_batch_end(self, batch, logs=None):
        if self._steps_probe is not None:
            self._switch_step += 1
            return
        self._steps += self._spe
        if not self._due:
            return
        self._due = False
        self.model.train_function = self._normal
        measured = int(self._vars["measured"].numpy())
        if measured == self._seen:  # the batch was not divisible: skipped
            return
        self._seen = measured
        b_big = int(self._vars["batch"].numpy())
        b_small = b_big // self.num_micro_batches
        small = float(self._vars["small"].numpy())
        big = float(self._vars["big"].numpy())
        g_sq, trace = estimators.two_batch_estimates(small, big, b_small, b_big)
        if self.ema.update(g_sq, trace):
            self.history.append({"step": self._steps, "g_sq": g_sq,
                                 "trace": trace, "batch_size": b_big})

    def on_epoch_end(self, epoch, logs=None):
        self._collect_steps()
        if logs is not None and not self._persistent:
            logs["gradient_noise_scale"] = float(self.b_simple)

    def on_train_end(self, logs=None):
        if self._persistent and self._steps_probe is not None:
            if self._normal is not None:
                self.model.train_function = self._normal
            return
        if self._persistent and self._normal is not None:
            self.model.train_function = self._normal  # kept for the next `fit`
            return
        self.release()

    def release(self):
        """Put Keras' own train function back (also after an interrupted fit)."""
        if self._steps_probe is not None and self._steps_probe.installed:
            self._collect_steps()
            self._steps_probe.uninstall()
            self._normal = self._measuring = None
            self.model.make_train_function(force=True)
        if self._normal is not None:
            self.model.train_function = self._normal
            self._normal = self._measuring = None

    def get_config(self):
        return {"interval": self.interval,
                "num_micro_batches": self.num_micro_batches, "beta": self.beta,
                "method": self.method, "batch_size": self.batch_size,
                "persistent": self._persistent}


class NoiseScaleResult(Result):
    """Outcome of `measure_noise_scale`: `B_simple`, its interval, the series.

    Attributes:
        b_simple: `tr(Sigma) / |G|^2` from the means of the estimates.
        interval: `(low, high)` 90% bootstrap interval over measurements.
        g_sq, trace: Arrays of the per-measurement estimates.
        batch_size, num_micro_batches: The two batch sizes were
            `batch_size // num_micro_batches` and `batch_size`.
        skipped: Measurements dropped as non-finite.
        b_preconditioned: With Adam (after its first update), the noise scale
            of the gradients as Adam applies them, divided by
            `sqrt(v_hat) + epsilon` (its second moment); else `None`.
        g_sq_preconditioned, trace_preconditioned: Its per-measurement
            estimates.

    Example:

    >>> result = NoiseScaleResult([1.0, 1.1, 0.9], [50.0, 60.0, 40.0],
    ...                           batch_size=64, num_micro_batches=4)
    >>> round(result.b_simple, 6)  # mean trace / mean |G|^2
    50.0
    """

    def __init__(self, g_sq, trace, *, batch_size, num_micro_batches, skipped=0,
                 confidence=0.9, g_sq_preconditioned=None,
                 trace_preconditioned=None):
        self.g_sq = np.asarray(g_sq, dtype=np.float64)
        self.trace = np.asarray(trace, dtype=np.float64)
        self.batch_size = int(batch_size)
        self.num_micro_batches = int(num_micro_batches)
        self.skipped = int(skipped)
        self.confidence = confidence
        self.b_simple = (estimators.b_simple(self.g_sq, self.trace) if self.g_sq.size
                         else math.nan)
        self.interval = estimators.bootstrap_interval(self.g_sq, self.trace, confidence)
        self.g_sq_preconditioned = self.trace_preconditioned = None
        self.b_preconditioned = None
        if g_sq_preconditioned is not None and len(g_sq_preconditioned):
            self.g_sq_preconditioned = np.asarray(g_sq_preconditioned, np.float64)
            self.trace_preconditioned = np.asarray(trace_preconditioned, np.float64)
            self.b_preconditioned = estimators.b_simple(self.g_sq_preconditioned,
                                                        self.trace_preconditioned)

    @classmethod
    def _from_fields(cls, data):
        return cls(_io.floats_from_json(data["g_sq"], "g_sq"),
                   _io.floats_from_json(data["trace"], "trace"),
                   batch_size=data["batch_size"],
                   num_micro_batches=data["num_micro_batches"],
                   skipped=data.get("skipped", 0),
                   confidence=float(data.get("confidence", 0.9)),
                   g_sq_preconditioned=_optional_floats(data, "g_sq_preconditioned"),
                   trace_preconditioned=_optional_floats(data,
                                                         "trace_preconditioned"))

    def _fields(self):
        return {
            "b_simple": self.b_simple if math.isfinite(self.b_simple) else None,
            "interval": _io.json_floats(self.interval),
            "confidence": self.confidence,
            "batch_size": self.batch_size,
            "num_micro_batches": self.num_micro_batches,
            "skipped": self.skipped,
            "g_sq": _io.json_floats(self.g_sq),
            "trace": _io.json_floats(self.trace),
            "b_preconditioned": self.b_preconditioned,
            "g_sq_preconditioned": None if self.g_sq_preconditioned is None
            else _io.json_floats(self.g_sq_preconditioned),
            "trace_preconditioned": None if self.trace_preconditioned is None
            else _io.json_floats(self.trace_preconditioned),
        }

    def __repr__(self):
        low, high = self.interval
        return (f"<NoiseScaleResult B_simple={self.b_simple:.4g} "
                f"({int(self.confidence * 100)}% interval {low:.3g}..{high:.3g}), "
                f"{self.g_sq.size} measurements at batch {self.batch_size}>")


def _optional_floats(data, key):
    value = data.get(key)
    return None if value is None else _io.floats_from_json(value, key)


def _refuse_distributed(model, name):
    """The micro-batch gradients are computed on one device: refuse a model
    whose variables are spread over the replicas of a strategy."""
    strategy = getattr(model, "distribute_strategy", None)
    replicas = getattr(strategy, "num_replicas_in_sync", 1)
    if replicas > 1:
        raise ValueError(
            f"`{name}` does not support tf.distribute strategies yet: model "
            f"{model.name!r} is compiled under {type(strategy).__name__} with "
            f"{replicas} replicas. The noise scale does not depend on the device "
            "layout: build the same model outside the strategy, copy the "
            "weights (`set_weights(model.get_weights())`), and measure that.")


@_backend.in_model_scope
def measure_noise_scale(
    model,
    x,
    y=None,
    *,
    batch_size: int,
    num_steps: int = 50,
    num_micro_batches: int = 4,
    sample_weight=None,
    seed: int | None = None,
    verbose="auto",
) -> NoiseScaleResult:
    """Measure the gradient noise scale of a model at its current weights.

    Draws `num_steps` batches of `batch_size`, splits each into
    `num_micro_batches` parts, and applies the two-batch estimator of McCandlish
    et al. (2018) to every one (see `kbatch.critical.estimators`). Nothing is
    trained: the weights, the optimizer and every other variable are as before
    afterwards.

    Measure where it matters: `B_simple` is small at initialization and grows
    as the loss falls, so measure a partly trained model (or use the
    `GradientNoiseScale` callback during training).

    Args:
        model: A compiled `keras.Model` (TensorFlow backend).
        x, y: Training data: arrays, a `tf.data.Dataset`, a `PyDataset` or a
            generator (as for `find_lr`).
        batch_size: Integer. The big batch; must be divisible by
            `num_micro_batches`.
        num_steps: Integer. Number of batches measured. Defaults to `50`.
        num_micro_batches: Integer >= 2. Defaults to `4`.
        sample_weight: Optional array of one weight per sample, for array
            inputs (a dataset carries its weights as the third element).
        seed: Optional integer seed for drawing array batches.
        verbose: `"auto"`, `0` or `1` (a progress bar).

    Returns:
        A `NoiseScaleResult`.

    Example:

    >>> import keras, numpy as np
    >>> x = np.random.rand(512, 8).astype("float32")
    >>> y = (x.sum(axis=1) > 4).astype("int32")
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16),
    ...                           keras.layers.Dense(2, activation="softmax")])
    >>> model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    >>> result = measure_noise_scale(model, x, y, batch_size=64, num_steps=10,
    ...                              seed=0, verbose=0)
    >>> low, high = result.interval  # B_simple with its bootstrap interval
    >>> bool(result.b_simple > 0 and low <= result.b_simple <= high)
    True
    """
    check_compiled_model(model, "measure_noise_scale")
    _refuse_distributed(model, "measure_noise_scale")
    batch_size = check_int("batch_size", batch_size, minimum=2)
    num_steps = check_int("num_steps", num_steps, minimum=2)
    num_micro_batches = _check_micro(num_micro_batches)
    verbose = check_verbose(verbose)
    if batch_size % num_micro_batches:
        raise ValueError(
            f"Argument `num_micro_batches`={num_micro_batches} must divide "
            f"`batch_size`={batch_size}, so that the micro-batches are equal. "
            f"Try num_micro_batches={_divisor_near(batch_size, num_micro_batches)}."
        )
    backend = _backend.current()
    is_dataset = not _data.is_array_like(x)
    if sample_weight is not None and is_dataset:
        raise ValueError(
            "Argument `sample_weight` is for array inputs; a dataset carries its "
            "weights in its batches, as `(x, y, sample_weight)`.")
    stream = _data.make_stream(x, y, batch_size=None if is_dataset else batch_size,
                               num_batches=num_steps, seed=seed, model=model,
                               sample_weight=sample_weight)
    if stream.batch_size != batch_size:
        raise ValueError(
            f"The data yields batches of {stream.batch_size}, but "
            f"batch_size={batch_size} was asked for. Pass the batch size of the "
            "dataset, or unbatched data."
        )
    ensure_built(model, stream.first_batch)
    state = TrainingState.capture(model)
    run = backend.compiled_micro_batch_norms(model, num_micro_batches)
    scale = _loss_scale(model.optimizer)
    precondition = _optimizer.adam_preconditioner(model.optimizer,
                                                  model.trainable_variables)
    g_sq, trace, skipped = [], [], 0
    g_sq_p, trace_p = [], []
    progbar = keras.utils.Progbar(num_steps, unit_name="batch") if verbose else None
    b_small = batch_size // num_micro_batches
    try:
        for i, batch in enumerate(_data.iterate(stream)):
            if i >= num_steps:
                break
            bx, by, bsw = keras.utils.unpack_x_y_sample_weight(batch)
            if _data.batch_size_of((bx,)) != batch_size:
                skipped += 1
                continue
            norms = run(bx, by, bsw, scale, precondition)
            estimate = estimators.two_batch_estimates(
                float(norms[0]), float(norms[1]), b_small, batch_size)
            if all(math.isfinite(v) for v in estimate):
                g_sq.append(estimate[0])
                trace.append(estimate[1])
                if precondition is not None:
                    g_p, t_p = estimators.two_batch_estimates(
                        float(norms[2]), float(norms[3]), b_small, batch_size)
                    g_sq_p.append(g_p)
                    trace_p.append(t_p)
            else:
                skipped += 1
            if progbar is not None:
                progbar.update(i + 1)
    finally:
        state.restore()
    return NoiseScaleResult(g_sq, trace, batch_size=batch_size,
                            num_micro_batches=num_micro_batches, skipped=skipped,
                            g_sq_preconditioned=g_sq_p if precondition else None,
                            trace_preconditioned=trace_p if precondition else None)


def _divisor_near(n, k):
    divisors = [d for d in range(2, n + 1) if n % d == 0]
    return min(divisors, key=lambda d: (abs(d - k), d)) if divisors else 1

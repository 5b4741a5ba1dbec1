"""Every kind of Keras model through kbatch's entry points.

The matrix: Sequential, functional, subclassed, a custom `train_step` that
returns the batch's own loss, one that returns a running-mean tracker (as in
Keras' guide), `compute_loss` overridden with and without `training`,
multi-input, multi-output with loss weights, and sample weights -- through
`find_lr`, `LRRangeTest`, `ScaleLearningRate`, `measure_noise_scale` and
`BatchLRHyperModel`. Each cell either works (and leaves the model as it
found it where that is promised) or raises a clear error before training.
MirroredStrategy, inside and outside its scope, runs in a fresh process at the
end (logical CPU devices must be set before TensorFlow starts).
"""

import json
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import TWO_CPU_STRATEGY
from conftest import assert_same_state
from conftest import model_state

import kbatch

N, D, C = 256, 8, 3


def _data(n=N, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D)).astype("float32")
    y = np.argmax(x @ rng.normal(size=(D, C)), axis=1).astype("int32")
    return x, y


def _body(inputs):
    h = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    return keras.layers.Dense(C, activation="softmax", name="out")(h)


class BatchLossStep(keras.Model):
    """A custom `train_step` returning the batch's own loss (no tracker)."""

    def _update(self, data):
        """One step of SGD on the batch; returns its loss."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred,
                                     sample_weight=sample_weight)
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        return loss

    def train_step(self, data):
        return {"loss": self._update(data)}


class TrackerStep(BatchLossStep):
    """Keras' guide: the custom `train_step` returns its own `Mean` tracker."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_tracker = keras.metrics.Mean(name="loss")

    @property
    def metrics(self):
        return [self.loss_tracker]

    def train_step(self, data):
        loss = self._update(data)
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        self.loss_tracker.update_state(loss, sample_weight=tf.shape(x)[0])
        return {"loss": self.loss_tracker.result()}


class LossWithTraining(keras.Model):
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                     training=True):
        return super().compute_loss(x=x, y=y, y_pred=y_pred,
                                    sample_weight=sample_weight, training=training)


class LossWithoutTraining(keras.Model):
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None):
        return super().compute_loss(x=x, y=y, y_pred=y_pred,
                                    sample_weight=sample_weight)


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(16, activation="relu")
        self.out = keras.layers.Dense(C, activation="softmax")

    def call(self, x):
        return self.out(self.hidden(x))


def _compile(model, **kwargs):
    kwargs.setdefault("loss", "sparse_categorical_crossentropy")
    model.compile(keras.optimizers.SGD(0.01), **kwargs)
    return model


def _functional(cls=keras.Model):
    inputs = keras.Input((D,))
    return _compile(cls(inputs, _body(inputs)))


def _multi_input():
    a, b = keras.Input((D // 2,), name="a"), keras.Input((D // 2,), name="b")
    return _compile(keras.Model([a, b], _body(keras.layers.Concatenate()([a, b]))))


def _multi_output():
    inputs = keras.Input((D,))
    h = keras.layers.Dense(16, activation="relu")(inputs)
    first = keras.layers.Dense(C, activation="softmax", name="first")(h)
    second = keras.layers.Dense(C, activation="softmax", name="second")(h)
    return _compile(keras.Model(inputs, [first, second]),
                    loss=["sparse_categorical_crossentropy"] * 2,
                    loss_weights=[1.0, 0.3])


def _sequential():
    return _compile(keras.Sequential([
        keras.Input((D,)), keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(C, activation="softmax")]))


KINDS = {
    "sequential": _sequential,
    "functional": _functional,
    "subclassed": lambda: _compile(Subclassed()),
    "train_step_batch_loss": lambda: _functional(BatchLossStep),
    "train_step_tracker": lambda: _functional(TrackerStep),
    "compute_loss_training": lambda: _functional(LossWithTraining),
    "compute_loss_no_training": lambda: _functional(LossWithoutTraining),
    "multi_input": _multi_input,
    "multi_output": _multi_output,
    "sample_weight": _functional,
}


# On every `make test`: the kinds whose handling differs inside kbatch; the
# rest of the matrix runs with the slow tests.
FAST = ("functional", "train_step_batch_loss", "train_step_tracker",
        "compute_loss_no_training", "multi_output", "sample_weight")


def _kinds(fast=FAST):
    return [kind if kind in fast else pytest.param(kind, marks=pytest.mark.slow)
            for kind in sorted(KINDS)]


def _inputs(kind, x, y):
    """`(x, y, extra fit/find_lr kwargs)` for a kind of model."""
    if kind == "multi_input":
        return {"a": x[:, : D // 2], "b": x[:, D // 2 :]}, y, {}
    if kind == "multi_output":
        return x, (y, y), {}
    if kind == "sample_weight":
        w = np.where(y == 0, 2.0, 0.5).astype("float32")
        return x, y, {"sample_weight": w}
    return x, y, {}


def _build(kind, x):
    keras.utils.set_random_seed(7)
    model = KINDS[kind]()
    if not model.built:
        model(x)
    return model


@pytest.mark.parametrize("kind", _kinds())
def test_find_lr_records_true_batch_losses_and_restores(kind):
    x0, y0 = _data()
    x, y, extra = _inputs(kind, x0, y0)
    model = _build(kind, x)
    before = model_state(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = kbatch.find_lr(model, x, y, batch_size=32, num_steps=40,
                                smoothing=0.0, seed=0, extend=False, verbose=0,
                                **extra)
    assert_same_state(before, model_state(model))
    assert result.lrs.size >= 20
    assert np.isfinite(result.losses).all() and (result.losses > 0).all()
    if kind.startswith(("train_step", "compute_loss")):
        # The same network trained by Keras' own train_step: the same losses.
        ref = _build("functional", x)
        ref.set_weights(model.get_weights())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = kbatch.find_lr(ref, x, y, batch_size=32, num_steps=40,
                                      smoothing=0.0, seed=0, extend=False,
                                      verbose=0)
        n = min(result.losses.size, expected.losses.size)
        np.testing.assert_allclose(result.losses[:n], expected.losses[:n],
                                   rtol=1e-4)


@pytest.mark.parametrize("kind", _kinds(("train_step_batch_loss", "multi_output")))
def test_range_test_callback_in_fit(kind):
    x0, y0 = _data()
    x, y, extra = _inputs(kind, x0, y0)
    model = _build(kind, x)
    before = model_state(model)
    finder = kbatch.LRRangeTest(min_lr=1e-4, max_lr=1.0, num_steps=8, smoothing=0.0)
    model.fit(x, y, batch_size=32, epochs=1, callbacks=[finder], verbose=0,
              shuffle=False, **extra)
    assert finder.result.lrs.size == 8
    losses = finder.result.losses
    assert np.isfinite(losses).all() and (losses > 0).all()
    if kind == "train_step_batch_loss":  # the values in the logs, as they are
        ref = _build("functional", x)
        ref.set_weights(before[0][: len(ref.weights)])
        ref_finder = kbatch.LRRangeTest(min_lr=1e-4, max_lr=1.0, num_steps=8,
                                        smoothing=0.0)
        ref.fit(x, y, batch_size=32, epochs=1, callbacks=[ref_finder], verbose=0,
                shuffle=False)
        np.testing.assert_allclose(losses, ref_finder.result.losses, rtol=1e-4)
    assert_same_state(before, model_state(model))


@pytest.mark.parametrize("kind", _kinds(("subclassed", "multi_input")))
def test_scale_learning_rate_in_fit(kind):
    x0, y0 = _data()
    x, y, extra = _inputs(kind, x0, y0)
    model = _build(kind, x)
    scale = kbatch.ScaleLearningRate(0.01, base_batch_size=16, batch_size=64,
                                     rule="linear", verbose=0)
    history = model.fit(x, y, batch_size=64, epochs=1, callbacks=[scale],
                        verbose=0, **extra)
    assert np.isfinite(history.history["loss"]).all()
    lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    assert lr == pytest.approx(0.04)


@pytest.mark.parametrize("kind", _kinds(("train_step_tracker", "sample_weight")))
def test_measure_noise_scale(kind):
    x0, y0 = _data()
    x, y, extra = _inputs(kind, x0, y0)
    model = _build(kind, x)
    before = model_state(model)
    result = kbatch.measure_noise_scale(model, x, y, batch_size=64, num_steps=3,
                                        seed=0, verbose=0, **extra)
    assert np.isfinite(result.g_sq).all() and result.g_sq.size == 3
    assert_same_state(before, model_state(model))
    if extra:  # the weights are used: another gradient than without them
        plain = kbatch.measure_noise_scale(model, x, y, batch_size=64, num_steps=3,
                                           seed=0, verbose=0)
        assert not np.allclose(plain.g_sq, result.g_sq, rtol=1e-3)


def _tuner_build(kind):
    def build(hp):
        return KINDS[kind]()
    return build


@pytest.mark.parametrize("kind", [
    "train_step_batch_loss",
    *(pytest.param(k, marks=pytest.mark.slow) for k in (
        "sequential", "subclassed", "multi_input", "multi_output", "sample_weight")),
])
def test_batch_lr_hypermodel_search(kind, tmp_path):
    import keras_tuner as kt

    from kbatch.tuner import BatchLRHyperModel

    x0, y0 = _data()
    x, y, extra = _inputs(kind, x0, y0)
    hypermodel = BatchLRHyperModel(_tuner_build(kind), batch_sizes=[32, 64],
                                   learning_rate=(1e-3, 1e-1), epochs=1)
    tuner = kt.RandomSearch(hypermodel, objective="loss", max_trials=1,
                            directory=str(tmp_path), project_name=kind, seed=0)
    tuner.search(x, y, verbose=0, **extra)
    trial = tuner.oracle.get_best_trials(1)[0]
    assert np.isfinite(trial.score)


_MIRRORED = TWO_CPU_STRATEGY + textwrap.dedent("""
    x = np.random.default_rng(0).normal(size=(512, 8)).astype("float32")
    y = (x.sum(axis=1) > 0).astype("int32")

    def make():
        with strategy.scope():
            model = keras.Sequential([keras.Input((8,)),
                                      keras.layers.Dense(2, activation="softmax")])
            model.compile(keras.optimizers.Adam(0.01),
                          "sparse_categorical_crossentropy")
        return model

    calls = {
        "find_lr": lambda m: kbatch.find_lr(m, x, y, batch_size=64, num_steps=10,
                                            extend=False, verbose=0),
        "range_test": lambda m: m.fit(x, y, batch_size=32, epochs=1, verbose=0,
                                      callbacks=[kbatch.LRRangeTest(num_steps=8)]),
        "scale": lambda m: m.fit(x, y, batch_size=64, epochs=1, verbose=0,
                                 callbacks=[kbatch.ScaleLearningRate(
                                     0.01, base_batch_size=32, batch_size=64,
                                     verbose=0)]),
        "noise": lambda m: kbatch.measure_noise_scale(m, x, y, batch_size=64,
                                                      num_steps=2, verbose=0),
    }
    out = {}
    for where in ("outside", "inside"):
        for name, call in calls.items():
            model = make()
            before = [w.copy() for w in model.get_weights()]
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    if where == "inside":
                        with strategy.scope():
                            call(model)
                    else:
                        call(model)
                status = "ok"
            except Exception as error:
                status = f"{type(error).__name__}: {error}"[:200]
            kept = all(np.array_equal(a, b)
                       for a, b in zip(before, model.get_weights()))
            try:  # the model must still train afterwards
                model.fit(x, y, batch_size=64, epochs=1, verbose=0)
                trains = True
            except Exception:
                trains = False
            out[f"{where}/{name}"] = {"status": status, "kept": kept,
                                      "trains": trains}
    print(json.dumps(out))
""")


@pytest.mark.slow  # a fresh process with two logical devices: ~40 s
def test_mirrored_strategy_inside_and_outside_its_scope():
    proc = subprocess.run([sys.executable, "-c", _MIRRORED], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(out) == 8
    for key, cell in out.items():
        if key.endswith("/noise"):  # refused before anything ran
            assert cell["status"].startswith("ValueError: `measure_noise_scale` "
                                             "does not support tf.distribute"), cell
        else:
            assert cell["status"] == "ok", (key, cell)
        assert cell["trains"], key
        if key.endswith(("find_lr", "range_test", "noise")):
            assert cell["kept"], key  # restored exactly

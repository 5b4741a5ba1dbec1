"""The core of kbatch on the active Keras backend (run with KERAS_BACKEND set).

    KERAS_BACKEND=jax python _backend_core.py PROJECT_DIR

Each check raises on failure; the last line printed is a JSON list of the
checks that passed. Used by test_backends.py, which runs it on JAX and PyTorch.
"""

import json
import os
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))

import keras
import keras_tuner
import numpy as np
from conftest import assert_same_state
from conftest import classification_data
from conftest import logistic_b_simple_error
from conftest import make_classifier
from conftest import model_state

import kbatch
from kbatch._internal import backend as _backend

warnings.simplefilter("ignore")
BACKEND = keras.config.backend()
passed = []
x, y = classification_data(n=256)


def check(name):
    def decorate(fn):
        keras.config.set_dtype_policy("float32")
        keras.utils.set_random_seed(0)
        start = time.perf_counter()
        fn()
        sys.stderr.write(f"{time.perf_counter() - start:6.1f} s  {name}\n")
        assert keras.config.dtype_policy().name == "float32", name
        passed.append(name)
        return fn

    return decorate


def trained(optimizer="adam"):
    model = make_classifier(optimizer=optimizer)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    return model


@check("find_lr restores bitwise, also with a schedule")
def _():
    for optimizer in ("adam", keras.optimizers.SGD(
            keras.optimizers.schedules.ExponentialDecay(0.01, 10, 0.9),
            momentum=0.9)):
        model = trained(optimizer)
        before = model_state(model)
        result = kbatch.find_lr(model, x, y, batch_size=32, num_steps=40,
                                verbose=0)
        assert result.lrs.size >= 20 and result.suggestion() > 0
        assert_same_state(before, model_state(model))


class Linear(keras.Model):
    """Loss mean(w * 1): the gradient is exactly 1 at every step."""

    def __init__(self):
        super().__init__()
        self.w = self.add_weight(shape=(1,), initializer="zeros")

    def call(self, inputs):
        return self.w * inputs[:, :1]


@check("each step trains at its own LR (w = -sum of the swept LRs)")
def _():
    model = Linear()
    model.compile(keras.optimizers.SGD(0.1), loss=lambda t, p: keras.ops.mean(p))
    ones = np.ones((64, 1), "float32")
    finder = kbatch.LRRangeTest(min_lr=1e-3, max_lr=1.0, num_steps=20,
                                restore_weights=False)
    model.fit(ones, ones, batch_size=4, epochs=2, shuffle=False,
              callbacks=[finder], verbose=0)  # crosses an epoch boundary
    lrs = finder.result.lrs
    assert lrs.size == 20
    np.testing.assert_allclose(float(model.w.numpy()[0]), -lrs.sum(), rtol=1e-5)


@check("per-batch losses are de-averaged exactly")
def _():
    model = Linear()
    model.compile(keras.optimizers.SGD(0.0), loss="mse")
    inputs = np.ones((40, 1), "float32")
    targets = np.repeat(np.arange(10, dtype="float32"), 4)[:, None]
    finder = kbatch.LRRangeTest(min_lr=1e-9, max_lr=1e-8, num_steps=10)
    model.fit(inputs, targets, batch_size=4, shuffle=False, callbacks=[finder],
              verbose=0)
    np.testing.assert_allclose(finder.result.losses, np.arange(10.0) ** 2,
                               rtol=1e-5)


@check("find_lr under mixed_float16 keeps the loss scale and the policy")
def _():
    keras.config.set_dtype_policy("mixed_float16")
    model = trained(keras.optimizers.SGD(0.01))
    scale = float(model.optimizer.dynamic_scale.numpy())
    before = model_state(model)
    kbatch.find_lr(model, x, y, batch_size=32, num_steps=30, max_lr=100.0,
                   verbose=0)
    assert float(model.optimizer.dynamic_scale.numpy()) == scale
    assert_same_state(before, model_state(model))
    assert keras.config.dtype_policy().name == "mixed_float16"
    keras.config.set_dtype_policy("float32")


@check("throughput and memory search restore the model")
def _():
    model = trained()
    before = model_state(model)
    speed = kbatch.measure_throughput(model, x, y, batch_sizes=[8, 32],
                                      num_steps=3, warmup_steps=1, verbose=0)
    assert all(np.isfinite(speed.samples_per_second))
    limit = kbatch.find_max_batch_size(model, x, y, max_batch_size=64,
                                       steps_per_trial=1, verbose=0)
    assert limit.largest_train == 64
    assert_same_state(before, model_state(model))


def backend_oom():
    if BACKEND == "torch":
        import torch

        return torch.OutOfMemoryError("CUDA out of memory (injected)")
    if BACKEND == "jax":
        import jax

        return jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory")
    import tensorflow as tf

    return tf.errors.ResourceExhaustedError(None, None, "OOM (injected)")


class OutOfMemoryAbove(keras.layers.Layer):
    def __init__(self, limit, **kwargs):
        super().__init__(**kwargs)
        self.limit = limit

    def call(self, inputs, training=None):
        size = inputs.shape[0]
        if training and isinstance(size, int) and size > self.limit:
            raise backend_oom()
        return inputs


@check("the backend's out-of-memory error is recognised; exact largest batch")
def _():
    assert _backend.is_oom(backend_oom())
    assert not _backend.is_oom(ValueError("shapes do not match"))
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4),
                              OutOfMemoryAbove(40), keras.layers.Dense(3)])
    model.compile("sgd", "sparse_categorical_crossentropy")
    result = kbatch.find_max_batch_size(model, x, y, max_batch_size=128,
                                        mode="binsearch", steps_per_trial=1,
                                        evaluation=False, verbose=0)
    assert result.largest_train == 40, result.trials


@check("LR scaling in fit: ScaleLearningRate and the warm-up schedule")
def _():
    model = make_classifier(optimizer=keras.optimizers.SGD(0.1))
    history = model.fit(x, y, batch_size=64, epochs=2, verbose=0, callbacks=[
        kbatch.ScaleLearningRate(0.05, 32, 64, warmup_steps=4, verbose=0)])
    lr = keras.ops.convert_to_numpy(model.optimizer.learning_rate)
    assert np.isclose(float(lr), 0.1)
    assert np.isfinite(history.history["loss"]).all()
    schedule = kbatch.BatchScaledSchedule(0.05, 32, 128, warmup_steps=10)
    assert np.isclose(float(schedule(10)), 0.2)
    config = keras.saving.serialize_keras_object(schedule)
    assert keras.saving.deserialize_keras_object(config).get_config() == \
        schedule.get_config()


@check("batch-size schedule: exact step counts")
def _():
    model = make_classifier(optimizer=keras.optimizers.SGD(0.01))
    history = kbatch.fit_with_batch_schedule(
        model, x, y, schedule=kbatch.BatchSizeSchedule(16, [1], factor=4,
                                           max_batch_size=64),
        epochs=2, verbose=0)
    assert history.history["batch_size"] == [16, 64]
    assert history.history["updates"] == [16, 4]


@check("noise scale: the same estimates as TensorFlow, same weights and batches")
def _():
    fixture = np.load(os.path.join(sys.argv[1], "noise_fixture.npz"))
    model = make_classifier()
    model.set_weights([fixture[f"w{i}"] for i in range(len(model.weights))])
    model.optimizer.build(model.trainable_variables)
    before = model_state(model)
    result = kbatch.measure_noise_scale(model, fixture["x"], fixture["y"],
                                        batch_size=64, num_steps=4, seed=0,
                                        verbose=0)
    np.testing.assert_allclose(result.g_sq, fixture["g_sq"], rtol=2e-3, atol=1e-6)
    np.testing.assert_allclose(result.trace, fixture["trace"], rtol=2e-3)
    assert_same_state(before, model_state(model))


@check("noise scale: exact B_simple of a logistic regression")
def _():
    def measure(model, lx, ly, seed):
        return kbatch.measure_noise_scale(model, lx, ly, batch_size=256,
                                          num_steps=60, num_micro_batches=8,
                                          seed=seed, verbose=0)

    errors = [logistic_b_simple_error(seed, measure)[0] for seed in (0, 1)]
    assert np.mean(errors) < 0.2, errors


@check("noise scale in fit from the step gradients: exact under accumulation")
def _():
    from kbatch._internal import optimizer as _optimizer

    model = make_classifier(optimizer=keras.optimizers.SGD(0.1))
    model.optimizer.build(model.trainable_variables)
    _optimizer.set_gradient_accumulation(model.optimizer, 4)
    small, big = _backend.module().compiled_micro_batch_norms(model, 4)(
        x[:64], y[:64], None, 1.0)
    gns = kbatch.GradientNoiseScale(num_micro_batches=4, batch_size=16)
    model.fit(x[:64], y[:64], batch_size=16, shuffle=False, epochs=1,
              callbacks=[gns], verbose=0)
    assert gns._resolved_method() == "steps" and len(gns.history) == 1
    from kbatch.critical import estimators

    g_sq, trace = estimators.two_batch_estimates(small, big, 16, 64)
    np.testing.assert_allclose([gns.history[0]["g_sq"], gns.history[0]["trace"]],
                               [g_sq, trace], rtol=1e-4)
    assert len(model.optimizer.variables) == 2 + 4  # the sums were taken off


@check("fit_adaptive: grows, and accumulates past an injected out-of-memory")
def _():
    noisy = np.random.default_rng(0).integers(0, 3, size=len(x)).astype("int32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16),
                              OutOfMemoryAbove(16), keras.layers.Dense(3),
                              keras.layers.Activation("softmax")])
    # compiled: JAX traces each batch shape with its static size, so the
    # injected error comes when a step first sees a batch above the limit
    model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    history = kbatch.fit_adaptive(model, x, noisy, batch_size=8, epochs=5,
                                  max_batch_size=64, fraction=1.0,
                                  min_measurements=4, verbose=0)
    sizes = history.history["batch_size"]
    micro = history.history["micro_batch_size"]
    assert max(sizes) > 16 and max(micro) <= 16, (sizes, micro)
    assert int(model.optimizer.iterations.numpy()) == sum(history.history["updates"])
    from kbatch._internal import optimizer as _optimizer

    assert _optimizer.gradient_accumulation_steps(model.optimizer) == 1


@check("fit_adaptive(signal='branch'): refused branches are undone exactly")
def _():
    from kbatch.scaling import adaptive_rule

    seen = []

    def up(batch_size, g_sq, trace, *, sizes, **kwargs):  # always proposes x2
        seen.append((list(g_sq), list(trace)))
        bigger = [s for s in sizes if s > batch_size]
        return adaptive_rule.Decision(bigger[0] if bigger else batch_size, 999.0,
                                      (500.0, 2000.0), "up")

    real = adaptive_rule.next_batch_size, adaptive_rule.branch_accepts
    adaptive_rule.next_batch_size = up
    adaptive_rule.branch_accepts = lambda *args, **kwargs: False
    try:
        runs = []
        for limit in (64, 16):  # branches tried and refused; none possible
            seen.clear()
            keras.utils.set_random_seed(3)
            model = make_classifier(optimizer=keras.optimizers.SGD(0.05),
                                    dropout=0.2)
            history = kbatch.fit_adaptive(
                model, x, y, batch_size=16, epochs=4, signal="branch",
                min_measurements=2, max_batch_size=limit, window=2, interval=2,
                verbose=0)
            runs.append((model_state(model), list(seen), history))
    finally:
        adaptive_rule.next_batch_size, adaptive_rule.branch_accepts = real
    (tried, tried_seen, tried_history), (plain, plain_seen, _) = runs
    assert [t["epoch"] for t in tried_history.params["trials"]] == [1, 3]
    assert_same_state(plain, tried)
    np.testing.assert_allclose(np.array(tried_seen[-1]), np.array(plain_seen[-1]),
                               rtol=1e-6)


@check("advise: memory, throughput, noise scale and LR scaling on this backend")
def _():
    advice = kbatch.advise(make_classifier, x, y, batch_sizes=[16, 32, 64],
                           max_batch_size=64, train_steps=10, noise_steps=5,
                           range_test_steps=40, throughput_steps=5, verbose=0)
    assert advice.batch_size in (16, 32, 64) and advice.learning_rate > 0
    assert np.isfinite(advice.noise.b_simple) and advice.noise.b_simple > 0


@check("BatchLRHyperModel search with cached range tests")
def _():
    def build(hp):
        model = keras.Sequential([
            keras.Input((8,)),
            keras.layers.Dense(hp.Int("units", 8, 16, step=8), activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ])
        model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                      "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    hypermodel = kbatch.tuner.BatchLRHyperModel(build, batch_sizes=(16, 64),
                                                scaling_rule="linear", epochs=1)
    tuner = keras_tuner.RandomSearch(hypermodel, objective="val_accuracy",
                                     max_trials=2, seed=1, overwrite=True,
                                     directory=sys.argv[1])
    tuner.search(x[:192], y[:192], validation_data=(x[192:], y[192:]), verbose=0)
    trials = list(tuner.oracle.trials.values())
    assert [t.status for t in trials] == ["COMPLETED"] * 2
    for trial in trials:
        lr = trial.metrics.get_last_value("learning_rate")
        batch = trial.hyperparameters.get("batch_size")
        measured = hypermodel.anchors["measured"]
        centre = measured["learning_rates"][measured["batch_sizes"].index(batch)]
        expected = centre * trial.hyperparameters.get("lr_multiplier")
        assert np.isclose(lr, expected, rtol=1e-4), (lr, expected)


print(json.dumps(passed))

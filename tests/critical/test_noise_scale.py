"""Gradient noise scale: the estimator against exact values, the callback, the
measurement function."""

import json
import math
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from conftest import TWO_CPU_STRATEGY
from conftest import assert_same_state
from conftest import classification_data
from conftest import exact_b_simple
from conftest import logistic_b_simple_error
from conftest import logistic_problem
from conftest import make_classifier
from conftest import model_state

import kbatch


def _measure(model, x, y, seed):
    return kbatch.measure_noise_scale(model, x, y, batch_size=256, num_steps=60,
                                      num_micro_batches=8, seed=seed, verbose=0)


def test_measurement_recovers_the_exact_b_simple_of_a_logistic_regression():
    errors = []
    for seed in (0, 1, 2):
        error, result = logistic_b_simple_error(seed, _measure)
        errors.append(error)
        assert result.g_sq.size == 60
    assert np.mean(errors) < 0.2, errors


def test_measuring_leaves_the_model_untouched():
    x, y = classification_data(n=512)
    model = make_classifier(dropout=0.2)
    model.fit(x, y, batch_size=64, verbose=0)
    before = model_state(model)
    kbatch.measure_noise_scale(model, x, y, batch_size=64, num_steps=5, verbose=0)
    assert_same_state(before, model_state(model))


def test_callback_logs_the_noise_scale_and_does_not_change_training():
    x, y = classification_data(n=512)
    histories, weights = [], []
    for use_callback in (False, True):
        keras.utils.set_random_seed(3)
        model = make_classifier(dropout=0.2)
        keras.utils.set_random_seed(4)
        callbacks = [kbatch.GradientNoiseScale(interval=2)] if use_callback else []
        model.fit(x, y, batch_size=64, epochs=1, verbose=0)
        train_function = model.train_function
        histories.append(model.fit(x, y, batch_size=64, epochs=3,
                                   callbacks=callbacks, verbose=0))
        weights.append(model.get_weights())
        assert "train_step" not in vars(model)
        assert model.train_function is train_function  # Keras' own, put back
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    logged = histories[1].history["gradient_noise_scale"]
    assert len(logged) == 3 and all(math.isfinite(v) and v > 0 for v in logged)


def test_callback_skips_batches_the_micro_batches_do_not_divide():
    x, y = classification_data(n=100)  # batches of 32, 32, 32 and 4
    model = make_classifier()
    gns = kbatch.GradientNoiseScale(interval=1, num_micro_batches=8)
    model.fit(x, y, batch_size=32, epochs=2, callbacks=[gns], verbose=0)
    assert len(gns.history) == 6  # the batches of 4 were skipped
    assert all(h["batch_size"] == 32 for h in gns.history)


def test_mixed_float16_measures_unscaled_gradients():
    keras.config.set_dtype_policy("mixed_float16")
    x, y = classification_data(n=512)
    model = make_classifier()
    model.fit(x, y, batch_size=64, verbose=0)
    before = model_state(model)
    result = kbatch.measure_noise_scale(model, x, y, batch_size=64, num_steps=10,
                                        seed=0, verbose=0)
    assert math.isfinite(result.b_simple)
    keras.config.set_dtype_policy("float32")
    reference = make_classifier()
    reference.set_weights(model.get_weights())
    ref = kbatch.measure_noise_scale(reference, x, y, batch_size=64, num_steps=10,
                                     seed=0, verbose=0)
    assert result.b_simple == pytest.approx(ref.b_simple, rel=0.05)
    assert_same_state(before, model_state(model))


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"batch_size": 30, "num_micro_batches": 4}, ValueError,
     r"`num_micro_batches`=4 must divide `batch_size`=30.*num_micro_batches=3"),
    ({"batch_size": 32, "num_micro_batches": 1}, ValueError,
     r"num_micro_batches=1"),
    ({"batch_size": 0}, ValueError, r"batch_size=0"),
    ({"batch_size": 32, "num_steps": 1}, ValueError, r"num_steps=1"),
])
def test_bad_measurement_arguments(kwargs, error, pattern):
    x, y = classification_data(n=64)
    model = make_classifier()
    with pytest.raises(error, match=pattern):
        kbatch.measure_noise_scale(model, x, y, **kwargs)


@pytest.mark.parametrize("kwargs, pattern", [
    ({"interval": 0}, r"interval=0"),
    ({"num_micro_batches": 1}, r"num_micro_batches=1"),
    ({"beta": 1.0}, r"`beta` must be < 1"),
])
def test_bad_callback_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        kbatch.GradientNoiseScale(**kwargs)


def test_steps_method_under_accumulation_is_the_exact_micro_batch_measurement():
    from kbatch._internal import backend as _backend
    from kbatch._internal import optimizer as _optimizer
    from kbatch.critical import estimators

    x, y = classification_data(n=128)
    model = make_classifier(optimizer=keras.optimizers.SGD(0.1))
    model.optimizer.build(model.trainable_variables)
    _optimizer.set_gradient_accumulation(model.optimizer, 4)
    windows = []
    for start in (0, 64):  # the weights change after the first update
        small, big = _backend.module().compiled_micro_batch_norms(model, 4)(
            x[start:start + 64], y[start:start + 64], None, 1.0)
        windows.append(estimators.two_batch_estimates(float(small), float(big),
                                                      16, 64))
        if start == 0:
            snapshot = model_state(model)
            model.fit(x[:64], y[:64], batch_size=16, shuffle=False, verbose=0)
    model.set_weights(snapshot[0][:len(model.weights)])
    for variable, value in zip(model.optimizer.variables, snapshot[1]):
        variable.assign(value)
    gns = kbatch.GradientNoiseScale(method="steps", batch_size=16, interval=4)
    model.fit(x, y, batch_size=16, shuffle=False, callbacks=[gns], verbose=0)
    measured = [(h["g_sq"], h["trace"]) for h in gns.history]
    np.testing.assert_allclose(measured, windows, rtol=1e-4)
    assert [h["batch_size"] for h in gns.history] == [64, 64]
    # the sums are taken off the optimizer when `fit` ends
    assert len(model.optimizer.variables) == len(snapshot[1])


def test_steps_method_without_accumulation_tracks_the_exact_estimate():
    """Consecutive steps move the weights between the gradients of a window:
    not exact, but near the micro-batch measurement over the same epoch."""
    model, x, y = logistic_problem(0)
    exact = exact_b_simple(model, x, y)
    gns = kbatch.GradientNoiseScale(method="steps", interval=1)  # every window
    model.optimizer.learning_rate = 0.01
    model.fit(x, y, batch_size=64, epochs=1, callbacks=[gns], verbose=0)
    assert gns.history[0]["batch_size"] == 256  # 4 steps of 64, inferred
    assert len(gns.history) == len(x) // 256
    assert 0.7 < gns.b_simple / exact < 1.4, (gns.b_simple, exact)


def test_a_method_that_does_not_exist_is_refused():
    with pytest.raises(ValueError, match="method"):
        kbatch.GradientNoiseScale(method="both")


def test_adam_also_gets_the_preconditioned_noise_scale_exactly():
    """The noise scale of the gradients as Adam applies them: each divided by
    sqrt(v_hat) + epsilon, against the exact per-example value."""
    model, x, y = logistic_problem(0)
    plain = kbatch.measure_noise_scale(model, x, y, batch_size=256, num_steps=4,
                                       seed=0, verbose=0)
    assert plain.b_preconditioned is None  # SGD: no preconditioner
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=256, epochs=1, verbose=0)
    optimizer = model.optimizer
    t = int(optimizer.iterations.numpy())
    scales = []
    for variable in model.trainable_variables:
        index = optimizer._get_variable_index(variable)
        v = optimizer._velocities[index].numpy().astype("float64")
        scales.append(1.0 / (np.sqrt(v / (1 - 0.999**t)) + 1e-7))
    exact = exact_b_simple(model, x, y, scales=scales)
    result = kbatch.measure_noise_scale(model, x, y, batch_size=256, num_steps=60,
                                        num_micro_batches=8, seed=0, verbose=0)
    assert abs(result.b_preconditioned - exact) / exact < 0.2
    assert abs(result.b_preconditioned - result.b_simple) / result.b_simple > 0.05
    again = kbatch.NoiseScaleResult.from_dict(result.to_dict())
    assert again.b_preconditioned == pytest.approx(result.b_preconditioned)


_REPLICAS = TWO_CPU_STRATEGY + textwrap.dedent("""
    from kbatch._internal import backend as _backend
    from kbatch.critical import estimators
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = rng.integers(0, 3, size=256).astype("int32")
    def build():
        keras.utils.set_random_seed(1)
        m = keras.Sequential([keras.Input((8,)),
                              keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
        m.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
        return m
    with strategy.scope():
        model = build()
    gns = kbatch.GradientNoiseScale(method="steps", batch_size=64, interval=1)
    model.fit(x, y, batch_size=64, epochs=1, shuffle=False, callbacks=[gns], verbose=0)
    # the same steps on one device: each batch's halves are the replicas' batches
    single = build()
    norms = _backend.module().compiled_micro_batch_norms(single, 2)
    expected = []
    for start in range(0, 256, 64):
        xb, yb = x[start:start + 64], y[start:start + 64]
        small, big = norms(xb, yb, None, 1.0)
        expected.append(estimators.two_batch_estimates(float(small), float(big),
                                                       32, 64))
        single.train_on_batch(xb, yb)
    measured = [[h["g_sq"], h["trace"]] for h in gns.history]
    print(json.dumps({"measured": measured, "expected": [list(e) for e in expected],
                      "sizes": [h["batch_size"] for h in gns.history]}))
""")


def test_steps_method_under_tf_distribute_pairs_the_replicas_with_their_mean(tmp_path):
    done = subprocess.run([sys.executable, "-c", _REPLICAS, str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["sizes"] == [64] * 4  # one pair per step: 2 x 32 against 64
    np.testing.assert_allclose(out["measured"], out["expected"], rtol=1e-3)


def test_steps_method_measures_one_window_per_interval():
    x, y = classification_data(n=640)
    model = make_classifier(optimizer=keras.optimizers.SGD(0.05))
    gns = kbatch.GradientNoiseScale(method="steps", interval=10, batch_size=16)
    model.fit(x, y, batch_size=16, epochs=1, callbacks=[gns], verbose=0)
    # 40 steps: windows of 4 at steps 1-4, 13-16, 25-28, 37-40 (period 12)
    assert [h["step"] for h in gns.history] == [4, 16, 28, 40]

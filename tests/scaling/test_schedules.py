"""`BatchScaledSchedule`: values against NumPy, serialization, saved models."""

import keras
import numpy as np
import pytest
from conftest import classification_data
from conftest import make_classifier

from kbatch import BatchScaledSchedule
from kbatch._internal.optimizer import learning_rate_object


def _values(schedule, steps):
    return np.array([float(keras.ops.convert_to_numpy(schedule(s))) for s in steps])


def test_linear_warmup_then_constant_matches_numpy():
    schedule = BatchScaledSchedule(0.1, 256, 2048, rule="linear", warmup_steps=40)
    steps = np.arange(0, 100)
    target = 0.1 * 2048 / 256
    expected = np.where(steps < 40, 0.1 + (target - 0.1) * steps / 40, target)
    np.testing.assert_allclose(_values(schedule, steps), expected, rtol=1e-6)


def test_sqrt_rule_without_warmup_is_constant():
    schedule = BatchScaledSchedule(1e-3, 64, 1024, rule="sqrt")
    np.testing.assert_allclose(_values(schedule, [0, 10, 10**6]), 4e-3, rtol=1e-6)
    assert schedule.learning_rate == pytest.approx(4e-3)


def test_after_schedule_keeps_its_shape_rescaled_to_the_target():
    cosine = keras.optimizers.schedules.CosineDecay(0.05, decay_steps=500, alpha=0.1)
    schedule = BatchScaledSchedule(0.1, 128, 512, warmup_steps=50, after=cosine)
    steps = np.arange(0, 700, 7)
    t = np.maximum(steps - 50, 0)
    shape = 0.9 * 0.5 * (1 + np.cos(np.pi * np.minimum(t, 500) / 500)) + 0.1
    expected = np.where(steps < 50, 0.1 + (0.4 - 0.1) * steps / 50, 0.4 * shape)
    np.testing.assert_allclose(_values(schedule, steps), expected, rtol=1e-5,
                               atol=1e-7)


def test_noise_aware_schedule():
    schedule = BatchScaledSchedule(0.1, 256, 8192, rule="noise_aware",
                                   noise_scale=1000)
    assert schedule.learning_rate == pytest.approx(0.1 * 4.90625 / 1.1220703125)


@pytest.mark.parametrize("after", [None, keras.optimizers.schedules.ExponentialDecay(
    1.0, 100, 0.5)])
def test_config_round_trips(after):
    schedule = BatchScaledSchedule(0.1, 256, 1024, rule=0.5, warmup_steps=10,
                                   after=after, name="mine")
    config = schedule.get_config()
    again = BatchScaledSchedule.from_config(config)
    assert again.get_config() == config
    serialized = keras.saving.serialize_keras_object(schedule)
    assert serialized["registered_name"] == "kbatch>BatchScaledSchedule"
    restored = keras.saving.deserialize_keras_object(serialized)
    np.testing.assert_allclose(_values(restored, [0, 5, 50, 500]),
                               _values(schedule, [0, 5, 50, 500]))


def test_a_saved_model_with_the_schedule_loads(tmp_path):
    x, y = classification_data(n=64)
    cosine = keras.optimizers.schedules.CosineDecay(1.0, decay_steps=100)
    schedule = BatchScaledSchedule(0.01, 16, 64, warmup_steps=5, after=cosine)
    model = make_classifier(optimizer=keras.optimizers.SGD(schedule, momentum=0.9))
    model.fit(x, y, batch_size=64, epochs=2, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    lr = learning_rate_object(loaded.optimizer)  # the schedule itself
    assert isinstance(lr, BatchScaledSchedule)
    assert lr.get_config() == schedule.get_config()
    assert int(loaded.optimizer.iterations.numpy()) == 2
    loaded.fit(x, y, batch_size=64, epochs=1, verbose=0)  # and trains on


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"warmup_steps": -1}, ValueError, r"`warmup_steps`.*warmup_steps=-1"),
    ({"warmup_steps": 2.5}, TypeError, r"warmup_steps=2.5"),
    ({"batch_size": 0}, ValueError, r"`batch_size`.*batch_size=0"),
    ({"base_learning_rate": -0.1}, ValueError, r"base_learning_rate=-0.1"),
    ({"rule": "quadratic"}, ValueError, r"rule='quadratic'"),
    ({"rule": "noise_aware"}, ValueError, r"noise_scale"),
    ({"after": 0.5}, TypeError, r"`after` must be a"),
    ({"after": keras.optimizers.schedules.PolynomialDecay(0.0, 10, 1.0)},
     ValueError, r"after\(0\)=0"),
])
def test_bad_arguments(kwargs, error, pattern):
    args = {"base_learning_rate": 0.1, "base_batch_size": 32, "batch_size": 64,
            **kwargs}
    with pytest.raises(error, match=pattern):
        BatchScaledSchedule(**args)

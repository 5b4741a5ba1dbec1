"""Increase the batch instead of decaying the LR: phases and exact update counts."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import classification_data
from conftest import make_classifier
from conftest import oom_classifier

import kbatch
from kbatch.scaling.batch_size_schedule import Phase

N = 200


def _model(lr=0.05):
    return make_classifier(optimizer=keras.optimizers.SGD(lr))


def test_phases_multiply_the_batch_until_the_cap_then_decay_the_lr():
    schedule = kbatch.BatchSizeSchedule(10, boundaries=[2, 4, 5], factor=2)
    assert schedule.phases(6, num_samples=N, learning_rate=0.1) == [
        Phase(0, 2, 10, 0.1),
        Phase(2, 4, 20, 0.1),  # cap = N / 10 = 20
        Phase(4, 5, 20, 0.05),
        Phase(5, 6, 20, 0.025),
    ]
    assert schedule.decay_equivalent(6, 0.1) == [
        Phase(0, 2, 10, 0.1), Phase(2, 4, 10, 0.05), Phase(4, 5, 10, 0.025),
        Phase(5, 6, 10, 0.0125),
    ]


def test_boundaries_past_the_last_epoch_are_ignored():
    schedule = kbatch.BatchSizeSchedule(8, boundaries=[3, 10], factor=4,
                                        max_batch_size=1000)
    assert schedule.phases(5, 100, 0.1) == [Phase(0, 3, 8, 0.1), Phase(3, 5, 32, 0.1)]


def _check_history(history, lr):
    assert history.epoch == [0, 1, 2, 3, 4, 5]
    assert history.history["batch_size"] == [10, 10, 20, 20, 20, 20]
    assert history.history["learning_rate"] == pytest.approx(
        [lr, lr, lr, lr, lr / 2, lr / 2])
    # exact: ceil(200 / 10) = 20 updates per epoch, then ceil(200 / 20) = 10
    assert history.history["updates"] == [20, 20, 10, 10, 10, 10]
    assert len(history.history["loss"]) == 6


SCHEDULE = kbatch.BatchSizeSchedule(10, boundaries=[2, 4], factor=2)


def test_numpy_inputs():
    x, y = classification_data(n=N)
    model = _model()
    history = kbatch.fit_with_batch_schedule(model, x, y, schedule=SCHEDULE,
                                             epochs=6, verbose=0)
    _check_history(history, 0.05)
    assert model.history is history
    assert int(model.optimizer.iterations.numpy()) == 80


def test_unbatched_tf_data():
    x, y = classification_data(n=N)
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    history = kbatch.fit_with_batch_schedule(_model(), dataset, schedule=SCHEDULE,
                                             epochs=6, verbose=0)
    _check_history(history, 0.05)


class _Rebatchable(keras.utils.PyDataset):
    def __init__(self, x, y, batch_size):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, i):
        s = slice(i * self.batch_size, (i + 1) * self.batch_size)
        return self.x[s], self.y[s]


def test_py_dataset_with_a_batch_size_attribute_and_a_factory():
    x, y = classification_data(n=N)
    history = kbatch.fit_with_batch_schedule(
        _model(), _Rebatchable(x, y, 999), schedule=SCHEDULE, epochs=6,
        num_samples=N, verbose=0)
    _check_history(history, 0.05)
    history = kbatch.fit_with_batch_schedule(
        _model(), lambda b: _Rebatchable(x, y, b), schedule=SCHEDULE, epochs=6,
        num_samples=N, verbose=0)
    _check_history(history, 0.05)


def test_validation_and_callbacks_pass_through_and_early_stopping_ends_all_phases():
    x, y = classification_data(n=N)
    stop = keras.callbacks.EarlyStopping(monitor="loss", patience=0,
                                         min_delta=10.0)  # stops at once
    history = kbatch.fit_with_batch_schedule(
        _model(), x, y, schedule=SCHEDULE, epochs=6, callbacks=[stop],
        validation_data=(x[:50], y[:50]), verbose=0)
    assert len(history.epoch) < 6
    assert "val_loss" in history.history


@pytest.mark.parametrize("make_args, error, pattern", [
    (lambda x, y: {"x": tf.data.Dataset.from_tensor_slices((x, y)).batch(10)},
     ValueError, r"unbatched tf.data.Dataset"),
    (lambda x, y: {"x": _Rebatchable(x, y, 10), "num_samples": N, "schedule": None},
     TypeError, r"`schedule` must be a `kbatch.BatchSizeSchedule`"),
    (lambda x, y: {"x": x, "y": y, "batch_size": 10}, ValueError,
     r"`batch_size` is set by the schedule"),
])
def test_bad_input(make_args, error, pattern):
    x, y = classification_data(n=N)
    args = {"schedule": SCHEDULE, "epochs": 2, "verbose": 0, **make_args(x, y)}
    with pytest.raises(error, match=pattern):
        kbatch.fit_with_batch_schedule(_model(), **args)


def test_py_dataset_without_batch_size_attribute_is_refused():
    class Fixed(keras.utils.PyDataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return np.zeros((4, 8)), np.zeros(4)

    with pytest.raises(ValueError, match=r"setting its `batch_size` attribute"):
        kbatch.fit_with_batch_schedule(_model(), Fixed(), schedule=SCHEDULE,
                                       epochs=2, num_samples=8, verbose=0)


def test_schedule_built_optimizer_is_refused():
    x, y = classification_data(n=N)
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    model = make_classifier(optimizer=keras.optimizers.SGD(schedule))
    with pytest.raises(ValueError, match=r"plain learning rate"):
        kbatch.fit_with_batch_schedule(model, x, y, schedule=SCHEDULE, epochs=2)


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"boundaries": [5, 3]}, ValueError, r"strictly increasing.*\[5, 3\]"),
    ({"boundaries": [0]}, ValueError, r"boundaries\[0\]"),
    ({"factor": 1.0}, ValueError, r"`factor` must be > 1"),
    ({"factor": 0.5}, ValueError, r"factor=0.5"),
    ({"batch_size": 0}, ValueError, r"batch_size=0"),
    ({"max_batch_size": 4}, ValueError, r"at least `batch_size`"),
])
def test_bad_schedules(kwargs, error, pattern):
    args = {"batch_size": 8, "boundaries": [2], "factor": 2.0, **kwargs}
    with pytest.raises(error, match=pattern):
        kbatch.BatchSizeSchedule(**args)


def test_schedule_config_round_trips():
    schedule = kbatch.BatchSizeSchedule(16, [3, 6], factor=3, max_batch_size=512)
    again = kbatch.BatchSizeSchedule.from_config(schedule.get_config())
    assert again.get_config() == schedule.get_config()


# --- past the memory limit: micro-batches with gradient accumulation

ACCUMULATE = kbatch.BatchSizeSchedule(8, boundaries=[1], factor=8,
                                      max_batch_size=64)


def _oom_model(limit, after=0):
    keras.utils.set_random_seed(5)
    return oom_classifier(limit, after)


def test_a_phase_above_the_limit_accumulates_and_matches_the_large_batch():
    x, y = classification_data(n=256)
    reference = _oom_model(10_000)
    kbatch.fit_with_batch_schedule(reference, x, y, schedule=ACCUMULATE,
                                   epochs=2, verbose=0)
    model = _oom_model(10_000)
    history = kbatch.fit_with_batch_schedule(model, x, y, schedule=ACCUMULATE,
                                             epochs=2, verbose=0,
                                             max_micro_batch_size=16)
    assert history.history["batch_size"] == [8, 64]
    assert history.history["micro_batch_size"] == [8, 16]
    assert history.history["updates"] == [32, 4]  # updates, not micro-batches
    for a, b in zip(reference.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert kbatch._internal.optimizer.gradient_accumulation_steps(
        model.optimizer) == 1


def test_out_of_memory_retries_the_phase_as_micro_batches(capsys):
    x, y = classification_data(n=256)
    reference = _oom_model(10_000)
    kbatch.fit_with_batch_schedule(reference, x, y, schedule=ACCUMULATE,
                                   epochs=2, verbose=0)
    # batches above 16 raise TensorFlow's OOM error, after two have trained
    model = _oom_model(16, after=2)
    history = kbatch.fit_with_batch_schedule(model, x, y, schedule=ACCUMULATE,
                                             epochs=2, verbose=1)
    assert history.history["micro_batch_size"] == [8, 16]
    assert history.history["updates"] == [32, 4]
    # the failed tries were undone: the weights of the one large batch
    for a, b in zip(reference.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert "ran out of memory" in capsys.readouterr().out


def test_other_errors_and_a_micro_batch_of_one_still_raise():
    x, y = classification_data(n=64)
    model = _oom_model(0)  # not even batch 1 fits
    with pytest.raises(tf.errors.ResourceExhaustedError):
        kbatch.fit_with_batch_schedule(model, x, y, schedule=ACCUMULATE,
                                       epochs=1, verbose=0)
    assert kbatch._internal.optimizer.gradient_accumulation_steps(
        model.optimizer) == 1

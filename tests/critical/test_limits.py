"""Largest batch that fits, throughput and its knee, LR scaling law."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import assert_same_state
from conftest import classification_data
from conftest import make_classifier
from conftest import model_state

import kbatch
from kbatch.critical import scaling_law
from kbatch.critical.fits import throughput_knee


class OutOfMemoryAbove(keras.layers.Layer):
    """Raises TensorFlow's real OOM error for batches above a threshold."""

    def __init__(self, train_limit, eval_limit, **kwargs):
        super().__init__(**kwargs)
        self.train_limit, self.eval_limit = train_limit, eval_limit

    def call(self, x, training=None):
        limit = self.train_limit if training else self.eval_limit
        if x.shape[0] is not None and x.shape[0] > limit:
            raise tf.errors.ResourceExhaustedError(
                None, None, f"OOM when allocating tensor with shape [{x.shape[0]}]")
        return x


def _oom_model(train_limit=37, eval_limit=150):
    model = keras.Sequential([keras.Input((8,)), OutOfMemoryAbove(train_limit,
                                                                  eval_limit),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", run_eagerly=True)
    return model


@pytest.mark.parametrize("mode", ["power", "binsearch"])
def test_finds_exactly_the_largest_train_and_eval_batch(mode):
    x, y = classification_data(n=50)
    model = _oom_model()
    model.fit(x, y, batch_size=16, verbose=0)
    before = model_state(model)
    result = kbatch.find_max_batch_size(model, x, y, start=2, max_batch_size=512,
                                        mode=mode, steps_per_trial=1, margin=0.0,
                                        verbose=0)
    assert result.train_batch_size == 37
    assert result.eval_batch_size == 150
    assert not result.hit_limit
    outcomes = {(t["phase"], t["batch_size"]): t["outcome"] for t in result.trials}
    assert outcomes[("train", 37)] == "ok" and outcomes[("train", 38)] == "oom"
    assert_same_state(before, model_state(model))


def test_margin_and_limit():
    x, y = classification_data(n=50)
    result = kbatch.find_max_batch_size(_oom_model(1000, 1000), x, y,
                                        max_batch_size=100, steps_per_trial=1,
                                        evaluation=False, verbose=0)
    assert result.largest_train == 100 and result.hit_limit
    assert result.train_batch_size == 95  # 5% margin
    assert result.eval_batch_size is None


def test_nothing_fits():
    x, y = classification_data(n=50)
    result = kbatch.find_max_batch_size(_oom_model(1, 1), x, y, start=2,
                                        steps_per_trial=1, verbose=0)
    assert result.train_batch_size is None


def test_other_errors_are_not_mistaken_for_out_of_memory():
    class Broken(keras.layers.Layer):
        def call(self, x):
            if x.shape[0] is not None:  # not while Keras builds the model
                raise RuntimeError("a bug, not memory")
            return x

    model = keras.Sequential([keras.Input((8,)), Broken(), keras.layers.Dense(3)])
    model.compile("adam", "mse", run_eagerly=True)
    x, y = classification_data(n=10)
    with pytest.raises(RuntimeError, match="a bug"):
        kbatch.find_max_batch_size(model, x, y.reshape(-1, 1).astype("float32"),
                                   verbose=0)


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"start": 64, "max_batch_size": 32}, ValueError,
     r"`start` must not exceed `max_batch_size`.*start=64, max_batch_size=32"),
    ({"start": 0}, ValueError, r"start=0"),
    ({"max_batch_size": -4}, ValueError, r"max_batch_size=-4"),
    ({"mode": "linear"}, ValueError, r"mode='linear'"),
    ({"margin": 1.0}, ValueError, r"`margin` must be < 1"),
    ({"steps_per_trial": 0}, ValueError, r"steps_per_trial=0"),
])
def test_bad_memory_arguments(kwargs, error, pattern):
    x, y = classification_data(n=16)
    with pytest.raises(error, match=pattern):
        kbatch.find_max_batch_size(make_classifier(), x, y, **kwargs)


def test_batched_inputs_are_refused_with_what_to_pass():
    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 1

        def __getitem__(self, i):
            return np.zeros((4, 8)), np.zeros(4)

    with pytest.raises(TypeError, match=r"NumPy arrays or an unbatched"):
        kbatch.find_max_batch_size(make_classifier(), Batches())


# ------------------------------------------------------------------ throughput


def test_throughput_is_measured_and_the_model_restored():
    x, y = classification_data(n=256)
    model = make_classifier()
    model.fit(x, y, verbose=0)
    before = model_state(model)
    result = kbatch.measure_throughput(model, x, y, batch_sizes=[8, 32, 128],
                                       num_steps=5, verbose=0)
    assert len(result.samples_per_second) == 3
    assert all(v > 0 for v in result.samples_per_second)
    # the knee is the one the measured speeds give
    assert result.knee == throughput_knee([8, 32, 128], result.samples_per_second)
    assert_same_state(before, model_state(model))


def test_throughput_times_whole_executions_with_steps_per_execution():
    # Keras calls batch callbacks once per 4 steps here, with the index of the
    # last step: the timer counts steps from it (it used to count calls, never
    # started timing, and raised a TypeError).
    x, y = classification_data(n=256)
    model = make_classifier(steps_per_execution=4)
    model.fit(x, y, verbose=0)
    before = model_state(model)
    result = kbatch.measure_throughput(model, x, y, batch_sizes=[8, 32],
                                       num_steps=5, warmup_steps=3, verbose=0)
    assert len(result.samples_per_second) == 2
    assert all(np.isfinite(v) and v > 0 for v in result.samples_per_second)
    assert_same_state(before, model_state(model))


def test_throughput_records_out_of_memory_and_skips_larger_sizes():
    x, y = classification_data(n=64)
    result = kbatch.measure_throughput(_oom_model(40, 40), x, y,
                                       batch_sizes=[16, 32, 64, 128], num_steps=2,
                                       verbose=0)
    assert result.out_of_memory == [64]
    assert math.isnan(result.samples_per_second[2])
    assert math.isnan(result.samples_per_second[3])
    assert result.knee == throughput_knee([16, 32], result.samples_per_second[:2])


@pytest.mark.parametrize("sizes, pattern", [
    ([], r"`batch_sizes` is empty"),
    ([64, 32], r"strictly increasing"),
    ([0, 32], r"batch_sizes\[0\]"),
])
def test_bad_throughput_arguments(sizes, pattern):
    x, y = classification_data(n=16)
    with pytest.raises(ValueError, match=pattern):
        kbatch.measure_throughput(make_classifier(), x, y, batch_sizes=sizes)


# ----------------------------------------------------------------- scaling law


def test_scaling_law_result_predicts_and_reports():
    result = scaling_law.ScalingLawResult([16, 64, 256], [0.01, 0.04, 0.16])
    assert result.exponent == pytest.approx(1.0)
    assert result.rule == "linear"
    assert result.predict(128, "power") == pytest.approx(0.08)
    assert "'linear'" in result.verdict()


def test_lr_scaling_law_runs_a_range_test_per_batch_size():
    x, y = classification_data(n=512)
    built = []

    def build():
        built.append(1)
        return make_classifier()

    result = kbatch.lr_scaling_law(build, x, y, batch_sizes=[16, 64], num_steps=30,
                                   verbose=0)
    assert len(built) == 2 and len(result.results) == 2
    assert [r.batch_size for r in result.results] == [16, 64]
    assert all(lr > 0 for lr in result.learning_rates)
    assert math.isfinite(result.exponent)


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"batch_sizes": [32]}, ValueError, r"two or more"),
    ({"batch_sizes": [64, 32]}, ValueError, r"strictly increasing"),
    ({"batch_sizes": [16, 32], "build_model": "model"}, TypeError,
     r"`build_model` must be a function"),
    ({"batch_sizes": [16, 32], "build_model": lambda: 42}, TypeError,
     r"must return a compiled `keras.Model`"),
])
def test_bad_scaling_law_arguments(kwargs, error, pattern):
    x, y = classification_data(n=64)
    kwargs.setdefault("build_model", make_classifier)
    with pytest.raises(error, match=pattern):
        kbatch.lr_scaling_law(kwargs.pop("build_model"), x, y, **kwargs)

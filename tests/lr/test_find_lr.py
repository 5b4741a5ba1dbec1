"""`find_lr`: data paths, exact restore, mixed precision, schedules."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import assert_same_state
from conftest import classification_data
from conftest import faulty_classifier
from conftest import make_classifier
from conftest import model_state
from conftest import scripted_model

import kbatch
from kbatch._internal import optimizer as _optimizer
from kbatch.lr import rules


def _trained_adam_model(dropout=0.0):
    x, y = classification_data(n=256)
    model = make_classifier(dropout=dropout)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)  # moments, iterations > 0
    return model, x, y


def test_weights_and_every_optimizer_variable_are_bitwise_restored():
    model, x, y = _trained_adam_model(dropout=0.2)
    before = model_state(model)
    result = kbatch.find_lr(model, x, y, num_steps=30, verbose=0)
    assert result.lrs.size > 5
    assert_same_state(before, model_state(model))


def test_restored_after_divergence():
    model, x, y = _trained_adam_model()
    before = model_state(model)
    result = kbatch.find_lr(model, x, y, min_lr=1e-2, max_lr=1e6, num_steps=80,
                            verbose=0)
    assert result.diverged
    assert_same_state(before, model_state(model))


def _failing_batches(x, y, fail_at):
    for i in range(100):
        if i == fail_at:
            raise RuntimeError("data source failed")
        yield x[i * 16 : (i + 1) * 16], y[i * 16 : (i + 1) * 16]


def test_restored_when_the_data_source_fails_mid_sweep():
    model, x, y = _trained_adam_model()
    before = model_state(model)
    lr_object = _optimizer.learning_rate_object(model.optimizer)
    # tf.data re-raises the generator's error as its own type
    with pytest.raises(Exception, match="data source failed"):
        kbatch.find_lr(model, _failing_batches(x, y, 7), num_steps=50, verbose=0)
    assert_same_state(before, model_state(model))
    assert _optimizer.learning_rate_object(model.optimizer) is lr_object


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
@pytest.mark.parametrize("scheduled", [False, True])
def test_restored_when_the_sweep_is_interrupted(monkeypatch, exc, scheduled):
    x, y = classification_data(n=256)
    if scheduled:
        optimizer = keras.optimizers.Adam(
            keras.optimizers.schedules.ExponentialDecay(1e-3, 10, 0.9))
    else:
        optimizer = keras.optimizers.Adam(1e-3)
    model = make_classifier(optimizer=optimizer)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    before = model_state(model)
    lr_object = _optimizer.learning_rate_object(model.optimizer)
    train_function = model.train_function
    original = kbatch.LRRangeTest._record

    def record_then_fail(self, lr, loss):
        if len(self._lrs) == 7:
            raise exc
        original(self, lr, loss)

    monkeypatch.setattr(kbatch.LRRangeTest, "_record", record_then_fail)
    with pytest.raises(type(exc)):
        kbatch.find_lr(model, x, y, num_steps=50, verbose=0)
    assert_same_state(before, model_state(model))
    assert _optimizer.learning_rate_object(model.optimizer) is lr_object
    assert model.train_function is train_function


def test_restored_after_a_nan_loss():
    x, y = classification_data(n=256)
    model = faulty_classifier(step=1000, kind="nan")
    model.fit(x[:32], y[:32], verbose=0)
    before = model_state(model)
    model.layers[1].calls, model.layers[1].step = 0, 6  # NaN at the 6th step
    result = kbatch.find_lr(model, x, y, batch_size=8, num_steps=20, verbose=0)
    assert result.stop_reason == "non_finite"
    assert result.lrs.size == 6
    assert_same_state(before, model_state(model))


def test_nan_or_inf_in_the_data_is_refused_before_training():
    x, y = classification_data(n=256)
    x = x.copy()
    x[40:43, 2] = np.nan
    model = make_classifier()
    before = model_state(model) if model.optimizer.built else None
    with pytest.raises(ValueError, match=r"`x` holds non-finite.*3 samples.*index 40"):
        kbatch.find_lr(model, x, y, verbose=0)
    assert before is None and not model.optimizer.built


def test_training_after_find_lr_equals_training_without_it():
    # Dropout makes the seed generator state part of what must be restored.
    model, x, y = _trained_adam_model(dropout=0.3)
    variables = list(model.variables) + list(model.optimizer.variables)
    start = [v.numpy().copy() for v in variables]

    def train():
        keras.utils.set_random_seed(7)
        model.fit(x, y, batch_size=32, epochs=2, verbose=0)
        return [w.copy() for w in model.get_weights()]

    without = train()
    for v, value in zip(variables, start):
        v.assign(value)
    kbatch.find_lr(model, x, y, num_steps=20, verbose=0)
    with_find_lr = train()
    for wa, wb in zip(without, with_find_lr):
        np.testing.assert_array_equal(wa, wb)


def test_unbuilt_model_and_optimizer_are_built_then_left_fresh():
    x, y = classification_data(n=128)
    model = keras.Sequential([keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    kbatch.find_lr(model, x, y, num_steps=10, verbose=0)
    assert model.built
    assert int(model.optimizer.iterations.numpy()) == 0
    assert all(not np.any(v.numpy()) for v in model.optimizer.variables
               if "momentum" in v.path or "velocity" in v.path)


def test_global_random_states_are_left_alone():
    x, y = classification_data(n=128)
    model = make_classifier()
    np_state = np.random.get_state()[1].copy()  # noqa: NPY002
    kbatch.find_lr(model, x, y, num_steps=10, verbose=0)
    np.testing.assert_array_equal(np_state, np.random.get_state()[1])  # noqa: NPY002


def test_history_and_train_function_are_kept():
    model, x, y = _trained_adam_model()
    history, train_function = model.history, model.train_function
    kbatch.find_lr(model, x, y, num_steps=10, verbose=0)
    assert model.history is history
    assert model.train_function is train_function


# ----------------------------------------------------------------- data paths


def _assert_cycled(result, num_steps):
    assert result.lrs.size == num_steps
    assert result.stop_reason == "completed"


def test_numpy_arrays_shorter_than_the_test_are_cycled():
    x, y = classification_data(n=40)
    model = make_classifier()
    result = kbatch.find_lr(model, x, y, batch_size=16, min_lr=1e-5, max_lr=1e-3,
                            num_steps=25, verbose=0, extend=False)
    _assert_cycled(result, 25)
    assert result.batch_size == 16


def test_batched_tf_data_is_cycled():
    x, y = classification_data(n=64)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    result = kbatch.find_lr(make_classifier(), ds, min_lr=1e-5, max_lr=1e-3,
                            num_steps=12, verbose=0, extend=False)
    _assert_cycled(result, 12)
    assert result.batch_size == 16


def test_unbatched_tf_data_is_batched_with_batch_size():
    x, y = classification_data(n=64)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    result = kbatch.find_lr(make_classifier(), ds, batch_size=8, min_lr=1e-5,
                            max_lr=1e-3, num_steps=12, verbose=0, extend=False)
    _assert_cycled(result, 12)
    assert result.batch_size == 8


class _Batches(keras.utils.PyDataset):
    def __init__(self, x, y, batch_size, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self):
        return int(np.ceil(len(self.x) / self.batch_size))

    def __getitem__(self, i):
        s = slice(i * self.batch_size, (i + 1) * self.batch_size)
        return self.x[s], self.y[s]


def test_py_dataset_is_cycled():
    x, y = classification_data(n=48)
    result = kbatch.find_lr(make_classifier(), _Batches(x, y, 16), min_lr=1e-5,
                            max_lr=1e-3, num_steps=10, verbose=0, extend=False)
    _assert_cycled(result, 10)
    assert result.batch_size == 16


def test_generator_is_consumed_then_replayed():
    x, y = classification_data(n=48)

    def batches():
        for i in range(3):
            yield x[i * 16 : (i + 1) * 16], y[i * 16 : (i + 1) * 16]

    result = kbatch.find_lr(make_classifier(), batches(), min_lr=1e-5, max_lr=1e-3,
                            num_steps=10, verbose=0, extend=False)
    _assert_cycled(result, 10)


def test_multi_input_dict_arrays():
    x, y = classification_data(n=64)
    a = keras.Input((4,), name="a")
    b = keras.Input((4,), name="b")
    h = keras.layers.Concatenate()([a, b])
    out = keras.layers.Dense(3, activation="softmax")(h)
    model = keras.Model({"a": a, "b": b}, out)
    model.compile("adam", "sparse_categorical_crossentropy")
    result = kbatch.find_lr(model, {"a": x[:, :4], "b": x[:, 4:]}, y,
                            min_lr=1e-5, max_lr=1e-3, num_steps=8, verbose=0,
                            extend=False)
    _assert_cycled(result, 8)


def test_validation_data_makes_the_curve_use_validation_loss():
    x, y = classification_data(n=256)
    x_val, y_val = classification_data(n=64, seed=5)
    model = make_classifier()
    initial = model.evaluate(x_val, y_val, verbose=0)
    # LRs so small that the weights hardly move: every point is the initial
    # validation loss, while training batch losses would scatter.
    result = kbatch.find_lr(model, x, y, min_lr=1e-9, max_lr=1e-8, num_steps=10,
                            validation_data=(x_val, y_val), verbose=0)
    assert result.loss_kind == "validation"
    np.testing.assert_allclose(result.losses, initial, rtol=1e-4)


# ----------------------------------------------------- optimizers and precision


def test_schedule_built_optimizer_gets_its_schedule_back():
    x, y = classification_data(n=256)
    schedule = keras.optimizers.schedules.CosineDecay(0.05, decay_steps=1000)
    model = make_classifier(optimizer=keras.optimizers.SGD(schedule, momentum=0.9))
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    before = model_state(model)
    lr_before = _optimizer.current_learning_rate(model.optimizer)
    result = kbatch.find_lr(model, x, y, min_lr=1e-3, max_lr=1e3, num_steps=60,
                            verbose=0)
    assert result.diverged  # the sweep, not the schedule, drove the LR
    assert _optimizer.learning_rate_object(model.optimizer) is schedule
    assert _optimizer.current_learning_rate(model.optimizer) == lr_before
    assert_same_state(before, model_state(model))


def test_steps_per_execution_via_find_lr():
    x, y = classification_data(n=256)
    model = make_classifier(steps_per_execution=4)
    result = kbatch.find_lr(model, x, y, min_lr=1e-4, max_lr=1e-2, num_steps=10,
                            verbose=0, extend=False)
    _assert_cycled(result, 10)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_restores_everything_including_the_loss_scale(policy):
    keras.config.set_dtype_policy(policy)
    x, y = classification_data(n=256)
    model = make_classifier(hidden=16)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    before = model_state(model)
    result = kbatch.find_lr(model, x, y, num_steps=40, verbose=0)
    assert result.lrs.size > 5
    assert_same_state(before, model_state(model))
    assert keras.config.dtype_policy().name == policy
    if policy == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)


def test_loss_scaled_steps_that_were_skipped_are_not_recorded():
    keras.config.set_dtype_policy("mixed_float16")
    x, y = classification_data(n=256)
    # A huge initial scale overflows the float16 gradients: the first steps are
    # skipped while the scale halves down to a workable value.
    optimizer = keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(0.01), initial_scale=2.0**40
    )
    model = make_classifier(optimizer=optimizer)
    model.fit(x[:32], y[:32], batch_size=32, epochs=1, verbose=0)
    scale_before = float(model.optimizer.dynamic_scale.numpy())
    result = kbatch.find_lr(model, x, y, min_lr=1e-4, max_lr=1e-2, num_steps=20,
                            verbose=0, extend=False)
    assert result.skipped_steps > 0
    assert result.lrs.size == 20  # every LR got a real update
    np.testing.assert_allclose(result.lrs, kbatch.lr.rules.lr_sweep(1e-4, 1e-2, 20))
    assert float(model.optimizer.dynamic_scale.numpy()) == scale_before


def test_scripted_loss_through_find_lr_is_exact_per_batch():
    x = np.ones((32, 1), "float32")
    y = (np.arange(32, dtype="float32") % 5).reshape(-1, 1)
    model = scripted_model()
    result = kbatch.find_lr(model, x, y, batch_size=4, shuffle=False, num_steps=12,
                            smoothing=0.0, min_lr=1e-4, max_lr=1e-2, verbose=0,
                            extend=False)
    expected = [np.mean(y[(i % 8) * 4 : (i % 8) * 4 + 4] ** 2) for i in range(12)]
    np.testing.assert_allclose(result.losses, expected, rtol=1e-6)


class OldStyleLoss(keras.Sequential):
    """`compute_loss` overridden as before Keras 3.4: no `training` argument
    (Keras' own `fit` still accepts it)."""

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None):
        self.calls = getattr(self, "calls", 0) + 1
        return super().compute_loss(x=x, y=y, y_pred=y_pred,
                                    sample_weight=sample_weight)


def _old_style_model():
    model = OldStyleLoss([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                           keras.layers.Dense(3, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model


def test_a_compute_loss_without_the_training_argument_is_accepted():
    x, y = classification_data(n=128)
    model = _old_style_model()
    model.fit(x, y, epochs=1, verbose=0)  # Keras itself accepts it
    before = model_state(model)
    calls = model.calls
    result = kbatch.find_lr(model, x, y, num_steps=10, validation_data=(x[:32], y[:32]),
                            verbose=0, extend=False)
    assert result.loss_kind == "validation" and result.lrs.size == 10
    assert model.calls > calls  # the validation loss is the model's own
    assert_same_state(before, model_state(model))
    noise = kbatch.measure_noise_scale(model, x, y, batch_size=32, num_steps=2,
                                       verbose=0)
    assert noise.g_sq.size == 2


def test_sample_weight_for_arrays_weights_each_recorded_loss():
    x = np.arange(32, dtype="float32").reshape(32, 1)
    y = np.tile([1.0, 1.2, 1.4, 1.6], 8).astype("float32")
    weights = np.where(np.arange(32) % 3 == 0, 1.0, 0.25).astype("float32")
    model = scripted_model()
    result = kbatch.find_lr(model, x, y, batch_size=4, shuffle=False, num_steps=8,
                            smoothing=0.0, min_lr=1e-4, max_lr=1e-2, verbose=0,
                            sample_weight=weights, extend=False)
    # Keras' default reduction: the weighted sum over the batch / batch size
    expected = [np.mean(weights[i * 4:(i + 1) * 4] * y[i * 4:(i + 1) * 4] ** 2)
                for i in range(8)]
    np.testing.assert_allclose(result.losses, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="one weight per sample"):
        kbatch.find_lr(model, x, y, batch_size=4, sample_weight=weights[:5],
                       verbose=0)


def test_text_labels_and_missing_targets_name_the_argument():
    x, y = classification_data(n=64)
    model = make_classifier()
    before = model_state(model)
    labels = np.array(["cat", "dog", "owl"])[y]
    with pytest.raises(ValueError, match=r"Argument `y` holds text \(e.g. '\w+'\)"):
        kbatch.find_lr(model, x, labels, verbose=0)
    with pytest.raises(ValueError, match="Argument `y` is required"):
        kbatch.find_lr(model, x, verbose=0)
    assert_same_state(before, model_state(model))


def test_auto_is_not_thrown_off_by_a_noisy_small_batch_range_test():
    # the case that motivated the window: batch 16 on 1,440 MNIST-1D signals,
    # where the loss falls by less than its noise before it diverges; `auto`
    # was 1.4e-4 (steepest at 6e-7), a hundred times below the useful range
    import keras

    import kbatch
    from kbatch import datasets
    from kbatch import models

    data = datasets.load_mnist1d(num_samples=2000)
    keras.utils.set_random_seed(0)
    model = models.build_mlp(data.input_shape, data.num_classes,
                             optimizer="momentum", learning_rate=0.01)
    result = kbatch.find_lr(model, *data.train, batch_size=16, seed=0, verbose=0)
    lowest = result.effective_lrs[int(np.nanargmin(result.trend))]
    assert lowest / 10**rules.STEEPEST_DECADES <= result.suggestion("steepest")
    assert 3e-3 < result.suggestion() < lowest

"""The `LRRangeTest` callback records each batch's own loss with its own LR."""

import copy

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import classification_data
from conftest import make_classifier
from conftest import scripted_model

import kbatch
from kbatch.lr import rules as suggest


def _scripted_data(n, batch):
    """y differs per sample, so each batch's loss mean(y**2) is distinct."""
    x = np.ones((n, 1), "float32")
    y = (np.arange(n, dtype="float32") % 7 + 1).reshape(-1, 1) * 0.5
    return x, y


def _batch_losses(y, batch):
    return [float(np.mean(y[i : i + batch] ** 2)) for i in range(0, len(y), batch)]


def test_recorded_losses_are_per_batch_not_running_means_across_epochs():
    # 50 samples at batch 16: batches of 16, 16, 16 and a short one of 2, so the
    # running mean is sample-weighted; 11 steps cross two epoch boundaries.
    x, y = _scripted_data(50, 16)
    model = scripted_model()
    finder = kbatch.LRRangeTest(min_lr=1e-3, max_lr=1e-1, num_steps=11,
                                smoothing=0.0)
    model.fit(x, y, batch_size=16, epochs=5, shuffle=False, callbacks=[finder],
              verbose=0)
    per_epoch = _batch_losses(y, 16)
    expected = (per_epoch * 3)[:11]
    result = finder.result
    np.testing.assert_allclose(result.losses, expected, rtol=1e-5)
    # the naive reading of logs["loss"] (the running mean) differs
    running = np.cumsum(np.array(per_epoch[:3]) * 16) / (16 * np.arange(1, 4))
    assert not np.allclose(result.losses[:3], running)
    np.testing.assert_allclose(result.lrs, suggest.lr_sweep(1e-3, 1e-1, 11))
    assert result.stop_reason == "completed"


def test_recorded_losses_match_an_independent_replay_with_a_real_model():
    x, y = classification_data(n=96)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)  # 3 batches
    model = make_classifier(optimizer=keras.optimizers.SGD(0.01))
    replay = make_classifier(optimizer=keras.optimizers.SGD(0.01))
    replay.set_weights(model.get_weights())

    finder = kbatch.LRRangeTest(min_lr=1e-3, max_lr=1.0, num_steps=8,
                                restore_weights=False)
    model.fit(dataset, epochs=4, callbacks=[finder], verbose=0)
    result = finder.result
    assert result.lrs.size == 8

    batches = list(dataset.as_numpy_iterator())
    replayed = []
    for i, lr in enumerate(result.lrs):
        xb, yb = batches[i % len(batches)]
        replay.optimizer.learning_rate = float(lr)
        # train_on_batch returns the batch's loss before the update (after a
        # reset: before Keras 3.9 it returned the running mean across calls)
        replay.reset_metrics()
        replayed.append(float(replay.train_on_batch(xb, yb)))
    np.testing.assert_allclose(result.losses, replayed, rtol=2e-5)
    for a, b in zip(model.get_weights(), replay.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_steps_per_execution_pairs_each_lr_with_the_mean_loss_of_its_steps():
    x, y = _scripted_data(64, 8)
    model = scripted_model(steps_per_execution=4)
    finder = kbatch.LRRangeTest(min_lr=1e-3, max_lr=1e-2, num_steps=2,
                                smoothing=0.0)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, callbacks=[finder],
              verbose=0)
    per_batch = _batch_losses(y, 8)
    expected = [np.mean(per_batch[0:4]), np.mean(per_batch[4:8])]
    np.testing.assert_allclose(finder.result.losses, expected, rtol=1e-5)
    assert finder.result.batch_size == 8


def test_lr_is_held_for_a_whole_accumulated_update():
    x, y = _scripted_data(48, 8)
    model = scripted_model(
        optimizer=keras.optimizers.SGD(0.1, gradient_accumulation_steps=3)
    )
    finder = kbatch.LRRangeTest(min_lr=1e-3, max_lr=1e-2, num_steps=2,
                                smoothing=0.0)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, callbacks=[finder],
              verbose=0)
    per_batch = _batch_losses(y, 8)
    expected = [np.mean(per_batch[0:3]), np.mean(per_batch[3:6])]
    np.testing.assert_allclose(finder.result.losses, expected, rtol=1e-5)


def test_lr_of_each_step_is_set_before_the_step_runs():
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            pass

        def on_train_batch_end(self, batch, logs=None):
            seen.append(float(keras.ops.convert_to_numpy(
                self.model.optimizer.learning_rate)))

    x, y = classification_data(n=64)
    model = make_classifier(optimizer=keras.optimizers.SGD(0.05))
    finder = kbatch.LRRangeTest(min_lr=1e-4, max_lr=1e-1, num_steps=6,
                                diverge_threshold=1e9)
    model.fit(x, y, batch_size=8, epochs=1, callbacks=[finder, Spy()], verbose=0)
    np.testing.assert_allclose(seen[:6], suggest.lr_sweep(1e-4, 1e-1, 6), rtol=1e-6)
    # restored afterwards
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == (
        pytest.approx(0.05)
    )


def test_stops_when_the_smoothed_loss_diverges():
    x, y = classification_data(n=512)
    model = make_classifier(optimizer=keras.optimizers.SGD(0.01))
    finder = kbatch.LRRangeTest(min_lr=1e-3, max_lr=1e4, num_steps=200)
    model.fit(x, y, batch_size=16, epochs=10, callbacks=[finder], verbose=0)
    result = finder.result
    assert result.stop_reason in ("diverged", "non_finite")
    assert result.lrs.size < 200
    last = result.smoothed_losses[-1]
    assert not np.isfinite(last) or last > 4.0 * np.min(result.smoothed_losses[:-1])


def test_callback_restores_weights_and_optimizer_by_default():
    x, y = classification_data(n=128)
    model = make_classifier()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)  # optimizer has state
    before = [w.copy() for w in model.get_weights()]
    opt_before = [v.numpy().copy() for v in model.optimizer.variables]
    finder = kbatch.LRRangeTest(num_steps=10)
    model.fit(x, y, batch_size=32, epochs=3, callbacks=[finder], verbose=0)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(opt_before, model.optimizer.variables):
        np.testing.assert_array_equal(a, b.numpy())


def test_callback_is_deep_copyable_and_resets_between_fits():
    x, y = classification_data(n=128)
    finder = kbatch.LRRangeTest(min_lr=1e-4, max_lr=1e-2, num_steps=5)
    clone = copy.deepcopy(finder)
    assert clone.get_config() == finder.get_config()
    model = make_classifier()
    for _ in range(2):
        model.fit(x, y, batch_size=16, epochs=1, callbacks=[finder], verbose=0)
        assert finder.result.lrs.size == 5
        assert finder.result.batch_size == 16
    copy.deepcopy(finder)  # still copyable after use


def test_schedule_built_optimizer_is_swept_and_its_schedule_put_back():
    x, y = classification_data(n=256)
    schedule = keras.optimizers.schedules.ExponentialDecay(0.01, 100, 0.5)
    model = make_classifier(optimizer=keras.optimizers.SGD(schedule))
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    finder = kbatch.LRRangeTest(min_lr=1e-3, max_lr=1e3, num_steps=60)
    model.fit(x, y, batch_size=8, epochs=5, callbacks=[finder], verbose=0)
    # the sweep took effect: a fixed schedule at ~0.01 would never diverge
    assert finder.result.stop_reason in ("diverged", "non_finite")
    assert kbatch._internal.optimizer.learning_rate_object(model.optimizer) is schedule

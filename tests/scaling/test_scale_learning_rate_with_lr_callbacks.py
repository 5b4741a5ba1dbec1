"""`ScaleLearningRate` together with Keras' own learning-rate callbacks.

`ReduceLROnPlateau` and `LearningRateScheduler` read and set
`model.optimizer.learning_rate`; with `ScaleLearningRate` in the same `fit`
their changes multiply the scaled, warmed-up rate, in either order of the
callbacks list.
"""

import keras
import numpy as np
import pytest
from conftest import classification_data
from conftest import make_classifier

import kbatch
from kbatch._internal import optimizer as _optimizer

# 256 samples at batch 64: 4 steps per epoch. 0.01 at batch 16 -> 0.04 at 64.
N, BATCH = 256, 64


class RecordRates(keras.callbacks.Callback):
    """The rate each step trained with, read back after the step."""

    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_end(self, batch, logs=None):
        self.rates.append(_optimizer.current_learning_rate(self.model.optimizer))


def _warmup(step, steps, start=0.01, target=0.04):
    return start + (target - start) * min(step / steps, 1.0)


def _plateau():
    # `min_delta` so large that no epoch after the first counts as an
    # improvement: the rate halves at the end of epochs 1 and 2.
    return keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5,
                                             patience=1, min_delta=1e9)


def _in_order(scale, other, order):
    return [scale, other] if order == "scale_first" else [other, scale]


@pytest.mark.parametrize("order", ["scale_first", "scale_last"])
def test_reduce_lr_on_plateau_multiplies_the_scaled_warmed_up_rate(order, tmp_path):
    x, y = classification_data(n=N)
    model = make_classifier(optimizer=keras.optimizers.SGD(0.5, momentum=0.9))
    scale = kbatch.ScaleLearningRate(0.01, base_batch_size=16, batch_size=BATCH,
                                     warmup_steps=4, verbose=0)
    record = RecordRates()
    history = model.fit(x, y, batch_size=BATCH, epochs=3, verbose=0,
                        callbacks=[*_in_order(scale, _plateau(), order), record])
    expected = ([_warmup(t, 4) for t in range(4)] + [0.04] * 4 + [0.02] * 4)
    np.testing.assert_allclose(record.rates, expected, rtol=1e-6)
    # Both callbacks log the rate of the epoch's last step, before a reduction.
    np.testing.assert_allclose(history.history["learning_rate"],
                               [0.0325, 0.04, 0.02], rtol=1e-6)
    # After fit: the scaled schedule times the two halvings, still a schedule,
    # and it reads back (and saves) as the rate the run ended with.
    assert scale.factor == pytest.approx(0.25)
    assert _optimizer.learning_rate_object(model.optimizer) is scale.schedule
    assert scale.schedule.learning_rate == pytest.approx(0.01)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.saving.load_model(path)
    assert float(again.optimizer.learning_rate) == pytest.approx(0.01)
    np.testing.assert_allclose(again.predict(x[:4], verbose=0),
                               model.predict(x[:4], verbose=0), rtol=1e-6)


@pytest.mark.parametrize("order", ["scale_first", "scale_last"])
def test_learning_rate_scheduler_composes_with_scaling_and_warm_up(order):
    """The `schedule(epoch, lr)` form: its change multiplies the scaled rate,
    and the warm-up goes on underneath."""
    x, y = classification_data(n=N)
    model = make_classifier(optimizer=keras.optimizers.SGD(0.5))
    scale = kbatch.ScaleLearningRate(0.01, base_batch_size=16, batch_size=BATCH,
                                     warmup_steps=6, verbose=0)
    halve = keras.callbacks.LearningRateScheduler(
        lambda epoch, lr: lr * 0.5 if epoch > 0 else lr)
    record = RecordRates()
    history = model.fit(x, y, batch_size=BATCH, epochs=3, verbose=0,
                        callbacks=[*_in_order(scale, halve, order), record])
    expected = ([_warmup(t, 6) for t in range(4)]            # epoch 0: warm-up
                + [0.5 * _warmup(t, 6) for t in (4, 5, 6, 7)]  # halved, warming
                + [0.25 * 0.04] * 4)                           # halved again
    np.testing.assert_allclose(record.rates, expected, rtol=1e-6)
    np.testing.assert_allclose(history.history["learning_rate"],
                               [expected[3], expected[7], expected[11]], rtol=1e-6)
    assert scale.factor == pytest.approx(0.25)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)


@pytest.mark.parametrize("order", ["scale_first", "scale_last"])
def test_an_absolute_learning_rate_scheduler_sets_the_rate_itself(order):
    """The `schedule(epoch)` form returns rates, not changes: they win."""
    x, y = classification_data(n=N)
    model = make_classifier(optimizer=keras.optimizers.SGD(0.5))
    scale = kbatch.ScaleLearningRate(0.01, base_batch_size=16, batch_size=BATCH,
                                     verbose=0)
    absolute = keras.callbacks.LearningRateScheduler(lambda epoch: 0.1 / 2 ** epoch)
    record = RecordRates()
    model.fit(x, y, batch_size=BATCH, epochs=3, verbose=0,
              callbacks=[*_in_order(scale, absolute, order), record])
    np.testing.assert_allclose(record.rates, [0.1] * 4 + [0.05] * 4 + [0.025] * 4,
                               rtol=1e-6)
    assert scale.factor == pytest.approx(0.025 / 0.04)


def test_a_second_fit_and_a_model_compiled_with_a_schedule_compose_too(tmp_path):
    """After a first fit the optimizer holds a schedule (as it does when
    compiled with one): the next `fit` with `ScaleLearningRate` and
    `ReduceLROnPlateau` still works, and a checkpoint saved in the middle of it
    loads with the optimizer state in the right places."""
    x, y = classification_data(n=N)
    cosine = keras.optimizers.schedules.CosineDecay(0.5, decay_steps=100)
    model = make_classifier(optimizer=keras.optimizers.SGD(cosine, momentum=0.9))
    for _ in range(2):
        scale = kbatch.ScaleLearningRate(0.01, base_batch_size=16,
                                         batch_size=BATCH, verbose=0)
        checkpoint = keras.callbacks.ModelCheckpoint(tmp_path / "mid.keras")
        model.fit(x, y, batch_size=BATCH, epochs=3, verbose=0,
                  callbacks=[_plateau(), scale, checkpoint])
    # each fit starts from the scaled rate; the two halvings of this one remain
    assert float(model.optimizer.learning_rate) == pytest.approx(0.04 * 0.25)
    saved = keras.saving.load_model(tmp_path / "mid.keras")
    # saved at the end of the last epoch (after its halving), before the rate
    # went back into a schedule: the plain rate sits where a float-compiled
    # optimizer has it, after the step counter
    variables = [v.numpy() for v in saved.optimizer.variables]
    assert int(variables[0]) == 4 * 3 * 2
    assert float(variables[1]) == pytest.approx(0.04 * 0.25)
    for loaded, now in zip(variables[2:], model.optimizer.variables[1:],
                           strict=True):
        np.testing.assert_allclose(loaded, now.numpy(), rtol=1e-6)


def test_steps_per_execution_changes_the_rate_once_per_execution():
    """Batch callbacks see one call per execution of 2 steps: during the
    warm-up each execution trains at the scheduled rate of its middle."""
    x, y = classification_data(n=N)
    model = make_classifier(optimizer=keras.optimizers.SGD(0.5),
                            steps_per_execution=2)
    scale = kbatch.ScaleLearningRate(0.01, base_batch_size=16, batch_size=BATCH,
                                     warmup_steps=8, verbose=0)
    record = RecordRates()
    model.fit(x, y, batch_size=BATCH, epochs=3, verbose=0,
              callbacks=[scale, record])
    np.testing.assert_allclose(record.rates,
                               [_warmup(t + 0.5, 8) for t in (0, 2, 4, 6)]
                               + [0.04] * 2, rtol=1e-6)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.04)


class HalveAtFive(keras.optimizers.schedules.LearningRateSchedule):
    """A schedule written for one step at a time (`cond` needs a scalar)."""

    def __call__(self, step):
        return keras.ops.cond(step < 5, lambda: 1.0, lambda: 0.5)

    def get_config(self):
        return {}


class RecordStepsAndRates(RecordRates):
    def __init__(self):
        super().__init__()
        self.steps = []

    def on_train_batch_begin(self, batch, logs=None):
        self.steps.append(_optimizer.schedule_step(self.model.optimizer))


@pytest.mark.parametrize("after, accumulation", [
    (None, None),
    ("cosine", None),
    ("cosine", 2),
    ("one_step_at_a_time", None),
])
def test_alone_every_step_trains_at_the_schedules_rate(after, accumulation):
    """Without another callback, each step trains at the schedule's value at
    the optimizer's step: the same weights as when the schedule itself drives
    the optimizer."""
    x, y = classification_data(n=N)

    def run(callbacks, learning_rate):
        keras.utils.set_random_seed(7)
        model = make_classifier(optimizer=keras.optimizers.SGD(
            learning_rate, momentum=0.9,
            gradient_accumulation_steps=accumulation))
        model.fit(x, y, batch_size=BATCH, epochs=3, verbose=0, shuffle=False,
                  callbacks=callbacks)
        return model

    after = {None: None, "one_step_at_a_time": HalveAtFive(),
             "cosine": keras.optimizers.schedules.CosineDecay(1.0, 10)}[after]
    scale = kbatch.ScaleLearningRate(0.01, base_batch_size=16, batch_size=BATCH,
                                     warmup_steps=3, after=after, verbose=0)
    record = RecordStepsAndRates()
    model = run([record, scale], 0.5)
    assert record.steps == list(range(12))  # micro-batches, when accumulating
    expected = [float(scale.schedule(step)) for step in record.steps]
    np.testing.assert_allclose(record.rates, expected, rtol=1e-6)
    assert len(set(np.round(record.rates, 8))) >= 4  # the rate does move
    assert scale.factor == 1.0
    assert _optimizer.learning_rate_object(model.optimizer) is scale.schedule
    driven = run([], scale.schedule)
    for ours, theirs in zip(model.get_weights(), driven.get_weights(), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)

"""fit_adaptive: a batch size that follows the measured noise scale, the LR
that follows the batch, gradient accumulation past the memory limit, faults,
and resuming with BackupAndRestore."""

import itertools
import math
import os

import keras
import numpy as np
import pytest
from conftest import assert_same_state
from conftest import classification_data
from conftest import make_classifier
from conftest import model_state
from conftest import oom_classifier

import kbatch
from kbatch._internal import optimizer as _optimizer

N = 2048
X, Y = classification_data(n=N)
# random labels: the gradient is mostly noise, B_simple is large -> the batch grows
Y_NOISE = np.random.default_rng(0).integers(0, 3, size=N).astype("int32")


def _sgd(lr=0.05):
    return make_classifier(optimizer=keras.optimizers.SGD(lr))


def _grow(model, epochs=4, **kwargs):
    kwargs = {"batch_size": 16, "fraction": 1.0, "verbose": 0,
              **kwargs}
    return kbatch.fit_adaptive(model, X, Y_NOISE, epochs=epochs, **kwargs)


def test_the_batch_grows_where_the_noise_scale_is_large_same_samples_per_epoch():
    history = _grow(_sgd(), warmup_steps=0)
    sizes = history.history["batch_size"]
    assert sizes[0] == 16 and sizes[-1] > 16
    assert all(b >= a for a, b in itertools.pairwise(sizes))
    assert all(math.log2(b / 16).is_integer() for b in sizes)
    # one pass over the data per epoch, in fewer, larger steps
    assert history.history["updates"] == [math.ceil(N / b) for b in sizes]
    # SGD: the linear rule, anchored at the compiled LR at batch 16
    assert np.allclose(history.history["learning_rate"],
                       [0.05 * b / 16 for b in sizes], rtol=1e-6)
    assert all(n > 50 for n in history.history["noise_scale"])
    assert len(history.params["changes"]) >= 1
    change = history.params["changes"][0]
    assert change["to"] == 4 * change["from"] or change["to"] == 2 * change["from"]


def test_the_batch_falls_where_the_noise_scale_is_small():
    model = _sgd()
    history = kbatch.fit_adaptive(model, X, Y, batch_size=128, min_batch_size=8,
                                  epochs=3, interval=4, verbose=0)  # every step
    sizes = history.history["batch_size"]
    assert sizes[0] == 128 and sizes[-1] < 128
    assert all(b <= a for a, b in itertools.pairwise(sizes))
    assert np.allclose(history.history["learning_rate"],
                       [0.05 * b / 128 for b in sizes], rtol=1e-6)


def test_adam_follows_the_square_root_rule_or_a_measured_relation():
    model = make_classifier(optimizer=keras.optimizers.Adam(1e-3))
    history = _grow(model, epochs=3, warmup_steps=0)
    sizes = history.history["batch_size"]
    assert sizes[-1] > 16
    assert np.allclose(history.history["learning_rate"],
                       [1e-3 * math.sqrt(b / 16) for b in sizes], rtol=1e-6)
    measured = kbatch.LRByBatchSize([16, 256], [1e-3, 4e-3], epochs=3)
    model = make_classifier(optimizer=keras.optimizers.Adam(2e-3))
    history = _grow(model, epochs=3, warmup_steps=0, rule=measured)
    expected = [2e-3 * measured.predict(b) / measured.predict(16)
                for b in history.history["batch_size"]]
    assert np.allclose(history.history["learning_rate"], expected, rtol=1e-6)


class _StepRates(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_end(self, batch, logs=None):
        self.rates.append(float(self.model.optimizer.learning_rate))


def test_a_larger_lr_is_reached_by_a_linear_warm_up():
    rates = _StepRates()
    history = _grow(_sgd(), epochs=3, warmup_steps=8, callbacks=[rates])
    sizes, updates = history.history["batch_size"], history.history["updates"]
    first = next(i for i, b in enumerate(sizes) if b != sizes[0])
    start = sum(updates[:first])
    old, new = 0.05 * sizes[first - 1] / 16, 0.05 * sizes[first] / 16
    ramp = rates.rates[start:start + 9]
    assert np.allclose(ramp[:8], [old + (new - old) * i / 8 for i in range(8)],
                       rtol=1e-5)
    assert np.isclose(ramp[8], new)


def test_a_warm_up_longer_than_an_epoch_goes_on_where_it_stopped():
    rates = _StepRates()
    history = _grow(_sgd(), epochs=4, warmup_steps=200, callbacks=[rates])
    sizes, updates = history.history["batch_size"], history.history["updates"]
    first = next(i for i, b in enumerate(sizes) if b != sizes[0])
    assert updates[first] < 200  # the warm-up crosses an epoch boundary
    after = np.asarray(rates.rates[sum(updates[:first]):])
    assert np.all(np.diff(after) >= -1e-9)  # never back down at an epoch start
    assert after[-1] < 0.05 * sizes[-1] / 16  # still rising: 200 updates


def test_a_compiled_schedule_is_followed_in_samples_and_put_back():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.05, 64, 0.5)
    model = make_classifier(optimizer=keras.optimizers.SGD(schedule))
    history = _grow(model, epochs=3, warmup_steps=0)
    samples = np.cumsum([0] + [N] * 2)
    sizes = history.history["batch_size"]
    # the last step of each epoch: its samples, in steps of the first batch
    last = [(s + N - b) / 16 for s, b in zip(samples, sizes)]
    expected = [float(schedule(step)) * b / 16 for step, b in zip(last, sizes)]
    assert np.allclose(history.history["learning_rate"], expected, rtol=1e-5)
    assert _optimizer.learning_rate_object(model.optimizer) is schedule


def test_the_model_is_left_ready_for_a_plain_fit():
    model = _sgd()
    _grow(model, epochs=2, max_micro_batch_size=16)
    assert np.isclose(float(model.optimizer.learning_rate), 0.05)
    assert _optimizer.gradient_accumulation_steps(model.optimizer) == 1
    history = model.fit(X, Y, batch_size=64, epochs=1, verbose=0)
    assert history.epoch == [0]


def test_a_batch_above_the_memory_limit_accumulates_micro_batches():
    model = _sgd()
    history = _grow(model, max_micro_batch_size=32, warmup_steps=0)
    sizes = history.history["batch_size"]
    micro = history.history["micro_batch_size"]
    assert max(sizes) > 32 and max(micro) <= 32
    assert [b // m for b, m in zip(sizes, micro)] == [max(1, b // 32) for b in sizes]
    assert history.history["updates"] == [N // b for b in sizes]
    # the optimizer made exactly those updates (its public count)
    assert int(model.optimizer.iterations.numpy()) == sum(history.history["updates"])


def test_accumulated_micro_batches_give_the_weights_of_one_large_batch():
    x, y = X[:256], Y[:256]
    big = make_classifier(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    small = make_classifier(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    small.set_weights(big.get_weights())
    big.fit(x, y, batch_size=64, epochs=2, shuffle=False, verbose=0)
    small.optimizer.build(small.trainable_variables)
    _optimizer.set_gradient_accumulation(small.optimizer, 4)
    small.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(big.get_weights(), small.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert int(small.optimizer.iterations.numpy()) == 8


def test_out_of_memory_retries_the_epoch_with_accumulation(capsys):
    model = oom_classifier(limit=32, after=2)
    history = _grow(model, epochs=4, warmup_steps=0, verbose=1)
    sizes = history.history["batch_size"]
    micro = history.history["micro_batch_size"]
    assert max(sizes) > 32 and max(micro) <= 32
    assert len(history.epoch) == 4
    # the two steps trained before the error were undone: only whole epochs count
    assert int(model.optimizer.iterations.numpy()) == sum(history.history["updates"])
    assert "ran out of memory" in capsys.readouterr().out


class _FailIn(keras.callbacks.Callback):
    """Records the state at each epoch's end; raises `error` at the second
    step of the first epoch whose batch size differs from the first."""

    def __init__(self, error):
        super().__init__()
        self.error, self.states, self.first = error, [], None
        self.updates = []

    def on_train_batch_begin(self, batch, logs=None):
        size = self.params.get("steps")
        if self.first is None:
            self.first = size
        elif size != self.first and batch == 1:
            raise self.error

    def on_epoch_end(self, epoch, logs=None):
        self.states.append(model_state(self.model))
        self.updates.append(logs["updates"])


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_an_error_during_a_change_leaves_the_last_completed_epoch(error):
    model = _sgd()
    fail = _FailIn(error)
    with pytest.raises(type(error)):
        _grow(model, epochs=4, callbacks=[fail])
    assert fail.states, "the batch never changed"
    assert_same_state(fail.states[-1], model_state(model))
    assert np.isclose(float(model.optimizer.learning_rate), 0.05)
    assert _optimizer.gradient_accumulation_steps(model.optimizer) == 1


def test_backup_and_restore_resumes_after_a_change(tmp_path):
    backup_dir = str(tmp_path / "backup")
    model = _sgd()
    weights = model.get_weights()
    fail = _FailIn(RuntimeError("crash"))
    with pytest.raises(RuntimeError):
        _grow(model, epochs=4, max_micro_batch_size=32, callbacks=[
            keras.callbacks.BackupAndRestore(backup_dir), fail])
    done = len(fail.states)
    saved = os.path.join(backup_dir, "kbatch_adaptive.json")
    assert os.path.exists(saved)
    # a new process: same model, fresh weights, the same call
    resumed = _sgd()
    resumed.set_weights(weights)
    starts = []

    class Start(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            starts.append((model_state(self.model)[0],
                           int(self.model.optimizer.iterations.numpy())))

    history = _grow(resumed, epochs=4, max_micro_batch_size=32, callbacks=[
        keras.callbacks.BackupAndRestore(backup_dir), Start()])
    assert history.epoch == list(range(done, 4))
    assert history.history["batch_size"][0] > 16  # the size chosen before the crash
    # the weights and the update count of the last completed epoch (the
    # optimizer may have gained the accumulators of the resumed batch since)
    weights_resumed, updates_resumed = starts[0]
    assert_same_state((fail.states[-1][0], []), (weights_resumed, []))
    assert updates_resumed == sum(fail.updates)
    assert not os.path.exists(backup_dir)  # complete: the checkpoint is gone
    assert resumed.fit(X, Y, batch_size=64, epochs=1, verbose=0).epoch == [0]


def test_plot_shows_batch_size_noise_scale_and_lr(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    history = _grow(_sgd(), epochs=2)
    ax = kbatch.scaling.plot_adaptive(history, path=str(tmp_path / "a.png"))
    labels = ax.get_legend_handles_labels()[1]
    assert {"batch size", "B_simple"} <= set(labels)
    assert (tmp_path / "a.png").stat().st_size > 0
    with pytest.raises(ValueError, match="History of `fit_adaptive`"):
        kbatch.scaling.plot_adaptive({"loss": [1.0]})


@pytest.mark.parametrize("kwargs, match", [
    ({"fraction": 0.0}, "fraction"),
    ({"batch_size": 0}, "batch_size"),
    ({"window": 1}, "window"),
    ({"steps_per_epoch": 3}, "set by fit_adaptive"),
    ({"min_batch_size": 64}, "min_batch_size"),
    ({"rule": "cubic"}, "rule"),
])
def test_bad_input_is_refused_before_training(kwargs, match):
    model = _sgd()
    model.fit(X[:32], Y[:32], verbose=0)
    before = model_state(model)
    kwargs = {"batch_size": 16, "epochs": 1, "verbose": 0, **kwargs}
    with pytest.raises(ValueError, match=match):
        kbatch.fit_adaptive(model, X, Y, **kwargs)
    assert_same_state(before, model_state(model))


def test_an_optimizer_that_already_accumulates_is_refused():
    model = make_classifier(optimizer=keras.optimizers.SGD(
        0.05, gradient_accumulation_steps=2))
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        kbatch.fit_adaptive(model, X, Y, batch_size=16, epochs=1, verbose=0)


def test_user_callbacks_see_one_run_and_kbatchs_values(tmp_path):
    log = tmp_path / "log.csv"
    stop = keras.callbacks.EarlyStopping("loss", patience=1, min_delta=10.0)
    history = _grow(_sgd(), epochs=6, callbacks=[
        keras.callbacks.CSVLogger(str(log)), stop])
    # patience is counted across the per-epoch `fit` calls: stops after 2
    assert history.epoch == [0, 1]
    assert stop.stopped_epoch == 1
    rows = log.read_text().splitlines()
    assert len(rows) == 3  # header + both epochs: the file was not restarted
    assert {"batch_size", "noise_scale", "updates"} <= set(rows[0].split(","))

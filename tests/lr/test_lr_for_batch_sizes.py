"""`lr_for_batch_sizes`: the best LR per batch size, measured by probes."""

import json

import keras
import numpy as np
import pytest
from conftest import assert_same_state
from conftest import classification_data
from conftest import make_classifier
from conftest import model_state

import kbatch
from kbatch._internal import optimizer as _optimizer
from kbatch.lr import batch_sizes as batch_sizes_module


def _sgd_model():
    return make_classifier(optimizer=keras.optimizers.SGD(0.01))


def test_every_size_gets_a_bracketed_best_lr_and_the_model_is_untouched():
    x, y = classification_data(n=600)
    model = _sgd_model()
    before = model_state(model)
    result = kbatch.lr_for_batch_sizes(model, x, y, batch_sizes=[16, 128],
                                       epochs=2, verbose=0)
    assert_same_state(before, model_state(model))
    assert result.batch_sizes == [16, 128] and not result.left_out
    for b, lr in zip(result.batch_sizes, result.learning_rates):
        tried = result.probes[b]
        lrs = [p[0] for p in tried]
        losses = [p[1] for p in tried]
        best = int(np.argmin(losses))
        # the best probe has a worse (or diverged) probe on each side ...
        assert 0 < best < len(tried) - 1, tried
        # ... and the answer lies between those neighbours, inside its band
        assert lrs[best - 1] <= lr <= lrs[best + 1]
        low, high = result.bands[b]
        assert low <= lr <= high
    # plain SGD with a fixed budget: a larger batch takes a larger LR
    assert result.learning_rates[1] > 1.5 * result.learning_rates[0]


@pytest.mark.parametrize("batch_size, epochs, steps", [
    (20, 4, 20),  # a quarter of the 60 steps of the budget is 15: 20 at least
    (10, 8, 60),  # a quarter of 240 steps
    (60, 1, 5),  # never more than the budget's 5 steps
])
def test_the_probes_train_the_budgets_samples(batch_size, epochs, steps):
    x, y = classification_data(n=400)
    model = _sgd_model()
    result = kbatch.lr_for_batch_sizes(model, x, y, batch_sizes=[batch_size],
                                       epochs=epochs, validation_split=0.25,
                                       verbose=0)
    n_train = 300
    runs = result.metadata["probe_runs"][str(batch_size)]
    if steps < 50:  # every LR of the ladder once, the best one (at least) twice
        assert runs >= len(result.probes[batch_size]) + 1
    else:  # long enough: every LR once
        assert runs == len(result.probes[batch_size])
    assert result.metadata["samples_trained"] == runs * steps * batch_size
    assert result.metadata["train_samples"] == n_train
    assert result.metadata["probe_steps"] == {str(batch_size): steps}


@pytest.mark.parametrize("kwargs, error, words", [
    ({"batch_sizes": [0, 16]}, ValueError, "batch_sizes[0]"),
    ({"batch_sizes": [16, 2.5]}, TypeError, "batch_sizes[1]"),
    ({"batch_sizes": [16, 4096]}, ValueError, "larger than the"),
    ({"batch_sizes": 16}, TypeError, "list of batch sizes"),
    ({"batch_sizes": []}, ValueError, "empty"),
    ({"batch_sizes": [16, 16]}, ValueError, "repeats"),
    ({"batch_sizes": [16], "epochs": 0}, ValueError, "epochs"),
    ({"batch_sizes": [16], "validation_split": 1.0}, ValueError, "validation_split"),
    ({"batch_sizes": [16], "probe_fraction": 0.0}, ValueError, "probe_fraction"),
])
def test_bad_input_is_refused_before_anything_trains(kwargs, error, words):
    x, y = classification_data(n=256)
    model = _sgd_model()
    before = model_state(model)
    kwargs.setdefault("epochs", 1)
    with pytest.raises(error, match=words.replace("[", r"\[").replace("]", r"\]")):
        kbatch.lr_for_batch_sizes(model, x, y, verbose=0, **kwargs)
    assert_same_state(before, model_state(model))
    assert int(model.optimizer.iterations) == 0


def test_missing_targets_and_an_uncompiled_model_are_named():
    x, y = classification_data(n=128)
    with pytest.raises(ValueError, match="`y` is required"):
        kbatch.lr_for_batch_sizes(_sgd_model(), x, batch_sizes=[16], epochs=1)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="not compiled"):
        kbatch.lr_for_batch_sizes(model, x, y, batch_sizes=[16], epochs=1)


class _OutOfMemoryAbove(keras.layers.Layer):
    """Raises TensorFlow's out-of-memory error for batches above `limit`."""

    def __init__(self, limit, **kwargs):
        super().__init__(**kwargs)
        self.limit = limit

    def call(self, x):
        if x.shape[0] is not None and x.shape[0] > self.limit:
            import tensorflow as tf

            raise tf.errors.ResourceExhaustedError(None, None, "OOM (injected)")
        return x


def test_a_size_that_runs_out_of_memory_is_probed_with_accumulation(capsys):
    x, y = classification_data(n=200)
    model = keras.Sequential([keras.Input((8,)), _OutOfMemoryAbove(32),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.01),
                  loss="sparse_categorical_crossentropy", run_eagerly=True)
    before = model_state(model)
    result = kbatch.lr_for_batch_sizes(model, x, y, batch_sizes=[16, 64],
                                       epochs=1, verbose=1)
    assert result.batch_sizes == [16, 64] and not result.left_out
    assert result.metadata["micro_batch_sizes"] == {"64": 32}
    assert "ran out of memory" in capsys.readouterr().out
    assert_same_state(before, model_state(model))
    assert _optimizer.gradient_accumulation_steps(model.optimizer) == 1


def test_accumulated_probes_measure_what_the_large_batch_measures(monkeypatch):
    # a range test whose suggestion grows as sqrt(B): the ladders start at the
    # same LR whether the range test ran at 64 or, scaled, at the micro-batch
    class Curve:
        def __init__(self, batch_size):
            self.batch_size = batch_size

        def suggestion(self):
            return 0.1 * np.sqrt(self.batch_size)

    def fake_find_lr(model, x, y, *, batch_size, **kwargs):
        return Curve(batch_size)

    monkeypatch.setattr("kbatch.lr.find.find_lr", fake_find_lr)
    x, y = classification_data(n=400)
    keras.utils.set_random_seed(1)
    whole = kbatch.lr_for_batch_sizes(_sgd_model(), x, y, batch_sizes=[16, 64],
                                      epochs=2, verbose=0)
    keras.utils.set_random_seed(1)  # the same initial weights
    parts = kbatch.lr_for_batch_sizes(_sgd_model(), x, y, batch_sizes=[16, 64],
                                      epochs=2, verbose=0, max_micro_batch_size=16)
    assert parts.metadata["micro_batch_sizes"] == {"64": 16}
    assert "micro_batch_sizes" not in whole.metadata or not whole.metadata[
        "micro_batch_sizes"]
    np.testing.assert_allclose(parts.learning_rates, whole.learning_rates,
                               rtol=1e-3)
    for b in (16, 64):
        np.testing.assert_allclose([v for _, v in parts.probes[b]],
                                   [v for _, v in whole.probes[b]], rtol=1e-3)


def test_ctrl_c_restores_the_model_and_propagates(monkeypatch):
    x, y = classification_data(n=300)
    model = _sgd_model()
    before = model_state(model)
    calls = {"n": 0}
    real_fit = keras.Model.fit

    def interrupted_fit(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # inside the probes, after a few have trained
            raise KeyboardInterrupt
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", interrupted_fit)
    with pytest.raises(KeyboardInterrupt):
        kbatch.lr_for_batch_sizes(model, x, y, batch_sizes=[16, 64], epochs=1,
                                  verbose=0)
    assert calls["n"] == 4
    assert_same_state(before, model_state(model))


def test_a_size_where_every_probe_diverges_is_left_out(monkeypatch):
    x, y = classification_data(n=300)
    model = _sgd_model()
    monkeypatch.setattr(batch_sizes_module.probes, "next_rung",
                        lambda *a, **k: None)
    real_evaluate = keras.Model.evaluate

    def nan_at_64(self, *args, **kwargs):
        out = real_evaluate(self, *args, **kwargs)
        if kwargs.get("batch_size") == 64:
            out["loss"] = float("nan")
        return out

    monkeypatch.setattr(keras.Model, "evaluate", nan_at_64)
    with pytest.warns(UserWarning, match="64"):
        result = kbatch.lr_for_batch_sizes(model, x, y, batch_sizes=[16, 64],
                                           epochs=1, verbose=0)
    assert result.batch_sizes == [16]
    assert "every probe diverged" in result.left_out[64]


def test_the_result_round_trips_and_plots(tmp_path):
    pytest.importorskip("matplotlib")
    result = kbatch.LRByBatchSize(
        [16, 64, 256], [0.01, 0.03, 0.05], epochs=3,
        bands={16: (0.008, 0.02), 64: (0.02, 0.04), 256: (0.03, 0.08)},
        probes={16: [(0.003, 1.2), (0.01, 1.0), (0.03, 1.1)]},
        left_out={1024: "out of memory"})
    path = result.save(tmp_path / "lr.json")
    again = kbatch.LRByBatchSize.load(path)
    assert again.to_dict() == result.to_dict()
    assert json.loads(open(path).read())["left_out"] == {"1024": "out of memory"}
    assert again.predict(32) == pytest.approx(0.01 * 3 ** 0.5)
    slope = np.polyfit(np.log([16, 64, 256]), np.log([0.01, 0.03, 0.05]), 1)[0]
    assert f"B^{slope:.2f}" in again.verdict()
    assert slope == pytest.approx(0.58, abs=0.01)
    ax = again.plot(path=tmp_path / "lr.png")
    assert (tmp_path / "lr.png").stat().st_size > 0
    assert len(ax.lines) >= 3


def test_without_a_range_test_suggestion_the_ladder_starts_at_the_compiled_lr(
        monkeypatch):
    from kbatch.lr import result as result_module

    def no_suggestion(self, method="auto"):
        raise ValueError("no suggestion (patched)")

    monkeypatch.setattr(result_module.LRFinderResult, "suggestion", no_suggestion)
    x, y = classification_data(n=300)
    model = make_classifier(optimizer=keras.optimizers.SGD(0.05))
    result = kbatch.lr_for_batch_sizes(model, x, y, batch_sizes=[32], epochs=1,
                                       verbose=0)
    tried = sorted(lr for lr, _ in result.probes[32])
    # the first three rungs: 0.05 and half a decade either side
    for lr in (0.05 / 10**0.5, 0.05, 0.05 * 10**0.5):
        assert any(abs(t / lr - 1) < 1e-6 for t in tried), (lr, tried)
    assert not result.left_out

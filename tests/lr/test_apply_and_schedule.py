"""From the found LR to the training run: `LRFinderResult.apply` and
`.schedule`, and the warning of a sweep that training cut short."""

import keras
import numpy as np
import pytest
from conftest import classification_data
from conftest import make_classifier

import kbatch
from kbatch.lr import LRFinderResult


def _result():
    lrs = np.logspace(-5, 0, 50)
    losses = 2.0 - np.tanh(np.log10(lrs) + 3) + (lrs > 0.3) * 50 * lrs
    return LRFinderResult(lrs, losses, smoothing=0.0)


def test_apply_sets_a_plain_learning_rate():
    result = _result()
    model = make_classifier(optimizer=keras.optimizers.SGD(0.5))
    text = result.apply(model)
    assert float(model.optimizer.learning_rate) == pytest.approx(result.suggestion())
    assert "Set the learning rate" in text


def test_apply_keeps_a_compiled_schedule_rescaled_to_start_at_the_suggestion(
        tmp_path):
    result = _result()
    decay = keras.optimizers.schedules.ExponentialDecay(0.5, decay_steps=4,
                                                        decay_rate=0.5)
    model = make_classifier(optimizer=keras.optimizers.SGD(decay))
    x, y = classification_data(n=64)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # traced with the old one
    with pytest.raises(TypeError):  # what the old quickstart line did
        model.optimizer.learning_rate = result.suggestion()
    text = result.apply(model)
    assert "ExponentialDecay" in text
    lr = result.suggestion()
    assert float(model.optimizer.learning_rate) == pytest.approx(lr * 0.5, rel=1e-5)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # 4 more steps: one halving
    assert float(model.optimizer.learning_rate) == pytest.approx(lr * 0.25, rel=1e-5)
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.saving.load_model(path)
    assert float(again.optimizer.learning_rate) == pytest.approx(lr * 0.25, rel=1e-5)


def test_apply_refuses_a_plain_callable_and_an_uncompiled_model():
    result = _result()
    model = make_classifier(optimizer=keras.optimizers.SGD(lambda: 0.1))
    with pytest.raises(TypeError, match="set it yourself"):
        result.apply(model)
    with pytest.raises(ValueError, match="compiled"):
        result.apply(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))


@pytest.mark.parametrize("kind, steps, warmup, expected", [
    ("constant", None, 0, {0: 1.0, 500: 1.0}),
    ("constant", None, 10, {0: 0.1, 5: 0.55, 10: 1.0, 500: 1.0}),
    ("cosine", 100, 0, {0: 1.0, 50: 0.5, 100: 0.0}),
    ("cosine", 110, 10, {0: 0.1, 10: 1.0, 60: 0.5, 110: 0.0}),
    ("one_cycle", 100, 0, {0: 0.04, 25: 1.0, 100: 4e-6}),
    ("one_cycle", 100, 40, {0: 0.04, 20: 0.52, 40: 1.0}),
])
def test_schedules_built_on_the_suggestion(kind, steps, warmup, expected, tmp_path):
    result = _result()
    lr = result.suggestion()
    schedule = result.schedule(kind, steps, warmup_steps=warmup)
    for step, fraction in expected.items():
        assert float(schedule(step)) == pytest.approx(fraction * lr, rel=1e-4,
                                                      abs=1e-6 * lr)
    # serializable with the model
    model = make_classifier(optimizer=keras.optimizers.SGD(schedule))
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    assert float(again.optimizer.learning_rate) == pytest.approx(float(schedule(0)),
                                                                 rel=1e-5)


@pytest.mark.parametrize("kwargs, error, words", [
    ({"kind": "linear"}, ValueError, "kind"),
    ({"kind": "cosine"}, ValueError, "steps"),
    ({"kind": "one_cycle", "steps": 10, "warmup_steps": 10}, ValueError,
     "warmup_steps"),
    ({"kind": "constant", "warmup_steps": -1}, ValueError, "warmup_steps"),
])
def test_bad_schedule_arguments_are_named(kwargs, error, words):
    with pytest.raises(error, match=words):
        _result().schedule(**kwargs)


def test_a_sweep_cut_short_by_the_end_of_training_says_how_many_epochs():
    x, y = classification_data(n=64)
    model = make_classifier(optimizer="sgd")
    finder = kbatch.LRRangeTest(min_lr=1e-4, max_lr=10.0, num_steps=30)
    with pytest.warns(kbatch.LRFinderWarning, match="at least 8 epochs of 4 steps"):
        model.fit(x, y, batch_size=16, epochs=2, callbacks=[finder], verbose=0)
    assert finder.result.stop_reason == "ended" and finder.result.lrs.size == 8


def test_a_sweep_that_completes_does_not_warn(recwarn):
    x, y = classification_data(n=64)
    model = make_classifier(optimizer="sgd")
    finder = kbatch.LRRangeTest(min_lr=1e-4, max_lr=1e-2, num_steps=8)
    model.fit(x, y, batch_size=16, epochs=3, callbacks=[finder], verbose=0)
    assert finder.result.stop_reason == "completed"
    assert not [w for w in recwarn if issubclass(w.category, kbatch.LRFinderWarning)]

"""What `BatchLRHyperModel` hands back is what was trained: the LR (or
schedule) of each trial, in its hyperparameters and in the model KerasTuner
rebuilds; the `(low, high)` window; a compiled schedule; a `learning_rate`
hyperparameter of the user's."""

import math

import keras
import keras_tuner
import numpy as np
import pytest
from conftest import small_digits

from kbatch.scaling import LinearWarmup
from kbatch.tuner import RECORDED
from kbatch.tuner import BatchLRHyperModel
from kbatch.tuner.hypermodel import TRIAL_SCHEDULE_NAME


@pytest.fixture(scope="module")
def digits():
    return small_digits(train=256, val=100)


_FITS = []  # module level: KerasTuner deep-copies the callbacks of every trial


class _SeenLearningRates(keras.callbacks.Callback):
    """The optimizer's LR before every batch, one list per `fit`."""

    def on_train_begin(self, logs=None):
        _FITS.append([])

    def on_train_batch_begin(self, batch, logs=None):
        _FITS[-1].append(float(self.model.optimizer.learning_rate))


@pytest.fixture()
def seen():
    _FITS.clear()
    return _FITS


def _dense(optimizer):
    model = keras.Sequential([keras.Input((64,)),
                              keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _search(hypermodel, data, tmp_path, tuner_class=keras_tuner.RandomSearch,
            callbacks=(), **tuner_kwargs):
    tuner = tuner_class(hypermodel, objective="val_accuracy",
                        directory=str(tmp_path), project_name="p", seed=5,
                        **tuner_kwargs)
    tuner.search(data.x_train, data.y_train, validation_data=data.val,
                 callbacks=list(callbacks), verbose=0)
    return tuner


def _trials(tuner):
    return sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id)


# ----------------------------------------------------------- item 3: hand-back
def test_best_model_and_hyperparameters_hold_the_lr_the_trial_trained_at(
        digits, tmp_path, seen):
    # Adam with gradient accumulation: its fresh optimizer does not take the
    # checkpoint's optimizer variables, so only `build` can set the LR
    hypermodel = BatchLRHyperModel(
        lambda hp: _dense(keras.optimizers.Adam(0.001, gradient_accumulation_steps=2)),
        batch_sizes=(16, 32), learning_rate=(0.01, 0.1), epochs=1, warmup=0)
    tuner = _search(hypermodel, digits, tmp_path, max_trials=2,
                    callbacks=[_SeenLearningRates()])
    trials = _trials(tuner)
    assert len(seen) == 2 and all(t.status == "COMPLETED" for t in trials)
    for trial, trained in zip(trials, seen):
        lr = trial.metrics.get_last_value("learning_rate")
        assert not math.isclose(lr, 0.001)  # not the compiled LR
        assert trained == pytest.approx([lr] * len(trained), rel=1e-6)
        model = tuner.load_model(trial)  # what get_best_models() returns
        assert float(model.optimizer.learning_rate) == pytest.approx(lr, rel=1e-6)
        hp = trial.hyperparameters
        assert set(hp.values) >= {"learning_rate", "global_batch_size",
                                  "warmup_steps"}
        assert hp["learning_rate"] == pytest.approx(lr)
        assert hp["global_batch_size"] == 2 * hp["batch_size"]  # accumulation
        assert hp["warmup_steps"] == 0
    best_hp = tuner.get_best_hyperparameters()[0]
    best_model = tuner.get_best_models()[0]
    assert float(best_model.optimizer.learning_rate) == pytest.approx(
        best_hp["learning_rate"], rel=1e-6)


def test_rebuilt_model_holds_the_trial_warm_up_and_compiled_schedule(
        digits, tmp_path, seen):
    """A schedule compiled by build_model is kept (rescaled to the trial's LR),
    and the model KerasTuner rebuilds holds the same schedule, warm-up
    included."""
    decay = keras.optimizers.schedules.ExponentialDecay(0.5, decay_steps=4,
                                                        decay_rate=0.5)
    hypermodel = BatchLRHyperModel(
        lambda hp: _dense(keras.optimizers.SGD(decay)), batch_sizes=(32,),
        learning_rate=(0.01, 0.1), lr_steps=2, epochs=1, warmup=3)
    tuner = _search(hypermodel, digits, tmp_path, keras_tuner.GridSearch,
                    max_trials=2, callbacks=[_SeenLearningRates()])
    trials = _trials(tuner)
    assert len(trials) == 2 and len(seen) == 2
    steps = len(seen[0])
    assert steps == 8  # 256 samples, batch 32
    centre = math.sqrt(0.01 * 0.1)
    for trial, trained in zip(trials, seen):
        # the window (0.01, 0.1) at its ends: the high end warms up from its centre
        lr = trial.metrics.get_last_value("learning_rate")
        warmup = 3 if lr > centre else 0
        # the compiled decay's shape, from the trial's LR, after its warm-up
        expected = [lr * 0.5 ** (max(s - warmup, 0) / 4) for s in range(steps)]
        expected[:warmup] = [centre + (lr - centre) * s / warmup
                             for s in range(warmup)]
        assert trained == pytest.approx(expected, rel=1e-5)
        hp = trial.hyperparameters
        assert hp["learning_rate"] == pytest.approx(lr)
        assert hp["warmup_steps"] == warmup
        if warmup:
            assert hp["warmup_initial_learning_rate"] == pytest.approx(centre)
        schedule = tuner.load_model(trial).optimizer._learning_rate
        assert isinstance(schedule, LinearWarmup)
        assert schedule.name == TRIAL_SCHEDULE_NAME
        assert schedule.after.get_config() == decay.get_config()
        assert schedule.learning_rate == pytest.approx(lr)
        assert [float(schedule(s)) for s in range(steps)] == pytest.approx(
            trained, rel=1e-6)
    assert [t.hyperparameters["learning_rate"] for t in trials] == pytest.approx(
        [0.01, 0.1])


def test_resumed_tuner_hands_back_the_trained_lr_without_its_range_tests(
        digits, tmp_path):
    """learning_rate="auto": a new process rebuilds the best model from the
    recorded hyperparameters, without rerunning (or loading) the range tests."""
    def build(hp):
        return _dense(keras.optimizers.Adam(0.001))

    first = BatchLRHyperModel(build, batch_sizes=(16, 64), epochs=1, warmup=0)
    tuner = _search(first, digits, tmp_path, max_trials=1)
    best_hp = tuner.get_best_hyperparameters()[0]
    again = BatchLRHyperModel(build, batch_sizes=(16, 64), epochs=1, warmup=0)
    reloaded = keras_tuner.RandomSearch(again, objective="val_accuracy",
                                        directory=str(tmp_path), project_name="p",
                                        overwrite=False, seed=5)
    model = reloaded.get_best_models()[0]
    assert again.anchors is None  # nothing measured or loaded
    assert float(model.optimizer.learning_rate) == pytest.approx(
        best_hp["learning_rate"], rel=1e-6)
    assert reloaded.get_best_hyperparameters()[0].values == best_hp.values


def test_hyperband_round_after_a_warm_up_trains_at_a_constant_lr(digits):
    """A continued trial (Hyperband's `initial_epoch`) is rebuilt with the
    recorded warm-up schedule; its `fit` trains on without warm-up."""
    hypermodel = BatchLRHyperModel(lambda hp: _dense(keras.optimizers.SGD(0.001)),
                                   batch_sizes=(32,), learning_rate=(0.01, 0.1),
                                   warmup=3, epochs=2)
    hp = keras_tuner.HyperParameters()
    hypermodel.build(hp)
    hp.values["lr_multiplier"] = hypermodel.multiplier_range[1]
    lr = hypermodel.trial_learning_rate(hp, hypermodel.build(hp))
    hp.values.update({"learning_rate": lr, "global_batch_size": 32,
                      "warmup_steps": 3,
                      "warmup_initial_learning_rate": math.sqrt(0.01 * 0.1)})
    model = hypermodel.build(hp)
    assert isinstance(model.optimizer._learning_rate, LinearWarmup)
    assert model.optimizer._learning_rate.warmup_steps == 3
    history = hypermodel.fit(hp, model, digits.x_train, digits.y_train,
                             initial_epoch=1, epochs=2, verbose=0)
    assert history.history["learning_rate"] == pytest.approx([lr])
    assert float(model.optimizer.learning_rate) == pytest.approx(lr, rel=1e-6)
    assert hp["warmup_steps"] == 0 and "warmup_initial_learning_rate" not in hp


def test_recorded_names_are_documented():
    doc = BatchLRHyperModel.__doc__
    assert all(f"`{name}`" in doc for name in RECORDED)


# --------------------------------------- item 3: a learning_rate hp of the user
@pytest.mark.parametrize("parametrization", ["scaled", "independent"])
def test_learning_rate_hyperparameter_of_the_user_is_refused_before_training(
        tmp_path, parametrization):
    built = []

    def build(hp):
        built.append(True)
        lr = hp.Float("learning_rate", 1e-4, 1e-2, sampling="log")
        return _dense(keras.optimizers.SGD(lr))

    hypermodel = BatchLRHyperModel(build, batch_sizes=(32,),
                                   learning_rate=(0.01, 0.1),
                                   parametrization=parametrization, epochs=1)
    with pytest.raises(keras_tuner.errors.FatalValueError,
                       match=r"declares a hyperparameter named 'learning_rate'.*"
                             r"learning_rate=\(low, high\)"):
        keras_tuner.RandomSearch(hypermodel, objective="val_accuracy",
                                 max_trials=1, directory=str(tmp_path))
    assert len(built) == 1  # refused when the tuner was created


def test_compiled_schedule_starting_at_zero_is_refused(tmp_path):
    warming = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=10, warmup_target=0.1, warmup_steps=5)
    hypermodel = BatchLRHyperModel(lambda hp: _dense(keras.optimizers.SGD(warming)),
                                   batch_sizes=(32,), learning_rate=(0.01, 0.1))
    with pytest.raises(keras_tuner.errors.FatalValueError,
                       match=r"CosineDecay\) starts at 0.*warmup="):
        keras_tuner.RandomSearch(hypermodel, objective="val_accuracy",
                                 max_trials=1, directory=str(tmp_path))


# ------------------------------------------------------ item 4: the LR window
def test_window_multipliers_span_it_at_the_base_batch_size():
    hypermodel = BatchLRHyperModel(lambda hp: _dense(keras.optimizers.SGD()),
                                   batch_sizes=(32, 128), base_batch_size=32,
                                   learning_rate=(1e-3, 1e-1))
    assert hypermodel.multiplier_range == pytest.approx((0.1, 10.0))
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    lrs = {}
    for batch in (32, 128):
        for end in hypermodel.multiplier_range:
            hp.values.update({"batch_size": batch, "lr_multiplier": end})
            lrs[batch, end] = hypermodel.trial_learning_rate(hp, model)
    assert [lrs[32, end] for end in hypermodel.multiplier_range] == pytest.approx(
        [1e-3, 1e-1])
    # SGD: linear rule, the window at 128 is 4 times the one at 32
    assert [lrs[128, end] for end in hypermodel.multiplier_range] == pytest.approx(
        [4e-3, 4e-1])
    # "auto" keeps the default multipliers
    assert BatchLRHyperModel(lambda hp: None).multiplier_range == (0.25, 4.0)


def test_lrs_tried_cover_the_window(digits, tmp_path):
    hypermodel = BatchLRHyperModel(lambda hp: _dense(keras.optimizers.SGD()),
                                   batch_sizes=(32, 64), base_batch_size=32,
                                   learning_rate=(1e-3, 1e-1), lr_steps=3,
                                   epochs=1, warmup=0)
    tuner = _search(hypermodel, digits, tmp_path, keras_tuner.GridSearch,
                    max_trials=6)
    tried = {}
    for trial in _trials(tuner):
        hp = trial.hyperparameters
        tried.setdefault(hp["batch_size"], []).append(
            trial.metrics.get_last_value("learning_rate"))
    assert sorted(tried[32]) == pytest.approx([1e-3, 1e-2, 1e-1], rel=1e-5)
    assert sorted(tried[64]) == pytest.approx([2e-3, 2e-2, 2e-1], rel=1e-5)


def test_window_and_multiplier_range_together_are_refused():
    with pytest.raises(ValueError, match=r"not both.*learning_rate=\(0.01, 0.1\), "
                                         r"multiplier_range=\(0.5, 2\)"):
        BatchLRHyperModel(lambda hp: None, learning_rate=(0.01, 0.1),
                          multiplier_range=(0.5, 2))
    # independent: the window is the range at every batch size, no multiplier
    hypermodel = BatchLRHyperModel(lambda hp: None, learning_rate=(0.01, 0.1),
                                   parametrization="independent")
    assert hypermodel.learning_rate == (0.01, 0.1)


def test_independent_lrs_stay_in_the_window_at_every_batch_size(digits):
    hypermodel = BatchLRHyperModel(lambda hp: _dense(keras.optimizers.SGD()),
                                   batch_sizes=(16, 128), learning_rate=(1e-3, 1e-1),
                                   parametrization="independent")
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    for batch in (16, 128):
        for lr in (1e-3, 1e-1):
            hp.values.update({"batch_size": batch, "learning_rate": lr})
            assert hypermodel.trial_learning_rate(hp, model) == lr
    assert np.isclose(float(hypermodel.build(hp).optimizer.learning_rate), 1e-1)

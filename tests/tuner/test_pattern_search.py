"""`PatternSearch`: the sequential search over (batch size, LR).

Most tests drive the oracle with a made-up objective (a `Tuner` whose
`run_trial` scores the hyperparameters without training), so what is checked
is the search itself; one test runs it on `BatchLRHyperModel` and digits.
"""

import math

import keras_tuner
import pytest
from conftest import small_digits

import kbatch
from kbatch.tuner import BatchLRHyperModel
from kbatch.tuner import OutOfMemoryError
from kbatch.tuner import PatternSearch
from kbatch.tuner import PatternSearchOracle

SIZES = [16, 32, 64, 128, 256, 512]


def _space(lr_name="lr_multiplier", low=0.25, high=4.0, step=None, units=False):
    hp = keras_tuner.HyperParameters()
    hp.Choice("batch_size", SIZES)
    hp.Float(lr_name, low, high, sampling="log", step=step)
    if units:
        hp.Int("units", 8, 64, step=8)
    return hp


class _Synthetic(PatternSearch):
    """Scores a trial by its distance (in log2) to (best_batch, best_lr); fails
    the trials at batch sizes >= `fail_from` (or == `-fail_from`): out of
    memory, or a plain `FailedTrialError(failure)`."""

    def __init__(self, best_batch, best_lr, lr_name="lr_multiplier",
                 fail_from=None, failure=None, **kwargs):
        self.best_batch, self.best_lr = best_batch, best_lr
        self.lr_name, self.fail_from, self.failure = lr_name, fail_from, failure
        super().__init__(objective=keras_tuner.Objective("score", "max"), **kwargs)

    def run_trial(self, trial, *args, **kwargs):
        values = trial.hyperparameters.values
        fails = (values["batch_size"] >= self.fail_from if self.fail_from > 0
                 else values["batch_size"] == -self.fail_from) if self.fail_from else 0
        if fails and self.failure is None:
            raise OutOfMemoryError(values["batch_size"])
        if fails:
            raise keras_tuner.errors.FailedTrialError(self.failure)
        return {"score": -math.log2(values["batch_size"] / self.best_batch) ** 2
                - math.log2(values[self.lr_name] / self.best_lr) ** 2}


def _run(tmp_path, best_batch=32, best_lr=2.0, max_trials=8, space=None,
         project="p", overwrite=True, **kwargs):
    tuner = _Synthetic(best_batch, best_lr, max_trials=max_trials,
                       hyperparameters=space or _space(), directory=str(tmp_path),
                       project_name=project, overwrite=overwrite, **kwargs)
    tuner.search(verbose=0)
    return tuner


def _sequence(tuner, lr_name="lr_multiplier"):
    trials = [tuner.oracle.get_trial(i) for i in tuner.oracle.start_order]
    return [(t.hyperparameters.values["batch_size"],
             t.hyperparameters.values[lr_name], t.status) for t in trials]


def test_sweep_then_poll_reaches_the_optimum(tmp_path):
    tuner = _run(tmp_path, best_batch=32, best_lr=2.0)
    sequence = _sequence(tuner)
    assert len(sequence) == 8
    # the sweep: smallest, middle and largest batch size at multiplier 1
    assert sequence[:3] == [(16, 1.0, "COMPLETED"), (64, 1.0, "COMPLETED"),
                            (512, 1.0, "COMPLETED")]
    best = tuner.oracle.get_best_trials(1)[0].hyperparameters.values
    assert (best["batch_size"], best["lr_multiplier"]) == (32, 2.0)
    pairs = [(b, round(m, 6)) for b, m, _ in sequence]
    assert len(set(pairs)) == len(pairs), "a point was tried twice"


@pytest.mark.parametrize("best_batch,best_lr", [(16, 0.5), (512, 4.0), (128, 1.0),
                                                (256, 0.25)])
def test_optimum_anywhere_on_the_lattice_is_found_in_twelve_trials(
        tmp_path, best_batch, best_lr):
    tuner = _run(tmp_path, best_batch=best_batch, best_lr=best_lr, max_trials=12)
    best = tuner.oracle.get_best_trials(1)[0]
    assert best.score == pytest.approx(0.0)


def test_step_is_halved_when_no_poll_point_improves(tmp_path):
    # optimum between lattice points: after (32, 2) the x2 steps fail, x sqrt(2) next
    tuner = _run(tmp_path, best_batch=32, best_lr=2.0 * 2 ** 0.5, max_trials=14)
    multipliers = {round(m, 4) for b, m, _ in _sequence(tuner) if b == 32}
    assert round(2.0 * 2 ** 0.5, 4) in multipliers


def test_other_hyperparameters_follow_the_best_trial(tmp_path):
    tuner = _run(tmp_path, space=_space(units=True), max_trials=8)
    trials = [tuner.oracle.get_trial(i) for i in tuner.oracle.start_order]
    for later in trials[3:]:
        # a poll point copies the incumbent's other values: the incumbent at that
        # time is one of the earlier trials
        earlier = {t.hyperparameters.values["units"] for t in trials
                   if int(t.trial_id) < int(later.trial_id)}
        assert later.hyperparameters.values["units"] in earlier


def test_failed_batch_sizes_and_larger_are_not_proposed_again(tmp_path):
    tuner = _run(tmp_path, best_batch=128, best_lr=1.0, fail_from=256,
                 max_trials=8)
    sequence = _sequence(tuner)
    assert len(sequence) == 8
    failures = [b for b, _, status in sequence if status == "FAILED"]
    # the sweep's largest fails; the sweep moves to the largest size left (256),
    # which fails too; then nothing >= 256 again
    assert failures == [512, 256], sequence
    assert sequence[:5] == [(16, 1.0, "COMPLETED"), (64, 1.0, "COMPLETED"),
                            (512, 1.0, "FAILED"), (256, 1.0, "FAILED"),
                            (128, 1.0, "COMPLETED")]
    for i, (batch, _, status) in enumerate(sequence):
        if status == "FAILED":
            assert all(b < batch for b, _, _ in sequence[i + 1:]), sequence
    best = tuner.oracle.get_best_trials(1)[0].hyperparameters.values
    assert (best["batch_size"], best["lr_multiplier"]) == (128, 1.0)


@pytest.mark.parametrize("failure", [
    "the loss diverged",
    # the failure's type decides, not its wording
    "Out of memory at batch size 64; kbatch.tuner.errors.OutOfMemoryError",
])
def test_other_failures_do_not_rule_out_larger_batch_sizes(tmp_path, failure):
    tuner = _run(tmp_path, best_batch=128, best_lr=1.0, fail_from=-64,
                 failure=failure, max_trials=10)
    sequence = _sequence(tuner)
    assert sequence[:3] == [(16, 1.0, "COMPLETED"), (64, 1.0, "FAILED"),
                            (512, 1.0, "COMPLETED")]
    best = tuner.oracle.get_best_trials(1)[0].hyperparameters.values
    assert (best["batch_size"], best["lr_multiplier"]) == (128, 1.0)


def test_resumed_search_continues_the_same_sequence(tmp_path):
    whole = _sequence(_run(tmp_path / "a", max_trials=8))
    _run(tmp_path / "b", max_trials=4)
    resumed = _sequence(_run(tmp_path / "b", max_trials=8, overwrite=False))
    assert resumed == whole


def test_parallel_workers_get_distinct_trials(tmp_path):
    oracle = _Synthetic(32, 2.0, hyperparameters=_space(), max_trials=8,
                        directory=str(tmp_path), project_name="p").oracle
    # five workers ask before any trial ends: the sweep (3) and then random points
    trials = [oracle.create_trial(f"worker{i}") for i in range(5)]
    pairs = [(t.hyperparameters.values["batch_size"],
              t.hyperparameters.values["lr_multiplier"]) for t in trials]
    assert all(t.status == "RUNNING" for t in trials)
    assert len(set(pairs)) == 5
    assert pairs[:3] == [(16, 1.0), (64, 1.0), (512, 1.0)]


def test_snaps_onto_a_stepped_learning_rate_grid(tmp_path):
    grid = [1e-3 * 10 ** (i / 4) for i in range(9)]  # 1e-3 ... 1e-1, 4 per decade
    space = _space("learning_rate", 1e-3, 1e-1, step=10 ** 0.25)
    tuner = _run(tmp_path, best_batch=64, best_lr=1e-2, lr_name="learning_rate",
                 space=space, max_trials=10)
    sequence = _sequence(tuner, "learning_rate")
    assert sequence[0][1] == pytest.approx(1e-2)  # the middle of the range
    for _, lr, _ in sequence:
        assert min(abs(math.log(lr / g)) for g in grid) < 1e-6, lr


def test_space_without_batch_size_or_lr_is_refused(tmp_path):
    hp = keras_tuner.HyperParameters()
    hp.Int("units", 8, 64)
    tuner = _Synthetic(32, 2.0, hyperparameters=hp, directory=str(tmp_path),
                       project_name="p")
    with pytest.raises(keras_tuner.errors.FatalValueError, match="batch_size"):
        tuner.search(verbose=0)


@pytest.mark.parametrize("kwargs,pattern", [
    ({"step": 1.0}, "step"),
    ({"step": -2}, "step"),
    ({"initial_batch_sizes": 0}, "initial_batch_sizes"),
])
def test_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        PatternSearchOracle(objective="val_accuracy", **kwargs)


@pytest.mark.slow  # `make test-all`: kept out of the 10-minute `make test`
def test_on_the_hypermodel_with_digits(tmp_path):
    data = small_digits()

    def build(hp):
        return kbatch.models.build("mlp", data, optimizer="momentum")

    hypermodel = BatchLRHyperModel(build, batch_sizes=(16, 64, 256),
                                   learning_rate=(0.005, 0.2), epochs=2)
    tuner = PatternSearch(hypermodel, objective="val_accuracy", max_trials=5,
                          directory=str(tmp_path), project_name="p", seed=1)
    tuner.search(data.x_train, data.y_train, validation_data=data.val, verbose=0)
    rows = kbatch.tuner.summarize(tuner).rows
    assert [r["status"] for r in rows] == ["COMPLETED"] * 5
    assert [r["batch_size"] for r in rows[:3]] == [16, 64, 256]
    best = max(rows[:3], key=lambda r: r["objective"])
    # the first poll doubles the best sweep trial's LR at its batch size
    assert rows[3]["batch_size"] == best["batch_size"]
    assert rows[3]["learning_rate"] == pytest.approx(2 * best["learning_rate"])


class _Recording(_Synthetic):
    """Writes beside the searched values what the trial trained with, as
    `BatchLRHyperModel.fit` does (`kbatch.tuner.RECORDED`)."""

    def run_trial(self, trial, *args, **kwargs):
        values = trial.hyperparameters.values
        values["learning_rate"] = 0.01 * values["batch_size"] * values["lr_multiplier"]
        values["warmup_steps"] = 0
        return super().run_trial(trial, *args, **kwargs)


def test_values_recorded_beside_the_searched_ones_do_not_make_tried_points_new(
        tmp_path):
    space = keras_tuner.HyperParameters()
    space.Choice("batch_size", [16, 32])
    space.Float("lr_multiplier", 0.5, 2.0, sampling="log", step=4.0)  # 0.5, 2
    tuner = _Recording(32, 2.0, max_trials=8, hyperparameters=space,
                       directory=str(tmp_path), project_name="r")
    tuner.search(verbose=0)
    pairs = [(b, round(m, 6)) for b, m, _ in _sequence(tuner)]
    assert sorted(pairs) == [(16, 0.5), (16, 2.0), (32, 0.5), (32, 2.0)]
    # the polls start from the best trial's searched values only
    for trial in tuner.oracle.trials.values():
        assert trial.hyperparameters.values["learning_rate"] == pytest.approx(
            0.01 * trial.hyperparameters.values["batch_size"]
            * trial.hyperparameters.values["lr_multiplier"])

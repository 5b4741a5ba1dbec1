"""fit_adaptive(signal="branch"): a rise the noise scale proposes is tried in
branches from one state, kept only when it keeps the progress per sample, and
the branches leave nothing behind."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import assert_same_state
from conftest import classification_data
from conftest import make_classifier
from conftest import model_state

import kbatch
from kbatch._internal import optimizer as _optimizer
from kbatch.scaling import adaptive
from kbatch.scaling import adaptive_rule

N = 1024
X, Y = classification_data(n=N)


def _always_up(monkeypatch):
    """The noise scale proposes x2 at every decision; returns the
    measurements each decision saw."""
    seen = []

    def up(batch_size, g_sq, trace, *, sizes, **kwargs):
        seen.append((list(g_sq), list(trace)))
        bigger = [s for s in sizes if s > batch_size]
        return adaptive_rule.Decision(bigger[0] if bigger else batch_size, 999.0,
                                      (500.0, 2000.0), "up")

    monkeypatch.setattr(adaptive_rule, "next_batch_size", up)
    return seen


def _verdict(monkeypatch, accept):
    calls = []

    def verdict(start, current, candidate, tolerance):
        calls.append((start, current, candidate))
        return accept

    monkeypatch.setattr(adaptive_rule, "branch_accepts", verdict)
    return calls


def _run(model, **kwargs):
    kwargs = {"batch_size": 16, "epochs": 4, "verbose": 0, "signal": "branch",
              "min_measurements": 2, **kwargs}
    keras.utils.set_random_seed(7)
    return kbatch.fit_adaptive(model, X, Y, **kwargs)


def _sgd(**compile_kwargs):
    keras.utils.set_random_seed(3)
    return make_classifier(optimizer=keras.optimizers.SGD(0.05), dropout=0.2,
                           **compile_kwargs)


# steps_per_execution 2: the noise scale's sums are updated inside the
# compiled steps (the branches' steps too, until they are undone)
@pytest.mark.parametrize("steps_per_execution", [1, 2])
def test_refused_branches_leave_the_run_of_a_fixed_batch(monkeypatch,
                                                         steps_per_execution):
    seen = _always_up(monkeypatch)
    calls = _verdict(monkeypatch, False)
    tried = _sgd(steps_per_execution=steps_per_execution)
    history = _run(tried)
    assert calls, "no branch was tried"
    assert history.history["batch_size"] == [16] * 4
    # the same run with no rise possible: bit for bit the same weights,
    # optimizer state, dropout seeds and noise-scale measurements
    plain = _sgd(steps_per_execution=steps_per_execution)
    measured = list(seen)
    seen.clear()
    plain_history = _run(plain, max_batch_size=16)
    assert_same_state(model_state(plain), model_state(tried))
    assert measured == seen and len(measured[-1][0]) >= 2
    assert history.history["loss"] == plain_history.history["loss"]


def test_refusals_wait_longer_each_time(monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    _always_up(monkeypatch)
    _verdict(monkeypatch, False)
    history = _run(_sgd(), epochs=8)
    # decisions at the end of every epoch; tries before epochs 1, 3, 7 (0-based)
    assert [t["epoch"] for t in history.params["trials"]] == [1, 3, 7]
    assert all(t["accepted"] is None for t in history.params["trials"])
    # the plot marks each refused rise: at the epoch it was tried, at its size
    ax = kbatch.scaling.plot_adaptive(history)
    marks = next(line for line in ax.get_lines()
                 if line.get_label() == "rise refused by branches")
    assert list(marks.get_xdata()) == [2, 4, 8]
    assert list(marks.get_ydata()) == [32, 32, 32]


def test_an_accepted_rise_is_taken_and_its_branches_counted(monkeypatch):
    _always_up(monkeypatch)
    _verdict(monkeypatch, True)
    history = _run(_sgd(), epochs=3, branch_samples=100, warmup_steps=0)
    assert history.history["batch_size"] == [16, 32, 64]
    trials = history.params["trials"]
    assert [(t["from"], t["accepted"]) for t in trials] == [(16, 32), (32, 64)]
    assert all(set(t["losses"]) == {t["from"], t["accepted"]} for t in trials)
    # each trial: a branch of 100 samples at the current size and at the new
    assert history.params["trial_updates"] == (7 + 4) + (4 + 2)
    assert [c["to"] for c in history.params["changes"]] == [32, 64]
    assert np.allclose(history.history["learning_rate"], [0.05, 0.1, 0.2])


def test_the_largest_candidate_that_keeps_the_progress_is_taken(monkeypatch):
    def up_x4(batch_size, g_sq, trace, *, sizes, **kwargs):
        return adaptive_rule.Decision(batch_size * 4, 999.0, (500.0, 2000.0), "up")

    monkeypatch.setattr(adaptive_rule, "next_batch_size", up_x4)
    tried = []

    def only_32(start, current, candidate, tolerance):
        tried.append(candidate)
        return len(tried) == 2  # 64 refused, then 32 accepted

    monkeypatch.setattr(adaptive_rule, "branch_accepts", only_32)
    history = _run(_sgd(), epochs=2, max_batch_size=64)
    assert history.history["batch_size"] == [16, 32]
    assert list(history.params["trials"][0]["losses"]) == [16, 64, 32]


def test_branches_compare_real_losses_on_held_out_samples(monkeypatch, capsys):
    _always_up(monkeypatch)
    history = _run(_sgd(), epochs=2, tolerance=1.0, verbose=2)
    trial = history.params["trials"][0]
    start, current = trial["loss_start"], trial["losses"][16]
    assert np.isfinite(start) and current < start  # the branch trained
    # tolerance 1: accepted unless the candidate is worse than the start
    assert (trial["accepted"] == 32) == (trial["losses"][32] <= start)
    said = capsys.readouterr().out
    assert f"branches of {N // 4} samples before epoch 2" in said
    assert ("batch 32 kept the progress" in said) == (trial["accepted"] == 32)


def test_an_error_in_a_branch_leaves_the_state_before_it(monkeypatch):
    _always_up(monkeypatch)
    _verdict(monkeypatch, True)
    states = []

    class Keep(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            states.append(model_state(self.model))

    original = adaptive._TrialControl.on_train_batch_begin

    def fail_at_32(self, batch, logs=None):
        if self.run.batch_size == 32 and batch == 3:  # after 3 steps
            raise KeyboardInterrupt
        original(self, batch, logs)

    monkeypatch.setattr(adaptive._TrialControl, "on_train_batch_begin", fail_at_32)
    model = _sgd()
    with pytest.raises(KeyboardInterrupt):
        _run(model, callbacks=[Keep()])
    assert len(states) == 1
    assert_same_state(states[-1], model_state(model))
    assert np.isclose(float(model.optimizer.learning_rate), 0.05)
    assert _optimizer.gradient_accumulation_steps(model.optimizer) == 1


def test_a_branch_past_the_memory_limit_accumulates(monkeypatch):
    _always_up(monkeypatch)
    _verdict(monkeypatch, True)
    history = _run(_sgd(), epochs=2, max_micro_batch_size=16)
    assert history.history["batch_size"] == [16, 32]
    assert history.history["micro_batch_size"] == [16, 16]


def test_datasets_give_their_samples_to_the_branches(monkeypatch):
    _always_up(monkeypatch)
    _verdict(monkeypatch, True)
    dataset = tf.data.Dataset.from_tensor_slices((X, Y))

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.batch_size = 16

        def __len__(self):
            return N // self.batch_size

        def __getitem__(self, i):
            part = slice(i * self.batch_size, (i + 1) * self.batch_size)
            return X[part], Y[part]

    for data in (dataset, Batches()):
        keras.utils.set_random_seed(7)
        history = kbatch.fit_adaptive(_sgd(), data, batch_size=16, epochs=2,
                                      verbose=0, signal="branch",
                                      min_measurements=2)
        trial = history.params["trials"][0]
        assert trial["samples"] == N // 4
        assert history.history["batch_size"] == [16, 32]


def test_branches_need_targets():
    inputs = tf.data.Dataset.from_tensor_slices(X)
    with pytest.raises(ValueError, match="needs targets"):
        adaptive._pool(X, None)
    with pytest.raises(ValueError):
        adaptive._pool(inputs, None)


@pytest.mark.parametrize("kwargs, match", [
    ({"signal": "loss"}, "signal"),
    ({"tolerance": 1.5}, "tolerance"),
    ({"branch_samples": 0}, "branch_samples"),
])
def test_bad_branch_arguments_are_refused(kwargs, match):
    model = make_classifier(optimizer=keras.optimizers.SGD(0.05))
    before = model_state(model)
    with pytest.raises(ValueError, match=match):
        kbatch.fit_adaptive(model, X, Y, batch_size=16, epochs=1, verbose=0,
                            **kwargs)
    assert_same_state(before, model_state(model))

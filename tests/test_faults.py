"""Fault injection: an error, Ctrl-C, a NaN loss or out-of-memory at a chosen
step of every measuring entry point leaves the user's model, optimizer, learning
rate (or schedule), loss scale and dtype policy exactly as they were.

The fault comes from a `FaultAt` layer inside the model (conftest), so it fires
in the middle of the real training or measuring step, not around it.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import assert_same_state
from conftest import classification_data
from conftest import faulty_classifier
from conftest import model_state

import kbatch
from kbatch._internal import optimizer as _optimizer

X, Y = classification_data(n=128)
KINDS = ("error", "interrupt", "nan", "oom")
RAISED = {"error": RuntimeError, "interrupt": KeyboardInterrupt,
          "oom": tf.errors.ResourceExhaustedError}


def _snapshot(model):
    optimizer = model.optimizer
    scale = getattr(optimizer, "dynamic_scale", None)
    return {
        "state": model_state(model),
        "lr_object": _optimizer.learning_rate_object(optimizer),
        "lr": np.array(keras.ops.convert_to_numpy(optimizer.learning_rate)),
        "iterations": int(optimizer.iterations.numpy()),
        "loss_scale": None if scale is None else float(scale.numpy()),
        "policy": keras.config.dtype_policy().name,
        "train_function": model.train_function,
    }


def _assert_nothing_lost(before, model):
    after = _snapshot(model)
    assert_same_state(before["state"], after["state"])
    assert after["lr_object"] is before["lr_object"]
    assert after["lr"].tobytes() == before["lr"].tobytes()
    assert after["iterations"] == before["iterations"]
    assert after["loss_scale"] == before["loss_scale"]
    assert after["policy"] == before["policy"]


def _prepared_model(kind, step, policy):
    """A model trained one epoch (optimizer state non-trivial), the fault armed
    at its `step`-th training call from now on."""
    keras.config.set_dtype_policy(policy)
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-2, 10, 0.9)
    model = faulty_classifier(step=10**9, kind=kind,
                              optimizer=keras.optimizers.Adam(schedule))
    model.fit(X, Y, batch_size=16, epochs=1, verbose=0)
    fault = model.layers[1]
    fault.calls, fault.step = 0, step
    return model, fault


def _find_lr(model):
    return kbatch.find_lr(model, X, Y, batch_size=8, num_steps=20, verbose=0)


def _noise(model):
    return kbatch.measure_noise_scale(model, X, Y, batch_size=8, num_steps=10,
                                      num_micro_batches=2, seed=0, verbose=0)


def _max_batch(model):
    return kbatch.find_max_batch_size(model, X, Y, start=2, max_batch_size=64,
                                      steps_per_trial=2, verbose=0)


def _throughput(model):
    return kbatch.measure_throughput(model, X, Y, batch_sizes=[2, 4, 8, 16],
                                     num_steps=2, warmup_steps=1, verbose=0)


def _check_find_lr(kind, result, fault):
    # a NaN loss ends the sweep at that step, with or without loss scaling (a
    # non-finite *loss* is divergence, not a gradient overflow the scaler fixes)
    assert result.stop_reason == "non_finite"
    assert result.lrs.size == fault.step
    assert np.all(np.isfinite(result.losses[:-1]))


def _check_noise(kind, result, fault):
    assert result.skipped >= 1  # the NaN step is skipped, the others measured
    assert np.all(np.isfinite(result.g_sq))


def _check_max_batch(kind, result, fault):
    assert fault.calls >= fault.step  # the fault fired
    if kind == "oom":
        train = [t for t in result.trials if t["phase"] == "train"]
        assert any(t["outcome"] == "oom" for t in train)
        assert result.largest_train < 64
    else:  # a NaN loss says nothing about memory
        assert result.largest_train == 64


def _check_throughput(kind, result, fault):
    if kind == "oom":
        assert result.out_of_memory and np.isnan(result.samples_per_second[-1])
    else:
        assert np.all(np.isfinite(result.samples_per_second))


ENTRY_POINTS = {
    # name: (run, check of the returned result for "nan" / "oom", fault step,
    #        kinds that are reported in the result rather than raised)
    "find_lr": (_find_lr, _check_find_lr, 6, ("nan",)),
    "measure_noise_scale": (_noise, _check_noise, 5, ("nan",)),
    "find_max_batch_size": (_max_batch, _check_max_batch, 5, ("nan", "oom")),
    "measure_throughput": (_throughput, _check_throughput, 9, ("nan", "oom")),
}


def _cases():
    # the memory and throughput probes under float16 retrace per batch size:
    # those rows run in `make test-all`
    for entry in ENTRY_POINTS:
        for kind in KINDS:
            for policy in ("float32", "mixed_float16"):
                slow = policy != "float32" and entry in ("find_max_batch_size",
                                                         "measure_throughput")
                yield pytest.param(entry, kind, policy,
                                   marks=[pytest.mark.slow] if slow else [],
                                   id=f"{entry}-{kind}-{policy}")


@pytest.mark.parametrize("entry, kind, policy", list(_cases()))
def test_a_fault_mid_run_loses_nothing(entry, kind, policy):
    run, check, step, reported = ENTRY_POINTS[entry]
    model, fault = _prepared_model(kind, step, policy)
    before = _snapshot(model)
    if kind in reported:
        check(kind, run(model), fault)
    else:
        with pytest.raises(RAISED[kind]):
            run(model)
        assert fault.calls == step  # it stopped at the fault
    _assert_nothing_lost(before, model)
    assert model.train_function is before["train_function"] or entry != "find_lr"
    # the model still trains normally afterwards
    fault.step = 10**9
    history = model.fit(X, Y, batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def _law_builder(kind, fault_step, built):
    def build():
        model = faulty_classifier(step=fault_step, kind=kind)
        model.optimizer.build(model.trainable_variables)
        built.append((model, model_state(model)))
        return model

    return build


@pytest.mark.parametrize("kind", ["error", "interrupt"])
def test_scaling_law_propagates_errors_and_restores_the_model(kind):
    built = []
    build = _law_builder(kind, 7, built)
    keras.config.set_dtype_policy("mixed_bfloat16")
    with pytest.raises(RAISED[kind]):
        kbatch.lr_scaling_law(build, X, Y, batch_sizes=[4, 8], num_steps=20,
                              verbose=0)
    assert keras.config.dtype_policy().name == "mixed_bfloat16"
    model, initial = built[0]
    assert_same_state(initial, model_state(model))


def test_scaling_law_leaves_out_a_batch_size_that_runs_out_of_memory():
    built = []

    def build():
        size = [4, 8, 16, 32][len(built)]
        # the fault fires only in the 16-sample range test
        model = faulty_classifier(step=3 if size == 16 else 10**9, kind="oom")
        built.append(size)
        return model

    with pytest.warns(UserWarning, match=r"left out batch sizes 16 \(out of memory\), "
                                         r"32 \(not run"):
        law = kbatch.lr_scaling_law(build, X, Y, batch_sizes=[4, 8, 16, 32],
                                    num_steps=30, min_lr=1e-4, max_lr=10.0,
                                    verbose=0)
    assert built == [4, 8, 16]  # 32 was never built
    assert law.batch_sizes == [4, 8]
    assert law.left_out[16] == "out of memory"
    assert law.to_dict()["left_out"]["32"].startswith("not run")


def test_scaling_law_leaves_out_a_curve_without_a_suggestion():
    built = []

    def build():
        # NaN at the 2nd step of the 8-sample test: too short a curve
        model = faulty_classifier(step=2 if not built else 10**9, kind="nan")
        built.append(model)
        return model

    with pytest.raises(ValueError, match=r"needs a suggested LR at two or more "
                                         r"batch sizes.*got 1.*no suggestion"):
        kbatch.lr_scaling_law(build, X, Y, batch_sizes=[8, 16], num_steps=30,
                              min_lr=1e-4, max_lr=10.0, verbose=0)

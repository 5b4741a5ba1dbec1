"""`BatchLRHyperModel` on KerasTuner's tuners."""

import json
import math
import subprocess
import sys
import textwrap

import keras
import keras_tuner
import numpy as np
import pytest
import tensorflow as tf
from conftest import TWO_CPU_STRATEGY
from conftest import small_digits

import kbatch
from kbatch import tuner as ktuner
from kbatch.tuner import BatchLRHyperModel


@pytest.fixture(scope="module")
def digits():
    return small_digits()


def _build(hp, policy_log=None):
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(hp.Int("units", 16, 32, step=16), activation="relu"),
        keras.layers.Dense(10),
        keras.layers.Activation("softmax", dtype="float32"),
    ])
    if policy_log is not None:
        policy_log.append(model.layers[0].dtype_policy.name)
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _search(hypermodel, data, tmp_path, tuner_class=keras_tuner.RandomSearch,
            project="p", overwrite=True, **tuner_kwargs):
    tuner_kwargs.setdefault("max_trials", 4)
    tuner = tuner_class(hypermodel, objective="val_accuracy",
                        directory=str(tmp_path), project_name=project,
                        overwrite=overwrite, seed=7, **tuner_kwargs)
    tuner.search(data.x_train, data.y_train, validation_data=data.val, verbose=0)
    return tuner


def _count_measurements(monkeypatch):
    calls = []
    original = kbatch.lr.batch_sizes.lr_for_batch_sizes

    def counting(model, x, y=None, **kwargs):
        calls.append({"batch_sizes": list(kwargs["batch_sizes"]), "samples": len(x),
                      "epochs": kwargs["epochs"]})
        return original(model, x, y, **kwargs)

    monkeypatch.setattr(kbatch.lr.batch_sizes, "lr_for_batch_sizes", counting)
    return calls


@pytest.mark.slow  # `make test-all`: kept out of the 10-minute `make test`
def test_random_search_scales_the_lr_with_the_batch_and_records_timings(
        digits, tmp_path, monkeypatch):
    calls = _count_measurements(monkeypatch)
    hypermodel = BatchLRHyperModel(_build, batch_sizes=(16, 64, 256), epochs=2,
                                   target=("val_accuracy", 0.8))
    tuner = _search(hypermodel, digits, tmp_path, max_trials=5)
    # the best LR per batch size was measured once, for the trials' budget
    assert calls == [{"batch_sizes": [16, 64, 256], "samples": 512, "epochs": 2}]
    measured = hypermodel.anchors["measured"]
    assert measured["batch_sizes"] == [16, 64, 256]
    summary = ktuner.summarize(tuner)
    rows = summary.completed()
    assert len(rows) == 5
    assert len({r["batch_size"] for r in rows}) >= 2
    for trial in tuner.oracle.trials.values():
        hp = trial.hyperparameters
        batch = hp.get("batch_size")
        # centred on the LR measured at the trial's own batch size
        centre = measured["learning_rates"][measured["batch_sizes"].index(batch)]
        recorded = trial.metrics.get_last_value("learning_rate")
        assert recorded == pytest.approx(centre * hp.get("lr_multiplier"), rel=1e-5)
        for key in ("train_seconds", "samples_per_second", "updates",
                    "time_to_target", "epochs_to_target"):
            assert trial.metrics.exists(key), key
        assert trial.metrics.get_last_value("batch_size") == batch
    assert "best:" in summary.text()


@pytest.mark.slow  # `make test-all`: kept out of the 10-minute `make test`
def test_resumed_search_reuses_the_cached_range_tests(digits, tmp_path, monkeypatch):
    hypermodel = BatchLRHyperModel(_build, batch_sizes=(16, 64), epochs=1)
    first = _search(hypermodel, digits, tmp_path, max_trials=2)
    assert len(first.oracle.trials) == 2
    calls = _count_measurements(monkeypatch)
    again = BatchLRHyperModel(_build, batch_sizes=(16, 64), epochs=1)
    resumed = _search(again, digits, tmp_path, max_trials=4, overwrite=False)
    assert calls == []  # nothing rerun
    assert again.anchors["base_lr"] == pytest.approx(hypermodel.anchors["base_lr"])
    assert again.anchors["measured"] == hypermodel.anchors["measured"]
    ids = [t.trial_id for t in resumed.oracle.trials.values()]
    assert len(ids) == 4 and len(set(ids)) == 4


@pytest.mark.slow  # `make test-all`: kept out of the 10-minute `make test`
def test_range_tests_do_not_reset_the_searchs_random_state(digits):
    """After the range tests (seeded 0) the trials go on from the search's own
    random state: searches seeded differently must not train identically."""
    import random

    def after_range_tests(seed):
        keras.utils.set_random_seed(seed)
        hypermodel = BatchLRHyperModel(_build, batch_sizes=(16, 64), epochs=1)
        hypermodel._ensure_anchors(keras_tuner.HyperParameters(),
                                   digits.x_train[:200], digits.y_train[:200])
        return (random.random(),
                float(keras.random.uniform((), seed=None)), hypermodel.anchors)

    a, b, c = after_range_tests(1), after_range_tests(2), after_range_tests(1)
    assert a[0] != b[0] and a[1] != b[1]  # not both back at seed 0
    assert a[0] == c[0]  # but reproducible from the search's seed
    # Keras < 3.13's set_random_seed leaves keras.random's global generator
    # alone, so its seed=None draws are not reproducible there at all
    if tuple(int(p) for p in keras.__version__.split(".")[:2]) >= (3, 13):
        assert a[1] == c[1]
    assert a[2]["base_lr"] == b[2]["base_lr"]  # the anchors do not depend on it


@pytest.mark.slow  # `make test-all`: kept out of the 10-minute `make test`
def test_range_tests_leave_out_the_validation_split(digits, tmp_path, monkeypatch):
    calls = _count_measurements(monkeypatch)
    hypermodel = BatchLRHyperModel(_build, batch_sizes=(16, 64), epochs=1)
    tuner = keras_tuner.RandomSearch(hypermodel, objective="val_accuracy",
                                     max_trials=1, directory=str(tmp_path), seed=1)
    tuner.search(digits.x_train[:400], digits.y_train[:400], validation_split=0.25,
                 verbose=0)
    assert [c["samples"] for c in calls] == [300]  # 100 validation samples left out


class _OutOfMemoryAbove(keras.layers.Layer):
    def __init__(self, limit, **kwargs):
        super().__init__(**kwargs)
        self.limit = limit

    def call(self, x, training=None):
        if training and x.shape[0] is not None and x.shape[0] > self.limit:
            raise tf.errors.ResourceExhaustedError(None, None, "OOM (simulated)")
        return x


@pytest.mark.slow  # a 6-trial search; the undo test below runs on every make test
def test_a_batch_past_the_memory_limit_trains_as_accumulated_micro_batches(
        digits, tmp_path):
    def build(hp):
        model = keras.Sequential([keras.Input((64,)), _OutOfMemoryAbove(32),
                                  keras.layers.Dense(10, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy",
                      metrics=["accuracy"], run_eagerly=True)
        return model

    hypermodel = BatchLRHyperModel(build, batch_sizes=(16, 64, 128),
                                   learning_rate=(1e-3, 1e-2), lr_steps=2, epochs=1)
    tuner = keras_tuner.GridSearch(hypermodel, objective="val_accuracy",
                                   max_trials=6, directory=str(tmp_path),
                                   project_name="oom", overwrite=True)
    tuner.search(digits.x_train, digits.y_train, validation_data=digits.val,
                 verbose=0)
    trials = list(tuner.oracle.trials.values())
    assert len(trials) == 6 and all(t.status == "COMPLETED" for t in trials)
    n = len(digits.x_train)
    for trial in trials:
        values = trial.hyperparameters.values
        batch = values["batch_size"]
        micro = values.get("micro_batch_size", batch)
        # the batch drawn is the batch trained: in micro-batches below the limit
        assert micro == min(batch, 32)
        assert values.get("gradient_accumulation_steps", 1) == batch // micro
        assert trial.metrics.get_last_value("updates") == math.ceil(
            math.ceil(n / micro) / (batch // micro))
    assert hypermodel.smallest_oom == 64  # one failed try, at the first 64


def test_the_try_that_ran_out_of_memory_is_undone(digits):
    """The retry starts from the built model's weights and optimizer, not
    from the steps the failed try made before it ran out of memory."""
    class FailOnce(keras.layers.Layer):
        calls = 0

        def call(self, x, training=None):
            if training and x.shape[0] == 64:
                FailOnce.calls += 1
                if FailOnce.calls == 3:  # two steps trained, then "OOM"
                    raise tf.errors.ResourceExhaustedError(None, None, "OOM")
            return x

    def build(hp):
        model = keras.Sequential([keras.Input((64,)), FailOnce(),
                                  keras.layers.Dense(10, activation="softmax")])
        model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy",
                      run_eagerly=True)
        return model

    hypermodel = BatchLRHyperModel(build, batch_sizes=(64,),
                                   learning_rate=(0.05, 0.1), lr_steps=2, epochs=1)
    x, y = digits.x_train[:256], digits.y_train[:256]
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    initial = model.get_weights()
    hypermodel.fit(hp, model, x, y, shuffle=False, verbose=0)
    assert FailOnce.calls >= 3  # the failure happened
    assert hp.values["micro_batch_size"] == 32
    assert int(model.optimizer.iterations.numpy()) == 4  # 256 / 64, nothing more
    # the same trial without the failure: straight to 2 x 32 from the same start
    hp_again = keras_tuner.HyperParameters()
    again = hypermodel.build(hp_again)
    again.set_weights(initial)
    hypermodel.fit(hp_again, again, x, y, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_policy_is_set_per_trial_and_restored(digits, tmp_path):
    keras.config.set_dtype_policy("float32")
    seen = []
    hypermodel = BatchLRHyperModel(lambda hp: _build(hp, seen),
                                   batch_sizes=(32, 64),
                                   learning_rate=(1e-3, 1e-1), epochs=1,
                                   mixed_precision="mixed_bfloat16")
    _search(hypermodel, digits, tmp_path, max_trials=2)
    assert set(seen) == {"mixed_bfloat16"}
    assert keras.config.dtype_policy().name == "float32"


def test_float16_rounds_batch_sizes_to_multiples_of_eight():
    with pytest.warns(UserWarning, match="multiples of 8"):
        hypermodel = BatchLRHyperModel(_build, batch_sizes=(20, 30, 64),
                                       mixed_precision="mixed_float16")
    assert hypermodel.batch_sizes == [24, 32, 64]


def test_cpu_auto_policy_is_float32():
    assert ktuner.resolve_policy("auto") is None  # no GPU here


@pytest.mark.parametrize("tuner_class, kwargs", [
    (keras_tuner.BayesianOptimization, {"max_trials": 3}),
    pytest.param(keras_tuner.Hyperband,
                 {"max_epochs": 3, "factor": 3, "hyperband_iterations": 1},
                 marks=pytest.mark.slow),
])
def test_bayesian_and_hyperband_smoke(digits, tmp_path, tuner_class, kwargs):
    hypermodel = BatchLRHyperModel(_build, batch_sizes=(32, 128),
                                   learning_rate=(1e-3, 1e-1), epochs=2)
    tuner = tuner_class(hypermodel, objective="val_accuracy",
                        directory=str(tmp_path), project_name="s", overwrite=True,
                        seed=3, **kwargs)
    tuner.search(digits.x_train, digits.y_train, validation_data=digits.val,
                 verbose=0)
    done = [t for t in tuner.oracle.trials.values() if t.status == "COMPLETED"]
    assert done
    if tuner_class is keras_tuner.Hyperband:
        epochs = {t.hyperparameters.get("tuner/epochs") for t in done}
        assert max(epochs) <= 3  # the epoch budget was respected
        for t in done:
            assert t.metrics.get_history("updates")  # trained


@pytest.mark.slow
def test_grid_search_with_lr_steps(digits, tmp_path):
    hypermodel = BatchLRHyperModel(_build, batch_sizes=(32, 64),
                                   learning_rate=(1e-3, 1e-1), lr_steps=3,
                                   parametrization="independent", epochs=1)
    tuner = keras_tuner.GridSearch(hypermodel, objective="val_accuracy",
                                   max_trials=20, directory=str(tmp_path),
                                   project_name="g", overwrite=True)
    tuner.search(digits.x_train, digits.y_train, validation_data=digits.val,
                 verbose=0)
    lrs = sorted({round(t.hyperparameters.get("learning_rate"), 6)
                  for t in tuner.oracle.trials.values()})
    assert lrs == pytest.approx([1e-3, 1e-2, 1e-1])


def test_time_to_target_as_the_objective(tmp_path):
    # all of digits: the target must be reached within the two epochs
    digits = kbatch.datasets.load_digits()
    hypermodel = BatchLRHyperModel(_build, batch_sizes=(32, 128), epochs=2,
                                   learning_rate=(1e-2, 1e-1),
                                   target=("val_accuracy", 0.5))
    tuner = keras_tuner.RandomSearch(
        hypermodel, objective=keras_tuner.Objective("time_to_target", "min"),
        max_trials=2, directory=str(tmp_path), project_name="t", overwrite=True)
    tuner.search(digits.x_train, digits.y_train, validation_data=digits.val,
                 verbose=0)
    summary = ktuner.summarize(tuner)
    assert summary.objective == "time_to_target" and summary.direction == "min"
    assert summary.pareto_front()


def test_summary_pareto_front_and_plot(tmp_path):
    rows = [
        {"trial_id": str(i), "status": "COMPLETED", "batch_size": b,
         "learning_rate": 0.1, "objective": acc, "train_seconds": sec,
         "samples_per_second": 1.0, "updates": 1.0}
        for i, (b, acc, sec) in enumerate([(16, 0.95, 10.0), (64, 0.93, 4.0),
                                           (256, 0.90, 5.0), (512, 0.80, 2.0)])
    ]
    summary = ktuner.SearchSummary(rows, "val_accuracy", "max")
    assert [r["batch_size"] for r in summary.pareto_front()] == [512, 64, 16]
    assert summary.best()["batch_size"] == 16
    import matplotlib

    matplotlib.use("Agg")
    summary.plot(tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 10_000


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"batch_sizes": ()}, ValueError, r"`batch_sizes` is empty"),
    ({"batch_sizes": (32, 0)}, ValueError, r"batch_sizes\[1\].*batch_sizes\[1\]=0"),
    ({"batch_sizes": (32.0,)}, TypeError, r"batch_sizes\[0\]"),
    ({"learning_rate": (0.1, 0.01)}, ValueError, r"low < high"),
    ({"learning_rate": (-1, 0.01)}, ValueError, r"learning_rate\[0\]"),
    ({"learning_rate": 0.01}, ValueError, r"pair \(low, high\)"),
    ({"parametrization": "joint"}, ValueError, r"parametrization='joint'"),
    ({"mixed_precision": "float8"}, ValueError, r"mixed_precision='float8'"),
    ({"multiplier_range": (2, 4)}, ValueError, r"must contain 1"),
    ({"scaling_rule": "cubic"}, ValueError, r"rule='cubic'"),
    ({"target": ("val_accuracy",)}, ValueError, r"`target`"),
    ({"epochs": 0}, ValueError, r"epochs=0"),
])
def test_bad_arguments(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        BatchLRHyperModel(_build, **kwargs)


def test_build_model_must_return_a_compiled_model(tmp_path):
    def uncompiled(hp):
        return keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])

    with pytest.raises(keras_tuner.errors.FatalValueError, match="compiled"):
        keras_tuner.RandomSearch(BatchLRHyperModel(uncompiled), objective="loss",
                                 max_trials=1, directory=str(tmp_path))
    with pytest.raises(keras_tuner.errors.FatalTypeError, match=r"keras\.Model"):
        keras_tuner.RandomSearch(BatchLRHyperModel(lambda hp: "model"),
                                 objective="loss", max_trials=1,
                                 directory=str(tmp_path), project_name="b")


def test_batched_dataset_is_refused_with_how_to_fix(digits, tmp_path):
    hypermodel = BatchLRHyperModel(_build, batch_sizes=(32,),
                                   learning_rate=(1e-3, 1e-2), epochs=1)
    tuner = keras_tuner.RandomSearch(hypermodel, objective="loss", max_trials=1,
                                     directory=str(tmp_path), overwrite=True)
    batched = tf.data.Dataset.from_tensor_slices(digits.train).batch(32)
    with pytest.raises(keras_tuner.errors.FatalValueError,
                       match=r"already batched.*before `.batch\(\)`"):
        tuner.search(batched, verbose=0)


def test_unbatched_dataset_is_batched_per_trial(digits, tmp_path):
    hypermodel = BatchLRHyperModel(_build, batch_sizes=(32, 64),
                                   learning_rate=(1e-3, 1e-2), epochs=1)
    tuner = keras_tuner.RandomSearch(hypermodel, objective="loss", max_trials=2,
                                     directory=str(tmp_path), overwrite=True,
                                     seed=1)
    tuner.search(tf.data.Dataset.from_tensor_slices(digits.train), verbose=0)
    assert len(tuner.oracle.trials) == 2
    for trial in tuner.oracle.trials.values():
        batch = trial.hyperparameters.get("batch_size")
        expected = math.ceil(len(digits.x_train) / batch)
        assert trial.metrics.get_last_value("updates") == expected


_VALID_STATE = json.dumps({
    "format": "kbatch.SearchState",
    "anchors": {"base_lr": 0.05, "base_batch_size": 32, "edges": {"32": 0.4}},
    "smallest_oom": None,
})


@pytest.mark.parametrize("content", [
    json.dumps({"format": "other"}).encode(),           # foreign file
    _VALID_STATE[:40].encode(),                         # truncated
    _VALID_STATE.replace("0.05", '"fast"').encode(),    # tampered value
    _VALID_STATE.replace("0.05", "-1").encode(),        # impossible value
    _VALID_STATE.replace('"edges"', '"edgez"').encode(),  # missing key
    _VALID_STATE.replace('"edges"', '"measured": {"batch_sizes": [32], '
                         '"learning_rates": [-0.1], "epochs": 1}, "edges"'
                         ).encode(),                    # impossible measured LR
    b"\x80\x04\x95 not json at all",                  # binary (e.g. a pickle)
], ids=["foreign", "truncated", "tampered", "negative-lr", "missing-key",
        "measured-negative-lr", "binary"])
def test_corrupt_or_foreign_state_file_is_refused_and_left_alone(digits, tmp_path,
                                                                content):
    project = tmp_path / "c"
    project.mkdir()
    state_file = project / ktuner.CACHE_FILE
    state_file.write_bytes(content)
    hypermodel = BatchLRHyperModel(_build, batch_sizes=(32,), epochs=1)
    tuner = keras_tuner.RandomSearch(hypermodel, objective="loss", max_trials=1,
                                     directory=str(tmp_path), project_name="c")
    with pytest.raises(keras_tuner.errors.FatalValueError,
                       match=r"kbatch search state") as info:
        tuner.search(digits.x_train, digits.y_train, verbose=0)
    assert str(state_file) in str(info.value)
    assert state_file.read_bytes() == content  # nothing overwritten
    assert hypermodel.anchors is None
    assert not any(t.status == "COMPLETED" for t in tuner.oracle.trials.values())


_MIRRORED = TWO_CPU_STRATEGY + textwrap.dedent("""
    import keras_tuner
    from kbatch.tuner import BatchLRHyperModel
    data = kbatch.datasets.load_digits()
    def build(hp):
        m = keras.Sequential([keras.Input((64,)),
                              keras.layers.Dense(10, activation="softmax")])
        m.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
        return m
    hm = BatchLRHyperModel(build, batch_sizes=(32, 128), learning_rate=(0.01, 0.04),
                           base_batch_size=32, epochs=1, warmup=0)
    tuner = keras_tuner.RandomSearch(hm, objective="val_accuracy", max_trials=3,
                                     directory=sys.argv[1], overwrite=True,
                                     distribution_strategy=strategy, seed=2)
    tuner.search(data.x_train[:512], data.y_train[:512], validation_data=data.val,
                 verbose=0)
    out = []
    for t in tuner.oracle.trials.values():
        out.append({"status": t.status, "batch": t.hyperparameters.get("batch_size"),
                    "mult": t.hyperparameters.get("lr_multiplier"),
                    "lr": t.metrics.get_last_value("learning_rate")})
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "trials": out}))
""")


@pytest.mark.slow  # `make test-all`: kept out of the 10-minute `make test`
def test_data_parallel_trials_scale_the_lr_for_the_global_batch(tmp_path):
    proc = subprocess.run([sys.executable, "-c", _MIRRORED, str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2
    assert len(out["trials"]) == 3
    for trial in out["trials"]:
        assert trial["status"] == "COMPLETED"
        # fit's batch is global (split over the replicas): linear from 0.02 at 32
        expected = 0.02 * trial["batch"] / 32 * trial["mult"]
        assert trial["lr"] == pytest.approx(expected, rel=1e-5)


def _trials_on_disk(project):
    trials = {}
    for path in sorted(project.glob("trial_*/trial.json")):
        data = json.loads(path.read_text())
        trials[data["trial_id"]] = data
    return trials


@pytest.mark.slow  # two interpreters; the resume itself is tested fast above
def test_search_killed_mid_trial_resumes_without_losing_or_repeating_work(tmp_path):
    script = __file__.replace("test_hypermodel.py", "_killed_search.py")

    def run(mode):
        return subprocess.run([sys.executable, script, str(tmp_path), mode],
                              capture_output=True, text=True, timeout=600)

    killed = run("kill")
    assert killed.returncode == -9, killed.stderr[-2000:]  # SIGKILL, no cleanup
    on_disk = _trials_on_disk(tmp_path / "p")
    done = {i: t for i, t in on_disk.items() if t["status"] == "COMPLETED"}
    running = [i for i, t in on_disk.items() if t["status"] == "RUNNING"]
    assert len(done) == 2 and len(running) == 1  # killed inside the third trial
    state = (tmp_path / "p" / ktuner.CACHE_FILE).read_bytes()

    resumed = run("resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    report = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert report["range_tests"] == []  # the cached range tests were not rerun
    trials = {t["id"]: t for t in report["trials"]}
    ids = [t["id"] for t in report["trials"]]
    assert len(ids) == len(set(ids)) == 5  # max_trials, no id twice
    for i, old in done.items():  # finished trials kept as they were
        assert trials[i]["score"] == old["score"]
        assert trials[i]["values"] == old["hyperparameters"]["values"]
    # the interrupted trial was run again with its own hyperparameters (and
    # recorded the LR it trained at, which it had not when it was killed)
    interrupted = trials[running[0]]
    assert interrupted["status"] == "COMPLETED"
    searched = {k: v for k, v in interrupted["values"].items()
                if k not in ktuner.RECORDED}
    assert searched == on_disk[running[0]]["hyperparameters"]["values"]
    assert set(interrupted["values"]) - set(searched) >= {"learning_rate",
                                                          "warmup_steps"}
    assert all(t["status"] == "COMPLETED" for t in report["trials"])
    assert (tmp_path / "p" / ktuner.CACHE_FILE).read_bytes() == state

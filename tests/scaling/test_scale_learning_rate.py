"""`ScaleLearningRate`: the LR for the global batch, in one line."""

import copy
import json
import subprocess
import sys
import textwrap

import keras
import pytest
from conftest import TWO_CPU_STRATEGY
from conftest import classification_data
from conftest import make_classifier

import kbatch
from kbatch._internal import optimizer as _optimizer


def _lr(model):
    return _optimizer.current_learning_rate(model.optimizer)


def test_linear_rule_for_sgd_is_applied_and_logged(capsys):
    x, y = classification_data(n=256)
    model = make_classifier(optimizer=keras.optimizers.SGD(0.5))
    scale = kbatch.ScaleLearningRate(0.01, base_batch_size=16, batch_size=64)
    history = model.fit(x, y, batch_size=64, epochs=2, callbacks=[scale], verbose=0)
    assert scale.schedule.learning_rate == pytest.approx(0.04)
    assert _lr(model) == pytest.approx(0.04)
    assert history.history["learning_rate"] == pytest.approx([0.04, 0.04])
    out = capsys.readouterr().out
    assert "global batch 64" in out and "'linear' rule (the usual rule for SGD)" in out


def test_verbose_output_follows_keras_interactive_logging_switch(capsys, caplog):
    """Like Keras' own: standard output in a notebook or terminal, the `kbatch`
    logger once `keras.config.disable_interactive_logging()` was called."""
    x, y = classification_data(n=64)
    model = make_classifier(optimizer=keras.optimizers.SGD(0.5))
    scale = kbatch.ScaleLearningRate(0.01, base_batch_size=16, batch_size=64)
    keras.config.disable_interactive_logging()
    try:
        with caplog.at_level("INFO", logger="kbatch"):
            model.fit(x, y, batch_size=64, epochs=1, callbacks=[scale], verbose=0)
    finally:
        keras.config.enable_interactive_logging()
    assert "global batch 64" not in capsys.readouterr().out
    assert [r.name for r in caplog.records if "global batch 64" in r.message] == [
        "kbatch"]


def test_sqrt_rule_for_adam_with_warmup_in_epochs():
    x, y = classification_data(n=256)
    model = make_classifier(optimizer=keras.optimizers.Adam())
    scale = kbatch.ScaleLearningRate(1e-3, base_batch_size=16, batch_size=64,
                                     warmup_epochs=2, verbose=0)
    model.fit(x, y, batch_size=64, epochs=3, callbacks=[scale], verbose=0)
    assert scale.schedule.rule == "sqrt"
    assert scale.schedule.learning_rate == pytest.approx(2e-3)
    assert scale.schedule.warmup_steps == 8  # 2 epochs x 4 steps
    assert _lr(model) == pytest.approx(2e-3)


def test_gradient_accumulation_counts_in_the_global_batch():
    x, y = classification_data(n=256)
    optimizer = keras.optimizers.SGD(0.1, gradient_accumulation_steps=4)
    model = make_classifier(optimizer=optimizer)
    scale = kbatch.ScaleLearningRate(0.01, base_batch_size=16, batch_size=16,
                                     verbose=0)
    model.fit(x, y, batch_size=16, epochs=1, callbacks=[scale], verbose=0)
    assert scale.schedule.batch_size == 64  # 16 x 4 micro-batches
    assert scale.schedule.learning_rate == pytest.approx(0.04)
    assert "4 accumulated micro-batches" in scale.explanation


def test_a_wrong_batch_size_is_caught_after_the_first_step():
    x, y = classification_data(n=256)
    model = make_classifier(optimizer=keras.optimizers.SGD(0.1))
    scale = kbatch.ScaleLearningRate(0.01, base_batch_size=16, batch_size=128,
                                     verbose=0)
    with pytest.warns(UserWarning, match=r"told the batch size is 128.*averaged 32"):
        model.fit(x, y, batch_size=32, epochs=1, callbacks=[scale], verbose=0)


def test_deep_copyable_and_reusable():
    scale = kbatch.ScaleLearningRate(0.01, base_batch_size=16, batch_size=32,
                                     verbose=0)
    x, y = classification_data(n=64)
    model = make_classifier(optimizer=keras.optimizers.SGD(0.1))
    for _ in range(2):
        model.fit(x, y, batch_size=32, callbacks=[copy.deepcopy(scale)], verbose=0)
    assert _lr(model) == pytest.approx(0.02)


def test_the_config_rebuilds_the_callback_with_its_after_schedule_and_relation():
    after = keras.optimizers.schedules.CosineDecay(0.01, decay_steps=100)
    scale = kbatch.ScaleLearningRate(0.01, base_batch_size=16, batch_size=64,
                                     warmup_steps=3, after=after, verbose=0)
    config = json.loads(json.dumps(scale.get_config()))  # JSON-ready
    again = kbatch.ScaleLearningRate(**config)
    assert isinstance(again.after, keras.optimizers.schedules.CosineDecay)
    assert again.after.get_config() == after.get_config()
    assert again.get_config() == config
    measured = kbatch.LRByBatchSize([16, 64], [0.01, 0.03], epochs=2)
    scale = kbatch.ScaleLearningRate.from_measured(measured, batch_size=32)
    again = kbatch.ScaleLearningRate(**json.loads(json.dumps(scale.get_config())))
    assert again.rule.predict(32) == pytest.approx(measured.predict(32))
    assert again.get_config() == scale.get_config()


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({}, ValueError, r"exactly one of `batch_size` and `per_replica_batch_size`"),
    ({"batch_size": 32, "per_replica_batch_size": 16}, ValueError, r"exactly one"),
    ({"batch_size": 0}, ValueError, r"batch_size=0"),
    ({"batch_size": 32, "rule": "cubic"}, ValueError, r"rule='cubic'"),
    ({"batch_size": 32, "warmup_steps": 5, "warmup_epochs": 1}, ValueError,
     r"not both"),
    ({"batch_size": 32, "warmup_steps": -1}, ValueError, r"warmup_steps=-1"),
])
def test_bad_arguments(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        kbatch.ScaleLearningRate(0.01, base_batch_size=16, **kwargs)


_MIRRORED = TWO_CPU_STRATEGY + textwrap.dedent("""
    from kbatch._internal import optimizer as _optimizer
    x = np.random.default_rng(0).normal(size=(256, 8)).astype("float32")
    y = (x.sum(axis=1) > 0).astype("int32")
    out = {"replicas": strategy.num_replicas_in_sync}
    for key, kwargs in (("fit_batch", {"batch_size": 64}),
                        ("per_replica", {"per_replica_batch_size": 32})):
        with strategy.scope():
            model = keras.Sequential([keras.Input((8,)),
                                      keras.layers.Dense(2, activation="softmax")])
            model.compile(keras.optimizers.SGD(0.1),
                          "sparse_categorical_crossentropy")
        scale = kbatch.ScaleLearningRate(0.01, base_batch_size=16, verbose=0,
                                         **kwargs)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(x, y, batch_size=64, epochs=1, callbacks=[scale], verbose=0)
        out[key] = {
            "global": scale.schedule.batch_size,
            "lr": _optimizer.current_learning_rate(model.optimizer),
            "explanation": scale.explanation,
            "warnings": [str(w.message) for w in caught
                         if "ScaleLearningRate" in str(w.message)],
        }
    print(json.dumps(out))
""")


def test_global_batch_under_mirrored_strategy_on_two_logical_cpus():
    # A fresh process: logical devices must be set before TensorFlow starts.
    proc = subprocess.run([sys.executable, "-c", _MIRRORED], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2
    for key in ("fit_batch", "per_replica"):
        # fit(batch_size=64) is global in Keras 3: 32 per replica x 2 replicas
        assert out[key]["global"] == 64
        assert out[key]["lr"] == pytest.approx(0.04)
        assert "split over 2 replicas of MirroredStrategy" in out[key]["explanation"]
        assert out[key]["warnings"] == []  # the first step averaged 64 samples


def test_works_through_a_loss_scale_optimizer():
    keras.config.set_dtype_policy("mixed_float16")
    x, y = classification_data(n=128)
    model = make_classifier(optimizer=keras.optimizers.SGD(0.5))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    scale = kbatch.ScaleLearningRate(0.01, base_batch_size=16, batch_size=32,
                                     verbose=0)
    model.fit(x, y, batch_size=32, epochs=1, callbacks=[scale], verbose=0)
    assert _lr(model) == pytest.approx(0.02)
    inner = model.optimizer.inner_optimizer
    assert _optimizer.learning_rate_object(inner) is scale.schedule

"""Mixed precision: the policy chooser, the context manager, model checks, and
what loss scaling does (all on CPU: both 16-bit policies run here)."""

import keras
import numpy as np
import pytest
from conftest import assert_same_state
from conftest import classification_data
from conftest import make_classifier
from conftest import model_state

import kbatch
from kbatch import precision


@pytest.mark.parametrize("kind, capability, prefer, force, expected", [
    ("gpu", (7, 0), "auto", False, "mixed_float16"),   # V100: tensor cores
    ("gpu", (8, 0), "auto", False, "mixed_float16"),
    ("gpu", (8, 0), "bfloat16", False, "mixed_bfloat16"),  # A100 does bf16
    ("gpu", (7, 5), "bfloat16", False, "mixed_float16"),   # T4 does not
    ("gpu", (6, 1), "auto", False, "float32"),         # no tensor cores
    ("gpu", (6, 1), "auto", True, "mixed_float16"),
    ("gpu", None, "auto", False, "float32"),
    ("tpu", None, "auto", False, "mixed_bfloat16"),
    ("cpu", None, "auto", False, "float32"),
    ("cpu", None, "auto", True, "mixed_bfloat16"),
    ("cpu", None, "float16", True, "mixed_float16"),
])
def test_policy_for_device(kind, capability, prefer, force, expected):
    assert precision.policy_for_device(kind, capability, prefer, force) == expected


def test_auto_policy_on_this_machine_is_float32_on_cpu():
    facts = kbatch._internal.backend.device_facts()
    expected = "float32" if facts["kind"] == "cpu" else None
    if expected is None:
        pytest.skip("an accelerator is present")  # the table above covers it
    assert precision.auto_policy() == "float32"
    assert precision.auto_policy(force=True) == "mixed_bfloat16"


def test_context_manager_restores_the_previous_policy_also_on_error():
    keras.config.set_dtype_policy("mixed_float16")
    with precision.dtype_policy("mixed_bfloat16"):
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == "mixed_float16"
    with pytest.raises(RuntimeError), precision.dtype_policy("float32"):
        raise RuntimeError
    assert keras.config.dtype_policy().name == "mixed_float16"
    with pytest.raises(ValueError, match=r"`name`.*'float8'"):
        with precision.dtype_policy("float8"):
            pass
    assert keras.config.dtype_policy().name == "mixed_float16"


def _mixed_model(units=16, float32_output=True):
    layers = [keras.Input((8,)), keras.layers.Dense(units, activation="relu"),
              keras.layers.Dense(3)]
    layers.append(keras.layers.Activation(
        "softmax", dtype="float32" if float32_output else None))
    model = keras.Sequential(layers)
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model


def test_check_model_finds_each_mistake_with_its_fix():
    keras.config.set_dtype_policy("mixed_float16")
    model = _mixed_model()  # only the 3-class output layer is narrow
    assert precision.check_model(model, batch_size=64, warn=False) == [
        "Under mixed_float16, layer widths should be multiples of 8 for tensor "
        f"cores; not: {model.layers[1].name} (3)."]
    findings = precision.check_model(_mixed_model(units=12, float32_output=False),
                                     batch_size=30, warn=False)
    text = " ".join(findings)
    assert "output is float16" in text and "dtype='float32'" in text
    assert "(12)" in text and "batch_size=30. Try 32" in text
    assert len(findings) == 3
    with pytest.warns(precision.PrecisionWarning, match="batch_size=30"):
        precision.check_model(_mixed_model(units=16), batch_size=30)


def test_check_model_flags_float16_without_loss_scaling():
    keras.config.set_dtype_policy("mixed_float16")
    model = _mixed_model(units=16)
    model.compile("sgd", "sparse_categorical_crossentropy", auto_scale_loss=False)
    findings = precision.check_model(model, warn=False)
    assert any("no loss scaling" in f for f in findings)


def test_check_model_is_silent_for_float32_and_clean_bfloat16():
    assert precision.check_model(_mixed_model(units=12), batch_size=30) == []
    keras.config.set_dtype_policy("mixed_bfloat16")
    # widths and batch sizes do not matter for bfloat16
    assert precision.check_model(_mixed_model(units=12), batch_size=30) == []


def _tiny_loss(y_true, y_pred):
    # gradients of 1e-9 / batch reach the float16 layers: below float16's
    # smallest subnormal (6e-8), so they round to zero without loss scaling
    return 1e-9 * keras.ops.mean(y_pred)


@pytest.mark.parametrize("scaled", [False, True])
def test_float16_gradients_underflow_without_loss_scaling(scaled):
    keras.config.set_dtype_policy("mixed_float16")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8),
                              keras.layers.Activation("linear", dtype="float32")])
    model.compile(keras.optimizers.SGD(1e6), _tiny_loss, auto_scale_loss=scaled)
    x = np.ones((16, 8), "float32")
    before = model.layers[0].kernel.numpy().copy()
    model.train_on_batch(x, np.zeros((16, 8), "float32"))
    changed = not np.array_equal(before, model.layers[0].kernel.numpy())
    assert changed is scaled


def test_loss_scale_halves_on_inf_grows_after_clean_steps_and_find_lr_keeps_it():
    keras.config.set_dtype_policy("mixed_float16")
    x, y = classification_data(n=128)
    optimizer = keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(0.01), initial_scale=2.0**10, dynamic_growth_steps=3)
    model = make_classifier(optimizer=optimizer)
    model.fit(x[:32], y[:32], batch_size=32, verbose=0)
    start = float(optimizer.dynamic_scale.numpy())
    bad = x[:32].copy()
    bad[0, 0] = np.inf  # inf activations -> non-finite gradients
    model.train_on_batch(bad, y[:32])
    assert float(optimizer.dynamic_scale.numpy()) == start / 2
    for _ in range(3):  # dynamic_growth_steps clean steps double it
        model.train_on_batch(x[:32], y[:32])
    assert float(optimizer.dynamic_scale.numpy()) == start
    before = model_state(model)
    kbatch.find_lr(model, x, y, batch_size=16, num_steps=30, max_lr=1e3, verbose=0)
    assert float(optimizer.dynamic_scale.numpy()) == start
    assert_same_state(before, model_state(model))


def _digits_accuracy(policy, seed):
    data = kbatch.datasets.load_digits()
    with precision.dtype_policy(policy):
        keras.utils.set_random_seed(seed)
        model = kbatch.models.build("mlp", data, optimizer="adam",
                                    learning_rate=3e-3)
        model.fit(data.x_train, data.y_train, batch_size=64, epochs=15, verbose=0)
        return model.evaluate(data.x_test, data.y_test, verbose=0,
                              return_dict=True)["accuracy"]


@pytest.mark.slow  # a quality check: two full trainings
def test_bfloat16_trains_digits_within_one_point_of_float32():
    seeds = (1, 2)
    f32 = np.mean([_digits_accuracy("float32", s) for s in seeds])
    bf16 = np.mean([_digits_accuracy("mixed_bfloat16", s) for s in seeds])
    assert f32 > 0.9
    assert abs(bf16 - f32) <= 0.01, (f32, bf16)


ENTRY_POINTS = {
    "find_lr": lambda m, x, y: kbatch.find_lr(m, x, y, batch_size=16,
                                              num_steps=10, verbose=0),
    "measure_noise_scale": lambda m, x, y: kbatch.measure_noise_scale(
        m, x, y, batch_size=16, num_steps=3, verbose=0),
    "find_max_batch_size": lambda m, x, y: kbatch.find_max_batch_size(
        m, x, y, start=8, max_batch_size=16, steps_per_trial=1, verbose=0),
    "measure_throughput": lambda m, x, y: kbatch.measure_throughput(
        m, x, y, batch_sizes=[8, 16], num_steps=2, warmup_steps=1, verbose=0),
    "lr_scaling_law": lambda m, x, y: kbatch.lr_scaling_law(
        make_classifier, x, y, batch_sizes=[8, 16], num_steps=20, verbose=0),
    "fit_with_batch_schedule": lambda m, x, y: kbatch.fit_with_batch_schedule(
        m, x, y, schedule=kbatch.BatchSizeSchedule(16, [1]), epochs=2, verbose=0),
}


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_every_entry_point_leaves_the_policy_as_it_was(entry, policy):
    x, y = classification_data(n=128)
    keras.config.set_dtype_policy(policy)
    model = make_classifier(optimizer=keras.optimizers.SGD(0.01))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ENTRY_POINTS[entry](model, x, y)
    assert keras.config.dtype_policy().name == policy
    # and on error: the data turn out to be bad half-way (a generator fails)
    keras.config.set_dtype_policy(policy)
    with pytest.raises(Exception):  # noqa: B017 (each entry point, its own type)
        ENTRY_POINTS[entry](model, x[:, :3], y)
    assert keras.config.dtype_policy().name == policy

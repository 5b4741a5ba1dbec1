"""The default scaling rule of each optimizer (needs Keras)."""

import keras
import pytest

import kbatch


@pytest.mark.parametrize("optimizer, rule", [
    (keras.optimizers.SGD(0.1), "linear"),
    (keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True), "linear"),
    (keras.optimizers.Adam(), "sqrt"),
    (keras.optimizers.AdamW(), "sqrt"),
    (keras.optimizers.RMSprop(), "sqrt"),
    (keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD()), "linear"),
    ("sgd", "linear"),
    ("adam", "sqrt"),
])
def test_default_rule(optimizer, rule):
    assert kbatch.default_rule(optimizer) == rule


def test_default_rule_names_a_bad_optimizer():
    with pytest.raises(TypeError, match=r"optimizer=42"):
        kbatch.default_rule(42)


def test_scale_adam_gives_keyword_arguments_keras_adam_accepts():
    d = kbatch.scale_adam(1e-3, 0.9, 0.999, 1e-8, from_batch=256, to_batch=1024)
    optimizer = keras.optimizers.Adam(**d)
    assert float(optimizer.beta_1) == pytest.approx(0.6)

"""`ScaleLearningRate` with a measured relation instead of a fixed rule."""

import keras
import numpy as np
import pytest
from conftest import classification_data
from conftest import make_classifier

import kbatch
from kbatch.lr import LRByBatchSize

MEASURED = LRByBatchSize([16, 64, 256], [0.01, 0.05, 0.08], epochs=3)


@pytest.mark.parametrize("batch_size, expected", [
    (64, 0.05),                      # measured
    (32, 0.01 * 5 ** 0.5),           # log-log between 16 and 64
    (128, 0.05 * (0.08 / 0.05) ** 0.5),
])
def test_the_run_trains_at_the_measured_lr_of_its_batch_size(batch_size, expected):
    x, y = classification_data(n=256)
    model = make_classifier(optimizer=keras.optimizers.SGD(0.001))
    scale = kbatch.ScaleLearningRate.from_measured(MEASURED, batch_size=batch_size,
                                                   verbose=0)
    model.fit(x, y, batch_size=batch_size, epochs=1, callbacks=[scale], verbose=0)
    lr = float(model.optimizer.learning_rate)
    assert lr == pytest.approx(expected, rel=1e-5)
    assert "measured" in scale.explanation and "B^" in scale.explanation


def test_warm_up_starts_from_the_smallest_measured_size():
    scale = kbatch.ScaleLearningRate.from_measured(MEASURED, batch_size=256,
                                                   warmup_steps=10, verbose=0)
    x, y = classification_data(n=512)
    model = make_classifier(optimizer=keras.optimizers.SGD(0.001))
    model.fit(x, y, batch_size=256, epochs=1, callbacks=[scale], verbose=0)
    schedule = scale.schedule
    assert float(schedule(0)) == pytest.approx(0.01)
    assert float(schedule(10)) == pytest.approx(0.08)
    assert float(schedule(5)) == pytest.approx(0.045)


def test_a_measured_relation_survives_saving_the_model(tmp_path):
    x, y = classification_data(n=128)
    model = make_classifier(optimizer=keras.optimizers.SGD(0.001))
    scale = kbatch.ScaleLearningRate.from_measured(MEASURED, batch_size=64,
                                                   verbose=0)
    model.fit(x, y, batch_size=64, epochs=1, callbacks=[scale], verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.saving.load_model(path)
    assert float(again.optimizer.learning_rate) == pytest.approx(0.05, rel=1e-5)
    np.testing.assert_allclose(again.predict(x[:4], verbose=0),
                               model.predict(x[:4], verbose=0), rtol=1e-6)


def test_anything_else_is_refused_with_its_type():
    with pytest.raises(TypeError, match="lr_for_batch_sizes"):
        kbatch.ScaleLearningRate.from_measured({"16": 0.01}, batch_size=16)

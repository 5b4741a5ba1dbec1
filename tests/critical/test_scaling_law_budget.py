"""`lr_scaling_law(..., epochs=...)`: the relation of the trained optimum."""

import keras
import pytest
from conftest import classification_data
from conftest import make_classifier

import kbatch


def _build():
    return make_classifier(optimizer=keras.optimizers.SGD(0.01))


def test_with_a_budget_it_measures_the_trained_optimum(monkeypatch):
    seen = {}
    original = kbatch.lr.batch_sizes.lr_for_batch_sizes

    def spy(model, x, y=None, **kwargs):
        seen.update(kwargs)
        return original(model, x, y, **kwargs)

    monkeypatch.setattr(kbatch.lr.batch_sizes, "lr_for_batch_sizes", spy)
    x, y = classification_data(n=400)
    law = kbatch.lr_scaling_law(_build, x, y, batch_sizes=[16, 64], epochs=2,
                                verbose=0)
    assert isinstance(law, kbatch.LRByBatchSize)
    assert seen["batch_sizes"] == [16, 64] and seen["epochs"] == 2
    assert law.batch_sizes == [16, 64] and law.exponent is not None
    assert "for 2 epochs" in law.verdict()


def test_range_test_arguments_are_refused_with_a_budget():
    x, y = classification_data(n=200)
    with pytest.raises(TypeError, match="min_lr"):
        kbatch.lr_scaling_law(_build, x, y, batch_sizes=[16, 64], epochs=1,
                              min_lr=1e-5)
    with pytest.raises(ValueError, match="epochs"):
        kbatch.lr_scaling_law(_build, x, y, batch_sizes=[16, 64], epochs=0)

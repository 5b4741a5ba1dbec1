"""Bad input is refused with a clear error, before anything touches the model."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import assert_same_state
from conftest import classification_data
from conftest import make_classifier
from conftest import model_state

import kbatch

X, Y = classification_data(n=64)


def _batched():
    return tf.data.Dataset.from_tensor_slices((X, Y)).batch(16)


class _Empty(keras.utils.PyDataset):
    def __init__(self):
        super().__init__()

    def __len__(self):
        return 0

    def __getitem__(self, i):
        raise IndexError(i)


def _empty_generator():
    return iter(())


CASES = [
    # (id, kwargs for find_lr (x, y default to X, Y), error type, message pattern)
    ("min_lr zero", {"min_lr": 0.0}, ValueError, r"`min_lr`.*Received: min_lr=0"),
    ("min_lr negative", {"min_lr": -1e-3}, ValueError, r"min_lr=-0.001"),
    ("min_lr string", {"min_lr": "small"}, TypeError, r"`min_lr`.*'small'"),
    ("max_lr below min_lr", {"min_lr": 0.1, "max_lr": 0.01}, ValueError,
     r"`max_lr` must be greater than `min_lr`.*min_lr=0.1, max_lr=0.01"),
    ("max_lr equal min_lr", {"min_lr": 0.1, "max_lr": 0.1}, ValueError,
     r"max_lr=0.1"),
    ("max_lr inf", {"max_lr": float("inf")}, ValueError, r"`max_lr` must be finite"),
    ("num_steps one", {"num_steps": 1}, ValueError, r"`num_steps`.*>= 2.*num_steps=1"),
    ("num_steps float", {"num_steps": 50.0}, TypeError,
     r"`num_steps` must be an integer.*50.0.*Pass 50"),
    ("num_steps bool", {"num_steps": True}, TypeError, r"num_steps=True"),
    ("unknown mode", {"mode": "cosine"}, ValueError,
     r"`mode` must be one of \('exponential', 'linear'\).*mode='cosine'"),
    ("smoothing one", {"smoothing": 1.0}, ValueError, r"`smoothing` must be < 1"),
    ("smoothing negative", {"smoothing": -0.1}, ValueError, r"smoothing=-0.1"),
    ("diverge_threshold one", {"diverge_threshold": 1.0}, ValueError,
     r"`diverge_threshold` must be > 1.*diverge_threshold=1"),
    ("verbose bad", {"verbose": 3}, ValueError, r"`verbose`.*verbose=3"),
    ("batch_size zero", {"batch_size": 0}, ValueError, r"`batch_size`.*batch_size=0"),
    ("batch_size float", {"batch_size": 32.5}, TypeError, r"batch_size=32.5"),
    ("batch_size above samples", {"batch_size": 65}, ValueError,
     r"must not exceed the number of samples \(64\).*batch_size=65"),
    ("empty arrays", {"x": X[:0], "y": Y[:0]}, ValueError, r"`x` is empty"),
    ("x/y length mismatch", {"y": Y[:50]}, ValueError,
     r"same number of samples.*x with 64 samples, y with 50"),
    ("batch_size with batched dataset", {"x": "batched", "y": None, "batch_size": 8},
     ValueError, r"already batched.*batch_size=8"),
    ("unbatched dataset without batch_size", {"x": "unbatched", "y": None},
     ValueError, r"not batched.*`batch_size` is required"),
    ("empty dataset", {"x": "empty_dataset", "y": None}, ValueError,
     r"empty tf.data.Dataset"),
    ("y with dataset", {"x": "batched"}, ValueError, r"`y` must be None"),
    ("empty PyDataset", {"x": "empty_pydataset", "y": None}, ValueError,
     r"empty PyDataset"),
    ("batch_size with PyDataset", {"x": "empty_pydataset", "y": None,
                                    "batch_size": 4}, ValueError,
     r"`batch_size` cannot be used with a `PyDataset`"),
    ("empty generator", {"x": "empty_generator", "y": None}, ValueError,
     r"empty generator"),
    ("seed negative", {"seed": -1}, ValueError, r"seed=-1"),
    ("validation_data wrong type", {"validation_data": "val"}, TypeError,
     r"`validation_data` must be a tuple"),
    ("validation_data mismatched", {"validation_data": (X, Y[:10])}, ValueError,
     r"`validation_data`.*64 inputs and 10 targets"),
]


def _resolve(kwargs):
    kwargs = dict(kwargs)
    x = kwargs.pop("x", X)
    y = kwargs.pop("y", Y)
    if isinstance(x, str):
        x = {
            "batched": _batched,
            "unbatched": lambda: tf.data.Dataset.from_tensor_slices((X, Y)),
            "empty_dataset": lambda: _batched().take(0),
            "empty_pydataset": _Empty,
            "empty_generator": _empty_generator,
        }[x]()
    return x, y, kwargs


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_and_the_model_is_untouched(case):
    _, kwargs, error, pattern = case
    model = make_classifier()
    model.fit(X, Y, epochs=1, verbose=0)
    before = model_state(model)
    x, y, kwargs = _resolve(kwargs)
    with pytest.raises(error, match=pattern):
        kbatch.find_lr(model, x, y, **kwargs)
    assert_same_state(before, model_state(model))


def test_uncompiled_model_is_refused():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match=r"not compiled.*model.compile"):
        kbatch.find_lr(model, X, Y)


def test_something_that_is_not_a_model_is_refused():
    with pytest.raises(TypeError, match=r"needs a `keras.Model`.*str"):
        kbatch.find_lr("model.keras", X, Y)


def test_model_without_trainable_weights_is_refused():
    model = make_classifier()
    model.trainable = False
    model.compile("adam", "sparse_categorical_crossentropy")
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=r"no trainable weights"):
        kbatch.find_lr(model, X, Y)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_callback_refuses_bad_arguments_at_construction():
    with pytest.raises(ValueError, match=r"max_lr"):
        kbatch.LRRangeTest(min_lr=1.0, max_lr=0.5)
    with pytest.raises(ValueError, match=r"mode='triangular'"):
        kbatch.LRRangeTest(mode="triangular")


def test_unknown_suggestion_method_is_refused():
    result = kbatch.LRFinderResult(np.logspace(-4, 0, 10), np.linspace(2, 1, 10))
    with pytest.raises(ValueError, match=r"`method` must be one of.*method='best'"):
        result.suggestion("best")

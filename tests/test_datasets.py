import random
import sys

import numpy as np
import pytest

from kbatch import datasets


def test_mnist1d_is_generated_locally_with_the_reference_sizes(tmp_path, monkeypatch):
    monkeypatch.setenv("KBATCH_CACHE_DIR", str(tmp_path))
    data = datasets.load_mnist1d()
    assert data.x_train.shape == (3600, 40) and data.x_val.shape == (400, 40)
    assert data.x_test.shape == (1000, 40)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int32
    assert set(np.unique(data.y_train)) == set(range(10))
    assert data.num_classes == 10 and data.input_shape == (40,)
    # cached as .npz and read back identically
    assert list(tmp_path.glob("mnist1d-*.npz"))
    again = datasets.load_mnist1d()
    np.testing.assert_array_equal(again.x_train, data.x_train)


def test_mnist1d_leaves_the_global_random_generators_as_they_were(tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("KBATCH_CACHE_DIR", str(tmp_path))
    np.random.seed(123)  # noqa: NPY002
    random.seed(123)
    expected_np = np.random.rand(3)  # noqa: NPY002
    expected_py = random.random()
    np.random.seed(123)  # noqa: NPY002
    random.seed(123)
    datasets.load_mnist1d(num_samples=200, cache=False)
    np.testing.assert_array_equal(np.random.rand(3), expected_np)  # noqa: NPY002
    assert random.random() == expected_py


def test_digits_splits_are_disjoint_and_scaled():
    data = datasets.load_digits()
    total = len(data.x_train) + len(data.x_val) + len(data.x_test)
    assert total == 1797
    assert data.x_train.dtype == np.float32
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    rows = {r.tobytes() for r in data.x_test}
    assert not any(r.tobytes() in rows for r in data.x_val[:50])


def test_a_missing_package_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setenv("KBATCH_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(sys.modules, "mnist1d", None)
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(ImportError, match=r"kbatch\[examples\]"):
        datasets.load_mnist1d(cache=False)
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"kbatch\[examples\]"):
        datasets.load_digits()


@pytest.mark.parametrize("kwargs, pattern", [
    ({"validation_fraction": 1.0}, "validation_fraction"),
    ({"num_samples": 5}, "num_samples"),
    ({"seed": -1}, "seed"),
])
def test_bad_arguments_are_refused(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        datasets.load_mnist1d(**kwargs)


def test_load_by_name_refuses_unknown_names():
    with pytest.raises(ValueError, match="name='mnist'"):
        datasets.load("mnist")

"""Every example in a public docstring runs (doctest)."""

import doctest
import importlib

import pytest

MODULES = [
    "kbatch.suggest",
    "kbatch.lr_finder",
    "kbatch.lr_finder_result",
    "kbatch.finder",
    "kbatch.datasets",
    "kbatch.scaling",
    "kbatch.schedules",
    "kbatch.scale_callback",
    "kbatch.batch_schedule",
    "kbatch.layers",
    "kbatch.noise",
    "kbatch.noise_scale",
    "kbatch.throughput",
    "kbatch.scaling_law",
    "kbatch.advisor",
    "kbatch.precision",
    "kbatch.memory",
    "kbatch.models",
    "kbatch.tuner",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS
                             | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0
    assert result.attempted > 0

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
    "kbatch.pattern_search",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS
                             | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0
    assert result.attempted > 0


def _public_names():
    import inspect

    import kbatch

    names = []
    for name in kbatch.__all__:
        obj = getattr(kbatch, name)
        if not inspect.ismodule(obj) and not name.startswith("__"):
            names.append((f"kbatch.{name}", obj))
    for module_name in ("tuner", "precision", "schedules", "layers", "datasets",
                        "models", "suggest", "noise"):
        module = getattr(kbatch, module_name)
        for name in getattr(module, "__all__", dir(module)):
            obj = getattr(module, name)
            if (not name.startswith("_")
                    and (inspect.isfunction(obj) or inspect.isclass(obj))
                    and obj.__module__ == module.__name__):
                names.append((f"kbatch.{module_name}.{name}", obj))
    return names


def test_every_public_name_has_an_example_that_is_doctested():
    import inspect

    missing = [name for name, obj in _public_names()
               if ">>>" not in (inspect.getdoc(obj) or "")]
    assert not missing, f"public names without a runnable example: {missing}"
    untested = sorted({obj.__module__ for _, obj in _public_names()} - set(MODULES))
    assert not untested, f"modules whose examples no test runs: {untested}"

"""Every example in a public docstring runs (doctest)."""

import doctest
import importlib

import pytest

MODULES = [
    "kbatch.lr.rules",
    "kbatch.lr.range_test",
    "kbatch.lr.result",
    "kbatch.lr.find",
    "kbatch.lr.batch_sizes",
    "kbatch.lr.probes",
    "kbatch.datasets",
    "kbatch.scaling.rules",
    "kbatch.scaling.optimizer_rule",
    "kbatch.scaling.schedules",
    "kbatch.scaling.scale_learning_rate",
    "kbatch.scaling.batch_size_schedule",
    "kbatch.scaling.adaptive",
    "kbatch.scaling.adaptive_rule",
    "kbatch.scaling.ghost_batch_norm",
    "kbatch.critical.estimators",
    "kbatch.critical.fits",
    "kbatch.critical.noise_scale",
    "kbatch.critical.throughput",
    "kbatch.critical.scaling_law",
    "kbatch.critical.largest_batch",
    "kbatch.advisor.advice",
    "kbatch.advisor.time_to_target",
    "kbatch.precision",
    "kbatch.models",
    "kbatch.tuner.hypermodel",
    "kbatch.tuner.pattern_search",
    "kbatch.tuner.recorder",
    "kbatch.tuner.search_state",
    "kbatch.tuner.errors",
    "kbatch.tuner.summary",
]
# Examples that run a whole search: `make test-all` (kept out of the
# 10-minute `make test`; the tuner's tests cover the same calls)
SLOW = {"kbatch.tuner.hypermodel", "kbatch.tuner.pattern_search"}


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name
    for name in MODULES])
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS
                             | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0
    assert result.attempted > 0


PUBLIC_MODULES = [*MODULES, "kbatch.lr", "kbatch.scaling", "kbatch.critical",
                  "kbatch.advisor", "kbatch.tuner"]


def _public_names():
    import inspect

    import kbatch

    names = []
    for name in kbatch.__all__:
        obj = getattr(kbatch, name)
        if not inspect.ismodule(obj) and not name.startswith("__"):
            names.append((f"kbatch.{name}", obj))
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if (not name.startswith("_")
                    and (inspect.isfunction(obj) or inspect.isclass(obj))
                    and obj.__module__ == module.__name__):
                names.append((f"{module_name}.{name}", obj))
    return names


def test_every_public_name_has_an_example_that_is_doctested():
    import inspect

    missing = [name for name, obj in _public_names()
               if ">>>" not in (inspect.getdoc(obj) or "")]
    assert not missing, f"public names without a runnable example: {missing}"
    untested = sorted({obj.__module__ for _, obj in _public_names()} - set(MODULES))
    assert not untested, f"modules whose examples no test runs: {untested}"

"""kbatch's Keras-serializable classes, registered as soon as Keras is loaded.

`import kbatch` imports its subpackages on first use, so that the `kbatch`
command starts without loading TensorFlow. The classes decorated with
`keras.saving.register_keras_serializable(package="kbatch")` (the LR schedules
and `GhostBatchNormalization`, all in `kbatch.scaling`) must still be known to
`keras.saving.load_model` after a bare `import kbatch`, whichever of `kbatch`
and `keras` is imported first. `install()` therefore imports `kbatch.scaling`
at once when Keras is already loaded, and otherwise right after Keras' own
import has finished (a one-shot finder on `sys.meta_path` that wraps Keras'
loader; it removes itself on first use).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import logging
import sys

__all__ = ["REGISTERING_MODULE", "install"]

# The subpackage whose import registers every kbatch class with Keras.
REGISTERING_MODULE = "kbatch.scaling"
_KERAS = "keras"


def _register() -> None:
    try:
        importlib.import_module(REGISTERING_MODULE)
    except Exception:  # never let kbatch break `import keras`
        logging.getLogger("kbatch").warning(
            "kbatch's Keras classes (schedules, GhostBatchNormalization) could "
            "not be registered; `import %s` to see why.", REGISTERING_MODULE,
            exc_info=True)


class _AfterKerasImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: hands Keras' own spec back with a loader that
    registers kbatch's classes once Keras has executed."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != _KERAS:
            return None
        _uninstall()  # once; the search below must not find this finder again
        spec = importlib.util.find_spec(fullname)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run = loader.exec_module

        def exec_module(module):
            run(module)
            _register()

        try:
            loader.exec_module = exec_module  # this spec's own loader object
        except (AttributeError, TypeError):
            pass  # an unusual loader: Keras loads, kbatch registers on use
        return spec


_FINDER = _AfterKerasImport()


def _uninstall() -> None:
    try:
        sys.meta_path.remove(_FINDER)
    except ValueError:
        pass


def install() -> None:
    """Register kbatch's Keras classes now if Keras is loaded, else once it is."""
    if sys.modules.get(_KERAS) is not None:
        _register()
    elif _KERAS not in sys.modules and _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)

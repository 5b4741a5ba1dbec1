"""Old import paths that keep working for one release, with a warning.

kbatch 0.1 had flat modules (`kbatch.finder`, `kbatch.suggest`, ...); they now
live in subpackages by capability. `MOVED` maps each old name to its new home;
a finder on `sys.meta_path` (installed by `import kbatch`) answers an import of
an old name with an alias module that forwards every attribute to the new
module, and warns once with a `DeprecationWarning` pointing at the import.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import os
import sys
import warnings

__all__ = ["MOVED", "install"]

# `kbatch.noise` (an attribute) is imported by kbatch/__init__.py's __getattr__
_PACKAGE_INIT = os.path.join(os.path.dirname(os.path.dirname(__file__)),
                             "__init__.py")

MOVED = {
    "kbatch.finder": "kbatch.lr.find",
    "kbatch.lr_finder": "kbatch.lr.range_test",
    "kbatch.lr_finder_result": "kbatch.lr.result",
    "kbatch.suggest": "kbatch.lr.rules",
    "kbatch.noise": "kbatch.critical.estimators",
    "kbatch.noise_scale": "kbatch.critical.noise_scale",
    "kbatch.memory": "kbatch.critical.largest_batch",
    "kbatch.throughput": "kbatch.critical.throughput",
    "kbatch.scaling_law": "kbatch.critical.scaling_law",
    "kbatch.schedules": "kbatch.scaling.schedules",
    "kbatch.scale_callback": "kbatch.scaling.scale_learning_rate",
    "kbatch.batch_schedule": "kbatch.scaling.batch_size_schedule",
    "kbatch.layers": "kbatch.scaling.ghost_batch_norm",
    "kbatch.pattern_search": "kbatch.tuner.pattern_search",
}


def _outside_import_machinery() -> int:
    """The `stacklevel` of the first frame outside importlib and this file, so
    the warning names the user's import line. (`warnings.warn` itself skips
    importlib's frames when it counts, so they are not counted here.)"""
    frame, level = sys._getframe(1), 1
    while frame is not None:
        name = frame.f_code.co_filename
        internal = "importlib" in name and "_bootstrap" in name
        ours = name in (__file__, _PACKAGE_INIT, importlib.__file__)
        if not internal and not ours:
            return level
        frame = frame.f_back
        if not internal:
            level += 1
    return level


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return None  # the default module object

    def exec_module(self, module):
        new = MOVED[module.__name__]
        warnings.warn(
            f"`{module.__name__}` moved to `{new}` and will be removed in the "
            f"next release: import from `{new}` (or the name from `kbatch`).",
            DeprecationWarning, stacklevel=_outside_import_machinery())
        target = importlib.import_module(new)
        module.__doc__ = f"Deprecated alias of `{new}`."
        module.__all__ = list(getattr(target, "__all__", ()))
        module.__getattr__ = lambda name: getattr(target, name)
        module.__dir__ = lambda: dir(target)


_FINDER = _MovedModuleFinder()


def install():
    """Put the finder on `sys.meta_path` (once)."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.append(_FINDER)

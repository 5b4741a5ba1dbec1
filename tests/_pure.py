"""Import kbatch's pure-math modules without the package `__init__`s.

`install()` puts empty stand-ins for `kbatch` and its subpackages in
`sys.modules`, pointing at the real source folders (wherever `kbatch` is
found on `sys.path`, e.g. mutmut's `mutants/` copy), so that
`from kbatch.lr import rules` loads `kbatch/lr/rules.py` alone; and it makes
the frameworks unimportable.
"""

import importlib.machinery
import os
import sys
import types

SUBPACKAGES = ("lr", "scaling", "critical", "advisor")
FRAMEWORKS = ("keras", "tensorflow", "jax", "torch", "keras_tuner")


def install():
    spec = importlib.machinery.PathFinder.find_spec("kbatch", sys.path)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("kbatch is not on sys.path")
    root = next(iter(spec.submodule_search_locations))
    package = types.ModuleType("kbatch")
    package.__path__ = [root]
    sys.modules["kbatch"] = package
    for name in SUBPACKAGES:
        module = types.ModuleType(f"kbatch.{name}")
        module.__path__ = [os.path.join(root, name)]
        sys.modules[f"kbatch.{name}"] = module
        setattr(package, name, module)
    for name in FRAMEWORKS:
        sys.modules[name] = None  # `import keras` raises ImportError

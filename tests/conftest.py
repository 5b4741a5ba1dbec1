"""Test set-up.

Normally: Keras' state reset around every test, and the helpers of
`_helpers.py` (tests import them as `from conftest import ...`).

With `KBATCH_PURE_ONLY=1` (`make mutation`): nothing of Keras. The pure-math
modules are imported on their own, past the package `__init__`s (which import
Keras), and Keras, TensorFlow, JAX, PyTorch and KerasTuner are made
unimportable, so a test that needs them fails at once instead of loading
TensorFlow into every mutant's process.
"""

import os

if os.environ.get("KBATCH_PURE_ONLY") == "1":
    from _pure import install

    install()
else:
    from _helpers import *  # noqa: F403
    from _helpers import _fresh_keras_state  # noqa: F401 (the autouse fixture)

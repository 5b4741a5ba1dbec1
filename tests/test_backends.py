"""The core of kbatch on JAX and PyTorch: each backend in its own process
(Keras fixes the backend at import). See `_backend_core.py` for the checks:
exact restore, each step at its own LR, per-batch losses, mixed precision,
throughput, memory search with the backend's own out-of-memory error, LR
scaling in `fit`, the batch-size schedule, the noise scale (TensorFlow's
estimates on the same weights and batches, the exact value of a logistic
regression, the step gradients in `fit`), `fit_adaptive` past an injected
out-of-memory error, `advise`, and a `BatchLRHyperModel` search."""

import json
import os
import subprocess
import sys

import pytest

CHECKS = 15


def _noise_fixture(directory):
    """TensorFlow's noise-scale estimates on fixed weights and batches, for
    the other backends to reproduce."""
    import keras
    import numpy as np
    from conftest import classification_data
    from conftest import make_classifier

    import kbatch

    keras.utils.set_random_seed(7)
    model = make_classifier()
    x, y = classification_data(n=256)
    result = kbatch.measure_noise_scale(model, x, y, batch_size=64, num_steps=4,
                                        seed=0, verbose=0)
    weights = {f"w{i}": w for i, w in enumerate(model.get_weights())}
    np.savez(os.path.join(directory, "noise_fixture.npz"), x=x, y=y,
             g_sq=result.g_sq, trace=result.trace, **weights)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_core_features_on_another_backend(backend, tmp_path):
    _noise_fixture(str(tmp_path))
    script = os.path.join(os.path.dirname(__file__), "_backend_core.py")
    env = dict(os.environ, KERAS_BACKEND=backend)
    done = subprocess.run([sys.executable, script, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    passed = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(passed) == CHECKS, passed

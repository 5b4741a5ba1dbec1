"""The core of kbatch on JAX and PyTorch: each backend in its own process
(Keras fixes the backend at import). See `_backend_core.py` for the checks:
exact restore, each step at its own LR, per-batch losses, mixed precision,
throughput, memory search with the backend's own out-of-memory error, LR
scaling in `fit`, the batch-size schedule, a clear refusal of the noise scale,
and a `BatchLRHyperModel` search."""

import json
import os
import subprocess
import sys

import pytest

CHECKS = 10


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_core_features_on_another_backend(backend, tmp_path):
    script = os.path.join(os.path.dirname(__file__), "_backend_core.py")
    env = dict(os.environ, KERAS_BACKEND=backend)
    done = subprocess.run([sys.executable, script, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    passed = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(passed) == CHECKS, passed

"""Long runs in one process do not accumulate memory (slow).

Bounds (documented in docs/guarantees.md): 50 consecutive `find_lr` calls on one model
grow the resident memory by less than 0.5 MiB and 200 Python objects per call
(no graph or function traced per call); a 30-trial `BatchLRHyperModel` search
grows by no more per trial than the same search with a plain KerasTuner
hypermodel (KerasTuner itself keeps ~3 MiB and ~5000 objects per trial here),
with 25% slack.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _run(tmp_path, mode):
    script = __file__.replace("test_load.py", "_load_run.py")
    done = subprocess.run([sys.executable, script, str(tmp_path / mode), mode],
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _slope(samples, key, skip):
    """Growth per call/trial after the first `skip` (warm-up, first traces)."""
    values = np.array([s[key] for s in samples[skip:]], dtype=float)
    return np.polyfit(np.arange(values.size), values, 1)[0]


def test_fifty_range_tests_and_a_thirty_trial_search_do_not_leak(tmp_path):
    kbatch_run = _run(tmp_path, "kbatch")
    plain = _run(tmp_path, "plain")
    assert len(kbatch_run["find_lr"]) == 50
    assert _slope(kbatch_run["find_lr"], "rss", 10) < 0.5
    assert _slope(kbatch_run["find_lr"], "objects", 10) < 200
    assert kbatch_run["completed"] == plain["completed"] == 30
    for key, slack in (("rss", 1.0), ("objects", 500)):
        ours = _slope(kbatch_run["search"], key, 5)
        theirs = _slope(plain["search"], key, 5)
        assert ours <= 1.25 * theirs + slack, (key, ours, theirs)

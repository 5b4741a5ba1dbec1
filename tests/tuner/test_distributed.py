"""A chief and two workers on 127.0.0.1 (KerasTuner's own gRPC engine)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("_distributed_search.py")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(role, port, directory, markers, kind):
    env = {**os.environ, "KERASTUNER_TUNER_ID": role,
           "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port),
           "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.Popen([sys.executable, str(SCRIPT), str(directory),
                             str(markers), kind], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _wait_for(predicate, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


# Four TensorFlow processes on two cores (~50 s each, and they slow the other
# test worker down): both runs go to `make test-all`, to keep `make test` of a
# clean clone under ten minutes.
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["random", "pattern"])
def test_chief_and_two_workers_complete_every_trial_once_despite_a_killed_worker(
        tmp_path, kind):
    port = _free_port()
    markers = tmp_path / "markers"
    markers.mkdir()
    procs = {"chief": _start("chief", port, tmp_path, markers, kind)}
    time.sleep(2)
    procs["tuner0"] = _start("tuner0", port, tmp_path, markers, kind)
    procs["tuner1"] = _start("tuner1", port, tmp_path, markers, kind)
    try:
        # Kill tuner1 in the middle of its first trial, then restart it: a
        # restarted worker gets its unfinished trial back from the chief.
        assert _wait_for(lambda: any(m.name.startswith("tuner1-")
                                     for m in markers.iterdir()), 240)
        time.sleep(0.5)
        procs["tuner1"].send_signal(signal.SIGKILL)
        procs["tuner1"].wait(30)
        procs["tuner1"] = _start("tuner1", port, tmp_path, markers, kind)
        assert procs["chief"].wait(420) == 0, procs["chief"].stdout.read()[-3000:]
        for role in ("tuner0", "tuner1"):
            assert procs[role].wait(120) == 0, procs[role].stdout.read()[-3000:]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    trials = [json.loads(p.read_text())
              for p in (tmp_path / "dist").glob("trial_*/trial.json")]
    ids = [t["trial_id"] for t in trials]
    assert len(ids) == 6 and len(set(ids)) == 6  # every planned trial, none twice
    assert all(t["status"] == "COMPLETED" for t in trials)
    values = [t["hyperparameters"]["values"] for t in trials]
    pairs = {(v["batch_size"], round(v["lr_multiplier"], 9)) for v in values}
    assert len(pairs) == 6  # no two workers were handed the same point
    workers = {m.name.split("-")[0] for m in markers.iterdir()}
    assert workers == {"tuner0", "tuner1"}  # both workers trained
    # tuner1 started once before the kill and again after it, on the same trial
    assert sum(m.name.startswith("tuner1-") for m in markers.iterdir()) >= 2


@pytest.mark.slow  # the engine is tested above; this is the CLI on it
def test_kbatch_tune_runs_as_chief_and_worker(tmp_path):
    """The command line in chief/worker mode: the worker trains, the chief hands
    out the trials and writes the summary."""
    port = _free_port()
    argv = [sys.executable, "-m", "kbatch", "tune", "--dataset", "digits",
            "--batch-sizes", "16,64", "--trials", "3", "--epochs", "1",
            "--out", str(tmp_path / "out")]

    def start(role):
        env = {**os.environ, "KERASTUNER_TUNER_ID": role,
               "KERASTUNER_ORACLE_IP": "127.0.0.1",
               "KERASTUNER_ORACLE_PORT": str(port), "CUDA_VISIBLE_DEVICES": ""}
        return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    chief = start("chief")
    time.sleep(2)
    worker = start("tuner0")
    try:
        assert chief.wait(300) == 0, chief.stdout.read()[-3000:]
        assert worker.wait(120) == 0, worker.stdout.read()[-3000:]
    finally:
        for proc in (chief, worker):
            if proc.poll() is None:
                proc.kill()
    assert "worker done" in worker.stdout.read()
    summary = json.loads((tmp_path / "out" / "search_summary.json").read_text())
    assert [r["status"] for r in summary["rows"]] == ["COMPLETED"] * 3

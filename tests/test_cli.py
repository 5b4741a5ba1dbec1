"""The `kbatch` command line: end to end on tiny data, and the installed
console script as a user meets it (start-up, exit status, error lines, -q/-v)."""

import ast
import json
import logging
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest
from conftest import classification_data
from conftest import make_classifier

import kbatch
from kbatch import LRFinderResult
from kbatch import cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
HEAVY = ("keras", "tensorflow", "keras_tuner", "jax", "torch")


def _console_script():
    """The installed `kbatch` of this interpreter's environment."""
    script = pathlib.Path(sys.executable).parent / "kbatch"
    if script.exists():
        return [str(script)]
    found = shutil.which("kbatch")
    return [found] if found else [sys.executable, "-m", "kbatch"]


def _env():
    """The environment minus what would hide the CLI's own behaviour."""
    env = dict(os.environ)
    for name in ("TF_CPP_MIN_LOG_LEVEL", "KBATCH_DEBUG"):
        env.pop(name, None)
    return env


def kbatch_command(*args, cwd, timeout=300):
    return subprocess.run([*_console_script(), *args], capture_output=True,
                          text=True, cwd=cwd, env=_env(), timeout=timeout)


# ------------------------------------------------------------ start-up


def test_help_is_silent_and_prints_the_defaults(tmp_path):
    for argv in (["--help"], ["find-lr", "--help"], ["tune", "--help"]):
        run = kbatch_command(*argv, cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        assert run.stdout.startswith("usage: kbatch")
        assert run.stderr == ""  # no TensorFlow start-up lines
    assert "(default: kbatch-out)" in kbatch_command(
        "find-lr", "--help", cwd=tmp_path).stdout
    tune_help = kbatch_command("tune", "--help", cwd=tmp_path).stdout
    assert "(default: kbatch-tune)" in tune_help
    assert "(default: 16,32,64,128,256,512)" in tune_help


def test_help_and_usage_errors_do_not_import_keras():
    # why `--help` takes a fraction of a second: nothing heavy is imported
    script = textwrap.dedent(f"""
        import contextlib, io, sys
        from kbatch import cli
        codes = []
        for argv in (["--help"], ["find-lr", "--help"],
                     ["find-lr", "--dataset", "digits", "--min-lr", "1",
                      "--max-lr", "0.1"]):
            with contextlib.redirect_stdout(io.StringIO()), \\
                    contextlib.redirect_stderr(io.StringIO()):
                try:
                    cli.main(argv)
                except SystemExit as e:
                    codes.append(e.code)
        print(codes, sorted(m for m in {HEAVY!r} if m in sys.modules))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True,
                         text=True, env=_env(), timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[0, 0, 2] []"


def test_import_kbatch_is_lazy_and_registers_its_keras_classes_with_keras():
    # `import kbatch` before `import keras` (isort's order): the schedules and
    # the layer must still deserialize
    script = textwrap.dedent(f"""
        import sys
        import kbatch
        loaded = sorted(m for m in {HEAVY!r} if m in sys.modules)
        import keras
        names = ["GhostBatchNormalization", "BatchScaledSchedule",
                 "LinearWarmup", "OneCycle"]
        found = [keras.saving.get_registered_object("kbatch>" + n) for n in names]
        print(loaded, [f is getattr(kbatch.scaling, n) for f, n in zip(found, names)])
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True,
                         text=True, env=_env(), timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().splitlines()[-1] == "[] [True, True, True, True]"


def test_every_exported_name_resolves_and_is_listed():
    for name in kbatch.__all__:
        assert getattr(kbatch, name) is not None
    assert set(kbatch.__all__) <= set(dir(kbatch))
    from kbatch import find_lr
    from kbatch.lr import find_lr as original

    assert find_lr is original
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        kbatch.nonexistent  # noqa: B018


def test_builtin_names_match_the_library():
    from kbatch import datasets
    from kbatch import models

    assert cli.BUILTIN_MODELS == models.MODELS
    for name in cli.BUILTIN_DATASETS:
        assert callable(getattr(datasets, f"load_{name}"))


# -------------------------------------------------------- exit status


@pytest.mark.parametrize("argv, message", [
    (["find-lr", "--dataset", "digits", "--batch-size", "-3"],
     "argument --batch-size: expected an integer >= 1, got -3"),
    (["find-lr", "--dataset", "digits", "--min-lr", "1", "--max-lr", "0.5"],
     "--max-lr must be greater than --min-lr"),
    (["find-lr"], "give --dataset"),
    (["advise", "--dataset", "digits", "--data", "x.npz"], "not both"),
    (["tune", "--model", "mlp", "--data", "x.npz"], "needs --dataset"),
    (["find-lr", "--dataset", "digits", "--seed", "-1"], "expected an integer >= 0"),
    (["find-lr", "--dataset", "digits", "--num-steps", "20", "--num-samples", "640"],
     "not allowed with argument"),
])
def test_usage_errors_exit_2_with_the_usage_line(argv, message, tmp_path):
    run = kbatch_command(*argv, cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.startswith(f"usage: kbatch {argv[0]}")
    assert message in run.stderr.splitlines()[-1]
    assert "Traceback" not in run.stderr


def _corrupt_files(tmp_path):
    x, y = classification_data(n=64)
    good = tmp_path / "good.npz"
    np.savez(good, x=x, y=y)
    data = good.read_bytes()
    files = {"truncated.npz": data[: len(data) // 2],
             "not-a-zip.npz": b"this is not an npz file"}
    damaged = bytearray(data)
    damaged[100:160] = bytes(60)  # inside the compressed `x.npy`: a bad CRC
    files["damaged.npz"] = bytes(damaged)
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    np.savez(tmp_path / "no-y.npz", x=x, labels=y)
    np.save(tmp_path / "array.npy", x)
    np.savez(tmp_path / "mismatch.npz", x=x, y=y[:10])
    return tmp_path


@pytest.mark.parametrize("name, message", [
    ("truncated.npz", "truncated or corrupt"),
    ("damaged.npz", "truncated or corrupt"),
    ("not-a-zip.npz", "not an .npz file"),
    ("array.npy", "single array"),
    ("no-y.npz", "needs arrays `x` and `y` (found: x, labels)"),
    ("mismatch.npz", "as many of each"),
    ("missing.npz", "no such file"),
])
def test_bad_data_files_are_one_line_errors_naming_the_file(name, message, tmp_path):
    _corrupt_files(tmp_path)
    path = tmp_path / name
    run = kbatch_command("find-lr", "--model", "model.keras", "--data", str(path),
                         cwd=tmp_path)
    assert run.returncode == 1
    assert run.stderr.splitlines() == [run.stderr.strip()], run.stderr
    assert run.stderr.startswith(f"kbatch: error: --data {path}: ")
    assert message in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(where, tmp_path):
    _corrupt_files(tmp_path)
    argv = ["find-lr", "--model", "model.keras", "--data", "truncated.npz"]
    argv = ["--debug", *argv] if where == "before" else [*argv, "--debug"]
    run = kbatch_command(*argv, cwd=tmp_path)
    assert run.returncode == 1
    assert run.stderr.startswith("Traceback (most recent call last)")
    assert "BadZipFile" in run.stderr  # the cause, not only kbatch's message
    assert run.stderr.splitlines()[-1].startswith("kbatch: error: --data truncated.npz")


def _fake_command(action):
    """A stand-in for `run_find_lr` (the parser looks it up when built)."""
    def run(args):
        action(args)

    return run


def _raise(error):
    def action(args):
        raise error

    return action


def test_runtime_errors_are_one_line_and_exit_1(monkeypatch, capsys):
    error = ValueError("Argument `x` is wrong.\nReceived: x=1")
    monkeypatch.setattr(cli, "run_find_lr", _fake_command(_raise(error)))
    assert cli.main(["find-lr", "--dataset", "digits"]) == 1
    assert capsys.readouterr().err == (
        "kbatch: error: ValueError: Argument `x` is wrong. Received: x=1\n")
    assert cli.main(["find-lr", "--dataset", "digits", "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and 'raise error' in err


def test_ctrl_c_exits_130_with_one_line(monkeypatch, capsys):
    monkeypatch.setattr(cli, "run_find_lr",
                        _fake_command(_raise(KeyboardInterrupt())))
    try:
        code = cli.main(["find-lr", "--dataset", "digits"])
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped main()")
    assert code == 130
    assert capsys.readouterr().err == "kbatch: interrupted\n"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigint_to_the_console_script_exits_130(tmp_path):
    process = subprocess.Popen(
        [*_console_script(), "-v", "find-lr", "--dataset", "digits"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env=_env())
    try:
        seen = []
        for line in process.stderr:  # wait until the command has started
            seen.append(line)
            if "importing Keras" in line:
                break
        process.send_signal(signal.SIGINT)
        _, rest = process.communicate(timeout=120)
    finally:
        process.kill()
    err = "".join(seen) + rest
    assert process.returncode == 130, err[-3000:]
    assert err.splitlines()[-1] == "kbatch: interrupted"
    assert "Traceback" not in err


# ------------------------------------------------------------- -q / -v


def _chatty(args):
    logging.getLogger("kbatch.lr").debug("a debug line")
    logging.getLogger("kbatch.lr").info("an info line")
    warnings.warn("a warning", UserWarning, stacklevel=1)
    cli._say(args, "a progress line")
    cli._result("the result")


@pytest.mark.parametrize("flag", ["-q", "", "-v"])
@pytest.mark.parametrize("position", ["before", "after"])
def test_quiet_and_verbose_set_what_is_shown(flag, position, monkeypatch, capsys):
    monkeypatch.setattr(cli, "run_find_lr", _fake_command(_chatty))
    logger = logging.getLogger("kbatch")
    handlers, level = list(logger.handlers), logger.level
    argv = ["find-lr", "--dataset", "digits"]
    if flag:
        argv = [flag, *argv] if position == "before" else [*argv, flag]
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    if flag == "-q":
        assert out == "the result\n"
        assert err == ""
    else:
        assert out == "a progress line\nthe result\n"
        assert "an info line" in err
        assert "kbatch: warning: UserWarning: a warning" in err
    assert ("kbatch: debug: kbatch.lr: a debug line" in err) == (flag == "-v")
    # the logging set-up is undone
    assert logger.handlers == handlers and logger.level == level


@pytest.mark.slow
def test_quiet_real_run_prints_only_the_results(tmp_path):
    run = kbatch_command("-q", "find-lr", "--dataset", "digits", "--num-steps", "12",
                         "--batch-size", "64", "--out", "out", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stderr == ""  # no TensorFlow start-up lines, no warnings
    lines = run.stdout.splitlines()
    assert lines[0].startswith("LR range test: ")
    assert all(line.startswith("  ") for line in lines[1:-2]), lines
    assert lines[-2:] == [f"wrote {pathlib.Path('out', name)}"
                          for name in ("lr_range_test.json", "lr_range_test.png")]


def test_the_library_never_prints(tmp_path):
    def prints(path):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        return [node.lineno for node in ast.walk(tree)
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "print"]

    library = [p for p in (ROOT / "kbatch").rglob("*.py") if p.name != "cli.py"]
    offenders = {str(p.relative_to(ROOT)): prints(p) for p in library}
    assert {k: v for k, v in offenders.items() if v} == {}
    # the check can fail: a call is found, a doctest's `print` is not
    planted = tmp_path / "planted.py"
    planted.write_text('"""\n>>> print(1)\n"""\ndef f():\n    print(2)\n')
    assert prints(planted) == [5]


# ----------------------------------------------------------- end to end


def test_find_lr_on_a_builtin_dataset_writes_json_and_png(tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(["find-lr", "--dataset", "digits", "--model", "mlp",
                     "--num-steps", "30", "--batch-size", "64", "--out", str(out)])
    assert code == 0
    result = LRFinderResult.load(out / "lr_range_test.json")
    assert 2 <= result.lrs.size <= 30 and result.batch_size == 64
    assert (out / "lr_range_test.png").stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "auto" in printed and printed.count("LR range test:") == 1


def test_find_lr_on_a_saved_model_and_npz_leaves_the_file_unchanged(tmp_path):
    x, y = classification_data(n=128)
    model = make_classifier()
    path = tmp_path / "model.keras"
    model.save(path)
    before = path.read_bytes()
    np.savez(tmp_path / "data.npz", x=x, y=y)
    code = cli.main(["find-lr", "--model", str(path), "--data",
                     str(tmp_path / "data.npz"), "--num-steps", "20",
                     "--out", str(tmp_path / "out")])
    assert code == 0
    data = json.loads((tmp_path / "out" / "lr_range_test.json").read_text())
    assert data["batch_size"] == 32
    assert path.read_bytes() == before


def test_missing_or_uncompiled_saved_model_is_reported(tmp_path, capsys):
    np.savez(tmp_path / "d.npz", x=np.zeros((8, 8)), y=np.zeros(8))
    argv = ["find-lr", "--model", str(tmp_path / "m.keras"), "--data",
            str(tmp_path / "d.npz")]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err == f"kbatch: error: --model {argv[2]}: no such file\n"
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    model.save(tmp_path / "m.keras")
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"kbatch: error: --model {argv[2]}: was saved without "
                          "compile()") and err.count("\n") == 1


def test_argument_types_are_checked(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["find-lr", "--dataset", "digits", "--num-steps", "0"])
    assert info.value.code == 2
    assert "expected an integer >= 1" in capsys.readouterr().err


@pytest.mark.slow  # `make test-all`: kept out of the 10-minute `make test`
def test_tune_on_a_builtin_dataset_searches_writes_and_resumes(tmp_path, capsys):
    out = tmp_path / "tune"
    argv = ["tune", "--dataset", "digits", "--model", "mlp", "--batch-sizes",
            "16,64,256", "--epochs", "1", "--out", str(out)]
    assert cli.main([*argv, "--trials", "3"]) == 0
    summary = json.loads((out / "search_summary.json").read_text())
    rows = summary["rows"]
    assert summary["objective"] == "val_accuracy"
    assert [r["batch_size"] for r in rows] == [16, 64, 256]  # PatternSearch's sweep
    assert all(r["status"] == "COMPLETED" and r["learning_rate"] > 0 for r in rows)
    assert (out / "search_summary.png").stat().st_size > 10_000
    assert "best" in capsys.readouterr().out
    # the same command with more trials resumes: the first three are kept
    assert cli.main([*argv, "--trials", "4"]) == 0
    again = json.loads((out / "search_summary.json").read_text())["rows"]
    assert len(again) == 4 and again[:3] == rows


@pytest.mark.slow  # `make test-all`: kept out of the 10-minute `make test`
def test_tune_on_a_saved_model_and_npz_validates_on_a_split(tmp_path):
    x, y = classification_data(n=256)
    model = make_classifier()
    path = tmp_path / "model.keras"
    model.save(path)
    before = path.read_bytes()
    np.savez(tmp_path / "data.npz", x=x, y=y)
    code = cli.main(["tune", "--model", str(path), "--data", str(tmp_path / "data.npz"),
                     "--batch-sizes", "16,32", "--trials", "2", "--epochs", "1",
                     "--tuner", "random", "--out", str(tmp_path / "out")])
    assert code == 0
    summary = json.loads((tmp_path / "out" / "search_summary.json").read_text())
    assert summary["objective"] == "val_loss"  # the model has no accuracy metric
    rows = summary["rows"]
    assert len(rows) == 2 and all(r["objective"] is not None for r in rows)
    assert path.read_bytes() == before


@pytest.mark.parametrize("value", ["0,16", "16,x", ""])
def test_tune_refuses_bad_batch_sizes(value, capsys):
    with pytest.raises(SystemExit):
        cli.main(["tune", "--dataset", "digits", "--batch-sizes", value])
    assert "batch sizes like 16,32,64" in capsys.readouterr().err

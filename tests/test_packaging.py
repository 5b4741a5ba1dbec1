"""The package's surface: version, exports, console script, public Keras only."""

import pathlib
import re
import subprocess
import sys
from importlib import metadata

import pytest

import kbatch

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_version_matches_installed_metadata():
    assert kbatch.__version__ == metadata.version("keras-kbatch")


def test_public_names_are_exported_explicitly():
    for name in kbatch.__all__:
        assert hasattr(kbatch, name), name
    assert {"find_lr", "LRRangeTest", "LRFinderResult"} <= set(kbatch.__all__)


def test_no_private_keras_imports():
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "kbatch").rglob("*.py")
        if re.search(r"keras\.src|from keras\.src", path.read_text())
    ]
    assert offenders == []


def test_console_script_prints_help_and_version(capsys):
    from kbatch import cli

    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "find-lr" in out and "demo" in out and "tune" in out
    # `python -m kbatch` (the module entry point) in a fresh interpreter
    version = subprocess.run([sys.executable, "-m", "kbatch", "--version"],
                             capture_output=True, text=True, check=True)
    assert kbatch.__version__ in version.stdout


def test_console_script_is_installed():
    entry_points = metadata.entry_points(group="console_scripts")
    assert any(ep.name == "kbatch" and ep.value == "kbatch.cli:main"
               for ep in entry_points)

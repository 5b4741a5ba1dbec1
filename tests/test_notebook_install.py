"""The notebooks' install cell, run as Colab runs it.

Each notebook's first code cell installs keras-kbatch with `%pip` when it runs
in Colab: from a `keras_kbatch-*.whl` uploaded next to the notebook (`make
wheel` builds it) if there is one, else from the package index. The cell's
`%pip` lines are turned into Python by IPython, as in a kernel, and run against
a stand-in for IPython's shell that does what `%pip` does: expand `{...}` in
the caller's namespace and run `<python> -m pip ...` with the interpreter that
runs the cell.

The fast tests check which command the cell runs; the slow one builds the
wheel, creates a fresh virtual environment, and runs notebook 01's install and
import cells in it, exactly as a Colab user's kernel would (reinstalling
TensorFlow: minutes, and a download).
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
NOTEBOOK_01 = ROOT / "notebooks" / "01_lr_range_test.ipynb"

# What IPython's `%pip` does, for a kernel without IPython: `{expression}` is
# evaluated in the cell's namespace, the line is split as a shell would, and
# `python -m pip` runs with the cell's interpreter (`_pip_runner`, when the
# namespace defines one, receives the command instead of running it).
SHELL = '''
import re as _re
import shlex as _shlex
import subprocess as _subprocess
import sys as _sys


class _Shell:
    def run_line_magic(self, magic, line, _stack_depth=1):
        if magic != "pip":
            raise NotImplementedError(f"%{magic} is not emulated")
        frame = _sys._getframe(1)
        line = _re.sub(r"\\{([^{}]+)\\}",
                       lambda m: str(eval(m[1], frame.f_globals, frame.f_locals)),
                       line)
        command = [_sys.executable, "-m", "pip", *_shlex.split(line)]
        run = frame.f_globals.get("_pip_runner")
        if run is not None:
            run(command)
        else:
            _subprocess.run(command, check=True)


def get_ipython():
    return _Shell()

'''


def code_cells(path):
    return [cell.source for cell in nbformat.read(path, as_version=4).cells
            if cell.cell_type == "code"]


def as_python(cell_source: str) -> str:
    """The cell as an IPython kernel runs it (`%pip ...` becomes
    `get_ipython().run_line_magic('pip', ...)`)."""
    return TransformerManager().transform_cell(cell_source)


def run_install_cell(path, cwd, monkeypatch, force_colab):
    """Run `path`'s first cell in this process; return the pip commands and
    the cell's namespace."""
    commands = []
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL",
                       os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"))
    monkeypatch.delenv("KBATCH_SMALL", raising=False)
    if force_colab:
        monkeypatch.setenv("KBATCH_FORCE_COLAB", "1")
    else:
        monkeypatch.delenv("KBATCH_FORCE_COLAB", raising=False)
    namespace = {"__name__": "__main__", "_pip_runner": commands.append}
    exec(compile(SHELL + as_python(code_cells(path)[0]), str(path), "exec"), namespace)
    return commands, namespace


# --- fast: what the cell runs ------------------------------------------------

@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_install_cell_installs_an_uploaded_wheel_with_its_extras(path, tmp_path,
                                                                 monkeypatch):
    for name in ("keras_kbatch-0.0.1-py3-none-any.whl",
                 "keras_kbatch-9.9.9-py3-none-any.whl",
                 "kbatch-9.9.9-py3-none-any.whl"):  # another distribution: ignored
        (tmp_path / name).write_bytes(b"")
    newest = tmp_path / "keras_kbatch-9.9.9-py3-none-any.whl"
    os.utime(newest, (2e9, 2e9))
    if path.name.startswith("05"):
        (tmp_path / "keras-kbatch").mkdir()  # the clone of the claim scripts
    commands, namespace = run_install_cell(path, tmp_path, monkeypatch, True)
    assert commands == [[sys.executable, "-m", "pip", "install", "-q",
                         "keras_kbatch-9.9.9-py3-none-any.whl[plot,examples]"]]
    assert namespace["IN_COLAB"] is True and namespace["SMALL"] is False


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_install_cell_installs_from_the_index_without_a_wheel(path, tmp_path,
                                                             monkeypatch):
    if path.name.startswith("05"):
        (tmp_path / "keras-kbatch").mkdir()
    commands, _ = run_install_cell(path, tmp_path, monkeypatch, True)
    assert commands == [[sys.executable, "-m", "pip", "install", "-q",
                         "keras-kbatch[plot,examples]"]]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_install_cell_installs_nothing_outside_colab(path, tmp_path, monkeypatch):
    (tmp_path / "keras_kbatch-9.9.9-py3-none-any.whl").write_bytes(b"")
    commands, namespace = run_install_cell(path, tmp_path, monkeypatch, False)
    assert commands == [] and namespace["IN_COLAB"] is False
    assert namespace["SMALL"] is True  # small data on a CPU by default
    assert sorted(os.listdir(tmp_path)) == ["keras_kbatch-9.9.9-py3-none-any.whl"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_notebook_installs_as_notebook_01_and_has_a_small_form_field(path):
    """Notebook 01's install path is the one the slow test runs in a fresh
    environment: every notebook's install lines are the same."""

    def install_lines(source):
        lines = source.splitlines()
        end = next(i for i, line in enumerate(lines)
                   if line.lstrip().startswith("%pip"))
        return lines[:end + 1]

    first = code_cells(path)[0]
    assert install_lines(first) == install_lines(code_cells(NOTEBOOK_01)[0])
    assert re.search(r"^SMALL = .+#@param", first, re.MULTILINE), (
        f"{path.name}: no `SMALL = ...  #@param` line (Colab form)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_notebook_picks_its_precision_with_kbatch(path):
    """mixed_float16 on a GPU, float32 on a CPU: `kbatch.precision.auto_policy()`,
    or per trial in a search (`BatchLRHyperModel`, `mixed_precision="auto"` by
    default); never a policy typed in, except putting float32 back."""
    code = "\n".join(code_cells(path))
    assert "kbatch.precision.auto_policy()" in code or "BatchLRHyperModel(" in code
    policies = re.findall(r"set_(?:global|dtype)_policy\((.*)\)\s*$", code,
                          re.MULTILINE)
    assert set(policies) <= {"kbatch.precision.auto_policy()", '"float32"'}, policies


# --- slow: notebook 01 in a fresh virtual environment ------------------------

def _clean_env(**extra):
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    return {**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "MPLBACKEND": "Agg",
            "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


def _run(command, **kwargs):
    out = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert out.returncode == 0, (
        f"{command[:4]} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out.stdout


@pytest.mark.slow
def test_notebook_01_installs_and_imports_in_a_fresh_environment_as_in_colab(tmp_path):
    # 1. the wheel, as `make wheel` builds it
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist),
          str(ROOT)], env=_clean_env(), timeout=900)
    wheels = sorted(dist.glob("*.whl"))
    assert len(wheels) == 1 and re.fullmatch(
        r"keras_kbatch-[^-]+-py3-none-any\.whl", wheels[0].name), (
        f"built {[w.name for w in wheels]}; setup.cfg should say name = keras-kbatch")

    # 2. a fresh virtual environment, and the wheel where the cell looks for it
    #    (the working directory, as Colab's /content)
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], env=_clean_env(), timeout=300)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    content = tmp_path / "content"
    content.mkdir()
    shutil.copy(wheels[0], content)

    # 3. the install cell (forced into its Colab branch), then the import cell,
    #    in one process: one kernel, as in Colab
    cells = code_cells(NOTEBOOK_01)
    assert "%pip install" in cells[0]
    script = content / "notebook_01.py"
    script.write_text(SHELL + as_python(cells[0]) + "\n\n" + as_python(cells[1]) + "\n",
                      encoding="utf-8")
    env = _clean_env(KBATCH_FORCE_COLAB="1",
                     KBATCH_CACHE_DIR=str(tmp_path / "kbatch-cache"))
    stdout = _run([str(python), str(script)], cwd=content, env=env, timeout=3600)
    assert "kbatch " in stdout and "policy:" in stdout, stdout

    # 4. in that environment: kbatch imports, from the keras-kbatch wheel
    check = (
        "import importlib.metadata as m, json, pathlib, sys, kbatch\n"
        "d = m.distribution('keras-kbatch')\n"
        "print(json.dumps({'version': kbatch.__version__, 'name': d.metadata['Name'],"
        " 'dist_version': d.version, 'file': kbatch.__file__, 'prefix': sys.prefix,"
        " 'owners': m.packages_distributions().get('kbatch'),"
        " 'direct_url': d.read_text('direct_url.json') or ''}))\n")
    _run([str(python), "-c", "import kbatch; print(kbatch.__version__)"],
         cwd=content, env=env, timeout=600)
    info = json.loads(_run([str(python), "-c", check], cwd=content, env=env,
                           timeout=600).strip().splitlines()[-1])

    def normalize(name):
        return re.sub(r"[-_.]+", "-", name).lower()

    assert normalize(info["name"]) == "keras-kbatch"
    assert [normalize(owner) for owner in info["owners"]] == ["keras-kbatch"]
    assert info["version"] == info["dist_version"] == wheels[0].name.split("-")[1]
    assert pathlib.Path(info["file"]).is_relative_to(info["prefix"])  # not the checkout
    assert wheels[0].name in info["direct_url"]  # installed from the uploaded wheel

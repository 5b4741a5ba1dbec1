"""The notebooks run top to bottom (small-data switch on) and are stored stripped.

Their Colab install cell is tested in test_notebook_install.py."""

import json
import os
import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parents[1] / "notebooks")
                   .glob("*.ipynb"))
# All executed by `make test-all` (25 s to minutes each, their features
# covered by the tests of each capability; `make test` stays under ten
# minutes on a clean clone). `make test` checks they are stored stripped.
FAST = set()


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, marks=[] if p.name in FAST else [pytest.mark.slow])
     for p in NOTEBOOKS],
    ids=[p.name for p in NOTEBOOKS],
)
def test_notebook_executes(path, tmp_path, monkeypatch):
    monkeypatch.setenv("KBATCH_SMALL", "1")
    monkeypatch.delenv("KBATCH_FORCE_COLAB", raising=False)  # the local checkout
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code"
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert os.listdir(tmp_path) == []  # the notebook cleans up after itself

"""The `kbatch` command line, end to end on tiny data."""

import json

import keras
import numpy as np
import pytest
from conftest import classification_data
from conftest import make_classifier

from kbatch import LRFinderResult
from kbatch import cli


def test_find_lr_on_a_builtin_dataset_writes_json_and_png(tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(["find-lr", "--dataset", "digits", "--model", "mlp",
                     "--num-steps", "30", "--batch-size", "64", "--out", str(out)])
    assert code == 0
    result = LRFinderResult.load(out / "lr_range_test.json")
    assert 2 <= result.lrs.size <= 30 and result.batch_size == 64
    assert (out / "lr_range_test.png").stat().st_size > 10_000
    assert "auto" in capsys.readouterr().out


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


@pytest.mark.parametrize("argv, message", [
    (["find-lr", "--model", "missing.keras", "--data", "missing.npz"],
     "no such file"),
    (["find-lr"], "give --dataset"),
    (["find-lr", "--dataset", "digits", "--data", "x.npz"], "not both"),
    (["find-lr", "--model", "mlp", "--data", "x.npz"], "needs --dataset"),
])
def test_bad_command_lines_exit_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert message in str(info.value)


def test_unreadable_npz_is_reported(tmp_path):
    model = make_classifier()
    model.save(tmp_path / "m.keras")
    (tmp_path / "bad.npz").write_text("not a zip")
    with pytest.raises(SystemExit, match=r"not a readable \.npz"):
        cli.main(["find-lr", "--model", str(tmp_path / "m.keras"), "--data",
                  str(tmp_path / "bad.npz")])


def test_uncompiled_saved_model_is_reported(tmp_path):
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    model.save(tmp_path / "m.keras")
    np.savez(tmp_path / "d.npz", x=np.zeros((8, 8)), y=np.zeros(8))
    with pytest.raises(SystemExit, match="without compile"):
        cli.main(["find-lr", "--model", str(tmp_path / "m.keras"), "--data",
                  str(tmp_path / "d.npz")])


def test_argument_types_are_checked(capsys):
    with pytest.raises(SystemExit):
        cli.main(["find-lr", "--dataset", "digits", "--num-steps", "0"])
    assert "expected an integer >= 1" in capsys.readouterr().err


def test_kbatch_errors_become_one_line_messages(capsys):
    code = cli.main(["find-lr", "--dataset", "digits", "--min-lr", "1",
                     "--max-lr", "0.5"])
    assert code == 2
    assert "max_lr" in capsys.readouterr().err


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

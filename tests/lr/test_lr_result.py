"""`LRFinderResult`: suggestions, JSON file, plot."""

import json
import math
import os

import numpy as np
import pytest

from kbatch import LRFinderResult
from kbatch.lr import rules as suggest


def _curve(n=60):
    lrs = np.logspace(-6, 1, n)
    log = np.log10(lrs)
    losses = 2.0 - np.tanh(log + 3.0) + np.where(log > -0.5, 20 * (log + 0.5), 0.0)
    losses[-1] = math.nan
    return lrs, losses


def _result(**kwargs):
    lrs, losses = _curve()
    return LRFinderResult(lrs, losses, smoothing=0.5, batch_size=32, min_lr=1e-6,
                          max_lr=10.0, num_steps=60, stop_reason="non_finite",
                          **kwargs)


def test_suggestions_cover_every_rule_and_agree_inside_their_spread():
    result = _result()
    values = result.suggestions()
    assert set(values) == {"steepest", "valley", "minimum", "auto"}
    low, high = result.suggestion_interval()
    assert low <= result.suggestion() <= high
    assert result.suggestion("minimum") == values["minimum"]


def test_suggestions_read_the_trend_against_effective_lrs():
    result = _result()
    np.testing.assert_allclose(result.smoothed_losses,
                               suggest.smooth_losses(result.losses, 0.5))
    assert result.suggestion("steepest") == suggest.steepest(result.lrs,
                                                             result.trend)
    momentum = LRFinderResult(result.lrs, result.losses, momentum=0.9)
    eff = suggest.effective_lrs(result.lrs, 0.9)
    assert momentum.suggestion("steepest") == suggest.steepest(eff, result.trend)
    assert momentum.suggestion("steepest") < result.suggestion("steepest")


def test_json_round_trip_keeps_every_number_including_nan(tmp_path):
    result = _result(metadata={"model": "mlp"}, momentum=0.9)
    path = tmp_path / "sub" / "r.json"
    result.save(path)
    loaded = LRFinderResult.load(path)
    np.testing.assert_array_equal(loaded.lrs, result.lrs)
    np.testing.assert_array_equal(loaded.losses, result.losses)  # NaN == NaN here
    assert loaded.batch_size == 32 and loaded.stop_reason == "non_finite"
    assert loaded.momentum == result.momentum
    assert loaded.metadata == {"model": "mlp"}
    assert loaded.suggestions() == result.suggestions()
    # strict JSON: no NaN tokens
    text = path.read_text()
    assert "NaN" not in text
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard {c}"))


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "r.json"
    _result().save(path)
    _result().save(path)  # overwrite
    assert sorted(os.listdir(tmp_path)) == ["r.json"]


def test_a_failed_save_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    _result().save(path)
    original = path.read_text()

    def broken_dumps(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("json.dumps", broken_dumps)
    with pytest.raises(OSError):
        _result().save(path)
    assert path.read_text() == original


def test_loading_a_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "r.json"
    _result().save(path)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match="truncated or damaged"):
        LRFinderResult.load(path)


@pytest.mark.parametrize(
    "content, pattern",
    [
        ({"hello": 1}, "Not a kbatch LRFinderResult"),
        ([1, 2, 3], "Not a kbatch LRFinderResult"),
        ({"format": "kbatch.LRFinderResult", "format_version": 99}, "format_version"),
        ({"format": "kbatch.LRFinderResult", "format_version": 1, "lrs": [1e-3],
          "losses": [1.0, 2.0]}, "differ in length"),
        ({"format": "kbatch.LRFinderResult", "format_version": 1, "lrs": ["x"],
          "losses": [1.0]}, "non-number"),
        ({"format": "kbatch.LRFinderResult", "format_version": 1, "lrs": [-1.0],
          "losses": [1.0]}, "positive"),
    ],
)
def test_loading_a_foreign_or_tampered_file_is_a_clear_error(tmp_path, content,
                                                             pattern):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=pattern):
        LRFinderResult.load(path)


def test_loading_a_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.json"):
        LRFinderResult.load(tmp_path / "nope.json")


def test_plot_is_written(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = tmp_path / "curve.png"
    ax = _result().plot(path=path)
    assert path.stat().st_size > 10_000
    assert ax.get_xscale() == "log"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(label.startswith("suggested") for label in labels)
    plt.close(ax.figure)


def test_plot_draws_on_a_given_axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2)
    ax = _result().plot(ax=axes[1], show_suggestions=False)
    assert ax is axes[1]
    assert len(axes[1].lines) == 2 and not axes[0].lines
    plt.close(fig)


def test_plot_without_matplotlib_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"kbatch\[plot\]"):
        _result().plot()


def test_a_curve_that_never_fell_has_no_suggestion_and_says_why():
    lrs = np.logspace(-5, 0, 30)
    result = LRFinderResult(lrs, np.linspace(2.0, 3.0, 30), smoothing=0.0)
    with pytest.raises(ValueError, match="not seen to fall"):
        result.suggestion()
    assert "no suggestion" in repr(result)
    assert "warning" in result.summary()


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="same length"):
        LRFinderResult([1e-3, 1e-2], [1.0])

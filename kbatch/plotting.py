"""Plots of kbatch results.

matplotlib is optional: `pip install "keras-kbatch[plot]"`.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "plot_adaptive",
    "plot_lr_finder",
    "plot_scaling_law",
    "plot_throughput",
    "require_matplotlib",
    "save_figure",
]

_MARKERS = {
    "steepest": ("v", "tab:orange"),
    "valley": ("o", "tab:green"),
    "minimum": ("s", "tab:purple"),
}


def require_matplotlib():
    """Import matplotlib, or fail with the command that installs it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(
            "Plotting needs matplotlib, which is not installed. Install it with "
            '`pip install "keras-kbatch[plot]"` (or `pip install matplotlib`).'
        ) from None
    import matplotlib.pyplot as plt

    return plt


def _new_axes(ax, figsize=(7, 4.5)):
    plt = require_matplotlib()
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def save_figure(ax, path):
    """Save the figure of `ax` to `path` (the figure stays open)."""
    figure = ax.figure
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def _interp(lrs, values, lr):
    order = np.argsort(lrs)
    return float(np.interp(math.log(lr), np.log(lrs[order]), values[order]))


def plot_lr_finder(result, ax=None, *, show_suggestions=True, path=None):
    """Loss vs learning rate of an `LRFinderResult`, suggestions marked.

    The thin line is the recorded loss of each step, the thick line its
    zero-lag trend, which the suggestion rules read. With SGD or RMSprop
    momentum, the x axis is the effective learning rate (see
    `kbatch.lr.rules.effective_lrs`).
    """
    ax = _new_axes(ax)
    lrs, raw, curve = result.effective_lrs, result.losses, result.trend
    finite = np.isfinite(curve)
    label = "validation loss" if result.loss_kind == "validation" else "batch loss"
    ax.plot(lrs, raw, color="tab:blue", alpha=0.3, linewidth=1, label=label)
    ax.plot(lrs[finite], curve[finite], color="tab:blue", linewidth=2, label="trend")
    if result.mode == "exponential":
        ax.set_xscale("log")
    xlabel = "learning rate"
    if result.momentum:
        xlabel = f"effective learning rate (momentum {result.momentum:g})"
    if result.mode == "exponential":
        xlabel += ", log scale"
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss")
    title = "LR range test"
    if result.batch_size:
        title += f" at batch size {result.batch_size}"
    ax.set_title(title)

    if finite.sum() >= 2:
        # Keep the divergence spike from flattening the interesting part.
        good = curve[finite]
        low = float(np.nanmin(np.where(np.isfinite(raw), raw, np.nan)))
        high = float(max(good[0], np.percentile(raw[np.isfinite(raw)], 90)))
        if math.isfinite(low) and high > low:
            pad = 0.08 * (high - low)
            ax.set_ylim(low - pad, high + 3 * pad)

    if show_suggestions and finite.sum() >= 2:
        suggestions = result.suggestions()
        for name, (marker, color) in _MARKERS.items():
            lr = suggestions.get(name)
            if lr is None:
                continue
            y = _interp(lrs[finite], curve[finite], lr)
            ax.plot([lr], [y], marker=marker, color=color, markersize=8,
                    linestyle="none", label=f"{name}: {lr:.2g}")
        auto = suggestions.get("auto")
        if auto is not None:
            spread = [v for k, v in suggestions.items() if k != "auto" and v]
            if len(spread) >= 2:
                ax.axvspan(min(spread), max(spread), color="tab:red", alpha=0.08)
            ax.axvline(auto, color="tab:red", linestyle="--", linewidth=1.5,
                       label=f"suggested: {auto:.2g}")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="best", fontsize="small")
    if path is not None:
        save_figure(ax, path)
    return ax


def plot_throughput(result, ax=None, *, chosen=None, memory_cap=None):
    """Samples per second against batch size, the knee (and choices) marked."""
    ax = _new_axes(ax)
    sizes = np.asarray(result.batch_sizes)
    speed = np.asarray(result.samples_per_second, dtype=np.float64)
    ok = np.isfinite(speed)
    ax.plot(sizes[ok], speed[ok], marker="o", color="tab:blue", label="throughput")
    if result.knee is not None:
        ax.axvline(result.knee, color="tab:green", linestyle=":",
                   label=f"knee ({result.fraction:.0%} of best): {result.knee}")
    if memory_cap is not None:
        ax.axvline(memory_cap, color="tab:red", linestyle="-.",
                   label=f"memory cap: {memory_cap}")
    if chosen is not None:
        ax.axvline(chosen, color="black", linestyle="--", label=f"advised: {chosen}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel("training samples / s")
    ax.set_title("Throughput")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="best", fontsize="small")
    return ax


def plot_scaling_law(result, ax=None):
    """Suggested LR against batch size (log-log), with the fitted laws."""
    ax = _new_axes(ax)
    sizes = np.asarray(result.batch_sizes, dtype=np.float64)
    ax.plot(sizes, result.learning_rates, "o", color="tab:blue",
            label="range-test suggestion")
    grid = np.geomspace(sizes.min() / 2, sizes.max() * 2, 100)
    ax.plot(grid, [result.predict(b, "power") for b in grid], color="tab:orange",
            label=f"power law: B^{result.exponent:.2f}")
    ax.plot(grid, [result.predict(b, "noise") for b in grid], color="tab:green",
            linestyle="--",
            label=f"noise law: B_noise={result.b_noise:.3g}")
    base = sizes[0]
    for rule, power, style in (("linear", 1.0, ":"), ("sqrt", 0.5, "-.")):
        ax.plot(grid, result.learning_rates[0] * (grid / base) ** power,
                color="grey", linestyle=style, linewidth=1, label=f"{rule} rule")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("learning rate")
    ax.set_title("How the LR scales")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="best", fontsize="small")
    return ax


def plot_lr_by_batch_size(result, ax=None, *, path=None):
    """The best LR against batch size (log-log): measured points, the band of
    LRs as good within 2%, the interpolation, and the fitted power law."""
    ax = _new_axes(ax)
    sizes = np.asarray(result.batch_sizes, dtype=np.float64)
    lrs = np.asarray(result.learning_rates, dtype=np.float64)
    low = np.asarray([result.bands[int(b)][0] for b in sizes])
    high = np.asarray([result.bands[int(b)][1] for b in sizes])
    ax.fill_between(sizes, low, high, color="tab:blue", alpha=0.15,
                    label="as good within 2%")
    for b, pairs in result.probes.items():
        tried = [lr for lr, _ in pairs]
        ax.plot([b] * len(tried), tried, ".", color="grey", markersize=3)
    ax.plot(sizes, lrs, "o-", color="tab:blue",
            label=f"best LR for {result.epochs} epochs")
    if sizes.size >= 2:
        grid = np.geomspace(sizes.min() / 1.5, sizes.max() * 1.5, 100)
        alpha = result.exponent
        c = float(np.exp(np.mean(np.log(lrs) - alpha * np.log(sizes))))
        ax.plot(grid, c * grid**alpha, color="tab:orange", linestyle="--",
                label=f"power law: B^{alpha:.2f}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("learning rate")
    ax.set_title("Best learning rate per batch size (grey: probes)")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="best", fontsize="small")
    if path is not None:
        save_figure(ax, path)
    return ax


def plot_adaptive(history, ax=None, *, path=None):
    """A `fit_adaptive` run per epoch: the batch size (steps) and `B_simple`
    with its interval (shaded) on a log scale, the learning rate on a second
    axis."""
    values = history.history if hasattr(history, "history") else history
    if "batch_size" not in values or "noise_scale" not in values:
        raise ValueError("plot_adaptive needs the History of `fit_adaptive` "
                         "(per-epoch `batch_size` and `noise_scale`).")
    ax = _new_axes(ax)
    epochs = np.arange(1, len(values["batch_size"]) + 1)

    def finite(key):
        data = np.asarray(values.get(key, [np.nan] * epochs.size), dtype=float)
        return np.where(np.isfinite(data), data, np.nan)

    ax.step(epochs, values["batch_size"], where="mid", color="tab:blue",
            label="batch size")
    if "micro_batch_size" in values and any(
            m != b for m, b in zip(values["micro_batch_size"], values["batch_size"])):
        ax.step(epochs, values["micro_batch_size"], where="mid", color="tab:blue",
                linestyle=":", label="micro-batch (accumulated)")
    ax.plot(epochs, finite("noise_scale"), "o-", color="tab:green",
            label="B_simple")
    ax.fill_between(epochs, finite("noise_scale_low"), finite("noise_scale_high"),
                    color="tab:green", alpha=0.12, label="its interval")
    params = getattr(history, "params", None) or {}
    refused = [(t["epoch"] + 1, size) for t in params.get("trials") or []
               if not t.get("accepted") for size in t["losses"]
               if size != t["from"]]
    if refused:  # signal="branch": rises the branches refused
        ax.plot(*zip(*refused), "x", color="tab:red", markersize=7,
                label="rise refused by branches")
    ax.set_yscale("log", base=2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("batch size, B_simple")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, which="both", alpha=0.25)
    twin = ax.twinx()
    twin.plot(epochs, values["learning_rate"], "s--", color="tab:orange",
              markersize=3, label="learning rate")
    twin.set_ylabel("learning rate")
    lines = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="best", fontsize="small")
    ax.set_title("Adaptive batch size")
    if path is not None:
        save_figure(ax, path)
    return ax

"""Pure math of the LR range test: the sweep, smoothing and suggestion rules.

Everything here works on plain numbers and NumPy arrays; nothing touches Keras.
Each suggestion rule has the same signature, ``rule(lrs, losses) -> float | None``,
where ``losses`` is the zero-lag `trend` of the curve and ``lrs`` the effective
learning rates (see `effective_lrs`), and returns ``None`` when the curve does
not support a suggestion (for instance when the loss never fell).

References:
    - Smith, "Cyclical Learning Rates for Training Neural Networks", 2017,
      https://arxiv.org/abs/1506.01186 (the range test).
    - fastai's ``lr_find`` (the "valley" idea and the bias-corrected smoothing).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from collections.abc import Mapping

import numpy as np

__all__ = [
    "AGREE_MARGIN",
    "FALL_FRACTION",
    "FALL_NOISE",
    "MIN_FALL",
    "STEEPEST_DECADES",
    "SUGGESTION_RULES",
    "SWEEP_MODES",
    "TREND_WIDTH",
    "agree",
    "diagnose",
    "divergence_lr",
    "effective_lrs",
    "fall_start",
    "interval",
    "lr_sweep",
    "minimum",
    "smooth_losses",
    "steepest",
    "trend",
    "valley",
]

SWEEP_MODES = ("exponential", "linear")


def lr_sweep(min_lr: float, max_lr: float, num_steps: int, mode: str = "exponential"):
    """Learning rates of a range test, one per step.

    Args:
        min_lr: Float. First learning rate.
        max_lr: Float. Last learning rate.
        num_steps: Integer. Number of learning rates.
        mode: `"exponential"` (geometric spacing) or `"linear"`.

    Returns:
        A float64 NumPy array of length `num_steps`, from `min_lr` to `max_lr`.

    Example:

    >>> lr_sweep(1e-3, 1e-1, 3).round(6).tolist()
    [0.001, 0.01, 0.1]
    """
    fraction = np.arange(num_steps, dtype=np.float64) / max(num_steps - 1, 1)
    if mode == "exponential":
        return min_lr * (max_lr / min_lr) ** fraction
    if mode == "linear":
        return min_lr + (max_lr - min_lr) * fraction
    raise ValueError(
        f"Argument `mode` must be one of {SWEEP_MODES}. Received: mode={mode!r}"
    )


def smooth_losses(losses, smoothing: float = 0.98):
    """Bias-corrected exponential moving average of a loss curve.

    `avg_i = smoothing * avg_{i-1} + (1 - smoothing) * loss_i`, reported as
    `avg_i / (1 - smoothing ** (i + 1))` so that early values are not pulled
    towards zero. A non-finite loss makes every later smoothed value non-finite.

    Example:

    >>> smooth_losses([1.0, 1.0, 1.0], smoothing=0.9).tolist()
    [1.0, 1.0, 1.0]
    """
    losses = np.asarray(losses, dtype=np.float64)
    out = np.empty_like(losses)
    avg = 0.0
    for i, loss in enumerate(losses):
        avg = smoothing * avg + (1.0 - smoothing) * loss
        out[i] = avg / (1.0 - smoothing ** (i + 1))
    return out


def _finite_prefix(lrs, losses):
    """The curve up to (not including) its first non-finite loss."""
    lrs = np.asarray(lrs, dtype=np.float64)
    losses = np.asarray(losses, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(losses))
    end = bad[0] if bad.size else losses.size
    return lrs[:end], losses[:end]


TREND_WIDTH = 2.5


def trend(losses, width: float = TREND_WIDTH):
    """Zero-lag smoothing of a loss curve, for reading suggestions off it.

    A Gaussian kernel over neighbouring points (standard deviation `width`
    points), renormalised at the ends. Unlike the causal moving average used to
    detect divergence, it does not shift features of the curve towards larger
    learning rates: with `smoothing=0.98` over 100 points, the moving average
    lags by tens of points, which is several decades of learning rate. Values
    from the first non-finite loss on are `nan`.

    Example:

    >>> trend([1.0, 1.0, 1.0, float("nan")]).tolist()
    [1.0, 1.0, 1.0, nan]
    """
    losses = np.asarray(losses, dtype=np.float64)
    _, finite = _finite_prefix(losses, losses)
    out = np.full(losses.shape, np.nan)
    n = finite.size
    if n == 0:
        return out
    if width <= 0:
        out[:n] = finite
        return out
    index = np.arange(n)
    weights = np.exp(-0.5 * ((index[:, None] - index[None, :]) / width) ** 2)
    out[:n] = (weights @ finite) / weights.sum(axis=1)
    return out


def effective_lrs(lrs, momentum: float = 0.0):
    """The learning rate that actually drives each step of a sweep.

    With heavy-ball momentum `m` (SGD, RMSprop), a gradient taken at step `j`
    keeps moving the weights for about `1 / (1 - m)` steps at the learning rate
    of step `j`. While the learning rate grows quickly, as in a range test, the
    step size at step `i` is therefore set by a moving average of the recent
    learning rates, `(1 - m) * sum_k m**k * lr[i - k]` (bias-corrected), which is
    well below `lr[i]`: about 0.4x for `m = 0.9` on the default sweep. Reading
    suggestions against this effective LR keeps SGD with momentum from being
    pushed past its edge of stability. Adam-style optimizers apply the learning
    rate when the update is made, so they need no correction (`momentum=0`).

    Example:

    >>> effective_lrs([1.0, 2.0, 4.0], momentum=0.0).tolist()
    [1.0, 2.0, 4.0]
    >>> effective_lrs([1.0, 2.0, 4.0], momentum=0.5).round(3).tolist()
    [1.0, 1.667, 3.0]
    """
    lrs = np.asarray(lrs, dtype=np.float64)
    if not momentum:
        return lrs.copy()
    return smooth_losses(lrs, momentum)


def _minimum_index(losses):
    return int(np.argmin(losses)) if losses.size else 0


STEEPEST_DECADES = 3.0


def steepest(lrs, losses) -> float | None:
    """LR where the loss falls fastest against log LR.

    The slope is taken against `log(lr)`, the axis the sweep is uniform on
    (taking it against the raw LR, as some finders do, biases the answer towards
    large LRs). Only the part of the curve before its minimum, and at most
    `STEEPEST_DECADES` (3) decades below it, is searched: a noisy curve can
    have a steeper wiggle far below the descent that leads to the minimum.

    Example:

    >>> lrs = np.logspace(-4, 0, 41)
    >>> losses = 2.0 - np.tanh(np.log10(lrs) + 2.0)  # steepest at 1e-2
    >>> float(round(steepest(lrs, losses), 6))
    0.01
    """
    lrs, losses = _finite_prefix(lrs, losses)
    end = _minimum_index(losses) + 1
    if end < 3:
        return None
    slope = np.gradient(losses[:end], np.log(lrs[:end]))
    # Only the descent that leads to the minimum: on a noisy curve (small
    # batches, little data) a wiggle decades below it can otherwise be steeper.
    far = lrs[:end] < lrs[end - 1] / 10.0**STEEPEST_DECADES
    slope[far] = np.inf
    best = int(np.argmin(slope))
    if slope[best] >= 0:
        return None
    return float(lrs[best])


def valley(lrs, losses, start_fraction: float = 0.2) -> float | None:
    """LR in the middle of the descent, after fastai's "valley" rule.

    Takes the longest decreasing subsequence of the curve and returns the LR
    halfway through it on the log scale. The search starts once the loss has
    fallen by `start_fraction` of its total drop: the flat start of a range test
    is noise, and a decreasing subsequence threaded through it would drag the
    answer decades too low. A cautious rule: it rarely points past the edge of
    stability, and usually lies a few times below the best LR.

    Example:

    >>> lrs = np.logspace(-4, 0, 5)
    >>> float(valley(lrs, [3.0, 2.0, 1.0, 0.5, 4.0]))
    0.01
    """
    lrs, losses = _finite_prefix(lrs, losses)
    best = _minimum_index(losses)
    if best < 2:
        return None
    drop = losses[0] - losses[best]
    first = int(np.argmax(losses[: best + 1] <= losses[0] - start_fraction * drop))
    lrs, losses = lrs[first:], losses[first:]
    n = losses.size
    length = np.ones(n, dtype=np.int64)
    start = np.arange(n)
    for i in range(1, n):
        earlier = np.flatnonzero(losses[:i] > losses[i])
        if earlier.size:
            j = earlier[np.argmax(length[earlier])]
            length[i] = length[j] + 1
            start[i] = start[j]
    end = int(np.argmax(length))
    if length[end] < 2:
        return None
    begin = int(start[end])
    log_mid = 0.5 * (math.log(lrs[begin]) + math.log(lrs[end]))
    mid = int(np.argmin(np.abs(np.log(lrs[begin : end + 1]) - log_mid))) + begin
    return float(lrs[mid])


def minimum(lrs, losses, factor: float = 10.0) -> float | None:
    """LR of the lowest loss divided by `factor` (the classic rule of thumb).

    Example:

    >>> float(minimum([0.01, 0.1, 1.0], [2.0, 1.0, 3.0]))
    0.01
    """
    lrs, losses = _finite_prefix(lrs, losses)
    best = _minimum_index(losses)
    if best == 0:
        return None
    return float(lrs[best] / factor)


SUGGESTION_RULES: Mapping[str, Callable] = {
    "steepest": steepest,
    "valley": valley,
    "minimum": minimum,
}


# `auto` = sqrt(lr_at_lowest_loss * steepest) / AGREE_MARGIN. Chosen on the
# worst case over tasks and seeds (benchmarks/bench_lr_quality.py): the LR of
# the lowest loss is near the edge of stability, the steepest point is where
# learning is fastest; their geometric mean, kept a margin below, was within
# 3% of the best LR of a dense grid on every design task.
AGREE_MARGIN = 1.4


def agree(lrs, losses, suggestions: Mapping[str, float | None]) -> float | None:
    """One LR agreed from the curve and the individual rules.

    The geometric mean of the LR at the lowest point of the trend (close to the
    edge of stability) and the `steepest` LR (fastest learning), divided by a
    safety margin of 1.4. It is always below the LR of the lowest loss. When the
    curve has no steepest point, the LR of the lowest loss divided by 2.

    Args:
        lrs: The (effective) learning rates of the sweep.
        losses: The trend of the losses (see `trend`).
        suggestions: The values of the individual rules (`None` where a rule
            had no answer).

    Returns:
        The agreed LR, or `None` when the curve supports no suggestion.

    Example:

    >>> lrs = np.logspace(-4, 0, 41)
    >>> losses = 2.0 - np.tanh(np.log10(lrs) + 2.0) + (lrs > 0.1) * 30 * lrs
    >>> rules = {"steepest": steepest(lrs, losses)}
    >>> round(agree(lrs, losses, rules) / 0.01, 2)  # sqrt(0.1 * 0.01) / 1.4
    2.26
    """
    lrs, losses = _finite_prefix(lrs, losses)
    best = _minimum_index(losses)
    if best == 0:
        return None
    lowest = float(lrs[best])
    fastest = suggestions.get("steepest")
    if not fastest:
        return lowest / 2.0
    return math.sqrt(lowest * fastest) / AGREE_MARGIN


def _step_noise(losses) -> float:
    """Noise of a curve from its successive differences (robust to a trend):
    their median absolute deviation, scaled to a standard deviation, / sqrt(2)."""
    steps = np.diff(np.asarray(losses, dtype=np.float64))
    if not steps.size:
        return 0.0
    return 1.4826 * float(np.median(np.abs(steps))) / math.sqrt(2)


# A fall counts when the trend drops below its starting level by more than
# MIN_FALL of that level and by more than FALL_NOISE times the curve's
# point-to-point noise (the lowest point of a smoothed noise-only curve lies
# about one noise unit below its start);
# it starts where the trend has covered FALL_FRACTION of its drop.
MIN_FALL = 0.02
FALL_NOISE = 1.5
FALL_FRACTION = 0.1


def fall_start(lrs, trend, losses) -> float | None:
    """The LR at which the loss starts to fall, or `None` if it never did.

    A suggestion below this LR would hand out a learning rate at which the
    loss was not seen to fall (a "dead" suggestion: trained, the model stays
    where it started). The curve's starting level is the median of its first
    few raw losses; the loss has fallen when the trend's lowest point lies
    below that level by more than `MIN_FALL` (2%) of it and by more than
    `FALL_NOISE` (1.5) times the point-to-point noise of the raw losses. The
    fall starts at the last LR, before the lowest point, where the trend has
    covered less than `FALL_FRACTION` (10%) of the drop.

    Args:
        lrs: The (effective) learning rates of the sweep.
        trend: The trend of the losses (see `trend`).
        losses: The raw per-step losses (for the starting level and noise).

    Returns:
        The LR where the fall starts, or `None` when the loss did not fall
        (flat, or a "fall" no larger than the noise).

    Example:

    >>> lrs = np.logspace(-4, 0, 41)
    >>> curve = 2.0 - np.tanh(2 * (np.log10(lrs) + 2.0))  # falls around 1e-2
    >>> 1e-3 < fall_start(lrs, curve, curve) < 1e-2
    True
    >>> fall_start(lrs, np.ones(41), np.ones(41)) is None  # never fell
    True
    """
    lrs = np.asarray(lrs, dtype=np.float64)
    losses = np.asarray(losses, dtype=np.float64)
    lrs, curve = _finite_prefix(lrs, trend)
    if curve.size < 3:
        return None
    raw = losses[: curve.size]
    best = _minimum_index(curve)
    if best == 0:
        return None
    head = max(3, min(10, best // 4))
    start = float(np.median(raw[:head]))
    drop = start - float(curve[best])
    noise = _step_noise(raw[: best + 1])
    if drop <= MIN_FALL * abs(start) or drop <= FALL_NOISE * noise:
        return None
    level = start - FALL_FRACTION * drop
    above = np.flatnonzero(curve[: best + 1] >= level)
    return float(lrs[above[-1]] if above.size else lrs[0])


def interval(suggestions: Mapping[str, float | None]) -> tuple[float, float] | None:
    """The spread of the suggestions: `(lowest, highest)` suggested LR.

    Example:

    >>> interval({"steepest": 0.01, "valley": 0.004, "minimum": None})
    (0.004, 0.01)
    """
    values = [v for v in suggestions.values() if v is not None and v > 0]
    if not values:
        return None
    return (float(min(values)), float(max(values)))


def diagnose(
    lrs,
    losses,
    smoothed,
    *,
    diverged: bool,
    max_lr: float | None = None,
    min_points: int = 10,
) -> list[str]:
    """Reasons a range-test curve may be unusable, each with the fix.

    Args:
        lrs: The swept learning rates.
        losses: The raw per-step losses.
        smoothed: The smoothed losses.
        diverged: Whether the sweep stopped because the loss diverged.
        max_lr: The sweep's upper bound, quoted in the advice.
        min_points: Fewer recorded points than this is "too few".

    Returns:
        A list of human-readable problems; empty when the curve looks sound.

    Example:

    >>> import numpy as np
    >>> lrs = np.geomspace(1e-5, 1e-3, 30)
    >>> flat = np.ones(30)
    >>> print(diagnose(lrs, flat, flat, diverged=False)[0])
    The smoothed loss never fell ...
    """
    problems = []
    lrs = np.asarray(lrs, dtype=np.float64)
    losses = np.asarray(losses, dtype=np.float64)
    smoothed = np.asarray(smoothed, dtype=np.float64)
    n = losses.size
    if n < min_points:
        problems.append(
            f"Only {n} points were recorded (fewer than {min_points}); the "
            "suggestion is unreliable. Raise `num_steps`, or lower `min_lr` if "
            "the loss diverged early."
        )
        if n < 2:
            return problems
    _, f_smoothed = _finite_prefix(lrs, smoothed)
    if f_smoothed.size < 2:
        return problems
    best = int(np.argmin(f_smoothed))
    start = f_smoothed[0]
    drop = start - f_smoothed[best]
    if best == 0 or drop <= 0.02 * abs(start):
        problems.append(
            "The smoothed loss never fell below its starting value by more than "
            "2%; no learning rate in the sweep trained the model. Lower `min_lr`, "
            "check the loss and labels, or the model may already be converged."
        )
        return problems
    end_value = f_smoothed[-1]
    if not diverged and f_smoothed.size == smoothed.size and (
        end_value - f_smoothed[best] < 0.1 * drop
    ):
        where = f" above max_lr={max_lr:g}" if max_lr is not None else ""
        problems.append(
            "The loss had not started to rise by the end of the sweep, so the "
            "edge of stability was not found and the suggestion may be too low. "
            f"Raise `max_lr` (try 10x{where})."
        )
    noise = _step_noise(losses[: best + 1])
    if noise > drop:
        problems.append(
            f"The loss curve is noisy (noise {noise:.3g} exceeds the drop "
            f"{drop:.3g}); the suggestion is uncertain. Use a larger `batch_size`, "
            "more `num_steps`, or `validation_data`."
        )
    return problems


def divergence_lr(lrs, trend, *, diverged: bool = False) -> float | None:
    """The LR at which the loss trend climbed back above its starting value.

    The edge of stability seen by a range test: the first LR past the trend's
    minimum where the trend exceeds its first value. If the trend never
    climbs back but the sweep stopped early (non-finite losses, or `diverged`),
    the last LR swept; if the whole sweep stayed below the start, `None`.

    Args:
        lrs: The (effective) learning rates of the sweep.
        trend: The loss trend at each of them (see `trend`).
        diverged: Whether the sweep was stopped for divergence.

    Example:

    >>> lrs = np.geomspace(1e-4, 1.0, 50)
    >>> curve = 1.0 - 0.5 * np.log10(lrs / 1e-4) / 4 + 40 * lrs ** 2
    >>> 0.05 < divergence_lr(lrs, curve) < 0.3
    True
    >>> divergence_lr(lrs, 1.0 - 0.01 * np.arange(50)) is None  # never climbs
    True
    """
    lrs = np.asarray(lrs, dtype=np.float64)
    trend = np.asarray(trend, dtype=np.float64)
    finite = np.isfinite(trend)
    if not finite.any():
        return None
    n = int(finite.sum()) if finite.all() else int(np.argmin(finite))
    complete = n == lrs.size
    lrs, trend = lrs[:n], trend[:n]
    best = int(np.argmin(trend))
    above = np.flatnonzero(trend[best:] > trend[0])
    if above.size:
        return float(lrs[best + above[0]])
    if not complete or diverged:
        return float(lrs[-1])
    return None

"""Pure math of the LR range test: the sweep, smoothing and suggestion rules.

Everything here works on plain numbers and NumPy arrays; nothing touches Keras.
Each suggestion rule has the same signature, ``rule(lrs, losses) -> float | None``,
where ``losses`` is the *smoothed* curve, and returns ``None`` when the curve does
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


def steepest(lrs, losses) -> float | None:
    """LR where the loss falls fastest against log LR.

    The slope is taken against `log(lr)`, the axis the sweep is uniform on
    (taking it against the raw LR, as some finders do, biases the answer towards
    large LRs). Only the part of the curve before its minimum is searched.

    Example:

    >>> lrs = np.logspace(-4, 0, 41)
    >>> losses = 2.0 - np.tanh(np.log10(lrs) + 2.0)  # steepest at 1e-2
    >>> float(round(steepest(lrs, losses), 6))
    0.01
    """
    lrs, losses = _finite_prefix(lrs, losses)
    if losses.size < 3:
        return None
    end = int(np.argmin(losses)) + 1
    if end < 3:
        return None
    log_lr = np.log(lrs[:end])
    slope = np.gradient(losses[:end], log_lr)
    best = int(np.argmin(slope))
    if slope[best] >= 0:
        return None
    return float(lrs[best])


def valley(lrs, losses) -> float | None:
    """LR in the middle of the longest descending stretch of the curve.

    Finds the longest decreasing subsequence of the loss curve (the "valley")
    and returns the LR halfway through it on the log scale, an idea from
    fastai's `valley` rule. It is a cautious rule: it rarely points past the
    edge of stability, and tends to be a few times lower than the best LR.

    Example:

    >>> lrs = np.logspace(-4, 0, 5)
    >>> float(valley(lrs, [3.0, 2.0, 1.0, 0.5, 4.0]))
    0.01
    """
    lrs, losses = _finite_prefix(lrs, losses)
    n = losses.size
    if n < 3:
        return None
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
    first = int(start[end])
    log_mid = 0.5 * (math.log(lrs[first]) + math.log(lrs[end]))
    mid = int(np.argmin(np.abs(np.log(lrs[first : end + 1]) - log_mid))) + first
    return float(lrs[mid])


def minimum(lrs, losses, factor: float = 10.0) -> float | None:
    """LR of the lowest loss divided by `factor` (the classic rule of thumb).

    Example:

    >>> float(minimum([0.01, 0.1, 1.0], [2.0, 1.0, 3.0]))
    0.01
    """
    lrs, losses = _finite_prefix(lrs, losses)
    if losses.size < 2:
        return None
    best = int(np.argmin(losses))
    if best == 0:
        return None
    return float(lrs[best] / factor)


SUGGESTION_RULES: Mapping[str, Callable] = {
    "steepest": steepest,
    "valley": valley,
    "minimum": minimum,
}


def agree(lrs, losses, suggestions: Mapping[str, float | None]) -> float | None:
    """One LR agreed from the individual rules.

    The geometric median of the rules' values (robust to one rule that goes
    astray), capped at a third of the LR of the lowest loss, which is close to
    the edge of stability: a suggestion must never be the reason a run fails.

    Args:
        lrs: The swept learning rates.
        losses: The smoothed losses.
        suggestions: The values of the individual rules (`None` where a rule
            had no answer).

    Returns:
        The agreed LR, or `None` when no rule has an answer.
    """
    values = [v for v in suggestions.values() if v is not None and v > 0]
    if not values:
        return None
    agreed = float(np.exp(np.median(np.log(values))))
    lrs, losses = _finite_prefix(lrs, losses)
    if losses.size >= 2:
        best = int(np.argmin(losses))
        if best > 0:
            agreed = min(agreed, float(lrs[best]) / 3.0)
    return agreed


def interval(suggestions: Mapping[str, float | None]) -> tuple[float, float] | None:
    """The spread of the rules: `(lowest, highest)` suggested LR."""
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
    # Noise from successive differences (robust to the trend): MAD / sqrt(2).
    steps = np.diff(losses[: best + 1])
    noise = 0.0
    if steps.size:
        noise = 1.4826 * float(np.median(np.abs(steps))) / math.sqrt(2)
    if noise > drop:
        problems.append(
            f"The loss curve is noisy (noise {noise:.3g} exceeds the drop "
            f"{drop:.3g}); the suggestion is uncertain. Use a larger `batch_size`, "
            "more `num_steps`, or `validation_data`."
        )
    return problems

"""Pure math of the adaptive batch size: when the noise scale says to move.

The critical batch size follows the gradient noise scale `B_simple`
(McCandlish et al., 2018) and changes during training, up and down. The rule
here moves a batch size in power-of-two steps toward `fraction * B_simple`,
but only when the estimate's bootstrap interval lies clearly beyond the next
step (hysteresis): up when even the low end of `fraction * B_simple` reaches
twice the batch, down when even its high end is below half of it. Between the
two, the batch stays.

The noise scale is a proxy for the critical batch size. The direct measure
(Merrill et al., 2025) trains short branches from one state at the current
and at the larger batch, on the same samples, and compares their losses:
`branch_accepts` says whether a rise loses too much progress per sample, and
`retry_epoch` when to try again after a refusal. NumPy and the standard
library only.
"""

from __future__ import annotations

import math

from kbatch.critical import estimators

__all__ = ["Decision", "branch_accepts", "next_batch_size", "power_of_two_sizes",
           "retry_epoch"]


def power_of_two_sizes(batch_size: int, min_batch_size: int, max_batch_size: int):
    """The sizes `batch_size * 2**k` within `[min_batch_size, max_batch_size]`.

    Example:

    >>> power_of_two_sizes(32, 8, 300)
    [8, 16, 32, 64, 128, 256]
    """
    sizes, size = [], batch_size
    while size // 2 >= min_batch_size and size % 2 == 0:
        size //= 2
    while size <= max_batch_size:
        if size >= min_batch_size:
            sizes.append(size)
        size *= 2
    return sizes


class Decision:
    """The rule's answer: the next batch size and the evidence for it.

    Attributes:
        batch_size: The batch size to train at next.
        b_simple: The estimate of `B_simple` from the measurements used.
        interval: Its `(low, high)` bootstrap interval.
        reason: `"up"`, `"down"`, `"hold"` or `"too few measurements"`.

    Example:

    >>> Decision(128, 610.0, (420.0, 900.0), "up")
    Decision(up: batch 128, B_simple 610 in [420, 900])
    """

    def __init__(self, batch_size, b_simple, interval, reason):
        self.batch_size = int(batch_size)
        self.b_simple = b_simple
        self.interval = interval
        self.reason = reason

    def __repr__(self):
        low, high = self.interval
        return (f"Decision({self.reason}: batch {self.batch_size}, B_simple "
                f"{self.b_simple:.4g} in [{low:.3g}, {high:.3g}])")


def next_batch_size(batch_size, g_sq, trace, *, sizes, fraction=0.5,
                    confidence=0.9, min_measurements=6, max_growth=4):
    """Where the batch goes next, from noise-scale measurements.

    Args:
        batch_size: The current batch size (one of `sizes`).
        g_sq, trace: Recent per-measurement estimates of `|G|^2` and
            `tr(Sigma)` (see `kbatch.critical.estimators`).
        sizes: The allowed batch sizes, increasing (`power_of_two_sizes`).
        fraction: The batch aimed at is `fraction * B_simple`.
        confidence: Of the bootstrap interval.
        min_measurements: Fewer finite measurements than this: hold.
        max_growth: At most this factor up (or down) in one decision.

    Returns:
        A `Decision`.

    Example:

    >>> sizes = [32, 64, 128, 256, 512]
    >>> g, t = [1.0, 1.1, 0.9, 1.0, 1.05, 0.95], [600, 640, 560, 610, 590, 600]
    >>> next_batch_size(32, g, t, sizes=sizes).batch_size  # 0.5 * ~600: x4 at most
    128
    >>> next_batch_size(256, g, t, sizes=sizes).batch_size  # within the band
    256
    >>> next_batch_size(512, g, [60, 64, 56, 61, 59, 60], sizes=sizes).batch_size
    128
    """
    sizes = sorted(int(s) for s in sizes)
    if batch_size not in sizes:
        raise ValueError(
            f"batch_size={batch_size} is not one of the allowed sizes {sizes}.")
    pairs = [(g, t) for g, t in zip(g_sq, trace)
             if math.isfinite(g) and math.isfinite(t)]
    g = [p[0] for p in pairs]
    t = [p[1] for p in pairs]
    estimate = estimators.b_simple(g, t) if pairs else math.nan
    low, high = estimators.bootstrap_interval(g, t, confidence)
    if len(pairs) < min_measurements:
        return Decision(batch_size, estimate, (low, high), "too few measurements")
    index = sizes.index(batch_size)
    steps = max(1, round(math.log2(max_growth)))
    target_low, target_high = fraction * low, fraction * high
    up = [s for s in sizes[index + 1:index + 1 + steps] if s <= target_low]
    if up:
        return Decision(up[-1], estimate, (low, high), "up")
    # down: to the smallest size still at or above the high end (at least one
    # step, at most `steps`), when even the high end is below half the batch
    if index > 0 and target_high < batch_size / 2:
        below = sizes[max(0, index - steps):index]
        fitting = [s for s in below if s >= target_high]
        return Decision(fitting[0] if fitting else below[0], estimate,
                        (low, high), "down")
    return Decision(batch_size, estimate, (low, high), "hold")


def branch_accepts(loss_start, loss_current, loss_candidate, tolerance=0.1):
    """Whether a larger batch kept the progress per sample of the current one.

    Two branches trained from one state on the same samples, one at the
    current batch and one at the candidate (its LR scaled), end at
    `loss_current` and `loss_candidate` (on the same held-out samples; the
    state started at `loss_start`). The candidate is accepted when it made at
    least `1 - tolerance` of the current batch's progress: `loss_candidate <=
    loss_current + tolerance * (loss_start - loss_current)`. Without progress
    at the current batch, when it is not worse. A NaN candidate loss is never
    accepted.

    Example:

    >>> branch_accepts(1.0, 0.8, 0.81)   # 95% of the progress
    True
    >>> branch_accepts(1.0, 0.8, 0.85)   # 75%
    False
    >>> branch_accepts(0.5, 0.52, 0.51)  # no progress at either: not worse
    True
    """
    if not all(math.isfinite(v) for v in (loss_start, loss_current)):
        return math.isfinite(loss_candidate)
    if not math.isfinite(loss_candidate):
        return False
    progress = max(loss_start - loss_current, 0.0)
    return loss_candidate <= loss_current + tolerance * progress


def retry_epoch(epoch, refusals):
    """The first epoch at which a rise is tried again after `refusals`
    refusals in a row, the last at `epoch` (the wait doubles: 2, 4, 8, ...).

    Example:

    >>> [retry_epoch(3, r) for r in (1, 2, 3)]
    [5, 7, 11]
    """
    return int(epoch) + 2 ** int(refusals)

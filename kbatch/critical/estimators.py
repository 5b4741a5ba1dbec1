"""Pure math of the gradient noise scale (McCandlish et al., 2018).

The simple noise scale `B_simple = tr(Sigma) / |G|^2` compares the variance of
per-example gradients with the squared norm of the true gradient; the critical
batch size, past which a larger batch stops buying proportionally fewer steps,
is of its order. Neither quantity is observed directly: from the squared norms
of gradients averaged over a small and a big batch,
`E|G_B|^2 = |G|^2 + tr(Sigma) / B`, so two batch sizes give two equations:

    |G|^2     ~ (B_big |G_big|^2 - B_small |G_small|^2) / (B_big - B_small)
    tr(Sigma) ~ (|G_small|^2 - |G_big|^2) / (1 / B_small - 1 / B_big)

(Appendix A.1 of the paper). Both are unbiased but noisy, so each is smoothed
with its own bias-corrected exponential moving average before taking the ratio.

Reference: S. McCandlish, J. Kaplan, D. Amodei and the OpenAI Dota team, "An
Empirical Model of Large-Batch Training", 2018, https://arxiv.org/abs/1812.06162.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "NoiseScaleEMA",
    "b_simple",
    "bootstrap_interval",
    "two_batch_estimates",
]


def two_batch_estimates(g_small_sq, g_big_sq, b_small, b_big):
    """Unbiased estimates of `|G|^2` and `tr(Sigma)` from two batch sizes.

    Args:
        g_small_sq: Squared gradient norm at batch size `b_small` (averaged
            over several small batches, for less noise).
        g_big_sq: Squared gradient norm at batch size `b_big`.
        b_small, b_big: The two batch sizes, `b_small < b_big`.

    Returns:
        `(g_sq, trace)`.

    Example:

    >>> # |G|^2 = 1, tr(Sigma) = 64: E|G_8|^2 = 9, E|G_64|^2 = 2
    >>> two_batch_estimates(9.0, 2.0, 8, 64)
    (1.0, 64.0)
    """
    if not b_small < b_big:
        raise ValueError(
            "The small batch must be smaller than the big one. Received: "
            f"b_small={b_small}, b_big={b_big}"
        )
    g_sq = (b_big * g_big_sq - b_small * g_small_sq) / (b_big - b_small)
    trace = (g_small_sq - g_big_sq) / (1.0 / b_small - 1.0 / b_big)
    return g_sq, trace


class NoiseScaleEMA:
    """Bias-corrected moving averages of `|G|^2` and `tr(Sigma)`, and their ratio.

    Non-finite measurements (a loss-scaled step that overflowed) are skipped.

    Example:

    >>> ema = NoiseScaleEMA(beta=0.5)
    >>> _ = ema.update(1.0, 64.0)
    >>> _ = ema.update(3.0, 64.0)
    >>> round(ema.b_simple, 3)  # 64 / ((0.25 + 1.5) / 0.75)
    27.429
    """

    def __init__(self, beta: float = 0.99):
        if not 0.0 <= beta < 1.0:
            raise ValueError(
                f"Argument `beta` must be in [0, 1). Received: beta={beta}")
        self.beta = float(beta)
        self.reset()

    def reset(self):
        self.count = 0
        self._g_sq = 0.0
        self._trace = 0.0

    def update(self, g_sq: float, trace: float) -> bool:
        """Fold in one measurement; returns False (and ignores it) if not finite."""
        if not (math.isfinite(g_sq) and math.isfinite(trace)):
            return False
        self._g_sq = self.beta * self._g_sq + (1.0 - self.beta) * g_sq
        self._trace = self.beta * self._trace + (1.0 - self.beta) * trace
        self.count += 1
        return True

    @property
    def g_sq(self) -> float:
        if not self.count:
            return math.nan
        return self._g_sq / (1.0 - self.beta**self.count)

    @property
    def trace(self) -> float:
        if not self.count:
            return math.nan
        return self._trace / (1.0 - self.beta**self.count)

    @property
    def b_simple(self) -> float:
        """`tr(Sigma) / |G|^2`; `inf` while the gradient signal is not above noise."""
        g_sq = self.g_sq
        if not math.isfinite(g_sq):
            return math.nan
        if g_sq <= 0:
            return math.inf
        return self.trace / g_sq


def b_simple(g_sq_series, trace_series) -> float:
    """`tr(Sigma) / |G|^2` from the means of two series of estimates.

    Example:

    >>> b_simple([1.0, 3.0], [100.0, 300.0])
    100.0
    """
    g_sq = float(np.mean(g_sq_series))
    trace = float(np.mean(trace_series))
    if g_sq <= 0:
        return math.inf
    return trace / g_sq


def bootstrap_interval(g_sq_series, trace_series, confidence: float = 0.9,
                       num_resamples: int = 2000, seed: int = 0):
    """Percentile bootstrap interval of `B_simple` over measurement pairs.

    Each measurement gives a pair `(|G|^2, tr(Sigma))`; pairs are resampled
    with replacement and the ratio of means is recomputed. Resamples where the
    mean `|G|^2` is not positive count as infinite.

    Returns:
        `(low, high)`; `(nan, nan)` with fewer than two measurements.

    Example:

    >>> low, high = bootstrap_interval([1.0, 1.2, 0.8, 1.1], [50, 60, 40, 55])
    >>> bool(low <= b_simple([1.0, 1.2, 0.8, 1.1], [50, 60, 40, 55]) <= high)
    True
    """
    g = np.asarray(g_sq_series, dtype=np.float64)
    t = np.asarray(trace_series, dtype=np.float64)
    keep = np.isfinite(g) & np.isfinite(t)
    g, t = g[keep], t[keep]
    if g.size < 2:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, g.size, size=(num_resamples, g.size))
    g_mean = g[idx].mean(axis=1)
    t_mean = t[idx].mean(axis=1)
    ratios = np.where(g_mean > 0, t_mean / np.where(g_mean > 0, g_mean, 1.0), np.inf)
    tail = (1.0 - confidence) / 2.0
    # between two infinite ratios the interpolation is inf - inf: that
    # quantile is infinite (no ratio is nan)
    with np.errstate(invalid="ignore"):
        low, high = np.quantile(ratios, [tail, 1.0 - tail])
    return (float(np.nan_to_num(low, nan=np.inf)),
            float(np.nan_to_num(high, nan=np.inf)))

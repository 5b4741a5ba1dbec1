"""Pure math of the batch-size measurements: the laws fitted to the suggested
LR across batch sizes, and the knee of the throughput curve.

- a power law `lr* = c * B**alpha` (least squares in log-log): `alpha ~ 1` means
  linear scaling holds, `alpha ~ 0.5` square-root scaling;
- McCandlish et al.'s `lr* = eps_max / (1 + B_noise / B)` (arXiv:1812.06162):
  linear below the noise scale `B_noise`, flat above it;
- the throughput knee: the smallest batch size that reaches a fraction of the
  best measured samples per second.

NumPy only; nothing here imports Keras.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["fit_noise_law", "fit_power_law", "rule_for_exponent",
           "throughput_knee"]


def fit_power_law(batch_sizes, learning_rates):
    """Least-squares fit of `log lr = log c + alpha log B`.

    Returns:
        `(alpha, c)`.

    Example:

    >>> alpha, c = fit_power_law([32, 128, 512], [0.01, 0.02, 0.04])
    >>> round(alpha, 3), round(c * 32 ** alpha, 4)
    (0.5, 0.01)
    """
    b = np.log(np.asarray(batch_sizes, dtype=np.float64))
    lr = np.log(np.asarray(learning_rates, dtype=np.float64))
    if b.size < 2 or np.ptp(b) == 0:
        raise ValueError("A power law needs learning rates at two or more batch "
                         f"sizes. Received: batch_sizes={list(batch_sizes)}")
    alpha, log_c = np.polyfit(b, lr, 1)
    return float(alpha), float(math.exp(log_c))


def fit_noise_law(batch_sizes, learning_rates):
    """Fit `lr = eps_max / (1 + B_noise / B)` by least squares in log space.

    `B_noise` is searched on a fine log grid spanning far beyond the measured
    batch sizes; for each candidate, `log eps_max` has a closed form.

    Returns:
        `(eps_max, b_noise, rms)`, the last the root-mean-square residual in
        natural-log units.

    Example:

    >>> b = np.array([16, 64, 256, 1024])
    >>> eps, bn, _ = fit_noise_law(b, 0.5 / (1 + 200 / b))
    >>> round(eps, 3), round(bn)
    (0.5, 200)
    """
    b = np.asarray(batch_sizes, dtype=np.float64)
    log_lr = np.log(np.asarray(learning_rates, dtype=np.float64))
    if b.size < 2:
        raise ValueError("The noise law needs learning rates at two or more batch "
                         f"sizes. Received: batch_sizes={list(batch_sizes)}")
    candidates = np.geomspace(b.min() / 1000.0, b.max() * 1000.0, 4001)
    penalty = np.log1p(candidates[:, None] / b[None, :])  # (k, n)
    log_eps = (log_lr[None, :] + penalty).mean(axis=1)
    residual = log_lr[None, :] - (log_eps[:, None] - penalty)
    sse = (residual**2).mean(axis=1)
    best = int(np.argmin(sse))
    return float(math.exp(log_eps[best])), float(candidates[best]), float(
        math.sqrt(sse[best]))


def rule_for_exponent(alpha: float) -> str:
    """The textbook rule nearest to a measured exponent `alpha` of
    `lr* ~ B**alpha`: `"linear"` from 0.75, `"sqrt"` from 0.25, else `"none"`.

    Example:

    >>> [rule_for_exponent(a) for a in (0.9, 0.5, 0.04)]
    ['linear', 'sqrt', 'none']
    """
    if alpha >= 0.75:
        return "linear"
    if alpha >= 0.25:
        return "sqrt"
    return "none"


def throughput_knee(batch_sizes, samples_per_second, fraction: float = 0.9):
    """The smallest batch size reaching `fraction` of the best throughput.

    Sizes with no measurement (`nan`, e.g. out of memory) are ignored.

    Example:

    >>> throughput_knee([32, 64, 128, 256], [1000, 1800, 2300, 2400])
    128
    """
    sizes = np.asarray(batch_sizes)
    speed = np.asarray(samples_per_second, dtype=np.float64)
    ok = np.isfinite(speed)
    if not ok.any():
        return None
    best = speed[ok].max()
    candidates = sizes[ok & (speed >= fraction * best)]
    return int(candidates.min())

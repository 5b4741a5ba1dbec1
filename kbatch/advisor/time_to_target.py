"""Pure math of the advisor: the relative time to reach a loss at each batch
size (McCandlish et al. 2018, arXiv:1812.06162). NumPy only."""

from __future__ import annotations

import numpy as np

__all__ = ["time_to_target"]


def time_to_target(batch_sizes, samples_per_second, b_noise):
    """Relative wall time to reach a given loss, per batch size.

    McCandlish et al. (2018): the steps needed at batch `B` are
    `S_min * (1 + B_noise / B)`, and one step takes `B / throughput(B)`
    seconds, so the time is proportional to `(B + B_noise) / throughput(B)`.
    Returned normalised so that the best batch size scores 1.

    Example:

    >>> time_to_target([32, 64, 128], [1000, 1900, 2000], b_noise=64).round(2).tolist()
    [1.42, 1.0, 1.42]
    """
    b = np.asarray(batch_sizes, dtype=np.float64)
    speed = np.asarray(samples_per_second, dtype=np.float64)
    with np.errstate(divide="ignore"):  # no throughput: infinite time
        cost = (b + b_noise) / speed
    return cost / np.nanmin(cost) if np.isfinite(cost).any() else cost

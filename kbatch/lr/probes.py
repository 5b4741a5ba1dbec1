"""Pure math of the LR-for-batch-size measurement (NumPy only).

`kbatch.lr_for_batch_sizes` trains short probes at a ladder of learning
rates for each batch size and reads the best LR off their validation losses.
The pieces here work on plain numbers: where the ladder goes next, the
vertex of the loss against log LR, the band of LRs as good as the best, and
the interpolation between measured batch sizes.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "BAND_TOLERANCE",
    "band",
    "interpolate",
    "next_rung",
    "search",
    "vertex",
]


def _sorted(lrs, losses):
    lrs = np.asarray(lrs, dtype=np.float64)
    losses = np.asarray(losses, dtype=np.float64)
    order = np.argsort(lrs)
    losses = losses[order]
    losses = np.where(np.isfinite(losses), losses, np.inf)
    return lrs[order], losses


def next_rung(lrs, losses, spacing: float, max_lr: float = math.inf):
    """The next LR to probe, or `None` once the lowest loss is bracketed.

    The ladder has one LR per `spacing` decades. The lowest loss is
    bracketed when a worse (or diverged) probe lies on each side of it; until
    then the ladder is extended one rung past the edge where the lowest loss
    sits. A probe that diverged counts as worse. The ladder never goes above
    `max_lr`.

    Args:
        lrs: The LRs probed so far.
        losses: Their validation losses (non-finite: diverged).
        spacing: Decades between rungs.
        max_lr: Upper bound of the ladder.

    Example:

    >>> next_rung([0.01, 0.1], [1.0, 0.5], spacing=1.0)  # best at the top edge
    1.0
    >>> next_rung([0.01, 0.1, 1.0], [1.0, 0.5, 0.7], spacing=1.0) is None
    True
    >>> next_rung([0.01, 0.1], [0.4, 0.5], spacing=1.0)  # best at the bottom
    0.001
    """
    lrs, losses = _sorted(lrs, losses)
    if lrs.size == 0:
        raise ValueError("next_rung needs at least one probed LR.")
    step = 10.0**spacing
    if not np.isfinite(losses).any():  # everything diverged: go down
        return float(lrs[0] / step)
    best = int(np.argmin(losses))
    if best == 0:
        return float(lrs[0] / step)
    if best == lrs.size - 1:
        up = float(lrs[-1] * step)
        return up if up <= max_lr * (1 + 1e-9) else None
    return None


def search(run, centre: float, *, spacing: float, max_rungs: int,
           repeat_best: bool = True):
    """Probe a ladder of LRs around `centre` until the lowest loss is
    bracketed; returns `(lrs, losses, runs)`.

    The ladder starts at `centre` and one rung (`spacing` decades) either
    side, and is extended by `next_rung` (at most `max_rungs` LRs). With
    `repeat_best`, the best LR is then run again and its loss becomes the
    mean of its two runs: one lucky run (a low loss on one data order, at an
    LR that fails on another) is not taken for the best; a run that diverged
    makes the mean infinite. Whatever is best after that is repeated in turn,
    and the ladder extended again if needed, until the best has run twice.

    Args:
        run: `run(lr, index) -> loss` trains one probe; `index` numbers the
            runs (a repeat gets a new one, hence another data order).
        centre: The LR the ladder starts at.
        spacing: Decades between rungs.
        max_rungs: At most this many distinct LRs.
        repeat_best: Whether to run the best LR a second time.

    Example:

    >>> lucky = {0.1: iter([0.5, 3.0])}  # 0.1 is good once, then not
    >>> def run(lr, index):
    ...     lr = round(lr, 6)
    ...     return next(lucky[lr]) if lr in lucky else abs(lr - 0.01) + 1
    >>> lrs, losses, runs = search(run, 0.1, spacing=1.0, max_rungs=6)
    >>> [round(v, 6) for v in lrs], runs  # 0.01 wins, is extended and repeated
    ([0.001, 0.01, 0.1, 1.0], 6)
    """
    step = 10.0**spacing
    lrs, losses = [], []
    runs = 0

    def one(lr):
        nonlocal runs
        runs += 1
        return float(run(lr, runs))

    for lr in (centre / step, centre, centre * step):
        lrs.append(lr)
        losses.append(one(lr))
    repeated = set()
    while True:
        while len(lrs) < max_rungs:
            nxt = next_rung(lrs, losses, spacing)
            if nxt is None:
                break
            lrs.append(nxt)
            losses.append(one(nxt))
        if not repeat_best or not any(math.isfinite(v) for v in losses):
            break
        best = int(np.argmin(np.where(np.isfinite(losses), losses, np.inf)))
        if best in repeated:
            break
        losses[best] = (losses[best] + one(lrs[best])) / 2
        repeated.add(best)
    order = np.argsort(lrs)
    return ([float(lrs[i]) for i in order], [float(losses[i]) for i in order],
            runs)


def vertex(lrs, losses) -> float:
    """The LR of the lowest loss, refined by a parabola in log LR.

    The parabola goes through the lowest point and its two neighbours; its
    vertex is kept between those neighbours. Without two finite neighbours,
    or when the three points do not curve upwards, the lowest point itself.

    Example:

    >>> lrs = [0.001, 0.01, 0.1]
    >>> float(round(vertex(lrs, [2.0, 1.0, 2.0]), 6))  # symmetric: the middle
    0.01
    >>> 0.01 < vertex(lrs, [2.0, 1.0, 1.5]) < 0.1  # leans to the better side
    True
    """
    lrs, losses = _sorted(lrs, losses)
    if not np.isfinite(losses).any():
        raise ValueError("vertex needs at least one finite loss.")
    best = int(np.argmin(losses))
    if best == 0 or best == lrs.size - 1:
        return float(lrs[best])
    x = np.log10(lrs[best - 1 : best + 2])
    y = losses[best - 1 : best + 2]
    if not np.isfinite(y).all():
        return float(lrs[best])
    a, b, _ = np.polyfit(x, y, 2)
    if a <= 0:
        return float(lrs[best])
    peak = float(np.clip(-b / (2 * a), x[0], x[2]))
    return float(10.0**peak)


BAND_TOLERANCE = 0.02


def band(lrs, losses, tolerance: float = BAND_TOLERANCE) -> tuple[float, float]:
    """The LRs whose loss is within `tolerance` (relative) of the lowest.

    Read off the piecewise-linear curve of loss against log LR, between the
    probes: `(low, high)`. A band that reaches the end of the probes is cut
    there (the measurement says nothing beyond).

    Example:

    >>> band([0.001, 0.01, 0.1], [2.0, 1.0, 2.0], tolerance=0.5)
    (0.00316..., 0.0316...)
    """
    lrs, losses = _sorted(lrs, losses)
    best = int(np.argmin(losses))
    level = losses[best] * (1 + tolerance) if losses[best] > 0 else (
        losses[best] * (1 - tolerance))
    x = np.log10(lrs)

    def edge(direction):
        i = best
        while 0 <= i + direction < lrs.size:
            j = i + direction
            if losses[j] > level:
                if not np.isfinite(losses[j]):
                    return x[i]
                t = (level - losses[i]) / (losses[j] - losses[i])
                return x[i] + t * (x[j] - x[i])
            i = j
        return x[i]

    return float(10.0 ** edge(-1)), float(10.0 ** edge(+1))


def interpolate(batch_sizes, learning_rates, batch_size: float) -> float:
    """LR at `batch_size`, from measured `(batch_sizes, learning_rates)`.

    Straight lines in log-log between measured sizes; beyond them, the power
    law through the two nearest measured sizes, with its exponent kept in
    `[0, 1]` (between no scaling and linear scaling). One measured size:
    that LR.

    Example:

    >>> interpolate([32, 128], [0.01, 0.04], 64)  # halfway in log-log
    0.02
    >>> round(interpolate([32, 128], [0.01, 0.04], 512), 6)  # exponent 1
    0.16
    """
    b = np.asarray(batch_sizes, dtype=np.float64)
    values = np.asarray(learning_rates, dtype=np.float64)
    if b.size == 0:
        raise ValueError("interpolate needs at least one measured batch size.")
    if b.size == 1:
        return float(values[0])
    order = np.argsort(b)
    b, lr = np.log(b[order]), np.log(values[order])
    x = math.log(float(batch_size))
    if b[0] <= x <= b[-1]:
        return float(round(np.exp(np.interp(x, b, lr)), 12))
    i, j = (0, 1) if x < b[0] else (-2, -1)
    slope = float(np.clip((lr[j] - lr[i]) / (b[j] - b[i]), 0.0, 1.0))
    anchor = i if x < b[0] else j
    return float(round(np.exp(lr[anchor] + slope * (x - b[anchor])), 12))

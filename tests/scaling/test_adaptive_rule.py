"""The adaptive batch-size rule: power-of-two steps, hysteresis on the interval."""

import math

import numpy as np
import pytest

from kbatch.scaling.adaptive_rule import next_batch_size
from kbatch.scaling.adaptive_rule import power_of_two_sizes

SIZES = [16, 32, 64, 128, 256, 512, 1024]


def _series(b_simple, n=20, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    g = 1.0 + noise * rng.normal(size=n)
    return list(g), list(b_simple * g * (1 + noise * rng.normal(size=n)))


def test_sizes_are_power_of_two_multiples_within_bounds():
    assert power_of_two_sizes(32, 32, 1000) == [32, 64, 128, 256, 512]
    assert power_of_two_sizes(24, 5, 100) == [6, 12, 24, 48, 96]
    assert power_of_two_sizes(7, 1, 30) == [7, 14, 28]  # odd: no smaller size


@pytest.mark.parametrize("b_simple, current, expected", [
    (1000, 16, 64),     # 0.5 * 1000 = 500 wanted; at most x4 in one step
    (1000, 64, 256),
    (1000, 256, 256),   # 500 is not >= 2 * 256: hold (hysteresis)
    (600, 128, 256),
    (130, 128, 128),    # 65: not below 128 / 2
    (100, 256, 64),     # 50 < 128: down, to the smallest size >= 50 (x4 at most)
    (20, 1024, 256),    # down by x4 at most
    (20, 16, 16),       # already the smallest
])
def test_moves_only_when_the_interval_is_clearly_past_the_next_step(
        b_simple, current, expected):
    g, t = _series(b_simple)
    decision = next_batch_size(current, g, t, sizes=SIZES, fraction=0.5)
    assert decision.batch_size == expected, decision
    assert decision.reason == ("hold" if expected == current else
                               "up" if expected > current else "down")
    low, high = decision.interval
    assert low <= decision.b_simple <= high


def test_a_wide_interval_holds_where_its_point_estimate_would_move():
    rng = np.random.default_rng(1)
    g = list(1.0 + 1.5 * rng.normal(size=8))  # |G|^2 hardly above noise
    t = list(400 + 100 * rng.normal(size=8))
    decision = next_batch_size(64, g, t, sizes=SIZES, fraction=0.5)
    assert 0.5 * decision.b_simple >= 2 * 64  # the estimate alone says up
    assert 0.5 * decision.interval[0] < 2 * 64  # its low end does not
    assert (decision.batch_size, decision.reason) == (64, "hold")


def test_too_few_measurements_hold_and_non_finite_ones_are_dropped():
    g, t = _series(5000, n=8)
    g[:4] = [math.nan] * 4
    decision = next_batch_size(16, g, t, sizes=SIZES, min_measurements=6)
    assert (decision.batch_size, decision.reason) == (16, "too few measurements")
    assert next_batch_size(16, g, t, sizes=SIZES, min_measurements=4).batch_size == 64


def test_rejects_a_batch_size_outside_the_sizes():
    g, t = _series(100)
    with pytest.raises(ValueError, match="not one of the allowed sizes"):
        next_batch_size(48, g, t, sizes=SIZES)

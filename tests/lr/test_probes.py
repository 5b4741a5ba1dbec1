"""The pure math of `lr_for_batch_sizes` and of the dead-suggestion guard,
against hand-computed values (NumPy only)."""

import math

import numpy as np
import pytest

from kbatch.lr import probes
from kbatch.lr import rules


def test_the_ladder_walks_towards_the_lowest_loss_and_stops_when_bracketed():
    assert probes.next_rung([0.01, 0.1], [1.0, 0.5], spacing=1.0) == pytest.approx(1.0)
    assert probes.next_rung([0.01, 0.1], [0.5, 1.0], spacing=0.5) == pytest.approx(
        0.01 / 10**0.5)
    assert probes.next_rung([0.01, 0.1, 1.0], [1.0, 0.5, 0.7], spacing=1.0) is None
    # a diverged probe counts as worse, on either side
    assert probes.next_rung([0.01, 0.1, 1.0], [1.0, 0.5, math.nan], 1.0) is None
    assert probes.next_rung([0.01, 0.1], [math.inf, 0.5], 1.0) == pytest.approx(1.0)
    # everything diverged: go down
    assert probes.next_rung([0.1, 1.0], [math.nan, math.inf], 1.0) == pytest.approx(
        0.01)
    # never above max_lr
    assert probes.next_rung([0.01, 0.1], [1.0, 0.5], 1.0, max_lr=0.5) is None
    assert probes.next_rung([0.01, 0.1], [1.0, 0.5], 1.0, max_lr=1.0) == 1.0
    # order of the probes does not matter
    assert probes.next_rung([0.1, 0.01], [0.5, 1.0], 1.0) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least one"):
        probes.next_rung([], [], 1.0)


def test_the_vertex_is_the_parabola_through_the_best_and_its_neighbours():
    # (x, y) = (-3, 3), (-2, 1), (-1, 2): vertex at -2 + (3 - 2) / (2 * 3)
    lr = probes.vertex([1e-3, 1e-2, 1e-1], [3.0, 1.0, 2.0])
    assert math.log10(lr) == pytest.approx(-2 + 1 / 6)
    # points away from the best do not enter the fit
    lr2 = probes.vertex([1e-4, 1e-3, 1e-2, 1e-1], [9.0, 3.0, 1.0, 2.0])
    assert lr2 == pytest.approx(lr)
    # best at an edge, or a diverged neighbour: the best probe itself
    assert probes.vertex([1e-3, 1e-2], [1.0, 2.0]) == 1e-3
    assert probes.vertex([1e-3, 1e-2, 1e-1], [2.0, 1.0, math.nan]) == 1e-2
    # flat (no upward curvature): the best probe itself
    assert probes.vertex([1e-3, 1e-2, 1e-1], [1.0, 1.0, 1.0]) == 1e-3
    with pytest.raises(ValueError, match="finite"):
        probes.vertex([1e-3, 1e-2], [math.nan, math.inf])


def test_the_band_holds_the_lrs_within_the_tolerance_of_the_best():
    low, high = probes.band([1e-3, 1e-2, 1e-1], [2.0, 1.0, 2.0], tolerance=0.5)
    assert math.log10(low) == pytest.approx(-2.5)
    assert math.log10(high) == pytest.approx(-1.5)
    # uneven sides: the level 1.02 is crossed 2% of the way to 2.0 and 1.5
    low, high = probes.band([1e-3, 1e-2, 1e-1], [2.0, 1.0, 1.5])
    assert math.log10(low) == pytest.approx(-2 - 0.02)
    assert math.log10(high) == pytest.approx(-2 + 0.04)
    # a band reaching the last probe stops there; a diverged side stops at best
    assert probes.band([1e-3, 1e-2], [1.0, 1.01]) == (1e-3, pytest.approx(1e-2))
    assert probes.band([1e-3, 1e-2], [1.0, math.nan]) == (1e-3, pytest.approx(1e-3))


def test_interpolation_is_log_log_and_extrapolation_keeps_exponent_in_0_1():
    assert probes.interpolate([32, 128], [0.01, 0.04], 64) == pytest.approx(0.02)
    assert probes.interpolate([32, 128], [0.01, 0.04], 128) == pytest.approx(0.04)
    assert probes.interpolate([128, 32], [0.04, 0.01], 64) == pytest.approx(0.02)
    # beyond: the exponent of the two nearest sizes, kept in [0, 1]
    assert probes.interpolate([32, 128], [0.01, 0.02], 512) == pytest.approx(0.04)
    assert probes.interpolate([32, 64], [0.01, 0.04], 128) == pytest.approx(0.08)
    assert probes.interpolate([32, 128], [0.04, 0.01], 512) == pytest.approx(0.01)
    assert probes.interpolate([32, 128], [0.01, 0.02], 8) == pytest.approx(0.005)
    assert probes.interpolate([64], [0.03], 1024) == 0.03
    with pytest.raises(ValueError, match="at least one"):
        probes.interpolate([], [], 64)


def test_fall_start_needs_a_fall_larger_than_noise_and_two_percent():
    # noise: the MAD of successive differences / sqrt(2), as a standard deviation
    lrs = np.geomspace(1e-5, 1.0, 100)
    rng = np.random.default_rng(0)
    # a clear fall from 2.3 to 1.3 around 1e-2
    curve = 2.3 - 0.5 * (1 + np.tanh(3 * (np.log10(lrs) + 2)))
    start = rules.fall_start(lrs, curve, curve)
    # the trend has covered 10% of the drop where tanh = -0.8
    expected = 10 ** (-2 + math.atanh(-0.8) / 3)
    assert start == pytest.approx(expected, rel=0.15)
    # the same fall buried in noise larger than it: no fall
    noisy = curve + rng.normal(scale=5.0, size=lrs.size)
    assert rules.fall_start(lrs, rules.trend(noisy), noisy) is None
    # a fall of 1% of the level: no fall
    small = 2.3 - 0.0115 * (1 + np.tanh(3 * (np.log10(lrs) + 2)))
    assert rules.fall_start(lrs, small, small) is None
    # a fall of 3%: a fall
    clear = 2.3 - 0.035 * (1 + np.tanh(3 * (np.log10(lrs) + 2)))
    assert rules.fall_start(lrs, clear, clear) is not None
    # rising from the start: no fall
    assert rules.fall_start(lrs, lrs, lrs) is None

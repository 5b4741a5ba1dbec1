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


# --- properties pinned by the mutation run (make mutation) -----------------

def test_messages_of_empty_inputs_are_exact():
    with pytest.raises(ValueError, match=r"^next_rung needs at least one probed "
                       r"LR\.$"):
        probes.next_rung([], [], 0.5)
    with pytest.raises(ValueError, match=r"^vertex needs at least one finite "
                       r"loss\.$"):
        probes.vertex([1e-3], [math.nan])
    with pytest.raises(ValueError, match=r"^interpolate needs at least one "
                       r"measured batch size\.$"):
        probes.interpolate([], [], 64)


def test_the_ladder_goes_up_from_its_highest_rung():
    assert probes.next_rung([0.01, 0.1, 1.0], [3.0, 2.0, 1.0], 1.0) == pytest.approx(
        10.0)
    assert probes.next_rung([1.0, 0.01, 0.1], [1.0, 3.0, 2.0], 0.5) == pytest.approx(
        10**0.5)


def test_the_vertex_uses_exactly_three_points_and_leans_either_way():
    five = probes.vertex([1e-4, 1e-3, 1e-2, 1e-1, 1.0], [5.0, 3.0, 1.0, 2.0, 1.5])
    three = probes.vertex([1e-3, 1e-2, 1e-1], [3.0, 1.0, 2.0])
    assert five == pytest.approx(three)
    left = probes.vertex([1e-3, 1e-2, 1e-1], [1.5, 1.0, 2.0])
    # (-3, 1.5), (-2, 1), (-1, 2): vertex at -2 + (1.5 - 2) / (2 * 1.5)
    assert math.log10(left) == pytest.approx(-2 - 1 / 6)
    # a shallow curve still moves the answer off the best probe
    shallow = probes.vertex([1e-3, 1e-2, 1e-1], [1.2, 1.0, 1.1])
    assert math.log10(shallow) == pytest.approx(-2 + 0.1 / (2 * 0.3))
    # best at the top edge: the probe itself
    assert probes.vertex([1e-3, 1e-2, 1e-1], [3.0, 2.0, 1.0]) == 1e-1


def test_the_band_of_a_negative_loss_and_of_half_decade_rungs():
    # a negative best loss: "within 25%" is above it by 25% of its size
    low, high = probes.band([1e-3, 1e-2, 1e-1], [-1.0, -2.0, -1.0], tolerance=0.25)
    assert math.log10(low) == pytest.approx(-2.5)
    assert math.log10(high) == pytest.approx(-1.5)
    # rungs half a decade apart: the crossing is read in log LR
    lrs = [1e-2, 10**-1.5, 1e-1]
    low, high = probes.band(lrs, [2.0, 1.0, 2.0], tolerance=0.5)
    assert math.log10(low) == pytest.approx(-1.75)
    assert math.log10(high) == pytest.approx(-1.25)


def test_interpolation_with_three_sizes_uses_the_nearest_two_beyond_them():
    sizes, lrs = [16, 64, 256], [0.01, 0.03, 0.05]
    top = math.log(0.05 / 0.03) / math.log(4)
    bottom = math.log(0.03 / 0.01) / math.log(4)
    assert probes.interpolate(sizes, lrs, 1024) == pytest.approx(0.05 * 4**top)
    assert probes.interpolate(sizes, lrs, 4) == pytest.approx(0.01 / 4**bottom)
    assert probes.interpolate(sizes, lrs, 16) == pytest.approx(0.01)
    assert probes.interpolate(sizes, lrs, 256) == pytest.approx(0.05)
    assert probes.interpolate(sizes, lrs, 32) == pytest.approx(0.01 * 3**0.5)
    assert probes.interpolate(sizes, lrs, 128) == pytest.approx(
        0.03 * (0.05 / 0.03) ** 0.5)
    # a middle segment is interpolated on its own, not from the last two sizes
    four = [16, 64, 256, 1024], [0.01, 0.03, 0.05, 0.06]
    assert probes.interpolate(*four, 128) == pytest.approx(0.03 * (0.05 / 0.03) ** 0.5)
    # a falling last segment is interpolated, not flattened like an extrapolation
    assert probes.interpolate([16, 64, 256], [0.01, 0.05, 0.03], 128) == (
        pytest.approx(0.05 * 0.6**0.5))
    # below the smallest size a falling relation stays at the smallest size's LR
    assert probes.interpolate([32, 128], [0.04, 0.01], 8) == pytest.approx(0.04)


def test_probes_math_is_float64_whatever_the_input_dtype():
    lrs = np.array([1e-3, 1e-2, 1e-1], dtype=np.float32)
    losses = (np.array([3.0, 1.0, 2.0], dtype=np.float32) / 3).astype(np.float32)
    lrs64, losses64 = lrs.astype(np.float64), losses.astype(np.float64)
    assert probes.vertex(lrs, losses) == pytest.approx(
        probes.vertex(lrs64, losses64), rel=1e-12)
    assert probes.band(lrs, losses) == pytest.approx(
        probes.band(lrs64, losses64), rel=1e-12)
    assert probes.next_rung(lrs[:2], losses[1:], 0.3) == pytest.approx(
        probes.next_rung(lrs64[:2], losses64[1:], 0.3), rel=1e-12)
    sizes = np.array([17, 70, 300], dtype=np.float32)
    rates = (np.array([0.01, 0.03, 0.05], dtype=np.float32) / 3).astype(np.float32)
    for b in (5, 40, 1000):
        assert probes.interpolate(sizes, rates, b) == pytest.approx(
            probes.interpolate(sizes.astype(np.float64), rates.astype(np.float64),
                               b), rel=1e-11)


def test_search_does_not_take_one_lucky_run_for_the_best():
    calls = []

    def run(lr, index):  # a smooth valley at 0.01, and 0.1 good only once
        calls.append((round(lr, 9), index))
        if round(lr, 9) == 0.1:
            return 0.5 if sum(c[0] == 0.1 for c in calls) == 1 else 3.0
        return 1.0 + abs(math.log10(lr) + 2)

    lrs, losses, runs = probes.search(run, 0.1, spacing=1.0, max_rungs=8)
    assert [round(v, 9) for v in lrs] == [0.001, 0.01, 0.1, 1.0]
    assert losses[2] == pytest.approx(1.75)  # the mean of the lucky and the bad run
    assert 0.01 <= probes.vertex(lrs, losses) < 0.02
    # the repeat of 0.1, then of the new best 0.01, ran on new indices
    assert runs == len(calls) == 6
    assert len({c[1] for c in calls}) == 6
    assert [c[0] for c in calls].count(0.01) == 2
    # without the repeat, the lucky run wins
    calls.clear()
    lrs, losses, runs = probes.search(run, 0.1, spacing=1.0, max_rungs=8,
                                      repeat_best=False)
    assert probes.vertex(lrs, losses) > 0.01 and runs == 3


def test_search_repeats_nothing_when_every_probe_diverged():
    lrs, losses, runs = probes.search(lambda lr, i: math.inf, 1.0, spacing=1.0,
                                      max_rungs=5)
    assert runs == 5 and not any(math.isfinite(v) for v in losses)
    assert lrs[0] == pytest.approx(1e-3)  # walked down from the centre

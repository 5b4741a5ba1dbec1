import math

import numpy as np
import pytest

from kbatch.lr import rules as suggest


def test_exponential_sweep_is_geometric_from_min_to_max():
    lrs = suggest.lr_sweep(1e-7, 10.0, 100)
    assert lrs.size == 100
    assert lrs[0] == pytest.approx(1e-7)
    assert lrs[-1] == pytest.approx(10.0)
    ratios = lrs[1:] / lrs[:-1]
    np.testing.assert_allclose(ratios, (1e8) ** (1 / 99), rtol=1e-12)


def test_linear_sweep_is_evenly_spaced():
    lrs = suggest.lr_sweep(0.1, 1.0, 10, mode="linear")
    np.testing.assert_allclose(np.diff(lrs), 0.1, rtol=1e-12)
    assert lrs[0] == pytest.approx(0.1) and lrs[-1] == pytest.approx(1.0)


def test_unknown_sweep_mode_is_refused():
    with pytest.raises(ValueError, match="mode='cosine'"):
        suggest.lr_sweep(0.1, 1.0, 10, mode="cosine")


def test_smoothing_is_bias_corrected_ema_computed_by_hand():
    beta = 0.9
    losses = [4.0, 2.0, 3.0]
    # avg_1 = 0.4, avg_2 = 0.56, avg_3 = 0.804; corrections 0.1, 0.19, 0.271
    expected = [0.4 / 0.1, 0.56 / 0.19, 0.804 / 0.271]
    np.testing.assert_allclose(suggest.smooth_losses(losses, beta), expected,
                               rtol=1e-12)


def test_zero_smoothing_returns_the_raw_curve():
    losses = np.array([3.0, 1.0, 2.0])
    np.testing.assert_allclose(suggest.smooth_losses(losses, 0.0), losses)


def test_non_finite_loss_poisons_the_rest_of_the_smoothed_curve():
    smoothed = suggest.smooth_losses([1.0, math.nan, 1.0], 0.5)
    assert math.isfinite(smoothed[0])
    assert not np.isfinite(smoothed[1:]).any()


def _tanh_curve(center_log10, n=81, low=-6, high=2):
    lrs = np.logspace(low, high, n)
    losses = 2.0 - np.tanh(2.0 * (np.log10(lrs) - center_log10))
    return lrs, losses


@pytest.mark.parametrize("center", [-4.0, -2.0, -1.0])
def test_steepest_finds_the_inflection_of_a_tanh_curve(center):
    lrs, losses = _tanh_curve(center)
    # add a rise after the bottom so the curve has a minimum at the end region
    losses = losses + np.where(np.log10(lrs) > center + 2, 10 ** (np.log10(lrs)
                                                                   - center - 2), 0)
    assert suggest.steepest(lrs, losses) == pytest.approx(10**center, rel=1e-9)


def test_steepest_uses_log_lr_not_raw_lr():
    # Loss linear in log LR down to 1e-1, then up: every point before the minimum
    # has the same slope against log LR, except near the ends where np.gradient
    # uses one-sided differences. Against raw LR the slope would be steepest at
    # the smallest LR by orders of magnitude; against log LR the choice must not
    # be pinned to the first point.
    lrs = np.logspace(-5, 0, 51)
    log = np.log10(lrs)
    losses = np.where(log <= -1, -log, 2 + 2 * log)
    losses = losses + 0.01 * np.sin(np.arange(51))  # break ties deterministically
    lr = suggest.steepest(lrs, losses)
    assert lr > 1e-5


def test_valley_returns_the_middle_of_the_descent():
    lrs = np.logspace(-4, 0, 9)
    losses = [5.0, 6.0, 4.0, 3.0, 2.0, 1.0, 0.5, 3.0, 9.0]
    # the search starts where the loss fell by a fifth of its drop (4.0 at
    # index 2); the descent 4, 3, 2, 1, 0.5 spans indices 2..6: middle 4
    assert suggest.valley(lrs, losses) == lrs[4]


def test_valley_ignores_a_noisy_flat_start():
    rng = np.random.default_rng(0)
    lrs = np.logspace(-7, 1, 100)
    log = np.log10(lrs)
    clean = 2.0 - 0.5 * (np.tanh(2 * (log + 1.5)) + 1) + np.where(log > -0.3,
                                                                   5 * (log + 0.3), 0)
    noisy = clean + rng.normal(scale=0.01, size=100)
    lr = suggest.valley(lrs, suggest.trend(noisy))
    assert 1e-3 < lr < 1e-1  # not decades down in the noise


def test_minimum_rule_divides_the_best_lr_by_ten():
    lrs = np.array([1e-3, 1e-2, 1e-1, 1.0])
    losses = np.array([3.0, 2.0, 1.0, 5.0])
    assert suggest.minimum(lrs, losses) == pytest.approx(1e-2)


def test_rules_give_no_answer_when_the_loss_never_fell():
    lrs = np.logspace(-5, 0, 20)
    rising = np.linspace(1.0, 3.0, 20)
    assert suggest.minimum(lrs, rising) is None
    assert suggest.steepest(lrs, rising) is None
    assert suggest.valley(lrs, rising) is None
    assert suggest.agree(lrs, rising, {"a": None, "b": None}) is None


def test_rules_ignore_the_curve_after_a_non_finite_loss():
    lrs = np.logspace(-4, 0, 6)
    losses = np.array([3.0, 2.0, 1.0, math.nan, 0.1, 0.01])
    assert suggest.minimum(lrs, losses) == pytest.approx(lrs[2] / 10)


def test_agree_is_the_margined_geometric_mean_of_lowest_and_steepest():
    lrs = np.array([1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    losses = np.array([3.0, 2.0, 1.0, 0.5, 9.0])  # lowest at 1e-1
    value = suggest.agree(lrs, losses, {"steepest": 1e-3, "valley": 5.0})
    assert value == pytest.approx(math.sqrt(1e-1 * 1e-3) / suggest.AGREE_MARGIN)
    # always below the LR of the lowest loss
    assert suggest.agree(lrs, losses, {"steepest": 1e-1}) < 1e-1
    # without a steepest point: half the LR of the lowest loss
    assert suggest.agree(lrs, losses, {"steepest": None}) == pytest.approx(0.05)


def test_trend_is_zero_lag_and_stops_at_the_first_non_finite_loss():
    # A symmetric dip stays centred under the trend; an EMA would shift it right.
    losses = 1.0 - np.exp(-(((np.arange(41) - 20) / 4.0) ** 2))
    t = suggest.trend(losses)
    assert int(np.argmin(t)) == 20
    assert int(np.argmin(suggest.smooth_losses(losses, 0.9))) > 20
    np.testing.assert_allclose(t[:18], t[::-1][:18])  # symmetric
    with_nan = suggest.trend([1.0, 2.0, math.nan, 1.0])
    assert np.isfinite(with_nan[:2]).all() and np.isnan(with_nan[2:]).all()


def test_trend_of_a_constant_is_the_constant_at_the_edges_too():
    np.testing.assert_allclose(suggest.trend(np.full(30, 2.5)), 2.5)


def test_effective_lr_of_momentum_is_the_bias_corrected_ema_of_lrs():
    lrs = suggest.lr_sweep(1e-7, 10.0, 100)
    np.testing.assert_array_equal(suggest.effective_lrs(lrs, 0.0), lrs)
    eff = suggest.effective_lrs(lrs, 0.9)
    np.testing.assert_allclose(eff, suggest.smooth_losses(lrs, 0.9))
    # far from the start of an exponential sweep with ratio q per step the
    # ratio settles at (1 - m) / (1 - m / q)
    q = lrs[1] / lrs[0]
    assert eff[-1] / lrs[-1] == pytest.approx(0.1 / (1 - 0.9 / q), rel=1e-4)
    assert (eff <= lrs + 1e-18).all()


def test_interval_is_the_span_of_the_rules():
    assert suggest.interval({"a": 1e-3, "b": None, "c": 1e-2}) == (1e-3, 1e-2)
    assert suggest.interval({"a": None}) is None


def _diagnose(losses, *, diverged, smoothing=0.0):
    losses = np.asarray(losses, dtype=float)
    lrs = np.logspace(-5, 0, losses.size)
    return suggest.diagnose(lrs, losses, suggest.smooth_losses(losses, smoothing),
                            diverged=diverged, max_lr=1.0)


def test_diagnose_accepts_a_clean_curve():
    losses = np.concatenate([np.linspace(2.0, 0.5, 40), np.linspace(0.6, 5.0, 10)])
    assert _diagnose(losses, diverged=True) == []


def test_diagnose_flags_too_few_points():
    problems = _diagnose([2.0, 1.0, 3.0], diverged=True)
    assert any("Only 3 points" in p and "num_steps" in p for p in problems)


def test_diagnose_flags_a_loss_that_never_fell():
    problems = _diagnose(np.linspace(2.0, 2.5, 40), diverged=True)
    assert any("never fell" in p and "min_lr" in p for p in problems)


def test_diagnose_flags_a_sweep_that_never_reached_instability():
    problems = _diagnose(np.linspace(2.0, 0.5, 40), diverged=False)
    assert any("Raise `max_lr`" in p for p in problems)


def test_diagnose_flags_a_noisy_curve():
    rng = np.random.default_rng(0)
    losses = np.linspace(2.0, 1.9, 60) + rng.normal(scale=0.5, size=60)
    losses = np.abs(losses) + 2.0
    problems = _diagnose(losses, diverged=True, smoothing=0.9)
    assert any("noisy" in p for p in problems)
    # the same trend without the noise is not flagged
    clean = np.concatenate([np.linspace(4.0, 3.9, 60), [9.0]])
    assert not any("noisy" in p for p in _diagnose(clean, diverged=True,
                                                   smoothing=0.9))


def test_steepest_ignores_a_wiggle_decades_below_the_descent():
    # a flat, noisy start (a small batch on little data) with one sharp dip at
    # 1e-6, then the real descent around 1e-2 and the minimum at 3e-2
    lrs = np.logspace(-7, 0, 141)
    descent = 0.2 * (1 + np.tanh(3 * (np.log10(lrs) + 2)))
    losses = 2.3 - descent + 40 * (lrs > 0.03) * lrs
    dip = int(np.argmin(np.abs(lrs - 1e-6)))
    losses[dip] -= 0.3
    suggested = suggest.steepest(lrs, losses)
    assert 3e-3 < suggested < 3e-2
    # without the window, the dip would win: it is the steepest point overall
    end = int(np.argmin(losses)) + 1
    slope = np.gradient(losses[:end], np.log(lrs[:end]))
    assert lrs[int(np.argmin(slope))] < 2e-6


# --- properties pinned by the mutation run (make mutation) -----------------

ONLY = ("Only {n} points were recorded (fewer than {m}); the suggestion is "
        "unreliable. Raise `num_steps`, or lower `min_lr` if the loss diverged "
        "early.")
NEVER_FELL = ("The smoothed loss never fell below its starting value by more "
              "than 2%; no learning rate in the sweep trained the model. Lower "
              "`min_lr`, check the loss and labels, or the model may already be "
              "converged.")
NO_RISE = ("The loss had not started to rise by the end of the sweep, so the edge "
           "of stability was not found and the suggestion may be too low. Raise "
           "`max_lr` (try 10x{where}).")
NOISY = ("The loss curve is noisy (noise {noise} exceeds the drop {drop}); the "
         "suggestion is uncertain. Use a larger `batch_size`, more `num_steps`, "
         "or `validation_data`.")


def _diag(losses, smoothed=None, diverged=False, **kwargs):
    losses = np.asarray(losses, dtype=np.float64)
    lrs = np.geomspace(1e-4, 1.0, losses.size)
    smoothed = losses if smoothed is None else np.asarray(smoothed, dtype=np.float64)
    return suggest.diagnose(lrs, losses, smoothed, diverged=diverged, **kwargs)


def test_diagnose_says_each_problem_in_full():
    # 3 points, never fell
    assert _diag([1.0, 1.0, 1.0]) == [ONLY.format(n=3, m=10), NEVER_FELL]
    assert _diag([1.0, 1.0, 1.0], min_points=2) == [NEVER_FELL]
    # fell, never rose, no divergence: raise max_lr (with and without its value)
    falling = np.linspace(2.0, 1.0, 20)
    assert _diag(falling, max_lr=10.0) == [NO_RISE.format(where=" above max_lr=10")]
    assert _diag(falling) == [NO_RISE.format(where="")]
    # a noisy fall
    noisy = 2.0 + np.tile([0.0, 1.0], 10)
    noisy[-3:] = [1.9, 1.8, 3.5]
    smooth = np.concatenate([np.full(17, 2.0), [1.9, 1.8, 3.5]])
    problems = _diag(noisy, smooth, diverged=True)
    noise = 1.4826 * 1.0 / np.sqrt(2)
    assert problems == [NOISY.format(noise=f"{noise:.3g}", drop=f"{0.2:.3g}")]


def test_diagnose_boundaries():
    assert _diag(np.linspace(2.0, 1.0, 10), diverged=True) == []  # 10 is enough
    assert _diag(np.linspace(2.0, 1.0, 9), diverged=True)[0].startswith("Only 9")
    assert _diag([2.0]) == [ONLY.format(n=1, m=10)]
    assert _diag([2.0, 1.0], diverged=True) == [
        ONLY.format(n=2, m=10), NOISY.format(noise="1.05", drop="1")]
    # a drop of exactly 2% is not a fall; just above it is
    flat = np.concatenate([[50.0], np.full(19, 49.0)])  # 2% of 50 is exactly 1
    assert _diag(flat, diverged=True) == [NEVER_FELL]
    assert NEVER_FELL not in _diag(flat - np.r_[0, np.full(19, 0.01)],
                                   diverged=True)
    # the start is the first point of the smoothed curve, not the second
    assert NEVER_FELL not in _diag([2.0, 1.0, *np.full(18, 1.0)], diverged=True)
    # a rise back of exactly 10% of the drop counts as rising
    curve = np.concatenate([np.linspace(2.0, 1.0, 19), [1.1]])
    assert _diag(curve) == []
    assert _diag(curve - np.r_[np.zeros(19), 0.001]) == [NO_RISE.format(
        where="")]
    # a non-finite tail means the sweep stopped: no "raise max_lr"
    assert _diag([*np.linspace(2.0, 1.0, 19), np.nan]) == []
    # one finite point: nothing more to say
    assert _diag([2.0, np.nan, np.nan], min_points=2) == []


def test_divergence_lr_is_the_first_lr_back_above_the_start_past_the_minimum():
    lrs = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert suggest.divergence_lr(lrs, [5.0, 4.0, 3.0, 4.0, 6.0, 7.0]) == 5.0
    # equal to the start is not above it; the start is the first point
    assert suggest.divergence_lr(lrs, [5.0, 4.0, 3.0, 5.0, 6.0, 7.0]) == 5.0
    assert suggest.divergence_lr(lrs, [5.0, 6.0, 3.0, 5.5, 5.9, 7.0]) == 4.0
    # a value above the start before the minimum does not count
    assert suggest.divergence_lr(lrs, [5.0, 9.0, 3.0, 4.0, 4.5, 6.0]) == 6.0


def test_divergence_lr_when_the_curve_never_climbs_back():
    lrs = [1.0, 2.0, 3.0, 4.0, 5.0]
    falling = [5.0, 4.0, 3.0, 2.0, 1.0]
    assert suggest.divergence_lr(lrs, falling) is None
    assert suggest.divergence_lr(lrs, falling, diverged=True) == 5.0
    # stopped by a non-finite loss: the last finite LR
    assert suggest.divergence_lr(lrs, [5.0, 4.0, 3.0, np.nan, np.nan]) == 3.0
    assert suggest.divergence_lr(lrs, [5.0, 4.0, np.nan, 1.0, 0.5]) == 2.0
    assert suggest.divergence_lr(lrs, [np.nan] * 5) is None


def test_fall_start_on_short_curves_and_the_level_it_uses():
    lrs = [1e-3, 1e-2, 1e-1]
    # three points are enough: raw start 1.9, drop 1.4, level 1.76
    assert suggest.fall_start(lrs, [2.0, 1.0, 0.5], [2.0, 1.9, 1.8]) == 1e-3
    assert suggest.fall_start(lrs[:2], [2.0, 1.0], [2.0, 1.9]) is None
    lrs = np.geomspace(1e-4, 1.0, 9)
    trend = np.array([2.0, 2.0, 1.98, 1.93, 1.5, 1.2, 1.0, 1.05, 1.3])
    raw = trend.copy()
    # start 2.0 (median of 3), drop 1.0, level 1.9: the last point at or above
    # it before the minimum is 1.93
    assert suggest.fall_start(lrs, trend, raw) == pytest.approx(lrs[3])
    # a point exactly at the level counts as not yet fallen
    trend2 = trend.copy()
    trend2[3] = 1.9
    assert suggest.fall_start(lrs, trend2, trend2) == pytest.approx(lrs[3])
    # a drop of exactly 2% is no fall; of exactly 1.5x the noise neither
    flat = np.array([50.0, 50.0, 50.0, 50.0, 49.0])  # 2% of 50 is exactly 1
    assert suggest.fall_start(np.arange(1.0, 6.0), flat, flat) is None
    assert suggest.fall_start(np.arange(1.0, 6.0), flat - [0, 0, 0, 0, 0.01],
                              flat - [0, 0, 0, 0, 0.01]) == 4.0


def test_steepest_reads_only_three_decades_below_the_minimum():
    lrs = np.logspace(-6, 0, 61)  # 10 points a decade; 1e-3 is lrs[30]
    base = 2.0 - np.tanh(2 * (np.log10(lrs) + 1))  # main descent around 0.1
    base[-1] = base[-2] - 0.001  # the minimum at the last point, 1.0

    def with_cliff(index):
        curve = base.copy()
        curve[index:] -= 0.0  # the descent stays; a cliff just below `index`
        curve[:index] += 0.5
        return curve

    # a cliff into 1e-3 (inside the window) is the steepest point ...
    assert suggest.steepest(lrs, with_cliff(30)) == pytest.approx(lrs[30], rel=1e-9)
    # ... one into 10**-3.1, just outside, is not
    assert suggest.steepest(lrs, with_cliff(29)) > 1e-2


def test_sweep_trend_and_small_helpers_by_hand():
    np.testing.assert_allclose(suggest.lr_sweep(1e-3, 1e-1, 2), [1e-3, 1e-1])
    np.testing.assert_allclose(suggest.lr_sweep(0.5, 0.5, 1), [0.5])
    assert suggest.trend([2.0]).tolist() == [2.0]
    assert suggest.trend([1.0, 5.0, 2.0], width=0).tolist() == [1.0, 5.0, 2.0]
    spiky = suggest.trend([1.0, 5.0, 1.0], width=1.0)
    w = np.exp(-0.5)
    assert spiky[1] == pytest.approx((5.0 + 2 * w) / (1 + 2 * w))
    assert suggest.steepest([], []) is None
    assert suggest.minimum([], []) is None
    assert suggest.interval({"a": 0.0, "b": 0.01, "c": None}) == (0.01, 0.01)


def test_valley_by_hand():
    lrs = [1e-3, 1e-2, 1e-1]
    # three points falling: the descent from the second point (past 20% of the
    # drop) to the third; its log-middle is 10**-1.5, nearest first: 1e-2
    assert suggest.valley(lrs, [3.0, 2.0, 1.0]) == 1e-2
    assert suggest.valley(lrs[:2], [3.0, 2.0]) is None  # best too early
    lrs5 = np.logspace(-4, 0, 5)
    # 20% of the drop of 2 is 0.4: the search starts at 2.5 (<= 2.6)
    assert suggest.valley(lrs5, [3.0, 2.5, 2.0, 1.5, 1.0]) == pytest.approx(1e-2)
    # the run is a decreasing subsequence: a bump is stepped over
    assert suggest.valley(lrs5, [3.0, 2.0, 2.5, 1.5, 1.0]) == pytest.approx(1e-2)
    # equal neighbours do not extend a decreasing run
    assert suggest.valley(lrs5, [3.0, 2.0, 2.0, 2.0, 1.0]) == pytest.approx(1e-2)


def test_the_curve_math_is_float64_whatever_the_input_dtype():
    losses32 = (np.linspace(3.0, 1.0, 40) / 7).astype(np.float32)
    lrs32 = np.geomspace(1e-4, 1.0, 40).astype(np.float32)
    losses64 = losses32.astype(np.float64)
    np.testing.assert_allclose(suggest.smooth_losses(losses32, 0.9),
                               suggest.smooth_losses(losses64, 0.9), rtol=1e-13)
    assert suggest.smooth_losses(losses32, 0.9).dtype == np.float64
    assert suggest.effective_lrs(lrs32).dtype == np.float64
    assert suggest.effective_lrs(lrs32, 0.5).dtype == np.float64
    for array in suggest._finite_prefix(lrs32, losses32):
        assert array.dtype == np.float64
    assert suggest._step_noise(losses32) == pytest.approx(
        suggest._step_noise(losses64), rel=1e-13)
    assert suggest._step_noise([1.0]) == 0.0
    assert suggest._step_noise([]) == 0.0


def test_documented_defaults_and_fall_start_levels():
    losses = np.linspace(3.0, 1.0, 30) + np.tile([0.0, 0.2], 15)
    np.testing.assert_allclose(suggest.smooth_losses(losses),
                               suggest.smooth_losses(losses, 0.98))
    lrs = np.geomspace(1e-3, 1.0, 30)
    np.testing.assert_allclose(suggest.effective_lrs(lrs), lrs)
    nine = np.geomspace(1e-4, 1.0, 9)
    # start 3 (median of 3), drop 2, level 3 - 0.1 * 2 = 2.8: last at or above
    # it before the minimum is 2.85
    trend = np.array([3.0, 3.0, 2.85, 2.7, 2.0, 1.5, 1.0, 1.2, 1.5])
    assert suggest.fall_start(nine, trend, trend) == pytest.approx(nine[2])
    # a trend already below the level from its start: the first LR
    assert suggest.fall_start(nine[:3], [1.0, 0.9, 0.5], [3.0, 3.0, 3.0]) == (
        pytest.approx(nine[0]))

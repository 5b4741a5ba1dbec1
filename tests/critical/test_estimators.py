"""The noise-scale estimators (pure NumPy) against hand-computed values."""

import math

import numpy as np
import pytest

from kbatch.critical import estimators as noise


def test_two_batch_estimator_is_exact_on_expected_values():
    g_sq, trace = 2.5, 300.0
    small, big = g_sq + trace / 16, g_sq + trace / 256
    assert noise.two_batch_estimates(small, big, 16, 256) == pytest.approx(
        (g_sq, trace))


def test_two_batch_estimator_refuses_equal_sizes():
    with pytest.raises(ValueError, match="b_small=64, b_big=64"):
        noise.two_batch_estimates(1.0, 1.0, 64, 64)


def test_ema_is_bias_corrected_and_skips_non_finite():
    ema = noise.NoiseScaleEMA(beta=0.9)
    assert math.isnan(ema.b_simple)
    assert ema.update(2.0, 100.0)
    assert ema.g_sq == pytest.approx(2.0) and ema.trace == pytest.approx(100.0)
    assert not ema.update(math.inf, 1.0)
    assert ema.count == 1
    assert ema.b_simple == pytest.approx(50.0)


def test_bootstrap_interval_covers_the_truth_on_synthetic_measurements():
    rng = np.random.default_rng(0)
    g = 1.0 + rng.normal(scale=0.3, size=200)
    t = 40.0 + rng.normal(scale=10.0, size=200)
    low, high = noise.bootstrap_interval(g, t)
    assert low < 40.0 < high
    assert noise.b_simple(g, t) == pytest.approx(40.0, rel=0.1)


def test_two_batch_estimator_by_hand():
    # |G_small|^2 = 5, |G_big|^2 = 2 at batches 10 and 40:
    # |G|^2 = (40*2 - 10*5) / 30 = 1; tr = (5 - 2) / (1/10 - 1/40) = 40
    assert noise.two_batch_estimates(5.0, 2.0, 10, 40) == pytest.approx((1.0, 40.0))


def test_b_simple_is_the_ratio_of_the_means():
    assert noise.b_simple([1.0, 3.0], [10.0, 70.0]) == pytest.approx(40.0 / 2.0)


# --- properties pinned by the mutation run (make mutation) -----------------

def test_two_batch_estimates_refuse_equal_sizes_with_the_exact_message():
    with pytest.raises(ValueError, match=r"^The small batch must be smaller than "
                       r"the big one\. Received: b_small=64, b_big=64$"):
        noise.two_batch_estimates(2.0, 1.0, 64, 64)


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.999])
def test_ema_accepts_beta_in_zero_to_one(beta):
    assert noise.NoiseScaleEMA(beta=beta).beta == beta


@pytest.mark.parametrize("beta", [1.0, 1.5, -0.1])
def test_ema_refuses_beta_outside_zero_to_one_by_name(beta):
    with pytest.raises(ValueError, match=rf"^Argument `beta` must be in \[0, 1\)\. "
                       rf"Received: beta={beta}$"):
        noise.NoiseScaleEMA(beta=beta)


def test_ema_bias_correction_counts_every_update():
    ema = noise.NoiseScaleEMA(beta=0.5)
    for value in (1.0, 2.0, 3.0):
        ema.update(value, 10.0 * value)
    assert ema.count == 3
    # m = 0.5, 1.25, 2.125; corrected by 1 - 0.5**3
    assert ema.g_sq == pytest.approx(2.125 / 0.875)
    assert ema.trace == pytest.approx(21.25 / 0.875)
    assert not ema.update(math.nan, 1.0) and ema.count == 3


def test_b_simple_is_infinite_at_zero_signal_and_exact_below_one():
    ema = noise.NoiseScaleEMA(beta=0.0)
    ema.update(0.0, 5.0)
    assert ema.b_simple == math.inf
    ema.update(0.5, 8.0)
    assert ema.b_simple == pytest.approx(16.0)
    assert noise.b_simple([0.0, 0.0], [3.0, 3.0]) == math.inf
    assert noise.b_simple([0.5, 0.5], [8.0, 8.0]) == pytest.approx(16.0)


def _bootstrap_by_hand(g, t, confidence=0.9, num_resamples=2000, seed=0):
    g, t = np.asarray(g, dtype=np.float64), np.asarray(t, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, g.size, size=(num_resamples, g.size))
    gm, tm = g[idx].mean(axis=1), t[idx].mean(axis=1)
    ratios = np.full(num_resamples, np.inf)
    ratios[gm > 0] = tm[gm > 0] / gm[gm > 0]
    tail = (1 - confidence) / 2
    return tuple(np.quantile(ratios, [tail, 1 - tail]))


def test_bootstrap_interval_is_the_percentile_interval_of_resampled_ratios():
    g, t = [1.0, 1.2, 0.8, 1.1, 0.5], [50.0, 60.0, 40.0, 55.0, 45.0]
    assert noise.bootstrap_interval(g, t) == pytest.approx(_bootstrap_by_hand(g, t))
    assert noise.bootstrap_interval(g, t, confidence=0.5, seed=3) == pytest.approx(
        _bootstrap_by_hand(g, t, confidence=0.5, seed=3))
    # the defaults are 2000 resamples from seed 0
    assert noise.bootstrap_interval(g, t) == noise.bootstrap_interval(
        g, t, num_resamples=2000, seed=0)
    low, high = noise.bootstrap_interval(g, t)
    assert low < high


def test_bootstrap_interval_ratio_values_and_degenerate_signals():
    assert noise.bootstrap_interval([2.0, 2.0], [10.0, 10.0]) == (5.0, 5.0)
    assert noise.bootstrap_interval([0.5, 0.5], [5.0, 5.0]) == (10.0, 10.0)
    # two pairs are enough
    assert noise.bootstrap_interval([1.0, 2.0], [10.0, 10.0])[0] > 0
    # a zero signal is an infinite noise scale, without a division warning
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert noise.bootstrap_interval([0.0, 0.0], [5.0, 5.0]) == (math.inf,
                                                                    math.inf)
        _, high = noise.bootstrap_interval([1.0, -3.0, 1.0], [5.0, 5.0, 5.0])
    assert high == math.inf
    # every pair can be drawn, the first included
    assert noise.bootstrap_interval([1.0, 1.0, 1.0], [100.0, 10.0, 10.0])[1] > 10.0


def test_bootstrap_interval_drops_pairs_with_a_non_finite_member():
    g, t = [1.0, math.nan, 1.2, 0.8], [50.0, 60.0, math.inf, 55.0]
    assert noise.bootstrap_interval(g, t) == noise.bootstrap_interval([1.0, 0.8],
                                                                      [50.0, 55.0])


def test_estimators_compute_in_float64_whatever_the_input_dtype():
    g = np.array([1.0, 1.2, 0.8, 1.1], dtype=np.float32) / 3
    t = np.array([50.0, 60.0, 40.0, 55.0], dtype=np.float32) / 7
    exact = noise.bootstrap_interval(g.astype(np.float64), t.astype(np.float64))
    assert noise.bootstrap_interval(g, t) == pytest.approx(exact, rel=1e-12)


def test_the_documented_defaults_seed_the_bootstrap_and_smooth_with_0_99():
    rng = np.random.default_rng(5)
    g, t = rng.normal(1.0, 0.3, 30), rng.normal(50.0, 10.0, 30)
    default = noise.bootstrap_interval(g, t)
    assert default == noise.bootstrap_interval(g, t, num_resamples=2000, seed=0)
    assert default != noise.bootstrap_interval(g, t, seed=1)  # the seed matters
    assert default != noise.bootstrap_interval(g, t, num_resamples=2001)
    assert noise.NoiseScaleEMA().beta == 0.99

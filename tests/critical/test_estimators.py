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

"""The law fits and the throughput knee (pure NumPy) on synthetic tables."""

import math

import numpy as np
import pytest

from kbatch.critical import fits
from kbatch.critical.fits import throughput_knee


@pytest.mark.parametrize("speeds, knee", [
    ([1000, 1800, 2300, 2400], 128),
    ([1000, 2000, 3000, 4000], 256),  # still rising: the largest
    ([5000, 5000, 5000, 5000], 32),  # flat: the smallest
    ([1000, math.nan, 2300, 2400], 128),  # unmeasured sizes ignored
])
def test_knee_on_synthetic_tables(speeds, knee):
    assert throughput_knee([32, 64, 128, 256], speeds) == knee


def test_knee_fraction_and_nothing_measured():
    speeds = [1000, 1800, 2300, 2400]
    assert throughput_knee([32, 64, 128, 256], speeds, fraction=0.75) == 64
    assert throughput_knee([32, 64, 128, 256], speeds, fraction=1.0) == 256
    assert throughput_knee([32, 64], [math.nan, math.nan]) is None


def test_power_law_fit_recovers_the_exponent():
    b = np.array([16, 64, 256, 1024])
    for alpha in (1.0, 0.5, 0.0):
        fitted, c = fits.fit_power_law(b, 0.01 * (b / 16) ** alpha)
        assert fitted == pytest.approx(alpha, abs=1e-9)
        assert c * 16**fitted == pytest.approx(0.01)
        assert fits.rule_for_exponent(fitted) == {1.0: "linear", 0.5: "sqrt",
                                                         0.0: "none"}[alpha]


def test_noise_law_fit_recovers_eps_max_and_b_noise():
    b = np.array([8, 32, 128, 512, 2048])
    eps, bn, rms = fits.fit_noise_law(b, 0.3 / (1 + 150 / b))
    assert eps == pytest.approx(0.3, rel=0.01)
    assert bn == pytest.approx(150, rel=0.01)
    assert rms < 1e-3


@pytest.mark.parametrize("alpha, rule", [(0.75, "linear"), (0.7499, "sqrt"),
                                         (0.25, "sqrt"), (0.2499, "none"),
                                         (-0.3, "none")])
def test_rule_for_exponent_boundaries(alpha, rule):
    assert fits.rule_for_exponent(alpha) == rule


@pytest.mark.parametrize("fit", [fits.fit_power_law, fits.fit_noise_law])
def test_fits_need_two_batch_sizes(fit):
    with pytest.raises(ValueError, match="two or more batch sizes"):
        fit([64], [0.1])


def test_power_law_fit_is_least_squares_in_log_log():
    b, lr = np.array([16.0, 64.0, 256.0]), np.array([0.01, 0.05, 0.08])
    alpha, c = fits.fit_power_law(b, lr)
    slope, intercept = np.polyfit(np.log(b), np.log(lr), 1)
    assert alpha == pytest.approx(slope) and c == pytest.approx(math.exp(intercept))


# --- properties pinned by the mutation run (make mutation) -----------------

def test_two_sizes_are_enough_for_either_law():
    alpha, c = fits.fit_power_law([32, 128], [0.01, 0.04])
    assert alpha == pytest.approx(1.0) and c * 32 == pytest.approx(0.01)
    eps, b_noise, rms = fits.fit_noise_law([32, 128], [0.01, 0.04])
    assert rms < 0.01 and eps / (1 + b_noise / 128) == pytest.approx(0.04, rel=0.01)


@pytest.mark.parametrize("sizes", [[64], [64, 64], [64, 64, 64]])
def test_a_power_law_needs_two_distinct_sizes(sizes):
    with pytest.raises(ValueError, match=r"^A power law needs learning rates at "
                       r"two or more batch sizes"):
        fits.fit_power_law(sizes, [0.01] * len(sizes))


def test_the_noise_law_needs_two_sizes_with_the_exact_message():
    with pytest.raises(ValueError, match=r"^The noise law needs learning rates at "
                       r"two or more batch sizes"):
        fits.fit_noise_law([64], [0.01])


def test_the_fits_compute_in_float64_whatever_the_input_dtype():
    sizes = np.array([16, 48, 160, 1000], dtype=np.float32)
    lrs = (np.array([0.011, 0.023, 0.041, 0.077], dtype=np.float32) / 3).astype(
        np.float32)
    exact = fits.fit_power_law(sizes.astype(np.float64), lrs.astype(np.float64))
    assert fits.fit_power_law(sizes, lrs) == pytest.approx(exact, rel=1e-12)
    exact = fits.fit_noise_law(sizes.astype(np.float64), lrs.astype(np.float64))
    assert fits.fit_noise_law(sizes, lrs) == pytest.approx(exact, rel=1e-12)


def test_a_throughput_of_none_is_unmeasured():
    assert throughput_knee([32, 64, 128], [1000, None, 2000]) == 128
    assert throughput_knee([32, 64], [None, None]) is None

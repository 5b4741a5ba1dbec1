"""The advisor's time-to-target model (pure NumPy), by hand."""

import math

import numpy as np
import pytest

from kbatch.advisor.time_to_target import time_to_target


def test_time_is_batch_plus_noise_over_throughput_normalised_to_the_best():
    sizes, speed, b_noise = [32, 64, 128], [1000.0, 1900.0, 2000.0], 64
    cost = (np.array(sizes) + b_noise) / np.array(speed)  # 0.096, 0.0674, 0.096
    expected = cost / cost.min()
    np.testing.assert_allclose(time_to_target(sizes, speed, b_noise), expected)
    assert time_to_target(sizes, speed, b_noise).min() == pytest.approx(1.0)


def test_no_noise_means_time_per_sample():
    # b_noise = 0: time ~ B / throughput(B) = 1 / samples per second of a step
    out = time_to_target([10, 20], [100.0, 400.0], b_noise=0)
    np.testing.assert_allclose(out, [2.0, 1.0])


def test_unmeasured_sizes_stay_unmeasured():
    out = time_to_target([16, 32, 64], [1000.0, math.nan, 1500.0], b_noise=16)
    assert math.isnan(out[1]) and np.nanmin(out) == pytest.approx(1.0)
    nothing = time_to_target([16, 32], [math.nan, math.nan], b_noise=16)
    assert np.isnan(nothing).all()


def test_a_throughput_of_none_stays_unmeasured_and_zero_is_infinite_time():
    rel = time_to_target([32, 64], [1000.0, None], b_noise=0.0)
    assert rel[0] == 1.0 and math.isnan(rel[1])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division warning either
        rel = time_to_target([32, 64], [0.0, 0.0], b_noise=10.0)
    assert rel.tolist() == [math.inf, math.inf]


def test_time_to_target_computes_in_float64_whatever_the_input_dtype():
    sizes = np.array([17, 33, 65], dtype=np.float32)
    speed = np.array([1001.0, 1903.0, 2011.0], dtype=np.float32) / 3
    exact = time_to_target(sizes.astype(np.float64), speed.astype(np.float64), 0.1)
    np.testing.assert_allclose(time_to_target(sizes, speed, 0.1), exact, rtol=1e-12)

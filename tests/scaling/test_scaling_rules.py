"""Scaling rules against hand-computed values (NumPy only: the runner of
`make mutation`; the optimizer-dependent default rule is tested in
`test_optimizer_rule.py`)."""

import math
from types import SimpleNamespace

import pytest

from kbatch.scaling import rules as scaling

# the rules under their public names
kbatch = SimpleNamespace(scale_lr=scaling.scale_lr, scale_adam=scaling.scale_adam)


@pytest.mark.parametrize(
    "lr, b0, b, rule, expected",
    [
        (0.1, 256, 8192, "linear", 3.2),  # Goyal et al.: 0.1 per 256 -> 3.2 at 8k
        (0.1, 256, 256, "linear", 0.1),
        (0.1, 8192, 256, "linear", 0.1 / 32),  # scaling down
        (1e-3, 64, 1024, "sqrt", 4e-3),  # sqrt(16) = 4
        (1e-3, 100, 400, "sqrt", 2e-3),
        (0.5, 32, 4096, "none", 0.5),
        (0.1, 256, 1024, 0.75, 0.1 * 4**0.75),  # float exponent
        (0.1, 256, 1024, 1, 0.4),  # integer exponent == linear
        (0.1, 256, 1024, 0.0, 0.1),
    ],
)
def test_rules_match_hand_computed_values(lr, b0, b, rule, expected):
    assert kbatch.scale_lr(lr, b0, b, rule) == pytest.approx(expected, rel=1e-12)


def test_noise_aware_rule_by_hand_and_its_limits():
    # (1 + 1000/256) / (1 + 1000/8192) = 4.90625 / 1.1220703125
    value = kbatch.scale_lr(0.1, 256, 8192, "noise_aware", noise_scale=1000)
    assert value == pytest.approx(0.1 * 4.90625 / 1.1220703125, rel=1e-12)
    # B << B_noise: linear; B >> B_noise: flat (McCandlish et al. 2018)
    linear = kbatch.scale_lr(1.0, 10, 20, "noise_aware", noise_scale=1e9)
    assert linear == pytest.approx(2.0, rel=1e-6)
    flat = kbatch.scale_lr(1.0, 10**6, 2 * 10**6, "noise_aware", noise_scale=1.0)
    assert flat == pytest.approx(1.0, rel=1e-5)


def test_scaling_up_then_down_is_the_identity():
    for rule in ("linear", "sqrt", 0.6):
        there = kbatch.scale_lr(0.03, 128, 2048, rule)
        assert kbatch.scale_lr(there, 2048, 128, rule) == pytest.approx(0.03)


def test_adam_square_root_rule_by_hand():
    d = kbatch.scale_adam(1e-3, 0.9, 0.999, 1e-8, from_batch=256, to_batch=1024)
    # kappa = 4: lr * 2, 1 - beta * 4, eps / 2
    assert d == pytest.approx(
        {"learning_rate": 2e-3, "beta_1": 0.6, "beta_2": 0.996, "epsilon": 5e-9}
    )


def test_adam_rule_and_its_inverse_round_trip():
    up = kbatch.scale_adam(3e-4, 0.95, 0.999, 1e-7, from_batch=32, to_batch=64)
    back = kbatch.scale_adam(up["learning_rate"], up["beta_1"], up["beta_2"],
                             up["epsilon"], from_batch=64, to_batch=32)
    assert back == pytest.approx({"learning_rate": 3e-4, "beta_1": 0.95,
                                  "beta_2": 0.999, "epsilon": 1e-7})


def test_adam_rule_warns_when_kappa_times_one_minus_beta_is_not_small():
    with pytest.warns(UserWarning, match=r"kappa \* \(1 - beta_1\) = 0.8"):
        kbatch.scale_adam(1e-3, 0.9, 0.999, 1e-8, from_batch=32, to_batch=256)


def test_adam_rule_refuses_a_beta_pushed_to_zero():
    with pytest.raises(ValueError, match=r"`beta_1`=0.9 by kappa=16.*>= 1"):
        kbatch.scale_adam(1e-3, 0.9, 0.999, 1e-8, from_batch=16, to_batch=256)


@pytest.mark.parametrize("call, error, pattern", [
    (lambda: kbatch.scale_lr(0.1, 0, 64), ValueError, r"`from_batch`.*from_batch=0"),
    (lambda: kbatch.scale_lr(0.1, 32, -8), ValueError, r"to_batch=-8"),
    (lambda: kbatch.scale_lr(0.1, 32.0, 64), TypeError,
     r"`from_batch` must be an integer.*32.0"),
    (lambda: kbatch.scale_lr(0.1, 32, "64"), TypeError, r"to_batch='64'"),
    (lambda: kbatch.scale_lr(0.1, 32, 64, rule="cubic"), ValueError,
     r"`rule` must be one of.*rule='cubic'"),
    (lambda: kbatch.scale_lr(0.1, 32, 64, rule="noise_aware"), ValueError,
     r"noise_scale=None"),
    (lambda: kbatch.scale_lr(0.1, 32, 64, "noise_aware", noise_scale=-5),
     ValueError, r"noise_scale=-5"),
    (lambda: kbatch.scale_lr(0.0, 32, 64), ValueError, r"`lr`.*lr=0"),
    (lambda: kbatch.scale_lr(0.1, 32, 64, rule=True), ValueError, r"rule=True"),
    (lambda: kbatch.scale_adam(1e-3, 1.0, 0.999, 1e-8, 32, 64), ValueError,
     r"`beta_1` must be < 1"),
])
def test_bad_input_names_the_argument(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"learning_rate": 0.0}, ValueError,
     r"^Argument `learning_rate` must be greater than 0\. Received: learning_rate=0$"),
    ({"learning_rate": "1e-3"}, TypeError,
     r"^Argument `learning_rate` must be a number"),
    ({"beta_1": -0.1}, ValueError, r"^Argument `beta_1` must be >= 0\. "),
    ({"beta_1": 1.0}, ValueError, r"^Argument `beta_1` must be < 1\. "),
    ({"beta_2": -0.1}, ValueError, r"^Argument `beta_2` must be >= 0\. "),
    ({"beta_2": 1.0}, ValueError, r"^Argument `beta_2` must be < 1\. "),
    ({"epsilon": -1e-8}, ValueError, r"^Argument `epsilon` must be >= 0\. "),
    ({"from_batch": 0}, ValueError, r"^Argument `from_batch` must be an integer >= 1"),
    ({"to_batch": 0}, ValueError, r"^Argument `to_batch` must be an integer >= 1"),
])
def test_adam_rule_checks_each_argument_by_name(kwargs, error, pattern):
    args = {"learning_rate": 1e-3, "beta_1": 0.9, "beta_2": 0.999,
            "epsilon": 1e-8, "from_batch": 64, "to_batch": 128, **kwargs}
    with pytest.raises(error, match=pattern):
        kbatch.scale_adam(**args)


def test_adam_rule_accepts_the_inclusive_bounds():
    # beta = 0 and epsilon = 0 are allowed (low bounds inclusive); halving the
    # batch halves 1 - beta
    down = kbatch.scale_adam(1e-3, 0.0, 0.0, 0.0, from_batch=128, to_batch=64)
    assert down == pytest.approx({"learning_rate": 1e-3 / math.sqrt(2),
                                  "beta_1": 0.5, "beta_2": 0.5, "epsilon": 0.0})


def test_a_measured_exponent_is_a_rule():
    assert scaling.scaling_factor(16, 64, 0.5) == pytest.approx(2.0)
    assert scaling.scaling_factor(16, 64, 1) == pytest.approx(4.0)
    assert scaling.scaling_factor(16, 64, -0.5) == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"^Argument `rule` must be finite"):
        scaling.scaling_factor(16, 64, math.inf)


def test_noise_scale_is_checked_whatever_the_rule():
    # given with another rule it is not used, but a bad value is still refused
    assert scaling.scaling_factor(16, 64, "linear", noise_scale=100.0) == 4.0
    with pytest.raises(ValueError, match=r"^Argument `noise_scale` must be greater"):
        scaling.scaling_factor(16, 64, "sqrt", noise_scale=0.0)
    with pytest.raises(ValueError, match=r"^Argument `noise_scale` must be greater"):
        scaling.scaling_factor(16, 64, "noise_aware", noise_scale=0.0)


def test_error_messages_say_what_to_do():
    with pytest.raises(ValueError) as info:
        scaling.scaling_factor(16, 64, "noise_aware")
    assert str(info.value) == (
        "The 'noise_aware' rule needs the gradient noise scale: pass "
        "`noise_scale` (e.g. measured by kbatch.measure_noise_scale). "
        "Received: noise_scale=None")
    with pytest.raises(ValueError) as info:
        scaling.scaling_factor(16, 64, "cube")
    assert str(info.value) == (
        "Argument `rule` must be one of ('linear', 'sqrt', 'none', "
        "'noise_aware') or a number (the exponent a of lr * (B / B0) ** a). "
        "Received: rule='cube'")


def test_scaling_factor_is_what_scale_lr_multiplies_by():
    assert scaling.scaling_factor(64, 256, "sqrt") == 2.0
    assert kbatch.scale_lr(0.5, 64, 256, "sqrt") == 0.5 * 2.0
    assert math.isclose(scaling.scaling_factor(3, 7, "linear"), 7 / 3)

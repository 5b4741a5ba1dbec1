"""Batch-size-aware learning-rate scaling rules, as pure functions.

When the batch size changes from `B0` to `B`, the learning rate must change
too. Which rule holds depends on the optimizer and on where `B` sits relative
to the critical batch size:

- `"linear"`: `lr * B / B0` (Goyal et al. 2017, arXiv:1706.02677). SGD and
  momentum, below the critical batch size.
- `"sqrt"`: `lr * sqrt(B / B0)` (Krizhevsky 2014, arXiv:1404.5997; Hoffer et
  al. 2017, arXiv:1705.08741). Matches the variance of the update; the usual
  rule for Adam-like optimizers.
- a number `a`: `lr * (B / B0) ** a`, an exponent measured on your model.
- `"noise_aware"`: `lr * (1 + Bn / B0) / (1 + Bn / B)` (McCandlish et al. 2018,
  arXiv:1812.06162). Linear for `B << Bn`, flat for `B >> Bn`.
- `"none"`: `lr`.

`Bn` is the gradient noise scale (`noise_scale`), of the order of the critical
batch size. For Adam, `scale_adam` also rescales the betas and epsilon
(Malladi et al. 2022, arXiv:2205.10287).
"""

from __future__ import annotations

import math
import numbers
import warnings

from kbatch._internal.validate import check_int
from kbatch._internal.validate import check_number

__all__ = [
    "ADAM_WARN_THRESHOLD",
    "RULES",
    "scale_adam",
    "scale_lr",
    "scaling_factor",
]

RULES = ("linear", "sqrt", "none", "noise_aware")


def _check_batch(name, value):
    return check_int(name, value, minimum=1)


def _check_rule(rule):
    if isinstance(rule, numbers.Real) and not isinstance(rule, bool):
        return check_number("rule", rule)
    if rule not in RULES:
        raise ValueError(
            f"Argument `rule` must be one of {RULES} or a number (the exponent "
            f"a of lr * (B / B0) ** a). Received: rule={rule!r}"
        )
    return rule


def scaling_factor(from_batch: int, to_batch: int, rule="linear",
                   noise_scale: float | None = None) -> float:
    """The factor `scale_lr` multiplies the learning rate by.

    Example:

    >>> scaling_factor(256, 1024, "sqrt")
    2.0
    """
    from_batch = _check_batch("from_batch", from_batch)
    to_batch = _check_batch("to_batch", to_batch)
    rule = _check_rule(rule)
    ratio = to_batch / from_batch
    if rule == "noise_aware":
        if noise_scale is None:
            raise ValueError(
                "The 'noise_aware' rule needs the gradient noise scale: pass "
                "`noise_scale` (e.g. measured by kbatch.measure_noise_scale). "
                "Received: noise_scale=None"
            )
        noise_scale = check_number("noise_scale", noise_scale, positive=True)
        return (1.0 + noise_scale / from_batch) / (1.0 + noise_scale / to_batch)
    if noise_scale is not None:
        check_number("noise_scale", noise_scale, positive=True)
    if rule == "linear":
        return ratio
    if rule == "sqrt":
        return math.sqrt(ratio)
    if rule == "none":
        return 1.0
    return ratio ** float(rule)


def scale_lr(lr: float, from_batch: int, to_batch: int, rule="linear",
             noise_scale: float | None = None) -> float:
    """Scale a learning rate found at batch size `from_batch` to `to_batch`.

    Args:
        lr: Float. The learning rate that works at `from_batch`.
        from_batch: Integer. The batch size `lr` was tuned for (global: all
            replicas and accumulation steps together).
        to_batch: Integer. The new (global) batch size.
        rule: `"linear"` (Goyal et al. 2017), `"sqrt"` (Krizhevsky 2014;
            Hoffer et al. 2017), `"none"`, `"noise_aware"` (McCandlish et al.
            2018; needs `noise_scale`) or a number `a` for `(B / B0) ** a`.
            Defaults to `"linear"`.
        noise_scale: Float. The gradient noise scale `B_noise`, for
            `"noise_aware"`.

    Returns:
        The scaled learning rate.

    Example:

    >>> scale_lr(0.1, 256, 8192)  # Goyal et al.: 0.1 per 256 images
    3.2
    >>> round(scale_lr(1e-3, 64, 1024, "sqrt"), 6)
    0.004
    >>> round(scale_lr(0.1, 256, 8192, "noise_aware", noise_scale=1000), 4)
    0.4372
    """
    lr = check_number("lr", lr, positive=True)
    return lr * scaling_factor(from_batch, to_batch, rule, noise_scale)


# Malladi et al.'s square-root rule approximates the same SDE only while
# kappa * (1 - beta) stays small; past this we warn, at >= 1 beta would be <= 0.
ADAM_WARN_THRESHOLD = 0.5


def scale_adam(learning_rate: float, beta_1: float, beta_2: float, epsilon: float,
               from_batch: int, to_batch: int) -> dict:
    """The square-root scaling rule for Adam (Malladi et al., 2022).

    With `kappa = to_batch / from_batch`: `lr -> sqrt(kappa) * lr`,
    `1 - beta_1 -> kappa * (1 - beta_1)`, `1 - beta_2 -> kappa * (1 - beta_2)`,
    `epsilon -> epsilon / sqrt(kappa)`. The rule holds while `kappa * (1 - beta)`
    is small; a `UserWarning` says when it exceeds 0.5, and a `ValueError` when
    a beta would drop to 0 or below.

    Reference: S. Malladi, K. Lyu, A. Panigrahi, S. Arora, "On the SDEs and
    Scaling Rules for Adaptive Gradient Algorithms", NeurIPS 2022,
    https://arxiv.org/abs/2205.10287.

    Returns:
        A dict with keys `learning_rate`, `beta_1`, `beta_2`, `epsilon`, ready
        for `keras.optimizers.Adam(**d)`.

    Example:

    >>> d = scale_adam(1e-3, 0.9, 0.999, 1e-8, from_batch=256, to_batch=1024)
    >>> {k: round(v, 12) for k, v in d.items()}
    {'learning_rate': 0.002, 'beta_1': 0.6, 'beta_2': 0.996, 'epsilon': 5e-09}
    """
    learning_rate = check_number("learning_rate", learning_rate, positive=True)
    beta_1 = check_number("beta_1", beta_1, low=0.0, high=1.0, high_inclusive=False)
    beta_2 = check_number("beta_2", beta_2, low=0.0, high=1.0, high_inclusive=False)
    epsilon = check_number("epsilon", epsilon, low=0.0)
    kappa = _check_batch("to_batch", to_batch) / _check_batch("from_batch", from_batch)
    scaled = {}
    for name, beta in (("beta_1", beta_1), ("beta_2", beta_2)):
        one_minus = kappa * (1.0 - beta)
        if one_minus >= 1.0:
            raise ValueError(
                f"The square-root rule cannot scale `{name}`={beta:g} by "
                f"kappa={kappa:g} (to_batch / from_batch): 1 - {name} would become "
                f"{one_minus:g} >= 1. Scale the batch in smaller steps, or start "
                f"from a larger {name}."
            )
        if one_minus > ADAM_WARN_THRESHOLD:
            warnings.warn(
                f"kappa * (1 - {name}) = {one_minus:.3g} is no longer small, so the "
                "square-root rule for Adam (Malladi et al. 2022) is only a rough "
                "guide here; check the result with a short run.",
                UserWarning,
                stacklevel=2,
            )
        scaled[name] = 1.0 - one_minus
    return {
        "learning_rate": learning_rate * math.sqrt(kappa),
        "beta_1": scaled["beta_1"],
        "beta_2": scaled["beta_2"],
        "epsilon": epsilon / math.sqrt(kappa),
    }

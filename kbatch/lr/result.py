"""`LRFinderResult`: the curve of a range test, its suggestions, plot and file."""

from __future__ import annotations

import math

import numpy as np

from kbatch._internal import io as _io
from kbatch._internal.results import Result
from kbatch.lr import rules

__all__ = [
    "SCHEDULE_KINDS",
    "SUGGESTION_METHODS",
    "LRFinderResult",
    "LRFinderWarning",
]

SUGGESTION_METHODS = (*rules.SUGGESTION_RULES, "auto")
SCHEDULE_KINDS = ("constant", "cosine", "one_cycle")


class LRFinderWarning(UserWarning):
    """The range-test curve is unusable or doubtful; the message says the fix.

    Example: a script that must not go on with a doubtful LR turns it into an
    error (`warnings.simplefilter("error", LRFinderWarning)`); it is a
    `UserWarning`, shown once per call site by default.

    >>> issubclass(LRFinderWarning, UserWarning)
    True
    """


class LRFinderResult(Result):
    """The outcome of an LR range test.

    Keeps the raw data (`lrs`, the true per-step `losses`) and derives the rest:
    the smoothed curve, one suggestion per rule, an agreed suggestion with its
    spread, diagnostics, a plot and a JSON file.

    The rules read a zero-lag `trend` of the losses (the causal moving average
    in `smoothed_losses` lags by decades of LR and is used only to detect
    divergence), against the effective learning rate, which differs from the
    set one only for SGD/RMSprop with momentum (see
    `kbatch.rules.effective_lrs`).

    Suggestion rules (see `kbatch.lr.rules`):
    - `"steepest"`: where the loss falls fastest against log LR.
    - `"valley"`: the middle of the descent (after fastai's rule); cautious.
    - `"minimum"`: the LR of the lowest loss, divided by 10 (rule of thumb).
    - `"auto"`: the geometric mean of the LR of the lowest loss and the steepest
      LR, divided by 1.4; validated against dense LR grids in
      `benchmarks/bench_lr_quality.py`.

    Args:
        lrs: Array of the learning rates tried, one per recorded step.
        losses: Array of the loss recorded at each step (raw, unsmoothed).
        smoothing: Float. EMA coefficient used for `smoothed_losses`.
        batch_size: Integer or `None`. Batch size of the test.
        min_lr, max_lr, num_steps, mode, diverge_threshold: The sweep's settings.
        stop_reason: Why the sweep ended: `"completed"`, `"diverged"`,
            `"non_finite"`, `"loss_scale"`, `"ended"` (training ended first) or
            `"interrupted"`.
        skipped_steps: Integer. Steps whose update the loss scaler skipped.
        loss_kind: `"train"` or `"validation"`: which loss was recorded.
        metadata: Optional dict of extra JSON-serializable information.

    Example:

    >>> lrs = np.logspace(-5, 0, 50)
    >>> losses = 2.0 - np.tanh(np.log10(lrs) + 3) + (lrs > 0.3) * 50 * lrs
    >>> result = LRFinderResult(lrs, losses, smoothing=0.0)
    >>> 1e-4 < result.suggestion() < 1e-1
    True
    >>> sorted(result.suggestions())
    ['auto', 'minimum', 'steepest', 'valley']
    """

    def __init__(
        self,
        lrs,
        losses,
        *,
        smoothing: float = 0.98,
        batch_size: int | None = None,
        min_lr: float | None = None,
        max_lr: float | None = None,
        num_steps: int | None = None,
        mode: str = "exponential",
        diverge_threshold: float = 4.0,
        stop_reason: str = "completed",
        skipped_steps: int = 0,
        loss_kind: str = "train",
        momentum: float = 0.0,
        metadata: dict | None = None,
    ):
        self.lrs = np.asarray(lrs, dtype=np.float64).reshape(-1)
        self.losses = np.asarray(losses, dtype=np.float64).reshape(-1)
        if self.lrs.shape != self.losses.shape:
            raise ValueError(
                "Arguments `lrs` and `losses` must have the same length. "
                f"Received: {self.lrs.size} lrs and {self.losses.size} losses."
            )
        self.smoothing = float(smoothing)
        self.smoothed_losses = rules.smooth_losses(self.losses, self.smoothing)
        self.momentum = float(momentum)
        self.trend = rules.trend(self.losses)
        self.effective_lrs = rules.effective_lrs(self.lrs, self.momentum)
        self.batch_size = None if batch_size is None else int(batch_size)
        self.min_lr = min_lr
        self.max_lr = max_lr
        self.num_steps = num_steps
        self.mode = mode
        self.diverge_threshold = diverge_threshold
        self.stop_reason = stop_reason
        self.skipped_steps = int(skipped_steps)
        self.loss_kind = loss_kind
        self.metadata = dict(metadata or {})
        self._suggestions = None

    # ------------------------------------------------------------ suggestions
    @property
    def diverged(self) -> bool:
        """True when the sweep stopped because the loss blew up."""
        return self.stop_reason in ("diverged", "non_finite", "loss_scale")

    def suggestions(self) -> dict:
        """Every rule's suggested LR, `None` where a rule has no answer."""
        if self._suggestions is None:
            lrs, curve = self.effective_lrs, self.trend
            values = {
                name: rule(lrs, curve)
                for name, rule in rules.SUGGESTION_RULES.items()
            }
            values["auto"] = rules.agree(lrs, curve, values)
            # Never hand out an LR at which the loss was not seen to fall.
            floor = self.fall_lr
            self._suggestions = {
                name: None if floor is None or value is None else max(value, floor)
                for name, value in values.items()
            }
        return dict(self._suggestions)

    @property
    def fall_lr(self) -> float | None:
        """The (effective) LR at which the loss started to fall, or `None`
        when it never fell by more than its noise: then there is no
        suggestion, and every rule's value is at least this LR."""
        return rules.fall_start(self.effective_lrs, self.trend, self.losses)

    @property
    def dead(self) -> bool:
        """True when the loss never fell by more than its noise: the curve
        supports no suggestion (`find_lr` then extends the sweep)."""
        return self.fall_lr is None

    def suggestion(self, method: str = "auto") -> float:
        """The suggested learning rate.

        Args:
            method: One of `"auto"` (default), `"steepest"`, `"valley"`,
                `"minimum"`.

        Returns:
            The learning rate as a float.

        Raises:
            ValueError: for an unknown method, or when the curve supports no
                suggestion (the message says why and what to change).
        """
        if method not in SUGGESTION_METHODS:
            raise ValueError(
                f"Argument `method` must be one of {SUGGESTION_METHODS}. "
                f"Received: method={method!r}"
            )
        value = self.suggestions()[method]
        if value is None:
            if self.dead:
                reasons = [
                    f"The loss was not seen to fall at any learning rate of the "
                    f"sweep ({self.lrs.size} points"
                    + (f" at batch size {self.batch_size}" if self.batch_size
                       else "")
                    + "), so any LR read off it could leave the model "
                    "untrained. Give the test more samples (`find_lr(..., "
                    "num_samples=...)`), a larger `batch_size` or "
                    "`validation_data`; check the loss and labels."
                ]
            else:
                reasons = self.diagnose() or [
                    f"The curve has {self.lrs.size} points; the rule found no "
                    "descending stretch."
                ]
            raise ValueError(
                f"The range test supports no {method!r} suggestion. "
                + " ".join(reasons)
            )
        return value

    def apply(self, model, method: str = "auto") -> str:
        """Train `model` at the suggested LR from now on; returns what it did.

        An optimizer with a plain learning rate gets the value. One compiled
        with a `LearningRateSchedule` keeps the schedule's shape, rescaled to
        start at the suggestion (a `kbatch.LinearWarmup` wrapping it, saved
        with the model), instead of the `TypeError` that assigning a float to
        it raises. The message is also logged (logger `"kbatch"`).

        Example:

        >>> import keras
        >>> lrs = np.logspace(-5, 0, 50)
        >>> losses = 2.0 - np.tanh(np.log10(lrs) + 3) + (lrs > 0.3) * 50 * lrs
        >>> result = LRFinderResult(lrs, losses, smoothing=0.0)
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> decay = keras.optimizers.schedules.ExponentialDecay(0.1, 100, 0.5)
        >>> model.compile(keras.optimizers.SGD(decay), "mse")
        >>> print(result.apply(model))  # doctest: +ELLIPSIS
        Kept the ExponentialDecay schedule, rescaled to start at ...
        """
        import logging

        import keras

        from kbatch._internal import optimizer as _optimizer
        from kbatch.scaling.schedules import LinearWarmup

        optimizer = getattr(model, "optimizer", None)
        if optimizer is None:
            raise ValueError(
                "`apply` needs a compiled model. Call `model.compile(...)` first.")
        lr = self.suggestion(method)
        base = _optimizer.base_optimizer(optimizer)
        current = _optimizer.learning_rate_object(optimizer)
        if _optimizer.is_variable(current):
            base.learning_rate = lr
            text = f"Set the learning rate to {lr:.4g} (the {method!r} suggestion)."
        elif isinstance(current, keras.optimizers.schedules.LearningRateSchedule):
            base.learning_rate = LinearWarmup(lr, lr, 0, after=current)
            model.train_function = None  # traced with the old schedule
            text = (f"Kept the {type(current).__name__} schedule, rescaled to "
                    f"start at {lr:.4g} (the {method!r} suggestion).")
        else:
            raise TypeError(
                "`apply` can set a float or variable learning rate, or rescale a "
                "`keras.optimizers.schedules.LearningRateSchedule`. The "
                f"optimizer's learning rate is a {type(current).__name__}; set "
                f"it yourself to {lr:.4g}.")
        logging.getLogger("kbatch").info(text)
        return text

    def schedule(self, kind: str = "constant", steps: int | None = None, *,
                 warmup_steps: int = 0, method: str = "auto"):
        """A learning-rate schedule built on the suggestion, to compile with.

        Args:
            kind: `"constant"` (the suggestion, after an optional linear
                warm-up from a tenth of it; `kbatch.LinearWarmup`),
                `"cosine"` (Keras' `CosineDecay` from the suggestion to 0 over
                `steps`, with its own warm-up from a tenth), or
                `"one_cycle"` (`kbatch.scaling.schedules.OneCycle` peaking at
                the suggestion; its rise lasts `warmup_steps`, or a quarter
                of `steps`).
            steps: Integer. Total training steps (needed by `"cosine"` and
                `"one_cycle"`).
            warmup_steps: Integer >= 0. Steps of linear warm-up.
            method: Which suggestion (see `suggestion`).

        Returns:
            A serializable `keras.optimizers.schedules.LearningRateSchedule`.

        Example:

        >>> lrs = np.logspace(-5, 0, 50)
        >>> losses = 2.0 - np.tanh(np.log10(lrs) + 3) + (lrs > 0.3) * 50 * lrs
        >>> result = LRFinderResult(lrs, losses, smoothing=0.0)
        >>> cosine = result.schedule("cosine", steps=1000, warmup_steps=100)
        >>> [round(float(cosine(s)) / result.suggestion(), 3) for s in (0, 100, 1000)]
        [0.1, 1.0, 0.0]
        """
        import keras

        from kbatch._internal.validate import check_choice
        from kbatch._internal.validate import check_int
        from kbatch.scaling.schedules import LinearWarmup
        from kbatch.scaling.schedules import OneCycle

        check_choice("kind", kind, SCHEDULE_KINDS)
        warmup_steps = check_int("warmup_steps", warmup_steps, minimum=0)
        lr = self.suggestion(method)
        if kind == "constant":
            if steps is not None:
                check_int("steps", steps, minimum=1)
            return LinearWarmup(lr / 10 if warmup_steps else lr, lr, warmup_steps)
        if steps is None:
            raise ValueError(
                f"Argument `steps` (the total training steps) is required for "
                f"kind={kind!r}. Received: steps=None")
        steps = check_int("steps", steps, minimum=1)
        if warmup_steps >= steps:
            raise ValueError(
                "Argument `warmup_steps` must be smaller than `steps`. Received: "
                f"warmup_steps={warmup_steps}, steps={steps}")
        if kind == "cosine":
            if warmup_steps:
                return keras.optimizers.schedules.CosineDecay(
                    lr / 10, decay_steps=steps - warmup_steps, alpha=0.0,
                    warmup_target=lr, warmup_steps=warmup_steps)
            return keras.optimizers.schedules.CosineDecay(lr, decay_steps=steps)
        fraction = warmup_steps / steps if warmup_steps else 0.25
        return OneCycle(lr, steps, warmup_fraction=fraction)

    def suggestion_interval(self) -> tuple[float, float]:
        """The spread of the suggestions: `(lowest, highest)` of every rule and
        the agreed value. A wide spread means a curve that is hard to read."""
        spread = rules.interval(self.suggestions())
        if spread is None:
            self.suggestion("auto")  # raises with the reasons
        return spread

    def diagnose(self) -> list[str]:
        """Problems with the curve that make suggestions unreliable, with fixes."""
        return rules.diagnose(
            self.effective_lrs,
            self.losses,
            self.trend,
            diverged=self.diverged,
            max_lr=self.max_lr,
        )

    # ------------------------------------------------------------------ plot
    def plot(self, ax=None, *, show_suggestions: bool = True, path=None):
        """Plot loss against learning rate (log scale) with the suggestions.

        Needs matplotlib (`pip install "keras-kbatch[plot]"`).

        Args:
            ax: Optional matplotlib `Axes` to draw on; a new figure otherwise.
            show_suggestions: Mark each rule's suggestion and the agreed one.
            path: Optional file name; the figure is saved there.

        Returns:
            The matplotlib `Axes`.
        """
        from kbatch import plotting

        return plotting.plot_lr_finder(
            self, ax=ax, show_suggestions=show_suggestions, path=path
        )

    # --------------------------------------------------------- serialization
    def _fields(self) -> dict:
        # non-finite numbers become `null`
        suggestions = self.suggestions()
        spread = rules.interval(suggestions)
        return {
            "lrs": _io.json_floats(self.lrs),
            "losses": _io.json_floats(self.losses),
            "smoothed_losses": _io.json_floats(self.smoothed_losses),
            "smoothing": self.smoothing,
            "batch_size": self.batch_size,
            "min_lr": self.min_lr,
            "max_lr": self.max_lr,
            "num_steps": self.num_steps,
            "mode": self.mode,
            "diverge_threshold": self.diverge_threshold,
            "stop_reason": self.stop_reason,
            "skipped_steps": self.skipped_steps,
            "loss_kind": self.loss_kind,
            "momentum": self.momentum,
            "suggestions": suggestions,
            "suggestion_interval": list(spread) if spread else None,
            "diagnostics": self.diagnose(),
            "metadata": self.metadata,
        }

    @classmethod
    def _from_fields(cls, data: dict) -> LRFinderResult:
        lrs = _io.floats_from_json(data.get("lrs"), "lrs")
        losses = _io.floats_from_json(data.get("losses"), "losses")
        if lrs.size != losses.size:
            raise ValueError(
                "Corrupt LRFinderResult: 'lrs' and 'losses' differ in length "
                f"({lrs.size} and {losses.size})."
            )
        if np.any(~np.isfinite(lrs)) or np.any(lrs <= 0):
            raise ValueError("Corrupt LRFinderResult: 'lrs' must be positive numbers.")
        smoothing = data.get("smoothing", 0.98)
        if not isinstance(smoothing, (int, float)) or not 0 <= smoothing < 1:
            raise ValueError(f"Corrupt LRFinderResult: bad 'smoothing' {smoothing!r}.")
        momentum = data.get("momentum", 0.0)
        if not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
            raise ValueError(f"Corrupt LRFinderResult: bad 'momentum' {momentum!r}.")
        metadata = data.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise ValueError("Corrupt LRFinderResult: 'metadata' must be an object.")
        return cls(
            lrs,
            losses,
            smoothing=smoothing,
            batch_size=data.get("batch_size"),
            min_lr=data.get("min_lr"),
            max_lr=data.get("max_lr"),
            num_steps=data.get("num_steps"),
            mode=data.get("mode", "exponential"),
            diverge_threshold=data.get("diverge_threshold", 4.0),
            stop_reason=str(data.get("stop_reason", "completed")),
            skipped_steps=int(data.get("skipped_steps", 0)),
            loss_kind=str(data.get("loss_kind", "train")),
            momentum=momentum,
            metadata=metadata,
        )

    def __repr__(self):
        try:
            auto = self.suggestion()
            low, high = self.suggestion_interval()
            text = f"suggestion={auto:.3g} (rules {low:.3g}..{high:.3g})"
        except ValueError:
            text = "no suggestion"
        return (
            f"<LRFinderResult {self.lrs.size} points, batch_size={self.batch_size}, "
            f"stop={self.stop_reason}, {text}>"
        )

    def summary(self) -> str:
        """A few lines for a terminal: the agreed LR and each rule's value."""
        lines = [f"LR range test: {self.lrs.size} points"
                 + (f" at batch size {self.batch_size}" if self.batch_size else "")
                 + f", stopped: {self.stop_reason}"
                 + (f", {self.skipped_steps} skipped steps" if self.skipped_steps
                    else "")]
        for name, value in self.suggestions().items():
            shown = "-" if value is None or not math.isfinite(value) else f"{value:.3g}"
            lines.append(f"  {name:>9}: {shown}")
        lines.extend(f"  warning: {p}" for p in self.diagnose())
        return "\n".join(lines)


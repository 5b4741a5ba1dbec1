"""`LRFinderResult`: the curve of a range test, its suggestions, plot and file."""

from __future__ import annotations

import math

import numpy as np

from kbatch._internal import io as _io
from kbatch._internal.results import Result
from kbatch.lr import rules

__all__ = [
    "SUGGESTION_METHODS",
    "LRFinderResult",
]

SUGGESTION_METHODS = (*rules.SUGGESTION_RULES, "auto")


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


"""`advise`: memory, throughput, noise scale and LR scaling, turned into one
recommendation."""

from __future__ import annotations

import math
import os
import time

import keras
import numpy as np

from kbatch._internal import accumulation
from kbatch._internal import data as _data
from kbatch._internal import report
from kbatch._internal.results import Result
from kbatch._internal.validate import check_int
from kbatch._internal.validate import check_verbose
from kbatch.advisor.time_to_target import time_to_target
from kbatch.critical.largest_batch import find_max_batch_size
from kbatch.critical.noise_scale import measure_noise_scale
from kbatch.critical.scaling_law import lr_scaling_law
from kbatch.critical.throughput import measure_throughput
from kbatch.lr.batch_sizes import MIN_PROBE_STEPS
from kbatch.lr.batch_sizes import lr_for_batch_sizes

__all__ = [
    "Advice",
    "advise",
]


class Advice(Result):
    """A batch size and learning rate to train with, and why.

    Attributes:
        batch_size: Advised (global) batch size.
        learning_rate: Learning rate for it.
        warmup_steps: Steps of linear warm-up from the small-batch LR (0: none
            needed).
        micro_batch_size: The batch per step when `batch_size` is past the
            memory limit and is trained as micro-batches with gradient
            accumulation (`gradient_accumulation_steps` of them per update);
            otherwise `batch_size`.
        reasons: One line per factor that went into the choice.
        memory, throughput, noise, scaling_law, lr_by_batch_size: The
            measurements (kbatch result objects, or dicts for a loaded
            advice); `lr_by_batch_size` when a budget (`epochs`) was given,
            `scaling_law` otherwise.
        relative_time: Predicted time to a target loss per candidate batch
            size, relative to the best.

    Example:

    >>> import tempfile
    >>> advice = Advice(128, 0.05, 0, ["batch 128: the throughput knee"])
    >>> folder = tempfile.mkdtemp()
    >>> _ = advice.save(folder)  # advice.json, advice.md (and a PNG with matplotlib)
    >>> Advice.load(folder + "/advice.json").learning_rate
    0.05
    """

    def __init__(self, batch_size, learning_rate, warmup_steps, reasons, *,
                 memory=None, throughput=None, noise=None, scaling_law=None,
                 relative_time=None, settings=None, lr_by_batch_size=None,
                 micro_batch_size=None):
        self.batch_size = int(batch_size)
        self.micro_batch_size = int(micro_batch_size or batch_size)
        self.learning_rate = float(learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.reasons = list(reasons)
        self.memory = memory
        self.throughput = throughput
        self.noise = noise
        self.scaling_law = scaling_law
        self.lr_by_batch_size = lr_by_batch_size
        self.relative_time = relative_time or {}
        self.settings = dict(settings or {})

    @property
    def gradient_accumulation_steps(self) -> int:
        """Micro-batches per update (1: the batch fits in memory)."""
        return self.batch_size // self.micro_batch_size

    def fit_kwargs(self) -> dict:
        """Arguments for `model.fit`: the advised `batch_size` (the
        micro-batch, past the memory limit: `apply` makes the optimizer
        accumulate), and `epochs` when the advice was made for a budget.

        Example:

        >>> Advice(128, 0.05, 0, [], settings={"epochs": 20}).fit_kwargs()
        {'batch_size': 128, 'epochs': 20}
        """
        kwargs = {"batch_size": self.micro_batch_size}
        if self.settings.get("epochs"):
            kwargs["epochs"] = int(self.settings["epochs"])
        return kwargs

    def apply(self, model) -> str:
        """Set the advised learning rate (and warm-up) on a compiled model;
        returns what it did. A warm-up ramps linearly from the small-batch LR
        (a tenth of the advised LR if unknown) over `warmup_steps`
        (`kbatch.LinearWarmup`, saved with the model).

        Example:

        >>> import keras
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> model.compile(keras.optimizers.SGD(0.01), "mse")
        >>> print(Advice(64, 0.05, 0, []).apply(model))
        Set the learning rate to 0.05 (advised for batch size 64).
        """
        import logging

        from kbatch._internal import optimizer as _optimizer
        from kbatch.scaling.schedules import LinearWarmup

        if getattr(model, "optimizer", None) is None:
            raise ValueError(
                "`apply` needs a compiled model. Call `model.compile(...)` first.")
        base = _optimizer.base_optimizer(model.optimizer)
        current = _optimizer.learning_rate_object(model.optimizer)
        if self.warmup_steps:
            start = self.learning_rate / 10
            law = self.scaling_law
            lrs = getattr(law, "learning_rates", None) or (
                law.get("learning_rates") if isinstance(law, dict) else None)
            if lrs:
                start = min(float(lrs[0]), self.learning_rate)
            base.learning_rate = LinearWarmup(start, self.learning_rate,
                                              self.warmup_steps)
            model.train_function = None
            text = (f"Set a linear warm-up from {start:.4g} to {self.learning_rate:.4g}"
                    f" over {self.warmup_steps} steps (advised for batch size "
                    f"{self.batch_size}).")
        else:
            if _optimizer.is_variable(current):
                base.learning_rate = self.learning_rate
            else:  # a schedule cannot be assigned a float: a constant schedule
                base.learning_rate = LinearWarmup(self.learning_rate,
                                                  self.learning_rate, 0)
                model.train_function = None
            text = (f"Set the learning rate to {self.learning_rate:.4g} (advised "
                    f"for batch size {self.batch_size}).")
        steps = self.gradient_accumulation_steps
        accumulation.configure(model, steps)
        if steps > 1:
            text += (f" Past the memory limit: {steps} micro-batches of "
                     f"{self.micro_batch_size} per update (gradient "
                     "accumulation); fit with `batch_size="
                     f"{self.micro_batch_size}` (`fit_kwargs()`).")
        logging.getLogger("kbatch").info(text)
        return text

    def summary(self) -> str:
        lines = [f"Advice: batch size {self.batch_size}"
                 + (f" ({self.gradient_accumulation_steps} micro-batches of "
                    f"{self.micro_batch_size})" if self.micro_batch_size
                    < self.batch_size else "")
                 + f", learning rate {self.learning_rate:.3g}"
                 + (f", {self.warmup_steps} warm-up steps" if self.warmup_steps
                    else ", no warm-up needed")]
        lines += [f"  - {reason}" for reason in self.reasons]
        return "\n".join(lines)

    def __repr__(self):
        return (f"<Advice batch_size={self.batch_size} learning_rate="
                f"{self.learning_rate:.3g} warmup_steps={self.warmup_steps}>")

    def _fields(self):
        def as_dict(value):
            return value.to_dict() if hasattr(value, "to_dict") else value

        return {
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "warmup_steps": self.warmup_steps,
            "micro_batch_size": self.micro_batch_size,
            "reasons": self.reasons,
            "relative_time": {str(k): v for k, v in self.relative_time.items()},
            "memory": as_dict(self.memory),
            "throughput": as_dict(self.throughput),
            "noise": as_dict(self.noise),
            "scaling_law": as_dict(self.scaling_law),
            "lr_by_batch_size": as_dict(self.lr_by_batch_size),
            "settings": self.settings,
        }

    @classmethod
    def _from_fields(cls, data):
        try:
            batch_size = int(data["batch_size"])
            learning_rate = float(data["learning_rate"])
            warmup_steps = int(data["warmup_steps"])
            reasons = [str(r) for r in data["reasons"]]
            micro = int(data.get("micro_batch_size") or batch_size)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"Corrupt Advice file: {e!r}") from None
        if (batch_size < 1 or not learning_rate > 0 or warmup_steps < 0
                or micro < 1 or batch_size % micro):
            raise ValueError("Corrupt Advice file: values out of range.")
        return cls(batch_size, learning_rate, warmup_steps, reasons,
                   memory=data.get("memory"), throughput=data.get("throughput"),
                   noise=data.get("noise"), scaling_law=data.get("scaling_law"),
                   lr_by_batch_size=data.get("lr_by_batch_size"),
                   relative_time={int(k): v for k, v in
                                  (data.get("relative_time") or {}).items()},
                   settings=data.get("settings"), micro_batch_size=micro)

    def save(self, directory) -> dict:
        """Write `advice.json`, `advice.md` and (with matplotlib) `advice.png`.

        The JSON is written atomically. Returns the paths written.
        """
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        paths = {"json": os.path.join(directory, "advice.json"),
                 "markdown": os.path.join(directory, "advice.md")}
        super().save(paths["json"])
        with open(paths["markdown"], "w", encoding="utf-8") as f:
            f.write(self.markdown())
        try:
            from kbatch import plotting

            plotting.require_matplotlib()
        except ImportError:
            return paths
        paths["png"] = os.path.join(directory, "advice.png")
        self.plot(path=paths["png"])
        return paths

    @classmethod
    def load(cls, path) -> Advice:
        """Read `advice.json` (or the directory holding it)."""
        path = os.fspath(path)
        if os.path.isdir(path):
            path = os.path.join(path, "advice.json")
        return super().load(path)

    def markdown(self) -> str:
        lines = ["# kbatch advice", "",
                 f"- **Batch size:** {self.batch_size}",
                 *([f"- **Micro-batch:** {self.micro_batch_size} "
                    f"(x{self.gradient_accumulation_steps}, gradient accumulation)"]
                   if self.micro_batch_size < self.batch_size else []),
                 f"- **Learning rate:** {self.learning_rate:.4g}",
                 f"- **Warm-up:** {self.warmup_steps} steps", "", "## Why", ""]
        lines += [f"- {reason}" for reason in self.reasons]
        if self.relative_time:
            lines += ["", "## Predicted time to a target loss", "",
                      "| batch size | relative time |", "|---|---|"]
            for size, rel in sorted(self.relative_time.items()):
                mark = " (advised)" if size == self.batch_size else ""
                shown = f"{rel:.2f}" if rel is not None and math.isfinite(rel) else "-"
                lines.append(f"| {size}{mark} | {shown} |")
        lines += ["", "Measurements in `advice.json`; figure in `advice.png`.", ""]
        return "\n".join(lines)

    def plot(self, path=None):
        """The four panels: range tests, LR scaling, throughput, time to target."""
        from kbatch import plotting

        plt = plotting.require_matplotlib()
        fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
        law = self.scaling_law
        if law is not None and hasattr(law, "results"):
            ax = axes[0, 0]
            lows, highs = [], []
            for b, result in zip(law.batch_sizes, law.results):
                ok = np.isfinite(result.trend)
                if ok.any():
                    lows.append(np.nanmin(result.trend))
                    highs.append(result.trend[0])
                line = ax.plot(result.effective_lrs[ok], result.trend[ok],
                               label=f"B={b}")[0]
                lr = result.suggestion()
                ax.axvline(lr, color=line.get_color(), linestyle=":", linewidth=1)
            if lows:
                pad = 0.1 * (max(highs) - min(lows))
                ax.set_ylim(min(lows) - pad, max(highs) + 3 * pad)
            ax.set_xscale("log")
            ax.set_xlabel("learning rate")
            ax.set_ylabel("loss (trend)")
            ax.set_title("LR range tests")
            ax.legend(fontsize="small")
            ax.grid(alpha=0.25)
            plotting.plot_scaling_law(law, ax=axes[0, 1])
            axes[0, 1].axvline(self.batch_size, color="black", linestyle="--")
        measured = self.lr_by_batch_size
        if measured is not None and hasattr(measured, "probes"):
            ax = axes[0, 0]
            for b in measured.batch_sizes:
                pairs = sorted(p for p in measured.probes.get(b, [])
                               if np.isfinite(p[1]))
                if pairs:
                    ax.plot([p[0] for p in pairs], [p[1] for p in pairs],
                            marker="o", label=f"B={b}")
            ax.set_xscale("log")
            ax.set_xlabel("learning rate")
            ax.set_ylabel("validation loss after the probe")
            ax.set_title("Probes: a quarter of the budget each")
            ax.legend(fontsize="small")
            ax.grid(alpha=0.25)
            plotting.plot_lr_by_batch_size(measured, ax=axes[0, 1])
            axes[0, 1].axvline(self.batch_size, color="black", linestyle="--")
        cap = None
        if self.memory is not None and hasattr(self.memory, "train_batch_size"):
            cap = self.memory.train_batch_size
        if self.throughput is not None and hasattr(self.throughput, "batch_sizes"):
            plotting.plot_throughput(self.throughput, ax=axes[1, 0],
                                     chosen=self.batch_size, memory_cap=cap)
        ax = axes[1, 1]
        if measured is not None and hasattr(measured, "best_losses"):
            losses = measured.best_losses
            sizes = sorted(losses)
            ax.plot(sizes, [losses[b] for b in sizes], marker="o",
                    label="lowest probe loss")
            lowest = min(losses.values())
            ax.axhline(lowest + QUALITY_TOLERANCE * abs(lowest), color="grey",
                       linestyle=":", label=f"within {QUALITY_TOLERANCE:.0%}")
            ax.axvline(self.batch_size, color="black", linestyle="--",
                       label=f"advised: {self.batch_size}")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("batch size")
            ax.set_ylabel("validation loss, at each size's best LR")
            ax.set_title("How well each batch size trains (equal samples)")
            ax.legend(fontsize="small")
            ax.grid(alpha=0.25)
        elif self.relative_time:
            sizes = sorted(self.relative_time)
            ax.plot(sizes, [self.relative_time[s] for s in sizes], marker="o")
            ax.axvline(self.batch_size, color="black", linestyle="--",
                       label=f"advised: {self.batch_size}")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("batch size")
            ax.set_ylabel("relative time to target")
            title = "Predicted time to a target loss"
            if self.noise is not None and hasattr(self.noise, "b_simple"):
                title += f" (B_simple={self.noise.b_simple:.3g})"
            ax.set_title(title)
            ax.legend(fontsize="small")
            ax.grid(alpha=0.25)
        fig.suptitle(f"kbatch advice: batch {self.batch_size}, LR "
                     f"{self.learning_rate:.3g}")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=100)
            plt.close(fig)
        return fig


def _candidates(n, cap, batch_sizes):
    if batch_sizes is not None:
        sizes = [check_int(f"batch_sizes[{i}]", b, minimum=1)
                 for i, b in enumerate(batch_sizes)]
        if sorted(set(sizes)) != sizes or len(sizes) < 2:
            raise ValueError(
                "Argument `batch_sizes` must hold two or more strictly increasing "
                f"sizes. Received: batch_sizes={list(batch_sizes)}")
        return sizes
    top = min(cap, max(16, n // 4))
    sizes = [2**k for k in range(4, 20) if 2**k <= top]
    if len(sizes) < 2:
        raise ValueError(
            f"Too few samples ({n}) to compare batch sizes: the advisor needs at "
            "least 128 samples, or explicit `batch_sizes`.")
    return sizes


def advise(
    build_model,
    x,
    y=None,
    *,
    batch_sizes=None,
    epochs: int | None = None,
    max_batch_size: int | None = None,
    train_steps: int = 200,
    noise_steps: int = 30,
    range_test_steps: int = 100,
    throughput_steps: int = 30,
    seed: int = 0,
    verbose="auto",
) -> Advice:
    """Measure, then advise a batch size, a learning rate and a warm-up.

    Four measurements, each printed as it finishes:

    1. **Memory**: the largest batch that trains (`find_max_batch_size`), a
       hard cap.
    2. **Throughput** at each candidate batch size (`measure_throughput`), and
       its knee.
    3. **LR scaling**: an LR range test at several batch sizes
       (`lr_scaling_law`), which gives the learning rate for any batch size.
    4. **Gradient noise scale** `B_simple` (`measure_noise_scale`), measured
       after `train_steps` steps of training at the smallest batch size, since
       it is tiny at initialization.

    With a training budget (`epochs`), step 3 is `lr_for_batch_sizes` at
    every candidate that fits: the best LR of each batch size for that budget,
    measured with short probes, and how low each batch size's best probe got
    the validation loss. The advice is the fastest batch size whose best
    probe is within 1% of the lowest loss, at its measured LR, without
    warm-up (the LR was measured without one). This is the recommended use:
    the best LR depends on how long one trains.

    Without `epochs`, the advised batch size minimises the predicted time to
    reach a given loss,
    `(B + B_noise) / throughput(B)` (McCandlish et al. 2018, with
    `B_noise ~ B_simple`), among the candidates that fit in memory: below the
    critical batch size a larger batch saves steps almost for free, above it
    the extra samples are wasted unless the hardware is idle. The learning rate
    comes from the fitted scaling law at that batch size; a warm-up of two
    epochs is advised when it is more than twice the small-batch LR.

    Args:
        build_model: A function returning a fresh compiled model (called
            several times).
        x, y: Training samples as arrays.
        batch_sizes: Candidate batch sizes. Defaults to powers of two from 16
            up to a quarter of the samples and the memory cap.
        epochs: Optional integer. The training budget the advice is for
            (recommended; see above).
        max_batch_size: Integer. Upper bound of the memory search. Defaults to
            the number of samples (at most 8192).
        train_steps: Integer. Training steps before measuring the noise scale.
        noise_steps: Integer. Batches measured for the noise scale.
        range_test_steps: Integer. Steps of each range test.
        throughput_steps: Integer. Timed steps per batch size.
        seed: Integer. Defaults to `0`.
        verbose: `"auto"`, `0` or `1` (progress lines).

    Returns:
        An `Advice`: `.batch_size`, `.learning_rate`, `.warmup_steps`,
        `.reasons`, `.save(directory)`.

    Example (small settings, so that it runs in seconds):

    >>> import keras, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.random((1024, 8)).astype("float32")
    >>> y = (x.sum(axis=1) > 4).astype("int32")
    >>> def build_model():
    ...     model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16),
    ...                               keras.layers.Dense(2, activation="softmax")])
    ...     model.compile("sgd", "sparse_categorical_crossentropy")
    ...     return model
    >>> advice = advise(build_model, x, y, batch_sizes=[16, 64], train_steps=20,
    ...                 noise_steps=5, range_test_steps=40, throughput_steps=5,
    ...                 verbose=0)
    >>> advice.batch_size in (16, 64) and advice.learning_rate > 0
    True
    >>> len(advice.reasons) >= 4  # memory, throughput, noise scale, LR scaling
    True
    """
    if not callable(build_model):
        raise TypeError("Argument `build_model` must be a function returning a "
                        f"compiled model. Received: {build_model!r}")
    verbose = check_verbose(verbose)
    if not _data.is_array_like(x):
        raise TypeError(
            "advise needs the training samples as arrays (it builds batches of "
            f"many sizes). Received: x of type {type(x).__name__}")
    x, y, n = _data.check_arrays(x, y)
    epochs = check_int("epochs", epochs, minimum=1, allow_none=True)
    limit = check_int("max_batch_size", max_batch_size, minimum=1,
                      allow_none=True) or min(8192, n)
    started = time.perf_counter()

    def say(text):
        if verbose:
            report.message(f"[advise {time.perf_counter() - started:5.0f}s] {text}")

    keras.utils.set_random_seed(seed)
    model = build_model()
    candidates = _candidates(n, limit, batch_sizes)
    say(f"{n} samples; candidate batch sizes {candidates}")

    memory = find_max_batch_size(model, x, y, start=candidates[0],
                                 max_batch_size=max(limit, candidates[-1]),
                                 evaluation=False, verbose=0)
    if memory.train_batch_size is None:
        raise RuntimeError(
            f"Not even batch size {candidates[0]} fits in memory for training.")
    # the margin guards a limit that was found; a search that reached its own
    # limit found none, and every size up to it trained
    cap = memory.largest_train if memory.hit_limit else memory.train_batch_size
    say(f"memory: largest batch that trains {memory.largest_train}"
        + (" (the search limit: no memory limit below it)" if memory.hit_limit
           else f"; cap with margin {cap}"))
    fitting = [b for b in candidates if b <= cap] or [candidates[0]]
    past = [b for b in candidates if b > cap]  # by gradient accumulation

    throughput = measure_throughput(model, x, y, batch_sizes=fitting,
                                    num_steps=throughput_steps, warmup_steps=5,
                                    verbose=0)
    say(f"throughput: knee at batch {throughput.knee}, best "
        f"{throughput.best:,.0f} samples/s")
    del model

    if epochs is not None:
        return _advise_for_budget(build_model, x, y, n, epochs, fitting, past,
                                  memory, throughput, cap, candidates, seed, say,
                                  started)

    law_sizes = _spread(fitting, 4)
    law = lr_scaling_law(build_model, x, y, batch_sizes=law_sizes,
                         num_steps=range_test_steps, seed=seed, verbose=0)
    say(f"LR scaling: {law.verdict()}")

    keras.utils.set_random_seed(seed)
    model = build_model()
    small = fitting[0]
    model.optimizer.learning_rate = (law.learning_rates[0]
                                     if law.batch_sizes[0] == small
                                     else law.predict(small, "noise"))
    steps_per_epoch = -(-n // small)
    model.fit(x, y, batch_size=small, epochs=max(1, -(-train_steps // steps_per_epoch)),
              steps_per_epoch=min(train_steps, steps_per_epoch), verbose=0)
    noise_batch = fitting[-1] if fitting[-1] % 4 == 0 else fitting[-1] - fitting[-1] % 4
    noise = measure_noise_scale(model, x, y, batch_size=max(noise_batch, 8),
                                num_steps=noise_steps, num_micro_batches=4,
                                seed=seed, verbose=0)
    del model
    low, high = noise.interval
    say(f"noise scale: B_simple {noise.b_simple:.3g} (90% interval {low:.3g}.."
        f"{high:.3g}) after {train_steps} training steps")

    b_noise = noise.b_simple if math.isfinite(noise.b_simple) else float(fitting[-1])
    rel = time_to_target(fitting, [throughput.samples_per_second[
        throughput.batch_sizes.index(b)] for b in fitting], max(b_noise, 0.0))
    relative_time = {b: (float(r) if math.isfinite(r) else None)
                     for b, r in zip(fitting, rel)}
    finite = [b for b in fitting if relative_time[b] is not None]
    chosen = min(finite, key=lambda b: relative_time[b]) if finite else fitting[0]
    lr = law.predict(chosen, "noise")
    lr_small = law.learning_rates[0]
    warmup = 2 * -(-n // chosen) if lr > 2 * lr_small else 0

    reasons = [
        *_hardware_reasons(memory, throughput, cap),
        f"gradient noise scale: B_simple = {noise.b_simple:.3g} "
        f"({low:.3g}..{high:.3g}); batches well above it waste samples",
        f"time to a target loss ~ (B + B_noise) / throughput(B) is lowest at "
        f"{chosen} among {finite}",
        f"LR scaling measured on this model: {law.verdict()}",
        "the range tests see the start of training, where B_noise is small "
        f"(fit: {law.b_noise:.3g}); it grows as the loss falls (B_simple = "
        f"{noise.b_simple:.3g} after {train_steps} steps), so later in training a "
        "larger batch can take a proportionally larger LR (rule='noise_aware' "
        "with kbatch.ScaleLearningRate)",
        f"learning rate {lr:.3g} at batch {chosen} from the fitted noise law "
        f"({lr_small:.3g} at batch {law.batch_sizes[0]})",
        (f"warm-up: the LR is {lr / lr_small:.1f}x the small-batch LR, so ramp up "
         f"over {warmup} steps (two epochs; Goyal et al. 2017)") if warmup else
        "warm-up: not needed, the LR is within 2x of the small-batch LR",
    ]
    if past:
        reasons.append(
            f"past the memory limit: {past} would train as micro-batches with "
            f"gradient accumulation, at no more samples/s than {cap}, so they "
            "cannot reach a target loss sooner; with a budget (`epochs`) they "
            "are measured, and advised when they train better")
    say(f"advice: batch {chosen}, LR {lr:.3g}, warm-up {warmup} steps")
    return Advice(chosen, lr, warmup, reasons, memory=memory, throughput=throughput,
                  noise=noise, scaling_law=law, relative_time=relative_time,
                  settings={"samples": n, "candidates": candidates, "seed": seed,
                            "train_steps": train_steps, "seconds": round(
                                time.perf_counter() - started, 1)})


def _hardware_reasons(memory, throughput, cap):
    """The memory and throughput lines of an advice's reasons."""
    return [
        f"memory: batches up to {memory.largest_train} train"
        + (" (the search limit, not memory, stopped the search)" if memory.hit_limit
           else f"; {cap} keeps a {memory.margin:.0%} margin"),
        f"throughput: {throughput.knee} already reaches {throughput.fraction:.0%} of "
        f"the best {throughput.best:,.0f} samples/s",
    ]


# Batch sizes whose best probe loss is within this fraction of the lowest are
# as good for the budget; the fastest of them is advised.
QUALITY_TOLERANCE = 0.01


def _accumulated_throughput(build_model, x, y, past, cap, steps, seed, say):
    """Samples/s of each batch in `past` trained as micro-batches of at most
    `cap` with gradient accumulation (measured, accumulation included)."""
    keras.utils.set_random_seed(seed)
    model = build_model()
    accumulation.ensure_optimizer_built(model, x, y, "advise")
    speed, micro = {}, {}
    for b in past:
        micro[b] = accumulation.micro_batch(b, limit=cap)
        accumulation.configure(model, b // micro[b])
        timed = measure_throughput(model, x, y, batch_sizes=[micro[b]],
                                   num_steps=max(steps, 2 * (b // micro[b])),
                                   warmup_steps=5, verbose=0)
        speed[b] = timed.samples_per_second[0]
        say(f"throughput: batch {b} as {b // micro[b]} micro-batches of "
            f"{micro[b]}: {speed[b]:,.0f} samples/s")
    del model
    return speed, micro


def _advise_for_budget(build_model, x, y, n, epochs, fitting, past, memory,
                       throughput, cap, candidates, seed, say, started):
    keras.utils.set_random_seed(seed)
    model = build_model()
    measured = lr_for_batch_sizes(model, x, y, batch_sizes=fitting + past,
                                  epochs=epochs, max_micro_batch_size=cap,
                                  seed=seed, verbose=0)
    del model
    say(f"LR per batch size for {epochs} epochs: {measured.verdict()}")
    losses = measured.best_losses
    lowest = min(losses.values())
    level = lowest + QUALITY_TOLERANCE * abs(lowest)
    good = [b for b in measured.batch_sizes if losses[b] <= level]
    speed = dict(zip(throughput.batch_sizes, throughput.samples_per_second))
    micro = {}
    if [b for b in past if b in good]:  # only where it could be advised
        extra, micro = _accumulated_throughput(
            build_model, x, y, [b for b in past if b in good], cap, 30, seed, say)
        speed.update(extra)
    chosen = max(good, key=lambda b: (speed.get(b, 0.0)
                                      if math.isfinite(speed.get(b, math.nan))
                                      else 0.0, b))
    lr = measured.predict(chosen)
    best_b = min(losses, key=losses.get)
    reasons = [
        *_hardware_reasons(memory, throughput, cap),
        f"budget: {epochs} epochs; the best LR of each batch size was measured "
        f"for it with probes of {measured.metadata['probe_fraction']:.0%} of its "
        f"samples (at least {MIN_PROBE_STEPS} steps): "
        + ", ".join(f"{b}: {v:.3g}" for b, v in
                    zip(measured.batch_sizes, measured.learning_rates)),
        f"quality: the lowest probe loss is at batch {best_b} ({lowest:.4g}); "
        f"batch sizes within {QUALITY_TOLERANCE:.0%} of it: {good}",
        f"speed: {chosen} is the fastest of those "
        f"({speed.get(chosen, math.nan):,.0f} samples/s)",
        f"LR scaling measured on this model for the budget: {measured.verdict()}",
        f"learning rate {lr:.3g} at batch {chosen} (measured; as good within 2%: "
        f"{measured.bands[chosen][0]:.3g}..{measured.bands[chosen][1]:.3g})",
        "warm-up: none; the LR was measured without one",
    ]
    if past:
        reasons.append(
            f"past the memory limit ({cap}): {past} were measured as "
            "micro-batches with gradient accumulation"
            + (f"; the advised {chosen} trains as {chosen // micro[chosen]} "
               f"micro-batches of {micro[chosen]} (`gradient_accumulation_steps"
               f"={chosen // micro[chosen]}`)" if chosen in micro else ""))
    if measured.left_out:
        reasons.append("left out: " + ", ".join(
            f"{b} ({why.splitlines()[0][:60]})"
            for b, why in measured.left_out.items()))
    say(f"advice: batch {chosen}, LR {lr:.3g}, no warm-up")
    return Advice(chosen, lr, 0, reasons, memory=memory, throughput=throughput,
                  lr_by_batch_size=measured, micro_batch_size=micro.get(chosen),
                  settings={"samples": n, "candidates": candidates, "seed": seed,
                            "epochs": epochs, "seconds": round(
                                time.perf_counter() - started, 1)})


def _spread(sizes, count):
    """Up to `count` sizes spread over `sizes`, first and last included."""
    if len(sizes) <= count:
        return list(sizes)
    idx = np.unique(np.round(np.linspace(0, len(sizes) - 1, count)).astype(int))
    return [sizes[i] for i in idx]

"""`lr_scaling_law`: how the best LR moves with the batch size, on your model.

An LR range test at each batch size (a fresh model each time) gives the
suggested LR `lr*(B)`. Two laws are fitted to it:

- a power law `lr* = c * B**alpha` (least squares in log-log): `alpha ~ 1` means
  linear scaling holds, `alpha ~ 0.5` square-root scaling;
- McCandlish et al.'s `lr* = eps_max / (1 + B_noise / B)`: linear below the
  noise scale `B_noise`, flat above it.
"""

from __future__ import annotations

import warnings

import keras

from kbatch._internal import backend as _backend
from kbatch._internal import report
from kbatch._internal.results import Result
from kbatch._internal.validate import check_int
from kbatch._internal.validate import check_verbose
from kbatch.critical.fits import fit_noise_law
from kbatch.critical.fits import fit_power_law
from kbatch.critical.fits import rule_for_exponent

__all__ = [
    "ScalingLawResult",
    "lr_scaling_law",
]


class ScalingLawResult(Result):
    """Suggested LRs across batch sizes, and the laws fitted to them.

    Attributes:
        batch_sizes, learning_rates: The measurements.
        results: The `LRFinderResult` of each batch size.
        exponent: `alpha` of the power law `lr* ~ B**alpha`.
        coefficient: `c` of the power law.
        eps_max, b_noise: The fitted noise law.
        rule: `"linear"`, `"sqrt"` or `"none"`: the rule nearest to `exponent`.
        left_out: `{batch_size: reason}` for the sizes that ran out of memory,
            were not run after one did, or whose curve gave no suggestion.

    Example:

    >>> law = ScalingLawResult([16, 64, 256], [0.01, 0.02, 0.04])
    >>> round(law.exponent, 3), law.rule  # lr* ~ B**0.5: square-root scaling
    (0.5, 'sqrt')
    """

    def __init__(self, batch_sizes, learning_rates, results=(), left_out=None):
        self.batch_sizes = [int(b) for b in batch_sizes]
        self.left_out = {int(b): str(why) for b, why in (left_out or {}).items()}
        self.learning_rates = [float(v) for v in learning_rates]
        self.results = list(results)
        self.exponent, self.coefficient = fit_power_law(self.batch_sizes,
                                                        self.learning_rates)
        self.eps_max, self.b_noise, self.noise_rms = fit_noise_law(
            self.batch_sizes, self.learning_rates)
        self.rule = rule_for_exponent(self.exponent)

    def predict(self, batch_size, law: str = "noise") -> float:
        """The learning rate a fitted law predicts at `batch_size`."""
        if law == "power":
            return self.coefficient * batch_size**self.exponent
        if law == "noise":
            return self.eps_max / (1.0 + self.b_noise / batch_size)
        raise ValueError(f"Argument `law` must be 'noise' or 'power'. Received: "
                         f"law={law!r}")

    def verdict(self) -> str:
        return (f"suggested LR grows as B^{self.exponent:.2f} over batch sizes "
                f"{self.batch_sizes[0]}..{self.batch_sizes[-1]}: closest to "
                f"{self.rule!r} scaling; noise law: eps_max={self.eps_max:.3g}, "
                f"B_noise={self.b_noise:.3g}")

    @classmethod
    def _from_fields(cls, data):
        return cls(data["batch_sizes"], data["learning_rates"],
                   left_out={int(b): why for b, why in
                             (data.get("left_out") or {}).items()})

    def _fields(self):
        return {
            "batch_sizes": self.batch_sizes,
            "learning_rates": self.learning_rates,
            "exponent": self.exponent,
            "coefficient": self.coefficient,
            "eps_max": self.eps_max,
            "b_noise": self.b_noise,
            "noise_rms": self.noise_rms,
            "rule": self.rule,
            "left_out": {str(b): why for b, why in self.left_out.items()},
        }

    def plot(self, ax=None):
        """Suggested LR vs batch size (log-log) with both fitted laws."""
        from kbatch import plotting

        return plotting.plot_scaling_law(self, ax=ax)

    def __repr__(self):
        return f"<ScalingLawResult {self.verdict()}>"


def lr_scaling_law(
    build_model,
    x,
    y=None,
    *,
    batch_sizes,
    epochs: int | None = None,
    num_steps: int = 100,
    seed: int = 0,
    verbose="auto",
    **find_lr_kwargs,
):
    """How the learning rate scales with the batch size on this model.

    With `epochs` (recommended): the relation of the *trained* optimum, the LR
    that is best at each batch size for a run of `epochs` epochs, measured by
    `kbatch.lr_for_batch_sizes` on one model from `build_model()`; returns
    its `LRByBatchSize` (`.exponent`, `.noise_law()`, `.predict(B)`,
    `.verdict()`, `.plot()`).

    Without `epochs`: an LR range test at each batch size, and the law fitted
    to their suggestions (a `ScalingLawResult`). A range test reads the first
    ~100 steps from initialisation: the short-horizon edge of stability at the
    start, which moves much less with the batch size than the LR that is best
    for a whole run (measured: 0.075-0.09 at every batch size 16-512 on an
    MNIST-1D CNN whose trained optimum moves 0.02 -> 0.3).

    Args:
        build_model: A function returning a fresh compiled model. It is called
            once per batch size (once with `epochs`), after
            `keras.utils.set_random_seed(seed)`, so every test starts from the
            same weights.
        x, y: Training data: arrays or an unbatched `tf.data.Dataset`.
        batch_sizes: Two or more increasing batch sizes.
        epochs: Optional integer. The training budget; see above.
        num_steps: Integer. Steps of each range test. Defaults to `100`.
        seed: Integer. Defaults to `0`.
        verbose: `"auto"`, `0` or `1` (a line per batch size).
        **find_lr_kwargs: Passed to `kbatch.find_lr` (`min_lr`, `max_lr`, ...).

    A batch size that runs out of memory is left out, and larger ones are not
    run; a batch size whose curve gives no suggestion (for example a NaN loss
    early in the sweep) is left out too. Both are listed in `.left_out` and
    warned about. Any other error (and Ctrl-C) propagates; each model is
    restored by `find_lr` first.

    Returns:
        A `ScalingLawResult`: `.exponent`, `.rule`, `.predict(B)`, `.plot()`.

    Raises:
        ValueError: when fewer than two batch sizes give a suggestion.

    Example:

    >>> import keras, numpy as np
    >>> x = np.random.default_rng(0).random((1024, 8)).astype("float32")
    >>> y = (x.sum(axis=1) > 4).astype("int32")
    >>> def build_model():
    ...     model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16),
    ...                               keras.layers.Dense(2, activation="softmax")])
    ...     model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    ...     return model
    >>> law = lr_scaling_law(build_model, x, y, batch_sizes=[32, 128], num_steps=60,
    ...                      min_lr=1e-4, max_lr=100.0, verbose=0)
    >>> law.rule in ("linear", "sqrt", "none")  # the rule nearest the exponent
    True
    """
    from kbatch.lr.find import find_lr

    if not callable(build_model) or isinstance(build_model, keras.Model):
        raise TypeError(
            "Argument `build_model` must be a function returning a compiled "
            f"model. Received: {build_model!r}"
        )
    sizes = list(batch_sizes)
    if len(sizes) < 2:
        raise ValueError(
            f"Argument `batch_sizes` needs two or more sizes. Received: {sizes}")
    for i, b in enumerate(sizes):
        check_int(f"batch_sizes[{i}]", b, minimum=1)
    if sorted(set(sizes)) != sizes:
        raise ValueError(
            f"Argument `batch_sizes` must be strictly increasing. Received: {sizes}")
    verbose = check_verbose(verbose)
    if epochs is not None:
        from kbatch.lr.batch_sizes import lr_for_batch_sizes

        epochs = check_int("epochs", epochs, minimum=1)
        if find_lr_kwargs:
            raise TypeError(
                "With `epochs`, lr_scaling_law measures with short training runs "
                "and takes no range-test arguments. Received: "
                f"{sorted(find_lr_kwargs)}")
        keras.utils.set_random_seed(seed)
        model = build_model()
        if not isinstance(model, keras.Model):
            raise TypeError(
                "`build_model()` must return a compiled `keras.Model`. Received: "
                f"{type(model).__name__}")
        return lr_for_batch_sizes(model, x, y, batch_sizes=sizes, epochs=epochs,
                                  seed=seed, verbose=verbose)
    measured, results, lrs, left_out = [], [], [], {}
    for b in sizes:
        if any(reason == "out of memory" for reason in left_out.values()):
            left_out[b] = "not run: a smaller batch ran out of memory"
            continue
        keras.utils.set_random_seed(seed)
        model = build_model()
        if not isinstance(model, keras.Model):
            raise TypeError(
                "`build_model()` must return a compiled `keras.Model`. Received: "
                f"{type(model).__name__}"
            )
        try:
            result = find_lr(model, x, y, batch_size=b, num_steps=num_steps,
                             seed=seed, verbose=0, **find_lr_kwargs)
            lr = result.suggestion()
        except ValueError as error:  # the curve supports no suggestion
            left_out[b] = f"no suggestion: {error}"
        except Exception as error:
            if not _backend.is_oom(error):
                raise
            left_out[b] = "out of memory"
        else:
            measured.append(b)
            results.append(result)
            lrs.append(lr)
        finally:
            del model
        if verbose:
            shown = (f"suggested LR {lrs[-1]:.3g}" if b not in left_out
                     else left_out[b].split(":")[0])
            report.message(f"lr_scaling_law: batch {b}: {shown}")
    if len(measured) < 2:
        raise ValueError(
            "lr_scaling_law needs a suggested LR at two or more batch sizes to "
            f"fit a law; it got {len(measured)}. Left out: {left_out}. Widen "
            "`min_lr`/`max_lr`, raise `num_steps`, or pass smaller batch sizes."
        )
    if left_out:
        warnings.warn(
            "lr_scaling_law left out batch sizes "
            + ", ".join(f"{b} ({why.split(':')[0]})" for b, why in left_out.items())
            + "; the law is fitted to the others.",
            stacklevel=2,
        )
    return ScalingLawResult(measured, lrs, results, left_out=left_out)

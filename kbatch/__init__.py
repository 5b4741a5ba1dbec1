"""kbatch: which batch size, and which learning rate for it? Measured, for Keras 3.

Where things are (one subpackage per capability):

- `kbatch.lr`: the LR range test -- `find_lr`, `LRRangeTest`,
  `LRFinderResult`; the suggestion rules in `kbatch.lr.rules`.
- `kbatch.scaling`: a new batch size, a new LR -- `scale_lr`, `scale_adam`,
  `default_rule`, `BatchScaledSchedule`, `ScaleLearningRate`,
  `BatchSizeSchedule` / `fit_with_batch_schedule`, `fit_adaptive`,
  `GhostBatchNormalization`.
- `kbatch.critical`: the batch-size limits -- `GradientNoiseScale`,
  `measure_noise_scale`, `find_max_batch_size`, `measure_throughput`,
  `lr_scaling_law`.
- `kbatch.advisor`: `advise` and `Advice`, one recommendation from them.
- `kbatch.tuner`: `BatchLRHyperModel`, `PatternSearch`, `summarize` for
  KerasTuner.
- `kbatch.precision`, `kbatch.datasets`, `kbatch.models`: mixed precision,
  data without downloads, small reference models.

The names below are re-exported here; everything under `kbatch._internal`
is private. They are imported on first use (PEP 562), so `import kbatch`, and
the `kbatch` command's `--help`, do not load Keras, TensorFlow or KerasTuner;
kbatch's Keras-serializable classes are registered as soon as Keras is loaded.
"""

__version__ = "0.1.0.dev0"

import importlib
from typing import TYPE_CHECKING

from kbatch._internal import deprecation as _deprecation
from kbatch._internal import registration as _registration

# Each re-exported name and the subpackage it comes from.
_EXPORTS = {
    "Advice": "advisor",
    "advise": "advisor",
    "GradientNoiseScale": "critical",
    "MaxBatchSizeResult": "critical",
    "NoiseScaleResult": "critical",
    "ScalingLawResult": "critical",
    "ThroughputResult": "critical",
    "find_max_batch_size": "critical",
    "lr_scaling_law": "critical",
    "measure_noise_scale": "critical",
    "measure_throughput": "critical",
    "LRByBatchSize": "lr",
    "LRFinderResult": "lr",
    "LRFinderWarning": "lr",
    "LRRangeTest": "lr",
    "find_lr": "lr",
    "lr_for_batch_sizes": "lr",
    "BatchScaledSchedule": "scaling",
    "BatchSizeSchedule": "scaling",
    "GhostBatchNormalization": "scaling",
    "ScaleLearningRate": "scaling",
    "default_rule": "scaling",
    "fit_adaptive": "scaling",
    "fit_with_batch_schedule": "scaling",
    "global_batch_size": "scaling",
    "scale_adam": "scaling",
    "scale_lr": "scaling",
}
_SUBPACKAGES = ("advisor", "critical", "datasets", "lr", "models", "precision",
                "scaling", "tuner")

if TYPE_CHECKING:  # for type checkers and IDEs; at run time, `__getattr__`
    from kbatch import advisor
    from kbatch import critical
    from kbatch import datasets
    from kbatch import lr
    from kbatch import models
    from kbatch import precision
    from kbatch import scaling
    from kbatch import tuner
    from kbatch.advisor import Advice
    from kbatch.advisor import advise
    from kbatch.critical import GradientNoiseScale
    from kbatch.critical import MaxBatchSizeResult
    from kbatch.critical import NoiseScaleResult
    from kbatch.critical import ScalingLawResult
    from kbatch.critical import ThroughputResult
    from kbatch.critical import find_max_batch_size
    from kbatch.critical import lr_scaling_law
    from kbatch.critical import measure_noise_scale
    from kbatch.critical import measure_throughput
    from kbatch.lr import LRByBatchSize
    from kbatch.lr import LRFinderResult
    from kbatch.lr import LRFinderWarning
    from kbatch.lr import LRRangeTest
    from kbatch.lr import find_lr
    from kbatch.lr import lr_for_batch_sizes
    from kbatch.scaling import BatchScaledSchedule
    from kbatch.scaling import BatchSizeSchedule
    from kbatch.scaling import GhostBatchNormalization
    from kbatch.scaling import ScaleLearningRate
    from kbatch.scaling import default_rule
    from kbatch.scaling import fit_adaptive
    from kbatch.scaling import fit_with_batch_schedule
    from kbatch.scaling import global_batch_size
    from kbatch.scaling import scale_adam
    from kbatch.scaling import scale_lr

_deprecation.install()
_registration.install()


def __getattr__(name):
    """Import a subpackage, or the subpackage of a re-exported name, on first
    use; the old flat module names (`kbatch.suggest`, ...) warn."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"kbatch.{_EXPORTS[name]}"), name)
        globals()[name] = value  # later lookups skip this function
        return value
    if name in _SUBPACKAGES or f"kbatch.{name}" in _deprecation.MOVED:
        return importlib.import_module(f"kbatch.{name}")
    raise AttributeError(f"module 'kbatch' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "Advice",
    "BatchScaledSchedule",
    "BatchSizeSchedule",
    "GhostBatchNormalization",
    "GradientNoiseScale",
    "LRByBatchSize",
    "LRFinderResult",
    "LRFinderWarning",
    "LRRangeTest",
    "MaxBatchSizeResult",
    "NoiseScaleResult",
    "ScaleLearningRate",
    "ScalingLawResult",
    "ThroughputResult",
    "__version__",
    "advise",
    "advisor",
    "critical",
    "datasets",
    "default_rule",
    "find_lr",
    "find_max_batch_size",
    "fit_adaptive",
    "fit_with_batch_schedule",
    "global_batch_size",
    "lr",
    "lr_for_batch_sizes",
    "lr_scaling_law",
    "measure_noise_scale",
    "measure_throughput",
    "models",
    "precision",
    "scale_adam",
    "scale_lr",
    "scaling",
    "tuner",
]

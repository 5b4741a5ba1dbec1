"""kbatch: which batch size, and which learning rate for it? Measured, for Keras 3.

Where things are (one subpackage per capability):

- `kbatch.lr`: the LR range test -- `find_lr`, `LRRangeTest`,
  `LRFinderResult`; the suggestion rules in `kbatch.lr.rules`.
- `kbatch.scaling`: a new batch size, a new LR -- `scale_lr`, `scale_adam`,
  `default_rule`, `BatchScaledSchedule`, `ScaleLearningRate`,
  `BatchSizeSchedule` / `fit_with_batch_schedule`, `GhostBatchNormalization`.
- `kbatch.critical`: the batch-size limits -- `GradientNoiseScale`,
  `measure_noise_scale`, `find_max_batch_size`, `measure_throughput`,
  `lr_scaling_law`.
- `kbatch.advisor`: `advise` and `Advice`, one recommendation from them.
- `kbatch.tuner`: `BatchLRHyperModel`, `PatternSearch`, `summarize` for
  KerasTuner (imported on first use: `import kbatch` does not import
  KerasTuner).
- `kbatch.precision`, `kbatch.datasets`, `kbatch.models`: mixed precision,
  data without downloads, small reference models.

The names below are re-exported here; everything under `kbatch._internal`
is private.
"""

__version__ = "0.1.0.dev0"

import importlib

from kbatch import advisor
from kbatch import critical
from kbatch import datasets
from kbatch import lr
from kbatch import models
from kbatch import precision
from kbatch import scaling
from kbatch._internal import deprecation as _deprecation
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
from kbatch.scaling import fit_with_batch_schedule
from kbatch.scaling import global_batch_size
from kbatch.scaling import scale_adam
from kbatch.scaling import scale_lr

_deprecation.install()

# Imported on first attribute access: KerasTuner (`tuner`), and the old module
# names (`suggest`, `noise`, ...), which warn.
_LAZY = ("tuner",)


def __getattr__(name):
    if name in _LAZY or f"kbatch.{name}" in _deprecation.MOVED:
        return importlib.import_module(f"kbatch.{name}")
    raise AttributeError(f"module 'kbatch' has no attribute {name!r}")


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

"""kbatch: which batch size, and which learning rate for it? Measured, for Keras 3.

Public API (everything else is private):

- `kbatch.find_lr`: LR range test of a compiled model, model restored after.
- `kbatch.LRRangeTest`: the same test as a `model.fit` callback.
- `kbatch.LRFinderResult`: the curve, suggestions, plot and JSON file.
- `kbatch.scale_lr`, `kbatch.scale_adam`, `kbatch.default_rule`: LR scaling
  rules for a change of batch size.
- `kbatch.ScaleLearningRate`: callback training at the LR scaled to the
  global batch size, with warm-up (`kbatch.schedules.BatchScaledSchedule`).
- `kbatch.BatchSizeSchedule`, `kbatch.fit_with_batch_schedule`: increase the
  batch size instead of decaying the LR.
- `kbatch.layers.GhostBatchNormalization`.
- `kbatch.GradientNoiseScale`, `kbatch.measure_noise_scale`: the gradient noise
  scale (critical batch size).
- `kbatch.find_max_batch_size`, `kbatch.measure_throughput`,
  `kbatch.lr_scaling_law`, `kbatch.advise`: memory, speed, LR scaling, and one
  recommendation from them.
- `kbatch.tuner.BatchLRHyperModel`, `kbatch.tuner.summarize`: search batch
  size and learning rate together with KerasTuner; `kbatch.tuner.PatternSearch`
  (`PatternSearchOracle`): a sequential search made for them.
- `kbatch.precision`: the mixed-precision policy for this device, a context
  manager that sets one, and `check_model` for the usual mistakes.
- `kbatch.suggest`: the suggestion rules as pure functions.
- `kbatch.datasets`: MNIST-1D and digits, without downloads;
  `kbatch.models`: small reference models for them.
"""

__version__ = "0.1.0.dev0"

from kbatch import datasets
from kbatch import layers
from kbatch import models
from kbatch import noise
from kbatch import precision
from kbatch import schedules
from kbatch import suggest
from kbatch import tuner
from kbatch.advisor import Advice
from kbatch.advisor import advise
from kbatch.batch_schedule import BatchSizeSchedule
from kbatch.batch_schedule import fit_with_batch_schedule
from kbatch.finder import LRFinderWarning
from kbatch.finder import find_lr
from kbatch.lr_finder import LRRangeTest
from kbatch.lr_finder_result import LRFinderResult
from kbatch.memory import MaxBatchSizeResult
from kbatch.memory import find_max_batch_size
from kbatch.noise_scale import GradientNoiseScale
from kbatch.noise_scale import NoiseScaleResult
from kbatch.noise_scale import measure_noise_scale
from kbatch.scale_callback import ScaleLearningRate
from kbatch.scale_callback import global_batch_size
from kbatch.scaling import default_rule
from kbatch.scaling import scale_adam
from kbatch.scaling import scale_lr
from kbatch.scaling_law import ScalingLawResult
from kbatch.scaling_law import lr_scaling_law
from kbatch.schedules import BatchScaledSchedule
from kbatch.throughput import ThroughputResult
from kbatch.throughput import measure_throughput

__all__ = [
    "Advice",
    "BatchScaledSchedule",
    "BatchSizeSchedule",
    "GradientNoiseScale",
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
    "datasets",
    "default_rule",
    "find_lr",
    "find_max_batch_size",
    "fit_with_batch_schedule",
    "global_batch_size",
    "layers",
    "lr_scaling_law",
    "measure_noise_scale",
    "measure_throughput",
    "models",
    "noise",
    "precision",
    "scale_adam",
    "scale_lr",
    "schedules",
    "suggest",
    "tuner",
]

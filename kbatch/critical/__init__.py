"""The batch-size limits: the critical batch size and what the device allows.

- `estimators`: the gradient noise scale's estimators (NumPy only);
- `noise_scale`: `GradientNoiseScale` (callback) and `measure_noise_scale`;
- `largest_batch.find_max_batch_size`: the largest batch that fits in memory;
- `throughput.measure_throughput`: samples per second per batch size;
- `scaling_law.lr_scaling_law`: how the suggested LR moves with the batch size;
- `fits`: the power and noise laws fitted to it, the throughput knee (NumPy).
"""

from kbatch.critical import estimators
from kbatch.critical import fits
from kbatch.critical.largest_batch import MaxBatchSizeResult
from kbatch.critical.largest_batch import find_max_batch_size
from kbatch.critical.noise_scale import GradientNoiseScale
from kbatch.critical.noise_scale import NoiseScaleResult
from kbatch.critical.noise_scale import measure_noise_scale
from kbatch.critical.scaling_law import ScalingLawResult
from kbatch.critical.scaling_law import lr_scaling_law
from kbatch.critical.throughput import ThroughputResult
from kbatch.critical.throughput import measure_throughput

__all__ = [
    "GradientNoiseScale",
    "MaxBatchSizeResult",
    "NoiseScaleResult",
    "ScalingLawResult",
    "ThroughputResult",
    "estimators",
    "find_max_batch_size",
    "fits",
    "lr_scaling_law",
    "measure_noise_scale",
    "measure_throughput",
]

"""A new batch size, a new learning rate.

- `rules`: linear, square-root, noise-aware and Adam scaling rules, as pure
  functions; `optimizer_rule.default_rule`: the usual rule for an optimizer;
- `schedules`: `BatchScaledSchedule` (scaled LR with warm-up, then any
  schedule) and `LinearWarmup`;
- `scale_learning_rate.ScaleLearningRate`: the callback that trains at the LR
  scaled to the global batch size;
- `batch_size_schedule`: increase the batch size instead of decaying the LR;
- `adaptive.fit_adaptive`: a batch size that follows the measured gradient
  noise scale (`adaptive_rule`: when to move), with gradient accumulation
  past the memory limit;
- `ghost_batch_norm.GhostBatchNormalization`: batch statistics of a small
  batch inside a large one.
"""

from kbatch.scaling import rules
from kbatch.scaling.adaptive import fit_adaptive
from kbatch.scaling.adaptive import plot_adaptive
from kbatch.scaling.batch_size_schedule import BatchSizeSchedule
from kbatch.scaling.batch_size_schedule import fit_with_batch_schedule
from kbatch.scaling.ghost_batch_norm import GhostBatchNormalization
from kbatch.scaling.optimizer_rule import default_rule
from kbatch.scaling.rules import RULES
from kbatch.scaling.rules import scale_adam
from kbatch.scaling.rules import scale_lr
from kbatch.scaling.rules import scaling_factor
from kbatch.scaling.scale_learning_rate import ScaleLearningRate
from kbatch.scaling.scale_learning_rate import global_batch_size
from kbatch.scaling.schedules import BatchScaledSchedule
from kbatch.scaling.schedules import LinearWarmup
from kbatch.scaling.schedules import OneCycle

__all__ = [
    "RULES",
    "BatchScaledSchedule",
    "BatchSizeSchedule",
    "GhostBatchNormalization",
    "LinearWarmup",
    "OneCycle",
    "ScaleLearningRate",
    "default_rule",
    "fit_adaptive",
    "fit_with_batch_schedule",
    "global_batch_size",
    "plot_adaptive",
    "rules",
    "scale_adam",
    "scale_lr",
    "scaling_factor",
]

"""The learning rate: the LR range test and what it suggests.

- `rules`: the sweep, smoothing and suggestion rules, as pure functions
  (NumPy only);
- `range_test.LRRangeTest`: the test as a `model.fit` callback;
- `find.find_lr`: the front end that runs it and restores the model;
- `result.LRFinderResult`: the curve, suggestions, plot and JSON file;
- `batch_sizes.lr_for_batch_sizes`: the best LR at each batch size for a
  training budget, measured with short probe runs (`probes`: its pure math).
"""

from kbatch.lr import probes
from kbatch.lr import rules
from kbatch.lr.batch_sizes import LRByBatchSize
from kbatch.lr.batch_sizes import lr_for_batch_sizes
from kbatch.lr.find import LRFinderWarning
from kbatch.lr.find import find_lr
from kbatch.lr.range_test import LRRangeTest
from kbatch.lr.result import LRFinderResult

__all__ = [
    "LRByBatchSize",
    "LRFinderResult",
    "LRFinderWarning",
    "LRRangeTest",
    "find_lr",
    "lr_for_batch_sizes",
    "probes",
    "rules",
]

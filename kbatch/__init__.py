"""kbatch: which batch size, and which learning rate for it? Measured, for Keras 3.

Public API (everything else is private):

- `kbatch.find_lr`: LR range test of a compiled model, model restored after.
- `kbatch.LRRangeTest`: the same test as a `model.fit` callback.
- `kbatch.LRFinderResult`: the curve, suggestions, plot and JSON file.
- `kbatch.suggest`: the suggestion rules as pure functions.
- `kbatch.datasets`: MNIST-1D and digits, without downloads.
"""

__version__ = "0.1.0.dev0"

from kbatch import datasets
from kbatch import suggest
from kbatch.finder import LRFinderWarning
from kbatch.finder import find_lr
from kbatch.lr_finder import LRRangeTest
from kbatch.lr_finder_result import LRFinderResult

__all__ = [
    "LRFinderResult",
    "LRFinderWarning",
    "LRRangeTest",
    "__version__",
    "datasets",
    "find_lr",
    "suggest",
]

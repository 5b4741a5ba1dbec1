"""Search the batch size and the learning rate together, with KerasTuner.

- `hypermodel.BatchLRHyperModel`: the hypermodel (LR scaled to each batch
  size, below the measured edge of stability);
- `pattern_search.PatternSearch`: a sequential search made for it;
- `recorder.TrialRecorder`: each trial's time, updates and speed;
- `search_state`: the range tests and memory limit kept across resumes;
- `errors.OutOfMemoryError`: the typed failure of a trial out of memory;
- `summary.summarize`: the trials as a table and a figure.

Importing this subpackage imports KerasTuner; `import kbatch` does not.
"""

from kbatch.tuner.errors import OutOfMemoryError
from kbatch.tuner.hypermodel import CACHE_FILE
from kbatch.tuner.hypermodel import PARAMETRIZATIONS
from kbatch.tuner.hypermodel import POLICIES
from kbatch.tuner.hypermodel import RECORDED
from kbatch.tuner.hypermodel import BatchLRHyperModel
from kbatch.tuner.hypermodel import divergence_lr
from kbatch.tuner.hypermodel import resolve_policy
from kbatch.tuner.pattern_search import PatternSearch
from kbatch.tuner.pattern_search import PatternSearchOracle
from kbatch.tuner.recorder import TrialRecorder
from kbatch.tuner.summary import SearchSummary
from kbatch.tuner.summary import summarize

__all__ = [
    "CACHE_FILE",
    "PARAMETRIZATIONS",
    "POLICIES",
    "RECORDED",
    "BatchLRHyperModel",
    "OutOfMemoryError",
    "PatternSearch",
    "PatternSearchOracle",
    "SearchSummary",
    "TrialRecorder",
    "divergence_lr",
    "resolve_policy",
    "summarize",
]

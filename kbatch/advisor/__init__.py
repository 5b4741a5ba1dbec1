"""One recommendation from the measurements: `advise()` returns an `Advice`
(batch size, learning rate, the evidence and a figure); `time_to_target` is
the pure model it ranks batch sizes with."""

from kbatch.advisor.advice import Advice
from kbatch.advisor.advice import advise
from kbatch.advisor.time_to_target import time_to_target

__all__ = ["Advice", "advise", "time_to_target"]

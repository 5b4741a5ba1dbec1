"""Where kbatch's `verbose` output goes, the way Keras' own does.

Library code never prints: a front end called with `verbose=1` reports each
line through `message`, which follows Keras' switch
(`keras.config.disable_interactive_logging()`): standard output while
interactive logging is on (a notebook, a terminal), the `kbatch` logger at
INFO level once it is off (a batch job, a server).
"""

from __future__ import annotations

import logging
import sys

import keras

__all__ = ["LOGGER", "message"]

LOGGER = logging.getLogger("kbatch")


def message(text: str) -> None:
    """Report one line of progress (only called when the user asked for it)."""
    if keras.config.is_interactive_logging_enabled():
        sys.stdout.write(f"{text}\n")
        sys.stdout.flush()
    else:
        LOGGER.info(text)

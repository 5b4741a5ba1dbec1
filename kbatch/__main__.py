"""`python -m kbatch` is the `kbatch` command."""

import sys

from kbatch.cli import main

sys.exit(main())

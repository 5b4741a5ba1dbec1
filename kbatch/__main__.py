"""`python -m kbatch` is the `kbatch` command."""

import sys

from kbatch.cli import main

if __name__ == "__main__":
    sys.exit(main())

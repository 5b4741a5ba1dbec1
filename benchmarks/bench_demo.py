"""Wall time of `kbatch demo` (= `make demo`), in a fresh process.

Target: under 3 minutes on 2 CPU cores.

    python -m benchmarks.bench_demo
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time

from benchmarks._common import write_markdown
from benchmarks._common import write_results


def main(argv=None):
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "kbatch", "demo", "--out", out],
                       check=True, capture_output=True)
        seconds = time.perf_counter() - start
    print(f"kbatch demo: {seconds:.0f} s")
    write_results("demo", {"seconds": seconds, "target_seconds": 180,
                           "met": seconds <= 180})
    write_markdown("demo", f"`kbatch demo` (range test, check, advisor): "
                           f"{seconds:.0f} s (target 180 s).\n")


if __name__ == "__main__":
    main()

"""Training-step speed of every cell kind: torch.nn, a cell loop, rnnkit's engines.

A thin wrapper: the benchmark lives in :mod:`rnnkit.bench.speed` (also run as
``rnnkit bench speed``, same options).

    python benchmarks/speed.py [--grid target|full] [--cells ...] [--engines ...]
"""

from __future__ import annotations

import sys

from rnnkit.bench.speed import main

if __name__ == "__main__":
    sys.exit(main())

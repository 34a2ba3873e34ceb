"""Long-term dependency benchmark: adding, copy-memory and sequential digits for every cell.

A thin wrapper: the suite lives in :mod:`rnnkit.bench.memory` (also run as
``rnnkit bench memory``, same options); it writes ``OUT/memory.json`` and one
learning-curve PNG per task and length.

    python benchmarks/memory.py --quick --out runs/memory-quick
    python benchmarks/memory.py --tasks adding --lengths 200 --cells lstm,irnn,rnn
"""

from __future__ import annotations

import sys

from rnnkit.bench.memory import main

if __name__ == "__main__":
    sys.exit(main())

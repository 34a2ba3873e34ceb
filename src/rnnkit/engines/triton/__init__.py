"""The ``triton`` engine (see :mod:`rnnkit.engines.triton.engine`).

Importing this package does not import triton: the kernels load on the first run.
"""

from rnnkit.engines.triton.engine import TritonEngine

__all__ = ["TritonEngine"]

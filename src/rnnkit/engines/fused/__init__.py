"""The fused engine (see :mod:`rnnkit.engines.fused.engine`)."""

from rnnkit.engines.fused.engine import FusedEngine

__all__ = ["FusedEngine"]

"""Layers: cell-agnostic wrappers that run cells over sequences."""

from rnnkit.layers.bidirectional import Bidirectional
from rnnkit.layers.recurrent import Recurrent
from rnnkit.layers.stacked import Stacked

__all__ = ["Bidirectional", "Recurrent", "Stacked"]

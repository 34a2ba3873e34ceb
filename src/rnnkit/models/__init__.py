"""Task models built on the recurrent layers."""

from rnnkit.models.builder import CELL_KINDS, build_cell, build_stack
from rnnkit.models.language_model import LanguageModel, LMConfig

__all__ = ["CELL_KINDS", "LMConfig", "LanguageModel", "build_cell", "build_stack"]

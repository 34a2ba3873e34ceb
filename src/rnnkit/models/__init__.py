"""Task models built on the recurrent layers."""

from rnnkit.models.builder import CELL_KINDS, build_cell, build_stack
from rnnkit.models.classifier import POOLINGS, ClassifierConfig, SequenceClassifier
from rnnkit.models.forecaster import Forecast, Forecaster, ForecasterConfig, gaussian_nll
from rnnkit.models.language_model import LanguageModel, LMConfig

__all__ = [
    "CELL_KINDS",
    "POOLINGS",
    "ClassifierConfig",
    "Forecast",
    "Forecaster",
    "ForecasterConfig",
    "LMConfig",
    "LanguageModel",
    "SequenceClassifier",
    "build_cell",
    "build_stack",
    "gaussian_nll",
]

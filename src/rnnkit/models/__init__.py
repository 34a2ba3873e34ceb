"""Task models built on the recurrent layers."""

from rnnkit.models.builder import CELL_KINDS, build_cell, build_stack
from rnnkit.models.classifier import POOLINGS, ClassifierConfig, SequenceClassifier
from rnnkit.models.decode import Hypothesis, beam_search, greedy, sample, score
from rnnkit.models.forecaster import Forecast, Forecaster, ForecasterConfig, gaussian_nll
from rnnkit.models.language_model import LanguageModel, LMConfig
from rnnkit.models.seq2seq import (
    ATTENTIONS,
    BRIDGES,
    Decoder,
    Encoder,
    Seq2Seq,
    Seq2SeqConfig,
    seq2seq_loss,
)

__all__ = [
    "ATTENTIONS",
    "BRIDGES",
    "CELL_KINDS",
    "POOLINGS",
    "ClassifierConfig",
    "Decoder",
    "Encoder",
    "Forecast",
    "Forecaster",
    "ForecasterConfig",
    "Hypothesis",
    "LMConfig",
    "LanguageModel",
    "Seq2Seq",
    "Seq2SeqConfig",
    "SequenceClassifier",
    "beam_search",
    "build_cell",
    "build_stack",
    "gaussian_nll",
    "greedy",
    "sample",
    "score",
    "seq2seq_loss",
]

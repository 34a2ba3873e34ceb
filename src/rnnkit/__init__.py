"""rnnkit: recurrent neural networks on PyTorch.

Cells compute one step, layers run them over sequences, engines decide how, and
``rnnkit.nn`` offers drop-in twins of ``torch.nn.RNN`` / ``LSTM`` / ``GRU``. Task
models (``LanguageModel``, ``SequenceClassifier``, ``Forecaster``) live in
``rnnkit.models``, their trainers in ``rnnkit.train``, echo state networks in
``rnnkit.reservoir``, gradient and hidden-unit views in ``rnnkit.diagnostics``.
"""

from rnnkit import nn
from rnnkit.cells import (
    ClockworkCell,
    ElmanCell,
    GRUCell,
    JordanCell,
    LeakyCell,
    LSTMCell,
    RecurrentCell,
    SkipCell,
    timescale_alphas,
)
from rnnkit.engines import AUTO_ORDER, ENGINES
from rnnkit.layers import Bidirectional, Recurrent, Stacked
from rnnkit.models import Forecaster, LanguageModel, SequenceClassifier

__version__ = "0.1.0"

__all__ = [
    "AUTO_ORDER",
    "ENGINES",
    "Bidirectional",
    "ClockworkCell",
    "ElmanCell",
    "Forecaster",
    "GRUCell",
    "JordanCell",
    "LSTMCell",
    "LanguageModel",
    "LeakyCell",
    "Recurrent",
    "RecurrentCell",
    "SequenceClassifier",
    "SkipCell",
    "Stacked",
    "__version__",
    "nn",
    "timescale_alphas",
]

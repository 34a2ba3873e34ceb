"""rnnkit: recurrent neural networks on PyTorch.

Cells compute one step, layers run them over sequences, engines decide how, and
``rnnkit.nn`` offers drop-in twins of ``torch.nn.RNN`` / ``LSTM`` / ``GRU``.
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

__version__ = "0.1.0"

__all__ = [
    "AUTO_ORDER",
    "ENGINES",
    "Bidirectional",
    "ClockworkCell",
    "ElmanCell",
    "GRUCell",
    "JordanCell",
    "LSTMCell",
    "LeakyCell",
    "Recurrent",
    "RecurrentCell",
    "SkipCell",
    "Stacked",
    "__version__",
    "nn",
    "timescale_alphas",
]

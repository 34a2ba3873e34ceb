"""Drop-in replacements for ``torch.nn.RNN``, ``LSTM`` and ``GRU``."""

from rnnkit.nn.rnn import GRU, LSTM, RNN

__all__ = ["GRU", "LSTM", "RNN"]

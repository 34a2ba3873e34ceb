"""Cells: one time step each, ``cell(x_t, state) -> (y_t, state)``."""

from rnnkit.cells.base import RecurrentCell, State
from rnnkit.cells.clockwork import ClockworkCell
from rnnkit.cells.elman import ElmanCell
from rnnkit.cells.gru import GRUCell
from rnnkit.cells.jordan import JordanCell
from rnnkit.cells.leaky import LeakyCell, timescale_alphas
from rnnkit.cells.lstm import LSTMCell
from rnnkit.cells.skip import SkipCell

__all__ = [
    "ClockworkCell",
    "ElmanCell",
    "GRUCell",
    "JordanCell",
    "LSTMCell",
    "LeakyCell",
    "RecurrentCell",
    "SkipCell",
    "State",
    "timescale_alphas",
]

"""Cells by name, as the configs and the command line spell them."""

from __future__ import annotations

from rnnkit.cells import ElmanCell, GRUCell, LeakyCell, LSTMCell, RecurrentCell, timescale_alphas
from rnnkit.cells.base import check_choice

# name -> what it builds; the names a user types after --cell.
CELL_KINDS = {
    "lstm": "LSTM with forget gate (forget bias 1)",
    "gru": "GRU (PyTorch's reset-after form)",
    "rnn": "Elman RNN with tanh",
    "irnn": "Elman RNN with ReLU and identity-initialised W_hh (Le et al. 2015)",
    "leaky": "leaky tanh units with learned leaks, started at time scales 2, 4, 8, 16",
}


def build_cell(
    kind: str, input_size: int, hidden_size: int, *, layer_norm: bool = False
) -> RecurrentCell:
    """A fresh cell of the named kind (``layer_norm`` applies to ``lstm`` only)."""
    check_choice("cell", kind, CELL_KINDS)
    if layer_norm and kind != "lstm":
        raise ValueError(f"layer_norm is available for cell='lstm' only, not cell={kind!r}")
    if kind == "lstm":
        return LSTMCell(input_size, hidden_size, forget_bias=1.0, layer_norm=layer_norm)
    if kind == "gru":
        return GRUCell(input_size, hidden_size)
    if kind == "rnn":
        return ElmanCell(input_size, hidden_size, "tanh")
    if kind == "irnn":
        return ElmanCell(input_size, hidden_size, "relu", init="identity")
    taus = (2, 4, 8, 16)[: min(4, hidden_size)]
    alphas = timescale_alphas(hidden_size, taus)
    return LeakyCell(input_size, hidden_size, alpha=alphas, learn_alpha=True)

"""Cells by name, as the configs and the command line spell them."""

from __future__ import annotations

from rnnkit.cells import ElmanCell, GRUCell, LeakyCell, LSTMCell, RecurrentCell, timescale_alphas
from rnnkit.cells.base import check_choice
from rnnkit.engines import check_engine
from rnnkit.layers import Bidirectional, Recurrent, Stacked
from rnnkit.layers.regularizers import check_probability

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


def build_stack(
    kind: str,
    input_size: int,
    hidden_size: int,
    num_layers: int,
    *,
    bidirectional: bool = False,
    dropout: float = 0.0,
    state_dropout: float = 0.0,
    layer_norm: bool = False,
    engine: str = "auto",
) -> Stacked:
    """A deep (optionally bidirectional) stack of cells of the named kind.

    Layer ``k`` reads the outputs of layer ``k - 1`` (``2 × hidden_size`` features when
    bidirectional: both directions concatenated). ``dropout`` is variational: one mask
    per sequence on the stack's input and between layers.
    """
    check_stack_settings(
        kind=kind,
        hidden_size=hidden_size,
        num_layers=num_layers,
        dropout=dropout,
        state_dropout=state_dropout,
        layer_norm=layer_norm,
        engine=engine,
    )
    layers, width = [], input_size
    for k in range(num_layers):

        def layer(reverse: bool, width=width, k=k) -> Recurrent:
            cell = build_cell(kind, width, hidden_size, layer_norm=layer_norm)
            return Recurrent(
                cell,
                reverse=reverse,
                engine=engine,
                input_dropout=dropout if k == 0 else 0.0,
                state_dropout=state_dropout,
            )

        if bidirectional:
            layers.append(Bidirectional(layer(False), layer(True)))
        else:
            layers.append(layer(False))
        width = layers[-1].output_size
    return Stacked(layers, dropout=dropout, variational=True)


def check_stack_settings(
    *,
    kind: str,
    hidden_size: int,
    num_layers: int,
    dropout: float,
    state_dropout: float,
    layer_norm: bool,
    engine: str,
) -> None:
    """Raise a ValueError naming the first stack setting a model config cannot use."""
    check_choice("cell", kind, CELL_KINDS)
    for name, value in (("hidden_size", hidden_size), ("num_layers", num_layers)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if layer_norm and kind != "lstm":
        raise ValueError(f"layer_norm is available for cell='lstm' only, not cell={kind!r}")
    check_probability("dropout", dropout)
    check_probability("state_dropout", state_dropout)
    check_engine(engine)
    if engine == "native" and (kind == "leaky" or layer_norm or state_dropout):
        raise ValueError(
            "engine='native' runs plain lstm / gru / rnn / irnn cells without layer_norm "
            "or state_dropout; use engine='auto'"
        )

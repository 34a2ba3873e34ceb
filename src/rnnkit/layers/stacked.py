"""``Stacked``: deep recurrent networks, each layer reading the outputs of the one below."""

from __future__ import annotations

from torch import Tensor, nn

from rnnkit.layers._checks import check_lengths, time_major
from rnnkit.layers.recurrent import Recurrent, as_layer
from rnnkit.layers.regularizers import check_probability, variational_dropout


class Stacked(nn.Module):
    """Layers applied in order, with dropout on the outputs between them.

    ``y^{(l)} = layer_l(dropout(y^{(l-1)}))``; no dropout after the last layer (as in
    ``torch.nn.LSTM``). The state is a tuple with one entry per layer.

    Args:
        layers: cells (wrapped in a forward :class:`Recurrent`), ``Recurrent``,
            ``Bidirectional`` or ``Stacked`` layers; each layer's input size must be the
            output size of the one before.
        dropout: probability of dropping an output between layers.
        variational: one dropout mask per sequence instead of one per step.
        batch_first: ``x`` and ``y`` are ``(B, T, ·)``.
    """

    def __init__(
        self,
        layers,
        dropout: float = 0.0,
        variational: bool = False,
        batch_first: bool = False,
    ) -> None:
        super().__init__()
        layers = [as_layer(layer) for layer in layers]
        if not layers:
            raise ValueError("Stacked needs at least one layer")
        for k in range(1, len(layers)):
            if layers[k].input_size != layers[k - 1].output_size:
                raise ValueError(
                    f"layer {k} reads {layers[k].input_size} features but layer {k - 1} "
                    f"outputs {layers[k - 1].output_size}"
                )
        self.layers = nn.ModuleList(layers)
        self.dropout = check_probability("dropout", dropout)
        self.variational = bool(variational)
        self.batch_first = bool(batch_first)

    @property
    def input_size(self) -> int:
        return self.layers[0].input_size

    @property
    def output_size(self) -> int:
        return self.layers[-1].output_size

    def init_state(self, batch: int, *, device=None, dtype=None):
        return tuple(layer.init_state(batch, device=device, dtype=dtype) for layer in self.layers)

    def forward(self, x: Tensor, state=None, lengths=None):
        x = time_major(x, self.input_size, self.batch_first)  # (T, B, I)
        lengths = check_lengths(lengths, *x.shape[:2])
        if state is not None and (
            not isinstance(state, (tuple, list)) or len(state) != len(self.layers)
        ):
            raise ValueError(f"expected the Stacked state as a tuple of {len(self.layers)} states")
        y, final = self.run(x, state, lengths)
        return (y.transpose(0, 1) if self.batch_first else y), final

    def run(self, x: Tensor, state, lengths):
        """Time-major forward on checked inputs."""
        states = state if state is not None else (None,) * len(self.layers)
        finals = []
        for k, (layer, layer_state) in enumerate(zip(self.layers, states, strict=True)):
            if k > 0 and self.dropout and self.training:
                if self.variational:
                    x = variational_dropout(x, self.dropout, True)
                else:
                    x = nn.functional.dropout(x, self.dropout, True)
            if isinstance(layer, Recurrent):  # nested layers check their own parts
                layer_state = layer.checked_state(layer_state, x.shape[1], "layer")
            x, final = layer.run(x, layer_state, lengths)
            finals.append(final)
        return x, tuple(finals)

    def extra_repr(self) -> str:
        return f"dropout={self.dropout}" if self.dropout else ""

"""``LanguageModel``: tokens -> embedding -> recurrent stack -> next-token logits."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rnnkit.engines import check_engine
from rnnkit.layers import Recurrent, Stacked
from rnnkit.layers.regularizers import check_probability, variational_dropout
from rnnkit.models.builder import CELL_KINDS, build_cell
from rnnkit.settings import JSONSettings


@dataclass
class LMConfig(JSONSettings):
    """Everything needed to rebuild a :class:`LanguageModel` (saved as JSON)."""

    settings_kind = "language-model"

    vocab_size: int
    cell: str = "lstm"  # one of CELL_KINDS
    hidden_size: int = 256  # units per layer
    num_layers: int = 2
    embedding_size: int | None = 64  # None: one-hot inputs of vocab_size features
    dropout: float = 0.1  # variational dropout on embeddings, between layers, on outputs
    state_dropout: float = 0.0  # variational dropout on h_{t-1} inside each layer
    layer_norm: bool = False  # layer-normalised LSTM
    bidirectional: bool = False  # refused: a language model may not see the future
    engine: str = "auto"

    def __post_init__(self) -> None:
        if self.bidirectional:
            raise ValueError(
                "a language model predicts each token from the ones before it, so it cannot "
                "be bidirectional; drop bidirectional"
            )
        for name in ("vocab_size", "hidden_size", "num_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.embedding_size is not None and (
            not isinstance(self.embedding_size, int) or self.embedding_size < 1
        ):
            raise ValueError(
                f"embedding_size must be a positive integer or None (one-hot), "
                f"got {self.embedding_size!r}"
            )
        if self.cell not in CELL_KINDS:
            raise ValueError(f"unknown cell {self.cell!r}; choose one of {', '.join(CELL_KINDS)}")
        if self.layer_norm and self.cell != "lstm":
            raise ValueError(f"layer_norm is available for cell='lstm' only, not {self.cell!r}")
        if self.engine == "native" and (
            self.cell == "leaky" or self.layer_norm or self.state_dropout
        ):
            raise ValueError(
                "engine='native' runs plain lstm / gru / rnn / irnn cells without "
                "layer_norm or state_dropout; use engine='auto'"
            )
        check_probability("dropout", self.dropout)
        check_probability("state_dropout", self.state_dropout)
        check_engine(self.engine)


class LanguageModel(nn.Module):
    r"""Recurrent language model.

    .. math::

        e_t = E[x_t],\quad (y_t, s_t) = \mathrm{stack}(e_t, s_{t-1}),\quad
        p(x_{t+1} \mid x_{\le t}) = \mathrm{softmax}(W_{out} y_t + b_{out})

    ``forward(tokens, state=None) -> (logits, state)`` with ``tokens`` ``(T, B)`` int64
    and ``logits`` ``(T, B, V)``; pass the returned state back in to continue a stream.
    """

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.config = config
        V, H = config.vocab_size, config.hidden_size
        if config.embedding_size is None:
            self.embedding = None
            width = V
        else:
            self.embedding = nn.Embedding(V, config.embedding_size)
            width = config.embedding_size
        layers = []
        for k in range(config.num_layers):
            cell = build_cell(config.cell, width if k == 0 else H, H, layer_norm=config.layer_norm)
            layers.append(
                Recurrent(
                    cell,
                    engine=config.engine,
                    input_dropout=config.dropout if k == 0 else 0.0,
                    state_dropout=config.state_dropout,
                )
            )
        self.rnn = Stacked(layers, dropout=config.dropout, variational=True)
        self.output_dropout = config.dropout
        self.head = nn.Linear(self.rnn.output_size, V)

    def init_state(self, batch: int, *, device=None, dtype=None):
        ref = self.head.weight
        return self.rnn.init_state(batch, device=device or ref.device, dtype=dtype or ref.dtype)

    def embed(self, tokens: Tensor) -> Tensor:
        """Input vectors of any shape of token ids: ``(..., E)``, or one-hot ``(..., V)``."""
        if self.embedding is None:
            return nn.functional.one_hot(tokens, self.config.vocab_size).to(self.head.weight.dtype)
        return self.embedding(tokens)

    def forward(self, tokens: Tensor, state=None) -> tuple[Tensor, tuple]:
        if tokens.dim() != 2 or tokens.dtype != torch.long:
            raise ValueError(
                f"expected tokens as an int64 tensor of shape (T, B), got "
                f"{tuple(tokens.shape)} {tokens.dtype}"
            )
        y, state = self.rnn.run(self.embed(tokens), state, None)  # (T, B, H)
        y = variational_dropout(y, self.output_dropout, self.training)
        return self.head(y), state  # (T, B, V)

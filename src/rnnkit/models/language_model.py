"""``LanguageModel``: tokens -> embedding -> recurrent stack -> next-token logits."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rnnkit.layers.regularizers import variational_dropout
from rnnkit.models.builder import build_stack, check_stack_settings
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
        if (
            not isinstance(self.vocab_size, int)
            or isinstance(self.vocab_size, bool)
            or (self.vocab_size < 1)
        ):
            raise ValueError(f"vocab_size must be a positive integer, got {self.vocab_size!r}")
        if self.embedding_size is not None and (
            not isinstance(self.embedding_size, int) or self.embedding_size < 1
        ):
            raise ValueError(
                f"embedding_size must be a positive integer or None (one-hot), "
                f"got {self.embedding_size!r}"
            )
        check_stack_settings(
            kind=self.cell,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            dropout=self.dropout,
            state_dropout=self.state_dropout,
            layer_norm=self.layer_norm,
            engine=self.engine,
        )


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
        self.rnn = build_stack(
            config.cell,
            width,
            H,
            config.num_layers,
            dropout=config.dropout,
            state_dropout=config.state_dropout,
            layer_norm=config.layer_norm,
            engine=config.engine,
        )
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

"""``SequenceClassifier``: sequence -> recurrent stack -> pooling -> class logits.

Also per-step tagging (``tags``): the same stack and head applied at every step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rnnkit.cells.base import check_choice, check_positive
from rnnkit.models.builder import build_stack, check_stack_settings
from rnnkit.settings import JSONSettings

POOLINGS = {
    "last": "each direction's output at its final step (forward: last real step; backward: 0)",
    "mean": "the mean of the outputs over the real steps",
    "attention": "a softmax-weighted sum of the outputs over the real steps, scores learned",
}


@dataclass
class ClassifierConfig(JSONSettings):
    """Everything needed to rebuild a :class:`SequenceClassifier` (saved as JSON).

    Numeric input sets ``input_size`` (features per step); token input sets
    ``vocab_size`` and ``embedding_size`` instead.
    """

    settings_kind = "classifier"

    num_classes: int
    input_size: int | None = None  # features per step of numeric sequences
    vocab_size: int | None = None  # token ids 0..vocab_size-1 (then input_size is None)
    embedding_size: int = 32  # token embedding width (tokens only)
    cell: str = "lstm"  # one of CELL_KINDS
    hidden_size: int = 128  # units per layer and direction
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0  # on embeddings, between layers (variational) and on the pooled vector
    layer_norm: bool = False  # layer-normalised LSTM
    engine: str = "auto"
    pooling: str = "last"  # last | mean | attention

    def __post_init__(self) -> None:
        check_positive("num_classes", self.num_classes)
        if self.num_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {self.num_classes}")
        if (self.input_size is None) == (self.vocab_size is None):
            raise ValueError(
                "give exactly one of input_size (numeric sequences) and vocab_size (tokens)"
            )
        if self.input_size is not None:
            check_positive("input_size", self.input_size)
        else:
            check_positive("vocab_size", self.vocab_size)
            check_positive("embedding_size", self.embedding_size)
        if not isinstance(self.bidirectional, bool):
            raise ValueError(f"bidirectional must be true or false, got {self.bidirectional!r}")
        check_choice("pooling", self.pooling, POOLINGS)
        check_stack_settings(
            kind=self.cell,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            dropout=self.dropout,
            state_dropout=0.0,
            layer_norm=self.layer_norm,
            engine=self.engine,
        )

    @property
    def tokens(self) -> bool:
        return self.vocab_size is not None


class SequenceClassifier(nn.Module):
    r"""Recurrent sequence classifier.

    .. math::

        y_{1..L} = \mathrm{stack}(x_{1..L}),\quad p = \mathrm{pool}(y, L),\quad
        \mathrm{logits} = W_{head}\,\mathrm{dropout}(p) + b_{head}

    with ``L`` each sequence's length and the pooling

    - ``last``: ``p = y_L`` (bidirectional: ``[y^fwd_L ; y^bwd_1]``, each direction's
      output after it has read the whole sequence);
    - ``mean``: ``p = (1/L) Σ_{t≤L} y_t``;
    - ``attention``: ``score_t = w_att · y_t + b_att``, ``α = softmax(score)`` over
      ``t ≤ L`` (padding scored ``-inf``), ``p = Σ_t α_t y_t``.

    ``forward(x, lengths=None) -> logits (B, C)`` with batch-first ``x``: ``(B, T, F)``
    floats or ``(B, T)`` int64 token ids; ``lengths`` ``(B,)`` marks each sequence's real
    steps (default: all ``T``). Steps past a length change nothing.
    """

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        if config.tokens:
            self.embedding = nn.Embedding(config.vocab_size, config.embedding_size)
            width = config.embedding_size
        else:
            self.embedding = None
            width = config.input_size
        self.rnn = build_stack(
            config.cell,
            width,
            config.hidden_size,
            config.num_layers,
            bidirectional=config.bidirectional,
            dropout=config.dropout,
            layer_norm=config.layer_norm,
            engine=config.engine,
        )
        if not config.tokens:
            # One variational mask per sequence would blank a whole input feature for the
            # whole sequence (all of it with one feature): numeric inputs are not dropped.
            first = self.rnn.layers[0]
            for layer in (first.fwd, first.bwd) if config.bidirectional else (first,):
                layer.input_dropout = 0.0
        width = self.rnn.output_size  # 2 × hidden_size when bidirectional
        self.attention = nn.Linear(width, 1) if config.pooling == "attention" else None
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(width, config.num_classes)

    # ---- the stack ------------------------------------------------------------------

    def _checked(self, x: Tensor, lengths) -> tuple[Tensor, Tensor]:
        """``x`` as the stack's time-major input and ``lengths`` as a full ``(B,)`` tensor."""
        cfg = self.config
        if not isinstance(x, Tensor):
            raise ValueError(f"expected the input as a tensor, got {type(x).__name__}")
        if cfg.tokens:
            if x.dim() != 2 or x.dtype != torch.long:
                raise ValueError(
                    f"expected token ids as an int64 tensor (B, T), got {tuple(x.shape)} {x.dtype}"
                )
            if x.numel() and (int(x.min()) < 0 or int(x.max()) >= cfg.vocab_size):
                raise ValueError(f"token ids must be in 0..{cfg.vocab_size - 1}")
        elif x.dim() != 3 or x.shape[-1] != cfg.input_size or not x.is_floating_point():
            raise ValueError(
                f"expected floats of shape (B, T, {cfg.input_size}), got {tuple(x.shape)} {x.dtype}"
            )
        B, T = x.shape[:2]
        if B == 0 or T == 0:
            raise ValueError(f"expected a non-empty batch, got shape {tuple(x.shape)}")
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long)
        lengths = torch.as_tensor(lengths).detach().cpu()
        if lengths.shape != (B,) or lengths.is_floating_point() or lengths.dtype == torch.bool:
            raise ValueError(f"expected lengths as {B} integers, got {tuple(lengths.shape)}")
        lengths = lengths.long()
        if int(lengths.min()) < 1 or int(lengths.max()) > T:
            raise ValueError(f"every length must be in 1..{T}")
        inputs = self.embedding(x) if self.embedding is not None else x  # (B, T, F)
        return inputs.transpose(0, 1), lengths  # (T, B, F)

    def outputs(self, x: Tensor, lengths=None) -> tuple[Tensor, Tensor]:
        """The stack's outputs ``(T, B, O)`` (zeros past each length) and ``lengths`` (B,)."""
        inputs, lengths = self._checked(x, lengths)
        y, _ = self.rnn(inputs, None, lengths)  # (T, B, O)
        return y, lengths

    # ---- pooling --------------------------------------------------------------------

    def _mask(self, y: Tensor, lengths: Tensor) -> Tensor:
        T = y.shape[0]
        return torch.arange(T, device=y.device)[:, None] < lengths.to(y.device)[None, :]  # (T, B)

    def attention_weights(self, x: Tensor, lengths=None) -> Tensor:
        """The attention pooling's weights ``(B, T)``: 0 on padding, each row sums to 1."""
        if self.attention is None:
            raise ValueError(f"the model pools with {self.config.pooling!r}, not 'attention'")
        y, lengths = self.outputs(x, lengths)
        return self._attention(y, lengths).transpose(0, 1)

    def _attention(self, y: Tensor, lengths: Tensor) -> Tensor:
        scores = self.attention(y).squeeze(-1)  # (T, B)
        scores = scores.masked_fill(~self._mask(y, lengths), float("-inf"))
        return torch.softmax(scores, dim=0)  # (T, B), over each sequence's real steps

    def pool(self, y: Tensor, lengths: Tensor) -> Tensor:
        """One vector ``(B, O)`` per sequence from the stack's outputs ``y`` ``(T, B, O)``."""
        pooling = self.config.pooling
        if pooling == "mean":
            mask = self._mask(y, lengths).unsqueeze(-1).to(y.dtype)  # (T, B, 1)
            return (y * mask).sum(0) / lengths.to(y.device, y.dtype)[:, None]
        if pooling == "attention":
            weights = self._attention(y, lengths).unsqueeze(-1)  # (T, B, 1)
            # Padding outputs are zeros, but 0 * garbage could still be NaN: mask them too.
            y = y.masked_fill(weights == 0, 0.0)
            return (weights * y).sum(0)
        batch = torch.arange(y.shape[1], device=y.device)
        last = y[lengths.to(y.device) - 1, batch]  # (B, O): output at each last real step
        if not self.config.bidirectional:
            return last
        H = y.shape[-1] // 2  # forward half, then backward half
        return torch.cat([last[:, :H], y[0, :, H:]], dim=-1)  # (B, 2H)

    # ---- heads ----------------------------------------------------------------------

    def forward(self, x: Tensor, lengths=None) -> Tensor:
        y, lengths = self.outputs(x, lengths)
        return self.head(self.dropout(self.pool(y, lengths)))  # (B, C)

    def tags(self, x: Tensor, lengths=None) -> Tensor:
        """Per-step tagging: logits ``(B, T, C)`` for every step (zeros past each length).

        A bidirectional stack tags each step from the whole sequence; a one-way stack
        from the steps up to it. Train with cross-entropy over the real steps only.
        """
        y, lengths = self.outputs(x, lengths)
        logits = self.head(self.dropout(y))  # (T, B, C)
        logits = logits * self._mask(y, lengths).unsqueeze(-1).to(logits.dtype)
        return logits.transpose(0, 1)  # (B, T, C)

    @torch.no_grad()
    def predict_proba(self, x: Tensor, lengths=None, batch_size: int = 256) -> Tensor:
        """Class probabilities ``(B, C)``, in eval mode, in batches of ``batch_size``."""
        was_training = self.training
        self.eval()
        try:
            device = self.head.weight.device
            parts = []
            for start in range(0, len(x), batch_size):
                xb = x[start : start + batch_size]
                lb = (
                    None
                    if lengths is None
                    else torch.as_tensor(lengths)[start : start + batch_size]
                )
                if lb is not None:  # cut the padding the batch does not need
                    xb = xb[:, : int(lb.max())]
                parts.append(torch.softmax(self(xb.to(device), lb), dim=-1).cpu())
            return torch.cat(parts)
        finally:
            self.train(was_training)


def classification_loss(model: SequenceClassifier, batch: dict[str, Tensor]) -> Tensor:
    """Mean cross-entropy of a batch ``{"x", "lengths", "y"}`` (the trainer's ``loss_fn``)."""
    return nn.functional.cross_entropy(model(batch["x"], batch["lengths"]), batch["y"])


@torch.no_grad()
def predict_batches(model: SequenceClassifier, batches) -> tuple[Tensor, Tensor | None]:
    """Class probabilities ``(N, C)`` over every batch in order, and the labels if given."""
    device = model.head.weight.device
    probs, labels = [], []
    for batch in batches:
        logits = model(batch["x"].to(device), batch["lengths"])
        probs.append(torch.softmax(logits, dim=-1).cpu())
        if "y" in batch:
            labels.append(batch["y"].cpu())
    return torch.cat(probs), (torch.cat(labels) if labels else None)


def classification_metrics(model: SequenceClassifier, batches) -> dict[str, float]:
    """``{"accuracy", "macro_f1"}`` over labelled batches (the trainer's ``metrics_fn``)."""
    from rnnkit.metrics.classification import accuracy, macro_f1

    probs, labels = predict_batches(model, batches)
    predicted = probs.argmax(-1)
    return {"accuracy": accuracy(labels, predicted), "macro_f1": macro_f1(labels, predicted)}


__all__ = [
    "POOLINGS",
    "ClassifierConfig",
    "SequenceClassifier",
    "classification_loss",
    "classification_metrics",
    "predict_batches",
]

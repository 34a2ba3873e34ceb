"""The pieces of :class:`~rnnkit.models.seq2seq.Seq2Seq`: encoder, decoder, bridge, states.

``Encoder`` and ``Decoder`` are an embedding and a recurrent stack each; ``Bridge``
turns the encoder's final state into the decoder's initial one. ``DecoderState`` and
``Memory`` are what decoding carries between steps, and ``select_rows`` /
``repeat_rows`` reorder or repeat them along the batch (beams flattened into it).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from rnnkit.cells.base import check_choice, check_positive
from rnnkit.layers.regularizers import check_probability, dropout_mask
from rnnkit.models.builder import build_stack

BRIDGES = {
    "auto": "copy the encoder's final state when it fits the decoder as is, else 'linear'",
    "linear": "h0 = tanh(W_h h_enc + b_h) per decoder layer (and c0 = W_c c_enc + b_c for LSTMs)",
}


# ---- states along the batch ---------------------------------------------------------


class DecoderState(NamedTuple):
    """The decoder's state between steps.

    ``rnn``: the stack's state, one cell state per layer (``(h,)`` or ``(h, c)``, ``(B, H)``
    each); ``feed``: Luong's ``h̃_{t-1}`` ``(B, H)`` with input feeding, else None.
    """

    rnn: tuple
    feed: Tensor | None


class Memory(NamedTuple):
    """What the decoder reads from the source: computed once by :meth:`Seq2Seq.encode`.

    ``values``: the encoder's outputs ``h_j`` ``(B, S, O)`` (zeros past each length);
    ``keys``: the attention's precomputed ``W_k h_j`` ``(B, S, ·)`` or None without
    attention; ``mask``: ``(B, S)`` True on real source steps; ``state``: the decoder's
    initial :class:`DecoderState` (from the bridge).
    """

    values: Tensor
    keys: Tensor | None
    mask: Tensor
    state: DecoderState


def map_tensors(fn, tree):
    """``fn`` applied to every tensor of a nested tuple / NamedTuple (None kept)."""
    if tree is None:
        return None
    if isinstance(tree, Tensor):
        return fn(tree)
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*(map_tensors(fn, part) for part in tree))
    if isinstance(tree, (tuple, list)):
        return type(tree)(map_tensors(fn, part) for part in tree)
    raise ValueError(f"expected tensors in nested tuples, got {type(tree).__name__}")


def select_rows(tree, index: Tensor):
    """Rows ``index`` ``(N,)`` of every tensor of a state or memory (beam reordering)."""
    return map_tensors(lambda t: t.index_select(0, index.to(t.device)), tree)


def repeat_rows(tree, times: int):
    """Every row of a state or memory repeated ``times`` in place: rows ``b*times + k``."""
    return map_tensors(lambda t: t.repeat_interleave(times, dim=0), tree)


# ---- checks ------------------------------------------------------------------------


def check_tokens(name: str, tokens, vocab_size: int) -> Tensor:
    """``tokens`` as a non-empty int64 ``(B, T)`` tensor of ids in ``0..vocab_size-1``."""
    if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.dtype != torch.long:
        got = f"{tuple(tokens.shape)} {tokens.dtype}" if isinstance(tokens, Tensor) else tokens
        raise ValueError(f"expected {name} as an int64 tensor (B, T), got {got}")
    if tokens.numel() == 0:
        raise ValueError(f"expected a non-empty {name} batch, got shape {tuple(tokens.shape)}")
    if int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size:
        raise ValueError(f"{name} ids must be in 0..{vocab_size - 1}")
    return tokens


def check_lengths(lengths, batch: int, steps: int) -> Tensor:
    """``lengths`` as ``(B,)`` int64 on the CPU, each in ``1..steps``."""
    lengths = torch.as_tensor(lengths).detach().cpu()
    if lengths.shape != (batch,) or lengths.is_floating_point() or lengths.dtype == torch.bool:
        raise ValueError(f"expected src_lengths as {batch} integers, got {tuple(lengths.shape)}")
    lengths = lengths.long()
    if int(lengths.min()) < 1 or int(lengths.max()) > steps:
        raise ValueError(f"every source length must be in 1..{steps}")
    return lengths


# ---- encoder and decoder --------------------------------------------------------------


class Encoder(nn.Module):
    """Token embedding → recurrent stack (``build_stack``), optionally bidirectional.

    ``forward(src (B, S), src_lengths (B,)) -> (outputs (B, S, O), final_state, lengths)``
    with zeros past each length and the final state at each sequence's last real step
    (a bidirectional layer's state is ``(fwd_state, bwd_state)``).
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int = 64,
        hidden_size: int = 128,
        num_layers: int = 1,
        *,
        cell: str = "lstm",
        bidirectional: bool = False,
        dropout: float = 0.0,
        engine: str = "auto",
    ) -> None:
        super().__init__()
        check_positive("vocab_size", vocab_size)
        check_positive("embedding_size", embedding_size)
        self.vocab_size, self.embedding_size = vocab_size, embedding_size
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.cell, self.bidirectional = cell, bool(bidirectional)
        self.dropout, self.engine = dropout, engine
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.rnn = build_stack(
            cell,
            embedding_size,
            hidden_size,
            num_layers,
            bidirectional=self.bidirectional,
            dropout=dropout,
            engine=engine,
        )

    @property
    def output_size(self) -> int:
        return self.rnn.output_size

    def forward(self, src: Tensor, src_lengths) -> tuple[Tensor, tuple, Tensor]:
        src = check_tokens("src", src, self.vocab_size)
        B, S = src.shape
        lengths = check_lengths(src_lengths, B, S)
        x = self.embedding(src.to(self.embedding.weight.device)).transpose(0, 1)  # (S, B, E)
        y, final = self.rnn.run(x, None, None if int(lengths.min()) == S else lengths)
        return y.transpose(0, 1), final, lengths  # (B, S, O)


class Decoder(nn.Module):
    """Token embedding → one-way recurrent stack (``build_stack``).

    The stack reads ``[E y_{t-1}; extra_t]``: ``context_size`` extra features per step
    (Bahdanau's context ``c_t`` or Luong's fed-back ``h̃_{t-1}``); :class:`Seq2Seq` sets
    it for the attention it uses (:meth:`set_context_size`).
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int = 64,
        hidden_size: int = 128,
        num_layers: int = 1,
        *,
        cell: str = "lstm",
        dropout: float = 0.0,
        engine: str = "auto",
        context_size: int = 0,
    ) -> None:
        super().__init__()
        check_positive("vocab_size", vocab_size)
        check_positive("embedding_size", embedding_size)
        self.vocab_size, self.embedding_size = vocab_size, embedding_size
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.cell, self.dropout, self.engine = cell, check_probability("dropout", dropout), engine
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.context_size = -1
        self.set_context_size(context_size)

    def set_context_size(self, context_size: int) -> None:
        """Build the stack for ``embedding_size + context_size`` inputs (fresh weights
        when the width changes)."""
        if context_size == self.context_size:
            return
        if not isinstance(context_size, int) or context_size < 0:
            raise ValueError(f"context_size must be an integer >= 0, got {context_size!r}")
        self.context_size = context_size
        self.rnn = build_stack(
            self.cell,
            self.embedding_size + context_size,
            self.hidden_size,
            self.num_layers,
            dropout=self.dropout,
            engine=self.engine,
        )

    def dropout_masks(self, batch: int, like: Tensor) -> list[Tensor] | None:
        """One variational mask per layer input ``(B, width)``, as ``Stacked.run`` draws
        them (on the stack's input and between layers); None when no dropout applies."""
        if not (self.training and self.dropout):
            return None
        widths = [layer.input_size for layer in self.rnn.layers]
        return [dropout_mask(self.dropout, (batch, w), like) for w in widths]

    def step(self, x: Tensor, state: tuple, masks: list[Tensor] | None) -> tuple[Tensor, tuple]:
        """One step through each layer's cell: ``x`` ``(B, I)`` → ``(y (B, H), state)``.

        Stepping the cells directly keeps one dropout mask per sequence across steps and
        avoids the per-call checks and engine choice of ``Stacked.run``.
        """
        new = []
        for k, (layer, layer_state) in enumerate(zip(self.rnn.layers, state, strict=True)):
            if masks is not None:
                x = x * masks[k]
            x, s = layer.cell(x, layer_state)  # (B, H)
            new.append(s)
        return x, tuple(new)


class Bridge(nn.Module):
    r"""Encoder final state → decoder initial state, for every decoder layer.

    Decoder layer ``k`` (of ``L_dec``) starts from encoder layer ``max(0, k + L_enc - L_dec)``
    (tops aligned: the top decoder layer reads the top encoder layer; a deeper decoder's
    extra lower layers read the encoder's first layer). With ``h_enc`` that layer's final
    ``h`` (a bidirectional layer's two directions concatenated, ``[h_fwd; h_bwd]``):

    .. math::

        h_0^{(k)} = \tanh(W_h^{(k)} h_{enc} + b_h^{(k)}),\qquad
        c_0^{(k)} = W_c^{(k)} c_{enc} + b_c^{(k)}\ \text{(LSTM → LSTM)},\ \text{else } 0

    (``W_h = self.h[k]``, ``W_c = self.c[k]``; an LSTM decoder after a non-LSTM encoder
    starts from ``c_0 = 0``). ``kind="auto"`` copies the encoder's final state unchanged
    when it already fits (same cell kind, hidden size and depth, one-way encoder).
    """

    def __init__(self, encoder: Encoder, decoder: Decoder, kind: str = "auto") -> None:
        super().__init__()
        check_choice("bridge", kind, BRIDGES)
        L_enc, L_dec = encoder.num_layers, decoder.num_layers
        self.bidirectional = encoder.bidirectional
        self.decoder_lstm = decoder.cell == "lstm"
        self.copy = kind == "auto" and (
            encoder.cell == decoder.cell
            and encoder.hidden_size == decoder.hidden_size
            and L_enc == L_dec
            and not encoder.bidirectional
        )
        self.sources = [max(0, k + L_enc - L_dec) for k in range(L_dec)]
        self.h = self.c = None
        if not self.copy:
            width = encoder.output_size  # [h_fwd; h_bwd] when bidirectional
            H = decoder.hidden_size
            self.h = nn.ModuleList(nn.Linear(width, H) for _ in range(L_dec))
            if self.decoder_lstm and encoder.cell == "lstm":
                self.c = nn.ModuleList(nn.Linear(width, H) for _ in range(L_dec))

    def forward(self, final: tuple) -> tuple:
        if self.copy:
            return final
        states = []
        for k, source in enumerate(self.sources):
            parts = final[source] if self.bidirectional else (final[source],)
            h_enc = torch.cat([p[0] for p in parts], dim=-1)  # (B, O)
            h0 = torch.tanh(self.h[k](h_enc))  # (B, H)
            if not self.decoder_lstm:
                states.append((h0,))
            elif self.c is not None:
                c_enc = torch.cat([p[1] for p in parts], dim=-1)  # (B, O)
                states.append((h0, self.c[k](c_enc)))
            else:
                states.append((h0, torch.zeros_like(h0)))
        return tuple(states)

    def extra_repr(self) -> str:
        return "copy" if self.copy else f"sources={self.sources}"

"""Attention over an encoder's outputs: additive (Bahdanau) and multiplicative (Luong).

Both read the encoder's outputs ``values`` ``(B, S, O)`` (``h_j`` below), a ``mask``
``(B, S)`` that is False on padding, and ``Q`` decoder queries per sequence ``(B, Q, H)``
(one per step when stepping, all ``U`` steps at once when the queries are known in
advance). The part of the score that depends only on ``h_j`` is computed once per source
by ``keys(values)`` and reused at every step.

Padding is scored ``-inf`` before the softmax, so its weight is exactly 0 and a sequence
attends the same way whatever padding its batch adds.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """``softmax`` over the last dim of ``scores`` ``(B, Q, S)`` with ``mask`` ``(B, S)``
    False positions scored ``-inf`` (weight exactly 0)."""
    scores = scores.masked_fill(~mask[:, None, :], float("-inf"))  # (B, Q, S)
    return torch.softmax(scores, dim=-1)


class BahdanauAttention(nn.Module):
    r"""Additive attention (Bahdanau et al. 2015).

    .. math::

        \mathrm{score}_{tj} = v^\top \tanh(W_q\, s_{t-1} + W_k\, h_j),\quad
        \alpha_{tj} = \mathrm{softmax}_j(\mathrm{score}_{tj}),\quad
        c_t = \sum_j \alpha_{tj}\, h_j

    with ``W_q = self.query (A, H)``, ``W_k = self.key (A, O)``, ``v = self.v (1, A)``;
    ``s_{t-1}`` is the decoder's state before step ``t`` (the query), ``h_j`` the encoder's
    output at source position ``j``.
    """

    def __init__(self, query_size: int, value_size: int, attention_size: int) -> None:
        super().__init__()
        self.query = nn.Linear(query_size, attention_size, bias=False)
        self.key = nn.Linear(value_size, attention_size, bias=False)
        self.v = nn.Linear(attention_size, 1, bias=False)

    def keys(self, values: Tensor) -> Tensor:
        """``W_k h_j`` for every source position: ``(B, S, A)``."""
        return self.key(values)

    def forward(
        self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``(c (B, Q, O), alpha (B, Q, S))`` for queries ``s`` ``(B, Q, H)``."""
        hidden = torch.tanh(self.query(query)[:, :, None, :] + keys[:, None, :, :])  # (B,Q,S,A)
        score = self.v(hidden).squeeze(-1)  # (B, Q, S)
        alpha = masked_softmax(score, mask)
        return torch.bmm(alpha, values), alpha  # (B, Q, O)


class LuongAttention(nn.Module):
    r"""Multiplicative attention, Luong et al. (2015)'s "general" score.

    .. math::

        \mathrm{score}_{tj} = s_t^\top W_a\, h_j,\quad
        \alpha_{tj} = \mathrm{softmax}_j(\mathrm{score}_{tj}),\quad
        c_t = \sum_j \alpha_{tj}\, h_j,\quad
        \tilde h_t = \tanh(W_c\, [c_t; s_t])

    with ``W_a = self.key (H, O)`` and ``W_c = self.combine (H, O + H)``; ``s_t`` is the
    decoder's output at step ``t`` (the query, computed before attending) and
    ``\tilde h_t`` the attentional hidden state the output layer reads.
    """

    def __init__(self, query_size: int, value_size: int) -> None:
        super().__init__()
        self.key = nn.Linear(value_size, query_size, bias=False)
        self.combine = nn.Linear(value_size + query_size, query_size, bias=False)

    def keys(self, values: Tensor) -> Tensor:
        """``W_a h_j`` for every source position: ``(B, S, H)``."""
        return self.key(values)

    def forward(
        self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``(c (B, Q, O), alpha (B, Q, S))`` for queries ``s`` ``(B, Q, H)``."""
        score = torch.bmm(query, keys.transpose(1, 2))  # (B, Q, S)
        alpha = masked_softmax(score, mask)
        return torch.bmm(alpha, values), alpha  # (B, Q, O)

    def attentional(self, c: Tensor, s: Tensor) -> Tensor:
        """``h̃ = tanh(W_c [c; s])``: ``(..., H)``."""
        return torch.tanh(self.combine(torch.cat([c, s], dim=-1)))


__all__ = ["BahdanauAttention", "LuongAttention", "masked_softmax"]

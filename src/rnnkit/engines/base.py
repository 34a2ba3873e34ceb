"""The engine boundary: how a whole sequence is computed for one cell.

A layer hands an engine an :class:`Unroll` (time-major input, initial state, lengths,
direction, and the per-sequence extras some cells or regularisers need) and gets back
the outputs of every step and the final state. Engines know nothing of batch_first,
dropout on inputs and outputs, or stacking: the layers do that.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rnnkit.cells.base import RecurrentCell, State


@dataclass
class Unroll:
    """One sequence batch to run through a cell.

    Attributes:
        x: inputs, ``(T, B, I)``.
        state: initial state, a tuple of ``(B, ...)`` tensors.
        lengths: valid steps per sequence, ``(B,)`` int64 on the CPU, or None when
            every sequence has all T steps. Steps past a sequence's end emit zeros
            and leave its state unchanged.
        reverse: run from the last valid step back to the first.
        state_mask: variational dropout mask for ``state[0]`` as the recurrent input,
            ``(B, R)``, the same at every step; None for none.
        teacher: true previous outputs for teacher forcing, ``(T, B, O)``: the step
            after step t sees ``teacher[t]`` as its previous output. None for none.
        checkpoint: steps per gradient-checkpointing segment (0: none). The layer then
            hands the engine one segment at a time, in which a sequence may already
            have ended (length 0); engines that cannot take that refuse.
    """

    x: Tensor
    state: State
    lengths: Tensor | None = None
    reverse: bool = False
    state_mask: Tensor | None = None
    teacher: Tensor | None = None
    checkpoint: int = 0

    def valid(self) -> Tensor | None:
        """``(T, B)`` bool: which steps are inside their sequence (None: all)."""
        if self.lengths is None:
            return None
        steps = torch.arange(self.x.shape[0], device=self.x.device)
        return steps[:, None] < self.lengths.to(self.x.device)[None, :]


class Engine:
    """Computes a cell over a sequence. Subclasses implement both methods."""

    name: str = "?"

    def unsupported(self, cell: RecurrentCell, unroll: Unroll) -> str | None:
        """Why this engine cannot run the configuration, or None when it can."""
        raise NotImplementedError

    def run(self, cell: RecurrentCell, unroll: Unroll) -> tuple[Tensor, State]:
        """Return the outputs ``(T, B, O)`` and the final state."""
        raise NotImplementedError


def reverse_padded(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of ``x`` (T, B, ...) within its own length; padding stays put."""
    if lengths is None:
        return x.flip(0)
    T, B = x.shape[:2]
    t = torch.arange(T, device=x.device)[:, None].expand(T, B)  # (T, B)
    n = lengths.to(x.device)[None, :]
    index = torch.where(t < n, n - 1 - t, t)  # (T, B)
    return x.gather(0, index.view(T, B, *([1] * (x.dim() - 2))).expand_as(x))

"""``Bidirectional``: a forward and a backward layer over the same sequence, merged."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from rnnkit.cells.base import RecurrentCell
from rnnkit.layers._checks import check_lengths, time_major
from rnnkit.layers.recurrent import Recurrent

MERGES = ("concat", "sum", "mean", "mul")


class Bidirectional(nn.Module):
    """Run ``fwd`` left to right and ``bwd`` right to left, and merge their outputs.

    ``y_t = merge(y_t^fwd, y_t^bwd)`` with merge ``concat`` (``(T, B, 2O)``), ``sum``,
    ``mean`` or ``mul``. The state is the pair ``(fwd_state, bwd_state)``.

    Args:
        fwd: a cell or a forward :class:`Recurrent`.
        bwd: a cell or a :class:`Recurrent` with ``reverse=True``; default: a copy of
            ``fwd`` (same cell kind and options) running backwards, re-initialised.
        merge: how the two directions' outputs are combined.
        batch_first: ``x`` and ``y`` are ``(B, T, ·)``.
    """

    def __init__(self, fwd, bwd=None, merge: str = "concat", batch_first: bool = False):
        super().__init__()
        if merge not in MERGES:
            raise ValueError(f"merge={merge!r} is not supported; expected one of {MERGES}")
        if bwd is None:
            bwd = _fresh_reverse_copy(fwd if isinstance(fwd, Recurrent) else Recurrent(fwd))
        self.fwd = fwd if isinstance(fwd, Recurrent) else Recurrent(_cell(fwd, "fwd"))
        self.bwd = bwd if isinstance(bwd, Recurrent) else Recurrent(_cell(bwd, "bwd"), reverse=True)
        if self.fwd.reverse or not self.bwd.reverse:
            raise ValueError("Bidirectional needs fwd with reverse=False and bwd with reverse=True")
        if self.fwd.input_size != self.bwd.input_size:
            raise ValueError(
                f"both directions must read the same input size, got "
                f"{self.fwd.input_size} and {self.bwd.input_size}"
            )
        if merge != "concat" and self.fwd.output_size != self.bwd.output_size:
            raise ValueError(f"merge={merge!r} needs both directions to have the same output size")
        self.merge = merge
        self.batch_first = bool(batch_first)

    @property
    def input_size(self) -> int:
        return self.fwd.input_size

    @property
    def output_size(self) -> int:
        size = self.fwd.output_size
        return size + self.bwd.output_size if self.merge == "concat" else size

    def init_state(self, batch: int, *, device=None, dtype=None):
        return (
            self.fwd.init_state(batch, device=device, dtype=dtype),
            self.bwd.init_state(batch, device=device, dtype=dtype),
        )

    def forward(self, x: Tensor, state=None, lengths=None):
        x = time_major(x, self.input_size, self.batch_first)  # (T, B, I)
        lengths = check_lengths(lengths, *x.shape[:2])
        if state is not None and (not isinstance(state, (tuple, list)) or len(state) != 2):
            raise ValueError("expected the Bidirectional state as a pair (fwd_state, bwd_state)")
        y, final = self.run(x, state, lengths)
        return (y.transpose(0, 1) if self.batch_first else y), final

    def run(self, x: Tensor, state, lengths):
        """Time-major forward on checked inputs."""
        fwd_state, bwd_state = state if state is not None else (None, None)
        B = x.shape[1]
        y_f, final_f = self.fwd.run(x, self.fwd.checked_state(fwd_state, B, "direction"), lengths)
        y_b, final_b = self.bwd.run(x, self.bwd.checked_state(bwd_state, B, "direction"), lengths)
        if self.merge == "concat":
            y = torch.cat([y_f, y_b], dim=-1)  # (T, B, O_f + O_b)
        elif self.merge == "sum":
            y = y_f + y_b
        elif self.merge == "mean":
            y = 0.5 * (y_f + y_b)
        else:
            y = y_f * y_b
        return y, (final_f, final_b)

    def extra_repr(self) -> str:
        return f"merge={self.merge!r}"


def _fresh_reverse_copy(layer: Recurrent) -> Recurrent:
    """The same layer (cell kind, engine, dropouts) running backwards, re-initialised."""
    copy_ = copy.deepcopy(layer)
    copy_.reverse = True
    for module in copy_.modules():
        if module is not copy_ and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return copy_


def _cell(cell, which: str) -> RecurrentCell:
    if not isinstance(cell, RecurrentCell):
        raise ValueError(f"{which} must be an rnnkit cell or Recurrent, got {type(cell).__name__}")
    return cell

"""The ``fused`` engine: one autograd node per layer, BPTT written by hand in C++.

Each cell family (``elman.py``, ``lstm.py``, ``gru.py``) computes the input side of
every step as one matrix product, runs the recurrence in a C++ loop (one product and
one fused element-wise pass per step), and in the backward walks the steps in reverse
carrying ``dh`` (and ``dc``); weight and input gradients are single products over all
T·B rows after that loop. The engine itself handles direction and padding.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.cells.base import RecurrentCell, State
from rnnkit.engines.base import Engine, Unroll, reverse_padded
from rnnkit.engines.fused import build, elman, gru, lstm

FAMILIES = (elman, lstm, gru)


def _family(cell: RecurrentCell):
    return next((f for f in FAMILIES if f.supports(cell)), None)


class FusedEngine(Engine):
    """Hand-written BPTT for Elman (tanh, relu, sigmoid), leaky, LSTM (plain, peephole,
    layer norm, projection) and GRU (reset after or before) cells, on the CPU."""

    name = "fused"

    def unsupported(self, cell: RecurrentCell, unroll: Unroll) -> str | None:
        if _family(cell) is None:
            return f"no fused kernel for {cell!r}"
        if unroll.teacher is not None:
            return "teacher forcing runs through the loop engine"
        if unroll.x.device.type != "cpu":
            return f"the fused kernels run on the CPU, not {unroll.x.device.type}"
        if unroll.x.dtype not in (torch.float32, torch.float64):
            return f"the fused kernels take float32 or float64, not {unroll.x.dtype}"
        return build.load()

    def run(self, cell: RecurrentCell, unroll: Unroll) -> tuple[Tensor, State]:
        x, lengths = unroll.x, unroll.lengths
        if unroll.reverse:
            x = reverse_padded(x, lengths)  # the kernels only run forwards in time
        valid = unroll.valid()
        valid = None if valid is None else valid.to(x.dtype)  # (T, B) 1 inside, 0 after
        y, state = _family(cell).run(cell, x, unroll.state, valid, unroll.state_mask)
        if unroll.reverse:
            y = reverse_padded(y, lengths)
        return y, state

"""Gradient checkpointing through time: keep memory for long sequences near sqrt(T).

The sequence is cut into segments of ``segment`` steps. The forward pass keeps only
each segment's incoming state (and the outputs the next layer needs); the backward
pass recomputes one segment's forward at a time, so what autograd holds for the
backward grows with ``segment + T / segment`` steps instead of ``T``: with
``segment = ceil(sqrt(T))``, with ``sqrt(T)``. The price is one extra forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from rnnkit.cells.base import State
from rnnkit.engines.base import Unroll, reverse_padded


def segment_steps(checkpoint_option: bool | int, T: int) -> int:
    """Steps per segment for ``Recurrent(checkpoint=...)``: ``True`` gives
    ``ceil(sqrt(T))``, a positive integer is taken as is, ``False`` / 0 means none."""
    if checkpoint_option is True:
        return max(1, math.isqrt(T - 1) + 1) if T > 1 else 1
    return int(checkpoint_option)


def run_in_segments(
    run: Callable[[Unroll], tuple[Tensor, State]], unroll: Unroll, segment: int
) -> tuple[Tensor, State]:
    """``run`` over ``unroll`` one checkpointed segment of ``segment`` steps at a time.

    ``run`` computes one forward-direction segment (an engine's ``run`` with the layer's
    weights in place); it is called again for each segment during the backward pass.
    """
    x, lengths = unroll.x, unroll.lengths
    if unroll.reverse:
        x = reverse_padded(x, lengths)  # segments then all run forwards in time
    T = x.shape[0]
    state = unroll.state
    outputs = []
    for t0 in range(0, T, segment):
        x_seg = x[t0 : t0 + segment]  # (S, B, I)
        seg_lengths = None
        if lengths is not None:
            seg_lengths = (lengths - t0).clamp(0, x_seg.shape[0])  # 0: already ended

        def segment_fn(x_seg, *state, seg_lengths=seg_lengths):
            y, final = run(Unroll(x_seg, state, seg_lengths, False, unroll.state_mask))
            return (y, *final)

        y_seg, *state = checkpoint(segment_fn, x_seg, *state, use_reentrant=False)
        outputs.append(y_seg)
        state = tuple(state)
    y = torch.cat(outputs)  # (T, B, O)
    if unroll.reverse:
        y = reverse_padded(y, lengths)
    return y, state

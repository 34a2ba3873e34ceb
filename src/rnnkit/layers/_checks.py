"""Input validation shared by the layers: one clear message per mistake."""

from __future__ import annotations

import torch
from torch import Tensor


def time_major(x: Tensor, input_size: int, batch_first: bool) -> Tensor:
    """Check ``x`` is a 3-D sequence batch with ``input_size`` features; return (T, B, I)."""
    layout = "(B, T, I)" if batch_first else "(T, B, I)"
    if not isinstance(x, Tensor):
        raise ValueError(
            f"expected the input as a tensor of shape {layout}, got {type(x).__name__}"
        )
    if x.dim() != 3 or x.shape[-1] != input_size:
        raise ValueError(
            f"expected input of shape {layout} with I={input_size}, got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise ValueError(f"expected a floating-point input, got dtype {x.dtype}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"expected a non-empty sequence batch, got shape {tuple(x.shape)}")
    return x.transpose(0, 1) if batch_first else x


def check_lengths(lengths, steps: int, batch: int) -> Tensor | None:
    """Validate ``lengths`` (one per sequence, each in 1..steps); return int64 on the CPU.

    All-full lengths come back as None so engines can skip masking.
    """
    if lengths is None:
        return None
    lengths = torch.as_tensor(lengths).detach().cpu()
    if lengths.dim() != 1 or lengths.numel() != batch:
        raise ValueError(
            f"expected one length per sequence (shape ({batch},)), got shape {tuple(lengths.shape)}"
        )
    if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        raise ValueError(f"lengths must be integers, got dtype {lengths.dtype}")
    lengths = lengths.long()
    low, high = int(lengths.min()), int(lengths.max())
    if low < 1 or high > steps:
        raise ValueError(
            f"every length must be between 1 and the sequence length {steps}, "
            f"got lengths from {low} to {high}"
        )
    return None if low == steps else lengths


def check_state(state, shapes, batch: int, what: str) -> tuple[Tensor, ...]:
    """Accept a tuple (or, for one-tensor states, a tensor) matching ``shapes`` per example."""
    if isinstance(state, Tensor) and len(shapes) == 1:
        state = (state,)
    if not isinstance(state, (tuple, list)) or len(state) != len(shapes):
        raise ValueError(f"expected the {what} state as a tuple of {len(shapes)} tensors")
    for i, (s, shape) in enumerate(zip(state, shapes, strict=True)):
        if not isinstance(s, Tensor) or tuple(s.shape) != (batch, *shape):
            got = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
            raise ValueError(
                f"expected {what} state tensor {i} of shape {(batch, *shape)}, got {got}"
            )
    return tuple(state)

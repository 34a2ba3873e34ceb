"""Synthetic sequence tasks generated in code (no download)."""

from __future__ import annotations

import torch
from torch import Tensor


def adding_problem(batch: int, steps: int, generator: torch.Generator | None = None):
    """The adding problem (Hochreiter & Schmidhuber 1997; Le et al. 2015's set-up).

    Each step carries a value drawn from U[0, 1] and a marker; one step in each half of
    the sequence is marked and the target is the sum of the two marked values.
    Always answering 1 scores an MSE of about 1/6, the baseline to beat.

    Returns inputs ``(T, B, 2)`` = (value, marker) and targets ``(B,)``.
    """
    if steps < 2 or batch < 1:
        raise ValueError(
            f"the adding problem needs steps >= 2 and batch >= 1, got {steps}, {batch}"
        )
    values = torch.rand(steps, batch, generator=generator)  # (T, B)
    marker = torch.zeros(steps, batch)
    half = steps // 2
    first = torch.randint(0, half, (batch,), generator=generator)
    second = torch.randint(half, steps, (batch,), generator=generator)
    rows = torch.arange(batch)
    marker[first, rows] = 1.0
    marker[second, rows] = 1.0
    x: Tensor = torch.stack([values, marker], dim=-1)  # (T, B, 2)
    return x, (values * marker).sum(0)

"""Synthetic sequence tasks generated in code (no download)."""

from __future__ import annotations

import math

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


def copy_memory(
    batch: int,
    blanks: int,
    generator: torch.Generator | None = None,
    *,
    symbols: int = 8,
    remember: int = 10,
):
    """The copy-memory task (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016's set-up).

    Tokens: ``0`` is the blank, ``1..symbols`` the symbols to remember, ``symbols + 1``
    the delimiter. With ``R = remember`` and ``T = blanks`` a sequence has ``T + 2·R``
    steps::

        inputs : s_1 .. s_R | blank × (T - 1) | delimiter | blank × R
        targets: blank × (T + R)                           | s_1 .. s_R

    each ``s_i`` drawn uniformly from ``1..symbols``. A model that outputs the blank for
    the first ``T + R`` steps and a uniform guess over the symbols for the last ``R``
    scores the cross-entropy :func:`copy_memory_baseline`.

    Returns one-hot inputs ``(T + 2R, B, symbols + 2)`` and token targets ``(T + 2R, B)``.
    """
    if blanks < 1 or batch < 1 or symbols < 1 or remember < 1:
        raise ValueError(
            f"the copy-memory task needs blanks, batch, symbols and remember >= 1, got "
            f"{blanks}, {batch}, {symbols}, {remember}"
        )
    steps = blanks + 2 * remember
    data = torch.randint(1, symbols + 1, (remember, batch), generator=generator)  # (R, B)
    tokens = torch.zeros(steps, batch, dtype=torch.long)  # (T + 2R, B) input tokens
    tokens[:remember] = data
    tokens[remember + blanks - 1] = symbols + 1  # the delimiter: "write them out now"
    targets = torch.zeros(steps, batch, dtype=torch.long)
    targets[-remember:] = data
    x = torch.nn.functional.one_hot(tokens, symbols + 2).float()  # (T + 2R, B, symbols + 2)
    return x, targets


def copy_memory_baseline(blanks: int, *, symbols: int = 8, remember: int = 10) -> float:
    """Mean cross-entropy per step of the memoryless guess: ``R·log(symbols) / (T + 2R)``."""
    return remember * math.log(symbols) / (blanks + 2 * remember)

"""``python -m rnnkit.demo``: train a small LSTM on the adding problem and watch it learn.

The adding problem (Hochreiter & Schmidhuber 1997): each step carries a random value
in [0, 1] and a marker; exactly two steps are marked and the target is the sum of
their values. Always answering 1 (the mean target) scores an MSE of about 0.167, so
a loss well below that means the network has learned to remember the marked values
across the sequence.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from rnnkit import LSTMCell, Recurrent


def adding_batch(batch: int, steps: int, generator: torch.Generator):
    """Inputs (T, B, 2) = (value, marker) and targets (B,) = sum of the two marked values."""
    values = torch.rand(steps, batch, generator=generator)
    marker = torch.zeros(steps, batch)
    half = steps // 2
    first = torch.randint(0, half, (batch,), generator=generator)
    second = torch.randint(half, steps, (batch,), generator=generator)
    rows = torch.arange(batch)
    marker[first, rows] = 1.0
    marker[second, rows] = 1.0
    x = torch.stack([values, marker], dim=-1)  # (T, B, 2)
    return x, (values * marker).sum(0)


class AddingModel(nn.Module):
    """LSTM over the sequence, a linear read-out of its last output."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.rnn = Recurrent(LSTMCell(2, hidden))
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        y, _ = self.rnn(x)  # (T, B, H)
        return self.head(y[-1]).squeeze(-1)  # (B,)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="optimiser steps")
    parser.add_argument("--length", type=int, default=30, help="sequence length T")
    parser.add_argument("--hidden", type=int, default=32, help="LSTM units")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    model = AddingModel(args.hidden)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    x_val, t_val = adding_batch(1000, args.length, generator)
    baseline = nn.functional.mse_loss(torch.ones_like(t_val), t_val).item()
    print(f"adding problem, T={args.length}: predicting 1 always scores MSE {baseline:.3f}")

    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        x, target = adding_batch(64, args.length, generator)
        loss = nn.functional.mse_loss(model(x), target)
        optimiser.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimiser.step()
        if step % 50 == 0 or step == 1:
            with torch.no_grad():
                val = nn.functional.mse_loss(model(x_val), t_val).item()
            print(f"step {step:4d}  train MSE {loss.item():.4f}  validation MSE {val:.4f}")
    print(f"done in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

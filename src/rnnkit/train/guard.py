"""Protection against bad steps: the loss/gradient check and the rollback snapshot."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import torch
from torch import nn

WINDOW = 50  # good losses in the running mean
MIN_HISTORY = 5  # good losses needed before the runaway test applies


class LossGuard:
    """Decides whether a step is fit to apply.

    A step is *bad* when its loss or gradient norm is not finite, or its loss exceeds
    both ``factor ×`` the mean of the last ``WINDOW`` good losses and ``ln V`` (what a
    uniform guess scores). The ``ln V`` floor keeps a model whose loss is near zero,
    where a tenfold jump is ordinary noise, from having every step refused.
    """

    def __init__(self, factor: float) -> None:
        self.factor = factor
        self.recent: deque[float] = deque(maxlen=WINDOW)

    def check_loss(self, loss: float, vocab_size: int) -> str | None:
        """Why the loss makes the step bad, or None."""
        if not math.isfinite(loss):
            return f"loss {loss}"
        if len(self.recent) >= MIN_HISTORY:
            mean = sum(self.recent) / len(self.recent)
            limit = max(self.factor * mean, math.log(vocab_size))
            if loss > limit:
                ratio = f", {loss / mean:.3g} × the running mean" if mean > 0 else ""
                return f"loss {loss:.4g} > {limit:.4g}{ratio}"
        return None

    @staticmethod
    def check_grad_norm(norm: float) -> str | None:
        """Why the gradient norm makes the step bad, or None."""
        return None if math.isfinite(norm) else f"gradient norm {norm}"

    def accept(self, loss: float) -> None:
        """Count a good step's loss into the running mean."""
        self.recent.append(loss)

    def state_dict(self) -> dict:
        return {"recent": list(self.recent)}

    def load_state_dict(self, state: dict) -> None:
        self.recent = deque((float(x) for x in state["recent"]), maxlen=WINDOW)


@dataclass
class Snapshot:
    """An in-memory copy (on the CPU) of the model and optimizer at a known-good step."""

    step: int
    model: dict
    optimizer: dict

    @classmethod
    def take(cls, step: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> Snapshot:
        return cls(step, _cpu_copy(model.state_dict()), _cpu_copy(optimizer.state_dict()))

    def restore(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Load the copy back (the optimizer moves its state to the parameters' device)."""
        model.load_state_dict(self.model)
        optimizer.load_state_dict(_cpu_copy(self.optimizer))  # keep our copy pristine


def _cpu_copy(obj):
    """A deep copy of nested dicts/lists/tuples with every tensor cloned to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(v) for v in obj)
    return obj

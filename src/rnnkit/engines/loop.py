"""The reference engine: autograd through the cell's own step, one step at a time."""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.cells.base import RecurrentCell, State
from rnnkit.engines.base import Engine, Unroll


def _select(keep: Tensor, new: Tensor, old: Tensor) -> Tensor:
    """``new`` where ``keep`` (B,) is set, else ``old``; broadcasts over trailing dims."""
    return torch.where(keep.view(-1, *([1] * (new.dim() - 1))), new, old)


class LoopEngine(Engine):
    """Runs any cell with any option; every other engine is tested against it."""

    name = "loop"

    def unsupported(self, cell: RecurrentCell, unroll: Unroll) -> str | None:
        if unroll.teacher is not None and not hasattr(cell, "teacher_force"):
            return f"{type(cell).__name__} has no output feedback to teacher-force"
        return None

    def run(self, cell: RecurrentCell, unroll: Unroll) -> tuple[Tensor, State]:
        x, state, teacher = unroll.x, unroll.state, unroll.teacher
        T = x.shape[0]
        valid = unroll.valid()  # (T, B) or None
        order = range(T - 1, -1, -1) if unroll.reverse else range(T)
        step = -1 if unroll.reverse else 1
        outputs: list[Tensor] = [None] * T  # type: ignore[list-item]
        for i, t in enumerate(order):
            state_in = state
            if teacher is not None and i > 0:
                # The previous step in this direction was t - step; a sequence whose
                # previous step was padding has not started yet and keeps its state.
                forced = cell.teacher_force(state, teacher[t - step])
                if valid is not None:
                    forced = tuple(
                        _select(valid[t - step], f, s) for f, s in zip(forced, state, strict=True)
                    )
                state_in = forced
            if unroll.state_mask is not None:
                state_in = (state_in[0] * unroll.state_mask, *state_in[1:])
            y, new = cell(x[t], state_in)
            if valid is None:
                state = new
            else:
                # Outside its sequence a row keeps its (undropped) state and emits zeros.
                state = tuple(_select(valid[t], n, s) for n, s in zip(new, state, strict=True))
                y = _select(valid[t], y, torch.zeros_like(y))
            outputs[t] = y
        return torch.stack(outputs), state

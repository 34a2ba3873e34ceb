r"""One layer run step by step with a zero *probe* added to its state after every step.

Processing step ``i`` (time ``t = i``, or ``T-1-i`` for a reverse layer) computes

.. code-block:: text

    y_i, s_i = cell(x[t], s_{i-1} + p_{i-1})      # s_{-1} + p_{-1}: the initial state
    output_i = (s_i + p_i)[0]                     # every rnnkit cell has y_i = s_i[0]

with ``p_i`` zero leaves, so ``∂L/∂p_i`` is ``∂L/∂s_i`` with the state taken as an
independent input to everything after it: exactly what perturbing the state and running
the recurrence on from there measures. Only floating state tensors get probes (the
clockwork cell's step counter does not). Rows past their sequence's end keep their state
and output zeros, as in the ``loop`` engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rnnkit.cells.base import State
from rnnkit.layers import Recurrent


@dataclass
class ProbedRun:
    """The outputs of a probed run and what the gradients and Jacobians need."""

    outputs: Tensor  # (T, B, O), time order, zeros past each length
    probes: list[Tensor]  # one leaf (T, B, *shape) per floating state tensor, processing order
    states_in: list[State]  # state entering processing step i, detached
    times: Tensor  # (T,) time index of processing step i
    floating: list[int]  # which state entries are floating (and probed)


def probed_run(layer: Recurrent, x: Tensor, valid: Tensor | None) -> ProbedRun:
    """Run ``layer`` over ``x`` (T, B, I) with probes; ``valid`` (T, B) or None for all."""
    cell = layer.cell
    T, B = x.shape[:2]
    state = layer.init_state(B, device=x.device, dtype=x.dtype)
    floating = [j for j, s in enumerate(state) if s.is_floating_point()]
    probes = [
        torch.zeros((T, *state[j].shape), device=x.device, dtype=x.dtype, requires_grad=True)
        for j in floating
    ]
    times = torch.arange(T - 1, -1, -1) if layer.reverse else torch.arange(T)
    outputs: list[Tensor] = [None] * T  # type: ignore[list-item]
    states_in: list[State] = []
    for i, t in enumerate(times.tolist()):
        states_in.append(tuple(s.detach() for s in state))
        y, new = cell(x[t], state)
        output_is_state = y is new[0]
        if valid is not None:
            keep = valid[t]  # (B,)
            new = tuple(_select(keep, n, s) for n, s in zip(new, state, strict=True))
        new = list(new)
        for probe, j in zip(probes, floating, strict=True):
            new[j] = new[j] + probe[i]
        state = tuple(new)
        if output_is_state:
            y = state[0]
        if valid is not None:
            y = _select(valid[t], y, torch.zeros_like(y))
        outputs[t] = y
    return ProbedRun(torch.stack(outputs), probes, states_in, times, floating)


def _select(keep: Tensor, new: Tensor, old: Tensor) -> Tensor:
    """``new`` where ``keep`` (B,) is set, else ``old``; broadcasts over trailing dims."""
    return torch.where(keep.view(-1, *([1] * (new.dim() - 1))), new, old)

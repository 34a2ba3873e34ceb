r"""One-step state Jacobians ``∂s_{j+1}/∂s_j`` along a recorded trajectory.

``s`` is the full floating state flattened per example (``h`` for Elman, GRU and leaky
cells; ``[h, c]`` for the LSTM; ``[y]`` for Jordan; the inner state then the
``(d, O)`` history for ``SkipCell``), so ``J_j`` is ``(S, S)``. Every rnnkit cell treats
the rows of a batch independently (layer norm is per row), so the ``T - 1`` steps of one
sequence are stacked as a batch of ``T - 1`` rows and ``J`` is read off with ``S``
backward passes, one per output coordinate.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.cells.base import RecurrentCell
from rnnkit.diagnostics.probe import ProbedRun


def step_jacobians(cell: RecurrentCell, x: Tensor, run: ProbedRun, batch_index: int = 0) -> Tensor:
    """``J[j] = ∂s_{j+1}/∂s_j`` ``(T-1, S, S)`` of sequence ``batch_index``, processing order.

    ``x`` is the layer's input ``(T, B, I)`` (time order) and ``run`` the probed run that
    recorded the states.
    """
    steps = len(run.states_in)
    rows = range(1, steps)  # the state entering step i is s_{i-1}
    times = run.times.tolist()
    b = batch_index
    xs = torch.stack([x[times[i], b] for i in rows])  # (T-1, I)
    width = len(run.states_in[0])
    state = [torch.stack([run.states_in[i][k][b] for i in rows]) for k in range(width)]
    leaves = []
    for k in run.floating:
        state[k] = state[k].detach().requires_grad_(True)
        leaves.append(state[k])
    with torch.enable_grad():
        _, new = cell(xs, tuple(state))
        out = torch.cat([new[k].reshape(steps - 1, -1) for k in run.floating], 1)  # (T-1, S)
        size = out.shape[1]
        jac = out.new_zeros(steps - 1, size, size)  # (T-1, S, S)
        for r in range(size):
            grads = torch.autograd.grad(
                out[:, r].sum(), leaves, retain_graph=True, allow_unused=True
            )
            jac[:, r] = torch.cat(
                [
                    (g if g is not None else torch.zeros_like(leaf)).reshape(steps - 1, -1)
                    for g, leaf in zip(grads, leaves, strict=True)
                ],
                1,
            )  # (T-1, S)
    return jac

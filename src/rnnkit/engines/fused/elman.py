"""Fused Elman and leaky-integrator recurrences (C++ loop, BPTT written by hand)."""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.cells.elman import ElmanCell
from rnnkit.cells.leaky import LeakyCell
from rnnkit.engines.fused.products import InputSide, mm

ACTIVATIONS = {"tanh": 0, "relu": 1, "sigmoid": 2}  # the codes of csrc/common.h


class ElmanFunction(torch.autograd.Function):
    r"""The whole recurrence of an Elman / leaky layer in one autograd node.

    Forward, for t = 1..T (``xp`` already holds the input side ``W_ih x_t + b``)::

        hin_t = h_{t-1} * mask
        a_t   = xp_t + hin_t @ w_hh.T
        f_t   = act(a_t)
        h_t   = alpha * hin_t + (1 - alpha) * f_t        # h_t = f_t without alpha

    Backward: the C++ loop walks t = T..1 carrying ``dh`` and returns ``da`` for every
    step; the weight gradient is then one product over all T·B rows,
    ``dw_hh = da^T @ hin``.
    """

    @staticmethod
    def forward(ctx, xp, h0, w_hh, alpha, act, valid, mask):
        ops = torch.ops.rnnkit_fused
        y, f, h_last = ops.elman_forward(xp, h0, w_hh, alpha, act, valid, mask)
        ctx.act = act
        ctx.save_for_backward(y, f if alpha is not None else None, h0, w_hh, alpha, valid, mask)
        return y, h_last

    @staticmethod
    def backward(ctx, dy, dh_last):
        y, f, h0, w_hh, alpha, valid, mask = ctx.saved_tensors
        ops = torch.ops.rnnkit_fused
        need_dalpha = ctx.needs_input_grad[3]
        da, dh0, dhn = ops.elman_backward(
            dy, dh_last, y, f, w_hh, alpha, ctx.act, valid, mask, need_dalpha
        )
        # The state each step read: h0, then the previous output (equal to the carried
        # state wherever the step is inside its sequence; elsewhere da is zero).
        hin = torch.cat([h0[None], y[:-1]])  # (T, B, H)
        if mask is not None:
            hin = hin * mask
        dw_hh = dalpha = None
        if ctx.needs_input_grad[2]:
            dw_hh = mm(da.flatten(0, 1).T, hin.flatten(0, 1))  # (H, H)
        if need_dalpha:
            dalpha = (dhn * (hin - f)).sum((0, 1))  # (H,)
        return da, dh0, dw_hh, dalpha, None, None, None


def supports(cell) -> bool:
    return type(cell) in (ElmanCell, LeakyCell)


def run(cell: ElmanCell, x: Tensor, state, valid: Tensor | None, mask: Tensor | None):
    """Outputs ``(T, B, H)`` and final state of ``cell`` over time-major ``x``."""
    bias = cell.bias_ih + cell.bias_hh if cell.bias else None
    xp = InputSide.apply(x, cell.weight_ih, bias)  # (T, B, H): every step's input side
    alpha = cell.alpha_value if isinstance(cell, LeakyCell) else None
    act = ACTIVATIONS[cell.nonlinearity]
    y, h_last = ElmanFunction.apply(xp, state[0], cell.weight_hh, alpha, act, valid, mask)
    return y, (h_last,)

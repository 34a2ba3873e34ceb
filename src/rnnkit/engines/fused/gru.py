"""Fused GRU recurrences, reset gate after or before the product (C++ loop, hand BPTT)."""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.cells.gru import GRUCell
from rnnkit.engines.fused.products import InputSide, mm


def _step_inputs(hs: Tensor, mask: Tensor | None) -> Tensor:
    """Every step's ``hin`` (T, B, H): the carried state before it, times the mask."""
    hin = hs[:-1]  # hs[t] is h_{t-1}; a contiguous prefix, no copy
    return hin if mask is None else hin * mask


class GRUFunction(torch.autograd.Function):
    r"""The whole recurrence of a ``reset="after"`` GRU layer in one autograd node.

    Forward, for t = 1..T (``xp`` already holds the input side ``W_ih x_t + b_ih``;
    ``b_hh`` stays inside because ``r`` multiplies its ``n`` part)::

        hin_t = h_{t-1} * mask
        gh_t  = hin_t @ w_hh.T + b_hh                      # (B, 3H) = [gh_r, gh_z, gh_n]
        r, z  = sigmoid(xp_t[r, z] + gh_t[r, z])
        n_t   = tanh(xp_t[n] + r * gh_n)
        h_t   = n_t + z * (hin_t - n_t)

    Backward: the C++ loop walks t = T..1 carrying ``dh``::

        dn = dh_t (1 - z)(1 - n^2),  dz = dh_t (hin - n) z (1 - z),  dr = dn gh_n r (1 - r)
        dxp_t = [dr, dz, dn],  dgh_t = [dr, dz, dn r],  dhin = dh_t z + dgh_t @ w_hh

    then ``dw_hh = dgh^T @ hin`` is a product over all T·B rows (one for the r, z rows,
    one for the n rows, as only ``dn r`` is kept apart from ``dxp``) and ``db_hh`` a sum.
    """

    @staticmethod
    def forward(ctx, xp, h0, w_hh, b_hh, valid, mask):
        y, gates, hs = torch.ops.rnnkit_fused.gru_forward(xp, h0, w_hh, b_hh, valid, mask)
        ctx.save_for_backward(gates, hs, w_hh, valid, mask)
        return y, hs[-1].clone()  # a clone: the caller may change it, hs is saved

    @staticmethod
    def backward(ctx, dy, dh_last):
        gates, hs, w_hh, valid, mask = ctx.saved_tensors
        hin = _step_inputs(hs, mask)  # (T, B, H)
        dxp, dgn, dh0 = torch.ops.rnnkit_fused.gru_backward(
            dy, dh_last, gates, hin, w_hh, valid, mask
        )
        # dgh = [dr, dz, dgn]: its r, z part is dxp's, so it is not stored twice.
        H = hin.shape[-1]
        drz = dxp.flatten(0, 1)[:, : 2 * H]  # (T·B, 2H)
        dgn = dgn.flatten(0, 1)  # (T·B, H)
        dw_hh = db_hh = None
        if ctx.needs_input_grad[2]:
            hin = hin.flatten(0, 1)
            dw_hh = torch.cat([mm(drz.T, hin), mm(dgn.T, hin)])  # (3H, H)
        if ctx.needs_input_grad[3]:
            db_hh = torch.cat([drz.sum(0), dgn.sum(0)])  # (3H,)
        return dxp, dh0, dw_hh, db_hh, None, None


class GRUBeforeFunction(torch.autograd.Function):
    r"""The whole recurrence of a ``reset="before"`` GRU layer in one autograd node.

    Forward, for t = 1..T (``xp`` holds ``W_ih x_t + b_ih + b_hh``: here every part of
    ``b_hh`` adds outside ``r``)::

        hin_t = h_{t-1} * mask
        r, z  = sigmoid(xp_t[r, z] + hin_t @ w_hh[r, z].T)
        q_t   = r * hin_t
        n_t   = tanh(xp_t[n] + q_t @ w_hh[n].T)
        h_t   = n_t + z * (hin_t - n_t)

    Backward: the C++ loop walks t = T..1 carrying ``dh``, two products per step::

        dn = dh_t (1 - z)(1 - n^2),  dz = dh_t (hin - n) z (1 - z)
        dq = dn @ w_hh[n],  dr = dq hin r (1 - r)
        da_t = [dr, dz, dn],  dhin = dh_t z + dq r + [dr, dz] @ w_hh[r, z]

    then ``dw_hh[r, z] = da[r, z]^T @ hin`` and ``dw_hh[n] = da[n]^T @ q``, each one
    product over all T·B rows.
    """

    @staticmethod
    def forward(ctx, xp, h0, w_hh, valid, mask):
        ops = torch.ops.rnnkit_fused
        y, gates, q, hs = ops.gru_before_forward(xp, h0, w_hh, valid, mask)
        ctx.save_for_backward(gates, q, hs, w_hh, valid, mask)
        return y, hs[-1].clone()

    @staticmethod
    def backward(ctx, dy, dh_last):
        gates, q, hs, w_hh, valid, mask = ctx.saved_tensors
        hin = _step_inputs(hs, mask)  # (T, B, H)
        da, dh0 = torch.ops.rnnkit_fused.gru_before_backward(
            dy, dh_last, gates, hin, w_hh, valid, mask
        )
        dw_hh = None
        if ctx.needs_input_grad[2]:
            H = hin.shape[-1]
            rows = da.flatten(0, 1)  # (T·B, 3H)
            dw_hh = torch.cat(
                [
                    mm(rows[:, : 2 * H].T, hin.flatten(0, 1)),  # (2H, H)
                    mm(rows[:, 2 * H :].T, q.flatten(0, 1)),  # (H, H)
                ]
            )
        return da, dh0, dw_hh, None, None


def supports(cell) -> bool:
    return type(cell) is GRUCell


def run(cell: GRUCell, x: Tensor, state, valid: Tensor | None, mask: Tensor | None):
    """Outputs ``(T, B, H)`` and final state of ``cell`` over time-major ``x``."""
    if cell.reset == "after":
        xp = InputSide.apply(x, cell.weight_ih, cell.bias_ih)  # (T, B, 3H): every step at once
        y, h_last = GRUFunction.apply(xp, state[0], cell.weight_hh, cell.bias_hh, valid, mask)
    else:
        bias = cell.bias_ih + cell.bias_hh if cell.bias else None
        xp = InputSide.apply(x, cell.weight_ih, bias)  # (T, B, 3H)
        y, h_last = GRUBeforeFunction.apply(xp, state[0], cell.weight_hh, valid, mask)
    return y, (h_last,)

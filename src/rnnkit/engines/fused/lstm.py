"""Fused LSTM recurrence: peepholes, layer norm, projection (C++ loop, BPTT by hand)."""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.cells.lstm import LSTMCell
from rnnkit.engines.fused.products import InputSide


class LSTMFunction(torch.autograd.Function):
    r"""The whole recurrence of an LSTM layer in one autograd node.

    Forward, for t = 1..T (``H`` units, ``R = P or H`` outputs; peephole terms only with
    ``w_ci``, ``w_cf``, ``w_co``; the layer-norm lines only with ``ln_hh`` and the rest)::

        hin_t = h_{t-1} * mask                                          # (B, R)
        a     = xp_t + hin_t @ w_hh.T                                   # (B, 4H)
        a     = LN(xw_t) * ln_ih + bias + LN(hin_t @ w_hh.T) * ln_hh    # layer norm
        i = sigmoid(a_i + w_ci * c_{t-1});  f = sigmoid(a_f + w_cf * c_{t-1})
        g = tanh(a_g);  c_t = f * c_{t-1} + i * g;  o = sigmoid(a_o + w_co * c_t)
        tc = tanh(c_t)  or  tanh(LN(c_t) * ln_cw + ln_cb)               # (B, H)
        hr = o * tc                                                     # (B, H)
        h_t = hr @ w_hr.T                                               # (B, P), else hr

    where ``xp = x @ W_ih.T + b_ih + b_hh``, or with layer norm ``xw = x @ W_ih.T`` and
    ``bias = b_ih + b_hh`` (the norms are per row, so the loop applies them in cache).
    ``xp`` is a temporary of :func:`run`'s that the kernel overwrites with what the
    backward needs (the gates, or the normalised ``xw``) instead of allocating fresh
    memory, so it is marked dirty and returned as a fourth output, never used.

    Backward: the C++ loop walks t = T..1 carrying ``dh`` and ``dc`` and returns
    ``d xp`` (``d xw``) of every step; then, one product over all T·B rows each,
    ``dw_hh = dghh^T @ hin`` and ``dw_hr = dhp^T @ hr`` (``dghh``: d of the product,
    ``dhp``: d of each projected output). The peephole and layer-norm parameters' sums
    over (T, B), e.g. ``dw_ci = sum(d a_i * c_{t-1})``, are added up inside the loop.
    """

    @staticmethod
    def forward(
        ctx, xp, h0, c0, w_hh, w_hr, w_ci, w_cf, w_co, ln_ih, bias, ln_hh, ln_cw, ln_cb, eps,
        valid, mask,
    ):  # fmt: skip
        ctx.set_materialize_grads(False)  # no zero gradients for unused outputs
        y, h_last, c_last, *saved = torch.ops.rnnkit_fused.lstm_forward(
            xp, h0, c0, w_hh, w_hr, w_ci, w_cf, w_co, ln_ih, bias, ln_hh, ln_cw, ln_cb, eps,
            valid, mask,
        )  # fmt: skip
        ctx.mark_dirty(xp)
        # saved: c_all, hin, hr, ghat, stats (absent ones None).
        ctx.save_for_backward(
            c0, xp, *saved, w_hh, w_hr, w_ci, w_cf, w_co, ln_ih, bias, ln_hh, ln_cw, ln_cb,
            valid, mask,
        )  # fmt: skip
        return y, h_last, c_last, xp

    @staticmethod
    def backward(ctx, dy, dh_last, dc_last, _):  # _: for xp, which nothing reads
        saved = ctx.saved_tensors  # c0, xp, c_all, hin, ...: lstm_backward's order
        c0, xp, hin = saved[0], saved[1], saved[3]
        T, B, H, R = xp.shape[0], xp.shape[1], c0.shape[-1], hin.shape[-1]
        zeros = xp.new_zeros
        dy = zeros(T, B, R) if dy is None else dy
        dh_last = zeros(B, R) if dh_last is None else dh_last
        dc_last = zeros(B, H) if dc_last is None else dc_last
        need = ctx.needs_input_grad
        dxp, dh0, dc0, dw_hh, dw_hr, *sums = torch.ops.rnnkit_fused.lstm_backward(
            dy, dh_last, dc_last, *saved, need[3], need[4]
        )
        dw_ci, dw_cf, dw_co, dln_ih, dbias, dln_hh, dln_cw, dln_cb = sums
        # (with layer norm and no bias the kernel sums for a zero bias: not an input)
        return (
            dxp, dh0, dc0, dw_hh, dw_hr, dw_ci, dw_cf, dw_co,
            dln_ih, dbias if need[9] else None, dln_hh, dln_cw, dln_cb, None, None, None,
        )  # fmt: skip


def supports(cell) -> bool:
    return type(cell) is LSTMCell


def run(cell: LSTMCell, x: Tensor, state, valid: Tensor | None, mask: Tensor | None):
    """Outputs ``(T, B, R)`` and final ``(h, c)`` of ``cell`` over time-major ``x``.

    The input side of every step is one product over all T·B rows, before the
    recurrence: ``xp = x @ weight_ih.T + bias_ih + bias_hh`` (T, B, 4H); with layer
    norm only ``xw = x @ weight_ih.T``, normalised inside the loop.
    """
    bias = cell.bias_ih + cell.bias_hh if cell.bias else None
    h0, c0 = state
    if cell.layer_norm:
        xw = InputSide.apply(x, cell.weight_ih, None)  # (T, B, 4H)
        ln = (cell.ln_ih_weight, bias, cell.ln_hh_weight, cell.ln_c_weight, cell.ln_c_bias)
        y, h, c, _ = LSTMFunction.apply(
            xw, h0, c0, cell.weight_hh, cell.weight_hr,
            cell.weight_ci, cell.weight_cf, cell.weight_co, *ln, cell.ln_eps, valid, mask,
        )  # fmt: skip
    else:
        xp = InputSide.apply(x, cell.weight_ih, bias)  # (T, B, 4H)
        y, h, c, _ = LSTMFunction.apply(
            xp, h0, c0, cell.weight_hh, cell.weight_hr,
            cell.weight_ci, cell.weight_cf, cell.weight_co, None, None, None, None, None,
            cell.ln_eps, valid, mask,
        )  # fmt: skip
    return y, (h, c)

"""The Elman and leaky-integrator recurrences on Triton."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.cells.elman import ElmanCell
from rnnkit.cells.leaky import LeakyCell
from rnnkit.engines.triton import elman_kernels as K
from rnnkit.engines.triton.launch import acc_dtype, dtype_constants, run_steps
from rnnkit.engines.triton.options import KernelOptions, final_rows, int_lengths, step_inputs
from rnnkit.engines.triton.plan import next_pow2

ACTIVATIONS = {"tanh": 0, "relu": 1, "sigmoid": 2}  # the kernels' ACT codes


class ElmanFunction(torch.autograd.Function):
    r"""The whole recurrence of an Elman / leaky layer in one autograd node, two launches.

    Forward (``elman_forward_kernel``, one launch for all T steps)::

        a = xp_t + hin_t @ w_hh.T;  f = act(a);  h_t = alpha * hin_t + (1 - alpha) * f

    (``h_t = f`` without ``alpha``). Backward (``elman_backward_kernel``, one launch
    walking t = T-1..0 carrying ``dh``) returns ``da`` (T, B, H), which is ``d xp``;
    then ``dw_hh = da^T @ hin`` is one product over all T·B rows and, for a learned
    ``alpha``, ``dalpha = sum(d_t * (hin_t - f_t))`` with ``d_t`` the total ``d h_t``.
    """

    @staticmethod
    def forward(ctx, xp, h0, w_hh, alpha, act: int, lengths, mask, opts: KernelOptions):
        ctx.set_materialize_grads(False)
        T, B, H = xp.shape
        dt = xp.dtype
        plan = opts.plan(1, H, H, B, dt)
        hs = xp.new_empty(T + 1, B, H)  # hs[0] = h0, hs[t+1] = y_t
        hs[0] = h0
        fs = xp.new_empty(T, B, H) if alpha is not None else opts.dummy(xp)
        args = [
            xp.contiguous(), hs, fs, w_hh.to(dt).contiguous(), opts.opt(alpha, xp),
            opts.opt(lengths, xp), opts.opt(mask, xp), B, H,
        ]  # fmt: skip
        consts = {
            "ACT": act, "ALPHA": alpha is not None, "HAS_LEN": lengths is not None,
            "HAS_MASK": mask is not None, **dtype_constants(dt, K.elman_forward_kernel),
        }  # fmt: skip
        fwd = {"RP": max(opts.min_k, next_pow2(H)), **consts}
        run_steps(K.elman_forward_kernel, plan, args, T, 1, False, **fwd)
        ctx.save_for_backward(hs, fs if alpha is not None else None, w_hh, alpha, lengths, mask)
        ctx.opts, ctx.plan, ctx.consts = opts, plan, consts
        return hs[1:], final_rows(hs, lengths)

    @staticmethod
    def backward(ctx, dy, dh_last):
        hs, fs, w_hh, alpha, lengths, mask = ctx.saved_tensors
        opts, plan = ctx.opts, ctx.plan
        T, B, H = hs.shape
        T -= 1
        dt, acc = hs.dtype, acc_dtype(hs.dtype)
        need = ctx.needs_input_grad
        dy = hs.new_zeros(T, B, H) if dy is None else dy.to(dt).contiguous()
        dh = hs.new_zeros(B, H, dtype=acc) if dh_last is None else dh_last.to(acc).clone()
        da = hs.new_empty(T, B, H)
        need_total = alpha is not None and need[3]
        dtotal = hs.new_empty(T, B, H) if need_total else opts.dummy(hs)
        args = [
            dy, dh, da, dtotal, hs, opts.opt(fs, hs), w_hh.to(dt).contiguous(),
            opts.opt(alpha, hs), opts.opt(lengths, hs), opts.opt(mask, hs), B, H,
        ]  # fmt: skip
        gp = max(opts.min_k, next_pow2(H))
        run_steps(K.elman_backward_kernel, plan.backward(), args, T, 2, True, GP=gp,
                  NEED_TOTAL=need_total, **ctx.consts)  # fmt: skip

        hin = step_inputs(hs, mask)  # (T, B, H)
        dw_hh = dalpha = None
        if need[2]:
            dw_hh = (da.reshape(T * B, H).T @ hin.reshape(T * B, H)).to(w_hh.dtype)  # (H, H)
        if need_total:
            dalpha = (dtotal.to(acc) * (hin.to(acc) - fs.to(acc))).sum((0, 1)).to(alpha.dtype)
        dh0 = dh if need[1] else None
        return da, dh0, dw_hh, dalpha, None, None, None, None


def run(cell: ElmanCell, x: Tensor, state, lengths: Tensor | None, mask, opts: KernelOptions):
    """Outputs ``(T, B, H)`` and final ``(h,)`` of ``cell`` over time-major ``x``; the
    input side ``xp = x @ weight_ih.T + bias_ih + bias_hh`` is one product before."""
    dt = x.dtype
    bias = (cell.bias_ih + cell.bias_hh).to(dt) if cell.bias else None
    xp = F.linear(x, cell.weight_ih.to(dt), bias)  # (T, B, H): every step at once
    alpha = cell.alpha_value if isinstance(cell, LeakyCell) else None
    act = ACTIVATIONS[cell.nonlinearity]
    y, h = ElmanFunction.apply(
        xp, state[0], cell.weight_hh, alpha, act, int_lengths(lengths, x), mask, opts
    )
    return y, (h,)

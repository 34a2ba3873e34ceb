"""The GRU recurrence on Triton, reset gate after (PyTorch, cuDNN) or before (Cho)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.cells.gru import GRUCell
from rnnkit.engines.triton import gru_kernels as K
from rnnkit.engines.triton.launch import acc_dtype, dtype_constants, run_steps
from rnnkit.engines.triton.options import KernelOptions, final_rows, int_lengths, step_inputs
from rnnkit.engines.triton.plan import next_pow2


class GRUFunction(torch.autograd.Function):
    r"""The whole recurrence of a GRU layer in one autograd node, two kernel launches.

    Forward (``gru_forward_kernel``, one launch for all T steps; the step is in
    :mod:`rnnkit.engines.triton.gru_kernels`)::

        xp (T, B, 3H) -> y (T, B, H), the final h, and for the backward the gates
        act (T, B, 4H) = [r, z, n, gh[n]] and, reset before, q = r * hin (T, B, H)

    Backward (``gru_backward_kernel``, one launch walking t = T-1..0 carrying ``dh``)
    returns ``da = [dr, dz, dn]`` (T, B, 3H), which is ``d xp``, and with the reset gate
    after ``dgh``, the gradient of the product; then, one product over all T·B rows per
    block of rows of ``w_hh``::

        after:   dw_hh = dgh^T @ hin;  db_hh = sum(dgh)       (dgh = [dr, dz, dn r])
        before:  dw_hh[r, z] = da[r, z]^T @ hin;  dw_hh[n] = da[n]^T @ q
    """

    @staticmethod
    def forward(ctx, xp, h0, w_hh, b_hh, before: bool, lengths, mask, opts: KernelOptions):
        ctx.set_materialize_grads(False)
        T, B, G = xp.shape
        H = G // 3
        dt = xp.dtype
        plan = opts.plan(4, H, H, B, dt)
        hs = xp.new_empty(T + 1, B, H)  # hs[0] = h0, hs[t+1] = y_t
        hs[0] = h0
        act = xp.new_empty(T, B, 4 * H)
        q = xp.new_empty(T, B, H) if before else opts.dummy(xp)
        args = [
            xp.contiguous(), hs, act, q, w_hh.to(dt).contiguous(), opts.opt(b_hh, xp),
            opts.opt(lengths, xp), opts.opt(mask, xp), B, H,
        ]  # fmt: skip
        consts = {
            "BEFORE": before, "HAS_LEN": lengths is not None, "HAS_MASK": mask is not None,
            **dtype_constants(dt, K.gru_forward_kernel),
        }  # fmt: skip
        fwd = {"RP": max(opts.min_k, next_pow2(H)), "HAS_BIAS": b_hh is not None, **consts}
        run_steps(K.gru_forward_kernel, plan, args, T, 2 if before else 1, False, **fwd)
        ctx.save_for_backward(hs, act, q if before else None, w_hh, b_hh, lengths, mask)
        ctx.opts, ctx.plan, ctx.consts, ctx.before = opts, plan, consts, before
        return hs[1:], final_rows(hs, lengths)

    @staticmethod
    def backward(ctx, dy, dh_last):
        hs, act, q, w_hh, b_hh, lengths, mask = ctx.saved_tensors
        opts, plan, before = ctx.opts, ctx.plan, ctx.before
        T, B, H = hs.shape[0] - 1, hs.shape[1], hs.shape[2]
        G, dt, acc = 3 * H, hs.dtype, acc_dtype(hs.dtype)
        dy = hs.new_zeros(T, B, H) if dy is None else dy.to(dt).contiguous()
        dh = hs.new_zeros(B, H, dtype=acc) if dh_last is None else dh_last.to(acc).clone()
        da = hs.new_empty(T, B, G)
        dgh = opts.dummy(hs) if before else hs.new_empty(T, B, G)
        args = [
            dy, dh, da, dgh, act, opts.opt(q, hs), hs, w_hh.to(dt).contiguous(),
            opts.opt(lengths, hs), opts.opt(mask, hs), B, H,
        ]  # fmt: skip
        gp = max(opts.min_k, next_pow2(2 * H if before else G))
        run_steps(K.gru_backward_kernel, plan.backward(), args, T, 3 if before else 2, True, GP=gp,
                  **ctx.consts)  # fmt: skip

        need = ctx.needs_input_grad
        rows = T * B
        dw_hh = db_hh = None
        if need[2]:
            hin = step_inputs(hs, mask).reshape(rows, H)
            if before:  # the n rows multiply q = r * hin, the r, z rows hin
                drz, dn = da.reshape(rows, G).split([2 * H, H], dim=1)
                dw_hh = torch.cat([drz.T @ hin, dn.T @ q.reshape(rows, H)])
            else:
                dw_hh = dgh.reshape(rows, G).T @ hin  # (3H, H)
            dw_hh = dw_hh.to(w_hh.dtype)
        if b_hh is not None and need[3]:
            db_hh = dgh.reshape(rows, G).sum(0, dtype=acc).to(b_hh.dtype)  # (3H,)
        dh0 = dh if need[1] else None
        return da, dh0, dw_hh, db_hh, None, None, None, None


def run(cell: GRUCell, x: Tensor, state, lengths: Tensor | None, mask, opts: KernelOptions):
    """Outputs ``(T, B, H)`` and final ``(h,)`` of ``cell`` over time-major ``x``.

    The input side of every step is one product over all T·B rows before the kernel:
    ``xp = x @ weight_ih.T + bias_ih`` (T, B, 3H), plus ``bias_hh`` with the reset gate
    before (where every part of ``bias_hh`` adds outside ``r``).
    """
    dt = x.dtype
    before = cell.reset == "before"
    bias = None
    if cell.bias:
        bias = (cell.bias_ih + cell.bias_hh if before else cell.bias_ih).to(dt)
    xp = F.linear(x, cell.weight_ih.to(dt), bias)  # (T, B, 3H): every step at once
    b_hh = cell.bias_hh if cell.bias and not before else None
    y, h = GRUFunction.apply(
        xp, state[0], cell.weight_hh, b_hh, before, int_lengths(lengths, x), mask, opts
    )
    return y, (h,)

"""The LSTM recurrence on Triton: peepholes and layer norm (no projection)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.cells.lstm import LSTMCell
from rnnkit.engines.triton import lstm_kernels as K
from rnnkit.engines.triton.launch import acc_dtype, dtype_constants, run_steps
from rnnkit.engines.triton.options import KernelOptions, final_rows, int_lengths, step_inputs
from rnnkit.engines.triton.plan import next_pow2


class LSTMFunction(torch.autograd.Function):
    r"""The whole recurrence of an LSTM layer in one autograd node, two kernel launches.

    Forward (``lstm_forward_kernel``, one launch for all T steps; see
    :mod:`rnnkit.engines.triton.lstm_kernels` for the step)::

        xp (T, B, 4H) -> y (T, B, H), the final (h, c), and for the backward the gates
        act (T, B, 4H), the carried c of every step cs (T+1, B, H) and with layer norm
        ghat (T, B, 4H) and the row statistics (T, 3, B)

    Backward (``lstm_backward_kernel``, one launch walking t = T-1..0 carrying ``dh`` and
    ``dc``) returns ``da`` (T, B, 4H), the gradient of every step's gate pre-activations,
    which is ``d xp``; then, over all T·B rows at once::

        dw_hh  = dghh^T @ hin                   (dghh = da without layer norm)
        dw_ci  = sum(da_i * c_{t-1});  dw_cf = sum(da_f * c_{t-1});  dw_co = sum(da_o * c_t)
        dln_hh = sum(da * ghat);  dln_cw = sum(du * chat);  dln_cb = sum(du)
    """

    @staticmethod
    def forward(ctx, xp, h0, c0, w_hh, peep, ln_hh, ln_c, eps, lengths, mask, opts: KernelOptions):
        ctx.set_materialize_grads(False)
        T, B, G = xp.shape
        H = G // 4
        dt, acc = xp.dtype, acc_dtype(xp.dtype)
        ln = ln_hh is not None
        plan = opts.plan(4, H, H, B, dt)
        hs = xp.new_empty(T + 1, B, H)  # hs[0] = h0, hs[t+1] = y_t
        hs[0] = h0
        cs = xp.new_empty(T + 1, B, H, dtype=acc)  # the carried cell state
        cs[0] = c0
        act = xp.new_empty(T, B, G)
        ghat = xp.new_empty(T, B, G) if ln else opts.dummy(xp)
        stats = xp.new_empty(T, 3, B, dtype=acc) if ln else opts.dummy(xp)
        gh = xp.new_empty(B, G, dtype=acc) if ln else opts.dummy(xp)
        part = xp.new_empty(2, plan.n_h, B, 2, dtype=acc) if ln else opts.dummy(xp)
        args = [
            xp.contiguous(), hs, cs, act, ghat, stats, gh, part, w_hh.to(dt).contiguous(),
            opts.opt(peep, xp), opts.opt(ln_hh, xp), opts.opt(ln_c, xp),
            opts.opt(lengths, xp), opts.opt(mask, xp), B, H, eps,
        ]  # fmt: skip
        consts = {
            "RP": max(opts.min_k, next_pow2(H)), "NHP": next_pow2(plan.n_h),
            "PEEP": peep is not None, "LN": ln, "HAS_LEN": lengths is not None,
            "HAS_MASK": mask is not None, **dtype_constants(dt, K.lstm_forward_kernel),
        }  # fmt: skip
        run_steps(K.lstm_forward_kernel, plan, args, T, 3 if ln else 1, False, **consts)
        ctx.save_for_backward(hs, cs, act, ghat, stats, w_hh, peep, ln_hh, ln_c, lengths, mask)
        ctx.opts, ctx.plan, ctx.consts = opts, plan, consts
        h_last, c_last = final_rows(hs, lengths), final_rows(cs, lengths).to(c0.dtype)
        return hs[1:], h_last, c_last

    @staticmethod
    def backward(ctx, dy, dh_last, dc_last):
        hs, cs, act, ghat, stats, w_hh, peep, ln_hh, ln_c, lengths, mask = ctx.saved_tensors
        opts, plan, consts = ctx.opts, ctx.plan, ctx.consts
        T, B, H = hs.shape[0] - 1, hs.shape[1], hs.shape[2]
        G, dt, acc = 4 * H, hs.dtype, cs.dtype
        ln = ln_hh is not None
        dy = hs.new_zeros(T, B, H) if dy is None else dy.to(dt).contiguous()
        dh = hs.new_zeros(B, H, dtype=acc) if dh_last is None else dh_last.to(acc).clone()
        dc = hs.new_zeros(B, H, dtype=acc) if dc_last is None else dc_last.to(acc).clone()
        da = hs.new_empty(T, B, G)
        dghh = hs.new_empty(T, B, G) if ln else da
        du = hs.new_empty(T, B, H) if ln else opts.dummy(hs)
        part = hs.new_empty(2, plan.n_h, B, 2, dtype=acc) if ln else opts.dummy(hs)
        args = [
            dy, dh, dc, da, dghh, du, part, act, cs, ghat, stats, w_hh.to(dt).contiguous(),
            opts.opt(peep, hs), opts.opt(ln_hh, hs), opts.opt(ln_c, hs),
            opts.opt(lengths, hs), opts.opt(mask, hs), B, H,
        ]  # fmt: skip
        bwd = {key: consts[key] for key in consts if key != "RP"}
        bwd["GP"] = max(opts.min_k, next_pow2(G))
        run_steps(K.lstm_backward_kernel, plan.backward(), args, T, 4 if ln else 2, True, **bwd)

        need = ctx.needs_input_grad
        hin = step_inputs(hs, mask)  # (T, B, H)
        rows = T * B
        dw_hh = dpeep = dln_hh = dln_c = None
        if need[3]:
            dw_hh = (dghh.reshape(rows, G).T @ hin.reshape(rows, H)).to(w_hh.dtype)  # (4H, H)
        if peep is not None and need[4]:
            d_i, d_f, _, d_o = da.to(acc).chunk(4, dim=2)  # (T, B, H) each
            c_prev, c = cs[:-1], cs[1:]
            dpeep = torch.stack(
                [(d_i * c_prev).sum((0, 1)), (d_f * c_prev).sum((0, 1)), (d_o * c).sum((0, 1))]
            ).to(peep.dtype)  # (3, H)
        if ln and need[5]:
            dln_hh = (da.to(acc) * ghat.to(acc)).sum((0, 1)).to(ln_hh.dtype)  # (4H,)
        if ln and need[6]:
            chat = (cs[1:] - stats[:, 1, :, None]) * stats[:, 2, :, None]  # (T, B, H)
            du = du.to(acc)
            dln_c = torch.stack([(du * chat).sum((0, 1)), du.sum((0, 1))]).to(ln_c.dtype)
        dh0 = dh.to(hs.dtype) if need[1] else None
        dc0 = dc if need[2] else None
        return da, dh0, dc0, dw_hh, dpeep, dln_hh, dln_c, None, None, None, None


def run(cell: LSTMCell, x: Tensor, state, lengths: Tensor | None, mask, opts: KernelOptions):
    """Outputs ``(T, B, H)`` and the final ``(h, c)`` of ``cell`` over time-major ``x``.

    The input side of every step is one product over all T·B rows before the kernel:
    ``xp = x @ weight_ih.T + bias_ih + bias_hh`` (T, B, 4H), or with layer norm
    ``xp = LN(x @ weight_ih.T) * ln_ih_weight + bias_ih + bias_hh`` (autograd does its
    backward: one product for ``dx``, one for ``d weight_ih``).
    """
    dt = x.dtype
    bias = (cell.bias_ih + cell.bias_hh).to(dt) if cell.bias else None
    h0, c0 = state
    if cell.layer_norm:
        G = 4 * cell.hidden_size
        xw = F.linear(x, cell.weight_ih.to(dt))  # (T, B, 4H)
        xp = F.layer_norm(xw, (G,), cell.ln_ih_weight.to(dt), bias, cell.ln_eps)
        ln_hh = cell.ln_hh_weight
        ln_c = torch.stack([cell.ln_c_weight, cell.ln_c_bias])  # (2, H)
    else:
        xp = F.linear(x, cell.weight_ih.to(dt), bias)  # (T, B, 4H): every step at once
        ln_hh = ln_c = None
    peep = None
    if cell.peephole:
        peep = torch.stack([cell.weight_ci, cell.weight_cf, cell.weight_co])  # (3, H)
    y, h, c = LSTMFunction.apply(
        xp, h0, c0, cell.weight_hh, peep, ln_hh, ln_c, cell.ln_eps, int_lengths(lengths, x),
        mask, opts,
    )  # fmt: skip
    return y, (h, c)

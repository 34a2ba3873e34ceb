"""Triton kernels of the Elman and leaky-integrator recurrences.

Program ``(g, k)`` owns units ``units = k·BH + jj`` and the batch chunks
``g, g + n_groups, ...``; see :mod:`rnnkit.engines.triton.plan`. Per step, with
``hin = hs[t] * mask`` (B, H) and ``xp = x @ W_ih.T + b_ih + b_hh``::

    a = xp_t + hin @ w_hh.T;  f = act(a)            (act: tanh 0, relu 1, sigmoid 2)
    h = alpha * hin + (1 - alpha) * f               (leaky, with ALPHA; else h = f)

A row past its sequence's end emits ``h = 0`` (the next product reads that zero and the
row's results are thrown away), keeps its state and gets zero gradients.
"""

from __future__ import annotations

import triton
import triton.language as tl

from rnnkit.engines.triton.common import sigmoid, sync, tanh


@triton.jit
def _valid(lengths, rows, r_ok, t, HAS_LEN: tl.constexpr):
    """(BB,) whether step t is inside each row's sequence."""
    if HAS_LEN:
        return r_ok & (t < tl.load(lengths + rows, mask=r_ok, other=0))
    return r_ok


@triton.jit
def _act(a, ACT: tl.constexpr):
    if ACT == 0:
        return tanh(a)
    if ACT == 1:
        return tl.maximum(a, 0.0)
    return sigmoid(a)


@triton.jit
def _act_grad(f, ACT: tl.constexpr):
    """``act'(a)`` from ``f = act(a)``."""
    if ACT == 0:
        return 1.0 - f * f
    if ACT == 1:
        return tl.where(f > 0.0, 1.0, 0.0)
    return f * (1.0 - f)


@triton.jit
def elman_forward_kernel(
    xp,  # (T, B, H) input side of every step
    hs,  # (T+1, B, H) hs[0] = h0; the kernel writes hs[t+1] = y_t
    fs,  # (T, B, H) out, leaky: f = act(a) of every step
    w_hh,  # (H, H)
    alpha,  # (H,) leaky
    lengths,  # (B,) int32
    mask,  # (B, H) recurrent dropout
    B, H, counter, t_start, n_steps, n_groups,
    BB: tl.constexpr, BH: tl.constexpr, RP: tl.constexpr, ACT: tl.constexpr,
    ALPHA: tl.constexpr, HAS_LEN: tl.constexpr, HAS_MASK: tl.constexpr, PHASE: tl.constexpr,
    NPH: tl.constexpr, SYNC: tl.constexpr, DOT: tl.constexpr, ACC: tl.constexpr,
    PREC: tl.constexpr,
):  # fmt: skip
    g_id = tl.program_id(0)
    k = tl.program_id(1)
    n_h = tl.num_programs(1)
    units = k * BH + tl.arange(0, BH)
    u_ok = units < H
    kr = tl.arange(0, RP)
    # The program's rows of W_hh, transposed (RP, BH), held for every step.
    w_at = w_hh + units[None, :] * H + kr[:, None]
    w = tl.load(w_at, mask=(kr < H)[:, None] & u_ok[None, :], other=0.0).to(DOT)
    keep = 0.0
    if ALPHA:
        keep = tl.load(alpha + units, mask=u_ok, other=0.0).to(ACC)[None, :]
    n_chunks = tl.cdiv(B, BB)
    for s in range(n_steps):
        t = (t_start + s).to(tl.int64)
        for chunk in range(g_id, n_chunks, n_groups):
            rows = chunk * BB + tl.arange(0, BB)
            r_ok = rows < B
            ok = r_ok[:, None] & u_ok[None, :]
            h_ok = r_ok[:, None] & (kr < H)[None, :]
            all_at = rows[:, None] * H + kr[None, :]
            hin = tl.load(hs + t * B * H + all_at, mask=h_ok, other=0.0, cache_modifier=".cg")
            if HAS_MASK:
                hin = hin * tl.load(mask + all_at, mask=h_ok, other=0.0)
            prod = tl.dot(hin.to(DOT), w, input_precision=PREC, out_dtype=ACC)  # (BB, BH)
            at = rows[:, None] * H + units[None, :]
            f = _act(tl.load(xp + t * B * H + at, mask=ok, other=0.0).to(ACC) + prod, ACT)
            h = f
            if ALPHA:
                own = tl.load(hs + t * B * H + at, mask=ok, other=0.0).to(ACC)
                if HAS_MASK:
                    own = own * tl.load(mask + at, mask=ok, other=0.0).to(ACC)
                h = keep * own + (1.0 - keep) * f
                tl.store(fs + t * B * H + at, f.to(fs.dtype.element_ty), mask=ok)
            v = _valid(lengths, rows, r_ok, t, HAS_LEN)[:, None]
            tl.store(hs + (t + 1) * B * H + at, tl.where(v, h, 0.0).to(hs.dtype.element_ty),
                     mask=ok)  # fmt: skip
        sync(counter + g_id, s + 1, n_h, SYNC)


@triton.jit
def elman_backward_kernel(
    dy,  # (T, B, H) gradient of the outputs
    dh,  # (B, H) ACC: d h_T in, d h_0 out (the carried gradient of h)
    da,  # (T, B, H) out: d xp, the gradient of every step's pre-activation a
    dtotal,  # (T, B, H) out, learned alpha: d h_t (all paths), zero past the end
    hs, fs, w_hh, alpha, lengths, mask,  # as the forward's
    B, H, counter, t_start, n_steps, n_groups,
    BB: tl.constexpr, BH: tl.constexpr, GP: tl.constexpr, ACT: tl.constexpr,
    ALPHA: tl.constexpr, NEED_TOTAL: tl.constexpr, HAS_LEN: tl.constexpr,
    HAS_MASK: tl.constexpr, PHASE: tl.constexpr, NPH: tl.constexpr, SYNC: tl.constexpr,
    DOT: tl.constexpr, ACC: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """BPTT from t = t_start down, carrying ``dh``::

        d  = dh + dy_t;  da = (1 - alpha) d act'(a)     (d act'(a) without alpha)
        dh = (alpha d + da @ w_hh) * mask

    The product needs every unit's ``da``: program k computes its own units' columns
    from ``w_hh[:, units]`` (GP, BH), held for every step.
    """
    g_id = tl.program_id(0)
    k = tl.program_id(1)
    n_h = tl.num_programs(1)
    units = k * BH + tl.arange(0, BH)
    u_ok = units < H
    kc = tl.arange(0, GP)
    w_at = w_hh + kc[:, None] * H + units[None, :]
    w = tl.load(w_at, mask=(kc < H)[:, None] & u_ok[None, :], other=0.0).to(DOT)
    keep = 0.0
    if ALPHA:
        keep = tl.load(alpha + units, mask=u_ok, other=0.0).to(ACC)[None, :]
    n_chunks = tl.cdiv(B, BB)
    done = 0
    for s in range(n_steps):
        t = (t_start - s).to(tl.int64)
        if (PHASE == 0) | (PHASE == 1):
            for chunk in range(g_id, n_chunks, n_groups):
                rows = chunk * BB + tl.arange(0, BB)
                r_ok = rows < B
                ok = r_ok[:, None] & u_ok[None, :]
                v = _valid(lengths, rows, r_ok, t, HAS_LEN)[:, None]
                at = rows[:, None] * H + units[None, :]
                d = tl.load(dh + at, mask=ok, other=0.0)
                d += tl.load(dy + t * B * H + at, mask=ok, other=0.0).to(ACC)
                d = tl.where(v, d, 0.0)
                if ALPHA:
                    f = tl.load(fs + t * B * H + at, mask=ok, other=0.0).to(ACC)
                    d_a = (1.0 - keep) * d * _act_grad(f, ACT)
                    tl.store(dh + at, keep * d, mask=ok & v)  # the direct path
                    if NEED_TOTAL:
                        tl.store(dtotal + t * B * H + at, d.to(dtotal.dtype.element_ty), mask=ok)
                else:
                    f = tl.load(hs + (t + 1) * B * H + at, mask=ok, other=0.0).to(ACC)
                    d_a = d * _act_grad(f, ACT)
                    tl.store(dh + at, tl.zeros_like(d), mask=ok & v)
                tl.store(da + t * B * H + at, d_a.to(da.dtype.element_ty), mask=ok)
            done += 1
            sync(counter + g_id, done, n_h, SYNC)
        if (PHASE == 0) | (PHASE == 2):
            for chunk in range(g_id, n_chunks, n_groups):
                rows = chunk * BB + tl.arange(0, BB)
                r_ok = rows < B
                ok = r_ok[:, None] & u_ok[None, :]
                v = _valid(lengths, rows, r_ok, t, HAS_LEN)[:, None]
                a_at = da + t * B * H + rows[:, None] * H + kc[None, :]
                a = tl.load(a_at, mask=r_ok[:, None] & (kc < H)[None, :], other=0.0,
                            cache_modifier=".cg")  # fmt: skip
                d_hin = tl.dot(a.to(DOT), w, input_precision=PREC, out_dtype=ACC)  # (BB, BH)
                at = rows[:, None] * H + units[None, :]
                d_hin += tl.load(dh + at, mask=ok, other=0.0)
                if HAS_MASK:
                    d_hin = d_hin * tl.load(mask + at, mask=ok, other=0.0).to(ACC)
                tl.store(dh + at, d_hin, mask=ok & v)
            # The next step reads only this program's own columns of dh.
            sync(counter + g_id, done, n_h, False)

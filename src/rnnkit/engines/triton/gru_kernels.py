"""Triton kernels of the GRU recurrence, reset gate after or before the product.

Program ``(g, k)`` owns units ``units = k·BH + jj`` (every gate of each) and the batch
chunks ``g, g + n_groups, ...``; see :mod:`rnnkit.engines.triton.plan`. Per step, with
``hin = hs[t] * mask`` (B, H)::

    reset="after"  (xp = x @ W_ih.T + b_ih; b_hh stays inside, r multiplies its n part)
        gh = hin @ w_hh.T + b_hh;  r, z = sigmoid(xp[r, z] + gh[r, z])
        n  = tanh(xp[n] + r * gh[n])
    reset="before" (xp = x @ W_ih.T + b_ih + b_hh)
        r, z = sigmoid(xp[r, z] + hin @ w_hh[r, z].T);  q = r * hin
        n  = tanh(xp[n] + q @ w_hh[n].T)
    h = n + z * (hin - n)

A row past its sequence's end emits ``h = 0`` (the next product reads that zero and the
row's results are thrown away), keeps its state and gets zero gradients. Reset after
takes one phase per step forward and two backward; reset before, whose candidate
product needs every unit's ``q``, two forward and three backward.
"""

from __future__ import annotations

import triton
import triton.language as tl

from rnnkit.engines.triton.common import sigmoid, split2, split4, sync, tanh


@triton.jit
def _valid(lengths, rows, r_ok, t, HAS_LEN: tl.constexpr):
    """(BB,) whether step t is inside each row's sequence."""
    if HAS_LEN:
        return r_ok & (t < tl.load(lengths + rows, mask=r_ok, other=0))
    return r_ok


@triton.jit
def _own_hin(hs, mask, t, rows, units, ok, B, H, HAS_MASK: tl.constexpr, ACC: tl.constexpr):
    """This program's columns of ``hin_t = hs[t] * mask`` (BB, BH)."""
    at = rows[:, None] * H + units[None, :]
    hin = tl.load(hs + t * B * H + at, mask=ok, other=0.0).to(ACC)
    if HAS_MASK:
        hin = hin * tl.load(mask + at, mask=ok, other=0.0).to(ACC)
    return hin


@triton.jit
def _all_hin(hs, mask, t, rows, r_ok, kr, B, H, HAS_MASK: tl.constexpr):
    """Every column of ``hin_t = hs[t] * mask`` (BB, RP), the A operand of the product."""
    h_ok = r_ok[:, None] & (kr < H)[None, :]
    at = rows[:, None] * H + kr[None, :]
    hin = tl.load(hs + t * B * H + at, mask=h_ok, other=0.0, cache_modifier=".cg")
    if HAS_MASK:
        hin = hin * tl.load(mask + at, mask=h_ok, other=0.0)
    return hin


@triton.jit
def gru_forward_kernel(
    xp,  # (T, B, 3H) x @ W_ih.T + b_ih (reset after) or + b_ih + b_hh (reset before)
    hs,  # (T+1, B, H) hs[0] = h0; the kernel writes hs[t+1] = y_t
    act,  # (T, B, 4H) out: r, z, n and (reset after) gh[n], the n part of the product
    q,  # (T, B, H) out, reset before: r * hin
    w_hh,  # (3H, H)
    b_hh,  # (3H,) reset after
    lengths,  # (B,) int32
    mask,  # (B, H) recurrent dropout
    B, H, counter, t_start, n_steps, n_groups,
    BB: tl.constexpr, BH: tl.constexpr, RP: tl.constexpr, BEFORE: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_LEN: tl.constexpr, HAS_MASK: tl.constexpr,
    PHASE: tl.constexpr, NPH: tl.constexpr, SYNC: tl.constexpr, DOT: tl.constexpr,
    ACC: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    g_id = tl.program_id(0)
    k = tl.program_id(1)
    n_h = tl.num_programs(1)
    G = 3 * H
    units = k * BH + tl.arange(0, BH)
    u_ok = units < H
    kr = tl.arange(0, RP)
    k_ok = (kr < H)[:, None]
    # The program's rows of W_hh, transposed, held for every step. After: one tile,
    # column jj·4 + q is unit jj of gate q (q = 3 a zero pad). Before: the r, z rows
    # (column jj·2 + q) and the n rows apart, as n's product waits for every unit's q.
    if BEFORE:
        n2 = tl.arange(0, 2 * BH)
        u2 = k * BH + n2 // 2
        w_at = w_hh + ((n2 % 2) * H + u2)[None, :] * H + kr[:, None]
        w = tl.load(w_at, mask=k_ok & (u2 < H)[None, :], other=0.0).to(DOT)  # (RP, 2BH)
        w_at = w_hh + (2 * H + units)[None, :] * H + kr[:, None]
        w_n = tl.load(w_at, mask=k_ok & u_ok[None, :], other=0.0).to(DOT)  # (RP, BH)
    else:
        n4 = tl.arange(0, 4 * BH)
        u4 = k * BH + n4 // 4
        w_at = w_hh + ((n4 % 4) * H + u4)[None, :] * H + kr[:, None]
        w_ok = k_ok & ((u4 < H) & (n4 % 4 < 3))[None, :]
        w = tl.load(w_at, mask=w_ok, other=0.0).to(DOT)  # (RP, 4BH)
        w_n = w
    b_r, b_z, b_n = 0.0, 0.0, 0.0
    if HAS_BIAS:
        b_r = tl.load(b_hh + units, mask=u_ok, other=0.0).to(ACC)[None, :]
        b_z = tl.load(b_hh + H + units, mask=u_ok, other=0.0).to(ACC)[None, :]
        b_n = tl.load(b_hh + 2 * H + units, mask=u_ok, other=0.0).to(ACC)[None, :]
    n_chunks = tl.cdiv(B, BB)
    done = 0
    for s in range(n_steps):
        t = (t_start + s).to(tl.int64)
        xp_t = xp + t * B * G
        act_t = act + t * B * 4 * H
        if (PHASE == 0) | (PHASE == 1):
            for chunk in range(g_id, n_chunks, n_groups):
                rows = chunk * BB + tl.arange(0, BB)
                r_ok = rows < B
                ok = r_ok[:, None] & u_ok[None, :]
                hin = _all_hin(hs, mask, t, rows, r_ok, kr, B, H, HAS_MASK)
                prod = tl.dot(hin.to(DOT), w, input_precision=PREC, out_dtype=ACC)
                at = rows[:, None] * G + units[None, :]
                a_at = rows[:, None] * 4 * H + units[None, :]
                x_r = tl.load(xp_t + at, mask=ok, other=0.0).to(ACC)
                x_z = tl.load(xp_t + at + H, mask=ok, other=0.0).to(ACC)
                own = _own_hin(hs, mask, t, rows, units, ok, B, H, HAS_MASK, ACC)
                ty = act.dtype.element_ty
                if BEFORE:
                    p_r, p_z = split2(prod, BB, BH)
                    r = sigmoid(x_r + p_r)
                    tl.store(q + t * B * H + rows[:, None] * H + units[None, :],
                             (r * own).to(q.dtype.element_ty), mask=ok)  # fmt: skip
                    tl.store(act_t + a_at, r.to(ty), mask=ok)
                    tl.store(act_t + a_at + H, sigmoid(x_z + p_z).to(ty), mask=ok)
                else:
                    p_r, p_z, p_n, _ = split4(prod, BB, BH)
                    r = sigmoid(x_r + p_r + b_r)
                    z = sigmoid(x_z + p_z + b_z)
                    gh_n = p_n + b_n
                    n = tanh(tl.load(xp_t + at + 2 * H, mask=ok, other=0.0).to(ACC) + r * gh_n)
                    tl.store(act_t + a_at, r.to(ty), mask=ok)
                    tl.store(act_t + a_at + H, z.to(ty), mask=ok)
                    tl.store(act_t + a_at + 2 * H, n.to(ty), mask=ok)
                    tl.store(act_t + a_at + 3 * H, gh_n.to(ty), mask=ok)
                    v = _valid(lengths, rows, r_ok, t, HAS_LEN)[:, None]
                    h = tl.where(v, n + z * (own - n), 0.0)
                    h_at = hs + (t + 1) * B * H + rows[:, None] * H + units[None, :]
                    tl.store(h_at, h.to(hs.dtype.element_ty), mask=ok)
            done += 1
            sync(counter + g_id, done, n_h, SYNC)
        if BEFORE and ((PHASE == 0) | (PHASE == 2)):
            for chunk in range(g_id, n_chunks, n_groups):
                rows = chunk * BB + tl.arange(0, BB)
                r_ok = rows < B
                ok = r_ok[:, None] & u_ok[None, :]
                q_ok = r_ok[:, None] & (kr < H)[None, :]
                q_at = q + t * B * H + rows[:, None] * H + kr[None, :]
                q_all = tl.load(q_at, mask=q_ok, other=0.0, cache_modifier=".cg")  # (BB, RP)
                prod = tl.dot(q_all.to(DOT), w_n, input_precision=PREC, out_dtype=ACC)
                at = rows[:, None] * G + units[None, :]
                a_at = rows[:, None] * 4 * H + units[None, :]
                n = tanh(tl.load(xp_t + at + 2 * H, mask=ok, other=0.0).to(ACC) + prod)
                z = tl.load(act_t + a_at + H, mask=ok, other=0.0).to(ACC)
                tl.store(act_t + a_at + 2 * H, n.to(act.dtype.element_ty), mask=ok)
                own = _own_hin(hs, mask, t, rows, units, ok, B, H, HAS_MASK, ACC)
                v = _valid(lengths, rows, r_ok, t, HAS_LEN)[:, None]
                h = tl.where(v, n + z * (own - n), 0.0)
                h_at = hs + (t + 1) * B * H + rows[:, None] * H + units[None, :]
                tl.store(h_at, h.to(hs.dtype.element_ty), mask=ok)
            done += 1
            sync(counter + g_id, done, n_h, SYNC)


@triton.jit
def gru_backward_kernel(
    dy,  # (T, B, H) gradient of the outputs
    dh,  # (B, H) ACC: d h_T in, d h_0 out (the carried gradient of h)
    da,  # (T, B, 3H) out: d xp, the gradient of the input side [dr, dz, dn]
    dgh,  # (T, B, 3H) out, reset after: d gh = [dr, dz, dn * r], the product's gradient
    act, q, hs, w_hh, lengths, mask,  # as the forward's
    B, H, counter, t_start, n_steps, n_groups,
    BB: tl.constexpr, BH: tl.constexpr, GP: tl.constexpr, BEFORE: tl.constexpr,
    HAS_LEN: tl.constexpr, HAS_MASK: tl.constexpr, PHASE: tl.constexpr, NPH: tl.constexpr,
    SYNC: tl.constexpr, DOT: tl.constexpr, ACC: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """BPTT from t = t_start down, carrying ``dh``::

        d  = dh + dy_t;  dn = d (1 - z)(1 - n^2);  dz = d (hin - n) z (1 - z)
        after:   dr = dn gh[n] r (1 - r);  dh = (d z + [dr, dz, dn r] @ w_hh) * mask
        before:  dq = dn @ w_hh[n];  dr = dq hin r (1 - r)
                 dh = (d z + dq r + [dr, dz] @ w_hh[r, z]) * mask

    Each product needs every unit's gradients: program k computes its own units'
    columns from ``w_hh[:, units]``, held for every step (``GP``: the product depth).
    """
    g_id = tl.program_id(0)
    k = tl.program_id(1)
    n_h = tl.num_programs(1)
    G = 3 * H
    units = k * BH + tl.arange(0, BH)
    u_ok = units < H
    kc = tl.arange(0, GP)
    # Held columns of W_hh: after, all 3H rows; before, the 2H rows of r, z (w) and the
    # H rows of n (w_n).
    if BEFORE:
        w_at = w_hh + kc[:, None] * H + units[None, :]
        w = tl.load(w_at, mask=(kc < 2 * H)[:, None] & u_ok[None, :], other=0.0).to(DOT)
        w_at = w_hh + (2 * H + kc)[:, None] * H + units[None, :]
        w_n = tl.load(w_at, mask=(kc < H)[:, None] & u_ok[None, :], other=0.0).to(DOT)
    else:
        w_at = w_hh + kc[:, None] * H + units[None, :]
        w = tl.load(w_at, mask=(kc < G)[:, None] & u_ok[None, :], other=0.0).to(DOT)
        w_n = w
    n_chunks = tl.cdiv(B, BB)
    done = 0
    for s in range(n_steps):
        t = (t_start - s).to(tl.int64)
        act_t = act + t * B * 4 * H
        da_t = da + t * B * G
        if (PHASE == 0) | (PHASE == 1):
            for chunk in range(g_id, n_chunks, n_groups):
                rows = chunk * BB + tl.arange(0, BB)
                r_ok = rows < B
                ok = r_ok[:, None] & u_ok[None, :]
                v = _valid(lengths, rows, r_ok, t, HAS_LEN)[:, None]
                h_at = rows[:, None] * H + units[None, :]
                a_at = rows[:, None] * 4 * H + units[None, :]
                at = rows[:, None] * G + units[None, :]
                d = tl.load(dh + h_at, mask=ok, other=0.0)
                d += tl.load(dy + t * B * H + h_at, mask=ok, other=0.0).to(ACC)
                z = tl.load(act_t + a_at + H, mask=ok, other=0.0).to(ACC)
                n = tl.load(act_t + a_at + 2 * H, mask=ok, other=0.0).to(ACC)
                own = _own_hin(hs, mask, t, rows, units, ok, B, H, HAS_MASK, ACC)
                dn = tl.where(v, d * (1.0 - z) * (1.0 - n * n), 0.0)
                dz = tl.where(v, d * (own - n) * z * (1.0 - z), 0.0)
                ty = da.dtype.element_ty
                tl.store(da_t + at + H, dz.to(ty), mask=ok)
                tl.store(da_t + at + 2 * H, dn.to(ty), mask=ok)
                if not BEFORE:
                    r = tl.load(act_t + a_at, mask=ok, other=0.0).to(ACC)
                    gh_n = tl.load(act_t + a_at + 3 * H, mask=ok, other=0.0).to(ACC)
                    dr = (dn * gh_n * r * (1.0 - r)).to(ty)
                    tl.store(da_t + at, dr, mask=ok)
                    dgh_t = dgh + t * B * G + at
                    tl.store(dgh_t, dr, mask=ok)
                    tl.store(dgh_t + H, dz.to(ty), mask=ok)
                    tl.store(dgh_t + 2 * H, (dn * r).to(ty), mask=ok)
                tl.store(dh + h_at, d * z, mask=ok & v)  # the direct path, until the product
            done += 1
            sync(counter + g_id, done, n_h, SYNC)
        if BEFORE and ((PHASE == 0) | (PHASE == 2)):
            for chunk in range(g_id, n_chunks, n_groups):
                rows = chunk * BB + tl.arange(0, BB)
                r_ok = rows < B
                ok = r_ok[:, None] & u_ok[None, :]
                v = _valid(lengths, rows, r_ok, t, HAS_LEN)[:, None]
                dn_at = da_t + rows[:, None] * G + 2 * H + kc[None, :]
                dn_ok = r_ok[:, None] & (kc < H)[None, :]
                dn = tl.load(dn_at, mask=dn_ok, other=0.0, cache_modifier=".cg")  # (BB, GP)
                dq = tl.dot(dn.to(DOT), w_n, input_precision=PREC, out_dtype=ACC)  # (BB, BH)
                h_at = rows[:, None] * H + units[None, :]
                a_at = rows[:, None] * 4 * H + units[None, :]
                r = tl.load(act_t + a_at, mask=ok, other=0.0).to(ACC)
                own = _own_hin(hs, mask, t, rows, units, ok, B, H, HAS_MASK, ACC)
                dr = tl.where(v, dq * own * r * (1.0 - r), 0.0)
                tl.store(da_t + rows[:, None] * G + units[None, :], dr.to(da.dtype.element_ty),
                         mask=ok)  # fmt: skip
                direct = tl.load(dh + h_at, mask=ok, other=0.0) + dq * r
                tl.store(dh + h_at, direct, mask=ok & v)
            done += 1
            sync(counter + g_id, done, n_h, SYNC)
        if (PHASE == 0) | (PHASE == NPH):
            for chunk in range(g_id, n_chunks, n_groups):
                rows = chunk * BB + tl.arange(0, BB)
                r_ok = rows < B
                ok = r_ok[:, None] & u_ok[None, :]
                v = _valid(lengths, rows, r_ok, t, HAS_LEN)[:, None]
                # The product's gradient: [dr, dz] (before) or [dr, dz, dn r] (after).
                src = da if BEFORE else dgh
                width = 2 * H if BEFORE else G
                a_at = src + t * B * G + rows[:, None] * G + kc[None, :]
                a_ok = r_ok[:, None] & (kc < width)[None, :]
                a = tl.load(a_at, mask=a_ok, other=0.0, cache_modifier=".cg")  # (BB, GP)
                d_hin = tl.dot(a.to(DOT), w, input_precision=PREC, out_dtype=ACC)  # (BB, BH)
                h_at = rows[:, None] * H + units[None, :]
                d_hin += tl.load(dh + h_at, mask=ok, other=0.0)
                if HAS_MASK:
                    d_hin = d_hin * tl.load(mask + h_at, mask=ok, other=0.0).to(ACC)
                tl.store(dh + h_at, d_hin, mask=ok & v)
            # The next step reads only this program's own columns of dh.
            sync(counter + g_id, done, n_h, False)

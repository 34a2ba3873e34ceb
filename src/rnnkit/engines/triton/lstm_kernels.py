"""Triton kernels of the LSTM recurrence (peepholes, layer norm), forward and backward.

Program ``(g, k)`` owns units ``units = k·BH + jj`` (all four gates of each) and the
batch chunks ``g, g + n_groups, ...``; see :mod:`rnnkit.engines.triton.plan`. Per step,
with ``hin = hs[t] * mask`` (B, R) and ``G = 4H``::

    a   = xp_t + hin @ w_hh.T                                    # plain, peephole
    a   = xp_t + LN(hin @ w_hh.T) * ln_hh                        # layer norm
    i = sigmoid(a_i + w_ci * c_prev);  f = sigmoid(a_f + w_cf * c_prev);  g = tanh(a_g)
    c = f * c_prev + i * g;  o = sigmoid(a_o + w_co * c)
    h = o * tanh(c)   or   o * tanh(LN(c) * ln_cw + ln_cb)       # layer norm

(peephole terms only with ``PEEP``). The layer norm of the input side is the caller's:
``xp = LN(x @ W_ih.T) * ln_ih + b_ih + b_hh`` covers every step at once. A row past its
sequence's end keeps ``c``, emits ``h = 0`` (the next product reads that zero, and the
row's results are thrown away) and gets zero gradients.

Phases (each followed by a barrier when the units are split over programs):
forward 1 (plain: the whole step), with layer norm 1 the product and its moments,
2 the gates and ``c`` with the moments of ``c``, 3 ``h``; backward 1 the gate
gradients (layer norm: 1 through ``LN(c)``, 2 the gates, 3 through ``LN`` of the
product) and last ``dh_{t-1} = (d ghh @ w_hh) * mask``.
"""

from __future__ import annotations

import triton
import triton.language as tl

from rnnkit.engines.triton.common import (
    combine_moments,
    combine_sums,
    local_moments,
    sigmoid,
    split4,
    sync,
    tanh,
)


@triton.jit
def _cell(a_i, a_f, a_g, a_o, cp, w_ci, w_cf, w_co, PEEP: tl.constexpr):
    """Gates and new cell state from the pre-activations (BB, BH) each."""
    if PEEP:
        a_i = a_i + w_ci[None, :] * cp
        a_f = a_f + w_cf[None, :] * cp
    i = sigmoid(a_i)
    f = sigmoid(a_f)
    g = tanh(a_g)
    c = f * cp + i * g
    if PEEP:
        a_o = a_o + w_co[None, :] * c
    return i, f, g, sigmoid(a_o), c


@triton.jit
def _cell_grads(dcj, i, f, g, cp, w_ci, w_cf, PEEP: tl.constexpr):
    """From ``d c_t`` (all paths summed) to d a_i, d a_f, d a_g and ``d c_{t-1}``."""
    dgi = dcj * g * i * (1.0 - i)
    dgf = dcj * cp * f * (1.0 - f)
    dgg = dcj * i * (1.0 - g * g)
    dcp = dcj * f
    if PEEP:
        dcp = dcp + dgi * w_ci[None, :] + dgf * w_cf[None, :]
    return dgi, dgf, dgg, dcp


@triton.jit
def _load4(ptr, H, ok, ACC: tl.constexpr):
    """The four gate slices at ``ptr`` (offsets of gate 0; gate q is ``q·H`` further)."""
    a = tl.load(ptr, mask=ok, other=0.0).to(ACC)
    b = tl.load(ptr + H, mask=ok, other=0.0).to(ACC)
    c = tl.load(ptr + 2 * H, mask=ok, other=0.0).to(ACC)
    d = tl.load(ptr + 3 * H, mask=ok, other=0.0).to(ACC)
    return a, b, c, d


@triton.jit
def _store4(ptr, H, ok, a, b, c, d):
    ty = ptr.dtype.element_ty
    tl.store(ptr, a.to(ty), mask=ok)
    tl.store(ptr + H, b.to(ty), mask=ok)
    tl.store(ptr + 2 * H, c.to(ty), mask=ok)
    tl.store(ptr + 3 * H, d.to(ty), mask=ok)


@triton.jit
def _valid(lengths, rows, r_ok, t, HAS_LEN: tl.constexpr):
    """(BB,) whether step t is inside each row's sequence."""
    if HAS_LEN:
        return r_ok & (t < tl.load(lengths + rows, mask=r_ok, other=0))
    return r_ok


@triton.jit
def _moments4(a, b, c, d, u_ok, count):
    """Mean and sum of squared deviations per row over the four gates' own columns."""
    keep = u_ok[None, :]
    mean = tl.sum(tl.where(keep, a + b + c + d, 0.0), axis=1) / count
    m = mean[:, None]
    sq = (a - m) * (a - m) + (b - m) * (b - m) + (c - m) * (c - m) + (d - m) * (d - m)
    return mean, tl.sum(tl.where(keep, sq, 0.0), axis=1)


@triton.jit
def lstm_forward_kernel(
    xp,  # (T, B, 4H) input side of every step (see the module docstring)
    hs,  # (T+1, B, H) hs[0] = h0; the kernel writes hs[t+1] = y_t
    cs,  # (T+1, B, H) ACC: cs[0] = c0; the kernel writes the carried c after step t
    act,  # (T, B, 4H) out: i, f, g, o
    ghat,  # (T, B, 4H) out, layer norm: the normalised product
    stats,  # (T, 3, B) ACC out, layer norm: 1/std of the product, mean and 1/std of c
    gh,  # (B, 4H) ACC scratch, layer norm: this step's product
    part,  # (2, n_h, B, 2) ACC scratch, layer norm: per-program moments
    w_hh,  # (4H, H)
    peep,  # (3, H) w_ci, w_cf, w_co
    ln_hh,  # (4H,)
    ln_c,  # (2, H) ln_c_weight, ln_c_bias
    lengths,  # (B,) int32
    mask,  # (B, H) recurrent dropout
    B, H, eps, counter, t_start, n_steps, n_groups,
    BB: tl.constexpr, BH: tl.constexpr, RP: tl.constexpr, NHP: tl.constexpr,
    PEEP: tl.constexpr, LN: tl.constexpr, HAS_LEN: tl.constexpr, HAS_MASK: tl.constexpr,
    PHASE: tl.constexpr, NPH: tl.constexpr, SYNC: tl.constexpr, DOT: tl.constexpr,
    ACC: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    g_id = tl.program_id(0)
    k = tl.program_id(1)
    n_h = tl.num_programs(1)
    G = 4 * H
    units = k * BH + tl.arange(0, BH)  # (BH,)
    u_ok = units < H
    kr = tl.arange(0, RP)  # columns of hin
    # This program's rows of W_hh, transposed, held for every step: column jj·4 + q of
    # the tile is unit jj of gate q.
    n = tl.arange(0, 4 * BH)
    n_unit = k * BH + n // 4
    w_at = w_hh + ((n % 4) * H + n_unit)[None, :] * H + kr[:, None]
    w = tl.load(w_at, mask=(kr < H)[:, None] & (n_unit < H)[None, :], other=0.0).to(DOT)
    w_ci, w_cf, w_co = 0.0, 0.0, 0.0  # peepholes and layer-norm gains: unused unless set
    lh_i, lh_f, lh_g, lh_o, ln_cw, ln_cb = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    if PEEP:
        w_ci = tl.load(peep + units, mask=u_ok, other=0.0).to(ACC)
        w_cf = tl.load(peep + H + units, mask=u_ok, other=0.0).to(ACC)
        w_co = tl.load(peep + 2 * H + units, mask=u_ok, other=0.0).to(ACC)
    if LN:
        lh_i = tl.load(ln_hh + units, mask=u_ok, other=0.0).to(ACC)[None, :]
        lh_f = tl.load(ln_hh + H + units, mask=u_ok, other=0.0).to(ACC)[None, :]
        lh_g = tl.load(ln_hh + 2 * H + units, mask=u_ok, other=0.0).to(ACC)[None, :]
        lh_o = tl.load(ln_hh + 3 * H + units, mask=u_ok, other=0.0).to(ACC)[None, :]
        ln_cw = tl.load(ln_c + units, mask=u_ok, other=0.0).to(ACC)[None, :]
        ln_cb = tl.load(ln_c + H + units, mask=u_ok, other=0.0).to(ACC)[None, :]
    part_c = part + n_h * B * 2
    own = tl.minimum(BH, H - k * BH)  # this program's real units
    n_chunks = tl.cdiv(B, BB)
    done = 0
    for s in range(n_steps):
        t = (t_start + s).to(tl.int64)
        xp_t = xp + t * B * G
        act_t = act + t * B * G
        if (PHASE == 0) | (PHASE == 1):
            for chunk in range(g_id, n_chunks, n_groups):
                rows = chunk * BB + tl.arange(0, BB)
                r_ok = rows < B
                ok = r_ok[:, None] & u_ok[None, :]
                h_ok = r_ok[:, None] & (kr < H)[None, :]
                h_at = rows[:, None] * H + kr[None, :]
                hin = tl.load(hs + t * B * H + h_at, mask=h_ok, other=0.0, cache_modifier=".cg")
                if HAS_MASK:
                    hin = hin * tl.load(mask + h_at, mask=h_ok, other=0.0)
                prod = tl.dot(hin.to(DOT), w, input_precision=PREC, out_dtype=ACC)  # (BB, 4BH)
                p_i, p_f, p_g, p_o = split4(prod, BB, BH)
                at = rows[:, None] * G + units[None, :]  # gate 0's columns
                if LN:
                    # The product's moments over this program's columns, for phase 2.
                    mean, m2 = _moments4(p_i, p_f, p_g, p_o, u_ok, 4 * own)
                    _store4(gh + at, H, ok, p_i, p_f, p_g, p_o)
                    at_part = part + (k * B + rows) * 2
                    tl.store(at_part, mean.to(part.dtype.element_ty), mask=r_ok)
                    tl.store(at_part + 1, m2.to(part.dtype.element_ty), mask=r_ok)
                else:
                    x_i, x_f, x_g, x_o = _load4(xp_t + at, H, ok, ACC)
                    c_at = rows[:, None] * H + units[None, :]
                    cp = tl.load(cs + t * B * H + c_at, mask=ok, other=0.0)
                    i, f, g, o, c = _cell(x_i + p_i, x_f + p_f, x_g + p_g, x_o + p_o, cp,
                                          w_ci, w_cf, w_co, PEEP)  # fmt: skip
                    _store4(act_t + at, H, ok, i, f, g, o)
                    v = _valid(lengths, rows, r_ok, t, HAS_LEN)[:, None]
                    tl.store(cs + (t + 1) * B * H + c_at, tl.where(v, c, cp), mask=ok)
                    h = tl.where(v, o * tanh(c), 0.0)
                    tl.store(hs + (t + 1) * B * H + c_at, h.to(hs.dtype.element_ty), mask=ok)
            done += 1
            sync(counter + g_id, done, n_h, SYNC)
        if LN and ((PHASE == 0) | (PHASE == 2)):
            for chunk in range(g_id, n_chunks, n_groups):
                rows = chunk * BB + tl.arange(0, BB)
                r_ok = rows < B
                ok = r_ok[:, None] & u_ok[None, :]
                mean, var = combine_moments(part, rows, r_ok, B, n_h, G, BH, NHP, 4)
                rstd = 1.0 / tl.sqrt(var + eps)  # (BB,)
                m, r = mean[:, None], rstd[:, None]
                at = rows[:, None] * G + units[None, :]
                p_i, p_f, p_g, p_o = _load4(gh + at, H, ok, ACC)
                n_i, n_f, n_g, n_o = (p_i - m) * r, (p_f - m) * r, (p_g - m) * r, (p_o - m) * r
                _store4(ghat + t * B * G + at, H, ok, n_i, n_f, n_g, n_o)
                x_i, x_f, x_g, x_o = _load4(xp_t + at, H, ok, ACC)
                c_at = rows[:, None] * H + units[None, :]
                cp = tl.load(cs + t * B * H + c_at, mask=ok, other=0.0)
                i, f, g, o, c = _cell(x_i + n_i * lh_i, x_f + n_f * lh_f, x_g + n_g * lh_g,
                                      x_o + n_o * lh_o, cp, w_ci, w_cf, w_co, PEEP)  # fmt: skip
                _store4(act_t + at, H, ok, i, f, g, o)
                v = _valid(lengths, rows, r_ok, t, HAS_LEN)[:, None]
                c = tl.where(v, c, cp)
                tl.store(cs + (t + 1) * B * H + c_at, c, mask=ok)
                c_mean, c_m2 = local_moments(c, u_ok[None, :], own)
                at_part = part_c + (k * B + rows) * 2
                tl.store(at_part, c_mean.to(part.dtype.element_ty), mask=r_ok)
                tl.store(at_part + 1, c_m2.to(part.dtype.element_ty), mask=r_ok)
                if k == 0:
                    tl.store(stats + t * 3 * B + rows, rstd, mask=r_ok)
            done += 1
            sync(counter + g_id, done, n_h, SYNC)
        if LN and ((PHASE == 0) | (PHASE == 3)):
            for chunk in range(g_id, n_chunks, n_groups):
                rows = chunk * BB + tl.arange(0, BB)
                r_ok = rows < B
                ok = r_ok[:, None] & u_ok[None, :]
                c_mean, c_var = combine_moments(part_c, rows, r_ok, B, n_h, H, BH, NHP, 1)
                c_rstd = 1.0 / tl.sqrt(c_var + eps)
                c_at = rows[:, None] * H + units[None, :]
                c = tl.load(cs + (t + 1) * B * H + c_at, mask=ok, other=0.0)
                chat = (c - c_mean[:, None]) * c_rstd[:, None]
                o_at = act_t + rows[:, None] * G + 3 * H + units[None, :]
                o = tl.load(o_at, mask=ok, other=0.0).to(ACC)
                v = _valid(lengths, rows, r_ok, t, HAS_LEN)[:, None]
                h = tl.where(v, o * tanh(chat * ln_cw + ln_cb), 0.0)
                tl.store(hs + (t + 1) * B * H + c_at, h.to(hs.dtype.element_ty), mask=ok)
                if k == 0:
                    tl.store(stats + (t * 3 + 1) * B + rows, c_mean, mask=r_ok)
                    tl.store(stats + (t * 3 + 2) * B + rows, c_rstd, mask=r_ok)
            done += 1
            sync(counter + g_id, done, n_h, SYNC)


@triton.jit
def lstm_backward_kernel(
    dy,  # (T, B, H) gradient of the outputs
    dh,  # (B, H) ACC: d h_T in, d h_0 out (the carried gradient of h)
    dc,  # (B, H) ACC: d c_T in, d c_0 out
    da,  # (T, B, 4H) out: d a, the gradient of the gate pre-activations (= d xp)
    dghh,  # (T, B, 4H) out, layer norm: d of the product hin @ w_hh.T
    du,  # (T, B, H) out, layer norm: d of LN(c) * ln_cw + ln_cb
    part,  # (2, n_h, B, 2) ACC scratch, layer norm: per-program partial sums
    act, cs, ghat, stats, w_hh, peep, ln_hh, ln_c, lengths, mask,  # as the forward's
    B, H, counter, t_start, n_steps, n_groups,
    BB: tl.constexpr, BH: tl.constexpr, GP: tl.constexpr, NHP: tl.constexpr,
    PEEP: tl.constexpr, LN: tl.constexpr, HAS_LEN: tl.constexpr, HAS_MASK: tl.constexpr,
    PHASE: tl.constexpr, NPH: tl.constexpr, SYNC: tl.constexpr, DOT: tl.constexpr,
    ACC: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """BPTT from t = t_start down, carrying ``dh`` and ``dc``::

        d    = dh + dy_t;  tc = tanh(c_t)            (LN: tanh(chat * ln_cw + ln_cb))
        da_o = d * tc * o * (1 - o)
        dc_t = dc + d * o * (1 - tc^2) [through LN(c)] + w_co * da_o
        da_i = dc_t * g * i (1 - i);  da_f = dc_t * c_{t-1} * f (1 - f);  da_g = dc_t * i (1 - g^2)
        dc   = dc_t * f + w_ci * da_i + w_cf * da_f
        dghh = da   or   rstd * (da * ln_hh - mean(da * ln_hh) - ghat * mean(da * ln_hh * ghat))
        dh   = (dghh @ w_hh) * mask

    The last line needs every unit's ``dghh``: program k computes its own units' columns
    of ``dh`` from ``w_hh[:, units]``, held for every step.
    """
    g_id = tl.program_id(0)
    k = tl.program_id(1)
    n_h = tl.num_programs(1)
    G = 4 * H
    units = k * BH + tl.arange(0, BH)
    u_ok = units < H
    kc = tl.arange(0, GP)  # gate rows of W_hh, all of them
    w_at = w_hh + kc[:, None] * H + units[None, :]
    w = tl.load(w_at, mask=(kc < G)[:, None] & u_ok[None, :], other=0.0).to(DOT)  # (GP, BH)
    w_ci, w_cf, w_co = 0.0, 0.0, 0.0  # peepholes and layer-norm gains: unused unless set
    lh_i, lh_f, lh_g, lh_o, ln_cw, ln_cb = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    if PEEP:
        w_ci = tl.load(peep + units, mask=u_ok, other=0.0).to(ACC)
        w_cf = tl.load(peep + H + units, mask=u_ok, other=0.0).to(ACC)
        w_co = tl.load(peep + 2 * H + units, mask=u_ok, other=0.0).to(ACC)
    if LN:
        lh_i = tl.load(ln_hh + units, mask=u_ok, other=0.0).to(ACC)[None, :]
        lh_f = tl.load(ln_hh + H + units, mask=u_ok, other=0.0).to(ACC)[None, :]
        lh_g = tl.load(ln_hh + 2 * H + units, mask=u_ok, other=0.0).to(ACC)[None, :]
        lh_o = tl.load(ln_hh + 3 * H + units, mask=u_ok, other=0.0).to(ACC)[None, :]
        ln_cw = tl.load(ln_c + units, mask=u_ok, other=0.0).to(ACC)[None, :]
        ln_cb = tl.load(ln_c + H + units, mask=u_ok, other=0.0).to(ACC)[None, :]
    part_q = part + n_h * B * 2
    n_chunks = tl.cdiv(B, BB)
    done = 0
    for s in range(n_steps):
        t = (t_start - s).to(tl.int64)
        act_t = act + t * B * G
        da_t = da + t * B * G
        if (PHASE == 0) | (PHASE == 1):
            for chunk in range(g_id, n_chunks, n_groups):
                rows = chunk * BB + tl.arange(0, BB)
                r_ok = rows < B
                ok = r_ok[:, None] & u_ok[None, :]
                v = _valid(lengths, rows, r_ok, t, HAS_LEN)[:, None]
                h_at = rows[:, None] * H + units[None, :]
                at = rows[:, None] * G + units[None, :]
                d = tl.load(dh + h_at, mask=ok, other=0.0)
                d += tl.load(dy + t * B * H + h_at, mask=ok, other=0.0).to(ACC)
                i, f, g, o = _load4(act_t + at, H, ok, ACC)
                c = tl.load(cs + (t + 1) * B * H + h_at, mask=ok, other=0.0)
                if LN:
                    c_mean = tl.load(stats + (t * 3 + 1) * B + rows, mask=r_ok, other=0.0)
                    c_rstd = tl.load(stats + (t * 3 + 2) * B + rows, mask=r_ok, other=0.0)
                    chat = (c - c_mean[:, None]) * c_rstd[:, None]
                    tc = tanh(chat * ln_cw + ln_cb)
                    dgo = tl.where(v, d * tc * o * (1.0 - o), 0.0)
                    dz = tl.where(v, d * o * (1.0 - tc * tc), 0.0)
                    tl.store(du + t * B * H + h_at, dz.to(du.dtype.element_ty), mask=ok)
                    tl.store(da_t + at + 3 * H, dgo.to(da.dtype.element_ty), mask=ok)
                    # Row sums through LN(c), for phase 2.
                    at_part = part + (k * B + rows) * 2
                    tl.store(at_part, tl.sum(dz * ln_cw, axis=1), mask=r_ok)
                    tl.store(at_part + 1, tl.sum(dz * ln_cw * chat, axis=1), mask=r_ok)
                else:
                    cp = tl.load(cs + t * B * H + h_at, mask=ok, other=0.0)
                    tc = tanh(c)
                    dgo = d * tc * o * (1.0 - o)
                    dcj = tl.load(dc + h_at, mask=ok, other=0.0) + d * o * (1.0 - tc * tc)
                    if PEEP:
                        dcj += dgo * w_co[None, :]
                    dgi, dgf, dgg, dcp = _cell_grads(dcj, i, f, g, cp, w_ci, w_cf, PEEP)
                    dgi, dgf = tl.where(v, dgi, 0.0), tl.where(v, dgf, 0.0)
                    dgg, dgo = tl.where(v, dgg, 0.0), tl.where(v, dgo, 0.0)
                    _store4(da_t + at, H, ok, dgi, dgf, dgg, dgo)
                    tl.store(dc + h_at, dcp, mask=ok & v)
            done += 1
            sync(counter + g_id, done, n_h, SYNC)
        if LN and ((PHASE == 0) | (PHASE == 2)):
            for chunk in range(g_id, n_chunks, n_groups):
                rows = chunk * BB + tl.arange(0, BB)
                r_ok = rows < B
                ok = r_ok[:, None] & u_ok[None, :]
                v = _valid(lengths, rows, r_ok, t, HAS_LEN)[:, None]
                h_at = rows[:, None] * H + units[None, :]
                at = rows[:, None] * G + units[None, :]
                m1 = combine_sums(part, rows, r_ok, B, n_h, NHP, 2, 0) / H
                m2 = combine_sums(part, rows, r_ok, B, n_h, NHP, 2, 1) / H
                c_mean = tl.load(stats + (t * 3 + 1) * B + rows, mask=r_ok, other=0.0)
                c_rstd = tl.load(stats + (t * 3 + 2) * B + rows, mask=r_ok, other=0.0)
                c = tl.load(cs + (t + 1) * B * H + h_at, mask=ok, other=0.0)
                cp = tl.load(cs + t * B * H + h_at, mask=ok, other=0.0)
                chat = (c - c_mean[:, None]) * c_rstd[:, None]
                dz = tl.load(du + t * B * H + h_at, mask=ok, other=0.0).to(ACC)
                dgo = tl.load(da_t + at + 3 * H, mask=ok, other=0.0).to(ACC)
                dcj = tl.load(dc + h_at, mask=ok, other=0.0)
                dcj += c_rstd[:, None] * (dz * ln_cw - m1[:, None] - chat * m2[:, None])
                if PEEP:
                    dcj += dgo * w_co[None, :]
                i, f, g, o = _load4(act_t + at, H, ok, ACC)
                dgi, dgf, dgg, dcp = _cell_grads(dcj, i, f, g, cp, w_ci, w_cf, PEEP)
                dgi, dgf, dgg = tl.where(v, dgi, 0.0), tl.where(v, dgf, 0.0), tl.where(v, dgg, 0.0)
                tl.store(da_t + at, dgi.to(da.dtype.element_ty), mask=ok)
                tl.store(da_t + at + H, dgf.to(da.dtype.element_ty), mask=ok)
                tl.store(da_t + at + 2 * H, dgg.to(da.dtype.element_ty), mask=ok)
                tl.store(dc + h_at, dcp, mask=ok & v)
                # Row sums through LN of the product, for phase 3.
                n_i, n_f, n_g, n_o = _load4(ghat + t * B * G + at, H, ok, ACC)
                q1 = dgi * lh_i + dgf * lh_f + dgg * lh_g + dgo * lh_o
                q2 = dgi * lh_i * n_i + dgf * lh_f * n_f + dgg * lh_g * n_g + dgo * lh_o * n_o
                at_part = part_q + (k * B + rows) * 2
                tl.store(at_part, tl.sum(tl.where(ok, q1, 0.0), axis=1), mask=r_ok)
                tl.store(at_part + 1, tl.sum(tl.where(ok, q2, 0.0), axis=1), mask=r_ok)
            done += 1
            sync(counter + g_id, done, n_h, SYNC)
        if LN and ((PHASE == 0) | (PHASE == 3)):
            for chunk in range(g_id, n_chunks, n_groups):
                rows = chunk * BB + tl.arange(0, BB)
                r_ok = rows < B
                ok = r_ok[:, None] & u_ok[None, :]
                at = rows[:, None] * G + units[None, :]
                n1 = (combine_sums(part_q, rows, r_ok, B, n_h, NHP, 2, 0) / G)[:, None]
                n2 = (combine_sums(part_q, rows, r_ok, B, n_h, NHP, 2, 1) / G)[:, None]
                rh = tl.load(stats + t * 3 * B + rows, mask=r_ok, other=0.0)[:, None]
                d_i, d_f, d_g, d_o = _load4(da_t + at, H, ok, ACC)
                n_i, n_f, n_g, n_o = _load4(ghat + t * B * G + at, H, ok, ACC)
                e_i, e_f = rh * (d_i * lh_i - n1 - n_i * n2), rh * (d_f * lh_f - n1 - n_f * n2)
                e_g, e_o = rh * (d_g * lh_g - n1 - n_g * n2), rh * (d_o * lh_o - n1 - n_o * n2)
                _store4(dghh + t * B * G + at, H, ok, e_i, e_f, e_g, e_o)
            done += 1
            sync(counter + g_id, done, n_h, SYNC)
        if (PHASE == 0) | (PHASE == NPH):
            src = dghh if LN else da
            for chunk in range(g_id, n_chunks, n_groups):
                rows = chunk * BB + tl.arange(0, BB)
                r_ok = rows < B
                ok = r_ok[:, None] & u_ok[None, :]
                v = _valid(lengths, rows, r_ok, t, HAS_LEN)[:, None]
                a_at = src + t * B * G + rows[:, None] * G + kc[None, :]
                a = tl.load(a_at, mask=r_ok[:, None] & (kc < G)[None, :], other=0.0,
                            cache_modifier=".cg")  # fmt: skip
                d_hin = tl.dot(a.to(DOT), w, input_precision=PREC, out_dtype=ACC)  # (BB, BH)
                h_at = rows[:, None] * H + units[None, :]
                if HAS_MASK:
                    d_hin = d_hin * tl.load(mask + h_at, mask=ok, other=0.0).to(ACC)
                tl.store(dh + h_at, d_hin, mask=ok & v)
            # The next step reads only this program's own columns of dh and dc.
            sync(counter + g_id, done, n_h, False)

"""Triton helpers the recurrence kernels share: activations, gate splits, the grid barrier.

Imported only by the kernel modules, so importing rnnkit never imports triton.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def tanh(x):
    """``tanh(x)`` from one exponential of ``-2|x|`` (never overflows)."""
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -t, t)


@triton.jit
def split4(acc, BB: tl.constexpr, BH: tl.constexpr):
    """The four gates of a ``(BB, 4·BH)`` product whose column ``jj·4 + k`` is unit jj of
    gate k (unit-major, gate-minor: one product serves all gates of a program's units)."""
    even, odd = tl.split(tl.reshape(acc, (BB, BH, 2, 2)))  # (BB, BH, 2): gates 0, 2 / 1, 3
    g0, g2 = tl.split(even)
    g1, g3 = tl.split(odd)
    return g0, g1, g2, g3


@triton.jit
def split2(acc, BB: tl.constexpr, BH: tl.constexpr):
    """The two gates of a ``(BB, 2·BH)`` product with column ``jj·2 + k``."""
    return tl.split(tl.reshape(acc, (BB, BH, 2)))


@triton.jit
def sync(counter, done, n_h, GRID: tl.constexpr):
    """Wait until the ``n_h`` programs of this batch group have all finished phase ``done``.

    ``GRID``: a grid barrier on ``counter`` (this group's int32, zero at launch and
    raised by one per program per phase: every program waits for ``done·n_h``); the
    programs must all be resident at once (a cooperative launch), since a waiting
    program holds its SM. Otherwise only the program's own threads are ordered (what
    one thread stored, another thread of the program may read).
    """
    tl.debug_barrier()  # every thread's stores of this phase are issued
    if GRID:
        tl.atomic_add(counter, 1, sem="release", scope="gpu")
        seen = tl.atomic_add(counter, 0, sem="acquire", scope="gpu")
        while seen < done * n_h:
            seen = tl.atomic_add(counter, 0, sem="acquire", scope="gpu")
        tl.debug_barrier()  # the other threads wait for the one that watched the counter


@triton.jit
def combine_moments(part, rows, r_ok, B, n_h, size, BH: tl.constexpr, NHP: tl.constexpr,
                    SLOTS: tl.constexpr):  # fmt: skip
    """Mean and variance per row over ``size`` columns from every program's partials.

    ``part`` is ``(n_h, B, 2)``: program k's mean and sum of squared deviations over
    its ``SLOTS · min(BH, H - k·BH)`` columns (``size = SLOTS · H``); Chan's parallel
    formula joins them without the cancellation of a one-pass variance.
    """
    k = tl.arange(0, NHP)
    k_ok = k < n_h
    H = size // SLOTS
    count = tl.where(k_ok, SLOTS * tl.minimum(BH, H - k * BH), 0).to(tl.float32)  # (NHP,)
    at = part + (k[None, :] * B + rows[:, None]) * 2  # (BB, NHP)
    ok = r_ok[:, None] & k_ok[None, :]
    means = tl.load(at, mask=ok, other=0.0, cache_modifier=".cg")
    m2s = tl.load(at + 1, mask=ok, other=0.0, cache_modifier=".cg")
    mean = tl.sum(means * count[None, :], axis=1) / size  # (BB,)
    dev = means - mean[:, None]
    m2 = tl.sum(m2s + count[None, :] * dev * dev, axis=1)
    return mean, m2 / size


@triton.jit
def local_moments(v, ok, count):
    """Mean and sum of squared deviations per row of ``v`` (BB, n) over the ``ok`` columns."""
    v = tl.where(ok, v, 0.0)
    mean = tl.sum(v, axis=1) / count
    dev = tl.where(ok, v - mean[:, None], 0.0)
    return mean, tl.sum(dev * dev, axis=1)


@triton.jit
def combine_sums(part, rows, r_ok, B, n_h, NHP: tl.constexpr, WIDTH: tl.constexpr, i):
    """Entry ``i`` of every program's partial sums ``part (n_h, B, WIDTH)``, summed (BB,)."""
    k = tl.arange(0, NHP)
    at = part + (k[None, :] * B + rows[:, None]) * WIDTH + i
    v = tl.load(at, mask=r_ok[:, None] & (k < n_h)[None, :], other=0.0, cache_modifier=".cg")
    return tl.sum(v, axis=1)

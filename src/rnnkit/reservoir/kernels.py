"""The reservoir's time loop compiled with numba: the fast path of ``Reservoir.run``.

One call runs every step of a chunk for a whole batch without returning to Python:

    a_t = pre_t + W x_{t-1}                    (W in CSR: ``indptr``, ``indices``, ``data``)
    x_t = (1 - lr) * x_{t-1} + lr * f(a_t) + noise_t

where ``pre_t = W_in u_t + W_fb y_{t-1} + bias`` was computed for all steps at once by
the caller. A 500-unit reservoir with ``connectivity=0.1`` has 25,000 nonzeros, ten
times fewer multiply-adds than the dense product. With one sequence that sparse
product is nearly the whole cost (about 9 µs a step, against 14 µs for SciPy's CSR
product alone); with many, each nonzero is applied to the whole batch in vector
instructions.

tanh is computed here by Cephes' formulas rather than libm's ``tanh``, because that
form vectorises (libm's is a scalar call, which made tanh cost more than ``W x`` at
64 sequences); it agrees with ``torch.tanh`` to 2 ulp.

This module imports numba; ``rnnkit.reservoir.reservoir`` imports it only when the
fast path is used, so ``import rnnkit`` does not pay for numba.
"""

from __future__ import annotations

import math

import numba
import numpy as np

ACTIVATIONS = {"tanh": 0, "identity": 1, "relu": 2, "sigmoid": 3}

# No ZeroDivisionError checks (they stop LLVM from vectorising); fused multiply-add
# allowed, reassociation not (the sums' order is the one written here).
_JIT = {"cache": True, "error_model": "numpy", "fastmath": {"contract"}}

# Cephes tanh: x + x^3 P(x^2) / Q(x^2) for |x| < 0.625, else 1 - 2 / (exp(2|x|) + 1).
_P0, _P1, _P2 = -9.64399179425052238628e-1, -9.92877231001918586564e1, -1.61468768441708447952e3
_Q0, _Q1, _Q2 = 1.12811678491632931402e2, 2.23548839060100448583e3, 4.84406305325125486048e3
# Cephes exp on the reduced argument r = v - n ln 2: exp(r) = 1 + 2 p / (q - p).
_EP0, _EP1, _EP2 = 1.26177193074810590878e-4, 3.02994407707441961300e-2, 9.99999999999999999910e-1
_EQ0, _EQ1, _EQ2 = 3.00198505138664455042e-6, 2.52448340349684104192e-3, 2.27265548208155028766e-1
_LN2_HI, _LN2_LO, _LOG2E = 6.93145751953125e-1, 1.42860682030941723212e-6, 1.4426950408889634
# Nonzeros are addressed with unsigned integers (``indptr`` uint64, ``indices`` uint32):
# numba adds a negative-index wraparound to every signed index, which made ``W x`` at
# one sequence twice as slow (19 µs against 9 µs for 25,000 nonzeros). Integer
# literals would promote a uint64 to float64, hence these constants.
_1, _2, _3, _4 = np.uint64(1), np.uint64(2), np.uint64(3), np.uint64(4)


@numba.njit(inline="always", **_JIT)
def _tanh(x):
    ax = min(abs(x), 20.0)  # tanh(20) rounds to 1; the clamp keeps 2**n exact
    z = x * x
    small = x + x * z * ((_P0 * z + _P1) * z + _P2) / (((z + _Q0) * z + _Q1) * z + _Q2)
    v = 2.0 * ax
    n = np.floor(_LOG2E * v + 0.5)
    r = v - n * _LN2_HI - n * _LN2_LO
    rr = r * r
    p = r * ((_EP0 * rr + _EP1) * rr + _EP2)
    e = 1.0 + 2.0 * p / (((_EQ0 * rr + _EQ1) * rr + _EQ2) * rr + 2.0 - p)
    e *= np.float64(np.int64(1) << np.int64(n))  # 2**n by a shift: vectorises, ldexp does not
    large = np.copysign(1.0 - 2.0 / (e + 1.0), x)
    out = small if ax < 0.625 else large
    return x if x != x else out  # NaN in, NaN out


@numba.njit(inline="always", **_JIT)
def _activate(a, act):
    if act == 0:
        return _tanh(a)
    if act == 1:
        return a
    if act == 2:
        return max(a, 0.0)
    return 1.0 / (1.0 + math.exp(-a))


@numba.njit(**_JIT)
def _run_one(pre, noise, indptr, indices, data, lr, act, x0, states):
    """One sequence: ``x`` is a vector, each row of ``W x`` a dot product over its nonzeros."""
    T, _, N = pre.shape
    keep = 1.0 - lr
    x = x0[0].copy()  # (N,)
    a = np.empty(N)
    for t in range(T):
        for i in range(N):
            # two partial sums hide the multiply-add latency of one running sum
            s0 = 0.0
            s1 = 0.0
            k = indptr[i]
            end = indptr[i + 1]
            while k + _1 < end:
                s0 += data[k] * x[indices[k]]
                s1 += data[k + _1] * x[indices[k + _1]]
                k += _2
            if k < end:
                s0 += data[k] * x[indices[k]]
            a[i] = pre[t, 0, i] + (s0 + s1)
        if act == 0:  # its own loop, so that LLVM vectorises it
            for i in range(N):
                x[i] = keep * x[i] + lr * _tanh(a[i])
        else:
            for i in range(N):
                x[i] = keep * x[i] + lr * _activate(a[i], act)
        if noise.shape[0]:
            for i in range(N):
                x[i] += noise[t, 0, i]
        states[t, 0] = x


@numba.njit(**_JIT)
def _run_batch(pre, noise, indptr, indices, data, lr, act, x0, states):
    """Several sequences: the state is kept (N, B) so that each nonzero ``W[i, j]``
    multiplies the contiguous row ``x[j, :]`` (vectorised over the batch)."""
    T, B, N = pre.shape
    keep = 1.0 - lr
    x = np.ascontiguousarray(x0.T)  # (N, B)
    nxt = np.empty((N, B), dtype=x.dtype)  # (N, B)
    for t in range(T):
        for i in range(N):
            acc = nxt[i]  # (B,): row i of a_t, built in place
            for b in range(B):
                acc[b] = pre[t, b, i]
            # four nonzeros per pass over acc: a quarter of the loads, stores and
            # per-pass overhead of one at a time (2.3x faster at B = 64)
            k = indptr[i]
            end = indptr[i + 1]
            while k + _3 < end:
                w0, x0 = data[k], x[indices[k]]
                w1, x1 = data[k + _1], x[indices[k + _1]]
                w2, x2 = data[k + _2], x[indices[k + _2]]
                w3, x3 = data[k + _3], x[indices[k + _3]]
                for b in range(B):
                    acc[b] += (w0 * x0[b] + w1 * x1[b]) + (w2 * x2[b] + w3 * x3[b])
                k += _4
            while k < end:
                w0, x0 = data[k], x[indices[k]]
                for b in range(B):
                    acc[b] += w0 * x0[b]
                k += _1
            xi = x[i]
            if act == 0:  # its own loop, so that LLVM vectorises it
                for b in range(B):
                    acc[b] = keep * xi[b] + lr * _tanh(acc[b])
            else:
                for b in range(B):
                    acc[b] = keep * xi[b] + lr * _activate(acc[b], act)
        x, nxt = nxt, x
        if noise.shape[0]:
            for b in range(B):
                for i in range(N):
                    x[i, b] += noise[t, b, i]
        states[t] = x.T


def run_leaky(
    pre: np.ndarray,
    x0: np.ndarray,
    noise: np.ndarray | None,
    csr: tuple[np.ndarray, np.ndarray, np.ndarray],
    lr: float,
    activation: str,
) -> np.ndarray:
    """States ``(T, B, N)`` from ``pre (T, B, N)``, ``x0 (B, N)``, ``noise (T, B, N)`` or None."""
    indptr, indices, data = csr
    if indptr.dtype != np.uint64 or indices.dtype != np.uint32:
        raise ValueError("csr must hold uint64 indptr and uint32 indices (see Reservoir._csr)")
    states = np.empty_like(pre)  # (T, B, N)
    if noise is None:
        noise = np.empty((0, 0, 0), dtype=pre.dtype)
    run = _run_one if pre.shape[1] == 1 else _run_batch
    run(pre, noise, indptr, indices, data, lr, ACTIVATIONS[activation], x0, states)
    return states

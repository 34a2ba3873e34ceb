r"""The verdict: a log-linear fit of ``‖∂L_T/∂h_k‖`` against the lag ``T - k``.

With ``g_ℓ = ‖∂L_T/∂h_{T-ℓ}‖`` (``ℓ = 0`` is the last step), least squares on

.. math::

    \log g_\ell \approx a + \ell \log r

over the lags ``ℓ ≥ 1`` (lag 0 also holds the loss's direct dependence on the last
output, not the recurrence; it is used only when ``T = 2``) gives ``rate = r``, the
factor by which the gradient changes per step back in time, and
``factor = r ** span``, the change over the fitted lags (``span = T - 2`` when every
lag ``1..T-1`` has a positive norm). The verdict:

- ``"exploding"`` if ``factor > EXPLODING_FACTOR`` (100) or a norm is inf / NaN;
- ``"vanishing"`` if ``factor < VANISHING_FACTOR`` (0.01) or the gradient is exactly
  zero at some lag while the last step's is not (it underflowed or died);
- ``"healthy"`` otherwise.

So the verdict is about this sequence length: a rate of 0.9 is healthy over 20 steps
(factor 0.14) and vanishing over 100 (factor 3e-5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

VANISHING_FACTOR = 1e-2
EXPLODING_FACTOR = 1e2


@dataclass(frozen=True)
class DecayFit:
    """The fitted decay of the gradient norm with the lag, and the verdict from it."""

    rate: float  # per-step factor r (< 1: decays going back in time)
    factor: float  # r ** span: the change over the fitted lags
    span: int  # lags covered by the fit (max lag - min lag)
    intercept: float  # a: the fitted log norm at lag 0
    zero_lags: int  # lags whose gradient norm is exactly 0
    nonfinite: bool  # some norm is inf or NaN
    verdict: str  # "vanishing" | "exploding" | "healthy"

    @property
    def half_life(self) -> float:
        """Steps for the fitted norm to halve (inf when it does not decay)."""
        return math.log(0.5) / math.log(self.rate) if 0 < self.rate < 1 else math.inf


def fit_decay(last_row: np.ndarray) -> DecayFit:
    """Fit ``last_row[k] = ‖∂L_T/∂h_k‖`` (k = 0..T-1) against the lag ``T - 1 - k``."""
    norms = np.asarray(last_row, dtype=float)[::-1]  # index = lag
    lags = np.arange(norms.size)
    first = 1 if norms.size >= 3 else 0
    nonfinite = not bool(np.isfinite(norms).all())
    zero_lags = int((norms[first:] == 0).sum()) if norms[0] > 0 else 0
    use = (lags >= first) & np.isfinite(norms) & (norms > 0)
    if use.sum() >= 2:
        slope, intercept = np.polyfit(lags[use], np.log(norms[use]), 1)
        span = int(lags[use].max() - lags[use].min())
        rate = float(math.exp(slope))
        factor = float(math.exp(min(slope * span, 700.0)))
    else:
        intercept, span, rate, factor = math.nan, 0, math.nan, math.nan
    if nonfinite or factor > EXPLODING_FACTOR:
        verdict = "exploding"
    elif zero_lags or factor < VANISHING_FACTOR:
        verdict = "vanishing"
    else:
        verdict = "healthy"
    return DecayFit(rate, factor, span, float(intercept), zero_lags, nonfinite, verdict)

r"""The recurrent weight's spectrum and the Jacobian-norm bound it gives (Pascanu et al. 2013).

For an Elman step ``h = f(x @ weight_ih.T + h_prev @ weight_hh.T + b)`` the one-step
Jacobian is ``∂h/∂h_prev = diag(f'(pre)) @ weight_hh``, so

.. math::

    \left\|\frac{\partial h_{j+1}}{\partial h_j}\right\| \le \lambda_1 \gamma,\qquad
    \left\|\prod_{j=k}^{t-1} \frac{\partial h_{j+1}}{\partial h_j}\right\|
        \le (\lambda_1 \gamma)^{t-k}

with ``λ₁`` the largest singular value of ``weight_hh`` and ``γ`` the bound of ``|f'|``
(tanh and relu: 1, sigmoid: 1/4). ``λ₁γ < 1`` is sufficient for gradients to vanish;
``λ₁γ > 1`` (or a spectral radius above ``1/γ``) is necessary for them to explode.

Per cell, ``W_rec`` and ``bound`` (an upper bound on ``‖∂s_{j+1}/∂s_j‖``) are:

- ``ElmanCell`` (and the IRNN): ``weight_hh``; ``bound = λ₁γ``.
- ``LeakyCell``: ``weight_hh``; ``h = α h_prev + (1-α) f(...)`` gives
  ``bound = max α + max(1-α) λ₁γ``.
- ``ClockworkCell``: ``weight_hh * weight_hh_mask``; idle units copy their value
  (Jacobian rows of the identity), so ``bound = sqrt(1 + (λ₁γ)²)``.
- ``LSTMCell``, ``GRUCell``: ``weight_hh`` (all gate blocks stacked, not square: no
  spectral radius); no single ``γ`` and no bound: the gates multiply, and the cell
  (or update-gate) path adds an almost-identity term that carries gradient over long lags.
- ``JordanCell``: no ``weight_hh`` (the output is fed back through ``weight_yh`` and
  ``weight_hy``): all NaN but ``γ`` of its hidden nonlinearity.
- ``SkipCell``: the inner cell's ``W_rec`` and ``γ``; no bound (the delayed output
  adds a second path through the history).

Quantities that do not apply are NaN, with the reason in ``Spectrum.reasons``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from rnnkit.cells import (
    ClockworkCell,
    ElmanCell,
    GRUCell,
    JordanCell,
    LeakyCell,
    LSTMCell,
    RecurrentCell,
    SkipCell,
)

# Bound of |f'| for each nonlinearity the cells accept.
GAMMAS = {"tanh": 1.0, "relu": 1.0, "sigmoid": 0.25}

NAN = float("nan")


@dataclass
class Spectrum:
    """``W_rec``'s spectrum, ``γ`` and the one-step Jacobian bound for one cell."""

    singular_values: np.ndarray  # (min(rows, cols),) descending; empty without W_rec
    eigenvalues: np.ndarray  # complex, sorted by modulus descending; empty unless square
    spectral_radius: float
    max_singular_value: float
    gamma: float
    bound: float
    reasons: dict[str, str] = field(default_factory=dict)  # quantity -> why it is NaN


def recurrent_matrix(cell: RecurrentCell) -> tuple[torch.Tensor | None, str]:
    """``(W_rec, "")`` for the cell, or ``(None, reason)`` when it has none."""
    if isinstance(cell, SkipCell):
        return recurrent_matrix(cell.cell)
    if isinstance(cell, JordanCell):
        return None, (
            "JordanCell has no weight_hh: its output is fed back through weight_yh and weight_hy"
        )
    if isinstance(cell, ClockworkCell):
        return (cell.weight_hh * cell.weight_hh_mask).detach(), ""
    weight = getattr(cell, "weight_hh", None)
    if isinstance(weight, torch.Tensor):
        return weight.detach(), ""
    return None, f"{type(cell).__name__} has no weight_hh"


def activation_gamma(cell: RecurrentCell) -> tuple[float, str]:
    """``(γ, "")``, the bound of ``|f'|`` of the cell's nonlinearity, or ``(NaN, reason)``."""
    if isinstance(cell, SkipCell):
        return activation_gamma(cell.cell)
    if isinstance(cell, (LSTMCell, GRUCell)):
        return NAN, (
            f"{type(cell).__name__} is gated: sigmoid gates (|σ'| ≤ 1/4), tanh (≤ 1) and "
            "an additive memory path, so no single γ applies"
        )
    nonlinearity = getattr(cell, "nonlinearity", None)
    if nonlinearity in GAMMAS:
        return GAMMAS[nonlinearity], ""
    return NAN, f"{type(cell).__name__} has no known nonlinearity"


def recurrent_spectrum(cell: RecurrentCell) -> Spectrum:
    """Singular values, eigenvalues, ``γ`` and the Jacobian bound of ``cell`` (see module doc)."""
    reasons: dict[str, str] = {}
    weight, why = recurrent_matrix(cell)
    if weight is None:
        singular = np.zeros(0)
        eigen = np.zeros(0, dtype=complex)
        reasons["max_singular_value"] = reasons["spectral_radius"] = why
    else:
        w = weight.to(device="cpu", dtype=torch.float64).numpy()
        singular = np.linalg.svd(w, compute_uv=False)  # descending
        if w.shape[0] == w.shape[1]:
            eigen = np.linalg.eigvals(w)
            eigen = eigen[np.argsort(-np.abs(eigen), kind="stable")]
        else:
            eigen = np.zeros(0, dtype=complex)
            reasons["spectral_radius"] = (
                f"weight_hh is {w.shape[0]}x{w.shape[1]} (gate blocks stacked), not square"
            )
    lam1 = float(singular[0]) if singular.size else NAN
    radius = float(np.abs(eigen[0])) if eigen.size else NAN
    gamma, why = activation_gamma(cell)
    if why:
        reasons["gamma"] = why
    bound, why = _bound(cell, lam1, gamma)
    if why:
        reasons["bound"] = why
    return Spectrum(singular, eigen, radius, lam1, gamma, bound, reasons)


def _bound(cell: RecurrentCell, lam1: float, gamma: float) -> tuple[float, str]:
    if isinstance(cell, SkipCell):
        return NAN, "SkipCell's state also carries y_{t-d}, a second path with no simple bound"
    if isinstance(cell, (LSTMCell, GRUCell)):
        return NAN, "gated cells have no λ₁γ bound: their memory path adds a near-identity term"
    if math.isnan(lam1) or math.isnan(gamma):
        return NAN, "needs both λ₁ and γ"
    if isinstance(cell, LeakyCell):
        alpha = cell.alpha_value.detach().to("cpu", torch.float64)
        return float(alpha.max()) + float((1 - alpha).max()) * lam1 * gamma, ""
    if isinstance(cell, ClockworkCell):
        return math.sqrt(1.0 + (lam1 * gamma) ** 2), ""
    if isinstance(cell, ElmanCell):
        return lam1 * gamma, ""
    return NAN, f"no Jacobian bound is known for {type(cell).__name__}"

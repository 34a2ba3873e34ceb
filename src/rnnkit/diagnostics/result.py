"""``GradientFlow``: what :func:`rnnkit.diagnostics.gradient_flow` measured, and its views."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rnnkit.diagnostics.decay import (
    EXPLODING_FACTOR,
    VANISHING_FACTOR,
    DecayFit,
    fit_decay,
)


@dataclass
class GradientFlow:
    """Gradient norms through time of one recurrent layer's state.

    All arrays run in the analysed layer's *processing order*: index ``i`` is time step
    ``times[i]`` (``i`` itself, or ``T-1-i`` for a reverse direction). ``s_k`` is the
    layer's full floating state after step ``k`` (``(h, c)`` for an LSTM), ``L_t`` the
    per-step loss, and ``‖·‖`` the Euclidean norm over the batch and all state entries.

    Attributes:
        last_row: ``(T,)``: ``‖∂L_{T-1}/∂s_k‖`` for every ``k``.
        grad_norms: ``(T, T)``: ``‖∂L_t/∂s_k‖`` for ``k ≤ t``, NaN above the diagonal
            (also when a layer above looks ahead, e.g. a Bidirectional one: the
            diagnostic is about gradients going back in time); None when only the last
            row was computed (``pairs``).
        jacobian_norms: ``(T-1,)``: spectral norm ``‖∂s_{j+1}/∂s_j‖`` along sequence
            ``batch_index``'s trajectory (NaN past its length).
        singular_values: ``W_rec``'s singular values, descending (empty without one).
        eigenvalues: ``W_rec``'s eigenvalues by modulus (empty unless it is square).
        spectral_radius, max_singular_value: of ``W_rec`` (NaN where it does not apply).
        gamma: bound of ``|f'|`` of the cell's nonlinearity.
        bound: upper bound on ``jacobian_norms`` (``max_singular_value * gamma`` for an
            Elman cell; see :mod:`rnnkit.diagnostics.spectra` for the other cells).
        times: ``(T,)`` time step of each processing step.
        reasons: why each NaN quantity is NaN.
    """

    last_row: np.ndarray
    grad_norms: np.ndarray | None
    jacobian_norms: np.ndarray
    singular_values: np.ndarray
    eigenvalues: np.ndarray
    spectral_radius: float
    max_singular_value: float
    gamma: float
    bound: float
    times: np.ndarray
    cell: str = ""
    layer: int = 0
    direction: str = "forward"
    loss: str = ""
    batch_size: int = 1
    batch_index: int = 0
    state_size: int = 0
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        """``T``, the number of steps analysed."""
        return int(self.last_row.size)

    @property
    def lags(self) -> np.ndarray:
        """``(T,)``: the lag ``T-1-k`` of ``last_row[k]``."""
        return np.arange(self.steps - 1, -1, -1)

    @property
    def fit(self) -> DecayFit:
        """The log-linear fit of ``last_row`` against the lag (see :mod:`.decay`)."""
        return fit_decay(self.last_row)

    @property
    def decay_rate(self) -> float:
        """Fitted per-step factor of ``‖∂L_T/∂s_k‖`` going one step further back."""
        return self.fit.rate

    @property
    def factor(self) -> float:
        """Fitted change of ``‖∂L_T/∂s_k‖`` over the sequence (``decay_rate ** span``)."""
        return self.fit.factor

    @property
    def verdict(self) -> str:
        """``"vanishing"``, ``"exploding"`` or ``"healthy"`` (thresholds in :mod:`.decay`)."""
        return self.fit.verdict

    def summary(self) -> str:
        """A few lines: the verdict and the numbers behind it."""
        fit = self.fit
        where = f"layer {self.layer}" + (
            f" ({self.direction})" if self.direction != "forward" else ""
        )
        lines = [
            f"gradient flow: {self.cell}, {where}, T={self.steps}, B={self.batch_size}, "
            f"state size {self.state_size}, loss: {self.loss}",
            f"verdict: {fit.verdict} (factor < {VANISHING_FACTOR:g}: vanishing, "
            f"> {EXPLODING_FACTOR:g}: exploding)",
            f"  ‖∂L_T/∂s_k‖ changes by {_num(fit.rate)} per step back ({_pace(fit.rate)}), "
            f"by {_num(fit.factor)} over {fit.span} lags",
            f"  ‖∂L_T/∂s_k‖: {_num(self.last_row[-1])} at lag 0, "
            f"{_num(self.last_row[0])} at lag {self.steps - 1}",
        ]
        if fit.zero_lags:
            lines.append(f"  {fit.zero_lags} lag(s) have an exactly zero gradient")
        if fit.nonfinite:
            lines.append("  some gradient norms are inf or NaN (overflow)")
        jac = self.jacobian_norms[np.isfinite(self.jacobian_norms)]
        if jac.size:
            lines.append(
                f"  ‖∂s_(j+1)/∂s_j‖ (sequence {self.batch_index}): mean {_num(jac.mean())}, "
                f"max {_num(jac.max())}; geometric mean {_num(np.exp(np.log(jac).mean()))}"
            )
        lines.append(
            f"  W_rec: spectral radius {_num(self.spectral_radius)}, "
            f"λ₁ {_num(self.max_singular_value)}; γ {_num(self.gamma)}; "
            f"bound {_num(self.bound)}"
        )
        lines += [f"  ({name}: {why})" for name, why in self.reasons.items()]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """The numbers as plain Python values (NaN kept as float('nan')), for JSON."""
        fit = self.fit
        return {
            "cell": self.cell,
            "layer": self.layer,
            "direction": self.direction,
            "loss": self.loss,
            "steps": self.steps,
            "verdict": fit.verdict,
            "decay_rate": fit.rate,
            "factor": fit.factor,
            "spectral_radius": self.spectral_radius,
            "max_singular_value": self.max_singular_value,
            "gamma": self.gamma,
            "bound": self.bound,
            "last_row": self.last_row.tolist(),
            "jacobian_norms": self.jacobian_norms.tolist(),
            "singular_values": self.singular_values.tolist(),
            "reasons": dict(self.reasons),
        }

    def plot(self, path: str | Path) -> None:
        """Write one PNG of the panels in a row: gradient vs lag, Jacobian norms, W_rec's
        singular values, and its eigenvalues when it is square (:mod:`.plot`)."""
        from rnnkit.diagnostics.plot import plot_gradient_flow

        plot_gradient_flow(self, Path(path))

    def heatmap(self, path: str | Path) -> None:
        """Write a PNG heat map of ``log10 grad_norms[t, k]`` (needs all pairs)."""
        from rnnkit.diagnostics.plot import plot_heatmap

        plot_heatmap(self, Path(path))


def _pace(rate: float) -> str:
    """How fast the fitted norm halves or doubles, in words."""
    if not math.isfinite(rate) or rate <= 0 or rate == 1:
        return "no trend"
    steps = abs(math.log(2.0) / math.log(rate))
    return f"{'halves' if rate < 1 else 'doubles'} every {steps:.3g} steps"


def _num(value: float) -> str:
    value = float(value)
    if math.isnan(value):
        return "n/a"
    return f"{value:.4g}"

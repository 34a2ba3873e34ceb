"""PNG views of a :class:`~rnnkit.diagnostics.GradientFlow`, written atomically."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from rnnkit.atomic import atomic_write_bytes


def _figure(width: float, height: float):
    # Figure + the Agg canvas directly: pyplot would switch the whole process's backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())


def _positive(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isfinite(y) & (y > 0)
    return x[keep], y[keep]


def plot_gradient_flow(flow, path: Path) -> None:
    """Three panels: ‖∂L_T/∂s_k‖ against the lag (log scale) with the fit and the bound;
    ‖∂s_{j+1}/∂s_j‖ along the trajectory with the bound; W_rec's singular values."""
    fig = _figure(15, 4.5)
    ax_lag, ax_jac, ax_spec = fig.subplots(1, 3)
    fit = flow.fit

    lags, norms = _positive(flow.lags.astype(float), flow.last_row)
    ax_lag.semilogy(lags, norms, "o-", markersize=2.5, linewidth=1, label="‖∂L_T/∂s_k‖")
    if math.isfinite(fit.rate) and fit.rate > 0:
        span = np.arange(flow.steps, dtype=float)
        line = np.exp(fit.intercept + span * math.log(fit.rate))
        ax_lag.semilogy(span, line, "--", linewidth=1, label=f"fit: ×{fit.rate:.3g} per step")
    if math.isfinite(flow.bound) and flow.bound > 0 and flow.steps > 1:
        start = flow.last_row[-2]  # lag 1
        if math.isfinite(start) and start > 0:
            span = np.arange(1, flow.steps, dtype=float)
            ax_lag.semilogy(
                span,
                start * flow.bound ** (span - 1),
                ":",
                color="gray",
                label=f"bound (λ₁γ)^lag, λ₁γ = {flow.bound:.3g}",
            )
    ax_lag.set_xlabel("lag T − k (steps)")
    ax_lag.set_ylabel("gradient norm")
    ax_lag.set_title(f"{flow.verdict}: ×{fit.factor:.3g} over {fit.span} steps")
    ax_lag.grid(alpha=0.3, which="both")
    ax_lag.legend(fontsize=8)

    steps, jac = _positive(np.arange(flow.jacobian_norms.size, dtype=float), flow.jacobian_norms)
    ax_jac.plot(steps, jac, linewidth=1, label="‖∂s_{j+1}/∂s_j‖")
    ax_jac.axhline(1.0, color="black", linewidth=0.6)
    if math.isfinite(flow.bound):
        ax_jac.axhline(flow.bound, color="red", linestyle="--", linewidth=1, label="bound")
    ax_jac.set_xlabel("step j")
    ax_jac.set_ylabel("spectral norm")
    ax_jac.set_title(f"one-step Jacobians (sequence {flow.batch_index})")
    ax_jac.grid(alpha=0.3)
    ax_jac.legend(fontsize=8)

    if flow.singular_values.size:
        index = np.arange(1, flow.singular_values.size + 1)
        ax_spec.plot(index, flow.singular_values, "o", markersize=3, label="singular values")
        if flow.eigenvalues.size:
            ax_spec.plot(index, np.abs(flow.eigenvalues), "x", markersize=3, label="|eigenvalues|")
        ax_spec.axhline(1.0, color="black", linewidth=0.6)
        if math.isfinite(flow.gamma) and flow.gamma != 1.0:
            ax_spec.axhline(1.0 / flow.gamma, color="red", linestyle="--", label="1/γ")
        ax_spec.set_xlabel("index")
        ax_spec.set_title(
            f"W_rec: λ₁ = {flow.max_singular_value:.3g}, ρ = {flow.spectral_radius:.3g}"
        )
        ax_spec.grid(alpha=0.3)
        ax_spec.legend(fontsize=8)
    else:
        why = flow.reasons.get("max_singular_value", "no recurrent weight")
        ax_spec.text(0.5, 0.5, why, ha="center", va="center", wrap=True, fontsize=9)
        ax_spec.set_axis_off()
    fig.suptitle(f"gradient flow: {flow.cell}, layer {flow.layer}", fontsize=11)
    _save(fig, path)


def plot_heatmap(flow, path: Path) -> None:
    """``log10 ‖∂L_t/∂s_k‖`` over (t, k), k ≤ t."""
    if flow.grad_norms is None:
        raise ValueError(
            f"the heat map needs every (t, k) pair; run gradient_flow with pairs='all' "
            f"(this run has T={flow.steps} and only the last row)"
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.log10(flow.grad_norms)
    values[~np.isfinite(values)] = np.nan
    fig = _figure(6.5, 5.5)
    ax = fig.add_subplot()
    image = ax.imshow(values, origin="lower", aspect="auto", cmap="viridis")
    fig.colorbar(image, ax=ax, label="log10 ‖∂L_t/∂s_k‖")
    ax.set_xlabel("state step k")
    ax.set_ylabel("loss step t")
    ax.set_title(f"gradient flow: {flow.cell}, layer {flow.layer}")
    _save(fig, path)

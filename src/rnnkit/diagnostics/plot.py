r"""PNG views of a :class:`~rnnkit.diagnostics.GradientFlow`, written atomically.

Each panel is drawn by one function, on axes the caller made, so the combined figure
(:func:`plot_gradient_flow`, ``GradientFlow.plot``) and the report's single PNGs
(:mod:`rnnkit.diagnostics.report`) show the same thing:

- :func:`draw_lag`: ``‖∂L_T/∂s_k‖`` against the lag ``T - k`` on a ``log10`` axis, with the
  fitted ``exp(intercept) * rate ** lag`` and the bound ``‖∂L_T/∂s_(T-2)‖ * bound ** (lag - 1)``;
- :func:`draw_jacobians`: ``‖∂s_(j+1)/∂s_j‖`` along one sequence, with ``bound`` where finite;
- :func:`draw_spectrum`: ``W_rec``'s singular values, and its eigenvalues in the complex
  plane with the unit circle when ``W_rec`` is square (:func:`spectrum_panels` slots);
- :func:`plot_heatmap`: ``log10 ‖∂L_t/∂s_k‖`` over ``(t, k)``.

A panel with nothing to draw says why, in words (``flow.reasons`` where it has the reason).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rnnkit.atomic import atomic_write_bytes

PANEL = (5.0, 4.5)  # inches of one panel in the combined figure


def number(value) -> str:
    """``value`` with 4 significant digits, as the summary prints it; ``n/a`` for NaN."""
    value = float(value)
    return "n/a" if math.isnan(value) else f"{value:.4g}"


def figure(width: float, height: float):
    """An empty figure on the Agg canvas, ``width`` x ``height`` inches at 100 dpi."""
    # Figure + the Agg canvas directly: pyplot would switch the whole process's backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def png(fig) -> bytes:
    """``fig`` laid out and encoded as PNG."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _positive(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isfinite(y) & (y > 0)
    return x[keep], y[keep]


def _empty(ax, title: str, why: str) -> None:
    """A panel with nothing to plot: its title and the reason, as text."""
    ax.text(0.5, 0.5, why, ha="center", va="center", wrap=True, fontsize=9)
    ax.set_title(title)
    ax.set_axis_off()


def _finish(ax, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _decades(ax) -> None:
    """Label a ``log10`` y axis as powers of ten, or as the values over < 2 decades."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    low, high = ax.get_ylim()
    if high - low >= 2:
        ax.yaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"$10^{{{v:g}}}$"))
    else:
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{10**v:.3g}"))


def draw_lag(ax, flow) -> None:
    """``‖∂L_T/∂s_k‖`` against the lag ``T - k``, log scale, with the fit and the bound.

    The axis holds ``log10`` of the norms, labelled as powers of ten: matplotlib's own log
    axis breaks on the hundreds of decades an exploding or vanishing gradient can span.
    The limits follow the norms and the fit; the bound, which can run off far above a
    vanishing gradient, is drawn within them.
    """
    fit = flow.fit
    title = f"{flow.verdict}: ×{number(fit.factor)} over {fit.span} steps"
    lags, norms = _positive(flow.lags.astype(float), flow.last_row)
    if not norms.size:
        _empty(ax, title, "no finite, nonzero gradient norm to plot")
        return
    ax.plot(lags, np.log10(norms), "o-", markersize=2.5, linewidth=1, label="‖∂L_T/∂s_k‖")
    if math.isfinite(fit.rate) and fit.rate > 0:
        span = np.arange(flow.steps, dtype=float)
        line = (fit.intercept + span * math.log(fit.rate)) / math.log(10)  # log10(e^a rate^lag)
        ax.plot(span, line, "--", linewidth=1.2, label=f"fit: ×{number(fit.rate)} per step")
    start = flow.last_row[-2] if flow.steps > 1 else math.nan  # lag 1
    if math.isfinite(flow.bound) and flow.bound > 0 and math.isfinite(start) and start > 0:
        limits = ax.get_ylim()
        span = np.arange(1, flow.steps, dtype=float)
        bound = math.log10(start) + (span - 1) * math.log10(flow.bound)  # log10 of start·b^(lag-1)
        label = f"bound (λ₁γ)^lag, λ₁γ = {number(flow.bound)}"
        ax.plot(span, bound, ":", color="gray", linewidth=1.2, label=label)
        ax.set_ylim(limits)
    _decades(ax)
    _finish(ax, "lag T − k (steps back from the last step)", "gradient norm (log scale)", title)


def draw_jacobians(ax, flow) -> None:
    """``‖∂s_(j+1)/∂s_j‖`` along the trajectory, with the line ``bound`` where it is finite."""
    title = f"one-step Jacobians along sequence {flow.batch_index}"
    steps, jac = _positive(np.arange(flow.jacobian_norms.size, dtype=float), flow.jacobian_norms)
    if not jac.size:
        why = flow.reasons.get("jacobian_norms", f"no step to step Jacobian in T={flow.steps}")
        _empty(ax, title, why)
        return
    ax.plot(steps, jac, linewidth=1, label="‖∂s_(j+1)/∂s_j‖ (spectral norm)")
    ax.axhline(1.0, color="black", linewidth=0.6)
    if math.isfinite(flow.bound):
        label = f"bound {number(flow.bound)}"
        ax.axhline(flow.bound, color="red", linestyle="--", linewidth=1, label=label)
    _finish(ax, "step j", "one-step Jacobian norm", title)


def spectrum_panels(flow) -> int:
    """How many slots :func:`draw_spectrum` fills: 2 when ``W_rec`` is square, else 1."""
    return 2 if flow.eigenvalues.size else 1


def draw_spectrum(fig, slots: Sequence, flow) -> None:
    """``W_rec``'s singular values in ``slots[0]``; its eigenvalues and the unit circle in
    ``slots[1]`` when it is square. ``slots``: :func:`spectrum_panels` subplot specs of ``fig``.
    """
    ax = fig.add_subplot(slots[0])
    if flow.singular_values.size:
        index = np.arange(1, flow.singular_values.size + 1)
        ax.plot(index, flow.singular_values, "o", markersize=3, label="singular values")
        ax.axhline(1.0, color="black", linewidth=0.6)
        if math.isfinite(flow.gamma) and flow.gamma != 1.0:
            ax.axhline(1.0 / flow.gamma, color="red", linestyle="--", label="1/γ")
        title = f"W_rec: λ₁ = {number(flow.max_singular_value)}"
        _finish(ax, "index", "singular value", title)
    else:
        _empty(ax, "W_rec", flow.reasons.get("max_singular_value", "no recurrent weight"))
    if spectrum_panels(flow) == 2:
        ax = fig.add_subplot(slots[1])
        angle = np.linspace(0.0, 2.0 * math.pi, 361)
        ax.plot(np.cos(angle), np.sin(angle), color="gray", linewidth=0.8, label="unit circle")
        eigen = flow.eigenvalues
        ax.plot(eigen.real, eigen.imag, "x", markersize=4, label="eigenvalues")
        ax.axhline(0.0, color="black", linewidth=0.4)
        ax.axvline(0.0, color="black", linewidth=0.4)
        ax.set_aspect("equal", adjustable="datalim")
        title = f"eigenvalues: spectral radius ρ = {number(flow.spectral_radius)}"
        _finish(ax, "real part", "imaginary part", title)


def gradient_flow_png(flow) -> bytes:
    """All panels in one row: lag, Jacobians, then the spectrum's one or two."""
    n = 2 + spectrum_panels(flow)
    fig = figure(PANEL[0] * n, PANEL[1])
    grid = fig.add_gridspec(1, n)
    draw_lag(fig.add_subplot(grid[0]), flow)
    draw_jacobians(fig.add_subplot(grid[1]), flow)
    draw_spectrum(fig, [grid[i] for i in range(2, n)], flow)
    fig.suptitle(f"gradient flow: {flow.cell}, layer {flow.layer}", fontsize=11)
    return png(fig)


def heatmap_png(flow) -> bytes:
    """``log10 ‖∂L_t/∂s_k‖`` over (t, k), k ≤ t; needs every pair."""
    if flow.grad_norms is None:
        raise ValueError(
            f"the heat map needs every (t, k) pair; run gradient_flow with pairs='all' "
            f"(this run has T={flow.steps} and only the last row)"
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.log10(flow.grad_norms)  # (T, T)
    values[~np.isfinite(values)] = np.nan
    fig = figure(6.5, 5.5)
    ax = fig.add_subplot()
    image = ax.imshow(values, origin="lower", aspect="auto", cmap="viridis")
    fig.colorbar(image, ax=ax, label="log10 ‖∂L_t/∂s_k‖")
    ax.set_xlabel("state step k")
    ax.set_ylabel("loss step t")
    ax.set_title(f"gradient flow: {flow.cell}, layer {flow.layer}")
    return png(fig)


def plot_gradient_flow(flow, path: Path) -> None:
    """Write :func:`gradient_flow_png` to ``path``, atomically."""
    atomic_write_bytes(path, gradient_flow_png(flow))


def plot_heatmap(flow, path: Path) -> None:
    """Write :func:`heatmap_png` to ``path``, atomically."""
    atomic_write_bytes(path, heatmap_png(flow))

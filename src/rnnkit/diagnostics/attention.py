"""Attention heat maps: where an encoder–decoder looked while writing each output token.

``plot_attention(weights, src_tokens, out_tokens, path)`` draws ``weights[u, j]``, the
attention of output step ``u`` on source position ``j`` (each row a distribution over
the source, from ``Hypothesis.attention``), with the source tokens along x and the
generated tokens along y, and writes the PNG atomically.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rnnkit.atomic import atomic_write_bytes

_CELL_INCHES = 0.32  # size of one source × output cell
_MIN_INCHES, _MAX_INCHES = 3.0, 30.0


def _shown(token: str) -> str:
    """A tick label that stays visible: spaces and control characters made explicit."""
    named = {" ": "␣", "\t": "⇥", "\n": "↵"}
    if token in named:
        return named[token]
    return token.encode("unicode_escape").decode("ascii") if not token.isprintable() else token


def plot_attention(
    weights,
    src_tokens: Sequence[str],
    out_tokens: Sequence[str],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> Path:
    """Write the ``(U, S)`` attention ``weights`` as a heat map PNG at ``path``.

    ``src_tokens`` (``S`` labels, x axis) and ``out_tokens`` (``U`` labels, y axis, top
    to bottom in output order) name the rows and columns; weights are drawn on a fixed
    0–1 colour scale so maps of different inputs compare. Returns the path.
    """
    if hasattr(weights, "detach"):
        weights = weights.detach().cpu().numpy()
    w = np.asarray(weights, dtype=np.float64)
    src_tokens, out_tokens = list(src_tokens), list(out_tokens)
    if w.ndim != 2 or w.shape != (len(out_tokens), len(src_tokens)):
        raise ValueError(
            f"weights must have shape (outputs, sources) = ({len(out_tokens)}, "
            f"{len(src_tokens)}), got {w.shape}"
        )
    if w.size == 0:
        raise ValueError("nothing to plot: no source or no output tokens")
    if not np.isfinite(w).all():
        raise ValueError("the attention weights must be finite numbers")
    # Figure + the Agg canvas directly: pyplot would switch the whole process's backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    U, S = w.shape

    def inches(n: int) -> float:
        return min(_MAX_INCHES, max(_MIN_INCHES, 1.5 + _CELL_INCHES * n))

    fig = Figure(figsize=(inches(S) + 1.0, inches(U)), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(w, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(S), [_shown(t) for t in src_tokens], rotation=90 if S > 1 else 0)
    ax.set_yticks(range(U), [_shown(t) for t in out_tokens])
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    ax.tick_params(labelsize=8 if max(S, U) < 40 else 6)
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="attention weight")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path


__all__ = ["plot_attention"]

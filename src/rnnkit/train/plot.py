"""The loss-curve PNG written at the end of a run."""

from __future__ import annotations

import io
import math
from pathlib import Path

from rnnkit.atomic import atomic_write_bytes


def plot_losses(history: list[dict], path: Path, ylabel: str = "loss") -> None:
    """Training and validation loss against step, as a PNG at ``path``."""
    # Figure + the Agg canvas directly: pyplot would switch the whole process's backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    train = [(r["step"], r["loss"]) for r in history if _finite(r.get("loss"))]
    val = [(r["step"], r["val_loss"]) for r in history if _finite(r.get("val_loss"))]
    if train:
        ax.plot(*zip(*train, strict=True), label="train", linewidth=1.2)
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation", linewidth=1.2, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if train or val:
        ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)

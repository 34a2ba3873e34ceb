"""Prediction-against-truth PNGs for the ``rnnkit esn`` commands."""

from __future__ import annotations

import io
import os

import numpy as np

from rnnkit.atomic import atomic_write_with


def plot_predictions(path: str | os.PathLike, panels: list[dict]) -> None:
    """One panel per dict, stacked, written as a PNG at ``path``.

    Each dict holds ``title``, ``truth`` and ``prediction`` (1-D, same length),
    optionally ``start`` (the step of the first point, default 0) and ``ylabel``.
    """
    # Figure + the Agg canvas directly: pyplot would switch the whole process's backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.0 * len(panels)), dpi=100)
    FigureCanvasAgg(fig)
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(len(panels), 1, i + 1)
        truth = np.asarray(panel["truth"]).ravel()
        prediction = np.asarray(panel["prediction"]).ravel()
        steps = panel.get("start", 0) + np.arange(len(truth))
        ax.plot(steps, truth, label="truth", linewidth=1.4, color="black")
        ax.plot(steps, prediction, "--", label="prediction", linewidth=1.2, color="tab:orange")
        ax.set_title(panel["title"], fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel(panel.get("ylabel", "value"))
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()

    def write(tmp) -> None:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        tmp.write_bytes(buffer.getvalue())

    atomic_write_with(path, write)

"""Classification scores: accuracy, macro-F1, the confusion matrix as text and as a PNG.

Labels are integer class ids ``0..C-1`` (NumPy arrays, tensors or lists).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np

from rnnkit.atomic import atomic_write_bytes


def _ids(values, name: str) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of class ids, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class ids, got dtype {array.dtype}")
    if array.size and array.min() < 0:
        raise ValueError(f"{name} holds a negative class id ({array.min()})")
    return array.astype(np.int64)


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = _ids(y_true, "y_true"), _ids(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {len(y_true)} and {len(y_pred)}")
    if y_true.size == 0:
        raise ValueError("no labels to score")
    return y_true, y_pred


def accuracy(y_true, y_pred) -> float:
    """The fraction of predictions equal to the true class."""
    y_true, y_pred = _pair(y_true, y_pred)
    return float((y_true == y_pred).mean())


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """Counts ``(C, C)`` int64: ``matrix[i, j]`` = examples of true class i predicted as j.

    ``num_classes`` defaults to one more than the largest id seen.
    """
    y_true, y_pred = _pair(y_true, y_pred)
    seen = int(max(y_true.max(), y_pred.max())) + 1
    C = seen if num_classes is None else int(num_classes)
    if seen > C:
        raise ValueError(f"a class id {seen - 1} is outside num_classes={C}")
    return np.bincount(y_true * C + y_pred, minlength=C * C).reshape(C, C).astype(np.int64)


def f1_per_class(matrix: np.ndarray) -> np.ndarray:
    """F1 of each class from a confusion matrix: ``2 TP / (2 TP + FP + FN)`` (0 when 0/0)."""
    matrix = np.asarray(matrix)
    tp = np.diag(matrix).astype(np.float64)
    fp = matrix.sum(0) - tp  # predicted as the class, truly another
    fn = matrix.sum(1) - tp  # of the class, predicted as another
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)


def macro_f1(y_true, y_pred, num_classes: int | None = None) -> float:
    """The unweighted mean of the per-class F1 over the classes that occur.

    A class "occurs" when it is a true or a predicted label (as scikit-learn's
    ``f1_score(average="macro")``); classes absent from both are left out.
    """
    matrix = confusion_matrix(y_true, y_pred, num_classes)
    present = (matrix.sum(0) + matrix.sum(1)) > 0
    return float(f1_per_class(matrix)[present].mean())


def format_confusion(matrix: np.ndarray, classes: Sequence[str], max_name: int = 12) -> str:
    """The confusion matrix as a text table (rows: true class, columns: predicted)."""
    matrix = np.asarray(matrix)
    names = [_short(str(c), max_name) for c in classes]
    if matrix.shape != (len(names), len(names)):
        raise ValueError(f"a {matrix.shape} matrix does not fit {len(names)} class names")
    corner = "true \\ pred"
    first = max([len(corner), *(len(n) for n in names)])
    width = max([1, *(len(n) for n in names), *(len(str(v)) for v in matrix.flat)])
    lines = [corner.ljust(first) + "".join(" " + n.rjust(width) for n in names)]
    for name, row in zip(names, matrix.tolist(), strict=True):
        lines.append(name.ljust(first) + "".join(" " + str(v).rjust(width) for v in row))
    return "\n".join(lines)


def _short(name: str, limit: int) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def plot_confusion(
    matrix: np.ndarray,
    classes: Sequence[str],
    path: str | os.PathLike[str],
    title: str | None = None,
) -> None:
    """Write the confusion matrix as a PNG (counts in the cells, colour by row share)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matrix = np.asarray(matrix)
    C = len(classes)
    if matrix.shape != (C, C):
        raise ValueError(f"a {matrix.shape} matrix does not fit {C} class names")
    rows = matrix.sum(1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)  # (C, C)
    size = min(12.0, 3.0 + 0.45 * C)
    fig = Figure(figsize=(size + 1.0, size), dpi=100)
    FigureCanvasAgg(fig)  # Agg directly: pyplot would switch the process's backend
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    names = [_short(str(c), 12) for c in classes]
    tilt = C > 4 and max(len(n) for n in names) > 3  # long names side by side overlap
    ax.set_xticks(range(C), names, rotation=45 if tilt else 0, ha="right" if tilt else "center")
    ax.set_yticks(range(C), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if C <= 30:  # counts stay readable up to about this many classes
        for i in range(C):
            for j in range(C):
                color = "white" if share[i, j] > 0.5 else "black"
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color=color, fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())


__all__ = [
    "accuracy",
    "confusion_matrix",
    "f1_per_class",
    "format_confusion",
    "macro_f1",
    "plot_confusion",
]

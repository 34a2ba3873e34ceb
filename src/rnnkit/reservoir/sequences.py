"""The user-facing layouts of sequences and the time-major batches the reservoirs run.

An echo state network accepts, like ReservoirPy, one sequence ``(T, F)``, a batch
``(B, T, F)`` (batch first at this boundary), or a list of ``(T_i, F)`` arrays of any
lengths; NumPy arrays or tensors. Internally sequences of equal length are run together
as one time-major batch ``(T, B, F)``, and results go back in the layout and type they
came in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

LAYOUT_HELP = "(T, features), (B, T, features), or a list of (T_i, features) arrays"


@dataclass
class Sequences:
    """Sequences regrouped by length.

    ``groups``: ``(indices, batch)`` pairs, ``batch`` time-major ``(T, B, F)`` holding
    the sequences ``indices`` (positions in the caller's order). ``layout``: ``"single"``
    | ``"batch"`` | ``"list"``; ``numpy``: whether the caller passed NumPy.
    """

    groups: list[tuple[list[int], Tensor]]
    lengths: list[int]
    features: int
    layout: str
    numpy: bool

    @property
    def count(self) -> int:
        return len(self.lengths)

    def restore(self, outputs: list[Tensor]):
        """``outputs[g]`` ``(T, B, O)`` for each group, in the caller's layout and type."""
        per_sequence: list[Tensor | None] = [None] * self.count
        for (indices, _), out in zip(self.groups, outputs, strict=True):
            for column, index in enumerate(indices):
                per_sequence[index] = out[:, column]  # (T, O)
        convert = (lambda t: t.numpy()) if self.numpy else (lambda t: t)
        if self.layout == "single":
            return convert(per_sequence[0].contiguous())
        if self.layout == "batch":
            return convert(torch.stack(per_sequence))  # (B, T, O)
        return [convert(t.contiguous()) for t in per_sequence]

    def restore_all(self, out: Tensor):
        """``out`` ``(T, S, O)`` holding every sequence in the caller's order, restored."""
        whole = Sequences(
            [(list(range(self.count)), out)], self.lengths, 0, self.layout, self.numpy
        )
        return whole.restore([out])


def as_sequences(value, name: str, dtype: torch.dtype) -> Sequences:
    """Read ``value`` (one of the layouts above) into time-major groups of ``dtype``."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{name} is an empty list; pass at least one sequence")
        items = [_tensor(v, f"{name}[{i}]", dtype) for i, v in enumerate(value)]
        if any(t.dim() != 2 for t in items):
            raise ValueError(f"{name} must be {LAYOUT_HELP}; a list item is not 2-D")
        layout, numpy = "list", not all(isinstance(v, Tensor) for v in value)
    else:
        t = _tensor(value, name, dtype)
        numpy = not isinstance(value, Tensor)
        if t.dim() == 2:
            items, layout = [t], "single"
        elif t.dim() == 3:
            items, layout = list(t.unbind(0)), "batch"
        else:
            raise ValueError(f"{name} must be {LAYOUT_HELP}, got shape {tuple(t.shape)}")
    features = {t.shape[1] for t in items}
    if len(features) > 1:
        raise ValueError(f"{name} sequences have different feature counts {sorted(features)}")
    by_length: dict[int, list[int]] = {}
    for index, t in enumerate(items):
        by_length.setdefault(t.shape[0], []).append(index)
    groups = [
        (indices, torch.stack([items[i] for i in indices], dim=1))  # (T, B, F)
        for indices in by_length.values()
    ]
    return Sequences(groups, [t.shape[0] for t in items], features.pop(), layout, numpy)


def check_paired(inputs: Sequences, targets: Sequences) -> None:
    """Targets must hold as many sequences as inputs, each as long as its input."""
    if inputs.lengths != targets.lengths:
        raise ValueError(
            f"targets must match inputs sequence by sequence: got lengths "
            f"{_few(targets.lengths)} for inputs of lengths {_few(inputs.lengths)}"
        )


def _tensor(value, name: str, dtype: torch.dtype) -> Tensor:
    try:
        t = torch.as_tensor(np.asarray(value) if not isinstance(value, Tensor) else value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a numeric array or tensor ({error})") from None
    if t.is_complex():
        raise ValueError(f"{name} must be real, got dtype {t.dtype}")
    t = t.detach().to(device="cpu", dtype=dtype)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contain NaN or inf; clean or impute them first")
    return t


def _few(values: list[int]) -> str:
    shown = ", ".join(str(v) for v in values[:5])
    return f"[{shown}{', …' if len(values) > 5 else ''}]"

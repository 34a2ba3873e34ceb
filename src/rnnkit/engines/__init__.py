"""Engines: interchangeable ways to run a cell over a whole sequence.

``loop`` is the reference (autograd through the cell's step); ``native`` calls
PyTorch's own kernels where a cell is exactly a plain RNN / LSTM / GRU; ``fused`` is
rnnkit's C++ recurrence with hand-written BPTT. ``auto`` takes the first engine of
:func:`auto_order` that supports the configuration.
"""

from __future__ import annotations

import torch

from rnnkit.cells.base import RecurrentCell
from rnnkit.engines.base import Engine, Unroll, reverse_padded
from rnnkit.engines.fused import FusedEngine
from rnnkit.engines.loop import LoopEngine
from rnnkit.engines.native import NativeEngine, native_kernel

ENGINES: dict[str, Engine] = {
    "loop": LoopEngine(),
    "native": NativeEngine(),
    "fused": FusedEngine(),
}

# Fastest first, as benchmarks/speed.py measures them on the CPU: the fused engine
# beats torch's RNN and GRU kernels and runs every variant; ``loop`` runs everything
# and closes the list.
AUTO_ORDER: tuple[str, ...] = ("fused", "native", "loop")


def auto_order(cell: RecurrentCell, unroll: Unroll) -> tuple[str, ...]:
    """The engines ``auto`` tries for this configuration, fastest first."""
    if unroll.x.shape[0] == 1:
        # One step: PyTorch's fused kernels carry a fixed cost per call (oneDNN's LSTM
        # about 2 ms forward+backward at H=256, against 0.2-0.6 ms through the cell).
        return ("loop",)
    if native_kernel(cell) is torch.lstm:
        # torch's oneDNN LSTM keeps its gates in one blocked layout across the whole
        # sequence and stays ahead of the fused LSTM.
        return ("native", "fused", "loop")
    return AUTO_ORDER


def check_engine(name: str) -> str:
    if name != "auto" and name not in ENGINES:
        allowed = ", ".join(repr(n) for n in ("auto", *ENGINES))
        raise ValueError(f"engine={name!r} is not known; expected one of {allowed}")
    return name


def select_engine(name: str, cell: RecurrentCell, unroll: Unroll) -> Engine:
    """The engine to run ``unroll`` with: ``name``, or the fastest that applies for auto."""
    check_engine(name)
    if name != "auto":
        reason = ENGINES[name].unsupported(cell, unroll)
        if reason is not None:
            raise ValueError(f"engine={name!r} cannot run this configuration: {reason}")
        return ENGINES[name]
    for candidate in auto_order(cell, unroll):
        if ENGINES[candidate].unsupported(cell, unroll) is None:
            return ENGINES[candidate]
    reason = ENGINES["loop"].unsupported(cell, unroll)
    raise ValueError(f"no engine can run this configuration: {reason}")


__all__ = [
    "AUTO_ORDER",
    "ENGINES",
    "Engine",
    "FusedEngine",
    "LoopEngine",
    "NativeEngine",
    "Unroll",
    "auto_order",
    "check_engine",
    "reverse_padded",
    "select_engine",
]

"""Engines: interchangeable ways to run a cell over a whole sequence.

``loop`` is the reference (autograd through the cell's step); ``native`` calls
PyTorch's own kernels where a cell is exactly a plain RNN / LSTM / GRU; ``fused`` is
rnnkit's C++ recurrence with hand-written BPTT; ``triton`` runs Triton GPU kernels
that keep the recurrent weights on chip across steps (CUDA only; imported lazily).
``auto`` takes the first engine of :func:`auto_order` that supports the configuration.
"""

from __future__ import annotations

import torch

from rnnkit.cells.base import RecurrentCell
from rnnkit.engines.base import Engine, Unroll, reverse_padded
from rnnkit.engines.fused import FusedEngine
from rnnkit.engines.loop import LoopEngine
from rnnkit.engines.native import NativeEngine, native_kernel
from rnnkit.engines.triton import TritonEngine

ENGINES: dict[str, Engine] = {
    "loop": LoopEngine(),
    "native": NativeEngine(),
    "fused": FusedEngine(),
    "triton": TritonEngine(),
}

# What `engine=` and `--engine` accept.
ENGINE_NAMES: tuple[str, ...] = ("auto", *ENGINES)

# Fastest first, as benchmarks/speed.py measures them on the CPU (T=100, B=32, H=256,
# float32: fused at 0.89x torch.nn.LSTM, 0.55x torch.nn.GRU); ``native`` serves what
# fused cannot run (GPU tensors, half precision); ``loop`` runs everything and closes
# the list.
AUTO_ORDER: tuple[str, ...] = ("fused", "native", "loop")


def auto_order(cell: RecurrentCell, unroll: Unroll) -> tuple[str, ...]:
    """The engines ``auto`` tries for this configuration, fastest first."""
    if unroll.x.shape[0] == 1:
        # One step: a whole-sequence kernel's fixed cost per call outweighs it (oneDNN's
        # LSTM takes about 2 ms forward+backward at H=256, against 0.2-0.6 ms through
        # the cell).
        return ("loop",)
    if unroll.x.device.type == "cuda":
        # Provisional until timed on an H100 (benchmarks/speed_gpu.py): triton first for
        # the cells cuDNN lacks (the alternative is the per-step loop) and for small
        # batches, where the recurrence is latency-bound; cuDNN first otherwise.
        if native_kernel(cell) is None or unroll.x.shape[1] <= 16:
            return ("triton", "native", "loop")
        return ("native", "triton", "loop")
    if unroll.x.shape[1] < 16 and native_kernel(cell) is torch.lstm:
        # Small batches of a plain LSTM: torch's oneDNN LSTM kernel is 2-3x faster than
        # fused (B=1: 2.1 against 6.6 ms at T=200, H=128); from B=32 on they are even.
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
    "ENGINE_NAMES",
    "Engine",
    "FusedEngine",
    "LoopEngine",
    "NativeEngine",
    "TritonEngine",
    "Unroll",
    "auto_order",
    "check_engine",
    "reverse_padded",
    "select_engine",
]

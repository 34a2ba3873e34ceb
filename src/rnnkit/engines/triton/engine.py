"""The ``triton`` engine: whole-sequence GPU kernels that keep ``W_hh`` on chip.

Each cell family (``lstm.py``, ``gru.py``, ``elman.py``) computes the input side of every
step as one matrix product in torch, then runs all T steps in one kernel launch whose
programs each load their part of ``W_hh`` once and keep it for every step, with the
gate arithmetic fused in; the backward is one launch walking the steps in reverse
carrying ``dh`` (and ``dc``), after which the weight and input gradients are single
products over all T·B rows. :mod:`rnnkit.engines.triton.plan` says which sizes run
on which program layout. The engine itself handles direction and padding, as the
fused engine does.

On the CPU the engine runs only under Triton's interpreter (``TRITON_INTERPRET=1`` set
before the kernels are first imported): slowly, for tests.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys

import torch
from torch import Tensor

from rnnkit.cells.base import RecurrentCell, State
from rnnkit.cells.elman import ElmanCell
from rnnkit.cells.gru import GRUCell
from rnnkit.cells.leaky import LeakyCell
from rnnkit.cells.lstm import LSTMCell
from rnnkit.engines.base import Engine, Unroll, reverse_padded
from rnnkit.engines.triton.plan import MAX_HIDDEN, SLOTS, choose_plan, min_block_h

DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def family(cell: RecurrentCell) -> tuple[str | None, str | None]:
    """The module of ``cell``'s kernels (``"lstm"``, ``"gru"``, ``"elman"``), or why none."""
    kind = type(cell)
    if kind is LSTMCell:
        if cell.proj_size:
            return None, "the triton LSTM kernels have no projection (proj_size)"
        return "lstm", None
    if kind is GRUCell:
        return "gru", None
    if kind in (ElmanCell, LeakyCell):
        return "elman", None
    return None, f"no triton kernel for {cell!r}"


@functools.cache
def triton_missing() -> str | None:
    """Why triton cannot be imported, or None."""
    try:
        import triton  # noqa: F401
    except Exception as err:  # ImportError, or a broken installation
        return f"triton is not available ({type(err).__name__}: {err})"
    return None


def kernels_interpreted() -> bool | None:
    """Whether the kernels run under the interpreter: fixed when they are first imported
    (``@triton.jit`` reads TRITON_INTERPRET as it decorates), the variable until then."""
    common = sys.modules.get("rnnkit.engines.triton.common")
    if common is None:
        return os.environ.get("TRITON_INTERPRET") == "1"
    return type(common.sigmoid).__name__ == "InterpretedFunction"


class TritonEngine(Engine):
    """Triton kernels for Elman (tanh, relu, sigmoid), leaky, LSTM (plain, peephole, layer
    norm) and GRU (reset after or before) cells, on CUDA tensors (or the CPU under the
    interpreter), in bfloat16, float16, float32 and float64. Half-precision runs multiply
    in their type and accumulate, carry the cell state and take statistics in float32;
    float32 products use TF32 only where ``torch.backends.cuda.matmul.allow_tf32`` says.

    ``plan_settings`` (``block_b``, ``block_b_bwd``, ``block_h``, ``persistent``,
    ``grid_sync``, ``num_warps``) force a program layout
    (:func:`rnnkit.engines.triton.plan.choose_plan`): for tests and tuning.
    """

    name = "triton"
    SETTINGS = ("block_b", "block_b_bwd", "block_h", "persistent", "grid_sync", "num_warps")

    def __init__(self, **plan_settings) -> None:
        unknown = sorted(set(plan_settings) - set(self.SETTINGS))
        if unknown:
            allowed = ", ".join(self.SETTINGS)
            raise ValueError(f"unknown triton plan settings {unknown}; expected some of {allowed}")
        self.plan_settings = plan_settings

    def unsupported(self, cell: RecurrentCell, unroll: Unroll) -> str | None:
        module, reason = family(cell)
        if module is None:
            return reason
        if unroll.teacher is not None:
            return "teacher forcing runs through the loop engine"
        if unroll.x.dtype not in DTYPES:
            return f"the triton kernels take float16/32/64 or bfloat16, not {unroll.x.dtype}"
        device = unroll.x.device.type
        if device != "cuda" and not (device == "cpu" and kernels_interpreted()):
            return (
                f"the triton kernels run on CUDA tensors, not {device} "
                "(TRITON_INTERPRET=1 runs them on the CPU, slowly)"
            )
        H, B = cell.hidden_size, unroll.x.shape[1]
        slots = SLOTS[module]
        dtype = unroll.x.dtype
        fits = choose_plan(
            slots, H, H, max(B, 1), cuda=device == "cuda", itemsize=dtype.itemsize,
            min_block_h=min_block_h(slots),
        )  # fmt: skip
        if H > MAX_HIDDEN or fits is None:
            return f"hidden_size {H} in {dtype} is too large for W_hh to stay on chip"
        return triton_missing()

    def run(self, cell: RecurrentCell, unroll: Unroll) -> tuple[Tensor, State]:
        x, lengths = unroll.x, unroll.lengths
        T, B = x.shape[:2]
        if T == 0 or B == 0:
            return x.new_zeros(T, B, cell.output_size), tuple(unroll.state)
        if lengths is not None and bool((lengths >= T).all()):
            lengths = None  # every sequence fills the window: no per-step validity
        module = importlib.import_module(f"rnnkit.engines.triton.{family(cell)[0]}")
        from rnnkit.engines.triton.options import KernelOptions

        opts = KernelOptions(x.device, bool(kernels_interpreted()), self.plan_settings)
        if unroll.reverse:
            x = reverse_padded(x, lengths)  # the kernels only run forwards in time
        mask = None if unroll.state_mask is None else unroll.state_mask.to(x.dtype)
        y, state = module.run(cell, x, tuple(unroll.state), lengths, mask, opts)
        if unroll.reverse:
            y = reverse_padded(y, lengths)
        return y, state

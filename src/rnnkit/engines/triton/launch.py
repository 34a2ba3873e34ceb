"""Launching a recurrence kernel over the steps: one launch, or one per step and phase.

Every kernel ends its positional arguments with ``counter, t_start, n_steps, n_groups``, and takes
the constexprs ``BB, BH, PHASE, NPH, SYNC, DOT, ACC, PREC``; ``PHASE = 0`` runs all ``NPH``
phases of ``n_steps`` steps (a barrier after each), ``PHASE = p`` only phase ``p`` of one
step.
"""

from __future__ import annotations

import warnings

import torch
import triton.language as tl

from rnnkit.engines.triton.plan import Plan

_ACC = {torch.float64: tl.float64}  # else float32
_DOT = {torch.float64: tl.float64, torch.float32: tl.float32, torch.float16: tl.float16}


def interpreted(kernel) -> bool:
    """Whether ``kernel`` was decorated under the interpreter (TRITON_INTERPRET=1 at import)."""
    return type(kernel).__name__ == "InterpretedFunction"


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """What the kernels keep state and statistics in: float32, or float64 for float64."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def dtype_constants(dtype: torch.dtype, kernel) -> dict:
    """``DOT`` (the products' operand type), ``ACC`` (accumulator, state) and ``PREC``."""
    dot = _DOT.get(dtype, tl.bfloat16)
    if dot == tl.bfloat16 and interpreted(kernel):
        dot = tl.float32  # the interpreter multiplies bfloat16 bit patterns as integers
    tf32 = dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32
    return {"DOT": dot, "ACC": _ACC.get(dtype, tl.float32), "PREC": "tf32" if tf32 else "ieee"}


_refused: list[str] = []  # the first refusal's message: warned about once


def _warn_refused(err: RuntimeError) -> None:
    if _refused:
        return
    _refused.append(str(err))
    warnings.warn(
        f"rnnkit triton: one-launch recurrence refused ({err}); running one launch per "
        "step instead (set RNNKIT_TRITON_PERSISTENT=0 to skip the attempt)",
        RuntimeWarning, stacklevel=3,
    )  # fmt: skip


def run_steps(kernel, plan: Plan, args: list, steps: int, phases: int, backward: bool, **consts):
    """Run ``kernel`` over ``steps`` time steps (t = 0.. forward, t = steps-1.. backward):
    one launch when ``plan.persistent``, else (or when CUDA refuses the cooperative launch)
    ``steps · phases`` launches, one per step and phase."""
    if steps == 0:
        return
    device = args[0].device
    grid = (plan.n_groups, plan.n_h)
    # num_stages=1: the chunk loop is short, and double-buffering its operand would cost
    # shared memory the held weights need.
    consts = {"BB": plan.block_b, "BH": plan.block_h, "num_warps": plan.num_warps,
              "num_stages": 1, "NPH": phases, **consts}  # fmt: skip
    counter = torch.zeros(plan.n_groups, dtype=torch.int32, device=device)
    if plan.persistent:
        start = steps - 1 if backward else 0
        # Cooperative: CUDA refuses the launch unless every program can be resident at
        # once, where a grid barrier among programs that cannot all run would hang.
        extra = {"launch_cooperative_grid": True} if plan.grid_sync else {}
        try:
            kernel[grid](*args, counter, start, steps, plan.n_groups, PHASE=0,
                         SYNC=plan.grid_sync, **extra, **consts)  # fmt: skip
            return
        except RuntimeError as err:  # the launch was refused: nothing ran
            if not plan.grid_sync:
                raise
            _warn_refused(err)
    for s in range(steps):
        t = steps - 1 - s if backward else s
        for phase in range(1, phases + 1):
            kernel[grid](*args, counter, t, 1, plan.n_groups, PHASE=phase, SYNC=False, **consts)

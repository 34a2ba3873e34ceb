"""Compile every triton kernel for an H100 (sm_90) without a GPU, for the slow test.

Each kernel is compiled in bfloat16 with every option on (lengths, recurrent dropout,
peepholes, layer norm, learned leak, ...) on the layout the engine would pick on an
H100 for ``hidden`` units, grid barrier included when the units are split.
"""

from __future__ import annotations

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from rnnkit.engines.triton import elman_kernels, gru_kernels, lstm_kernels
from rnnkit.engines.triton.plan import SLOTS, choose_plan, min_block_h, next_pow2

INTS = {"B", "H", "t_start", "n_steps", "n_groups"}
FLOAT32_POINTERS = {"cs", "stats", "gh", "part", "dh", "dc"}  # state and statistics
INT32_POINTERS = {"lengths", "counter"}


def signature(kernel, consts: dict) -> dict:
    sig = {}
    for name in kernel.arg_names:
        if name in consts:
            sig[name] = "constexpr"
        elif name in INTS:
            sig[name] = "i32"
        elif name == "eps":
            sig[name] = "fp32"
        elif name in INT32_POINTERS:
            sig[name] = "*i32"
        else:
            sig[name] = "*fp32" if name in FLOAT32_POINTERS else "*bf16"
    return sig


def variants(hidden: int):
    """(name, kernel, constexprs, family) of every kernel and option set."""
    common = {"HAS_LEN": True, "HAS_MASK": True, "PHASE": 0, "DOT": tl.bfloat16,
              "ACC": tl.float32, "PREC": "ieee"}  # fmt: skip
    rp = max(16, next_pow2(hidden))
    for ln in (False, True):
        lstm = {**common, "PEEP": True, "LN": ln}
        yield f"lstm_forward ln={ln}", lstm_kernels.lstm_forward_kernel, \
            {**lstm, "RP": rp, "NPH": 3 if ln else 1}, "lstm"  # fmt: skip
        yield f"lstm_backward ln={ln}", lstm_kernels.lstm_backward_kernel, \
            {**lstm, "GP": next_pow2(4 * hidden), "NPH": 4 if ln else 2}, "lstm"  # fmt: skip
    for before in (False, True):
        gru = {**common, "BEFORE": before}
        yield f"gru_forward before={before}", gru_kernels.gru_forward_kernel, \
            {**gru, "RP": rp, "HAS_BIAS": not before, "NPH": 2 if before else 1}, "gru"  # fmt: skip
        gp = next_pow2(2 * hidden if before else 3 * hidden)
        yield f"gru_backward before={before}", gru_kernels.gru_backward_kernel, \
            {**gru, "GP": gp, "NPH": 3 if before else 2}, "gru"  # fmt: skip
    elman = {**common, "ACT": 0, "ALPHA": True}
    yield "elman_forward", elman_kernels.elman_forward_kernel, \
        {**elman, "RP": rp, "NPH": 1}, "elman"  # fmt: skip
    yield "elman_backward", elman_kernels.elman_backward_kernel, \
        {**elman, "GP": rp, "NEED_TOTAL": True, "NPH": 2}, "elman"  # fmt: skip


def compile_all(hidden: int, batch: int = 8) -> dict:
    """{variant name: compiled kernel metadata} for ``hidden`` units and ``batch`` rows."""
    out = {}
    for name, kernel, consts, family in variants(hidden):
        slots = SLOTS[family]
        plan = choose_plan(slots, hidden, hidden, batch, cuda=True, itemsize=2,
                           min_block_h=min_block_h(slots))  # fmt: skip
        plan = plan.backward() if "backward" in name else plan
        consts = {**consts, "BB": plan.block_b, "BH": plan.block_h, "SYNC": plan.grid_sync}
        if "NHP" in kernel.arg_names:
            consts["NHP"] = next_pow2(plan.n_h)
        src = ASTSource(fn=kernel, signature=signature(kernel, consts), constexprs=consts)
        options = {"num_warps": plan.num_warps, "num_stages": 1,
                   "launch_cooperative_grid": plan.grid_sync}  # fmt: skip
        out[name] = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options).metadata
    return out

"""How a recurrence is laid out over Triton programs, by size: which path runs it.

Every kernel runs on a grid ``(n_groups, n_h)``. Program ``(g, k)`` owns hidden units
``k·block_h .. (k+1)·block_h - 1`` with *all* their gates and the batch chunks
``g, g + n_groups, ...`` of ``block_b`` rows. Before the first step it loads the part of
``W_hh`` its units need (forward: their ``slots·block_h`` rows, transposed, ``R × 4·BH``
for an LSTM; backward: their ``block_h`` columns of all ``G`` rows) and keeps it for
every step: Triton stages it in shared memory once, outside the time loop (checked in
the compiled TTGIR: its ``local_alloc`` sits before the loop), and feeds the tensor
cores from there. Three paths follow from the sizes:

``resident``   ``slots · H_pad · R_pad <= RESIDENT_ELEMS`` (LSTM and GRU: H <= 64;
               Elman and leaky: H <= 128): one program holds the whole ``W_hh``
               (``n_h = 1``), so no program waits for another. One launch runs every
               step; as many batch groups as chunks.
``persistent`` larger H on CUDA: ``n_h`` programs split the units (``block_h`` the
               smallest power of two >= 4 that keeps ``n_h <= #SMs``: 64 programs at
               H = 256, 128 at 512 and 1024) and meet at a grid barrier (atomics on a
               per-group counter) wherever a step needs what other programs computed:
               once per step for plain and peephole LSTM, reset-after GRU and Elman,
               3 times for layer norm, twice for reset-before GRU (the same in the
               backward). One cooperative launch runs every step (``n_groups · n_h <=
               #SMs``, all programs co-resident, else CUDA refuses the launch rather
               than hang).
``stepwise``   the same split without the barrier: one launch per step and phase,
               the kernel boundary acting as the barrier; the weights are re-read
               every launch (from L2 while they fit). Used under the Triton
               interpreter (which runs programs one after another, so a spin barrier
               would never return), when ``n_h`` would exceed the SMs (float32 at
               H = 2048), when ``RNNKIT_TRITON_PERSISTENT=0``, and when CUDA refuses
               the cooperative launch.

``block_b`` (and ``block_b_bwd``, the backward's deeper product) keep one chunk's
operand within ``TILE_ELEMS`` and the tiles within ``SMEM_BUDGET``; ``num_warps`` is 8
for the resident path and H >= 1024, else 4. These are provisional: set from shared
memory and ptxas register and spill counts for sm_90 (bfloat16), not yet from timings
on an H100.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

RESIDENT_ELEMS = 16384  # W_hh elements one program holds whole (64 KiB in float32)
MAX_HIDDEN = 2048  # above this a program's slice of W_hh no longer fits on chip
MIN_K = 16  # the smallest product depth tensor cores take (16-bit operands)
SMEM_BUDGET = 220 * 1024  # bytes of shared memory per program (an H100 SM has 227 KiB)
TILE_ELEMS = 8192  # largest per-chunk product operand (rows x depth): more spills (ptxas)


SLOTS = {"lstm": 4, "gru": 4, "elman": 1}  # gate slots per unit in a forward product


def min_block_h(slots: int) -> int:
    """Units per program at least (ptxas register counts on sm_90: fewer spill)."""
    return 4


def next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


@dataclass(frozen=True)
class Plan:
    """One recurrence's layout (see the module docstring)."""

    block_b: int  # batch rows per chunk: the M of every per-step product (forward)
    block_h: int  # hidden units per program, all gates of each
    n_h: int  # programs along the hidden units
    n_groups: int  # programs along the batch, each looping over its chunks
    persistent: bool  # one launch for all steps (else one per step and phase)
    grid_sync: bool  # a grid barrier between phases (persistent with n_h > 1)
    num_warps: int = 4
    block_b_bwd: int = 0  # batch rows per chunk in the backward (0: block_b)

    def backward(self) -> Plan:
        """The backward's layout: the same programs, chunks of ``block_b_bwd`` rows."""
        return replace(self, block_b=self.block_b_bwd or self.block_b, block_b_bwd=0)

    @property
    def path(self) -> str:
        if not self.persistent:
            return "stepwise"
        return "persistent" if self.grid_sync else "resident"


def shared_bytes(slots: int, hidden: int, recurrent: int, block_h: int, block_b: int,
                 itemsize: int, block_b_bwd: int = 0) -> int:  # fmt: skip
    """Shared memory of one program, the larger of forward and backward (as Triton 3.9
    lays them out with ``num_stages=1``): the held ``W_hh`` tile plus one chunk's
    product operand, ``block_b`` rows as deep as the product."""
    rp, gp = next_pow2(recurrent), next_pow2(slots * next_pow2(hidden))
    forward = slots * block_h * rp + block_b * rp  # W_hh^T rows (rp, slots·BH), hin
    backward = gp * block_h + (block_b_bwd or block_b) * gp  # W_hh columns (gp, BH), d gates
    return itemsize * max(forward, backward)


def choose_plan(
    slots: int,
    hidden: int,
    recurrent: int,
    batch: int,
    *,
    cuda: bool,
    itemsize: int = 2,
    sm_count: int = 132,
    min_block_h: int = 1,
    **override,
) -> Plan | None:
    """The layout for ``hidden`` units with ``slots`` gate slots each (4: LSTM, GRU;
    1: Elman), a recurrent input of ``recurrent`` features and ``batch`` rows of
    ``itemsize``-byte numbers; None when no layout fits in shared memory.

    ``cuda``: real GPU kernels (minimum product sizes, the persistent path, the memory
    budgets); False under the interpreter. ``override`` (``block_b``, ``block_h``,
    ``persistent``, ``grid_sync``, ``num_warps``) replaces chosen values: for tests and
    tuning. ``block_b_bwd`` defaults to ``block_b`` when that is given.
    """
    hp, rp = next_pow2(hidden), max(MIN_K if cuda else 1, next_pow2(recurrent))
    if slots * hp * rp <= RESIDENT_ELEMS:
        block_h = hp
    else:
        block_h = max(min_block_h, next_pow2(-(-hidden // sm_count)))
    rows = 16 if batch <= 16 else 32
    block_b = block_b_bwd = max(1, min(16, next_pow2(batch)))  # the interpreter's
    if cuda:
        gp = next_pow2(slots * hp)
        block_b = min(rows, max(1, TILE_ELEMS // rp))
        block_b_bwd = min(rows, max(1, TILE_ELEMS // gp))
        # Fewer rows per chunk, then fewer units per program, until the tiles fit.
        while shared_bytes(slots, hidden, recurrent, block_h, block_b, itemsize,
                           block_b_bwd) > SMEM_BUDGET:  # fmt: skip
            if max(block_b, block_b_bwd) > 1:
                block_b, block_b_bwd = max(1, block_b // 2), max(1, block_b_bwd // 2)
            elif block_h > min_block_h:
                block_h //= 2
            else:
                return None
    if "block_b" in override:
        block_b_bwd = block_b = override.pop("block_b")
    block_h = override.pop("block_h", block_h)
    block_b_bwd = override.pop("block_b_bwd", block_b_bwd)
    n_h = -(-hidden // block_h)
    persistent = n_h == 1 or (
        cuda and n_h <= sm_count and os.environ.get("RNNKIT_TRITON_PERSISTENT", "1") != "0"
    )
    persistent = override.pop("persistent", persistent)
    grid_sync = override.pop("grid_sync", persistent and n_h > 1)
    chunks = -(-batch // block_b)
    # Without a barrier, batch groups are free; with one, all programs must fit at once.
    n_groups = max(1, min(chunks, sm_count // n_h)) if grid_sync else chunks
    # Fewer spills with 8 warps where one program holds all of W_hh or H >= 1024, with 4
    # between (ptxas on sm_90, bfloat16).
    num_warps = override.pop("num_warps", 8 if n_h == 1 or hidden >= 1024 else 4)
    if override:
        raise ValueError(f"unknown plan settings: {', '.join(sorted(override))}")
    if grid_sync and not persistent:
        raise ValueError("grid_sync needs persistent=True")
    return Plan(block_b, block_h, n_h, n_groups, persistent, grid_sync, num_warps, block_b_bwd)

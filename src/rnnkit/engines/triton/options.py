"""What the cell families' torch code shares: plan settings and small tensor helpers."""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.engines.triton.plan import MIN_K, Plan, choose_plan, min_block_h


class KernelOptions:
    """How one run launches its kernels: on a GPU or under the interpreter, and any plan
    settings forced by the engine (``TritonEngine(**plan_settings)``, for tests and tuning)."""

    def __init__(self, device: torch.device, interpreted: bool, overrides: dict) -> None:
        self.device = device
        self.cuda = device.type == "cuda" and not interpreted
        self.sm_count = (
            torch.cuda.get_device_properties(device).multi_processor_count if self.cuda else 132
        )
        self.overrides = overrides
        self.min_k = MIN_K if self.cuda else 1  # tensor cores' smallest product depth

    def plan(self, slots: int, hidden: int, recurrent: int, batch: int, dtype) -> Plan:
        """The layout (:func:`choose_plan`); the engine has checked that one exists."""
        return choose_plan(
            slots, hidden, recurrent, batch, cuda=self.cuda, sm_count=self.sm_count,
            itemsize=dtype.itemsize, min_block_h=min_block_h(slots) if self.cuda else 1,
            **self.overrides,
        )  # fmt: skip

    def dummy(self, like: Tensor) -> Tensor:
        """A placeholder for a pointer argument the kernel never reads."""
        return like.new_zeros(1)

    def opt(self, t: Tensor | None, like: Tensor) -> Tensor:
        return self.dummy(like) if t is None else t.contiguous()


def int_lengths(lengths: Tensor | None, x: Tensor) -> Tensor | None:
    """``lengths`` as int32 on ``x``'s device (None stays None)."""
    return None if lengths is None else lengths.to(device=x.device, dtype=torch.int32)


def final_rows(buf: Tensor, lengths: Tensor | None) -> Tensor:
    """Row b of ``buf[lengths[b]]`` for ``buf`` (T+1, B, ...) whose entry 0 is the initial
    state and entry t+1 the state after step t: each sequence's state after its last step."""
    if lengths is None:
        return buf[-1].clone()
    index = lengths.long().clamp(max=buf.shape[0] - 1)
    return buf[index, torch.arange(buf.shape[1], device=buf.device)]


def step_inputs(hs: Tensor, mask: Tensor | None) -> Tensor:
    """Every step's recurrent input ``hin = h_{t-1} * mask`` (T, B, R) from ``hs`` (T+1, B, R)."""
    hin = hs[:-1]
    return hin if mask is None else hin * mask

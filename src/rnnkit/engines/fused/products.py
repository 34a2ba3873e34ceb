"""The products over all T·B rows, shared by the cell families."""

from __future__ import annotations

import torch


class InputSide(torch.autograd.Function):
    r"""``x @ weight.T + bias`` as one product over all T·B rows, and its gradients.

    What ``F.linear`` computes, through the kernels' own product (oneDNN for float32
    where PyTorch has it: on some CPUs about twice as fast as the BLAS behind ``F.linear``).
    """

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return torch.ops.rnnkit_fused.mm(x, weight.T, bias)  # (T, B, G), not a view

    @staticmethod
    def backward(ctx, dxp):
        x, weight = ctx.saved_tensors
        mm = torch.ops.rnnkit_fused.mm
        need = ctx.needs_input_grad
        dxp2 = dxp.reshape(-1, dxp.shape[-1])  # (T·B, G)
        dx = mm(dxp, weight, None) if need[0] else None
        dw = mm(dxp2.T, x.reshape(-1, x.shape[-1]), None) if need[1] else None
        db = dxp2.sum(0) if ctx.has_bias and need[2] else None
        return dx, dw, db


def mm(a, b):
    """``a @ b`` through the kernels' product (oneDNN for float32 where available)."""
    return torch.ops.rnnkit_fused.mm(a, b, None)

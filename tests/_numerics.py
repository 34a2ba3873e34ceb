"""Shared numerical check: float64 gradcheck of a module through all its parameters."""

from __future__ import annotations

import torch

from rnnkit.layers.regularizers import substituted


def _floats(out) -> list[torch.Tensor]:
    if torch.is_tensor(out):
        return [out] if out.is_floating_point() else []
    return [t for o in out for t in _floats(o)]


def gradcheck_module(module, run, *inputs) -> bool:
    """gradcheck ``run(module, *inputs)`` w.r.t. the floating inputs and every parameter.

    ``run`` returns a tensor or a nested tuple of tensors; each parameter is swapped
    for a float64 leaf during the call so its gradient is checked too.
    """
    names = [n for n, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in module.named_parameters()]
    leaves = [
        x.detach().clone().requires_grad_(x.is_floating_point()) if torch.is_tensor(x) else x
        for x in inputs
    ]

    def fn(*args):
        weights = dict(zip(names, args[: len(params)], strict=True))
        with substituted(module, weights):
            return tuple(_floats(run(module, *args[len(params) :])))

    return torch.autograd.gradcheck(fn, (*params, *leaves))

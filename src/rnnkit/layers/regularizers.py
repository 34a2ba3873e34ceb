"""Dropout for recurrent networks: variational masks and DropConnect.

Variational dropout (Gal & Ghahramani 2016) samples one mask per sequence and
reuses it at every step, so the recurrent connections see the same dropped units
throughout; DropConnect (Wan et al. 2013; Merity et al. 2017 on W_hh) drops
individual recurrent weights, one mask per forward pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


def check_probability(name: str, p: float) -> float:
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1), got {p!r}")
    return float(p)


def dropout_mask(p: float, shape, like: Tensor) -> Tensor:
    """Inverted-dropout mask: each entry 0 with probability p, else 1/(1-p)."""
    keep = torch.empty(shape, device=like.device, dtype=like.dtype).bernoulli_(1.0 - p)
    return keep / (1.0 - p)


def variational_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Drop the same features of a sequence at every step: ``x`` is (T, B, F)."""
    if not training or p == 0.0:
        return x
    return x * dropout_mask(p, x.shape[1:], x)[None]  # mask (1, B, F)


@contextmanager
def substituted(module: nn.Module, tensors: dict[str, Tensor]) -> Iterator[None]:
    """Temporarily compute ``module`` with other tensors in place of some parameters.

    Gradients flow through the substitutes back to whatever they were made from
    (for DropConnect: the masked parameter itself). Names may be dotted paths.
    """
    saved = []
    try:
        for name, value in tensors.items():
            owner, _, leaf = name.rpartition(".")
            target = module.get_submodule(owner) if owner else module
            saved.append((target, leaf, target._parameters[leaf]))
            target._parameters[leaf] = value
        yield
    finally:
        for target, leaf, original in reversed(saved):
            target._parameters[leaf] = original


def dropconnect_weights(module: nn.Module, names, p: float) -> dict[str, Tensor]:
    """Masked copies of the named weights, one fresh mask each."""
    masked = {}
    for name in names:
        owner, _, leaf = name.rpartition(".")
        # getattr, not get_parameter: under functional_call the weight is a plain tensor.
        w = getattr(module.get_submodule(owner) if owner else module, leaf)
        masked[name] = w * dropout_mask(p, w.shape, w)
    return masked

"""Elman's simple recurrent cell, and the IRNN as one of its initialisations."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.cells.base import (
    NONLINEARITIES,
    RecurrentCell,
    State,
    check_choice,
    check_positive,
    init_recurrent_,
    uniform_,
)


class ElmanCell(RecurrentCell):
    r"""Elman RNN step.

    .. math::

        h_t = f(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh}),\qquad y_t = h_t

    in code: ``h = f(x @ weight_ih.T + bias_ih + h_prev @ weight_hh.T + bias_hh)``.

    Args:
        input_size: features of ``x_t``.
        hidden_size: units of ``h_t``.
        nonlinearity: ``f``: ``"tanh"`` | ``"relu"`` | ``"sigmoid"``.
        bias: learn ``bias_ih`` and ``bias_hh``.
        init: ``weight_hh`` initialisation: ``"uniform"`` (PyTorch's default),
            ``"orthogonal"``, or ``"identity"`` (with zero biases: the IRNN of
            Le et al. 2015 when ``nonlinearity="relu"``).

    State: ``(h,)`` with ``h`` of shape ``(B, H)``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        nonlinearity: str = "tanh",
        bias: bool = True,
        init: str = "uniform",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self.input_size = check_positive("input_size", input_size)
        self.hidden_size = self.output_size = check_positive("hidden_size", hidden_size)
        self.nonlinearity = check_choice("nonlinearity", nonlinearity, NONLINEARITIES)
        self.init = check_choice("init", init, ("uniform", "orthogonal", "identity"))
        self.bias = bias
        self._add_weights(hidden_size, hidden_size, bias, device, dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        uniform_((self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh), self.hidden_size)
        init_recurrent_(self.weight_hh, self.init)
        if self.init == "identity" and self.bias:
            with torch.no_grad():
                self.bias_ih.zero_()
                self.bias_hh.zero_()

    def state_shapes(self):
        return ((self.hidden_size,),)

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        (h_prev,) = state  # (B, H)
        h = self._activation(x, h_prev)
        return h, (h,)

    def _activation(self, x: Tensor, h_prev: Tensor) -> Tensor:
        """``f(W_ih x + b_ih + W_hh h_prev + b_hh)`` (B, H)."""
        pre = nn.functional.linear(x, self.weight_ih, self.bias_ih) + nn.functional.linear(
            h_prev, self.weight_hh, self.bias_hh
        )  # (B, H)
        return NONLINEARITIES[self.nonlinearity](pre)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, nonlinearity={self.nonlinearity!r}"

"""Jordan's recurrent cell: the previous *output*, not the hidden state, is fed back."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.cells.base import (
    NONLINEARITIES,
    RecurrentCell,
    State,
    check_choice,
    check_positive,
    uniform_,
)


def _identity(y: Tensor) -> Tensor:
    return y


def _softmax(y: Tensor) -> Tensor:
    return torch.softmax(y, dim=-1)


OUTPUTS = {
    "identity": _identity,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softmax": _softmax,
}


class JordanCell(RecurrentCell):
    r"""Jordan RNN step (Jordan 1986).

    .. math::

        h_t = f(W_{ih} x_t + b_{ih} + W_{yh} y_{t-1} + b_{yh}),\qquad
        y_t = g(W_{hy} h_t + b_{hy})

    in code: ``h = f(x @ weight_ih.T + bias_ih + y_prev @ weight_yh.T + bias_yh)`` and
    ``y = g(h @ weight_hy.T + bias_hy)``. The hidden state itself is not carried: the
    only memory is the output ``y``.

    Teacher forcing: in training the layer feeds ``targets[t-1]`` as ``y_{t-1}``
    (through :meth:`teacher_force`, which swaps the true previous target into the
    state before step ``t``); step 0 starts from the initial state. At inference the
    model's own ``y_{t-1}`` is fed back.

    Args:
        input_size: features of ``x_t``.
        hidden_size: units of ``h_t``.
        output_size: features of ``y_t``.
        nonlinearity: ``f``: ``"tanh"`` | ``"relu"`` | ``"sigmoid"``.
        output: ``g``: ``"identity"`` | ``"tanh"`` | ``"sigmoid"`` | ``"softmax"``
            (over the last dimension).
        bias: learn ``bias_ih``, ``bias_yh`` and ``bias_hy``.

    State: ``(y,)`` with ``y`` of shape ``(B, O)``.
    """

    recurrent_weights = ("weight_yh",)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        nonlinearity: str = "tanh",
        output: str = "identity",
        bias: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self.input_size = check_positive("input_size", input_size)
        self.hidden_size = check_positive("hidden_size", hidden_size)
        self.output_size = check_positive("output_size", output_size)
        self.nonlinearity = check_choice("nonlinearity", nonlinearity, NONLINEARITIES)
        self.output = check_choice("output", output, OUTPUTS)
        self.bias = bias
        kw = {"device": device, "dtype": dtype}
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size, **kw))
        self.weight_yh = nn.Parameter(torch.empty(hidden_size, output_size, **kw))
        self.weight_hy = nn.Parameter(torch.empty(output_size, hidden_size, **kw))
        self.bias_ih = nn.Parameter(torch.empty(hidden_size, **kw)) if bias else None
        self.bias_yh = nn.Parameter(torch.empty(hidden_size, **kw)) if bias else None
        self.bias_hy = nn.Parameter(torch.empty(output_size, **kw)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        uniform_(self.parameters(), self.hidden_size)

    def state_shapes(self):
        return ((self.output_size,),)

    def teacher_force(self, state: State, y_true: Tensor) -> State:
        """The state with the true previous target ``y_true`` ``(B, O)`` in place of the
        model's own ``y_{t-1}``."""
        (y_prev,) = state  # (B, O)
        if y_true.shape != y_prev.shape:
            raise ValueError(
                f"teacher_force expected y_true of shape {tuple(y_prev.shape)} "
                f"(batch, output_size), got {tuple(y_true.shape)}"
            )
        return (y_true.to(dtype=y_prev.dtype),)

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        (y_prev,) = state  # (B, O)
        pre = nn.functional.linear(x, self.weight_ih, self.bias_ih) + nn.functional.linear(
            y_prev, self.weight_yh, self.bias_yh
        )  # (B, H)
        h = NONLINEARITIES[self.nonlinearity](pre)
        y = OUTPUTS[self.output](nn.functional.linear(h, self.weight_hy, self.bias_hy))  # (B, O)
        return y, (y,)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, output_size={self.output_size}, "
            f"nonlinearity={self.nonlinearity!r}, output={self.output!r}"
        )

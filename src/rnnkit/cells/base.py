"""The contract every cell keeps: one time step, ``cell(x_t, state) -> (y_t, state)``.

A *state* is always a tuple of tensors whose first dimension is the batch
(``(h,)`` for Elman and GRU, ``(h, c)`` for LSTM, ...). Keeping it a flat tuple lets
the layers mask, detach and carry any cell's state the same way, and lets engines
treat cells as black boxes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

State = tuple[Tensor, ...]

NONLINEARITIES = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid}


def check_choice(name: str, value: str, choices) -> str:
    """Raise a ValueError naming the allowed values when ``value`` is not one of them."""
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name}={value!r} is not supported; expected one of {allowed}")
    return value


def check_positive(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class RecurrentCell(nn.Module):
    """Base class of rnnkit cells.

    Subclasses set ``input_size``, ``hidden_size`` and ``output_size`` (the size of
    ``y_t``), implement :meth:`forward` and :meth:`state_shapes`, and list in
    ``recurrent_weights`` the names of the parameters that carry the state from one
    step to the next (what DropConnect masks).
    """

    recurrent_weights: tuple[str, ...] = ("weight_hh",)

    input_size: int
    hidden_size: int
    output_size: int

    def state_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Per-example shape of each state tensor (the batch dimension left out)."""
        raise NotImplementedError

    def state_dtypes(self, dtype: torch.dtype) -> tuple[torch.dtype, ...]:
        """dtype of each state tensor; floating by default (a step counter overrides)."""
        return tuple(dtype for _ in self.state_shapes())

    def init_state(
        self, batch: int, *, device: torch.device | str | None = None, dtype=None
    ) -> State:
        """Zero state for ``batch`` sequences, on the device and dtype of the parameters
        unless given."""
        ref = next(self.parameters(), None)
        device = device if device is not None else (ref.device if ref is not None else None)
        dtype = dtype if dtype is not None else (ref.dtype if ref is not None else None)
        dtype = dtype or torch.get_default_dtype()
        return tuple(
            torch.zeros((batch, *shape), device=device, dtype=dt)
            for shape, dt in zip(self.state_shapes(), self.state_dtypes(dtype), strict=True)
        )

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:  # pragma: no cover
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"

    def _add_weights(self, rows: int, recurrent_size: int, bias: bool, device, dtype) -> None:
        """Register PyTorch's four step weights, in torch.nn's order (so seeded
        initialisations match): ``weight_ih (rows, I)``, ``weight_hh (rows, R)``,
        ``bias_ih``, ``bias_hh`` ``(rows,)`` (None without bias)."""
        kw = {"device": device, "dtype": dtype}
        self.weight_ih = nn.Parameter(torch.empty(rows, self.input_size, **kw))
        self.weight_hh = nn.Parameter(torch.empty(rows, recurrent_size, **kw))
        self.bias_ih = nn.Parameter(torch.empty(rows, **kw)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(rows, **kw)) if bias else None


def uniform_(params, hidden_size: int) -> None:
    """PyTorch's default recurrent initialisation: U(-1/sqrt(H), 1/sqrt(H))."""
    bound = 1.0 / math.sqrt(hidden_size)
    with torch.no_grad():
        for p in params:
            if p is not None:
                p.uniform_(-bound, bound)


def init_recurrent_(weight: Tensor, scheme: str, blocks: int = 1) -> None:
    """Initialise a recurrent weight (``blocks`` stacked square blocks) in place.

    ``uniform`` keeps PyTorch's default, ``orthogonal`` makes each block an orthogonal
    matrix, ``identity`` makes each block the identity (Le et al. 2015, IRNN).
    """
    check_choice("init", scheme, ("uniform", "orthogonal", "identity"))
    if scheme == "uniform":
        return
    rows = weight.shape[0] // blocks
    with torch.no_grad():
        for k in range(blocks):
            block = weight[k * rows : (k + 1) * rows]
            if scheme == "orthogonal":
                nn.init.orthogonal_(block)
            else:
                block.copy_(torch.eye(*block.shape, dtype=block.dtype, device=block.device))

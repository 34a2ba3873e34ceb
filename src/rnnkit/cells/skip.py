"""Skip connections through time: a wrapped cell also sees its output from ``d`` steps ago."""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.cells.base import RecurrentCell, State, check_positive


class SkipCell(RecurrentCell):
    r"""Any rnnkit cell whose step also sees ``y_{t-d}``.

    .. math::

        y_t, s_t = \mathrm{cell}([x_t, y_{t-d}], s_{t-1})

    in code: ``y, inner = cell(torch.cat([x, history[:, 0]], -1), inner_prev)``. The
    skip weights are thus the last ``cell.output_size`` input columns of the inner
    cell (e.g. ``weight_ih[:, n_x:]``), so the inner cell must have been built with
    ``input_size = n_x + cell.output_size``; :meth:`build` does that for you.

    Args:
        cell: the inner rnnkit cell.
        delay: ``d >= 1``; ``d = 1`` feeds back ``y_{t-1}``.

    ``recurrent_weights`` are the inner cell's, prefixed ``"cell."``: these names are
    dotted paths, to resolve with ``module.get_parameter(name)``. The skip weights live
    inside the inner cell's input weights and are not listed.

    State: the inner state followed by ``history`` ``(B, d, O)``, the last ``d``
    outputs oldest first, zeros at the start; ``y_{t-d}`` is ``history[:, 0]``.
    """

    def __init__(self, cell: RecurrentCell, delay: int) -> None:
        super().__init__()
        if not isinstance(cell, RecurrentCell):
            raise TypeError(f"cell must be an rnnkit RecurrentCell, got {type(cell).__name__}")
        self.delay = check_positive("delay", delay)
        input_size = cell.input_size - cell.output_size
        if input_size <= 0:
            raise ValueError(
                f"the inner cell must be built with input_size = n_x + output_size "
                f"(its input is [x_t, y_t-d]); got input_size={cell.input_size} with "
                f"output_size={cell.output_size}, leaving no room for x_t. "
                f"Use SkipCell.build(cell_class, n_x, hidden_size, delay) to size it."
            )
        self.cell = cell
        self.input_size = input_size
        self.hidden_size = cell.hidden_size
        self.output_size = cell.output_size
        self.recurrent_weights = tuple(f"cell.{name}" for name in cell.recurrent_weights)

    @classmethod
    def build(
        cls,
        cell_class: type[RecurrentCell],
        input_size: int,
        hidden_size: int,
        delay: int,
        **kwargs,
    ) -> SkipCell:
        """A ``SkipCell`` around ``cell_class(input_size + output_size, hidden_size,
        **kwargs)``, where ``output_size`` is the inner cell's output size."""
        # Guess the output size (kwargs["output_size"] or hidden_size); rebuild once if
        # the cell says otherwise (e.g. a projection).
        out = kwargs.get("output_size", hidden_size)
        cell = cell_class(input_size + out, hidden_size, **kwargs)
        if cell.output_size != out:
            cell = cell_class(input_size + cell.output_size, hidden_size, **kwargs)
        return cls(cell, delay)

    def state_shapes(self):
        return (*self.cell.state_shapes(), (self.delay, self.output_size))

    def state_dtypes(self, dtype: torch.dtype) -> tuple[torch.dtype, ...]:
        return (*self.cell.state_dtypes(dtype), dtype)

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        *inner_prev, history = state  # history: (B, d, O)
        y, inner = self.cell(torch.cat([x, history[:, 0]], -1), tuple(inner_prev))  # (B, O)
        history = torch.cat([history[:, 1:], y.unsqueeze(1)], 1)  # drop y_{t-d}, append y_t
        return y, (*inner, history)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, delay={self.delay}"

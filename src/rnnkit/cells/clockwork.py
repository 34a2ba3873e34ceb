"""Clockwork RNN (Koutník et al. 2014): groups of units that tick at different periods."""

from __future__ import annotations

from collections.abc import Sequence

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


class ClockworkCell(RecurrentCell):
    r"""Clockwork RNN step.

    The ``H`` units form ``g`` equal groups with increasing periods ``T_0 < T_1 < ...``.
    At step ``t`` (counted from 0 in each sequence) group ``i`` is *active* iff
    ``t mod T_i == 0``; inactive groups keep their value:

    .. math::

        \tilde h_t = f(W_{ih} x_t + b_{ih} + (W_{hh} \odot M) h_{t-1} + b_{hh}),\qquad
        h_t = \mathrm{where}(\mathrm{active}_t, \tilde h_t, h_{t-1}),\qquad y_t = h_t

    in code: ``h = torch.where(active, f(x @ weight_ih.T + bias_ih
    + h_prev @ (weight_hh * weight_hh_mask).T + bias_hh), h_prev)``.

    ``M`` (``weight_hh_mask``) is block upper-triangular: group ``i`` receives from
    group ``j`` iff ``T_j >= T_i``, so slower groups feed faster ones and never the
    reverse. ``weight_hh`` is kept full (masked entries are zero at init and get
    zero gradient), so DropConnect and optimisers see an ordinary square weight.

    Args:
        input_size: features of ``x_t``.
        hidden_size: units of ``h_t``; must divide by the number of groups.
        periods: strictly increasing positive integers, one per group; ``None`` gives
            the exponential clock ``(1, 2, 4, ..., 2**(num_groups-1))``.
        num_groups: number of groups when ``periods`` is ``None`` (ignored otherwise).
        nonlinearity: ``f``: ``"tanh"`` | ``"relu"`` | ``"sigmoid"``.
        bias: learn ``bias_ih`` and ``bias_hh``.

    State: ``(h, t)`` with ``h`` of shape ``(B, H)`` and ``t`` the ``torch.long`` step
    counter ``(B,)``; each step returns ``(h, (h, t + 1))``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        periods: Sequence[int] | None = None,
        num_groups: int = 4,
        nonlinearity: str = "tanh",
        bias: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self.input_size = check_positive("input_size", input_size)
        self.hidden_size = self.output_size = check_positive("hidden_size", hidden_size)
        self.nonlinearity = check_choice("nonlinearity", nonlinearity, NONLINEARITIES)
        if periods is None:
            periods = tuple(2**k for k in range(check_positive("num_groups", num_groups)))
        self.periods = tuple(periods)
        if not self.periods or not all(
            isinstance(p, int) and not isinstance(p, bool) and p > 0 for p in self.periods
        ):
            raise ValueError(f"periods must be positive integers, got {periods!r}")
        if any(a >= b for a, b in zip(self.periods, self.periods[1:], strict=False)):
            raise ValueError(f"periods must be strictly increasing, got {self.periods}")
        self.num_groups = len(self.periods)
        if hidden_size % self.num_groups:
            raise ValueError(
                f"hidden_size={hidden_size} must be divisible by the number of groups "
                f"({self.num_groups}, periods={self.periods})"
            )
        self.bias = bias
        self._add_weights(hidden_size, hidden_size, bias, device, dtype)
        group = torch.arange(hidden_size, device=device) // (hidden_size // self.num_groups)
        # Periods increase with the group index, so T_j >= T_i  <=>  j >= i.
        mask = (group[None, :] >= group[:, None]).to(self.weight_hh.dtype)  # (H, H)
        self.register_buffer("weight_hh_mask", mask)
        unit_periods = torch.tensor(self.periods, device=device)[group]  # (H,)
        self.register_buffer("unit_periods", unit_periods, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        uniform_(self.parameters(), self.hidden_size)
        with torch.no_grad():
            self.weight_hh.mul_(self.weight_hh_mask)

    def state_shapes(self):
        return ((self.hidden_size,), ())

    def state_dtypes(self, dtype: torch.dtype) -> tuple[torch.dtype, ...]:
        return (dtype, torch.long)

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        h_prev, t = state  # (B, H), (B,)
        active = (t[:, None] % self.unit_periods) == 0  # (B, H)
        pre = nn.functional.linear(x, self.weight_ih, self.bias_ih) + nn.functional.linear(
            h_prev, self.weight_hh * self.weight_hh_mask, self.bias_hh
        )  # (B, H)
        h = torch.where(active, NONLINEARITIES[self.nonlinearity](pre), h_prev)
        return h, (h, t + 1)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, periods={self.periods}, "
            f"nonlinearity={self.nonlinearity!r}"
        )

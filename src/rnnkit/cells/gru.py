"""Gated recurrent unit, with the reset gate applied after (PyTorch) or before (Cho)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.cells.base import RecurrentCell, State, check_choice, check_positive, uniform_


class GRUCell(RecurrentCell):
    r"""GRU step (Cho et al. 2014).

    Gates are stacked in PyTorch's order ``r, z, n`` along the rows of the weights, so
    ``weight_ih``, ``weight_hh``, ``bias_ih`` and ``bias_hh`` copy one-to-one from
    ``torch.nn.GRUCell`` / ``torch.nn.GRU``. Writing ``W_ir = weight_ih[:H]``,
    ``W_iz = weight_ih[H:2H]``, ``W_in = weight_ih[2H:]`` (likewise ``W_h*``, ``b_i*``,
    ``b_h*``)::

        r = sigmoid(x @ W_ir.T + b_ir + h_prev @ W_hr.T + b_hr)
        z = sigmoid(x @ W_iz.T + b_iz + h_prev @ W_hz.T + b_hz)
        n = tanh(x @ W_in.T + b_in + r * (h_prev @ W_hn.T + b_hn))     # reset="after"
        n = tanh(x @ W_in.T + b_in + (r * h_prev) @ W_hn.T + b_hn)     # reset="before"
        h = (1 - z) * n + z * h_prev

    Args:
        input_size: features of ``x_t``.
        hidden_size: units ``H`` of ``h_t``.
        bias: learn ``bias_ih`` and ``bias_hh`` (each ``(3H,)``).
        reset: where the reset gate acts: ``"after"`` the recurrent product (PyTorch and
            cuDNN; all of ``h_prev @ weight_hh.T`` is one product) or ``"before"`` it, on
            ``h_prev`` (Cho et al. 2014; the candidate's product must wait for ``r``).

    All parameters start as U(-1/sqrt(H), 1/sqrt(H)), drawn in ``torch.nn.GRUCell``'s
    order, so a seeded cell equals the seeded ``torch.nn.GRUCell``.

    State: ``(h,)`` with ``h`` of shape ``(B, H)``.
    """

    recurrent_weights = ("weight_hh",)
    sigmoid_gates = ("reset", "update")  # the keys of gates() that are sigmoids

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        reset: str = "after",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self.input_size = check_positive("input_size", input_size)
        self.hidden_size = self.output_size = check_positive("hidden_size", hidden_size)
        self.reset = check_choice("reset", reset, ("after", "before"))
        self.bias = bias
        self._add_weights(3 * hidden_size, hidden_size, bias, device, dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        uniform_(self.parameters(), self.hidden_size)

    def state_shapes(self):
        return ((self.hidden_size,),)

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        return self.from_gates(self.gates(x, state), state)

    def gates(self, x: Tensor, state: State) -> dict[str, Tensor]:
        """One step's gate activations, each ``(B, H)``.

        ``{"reset": r, "update": z}`` after their sigmoids and ``"candidate"``: ``n``.
        ``forward`` is ``from_gates(gates(x, state), state)``; monitors read the gates alone.
        """
        (h_prev,) = state  # (B, H)
        F = nn.functional
        H = self.hidden_size
        gi = F.linear(x, self.weight_ih, self.bias_ih)  # (B, 3H)
        if self.reset == "after":
            gh = F.linear(h_prev, self.weight_hh, self.bias_hh)  # (B, 3H)
            rz = torch.sigmoid(gi[:, : 2 * H] + gh[:, : 2 * H])  # (B, 2H)
            r, z = rz[:, :H], rz[:, H:]
            n = torch.tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])  # (B, H)
        else:
            b_hh = self.bias_hh
            # r and z share one product; the candidate's has to wait for r * h_prev.
            gh_rz = F.linear(
                h_prev, self.weight_hh[: 2 * H], None if b_hh is None else b_hh[: 2 * H]
            )  # (B, 2H)
            rz = torch.sigmoid(gi[:, : 2 * H] + gh_rz)  # (B, 2H)
            r, z = rz[:, :H], rz[:, H:]
            gh_n = F.linear(
                r * h_prev, self.weight_hh[2 * H :], None if b_hh is None else b_hh[2 * H :]
            )  # (B, H)
            n = torch.tanh(gi[:, 2 * H :] + gh_n)  # (B, H)
        return {"reset": r, "update": z, "candidate": n}

    def from_gates(self, gates: dict[str, Tensor], state: State) -> tuple[Tensor, State]:
        """The step's output and new state ``(h,)`` from :meth:`gates`' values."""
        (h_prev,) = state  # (B, H)
        n, z = gates["candidate"], gates["update"]
        h = n + z * (h_prev - n)  # = (1 - z) * n + z * h_prev, one op fewer
        return h, (h,)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if self.reset != "after":
            s += f", reset={self.reset!r}"
        return s

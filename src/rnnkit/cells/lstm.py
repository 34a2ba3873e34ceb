"""Long short-term memory, with forget-gate bias, peepholes, layer norm and projection."""

from __future__ import annotations

import math
from numbers import Real

import torch
from torch import Tensor, nn

from rnnkit.cells.base import RecurrentCell, State, check_positive, uniform_


class LSTMCell(RecurrentCell):
    r"""LSTM step (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000).

    Gates are stacked in PyTorch's order ``i, f, g, o`` along the rows of the weights, so
    ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh`` and ``weight_hr`` copy one-to-one
    from ``torch.nn.LSTMCell`` / ``torch.nn.LSTM`` (drop the ``_l0`` suffix). In code
    (``H = hidden_size``, ``R = proj_size or H``)::

        gates = x @ weight_ih.T + bias_ih + h_prev @ weight_hh.T + bias_hh   # (B, 4H)
        i, f, g, o = gates.chunk(4, dim=1)                                   # (B, H) each
        i = sigmoid(i + weight_ci * c_prev)          # peephole term only if peephole
        f = sigmoid(f + weight_cf * c_prev)          # peephole term only if peephole
        g = tanh(g)
        c = f * c_prev + i * g
        o = sigmoid(o + weight_co * c)               # peephole term only if peephole
        h = o * tanh(c)                              # tanh(LN_c(c)) if layer_norm
        h = h @ weight_hr.T                          # only if proj_size > 0

    With ``layer_norm=True`` the two products are normalised separately before the biases
    are added, and the output reads a normalised copy of the cell state::

        gates = LN_ih(x @ weight_ih.T) + LN_hh(h_prev @ weight_hh.T) + bias_ih + bias_hh
        LN_ih(v) = (v - mean(v)) / sqrt(var(v) + ln_eps) * ln_ih_weight   # over all 4H
        LN_hh(v) = (v - mean(v)) / sqrt(var(v) + ln_eps) * ln_hh_weight   # over all 4H
        LN_c(c)  = (c - mean(c)) / sqrt(var(c) + ln_eps) * ln_c_weight + ln_c_bias

    Args:
        input_size: features ``I`` of ``x_t``.
        hidden_size: units ``H`` of the cell state ``c_t``.
        bias: learn ``bias_ih`` and ``bias_hh`` (each ``(4H,)``).
        forget_bias: added to the forget-gate slice ``bias_ih[H:2H]`` after PyTorch's
            initialisation, so the cell starts out remembering (Gers et al. 2000;
            Jozefowicz et al. 2015). ``0.0`` keeps PyTorch's initialisation exactly; has
            no effect when ``bias=False``.
        peephole: diagonal peephole connections (Gers & Schmidhuber 2000): vectors
            ``weight_ci``, ``weight_cf``, ``weight_co`` of shape ``(H,)``; ``i`` and ``f``
            see ``c_prev``, ``o`` sees the new ``c``.
        layer_norm: layer-normalised LSTM (Ba et al. 2016): gains ``ln_ih_weight`` and
            ``ln_hh_weight`` of shape ``(4H,)`` (initialised to one, no bias: the gate
            biases play that role), and ``ln_c_weight`` / ``ln_c_bias`` of shape ``(H,)``
            (ones / zeros) for the cell state seen by the output. The carried ``c`` is
            not normalised. ``ln_eps = 1e-5``.
        proj_size: if ``> 0``, ``h_t`` is projected to ``P = proj_size`` features by
            ``weight_hr`` of shape ``(P, H)`` (Sak et al. 2014, as ``torch.nn.LSTM``);
            must be smaller than ``hidden_size``.

    All parameters but the layer-norm ones start as U(-1/sqrt(H), 1/sqrt(H)), drawn in
    ``torch.nn.LSTM``'s order, so a seeded cell with ``forget_bias=0.0`` equals the seeded
    ``torch.nn.LSTMCell``.

    State: ``(h, c)`` with ``h`` of shape ``(B, R)`` and ``c`` of shape ``(B, H)``;
    ``y_t = h_t``, so ``output_size = R``.
    """

    recurrent_weights = ("weight_hh",)
    sigmoid_gates = ("input", "forget", "output")  # the keys of gates() that are sigmoids

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        forget_bias: float = 1.0,
        peephole: bool = False,
        layer_norm: bool = False,
        proj_size: int = 0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self.input_size = check_positive("input_size", input_size)
        self.hidden_size = check_positive("hidden_size", hidden_size)
        if (
            not isinstance(forget_bias, Real)
            or isinstance(forget_bias, bool)
            or not math.isfinite(forget_bias)
        ):
            raise ValueError(f"forget_bias must be a finite real number, got {forget_bias!r}")
        if not isinstance(proj_size, int) or isinstance(proj_size, bool) or proj_size < 0:
            raise ValueError(f"proj_size must be a non-negative integer, got {proj_size!r}")
        if proj_size >= hidden_size:
            raise ValueError(
                f"proj_size must be smaller than hidden_size (0 for no projection), "
                f"got proj_size={proj_size} with hidden_size={hidden_size}"
            )
        self.bias = bias
        self.forget_bias = float(forget_bias)
        self.peephole = peephole
        self.layer_norm = layer_norm
        self.proj_size = proj_size
        self.output_size = proj_size or hidden_size
        self.ln_eps = 1e-5
        H, R = hidden_size, self.output_size
        kw = {"device": device, "dtype": dtype}
        # Registered in torch.nn.LSTM's order so seeded initialisations match.
        self._add_weights(4 * H, R, bias, device, dtype)
        self.weight_hr = nn.Parameter(torch.empty(proj_size, H, **kw)) if proj_size else None
        self.weight_ci = nn.Parameter(torch.empty(H, **kw)) if peephole else None
        self.weight_cf = nn.Parameter(torch.empty(H, **kw)) if peephole else None
        self.weight_co = nn.Parameter(torch.empty(H, **kw)) if peephole else None
        self.ln_ih_weight = nn.Parameter(torch.empty(4 * H, **kw)) if layer_norm else None
        self.ln_hh_weight = nn.Parameter(torch.empty(4 * H, **kw)) if layer_norm else None
        self.ln_c_weight = nn.Parameter(torch.empty(H, **kw)) if layer_norm else None
        self.ln_c_bias = nn.Parameter(torch.empty(H, **kw)) if layer_norm else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        H = self.hidden_size
        uniform_(
            (
                self.weight_ih,
                self.weight_hh,
                self.bias_ih,
                self.bias_hh,
                self.weight_hr,
                self.weight_ci,
                self.weight_cf,
                self.weight_co,
            ),
            H,
        )
        with torch.no_grad():
            if self.layer_norm:
                self.ln_ih_weight.fill_(1.0)
                self.ln_hh_weight.fill_(1.0)
                self.ln_c_weight.fill_(1.0)
                self.ln_c_bias.zero_()
            if self.bias and self.forget_bias != 0.0:
                self.bias_ih[H : 2 * H] += self.forget_bias

    def state_shapes(self):
        return ((self.output_size,), (self.hidden_size,))

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        return self.from_gates(self.gates(x, state), state)

    def gates(self, x: Tensor, state: State) -> dict[str, Tensor]:
        """One step's gate activations, each ``(B, H)``, and the new cell state.

        ``{"input": i, "forget": f, "output": o}`` after their sigmoids, ``"candidate"``:
        ``tanh(g)``, and ``"cell"``: the new ``c`` (the peephole output gate reads it).
        ``forward`` is ``from_gates(gates(x, state), state)``; monitors read the gates alone.
        """
        h_prev, c_prev = state  # (B, R), (B, H)
        F = nn.functional
        if self.layer_norm:
            # Biases go after the norms so they shift the normalised pre-activations.
            G = 4 * self.hidden_size
            gates = F.layer_norm(
                F.linear(x, self.weight_ih), (G,), self.ln_ih_weight, None, self.ln_eps
            ) + F.layer_norm(
                F.linear(h_prev, self.weight_hh), (G,), self.ln_hh_weight, None, self.ln_eps
            )  # (B, 4H)
            if self.bias:
                gates = gates + (self.bias_ih + self.bias_hh)
        else:
            gates = F.linear(x, self.weight_ih, self.bias_ih) + F.linear(
                h_prev, self.weight_hh, self.bias_hh
            )  # (B, 4H)
        i, f, g, o = gates.chunk(4, dim=1)  # (B, H) each
        if self.peephole:
            i = i + self.weight_ci * c_prev
            f = f + self.weight_cf * c_prev
        i, f, g = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g)
        c = f * c_prev + i * g  # (B, H)
        if self.peephole:
            o = o + self.weight_co * c  # the output gate peeks at the new cell state
        return {"input": i, "forget": f, "candidate": g, "output": torch.sigmoid(o), "cell": c}

    def from_gates(self, gates: dict[str, Tensor], state: State) -> tuple[Tensor, State]:
        """The step's output and new state ``(h, c)`` from :meth:`gates`' values.

        ``state`` is unused (``c`` already holds it) but kept for the same call as GRUCell's.
        """
        c = gates["cell"]  # (B, H)
        c_out = c
        if self.layer_norm:
            c_out = nn.functional.layer_norm(
                c, (self.hidden_size,), self.ln_c_weight, self.ln_c_bias, self.ln_eps
            )
        h = gates["output"] * torch.tanh(c_out)  # (B, H)
        if self.proj_size:
            h = nn.functional.linear(h, self.weight_hr)  # (B, P)
        return h, (h, c)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if self.forget_bias != 1.0:
            s += f", forget_bias={self.forget_bias}"
        if self.peephole:
            s += ", peephole=True"
        if self.layer_norm:
            s += ", layer_norm=True"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        return s

"""Leaky-integrator units: each unit keeps a fraction ``alpha`` of its previous value."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from rnnkit.cells.base import State, check_positive
from rnnkit.cells.elman import ElmanCell


def timescale_alphas(hidden_size: int, timescales: Sequence[float]) -> Tensor:
    """Per-unit ``alpha`` ``(H,)`` for ``len(timescales)`` groups of units.

    The units are split into contiguous groups as evenly as possible (earlier groups
    get the extra units); group ``k`` gets ``alpha = 1 - 1 / tau_k``, the leak whose
    memory decays over about ``tau_k`` steps. Every ``tau_k`` must be ``> 1`` so that
    ``alpha`` lies in ``(0, 1)``.
    """
    check_positive("hidden_size", hidden_size)
    taus = [float(tau) for tau in timescales]
    if not taus or len(taus) > hidden_size:
        raise ValueError(
            f"timescales must hold between 1 and hidden_size={hidden_size} values, got {len(taus)}"
        )
    if not all(tau > 1.0 for tau in taus):  # also rejects NaN
        raise ValueError(f"every timescale must be > 1 (in steps), got {taus}")
    base, extra = divmod(hidden_size, len(taus))
    sizes = [base + 1 if k < extra else base for k in range(len(taus))]
    return torch.cat(
        [torch.full((n,), 1.0 - 1.0 / tau) for n, tau in zip(sizes, taus, strict=True)]
    )


class LeakyCell(ElmanCell):
    r"""Leaky-integrator RNN step (Jaeger et al. 2007).

    .. math::

        h_t = \alpha \odot h_{t-1}
              + (1 - \alpha) \odot f(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh}),
        \qquad y_t = h_t

    in code: ``h = alpha * h_prev + (1 - alpha) * f(x @ weight_ih.T + bias_ih
    + h_prev @ weight_hh.T + bias_hh)``, with one ``alpha`` per unit in ``(0, 1)``:
    near 1 a unit integrates slowly (long memory), near 0 it is an Elman unit.

    Args:
        input_size: features of ``x_t``.
        hidden_size: units of ``h_t``.
        alpha: a float for every unit, or a 1-D sequence / tensor of ``hidden_size``
            values, each strictly in ``(0, 1)`` (see :func:`timescale_alphas`).
        learn_alpha: learn ``alpha`` as ``sigmoid(alpha_logit)`` (a parameter, so it
            stays in ``(0, 1)``); otherwise ``alpha`` is a fixed buffer.
        nonlinearity: ``f``: ``"tanh"`` | ``"relu"`` | ``"sigmoid"``.
        bias: learn ``bias_ih`` and ``bias_hh``.
        init: ``weight_hh`` initialisation: ``"uniform"``, ``"orthogonal"`` or
            ``"identity"`` (with zero biases).

    :meth:`reset_parameters` re-initialises the weights only; ``alpha`` keeps its value.

    State: ``(h,)`` with ``h`` of shape ``(B, H)``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        alpha: float | Sequence[float] | Tensor = 0.5,
        learn_alpha: bool = False,
        nonlinearity: str = "tanh",
        bias: bool = True,
        init: str = "uniform",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(input_size, hidden_size, nonlinearity, bias, init, device, dtype)
        self.learn_alpha = learn_alpha
        alpha = self._check_alpha(alpha, hidden_size, device=device, dtype=dtype)  # (H,)
        if learn_alpha:
            self.alpha_logit = nn.Parameter(torch.logit(alpha))
        else:
            self.register_buffer("alpha", alpha)

    @staticmethod
    def _check_alpha(alpha, hidden_size: int, device=None, dtype=None) -> Tensor:
        dtype = dtype or torch.get_default_dtype()
        # Checked after the cast: a value like 1 - 1e-9 becomes exactly 1 in float32.
        alpha = torch.as_tensor(alpha).detach().to(device=device, dtype=dtype).clone()
        if alpha.dim() == 0:
            alpha = alpha.expand(hidden_size).clone()
        if alpha.shape != (hidden_size,):
            raise ValueError(
                f"alpha must be a float or a 1-D sequence of hidden_size={hidden_size} "
                f"values, got shape {tuple(alpha.shape)}"
            )
        if not bool(((alpha > 0) & (alpha < 1)).all()):
            raise ValueError(f"every alpha must lie strictly in (0, 1), got {alpha.tolist()}")
        return alpha

    @property
    def alpha_value(self) -> Tensor:
        """The current per-unit ``alpha`` ``(H,)``, fixed or learned."""
        return torch.sigmoid(self.alpha_logit) if self.learn_alpha else self.alpha

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        (h_prev,) = state  # (B, H)
        alpha = self.alpha_value  # (H,), broadcast over the batch
        h = alpha * h_prev + (1 - alpha) * self._activation(x, h_prev)
        return h, (h,)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, learn_alpha={self.learn_alpha}, "
            f"nonlinearity={self.nonlinearity!r}"
        )

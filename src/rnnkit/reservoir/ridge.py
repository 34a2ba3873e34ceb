"""Linear readouts: ridge regression from streamed statistics, and recursive least squares."""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.reservoir.checks import check_count, check_nonnegative, check_positive_number


def _matrix(value, name: str) -> Tensor:
    """A 2-D float64 CPU tensor (a 1-D one is read as one column)."""
    t = torch.as_tensor(value).detach().to(device="cpu", dtype=torch.float64)
    if t.dim() == 1:
        t = t.unsqueeze(1)
    if t.dim() != 2:
        raise ValueError(f"{name} must be 2-D (samples, features), got shape {tuple(t.shape)}")
    return t


class Ridge:
    r"""Ridge regression solved in closed form from sufficient statistics.

    .. math::

        [W_{out}\; b] = Y^\top \tilde X\, (\tilde X^\top \tilde X + \lambda D)^{-1},
        \qquad \tilde X = [X\; 1],\quad D = \mathrm{diag}(1, \dots, 1, 0)

    in code: ``XtX`` and ``YtX`` accumulate ``X̃ᵀX̃`` and ``YᵀX̃`` over every
    :meth:`partial_fit` (float64), and :meth:`solve` solves
    ``(XtX + ridge * D) W̃ᵀ = YtXᵀ``. The bias column (last) is not regularised, which
    is the same solution as ReservoirPy's (ridge on centred X and Y, bias from the means).
    Streaming gives the same answer as one call on all rows, so sequences of any
    number and length fit in bounded memory.

    Args:
        ridge: λ ≥ 0. With λ = 0 a singular system falls back to least squares.
        fit_bias: learn ``bias``; if False, ``X̃ = X`` and ``D = I``.

    After :meth:`solve`: ``W_out (O, F)`` and ``bias (O,)`` (zeros without fit_bias).
    """

    def __init__(self, ridge: float = 0.0, fit_bias: bool = True) -> None:
        self.ridge = check_nonnegative("ridge", ridge)
        self.fit_bias = bool(fit_bias)
        self.W_out: Tensor | None = None
        self.bias: Tensor | None = None
        self.reset()

    def reset(self) -> Ridge:
        """Forget the accumulated statistics (not the solved weights)."""
        self.XtX: Tensor | None = None  # (F+1, F+1) with the bias column last
        self.YtX: Tensor | None = None  # (O, F+1)
        self.samples = 0
        return self

    def partial_fit(self, X, Y) -> Ridge:
        """Add the rows ``X (n, F)``, ``Y (n, O)`` to the statistics."""
        x, y = _matrix(X, "X"), _matrix(Y, "Y")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"X has {x.shape[0]} rows but Y has {y.shape[0]}; pass paired rows")
        if self.XtX is not None and (
            x.shape[1] + self.fit_bias != self.XtX.shape[0] or y.shape[1] != self.YtX.shape[0]
        ):
            raise ValueError(
                f"X, Y have {x.shape[1]}, {y.shape[1]} columns but earlier rows had "
                f"{self.XtX.shape[0] - self.fit_bias}, {self.YtX.shape[0]}; call reset() first"
            )
        xn = x.contiguous().numpy()
        # NumPy runs ``Aᵀ A`` as BLAS syrk (half of gemm's work): 2x faster than torch's
        # ``x.T @ x`` here, and this product is most of the cost of fitting a readout
        xtx, ytx = torch.from_numpy(xn.T @ xn), y.T @ x  # (F, F), (O, F)
        if self.fit_bias:  # the blocks of the ones column, without copying X to append it
            n, x_sum = x.new_tensor([[x.shape[0]]]), x.sum(0, keepdim=True)  # (1, 1), (1, F)
            xtx = torch.cat([torch.cat([xtx, x_sum.T], 1), torch.cat([x_sum, n], 1)])
            ytx = torch.cat([ytx, y.sum(0, keepdim=True).T], 1)  # (O, F+1)
        if self.XtX is None:
            self.XtX, self.YtX = xtx, ytx
        else:
            self.XtX += xtx
            self.YtX += ytx
        self.samples += x.shape[0]
        return self

    def solve(self) -> Ridge:
        """``W_out``, ``bias`` from the statistics so far."""
        if self.XtX is None:
            raise ValueError("Ridge has no data; call partial_fit(X, Y) before solve()")
        penalty = torch.full((self.XtX.shape[0],), self.ridge, dtype=torch.float64)
        if self.fit_bias:
            penalty[-1] = 0.0  # the bias is not regularised
        a = self.XtX + torch.diag(penalty)  # (F+1, F+1), symmetric
        chol, info = torch.linalg.cholesky_ex(a)
        if int(info) == 0:
            w = torch.cholesky_solve(self.YtX.T, chol).T  # (O, F+1)
        else:  # singular (λ = 0, or fewer rows than features): least-squares solution
            w = torch.linalg.lstsq(a, self.YtX.T, driver="gelsd").solution.T
        if self.fit_bias:
            self.W_out, self.bias = w[:, :-1].contiguous(), w[:, -1].contiguous()
        else:
            self.W_out, self.bias = w, w.new_zeros(w.shape[0])
        return self

    def fit(self, X, Y) -> Ridge:
        """``reset``, ``partial_fit(X, Y)``, ``solve``."""
        return self.reset().partial_fit(X, Y).solve()

    def predict(self, X) -> Tensor:
        """``X W_outᵀ + bias`` ``(n, O)`` in float64."""
        if self.W_out is None:
            raise ValueError("Ridge is not fitted; call fit(X, Y) or solve() first")
        return torch.addmm(self.bias, _matrix(X, "X"), self.W_out.T)


class RLS:
    r"""Recursive least squares, one sample at a time (FORCE learning, Sussillo & Abbott 2009).

    .. math::

        k = \frac{P x}{\mathrm{forgetting} + x^\top P x},\quad
        W \leftarrow W + (y - W x)\, k^\top,\quad
        P \leftarrow \frac{P - k\, x^\top P}{\mathrm{forgetting}},\qquad P_0 = I / \alpha

    in code: ``update(x, y)`` with ``W (O, F)`` and ``P (F, F)``. With
    ``forgetting=1`` the weights after n samples equal ridge regression on them with
    λ = ``alpha`` and no bias (append a constant feature to learn one); a forgetting
    factor below 1 weights the sample s steps back by ``forgetting**s``.

    Args:
        features: F, the size of ``x``.
        outputs: O, the size of ``y``.
        alpha: initial regulariser (> 0): ``P_0 = I / alpha``.
        forgetting: in (0, 1].
    """

    def __init__(
        self, features: int, outputs: int, alpha: float = 1.0, forgetting: float = 1.0
    ) -> None:
        self.features = check_count("features", features, minimum=1)
        self.outputs = check_count("outputs", outputs, minimum=1)
        self.alpha = check_positive_number("alpha", alpha)
        if not 0 < forgetting <= 1:
            raise ValueError(f"forgetting must be in (0, 1], got {forgetting!r}")
        self.forgetting = float(forgetting)
        self.W = torch.zeros((outputs, features), dtype=torch.float64)  # (O, F)
        self.P = torch.eye(features, dtype=torch.float64) / self.alpha  # (F, F)

    def update(self, x, y) -> Tensor:
        """Learn from one sample ``x (F,)``, ``y (O,)``; returns the prior error ``y - W x``."""
        x = torch.as_tensor(x, dtype=torch.float64).reshape(-1)  # (F,)
        y = torch.as_tensor(y, dtype=torch.float64).reshape(-1)  # (O,)
        if x.numel() != self.features or y.numel() != self.outputs:
            raise ValueError(
                f"update expects x with {self.features} and y with {self.outputs} values, "
                f"got {x.numel()} and {y.numel()}"
            )
        px = self.P @ x  # (F,)
        k = px / (self.forgetting + x @ px)  # (F,) gain
        error = y - self.W @ x  # (O,)
        self.W += torch.outer(error, k)
        p = (self.P - torch.outer(k, px)) / self.forgetting  # xᵀP = (Px)ᵀ as P is symmetric
        # re-symmetrised: rounding otherwise makes P drift from symmetric and, with
        # forgetting < 1, blow up (P reached 1e12 within 300 samples at forgetting=0.9)
        self.P = (p + p.T) / 2
        return error

    def predict(self, x) -> Tensor:
        """``W x``: ``(O,)`` for ``x (F,)``, ``(n, O)`` for ``x (n, F)``."""
        x = torch.as_tensor(x, dtype=torch.float64)
        return x @ self.W.T

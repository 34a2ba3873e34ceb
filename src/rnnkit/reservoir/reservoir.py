"""A leaky-integrator reservoir: the fixed random recurrent network of an echo state network."""

from __future__ import annotations

import importlib.util

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit.reservoir.checks import (
    check_count,
    check_fraction,
    check_nonnegative,
    check_positive_number,
)

ACTIVATIONS = {
    "tanh": torch.tanh,
    "identity": lambda a: a,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
}
BACKENDS = ("auto", "numba", "torch")
_REDRAWS = 100  # tries at a W whose spectral radius is not zero (tiny or very sparse W)


def numba_available() -> bool:
    """Whether the compiled loop (``rnnkit.reservoir.kernels``) can be used."""
    return importlib.util.find_spec("numba") is not None


class Reservoir(nn.Module):
    r"""A leaky-integrator echo-state reservoir with fixed random weights (ReservoirPy's update).

    .. math::

        x_t = (1 - lr)\, x_{t-1} + lr\, f(W_{in} u_t + W x_{t-1} + W_{fb} y_{t-1} + bias)
              + noise\, \xi_t,\qquad \xi_t \sim \mathcal N(0, I)

    in code: ``x = (1 - lr) * x + lr * f(u @ W_in.T + x @ W.T + y_prev @ W_fb.T + bias)``,
    then ``+ noise * randn``.

    The weights are buffers, never trained, drawn from a dedicated generator:

    - ``W (units, units)``: each entry nonzero with probability ``connectivity``, values
      N(0, 1), then scaled so that its spectral radius (the largest eigenvalue modulus,
      from all eigenvalues of the dense matrix) is exactly ``sr``.
    - ``W_in (units, input_size)``: each entry nonzero with probability
      ``input_connectivity``, values U(-1, 1) * ``input_scaling`` (uniform, not
      ReservoirPy's Bernoulli ±1); every input reaches at least one unit.
    - ``bias (units,)``: U(-1, 1) * ``bias_scaling``, dense.
    - ``W_fb (units, feedback_size)``: drawn like ``W_in`` (``input_connectivity``,
      U(-1, 1)) times ``feedback_scaling``.

    Args:
        input_size: features of ``u_t``.
        units: reservoir size N.
        sr: spectral radius of ``W`` (> 0).
        lr: leak rate in (0, 1]; 1 is a plain (non-leaky) ESN.
        input_scaling, bias_scaling, feedback_scaling: gains (≥ 0).
        connectivity, input_connectivity: densities in (0, 1].
        activation: ``f``: ``"tanh"`` | ``"identity"`` | ``"relu"`` | ``"sigmoid"``.
        noise: standard deviation of the state noise (≥ 0).
        feedback_size: features of the fed-back output ``y_{t-1}`` (0: no feedback).
        seed: seeds every draw (weights, then noise); None takes a seed from
            torch's global generator, so ``torch.manual_seed`` reproduces it too.
        dtype: of the weights and states.
        backend: ``"numba"`` (the compiled CSR loop of :mod:`rnnkit.reservoir.kernels`),
            ``"torch"`` (dense ``addmm`` per step; the only one for autograd or GPU), or
            ``"auto"``: numba when it is installed and the run is on the CPU without
            gradients, else torch.
        weights: ``W``, ``W_in``, ``bias``, ``W_fb`` to use as they are instead of
            drawing them (what ``EchoStateNetwork.load`` does; ``sr`` and the scalings
            are then not applied).
    """

    def __init__(
        self,
        input_size: int,
        units: int,
        sr: float = 1.25,
        lr: float = 0.3,
        input_scaling: float = 1.0,
        bias_scaling: float = 1.0,
        connectivity: float = 0.1,
        input_connectivity: float = 0.1,
        activation: str = "tanh",
        noise: float = 0.0,
        feedback_size: int = 0,
        feedback_scaling: float = 1.0,
        seed: int | None = None,
        dtype: torch.dtype = torch.float64,
        backend: str = "auto",
        weights: dict[str, Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.input_size = check_count("input_size", input_size, minimum=1)
        self.units = check_count("units", units, minimum=1)
        self.feedback_size = check_count("feedback_size", feedback_size, minimum=0)
        self.sr = check_positive_number("sr", sr)
        self.lr = check_fraction("lr", lr)
        self.connectivity = check_fraction("connectivity", connectivity)
        self.input_connectivity = check_fraction("input_connectivity", input_connectivity)
        self.input_scaling = check_nonnegative("input_scaling", input_scaling)
        self.bias_scaling = check_nonnegative("bias_scaling", bias_scaling)
        self.feedback_scaling = check_nonnegative("feedback_scaling", feedback_scaling)
        self.noise = check_nonnegative("noise", noise)
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation={activation!r} is not supported; use one of {', '.join(ACTIVATIONS)}"
            )
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r} is not supported; use one of {BACKENDS}")
        if backend == "numba" and not numba_available():
            raise ValueError(
                "backend='numba' needs numba: pip install numba, or use backend='auto'"
            )
        self.activation = activation
        self.backend = backend
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)))
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        weights = self._draw_weights() if weights is None else self._check_weights(weights)
        for name, value in weights.items():
            self.register_buffer(name, value.to(dtype))
        self._csr_cache: tuple | None = None

    # ------------------------------------------------------------------ weights
    def _draw_weights(self) -> dict[str, Tensor]:
        """W, W_in, bias, W_fb, drawn in that order, in float64 (rescaled before any cast)."""
        g, n = self.generator, self.units
        for _ in range(_REDRAWS):
            w = _sparse((n, n), self.connectivity, _normal, g)
            radius = _spectral_radius(w)
            if radius > 1e-12:  # zero for an empty or nilpotent W: no rescaling reaches sr
                break
        else:
            raise ValueError(
                f"W keeps a spectral radius of 0 with units={n} and "
                f"connectivity={self.connectivity}; raise connectivity or units"
            )
        w *= self.sr / radius
        w_in = _sparse(
            (n, self.input_size), self.input_connectivity, _uniform, g, every_column=True
        )
        bias = _uniform((n,), generator=g)
        w_fb = _sparse((n, self.feedback_size), self.input_connectivity, _uniform, g, True)
        return {
            "W": w,
            "W_in": w_in * self.input_scaling,
            "bias": bias * self.bias_scaling,
            "W_fb": w_fb * self.feedback_scaling,
        }

    def _check_weights(self, weights: dict[str, Tensor]) -> dict[str, Tensor]:
        n = self.units
        shapes = {
            "W": (n, n),
            "W_in": (n, self.input_size),
            "bias": (n,),
            "W_fb": (n, self.feedback_size),
        }
        got = {k: tuple(torch.as_tensor(v).shape) for k, v in weights.items()}
        if got != shapes:
            raise ValueError(f"weights must have the shapes {shapes}, got {got}")
        return {k: torch.as_tensor(weights[k]).detach().clone() for k in shapes}

    def spectral_radius(self) -> float:
        """max |eigenvalue| of ``W``, from all its eigenvalues (float64)."""
        return _spectral_radius(self.W.double().cpu())

    def _csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``W`` as CSR NumPy arrays for the compiled loop, rebuilt when ``W`` changes."""
        w = self.W
        key = (w.data_ptr(), w._version, w.dtype)
        if self._csr_cache is None or self._csr_cache[0] != key:
            dense = w.detach().cpu().numpy()
            rows, cols = np.nonzero(dense)  # row-major order: what CSR needs
            # unsigned: the kernels' indices skip numba's negative-index checks
            indptr = np.zeros(self.units + 1, dtype=np.uint64)
            np.cumsum(np.bincount(rows, minlength=self.units), out=indptr[1:])
            csr = (indptr, cols.astype(np.uint32), np.ascontiguousarray(dense[rows, cols]))
            self._csr_cache = (key, csr)
        return self._csr_cache[1]

    # ------------------------------------------------------------------ running
    def run(self, inputs, state: Tensor | None = None, feedback=None) -> tuple[Tensor, Tensor]:
        """Run the reservoir over a sequence (or a batch of them, time-major).

        Args:
            inputs: ``u``, ``(T, B, I)``, or ``(T, I)`` for one sequence.
            state: ``x_0``, ``(B, N)`` (``(N,)`` for one sequence); zeros when None.
            feedback: ``y_{t-1}`` for each step, ``(T, B, F)`` / ``(T, F)``; required
                when ``feedback_size > 0`` (with teacher forcing: the targets shifted
                one step, zeros first).

        Returns:
            ``(states, final)``: ``x_1 .. x_T`` ``(T, B, N)`` (``(T, N)`` for one
            sequence) and ``x_T`` ``(B, N)`` (``(N,)``).
        """
        u = self._as_tensor(inputs, "inputs")
        if u.dim() not in (2, 3) or u.shape[-1] != self.input_size:
            raise ValueError(
                f"inputs must have shape (T, B, {self.input_size}) or (T, {self.input_size}), "
                f"got {tuple(u.shape)}"
            )
        single = u.dim() == 2
        if single:
            u = u.unsqueeze(1)  # (T, 1, I)
        T, B, _ = u.shape
        pre = torch.addmm(self.bias, u.reshape(T * B, -1), self.W_in.T)  # (T*B, N)
        pre = pre.view(T, B, self.units)  # (T, B, N): every step's input projection at once
        if self.feedback_size:
            if feedback is None:
                raise ValueError(
                    f"this reservoir has feedback_size={self.feedback_size}; pass feedback, "
                    f"the previous outputs y_(t-1), shaped like inputs with {self.feedback_size} "
                    f"features"
                )
            y = self._as_tensor(feedback, "feedback")
            y = y.unsqueeze(1) if single and y.dim() == 2 else y
            if tuple(y.shape) != (T, B, self.feedback_size):
                raise ValueError(
                    f"feedback must have shape {(T, B, self.feedback_size)} to match inputs, "
                    f"got {tuple(y.shape)}"
                )
            pre = pre + (y.reshape(T * B, -1) @ self.W_fb.T).view(T, B, self.units)
        x0 = self._initial_state(state, B, single)  # (B, N)
        noise = None
        if self.noise > 0:
            noise = self.noise * torch.randn(
                (T, B, self.units), generator=self.generator, dtype=torch.float64
            ).to(pre)  # (T, B, N)
        if T == 0:
            states = pre.new_zeros((0, B, self.units))
            final = x0
        else:
            states = self._loop(pre, x0, noise)  # (T, B, N)
            final = states[-1]
        if single:
            return states.squeeze(1), final.squeeze(0)
        return states, final

    def step(self, u: Tensor, state: Tensor, feedback: Tensor | None = None) -> Tensor:
        """One step: ``x_t (B, N)`` from ``u_t (B, I)``, ``x_{t-1} (B, N)``, ``y_{t-1} (B, F)``."""
        fb = None if feedback is None else feedback.unsqueeze(0)
        return self.run(u.unsqueeze(0), state, fb)[1]

    def use_numba(self, *tensors: Tensor) -> bool:
        """Whether a run on these tensors takes the compiled loop."""
        if self.backend == "torch":
            return False
        fits = self.W.device.type == "cpu" and self.W.dtype in (torch.float32, torch.float64)
        grads = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
        if self.backend == "numba" and not (fits and not grads):
            raise ValueError(
                "backend='numba' runs float32/float64 on the CPU without gradients; "
                "use backend='torch' here"
            )
        return fits and not grads and numba_available()

    def _loop(self, pre: Tensor, x0: Tensor, noise: Tensor | None) -> Tensor:
        """``x_1 .. x_T`` ``(T, B, N)`` from ``pre_t = W_in u_t + W_fb y_{t-1} + bias``."""
        if self.use_numba(pre, x0):
            from rnnkit.reservoir import kernels  # numba is imported only here

            states = kernels.run_leaky(
                pre.detach().contiguous().numpy(),
                x0.detach().contiguous().numpy(),
                None if noise is None else noise.contiguous().numpy(),
                self._csr(),
                self.lr,
                self.activation,
            )
            return torch.from_numpy(states)
        f, lr, w_t = ACTIVATIONS[self.activation], self.lr, self.W.T
        x, states = x0, []
        for t in range(pre.shape[0]):
            x = (1 - lr) * x + lr * f(torch.addmm(pre[t], x, w_t))  # (B, N)
            if noise is not None:
                x = x + noise[t]
            states.append(x)
        return torch.stack(states)

    def _initial_state(self, state, batch: int, single: bool) -> Tensor:
        if state is None:
            return self.W.new_zeros((batch, self.units))
        x = self._as_tensor(state, "state")
        x = x.unsqueeze(0) if single and x.dim() == 1 else x
        if tuple(x.shape) != (batch, self.units):
            raise ValueError(
                f"state must have shape {(batch, self.units)} to match inputs, got {tuple(x.shape)}"
            )
        return x

    def _as_tensor(self, value, name: str) -> Tensor:
        """A tensor on the weights' device and dtype; NaN and inf refused."""
        t = torch.as_tensor(value).to(device=self.W.device, dtype=self.W.dtype)
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contain NaN or inf; clean or impute them first")
        return t

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.units}, sr={self.sr}, lr={self.lr}, "
            f"connectivity={self.connectivity}, activation={self.activation!r}"
        )


def _spectral_radius(w: Tensor) -> float:
    """max |eigenvalue| of a dense float64 CPU matrix, from all its eigenvalues."""
    threads = torch.get_num_threads()
    # one thread: LAPACK's eigensolver gains little from two, and on a busy machine its
    # threads wait on each other (500 units: 0.14 s on one thread, 2 to 6 s on two)
    torch.set_num_threads(1)
    try:
        return float(torch.linalg.eigvals(w).abs().max())
    finally:
        torch.set_num_threads(threads)


def _normal(shape, generator: torch.Generator) -> Tensor:
    """N(0, 1) in float64."""
    return torch.randn(shape, generator=generator, dtype=torch.float64)


def _uniform(shape, generator: torch.Generator) -> Tensor:
    """U(-1, 1) in float64."""
    return torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1


def _sparse(shape, density: float, draw, generator, every_column: bool = False) -> Tensor:
    """``draw(shape)`` with each entry kept with probability ``density`` (float64).

    ``every_column``: a column left empty gets one entry, in a random row, so that no
    input (or fed-back output) is ignored by the whole reservoir.
    """
    values = draw(shape, generator=generator)
    keep = torch.rand(shape, generator=generator, dtype=torch.float64) < density
    if every_column and shape[0] and shape[1]:
        rows = torch.randint(0, shape[0], (shape[1],), generator=generator)
        empty = ~keep.any(dim=0)  # (columns,)
        keep[rows[empty], torch.nonzero(empty).flatten()] = True
    return values * keep

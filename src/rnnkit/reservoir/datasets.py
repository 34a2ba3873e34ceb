"""Benchmark series for reservoir computing, generated in code (no download).

Every function returns NumPy float64 arrays laid out time first, ready for
``EchoStateNetwork.fit``: ``(n_steps, 1)`` for the scalar series, ``(n_steps, 3)``
for Lorenz.
"""

from __future__ import annotations

import math

import numpy as np

MG_SUBSTEPS = 10  # RK4 sub-steps per output step: h = dt / 10


def mackey_glass(
    n_steps: int,
    tau: float = 17,
    beta: float = 0.2,
    gamma: float = 0.1,
    n: float = 10,
    dt: float = 1.0,
    x0: float = 1.2,
    seed: int | None = None,
    discard: int = 500,
) -> np.ndarray:
    """The Mackey-Glass delay differential equation (Mackey & Glass 1977), sampled every ``dt``.

    .. math::

        \\frac{dx}{dt} = \\beta \\frac{x(t-\\tau)}{1 + x(t-\\tau)^n} - \\gamma x(t)

    Integrated with classical RK4 at step ``h = dt / 10``. The delayed term at the
    stages ``t + h/2`` and ``t + h`` falls between stored points whenever ``tau / h``
    is not a whole number, or at the half step; it is linearly interpolated from the
    stored fine-grid history (error O(h^2) in the delayed term only, far below the
    sampling step). The history before ``t = 0`` is ``x0``, plus noise in
    ``[-0.1, 0.1)`` per history point when a ``seed`` is given (a different but
    reproducible trajectory per seed; no seed is fully deterministic). The first
    ``discard`` samples (the transient from that flat history) are dropped.

    With the defaults (``tau = 17``) the series is chaotic, oscillates in about
    [0.4, 1.3] and has a dominant quasi-period of about 50 time units.

    Returns ``(n_steps, 1)``.
    """
    _check_count("n_steps", n_steps)
    _check_count("discard", discard, minimum=0)
    for name, value in (("beta", beta), ("gamma", gamma), ("n", n), ("dt", dt)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"mackey_glass: {name} must be a positive number, got {value}")
    if not (math.isfinite(tau) and tau >= dt):
        raise ValueError(f"mackey_glass: tau must be at least dt ({dt}), got {tau}")
    if not (math.isfinite(x0) and x0 > 0):
        raise ValueError(f"mackey_glass: x0 must be a positive number, got {x0}")

    h = dt / MG_SUBSTEPS
    lag = tau / h  # the delay in fine steps
    if abs(lag - round(lag)) < 1e-9:
        lag = float(round(lag))  # exact: the t and t + h stages then need no interpolation
    past = math.ceil(lag) + 1  # history points before t = 0 that the first step reads
    total = (discard + n_steps - 1) * MG_SUBSTEPS + 1  # fine points from t = 0 on

    history = np.full(past, float(x0))
    if seed is not None:
        history += np.random.default_rng(seed).uniform(-0.1, 0.1, past)
    xs = [*history.tolist(), float(x0)]  # xs[past + k] = x(k h); a list: scalar loop speed

    def delayed(q: float) -> float:  # x at fine position q (relative to t = 0), interpolated
        j = math.floor(q)
        w = q - j
        a = xs[past + j]
        return a if w == 0.0 else a + w * (xs[past + j + 1] - a)

    def f(x: float, xd: float) -> float:
        return beta * xd / (1.0 + xd**n) - gamma * x

    x = float(x0)
    for k in range(total - 1):
        d0, d1, d2 = delayed(k - lag), delayed(k + 0.5 - lag), delayed(k + 1 - lag)
        k1 = f(x, d0)
        k2 = f(x + 0.5 * h * k1, d1)
        k3 = f(x + 0.5 * h * k2, d1)
        k4 = f(x + h * k3, d2)
        x += h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        xs.append(x)

    samples = np.asarray(xs[past::MG_SUBSTEPS], dtype=np.float64)
    return samples[discard:].reshape(-1, 1)


def scale_to_unit(x) -> tuple[np.ndarray, tuple[float, float]]:
    """Map ``x`` affinely onto [-1, 1]: ``2 (x - lo) / (hi - lo) - 1``.

    Returns the scaled array and ``(lo, hi)``, the minimum and maximum of ``x``, so
    the same map can be applied to new data or inverted:
    ``x = (x_scaled + 1) (hi - lo) / 2 + lo``.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        raise ValueError("scale_to_unit: the array is empty")
    if not np.isfinite(x).all():
        raise ValueError("scale_to_unit: the array holds NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if hi == lo:
        raise ValueError(f"scale_to_unit: the array is constant ({lo}); nothing to scale")
    return 2.0 * (x - lo) / (hi - lo) - 1.0, (lo, hi)


def narma10(n_steps: int, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The NARMA-10 task (Atiya & Parlos 2000): a tenth-order nonlinear system to imitate.

    .. math::

        y_{t+1} = 0.3 y_t + 0.05 y_t \\sum_{i=0}^{9} y_{t-i} + 1.5 u_{t-9} u_t + 0.1

    with ``u_t ~ U[0, 0.5]`` i.i.d. and ``u_t = y_t = 0`` for ``t < 0``; ``y_0 = 0``.
    The model sees ``u`` and must output ``y``.

    Returns ``(u, y)``, each ``(n_steps, 1)``.
    """
    _check_count("n_steps", n_steps)
    u = np.random.default_rng(seed).uniform(0.0, 0.5, n_steps)
    y = np.zeros(n_steps)
    window = 0.0  # y_t + ... + y_{t-9}, kept as a running sum
    with np.errstate(over="ignore", invalid="ignore"):  # a blow-up is reported below
        for t in range(n_steps - 1):
            window += y[t] - (y[t - 10] if t >= 10 else 0.0)
            u_lag = u[t - 9] if t >= 9 else 0.0
            y[t + 1] = 0.3 * y[t] + 0.05 * y[t] * window + 1.5 * u_lag * u[t] + 0.1
    # The recursion itself is unstable for a few percent of input draws (8 of seeds
    # 0-199 at 10,000 steps run off to infinity): said, not returned as inf.
    if not np.isfinite(y).all():
        raise ValueError(
            f"narma10: the series diverged with seed={seed} (NARMA-10 blows up for a few "
            f"percent of input draws); use another seed"
        )
    return u.reshape(-1, 1), y.reshape(-1, 1)


def lorenz(
    n_steps: int,
    dt: float = 0.01,
    sigma: float = 10.0,
    rho: float = 28.0,
    beta: float = 8.0 / 3.0,
    x0=(1.0, 1.0, 1.0),
) -> np.ndarray:
    """The Lorenz (1963) system, integrated with classical RK4 at step ``dt``.

    .. math::

        \\dot x = \\sigma (y - x), \\quad \\dot y = x (\\rho - z) - y, \\quad
        \\dot z = x y - \\beta z

    Row 0 is ``x0``; row ``k`` is the state at ``t = k dt``. With the classic
    parameters the trajectory settles on the butterfly attractor
    (``|x|, |y| < 30``, ``0 < z < 50``).

    Returns ``(n_steps, 3)``.
    """
    _check_count("n_steps", n_steps)
    for name, value in (("dt", dt), ("sigma", sigma), ("rho", rho), ("beta", beta)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"lorenz: {name} must be a positive number, got {value}")
    state = np.asarray(x0, dtype=np.float64)
    if state.shape != (3,) or not np.isfinite(state).all():
        raise ValueError(f"lorenz: x0 must be three finite numbers, got {x0!r}")

    def f(x: float, y: float, z: float) -> tuple[float, float, float]:
        return sigma * (y - x), x * (rho - z) - y, x * y - beta * z

    out = np.empty((n_steps, 3))
    out[0] = state
    x, y, z = state.tolist()  # Python floats: a 3-vector is too small for NumPy to pay off
    for k in range(1, n_steps):
        a = f(x, y, z)
        b = f(x + 0.5 * dt * a[0], y + 0.5 * dt * a[1], z + 0.5 * dt * a[2])
        c = f(x + 0.5 * dt * b[0], y + 0.5 * dt * b[1], z + 0.5 * dt * b[2])
        d = f(x + dt * c[0], y + dt * c[1], z + dt * c[2])
        x += dt / 6.0 * (a[0] + 2.0 * b[0] + 2.0 * c[0] + d[0])
        y += dt / 6.0 * (a[1] + 2.0 * b[1] + 2.0 * c[1] + d[1])
        z += dt / 6.0 * (a[2] + 2.0 * b[2] + 2.0 * c[2] + d[2])
        out[k] = (x, y, z)
    if not np.isfinite(out).all():
        raise ValueError(f"lorenz: the integration diverged; use a smaller dt than {dt}")
    return out


def _check_count(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")

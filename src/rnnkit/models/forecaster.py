r"""``Forecaster``: a window of past values -> recurrent stack -> the values to come.

Two ways to forecast (``ForecasterConfig.mode``):

- ``"direct"``: the stack reads the window ``x_{o-L} .. x_{o-1}`` (``L = window``) and
  its last output ``h`` gives all ``horizon`` future values at once,
  ``mean = W_out h + b_out`` reshaped to ``(horizon, n_targets)``. Inputs may hold
  covariates beside the targets.
- ``"autoregressive"``: a per-step head gives the one-step-ahead forecast at every step,
  ``mean_t = W_out h_t + b_out`` predicting ``x_{t+1}``; training is teacher-forced
  on all ``L`` steps. :meth:`Forecaster.forecast` runs the window, then feeds each
  forecast back as the next input (closed loop), carrying the state, so any number
  of steps can follow. Inputs must be the targets.

Probabilistic (``probabilistic=True``): the head also gives a variance per value,
``var = softplus(W_var h + b_var) + MIN_VAR``, and training minimises the Gaussian
negative log-likelihood, averaged over every value::

    nll = 0.5 * (log(2 pi) + log(var) + (y - mean)^2 / var)

(``torch.nn.functional.gaussian_nll_loss(mean, y, var, full=True)`` up to its clamp of
``var``). Otherwise the loss is the mean squared error ``mean((y - mean)^2)``. A
``weight`` per target step (0 or 1) may leave steps out of either mean.

Window normalisation (``window_norm=True``, after RevIN, Kim et al. 2022): each window
is scaled by its own statistics, ``x' = (x - mu) / sd`` with ``mu`` and
``sd = sqrt(var + NORM_EPS)`` over the window's steps, and the outputs mapped back,
``mean = mean' * sd + mu``, ``var = var' * sd^2`` (a closed loop keeps the window's
``mu`` and ``sd``). The model then sees the shape of a window, not its level, which
helps where the level or amplitude drifts beyond the training rows (sunspots).

Values are in scaled units (:class:`rnnkit.data.windows.Scaler`); :meth:`Forecaster.predict`
takes and returns the data's own units when ``model.scaler`` is set. The targets are the
first ``n_targets`` input columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit.data.windows import MODES, Scaler, as_series
from rnnkit.models.builder import build_stack, check_stack_settings
from rnnkit.settings import JSONSettings

MIN_VAR = 1e-6  # floor of a predicted variance (scaled units): keeps the NLL finite
NORM_EPS = 1e-2  # added to a window's variance (scaled units): a flat window stays finite
LOG_2PI = math.log(2.0 * math.pi)


@dataclass
class ForecasterConfig(JSONSettings):
    """Everything needed to rebuild a :class:`Forecaster` (saved as JSON)."""

    settings_kind = "forecaster"

    n_inputs: int = 1  # input columns; the targets are the first n_targets of them
    n_targets: int = 1
    window: int = 32  # past steps the model reads
    horizon: int = 1  # steps a direct model forecasts; the default forecast length
    mode: str = "direct"  # direct | autoregressive
    probabilistic: bool = False  # Gaussian mean and variance, Gaussian NLL loss
    cell: str = "lstm"  # one of CELL_KINDS
    hidden_size: int = 64
    num_layers: int = 1
    dropout: float = 0.0  # variational dropout on the inputs and between layers
    layer_norm: bool = False  # layer-normalised LSTM
    engine: str = "auto"
    window_norm: bool = False  # each window scaled by its own mean and std (RevIN-like)

    def __post_init__(self) -> None:
        for name in ("n_inputs", "n_targets", "window", "horizon"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be 'direct' or 'autoregressive', got {self.mode!r}")
        if self.n_targets > self.n_inputs:
            raise ValueError(
                f"n_targets ({self.n_targets}) exceeds n_inputs ({self.n_inputs}): the "
                f"targets are the first input columns"
            )
        if self.mode == "autoregressive" and self.n_inputs != self.n_targets:
            raise ValueError(
                "autoregressive mode feeds its forecasts back as inputs, so the inputs must be "
                "the targets alone; use direct mode with covariates"
            )
        for name in ("probabilistic", "window_norm", "layer_norm"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        check_stack_settings(
            kind=self.cell,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            dropout=self.dropout,
            state_dropout=0.0,
            layer_norm=self.layer_norm,
            engine=self.engine,
        )


@dataclass
class Forecast:
    """A forecast in the data's units: ``mean`` ``(steps, n_targets)``; with a
    probabilistic model, ``lower``/``upper`` bound the central ``level`` interval."""

    mean: np.ndarray
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    level: float | None = None


def gaussian_nll(mean: Tensor, var: Tensor, y: Tensor) -> Tensor:
    """``mean(0.5 * (log(2 pi) + log(var) + (y - mean)^2 / var))`` over every element."""
    return 0.5 * (LOG_2PI + torch.log(var) + (y - mean) ** 2 / var).mean()


class Forecaster(nn.Module):
    """Recurrent forecaster; see the module docstring for the two modes and the loss.

    ``forward(x)`` with ``x`` ``(B, window, n_inputs)`` (batch first, as windows are
    stored) returns ``(mean, var)``: ``(B, horizon, n_targets)`` in direct mode,
    ``(B, window, n_targets)`` (one step ahead at every step) in autoregressive mode;
    ``var`` is None unless probabilistic.
    """

    def __init__(self, config: ForecasterConfig, scaler: Scaler | None = None) -> None:
        super().__init__()
        self.config = config
        self.rnn = build_stack(
            config.cell,
            config.n_inputs,
            config.hidden_size,
            config.num_layers,
            dropout=config.dropout,
            layer_norm=config.layer_norm,
            engine=config.engine,
        )
        per_step = config.n_targets * (config.horizon if config.mode == "direct" else 1)
        self.n_out = per_step  # means per head application
        self.head = nn.Linear(self.rnn.output_size, per_step * (2 if config.probabilistic else 1))
        self.scaler = scaler  # the data's scaling, for predict(); not a parameter

    # ------------------------------------------------------------------ core

    def _split(self, raw: Tensor) -> tuple[Tensor, Tensor | None]:
        """Head output -> ``(mean, var)``; ``var = softplus(raw_var) + MIN_VAR``."""
        if not self.config.probabilistic:
            return raw, None
        mean, raw_var = raw.split(self.n_out, dim=-1)
        return mean, nn.functional.softplus(raw_var) + MIN_VAR

    def _check(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.config.n_inputs:
            raise ValueError(
                f"expected windows of shape (B, steps, {self.config.n_inputs}), "
                f"got {tuple(x.shape)}"
            )
        return x.to(self.head.weight.dtype)

    def _normalise(self, x: Tensor):
        """``(x - mu) / sd`` with each window's own mean and std (``window_norm``), else x."""
        if not self.config.window_norm:
            return x, None
        mu = x.mean(dim=1, keepdim=True)  # (B, 1, I)
        sd = (x.var(dim=1, unbiased=False, keepdim=True) + NORM_EPS).sqrt()
        return (x - mu) / sd, (mu, sd)

    def _denormalise(self, mean: Tensor, var: Tensor | None, stats):
        if stats is None:
            return mean, var
        K = self.config.n_targets
        mu, sd = stats[0][..., :K], stats[1][..., :K]  # (B, 1, K)
        return mean * sd + mu, None if var is None else var * sd**2

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        x, stats = self._normalise(self._check(x))
        mean, var = self._forward(x)
        return self._denormalise(mean, var, stats)

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        x = x.transpose(0, 1)  # (L, B, I) time-major
        y, _ = self.rnn.run(x, None, None)  # (L, B, H)
        cfg = self.config
        K = cfg.n_targets
        if cfg.mode == "direct":
            mean, var = self._split(self.head(y[-1]))  # (B, horizon * K) each
            shape = (x.shape[1], cfg.horizon, K)
            return mean.reshape(shape), None if var is None else var.reshape(shape)
        mean, var = self._split(self.head(y))  # (L, B, K) each
        return mean.transpose(0, 1), None if var is None else var.transpose(0, 1)  # (B, L, K)

    def loss(self, x: Tensor, y: Tensor, weight: Tensor | None = None) -> Tensor:
        """Mean squared error, or the Gaussian NLL when probabilistic (scaled units).

        ``weight`` (shaped like ``y`` without its last dimension) weighs each step's
        values: 0 leaves a step out (see :class:`rnnkit.data.windows.Windows`).
        """
        mean, var = self(x)
        if var is None:
            per_value = (y - mean) ** 2
        else:
            per_value = 0.5 * (LOG_2PI + torch.log(var) + (y - mean) ** 2 / var)
        if weight is None:
            return per_value.mean()
        weight = weight.to(per_value.dtype).unsqueeze(-1)  # (B, T_y, 1)
        return (per_value * weight).sum() / (weight.sum() * y.shape[-1]).clamp_min(1.0)

    # ------------------------------------------------------------- forecasting

    def forecast(self, x: Tensor, steps: int | None = None) -> tuple[Tensor, Tensor | None]:
        """Point forecasts of the ``steps`` rows after each window ``x`` ``(B, L, I)``.

        Direct: the first ``steps <= horizon`` rows of ``forward``. Autoregressive: the
        window is run once, then each mean is fed back as the next input with the state
        carried (closed loop); ``var`` is then each step's one-step variance along that
        path, not the spread of the whole path (see :meth:`sample_paths`).

        Returns ``(mean, var)``, each ``(B, steps, n_targets)`` (``var`` None unless
        probabilistic).
        """
        return self._roll(x, steps, sample=None)

    def sample_paths(
        self, x: Tensor, steps: int | None = None, n_paths: int = 200, seed: int = 0
    ) -> Tensor:
        """Monte-Carlo sample paths ``(n_paths, B, steps, n_targets)`` of a probabilistic model.

        Autoregressive: each step draws ``mean + sqrt(var) * eps`` (``eps ~ N(0, 1)``
        from a generator seeded with ``seed``) and feeds the draw back, so the spread
        grows with the steps as the model's own uncertainty compounds. Direct: each
        value drawn from its Gaussian independently.
        """
        if not self.config.probabilistic:
            raise ValueError("sample_paths needs a probabilistic model (probabilistic=True)")
        if n_paths < 1:
            raise ValueError(f"n_paths must be a positive integer, got {n_paths}")
        x = self._check(x)
        generator = torch.Generator(device=x.device).manual_seed(seed)
        batch = x.shape[0]
        repeated = x.repeat(n_paths, 1, 1)  # (P * B, L, I): path p of window b at p * B + b
        paths, _ = self._roll(repeated, steps, sample=generator)
        return paths.reshape(n_paths, batch, *paths.shape[1:])  # (P, B, steps, K)

    def _roll(self, x: Tensor, steps: int | None, sample) -> tuple[Tensor, Tensor | None]:
        cfg = self.config
        x = self._check(x)
        steps = cfg.horizon if steps is None else steps
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        if cfg.mode == "direct":
            if steps > cfg.horizon:
                raise ValueError(
                    f"a direct model forecasts at most its horizon ({cfg.horizon} steps), "
                    f"not {steps}; train with a longer horizon or use autoregressive mode"
                )
            mean, var = self(x)
            mean, var = mean[:, :steps], None if var is None else var[:, :steps]
            if sample is not None:
                eps = torch.randn(mean.shape, generator=sample, device=mean.device)
                return mean + var.sqrt() * eps.to(mean.dtype), var
            return mean, var
        x, stats = self._normalise(x)  # the window's statistics hold for the whole path
        y, state = self.rnn.run(x.transpose(0, 1), None, None)  # (L, B, H): the window once
        value = x[:, -1]  # (B, K): the last input
        means, variances = [], []
        for step in range(steps):
            if step > 0:  # the last forecast is the next input; the state carries on
                y, state = self.rnn.run(value.unsqueeze(0), state, None)  # (1, B, H)
            mean, var = self._split(self.head(y[-1]))  # (B, K)
            value = mean
            if sample is not None:
                eps = torch.randn(mean.shape, generator=sample, device=mean.device)
                value = mean + var.sqrt() * eps.to(mean.dtype)
            means.append(value)
            variances.append(var)
        mean = torch.stack(means, dim=1)  # (B, steps, K)
        var = None if variances[0] is None else torch.stack(variances, dim=1)
        return self._denormalise(mean, var, stats)

    # ------------------------------------------------------ in the data's units

    def _windows(self, histories) -> Tensor:
        """The last ``window`` rows of each history, scaled: ``(N, window, n_inputs)``."""
        cfg = self.config
        if self.scaler is None:
            raise ValueError("predict needs model.scaler: the Scaler fitted on the training rows")
        windows = []
        for history in histories:
            history = as_series(history, "predict")
            if history.shape[1] != cfg.n_inputs:
                raise ValueError(
                    f"the model reads {cfg.n_inputs} column(s) "
                    f"({', '.join(self.scaler.columns)}), the series has {history.shape[1]}"
                )
            if len(history) < cfg.window:
                raise ValueError(
                    f"the model reads the last {cfg.window} rows; the series has {len(history)}"
                )
            windows.append(self.scaler.transform(history[-cfg.window :]))  # (L, I)
        ref = self.head.weight
        return torch.as_tensor(np.stack(windows), dtype=ref.dtype, device=ref.device)

    @torch.no_grad()
    def predict_many(self, histories, steps: int | None = None, batch_size: int = 1024):
        """Point forecasts ``(N, steps, n_targets)`` after each of ``N`` histories.

        Each history is a ``(T_i, n_inputs)`` array in the data's units (as for
        :meth:`predict`); they are forecast in batches, so a backtest over many origins
        costs a few batched runs.
        """
        was_training = self.training
        self.eval()
        try:
            targets = self.scaler.select(self.config.n_targets) if self.scaler else None
            out = []
            for i in range(0, len(histories), batch_size):
                x = self._windows(histories[i : i + batch_size])
                mean, _ = self.forecast(x, steps)
                out.append(targets.inverse(mean.double().cpu().numpy()))
            return np.concatenate(out)
        finally:
            self.train(was_training)

    @torch.no_grad()
    def predict(
        self,
        series,
        steps: int | None = None,
        *,
        level: float = 0.8,
        n_paths: int = 200,
        seed: int = 0,
    ) -> Forecast:
        """Forecast the ``steps`` rows after the end of ``series``, in the data's units.

        ``series`` ``(T, n_inputs)`` (1-D for one column) in the data's own units, at
        least ``window`` rows; its last ``window`` rows are scaled with ``self.scaler``,
        forecast, and the forecast scaled back. With a probabilistic model, the
        ``level`` interval (e.g. 0.8 or 0.95) is ``mean ± z sigma`` with
        ``z = Phi^-1((1 + level) / 2)`` for a direct model, and the
        ``(1 ± level) / 2`` quantiles of ``n_paths`` seeded Monte-Carlo sample paths for
        an autoregressive one.
        """
        cfg = self.config
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must be in (0, 1), e.g. 0.8 or 0.95; got {level}")
        x = self._windows([series])  # (1, L, I)
        targets = self.scaler.select(cfg.n_targets)
        was_training = self.training
        self.eval()
        try:
            mean, var = self.forecast(x, steps)
            out = Forecast(targets.inverse(mean[0].double().cpu().numpy()))
            if not cfg.probabilistic:
                return out
            out.level = level
            if cfg.mode == "direct":
                z = NormalDist().inv_cdf((1.0 + level) / 2.0)
                sigma = targets.inverse_std(var[0].sqrt().double().cpu().numpy())
                out.lower, out.upper = out.mean - z * sigma, out.mean + z * sigma
            else:
                paths = self.sample_paths(x, steps, n_paths, seed)[:, 0]  # (P, steps, K)
                q = torch.tensor([(1.0 - level) / 2.0, (1.0 + level) / 2.0], dtype=paths.dtype)
                lo, hi = torch.quantile(paths.cpu(), q.cpu(), dim=0).double().numpy()
                out.lower, out.upper = targets.inverse(lo), targets.inverse(hi)
            return out
        finally:
            self.train(was_training)

r"""Exported forms of a :class:`~rnnkit.models.Forecaster` (values in scaled units).

- sequence: ``x (B, T, n_inputs)``, the last ``T`` rows before the forecast origin
  (trained with ``T = window``) -> ``forecast (B, horizon, K)`` (and ``forecast_var`` when
  probabilistic), as :meth:`Forecaster.forecast` gives them: direct models from the
  last state, autoregressive ones by feeding each forecast back ``horizon - 1`` times;
- step: one row ``x (B, n_inputs)`` and the layer state -> the forecast from the rows
  read so far and the state. Autoregressive: ``forecast (B, K)``, the next row; feed it
  back as the next ``x`` for a closed-loop forecast of any length. Direct:
  ``forecast (B, horizon, K)``, the forecast if the window ended at this row.

With ``window_norm`` the sequence form normalises its window itself; the step form
takes the window's statistics as inputs, ``window_mean`` = the mean of the window's
rows and ``window_std = sqrt(biased variance + NORM_EPS)`` (``NORM_EPS = 0.01``), each
``(B, n_inputs)``, and keeps them for the whole closed loop.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.export.spec import ExportForm, TensorSpec, state_specs
from rnnkit.export.steps import StackRunner
from rnnkit.models.forecaster import Forecaster


def _output_specs(model: Forecaster, shape: tuple, what: str) -> list[TensorSpec]:
    # Not "mean"/"var": ONNX value names must be unique, and the ops of those names are inside.
    specs = [TensorSpec("forecast", shape, doc=f"{what}, the mean (scaled units)")]
    if model.config.probabilistic:
        specs.append(TensorSpec("forecast_var", shape, doc="variance of each value (scaled²)"))
    return specs


class ForecasterSequence(ExportForm):
    """``(x (B, T, n_inputs),) -> (forecast (B, horizon, K)[, forecast_var])``."""

    form = "sequence"
    notes = "x: the last rows before the forecast, scaled (the model was trained on window rows)"

    def __init__(self, model: Forecaster, loop: str = "scan") -> None:
        super().__init__()
        self.model = model
        self.stack = StackRunner(model.rnn, loop)
        cfg = model.config
        self.inputs = [TensorSpec("x", ("B", "T", cfg.n_inputs), doc="past rows (scaled units)")]
        shape = ("B", cfg.horizon, cfg.n_targets)
        self.outputs = _output_specs(model, shape, f"forecast of the next {cfg.horizon} rows")
        self.state = []

    def forward(self, x: Tensor):
        model, cfg = self.model, self.model.config
        x, stats = model._normalise(x)
        inputs = x.transpose(0, 1)  # (T, B, I)
        y, states = self.stack(inputs, None, self.stack.zeros(inputs))  # (T, B, H)
        mean, var = model._split(model.head(y[-1]))  # (B, n_out) each
        if cfg.mode == "direct":
            shape = (x.shape[0], cfg.horizon, cfg.n_targets)
            mean, var = mean.reshape(shape), None if var is None else var.reshape(shape)
        else:  # closed loop: each forecast is the next input, the state carried on
            means, variances = [mean], [var]
            for _ in range(cfg.horizon - 1):
                y_t, states = self.stack.step(mean, states)  # (B, H)
                mean, var = model._split(model.head(y_t))  # (B, K)
                means.append(mean)
                variances.append(var)
            mean = torch.stack(means, dim=1)  # (B, horizon, K)
            var = None if var is None else torch.stack(variances, dim=1)
        mean, var = model._denormalise(mean, var, stats)
        return (mean,) if var is None else (mean, var)


class ForecasterStep(ExportForm):
    """``(x (B, n_inputs)[, window_mean, window_std], *state) -> (forecast, ..., *state)``."""

    form = "step"

    def __init__(self, model: Forecaster) -> None:
        super().__init__()
        self.model = model
        self.stack = StackRunner(model.rnn, "scan")
        cfg, L = model.config, len(self.stack.runners)
        row = ("B", cfg.n_inputs)
        self.inputs = [TensorSpec("x", row, doc="one row (scaled units)")]
        if cfg.window_norm:
            self.inputs += [
                TensorSpec("window_mean", row, doc="mean of the window's rows"),
                TensorSpec("window_std", row, doc="sqrt(biased variance + 0.01)", kind="positive"),
            ]
        ins, outs, self.state = state_specs(self.stack.names, self.stack.sizes, L)
        self.inputs += ins
        if cfg.mode == "direct":
            shape, what = ("B", cfg.horizon, cfg.n_targets), "forecast from the rows so far"
        else:
            shape, what = ("B", cfg.n_targets), "the next row's forecast"
        self.outputs = [*_output_specs(model, shape, what), *outs]
        if cfg.mode == "autoregressive":
            self.notes = "feed each forecast back as the next x for a closed-loop forecast"
        else:
            self.notes = "after the window's last row, forecast is the direct model's forecast"
        if cfg.window_norm:
            self.notes += "; window_mean and window_std stay those of the window read"

    def forward(self, x: Tensor, *rest: Tensor):
        model, cfg = self.model, self.model.config
        K = cfg.n_targets
        if cfg.window_norm:
            mu, sd, *state = rest
            x = (x - mu) / sd
        else:
            state = rest
        y, states = self.stack.step(x, self.stack.pack(state))  # (B, H)
        mean, var = model._split(model.head(y))  # (B, n_out) each
        if cfg.mode == "direct":
            shape = (x.shape[0], cfg.horizon, K)
            mean, var = mean.reshape(shape), None if var is None else var.reshape(shape)
        if cfg.window_norm:
            mu, sd = mu[:, :K], sd[:, :K]  # (B, K)
            if cfg.mode == "direct":
                mu, sd = mu[:, None], sd[:, None]  # (B, 1, K)
            mean, var = mean * sd + mu, None if var is None else var * sd**2
        outputs = (mean,) if var is None else (mean, var)
        return (*outputs, *self.stack.unpack(states))


__all__ = ["ForecasterSequence", "ForecasterStep"]

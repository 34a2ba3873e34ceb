"""Forecast accuracy, the naive baselines, and a rolling-origin backtest.

With truth ``y`` and forecast ``f`` (same shape; every element counts once):

- ``MAE = mean(|y - f|)``, ``RMSE = sqrt(mean((y - f)^2))``;
- ``sMAPE = mean(200 |y - f| / (|y| + |f|))`` in percent, a term with ``y = f = 0``
  counting 0;
- ``MASE = MAE / scale`` with ``scale = mean(|train[t] - train[t - m]|)`` over the
  training part: the in-sample MAE of the seasonal-naive forecast of period ``m``
  (``m = 1``: the naive forecast). Below 1, the forecast beats that in-sample
  benchmark. With several target columns each has its own scale, and MASE is the
  mean of the per-column values.

Baselines from a history ``h`` of ``n`` rows, for step ``j = 0 .. horizon-1`` after it:
naive ``f_j = h[n - 1]``; seasonal naive ``f_j = h[n - m + (j mod m)]`` (the last
observed season, repeated).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

METRICS = ("mae", "rmse", "smape", "mase")


def _pair(y, f) -> tuple[np.ndarray, np.ndarray]:
    y, f = np.asarray(y, dtype=np.float64), np.asarray(f, dtype=np.float64)
    if y.shape != f.shape:
        raise ValueError(f"truth {y.shape} and forecast {f.shape} differ in shape")
    if y.size == 0:
        raise ValueError("no values to score")
    return y, f


def mae(y, f) -> float:
    """``mean(|y - f|)``."""
    y, f = _pair(y, f)
    return float(np.abs(y - f).mean())


def rmse(y, f) -> float:
    """``sqrt(mean((y - f)^2))``."""
    y, f = _pair(y, f)
    return float(np.sqrt(((y - f) ** 2).mean()))


def smape(y, f) -> float:
    """``mean(200 |y - f| / (|y| + |f|))`` in percent (0 to 200); ``0 / 0`` counts as 0."""
    y, f = _pair(y, f)
    num, den = 200.0 * np.abs(y - f), np.abs(y) + np.abs(f)
    return float(np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0).mean())


def seasonal_scale(train, m: int = 1, *, strict: bool = True) -> np.ndarray:
    """Per column, ``mean(|train[t] - train[t - m]|)``: MASE's denominator ``(K,)``.

    A column that repeats itself with period ``m`` (up to rounding: a scale below
    ``1e-10`` times its largest magnitude) leaves MASE undefined: a ValueError, or with
    ``strict=False`` NaN for that column.
    """
    train = np.asarray(train, dtype=np.float64)
    train = train[:, None] if train.ndim == 1 else train  # (n, K)
    _check_period(m)
    if len(train) <= m:
        raise ValueError(
            f"MASE with season {m} needs more than {m} training rows, got {len(train)}"
        )
    scale = np.abs(train[m:] - train[:-m]).mean(axis=0)
    undefined = scale <= 1e-10 * np.abs(train).max(axis=0)
    if undefined.any() and strict:
        raise ValueError(
            f"the training part repeats itself exactly with period {m}; MASE is undefined"
        )
    scale[undefined] = np.nan
    return scale


def mase(y, f, train, m: int = 1) -> float:
    """``MAE / seasonal_scale(train, m)``; for ``(..., K)`` arrays the mean over columns."""
    y, f = _pair(y, f)
    scale = seasonal_scale(train, m)
    k = scale.size
    if k > 1 and y.shape[-1] != k:
        raise ValueError(f"the training part has {k} columns but the forecast {y.shape[-1]}")
    errors = np.abs(y - f).reshape(-1, k)  # (values, K)
    return float((errors.mean(axis=0) / scale).mean())


def _check_period(m: int) -> None:
    if not isinstance(m, (int, np.integer)) or isinstance(m, bool) or m < 1:
        raise ValueError(f"the season (period) must be a positive integer, got {m!r}")


def naive_forecast(history, horizon: int) -> np.ndarray:
    """The last row repeated: ``(horizon, K)``."""
    history = _history(history)
    return np.repeat(history[-1:], horizon, axis=0)


def seasonal_naive_forecast(history, horizon: int, m: int) -> np.ndarray:
    """``f_j = h[n - m + (j mod m)]``: the last season repeated, ``(horizon, K)``."""
    history = _history(history)
    _check_period(m)
    n = len(history)
    if n < m:
        raise ValueError(f"a seasonal-naive forecast with season {m} needs {m} rows, got {n}")
    return history[n - m + np.arange(horizon) % m]


def _history(history) -> np.ndarray:
    history = np.asarray(history, dtype=np.float64)
    history = history[:, None] if history.ndim == 1 else history  # (n, K)
    if len(history) == 0:
        raise ValueError("a forecast needs at least one row of history")
    return history


# A forecaster for the backtest: the histories known at N origins (each the rows before
# its origin) -> the next `horizon` rows of the target columns, (N, horizon, n_targets).
ForecastFn = Callable[[list[np.ndarray]], np.ndarray]


def per_origin(forecast: Callable[[np.ndarray], np.ndarray]) -> ForecastFn:
    """A backtest forecaster from one that takes a single history and returns
    ``(horizon, n_targets)`` (an ARIMA refit at each origin, say)."""
    return lambda histories: np.stack([forecast(h) for h in histories])


@dataclass
class Backtest:
    """Scores of each forecaster over the same rolling origins."""

    horizon: int
    season: int
    origins: list[int]
    rows: list[dict] = field(default_factory=list)  # {"name", "mae", "rmse", "smape", "mase"}
    forecasts: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # (N, H, K)

    def row(self, name: str) -> dict:
        for r in self.rows:
            if r["name"] == name:
                return r
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {
            "horizon": self.horizon,
            "season": self.season,
            "origins": self.origins,
            # JSON has no NaN: an undefined MASE is written as null
            "rows": [
                {k: v if not isinstance(v, float) or np.isfinite(v) else None for k, v in r.items()}
                for r in self.rows
            ],
        }

    def table(self) -> str:
        """A Markdown table: one row per forecaster, the four metrics as columns."""
        return format_table(self.rows)


def format_table(rows: list[dict]) -> str:
    width = max(len("forecaster"), *(len(r["name"]) for r in rows))
    lines = [
        f"| {'forecaster':<{width}} |       MAE |      RMSE |  sMAPE % |   MASE |",
        f"| {'-' * width} | --------: | --------: | -------: | -----: |",
    ]
    for r in rows:
        mase = f"{r['mase']:6.3f}" if np.isfinite(r["mase"]) else "   n/a"
        lines.append(
            f"| {r['name']:<{width}} | {r['mae']:9.4g} | {r['rmse']:9.4g} | "
            f"{r['smape']:8.3f} | {mase} |"
        )
    return "\n".join(lines)


def backtest(
    values,
    forecasters: dict[str, ForecastFn],
    *,
    horizon: int,
    start: int,
    train_end: int,
    season: int = 1,
    every: int = 1,
    n_targets: int | None = None,
    baselines: bool = True,
) -> Backtest:
    """Rolling-origin evaluation of forecasters against the naive baselines.

    ``values`` ``(T, C)``: the whole series; the targets are its first ``n_targets``
    columns (default: all). Origins ``o = start, start + every, ...`` while
    ``o + horizon <= T``. Each forecaster is called once with the list of histories
    ``values[:o]``, one per origin (copies: nothing from an origin on is reachable),
    and returns for each the rows ``o .. o + horizon - 1`` of the targets,
    ``(N, horizon, n_targets)``; :func:`per_origin` adapts a one-history function.
    MAE, RMSE and sMAPE pool every origin and step; MASE divides the MAE by the
    seasonal-naive scale (period ``season``) of the rows before ``train_end`` (NaN if a
    target repeats itself exactly with that period there).
    With ``baselines``, the naive and seasonal-naive forecasts are scored beside them
    on the same origins.
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[:, None] if values.ndim == 1 else values  # (T, C)
    k = values.shape[1] if n_targets is None else n_targets
    _check_period(season)
    for name, value in (("horizon", horizon), ("every", every)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if start < max(1, season if baselines else 1):
        raise ValueError(
            f"the first origin ({start}) must leave at least {max(1, season)} rows of history"
        )
    origins = list(range(start, len(values) - horizon + 1, every))
    if not origins:
        raise ValueError(
            f"no forecast origin: the rows from {start} on ({len(values) - start}) are fewer "
            f"than the horizon ({horizon})"
        )
    truth = np.stack([values[o : o + horizon, :k] for o in origins])  # (N, H, K)
    train = values[:train_end, :k]
    scale = seasonal_scale(train, season, strict=False)  # NaN: MASE undefined for a column
    everyone = dict(forecasters)
    if baselines:
        everyone["naive"] = per_origin(lambda h: naive_forecast(h[:, :k], horizon))
        everyone[f"seasonal naive (m={season})"] = per_origin(
            lambda h: seasonal_naive_forecast(h[:, :k], horizon, season)
        )
    result = Backtest(horizon=horizon, season=season, origins=origins)
    for name, fn in everyone.items():
        histories = [values[:o].copy() for o in origins]
        forecast = _checked(name, fn(histories), (len(origins), horizon, k))  # (N, H, K)
        errors = np.abs(truth - forecast).reshape(-1, k)  # (N * H, K)
        result.forecasts[name] = forecast
        result.rows.append(
            {
                "name": name,
                "mae": mae(truth, forecast),
                "rmse": rmse(truth, forecast),
                "smape": smape(truth, forecast),
                "mase": float((errors.mean(axis=0) / scale).mean()),
            }
        )
    return result


def _checked(name: str, forecast, shape: tuple[int, int, int]) -> np.ndarray:
    forecast = np.asarray(forecast, dtype=np.float64)
    if forecast.ndim == 2 and shape[2] == 1:
        forecast = forecast[:, :, None]  # (N, H) for one target
    if forecast.shape != shape:
        raise ValueError(f"forecaster {name!r} returned {forecast.shape}, expected {shape}")
    if not np.isfinite(forecast).all():
        raise ValueError(f"forecaster {name!r} returned NaN or infinite values")
    return forecast

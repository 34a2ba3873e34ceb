"""``POST /forecast``: the rows after a history, from a forecasting run.

The history comes in the data's own units, one list per column the run reads (its
targets, then its covariates), and goes through :meth:`Forecaster.predict` as in
``rnnkit forecast predict``: the last ``window`` rows are scaled with the run's
scaler, forecast, and scaled back. Probabilistic runs add the central ``level``
interval: ``mean ± z sigma`` (direct) or quantiles of ``samples`` seeded Monte-Carlo
paths (autoregressive).
"""

from __future__ import annotations

import math

import numpy as np

from rnnkit.serve.runs import ServedRun
from rnnkit.serve.schemas import (
    MAX_FORECAST_STEPS,
    MAX_HISTORY_ROWS,
    MAX_SAMPLES,
    ForecastRequest,
    ForecastResponse,
    Interval,
    bad,
    check_count,
    check_finite,
    check_seed,
    too_large,
)


def history(run: ServedRun, request: ForecastRequest) -> np.ndarray:
    """The history as a ``(T, n_inputs)`` float64 array in the run's column order."""
    columns = run.meta["columns"]
    given = request.history
    if isinstance(given, list):
        if len(columns) != 1:
            raise bad(
                f"this run reads {len(columns)} columns; send history as an object "
                f"mapping each of {', '.join(columns)} to its values"
            )
        given = {columns[0]: given}
    missing = [c for c in columns if c not in given]
    unknown = [c for c in given if c not in columns]
    if missing or unknown:
        wrong = f"lacks {missing[0]!r}" if missing else f"has an unknown column {unknown[0]!r}"
        raise bad(f"history {wrong}; the run reads the columns {', '.join(columns)}")
    rows = {len(given[c]) for c in columns}
    if len(rows) > 1:
        raise bad(f"history columns differ in length ({', '.join(map(str, sorted(rows)))})")
    window = run.model.config.window
    (count,) = rows
    if count > MAX_HISTORY_ROWS:
        raise too_large(f"history must have at most {MAX_HISTORY_ROWS} rows, got {count}")
    if count < window:
        raise bad(f"the run reads the last {window} rows; history has {count}")
    for c in columns:
        check_finite(f"history[{c!r}]", given[c])
    return np.stack([np.asarray(given[c], dtype=np.float64) for c in columns], axis=1)


def check(run: ServedRun, request: ForecastRequest) -> int:
    """The bounds of a forecast request; returns the steps to forecast."""
    cfg = run.model.config
    steps = cfg.horizon if request.steps is None else request.steps
    if cfg.mode == "direct":
        if not 1 <= steps <= cfg.horizon:
            raise bad(
                f"steps must be in 1..{cfg.horizon}: this direct run forecasts at most "
                f"its horizon, got {steps}"
            )
    else:
        check_count("steps", steps, 1, MAX_FORECAST_STEPS)
    if not 0.0 < request.level < 1.0:  # also refuses NaN
        raise bad(f"level must be in (0, 1), e.g. 0.8 or 0.95; got {request.level}")
    check_count("samples", request.samples, 1, MAX_SAMPLES)
    check_seed(request.seed)
    return steps


def handle(run: ServedRun, request: ForecastRequest) -> ForecastResponse:
    """Forecast ``steps`` rows; the caller holds the model lock."""
    steps = check(run, request)
    series = history(run, request)
    out = run.model.predict(
        series, steps, level=request.level, n_paths=request.samples, seed=request.seed
    )
    targets = run.meta["columns"][: run.model.config.n_targets]

    def by_target(values: np.ndarray) -> dict[str, list[float]]:  # (steps, K)
        columns = {name: values[:, k].tolist() for k, name in enumerate(targets)}
        if not all(math.isfinite(v) for col in columns.values() for v in col):
            raise ValueError("the model gave a non-finite forecast for this history")
        return columns

    interval = None
    if out.lower is not None:
        interval = Interval(level=out.level, lower=by_target(out.lower), upper=by_target(out.upper))
    return ForecastResponse(steps=steps, forecast=by_target(out.mean), interval=interval)


def summary(run: ServedRun) -> dict:
    """What ``GET /health`` says about a forecasting run."""
    cfg = run.model.config
    columns = run.meta["columns"]
    return {
        "columns": columns,
        "targets": columns[: cfg.n_targets],
        "window": cfg.window,
        "horizon": cfg.horizon,
        "mode": cfg.mode,
        "probabilistic": cfg.probabilistic,
        "max_steps": cfg.horizon if cfg.mode == "direct" else MAX_FORECAST_STEPS,
    }

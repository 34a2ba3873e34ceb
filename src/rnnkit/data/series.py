"""Series to forecast: the built-in examples (no download) and numeric CSV columns.

- ``mackey-glass``: the Mackey-Glass delay equation with tau = 17
  (:func:`rnnkit.reservoir.datasets.mackey_glass`, RK4 at step 0.1), sampled every 1
  time unit, 4,000 samples after a 500-sample transient, column ``x`` (about
  0.42-1.32). At this sampling the series is smooth (a naive one-step forecast has
  NRMSE 0.15) and its autocorrelation peaks at lag 49: the default season.
- ``sunspots``: yearly mean sunspot numbers 1700-2008 (309 rows) from statsmodels,
  column ``SUNACTIVITY``; the solar cycle gives the season, 11 years.

Each example comes with its default target, window, horizon and season, and model and
training settings that suit it (the best of a handful tried: cell, window, window
normalisation, epochs); the command line uses them unless told otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rnnkit.data.columns import read_columns

MG_STEPS = 4000
MG_SEASON = 49  # lag of the autocorrelation peak of the tau = 17 series sampled every 1


@dataclass(frozen=True)
class Example:
    """A built-in series: named columns and the settings that suit it."""

    name: str
    columns: dict[str, np.ndarray] = field(repr=False)
    target: str
    window: int
    horizon: int
    season: int
    description: str
    model: dict = field(default_factory=dict)  # ForecasterConfig settings that suit it
    train: dict = field(default_factory=dict)  # FitConfig settings that suit it


def _mackey_glass() -> Example:
    from rnnkit.reservoir.datasets import mackey_glass

    x = mackey_glass(MG_STEPS, tau=17, dt=1.0)[:, 0]
    return Example(
        name="mackey-glass",
        columns={"x": x},
        target="x",
        window=64,
        horizon=84,
        season=MG_SEASON,
        description=f"Mackey-Glass, tau=17, {MG_STEPS} samples every 1 time unit",
        model={"mode": "autoregressive"},
        train={"epochs": 20},
    )


def _sunspots() -> Example:
    try:
        import statsmodels.api as sm
    except ImportError:
        raise ValueError(
            "the sunspots example needs statsmodels: pip install 'rnnkit[examples]'"
        ) from None
    data = sm.datasets.sunspots.load_pandas().data
    return Example(
        name="sunspots",
        columns={
            "YEAR": data["YEAR"].to_numpy(np.float64),
            "SUNACTIVITY": data["SUNACTIVITY"].to_numpy(np.float64),
        },
        target="SUNACTIVITY",
        window=40,
        horizon=11,
        season=11,
        description="yearly sunspot numbers 1700-2008 (statsmodels)",
        # Each window scaled by its own spread: the test years hold the largest cycles.
        model={"mode": "autoregressive", "cell": "gru", "hidden_size": 32, "window_norm": True},
        train={"epochs": 60},
    )


EXAMPLES = {"mackey-glass": _mackey_glass, "sunspots": _sunspots}


def load_example(name: str) -> Example:
    """The built-in example ``name`` (one of :data:`EXAMPLES`)."""
    if name not in EXAMPLES:
        raise ValueError(f"unknown example {name!r}; choose one of: {', '.join(EXAMPLES)}")
    return EXAMPLES[name]()


def read_series_csv(path: str | Path, names: list[str]) -> np.ndarray:
    """The named numeric columns of a CSV file as a float64 array ``(rows, len(names))``.

    :func:`rnnkit.data.columns.read_columns` refuses missing columns, short rows,
    non-numeric cells, NaN and infinities; a series also needs at least 2 rows.
    """
    if not names:
        raise ValueError("name at least one column to read")
    columns = read_columns(path, list(dict.fromkeys(names)))
    series = np.stack([columns[n] for n in names], axis=1)  # (rows, C)
    if len(series) < 2:
        raise ValueError(f"{path} has {len(series)} data rows; a series needs many more")
    return series

"""Time series for forecasting: per-column scaling, a chronological split, sliding windows.

A series is an array ``(T, C)``: rows are time steps, columns the variables. The rows
are cut in time order into a training, a validation and a test part::

    rows 0 .. n_train-1 | n_train .. n_train+n_val-1 | the last n_test rows
         training       |         validation         |          test

A window's *targets* always lie inside its own part; its inputs may reach back into
the part before it, since those values are known by then. So no validation or test
window is scored on a value the model trained on, and the :class:`Scaler` is fitted on
the training rows alone.

Windows are indexed by their *origin* ``o``, the first row after the inputs:

- inputs ``x = inputs[o - window : o]`` of shape ``(window, n_inputs)``;
- direct targets ``y = targets[o : o + horizon]``: the ``horizon`` values after the window;
- autoregressive targets ``y = targets[o - window + 1 : o + 1]``: at every step of the
  window the next row (the input shifted by one step).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODES = ("direct", "autoregressive")
MIN_STD = 1e-12  # a column whose training std is below this is constant: nothing to scale


class Scaler:
    """Standard scaling per column: ``z = (x - mean) / std``, ``x = z * std + mean``.

    ``mean`` and ``std`` (population std) come from the rows given to :meth:`fit`: the
    training part only, so nothing of the validation or test rows leaks into them.
    """

    def __init__(self, mean, std, columns: list[str] | None = None) -> None:
        self.mean = np.asarray(mean, dtype=np.float64).reshape(-1)
        self.std = np.asarray(std, dtype=np.float64).reshape(-1)
        if self.mean.shape != self.std.shape:
            raise ValueError(f"Scaler: {self.mean.size} means but {self.std.size} stds")
        if not (np.isfinite(self.mean).all() and np.isfinite(self.std).all()):
            raise ValueError("Scaler: mean and std must be finite")
        if (self.std <= 0).any():
            raise ValueError("Scaler: every std must be positive")
        names = list(columns) if columns is not None else [f"x{i}" for i in range(self.mean.size)]
        if len(names) != self.mean.size:
            raise ValueError(f"Scaler: {len(names)} column names for {self.mean.size} columns")
        self.columns = names

    @classmethod
    def fit(cls, data, columns: list[str] | None = None) -> Scaler:
        """Mean and std of each column of ``data`` ``(rows, C)``."""
        data = as_series(data, "Scaler.fit")
        if len(data) < 2:
            raise ValueError(
                f"Scaler.fit needs at least 2 rows to measure a spread, got {len(data)}"
            )
        mean, std = data.mean(axis=0), data.std(axis=0)
        names = list(columns) if columns is not None else [f"x{i}" for i in range(data.shape[1])]
        for name, s in zip(names, std, strict=True):
            if s < MIN_STD:
                raise ValueError(
                    f"column {name!r} is constant in the training part; drop it or give more rows"
                )
        return cls(mean, std, names)

    @property
    def size(self) -> int:
        return self.mean.size

    def _check(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 0 or x.shape[-1] != self.size:
            raise ValueError(
                f"expected {self.size} columns ({', '.join(self.columns)}) in the last "
                f"dimension, got shape {x.shape}"
            )
        return x

    def transform(self, x) -> np.ndarray:
        """``(x - mean) / std`` over the last dimension (``C`` columns)."""
        return (self._check(x) - self.mean) / self.std

    def inverse(self, z) -> np.ndarray:
        """``z * std + mean``: back to the data's own units."""
        return self._check(z) * self.std + self.mean

    def inverse_std(self, sigma) -> np.ndarray:
        """A standard deviation in scaled units, in the data's units: ``sigma * std``."""
        return self._check(sigma) * self.std

    def select(self, count: int) -> Scaler:
        """The scaler of the first ``count`` columns (the targets come first)."""
        return Scaler(self.mean[:count], self.std[:count], self.columns[:count])

    def to_dict(self) -> dict:
        return {"columns": self.columns, "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> Scaler:
        try:
            return cls(data["mean"], data["std"], data["columns"])
        except (KeyError, TypeError):
            raise ValueError("a saved Scaler needs 'columns', 'mean' and 'std'") from None

    def __repr__(self) -> str:
        return f"Scaler(columns={self.columns})"


def as_series(values, what: str = "series") -> np.ndarray:
    """``values`` as a float64 array ``(T, C)`` (a 1-D array is one column), checked finite."""
    try:
        x = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: expected numbers in a (rows, columns) array") from None
    if x.ndim == 1:
        x = x[:, None]  # (T, 1)
    if x.ndim != 2:
        raise ValueError(f"{what}: expected a (rows, columns) array, got shape {x.shape}")
    if x.shape[1] == 0:
        raise ValueError(f"{what}: the series has no columns")
    if not np.isfinite(x).all():
        row = int(np.argwhere(~np.isfinite(x))[0, 0])
        raise ValueError(f"{what}: row {row} holds NaN or an infinite value")
    return x


@dataclass(frozen=True)
class Split:
    """Row counts of the chronological parts: training first, then validation, then test."""

    n_train: int
    n_val: int
    n_test: int

    @property
    def rows(self) -> int:
        return self.n_train + self.n_val + self.n_test

    @property
    def val_start(self) -> int:
        return self.n_train

    @property
    def test_start(self) -> int:
        return self.n_train + self.n_val


def target_span(mode: str, window: int, horizon: int) -> tuple[int, int]:
    """``(rows before the origin, rows from the origin on)`` that one window's targets use."""
    check_mode(mode)
    if mode == "direct":
        return 0, horizon
    return window - 1, 1  # targets o - window + 1 .. o


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be 'direct' or 'autoregressive', got {mode!r}")


def check_window(window: int, horizon: int) -> None:
    for name, value in (("window", window), ("horizon", horizon)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def split_rows(
    rows: int,
    *,
    val_fraction: float,
    test_fraction: float,
    window: int,
    horizon: int,
    mode: str = "direct",
) -> Split:
    """Cut ``rows`` rows in time order, each part long enough for at least one window.

    The test and validation parts are ``round(fraction * rows)`` rows (at least the
    rows one window's targets need); the training part is the rest.
    """
    check_window(window, horizon)
    check_mode(mode)
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not (isinstance(f, (int, float)) and 0.0 < f < 1.0):
            raise ValueError(f"{name} must be in (0, 1), got {f!r}")
    if val_fraction + test_fraction >= 0.9:
        raise ValueError(
            f"val_fraction + test_fraction is {val_fraction + test_fraction:.2f}; "
            f"leave at least 10% of the rows for training"
        )
    if horizon >= rows:
        raise ValueError(f"horizon {horizon} is longer than the series ({rows} rows)")
    if window + horizon > rows:
        raise ValueError(
            f"window + horizon ({window} + {horizon}) is longer than the series ({rows} rows)"
        )
    split = _split(rows, val_fraction, test_fraction, window, horizon, mode)
    if split is None:
        need = rows + 1
        while _split(need, val_fraction, test_fraction, window, horizon, mode) is None:
            need += 1
        raise ValueError(
            f"the series has {rows} rows; window {window} and horizon {horizon} with "
            f"validation and test parts need at least {need}: give more rows or a shorter "
            f"window/horizon"
        )
    return split


def _split(rows, val_fraction, test_fraction, window, horizon, mode) -> Split | None:
    # A held-out part needs the horizon's rows: one direct window's targets, one
    # backtest origin. (Autoregressive held-out windows may start in the part before.)
    n_test = max(round(test_fraction * rows), horizon)
    n_val = max(round(val_fraction * rows), horizon)
    n_train = rows - n_val - n_test
    # The training part holds one window and its targets, and 2 rows for the scaler.
    after = target_span(mode, window, horizon)[1]
    if n_train < max(window + after, 2):
        return None
    return Split(n_train, n_val, n_test)


def window_origins(
    n_rows: int,
    *,
    window: int,
    horizon: int,
    mode: str,
    start: int,
    stop: int,
    stride: int = 1,
    partial: bool = False,
) -> np.ndarray:
    """Origins of the windows with inputs inside ``[0, n_rows)`` and targets in ``[start, stop)``.

    ``partial`` (autoregressive mode): only a window's last target must lie in the range;
    the earlier ones may precede ``start`` (and are left unscored, see :class:`Windows`).
    """
    check_window(window, horizon)
    if not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"stride must be a positive integer, got {stride!r}")
    before, after = target_span(mode, window, horizon)
    first = max(window, start + (0 if partial else before))
    last = min(stop, n_rows) - after  # the last allowed origin
    if last < first:
        return np.zeros(0, dtype=np.int64)
    return np.arange(first, last + 1, stride, dtype=np.int64)


@dataclass
class Windows:
    """Sliding windows: ``x`` ``(N, window, I)``; ``y`` ``(N, horizon, K)`` (direct) or
    ``(N, window, K)`` (autoregressive); ``origins`` ``(N,)``; ``weight`` shaped like
    ``y[..., 0]``: 1 where a target counts in the loss, 0 where it precedes the part."""

    x: np.ndarray
    y: np.ndarray
    origins: np.ndarray
    weight: np.ndarray

    def __len__(self) -> int:
        return len(self.origins)


def make_windows(
    inputs,
    targets,
    *,
    window: int,
    horizon: int,
    mode: str = "direct",
    start: int = 0,
    stop: int | None = None,
    stride: int = 1,
    partial: bool = False,
) -> Windows:
    """Sliding windows over ``inputs`` ``(T, I)`` and ``targets`` ``(T, K)``.

    Every window's targets lie in rows ``[start, stop)``; its inputs may start earlier.
    With ``partial`` (autoregressive mode, for held-out parts) a window needs only its
    last target in the range: its targets before ``start`` get weight 0, so a short
    validation part still yields one window per row while never scoring a row of the
    part before it.
    """
    inputs, targets = as_series(inputs, "inputs"), as_series(targets, "targets")
    if len(inputs) != len(targets):
        raise ValueError(f"inputs have {len(inputs)} rows but targets {len(targets)}")
    check_window(window, horizon)
    check_mode(mode)
    rows = len(inputs)
    stop = rows if stop is None else stop
    need = window + target_span(mode, window, horizon)[1]
    if need > rows:
        what = f"window + horizon ({window} + {horizon})" if mode == "direct" else "window + 1"
        raise ValueError(f"{what} needs {need} rows but the series has {rows}")
    origins = window_origins(
        rows,
        window=window,
        horizon=horizon,
        mode=mode,
        start=start,
        stop=stop,
        stride=stride,
        partial=partial,
    )
    steps = np.arange(-window, 0)  # input rows relative to the origin
    x = inputs[origins[:, None] + steps]  # (N, window, I)
    if mode == "direct":
        rows_y = origins[:, None] + np.arange(horizon)  # (N, horizon)
    else:
        rows_y = origins[:, None] + steps + 1  # (N, window)
    y = targets[rows_y]  # (N, T_y, K)
    weight = (rows_y >= start).astype(np.float64)  # (N, T_y)
    return Windows(x, y, origins, weight)


@dataclass
class Prepared:
    """A series made ready for training: its split, scaler, scaled values and windows."""

    split: Split
    scaler: Scaler
    scaled: np.ndarray  # (T, C): every row scaled with the training rows' statistics
    train: Windows
    val: Windows


def prepare(
    values,
    columns: list[str] | None = None,
    *,
    n_targets: int,
    window: int,
    horizon: int,
    mode: str,
    val_fraction: float,
    test_fraction: float,
    scaler: Scaler | None = None,
) -> Prepared:
    """Split ``values`` ``(T, C)`` in time order, scale it, and cut training and validation windows.

    The targets are the first ``n_targets`` columns. The scaler is fitted on the
    training rows only (or ``scaler`` is used as given, e.g. a resumed run's), so the
    validation and test rows change neither it nor any training window. Autoregressive
    validation windows are ``partial``: every validation row is scored once.
    """
    values = as_series(values)
    if not 1 <= n_targets <= values.shape[1]:
        raise ValueError(f"n_targets must be in 1..{values.shape[1]}, got {n_targets}")
    split = split_rows(
        len(values),
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        window=window,
        horizon=horizon,
        mode=mode,
    )
    if scaler is None:
        scaler = Scaler.fit(values[: split.n_train], columns)
    scaled = scaler.transform(values)  # (T, C)
    targets = scaled[:, :n_targets]
    common = {"window": window, "horizon": horizon, "mode": mode}
    train = make_windows(scaled, targets, start=0, stop=split.n_train, **common)
    val = make_windows(
        scaled,
        targets,
        start=split.val_start,
        stop=split.test_start,
        partial=mode == "autoregressive",
        **common,
    )
    return Prepared(split, scaler, scaled, train, val)

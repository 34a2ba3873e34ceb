"""Forecasting data and metrics: scaling, splits, windows, examples, CSV checks, MAE..MASE."""

from __future__ import annotations

import builtins
import json

import numpy as np
import pytest

from rnnkit.data.series import load_example, read_series_csv
from rnnkit.data.windows import Scaler, make_windows, prepare, split_rows
from rnnkit.metrics.forecast import (
    backtest,
    mae,
    mase,
    naive_forecast,
    per_origin,
    rmse,
    seasonal_naive_forecast,
    seasonal_scale,
    smape,
)

# ------------------------------------------------------------------------ Scaler


def test_scaler_matches_hand_statistics_and_round_trips():
    data = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 60.0]])
    scaler = Scaler.fit(data, ["a", "b"])
    # mean (2, 30); population std: sqrt(2/3) and sqrt((400 + 100 + 900) / 3)
    np.testing.assert_allclose(scaler.mean, [2.0, 30.0])
    np.testing.assert_allclose(scaler.std, [np.sqrt(2 / 3), np.sqrt(1400 / 3)])
    z = scaler.transform(data)
    np.testing.assert_allclose(z[:, 0], [-1.224744871, 0.0, 1.224744871], rtol=1e-8)
    np.testing.assert_allclose(scaler.inverse(z), data)
    np.testing.assert_allclose(
        scaler.inverse_std([1.0, 2.0]), [np.sqrt(2 / 3), 2 * np.sqrt(1400 / 3)]
    )
    again = Scaler.from_dict(json.loads(json.dumps(scaler.to_dict())))
    assert again.columns == ["a", "b"]
    np.testing.assert_array_equal(again.mean, scaler.mean)
    np.testing.assert_array_equal(again.std, scaler.std)
    first = scaler.select(1)
    assert first.columns == ["a"] and first.mean.tolist() == [2.0]


def test_scaler_refuses_constant_column_and_wrong_width():
    with pytest.raises(ValueError, match="column 'flat' is constant in the training part"):
        Scaler.fit([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]], ["x", "flat"])
    scaler = Scaler.fit([[1.0], [3.0]], ["x"])
    with pytest.raises(ValueError, match="expected 1 columns"):
        scaler.transform(np.zeros((4, 2)))


def test_scaler_fitted_on_training_part_only_no_leak():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(200, 2)).cumsum(axis=0)
    settings = dict(
        n_targets=1,
        window=10,
        horizon=3,
        mode="direct",
        val_fraction=0.1,
        test_fraction=0.2,
    )
    before = prepare(values, ["y", "u"], **settings)
    changed = values.copy()
    test_start = before.split.test_start
    changed[test_start:] = 1e6 * rng.normal(size=changed[test_start:].shape)  # wild test rows
    after = prepare(changed, ["y", "u"], **settings)
    assert before.split == after.split
    np.testing.assert_array_equal(before.scaler.mean, after.scaler.mean)
    np.testing.assert_array_equal(before.scaler.std, after.scaler.std)
    np.testing.assert_array_equal(before.train.x, after.train.x)
    np.testing.assert_array_equal(before.train.y, after.train.y)
    np.testing.assert_array_equal(before.val.y, after.val.y)  # validation is not the test
    # and the scaler's statistics are exactly those of the training rows
    n = before.split.n_train
    np.testing.assert_allclose(before.scaler.mean, values[:n].mean(axis=0))
    np.testing.assert_allclose(before.scaler.std, values[:n].std(axis=0))


# ------------------------------------------------------------------ split, windows


def test_split_rows_counts_and_errors():
    split = split_rows(100, val_fraction=0.1, test_fraction=0.2, window=8, horizon=4)
    assert (split.n_train, split.n_val, split.n_test) == (70, 10, 20)
    assert (split.val_start, split.test_start) == (70, 80)
    # a held-out part is at least one horizon long
    split = split_rows(100, val_fraction=0.05, test_fraction=0.05, window=8, horizon=12)
    assert (split.n_train, split.n_val, split.n_test) == (76, 12, 12)
    with pytest.raises(ValueError, match=r"^horizon 120 is longer than the series \(100 rows\)$"):
        split_rows(100, val_fraction=0.1, test_fraction=0.2, window=8, horizon=120)
    with pytest.raises(ValueError, match=r"window \+ horizon \(90 \+ 20\) is longer"):
        split_rows(100, val_fraction=0.1, test_fraction=0.2, window=90, horizon=20)
    with pytest.raises(ValueError, match=r"the series has 30 rows.* need at least 39"):
        # 39 rows: test round(7.8) = 8, validation round(3.9) = 4, training 27 = 25 + 2
        split_rows(30, val_fraction=0.1, test_fraction=0.2, window=25, horizon=2)
    with pytest.raises(ValueError, match="window must be a positive integer"):
        split_rows(100, val_fraction=0.1, test_fraction=0.2, window=0, horizon=2)


def test_direct_windows_match_hand_built_arrays():
    series = np.arange(10.0)[:, None]  # rows 0..9, value = row
    covariate = 100 + series
    w = make_windows(np.hstack([series, covariate]), series, window=3, horizon=2)
    # origins 3..8: x = rows o-3..o-1, y = rows o, o+1
    assert w.origins.tolist() == [3, 4, 5, 6, 7, 8]
    np.testing.assert_array_equal(w.x[0], [[0, 100], [1, 101], [2, 102]])
    np.testing.assert_array_equal(w.y[0, :, 0], [3, 4])
    np.testing.assert_array_equal(w.x[-1, :, 0], [5, 6, 7])
    np.testing.assert_array_equal(w.y[-1, :, 0], [8, 9])
    assert w.weight.min() == 1.0
    # targets restricted to rows [6, 10): origins 6..8
    held = make_windows(series, series, window=3, horizon=2, start=6, stride=2)
    assert held.origins.tolist() == [6, 8]
    np.testing.assert_array_equal(held.x[1, :, 0], [5, 6, 7])


def test_autoregressive_windows_and_partial_weights():
    series = np.arange(10.0)[:, None]
    w = make_windows(series, series, window=3, horizon=1, mode="autoregressive", stop=7)
    # y is x shifted by one row; the last target (row o) stays below 7
    assert w.origins.tolist() == [3, 4, 5, 6]
    np.testing.assert_array_equal(w.x[0, :, 0], [0, 1, 2])
    np.testing.assert_array_equal(w.y[0, :, 0], [1, 2, 3])
    np.testing.assert_array_equal(w.y[-1, :, 0], [4, 5, 6])
    strict = make_windows(series, series, window=3, horizon=1, mode="autoregressive", start=7)
    assert strict.origins.tolist() == [9]  # all targets (rows 7, 8, 9) inside
    part = make_windows(
        series, series, window=3, horizon=1, mode="autoregressive", start=7, partial=True
    )
    assert part.origins.tolist() == [7, 8, 9]
    np.testing.assert_array_equal(part.y[0, :, 0], [5, 6, 7])
    np.testing.assert_array_equal(part.weight, [[0, 0, 1], [0, 1, 1], [1, 1, 1]])


def test_windows_refuse_too_short_series():
    with pytest.raises(ValueError, match=r"window \+ horizon \(4 \+ 3\) needs 7 rows but"):
        make_windows(np.arange(6.0), np.arange(6.0), window=4, horizon=3)
    with pytest.raises(ValueError, match="row 2 holds NaN"):
        make_windows([1.0, 2.0, np.nan, 4.0], [1.0, 2.0, 3.0, 4.0], window=1, horizon=1)


# ------------------------------------------------------------------ examples, CSV


def test_examples_and_their_settings():
    sun = load_example("sunspots")
    y = sun.columns["SUNACTIVITY"]
    assert len(y) == 309 and sun.columns["YEAR"][0] == 1700 and sun.columns["YEAR"][-1] == 2008
    assert y[:3].tolist() == [5.0, 11.0, 16.0]
    assert (sun.target, sun.season, sun.horizon) == ("SUNACTIVITY", 11, 11)
    mg = load_example("mackey-glass")
    x = mg.columns["x"]
    assert len(x) == 4000 and mg.season == 49
    assert 0.40 < x.min() < 0.45 and 1.28 < x.max() < 1.35
    # the season is the autocorrelation peak between 30 and 70 steps
    xc = x - x.mean()
    lags = np.arange(30, 71)
    acf = [(xc[:-k] * xc[k:]).mean() / xc.var() for k in lags]
    assert lags[int(np.argmax(acf))] == 49
    with pytest.raises(ValueError, match="unknown example 'tides'; choose one of"):
        load_example("tides")


def test_sunspots_without_statsmodels_says_what_to_install(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("statsmodels"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ValueError, match=r"pip install 'rnnkit\[examples\]'"):
        load_example("sunspots")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("y,u\n1,2\n3\n5,6\n", r"line 3 has 1 fields but the header has 2"),
        ("y,u\n1,2\nabc,4\n", r"line 3, column 'y': 'abc' is not a number"),
        ("y,u\n1,2\nnan,4\n", r"line 3, column 'y': 'nan' is not a finite number"),
        ("y,u\n1,2\n3,4\n", r"has no column 'z'; its columns are: y, u"),
        ("y,z\n1,2\n", r"has 1 data rows"),
    ],
)
def test_csv_reader_errors_are_one_line(tmp_path, text, message):
    path = tmp_path / "s.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as err:
        read_series_csv(path, ["y", "z"] if "'z'" in message or "data rows" in message else ["y"])
    assert "\n" not in str(err.value)


def test_csv_reader_values(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("date,y,u\n2020-01,1.5,2\n2020-02,2.5,-3\n2020-03,4,0\n")
    np.testing.assert_array_equal(read_series_csv(path, ["y", "u"]), [[1.5, 2], [2.5, -3], [4, 0]])


# ------------------------------------------------------------------------- metrics


def test_point_metrics_against_hand_computation():
    y = np.array([1.0, 2.0, 0.0, -4.0])
    f = np.array([2.0, 2.0, 0.0, -1.0])
    # |errors| 1, 0, 0, 3
    assert mae(y, f) == pytest.approx(1.0)
    assert rmse(y, f) == pytest.approx(np.sqrt(10 / 4))
    # sMAPE terms 200*1/3, 0, 0/0 -> 0, 200*3/5
    assert smape(y, f) == pytest.approx((200 / 3 + 0 + 0 + 120) / 4)
    with pytest.raises(ValueError, match="differ in shape"):
        mae(y, f[:3])


def test_mase_and_naive_forecasts_against_hand_computation():
    train = np.array([1.0, 3.0, 2.0, 6.0, 4.0])
    # m=1: |3-1|, |2-3|, |6-2|, |4-6| -> mean 9/4;  m=2: |2-1|, |6-3|, |4-2| -> 2
    assert seasonal_scale(train, 1).tolist() == [2.25]
    assert seasonal_scale(train, 2).tolist() == [2.0]
    y, f = np.array([5.0, 7.0]), np.array([4.0, 4.0])  # MAE 2
    assert mase(y, f, train, 1) == pytest.approx(2 / 2.25)
    assert mase(y, f, train, 2) == pytest.approx(1.0)
    # two columns: each its own scale, the mean of the two ratios
    train2 = np.stack([train, 2 * train], axis=1)
    y2, f2 = np.array([[5.0, 10.0]]), np.array([[4.0, 4.0]])  # MAEs 1 and 6
    assert mase(y2, f2, train2, 1) == pytest.approx((1 / 2.25 + 6 / 4.5) / 2)
    history = np.array([10.0, 11.0, 12.0, 13.0, 14.0])
    np.testing.assert_array_equal(naive_forecast(history, 3)[:, 0], [14, 14, 14])
    np.testing.assert_array_equal(
        seasonal_naive_forecast(history, 5, 3)[:, 0], [12, 13, 14, 12, 13]
    )
    with pytest.raises(ValueError, match="repeats itself exactly with period 2"):
        seasonal_scale([1.0, 2.0, 1.0, 2.0], 2)
    # up to rounding too (a sampled cosine), and NaN when not strict
    wave = np.cos(2 * np.pi * np.arange(48) / 12)
    assert np.isnan(seasonal_scale(wave, 12, strict=False)[0])
    result = backtest(wave, {}, horizon=2, start=36, train_end=36, season=12)
    assert np.isnan(result.row("naive")["mase"]) and result.to_dict()["rows"][0]["mase"] is None
    assert "n/a" in result.table()


def test_backtest_against_hand_computation():
    # y_t = t^2 for t = 0..9; train_end 6; origins 6 and 8 with every 2, horizon 2
    y = np.arange(10.0) ** 2
    seen = []

    def last_plus_one(histories):
        seen.extend(len(h) for h in histories)
        return np.stack([np.full((2, 1), h[-1, 0] + 1) for h in histories])

    result = backtest(
        y, {"plus1": last_plus_one}, horizon=2, start=6, train_end=6, season=2, every=2
    )
    assert result.origins == [6, 8] and seen == [6, 8]  # only rows before each origin
    # origin 6: truth 36, 49; plus1 26, 26 -> errors 10, 23
    # origin 8: truth 64, 81; plus1 50, 50 -> errors 14, 31
    row = result.row("plus1")
    assert row["mae"] == pytest.approx((10 + 23 + 14 + 31) / 4)
    assert row["rmse"] == pytest.approx(np.sqrt((100 + 529 + 196 + 961) / 4))
    # scale, m=2 on 0,1,4,9,16,25: |4-0|,|9-1|,|16-4|,|25-9| -> 10
    assert row["mase"] == pytest.approx(19.5 / 10)
    naive = result.row("naive")  # 25,25 and 49,49 -> errors 11, 24, 15, 32
    assert naive["mae"] == pytest.approx(82 / 4)
    seasonal = result.row("seasonal naive (m=2)")  # 16,25 and 36,49 -> 20,24,28,32
    assert seasonal["mae"] == pytest.approx(26.0)
    assert seasonal["smape"] == pytest.approx(
        np.mean([200 * 20 / 52, 200 * 24 / 74, 200 * 28 / 100, 200 * 32 / 130])
    )
    assert "| plus1" in result.table() and "MASE" in result.table()
    one = backtest(y, {"p": per_origin(lambda h: np.full(2, h[-1, 0]))}, horizon=2, start=6,
                   train_end=6, every=2)  # fmt: skip
    assert one.row("p")["mae"] == pytest.approx(naive["mae"])
    with pytest.raises(ValueError, match="no forecast origin"):
        backtest(y, {}, horizon=5, start=6, train_end=6)

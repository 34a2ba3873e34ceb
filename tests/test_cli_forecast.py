"""The forecasting job end to end: `rnnkit forecast train`, `predict` and `eval`."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from rnnkit.cli.main import main
from rnnkit.data.series import load_example
from rnnkit.train import load_checkpoint

TINY = ["--hidden-size", "16", "--no-progress"]


pytestmark = pytest.mark.usefixtures("one_thread")


def seasonal_rows(n: int = 240, seed: int = 0) -> np.ndarray:
    """Period-12 series y with a covariate u that leads it: columns (y, u)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    y = 10 + 5 * np.sin(2 * np.pi * t / 12) + 0.3 * rng.normal(size=n)
    u = np.cos(2 * np.pi * t / 12)
    return np.stack([y, u], axis=1)


def write_csv(path: Path, rows: np.ndarray) -> Path:
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["month", "y", "u"])
        for i, (y, u) in enumerate(rows):
            out.writerow([f"m{i}", repr(float(y)), repr(float(u))])
    return path


@pytest.fixture(scope="module")
def series_csv(tmp_path_factory) -> Path:
    return write_csv(tmp_path_factory.mktemp("data") / "series.csv", seasonal_rows())


def metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def read_forecast(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def rows_by_name(run: Path) -> dict:
    record = json.loads((run / "backtest.json").read_text())
    return {row["name"].split(" (")[0]: row for row in record["rows"]}


def test_csv_train_predict_eval_with_covariate_and_intervals(series_csv, tmp_path, capsys):
    run = tmp_path / "run"
    code = main(
        ["forecast", "train", "--csv", str(series_csv), "--target", "y", "--inputs", "u",
         "--window", "24", "--horizon", "4", "--season", "12", "--probabilistic",
         "--max-steps", "150", "--lr", "0.01", "--out", str(run), *TINY]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "train 168, validation 24, test 48 rows" in out
    assert "| naive" in out and "| seasonal naive (m=12)" in out
    for name in ("best.json", "last.json", "metrics.csv", "loss.png", "backtest.json"):
        assert (run / name).is_file(), name
    meta = load_checkpoint(run, "best", trainer_state=False).meta
    assert meta["columns"] == ["y", "u"] and meta["data"]["season"] == 12
    rows = rows_by_name(run)
    model = rows["rnnkit lstm"]
    assert all(math.isfinite(model[k]) for k in ("mae", "rmse", "smape", "mase"))
    # A sine with noise 0.3: far better than repeating the last value four steps on.
    assert model["mae"] < 0.6 * rows["naive"]["mae"]

    assert main(["forecast", "predict", str(run), "--csv", str(series_csv), "--level", "0.95"]) == 0
    forecast = read_forecast(run / "forecast.csv")
    assert list(forecast[0]) == ["step", "y", "y_lower", "y_upper"]
    assert [int(r["step"]) for r in forecast] == [1, 2, 3, 4]
    for r in forecast:
        lo, mid, hi = float(r["y_lower"]), float(r["y"]), float(r["y_upper"])
        assert lo < mid < hi and 2 < mid < 18  # the sine spans 5..15
    assert (run / "forecast.png").stat().st_size > 10_000

    (run / "backtest.json").unlink()
    assert main(["forecast", "eval", str(run), "--every", "4"]) == 0
    record = json.loads((run / "backtest.json").read_text())
    assert record["origins"] == list(range(192, 237, 4))
    again = {row["name"].split(" (")[0]: row for row in record["rows"]}
    assert again["naive"]["mae"] > again["rnnkit lstm"]["mae"]


def test_mackey_glass_example_end_to_end(tmp_path, capsys):
    run = tmp_path / "mg"
    code = main(["forecast", "train", "--example", "mackey-glass", "--max-steps", "20",
                 "--out", str(run), *TINY])  # fmt: skip
    assert code == 0
    assert "4000 rows of x; train 2800, validation 400, test 800 rows" in capsys.readouterr().out
    meta = load_checkpoint(run, "best", trainer_state=False).meta
    assert meta["data"]["example"] == "mackey-glass" and meta["data"]["season"] == 49
    out = tmp_path / "elsewhere"
    assert main(["forecast", "predict", str(run), "--example", "mackey-glass", "--out", str(out),
                 "--steps", "100"]) == 0  # fmt: skip
    forecast = read_forecast(out / "forecast.csv")
    assert len(forecast) == 100 and list(forecast[0]) == ["step", "x"]
    values = [float(r["x"]) for r in forecast]
    assert all(math.isfinite(v) and -1.0 < v < 3.0 for v in values)
    assert (out / "forecast.png").is_file() and not (run / "forecast.csv").exists()
    assert main(["forecast", "eval", str(run), "--every", "50"]) == 0
    rows = rows_by_name(run)
    origins = json.loads((run / "backtest.json").read_text())["origins"]
    assert origins == list(range(3200, 3917, 50))  # test rows 3200..3999, horizon 84
    assert all(math.isfinite(r["mase"]) for r in rows.values())
    x = load_example("mackey-glass").columns["x"]
    naive = np.mean([np.abs(x[o : o + 84] - x[o - 1]).mean() for o in origins])
    assert rows["naive"]["mae"] == pytest.approx(naive)


def test_sunspots_forecaster_beats_seasonal_naive(tmp_path):
    run = tmp_path / "sun"
    assert main(["forecast", "train", "--example", "sunspots", "--out", str(run),
                 "--no-progress"]) == 0  # fmt: skip
    rows = rows_by_name(run)
    model, seasonal = rows["rnnkit gru"], rows["seasonal naive"]
    assert seasonal["mase"] == pytest.approx(1.356, abs=1e-3)  # m = 11, horizon 11
    assert model["mase"] < 0.9 * seasonal["mase"]
    assert model["smape"] < seasonal["smape"]


def test_scaler_and_training_ignore_the_test_rows(tmp_path):
    rows = seasonal_rows()
    changed = rows.copy()
    changed[-48:] += 1000.0  # only the test part (the last 20 %) differs
    runs = []
    for name, data in (("a", rows), ("b", changed)):
        path = write_csv(tmp_path / f"{name}.csv", data)
        run = tmp_path / name
        args = ["forecast", "train", "--csv", str(path), "--target", "y", "--window", "12",
                "--max-steps", "12", "--eval-every", "6", "--out", str(run), *TINY]  # fmt: skip
        assert main(args) == 0
        runs.append(run)
    meta = [load_checkpoint(r, "last", trainer_state=False).meta for r in runs]
    assert meta[0]["scaler"] == meta[1]["scaler"]
    assert meta[0]["scaler"]["mean"][0] == pytest.approx(rows[:168, 0].mean())
    assert [r["loss"] for r in metrics(runs[0])] == [r["loss"] for r in metrics(runs[1])]
    assert [r["val_loss"] for r in metrics(runs[0])] == [r["val_loss"] for r in metrics(runs[1])]


def test_resume_matches_an_uninterrupted_run(series_csv, tmp_path):
    common = ["forecast", "train", "--csv", str(series_csv), "--target", "y", "--window", "12",
              "--eval-every", "5", "--decay", "none", "--seed", "3", *TINY]  # fmt: skip
    assert main([*common, "--max-steps", "20", "--out", str(tmp_path / "whole")]) == 0
    assert main([*common, "--max-steps", "10", "--out", str(tmp_path / "split")]) == 0
    resume = ["forecast", "train", "--out", str(tmp_path / "split"), "--resume", "--no-progress"]
    assert main([*resume, "--max-steps", "20"]) == 0
    whole, split = metrics(tmp_path / "whole"), metrics(tmp_path / "split")
    assert [r["step"] for r in split] == [r["step"] for r in whole]
    assert [r["loss"] for r in split] == [r["loss"] for r in whole]


def test_resume_refuses_new_settings(series_csv, tmp_path, capsys):
    run = tmp_path / "run"
    base = ["forecast", "train", "--csv", str(series_csv), "--target", "y", "--window", "12"]
    assert main([*base, "--max-steps", "2", "--out", str(run), *TINY]) == 0
    capsys.readouterr()
    assert main(["forecast", "train", "--out", str(run), "--resume", "--horizon", "3"]) == 2
    assert "drop --horizon" in capsys.readouterr().err
    assert main([*base, "--max-steps", "2", "--out", str(run), *TINY]) == 2
    assert "already holds a run" in capsys.readouterr().err


def _bad_csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return path


GOOD = "y,u\n" + "".join(f"{i % 7},{i % 3}\n" for i in range(60))


@pytest.mark.parametrize(
    ("text", "extra", "message"),
    [
        ("y,u\n1,2\n3\n" + GOOD[4:], [], "line 3 has 1 fields but the header has 2"),
        (GOOD + "seven,1\n", [], "line 62, column 'y': 'seven' is not a number"),
        (GOOD + "nan,1\n", [], "line 62, column 'y': 'nan' is not a finite number"),
        (GOOD, ["--target", "z"], "has no column 'z'; its columns are: y, u"),
        (GOOD, ["--horizon", "80"], "horizon 80 is longer than the series (60 rows)"),
        (GOOD, ["--window", "60"], "window + horizon (60 + 1) is longer"),
        (
            GOOD,
            ["--window", "50"],
            "60 rows; window 50 and horizon 1 with validation and test parts need at least 72",
        ),
        (GOOD, ["--inputs", "u", "--mode", "autoregressive"], "use direct mode with covariates"),
        (GOOD, ["--season", "70"], "season 70 needs more training rows"),
        (GOOD, ["--val-fraction", "1.5"], "val_fraction must be in (0, 1)"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, text, extra, message):
    path = _bad_csv(tmp_path, text)
    target = [] if "--target" in extra else ["--target", "y"]
    args = ["forecast", "train", "--csv", str(path), *target, "--window", "8", *extra,
            "--out", str(tmp_path / "run"), *TINY]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnkit: error: ") and err.count("\n") == 1, err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run" / "last.json").exists()


def test_predict_and_eval_errors(series_csv, tmp_path, capsys):
    assert main(["forecast", "predict", str(tmp_path / "nothing")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    run = tmp_path / "run"
    base = ["forecast", "train", "--csv", str(series_csv), "--target", "y", "--window", "12"]
    assert main([*base, "--horizon", "3", "--max-steps", "2", "--out", str(run), *TINY]) == 0
    capsys.readouterr()
    assert main(["forecast", "predict", str(run), "--steps", "5"]) == 2
    assert "forecasts at most its horizon (3 rows), not 5" in capsys.readouterr().err
    short = write_csv(tmp_path / "short.csv", seasonal_rows(5))
    assert main(["forecast", "predict", str(run), "--csv", str(short)]) == 2
    assert "reads the last 12 rows" in capsys.readouterr().err
    assert main(["forecast", "train", "--target", "y", "--out", str(tmp_path / "x")]) == 2
    assert "--csv FILE" in capsys.readouterr().err


def test_toml_config_with_flags_on_top(series_csv, tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text(
        f'[data]\ncsv = "{series_csv}"\ntargets = ["y"]\nseason = 12\n\n'
        '[model]\nwindow = 12\nmode = "autoregressive"\ncell = "gru"\nhidden_size = 8\n\n'
        "[train]\nmax_steps = 6\nlr = 0.01\n"
    )
    run = tmp_path / "run"
    assert main(["forecast", "train", "--config", str(config), "--horizon", "3",
                 "--out", str(run), "--no-progress"]) == 0  # fmt: skip
    checkpoint = load_checkpoint(run, "last", trainer_state=False)
    model = checkpoint.model_config
    assert (model["window"], model["horizon"], model["mode"], model["cell"]) == (
        12, 3, "autoregressive", "gru",
    )  # fmt: skip
    assert checkpoint.train_config["max_steps"] == 6 and checkpoint.train_config["lr"] == 0.01
    assert checkpoint.meta["data"]["season"] == 12
    assert "val_forecast_mse" in metrics(run)[-1]  # autoregressive: kept by closed-loop error
    config.write_text("[model]\nwindw = 12\n")
    assert main(["forecast", "train", "--config", str(config), "--example", "sunspots",
                 "--out", str(tmp_path / "bad")]) == 2  # fmt: skip
    assert "unknown setting 'windw'" in capsys.readouterr().err


def test_two_targets_autoregressive_with_intervals(series_csv, tmp_path, capsys):
    run = tmp_path / "two"
    assert main(["forecast", "train", "--csv", str(series_csv), "--target", "y", "--target", "u",
                 "--mode", "autoregressive", "--probabilistic", "--window", "12", "--season",
                 "12", "--max-steps", "5", "--out", str(run), *TINY]) == 0  # fmt: skip
    out = capsys.readouterr().out
    # u is an exact cosine of period 12: its MASE scale is 0, so MASE is undefined
    assert "MASE n/a" in out
    assert rows_by_name(run)["rnnkit lstm"]["mase"] is None
    assert main(["forecast", "predict", str(run), "--steps", "30", "--samples", "50"]) == 0
    forecast = read_forecast(run / "forecast.csv")
    assert len(forecast) == 30
    assert list(forecast[0]) == ["step", "y", "y_lower", "y_upper", "u", "u_lower", "u_upper"]
    assert all(float(r["u_lower"]) <= float(r["u_upper"]) for r in forecast)

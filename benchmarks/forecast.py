"""Recurrent forecasting against the classical baselines, on the same rolling-origin backtest.

- **Sunspots** (yearly, 1700-2008, 309 rows; statsmodels): the rnnkit ``Forecaster``
  trained as ``rnnkit forecast train --example sunspots`` trains it (autoregressive
  GRU, 32 units, window 40, each window scaled by its own mean and std, 60 epochs,
  checkpoint kept at its best closed-loop validation error over the horizon), once per
  seed and horizon (``--horizons``, default 1 and 11 years: one step, and one solar
  cycle). The last 20 % of the rows (62 years, 1947-2008) are the test part; a forecast
  origin at every test row from which ``horizon`` rows remain (62 origins at horizon 1,
  52 at 11), each forecaster seeing only the rows before it. Side by side on those origins: naive,
  seasonal naive (m = 11), and two ARIMA models from statsmodels refit at every origin
  on the rows before it: ARIMA(2,0,1) and AR(9) = ARIMA(9,0,0) (the classic order for
  this series), both with a constant. MAE, RMSE and sMAPE pool every origin and step;
  MASE scales the MAE by the in-sample seasonal-naive (m = 11) MAE of the training
  rows. The Forecaster's row is the mean ± std over ``--seeds`` seeds.
- **Mackey-Glass** (tau = 17, 4,000 samples every 1 time unit): an autoregressive LSTM
  (64 units, window 64, 20 epochs), as ``--example mackey-glass`` trains it. The
  one-step-ahead NRMSE on the test part (the last 800 rows, each forecast from the 64
  rows before it): RMSE / std of the targets, goal <= 1e-2. Then 84 steps in closed
  loop from the start of the test part (each forecast fed back), plotted to a PNG.

Training goes through the command line itself (``rnnkit.cli.main.main``), so the
numbers are what a user gets.

    python benchmarks/forecast.py                 # 5 seeds, every origin (a few minutes)
    python benchmarks/forecast.py --quick         # 1 seed, origins every 4 rows
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys


def _threads_from_argv(argv: list[str]) -> int:
    """``--threads`` read before NumPy and torch are imported: BLAS reads it at load."""
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if arg.startswith("--threads="):
            return int(arg.split("=", 1)[1])
    return 1


if __name__ == "__main__":
    _n = str(_threads_from_argv(sys.argv[1:]))
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = _n

import importlib.metadata  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from rnnkit.cli.forecast import load_run  # noqa: E402
from rnnkit.cli.main import main as rnnkit_main  # noqa: E402
from rnnkit.data.series import load_example  # noqa: E402
from rnnkit.data.windows import split_rows  # noqa: E402
from rnnkit.metrics.forecast import METRICS, backtest, format_table, per_origin  # noqa: E402
from rnnkit.reservoir.plot import plot_predictions  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARIMA_ORDERS = {"ARIMA(2,0,1)": (2, 0, 1), "AR(9)": (9, 0, 0)}
SUN_SEASON = 11
MAX_HORIZON = 30  # ARIMA forecasts this far once per origin; each horizon takes its head
MG_CLOSED_LOOP = 84
MG_GOAL = 1e-2


def train(example: str, run: Path, seed: int, extra: list[str]) -> float:
    """Train through the CLI (its output swallowed); returns the wall time in seconds."""
    args = ["forecast", "train", "--example", example, "--out", str(run), "--seed", str(seed)]
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = rnnkit_main([*args, "--no-progress", *extra])
    if code != 0:
        raise SystemExit(f"rnnkit forecast train --example {example} failed with code {code}")
    return time.perf_counter() - start


# ----------------------------------------------------------------------- sunspots


def arima_forecaster(order: tuple[int, int, int], horizon: int, fits: dict):
    """ARIMA refit on each history (the rows before the origin).

    ``fits`` caches each fit's forecast by history length, so the horizons share the fits.
    """
    from statsmodels.tsa.arima.model import ARIMA

    def forecast(history: np.ndarray) -> np.ndarray:
        if len(history) not in fits:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # convergence chatter on a few origins
                fit = ARIMA(history[:, 0], order=order, trend="c").fit()
            fits[len(history)] = fit.forecast(MAX_HORIZON)
        return fits[len(history)][:horizon, None]

    return per_origin(forecast)


def run_sunspots(seeds: int, every: int, horizon: int, work: Path, fits: dict) -> dict:
    example = load_example("sunspots")
    y = example.columns[example.target][:, None]  # (309, 1)
    split = split_rows(
        len(y), val_fraction=0.1, test_fraction=0.2, window=example.window, horizon=horizon,
        mode=example.model["mode"],
    )  # fmt: skip
    common = dict(
        horizon=horizon, start=split.test_start, train_end=split.n_train, season=SUN_SEASON,
        every=every,
    )  # fmt: skip
    model_rows, seconds = [], []
    for seed in range(seeds):
        run = work / f"sunspots-h{horizon}-{seed}"
        # --horizon: the closed-loop validation error that picks the checkpoint spans it.
        seconds.append(train("sunspots", run, seed, ["--horizon", str(horizon)]))
        model, _ = load_run(run)
        result = backtest(
            y, {"rnnkit": lambda h, m=model: m.predict_many(h, horizon)}, baselines=False, **common
        )
        model_rows.append(result.rows[0])
        print(
            f"  sunspots horizon {horizon} seed {seed}: MASE {result.rows[0]['mase']:.3f}",
            file=sys.stderr,
        )
    start = time.perf_counter()
    arima = {
        name: arima_forecaster(order, horizon, fits[name]) for name, order in ARIMA_ORDERS.items()
    }
    baselines = backtest(y, arima, **common)
    arima_seconds = time.perf_counter() - start
    rows = [_mean_row(f"rnnkit Forecaster ({seeds} seed{'s' if seeds > 1 else ''})", model_rows)]
    rows += baselines.rows
    return {
        "horizon": horizon,
        "every": every,
        "origins": len(baselines.origins),
        "first_origin_year": int(example.columns["YEAR"][baselines.origins[0]]),
        "split": {"train": split.n_train, "val": split.n_val, "test": split.n_test},
        "rows": rows,
        "per_seed": model_rows,
        "train_seconds": seconds,
        "arima_seconds": arima_seconds,
    }


def _mean_row(name: str, rows: list[dict]) -> dict:
    out = {"name": name}
    for key in METRICS:
        values = [r[key] for r in rows]
        out[key] = statistics.fmean(values)
        out[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return out


# -------------------------------------------------------------------- Mackey-Glass


def run_mackey_glass(epochs: int, work: Path, png: Path) -> dict:
    example = load_example("mackey-glass")
    x = example.columns["x"][:, None]  # (4000, 1)
    run = work / "mackey-glass"
    seconds = train("mackey-glass", run, 0, ["--epochs", str(epochs), "--cell", "lstm"])
    model, meta = load_run(run)
    test_start = meta["split"]["n_train"] + meta["split"]["n_val"]
    origins = range(test_start, len(x))
    one_step = model.predict_many([x[:o] for o in origins], 1)[:, 0]  # (N, 1)
    truth = x[test_start:]
    nrmse = float(np.sqrt(((one_step - truth) ** 2).mean()) / truth.std())
    loop = model.predict(x[:test_start], MG_CLOSED_LOOP).mean  # (84, 1)
    loop_truth = x[test_start : test_start + MG_CLOSED_LOOP]
    loop_nrmse = float(np.sqrt(((loop - loop_truth) ** 2).mean()) / loop_truth.std())
    shown = min(len(truth), 400)
    plot_predictions(
        png,
        [
            {
                "title": f"Mackey-Glass, one step ahead: first {shown} test steps "
                f"(NRMSE {nrmse:.3g} over all {len(truth)})",
                "truth": truth[:shown],
                "prediction": one_step[:shown],
                "start": test_start,
            },
            {
                "title": f"closed loop: {MG_CLOSED_LOOP} steps, each forecast fed back "
                f"(NRMSE {loop_nrmse:.3g})",
                "truth": loop_truth,
                "prediction": loop,
                "start": test_start,
            },
        ],
    )
    return {
        "epochs": epochs,
        "model": model.config.to_dict(),
        "test_rows": len(truth),
        "one_step_nrmse": nrmse,
        "goal": MG_GOAL,
        "goal_met": nrmse <= MG_GOAL,
        "closed_loop_steps": MG_CLOSED_LOOP,
        "closed_loop_nrmse": loop_nrmse,
        "train_seconds": seconds,
        "png": str(png),
    }


# ------------------------------------------------------------------------- the run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, origins every 4 rows")
    parser.add_argument("--seeds", type=int, help="Forecaster seeds on sunspots (default 5)")
    parser.add_argument("--every", type=int, help="rows between origins (default 1)")
    parser.add_argument(
        "--horizons", type=int, nargs="+", default=[1, 11], help="sunspots horizons (1 11)"
    )
    parser.add_argument("--mg-epochs", type=int, help="Mackey-Glass epochs (default 20)")
    parser.add_argument("--threads", type=int, default=1, help="torch/BLAS threads (default 1)")
    parser.add_argument("--skip-mg", action="store_true", help="sunspots only")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/forecast.json")
    parser.add_argument("--png", type=Path, help="Mackey-Glass plot (default: beside --out)")
    args = parser.parse_args(argv)
    seeds = args.seeds or (1 if args.quick else 5)
    every = args.every or (4 if args.quick else 1)
    mg_epochs = args.mg_epochs or (8 if args.quick else 20)
    if seeds < 1 or every < 1 or mg_epochs < 1:
        parser.error("--seeds, --every and --mg-epochs must be positive")
    if not all(1 <= h <= MAX_HORIZON for h in args.horizons):
        parser.error(f"--horizons must be in 1..{MAX_HORIZON}")
    try:
        sm_version = importlib.metadata.version("statsmodels")
    except importlib.metadata.PackageNotFoundError:
        print("skipped: statsmodels is not installed (pip install 'rnnkit[examples]')")
        return 0
    torch.set_num_threads(args.threads)
    png = args.png or args.out.with_name("forecast_mackey_glass.png")
    args.out.parent.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="rnnkit-forecast-bench-") as tmp:
        work = Path(tmp)
        fits = {name: {} for name in ARIMA_ORDERS}
        suns = [run_sunspots(seeds, every, h, work, fits) for h in args.horizons]
        mg = None if args.skip_mg else run_mackey_glass(mg_epochs, work, png)

    for sun in suns:
        print(
            f"\nSunspots, yearly 1700-2008: test part {sun['split']['test']} years from "
            f"{sun['first_origin_year']}, {sun['origins']} origins every {every} year(s), "
            f"horizon {sun['horizon']}, season 11; ARIMA refit at every origin (statsmodels "
            f"{sm_version}); rnnkit: mean over {seeds} seed(s), {args.threads} thread(s)\n"
        )
        print(format_table(sun["rows"]))
        if seeds > 1:
            r = sun["rows"][0]
            print(
                "rnnkit std over seeds: "
                + ", ".join(f"{k.upper()} {r[f'{k}_std']:.3g}" for k in METRICS)
            )
        print(
            f"training {statistics.fmean(sun['train_seconds']):.1f} s per seed; ARIMA backtests "
            f"{sun['arima_seconds']:.1f} s (fits shared across horizons)"
        )
    if mg is not None:
        verdict = "met" if mg["goal_met"] else "NOT met"
        print(
            f"\nMackey-Glass tau=17: LSTM, {mg_epochs} epochs ({mg['train_seconds']:.1f} s): "
            f"one-step NRMSE {mg['one_step_nrmse']:.3g} on {mg['test_rows']} test rows "
            f"(goal <= {MG_GOAL:g}: {verdict}); {MG_CLOSED_LOOP}-step closed-loop NRMSE "
            f"{mg['closed_loop_nrmse']:.3g}; plot {png}"
        )
    record = {
        "benchmark": "forecast",
        "quick": args.quick,
        "threads": args.threads,
        "versions": {
            "rnnkit": importlib.metadata.version("rnnkit"),
            "torch": torch.__version__,
            "statsmodels": sm_version,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "sunspots": suns,
        "mackey_glass": mg,
    }
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

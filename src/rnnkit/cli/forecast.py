"""``rnnkit forecast train | predict | eval``: recurrent forecasting of time series.

``train`` reads numeric CSV columns (or a built-in example), cuts the rows in time
order into training, validation and test parts, scales every column with the mean and
std of the training rows, trains a :class:`~rnnkit.models.forecaster.Forecaster` on
sliding windows and ends with a backtest on the test part: rolling forecast origins,
the model beside the naive and seasonal-naive forecasts. The run directory holds the
trainer's files (checkpoints whose ``meta`` keeps the columns, the scaler, the split
and the data source, so ``predict`` and ``eval`` need only ``RUN_DIR``) and
``backtest.json``.

Checkpoint choice: a direct model is kept at its best validation loss. An
autoregressive model trains on one-step errors but forecasts in closed loop, so it is
kept at its best closed-loop error over the horizon on the validation part
(``val_forecast_mse``, scaled units); its ``val_loss`` is still logged.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from rnnkit.cli.config import merge, read_toml, table
from rnnkit.cli.errors import UsageError
from rnnkit.cli.lm import add_optimizer_options, add_run_options, flags, resolve_device
from rnnkit.cli.runs import open_run, refuse_existing, resumed_run
from rnnkit.engines import ENGINE_NAMES
from rnnkit.models.builder import CELL_KINDS
from rnnkit.train import distributed

DEFAULT_RUN = "runs/forecast"
DEFAULT_EPOCHS = 50  # when neither the flags, the config nor the example set a stopping rule
DEFAULT_LEVEL = 0.8  # prediction-interval level of `predict`
RUN_FORMAT = 1
BACKTEST_FILE = "backtest.json"

# The flags of `forecast train` that set each table of the run's configuration.
DATA_SETTINGS = (
    "csv", "example", "targets", "inputs", "season", "val_fraction", "test_fraction", "every",
)  # fmt: skip
MODEL_SETTINGS = (
    "window", "horizon", "mode", "probabilistic", "cell", "hidden_size", "num_layers",
    "dropout", "layer_norm", "window_norm", "engine",
)  # fmt: skip
TRAIN_SETTINGS = (
    "batch_size", "lr", "optimizer", "weight_decay", "warmup_steps", "decay", "clip_norm",
    "clip_value", "eval_every", "patience", "seed",
)  # fmt: skip
STOP_SETTINGS = ("max_steps", "epochs", "time_budget")
SETTINGS = DATA_SETTINGS + MODEL_SETTINGS + TRAIN_SETTINGS


@dataclass
class ForecastDataConfig:
    """Where the series comes from, which columns to forecast, and how it is split."""

    csv: str | None = None  # a CSV file with a header row
    example: str | None = None  # or a built-in example: mackey-glass | sunspots
    targets: list[str] | None = None  # columns to forecast (default: the example's target)
    inputs: list[str] = field(default_factory=list)  # covariates read beside the targets
    season: int | None = None  # period of the seasonal-naive baseline and MASE (default 1)
    val_fraction: float = 0.1  # rows after the training part, for validation
    test_fraction: float = 0.2  # the last rows, for the backtest
    every: int = 1  # rows between backtest origins

    def __post_init__(self) -> None:
        if (self.csv is None) == (self.example is None):
            raise UsageError("give the data as --csv FILE (with --target COL) or --example NAME")
        if self.csv is not None and not self.targets:
            raise UsageError("--csv needs --target COL: the column to forecast")
        for name in ("targets", "inputs"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, list) or not all(isinstance(v, str) and v for v in value)
            ):
                raise UsageError(f"{name} must be a list of column names, got {value!r}")
        if self.targets is not None and len(set(self.targets)) != len(self.targets):
            raise UsageError(f"a target column is named twice: {', '.join(self.targets)}")
        for name in ("season", "every"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise UsageError(f"{name} must be a positive integer, got {value!r}")
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
                raise UsageError(f"{name} must be in (0, 1), got {value!r}")


def _column_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise UsageError(f"--inputs takes comma-separated column names, got {text!r}")
    return names


# --------------------------------------------------------------------------- parser


def add_forecast_parser(sub) -> None:
    p = sub.add_parser("forecast", help="time-series forecasting: train, predict, eval")
    fc_sub = p.add_subparsers(
        dest="forecast_command", required=True, metavar="{train,predict,eval}"
    )
    add_train_parser(fc_sub)
    add_predict_parser(fc_sub)
    add_eval_parser(fc_sub)


def _add_source(g, required_note: str) -> None:
    source = g.add_mutually_exclusive_group()
    source.add_argument("--csv", help=f"CSV file with a header row{required_note}")
    source.add_argument("--example", help="built-in series: mackey-glass or sunspots")


def add_train_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a recurrent forecaster on CSV columns or a built-in series",
        description="Train a recurrent forecaster. The rows are split in time order into "
        "training, validation and test parts; the run ends with a rolling-origin backtest "
        "on the test part against the naive and seasonal-naive forecasts.",
    )
    g = p.add_argument_group("data")
    _add_source(g, "")
    g.add_argument(
        "--target",
        dest="targets",
        action="append",
        metavar="COL",
        help="column to forecast (repeat for several; default: the example's)",
    )
    g.add_argument(
        "--inputs",
        type=_column_list,
        metavar="COL,...",
        help="covariate columns read beside the targets (direct mode)",
    )
    g.add_argument("--season", type=int, help="seasonal period m for the baseline and MASE")
    g.add_argument("--val-fraction", type=float, help="validation rows (default 0.1)")
    g.add_argument("--test-fraction", type=float, help="test rows, the last ones (default 0.2)")
    g.add_argument("--every", type=int, help="rows between backtest origins (default 1)")
    g = p.add_argument_group("model")
    g.add_argument("--window", type=int, help="past rows the model reads (default 32)")
    g.add_argument("--horizon", type=int, help="rows to forecast (default 1)")
    g.add_argument(
        "--mode",
        choices=("direct", "autoregressive"),
        help="direct: all horizon rows at once; autoregressive: one step, fed back (default "
        "direct)",
    )
    g.add_argument(
        "--probabilistic",
        action="store_true",
        default=None,
        help="Gaussian mean and variance (NLL loss): prediction intervals",
    )
    g.add_argument("--cell", choices=tuple(CELL_KINDS), help="recurrent cell (default lstm)")
    g.add_argument("--hidden-size", type=int, help="units per layer (default 64)")
    g.add_argument("--num-layers", type=int, help="stacked layers (default 1)")
    g.add_argument("--dropout", type=float, help="variational dropout (default 0)")
    g.add_argument("--layer-norm", action="store_true", default=None, help="layer-norm LSTM")
    g.add_argument(
        "--window-norm",
        action="store_true",
        default=None,
        help="scale each window by its own mean and std",
    )
    g.add_argument("--engine", choices=ENGINE_NAMES, help="engine")
    g = p.add_argument_group("training")
    g.add_argument("--batch-size", type=int, help="windows per step (default 32)")
    add_optimizer_options(g, eval_every="an epoch")
    add_run_options(
        p, default_out=DEFAULT_RUN, default_epochs=f"the example's, else {DEFAULT_EPOCHS}"
    )
    p.set_defaults(run=train_command)


def add_predict_parser(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="forecast the rows after the end of a series",
        description="Forecast STEPS rows after the end of the series with a trained run; "
        "writes forecast.csv and forecast.png.",
    )
    p.add_argument("run_dir", help="a run directory made by `rnnkit forecast train`")
    _add_source(p, " holding the run's columns (default: the run's own data)")
    p.add_argument("--steps", type=int, help="rows to forecast (default: the run's horizon)")
    p.add_argument("--out", help="directory for forecast.csv and forecast.png (default RUN_DIR)")
    p.add_argument(
        "--level",
        type=float,
        default=DEFAULT_LEVEL,
        help=f"prediction-interval level, probabilistic runs (default {DEFAULT_LEVEL})",
    )
    p.add_argument(
        "--samples", type=int, default=200, help="Monte-Carlo paths, autoregressive intervals"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the Monte-Carlo paths")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    p.add_argument("--device", help="cpu or cuda")
    p.set_defaults(run=predict_command)


def add_eval_parser(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="rolling-origin backtest on the test part",
        description="Backtest a trained run on the test part of a series (the run's own by "
        "default): the model, naive and seasonal-naive forecasts over the same rolling origins; "
        f"writes RUN_DIR/{BACKTEST_FILE}.",
    )
    p.add_argument("run_dir", help="a run directory made by `rnnkit forecast train`")
    _add_source(p, " holding the run's columns (default: the run's own data)")
    p.add_argument("--every", type=int, help="rows between origins (default: the run's)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    p.add_argument("--device", help="cpu or cuda")
    p.set_defaults(run=eval_command)


# ----------------------------------------------------------------------------- data


def load_series(data, example=None) -> tuple[np.ndarray, list[str]]:
    """The series ``(rows, C)`` and its column names: the targets, then the covariates."""
    from rnnkit.data.series import read_series_csv

    targets = data.targets or ([example.target] if example else [])
    columns = list(dict.fromkeys([*targets, *data.inputs]))
    if example is None:
        return read_series_csv(data.csv, columns), columns
    missing = [c for c in columns if c not in example.columns]
    if missing:
        raise UsageError(
            f"the {example.name} example has no column {missing[0]!r}; its columns are: "
            f"{', '.join(example.columns)}"
        )
    return np.stack([example.columns[c] for c in columns], axis=1), columns  # (rows, C)


def _example(name: str | None):
    from rnnkit.data.series import load_example

    return load_example(name) if name else None


def _source(data: ForecastDataConfig) -> str:
    return f"example {data.example}" if data.example else str(data.csv)


def _series_for(args, meta: dict) -> tuple[np.ndarray, str]:
    """The series a `predict`/`eval` call names (the run's own by default), and its name."""
    saved = ForecastDataConfig(**meta["data"])
    columns = meta["columns"]
    if args.csv is not None or args.example is not None:
        data = replace(saved, csv=args.csv, example=args.example)
    else:
        data = saved
    data = replace(data, targets=columns[: meta["n_targets"]], inputs=columns[meta["n_targets"] :])
    values, _ = load_series(data, _example(data.example))
    return values, _source(data)


# ---------------------------------------------------------------------------- train


@distributed.with_teardown
def train_command(args) -> int:
    import torch

    from rnnkit.data.windows import Scaler, prepare
    from rnnkit.models.forecaster import Forecaster, ForecasterConfig
    from rnnkit.train.fit import FitConfig, FitTrainer

    run_dir = Path(args.out)
    device = distributed.init(resolve_device(args.device))  # under torchrun: join the group
    stop_flags = flags(args, STOP_SETTINGS)
    if args.resume:
        checkpoint, saved = resumed_run(args, SETTINGS, "forecast", "forecast train")
        meta = checkpoint.meta
        model_cfg = ForecasterConfig.from_dict(checkpoint.model_config)
        data_cfg = ForecastDataConfig(**meta["data"])
        train_cfg = FitConfig.from_dict(saved)
        values, columns = load_series(data_cfg, _example(data_cfg.example))
        if columns != meta["columns"]:
            raise UsageError(f"{run_dir} was trained on columns {meta['columns']}, not {columns}")
        scaler = Scaler.from_dict(meta["scaler"])
    else:
        refuse_existing(run_dir)
        if run_dir.exists() and not run_dir.is_dir():
            raise UsageError(f"--out {run_dir} is a file; give a directory")
        config = read_toml(args.config)
        data_cfg = merge(ForecastDataConfig, table(config, "data"), flags(args, DATA_SETTINGS))
        example = _example(data_cfg.example)
        suggested = {}
        if example is not None:
            suggested = {"window": example.window, "horizon": example.horizon, **example.model}
        values, columns = load_series(data_cfg, example)
        model_cfg = merge(
            ForecasterConfig,
            suggested,
            table(config, "model"),
            flags(args, MODEL_SETTINGS),
            n_inputs=len(columns),
            n_targets=len(data_cfg.targets or [example.target]),
        )
        train_table = table(config, "train")
        if all(train_table.get(k) is None and v is None for k, v in stop_flags.items()):
            stop_flags["epochs"] = (example.train if example else {}).get("epochs", DEFAULT_EPOCHS)
        train_cfg = merge(FitConfig, train_table, flags(args, TRAIN_SETTINGS), stop_flags)
        data_cfg = replace(
            data_cfg,
            targets=columns[: model_cfg.n_targets],
            inputs=columns[model_cfg.n_targets :],
            season=data_cfg.season or (example.season if example else 1),
            # absolute, so a resume or predict from elsewhere finds the same file
            csv=str(Path(data_cfg.csv).resolve()) if data_cfg.csv else None,
        )
        scaler = None

    data = prepare(
        values,
        columns,
        n_targets=model_cfg.n_targets,
        window=model_cfg.window,
        horizon=model_cfg.horizon,
        mode=model_cfg.mode,
        val_fraction=data_cfg.val_fraction,
        test_fraction=data_cfg.test_fraction,
        scaler=scaler,
    )
    split, scaler = data.split, data.scaler
    _check_season(data_cfg.season, split)
    train, val, metrics_fn, monitor = _training_data(data, model_cfg, train_cfg)
    if distributed.is_main():  # rank 0 speaks for all
        print(
            f"{_source(data_cfg)}: {len(values)} rows of {', '.join(columns)}; "
            f"train {split.n_train}, validation {split.n_val}, test {split.n_test} rows; "
            f"{train.num_examples} training windows ({model_cfg.mode}, window {model_cfg.window}, "
            f"horizon {model_cfg.horizon})"
        )
    meta = {
        "task": "forecast",
        "format": RUN_FORMAT,
        "data": asdict(data_cfg),
        "columns": columns,
        "n_targets": model_cfg.n_targets,
        "scaler": scaler.to_dict(),
        "split": asdict(split),
    }
    torch.manual_seed(train_cfg.seed)
    model = Forecaster(model_cfg, scaler).to(device)
    trainer = FitTrainer(
        model,
        train,
        val,
        train_cfg,
        run_dir,
        loss_fn=lambda m, b: m.loss(b["x"], b["y"], b["w"]),
        loss_weight=lambda b: float(b["w"].sum()),  # the loss is a mean over weighted steps
        metrics_fn=metrics_fn,
        monitor=monitor,
        meta=meta,
        progress=not args.no_progress,
        resume=args.resume,
    )
    trainer.fit()
    if not distributed.is_main():
        return 0  # rank 0 reports
    model = load_run(run_dir, "best")[0].to(device)
    result = run_backtest(model, values, split, data_cfg.season, data_cfg.every)
    _report(result, run_dir, "best", _source(data_cfg), split)
    return 0


def _check_season(season: int, split) -> None:
    if season >= split.n_train:
        raise UsageError(
            f"season {season} needs more training rows than {split.n_train}; give a shorter "
            f"--season or more rows"
        )


def _training_data(data, cfg, train_cfg):
    """Training and validation batches, and how the checkpoint to keep is chosen."""
    import torch

    from rnnkit.train.fit import Batches

    split, z = data.split, data.scaled
    targets = z[:, : cfg.n_targets]
    if len(data.train) == 0 or len(data.val) == 0:
        raise UsageError("too few rows for one training and one validation window")

    def tensors(w) -> dict:
        as_t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
        return {"x": as_t(w.x), "y": as_t(w.y), "w": as_t(w.weight)}

    train = Batches(tensors(data.train), train_cfg.batch_size, shuffle=True, seed=train_cfg.seed)
    val = Batches(tensors(data.val), 512, shuffle=False)
    if cfg.mode == "direct":
        return train, val, None, "val_loss"
    # Closed-loop forecasts over the horizon from every validation origin.
    origins = np.arange(split.val_start, split.test_start - cfg.horizon + 1)
    vx = torch.as_tensor(np.stack([z[o - cfg.window : o] for o in origins]), dtype=torch.float32)
    vy = torch.as_tensor(
        np.stack([targets[o : o + cfg.horizon] for o in origins]), dtype=torch.float32
    )

    def forecast_mse(model, _val) -> dict:
        device = next(model.parameters()).device
        mean, _ = model.forecast(vx.to(device), cfg.horizon)
        return {"forecast_mse": float(((mean - vy.to(device)) ** 2).mean())}

    return train, val, forecast_mse, "val_forecast_mse"


# ----------------------------------------------------------------- runs and backtests


def load_run(run_dir: str | Path, tag: str = "best"):
    """The forecaster (with its scaler) and the ``meta`` saved in ``run_dir``."""
    from rnnkit.data.windows import Scaler
    from rnnkit.models.forecaster import Forecaster, ForecasterConfig

    checkpoint = open_run(run_dir, tag, "forecast", "forecast train")
    meta = checkpoint.meta
    if meta.get("format") != RUN_FORMAT:
        raise UsageError(
            f"{run_dir} has run format {meta.get('format')!r}; this rnnkit reads {RUN_FORMAT}"
        )
    model = Forecaster(ForecasterConfig.from_dict(checkpoint.model_config))
    checkpoint.load_into(model)
    model.scaler = Scaler.from_dict(meta["scaler"])
    model.eval()
    return model, meta


def run_backtest(model, values, split, season: int, every: int):
    """The model against the naive baselines over rolling origins on the test part."""
    from rnnkit.metrics.forecast import backtest

    cfg = model.config
    name = f"rnnkit {cfg.cell} ({cfg.mode})"
    return backtest(
        values,
        {name: lambda histories: model.predict_many(histories, cfg.horizon)},
        horizon=cfg.horizon,
        start=split.test_start,
        train_end=split.n_train,
        season=season,
        every=every,
        n_targets=cfg.n_targets,
    )


def _report(result, run_dir: Path, tag: str, source: str, split) -> None:
    from rnnkit.atomic import atomic_write_text

    for row in result.rows:
        bad = [k for k in ("mae", "rmse", "smape") if not math.isfinite(row[k])]
        if bad:
            raise UsageError(f"the backtest of {row['name']} gave non-finite {bad[0]}")
    print(
        f"\nbacktest on the test part ({split.n_test} rows of {source}): {len(result.origins)} "
        f"origins every {_every(result)} row(s), horizon {result.horizon}, season "
        f"{result.season}; errors in the data's units, averaged over origins and steps"
    )
    print(result.table())
    if not math.isfinite(result.rows[0]["mase"]):
        print(
            f"MASE n/a: a target repeats itself exactly with period {result.season} in the "
            f"training rows; give another --season"
        )
    record = {
        "task": "forecast-backtest",
        "run": str(run_dir),
        "checkpoint": tag,
        "data": source,
        "split": asdict(split),
        **result.to_dict(),
    }
    atomic_write_text(run_dir / BACKTEST_FILE, json.dumps(record, indent=2) + "\n")
    print(f"wrote {run_dir / BACKTEST_FILE}")


def _every(result) -> int:
    return result.origins[1] - result.origins[0] if len(result.origins) > 1 else 1


# --------------------------------------------------------------------------- eval


def eval_command(args) -> int:
    from rnnkit.data.windows import split_rows

    model, meta = load_run(args.run_dir, args.checkpoint)
    model.to(resolve_device(args.device))
    values, source = _series_for(args, meta)
    data = ForecastDataConfig(**meta["data"])
    every = data.every if args.every is None else args.every
    if every < 1:
        raise UsageError(f"--every must be a positive integer, got {every}")
    cfg = model.config
    split = split_rows(
        len(values),
        val_fraction=data.val_fraction,
        test_fraction=data.test_fraction,
        window=cfg.window,
        horizon=cfg.horizon,
        mode=cfg.mode,
    )
    _check_season(data.season, split)
    result = run_backtest(model, values, split, data.season, every)
    _report(result, Path(args.run_dir), args.checkpoint, source, split)
    return 0


# ------------------------------------------------------------------------- predict


def predict_command(args) -> int:
    from rnnkit.data.columns import write_columns

    model, meta = load_run(args.run_dir, args.checkpoint)
    model.to(resolve_device(args.device))
    cfg = model.config
    steps = cfg.horizon if args.steps is None else args.steps
    if steps < 1:
        raise UsageError(f"--steps must be a positive integer, got {steps}")
    if cfg.mode == "direct" and steps > cfg.horizon:
        raise UsageError(
            f"this direct model forecasts at most its horizon ({cfg.horizon} rows), not "
            f"{steps}; train with --horizon {steps} or --mode autoregressive"
        )
    if not 0.0 < args.level < 1.0:
        raise UsageError(f"--level must be in (0, 1), e.g. 0.8 or 0.95; got {args.level}")
    if args.samples < 1:
        raise UsageError(f"--samples must be a positive integer, got {args.samples}")
    values, source = _series_for(args, meta)
    if len(values) < cfg.window:
        raise UsageError(f"the model reads the last {cfg.window} rows; {source} has {len(values)}")
    forecast = model.predict(values, steps, level=args.level, n_paths=args.samples, seed=args.seed)
    targets = meta["columns"][: cfg.n_targets]
    out = Path(args.out) if args.out else Path(args.run_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a directory")
    columns = {"step": np.arange(1, steps + 1)}
    for k, name in enumerate(targets):
        columns[name] = forecast.mean[:, k]
        if forecast.lower is not None:
            columns[f"{name}_lower"] = forecast.lower[:, k]
            columns[f"{name}_upper"] = forecast.upper[:, k]
    out.mkdir(parents=True, exist_ok=True)
    write_columns(out / "forecast.csv", columns)
    plot_forecast(out / "forecast.png", values[:, : cfg.n_targets], forecast, targets, cfg.window)
    interval = (
        f" with {forecast.level:.0%} intervals (columns <target>_lower, <target>_upper)"
        if forecast.lower is not None
        else ""
    )
    print(
        f"forecast {steps} row(s) of {', '.join(targets)} after the {len(values)} rows of "
        f"{source}{interval}"
    )
    print(f"wrote {out / 'forecast.csv'} and {out / 'forecast.png'}")
    return 0


def plot_forecast(path: Path, history: np.ndarray, forecast, names: list[str], window: int):
    """The end of the history, the forecast after it and its interval: one panel per target."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from rnnkit.atomic import atomic_write_bytes

    steps = len(forecast.mean)
    shown = min(len(history), max(4 * steps, 2 * window, 100))
    rows = np.arange(len(history) - shown, len(history))
    ahead = np.arange(len(history), len(history) + steps)
    fig = Figure(figsize=(10, 3.2 * len(names)), dpi=100)
    FigureCanvasAgg(fig)
    for k, name in enumerate(names):
        ax = fig.add_subplot(len(names), 1, k + 1)
        ax.plot(rows, history[-shown:, k], color="black", linewidth=1.2, label="history")
        # The forecast joined to the last observed value, so the line continues.
        ax.plot(
            np.concatenate([[rows[-1]], ahead]),
            np.concatenate([[history[-1, k]], forecast.mean[:, k]]),
            color="tab:orange",
            linewidth=1.4,
            label="forecast",
        )
        if forecast.lower is not None:
            ax.fill_between(
                ahead,
                forecast.lower[:, k],
                forecast.upper[:, k],
                color="tab:orange",
                alpha=0.25,
                label=f"{forecast.level:.0%} interval",
            )
        ax.axvline(len(history) - 0.5, color="grey", linewidth=0.8, linestyle=":")
        ax.set_title(f"{name}: {steps} row(s) forecast after row {len(history) - 1}", fontsize=10)
        ax.set_xlabel("row")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())

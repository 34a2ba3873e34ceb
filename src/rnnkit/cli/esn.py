"""``rnnkit esn fit``, ``rnnkit esn predict`` and ``rnnkit esn demo``: echo state networks.

``fit`` reads numeric columns of a CSV, learns to predict the target column
``horizon`` rows ahead from the input columns (by default the target itself), keeps
the last 20 % of the rows for the test, and writes a run directory::

    model.safetensors   the network (EchoStateNetwork.save: weights, readout, config)
    run.json            columns, horizon, scaling, hyperparameters, test NRMSE
    prediction.png      truth against prediction on the test rows

Every column is mapped to [-1, 1] with the minimum and maximum of the rows training
reads; ``run.json`` keeps them so ``predict`` maps new data the same way.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from rnnkit.atomic import atomic_write_text
from rnnkit.cli.errors import UsageError

TRAIN_FRACTION = 0.8
MIN_TRAIN_STEPS = 10  # training steps wanted after the washout
MIN_TEST_STEPS = 2  # an NRMSE needs a spread of values
RUN_FORMAT = 1
MODEL_FILE = "model.safetensors"
DEFAULT_DEMO = "runs/esn-demo"
DEMO_GENERATE = 100  # closed-loop steps scored by the demo
DEMO_MIN_STEPS = 1000  # the test part (20 %) must hold the generated steps


def add_esn_parser(sub) -> None:
    p = sub.add_parser("esn", help="echo state networks: fit, predict, demo")
    esn_sub = p.add_subparsers(dest="esn_command", required=True, metavar="{fit,predict,demo}")
    add_fit_parser(esn_sub)
    add_predict_parser(esn_sub)
    add_demo_parser(esn_sub)


def add_reservoir_options(p, units: int = 500) -> None:
    """The network's hyperparameters; defaults are EchoStateNetwork's."""
    g = p.add_argument_group("reservoir")
    g.add_argument("--units", type=int, default=units, help=f"reservoir size (default {units})")
    g.add_argument("--sr", type=float, default=1.25, help="spectral radius (default 1.25)")
    g.add_argument("--lr", type=float, default=0.3, help="leak rate in (0, 1] (default 0.3)")
    g.add_argument("--input-scaling", type=float, default=1.0, help="(default 1)")
    g.add_argument("--connectivity", type=float, default=0.1, help="recurrent density (0.1)")
    g.add_argument("--input-connectivity", type=float, default=0.1, help="input density (0.1)")
    g.add_argument("--bias-scaling", type=float, default=1.0, help="(default 1)")
    g.add_argument("--ridge", type=float, default=1e-6, help="readout L2 penalty (default 1e-6)")
    g.add_argument("--seed", type=int, default=0, help="seed of the random reservoir (default 0)")


def build_esn(args):
    """The network the flags describe; the core's own ValueError names a bad value."""
    from rnnkit.reservoir import EchoStateNetwork

    return EchoStateNetwork(
        units=args.units,
        sr=args.sr,
        lr=args.lr,
        input_scaling=args.input_scaling,
        connectivity=args.connectivity,
        input_connectivity=args.input_connectivity,
        bias_scaling=args.bias_scaling,
        ridge=args.ridge,
        seed=args.seed,
    )


# ---------------------------------------------------------------------------- fit


def add_fit_parser(sub) -> None:
    p = sub.add_parser(
        "fit",
        help="fit an echo state network to columns of a CSV file",
        description="Fit an echo state network that predicts a CSV column HORIZON rows ahead; "
        "the first 80%% of the rows train it, the rest test it.",
    )
    g = p.add_argument_group("data")
    g.add_argument("--csv", required=True, help="CSV file with a header row")
    g.add_argument("--target", required=True, help="the column to predict")
    g.add_argument(
        "--inputs", nargs="+", metavar="COL", help="input columns (default: the target itself)"
    )
    g.add_argument("--horizon", type=int, default=1, help="rows ahead to predict (default 1)")
    g.add_argument(
        "--washout", type=int, default=100, help="first steps left out of the fit (default 100)"
    )
    add_reservoir_options(p)
    p.add_argument("--out", required=True, help="run directory (its files are replaced)")
    p.set_defaults(run=fit_command)


def fit_command(args) -> int:
    from rnnkit.data.columns import read_columns
    from rnnkit.reservoir import nrmse
    from rnnkit.reservoir.plot import plot_predictions

    if args.horizon < 1:
        raise UsageError(f"--horizon must be at least 1, got {args.horizon}")
    if args.washout < 0:
        raise UsageError(f"--washout must be 0 or more, got {args.washout}")
    run_dir = Path(args.out)
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--out {run_dir} is a file; give a directory")
    inputs = list(dict.fromkeys(args.inputs or [args.target]))
    model = build_esn(args)  # before reading the data: a bad value is reported at once

    columns = read_columns(args.csv, list(dict.fromkeys([args.target, *inputs])))
    rows = len(columns[args.target])
    h = args.horizon
    n_train, n_test = split_sizes(rows, h)
    if n_train - args.washout < MIN_TRAIN_STEPS or n_test < MIN_TEST_STEPS:
        need = h + 1
        while not _enough(need, h, args.washout):
            need += 1
        raise UsageError(
            f"{args.csv} has {rows} data rows; with --washout {args.washout} and "
            f"--horizon {h} at least {need} are needed"
        )

    # Min and max over the rows training reads: inputs 0..n_train-1, targets h..n_train+h-1.
    seen = slice(0, n_train + h)
    scaling = {name: _range(columns[name][seen], name) for name in columns}
    x = np.stack([_scale(columns[c], scaling[c]) for c in inputs], axis=1)  # (rows, I)
    y = _scale(columns[args.target], scaling[args.target])[:, None]  # (rows, 1)

    model.fit(x[:n_train], y[h : n_train + h], washout=args.washout)
    # The whole input run again, so the test steps start from the state training left.
    predicted = np.asarray(model.predict(x[: rows - h]))[n_train:, 0]
    predicted = _unscale(predicted, scaling[args.target])
    truth = columns[args.target][n_train + h :]
    score = float(nrmse(truth, predicted))

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run.json").unlink(missing_ok=True)  # written last: marks a complete run
    model.save(run_dir / MODEL_FILE)
    plot_predictions(
        run_dir / "prediction.png",
        [
            {
                "title": f"{args.target}, {h} step{'s' if h > 1 else ''} ahead, test rows "
                f"(NRMSE {score:.4g})",
                "truth": truth,
                "prediction": predicted,
                "start": n_train + h,
                "ylabel": args.target,
            }
        ],
    )
    record = {
        "task": "esn",
        "format": RUN_FORMAT,
        "csv": str(Path(args.csv).resolve()),
        "target": args.target,
        "inputs": inputs,
        "horizon": h,
        "washout": args.washout,
        "scaling": {name: list(bounds) for name, bounds in scaling.items()},
        "train_rows": n_train,
        "test_rows": n_test,
        "test_nrmse": score,
        "esn": model.config,
    }
    atomic_write_text(run_dir / "run.json", json.dumps(record, indent=2) + "\n")
    print(
        f"test NRMSE {score:.4g} on {n_test} rows ({args.target}, {h} ahead; "
        f"trained on {n_train} rows)"
    )
    print(f"saved the run in {run_dir}")
    return 0


def split_sizes(rows: int, horizon: int) -> tuple[int, int]:
    """Training and test (input, target) pairs out of ``rows`` rows."""
    pairs = max(rows - horizon, 0)
    n_train = int(TRAIN_FRACTION * pairs)
    return n_train, pairs - n_train


def _enough(rows: int, horizon: int, washout: int) -> bool:
    n_train, n_test = split_sizes(rows, horizon)
    return n_train - washout >= MIN_TRAIN_STEPS and n_test >= MIN_TEST_STEPS


def _range(values: np.ndarray, name: str) -> tuple[float, float]:
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        raise UsageError(f"column {name!r} is constant ({lo}) in the training rows; drop it")
    return lo, hi


def _scale(values, bounds) -> np.ndarray:
    lo, hi = bounds
    return 2.0 * (np.asarray(values, dtype=np.float64) - lo) / (hi - lo) - 1.0


def _unscale(values, bounds) -> np.ndarray:
    lo, hi = bounds
    return (np.asarray(values, dtype=np.float64) + 1.0) * (hi - lo) / 2.0 + lo


# ------------------------------------------------------------------------ predict


def add_predict_parser(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="predict with a fitted echo state network",
        description="Run a network made by `rnnkit esn fit` over the input columns of a CSV "
        "file, from a fresh state, and write its predictions as a CSV.",
    )
    p.add_argument("run_dir", help="a run directory made by `rnnkit esn fit`")
    p.add_argument("--csv", required=True, help="CSV file with the run's input columns")
    p.add_argument("--out", help="predictions CSV (default RUN_DIR/predictions.csv)")
    p.set_defaults(run=predict_command)


def load_esn_run(run_dir: str | Path):
    """The network and ``run.json`` record of a run made by ``rnnkit esn fit``."""
    from rnnkit.reservoir import EchoStateNetwork

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"no such run directory: {run_dir}")
    path = run_dir / "run.json"
    if not path.is_file():
        raise UsageError(f"{run_dir} does not hold a run of `rnnkit esn fit` (no run.json)")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UsageError(f"{path} is damaged (not JSON); fit the run again") from None
    if not isinstance(record, dict) or record.get("task") != "esn":
        raise UsageError(f"{run_dir} does not hold a run of `rnnkit esn fit`")
    if record.get("format") != RUN_FORMAT:
        raise UsageError(
            f"{path} has format {record.get('format')!r}; this rnnkit reads {RUN_FORMAT}"
        )
    return EchoStateNetwork.load(run_dir / MODEL_FILE), record


def predict_command(args) -> int:
    from rnnkit.data.columns import read_columns, write_columns

    model, record = load_esn_run(args.run_dir)
    inputs, target, h = record["inputs"], record["target"], record["horizon"]
    columns = read_columns(args.csv, inputs)
    rows = len(columns[inputs[0]])
    if rows < 1:
        raise UsageError(f"{args.csv} has no data rows")
    x = np.stack([_scale(columns[c], record["scaling"][c]) for c in inputs], axis=1)
    predicted = _unscale(np.asarray(model.predict(x))[:, 0], record["scaling"][target])
    out = Path(args.out) if args.out else Path(args.run_dir) / "predictions.csv"
    index = np.arange(rows)
    write_columns(out, {"row": index, "target_row": index + h, f"{target}_predicted": predicted})
    print(f"wrote {rows} predictions of {target!r} ({h} row{'s' if h > 1 else ''} ahead) to {out}")
    return 0


# --------------------------------------------------------------------------- demo


def add_demo_parser(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="Mackey-Glass prediction: one step ahead and closed loop",
        description="Fit an echo state network to the Mackey-Glass series (tau=17, scaled to "
        "[-1, 1]) one step ahead on the first 80%% of the steps, then score it on the rest "
        f"one step ahead and over {DEMO_GENERATE} steps of closed-loop generation.",
    )
    p.add_argument("--out", default=DEFAULT_DEMO, help=f"output directory ({DEFAULT_DEMO})")
    p.add_argument("--steps", type=int, default=10_000, help="series length (default 10000)")
    p.add_argument("--washout", type=int, default=100, help="(default 100)")
    add_reservoir_options(p)
    p.set_defaults(run=demo_command)


def demo_command(args) -> int:
    from rnnkit.reservoir import nrmse
    from rnnkit.reservoir.datasets import mackey_glass, scale_to_unit
    from rnnkit.reservoir.plot import plot_predictions

    if args.washout < 0:
        raise UsageError(f"--washout must be 0 or more, got {args.washout}")
    n_train = int(TRAIN_FRACTION * args.steps)
    if args.steps < DEMO_MIN_STEPS or n_train - args.washout < 10 * MIN_TRAIN_STEPS:
        need = max(DEMO_MIN_STEPS, math.ceil((args.washout + 10 * MIN_TRAIN_STEPS) / 0.8) + 1)
        raise UsageError(
            f"--steps must be at least {need} with --washout {args.washout}, got {args.steps}"
        )
    model = build_esn(args)
    series, _ = scale_to_unit(mackey_glass(args.steps))  # (steps, 1)

    # One step ahead: inputs s_t, targets s_{t+1}; the test predicts s_{n_train} onwards.
    model.fit(series[: n_train - 1], series[1:n_train], washout=args.washout)
    one_step = np.asarray(model.predict(series[:-1]))[n_train - 1 :]
    test = series[n_train:]
    one_nrmse = float(nrmse(test, one_step))
    # Closed loop after a warmup on the training steps: the first value is the warmup's
    # one-step guess of s_{n_train}, each later one fed back its predecessor.
    generated = np.asarray(model.generate(DEMO_GENERATE, warmup=series[:n_train]))
    loop_truth = test[:DEMO_GENERATE]
    loop_nrmse = float(nrmse(loop_truth, generated))

    out = Path(args.out)
    shown = min(len(test), 500)
    plot_predictions(
        out / "mackey_glass.png",
        [
            {
                "title": f"one step ahead, first {shown} test steps (NRMSE {one_nrmse:.3g} "
                f"over all {len(test)})",
                "truth": test[:shown],
                "prediction": one_step[:shown],
                "start": n_train,
            },
            {
                "title": f"closed loop: {DEMO_GENERATE} steps fed back its own output "
                f"(NRMSE {loop_nrmse:.3g})",
                "truth": loop_truth,
                "prediction": generated,
                "start": n_train,
            },
        ],
    )
    print(
        f"Mackey-Glass tau=17, {args.steps} steps scaled to [-1, 1]; {args.units} units, "
        f"trained on {n_train} steps (washout {args.washout})"
    )
    print(f"one-step NRMSE on the last {len(test)} steps: {one_nrmse:.4g}")
    print(f"{DEMO_GENERATE}-step closed-loop NRMSE: {loop_nrmse:.4g}")
    print(f"wrote {out / 'mackey_glass.png'}")
    return 0

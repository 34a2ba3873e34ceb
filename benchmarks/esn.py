"""Echo state networks side by side with ReservoirPy: the same tasks, the same hyperparameters.

In one run, for rnnkit's ``EchoStateNetwork`` and ReservoirPy's ``ESN``:

- **Mackey-Glass** (tau = 17, 10,000 steps scaled to [-1, 1]): one step ahead, trained
  on the first 8,000 steps (washout 100); NRMSE over the last 2,000 steps, and over
  100 steps of closed-loop generation after a warmup on the 8,000 training steps.
- **NARMA-10** (10,000 steps, input seed 0): inputs u, target y; trained on the first
  8,000 steps (washout 100), NRMSE over the last 2,000.
- For 100, 500 and 2,000 units: NRMSE mean ± std over ``--seeds`` reservoir seeds, and
  the fit+predict wall time (building the network, fitting on the training steps,
  predicting all 10,000 from the zero state) as the median over those runs.
- **Speed**: 64 NARMA-10 sequences of 10,000 steps at once (500 units): fit on all,
  predict all. ReservoirPy gets them as a list of 64 arrays; with
  ``--rpy-sequences N < 64`` only N are run and the time is scaled by 64 / N (the
  table says so).

The hyperparameters (``HP``: searched sets for Mackey-Glass and NARMA-10) are mirrored
onto ReservoirPy 0.4's own initialisers, since its ``Reservoir`` defaults differ
(Bernoulli ±1 input weights and no bias) and it has no ``bias_scaling``:

    rnnkit EchoStateNetwork(units, sr, lr, input_scaling, connectivity,
                            input_connectivity, bias_scaling, ridge, seed)
    ReservoirPy ESN(Reservoir(units, lr=lr, sr=sr, input_scaling=input_scaling,
                              rc_connectivity=connectivity,
                              input_connectivity=input_connectivity,
                              Win=mat_gen.uniform,   # U(-1, 1) * input_scaling, sparse
                              W=mat_gen.normal,      # N(0, 1), sparse, rescaled to sr
                              bias=mat_gen.uniform(input_scaling=bias_scaling),  # dense
                              seed=seed),
                    Ridge(ridge=ridge),              # bias not regularised, as rnnkit
                    input_to_readout=True)           # rnnkit's default

The random draws themselves differ (torch's generator against NumPy's), hence the
spread over seeds. Thread counts: ``--threads`` (default: every core) is set before
NumPy, SciPy, numba and torch load (``OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS``) and with
``torch.set_num_threads``, the same for both libraries.

    python benchmarks/esn.py                          # everything, 5 seeds
    python benchmarks/esn.py --seeds 3 --units 100 500 --rpy-sequences 8   # quicker
"""

from __future__ import annotations

import argparse
import os
import sys


def _threads_from_argv(argv: list[str]) -> int:
    """``--threads`` read before NumPy and torch are imported: BLAS reads it at load."""
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if arg.startswith("--threads="):
            return int(arg.split("=", 1)[1])
    return os.cpu_count() or 1


if __name__ == "__main__":
    _n = str(_threads_from_argv(sys.argv[1:]))
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[_var] = _n

import importlib.metadata  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from rnnkit.reservoir import EchoStateNetwork, nrmse  # noqa: E402
from rnnkit.reservoir.datasets import mackey_glass, narma10, scale_to_unit  # noqa: E402
from rnnkit.reservoir.reservoir import numba_available  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Given explicitly to both libraries. Mackey-Glass: the best of a grid over sr, lr,
# input scaling and ridge scored on validation steps before the test span, with other
# reservoir seeds (`benchmarks/esn_search.py`); ReservoirPy's tutorial values (lr 0.3,
# ridge 1e-6) score 1.2e-3 at 500 units. NARMA-10 wants a plain (lr = 1), weakly driven
# reservoir: picked by `rnnkit.reservoir.search` (60 random trials, 500 units) on another
# draw (seed 1).
HP = {
    "mg": {
        "sr": 1.25,
        "lr": 0.8,
        "input_scaling": 1.0,
        "connectivity": 0.1,
        "input_connectivity": 0.1,
        "bias_scaling": 1.0,
        "ridge": 1e-8,
    },
    "narma": {
        "sr": 1.1,
        "lr": 1.0,
        "input_scaling": 0.1,
        "connectivity": 0.1,
        "input_connectivity": 0.1,
        "bias_scaling": 0.5,
        "ridge": 1e-9,
    },
}
STEPS, TRAIN, WASHOUT, GENERATE = 10_000, 8_000, 100, 100
SPEED_SEQUENCES, SPEED_UNITS = 64, 500


# ----------------------------------------------------------------------- the tasks


def tasks() -> dict:
    """Inputs and targets of both tasks (all 10,000 steps; the test is the tail)."""
    mg, _ = scale_to_unit(mackey_glass(STEPS + 1))  # (STEPS + 1, 1): s_0 .. s_STEPS
    u, y = narma10(STEPS, seed=0)
    return {"mg": (mg[:-1], mg[1:], mg), "narma": (u, y)}


def speed_data(count: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``count`` NARMA-10 sequences of 10,000 steps, from the first seeds that do not diverge."""
    us, ys, seed = [], [], 1
    while len(us) < count:
        try:
            u, y = narma10(STEPS, seed=seed)
        except ValueError:  # NARMA-10 runs off to infinity for a few draws
            u = None
        seed += 1
        if u is not None:
            us.append(u)
            ys.append(y)
    return us, ys


# ----------------------------------------------------------------- the two libraries


class Rnnkit:
    name = "rnnkit"

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.label = f"rnnkit ({backend})"

    def build(self, units: int, seed: int, hp: dict):
        return EchoStateNetwork(units=units, seed=seed, backend=self.backend, **hp)

    def fit(self, model, x, y) -> None:
        model.fit(x, y, washout=WASHOUT)

    def predict(self, model, x):
        return model.predict(x)  # from the zero state

    def generate(self, model, warmup, n: int) -> np.ndarray:
        return np.asarray(model.generate(n, warmup=warmup))


class ReservoirPy:
    name = "reservoirpy"
    label = "ReservoirPy"

    def __init__(self) -> None:
        from reservoirpy import ESN, mat_gen
        from reservoirpy.nodes import Reservoir, Ridge

        self.ESN, self.mat_gen, self.Reservoir, self.Ridge = ESN, mat_gen, Reservoir, Ridge

    def build(self, units: int, seed: int, hp: dict):
        reservoir = self.Reservoir(
            units,
            lr=hp["lr"],
            sr=hp["sr"],
            input_scaling=hp["input_scaling"],
            rc_connectivity=hp["connectivity"],
            input_connectivity=hp["input_connectivity"],
            Win=self.mat_gen.uniform,
            W=self.mat_gen.normal,
            bias=self.mat_gen.uniform(input_scaling=hp["bias_scaling"]),
            seed=seed,
        )
        readout = self.Ridge(ridge=hp["ridge"])
        return self.ESN(reservoir=reservoir, readout=readout, input_to_readout=True)

    def fit(self, model, x, y) -> None:
        model.fit(x, y, warmup=WASHOUT)

    def predict(self, model, x):
        model.reset()  # ReservoirPy carries the state over from fit; rnnkit starts at zero
        return model.run(x)

    def generate(self, model, warmup, n: int) -> np.ndarray:
        # Its documented recipe: run the warmup, then feed each output back one step at a time.
        model.reset()
        y = model.run(warmup)[-1]
        out = [np.asarray(y).reshape(-1)]
        for _ in range(n - 1):
            y = model.step(y)
            out.append(np.asarray(y).reshape(-1))
        return np.stack(out)


# ----------------------------------------------------------------------- measuring


def run_sizes(lib, data, units: int, seeds: list[int]) -> dict:
    """NRMSE over seeds and fit+predict times for one library and reservoir size."""
    mg_x, mg_y, mg = data["mg"]
    nu, ny = data["narma"]
    one, loop, narma, t_mg, t_narma = [], [], [], [], []
    for seed in seeds:
        start = time.perf_counter()
        model = lib.build(units, seed, HP["mg"])
        lib.fit(model, mg_x[:TRAIN], mg_y[:TRAIN])
        pred = lib.predict(model, mg_x)
        t_mg.append(time.perf_counter() - start)
        one.append(nrmse(mg_y[TRAIN:], pred[TRAIN:]))
        # Warmup on s_0 .. s_7999; the first value is its one-step guess of s_8000, each
        # later one computed from the previous output fed back as input.
        generated = lib.generate(model, mg[:TRAIN], GENERATE)
        loop.append(nrmse(mg[TRAIN : TRAIN + GENERATE], generated))

        start = time.perf_counter()
        model = lib.build(units, seed, HP["narma"])
        lib.fit(model, nu[:TRAIN], ny[:TRAIN])
        pred = lib.predict(model, nu)
        t_narma.append(time.perf_counter() - start)
        narma.append(nrmse(ny[TRAIN:], pred[TRAIN:]))
    return {
        "library": lib.label,
        "units": units,
        "seeds": len(seeds),
        "mg_one_step": _stats(one),
        "mg_closed_loop": _stats(loop),
        "narma10": _stats(narma),
        "mg_seconds": statistics.median(t_mg),
        "narma_seconds": statistics.median(t_narma),
    }


def run_speed(lib, us, ys, count: int, repeats: int) -> dict:
    """Fit on ``count`` sequences at once and predict them; times scaled to 64 if fewer."""
    fits, predicts, score = [], [], None
    for _ in range(repeats):
        model = lib.build(SPEED_UNITS, 0, HP["narma"])
        start = time.perf_counter()
        lib.fit(model, us[:count], ys[:count])
        middle = time.perf_counter()
        pred = lib.predict(model, us[:count])
        fits.append(middle - start)
        predicts.append(time.perf_counter() - middle)
        score = nrmse([y[WASHOUT:] for y in ys[:count]], [p[WASHOUT:] for p in pred])
        del model, pred
    scale = SPEED_SEQUENCES / count
    return {
        "library": lib.label,
        "measured_sequences": count,
        "extrapolated": count < SPEED_SEQUENCES,
        "fit_seconds": statistics.median(fits) * scale,
        "predict_seconds": statistics.median(predicts) * scale,
        "total_seconds": (statistics.median(fits) + statistics.median(predicts)) * scale,
        "nrmse_train_sequences": score,
        "repeats": repeats,
    }


def _stats(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values,
    }


def _pm(s: dict) -> str:
    return f"{s['mean']:.4g} ± {s['std']:.2g}"


def warm_up(libs) -> None:
    """One small untimed run per library: numba's compiled loop, lazy imports."""
    x = np.linspace(-1, 1, 300).reshape(-1, 1)
    for lib in libs:
        model = lib.build(20, 0, HP["mg"])
        lib.fit(model, x[:-1], x[1:])
        lib.predict(model, x)
        lib.predict(model, [x, x])


# ------------------------------------------------------------------------- the run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, nargs="+", default=[100, 500, 2000])
    parser.add_argument("--seeds", type=int, default=5, help="reservoir seeds per size (>= 3)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=("numba", "torch"),
        help="rnnkit backends (default: numba when installed, and torch)",
    )
    parser.add_argument("--rpy-sequences", type=int, default=SPEED_SEQUENCES)
    parser.add_argument("--speed-repeats", type=int, default=3)
    parser.add_argument("--speed-backends", nargs="+", choices=("numba", "torch"))
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/esn.json")
    args = parser.parse_args(argv)
    if args.seeds < 1 or not 1 <= args.rpy_sequences <= SPEED_SEQUENCES:
        parser.error(f"--seeds must be >= 1 and --rpy-sequences in 1..{SPEED_SEQUENCES}")
    try:
        rpy_version = importlib.metadata.version("reservoirpy")
    except importlib.metadata.PackageNotFoundError:
        print(
            "skipped: reservoirpy is not installed (.venv/bin/pip install reservoirpy)",
            file=sys.stderr,
        )
        return 0
    torch.set_num_threads(args.threads)
    default_backends = ["numba", "torch"] if numba_available() else ["torch"]
    backends = args.backends or default_backends[:1]
    speed_backends = args.speed_backends or default_backends
    rpy = ReservoirPy()
    libs = [Rnnkit(b) for b in backends] + [rpy]
    warm_up([Rnnkit(b) for b in sorted(set(backends) | set(speed_backends))] + [rpy])

    data = tasks()
    seeds = list(range(args.seeds))
    rows = []
    for units in args.units:
        for lib in libs:
            row = run_sizes(lib, data, units, seeds)
            rows.append(row)
            print(f"  {lib.label} {units} units: done", file=sys.stderr)

    speed = []
    if not args.skip_speed:
        us, ys = speed_data(SPEED_SEQUENCES)
        for backend in speed_backends:
            speed.append(run_speed(Rnnkit(backend), us, ys, SPEED_SEQUENCES, args.speed_repeats))
            print(f"  speed {backend}: done", file=sys.stderr)
        repeats = args.speed_repeats if args.rpy_sequences == SPEED_SEQUENCES else 1
        speed.append(run_speed(rpy, us, ys, args.rpy_sequences, repeats))

    versions = {
        "rnnkit": importlib.metadata.version("rnnkit"),
        "reservoirpy": rpy_version,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "numba": importlib.metadata.version("numba") if numba_available() else None,
        "python": platform.python_version(),
    }
    print(
        f"\nEcho state networks, {args.threads} threads ({os.cpu_count()} cores), "
        f"float64; reservoirpy {rpy_version}, torch {torch.__version__}\n"
        + "".join(
            f"{task} hyperparameters: {', '.join(f'{k}={v}' for k, v in hp.items())}\n"
            for task, hp in HP.items()
        )
        + f"washout {WASHOUT}; NRMSE mean ± std over {args.seeds} seeds, "
        f"fit+predict seconds the median of those runs\n"
    )
    print(
        "| library | units | MG one-step NRMSE | MG 100-step closed-loop NRMSE "
        "| NARMA-10 NRMSE | MG fit+predict s | NARMA fit+predict s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['library']} | {r['units']} | {_pm(r['mg_one_step'])} | "
            f"{_pm(r['mg_closed_loop'])} | {_pm(r['narma10'])} | "
            f"{r['mg_seconds']:.2f} | {r['narma_seconds']:.2f} |"
        )
    if speed:
        print(
            f"\nSpeed: {SPEED_SEQUENCES} NARMA-10 sequences x {STEPS} steps, "
            f"{SPEED_UNITS} units, fit on all then predict all\n"
        )
        print("| library | fit s | predict s | total s | measured | NRMSE (train seqs) |")
        print("| --- | ---: | ---: | ---: | --- | ---: |")
        for s in speed:
            n = s["measured_sequences"]
            how = (
                f"{n} sequences x {SPEED_SEQUENCES / n:.3g} (extrapolated)"
                if s["extrapolated"]
                else f"all {SPEED_SEQUENCES}, median of {s['repeats']}"
            )
            print(
                f"| {s['library']} | {s['fit_seconds']:.1f} | {s['predict_seconds']:.1f} | "
                f"{s['total_seconds']:.1f} | {how} | {s['nrmse_train_sequences']:.4f} |"
            )
    record = {
        "benchmark": "esn",
        "threads": args.threads,
        "cores": os.cpu_count(),
        "versions": versions,
        "hyperparameters": HP,
        "steps": STEPS,
        "train": TRAIN,
        "washout": WASHOUT,
        "generate": GENERATE,
        "rows": rows,
        "speed": speed,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

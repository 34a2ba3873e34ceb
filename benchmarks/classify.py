"""Sequential digits: test accuracy and training time of ``rnnkit classify`` per seed.

The built-in example (scikit-learn's 8×8 digits, fixed stratified split: 1,258
training, 180 validation, 359 test images) in both layouts, trained exactly as

    rnnkit classify train --example digits --steps rows|pixels --seed S

does, with the settings the example suggests for each layout (rows: GRU 64, lr 1e-2,
15 epochs; pixels, one pixel per step over 64 steps: LSTM 128, AdamW lr 5e-3, weight
decay 0.2, clip 1, 80 epochs). The checkpoint with the best validation accuracy is
scored on the test split. Goal for pixels: >= 97 % in under 10 minutes on 2 cores.

    python benchmarks/classify.py                       # rows and pixels, seeds 0 1 2
    python benchmarks/classify.py --layouts rows --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from rnnkit import __version__
from rnnkit.atomic import atomic_write_text
from rnnkit.cli.classify import load_run
from rnnkit.cli.main import main
from rnnkit.data.digits import digits_splits
from rnnkit.data.labeled import LabeledSequences
from rnnkit.models.classifier import classification_metrics
from rnnkit.train import Batches

GOAL = {"pixels": 0.97}
GOAL_SECONDS = 600


def test_accuracy(run_dir: Path, test: LabeledSequences) -> float:
    model, _, _ = load_run(run_dir, "best")
    tensors = {
        "x": torch.as_tensor(test.values),
        "lengths": torch.as_tensor(test.lengths),
        "y": torch.as_tensor(test.labels),
    }
    return classification_metrics(model, Batches(tensors, 256, shuffle=False))["accuracy"]


def run_one(layout: str, seed: int, test: LabeledSequences) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        argv = ["classify", "train", "--example", "digits", "--steps", layout]
        argv += ["--seed", str(seed), "--out", str(run), "--no-progress"]
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = main(argv)
        seconds = time.perf_counter() - start
        if code != 0:
            raise SystemExit(f"training failed: rnnkit {' '.join(argv)}")
        return {
            "layout": layout,
            "seed": seed,
            "accuracy": test_accuracy(run, test),
            "seconds": seconds,
        }


def main_cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", nargs="+", default=["rows", "pixels"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", default="benchmarks/results/classify.json")
    args = parser.parse_args()
    runs = []
    print(f"| layout | seed | test accuracy | training s | threads: {torch.get_num_threads()}")
    print("| --- | --- | --- | --- |")
    for layout in args.layouts:
        test = digits_splits(layout)[2]
        for seed in args.seeds:
            r = run_one(layout, seed, test)
            runs.append(r)
            print(f"| {layout} | {seed} | {r['accuracy']:.4f} | {r['seconds']:.1f} |", flush=True)
    summary = {}
    for layout in args.layouts:
        acc = [r["accuracy"] for r in runs if r["layout"] == layout]
        sec = [r["seconds"] for r in runs if r["layout"] == layout]
        summary[layout] = {
            "mean_accuracy": statistics.fmean(acc),
            "min_accuracy": min(acc),
            "max_accuracy": max(acc),
            "median_seconds": statistics.median(sec),
            "max_seconds": max(sec),
        }
        goal = GOAL.get(layout)
        met = "" if goal is None else f" (goal >= {goal:.0%} in < {GOAL_SECONDS} s)"
        s = summary[layout]
        print(
            f"{layout}: accuracy mean {s['mean_accuracy']:.4f}, range {s['min_accuracy']:.4f}"
            f"-{s['max_accuracy']:.4f}; training {s['median_seconds']:.0f} s median{met}"
        )
    result = {
        "benchmark": "classify",
        "versions": {
            "rnnkit": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "threads": torch.get_num_threads(),
        "runs": runs,
        "summary": summary,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main_cli()

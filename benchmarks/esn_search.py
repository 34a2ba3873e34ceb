"""The Mackey-Glass hyperparameters of ``benchmarks/esn.py``, chosen without its test steps.

A grid over spectral radius, leak rate, input scaling and ridge (500 units), each point
scored by one-step NRMSE on a validation span: trained on steps 0..5,999 of the
benchmark's series (washout 100), scored on steps 6,000..7,999, averaged over reservoir
seeds 10 and 11 (the benchmark uses seeds 0..4). The benchmark's test steps
(8,000..9,999) are never seen. Runs through ``rnnkit.reservoir.search`` on both cores.

    python benchmarks/esn_search.py          # ~2 min on 2 cores
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np

from rnnkit.atomic import atomic_write_text
from rnnkit.reservoir import EchoStateNetwork, nrmse
from rnnkit.reservoir.datasets import mackey_glass, scale_to_unit
from rnnkit.reservoir.search import search

ROOT = Path(__file__).resolve().parents[1]
STEPS, FIT, VALID_END, WASHOUT, UNITS, SEEDS = 10_000, 6_000, 8_000, 100, 500, (10, 11)
SPACE = {
    "sr": [0.9, 1.25],
    "lr": [0.3, 0.5, 0.8],
    "input_scaling": [0.5, 1.0],
    "ridge": [1e-8, 1e-7, 1e-6],
}
FIXED = {"connectivity": 0.1, "input_connectivity": 0.1, "bias_scaling": 1.0}


def validation_nrmse(params: dict) -> float:
    """Mean one-step NRMSE over ``SEEDS`` on the validation span (lower is better)."""
    series, _ = scale_to_unit(mackey_glass(STEPS + 1))  # (STEPS + 1, 1)
    x, y = series[:-1], series[1:]
    scores = []
    for seed in SEEDS:
        model = EchoStateNetwork(units=UNITS, seed=seed, **FIXED, **params)
        model.fit(x[:FIT], y[:FIT], washout=WASHOUT)
        predicted = np.asarray(model.predict(x[:VALID_END]))  # from the zero state
        scores.append(nrmse(y[FIT:VALID_END], predicted[FIT:]))
    return float(np.mean(scores))


def main() -> None:
    result = search(partial(validation_nrmse), SPACE, method="grid", workers=2)
    print(result.table())
    best = result.best
    print(f"\nbest: {best.params} (validation NRMSE {best.score:.3e})")
    out = ROOT / "benchmarks/results/esn_search.json"
    data = {
        "benchmark": "esn_search",
        "units": UNITS,
        "seeds": list(SEEDS),
        "fixed": FIXED,
        "best": {"params": best.params, "validation_nrmse": best.score},
        "trials": [{"params": t.params, "validation_nrmse": t.score} for t in result.ranked],
    }
    atomic_write_text(out, json.dumps(data, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

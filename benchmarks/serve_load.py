"""Load test of ``rnnkit serve``: throughput and latency under concurrent requests.

Each run is served by ``python -m rnnkit serve RUN --port 0`` in its own process on
a free loopback port (so the client and the server do not share an interpreter), then
``--requests`` POSTs to the endpoint its task serves are fired over ``--concurrency``
keep-alive connections (httpx, asyncio) after a few warm-up requests. Reported per
endpoint: requests per second over the whole batch, latency p50 / p90 / p99 and the
failures (any status but 200, or a transport error); a table on stdout and JSON in
``--out``.

Without run directories it first trains three small runs in a temporary directory
(a few steps each: serving cost depends on the model's size, not its quality):

- ``lm``: the default 2 x 256 LSTM on the built-in corpus; requests generate 100
  characters (temperature 0.8, a seed per request);
- ``classify``: the digits example read row by row (GRU 64); requests classify 16
  test images (8 steps x 8 features);
- ``forecast``: Mackey-Glass, autoregressive and probabilistic (LSTM 64, window 64);
  requests forecast the 84-step horizon with an 80 % interval from 100 sample paths.

    python benchmarks/serve_load.py                      # 500 requests over 8 connections
    python benchmarks/serve_load.py runs/book --requests 2000 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch

from rnnkit import __version__
from rnnkit.atomic import atomic_write_text

WARMUP = 10  # requests before the timed batch (first calls pay one-off costs)
START_TIMEOUT = 120.0  # seconds for a server to print its address


# ----------------------------------------------------------------------- demo runs


def train_demo_runs(root: Path) -> list[Path]:
    """Three small runs (lm, classify, forecast) trained in ``root``; see the docstring."""
    from rnnkit.cli.main import main

    quiet = ["--no-progress"]
    commands = {
        "lm": ["lm", "train", "--max-steps", "5", "--batch-size", "8", "--seq-len", "64",
               "--sample-length", "0"],
        "classify": ["classify", "train", "--example", "digits", "--max-steps", "20"],
        "forecast": ["forecast", "train", "--example", "mackey-glass", "--probabilistic",
                     "--max-steps", "20"],
    }  # fmt: skip
    runs = []
    for name, argv in commands.items():
        print(f"training the demo {name} run ...", flush=True)
        with contextlib.redirect_stdout(io.StringIO()):
            code = main([*argv, "--out", str(root / name), *quiet])
        if code != 0:
            raise SystemExit(f"training the demo {name} run failed (exit {code})")
        runs.append(root / name)
    return runs


# ------------------------------------------------------------------------ payloads


def payloads(health: dict) -> tuple[str, callable, str]:
    """The endpoint of a run, a function ``i -> request body``, and what it asks."""
    task, run = health["task"], health["run"]
    if task == "lm":
        body = lambda i: {"prime": "def ", "length": 100, "temperature": 0.8, "seed": i}  # noqa: E731
        return "/generate", body, "100 characters after 'def ', temperature 0.8"
    if task == "classify":
        batch = 16
        if run["input"] == "tokens":
            texts = ["a short text to classify"] * batch
            return "/classify", lambda i: {"texts": texts}, f"{batch} texts"
        sequences = _classify_sequences(run["features"], batch)
        return "/classify", lambda i: {"sequences": sequences}, f"{batch} sequences"
    history = _forecast_history(run["columns"])
    steps = run["horizon"]
    body = lambda i: {"history": history, "steps": steps, "samples": 100, "seed": i}  # noqa: E731
    return "/forecast", body, f"{steps} steps after {len(next(iter(history.values())))} rows"


def _classify_sequences(features: int, batch: int) -> list:
    if features == 8:  # the digits example read row by row: real test images
        from rnnkit.data.digits import digits_splits

        _, _, test = digits_splits("rows")
        return [test.values[i, : test.lengths[i]].tolist() for i in range(batch)]
    rng = np.random.default_rng(0)
    return rng.normal(size=(batch, 32, features)).tolist()


def _forecast_history(columns: list[str]) -> dict:
    from rnnkit.data.series import load_example

    example = load_example("mackey-glass")
    if list(columns) == [example.target]:
        return {example.target: example.columns[example.target][-400:].tolist()}
    t = np.arange(400)
    return {name: np.sin(2 * np.pi * t / (20 + k)).tolist() for k, name in enumerate(columns)}


# -------------------------------------------------------------------------- server


@contextlib.contextmanager
def served(run_dir: Path, log: Path):
    """``python -m rnnkit serve run_dir --port 0``; yields its URL."""
    command = [sys.executable, "-m", "rnnkit", "serve", str(run_dir), "--port", "0"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as err:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    try:
        line = proc.stdout.readline()  # "rnnkit: serving RUN on http://127.0.0.1:PORT (...)"
        if " on http://" not in line:
            proc.wait(timeout=START_TIMEOUT)
            raise SystemExit(f"the server did not start: {log.read_text().strip()}")
        url = line.split(" on ")[1].split()[0]
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# ---------------------------------------------------------------------------- load


async def fire(url: str, path: str, body, requests: int, concurrency: int) -> dict:
    """``requests`` POSTs over ``concurrency`` connections: latencies (s), failures, wall."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120.0) as client:
        for i in range(WARMUP):
            (await client.post(path, json=body(i))).raise_for_status()
        counter = itertools.count()
        latencies, failures = [], []

        async def worker() -> None:
            while (i := next(counter)) < requests:
                start = time.perf_counter()
                try:
                    response = await client.post(path, json=body(i))
                    ok = response.status_code == 200
                    reason = f"status {response.status_code}: {response.text[:200]}"
                except httpx.HTTPError as err:
                    ok, reason = False, f"{type(err).__name__}: {err}"
                latencies.append(time.perf_counter() - start)
                if not ok:
                    failures.append(reason)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return {"latencies": latencies, "failures": failures, "wall": wall}


def summarise(run: Path, health: dict, path: str, asks: str, load: dict, args) -> dict:
    ms = np.array(load["latencies"]) * 1000.0
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "run": str(run) if args.runs else f"demo {run.name}",
        "task": health["task"],
        "endpoint": f"POST {path}",
        "request": asks,
        "parameters": health["model"]["parameters"],
        "requests": args.requests,
        "concurrency": args.concurrency,
        "failures": len(load["failures"]),
        "first_failures": load["failures"][:3],
        "seconds": round(load["wall"], 3),
        "req_per_s": round(args.requests / load["wall"], 1),
        "p50_ms": round(float(p50), 2),
        "p90_ms": round(float(p90), 2),
        "p99_ms": round(float(p99), 2),
    }


def table(rows: list[dict]) -> str:
    head = "| endpoint | request | requests | conc. | req/s | p50 ms | p90 ms | p99 ms | failures |"
    lines = [head, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(
            f"| {r['endpoint']} | {r['request']} | {r['requests']} | {r['concurrency']} | "
            f"{r['req_per_s']} | {r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} | {r['failures']} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", help="run directories (default: train demo runs)")
    parser.add_argument("--requests", type=int, default=500, help="timed requests per endpoint")
    parser.add_argument("--concurrency", type=int, default=8, help="connections in parallel")
    parser.add_argument("--out", default="benchmarks/results/serve_load.json")
    args = parser.parse_args()
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be positive")
    rows = []
    with tempfile.TemporaryDirectory(prefix="rnnkit-serve-load-") as tmp:
        runs = [Path(r) for r in args.runs] or train_demo_runs(Path(tmp))
        for run in runs:
            with served(run, Path(tmp) / f"server-{len(rows)}.log") as url:
                health = httpx.get(f"{url}/health").json()
                path, body, asks = payloads(health)
                print(f"{health['task']}: {args.requests} x POST {path} ({asks}) ...", flush=True)
                load = asyncio.run(fire(url, path, body, args.requests, args.concurrency))
                rows.append(summarise(run, health, path, asks, load, args))
    print(table(rows))
    result = {
        "benchmark": "serve_load",
        "rnnkit": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),  # other work on the machine
        "server": "uvicorn, one process, model calls under one lock",
        "warmup_requests": WARMUP,
        "rows": rows,
    }
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 1 if any(r["failures"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

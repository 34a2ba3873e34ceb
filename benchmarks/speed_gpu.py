"""GPU training-step speed: rnnkit's triton engine against cuDNN and the per-step loop.

For each configuration (T, B, H; input size I = H, so the input product is as large as
the recurrent one) one *training step* is timed: forward over a time-major
``x (T, B, I)`` that requires grad, ``loss = y.float().sum()``, backward; gradients are
cleared before each step. Each repeat runs enough steps to last ``--min-time`` seconds,
CUDA-synchronised at both ends; the table shows the median of ``--repeats`` repeats,
taken after two warm-up steps (which also compile the Triton kernels), the
implementations of a configuration interleaved repeat by repeat
(:func:`rnnkit.bench.speed.time_interleaved`). Implementations:

``cudnn lstm``, ``cudnn gru``   torch.nn.LSTM / GRU (cuDNN)
``triton <cell>``               rnnkit's ``TritonEngine`` on LSTMCell (plain, peephole,
                                layer norm) and GRUCell
``loop <cell>``                 the same cells on rnnkit's ``loop`` engine (one cell
                                call per step: the baseline the variants have without
                                a fused kernel)

Targets (provisional until measured on an H100): triton lstm / cudnn lstm <= 0.7 for
B <= 8 and H <= 512; triton lstm_peephole and lstm_layernorm / cudnn lstm <= 1.3 and /
their loop <= 0.1 everywhere. The JSON (``--out``) keeps every repeat, the medians, the
ratios, the layout (:mod:`rnnkit.engines.triton.plan`) each triton row ran on, and the
machine; it is rewritten after each configuration (``"complete": false`` until the end).

    python benchmarks/speed_gpu.py [--quick] [--dtype bfloat16|float16|float32]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from functools import partial

import torch
from torch import nn

from rnnkit.atomic import atomic_write_text
from rnnkit.bench.speed import machine_info, time_interleaved

GRID = {"T": (100, 500), "B": (1, 8, 32, 128), "H": (256, 512, 1024)}
QUICK = {"T": (100,), "B": (1, 8), "H": (256, 512)}
TRITON_CELLS = ("lstm", "lstm_peephole", "lstm_layernorm", "gru")
LOOP_CELLS = ("lstm", "lstm_peephole", "lstm_layernorm")
IMPLS = (
    ("cudnn", "lstm"), ("cudnn", "gru"),
    *(("triton", c) for c in TRITON_CELLS), *(("loop", c) for c in LOOP_CELLS),
)  # fmt: skip


def make_cell(kind: str, size: int):
    from rnnkit import GRUCell, LSTMCell

    if kind == "gru":
        return GRUCell(size, size)
    return LSTMCell(size, size, peephole=kind == "lstm_peephole",
                    layer_norm=kind == "lstm_layernorm")  # fmt: skip


def build(engine: str, kind: str, H: int, device, dtype):
    """``(forward(x) -> y, parameters)`` of one implementation.

    rnnkit's engines are called as ``Recurrent`` calls them (``engine.run(cell, Unroll)``),
    so the rows do not depend on the engine registry or ``auto``'s choices.
    """
    if engine == "cudnn":
        module = (nn.LSTM if kind == "lstm" else nn.GRU)(H, H).to(device, dtype)
        return (lambda x: module(x)[0]), list(module.parameters())
    from rnnkit.engines import Unroll
    from rnnkit.engines.loop import LoopEngine
    from rnnkit.engines.triton import TritonEngine

    cell = make_cell(kind, H).to(device, dtype)
    runner = TritonEngine() if engine == "triton" else LoopEngine()

    def forward(x):
        return runner.run(cell, Unroll(x, cell.init_state(x.shape[1])))[0]

    return forward, list(cell.parameters())


def seconds_per_step(forward, params, x: torch.Tensor, steps: int) -> float:
    """Mean wall time of ``steps`` training steps, CUDA-synchronised."""
    torch.cuda.synchronize(x.device)
    start = time.perf_counter()
    for _ in range(steps):
        for p in params:
            p.grad = None
        x.grad = None
        forward(x).float().sum().backward()
    torch.cuda.synchronize(x.device)
    return (time.perf_counter() - start) / steps


def layout(kind: str, B: int, H: int, dtype) -> str:
    """The triton layout a configuration runs on: path, programs, units per program."""
    from rnnkit.engines.triton.engine import family
    from rnnkit.engines.triton.options import KernelOptions

    opts = KernelOptions(torch.device("cuda"), False, {})
    slots = {"lstm": 4, "gru": 4, "elman": 1}[family(make_cell(kind, 1))[0]]
    plan = opts.plan(slots, H, H, B, dtype)
    return f"{plan.path} {plan.n_groups}x{plan.n_h} BH={plan.block_h} BB={plan.block_b}"


def measure(T: int, B: int, H: int, device, dtype, repeats: int, min_time: float) -> dict:
    torch.manual_seed(0)
    x = torch.randn(T, B, H, device=device, dtype=dtype, requires_grad=True)
    timers, layouts = {}, {}
    for engine, kind in IMPLS:
        forward, params = build(engine, kind, H, device, dtype)
        name = f"{engine} {kind}"
        timers[name] = partial(seconds_per_step, forward, params, x)
        if engine == "triton":
            layouts[name] = layout(kind, B, H, dtype)
    times, steps = time_interleaved(timers, repeats, min_time)
    rows = {
        name: {"seconds": times[name], "steps_per_repeat": steps[name],
               "median_s": statistics.median(times[name]), "layout": layouts.get(name)}
        for name in timers
    }  # fmt: skip
    ms = {name: row["median_s"] for name, row in rows.items()}
    ratios = {
        "triton lstm / cudnn lstm": ms["triton lstm"] / ms["cudnn lstm"],
        "triton gru / cudnn gru": ms["triton gru"] / ms["cudnn gru"],
    }
    for kind in ("lstm_peephole", "lstm_layernorm"):
        ratios[f"triton {kind} / cudnn lstm"] = ms[f"triton {kind}"] / ms["cudnn lstm"]
        ratios[f"triton {kind} / loop {kind}"] = ms[f"triton {kind}"] / ms[f"loop {kind}"]
    return {"T": T, "B": B, "H": H, "I": H, "impls": rows, "ratios": ratios}


def targets(results: list[dict]) -> list[dict]:
    """Each target on each configuration it covers: value, limit, met."""
    out = []
    for r in results:
        config = f"T={r['T']} B={r['B']} H={r['H']}"
        goals = [(k, 1.3) for k in r["ratios"] if "/ cudnn lstm" in k and "triton lstm " not in k]
        goals += [(k, 0.1) for k in r["ratios"] if "/ loop" in k]
        if r["B"] <= 8 and r["H"] <= 512:
            goals.append(("triton lstm / cudnn lstm", 0.7))
        for key, limit in goals:
            value = r["ratios"][key]
            out.append({"config": config, "target": key, "value": value, "limit": limit,
                        "met": value <= limit})  # fmt: skip
    return out


def table(results: list[dict]) -> str:
    names = [f"{e} {k}" for e, k in IMPLS]
    keys = list(results[0]["ratios"]) if results else []
    head = ["T", "B", "H", *(f"{n} ms" for n in names), *keys, "triton lstm layout"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [str(r["T"]), str(r["B"]), str(r["H"])]
        cells += [f"{r['impls'][n]['median_s'] * 1e3:.3g}" for n in names]
        cells += [f"{r['ratios'][k]:.2f}" for k in keys]
        cells.append(r["impls"]["triton lstm"]["layout"] or "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets_table(goals: list[dict]) -> str:
    lines = ["| target | met | worst value | worst config |", "|---|---|---|---|"]
    for key in dict.fromkeys(g["target"] + f" <= {g['limit']}" for g in goals):
        rows = [g for g in goals if g["target"] + f" <= {g['limit']}" == key]
        worst = max(rows, key=lambda g: g["value"])
        met = sum(g["met"] for g in rows)
        lines.append(f"| {key} | {met}/{len(rows)} | {worst['value']:.3g} | {worst['config']} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchmarks/speed_gpu.py", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="T=100, B in {1, 8}, H in {256, 512}")
    p.add_argument("--dtype", default="bfloat16", help="bfloat16 (default) | float16 | float32")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats, median shown (5)")
    p.add_argument("--min-time", type=float, default=0.05, help="least seconds per repeat")
    p.add_argument("--out", default="benchmarks/results/speed_gpu.json", help="JSON results")
    return p


def run(args) -> int:
    if not torch.cuda.is_available():
        raise ValueError(f"needs a CUDA GPU; torch {torch.__version__} sees none")
    from rnnkit.engines.triton.engine import triton_missing

    if (reason := triton_missing()) is not None:
        raise ValueError(reason)
    if args.dtype not in ("bfloat16", "float16", "float32"):
        raise ValueError(f"--dtype {args.dtype!r}: expected bfloat16, float16 or float32")
    if args.repeats < 1 or not args.min_time >= 0:
        raise ValueError("--repeats must be positive and --min-time 0 or more")
    device, dtype = torch.device("cuda"), getattr(torch, args.dtype)
    grid = QUICK if args.quick else GRID
    configs = [(T, B, H) for T in grid["T"] for B in grid["B"] for H in grid["H"]]
    results: list[dict] = []

    def report(complete: bool) -> str:
        settings = {"dtype": args.dtype, "repeats": args.repeats, "min_time_s": args.min_time,
                    "grid": grid, "input_size": "I = H", "loss": "y.float().sum()",
                    "tf32": torch.backends.cuda.matmul.allow_tf32}  # fmt: skip
        body = {"benchmark": "speed_gpu", "complete": complete, "settings": settings,
                "machine": machine_info(device), "results": results,
                "targets": targets(results)}  # fmt: skip
        return json.dumps(body, indent=2) + "\n"

    for i, (T, B, H) in enumerate(configs, 1):
        results.append(measure(T, B, H, device, dtype, args.repeats, args.min_time))
        ms = ", ".join(f"{n} {r['median_s'] * 1e3:.3g}" for n, r in results[-1]["impls"].items())
        print(f"[{i}/{len(configs)}] T={T} B={B} H={H}: {ms} ms", file=sys.stderr, flush=True)
        gc.collect()
        torch.cuda.empty_cache()
        atomic_write_text(args.out, report(i == len(configs)))
    print(f"training step (forward + backward), {args.dtype} on "
          f"{torch.cuda.get_device_name(device)}, median of {args.repeats}; I = H\n")  # fmt: skip
    print(table(results))
    print("\ntargets (provisional)\n")
    print(targets_table(targets(results)))
    print(f"\nwrote {args.out}")
    return 0


def main(argv=None) -> int:
    """Errors as the CLI reports them: one line on stderr, exit 2."""
    from rnnkit.cli.errors import run_script

    return run_script(run, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

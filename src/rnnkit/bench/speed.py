"""Training-step speed of every cell kind: torch.nn, a hand-written cell loop, rnnkit's engines.

For each configuration (cell kind, T, B, I, H) one *training step* is timed: a forward
pass over a time-major input ``x (T, B, I)`` (which requires grad, as inside a deeper
network, so the input gradient is computed too), ``loss = y.sum()`` and
``loss.backward()``; gradients are cleared (set to None) before each step. The
implementations of one configuration run interleaved, repeat by repeat (their order
rotating), so load from other processes hits them alike; each repeat runs enough steps
to last ``--min-time`` seconds and the table shows the median of ``--repeats`` repeats
after two warm-up steps. Implementations:

``torch.nn``   torch.nn.RNN / LSTM / GRU. The LSTM variants (peephole, layer norm) have
               no torch.nn twin: their row times torch.nn.LSTM, the leaky cell's
               torch.nn.RNN, as the reference the ratios are taken against.
``cell-loop``  the Python loop a user writes over torch.nn.RNNCell / LSTMCell / GRUCell
               (LSTMCell for the LSTM variants, RNNCell for the leaky cell).
``loop``, ``native``, ``fused``, ``auto``
               ``rnnkit.layers.Recurrent(cell, engine=...)``; a combination the engine
               does not support (``ENGINES[name].unsupported``) is shown as n/a.

Cells: ``rnn_tanh`` (ElmanCell, tanh), ``lstm``, ``gru``, ``lstm_peephole``,
``lstm_layernorm`` (LSTMCell options) and ``leaky`` (LeakyCell, alpha = 0.5).

Flop model (multiply-adds of the matrix products, element-wise work ignored)::

    forward  = 2·T·B·G·(I + R)  (+ 2·T·B·H·P for an LSTM projection to P features)
    step     = 3 × forward      (backward: one product for the input/state gradients,
                                 one for the weight gradients, each as large as forward)

with G the gate rows (H for Elman and leaky, 4H for LSTM, 3H for GRU) and R the size
of the recurrent input (H; P with a projection, which these cells do not use). The
achieved GFLOP/s of an implementation is ``step flops / median time``; its % of peak
compares that with the machine's practical peak, the GFLOP/s of a large square matrix
product (``--peak-size``, same dtype and device). The product is timed in the same
rounds as the implementations of each configuration (median of ``--repeats``), so both
see the same load from other processes; it is also measured once at the start.

Memory: "saved MB" is what autograd keeps for the backward pass of one forward, taken
with ``torch.autograd.graph.saved_tensors_hooks`` as the sum of the sizes of the
unique storages saved (weights included); on CUDA also the peak of
``torch.cuda.max_memory_allocated`` over one step.

The JSON (``--out``) keeps every raw repeat, the medians, flops, machine information,
the peak and the one-time build cost of the fused kernels; it is rewritten after each
configuration (``"complete": false`` until the last), so a long grid that is stopped
keeps what it measured. The build cost: with ``--cold-build``
``rnnkit.engines.fused.build.load()`` runs in a subprocess with a fresh, empty
``RNNKIT_CACHE_DIR`` (a full compile); otherwise the time of the first load in this
process is recorded (fast when the library is already cached).

    python benchmarks/speed.py                       # target config, every cell
    rnnkit bench speed --grid full --cells lstm gru  # the full grid, two cells
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from torch import Tensor, nn

from rnnkit.atomic import atomic_write_text

CELLS = ("rnn_tanh", "lstm", "gru", "lstm_peephole", "lstm_layernorm", "leaky")
IMPLS = ("torch.nn", "cell-loop", "loop", "native", "fused", "auto")
DEFAULT_IMPLS = ("torch.nn", "cell-loop", "loop", "fused", "auto")
GRIDS = {
    "target": {"T": (100,), "B": (32,), "H": (256,)},
    "full": {"T": (50, 200), "B": (1, 32, 128), "H": (128, 256, 512)},
}
INPUT_SIZE = 64
TARGET_CONFIG = (100, 32, 64, 256)  # (T, B, I, H) the ratio targets are set for
PEAK_CONFIG = (128, 512)  # (B, H) where auto should reach PEAK_TARGET % of peak
PEAK_TARGET = 50.0
WARMUP_STEPS = 2
PEAK = "peak matmul"  # the yardstick timed next to the implementations
# Gate rows per hidden unit: G = GATE_ROWS[cell] * H.
GATE_ROWS = {
    "rnn_tanh": 1,
    "leaky": 1,
    "gru": 3,
    "lstm": 4,
    "lstm_peephole": 4,
    "lstm_layernorm": 4,
}
# The torch.nn module and torch.nn cell each kind is compared with.
TORCH_MODULE = {"rnn_tanh": "RNN", "leaky": "RNN", "gru": "GRU"}
TORCH_CELL = {"rnn_tanh": "RNNCell", "leaky": "RNNCell", "gru": "GRUCell"}
MB = 1e6


# ------------------------------------------------------------------ configuration


@dataclass(frozen=True)
class Config:
    """One point of the grid."""

    cell: str
    T: int
    B: int
    I: int  # noqa: E741 (the input size, named as in the docs)
    H: int

    @property
    def sizes(self) -> tuple[int, int, int, int]:
        return (self.T, self.B, self.I, self.H)


def forward_flops(cell: str, T: int, B: int, I: int, H: int, proj: int = 0) -> int:  # noqa: E741
    """Matrix-product flops of one forward pass: ``2·T·B·G·(I + R)`` (+ projection)."""
    G = GATE_ROWS[cell] * H
    R = proj or H
    return 2 * T * B * G * (I + R) + (2 * T * B * H * proj if proj else 0)


def step_flops(cell: str, T: int, B: int, I: int, H: int) -> int:  # noqa: E741
    """Flops of one training step: three forwards' worth (forward, two backward products)."""
    return 3 * forward_flops(cell, T, B, I, H)


# ---------------------------------------------------------------- implementations


@dataclass
class Impl:
    """One way to run a configuration: ``forward(x) -> y (T, B, H)``, or why it cannot."""

    name: str
    label: str
    forward: Callable[[Tensor], Tensor] | None = None
    params: list[Tensor] = field(default_factory=list)
    reason: str | None = None  # None: supported


def rnnkit_cell(kind: str, I: int, H: int):  # noqa: E741
    """The rnnkit cell of a kind."""
    from rnnkit.cells import ElmanCell, GRUCell, LeakyCell, LSTMCell

    if kind == "rnn_tanh":
        return ElmanCell(I, H, nonlinearity="tanh")
    if kind == "leaky":
        return LeakyCell(I, H, alpha=0.5)
    if kind == "gru":
        return GRUCell(I, H)
    return LSTMCell(I, H, peephole=kind == "lstm_peephole", layer_norm=kind == "lstm_layernorm")


def torch_layer_impl(kind: str, I: int, H: int, device, dtype) -> Impl:  # noqa: E741
    """torch.nn.RNN / LSTM / GRU (the reference for the variants without a twin)."""
    name = TORCH_MODULE.get(kind, "LSTM")
    module = getattr(nn, name)(I, H).to(device=device, dtype=dtype)
    twin = kind in ("rnn_tanh", "lstm", "gru")
    label = f"torch.nn ({name})" if twin else f"torch.nn.{name} (ref)"
    return Impl("torch.nn", label, lambda x: module(x)[0], list(module.parameters()))


def torch_cell_impl(kind: str, I: int, H: int, device, dtype) -> Impl:  # noqa: E741
    """The per-step Python loop over torch.nn.RNNCell / LSTMCell / GRUCell."""
    name = TORCH_CELL.get(kind, "LSTMCell")
    cell = getattr(nn, name)(I, H).to(device=device, dtype=dtype)

    def forward(x: Tensor) -> Tensor:  # x (T, B, I) -> y (T, B, H)
        state, outputs = None, []
        for x_t in x:
            state = cell(x_t, state)
            outputs.append(state[0] if isinstance(state, tuple) else state)
        return torch.stack(outputs)

    twin = kind in ("rnn_tanh", "lstm", "gru")
    label = f"cell loop ({name})" if twin else f"cell loop ({name}, ref)"
    return Impl("cell-loop", label, forward, list(cell.parameters()))


def rnnkit_impl(name: str, cell, x: Tensor) -> Impl:
    """``Recurrent(cell, engine=name)``; n/a with the engine's reason when unsupported."""
    from rnnkit.engines import ENGINES, Unroll, select_engine
    from rnnkit.layers import Recurrent

    unroll = Unroll(x.detach(), cell.init_state(x.shape[1]))
    label = name
    try:
        if name == "auto":
            label = f"auto ({select_engine('auto', cell, unroll).name})"
        else:
            reason = ENGINES[name].unsupported(cell, unroll)
            if reason is not None:
                return Impl(name, label, reason=reason)
    except ValueError as err:  # auto found no engine
        return Impl(name, label, reason=str(err))
    layer = Recurrent(cell, engine=name)
    return Impl(name, label, lambda inp: layer(inp)[0], list(cell.parameters()))


def build_impls(config: Config, names, device, dtype) -> tuple[Tensor, list[Impl]]:
    """The input ``x (T, B, I)`` (requires grad) and the implementations, seeded."""
    torch.manual_seed(0)
    T, B, I, H = config.sizes  # noqa: E741
    x = torch.randn(T, B, I, device=device, dtype=dtype, requires_grad=True)
    cell = rnnkit_cell(config.cell, I, H).to(device=device, dtype=dtype)  # shared by engines
    impls = []
    for name in names:
        if name == "torch.nn":
            impls.append(torch_layer_impl(config.cell, I, H, device, dtype))
        elif name == "cell-loop":
            impls.append(torch_cell_impl(config.cell, I, H, device, dtype))
        else:
            impls.append(rnnkit_impl(name, cell, x))
    return x, impls


# ------------------------------------------------------------------------ measures


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step(impl: Impl, x: Tensor) -> None:
    """Forward, ``y.sum()``, backward, from cleared gradients."""
    for p in impl.params:
        p.grad = None
    x.grad = None
    impl.forward(x).sum().backward()


def seconds_per_step(impl: Impl, x: Tensor, steps: int) -> float:
    """Mean wall time of ``steps`` training steps."""
    synchronize(x.device)
    start = time.perf_counter()
    for _ in range(steps):
        train_step(impl, x)
    synchronize(x.device)
    return (time.perf_counter() - start) / steps


def saved_bytes(forward: Callable[[Tensor], Tensor], x: Tensor) -> int:
    """Bytes autograd saves for the backward of ``forward(x)``: unique storages' sizes."""
    storages: dict[tuple[str, int], int] = {}

    def pack(t: Tensor) -> Tensor:
        s = t.untyped_storage()
        key = (str(s.device), s.data_ptr())
        storages[key] = max(storages.get(key, 0), s.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = forward(x)
    del y  # frees the graph; only the sizes were wanted
    return sum(storages.values())


def cuda_peak_bytes(impl: Impl, x: Tensor) -> int:
    """``torch.cuda.max_memory_allocated`` over one training step."""
    torch.cuda.synchronize(x.device)
    torch.cuda.reset_peak_memory_stats(x.device)
    train_step(impl, x)
    torch.cuda.synchronize(x.device)
    return torch.cuda.max_memory_allocated(x.device)


class Matmul:
    """A ``size × size`` matrix product, the yardstick of the machine's practical peak.

    The faster of ``torch.mm`` and, on the CPU in float32, the oneDNN product the fused
    kernels use (on some CPUs ``torch.mm``'s BLAS reaches only half the machine's speed).
    """

    def __init__(self, size: int, device, dtype) -> None:
        self.size = size
        self.a = torch.randn(size, size, device=device, dtype=dtype)  # (n, n)
        self.b = torch.randn(size, size, device=device, dtype=dtype)  # (n, n)
        self.out = torch.empty_like(self.a)
        products = {"torch.mm": lambda: torch.mm(self.a, self.b, out=self.out)}
        if self.a.device.type == "cpu" and dtype == torch.float32:
            from rnnkit.engines.fused import build

            if build.load() is None:
                products["oneDNN"] = lambda: torch.ops.rnnkit_fused.mm(self.a, self.b, None)
        timed = {}
        for name, product in products.items():
            product()  # warm-up: first-call setup
            start = time.perf_counter()
            for _ in range(3):
                product()
            timed[name] = time.perf_counter() - start
        self.via = min(timed, key=timed.get)
        self.product = products[self.via]

    @property
    def flops(self) -> int:
        return 2 * self.size**3

    def seconds(self, steps: int) -> float:
        """Mean wall time of ``steps`` products."""
        synchronize(self.a.device)
        start = time.perf_counter()
        for _ in range(steps):
            self.product()
        synchronize(self.a.device)
        return (time.perf_counter() - start) / steps

    def summary(self, seconds: list[float]) -> dict:
        median = statistics.median(seconds)
        return {
            "size": self.size,
            "via": self.via,
            "dtype": str(self.a.dtype).removeprefix("torch."),
            "seconds": seconds,
            "median_s": median,
            "gflops": self.flops / median / 1e9,
            "best_gflops": self.flops / min(seconds) / 1e9,
        }


def time_interleaved(timers: dict[str, Callable[[int], float]], repeats: int, min_time: float):
    """Seconds per step of each timer (``timer(steps) -> s``), repeat by repeat in turn.

    Returns ``({name: [repeats floats]}, {name: steps per repeat})``: after the warm-up,
    each repeat runs as many steps as fill ``min_time``.
    """
    names = list(timers)
    steps = {}
    for name in names:
        warm = min(timers[name](1) for _ in range(WARMUP_STEPS))
        steps[name] = max(1, math.ceil(min_time / max(warm, 1e-9)))
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        k = r % len(names) if names else 0
        for name in names[k:] + names[:k]:  # rotate so no timer always goes first
            times[name].append(timers[name](steps[name]))
    return times, steps


# --------------------------------------------------------------- fused build cost


COLD_BUILD = """\
import json, time
start = time.perf_counter()
from rnnkit.engines.fused import build
reason = build.load()
print(json.dumps({"seconds": time.perf_counter() - start, "error": reason}))
"""


def fused_build_cost(cold: bool) -> dict:
    """Seconds to make the fused kernels loadable: a full compile in a fresh cache
    (``cold``, in a subprocess), else this process's first load."""
    from rnnkit.engines.fused import build

    if not cold:
        cached = any(build.cache_dir().glob("rnnkit_fused*.so"))
        start = time.perf_counter()
        reason = build.load()
        return {
            "mode": "first load in this process",
            "library_was_cached": cached,
            "seconds": time.perf_counter() - start,
            "error": reason,
        }
    cache = tempfile.mkdtemp(prefix="rnnkit-cold-build-")
    try:
        env = {**os.environ, "RNNKIT_CACHE_DIR": cache}
        done = subprocess.run(
            [sys.executable, "-c", COLD_BUILD], env=env, capture_output=True, text=True
        )
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return {"mode": "cold build in a subprocess", "seconds": None, "error": last}
        return {"mode": "cold build in a subprocess", **json.loads(lines[-1])}
    finally:
        shutil.rmtree(cache, ignore_errors=True)


# -------------------------------------------------------------------------- running


def machine_info(device: torch.device) -> dict:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "mkldnn": torch.backends.mkldnn.is_available(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def measure_config(config: Config, names, device, dtype, repeats, min_time, matmul) -> dict:
    """Every implementation of one configuration: times, flops, memory.

    The peak matmul runs in the same rounds as the implementations, so "% of peak"
    compares numbers taken under the same load from other processes.
    """
    x, impls = build_impls(config, names, device, dtype)
    timers = {i.name: partial(seconds_per_step, i, x) for i in impls if i.reason is None}
    timers[PEAK] = matmul.seconds
    times, steps = time_interleaved(timers, repeats, min_time)
    peak = matmul.summary(times.pop(PEAK))
    flops = step_flops(config.cell, *config.sizes)
    rows = {}
    for impl in impls:
        row = {"label": impl.label, "supported": impl.reason is None, "reason": impl.reason}
        if impl.reason is None:
            median = statistics.median(times[impl.name])
            gflops = flops / median / 1e9
            row |= {
                "seconds": times[impl.name],
                "steps_per_repeat": steps[impl.name],
                "median_s": median,
                "gflops": gflops,
                "pct_peak": 100.0 * gflops / peak["gflops"],
                "saved_bytes": saved_bytes(impl.forward, x),
            }
            if device.type == "cuda":
                row["cuda_max_allocated_bytes"] = cuda_peak_bytes(impl, x)
        rows[impl.name] = row
    ref = rows.get("torch.nn", {}).get("median_s")
    for row in rows.values():
        row["ratio"] = row["median_s"] / ref if ref and row.get("median_s") else None
    return {
        "cell": config.cell,
        **dict(zip("TBIH", config.sizes, strict=True)),
        "forward_flops": forward_flops(config.cell, *config.sizes),
        "flops": flops,
        "peak": peak,
        "impls": rows,
    }


def grid(args) -> list[Config]:
    """The configurations to run, cell kinds outermost."""
    base = GRIDS[args.grid]
    Ts, Bs, Hs = args.T or base["T"], args.B or base["B"], args.H or base["H"]
    return [
        Config(cell, T, B, args.I, H) for cell in args.cells for T in Ts for B in Bs for H in Hs
    ]


def ratio(result: dict, num: str, den: str) -> float | None:
    a, b = result["impls"].get(num, {}), result["impls"].get(den, {})
    if a.get("median_s") and b.get("median_s"):
        return a["median_s"] / b["median_s"]
    return None


def targets(results: list[dict]) -> list[dict]:
    """The speed goals, met or not, for the configurations of the run that they name."""
    out = []

    def add(name, value, op, limit):
        met = None if value is None else (value <= limit if op == "<=" else value >= limit)
        out.append({"target": name, "value": value, "op": op, "limit": limit, "met": met})

    by_cell = {r["cell"]: r for r in results if (r["T"], r["B"], r["I"], r["H"]) == TARGET_CONFIG}
    goals = [("rnn_tanh", "auto", 0.8), ("gru", "auto", 0.8), ("lstm", "auto", 1.0)]
    for cell, impl, limit in [*goals, ("lstm", "fused", 1.2)]:
        if cell in by_cell:
            add(f"{cell} {impl} / torch.nn", ratio(by_cell[cell], impl, "torch.nn"), "<=", limit)
    # The variants against their references: nn.LSTM / LSTMCell, nn.RNN / RNNCell (leaky).
    for cell in ("lstm_peephole", "lstm_layernorm", "leaky"):
        if cell in by_cell:
            module, step = TORCH_MODULE.get(cell, "LSTM"), TORCH_CELL.get(cell, "LSTMCell")
            r = by_cell[cell]
            add(f"{cell} fused / nn.{module}", ratio(r, "fused", "torch.nn"), "<=", 1.5)
            add(f"{cell} fused / {step} loop", ratio(r, "fused", "cell-loop"), "<=", 0.25)
    if "leaky" in by_cell and "lstm" in by_cell:
        # The goals name nn.LSTM and the LSTMCell loop for every variant, leaky included.
        fused = by_cell["leaky"]["impls"].get("fused", {}).get("median_s")
        for ref, label, limit in (
            ("torch.nn", "nn.LSTM", 1.5),
            ("cell-loop", "LSTMCell loop", 0.25),
        ):
            base = by_cell["lstm"]["impls"].get(ref, {}).get("median_s")
            value = fused / base if fused and base else None
            add(f"leaky fused / {label}", value, "<=", limit)
    for r in results:
        if (r["B"], r["H"]) == PEAK_CONFIG and "auto" in r["impls"]:
            name = f"{r['cell']} T={r['T']} B={r['B']} H={r['H']} auto % of peak"
            add(name, r["impls"]["auto"].get("pct_peak"), ">=", PEAK_TARGET)
    return out


# -------------------------------------------------------------------------- output


def _num(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:.0f}"


def results_table(results: list[dict], cuda: bool) -> str:
    """Markdown: one row per configuration and implementation."""
    head = ["config", "impl", "ms", "ratio", "GFLOP/s", "% of peak", "saved MB"]
    head += ["max alloc MB"] if cuda else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        config = f"{r['cell']} T={r['T']} B={r['B']} I={r['I']} H={r['H']}"
        for row in r["impls"].values():
            if not row["supported"]:
                cells = [config, row["label"]] + ["n/a"] * (len(head) - 2)
            else:
                cells = [
                    config,
                    row["label"],
                    _num(row["median_s"] * 1e3),
                    "n/a" if row["ratio"] is None else f"{row['ratio']:.2f}",
                    _num(row["gflops"]),
                    _num(row["pct_peak"], 2),
                    _num(row["saved_bytes"] / MB),
                ]
                if cuda:
                    cells.append(_num(row["cuda_max_allocated_bytes"] / MB))
            lines.append("| " + " | ".join(cells) + " |")
        peak = r["peak"]
        label = f"peak matmul ({peak['size']}², {peak['via']})"
        cells = [config, label, _num(peak["median_s"] * 1e3), "",
                 _num(peak["gflops"]), "100", ""] + [""] * cuda  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets_table(goals: list[dict]) -> str:
    lines = ["| target | value | goal | status |", "|---|---|---|---|"]
    for g in goals:
        status = "n/a" if g["met"] is None else ("met" if g["met"] else "not met")
        value = "n/a" if g["value"] is None else f"{g['value']:.3g}"
        lines.append(f"| {g['target']} | {value} | {g['op']} {g['limit']} | {status} |")
    return "\n".join(lines)


def progress(i: int, n: int, result: dict) -> None:
    """One line per configuration on stderr."""
    times = ", ".join(
        f"{name} {row['median_s'] * 1e3:.3g} ms" if row["supported"] else f"{name} n/a"
        for name, row in result["impls"].items()
    )
    config = f"{result['cell']} T={result['T']} B={result['B']} H={result['H']}"
    peak = f"peak {result['peak']['gflops']:.1f} GFLOP/s"
    print(f"[{i}/{n}] {config}: {times}; {peak}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------- entry points


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options shared by ``benchmarks/speed.py`` and ``rnnkit bench speed``."""
    g = p.add_argument_group("what to run")
    g.add_argument("--grid", default="target", help="target (T=100 B=32 H=256) | full")
    g.add_argument("--T", type=int, nargs="+", metavar="N", help="sequence lengths")
    g.add_argument("--B", type=int, nargs="+", metavar="N", help="batch sizes")
    g.add_argument("--H", type=int, nargs="+", metavar="N", help="hidden sizes")
    g.add_argument("--I", type=int, default=INPUT_SIZE, help=f"input size ({INPUT_SIZE})")
    g.add_argument("--cells", nargs="+", default=list(CELLS), help=f"of {', '.join(CELLS)}")
    g.add_argument(
        "--engines",
        nargs="+",
        default=list(DEFAULT_IMPLS),
        metavar="IMPL",
        help=f"of {', '.join(IMPLS)} (default: all but native)",
    )
    g.add_argument("--dtype", default="float32", help="float32 | float64")
    g.add_argument("--device", default="cpu", help="cpu | cuda")
    g = p.add_argument_group("measurement")
    g.add_argument("--repeats", type=int, default=7, help="timed repeats, median shown (7)")
    g.add_argument("--min-time", type=float, default=0.01, help="least seconds per repeat (0.01)")
    g.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    g.add_argument("--peak-size", type=int, default=2048, help="peak matmul size (2048)")
    g.add_argument(
        "--cold-build",
        action="store_true",
        help="time a full compile of the fused kernels in a fresh cache (subprocess)",
    )
    p.add_argument("--out", default="benchmarks/results/speed.json", help="JSON results file")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchmarks/speed.py", description=__doc__.splitlines()[0])
    add_arguments(p)
    return p


def _choices(option: str, values, allowed) -> list[str]:
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ValueError(f"{option} {bad[0]!r} is not known; expected one of {', '.join(allowed)}")
    return list(dict.fromkeys(values))


def check_args(args) -> None:
    """Raise a one-line ValueError for any bad option, before anything is measured."""
    _choices("--grid", [args.grid], tuple(GRIDS))
    args.cells = _choices("--cells", args.cells, CELLS)
    engines = [{"cell loop": "cell-loop", "cell_loop": "cell-loop"}.get(e, e) for e in args.engines]
    args.engines = _choices("--engines", engines, IMPLS)
    _choices("--dtype", [args.dtype], ("float32", "float64"))
    _choices("--device", [args.device], ("cpu", "cuda"))
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device cuda: no CUDA device is available to torch {torch.__version__}")
    for option in ("T", "B", "H"):
        for n in getattr(args, option) or ():
            if n < 1:
                raise ValueError(f"--{option} sizes must be positive integers, got {n}")
    for option, n in (("--I", args.I), ("--repeats", args.repeats)):
        if n < 1:
            raise ValueError(f"{option} must be a positive integer, got {n}")
    if args.peak_size < 1 or (args.threads is not None and args.threads < 1):
        raise ValueError("--peak-size and --threads must be positive integers")
    if not args.min_time >= 0:
        raise ValueError(f"--min-time must be 0 or more seconds, got {args.min_time}")
    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a directory; give a file path")
    parent = next((p for p in out.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ValueError(f"--out {out}: {parent} is a file, not a directory")
    out.parent.mkdir(parents=True, exist_ok=True)  # fails now, not after a long run


def run(args) -> int:
    """Measure, print the tables, write the JSON; 0 on success."""
    check_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    configs = grid(args)
    build = None
    if {"fused", "auto"} & set(args.engines):
        build = fused_build_cost(args.cold_build)  # the engine loads it itself after
    matmul = Matmul(args.peak_size, device, dtype)
    peak = matmul.summary(time_interleaved({PEAK: matmul.seconds}, args.repeats, 0)[0][PEAK])
    print(f"peak: {peak['gflops']:.1f} GFLOP/s ({args.peak_size}² {args.dtype} {matmul.via})",
          file=sys.stderr)  # fmt: skip
    results = []

    def report(complete: bool) -> dict:
        return {
            "benchmark": "speed",
            "complete": complete,
            "settings": {
                "grid": args.grid,
                "cells": args.cells,
                "impls": args.engines,
                "dtype": args.dtype,
                "device": args.device,
                "repeats": args.repeats,
                "warmup_steps": WARMUP_STEPS,
                "min_time_s": args.min_time,
                "loss": "y.sum()",
                "input_requires_grad": True,
            },
            "flop_model": "step = 3 * forward; forward = 2*T*B*G*(I+R), G = gate rows, R = H",
            "machine": machine_info(device),
            "peak": peak,
            "fused_build": build,
            "results": results,
            "targets": targets(results),
        }

    for i, config in enumerate(configs, 1):
        result = measure_config(
            config, args.engines, device, dtype, args.repeats, args.min_time, matmul
        )
        results.append(result)
        progress(i, len(configs), result)
        gc.collect()  # the models and graphs of this configuration, before the next
        if i < len(configs):  # a long grid keeps what it has measured if stopped
            atomic_write_text(args.out, json.dumps(report(False), indent=2) + "\n")
    goals = targets(results)

    threads = torch.get_num_threads()
    print(
        f"training step (forward + backward of y.sum()), {args.dtype} on {args.device}, "
        f"{threads} thread{'s' * (threads > 1)}, median of {args.repeats}; "
        f"ratio to torch.nn (or its reference); % of the peak matmul timed in the same "
        f"rounds ({peak['gflops']:.1f} GFLOP/s at the start)\n"
    )
    print(results_table(results, device.type == "cuda"))
    if goals:
        print("\ntargets\n")
        print(targets_table(goals))
    if build is not None:
        secs = build.get("seconds")
        print(
            f"\nfused kernels, {build['mode']}: "
            + (f"{secs:.2f} s" if secs is not None else "n/a")
            + (f" (failed: {build['error']})" if build.get("error") else "")
        )
    atomic_write_text(args.out, json.dumps(report(True), indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


def main(argv=None) -> int:
    """``python benchmarks/speed.py``: the same errors as the CLI, one line, exit 2."""
    from rnnkit.cli.errors import run_script

    return run_script(run, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

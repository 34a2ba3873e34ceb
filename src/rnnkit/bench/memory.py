"""Long-term dependency benchmark: which cells learn the adding, copy and digits tasks.

For every (task, length ``T``, cell, clip) a :class:`~rnnkit.bench.memory_model.MemoryNet`
(one recurrent layer of ``rnnkit.models.builder.build_stack``, a linear read-out) trains
with Adam or RMSprop at a constant learning rate on fresh batches from a seeded
generator (the same stream for every cell at one task and length; digits: random
minibatches of the training split). Gradients are clipped to global norm ``clip``
(``none``: not clipped). Every ``eval_every`` steps the model is scored on a fixed
test set per task and length (``test_size`` sequences; digits: its test split), which
gives the learning curve; "solved at" is the first evaluation past the task's threshold
(see :mod:`rnnkit.bench.memory_tasks`). A run stops after ``steps`` steps, after
``time_budget`` seconds, or when its loss is no longer finite ("diverged").

The plain loop (no checkpoints) keeps a grid of short runs light; the trainer's
``FitTrainer`` is for runs worth resuming.

Writes ``OUT/memory.json`` (rewritten after each run, ``"complete": false`` until the
last) and ``OUT/memory_<task>_T<T>.png`` (test metric against step per cell and clip,
the baseline dashed, the threshold dotted; log scale for MSE and cross-entropy).

    rnnkit bench memory --quick --out runs/memory-quick          # ~15 s on 2 cores
    rnnkit bench memory --out runs/memory       # full grid: 90 runs of <= 60 s, 55 min
    rnnkit bench memory --tasks adding --lengths 200 --cells lstm,irnn,rnn --steps 4000
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from rnnkit.atomic import atomic_write_bytes, atomic_write_text
from rnnkit.bench.memory_model import MemoryNet, MemoryNetConfig
from rnnkit.bench.memory_tasks import TASKS, Task, make_task
from rnnkit.diagnostics import gradient_flow
from rnnkit.models.builder import CELL_KINDS
from rnnkit.settings import JSONSettings

CELLS = tuple(CELL_KINDS)  # rnn (tanh), irnn, lstm, gru, leaky
DEFAULT_LENGTHS = (50, 100, 200, 400)
OPTIMIZERS = ("adam", "rmsprop")
# Adam learning rates per cell; the ReLU IRNN blows up at rates the gated cells like.
DEFAULT_LR = {"lstm": 1e-2, "gru": 1e-2, "rnn": 1e-3, "irnn": 3e-4, "leaky": 3e-3}
QUICK = {
    "tasks": ("adding",),
    "lengths": (50,),
    "cells": ("rnn", "irnn", "lstm"),
    "clips": (1.0,),
    "steps": 1000,
    "eval_every": 50,
    "hidden_size": 32,
    "batch_size": 64,
    "test_size": 500,
    "time_budget": None,  # 1000 steps of these sizes take a few seconds
}
# The full grid's runs stop at ``steps`` or after this many seconds, whichever comes
# first, which bounds the whole grid: 90 runs took 55 minutes on 2 cores.
FULL_RUN_SECONDS = 60.0
EVAL_CHUNK = 1000  # test sequences per forward pass


@dataclass
class MemorySettings(JSONSettings):
    """One benchmark grid: every task × length × cell × clip, each trained the same way."""

    settings_kind = "bench memory"

    tasks: tuple = ("adding", "copy", "digits")
    lengths: tuple = DEFAULT_LENGTHS
    cells: tuple = CELLS
    clips: tuple = (1.0, None)  # global gradient-norm clip; None: no clipping
    steps: int = 3000
    time_budget: float | None = FULL_RUN_SECONDS  # seconds per run; None: no limit
    eval_every: int = 100
    hidden_size: int = 64
    batch_size: int = 32
    lr: float | None = None  # None: DEFAULT_LR of the cell
    optimizer: str = "adam"
    test_size: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        self.tasks, self.cells = tuple(self.tasks), tuple(self.cells)
        self.lengths, self.clips = tuple(self.lengths), tuple(self.clips)
        for name, values, known in (("task", self.tasks, TASKS), ("cell", self.cells, CELLS)):
            if not values:
                raise ValueError(f"give at least one {name}; choose from {', '.join(known)}")
            for v in values:
                if v not in known:
                    raise ValueError(f"unknown {name} {v!r}; choose from {', '.join(known)}")
        if not self.lengths:
            raise ValueError("give at least one length, e.g. --lengths 50,100")
        for T in self.lengths:
            if not isinstance(T, int) or isinstance(T, bool) or T < 2:
                raise ValueError(f"lengths must be integers >= 2, got {T!r}")
        for c in self.clips:
            if c is not None and not (isinstance(c, int | float) and c > 0):
                raise ValueError(f"clip norms must be positive numbers or none, got {c!r}")
        for name in ("steps", "eval_every", "hidden_size", "batch_size", "test_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.time_budget is not None and not self.time_budget > 0:
            raise ValueError(f"time_budget must be positive seconds, got {self.time_budget!r}")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {self.optimizer!r}; choose from {', '.join(OPTIMIZERS)}"
            )

    def lr_of(self, cell: str) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[cell]

    def runs(self) -> list[tuple[str, int, str, float | None]]:
        """(task, T, cell, clip) in the order they run; digits has one length (64)."""
        out = []
        for task in self.tasks:
            fixed = make_task(task).fixed_length if task == "digits" else None
            for T in (fixed,) if fixed else self.lengths:
                out += [(task, T, cell, clip) for cell in self.cells for clip in self.clips]
        return out


@dataclass
class RunResult:
    """One trained model: its learning curve and where it got."""

    task: str
    T: int
    cell: str
    clip: float | None
    lr: float
    metric: str
    baseline: float
    threshold: float
    steps: int = 0  # optimizer steps taken
    seconds: float = 0.0  # training and evaluation
    final: float = math.nan  # test metric at the last step
    solved_at: int | None = None  # first evaluated step past the threshold
    stop: str = "steps"  # steps | time_budget | diverged
    curve: list = field(default_factory=list)  # [step, test metric] pairs
    # The trained model's ‖∂L_T/∂h_k‖ on test sequences (tasks scored at the last step):
    grad_rate: float = math.nan  # fitted change per step back in time
    grad_verdict: str = ""  # vanishing | healthy | exploding over the whole sequence


def _seed(*parts: int) -> int:
    return sum(p * 1_000_003**i for i, p in enumerate(parts)) % 2**62


@torch.no_grad()
def evaluate(model: MemoryNet, task: Task, x, y) -> float:
    """The task's metric over the whole test set, in chunks (per-example mean)."""
    model.eval()
    total, n = 0.0, y.shape[-1] if task.per_step else len(y)
    for i in range(0, n, EVAL_CHUNK):
        if task.per_step:  # (T, N, ...) targets: the examples are on dim 1
            xb, yb = x[:, i : i + EVAL_CHUNK], y[:, i : i + EVAL_CHUNK]
            k = yb.shape[1]
        else:
            xb, yb = x[:, i : i + EVAL_CHUNK], y[i : i + EVAL_CHUNK]
            k = len(yb)
        total += task.score(model(xb), yb) * k
    model.train()
    return total / n


def train_run(
    settings: MemorySettings, task: Task, T: int, cell: str, clip: float | None, test
) -> RunResult:
    """Train one model of ``cell`` on ``task`` at length ``T``; score on ``test``."""
    lr = settings.lr_of(cell)
    res = RunResult(task.name, T, cell, clip, lr, task.metric, task.baseline(T), task.threshold(T))
    task_id = list(TASKS).index(task.name)
    torch.manual_seed(_seed(settings.seed, task_id, T, CELLS.index(cell)))
    config = MemoryNetConfig(
        cell=cell,
        input_size=task.input_size,
        hidden_size=settings.hidden_size,
        output_size=task.output_size,
        per_step=task.per_step,
    )
    model = MemoryNet(config)
    opt_class = torch.optim.Adam if settings.optimizer == "adam" else torch.optim.RMSprop
    optimizer = opt_class(model.parameters(), lr=lr)
    data = torch.Generator().manual_seed(_seed(settings.seed, task_id, T, 1))  # same per cell
    start = time.perf_counter()

    def record(step: int) -> float:
        value = evaluate(model, task, *test)
        res.curve.append([step, value])
        if res.solved_at is None and task.solved(value, T):
            res.solved_at = step
        return value

    record(0)
    for step in range(1, settings.steps + 1):
        x, y = task.train_batch(settings.batch_size, T, data)
        loss = task.loss(model(x), y)
        if not torch.isfinite(loss):
            res.stop = "diverged"
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        res.steps = step
        over = settings.time_budget is not None and time.perf_counter() - start >= (
            settings.time_budget
        )
        if over or step % settings.eval_every == 0 or step == settings.steps:
            res.final = record(step)
        if over and step < settings.steps:
            res.stop = "time_budget"
            break
    if res.stop == "diverged":
        res.final = math.nan
        res.curve.append([res.steps, math.nan])
    res.seconds = time.perf_counter() - start
    if not task.per_step and res.stop != "diverged":
        res.grad_rate, res.grad_verdict = trained_gradient_flow(model, task, *test)
    return res


GRAD_SEQUENCES = 8  # test sequences the trained model's gradient flow is measured on


def trained_gradient_flow(model: MemoryNet, task: Task, x, y) -> tuple[float, str]:
    """How ``‖∂L_T/∂h_k‖`` of the task's loss at the last step changes per step back.

    Measured with :func:`rnnkit.diagnostics.gradient_flow` on the first test sequences:
    the trained model's long-lag gradient, which vanishes for a tanh RNN and not for a
    cell that has learnt to carry the information.
    """
    head = copy.deepcopy(model.head).double()
    xb, yb = x[:, :GRAD_SEQUENCES], y[:GRAD_SEQUENCES]
    yb = yb.double() if yb.is_floating_point() else yb
    last = xb.shape[0] - 1

    def loss(outputs, targets, t):  # outputs (B, H); only the last step is scored
        return task.loss(head(outputs), yb) if t == last else outputs.sum() * 0.0

    flow = gradient_flow(model.stack, xb, loss=loss, pairs="last")
    return flow.fit.rate, flow.verdict


# ------------------------------------------------------------------ reporting

HEADER = (
    "| task | T | cell | clip | metric | final | baseline | final/baseline | solved at | s "
    "| ∂L_T/∂h_k per step back |",
    "|---|---:|---|---:|---|---:|---:|---:|---:|---:|---|",
)


def table_row(r: RunResult) -> str:
    clip = "none" if r.clip is None else f"{r.clip:g}"
    ratio = r.final / r.baseline if r.baseline else math.nan
    solved = "—" if r.solved_at is None else str(r.solved_at)
    final = f"{r.final:.4g}" + (" (diverged)" if r.stop == "diverged" else "")
    return (
        f"| {r.task} | {r.T} | {r.cell} | {clip} | {r.metric} | {final} | {r.baseline:.4g} "
        f"| {ratio:.3f} | {solved} | {r.seconds:.1f} | {_grad(r)} |"
    )


def _grad(r: RunResult) -> str:
    return "—" if not math.isfinite(r.grad_rate) else f"×{r.grad_rate:.3f} ({r.grad_verdict})"


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None  # NaN (diverged) as null: strict JSON
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def report(settings: MemorySettings, results: list[RunResult], complete: bool) -> dict:
    return _json_safe(
        {
            "benchmark": "memory",
            "complete": complete,
            "settings": settings.to_dict(),
            "lr_by_cell": {c: settings.lr_of(c) for c in settings.cells},
            "machine": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "platform": platform.platform(),
                "threads": torch.get_num_threads(),
            },
            "runs": [asdict(r) for r in results],
        }
    )


def plot_curves(results: list[RunResult], path: Path) -> None:
    """Test metric against step of every run of one task and length, as a PNG."""
    # Figure + the Agg canvas directly: pyplot would switch the whole process's backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    first = results[0]
    fig = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for r in results:
        points = [(s, v) for s, v in r.curve if math.isfinite(v) and (v > 0 or r.metric != "mse")]
        if points:
            clip = "none" if r.clip is None else f"{r.clip:g}"
            ax.plot(*zip(*points, strict=True), label=f"{r.cell}, clip {clip}", linewidth=1.2)
    ax.axhline(first.baseline, color="k", linestyle="--", linewidth=1, label="baseline")
    ax.axhline(first.threshold, color="gray", linestyle=":", linewidth=1, label="solved")
    if first.metric in ("mse", "ce"):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(f"test {first.metric}")
    ax.set_title(f"{first.task}, T = {first.T}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())


def run_suite(settings: MemorySettings, out: str | Path, echo=print) -> list[RunResult]:
    """Run the grid; print a table row per run; write memory.json and the PNGs into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results: list[RunResult] = []
    tasks: dict[str, Task] = {}
    tests: dict[tuple[str, int], tuple] = {}
    echo(HEADER[0])
    echo(HEADER[1])
    runs = settings.runs()
    for i, (name, T, cell, clip) in enumerate(runs, 1):
        task = tasks.setdefault(name, make_task(name))
        if (name, T) not in tests:
            tests[(name, T)] = task.test_set(T, settings.test_size, _seed(settings.seed, T, 7))
        result = train_run(settings, task, T, cell, clip, tests[(name, T)])
        results.append(result)
        echo(table_row(result))
        group = [r for r in results if (r.task, r.T) == (name, T)]
        plot_curves(group, out / f"memory_{name}_T{T}.png")
        text = json.dumps(report(settings, results, i == len(runs)), indent=2) + "\n"
        atomic_write_text(out / "memory.json", text)
    return results


# ------------------------------------------------------------------ command line


def _list(kind):
    """argparse type: a comma-separated list of ``kind``."""

    def parse(text: str):
        items = [t.strip() for t in text.split(",") if t.strip()]
        try:
            return [kind(t) for t in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a list of {kind.__name__}: {text!r}") from None

    return parse


def _clip(text: str) -> float | None:
    return None if text.lower() in ("none", "off", "0") else float(text)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options shared by ``benchmarks/memory.py`` and ``rnnkit bench memory``."""
    g = p.add_argument_group("what to run")
    g.add_argument(
        "--quick",
        action="store_true",
        help="adding at T=50 for rnn, irnn, lstm, clip 1, 1000 steps, hidden 32, batch 64 (~15 s)",
    )
    g.add_argument("--tasks", type=_list(str), help=f"comma list of {', '.join(TASKS)}")
    g.add_argument("--cells", type=_list(str), help=f"comma list of {', '.join(CELLS)}")
    g.add_argument(
        "--lengths", type=_list(int), help="comma list of T (50,100,200,400; digits: 64)"
    )
    g.add_argument("--clips", type=_list(_clip), help="comma list of clip norms or none (1,none)")
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=int, help="optimizer steps per run (3000)")
    g.add_argument("--time-budget", type=float, help="seconds per run (60; quick: none)")
    g.add_argument("--eval-every", type=int, help="steps between test evaluations (100)")
    g.add_argument("--hidden", type=int, help="hidden units (64)")
    g.add_argument("--batch", type=int, help="batch size (32)")
    g.add_argument("--lr", type=float, help="learning rate for every cell (default per cell)")
    g.add_argument("--optimizer", help="adam | rmsprop (adam)")
    g.add_argument("--test-size", type=int, help="test sequences per task and length (1000)")
    g.add_argument("--seed", type=int, help="seed of data and weights (0)")
    g.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: these small products gain nothing from more, and lose a lot "
        "on a busy machine)",
    )
    p.add_argument("--out", default="runs/memory", help="output folder (runs/memory)")


def settings_from_args(args) -> MemorySettings:
    """Quick or full defaults, overridden by the flags given."""
    base = dict(QUICK) if args.quick else {}
    given = {
        "tasks": args.tasks,
        "cells": args.cells,
        "lengths": args.lengths,
        "clips": args.clips,
        "steps": args.steps,
        "time_budget": args.time_budget,
        "eval_every": args.eval_every,
        "hidden_size": args.hidden,
        "batch_size": args.batch,
        "lr": args.lr,
        "optimizer": args.optimizer,
        "test_size": args.test_size,
        "seed": args.seed,
    }
    base.update({k: v for k, v in given.items() if v is not None})
    return MemorySettings(**base)


def run(args) -> int:
    """Train the grid, print the table, write the JSON and PNGs; 0 on success."""
    settings = settings_from_args(args)
    if args.threads < 1:
        raise ValueError(f"--threads must be a positive integer, got {args.threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    try:
        results = run_suite(settings, args.out, echo=lambda s: print(s, flush=True))
    finally:
        torch.set_num_threads(before)
    solved = sum(r.solved_at is not None for r in results)
    print(
        f"\n{len(results)} runs, {solved} solved, {time.perf_counter() - start:.1f} s; "
        f"wrote {Path(args.out) / 'memory.json'} and the learning curves",
        file=sys.stderr,
    )
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    try:
        return run(p.parse_args(argv))
    except ValueError as err:
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2

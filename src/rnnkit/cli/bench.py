"""``rnnkit bench``: the speed benchmark (:mod:`rnnkit.bench.speed`) and the long-term
dependency benchmark (:mod:`rnnkit.bench.memory`)."""

from __future__ import annotations

import importlib

# name -> (help, what the description adds to the module's first docstring line)
BENCHMARKS = {
    "speed": (
        "time a training step of every cell: torch.nn, cell loop, rnnkit engines",
        " Prints Markdown tables and writes every measurement as JSON.",
    ),
    "memory": (
        "long-term dependencies: adding, copy and digits tasks for every cell",
        " Prints a Markdown table as it goes; writes memory.json and learning-curve PNGs.",
    ),
}


def add_bench_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks: speed, memory")
    bench_sub = p.add_subparsers(dest="bench_command", required=True, metavar="{speed,memory}")
    for name, (help_text, tail) in BENCHMARKS.items():
        # Each module exposes add_arguments(parser) and run(args).
        module = importlib.import_module(f"rnnkit.bench.{name}")
        q = bench_sub.add_parser(
            name, help=help_text, description=module.__doc__.splitlines()[0] + tail
        )
        module.add_arguments(q)
        q.set_defaults(run=module.run)

"""``rnnkit bench speed``: the training-step speed benchmark (see :mod:`rnnkit.bench.speed`)."""

from __future__ import annotations


def add_bench_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks: speed")
    bench_sub = p.add_subparsers(dest="bench_command", required=True, metavar="{speed}")
    add_speed_parser(bench_sub)


def add_speed_parser(sub) -> None:
    from rnnkit.bench import speed

    p = sub.add_parser(
        "speed",
        help="time a training step of every cell: torch.nn, cell loop, rnnkit engines",
        description=speed.__doc__.splitlines()[0]
        + " Prints Markdown tables and writes every measurement as JSON.",
    )
    speed.add_arguments(p)
    p.set_defaults(run=speed.run)

"""``rnnkit <job>``: the command-line entry point."""

from __future__ import annotations

import argparse
import os
import sys

from rnnkit import __version__
from rnnkit.cli.bench import add_bench_parser
from rnnkit.cli.classify import add_classify_parser
from rnnkit.cli.diagnose import add_diagnose_parser
from rnnkit.cli.errors import fail, fail_on
from rnnkit.cli.esn import add_esn_parser
from rnnkit.cli.export import add_export_parser
from rnnkit.cli.forecast import add_forecast_parser
from rnnkit.cli.lm import add_lm_parser, add_sample_parser
from rnnkit.cli.seq2seq import add_seq2seq_parser
from rnnkit.cli.serve import add_serve_parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnnkit", description="Recurrent neural networks: train, sample, evaluate."
    )
    parser.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    sub = parser.add_subparsers(
        dest="command",
        required=True,
        metavar="{lm,sample,classify,forecast,esn,diagnose,bench,export}",
    )
    add_lm_parser(sub)
    add_sample_parser(sub)
    add_classify_parser(sub)
    add_forecast_parser(sub)
    add_seq2seq_parser(sub)
    add_esn_parser(sub)
    add_diagnose_parser(sub)
    add_bench_parser(sub)
    add_export_parser(sub)
    add_serve_parser(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ValueError as err:  # every mistake a user can make is a ValueError
        return fail_on(err)
    except BrokenPipeError:  # the reader went away (`| head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        return 0
    except FileNotFoundError as err:
        return fail(f"no such file: {err.filename}")
    except PermissionError as err:
        return fail(f"permission denied: {err.filename}")
    except OSError as err:  # a full disk, a file where a directory should be, ...
        where = f": {err.filename}" if err.filename else ""
        return fail(f"{err.strerror or err}{where}")
    except KeyboardInterrupt:
        print("rnnkit: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    sys.exit(main())

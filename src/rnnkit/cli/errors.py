"""How the command line reports mistakes: one line on stderr, exit code 2."""

from __future__ import annotations

import sys

USAGE_ERROR = 2


class UsageError(ValueError):
    """A mistake the user can fix (bad file, bad option, missing run)."""


def fail(message: str) -> int:
    print(f"rnnkit: error: {message}", file=sys.stderr)
    return USAGE_ERROR


def fail_on(err: ValueError) -> int:
    """``fail`` with the first line of ``err`` (its type's name when it has no message)."""
    return fail(str(err).splitlines()[0] if str(err) else type(err).__name__)


def run_script(run, args) -> int:
    """``run(args)`` for a benchmark script, its errors reported as the CLI reports them."""
    try:
        return run(args)
    except ValueError as err:
        return fail_on(err)
    except OSError as err:
        return fail(f"{err.strerror or err}: {err.filename}")

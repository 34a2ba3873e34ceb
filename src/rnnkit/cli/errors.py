"""How the command line reports mistakes: one line on stderr, exit code 2."""

from __future__ import annotations

import sys

USAGE_ERROR = 2


class UsageError(ValueError):
    """A mistake the user can fix (bad file, bad option, missing run)."""


def fail(message: str) -> int:
    print(f"rnnkit: error: {message}", file=sys.stderr)
    return USAGE_ERROR

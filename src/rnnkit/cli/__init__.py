"""The ``rnnkit`` command line."""

from rnnkit.cli.main import main

__all__ = ["main"]

"""The training progress bar: step/total, the trainer's figures (loss, speed), ETA."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class TrainProgress:
    """A ``rich`` progress bar on ``console``; does nothing when ``enabled`` is False.

    ``total`` is None when only a time budget bounds the run (no step count to show).
    """

    def __init__(self, console: Console, *, enabled: bool, total: int | None, done: int) -> None:
        self._progress = None
        if not enabled:
            return
        self._progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
        )
        self._task = self._progress.add_task("train", total=total, completed=done, stats="")

    def __enter__(self) -> TrainProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, step: int, stats: str) -> None:
        """Move the bar to ``step`` and show ``stats`` (e.g. "loss 1.23 · 4,567 tok/s")."""
        if self._progress is None:
            return
        self._progress.update(self._task, completed=step, stats=stats)

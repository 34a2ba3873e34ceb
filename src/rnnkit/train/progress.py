"""The training progress bar: step/total, loss, bits per token, tokens/s, ETA."""

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

    def update(self, step: int, loss: float, bits: float, tokens_per_s: float) -> None:
        if self._progress is None:
            return
        stats = f"loss {loss:.4f} · {bits:.3f} bits/token · {tokens_per_s:,.0f} tok/s"
        self._progress.update(self._task, completed=step, stats=stats)

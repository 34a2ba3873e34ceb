"""The trained run a server holds: read once, at start-up, from a run directory.

The task comes from the checkpoint's ``meta["task"]`` (``lm``, ``classify`` or
``forecast``); each is loaded by its own job's ``load_run``, so a served model is
exactly the one ``rnnkit sample`` / ``classify predict`` / ``forecast predict`` use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from rnnkit.cli.errors import UsageError
from rnnkit.cli.runs import open_trained_run


@dataclass
class ServedRun:
    """A loaded run: the model in eval mode and what its task needs to read requests.

    ``vocab`` is set for language models and text classifiers; ``meta`` is the
    checkpoint's meta (classes, columns, scaler, data settings).
    """

    task: str
    model: nn.Module
    checkpoint: str  # the tag asked for: best | last
    step: int  # optimiser steps behind the served weights
    meta: dict = field(repr=False)
    vocab: object = None

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def load_served_run(run_dir: str | Path, checkpoint: str = "best", device=None) -> ServedRun:
    """Read ``run_dir``'s ``checkpoint`` (``best`` falls back to ``last``) for serving.

    Raises :class:`UsageError` (one line) for a missing directory, a run with no
    checkpoint, or a run of a task the server does not know.
    """
    from rnnkit.cli import classify, forecast, lm

    if checkpoint not in ("best", "last"):
        raise UsageError(f"checkpoint must be 'best' or 'last', got {checkpoint!r}")
    run_dir = Path(run_dir)
    saved, _ = open_trained_run(run_dir, checkpoint, "rnnkit serve")
    task = saved.meta["task"]
    vocab = None
    if task == "lm":
        model, vocab = lm.load_run(run_dir, checkpoint)
    elif task == "classify":
        model, _, vocab = classify.load_run(run_dir, checkpoint)
    else:
        model, _ = forecast.load_run(run_dir, checkpoint)
    if device is not None:
        model.to(torch.device(device))
    model.eval()
    return ServedRun(task, model, checkpoint, saved.step, saved.meta, vocab)

"""Pieces every training loop shares: Ctrl-C handling, display smoothing, finiteness."""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

# Weight of the newest step in the progress bar's moving averages of loss and speed.
DISPLAY_SMOOTHING = 0.1


@contextmanager
def catch_interrupt(is_set: Callable[[], bool], set_flag: Callable[[], None]) -> Iterator[None]:
    """First Ctrl-C: ``set_flag()`` (the loop finishes its step, saves, stops). Second: abort.

    Outside the main thread (where signals cannot be handled) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if is_set():
            raise KeyboardInterrupt
        set_flag()  # only a flag: printing here could tangle the progress bar

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


def smoothed(old: float, new: float) -> float:
    """Exponential moving average that starts at, and skips over, non-finite values."""
    if not math.isfinite(new):
        return old
    if not math.isfinite(old):
        return new
    return (1 - DISPLAY_SMOOTHING) * old + DISPLAY_SMOOTHING * new


def all_finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())

"""Pieces both training loops share: Ctrl-C, display smoothing, time budgets, resuming, logs."""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from rnnkit.train import distributed
from rnnkit.train.checkpoint import load_checkpoint
from rnnkit.train.config import FitConfig
from rnnkit.train.metrics import MetricsLog
from rnnkit.train.optim import scale_base_lr, schedule

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


# Steps timed before a time-budget run fixes the horizon its lr decays over.
BUDGET_CALIBRATION_STEPS = 20


def budget_horizon(
    config: FitConfig, horizon: int | None, steps_done: int, seconds: float, step: int
) -> int | None:
    """The step a time-budget-only run decays towards, once its speed is known; else None.

    Estimated once, after this session's first ``BUDGET_CALIBRATION_STEPS`` steps took
    ``seconds``; runs bounded by steps or epochs keep their exact, step-based schedule.
    """
    if (
        horizon is not None
        or config.time_budget is None
        or config.decay == "none"
        or steps_done != BUDGET_CALIBRATION_STEPS
    ):
        return None
    remaining = max(0.0, config.time_budget - seconds)
    return step + int(remaining / (seconds / steps_done))


def apply_horizon(scheduler: LambdaLR, config: FitConfig, horizon: int) -> None:
    """Make ``scheduler`` decay towards ``horizon`` from now on."""
    scheduler.lr_lambdas = [schedule(config, horizon)] * len(scheduler.lr_lambdas)
    scale_base_lr(scheduler, 1.0)


def load_for_resume(
    run_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LambdaLR,
    config: FitConfig,
    horizon: int | None,
    restore: Callable[[dict], None],
) -> tuple[int, dict | None, int | None]:
    """Load ``run_dir``'s last checkpoint into the model, optimizer and scheduler.

    ``restore(extra)`` rebuilds the trainer's own progress from the checkpoint's
    ``extra`` (a KeyError or TypeError there means the checkpoint cannot be resumed).
    The schedule follows this run's ``config`` at the saved step, towards ``horizon``
    or, for a time-budget run, the horizon it calibrated (not a fresh estimate).
    Returns the saved step, the RNG states (None: this process is to be seeded afresh,
    see :func:`rnnkit.train.distributed.resumed_rng`) and the horizon.
    """
    ckpt = load_checkpoint(run_dir, "last")
    saved_optimizer = ckpt.train_config.get("optimizer")
    if saved_optimizer != config.optimizer:
        raise ValueError(
            f"{run_dir} was trained with optimizer {saved_optimizer!r}; resume it "
            f"with optimizer {saved_optimizer!r} or start a new run directory"
        )
    ckpt.load_into(model)
    trainer = ckpt.trainer_state
    try:
        optimizer.load_state_dict(trainer["optimizer"])
        if trainer["scheduler"] is not None:
            scheduler.load_state_dict(trainer["scheduler"])
        extra = dict(trainer["extra"])
        saved_horizon = extra.pop("horizon", None)
        rank_rng = extra.pop("rank_rng", None)  # every process's, from a data-parallel run
        restore(extra)
        step = int(trainer["step"])
        rng = distributed.resumed_rng(trainer["rng"], rank_rng)
    except (KeyError, TypeError) as error:
        raise ValueError(
            f"checkpoint {ckpt.path} lacks trainer state ({error}); it cannot be resumed, "
            f"start a new run directory"
        ) from None
    if horizon is None and saved_horizon is not None:
        horizon = saved_horizon
        apply_horizon(scheduler, config, horizon)
    scale_base_lr(scheduler, 1.0)  # this run's schedule at the saved step
    return step, rng, horizon


class _NoLog:
    """The metrics log of a data-parallel process other than rank 0: writes nothing."""

    def write(self, row: dict) -> None:
        pass

    def close(self) -> None:
        pass


def open_metrics(run_dir: Path, **options) -> MetricsLog | _NoLog:
    """``MetricsLog(run_dir, **options)`` on rank 0 (or a single process); else no log."""
    return MetricsLog(run_dir, **options) if distributed.is_main() else _NoLog()

"""The optimizer and the learning-rate schedule a :class:`TrainConfig` asks for."""

from __future__ import annotations

import math
from functools import partial

import torch
from torch.optim.lr_scheduler import LambdaLR

from rnnkit.train.config import TrainConfig


def build_optimizer(params, config: TrainConfig) -> torch.optim.Optimizer:
    """A ``torch.optim`` optimizer; ``weight_decay`` is L2 except for AdamW (decoupled)."""
    params = list(params)
    lr, wd = config.lr, config.weight_decay
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=wd)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=config.momentum, weight_decay=wd)
    return torch.optim.Adagrad(params, lr=lr, weight_decay=wd)


def lr_factor(
    step: int, *, warmup: int, horizon: int | None, decay: str, min_ratio: float
) -> float:
    """Multiplier of the peak lr at 0-based ``step``: linear warm-up, then decay.

    Warm-up reaches 1 at step ``warmup - 1``; decay runs from there to ``min_ratio`` at
    step ``horizon - 1`` (the last step) and stays there. No horizon: 1 after warm-up.
    """
    if step < warmup:
        return (step + 1) / warmup
    if horizon is None or decay == "none":
        return 1.0
    span = max(1, horizon - 1 - warmup)  # steps from the end of warm-up to the last step
    progress = min(1.0, (step - warmup) / span)
    if decay == "linear":
        return 1.0 - (1.0 - min_ratio) * progress
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, horizon: int | None
) -> LambdaLR:
    """A ``LambdaLR`` stepped once per training step (bad steps included).

    The factor is a ``partial`` of a module function, so ``state_dict()`` stores no
    schedule: a resumed run recomputes it from its own config (e.g. a longer
    ``max_steps``) while the step count and base lr (after backoffs) come from the
    checkpoint.
    """
    return LambdaLR(optimizer, schedule(config, horizon))


def schedule(config: TrainConfig, horizon: int | None):
    """The lr multiplier as a function of the 0-based step."""
    return partial(
        lr_factor,
        warmup=config.warmup_steps,
        horizon=horizon,
        decay=config.decay,
        min_ratio=config.min_lr_ratio,
    )


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The learning rate of the first parameter group (they all share the schedule)."""
    return float(optimizer.param_groups[0]["lr"])


def scale_base_lr(scheduler: LambdaLR, factor: float) -> float:
    """Scale the schedule's base lr by ``factor`` and apply it now; return the new lr.

    ``factor=1`` just re-applies the schedule at the current step (after a resume whose
    horizon may differ from the one the optimizer's saved lr was computed with).
    """
    scheduler.base_lrs = [base * factor for base in scheduler.base_lrs]
    step = scheduler.last_epoch
    for group, base, fn in zip(
        scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True
    ):
        group["lr"] = base * fn(step)
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]
    return current_lr(scheduler.optimizer)

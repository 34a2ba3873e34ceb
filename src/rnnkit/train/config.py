"""Training settings with their defaults, checks and JSON form.

``FitConfig`` for minibatches of examples, ``TrainConfig`` (a ``FitConfig`` plus the
stream settings) for language models trained with truncated BPTT.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rnnkit.settings import JSONSettings

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad")
DECAYS = ("none", "cosine", "linear")


@dataclass
class FitConfig(JSONSettings):
    """How to train a model on minibatches of examples (classification, forecasting, ...).

    Stopping: at least one of ``max_steps``, ``epochs`` and ``time_budget`` must be
    set; training stops at whichever comes first (or earlier, by early stopping).

    Learning-rate schedule: linear warm-up from ``lr / warmup_steps`` to ``lr`` over
    ``warmup_steps`` steps, then ``decay`` down to ``min_lr_ratio × lr`` at the last
    step. The last step is ``max_steps`` or ``epochs × batches per epoch`` (the smaller
    when both are set). With only a ``time_budget`` the trainer times the first steps
    and decays over the number of steps the budget is then expected to hold, so such a
    run's schedule depends on the machine's speed (bound a run by steps or epochs for
    one that repeats exactly).
    """

    settings_kind = "training"

    batch_size: int = 32  # examples per optimizer step
    max_steps: int | None = None  # optimizer steps (a skipped bad step counts as one)
    epochs: int | None = None  # passes over the training data
    time_budget: float | None = None  # seconds of training per call to fit()
    lr: float = 3e-3  # peak learning rate
    optimizer: str = "adam"  # one of OPTIMIZERS
    momentum: float = 0.9  # for sgd and rmsprop
    weight_decay: float = 0.0  # L2 penalty (decoupled for adamw)
    warmup_steps: int = 0
    decay: str = "cosine"  # one of DECAYS
    min_lr_ratio: float = 0.1  # final lr / peak lr for cosine and linear decay
    clip_norm: float | None = 5.0  # clip the global gradient norm; None: off
    clip_value: float | None = None  # clip every gradient entry to ±clip_value; None: off
    eval_every: int | None = None  # steps between validation passes; None: once per epoch
    patience: int | None = None  # stop after this many evaluations without improvement
    seed: int = 0
    log_every: int = 10  # steps per row of metrics.csv
    nan_patience: int = 3  # consecutive bad steps before rolling back
    lr_backoff: float = 0.5  # lr multiplier applied at each rollback
    runaway_factor: float = 10.0  # a loss above factor × the running mean is bad
    checkpoint_every: int | None = None  # steps between "last" checkpoints; None: eval_every

    def __post_init__(self) -> None:
        for name in ("batch_size", "log_every", "nan_patience"):
            _check_int(name, getattr(self, name), low=1)
        for name in ("max_steps", "epochs", "eval_every", "patience", "checkpoint_every"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), low=1)
        _check_int("warmup_steps", self.warmup_steps, low=0)
        _check_int("seed", self.seed, low=0)
        if self.time_budget is not None:
            _check_number("time_budget", self.time_budget, "a positive number of seconds")
        if self.max_steps is None and self.epochs is None and self.time_budget is None:
            raise ValueError("set at least one stopping rule: max_steps, epochs or time_budget")
        _check_number("lr", self.lr, "a positive number")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}"
            )
        if self.decay not in DECAYS:
            raise ValueError(f"unknown decay {self.decay!r}; choose one of {', '.join(DECAYS)}")
        _check_fraction("momentum", self.momentum, upper_open=True)
        _check_number("weight_decay", self.weight_decay, "a number >= 0", allow_zero=True)
        _check_fraction("min_lr_ratio", self.min_lr_ratio, upper_open=False)
        for name in ("clip_norm", "clip_value"):
            if getattr(self, name) is not None:
                _check_number(name, getattr(self, name), "a positive number or None (off)")
        _check_number("lr_backoff", self.lr_backoff, "a number in (0, 1]")
        if self.lr_backoff > 1:
            raise ValueError(f"lr_backoff must be a number in (0, 1], got {self.lr_backoff!r}")
        _check_number("runaway_factor", self.runaway_factor, "a number > 1")
        if self.runaway_factor <= 1:
            raise ValueError(f"runaway_factor must be a number > 1, got {self.runaway_factor!r}")

    def horizon(self, steps_per_epoch: int) -> int | None:
        """The last step the schedule decays towards, or None when only time bounds the run."""
        ends = [self.max_steps] if self.max_steps is not None else []
        if self.epochs is not None:
            ends.append(self.epochs * steps_per_epoch)
        return min(ends) if ends else None


@dataclass
class TrainConfig(FitConfig):
    """How to train a language model on a token stream with truncated BPTT.

    Everything :class:`FitConfig` holds, where a step is one chunk of ``batch_size``
    parallel streams × ``seq_len`` tokens and an epoch one pass over the stream.
    """

    batch_size: int = 32  # parallel streams B (more updates per second than 64 on a CPU)
    seq_len: int = 128  # TBPTT length k: the carried state is detached every k tokens
    eval_every: int = 200  # steps between validation passes
    eval_chunks: int | None = None  # validation chunks per pass; None: the whole stream
    carry_state: bool = True  # False: every chunk starts from zeros

    def __post_init__(self) -> None:
        _check_int("seq_len", self.seq_len, low=1)
        _check_int("eval_every", self.eval_every, low=1)
        if self.eval_chunks is not None:
            _check_int("eval_chunks", self.eval_chunks, low=1)
        super().__post_init__()
        if not isinstance(self.carry_state, bool):
            raise ValueError(f"carry_state must be true or false, got {self.carry_state!r}")

    @property
    def checkpoint_interval(self) -> int:
        """Steps between "last" checkpoints (``checkpoint_every``, else ``eval_every``)."""
        return self.checkpoint_every or self.eval_every


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_int(name: str, value, *, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        what = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ValueError(f"{name} must be {what}, got {value!r}")


def _check_number(name: str, value, what: str, *, allow_zero: bool = False) -> None:
    if not _is_number(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {what}, got {value!r}")


def _check_fraction(name: str, value, *, upper_open: bool) -> None:
    ok = _is_number(value) and value >= 0 and (value < 1 if upper_open else value <= 1)
    if not ok:
        interval = "[0, 1)" if upper_open else "[0, 1]"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")

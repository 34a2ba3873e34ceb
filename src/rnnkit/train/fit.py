"""``FitTrainer``: minibatch training of a model on examples, with checkpoints and logs.

The loop the sequence jobs share (classification, forecasting): a task supplies the
loss of a batch and, optionally, validation metrics; the trainer does the rest
(optimizer and schedule, clipping, bad-step guard, evaluation, early stopping, best
and last checkpoints, exact resume, progress bar, ``metrics.csv``, ``loss.png``).
"""

from __future__ import annotations

import functools
import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from rich.console import Console
from torch import Tensor, nn

from rnnkit.atomic import atomic_write_text
from rnnkit.train import distributed
from rnnkit.train.batches import Batches
from rnnkit.train.checkpoint import save_checkpoint
from rnnkit.train.config import FitConfig
from rnnkit.train.guard import Snapshot
from rnnkit.train.loop import (
    all_finite,
    apply_horizon,
    budget_horizon,
    catch_interrupt,
    load_for_resume,
    open_metrics,
    smoothed,
)
from rnnkit.train.metrics import MetricsLog
from rnnkit.train.monitors import gate_saturation, group_grad_norms, total_grad_norm
from rnnkit.train.optim import build_optimizer, build_scheduler, current_lr, scale_base_lr
from rnnkit.train.plot import plot_losses
from rnnkit.train.progress import TrainProgress
from rnnkit.train.rng import restore_rng, seed_everything

COLUMNS = (
    "step",  # optimizer steps done (bad ones included)
    "epoch",  # passes over the training examples, fractional
    "loss",  # mean training loss since the previous row (good steps only)
    "grad_norm",  # mean global gradient norm before clipping, same steps
    "lr",  # learning rate of the row's last step
    "examples_per_s",  # training throughput since the previous row
    "val_loss",  # validation loss, on evaluation rows only
    "elapsed",  # seconds of training, summed over resumed sessions
    "bad_steps",  # bad (skipped) steps so far
)  # then one "val_<name>" column per validation metric, and the monitors:
# "grad_norm_clipped" (mean norm of the gradients applied, after clipping),
# "grad_norm/<group>" (mean pre-clip norm per parameter group, see rnnkit.train.monitors),
# "gate_sat/<layer>/<gate>" (saturated fraction of a sigmoid gate, on log_every steps).
STOP_REASONS = ("max_steps", "epochs", "time_budget", "early_stopping", "interrupted")

LossFn = Callable[[nn.Module, dict[str, Tensor]], Tensor]
MetricsFn = Callable[[nn.Module, Batches], dict[str, float]]
WeightFn = Callable[[dict[str, Tensor]], float]


@dataclass
class FitResult:
    """What :meth:`FitTrainer.fit` ends with."""

    step: int  # optimizer steps done (bad ones included)
    best: float | None  # best value of the monitored metric; None without validation
    best_metrics: dict | None  # every validation figure at that evaluation
    history: list[dict]  # the rows of metrics.csv (None where a value is absent)
    stop_reason: str  # one of STOP_REASONS


@dataclass
class _Progress:
    """Where the run is; everything here goes into the checkpoint's ``extra``."""

    step: int = 0
    history: list[dict] = field(default_factory=list)
    best: float | None = None
    best_metrics: dict | None = None
    evaluated_step: int = -1  # step of the latest evaluation
    evals_since_best: int = 0
    bad_total: int = 0
    bad_in_row: int = 0
    last_bad: str = ""
    rollbacks: int = 0
    elapsed: float = 0.0  # seconds of training before this session
    # Sums since the last metrics row.
    loss_sum: float = 0.0
    norm_sum: float = 0.0
    clipped_sum: float = 0.0  # norms of the gradients applied (after clipping)
    group_sums: dict[str, float] = field(default_factory=dict)  # pre-clip norms per group
    gate_sat: dict[str, float] = field(default_factory=dict)  # the latest probe's figures
    good: int = 0
    examples: int = 0
    seconds: float = 0.0


class FitTrainer:
    """Trains ``model`` on minibatches of examples.

    ``loss_fn(model, batch) -> scalar`` is the mean loss of a batch (a dict of tensors,
    already on the model's device, except ``lengths``, which stays on the CPU where the
    recurrent layers want it). Validation runs every ``config.eval_every`` steps
    (once per epoch when None) and at the end: ``val_loss`` is the example-weighted
    mean of ``loss_fn`` over ``val`` in eval mode, and ``metrics_fn(model, val)`` adds
    figures logged as ``val_<name>``. ``monitor`` (``val_loss`` or a ``val_<name>``)
    chooses the "best" checkpoint, lower is better for ``mode="min"``; a tie in a
    metric goes to the evaluation with the lower ``val_loss``.

    A step whose loss or gradient norm is not finite is skipped; after
    ``nan_patience`` in a row the model and optimizer go back to the last good "last"
    checkpoint's in-memory copy with the lr times ``lr_backoff``.

    Writes into ``run_dir``: ``train_config.json``, ``metrics.csv``, ``last.json`` /
    ``best.json`` and ``checkpoints/``, ``loss.png`` at the end. ``resume=True``
    continues from the last checkpoint; on the CPU the continued run takes exactly
    the steps (same losses) the uninterrupted one would. ``meta`` is stored in every
    checkpoint's ``config.json``. The model needs ``.config.to_dict()``.

    Under ``torchrun`` (see :mod:`rnnkit.train.distributed`) each process trains on a
    slice of every minibatch and the update is the one a single process makes on the
    whole minibatch: ``loss_weight(batch)`` says what ``loss_fn``'s mean is over (by
    default the batch's examples; e.g. the summed step weights of a weighted mean), and
    each process's loss counts in proportion. Rank 0 alone writes the files.
    """

    def __init__(
        self,
        model: nn.Module,
        train: Batches,
        val: Batches | None,
        config: FitConfig,
        run_dir,
        *,
        loss_fn: LossFn,
        metrics_fn: MetricsFn | None = None,
        loss_weight: WeightFn | None = None,
        monitor: str = "val_loss",
        mode: str = "min",
        meta: dict | None = None,
        progress: bool = True,
        console: Console | None = None,
        resume: bool = False,
    ) -> None:
        if not isinstance(config, FitConfig):
            raise ValueError(f"config must be a FitConfig, got {type(config).__name__}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if monitor != "val_loss" and (metrics_fn is None or not monitor.startswith("val_")):
            raise ValueError(
                f"monitor={monitor!r} is not measured; use 'val_loss' or 'val_<name>' for a "
                f"name metrics_fn returns"
            )
        if not hasattr(model, "config") or not hasattr(model.config, "to_dict"):
            raise ValueError("the model needs a .config with to_dict() to be checkpointed")
        self.run_dir = Path(run_dir)
        if not resume and (self.run_dir / "last.json").exists():
            raise ValueError(
                f"{self.run_dir} already holds a training run; resume it or choose a new "
                f"run directory"
            )
        self.model = model
        self.train = train
        self.val = val
        self.config = config
        self.loss_fn = loss_fn
        self.metrics_fn = metrics_fn
        self.loss_weight = loss_weight or _examples
        self.monitor = monitor
        self.mode = mode
        self.meta = dict(meta or {})
        self.console = console or Console(stderr=True)
        if not distributed.is_main():
            self.console = Console(quiet=True)  # rank 0 speaks for all
        self.show_progress = progress
        self.resume = resume
        self.device = next(model.parameters()).device
        self.optimizer = build_optimizer(model.parameters(), config)
        self.horizon = config.horizon(train.num_batches)
        self.scheduler = build_scheduler(self.optimizer, config, self.horizon)
        self.eval_interval = config.eval_every or train.num_batches
        self.checkpoint_interval = config.checkpoint_every or self.eval_interval
        self.state = _Progress()
        self._snapshot: Snapshot | None = None
        self._saved_step: int | None = None
        self._fitted = False
        self._early_stop = False
        self._interrupted = False
        self._session_start = time.monotonic()
        self._last_lr = current_lr(self.optimizer)
        self._display = (math.nan, math.nan)  # (loss, examples/s) for the progress bar

    # ------------------------------------------------------------------ the loop

    def fit(self) -> FitResult:
        """Train until a stopping rule fires; save the last checkpoint and the loss plot."""
        if self._fitted:
            raise ValueError(
                "this FitTrainer has already run; continue with a new one and resume=True"
            )
        self._fitted = True
        rng = self._load() if self.resume else None
        if distributed.is_main():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            text = json.dumps(self.config.to_dict(), indent=2) + "\n"
            atomic_write_text(self.run_dir / "train_config.json", text)
        # What the steps run: loss_fn as a module, inside DDP when data-parallel.
        self.net = distributed.wrap(distributed.Objective(self.model, self.loss_fn), self.device)
        if rng is None:
            seed_everything(distributed.rank_seed(self.config.seed, self.state.step))
        self._snapshot = Snapshot.take(self.state.step, self.model, self.optimizer)
        st = self.state
        metrics = open_metrics(
            self.run_dir,
            resume_step=st.step if self.resume else None,
            # An evaluation row at the resumed step that the checkpoint does not know of
            # (the final evaluation, killed before it was saved) is redone, so dropped.
            drop_evaluation=self.resume and st.evaluated_step != st.step,
            columns=COLUMNS,
        )
        try:
            if rng is not None:
                restore_rng(rng)  # last, so that nothing above draws from the restored streams
            self._session_start = time.monotonic()
            with (
                TrainProgress(
                    self.console,
                    enabled=self.show_progress and distributed.is_main(),
                    total=self.horizon,
                    done=self.state.step,
                ) as bar,
                catch_interrupt(lambda: self._interrupted, self._set_interrupted),
            ):
                first_step = self.state.step
                while (reason := self._stop_reason()) is None:
                    self._train_step()
                    self._fit_schedule_to_budget(self.state.step - first_step)
                    self._after_step(metrics)
                    loss, speed = self._display
                    bar.update(self.state.step, f"loss {loss:.4g} · {speed:,.0f} ex/s")
            final_best = False
            if self.val is not None and self.state.evaluated_step != self.state.step:
                final_best = self._evaluate_and_log(metrics)  # the final weights compete too
        finally:
            metrics.close()
        if reason == "interrupted":
            self.console.print(f"step {self.state.step}: interrupted; saving and stopping")
        if self._saved_step != self.state.step:
            self._save("last")
        if final_best:
            self._save("best")
        if distributed.is_main():
            plot_losses(self.state.history, self.run_dir / "loss.png")
        self._report_end(reason)
        distributed.barrier()  # every process returns with the run directory complete
        st = self.state
        return FitResult(st.step, st.best, st.best_metrics, st.history, reason)

    def _stop_reason(self) -> str | None:
        cfg, step = self.config, self.state.step
        time_up = cfg.time_budget is not None and self._session_seconds() >= cfg.time_budget
        # The same verdict on every process: interrupted on any, out of time by rank 0's clock.
        self._interrupted, time_up = distributed.sync_flags(self._interrupted, time_up)
        if self._early_stop:
            return "early_stopping"
        if cfg.max_steps is not None and step >= cfg.max_steps:
            return "max_steps"
        if cfg.epochs is not None and step >= cfg.epochs * self.train.num_batches:
            return "epochs"
        if self._interrupted:
            return "interrupted"
        if time_up:
            return "time_budget"
        return None

    def _fit_schedule_to_budget(self, steps_done: int) -> None:
        """With only a time budget, decay over the steps the budget is expected to hold."""
        seconds = self._session_seconds()
        horizon = budget_horizon(self.config, self.horizon, steps_done, seconds, self.state.step)
        if horizon is not None:
            self.horizon = horizon = distributed.from_main(horizon)  # rank 0's clock decides
            apply_horizon(self.scheduler, self.config, horizon)

    def _train_step(self) -> None:
        """One minibatch: forward, check, backward, clip, update."""
        cfg, st = self.config, self.state
        # This process's slice of the minibatch (all of it alone), and the minibatch's size.
        batch, real, examples = distributed.shard_batch(self.train, st.step)
        batch = self._to_device(batch)
        tick = time.perf_counter()
        if (st.step + 1) % cfg.log_every == 0:  # this step ends on a log row
            st.gate_sat = gate_saturation(
                self.model,
                lambda: self.loss_fn(self.model, batch),
                combine=functools.partial(distributed.all_sum_tensor, include=real),
            )
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.net(batch)  # loss_fn(model, batch)
        weight = self.loss_weight(batch) if real else 0.0
        # The minibatch's mean over all processes, and this process's share of the gradient.
        loss_value, scale = distributed.weighted_mean(float(loss.detach()), weight)
        self._last_lr = current_lr(self.optimizer)
        bad = distributed.agree(None if math.isfinite(loss_value) else f"loss {loss_value}")
        norm_value = math.nan
        if bad is None:
            distributed.scaled(loss, scale).backward()
            params = [p for p in self.model.parameters() if p.grad is not None]
            groups = group_grad_norms(self.model.named_parameters())  # before clipping
            # Returns the norm before clipping; max_norm=inf only measures it.
            norm_value = float(nn.utils.clip_grad_norm_(params, cfg.clip_norm or math.inf))
            bad = None if math.isfinite(norm_value) else f"gradient norm {norm_value}"
            bad = distributed.agree(bad)
        if bad is None:
            if cfg.clip_value is not None:
                nn.utils.clip_grad_value_(params, cfg.clip_value)
            st.clipped_sum += total_grad_norm(params)
            for group, value in groups.items():
                st.group_sums[group] = st.group_sums.get(group, 0.0) + value
            self.optimizer.step()
            st.bad_in_row = 0
            st.loss_sum += loss_value
            st.norm_sum += norm_value
            st.good += 1
        else:
            self.optimizer.zero_grad(set_to_none=True)
            st.bad_in_row += 1
            st.bad_total += 1
            st.last_bad = bad
        with warnings.catch_warnings():
            # A bad first step steps the schedule before the optimizer; that is intended.
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step")
            self.scheduler.step()
        st.step += 1
        seconds = time.perf_counter() - tick
        st.examples += examples
        st.seconds += seconds
        speed = examples / seconds if seconds > 0 else math.nan
        self._display = tuple(
            smoothed(old, new) for old, new in zip(self._display, (loss_value, speed), strict=True)
        )

    def _after_step(self, metrics: MetricsLog) -> None:
        """Rollback, evaluation, the metrics row, checkpoints and early stopping."""
        cfg, st = self.config, self.state
        if st.bad_in_row >= cfg.nan_patience:
            self._roll_back()
        improved = False
        if self.val is not None and st.step % self.eval_interval == 0:
            improved = self._evaluate_and_log(metrics)
        elif st.step % cfg.log_every == 0:
            self._log_row(metrics, {})
        # "last" first: a run directory never has best.json without last.json.
        if st.step % self.checkpoint_interval == 0 or (improved and self._saved_step is None):
            self._save("last")
            if st.bad_in_row == 0 and all_finite(self.model):
                self._snapshot = Snapshot.take(st.step, self.model, self.optimizer)
        if improved:
            self._save("best")
        if cfg.patience is not None and st.evals_since_best >= cfg.patience:
            self._early_stop = True

    def _evaluate_and_log(self, metrics: MetricsLog) -> bool:
        """Validate, log the row, track the best; True when the monitored figure improved."""
        st = self.state
        figures = distributed.on_main(self.evaluate)
        st.evaluated_step = st.step
        value = figures.get(self.monitor)
        if value is None:
            raise ValueError(
                f"metrics_fn returned no {self.monitor[4:]!r}; it returned "
                f"{', '.join(k[4:] for k in figures if k != 'val_loss') or 'nothing'}"
            )
        better = st.best is None or (value < st.best if self.mode == "min" else value > st.best)
        if st.best is not None and value == st.best and self.monitor != "val_loss":
            # A tie in a coarse figure (accuracy on a small set) goes to the lower loss.
            better = figures["val_loss"] < st.best_metrics["val_loss"]
        improved = math.isfinite(value) and better
        if improved:
            st.best, st.best_metrics, st.evals_since_best = value, figures, 0
        else:
            st.evals_since_best += 1
        shown = ", ".join(f"{k.replace('_', ' ')} {v:.4g}" for k, v in figures.items())
        mark = " (best)" if improved else ""
        epoch = st.step / self.train.num_batches
        self.console.print(f"step {st.step} (epoch {epoch:.2f}): {shown}{mark}")
        self._log_row(metrics, figures)
        return improved

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """``{"val_loss": ..., "val_<name>": ...}`` on the validation examples."""
        if self.val is None:
            raise ValueError("no validation data was given; pass val to evaluate")
        was_training = self.model.training
        self.model.eval()
        try:
            total, count = 0.0, 0
            for i in range(self.val.num_batches):
                batch = self._to_device(self.val.batch(i))
                n = next(iter(batch.values())).shape[0]
                total += float(self.loss_fn(self.model, batch)) * n
                count += n
            figures = {"val_loss": total / count}
            if self.metrics_fn is not None:
                extra = self.metrics_fn(self.model, self.val)
                figures.update({f"val_{k}": float(v) for k, v in extra.items()})
        finally:
            self.model.train(was_training)
        return figures

    def _log_row(self, metrics: MetricsLog, figures: dict[str, float]) -> None:
        st = self.state
        loss = st.loss_sum / st.good if st.good else math.nan
        norm = st.norm_sum / st.good if st.good else math.nan
        speed = st.examples / st.seconds if st.seconds > 0 else math.nan
        row = {
            "step": st.step,
            "epoch": round(st.step / self.train.num_batches, 4),
            "loss": loss,
            "grad_norm": norm,
            "lr": self._last_lr,
            "examples_per_s": round(speed, 1) if math.isfinite(speed) else speed,
            "val_loss": None,
            "elapsed": round(self._elapsed(), 3),
            "bad_steps": st.bad_total,
            **figures,
            "grad_norm_clipped": st.clipped_sum / st.good if st.good else math.nan,
            **{f"grad_norm/{g}": total / st.good for g, total in st.group_sums.items()},
            **st.gate_sat,
        }
        st.history.append(row)
        metrics.write(row)
        st.loss_sum = st.norm_sum = st.clipped_sum = st.seconds = 0.0
        st.good = st.examples = 0
        st.group_sums, st.gate_sat = {}, {}

    def _roll_back(self) -> None:
        """Back to the last good snapshot with a smaller learning rate."""
        st, snap = self.state, self._snapshot
        snap.restore(self.model, self.optimizer)
        lr = scale_base_lr(self.scheduler, self.config.lr_backoff)
        self.console.print(
            f"step {st.step}: {st.bad_in_row} bad steps in a row ({st.last_bad}); "
            f"rolled back to step {snap.step} with lr {lr:.3g}"
        )
        st.bad_in_row = 0
        st.rollbacks += 1

    # ------------------------------------------------------------ checkpoints

    def _save(self, tag: str) -> None:
        """Checkpoint the run (rank 0 writes; every process takes part)."""
        st = self.state
        extra = {f.name: getattr(st, f.name) for f in fields(st)}
        extra["elapsed"] = self._elapsed()
        extra["horizon"] = self.horizon
        extra.update(distributed.rng_states())  # every process's, when data-parallel
        if distributed.is_main():
            save_checkpoint(
                self.run_dir,
                tag,
                model=self.model,
                model_config=self.model.config.to_dict(),
                train_config=self.config.to_dict(),
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                step=st.step,
                extra=extra,
                meta=self.meta,
            )
        if tag == "last":
            self._saved_step = st.step

    def _load(self) -> dict:
        """Restore everything from the last checkpoint; return its RNG states."""
        model, optimizer, scheduler = self.model, self.optimizer, self.scheduler
        step, rng, self.horizon = load_for_resume(
            self.run_dir, model, optimizer, scheduler, self.config, self.horizon, self._restore
        )
        self.state.step = step
        self._saved_step = self.state.step
        self.console.print(f"resumed {self.run_dir} at step {self.state.step}")
        return rng

    def _restore(self, extra: dict) -> None:
        self.state = _Progress(**extra)

    # ------------------------------------------------------------------ helpers

    def _to_device(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        # lengths stay on the CPU: the recurrent layers want them there.
        return {
            k: v if k == "lengths" else v.to(self.device, non_blocking=True)
            for k, v in batch.items()
        }

    def _set_interrupted(self) -> None:
        self._interrupted = True

    def _session_seconds(self) -> float:
        return time.monotonic() - self._session_start

    def _elapsed(self) -> float:
        return self.state.elapsed + self._session_seconds()

    def _report_end(self, reason: str) -> None:
        text = f"stopped at step {self.state.step} ({reason.replace('_', ' ')})"
        if self.state.best is not None:
            name = self.monitor.replace("_", " ")
            text += f"; best {name} {self.state.best:.4g}"
        self.console.print(text)


def _examples(batch: dict[str, Tensor]) -> float:
    """The default ``loss_weight``: the batch's number of examples."""
    return float(next(iter(batch.values())).shape[0])


__all__ = ["Batches", "FitConfig", "FitResult", "FitTrainer"]

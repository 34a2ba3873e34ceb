"""``Trainer``: truncated BPTT over a token stream, with guards, checkpoints and logs."""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from rich.console import Console
from torch import Tensor, nn
from torch.nn import functional as F

from rnnkit.atomic import atomic_write_text
from rnnkit.train import distributed
from rnnkit.train.checkpoint import save_checkpoint
from rnnkit.train.config import TrainConfig
from rnnkit.train.evaluate import evaluate_stream
from rnnkit.train.guard import LossGuard, Snapshot
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
from rnnkit.train.monitors import (
    PROBE_STEPS,
    gate_saturation,
    group_grad_norms,
    total_grad_norm,
)
from rnnkit.train.optim import (
    build_optimizer,
    build_scheduler,
    current_lr,
    scale_base_lr,
)
from rnnkit.train.plot import plot_losses
from rnnkit.train.progress import TrainProgress
from rnnkit.train.rng import restore_rng, seed_everything

LN2 = math.log(2.0)
STOP_REASONS = ("max_steps", "epochs", "time_budget", "early_stopping", "interrupted")


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` ends with."""

    step: int  # optimizer steps done (bad ones included)
    best_val_loss: float | None  # nats per token; None without validation
    history: list[dict]  # the rows of metrics.csv (None where a value is absent)
    stop_reason: str  # one of STOP_REASONS
    bad_steps: int  # steps skipped by the guard
    rollbacks: int


@dataclass
class _Interval:
    """Sums over the steps since the last metrics row (kept in checkpoints for exact resume)."""

    loss_sum: float = 0.0  # nats per token, good steps only
    norm_sum: float = 0.0  # pre-clip gradient norms, good steps only
    clipped_sum: float = 0.0  # norms of the gradients applied (after clipping), same steps
    group_sums: dict[str, float] = field(default_factory=dict)  # pre-clip, per group
    gate_sat: dict[str, float] = field(default_factory=dict)  # the latest probe's figures
    good: int = 0
    tokens: int = 0
    seconds: float = 0.0

    def means(self) -> tuple[float, float, float]:
        """Mean loss, mean gradient norm, tokens per second (NaN where undefined)."""
        loss = self.loss_sum / self.good if self.good else math.nan
        norm = self.norm_sum / self.good if self.good else math.nan
        speed = self.tokens / self.seconds if self.seconds > 0 else math.nan
        return loss, norm, speed

    def monitors(self) -> dict[str, float]:
        """Mean post-clip and per-group norms, and gate saturation, as metrics columns."""
        row = {"grad_norm_clipped": self.clipped_sum / self.good if self.good else math.nan}
        row.update({f"grad_norm/{g}": s / self.good for g, s in self.group_sums.items()})
        return {**row, **self.gate_sat}


@dataclass
class _Progress:
    """Where the run is; everything here goes into the checkpoint's ``extra``."""

    step: int = 0
    carried: tuple | None = None  # detached final state of the last good step; None: zeros
    history: list[dict] = field(default_factory=list)
    best_val: float | None = None
    evals_since_best: int = 0
    bad_total: int = 0
    bad_in_row: int = 0
    last_bad: str = ""  # why the most recent bad step was bad
    rollbacks: int = 0
    elapsed: float = 0.0  # seconds of training before this session


class Trainer:
    """Trains a language model on a token stream with truncated BPTT.

    ``model(tokens (T, B), state) -> (logits (T, B, V), state)`` with
    ``model.init_state(batch)``; ``train`` and ``val`` are ``StreamBatches``-like:
    ``num_chunks``, ``tokens_per_chunk`` and ``chunk(i) -> (x, y)``, both ``(T, B)``
    int64, stream ``b`` of chunk ``i + 1`` continuing stream ``b`` of chunk ``i``.

    Step ``s`` (0-based) trains on chunk ``s mod num_chunks``. The state carried
    from the previous chunk is detached (gradients stop at the chunk boundary), and
    reset to zeros at every epoch start, after a bad step, and before every chunk when
    ``carry_state`` is False.

    A bad step (see :class:`~rnnkit.train.guard.LossGuard`) is skipped: no optimizer
    update, the step still counts and the next chunk follows. After ``nan_patience``
    bad steps in a row the model and optimizer go back to the in-memory copy taken at
    the last good "last" checkpoint (or at the start) and the lr is multiplied by
    ``lr_backoff``; the step count keeps moving forward (no chunk is replayed), and the
    carried state restarts from zeros.

    Writes into ``run_dir``: ``train_config.json``, ``metrics.csv``, ``last.json`` /
    ``best.json`` and ``checkpoints/``, ``loss.png`` at the end, and ``tensorboard/``
    when the tensorboard package is installed.

    ``resume=True`` continues from ``run_dir``'s last checkpoint; on the CPU the
    continued run takes exactly the steps (same losses) the uninterrupted one would.
    ``meta`` is stored in every checkpoint's ``config.json`` (data paths, vocabulary, …).

    Under ``torchrun`` (see :mod:`rnnkit.train.distributed`) each process trains on
    ``B / N`` of the streams and the update is the one a single process makes on all ``B``;
    rank 0 alone writes the files.
    """

    def __init__(
        self,
        model: nn.Module,
        train,
        val,
        config: TrainConfig,
        run_dir,
        *,
        meta: dict | None = None,
        progress: bool = True,
        console: Console | None = None,
        resume: bool = False,
    ) -> None:
        if not isinstance(config, TrainConfig):
            raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
        if train.num_chunks < 1:
            raise ValueError(
                "the training stream is shorter than one chunk; use more text or a smaller "
                "batch_size / seq_len"
            )
        if val is not None and val.num_chunks < 1:
            raise ValueError(
                "the validation stream is shorter than one chunk; use more validation text "
                "or a smaller batch size / sequence length for it"
            )
        x, _ = train.chunk(0)  # x: (T, B)
        if tuple(x.shape) != (config.seq_len, config.batch_size):
            raise ValueError(
                f"the training stream's chunks are (T, B) = {tuple(x.shape)} but the config "
                f"says seq_len={config.seq_len}, batch_size={config.batch_size}; build the "
                f"stream with the config's sizes"
            )
        self.run_dir = Path(run_dir)
        if not resume and (self.run_dir / "last.json").exists():
            raise ValueError(
                f"{self.run_dir} already holds a training run; resume it or choose a new "
                f"run directory"
            )
        self.model = model
        self.train = distributed.shard_streams(train)  # this process's streams
        self.val = val
        self.config = config
        self.meta = dict(meta or {})
        self.console = console or Console(stderr=True)
        if not distributed.is_main():
            self.console = Console(quiet=True)  # rank 0 speaks for all
        self.show_progress = progress
        self.resume = resume
        self.device = next(model.parameters()).device
        self.model_config = model.config.to_dict() if hasattr(model, "config") else {}
        self.optimizer = build_optimizer(model.parameters(), config)
        self.horizon = config.horizon(train.num_chunks)
        self.scheduler = build_scheduler(self.optimizer, config, self.horizon)
        self.guard = LossGuard(config.runaway_factor)
        self.state = _Progress()
        self._interval = _Interval()
        self._snapshot: Snapshot | None = None
        self._saved_step: int | None = None  # step of the newest "last" checkpoint
        self._fitted = False
        self._early_stop = False
        self._interrupted = False
        self._session_start = time.monotonic()
        self._last_lr = current_lr(self.optimizer)
        self._display = (math.nan, math.nan)  # (loss, tokens/s) for the progress bar

    # ------------------------------------------------------------------ the loop

    def fit(self) -> TrainResult:
        """Train until a stopping rule fires; save the last checkpoint and the loss plot."""
        if self._fitted:
            raise ValueError(
                "this Trainer has already run; continue with a new Trainer and resume=True"
            )
        self._fitted = True
        rng = self._load() if self.resume else None
        if distributed.is_main():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            text = json.dumps(self.config.to_dict(), indent=2) + "\n"
            atomic_write_text(self.run_dir / "train_config.json", text)
        self.net = distributed.wrap(self.model, self.device)  # inside DDP when data-parallel
        if rng is None:
            seed_everything(distributed.rank_seed(self.config.seed, self.state.step))
        self._snapshot = Snapshot.take(self.state.step, self.model, self.optimizer)
        metrics = open_metrics(self.run_dir, resume_step=self.state.step if self.resume else None)
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
                    stats = f"loss {loss:.4f} · {loss / LN2:.3f} bits/token · {speed:,.0f} tok/s"
                    bar.update(self.state.step, stats)
        finally:
            metrics.close()
        if reason == "interrupted":
            self.console.print(f"step {self.state.step}: interrupted; saving and stopping")
        if self._saved_step != self.state.step:
            self._save("last")
        if distributed.is_main():
            plot_losses(self.state.history, self.run_dir / "loss.png", "loss (nats per token)")
        self._report_end(reason)
        distributed.barrier()  # every process returns with the run directory complete
        return TrainResult(
            step=self.state.step,
            best_val_loss=self.state.best_val,
            history=self.state.history,
            stop_reason=reason,
            bad_steps=self.state.bad_total,
            rollbacks=self.state.rollbacks,
        )

    def _fit_schedule_to_budget(self, steps_done: int) -> None:
        """With only a time budget, decay over the steps the budget is expected to hold."""
        seconds = self._session_seconds()
        horizon = budget_horizon(self.config, self.horizon, steps_done, seconds, self.state.step)
        if horizon is not None:
            self.horizon = horizon = distributed.from_main(horizon)  # rank 0's clock decides
            apply_horizon(self.scheduler, self.config, horizon)

    def _stop_reason(self) -> str | None:
        cfg, step = self.config, self.state.step
        time_up = cfg.time_budget is not None and self._session_seconds() >= cfg.time_budget
        # The same verdict on every process: interrupted on any, out of time by rank 0's clock.
        self._interrupted, time_up = distributed.sync_flags(self._interrupted, time_up)
        if self._early_stop:
            return "early_stopping"
        if cfg.max_steps is not None and step >= cfg.max_steps:
            return "max_steps"
        if cfg.epochs is not None and step >= cfg.epochs * self.train.num_chunks:
            return "epochs"
        if self._interrupted:
            return "interrupted"
        if time_up:
            return "time_budget"
        return None

    def _train_step(self) -> None:
        """One chunk: forward, guard, backward, clip, update; the carried state moves on."""
        cfg, st = self.config, self.state
        index = st.step % self.train.num_chunks
        x, y = self.train.chunk(index)  # (T, B) of this process's streams
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        if index == 0 or not cfg.carry_state or st.carried is None:
            state = self.model.init_state(x.shape[1])  # zeros
        else:
            state = st.carried
        tick = time.perf_counter()
        if (st.step + 1) % cfg.log_every == 0:  # this step ends with a metrics row
            # The probe reads only the first PROBE_STEPS steps: run no more than those.
            head = x[:PROBE_STEPS]  # (≤ PROBE_STEPS, B)
            self._interval.gate_sat = gate_saturation(
                self.model, lambda: self.model(head, state), combine=distributed.all_sum_tensor
            )
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        logits, final = self.net(x, state)  # (T, B, V)
        vocab = logits.shape[-1]
        loss = F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))  # nats per token
        # Over all processes' tokens; equal shares, so the scale is 1.
        loss_value, scale = distributed.weighted_mean(loss.item(), y.numel())
        self._last_lr = current_lr(self.optimizer)
        bad = distributed.agree(self.guard.check_loss(loss_value, vocab))
        norm_value = math.nan
        if bad is None:
            distributed.scaled(loss, scale).backward()
            params = [p for p in self.model.parameters() if p.grad is not None]
            groups = group_grad_norms(self.model.named_parameters())  # before clipping
            # Returns the norm before clipping; max_norm=inf only measures it.
            norm = nn.utils.clip_grad_norm_(params, cfg.clip_norm or math.inf)
            norm_value = float(norm)
            bad = distributed.agree(self.guard.check_grad_norm(norm_value))
        if bad is None:
            if cfg.clip_value is not None:
                nn.utils.clip_grad_value_(params, cfg.clip_value)
            self._add_grad_norms(total_grad_norm(params), groups)
            self.optimizer.step()
            st.carried = _detached(final) if cfg.carry_state else None
            self.guard.accept(loss_value)
            st.bad_in_row = 0
            self._interval.loss_sum += loss_value
            self._interval.norm_sum += norm_value
            self._interval.good += 1
        else:
            self.optimizer.zero_grad(set_to_none=True)
            st.carried = None
            st.bad_in_row += 1
            st.bad_total += 1
            st.last_bad = bad
        with warnings.catch_warnings():
            # A bad first step steps the schedule before the optimizer; that is intended.
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step")
            self.scheduler.step()
        st.step += 1
        seconds = time.perf_counter() - tick
        tokens = x.numel() * distributed.world_size()  # of all processes
        self._interval.tokens += tokens
        self._interval.seconds += seconds
        # The bar shows moving averages: one step's figures jump with the system's load.
        speed = tokens / seconds if seconds > 0 else math.nan
        self._display = tuple(
            smoothed(old, new) for old, new in zip(self._display, (loss_value, speed), strict=True)
        )

    def _add_grad_norms(self, clipped: float, groups: dict[str, float]) -> None:
        """Add a good step's post-clip norm and per-group (pre-clip) norms to the interval."""
        self._interval.clipped_sum += clipped
        sums = self._interval.group_sums
        for group, value in groups.items():
            sums[group] = sums.get(group, 0.0) + value

    def _after_step(self, metrics: MetricsLog) -> None:
        """Rollback, evaluation, the metrics row, checkpoints and early stopping."""
        cfg, st = self.config, self.state
        if st.bad_in_row >= cfg.nan_patience:
            self._roll_back()
        val_loss, improved = None, False
        if self.val is not None and st.step % cfg.eval_every == 0:
            val_loss = distributed.on_main(self.evaluate)
            improved = math.isfinite(val_loss) and (st.best_val is None or val_loss < st.best_val)
            if improved:
                st.best_val, st.evals_since_best = val_loss, 0
            else:
                st.evals_since_best += 1
            mark = " (best)" if improved else ""
            self.console.print(
                f"step {st.step}: val loss {val_loss:.4f} nats, "
                f"{val_loss / LN2:.4f} bits per token{mark}"
            )
        if st.step % cfg.log_every == 0 or val_loss is not None:
            self._log_row(metrics, val_loss)
        # "last" first: a run directory never has best.json without last.json.
        if st.step % cfg.checkpoint_interval == 0 or (improved and self._saved_step is None):
            self._save("last")
            if st.bad_in_row == 0 and all_finite(self.model):
                self._snapshot = Snapshot.take(st.step, self.model, self.optimizer)
        if improved:
            self._save("best")
        if cfg.patience is not None and st.evals_since_best >= cfg.patience:
            self._early_stop = True

    def _log_row(self, metrics: MetricsLog, val_loss: float | None) -> None:
        st = self.state
        loss, norm, speed = self._interval.means()
        row = {
            "step": st.step,
            "epoch": round(st.step / self.train.num_chunks, 4),
            "loss": loss,
            "bits": loss / LN2,
            "grad_norm": norm,
            "lr": self._last_lr,
            "tokens_per_s": round(speed, 1) if math.isfinite(speed) else speed,
            "val_loss": val_loss,
            "elapsed": round(self._elapsed(), 3),
            "bad_steps": st.bad_total,
            **self._interval.monitors(),  # after the fixed columns: these vary by model
        }
        st.history.append(row)
        metrics.write(row)
        self._interval = _Interval()

    def _roll_back(self) -> None:
        """Back to the last good snapshot with a smaller learning rate."""
        st, snap = self.state, self._snapshot
        snap.restore(self.model, self.optimizer)
        lr = scale_base_lr(self.scheduler, self.config.lr_backoff)
        self.console.print(
            f"step {st.step}: {st.bad_in_row} bad steps in a row ({st.last_bad}); "
            f"rolled back to step {snap.step} with lr {lr:.3g}"
        )
        st.carried = None
        st.bad_in_row = 0
        st.rollbacks += 1

    def evaluate(self) -> float:
        """Validation loss in nats per token, carrying the state across the stream's chunks."""
        if self.val is None:
            raise ValueError("no validation stream was given; pass val to evaluate")
        return evaluate_stream(self.model, self.val, max_chunks=self.config.eval_chunks)

    # ------------------------------------------------------------ checkpoints

    def _save(self, tag: str) -> None:
        """Checkpoint the run (rank 0 writes; every process takes part)."""
        st = self.state
        extra = {f.name: getattr(st, f.name) for f in fields(st)}  # shallow: no tensor copies
        extra["elapsed"] = self._elapsed()
        extra["interval"] = asdict(self._interval)
        extra["guard"] = self.guard.state_dict()
        extra["horizon"] = self.horizon
        extra.update(distributed.rng_states())  # every process's, when data-parallel
        if st.carried is not None:
            extra["carried"] = distributed.gather_rows(st.carried)  # all B streams
        if distributed.is_main():
            save_checkpoint(
                self.run_dir,
                tag,
                model=self.model,
                model_config=self.model_config,
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
        st = self.state
        st.step = step
        if st.carried is not None:
            st.carried = _tree(st.carried, lambda t: t.to(self.device))
            batch = _batch_of(st.carried)
            if batch != self.config.batch_size:
                raise ValueError(
                    f"{self.run_dir} was trained with batch_size {batch}; resume it with "
                    f"batch_size {batch}"
                )
            st.carried = distributed.rank_rows(st.carried)  # this process's streams
        self._saved_step = st.step
        self.console.print(f"resumed {self.run_dir} at step {st.step}")
        return rng

    def _restore(self, extra: dict) -> None:
        self._interval = _Interval(**extra.pop("interval"))
        self.guard.load_state_dict(extra.pop("guard"))
        self.state = _Progress(**extra)

    # ------------------------------------------------------------------ helpers

    def _session_seconds(self) -> float:
        return time.monotonic() - self._session_start

    def _set_interrupted(self) -> None:
        self._interrupted = True

    def _elapsed(self) -> float:
        return self.state.elapsed + self._session_seconds()

    def _report_end(self, reason: str) -> None:
        best = self.state.best_val
        text = f"stopped at step {self.state.step} ({reason.replace('_', ' ')})"
        if best is not None:
            text += f"; best val loss {best:.4f} nats, {best / LN2:.4f} bits per token"
        self.console.print(text)


def _tree(state, fn: Callable[[Tensor], Tensor]):
    """Apply ``fn`` to every tensor of a nested tuple state."""
    if isinstance(state, Tensor):
        return fn(state)
    return tuple(_tree(s, fn) for s in state)


def _detached(state):
    """The state cut from its graph, so that the next chunk's gradients stop here."""
    return _tree(state, Tensor.detach)


def _batch_of(state) -> int:
    """The batch size of a nested state (the first dimension of its first tensor)."""
    while not isinstance(state, Tensor):
        state = state[0]
    return state.shape[0]

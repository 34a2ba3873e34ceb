"""Training: TBPTT, clipping, guards, exact resume, crash-safe checkpoints, logs."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import signal

import pytest
import torch
from rich.console import Console
from torch import nn
from torch.nn import functional as F

from rnnkit.models import LanguageModel, LMConfig
from rnnkit.train import (
    TrainConfig,
    Trainer,
    atomic_write_text,
    check_compatible,
    evaluate_stream,
    load_checkpoint,
    save_checkpoint,
)
from rnnkit.train.metrics import COLUMNS
from rnnkit.train.optim import build_scheduler, lr_factor

V = 7
B, T = 4, 8
PERIODIC = [i % V for i in range(2000)]


class Stream:
    """Stand-in for ``rnnkit.data.StreamBatches``: B parallel streams cut into (T, B) chunks."""

    def __init__(self, ids, batch_size: int, seq_len: int) -> None:
        ids = torch.as_tensor(ids, dtype=torch.long)
        length = (len(ids) - 1) // batch_size  # tokens per stream
        rows = [ids[b * length : b * length + length + 1] for b in range(batch_size)]
        data = torch.stack(rows)  # (B, length + 1)
        self.x, self.y = data[:, :-1], data[:, 1:]
        self.seq_len = seq_len
        self.num_chunks = length // seq_len
        self.tokens_per_chunk = batch_size * seq_len

    def chunk(self, i: int):
        cols = slice(i * self.seq_len, (i + 1) * self.seq_len)
        return self.x[:, cols].T.contiguous(), self.y[:, cols].T.contiguous()  # (T, B) each


class Probe(nn.Module):
    """Wraps a model: records what each training forward sees, and can misbehave on cue.

    Calls are counted from 1 over training-mode forwards (= steps). ``nan_at`` /
    ``huge_at`` spoil the logits of those calls, ``poison_at`` writes a NaN into a
    weight before the call, ``crash_at`` raises, ``interrupt_at`` sends SIGINT.
    """

    def __init__(self, model, *, nan_at=(), huge_at=(), poison_at=(), crash_at=(), interrupt_at=()):
        super().__init__()
        self.inner = model
        self.config = model.config
        self.nan_at, self.huge_at, self.poison_at = set(nan_at), set(huge_at), set(poison_at)
        self.crash_at, self.interrupt_at = set(crash_at), set(interrupt_at)
        self.calls = 0
        self.seen = []  # per call: (incoming state, parameters at the call)

    def init_state(self, batch, **kw):
        return self.inner.init_state(batch, **kw)

    def forward(self, tokens, state):
        if not self.training:
            return self.inner(tokens, state)
        self.calls += 1
        if self.calls in self.crash_at:
            raise RuntimeError("simulated crash")
        if self.calls in self.interrupt_at:
            signal.raise_signal(signal.SIGINT)
        if self.calls in self.poison_at:
            with torch.no_grad():
                self.inner.head.bias[0] = math.nan
        params = {k: v.detach().clone() for k, v in self.inner.state_dict().items()}
        self.seen.append((state, params))
        logits, final = self.inner(tokens, state)
        if self.calls in self.nan_at:
            logits = logits * math.nan
        if self.calls in self.huge_at:
            logits = logits * 1e4
        return logits, final


def tiny_model(seed=0, **kw) -> LanguageModel:
    torch.manual_seed(seed)
    options = {"vocab_size": V, "hidden_size": 8, "num_layers": 1, "embedding_size": 4}
    options = options | {"dropout": 0.0} | kw
    return LanguageModel(LMConfig(**options))


def config(**kw) -> TrainConfig:
    options = {"batch_size": B, "seq_len": T, "max_steps": 10, "lr": 0.02, "decay": "none"}
    options |= {"log_every": 1, "eval_every": 1000}
    return TrainConfig(**(options | kw))


def fit(model, run_dir, *, val=None, ids=PERIODIC, console=None, resume=False, **kw):
    trainer = Trainer(
        model,
        Stream(ids, B, T),
        val,
        config(**kw),
        run_dir,
        progress=False,
        console=console or Console(file=io.StringIO()),
        resume=resume,
    )
    return trainer.fit()


def losses(result) -> list[float]:
    return [row["loss"] for row in result.history]


def flat(state) -> list[torch.Tensor]:
    if isinstance(state, torch.Tensor):
        return [state]
    return [t for s in state for t in flat(s)]


def ce(logits, y) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))


# ---------------------------------------------------------------- config and schedule


def test_config_checks_and_round_trip():
    c = config(max_steps=None, epochs=2, clip_norm=None, patience=3)
    assert TrainConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert c.checkpoint_interval == c.eval_every
    with pytest.raises(ValueError, match="stopping rule"):
        TrainConfig()
    with pytest.raises(ValueError, match=r"unknown training setting.*: colour"):
        TrainConfig.from_dict({"max_steps": 1, "colour": "red"})
    bad = [
        ({"optimizer": "lbfgs"}, "unknown optimizer 'lbfgs'; choose one of adam"),
        ({"decay": "step"}, "unknown decay"),
        ({"lr": -1.0}, "lr must be a positive number"),
        ({"momentum": 1.0}, r"momentum must be a number in \[0, 1\)"),
        ({"seq_len": 0}, "seq_len must be a positive integer"),
        ({"clip_norm": 0}, "clip_norm must be a positive number or None"),
        ({"lr_backoff": 2.0}, r"lr_backoff must be a number in \(0, 1\]"),
        ({"runaway_factor": 1.0}, "runaway_factor must be a number > 1"),
        ({"carry_state": "yes"}, "carry_state must be true or false"),
        ({"time_budget": math.inf}, "time_budget must be a positive number of seconds"),
    ]
    for change, message in bad:
        with pytest.raises(ValueError, match=message):
            config(**change)


def test_schedule_warmup_then_decay():
    args = {"warmup": 4, "horizon": 13, "min_ratio": 0.1}
    assert [lr_factor(s, decay="cosine", **args) for s in range(5)] == [0.25, 0.5, 0.75, 1, 1]
    assert lr_factor(12, decay="cosine", **args) == pytest.approx(0.1)  # the last step
    assert lr_factor(8, decay="cosine", **args) == pytest.approx(0.55)  # half-way: the mean
    assert lr_factor(8, decay="linear", **args) == pytest.approx(0.55)
    assert lr_factor(100, decay="linear", **args) == pytest.approx(0.1)  # stays at the floor
    assert lr_factor(100, decay="cosine", warmup=4, horizon=None, min_ratio=0.1) == 1.0
    # The horizon is max_steps or epochs × chunks, whichever ends first; time alone has none.
    assert config(max_steps=50, epochs=2).horizon(10) == 20
    assert config(max_steps=None, time_budget=5.0).horizon(10) is None
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(opt, config(warmup_steps=2, decay="linear", max_steps=6), 6)
    seen = []
    for _ in range(6):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.5, 1.0, 1.0, 0.7, 0.4, 0.1])


# ------------------------------------------------------------------------- TBPTT


def test_state_is_carried_detached_and_reset_at_epoch_start(tmp_path):
    probe = Probe(tiny_model())
    stream = Stream(PERIODIC[:100], B, T)  # 24 tokens per stream: 3 chunks
    assert stream.num_chunks == 3
    result = fit(probe, tmp_path, ids=PERIODIC[:100], max_steps=5)
    (s1, p1), (s2, p2) = probe.seen[0], probe.seen[1]
    for state, _ in probe.seen:  # what entered each step is cut from any graph
        assert all(not t.requires_grad and t.grad_fn is None for t in flat(state))
    assert all(torch.count_nonzero(t) == 0 for t in flat(s1))  # the first chunk: zeros

    # Step 2 starts from the state chunk 1 ended in (under step 1's weights).
    model = tiny_model()
    model.load_state_dict(p1)
    x0, _ = stream.chunk(0)
    _, after_chunk1 = model(x0, model.init_state(B))
    for got, want in zip(flat(s2), flat(after_chunk1), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    model.load_state_dict(p2)
    x1, y1 = stream.chunk(1)
    carried = ce(model(x1, after_chunk1)[0], y1).item()
    fresh = ce(model(x1, model.init_state(B))[0], y1).item()
    assert result.history[1]["loss"] == pytest.approx(carried, abs=1e-6)
    assert abs(carried - fresh) > 1e-3  # the carried state matters

    # Step 4 is chunk 0 again: a new epoch starts from zeros; step 5 carries again.
    assert all(torch.count_nonzero(t) == 0 for t in flat(probe.seen[3][0]))
    assert any(torch.count_nonzero(t) > 0 for t in flat(probe.seen[4][0]))


def test_carry_state_false_starts_every_chunk_from_zeros(tmp_path):
    probe = Probe(tiny_model())
    fit(probe, tmp_path, max_steps=4, carry_state=False)
    for state, _ in probe.seen:
        assert all(torch.count_nonzero(t) == 0 for t in flat(state))


def test_learning_drives_the_loss_far_below_uniform(tmp_path):
    result = fit(tiny_model(), tmp_path, max_steps=150, log_every=10)
    assert result.history[0]["loss"] > 1.0
    assert result.history[-1]["loss"] < 0.1  # uniform guessing: ln 7 = 1.95 nats
    assert result.history[-1]["bits"] == pytest.approx(result.history[-1]["loss"] / math.log(2))


def test_evaluate_stream_carries_the_state_without_dropout():
    model = tiny_model(dropout=0.5)
    stream = Stream([(i * 3 + i // 5) % V for i in range(200)], 2, T)
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        state = model.init_state(2)
        for i in range(3):
            x, y = stream.chunk(i)
            logits, state = model(x, state)
            total += float(F.cross_entropy(logits.reshape(-1, V), y.reshape(-1), reduction="sum"))
            count += y.numel()
    model.train()
    assert evaluate_stream(model, stream, max_chunks=3) == pytest.approx(total / count, rel=1e-6)
    assert model.training  # restored
    assert evaluate_stream(model, stream) != pytest.approx(total / count, rel=1e-6)


# ---------------------------------------------------------------------- clipping


def hand_gradient_norm(params: dict, stream: Stream) -> float:
    model = tiny_model()
    model.load_state_dict(params)
    x, y = stream.chunk(0)
    ce(model(x, model.init_state(B))[0], y).backward()
    return math.sqrt(sum(float((p.grad**2).sum()) for p in model.parameters()))


def test_clip_norm_records_the_pre_clip_norm_and_bounds_the_update(tmp_path):
    # SGD with lr 1 and no momentum: the update is exactly minus the clipped gradient.
    probe = Probe(tiny_model())
    result = fit(
        probe, tmp_path, max_steps=2, optimizer="sgd", lr=1.0, momentum=0.0, clip_norm=0.05
    )
    before, after = probe.seen[0][1], probe.seen[1][1]
    norm = hand_gradient_norm(before, Stream(PERIODIC, B, T))
    assert norm > 0.1  # so the clip really acts
    assert result.history[0]["grad_norm"] == pytest.approx(norm, rel=1e-5)
    step = math.sqrt(sum(float(((after[k] - before[k]) ** 2).sum()) for k in before))
    assert step == pytest.approx(0.05, rel=1e-3)


def test_clip_value_bounds_every_gradient_entry(tmp_path):
    probe = Probe(tiny_model())
    fit(
        probe,
        tmp_path,
        max_steps=2,
        optimizer="sgd",
        lr=1.0,
        momentum=0.0,
        clip_norm=None,
        clip_value=0.01,
    )
    before, after = probe.seen[0][1], probe.seen[1][1]
    largest = max(float((after[k] - before[k]).abs().max()) for k in before)
    assert largest == pytest.approx(0.01, rel=1e-3)  # reached (clipped entries) but never passed


# ------------------------------------------------------------------ exact resume


def test_resume_after_a_crash_repeats_the_uninterrupted_run_exactly(tmp_path):
    kw = {"max_steps": 30, "eval_every": 5, "warmup_steps": 4, "decay": "cosine", "patience": 10}
    ids = [(i * i + i // 3) % V for i in range(1200)]  # not trivially learnable
    val = Stream(ids[:300], 2, T)
    lm = {"dropout": 0.2, "state_dropout": 0.1}  # RNG draws every step
    whole = fit(Probe(tiny_model(**lm)), tmp_path / "whole", val=val, ids=ids, **kw)

    with pytest.raises(RuntimeError, match="simulated crash"):  # after the step-15 checkpoint
        fit(Probe(tiny_model(**lm), crash_at={18}), tmp_path / "cut", val=val, ids=ids, **kw)
    assert load_checkpoint(tmp_path / "cut").step == 15
    other_init = Probe(tiny_model(seed=123, **lm))
    resumed = fit(other_init, tmp_path / "cut", val=val, ids=ids, resume=True, **kw)

    assert len(losses(whole)) == 30
    assert torch.equal(torch.tensor(losses(resumed)), torch.tensor(losses(whole)))
    assert [r["val_loss"] for r in resumed.history] == [r["val_loss"] for r in whole.history]
    assert [r["lr"] for r in resumed.history] == [r["lr"] for r in whole.history]
    with open(tmp_path / "cut" / "metrics.csv") as f:  # rows 16-17 of the crashed run dropped
        assert [int(r["step"]) for r in csv.DictReader(f)] == list(range(1, 31))
    final_whole = load_checkpoint(tmp_path / "whole").state_dict
    final_resumed = load_checkpoint(tmp_path / "cut").state_dict
    assert all(torch.equal(final_whole[k], final_resumed[k]) for k in final_whole)


def test_resume_refusals(tmp_path):
    with pytest.raises(ValueError, match=r"has no last checkpoint.*train first"):
        fit(tiny_model(), tmp_path, resume=True)
    fit(tiny_model(), tmp_path, max_steps=2)
    with pytest.raises(ValueError, match="already holds a training run"):
        fit(tiny_model(), tmp_path, max_steps=2)
    with pytest.raises(ValueError, match="trained with optimizer 'adam'; resume it with"):
        fit(tiny_model(), tmp_path, max_steps=4, optimizer="sgd", resume=True)
    with pytest.raises(ValueError, match=r"holds a different model \(shape mismatch: "):
        fit(tiny_model(hidden_size=9), tmp_path, max_steps=4, resume=True)


# ------------------------------------------------------------------- bad steps


@pytest.mark.parametrize("spoil", ["nan_at", "huge_at"])
def test_a_bad_step_is_skipped(tmp_path, spoil):
    at = 8  # after MIN_HISTORY good steps, so the runaway test is armed
    clean = Probe(tiny_model())
    fit(clean, tmp_path / "clean", max_steps=at - 1)
    spoiled = Probe(tiny_model(), **{spoil: {at}})
    fit(spoiled, tmp_path / "spoiled", max_steps=at)
    for k, v in clean.inner.state_dict().items():  # the bad step changed nothing
        assert torch.equal(spoiled.inner.state_dict()[k], v), k

    probe = Probe(tiny_model(), **{spoil: {at}})
    result = fit(probe, tmp_path / "on", max_steps=14)
    assert result.bad_steps == 1 and result.rollbacks == 0
    assert all(torch.count_nonzero(t) == 0 for t in flat(probe.seen[at][0]))  # state reset
    assert math.isnan(result.history[at - 1]["loss"])  # no good step in that row
    assert all(math.isfinite(x) for i, x in enumerate(losses(result)) if i != at - 1)
    assert losses(result)[-1] < losses(result)[0]


def test_bad_steps_in_a_row_roll_back_with_a_smaller_lr(tmp_path):
    out = io.StringIO()
    # A NaN weight from step 7 on: steps 7, 8, 9 are bad; the snapshot is from step 5.
    probe = Probe(tiny_model(), poison_at={7})
    result = fit(
        probe,
        tmp_path / "run",
        console=Console(file=out, width=200),
        max_steps=12,
        checkpoint_every=5,
    )
    assert (
        "step 9: 3 bad steps in a row (loss nan); rolled back to step 5 with lr 0.01"
        in out.getvalue()
    )
    assert result.rollbacks == 1 and result.bad_steps == 3
    assert [r["lr"] for r in result.history] == [0.02] * 9 + [0.01] * 3
    assert all(math.isfinite(x) for x in losses(result)[9:])
    # Right after the rollback the weights are step 5's.
    at_five = Probe(tiny_model())
    fit(at_five, tmp_path / "five", max_steps=5)
    for k, v in at_five.inner.state_dict().items():
        assert torch.equal(probe.seen[9][1][k], v), k


# ------------------------------------------------------------------ checkpoints


def save(run_dir, model, step):
    opt = torch.optim.Adam(model.parameters())
    return save_checkpoint(
        run_dir,
        "last",
        model=model,
        model_config=model.config.to_dict(),
        train_config={"lr": 0.1},
        optimizer=opt,
        scheduler=None,
        step=step,
        extra={"carried": (torch.ones(2, 3),), "note": "hi"},
        meta={"vocab": "chars"},
    )


def temp_files(run_dir):
    return [p for p in run_dir.rglob("*") if ".tmp-" in p.name]


def test_checkpoint_layout_and_round_trip(tmp_path):
    model = tiny_model()
    first = save(tmp_path, model, 3)
    (tmp_path / "checkpoints" / "last-1-deadbeef").mkdir()  # a killed save's leftovers
    second = save(tmp_path, model, 4)
    assert not first.exists() and not (tmp_path / "checkpoints" / "last-1-deadbeef").exists()
    assert sorted(p.name for p in second.iterdir()) == [
        "config.json",
        "model.safetensors",
        "trainer.pt",
    ]
    assert json.loads((tmp_path / "last.json").read_text())["path"] == f"checkpoints/{second.name}"
    assert temp_files(tmp_path) == []
    ckpt = load_checkpoint(tmp_path)
    assert (ckpt.step, ckpt.model_class, ckpt.meta, ckpt.train_config) == (
        4,
        "LanguageModel",
        {"vocab": "chars"},
        {"lr": 0.1},
    )
    assert LMConfig.from_dict(ckpt.model_config) == model.config
    assert torch.equal(ckpt.trainer_state["extra"]["carried"][0], torch.ones(2, 3))
    assert load_checkpoint(tmp_path, trainer_state=False).trainer_state is None
    fresh = tiny_model(seed=5)
    ckpt.load_into(fresh)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("fail_at", [1, 2, 3, 4])
def test_a_crash_mid_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch, fail_at):
    model = tiny_model()
    save(tmp_path, model, 3)
    real, calls = os.replace, []

    def flaky(src, dst):  # the save's 4 renames: model, trainer, config, pointer
        calls.append(dst)
        if len(calls) == fail_at:
            raise OSError("disk on fire")
        real(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    with torch.no_grad():
        model.head.bias.add_(1.0)
    with pytest.raises(OSError, match="disk on fire"):
        save(tmp_path, model, 4)
    monkeypatch.undo()
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.step == 3
    assert not torch.equal(ckpt.state_dict["head.bias"], model.head.bias.detach())
    assert temp_files(tmp_path) == [] and len(list((tmp_path / "checkpoints").iterdir())) == 1


def test_damaged_and_foreign_checkpoints_are_clear_errors(tmp_path):
    model = tiny_model()
    where = save(tmp_path, model, 3)
    weights = where / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"is damaged \(model.safetensors has \d+ bytes, expected"):
        load_checkpoint(tmp_path)
    weights.write_bytes(b"\xff" * len(data))  # right size, garbage inside
    with pytest.raises(ValueError, match=r"is damaged \(model.safetensors: "):
        load_checkpoint(tmp_path)
    weights.write_bytes(data)
    config_file = where / "config.json"
    config = json.loads(config_file.read_text())
    atomic_write_text(
        config_file, json.dumps(config | {"format_version": 99}).ljust(len(config_file.read_text()))
    )
    with pytest.raises(ValueError, match="format version 99, newer than this rnnkit reads"):
        load_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="has no best checkpoint"):
        load_checkpoint(tmp_path, "best")

    other = tiny_model(hidden_size=6, embedding_size=None)
    message = (
        r"holds a different model \(unexpected: embedding.weight; shape mismatch: "
        r"rnn.layers.0.cell.weight_ih \(32, 4\) in the checkpoint vs \(24, 7\)"
    )
    with pytest.raises(ValueError, match=message):
        check_compatible(other, model.state_dict())


# ----------------------------------------------------------- stops and run files


def test_early_stopping_when_validation_stops_improving(tmp_path):
    backwards = Stream([(-i) % V for i in range(300)], 2, T)  # the opposite transitions
    result = fit(tiny_model(), tmp_path, val=backwards, max_steps=400, eval_every=5, patience=2)
    assert result.stop_reason == "early_stopping" and result.step < 400
    vals = [r["val_loss"] for r in result.history if r["val_loss"] is not None]
    assert min(vals[-2:]) >= result.best_val_loss == min(vals)
    assert load_checkpoint(tmp_path, "best").step == 5 * (vals.index(min(vals)) + 1)


def test_time_budget_and_interrupt_stop_with_a_checkpoint(tmp_path):
    result = fit(tiny_model(), tmp_path / "t", max_steps=None, time_budget=0.3)
    assert result.stop_reason == "time_budget" and result.step > 0
    assert load_checkpoint(tmp_path / "t").step == result.step

    before = signal.getsignal(signal.SIGINT)
    result = fit(Probe(tiny_model(), interrupt_at={6}), tmp_path / "i", max_steps=50)
    assert (result.stop_reason, result.step) == ("interrupted", 6)
    assert load_checkpoint(tmp_path / "i").step == 6
    assert signal.getsignal(signal.SIGINT) is before  # our handler is gone again


def test_metrics_csv_plot_and_config_files(tmp_path):
    val = Stream(PERIODIC[:200], 2, T)
    result = fit(tiny_model(), tmp_path, val=val, max_steps=20, log_every=5, eval_every=10)
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0])[: len(COLUMNS)] == COLUMNS  # the monitors follow (test_train_monitors)
    assert [int(r["step"]) for r in rows] == [5, 10, 15, 20]
    assert [r["val_loss"] != "" for r in rows] == [False, True, False, True]
    assert float(rows[-1]["loss"]) == result.history[-1]["loss"]
    assert float(rows[0]["grad_norm"]) > 0 and float(rows[0]["tokens_per_s"]) > 0
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "train_config.json").read_text())
    assert TrainConfig.from_dict(saved) == config(max_steps=20, log_every=5, eval_every=10)
    ckpt = json.loads((load_checkpoint(tmp_path).path / "config.json").read_text())
    assert ckpt["train"] == saved and ckpt["model"]["vocab_size"] == V
    assert temp_files(tmp_path) == []


def test_time_budget_alone_decays_over_the_estimated_horizon(tmp_path, monkeypatch):
    from rnnkit.train.loop import BUDGET_CALIBRATION_STEPS

    # A clock that ticks 50 ms per step, so a busy machine cannot starve the budget.
    monkeypatch.setattr(Trainer, "_session_seconds", lambda self: 0.05 * self.state.step)
    result = fit(tiny_model(), tmp_path / "b", max_steps=None, time_budget=2.0, decay="cosine")
    assert result.step == 40
    lrs = [row["lr"] for row in result.history]
    # peak lr until the horizon is fixed, then cosine decay towards min_lr_ratio * lr
    assert lrs[0] == 0.02 and lrs[BUDGET_CALIBRATION_STEPS - 2] == 0.02
    assert lrs[-1] < 0.5 * lrs[0]

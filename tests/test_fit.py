"""The minibatch trainer: learning, exact resume, best checkpoint, guards, Batches."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from rnnkit.settings import JSONSettings
from rnnkit.train import load_checkpoint
from rnnkit.train.fit import Batches, FitConfig, FitTrainer


@dataclass
class TinyConfig(JSONSettings):
    hidden: int = 8
    dropout: float = 0.2


class Tiny(nn.Module):
    """A GRU reading (B, T, 1) sequences, predicting one number from its last state."""

    def __init__(self, config: TinyConfig) -> None:
        super().__init__()
        self.config = config
        self.rnn = nn.GRU(1, config.hidden, batch_first=True)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden, 1)

    def forward(self, x):
        _, h = self.rnn(x)
        return self.head(self.drop(h[-1])).squeeze(-1)


def data(n: int, seed: int):
    """Sequences of 6 numbers whose target is their sum."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 6, 1, generator=g) - 0.5
    return {"x": x, "y": x.sum(dim=(1, 2))}


def mse(model, batch):
    return nn.functional.mse_loss(model(batch["x"]), batch["y"])


def neg_mae(model, val):
    errors = [(model(b["x"]) - b["y"]).abs() for b in val]
    return {"mae": float(torch.cat(errors).mean())}


def trainer(run_dir, *, resume=False, metrics=True, **overrides):
    torch.manual_seed(0)
    model = Tiny(TinyConfig())
    train = Batches(data(96, 1), 16, seed=3)
    val = Batches(data(40, 2), 16, shuffle=False)
    settings = {"epochs": 8, "lr": 3e-2, "log_every": 2, **overrides}
    return FitTrainer(
        model,
        train,
        val,
        FitConfig(**settings),
        run_dir,
        loss_fn=mse,
        metrics_fn=neg_mae if metrics else None,
        monitor="val_mae" if metrics else "val_loss",
        meta={"task": "test"},
        progress=False,
        resume=resume,
    )


def test_learns_the_sum(tmp_path):
    t = trainer(tmp_path / "run")
    before = t.evaluate()["val_loss"]
    result = t.fit()
    assert result.stop_reason == "epochs"
    assert result.step == 8 * 6
    assert result.best_metrics["val_loss"] < 0.25 * before  # the sum is learnable
    evals = [r for r in result.history if r.get("val_loss") is not None]
    assert len(evals) == 8  # once per epoch
    assert result.best == min(r["val_mae"] for r in evals)
    # The best checkpoint is the evaluation with the lowest val_mae, and loads back to it.
    best_row = min(evals, key=lambda r: r["val_mae"])
    ckpt = load_checkpoint(tmp_path / "run", "best", trainer_state=False)
    assert ckpt.step == best_row["step"]
    assert ckpt.meta == {"task": "test"}
    model = Tiny(TinyConfig(**ckpt.model_config))
    ckpt.load_into(model)
    t.model = model
    assert t.evaluate()["val_mae"] == pytest.approx(best_row["val_mae"], rel=1e-6)


def test_metrics_csv_grows_a_column_per_validation_metric(tmp_path):
    result = trainer(tmp_path / "run", epochs=2).fit()
    with open(tmp_path / "run" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert "val_mae" in rows[0]
    assert len(rows) == len(result.history)
    filled = [float(r["val_mae"]) for r in rows if r["val_mae"]]
    assert filled == pytest.approx([r["val_mae"] for r in result.history if "val_mae" in r])
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000


def test_resume_continues_exactly(tmp_path):
    whole = trainer(tmp_path / "a").fit()
    first = trainer(tmp_path / "b", checkpoint_every=5)
    steps = {"n": 0}

    def interrupt_at_20(model, batch):  # as a first Ctrl-C would: finish the step, save
        steps["n"] += model.training
        if steps["n"] == 20:
            first._set_interrupted()
        return mse(model, batch)

    first.loss_fn = interrupt_at_20
    assert first.fit().stop_reason == "interrupted"
    resumed = trainer(tmp_path / "b", resume=True).fit()
    assert resumed.step == whole.step

    def rows(history):  # training rows, and the once-per-epoch evaluations
        return [
            (r["step"], r["loss"], r.get("val_loss"))
            for r in history
            if r.get("val_loss") is None or r["step"] % 6 == 0
        ]

    assert rows(resumed.history) == rows(whole.history)
    a = load_checkpoint(tmp_path / "a", "last", trainer_state=False).state_dict
    b = load_checkpoint(tmp_path / "b", "last", trainer_state=False).state_dict
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_early_stopping_and_final_evaluation(tmp_path):
    # lr so small nothing improves after the first evaluations: patience fires.
    result = trainer(tmp_path / "run", epochs=50, lr=1e-9, patience=2, eval_every=4).fit()
    assert result.stop_reason == "early_stopping"
    evals = [r["step"] for r in result.history if r.get("val_loss") is not None]
    assert evals[-1] == result.step and result.step < 50 * 6
    # A run whose last step is not an evaluation step is evaluated once more at the end.
    short = trainer(tmp_path / "short", max_steps=7, eval_every=5).fit()
    assert [r["step"] for r in short.history if r.get("val_loss") is not None] == [5, 7]


def test_bad_steps_are_skipped_and_rolled_back(tmp_path):
    calls = {"n": 0}

    def sometimes_nan(model, batch):
        calls["n"] += model.training
        loss = mse(model, batch)
        return loss * math.nan if model.training and 5 <= calls["n"] <= 8 else loss

    t = trainer(tmp_path / "run", max_steps=12, metrics=False, checkpoint_every=2)
    t.loss_fn = sometimes_nan
    result = t.fit()
    assert result.history[-1]["bad_steps"] == 4
    assert t.state.rollbacks == 1  # nan_patience=3 bad steps in a row
    assert all(torch.isfinite(p).all() for p in t.model.parameters())


def test_refuses_bad_settings(tmp_path):
    model = Tiny(TinyConfig())
    train = Batches(data(8, 0), 4)
    cfg = FitConfig(epochs=1)
    with pytest.raises(ValueError, match="monitor='val_acc' is not measured"):
        FitTrainer(model, train, None, cfg, tmp_path, loss_fn=mse, monitor="val_acc")
    with pytest.raises(ValueError, match="mode must be 'min' or 'max'"):
        FitTrainer(model, train, None, cfg, tmp_path, loss_fn=mse, mode="up")
    with pytest.raises(ValueError, match=r"needs a \.config"):
        FitTrainer(nn.Linear(1, 1), train, None, cfg, tmp_path, loss_fn=mse)
    with pytest.raises(ValueError, match="set at least one stopping rule"):
        FitConfig()
    with pytest.raises(ValueError, match="eval_every must be a positive integer"):
        FitConfig(epochs=1, eval_every=0)
    trainer(tmp_path / "run", max_steps=1).fit()
    with pytest.raises(ValueError, match="already holds a training run"):
        trainer(tmp_path / "run", max_steps=1)
    t = trainer(tmp_path / "m", max_steps=2)
    t.metrics_fn = lambda model, val: {"other": 1.0}
    with pytest.raises(ValueError, match="metrics_fn returned no 'mae'; it returned other"):
        t.fit()


def test_batches_cover_every_example_once_per_epoch():
    n = 23
    b = Batches({"i": torch.arange(n), "v": torch.arange(n) * 2.0}, 5, seed=7)
    assert b.num_batches == 5 and len(b) == 5
    for epoch in range(3):
        seen = torch.cat([b.batch(epoch * 5 + k)["i"] for k in range(5)])
        assert sorted(seen.tolist()) == list(range(n))
        pair = b.batch(epoch * 5)
        assert torch.equal(pair["v"], pair["i"] * 2.0)  # rows stay aligned
    assert not torch.equal(b.order(0), b.order(1))  # reshuffled per epoch
    again = Batches({"i": torch.arange(n)}, 5, seed=7)
    assert torch.equal(again.batch(12)["i"], b.batch(12)["i"])  # rebuilt from (seed, epoch)
    plain = Batches({"i": torch.arange(n)}, 5, shuffle=False)
    assert torch.cat([x["i"] for x in plain]).tolist() == list(range(n))


def test_batches_cut_padding_to_the_longest_sequence():
    x = torch.zeros(4, 10, 2)
    lengths = torch.tensor([3, 2, 9, 4])
    b = Batches({"x": x, "lengths": lengths}, 2, shuffle=False, lengths_key="lengths",
                time_keys=("x",))  # fmt: skip
    assert b.batch(0)["x"].shape == (2, 3, 2)
    assert b.batch(1)["x"].shape == (2, 9, 2)
    with pytest.raises(ValueError, match="same number of examples"):
        Batches({"x": x, "y": torch.zeros(3)}, 2)
    with pytest.raises(ValueError, match="lengths_key 'len' is not one of the tensors"):
        Batches({"x": x}, 2, lengths_key="len")
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        Batches({"x": x}, 0)


def test_train_config_json_is_written(tmp_path):
    trainer(tmp_path / "run", max_steps=3).fit()
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert saved["max_steps"] == 3 and saved["eval_every"] is None


def test_resuming_a_finished_run_logs_its_final_evaluation_once(tmp_path):
    # 10 steps; checkpoints at 5 and 10, evaluations at 4 and 8, then the final one at 10,
    # which the step-10 checkpoint (saved before it) does not know of. A resume of the
    # finished run, as after a kill before exit, evaluates again: one row, not two.
    settings = {"epochs": None, "max_steps": 10, "eval_every": 4, "checkpoint_every": 5}
    trainer(tmp_path / "run", **settings).fit()
    trainer(tmp_path / "run", resume=True, **settings).fit()
    with open(tmp_path / "run" / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["step"] == "10"]
    assert [bool(r["val_loss"]) for r in rows] == [False, True]  # log_every 2: a training row

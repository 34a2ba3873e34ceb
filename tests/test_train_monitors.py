"""Training monitors: pre/post-clip and per-group gradient norms, gate saturation."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

import pytest
import torch
from rich.console import Console
from torch import nn

from rnnkit.cells import GRUCell, LSTMCell
from rnnkit.layers import Recurrent
from rnnkit.models import LanguageModel, LMConfig
from rnnkit.models.builder import build_stack
from rnnkit.settings import JSONSettings
from rnnkit.train import TrainConfig, Trainer
from rnnkit.train.fit import Batches, FitConfig, FitTrainer
from rnnkit.train.metrics import COLUMNS
from rnnkit.train.monitors import gate_saturation, param_group

V, B, T = 7, 4, 8
PERIODIC = [i % V for i in range(2000)]


# ------------------------------------------------------------------ helpers


@dataclass
class NoConfig(JSONSettings):
    pass


class Linear2(nn.Module):
    """``loss = w . a`` for a batch vector ``a``: the gradient is exactly ``a``."""

    def __init__(self) -> None:
        super().__init__()
        self.config = NoConfig()
        self.w = nn.Parameter(torch.zeros(2))


class SeqRegressor(nn.Module):
    """Two stacked GRU layers and a head: (B, T, 1) sequences -> one number."""

    def __init__(self) -> None:
        super().__init__()
        self.config = NoConfig()
        self.rnn = build_stack("gru", 1, 6, 2, dropout=0.3)
        self.head = nn.Linear(6, 1)

    def forward(self, x, lengths=None):
        y, _ = self.rnn.run(x.transpose(0, 1), None, lengths)  # (T, B, H)
        return self.head(y[-1]).squeeze(-1)


def seq_data(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 5, 1, generator=g) - 0.5
    return {"x": x, "y": x.sum(dim=(1, 2))}


def seq_loss(model, batch):
    return nn.functional.mse_loss(model(batch["x"]), batch["y"])


def fit_trainer(run_dir, *, resume=False, **overrides):
    torch.manual_seed(0)
    settings = {"max_steps": 12, "lr": 3e-2, "log_every": 2, "decay": "none", **overrides}
    return FitTrainer(
        SeqRegressor(),
        Batches(seq_data(48, 1), 8, seed=3),
        Batches(seq_data(16, 2), 8, shuffle=False),
        FitConfig(**settings),
        run_dir,
        loss_fn=seq_loss,
        progress=False,
        console=Console(file=io.StringIO()),
        resume=resume,
    )


class Stream:
    """B parallel token streams cut into (T, B) chunks (as rnnkit.data.StreamBatches)."""

    def __init__(self, ids) -> None:
        ids = torch.as_tensor(ids, dtype=torch.long)
        length = (len(ids) - 1) // B
        data = torch.stack([ids[b * length : b * length + length + 1] for b in range(B)])
        self.x, self.y = data[:, :-1], data[:, 1:]  # (B, length) each
        self.num_chunks = length // T
        self.tokens_per_chunk = B * T

    def chunk(self, i):
        cols = slice(i * T, (i + 1) * T)
        return self.x[:, cols].T.contiguous(), self.y[:, cols].T.contiguous()  # (T, B)


def lm_trainer(run_dir, *, resume=False, **overrides):
    torch.manual_seed(0)
    model = LanguageModel(
        LMConfig(vocab_size=V, hidden_size=8, num_layers=2, embedding_size=4, dropout=0.2)
    )
    settings = {"batch_size": B, "seq_len": T, "max_steps": 12, "lr": 0.02, "decay": "none"}
    settings |= {"log_every": 3, "eval_every": 1000, "clip_norm": 0.5, **overrides}
    return Trainer(
        model,
        Stream(PERIODIC),
        None,
        TrainConfig(**settings),
        run_dir,
        progress=False,
        console=Console(file=io.StringIO()),
        resume=resume,
    )


def read_rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------ gradient norms


def test_param_groups_follow_layer_indices_else_the_first_name():
    assert param_group("rnn.layers.1.cell.weight_hh") == "rnn.layers.1"
    assert param_group("encoder.rnn.layers.0.fwd.cell.bias_ih") == "encoder.rnn.layers.0"
    assert param_group("embedding.weight") == "embedding"
    assert param_group("layers.norm.weight") == "layers"  # no index after "layers"
    assert param_group("w") == "w"


@pytest.mark.parametrize(
    ("clip_norm", "clip_value", "clipped"),
    [
        (10.0, None, 5.0),  # |(3, 4)| = 5 < 10: nothing clipped
        (2.0, None, 2.0),  # scaled to the clip norm: (1.2, 1.6)
        (10.0, 1.0, math.sqrt(2.0)),  # each component cut to 1: (1, 1)
        (2.0, 1.0, math.sqrt(2.0)),  # (1.2, 1.6), then (1, 1)
    ],
)
def test_post_clip_norm_is_the_norm_of_the_applied_gradient(
    tmp_path, clip_norm, clip_value, clipped
):
    a = torch.tensor([[3.0, 4.0]]).expand(4, 2).contiguous()  # every batch: a = (3, 4)
    settings = {"max_steps": 3, "lr": 1e-3, "optimizer": "sgd", "log_every": 1, "decay": "none"}
    config = FitConfig(**settings, clip_norm=clip_norm, clip_value=clip_value)
    trainer = FitTrainer(
        Linear2(),
        Batches({"a": a}, 4, shuffle=False),
        None,
        config,
        tmp_path,
        loss_fn=lambda model, batch: (model.w * batch["a"][0]).sum(),  # gradient (3, 4)
        progress=False,
        console=Console(file=io.StringIO()),
    )
    history = trainer.fit().history
    assert [r["grad_norm"] for r in history] == pytest.approx([5.0] * 3, rel=1e-6)
    # clip_grad_norm_ scales by clip_norm / (norm + 1e-6): equal to clip_norm within 1e-6.
    assert [r["grad_norm_clipped"] for r in history] == pytest.approx([clipped] * 3, rel=1e-6)
    assert [r["grad_norm/w"] for r in history] == pytest.approx([5.0] * 3, rel=1e-6)


def test_group_norms_square_sum_to_the_global_norm(tmp_path):
    history = lm_trainer(tmp_path, log_every=1, max_steps=5).fit().history
    groups = ("embedding", "rnn.layers.0", "rnn.layers.1", "head")
    for row in history:
        assert {k for k in row if k.startswith("grad_norm/")} == {f"grad_norm/{g}" for g in groups}
        total = sum(row[f"grad_norm/{g}"] ** 2 for g in groups)
        assert total == pytest.approx(row["grad_norm"] ** 2, rel=1e-5)
        assert min(row[f"grad_norm/{g}"] for g in groups) > 0
        # clip_norm=0.5: the applied norm is the smaller of the two.
        assert row["grad_norm_clipped"] == pytest.approx(min(row["grad_norm"], 0.5), rel=1e-5)


# ------------------------------------------------------------------ gate saturation


def hand_lstm(cell: LSTMCell, x, lengths):
    """Input/forget saturated fractions over the real steps, from the LSTM equations."""
    H = cell.hidden_size
    W, U = cell.weight_ih.detach().double(), cell.weight_hh.detach().double()
    b = (cell.bias_ih + cell.bias_hh).detach().double()
    h = torch.zeros(x.shape[1], H, dtype=torch.float64)
    c = torch.zeros_like(h)
    hits = {"input": 0, "forget": 0, "output": 0}
    count = 0
    for t in range(x.shape[0]):
        pre = x[t].double() @ W.T + h @ U.T + b  # (B, 4H)
        i, f = torch.sigmoid(pre[:, :H]), torch.sigmoid(pre[:, H : 2 * H])
        g, o = torch.tanh(pre[:, 2 * H : 3 * H]), torch.sigmoid(pre[:, 3 * H :])
        c_new = f * c + i * g
        h_new = o * torch.tanh(c_new)
        keep = (t < lengths)[:, None]  # (B, 1)
        for name, gate in (("input", i), ("forget", f), ("output", o)):
            hits[name] += int((((gate < 0.05) | (gate > 0.95)) & keep).sum())
        count += int(keep.sum()) * H
        c, h = torch.where(keep, c_new, c), torch.where(keep, h_new, h)
    return {k: v / count for k, v in hits.items()}


class LayerModel(nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x, lengths=None):
        return self.layer.run(x, None, lengths)


def test_lstm_forget_bias_20_saturates_the_forget_gate_and_input_matches_hand():
    torch.manual_seed(1)
    cell = LSTMCell(3, 5)
    with torch.no_grad():
        cell.weight_ih.mul_(8.0)  # a wide spread of input-gate pre-activations
        cell.bias_ih[5:10] = 20.0
        cell.bias_hh[5:10] = 0.0
    model = LayerModel(Recurrent(cell))
    x = torch.randn(6, 4, 3)  # (T, B, I)
    lengths = torch.tensor([6, 3, 5, 1])
    model.train()
    rng = torch.get_rng_state()
    sat = gate_saturation(model, lambda: model(x, lengths))
    assert torch.equal(torch.get_rng_state(), rng) and model.training  # no draws, mode back
    hand = hand_lstm(cell, x, lengths)
    assert set(sat) == {f"gate_sat/layer/{g}" for g in ("input", "forget", "output")}
    assert sat["gate_sat/layer/forget"] == 1.0 == hand["forget"]
    assert sat["gate_sat/layer/input"] == pytest.approx(hand["input"], abs=1e-12)
    assert sat["gate_sat/layer/output"] == pytest.approx(hand["output"], abs=1e-12)
    assert 0.2 < hand["input"] < 0.9  # a non-trivial fraction, counted over 15 real steps


def test_gru_update_and_reset_saturation():
    torch.manual_seed(2)
    cell = GRUCell(2, 4)
    with torch.no_grad():
        for p in cell.parameters():
            p.mul_(0.01)  # reset pre-activations near 0: sigmoid near 0.5
        cell.bias_ih[4:8] = -20.0  # update gate pinned near 0
    model = LayerModel(Recurrent(cell, reverse=True))
    sat = gate_saturation(model, lambda: model(torch.randn(5, 3, 2)))
    assert sat == {"gate_sat/layer/reset": 0.0, "gate_sat/layer/update": 1.0}


@pytest.mark.parametrize("reverse", [False, True])
def test_probe_steps_through_the_first_steps_a_layer_reads(reverse):
    torch.manual_seed(3)
    model = LayerModel(Recurrent(LSTMCell(2, 8), reverse=reverse))
    x = 3 * torch.randn(10, 4, 2)  # large inputs: some gates saturate
    capped = gate_saturation(model, lambda: model(x), max_steps=4)
    part = x[6:] if reverse else x[:4]  # the steps it reads first, from its initial state
    alone = gate_saturation(model, lambda: model(part))
    assert capped == pytest.approx(alone, abs=1e-12)
    assert capped != pytest.approx(gate_saturation(model, lambda: model(x)), abs=1e-3)


# ------------------------------------------------------------------ in the trainers


def test_lm_trainer_logs_the_monitors_after_the_fixed_columns(tmp_path):
    result = lm_trainer(tmp_path).fit()
    rows = read_rows(tmp_path)
    header = tuple(rows[0])
    assert header[: len(COLUMNS)] == COLUMNS
    assert header[len(COLUMNS)] == "grad_norm_clipped"
    layers = ("rnn.layers.0", "rnn.layers.1")
    gates = [f"gate_sat/{la}/{g}" for la in layers for g in ("input", "forget", "output")]
    assert set(gates) <= set(header)
    assert [int(r["step"]) for r in rows] == [3, 6, 9, 12]
    for row, logged in zip(rows, result.history, strict=True):
        for name in gates:
            assert float(row[name]) == logged[name] and 0.0 <= logged[name] <= 1.0
        assert float(row["grad_norm_clipped"]) <= 0.5 + 1e-6


def test_fit_trainer_logs_the_monitors(tmp_path):
    result = fit_trainer(tmp_path, log_every=1).fit()
    rows = read_rows(tmp_path)
    header = set(rows[0])
    expected = {"grad_norm_clipped", "grad_norm/rnn.layers.0", "grad_norm/rnn.layers.1"}
    expected |= {"grad_norm/head"} | {f"gate_sat/rnn.layers.{k}/reset" for k in (0, 1)}
    expected |= {f"gate_sat/rnn.layers.{k}/update" for k in (0, 1)}
    assert expected <= header
    assert [r["step"] for r in result.history] == list(range(1, 13))  # 6, 12: evaluations
    for row in result.history:  # one step per row: its norms' squares add up
        norms = [row[f"grad_norm/{g}"] for g in ("rnn.layers.0", "rnn.layers.1", "head")]
        assert sum(n * n for n in norms) == pytest.approx(row["grad_norm"] ** 2, rel=1e-5)
        assert 0.0 <= row["gate_sat/rnn.layers.1/update"] <= 1.0


def monitor_rows(history):
    skip = ("elapsed", "tokens_per_s", "examples_per_s")
    return [{k: v for k, v in r.items() if k not in skip} for r in history]


def test_lm_resume_is_exact_with_the_monitors(tmp_path):
    whole = lm_trainer(tmp_path / "a").fit()
    lm_trainer(tmp_path / "b", max_steps=7).fit()  # stops between two log rows
    resumed = lm_trainer(tmp_path / "b", resume=True).fit()
    assert monitor_rows(resumed.history) == monitor_rows(whole.history)


def test_fit_resume_is_exact_with_the_monitors(tmp_path):
    whole = fit_trainer(tmp_path / "a").fit()
    fit_trainer(tmp_path / "b", max_steps=8).fit()
    resumed = fit_trainer(tmp_path / "b", resume=True).fit()

    def logs(history):  # the cut run adds a final evaluation at step 8
        return monitor_rows([r for r in history if r["val_loss"] is None or r["step"] != 8])

    assert logs(resumed.history) == logs(whole.history)

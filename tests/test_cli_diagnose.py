"""`rnnkit diagnose`: gradient flow of fresh cells and of trained lm / forecast / classify runs.

The command is called through ``rnnkit.cli.main.main`` (its error handling) with a parser
holding `diagnose` (``_diagnose``), so the tests run before and after it is registered.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import importlib
import io
import json
import math
import random
import re
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from torch import nn

from rnnkit.cli.diagnose import (
    FinalLogits,
    add_diagnose_parser,
    cell_probe,
    forecast_loss,
    run_probe,
)
from rnnkit.diagnostics import gradient_flow

cli_main = importlib.import_module("rnnkit.cli.main")  # the package re-exports main()
main = cli_main.main
FILES = ("gradient_lag.png", "jacobians.png", "spectrum.png", "diagnose.json", "report.html")
PNG = b"\x89PNG\r\n\x1a\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rnnkit")
    add_diagnose_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def _diagnose(*argv) -> int:
    """``rnnkit diagnose ARGV`` through main()'s error handling."""
    with mock.patch.object(cli_main, "build_parser", _parser):
        return main(["diagnose", *map(str, argv)])


def _record(out: Path) -> dict:
    return json.loads((out / "diagnose.json").read_text())


def _fmt(value: float) -> str:
    return f"{value:.4g}"  # as GradientFlow.summary() and the report print numbers


# ---- the --cell form -----------------------------------------------------------------


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """rnn, lstm and irnn at T = 100: (out dir, printed text) per cell."""
    root = tmp_path_factory.mktemp("fresh")
    runs = {}
    for cell in ("rnn", "lstm", "irnn"):
        out = root / cell
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert _diagnose("--cell", cell, "--hidden-size", 64, "--steps", 100, "--out", out) == 0
        runs[cell] = (out, printed.getvalue())
    return runs


def test_fresh_tanh_rnn_vanishes_far_faster_than_lstm_and_irnn(fresh):
    rnn, lstm, irnn = (_record(fresh[c][0]) for c in ("rnn", "lstm", "irnn"))
    assert rnn["steps"] == lstm["steps"] == 100
    # tanh Elman, default init: ×0.61 per step, ~1e-21 over 98 lags (measured 0.6086, 7.3e-22).
    assert rnn["verdict"] == "vanishing"
    assert 0.55 < rnn["decay_rate"] < 0.67 and rnn["factor"] < 1e-18
    # LSTM with forget bias 1: ×0.86 per step (measured 0.8589, 3.4e-7): far slower decay.
    assert 0.8 < lstm["decay_rate"] < 0.92 and 1e-9 < lstm["factor"] < 1e-4
    assert lstm["factor"] / rnn["factor"] > 1e10
    # IRNN: W_hh = I, ReLU: the gradient is carried (measured 0.991 per step, 0.41 in all).
    assert irnn["verdict"] == "healthy" and 0.97 < irnn["decay_rate"] < 1.02
    assert irnn["spectral_radius"] == pytest.approx(1.0) and irnn["gamma"] == 1.0
    # the fit is the least-squares line through log ‖∂L_T/∂h_k‖ over lags 1..T-1
    norms = np.array(rnn["last_row"])[::-1]
    slope = np.polyfit(np.arange(1, 100), np.log(norms[1:]), 1)[0]
    assert rnn["decay_rate"] == pytest.approx(math.exp(slope), rel=1e-12)
    assert rnn["factor"] == pytest.approx(math.exp(slope * 98), rel=1e-9)


def test_fresh_rnn_gradients_match_a_hand_computation(fresh):
    """L_T = Σ h_T: ∂L_T/∂h_T = 1, and one step back 1ᵀ diag(1 - h_T²) W_hh per sequence."""
    record = _record(fresh["rnn"][0])
    probe = cell_probe("rnn", hidden_size=64, steps=100)  # the same seed, model and inputs
    stack = probe.model.double()
    with torch.no_grad():
        y, _ = stack.run(probe.inputs.double(), None, None)  # (T, B, H)
    assert record["last_row"][-1] == pytest.approx(math.sqrt(8 * 64), rel=1e-12)  # ‖ones(B, H)‖
    w_hh = stack.layers[0].cell.weight_hh.detach()
    back = (1 - y[-1] ** 2) @ w_hh  # (B, H): ∂(Σ h_T)/∂h_{T-1}
    assert record["last_row"][-2] == pytest.approx(float(back.norm()), rel=1e-9)
    sv = torch.linalg.svdvals(w_hh)
    assert record["max_singular_value"] == pytest.approx(float(sv[0]), rel=1e-9)
    assert record["bound"] == pytest.approx(float(sv[0]), rel=1e-9)  # λ₁γ with γ = 1


def test_fresh_files_and_self_contained_report(fresh):
    out, printed = fresh["rnn"]
    for name in (*FILES, "heatmap.png"):  # T = 100 ≤ 200: every pair, so a heat map
        assert (out / name).is_file(), name
    for name in ("gradient_lag.png", "jacobians.png", "spectrum.png", "heatmap.png"):
        assert (out / name).read_bytes()[:8] == PNG
    assert not list(out.glob(".*tmp-*"))  # atomic writes left no temporary files
    record = _record(out)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert '<div class="verdict"' in page and ">vanishing</div>" in page
    for key in ("decay_rate", "factor", "spectral_radius", "max_singular_value", "bound"):
        text = _fmt(record[key])
        assert text in printed and text in page, key
    assert "halves every" in page and "--cell lstm" in page  # the explanation and advice
    # four PNGs embedded, byte for byte the files; nothing loaded from anywhere
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(uris) == 4
    assert base64.b64decode(uris[0]) == (out / "gradient_lag.png").read_bytes()
    assert base64.b64decode(uris[3]) == (out / "heatmap.png").read_bytes()
    assert len(re.findall(r'(?:src|href)="', page)) == 4
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert f"wrote {out}" in printed


def test_fresh_lstm_forget_bias_keeps_the_gradient(tmp_path, capsys):
    """A forget bias of 3 (f ≈ σ(3) = 0.95) carries the gradient 100 steps back."""
    out = tmp_path / "lstm3"
    assert _diagnose("--cell", "lstm", "--forget-bias", 3, "--pairs", "last", "--out", out) == 0
    record = _record(out)
    assert record["verdict"] == "healthy"  # measured: 1.010 per step, 2.68 over 98 lags
    assert 0.97 < record["decay_rate"] < 1.05 and 0.1 < record["factor"] < 10
    assert not (out / "heatmap.png").exists()  # --pairs last: no heat map
    assert record["diagnose"]["settings"]["forget_bias"] == 3.0
    plain, three = (cell_probe("lstm", forget_bias=f).model.layers[0].cell for f in (None, 3.0))
    shift = (three.bias_ih - plain.bias_ih).detach()  # only the forget slice, by 3 - 1
    H = 64
    torch.testing.assert_close(shift[H : 2 * H], torch.full((H,), 2.0), rtol=0, atol=1e-6)
    assert torch.all(shift[:H] == 0) and torch.all(shift[2 * H :] == 0)
    assert "verdict: healthy" in capsys.readouterr().out


# ---- runs of the training commands ---------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    rng = random.Random(0)
    words = ["the cat", "a dog", "sat on", "the mat", "and ran", "away."]
    text = root / "text.txt"
    text.write_text("\n".join(" ".join(rng.choice(words) for _ in range(8)) for _ in range(80)))
    series = root / "series.csv"
    rows = [f"{math.sin(0.3 * i) + 0.1 * math.cos(1.7 * i):.5f}" for i in range(200)]
    series.write_text("y\n" + "\n".join(rows) + "\n")
    tiny = ["--max-steps", "3", "--hidden-size", "16", "--no-progress"]
    lm = ["lm", "train", "--text", text, "--num-layers", "1", "--embedding-size", "8"]
    lm += ["--batch-size", "4", "--seq-len", "16", "--sample-length", "0"]
    forecast = ["forecast", "train", "--csv", series, "--target", "y", "--window", "12"]
    classify = ["classify", "train", "--example", "digits"]
    out = {}
    for name, argv in (("lm", lm), ("forecast", forecast), ("classify", classify)):
        out[name] = root / name
        assert main([*map(str, argv), *tiny, "--out", str(root / name)]) == 0
    return out


def _softmax_grad(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """∂ mean cross-entropy / ∂ logits, (B, C)."""
    onehot = nn.functional.one_hot(labels, logits.shape[-1]).to(logits.dtype)
    return (torch.softmax(logits, -1) - onehot) / len(labels)


def test_lm_run_every_step_cross_entropy(runs, capsys):
    run = runs["lm"]
    assert _diagnose(run, "--steps", 12, "--batch", 4, "--seed", 1) == 0
    out = run / "diagnose"
    for name in (*FILES, "heatmap.png"):
        assert (out / name).is_file(), name
    record = _record(out)
    assert record["steps"] == 12 and record["loss"] == "cross-entropy"
    assert record["diagnose"]["source"]["task"] == "lm"
    assert record["diagnose"]["settings"]["hidden_size"] == 16
    # lag 0: ∂CE_T/∂h_T = (softmax - onehot)/B · W_out, ∂CE_T/∂c_T = 0 (LSTM state (h, c))
    probe = run_probe(run, "best", 12, 4, 1)
    tokens = probe.batch["tokens"]  # (T+1, B)
    model = probe.model.double().eval()
    with torch.no_grad():
        logits, _ = model(tokens[:-1])  # (T, B, V)
        grad_h = _softmax_grad(logits[-1], tokens[-1]) @ model.head.weight  # (B, H)
    assert record["last_row"][-1] == pytest.approx(float(grad_h.norm()), rel=1e-9)
    printed = capsys.readouterr().out
    assert _fmt(record["decay_rate"]) in printed and f"wrote {out}" in printed


def test_forecast_run_loss_at_the_last_step(runs, tmp_path, capsys):
    run = runs["forecast"]
    out = tmp_path / "fc"
    assert _diagnose(run, "--out", out, "--pairs", "all") == 0
    printed = capsys.readouterr().out
    assert "the loss is at the last step only" in printed  # a direct model: no heat map
    assert not (out / "heatmap.png").exists() and (out / "report.html").is_file()
    record = _record(out)
    assert record["steps"] == 12  # the model's window
    # lag 0: ∂MSE/∂h_T = 2 (mean - y) / (B · horizon) · W_head
    probe = run_probe(run, "best", None, 8, 0)
    model = probe.model.double().eval()
    x, y = probe.batch["x"], probe.batch["y"]
    with torch.no_grad():
        mean, _ = model(x)  # (B, horizon, 1)
        grad_mean = 2 * (mean - y).reshape(len(x), -1) / y.numel()
        grad_h = grad_mean @ model.head.weight  # (B, H)
    assert record["last_row"][-1] == pytest.approx(float(grad_h.norm()), rel=1e-9)


def test_classify_run_cross_entropy_after_the_last_step(runs, capsys):
    run = runs["classify"]
    assert _diagnose(run, "--checkpoint", "last") == 0
    out = run / "diagnose"
    record = _record(out)
    assert record["steps"] == 8  # digits by rows: 8 steps of 8 pixels
    assert record["loss"] == "custom (cross-entropy of the logits after the last step)"
    assert not (out / "heatmap.png").exists()
    # lag 0 (a GRU, pooling "last"): ∂CE/∂h_T = (softmax - onehot)/B · W_head
    probe = run_probe(run, "last", None, 8, 0)
    x, labels = probe.batch["x"].double(), probe.batch["labels"]
    from rnnkit.cli.classify import load_run

    model = load_run(run, "last")[0].double()
    with torch.no_grad():
        logits = model(x)
        grad_h = _softmax_grad(logits, labels) @ model.head.weight
    assert record["last_row"][-1] == pytest.approx(float(grad_h.norm()), rel=1e-9)
    assert "verdict:" in capsys.readouterr().out


# ---- the loss wrappers are the models' own losses ------------------------------------


def _float64_model(model_class, config):
    """``model_class(config)`` in float64 and eval mode, its weights drawn from seed 0."""
    torch.manual_seed(0)
    return model_class(config).double().eval()


@pytest.mark.parametrize(
    "settings",
    [
        {"pooling": "last"},
        {"pooling": "mean", "cell": "rnn"},
        {"pooling": "attention", "num_layers": 2},
        {"pooling": "last", "bidirectional": True},
    ],
)
def test_final_logits_equal_the_classifier_at_the_last_step(settings):
    from rnnkit.models.classifier import ClassifierConfig, SequenceClassifier

    cfg = ClassifierConfig(num_classes=3, input_size=2, hidden_size=5, **settings)
    model = _float64_model(SequenceClassifier, cfg)
    x = torch.randn(4, 7, 2, dtype=torch.float64)  # (B, T, F)
    with torch.no_grad():
        y, _ = model.outputs(x)  # (T, B, O)
        per_step = FinalLogits(model)(y)  # (T, B, C)
        torch.testing.assert_close(per_step[-1], model(x), rtol=1e-12, atol=1e-12)
        if not cfg.bidirectional:  # a prefix is a shorter sequence (one-way stacks)
            torch.testing.assert_close(per_step[2], model(x[:, :3]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "settings",
    [
        {"mode": "direct", "horizon": 3, "probabilistic": True, "window_norm": True},
        {"mode": "autoregressive", "window_norm": True},
    ],
)
def test_forecast_loss_is_the_forecasters_loss(settings):
    from rnnkit.models.forecaster import Forecaster, ForecasterConfig

    cfg = ForecasterConfig(n_inputs=1, window=6, hidden_size=4, **settings)
    model = _float64_model(Forecaster, cfg)
    x = torch.randn(3, 6, 1, dtype=torch.float64)  # (B, T, I)
    rows = 3 if cfg.mode == "direct" else 6
    y = torch.randn(3, rows, 1, dtype=torch.float64)
    w = torch.ones(3, rows, dtype=torch.float64)
    loss, x_in = forecast_loss(model, x, y, w)
    with torch.no_grad():
        out, _ = model.rnn.run(x_in.transpose(0, 1), None, None)  # (T, B, H)
        heads = model.head(out)  # (T, B, ·)
        losses = [float(loss(heads[t], None, t)) for t in range(6)]
        expected = float(model.loss(x, y, w))
    if cfg.mode == "direct":  # one loss, at the last step
        assert losses[:5] == [0.0] * 5 and losses[5] == pytest.approx(expected, rel=1e-12)
    else:  # one loss per step; the model's loss is their mean
        assert np.mean(losses) == pytest.approx(expected, rel=1e-12)


def test_forecast_and_lm_probes_batch_their_own_data(runs):
    probe = run_probe(runs["lm"], "best", 10, 3, 0)
    assert probe.inputs.shape == (10, 3) and probe.targets.shape == (10, 3)
    assert torch.equal(probe.inputs[1:], probe.targets[:-1])  # next-token targets
    flow = gradient_flow(probe.model, probe.inputs, probe.targets, pairs="last")
    assert flow.steps == 10 and flow.batch_size == 3
    probe = run_probe(runs["forecast"], "best", 20, 5, 0)
    assert probe.inputs.shape == (20, 5, 1) and probe.end_only
    torch.testing.assert_close(probe.inputs.transpose(0, 1), probe.batch["x"])  # no window_norm


# ---- mistakes: one line, exit code 2 -------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "give either RUN_DIR"),
        (["{lm}", "--cell", "rnn"], "not both"),
        (["--cell", "rnn", "--steps", "0"], "--steps must be at least 2"),
        (["--cell", "rnn", "--batch", "0"], "--batch must be a positive integer"),
        (["--cell", "gru", "--forget-bias", "3"], "--forget-bias applies to --cell lstm"),
        (["--cell", "lstm", "--forget-bias", "nan"], "--forget-bias must be a finite number"),
        (["--cell", "rnn", "--checkpoint", "last"], "--checkpoint applies to RUN_DIR"),
        (["--cell", "rnn", "--layer", "1"], "layer=1 is out of range"),
        (["{missing}"], "no such run directory"),
        (["{not_a_run}"], "is not a run"),
        (["{lm}", "--hidden-size", "8"], "--hidden-size applies to the --cell form"),
        (["{lm}", "--steps", "100000"], "--steps 100000 needs at least 100001"),
        (["{lm}", "--out", "{a_file}"], "is a file"),
    ],
)
def test_mistakes_give_one_line_and_exit_code_2(argv, message, runs, tmp_path, capsys):
    (tmp_path / "not_a_run").mkdir()
    (tmp_path / "not_a_run" / "notes.txt").write_text("hello")
    (tmp_path / "a_file").write_text("x")
    names = {
        "lm": runs["lm"],
        "missing": tmp_path / "missing",
        "not_a_run": tmp_path / "not_a_run",
        "a_file": tmp_path / "a_file",
    }
    argv = [a.format(**names) for a in argv]
    assert _diagnose(*argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnkit: error: ") and err.count("\n") == 1, err
    assert message in err and "Traceback" not in err

"""``rnnkit bench memory``: the task generators' numbers, the quick suite, the CLI's errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from rnnkit.bench import memory
from rnnkit.bench.memory_model import MemoryNet, MemoryNetConfig
from rnnkit.bench.memory_tasks import (
    ADDING_BASELINE,
    PAPER_ADDING_BASELINE,
    make_task,
)
from rnnkit.cli.main import main
from rnnkit.data.synthetic import adding_problem, copy_memory, copy_memory_baseline


def test_adding_targets_are_the_marked_sums_and_the_baseline_is_one_sixth():
    g = torch.Generator().manual_seed(0)
    x, y = adding_problem(200_000, 20, g)  # (20, 200000, 2), (200000,)
    marked = x[..., 0] * x[..., 1]
    assert torch.allclose(y, marked.sum(0))
    assert torch.equal(x[..., 1].sum(0), torch.full((200_000,), 2.0))
    mse_of_one = float(((y - 1.0) ** 2).mean())  # always answer 1
    assert abs(mse_of_one - 1 / 6) < 0.002
    assert abs(mse_of_one - ADDING_BASELINE) < 0.002
    # Le et al.'s printed 0.1767 is ~0.01 above what U(0,1) values give: not reproduced.
    assert abs(mse_of_one - PAPER_ADDING_BASELINE) > 0.008


def test_copy_memory_layout():
    g = torch.Generator().manual_seed(1)
    T, R = 7, 10
    x, y = copy_memory(5, T, g)  # (T + 2R, B, 10), (T + 2R, B)
    tokens = x.argmax(-1)
    assert x.shape == (T + 2 * R, 5, 10) and torch.equal(x.sum(-1), torch.ones(T + 2 * R, 5))
    data = tokens[:R]
    assert int(data.min()) >= 1 and int(data.max()) <= 8
    assert torch.equal(tokens[R : R + T - 1], torch.zeros(T - 1, 5, dtype=torch.long))
    assert torch.equal(tokens[R + T - 1], torch.full((5,), 9))  # the delimiter
    assert torch.equal(tokens[R + T :], torch.zeros(R, 5, dtype=torch.long))
    assert torch.equal(y[: T + R], torch.zeros(T + R, 5, dtype=torch.long))
    assert torch.equal(y[T + R :], data)  # the symbols, in order, after the delimiter
    with pytest.raises(ValueError, match="blanks"):
        copy_memory(5, 0, g)


@pytest.mark.parametrize("T", [1, 50, 100])
def test_copy_baseline_is_the_memoryless_guess(T):
    task = make_task("copy")
    _x, y = task.test_set(T, 300, seed=2)
    # Blank with certainty for T + 10 steps, then uniform over the 8 symbols.
    logits = torch.full((T + 20, 300, 10), -1e4)
    logits[: T + 10, :, 0] = 0.0
    logits[T + 10 :, :, 1:9] = 0.0
    ce = task.score(logits, y)
    expected = 10 * math.log(8) / (T + 20)
    assert ce == pytest.approx(expected, rel=1e-5)
    assert copy_memory_baseline(T) == pytest.approx(expected, rel=1e-12)
    assert task.threshold(T) == pytest.approx(0.1 * expected)
    assert task.solved(0.09 * expected, T) and not task.solved(0.11 * expected, T)


def test_digits_task_is_64_pixel_steps_with_a_majority_baseline():
    task = make_task("digits")
    x, y = task.test_set(999, 0, 0)  # the fixed test split, whatever T and size
    assert x.shape == (64, 359, 1) and len(y) == 359
    assert task.baseline(64) == pytest.approx(np.bincount(y.numpy()).max() / 359)
    assert task.solved(0.9, 64) and not task.solved(0.89, 64)
    xb, yb = task.train_batch(8, 64, torch.Generator().manual_seed(0))
    assert xb.shape == (64, 8, 1) and float(xb.max()) <= 1.0 and int(yb.max()) <= 9


def test_evaluate_in_chunks_is_the_whole_set_mse(monkeypatch):
    task = make_task("adding")
    torch.manual_seed(0)
    model = MemoryNet(MemoryNetConfig(cell="rnn", input_size=2, hidden_size=8))
    x, y = task.test_set(12, 250, seed=3)
    with torch.no_grad():
        direct = float(((model(x).squeeze(-1) - y) ** 2).mean())
    monkeypatch.setattr(memory, "EVAL_CHUNK", 64)  # 4 uneven chunks
    assert memory.evaluate(model, task, x, y) == pytest.approx(direct, rel=1e-5)


def test_quick_suite_through_the_cli(tmp_path, capsys):
    out = tmp_path / "quick"
    assert main(["bench", "memory", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = [r for r in printed.splitlines() if r.startswith("| adding |")]
    assert len(rows) == 3
    report = json.loads((out / "memory.json").read_text())
    assert report["complete"] is True
    runs = {r["cell"]: r for r in report["runs"]}
    assert set(runs) == {"rnn", "irnn", "lstm"}
    for r in runs.values():
        assert r["T"] == 50 and r["clip"] == 1.0 and r["steps"] == 1000
        assert r["baseline"] == pytest.approx(1 / 6)
        assert [s for s, _ in r["curve"]] == list(range(0, 1001, 50))
        # an untrained read-out is far from the sums (mean 1): well above the baseline
        assert r["curve"][0][1] > 0.1
    lstm = runs["lstm"]
    assert lstm["final"] < 0.1 * ADDING_BASELINE  # clearly learned the task at T = 50
    assert lstm["solved_at"] is not None and lstm["solved_at"] <= 1000
    assert runs["rnn"]["final"] > lstm["final"]
    # The trained models' ‖∂L_T/∂h_k‖: the tanh RNN's vanishes, the LSTM's carries across T.
    assert runs["rnn"]["grad_rate"] < 0.7 and runs["rnn"]["grad_verdict"] == "vanishing"
    assert 0.9 < lstm["grad_rate"] < 1.1 and lstm["grad_verdict"] == "healthy"
    png = (out / "memory_adding_T50.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert not list(out.glob("*.tmp*"))  # atomic writes left nothing behind


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tasks", "adding,parity"], "unknown task 'parity'"),
        (["--cells", "lstm,transformer"], "unknown cell 'transformer'"),
        (["--lengths", "0"], "lengths must be integers >= 2, got 0"),
        (["--steps", "0"], "steps must be a positive integer"),
        (["--clips", "-1"], "clip norms must be positive"),
        (["--optimizer", "sgd"], "unknown optimizer 'sgd'"),
    ],
)
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, flags, message):
    code = main(["bench", "memory", "--quick", *flags, "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("rnnkit: error: ") and message in err
    assert err.count("\n") == 1
    assert not (tmp_path / "x").exists()  # nothing trained, nothing written

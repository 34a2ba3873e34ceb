"""Data-parallel training: 2 processes (gloo, CPU) make the updates 1 process makes.

The 2-process runs start ``python -m rnnkit ...`` twice with the environment ``torchrun``
sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT); the 1-process runs are
in-process ``main([...])`` calls. Float32 models: weights and logged figures must agree to
float rounding (the gradient sums run in another order): logged figures within 1e-6
relative, weights within 1e-6 absolute.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from rnnkit.cli.main import main
from rnnkit.data import StreamBatches
from rnnkit.train import distributed
from rnnkit.train.batches import Batches

RTOL, ATOL = 1e-5, 1e-6  # float32, sums in another order
# Columns that differ between runs by their nature (wall-clock time and speed).
TIMED = ("elapsed", "tokens_per_s", "examples_per_s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], cwd: Path, n: int = 2) -> list[tuple[int, str, str]]:
    """``rnnkit args`` on ``n`` processes as torchrun starts them: (exit code, out, err) each."""
    return launch_script(["-m", "rnnkit", *args], cwd, n)


def launch_script(args: list[str], cwd: Path, n: int = 2) -> list[tuple[int, str, str]]:
    """``python args`` on ``n`` processes as torchrun starts them: (exit code, out, err) each."""
    port = str(free_port())
    procs = []
    for rank in range(n):
        env = os.environ | {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(n),
            "LOCAL_WORLD_SIZE": str(n),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
            "OMP_NUM_THREADS": "1",
        }
        command = [sys.executable, *args]
        procs.append(
            subprocess.Popen(
                command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        )
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        results.append((proc.returncode, out.decode(), err.decode()))
    return results


def last_weights(run: Path) -> dict[str, torch.Tensor]:
    pointer = json.loads((run / "last.json").read_text())
    return load_file(str(run / pointer["path"] / "model.safetensors"))


def rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def files(run: Path) -> list[str]:
    """The run directory's files, checkpoint names without their random suffix."""
    return sorted(
        re.sub(r"-[0-9a-f]{8}(?=/|$)", "", str(p.relative_to(run))) for p in run.rglob("*")
    )


def max_weight_diff(a: Path, b: Path) -> float:
    wa, wb = last_weights(a), last_weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=RTOL, atol=ATOL)
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


def assert_same_rows(a: list[dict], b: list[dict]) -> float:
    """Every logged figure equal to float tolerance; the largest relative difference."""
    assert [r["step"] for r in a] == [r["step"] for r in b]
    worst = 0.0
    for ra, rb in zip(a, b, strict=True):
        assert ra.keys() == rb.keys()
        for key in ra:
            if key in TIMED or ra[key] == rb[key]:
                continue
            x, y = float(ra[key]), float(rb[key])
            assert y == pytest.approx(x, rel=RTOL, abs=ATOL), (ra["step"], key, x, y)
            worst = max(worst, abs(x - y) / max(abs(x), 1e-3))
    return worst


def assert_rank1_silent(results) -> None:
    assert [code for code, _, _ in results] == [0, 0], results[0][2] + results[1][2]
    assert results[1][1] == "" and results[1][2] == ""  # prints and bars: rank 0 only


@pytest.fixture(scope="module")
def text(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    words = shlex.split("the quick brown fox jumps over a lazy dog while cats sit on mats")
    lines = [" ".join(rng.choice(words, 10)) for _ in range(250)]
    path = tmp_path_factory.mktemp("data") / "text.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


LM_TOML = "[train]\nlog_every = 1\n"
LM_ARGS = shlex.split(
    "lm train --hidden-size 16 --num-layers 1 --embedding-size 8 --dropout 0 --engine native "
    "--batch-size 4 --seq-len 16 --eval-every 4 --decay none --no-progress --sample-length 0 "
    "--device cpu"
)


ODD = "batch_size 3 does not split evenly over 2 processes; use a multiple of 2"


def test_lm_two_processes_match_one_and_resume_with_one(text, tmp_path, one_thread):
    """Steps 1-4 on 2 processes equal 1 process's; resumed on 1, steps 5-8 equal too."""
    (tmp_path / "lm.toml").write_text(LM_TOML)
    args = [*LM_ARGS, "--text", str(text), "--config", str(tmp_path / "lm.toml")]
    one = tmp_path / "one"
    assert main([*args, "--max-steps", "4", "--out", str(one)]) == 0
    two = launch([*args, "--max-steps", "4", "--out", "two"], tmp_path)
    assert_rank1_silent(two)
    assert len(rows(one)) == 4 and rows(one)[3]["val_loss"]
    assert assert_same_rows(rows(one), rows(tmp_path / "two")) < 1e-6
    assert max_weight_diff(one, tmp_path / "two") < 1e-6
    assert files(tmp_path / "two") == files(one)  # and nothing else was written

    # Both runs go on to step 8 on 1 process (1 to 1 resumes exactly: tests/test_train.py).
    for run in (one, tmp_path / "two"):
        resumed = ["lm", "train", "--out", str(run), "--resume", "--max-steps", "8"]
        assert main([*resumed, "--no-progress", "--sample-length", "0", "--device", "cpu"]) == 0
    assert len(rows(one)) == 8 and rows(one)[7]["val_loss"]
    assert assert_same_rows(rows(one), rows(tmp_path / "two")) < 1e-6
    assert max_weight_diff(one, tmp_path / "two") < 1e-6


def test_batch_size_must_split_evenly(text, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(distributed, "world_size", lambda: 2)  # as under torchrun
    args = [*LM_ARGS, "--text", str(text), "--batch-size", "3", "--max-steps", "2"]
    assert main([*args, "--out", str(tmp_path / "odd")]) == 2
    assert capsys.readouterr().err == f"rnnkit: error: {ODD}\n"
    assert not (tmp_path / "odd").exists()


@pytest.mark.slow
def test_batch_size_must_split_evenly_on_every_process(text, tmp_path):
    args = [*LM_ARGS, "--text", str(text), "--batch-size", "3", "--max-steps", "2"]
    for code, out, err in launch([*args, "--out", "odd"], tmp_path):
        assert code == 2 and out == "" and err == f"rnnkit: error: {ODD}\n"
    assert not (tmp_path / "odd").exists()


@pytest.fixture(scope="module")
def trend(tmp_path_factory) -> Path:
    """30 rising, falling and flat sequences of 6 to 10 steps: 27 train (batches 13, 13, 1)."""
    rng = np.random.default_rng(0)
    lines = ["label," + ",".join(f"t{i}" for i in range(10))]
    for k in range(30):
        label = ("up", "down", "flat")[k % 3]
        slope = {"up": 0.3, "down": -0.3, "flat": 0.0}[label]
        n = int(rng.integers(6, 11))
        values = slope * np.arange(n) + 0.1 * rng.standard_normal(n)
        lines.append(f"{label}," + ",".join([f"{v:.4f}" for v in values] + [""] * (10 - n)))
    path = tmp_path_factory.mktemp("data") / "trend.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_classify_two_processes_match_one(trend, tmp_path, one_thread):
    """Slices of 6 and 7 sequences, and a last batch of one (rank 0 reads a weight-0 row)."""
    (tmp_path / "c.toml").write_text("[train]\nlog_every = 1\n")
    args = shlex.split("classify train --hidden-size 8 --cell lstm --batch-size 13 --max-steps 6")
    args += ["--eval-every", "3", "--no-progress", "--device", "cpu", "--engine", "native"]
    args += ["--data", str(trend), "--config", str(tmp_path / "c.toml")]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    two = launch([*args, "--out", "two"], tmp_path)
    assert_rank1_silent(two)
    one_rows, two_rows = rows(tmp_path / "one"), rows(tmp_path / "two")
    assert len(one_rows) == 6 and any(k.startswith("gate_sat/") for k in one_rows[0])
    assert assert_same_rows(one_rows, two_rows) < 1e-6
    assert max_weight_diff(tmp_path / "one", tmp_path / "two") < 1e-6
    assert files(tmp_path / "two") == files(tmp_path / "one")


def guard_job(run_dir: str) -> None:
    """A FitTrainer job whose loss is NaN at the third step on the last process alone.

    Run in-process (1 process) and, by ``python -m test_distributed RUN_DIR``, on 2.
    """
    from rnnkit.train.fit import FitConfig, FitTrainer
    from test_fit import Tiny, TinyConfig, data, mse

    calls = 0

    def loss_fn(model, batch):
        nonlocal calls
        calls += model.training
        last = distributed.rank() == distributed.world_size() - 1
        loss = mse(model, batch)
        return loss * math.nan if calls == 3 and last else loss

    torch.manual_seed(0)
    config = FitConfig(batch_size=13, max_steps=10, lr=3e-2, log_every=1, decay="none")
    model = Tiny(TinyConfig(dropout=0.0))
    train = Batches(data(96, 1), 13, seed=3)  # 7 batches of 13 (6 + 7) and one of 5 (2 + 3)
    trainer = FitTrainer(
        model, train, None, config, run_dir, loss_fn=loss_fn, meta={"task": "t"}, progress=False
    )
    result = trainer.fit()
    print(result.history[-1]["bad_steps"], result.stop_reason)


def test_a_bad_step_on_one_process_is_skipped_by_all(tmp_path, capsys, one_thread):
    """FitTrainer used directly: the NaN guard's verdict is shared by both processes."""
    guard_job(str(tmp_path / "one"))
    assert capsys.readouterr().out == "1 max_steps\n"
    two = launch_script(["-m", "test_distributed", str(tmp_path / "two")], Path(__file__).parent)
    assert [code for code, _, _ in two] == [0, 0], two[0][2] + two[1][2]
    assert two[0][1] == two[1][1] == "1 max_steps\n"  # both processes skipped the step
    assert assert_same_rows(rows(tmp_path / "one"), rows(tmp_path / "two")) < 1e-6
    assert [r["bad_steps"] for r in rows(tmp_path / "two")[1:4]] == ["0", "1", "1"]
    assert max_weight_diff(tmp_path / "one", tmp_path / "two") < 1e-6


# ------------------------------------------------------------ without processes


def test_stream_part_is_its_streams_columns():
    ids = np.arange(200) % 13
    stream = StreamBatches(ids, batch_size=4, seq_len=5)
    part = stream.part(1, 2)
    assert (part.batch_size, part.num_chunks, part.tokens_per_chunk) == (2, 9, 10)
    for i in (0, 8):
        x, y = stream.chunk(i)  # (T, 4)
        px, py = part.chunk(i)  # (T, 2)
        assert torch.equal(px, x[:, 2:4]) and torch.equal(py, y[:, 2:4])
    assert int(px[0, 0]) == (8 * 5 + 2 * 50) % 13  # stream 2 starts at token 100
    with pytest.raises(ValueError, match="batch_size 4 does not split evenly over 3 processes"):
        stream.part(0, 3)


def fake_group(monkeypatch, rank: int, world: int) -> None:
    monkeypatch.setattr(distributed, "active", lambda: True)
    monkeypatch.setattr(distributed, "rank", lambda: rank)
    monkeypatch.setattr(distributed, "world_size", lambda: world)


def test_rows_split_into_slices_of_near_equal_size(monkeypatch):
    rows = torch.tensor([7, 3, 9, 1, 4])
    slices = []
    for r in range(3):
        fake_group(monkeypatch, r, 3)
        slices.append(distributed.shard_rows(rows))
    assert [s.tolist() for s, _ in slices] == [[7], [3, 9], [1, 4]]
    assert all(real for _, real in slices)
    fake_group(monkeypatch, 0, 2)
    stand_in, real = distributed.shard_rows(torch.tensor([5]))  # a batch of one: rank 0 has none
    assert stand_in.tolist() == [5] and not real
    batches = Batches({"x": torch.arange(10.0)}, 4, seed=1)
    assert torch.equal(batches.take(batches.rows(2))["x"], batches.batch(2)["x"])


def test_a_minibatch_slice_with_or_without_take(monkeypatch):
    class Plain:  # a Batches-like with batch(step) alone
        def batch(self, step):
            return batches.batch(step)

    batches = Batches({"x": torch.arange(10.0), "y": torch.arange(10) * 2}, 7, seed=1)
    fake_group(monkeypatch, 1, 2)
    for source in (batches, Plain()):
        part, real, n = distributed.shard_batch(source, 1)  # the last batch: 3 examples
        assert (real, n) == (True, 3)
        assert torch.equal(part["x"], batches.batch(1)["x"][1:])  # rows 1..2 of the batch
        assert torch.equal(part["y"], part["x"].long() * 2)
        part, real, n = distributed.shard_batch(source, 0)  # 7 examples: rows 3..6
        assert torch.equal(part["x"], batches.batch(0)["x"][3:]) and real and n == 7


def test_scaled_losses_give_the_whole_batch_gradient(monkeypatch):
    """DDP's average of scale_r * grad L_r is grad L for unequal slices (float64, by hand)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(7, 3, generator=g, dtype=torch.float64), torch.randn(7, generator=g)
    w = torch.randn(3, dtype=torch.float64, requires_grad=True)

    def loss(rows):
        return ((x[rows] @ w - y[rows].double()) ** 2).mean()

    (whole,) = torch.autograd.grad(loss(slice(0, 7)), w)
    parts = [slice(0, 0), slice(0, 3), slice(3, 7)]  # 3 processes, one with no rows
    values = [float(loss(p).detach()) if p.stop > p.start else 0.0 for p in parts]
    weights = [p.stop - p.start for p in parts]
    sums = [sum(v * n for v, n in zip(values, weights, strict=True)), float(sum(weights))]
    monkeypatch.setattr(distributed, "all_sum", lambda values: sums)
    averaged = torch.zeros(3, dtype=torch.float64)
    for r, p in enumerate(parts):
        fake_group(monkeypatch, r, 3)
        mean, scale = distributed.weighted_mean(values[r], weights[r])
        assert mean == pytest.approx(float(loss(slice(0, 7)).detach()), rel=1e-14)
        if weights[r]:
            averaged += scale * torch.autograd.grad(loss(p), w)[0] / 3  # DDP divides by N
        else:
            assert scale == 0.0
    torch.testing.assert_close(averaged, whole, rtol=1e-13, atol=0)


@pytest.mark.slow
def test_torchrun_forecast_matches_one_process(tmp_path, monkeypatch, one_thread):
    """The real launcher, and a loss that calls ``model.loss`` (not forward) through DDP."""
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed beside this Python")
    t = np.arange(160)
    series = np.sin(t / 6) + 0.1 * np.cos(t / 2.5)
    (tmp_path / "s.csv").write_text("y\n" + "\n".join(f"{v:.5f}" for v in series) + "\n")
    args = shlex.split(
        "forecast train --csv s.csv --target y --window 8 --horizon 3 --hidden-size 8"
    )
    args += shlex.split("--batch-size 9 --max-steps 6 --eval-every 3 --no-progress --device cpu")
    args += ["--engine", "native"]
    monkeypatch.chdir(tmp_path)
    assert main([*args, "--out", "one"]) == 0
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    launcher = [torchrun, "--standalone", "--nproc-per-node", "2", "-m", "rnnkit"]
    done = subprocess.run(
        [*launcher, *args, "--out", "two"], cwd=tmp_path, env=env, capture_output=True, timeout=300
    )
    assert done.returncode == 0, done.stderr.decode()
    assert assert_same_rows(rows(tmp_path / "one"), rows(tmp_path / "two")) < 1e-6
    assert max_weight_diff(tmp_path / "one", tmp_path / "two") < 1e-6


if __name__ == "__main__":  # one process of test_a_bad_step_on_one_process_is_skipped_by_all
    distributed.init(torch.device("cpu"))
    guard_job(sys.argv[1])
    distributed.teardown()

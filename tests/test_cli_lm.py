"""The text-generation job end to end: `rnnkit lm train`, `rnnkit sample`, `rnnkit lm eval`."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rnnkit.cli.lm import covering_stream, load_run
from rnnkit.cli.main import main
from rnnkit.data import encode_file
from rnnkit.train import evaluate_stream, load_checkpoint

TINY = ["--hidden-size", "16", "--num-layers", "1", "--embedding-size", "8"]
FAST = ["--batch-size", "4", "--seq-len", "16", "--no-progress", "--sample-length", "0"]


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    rng = random.Random(0)
    words = ["the cat", "a dog", "sat on", "the mat", "and ran", "away."]
    lines = [" ".join(rng.choice(words) for _ in range(8)) for _ in range(300)]
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def train(text: Path, out: Path, *extra: str) -> int:
    return main(["lm", "train", "--text", str(text), "--out", str(out), *TINY, *FAST, *extra])


def metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained(text_file, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "lm"
    code = train(text_file, run, "--max-steps", "150", "--eval-every", "50", "--lr", "0.01")
    assert code == 0
    return run


def test_train_writes_a_complete_run_and_learns(trained):
    for name in ("vocab.json", "last.json", "best.json", "metrics.csv", "loss.png"):
        assert (trained / name).is_file(), name
    rows = metrics(trained)
    first, last = float(rows[0]["loss"]), float(rows[-1]["loss"])
    vocab_size = len(json.loads((trained / "vocab.json").read_text())["tokens"])
    assert first > 0.8 * torch.log(torch.tensor(float(vocab_size)))  # first rows near uniform
    assert last < 0.5 * first
    assert (trained / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sample_is_deterministic_with_a_seed(trained, capsys):
    outputs = []
    for seed in (3, 3, 4):
        assert main(["sample", str(trained), "--length", "60", "--seed", str(seed)]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] != outputs[2]
    assert len(outputs[0]) == 61  # 60 characters and a newline


def test_sample_greedy_continues_the_prime(trained, capsys):
    assert main(["sample", str(trained), "--prime", "the ", "--temperature", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("the ")
    model, vocab = load_run(trained)
    ids = torch.as_tensor(vocab.encode("the "), dtype=torch.long).view(-1, 1)
    with torch.no_grad():
        logits, _ = model(ids)
    assert out[4] == vocab.decode([int(logits[-1, 0].argmax())])


def test_eval_reports_the_loss_of_the_stream(trained, text_file, capsys):
    assert main(["lm", "eval", str(trained), "--text", str(text_file), "--seq-len", "64"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    words = line.split()
    reported, scored, total = float(words[1]), int(words[-4]), int(words[-2])
    model, vocab = load_run(trained)
    ids = encode_file(text_file, vocab)
    stream = covering_stream(ids, 16, 64)
    assert reported == pytest.approx(evaluate_stream(model, stream), abs=1e-4)
    assert total == len(ids) and scored == stream.num_chunks * stream.tokens_per_chunk
    assert scored > 0.99 * total  # the whole file is scored, but for a short tail
    assert "bits/char" in line


def test_resume_through_the_cli_matches_an_uninterrupted_run(text_file, tmp_path):
    # A constant rate: the two halves then share the uninterrupted run's schedule.
    common = ["--eval-every", "5", "--dropout", "0.1", "--seed", "1", "--decay", "none"]
    assert train(text_file, tmp_path / "whole", "--max-steps", "20", *common) == 0
    assert train(text_file, tmp_path / "split", "--max-steps", "10", *common) == 0
    resumed = ["--out", str(tmp_path / "split"), "--resume", "--max-steps", "20"]
    assert main(["lm", "train", *resumed, "--no-progress", "--sample-length", "0"]) == 0
    whole, split = metrics(tmp_path / "whole"), metrics(tmp_path / "split")
    assert [r["step"] for r in split] == [r["step"] for r in whole]
    assert [r["loss"] for r in split] == [r["loss"] for r in whole]


def test_a_second_train_into_the_same_run_is_refused(trained, text_file, capsys):
    assert train(text_file, trained, "--max-steps", "1") == 2
    assert "already holds a run" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"\x00\x01\x02binary", "looks binary"),
        (b"caf\xe9 au lait\n" * 20, "is not UTF-8"),
    ],
)
def test_bad_text_files_exit_2_with_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "input.txt"
    path.write_bytes(content)
    assert train(path, tmp_path / "run", "--max-steps", "1") == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing written for a bad input


def test_missing_file_and_unknown_cell(tmp_path, capsys):
    assert train(tmp_path / "nope.txt", tmp_path / "run", "--max-steps", "1") == 2
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["lm", "train", "--cell", "transformer", "--max-steps", "1"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'transformer'" in capsys.readouterr().err


def test_checkpoint_from_another_model_is_refused(trained, text_file, tmp_path, capsys):
    other = tmp_path / "other"
    assert train(text_file, other, "--max-steps", "2", "--hidden-size", "24") == 0
    # Swap in the other run's weights: same vocabulary, different shapes.
    pointer = json.loads((other / "last.json").read_text())
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("vocab.json", "last.json"):
        (mixed / name).write_bytes((trained / name).read_bytes())
    target = json.loads((trained / "last.json").read_text())
    (mixed / Path(target["path"]).parent).mkdir(parents=True)
    source_dir, target_dir = other / pointer["path"], mixed / target["path"]
    target_dir.mkdir(exist_ok=True)
    for name in os.listdir(trained / target["path"]):
        (target_dir / name).write_bytes((trained / target["path"] / name).read_bytes())
    (target_dir / "model.safetensors").write_bytes((source_dir / "model.safetensors").read_bytes())
    code = main(["sample", str(mixed), "--checkpoint", "last", "--length", "5"])
    err = capsys.readouterr().err
    assert code == 2 and "rnnkit: error:" in err and "Traceback" not in err


def test_kill_9_during_training_leaves_a_loadable_checkpoint(text_file, tmp_path):
    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "rnnkit", "lm", "train", "--text", str(text_file)]
    cmd += ["--out", str(run), *TINY, *FAST, "--max-steps", "100000", "--eval-every", "3"]
    rng = random.Random(5)
    for attempt in range(3):
        args = cmd if attempt == 0 else [*cmd, "--resume"]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not (run / "last.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.5))  # somewhere in the middle of later saves
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        checkpoint = load_checkpoint(run, "last")
        assert checkpoint.step > 0
        model, _ = load_run(run, "last")
        assert all(torch.isfinite(p).all() for p in model.parameters())


def test_resume_replaces_stopping_rules_and_refuses_other_settings(text_file, tmp_path, capsys):
    run = tmp_path / "r"
    assert train(text_file, run, "--epochs", "1", "--eval-every", "1000") == 0
    steps_per_epoch = load_checkpoint(run, "last").step
    resume = ["lm", "train", "--out", str(run), "--resume", "--no-progress", "--sample-length", "0"]
    # a new stopping rule replaces the old epochs=1 (which is already reached)
    assert main([*resume, "--max-steps", str(steps_per_epoch + 7)]) == 0
    assert load_checkpoint(run, "last").step == steps_per_epoch + 7
    capsys.readouterr()
    assert main([*resume, "--max-steps", "1000", "--lr", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "keeps its settings; drop --lr" in err


def test_a_directory_holding_checkpoints_is_not_reused(text_file, tmp_path, capsys):
    run = tmp_path / "half"
    (run / "checkpoints").mkdir(parents=True)
    assert train(text_file, run, "--max-steps", "1") == 2
    assert "no last.json (a run stopped during its first save); delete" in capsys.readouterr().err


def test_out_pointing_at_a_file_is_one_line(text_file, tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_text("keep me")
    assert train(text_file, target, "--max-steps", "1") == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnkit: error:") and err.count("\n") == 1
    assert target.read_text() == "keep me"


def test_toml_config_with_flags_overriding_it(text_file, tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text(
        '[model]\nhidden_size = 12\ncell = "gru"\n\n[train]\nlr = 0.02\nseq_len = 8\n'
    )
    run = tmp_path / "toml"
    args = ["--config", str(config), "--max-steps", "2", "--hidden-size", "10"]
    assert train(text_file, run, *args) == 0
    checkpoint = load_checkpoint(run, "last")
    assert checkpoint.model_config["cell"] == "gru"  # from the file
    assert checkpoint.model_config["hidden_size"] == 10  # the flag wins over the file
    assert checkpoint.train_config["lr"] == 0.02
    assert checkpoint.train_config["seq_len"] == 16  # FAST's --seq-len overrides the file
    config.write_text("[model]\nhidden = 3\n")
    assert train(text_file, tmp_path / "bad", "--config", str(config), "--max-steps", "1") == 2
    assert "unknown setting 'hidden' in [model]" in capsys.readouterr().err

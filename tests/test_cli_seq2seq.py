"""The seq2seq job end to end: `rnnkit seq2seq train`, `translate`, `eval`."""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from _errors import assert_usage_error
from rnnkit.cli.main import main
from rnnkit.cli.seq2seq import load_run
from rnnkit.cli.seq2seq_decode import decode_texts
from rnnkit.data.pairs import SPECIALS, read_pairs, split_pairs
from rnnkit.metrics.seq2seq import bleu, char_error_rate, exact_match, token_accuracy
from rnnkit.train import load_checkpoint

TINY = ["--hidden-size", "16", "--embedding-size", "8", "--batch-size", "16", "--lr", "0.02",
        "--no-progress"]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def _threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is faster on a busy machine
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A char task (upper-casing strings of a-e) and a word task (reversing colour words)."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    sources = sorted({"".join(rng.choice(list("abcde"), size=int(rng.integers(2, 6))))
                      for _ in range(200)})[:60]  # fmt: skip
    (root / "upper.tsv").write_text("".join(f"{s}\t{s.upper()}\n" for s in sources), "utf-8")
    words = ["red", "green", "blue", "cat", "dog", "sun", "moon", "tree"]
    lines = set()
    while len(lines) < 40:
        w = [words[i] for i in rng.integers(0, len(words), size=int(rng.integers(2, 5)))]
        lines.add(f"{' '.join(w)}\t{' '.join(reversed(w))}\n")
    (root / "words.tsv").write_text("".join(sorted(lines)), "utf-8")
    return root


@pytest.fixture(scope="module")
def char_run(data, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "upper"
    argv = ["seq2seq", "train", "--pairs", str(data / "upper.tsv"), "--out", str(run),
            "--max-steps", "12", "--beam", "2", *TINY]  # fmt: skip
    assert main(argv) == 0
    return run


def translate(capsys, monkeypatch, run: Path, lines: list[str], *flags: str) -> list[str]:
    """Outputs of `translate` with ``lines`` on stdin."""
    capsys.readouterr()
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(line + "\n" for line in lines)))
    assert main(["seq2seq", "translate", str(run), *flags]) == 0
    return capsys.readouterr().out.splitlines()


def test_char_run_files_vocab_and_split(char_run, data, capsys):
    for name in ("best.json", "last.json", "metrics.csv", "loss.png", "src_vocab.json",
                 "tgt_vocab.json"):  # fmt: skip
        assert (char_run / name).is_file(), name
    meta = load_checkpoint(char_run, "last", trainer_state=False).meta
    assert meta["task"] == "seq2seq" and meta["data"]["pairs"] == str(
        (data / "upper.tsv").resolve()
    )
    # 60 distinct sources: round(0.1 * 60) = 6 each for test and validation.
    assert meta["sizes"] == {"train": 48, "val": 6, "test": 6}
    train, _, _ = split_pairs(read_pairs(data / "upper.tsv"), 0.1, 0.1, 0)
    assert meta["max_len"] == 2 * max(len(t) for _, t in train) + 10 == 20
    _, _, src_vocab, tgt_vocab = load_run(char_run)
    assert src_vocab.tokens[:4] == list(SPECIALS)
    assert set(src_vocab.tokens[4:]) == {c for s, _ in train for c in s} == set("abcde")
    assert set(tgt_vocab.tokens[4:]) == set("ABCDE")
    config = json.loads((char_run / "train_config.json").read_text())
    assert (
        config["max_steps"] == 12 and config["batch_size"] == 16 and config["sampling_ratio"] == 0
    )


def test_word_run_with_toml_config(data, tmp_path, capsys):
    config = tmp_path / "s2s.toml"
    config.write_text('[data]\ntokens = "word"\n[model]\nencoder_hidden_size = 16\n'
                      'decoder_hidden_size = 24\nencoder_embedding_size = 4\n'
                      'attention = "luong"\n[train]\nsampling_ratio = 0.5\n')  # fmt: skip
    run = tmp_path / "words"
    argv = ["seq2seq", "train", "--pairs", str(data / "words.tsv"), "--config", str(config),
            "--out", str(run), "--max-steps", "6", *TINY[2:]]  # flags over the file  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"^greedy +\d\.\d{4} +\d\.\d{4} +\d+\.\d{4} +\d+\.\d\d$", out, re.M), out
    ckpt = load_checkpoint(run, "last", trainer_state=False)
    model = ckpt.model_config
    assert (model["encoder_hidden_size"], model["decoder_hidden_size"]) == (16, 24)
    assert model["encoder_embedding_size"] == model["decoder_embedding_size"] == 8
    assert model["attention"] == "luong" and model["bidirectional"] is True
    assert json.loads((run / "train_config.json").read_text())["sampling_ratio"] == 0.5
    train, _, _ = split_pairs(read_pairs(data / "words.tsv"), 0.1, 0.1, 0)
    _, _, src_vocab, _ = load_run(run)
    assert src_vocab.kind == "word"
    assert set(src_vocab.tokens[4:]) == {w for s, _ in train for w in s.split()}


def test_example_reverse_tiny(tmp_path, capsys):
    run = tmp_path / "rev"
    argv = ["seq2seq", "train", "--example", "reverse", "--train-size", "64", "--val-size",
            "16", "--test-size", "16", "--min-len", "3", "--max-len", "5", "--out", str(run),
            "--max-steps", "3", *TINY]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "trained on 64 pairs of the reverse example (3-5 letters reversed)" in out
    assert "test part (16 pairs)" in out
    meta = load_checkpoint(run, "last", trainer_state=False).meta
    assert meta["sizes"] == {"train": 64, "val": 16, "test": 16} and meta["max_len"] == 20
    assert meta["data"]["example"] == "reverse" and meta["data"]["max_len"] == 5
    # eval rebuilds the same test part from the meta
    assert main(["seq2seq", "eval", str(run)]) == 0
    assert "on 16 pairs of the test part of the reverse example" in capsys.readouterr().out


def test_translate_file_stdin_greedy_and_beam(char_run, tmp_path, capsys, monkeypatch):
    lines = ["abc", "edcba", "a", "bad", "cab"]
    inputs = tmp_path / "in.txt"
    inputs.write_text("".join(f"{line}\n" for line in lines), "utf-8")
    assert main(["seq2seq", "translate", str(char_run), "--input", str(inputs)]) == 0
    from_file = capsys.readouterr().out.splitlines()
    from_stdin = translate(capsys, monkeypatch, char_run, lines)
    assert from_file == from_stdin and len(from_file) == 5
    assert translate(capsys, monkeypatch, char_run, lines, "--beam", "1") == from_file
    beam3 = translate(capsys, monkeypatch, char_run, lines, "--beam", "3", "--batch-size", "2")
    model, meta, src_vocab, tgt_vocab = load_run(char_run)
    hyps = decode_texts(model, lines, src_vocab, max_len=meta["max_len"], beam=3)
    assert beam3 == [tgt_vocab.decode(h.tokens) for h in hyps]
    greedy = decode_texts(model, lines, src_vocab, max_len=meta["max_len"])
    assert from_file == [tgt_vocab.decode(h.tokens) for h in greedy]
    # order and batching do not change an output: one at a time gives the same lines
    one_by_one = decode_texts(model, lines, src_vocab, max_len=meta["max_len"], batch_size=1)
    assert [h.tokens for h in one_by_one] == [h.tokens for h in greedy]
    drawn = translate(capsys, monkeypatch, char_run, lines, "--sample", "--seed", "3")
    assert drawn == translate(capsys, monkeypatch, char_run, lines, "--sample", "--seed", "3")


def test_eval_json_matches_translate_output(char_run, data, tmp_path, capsys, monkeypatch):
    pairs = read_pairs(data / "upper.tsv")
    report = tmp_path / "eval.json"
    argv = ["seq2seq", "eval", str(char_run), "--pairs", str(data / "upper.tsv"), "--json",
            str(report)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    for name in ("exact match", "token accuracy", "character error rate", "BLEU"):
        assert re.search(rf"^{name}: \d+\.\d+$", out, re.M), (name, out)
    assert "on 60 pairs of" in out and "(greedy decoding)" in out
    saved = json.loads(report.read_text())
    outputs = translate(capsys, monkeypatch, char_run, [s for s, _ in pairs])
    refs = [t for _, t in pairs]
    expected = {
        "exact_match": exact_match(outputs, refs),
        "token_accuracy": token_accuracy(outputs, refs, "char"),
        "char_error_rate": char_error_rate(outputs, refs),
        "bleu": bleu(outputs, refs, tokenize="char"),
    }
    assert saved["count"] == 60
    assert saved["metrics"] == pytest.approx(expected, abs=1e-12)
    em = float(re.search(r"^exact match: (\S+)$", out, re.M).group(1))
    assert em == pytest.approx(expected["exact_match"], abs=5e-5)


def test_resume_continues_exactly(data, tmp_path, capsys):
    # A constant lr: the schedule of a run cut at step 5 would otherwise decay towards 5.
    base = ["seq2seq", "train", "--pairs", str(data / "upper.tsv"), "--decay", "none", *TINY]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main([*base, "--out", str(whole), "--max-steps", "8"]) == 0
    assert main([*base, "--out", str(parts), "--max-steps", "5"]) == 0
    assert_usage_error(capsys, ["seq2seq", "train", "--out", str(parts), "--resume",
                                "--hidden-size", "8"], "drop --hidden-size")  # fmt: skip
    assert main(["seq2seq", "train", "--out", str(parts), "--resume", "--max-steps", "8",
                 "--no-progress"]) == 0  # fmt: skip
    a = load_checkpoint(whole, "last", trainer_state=False)
    b = load_checkpoint(parts, "last", trainer_state=False)
    assert a.step == b.step == 8
    model_a, _, _, _ = load_run(whole, "last")
    model_b, _, _, _ = load_run(parts, "last")
    for (name, x), (_, y) in zip(
        model_a.state_dict().items(), model_b.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-6, msg=name)


def test_bad_input_is_one_line(data, char_run, tmp_path, capsys, monkeypatch):
    ragged = tmp_path / "ragged.tsv"
    ragged.write_text("ab\tAB\ncd\tCD\nef\tEF\textra\n", "utf-8")
    base = ["seq2seq", "train", "--out", str(tmp_path / "x"), "--max-steps", "1", *TINY]
    assert_usage_error(capsys, [*base, "--pairs", str(ragged)], "line 3", "found 3")
    empty = tmp_path / "empty.tsv"
    empty.write_text("ab\tAB\n\ncd\t\n", "utf-8")
    assert_usage_error(capsys, [*base, "--pairs", str(empty)], "line 3", "target is empty")
    assert_usage_error(capsys, [*base, "--example", "dates", "--tokens", "word"], "drop --tokens")
    assert_usage_error(capsys, [*base, "--pairs", str(ragged), "--train-size", "5"], "--example")
    # eval: the same checks for its pairs, and unknown source tokens with their line
    assert_usage_error(capsys, ["seq2seq", "eval", str(char_run), "--pairs", str(ragged)],
                       "line 3")  # fmt: skip
    unknown = tmp_path / "unknown.tsv"
    unknown.write_text("ab\tAB\n\nxyz\tXYZ\n", "utf-8")
    assert_usage_error(capsys, ["seq2seq", "eval", str(char_run), "--pairs", str(unknown)],
                       "line 3", "'x', 'y', 'z'")  # fmt: skip
    # translate: unknown tokens name the line, or become <unk> with --allow-unknown
    monkeypatch.setattr("sys.stdin", io.StringIO("abc\nazb\n"))
    assert_usage_error(capsys, ["seq2seq", "translate", str(char_run)],
                       "stdin line 2", "'z'", "--allow-unknown")  # fmt: skip
    outputs = translate(capsys, monkeypatch, char_run, ["abc", "azb"], "--allow-unknown")
    assert len(outputs) == 2
    monkeypatch.setattr("sys.stdin", io.StringIO("abc\n\n"))
    assert_usage_error(capsys, ["seq2seq", "translate", str(char_run)], "line 2 is blank")
    # not a run directory
    assert_usage_error(capsys, ["seq2seq", "eval", str(tmp_path)], "holds no checkpoint")
    assert_usage_error(capsys, ["seq2seq", "translate", str(tmp_path / "nope")], "no such run")
    assert_usage_error(capsys, ["seq2seq", "translate", str(char_run), "--beam", "2",
                                "--sample"], "exclude each other")  # fmt: skip


def test_attention_plot(char_run, tmp_path, capsys, monkeypatch):
    from rnnkit.diagnostics.attention import plot_attention

    png = tmp_path / "attention.png"
    out = translate(capsys, monkeypatch, char_run, ["abcd", "e"], "--attention-plot", str(png))
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    model, meta, src_vocab, tgt_vocab = load_run(char_run)
    hyp = decode_texts(model, ["abcd", "e"], src_vocab, max_len=meta["max_len"], attention_for=0)
    assert tgt_vocab.decode(hyp[0].tokens) == out[0]
    weights = hyp[0].attention
    assert weights.shape == (hyp[0].length, 4)
    torch.testing.assert_close(weights.sum(1), torch.ones(hyp[0].length), rtol=0, atol=1e-5)
    assert hyp[1].attention is None  # only the asked input keeps its weights
    with pytest.raises(ValueError, match=r"shape \(outputs, sources\) = \(2, 3\)"):
        plot_attention(np.ones((3, 2)), list("abc"), list("xy"), tmp_path / "bad.png")


@pytest.mark.slow
def test_reverse_example_reaches_95_percent(tmp_path, capsys):
    run = tmp_path / "reverse"
    start = time.perf_counter()
    assert main(["seq2seq", "train", "--example", "reverse", "--out", str(run),
                 "--no-progress"]) == 0  # fmt: skip
    seconds = time.perf_counter() - start
    out = capsys.readouterr().out
    greedy = float(re.search(r"^greedy +(\d\.\d{4})", out, re.M).group(1))
    print(f"reverse example: exact match {greedy:.4f} in {seconds:.0f} s")
    assert greedy >= 0.95


def test_val_pairs_replace_the_validation_split(data, tmp_path):
    from rnnkit.cli.seq2seq_data import Seq2SeqDataConfig, load_splits

    extra = tmp_path / "val.tsv"
    extra.write_text("ab\tAB\n\nba\tBA\n", "utf-8")
    cfg = Seq2SeqDataConfig(pairs=str(data / "upper.tsv"), val_pairs=str(extra))
    train, val, test = load_splits(cfg)
    assert val == [("ab", "AB"), ("ba", "BA")]
    assert (len(train), len(test)) == (54, 6)  # no validation part cut from the 60 sources
    assert not {s for s, _ in train} & {s for s, _ in test}
    with pytest.raises(ValueError, match="drop --val-fraction"):
        Seq2SeqDataConfig(pairs="x.tsv", val_pairs=str(extra), val_fraction=0.2)
    with pytest.raises(ValueError, match="does not apply to the dates example"):
        Seq2SeqDataConfig(example="dates", max_len=9)

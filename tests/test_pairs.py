"""Sequence pairs: PairVocab, the TSV reader, encoding, bucketed batches and the split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from _errors import one_line_error
from rnnkit.data.buckets import BucketBatches
from rnnkit.data.pairs import (
    END_ID,
    PAD_ID,
    SPECIALS,
    START_ID,
    UNK_ID,
    PairVocab,
    encode_pairs,
    encode_sources,
    read_pairs,
    read_sources,
    split_pairs,
)
from rnnkit.data.vocab import Vocab
from rnnkit.train.batches import Batches


def write(path: Path, data: str | bytes) -> Path:
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8", newline="")
    return path


# ---------------------------------------------------------------------------- vocab


def test_specials_have_fixed_ids():
    assert (PAD_ID, START_ID, END_ID, UNK_ID) == (0, 1, 2, 3)
    assert SPECIALS == ("<pad>", "<s>", "</s>", "<unk>")


def test_build_orders_by_count_then_codepoint_and_caps():
    vocab = PairVocab.build(["abca", "cb", "zz", "d"], "char")
    # counts: a 2, b 2, c 2, z 2, d 1 -> ties by codepoint
    assert vocab.tokens == [*SPECIALS, "a", "b", "c", "z", "d"]
    assert len(vocab) == 9
    assert PairVocab.build(["abca", "cb", "zz", "d"], "char", min_count=2).tokens[4:] == [
        "a", "b", "c", "z",
    ]  # fmt: skip
    assert PairVocab.build(["abca", "cb"], "char", max_size=6).tokens[4:] == ["a", "b"]
    words = PairVocab.build(["the cat , the dog"], "word")
    assert words.tokens[4:] == ["the", ",", "cat", "dog"]
    one_line_error(lambda: PairVocab.build(["ab"], "char", max_size=4), "max_size", "at least 5")
    one_line_error(lambda: PairVocab.build(["ab"], "char", min_count=0), "min_count")
    one_line_error(lambda: PairVocab.build(["", ""], "char"), "no char tokens")
    one_line_error(lambda: PairVocab.build(["ab"], "char", min_count=2), "lower min_count")
    one_line_error(lambda: PairVocab.build(["ab"], "letters"), "unknown vocabulary kind")


def test_encode_unknown_strict_and_decode():
    vocab = PairVocab.build(["abc"], "char")  # a=4, b=5, c=6
    assert vocab.encode("cab") == [6, 4, 5]
    assert vocab.encode("axb") == [4, UNK_ID, 5]
    assert vocab.unknown("axyxb") == ["x", "y"]
    one_line_error(lambda: vocab.encode("axb", strict=True), "'x'", "char vocabulary")
    message = one_line_error(lambda: vocab.encode("a1234567", strict=True))
    assert "'1', '2', '3', '4', '5' and 2 more" in message
    # <pad> and <s> skipped, </s> stops, <unk> shows as text
    assert vocab.decode([START_ID, 6, PAD_ID, 4, UNK_ID, END_ID, 5, 5]) == "ca<unk>"
    assert vocab.decode(torch.tensor([4, 5, END_ID])) == "ab"
    assert vocab.decode_batch(torch.tensor([[4, END_ID, 6], [6, 6, PAD_ID]])) == ["a", "cc"]
    one_line_error(lambda: vocab.decode([4, 7]), "token id 7", "0..6")


def test_word_decoding_uses_vocab_spacing():
    vocab = PairVocab.build(["hello , world ! ( a )"], "word")
    ids = vocab.encode("hello , world !")
    assert len(ids) == 4
    assert vocab.decode([START_ID, *ids, END_ID]) == "hello, world!"
    # The same join as rnnkit's language-model Vocab.
    lm = Vocab.from_text("hello , world ! ( a )", "word")
    assert vocab.decode(vocab.encode("( a ) hello")) == lm.decode(lm.encode("( a ) hello"))
    assert vocab.decode(vocab.encode("( a ) hello")) == "( a) hello"


def test_save_load_round_trip_and_errors(tmp_path):
    vocab = PairVocab.build(["héllo wörld"], "char")
    path = vocab.save(tmp_path / "src_vocab.json")
    assert PairVocab.load(path) == vocab
    assert json.loads(path.read_text(encoding="utf-8"))["tokens"][:4] == list(SPECIALS)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left
    one_line_error(lambda: PairVocab.load(tmp_path / "nope.json"), "does not exist")
    bad = write(tmp_path / "bad.json", '{"format": "rnnkit-pair-vocab", "vers')
    one_line_error(lambda: PairVocab.load(bad), "not valid JSON")
    lm_vocab = Vocab.from_text("abc").save(tmp_path / "lm.json")
    one_line_error(lambda: PairVocab.load(lm_vocab), "unsupported vocabulary format")
    data = vocab.to_dict()
    data["tokens"] = [*SPECIALS, "a", "a"]
    one_line_error(lambda: PairVocab.from_dict(data), "appears twice")
    data["tokens"] = ["<unk>", "a"]
    one_line_error(lambda: PairVocab.from_dict(data), "special tokens")


# ---------------------------------------------------------------------------- files


def test_read_pairs_ok(tmp_path):
    path = write(tmp_path / "p.tsv", "\ufeffab\tba\r\n\n  \ncd e\t ec d\nx\ty")
    assert read_pairs(path) == [("ab", "ba"), ("cd e", " ec d"), ("x", "y")]


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("a\tb\nc\td\te\n", ("line 2: expected 2 tab-separated fields (source, target), found 3",)),
        ("a\tb\n\nno tab here\n", ("line 3: expected 2", "found 1")),
        ("a\tb\n\tx\n", ("line 2", "the source is empty")),
        ("a\tb\nx\t\r\n", ("line 2", "the target is empty")),
        ("\n \n", ("has no pairs",)),
        ("", ("has no pairs",)),
    ],
)
def test_read_pairs_errors(tmp_path, text, needles):
    path = write(tmp_path / "p.tsv", text)
    one_line_error(lambda: read_pairs(path), str(path), *needles)


def test_read_pairs_file_errors(tmp_path):
    path = write(tmp_path / "p.tsv", b"a\tb\nc\td\n\xff\tx\n")
    one_line_error(lambda: read_pairs(path), "line 3", "not UTF-8")
    one_line_error(lambda: read_pairs(tmp_path / "missing.tsv"), "no such pairs file")
    one_line_error(lambda: read_pairs(tmp_path), "is a directory")


def test_read_sources(tmp_path):
    path = write(tmp_path / "s.txt", "one\r\ntwo  \nthree")
    assert read_sources(path) == ["one", "two  ", "three"]
    assert read_sources(str(path)) == ["one", "two  ", "three"]
    assert read_sources(["a\n", "b\r\n", "c"]) == ["a", "b", "c"]
    one_line_error(lambda: read_sources(["a\n", "  \n", "c"]), "line 2 is blank")
    one_line_error(lambda: read_sources(write(tmp_path / "e.txt", "")), "no source texts")
    one_line_error(lambda: read_sources([]), "no source texts")


# ------------------------------------------------------------------------- encoding


def test_encode_pairs_values():
    src_vocab = PairVocab.build(["abc"], "char")  # a=4 b=5 c=6
    tgt_vocab = PairVocab.build(["xy"], "char")  # x=4 y=5
    data = encode_pairs([("ab", "y"), ("cab", "xxy"), ("q", "z")], src_vocab, tgt_vocab)
    assert data["src"].tolist() == [[4, 5, 0], [6, 4, 5], [3, 0, 0]]
    assert data["src_lengths"].tolist() == [2, 3, 1]
    assert data["tgt_in"].tolist() == [[1, 5, 0, 0], [1, 4, 4, 5], [1, 3, 0, 0]]
    assert data["tgt_out"].tolist() == [[5, 2, 0, 0], [4, 4, 5, 2], [3, 2, 0, 0]]
    assert data["tgt_lengths"].tolist() == [2, 4, 2]
    assert all(t.dtype == torch.int64 for t in data.values())
    sources = encode_sources(["ca", "b"], src_vocab)
    assert sources["src"].tolist() == [[6, 4], [5, 0]]
    assert sources["src_lengths"].tolist() == [2, 1]
    assert set(sources) == {"src", "src_lengths"}
    one_line_error(lambda: encode_sources(["ab", "aq"], src_vocab, strict=True), "source 1", "'q'")
    words = PairVocab.build(["a b"], "word")
    one_line_error(lambda: encode_sources(["a", " "], words), "source 1", "no word tokens")
    one_line_error(lambda: encode_pairs([], src_vocab, tgt_vocab), "non-empty")
    one_line_error(lambda: encode_pairs([("a",)], src_vocab, tgt_vocab), "pair 0")


def test_split_pairs_by_source_and_deterministic():
    pairs = [(f"s{i % 50}", f"t{i}") for i in range(100)]  # each source twice
    train, val, test = split_pairs(pairs, 0.1, 0.2, seed=3)
    assert (len(train), len(val), len(test)) == (70, 10, 20)  # 35, 5 and 10 sources
    sources = [{s for s, _ in part} for part in (train, val, test)]
    assert [len(s) for s in sources] == [35, 5, 10]
    assert not (sources[0] & sources[1] or sources[0] & sources[2] or sources[1] & sources[2])
    assert sorted(train + val + test) == sorted(pairs)
    assert train == sorted(train, key=pairs.index)  # original order kept
    assert split_pairs(pairs, 0.1, 0.2, seed=3) == (train, val, test)
    assert split_pairs(pairs, 0.1, 0.2, seed=4)[2] != test
    one_line_error(lambda: split_pairs(pairs, 0.5, 0.5, seed=0), "leave data to train on")
    one_line_error(lambda: split_pairs(pairs[:2], 0.1, 0.0, seed=0), "distinct sources")


# -------------------------------------------------------------------------- batches


def random_data(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Encoded-pair tensors with source lengths 1..50 and target lengths 1..20 (+1)."""
    g = torch.Generator().manual_seed(seed)
    src_lengths = torch.randint(1, 51, (n,), generator=g)
    tgt_lengths = torch.randint(2, 22, (n,), generator=g)
    steps = torch.arange(50)
    src = torch.where(steps < src_lengths[:, None], 4 + steps % 7, PAD_ID)  # (N, 50)
    tgt_steps = torch.arange(21)
    tgt_out = torch.where(tgt_steps < tgt_lengths[:, None], 5, PAD_ID)  # (N, 21)
    return {
        "src": src,
        "src_lengths": src_lengths,
        "tgt_in": tgt_out.clone(),
        "tgt_out": tgt_out,
        "tgt_lengths": tgt_lengths,
        "id": torch.arange(n),
    }


def pad_fraction(batches) -> float:
    pads = total = 0
    for batch in batches:
        pads += int((batch["src"] == PAD_ID).sum())
        total += batch["src"].numel()
    return pads / total


def test_bucket_batches_cover_each_example_once_per_epoch():
    data = random_data(1000)
    batches = BucketBatches(data, 32, seed=5, bucket_factor=10)
    assert (batches.num_batches, batches.num_examples, len(batches)) == (32, 1000, 32)
    for epoch in range(3):
        steps = range(epoch * 32, (epoch + 1) * 32)
        ids = torch.cat([batches.batch(s)["id"] for s in steps])
        assert sorted(ids.tolist()) == list(range(1000))
        sizes = sorted(len(batches.rows(s)) for s in steps)
        assert sizes == [8] + [32] * 31  # only the last batch of the epoch is smaller
    # Each batch is cut to its own longest source and target, and keeps its rows' values.
    batch = batches.batch(40)
    rows = batches.rows(40)
    assert batch["src"].shape[1] == int(data["src_lengths"][rows].max())
    assert batch["tgt_in"].shape[1] == batch["tgt_out"].shape[1] == int(batch["tgt_lengths"].max())
    assert torch.equal(batch["src"], data["src"][rows, : batch["src"].shape[1]])
    assert torch.equal(batch["tgt_lengths"], data["tgt_lengths"][rows])


def test_bucket_batches_are_rebuilt_identically():
    data = random_data(500)
    a = BucketBatches(data, 16, seed=7)
    b = BucketBatches(data, 16, seed=7)
    steps = [0, 31, 32, 100, 3, 64]  # out of order, across epochs
    for step in steps:
        assert torch.equal(a.rows(step), b.rows(step))
        assert torch.equal(a.batch(step)["src"], b.batch(step)["src"])
    assert not torch.equal(a.rows(0), a.rows(32))  # epoch 1 differs from epoch 0
    assert not torch.equal(a.rows(0), BucketBatches(data, 16, seed=8).rows(0))


def test_bucketing_cuts_padding():
    data = random_data(2000)
    plain = Batches(data, 32, seed=0, lengths_key="src_lengths", time_keys=("src",))
    bucketed = BucketBatches(data, 32, seed=0, bucket_factor=50)
    plain_pad, bucket_pad = pad_fraction(plain), pad_fraction(bucketed)
    # Lengths uniform in 1..50: a random batch of 32 pads to ~49 (about half padding);
    # a bucket of 1,600 sorted examples puts ~1 length value in each batch.
    assert 0.4 < plain_pad < 0.55
    assert bucket_pad < 0.05
    # Smaller buckets cut less.
    small = pad_fraction(BucketBatches(data, 32, seed=0, bucket_factor=2))
    assert bucket_pad < small < plain_pad


def test_bucket_batches_without_shuffle_keep_order():
    data = random_data(70)
    batches = BucketBatches(data, 32, shuffle=False)
    assert [batches.rows(s).tolist() for s in range(3)] == [
        list(range(0, 32)), list(range(32, 64)), list(range(64, 70)),
    ]  # fmt: skip
    assert batches.rows(3).tolist() == list(range(32))  # epoch 1 is the same
    sources_only = {"src": data["src"], "src_lengths": data["src_lengths"]}
    batch = BucketBatches(sources_only, 10, shuffle=False).batch(1)
    assert set(batch) == {"src", "src_lengths"}
    assert batch["src"].shape == (10, int(data["src_lengths"][10:20].max()))


def test_bucket_batches_argument_errors():
    data = random_data(10)
    one_line_error(lambda: BucketBatches({"x": data["src"]}, 4), "'src' and 'src_lengths'")
    one_line_error(lambda: BucketBatches(data, 0), "batch_size must be a positive integer")
    one_line_error(lambda: BucketBatches(data, 4, bucket_factor=0), "bucket_factor")
    one_line_error(lambda: BucketBatches({**data, "id": torch.arange(9)}, 4), "id: 9")
    partial = {k: v for k, v in data.items() if k != "tgt_out"}
    one_line_error(lambda: BucketBatches(partial, 4), "tgt_in, tgt_out and tgt_lengths")
    too_long = {**data, "src_lengths": data["src_lengths"] + 50}
    one_line_error(lambda: BucketBatches(too_long, 4), "src_lengths must lie in 1..50")
    one_line_error(lambda: BucketBatches(data, 4).batch(-1), "step must be 0 or more")

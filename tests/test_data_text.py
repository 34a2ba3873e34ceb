"""Text data: vocabularies, streamed encoding, splitting, BPTT batches, built-in corpus."""

import itertools
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit.atomic import atomic_open_text
from rnnkit.data import (
    BUILTIN_CORPUS_FILES,
    BUILTIN_CORPUS_NAME,
    UNK_ID,
    StreamBatches,
    Vocab,
    builtin_corpus_files,
    encode_file,
    read_text_chunks,
    split_tokens,
    write_builtin_corpus,
)

# Multi-byte characters of every UTF-8 length (2, 3, 4 bytes) among words and punctuation.
MIXED = (
    "Héllo, wörld! Ünïcode € and 𝄞 clefs 🎵🎶.\n"
    "Ça va?  Très   bien —  naïve café… 日本語のテキスト.\n\n"
    "tabs\tand\r\nCRLF; x_y = f(a, b) + 42 * ß\n"
) * 3


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


# ---- vocabularies ------------------------------------------------------------------


def test_char_round_trip_is_exact():
    vocab = Vocab.from_text(MIXED, "char")
    ids = vocab.encode(MIXED)
    assert ids.dtype == np.int32
    assert len(ids) == len(MIXED)
    assert UNK_ID not in ids
    assert vocab.decode(ids) == MIXED


def test_char_vocab_order_is_count_then_codepoint():
    vocab = Vocab.from_text("abracadabra")
    # a:5, b:2, r:2, c:1, d:1; ties broken by codepoint
    assert vocab.tokens == ["<unk>", "a", "b", "r", "c", "d"]
    assert vocab.encode("cab").tolist() == [4, 1, 2]
    assert len(vocab) == 6


def test_word_vocab_tokens_and_order():
    vocab = Vocab.from_text("b a, b\nc a b", "word")
    # b:3, a:2, then \n, ",", c once each, in codepoint order
    assert vocab.tokens == ["<unk>", "b", "a", "\n", ",", "c"]
    assert vocab.encode("a b\n\n, c").tolist() == [2, 1, 3, 3, 4, 5]


def test_word_round_trip_normalises_spacing():
    text = "Hello,  world!\n\n  It's   (fine).\tBye"
    vocab = Vocab.from_text(text, "word")
    ids = vocab.encode(text)
    assert [vocab.tokens[i] for i in ids] == [
        "Hello",
        ",",
        "world",
        "!",
        "\n",
        "\n",
        "It",
        "'",
        "s",
        "(",
        "fine",
        ")",
        ".",
        "Bye",
    ]
    decoded = vocab.decode(ids)
    assert decoded == "Hello, world!\n\nIt' s( fine). Bye"  # spacing is normalised, crudely
    # decoding is a fixed point: the normalised text tokenises to the same ids
    assert vocab.encode(decoded).tolist() == ids.tolist()


def test_word_round_trip_of_mixed_text_keeps_tokens():
    vocab = Vocab.from_text(MIXED, "word")
    ids = vocab.encode(MIXED)
    assert UNK_ID not in ids
    assert np.array_equal(vocab.encode(vocab.decode(ids)), ids)
    assert vocab.decode(vocab.encode("Ça va?\nTrès bien")) == "Ça va?\nTrès bien"


def test_unknown_tokens_map_to_zero():
    chars = Vocab.from_text("abc")
    assert chars.encode("axbz€").tolist() == [1, 0, 2, 0, 0]
    assert chars.decode([0, 1]) == "<unk>a"
    words = Vocab.from_text("the cat sat", "word")
    the, sat = words.tokens.index("the"), words.tokens.index("sat")
    assert words.encode("the dog sat !").tolist() == [the, 0, sat, 0]
    # "<unk>" typed in the text is not the unknown token: it is three unseen tokens
    assert words.encode("<unk>").tolist() == [0, 0, 0]


def test_token_text_streams_what_decode_gives():
    vocab = Vocab.from_text("one two, three\nfour!", "word")
    ids = vocab.encode("one two, three\nfour!").tolist()
    streamed = vocab.tokens[ids[0]] + "".join(
        vocab.token_text(cur, prev) for prev, cur in itertools.pairwise(ids)
    )
    assert streamed == vocab.decode(ids) == "one two, three\nfour!"
    assert vocab.token_text(vocab.tokens.index("two")) == " two"  # after an unknown token
    assert vocab.token_text(vocab.tokens.index("!")) == "!"
    assert vocab.token_text(vocab.tokens.index("four"), vocab.tokens.index("\n")) == "four"
    chars = Vocab.from_text("ab")
    assert chars.token_text(2, previous=1) == "b"


def test_decode_accepts_ints_lists_arrays_tensors():
    vocab = Vocab.from_text("abc")
    assert vocab.decode(3) == "c"
    assert vocab.decode([1, 2, 3]) == "abc"
    assert vocab.decode(np.array([3, 2], dtype=np.int32)) == "cb"
    assert vocab.decode(torch.tensor([1, 3])) == "ac"
    assert vocab.decode(torch.tensor(2)) == "b"
    assert vocab.decode([]) == ""


@pytest.mark.parametrize(
    ("ids", "match"),
    [
        ([1, 4], r"token id 4 is outside the vocabulary \(ids 0\.\.3\)"),
        ([-1], r"token id -1 is outside"),
        ([[1, 2]], r"decode takes a 1-D sequence"),
        ([0.5], r"token ids must be integers"),
    ],
)
def test_decode_rejects_bad_ids(ids, match):
    with pytest.raises(ValueError, match=match):
        Vocab.from_text("abc").decode(ids)


def test_build_from_file_is_deterministic_and_matches_from_text(tmp_path):
    path = write(tmp_path / "t.txt", MIXED)
    for kind in ("char", "word"):
        first = Vocab.build(path, kind)
        assert first == Vocab.build(path, kind)
        assert first == Vocab.from_text(MIXED, kind)
        assert first.kind == kind


def test_max_size_and_min_count_cap_the_vocabulary():
    text = "abracadabra"
    assert Vocab.from_text(text, max_size=3).tokens == ["<unk>", "a", "b"]
    assert Vocab.from_text(text, max_size=3).encode("arc").tolist() == [1, 0, 0]
    assert Vocab.from_text(text, min_count=2).tokens == ["<unk>", "a", "b", "r"]
    assert Vocab.from_text(text, max_size=100).tokens == ["<unk>", "a", "b", "r", "c", "d"]
    words = Vocab.from_text("x y x z x y", "word", min_count=2)
    assert words.tokens == ["<unk>", "x", "y"]
    assert words.encode("z x").tolist() == [0, 1]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_size": 1}, r"max_size must be at least 2"),
        ({"min_count": 0}, r"min_count must be a positive integer, got 0"),
        ({"min_count": 9}, r"no token of the text occurs 9 or more times; lower min_count"),
        ({"kind": "byte"}, r"unknown vocabulary kind 'byte'; choose one of char, word"),
    ],
)
def test_build_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Vocab.from_text("abracadabra", **kwargs)


def test_word_vocab_of_blank_text_is_refused(tmp_path):
    path = write(tmp_path / "blank.txt", "  \t \r ")
    with pytest.raises(ValueError, match=r"blank\.txt has no word tokens"):
        Vocab.build(path, "word")
    assert encode_file(path, Vocab.from_text("a", "word")).tolist() == []


def test_save_load_round_trip_leaves_no_temp_files(tmp_path):
    for kind in ("char", "word"):
        vocab = Vocab.from_text(MIXED, kind)
        path = tmp_path / f"{kind}.json"
        assert vocab.save(path) == path
        loaded = Vocab.load(path)
        assert loaded == vocab
        assert loaded.tokens == vocab.tokens  # "\n", "\t", "𝄞" survive JSON
        assert np.array_equal(loaded.encode(MIXED), vocab.encode(MIXED))
        assert Vocab.from_dict(vocab.to_dict()) == vocab
    Vocab.from_text("xyz").save(tmp_path / "char.json")  # overwrite in place
    assert Vocab.load(tmp_path / "char.json").tokens == ["<unk>", "x", "y", "z"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["char.json", "word.json"]


def test_failed_atomic_write_keeps_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "vocab.json"
    Vocab.from_text("abc").save(path)
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="disk full"), atomic_open_text(path) as f:
        f.write("partial")
        raise RuntimeError("disk full")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["vocab.json"]
    with pytest.raises(ValueError, match=r"cannot write .*nowhere.*does not exist"):
        Vocab.from_text("abc").save(tmp_path / "nowhere" / "v.json")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", r"v\.json is not a vocabulary file \(not valid JSON"),
        ("[1, 2]", r"v\.json is not a valid vocabulary file: a vocabulary is a JSON object"),
        ('{"kind": "char"}', r"v\.json is not a valid vocabulary file: .* no tokens field"),
        ('{"kind": "byte", "tokens": ["<unk>"]}', r"unknown vocabulary kind 'byte'"),
        ('{"kind": "char", "tokens": ["a", "b"]}', r"first token \(id 0\) must be '<unk>'"),
        ('{"kind": "char", "tokens": ["<unk>", "ab"]}', r"token 1 .* not one character: 'ab'"),
        ('{"kind": "word", "tokens": ["<unk>", "a b"]}', r"token 1 .* not a word token"),
        ('{"kind": "char", "tokens": ["<unk>", "a", "a"]}', r"token 2 appears twice"),
        ('{"kind": "char", "tokens": "<unk>ab"}', r"tokens are not a list"),
        ('{"format": "rnnkit-vocab", "version": 9, "kind": "char"}', r"unsupported vocabulary"),
    ],
)
def test_load_rejects_malformed_files(tmp_path, content, match):
    path = tmp_path / "v.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=match):
        Vocab.load(path)


def test_load_rejects_missing_file_and_directory(tmp_path):
    with pytest.raises(
        ValueError, match=r"cannot load the vocabulary: .*gone\.json does not exist"
    ):
        Vocab.load(tmp_path / "gone.json")
    with pytest.raises(ValueError, match=r"cannot load the vocabulary: .* is a directory"):
        Vocab.load(tmp_path)


def test_saved_file_is_readable_json(tmp_path):
    Vocab.from_text("ba", "char").save(tmp_path / "v.json")
    data = json.loads((tmp_path / "v.json").read_text(encoding="utf-8"))
    assert data == {
        "format": "rnnkit-vocab",
        "version": 1,
        "kind": "char",
        "tokens": ["<unk>", "a", "b"],
    }


# ---- streaming files ---------------------------------------------------------------


@pytest.mark.parametrize("chunk_chars", [1, 2, 3, 7, 64, 1 << 20])
def test_chunks_join_to_the_text_and_respect_the_size(tmp_path, chunk_chars):
    path = write(tmp_path / "t.txt", MIXED)
    pieces = list(read_text_chunks(path, chunk_chars))
    assert "".join(pieces) == MIXED
    assert all(0 < len(p) <= chunk_chars for p in pieces)


@pytest.mark.parametrize("kind", ["char", "word"])
@pytest.mark.parametrize("chunk_chars", [1, 2, 3, 5, 7, 13])
def test_streamed_encoding_equals_whole_text_encoding(tmp_path, kind, chunk_chars):
    # the file is far larger than a chunk, and multi-byte characters and words straddle
    # chunk boundaries at every offset across these chunk sizes
    path = write(tmp_path / "t.txt", MIXED)
    vocab = Vocab.from_text(MIXED, kind)
    expected = vocab.encode(MIXED)
    got = encode_file(path, vocab, chunk_chars=chunk_chars)
    assert got.dtype == np.int32
    assert got.tolist() == expected.tolist()
    assert Vocab.build(path, kind, chunk_chars=chunk_chars) == vocab


@settings(max_examples=40, deadline=None)
@given(
    text=st.text(alphabet="ab_1 \n\t.,éß€𝄞🎵", min_size=1, max_size=60),
    chunk_chars=st.integers(1, 9),
    kind=st.sampled_from(["char", "word"]),
)
def test_streamed_encoding_property(text, chunk_chars, kind):
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp) / "t.txt", text)
        vocab = Vocab.from_text(MIXED, kind)  # a fixed vocabulary: unknowns included
        assert encode_file(path, vocab, chunk_chars).tolist() == vocab.encode(text).tolist()


def test_byte_order_mark_is_stripped(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfhi\xc3\xa9")
    assert "".join(read_text_chunks(path, 1)) == "hié"
    assert encode_file(path, Vocab.from_text("hié")).tolist() == [1, 2, 3]


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"^no such file: .*missing\.txt$"):
        read_text_chunks(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match=r"is a directory: give a text file"):
        read_text_chunks(tmp_path)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.txt is empty: give a text file with some"):
        read_text_chunks(empty)
    bom_only = tmp_path / "bom.txt"
    bom_only.write_bytes(b"\xef\xbb\xbf")
    with pytest.raises(ValueError, match=r"bom\.txt is empty"):
        list(read_text_chunks(bom_only))
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"PK\x03\x04\x00\x00data")
    with pytest.raises(ValueError, match=r"model\.bin looks binary \(it contains NUL bytes\)"):
        Vocab.build(binary)
    utf16 = tmp_path / "utf16.txt"
    utf16.write_bytes("hello".encode("utf-16"))
    with pytest.raises(ValueError, match=r"utf16\.txt looks binary"):
        encode_file(utf16, Vocab.from_text("hello"))


@pytest.mark.parametrize(
    ("data", "offset"),
    [
        (b"abc\xffdef", 3),
        (b"\xe9t\xe9", 0),  # Latin-1 text
        (b"0123456789\xc3\xa9\x80xyz", 12),  # a stray continuation byte after a valid char
        (b"ab\xe2\x82", 2),  # a character cut off by the end of the file
        (b"ab\xe2\x82\xac\xe2\x82(", 5),  # a broken character after a good one
    ],
)
@pytest.mark.parametrize("chunk_chars", [1, 2, 4, 1 << 20])
def test_invalid_utf8_reports_the_file_offset(tmp_path, data, offset, chunk_chars):
    path = tmp_path / "latin.txt"
    path.write_bytes(data)
    match = rf"latin\.txt is not UTF-8 text \(invalid byte at offset {offset}\)$"
    with pytest.raises(ValueError, match=match):
        list(read_text_chunks(path, chunk_chars))


# ---- splitting ---------------------------------------------------------------------


def test_split_tokens_keeps_the_tail_for_validation():
    ids = np.arange(20, dtype=np.int32)
    train, val = split_tokens(ids, 0.1)
    assert train.tolist() == list(range(18))
    assert val.tolist() == [18, 19]
    train, val = split_tokens(ids, 0.25)
    assert train.tolist() == list(range(15))
    assert val.tolist() == list(range(15, 20))
    assert np.shares_memory(train, ids)  # views, not copies
    train, val = split_tokens(ids, 0)
    assert train.tolist() == list(range(20))
    assert val.tolist() == []


@pytest.mark.parametrize(
    ("n", "fraction", "match"),
    [
        (10, 1.0, r"val_fraction must be in \[0, 1\), got 1\.0"),
        (10, -0.1, r"val_fraction must be in \[0, 1\)"),
        (10, True, r"val_fraction must be in \[0, 1\)"),
        (10, 0.1, r"the text has 10 tokens, leaving 1 for validation with val_fraction=0\.1"),
        (4, 0.9, r"the text has 4 tokens, leaving 0 for training"),
        (1, 0.0, r"the text has 1 tokens, leaving 1 for training"),
    ],
)
def test_split_tokens_rejects(n, fraction, match):
    with pytest.raises(ValueError, match=match):
        split_tokens(np.arange(n), fraction)


# ---- stream batches ----------------------------------------------------------------


def test_stream_batches_exact_contents_of_a_tiny_corpus():
    batches = StreamBatches(np.arange(31), batch_size=3, seq_len=3)
    # streams: 0..9, 10..19, 20..29 (token 30 dropped); (10 - 1) // 3 = 3 chunks
    assert batches.streams.tolist() == [list(range(10)), list(range(10, 20)), list(range(20, 30))]
    assert batches.num_chunks == len(batches) == 3
    assert batches.tokens_per_chunk == 9
    x, y = batches.chunk(0)
    assert x.dtype == y.dtype == torch.int64
    assert x.tolist() == [[0, 10, 20], [1, 11, 21], [2, 12, 22]]
    assert y.tolist() == [[1, 11, 21], [2, 12, 22], [3, 13, 23]]
    x, y = batches.chunk(2)
    assert x.tolist() == [[6, 16, 26], [7, 17, 27], [8, 18, 28]]
    assert y.tolist() == [[7, 17, 27], [8, 18, 28], [9, 19, 29]]
    with pytest.raises(IndexError, match="chunk 3 is out of range: there are 3 chunks"):
        batches.chunk(3)


def test_stream_batches_continue_each_stream_across_chunks():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, size=1000).astype(np.int32)
    batches = StreamBatches(ids, batch_size=4, seq_len=7)
    chunks = list(batches)
    assert len(chunks) == batches.num_chunks == (1000 // 4 - 1) // 7
    stream_len = 1000 // 4
    for x, y in chunks:
        assert x.shape == y.shape == (7, 4)
        assert torch.equal(x[1:], y[:-1])  # targets are the inputs shifted one step
    for (_, y0), (x1, _) in itertools.pairwise(chunks):
        # the token after chunk i's last input is chunk i+1's first input, in every stream
        assert torch.equal(x1[0], y0[-1])
    for b in range(4):
        stream = ids[b * stream_len : (b + 1) * stream_len]
        seen = torch.cat([x[:, b] for x, _ in chunks]).numpy()
        assert seen.tolist() == stream[: len(seen)].tolist()
        targets = torch.cat([y[:, b] for _, y in chunks]).numpy()
        assert targets.tolist() == stream[1 : len(seen) + 1].tolist()
    assert np.shares_memory(batches.streams, ids)  # no copy of the corpus


def test_stream_batches_exactly_long_enough_corpus():
    batches = StreamBatches(np.arange(8), batch_size=2, seq_len=3)
    assert batches.num_chunks == 1
    x, y = batches.chunk(0)
    assert x.tolist() == [[0, 4], [1, 5], [2, 6]]
    assert y.tolist() == [[1, 5], [2, 6], [3, 7]]


@pytest.mark.parametrize(
    ("n", "kwargs", "match"),
    [
        (
            7,
            {"batch_size": 2, "seq_len": 3},
            r"the text has 7 tokens, too few for batch_size\*\(seq_len\+1\)=8; "
            r"use a smaller --batch-size or --seq-len",
        ),
        (100, {"batch_size": 0, "seq_len": 3}, r"batch_size must be a positive integer, got 0"),
        (100, {"batch_size": 2, "seq_len": 2.5}, r"seq_len must be a positive integer"),
    ],
)
def test_stream_batches_rejects(n, kwargs, match):
    with pytest.raises(ValueError, match=match):
        StreamBatches(np.arange(n), **kwargs)


def test_stream_batches_reject_non_integer_ids():
    with pytest.raises(ValueError, match=r"token ids must be a 1-D integer array"):
        StreamBatches(np.zeros(100), batch_size=2, seq_len=3)


# ---- built-in corpus ---------------------------------------------------------------


def test_builtin_corpus_files_exist():
    files = builtin_corpus_files()
    assert BUILTIN_CORPUS_NAME == "python-stdlib"
    assert len(BUILTIN_CORPUS_FILES) == 30
    assert len(files) == 30  # every listed file exists on 3.10-3.13
    assert all(f.is_file() and f.suffix == ".py" for f in files)
    assert files[0].name == "argparse.py"


def test_written_builtin_corpus(tmp_path):
    path = write_builtin_corpus(tmp_path / "corpus.txt")
    assert path == tmp_path / "corpus.txt"
    assert [p.name for p in tmp_path.iterdir()] == ["corpus.txt"]
    text = path.read_text(encoding="utf-8")
    assert len(path.read_bytes()) > 500_000
    assert "def " in text
    assert text.startswith("# ---- argparse.py ----\n")
    for name in BUILTIN_CORPUS_FILES:
        assert f"\n# ---- {name} ----\n" in text or text.startswith(f"# ---- {name} ----\n")
    # the whole streaming path on a real megabyte: build, encode, decode back exactly
    vocab = Vocab.build(path, "char")
    assert vocab.decode(encode_file(path, vocab)) == text


def test_a_word_longer_than_many_chunks_stays_one_token(tmp_path):
    text = "a " + "x" * 50 + "é, " + "y" * 20
    path = write(tmp_path / "long.txt", text)
    vocab = Vocab.from_text(text, "word")
    ids = encode_file(path, vocab, chunk_chars=7)
    assert [vocab.tokens[i] for i in ids] == ["a", "x" * 50 + "é", ",", "y" * 20]

"""Every file reader, fuzzed: bytes in, a correct result or one line of ValueError out.

Each reader gets random bytes, plausible contents in the wrong encoding (UTF-16,
Latin-1, cp1252), huge lines, empty files, NUL bytes, a missing trailing newline,
truncations, and structured mutations of valid files (JSON fields of every type,
checkpoints and ESN files with fuzzed configs). A case passes when the reader returns
something that checks out (see each ``check_*``) or raises a ``ValueError`` whose
message is one non-empty line; any other exception, a traceback's worth of text or a
case running past ``CASE_SECONDS`` fails.

The default run tries ``FAST`` cases per reader (derandomised: the same cases every
run); ``pytest -m slow`` tries ``SLOW`` fresh random cases per reader.
"""

from __future__ import annotations

import functools
import io
import json
import math
import shutil
import signal
import struct
import tempfile
import warnings
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as safetensors_bytes

from rnnkit.cli.config import merge, read_toml, table
from rnnkit.cli.main import main
from rnnkit.data.columns import read_columns
from rnnkit.data.labeled import read_csv_sequences, read_jsonl_sequences, read_text_csv
from rnnkit.data.series import read_series_csv
from rnnkit.data.text import encode_file, read_text_chunks
from rnnkit.data.vocab import Vocab
from rnnkit.models import LanguageModel, LMConfig
from rnnkit.reservoir import EchoStateNetwork
from rnnkit.train import load_checkpoint, save_checkpoint
from rnnkit.train.config import FitConfig, TrainConfig

try:  # the seq2seq TSV reader (another part of rnnkit, present in newer trees)
    from rnnkit.data.pairs import read_pairs
except ImportError:  # pragma: no cover
    read_pairs = None

FAST = 50  # cases per reader in the default run
SLOW = 1000  # cases per reader with -m slow
CASE_SECONDS = 10.0  # a case running longer is a hang
ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252")
TRIED: Counter[str] = Counter()  # cases run per check (printed with -s)


# ------------------------------------------------------------------ the verdict


class Hang(BaseException):
    """Raised into a case that ran past ``CASE_SECONDS`` (BaseException: no reader catches it)."""


@contextmanager
def time_limit(seconds: float = CASE_SECONDS):
    def expire(signum, frame):
        raise Hang(f"the case ran past {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def outcome(reader: str, call):
    """``call()``'s result, or None after a one-line ValueError; anything else fails."""
    try:
        with time_limit(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy's overflow warnings are not the point
            return call()
    except ValueError as error:
        message = str(error)
        assert message.strip(), f"{reader}: an empty ValueError"
        assert "\n" not in message and "\r" not in message, f"{reader}: {message!r}"
        return None


SCRATCH = Path(tempfile.mkdtemp(prefix="rnnkit-fuzz-"))  # each case overwrites its file here


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    print("\nfuzz cases tried:", dict(sorted(TRIED.items())))
    shutil.rmtree(SCRATCH, ignore_errors=True)


# -------------------------------------------------------------- file contents


@st.composite
def file_bytes(draw, texts):
    """Bytes of a file: random, empty-ish, or ``texts`` mangled and encoded somehow."""
    kind = draw(st.sampled_from(["random", "empty", "text", "text", "text", "huge"]))
    if kind == "random":
        return draw(st.binary(max_size=3000))
    if kind == "empty":
        return draw(st.sampled_from([b"", b"\n", b"\r\n", b"\xef\xbb\xbf", b"\x00", b" \t\n"]))
    text = draw(texts)
    if kind == "huge":  # one line far longer than any buffer (and csv's field limit)
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["7", "x", ",", "\t", "é"])) * 300_000 + text[at:]
    if draw(st.booleans()):
        text = text.rstrip("\r\n")  # no trailing newline
    if draw(st.integers(0, 4)) == 0:
        at = draw(st.integers(0, len(text)))
        text = text[:at] + "\x00" + text[at:]
    data = text.encode(draw(st.sampled_from(ENCODINGS)), errors="replace")
    if draw(st.integers(0, 4)) == 0:
        data = data[: draw(st.integers(0, len(data)))]  # cut anywhere, mid-character too
    return data


def json_values(max_leaves: int = 8):
    """Any JSON value (numbers huge, tiny and non-finite; strings with control characters)."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(-(10**40), 10**40)
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.text(max_size=12)
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
        max_leaves=max_leaves,
    )


NUMBER_CELLS = st.sampled_from(["1", "-2.5", "1e3", "", " ", "nan", "inf", "1e39", "0x1", "a"])
CELLS = NUMBER_CELLS | st.text(max_size=6) | st.just('"quoted, with comma"') | st.just('"a""b"')


@st.composite
def csv_texts(draw, header=("label", "a", "b")):
    """A CSV: a header (mostly the expected one) and rows of cells of any kind."""
    head = list(header) if draw(st.booleans()) else draw(st.lists(CELLS, max_size=4))
    rows = draw(st.lists(st.lists(CELLS, max_size=5), max_size=6))
    sep = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return sep.join(",".join(r) for r in [head, *rows]) + sep


@st.composite
def jsonl_texts(draw):
    """JSON lines: records close to the format, any JSON value, or broken JSON."""
    lines = []
    for _ in range(draw(st.integers(0, 5))):
        choice = draw(st.integers(0, 3))
        if choice == 0:
            steps = st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1)
            lines.append(
                json.dumps({"sequence": draw(steps), "label": draw(st.sampled_from("ab"))})
            )
        elif choice == 1:
            record = {"sequence": draw(json_values()), "label": draw(json_values(2))}
            lines.append(json.dumps(record, ensure_ascii=draw(st.booleans())))
        elif choice == 2:
            lines.append(json.dumps(draw(json_values())))
        else:
            lines.append(draw(st.text(max_size=30)))
    deep = draw(st.integers(0, 6)) == 0
    if deep:  # nested past the recursion limit
        lines.append('{"sequence": ' + "[" * 50_000 + "1" + "]" * 50_000 + ', "label": "a"}')
    return "\n".join(lines) + "\n"


@st.composite
def vocab_texts(draw):
    """vocab.json: a valid vocabulary, its fields replaced by any JSON, or any JSON at all."""
    data = {"format": "rnnkit-vocab", "version": 1, "kind": "char", "tokens": ["<unk>", "a", "b"]}
    choice = draw(st.integers(0, 3))
    if choice == 0:
        data[draw(st.sampled_from(sorted(data)))] = draw(json_values())
    elif choice == 1:
        data["kind"] = draw(st.sampled_from(["char", "word"]))
        data["tokens"] = ["<unk>", *draw(st.lists(st.text(max_size=3), max_size=6))]
    elif choice == 2:
        data = draw(json_values())
    else:
        return "[" * 100_000 + "]" * 100_000  # deeper than json's recursion limit
    return json.dumps(data, ensure_ascii=draw(st.booleans()))


TOML_LINES = st.sampled_from(
    [
        "[train]",
        "[model]",
        "[[train]]",
        "lr = 0.01",
        "max_steps = 10",
        'cell = "gru"',
        "a = [1, 2,",
        "x = 1979-05-27T07:32:00Z",
        'k = """multi',
        "b = inf",
        "c = nan",
        "d = 0x1F",
        "= 3",
        "e.f.g = {h = [1, [2, [3]]]}",
        "[train.lr]",
    ]
)


@st.composite
def toml_texts(draw):
    lines = draw(st.lists(TOML_LINES | st.text(max_size=20), max_size=8))
    if draw(st.integers(0, 6)) == 0:
        lines.append("a = " + "[" * 20_000 + "]" * 20_000)
    return "\n".join(lines) + "\n"


@st.composite
def pair_texts(draw):
    parts = st.text(max_size=8) | st.sampled_from(["", " ", "\t", "go", "va !"])
    rows = draw(st.lists(st.lists(parts, max_size=3), max_size=6))
    sep = draw(st.sampled_from(["\n", "\r\n"]))
    return sep.join("\t".join(r) for r in rows) + sep


def fuzz_settings(examples: int, slow: bool):
    return settings(
        max_examples=examples,
        deadline=None,  # time_limit catches hangs; timings here vary with the load
        database=None,  # write nothing into the repository
        derandomize=not slow,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def fuzz(strategy, *known):
    """A fast (default run) and a slow test of ``check(data)``: hypothesis' cases, and the
    ``known`` ones (cases that once broke a reader) in both."""

    def tests(check):
        def make(examples: int, slow: bool):
            def run(data):
                TRIED[check.__name__] += 1
                check(data)

            test = given(strategy)(run)
            for case in known:
                test = example(case)(test)
            return fuzz_settings(examples, slow)(test)

        return make(FAST, False), pytest.mark.slow(make(SLOW, True))

    return tests


def fixtures() -> Path:
    """Where the module's fixed files live (the real checkpoint, the real ESN file)."""
    folder = SCRATCH / "fixtures"
    folder.mkdir(exist_ok=True)
    return folder


def file_with(name: str, data: bytes) -> Path:
    path = SCRATCH / name
    path.write_bytes(data)
    return path


def decoded(data: bytes) -> str | None:
    """What a UTF-8 reader should see: the text without a leading BOM, or None."""
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        return None


# ------------------------------------------------------------------- text corpus


def check_text(data: bytes) -> None:
    path = file_with("corpus.txt", data)
    pieces = outcome("text", lambda: list(read_text_chunks(path, chunk_chars=97)))
    text = decoded(data)
    if pieces is None:
        return
    # Read: it was UTF-8 without NUL in the sniffed head, and the pieces are its text.
    assert text is not None and b"\x00" not in data[:8192]
    assert "".join(pieces) == text and all(pieces)
    vocab = outcome("text", lambda: Vocab.build(path, kind="char", chunk_chars=97))
    assert vocab is not None  # a non-empty text has characters
    ids = encode_file(path, vocab, chunk_chars=61)
    assert vocab.decode(ids) == text  # a character vocabulary decodes exactly
    words = outcome("text", lambda: Vocab.build(path, kind="word"))
    if words is None:  # only whitespace: no word tokens
        assert not text.split()
    else:
        assert len(encode_file(path, words, chunk_chars=13)) == len(words.encode(text))


test_text_corpus, test_text_corpus_slow = fuzz(
    file_bytes(st.text(max_size=300)),
    "naïve text\n".encode("utf-16"),
    "naïve text\n".encode("latin-1"),
    "中文".encode("utf-16-le"),  # UTF-16 without NUL bytes and without a BOM
    b"",
    b"\xef\xbb\xbf",
    b"a\x00b",
    b"x" * 300_000,  # one line, no newline
    "é".encode() * 70_000,  # multi-byte characters across every read boundary
)(check_text)


# ------------------------------------------------------------------- vocab.json


def check_vocab(data: bytes) -> None:
    path = file_with("vocab.json", data)
    vocab = outcome("vocab.json", lambda: Vocab.load(path))
    if vocab is not None:
        assert vocab.tokens[0] == "<unk>" and len(set(vocab.tokens)) == len(vocab)
        again = Vocab.from_dict(json.loads(json.dumps(vocab.to_dict())))
        assert again == vocab


test_vocab_json, test_vocab_json_slow = fuzz(
    file_bytes(vocab_texts()),
    b"[" * 100_000 + b"]" * 100_000,
    b'{"kind": "char", "tokens": ["<unk>", 1' + b"0" * 5000 + b"]}",
    b'{"kind": "char", "tokens": ["<unk>", "ab"]}',
    b'{"kind": ["char"], "tokens": ["<unk>"]}',
)(check_vocab)


# --------------------------------------------------------------------- CSV files


def check_columns(data: bytes) -> None:
    path = file_with("series.csv", data)
    columns = outcome("columns.csv", lambda: read_columns(path, ["a", "b"]))
    if columns is not None:
        a, b = columns["a"], columns["b"]
        assert a.dtype == np.float64 and len(a) == len(b)
        assert np.isfinite(a).all() and np.isfinite(b).all()
    series = outcome("forecast.csv", lambda: read_series_csv(path, ["a"]))
    if series is not None:
        assert series.shape[1] == 1 and len(series) >= 2 and np.isfinite(series).all()


test_columns_csv, test_columns_csv_slow = fuzz(
    file_bytes(csv_texts(("a", "b"))),
    b'"x\ny",b\n1,2\n',  # a header cell holding a line break: the message stays one line
    b"a,b\n1,1e309\n",
    b"a,b\n1," + b"7" * 200_000 + b"\n",  # past csv's field limit
    b"a,b\n1,2\n\x00,3\n",
)(check_columns)


def check_wide_csv(data: bytes) -> None:
    path = file_with("wide.csv", data)
    seqs = outcome("wide.csv", lambda: read_csv_sequences(path))
    if seqs is not None:
        assert np.isfinite(seqs.values).all() and seqs.values.dtype == np.float32
        assert (seqs.lengths >= 1).all() and seqs.lengths.max() == seqs.values.shape[1]
        assert seqs.labels.min() >= 0 and seqs.labels.max() < len(seqs.classes)
    texts = outcome("text.csv", lambda: read_text_csv(path, text_column="a"))
    if texts is not None:
        assert len(texts.texts) == len(texts.labels) and all(t.strip() for t in texts.texts)


test_wide_csv, test_wide_csv_slow = fuzz(
    file_bytes(csv_texts()),
    b"label,a,b\nx,1e39,2\n",  # finite in float64, inf in the float32 array
    b'"x\ny",a\n1,2\n',
    b"label,a\n" + "\u2028,1\n".encode(),
)(check_wide_csv)


def check_jsonl(data: bytes) -> None:
    path = file_with("seqs.jsonl", data)
    seqs = outcome("jsonl", lambda: read_jsonl_sequences(path))
    if seqs is not None:
        assert np.isfinite(seqs.values).all() and (seqs.lengths >= 1).all()
        assert seqs.labels.min() >= 0 and seqs.labels.max() < len(seqs.classes)
        padding = np.arange(seqs.values.shape[1])[None, :] >= seqs.lengths[:, None]
        assert (seqs.values[padding] == 0).all()


test_jsonl, test_jsonl_slow = fuzz(
    file_bytes(jsonl_texts()),
    b'{"sequence": [1e39], "label": "a"}\n',
    b'{"sequence": [1' + b"0" * 400 + b'], "label": "a"}\n',  # overflows float()
    b'{"sequence": [1' + b"0" * 5000 + b'], "label": "a"}\n',  # past int's digit limit
    b'{"sequence": ' + b"[" * 50_000 + b"1" + b"]" * 50_000 + b', "label": "a"}\n',
    '{"sequence": [1], "label": "a\u2028b"}\n'.encode(),
)(check_jsonl)


# -------------------------------------------------------------------- TOML configs


def check_toml(data: bytes) -> None:
    path = file_with("run.toml", data)
    config = outcome("toml", lambda: read_toml(path))
    if config is None:
        return
    assert isinstance(config, dict)
    # Whatever the tables hold, building the settings from them is a ValueError or works.
    for cls, name in ((TrainConfig, "train"), (FitConfig, "train"), (LMConfig, "model")):
        fixed = {"vocab_size": 5} if cls is LMConfig else {}
        outcome(
            "toml", lambda cls=cls, name=name, fixed=fixed: merge(cls, table(config, name), **fixed)
        )


test_toml, test_toml_slow = fuzz(
    file_bytes(toml_texts()),
    b"a = " + b"[" * 20_000 + b"]" * 20_000,
    b"[train]\nlr = nan\nmax_steps = 1\n",
    b"[train]\nbatch_size = 1e400\n",
)(check_toml)

TRAIN_TABLES = st.dictionaries(
    st.sampled_from(["lr", "max_steps", "epochs", "batch_size", "seq_len", "clip_norm", "decay"])
    | st.sampled_from(["eval_every", "patience", "warmup_steps", "momentum", "lr_backoff", "x"]),
    st.none()
    | st.booleans()
    | st.integers(-5, 10**30)
    | st.floats()
    | st.text(max_size=5)
    | st.lists(st.integers(), max_size=2),
    max_size=5,
)


def check_train_table(values: dict) -> None:
    values = {k: v for k, v in values.items() if v is not None}  # TOML has no null
    config = outcome("toml [train] values", lambda: merge(TrainConfig, values))
    if config is not None:  # what was accepted makes sense
        assert config.lr > 0 and config.batch_size >= 1 and config.seq_len >= 1
        assert math.isfinite(config.lr)


test_train_table, test_train_table_slow = fuzz(TRAIN_TABLES)(check_train_table)


# -------------------------------------------------------------------- checkpoints


def torch_pickle(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def tiny_lm() -> LanguageModel:
    torch.manual_seed(0)
    return LanguageModel(LMConfig(vocab_size=5, hidden_size=4, num_layers=1, embedding_size=3))


@functools.cache
def real_run() -> Path:
    """A run directory holding one real "last" checkpoint of a tiny language model."""
    model = tiny_lm()
    optimizer = torch.optim.Adam(model.parameters())
    root = fixtures() / "run"
    save_checkpoint(
        root,
        "last",
        model=model,
        model_config=model.config.to_dict(),
        train_config={"lr": 0.1},
        optimizer=optimizer,
        scheduler=None,
        step=3,
        extra={"history": []},
        meta={"task": "lm"},
    )
    return root


CHECKPOINT_FILES = ("last.json", "config.json", "model.safetensors", "trainer.pt")


@st.composite
def checkpoint_damage(draw):
    """Which file of the checkpoint to replace, its new bytes, and whether to re-point."""
    name = draw(st.sampled_from(CHECKPOINT_FILES))
    if name in ("last.json", "config.json") and draw(st.booleans()):
        base = {"format_version": 1, "step": 3, "path": "checkpoints/x", "files": {}}
        key = draw(st.sampled_from([*base, "model", "train", "meta", "model_class"]))
        base[key] = draw(json_values())
        data = json.dumps(base).encode()
    elif name == "model.safetensors" and draw(st.booleans()):
        data = safetensors_header(draw)
    else:
        data = draw(file_bytes(st.text(max_size=200)))
    # True: the pointer's sizes are made to match, so the damage reaches the parsers.
    return name, data, draw(st.booleans())


def safetensors_header(draw) -> bytes:
    """A safetensors file whose JSON header is fuzzed (shapes, dtypes, offsets, lengths)."""
    entry = {
        "dtype": draw(st.sampled_from(["F32", "F64", "I64", "BOOL", "XX", 3])),
        "shape": draw(st.lists(st.integers(-1, 10**12), max_size=3)),
        "data_offsets": draw(st.lists(st.integers(-1, 2**40), max_size=3)),
    }
    header = json.dumps({draw(st.text(max_size=8)): entry}).encode()
    size = draw(st.sampled_from([len(header), len(header) + 7, 2**63, 0]))
    body = draw(st.binary(max_size=64))
    return struct.pack("<Q", size % 2**64) + header + body


def check_checkpoint(damage) -> None:
    name, data, repoint = damage
    run_dir = real_run()
    work = SCRATCH / "ckpt"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(run_dir, work)
    where = work / json.loads((run_dir / "last.json").read_text())["path"]
    target = work / name if name == "last.json" else where / name
    target.write_bytes(data)
    if repoint and name != "last.json":
        pointer = json.loads((work / "last.json").read_text())
        pointer["files"][name] = len(data)
        (work / "last.json").write_text(json.dumps(pointer))
    checkpoint = outcome("checkpoint", lambda: load_checkpoint(work, "last"))
    if checkpoint is None:
        return
    model = tiny_lm()
    outcome("checkpoint", lambda: checkpoint.load_into(model))


test_checkpoint, test_checkpoint_slow = fuzz(
    checkpoint_damage(),
    ("config.json", b'{"format_version": 1, "step": Infinity}', True),  # int(inf)
    ("last.json", b'{"format_version": 1, "path": "x", "files": {"a": 1e999}}', False),
    ("last.json", b'{"format_version": 1, "path": "../../..", "files": {}}', False),
    ("last.json", b'{"format_version": 1, "path": "/etc", "files": {"passwd": 1}}', False),
    ("last.json", b"[" * 100_000 + b"]" * 100_000, False),
    ("config.json", b'{"format_version": 1, "step": 1' + b"0" * 5000 + b"}", True),
    ("model.safetensors", torch_pickle({"w": torch.zeros(2)}), True),  # not safetensors
)(check_checkpoint)


# ----------------------------------------------------------------- ESN saved models


@functools.cache
def real_esn() -> Path:
    t = np.linspace(0, 20, 200)
    esn = EchoStateNetwork(units=12, seed=0).fit(np.sin(t)[:-1, None], np.sin(t)[1:, None])
    path = fixtures() / "esn.safetensors"
    esn.save(path)
    return path


@st.composite
def esn_damage(draw):
    """An ESN file: random bytes, or a real one with its config or tensors fuzzed."""
    choice = draw(st.integers(0, 2))
    if choice == 0:
        return ("bytes", draw(file_bytes(st.text(max_size=100))))
    if choice == 1:
        key = draw(
            st.sampled_from(["units", "layers", "seed", "dtype", "sr", "lr", "feedback"])
            | st.sampled_from(["activation", "backend", "noise", "ridge", "other"])
        )
        return ("config", (key, draw(json_values(3))))
    field = draw(st.sampled_from(["format", "format_version", "input_size", "config"]))
    value = draw(st.text(max_size=20) | st.sampled_from(["[" * 20_000, "1e400", "-1", "99"]))
    return ("meta", (field, value))


def check_esn(damage) -> None:
    how, what = damage
    esn_file = real_esn()
    if how == "bytes":
        path = file_with("esn.safetensors", what)
    else:
        from safetensors import safe_open

        with safe_open(str(esn_file), framework="pt") as f:
            meta = dict(f.metadata())
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        if how == "config":
            config = json.loads(meta["config"])
            config[what[0]] = what[1]
            meta["config"] = json.dumps(config)
        else:
            meta[what[0]] = what[1]
        path = file_with("esn.safetensors", safetensors_bytes(tensors, metadata=meta))
    esn = outcome("esn", lambda: EchoStateNetwork.load(path))
    if esn is not None:  # it loaded: it must run
        y = esn.predict(np.zeros((5, 1)))
        assert y.shape == (5, 1)


test_esn_file, test_esn_file_slow = fuzz(
    esn_damage(),
    ("config", ("seed", 10**300)),  # torch cannot seed with it
    ("config", ("seed", 1e300)),
    ("config", ("layers", 10**12)),
    ("config", ("units", 10**12)),  # no 10^24-entry matrix is allocated
    ("meta", ("config", "[" * 20_000)),
    ("meta", ("format_version", "1\n2")),
    ("bytes", b""),
)(check_esn)


# ------------------------------------------------------------------ seq2seq TSV


def check_pairs(data: bytes) -> None:
    if read_pairs is None:
        pytest.skip("rnnkit.data.pairs is not in this tree")
    path = file_with("pairs.tsv", data)
    pairs = outcome("pairs.tsv", lambda: read_pairs(path))
    if pairs is not None:
        assert pairs and all(len(p) == 2 and p[0] and p[1] for p in pairs)
        assert not any("\t" in s or "\n" in s for p in pairs for s in p)


test_pairs_tsv, test_pairs_tsv_slow = fuzz(
    file_bytes(pair_texts()),
    "go\u2028on\tva\n".encode(),
    b"go\tva\r\n\r\n",
    b"a\tb\tc\n",
)(check_pairs)


# ----------------------------------------------------- the command line: exit 2


NASTY = {
    "utf16": "label,a\nx,1\n".encode("utf-16"),
    "latin1": "label,a\nnaïve,1\n".encode("latin-1"),
    "nul": b"label,a\n\x00,1\n",
    "empty": b"",
    "huge": b"label,a\nx," + b"7" * 300_000 + b"\n",
}


@pytest.mark.parametrize("name", sorted(NASTY))
def test_cli_reports_bad_files_in_one_line(name, tmp_path, capsys):
    data = NASTY[name]
    text, csv_file, jsonl, toml = (tmp_path / f for f in ("t.txt", "d.csv", "d.jsonl", "c.toml"))
    for path in (text, csv_file, jsonl, toml):
        path.write_bytes(data)
    commands = [
        ["lm", "train", "--text", str(text), "--out", str(tmp_path / "lm"), "--max-steps", "1"],
        ["classify", "train", "--data", str(jsonl), "--out", str(tmp_path / "c"), "--epochs", "1"],
        [
            "forecast",
            "train",
            "--csv",
            str(csv_file),
            "--target",
            "a",
            "--out",
            str(tmp_path / "f"),
        ],
        ["lm", "train", "--config", str(toml), "--out", str(tmp_path / "t"), "--max-steps", "1"],
    ]
    if name == "huge":  # a long line of UTF-8 is a fine text to train on
        commands = commands[1:]
    if name == "empty":  # an empty TOML file is a valid config: no settings
        commands = commands[:3]
    for command in commands:
        assert main([*command, "--no-progress"]) == 2, command
        err = capsys.readouterr().err
        assert err.startswith("rnnkit: error: ") and err.count("\n") == 1, (command, err)
        assert "Traceback" not in err

"""Text files in and out: streamed UTF-8 reading, atomic writing, encoding, splitting.

Files are never read whole: :func:`read_text_chunks` decodes them a block at a time
with an incremental UTF-8 decoder, so a multi-byte character cut by a block boundary
is still decoded once and correctly, and the reported offset of a bad byte is its
offset in the file.
"""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # only for annotations: vocab.py imports this module
    from rnnkit.data.vocab import Vocab

DEFAULT_CHUNK_CHARS = 1 << 20
_SNIFF_BYTES = 8192  # how much of the file's start is searched for NUL bytes
_BOM = "\ufeff"
_NON_WORD_CHAR = re.compile(r"\W")  # anything but the tokenizer's word characters (vocab.py)


def _check_readable(path: Path) -> None:
    """Raise a one-line ValueError unless ``path`` is a non-empty, non-binary file."""
    if not path.exists():
        raise ValueError(f"no such file: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a directory: give a text file")
    try:
        with path.open("rb") as f:
            head = f.read(_SNIFF_BYTES)
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or e}") from e
    if not head:
        raise ValueError(f"{path} is empty: give a text file with some content")
    # UTF-8 text never contains NUL in practice; UTF-16 text and binaries almost always do.
    if b"\x00" in head:
        raise ValueError(f"{path} looks binary (it contains NUL bytes); give a UTF-8 text file")


def read_whole_text(path: Path, what: str = "file") -> str:
    """The whole UTF-8 text of a small file ``path`` (BOM dropped), or a one-line
    ValueError naming the line of a byte that is not UTF-8; ``what`` names the file."""
    if not path.exists():
        raise ValueError(f"no such {what}: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a directory; give a {what}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or e}") from e
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ValueError(
            f"{path} line {line}: byte {e.start} is not UTF-8; save the file as UTF-8"
        ) from None
    return text


def read_text_chunks(
    path: str | os.PathLike[str], chunk_chars: int = DEFAULT_CHUNK_CHARS
) -> Iterator[str]:
    """Yield the UTF-8 text of ``path`` in pieces of at most ``chunk_chars`` characters.

    The file is read ``chunk_chars`` bytes at a time (a piece never holds more
    characters than the bytes it came from), a leading byte-order mark is dropped and
    empty pieces are skipped. A missing, empty or binary file raises ``ValueError``
    at once; bytes that are not UTF-8 raise it when reached, with their file offset.
    """
    if not isinstance(chunk_chars, int) or isinstance(chunk_chars, bool) or chunk_chars < 1:
        raise ValueError(f"chunk_chars must be a positive integer, got {chunk_chars!r}")
    path = Path(path)
    _check_readable(path)
    return _decode_chunks(path, chunk_chars)


def _decode_chunks(path: Path, chunk_chars: int) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    consumed = 0  # bytes handed to the decoder so far
    at_start = True  # the BOM can only be the first character
    empty = True
    with path.open("rb") as f:
        while True:
            data = f.read(chunk_chars)
            final = not data
            # Bytes of an unfinished character wait in the decoder; the error offset
            # counts from them, so step back by that many to get the file offset.
            pending = len(decoder.getstate()[0])
            try:
                text = decoder.decode(data, final=final)
            except UnicodeDecodeError as e:
                offset = consumed - pending + e.start
                raise ValueError(
                    f"{path} is not UTF-8 text (invalid byte at offset {offset})"
                ) from None
            consumed += len(data)
            if text and at_start:
                at_start = False
                text = text.removeprefix(_BOM)
            if text:
                empty = False
                yield text
            if final:
                break
    if empty:  # nothing but a byte-order mark
        raise ValueError(f"{path} is empty: give a text file with some content")


def read_token_chunks(
    path: str | os.PathLike[str], kind: str, chunk_chars: int = DEFAULT_CHUNK_CHARS
) -> Iterator[str]:
    """Like :func:`read_text_chunks`, but no piece ends inside a token of ``kind``.

    For ``"word"`` the trailing run of word characters of each piece is held back and
    prepended to the next, so tokenising the pieces one by one gives exactly the
    tokens of the whole text (every piece ends just after a non-word character, and
    no token runs across one). Characters never straddle pieces, so ``"char"`` pieces
    are passed through.
    """
    chunks = read_text_chunks(path, chunk_chars)
    if kind != "word":
        yield from chunks
        return
    carry: list[str] = []  # the start of a word that the next chunk may continue
    for chunk in chunks:
        cut = _trailing_word_start(chunk)
        if cut == 0:  # all word characters: the word goes on (a list keeps this linear)
            carry.append(chunk)
            continue
        yield "".join(carry) + chunk[:cut]
        carry = [chunk[cut:]]
    tail = "".join(carry)
    if tail:
        yield tail


def _trailing_word_start(text: str) -> int:
    """Index where the run of word characters ending ``text`` starts (``len(text)``: none)."""
    # The last non-word character, found as the first one of the reversed text.
    match = _NON_WORD_CHAR.search(text[::-1])
    return len(text) - match.start() if match else 0


def encode_file(
    path: str | os.PathLike[str], vocab: Vocab, chunk_chars: int = DEFAULT_CHUNK_CHARS
) -> np.ndarray:
    """Encode the text file ``path`` with ``vocab``, streamed chunk by chunk.

    Returns a 1-D int32 array of token ids, equal to ``vocab.encode(whole_text)``.
    """
    parts = [vocab.encode(piece) for piece in read_token_chunks(path, vocab.kind, chunk_chars)]
    if not parts:
        return np.zeros(0, dtype=np.int32)
    return np.concatenate(parts).astype(np.int32, copy=False)  # (N,) int32


def split_tokens(ids: np.ndarray, val_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Split ``ids`` into ``(train, val)``: the last ``val_fraction`` is validation.

    Both parts are contiguous views of ``ids``, as in char-rnn: validation is one
    unbroken stretch of text that training never reads. ``val_fraction=0`` gives an empty
    validation part; otherwise each part must keep at least 2 tokens (one input and
    its target).
    """
    if (
        isinstance(val_fraction, bool)
        or not isinstance(val_fraction, int | float)
        or not 0 <= val_fraction < 1
    ):
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"token ids must be 1-D, got shape {tuple(ids.shape)}")
    n = len(ids)
    n_val = round(n * val_fraction)
    n_train = n - n_val
    if n_train < 2:
        raise ValueError(
            f"the text has {n} tokens, leaving {n_train} for training with "
            f"val_fraction={val_fraction}; give a longer text or a smaller val_fraction"
        )
    if val_fraction > 0 and n_val < 2:
        raise ValueError(
            f"the text has {n} tokens, leaving {n_val} for validation with "
            f"val_fraction={val_fraction}; give a longer text or a larger val_fraction"
        )
    return ids[:n_train], ids[n_train:]

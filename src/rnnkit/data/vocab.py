"""``Vocab``: the map between text and token ids, for characters or words.

Id 0 is always the unknown token ``"<unk>"``: characters or words not seen when the
vocabulary was built (or cut by ``max_size`` / ``min_count``) encode to it.

Word tokens come from one regular expression: a run of word characters (``\\w+``),
any other single non-space character (punctuation, symbols), or a newline. Other
whitespace only separates tokens and is dropped, so **word decoding normalises
spacing**: tokens are joined with one space, except none after a newline and none
before a newline or punctuation (``"( a , b )"`` decodes as ``"( a, b)"``).
Character vocabularies decode exactly.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from rnnkit.atomic import atomic_open_text
from rnnkit.data.text import DEFAULT_CHUNK_CHARS, read_token_chunks

UNK_TOKEN = "<unk>"
UNK_ID = 0
VOCAB_KINDS = ("char", "word")
_FORMAT = "rnnkit-vocab"
_VERSION = 1
_WORD_TOKEN = re.compile(r"\w+|\n|[^\w\s]")  # word, newline, or one punctuation character
_WORD_CHAR = re.compile(r"\w")


def check_kind(kind: object) -> str:
    """Return ``kind`` if it names a vocabulary kind, else raise a one-line ValueError."""
    if kind not in VOCAB_KINDS:
        raise ValueError(
            f"unknown vocabulary kind {kind!r}; choose one of {', '.join(VOCAB_KINDS)}"
        )
    return kind  # type: ignore[return-value]


def tokenize(text: str, kind: str) -> list[str]:
    """Split ``text`` into the tokens a ``kind`` vocabulary sees (see the module docstring)."""
    if check_kind(kind) == "char":
        return list(text)
    return _WORD_TOKEN.findall(text)


def ranked_tokens(
    counts: Counter[str], min_count: int, limit: int | None, source: str
) -> list[str]:
    """The tokens counted ``min_count`` or more times, by descending count then codepoint
    (so the same text gives the same ids), at most ``limit`` of them."""
    kept = [(token, n) for token, n in counts.items() if n >= min_count]
    if not kept:
        raise ValueError(f"no token of {source} occurs {min_count} or more times; lower min_count")
    kept.sort(key=lambda item: (-item[1], item[0]))  # Python orders str by codepoint
    return [token for token, _ in kept[:limit]]


def _space_before(token: str, previous: str | None) -> bool:
    """Whether word decoding puts a space between ``previous`` and ``token``."""
    if previous == "\n" or token == "\n":
        return False
    # A one-character token that is not a word character is punctuation: it hugs the left.
    return not (len(token) == 1 and not _WORD_CHAR.match(token))


class Vocab:
    """Tokens of a character- or word-level language model; ``tokens[id]`` is a token."""

    def __init__(self, kind: str, tokens: Sequence[str]) -> None:
        self.kind = check_kind(kind)
        self.tokens: list[str] = list(tokens)
        _check_tokens(self.kind, self.tokens)
        self._index = {token: i for i, token in enumerate(self.tokens)}
        # Char encoding is vectorised: codepoints are looked up in a sorted table.
        chars = self.tokens[1:] if self.kind == "char" else []
        codepoints = np.array([ord(c) for c in chars], dtype=np.uint32)  # (V-1,) or (0,)
        order = np.argsort(codepoints)
        self._sorted_codepoints = codepoints[order]  # ascending
        self._sorted_ids = (order + 1).astype(np.int32)  # id of each sorted codepoint

    # ---- building -------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        path: str | os.PathLike[str],
        kind: str = "char",
        max_size: int | None = None,
        min_count: int = 1,
        chunk_chars: int = DEFAULT_CHUNK_CHARS,
    ) -> Vocab:
        """Build the vocabulary of the UTF-8 text file ``path``, streaming it.

        Tokens are ordered by descending count, ties by codepoint order, so the same
        text always gives the same ids. ``max_size`` caps the length including
        ``<unk>``; tokens seen fewer than ``min_count`` times are left out.
        """
        check_kind(kind)
        _check_caps(max_size, min_count)
        counts: Counter[str] = Counter()
        for piece in read_token_chunks(path, kind, chunk_chars):
            counts.update(tokenize(piece, kind))
        return cls._from_counts(kind, counts, max_size, min_count, source=str(path))

    @classmethod
    def from_text(
        cls, text: str, kind: str = "char", max_size: int | None = None, min_count: int = 1
    ) -> Vocab:
        """Build the vocabulary of an in-memory ``text`` (same rules as :meth:`build`)."""
        check_kind(kind)
        _check_caps(max_size, min_count)
        return cls._from_counts(
            kind, Counter(tokenize(text, kind)), max_size, min_count, "the text"
        )

    @classmethod
    def _from_counts(
        cls, kind: str, counts: Counter[str], max_size: int | None, min_count: int, source: str
    ) -> Vocab:
        if not counts:
            what = "characters" if kind == "char" else "word tokens (words, punctuation, newlines)"
            raise ValueError(f"{source} has no {what}; give a text with some content")
        limit = None if max_size is None else max_size - 1  # one place is <unk>'s
        return cls(kind, [UNK_TOKEN, *ranked_tokens(counts, min_count, limit, source)])

    # ---- encoding and decoding ------------------------------------------------------

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocab):
            return NotImplemented
        return self.kind == other.kind and self.tokens == other.tokens

    __hash__ = None  # type: ignore[assignment]  # mutable token list

    def __repr__(self) -> str:
        return f"Vocab(kind={self.kind!r}, size={len(self)})"

    def encode(self, text: str) -> np.ndarray:
        """Token ids of ``text``: a 1-D int32 array, unknown tokens as ``UNK_ID``."""
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, got {type(text).__name__}")
        if self.kind == "word":
            tokens = _WORD_TOKEN.findall(text)
            index = self._index
            return np.fromiter(
                (index.get(t, UNK_ID) for t in tokens), dtype=np.int32, count=len(tokens)
            )
        # surrogatepass: a str may hold lone surrogates, which are characters like any other.
        codepoints = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")  # (N,)
        table = self._sorted_codepoints
        if len(table) == 0:
            return np.full(len(codepoints), UNK_ID, dtype=np.int32)
        pos = np.minimum(np.searchsorted(table, codepoints), len(table) - 1)  # (N,)
        return np.where(table[pos] == codepoints, self._sorted_ids[pos], UNK_ID).astype(np.int32)

    def decode(self, ids: int | Iterable[int] | np.ndarray | torch.Tensor) -> str:
        """Text of token ids (an int, a sequence, a 1-D array or tensor).

        Characters decode exactly; words are joined with normalised spacing (see the
        module docstring), and ``<unk>`` decodes as the text ``"<unk>"``.
        """
        array = self._as_ids(ids)
        if self.kind == "char":
            tokens = self.tokens
            return "".join([tokens[i] for i in array.tolist()])
        pieces: list[str] = []
        previous: int | None = None
        for i in array.tolist():
            pieces.append(self.tokens[i] if previous is None else self.token_text(i, previous))
            previous = i
        return "".join(pieces)

    def token_text(self, token_id: int, previous: int | None = None) -> str:
        """The text token ``token_id`` adds to a stream of decoded output.

        For characters, the character. For words, the word with the space that goes
        before it: none before punctuation or a newline, none after a newline
        (``previous`` is the id emitted just before; ``None`` counts as a word), so
        ``decode(ids)`` is ``tokens[ids[0]]`` followed by ``token_text(ids[k], ids[k-1])``.
        """
        token = self.tokens[self._check_id(token_id)]
        if self.kind == "char":
            return token
        before = None if previous is None else self.tokens[self._check_id(previous)]
        return (" " + token) if _space_before(token, before) else token

    def _check_id(self, token_id: int) -> int:
        token_id = int(token_id)
        if not 0 <= token_id < len(self.tokens):
            raise ValueError(
                f"token id {token_id} is outside the vocabulary (ids 0..{len(self.tokens) - 1})"
            )
        return token_id

    def _as_ids(self, ids: int | Iterable[int] | np.ndarray | torch.Tensor) -> np.ndarray:
        """``ids`` as a 1-D integer array, checked to be in range."""
        if isinstance(ids, torch.Tensor):
            ids = ids.detach().cpu().numpy()
        array = np.asarray(ids)
        if array.ndim == 0:
            array = array.reshape(1)
        if array.ndim != 1:
            raise ValueError(f"decode takes a 1-D sequence of token ids, got shape {array.shape}")
        if array.size == 0:
            return array.astype(np.int64)
        if not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"token ids must be integers, got dtype {array.dtype}")
        low, high = int(array.min()), int(array.max())
        if low < 0 or high >= len(self.tokens):
            bad = low if low < 0 else high
            self._check_id(bad)
        return array

    # ---- saving and loading ---------------------------------------------------------

    def to_dict(self) -> dict:
        """A JSON-ready description; :meth:`from_dict` restores it."""
        return {"format": _FORMAT, "version": _VERSION, "kind": self.kind, "tokens": self.tokens}

    @classmethod
    def from_dict(cls, data: object) -> Vocab:
        """Restore a vocabulary from :meth:`to_dict`'s output, checking every field."""
        if not isinstance(data, dict):
            raise ValueError(f"a vocabulary is a JSON object, got {type(data).__name__}")
        if data.get("format", _FORMAT) != _FORMAT or data.get("version", _VERSION) != _VERSION:
            raise ValueError(
                f"unsupported vocabulary format {data.get('format')!r} "
                f"version {data.get('version')!r} (expected {_FORMAT!r} version {_VERSION})"
            )
        missing = [key for key in ("kind", "tokens") if key not in data]
        if missing:
            raise ValueError(f"the vocabulary has no {' or '.join(missing)} field")
        if not isinstance(data["tokens"], list):
            raise ValueError(f"the vocabulary's tokens are not a list: {data['tokens']!r:.60}")
        return cls(data["kind"], data["tokens"])

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the vocabulary to ``path`` as JSON, atomically; returns the path."""
        with atomic_open_text(path) as f:
            json.dump(self.to_dict(), f, ensure_ascii=False, indent=0)
            f.write("\n")
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Vocab:
        """Read a vocabulary written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            what = "is a directory" if path.is_dir() else "does not exist"
            raise ValueError(f"cannot load the vocabulary: {path} {what}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, RecursionError) as e:  # not UTF-8, not JSON, nested too deeply
            raise ValueError(f"{path} is not a vocabulary file (not valid JSON: {e})") from None
        except OSError as e:
            raise ValueError(f"cannot read {path}: {e.strerror or e}") from e
        try:
            return cls.from_dict(data)
        except ValueError as e:
            raise ValueError(f"{path} is not a valid vocabulary file: {e}") from None


def _check_caps(max_size: int | None, min_count: int) -> None:
    if max_size is not None and (
        not isinstance(max_size, int) or isinstance(max_size, bool) or max_size < 2
    ):
        raise ValueError(f"max_size must be at least 2 (<unk> and one token), got {max_size!r}")
    if not isinstance(min_count, int) or isinstance(min_count, bool) or min_count < 1:
        raise ValueError(f"min_count must be a positive integer, got {min_count!r}")


def _check_tokens(kind: str, tokens: list[object]) -> None:
    """Raise a one-line ValueError unless ``tokens`` is a valid ``kind`` token list."""
    if not tokens or tokens[0] != UNK_TOKEN:
        raise ValueError(f"a vocabulary's first token (id {UNK_ID}) must be {UNK_TOKEN!r}")
    seen: set[str] = set()
    for i, token in enumerate(tokens[1:], start=1):
        if not isinstance(token, str):
            raise ValueError(f"token {i} is not a string: {token!r}")
        if kind == "char" and len(token) != 1:
            raise ValueError(f"token {i} of a char vocabulary is not one character: {token!r}")
        if kind == "word" and not _WORD_TOKEN.fullmatch(token):
            raise ValueError(f"token {i} of a word vocabulary is not a word token: {token!r}")
        if token in seen:
            raise ValueError(f"token {i} appears twice in the vocabulary: {token!r}")
        seen.add(token)

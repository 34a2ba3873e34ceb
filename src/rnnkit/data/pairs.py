"""Sequence pairs for encoder–decoder models: vocabulary, TSV reading, encoding, batching.

A pair is ``(source, target)``, two strings. ``PairVocab`` maps the tokens of one side
to ids, with four special tokens in front:

=========  ====  ==========================================================
token      id    meaning
=========  ====  ==========================================================
``<pad>``  0     fills a padded tensor past a sequence's end
``<s>``    1     the decoder's first input (start of the target)
``</s>``   2     the decoder's last output (end of the target)
``<unk>``  3     a token not seen when the vocabulary was built
=========  ====  ==========================================================

Tokens are characters or words, split by ``rnnkit.data.vocab.tokenize``; word
decoding joins words with the same spacing rule as ``Vocab`` (no space before
punctuation). ``encode_pairs`` turns pairs into padded, batch-major tensors for
teacher forcing: ``tgt_in = <s> y_1 … y_U`` and ``tgt_out = y_1 … y_U </s>``.
``rnnkit.data.buckets.BucketBatches`` batches them.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import chain
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rnnkit.atomic import atomic_write_text
from rnnkit.data.labeled import stratified_split
from rnnkit.data.text import read_whole_text
from rnnkit.data.vocab import _WORD_TOKEN, _space_before, check_kind, ranked_tokens, tokenize

PAD_ID, START_ID, END_ID, UNK_ID = 0, 1, 2, 3
PAD_TOKEN, START_TOKEN, END_TOKEN, UNK_TOKEN = "<pad>", "<s>", "</s>", "<unk>"
SPECIALS = (PAD_TOKEN, START_TOKEN, END_TOKEN, UNK_TOKEN)
_FORMAT = "rnnkit-pair-vocab"
_VERSION = 1
_SHOWN_UNKNOWN = 5  # unknown tokens named in a strict-encoding error


class PairVocab:
    """Tokens of one side of a pair task; ``tokens[id]`` is a token, specials first."""

    def __init__(self, kind: str, tokens: Sequence[str]) -> None:
        self.kind = check_kind(kind)
        self.tokens: list[str] = list(tokens)
        _check_tokens(self.kind, self.tokens)
        self._index = {token: i for i, token in enumerate(self.tokens)}

    @classmethod
    def build(
        cls,
        texts: Iterable[str],
        kind: str,
        *,
        min_count: int = 1,
        max_size: int | None = None,
    ) -> PairVocab:
        """The vocabulary of ``texts``: tokens by descending count, ties by codepoint.

        Tokens seen fewer than ``min_count`` times are left out; ``max_size`` caps the
        length *including* the four special tokens. The same texts give the same ids.
        """
        check_kind(kind)
        if not isinstance(min_count, int) or isinstance(min_count, bool) or min_count < 1:
            raise ValueError(f"min_count must be a positive integer, got {min_count!r}")
        if max_size is not None and (
            not isinstance(max_size, int) or isinstance(max_size, bool) or max_size <= len(SPECIALS)
        ):
            raise ValueError(
                f"max_size must be at least {len(SPECIALS) + 1} (4 special tokens and one "
                f"more), got {max_size!r}"
            )
        if isinstance(texts, str):
            raise ValueError("PairVocab.build takes a list of texts, not one string")
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(tokenize(text, kind))
        if not counts:
            raise ValueError(f"the texts have no {kind} tokens; give some non-empty texts")
        limit = None if max_size is None else max_size - len(SPECIALS)
        return cls(kind, [*SPECIALS, *ranked_tokens(counts, min_count, limit, "the texts")])

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PairVocab):
            return NotImplemented
        return self.kind == other.kind and self.tokens == other.tokens

    __hash__ = None  # type: ignore[assignment]  # mutable token list

    def __repr__(self) -> str:
        return f"PairVocab(kind={self.kind!r}, size={len(self)})"

    # ---- encoding and decoding ------------------------------------------------------

    def encode(self, text: str, *, strict: bool = False) -> list[int]:
        """Token ids of ``text`` (no ``<s>`` / ``</s>`` added); unknown tokens as ``UNK_ID``.

        With ``strict`` an unknown token is a ValueError naming the first few.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, got {type(text).__name__}")
        index = self._index
        ids = [index.get(token, UNK_ID) for token in tokenize(text, self.kind)]
        if strict and UNK_ID in ids:
            unknown = self.unknown(text)
            shown = ", ".join(repr(t) for t in unknown[:_SHOWN_UNKNOWN])
            more = (
                f" and {len(unknown) - _SHOWN_UNKNOWN} more"
                if len(unknown) > _SHOWN_UNKNOWN
                else ""
            )
            raise ValueError(
                f"{text!r:.60} has tokens the {self.kind} vocabulary does not know: {shown}{more}"
            )
        return ids

    def unknown(self, text: str) -> list[str]:
        """The distinct tokens of ``text`` not in the vocabulary, in order of appearance."""
        index = self._index
        return list(dict.fromkeys(t for t in tokenize(text, self.kind) if t not in index))

    def decode(self, ids: Iterable[int] | np.ndarray | Tensor) -> str:
        """Text of token ids: ``<pad>`` and ``<s>`` are skipped, ``</s>`` ends the text.

        ``<unk>`` decodes as the text ``"<unk>"``. Words are joined with ``Vocab``'s
        spacing (one space, none before punctuation); characters decode exactly.
        """
        if isinstance(ids, Tensor):
            ids = ids.detach().cpu().tolist()
        elif isinstance(ids, np.ndarray):
            ids = ids.tolist()
        tokens: list[str] = []
        for i in ids:
            i = int(i)
            if i == END_ID:
                break
            if i in (PAD_ID, START_ID):
                continue
            if not 0 <= i < len(self.tokens):
                raise ValueError(
                    f"token id {i} is outside the vocabulary (ids 0..{len(self.tokens) - 1})"
                )
            tokens.append(self.tokens[i])
        if self.kind == "char":
            return "".join(tokens)
        pieces: list[str] = []
        for k, token in enumerate(tokens):
            space = k > 0 and _space_before(token, tokens[k - 1])
            pieces.append(" " + token if space else token)
        return "".join(pieces)

    def decode_batch(self, ids: Tensor | np.ndarray) -> list[str]:
        """Texts of a ``(B, T)`` batch of id rows (each decoded as :meth:`decode`)."""
        if isinstance(ids, Tensor):
            ids = ids.detach().cpu().numpy()
        ids = np.asarray(ids)
        if ids.ndim != 2:
            raise ValueError(f"decode_batch takes a (B, T) array of ids, got shape {ids.shape}")
        return [self.decode(row) for row in ids]

    # ---- saving and loading ---------------------------------------------------------

    def to_dict(self) -> dict:
        """A JSON-ready description; :meth:`from_dict` restores it."""
        return {"format": _FORMAT, "version": _VERSION, "kind": self.kind, "tokens": self.tokens}

    @classmethod
    def from_dict(cls, data: object) -> PairVocab:
        """Restore a vocabulary from :meth:`to_dict`'s output, checking every field."""
        if not isinstance(data, dict):
            raise ValueError(f"a pair vocabulary is a JSON object, got {type(data).__name__}")
        if data.get("format") != _FORMAT or data.get("version") != _VERSION:
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
        text = json.dumps(self.to_dict(), ensure_ascii=False, indent=0)
        atomic_write_text(path, text + "\n")
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PairVocab:
        """Read a vocabulary written by :meth:`save` (a one-line ValueError if it cannot)."""
        path = Path(path)
        if not path.is_file():
            what = "is a directory" if path.is_dir() else "does not exist"
            raise ValueError(f"cannot load the vocabulary: {path} {what}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            reason = str(e).splitlines()[0]
            raise ValueError(
                f"{path} is not a vocabulary file (not valid JSON: {reason})"
            ) from None
        except OSError as e:
            raise ValueError(f"cannot read {path}: {e.strerror or e}") from e
        try:
            return cls.from_dict(data)
        except ValueError as e:
            raise ValueError(f"{path} is not a valid pair vocabulary file: {e}") from None


def _check_tokens(kind: str, tokens: list[object]) -> None:
    """Raise a one-line ValueError unless ``tokens`` is a valid ``kind`` token list."""
    if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
        raise ValueError(f"a pair vocabulary must start with the special tokens {SPECIALS}")
    seen: set[str] = set(SPECIALS)
    for i, token in enumerate(tokens[len(SPECIALS) :], start=len(SPECIALS)):
        if not isinstance(token, str):
            raise ValueError(f"token {i} is not a string: {token!r}")
        if kind == "char" and len(token) != 1:
            raise ValueError(f"token {i} of a char vocabulary is not one character: {token!r}")
        if kind == "word" and not _WORD_TOKEN.fullmatch(token):
            raise ValueError(f"token {i} of a word vocabulary is not a word token: {token!r}")
        if token in seen:
            raise ValueError(f"token {i} appears twice in the vocabulary: {token!r}")
        seen.add(token)


# ------------------------------------------------------------------------------ files


def _read_lines(path: str | os.PathLike[str], what: str) -> list[str]:
    """The lines of a UTF-8 file (BOM dropped, ``\\n`` / ``\\r\\n`` endings removed)."""
    text = read_whole_text(Path(path), what)
    # Split on "\n" only: str.splitlines would also split on \x0b, \u2028, ... and
    # shift the line numbers in error messages.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final line ending
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_pairs(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """The ``(source, target)`` pairs of a UTF-8 TSV file, one ``source<TAB>target`` a line.

    Lines holding only whitespace are skipped. Only the line ending is removed, so
    other spaces are part of the text. Every other line must have exactly two
    tab-separated fields, neither empty; a file without pairs is an error.
    """
    pairs: list[tuple[str, str]] = []
    for n, line in enumerate(_read_lines(path, "pairs file"), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise ValueError(
                f"{path} line {n}: expected 2 tab-separated fields (source, target), "
                f"found {len(fields)}"
            )
        source, target = fields
        for name, text in (("source", source), ("target", target)):
            if not text:
                raise ValueError(f"{path} line {n}: the {name} is empty; give source<TAB>target")
        pairs.append((source, target))
    if not pairs:
        raise ValueError(f"{path} has no pairs; write one source<TAB>target per line")
    return pairs


def read_sources(path_or_lines: str | os.PathLike[str] | Iterable[str]) -> list[str]:
    """Source texts to translate, one a line: a file path, or lines (e.g. ``sys.stdin``).

    A str or path is read as a UTF-8 file; any other iterable gives the lines
    themselves (a trailing ``\\n`` / ``\\r\\n`` is removed). A blank line is an error
    rather than skipped: an empty source has nothing to encode, and skipping it would
    misalign the outputs with the input lines.
    """
    if isinstance(path_or_lines, (str, os.PathLike)):
        where = str(path_or_lines)
        lines = _read_lines(path_or_lines, "source file")
    else:
        where = "the input"
        lines = []
        for line in path_or_lines:
            if not isinstance(line, str):
                raise ValueError(f"source lines must be strings, got {type(line).__name__}")
            lines.append(line.removesuffix("\n").removesuffix("\r"))
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            raise ValueError(f"{where} line {n} is blank; give one source text on every line")
    if not lines:
        raise ValueError(f"{where} has no source texts; give one source text a line")
    return lines


# --------------------------------------------------------------------------- encoding


def _padded(rows: list[list[int]], width: int) -> Tensor:
    """``rows`` right-padded with ``PAD_ID`` into an ``(N, width)`` int64 tensor."""
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))  # (N,)
    out = np.full((len(rows), width), PAD_ID, dtype=np.int64)  # (N, width)
    inside = np.arange(width) < lengths[:, None]  # (N, width), row-major like the flat ids
    out[inside] = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
    return torch.from_numpy(out)


def _encode_side(
    texts: Sequence[str], vocab: PairVocab, side: str, strict: bool
) -> list[list[int]]:
    rows = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"{side} {i} is not a string: {text!r:.60}")
        try:
            rows.append(vocab.encode(text, strict=strict))
        except ValueError as e:
            raise ValueError(f"{side} {i}: {e}") from None
    return rows


def encode_sources(
    texts: Sequence[str], src_vocab: PairVocab, *, strict: bool = False
) -> dict[str, Tensor]:
    """Padded source ids: ``src`` ``(N, S_max)`` int64 and ``src_lengths`` ``(N,)`` int64.

    A source with no tokens is an error (the encoder needs at least one step).
    ``strict`` rejects unknown tokens instead of encoding them as ``<unk>``.
    """
    if isinstance(texts, str) or not len(texts):
        raise ValueError("encode_sources needs a non-empty list of source texts")
    rows = _encode_side(texts, src_vocab, "source", strict)
    lengths = [len(row) for row in rows]
    if min(lengths) == 0:
        i = lengths.index(0)
        raise ValueError(f"source {i} ({texts[i]!r:.40}) has no {src_vocab.kind} tokens")
    return {
        "src": _padded(rows, max(lengths)),
        "src_lengths": torch.tensor(lengths, dtype=torch.int64),
    }


def encode_pairs(
    pairs: Sequence[tuple[str, str]], src_vocab: PairVocab, tgt_vocab: PairVocab
) -> dict[str, Tensor]:
    """Padded, batch-major tensors of ``pairs`` for teacher-forced training.

    ``src`` ``(N, S_max)`` and ``src_lengths`` ``(N,)`` as :func:`encode_sources`;
    ``tgt_in`` ``(N, U_max + 1)`` = ``<s> y_1 … y_U``, ``tgt_out`` = ``y_1 … y_U </s>``,
    ``tgt_lengths`` = ``U + 1`` (all int64, padded with ``PAD_ID``). Unknown tokens
    encode as ``<unk>``.
    """
    if isinstance(pairs, str) or not len(pairs):
        raise ValueError("encode_pairs needs a non-empty list of (source, target) pairs")
    for i, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"pair {i} is not a (source, target) pair: {pair!r:.60}")
    out = encode_sources([s for s, _ in pairs], src_vocab)
    targets = _encode_side([t for _, t in pairs], tgt_vocab, "target", False)
    width = max(len(row) for row in targets) + 1
    out["tgt_in"] = _padded([[START_ID, *row] for row in targets], width)
    out["tgt_out"] = _padded([[*row, END_ID] for row in targets], width)
    out["tgt_lengths"] = torch.tensor([len(row) + 1 for row in targets], dtype=torch.int64)
    return out


def split_pairs(
    pairs: Sequence[tuple[str, str]], val_fraction: float, test_fraction: float, seed: int
) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[tuple[str, str]]]:
    """``(train, val, test)`` parts of ``pairs``, drawn from ``seed``.

    The split is over distinct sources: pairs that share a source stay in one part, so
    no validation or test source is seen in training. ``round(fraction * S)`` of the
    ``S`` distinct sources go to each part (test first, then validation; the rules of
    ``stratified_split``). Each part keeps the pairs' original order.
    """
    if isinstance(pairs, str) or not len(pairs):
        raise ValueError("split_pairs needs a non-empty list of (source, target) pairs")
    groups: dict[str, int] = {}
    group = np.array([groups.setdefault(s, len(groups)) for s, _ in pairs], dtype=np.int64)
    try:
        single_class = np.zeros(len(groups), dtype=np.int64)  # one "class": a plain split
        parts = stratified_split(single_class, val_fraction, test_fraction, seed)
    except ValueError as e:
        raise ValueError(str(e).replace("sequences", "distinct sources")) from None
    out = []
    for part in parts:
        keep = np.isin(group, part)
        out.append([pairs[i] for i in np.flatnonzero(keep)])
    return out[0], out[1], out[2]

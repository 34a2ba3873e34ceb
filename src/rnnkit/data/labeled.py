"""Labelled sequences for classification: readers for CSV, JSONL, texts and NumPy arrays.

Every reader ends in one :class:`LabeledSequences`: the sequences right-padded into one
array (``values``: ``(N, T_max, F)`` float32 numbers, or ``(N, T_max)`` int64 token ids),
their ``lengths``, the label of each as an id into ``classes``, and ``kind``
(``"numeric"`` or ``"tokens"``).

Formats:

- **wide CSV** (:func:`read_csv_sequences`): a header row, a label column, and one
  column per time step (every other column, or the ones named); each data row is one
  sequence of one feature per step. Empty cells at the end of a row end that
  sequence early (variable lengths); an empty cell before a value is an error.
- **JSONL** (:func:`read_jsonl_sequences`): one object per line,
  ``{"sequence": [1, 2, 3], "label": "a"}`` or ``{"sequence": [[1, 2], [3, 4]], ...}``
  (steps of several features); lengths may differ, the feature count may not.
- **texts** (:func:`read_text_folder`, :func:`read_text_csv`): a folder with one
  subfolder per label holding UTF-8 ``.txt`` files, or a CSV with a text column and a
  label column. They give :class:`LabeledTexts`, split *before* tokenising so the
  vocabulary (``LabeledTexts.build_vocab``) comes from the training texts only; then
  ``encode(vocab)`` gives token ids (unknown tokens are id 0, ``<unk>``).
- **arrays** (:func:`from_arrays`): ``(N, T)`` / ``(N, T, F)`` arrays or a list of
  ``(T_i,)`` / ``(T_i, F)`` arrays, plus labels.

Labels may be strings or integers. Classes are sorted for a stable order: numerically
when every label is an integer (``"2"`` before ``"10"``), as text otherwise. Readers
given ``classes`` (the classes a model was trained on) map labels onto them and refuse
a label outside them. With ``labels_required=False`` a file without the label column
reads as unlabelled data (``labels`` is None), for prediction.

Every mistake in a file is a one-line ``ValueError`` naming the file and, where there
is one, the line.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from rnnkit.data.text import read_whole_text
from rnnkit.data.vocab import Vocab, check_kind

KINDS = ("numeric", "tokens")
FLOAT32_MAX = float(np.finfo(np.float32).max)  # larger numbers become inf in the arrays
FORMATS = ("csv", "jsonl", "text-folder", "text-csv")
TEXT_SUFFIX = ".txt"


# ---------------------------------------------------------------------- containers


@dataclass
class LabeledSequences:
    """Padded sequences with lengths and class labels.

    Attributes:
        values: ``(N, T_max, F)`` float32 (kind ``"numeric"``) or ``(N, T_max)`` int64
            token ids (kind ``"tokens"``); zeros past each sequence's length.
        lengths: ``(N,)`` int64, each in ``1..T_max``.
        labels: ``(N,)`` int64 ids into ``classes``, or None for unlabelled data.
        classes: class names, in id order.
        kind: ``"numeric"`` or ``"tokens"``.
        source: where the data came from (for messages).
    """

    values: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray | None
    classes: list[str]
    kind: str = "numeric"
    source: str = "the data"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        want = 3 if self.kind == "numeric" else 2
        if self.values.ndim != want:
            raise ValueError(f"{self.kind} values must have {want} dims, got {self.values.shape}")
        n = len(self.values)
        if self.lengths.shape != (n,) or (self.labels is not None and self.labels.shape != (n,)):
            raise ValueError(f"values, lengths and labels disagree on the count ({n} sequences)")

    def __len__(self) -> int:
        return len(self.values)

    @property
    def num_features(self) -> int:
        """Features per step (1 for token ids)."""
        return int(self.values.shape[2]) if self.kind == "numeric" else 1

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, index: np.ndarray) -> LabeledSequences:
        """The sequences at ``index``, padded to their own longest length."""
        index = np.asarray(index, dtype=np.int64)
        lengths = self.lengths[index]
        t_max = int(lengths.max()) if len(index) else 0
        return replace(
            self,
            values=self.values[index][:, :t_max],
            lengths=lengths,
            labels=None if self.labels is None else self.labels[index],
        )

    def split(
        self, val_fraction: float, test_fraction: float = 0.0, seed: int = 0
    ) -> tuple[LabeledSequences, LabeledSequences, LabeledSequences]:
        """Stratified ``(train, val, test)`` parts; see :func:`stratified_split`."""
        parts = stratified_split(
            _need_labels(self.labels, self.source), val_fraction, test_fraction, seed
        )
        return tuple(self.subset(p) for p in parts)  # type: ignore[return-value]

    def tensors(self) -> dict[str, torch.Tensor]:
        """``{"x", "lengths"[, "y"]}`` as tensors (float32 / int64), for ``Batches``."""
        out = {
            "x": torch.from_numpy(np.ascontiguousarray(self.values)),
            "lengths": torch.from_numpy(self.lengths.astype(np.int64)),
        }
        if self.labels is not None:
            out["y"] = torch.from_numpy(self.labels.astype(np.int64))
        return out


@dataclass
class LabeledTexts:
    """Texts with class labels, before tokenising (split first, then build the vocabulary)."""

    texts: list[str]
    labels: np.ndarray | None
    classes: list[str]
    source: str = "the texts"
    names: list[str] | None = None  # where each text came from, for messages

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, index: np.ndarray) -> LabeledTexts:
        index = np.asarray(index, dtype=np.int64).tolist()
        return replace(
            self,
            texts=[self.texts[i] for i in index],
            labels=None if self.labels is None else self.labels[index],
            names=None if self.names is None else [self.names[i] for i in index],
        )

    def split(
        self, val_fraction: float, test_fraction: float = 0.0, seed: int = 0
    ) -> tuple[LabeledTexts, LabeledTexts, LabeledTexts]:
        """Stratified ``(train, val, test)`` parts; see :func:`stratified_split`."""
        parts = stratified_split(
            _need_labels(self.labels, self.source), val_fraction, test_fraction, seed
        )
        return tuple(self.subset(p) for p in parts)  # type: ignore[return-value]

    def build_vocab(self, tokens: str = "char", max_size: int | None = None) -> Vocab:
        """The vocabulary of these texts (build it on the training part only)."""
        check_kind(tokens)
        # Characters count the same in one concatenation; words need a separator.
        joined = ("" if tokens == "char" else " ").join(self.texts)
        return Vocab.from_text(joined, tokens, max_size=max_size)

    def encode(self, vocab: Vocab, max_length: int | None = None) -> LabeledSequences:
        """Token ids of every text (the first ``max_length`` tokens), padded with 0."""
        if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
            raise ValueError(f"max_length must be a positive integer, got {max_length!r}")
        ids = []
        for i, text in enumerate(self.texts):
            encoded = vocab.encode(text)[:max_length]
            if len(encoded) == 0:
                where = self.names[i] if self.names else f"text {i}"
                raise ValueError(f"{where} has no {vocab.kind} tokens; drop it or add some text")
            ids.append(encoded.astype(np.int64))
        values, lengths = _pad(ids, np.int64)
        return LabeledSequences(values, lengths, self.labels, self.classes, "tokens", self.source)


# ------------------------------------------------------------------------ splitting


def stratified_split(
    labels: np.ndarray, val_fraction: float, test_fraction: float = 0.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index arrays ``(train, val, test)`` holding each class in the same proportions.

    The test part gets ``round(test_fraction * N)`` sequences and the validation part
    ``round(val_fraction * N)``; each class gives ``floor(fraction * n_class)`` and the
    rest go, one each, to the classes with the largest remainders. Every order is drawn
    from ``seed``, so the same labels and seed give the same parts; indices come back
    sorted.
    """
    labels = np.asarray(labels)
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction must leave data to train on, got "
            f"{val_fraction} + {test_fraction}"
        )
    classes, inverse = np.unique(labels, return_inverse=True)
    rng = np.random.default_rng(seed)
    members = [rng.permutation(np.flatnonzero(inverse == c)) for c in range(len(classes))]
    left = np.array([len(m) for m in members])  # per class, not yet given to a part
    taken = np.zeros(len(classes), dtype=np.int64)
    parts: dict[str, list[np.ndarray]] = {}
    for part, fraction in (("test", test_fraction), ("val", val_fraction)):
        exact = fraction * np.array([len(m) for m in members], dtype=np.float64)
        count = np.minimum(np.floor(exact).astype(np.int64), left)
        extra = round(fraction * len(labels)) - int(count.sum())
        # Largest remainder first; ties go to the lower class id (a stable sort).
        for c in np.argsort(-(exact - count), kind="stable"):
            if extra <= 0:
                break
            if count[c] < left[c]:
                count[c] += 1
                extra -= 1
        parts[part] = [m[taken[c] : taken[c] + count[c]] for c, m in enumerate(members)]
        taken += count
        left -= count
    parts["train"] = [m[taken[c] :] for c, m in enumerate(members)]
    out = tuple(
        np.sort(np.concatenate(parts[p])).astype(np.int64) if members else np.zeros(0, np.int64)
        for p in ("train", "val", "test")
    )
    if len(out[0]) == 0:
        raise ValueError(f"{len(labels)} sequences leave none to train on; give more data")
    if val_fraction > 0 and len(out[1]) == 0:
        raise ValueError(
            f"{len(labels)} sequences are too few for a validation part of {val_fraction}; "
            f"give more data or a larger fraction"
        )
    return out  # type: ignore[return-value]


# --------------------------------------------------------------------------- labels


def label_ids(
    labels: Sequence[object], classes: Sequence[str] | None, source: str, where=None
) -> tuple[np.ndarray, list[str]]:
    """Label ids and class names for raw labels (strings or integers).

    Without ``classes`` the classes are the distinct labels, sorted (numerically when
    all are integers). With ``classes``, a label outside them is a ValueError;
    ``where(i)`` names the place of label ``i`` in that message.
    """
    names = [_label_text(v, source) for v in labels]
    if classes is None:
        distinct = set(names)
        if all(_is_int(n) for n in distinct):  # integer labels: "02" is 2, and 2 < 10
            names = [str(int(n)) for n in names]
            classes = sorted(set(names), key=int)
        else:
            classes = sorted(distinct)
    classes = [str(c) for c in classes]
    index = {c: i for i, c in enumerate(classes)}
    # "03" and "3" read as the same integer label.
    numeric = {int(c): i for i, c in enumerate(classes) if _is_int(c)}
    ids = np.empty(len(names), dtype=np.int64)
    for i, name in enumerate(names):
        found = index.get(name)
        if found is None and _is_int(name):
            found = numeric.get(int(name))
        if found is None:
            at = where(i) if where else f"{source}, sequence {i}"
            shown = ", ".join(map(_shown, classes[:10])) + (", ..." if len(classes) > 10 else "")
            raise ValueError(f"{at}: label {name!r} is not one of the model's classes ({shown})")
        ids[i] = found
    return ids, classes


def _label_text(value: object, source: str) -> str:
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{source}: labels must be strings or integers, got {value!r}")
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, str):
        text = value.strip()
        if text:
            return text
        raise ValueError(f"{source}: a label is empty")
    raise ValueError(f"{source}: labels must be strings or integers, got {value!r}")


def _shown(name: str) -> str:
    """A header or class name for a one-line message (quoted if it holds a line break)."""
    return name if name.isprintable() else repr(name)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _need_labels(labels: np.ndarray | None, source: str) -> np.ndarray:
    if labels is None:
        raise ValueError(f"{source} has no labels; a split needs labelled data")
    return labels


# ---------------------------------------------------------------------------- files


def _csv_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and non-blank data rows (with their line numbers) of a CSV file."""
    text = read_whole_text(path, "CSV file")
    if not text.strip():
        raise ValueError(f"{path} is empty; it needs a header row and data rows")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = [h.strip() for h in next(reader)]
        rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as e:
        raise ValueError(f"{path} line {reader.line_num}: not valid CSV ({e})") from None
    if not rows:
        raise ValueError(f"{path} has a header but no data rows")
    return header, rows


def _column(header: list[str], name: str, path: Path, what: str) -> int:
    if name not in header:
        shown = ", ".join(map(_shown, header[:12])) + (", ..." if len(header) > 12 else "")
        raise ValueError(f"{path} line 1: no {what} column {name!r}; its columns are: {shown}")
    return header.index(name)


def read_csv_sequences(
    path: str | os.PathLike[str],
    label_column: str = "label",
    columns: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    labels_required: bool = True,
) -> LabeledSequences:
    """Numeric sequences from a wide CSV: one per row, one column per time step.

    ``columns`` names the step columns in order (default: every column but the label
    column, in file order). Trailing empty cells end a sequence early.
    """
    path = Path(path)
    header, rows = _csv_rows(path)
    if label_column in header:
        label_at: int | None = header.index(label_column)
    elif labels_required:
        label_at = _column(header, label_column, path, "label")
    else:
        label_at = None
    if columns is None:
        steps = [i for i in range(len(header)) if i != label_at]
    else:
        steps = [_column(header, c, path, "step") for c in columns]
        if label_at in steps:
            raise ValueError(f"{path}: the label column {label_column!r} cannot be a step")
    if not steps:
        raise ValueError(f"{path} line 1: no step columns besides {label_column!r}")
    sequences, raw_labels, lines = [], [], []
    for line, row in rows:
        if len(row) != len(header):
            raise ValueError(
                f"{path} line {line}: {len(row)} fields, but the header has {len(header)}; "
                f"give every row the same number of fields"
            )
        if label_at is not None:
            label = row[label_at].strip()
            if not label:
                raise ValueError(f"{path} line {line}: the label ({label_column!r}) is empty")
            raw_labels.append(label)
        cells = [row[i].strip() for i in steps]
        while cells and not cells[-1]:
            cells.pop()  # trailing empty cells: a shorter sequence
        if not cells:
            raise ValueError(f"{path} line {line}: the sequence has no values")
        values = [
            _number(cell, path, line, header[i])
            for cell, i in zip(cells, steps[: len(cells)], strict=True)
        ]
        sequences.append(np.asarray(values, dtype=np.float32)[:, None])  # (T_i, 1)
        lines.append(line)
    labels = None
    if label_at is not None:
        labels, classes = label_ids(
            raw_labels, classes, str(path), where=lambda i: f"{path} line {lines[i]}"
        )
    values, lengths = _pad(sequences, np.float32)
    return LabeledSequences(values, lengths, labels, list(classes or []), "numeric", str(path))


def _number(cell: str, path: Path, line: int, column: str) -> float:
    if not cell:
        raise ValueError(
            f"{path} line {line}, column {column!r}: an empty cell before the row's last "
            f"value; only trailing cells may be empty"
        )
    try:
        value = float(cell)
    except ValueError:
        raise ValueError(
            f"{path} line {line}, column {column!r}: {cell!r} is not a number"
        ) from None
    if not math.isfinite(value):
        raise ValueError(f"{path} line {line}, column {column!r}: {cell!r} is not a finite number")
    if abs(value) > FLOAT32_MAX:
        raise ValueError(
            f"{path} line {line}, column {column!r}: {cell!r:.40} is too large (float32 holds "
            f"up to {FLOAT32_MAX:.4g}); rescale the data"
        )
    return value


def read_jsonl_sequences(
    path: str | os.PathLike[str],
    sequence_key: str = "sequence",
    label_key: str = "label",
    classes: Sequence[str] | None = None,
    labels_required: bool = True,
) -> LabeledSequences:
    """Numeric sequences from JSON lines ``{"sequence": [...], "label": ...}``.

    A sequence is a list of numbers (one feature per step) or a list of equally long
    lists of numbers (several features per step); every sequence has the same number
    of features. Blank lines are skipped.
    """
    path = Path(path)
    text = read_whole_text(path, "JSONL file")
    sequences, raw_labels, lines = [], [], []
    features: int | None = None
    has_labels: bool | None = None
    # Line breaks are \n, \r\n or \r (never inside JSON): str.splitlines would also split at
    # U+2028 and U+0085, which a JSON string may hold as they are.
    lines_of_text = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for line, content in enumerate(lines_of_text, start=1):
        if not content.strip():
            continue
        try:
            record = json.loads(content)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} line {line}: not valid JSON ({e.msg})") from None
        except (ValueError, RecursionError) as e:  # an integer of > 4300 digits, deep nesting
            reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)
            raise ValueError(f"{path} line {line}: not valid JSON ({reason})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path} line {line}: expected a JSON object, got {_kind(record)}")
        if sequence_key not in record:
            raise ValueError(f"{path} line {line}: the object has no {sequence_key!r} key")
        labelled = label_key in record
        if labels_required and not labelled:
            raise ValueError(f"{path} line {line}: the object has no {label_key!r} key")
        if has_labels is not None and labelled != has_labels:
            raise ValueError(
                f"{path} line {line}: some objects have a {label_key!r} and some do not"
            )
        has_labels = labelled
        steps = _json_steps(record[sequence_key], path, line, sequence_key)  # (T_i, F)
        if features is not None and steps.shape[1] != features:
            raise ValueError(
                f"{path} line {line}: {steps.shape[1]} features per step, but earlier lines "
                f"have {features}"
            )
        features = steps.shape[1]
        sequences.append(steps)
        if labelled:
            raw_labels.append(record[label_key])
        lines.append(line)
    if not sequences:
        raise ValueError(f"{path} is empty; give one JSON object per line")
    labels = None
    if has_labels:
        labels, classes = label_ids(
            raw_labels, classes, str(path), where=lambda i: f"{path} line {lines[i]}"
        )
    values, lengths = _pad(sequences, np.float32)
    return LabeledSequences(values, lengths, labels, list(classes or []), "numeric", str(path))


def _json_steps(value: object, path: Path, line: int, key: str) -> np.ndarray:
    """A JSON sequence as a ``(T, F)`` float32 array, or a one-line ValueError."""
    at = f"{path} line {line}, {key!r}"
    if not isinstance(value, list) or not value:
        raise ValueError(f"{at}: expected a non-empty list of numbers or of lists of numbers")
    nested = isinstance(value[0], list)
    rows = value if nested else [[v] for v in value]
    width = len(rows[0])
    for t, row in enumerate(rows):
        if not isinstance(row, list):
            raise ValueError(f"{at}: step {t} is {_kind(row)}; mix no numbers and lists")
        if len(row) != width or not row:
            raise ValueError(f"{at}: step {t} has {len(row)} features, step 0 has {width}")
        for v in row:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"{at}: step {t} holds {_kind(v)}, not a number")
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"{at}: step {t} holds {v}, not a finite number")
            if abs(v) > FLOAT32_MAX:  # an int this large would overflow math.isfinite
                raise ValueError(
                    f"{at}: step {t} holds {v!r:.40}, too large (float32 holds up to "
                    f"{FLOAT32_MAX:.4g}); rescale the data"
                )
    return np.asarray(rows, dtype=np.float32)


def _kind(value: object) -> str:
    if isinstance(value, str):
        return f"the string {value!r:.40}"
    return {dict: "an object", list: "a list", type(None): "null", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def read_text_folder(
    path: str | os.PathLike[str], classes: Sequence[str] | None = None
) -> LabeledTexts:
    """Texts from ``path/<label>/*.txt`` (UTF-8): each subfolder's name is its files' label.

    Hidden entries are skipped; files are read in sorted order.
    """
    root = Path(path)
    if not root.exists():
        raise ValueError(f"no such folder: {root}")
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder; give a folder with one subfolder per label")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ValueError(f"{root} has no subfolders; put each label's .txt files in a subfolder")
    texts, raw_labels, names = [], [], []
    for folder in folders:
        files = sorted(
            p
            for p in folder.iterdir()
            if p.is_file() and p.suffix.lower() == TEXT_SUFFIX and not p.name.startswith(".")
        )
        if not files:
            raise ValueError(f"{folder} holds no {TEXT_SUFFIX} files; add some or remove it")
        for file in files:
            text = read_whole_text(file, "text file")
            if not text.strip():
                raise ValueError(f"{file} is empty; give it some text or remove it")
            texts.append(text)
            raw_labels.append(folder.name)
            names.append(str(file))
    labels, classes = label_ids(
        raw_labels, classes, str(root), where=lambda i: f"{root}: folder of {names[i]}"
    )
    return LabeledTexts(texts, labels, classes, str(root), names)


def read_text_csv(
    path: str | os.PathLike[str],
    text_column: str = "text",
    label_column: str = "label",
    classes: Sequence[str] | None = None,
    labels_required: bool = True,
) -> LabeledTexts:
    """Texts and labels from two columns of a CSV file with a header row."""
    path = Path(path)
    header, rows = _csv_rows(path)
    text_at = _column(header, text_column, path, "text")
    label_at: int | None = None
    if label_column in header or labels_required:
        label_at = _column(header, label_column, path, "label")
    texts, raw_labels, names = [], [], []
    for line, row in rows:
        if len(row) != len(header):
            raise ValueError(
                f"{path} line {line}: {len(row)} fields, but the header has {len(header)}; "
                f"quote texts that hold commas"
            )
        if not row[text_at].strip():
            raise ValueError(f"{path} line {line}: the text ({text_column!r}) is empty")
        texts.append(row[text_at])
        names.append(f"{path} line {line}")
        if label_at is not None:
            if not row[label_at].strip():
                raise ValueError(f"{path} line {line}: the label ({label_column!r}) is empty")
            raw_labels.append(row[label_at])
    labels = None
    if label_at is not None:
        labels, classes = label_ids(raw_labels, classes, str(path), where=lambda i: names[i])
    return LabeledTexts(texts, labels, list(classes or []), str(path), names)


# --------------------------------------------------------------------------- arrays


def from_arrays(
    x,
    labels=None,
    lengths=None,
    classes: Sequence[str] | None = None,
    source: str = "the arrays",
) -> LabeledSequences:
    """Numeric sequences from NumPy: ``(N, T)``, ``(N, T, F)`` or a list of ``(T_i[, F])``.

    ``lengths`` marks the real steps of a padded ``(N, T[, F])`` array (default: all
    ``T``); ``labels`` are N strings or integers, or None for unlabelled data.
    """
    if isinstance(x, (list, tuple)):
        if lengths is not None:
            raise ValueError("give lengths only with a padded array; a list carries its own")
        if not x:
            raise ValueError(f"{source}: the list of sequences is empty")
        sequences = []
        for i, seq in enumerate(x):
            a = np.asarray(seq, dtype=np.float64)
            if a.ndim == 1:
                a = a[:, None]  # (T_i, 1)
            if a.ndim != 2 or len(a) == 0:
                raise ValueError(
                    f"{source}: sequence {i} has shape {a.shape}; expected (T,) or (T, F), T >= 1"
                )
            if sequences and a.shape[1] != sequences[0].shape[1]:
                raise ValueError(
                    f"{source}: sequence {i} has {a.shape[1]} features, sequence 0 has "
                    f"{sequences[0].shape[1]}"
                )
            sequences.append(a)
        values, lens = _pad(sequences, np.float32)
        check = np.concatenate(sequences)
    else:
        a = np.asarray(x)
        if a.ndim == 2:
            a = a[:, :, None]  # (N, T, 1)
        if a.ndim != 3 or a.shape[0] == 0 or a.shape[1] == 0 or a.shape[2] == 0:
            raise ValueError(f"{source}: expected an array (N, T) or (N, T, F), got {a.shape}")
        if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
            raise ValueError(f"{source}: expected real numbers, got dtype {a.dtype}")
        n, t = a.shape[:2]
        if lengths is None:
            lens = np.full(n, t, dtype=np.int64)
        else:
            lens = np.asarray(lengths)
            if lens.shape != (n,) or not np.issubdtype(lens.dtype, np.integer):
                raise ValueError(f"{source}: lengths must be {n} integers, got {lens.shape}")
            if lens.min() < 1 or lens.max() > t:
                raise ValueError(f"{source}: every length must be in 1..{t}")
            lens = lens.astype(np.int64)
        valid = np.arange(t)[None, :] < lens[:, None]  # (N, T)
        values = np.where(valid[:, :, None], a, 0).astype(np.float32)
        check = a[valid]
    if not np.isfinite(check).all():
        raise ValueError(f"{source}: the sequences hold NaN or infinite values")
    ids = None
    if labels is not None:
        raw = list(np.asarray(labels).tolist()) if not isinstance(labels, list) else labels
        if len(raw) != len(values):
            raise ValueError(f"{source}: {len(raw)} labels for {len(values)} sequences")
        ids, classes = label_ids(raw, classes, source)
    return LabeledSequences(values, lens, ids, list(classes or []), "numeric", source)


def _pad(sequences: list[np.ndarray], dtype) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad ``(T_i, ...)`` arrays with zeros into ``(N, T_max, ...)``; lengths ``(N,)``."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    out = np.zeros((len(sequences), int(lengths.max()), *sequences[0].shape[1:]), dtype=dtype)
    for i, s in enumerate(sequences):
        out[i, : len(s)] = s
    return out, lengths


# --------------------------------------------------------------------------- format


def guess_format(path: str | os.PathLike[str]) -> str:
    """The format of ``path`` from its suffix (a folder is ``text-folder``)."""
    path = Path(path)
    if path.is_dir():
        return "text-folder"
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise ValueError(
        f"cannot tell the format of {path} from its suffix {suffix or '(none)'!r}; "
        f"give a format: one of {', '.join(FORMATS)}"
    )


def check_format(name: object) -> str:
    if name not in FORMATS:
        raise ValueError(f"unknown data format {name!r}; choose one of {', '.join(FORMATS)}")
    return name  # type: ignore[return-value]


def read_labeled(
    path: str | os.PathLike[str],
    format: str | None = None,
    *,
    label_column: str = "label",
    text_column: str = "text",
    sequence_key: str = "sequence",
    classes: Sequence[str] | None = None,
    labels_required: bool = True,
) -> LabeledSequences | LabeledTexts:
    """Read ``path`` in ``format`` (guessed from the suffix when None).

    Numeric formats give :class:`LabeledSequences`, text formats :class:`LabeledTexts`.
    For JSONL, ``label_column`` is the label key.
    """
    format = guess_format(path) if format is None else check_format(format)
    if format == "csv":
        return read_csv_sequences(
            path, label_column, classes=classes, labels_required=labels_required
        )
    if format == "jsonl":
        return read_jsonl_sequences(
            path, sequence_key, label_column, classes=classes, labels_required=labels_required
        )
    if format == "text-folder":
        return read_text_folder(path, classes=classes)
    return read_text_csv(
        path, text_column, label_column, classes=classes, labels_required=labels_required
    )


__all__ = [
    "FORMATS",
    "KINDS",
    "LabeledSequences",
    "LabeledTexts",
    "check_format",
    "from_arrays",
    "guess_format",
    "label_ids",
    "read_csv_sequences",
    "read_jsonl_sequences",
    "read_labeled",
    "read_text_csv",
    "read_text_folder",
    "stratified_split",
]

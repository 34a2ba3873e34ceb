"""Readers of labelled sequences (CSV, JSONL, texts, arrays), the stratified split, digits."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from _errors import one_line_error
from rnnkit.data.digits import digits_splits, load_digits_sequences
from rnnkit.data.labeled import (
    LabeledSequences,
    LabeledTexts,
    check_format,
    from_arrays,
    guess_format,
    label_ids,
    read_csv_sequences,
    read_jsonl_sequences,
    read_labeled,
    read_text_csv,
    read_text_folder,
    stratified_split,
)
from rnnkit.data.vocab import UNK_ID


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------- wide CSV


def test_csv_reads_rows_as_padded_sequences(tmp_path):
    path = write(
        tmp_path / "seq.csv",
        "t1,t2,label,t3\n1,2,b,3\n-0.5,4e1,a,\n\n7,8,b,9.25\n",  # a blank line is skipped
    )
    data = read_csv_sequences(path)
    assert data.kind == "numeric" and data.classes == ["a", "b"]
    assert data.labels.tolist() == [1, 0, 1]
    assert data.lengths.tolist() == [3, 2, 3]  # the trailing empty cell ends row 2 early
    assert data.values.dtype == np.float32 and data.values.shape == (3, 3, 1)
    np.testing.assert_array_equal(data.values[:, :, 0], [[1, 2, 3], [-0.5, 40, 0], [7, 8, 9.25]])


def test_csv_named_columns_and_integer_classes_sort_numerically(tmp_path):
    path = write(tmp_path / "s.csv", "y,a,b,c\n10,1,2,3\n2,4,5,6\n1,7,8,9\n02,0,0,1\n")
    data = read_csv_sequences(path, label_column="y", columns=["c", "a"])
    assert data.classes == ["1", "2", "10"]  # numeric order, not "1" < "10" < "2"
    assert data.labels.tolist() == [2, 1, 0, 1]  # "02" is the label 2
    np.testing.assert_array_equal(data.values[:, :, 0], [[3, 1], [6, 4], [9, 7], [1, 0]])


def test_csv_with_the_training_classes_and_without_labels(tmp_path):
    path = write(tmp_path / "s.csv", "label,x1,x2\nb,1,2\n")
    data = read_csv_sequences(path, classes=["a", "b", "c"])
    assert data.labels.tolist() == [1] and data.classes == ["a", "b", "c"]
    one_line_error(
        lambda: read_csv_sequences(path, classes=["a", "c"]),
        f"{path} line 2",
        "'b' is not one of the model's classes",
    )
    bare = write(tmp_path / "bare.csv", "x1,x2\n1,2\n3,4\n")
    data = read_csv_sequences(bare, classes=["a", "b"], labels_required=False)
    assert data.labels is None and data.values[:, :, 0].tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        ("label,x1,x2\na,1,2\nb,3\n", ["line 3", "2 fields, but the header has 3"]),
        ("label,x1,x2\na,1,2\nb,3,4,5\n", ["line 3", "4 fields"]),
        ("label,x1,x2\na,1,2\nb,3,oops\n", ["line 3", "column 'x2'", "'oops' is not a number"]),
        ("label,x1,x2\na,nan,2\n", ["line 2", "column 'x1'", "'nan' is not a finite number"]),
        ("label,x1,x2\na,1,inf\n", ["line 2", "not a finite number"]),
        ("x1,x2\n1,2\n", ["line 1", "no label column 'label'", "x1, x2"]),
        ("", ["is empty"]),
        ("label,x1,x2\n", ["no data rows"]),
        ("label,x1,x2\na,,2\n", ["line 2", "empty cell before"]),
        ("label,x1,x2\n,1,2\n", ["line 2", "label ('label') is empty"]),
        ("label,x1,x2\na,,\n", ["line 2", "has no values"]),
        ('label,x1\n"a,1\n', ["line", "not valid CSV"]),
    ],
)
def test_csv_bad_input_is_one_line_naming_file_and_line(tmp_path, content, needles):
    path = write(tmp_path / "bad.csv", content)
    one_line_error(lambda: read_csv_sequences(path), str(path), *needles)


def test_csv_not_utf8_and_missing_file(tmp_path):
    path = write(tmp_path / "latin.csv", b"label,x1\na,1\nb\xe9,2\n")
    one_line_error(lambda: read_csv_sequences(path), str(path), "line 3", "not UTF-8")
    one_line_error(lambda: read_csv_sequences(tmp_path / "nope.csv"), "no such CSV file")
    one_line_error(lambda: read_csv_sequences(tmp_path), "is a directory")


# ------------------------------------------------------------------------- JSONL


def test_jsonl_reads_univariate_multivariate_and_variable_lengths(tmp_path):
    path = write(
        tmp_path / "s.jsonl",
        '{"sequence": [[1, 2], [3, 4], [5, 6]], "label": 3}\n'
        "\n"
        '{"sequence": [[0.5, -1]], "label": 1}\n',
    )
    data = read_jsonl_sequences(path)
    assert data.classes == ["1", "3"] and data.labels.tolist() == [1, 0]
    assert data.lengths.tolist() == [3, 1] and data.values.shape == (2, 3, 2)
    np.testing.assert_array_equal(data.values[1], [[0.5, -1], [0, 0], [0, 0]])
    np.testing.assert_array_equal(data.values[0], [[1, 2], [3, 4], [5, 6]])
    flat = write(tmp_path / "f.jsonl", '{"x": [1, 2], "y": "up"}\n{"x": [3], "y": "down"}\n')
    data = read_jsonl_sequences(flat, sequence_key="x", label_key="y")
    assert data.values.shape == (2, 2, 1) and data.values[:, :, 0].tolist() == [[1, 2], [3, 0]]
    assert data.classes == ["down", "up"] and data.labels.tolist() == [1, 0]


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        ('{"sequence": [1], "label": 0}\n{"sequence": [1, 2, "label": 1}\n', ["line 2", "JSON"]),
        ('{"sequence": [1], "label": 0}\n[1, 2]\n', ["line 2", "expected a JSON object"]),
        ('{"label": 0}\n', ["line 1", "no 'sequence' key"]),
        ('{"sequence": [1, 2]}\n', ["line 1", "no 'label' key"]),
        ('{"sequence": [1, NaN], "label": 0}\n', ["line 1", "step 1 holds nan"]),
        ('{"sequence": [1, "x"], "label": 0}\n', ["line 1", "step 1 holds the string 'x'"]),
        ('{"sequence": [], "label": 0}\n', ["line 1", "non-empty list"]),
        ('{"sequence": [[1, 2], [3]], "label": 0}\n', ["line 1", "step 1 has 1 features"]),
        (
            '{"sequence": [[1, 2]], "label": 0}\n{"sequence": [1], "label": 1}\n',
            ["line 2", "1 features per step, but earlier lines have 2"],
        ),
        ('{"sequence": [1], "label": 0.5}\n', ["labels must be strings or integers"]),
        ("\n\n", ["is empty"]),
    ],
)
def test_jsonl_bad_input_is_one_line(tmp_path, content, needles):
    path = write(tmp_path / "bad.jsonl", content)
    one_line_error(lambda: read_jsonl_sequences(path), str(path), *needles)


def test_jsonl_not_utf8(tmp_path):
    path = write(tmp_path / "bad.jsonl", b'{"sequence": [1], "label": "a"}\n{"label": "\xff"}\n')
    one_line_error(lambda: read_jsonl_sequences(path), str(path), "line 2", "not UTF-8")


# ------------------------------------------------------------------------- texts


@pytest.fixture
def text_folder(tmp_path) -> Path:
    root = tmp_path / "reviews"
    for label, texts in {"pos": ["good", "great", "fine", "nice"], "neg": ["bad", "awful"]}.items():
        (root / label).mkdir(parents=True)
        for i, text in enumerate(texts):
            write(root / label / f"{i}.txt", text)
    write(root / "pos" / "notes.md", "not a .txt: skipped")
    (root / ".hidden").mkdir()
    return root


def test_text_folder_labels_split_and_vocabulary_from_training_only(text_folder):
    texts = read_text_folder(text_folder)
    assert texts.classes == ["neg", "pos"]
    assert texts.texts == ["bad", "awful", "good", "great", "fine", "nice"]
    assert texts.labels.tolist() == [0, 0, 1, 1, 1, 1]
    train, val, _ = texts.split(0.34, seed=0)  # 2 of 6: one per class
    assert sorted(val.labels.tolist()) == [0, 1] and len(train) == 4
    vocab = train.build_vocab("char")
    assert set(vocab.tokens[1:]) == set("".join(train.texts))  # nothing from validation
    encoded = val.encode(vocab)
    assert encoded.kind == "tokens" and encoded.values.dtype == np.int64
    for i, text in enumerate(val.texts):
        ids = encoded.values[i, : encoded.lengths[i]]
        expected = [vocab.tokens.index(c) if c in vocab.tokens else UNK_ID for c in text]
        assert ids.tolist() == expected
        assert (encoded.values[i, encoded.lengths[i] :] == 0).all()
    assert encoded.lengths.tolist() == [len(t) for t in val.texts]


def test_text_csv_word_tokens_and_max_length(tmp_path):
    path = write(
        tmp_path / "t.csv",
        'text,label\n"the cat, sat",animal\nthe sum,math\n"cat cat cat the",animal\n',
    )
    texts = read_text_csv(path)
    assert texts.classes == ["animal", "math"] and texts.labels.tolist() == [0, 1, 0]
    vocab = texts.build_vocab("word")
    # Counts: cat 4, the 3, then ties by codepoint: "," "sat" "sum".
    assert vocab.tokens == ["<unk>", "cat", "the", ",", "sat", "sum"]
    encoded = texts.encode(vocab, max_length=3)
    assert encoded.lengths.tolist() == [3, 2, 3]
    assert encoded.values.tolist() == [[2, 1, 3], [2, 5, 0], [1, 1, 1]]


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        ("text\nhello\n", ["line 1", "no label column 'label'"]),
        ("label,body\na,hello\n", ["line 1", "no text column 'text'"]),
        ("text,label\n,a\n", ["line 2", "the text ('text') is empty"]),
        ("text,label\nhi,a,b\n", ["line 2", "3 fields"]),
    ],
)
def test_text_csv_bad_input(tmp_path, content, needles):
    path = write(tmp_path / "t.csv", content)
    one_line_error(lambda: read_text_csv(path), str(path), *needles)


def test_text_folder_bad_input(tmp_path, text_folder):
    write(text_folder / "neg" / "2.txt", b"caf\xc3\n\xff")
    one_line_error(
        lambda: read_text_folder(text_folder), str(text_folder / "neg" / "2.txt"), "not UTF-8"
    )
    write(text_folder / "neg" / "2.txt", "  \n")
    one_line_error(lambda: read_text_folder(text_folder), "2.txt is empty")
    (text_folder / "neg" / "2.txt").unlink()
    (text_folder / "other").mkdir()
    one_line_error(lambda: read_text_folder(text_folder), "other holds no .txt files")
    flat = tmp_path / "flat"
    flat.mkdir()
    write(flat / "a.txt", "text")
    one_line_error(lambda: read_text_folder(flat), "has no subfolders")
    one_line_error(lambda: read_text_folder(tmp_path / "none"), "no such folder")
    one_line_error(lambda: read_text_folder(flat / "a.txt"), "is not a folder")


def test_encoding_a_text_without_tokens_is_refused(tmp_path):
    path = write(tmp_path / "t.csv", "text,label\nhello,a\n...,b\n")
    texts = read_text_csv(path)
    vocab = texts.subset(np.array([0])).build_vocab("word")
    assert vocab.tokens == ["<unk>", "hello"]
    encoded = texts.encode(vocab)  # "..." is three punctuation tokens, unknown: id 0
    assert encoded.values.tolist() == [[1, 0, 0], [0, 0, 0]]
    assert encoded.lengths.tolist() == [1, 3]
    blank = LabeledTexts([" \t "], np.array([0]), ["a"], names=["blank.txt"])
    one_line_error(lambda: blank.encode(vocab), "blank.txt has no word tokens")


# ------------------------------------------------------------------- formats


def test_format_guess_and_unknown_format(tmp_path, text_folder):
    assert guess_format(tmp_path / "a.CSV") == "csv"
    assert guess_format(tmp_path / "a.jsonl") == "jsonl"
    assert guess_format(text_folder) == "text-folder"
    one_line_error(lambda: guess_format(tmp_path / "a.xlsx"), "'.xlsx'", "csv, jsonl")
    one_line_error(lambda: check_format("parquet"), "unknown data format 'parquet'")
    texts = read_labeled(text_folder)
    assert texts.classes == ["neg", "pos"]
    path = write(tmp_path / "t.csv", "text,label\nab,x\n")
    assert read_labeled(path, "text-csv").texts == ["ab"]


# ------------------------------------------------------------------- arrays


def test_arrays_padded_multivariate_and_ragged():
    x = np.arange(12, dtype=np.float64).reshape(2, 3, 2)
    data = from_arrays(x, labels=["b", "a"], lengths=np.array([3, 1]))
    assert data.classes == ["a", "b"] and data.labels.tolist() == [1, 0]
    np.testing.assert_array_equal(data.values[1], [[6, 7], [0, 0], [0, 0]])  # padding zeroed
    flat = from_arrays(np.ones((3, 4)), labels=np.array([5, 0, 5]))
    assert flat.values.shape == (3, 4, 1) and flat.classes == ["0", "5"]
    ragged = from_arrays([np.array([1.0, 2.0, 3.0]), np.array([4.0])], labels=[0, 1])
    assert ragged.lengths.tolist() == [3, 1]
    assert ragged.values[:, :, 0].tolist() == [[1, 2, 3], [4, 0, 0]]
    unlabelled = from_arrays([[1.0], [2.0, 3.0]])
    assert unlabelled.labels is None and unlabelled.lengths.tolist() == [1, 2]


def test_arrays_bad_input():
    one_line_error(lambda: from_arrays(np.array([[1.0, np.nan]]), [0]), "NaN or infinite")
    one_line_error(lambda: from_arrays(np.ones((2, 3)), [0]), "1 labels for 2 sequences")
    one_line_error(lambda: from_arrays(np.ones(3), [0]), "expected an array (N, T) or (N, T, F)")
    one_line_error(
        lambda: from_arrays([np.ones((2, 2)), np.ones((2, 3))]), "sequence 1 has 3 features"
    )
    one_line_error(lambda: from_arrays(np.ones((2, 3)), [True, False]), "strings or integers")
    one_line_error(lambda: from_arrays(np.ones((1, 3)), lengths=np.array([4])), "in 1..3")


# ------------------------------------------------------------------- splitting


def test_stratified_split_proportions_determinism_and_cover():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    train, val, test = stratified_split(labels, 0.1, 0.2, seed=3)
    assert (len(train), len(val), len(test)) == (70, 10, 20)
    assert np.bincount(labels[val]).tolist() == [5, 3, 2]
    assert np.bincount(labels[test]).tolist() == [10, 6, 4]
    everything = np.concatenate([train, val, test])
    assert sorted(everything.tolist()) == list(range(100))  # disjoint and complete
    again = stratified_split(labels, 0.1, 0.2, seed=3)
    assert all((a == b).all() for a, b in zip((train, val, test), again, strict=True))
    other = stratified_split(labels, 0.1, 0.2, seed=4)
    assert not (other[1] == val).all()
    # Remainders: 7 per class × 0.1 = 0.7 each, 2 of 3 classes give one more (round(2.1) = 2).
    uneven = stratified_split(np.repeat([0, 1, 2], 7), 0.1, seed=0)[1]
    assert len(uneven) == 2


def test_split_refuses_bad_fractions_and_too_little_data():
    one_line_error(lambda: stratified_split(np.zeros(10), 0.6, 0.4), "leave data to train on")
    one_line_error(lambda: stratified_split(np.zeros(10), -0.1), "val_fraction must be in")
    one_line_error(
        lambda: stratified_split(np.array([0, 1]), 0.1), "are too few for a validation part"
    )
    data = LabeledSequences(np.zeros((2, 1, 1), np.float32), np.ones(2, np.int64), None, [])
    one_line_error(lambda: data.split(0.5), "has no labels")


def test_label_ids_unknown_label_names_place():
    ids, classes = label_ids(["x", "y", "x"], None, "src")
    assert ids.tolist() == [0, 1, 0] and classes == ["x", "y"]
    one_line_error(lambda: label_ids(["z"], ["x", "y"], "src"), "src, sequence 0", "'z'")


# ------------------------------------------------------------------- digits


def test_digits_layouts_scaling_and_fixed_split():
    rows = load_digits_sequences("rows")
    pixels = load_digits_sequences("pixels")
    assert rows.values.shape == (1797, 8, 8) and pixels.values.shape == (1797, 64, 1)
    assert rows.values.min() == 0.0 and rows.values.max() == 1.0
    np.testing.assert_array_equal(rows.values.reshape(1797, 64), pixels.values[:, :, 0])
    from sklearn.datasets import load_digits

    np.testing.assert_allclose(rows.values[5], load_digits().images[5] / 16.0, rtol=1e-7)
    train, val, test = digits_splits("rows")
    assert (len(train), len(val), len(test)) == (1258, 180, 359)
    assert np.bincount(test.labels).tolist() == [36, 36, 35, 37, 36, 36, 36, 36, 35, 36]
    _, _, test_pixels = digits_splits("pixels")  # the same images in both layouts
    np.testing.assert_array_equal(test.values.reshape(-1, 64), test_pixels.values[:, :, 0])
    assert test.classes == [str(d) for d in range(10)]
    one_line_error(lambda: load_digits_sequences("columns"), "unknown digits layout")


def test_digits_without_scikit_learn_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import now fails
    one_line_error(lambda: load_digits_sequences(), "pip install 'rnnkit[examples]'")


def test_tensors_for_batches():
    data = from_arrays([[1.0, 2.0], [3.0]], labels=["a", "b"])
    tensors = data.tensors()
    assert tensors["x"].dtype.is_floating_point and tensors["x"][:, :, 0].tolist() == [
        [1.0, 2.0],
        [3.0, 0.0],
    ]
    assert tensors["lengths"].tolist() == [2, 1] and tensors["y"].tolist() == [0, 1]
    assert json.dumps(data.classes) == '["a", "b"]'

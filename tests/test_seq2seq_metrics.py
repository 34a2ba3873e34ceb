"""Seq2seq scores against hand-computed values (and BLEU against sacrebleu itself)."""

from __future__ import annotations

import math
import random

import pytest
import sacrebleu

from _errors import one_line_error
from rnnkit.metrics.seq2seq import (
    bleu,
    char_error_rate,
    edit_distance,
    evaluate,
    exact_match,
    token_accuracy,
)


def slow_edit_distance(a, b) -> int:
    """The textbook full-table dynamic programme, as an independent reference."""
    table = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            table[i][j] = min(
                table[i - 1][j] + 1,
                table[i][j - 1] + 1,
                table[i - 1][j - 1] + (a[i - 1] != b[j - 1]),
            )
    return table[-1][-1]


def test_exact_match():
    assert exact_match(["abc", "x", "y"], ["abc", "x", "z"]) == pytest.approx(2 / 3)
    assert exact_match(["abc "], ["abc"]) == 0.0


def test_token_accuracy_worked_examples():
    # "abcx" vs "abd": a, b right; c != d; x is extra -> 2 of max(4, 3) = 4 positions.
    assert token_accuracy(["abcx"], ["abd"], "char") == 0.5
    # Corpus: (2 + 5) right of (4 + 5) positions.
    assert token_accuracy(["abcx", "hello"], ["abd", "hello"], "char") == pytest.approx(7 / 9)
    # Missing tokens: "ab" vs "abcd" -> 2 of 4.
    assert token_accuracy(["ab"], ["abcd"]) == 0.5
    # Words: [the, cat, sat] vs [the, dog, sat, down] -> the, sat right of 4.
    assert token_accuracy(["the cat sat"], ["the dog sat down"], "word") == 0.5
    # A shift makes every later position wrong (position-wise, not an alignment).
    assert token_accuracy(["xabc"], ["abc"]) == 0.0
    assert token_accuracy([""], ["ab"]) == 0.0
    assert token_accuracy(["", ""], ["", ""]) == 1.0
    one_line_error(lambda: token_accuracy(["a"], ["a"], "bytes"), "unknown vocabulary kind")


def test_edit_distance_by_hand_and_against_the_textbook_table():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("sitting", "kitten") == 3
    assert edit_distance("flaw", "lawn") == 2
    assert edit_distance("intention", "execution") == 5
    assert edit_distance("saturday", "sunday") == 3
    assert edit_distance("", "") == 0
    assert edit_distance("abc", "") == edit_distance("", "abc") == 3
    assert edit_distance(["the", "cat"], ["the", "black", "cat"]) == 1
    rng = random.Random(0)
    for _ in range(300):
        a = "".join(rng.choice("abc") for _ in range(rng.randint(0, 15)))
        b = "".join(rng.choice("abc") for _ in range(rng.randint(0, 15)))
        assert edit_distance(a, b) == slow_edit_distance(a, b), (a, b)


def test_char_error_rate():
    assert char_error_rate(["kitten"], ["sitting"]) == pytest.approx(3 / 7)
    # Summed over the corpus: (3 + 1) / (7 + 3).
    assert char_error_rate(["kitten", "abc"], ["sitting", "abd"]) == pytest.approx(0.4)
    assert char_error_rate([""], ["abc"]) == 1.0
    assert char_error_rate(["abcdefg"], ["ab"]) == 2.5  # can exceed 1
    assert char_error_rate(["2021-03-03"], ["2021-03-03"]) == 0.0
    one_line_error(lambda: char_error_rate(["a"], [""]), "no characters")


def test_bleu_matches_sacrebleu_and_hand_values():
    hyps = ["the cat sat on the mat", "a dog barked loudly at night", "hello there"]
    refs = ["the cat sat on a mat", "the dog barked loudly at night", "hello there friend"]
    expected = sacrebleu.corpus_bleu(hyps, [refs]).score
    assert bleu(hyps, refs) == pytest.approx(expected, abs=1e-12)
    assert 30 < expected < 80
    assert bleu(refs, refs) == pytest.approx(100.0)
    # All n-gram precisions 1, hypothesis 6 words, reference 7: BLEU = 100 * exp(1 - 7/6).
    short = bleu(["the cat sat on the mat"], ["the cat sat on the mat today"])
    assert short == pytest.approx(100 * math.exp(1 - 7 / 6), abs=1e-9)  # 84.65
    chars = sacrebleu.corpus_bleu(hyps, [refs], tokenize="char").score
    assert bleu(hyps, refs, tokenize="char") == pytest.approx(chars, abs=1e-12)


def test_evaluate_worked_example():
    hyps = ["1976-06-24", "2001-02-11", "1980-1-13"]
    refs = ["1976-06-24", "2001-02-12", "1980-10-13"]
    scores = evaluate(hyps, refs, "char")
    assert set(scores) == {"exact_match", "token_accuracy", "char_error_rate", "bleu"}
    assert scores["exact_match"] == pytest.approx(1 / 3)
    # chars right: 10 + 9 + 6 ("1980-1" then "-13" is shifted: "-" vs "0", "1" vs "-", ...)
    # of 10 + 10 + 10 positions.
    assert scores["token_accuracy"] == pytest.approx(25 / 30)
    # edits: 0 + 1 + 1 (insert the "0") over 30 reference characters.
    assert scores["char_error_rate"] == pytest.approx(2 / 30)
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)


def test_argument_errors():
    for score in (exact_match, char_error_rate, bleu, token_accuracy, evaluate):
        one_line_error(lambda score=score: score([], []), "no hypotheses to score")
        one_line_error(lambda score=score: score(["a"], ["a", "b"]), "differ in length: 1 and 2")
        one_line_error(lambda score=score: score("abc", "abc"), "hyps must be a list")
        one_line_error(lambda score=score: score(["a", 3], ["a", "b"]), "must hold strings")

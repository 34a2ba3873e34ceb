"""Sequence-to-sequence scores: exact match, token accuracy, character error rate, BLEU.

Every function takes ``hyps`` (the model's outputs) and ``refs`` (the references), two
equally long lists of strings, one pair per example. Fractions are in ``[0, 1]``
(the error rate may exceed 1); BLEU is on sacrebleu's 0–100 scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rnnkit.data.vocab import tokenize as to_tokens


def _check(hyps: Sequence[str], refs: Sequence[str]) -> tuple[list[str], list[str]]:
    for name, texts in (("hyps", hyps), ("refs", refs)):
        if isinstance(texts, str):
            raise ValueError(f"{name} must be a list of strings, got one string")
        bad = next((t for t in texts if not isinstance(t, str)), None)
        if bad is not None:
            raise ValueError(f"{name} must hold strings, got a {type(bad).__name__}")
    hyps, refs = list(hyps), list(refs)
    if len(hyps) != len(refs):
        raise ValueError(f"hyps and refs differ in length: {len(hyps)} and {len(refs)}")
    if not refs:
        raise ValueError("no hypotheses to score; give at least one (hyp, ref) pair")
    return hyps, refs


def exact_match(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """The fraction of examples whose output equals the reference exactly."""
    hyps, refs = _check(hyps, refs)
    return sum(h == r for h, r in zip(hyps, refs, strict=True)) / len(refs)


def token_accuracy(hyps: Sequence[str], refs: Sequence[str], kind: str = "char") -> float:
    """Position-wise token accuracy over the corpus.

    Both texts are split into ``kind`` tokens (``rnnkit.data.vocab.tokenize``). For
    an example with hypothesis tokens ``h`` and reference tokens ``r``, position ``j``
    is right when ``h[j] == r[j]``; positions past the end of either text count as
    wrong, so a missing or an extra token costs one position::

        token_accuracy = Σ #{j < min(|h|, |r|) : h[j] == r[j]} / Σ max(|h|, |r|)

    e.g. ``h = "abcx"``, ``r = "abd"``: 2 right of max(4, 3) = 4 positions, 0.5.
    When every text is empty there is nothing to get wrong and the accuracy is 1.
    """
    hyps, refs = _check(hyps, refs)
    right = total = 0
    for hyp, ref in zip(hyps, refs, strict=True):
        h, r = to_tokens(hyp, kind), to_tokens(ref, kind)
        right += sum(a == b for a, b in zip(h, r, strict=False))
        total += max(len(h), len(r))
    return right / total if total else 1.0


def edit_distance(a: Sequence[object], b: Sequence[object]) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions from a to b.

    ``a`` and ``b`` are strings or token lists. The dynamic programme keeps one row
    ``D[i, :]`` over ``b`` (``D[i, j]`` = distance of ``a[:i]`` and ``b[:j]``)::

        D[i, j] = min(D[i-1, j] + 1, D[i-1, j-1] + (a[i-1] != b[j-1]), D[i, j-1] + 1)

    vectorised over ``j``: the first two terms are element-wise, and the chain of
    insertions ``D[i, j-1] + 1`` is a running minimum of ``D[i, k] - k`` plus ``j``.
    """
    if len(a) < len(b):
        a, b = b, a  # rows over the longer text, vectorised over the shorter
    if not b:
        return len(a)
    codes: dict[object, int] = {}
    a_ids = np.array([codes.setdefault(t, len(codes)) for t in a], dtype=np.int64)
    b_ids = np.array([codes.setdefault(t, len(codes)) for t in b], dtype=np.int64)
    steps = np.arange(len(b) + 1, dtype=np.int64)  # (M+1,)
    row = steps.copy()  # D[0, j] = j
    for i, symbol in enumerate(a_ids, start=1):
        cost = (b_ids != symbol).astype(np.int64)  # (M,)
        new = np.empty_like(row)
        new[0] = i
        new[1:] = np.minimum(row[1:] + 1, row[:-1] + cost)
        row = np.minimum.accumulate(new - steps) + steps  # insertions along the row
    return int(row[-1])


def char_error_rate(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Character edit distance summed over examples, over the references' characters.

    ``CER = Σ edit_distance(hyp, ref) / Σ len(ref)`` (e.g. "kitten" for "sitting":
    3 / 7). It can exceed 1 when outputs are longer than the references.
    """
    hyps, refs = _check(hyps, refs)
    chars = sum(len(r) for r in refs)
    if chars == 0:
        raise ValueError("the references have no characters; a character error rate needs some")
    return sum(edit_distance(h, r) for h, r in zip(hyps, refs, strict=True)) / chars


def bleu(hyps: Sequence[str], refs: Sequence[str], *, tokenize: str = "13a") -> float:
    """Corpus BLEU (0–100) of ``hyps`` against one reference each, by sacrebleu.

    ``sacrebleu.corpus_bleu`` with its defaults (4-gram, ``"13a"`` tokenisation, no
    smoothing beyond sacrebleu's ``"exp"``); ``tokenize="char"`` scores characters.
    """
    hyps, refs = _check(hyps, refs)
    import sacrebleu  # imported here: only BLEU needs it

    return float(sacrebleu.corpus_bleu(hyps, [refs], tokenize=tokenize).score)


def evaluate(hyps: Sequence[str], refs: Sequence[str], kind: str = "char") -> dict[str, float]:
    """All four scores: ``exact_match``, ``token_accuracy`` (of ``kind`` tokens),
    ``char_error_rate`` and ``bleu`` (sacrebleu's default tokenisation)."""
    hyps, refs = _check(hyps, refs)
    return {
        "exact_match": exact_match(hyps, refs),
        "token_accuracy": token_accuracy(hyps, refs, kind),
        "char_error_rate": char_error_rate(hyps, refs),
        "bleu": bleu(hyps, refs),
    }

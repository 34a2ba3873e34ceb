"""``POST /classify``: class probabilities from a classification run.

Inputs are read the way ``rnnkit classify predict`` reads a file: texts are encoded
with the run's vocabulary and cut to its ``max_length``; numeric sequences must have
the run's features per step. The batch is padded to its longest sequence and run once
with the lengths, so padding changes nothing.
"""

from __future__ import annotations

import numpy as np
import torch

from rnnkit.serve.runs import ServedRun
from rnnkit.serve.schemas import (
    MAX_BATCH,
    MAX_SEQUENCE_STEPS,
    MAX_TEXT_CHARS,
    ClassifyRequest,
    ClassifyResponse,
    bad,
    check_count,
    check_finite,
    too_large,
)


def _texts(run: ServedRun, texts: list[str]):
    """Token ids ``(N, T_max)`` int64 and lengths ``(N,)`` of the texts."""
    from rnnkit.data.labeled import LabeledTexts

    for i, text in enumerate(texts):
        if len(text) > MAX_TEXT_CHARS:
            raise too_large(
                f"texts[{i}] must be at most {MAX_TEXT_CHARS} characters, got {len(text)}"
            )
    names = [f"texts[{i}]" for i in range(len(texts))]
    unlabelled = LabeledTexts(texts, None, run.meta["classes"], "the request", names)
    encoded = unlabelled.encode(run.vocab, run.meta["data"].get("max_length"))  # empty: 400
    return torch.from_numpy(encoded.values), torch.from_numpy(encoded.lengths)


def _sequences(run: ServedRun, sequences: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded floats ``(N, T_max, F)`` and lengths ``(N,)`` of numeric sequences."""
    features = run.meta["num_features"]
    arrays = []
    for i, sequence in enumerate(sequences):
        check_count(f"sequences[{i}] steps", len(sequence), 1, MAX_SEQUENCE_STEPS)
        bare = [isinstance(step, float) for step in sequence]
        if all(bare) and features == 1:
            rows = [[step] for step in sequence]  # one feature per step, given bare
        elif any(bare):
            raise bad(f"sequences[{i}]: give each step as a list of {features} number(s)")
        else:
            rows = sequence
        widths = {len(row) for row in rows}
        if widths != {features}:
            raise bad(
                f"sequences[{i}]: the run reads {features} feature(s) per step, got "
                f"{', '.join(map(str, sorted(widths)))}"
            )
        array = np.asarray(rows, dtype=np.float64)  # (T_i, F)
        check_finite(f"sequences[{i}]", array.ravel().tolist())
        arrays.append(array.astype(np.float32))
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    x = np.zeros((len(arrays), int(lengths.max()), features), dtype=np.float32)
    for i, array in enumerate(arrays):
        x[i, : len(array)] = array  # zeros past each length, as in training
    return torch.from_numpy(x), torch.from_numpy(lengths)


def inputs(run: ServedRun, request: ClassifyRequest) -> tuple[torch.Tensor, torch.Tensor]:
    """The request's batch as the model takes it: ``x`` and ``lengths``, bounds checked."""
    tokens = run.meta["kind"] == "tokens"
    given, other = ("texts", "sequences") if tokens else ("sequences", "texts")
    if getattr(request, other) is not None:
        raise bad(f"this run classifies {given}, not {other}; send {given!r}")
    items = getattr(request, given)
    if items is None:
        raise bad(f"send {given!r}: a list of the {given} to classify")
    check_count(given, len(items), 1, MAX_BATCH)
    return _texts(run, items) if tokens else _sequences(run, items)


def handle(run: ServedRun, request: ClassifyRequest) -> ClassifyResponse:
    """Labels and probabilities of every input; the caller holds the model lock."""
    x, lengths = inputs(run, request)
    probs = run.model.predict_proba(x, lengths, batch_size=MAX_BATCH)  # (N, C), no_grad
    classes = run.meta["classes"]
    return ClassifyResponse(
        classes=classes,
        labels=[classes[i] for i in probs.argmax(-1).tolist()],
        probabilities=probs.double().tolist(),
    )


def summary(run: ServedRun) -> dict:
    """What ``GET /health`` says about a classification run."""
    out = {"classes": run.meta["classes"], "input": run.meta["kind"]}
    if run.meta["kind"] == "tokens":
        out.update(
            vocab_kind=run.vocab.kind,
            vocab_size=len(run.vocab),
            max_length=run.meta["data"].get("max_length"),
        )
    else:
        out["features"] = run.meta["num_features"]
    return out

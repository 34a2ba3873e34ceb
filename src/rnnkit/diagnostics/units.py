r"""Hidden-unit activations of a language model over a text, and the units that track a feature.

In the spirit of Karpathy, Johnson and Fei-Fei, "Visualizing and Understanding Recurrent
Networks" (2015): run a trained character model over a text, record one layer's state at
every step, and look for single units that follow something in the text (being inside a
quote, the position in a line, the bracket depth).

``record_activations(model, vocab, text)`` feeds the text through the model (eval mode, no
gradients, from the model's initial state) and keeps, for every token ``t``,

.. code-block:: text

    activations[t] = h_t   of the chosen layer (its output y_t), or c_t, an LSTM's cell state
    top_ids[t], top_probs[t] = the k most likely next tokens under softmax(head(y_t^{top}))

The chosen layer is run one step at a time through its own cell,
``y_t, s_t = cell(x_t, s_{t-1})``, which is exactly the recurrence every engine computes;
the layers below it and above it run as in the model's forward.
``find_units(record, feature)`` ranks the units by ``|corr(activations[:, u], feature)|``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rnnkit.cells import LSTMCell
from rnnkit.data.vocab import tokenize
from rnnkit.diagnostics.features import FEATURES, text_feature
from rnnkit.layers import Recurrent

KINDS = ("h", "c")


@dataclass(frozen=True, eq=False)
class UnitRecord:
    """One layer's activations over a text, with the model's next-token predictions."""

    text: str
    tokens: list[str]  # the text as the model read it, one entry per step
    spans: np.ndarray  # (T, 2) int64: token t is text[spans[t, 0]:spans[t, 1]]
    ids: np.ndarray  # (T,) int64 token ids (0 for <unk>)
    activations: np.ndarray  # (T, H): h_t (the layer's output) or c_t, in the model's dtype
    top_ids: np.ndarray  # (T, k) int64: the k likeliest tokens after token t, likeliest first
    top_probs: np.ndarray  # (T, k) float64: their probabilities
    vocab_tokens: list[str]  # vocabulary tokens by id, to read top_ids
    vocab_kind: str  # "char" or "word"
    layer: int  # the recorded layer, counted from 0 at the bottom
    kind: str  # "h" or "c"
    cell: str  # the layer's cell class, e.g. "LSTMCell"

    @property
    def num_tokens(self) -> int:
        return len(self.tokens)

    @property
    def num_units(self) -> int:
        return self.activations.shape[1]

    def unit(self, unit: int) -> np.ndarray:
        """Activations of one unit over the text, (T,)."""
        return self.activations[:, self.check_unit(unit)]

    def check_unit(self, unit: object) -> int:
        """``unit`` as an int index of a recorded unit, or a one-line ValueError."""
        if isinstance(unit, bool) or not isinstance(unit, (int, np.integer)):
            raise ValueError(f"a unit is an integer index, got {unit!r}")
        if not 0 <= int(unit) < self.num_units:
            raise ValueError(
                f"unit {unit} is out of range: layer {self.layer} has units 0..{self.num_units - 1}"
            )
        return int(unit)

    def predictions(self, t: int) -> list[tuple[str, float]]:
        """The model's top next tokens after token ``t``, as (token, probability)."""
        return [
            (self.vocab_tokens[i], float(p))
            for i, p in zip(self.top_ids[t].tolist(), self.top_probs[t].tolist(), strict=True)
        ]

    def token_feature(self, values: np.ndarray) -> np.ndarray:
        """A per-character array of the text, read per token: at each token's last character."""
        return np.asarray(values)[self.spans[:, 1] - 1]


def record_activations(
    model: nn.Module, vocab, text: str, *, layer: int = -1, kind: str = "h", top_k: int = 5
) -> UnitRecord:
    """Record ``layer``'s ``h_t`` (or LSTM ``c_t``) over ``text``, and the top-k next tokens.

    ``model`` is a :class:`~rnnkit.models.LanguageModel` (or any module with ``embed``,
    a ``Stacked`` ``rnn`` of one-way layers and a ``head``); ``vocab`` its vocabulary.
    The model is run in eval mode and restored to its mode afterwards.
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not one of {', '.join(KINDS)} (h: output, c: cell)")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    layers = _layers(model)
    index = _layer_index(layer, len(layers))
    chosen = layers[index]
    if kind == "c" and not isinstance(chosen.cell, LSTMCell):
        raise ValueError(
            f"kind='c' needs an LSTM layer; layer {index} is a {type(chosen.cell).__name__} "
            "with no cell state: use kind='h'"
        )
    size = getattr(getattr(model, "config", None), "vocab_size", None)
    if size is not None and size != len(vocab):
        raise ValueError(
            f"the vocabulary has {len(vocab)} tokens but the model reads {size}; "
            "pass the vocabulary the model was trained with"
        )
    tokens, spans = _token_spans(vocab, text)
    if not tokens:
        raise ValueError("the text has no tokens to record; give a non-empty text")
    ids = torch.as_tensor(vocab.encode(text), dtype=torch.long)  # (T,)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            ref = model.head.weight
            x = model.embed(ids.to(ref.device).unsqueeze(1))  # (T, 1, I)
            for k, recurrent in enumerate(layers):
                if k == index:
                    x, recorded = _step_layer(recurrent, x, kind)  # (T, 1, O), (T, H)
                else:
                    state = recurrent.init_state(1, device=x.device, dtype=x.dtype)
                    x, _ = recurrent.run(x, state, None)  # (T, 1, O)
            probs = torch.softmax(model.head(x[:, 0]).double(), dim=-1)  # (T, V)
            top = torch.topk(probs, min(top_k, probs.shape[-1]), dim=-1)
    finally:
        model.train(was_training)
    return UnitRecord(
        text=text,
        tokens=tokens,
        spans=spans,
        ids=ids.numpy().astype(np.int64),
        activations=recorded.cpu().numpy(),
        top_ids=top.indices.cpu().numpy().astype(np.int64),
        top_probs=top.values.cpu().numpy(),
        vocab_tokens=list(vocab.tokens),
        vocab_kind=vocab.kind,
        layer=index,
        kind=kind,
        cell=type(chosen.cell).__name__,
    )


def _layers(model: nn.Module) -> list[Recurrent]:
    """The model's recurrent layers, bottom first; a ValueError for what cannot be recorded."""
    rnn = getattr(model, "rnn", None)
    has_ends = all(callable(getattr(model, name, None)) for name in ("embed", "head"))
    if not has_ends or not hasattr(rnn, "layers"):
        raise ValueError(
            "record_activations needs a language model with embed, a stacked rnn and a head "
            f"(rnnkit.models.LanguageModel); got {type(model).__name__}"
        )
    layers = list(rnn.layers)
    for k, recurrent in enumerate(layers):
        if not isinstance(recurrent, Recurrent) or recurrent.reverse:
            raise ValueError(
                f"layer {k} is a {type(recurrent).__name__} that is not a one-way Recurrent; "
                "record_activations follows a left-to-right language model only"
            )
    return layers


def _layer_index(layer: object, n: int) -> int:
    if isinstance(layer, bool) or not isinstance(layer, int) or not -n <= layer < n:
        raise ValueError(f"layer={layer!r} is out of range: the model has {n} recurrent layer(s)")
    return layer % n


def _token_spans(vocab, text: str) -> tuple[list[str], np.ndarray]:
    """The tokens the vocabulary reads in ``text`` and where each lies in it."""
    if vocab.kind == "char":
        tokens = list(text)
        starts = np.arange(len(text), dtype=np.int64)
        return tokens, np.stack([starts, starts + 1], axis=1).reshape(len(text), 2)  # (T, 2)
    tokens = tokenize(text, vocab.kind)
    spans = np.zeros((len(tokens), 2), dtype=np.int64)  # (T, 2)
    position = 0
    for t, token in enumerate(tokens):
        start = text.index(token, position)  # tokens appear in order, separated by spaces
        position = start + len(token)
        spans[t] = (start, position)
    return tokens, spans


def _step_layer(layer: Recurrent, x: torch.Tensor, kind: str):
    """Run ``layer``'s cell over ``x`` (T, 1, I) step by step: outputs (T, 1, O), record (T, H)."""
    cell = layer.cell
    state = layer.init_state(1, device=x.device, dtype=x.dtype)
    outputs, recorded = [], []
    for t in range(x.shape[0]):
        y, state = cell(x[t], state)  # (1, O)
        outputs.append(y)
        recorded.append(state[1] if kind == "c" else y)
    return torch.stack(outputs), torch.cat(recorded)  # (T, 1, O), (T, H)


def feature_values(record: UnitRecord, feature: str | Sequence[float] | np.ndarray) -> np.ndarray:
    """A feature as one float64 value per token of ``record``.

    ``feature`` is a built-in name (:data:`~rnnkit.diagnostics.features.FEATURES`,
    computed from ``record.text``), or an array with one value per token or per character
    of the text (read per token at each token's last character).
    """
    if isinstance(feature, str):
        return record.token_feature(text_feature(record.text, feature))
    try:
        values = np.asarray(feature, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"a feature is one of {', '.join(FEATURES)} or an array of numbers, "
            f"got {type(feature).__name__}"
        ) from None
    T, N = record.num_tokens, len(record.text)
    if values.ndim != 1 or values.shape[0] not in (T, N):
        raise ValueError(
            f"a feature array needs one value per token ({T}) or per character ({N}), "
            f"got shape {values.shape}"
        )
    if not np.isfinite(values).all():
        raise ValueError("the feature array holds NaN or infinite values; give finite numbers")
    return values if values.shape[0] == T else record.token_feature(values)


def find_units(
    record: UnitRecord, feature: str | Sequence[float] | np.ndarray, *, top: int | None = None
) -> list[tuple[int, float]]:
    """Units ranked by how well they track ``feature``: ``[(unit, r), ...]``, best first.

    ``r`` is the Pearson correlation of the unit's activation with the feature over the
    tokens (a constant unit gets 0); ranking is by ``|r|`` (a unit may track a feature by
    going negative), ties by unit index. ``top`` keeps the first ``top`` entries.
    """
    values = feature_values(record, feature)
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise ValueError(f"top must be a positive integer or None, got {top!r}")
    f = values - values.mean()
    if not np.any(f):
        name = feature if isinstance(feature, str) else "the feature"
        raise ValueError(f"{name} is constant over this text; give a text where it varies")
    a = record.activations.astype(np.float64)
    a = a - a.mean(axis=0)  # (T, H)
    spread = np.linalg.norm(a, axis=0)  # (H,)
    # A constant unit's centred values are rounding noise, not a signal to correlate.
    varies = spread > 1e-9 * np.sqrt(len(f)) * (1.0 + np.abs(record.activations).max(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(varies, (f @ a) / (spread * np.linalg.norm(f)), 0.0)  # (H,)
    r = np.clip(r, -1.0, 1.0)
    order = sorted(range(len(r)), key=lambda u: (-abs(r[u]), u))
    ranked = [(u, float(r[u])) for u in order]
    return ranked if top is None else ranked[:top]

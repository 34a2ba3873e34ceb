r"""Exported forms of a :class:`~rnnkit.models.SequenceClassifier`.

- sequence: a padded batch, ``x (B, T, F)`` floats (or ``tokens (B, T)`` ids) and
  ``lengths (B,)`` -> class ``logits (B, C)``, exactly as the model pools each
  sequence's real steps;
- step (one-way stacks only): one step of every sequence, ``x_t (B, F)`` (or
  ``token (B,)``), the layer state and the pooling's running sums -> the logits of
  the sequence read so far (streaming classification) and the updated state. After the
  ``L``-th step they equal the sequence form's logits for a sequence of length ``L``.

The pooling runs as sums over the steps so far (``n`` = ``pool_count``):

- ``last``: ``p = y_t`` (no pooling state);
- ``mean``: ``pool_sum += y_t``, ``p = pool_sum / n``;
- ``attention``: the softmax over the steps so far, kept stable with the running
  maximum score ``m = pool_max``: with ``score = w_att · y_t + b_att``,
  ``m' = max(m, score)``, ``pool_denom' = pool_denom · exp(m - m') + exp(score - m')``,
  ``pool_sum' = pool_sum · exp(m - m') + exp(score - m') · y_t``,
  ``p = pool_sum' / pool_denom'``.

A bidirectional classifier reads each sequence from both ends, so it has no step form.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.export.spec import ExportForm, TensorSpec, state_specs
from rnnkit.export.steps import StackRunner, valid_steps
from rnnkit.models.classifier import SequenceClassifier


def _input_spec(model: SequenceClassifier, shape: tuple, what: str) -> TensorSpec:
    cfg = model.config
    if cfg.tokens:
        name = "tokens" if "T" in shape else "token"
        return TensorSpec(name, shape, "int64", f"token ids, {what}", "ids", cfg.vocab_size)
    return TensorSpec("x", (*shape, cfg.input_size), doc=f"features, {what}")


class ClassifierSequence(ExportForm):
    """``(x (B, T, F) or tokens (B, T), lengths (B,)) -> (logits (B, C),)``."""

    form = "sequence"
    notes = "each lengths[b] in 1..T; the steps after it are ignored"

    def __init__(self, model: SequenceClassifier, loop: str = "scan") -> None:
        super().__init__()
        self.model = model
        self.stack = StackRunner(model.rnn, loop)
        C = model.config.num_classes
        self.inputs = [
            _input_spec(model, ("B", "T"), "batch first, padded after each sequence's end"),
            TensorSpec("lengths", ("B",), "int64", "real steps of each sequence, 1..T", "lengths"),
        ]
        self.outputs = [TensorSpec("logits", ("B", C), doc="class logits")]
        self.state = []

    def forward(self, x: Tensor, lengths: Tensor):
        model = self.model
        inputs = model.embedding(x) if model.embedding is not None else x  # (B, T, F)
        inputs = inputs.transpose(0, 1)  # (T, B, F)
        valid = valid_steps(lengths, inputs.shape[0])
        y, _ = self.stack(inputs, valid, self.stack.zeros(inputs))  # (T, B, O)
        return (model.head(model.pool(y, lengths)),)


NO_STEP_FORM = (
    "a bidirectional classifier reads each sequence from both ends, so it has no step form; "
    "export --form sequence"
)
POOL_STATE = {
    "last": (),
    "mean": ("pool_count", "pool_sum"),
    "attention": ("pool_count", "pool_max", "pool_denom", "pool_sum"),
}
POOL_DOCS = {
    "pool_count": "steps read so far",
    "pool_max": "largest attention score so far",
    "pool_denom": "sum of exp(score - pool_max) so far",
    "pool_sum": "running sum of the pooled outputs",
}


class ClassifierStep(ExportForm):
    """``(x_t, *layer_state, *pool_state) -> (logits (B, C), *layer_state, *pool_state)``."""

    form = "step"
    notes = "the logits after the L-th step classify the sequence of those L steps"

    def __init__(self, model: SequenceClassifier) -> None:
        super().__init__()
        if model.config.bidirectional:
            raise ValueError(NO_STEP_FORM)
        self.model = model
        self.stack = StackRunner(model.rnn, "scan")
        cfg, L = model.config, len(self.stack.runners)
        ins, outs, self.state = state_specs(self.stack.names, self.stack.sizes, L)
        self.pool_names = POOL_STATE[cfg.pooling]
        width = model.rnn.output_size
        for name in self.pool_names:
            spec = TensorSpec(name, ("B", width if name == "pool_sum" else 1), doc=POOL_DOCS[name])
            ins.append(TensorSpec(name, spec.shape, doc=spec.doc, kind="zeros"))
            outs.append(TensorSpec(f"{name}_out", spec.shape, doc=spec.doc + ", updated"))
            self.state.append((name, f"{name}_out"))
        self.inputs = [_input_spec(model, ("B",), "this step of every sequence"), *ins]
        C = cfg.num_classes
        logits = TensorSpec("logits", ("B", C), doc="class logits of the steps read so far")
        self.outputs = [logits, *outs]

    def forward(self, x: Tensor, *state: Tensor):
        model, n = self.model, len(self.stack.names)
        inputs = model.embedding(x) if model.embedding is not None else x  # (B, F)
        y, layers = self.stack.step(inputs, self.stack.pack(state[:n]))  # (B, O)
        pooled, pool = self._pool(y, state[n:])
        return (model.head(pooled), *self.stack.unpack(layers), *pool)

    def _pool(self, y: Tensor, pool: tuple) -> tuple[Tensor, tuple]:
        """The pooled vector of the steps so far and the updated running sums."""
        pooling = self.model.config.pooling
        if pooling == "last":
            return y, ()
        if pooling == "mean":
            count, total = pool
            count, total = count + 1, total + y
            return total / count, (count, total)
        count, top, denom, total = pool  # (B, 1), (B, 1), (B, 1), (B, O)
        score = self.model.attention(y)  # (B, 1)
        started = count > 0
        new_top = torch.where(started, torch.maximum(top, score), score)
        # Before the first step the sums are zero: scale them by 0, not by exp(0 - score).
        scale = torch.where(started, torch.exp(top - new_top), torch.zeros_like(top))
        weight = torch.exp(score - new_top)
        denom = denom * scale + weight
        total = total * scale + weight * y
        return total / denom, (count + 1, new_top, denom, total)


__all__ = ["ClassifierSequence", "ClassifierStep"]

"""Exported forms of a :class:`~rnnkit.models.LanguageModel`.

- sequence: ``tokens (T, B)`` and the state ``h`` (``c`` for an LSTM), each
  ``(L, B, H)`` -> ``logits (T, B, V)`` and the state after the last token;
- step: ``token (B,)`` and the state -> ``logits (B, V)`` of the next token and the
  state, for streaming and sampling one token at a time.

Both start from a zero state; ``softmax(logits)`` is the next token's distribution.
"""

from __future__ import annotations

from torch import Tensor

from rnnkit.export.spec import ExportForm, TensorSpec, state_specs
from rnnkit.export.steps import StackRunner
from rnnkit.models.language_model import LanguageModel


class _LMForm(ExportForm):
    def __init__(self, model: LanguageModel, loop: str, tokens: TensorSpec, logits: TensorSpec):
        super().__init__()
        self.embed, self.head = model.embed, model.head
        self.model = model  # keeps embedding and head registered as submodules
        self.stack = StackRunner(model.rnn, loop)
        L = len(self.stack.runners)
        ins, outs, self.state = state_specs(self.stack.names, self.stack.sizes, L)
        self.inputs, self.outputs = [tokens, *ins], [logits, *outs]


class LMSequence(_LMForm):
    """``(tokens (T, B), *state) -> (logits (T, B, V), *state)``."""

    form = "sequence"

    def __init__(self, model: LanguageModel, loop: str = "scan") -> None:
        V = model.config.vocab_size
        tokens = TensorSpec("tokens", ("T", "B"), "int64", "token ids, time first", "ids", V)
        logits = TensorSpec("logits", ("T", "B", V), doc="next-token logits after each token")
        super().__init__(model, loop, tokens, logits)

    def forward(self, tokens: Tensor, *state: Tensor):
        y, finals = self.stack(self.embed(tokens), None, self.stack.pack(state))  # (T, B, H)
        return (self.head(y), *self.stack.unpack(finals))


class LMStep(_LMForm):
    """``(token (B,), *state) -> (logits (B, V), *state)``: one token at a time."""

    form = "step"
    notes = "softmax(logits) is the next token's distribution; feed the token drawn next"

    def __init__(self, model: LanguageModel) -> None:
        V = model.config.vocab_size
        token = TensorSpec("token", ("B",), "int64", "the current token id", "ids", V)
        logits = TensorSpec("logits", ("B", V), doc="logits of the next token")
        super().__init__(model, "scan", token, logits)

    def forward(self, token: Tensor, *state: Tensor):
        y, states = self.stack.step(self.embed(token), self.stack.pack(state))  # (B, H)
        return (self.head(y), *self.stack.unpack(states))


__all__ = ["LMSequence", "LMStep"]

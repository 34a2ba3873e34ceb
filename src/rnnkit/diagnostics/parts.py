"""What ``gradient_flow`` accepts as a model, taken apart into the pieces it runs itself.

A model is one of

- a bare cell (``rnnkit.cells.*``): run as ``Recurrent(cell)``;
- a layer: ``Recurrent``, ``Bidirectional`` or ``Stacked`` (nested stacks are flattened);
- a task model: any ``nn.Module`` with a ``.rnn`` layer, e.g.
  :class:`~rnnkit.models.LanguageModel`. Its input goes through ``model.embed`` (or
  ``model.embedding``) when it is int64 token ids, and its per-step outputs are
  ``model.head(y_t)`` when it has a ``head``; nothing else of the model is used
  (no pooling, no normalisation).

The model is copied, cast to the working dtype and put in eval mode (no dropout), and
every ``Recurrent`` in the copy runs on the reference ``loop`` engine.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rnnkit.cells import RecurrentCell
from rnnkit.layers import Bidirectional, Recurrent, Stacked

DIRECTIONS = ("forward", "backward")


@dataclass
class ModelParts:
    """A copied model, as gradient_flow runs it: ``head(layers(embed(inputs)))``."""

    layers: list[nn.Module]  # Recurrent or Bidirectional, bottom first
    embed: Callable[[Tensor], Tensor] | None  # token ids (T, B) -> (T, B, I)
    head: nn.Module | None  # (T, B, O) -> per-step outputs
    batch_first: bool  # inputs and targets given (B, T, ...)
    vocab_size: int | None  # token ids must lie in 0..vocab_size-1

    @property
    def input_size(self) -> int:
        return self.layers[0].input_size


def model_parts(model, dtype: torch.dtype) -> ModelParts:
    """Copy ``model`` (cast to ``dtype``, eval mode, loop engine) and take it apart."""
    if not isinstance(model, nn.Module) or _layers_of(model) is None:
        raise ValueError(
            "gradient_flow needs an rnnkit cell, a layer (Recurrent, Bidirectional, Stacked) "
            f"or a model with a .rnn layer; got {type(model).__name__} with no recurrent part"
        )
    model = copy.deepcopy(model).to(dtype).eval()
    for module in model.modules():
        if isinstance(module, Recurrent):
            module.engine = "loop"  # the reference, and no kernels to build
            module.checkpoint = False
    layers = _layers_of(model)
    if _is_layer(model):
        return ModelParts(layers, None, None, bool(getattr(model, "batch_first", False)), None)
    embed, vocab = None, None
    if callable(getattr(model, "embed", None)):
        embed = model.embed
    elif isinstance(getattr(model, "embedding", None), nn.Embedding):
        embed = model.embedding
    if embed is not None:
        config = getattr(model, "config", None)
        vocab = getattr(config, "vocab_size", None)
        if vocab is None and isinstance(getattr(model, "embedding", None), nn.Embedding):
            vocab = model.embedding.num_embeddings
    head = getattr(model, "head", None)
    head = head if isinstance(head, nn.Module) else None
    return ModelParts(layers, embed, head, False, vocab)


def _is_layer(model) -> bool:
    return isinstance(model, (RecurrentCell, Recurrent, Bidirectional, Stacked))


def _layers_of(model) -> list[nn.Module] | None:
    """The flat list of Recurrent / Bidirectional layers, or None without a recurrent part."""
    if isinstance(model, RecurrentCell):
        return [Recurrent(model, engine="loop")]
    if isinstance(model, (Recurrent, Bidirectional)):
        return [model]
    if isinstance(model, Stacked):
        flat: list[nn.Module] = []
        for layer in model.layers:
            flat += _layers_of(layer) or []
        return flat
    rnn = getattr(model, "rnn", None)
    if isinstance(rnn, nn.Module) and _is_layer(rnn):
        return _layers_of(rnn)
    return None


def analysed_layer(parts: ModelParts, layer: int, direction: str) -> Recurrent:
    """The ``Recurrent`` whose state gradient_flow follows (``direction`` in a Bidirectional)."""
    n = len(parts.layers)
    if isinstance(layer, bool) or not isinstance(layer, int) or not -n <= layer < n:
        raise ValueError(f"layer={layer!r} is out of range: the model has {n} recurrent layer(s)")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction={direction!r} is not supported; expected one of {DIRECTIONS}")
    chosen = parts.layers[layer]
    if isinstance(chosen, Bidirectional):
        return chosen.fwd if direction == "forward" else chosen.bwd
    if direction == "backward":
        raise ValueError(
            f"direction='backward' needs a Bidirectional layer; layer {layer} is one-way"
        )
    return chosen


def merge(layer: Bidirectional, y_f: Tensor, y_b: Tensor) -> Tensor:
    """``layer``'s merge of its two directions' outputs (T, B, ·), as in its ``run``."""
    if layer.merge == "concat":
        return torch.cat([y_f, y_b], dim=-1)  # (T, B, O_f + O_b)
    if layer.merge == "sum":
        return y_f + y_b
    if layer.merge == "mean":
        return 0.5 * (y_f + y_b)
    return y_f * y_b

"""Scoring a language model on a token stream: mean loss in nats per token."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


@torch.no_grad()
def evaluate_stream(model: nn.Module, stream, *, max_chunks: int | None = None) -> float:
    """Mean cross-entropy (nats per token) of ``model`` over ``stream``'s chunks in order.

    The state is carried from each chunk to the next (starting from zeros), as in
    training, so every token is predicted from all of its stream before it. Dropout is
    off during the pass; the model's training mode is restored afterwards.
    ``max_chunks`` scores only the first chunks (None: the whole stream).
    """
    chunks = stream.num_chunks if max_chunks is None else min(stream.num_chunks, max_chunks)
    if chunks < 1:
        raise ValueError("the stream is shorter than one chunk; use more text or shorter chunks")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    count, state = 0, None
    try:
        for i in range(chunks):
            x, y = stream.chunk(i)  # (T, B) each
            x, y = x.to(device), y.to(device)
            if state is None:
                state = model.init_state(x.shape[1])  # zeros
            logits, state = model(x, state)  # (T, B, V)
            flat = logits.reshape(-1, logits.shape[-1])
            total += F.cross_entropy(flat, y.reshape(-1), reduction="sum").double()
            count += y.numel()
    finally:
        model.train(was_training)
    return float(total) / count

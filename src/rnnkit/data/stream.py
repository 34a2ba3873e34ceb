"""``StreamBatches``: char-rnn's batching of one long token stream for truncated BPTT.

The corpus is cut into ``batch_size`` contiguous streams of equal length (the
remainder is dropped) laid side by side::

    ids     a b c d e f g h i j k l m n o p q r s t u v w x     (24 tokens, B=3)
    stream0 a b c d e f g h
    stream1 i j k l m n o p
    stream2 q r s t u v w x

Chunk ``i`` takes ``seq_len`` columns from each stream as inputs and the same columns
shifted one token on as targets. Chunk ``i+1`` starts where chunk ``i`` ended in every
stream, so the hidden state left by chunk ``i`` in batch row ``b`` is the right state
to start chunk ``i+1``'s row ``b`` from: carry it (detached) between chunks.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor


class StreamBatches:
    """Time-major ``(x, y)`` chunks of ``batch_size`` parallel streams over ``ids``.

    ``chunk(i)`` gives int64 tensors ``x, y`` of shape ``(seq_len, batch_size)`` with
    ``y[t, b]`` the token after ``x[t, b]``; iterating gives the chunks of one epoch in
    order. The data stays one array: chunks are views until copied into the tensors.
    """

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int) -> None:
        for name, value in (("batch_size", batch_size), ("seq_len", seq_len)):
            if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        ids = np.asarray(ids)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(
                f"token ids must be a 1-D integer array, got shape {ids.shape} dtype {ids.dtype}"
            )
        needed = batch_size * (seq_len + 1)  # one chunk of inputs plus the last target
        if len(ids) < needed:
            raise ValueError(
                f"the text has {len(ids)} tokens, too few for batch_size*(seq_len+1)={needed}; "
                "use a smaller --batch-size or --seq-len"
            )
        self.batch_size = int(batch_size)
        self.seq_len = int(seq_len)
        self.stream_len = len(ids) // self.batch_size
        # A reshaped slice: a view of ids (no copy) when ids is contiguous.
        self.streams = ids[: self.batch_size * self.stream_len].reshape(
            self.batch_size, self.stream_len
        )  # (B, L)

    @property
    def num_chunks(self) -> int:
        """Chunks per epoch; the last target of a chunk needs one token beyond it."""
        return (self.stream_len - 1) // self.seq_len

    @property
    def tokens_per_chunk(self) -> int:
        """Input tokens in one chunk: ``seq_len * batch_size``."""
        return self.seq_len * self.batch_size

    def __len__(self) -> int:
        return self.num_chunks

    def part(self, index: int, parts: int) -> StreamBatches:
        """Streams ``index*B/parts ... (index+1)*B/parts - 1``, the same chunks cut to them.

        One process's share in data-parallel training: chunk ``i`` of the part is the
        columns of chunk ``i`` for those streams. ``B`` must be a multiple of ``parts``.
        """
        if self.batch_size % parts:
            raise ValueError(
                f"batch_size {self.batch_size} does not split evenly over {parts} processes; "
                f"use a multiple of {parts}"
            )
        if not 0 <= index < parts:
            raise ValueError(f"part {index} is out of range for {parts} parts")
        size = self.batch_size // parts
        share = copy.copy(self)
        share.batch_size = size
        share.streams = self.streams[index * size : (index + 1) * size]  # (B / parts, L) view
        return share

    def chunk(self, i: int) -> tuple[Tensor, Tensor]:
        """Inputs and targets of chunk ``i``, each ``(seq_len, batch_size)`` int64."""
        if not 0 <= i < self.num_chunks:
            raise IndexError(f"chunk {i} is out of range: there are {self.num_chunks} chunks")
        start = i * self.seq_len
        x = self.streams[:, start : start + self.seq_len]  # (B, T) view
        y = self.streams[:, start + 1 : start + self.seq_len + 1]  # (B, T) view, one token on
        # One copy each: transpose to time-major and widen to int64 for embedding lookups.
        return (
            torch.from_numpy(np.ascontiguousarray(x.T, dtype=np.int64)),  # (T, B)
            torch.from_numpy(np.ascontiguousarray(y.T, dtype=np.int64)),  # (T, B)
        )

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for i in range(self.num_chunks):
            yield self.chunk(i)

"""``Batches``: minibatches over a fixed set of examples, reshuffled every epoch by seed."""

from __future__ import annotations

import torch
from torch import Tensor


class Batches:
    """Minibatches of the examples in ``tensors`` (every tensor has the examples on dim 0).

    ``batch(step)`` is the ``step``-th minibatch of the whole run: epoch
    ``step // num_batches``, position ``step % num_batches`` in it. With ``shuffle``
    the epoch's order is a permutation drawn from ``(seed, epoch)`` alone, so the
    batches of any step can be rebuilt (a resumed run sees exactly the batches the
    uninterrupted one would). The last batch of an epoch may be smaller.

    ``lengths_key``: the name of an ``(N,)`` int64 tensor of sequence lengths; each
    tensor named in ``time_keys`` (padded ``(N, T_max, ...)``) is then cut to the
    batch's longest sequence, so a batch of short sequences does not run ``T_max`` steps.
    """

    def __init__(
        self,
        tensors: dict[str, Tensor],
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        lengths_key: str | None = None,
        time_keys: tuple[str, ...] = (),
    ) -> None:
        if not isinstance(tensors, dict) or not tensors:
            raise ValueError("Batches needs a non-empty dict of tensors")
        sizes = {name: t.shape[0] if t.dim() else None for name, t in tensors.items()}
        n = next(iter(sizes.values()))
        if n is None or any(size != n for size in sizes.values()):
            shown = ", ".join(f"{k}: {v}" for k, v in sizes.items())
            raise ValueError(f"every tensor must hold the same number of examples, got {shown}")
        if n < 1:
            raise ValueError("Batches needs at least one example")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if lengths_key is not None and lengths_key not in tensors:
            raise ValueError(f"lengths_key {lengths_key!r} is not one of the tensors")
        unknown = [k for k in time_keys if k not in tensors]
        if unknown:
            raise ValueError(f"time_keys {unknown} are not among the tensors")
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.lengths_key = lengths_key
        self.time_keys = tuple(time_keys)
        self.num_examples = n
        self.num_batches = -(-n // batch_size)  # ceil
        self._order: tuple[int, Tensor] | None = None  # (epoch, permutation) cached

    def order(self, epoch: int) -> Tensor:
        """The example indices of ``epoch`` in the order they are batched."""
        if not self.shuffle:
            return torch.arange(self.num_examples)
        if self._order is None or self._order[0] != epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._order = (epoch, torch.randperm(self.num_examples, generator=generator))
        return self._order[1]

    def batch(self, step: int) -> dict[str, Tensor]:
        return self.take(self.rows(step))

    def rows(self, step: int) -> Tensor:
        """The example indices of the ``step``-th minibatch."""
        epoch, index = divmod(int(step), self.num_batches)
        return self.order(epoch)[index * self.batch_size : (index + 1) * self.batch_size]

    def take(self, rows: Tensor) -> dict[str, Tensor]:
        """The examples ``rows`` as a batch, padded time dimensions cut to their longest sequence.

        ``batch(step)`` is ``take(rows(step))``; a data-parallel process takes its slice of
        ``rows(step)``.
        """
        out = {name: t[rows] for name, t in self.tensors.items()}
        if self.lengths_key is not None and self.time_keys:
            longest = int(out[self.lengths_key].max())
            for name in self.time_keys:
                out[name] = out[name][:, :longest]
        return out

    def __iter__(self):
        """The batches of epoch 0 in order (all examples once)."""
        return (self.batch(i) for i in range(self.num_batches))

    def __len__(self) -> int:
        return self.num_batches

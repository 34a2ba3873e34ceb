r"""Data-parallel training over processes started by ``torchrun``.

Every training command runs on N processes when launched by ``torchrun``; each process
trains on its share of every batch and all of them make the same update:

.. code-block:: text

    torchrun --standalone --nproc-per-node 2 -m rnnkit lm train --batch-size 32 --out runs/lm
    torchrun --standalone --nproc-per-node 4 -m rnnkit classify train --example digits --device cuda
    torchrun --standalone --nproc-per-node 2 -m rnnkit forecast train --example sunspots
    torchrun --standalone --nproc-per-node 1 -m rnnkit lm train --out runs/lm --resume  # any N

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``. With ``WORLD_SIZE > 1`` the command joins the process group: gloo on
the CPU, NCCL with ``--device cuda`` (process r on GPU ``LOCAL_RANK``). A plain
``rnnkit ...`` (or ``--nproc-per-node 1``) starts no process group and runs as before.
On a CPU, give each process its own cores (``OMP_NUM_THREADS``; torchrun sets 1).
From Python, call ``device = distributed.init(device)`` before building a ``Trainer`` or
``FitTrainer`` (they shard their data when built) and ``distributed.teardown()`` after.

What each process does:

- **Data.** A language model's ``B`` parallel streams are split into ``N`` groups of
  ``B / N`` (process r reads streams ``r B/N ... (r+1) B/N - 1``; ``B`` must be a multiple
  of ``N``). A minibatch of examples is split into ``N`` contiguous slices whose sizes
  differ by at most one; a slice left empty by a short last batch reads one stand-in row
  with weight 0.
- **Gradients.** The model runs inside ``DistributedDataParallel``, which averages the
  gradients of the ``N`` processes. Process r's loss ``L_r`` is a mean over ``w_r``
  (its examples, its tokens, or the task's ``loss_weight``); it back-propagates
  ``scale_r * L_r`` with ``scale_r = N * w_r / W``, ``W = sum_r w_r``, so the averaged
  gradient is ``sum_r (w_r / W) grad L_r = grad L``: the gradient of the mean loss over the
  whole batch, the update one process makes on it. Clipping then acts on that gradient.
  The logged loss is ``L = sum_r w_r L_r / W``.
- **Decisions.** A bad step is bad on every process (the guard's verdicts are combined
  by an all-reduce); validation runs on rank 0 and its figures are sent to all;
  the stopping rule and a time budget's schedule horizon are rank 0's (its clock).
- **Files.** Only rank 0 writes (checkpoints, ``metrics.csv``, plots, the progress
  bar, messages); the others wait at a barrier at the end of training.
- **Resume.** A checkpoint holds the unwrapped model, the optimizer, the step, a
  language model's carried state for all ``B`` streams, and every process's RNG
  state, so a run resumes on any number of processes. On the same number the resumed
  run is exact as a single process's is (same batches, same dropout masks, same
  losses). On another number it takes the same batches from the same weights and
  optimizer state, so the updates agree to float rounding (the sums run in another
  order); random draws (dropout) differ: rank 0 continues the saved rank 0 stream,
  the other ranks are seeded afresh from ``(seed, rank, step)``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import Tensor, nn

from rnnkit.train.rng import capture_rng

# Seeds of the ranks > 0 are offset by this times the rank (rank 0 keeps the run's seed).
RANK_SEED_STRIDE = 1_000_003
_joined = False  # whether init() started the process group (teardown() ends only that one)


# ------------------------------------------------------------------ process group


def launched() -> bool:
    """True when ``torchrun`` (or the same environment) asks for more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """True on the process that writes files and prints (rank 0, or the only process)."""
    return rank() == 0


def init(device: torch.device) -> torch.device:
    """Join the process group ``torchrun`` set up, when it did; the device to train on.

    A CUDA device becomes GPU ``LOCAL_RANK`` (NCCL); a CPU run uses gloo. Without
    ``WORLD_SIZE > 1`` in the environment nothing happens and ``device`` comes back.
    """
    global _joined
    if not launched() or active():
        return device
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device.index is not None and device.index != local:
            raise ValueError(
                f"under torchrun each process uses GPU LOCAL_RANK ({local}); pass --device cuda, "
                f"not {device}"
            )
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    _joined = True
    return device


def teardown() -> None:
    """Leave the process group :func:`init` joined, if it did; safe to call more than once."""
    global _joined
    if _joined and dist.is_initialized():
        dist.destroy_process_group()
    _joined = False


def with_teardown(command: Callable) -> Callable:
    """Wrap a command so that the process group it may have joined is left when it ends."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        finally:
            teardown()

    return run


def rank_seed(seed: int, step: int = 0) -> int:
    """The seed of this process: the run's seed on rank 0, one from ``(seed, rank, step)`` else.

    ``step`` is where a run resumed on another number of processes restarts the draws.
    """
    r = rank()
    return seed if r == 0 else seed + RANK_SEED_STRIDE * r + step


# ---------------------------------------------------------------------- collectives


def _comm_device() -> torch.device:
    """Where collective tensors live: the current GPU for NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_sum_tensor(t: Tensor, *, include: bool = True) -> Tensor:
    """The element-wise sum of ``t`` over the processes (``include=False``: add zeros)."""
    if not active():
        return t
    summed = (t if include else torch.zeros_like(t)).to(_comm_device(), copy=True)
    dist.all_reduce(summed)
    return summed.to(t.device)


def all_sum(values: list[float]) -> list[float]:
    """Each number summed over the processes (float64)."""
    if not active():
        return list(values)
    return all_sum_tensor(torch.tensor(values, dtype=torch.float64)).tolist()


def any_rank(flag: bool) -> bool:
    """True on every process when ``flag`` is true on any."""
    if not active():
        return bool(flag)
    t = torch.tensor([int(bool(flag))], device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def sync_flags(anywhere: bool, on_main: bool) -> tuple[bool, bool]:
    """``(anywhere on any process, on_main of rank 0)`` on every process: one all-reduce.

    For a stopping rule: an interruption seen by any process, a time budget by rank 0's clock.
    """
    if not active():
        return bool(anywhere), bool(on_main)
    t = torch.tensor([int(bool(anywhere)), int(bool(on_main) and is_main())], device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t[0]), bool(t[1])


def agree(bad: str | None) -> str | None:
    """A bad-step verdict shared by all processes: bad everywhere when bad anywhere."""
    if not any_rank(bad is not None):
        return None
    return bad or "bad on another process"


def from_main(value):
    """Rank 0's ``value`` (any picklable object) on every process."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(fn: Callable[[], object]):
    """``fn()`` run on rank 0 alone; its result on every process (the others wait)."""
    return from_main(fn() if is_main() else None)


def gather_objects(value) -> list:
    """Every process's ``value`` (picklable), in rank order."""
    if not active():
        return [value]
    out = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def barrier() -> None:
    if active():
        dist.barrier()


def weighted_mean(loss: float, weight: float) -> tuple[float, float]:
    """The batch's mean loss from each process's ``(loss, weight)``, and this one's scale.

    ``L = sum_r w_r L_r / W`` and ``scale_r = N w_r / W`` with ``W = sum_r w_r``:
    back-propagating ``scale_r * L_r`` makes DDP's average ``grad L`` (see the module
    docstring). A process with weight 0 adds nothing, even a non-finite loss.
    """
    if not active():
        return loss, 1.0
    part = loss * weight if weight else 0.0
    total, weights = all_sum([part, float(weight)])
    if weights <= 0:
        return total, 0.0
    return total / weights, world_size() * weight / weights


def scaled(loss: Tensor, scale: float) -> Tensor:
    """``scale * loss``, and ``loss`` itself for a scale of 1 (a single process)."""
    return loss if scale == 1.0 else loss * scale


# ------------------------------------------------------------------------ the model


class Objective(nn.Module):
    """``fn(model, *inputs)`` as a module's forward, so DDP sees the whole loss computation.

    DDP synchronises gradients only for computations that go through its ``forward``;
    a task's loss may call other methods of the model (``model.loss(x, y)``).
    """

    def __init__(self, model: nn.Module, fn: Callable) -> None:
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self, *inputs):
        return self.fn(self.model, *inputs)


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` inside ``DistributedDataParallel`` when data-parallel; else itself.

    DDP copies rank 0's parameters and buffers to the other processes here, so every
    process starts from the same weights.
    """
    if not active():
        return module
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


# -------------------------------------------------------------------------- sharding


def shard_streams(stream):
    """This process's streams of a ``StreamBatches``-like stream (all of them alone).

    Uses the stream's ``part(index, parts)`` when it has one, else cuts each chunk's
    columns (``StreamShard``).
    """
    if not active():
        return stream
    r, n = rank(), world_size()
    if hasattr(stream, "part"):
        return stream.part(r, n)
    return StreamShard(stream, r, n)


class StreamShard:
    """Streams ``index*B/parts ... (index+1)*B/parts - 1`` of any ``StreamBatches``-like stream."""

    def __init__(self, stream, index: int, parts: int) -> None:
        x, _ = stream.chunk(0)  # (T, B)
        batch = x.shape[1]
        check_divisible(batch, parts)
        size = batch // parts
        self.stream = stream
        self.columns = slice(index * size, (index + 1) * size)
        self.num_chunks = stream.num_chunks
        self.tokens_per_chunk = x.shape[0] * size

    def chunk(self, i: int) -> tuple[Tensor, Tensor]:
        x, y = self.stream.chunk(i)  # (T, B) each
        return x[:, self.columns], y[:, self.columns]  # (T, B / parts) each


def check_divisible(batch_size: int, parts: int | None = None) -> None:
    """Refuse a stream batch that ``parts`` processes (default: all) cannot share evenly."""
    parts = world_size() if parts is None else parts
    if batch_size % parts:
        raise ValueError(
            f"batch_size {batch_size} does not split evenly over {parts} processes; use a "
            f"multiple of {parts}"
        )


def shard_rows(rows: Tensor) -> tuple[Tensor, bool]:
    """This process's contiguous slice of a minibatch's row indices, and whether it is real.

    Process r of N takes ``rows[r n // N : (r+1) n // N]`` (sizes differ by at most one).
    An empty slice (fewer rows than processes) is replaced by the first row, marked not
    real: the process still runs a step (DDP needs every process) with weight 0.
    """
    if not active():
        return rows, True
    n, r, parts = len(rows), rank(), world_size()
    mine = rows[r * n // parts : (r + 1) * n // parts]
    if len(mine) == 0:
        return rows[:1], False
    return mine, True


def shard_batch(batches, step: int) -> tuple[dict[str, Tensor], bool, int]:
    """This process's slice of ``batches``' ``step``-th minibatch (see :func:`shard_rows`).

    Returns the slice, whether it holds real examples, and the minibatch's size (all
    processes). ``batches`` with ``rows(step)`` and ``take(rows)`` (``Batches``) build the
    slice alone; others build the minibatch and cut every tensor's first dimension.
    """
    if not active():
        batch = batches.batch(step)
        return batch, True, _examples(batch)
    if hasattr(batches, "take"):
        rows = batches.rows(step)
        mine, real = shard_rows(rows)
        return batches.take(mine), real, len(rows)
    batch = batches.batch(step)
    n = _examples(batch)
    mine, real = shard_rows(torch.arange(n))
    return {name: t[mine] for name, t in batch.items()}, real, n


def _examples(batch: dict[str, Tensor]) -> int:
    return next(iter(batch.values())).shape[0]


def gather_rows(state):
    """A nested tuple of batch-first tensors with every process's rows, in rank order."""
    if not active():
        return state
    if isinstance(state, Tensor):
        parts = [torch.empty_like(state) for _ in range(world_size())]
        dist.all_gather(parts, state.contiguous())
        return torch.cat(parts)
    return tuple(gather_rows(s) for s in state)


def rank_rows(state):
    """This process's equal share of the rows of a nested tuple of batch-first tensors."""
    if not active():
        return state
    if isinstance(state, Tensor):
        size = state.shape[0] // world_size()
        return state[rank() * size : (rank() + 1) * size]
    return tuple(rank_rows(s) for s in state)


# ----------------------------------------------------------------------- checkpoints


def rng_states() -> dict:
    """Checkpoint ``extra`` entries holding every process's RNG state (none when alone)."""
    if not active():
        return {}
    return {"rank_rng": gather_objects(capture_rng())}


def resumed_rng(saved: dict, rank_rng: list | None) -> dict | None:
    """The RNG state this process resumes with, or None to seed it afresh.

    ``saved`` is rank 0's (the checkpoint's own); ``rank_rng`` every rank's when the run
    was data-parallel. The same number of processes resumes every rank's own stream.
    """
    if rank_rng is not None and len(rank_rng) == world_size():
        return rank_rng[rank()]
    return saved if is_main() else None

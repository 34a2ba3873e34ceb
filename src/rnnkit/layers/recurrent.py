"""``Recurrent``: run one cell over a sequence, with lengths, state in and out, dropout."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.cells.base import RecurrentCell, State
from rnnkit.engines import Unroll, check_engine, select_engine
from rnnkit.engines.checkpoint import run_in_segments, segment_steps
from rnnkit.layers._checks import check_lengths, check_state, time_major
from rnnkit.layers.regularizers import (
    check_probability,
    dropconnect_weights,
    dropout_mask,
    substituted,
    variational_dropout,
)


class Recurrent(nn.Module):
    """A cell unrolled over time.

    ``forward(x, state=None, lengths=None, teacher=None) -> (y, final_state)``

    Args:
        cell: any :class:`~rnnkit.cells.base.RecurrentCell`.
        reverse: process each sequence from its last valid step to its first.
        batch_first: ``x`` and ``y`` are ``(B, T, ·)`` instead of ``(T, B, ·)``.
        engine: ``"auto"`` (fastest engine that supports the configuration),
            ``"loop"`` (the reference), ``"native"`` (PyTorch's kernels) or
            ``"fused"`` (rnnkit's C++ recurrences with hand-written BPTT).
        learn_init: learn the initial state instead of starting from zeros.
        input_dropout, output_dropout: variational dropout on ``x`` and ``y``: one
            mask per sequence, the same at every step.
        state_dropout: variational dropout on ``h_{t-1}`` where it enters the step
            (Gal & Ghahramani 2016).
        dropconnect: drop entries of the recurrent weight matrix, one mask per forward
            pass (Merity et al. 2017's weight-dropped LSTM).
        checkpoint: gradient checkpointing through time for long sequences: ``True``
            recomputes the forward in segments of ``ceil(sqrt(T))`` steps during the
            backward (memory for the backward grows with ``sqrt(T)`` instead of ``T``,
            for one extra forward pass); an integer sets the steps per segment.

    With ``lengths`` (right padding), steps past a sequence's end emit zeros and the
    final state is the state at its last real step, as with ``pack_padded_sequence``.
    ``teacher`` (``(T, B, O)``, for cells with output feedback such as
    :class:`~rnnkit.cells.JordanCell`) gives the true output of each step; the next
    step is fed it instead of the model's own output.
    """

    def __init__(
        self,
        cell: RecurrentCell,
        reverse: bool = False,
        batch_first: bool = False,
        engine: str = "auto",
        learn_init: bool = False,
        input_dropout: float = 0.0,
        output_dropout: float = 0.0,
        state_dropout: float = 0.0,
        dropconnect: float = 0.0,
        checkpoint: bool | int = False,
    ) -> None:
        super().__init__()
        if not isinstance(cell, RecurrentCell):
            raise ValueError(f"expected an rnnkit cell, got {type(cell).__name__}")
        self.cell = cell
        self.reverse = bool(reverse)
        self.batch_first = bool(batch_first)
        self.engine = check_engine(engine)
        self.input_dropout = check_probability("input_dropout", input_dropout)
        self.output_dropout = check_probability("output_dropout", output_dropout)
        self.state_dropout = check_probability("state_dropout", state_dropout)
        self.dropconnect = check_probability("dropconnect", dropconnect)
        if self.dropconnect and not cell.recurrent_weights:
            raise ValueError(f"{type(cell).__name__} has no recurrent weights for dropconnect")
        if isinstance(checkpoint, bool) or (isinstance(checkpoint, int) and checkpoint >= 0):
            self.checkpoint = checkpoint
        else:
            raise ValueError(
                f"checkpoint must be True, False or a positive number of steps, got {checkpoint!r}"
            )
        self.learn_init = bool(learn_init)
        if self.learn_init:
            ref = next(cell.parameters())
            zeros = cell.init_state(1, device=ref.device, dtype=ref.dtype)
            self.init_params = nn.ParameterList(
                [nn.Parameter(z) for z in zeros if z.is_floating_point()]
            )

    @property
    def input_size(self) -> int:
        return self.cell.input_size

    @property
    def output_size(self) -> int:
        return self.cell.output_size

    def checked_state(self, state, batch: int, what: str) -> State | None:
        """``state`` (None passes through) checked against the cell's state shapes."""
        if state is None:
            return None
        return check_state(state, self.cell.state_shapes(), batch, what)

    def init_state(self, batch: int, *, device=None, dtype=None) -> State:
        """Zeros, or the learned initial state repeated over the batch."""
        zeros = self.cell.init_state(batch, device=device, dtype=dtype)
        if not self.learn_init:
            return zeros
        learned = iter(self.init_params)
        return tuple(
            next(learned).expand_as(z).to(z.dtype) if z.is_floating_point() else z for z in zeros
        )

    def forward(
        self,
        x: Tensor,
        state: State | Tensor | None = None,
        lengths: Tensor | None = None,
        teacher: Tensor | None = None,
    ) -> tuple[Tensor, State]:
        x = time_major(x, self.input_size, self.batch_first)  # (T, B, I)
        T, B = x.shape[:2]
        lengths = check_lengths(lengths, T, B)
        state = self.checked_state(state, B, "initial")
        if teacher is not None:
            teacher = time_major(teacher, self.output_size, self.batch_first)
            if teacher.shape[:2] != x.shape[:2]:
                raise ValueError(
                    f"expected teacher outputs for the same (T, B)={(T, B)} as the input, "
                    f"got {tuple(teacher.shape[:2])}"
                )
        y, final = self.run(x, state, lengths, teacher)
        return (y.transpose(0, 1) if self.batch_first else y), final

    def run(
        self,
        x: Tensor,
        state: State | None,
        lengths: Tensor | None,
        teacher: Tensor | None = None,
    ) -> tuple[Tensor, State]:
        """Time-major forward on checked inputs (what the stacking layers call)."""
        B = x.shape[1]
        if state is None:
            state = self.init_state(B, device=x.device, dtype=x.dtype)
        x = variational_dropout(x, self.input_dropout, self.training)
        state_mask = None
        if self.training and self.state_dropout:
            state_mask = dropout_mask(self.state_dropout, state[0].shape, state[0])  # (B, R)
        segment = segment_steps(self.checkpoint, x.shape[0]) if torch.is_grad_enabled() else 0
        if segment and teacher is not None:
            raise ValueError("checkpoint cannot be combined with teacher forcing")
        unroll = Unroll(x, state, lengths, self.reverse, state_mask, teacher, segment)
        engine = select_engine(self.engine, self.cell, unroll)
        masked = {}
        if self.training and self.dropconnect:
            masked = dropconnect_weights(self.cell, self.cell.recurrent_weights, self.dropconnect)

        def run(unroll: Unroll) -> tuple[Tensor, State]:
            # The dropped weights go in here, so a checkpoint's recomputation uses them too.
            with substituted(self.cell, masked):
                return engine.run(self.cell, unroll)

        y, final = run_in_segments(run, unroll, segment) if segment else run(unroll)
        return variational_dropout(y, self.output_dropout, self.training), final

    def extra_repr(self) -> str:
        options = [f"engine={self.engine!r}"]
        options += ["reverse=True"] * self.reverse + ["batch_first=True"] * self.batch_first
        for name in ("input_dropout", "output_dropout", "state_dropout", "dropconnect"):
            if getattr(self, name):
                options.append(f"{name}={getattr(self, name)}")
        return ", ".join(options)


def as_layer(layer) -> nn.Module:
    """A layer as given, or a bare cell wrapped in a forward :class:`Recurrent`."""
    if isinstance(layer, RecurrentCell):
        return Recurrent(layer)
    if not hasattr(layer, "run") or not hasattr(layer, "output_size"):
        raise ValueError(
            f"expected an rnnkit cell or layer (Recurrent, Bidirectional, Stacked), "
            f"got {type(layer).__name__}"
        )
    return layer


__all__ = ["Recurrent", "as_layer"]

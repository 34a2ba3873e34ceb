"""A model's recurrent stack rebuilt for export: cell steps on packed states, run by loops
that exporters keep dynamic in time.

A Python loop over ``T`` is unrolled (and ``T`` fixed) by every tracer, so the time
loop is one of two constructs that keep it a loop:

- ``"scan"``: ``torch._higher_order_ops.scan`` (``torch.export`` keeps it as one
  higher-order op, which the ONNX exporter writes as an ONNX ``Scan``);
- ``"script"``: a TorchScript-scripted loop (:class:`LoopRunner`), whose traced callers
  keep it as a loop.

Both run the cell's own step, so every cell the models build (lstm with or without
layer norm, gru, rnn, irnn, leaky) exports the same way, with the ``loop`` engine's
semantics: a row outside its sequence keeps its state and emits zeros, and a reverse
direction starts at each sequence's own last step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

try:  # private, but the op torch.export keeps as a loop
    from torch._higher_order_ops import scan
except ImportError:  # pragma: no cover
    scan = None

from rnnkit.cells import LSTMCell
from rnnkit.layers import Bidirectional, Recurrent, Stacked


class CellStep(nn.Module):
    """One step of a cell on a packed state: ``(x_t (B, I), s (B, S)) -> (y_t (B, O), s')``.

    The cell's state tuple sits side by side in ``s``: ``s = [s_0 | s_1 | ...]`` (an
    LSTM's ``[h | c]``), so every cell has a one-tensor state.
    """

    def __init__(self, cell: nn.Module) -> None:
        super().__init__()
        shapes = cell.state_shapes()
        if any(len(shape) != 1 for shape in shapes) or any(
            not dtype.is_floating_point for dtype in cell.state_dtypes(torch.float32)
        ):
            raise ValueError(f"{type(cell).__name__} has a state that cannot be exported")
        self.cell = cell
        self.sizes = [shape[0] for shape in shapes]
        self.names = ("h", "c") if isinstance(cell, LSTMCell) else ("h",)

    def forward(self, x: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        y, new = self.cell(x, tuple(s.split(self.sizes, dim=1)))
        return y, torch.cat(new, dim=1)  # (B, S)


class ScanRunner(nn.Module):
    """A :class:`CellStep` over a whole sequence with ``scan`` (exports as an ONNX ``Scan``).

    ``forward(x (T, B, I), valid (T, B) bool or None, s (B, S)) -> (y (T, B, O), s_T)``.
    """

    def __init__(self, step: CellStep, reverse: bool) -> None:
        super().__init__()
        if scan is None:
            raise ValueError(
                f"ONNX export needs torch's scan op (torch._higher_order_ops.scan), which "
                f"torch {torch.__version__} lacks; upgrade torch"
            )
        self.step = step
        self.reverse = reverse

    def forward(self, x: Tensor, valid: Tensor | None, s: Tensor) -> tuple[Tensor, Tensor]:
        step = self.step
        if valid is None:

            def body(carry, x_t):
                y, new = step(x_t, carry)
                return new, y

            s, y = scan(body, s, x, reverse=self.reverse)
            return y, s

        def masked(carry, inputs):
            x_t, valid_t = inputs
            y, new = step(x_t, carry)
            keep = valid_t.unsqueeze(1)  # (B, 1)
            return torch.where(keep, new, carry), torch.where(keep, y, torch.zeros_like(y))

        s, y = scan(masked, s, (x, valid), reverse=self.reverse)
        return y, s


class LoopRunner(nn.Module):
    """The same as :class:`ScanRunner` as a plain loop, written so TorchScript can script it."""

    def __init__(self, step: nn.Module, reverse: bool) -> None:
        super().__init__()
        self.step = step
        self.reverse = reverse

    def forward(self, x: Tensor, valid: Tensor | None, s: Tensor) -> tuple[Tensor, Tensor]:
        T = x.size(0)
        ys: list[Tensor] = []
        for i in range(T):
            t = T - 1 - i if self.reverse else i
            y, new = self.step(x[t], s)
            if valid is not None:
                keep = valid[t].unsqueeze(1)  # (B, 1)
                new = torch.where(keep, new, s)
                y = torch.where(keep, y, torch.zeros_like(y))
            s = new
            ys.append(y)
        if self.reverse:
            ys.reverse()
        return torch.stack(ys), s  # (T, B, O)


RUNNERS = {"scan": ScanRunner, "script": LoopRunner}


class StackRunner(nn.Module):
    """A model's :class:`~rnnkit.layers.Stacked` (eval mode) with export-friendly loops.

    One runner per layer and direction (``runners``), each with a packed state ``(B, S)``.
    ``forward(x (T, B, I), valid, states) -> (y (T, B, O), finals)`` runs the sequence;
    ``step(x_t (B, I), states) -> (y_t, states)`` one step of a one-way stack.
    """

    def __init__(self, stack: Stacked, loop: str) -> None:
        super().__init__()
        runner, runners, self.merges = RUNNERS[loop], [], []
        for layer in stack.layers:
            if isinstance(layer, Recurrent):
                parts, merge = [layer], None
            elif isinstance(layer, Bidirectional):
                parts, merge = [layer.fwd, layer.bwd], layer.merge
            else:
                raise ValueError(f"a {type(layer).__name__} layer cannot be exported")
            for part in parts:
                if part.learn_init:
                    raise ValueError("layers with a learned initial state cannot be exported")
                runners.append(runner(CellStep(part.cell), part.reverse))
            self.merges.append(merge)
        self.runners = nn.ModuleList(runners)
        self.bidirectional = any(m is not None for m in self.merges)
        first = runners[0].step
        if any(r.step.sizes != first.sizes for r in runners):
            raise ValueError("the layers' states differ in size; the stack cannot be exported")
        self.names, self.sizes, self.width = first.names, first.sizes, sum(first.sizes)

    def zeros(self, x: Tensor) -> list[Tensor]:
        """Zero packed states for the batch of ``x`` (batch on dim 1 for sequences)."""
        batch = x.shape[1] if x.dim() == 3 else x.shape[0]
        return [x.new_zeros(batch, self.width) for _ in self.runners]

    def forward(self, x: Tensor, valid: Tensor | None, states: list[Tensor]):
        finals, k = [], 0
        for merge in self.merges:
            if merge is None:
                x, final = self.runners[k](x, valid, states[k])
                finals.append(final)
                k += 1
                continue
            y_f, final_f = self.runners[k](x, valid, states[k])
            y_b, final_b = self.runners[k + 1](x, valid, states[k + 1])
            finals += [final_f, final_b]
            k += 2
            if merge == "concat":
                x = torch.cat([y_f, y_b], dim=-1)  # (T, B, O_f + O_b)
            elif merge == "sum":
                x = y_f + y_b
            elif merge == "mean":
                x = 0.5 * (y_f + y_b)
            else:
                x = y_f * y_b
        return x, finals

    def step(self, x: Tensor, states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        new = []
        for runner, s in zip(self.runners, states, strict=True):
            x, s = runner.step(x, s)
            new.append(s)
        return x, new

    # ---- the user's view of the state: one (L, B, size) tensor per state part -------

    def pack(self, parts) -> list[Tensor]:
        """``(h, c)`` each ``(L, B, size)`` -> one packed ``(B, S)`` state per layer."""
        return [torch.cat([p[k] for p in parts], dim=1) for k in range(len(self.runners))]

    def unpack(self, states: list[Tensor]) -> list[Tensor]:
        """One packed state per layer -> ``[h, c]``, each ``(L, B, size)``."""
        split = [s.split(self.sizes, dim=1) for s in states]
        return [torch.stack([parts[j] for parts in split]) for j in range(len(self.sizes))]


def valid_steps(lengths: Tensor, steps: int) -> Tensor:
    """``(T, B)`` bool: step ``t`` lies within sequence ``b`` (``t < lengths[b]``)."""
    return torch.arange(steps, device=lengths.device)[:, None] < lengths[None, :]


def script_loops(stack: StackRunner) -> None:
    """Make the :class:`LoopRunner` loops TorchScript: each step traced, each loop scripted."""
    for k, runner in enumerate(stack.runners):
        if not isinstance(runner, LoopRunner):
            raise ValueError("script_loops needs a stack built with loop='script'")
        step = runner.step
        width = sum(step.sizes)
        example = (torch.randn(2, step.cell.input_size), torch.randn(2, width))
        traced = torch.jit.trace(step, example)
        stack.runners[k] = torch.jit.script(LoopRunner(traced, runner.reverse))


__all__ = ["CellStep", "LoopRunner", "ScanRunner", "StackRunner", "script_loops", "valid_steps"]

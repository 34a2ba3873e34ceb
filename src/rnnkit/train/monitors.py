r"""Training-time monitors: gradient norms by parameter group, and gate saturation.

Gradient norms (every good step, from the gradients already there):

.. code-block:: text

    grad_norm/<group> = sqrt(sum over the group's parameters p of ||p.grad||^2)   # before clipping
    grad_norm_clipped = sqrt(sum over all parameters p of ||p.grad||^2)  # after clip_norm/value

so ``sum_g grad_norm/<g>^2 = grad_norm^2``. A parameter's group is its name up to the layer
index when it has a ``layers.K`` part (``rnn.layers.1.cell.weight_hh`` -> ``rnn.layers.1``),
else its first component (``embedding.weight`` -> ``embedding``).

Gate saturation (on log steps only, in a no-grad probe pass over the current batch): for
every recurrent layer whose cell has sigmoid gates (LSTM: input, forget, output; GRU:
reset, update), the fraction of gate activations with

.. code-block:: text

    gate < SATURATION_LOW (0.05)  or  gate > SATURATION_HIGH (0.95)

over the batch's real steps (padding after a sequence's end is left out), its rows and
units. The model runs its ordinary forward in eval mode (no dropout, no random draws, so a
resumed run stays exact) while each gated layer's input and initial state are recorded;
each such layer's cell is then stepped over its input through ``cell.gates`` (the method
its ``forward`` uses, so the equations are not repeated) and ``cell.from_gates``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from rnnkit.layers import Recurrent

SATURATION_LOW = 0.05
SATURATION_HIGH = 0.95
PROBE_STEPS = 16  # steps of each layer the probe steps through (Python, one call each)


def param_group(name: str) -> str:
    """The monitor group of a parameter name: up to ``layers.K``, else the first part."""
    parts = name.split(".")
    for k in range(len(parts) - 1):
        if parts[k] == "layers" and parts[k + 1].isdigit():
            return ".".join(parts[: k + 2])
    return parts[0]


def group_grad_norms(named_params: Iterable[tuple[str, nn.Parameter]]) -> dict[str, float]:
    """``{group: L2 norm of the group's gradients}`` over the parameters that have one."""
    groups: dict[str, list[Tensor]] = {}
    for name, p in named_params:
        if p.grad is not None:
            groups.setdefault(param_group(name), []).append(p.grad)
    if not groups:
        return {}
    squares = torch.stack(
        [
            torch.stack([torch.linalg.vector_norm(g.detach(), dtype=torch.float64) for g in grads])
            .square()
            .sum()
            for grads in groups.values()
        ]
    )  # (G,): one device sync for all groups
    return {name: math.sqrt(s) for name, s in zip(groups, squares.cpu().tolist(), strict=True)}


def total_grad_norm(params: Iterable[nn.Parameter]) -> float:
    """The global L2 norm of the gradients as they stand (after any clipping)."""
    grads = [p.grad.detach() for p in params if p.grad is not None]
    if not grads:
        return 0.0
    return float(nn.utils.get_total_norm(grads, 2.0))


def gated_layers(model: nn.Module) -> dict[str, Recurrent]:
    """``{module name: layer}`` for the model's recurrent layers whose cell has sigmoid gates."""
    return {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, Recurrent) and getattr(m.cell, "sigmoid_gates", None)
    }


@torch.no_grad()
def gate_saturation(
    model: nn.Module,
    forward: Callable[[], object],
    max_steps: int = PROBE_STEPS,
    *,
    combine: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, float]:
    """``{"gate_sat/<layer>/<gate>": fraction}`` for one probe pass of ``forward()``.

    ``forward`` runs the model on the current batch (its output is ignored). The model is
    put in eval mode for the pass and given back its mode afterwards; no random numbers
    are drawn. Each layer is stepped over the first ``max_steps`` steps it reads (a
    reverse layer: the batch's last ``max_steps`` time steps), which keeps the probe's
    cost to a few percent of training.

    ``combine`` maps the ``(K, 2)`` float64 counts (saturated values, values) of the K
    figures to the counts to divide, e.g. their sum over data-parallel processes, so the
    fractions are those of the whole batch.
    """
    layers = gated_layers(model)
    if not layers:
        return {}
    was_training = model.training
    model.eval()
    try:
        with _recording(layers) as inputs:
            forward()
        counts = {}
        for name, layer in layers.items():
            for x, state, lengths in inputs[name]:
                saturation = _layer_saturation(layer, x, state, lengths, max_steps)
                for gate, pair in saturation.items():
                    counts[f"gate_sat/{name}/{gate}"] = pair
    finally:
        model.train(was_training)
    if not counts:
        return {}
    table = torch.stack([torch.stack(pair) for pair in counts.values()])  # (K, 2)
    if combine is not None:
        table = combine(table)
    table = table.cpu().tolist()  # one device sync for all figures
    return {
        name: saturated / total if total else math.nan
        for name, (saturated, total) in zip(counts, table, strict=True)
    }


@contextmanager
def _recording(layers: dict[str, Recurrent]):
    """Record every ``run(x, state, lengths)`` call of ``layers`` (the stacks call ``run``)."""
    inputs: dict[str, list] = {name: [] for name in layers}

    def recorder(name: str, layer: Recurrent):
        run = type(layer).run.__get__(layer)

        def recorded(x, state, lengths, *args, **kwargs):
            inputs[name].append((x, state, lengths))
            return run(x, state, lengths, *args, **kwargs)

        return recorded

    try:
        for name, layer in layers.items():
            layer.run = recorder(name, layer)  # an instance attribute shadows the method
        yield inputs
    finally:
        for layer in layers.values():
            layer.__dict__.pop("run", None)


def _layer_saturation(
    layer: Recurrent, x: Tensor, state, lengths, max_steps: int
) -> dict[str, tuple[Tensor, Tensor]]:
    """Saturated and all values of each sigmoid gate of ``layer`` stepped over ``x`` (T, B, I).

    Both counts are float64 scalars on ``x``'s device.
    """
    cell = layer.cell
    T, B = x.shape[:2]
    if state is None:
        state = layer.init_state(B, device=x.device, dtype=x.dtype)
    valid = None
    if lengths is not None:
        steps = torch.arange(T, device=x.device)
        valid = steps[:, None] < lengths.to(x.device)[None, :]  # (T, B)
    saturated = {gate: x.new_zeros((), dtype=torch.float64) for gate in cell.sigmoid_gates}
    count = 0
    span = min(T, max_steps)
    for t in range(T - 1, T - 1 - span, -1) if layer.reverse else range(span):
        gates = cell.gates(x[t], state)
        _, new = cell.from_gates(gates, state)
        keep = None if valid is None else valid[t]  # (B,)
        for gate in cell.sigmoid_gates:
            g = gates[gate]  # (B, H)
            hit = (g < SATURATION_LOW) | (g > SATURATION_HIGH)
            if keep is not None:
                hit = hit[keep]
            saturated[gate] += hit.sum(dtype=torch.float64)
        units = gates[cell.sigmoid_gates[0]].shape[1]
        count += units * (B if keep is None else int(keep.sum()))
        if keep is None:
            state = new
        else:
            # Outside its sequence a row keeps its state, as the engines do.
            state = tuple(
                torch.where(keep.view(-1, *([1] * (n.dim() - 1))), n, s)
                for n, s in zip(new, state, strict=True)
            )
    total = x.new_tensor(float(count), dtype=torch.float64)
    return {gate: (s, total) for gate, s in saturated.items()}

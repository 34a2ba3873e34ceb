r"""``gradient_flow``: how far back in time the gradient of a user's model reaches.

For a loss ``L_t`` at every step and the state ``s_k`` of one recurrent layer,
backpropagation through time multiplies one-step Jacobians:

.. math::

    \frac{\partial L_t}{\partial s_k}
      = \frac{\partial L_t}{\partial s_t} \prod_{j=k}^{t-1} \frac{\partial s_{j+1}}{\partial s_j},
    \qquad
    \frac{\partial h_{j+1}}{\partial h_j} = \mathrm{diag}(f'(\mathrm{pre}_{j+1}))\,W_{hh}
    \ \text{(Elman)}

so ``‖∂L_t/∂s_k‖`` shrinks or grows roughly geometrically in the lag ``t - k``:
bounded by ``(λ₁γ)^{t-k}`` for an Elman cell (``λ₁`` = largest singular value of
``weight_hh``, ``γ`` = bound of ``|f'|``), while gated cells (LSTM, GRU) and leaky or
identity-initialised units can keep it near constant.

The contract. :func:`gradient_flow` copies the model (cast to ``dtype``, float64 by
default, in eval mode so no dropout), runs the layers below the analysed one as they
are, runs the analysed layer itself one cell call per step with a zero probe added to
its state after each step (:mod:`rnnkit.diagnostics.probe`), runs the layers above and
the head, and maps the per-step outputs to one scalar loss ``L_t`` per step. One
backward pass per loss step gives ``‖∂L_t/∂s_k‖`` for every ``k`` at once.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit.diagnostics.jacobians import step_jacobians
from rnnkit.diagnostics.parts import ModelParts, analysed_layer, merge, model_parts
from rnnkit.diagnostics.probe import ProbedRun, probed_run
from rnnkit.diagnostics.result import GradientFlow
from rnnkit.diagnostics.spectra import recurrent_spectrum
from rnnkit.layers import Bidirectional
from rnnkit.layers._checks import check_lengths

PAIRS = ("auto", "all", "last")
MAX_AUTO_PAIRS = 200  # pairs="auto": every (t, k) up to this many steps, else the last row

StepLoss = Callable[[Tensor, "Tensor | None", int], Tensor]


def gradient_flow(
    model,
    inputs: Tensor,
    targets: Tensor | None = None,
    loss: StepLoss | None = None,
    *,
    lengths=None,
    pairs: str = "auto",
    layer: int = 0,
    direction: str = "forward",
    batch_index: int = 0,
    dtype: torch.dtype = torch.float64,
) -> GradientFlow:
    """Measure ``‖∂L_t/∂s_k‖``, the one-step Jacobians and ``W_rec``'s spectrum.

    Args:
        model: a bare rnnkit cell; a ``Recurrent``, ``Bidirectional`` or ``Stacked``
            layer; or a task model with a ``.rnn`` layer (e.g. ``LanguageModel``: token
            ids go through ``model.embed``, outputs through ``model.head``).
        inputs: time-major ``(T, B, I)`` floats, or ``(T, B)`` int64 token ids for a
            model with an embedding; ``(B, T, ·)`` for a layer built with
            ``batch_first=True``.
        targets: one per step, laid out like ``inputs``: int64 ``(T, B)`` class ids or
            floats ``(T, B, O)``; None for none.
        loss: ``loss(outputs_t, targets_t, t) -> scalar tensor`` for step ``t``, with
            ``outputs_t`` ``(B', O)`` the model's outputs at step ``t`` and ``targets_t``
            its targets (None without targets); with ``lengths`` only the ``B'``
            sequences still running at ``t`` are passed. Default: cross-entropy (mean
            over the batch) for int64 targets, mean squared error for float targets,
            and, without targets, ``L_t`` = the sum of the outputs at step ``t``.
        lengths: ``(B,)`` valid steps per sequence (right padding); steps past the
            longest are dropped.
        pairs: ``"all"``: every ``‖∂L_t/∂s_k‖`` (``T`` backward passes; about 40 s for
            a 2-layer, 128-unit LSTM language model at ``T = 200``, ``B = 8`` on one
            core); ``"last"``: only ``t = T-1`` (one pass, 2.5 s there); ``"auto"``:
            all up to ``T = 200``, else the last row.
        layer: index of the analysed layer in the (flattened) stack; default the first.
        direction: ``"forward"`` or ``"backward"`` half of a ``Bidirectional`` layer.
        batch_index: the sequence whose trajectory gives ``jacobian_norms``.
        dtype: working precision of the copied model (float64 for accurate norms).

    Returns:
        a :class:`GradientFlow`; see its ``verdict``, ``summary()``, ``plot(path)``.

    Raises:
        ValueError: one line, for inputs, targets or options that do not fit the model.
    """
    if pairs not in PAIRS:
        raise ValueError(f"pairs={pairs!r} is not supported; expected one of {PAIRS}")
    if loss is not None and not callable(loss):
        raise ValueError(f"loss must be a callable loss(outputs_t, targets_t, t), got {loss!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch dtype, got {dtype!r}")
    parts = model_parts(model, dtype)
    analysed = analysed_layer(parts, layer, direction)
    layer_index = layer % len(parts.layers)
    x, targets, lengths = _checked_inputs(parts, inputs, targets, lengths, dtype)
    T, B = x.shape[:2]
    if isinstance(batch_index, bool) or not isinstance(batch_index, int):
        raise ValueError(f"batch_index must be an integer, got {batch_index!r}")
    if not 0 <= batch_index < B:
        raise ValueError(f"batch_index={batch_index} is out of range for a batch of {B}")
    valid = None if lengths is None else torch.arange(T)[:, None] < lengths[None, :]  # (T, B)
    valid_dev = None if valid is None else valid.to(x.device)

    with torch.no_grad():  # nothing below the analysed layer is differentiated
        for lower in parts.layers[:layer_index]:
            x, _ = lower.run(x, None, lengths)
    run = probed_run(analysed, x, valid_dev)
    outputs = _outputs_above(parts, layer_index, analysed, run, x, lengths)
    step_loss, loss_name = _step_loss(loss, outputs, targets)
    losses = [_loss_at(step_loss, outputs, targets, valid_dev, t) for t in range(T)]

    all_pairs = pairs == "all" or (pairs == "auto" and T <= MAX_AUTO_PAIRS)
    rows = list(range(T)) if all_pairs else [T - 1]
    proc_losses = [losses[t] for t in run.times.tolist()]  # processing order
    norms = _state_grad_norms(proc_losses, rows, run.probes)  # (len(rows), T)
    for r, i in enumerate(rows):
        norms[r, i + 1 :] = np.nan  # the diagnostic is about gradients going back in time
    last_row = norms[-1].copy()
    grad_norms = norms if all_pairs else None

    spectrum = recurrent_spectrum(analysed.cell)
    reasons = dict(spectrum.reasons)
    jac_norms = _jacobian_norms(analysed, x, run, batch_index)
    if valid is not None:
        outside = ~valid[run.times[1:], batch_index].numpy()  # (T-1,)
        if outside.any():
            jac_norms[outside] = np.nan
            reasons["jacobian_norms"] = f"NaN past sequence {batch_index}'s length"
    cell = analysed.cell
    return GradientFlow(
        last_row=last_row,
        grad_norms=grad_norms,
        jacobian_norms=jac_norms,
        singular_values=spectrum.singular_values,
        eigenvalues=spectrum.eigenvalues,
        spectral_radius=spectrum.spectral_radius,
        max_singular_value=spectrum.max_singular_value,
        gamma=spectrum.gamma,
        bound=spectrum.bound,
        times=run.times.numpy(),
        cell=f"{type(cell).__name__}({cell.extra_repr()})",
        layer=layer_index,
        direction=direction,
        loss=loss_name,
        batch_size=B,
        batch_index=batch_index,
        state_size=sum(int(np.prod(run.probes[n].shape[2:])) for n in range(len(run.probes))),
        reasons=reasons,
    )


# ---- inputs ---------------------------------------------------------------------------


def _checked_inputs(parts: ModelParts, inputs, targets, lengths, dtype):
    """Time-major float inputs (T, B, I), targets (T, B, ...) or None, lengths or None."""
    layout = "(B, T, ...)" if parts.batch_first else "(T, B, ...)"
    if not isinstance(inputs, Tensor):
        raise ValueError(f"expected inputs as a tensor {layout}, got {type(inputs).__name__}")
    ref = next(parts.layers[0].parameters(), None)
    device = ref.device if ref is not None else inputs.device
    inputs = inputs.to(device)  # the copied model's device
    if parts.batch_first and inputs.dim() >= 2:
        inputs = inputs.transpose(0, 1)
    width = parts.input_size
    if inputs.is_floating_point():
        if inputs.dim() != 3 or inputs.shape[-1] != width:
            shape = "(B, T, I)" if parts.batch_first else "(T, B, I)"
            raise ValueError(
                f"expected inputs of shape {shape} with I={width}, got {tuple(inputs.shape)}"
            )
        x = inputs.to(dtype)
    elif inputs.dtype == torch.long and parts.embed is not None:
        if inputs.dim() != 2:
            raise ValueError(f"expected token ids of shape (T, B), got shape {tuple(inputs.shape)}")
        if parts.vocab_size is not None and inputs.numel():
            low, high = int(inputs.min()), int(inputs.max())
            if low < 0 or high >= parts.vocab_size:
                raise ValueError(
                    f"token ids must lie in 0..{parts.vocab_size - 1}, got {low}..{high}"
                )
        x = None
    else:
        what = "floats (T, B, I) or int64 token ids (T, B)" if parts.embed else "floats"
        raise ValueError(f"expected inputs as {what}, got dtype {inputs.dtype}")
    T, B = inputs.shape[:2]
    if T < 2 or B < 1:
        raise ValueError(
            f"gradient_flow needs at least 2 steps and 1 sequence, got (T, B)={(T, B)}"
        )
    if targets is not None:
        if not isinstance(targets, Tensor):
            raise ValueError(f"expected targets as a tensor {layout}, got {type(targets).__name__}")
        if parts.batch_first and targets.dim() >= 2:
            targets = targets.transpose(0, 1)
        if targets.dim() < 2 or targets.shape[0] != T or targets.shape[1] != B:
            raise ValueError(
                f"expected one target per step and sequence, (T, B)={(T, B)} first, "
                f"got targets of shape {tuple(targets.shape)}"
            )
    lengths = check_lengths(lengths, T, B)
    if lengths is not None:
        longest = int(lengths.max())  # steps past every sequence's end carry nothing
        inputs, targets = inputs[:longest], None if targets is None else targets[:longest]
        if longest < 2:
            raise ValueError("gradient_flow needs at least 2 steps; every length is 1")
        lengths = check_lengths(lengths, longest, B)
    if x is None:
        x = parts.embed(inputs).to(dtype)  # (T, B, I)
        if x.dim() != 3 or x.shape[-1] != width:
            raise ValueError(f"the model's embedding gives {tuple(x.shape)}, not (T, B, {width})")
    else:
        x = x[: inputs.shape[0]]
    if targets is not None and targets.is_floating_point():
        targets = targets.to(device=x.device, dtype=dtype)
    elif targets is not None:
        targets = targets.to(x.device)
    return x, targets, lengths


# ---- the model above the analysed layer -----------------------------------------------


def _outputs_above(parts: ModelParts, index: int, analysed, run: ProbedRun, x, lengths):
    """The model's per-step outputs (T, B, ·) from the analysed layer's probed outputs."""
    y = run.outputs  # (T, B, O)
    chosen = parts.layers[index]
    if isinstance(chosen, Bidirectional):
        forward = analysed is chosen.fwd
        other = chosen.bwd if forward else chosen.fwd
        with torch.no_grad():  # the other direction does not see the probed state
            y_other, _ = other.run(x, None, lengths)
        y = merge(chosen, y, y_other) if forward else merge(chosen, y_other, y)
    for upper in parts.layers[index + 1 :]:
        y, _ = upper.run(y, None, lengths)
    return parts.head(y) if parts.head is not None else y


# ---- the per-step loss ----------------------------------------------------------------


def _step_loss(loss, outputs: Tensor, targets: Tensor | None) -> tuple[StepLoss, str]:
    """The loss for one step, and its name for the summary."""
    if loss is not None:
        return loss, f"custom ({getattr(loss, '__name__', type(loss).__name__)})"
    if targets is None:
        return (lambda out, _tgt, _t: out.sum()), "sum of the outputs at each step"
    if targets.is_floating_point():
        if targets.shape != outputs.shape:
            raise ValueError(
                f"float targets must match the per-step outputs {tuple(outputs.shape)} "
                f"for the default mean squared error, got {tuple(targets.shape)}"
            )
        return (lambda out, tgt, _t: nn.functional.mse_loss(out, tgt)), "mean squared error"
    if targets.dtype != torch.long or targets.dim() != 2 or outputs.dim() != 3:
        raise ValueError(
            f"integer targets must be int64 class ids (T, B) for per-step logits (T, B, C); "
            f"got targets {tuple(targets.shape)} {targets.dtype}, outputs {tuple(outputs.shape)}"
        )
    classes = outputs.shape[-1]
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= classes):
        raise ValueError(f"target ids must lie in 0..{classes - 1} (the outputs' classes)")
    return (lambda out, tgt, _t: nn.functional.cross_entropy(out, tgt)), "cross-entropy"


def _loss_at(step_loss: StepLoss, outputs, targets, valid, t: int) -> Tensor:
    out_t = outputs[t]  # (B, O)
    tgt_t = None if targets is None else targets[t]
    if valid is not None:  # only the sequences still running at step t
        out_t = out_t[valid[t]]
        tgt_t = None if tgt_t is None else tgt_t[valid[t]]
    value = step_loss(out_t, tgt_t, t)
    if not isinstance(value, Tensor) or value.numel() != 1:
        got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"loss must return a scalar tensor for each step, got {got} at step {t}")
    return value.reshape(())


# ---- gradients and Jacobians ----------------------------------------------------------


def _state_grad_norms(losses: list[Tensor], rows: list[int], probes: list[Tensor]) -> np.ndarray:
    """``‖∂losses[i]/∂s_k‖`` for ``i`` in ``rows`` and every processing step ``k`` (R, T).

    One backward pass per row. (Autograd's ``is_grads_batched`` was tried: its vmapped
    backward through the step-by-step graph ran 3-8 times slower on the CPU.)
    """
    T = probes[0].shape[0]
    out = np.zeros((len(rows), T))
    for r, i in enumerate(rows):
        if not losses[i].requires_grad:
            continue  # this loss does not depend on the state: zero gradients
        grads = torch.autograd.grad(losses[i], probes, retain_graph=True, allow_unused=True)
        flat = torch.cat(
            [
                (g if g is not None else torch.zeros_like(p)).reshape(T, -1)
                for g, p in zip(grads, probes, strict=True)
            ],
            1,
        )  # (T, B * S)
        out[r] = _row_norms(flat)
    return out


def _row_norms(flat: Tensor) -> np.ndarray:
    """Euclidean norm of each row, scaled by its largest entry so squares cannot overflow."""
    scale = flat.abs().amax(1, keepdim=True)  # (T, 1)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    norms = (flat / safe).pow(2).sum(1).sqrt() * scale.squeeze(1)
    return norms.detach().cpu().numpy().astype(np.float64)


def _jacobian_norms(analysed, x: Tensor, run: ProbedRun, batch_index: int) -> np.ndarray:
    """Spectral norms of the one-step Jacobians (T-1,); NaN where a Jacobian is not finite."""
    jac = step_jacobians(analysed.cell, x, run, batch_index)  # (T-1, S, S)
    norms = np.full(jac.shape[0], np.nan)
    finite = torch.isfinite(jac).flatten(1).all(1)  # (T-1,)
    if finite.any():
        values = torch.linalg.matrix_norm(jac[finite], ord=2)
        norms[finite.cpu().numpy()] = values.detach().cpu().numpy()
    return norms

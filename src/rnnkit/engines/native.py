"""PyTorch's own recurrent kernels (oneDNN on CPU, cuDNN on GPU) for the plain cells.

Applies when a cell computes exactly what ``torch.nn.RNN`` / ``LSTM`` / ``GRU``
computes: Elman with tanh or relu, LSTM without peepholes or layer norm (projection
allowed), GRU with the reset gate after the product. Initialisation options such as
``forget_bias`` or ``init="identity"`` change only the starting weights, so they run
here too.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnkit.cells.base import RecurrentCell, State
from rnnkit.cells.elman import ElmanCell
from rnnkit.cells.gru import GRUCell
from rnnkit.cells.lstm import LSTMCell
from rnnkit.engines.base import Engine, Unroll, reverse_padded


def native_kernel(cell: RecurrentCell):
    """The torch kernel computing ``cell`` exactly, or None."""
    kind = type(cell)
    if kind is LSTMCell and not cell.peephole and not cell.layer_norm:
        return torch.lstm
    if kind is GRUCell and cell.reset == "after":
        return torch.gru
    if kind is ElmanCell and cell.nonlinearity in ("tanh", "relu"):
        return torch.rnn_tanh if cell.nonlinearity == "tanh" else torch.rnn_relu
    return None


class NativeEngine(Engine):
    """One call of PyTorch's fused recurrent kernel per layer and direction."""

    name = "native"

    def unsupported(self, cell: RecurrentCell, unroll: Unroll) -> str | None:
        if native_kernel(cell) is None:
            return f"torch has no kernel for {cell!r}"
        if unroll.state_mask is not None:
            return "recurrent (state) dropout needs a per-step mask torch's kernels lack"
        if unroll.teacher is not None:
            return "teacher forcing is not available in torch's kernels"
        if unroll.checkpoint:
            return "checkpointed segments may hold ended sequences, which torch's kernels refuse"
        return None

    def run(self, cell: RecurrentCell, unroll: Unroll) -> tuple[Tensor, State]:
        kernel = native_kernel(cell)
        x, lengths = unroll.x, unroll.lengths
        if unroll.reverse:
            # torch runs one direction only: reverse each sequence within its length.
            x = reverse_padded(x, lengths)
        params = [cell.weight_ih, cell.weight_hh]
        if cell.bias:
            params += [cell.bias_ih, cell.bias_hh]
        if getattr(cell, "proj_size", 0):
            params.append(cell.weight_hr)
        is_lstm = kernel is torch.lstm
        # cuDNN keeps what its backward needs only in training mode; dropout is 0 here,
        # so the flag changes nothing else.
        train = torch.is_grad_enabled()
        hx = tuple(s.unsqueeze(0) for s in unroll.state)  # each (1, B, ·)
        hx = hx if is_lstm else hx[0]

        if lengths is None:
            result = kernel(x, hx, params, cell.bias, 1, 0.0, train, False, False)
            y = result[0]
            final = tuple(h.squeeze(0) for h in result[1:])
        else:
            packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
            order, unorder = packed.sorted_indices, packed.unsorted_indices
            hx = tuple(h[:, order] for h in hx) if is_lstm else hx[:, order]
            result = kernel(packed.data, packed.batch_sizes, hx, params, cell.bias, 1, 0.0,
                            train, False)  # fmt: skip
            y, _ = pad_packed_sequence(packed._replace(data=result[0]), total_length=x.shape[0])
            final = tuple(h.squeeze(0)[unorder] for h in result[1:])
        if unroll.reverse:
            y = reverse_padded(y, lengths)
        return y, final

"""Drop-in twins of ``torch.nn.RNN``, ``LSTM`` and ``GRU`` built from rnnkit cells.

Same constructor, same parameter names (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...),
same forward signature and return values (``PackedSequence`` included), so a
``torch.nn`` state dict loads unchanged. Keyword-only extras switch on what
``torch.nn`` lacks: peepholes, layer norm, forget bias, leaky units, variational and
recurrent dropout, DropConnect, and the engine.

The parameters are registered on the module itself under PyTorch's flat names; the
cells that compute with them are kept outside the module tree and pointed at those
parameters before every forward pass, so ``.to()``, ``load_state_dict`` and
``functional_call`` all act on the names users know.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnkit.cells import ElmanCell, GRUCell, LeakyCell, LSTMCell
from rnnkit.cells.base import RecurrentCell, check_positive
from rnnkit.layers import Bidirectional, Recurrent, Stacked
from rnnkit.layers.regularizers import check_probability


class _RNNBase(nn.Module):
    """Shared machinery: build the cells, name their parameters, map states."""

    mode = ""
    extras: tuple[str, ...] = ()  # cell options this class accepts as keywords

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device=None,
        dtype=None,
        *,
        engine: str = "auto",
        variational_dropout: bool = False,
        state_dropout: float = 0.0,
        dropconnect: float = 0.0,
        **cell_options,
    ) -> None:
        super().__init__()
        unknown = sorted(set(cell_options) - set(self.extras))
        if unknown:
            raise ValueError(
                f"{type(self).__name__} got unknown option(s) {', '.join(unknown)}; "
                f"its extra options are {', '.join(self.extras)}"
            )
        self.input_size = check_positive("input_size", input_size)
        self.hidden_size = check_positive("hidden_size", hidden_size)
        self.num_layers = check_positive("num_layers", num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = check_probability("dropout", dropout)
        self.bidirectional = bool(bidirectional)
        self.proj_size = int(proj_size)
        if self.proj_size and self.mode != "LSTM":
            raise ValueError("proj_size is only supported by LSTM")
        directions = 2 if self.bidirectional else 1
        out_size = self.proj_size or self.hidden_size
        kw = {"device": device, "dtype": dtype}

        self._links: list[tuple[RecurrentCell, str, str]] = []  # (cell, its name, our name)
        layers = []
        for k in range(self.num_layers):
            layer_input = self.input_size if k == 0 else out_size * directions
            runs = []
            for d in range(directions):
                cell = self._make_cell(layer_input, self.hidden_size, self.bias, cell_options, kw)
                self._adopt(cell, f"_l{k}" + ("_reverse" if d else ""))
                runs.append(
                    Recurrent(
                        cell,
                        reverse=bool(d),
                        engine=engine,
                        state_dropout=state_dropout,
                        dropconnect=dropconnect,
                    )
                )
            layers.append(Bidirectional(*runs) if directions == 2 else runs[0])
        stack = Stacked(layers, dropout=self.dropout, variational=variational_dropout)
        # Kept out of the module tree: the parameters live on self under torch's names.
        self.__dict__["_stack"] = stack

    def _make_cell(self, input_size, hidden_size, bias, options, kw) -> RecurrentCell:
        raise NotImplementedError

    def _adopt(self, cell: RecurrentCell, suffix: str) -> None:
        """Register the cell's parameters and buffers here as ``<name><suffix>``."""
        for name, param in cell.named_parameters(recurse=False):
            self.register_parameter(name + suffix, param)
            self._links.append((cell, name, name + suffix))
        for name, buf in cell.named_buffers(recurse=False):
            self.register_buffer(name + suffix, buf)
            self._links.append((cell, name, name + suffix))

    def _sync(self) -> None:
        """Point the cells at this module's current tensors (after .to(), swaps, ...)."""
        for cell, name, ours in self._links:
            value = getattr(self, ours)
            if name in cell._parameters:
                cell._parameters[name] = value
            else:
                cell._buffers[name] = value
        if self._stack.training != self.training:
            self._stack.train(self.training)

    def flatten_parameters(self) -> None:
        """Accepted for compatibility with ``torch.nn``; nothing to flatten here."""

    def _state_from_hx(self, hx, batch: int, like: Tensor):
        """torch's ``(num_layers * D, B, ·)`` tensors -> the stack's nested state."""
        directions = 2 if self.bidirectional else 1
        if self.mode != "LSTM" and not isinstance(hx, Tensor):
            raise ValueError(
                f"expected hx as one tensor h_0 for {self.mode}, got {type(hx).__name__}"
            )
        hs = hx if isinstance(hx, tuple) else (hx,)
        out_size = self.proj_size or self.hidden_size
        sizes = (out_size, self.hidden_size)[: len(hs)]
        for name, h, size in zip(("h_0", "c_0")[: len(hs)], hs, sizes, strict=True):
            want = (self.num_layers * directions, batch, size)
            if not isinstance(h, Tensor) or tuple(h.shape) != want:
                got = tuple(h.shape) if isinstance(h, Tensor) else type(h).__name__
                raise ValueError(f"expected {name} of shape {want}, got {got}")
        per_layer = []
        for k in range(self.num_layers):
            runs = [tuple(h[k * directions + d] for h in hs) for d in range(directions)]
            per_layer.append(tuple(runs) if directions == 2 else runs[0])
        return tuple(per_layer)

    def _hx_from_state(self, finals):
        """The stack's nested final state -> torch's ``(num_layers * D, B, ·)`` tensors."""
        runs = []
        for final in finals:
            runs.extend(final if self.bidirectional else (final,))
        parts = len(runs[0])
        stacked = tuple(torch.stack([run[i] for run in runs]) for i in range(parts))
        return stacked if self.mode == "LSTM" else stacked[0]

    def forward(self, input, hx=None):
        self._sync()
        packed = isinstance(input, PackedSequence)
        lengths, unbatched = None, False
        if packed:
            x, lengths = pad_packed_sequence(input)  # (T, B, I), original batch order
            full_lengths = lengths
        else:
            x = input
            if not isinstance(x, Tensor) or x.dim() not in (2, 3):
                shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
                raise ValueError(
                    f"expected input of shape (T, B, {self.input_size}) or "
                    f"(T, {self.input_size}) unbatched, got {shape}"
                )
            unbatched = x.dim() == 2
            if unbatched:
                x = x.unsqueeze(1)
                if hx is not None:
                    hx = (
                        tuple(h.unsqueeze(1) for h in hx)
                        if isinstance(hx, tuple)
                        else hx.unsqueeze(1)
                    )
            elif self.batch_first:
                x = x.transpose(0, 1)
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(
                f"expected {self.input_size} input features, got input of shape {tuple(x.shape)}"
            )
        if self.mode == "LSTM" and hx is not None and not (isinstance(hx, tuple) and len(hx) == 2):
            raise ValueError("expected hx as a tuple (h_0, c_0) for LSTM")
        state = None if hx is None else self._state_from_hx(hx, x.shape[1], x)
        lengths = None if lengths is None or int(lengths.min()) == x.shape[0] else lengths
        y, finals = self._stack.run(x, state, lengths)  # (T, B, D * out)
        h_n = self._hx_from_state(finals)

        if packed:
            order = input.sorted_indices
            y_sorted = y if order is None else y[:, order]
            lens = full_lengths if order is None else full_lengths[order.cpu()]
            out = pack_padded_sequence(y_sorted, lens, enforce_sorted=True)
            output = input._replace(data=out.data)
        elif unbatched:
            output = y.squeeze(1)
            h_n = tuple(h.squeeze(1) for h in h_n) if isinstance(h_n, tuple) else h_n.squeeze(1)
        else:
            output = y.transpose(0, 1) if self.batch_first else y
        return output, h_n

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        for name in ("batch_first", "bidirectional"):
            if getattr(self, name):
                s += f", {name}=True"
        if not self.bias:
            s += ", bias=False"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        return s


class RNN(_RNNBase):
    """Elman RNN, a drop-in ``torch.nn.RNN``.

    Extras: ``nonlinearity="sigmoid"``; ``init="orthogonal"|"identity"`` for
    ``weight_hh`` (``nonlinearity="relu", init="identity"`` is the IRNN); ``alpha``
    (and ``learn_alpha=True``) turns the units into leaky integrators
    (:class:`~rnnkit.cells.LeakyCell`).
    """

    mode = "RNN"
    extras = ("init", "alpha", "learn_alpha")

    def __init__(self, *args, nonlinearity: str = "tanh", **kwargs) -> None:
        # torch.nn.RNN takes nonlinearity as its fourth positional argument.
        if len(args) >= 4 and isinstance(args[3], str):
            nonlinearity, args = args[3], args[:3] + args[4:]
        self.nonlinearity = nonlinearity
        super().__init__(*args, **kwargs)

    def _make_cell(self, input_size, hidden_size, bias, options, kw):
        options = dict(options)
        if "alpha" in options or "learn_alpha" in options:
            return LeakyCell(
                input_size, hidden_size, nonlinearity=self.nonlinearity, bias=bias, **options, **kw
            )
        return ElmanCell(input_size, hidden_size, self.nonlinearity, bias, **options, **kw)


class LSTM(_RNNBase):
    """LSTM, a drop-in ``torch.nn.LSTM``.

    Extras: ``forget_bias`` (added to the forget gate's bias at initialisation;
    default 0, i.e. torch's initialisation), ``peephole=True``, ``layer_norm=True``.
    """

    mode = "LSTM"
    extras = ("forget_bias", "peephole", "layer_norm")

    def _make_cell(self, input_size, hidden_size, bias, options, kw):
        options = {"forget_bias": 0.0, **options}
        return LSTMCell(input_size, hidden_size, bias, proj_size=self.proj_size, **options, **kw)


class GRU(_RNNBase):
    """GRU, a drop-in ``torch.nn.GRU``. Extra: ``reset="before"`` (Cho et al. 2014)."""

    mode = "GRU"
    extras = ("reset",)

    def _make_cell(self, input_size, hidden_size, bias, options, kw):
        return GRUCell(input_size, hidden_size, bias, **options, **kw)

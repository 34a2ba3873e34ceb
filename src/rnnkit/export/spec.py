"""What an exported form reads and writes: named tensors with symbolic batch and time axes.

An :class:`ExportForm` is an ``nn.Module`` whose ``forward(*inputs)`` takes and returns
flat tuples of tensors, described by :class:`TensorSpec` lists. The same lists name the
ONNX inputs and outputs, give the exporter its dynamic axes (``"B"``, ``"T"``), make
example inputs for tracing and tests, and fill the JSON sidecar.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

DIMS = ("B", "T")  # batch and time: the axes an exported form leaves free
DTYPES = {"float32": torch.float32, "int64": torch.int64}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: ``shape`` holds ints and the symbolic axes ``"B"`` / ``"T"``.

    ``kind`` says how example values are drawn: ``"float"`` (standard normal),
    ``"ids"`` (integers ``0..high-1``), ``"lengths"`` (integers ``1..T``), ``"zeros"``
    (a state that must start at zero, such as a running count), ``"positive"``
    (uniform in ``[0.5, 1.5)``, e.g. a standard deviation).
    """

    name: str
    shape: tuple
    dtype: str = "float32"
    doc: str = ""
    kind: str = "float"
    high: int = 0  # ids: the number of distinct values

    def concrete(self, batch: int, steps: int) -> tuple[int, ...]:
        sizes = {"B": batch, "T": steps}
        return tuple(sizes.get(d, d) for d in self.shape)

    def sample(self, batch: int, steps: int, generator: torch.Generator) -> Tensor:
        """A random example of this tensor for ``batch`` sequences of ``steps`` steps."""
        shape = self.concrete(batch, steps)
        if self.kind == "ids":
            return torch.randint(0, self.high, shape, generator=generator)
        if self.kind == "lengths":
            return torch.randint(1, steps + 1, shape, generator=generator)
        if self.kind == "positive":
            return 0.5 + torch.rand(shape, generator=generator, dtype=DTYPES[self.dtype])
        if self.kind == "zeros":
            return torch.zeros(shape, dtype=DTYPES[self.dtype])
        return torch.randn(shape, generator=generator, dtype=DTYPES[self.dtype])

    def to_dict(self) -> dict:
        out = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.doc:
            out["doc"] = self.doc
        return out


class ExportForm(nn.Module):
    """Base of the exported forms: ``forward(*inputs) -> tuple`` as ``inputs``/``outputs`` say.

    ``state`` pairs the names of state inputs with the outputs that carry them on
    (``[("h", "h_out"), ...]``): feed each output back as its input on the next call,
    starting from zeros.
    """

    form = ""  # "sequence" or "step"
    notes = ""  # what a caller must know beyond the shapes (for the sidecar)
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    state: list[tuple[str, str]]

    def example_inputs(self, batch: int = 3, steps: int = 5, seed: int = 0) -> tuple:
        """Random inputs for ``batch`` sequences of ``steps`` steps (the time axis if any)."""
        generator = torch.Generator().manual_seed(seed)
        return tuple(spec.sample(batch, steps, generator) for spec in self.inputs)

    def describe(self) -> dict:
        """The form's inputs, outputs and state pairs as JSON-ready data."""
        if self.form == "step":
            usage = (
                "call once per step; start every state input at zeros and pass each state "
                "output back as the input of the same name without '_out' on the next call"
            )
        elif self.state:
            usage = (
                "call with whole sequences; the state inputs start at zeros, and passing the "
                "state outputs back in continues the same sequences"
            )
        else:
            usage = "call with whole sequences"
        return {
            "inputs": [spec.to_dict() for spec in self.inputs],
            "outputs": [spec.to_dict() for spec in self.outputs],
            "state": [{"input": i, "output": o, "init": "zeros"} for i, o in self.state],
            "usage": usage + (f"; {self.notes}" if self.notes else ""),
        }


STATE_DOCS = {"h": "hidden state of each layer", "c": "LSTM cell state of each layer"}


def state_specs(names, sizes, num_layers: int) -> tuple[list, list, list]:
    """Specs of stacked per-layer states ``(num_layers, B, size)``: inputs, outputs, pairs."""
    ins = [
        TensorSpec(n, (num_layers, "B", s), doc=STATE_DOCS.get(n, "state"))
        for n, s in zip(names, sizes, strict=True)
    ]
    outs = [TensorSpec(f"{s.name}_out", s.shape, doc=s.doc + ", updated") for s in ins]
    return ins, outs, [(n, f"{n}_out") for n in names]


__all__ = ["DIMS", "ExportForm", "TensorSpec", "state_specs"]

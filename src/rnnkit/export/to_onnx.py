"""An :class:`~rnnkit.export.spec.ExportForm` written as one ONNX file.

``torch.onnx.export(..., dynamo=True)`` captures the form with ``torch.export``; the
batch and time axes are ``torch.export.Dim`` objects, and the time loop is a ``scan``
(see :mod:`rnnkit.export.steps`) that becomes an ONNX ``Scan``, so one file serves every
sequence length. (torch's own ``nn.LSTM`` exported this way fixes the time length in a
``Reshape``, which is why the native kernels are not used.)
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import warnings
from pathlib import Path

import torch

from rnnkit.atomic import atomic_write_with
from rnnkit.export.spec import ExportForm


@contextlib.contextmanager
def _quiet():
    """The exporter's progress lines, warnings and log records kept off the user's terminal."""
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def _as_signature(form: ExportForm, shapes: tuple) -> tuple:
    """``shapes`` (one per input) nested as ``forward``'s parameters: ``*rest`` as one tuple."""
    params = inspect.signature(form.forward).parameters.values()
    fixed = sum(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params)
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return (*shapes[:fixed], shapes[fixed:])
    return shapes


def export_onnx(form: ExportForm, path: str | Path) -> dict:
    """Write ``form`` to ``path`` (atomically) with dynamic batch and time axes.

    Returns ``{"opset": N}``, the ONNX operator set the file uses.
    """
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch.onnx's dynamo exporter writes through it)
    except ImportError:
        raise ValueError(
            "ONNX export needs the onnx and onnxscript packages: pip install 'rnnkit[export]'"
        ) from None
    dims = {"B": torch.export.Dim("B", min=1), "T": torch.export.Dim("T", min=1)}
    shapes = tuple(
        {axis: dims[d] for axis, d in enumerate(spec.shape) if d in dims} for spec in form.inputs
    )
    form.requires_grad_(False)  # autograd through scan trips the exporter; nothing trains here
    with torch.no_grad(), _quiet():
        program = torch.onnx.export(
            form,
            form.example_inputs(batch=3, steps=5),  # not 0 or 1: torch.export would fix those
            dynamo=True,
            dynamic_shapes=_as_signature(form, shapes),
            input_names=[spec.name for spec in form.inputs],
            output_names=[spec.name for spec in form.outputs],
            verbose=False,
        )
    onnx.checker.check_model(program.model_proto)  # e.g. a name defined twice: refuse, not write
    atomic_write_with(path, lambda tmp: program.save(tmp, external_data=False))
    opset = next((o.version for o in program.model_proto.opset_import if o.domain == ""), None)
    return {"opset": opset}


__all__ = ["export_onnx"]

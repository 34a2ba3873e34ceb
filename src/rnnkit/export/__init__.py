"""Trained models as ONNX or TorchScript files for inference outside rnnkit.

Every model has two forms (:mod:`rnnkit.export.spec`):

- **sequence**: whole sequences in, the model's usual outputs out, with free batch and
  time axes (language model: logits of every step and the state; classifier: class
  logits of a padded batch with its lengths; forecaster: the forecast);
- **step**: one step and the state in, the outputs and the new state out, for
  streaming (not for bidirectional classifiers).

Files: the sequence form at ``path`` (``model.onnx`` / ``model.pt`` in a run), the step
form beside it with ``_step`` before the suffix, and a JSON sidecar ``<first file>.json``
that describes both. :func:`export_model` writes them; ``rnnkit export`` is its command.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from rnnkit.export.classifier import ClassifierSequence, ClassifierStep
from rnnkit.export.forecaster import ForecasterSequence, ForecasterStep
from rnnkit.export.lm import LMSequence, LMStep
from rnnkit.export.sidecar import relative, sidecar_dict, write_sidecar
from rnnkit.export.spec import ExportForm, TensorSpec
from rnnkit.export.to_onnx import export_onnx
from rnnkit.export.to_torchscript import export_torchscript
from rnnkit.models import Forecaster, LanguageModel, SequenceClassifier

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
FORMS = ("sequence", "step")
LOOPS = {"onnx": "scan", "torchscript": "script"}
_WRITERS = {"onnx": export_onnx, "torchscript": export_torchscript}
_BUILDERS = {
    LanguageModel: (LMSequence, LMStep),
    SequenceClassifier: (ClassifierSequence, ClassifierStep),
    Forecaster: (ForecasterSequence, ForecasterStep),
}


def build_form(model: nn.Module, form: str, loop: str = "scan") -> ExportForm:
    """The ``form`` (``"sequence"`` or ``"step"``) of a task model, around a float32 CPU copy.

    ``loop`` is how a sequence form runs time: ``"scan"`` (for ONNX and eager use) or
    ``"script"`` (for TorchScript). The caller's model is left as it was.
    """
    builders = _BUILDERS.get(type(model))
    if builders is None:
        raise ValueError(f"cannot export a {type(model).__name__}; expected one of the task models")
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; choose sequence, step or both")
    copied = copy.deepcopy(model).to(device="cpu", dtype=torch.float32).eval()
    if form == "sequence":
        return builders[0](copied, loop)
    return builders[1](copied)


def has_step_form(model: nn.Module) -> bool:
    """Whether the model streams one step at a time (a bidirectional classifier does not)."""
    return not getattr(model.config, "bidirectional", False)


def output_paths(fmt: str, run_dir: str | Path, output: str | Path | None, forms) -> dict:
    """Where each form goes and the sidecar: ``{"sequence": p, "step": p, "sidecar": p}``.

    ``output`` names the first form's file (default ``RUN_DIR/model.onnx``, or
    ``model_step.onnx`` for the step form alone); a second form goes beside it with
    ``_step`` before the suffix; the sidecar is the first file's name plus ``.json``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose onnx or torchscript")
    suffix = FORMATS[fmt]
    forms = [f for f in FORMS if f in forms]
    default = "model_step" if forms == ["step"] else "model"
    first = Path(output) if output is not None else Path(run_dir) / f"{default}{suffix}"
    paths = {forms[0]: first}
    if len(forms) == 2:
        paths["step"] = first.with_name(f"{first.stem}_step{first.suffix}")
    paths["sidecar"] = first.with_name(first.name + ".json")
    return paths


@dataclass
class ExportResult:
    """The files :func:`export_model` wrote and the sidecar's content."""

    files: dict[str, Path]
    sidecar: dict = field(default_factory=dict)


def export_model(
    model: nn.Module,
    fmt: str,
    paths: dict,
    info: dict | None = None,
) -> ExportResult:
    """Write the forms named in ``paths`` (see :func:`output_paths`) and the sidecar.

    ``info`` is merged into the sidecar (task, checkpoint, vocabulary, scaler, ...).
    Each file is written to a temporary name and renamed, the sidecar last.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose onnx or torchscript")
    written = {}
    for name in FORMS:
        if name not in paths:
            continue
        form = build_form(model, name, LOOPS[fmt])
        extra = _WRITERS[fmt](form, paths[name])
        written[name] = (form, Path(paths[name]), extra)
    sidecar = Path(paths["sidecar"])
    content = sidecar_dict(fmt, written, dict(info or {}), sidecar.parent)
    write_sidecar(sidecar, content)
    files = {name: path for name, (_, path, _) in written.items()}
    return ExportResult({**files, "sidecar": sidecar}, content)


__all__ = [
    "FORMATS",
    "FORMS",
    "ExportForm",
    "ExportResult",
    "TensorSpec",
    "build_form",
    "export_model",
    "has_step_form",
    "output_paths",
    "relative",
]

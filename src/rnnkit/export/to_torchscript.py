"""An :class:`~rnnkit.export.spec.ExportForm` written as a TorchScript file.

The form is traced (``torch.jit.trace``); a sequence form built with ``loop="script"``
first has its time loops scripted around traced cell steps
(:func:`~rnnkit.export.steps.script_loops`), and a trace keeps a scripted callee's
loop, so the file runs any sequence length. Load it with ``torch.jit.load(path)``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from rnnkit.atomic import atomic_write_with
from rnnkit.export.spec import ExportForm
from rnnkit.export.steps import LoopRunner, script_loops


def export_torchscript(form: ExportForm, path: str | Path) -> dict:
    """Write ``form`` to ``path`` (atomically); returns ``{"torch": version}``."""
    stack = getattr(form, "stack", None)
    loops = form.form == "sequence" and any(isinstance(r, LoopRunner) for r in stack.runners)
    form.requires_grad_(False)
    with torch.no_grad(), warnings.catch_warnings():
        # TorchScript is deprecated in favour of torch.export, whose files need Python and
        # torch's own loader; TorchScript still runs from C++ (libtorch) and Java.
        warnings.simplefilter("ignore", DeprecationWarning)
        if loops:
            script_loops(stack)
        module = torch.jit.trace(form, form.example_inputs(batch=3, steps=5), check_trace=False)
        atomic_write_with(path, lambda tmp: torch.jit.save(module, str(tmp)))
    return {"torch": torch.__version__.split("+")[0]}


__all__ = ["export_torchscript"]
